//! The metadata store: every object of the workflow and its state, in SQLite (sqlx).
//!
//! Objects are kept as their domain types serialised to JSON next to the columns queries
//! filter on; the store knows rows, not rules.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::GatewayError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
    json TEXT NOT NULL, path TEXT NOT NULL, sample_path TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (id TEXT PRIMARY KEY, developer TEXT NOT NULL, state TEXT NOT NULL,
    application_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', grant_id TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, scenario_id TEXT NOT NULL, developer TEXT NOT NULL,
    json TEXT NOT NULL, hash TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS modules (hash TEXT NOT NULL, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    size INTEGER NOT NULL, path TEXT NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (hash, grant_id));
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    module_hash TEXT NOT NULL, mode TEXT NOT NULL, params TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    developer_error TEXT NOT NULL DEFAULT '', report_json TEXT NOT NULL DEFAULT '{}', created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (job_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    lineage_json TEXT NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (job_id, name));
CREATE TABLE IF NOT EXISTS egress (id TEXT PRIMARY KEY, developer TEXT NOT NULL, job_id TEXT NOT NULL,
    output_name TEXT NOT NULL, state TEXT NOT NULL, report_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    release_id TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS releases (id TEXT PRIMARY KEY, egress_id TEXT NOT NULL, developer TEXT NOT NULL,
    dir TEXT NOT NULL, created_ms INTEGER NOT NULL);
"#;

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// A row as a map of text columns, enough for the workflow's reads.
pub type Record = std::collections::BTreeMap<String, String>;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, in WAL mode with full
    /// synchronous commits: an acknowledged change survives a crash.
    pub async fn open(path: &Path) -> Result<Self, GatewayError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|error| GatewayError::internal("opening the metadata store", error))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool })
    }

    /// The next id of a kind: `s-1`, `g-1`, `j-1` …
    pub async fn next_id(&self, prefix: &str) -> Result<String, GatewayError> {
        let row = sqlx::query(
            "INSERT INTO counters (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
        )
        .bind(prefix)
        .fetch_one(&self.pool)
        .await?;
        let value: i64 = row.try_get("value")?;
        Ok(format!("{prefix}-{value}"))
    }

    /// Runs one statement with text and integer parameters.
    pub async fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, GatewayError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = match param {
                Param::Text(text) => query.bind(text.to_string()),
                Param::Int(value) => query.bind(*value),
            };
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// Fetches rows as text maps.
    pub async fn fetch(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Record>, GatewayError> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = match param {
                Param::Text(text) => query.bind(text.to_string()),
                Param::Int(value) => query.bind(*value),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let mut record = Record::new();
            for (index, column) in sqlx::Row::columns(&row).iter().enumerate() {
                let name = sqlx::Column::name(column).to_string();
                let value = match row.try_get::<String, _>(index) {
                    Ok(text) => text,
                    Err(_) => row.try_get::<i64, _>(index).map(|value| value.to_string()).unwrap_or_default(),
                };
                record.insert(name, value);
            }
            records.push(record);
        }
        Ok(records)
    }

    /// Fetches exactly one row or a not-found error naming `what`.
    pub async fn fetch_one(&self, sql: &'static str, params: &[Param<'_>], what: &str) -> Result<Record, GatewayError> {
        self.fetch(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| GatewayError::NotFound(format!("{what} not found")))
    }
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// Text.
    Text(&'a str),
    /// Integer.
    Int(i64),
}
