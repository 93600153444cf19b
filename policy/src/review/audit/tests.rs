use super::*;

fn row(keys: &[Option<&str>], value: f64, withheld: bool, primary: bool) -> RowCell {
    RowCell {
        keys: keys.iter().map(|key| key.map(str::to_string)).collect(),
        value: Some(value),
        withheld,
        level: primary.then_some(Level { below: 0.5, above: 0.5 }),
        row: None,
        contributors: None,
    }
}

fn table(columns: &[&str], rows: Vec<RowCell>) -> TableCells {
    TableCells { columns: columns.iter().map(|name| name.to_string()).collect(), rows, current: true }
}

fn extent_of(model: &Model, audit: &AuditResult, keys: &[(&str, &str)]) -> Extent {
    let key: Key = keys
        .iter()
        .map(|(column, value)| {
            let column = model.columns.iter().position(|name| name == column).expect("column") as u32;
            let value = model.values.iter().position(|text| text == value).expect("value") as u32;
            (column, value)
        })
        .collect();
    let cell = model.cells.iter().position(|cell| cell.key == key).expect("cell");
    audit.audited.iter().find(|audited| audited.cell == cell).expect("audited").extent
}

#[test]
fn the_handbooks_three_by_two_example_gives_three_to_six() {
    // Geurts (1992) as the SDC handbook shows it: X11 + X12 = 7, X21 + X22 = 3, row 3 is
    // released (3, 3); columns add to 9 and 7. X11 lies in [3, 6].
    let cells = vec![
        row(&[Some("1"), Some("1")], 4.0, true, true),
        row(&[Some("1"), Some("2")], 3.0, true, false),
        row(&[Some("2"), Some("1")], 2.0, true, false),
        row(&[Some("2"), Some("2")], 1.0, true, false),
        row(&[Some("3"), Some("1")], 3.0, false, false),
        row(&[Some("3"), Some("2")], 3.0, false, false),
    ];
    let model = Model::build(&[table(&["r", "c"], cells)], false, 10);
    let audit = model.audit(|_| true);
    let extent = extent_of(&model, &audit, &[("c", "1"), ("r", "1")]);
    assert!((extent.below - 1.0).abs() < 1e-9 && (extent.above - 2.0).abs() < 1e-9, "{extent:?}");
    assert_eq!(audit.by_lp, 0, "a two-dimensional table is a network");
}

#[test]
fn a_lone_withheld_cell_of_a_line_is_recovered_exactly() {
    let cells = vec![
        row(&[Some("a")], 40.0, true, true),
        row(&[Some("b")], 50.0, false, false),
        row(&[Some("c")], 60.0, false, false),
    ];
    let model = Model::build(&[table(&["district"], cells)], false, 10);
    let extent = extent_of(&model, &model.audit(|_| true), &[("district", "a")]);
    assert_eq!((extent.below, extent.above), (0.0, 0.0));
}

#[test]
fn a_released_rollup_margin_is_the_same_cell_as_the_credited_total() {
    // ROLLUP(district): the grand row (NULL district) is released; b is withheld with a.
    let cells = vec![
        row(&[Some("a")], 40.0, true, true),
        row(&[Some("b")], 5.0, true, false),
        row(&[Some("c")], 60.0, false, false),
        row(&[None], 105.0, false, false),
    ];
    let model = Model::build(&[table(&["district"], cells)], false, 10);
    let extent = extent_of(&model, &model.audit(|_| true), &[("district", "a")]);
    assert!((extent.below - 40.0).abs() < 1e-9 && (extent.above - 5.0).abs() < 1e-9, "{extent:?}");
}

#[test]
fn a_total_over_fewer_than_k_contributors_is_not_credited_to_the_attacker() {
    // Four small groups, all withheld, of 10 residents in all. Credited with every line
    // total (a: 7, b: 3, x: 5, y: 5), the attacker holds (a, x) in [2, 5]. But each line's
    // groups hold fewer than k = 10 contributors: nobody publishes those totals, only the
    // grand total (10), and (a, x) may be anything in [0, 10].
    let counted = |keys: &[Option<&str>], value: f64, primary: bool| RowCell {
        contributors: Some(value as u64),
        ..row(keys, value, true, primary)
    };
    let cells = vec![
        counted(&[Some("a"), Some("x")], 3.0, true),
        counted(&[Some("a"), Some("y")], 4.0, true),
        counted(&[Some("b"), Some("x")], 2.0, true),
        counted(&[Some("b"), Some("y")], 1.0, true),
    ];
    let at = [("district", "a"), ("sex", "x")];
    let model = Model::build(&[table(&["district", "sex"], cells.clone())], true, 10);
    let uncredited = extent_of(&model, &model.audit(|_| true), &at);
    assert_eq!((uncredited.below, uncredited.above), (3.0, 7.0), "only the grand total binds it");
    let unknown: Vec<RowCell> = cells.into_iter().map(|cell| RowCell { contributors: None, ..cell }).collect();
    let model = Model::build(&[table(&["district", "sex"], unknown)], true, 10);
    let credited = extent_of(&model, &model.audit(|_| true), &at);
    assert_eq!((credited.below, credited.above), (1.0, 2.0), "every line total binds it");
}

/// A deterministic generator for the random tables below.
struct Draw(u64);

impl Draw {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn maximum_flow_and_linear_programming_agree_on_random_two_dimensional_tables() {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40 {
        let (rows, columns) = (2 + draw.next(5), 2 + draw.next(5));
        let mut cells = Vec::new();
        for r in 0..rows {
            for c in 0..columns {
                let withheld = draw.next(3) == 0;
                let value = (1 + draw.next(100)) as f64;
                cells.push(row(&[Some(&format!("r{r}")), Some(&format!("c{c}"))], value, withheld, withheld));
            }
        }
        let model = Model::build(&[table(&["r", "c"], cells)], false, 10);
        let audit = model.audit(|_| true);
        // Solve every component again by linear programming.
        for audited in &audit.audited {
            let members: Vec<usize> =
                (0..model.cells.len()).filter(|&cell| model.cells[cell].state == State::Withheld).collect();
            let relations: Vec<usize> = (0..model.relations.len())
                .filter(|&position| {
                    let relation = &model.relations[position];
                    std::iter::once(relation.coarse)
                        .chain(relation.fine.iter().copied())
                        .any(|cell| model.cells[cell].state == State::Withheld)
                })
                .collect();
            let system = model.system(&members, &relations);
            let local = members.iter().position(|&cell| cell == audited.cell).expect("member");
            let by_program = program_extent(&system, local, false);
            for (flow, program) in [(audited.extent.below, by_program.below), (audited.extent.above, by_program.above)]
            {
                assert!((flow - program).abs() < 1e-6 * (1.0 + program.abs()), "flow {flow} vs program {program}");
            }
        }
    }
}

#[test]
fn three_keys_are_solved_by_linear_programming() {
    let mut cells = Vec::new();
    for a in ["a1", "a2"] {
        for b in ["b1", "b2"] {
            for c in ["c1", "c2"] {
                cells.push(row(&[Some(a), Some(b), Some(c)], 10.0, true, a == "a1" && b == "b1" && c == "c1"));
            }
        }
    }
    let model = Model::build(&[table(&["a", "b", "c"], cells)], false, 10);
    let audit = model.audit(|_| true);
    assert_eq!(audit.by_lp, 1);
    let extent = extent_of(&model, &audit, &[("a", "a1"), ("b", "b1"), ("c", "c1")]);
    // The 2×2×2 cube moves ±t with alternating signs: ±10.
    assert!((extent.below - 10.0).abs() < 1e-6 && (extent.above - 10.0).abs() < 1e-6, "{extent:?}");
}

/// The measurement that chose maximum flow over linear programming for networks: a
/// 100 × 100 table whose line totals are known, 2% primaries each withheld with a random
/// rectangle (767 withheld cells in one component), every withheld cell audited. Run with
/// `--release --nocapture` for the figure; a few cells are checked against microlp.
#[test]
fn maximum_flow_audits_every_withheld_cell_of_a_dense_ten_thousand_cell_pattern() {
    let (rows, columns) = (100u64, 100u64);
    let mut draw = Draw(0x5eed);
    let mut value = vec![vec![0.0; columns as usize]; rows as usize];
    for row in value.iter_mut() {
        for cell in row.iter_mut() {
            *cell = (1 + draw.next(1000)) as f64 * if draw.next(10) == 0 { 50.0 } else { 1.0 };
        }
    }
    let mut withheld = vec![vec![false; columns as usize]; rows as usize];
    for _ in 0..rows * columns / 50 {
        let (r, c) = (draw.next(rows) as usize, draw.next(columns) as usize);
        let (mut r2, mut c2) = (draw.next(rows) as usize, draw.next(columns) as usize);
        if r2 == r {
            r2 = (r + 1) % rows as usize;
        }
        if c2 == c {
            c2 = (c + 1) % columns as usize;
        }
        for (a, b) in [(r, c), (r, c2), (r2, c), (r2, c2)] {
            withheld[a][b] = true;
        }
    }
    let mut cells = Vec::new();
    for r in 0..rows as usize {
        for c in 0..columns as usize {
            let keys = [Some(format!("r{r:03}")), Some(format!("c{c:03}"))];
            let keys: Vec<Option<&str>> = keys.iter().map(|key| key.as_deref()).collect();
            cells.push(row(&keys, value[r][c], withheld[r][c], withheld[r][c]));
        }
    }
    let model = Model::build(&[table(&["r", "c"], cells)], false, 10);
    let started = std::time::Instant::now();
    let audit = model.audit(|_| true);
    let elapsed = started.elapsed();
    eprintln!(
        "maximum flow: {} withheld cells in {} components audited in {:.1} ms",
        audit.audited.len(),
        audit.components,
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!((audit.audited.len(), audit.by_lp), (767, 0));
    let members: Vec<usize> =
        (0..model.cells.len()).filter(|&cell| model.cells[cell].state == State::Withheld).collect();
    let relations: Vec<usize> = (0..model.relations.len())
        .filter(|&position| {
            let relation = &model.relations[position];
            std::iter::once(relation.coarse)
                .chain(relation.fine.iter().copied())
                .any(|cell| model.cells[cell].state == State::Withheld)
        })
        .collect();
    let system = model.system(&members, &relations);
    for audited in audit.audited.iter().step_by(300) {
        let local = members.iter().position(|&cell| cell == audited.cell).expect("member");
        let by_program = program_extent(&system, local, false);
        for (flow, program) in [(audited.extent.below, by_program.below), (audited.extent.above, by_program.above)] {
            assert!((flow - program).abs() < 1e-6 * (1.0 + program.abs()), "flow {flow} vs program {program}");
        }
    }
}
