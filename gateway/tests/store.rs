//! The metadata store on both of its databases: SQLite (embedded) and PostgreSQL (production).
//!
//! PostgreSQL tests read `UNSEEN_TEST_POSTGRES_URL` (a role that may create databases, e.g.
//! `postgres://unseen:…@127.0.0.1:5432/postgres`; `.ci/run` starts such a server). Each test
//! creates a database of its own and drops it afterwards. Without the variable they are
//! skipped with a message — except under `CI=true`, where a skipped backend is a failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common;

use common::principal;
use sqlx::Connection;
use unseen_gateway::identity::Role;
use unseen_gateway::store::{Backend, Param, Store};
use unseen_gateway::{Domain, DomainOptions, GatewayError};

/// A fresh PostgreSQL database for one test, dropped when the test ends (or panics).
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
}

/// Whether this runs under CI, where a backend that cannot be tested is a failure.
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

impl Scratch {
    async fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("UNSEEN_TEST_POSTGRES_URL") else {
            assert!(!on_ci(), "UNSEEN_TEST_POSTGRES_URL is not set: CI must run the store's tests on PostgreSQL");
            eprintln!("skipped on PostgreSQL: set UNSEEN_TEST_POSTGRES_URL to run {test} there");
            return None;
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").subsec_nanos();
        // Letters, digits and underscores only: safe to splice into DDL.
        let name = format!("unseen_{test}_{}_{nanos}", std::process::id());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.expect("connect as the admin role");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a database");
        admin.close().await.expect("close");
        let (base, _) = admin_url.rsplit_once('/').expect("the URL names a database");
        let url = format!("{base}/{name}");
        Some(Self { admin_url, name, url })
    }

    async fn finish(self, store: Store) {
        store.close().await;
    }
}

impl Drop for Scratch {
    /// Drops the database on a thread of its own (this may run while a test panics, inside or
    /// outside a runtime), ending any connection still open to it.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime
                .block_on(async {
                    let mut admin = sqlx::AnyConnection::connect(&admin_url).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await?;
                    admin.close().await
                })
                .map_err(|error| error.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("the dropping thread panicked".into()));
        match dropped {
            Ok(()) => {}
            Err(error) if std::thread::panicking() => eprintln!("could not drop {}: {error}", self.name),
            Err(error) => panic!("could not drop the test database {}: {error}", self.name),
        }
    }
}

async fn on_both(test: &str, check: impl AsyncFn(&Store)) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = Store::open(&dir.path().join("metadata.sqlite")).await.expect("SQLite opens");
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    check(&sqlite).await;
    if let Some(scratch) = Scratch::create(test).await {
        let postgres = Store::connect(&scratch.url).await.expect("PostgreSQL opens");
        assert_eq!(postgres.backend(), Backend::Postgres);
        check(&postgres).await;
        scratch.finish(postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_sequential_per_kind_and_unique_under_concurrency() {
    on_both("ids", async |store: &Store| {
        assert_eq!(store.next_id("s").await.expect("id"), "s-1");
        assert_eq!(store.next_id("s").await.expect("id"), "s-2");
        assert_eq!(store.next_id("g").await.expect("id"), "g-1");
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.next_id("j").await.expect("id") })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.expect("task"));
        }
        ids.sort_by_key(|id| id[2..].parse::<u32>().expect("numbered"));
        let expected: Vec<String> = (1..=64).map(|n| format!("j-{n}")).collect();
        assert_eq!(ids, expected, "64 concurrent ids, none repeated or skipped");
    })
    .await;
}

/// An audit entry about `object_id`.
fn entry_about(object_id: &str) -> unseen_audit::Entry {
    unseen_audit::Entry {
        time_unix_ms: 1_764_000_000_000,
        organisation: "city".into(),
        principal: "op".into(),
        role: "operator".into(),
        action: "release.sign".into(),
        object_kind: "release".into(),
        object_id: object_id.into(),
        object_hash: None,
        grant: None,
        decision: "released".into(),
        reason: "发布".into(),
    }
}

/// Takes an id and inserts a release row with it, logging an entry, in one transaction.
async fn insert_release(
    store: &Store,
    egress: &str,
    sql: &'static str,
) -> Result<String, unseen_gateway::GatewayError> {
    let mut transaction = store.begin().await?;
    let id = transaction.next_id("r").await?;
    transaction.execute(sql, &[Param::Text(&id), Param::Text(egress), Param::Text("dev"), Param::Text("/d")]).await?;
    transaction.log(entry_about(&id));
    let logged = transaction.commit().await?;
    assert_eq!(logged.len(), 1);
    Ok(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_its_row_and_its_log_entry_commit_together_and_a_failed_insert_leaves_nothing() {
    on_both("transaction", async |store: &Store| {
        const INSERT: &str =
            "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, 7)";
        let tasks: Vec<_> = (0..32)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { insert_release(&store, &format!("e-{n}"), INSERT).await.expect("insert") })
            })
            .collect();
        let mut ids = BTreeSet::new();
        for task in tasks {
            ids.insert(task.await.expect("task"));
        }
        assert_eq!(ids.len(), 32, "concurrent inserts take distinct ids");
        for id in &ids {
            store.fetch_one("SELECT * FROM releases WHERE id = $1", &[Param::Text(id)], id).await.expect("its row");
        }
        let pending = store.pending_entries().await.expect("pending");
        assert_eq!(pending.len(), 32, "every committed entry is pending until it is settled");
        let decoded = unseen_audit::Entry::from_canonical_bytes(&pending[0].1).expect("canonical bytes");
        assert_eq!(decoded.reason, "发布", "the entry round-trips byte for byte");

        // A NOT NULL violation rolls back the counter, the row and the entry together.
        let failed = insert_release(store, "e-x", "INSERT INTO releases (id, egress_id) VALUES ($1, $2)").await;
        assert!(failed.is_err());
        assert_eq!(store.next_id("r").await.expect("id"), "r-33", "the failed insert used up no id");
        assert_eq!(store.pending_entries().await.expect("pending").len(), 32, "and left no pending entry");

        // Settled entries' rows go with the next commit.
        for (key, _) in pending.into_iter().take(30) {
            store.settle(key);
        }
        insert_release(store, "e-y", INSERT).await.expect("insert");
        assert_eq!(store.pending_entries().await.expect("pending").len(), 3, "30 settled and deleted, 1 new");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_transactions_commit_in_groups_and_one_that_fails_or_is_dropped_takes_back_only_itself() {
    on_both("groups", async |store: &Store| {
        const INSERT: &str =
            "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, 7)";
        let before = store.group_commits();
        let tasks: Vec<_> = (0..48)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let egress = format!("e-{n}");
                    match n % 3 {
                        0 => Some(insert_release(&store, &egress, INSERT).await.expect("insert")),
                        // A NOT NULL violation: on PostgreSQL it aborts the whole database
                        // transaction until its savepoint is rolled back.
                        1 => {
                            let sql = "INSERT INTO releases (id, egress_id) VALUES ($1, $2)";
                            assert!(insert_release(&store, &egress, sql).await.is_err());
                            None
                        }
                        // Dropped after taking an id and inserting, as a refused request is.
                        _ => {
                            let mut transaction = store.begin().await.expect("begin");
                            let id = transaction.next_id("r").await.expect("id");
                            let params =
                                [Param::Text(&id), Param::Text(&egress), Param::Text("dev"), Param::Text("/d")];
                            transaction.execute(INSERT, &params).await.expect("insert");
                            transaction.log(entry_about(&id));
                            None
                        }
                    }
                })
            })
            .collect();
        let mut committed = BTreeSet::new();
        for task in tasks {
            committed.extend(task.await.expect("task"));
        }
        let stored: BTreeSet<String> = store
            .fetch("SELECT id FROM releases", &[])
            .await
            .expect("rows")
            .into_iter()
            .map(|row| row["id"].clone())
            .collect();
        let expected: BTreeSet<String> = (1..=16).map(|n| format!("r-{n}")).collect();
        assert_eq!((&stored, &committed), (&expected, &expected), "only the committed rows, their ids without gaps");
        assert_eq!(store.pending_entries().await.expect("pending").len(), 16, "only their log entries");
        let groups = store.group_commits() - before;
        assert!((1..16).contains(&groups), "16 concurrent commits shared {groups} group commits");
        // The store goes on as usual afterwards.
        assert_eq!(store.next_id("r").await.expect("id"), "r-17");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_round_trip_text_and_large_integers_and_missing_rows_are_named() {
    on_both("rows", async |store: &Store| {
        let big = 1_764_000_000_000i64; // a millisecond timestamp, beyond 32 bits
        let inserted = store
            .execute(
                "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text("r-1"),
                    Param::Text("e-1"),
                    Param::Text("绿能科技"),
                    Param::Text("/d/r-1"),
                    Param::Int(big),
                ],
            )
            .await
            .expect("insert");
        assert_eq!(inserted, 1);
        let row = store
            .fetch_one("SELECT * FROM releases WHERE id = $1", &[Param::Text("r-1")], "release r-1")
            .await
            .expect("fetch");
        assert_eq!(row["developer"], "绿能科技");
        assert_eq!(row["created_ms"], big.to_string());
        let missing =
            store.fetch_one("SELECT * FROM releases WHERE id = $1", &[Param::Text("r-9")], "release r-9").await;
        assert!(
            matches!(&missing, Err(GatewayError::NotFound(message)) if message == "release r-9 not found"),
            "{missing:?}"
        );
        let duplicate = store
            .execute(
                "INSERT INTO releases (id, egress_id, developer, dir, created_ms) VALUES ($1, $2, $3, $4, $5)",
                &[Param::Text("r-1"), Param::Text("e-2"), Param::Text("x"), Param::Text("/d"), Param::Int(0)],
            )
            .await;
        assert!(duplicate.is_err(), "a primary key holds on both databases");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_the_domain_does_not_name_is_refused_by_the_database() {
    use unseen_gateway::states::{EgressState, GrantState, ImportState, JobState, ScenarioState};
    on_both("states", async |store: &Store| {
        let insert_job = async |state: &str| {
            store
                .execute(
                    "INSERT INTO jobs (id, developer, grant_id, module_hash, mode, state, created_ms) VALUES ($1, 'acme', 'g-1', 'h', 'production', $2, 0)",
                    &[Param::Text(&format!("j-{state}")), Param::Text(state)],
                )
                .await
        };
        for state in JobState::ALL {
            insert_job(state.as_str()).await.expect("every state the domain names is admitted");
        }
        for misspelt in ["finished", "Succeeded", "canceled", ""] {
            assert!(insert_job(misspelt).await.is_err(), "job state {misspelt:?} is refused");
        }
        // Every state column checks, and admits exactly the domain's spellings.
        let tables: [(&str, Vec<&str>); 4] = [
            ("scenarios", ScenarioState::names()),
            ("grants", GrantState::names()),
            ("egress", EgressState::names()),
            ("imports", ImportState::names()),
        ];
        for (table, names) in tables {
            let insert = async |id: &str, state: &str| {
                let sql = match table {
                    "scenarios" => "INSERT INTO scenarios (id, developer, state, application_json, created_ms) VALUES ($1, 'acme', $2, '{}', 0)",
                    "grants" => "INSERT INTO grants (id, scenario_id, developer, json, hash, state, created_ms) VALUES ($1, 's-1', 'acme', '{}', 'h', $2, 0)",
                    "egress" => "INSERT INTO egress (id, developer, job_id, output_name, state, report_json, created_ms) VALUES ($1, 'acme', 'j-1', 'o', $2, '{}', 0)",
                    _ => "INSERT INTO imports (id, developer, grant_id, name, json, sealed, state, rows, bytes, created_ms) VALUES ($1, 'acme', 'g-1', 't', '{}', 's', $2, 0, 0, 0)",
                };
                store.execute(sql, &[Param::Text(id), Param::Text(state)]).await
            };
            for state in &names {
                insert(&format!("{table}-{state}"), state).await.unwrap_or_else(|error| panic!("{table} {state}: {error}"));
            }
            assert!(insert(&format!("{table}-bad"), "pending").await.is_err(), "{table} refuses a state it does not name");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reopening_applies_no_migration_twice_and_keeps_the_data() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("metadata.sqlite");
    let first = Store::open(&path).await.expect("open");
    first.next_id("s").await.expect("id");
    first.close().await;
    let again = Store::open(&path).await.expect("reopen");
    assert_eq!(again.next_id("s").await.expect("id"), "s-2");
    if let Some(scratch) = Scratch::create("reopen").await {
        let first = Store::connect(&scratch.url).await.expect("open");
        first.next_id("s").await.expect("id");
        first.close().await;
        let again = Store::connect(&scratch.url).await.expect("reopen");
        assert_eq!(again.next_id("s").await.expect("id"), "s-2");
        scratch.finish(again).await;
    }
    let wrong = Store::connect("mysql://somewhere/db").await;
    assert!(matches!(&wrong, Err(GatewayError::InvalidInput(message)) if message.contains("\"mysql\"")), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_keeps_its_workflow_in_postgresql() {
    let Some(scratch) = Scratch::create("domain").await else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = DomainOptions { metadata_url: Some(scratch.url.clone()), ..DomainOptions::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "pg.domain", &options).await.expect("the domain opens"));
    // A second domain (another directory, another log) on the same database is refused: it
    // would spend the same grants' budgets and run the same jobs unaware of the first.
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let refused =
        Domain::open_with(elsewhere.path(), "pg.domain", &options).await.expect_err("the database is claimed");
    assert!(
        matches!(&refused, GatewayError::Unavailable(message) if message.contains("in use by another domain")),
        "{refused}"
    );
    let developer = principal("green-tech", Role::Developer);
    let operator = principal("operator", Role::Operator);
    common::register_energy_data(&domain, dir.path(), 300, 5).await;
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let listed = domain.list_scenarios(&operator, "approved").await.expect("list");
    assert!(listed.iter().any(|row| row.grant_id == grant.id), "{listed:?}");
    let job = common::green_energy_job(&domain, &developer, &grant.id).await;
    let mut egress = domain.request_egress(&developer, &job, "kwh_by_industry_district").await.expect("request");
    if egress.state == "awaiting_operator" {
        egress = domain.decide_egress(&operator, &egress.id, true, "ok").await.expect("approve");
    }
    assert!(!egress.release_id.is_empty(), "released: {egress:?}");
    let bundle = domain.release_bundle(&developer, &egress.release_id).await.expect("bundle");
    assert!(!bundle.data.is_empty());
    drop(domain);
    // Closed, the domain's claim ends with it (once the last task holding the domain ends).
    let mut reopened = Domain::open_with(elsewhere.path(), "pg.domain", &options).await;
    for _ in 0..50 {
        if !matches!(reopened, Err(GatewayError::Unavailable(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        reopened = Domain::open_with(elsewhere.path(), "pg.domain", &options).await;
    }
    drop(reopened.expect("the database is free again"));

    // The rows are in PostgreSQL: a second store on the same database sees the grant.
    let store = Store::connect(&scratch.url).await.expect("connect");
    let row = store
        .fetch_one("SELECT * FROM grants WHERE id = $1", &[Param::Text(&grant.id)], "grant")
        .await
        .expect("grant row");
    assert_eq!(row["state"], "active");
    assert!(!dir.path().join("metadata.sqlite").exists(), "no SQLite file beside a PostgreSQL domain");
    scratch.finish(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_commits_durably_in_wal_mode() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&dir.path().join("metadata.sqlite")).await.expect("open");
    // Every connection of the pool, not only the first: hold several at once.
    let checks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let journal = store.fetch("PRAGMA journal_mode", &[]).await.expect("journal mode");
                let synchronous = store.fetch("PRAGMA synchronous", &[]).await.expect("synchronous");
                (journal[0]["journal_mode"].clone(), synchronous[0]["synchronous"].clone())
            })
        })
        .collect();
    for check in checks {
        // synchronous: 2 is FULL.
        assert_eq!(check.await.expect("task"), ("wal".to_string(), "2".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_made_before_migrations_is_adopted_with_its_rows() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("metadata.sqlite");
    {
        // What the store created before it had migrations: the tables, INTEGER columns, no
        // _sqlx_migrations.
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut old = sqlx::AnyConnection::connect(&url).await.expect("create the old database");
        sqlx::raw_sql(
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE releases (id TEXT PRIMARY KEY, egress_id TEXT NOT NULL, developer TEXT NOT NULL,
                 dir TEXT NOT NULL, created_ms INTEGER NOT NULL);
             INSERT INTO counters (name, value) VALUES ('r', 7);
             INSERT INTO releases VALUES ('r-7', 'e-1', 'green-tech', '/d/r-7', 1764000000000);",
        )
        .execute(&mut old)
        .await
        .expect("the old schema");
        old.close().await.expect("close");
    }
    let store = Store::open(&path).await.expect("the old database opens");
    assert_eq!(store.next_id("r").await.expect("id"), "r-8", "the counters carry on");
    let release = store
        .fetch_one("SELECT * FROM releases WHERE id = $1", &[Param::Text("r-7")], "release r-7")
        .await
        .expect("the old row");
    assert_eq!(release["created_ms"], "1764000000000");
    let applied = store.fetch("SELECT version FROM _sqlx_migrations", &[]).await.expect("migrations");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).expect("migrations").count();
    assert_eq!(applied.len(), migrations, "every migration is applied and recorded: {applied:?}");
    // Later migrations altered what the first one created.
    store.fetch("SELECT reason FROM grants", &[]).await.expect("grants have a reason");
    // The tables the old database lacked were created.
    store.fetch("SELECT * FROM egress", &[]).await.expect("egress exists");
    store.close().await;
    Store::open(&path).await.expect("and it reopens");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_opens_at_paths_a_url_would_misread() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for name in ["with space", "hash#mark", "question?mark", "percent%41", "数据域"] {
        let domain = dir.path().join(name);
        std::fs::create_dir(&domain).expect("a directory");
        let path = domain.join("metadata.sqlite");
        let store = Store::open(&path).await.expect("open");
        store.next_id("s").await.expect("id");
        store.close().await;
        assert!(path.exists(), "the file is where it was asked for: {}", path.display());
    }
    let missing = Store::open(&dir.path().join("absent/metadata.sqlite")).await;
    assert!(matches!(&missing, Err(GatewayError::Internal(message)) if message.contains("absent")), "{missing:?}");
}
