//! The de-identified sample: real rows of a sampled share of subjects, made k-anonymous and
//! perturbed.
//!
//! - Rows: every row of the subjects whose keyed tag falls in the sampled share (without a
//!   subject column, rows by a keyed hash of their content), shuffled by a keyed draw.
//! - Quasi-identifiers (quasi and public categories and numbers: what an outsider may know):
//!   categories held by fewer than k sampled subjects are merged into `(other)`; numbers are
//!   banded, the bands widened (1, 2, 5, 10, 20, … units) on the column with the most
//!   distinct bands while more than 5% of rows sit in combinations of fewer than k subjects;
//!   then the rows still in such combinations have their quasi-identifiers suppressed (null)
//!   one column at a time, and the few left below k are dropped.
//! - Identifiers and high-cardinality text: tokens.
//! - Sensitive numbers: `value × e^(±m) ± u·c`, m in 0.05–0.55 (about 5–42% down, 5–73% up),
//!   u in 0–1 and c a tenth of the column's median magnitude, drawn from the domain's noise key, the subject and the row's
//!   other values — never from its position — so a subject's value gets the same noise in
//!   every version and no averaging over re-registrations or grants removes it. Non-negative
//!   columns stay non-negative.
//! - Sensitive categories: swapped between rows (a keyed permutation), so the column keeps
//!   its distribution but no longer belongs to the row's subject.

use std::collections::{BTreeSet, HashMap};

use arrow::array::ArrayRef;

use super::risk::{NoiseShape, Published, PublishedQuasi, PublishedSensitive};
use super::values::{self, NULL_CODE};
use super::{Analysed, Derivation, Model, SampleKeys, SampleParams, sampled, token_of};
use crate::{ColumnTag, PolicyError};

/// The text a merged rare category is published as.
pub(crate) const OTHER: &str = "(other)";
/// Share of rows that may sit in too-small combinations before bands widen; the rest are
/// suppressed cell by cell.
const SUPPRESSION_BUDGET: f64 = 0.05;
/// Range of the noise factor's natural logarithm on sensitive numbers (either sign): uniform
/// in log space, so no estimate `published / g` lands within 1% of more than about 2% of values.
const LOG_FACTOR: (f64, f64) = (0.05, 0.55);
/// The additive noise's bound as a share of the column's median magnitude, tried in order
/// until the recovery attack fails on the column: it moves values near zero (small counts,
/// which a factor only rounds back), so columns of small whole numbers get more of it.
const OFFSET_SHARES: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// The share of the grade's recovery threshold a column's noise is calibrated to.
const CALIBRATION_MARGIN: f64 = 0.8;
/// Most times a column's bands are widened (1, 2, 5 × ten to the 20th: far past any range).
const MAX_WIDENINGS: u32 = 60;
/// Band widths, in units of a column's base, tried in order.
const LADDER: [f64; 3] = [1.0, 2.0, 5.0];

/// A stable 64-bit hash (FNV-1a) for keys that must not depend on the process.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const NULL_KEY: u64 = u64::MAX;
const OTHER_KEY: u64 = u64::MAX - 2;

/// How one quasi-identifier is generalised.
enum Generalisation {
    /// Categories kept (true) or merged into `(other)` (false), per code.
    Categories { kept: Vec<bool> },
    /// Numbers banded to multiples of `base × LADDER[step % 3] × 10^(step / 3)`.
    Bands { base: f64, step: u32, range: f64 },
}

impl Generalisation {
    fn width(base: f64, step: u32) -> f64 {
        base * LADDER[(step % 3) as usize] * 10f64.powi((step / 3) as i32)
    }

    fn band(value: f64, width: f64) -> f64 {
        (value / width).floor() * width
    }
}

struct Quasi<'a> {
    column: usize,
    text: Option<&'a values::Coded>,
    numbers: Option<&'a [Option<f64>]>,
    generalisation: Generalisation,
}

impl Quasi<'_> {
    /// The published key of real row `row` under the current generalisation.
    fn key(&self, row: usize) -> u64 {
        match (&self.generalisation, self.text, self.numbers) {
            (Generalisation::Categories { kept }, Some(text), _) => {
                let code = text.codes[row];
                if code == NULL_CODE {
                    NULL_KEY
                } else if kept[code as usize] {
                    u64::from(code)
                } else {
                    OTHER_KEY
                }
            }
            (Generalisation::Bands { base, step, .. }, _, Some(numbers)) => match numbers[row] {
                Some(value) if value.is_finite() => {
                    Generalisation::band(value, Generalisation::width(*base, *step)).to_bits()
                }
                _ => NULL_KEY,
            },
            _ => NULL_KEY,
        }
    }

    /// The column as the attacker reads it: every real row's key and every sample row's,
    /// None where suppressed (bit `position` of its mask).
    fn published(&self, position: usize, real_rows: usize, rows: &[usize], suppressed: &[u64]) -> PublishedQuasi {
        PublishedQuasi {
            column: self.column,
            real: (0..real_rows).map(|row| self.key(row)).collect(),
            sample: rows
                .iter()
                .zip(suppressed)
                .map(|(&row, mask)| (mask & (1 << position) == 0).then(|| self.key(row)))
                .collect(),
        }
    }

    fn can_widen(&self) -> bool {
        match &self.generalisation {
            Generalisation::Bands { base, step, range } => {
                let width = Generalisation::width(*base, *step);
                width.is_finite() && width <= *range && *step < MAX_WIDENINGS
            }
            Generalisation::Categories { .. } => false,
        }
    }
}

/// Rows (by position in `rows`) whose combination of published keys, with suppressed keys
/// as wildcards of their own, holds fewer than `k` distinct subjects.
fn small_classes(source: &Analysed, rows: &[usize], keys: &[Vec<u64>], suppressed: &[u64], k: u64) -> Vec<bool> {
    let hashes: Vec<u64> = (0..rows.len())
        .map(|position| {
            let mut hash = suppressed[position].wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for (quasi, column) in keys.iter().enumerate() {
                let key = if suppressed[position] & (1 << quasi) != 0 { NULL_KEY - 1 } else { column[position] };
                hash = (hash ^ key).wrapping_mul(0x0100_0000_01b3).rotate_left(17);
            }
            hash
        })
        .collect();
    let mut pairs: Vec<(u64, u32)> =
        hashes.iter().zip(rows).map(|(&hash, &row)| (hash, source.subject_of(row))).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut subjects: HashMap<u64, u64> = HashMap::new();
    for (hash, _) in pairs {
        *subjects.entry(hash).or_insert(0) += 1;
    }
    hashes.iter().map(|hash| subjects.get(hash).copied().unwrap_or(0) < k).collect()
}

pub(crate) fn derive(
    source: &Analysed,
    keys: &SampleKeys,
    params: &SampleParams,
    max_recovered_share: f64,
) -> Result<Derivation, PolicyError> {
    // Which rows: the sampled subjects' (or sampled rows), each with its keyed draw.
    let content_hash = |row: usize| -> u64 {
        let mut hash = 0u64;
        for column in &source.columns {
            if column.tag == ColumnTag::Sensitive || column.model == Model::Subject {
                continue;
            }
            let part = match (&column.text, &column.numbers) {
                (Some(text), _) => text.value(row).map_or(NULL_KEY, |value| stable_hash(value.as_bytes())),
                (_, Some(numbers)) => numbers[row].map_or(NULL_KEY, f64::to_bits),
                _ => 0,
            };
            hash = stable_hash(&[hash.to_le_bytes(), part.to_le_bytes()].concat());
        }
        hash
    };
    let mut rows = Vec::new();
    let mut draws: Vec<[u64; 4]> = Vec::new();
    let mut occurrences: HashMap<(u32, u64), u32> = HashMap::new();
    for row in 0..source.rows {
        let subject = source.subject_of(row);
        let subject_tag: &[u8] = match source.subject {
            Some(_) if subject == NULL_CODE => continue,
            // Subjects outside the sampled share cost nothing more.
            Some(_) if !sampled(&source.subject_tags[subject as usize], params.percent) => continue,
            Some(_) => &source.subject_tags[subject as usize],
            None => &[],
        };
        let fingerprint = content_hash(row);
        let occurrence = occurrences.entry((subject, fingerprint)).or_insert(0);
        let draw = keys.noise(&[subject_tag, &fingerprint.to_le_bytes(), &occurrence.to_le_bytes()]);
        *occurrence += 1;
        if source.subject.is_some() || draw[0] % 10_000 < u64::from(params.percent) * 100 {
            rows.push(row);
            draws.push(draw);
        }
    }

    // Quasi-identifiers: rare categories merged, numbers banded, bands widened.
    let mut quasi: Vec<Quasi<'_>> = Vec::new();
    for column in source.columns.iter().filter(|column| column.is_quasi_identifier()) {
        let generalisation = match column.model {
            Model::Categorical => {
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let mut holders: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); text.values.len()];
                for &row in &rows {
                    let code = text.codes[row];
                    if code != NULL_CODE && (holders[code as usize].len() as u64) < params.k {
                        holders[code as usize].insert(source.subject_of(row));
                    }
                }
                Generalisation::Categories {
                    kept: holders.iter().map(|subjects| subjects.len() as u64 >= params.k).collect(),
                }
            }
            _ => {
                let numbers = column.numbers.as_deref().unwrap_or(&[]);
                // Bands span the finite values (a non-finite one is published as null), and
                // stop widening once one band holds them all.
                let (low, high) = numbers
                    .iter()
                    .flatten()
                    .filter(|v| v.is_finite())
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| (low.min(*v), high.max(*v)));
                let range = if low.is_finite() && high.is_finite() { (high - low).max(0.0) } else { 0.0 };
                let base = if values::is_integral(&column.data_type) {
                    1.0
                } else {
                    let magnitude = low.abs().max(high.abs());
                    if magnitude > 0.0 && magnitude.is_finite() {
                        10f64.powf(magnitude.log10().floor() - 3.0)
                    } else {
                        1.0
                    }
                };
                Generalisation::Bands { base, step: 0, range }
            }
        };
        quasi.push(Quasi {
            column: column.index,
            text: column.text.as_ref(),
            numbers: column.numbers.as_deref(),
            generalisation,
        });
    }
    // Suppression patterns are bit masks; a dataset with more quasi-identifiers swaps the rest.
    quasi.truncate(63);
    let sample_keys = |quasi: &[Quasi<'_>]| -> Vec<Vec<u64>> {
        quasi.iter().map(|column| rows.iter().map(|&row| column.key(row)).collect()).collect()
    };
    let mut suppressed = vec![0u64; rows.len()];
    let budget = (SUPPRESSION_BUDGET * rows.len() as f64) as usize;
    loop {
        let keyed = sample_keys(&quasi);
        let small = small_classes(source, &rows, &keyed, &suppressed, params.k);
        if small.iter().filter(|small| **small).count() <= budget {
            break;
        }
        let widest = quasi
            .iter()
            .enumerate()
            .filter(|(_, column)| column.can_widen())
            .max_by_key(|(position, _)| keyed[*position].iter().collect::<BTreeSet<_>>().len())
            .map(|(position, _)| position);
        let Some(position) = widest else { break };
        if let Generalisation::Bands { step, .. } = &mut quasi[position].generalisation {
            *step += 1;
        }
    }
    // Local suppression, column by column (most distinct values first), then drop the rest.
    let keyed = sample_keys(&quasi);
    let mut order: Vec<usize> = (0..keyed.len()).collect();
    order.sort_by_key(|&position| std::cmp::Reverse(keyed[position].iter().collect::<BTreeSet<_>>().len()));
    let mut small = small_classes(source, &rows, &keyed, &suppressed, params.k);
    for &position in &order {
        if !small.iter().any(|small| *small) {
            break;
        }
        for (row, is_small) in small.iter().enumerate() {
            if *is_small {
                suppressed[row] |= 1 << position;
            }
        }
        small = small_classes(source, &rows, &keyed, &suppressed, params.k);
    }
    let kept: Vec<usize> = (0..rows.len()).filter(|&position| !small[position]).collect();
    let rows_dropped = (rows.len() - kept.len()) as u64;
    // Shuffle: the keyed draw decides the order, never the file.
    let mut kept = kept;
    kept.sort_by_key(|&position| (draws[position][3], position));
    let sample_rows: Vec<usize> = kept.iter().map(|&position| rows[position]).collect();
    let sample_draws: Vec<[u64; 4]> = kept.iter().map(|&position| draws[position]).collect();
    let sample_suppressed: Vec<u64> = kept.iter().map(|&position| suppressed[position]).collect();

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(source.columns.len());
    let mut treatments = Vec::with_capacity(source.columns.len());
    let mut tokens = Vec::new();
    let mut published_quasi = Vec::new();
    let mut published_sensitive = Vec::new();
    let mut suppressed_cells = 0u64;
    for column in &source.columns {
        let quasi_position = quasi.iter().position(|q| q.column == column.index);
        match (column.model, quasi_position) {
            (Model::Subject, _) => {
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let tokens_of: Vec<String> = source.subject_tags.iter().map(token_of).collect();
                let values = sample_rows.iter().map(|&row| {
                    let code = text.codes[row];
                    (code != NULL_CODE).then(|| tokens_of[code as usize].as_str())
                });
                columns.push(values::text_column(values, &arrow::datatypes::DataType::Utf8, &column.name)?);
                treatments.push("tokens (keyed per domain, re-keyed per grant)".to_string());
                tokens.push(column.index);
            }
            (Model::Token, _) if column.tag == ColumnTag::Sensitive => {
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let common = common_values(source, text, &sample_rows, params.k);
                let swapped = swap(&sample_rows, &sample_draws);
                let values = swapped.iter().map(|&row| {
                    let code = text.codes[row];
                    text.value(row).filter(|_| common[code as usize]).map(|value| token_of(&keys.tag(value)))
                });
                let values: Vec<Option<String>> = values.collect();
                columns.push(values::text_column(
                    values.iter().map(Option::as_deref),
                    &arrow::datatypes::DataType::Utf8,
                    &column.name,
                )?);
                treatments.push("tokens, swapped between rows".to_string());
                tokens.push(column.index);
            }
            (Model::Token, _) => {
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let mut cache: HashMap<u32, String> = HashMap::new();
                let values: Vec<Option<String>> = sample_rows
                    .iter()
                    .map(|&row| {
                        let code = text.codes[row];
                        (code != NULL_CODE).then(|| {
                            cache
                                .entry(code)
                                .or_insert_with(|| token_of(&keys.tag(&text.values[code as usize])))
                                .clone()
                        })
                    })
                    .collect();
                columns.push(values::text_column(
                    values.iter().map(Option::as_deref),
                    &arrow::datatypes::DataType::Utf8,
                    &column.name,
                )?);
                treatments.push(if column.tag == ColumnTag::Identifier {
                    "identifier replaced by tokens".to_string()
                } else {
                    "high-cardinality text replaced by tokens".to_string()
                });
                tokens.push(column.index);
            }
            (Model::Categorical, Some(position)) => {
                let q = &quasi[position];
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let Generalisation::Categories { kept } = &q.generalisation else { return Err(mismatched(column)) };
                let textual = column.data_type != arrow::datatypes::DataType::Boolean;
                let values = sample_rows.iter().zip(&sample_suppressed).map(|(&row, mask)| {
                    if mask & (1 << position) != 0 {
                        return None;
                    }
                    let code = text.codes[row];
                    if code == NULL_CODE {
                        None
                    } else if kept[code as usize] {
                        Some(text.values[code as usize].as_str())
                    } else if textual {
                        Some(OTHER)
                    } else {
                        None
                    }
                });
                columns.push(values::text_column(values, &column.data_type, &column.name)?);
                let merged = kept.iter().filter(|kept| !**kept).count();
                let cells = sample_suppressed.iter().filter(|mask| *mask & (1 << position) != 0).count();
                suppressed_cells += cells as u64;
                treatments.push(format!(
                    "k-anonymous: {merged} categories with fewer than {} subjects merged into \"{OTHER}\", {cells} cells suppressed",
                    params.k
                ));
                published_quasi.push(q.published(position, source.rows, &sample_rows, &sample_suppressed));
            }
            (Model::Numeric, Some(position)) => {
                let q = &quasi[position];
                let numbers = column.numbers.as_deref().unwrap_or(&[]);
                let Generalisation::Bands { base, step, .. } = &q.generalisation else {
                    return Err(mismatched(column));
                };
                let width = Generalisation::width(*base, *step);
                let banded: Vec<Option<f64>> = sample_rows
                    .iter()
                    .zip(&sample_suppressed)
                    .map(|(&row, mask)| {
                        if mask & (1 << position) != 0 {
                            None
                        } else {
                            numbers[row].filter(|v| v.is_finite()).map(|v| Generalisation::band(v, width))
                        }
                    })
                    .collect();
                columns.push(values::number_column(&banded, &column.data_type, &column.name)?);
                let cells = sample_suppressed.iter().filter(|mask| *mask & (1 << position) != 0).count();
                suppressed_cells += cells as u64;
                treatments
                    .push(format!("k-anonymous: bands of {width} (the band's lower end), {cells} cells suppressed"));
                published_quasi.push(q.published(position, source.rows, &sample_rows, &sample_suppressed));
            }
            (Model::Categorical, None) => {
                // Sensitive (or identifier-free, non-quasi) categories: swapped between rows,
                // and a value fewer than k sampled subjects hold is merged into `(other)`.
                let text = column.text.as_ref().ok_or_else(|| PolicyError::invalid(&column.name, "no text"))?;
                let common = common_values(source, text, &sample_rows, params.k);
                let textual = column.data_type != arrow::datatypes::DataType::Boolean;
                let swapped = swap(&sample_rows, &sample_draws);
                columns.push(values::text_column(
                    swapped.iter().map(|&row| {
                        let code = text.codes[row];
                        match text.value(row) {
                            Some(_) if !common[code as usize] => textual.then_some(OTHER),
                            value => value,
                        }
                    }),
                    &column.data_type,
                    &column.name,
                )?);
                treatments.push("swapped between rows (a keyed permutation)".to_string());
            }
            (Model::Numeric, None) => {
                let numbers = column.numbers.as_deref().unwrap_or(&[]);
                let mut magnitudes: Vec<f64> =
                    numbers.iter().flatten().map(|v| v.abs()).filter(|v| *v > 0.0 && v.is_finite()).collect();
                magnitudes.sort_unstable_by(f64::total_cmp);
                let median = magnitudes.get(magnitudes.len() / 2).copied().unwrap_or(0.0);
                let non_negative = numbers.iter().flatten().all(|v| *v >= 0.0);
                let integral = values::is_integral(&column.data_type);
                // The noise of a value is keyed by its subject, its column and the value itself:
                // a value a subject holds on many rows (a yearly contribution base on monthly
                // rows) gets the same noise on each, so no average over them removes it.
                let words: Vec<[u64; 4]> = sample_rows
                    .iter()
                    .map(|&row| {
                        let subject = source.subject_of(row);
                        let tag: &[u8] = source.subject_tags.get(subject as usize).map_or(&[], |tag| &tag[..]);
                        let bits = numbers[row].map_or(u64::MAX, f64::to_bits);
                        keys.noise(&[tag, column.name.as_bytes(), &bits.to_le_bytes()])
                    })
                    .collect();
                let perturb = |offset: f64| -> Vec<Option<f64>> {
                    sample_rows
                        .iter()
                        .zip(&words)
                        .map(|(&row, draw)| {
                            numbers[row].map(|value| {
                                let word = draw[1];
                                let second = draw[2];
                                let unit = |word: u64| (word >> 11) as f64 / (1u64 << 53) as f64;
                                let log_factor = LOG_FACTOR.0 + (LOG_FACTOR.1 - LOG_FACTOR.0) * unit(word >> 1);
                                let factor = if word & 1 == 0 { log_factor.exp() } else { (-log_factor).exp() };
                                let shift = offset * unit(second >> 1) * if second & 1 == 0 { 1.0 } else { -1.0 };
                                let noisy = value * factor + shift;
                                let noisy = if non_negative { noisy.max(0.0) } else { noisy };
                                if integral { noisy.round() } else { noisy }
                            })
                        })
                        .collect()
                };
                // Calibrated by attack: the smallest offset under which the best known-method
                // estimator recovers few enough of this column's values.
                let mut offset = OFFSET_SHARES[0] * median;
                let mut perturbed = perturb(offset);
                if column.tag == ColumnTag::Sensitive {
                    for share in OFFSET_SHARES {
                        offset = share * median;
                        perturbed = perturb(offset);
                        let pairs: Vec<(f64, f64)> = sample_rows
                            .iter()
                            .zip(&perturbed)
                            .filter_map(|(&row, published)| Some((numbers[row]?, (*published)?)))
                            .collect();
                        let shape = NoiseShape { log_factor: LOG_FACTOR, offset };
                        let (attacked, recovered, _) = super::risk::recover_perturbed(&pairs, shape, integral);
                        if attacked == 0
                            || (recovered as f64) <= CALIBRATION_MARGIN * max_recovered_share * attacked as f64
                        {
                            break;
                        }
                    }
                }
                columns.push(values::number_column(&perturbed, &column.data_type, &column.name)?);
                treatments.push(format!(
                    "keyed noise: × e^±({}–{}) ± up to {offset:.3}{}",
                    LOG_FACTOR.0,
                    LOG_FACTOR.1,
                    if non_negative { ", kept non-negative" } else { "" }
                ));
                if column.tag == ColumnTag::Sensitive {
                    published_sensitive.push(PublishedSensitive {
                        column: column.index,
                        sample: perturbed,
                        noise: Some(NoiseShape { log_factor: LOG_FACTOR, offset }),
                    });
                }
            }
            (Model::Nulled, _) => {
                columns.push(values::null_column(&column.data_type, sample_rows.len()));
                treatments.push(if column.tag == ColumnTag::Identifier {
                    format!("identifier of type {}: null", column.data_type)
                } else {
                    format!("type {} not modelled: null", column.data_type)
                });
            }
        }
    }
    Ok(Derivation {
        columns,
        tokens,
        treatments,
        published: Published {
            quasi: published_quasi,
            source_rows: Some(sample_rows.clone()),
            sensitive: published_sensitive,
            sample_rows: sample_rows.len(),
            rows_dropped,
            suppressed_cells,
        },
    })
}

/// Per code of `text`, whether at least `k` of the sampled subjects hold the value.
fn common_values(source: &Analysed, text: &values::Coded, rows: &[usize], k: u64) -> Vec<bool> {
    let mut holders: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); text.values.len()];
    for &row in rows {
        let code = text.codes[row];
        if code != NULL_CODE && (holders[code as usize].len() as u64) < k {
            holders[code as usize].insert(source.subject_of(row));
        }
    }
    holders.iter().map(|subjects| subjects.len() as u64 >= k).collect()
}

/// A keyed permutation of the sample's rows: row i takes the value of the row the draw
/// puts in its place.
fn swap(rows: &[usize], draws: &[[u64; 4]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&position| (draws[position][2], position));
    order.into_iter().map(|position| rows[position]).collect()
}

fn mismatched(column: &super::SourceColumn) -> PolicyError {
    PolicyError::invalid(&column.name, "its generalisation does not fit its type")
}
