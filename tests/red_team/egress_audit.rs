//! Attacks on secondary suppression by arithmetic across outputs (issue 24), each over
//! tables built as the runtime would emit them: groups below k withheld by the engine with
//! their keys recorded, largest contributions per magnitude cell, measure identities.
//!
//! Each test recomputes what the attacker can recover by hand — the released cells, the
//! totals credited to the attacker and, for a withheld set, the explicit alternative
//! tables that every released figure allows — and asserts that the interval it leaves
//! reaches the protection level the rule that withheld the cell asks for.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use unseen_policy::review::{
    ReleasedTable, ReviewContext, ReviewReport, SubjectSketches, ValueClass, key_text, p_rule_sensitive, review_table,
};
use unseen_policy::sketch::{SubjectSketch, subject_key, width_for_threshold};
use unseen_policy::{
    AccessMode, ColumnLineage, ColumnTag, Contributions, MagnitudeLineage, Outcome, OutputLineage, RuleOutcome,
    SourceColumn, SubjectCounts, SubjectKind,
};
use unseen_tests::grant;

const KWH: &str = "sum(u.kwh) FROM electricity@v1 JOIN enterprise@v1";
const RESIDENTS: &str = "count(DISTINCT p.person_id) FROM population@v1";

/// One group as the engine computed it: keys (None: a margin of ROLLUP/CUBE), distinct
/// contributors, the measure and its two largest contributions.
#[derive(Debug, Clone)]
struct Group {
    keys: Vec<Option<&'static str>>,
    contributors: u64,
    value: f64,
    largest: [f64; 2],
}

fn group(keys: &[&'static str], contributors: u64, value: f64) -> Group {
    let each = value / contributors.max(1) as f64;
    Group { keys: keys.iter().map(|key| Some(*key)).collect(), contributors, value, largest: [each, each] }
}

/// The output and lineage the runtime produces for `groups` under k = 10: groups below k
/// are withheld by the engine (keys recorded, NULL as ""), the rest emitted.
fn emit(keys: &[&str], measure: (&str, &str), magnitude: bool, groups: &[Group]) -> (RecordBatch, OutputLineage) {
    let (emitted, withheld): (Vec<&Group>, Vec<&Group>) = groups.iter().partition(|group| group.contributors >= 10);
    let mut fields = Vec::new();
    let mut columns: Vec<Arc<dyn Array>> = Vec::new();
    let mut lineage_columns = Vec::new();
    for (position, key) in keys.iter().enumerate() {
        fields.push(Field::new(*key, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(emitted.iter().map(|group| group.keys[position]).collect::<Vec<_>>())));
        lineage_columns.push(ColumnLineage::new(*key, vec![], ValueClass::Key));
    }
    let (name, identity) = measure;
    if magnitude {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(emitted.iter().map(|group| group.value).collect::<Vec<_>>())));
    } else {
        fields.push(Field::new(name, DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(emitted.iter().map(|group| group.value as i64).collect::<Vec<_>>())));
    }
    let source = SourceColumn { dataset: "electricity@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive };
    lineage_columns.push(ColumnLineage {
        measure: Some(identity.into()),
        ..ColumnLineage::new(name, vec![source], ValueClass::Aggregate)
    });
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("table");
    let sketches = emitted
        .iter()
        .map(|group| {
            let mut sketch = SubjectSketch::new(width_for_threshold(10));
            for subject in 0..group.contributors {
                sketch.insert(subject_key(format!("{:?}/{subject}", group.keys).as_bytes()), 1);
            }
            sketch
        })
        .collect();
    let lineage = OutputLineage {
        columns: lineage_columns,
        aggregated: true,
        subject_kinds: vec![SubjectKind::Enterprise],
        contributors: vec![SubjectCounts {
            kind: SubjectKind::Enterprise,
            per_row: emitted.iter().map(|group| group.contributors.min(10)).collect(),
        }],
        magnitudes: if magnitude {
            vec![MagnitudeLineage {
                measure: "sum(u.kwh)".into(),
                columns: vec![name.into()],
                kind: SubjectKind::Enterprise,
                per_row: emitted
                    .iter()
                    .map(|group| Contributions { total: group.value, largest: group.largest.to_vec(), bucketed: false })
                    .collect(),
            }]
        } else {
            Vec::new()
        },
        suppressed_groups: withheld.len() as u64,
        suppression_rule: Some("threshold k=10 distinct subjects".into()),
        withheld_keys: withheld
            .iter()
            .map(|group| group.keys.iter().map(|key| key.unwrap_or("").to_string()).collect())
            .collect(),
        withheld_values: withheld.iter().map(|group| vec![Some(group.value)]).collect(),
        withheld_contributors: Vec::new(),
        sketches: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: sketches }],
        verification: None,
    };
    (table, lineage)
}

fn kwh_grant(outputs: &[(&str, &[&str])]) -> unseen_policy::Grant {
    grant("g-attack", &[("electricity@v1", "kwh", AccessMode::AggregateOnly)], outputs)
}

/// Keys of every withheld cell (rows dropped whole included) of a report on `table`.
fn withheld_keys(table: &RecordBatch, keys: usize, report: &ReviewReport) -> BTreeSet<Vec<String>> {
    let keys_of = |row: usize| (0..keys).map(|column| key_text(table.column(column).as_ref(), row)).collect();
    report
        .suppressed_cells
        .iter()
        .map(|cell| keys_of(cell.row))
        .chain(report.suppressed_rows.iter().map(|&row| keys_of(row)))
        .collect()
}

/// The p%-rule's protection level of a dominated cell, written out independently of the
/// reviewer: the upper end of the attacker's interval, less the second largest's own
/// contribution, must overestimate the largest by at least p%.
fn p_level(group: &Group, p: f64) -> f64 {
    let [x1, x2] = group.largest;
    p / 100.0 * x1 - (group.value - x1 - x2)
}

/// Districts of 湖州 by kWh: 吴兴区 is one company's (98%), 南浔区 a thousandth of it.
fn districts() -> Vec<Group> {
    let mut dominated = group(&["吴兴区"], 24, 1_000_000.0);
    dominated.largest = [980_000.0, 1_000.0];
    vec![
        dominated,
        group(&["南浔区"], 31, 1_000.0),
        group(&["德清县"], 25, 450_000.0),
        group(&["长兴县"], 40, 700_000.0),
        group(&["安吉县"], 12, 120_000.0),
    ]
}

#[test]
fn the_same_table_in_any_row_order_withholds_the_same_complements() {
    // Issue 24: ORDER BY ASC, DESC and plain runs withheld three different partners; with a
    // released grand total they gave the primary back exactly. Now every order withholds
    // the same cells, so the union of what all the orders released is what one released.
    let grant = kwh_grant(&[("by_district", &["district", "total_kwh"]), ("residents", &["district", "residents"])]);
    let groups = districts();
    let mut released_union: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut withheld_sets = BTreeSet::new();
    let mut orders: Vec<Vec<Group>> = vec![groups.clone()];
    let mut reversed = groups.clone();
    reversed.reverse();
    orders.push(reversed);
    for rotation in 1..groups.len() {
        let mut rotated = groups.clone();
        rotated.rotate_left(rotation);
        orders.push(rotated);
    }
    for order in &orders {
        let (table, lineage) = emit(&["district"], ("total_kwh", KWH), true, order);
        let report = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
        let withheld = withheld_keys(&table, 1, &report);
        for row in 0..table.num_rows() {
            let keys = vec![key_text(table.column(0).as_ref(), row)];
            if !withheld.contains(&keys) {
                released_union.insert(keys);
            }
        }
        withheld_sets.insert(withheld);
    }
    assert_eq!(withheld_sets.len(), 1, "every order withholds the same districts: {withheld_sets:?}");
    // The attacker's interval for 吴兴区 from the grand total and everything any order
    // released: the withheld districts share what the total leaves.
    let withheld: Vec<&Group> = groups
        .iter()
        .filter(|group| !released_union.contains(&vec![group.keys[0].unwrap_or("").to_string()]))
        .collect();
    let dominated = &groups[0];
    assert!(withheld.iter().any(|group| group.keys == dominated.keys), "{withheld:?}");
    let above: f64 = withheld.iter().filter(|group| group.keys != dominated.keys).map(|group| group.value).sum();
    assert!(above >= p_level(dominated, 10.0), "upper end only {above} above 吴兴区");

    // The same for a count: a district of 3 residents, withheld by the engine, under
    // every order; the interval must reach k.
    let mut residents = vec![group(&["吴兴区"], 3, 3.0)];
    residents.extend(
        ["南浔区", "德清县", "长兴县", "安吉县"]
            .iter()
            .zip([14u64, 60, 120, 33])
            .map(|(name, n)| group(&[name], n, n as f64)),
    );
    let mut withheld_sets = BTreeSet::new();
    for rotation in 0..residents.len() {
        let mut rotated = residents.clone();
        rotated.rotate_left(rotation);
        let (table, lineage) = emit(&["district"], ("residents", RESIDENTS), false, &rotated);
        let report = review_table(&grant, "residents", &table, &lineage, ReviewContext::default());
        assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
        let audit = report.audit.iter().find(|cell| cell.row.is_none()).expect("the engine's group is audited");
        assert_eq!((audit.rule.as_str(), audit.protected), ("threshold", true), "{audit:?}");
        let withheld = withheld_keys(&table, 1, &report);
        // Upper end of 吴兴区's count: 3 + the withheld complements' counts; it must reach k.
        let complements: f64 = residents
            .iter()
            .filter(|group| withheld.contains(&vec![group.keys[0].unwrap_or("").to_string()]))
            .map(|group| group.value)
            .sum();
        assert!(3.0 + complements >= 10.0, "the attacker can tell 吴兴区 has fewer than k residents");
        withheld_sets.insert(withheld);
    }
    assert_eq!(withheld_sets.len(), 1, "{withheld_sets:?}");
}

#[test]
fn a_total_released_in_a_separate_output_does_not_complete_the_equation() {
    let grant = kwh_grant(&[("by_district", &["district", "total_kwh"]), ("total", &["total_kwh"])]);
    let groups = districts();
    let grand: f64 = groups.iter().map(|group| group.value).sum();
    let total = [Group { keys: vec![], contributors: 132, value: grand, largest: [980_000.0, 200_000.0] }];

    // The total first, then the districts.
    let (total_table, total_lineage) = emit(&[], ("total_kwh", KWH), true, &total);
    let total_report = review_table(&grant, "total", &total_table, &total_lineage, ReviewContext::default());
    assert_eq!(total_report.outcome, Outcome::Released, "{}", total_report.render());
    let earlier = [ReleasedTable::from_review("egress e-1 (\"total\")", &total_table, &total_lineage, &total_report)];
    let (table, lineage) = emit(&["district"], ("total_kwh", KWH), true, &groups);
    let report = review_table(
        &grant,
        "by_district",
        &table,
        &lineage,
        ReviewContext { released: &earlier, ..Default::default() },
    );
    assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
    let secondary = report.rule("secondary").expect("ran");
    assert!(
        secondary.figure.contains("against") && secondary.figure.contains("1 earlier release of its measures"),
        "{}",
        secondary.figure
    );
    let withheld = withheld_keys(&table, 1, &report);
    // Released total − released districts = the withheld districts' sum: 吴兴区 is only
    // known to lie between 0 and that sum.
    let rest: f64 = groups
        .iter()
        .filter(|group| {
            withheld.contains(&vec![group.keys[0].unwrap_or("").to_string()]) && group.keys != groups[0].keys
        })
        .map(|group| group.value)
        .sum();
    assert!(rest >= p_level(&groups[0], 10.0), "{}", report.render());
    assert!(report.audit.iter().any(|cell| cell.rule == "dominance" && cell.protected));

    // The districts first, then the total: the total is audited against them and leaves
    // their primary protected.
    let first = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    let earlier = [ReleasedTable::from_review("egress e-2 (\"by_district\")", &table, &lineage, &first)];
    let later = review_table(
        &grant,
        "total",
        &total_table,
        &total_lineage,
        ReviewContext { released: &earlier, ..Default::default() },
    );
    assert_eq!(later.outcome, Outcome::Released, "{}", later.render());
    let secondary = later.rule("secondary").expect("ran");
    assert!(secondary.figure.contains("of earlier releases"), "{}", secondary.figure);
}

/// The CUBE of districts × industries of 湖州: inner cells, every district's and
/// industry's total, and the grand total, in one output.
fn cube() -> (Vec<Group>, usize) {
    let districts = ["吴兴区", "南浔区", "德清县"];
    let industries = ["C13", "C26", "D44"];
    let mut inner = Vec::new();
    for (d, district) in districts.iter().enumerate() {
        for (i, industry) in industries.iter().enumerate() {
            inner.push(group(
                &[district, industry],
                15 + (d * 3 + i) as u64,
                10_000.0 * (2 + (d * 5 + i * 7) % 9) as f64,
            ));
        }
    }
    // 吴兴区 × C26 is one company's.
    let dominated = 1;
    inner[dominated].largest = [inner[dominated].value * 0.97, 100.0];
    let mut groups = inner.clone();
    for district in districts {
        let members = inner.iter().filter(|group| group.keys[0] == Some(district));
        let (value, contributors) =
            members.fold((0.0, 0), |(value, n), group| (value + group.value, n + group.contributors));
        groups.push(Group { keys: vec![Some(district), None], contributors, value, largest: [value / 3.0; 2] });
    }
    for industry in industries {
        let members = inner.iter().filter(|group| group.keys[1] == Some(industry));
        let (value, contributors) =
            members.fold((0.0, 0), |(value, n), group| (value + group.value, n + group.contributors));
        groups.push(Group { keys: vec![None, Some(industry)], contributors, value, largest: [value / 3.0; 2] });
    }
    let (value, contributors) =
        inner.iter().fold((0.0, 0), |(value, n), group| (value + group.value, n + group.contributors));
    groups.push(Group { keys: vec![None, None], contributors, value, largest: [value / 9.0; 2] });
    (groups, dominated)
}

#[test]
fn rollup_and_cube_margins_in_the_same_output_do_not_give_a_cell_back() {
    let grant = kwh_grant(&[("cube", &["district", "industry", "total_kwh"])]);
    let (groups, dominated) = cube();
    let (table, lineage) = emit(&["district", "industry"], ("total_kwh", KWH), true, &groups);
    let report = review_table(&grant, "cube", &table, &lineage, ReviewContext::default());
    assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
    assert_eq!(report.rule("dominance").expect("ran").outcome, RuleOutcome::Suppressed);
    let withheld = withheld_keys(&table, 2, &report);
    // An alternative table every released figure allows: move the dominated cell by +t
    // around a rectangle of withheld cells (margins included: a withheld margin moves with
    // its cells). Find the largest such t by trying every rectangle through it.
    let text = |key: Option<&str>| key.unwrap_or("").to_string();
    let value_of = |keys: &[String]| {
        groups
            .iter()
            .find(|group| group.keys.iter().map(|key| text(*key)).eq(keys.iter().cloned()))
            .map(|group| group.value)
    };
    let target = &groups[dominated];
    let (d0, i0) = (text(target.keys[0]), text(target.keys[1]));
    let values =
        |position: usize| -> BTreeSet<String> { groups.iter().map(|group| text(group.keys[position])).collect() };
    let mut best_up: f64 = 0.0;
    for d1 in values(0).into_iter().filter(|d| *d != d0) {
        for i1 in values(1).into_iter().filter(|i| *i != i0) {
            let corners = [vec![d1.clone(), i0.clone()], vec![d0.clone(), i1.clone()], vec![d1.clone(), i1.clone()]];
            if !corners.iter().all(|corner| withheld.contains(corner)) {
                continue;
            }
            // Between two inner values a partner moves against the cell; a margin ("") with it.
            let sign = |own: &str, partner: &str| if own.is_empty() || partner.is_empty() { 1.0 } else { -1.0 };
            let signs = [sign(&d0, &d1), sign(&i0, &i1), sign(&d0, &d1) * sign(&i0, &i1)];
            let room = corners
                .iter()
                .zip(signs)
                .map(|(corner, sign)| if sign < 0.0 { value_of(corner).unwrap_or(0.0) } else { f64::INFINITY })
                .fold(f64::INFINITY, f64::min);
            best_up = best_up.max(room);
        }
    }
    assert!(best_up >= p_level(target, 10.0), "a rectangle moves 吴兴区 × C26 by {best_up} only: {}", report.render());
    assert!(
        p_rule_sensitive(10, &Contributions { total: target.value, largest: target.largest.to_vec(), bucketed: false })
            .is_some()
    );
    let audit = report.audit.iter().find(|cell| cell.rule == "dominance").expect("audited");
    assert!(audit.protected, "{audit:?}");
}

#[test]
fn a_tiny_complement_cannot_hide_a_dominated_district() {
    // Issue 24: the only complement of a p%-dominated district was a district a thousandth
    // its size; released total − released districts gave it back within 5·10⁻⁶.
    let grant = kwh_grant(&[("by_district", &["district", "total_kwh"])]);
    let groups = districts();
    let (table, lineage) = emit(&["district"], ("total_kwh", KWH), true, &groups);
    let report = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
    let rules: BTreeSet<(String, String)> = report
        .suppressed_cells
        .iter()
        .map(|cell| (key_text(table.column(0).as_ref(), cell.row), cell.rule.to_string()))
        .collect();
    assert!(rules.contains(&("吴兴区".into(), "dominance".into())), "{rules:?}");
    assert!(!rules.iter().any(|(district, _)| district == "南浔区"), "the tiny district is no complement: {rules:?}");
    // The attacker's best estimate of 吴兴区 (total − released districts) misses it by the
    // withheld complements' sum: at least the p%-rule's level, far from 5·10⁻⁶.
    let complements: f64 = groups
        .iter()
        .filter(|group| rules.contains(&(group.keys[0].unwrap_or("").to_string(), "secondary".to_string())))
        .map(|group| group.value)
        .sum();
    assert!(complements >= p_level(&groups[0], 10.0), "{rules:?}");
    assert!(complements / groups[0].value > 0.1, "relative error {}", complements / groups[0].value);
    let cost = report.suppression_cost.iter().find(|cost| cost.column == "total_kwh").expect("cost");
    assert_eq!((cost.primary_cells, cost.secondary_cells), (1, 1), "{cost:?}");
}
