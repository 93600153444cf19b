//! The interval audit (what τ-ARGUS calls audit): for each withheld cell that needs
//! protection, the interval of values an attacker can still hold possible given every
//! released cell and the additive relations between the cells.
//!
//! One [`Model`] per measure (cells of the same measure identity, in this output and in the
//! grant's earlier releases). A cell is named by its non-ALL keys, so a ROLLUP margin, a
//! row of a separate total output and the line total an attacker may know from elsewhere
//! are the same cell. Relations say a coarse cell is the sum of the finer cells that agree
//! with it; the attacker is credited with every line total along each key dimension of
//! every table and with the grand total, unless a table of the grant carries that total
//! itself (then what it released or withheld is what the attacker has).
//!
//! Released cells and credited totals are constants, so only withheld cells are variables;
//! relations split them into connected components, each solved alone. A component whose
//! relations form a network (every cell in at most two relations: the lines of a
//! two-dimensional table, with or without its margins) is solved exactly by maximum flow;
//! any other (three keys or more, relations across tables of different shapes) by linear
//! programming with `microlp`.
//!
//! Both by measurement (release builds, the minimum and maximum of every withheld cell of a
//! district × industry table whose line totals are known, 2% primaries with rectangles):
//! for a 1,000-cell table (77 withheld cells, one component, 154 programs) microlp 0.7 took
//! 51 ms, clarabel 0.11 52 ms but answered up to 1.4·10⁻³ off (an interior-point method at
//! its default tolerances), good_lp over microlp 88 ms, minilp 0.2 110 ms; re-solving one
//! warm problem per target (fixing and releasing a selector variable) was slower still
//! (87 ms minilp, 260 ms microlp). For a 10,000-cell table (767 withheld cells in one
//! component) microlp took 9.9 s, maximum flow on the same network 68 ms (the test
//! `maximum_flow_audits_every_withheld_cell_of_a_dense_ten_thousand_cell_pattern`): linear
//! programming cell by cell cannot meet the review's 100 ms goal, so it is kept for the
//! components that are not networks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::protection::Level;

/// A cell's coordinates: the (column, value) ranks of its non-ALL keys, sorted by column.
pub(crate) type Key = Vec<(u32, u32)>;

/// What the attacker has of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Published by this output or an earlier release.
    Released,
    /// A line total no table of the grant carries: credited to the attacker.
    Known,
    /// Withheld everywhere it appears: a variable of the audit.
    Withheld,
}

/// One cell of a measure.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub key: Key,
    /// Its value as reviewed; for a cell whose value the reviewer does not know (a group the
    /// engine withheld), the value inferred from the relations, or 0 (see [`Model::build`]).
    pub value: f64,
    pub value_known: bool,
    pub state: State,
    /// The protection it needs (a primary), or None (a complement, or released).
    pub level: Option<Level>,
    /// Its row in the current output's grid (emitted rows, then the engine's groups).
    pub current: Option<usize>,
    /// A table of the grant other than this output released it.
    pub released_earlier: bool,
    /// Created as a credited line total (no table carries it).
    pub implied: bool,
    /// Distinct contributors the host counted (capped at k), when any table said.
    pub contributors: Option<u64>,
}

/// The input cells of one table: its key columns, then one entry per row.
#[derive(Debug, Default)]
pub(crate) struct TableCells {
    pub columns: Vec<String>,
    pub rows: Vec<RowCell>,
    /// This output (not an earlier release).
    pub current: bool,
}

/// One row's cell of the measure.
#[derive(Debug, Clone)]
pub(crate) struct RowCell {
    /// Key texts in the table's column order; None is ALL (a NULL key of a margin row).
    pub keys: Vec<Option<String>>,
    pub value: Option<f64>,
    pub withheld: bool,
    pub level: Option<Level>,
    /// Grid row, for the current output.
    pub row: Option<usize>,
    /// Distinct contributors the host counted for the row (capped at k), when known.
    pub contributors: Option<u64>,
}

/// `coarse` is the sum of `fine`.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    pub coarse: usize,
    pub fine: Vec<usize>,
}

/// The cells and relations of one measure.
#[derive(Debug)]
pub(crate) struct Model {
    /// Key column names, by rank.
    pub columns: Vec<String>,
    /// Key texts, by rank (the audit's tests name cells by them).
    #[cfg(test)]
    pub values: Vec<String>,
    pub cells: Vec<Cell>,
    pub relations: Vec<Relation>,
    /// Every value of the measure the reviewer knows is ≥ 0 (or it is a count).
    pub nonnegative: bool,
}

/// Distances from a cell's value to the ends of its interval (∞ when unbounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Extent {
    pub below: f64,
    pub above: f64,
}

/// What the audit found for one cell that needs protection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Audited {
    pub cell: usize,
    pub extent: Extent,
    pub level: Level,
    pub protected: bool,
}

/// The audit of one model in its current state.
#[derive(Debug, Default)]
pub(crate) struct AuditResult {
    pub audited: Vec<Audited>,
    pub relations: usize,
    pub components: usize,
    /// Components solved by linear programming (not a network).
    pub by_lp: usize,
}

impl Model {
    /// Builds the cells and relations of one measure from the tables that carry it.
    ///
    /// A cell several tables carry is released if any of them released it. The values of
    /// cells the reviewer does not know are inferred where a relation gives them (as an
    /// attacker would infer them); the rest are taken as 0, and every credited total is the
    /// sum of its cells as taken. For non-negative measures that errs towards protection:
    /// the true polytope contains the assumed one shifted by the unknown values, so every
    /// interval measured reaches at most as far as the true one.
    pub fn build(tables: &[TableCells], count: bool, threshold_k: u64) -> Model {
        // Ranks of column names and key values in text order, so that every ordering below
        // is the same whatever the order of rows.
        let mut column_names: BTreeSet<&str> = BTreeSet::new();
        let mut value_texts: BTreeSet<&str> = BTreeSet::new();
        for table in tables {
            column_names.extend(table.columns.iter().map(String::as_str));
            for row in &table.rows {
                value_texts.extend(row.keys.iter().flatten().map(String::as_str));
            }
        }
        let columns: Vec<String> = column_names.iter().map(|name| name.to_string()).collect();
        let values: Vec<String> = value_texts.iter().map(|text| text.to_string()).collect();
        let column_rank: HashMap<&str, u32> =
            columns.iter().enumerate().map(|(rank, name)| (name.as_str(), rank as u32)).collect();
        let value_rank: HashMap<&str, u32> =
            values.iter().enumerate().map(|(rank, text)| (text.as_str(), rank as u32)).collect();

        let mut merged: BTreeMap<Key, Cell> = BTreeMap::new();
        let mut present_levels: BTreeSet<Vec<u32>> = BTreeSet::new();
        for table in tables {
            let ranks: Vec<u32> = table.columns.iter().map(|name| column_rank[name.as_str()]).collect();
            for row in &table.rows {
                let mut key: Key = row
                    .keys
                    .iter()
                    .zip(&ranks)
                    .filter_map(|(text, &column)| text.as_deref().map(|text| (column, value_rank[text])))
                    .collect();
                key.sort_unstable();
                present_levels.insert(key.iter().map(|&(column, _)| column).collect());
                let released = !row.withheld;
                let entry = merged.entry(key.clone()).or_insert_with(|| Cell {
                    key,
                    value: 0.0,
                    value_known: false,
                    state: State::Withheld,
                    level: None,
                    current: None,
                    released_earlier: false,
                    implied: false,
                    contributors: None,
                });
                if let Some(contributors) = row.contributors {
                    entry.contributors = Some(entry.contributors.map_or(contributors, |old| old.max(contributors)));
                }
                if let (false, Some(value)) = (entry.value_known, row.value) {
                    entry.value = value;
                    entry.value_known = value.is_finite();
                }
                if released {
                    entry.state = State::Released;
                    entry.released_earlier |= !table.current;
                }
                if let Some(level) = row.level {
                    entry.level = Some(entry.level.map_or(level, |old| old.max(level)));
                }
                if table.current {
                    entry.current = row.row;
                }
            }
        }
        let mut cells: Vec<Cell> = merged.into_values().collect();
        let mut index: HashMap<Key, usize> =
            cells.iter().enumerate().map(|(position, cell)| (cell.key.clone(), position)).collect();

        // Levels: those present, their one-step margins (credited line totals) and the
        // grand total.
        let mut levels: BTreeSet<Vec<u32>> = present_levels.clone();
        for level in &present_levels {
            for skip in 0..level.len() {
                let mut margin = level.clone();
                margin.remove(skip);
                levels.insert(margin);
            }
        }
        levels.insert(Vec::new());
        let levels: Vec<Vec<u32>> = levels.into_iter().collect();
        let subset =
            |small: &[u32], large: &[u32]| small.len() < large.len() && small.iter().all(|c| large.contains(c));
        let mut order: Vec<&Vec<u32>> = levels.iter().collect();
        order.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));

        // The cells of each level, by the key they stand for at that level: a one-cell line's
        // total is that cell itself (a total over one group is no total an attacker could
        // know from elsewhere), so it stands for its margin too instead of a credited total.
        let mut at_level: BTreeMap<Vec<u32>, Vec<(Key, usize)>> = BTreeMap::new();
        for (position, cell) in cells.iter().enumerate() {
            let level: Vec<u32> = cell.key.iter().map(|&(column, _)| column).collect();
            at_level.entry(level).or_default().push((cell.key.clone(), position));
        }
        let mut relations = Vec::new();
        let mut created: Vec<usize> = Vec::new();
        for fine_level in &order {
            let Some(fine_cells) = at_level.get(*fine_level).cloned() else { continue };
            for coarse_level in &levels {
                let covers = subset(coarse_level, fine_level)
                    && !levels.iter().any(|middle| subset(coarse_level, middle) && subset(middle, fine_level));
                if !covers {
                    continue;
                }
                let mut families: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
                for (key, cell) in &fine_cells {
                    let projected: Key =
                        key.iter().copied().filter(|(column, _)| coarse_level.contains(column)).collect();
                    families.entry(projected).or_default().push(*cell);
                }
                for (key, fine) in families {
                    let coarse = match index.get(&key) {
                        Some(&coarse) => coarse,
                        None if fine.len() == 1 => {
                            index.insert(key.clone(), fine[0]);
                            at_level.entry(coarse_level.clone()).or_default().push((key, fine[0]));
                            continue;
                        }
                        None => {
                            // A total over groups whose contributors add up to fewer than k
                            // is below the threshold itself: nobody publishes it, so it is
                            // not credited to the attacker but stays an unknown of the audit.
                            let counted: Option<u64> =
                                fine.iter().map(|&cell| cells[cell].contributors).sum::<Option<u64>>();
                            let below_threshold = counted.is_some_and(|sum| sum < threshold_k);
                            cells.push(Cell {
                                key: key.clone(),
                                value: 0.0,
                                value_known: true,
                                state: if below_threshold { State::Withheld } else { State::Known },
                                level: None,
                                current: None,
                                released_earlier: false,
                                implied: true,
                                contributors: counted,
                            });
                            let position = cells.len() - 1;
                            index.insert(key.clone(), position);
                            at_level.entry(coarse_level.clone()).or_default().push((key, position));
                            created.push(relations.len());
                            position
                        }
                    };
                    if fine == [coarse] {
                        continue;
                    }
                    relations.push(Relation { coarse, fine });
                }
            }
        }

        // Infer unknown values an attacker could compute from one relation, until none is
        // left to infer; created totals are not known yet and take no part. For a measure
        // that cannot be negative, a negative result means the relation does not hold as an
        // equation (a distinct count over groups that share subjects, or a table that lost
        // rows): the value stays unknown.
        let cannot_be_negative = count || cells.iter().filter(|cell| cell.value_known).all(|cell| cell.value >= 0.0);
        let mut changed = true;
        while changed {
            changed = false;
            for relation in &relations {
                if cells[relation.coarse].implied {
                    continue;
                }
                let members = std::iter::once(relation.coarse).chain(relation.fine.iter().copied());
                let unknown: Vec<usize> = members.filter(|&cell| !cells[cell].value_known).collect();
                let [missing] = unknown[..] else { continue };
                if relation.fine.iter().any(|&cell| cells[cell].implied) {
                    continue;
                }
                let fine_sum: f64 =
                    relation.fine.iter().filter(|&&cell| cell != missing).map(|&cell| cells[cell].value).sum();
                let value = if missing == relation.coarse { fine_sum } else { cells[relation.coarse].value - fine_sum };
                if cannot_be_negative && value < 0.0 {
                    continue;
                }
                cells[missing].value = value;
                cells[missing].value_known = true;
                changed = true;
            }
        }
        for relation in created {
            let relation = &relations[relation];
            let sum: f64 = relation.fine.iter().map(|&cell| cells[cell].value).sum();
            cells[relation.coarse].value = sum;
        }
        let nonnegative = count || cells.iter().filter(|cell| cell.value_known).all(|cell| cell.value >= 0.0);
        Model {
            columns,
            #[cfg(test)]
            values,
            cells,
            relations,
            nonnegative,
        }
    }

    /// The lower and upper bound every reader assumes for a cell (see the report's
    /// "a-priori bounds"): 0 on the side of its value's sign, for a non-negative measure on
    /// every cell; none for a cell of unknown value of a measure with negative values.
    pub(crate) fn bounds(&self, cell: &Cell) -> (f64, f64) {
        if self.nonnegative {
            (0.0, f64::INFINITY)
        } else if !cell.value_known {
            (f64::NEG_INFINITY, f64::INFINITY)
        } else if cell.value >= 0.0 {
            (0.0, f64::INFINITY)
        } else {
            (f64::NEG_INFINITY, 0.0)
        }
    }

    /// Audits every cell that needs protection in the components `touched` accepts (by the
    /// cells of a component), in the model's current state.
    pub fn audit(&self, touched: impl Fn(&[usize]) -> bool) -> AuditResult {
        let variable: Vec<Option<usize>> = {
            let mut next = 0;
            self.cells
                .iter()
                .map(|cell| {
                    (cell.state == State::Withheld).then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let variables: Vec<usize> = (0..self.cells.len()).filter(|&cell| variable[cell].is_some()).collect();
        let mut parent: Vec<usize> = (0..variables.len()).collect();
        let mut live_relations: Vec<usize> = Vec::new();
        for (position, relation) in self.relations.iter().enumerate() {
            let members: Vec<usize> = std::iter::once(relation.coarse)
                .chain(relation.fine.iter().copied())
                .filter_map(|cell| variable[cell])
                .collect();
            if members.is_empty() {
                continue;
            }
            live_relations.push(position);
            for pair in members.windows(2) {
                let (a, b) = (find(&mut parent, pair[0]), find(&mut parent, pair[1]));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
        let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (local, &cell) in variables.iter().enumerate() {
            let root = find(&mut parent, local);
            components.entry(root).or_default().push(cell);
        }
        let mut relations_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &position in &live_relations {
            let relation = &self.relations[position];
            let first = std::iter::once(relation.coarse)
                .chain(relation.fine.iter().copied())
                .find_map(|cell| variable[cell])
                .map(|local| find(&mut parent, local));
            if let Some(root) = first {
                relations_of.entry(root).or_default().push(position);
            }
        }

        let mut result = AuditResult::default();
        for (root, members) in &components {
            if !members.iter().any(|&cell| self.cells[cell].level.is_some()) {
                continue;
            }
            let relations = relations_of.get(root).map(Vec::as_slice).unwrap_or_default();
            let related: Vec<usize> = relations
                .iter()
                .flat_map(|&position| {
                    let relation = &self.relations[position];
                    std::iter::once(relation.coarse).chain(relation.fine.iter().copied())
                })
                .collect();
            if !touched(members) && !touched(&related) {
                continue;
            }
            result.components += 1;
            result.relations += relations.len();
            let system = self.system(members, relations);
            let mut solver = Solver::new(&system);
            if matches!(solver, Solver::Program) {
                result.by_lp += 1;
            }
            for (local, &cell) in members.iter().enumerate() {
                let Some(level) = self.cells[cell].level else { continue };
                let extent = solver.extent(&system, local, !self.cells[cell].value_known);
                let value = self.cells[cell].value;
                let (lower, _) = self.bounds(&self.cells[cell]);
                // Nothing can reach below an a-priori bound: the level below is capped there.
                let room = if self.cells[cell].value_known { value - lower } else { f64::INFINITY };
                let needed = Level { below: level.below.min(room), above: level.above };
                let protected = meets(extent.above, needed.above) && meets(extent.below, needed.below);
                result.audited.push(Audited { cell, extent, level: needed, protected });
            }
        }
        result
    }

    /// The equality system of one component: its variables (cells) and relations.
    fn system(&self, members: &[usize], relations: &[usize]) -> System {
        let local: HashMap<usize, usize> = members.iter().enumerate().map(|(local, &cell)| (cell, local)).collect();
        let mut rows = Vec::with_capacity(relations.len());
        for &position in relations {
            let relation = &self.relations[position];
            let mut terms = Vec::new();
            let mut rhs = 0.0;
            for (cell, coefficient) in
                std::iter::once((relation.coarse, -1.0)).chain(relation.fine.iter().map(|&cell| (cell, 1.0)))
            {
                match local.get(&cell) {
                    Some(&variable) => terms.push((variable, coefficient)),
                    None => rhs -= coefficient * self.cells[cell].value,
                }
            }
            rows.push(Row { terms, rhs });
        }
        let values: Vec<f64> = members.iter().map(|&cell| self.cells[cell].value).collect();
        let bounds: Vec<(f64, f64)> = members.iter().map(|&cell| self.bounds(&self.cells[cell])).collect();
        let scale =
            values.iter().chain(rows.iter().map(|row| &row.rhs)).fold(1.0f64, |max, value| max.max(value.abs()));
        System { rows, values, bounds, scale }
    }
}

/// Whether a measured distance meets a needed one, allowing for round-off.
pub(crate) fn meets(extent: f64, needed: f64) -> bool {
    needed <= 0.0 || extent >= needed * (1.0 - 1e-9) - 1e-12
}

fn find(parent: &mut [usize], mut node: usize) -> usize {
    while parent[node] != node {
        parent[node] = parent[parent[node]];
        node = parent[node];
    }
    node
}

/// One relation of a component: Σ coefficient · variable = rhs.
#[derive(Debug)]
struct Row {
    terms: Vec<(usize, f64)>,
    rhs: f64,
}

/// The equality system of one component, with each variable's value and bounds.
#[derive(Debug)]
struct System {
    rows: Vec<Row>,
    values: Vec<f64>,
    bounds: Vec<(f64, f64)>,
    /// The largest magnitude in it, to keep the solvers' tolerances relative.
    scale: f64,
}

/// How a component is solved.
enum Solver {
    Network(Network),
    Program,
}

impl Solver {
    fn new(system: &System) -> Solver {
        Network::of(system).map_or(Solver::Program, Solver::Network)
    }

    /// The distances from a variable's value to the ends of its interval. With
    /// `unknown_value`, the variable's own lower bound is lifted for the distance below (its
    /// value was taken as 0; see `protection::unknown_group_level`).
    fn extent(&mut self, system: &System, variable: usize, unknown_value: bool) -> Extent {
        match self {
            Solver::Network(network) => network.extent(system, variable, unknown_value),
            Solver::Program => program_extent(system, variable, unknown_value),
        }
    }
}

/// A component whose relations form a network: after multiplying each relation by ±1, every
/// variable has +1 in at most one relation and −1 in at most one (the other end is a ground
/// node). A variable is then an arc carrying its value, and the most it can rise is the
/// largest flow that can return around a cycle through it: a maximum flow.
struct Network {
    /// Tail and head node of each variable's arc; node `rows.len()` is the ground.
    arcs: Vec<(usize, usize)>,
    /// The residual graph of the component at its values (arc i is edge pair 2i, 2i + 1).
    graph: FlowGraph,
}

impl Network {
    fn of(system: &System) -> Option<Network> {
        let variables = system.values.len();
        let mut appearances: Vec<Vec<(usize, f64)>> = vec![Vec::new(); variables];
        for (row, relation) in system.rows.iter().enumerate() {
            for &(variable, coefficient) in &relation.terms {
                if coefficient.abs() != 1.0 {
                    return None;
                }
                appearances[variable].push((row, coefficient));
            }
        }
        if appearances.iter().any(|rows| rows.len() > 2) {
            return None;
        }
        // Signs of the rows: a variable in rows r and s with coefficients a and b needs
        // sign(r)·a = −sign(s)·b.
        let mut sign: Vec<f64> = vec![0.0; system.rows.len()];
        let mut by_row: Vec<Vec<usize>> = vec![Vec::new(); system.rows.len()];
        for (variable, rows) in appearances.iter().enumerate() {
            for &(row, _) in rows {
                by_row[row].push(variable);
            }
        }
        for start in 0..system.rows.len() {
            if sign[start] != 0.0 {
                continue;
            }
            sign[start] = 1.0;
            let mut stack = vec![start];
            while let Some(row) = stack.pop() {
                for &variable in &by_row[row] {
                    let rows = &appearances[variable];
                    if rows.len() != 2 {
                        continue;
                    }
                    let (here, there) = if rows[0].0 == row { (rows[0], rows[1]) } else { (rows[1], rows[0]) };
                    let wanted = -sign[row] * here.1 * there.1;
                    if sign[there.0] == 0.0 {
                        sign[there.0] = wanted;
                        stack.push(there.0);
                    } else if sign[there.0] != wanted {
                        return None;
                    }
                }
            }
        }
        let ground = system.rows.len();
        let arcs: Vec<(usize, usize)> = appearances
            .iter()
            .map(|rows| {
                let mut tail = ground;
                let mut head = ground;
                for &(row, coefficient) in rows {
                    if sign[row] * coefficient > 0.0 {
                        tail = row;
                    } else {
                        head = row;
                    }
                }
                (tail, head)
            })
            .collect();
        let mut graph = FlowGraph::new(ground + 1);
        for (arc, &(tail, head)) in arcs.iter().enumerate() {
            let (lower, upper) = system.bounds[arc];
            let value = system.values[arc];
            graph.add(tail, head, upper - value, value - lower);
        }
        Some(Network { arcs, graph })
    }

    fn extent(&mut self, system: &System, variable: usize, unknown_value: bool) -> Extent {
        let epsilon = 1e-12 * system.scale;
        let (tail, head) = self.arcs[variable];
        let (lower, upper) = system.bounds[variable];
        let value = system.values[variable];
        // The variable's own arc takes no part: the flow returns around the rest.
        let without = |graph: &mut FlowGraph| {
            graph.reset();
            graph.capacity[2 * variable] = 0.0;
            graph.capacity[2 * variable + 1] = 0.0;
        };
        without(&mut self.graph);
        let rise = self.graph.max_flow(head, tail, upper - value, epsilon);
        without(&mut self.graph);
        let fall_limit = if unknown_value { f64::INFINITY } else { value - lower };
        let fall = self.graph.max_flow(tail, head, fall_limit, epsilon);
        Extent { below: fall, above: rise }
    }
}

/// A residual graph for Dinic's maximum flow over `f64` capacities (∞ allowed).
struct FlowGraph {
    head: Vec<Vec<usize>>,
    to: Vec<usize>,
    capacity: Vec<f64>,
    initial: Vec<f64>,
}

impl FlowGraph {
    fn new(nodes: usize) -> Self {
        FlowGraph { head: vec![Vec::new(); nodes], to: Vec::new(), capacity: Vec::new(), initial: Vec::new() }
    }

    /// An arc `from → to` with `forward` room to rise and `backward` room to fall.
    fn add(&mut self, from: usize, to: usize, forward: f64, backward: f64) {
        self.head[from].push(self.to.len());
        self.to.push(to);
        self.capacity.push(forward.max(0.0));
        self.head[to].push(self.to.len());
        self.to.push(from);
        self.capacity.push(backward.max(0.0));
        self.initial.push(forward.max(0.0));
        self.initial.push(backward.max(0.0));
    }

    fn reset(&mut self) {
        self.capacity.clone_from(&self.initial);
    }

    /// The largest flow from `source` to `sink`, up to `limit`.
    fn max_flow(&mut self, source: usize, sink: usize, limit: f64, epsilon: f64) -> f64 {
        if source == sink {
            // A cell in no relation: only its bounds hold it.
            return limit.max(0.0);
        }
        if limit <= epsilon {
            return 0.0;
        }
        let nodes = self.head.len();
        let mut total = 0.0;
        let mut depth = vec![usize::MAX; nodes];
        let mut next = vec![0usize; nodes];
        loop {
            depth.iter_mut().for_each(|slot| *slot = usize::MAX);
            depth[source] = 0;
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(node) = queue.pop_front() {
                for &edge in &self.head[node] {
                    let to = self.to[edge];
                    if self.capacity[edge] > epsilon && depth[to] == usize::MAX {
                        depth[to] = depth[node] + 1;
                        queue.push_back(to);
                    }
                }
            }
            if depth[sink] == usize::MAX {
                return total;
            }
            next.iter_mut().for_each(|slot| *slot = 0);
            loop {
                let pushed = self.push(source, sink, limit - total, &depth, &mut next, epsilon);
                if pushed <= epsilon {
                    break;
                }
                if pushed.is_infinite() {
                    return f64::INFINITY;
                }
                total += pushed;
                if total >= limit - epsilon {
                    return limit;
                }
            }
        }
    }

    fn push(&mut self, node: usize, sink: usize, flow: f64, depth: &[usize], next: &mut [usize], epsilon: f64) -> f64 {
        if node == sink {
            return flow;
        }
        while next[node] < self.head[node].len() {
            let edge = self.head[node][next[node]];
            let to = self.to[edge];
            if self.capacity[edge] > epsilon && depth[to] == depth[node] + 1 {
                let pushed = self.push(to, sink, flow.min(self.capacity[edge]), depth, next, epsilon);
                if pushed > epsilon {
                    if pushed.is_finite() {
                        self.capacity[edge] -= pushed;
                        self.capacity[edge ^ 1] += pushed;
                    }
                    return pushed;
                }
            }
            next[node] += 1;
        }
        0.0
    }
}

/// The extent of one variable by linear programming: its minimum and maximum subject to the
/// component's relations and bounds, solved by `microlp` on values scaled to at most 1.
/// An infeasible system (relations that disagree: tables of different row sets) counts as
/// no room at all, which errs towards protection.
fn program_extent(system: &System, variable: usize, unknown_value: bool) -> Extent {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    let scale = system.scale;
    let value = system.values[variable];
    let solve = |direction: OptimizationDirection| -> Option<f64> {
        let mut problem = Problem::new(direction);
        let variables: Vec<microlp::Variable> = system
            .bounds
            .iter()
            .enumerate()
            .map(|(position, &(lower, upper))| {
                let lower = if position == variable && unknown_value { f64::NEG_INFINITY } else { lower / scale };
                problem.add_var(if position == variable { 1.0 } else { 0.0 }, (lower, upper / scale))
            })
            .collect();
        for row in &system.rows {
            let terms: Vec<(microlp::Variable, f64)> =
                row.terms.iter().map(|&(position, coefficient)| (variables[position], coefficient)).collect();
            problem.add_constraint(&terms[..], ComparisonOp::Eq, row.rhs / scale);
        }
        match problem.solve() {
            Ok(outcome) => outcome.into_solution().ok().map(|solution| solution.objective() * scale),
            Err(microlp::Error::Unbounded) => Some(match direction {
                OptimizationDirection::Maximize => f64::INFINITY,
                OptimizationDirection::Minimize => f64::NEG_INFINITY,
            }),
            Err(_) => None,
        }
    };
    let above = solve(OptimizationDirection::Maximize).map_or(0.0, |upper| (upper - value).max(0.0));
    let below = solve(OptimizationDirection::Minimize).map_or(0.0, |lower| (value - lower).max(0.0));
    Extent { below, above }
}

#[cfg(test)]
mod tests;
