//! The metadata store: every object of the workflow and its state, in SQLite (the embedded
//! default, a file in the domain directory) or PostgreSQL (production), through one code path:
//! sqlx's `Any` driver, portable SQL with `$n` parameters, and the migrations in
//! `gateway/migrations/`, applied on every open.
//!
//! A database made before there were migrations (its tables created in place, no
//! `_sqlx_migrations` table) is adopted: the first migration creates only what is missing and
//! records itself. An applied migration is never edited (sqlx refuses a changed checksum); a
//! schema change is a new file.
//!
//! Objects are kept as their domain types serialised to JSON next to the columns queries
//! filter on; the store knows rows, not rules.

use std::path::Path;

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use unseen_audit::Entry;
use unseen_policy::sha256_hex;

use crate::GatewayError;

/// Binds `params` in order to the query's next placeholders.
fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text.to_string()),
            Param::Int(value) => query.bind(*value),
        };
    }
    query
}

/// Takes the next value of a counter, creating it at 1.
const NEXT_ID_SQL: &str = "INSERT INTO counters (name, value) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value";

/// The schema, versioned: `gateway/migrations/*.sql`, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connections a store keeps open.
const MAX_CONNECTIONS: u32 = 8;

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Keys of pending audit entries now in the log, whose rows the next commit deletes.
    settled: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// SQLite has one writer at a time, and a writer that finds the file locked sleeps in
    /// growing steps (up to 100 ms) before it retries: writers queue here instead, in order,
    /// so none sleeps. None for PostgreSQL, which locks rows, not the database.
    writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A row as a map of text columns, enough for the workflow's reads.
pub type Record = std::collections::BTreeMap<String, String>;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, whose directory must exist.
    pub async fn open(path: &Path) -> Result<Self, GatewayError> {
        let file = path
            .file_name()
            .ok_or_else(|| GatewayError::InvalidInput(format!("the metadata path {} names no file", path.display())))?;
        // Resolved here, not by the URL parser: it would read `..` without following symlinks.
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let path = std::fs::canonicalize(directory)
            .map_err(|error| {
                GatewayError::internal(&format!("opening the metadata store in {}", directory.display()), error)
            })?
            .join(file);
        let path = path
            .to_str()
            .ok_or_else(|| GatewayError::InvalidInput(format!("the metadata path {} is not UTF-8", path.display())))?;
        Self::connect(&format!("sqlite://{}?mode=rwc", url_path(path))).await
    }

    /// Connects to `url` — `sqlite://FILE` or `postgres://USER:PASSWORD@HOST/DATABASE` — and
    /// brings its schema up to date. SQLite runs in WAL mode with full synchronous commits, so
    /// an acknowledged change survives a crash; PostgreSQL commits durably by default.
    pub async fn connect(url: &str) -> Result<Self, GatewayError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(GatewayError::InvalidInput(format!(
                "metadata store URL scheme \"{scheme}\" is not supported; use sqlite://FILE or postgres://…"
            )));
        };
        let mut options = AnyPoolOptions::new().max_connections(MAX_CONNECTIONS);
        if backend == Backend::Sqlite {
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                        .execute(connection)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|error| {
            GatewayError::Unavailable(format!("cannot open the metadata store: {}", redact(url, &error.to_string())))
        })?;
        MIGRATOR.run(&pool).await.map_err(|error| GatewayError::internal("migrating the metadata store", error))?;
        let writer = (backend == Backend::Sqlite).then(Default::default);
        Ok(Self { pool, backend, settled: Default::default(), writer })
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The next id of a kind: `s-1`, `g-1`, `j-1` …
    pub async fn next_id(&self, prefix: &str) -> Result<String, GatewayError> {
        let _writing = self.write_turn().await;
        let row = sqlx::query(NEXT_ID_SQL).bind(prefix).fetch_one(&self.pool).await?;
        let value: i64 = row.try_get("value")?;
        Ok(format!("{prefix}-{value}"))
    }

    /// Begins a transaction: its statements and its audit entries commit together.
    pub async fn begin(&self) -> Result<Transaction<'_>, GatewayError> {
        let writing = self.write_turn().await;
        Ok(Transaction { store: self, inner: self.pool.begin().await?, entries: Vec::new(), _writing: writing })
    }

    /// Waits for this process's turn to write (SQLite); at once for PostgreSQL.
    async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.writer {
            Some(writer) => Some(std::sync::Arc::clone(writer).lock_owned().await),
            None => None,
        }
    }

    /// Audit entries that were committed with their state change but may not be in the log yet
    /// (the domain stopped in between): their keys and canonical bytes, oldest first.
    pub async fn pending_entries(&self) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
        let rows = self.fetch("SELECT key, entry FROM audit_pending ORDER BY created_ms, key", &[]).await?;
        Ok(rows.into_iter().map(|row| (row["key"].clone(), row["entry"].clone().into_bytes())).collect())
    }

    /// Notes that the pending entry `key` is in the log; its row goes with the next commit.
    pub fn settle(&self, key: String) {
        lock(&self.settled).push(key);
    }

    /// Deletes the pending rows of every settled entry now.
    pub async fn delete_settled(&self) -> Result<(), GatewayError> {
        let keys = std::mem::take(&mut *lock(&self.settled));
        for key in &keys {
            if let Err(error) = self.execute("DELETE FROM audit_pending WHERE key = $1", &[Param::Text(key)]).await {
                lock(&self.settled).extend(keys);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Runs one statement with text and integer parameters (`$1`, `$2` … in order).
    pub async fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, GatewayError> {
        let _writing = self.write_turn().await;
        let query = bind(sqlx::query(sql), params);
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// Fetches rows as text maps.
    pub async fn fetch(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Record>, GatewayError> {
        let query = bind(sqlx::query(sql), params);
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

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A transaction on the store. The audit entries it logs are written to `audit_pending` in the
/// same commit, so a state change and the record of it are never separated by a crash: the
/// domain appends them to the log after the commit, and again on its next open if it stopped
/// before that (skipping any already in the log).
pub struct Transaction<'s> {
    store: &'s Store,
    inner: sqlx::Transaction<'static, sqlx::Any>,
    entries: Vec<(String, Entry)>,
    /// The store's write turn, held until the transaction commits or is dropped.
    _writing: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Transaction<'_> {
    /// The next id of a kind, taken in this transaction: an id a failed transaction took is
    /// not used up.
    pub async fn next_id(&mut self, prefix: &str) -> Result<String, GatewayError> {
        let row = sqlx::query(NEXT_ID_SQL).bind(prefix).fetch_one(&mut *self.inner).await?;
        let value: i64 = row.try_get("value")?;
        Ok(format!("{prefix}-{value}"))
    }

    /// Runs one statement; the number of rows it changed.
    pub async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, GatewayError> {
        Ok(bind(sqlx::query(sql), params).execute(&mut *self.inner).await?.rows_affected())
    }

    /// Logs `entry` with this transaction's changes.
    pub fn log(&mut self, entry: Entry) {
        let key = sha256_hex(&entry.canonical_bytes());
        self.entries.push((key, entry));
    }

    /// Commits the statements and the pending entries (and forgets the pending rows of entries
    /// that reached the log since the last commit); the entries to append to the log, with
    /// their keys.
    pub async fn commit(self) -> Result<Vec<(String, Entry)>, GatewayError> {
        let store = self.store;
        let settled = std::mem::take(&mut *lock(&store.settled));
        let result = self.write_pending_and_commit(&settled).await;
        if result.is_err() {
            lock(&store.settled).extend(settled);
        }
        result
    }

    async fn write_pending_and_commit(mut self, settled: &[String]) -> Result<Vec<(String, Entry)>, GatewayError> {
        for key in settled {
            self.execute("DELETE FROM audit_pending WHERE key = $1", &[Param::Text(key)]).await?;
        }
        for (key, entry) in &self.entries {
            let bytes = String::from_utf8(entry.canonical_bytes())
                .map_err(|error| GatewayError::internal("encoding an audit entry", error))?;
            bind(
                sqlx::query(
                    "INSERT INTO audit_pending (key, entry, created_ms) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                ),
                &[Param::Text(key), Param::Text(&bytes), Param::Int(entry.time_unix_ms)],
            )
            .execute(&mut *self.inner)
            .await?;
        }
        self.inner.commit().await?;
        Ok(self.entries)
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

/// `path` with the characters a URL would misread percent-encoded; sqlx decodes them again.
fn url_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for character in path.chars() {
        match character {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            ' ' => encoded.push_str("%20"),
            other => encoded.push(other),
        }
    }
    encoded
}

/// `message` without the password of `url`, should the driver have quoted it.
fn redact(url: &str, message: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => message.replace(password, "***"),
        None => message.to_string(),
    }
}
