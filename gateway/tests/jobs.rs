//! The job queue: a worker pool with a per-organisation limit, and cancelling queued and
//! running jobs.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::principal;
use unseen_gateway::identity::{Principal, Role};
use unseen_gateway::{Domain, DomainOptions, GatewayError};
use unseen_runtime::Mode;

/// Waits until `job` leaves `state`, or panics after `limit`.
async fn wait_while(domain: &Domain, who: &Principal, job: &str, state: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let view = domain.job(who, job, Duration::ZERO).await.expect("job");
        if view.state != state {
            return view.state.to_string();
        }
        assert!(started.elapsed() < limit, "{job} still {state} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_runs_one_job_at_a_time_others_are_not_held_up_and_jobs_cancel() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = DomainOptions { workers: 4, jobs_per_organisation: 1, ..DomainOptions::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "jobs.domain", &options).await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 4).await;
    let mut grants = Vec::new();
    for organisation in ["green-tech", "blue-data"] {
        let developer = principal(organisation, Role::Developer);
        let mut application = unseen_samples::scenarios::green_energy();
        application.limits.wall_clock_ms = 1_500;
        let grant = common::granted(&domain, &developer, application).await;
        let module = domain
            .upload_module(&developer, &grant.id, unseen_samples::modules::RED_TEAM.to_vec())
            .await
            .expect("upload");
        grants.push((developer, grant.id, module.hash));
    }
    let spin = |index: usize| {
        let domain = Arc::clone(&domain);
        let (developer, grant, module) = grants[index].clone();
        async move { domain.run_job(&developer, &grant, &module, Mode::Production, "attack=loop").await.expect("run") }
    };
    let (green, blue) = (&grants[0].0, &grants[1].0);

    let first = spin(0).await;
    assert_eq!(wait_while(&domain, green, &first, "queued", Duration::from_secs(60)).await, "running");
    let second = spin(0).await;
    let other = spin(1).await;
    // The other organisation's job runs beside the first; green-tech's second waits.
    assert_eq!(wait_while(&domain, blue, &other, "queued", Duration::from_secs(60)).await, "running");
    assert_eq!(domain.job(green, &second, Duration::ZERO).await.expect("job").state, "queued");

    let cancelled = domain.cancel_job(green, &second).await.expect("cancel the queued job");
    assert_eq!(cancelled.state, "cancelled");
    let again = domain.cancel_job(green, &second).await;
    assert!(
        matches!(&again, Err(GatewayError::FailedPrecondition(message)) if message.contains("is cancelled")),
        "{again:?}"
    );
    let not_theirs = domain.cancel_job(blue, &first).await;
    assert!(matches!(not_theirs, Err(GatewayError::NotFound(_))), "{not_theirs:?}");

    // Cancelling the running job frees green-tech's slot: its next job runs; the cancelled
    // queued one never does.
    let third = spin(0).await;
    let stopped = domain.cancel_job(green, &first).await.expect("cancel the running job");
    assert_eq!(stopped.state, "cancelled", "{}", stopped.error);
    assert_ne!(wait_while(&domain, green, &third, "queued", Duration::from_secs(60)).await, "queued");
    wait_while(&domain, green, &third, "running", Duration::from_secs(60)).await;
    assert_eq!(domain.job(green, &second, Duration::ZERO).await.expect("job").state, "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_holding_its_jobs_queues_them_and_starts_none_until_reopened() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let developer = principal("green-tech", Role::Developer);
    let options = DomainOptions { hold_jobs: true, ..DomainOptions::default() };
    let domain = Arc::new(Domain::open_with(dir.path(), "jobs.domain", &options).await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 300, 4).await;
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let module = domain
        .upload_module(&developer, &grant.id, unseen_samples::modules::GREEN_ENERGY.to_vec())
        .await
        .expect("upload");
    let job = domain.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.expect("queued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(domain.job(&developer, &job, Duration::ZERO).await.expect("job").state, "queued");
    drop(domain);

    // Opened again, as any domain that stopped with jobs queued: the job is interrupted.
    let reopened = Arc::new(Domain::open(dir.path(), "jobs.domain").await.expect("reopens"));
    let view = reopened.job(&developer, &job, Duration::ZERO).await.expect("job");
    assert_eq!(view.state, "interrupted", "{view:?}");
    let again = reopened.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.expect("queued");
    let finished = reopened.job(&developer, &again, Duration::from_secs(120)).await.expect("job");
    assert_eq!(finished.state, "succeeded", "{}", finished.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_over_its_grades_risk_is_never_offered_and_without_an_offered_sample_no_sample_job_runs() {
    use std::sync::Arc as Shared;

    use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use unseen_gateway::domain::{DatasetRegistration, SampleDecision};
    use unseen_policy::sample::SampleKind;
    use unseen_policy::{AccessMode, ColumnSpec, ColumnTag, Grade, SubjectKind};

    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "samples.domain").await.expect("the domain opens"));
    // General data whose only sensitive numbers are a few small counts: no noise can hide a
    // household's 1 or 2 children, so its de-identified sample is measured and not offered.
    let rows = 3_000;
    let schema = Shared::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("children", DataType::Int32, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Shared::new(StringArray::from((0..rows).map(|i| format!("P{i:06}")).collect::<Vec<_>>())),
            Shared::new(StringArray::from((0..rows).map(|i| ["east", "west"][i % 2]).collect::<Vec<_>>())),
            Shared::new(Int32Array::from((0..rows).map(|i| (i % 2) as i32 + 1).collect::<Vec<_>>())),
        ],
    )
    .expect("batch");
    let path = dir.path().join("households.parquet");
    unseen_samples::data::write_parquet(&table, &path).expect("write");
    let provider = principal("bureau", Role::Provider);
    let registration = DatasetRegistration {
        name: "households".into(),
        grade: Grade::General,
        subject_kind: Some(SubjectKind::Person),
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "district".into(), tag: ColumnTag::Public },
            ColumnSpec { name: "children".into(), tag: ColumnTag::Sensitive },
        ],
    };
    let (_, _, sample) =
        domain.register_dataset(&provider, registration, std::fs::read(&path).expect("read")).await.expect("register");
    assert_eq!(sample.kind, SampleKind::Synthetic, "every dataset starts with a synthetic sample");
    assert!(sample.offered && sample.report.offered, "{}", sample.report.render());
    assert_eq!(sample.report.epsilon, 2.0);

    let developer = principal("acme", Role::Developer);
    let mut application = unseen_samples::scenarios::green_energy();
    application.datasets = vec![unseen_policy::DatasetRequest {
        dataset: "households@v1".into(),
        columns: [("district".to_string(), AccessMode::Visible), ("children".to_string(), AccessMode::AggregateOnly)]
            .into_iter()
            .collect(),
        row_filter: None,
    }];
    application.outputs[0].columns = vec!["district".into(), "children".into()];
    let grant = common::granted(&domain, &developer, application).await;
    let module =
        domain.upload_module(&developer, &grant.id, unseen_samples::modules::RED_TEAM.to_vec()).await.expect("upload");
    assert!(domain.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.is_ok());

    // Real rows: derived on the operator's asking (once: a second look derives nothing), shown
    // with their measured risk, and refused when it is over the grade's threshold.
    let operator = principal("operator", Role::Operator);
    let show = SampleDecision::Show;
    let rows_sample =
        domain.derive_sample(&operator, "households@v1", SampleKind::Deidentified, show, "").await.expect("derive");
    assert!(!rows_sample.report.offered && !rows_sample.offered, "{}", rows_sample.report.render());
    assert!(rows_sample.report.refusals[0].contains("rule sample_risk"), "{:?}", rows_sample.report.refusals);
    let again =
        domain.derive_sample(&operator, "households@v1", SampleKind::Deidentified, show, "").await.expect("show");
    assert_eq!(again.content_hash, rows_sample.content_hash, "derived once per kind");
    let offer = SampleDecision::Offer;
    let refused = domain.derive_sample(&operator, "households@v1", SampleKind::Deidentified, offer, "please").await;
    assert!(
        matches!(&refused, Err(GatewayError::FailedPrecondition(why)) if why.contains("rule sample_risk")),
        "{refused:?}"
    );

    // Withdrawn, no sample-mode job runs; offered again, they do.
    let withdraw = SampleDecision::Withdraw;
    let withdrawn = domain
        .derive_sample(&operator, "households@v1", SampleKind::Synthetic, withdraw, "re-checking the register")
        .await
        .expect("withdraw");
    assert!(!withdrawn.offered);
    let refused = domain.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.expect_err("refused");
    assert!(
        refused.to_string().contains("rule sample_risk") && refused.to_string().contains("households@v1"),
        "{refused}"
    );
    domain.derive_sample(&operator, "households@v1", SampleKind::Synthetic, offer, "checked").await.expect("offer");
    assert!(domain.run_job(&developer, &grant.id, &module.hash, Mode::Sample, "").await.is_ok());
    let regulator = principal("regulator", Role::Regulator);
    let (entries, _) = domain.audit_entries(&regulator, 0, 0, "households@v1").expect("entries");
    let actions: Vec<String> = entries
        .iter()
        .map(|entry| unseen_audit::Entry::from_canonical_bytes(&entry.bytes).expect("an entry").action)
        .collect();
    assert_eq!(
        actions,
        ["dataset.register", "dataset.sample", "dataset.sample", "dataset.sample.withdraw", "dataset.sample.offer"],
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grants_earlier_release_takes_part_in_the_audit_of_its_next_output() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "audit.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 400, 9).await;
    let developer = principal("green-tech", Role::Developer);
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    // The same output twice: the second review audits its cells together with the first
    // release's, and every cell the first withheld stays withheld.
    let first_job = common::green_energy_job(&domain, &developer, &grant.id).await;
    let first = domain.request_egress(&developer, &first_job, "kwh_by_industry_district").await.expect("first");
    assert_eq!(first.state, "awaiting_operator", "{}", first.report.render());
    assert!(dir.path().join("egress").join(format!("{}.released.json", first.id)).exists(), "its cells are kept");
    let second_job = common::green_energy_job(&domain, &developer, &grant.id).await;
    let second = domain.request_egress(&developer, &second_job, "kwh_by_industry_district").await.expect("second");
    let secondary = second.report.rule("secondary").expect("secondary ran");
    assert!(secondary.figure.contains("1 earlier release"), "{}", second.report.render());
    let withheld = |report: &unseen_policy::ReviewReport| -> std::collections::BTreeSet<(usize, String)> {
        report.suppressed_cells.iter().map(|cell| (cell.row, cell.column.clone())).collect()
    };
    assert!(!withheld(&first.report).is_empty());
    assert!(withheld(&first.report).is_subset(&withheld(&second.report)), "{}", second.report.render());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_the_domain_itself_fails_ends_failed_and_is_logged_with_its_cause_class() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "jobs.domain").await.expect("the domain opens"));
    common::register_energy_data(&domain, dir.path(), 50, 3).await;
    let developer = principal("greenfin-analytics", Role::Developer);
    let regulator = principal("regulator", Role::Regulator);
    let grant = common::granted(&domain, &developer, unseen_samples::scenarios::green_energy()).await;
    let module = domain
        .upload_module(&developer, &grant.id, unseen_samples::modules::GREEN_ENERGY.to_vec())
        .await
        .expect("upload");
    // The module's file is lost under the domain (a disk fault, an operator's mistake).
    std::fs::remove_file(dir.path().join("modules").join(format!("{}.wasm", module.hash))).expect("remove");
    let job = domain.run_job(&developer, &grant.id, &module.hash, Mode::Production, "").await.expect("run");
    let finished = domain.job(&developer, &job, Duration::from_secs(60)).await.expect("job");
    assert_eq!(finished.state, "failed");
    assert_eq!(finished.error, "internal error in the domain", "the developer is told no more");

    // The entry is appended just after the state commits: wait for it, within a bound.
    let started = Instant::now();
    let finishes = loop {
        let (entries, _) = domain.audit_entries(&regulator, 0, 0, &job).expect("entries");
        let finishes: Vec<unseen_audit::Entry> = entries
            .iter()
            .map(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("an entry"))
            .filter(|entry| entry.action == "job.finish")
            .collect();
        if !finishes.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break finishes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(finishes.len(), 1, "one job.finish: {finishes:?}");
    assert_eq!(finishes[0].decision, "failed");
    assert!(
        finishes[0].reason.starts_with("internal: ") && finishes[0].reason.contains("module"),
        "{}",
        finishes[0].reason
    );
    assert_eq!(finishes[0].grant.as_deref(), Some(grant.id.as_str()));
}
