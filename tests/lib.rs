//! Shared fixtures for the end-to-end and red-team tests: small synthetic datasets written as
//! Parquet with their samples, and grants built the way an operator would approve them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use unseen_policy::noise::{RandomBits, RandomnessFailed};
use unseen_policy::sample::{SampleKind, SampleParams, SampleReport, SampleRules};
use unseen_policy::{
    AccessMode, DatasetRequest, DatasetVersion, DisclosureParams, Grant, OutputSpec, ScenarioApplication,
};
use unseen_runtime::{CancelFlag, DomainTable, JobReport, JobSpec, Mode, Runtime};

/// Synthetic data of a small domain on disk.
pub struct Fixture {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// population, enterprise and electricity, with samples.
    pub tables: Vec<DomainTable>,
}

/// The catalog entries the demo registers, with the demo's tags.
pub fn catalog() -> Vec<DatasetVersion> {
    vec![
        unseen_samples::scenarios::population(),
        unseen_samples::scenarios::enterprise(),
        unseen_samples::scenarios::electricity(),
        unseen_samples::scenarios::social_insurance(),
    ]
}

/// The fixture's domain sample key.
pub const SAMPLE_KEY: [u8; 32] = [5; 32];

/// A seeded source of randomness (SplitMix64), so fixtures are the same on every run.
#[derive(Debug, Clone)]
pub struct Seeded(pub u64);

impl RandomBits for Seeded {
    fn next_u64(&mut self) -> Result<u64, RandomnessFailed> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(mixed ^ (mixed >> 31))
    }
}

/// Writes `batch` as the real data of `dataset` in `dir` and derives its sample of the grade's
/// default kind, as registration does.
pub async fn register(dir: &Path, dataset: DatasetVersion, batch: &RecordBatch) -> (DomainTable, SampleReport) {
    let kind = SampleRules::of(dataset.grade).default_kind;
    register_kind(dir, dataset, batch, kind).await
}

/// [`register`] with the sample of `kind`, as an operator derives it.
pub async fn register_kind(
    dir: &Path,
    dataset: DatasetVersion,
    batch: &RecordBatch,
    kind: SampleKind,
) -> (DomainTable, SampleReport) {
    let production_path = dir.join(format!("{}.parquet", dataset.name));
    let sample_path = dir.join(format!("{}-sample.parquet", dataset.name));
    unseen_samples::data::write_parquet(batch, &production_path).expect("write parquet");
    let report = unseen_runtime::sample::derive_sample(
        kind,
        &dataset,
        &production_path,
        &sample_path,
        &SAMPLE_KEY,
        &SampleParams::default(),
        &mut Seeded(17),
    )
    .await
    .expect("derive sample");
    (DomainTable { dataset, production_path, sample_path }, report)
}

/// Writes small synthetic datasets and their samples (synthetic, every dataset's default).
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let population = unseen_samples::data::population(3_000, 11);
    let enterprises = unseen_samples::data::enterprises(2_000, 11);
    let electricity = unseen_samples::data::electricity(&enterprises, 12, 11);
    let insurance = unseen_samples::data::social_insurance(&population, &enterprises, 12, 11);
    let mut tables = Vec::new();
    for (dataset, batch) in catalog().into_iter().zip([&population, &enterprises, &electricity, &insurance]) {
        let (table, report) = register(dir.path(), dataset, batch).await;
        assert!(report.offered, "the fixture's samples are offered: {}", report.render());
        tables.push(table);
    }
    Fixture { dir, tables }
}

/// A grant over `columns` (`dataset@v1`, column, mode), threshold k = 10.
pub fn grant(id: &str, columns: &[(&str, &str, AccessMode)], outputs: &[(&str, &[&str])]) -> Grant {
    let mut datasets: BTreeMap<String, BTreeMap<String, AccessMode>> = BTreeMap::new();
    for (dataset, column, mode) in columns {
        datasets.entry((*dataset).into()).or_default().insert((*column).into(), *mode);
    }
    let application = ScenarioApplication {
        title: "test".into(),
        purpose: "test".into(),
        developer: "acme".into(),
        datasets: datasets
            .into_iter()
            .map(|(dataset, columns)| DatasetRequest { dataset, columns, row_filter: None })
            .collect(),
        outputs: outputs
            .iter()
            .map(|(name, columns)| OutputSpec {
                name: (*name).into(),
                columns: columns.iter().map(|c| (*c).into()).collect(),
                max_rows: 10_000,
                verification: None,
            })
            .collect(),
        disclosure: DisclosureParams { threshold_k: 10, auto_release: true, ..Default::default() },
        validity_days: 30,
        limits: Default::default(),
    };
    Grant::freeze(id.into(), "s-test".into(), application, "operator".into(), 0, [3; 32])
}

/// The green-energy grant of the demo.
pub fn green_grant() -> Grant {
    Grant::freeze(
        "g-green".into(),
        "s-1".into(),
        unseen_samples::scenarios::green_energy(),
        "operator".into(),
        0,
        [3; 32],
    )
}

/// A grant that uses every access mode and a row filter, for the policy rule files:
///
/// | dataset | column | mode |
/// |---|---|---|
/// | population | person_id (subject) | pseudonymised |
/// | population | id_card | join_only |
/// | population | sex, district | visible |
/// | population | birth_year | filter_only |
/// | population | name | denied (not named) |
/// | enterprise | uscc (subject) | join_only |
/// | enterprise | industry, district | visible |
/// | enterprise | employees | aggregate_only |
/// | electricity | uscc (subject) | join_only |
/// | electricity | month | visible |
/// | electricity | kwh | aggregate_only |
///
/// Rows of population in 安吉县 are outside the grant (`district <> '安吉县'`).
pub fn mixed_grant(id: &str, key: [u8; 32]) -> Grant {
    let mut grant = grant(
        id,
        &[
            ("population@v1", "person_id", AccessMode::Pseudonymised),
            ("population@v1", "id_card", AccessMode::JoinOnly),
            ("population@v1", "sex", AccessMode::Visible),
            ("population@v1", "district", AccessMode::Visible),
            ("population@v1", "birth_year", AccessMode::FilterOnly),
            ("enterprise@v1", "uscc", AccessMode::JoinOnly),
            ("enterprise@v1", "industry", AccessMode::Visible),
            ("enterprise@v1", "district", AccessMode::Visible),
            ("enterprise@v1", "employees", AccessMode::AggregateOnly),
            ("electricity@v1", "uscc", AccessMode::JoinOnly),
            ("electricity@v1", "month", AccessMode::Visible),
            ("electricity@v1", "kwh", AccessMode::AggregateOnly),
        ],
        &[],
    );
    for request in &mut grant.application.datasets {
        if request.dataset == "population@v1" {
            request.row_filter = Some("district <> '安吉县'".into());
        }
    }
    grant.pseudonym_key_hex = hex_key(key);
    grant
}

fn hex_key(key: [u8; 32]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads a whole file, for tests that tamper with one.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// Runs `module` under `grant` on the fixture's tables on a blocking thread, as the gateway does.
pub async fn run(
    runtime: &Arc<Runtime>,
    module: &'static [u8],
    grant: Grant,
    fixture: &Fixture,
    mode: Mode,
) -> JobReport {
    run_with(runtime, module, grant, fixture, mode, "").await
}

/// [`run`] with job parameters.
pub async fn run_with(
    runtime: &Arc<Runtime>,
    module: &'static [u8],
    grant: Grant,
    fixture: &Fixture,
    mode: Mode,
    params: &str,
) -> JobReport {
    run_cancellable(runtime, module, grant, fixture, mode, params, CancelFlag::default()).await
}

/// [`run_with`] with a cancel flag another task may set.
pub async fn run_cancellable(
    runtime: &Arc<Runtime>,
    module: &'static [u8],
    grant: Grant,
    fixture: &Fixture,
    mode: Mode,
    params: &str,
    cancel: CancelFlag,
) -> JobReport {
    let runtime = runtime.clone();
    let tables = fixture.tables.clone();
    let params = params.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let job = JobSpec { module, grant: &grant, tables: &tables, mode, params: &params, seed: 1, cancel: &cancel };
        runtime.run_job(&job, handle)
    })
    .await
    .expect("the job thread finished")
}
