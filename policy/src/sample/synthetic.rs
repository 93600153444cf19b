//! The synthetic sample: rows drawn from differentially private marginals of the real data.
//! No row is a real record.
//!
//! The model is a star: one category column is the root (the first category column, the one
//! modules most likely group by), every other column is drawn given the root from a two-way
//! marginal, the root from its one-way marginal. What is measured, each with discrete
//! Laplace noise (`policy::noise`, exact) and the privacy unit being the subject:
//! - rows per subject (ε/10): its 95th percentile caps how many rows of one subject count in
//!   the other marginals (the sensitivity m), and synthetic subjects draw their row counts
//!   from it;
//! - per category column, a one-way histogram whose categories are released only above the
//!   threshold `m + (m/ε)·ln(m/2δ)`, so a category held by one subject is not revealed; the
//!   rest fall into `(other)`; and, for non-root columns, a two-way histogram with the root
//!   over the released categories;
//! - per number column, a hierarchical histogram: binary orders of magnitude per root
//!   category, then 16 and again 16 equal parts of each, noise-only parts cut; values are
//!   drawn uniformly within the finest part.
//!
//! Identifiers are fresh random tokens. Subjects are synthetic too: synthetic subject j of a
//! kind has the same token in every synthetic sample of the domain (so synthetic samples of
//! one kind join), and how many there are comes from the noisy row-count histogram; which real
//! subjects the dataset holds plays no part, so the sample says nothing of membership.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;

use super::risk::{MATCHES_NOTHING, Published, PublishedQuasi, PublishedSensitive};
use super::values::{self, NULL_CODE};
use super::{Analysed, Derivation, Model, SYNTHETIC_DELTA, SampleKeys, SampleParams, token_of};
use crate::noise::{RandomBits, Scale, discrete_laplace};
use crate::{ColumnTag, PolicyError};

/// The text of the category standing for every category below the release threshold.
const OTHER: &str = "(other)";
/// Most rows per subject the row-count histogram tells apart.
const MAX_ROWS_PER_SUBJECT: usize = 64;
/// Sub-bins per bin at each refinement level of a number histogram.
const SPLIT: usize = 16;
/// A level-0 (order of magnitude) bin is kept only above this many noise scales.
const MAGNITUDE_CUT: f64 = 10.0;
/// A finer bin is kept only above this many noise scales.
const PART_CUT: f64 = 3.0;

struct Random<'a>(&'a mut dyn RandomBits);

impl Random<'_> {
    fn word(&mut self) -> Result<u64, PolicyError> {
        self.0.next_u64().map_err(|_| PolicyError::RandomnessFailed("drawing a synthetic sample".into()))
    }

    fn unit(&mut self) -> Result<f64, PolicyError> {
        Ok((self.word()? >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// An index drawn with probability proportional to the weights whose running sums are
    /// `cumulative` (see [`cumulative`]), by binary search; None when all weights are zero.
    fn weighted(&mut self, cumulative: &[f64]) -> Result<Option<usize>, PolicyError> {
        let total = cumulative.last().copied().unwrap_or(0.0);
        if total <= 0.0 {
            return Ok(None);
        }
        let pick = self.unit()? * total;
        // The first running sum above the pick: a zero weight never is.
        Ok(Some(cumulative.partition_point(|&sum| sum <= pick).min(cumulative.len() - 1)))
    }

    /// `count` plus discrete Laplace noise of scale `scale`, never below zero.
    fn noisy(&mut self, count: u64, scale: f64) -> Result<f64, PolicyError> {
        let scale = Scale::at_least(scale)
            .ok_or_else(|| PolicyError::invalid("sample epsilon", format!("noise scale {scale} is out of range")))?;
        let noise = discrete_laplace(self.0, scale)
            .map_err(|_| PolicyError::RandomnessFailed("drawing a synthetic sample's noise".into()))?;
        Ok((count as f64 + noise as f64).max(0.0))
    }

    fn token(&mut self) -> Result<String, PolicyError> {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.word()?.to_le_bytes());
        }
        Ok(token_of(&bytes))
    }
}

/// The running sums of `weights`, which [`Random::weighted`] draws from.
fn cumulative(weights: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .scan(0.0, |sum, weight| {
            *sum += weight;
            Some(*sum)
        })
        .collect()
}

/// A category column's released domain: real codes above the threshold, then `(other)`, then null.
struct Categories {
    /// Released real codes.
    kept: Vec<u32>,
    /// Real code → position in the domain.
    position: HashMap<u32, usize>,
    /// Running sums of the noisy one-way weights over `kept`, `(other)`, null.
    weights: Vec<f64>,
}

impl Categories {
    fn other(&self) -> usize {
        self.kept.len()
    }

    fn null(&self) -> usize {
        self.kept.len() + 1
    }

    fn size(&self) -> usize {
        self.kept.len() + 2
    }

    fn of(&self, code: u32) -> usize {
        if code == NULL_CODE { self.null() } else { self.position.get(&code).copied().unwrap_or(self.other()) }
    }
}

/// The bin of a number at the order-of-magnitude level: null, zero, then binary orders of
/// magnitude 2^-32 … 2^95 for positive and for negative values.
const MAGNITUDES: usize = 128;
const MAGNITUDE_BINS: usize = 2 + 2 * MAGNITUDES;

fn magnitude_bin(value: Option<f64>) -> usize {
    match value {
        None => 0,
        Some(value) if value == 0.0 || !value.is_finite() => 1,
        Some(value) => {
            let exponent = (value.abs().log2().floor() as i64).clamp(-32, 95);
            let index = (exponent + 32) as usize;
            if value > 0.0 { 2 + index } else { 2 + MAGNITUDES + index }
        }
    }
}

/// The range `[low, high)` of a magnitude bin's absolute values and its sign.
fn magnitude_range(bin: usize) -> (f64, f64, f64) {
    let index = (bin - 2) % MAGNITUDES;
    let low = 2f64.powi(index as i32 - 32);
    let sign = if bin >= 2 + MAGNITUDES { -1.0 } else { 1.0 };
    (low, 2.0 * low, sign)
}

/// Which of `SPLIT` equal parts of `[low, high)` holds `value`.
fn part_of(value: f64, low: f64, high: f64) -> usize {
    (((value - low) / (high - low) * SPLIT as f64).floor() as usize).min(SPLIT - 1)
}

/// A number column's noisy hierarchical histogram, as running sums of its weights.
struct Numbers {
    /// Per root position (or one row without a root), over magnitude bins.
    magnitudes: Vec<Vec<f64>>,
    /// Over magnitude bins, every root position together.
    pooled: Vec<f64>,
    /// Magnitude bins with any weight.
    bins: usize,
    /// Per magnitude bin, over its parts.
    parts: HashMap<usize, Vec<f64>>,
    /// Per (magnitude bin, part), over its sub-parts.
    subparts: HashMap<(usize, usize), Vec<f64>>,
}

pub(crate) fn derive(
    source: &Analysed,
    keys: &SampleKeys,
    params: &SampleParams,
    random: &mut dyn RandomBits,
) -> Result<Derivation, PolicyError> {
    let mut random = Random(random);
    if !(params.epsilon.is_finite() && params.epsilon > 0.0) {
        return Err(PolicyError::invalid("sample epsilon", "must be a positive number"));
    }
    let delta = SYNTHETIC_DELTA;
    let epsilon_rows = params.epsilon / 10.0;
    let epsilon_marginals = params.epsilon - epsilon_rows;

    // Rows per subject: the cap m and the distribution synthetic subjects draw from.
    let subjects = source.subject_count();
    let mut rows_per_subject = vec![0u64; subjects];
    for row in 0..source.rows {
        let subject = source.subject_of(row);
        if subject != NULL_CODE {
            rows_per_subject[subject as usize] += 1;
        }
    }
    let mut histogram = vec![0u64; MAX_ROWS_PER_SUBJECT];
    for &rows in &rows_per_subject {
        if rows > 0 {
            histogram[(rows as usize).min(MAX_ROWS_PER_SUBJECT) - 1] += 1;
        }
    }
    let row_weights: Vec<f64> =
        histogram.iter().map(|&count| random.noisy(count, 1.0 / epsilon_rows)).collect::<Result<_, _>>()?;
    let total: f64 = row_weights.iter().sum();
    let mut cap = 1usize;
    if total > 0.0 {
        let mut cumulative = 0.0;
        for (index, weight) in row_weights.iter().enumerate() {
            cumulative += weight;
            cap = index + 1;
            if cumulative >= 0.95 * total {
                break;
            }
        }
    }
    let m = cap as f64;
    // Contribution bounding: at most m rows of a subject count in the marginals.
    let mut seen = vec![0u32; subjects];
    let counted: Vec<usize> = (0..source.rows)
        .filter(|&row| {
            let subject = source.subject_of(row);
            if subject == NULL_CODE {
                return false;
            }
            seen[subject as usize] += 1;
            seen[subject as usize] as usize <= cap
        })
        .collect();

    // The measurements and their share of ε.
    let modelled: Vec<usize> = source
        .columns
        .iter()
        .filter(|column| {
            matches!(column.model, Model::Categorical | Model::Numeric)
                || (column.model == Model::Token && column.tag != ColumnTag::Identifier)
        })
        .map(|column| column.index)
        .collect();
    let root = source.columns.iter().find(|column| column.model == Model::Categorical).map(|column| column.index);
    // One measurement per one-way histogram, one more per category column (its `(other)`
    // count reuses the rows of the categories it gathers), one per two-way histogram.
    let text_columns = modelled.iter().filter(|&&index| source.columns[index].text.is_some()).count();
    let measurements = modelled.len() + text_columns + modelled.iter().filter(|&&index| Some(index) != root).count();
    let epsilon = epsilon_marginals / measurements.max(1) as f64;
    let scale = m / epsilon;
    // Every thresholded histogram gets its share of δ.
    let delta = delta / text_columns.max(1) as f64;
    let threshold = m + scale * (m / (2.0 * delta)).ln();

    // One-way category histograms, thresholded (the root's too).
    let mut categories: HashMap<usize, Categories> = HashMap::new();
    for &index in &modelled {
        let column = &source.columns[index];
        let Some(text) = column.text.as_ref() else { continue };
        let mut counts = vec![0u64; text.values.len()];
        let mut nulls = 0u64;
        for &row in &counted {
            match text.codes[row] {
                NULL_CODE => nulls += 1,
                code => counts[code as usize] += 1,
            }
        }
        let mut kept = Vec::new();
        let mut weights = Vec::new();
        let mut other = 0u64;
        for (code, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let noisy = random.noisy(count, scale)?;
            if noisy >= threshold {
                kept.push(code as u32);
                weights.push(noisy);
            } else {
                other += count;
            }
        }
        weights.push(random.noisy(other, scale)?);
        weights.push(random.noisy(nulls, scale)?);
        let position = kept.iter().enumerate().map(|(position, &code)| (code, position)).collect();
        categories.insert(index, Categories { kept, position, weights: cumulative(&weights) });
    }

    // Two-way category histograms with the root.
    let root_size = root.and_then(|root| categories.get(&root)).map_or(1, Categories::size);
    let root_position = |row: usize| -> usize {
        match root.and_then(|root| source.columns[root].text.as_ref().map(|text| (root, text))) {
            Some((root, text)) => categories.get(&root).map_or(0, |domain| domain.of(text.codes[row])),
            None => 0,
        }
    };
    let mut pairs: HashMap<usize, Vec<Vec<f64>>> = HashMap::new();
    for &index in modelled.iter().filter(|&&index| Some(index) != root) {
        let (Some(domain), Some(text)) = (categories.get(&index), source.columns[index].text.as_ref()) else {
            continue;
        };
        let mut counts = vec![vec![0u64; domain.size()]; root_size];
        for &row in &counted {
            counts[root_position(row)][domain.of(text.codes[row])] += 1;
        }
        let noisy = counts
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&count| random.noisy(count, scale))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|w| cumulative(&w))
            })
            .collect::<Result<Vec<_>, _>>()?;
        pairs.insert(index, noisy);
    }

    // Number histograms: magnitudes per root category (ε), parts and sub-parts (ε/2 each).
    let mut numbers: HashMap<usize, Numbers> = HashMap::new();
    for &index in &modelled {
        let Some(values) = source.columns[index].numbers.as_ref() else { continue };
        let mut magnitude_counts = vec![vec![0u64; MAGNITUDE_BINS]; root_size];
        for &row in &counted {
            magnitude_counts[root_position(row)][magnitude_bin(values[row])] += 1;
        }
        let mut magnitudes = Vec::with_capacity(root_size);
        // The pooled histogram sums the noisy counts of every root category (post-processing,
        // no further ε): a root category whose bins are each too small to stand out of the
        // noise draws from it, and its noise, summed over root_size counts, is cut at a
        // threshold √root_size times higher.
        let mut pooled = vec![0.0; MAGNITUDE_BINS];
        for row in &magnitude_counts {
            let mut weights = Vec::with_capacity(MAGNITUDE_BINS);
            for (bin, &count) in row.iter().enumerate() {
                let noisy = random.noisy(count, scale)?;
                pooled[bin] += noisy;
                weights.push(if noisy >= MAGNITUDE_CUT * scale { noisy } else { 0.0 });
            }
            magnitudes.push(weights);
        }
        let pooled_cut = MAGNITUDE_CUT * scale * (magnitude_counts.len() as f64).sqrt();
        for weight in &mut pooled {
            if *weight < pooled_cut {
                *weight = 0.0;
            }
        }
        let part_scale = 2.0 * scale;
        let refined: Vec<usize> = (2..MAGNITUDE_BINS)
            .filter(|&bin| pooled[bin] > 0.0 || magnitudes.iter().any(|weights| weights[bin] > 0.0))
            .collect();
        let mut part_counts: HashMap<usize, Vec<u64>> = refined.iter().map(|&bin| (bin, vec![0u64; SPLIT])).collect();
        let mut subpart_counts: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
        for &row in &counted {
            let Some(value) = values[row] else { continue };
            let bin = magnitude_bin(Some(value));
            let Some(parts) = part_counts.get_mut(&bin) else { continue };
            let (low, high, _) = magnitude_range(bin);
            let part = part_of(value.abs(), low, high);
            parts[part] += 1;
            let width = (high - low) / SPLIT as f64;
            let part_low = low + width * part as f64;
            subpart_counts.entry((bin, part)).or_insert_with(|| vec![0u64; SPLIT])
                [part_of(value.abs(), part_low, part_low + width)] += 1;
        }
        let mut parts = HashMap::new();
        let mut subparts = HashMap::new();
        for &bin in &refined {
            let mut weights = Vec::with_capacity(SPLIT);
            for &count in &part_counts[&bin] {
                let noisy = random.noisy(count, part_scale)?;
                weights.push(if noisy >= PART_CUT * part_scale { noisy } else { 0.0 });
            }
            for (part, weight) in weights.iter().enumerate() {
                // Sub-parts of every part are measured (the budget is spent either way);
                // only parts that survived are worth keeping.
                let counts = subpart_counts.get(&(bin, part)).cloned().unwrap_or_else(|| vec![0; SPLIT]);
                let mut sub = Vec::with_capacity(SPLIT);
                for count in counts {
                    let noisy = random.noisy(count, part_scale)?;
                    sub.push(if noisy >= PART_CUT * part_scale { noisy } else { 0.0 });
                }
                if *weight > 0.0 {
                    subparts.insert((bin, part), cumulative(&sub));
                }
            }
            parts.insert(bin, cumulative(&weights));
        }
        numbers.insert(
            index,
            Numbers {
                bins: refined.len(),
                pooled: cumulative(&pooled),
                magnitudes: magnitudes.iter().map(|weights| cumulative(weights)).collect(),
                parts,
                subparts,
            },
        );
    }

    // Generation: as many synthetic subjects as the noisy histogram holds subjects (times the
    // sampled share), each with a drawn number of rows. Synthetic subject j of a kind is the
    // same token in every synthetic sample of the domain, so those samples join; which real
    // subjects the dataset holds plays no part.
    let row_sums = cumulative(&row_weights);
    let subjects = (total * f64::from(params.percent) / 100.0).round() as usize;
    let mut owners: Vec<Option<u32>> = Vec::new();
    for subject in 0..subjects {
        let rows = match source.subject {
            Some(_) => random.weighted(&row_sums)?.map_or(1, |index| index + 1),
            None => 1,
        };
        owners.extend(std::iter::repeat_n(source.subject.map(|_| subject as u32), rows));
    }
    // Rows in a random order, so a subject's rows are not together.
    let mut order: Vec<(u64, usize)> = Vec::with_capacity(owners.len());
    for index in 0..owners.len() {
        order.push((random.word()?, index));
    }
    order.sort_unstable();
    let owners: Vec<Option<u32>> = order.into_iter().map(|(_, index)| owners[index]).collect();
    let rows = owners.len();

    let mut roots = vec![0usize; rows];
    if let Some(domain) = root.and_then(|root| categories.get(&root)) {
        for slot in &mut roots {
            *slot = random.weighted(&domain.weights)?.unwrap_or(domain.null());
        }
    }

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(source.columns.len());
    let mut treatments = Vec::with_capacity(source.columns.len());
    let mut tokens = Vec::new();
    let mut published_quasi = Vec::new();
    let mut published_sensitive = Vec::new();
    for column in &source.columns {
        match column.model {
            Model::Subject => {
                let kind = source.subject_kind.map_or("subject", |kind| kind.as_str());
                let tokens_of: Vec<String> = (0..subjects)
                    .map(|subject| token_of(&keys.tag(&format!("\0synthetic {kind} {subject}"))))
                    .collect();
                let values = owners.iter().map(|owner| owner.map(|subject| tokens_of[subject as usize].as_str()));
                columns.push(values::text_column(values, &DataType::Utf8, &column.name)?);
                treatments.push(format!(
                    "synthetic {kind}s (the same in every synthetic sample of the domain), none of them real"
                ));
                tokens.push(column.index);
            }
            Model::Token if column.tag == ColumnTag::Identifier => {
                let values = (0..rows).map(|_| random.token().map(Some)).collect::<Result<Vec<_>, _>>()?;
                columns.push(values::text_column(values.iter().map(Option::as_deref), &DataType::Utf8, &column.name)?);
                treatments.push("fresh random tokens".to_string());
                tokens.push(column.index);
            }
            Model::Token | Model::Categorical => {
                let (Some(domain), Some(text)) = (categories.get(&column.index), column.text.as_ref()) else {
                    columns.push(values::null_column(&column.data_type, rows));
                    treatments.push("not modelled: null".to_string());
                    continue;
                };
                let is_root = Some(column.index) == root;
                let mut positions = Vec::with_capacity(rows);
                for &root_value in &roots {
                    let position = if is_root {
                        root_value
                    } else {
                        let given = pairs.get(&column.index).and_then(|pairs| pairs.get(root_value));
                        match given.map(|weights| random.weighted(weights)).transpose()?.flatten() {
                            Some(position) => position,
                            None => random.weighted(&domain.weights)?.unwrap_or(domain.null()),
                        }
                    };
                    positions.push(position);
                }
                let tokenised = column.model == Model::Token;
                let mut fresh = Vec::new();
                let textual = !matches!(column.data_type, DataType::Boolean);
                for &position in &positions {
                    if tokenised && position == domain.other() {
                        fresh.push(Some(random.token()?));
                    } else {
                        fresh.push(None);
                    }
                }
                let mut cache: HashMap<u32, String> = HashMap::new();
                let texts: Vec<Option<String>> = positions
                    .iter()
                    .zip(fresh)
                    .map(|(&position, fresh)| {
                        if position == domain.null() {
                            None
                        } else if position == domain.other() {
                            fresh.or_else(|| textual.then(|| OTHER.to_string()))
                        } else {
                            let code = domain.kept[position];
                            let value = &text.values[code as usize];
                            Some(if tokenised {
                                cache.entry(code).or_insert_with(|| token_of(&keys.tag(value))).clone()
                            } else {
                                value.clone()
                            })
                        }
                    })
                    .collect();
                let data_type = if tokenised { DataType::Utf8 } else { column.data_type.clone() };
                columns.push(values::text_column(texts.iter().map(Option::as_deref), &data_type, &column.name)?);
                if tokenised {
                    tokens.push(column.index);
                    treatments.push(format!(
                        "drawn from a noisy histogram of tokens: {} frequent values kept, the rest fresh tokens",
                        domain.kept.len()
                    ));
                } else {
                    treatments.push(format!(
                        "drawn from noisy {}marginals: {} of {} categories released, the rest \"{OTHER}\"",
                        if is_root || root.is_none() { "" } else { "two-way " },
                        domain.kept.len(),
                        text.values.len()
                    ));
                }
                if column.is_quasi_identifier() {
                    published_quasi.push(PublishedQuasi {
                        column: column.index,
                        real: text.codes.iter().map(|&code| category_key(code)).collect(),
                        sample: positions
                            .iter()
                            .map(|&position| {
                                Some(if position == domain.null() {
                                    category_key(NULL_CODE)
                                } else if position == domain.other() {
                                    MATCHES_NOTHING
                                } else {
                                    category_key(domain.kept[position])
                                })
                            })
                            .collect(),
                    });
                }
            }
            Model::Numeric => {
                let Some(histogram) = numbers.get(&column.index) else {
                    columns.push(values::null_column(&column.data_type, rows));
                    treatments.push("not modelled: null".to_string());
                    continue;
                };
                let integral = values::is_integral(&column.data_type);
                let mut drawn: Vec<Option<f64>> = Vec::with_capacity(rows);
                for &root_value in &roots {
                    let weights = &histogram.magnitudes[root_value.min(histogram.magnitudes.len() - 1)];
                    let bin = match random.weighted(weights)? {
                        Some(bin) => bin,
                        None => random.weighted(&histogram.pooled)?.unwrap_or(0),
                    };
                    let value = match bin {
                        0 => None,
                        1 => Some(0.0),
                        bin => {
                            let (low, high, sign) = magnitude_range(bin);
                            let width = (high - low) / SPLIT as f64;
                            let part = match histogram.parts.get(&bin) {
                                Some(weights) => random.weighted(weights)?,
                                None => None,
                            };
                            let (from, span) = match part {
                                None => (low, high - low),
                                Some(part) => {
                                    let part_low = low + width * part as f64;
                                    let sub_width = width / SPLIT as f64;
                                    match histogram
                                        .subparts
                                        .get(&(bin, part))
                                        .map(|w| random.weighted(w))
                                        .transpose()?
                                        .flatten()
                                    {
                                        Some(sub) => (part_low + sub_width * sub as f64, sub_width),
                                        None => (part_low, width),
                                    }
                                }
                            };
                            let mut value = sign * (from + span * random.unit()?);
                            if integral {
                                value = value.round();
                            }
                            Some(value)
                        }
                    };
                    drawn.push(value);
                }
                columns.push(values::number_column(&drawn, &column.data_type, &column.name)?);
                treatments.push(format!(
                    "drawn from a noisy hierarchical histogram ({} orders of magnitude, 256 parts each){}",
                    histogram.bins,
                    if root.is_some() { ", magnitudes given the root category" } else { "" }
                ));
                if column.is_quasi_identifier() {
                    let real = column.numbers.as_deref().unwrap_or(&[]);
                    published_quasi.push(PublishedQuasi {
                        column: column.index,
                        real: real.iter().map(|value| number_key(*value)).collect(),
                        sample: drawn.iter().map(|value| Some(number_key(*value))).collect(),
                    });
                } else if column.tag == ColumnTag::Sensitive {
                    published_sensitive.push(PublishedSensitive { column: column.index, sample: drawn, noise: None });
                }
            }
            Model::Nulled => {
                columns.push(values::null_column(&column.data_type, rows));
                treatments.push(format!("type {} not modelled: null", column.data_type));
            }
        }
    }
    Ok(Derivation {
        columns,
        tokens,
        treatments,
        published: Published {
            quasi: published_quasi,
            source_rows: None,
            sensitive: published_sensitive,
            sample_rows: rows,
            rows_dropped: 0,
            suppressed_cells: 0,
        },
    })
}

fn category_key(code: u32) -> u64 {
    u64::from(code)
}

fn number_key(value: Option<f64>) -> u64 {
    value.map_or(u64::MAX, |value| if value == 0.0 { 0 } else { value.to_bits() })
}
