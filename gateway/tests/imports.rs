//! Social data (社会数据; docs/policy-basis.md, social data): a developer imports its own table
//! for its grant.
//! No job sees it before an operator approves it; afterwards it joins the granted public
//! data, its keys only join, no other organisation can see or use it, it is encrypted at
//! rest, a release names it, and terminating the grant destroys its key and ciphertext.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::principal;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use unseen_gateway::domain::{DatasetRegistration, GrantAction, JobView};
use unseen_gateway::identity::{Principal, Role};
use unseen_gateway::{Domain, GatewayError};
use unseen_policy::{ColumnSpec, ColumnTag, Grade, SubjectKind};
use unseen_runtime::Mode;

const OUTPUT: &str = "kwh_by_industry_district";
const JOIN: &str = "SELECT c.segment, SUM(e.kwh) AS total_kwh FROM electricity e JOIN customers c ON e.uscc = c.uscc \
                    GROUP BY c.segment";

/// The developer's customer list: every registered enterprise, a phone and a segment.
fn customers(enterprises: usize, seed: u64) -> Vec<u8> {
    let register = unseen_samples::data::enterprises(enterprises, seed);
    let usccs = register.column_by_name("uscc").expect("uscc").clone();
    let rows = usccs.len();
    let phones: StringArray = (0..rows).map(|row| Some(format!("1390000{row:04}"))).collect();
    let segments: StringArray = (0..rows).map(|row| Some(if row % 2 == 0 { "retail" } else { "wholesale" })).collect();
    let schema = Schema::new(vec![
        Field::new("uscc", DataType::Utf8, false),
        Field::new("contact_phone", DataType::Utf8, true),
        Field::new("segment", DataType::Utf8, true),
    ]);
    let batch =
        RecordBatch::try_new(Arc::new(schema), vec![usccs, Arc::new(phones), Arc::new(segments)]).expect("a batch");
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    unseen_samples::data::write_parquet(&batch, file.path()).expect("write parquet");
    std::fs::read(file.path()).expect("read parquet")
}

fn registration(name: &str) -> DatasetRegistration {
    DatasetRegistration {
        name: name.into(),
        grade: Grade::General,
        subject_kind: Some(SubjectKind::Enterprise),
        columns: vec![
            ColumnSpec { name: "uscc".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "contact_phone".into(), tag: ColumnTag::Identifier },
            ColumnSpec { name: "segment".into(), tag: ColumnTag::Public },
        ],
    }
}

/// Runs the SQL probe with `params` under `grant_id` and waits for it.
async fn probe(domain: &Arc<Domain>, who: &Principal, grant_id: &str, mode: Mode, params: &str) -> JobView {
    let module = domain
        .upload_module(who, grant_id, unseen_samples::modules::BENCH_PROBE.to_vec())
        .await
        .expect("upload the probe");
    let job = domain.run_job(who, grant_id, &module.hash, mode, params).await.expect("run");
    domain.job(who, &job, Duration::from_secs(120)).await.expect("job")
}

/// The first query's outcome and message.
fn verdict(view: &JobView) -> (String, String) {
    let query = view.queries.first().unwrap_or_else(|| panic!("job {} ran no query: {}", view.id, view.error));
    (query.outcome.clone(), query.message.clone().unwrap_or_default())
}

fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map_while(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_table_joins_only_after_approval_only_for_its_grant_and_dies_with_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "imports.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 5).await;
    let developer = principal("green-tech", Role::Developer);
    let rival = principal("rival-analytics", Role::Developer);
    let operator = principal("operator", Role::Operator);
    let regulator = principal("regulator", Role::Regulator);
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let rival_grant = common::granted(&domain, &rival, unseen_samples::scenarios::green_energy()).await;
    let table = customers(300, 5);

    // Bad imports are refused, naming what was wrong.
    let shadow = domain.import_data(&developer, &grant.id, registration("electricity"), table.clone()).await;
    assert!(
        matches!(&shadow, Err(GatewayError::InvalidInput(message)) if message.contains("electricity@v1")),
        "{shadow:?}"
    );
    let mut untagged = registration("customers");
    untagged.columns.pop();
    let refused = domain.import_data(&developer, &grant.id, untagged, table.clone()).await;
    assert!(
        matches!(&refused, Err(GatewayError::InvalidInput(message)) if message.contains("\"segment\"")),
        "{refused:?}"
    );
    let garbage = domain.import_data(&developer, &grant.id, registration("customers"), b"not parquet".to_vec()).await;
    assert!(matches!(&garbage, Err(GatewayError::InvalidInput(message)) if message.contains("Parquet")), "{garbage:?}");
    let foreign = domain.import_data(&rival, &grant.id, registration("customers"), table.clone()).await;
    assert!(matches!(foreign, Err(GatewayError::NotFound(_))), "another organisation's grant: {foreign:?}");
    let not_a_developer = domain.import_data(&operator, &grant.id, registration("customers"), table.clone()).await;
    assert!(matches!(not_a_developer, Err(GatewayError::Denied(_))), "{not_a_developer:?}");

    let import =
        domain.import_data(&developer, &grant.id, registration("customers"), table.clone()).await.expect("import");
    assert_eq!((import.state.as_str(), import.dataset.id().as_str(), import.rows), ("submitted", "customers@v1", 300));

    // At rest it is ciphertext under a key of its own.
    let sealed = files_in(&dir.path().join("imports"));
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let ciphertext = std::fs::read(&sealed[0]).expect("the sealed table");
    assert!(!ciphertext.windows(4).any(|window| window == b"PAR1"), "the table is stored encrypted");
    assert!(!ciphertext.windows(11).any(|window| window == b"13900000000"), "no phone number in the clear");
    assert_eq!(files_in(&dir.path().join("keys/imports")).len(), 1);

    // Before approval no job sees it.
    let before = probe(&domain, &developer, &grant.id, Mode::Production, &format!("sql={JOIN}")).await;
    let (outcome, message) = verdict(&before);
    assert_ne!(outcome, "allowed", "{message}");
    assert!(message.contains("\"customers\""), "{message}");

    // The operator sees what it is, not what it holds, and approves it.
    let listed = domain.list_imports(&operator, "submitted").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dataset.columns.len(), 3);
    let rejected_without_reason = domain.decide_import(&operator, &import.id, false, " ").await;
    assert!(matches!(rejected_without_reason, Err(GatewayError::InvalidInput(_))), "{rejected_without_reason:?}");
    let approved = domain.decide_import(&operator, &import.id, true, "lawfully collected customer list").await;
    assert_eq!(approved.expect("approve").state, "approved");
    let twice = domain.decide_import(&operator, &import.id, false, "changed my mind").await;
    assert!(matches!(twice, Err(GatewayError::FailedPrecondition(_))), "{twice:?}");

    // Now it joins the granted data; groups still need k distinct enterprises.
    let joined = probe(&domain, &developer, &grant.id, Mode::Production, &format!("sql={JOIN}")).await;
    assert_eq!(joined.state, "succeeded", "{}", joined.error);
    let (outcome, message) = verdict(&joined);
    assert_eq!(outcome, "allowed", "{message}");
    assert_eq!(joined.queries[0].rows, 2, "one row per segment");
    // On the sample too: its subject tokens join the public samples'.
    let sampled = probe(&domain, &developer, &grant.id, Mode::Sample, &format!("sql={JOIN}")).await;
    assert_eq!(verdict(&sampled).0, "allowed", "{}", verdict(&sampled).1);
    assert!(sampled.guest_log.iter().any(|line| line == "2 rows streamed"), "{:?}", sampled.guest_log);
    // Its keys only join: the developer's own phone numbers do not come back out either.
    let phones =
        probe(&domain, &developer, &grant.id, Mode::Production, "sql=SELECT contact_phone FROM customers").await;
    let (outcome, message) = verdict(&phones);
    assert_ne!(outcome, "allowed");
    assert!(message.contains("contact_phone") && message.contains("join_only"), "{message}");
    // Its keys pick no granted rows outside an aggregate: that would be a lookup of the
    // enterprises the developer chose (with one row per target, of each of them).
    let lookup = probe(
        &domain,
        &developer,
        &grant.id,
        Mode::Production,
        "sql=SELECT en.industry, en.district, c.segment FROM enterprise en JOIN customers c ON en.uscc = c.uscc",
    )
    .await;
    let (outcome, message) = verdict(&lookup);
    assert_eq!(outcome, "imported_lookup", "{message}");
    assert!(message.contains("customers@v1") && message.contains("enterprise@v1"), "{message}");
    assert!(files_in(&dir.path().join("work")).is_empty(), "decrypted copies are removed after each job");

    // Another organisation neither sees nor uses it, even with the same table name in its SQL.
    assert!(domain.list_imports(&rival, "").await.expect("list").is_empty());
    assert!(matches!(domain.import(&rival, &import.id).await, Err(GatewayError::NotFound(_))));
    let theirs = probe(&domain, &rival, &rival_grant.id, Mode::Production, &format!("sql={JOIN}")).await;
    let (outcome, message) = verdict(&theirs);
    assert_ne!(outcome, "allowed");
    assert!(message.contains("\"customers\"") && message.contains(&rival_grant.id), "{message}");

    // A release of a result computed with it names it in the signed manifest.
    let filtered = format!(
        "emit={OUTPUT}\nsql=SELECT en.industry, en.district, SUM(e.kwh) AS total_kwh FROM electricity e \
         JOIN enterprise en ON e.uscc = en.uscc JOIN customers c ON c.uscc = e.uscc \
         WHERE c.segment IN ('retail', 'wholesale') GROUP BY en.industry, en.district"
    );
    let job = probe(&domain, &developer, &grant.id, Mode::Production, &filtered).await;
    assert_eq!(job.state, "succeeded", "{} {:?}", job.error, job.queries);
    let egress = domain.request_egress(&developer, &job.id, OUTPUT).await.expect("egress");
    assert_eq!(egress.state, "awaiting_operator", "{:?}", egress.report);
    let released = domain.decide_egress(&operator, &egress.id, true, "fine").await.expect("approve");
    let bundle = domain.release_bundle(&developer, &released.release_id).await.expect("bundle");
    let manifest =
        unseen_gateway::verify_release(&bundle.manifest, &bundle.signature, &bundle.data, &bundle.public_key)
            .expect("the release verifies");
    assert_eq!(manifest.imports, vec![(format!("{} customers@v1", import.id), import.dataset.content_hash.clone())]);

    // A rejected import is destroyed at once.
    let second =
        domain.import_data(&developer, &grant.id, registration("prospects"), table.clone()).await.expect("import");
    let rejected = domain.decide_import(&operator, &second.id, false, "source not documented").await.expect("reject");
    assert_eq!((rejected.state.as_str(), rejected.reason.as_str()), ("rejected", "source not documented"));
    assert_eq!(files_in(&dir.path().join("imports")).len(), 1, "only the approved table is held");
    assert_eq!(files_in(&dir.path().join("keys/imports")).len(), 1);

    // Terminating the grant destroys the key and the ciphertext; the log keeps the history.
    domain.change_grant(&operator, &grant.id, GrantAction::Terminate, "contract ended").await.expect("terminate");
    assert!(files_in(&dir.path().join("imports")).is_empty(), "the encrypted table is gone");
    assert!(files_in(&dir.path().join("keys/imports")).is_empty(), "its key is gone");
    let destroyed = domain.import(&developer, &import.id).await.expect("the record stays");
    assert_eq!(destroyed.state, "destroyed");
    assert!(destroyed.reason.contains("contract ended"), "{}", destroyed.reason);
    let (entries, _) = domain.audit_entries(&regulator, 0, 0, &import.id).expect("entries");
    let actions: Vec<String> = entries
        .iter()
        .map(|entry| unseen_audit::Entry::from_canonical_bytes(&entry.bytes).expect("an entry").action)
        .collect();
    assert_eq!(actions, ["import.submit", "import.approve", "import.destroy"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_no_held_import_names_are_removed_when_the_domain_opens() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let developer = principal("green-tech", Role::Developer);
    {
        let domain = Domain::open(dir.path(), "sweep.domain").await.expect("the domain opens");
        common::register_energy_data(&domain, dir.path(), 100, 2).await;
        let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
        domain.import_data(&developer, &grant.id, registration("customers"), customers(100, 2)).await.expect("import");
    }
    // What a crash between writing an import's files and committing its row leaves, and a
    // job's decrypted copy.
    std::fs::write(dir.path().join("imports/00ff.sealed"), b"orphan").expect("write");
    std::fs::write(dir.path().join("keys/imports/00ff.key"), [1u8; 32]).expect("write");
    // A re-import's interrupted write beside a held table, named after its token.
    let held = files_in(&dir.path().join("imports")).pop().expect("the held table");
    std::fs::write(held.with_extension("partial"), b"half a table").expect("write");
    std::fs::create_dir_all(dir.path().join("work/j-9")).expect("mkdir");
    std::fs::write(dir.path().join("work/j-9/i-1.parquet"), b"PAR1").expect("write");
    let domain = Domain::open(dir.path(), "sweep.domain").await.expect("the domain reopens");
    assert_eq!(files_in(&dir.path().join("imports")).len(), 1, "the held import stays, the orphan goes");
    assert_eq!(files_in(&dir.path().join("keys/imports")).len(), 1);
    assert!(!dir.path().join("work").exists(), "decrypted copies do not outlive a crash");
    assert_eq!(domain.list_imports(&developer, "").await.expect("list").len(), 1);
}
