//! A sample measured by attack, at derivation, against the real data it came from.
//!
//! Two attacks, both by someone who knows how the sample was made (GB/T 42460 asks for
//! re-identification risk to be assessed, not assumed):
//! - **Singling out** (the prosecutor risk): an attacker who knows a person's quasi-identifiers
//!   looks for the sample rows that fit them. A sample row whose published values fit exactly
//!   one real subject singles that subject out. Suppressed values fit anything.
//! - **Recovery**: an attacker who holds a row tries to undo the perturbation of its
//!   sensitive values. For a de-identified sample each value is attacked with every estimator
//!   the method allows (divide by a noise factor, subtract a noise offset, both) and the best
//!   one counts; for a synthetic sample a row that singles a subject out is taken as that
//!   subject's, and its values count as recovered when one of the subject's real values is
//!   within 1% of them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::values::{self, NULL_CODE};
use super::{Analysed, Derivation, Model};

/// How many value pairs the recovery attack tries per column: enough for a share to ±0.5%.
const RECOVERY_PAIRS: usize = 20_000;
/// A value counts as recovered when the attacker's estimate is within this share of it.
const RECOVERY_TOLERANCE: f64 = 0.01;

/// The attacks' results, part of the sample's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// The columns the attacker is assumed to know (quasi-identifiers and public columns).
    pub quasi_identifiers: Vec<String>,
    /// Share of sample rows whose published quasi-identifiers fit exactly one real subject.
    pub unique_share: f64,
    /// Fewest real subjects any sample row's quasi-identifiers fit (0 when a synthetic row fits
    /// none; the subjects in the data when there are no quasi-identifiers).
    pub smallest_class: u64,
    /// Share of sensitive values recovered to within 1%, in the worst column.
    pub recovered_share: f64,
    /// Sensitive values the recovery attack was run on, over all columns.
    pub sensitive_values: u64,
    /// The best attack on the worst column, e.g. `kwh: divide by 1.20`; empty when none
    /// recovered anything.
    pub attack: String,
}

/// What the sample lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InformationLoss {
    /// Share of the sampled rows dropped to reach k-anonymity.
    pub rows_dropped_share: f64,
    /// Share of the sample's quasi-identifier cells suppressed (null).
    pub suppressed_cell_share: f64,
    /// Mean total variation distance between each category or number column's distribution in
    /// the sample and in the real data (numbers over the real data's deciles): 0 is the same
    /// distribution, 1 a disjoint one.
    pub marginal_distance: f64,
    /// Median relative change of the sensitive values (de-identified samples).
    pub median_relative_error: Option<f64>,
}

/// One quasi-identifier as published: a key per real row (the value that row would be
/// published as) and per sample row (None when suppressed).
pub(crate) struct PublishedQuasi {
    pub column: usize,
    pub real: Vec<u64>,
    pub sample: Vec<Option<u64>>,
}

/// The shape of a de-identified sample's noise, which the attacker knows:
/// `published = value × e^(±m) ± offset`, m in `log_factor`, offset in `0..=offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoiseShape {
    pub log_factor: (f64, f64),
    pub offset: f64,
}

/// One sensitive number column as published.
pub(crate) struct PublishedSensitive {
    pub column: usize,
    pub sample: Vec<Option<f64>>,
    pub noise: Option<NoiseShape>,
}

/// The sample as an attacker reads it.
pub(crate) struct Published {
    pub quasi: Vec<PublishedQuasi>,
    /// Per sample row, the real row it came from (de-identified samples only).
    pub source_rows: Option<Vec<usize>>,
    pub sensitive: Vec<PublishedSensitive>,
    pub sample_rows: usize,
    pub rows_dropped: u64,
    pub suppressed_cells: u64,
}

/// A key that no real value publishes as (a synthetic "(other)" category).
pub(crate) const MATCHES_NOTHING: u64 = u64::MAX - 1;

fn mix(hash: u64, value: u64) -> u64 {
    let mut mixed = (hash ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed ^= mixed >> 29;
    mixed.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// Real subjects fitting each published combination, for one suppression pattern.
struct Classes {
    /// Combination hash → (distinct subjects, one of them).
    fits: HashMap<u64, (u64, u32)>,
}

impl Classes {
    fn new(source: &Analysed, quasi: &[PublishedQuasi], pattern: u64) -> Self {
        let mut pairs: Vec<(u64, u32)> = (0..source.rows)
            .map(|row| {
                let mut hash = 0u64;
                for (position, column) in quasi.iter().enumerate() {
                    if pattern & (1 << position) == 0 {
                        hash = mix(hash, column.real[row]);
                    }
                }
                (hash, source.subject_of(row))
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut fits: HashMap<u64, (u64, u32)> = HashMap::new();
        for (hash, subject) in pairs {
            let entry = fits.entry(hash).or_insert((0, subject));
            entry.0 += 1;
        }
        Self { fits }
    }
}

/// Runs both attacks on a derivation.
pub(crate) fn measure(source: &Analysed, published: &Published) -> Risk {
    let quasi = &published.quasi[..published.quasi.len().min(63)];
    let quasi_identifiers = quasi.iter().map(|column| source.columns[column.column].name.clone()).collect();
    let mut unique_subject: Vec<Option<u32>> = vec![None; published.sample_rows];
    let (mut unique, mut smallest) = (0u64, u64::MAX);
    if quasi.is_empty() {
        smallest = source.subject_count() as u64;
    } else {
        let pattern_of = |row: usize| {
            quasi.iter().enumerate().fold(0u64, |mask, (position, column)| {
                if column.sample[row].is_none() { mask | (1 << position) } else { mask }
            })
        };
        let mut patterns: HashMap<u64, Vec<usize>> = HashMap::new();
        for row in 0..published.sample_rows {
            patterns.entry(pattern_of(row)).or_default().push(row);
        }
        for (pattern, rows) in patterns {
            let classes = Classes::new(source, quasi, pattern);
            for row in rows {
                let mut hash = 0u64;
                for (position, column) in quasi.iter().enumerate() {
                    if pattern & (1 << position) == 0 {
                        hash = mix(hash, column.sample[row].unwrap_or(MATCHES_NOTHING));
                    }
                }
                let (fits, subject) = classes.fits.get(&hash).copied().unwrap_or((0, NULL_CODE));
                smallest = smallest.min(fits);
                if fits == 1 {
                    unique += 1;
                    unique_subject[row] = Some(subject);
                }
            }
        }
    }
    if smallest == u64::MAX {
        smallest = 0;
    }
    let mut risk = Risk {
        quasi_identifiers,
        unique_share: if published.sample_rows == 0 { 0.0 } else { unique as f64 / published.sample_rows as f64 },
        smallest_class: smallest,
        recovered_share: 0.0,
        sensitive_values: 0,
        attack: String::new(),
    };
    let rows_of_subject = if published.source_rows.is_none() && unique > 0 {
        let mut by_subject: HashMap<u32, Vec<usize>> = HashMap::new();
        for row in 0..source.rows {
            by_subject.entry(source.subject_of(row)).or_default().push(row);
        }
        by_subject
    } else {
        HashMap::new()
    };
    for sensitive in &published.sensitive {
        let column = &source.columns[sensitive.column];
        let Some(real) = column.numbers.as_ref() else { continue };
        let integral = values::is_integral(&column.data_type);
        let (attempted, recovered, attack) = match (&published.source_rows, sensitive.noise) {
            (Some(source_rows), Some(noise)) => {
                let pairs: Vec<(f64, f64)> = source_rows
                    .iter()
                    .zip(&sensitive.sample)
                    .filter_map(|(&row, published)| Some((real[row]?, (*published)?)))
                    .collect();
                recover_perturbed(&pairs, noise, integral)
            }
            _ => {
                let values = sensitive.sample.iter().filter(|value| value.is_some()).count() as u64;
                let recovered = unique_subject
                    .iter()
                    .zip(&sensitive.sample)
                    .filter(|(subject, value)| {
                        let (Some(subject), Some(value)) = (subject, value) else { return false };
                        rows_of_subject.get(subject).is_some_and(|rows| {
                            rows.iter().any(|&row| real[row].is_some_and(|truth| within(truth, *value)))
                        })
                    })
                    .count() as u64;
                (values, recovered, "a row that singles a subject out taken as theirs".to_string())
            }
        };
        risk.sensitive_values += attempted;
        if attempted > 0 {
            let share = recovered as f64 / attempted as f64;
            if share > risk.recovered_share || (share == risk.recovered_share && risk.attack.is_empty() && share > 0.0)
            {
                risk.recovered_share = share;
                risk.attack = format!("{}: {attack}", column.name);
            }
        }
    }
    risk
}

fn within(truth: f64, estimate: f64) -> bool {
    (estimate - truth).abs() <= RECOVERY_TOLERANCE * truth.abs().max(f64::MIN_POSITIVE)
        || (truth == 0.0 && estimate.abs() < 1e-9)
}

/// The best known-method attack on perturbed values: every estimator `(published − offset) /
/// factor` over the noise's range, the one that recovers the most values counts. Returns the
/// values attacked, those recovered, and the winning estimator.
pub(crate) fn recover_perturbed(pairs: &[(f64, f64)], noise: NoiseShape, integral: bool) -> (u64, u64, String) {
    let stride = pairs.len().div_ceil(RECOVERY_PAIRS).max(1);
    let tried: Vec<(f64, f64)> = pairs.iter().step_by(stride).copied().collect();
    let (low, high) = noise.log_factor;
    let mut factors = vec![1.0];
    for step in 0..=30 {
        let log_factor = low + (high - low) * f64::from(step) / 30.0;
        factors.push(log_factor.exp());
        factors.push((-log_factor).exp());
    }
    let mut offsets = vec![0.0];
    for step in 1..=10 {
        let offset = noise.offset * f64::from(step) / 10.0;
        offsets.push(offset);
        offsets.push(-offset);
    }
    let (mut best, mut best_attack) = (0u64, String::new());
    for &factor in &factors {
        for &offset in &offsets {
            let recovered = tried
                .iter()
                .filter(|&&(truth, published)| {
                    let mut estimate = (published - offset) / factor;
                    if integral {
                        estimate = estimate.round();
                    }
                    within(truth, estimate)
                })
                .count() as u64;
            if recovered > best {
                best = recovered;
                best_attack = if offset == 0.0 {
                    format!("divide by {factor:.3}")
                } else {
                    format!("subtract {offset:.3}, divide by {factor:.3}")
                };
            }
        }
    }
    // Scale the sampled count back to every pair.
    let attempted = pairs.len() as u64;
    let recovered = if tried.is_empty() { 0 } else { (best as f64 * pairs.len() as f64 / tried.len() as f64) as u64 };
    (attempted, recovered, best_attack)
}

/// The total variation distance between two distributions given as counts over shared keys.
fn variation_distance<K: Ord>(
    left: &std::collections::BTreeMap<K, u64>,
    right: &std::collections::BTreeMap<K, u64>,
) -> f64 {
    let (left_total, right_total) = (left.values().sum::<u64>() as f64, right.values().sum::<u64>() as f64);
    if left_total == 0.0 || right_total == 0.0 {
        return if left_total == right_total { 0.0 } else { 1.0 };
    }
    let mut distance = 0.0;
    for (key, &count) in left {
        let other = right.get(key).copied().unwrap_or(0) as f64 / right_total;
        distance += (count as f64 / left_total - other).abs();
    }
    for (key, &count) in right {
        if !left.contains_key(key) {
            distance += count as f64 / right_total;
        }
    }
    distance / 2.0
}

/// Deciles of the real values: the bin edges for a number column's marginal distance.
fn deciles(real: &[Option<f64>]) -> Vec<f64> {
    let mut values: Vec<f64> = real.iter().flatten().copied().filter(|value| value.is_finite()).collect();
    if values.is_empty() {
        return Vec::new();
    }
    values.sort_unstable_by(f64::total_cmp);
    (1..10).map(|decile| values[(values.len() * decile / 10).min(values.len() - 1)]).collect()
}

fn decile_of(edges: &[f64], value: Option<f64>) -> i64 {
    match value {
        None => -1,
        Some(value) => edges.partition_point(|edge| *edge <= value) as i64,
    }
}

/// What a derivation lost, measured on its output.
pub(crate) fn information_loss(source: &Analysed, derivation: &Derivation) -> InformationLoss {
    let published = &derivation.published;
    let sampled = published.sample_rows as u64 + published.rows_dropped;
    let quasi_cells = (published.sample_rows * published.quasi.len()) as u64;
    let mut distances = Vec::new();
    for column in &source.columns {
        let sample = &derivation.columns[column.index];
        match column.model {
            Model::Categorical => {
                let (Some(real), Ok(coded)) = (column.text.as_ref(), values::code_text(sample, &column.name)) else {
                    continue;
                };
                let real_counts = super::counts((0..source.rows).map(|row| real.value(row)));
                let sample_counts = super::counts((0..sample.len()).map(|row| coded.value(row)));
                distances.push(variation_distance(&real_counts, &sample_counts));
            }
            Model::Numeric => {
                let (Some(real), Ok(numbers)) = (column.numbers.as_ref(), values::numbers(sample, &column.name)) else {
                    continue;
                };
                let edges = deciles(real);
                let real_counts = super::counts(real.iter().map(|value| decile_of(&edges, *value)));
                let sample_counts = super::counts(numbers.iter().map(|value| decile_of(&edges, *value)));
                distances.push(variation_distance(&real_counts, &sample_counts));
            }
            _ => {}
        }
    }
    let median_relative_error = published.source_rows.as_ref().and_then(|source_rows| {
        let mut errors: Vec<f64> = Vec::new();
        for sensitive in &published.sensitive {
            let Some(real) = source.columns[sensitive.column].numbers.as_ref() else { continue };
            for (&row, value) in source_rows.iter().zip(&sensitive.sample) {
                if let (Some(truth), Some(value)) = (real[row], value)
                    && truth != 0.0
                {
                    errors.push(((value - truth) / truth).abs());
                }
            }
        }
        if errors.is_empty() {
            return None;
        }
        errors.sort_unstable_by(f64::total_cmp);
        Some(errors[errors.len() / 2])
    });
    InformationLoss {
        rows_dropped_share: if sampled == 0 { 0.0 } else { published.rows_dropped as f64 / sampled as f64 },
        suppressed_cell_share: if quasi_cells == 0 {
            0.0
        } else {
            published.suppressed_cells as f64 / quasi_cells as f64
        },
        marginal_distance: if distances.is_empty() {
            0.0
        } else {
            distances.iter().sum::<f64>() / distances.len() as f64
        },
        median_relative_error,
    }
}
