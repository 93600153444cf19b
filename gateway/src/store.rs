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
//! filter on; the store knows rows, not rules. The domain asks for what it means, by name
//! (`store.job(id)`, `transaction.insert_job(…)`, `transaction.set_grant_state(…)`), and gets
//! typed rows: the SQL lives here, one file per area (`store/datasets.rs` with their samples,
//! `scenarios`, `grants`, `jobs` with modules and outputs, `egress` with releases, `imports`),
//! each row read through `store/rows.rs`, so a missing or unreadable column is an error naming
//! it, never a panic. Group commit is `store/group.rs`. Which state a change leaves or which rows a decision needs is the
//! caller's to say: a method takes the states as arguments and only reads or writes rows.

use std::path::Path;

use sqlx::AnyPool;
use sqlx::Row as _;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use unseen_audit::Entry;
use unseen_policy::sha256_hex;

use crate::GatewayError;

mod datasets;
mod egress;
mod grants;
mod group;
mod imports;
mod jobs;
mod rows;
mod scenarios;

pub use datasets::{DatasetRow, NewDataset, NewSample, SampleRow};
pub use egress::{EgressRow, NewEgress, NewRelease, ReleaseRow};
pub use grants::{GrantRow, NewGrant};
use group::{Group, IdCounters, MAX_GROUP_MEMBERS, Writer, commit_group};
pub use imports::{ImportRow, NewImport};
pub use jobs::{JobEnd, JobRow, ModuleRow, NewJob, NewModule, NewOutput, OutputRow, mode_name};
use rows::Row;
pub use scenarios::{NewScenario, ScenarioRow};

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

/// The advisory lock key of a domain's claim on its PostgreSQL database ("unseen" in ASCII).
const DOMAIN_CLAIM_KEY: i64 = 0x756e_7365_656e;

/// A domain's claim on its metadata database ([`Store::claim_for_domain`]), held by the open
/// connection that took it.
pub struct DatabaseClaim {
    /// Only held, never used (the mutex makes it shareable between threads).
    _connection: std::sync::Mutex<sqlx::AnyConnection>,
}

impl std::fmt::Debug for DatabaseClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseClaim")
    }
}

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Keys of pending audit entries now in the log, whose rows the next commit deletes.
    settled: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The turn to write, and the group of transactions being written ([`Transaction`]).
    writer: std::sync::Arc<tokio::sync::Mutex<Writer>>,
    /// Groups committed since the store was opened, for metering group commit.
    group_commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
        Ok(Self {
            pool,
            backend,
            settled: Default::default(),
            writer: Default::default(),
            group_commits: Default::default(),
        })
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Claims the database for one domain, for as long as the returned lock lives. On
    /// PostgreSQL two domains (two directories, two audit logs) could otherwise share one
    /// database and each spend its grants' ε budgets and run its jobs unaware of the other;
    /// the claim is a session advisory lock, released when its connection ends (also when the
    /// process is killed). An SQLite file lives in the domain's directory, which the domain
    /// locks itself, so there it is `None`.
    pub async fn claim_for_domain(&self) -> Result<Option<DatabaseClaim>, GatewayError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut connection = self.pool.acquire().await?.detach();
        let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS claimed")
            .bind(DOMAIN_CLAIM_KEY)
            .fetch_one(&mut connection)
            .await?;
        let claimed: bool = row.try_get("claimed")?;
        if !claimed {
            return Err(GatewayError::Unavailable(
                "the metadata database is in use by another domain process; one domain per database (give this one its own database, or stop the other)".into(),
            ));
        }
        Ok(Some(DatabaseClaim { _connection: std::sync::Mutex::new(connection) }))
    }

    /// The next id of a kind: `s-1`, `g-1`, `j-1` …
    pub async fn next_id(&self, prefix: &str) -> Result<String, GatewayError> {
        let mut transaction = self.begin().await?;
        let id = transaction.next_id(prefix).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Write groups committed since the store was opened: with many concurrent writers, fewer
    /// than their transactions.
    pub fn group_commits(&self) -> u64 {
        self.group_commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Begins a transaction: its statements and its audit entries commit together, in the
    /// next group commit. Waits for the turn to write.
    pub async fn begin(&self) -> Result<Transaction, GatewayError> {
        loop {
            let mut turn = std::sync::Arc::clone(&self.writer).lock_owned().await;
            let group = match turn.group.as_mut() {
                Some(group) => group,
                None => {
                    let transaction = self.pool.begin().await?;
                    let (outcome, _) = tokio::sync::watch::channel(None);
                    // Queued behind every writer waiting now, who join the group first.
                    tokio::spawn(commit_group(std::sync::Arc::clone(&self.writer), self.clone()));
                    turn.group.insert(Group {
                        transaction,
                        members: 0,
                        abandoned: None,
                        broken: None,
                        outcome,
                        ids: IdCounters::default(),
                        ids_at_savepoint: IdCounters::default(),
                    })
                }
            };
            group.roll_back_abandoned().await;
            if group.broken.is_none() && group.members < MAX_GROUP_MEMBERS {
                group.members += 1;
                let savepoint = group.members;
                if let Err(error) = group.open_savepoint(savepoint).await {
                    group.broken = Some(format!("starting a transaction failed: {error}"));
                    return Err(error.into());
                }
                return Ok(Transaction { turn: Some(turn), savepoint, entries: Vec::new() });
            }
            // A full group waits for its commit, a broken one for its rollback; the next
            // group is a fresh start.
            let mut outcome = group.outcome.subscribe();
            drop(turn);
            let _ = outcome.wait_for(Option::is_some).await;
        }
    }

    /// Audit entries that were committed with their state change but may not be in the log yet
    /// (the domain stopped in between): their keys and canonical bytes, oldest first.
    pub async fn pending_entries(&self) -> Result<Vec<(String, Vec<u8>)>, GatewayError> {
        let rows: Vec<PendingEntry> =
            self.rows("SELECT key, entry FROM audit_pending ORDER BY created_ms, key", &[]).await?;
        Ok(rows.into_iter().map(|row| (row.key, row.entry.into_bytes())).collect())
    }

    /// Notes that the pending entry `key` is in the log; its row goes with the next commit.
    pub fn settle(&self, key: String) {
        lock(&self.settled).push(key);
    }

    /// Deletes the pending rows of every settled entry now (the next group commit would).
    pub async fn delete_settled(&self) -> Result<(), GatewayError> {
        self.begin().await?.commit().await.map(drop)
    }

    /// Runs one statement of raw SQL with text and integer parameters (`$1`, `$2` … in
    /// order), committed before it returns. For tests and tools that alter the database
    /// directly; the domain uses the named methods.
    pub async fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, GatewayError> {
        let mut transaction = self.begin().await?;
        let changed = transaction.execute(sql, params).await?;
        transaction.commit().await?;
        Ok(changed)
    }

    /// Fetches the rows of raw SQL as text maps, for tests and tools that inspect the
    /// database directly; the domain uses the named methods, which return typed rows.
    pub async fn fetch(&self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Record>, GatewayError> {
        self.records(sql, params).await
    }

    /// Fetches exactly one row of raw SQL or a not-found error naming `what` (see
    /// [`Store::fetch`]).
    pub async fn fetch_one(&self, sql: &'static str, params: &[Param<'_>], what: &str) -> Result<Record, GatewayError> {
        self.fetch(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| GatewayError::NotFound(format!("{what} not found")))
    }

    /// Fetches rows as text maps: a column that is not text is read as an integer (a `NULL`
    /// as empty text).
    async fn records(&self, sql: impl sqlx::SqlSafeStr, params: &[Param<'_>]) -> Result<Vec<Record>, GatewayError> {
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

    /// Fetches typed rows.
    async fn rows<R: Row>(&self, sql: impl sqlx::SqlSafeStr, params: &[Param<'_>]) -> Result<Vec<R>, GatewayError> {
        self.records(sql, params).await?.into_iter().map(rows::read).collect()
    }

    /// Fetches the first typed row, if there is one.
    async fn row<R: Row>(&self, sql: impl sqlx::SqlSafeStr, params: &[Param<'_>]) -> Result<Option<R>, GatewayError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }
}

rows::row! {
    /// An audit entry committed with its change, until it is in the log.
    struct PendingEntry from "audit_pending" key ["key"] {
        key: String = text,
        /// The entry's canonical bytes (UTF-8 JSON).
        entry: String = text,
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
///
/// It runs in a savepoint of the store's write group and holds the turn to write until it
/// commits; dropped without committing, its savepoint is rolled back.
pub struct Transaction {
    /// The turn to write, held until the transaction commits or is dropped.
    turn: Option<tokio::sync::OwnedMutexGuard<Writer>>,
    savepoint: u64,
    entries: Vec<(String, Entry)>,
}

impl Transaction {
    fn group(&mut self) -> Result<&mut Group, GatewayError> {
        self.turn
            .as_mut()
            .and_then(|turn| turn.group.as_mut())
            .ok_or_else(|| GatewayError::Internal("a transaction outlived its write group".into()))
    }

    /// The next id of a kind, taken in this transaction: an id a failed transaction took is
    /// not used up. The first in a group reads (and locks) the counter row; later ones count
    /// on from it in memory (see [`Group::ids`]).
    pub async fn next_id(&mut self, prefix: &str) -> Result<String, GatewayError> {
        let group = self.group()?;
        let value = match group.ids.0.get_mut(prefix) {
            Some((taken, _)) => {
                *taken += 1;
                *taken
            }
            None => {
                let row = sqlx::query(NEXT_ID_SQL).bind(prefix.to_string()).fetch_one(&mut *group.transaction).await?;
                let value: i64 = row.try_get("value")?;
                group.ids.0.insert(prefix.to_string(), (value, value));
                value
            }
        };
        Ok(format!("{prefix}-{value}"))
    }

    /// Runs one statement of raw SQL; the number of rows it changed. The named writes
    /// (`insert_job`, `set_grant_state` …) run through it; tests alter the database with it.
    pub async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, GatewayError> {
        let group = self.group()?;
        Ok(bind(sqlx::query(sql), params).execute(&mut *group.transaction).await?.rows_affected())
    }

    /// Logs `entry` with this transaction's changes.
    pub fn log(&mut self, entry: Entry) {
        let key = sha256_hex(&entry.canonical_bytes());
        self.entries.push((key, entry));
    }

    /// Commits the statements and the pending entries with the write group; the entries to
    /// append to the log, with their keys.
    pub async fn commit(mut self) -> Result<Vec<(String, Entry)>, GatewayError> {
        let entries = std::mem::take(&mut self.entries);
        for (key, entry) in &entries {
            let bytes = String::from_utf8(entry.canonical_bytes())
                .map_err(|error| GatewayError::internal("encoding an audit entry", error))?;
            self.execute(
                "INSERT INTO audit_pending (key, entry, created_ms) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                &[Param::Text(key), Param::Text(&bytes), Param::Int(entry.time_unix_ms)],
            )
            .await?;
        }
        // Not released: the group's COMMIT commits every savepoint still open, and only the
        // newest one is ever rolled back (before anyone else writes), so nesting is harmless.
        let mut outcome = self.group()?.outcome.subscribe();
        // The group commits this transaction's changes, and the turn passes on.
        self.turn = None;
        let committed = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| GatewayError::Internal("the write group ended without an outcome".into()))?
            .clone();
        match committed {
            Some(Ok(())) => Ok(entries),
            Some(Err(error)) => Err(GatewayError::internal("committing to the metadata store", error)),
            None => Err(GatewayError::Internal("the write group ended without an outcome".into())),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // Left before committing (an error, a refusal, a cancelled request): the next writer
        // or the group's commit rolls its savepoint back first.
        if let Some(group) = self.turn.as_mut().and_then(|turn| turn.group.as_mut()) {
            group.abandoned = Some(self.savepoint);
        }
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
