//! Column access modes and the decision whether one use of one column is allowed.
//!
//! The runtime walks a query plan and asks [`decide`] about every place a column is used; this
//! module knows nothing about query plans, only the rule table below.

use serde::{Deserialize, Serialize};

/// How a grant lets a module use one column (compare SecretFlow SCQL's CCL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Row values may be read.
    Visible,
    /// A keyed token stands in for the value; tokens join within one grant only.
    Pseudonymised,
    /// Only inside aggregates that do not reveal a single row.
    AggregateOnly,
    /// Only as a JOIN key.
    JoinOnly,
    /// Only in WHERE conditions.
    FilterOnly,
    /// Not at all. Every column a grant does not name is denied.
    Denied,
}

impl AccessMode {
    /// The mode's name as written in grants and refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visible => "visible",
            Self::Pseudonymised => "pseudonymised",
            Self::AggregateOnly => "aggregate_only",
            Self::JoinOnly => "join_only",
            Self::FilterOnly => "filter_only",
            Self::Denied => "denied",
        }
    }
}

/// One way a query uses a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// Its value (or anything computed from it row by row) reaches the result.
    Project,
    /// It is a GROUP BY key: every group label is a value of it.
    GroupBy,
    /// It is read by the argument of the named aggregate function.
    Aggregate {
        /// The aggregate function, lowercase (`sum`).
        function: String,
        /// What the argument does with the column.
        argument: Argument,
    },
    /// It appears in a WHERE or HAVING condition.
    Filter,
    /// It is a JOIN key.
    Join,
    /// The result is ordered by it, or it partitions or orders a window.
    Order,
}

impl Usage {
    fn phrase(&self) -> String {
        match self {
            Self::Project => "it cannot be projected".into(),
            Self::GroupBy => "it cannot be a GROUP BY key".into(),
            Self::Aggregate { function, argument: Argument::Column | Argument::Linear } => {
                format!("it cannot be aggregated with {function}()")
            }
            Self::Aggregate { function, argument: Argument::Selective } => format!(
                "it cannot be aggregated with {function}() of an expression that can single out rows (CASE, comparisons, functions, products, FILTER clauses, DISTINCT); aggregate the column itself and narrow rows with WHERE or GROUP BY so that contributors are counted"
            ),
            Self::Filter => "it cannot be used in a filter".into(),
            Self::Join => "it cannot be used as a join key".into(),
            Self::Order => "it cannot order or partition rows".into(),
        }
    }
}

/// What the argument of an aggregate does with a column it reads.
///
/// Only linear arguments are safe for values a module may not see row by row: the sum of a
/// linear function is a function of the sum and the count, while anything else can single out
/// one row (`sum(CASE WHEN name = 'Acme' THEN kwh END)`) or recover every value of a group from
/// its power sums (`sum(kwh * kwh)`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Argument {
    /// The column itself (possibly behind a lossless cast): `sum(kwh)`.
    Column,
    /// A linear function of columns and constants: `sum(kwh / 1000 + base)`.
    Linear,
    /// Anything else: CASE, comparisons, function calls, products of columns, a FILTER
    /// clause, DISTINCT in anything but a count.
    Selective,
}

/// Aggregates that do not return one row's value. Everything else (min, max, first_value,
/// array_agg, string_agg, median, percentiles, …) can reveal a single contribution. The egress
/// reviewer classifies every output column the same way whatever the grant
/// ([`crate::review::ValueClass`]), so a column left `visible` is judged there.
pub const SAFE_AGGREGATES: &[&str] = &["count", "sum", "avg", "mean"];

/// Why a use of a column was refused: the rule, and a message naming column, dataset and grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The rule that refused, e.g. `access_mode`.
    pub rule: String,
    /// The whole sentence shown to the developer.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Decides one use of one column under its access mode.
///
/// `dataset` is `name@vN`; `grant` the grant id; both only shape the message.
pub fn decide(mode: AccessMode, usage: &Usage, column: &str, dataset: &str, grant: &str) -> Result<(), Refusal> {
    let allowed = match (mode, usage) {
        (AccessMode::Denied, _) => false,
        (AccessMode::Visible, _) => true,
        (AccessMode::Pseudonymised, _) => true,
        (AccessMode::AggregateOnly, Usage::Aggregate { function, argument }) => {
            SAFE_AGGREGATES.contains(&function.as_str()) && *argument != Argument::Selective
        }
        (AccessMode::AggregateOnly, _) => false,
        (AccessMode::JoinOnly, Usage::Join) => true,
        // Counting a key is harmless; counting a condition on it is a membership test.
        (AccessMode::JoinOnly | AccessMode::FilterOnly, Usage::Aggregate { function, argument }) => {
            function == "count" && *argument == Argument::Column
        }
        (AccessMode::JoinOnly, _) => false,
        (AccessMode::FilterOnly, Usage::Filter) => true,
        (AccessMode::FilterOnly, _) => false,
    };
    if allowed {
        return Ok(());
    }
    let message = if mode == AccessMode::Denied {
        format!("column \"{column}\" of dataset \"{dataset}\" is denied in grant {grant}; the grant does not name it")
    } else {
        format!(
            "column \"{column}\" of dataset \"{dataset}\" is {} in grant {grant}; {}",
            mode.as_str(),
            usage.phrase()
        )
    };
    Err(Refusal { rule: format!("access_mode.{}", mode.as_str()), message })
}

/// The narrowest access mode that allows every one of `usages` of a column, for drafting an
/// application from the queries a developer plans to run: the first of `join_only`,
/// `filter_only`, `aggregate_only` and `visible` under which [`decide`] allows them all.
pub fn least_mode(usages: &[Usage]) -> AccessMode {
    [AccessMode::JoinOnly, AccessMode::FilterOnly, AccessMode::AggregateOnly]
        .into_iter()
        .find(|&mode| usages.iter().all(|usage| decide(mode, usage, "", "", "").is_ok()))
        .unwrap_or(AccessMode::Visible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_mode_allows_exactly_what_the_queries_do() {
        let sum = Usage::Aggregate { function: "sum".into(), argument: Argument::Column };
        let count = Usage::Aggregate { function: "count".into(), argument: Argument::Column };
        let max = Usage::Aggregate { function: "max".into(), argument: Argument::Column };
        let selective = Usage::Aggregate { function: "sum".into(), argument: Argument::Selective };
        let cases: [(&[Usage], AccessMode); 9] = [
            (&[Usage::Join], AccessMode::JoinOnly),
            (&[Usage::Join, count.clone()], AccessMode::JoinOnly),
            (&[Usage::Filter], AccessMode::FilterOnly),
            (std::slice::from_ref(&sum), AccessMode::AggregateOnly),
            (&[sum.clone(), count], AccessMode::AggregateOnly),
            (&[max], AccessMode::Visible),
            (&[selective], AccessMode::Visible),
            (&[Usage::Join, Usage::Filter], AccessMode::Visible),
            (&[sum.clone(), Usage::GroupBy], AccessMode::Visible),
        ];
        for (usages, mode) in cases {
            assert_eq!(least_mode(usages), mode, "{usages:?}");
            for usage in usages {
                assert!(decide(mode, usage, "c", "d@v1", "g-1").is_ok(), "{mode:?} must allow {usage:?}");
            }
        }
    }

    #[test]
    fn join_only_cannot_be_projected_and_says_so() {
        let refusal = decide(AccessMode::JoinOnly, &Usage::Project, "id_card", "population@v1", "g-3").unwrap_err();
        assert_eq!(
            refusal.message,
            "column \"id_card\" of dataset \"population@v1\" is join_only in grant g-3; it cannot be projected"
        );
        assert_eq!(refusal.rule, "access_mode.join_only");
    }

    #[test]
    fn aggregate_only_allows_sum_but_not_max() {
        let aggregate = |function: &str, argument| Usage::Aggregate { function: function.into(), argument };
        assert!(decide(AccessMode::AggregateOnly, &aggregate("sum", Argument::Column), "kwh", "d@v1", "g").is_ok());
        assert!(decide(AccessMode::AggregateOnly, &aggregate("avg", Argument::Linear), "kwh", "d@v1", "g").is_ok());
        let refusal =
            decide(AccessMode::AggregateOnly, &aggregate("max", Argument::Column), "kwh", "d@v1", "g").unwrap_err();
        assert!(refusal.message.ends_with("it cannot be aggregated with max()"));
        let refusal =
            decide(AccessMode::AggregateOnly, &aggregate("sum", Argument::Selective), "kwh", "d@v1", "g").unwrap_err();
        assert!(refusal.message.contains("single out rows"), "{refusal}");
        assert!(decide(AccessMode::AggregateOnly, &Usage::GroupBy, "kwh", "d@v1", "g").is_err());
    }

    #[test]
    fn join_keys_may_be_counted_but_not_tested() {
        let count = |argument| Usage::Aggregate { function: "count".into(), argument };
        assert!(decide(AccessMode::JoinOnly, &count(Argument::Column), "uscc", "d@v1", "g").is_ok());
        assert!(decide(AccessMode::JoinOnly, &count(Argument::Selective), "uscc", "d@v1", "g").is_err());
        assert!(decide(AccessMode::FilterOnly, &count(Argument::Selective), "age", "d@v1", "g").is_err());
    }

    #[test]
    fn denied_refuses_everything() {
        let count = Usage::Aggregate { function: "count".into(), argument: Argument::Column };
        for usage in [Usage::Project, Usage::Filter, Usage::Join, Usage::GroupBy, Usage::Order, count] {
            assert!(decide(AccessMode::Denied, &usage, "c", "d@v1", "g").is_err());
        }
    }
}
