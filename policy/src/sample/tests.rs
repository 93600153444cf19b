use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Schema};

use super::*;
use crate::noise::{RandomBits, RandomnessFailed};
use crate::{ColumnSpec, SubjectKind};

/// A seeded generator for tests (SplitMix64).
struct Seeded(u64);

impl RandomBits for Seeded {
    fn next_u64(&mut self) -> Result<u64, RandomnessFailed> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
}

fn dataset(grade: Grade) -> DatasetVersion {
    DatasetVersion {
        name: "people".into(),
        version: 1,
        provider: "bureau".into(),
        grade,
        content_hash: "00".into(),
        subject_kind: Some(SubjectKind::Person),
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "name".into(), tag: ColumnTag::Identifier },
            ColumnSpec { name: "district".into(), tag: ColumnTag::Quasi },
            ColumnSpec { name: "birth_year".into(), tag: ColumnTag::Quasi },
            ColumnSpec { name: "income".into(), tag: ColumnTag::Sensitive },
        ],
    }
}

/// People with a skewed district (one of three residents), birth years and incomes.
fn people(rows: usize, seed: u64) -> RecordBatch {
    let mut random = Seeded(seed);
    let mut next = |bound: u64| random.next_u64().unwrap() % bound;
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut districts = Vec::new();
    let mut years = Vec::new();
    let mut incomes = Vec::new();
    for index in 0..rows {
        ids.push(format!("P{index:08}"));
        names.push(format!("王{}", ["伟", "芳", "娜", "敏"][index % 4]));
        districts.push(if index < 3 {
            "tiny".to_string()
        } else {
            ["east", "west", "north", "south"][next(4) as usize].to_string()
        });
        years.push(1940 + next(70) as i32);
        incomes.push(20_000.0 + next(200_000) as f64 + 0.37);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("birth_year", DataType::Int32, false),
        Field::new("income", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(districts)),
            Arc::new(Int32Array::from(years)),
            Arc::new(Float64Array::from(incomes)),
        ],
    )
    .unwrap()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = arrow::compute::cast(batch.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    column.as_string::<i32>().iter().map(|value| value.map(str::to_string)).collect()
}

fn derive_people(kind: SampleKind, grade: Grade, rows: usize) -> (RecordBatch, Derived) {
    let table = people(rows, 7);
    let derived = derive(kind, &dataset(grade), &table, &[3; 32], &SampleParams::default(), &mut Seeded(11)).unwrap();
    (table, derived)
}

#[test]
fn a_deidentified_sample_holds_no_real_key_name_or_rare_district() {
    let (table, derived) = derive_people(SampleKind::Deidentified, Grade::General, 20_000);
    let sample = &derived.table;
    assert!((3_000..5_000).contains(&sample.num_rows()), "about 20% of people: {}", sample.num_rows());
    let real_ids: BTreeSet<_> = strings(&table, "person_id").into_iter().flatten().collect();
    let real_names: BTreeSet<_> = strings(&table, "name").into_iter().flatten().collect();
    for token in strings(sample, "person_id").into_iter().chain(strings(sample, "name")).flatten() {
        assert!(!real_ids.contains(&token) && !real_names.contains(&token), "{token} is a real value");
        assert!(!token.contains('王'), "no surname survives: {token}");
    }
    assert!(
        !strings(sample, "district").iter().any(|district| district.as_deref() == Some("tiny")),
        "a district of 3 residents is merged or suppressed, never shown"
    );
    assert_eq!(derived.report.risk.unique_share, 0.0, "k-anonymous: no row fits exactly one real person");
    assert!(derived.report.risk.smallest_class >= 10, "{:?}", derived.report.risk);
    assert!(derived.report.offered, "{}", derived.report.render());
}

#[test]
fn deidentified_noise_depends_on_the_subject_and_content_not_the_row_position() {
    let table = people(5_000, 7);
    let reversed_rows: Vec<u32> = (0..table.num_rows() as u32).rev().collect();
    let reversed = arrow::compute::take_record_batch(
        &table,
        &Int32Array::from_iter_values(reversed_rows.iter().map(|&row| row as i32)),
    )
    .unwrap();
    let params = SampleParams::default();
    let forward =
        derive(SampleKind::Deidentified, &dataset(Grade::General), &table, &[3; 32], &params, &mut Seeded(1)).unwrap();
    let backward =
        derive(SampleKind::Deidentified, &dataset(Grade::General), &reversed, &[3; 32], &params, &mut Seeded(2))
            .unwrap();
    let pairs = |batch: &RecordBatch| -> BTreeMap<String, u64> {
        let ids = strings(batch, "person_id");
        let incomes = batch.column_by_name("income").unwrap().as_primitive::<Float64Type>().clone();
        ids.into_iter().zip(incomes.iter()).map(|(id, income)| (id.unwrap(), income.unwrap().to_bits())).collect()
    };
    assert_eq!(
        pairs(&forward.table),
        pairs(&backward.table),
        "the same person gets the same noise wherever the row is"
    );
    assert_eq!(forward.table, backward.table, "and the sample's order is the key's, not the file's");
}

#[test]
fn the_perturbation_resists_an_attacker_who_knows_the_method() {
    let (table, derived) = derive_people(SampleKind::Deidentified, Grade::General, 20_000);
    let risk = &derived.report.risk;
    assert!(risk.sensitive_values > 3_000);
    assert!(risk.recovered_share < 0.05, "{:?}", risk);
    // An attack of our own, independent of the measurement: every factor on a fine grid.
    let real: BTreeMap<String, f64> = strings(&table, "person_id")
        .into_iter()
        .flatten()
        .zip(table.column_by_name("income").unwrap().as_primitive::<Float64Type>().values().iter().copied())
        .collect();
    let keys = SampleKeys::new(&[3; 32]);
    let truth: BTreeMap<String, f64> = real.iter().map(|(id, income)| (token_of(&keys.tag(id)), *income)).collect();
    let sample_ids = strings(&derived.table, "person_id");
    let sample_incomes = derived.table.column_by_name("income").unwrap().as_primitive::<Float64Type>().clone();
    let mut best = 0usize;
    for step in 0..=400 {
        let factor = 0.6 + 0.002 * f64::from(step);
        let hits = sample_ids
            .iter()
            .zip(sample_incomes.iter())
            .filter(|(id, published)| {
                let truth = truth[id.as_deref().unwrap()];
                ((published.unwrap() / factor) - truth).abs() <= 0.01 * truth
            })
            .count();
        best = best.max(hits);
    }
    let share = best as f64 / sample_ids.len() as f64;
    assert!(share < 0.05, "the best single factor recovers {:.1}% of incomes within 1%", 100.0 * share);
    assert!(share <= risk.recovered_share + 0.01, "the measurement found at least what this attack found");
}

#[test]
fn a_synthetic_sample_holds_no_real_record_and_keeps_the_marginals() {
    let (table, derived) = derive_people(SampleKind::Synthetic, Grade::Important, 20_000);
    let sample = &derived.table;
    assert_eq!(derived.report.epsilon, 2.0);
    let real_names: BTreeSet<_> = strings(&table, "name").into_iter().flatten().collect();
    for name in strings(sample, "name").into_iter().flatten() {
        assert!(!real_names.contains(&name));
    }
    let real_incomes: BTreeSet<u64> = table
        .column_by_name("income")
        .unwrap()
        .as_primitive::<Float64Type>()
        .values()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let copied = sample
        .column_by_name("income")
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .flatten()
        .filter(|income| real_incomes.contains(&income.to_bits()))
        .count();
    assert_eq!(copied, 0, "no income is a real one");
    assert!(!strings(sample, "district").iter().any(|district| district.as_deref() == Some("tiny")));
    let years = sample.column_by_name("birth_year").unwrap().as_primitive::<Int32Type>();
    let mean = years.iter().flatten().map(f64::from).sum::<f64>() / years.len() as f64;
    assert!((1960.0..1990.0).contains(&mean), "birth years keep their distribution: mean {mean}");
    assert!(derived.report.loss.marginal_distance < 0.2, "{:?}", derived.report.loss);
    assert!(derived.report.offered, "{}", derived.report.render());
}

#[test]
fn an_important_dataset_never_offers_real_rows() {
    let table = people(100, 1);
    let error = derive(
        SampleKind::Deidentified,
        &dataset(Grade::Important),
        &table,
        &[3; 32],
        &SampleParams::default(),
        &mut Seeded(1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("rule sample_kind"), "{error}");
}

#[test]
fn a_sample_whose_noise_is_too_weak_is_not_offered() {
    // A grade-general dataset whose only sensitive numbers are tiny counts: the perturbation
    // cannot hide them (a whole number near 1 is recovered exactly), so the measurement
    // refuses to offer the sample.
    let rows = 5_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("children", DataType::Int32, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from((0..rows).map(|i| format!("P{i}")).collect::<Vec<_>>())),
            Arc::new(Int32Array::from((0..rows).map(|i| (i % 2) + 1).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let dataset = DatasetVersion {
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "children".into(), tag: ColumnTag::Sensitive },
        ],
        ..dataset(Grade::General)
    };
    let derived =
        derive(SampleKind::Deidentified, &dataset, &table, &[3; 32], &SampleParams::default(), &mut Seeded(1)).unwrap();
    assert!(!derived.report.offered);
    assert!(derived.report.refusals[0].contains("recovered within 1%"), "{:?}", derived.report.refusals);
    let synthetic =
        derive(SampleKind::Synthetic, &dataset, &table, &[3; 32], &SampleParams::default(), &mut Seeded(1)).unwrap();
    assert!(synthetic.report.offered, "{}", synthetic.report.render());
}

#[test]
fn token_columns_are_marked_for_the_runtime_to_rekey() {
    let (_, derived) = derive_people(SampleKind::Deidentified, Grade::General, 1_000);
    let schema = derived.table.schema();
    let marked: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|field| field.metadata().get(TOKEN_METADATA_KEY).map(String::as_str) == Some(TOKEN_METADATA_VALUE))
        .map(|field| field.name().as_str())
        .collect();
    assert_eq!(marked, ["person_id", "name"]);
}

#[test]
fn synthetic_subjects_are_the_domains_synthetic_ones_whoever_the_dataset_holds() {
    let (table, derived) = derive_people(SampleKind::Synthetic, Grade::Important, 5_000);
    let real: BTreeSet<String> =
        strings(&table, "person_id").into_iter().flatten().map(|id| stored_token(&[3; 32], &id)).collect();
    let pool: BTreeSet<String> =
        (0..5_000).map(|j| stored_token(&[3; 32], &format!("\0synthetic person {j}"))).collect();
    let tokens: BTreeSet<String> = strings(&derived.table, "person_id").into_iter().flatten().collect();
    assert!(tokens.len() > 500, "{}", tokens.len());
    assert!(tokens.is_disjoint(&real), "no real subject's token: membership is not disclosed");
    assert!(tokens.is_subset(&pool), "synthetic subject j is the same in every synthetic sample of the kind");
    // One resident more or less changes nothing the tokens could tell.
    let fewer =
        arrow::compute::take_record_batch(&table, &arrow::array::UInt32Array::from_iter_values(1..5_000)).unwrap();
    let smaller = derive(
        SampleKind::Synthetic,
        &dataset(Grade::Important),
        &fewer,
        &[3; 32],
        &SampleParams::default(),
        &mut Seeded(11),
    )
    .unwrap();
    let other: BTreeSet<String> = strings(&smaller.table, "person_id").into_iter().flatten().collect();
    assert!(other.is_subset(&pool));
}

#[test]
fn a_value_a_subject_holds_on_many_rows_gets_the_same_noise_on_each() {
    // One person's yearly income on twelve monthly rows: independent noise per row would
    // average back to the truth.
    let rows = 12 * 400;
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("income", DataType::Float64, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from((0..rows).map(|i| format!("P{}", i / 12)).collect::<Vec<_>>())),
            Arc::new(StringArray::from((0..rows).map(|i| format!("2024-{:02}", i % 12 + 1)).collect::<Vec<_>>())),
            Arc::new(Float64Array::from((0..rows).map(|i| 30_000.0 + (i / 12) as f64 * 17.0).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let dataset = DatasetVersion {
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "month".into(), tag: ColumnTag::Public },
            ColumnSpec { name: "income".into(), tag: ColumnTag::Sensitive },
        ],
        ..dataset(Grade::General)
    };
    let derived =
        derive(SampleKind::Deidentified, &dataset, &table, &[3; 32], &SampleParams::default(), &mut Seeded(1)).unwrap();
    let ids = strings(&derived.table, "person_id");
    let incomes = derived.table.column_by_name("income").unwrap().as_primitive::<Float64Type>().clone();
    let mut per_subject: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (id, income) in ids.into_iter().zip(incomes.iter()) {
        per_subject.entry(id.unwrap()).or_default().insert(income.unwrap().to_bits());
    }
    assert!(per_subject.len() > 40);
    assert!(per_subject.values().all(|values| values.len() == 1), "one noisy value per subject and value");
}

#[test]
fn non_finite_numbers_and_rare_sensitive_categories_are_handled() {
    let rows = 3_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("height", DataType::Float64, true),
        Field::new("diagnosis", DataType::Utf8, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from((0..rows).map(|i| format!("P{i}")).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(
                (0..rows)
                    .map(|i| match i % 50 {
                        0 => Some(f64::INFINITY),
                        1 => Some(f64::NEG_INFINITY),
                        2 => Some(f64::NAN),
                        3 => Some(1e308),
                        _ => Some(150.0 + (i % 40) as f64),
                    })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..rows)
                    .map(|i| if i == 7 { "a rare disease".to_string() } else { ["flu", "cold"][i % 2].to_string() })
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let dataset = DatasetVersion {
        columns: vec![
            ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "height".into(), tag: ColumnTag::Quasi },
            ColumnSpec { name: "diagnosis".into(), tag: ColumnTag::Sensitive },
        ],
        ..dataset(Grade::General)
    };
    let params = SampleParams { percent: 100, ..SampleParams::default() };
    let derived = derive(SampleKind::Deidentified, &dataset, &table, &[3; 32], &params, &mut Seeded(1)).unwrap();
    let diagnoses = strings(&derived.table, "diagnosis");
    assert!(!diagnoses.iter().any(|value| value.as_deref() == Some("a rare disease")), "one person's value is merged");
    let heights = derived.table.column_by_name("height").unwrap().as_primitive::<Float64Type>().clone();
    assert!(heights.iter().flatten().all(f64::is_finite));
    let error = derive(
        SampleKind::Deidentified,
        &DatasetVersion {
            columns: vec![ColumnSpec { name: "height".into(), tag: ColumnTag::Quasi }],
            subject_kind: None,
            ..dataset
        },
        &table.project(&[1]).unwrap(),
        &[3; 32],
        &params,
        &mut Seeded(1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("no subject column"), "{error}");
}

#[test]
fn a_synthetic_number_spread_over_many_root_categories_is_still_drawn() {
    // Monthly readings: twelve root categories, each too small in every magnitude bin to stand
    // out of its noise alone; the pooled histogram still describes the column.
    let enterprises = 2_000;
    let rows = enterprises * 12;
    let mut random = Seeded(5);
    let readings: Vec<f64> =
        (0..rows).map(|_| 10f64.powf(3.0 + (random.next_u64().unwrap() % 3_000) as f64 / 1_000.0)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("uscc", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("kwh", DataType::Float64, false),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from((0..rows).map(|i| format!("E{}", i / 12)).collect::<Vec<_>>())),
            Arc::new(StringArray::from((0..rows).map(|i| format!("2024-{:02}", i % 12 + 1)).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(readings.clone())),
        ],
    )
    .unwrap();
    let dataset = DatasetVersion {
        columns: vec![
            ColumnSpec { name: "uscc".into(), tag: ColumnTag::Subject },
            ColumnSpec { name: "month".into(), tag: ColumnTag::Public },
            ColumnSpec { name: "kwh".into(), tag: ColumnTag::Sensitive },
        ],
        ..dataset(Grade::Important)
    };
    let derived =
        derive(SampleKind::Synthetic, &dataset, &table, &[3; 32], &SampleParams::default(), &mut Seeded(2)).unwrap();
    let kwh = derived.table.column_by_name("kwh").unwrap().as_primitive::<Float64Type>().clone();
    let drawn: Vec<f64> = kwh.iter().flatten().collect();
    assert!(drawn.len() * 10 >= kwh.len() * 9, "{} of {} readings drawn", drawn.len(), kwh.len());
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (real, synthetic) = (median(&mut readings.clone()), median(&mut drawn.clone()));
    assert!(synthetic > real / 2.0 && synthetic < real * 2.0, "median {synthetic} against {real}");
}
