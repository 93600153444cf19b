use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

use super::*;
use crate::{AccessMode, DatasetRequest, DisclosureParams, NkRule, OutputSpec, ScenarioApplication};

fn grant_with(disclosure: DisclosureParams, columns: &[&str]) -> Grant {
    let application = ScenarioApplication {
        title: "t".into(),
        purpose: "p".into(),
        developer: "acme".into(),
        datasets: vec![DatasetRequest {
            dataset: "e@v1".into(),
            columns: BTreeMap::from([("kwh".into(), AccessMode::AggregateOnly)]),
            row_filter: None,
        }],
        outputs: vec![OutputSpec {
            name: "by_district".into(),
            columns: columns.iter().map(|column| column.to_string()).collect(),
            max_rows: 100,
            verification: None,
        }],
        disclosure,
        validity_days: 30,
        limits: Default::default(),
    };
    Grant::freeze("g-1".into(), "s-1".into(), application, "op".into(), 0, [1; 32])
}

fn grant(auto_release: bool) -> Grant {
    grant_with(DisclosureParams { threshold_k: 10, auto_release, ..Default::default() }, &["district", "kwh"])
}

fn table(labels: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("kwh", DataType::Float64, false),
    ]));
    let values: Vec<f64> = (0..labels.len()).map(|i| i as f64 * 10.0 + 3.0).collect();
    RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(labels.to_vec())), Arc::new(Float64Array::from(values))],
    )
    .unwrap()
}

fn kwh_source() -> Vec<SourceColumn> {
    vec![SourceColumn { dataset: "e@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive }]
}

fn aggregated_lineage(counts: Vec<u64>, engine_suppressed: u64) -> OutputLineage {
    OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("kwh", kwh_source(), ValueClass::Aggregate),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        sketches: disjoint_sketches(&counts),
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts }],
        magnitudes: Vec::new(),
        suppressed_groups: engine_suppressed,
        suppression_rule: Some("threshold k=10".into()),
        withheld_keys: Vec::new(),
        withheld_values: Vec::new(),
        withheld_contributors: Vec::new(),
        verification: None,
    }
}

/// Sketches of rows whose subjects are all different: row r has `counts[r]` subjects of its own.
fn disjoint_sketches(counts: &[u64]) -> Vec<SubjectSketches> {
    let per_row = counts
        .iter()
        .enumerate()
        .map(|(row, &count)| sketch_of((0..count).map(|subject| row as u64 * 1_000_000 + subject)))
        .collect();
    vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row }]
}

fn sketch_of(subjects: impl IntoIterator<Item = u64>) -> SubjectSketch {
    let mut sketch = SubjectSketch::new(crate::sketch::width_for_threshold(10));
    for subject in subjects {
        sketch.insert(crate::sketch::subject_key(&subject.to_le_bytes()), 1);
    }
    sketch
}

fn magnitude(per_row: Vec<(f64, Vec<f64>)>) -> MagnitudeLineage {
    MagnitudeLineage {
        measure: "sum(e.kwh)".into(),
        columns: vec!["kwh".into()],
        kind: SubjectKind::Enterprise,
        per_row: per_row
            .into_iter()
            .map(|(total, largest)| Contributions { total, largest, bucketed: false })
            .collect(),
    }
}

fn review(grant: &Grant, table: &RecordBatch, lineage: &OutputLineage) -> ReviewReport {
    review_table(grant, "by_district", table, lineage, ReviewContext::default())
}

#[test]
fn rows_below_k_are_withheld_and_engine_groups_are_counted() {
    let mut no_secondary = DisclosureParams { auto_release: true, ..Default::default() };
    no_secondary.secondary_suppression = false;
    let grant_without = grant_with(no_secondary, &["district", "kwh"]);
    let report = review(&grant_without, &table(&["a", "b", "c"]), &aggregated_lineage(vec![12, 3, 40], 2));
    assert_eq!(report.suppressed_rows, vec![1]);
    assert_eq!(report.cells_suppressed, 3, "two engine groups and one reviewed row, one measure column each");
    assert_eq!(report.engine_suppressed_cells(), 2);
    assert!(report.render().contains("2 cells of groups the engine withheld before the module saw them"));
    assert_eq!(report.rule("threshold").unwrap().outcome, RuleOutcome::Suppressed);
    assert_eq!(report.outcome, Outcome::Released);
    let report = review(&grant(false), &table(&["a"]), &aggregated_lineage(vec![12], 0));
    assert_eq!(report.outcome, Outcome::NeedsReview, "no auto-release in the grant");
}

#[test]
fn undeclared_output_and_identifier_content_block() {
    let id = "11010519491231002X";
    assert!(crate::identifiers::is_valid_resident_id(id));
    let report =
        review_table(&grant(true), "dump", &table(&[id]), &aggregated_lineage(vec![50], 0), Default::default());
    assert_eq!(report.outcome, Outcome::Blocked);
    assert_eq!(report.blocking_rules(), vec!["contract", "content"]);
    assert!(!format!("{report:?}").contains(id), "reports never carry cell values");
}

#[test]
fn values_of_granted_identifier_columns_block_even_without_a_checksum() {
    let names = IdentifierSet::from_values(["王建国", "p-0042"]);
    let context = ReviewContext { identifiers: Some(&names), ..Default::default() };
    let report = review_table(
        &grant(true),
        "by_district",
        &table(&["吴兴区", "王建国"]),
        &aggregated_lineage(vec![50, 60], 0),
        context,
    );
    assert_eq!(report.blocking_rules(), vec!["content"]);
    assert_eq!(report.findings[0].row, 1);
    let artifact = review_artifact(&grant(true), "by_district", "district,name\n吴兴区,p-0042\n".as_bytes(), context);
    assert_eq!(artifact.blocking_rules(), vec!["content"], "a field of a CSV artifact is compared whole");
}

#[test]
fn unaggregated_identifier_lineage_blocks() {
    let mut lineage = aggregated_lineage(vec![50], 0);
    lineage.columns[0].sources.push(SourceColumn {
        dataset: "p@v1".into(),
        column: "id_card".into(),
        tag: ColumnTag::Identifier,
    });
    let report = review(&grant(true), &table(&["x"]), &lineage);
    assert_eq!(report.blocking_rules(), vec!["lineage"]);
}

#[test]
fn row_level_subject_data_is_blocked_and_artifacts_wait() {
    let mut lineage = aggregated_lineage(vec![], 0);
    lineage.aggregated = false;
    let report = review(&grant(true), &table(&["x"]), &lineage);
    assert_eq!(report.blocking_rules(), vec!["threshold"]);
    let report = review_artifact(&grant(true), "by_district", b"coefficients: 0.5, 1.25", Default::default());
    assert_eq!(report.outcome, Outcome::NeedsReview);
}

#[test]
fn dominated_cells_are_withheld_by_the_rule_that_caught_them() {
    let params = DisclosureParams { secondary_suppression: false, auto_release: true, ..Default::default() };
    let mut lineage = aggregated_lineage(vec![20, 20, 20, 20], 0);
    lineage.magnitudes = vec![magnitude(vec![
        (100.0, vec![10.0, 9.0, 8.0]),  // spread out: safe
        (100.0, vec![95.0, 1.0, 1.0]),  // one company is 95%: p%-rule (rest 4 < 9.5)
        (100.0, vec![50.0, 45.0, 1.0]), // rest 5 = 10% of 50, not below: p passes; top two 95% > 90%
        (0.0, vec![]),                  // nothing to dominate
    ])];
    let report = review(&grant_with(params.clone(), &["district", "kwh"]), &table(&["a", "b", "c", "d"]), &lineage);
    let rules: Vec<(usize, &str)> =
        report.suppressed_cells.iter().map(|cell| (cell.row, cell.figure.split(':').next().unwrap())).collect();
    assert_eq!(rules, vec![(1, "p%-rule"), (2, "(2,90)-rule")], "{:#?}", report.suppressed_cells);
    assert_eq!(report.rule("dominance").unwrap().outcome, RuleOutcome::Suppressed);
    assert!(report.suppressed_rows.is_empty(), "group keys and counts stay; only the magnitude goes");

    // Off in the grant: nothing is judged.
    let off = DisclosureParams { p_percent: 0, nk_rule: NkRule { n: 0, k_percent: 90 }, ..params };
    let report = review(&grant_with(off, &["district", "kwh"]), &table(&["a", "b", "c", "d"]), &lineage);
    assert!(report.suppressed_cells.is_empty());
}

/// A two-key table: district × industry, one measure.
fn grid_table(cells: &[(&str, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("industry", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let districts: Vec<&str> = cells.iter().map(|cell| cell.0).collect();
    let industries: Vec<&str> = cells.iter().map(|cell| cell.1).collect();
    let counts: Vec<i64> = (0..cells.len() as i64).map(|i| 10 + i).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(districts)),
            Arc::new(StringArray::from(industries)),
            Arc::new(Int64Array::from(counts)),
        ],
    )
    .unwrap()
}

fn grid_lineage(counts: Vec<u64>, withheld_keys: Vec<Vec<String>>) -> OutputLineage {
    OutputLineage {
        columns: vec![
            ColumnLineage::new("district", vec![], ValueClass::Key),
            ColumnLineage::new("industry", vec![], ValueClass::Key),
            ColumnLineage::new("n", kwh_source(), ValueClass::Aggregate),
        ],
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        sketches: disjoint_sketches(&counts),
        contributors: vec![SubjectCounts { kind: SubjectKind::Enterprise, per_row: counts }],
        magnitudes: Vec::new(),
        suppressed_groups: withheld_keys.len() as u64,
        suppression_rule: None,
        withheld_keys,
        withheld_values: Vec::new(),
        withheld_contributors: Vec::new(),
        verification: None,
    }
}

fn grid_grant() -> Grant {
    grant_with(DisclosureParams { auto_release: true, ..Default::default() }, &["district", "industry", "n"])
}

/// Every line (cells equal in all keys but one) holds zero or at least two withheld cells.
fn assert_no_line_with_one_withheld(table: &RecordBatch, report: &ReviewReport, withheld_keys: &[Vec<String>]) {
    let mut cells: Vec<(String, String, bool)> = (0..table.num_rows())
        .map(|row| {
            let withheld =
                report.suppressed_rows.contains(&row) || report.suppressed_cells.iter().any(|cell| cell.row == row);
            (key_text(table.column(0).as_ref(), row), key_text(table.column(1).as_ref(), row), withheld)
        })
        .collect();
    cells.extend(withheld_keys.iter().map(|keys| (keys[0].clone(), keys[1].clone(), true)));
    for dimension in 0..2 {
        let mut lines: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (district, industry, withheld) in &cells {
            let line = if dimension == 0 { industry } else { district };
            let entry = lines.entry(line).or_default();
            entry.0 += 1;
            entry.1 += usize::from(*withheld);
        }
        for (line, (members, withheld)) in lines {
            assert!(
                members < 2 || withheld != 1,
                "line {line} of dimension {dimension} has one withheld cell of {members}\n{}\n{cells:?}",
                report.render()
            );
        }
    }
}

#[test]
fn one_small_cell_in_a_two_by_two_table_takes_the_whole_table_with_it() {
    let table = grid_table(&[("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]);
    let report = review(&grid_grant(), &table, &grid_lineage(vec![3, 40, 50, 60], Vec::new()));
    assert_eq!(report.suppressed_rows, vec![0]);
    assert_eq!(report.suppressed_cells.len(), 4, "{:#?}", report.suppressed_cells);
    assert_eq!(report.suppressed_cells.iter().filter(|cell| cell.rule == "secondary").count(), 3);
    assert_no_line_with_one_withheld(&table, &report, &[]);
}

#[test]
fn secondary_suppression_picks_the_smallest_partners_and_protects_engine_withheld_groups() {
    let labels = ["a", "b", "c"];
    let cells: Vec<(&str, &str)> =
        labels.iter().flat_map(|district| ["x", "y", "z"].map(move |industry| (*district, industry))).collect();
    let table = grid_table(&cells);
    // a×x is small; a×y and b×x are the smallest partners, b×y closes the rectangle.
    let counts = vec![4, 11, 90, 12, 13, 90, 90, 90, 90];
    let report = review(&grid_grant(), &table, &grid_lineage(counts.clone(), Vec::new()));
    let mut withheld: Vec<usize> = report.suppressed_cells.iter().map(|cell| cell.row).collect();
    withheld.sort_unstable();
    assert_eq!(withheld, vec![0, 1, 3, 4], "the rectangle a×x, a×y, b×x, b×y");
    assert_no_line_with_one_withheld(&table, &report, &[]);

    // The engine withheld c×w (not emitted): one more cell of district c and of industry w goes.
    let mut with_w = cells.clone();
    with_w.push(("a", "w"));
    let table = grid_table(&with_w);
    let keys = vec![vec!["c".to_string(), "w".to_string()]];
    let mut counts = vec![90; 10];
    counts[9] = 20; // a×w
    counts[7] = 15; // c×y
    let report = review(&grid_grant(), &table, &grid_lineage(counts, keys.clone()));
    let figures: Vec<&str> = report.suppressed_cells.iter().map(|cell| cell.figure.as_str()).collect();
    assert!(figures.iter().any(|figure| figure.contains("a group the engine withheld")), "{figures:?}");
    assert_no_line_with_one_withheld(&table, &report, &keys);
    assert_eq!(report.cells_suppressed, 1 + report.suppressed_cells.len() as u64);
}

/// Random sparse tables: an output that leaves is one whose every primary the audit finds
/// protected, and then no line holds a lonely withheld cell; one that cannot be protected
/// (its cell follows from credited totals whatever is withheld) is blocked by `secondary`.
#[test]
fn random_tables_leave_only_with_every_primary_protected() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let (mut blocked, mut released) = (0, 0);
    for _ in 0..200 {
        let (districts, industries) = (1 + next(5), 1 + next(5));
        let mut cells = Vec::new();
        let mut counts = Vec::new();
        let names = ["a", "b", "c", "d", "e"];
        for district in 0..districts {
            for industry in 0..industries {
                if next(5) > 0 {
                    cells.push((names[district as usize], names[industry as usize]));
                    counts.push(if next(4) == 0 { next(10) } else { 10 + next(50) });
                }
            }
        }
        if cells.is_empty() {
            continue;
        }
        let table = grid_table(&cells);
        let report = review(&grid_grant(), &table, &grid_lineage(counts, Vec::new()));
        if report.outcome == Outcome::Blocked {
            assert_eq!(report.blocking_rules(), vec!["secondary"], "{}", report.render());
            blocked += 1;
            continue;
        }
        assert_no_line_with_one_withheld(&table, &report, &[]);
        assert!(report.audit.iter().all(|cell| cell.protected), "{:#?}", report.audit);
        released += 1;
    }
    assert!(blocked * 5 < released, "{blocked} blocked, {released} released");
}

#[test]
fn releases_null_withheld_cells_drop_withheld_rows_and_round() {
    let params =
        DisclosureParams { auto_release: true, rounding_base: 5, secondary_suppression: false, ..Default::default() };
    let mut lineage = aggregated_lineage(vec![20, 3, 20], 0);
    lineage.magnitudes = vec![magnitude(vec![(100.0, vec![10.0, 9.0]), (100.0, vec![]), (100.0, vec![99.0, 1.0])])];
    let table = table(&["a", "b", "c"]); // kwh 3, 13, 23
    let report = review(&grant_with(params, &["district", "kwh"]), &table, &lineage);
    assert_eq!(report.rule("rounding").unwrap().outcome, RuleOutcome::Rounded);
    assert_eq!(report.cells_rounded, 1, "only the one released kwh cell");
    let released = release_table(&report, &table).unwrap();
    assert_eq!(released.num_rows(), 2, "row b is below k");
    let kwh = released.column(1).as_primitive::<Float64Type>();
    assert_eq!((kwh.value(0), kwh.is_null(1)), (5.0, true), "3 rounds to 5; c is dominated");
    assert_eq!(released.column(0).as_string::<i32>().value(1), "c", "the key stays");

    let counts = grid_table(&[("a", "x"), ("a", "y")]); // n = 10, 11
    let rounding = DisclosureParams { auto_release: true, rounding_base: 5, ..Default::default() };
    let grant = grant_with(rounding, &["district", "industry", "n"]);
    let report = review(&grant, &counts, &grid_lineage(vec![30, 30], Vec::new()));
    let released = release_table(&report, &counts).unwrap();
    assert_eq!(released.column(2).as_primitive::<Int64Type>().values(), &[10, 10], "integers stay integers");
}

#[test]
fn the_render_names_every_rule_and_the_first_cells() {
    let mut lineage = aggregated_lineage(vec![20, 20], 0);
    lineage.magnitudes = vec![magnitude(vec![(100.0, vec![10.0, 9.0]), (100.0, vec![99.0])])];
    let report = review(&grant(true), &table(&["a", "b"]), &lineage);
    let text = report.render();
    for rule in ["contract", "lineage", "threshold", "dominance", "secondary", "content"] {
        assert!(text.contains(rule), "{rule} missing from\n{text}");
    }
    assert!(text.contains("row 1"), "{text}");
}

#[test]
fn a_group_that_differs_from_an_earlier_release_by_few_subjects_is_withheld() {
    let grant = grant(true);
    // Earlier: district A with subjects 0..40 and district B with 100..140.
    let earlier = EarlierRelease {
        label: "egress e-1 (\"by_district\")".into(),
        sketches: vec![SubjectSketches {
            kind: SubjectKind::Enterprise,
            per_row: vec![sketch_of(0..40), sketch_of(100..140)],
        }],
        withheld: Vec::new(),
        complements: Vec::new(),
    };
    // Now: district A without three companies (a street), and an unrelated district C.
    let mut lineage = aggregated_lineage(vec![37, 40], 0);
    lineage.sketches[0].per_row = vec![sketch_of(3..40), sketch_of(200..240)];
    let table = table(&["A-minus-street", "C"]);
    let context = ReviewContext { earlier: std::slice::from_ref(&earlier), ..Default::default() };
    let report = review_table(&grant, "by_district", &table, &lineage, context);
    let rule = report.rule("differencing").expect("differencing ran");
    assert_eq!(rule.outcome, RuleOutcome::Suppressed, "{}", rule.figure);
    assert_eq!(report.suppressed_rows, vec![0]);
    let cell = report.suppressed_cells.iter().find(|cell| cell.row == 0).expect("row 0 withheld");
    assert_eq!(cell.rule, "differencing");
    assert!(cell.figure.contains("egress e-1") && cell.figure.contains("3 subjects < k=10"), "{}", cell.figure);
    // Only the released row is kept for later comparisons.
    let kept = released_sketches(&lineage, &report);
    assert_eq!(kept[0].per_row.len(), 1);

    // Without the earlier release both rows go; with differencing off too.
    let alone = review(&grant, &table, &lineage);
    assert_eq!(alone.rule("differencing").expect("ran").outcome, RuleOutcome::Pass);
    let off = grant_with(
        DisclosureParams { differencing: false, auto_release: true, ..Default::default() },
        &["district", "kwh"],
    );
    let report = review_table(&off, "by_district", &table, &lineage, context);
    assert_eq!(report.rule("differencing").expect("ran").figure, "off in this grant");
    assert!(report.suppressed_rows.is_empty());
}

#[test]
fn a_row_of_the_subjects_of_a_cell_an_earlier_release_withheld_is_withheld_whatever_its_measure_or_condition() {
    // Earlier: district C was withheld (dominated) and district E withheld as its complement.
    // Now the developer asks for C alone with a WHERE of its own (another measure identity, so
    // no relation links the two), or for C plus one tiny company: the same cell again, or
    // nearly; or for E, which would give C back by the earlier output's arithmetic.
    let grant = grant(true);
    let earlier = EarlierRelease {
        label: "egress e-1 (\"by_district\")".into(),
        sketches: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: vec![sketch_of(0..40)] }],
        withheld: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: vec![sketch_of(100..140)] }],
        complements: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: vec![sketch_of(500..540)] }],
    };
    let context = ReviewContext { earlier: std::slice::from_ref(&earlier), ..Default::default() };
    let cases = [
        (100..140, "has the subjects of a cell egress e-1", true),
        (100..141, "all but 1 < k=10", true),
        (500..540, "withheld as a complement", false),
    ];
    for (subjects, figure, primary) in cases {
        let mut lineage = aggregated_lineage(vec![40], 0);
        lineage.sketches[0].per_row = vec![sketch_of(subjects)];
        let report = review_table(&grant, "by_district", &table(&["C"]), &lineage, context);
        assert_eq!(report.suppressed_rows, vec![0], "{}", report.render());
        let cell = report.suppressed_cells.first().expect("withheld");
        assert!(cell.rule == "differencing" && cell.figure.contains(figure), "{}", cell.figure);
        // A repeated primary needs protection of its own; a repeated complement does not.
        let record = report.protection.iter().find(|record| record.row == 0).expect("recorded");
        assert_eq!(record.level.is_some(), primary, "{}", cell.figure);
        let (primaries, complements) = withheld_sketches(&lineage, &report);
        assert_eq!((primaries[0].per_row.len(), complements[0].per_row.len()), if primary { (1, 0) } else { (0, 1) });
    }
    // A district of other subjects leaves.
    let mut lineage = aggregated_lineage(vec![40], 0);
    lineage.sketches[0].per_row = vec![sketch_of(300..340)];
    let report = review_table(&grant, "by_district", &table(&["D"]), &lineage, context);
    assert!(report.suppressed_rows.is_empty(), "{}", report.render());
}

#[test]
fn the_same_output_asked_again_is_reviewed_as_it_was_the_first_time() {
    // A dominated district and its complement: asked again under the same grant, the dominated
    // cell is withheld by the rule that caught it the first time (not re-judged as a repeat of
    // a withheld cell with a small group's protection, which no complement could give).
    let grant = grant(true);
    let mut lineage = aggregated_lineage(vec![20, 20, 20, 20, 20], 0);
    lineage.magnitudes = vec![magnitude(vec![
        (3.0, vec![1.0, 0.5, 0.4]),
        (13.0, vec![12.5, 0.2, 0.1]),
        (23.0, vec![2.0, 1.5, 1.0]),
        (33.0, vec![3.0, 2.0, 1.0]),
        (43.0, vec![4.0, 3.0, 2.0]),
    ])];
    let table = table(&["a", "b", "c", "d", "e"]);
    let first = review(&grant, &table, &lineage);
    assert_ne!(first.outcome, Outcome::Blocked, "{}", first.render());
    assert!(first.suppressed_cells.iter().any(|cell| cell.row == 1), "{}", first.render());
    let (withheld, complements) = withheld_sketches(&lineage, &first);
    let earlier = EarlierRelease {
        label: "egress e-1 (\"by_district\")".into(),
        sketches: released_sketches(&lineage, &first),
        withheld,
        complements,
    };
    let released = ReleasedTable::from_review("egress e-1", &table, &lineage, &first);
    let context = ReviewContext {
        earlier: std::slice::from_ref(&earlier),
        released: std::slice::from_ref(&released),
        ..Default::default()
    };
    let again = review_table(&grant, "by_district", &table, &lineage, context);
    assert_eq!(again.outcome, first.outcome, "{}", again.render());
    // The same cells: the dominated one by its rule, its complement as the repeat of one.
    let cells = |report: &ReviewReport| -> Vec<usize> { report.suppressed_cells.iter().map(|cell| cell.row).collect() };
    assert_eq!(cells(&again), cells(&first), "{}", again.render());
    let dominated = again.suppressed_cells.iter().find(|cell| cell.row == 1).expect("withheld");
    assert_eq!(dominated.rule, "dominance");
}

#[test]
fn rows_of_one_output_that_nest_are_caught_and_missing_sketches_need_an_operator() {
    let grant = grant(true);
    let mut lineage = aggregated_lineage(vec![50, 48], 0);
    lineage.sketches[0].per_row = vec![sketch_of(0..50), sketch_of(0..48)];
    let report = review(&grant, &table(&["all", "all-but-two"]), &lineage);
    assert_eq!(report.suppressed_rows, vec![1]);
    let cell = report.suppressed_cells.iter().find(|cell| cell.rule == "differencing").expect("withheld");
    assert_eq!(cell.row, 1);
    assert!(cell.figure.contains("row 0 of this output by 2 subjects"), "{}", cell.figure);

    lineage.sketches.clear();
    let report = review(&grant, &table(&["all", "all-but-two"]), &lineage);
    assert_eq!(report.rule("differencing").expect("ran").outcome, RuleOutcome::NeedsReview);
    assert_eq!(report.outcome, Outcome::NeedsReview);
}

fn privacy_grant(budget: f64, per_release: f64, sensitivity: f64) -> Grant {
    let privacy = crate::PrivacyParams {
        epsilon_budget: budget,
        epsilon_per_release: per_release,
        sensitivity: BTreeMap::from([("kwh".to_string(), sensitivity)]),
    };
    grant_with(
        DisclosureParams { auto_release: true, privacy: Some(privacy), ..Default::default() },
        &["district", "kwh"],
    )
}

/// A random source that has run dry.
struct NoBits;

impl crate::noise::RandomBits for NoBits {
    fn next_u64(&mut self) -> Result<u64, crate::noise::RandomnessFailed> {
        Err(crate::noise::RandomnessFailed)
    }
}

struct CountingBits(u64);

impl crate::noise::RandomBits for CountingBits {
    fn next_u64(&mut self) -> Result<u64, crate::noise::RandomnessFailed> {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        Ok(self.0 ^ (self.0 >> 29))
    }
}

#[test]
fn privacy_plans_noise_charges_epsilon_and_refuses_when_the_budget_is_spent() {
    let grant = privacy_grant(1.0, 0.4, 50.0);
    let lineage = aggregated_lineage(vec![20, 30, 40], 0);
    let table = table(&["A", "B", "C"]);
    let report = review(&grant, &table, &lineage);
    let rule = report.rule("privacy").expect("privacy ran");
    assert_eq!(rule.outcome, RuleOutcome::Noised, "{}", rule.figure);
    assert_eq!(report.outcome, Outcome::Released);
    assert_eq!(report.epsilon_charged, 0.4);
    assert_eq!(report.noise.len(), 1);
    assert!((report.noise[0].scale - 125.0).abs() < 1e-9, "b = Δ/ε = 50/0.4");
    // The noise is not in the report, and a release needs randomness to draw it.
    assert!(release_table(&report, &table).is_err());
    let broken = release_noised_table(&report, &table, &mut NoBits).expect_err("no randomness, no release");
    assert!(broken.to_string().contains("random generator failed"), "{broken}");
    let released = release_noised_table(&report, &table, &mut CountingBits(7)).expect("release");
    let values = released.column(1).as_primitive::<Float64Type>();
    let original = table.column(1).as_primitive::<Float64Type>();
    let step = report.noise[0].step;
    let moved = (0..3).filter(|&row| values.value(row) != original.value(row)).count();
    assert!(moved >= 2, "noise moved {moved} of 3 cells");
    for row in 0..3 {
        let steps = values.value(row) / step;
        assert_eq!(steps, steps.round(), "released values lie on the lattice");
    }

    // 0.4 + 0.4 spent: the third release needs 0.4 more than the 0.2 left.
    let context = ReviewContext { epsilon_spent: 0.8, ..Default::default() };
    let report = review_table(&grant, "by_district", &table, &lineage, context);
    let rule = report.rule("privacy").expect("privacy ran");
    assert_eq!((rule.outcome, report.outcome), (RuleOutcome::Blocked, Outcome::Blocked));
    assert!(rule.figure.contains("ε budget spent: 0.8 of 1 used"), "{}", rule.figure);
    assert_eq!(report.epsilon_charged, 0.0);
}

#[test]
fn privacy_blocks_a_subject_above_the_declared_sensitivity_and_undeclared_measures() {
    let grant = privacy_grant(1.0, 0.5, 50.0);
    let mut lineage = aggregated_lineage(vec![20, 30], 0);
    lineage.magnitudes = vec![magnitude(vec![(500.0, vec![40.0, 30.0]), (900.0, vec![80.0, 20.0])])];
    let report = review(&grant, &table(&["A", "B"]), &lineage);
    let rule = report.rule("privacy").expect("privacy ran");
    assert_eq!(rule.outcome, RuleOutcome::Blocked);
    assert!(rule.figure.contains("row 1") && rule.figure.contains("declared sensitivity 50"), "{}", rule.figure);

    let mut other = privacy_grant(1.0, 0.5, 50.0);
    if let Some(privacy) = other.application.disclosure.privacy.as_mut() {
        privacy.sensitivity = BTreeMap::from([("count".to_string(), 1.0)]);
    }
    let report = review(&other, &table(&["A", "B"]), &aggregated_lineage(vec![20, 30], 0));
    assert!(report.rule("privacy").expect("ran").figure.contains("no declared sensitivity for [kwh]"));
}

fn verification_grant(claims_per_day: u64) -> Grant {
    let mut grant = grant(true);
    let spec = crate::VerificationSpec {
        dataset: "e@v1".into(),
        key: "uscc".into(),
        fields: vec!["name".into()],
        claims_per_day,
        attempts_per_key: 2,
    };
    grant.application.outputs.push(OutputSpec::verification("checks", 10, spec));
    grant
}

fn verdicts(found: &[bool]) -> RecordBatch {
    use arrow::array::BooleanArray;
    let schema = Arc::new(Schema::new(vec![
        Field::new("claim", DataType::Int64, false),
        Field::new("found", DataType::Boolean, true),
        Field::new("name", DataType::Boolean, true),
    ]));
    let claims: Vec<i64> = (1..=found.len() as i64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(claims)),
            Arc::new(BooleanArray::from(found.to_vec())),
            Arc::new(BooleanArray::from(found.to_vec())),
        ],
    )
    .unwrap()
}

fn claimed(keys: &[&str]) -> OutputLineage {
    OutputLineage {
        verification: Some(VerificationLineage {
            dataset: "e@v1".into(),
            claim_keys: keys.iter().map(|key| (*key).to_string()).collect(),
        }),
        ..Default::default()
    }
}

#[test]
fn verification_answers_leave_within_the_grants_daily_limits() {
    let grant = verification_grant(5);
    let table = verdicts(&[true, false, true]);
    let report = review_verification(&grant, "checks", &table, &claimed(&["a", "b", "c"]), ReviewContext::default());
    assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
    assert_eq!(report.kind, OutputKind::Verification);
    let rule = report.rule("verification").expect("ran");
    assert!(rule.figure.contains("3 claims, 0 earlier in 24 h (claims_per_day=5)"), "{}", rule.figure);

    // Three answered earlier today: three more would make six of five.
    let earlier: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
    let context = ReviewContext { earlier_claims: &earlier, ..Default::default() };
    let report = review_verification(&grant, "checks", &table, &claimed(&["a", "b", "c"]), context);
    assert_eq!(report.outcome, Outcome::Blocked);
    let rule = report.rule("verification").expect("ran");
    assert!(rule.figure.contains("3 claims answered in the last 24 h + 3 > claims_per_day=5"), "{}", rule.figure);
}

#[test]
fn guessing_one_keys_value_claim_after_claim_is_cut_off_at_attempts_per_key() {
    let grant = verification_grant(100);
    // One key claimed once earlier today and three times now, with three different names: the
    // second claim now is its last allowed attempt; the rest keep their rows, not their answers.
    let earlier = vec!["a".to_string()];
    let context = ReviewContext { earlier_claims: &earlier, ..Default::default() };
    let table = verdicts(&[true, false, false, true]);
    let report = review_verification(&grant, "checks", &table, &claimed(&["a", "b", "a", "a"]), context);
    let rule = report.rule("verification").expect("ran");
    assert_eq!(rule.outcome, RuleOutcome::Suppressed, "{}", rule.figure);
    assert!(rule.figure.contains("2 over attempts_per_key=2"), "{}", rule.figure);
    let withheld: Vec<(usize, &str)> =
        report.suppressed_cells.iter().map(|cell| (cell.row, cell.column.as_str())).collect();
    assert_eq!(withheld, [(2, "found"), (2, "name"), (3, "found"), (3, "name")]);
    assert!(report.suppressed_cells[0].figure.contains("claimed 2 times in 24 h already"));
    let released = release_table(&report, &table).unwrap();
    assert_eq!(released.num_rows(), 4, "withheld claims keep their rows");
    assert_eq!(released.column(0).null_count(), 0, "and their numbers");
    assert_eq!(released.column(1).null_count(), 2);
    assert_eq!(released.column(2).null_count(), 2);
}

#[test]
fn only_the_domain_writes_a_verification_output() {
    let grant = verification_grant(100);
    let table = verdicts(&[true]);
    // A module's table under the verification output's name: the contract refuses it.
    let report = review_table(&grant, "checks", &table, &OutputLineage::default(), ReviewContext::default());
    let rule = report.rule("contract").expect("ran");
    assert_eq!(rule.outcome, RuleOutcome::Blocked);
    assert!(rule.figure.contains("is a verification output in grant g-1; this one is a table"), "{}", rule.figure);
    // Verification answers without the host's record of the claims.
    let report = review_verification(&grant, "checks", &table, &OutputLineage::default(), ReviewContext::default());
    assert_eq!(report.outcome, Outcome::Blocked);
    assert!(report.rule("verification").expect("ran").figure.contains("only the domain writes"));
    // Under an output declared as a table.
    let report = review_verification(&grant, "by_district", &table, &claimed(&["a"]), ReviewContext::default());
    assert!(report.rule("contract").expect("ran").figure.contains("is not a verification output"));
}

#[test]
fn review_rules_serialise_as_the_names_reports_and_audit_entries_have_always_used() {
    let names = [
        (ReviewRule::Contract, "contract"),
        (ReviewRule::Lineage, "lineage"),
        (ReviewRule::Threshold, "threshold"),
        (ReviewRule::Dominance, "dominance"),
        (ReviewRule::Differencing, "differencing"),
        (ReviewRule::Consistency, "consistency"),
        (ReviewRule::Secondary, "secondary"),
        (ReviewRule::Privacy, "privacy"),
        (ReviewRule::Rounding, "rounding"),
        (ReviewRule::Content, "content"),
        (ReviewRule::Artifact, "artifact"),
        (ReviewRule::Verification, "verification"),
    ];
    for (rule, name) in names {
        assert_eq!(rule.as_str(), name);
        assert_eq!(serde_json::to_string(&rule).unwrap(), format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<ReviewRule>(&format!("\"{name}\"")).unwrap(), rule);
    }
    // A report stored before the rules were typed reads back, and writes the same text.
    let stored = r#"{"rule":"differencing","outcome":"suppressed","figure":"k=10"}"#;
    let result: RuleResult = serde_json::from_str(stored).unwrap();
    assert_eq!(result.rule, ReviewRule::Differencing);
    assert_eq!(serde_json::to_string(&result).unwrap(), stored);
}
