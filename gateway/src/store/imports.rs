//! Developers' imported tables (社会数据).

use super::rows::{placeholders, row, signed, with_states};
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;
use crate::states::ImportState;

/// The columns of an [`ImportRow`].
macro_rules! import_columns {
    () => {
        "id, developer, grant_id, json, sealed, state, reason, rows, bytes"
    };
}

row! {
    /// An imported table: what it is, never what it holds.
    pub struct ImportRow from "imports" key ["id"] {
        /// `i-N`.
        pub id: String = text,
        /// The importing organisation.
        pub developer: String = text,
        /// The grant whose jobs may use it.
        pub grant_id: String = text,
        /// The table as jobs see it (`DatasetVersion`) as JSON.
        pub json: String = text,
        /// The random token naming its ciphertext and key files.
        pub sealed: String = text,
        /// Its state.
        pub state: ImportState = state,
        /// The operator's reason, or why it was destroyed.
        pub reason: String = text,
        /// Rows in the table.
        pub rows: u64 = number,
        /// Bytes of Parquet imported.
        pub bytes: u64 = number,
    }
}

/// An imported table as submitted.
#[derive(Debug, Clone, Copy)]
pub struct NewImport<'a> {
    /// `i-N`.
    pub id: &'a str,
    /// The importing organisation.
    pub developer: &'a str,
    /// The grant whose jobs may use it.
    pub grant_id: &'a str,
    /// The table's name.
    pub name: &'a str,
    /// The table as jobs see it, as JSON.
    pub json: &'a str,
    /// The token naming its files.
    pub sealed: &'a str,
    /// Its state.
    pub state: ImportState,
    /// Rows in the table.
    pub rows: u64,
    /// Bytes of Parquet imported.
    pub bytes: u64,
}

row! {
    /// How many imports of a grant bear a name.
    struct Count from "imports" key [] {
        count: u64 = number,
    }
}

impl Store {
    /// How many tables named `name` were imported for `grant_id`, in any state.
    pub async fn count_imports_named(&self, grant_id: &str, name: &str) -> Result<u64, GatewayError> {
        let count: Option<Count> = self
            .row(
                "SELECT COUNT(*) AS count FROM imports WHERE grant_id = $1 AND name = $2",
                &[Param::Text(grant_id), Param::Text(name)],
            )
            .await?;
        Ok(count.map_or(0, |count| count.count))
    }

    /// An imported table.
    pub async fn import(&self, id: &str) -> Result<Option<ImportRow>, GatewayError> {
        self.row(concat!("SELECT ", import_columns!(), " FROM imports WHERE id = $1"), &[Param::Text(id)]).await
    }

    /// Every imported table, oldest first.
    pub async fn imports(&self) -> Result<Vec<ImportRow>, GatewayError> {
        self.rows(concat!("SELECT ", import_columns!(), " FROM imports ORDER BY created_ms"), &[]).await
    }

    /// The imported tables of a grant in one of `states`, oldest first.
    pub async fn imports_of_grant(
        &self,
        grant_id: &str,
        states: &[ImportState],
    ) -> Result<Vec<ImportRow>, GatewayError> {
        let sql = format!(
            concat!(
                "SELECT ",
                import_columns!(),
                " FROM imports WHERE grant_id = $1 AND state IN ({}) ORDER BY created_ms"
            ),
            placeholders(2, states.len())
        );
        self.rows(sqlx::AssertSqlSafe(sql), &with_states(&[Param::Text(grant_id)], states, ImportState::as_str)).await
    }

    /// Every imported table in one of `states`.
    pub async fn imports_in(&self, states: &[ImportState]) -> Result<Vec<ImportRow>, GatewayError> {
        let sql = format!(
            concat!("SELECT ", import_columns!(), " FROM imports WHERE state IN ({})"),
            placeholders(1, states.len())
        );
        self.rows(sqlx::AssertSqlSafe(sql), &with_states(&[], states, ImportState::as_str)).await
    }
}

impl Transaction {
    /// Records an imported table.
    pub async fn insert_import(&mut self, import: &NewImport<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO imports (id, developer, grant_id, name, json, sealed, state, rows, bytes, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                Param::Text(import.id),
                Param::Text(import.developer),
                Param::Text(import.grant_id),
                Param::Text(import.name),
                Param::Text(import.json),
                Param::Text(import.sealed),
                Param::Text(import.state.as_str()),
                Param::Int(signed(import.rows)),
                Param::Int(signed(import.bytes)),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Moves an imported table from `from` to `to` with `reason`; false when it is no longer
    /// in `from`.
    pub async fn set_import_state(
        &mut self,
        id: &str,
        (from, to): (ImportState, ImportState),
        reason: &str,
    ) -> Result<bool, GatewayError> {
        let changed = self
            .execute(
                "UPDATE imports SET state = $1, reason = $2 WHERE id = $3 AND state = $4",
                &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(id), Param::Text(from.as_str())],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Puts an imported table in `to` with `reason`, whatever its state.
    pub async fn force_import_state(&mut self, id: &str, to: ImportState, reason: &str) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE imports SET state = $1, reason = $2 WHERE id = $3",
            &[Param::Text(to.as_str()), Param::Text(reason), Param::Text(id)],
        )
        .await
        .map(drop)
    }
}
