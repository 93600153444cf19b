//! Secondary suppression as a protection problem: complements are chosen until the audit
//! finds every primary cell's interval as wide as its protection level, at the least value
//! withheld.
//!
//! Candidates are hypercubes (Repsilber's idea, τ-ARGUS's GHMITER): for a primary cell with
//! coordinates (a₁ … a_d) in the output's keys, pick one partner value b_j per key; the 2^d
//! corners, moved by +t and −t alternately, keep every line total of the table and of its
//! margins (a partner may be the margin itself, ALL, which then moves with the cell). The
//! hypercube alone guarantees the primary an interval reaching as far as its corners can
//! move before one of them leaves its bounds, whatever else is withheld. For each primary
//! in turn (in the order of its keys' text), the cheapest hypercube that meets its level
//! is withheld, cost = the sum of the values it newly withholds (cells already withheld are
//! free), ties broken by the partners' key text — never by row position. Then the audit
//! checks every primary against all relations (margins, earlier releases); a primary still
//! short gets its next cheapest hypercube, up to [`FALLBACK_ROUNDS`] times.

use std::collections::{BTreeMap, HashMap};

use super::audit::{AuditResult, Model, State, meets};
use super::protection::Level;

/// Hypercubes examined per primary at most, cheapest partners first.
const MAX_CANDIDATES: usize = 20_000;
/// Rounds of extra hypercubes for primaries the audit still finds short.
pub(crate) const FALLBACK_ROUNDS: usize = 3;

/// The output's keys as coordinates of the model's cells.
pub(crate) struct Space {
    /// Column ranks of the output's keys, in rank order.
    dims: Vec<u32>,
    /// Per key, the value ranks present, in text order.
    values: Vec<Vec<u32>>,
    /// Coordinates (a value rank, or None for ALL, per key) → cell.
    cells: HashMap<Vec<Option<u32>>, usize>,
    /// For two keys: the graph of the inner cells, in which a protecting cycle is a
    /// shortest path.
    graph: Option<Graph>,
}

/// The inner cells (no ALL) of a two-key table as a graph: a node per value of either key,
/// a cell an edge between its two values. A value whose line holds a single cell (and no
/// margin) has no relation: it is the ground, node 0.
struct Graph {
    /// Node of each value of the first key, and of the second.
    first: HashMap<u32, usize>,
    second: HashMap<u32, usize>,
    /// Per node: (cell, node at its other end). Cells leaving a value of the second key fall
    /// when the primary rises; cells leaving a value of the first key rise.
    edges: Vec<Vec<(usize, usize)>>,
    /// Per node: a value of the second key.
    of_second: Vec<bool>,
    /// Steps out of the ground: (cell, whether it falls, node it leads to).
    ground: Vec<(usize, bool, usize)>,
}

impl Graph {
    fn new(cells: &HashMap<Vec<Option<u32>>, usize>) -> Graph {
        let mut inner: Vec<(u32, u32, usize)> = cells
            .iter()
            .filter_map(|(coordinates, &cell)| match coordinates[..] {
                [Some(first), Some(second)] => Some((first, second, cell)),
                _ => None,
            })
            .collect();
        inner.sort_unstable();
        let mut by_first: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        let mut by_second: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        for &(first, second, cell) in &inner {
            by_first.entry(first).or_default().push((second, cell));
            by_second.entry(second).or_default().push((first, cell));
        }
        let grounded = |lines: &BTreeMap<u32, Vec<(u32, usize)>>, value: u32, margin: Vec<Option<u32>>| {
            lines.get(&value).is_none_or(|cells| cells.len() <= 1) && !cells.contains_key(&margin)
        };
        let mut of_second = vec![false];
        let mut first = HashMap::new();
        for &value in by_first.keys() {
            let node = if grounded(&by_first, value, vec![Some(value), None]) {
                0
            } else {
                of_second.push(false);
                of_second.len() - 1
            };
            first.insert(value, node);
        }
        let mut second = HashMap::new();
        for &value in by_second.keys() {
            let node = if grounded(&by_second, value, vec![None, Some(value)]) {
                0
            } else {
                of_second.push(true);
                of_second.len() - 1
            };
            second.insert(value, node);
        }
        let mut edges = vec![Vec::new(); of_second.len()];
        let mut ground = Vec::new();
        for &(value_first, value_second, cell) in &inner {
            let (a, b) = (first[&value_first], second[&value_second]);
            if a == 0 {
                ground.push((cell, false, b));
            } else {
                edges[a].push((cell, b));
            }
            if b == 0 {
                ground.push((cell, true, a));
            } else {
                edges[b].push((cell, a));
            }
        }
        Graph { first, second, edges, of_second, ground }
    }
}

/// A hypercube chosen for a primary: its corners other than the primary.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub corners: Vec<usize>,
    pub cost: f64,
}

impl Space {
    pub fn new(model: &Model, key_columns: &[String]) -> Space {
        let mut dims: Vec<u32> = key_columns
            .iter()
            .filter_map(|name| model.columns.iter().position(|column| column == name))
            .map(|rank| rank as u32)
            .collect();
        dims.sort_unstable();
        dims.dedup();
        let mut values: Vec<Vec<u32>> = vec![Vec::new(); dims.len()];
        let mut cells = HashMap::new();
        for (position, cell) in model.cells.iter().enumerate() {
            if !cell.key.iter().all(|(column, _)| dims.contains(column)) {
                continue;
            }
            let coordinates: Vec<Option<u32>> = dims
                .iter()
                .map(|dim| cell.key.iter().find(|(column, _)| column == dim).map(|&(_, value)| value))
                .collect();
            for (slot, coordinate) in coordinates.iter().enumerate() {
                if let Some(value) = coordinate {
                    values[slot].push(*value);
                }
            }
            cells.insert(coordinates, position);
        }
        for list in &mut values {
            list.sort_unstable();
            list.dedup();
        }
        let graph = (dims.len() == 2).then(|| Graph::new(&cells));
        Space { dims, values, cells, graph }
    }

    /// For a primary inside a two-key table: the cheapest cycle of cells through it that
    /// lets it move by `level` either way, found as a shortest path (Dijkstra) from its
    /// value of the second key to its value of the first. Moving the primary up, the cells
    /// of the cycle alternately fall and rise: leaving a value of the second key a cell
    /// falls (it needs room for `level.above`, and to rise by `level.below` when the
    /// primary moves down), leaving a value of the first key a cell rises. A value whose
    /// line holds a single cell has no relation: it is the ground, where a cycle may close
    /// with either sign. Rectangles are the shortest cycles; longer ones protect cells of
    /// sparse tables that no rectangle can. None when no cycle costs less than `bound`.
    fn cycle(&self, model: &Model, primary: usize, level: Level, bound: f64) -> Option<Choice> {
        let graph = self.graph.as_ref()?;
        let origin = self.coordinates(model, primary)?;
        let (Some(first), Some(second)) = (origin[0], origin[1]) else { return None };
        let room = |cell: usize, falls: bool| -> bool {
            let (lower, upper) = model.bounds(&model.cells[cell]);
            let value = model.cells[cell].value;
            let (rise, fall) = (upper - value, value - lower);
            if falls {
                meets(fall, level.above) && meets(rise, level.below)
            } else {
                meets(rise, level.above) && meets(fall, level.below)
            }
        };
        let start = *graph.second.get(&second)?;
        let target = *graph.first.get(&first)?;
        if start == target {
            // Both of the primary's lines hold it alone: no relation holds it.
            return Some(Choice { corners: Vec::new(), cost: 0.0 });
        }
        let nodes = graph.of_second.len();
        let mut distance = vec![f64::INFINITY; nodes];
        let mut previous: Vec<Option<(usize, usize)>> = vec![None; nodes];
        let mut queue = std::collections::BinaryHeap::new();
        distance[start] = 0.0;
        queue.push(std::cmp::Reverse((OrderedCost(0.0), start)));
        while let Some(std::cmp::Reverse((OrderedCost(cost), node))) = queue.pop() {
            if cost >= bound {
                return None;
            }
            if node == target {
                break;
            }
            if cost > distance[node] {
                continue;
            }
            let steps = if node == 0 {
                &graph.ground
            } else {
                &graph.edges[node].iter().map(|&(cell, next)| (cell, graph.of_second[node], next)).collect::<Vec<_>>()
            };
            for &(cell, falls, next) in steps {
                if cell == primary || next == node {
                    continue;
                }
                let Some(step) = Self::corner_cost(model, cell) else { continue };
                let total = cost + step;
                if total < distance[next] && room(cell, falls) {
                    distance[next] = total;
                    previous[next] = Some((node, cell));
                    queue.push(std::cmp::Reverse((OrderedCost(total), next)));
                }
            }
        }
        if !distance[target].is_finite() {
            return None;
        }
        let mut corners = Vec::new();
        let mut node = target;
        while let Some((before, cell)) = previous[node] {
            corners.push(cell);
            node = before;
        }
        corners.reverse();
        Some(Choice { corners, cost: distance[target] })
    }

    fn coordinates(&self, model: &Model, cell: usize) -> Option<Vec<Option<u32>>> {
        let key = &model.cells[cell].key;
        if !key.iter().all(|(column, _)| self.dims.contains(column)) {
            return None;
        }
        Some(
            self.dims.iter().map(|dim| key.iter().find(|(column, _)| column == dim).map(|&(_, value)| value)).collect(),
        )
    }

    /// Whether the cell at `coordinates` is the only cell of its line along `dim`.
    fn alone_along(&self, coordinates: &[Option<u32>], dim: usize) -> bool {
        let own = coordinates[dim];
        std::iter::once(None).chain(self.values[dim].iter().copied().map(Some)).filter(|&value| value != own).all(
            |value| {
                let mut other = coordinates.to_vec();
                other[dim] = value;
                !self.cells.contains_key(&other)
            },
        )
    }

    /// The cost of withholding a cell as a corner, or None when it cannot move: a credited
    /// total, or a cell another release published.
    fn corner_cost(model: &Model, cell: usize) -> Option<f64> {
        let cell = &model.cells[cell];
        match cell.state {
            State::Withheld => Some(0.0),
            State::Released if cell.current.is_some() && !cell.released_earlier => Some(cell.value.abs()),
            _ => None,
        }
    }

    /// The cheapest hypercube of `primary` that `accept` takes (given the distances it lets
    /// the primary move up and down on its own, and its corners), or None. Partners are
    /// tried cheapest first, and a branch whose partners alone already cost as much as the
    /// best found is cut; among equal costs the first found wins, an order that follows the
    /// partners' costs and then their key text, never the rows' order.
    fn cheapest(
        &self,
        model: &Model,
        primary: usize,
        accept: &dyn Fn(f64, f64, &[usize]) -> bool,
    ) -> Option<(Choice, f64, f64)> {
        let origin = self.coordinates(model, primary)?;
        if origin.is_empty() {
            return None;
        }
        // Partners per key: other values (or ALL) whose cell in the primary's line can move. A
        // key along which the primary's line holds no other cell relates nothing: it is
        // left out (every corner keeps the primary's value there and must be alone on that
        // line too).
        let mut partners: Vec<Vec<(Option<u32>, f64)>> = Vec::with_capacity(origin.len());
        let mut free: Vec<usize> = Vec::new();
        let mut probe = origin.clone();
        for (dim, own) in origin.iter().enumerate() {
            let mut list: Vec<(Option<u32>, f64)> = Vec::new();
            let mut others = 0;
            for candidate in std::iter::once(None).chain(self.values[dim].iter().copied().map(Some)) {
                if candidate == *own {
                    continue;
                }
                probe[dim] = candidate;
                let Some(&cell) = self.cells.get(probe.as_slice()) else { continue };
                others += 1;
                if let Some(cost) = Self::corner_cost(model, cell) {
                    list.push((candidate, cost));
                }
            }
            probe[dim] = *own;
            list.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            if list.is_empty() {
                if others > 0 {
                    return None;
                }
                list.push((*own, 0.0));
            } else {
                free.push(dim);
            }
            partners.push(list);
        }
        if free.is_empty() {
            return None;
        }
        let mut search = Search {
            space: self,
            model,
            origin: &origin,
            partners: &partners,
            free: &free,
            accept,
            choice: vec![0; origin.len()],
            best: None,
            examined: 0,
        };
        search.descend(0, 0.0);
        search.best
    }

    /// The cheapest hypercubes that give `primary` its level: one that meets both sides, or
    /// the cheapest for each side; empty when none does. In a two-key table the cheapest
    /// protecting cycle is taken instead when it costs less.
    pub fn protect(&self, model: &Model, primary: usize, level: Level) -> Vec<Choice> {
        let both = |up: f64, down: f64, _: &[usize]| meets(up, level.above) && meets(down, level.below);
        let cube = self.cheapest(model, primary, &both).map(|(choice, _, _)| choice);
        let bound = cube.as_ref().map_or(f64::INFINITY, |cube| cube.cost);
        let cycle = self.cycle(model, primary, level, bound);
        match (cube, cycle) {
            (Some(cube), Some(cycle)) => return vec![if cycle.cost < cube.cost { cycle } else { cube }],
            (Some(cube), None) => return vec![cube],
            (None, Some(cycle)) => return vec![cycle],
            (None, None) => {}
        }
        let up = self.cheapest(model, primary, &|up, _, _| meets(up, level.above));
        let down = self.cheapest(model, primary, &|_, down, _| meets(down, level.below));
        up.into_iter().chain(down).map(|(choice, _, _)| choice).collect()
    }

    /// For a primary the audit still finds short: the cheapest hypercube or cycle that
    /// withholds something new, preferring one that meets its level on its own.
    pub fn widen(&self, model: &Model, primary: usize, level: Level) -> Option<Choice> {
        let new = |corners: &[usize]| corners.iter().any(|&cell| model.cells[cell].state != State::Withheld);
        let meeting =
            |up: f64, down: f64, corners: &[usize]| new(corners) && meets(up, level.above) && meets(down, level.below);
        self.cheapest(model, primary, &meeting)
            .map(|(choice, _, _)| choice)
            .or_else(|| self.cycle(model, primary, level, f64::INFINITY).filter(|choice| new(&choice.corners)))
            .or_else(|| self.cheapest(model, primary, &|_, _, corners| new(corners)).map(|(choice, _, _)| choice))
    }
}

/// The state of one search for the cheapest acceptable hypercube.
struct Search<'a> {
    space: &'a Space,
    model: &'a Model,
    origin: &'a [Option<u32>],
    partners: &'a [Vec<(Option<u32>, f64)>],
    free: &'a [usize],
    accept: &'a dyn Fn(f64, f64, &[usize]) -> bool,
    choice: Vec<usize>,
    best: Option<(Choice, f64, f64)>,
    examined: usize,
}

impl Search<'_> {
    /// Chooses partners for the keys from `depth` on; `spent` is what the chosen partners'
    /// own cells cost (a lower bound of the hypercube's cost).
    fn descend(&mut self, depth: usize, spent: f64) {
        if self.examined >= MAX_CANDIDATES {
            return;
        }
        let bound = self.best.as_ref().map_or(f64::INFINITY, |(best, _, _)| best.cost);
        if spent >= bound {
            return;
        }
        let Some(&dim) = self.free.get(depth) else {
            self.examined += 1;
            self.evaluate();
            return;
        };
        for option in 0..self.partners[dim].len() {
            let cost = self.partners[dim][option].1;
            let bound = self.best.as_ref().map_or(f64::INFINITY, |(best, _, _)| best.cost);
            if spent + cost >= bound {
                break;
            }
            self.choice[dim] = option;
            self.descend(depth + 1, spent + cost);
        }
        self.choice[dim] = 0;
    }

    /// Evaluates the hypercube of the current partner choice.
    fn evaluate(&mut self) {
        let (model, space) = (self.model, self.space);
        let dims = self.origin.len();
        let mut corners = Vec::with_capacity((1 << self.free.len()) - 1);
        let mut cost = 0.0;
        let (mut up, mut down) = (f64::INFINITY, f64::INFINITY);
        let mut coordinates = self.origin.to_vec();
        for mask in 1u32..(1 << dims) {
            if (0..dims).any(|dim| mask & (1 << dim) != 0 && !self.free.contains(&dim)) {
                continue;
            }
            let mut sign = 1.0;
            for (dim, coordinate) in coordinates.iter_mut().enumerate() {
                if mask & (1 << dim) != 0 {
                    let partner = self.partners[dim][self.choice[dim]].0;
                    *coordinate = partner;
                    // Between two values of a key the partner moves against the cell; with
                    // ALL (the margin) on either side, with it.
                    if partner.is_some() && self.origin[dim].is_some() {
                        sign = -sign;
                    }
                } else {
                    *coordinate = self.origin[dim];
                }
            }
            let Some(&cell) = space.cells.get(coordinates.as_slice()) else { return };
            let Some(corner_cost) = Space::corner_cost(model, cell) else { return };
            let fixed = (0..dims).filter(|dim| !self.free.contains(dim));
            if fixed.into_iter().any(|dim| !space.alone_along(&coordinates, dim)) {
                return;
            }
            cost += corner_cost;
            let (lower, upper) = model.bounds(&model.cells[cell]);
            let value = model.cells[cell].value;
            // Moving the primary up by t moves this corner by sign·t.
            let (rise, fall) = (upper - value, value - lower);
            if sign > 0.0 {
                up = up.min(rise);
                down = down.min(fall);
            } else {
                up = up.min(fall);
                down = down.min(rise);
            }
            corners.push(cell);
        }
        let primary = &model.cells[space.cells[self.origin]];
        if primary.value_known {
            let (lower, _) = model.bounds(primary);
            down = down.min(primary.value - lower);
        }
        let better = self.best.as_ref().is_none_or(|(best, _, _)| cost < best.cost);
        if better && (self.accept)(up, down, &corners) {
            self.best = Some((Choice { corners, cost }, up, down));
        }
    }
}

/// The primaries the audit found short, in key order.
pub(crate) fn short(model: &Model, audit: &AuditResult) -> Vec<usize> {
    let mut short: Vec<usize> = audit.audited.iter().filter(|audited| !audited.protected).map(|a| a.cell).collect();
    short.sort_by(|&a, &b| model.cells[a].key.cmp(&model.cells[b].key));
    short
}

/// A cost as a key of the ordered queue (costs are finite and never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedCost(f64);

impl Eq for OrderedCost {}

impl PartialOrd for OrderedCost {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedCost {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests;
