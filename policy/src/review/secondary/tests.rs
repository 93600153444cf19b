//! Secondary suppression and the interval audit through `review_table`: protective,
//! deterministic, and consistent with the grant's earlier releases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::review::{
    ColumnLineage, Contributions, MagnitudeLineage, Outcome, OutputLineage, ReleasedCell, ReleasedTable, ReviewContext,
    ReviewReport, RuleOutcome, SourceColumn, SubjectCounts, SubjectSketches, ValueClass, key_text, review_table,
};
use crate::sketch::{SubjectSketch, subject_key, width_for_threshold};
use crate::{
    AccessMode, ColumnTag, DatasetRequest, DisclosureParams, Grant, OutputSpec, ScenarioApplication, SubjectKind,
};

/// One group of a table: keys in the output's key order (None: a ROLLUP margin), its
/// contributors, and its kWh with the two largest contributions.
#[derive(Debug, Clone)]
struct Group {
    keys: Vec<Option<&'static str>>,
    contributors: u64,
    kwh: f64,
    largest: [f64; 2],
    /// Groups with the same name here share their first subjects (nested groups).
    subjects: Option<&'static str>,
}

/// A group of `contributors` equal companies.
fn spread(keys: &[&'static str], contributors: u64, kwh: f64) -> Group {
    let each = kwh / contributors.max(1) as f64;
    Group {
        keys: keys.iter().map(|key| Some(*key)).collect(),
        contributors,
        kwh,
        largest: [each, each],
        subjects: None,
    }
}

/// A group where one company makes `share` of the kWh and the second very little.
fn dominated(keys: &[&'static str], kwh: f64, share: f64) -> Group {
    let mut group = spread(keys, 20, kwh);
    group.largest = [kwh * share, kwh * (1.0 - share) / 19.0];
    group
}

fn grant(outputs: &[(&str, &[&str])]) -> Grant {
    let application = ScenarioApplication {
        title: "t".into(),
        purpose: "p".into(),
        developer: "acme".into(),
        datasets: vec![DatasetRequest {
            dataset: "e@v1".into(),
            columns: BTreeMap::from([("kwh".into(), AccessMode::AggregateOnly)]),
            row_filter: None,
        }],
        outputs: outputs
            .iter()
            .map(|(name, keys)| OutputSpec {
                name: name.to_string(),
                columns: keys.iter().chain(&["n", "kwh"]).map(|column| column.to_string()).collect(),
                max_rows: 10_000,
                verification: None,
            })
            .collect(),
        disclosure: DisclosureParams { auto_release: true, ..Default::default() },
        validity_days: 30,
        limits: Default::default(),
    };
    Grant::freeze("g-1".into(), "s-1".into(), application, "op".into(), 0, [1; 32])
}

/// The output the runtime would produce for `groups` (those with fewer than k = 10
/// contributors withheld by the engine, their keys recorded), with its lineage.
fn output(keys: &[&str], groups: &[Group]) -> (RecordBatch, OutputLineage) {
    let (emitted, withheld): (Vec<&Group>, Vec<&Group>) = groups.iter().partition(|group| group.contributors >= 10);
    let source = vec![SourceColumn { dataset: "e@v1".into(), column: "kwh".into(), tag: ColumnTag::Sensitive }];
    let mut fields = Vec::new();
    let mut columns: Vec<Arc<dyn Array>> = Vec::new();
    let mut lineage_columns = Vec::new();
    for (position, key) in keys.iter().enumerate() {
        fields.push(Field::new(*key, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(emitted.iter().map(|group| group.keys[position]).collect::<Vec<_>>())));
        lineage_columns.push(ColumnLineage::new(*key, vec![], ValueClass::Key));
    }
    fields.push(Field::new("n", DataType::Int64, false));
    columns.push(Arc::new(Int64Array::from(emitted.iter().map(|group| group.contributors as i64).collect::<Vec<_>>())));
    fields.push(Field::new("kwh", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(emitted.iter().map(|group| group.kwh).collect::<Vec<_>>())));
    for (name, measure) in [("n", "count(DISTINCT e.uscc) FROM e@v1"), ("kwh", "sum(e.kwh) FROM e@v1")] {
        lineage_columns.push(ColumnLineage {
            measure: Some(measure.into()),
            ..ColumnLineage::new(name, source.clone(), ValueClass::Aggregate)
        });
    }
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("table");
    let sketches = emitted
        .iter()
        .map(|group| {
            let mut sketch = SubjectSketch::new(width_for_threshold(10));
            for subject in 0..group.contributors {
                let name = group.subjects.map_or_else(|| format!("{:?}", group.keys), str::to_string);
                sketch.insert(subject_key(format!("{name}-{subject}").as_bytes()), 1);
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
        magnitudes: vec![MagnitudeLineage {
            measure: "sum(e.kwh)".into(),
            columns: vec!["kwh".into()],
            kind: SubjectKind::Enterprise,
            per_row: emitted
                .iter()
                .map(|group| Contributions { total: group.kwh, largest: group.largest.to_vec(), bucketed: false })
                .collect(),
        }],
        suppressed_groups: withheld.len() as u64,
        suppression_rule: Some("threshold k=10 distinct subjects".into()),
        withheld_keys: withheld
            .iter()
            .map(|group| group.keys.iter().map(|key| key.unwrap_or("").to_string()).collect())
            .collect(),
        withheld_values: withheld.iter().map(|group| vec![Some(group.contributors as f64), Some(group.kwh)]).collect(),
        withheld_contributors: Vec::new(),
        sketches: vec![SubjectSketches { kind: SubjectKind::Enterprise, per_row: sketches }],
        verification: None,
    };
    (table, lineage)
}

fn review(grant: &Grant, name: &str, keys: &[&str], groups: &[Group], released: &[ReleasedTable]) -> ReviewReport {
    let (table, lineage) = output(keys, groups);
    review_table(grant, name, &table, &lineage, ReviewContext { released, ..Default::default() })
}

/// The withheld cells of an output, by keys and column: what must not depend on row order.
fn withheld_cells(keys: &[&str], groups: &[Group], report: &ReviewReport) -> BTreeSet<(Vec<String>, String)> {
    let (table, _) = output(keys, groups);
    let keys_of = |row: usize| -> Vec<String> {
        (0..keys.len()).map(|column| key_text(table.column(column).as_ref(), row)).collect()
    };
    let mut cells: BTreeSet<(Vec<String>, String)> =
        report.suppressed_cells.iter().map(|cell| (keys_of(cell.row), cell.column.clone())).collect();
    for &row in &report.suppressed_rows {
        cells.insert((keys_of(row), "*".into()));
    }
    cells
}

/// A district × industry table with every kind of primary: groups the engine withheld, a
/// p%-dominated cell, an (n,k)-dominated cell, and spread cells around them.
fn district_by_industry() -> Vec<Group> {
    let mut groups = Vec::new();
    for (d, district) in ["吴兴区", "南浔区", "德清县", "长兴县", "安吉县"].into_iter().enumerate() {
        for (i, industry) in ["C13", "C26", "D44", "F51"].into_iter().enumerate() {
            let kwh = 1_000.0 * (1 + (d * 7 + i * 3) % 11) as f64;
            groups.push(spread(&[district, industry], 12 + ((d + i) % 5) as u64 * 4, kwh));
        }
    }
    groups[1] = spread(&["吴兴区", "C26"], 3, 2_400.0); // below k: the engine withholds it
    groups[6] = dominated(&["南浔区", "D44"], 9_000.0, 0.97); // p%-rule
    let mut nk = spread(&["德清县", "F51"], 20, 6_000.0);
    nk.largest = [3_000.0, 2_700.0]; // the two largest make 95% (> 90%), the rest 5% of x1 ... p passes
    groups[11] = nk;
    groups[17] = spread(&["安吉县", "C26"], 7, 800.0); // below k
    groups
}

/// Row `d` of a one-key table of districts, each a sum of many companies except one.
fn districts() -> Vec<Group> {
    vec![
        dominated(&["吴兴区"], 1_000_000.0, 0.98),
        spread(&["南浔区"], 30, 1_000.0),
        spread(&["德清县"], 25, 450_000.0),
        spread(&["长兴县"], 40, 700_000.0),
        spread(&["安吉县"], 12, 90_000.0),
    ]
}

/// Shuffles with a seeded xorshift (Fisher–Yates).
fn shuffle<T>(items: &mut [T], state: &mut u64) {
    for index in (1..items.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        items.swap(index, (*state % (index as u64 + 1)) as usize);
    }
}

/// An output to review: its name, keys, groups and the grant's earlier releases.
type Case = (&'static str, Vec<&'static str>, Vec<Group>, Vec<ReleasedTable>);

#[test]
fn the_same_data_withholds_the_same_cells_whatever_the_row_order() {
    let mut rollup = districts();
    rollup.push(Group {
        keys: vec![None],
        contributors: 120,
        kwh: 2_241_000.0,
        largest: [980_000.0, 40_000.0],
        subjects: None,
    });
    // Two nested groups (the second is the first less two companies: differencing withholds
    // one), and a district an earlier release withheld (consistency withholds it again).
    let mut nested = districts();
    let mut whole = spread(&["湖州市"], 60, 2_000_000.0);
    whole.subjects = Some("湖州");
    let mut part = spread(&["湖州市（不含开发区）"], 58, 1_900_000.0);
    part.subjects = Some("湖州");
    nested.extend([whole, part]);
    let earlier = ReleasedTable {
        label: "egress e-1 (\"by_district\")".into(),
        keys: vec!["district".into()],
        rows: vec![vec![Some("长兴县".into())]],
        measures: vec![crate::review::ReleasedMeasure {
            column: "kwh".into(),
            measure: "sum(e.kwh) FROM e@v1".into(),
            cells: vec![ReleasedCell::Withheld {
                value: Some(700_000.0),
                rule: crate::review::ReviewRule::Dominance,
                below: 60_000.0,
                above: 60_000.0,
            }],
        }],
    };
    let tables: Vec<Case> = vec![
        ("by_both", vec!["district", "industry"], district_by_industry(), vec![]),
        ("by_district", vec!["district"], districts(), vec![]),
        ("by_district", vec!["district"], rollup, vec![]),
        ("by_district", vec!["district"], nested, vec![earlier]),
    ];
    let grant = grant(&[("by_both", &["district", "industry"]), ("by_district", &["district"])]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rules_seen = BTreeSet::new();
    for (name, keys, groups, released) in tables {
        let first = review(&grant, name, &keys, &groups, &released);
        // The engine's groups are primaries of the rule `threshold`, audited without a row.
        rules_seen.extend(first.suppressed_cells.iter().map(|cell| cell.rule.to_string()));
        rules_seen.extend(first.audit.iter().map(|cell| cell.rule.to_string()));
        assert_ne!(first.outcome, Outcome::Blocked, "{}", first.render());
        let expected = withheld_cells(&keys, &groups, &first);
        assert!(expected.iter().any(|(_, column)| column == "kwh"), "{}", first.render());
        for _ in 0..60 {
            let mut shuffled = groups.clone();
            shuffle(&mut shuffled, &mut state);
            let report = review(&grant, name, &keys, &shuffled, &released);
            assert_eq!(withheld_cells(&keys, &shuffled, &report), expected, "{}", report.render());
            assert_eq!(report.outcome, first.outcome);
        }
    }
    let every = ["consistency", "differencing", "dominance", "secondary", "threshold"].map(String::from);
    assert!(every.iter().all(|rule| rules_seen.contains(rule)), "{rules_seen:?}");
}

#[test]
fn every_kind_of_primary_is_audited_and_protected() {
    let grant = grant(&[("by_both", &["district", "industry"])]);
    let report = review(&grant, "by_both", &["district", "industry"], &district_by_industry(), &[]);
    let secondary = report.rule("secondary").expect("ran");
    assert_eq!(secondary.outcome, RuleOutcome::Suppressed, "{}", report.render());
    assert!(secondary.figure.contains("every protection level met"), "{}", secondary.figure);
    let rules: BTreeSet<&str> = report.audit.iter().map(|cell| cell.rule.as_str()).collect();
    assert_eq!(rules, BTreeSet::from(["dominance", "threshold"]), "{:#?}", report.audit);
    assert!(report.audit.iter().all(|cell| cell.protected && cell.below >= 1.0 && cell.above >= 1.0));
    // Both groups the engine withheld are audited, per measure, without rows or keys.
    assert_eq!(report.audit.iter().filter(|cell| cell.row.is_none()).count(), 4);
    let cost = report.suppression_cost.iter().find(|cost| cost.column == "kwh").expect("cost");
    assert!(cost.secondary_cells > 0 && cost.primary_cells == 4, "{cost:?}");
    let json = serde_json::to_string(&report).expect("json");
    assert!(!json.contains("9000") && !json.contains("2400"), "no withheld value in the report: {json}");
    // Nor how far the attacker's interval reaches: with one end computed from released cells,
    // a multiple of the level gives the value back.
    assert!(!json.contains("\"below\"") && !json.contains("\"above\"") && !json.contains("×"), "{json}");
    assert!(!json.contains("contributors <"), "a withheld row's contributor count stays in the domain: {json}");
}

#[test]
fn a_tiny_district_does_not_protect_a_dominated_one() {
    let grant = grant(&[("by_district", &["district"])]);
    let groups = districts();
    let report = review(&grant, "by_district", &["district"], &groups, &[]);
    let withheld = withheld_cells(&["district"], &groups, &report);
    let names: BTreeSet<&str> = withheld.iter().map(|(keys, _)| keys[0].as_str()).collect();
    assert!(names.contains("吴兴区"), "{}", report.render());
    assert!(!names.contains("南浔区"), "1,000 kWh cannot hide a 1,000,000 kWh district: {}", report.render());
    // The cheapest district that is large enough: 安吉县 (90,000) is below the level the
    // (2,90%)-rule asks (100/90 · 981,053 − 1,000,000 ≈ 90,059), 德清县 (450,000) meets it.
    assert!(names.contains("德清县"), "{}", report.render());
    let audit = report.audit.iter().find(|cell| cell.rule == "dominance").expect("audited");
    assert!(audit.protected && audit.above >= 1.0, "{audit:?}");
}

#[test]
fn a_cell_withheld_in_an_earlier_release_stays_withheld() {
    let grant = grant(&[("by_district", &["district"]), ("total", &[])]);
    let groups = districts();
    let (table, lineage) = output(&["district"], &groups);
    let first = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    let earlier = ReleasedTable::from_review("egress e-1 (\"by_district\")", &table, &lineage, &first);
    let json = serde_json::to_string(&earlier).expect("json");
    let earlier: ReleasedTable = serde_json::from_str(&json).expect("round trip");
    // The same districts again, but the dominated one is no longer dominated (other data
    // would be needed for that; here its largest contributions are spread): it stays withheld.
    let mut later = districts();
    later[0] = spread(&["吴兴区"], 20, 1_000_000.0);
    let report = review(&grant, "by_district", &["district"], &later, std::slice::from_ref(&earlier));
    let consistency = report.rule("consistency").expect("ran");
    assert_eq!(consistency.outcome, RuleOutcome::Suppressed, "{}", report.render());
    let cell = report.suppressed_cells.iter().find(|cell| cell.rule == "consistency").expect("withheld again");
    assert!(cell.figure.contains("egress e-1"), "{}", cell.figure);
    assert!(report.audit.iter().any(|cell| cell.rule == "consistency" && cell.protected), "{:#?}", report.audit);
}

#[test]
fn a_primary_an_earlier_release_published_blocks_the_output() {
    let grant = grant(&[("by_district", &["district"])]);
    // Earlier, 吴兴区 was spread over many companies and released.
    let mut earlier_groups = districts();
    earlier_groups[0] = spread(&["吴兴区"], 20, 1_000_000.0);
    let (table, lineage) = output(&["district"], &earlier_groups);
    let first = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    assert_eq!(first.outcome, Outcome::Released, "{}", first.render());
    let earlier = ReleasedTable::from_review("egress e-1 (\"by_district\")", &table, &lineage, &first);
    // Now the same measure over the same rows says one company makes 98% of it: withholding
    // it cannot take back what was published.
    let report = review(&grant, "by_district", &["district"], &districts(), std::slice::from_ref(&earlier));
    assert_eq!(report.blocking_rules(), vec!["secondary"], "{}", report.render());
    let secondary = report.rule("secondary").expect("ran");
    assert!(secondary.figure.contains("an earlier release published it"), "{}", secondary.figure);
    assert!(report.audit.iter().any(|cell| cell.rule == "dominance" && !cell.protected));
}

#[test]
fn a_later_finer_table_cannot_complete_an_earlier_equation() {
    // Earlier: kWh by district, 吴兴区 dominated and withheld with a complement.
    let grant = grant(&[("by_district", &["district"]), ("by_both", &["district", "industry"])]);
    let by_district = districts();
    let (table, lineage) = output(&["district"], &by_district);
    let first = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    assert_eq!(first.outcome, Outcome::Released, "{}", first.render());
    let earlier = ReleasedTable::from_review("egress e-1 (\"by_district\")", &table, &lineage, &first);
    // Now: the same kWh by district and industry, where no cell is dominated on its own (the
    // giant company's kWh is split over three industries).
    let mut finer = Vec::new();
    for group in &by_district {
        let district = group.keys[0].expect("district");
        for (industry, part) in [("C13", 0.5), ("C26", 0.3), ("D44", 0.2)] {
            finer.push(spread(&[district, industry], 10 + group.contributors, group.kwh * part));
        }
    }
    let report = review(&grant, "by_both", &["district", "industry"], &finer, std::slice::from_ref(&earlier));
    let secondary = report.rule("secondary").expect("ran");
    assert!(secondary.figure.contains("of earlier releases"), "{}", secondary.figure);
    assert_ne!(report.outcome, Outcome::Blocked, "{}", report.render());
    assert!(secondary.figure.contains("every protection level met"), "{}", secondary.figure);
    // 吴兴区's industries may not all be released: their sum is the earlier primary. One
    // withheld with one of the earlier complement's district (in the same industry) is
    // enough, since neither district's total is published.
    let withheld = withheld_cells(&["district", "industry"], &finer, &report);
    let in_wuxing = withheld.iter().filter(|(keys, column)| keys[0] == "吴兴区" && column == "kwh").count();
    assert!(in_wuxing >= 1, "{}", report.render());
    let figures: Vec<&str> = report.suppressed_cells.iter().map(|cell| cell.figure.as_str()).collect();
    assert!(
        figures.iter().all(|figure| {
            figure.contains("a cell of an earlier release") || figure.contains("the other measures of its row")
        }),
        "{figures:?}"
    );
}

#[test]
fn released_records_keep_values_levels_and_the_engines_groups() {
    let grant = grant(&[("by_both", &["district", "industry"])]);
    let groups = district_by_industry();
    let (table, lineage) = output(&["district", "industry"], &groups);
    let report = review_table(&grant, "by_both", &table, &lineage, ReviewContext::default());
    let record = ReleasedTable::from_review("egress e-7 (\"by_both\")", &table, &lineage, &report);
    assert_eq!(record.keys, vec!["district", "industry"]);
    assert_eq!(record.rows.len(), groups.len(), "emitted rows and the engine's two groups");
    let kwh = record.measures.iter().find(|measure| measure.column == "kwh").expect("kwh");
    assert_eq!(kwh.measure, "sum(e.kwh) FROM e@v1");
    let dominance = kwh
        .cells
        .iter()
        .find_map(|cell| match cell {
            ReleasedCell::Withheld { rule, above, value, .. } if rule == "dominance" => Some((*above, *value)),
            _ => None,
        })
        .expect("a dominated cell");
    assert!(dominance.0 > 0.0 && dominance.1 == Some(9_000.0), "{dominance:?}");
    // The engine's groups carry the values the runtime recorded for them, and their levels.
    let engine = kwh.cells.iter().rev().take(2).all(
        |cell| matches!(cell, ReleasedCell::Withheld { value: Some(value), below, .. } if *value > 0.0 && *below > 0.0),
    );
    assert!(engine, "{:?}", &kwh.cells[kwh.cells.len() - 2..]);
}

/// A large district × industry table with ROLLUP margins over industry (every district's
/// total and the grand total), about 2% of groups below k and 2% dominated.
fn large(districts: usize, industries: usize) -> Vec<Group> {
    let names: Vec<&'static str> =
        (0..districts.max(industries)).map(|index| &*Box::leak(format!("k{index:03}").into_boxed_str())).collect();
    let mut state = 0x5eedu64;
    let mut next = |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut groups = Vec::new();
    for district in 0..districts {
        let (mut total, mut companies) = (0.0, 0);
        for industry in 0..industries {
            let keys = [names[district], names[industry]];
            let kwh = (1_000 + next(100_000)) as f64;
            let group = match next(100) {
                0 | 1 => spread(&keys, 1 + next(9), kwh),
                2 | 3 => dominated(&keys, kwh, 0.9 + next(10) as f64 / 100.0),
                _ => spread(&keys, 10 + next(90), kwh),
            };
            total += kwh;
            companies += group.contributors;
            groups.push(group);
        }
        // Each company is in one industry: the district's count is the sum of its groups'.
        groups.push(Group {
            keys: vec![Some(names[district]), None],
            contributors: companies,
            kwh: total,
            largest: [total / 50.0; 2],
            subjects: None,
        });
    }
    groups
}

#[test]
fn a_large_table_with_margins_and_fifty_earlier_releases_is_protected_and_timed() {
    // 30 districts × 30 industries with margins: 930 rows × 2 measures (1,860 cells) in a
    // debug build; UNSEEN_AUDIT_DISTRICTS=100 with --release for the 10,000-cell figure.
    let districts: usize =
        std::env::var("UNSEEN_AUDIT_DISTRICTS").ok().and_then(|text| text.parse().ok()).unwrap_or(30);
    let industries = districts.min(50);
    let grant = grant(&[("by_both", &["district", "industry"]), ("by_district", &["district"])]);
    let groups = large(districts, industries);
    // Earlier releases: the same measure by district (coarse), and 49 tables of other
    // measures (other identities: indexed, not related).
    let by_district: Vec<Group> = groups
        .iter()
        .filter(|group| group.keys[1].is_none())
        .map(|group| {
            let mut coarse = group.clone();
            coarse.keys.truncate(1);
            coarse
        })
        .collect();
    let (table, lineage) = output(&["district"], &by_district);
    let first = review_table(&grant, "by_district", &table, &lineage, ReviewContext::default());
    let mut released = vec![ReleasedTable::from_review("egress e-1", &table, &lineage, &first)];
    for index in 0..49 {
        let mut other = released[0].clone();
        other.label = format!("egress e-{}", index + 2);
        for measure in &mut other.measures {
            measure.measure = format!("{} (other measure {index})", measure.measure);
        }
        released.push(other);
    }
    let (table, lineage) = output(&["district", "industry"], &groups);
    let cells = table.num_rows() * 2;
    let mut grant = grant;
    grant.application.disclosure.differencing = false;
    let mut plain_grant = grant.clone();
    plain_grant.application.disclosure.secondary_suppression = false;
    let started = std::time::Instant::now();
    review_table(&plain_grant, "by_both", &table, &lineage, ReviewContext::default());
    let plain = started.elapsed();
    let started = std::time::Instant::now();
    let report =
        review_table(&grant, "by_both", &table, &lineage, ReviewContext { released: &released, ..Default::default() });
    let elapsed = started.elapsed();
    let secondary = report.rule("secondary").expect("ran");
    eprintln!(
        "review of {cells} cells ({} rows) with {} earlier releases: {:.1} ms ({:.1} ms without secondary suppression and the audit); {}",
        table.num_rows(),
        released.len(),
        elapsed.as_secs_f64() * 1e3,
        plain.as_secs_f64() * 1e3,
        secondary.figure
    );
    for cost in &report.suppression_cost {
        eprintln!("  {cost:?}");
    }
    assert_ne!(report.outcome, Outcome::Blocked, "{}", report.render());
    assert!(report.audit.iter().all(|cell| cell.protected));
}

#[test]
fn a_three_key_table_is_protected_by_a_cube_and_audited_by_linear_programming() {
    let grant = grant(&[("by_three", &["district", "industry", "year"])]);
    let mut groups = Vec::new();
    for district in ["吴兴区", "南浔区", "德清县"] {
        for industry in ["C13", "C26", "D44"] {
            for year in ["2023", "2024"] {
                let kwh = 10_000.0 + 1_000.0 * (district.len() + industry.len() * 3 + year.len()) as f64;
                groups.push(spread(&[district, industry, year], 15, kwh));
            }
        }
    }
    groups[4] = dominated(&["吴兴区", "D44", "2023"], 12_000.0, 0.97);
    let report = review(&grant, "by_three", &["district", "industry", "year"], &groups, &[]);
    assert_eq!(report.outcome, Outcome::Released, "{}", report.render());
    let secondary = report.rule("secondary").expect("ran");
    assert!(secondary.figure.contains("by linear programming"), "{}", secondary.figure);
    assert!(report.audit.iter().all(|cell| cell.protected), "{:#?}", report.audit);
    // A 2×2×2 cube: the primary and seven complements.
    let cost = report.suppression_cost.iter().find(|cost| cost.column == "kwh").expect("cost");
    assert_eq!((cost.primary_cells, cost.secondary_cells), (1, 7), "{cost:?}");
}

#[test]
fn a_row_with_one_withheld_measure_withholds_its_others_so_an_average_cannot_give_a_sum_back() {
    // kwh and n are two measures of each (district, industry) group: were a group's kwh
    // withheld and its n released beside an average, kwh = average × n.
    let grant = grant(&[("by_both", &["district", "industry"])]);
    let report = review(&grant, "by_both", &["district", "industry"], &district_by_industry(), &[]);
    let mut by_row: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for cell in &report.suppressed_cells {
        by_row.entry(cell.row).or_default().insert(cell.column.as_str());
    }
    assert!(!by_row.is_empty());
    for (row, columns) in by_row {
        assert_eq!(columns, BTreeSet::from(["kwh", "n"]), "row {row}: {}", report.render());
    }
}
