//! The content rule against identifiers smuggled out in disguise: as numbers, gathered into
//! lists, structs and maps, split by dashes, written as letters — first as tables a module or
//! a CSV could hand the reviewer, then as real queries of the governed engine under a grant
//! that (by an operator's mistake) lets the module read `id_card`. Each is blocked, and the
//! rule named is `content`; an honest aggregate under the same scan passes.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, ListBuilder, MapBuilder, RecordBatch,
    StringArray, StringBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use unseen_policy::identifiers::IdentifierSet;
use unseen_policy::review::{
    ColumnLineage, OutputLineage, ReviewContext, ReviewReport, SubjectCounts, ValueClass, review_table,
};
use unseen_policy::{AccessMode, Grant, Outcome, SubjectKind};
use unseen_runtime::{GovernedSession, Mode};
use unseen_tests::{fixture, grant};

/// Resident IDs of the synthetic population register, the way a provider stores them.
fn resident_ids(count: usize) -> Vec<String> {
    let population = unseen_samples::data::population(count, 11);
    let ids = population.column(1).as_string::<i32>();
    (0..ids.len()).map(|row| ids.value(row).to_string()).collect()
}

/// The IDs whose check character is a digit: those a module can cast to a number.
fn numeric_ids(count: usize) -> Vec<i64> {
    resident_ids(count).iter().filter_map(|id| id.parse().ok()).collect()
}

fn leak_grant() -> Grant {
    grant(
        "g-leak",
        &[
            ("population@v1", "id_card", AccessMode::Visible),
            ("population@v1", "name", AccessMode::Visible),
            ("population@v1", "district", AccessMode::Visible),
        ],
        &[("leak", &["district", "value"])],
    )
}

/// Reviews a two-column table (`district`, `value`) whose lineage says what an honest
/// aggregate's would: every row a group of 50 people, `value` aggregated from no identifier.
/// Only the cells can give the leak away.
fn review_cells(value: ArrayRef, identifiers: Option<&IdentifierSet>) -> ReviewReport {
    let rows = value.len();
    let district: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|row| format!("第{row}区"))));
    let schema = Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("value", value.data_type().clone(), true),
    ]);
    let table = RecordBatch::try_new(Arc::new(schema), vec![district, value]).expect("columns match the schema");
    let lineage = OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("value", vec![], ValueClass::Aggregate),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Person],
        contributors: vec![SubjectCounts { kind: SubjectKind::Person, per_row: vec![50; rows] }],
        ..Default::default()
    };
    review_table(&leak_grant(), "leak", &table, &lineage, ReviewContext { identifiers, ..Default::default() })
}

fn assert_blocked_by_content(report: &ReviewReport, what: &str) {
    assert_eq!(report.outcome, Outcome::Blocked, "{what}: {}", report.render());
    assert!(report.blocking_rules().contains(&"content"), "{what}: {}", report.render());
}

#[test]
fn resident_ids_cast_to_numbers_are_blocked_by_the_content_rule() {
    let ids = numeric_ids(200);
    assert!(ids.len() > 150, "most check characters are digits");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("Int64", Arc::new(Int64Array::from(ids.clone()))),
        ("UInt64", Arc::new(datafusion::arrow::array::UInt64Array::from_iter_values(ids.iter().map(|&id| id as u64)))),
        (
            "Decimal128(20,0)",
            Arc::new(
                Decimal128Array::from_iter_values(ids.iter().map(|&id| i128::from(id)))
                    .with_precision_and_scale(20, 0)
                    .unwrap(),
            ),
        ),
        (
            "Decimal128(22,2)",
            Arc::new(
                Decimal128Array::from_iter_values(ids.iter().map(|&id| i128::from(id) * 100))
                    .with_precision_and_scale(22, 2)
                    .unwrap(),
            ),
        ),
        ("Float64", Arc::new(Float64Array::from_iter_values(ids.iter().map(|&id| id as f64)))),
    ];
    for (what, column) in columns {
        let report = review_cells(column, None);
        assert_blocked_by_content(&report, what);
        let figure = &report.rule("content").unwrap().figure;
        assert!(figure.contains(&format!("resident_id {}", ids.len())), "{what}: every cell is found: {figure}");
        assert!(figure.contains(&format!("{} numeric", ids.len())), "{what}: {figure}");
    }
}

#[test]
fn identifiers_gathered_into_lists_structs_and_maps_are_blocked() {
    let ids = resident_ids(300);
    // array_agg(id_card) per district: ten lists of thirty IDs.
    let mut lists = ListBuilder::new(StringBuilder::new());
    for chunk in ids.chunks(30) {
        for id in chunk {
            lists.values().append_value(id);
        }
        lists.append(true);
    }
    let report = review_cells(Arc::new(lists.finish()), None);
    assert_blocked_by_content(&report, "array_agg(id_card)");
    assert!(report.rule("content").unwrap().figure.contains("10 nested cells (300 values inside)"));

    // A struct of a harmless label and the ID, and a map keyed by name.
    let structs = StructArray::from(vec![
        (
            Arc::new(Field::new("label", DataType::Utf8, false)),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "合计"))) as ArrayRef,
        ),
        (Arc::new(Field::new("id", DataType::Utf8, false)), Arc::new(StringArray::from_iter_values(&ids)) as ArrayRef),
    ]);
    assert_blocked_by_content(&review_cells(Arc::new(structs), None), "struct");
    let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for id in &ids {
        map.keys().append_value("id");
        map.values().append_value(id);
        map.append(true).unwrap();
    }
    assert_blocked_by_content(&review_cells(Arc::new(map.finish()), None), "map");

    // array_agg of the IDs cast to numbers.
    let numbers =
        datafusion::arrow::array::ListArray::from_iter_primitive::<datafusion::arrow::datatypes::Int64Type, _, _>(
            numeric_ids(300).chunks(30).map(|chunk| Some(chunk.iter().map(|&id| Some(id)).collect::<Vec<_>>())),
        );
    assert_blocked_by_content(&review_cells(Arc::new(numbers), None), "array_agg(CAST(id_card AS BIGINT))");
}

#[test]
fn identifiers_split_by_dashes_or_encoded_as_letters_are_blocked() {
    let ids = resident_ids(100);
    let translate = |id: &str, alphabet: &[u8; 10]| -> String {
        id.chars().map(|c| c.to_digit(10).map_or(c, |digit| char::from(alphabet[digit as usize]))).collect()
    };
    let disguises: Vec<(&str, Vec<String>)> = vec![
        (
            "dash-split",
            ids.iter().map(|id| format!("{}-{}-{}-{}", &id[..6], &id[6..10], &id[10..14], &id[14..])).collect(),
        ),
        ("space-split", ids.iter().map(|id| format!("{} {} {}", &id[..6], &id[6..14], &id[14..])).collect()),
        ("translate to abcdefghij", ids.iter().map(|id| translate(id, b"abcdefghij")).collect()),
        ("translate to ABCDEFGHIJ", ids.iter().map(|id| translate(id, b"ABCDEFGHIJ")).collect()),
        ("look-alikes", ids.iter().map(|id| id.replace('0', "O").replace('1', "l")).collect()),
        ("concatenated", ids.iter().map(|id| format!("{}x", id.to_lowercase())).collect()),
        (
            "full-width",
            ids.iter().map(|id| id.chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap()).collect()).collect(),
        ),
        ("in a sentence", ids.iter().map(|id| format!("name:张三;id:{id};")).collect()),
    ];
    for (what, cells) in disguises {
        let report = review_cells(Arc::new(StringArray::from(cells)), None);
        assert_blocked_by_content(&report, what);
        let figure = &report.rule("content").unwrap().figure;
        assert!(figure.starts_with("identifiers in 100 cells (resident_id 100)"), "{what}: every cell: {figure}");
    }
}

#[test]
fn names_of_the_grant_are_blocked_inside_longer_strings_and_lists() {
    let population = unseen_samples::data::population(300, 11);
    let names = population.column(2).as_string::<i32>();
    let set = IdentifierSet::from_values((0..names.len()).map(|row| names.value(row)));
    let long: Vec<&str> =
        (0..names.len()).map(|row| names.value(row)).filter(|name| name.chars().count() == 3).collect();
    assert!(long.len() > 50);
    // string_agg(name, '、') and a sentence around one name.
    let joined: Vec<String> = long.chunks(10).map(|chunk| chunk.join("、")).collect();
    assert_blocked_by_content(&review_cells(Arc::new(StringArray::from(joined)), Some(&set)), "string_agg(name)");
    let sentences: Vec<String> = long.iter().map(|name| format!("联系人{name}已核实")).collect();
    let report = review_cells(Arc::new(StringArray::from(sentences)), Some(&set));
    assert_blocked_by_content(&report, "a name inside a sentence");
    assert!(
        report
            .rule("content")
            .unwrap()
            .figure
            .contains(&format!("values of granted identifier columns in {} cells", long.len()))
    );
}

/// Runs `sql` under the leaking grant on the fixture and reviews its result with the grant's
/// identifier values, as the gateway does.
async fn review_query(session: &GovernedSession, set: &IdentifierSet, sql: &str) -> ReviewReport {
    let result = session.query(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    let schema = result.batches[0].schema();
    let table = datafusion::arrow::compute::concat_batches(&schema, &result.batches).expect("batches of one schema");
    assert!(table.num_rows() > 0, "{sql}: some groups were released");
    review_table(
        &leak_grant(),
        "leak",
        &table,
        &result.lineage,
        ReviewContext { identifiers: Some(set), ..Default::default() },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn real_queries_that_disguise_id_card_are_blocked_naming_content() {
    let fixture = fixture().await;
    let set = unseen_runtime::identifier_index::identifier_set(&fixture.tables).await.unwrap();
    let session = GovernedSession::new(&leak_grant(), &fixture.tables, Mode::Production).await.unwrap();
    let digits_only = "WHERE substr(id_card, 18, 1) <> 'X'";
    let attacks = [
        format!("SELECT district, max(CAST(id_card AS BIGINT)) AS value FROM population {digits_only} GROUP BY district"),
        format!("SELECT district, min(CAST(id_card AS DECIMAL(20, 0))) AS value FROM population {digits_only} GROUP BY district"),
        format!("SELECT district, max(CAST(id_card AS DOUBLE)) AS value FROM population {digits_only} GROUP BY district"),
        "SELECT district, array_agg(id_card) AS value FROM population GROUP BY district".to_string(),
        format!("SELECT district, array_agg(CAST(id_card AS BIGINT)) AS value FROM population {digits_only} GROUP BY district"),
        "SELECT district, max(translate(id_card, '0123456789', 'abcdefghij')) AS value FROM population GROUP BY district".to_string(),
        "SELECT district, max(translate(id_card, '0123456789', 'ABCDEFGHIJ')) AS value FROM population GROUP BY district".to_string(),
        "SELECT district, max(concat(id_card, 'x')) AS value FROM population GROUP BY district".to_string(),
        "SELECT district, max(concat(substr(id_card, 1, 6), '-', substr(id_card, 7, 8), '-', substr(id_card, 15))) AS value FROM population GROUP BY district".to_string(),
        "SELECT district, max(lower(concat('id:', id_card, ';name:', name))) AS value FROM population GROUP BY district".to_string(),
        "SELECT district, string_agg(name, ',') AS value FROM population GROUP BY district".to_string(),
        "SELECT district, named_struct('id', max(id_card)) AS value FROM population GROUP BY district".to_string(),
    ];
    for sql in &attacks {
        let report = review_query(&session, &set, sql).await;
        assert_blocked_by_content(&report, sql);
    }

    // The same scan on an honest aggregate of the same grant finds nothing.
    let honest =
        review_query(&session, &set, "SELECT district, count(*) AS value FROM population GROUP BY district").await;
    let content = honest.rule("content").unwrap();
    assert!(content.figure.ends_with("no identifiers"), "{}", honest.render());
}
