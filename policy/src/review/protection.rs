//! Protection levels: how far the interval an attacker can compute for a withheld cell must
//! reach below and above the cell's value before the cell counts as protected.
//!
//! The levels follow τ-ARGUS's upper protection levels for the sensitivity rules (the
//! ESSnet *Handbook on Statistical Disclosure Control*, "secondary tabular data protection
//! methods"), with the lower level set equal to the upper one as τ-ARGUS does by default. A
//! level is in the units of the cell. `docs/review-report.md` states each one and why.

use super::Contributions;
use crate::DisclosureParams;

/// How far below and above its value the attacker's interval for a cell must reach.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Level {
    /// Needed distance from the value down to the interval's lower end.
    pub below: f64,
    /// Needed distance from the value up to the interval's upper end.
    pub above: f64,
}

impl Level {
    /// The larger requirement on each side.
    pub fn max(self, other: Level) -> Level {
        Level { below: self.below.max(other.below), above: self.above.max(other.above) }
    }
}

/// The share of a cell's value that protects a cell whose rule gives no level of its own
/// (threshold and differencing cells): the grant's p, or 10% when the p%-rule is off.
pub(crate) fn safety_share(params: &DisclosureParams) -> f64 {
    if params.p_percent > 0 { f64::from(params.p_percent) / 100.0 } else { 0.10 }
}

/// The smallest distance every withheld primary must leave on each side, relative to its
/// magnitude: an interval narrower than this is an exact disclosure up to round-off.
pub(crate) fn exactness_floor(value: f64) -> f64 {
    1e-6 * value.abs().max(1.0)
}

/// The level of a magnitude cell withheld by dominance: the largest of the p%-rule's and the
/// (n,k)-rule's upper protection levels, in the cell's units.
///
/// - p%-rule: `p/100 · x1 − (X − x1 − x2)`: the second largest contributor, subtracting its
///   own `x2` from the interval's upper end, must not estimate `x1` to within p%.
/// - (n,k)-rule: `100/k · (x1 + … + xn) − X`: the upper end must be far enough above the
///   cell that the n largest no longer make up k% of it.
///
/// `X` is the cell's total of absolute contributions; a cell whose value differs from it (an
/// AVG, or values of both signs) has its level scaled by `|value| / X`. The largest
/// contributions may be bucket sums that overstate the truth: `x1` and `x2` then err high,
/// which raises both levels (more protection, never less).
pub(crate) fn dominance_level(params: &DisclosureParams, contributions: &Contributions, value: f64) -> Level {
    let total = contributions.total;
    if total <= 0.0 {
        return floor_level(value);
    }
    let x1 = contributions.largest.first().copied().unwrap_or(0.0);
    let x2 = contributions.largest.get(1).copied().unwrap_or(0.0);
    let mut upper = 0.0f64;
    if params.p_percent > 0 {
        let rest = (total - x1 - x2).max(0.0);
        upper = upper.max(f64::from(params.p_percent) / 100.0 * x1 - rest);
    }
    let rule = params.nk_rule;
    if rule.n > 0 && rule.k_percent > 0 {
        let top: f64 = contributions.largest.iter().take(rule.n as usize).sum();
        upper = upper.max(100.0 / f64::from(rule.k_percent) * top - total);
    }
    let scale = if value.abs() > 0.0 { value.abs() / total } else { 1.0 };
    let upper = (upper * scale).max(exactness_floor(value));
    Level { below: upper, above: upper }
}

/// The level of a cell of a group with fewer than k contributors (or, with `count`, of a
/// count of such a group), whose value is known.
///
/// - A count: it must not be pinned: the interval reaches at least one more and one fewer
///   (down to 0), or `s·v` on each side when that is more (large counts of rows). Asking it
///   to reach k instead cannot be met in a sparse table of three keys whose margins are known
///   without withholding most of it, and the requirement is that the count not be
///   pinned.
/// - A magnitude: `s·|v|` on both sides (τ-ARGUS's "safety range" for frequency-unsafe
///   cells): an insider who knows all contributions but one cannot estimate it to within
///   the share `s` of the cell.
pub(crate) fn small_group_level(share: f64, value: f64, count: bool) -> Level {
    if count {
        let value = value.abs();
        let share_part = (share * value).max(1.0);
        Level { below: share_part.min(value).max(exactness_floor(value)), above: share_part }
    } else {
        let level = (share * value.abs()).max(exactness_floor(value));
        Level { below: level, above: level }
    }
}

/// The level of a cell of a group the engine withheld, whose value the reviewer does not
/// know. The audit measures such a cell's interval with its value taken as 0 (see
/// `audit.rs`: the true interval then reaches at least as far up, and down by at least the
/// distance measured with its own lower bound lifted), against a level computed from
/// `stand_in`, an upper estimate of its value: the largest known value of its lines.
pub(crate) fn unknown_group_level(share: f64, stand_in: f64, count: bool) -> Level {
    if count {
        let share_part = (share * stand_in.abs()).max(1.0);
        Level { below: share_part, above: share_part }
    } else {
        let level = (share * stand_in.abs()).max(exactness_floor(stand_in));
        Level { below: level, above: level }
    }
}

/// The level of a cell with no level of its own: only an exact disclosure is ruled out.
pub(crate) fn floor_level(value: f64) -> Level {
    let floor = exactness_floor(value);
    Level { below: floor, above: floor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NkRule;

    fn contributions(total: f64, largest: &[f64]) -> Contributions {
        Contributions { total, largest: largest.to_vec(), bucketed: false }
    }

    #[test]
    fn the_p_percent_level_is_what_the_second_largest_needs_to_miss_the_largest_by_p() {
        let params = DisclosureParams { nk_rule: NkRule { n: 0, k_percent: 90 }, ..Default::default() };
        // X = 100, x1 = 95, x2 = 1: rest 4; p = 10%: 9.5 − 4 = 5.5.
        let level = dominance_level(&params, &contributions(100.0, &[95.0, 1.0]), 100.0);
        assert!((level.above - 5.5).abs() < 1e-12 && level.below == level.above, "{level:?}");
        // With the upper end at X + 5.5, the second largest's estimate of x1 (upper end − x2)
        // is 104.5: exactly p% above x1 = 95.
        assert!((100.0 + level.above - 1.0 - 1.1 * 95.0).abs() < 1e-9);
    }

    #[test]
    fn the_nk_level_lifts_the_upper_end_until_the_n_largest_fall_to_k_percent() {
        let params = DisclosureParams { p_percent: 0, ..Default::default() };
        let level = dominance_level(&params, &contributions(100.0, &[50.0, 45.0]), 100.0);
        // 95 / 0.9 − 100 = 5.56
        assert!((level.above - (95.0 / 0.9 - 100.0)).abs() < 1e-9, "{level:?}");
        assert!((95.0 / (100.0 + level.above) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn an_average_cell_scales_its_level_to_the_cells_units() {
        let params = DisclosureParams { nk_rule: NkRule { n: 0, k_percent: 90 }, ..Default::default() };
        // The same contributions behind an AVG of 10 over 10 rows: a tenth of the level.
        let level = dominance_level(&params, &contributions(100.0, &[95.0, 1.0]), 10.0);
        assert!((level.above - 0.55).abs() < 1e-12, "{level:?}");
    }

    #[test]
    fn a_small_count_must_not_be_pinned_and_a_small_magnitude_needs_a_share_of_itself() {
        let level = small_group_level(0.1, 3.0, true);
        assert_eq!((level.below, level.above), (1.0, 1.0));
        let level = small_group_level(0.1, 36.0, true); // 3 companies × 12 monthly rows
        assert!((level.above - 3.6).abs() < 1e-12 && (level.below - 3.6).abs() < 1e-12);
        let level = small_group_level(0.1, 250.0, false);
        assert_eq!((level.below, level.above), (25.0, 25.0));
        let unknown = unknown_group_level(0.1, 40.0, true);
        assert_eq!((unknown.below, unknown.above), (4.0, 4.0));
    }
}
