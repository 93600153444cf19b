//! Reading a fetched row into a typed row. Every column is taken by name; one that is missing
//! or does not read back (a number that is not one, a state no state names) is an error that
//! names the table, the row and the column, never a panic.

use std::str::FromStr;

use super::{Param, Record};
use crate::GatewayError;

/// A typed row of one table, read from a fetched [`Record`].
pub(super) trait Row: Sized {
    /// The table, for messages.
    const TABLE: &'static str;
    /// The columns that name a row, for messages.
    const KEY: &'static [&'static str];

    /// Reads the row from its columns.
    fn read(columns: &mut Columns) -> Result<Self, GatewayError>;
}

/// Declares a typed row of a table and how it is read: each field is the column of the same
/// name, read by the [`Columns`] method named after `=` (with any further arguments it takes),
/// and `key` names the columns that identify a row in messages.
macro_rules! row {
    (
        $(#[$meta:meta])*
        $visibility:vis struct $name:ident from $table:literal key [$($key:literal),*] {
            $($(#[$field_meta:meta])* $field_visibility:vis $field:ident: $type:ty = $read:ident $(($($argument:expr),*))?,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $visibility struct $name {
            $($(#[$field_meta])* $field_visibility $field: $type,)+
        }

        impl $crate::store::rows::Row for $name {
            const TABLE: &'static str = $table;
            const KEY: &'static [&'static str] = &[$($key),*];

            fn read(columns: &mut $crate::store::rows::Columns) -> Result<Self, $crate::GatewayError> {
                Ok(Self { $($field: columns.$read(stringify!($field) $($(, $argument)*)?)?,)+ })
            }
        }
    };
}
pub(super) use row;

/// Reads `record` as a row of `R`.
pub(super) fn read<R: Row>(record: Record) -> Result<R, GatewayError> {
    let key = R::KEY.iter().map(|column| record.get(*column).map_or("?", String::as_str)).collect::<Vec<_>>().join("/");
    R::read(&mut Columns { table: R::TABLE, key, record })
}

/// The columns of one fetched row, taken one at a time.
pub(super) struct Columns {
    table: &'static str,
    /// The row's key columns, for messages (`j-3`, `j-3/totals`).
    key: String,
    record: Record,
}

impl Columns {
    /// The store is not as the domain wrote it: names the table, the row and the column.
    fn corrupt(&self, column: &str, problem: &str) -> GatewayError {
        GatewayError::Internal(format!(
            "metadata store: {} row \"{}\", column \"{column}\": {problem}",
            self.table, self.key
        ))
    }

    /// A text column.
    pub(super) fn text(&mut self, column: &str) -> Result<String, GatewayError> {
        self.record.remove(column).ok_or_else(|| self.corrupt(column, "missing"))
    }

    /// A number column (`i64`, `u64`, `u32`): a negative count or one out of range is an error.
    pub(super) fn number<T: FromStr>(&mut self, column: &str) -> Result<T, GatewayError> {
        let text = self.text(column)?;
        text.parse().map_err(|_| self.corrupt(column, &format!("{text:?} is not a number in range")))
    }

    /// A state column, read back through the state's [`FromStr`].
    pub(super) fn state<S: FromStr<Err = GatewayError>>(&mut self, column: &str) -> Result<S, GatewayError> {
        let text = self.text(column)?;
        text.parse().map_err(|error| match error {
            GatewayError::Internal(why) => self.corrupt(column, &why),
            other => other,
        })
    }

    /// A column holding one of `all`, each spelt as `name` spells it.
    pub(super) fn spelt<T: Copy>(
        &mut self,
        column: &str,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Result<T, GatewayError> {
        let text = self.text(column)?;
        all.iter().copied().find(|value| name(*value) == text).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|value| name(*value)).collect();
            self.corrupt(column, &format!("{text:?} is not one of {}", names.join(", ")))
        })
    }

    /// A JSON column written once its object is complete: its default, `{}`, means not yet.
    pub(super) fn json_once_written(&mut self, column: &str) -> Result<Option<String>, GatewayError> {
        self.text(column).map(|json| (json != "{}").then_some(json))
    }

    /// A comma-separated list of ids (empty for none).
    pub(super) fn id_list(&mut self, column: &str) -> Result<Vec<String>, GatewayError> {
        let text = self.text(column)?;
        Ok(text.split(',').filter(|id| !id.is_empty()).map(str::to_string).collect())
    }

    /// Like [`Columns::spelt`], where an empty column means none.
    pub(super) fn spelt_or_none<T: Copy>(
        &mut self,
        column: &str,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Result<Option<T>, GatewayError> {
        if self.record.get(column).is_some_and(String::is_empty) {
            self.record.remove(column);
            return Ok(None);
        }
        self.spelt(column, all, name).map(Some)
    }
}

/// `$first, $first + 1, …` for `count` parameters (`NULL` for none, which no row equals), for
/// an `IN (…)` list of states.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    if count == 0 {
        return "NULL".into();
    }
    (first..first + count).map(|number| format!("${number}")).collect::<Vec<_>>().join(", ")
}

/// `params` followed by the spellings of `states`, bound to [`placeholders`] after them.
pub(super) fn with_states<'a, S: Copy>(
    params: &[Param<'a>],
    states: &[S],
    name: fn(S) -> &'static str,
) -> Vec<Param<'a>> {
    params.iter().copied().chain(states.iter().map(|state| Param::Text(name(*state)))).collect()
}

/// An `i64` column's value for a count or size (the databases have no unsigned integers).
pub(super) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::JobState;

    struct Job {
        state: JobState,
        rows: u64,
    }

    impl Row for Job {
        const TABLE: &'static str = "jobs";
        const KEY: &'static [&'static str] = &["id"];

        fn read(columns: &mut Columns) -> Result<Self, GatewayError> {
            Ok(Self { state: columns.state("state")?, rows: columns.number("rows")? })
        }
    }

    fn record(pairs: &[(&str, &str)]) -> Record {
        pairs.iter().map(|(column, value)| (column.to_string(), value.to_string())).collect()
    }

    #[test]
    fn a_row_reads_back_typed_and_a_bad_column_is_an_error_naming_table_row_and_column() {
        let job: Job = read(record(&[("id", "j-3"), ("state", "running"), ("rows", "12")])).unwrap();
        assert_eq!((job.state, job.rows), (JobState::Running, 12));
        let missing = read::<Job>(record(&[("id", "j-3"), ("rows", "12")])).err().unwrap().to_string();
        assert_eq!(missing, "internal error: metadata store: jobs row \"j-3\", column \"state\": missing");
        let state = read::<Job>(record(&[("id", "j-3"), ("state", "finished"), ("rows", "1")])).err().unwrap();
        assert!(state.to_string().contains("column \"state\": job state \"finished\" is not one of"), "{state}");
        let number = read::<Job>(record(&[("id", "j-3"), ("state", "queued"), ("rows", "-1")])).err().unwrap();
        assert!(number.to_string().ends_with("column \"rows\": \"-1\" is not a number in range"), "{number}");
    }

    #[test]
    fn an_in_list_has_a_placeholder_per_state() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 0), "NULL");
    }
}
