//! Attacks on the development sample, the one path where rows reach a developer without
//! review. Each one is an attack that worked on the first derivation (a fixed 20% of real
//! rows, real categories, surnames and prefixes, ±10% noise keyed by row position, one token
//! key for samples and imports); each asserts the class of leak is closed and names the rule.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use unseen_policy::sample::{GrantSampleKeys, SampleKind, stored_token};
use unseen_policy::{AccessMode, ColumnSpec, ColumnTag, DatasetVersion, Grade, SubjectKind};
use unseen_runtime::pseudonym::Pseudonymiser;
use unseen_runtime::{DomainTable, GovernedSession, Mode};
use unseen_tests::{SAMPLE_KEY, fixture, grant, green_grant, register_kind};

fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|batch| batch.expect("batch")).collect();
    let schema = batches.first().map(|batch| batch.schema()).expect("a batch");
    datafusion::arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

fn texts(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let values = cast(batch.column_by_name(column).expect("column"), &DataType::Utf8).expect("cast");
    values.as_string::<i32>().iter().map(|value| value.map(str::to_string)).collect()
}

fn numbers(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    let values = cast(batch.column_by_name(column).expect("column"), &DataType::Float64).expect("cast");
    values.as_primitive::<Float64Type>().iter().collect()
}

async fn rows_of(session: &GovernedSession, sql: &str) -> Vec<RecordBatch> {
    session.query(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}")).batches
}

fn column_texts(batches: &[RecordBatch], index: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|batch| {
            let values = cast(batch.column(index), &DataType::Utf8).expect("cast");
            values.as_string::<i32>().iter().map(|value| value.map(str::to_string)).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_real_key_identifier_or_any_prefix_of_one_reaches_a_sample() {
    let fixture = fixture().await;
    // Every real value of every subject and identifier column, and of text columns the
    // derivation tokenised (the employer's USCC, enterprise names), across all datasets.
    let mut secrets: BTreeSet<String> = BTreeSet::new();
    for table in &fixture.tables {
        let real = read_parquet(&table.production_path);
        let sample = read_parquet(&table.sample_path);
        for column in &table.dataset.columns {
            let tokenised = sample
                .schema()
                .field_with_name(&column.name)
                .is_ok_and(|field| field.metadata().contains_key(unseen_policy::sample::TOKEN_METADATA_KEY));
            if matches!(column.tag, ColumnTag::Subject | ColumnTag::Identifier) || tokenised {
                secrets.extend(texts(&real, &column.name).into_iter().flatten());
            }
        }
    }
    let prefixes: BTreeSet<String> = secrets.iter().map(|secret| secret.chars().take(4).collect()).collect();
    let mut cells = 0;
    for table in &fixture.tables {
        let sample = read_parquet(&table.sample_path);
        assert!(sample.num_rows() > 0, "{} has a sample", table.dataset.id());
        for field in sample.schema().fields() {
            // The first derivation masked identifiers but kept their first characters.
            let masked = field.metadata().contains_key(unseen_policy::sample::TOKEN_METADATA_KEY)
                || table.dataset.tag_of(field.name()) == Some(ColumnTag::Identifier);
            for value in texts(&sample, field.name()).into_iter().flatten() {
                cells += 1;
                assert!(!secrets.contains(&value), "{}.{} holds a real key: {value}", table.dataset.id(), field.name());
                let prefix: String = value.chars().take(4).collect();
                assert!(
                    !masked || !prefixes.contains(&prefix),
                    "{}.{} keeps the first characters of a real identifier: {value}",
                    table.dataset.id(),
                    field.name()
                );
            }
        }
    }
    assert!(cells > 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_grants_see_tokens_that_link_neither_to_each_other_nor_to_the_stored_sample() {
    let fixture = fixture().await;
    let columns = [
        ("enterprise@v1", "uscc", AccessMode::Visible),
        ("enterprise@v1", "industry", AccessMode::Visible),
        ("population@v1", "person_id", AccessMode::Visible),
    ];
    let mut first = grant("g-first", &columns, &[]);
    first.pseudonym_key_hex = "11".repeat(32);
    let mut second = grant("g-second", &columns, &[]);
    second.pseudonym_key_hex = "22".repeat(32);
    let mut seen: Vec<BTreeSet<String>> = Vec::new();
    for grant in [&first, &second] {
        let session = GovernedSession::new(grant, &fixture.tables, Mode::Sample).await.expect("session");
        let batches = rows_of(&session, "SELECT uscc FROM enterprise").await;
        let people = rows_of(&session, "SELECT person_id FROM population").await;
        let tokens: BTreeSet<String> =
            column_texts(&batches, 0).into_iter().chain(column_texts(&people, 0)).flatten().collect();
        assert!(tokens.len() > 300, "the sample has rows: {}", tokens.len());
        seen.push(tokens);
    }
    assert!(seen[0].is_disjoint(&seen[1]), "the same subject has unrelated tokens under two grants");
    let stored: BTreeSet<String> = fixture
        .tables
        .iter()
        .flat_map(|table| {
            let sample = read_parquet(&table.sample_path);
            table.dataset.subject_column().map(|column| texts(&sample, column)).unwrap_or_default()
        })
        .flatten()
        .collect();
    assert!(seen.iter().all(|tokens| tokens.is_disjoint(&stored)), "modules never see the domain's stored tokens");
}

#[tokio::test(flavor = "multi_thread")]
async fn perturbed_values_resist_an_attacker_who_knows_the_method_and_rows_lose_their_place() {
    // The enterprise register is general data: an operator may offer it de-identified.
    let dir = tempfile::tempdir().expect("temporary directory");
    let register = unseen_samples::data::enterprises(2_000, 11);
    let (enterprise, report) =
        register_kind(dir.path(), unseen_samples::scenarios::enterprise(), &register, SampleKind::Deidentified).await;
    assert!(report.offered, "{}", report.render());
    let real = read_parquet(&enterprise.production_path);
    let sample = read_parquet(&enterprise.sample_path);
    // The test knows the domain's key, so it can tell which real company each sample row is.
    let position: HashMap<String, usize> = texts(&real, "uscc")
        .into_iter()
        .enumerate()
        .map(|(row, uscc)| (stored_token(&SAMPLE_KEY, &uscc.expect("uscc")), row))
        .collect();
    let rows: Vec<usize> = texts(&sample, "uscc").into_iter().map(|token| position[&token.expect("token")]).collect();
    assert!(rows.len() > 200);
    for column in ["registered_capital", "employees"] {
        let truth = numbers(&real, column);
        let published = numbers(&sample, column);
        // The attack on the first derivation: one of 100 factors 0.90…1.10 undoes the noise.
        let best = (0..=100)
            .map(|step| {
                let factor = 0.9 + 0.002 * f64::from(step);
                rows.iter()
                    .zip(&published)
                    .filter(|&(&row, value)| {
                        let (Some(truth), Some(value)) = (truth[row], value) else { return false };
                        (value / factor - truth).abs() <= 0.01 * truth.abs()
                    })
                    .count()
            })
            .max()
            .unwrap_or(0);
        let share = best as f64 / rows.len() as f64;
        assert!(share < 0.10, "{column}: the best factor recovers {:.1}% of values within 1%", 100.0 * share);
    }
    // Rows no longer follow the file: the sample's order is uncorrelated with the real one.
    let n = rows.len() as f64;
    let mut ranked: Vec<(usize, usize)> = rows.iter().copied().enumerate().collect();
    ranked.sort_by_key(|&(_, row)| row);
    let d2: f64 = ranked.iter().enumerate().map(|(rank, (position, _))| (rank as f64 - *position as f64).powi(2)).sum();
    let spearman = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
    assert!(spearman.abs() < 0.15, "sample order follows the file's: ρ = {spearman:.3}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_pulled_one_at_a_time_under_a_narrow_grant_are_no_real_values() {
    let fixture = fixture().await;
    let electricity = fixture.tables.iter().find(|table| table.dataset.name == "electricity").expect("electricity");
    let real: BTreeSet<u64> =
        numbers(&read_parquet(&electricity.production_path), "kwh").into_iter().flatten().map(f64::to_bits).collect();
    // kWh is aggregate_only and the company join_only: in production every one-row "group" is
    // withheld; in sample mode no threshold applies, so the sample itself must hold no real value.
    let session = GovernedSession::new(&green_grant(), &fixture.tables, Mode::Sample).await.expect("session");
    let mut pulled = 0;
    for offset in 0..60 {
        let sql = format!("SELECT SUM(kwh) AS v FROM (SELECT kwh FROM electricity LIMIT 1 OFFSET {offset}) AS one");
        let batches = rows_of(&session, &sql).await;
        for batch in &batches {
            let values = cast(batch.column(0), &DataType::Float64).expect("cast");
            for value in values.as_primitive::<Float64Type>().iter().flatten() {
                pulled += 1;
                assert!(!real.contains(&value.to_bits()), "row {offset} of the sample is a real reading: {value}");
            }
        }
    }
    assert_eq!(pulled, 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_district_of_three_residents_reaches_no_sample_of_either_kind() {
    for kind in [SampleKind::Synthetic, SampleKind::Deidentified] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let people = unseen_samples::data::population(3_000, 11);
        let districts = texts(&people, "district");
        let moved: StringArray = districts
            .iter()
            .enumerate()
            .map(|(row, district)| if row < 3 { Some("小镇".to_string()) } else { district.clone() })
            .collect();
        let index = people.schema().index_of("district").expect("district");
        let mut columns = people.columns().to_vec();
        columns[index] = Arc::new(moved);
        let people = RecordBatch::try_new(people.schema(), columns).expect("batch");
        let dataset = DatasetVersion { grade: Grade::General, ..unseen_samples::scenarios::population() };
        let (table, report) = register_kind(dir.path(), dataset, &people, kind).await;
        assert!(report.offered, "{}", report.render());
        let grant = grant(
            "g-districts",
            &[("population@v1", "district", AccessMode::Visible), ("population@v1", "birth_year", AccessMode::Visible)],
            &[],
        );
        let session = GovernedSession::new(&grant, &[table], Mode::Sample).await.expect("session");
        let batches = rows_of(
            &session,
            "SELECT district, COUNT(*) AS n, MIN(birth_year) AS oldest FROM population GROUP BY district",
        )
        .await;
        let shown = column_texts(&batches, 0);
        assert!(shown.len() >= 3, "{shown:?}");
        assert!(
            !shown.iter().any(|district| district.as_deref() == Some("小镇")),
            "{kind:?}: the district of 3 residents is in the sample: {shown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_of_guessed_ids_labels_no_sample_row_with_its_person() {
    let fixture = fixture().await;
    let population = fixture.tables.iter().find(|table| table.dataset.name == "population").expect("population");
    let ids: Vec<String> =
        texts(&read_parquet(&population.production_path), "person_id").into_iter().flatten().collect();
    // The developer imports every id it can guess, with a copy it may print.
    let dir = tempfile::tempdir().expect("temporary directory");
    let import = DatasetVersion {
        name: "guesses".into(),
        version: 1,
        provider: "acme".into(),
        grade: Grade::General,
        content_hash: String::new(),
        subject_kind: Some(SubjectKind::Person),
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "guess".into(), tag: ColumnTag::Public },
        ],
    };
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
        datafusion::arrow::datatypes::Field::new("person_id", DataType::Utf8, false),
        datafusion::arrow::datatypes::Field::new("guess", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(ids.clone())), Arc::new(StringArray::from(ids.clone()))],
    )
    .expect("batch");
    let production_path = dir.path().join("guesses.parquet");
    let sample_path = dir.path().join("guesses.sample.parquet");
    unseen_samples::data::write_parquet(&batch, &production_path).expect("write");
    let granted = grant("g-import", &[("population@v1", "person_id", AccessMode::Visible)], &[]);
    let keys = GrantSampleKeys::of(&granted.pseudonym_key().expect("key"));
    let pool =
        unseen_runtime::sample::subject_pool(&[("person_id", population.sample_path.as_path())]).await.expect("pool");
    unseen_runtime::sample::derive_import_sample(&import, &production_path, &sample_path, &pool, &keys)
        .await
        .expect("import sample");
    let mut tables = fixture.tables.clone();
    tables.push(DomainTable { dataset: import.clone(), production_path, sample_path });
    let job_grant = granted.with_imports(std::slice::from_ref(&import)).expect("imports");
    let session = GovernedSession::new(&job_grant, &tables, Mode::Sample).await.expect("session");
    let sql = "SELECT g.guess, MIN(p.person_id) AS token FROM guesses g JOIN population p ON g.person_id = p.person_id GROUP BY g.guess";
    let batches = rows_of(&session, sql).await;
    let guesses = column_texts(&batches, 0);
    let tokens = column_texts(&batches, 1);
    assert!(guesses.len() > 500, "the import still joins the sample: {} rows", guesses.len());
    // What the module would see for each guessed person, were the label right.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &keys.tokens);
    let labelled_right = guesses
        .iter()
        .zip(&tokens)
        .filter(|(guess, token)| {
            let truth = Pseudonymiser::token(&key, &stored_token(&SAMPLE_KEY, guess.as_deref().expect("guess")));
            token.as_deref() == Some(truth.as_str())
        })
        .count();
    let share = labelled_right as f64 / guesses.len() as f64;
    assert!(share < 0.01, "{:.1}% of joined rows carry their own person's label", 100.0 * share);
}
