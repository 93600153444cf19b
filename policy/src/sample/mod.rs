//! Development samples (经抽样、脱敏后的样本): the one path where rows reach a developer without
//! review, so a sample has to disclose nothing on its own.
//!
//! Two kinds, chosen per dataset version by the operator, with a default set by the grade
//! ([`SampleRules`]):
//! - [`SampleKind::Synthetic`] holds no real record. Every row is drawn from differentially
//!   private one- and two-way marginals of the real data ([`synthetic`]); its (ε, δ) is spent
//!   once per dataset version and recorded. Identifiers are fresh random tokens; subject
//!   tokens name real subjects only so that samples of one subject kind join, and the rows
//!   drawn for a subject are not its rows.
//! - [`SampleKind::Deidentified`] keeps real rows of a sampled share of subjects, for grades
//!   that allow it ([`deidentify`]): k-anonymous over the quasi-identifiers (everything an
//!   outsider may know: quasi and public columns), identifiers and high-cardinality text
//!   replaced by tokens, sensitive numbers perturbed by keyed continuous noise that depends on
//!   the subject and the row's content (never its position), sensitive categories swapped
//!   between rows, and the rows shuffled.
//!
//! Every stored token is keyed by the domain's sample key; the runtime re-keys token columns
//! per grant when a job reads the sample ([`TOKEN_METADATA_KEY`]), so the samples two grants see
//! cannot be linked, and a developer's imports meet them only through per-grant tokens.
//!
//! Each derivation is measured by attack before it is offered ([`risk`]): the share of sample
//! rows that match exactly one real subject on the quasi-identifiers (the prosecutor risk of
//! GB/T 42460), the share of sensitive values an attacker who knows the method recovers within
//! 1%, and the information the sample lost. A sample above its grade's thresholds is not
//! offered.

mod deidentify;
mod risk;
mod synthetic;
mod values;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use ring::hmac;
use serde::{Deserialize, Serialize};

pub use self::risk::{InformationLoss, Risk};
use self::values::{Coded, NULL_CODE};
use crate::noise::RandomBits;
use crate::{ColumnTag, DatasetVersion, Grade, PolicyError};

/// Field metadata key marking a sample column whose values are tokens: the runtime re-keys
/// such columns per grant before a module reads them.
pub const TOKEN_METADATA_KEY: &str = "unseen.sample";
/// The value of [`TOKEN_METADATA_KEY`] on token columns.
pub const TOKEN_METADATA_VALUE: &str = "token";

/// δ of the synthetic samples' (ε, δ)-differential privacy, per dataset version.
pub const SYNTHETIC_DELTA: f64 = 1e-6;

/// What kind of sample a dataset version offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// Generated from differentially private marginals: no real record.
    Synthetic,
    /// Real rows of sampled subjects, k-anonymous, tokenised and perturbed.
    Deidentified,
}

impl SampleKind {
    /// Name as written in files, messages and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synthetic => "synthetic",
            Self::Deidentified => "deidentified",
        }
    }
}

impl std::str::FromStr for SampleKind {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "synthetic" => Ok(Self::Synthetic),
            "deidentified" => Ok(Self::Deidentified),
            other => Err(PolicyError::invalid("sample kind", format!("\"{other}\" is not synthetic or deidentified"))),
        }
    }
}

/// What a grade allows of samples, and the risk thresholds a sample must stay under to be
/// offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleRules {
    /// The kind a new dataset version of this grade gets.
    pub default_kind: SampleKind,
    /// Whether real rows may be offered at all (a de-identified sample).
    pub deidentified_allowed: bool,
    /// Highest share of a de-identified sample's rows that may match exactly one real
    /// subject on the quasi-identifiers. (A synthetic row is no one's record: its matches are
    /// reported, and its values are what the recovery threshold judges.)
    pub max_unique_share: f64,
    /// Highest share of sensitive values an attacker who knows the method may recover to
    /// within 1%.
    pub max_recovered_share: f64,
}

impl SampleRules {
    /// The rules of `grade`: every dataset starts with a synthetic sample (no real record);
    /// general data (一般数据) may offer k-anonymous real rows with perturbed values instead, when
    /// an operator has seen their measured risk and chooses to; important data (重要数据) and
    /// core data offer only synthetic samples.
    pub fn of(grade: Grade) -> Self {
        match grade {
            Grade::General => Self {
                default_kind: SampleKind::Synthetic,
                deidentified_allowed: true,
                max_unique_share: 0.0,
                max_recovered_share: 0.10,
            },
            Grade::Important => Self {
                default_kind: SampleKind::Synthetic,
                deidentified_allowed: false,
                max_unique_share: 0.0,
                max_recovered_share: 0.01,
            },
            Grade::Core => Self {
                default_kind: SampleKind::Synthetic,
                deidentified_allowed: false,
                max_unique_share: 0.0,
                max_recovered_share: 0.0,
            },
        }
    }
}

/// How a sample is derived; the domain's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleParams {
    /// Share of subjects (or, without a subject column, of rows) the sample covers, in percent.
    pub percent: u8,
    /// Every quasi-identifier combination of a de-identified sample covers at least this many
    /// distinct subjects (k-anonymity).
    pub k: u64,
    /// ε a synthetic sample spends on its marginals, once per dataset version.
    pub epsilon: f64,
}

impl Default for SampleParams {
    fn default() -> Self {
        Self { percent: 20, k: 10, epsilon: 2.0 }
    }
}

/// What was done to one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnTreatment {
    /// Column name.
    pub column: String,
    /// The provider's tag.
    pub tag: ColumnTag,
    /// What the sample holds instead of the real values, e.g. `k-anonymous: 10-year bands`.
    pub treatment: String,
}

/// The derivation's report: what the operator sees before a sample is offered, and what the
/// audit log keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReport {
    /// `name@vN`.
    pub dataset: String,
    /// The kind derived.
    pub kind: SampleKind,
    /// Rows of the real data.
    pub source_rows: u64,
    /// Rows of the sample.
    pub sample_rows: u64,
    /// Every column and what it holds.
    pub columns: Vec<ColumnTreatment>,
    /// The attacks' results.
    pub risk: Risk,
    /// What the sample lost.
    pub loss: InformationLoss,
    /// ε spent (synthetic samples; 0 for de-identified ones).
    pub epsilon: f64,
    /// δ of the (ε, δ) guarantee (synthetic samples; 0 for de-identified ones).
    pub delta: f64,
    /// The thresholds the sample was judged against.
    pub rules: SampleRules,
    /// Whether the sample may be offered to developers.
    pub offered: bool,
    /// Why it is not offered, each naming the threshold; empty when offered.
    pub refusals: Vec<String>,
}

impl SampleReport {
    /// A few lines an operator decides from.
    pub fn render(&self) -> String {
        let verdict = if self.offered { "offered" } else { "NOT offered" };
        let mut text = format!(
            "sample of {} ({}): {verdict} — {} of {} rows\n",
            self.dataset,
            self.kind.as_str(),
            self.sample_rows,
            self.source_rows
        );
        if self.epsilon > 0.0 {
            text.push_str(&format!("  privacy      ε = {} spent once, δ = {:e}\n", self.epsilon, self.delta));
        }
        let risk = &self.risk;
        text.push_str(&format!(
            "  unique       {:.2}% of rows match exactly one real subject on [{}] (threshold {:.2}%{})\n",
            100.0 * risk.unique_share,
            risk.quasi_identifiers.join(", "),
            100.0 * self.rules.max_unique_share,
            if self.kind == SampleKind::Synthetic { ", not applied to synthetic rows" } else { "" }
        ));
        text.push_str(&format!(
            "  recovered    {:.2}% of {} sensitive values within 1% by the best known-method attack{} (threshold {:.2}%)\n",
            100.0 * risk.recovered_share,
            risk.sensitive_values,
            if risk.attack.is_empty() { String::new() } else { format!(" ({})", risk.attack) },
            100.0 * self.rules.max_recovered_share
        ));
        let loss = &self.loss;
        text.push_str(&format!(
            "  loss         {:.1}% rows dropped, {:.1}% quasi-identifier cells suppressed, marginal distance {:.3}{}\n",
            100.0 * loss.rows_dropped_share,
            100.0 * loss.suppressed_cell_share,
            loss.marginal_distance,
            loss.median_relative_error
                .map(|error| format!(", sensitive values off by {:.1}% (median)", 100.0 * error))
                .unwrap_or_default()
        ));
        for column in &self.columns {
            text.push_str(&format!("  {:<20} {:<10} {}\n", column.column, column.tag.as_str(), column.treatment));
        }
        for refusal in &self.refusals {
            text.push_str(&format!("  refused: {refusal}\n"));
        }
        text
    }
}

/// A derived sample and its report.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The sample, with the dataset's schema; token columns carry [`TOKEN_METADATA_KEY`].
    pub table: RecordBatch,
    /// What was done and measured.
    pub report: SampleReport,
}

/// Derives the `kind` sample of `dataset` from its rows `table`.
///
/// `key` is the domain's sample key (tokens, noise and order are keyed by it, so a subject
/// gets the same token, noise and place in every version and every dataset); `random` draws
/// the synthetic sample's noise and rows. A kind the grade does not allow is refused.
pub fn derive(
    kind: SampleKind,
    dataset: &DatasetVersion,
    table: &RecordBatch,
    key: &[u8; 32],
    params: &SampleParams,
    random: &mut dyn RandomBits,
) -> Result<Derived, PolicyError> {
    let rules = SampleRules::of(dataset.grade);
    if kind == SampleKind::Deidentified && !rules.deidentified_allowed {
        return Err(PolicyError::Denied(format!(
            "rule sample_kind: dataset {} is graded {:?}; only synthetic samples may be offered, never real rows",
            dataset.id(),
            dataset.grade
        )));
    }
    if kind == SampleKind::Deidentified && dataset.subject_column().is_none() {
        return Err(PolicyError::Denied(format!(
            "rule sample_kind: dataset {} has no subject column, so no privacy unit to make k-anonymous; only synthetic samples may be offered",
            dataset.id()
        )));
    }
    if params.percent == 0 || params.percent > 100 || params.k == 0 {
        return Err(PolicyError::invalid("sample parameters", "percent must be 1–100 and k at least 1"));
    }
    let keys = SampleKeys::new(key);
    let source = Analysed::new(dataset, table, &keys)?;
    let derivation = match kind {
        SampleKind::Synthetic => synthetic::derive(&source, &keys, params, random)?,
        SampleKind::Deidentified => deidentify::derive(&source, &keys, params, rules.max_recovered_share)?,
    };
    let risk = risk::measure(&source, &derivation.published);
    let loss = risk::information_loss(&source, &derivation);
    let mut refusals = Vec::new();
    if kind == SampleKind::Deidentified && risk.unique_share > rules.max_unique_share {
        refusals.push(format!(
            "rule sample_risk: {:.2}% of rows match exactly one real subject > {:.2}% allowed for grade {:?}",
            100.0 * risk.unique_share,
            100.0 * rules.max_unique_share,
            dataset.grade
        ));
    }
    if risk.recovered_share > rules.max_recovered_share {
        refusals.push(format!(
            "rule sample_risk: {:.2}% of sensitive values recovered within 1% > {:.2}% allowed for grade {:?}",
            100.0 * risk.recovered_share,
            100.0 * rules.max_recovered_share,
            dataset.grade
        ));
    }
    let schema = Schema::new(
        source
            .columns
            .iter()
            .map(|column| {
                // Token columns are text whatever the column's type; the rest keep theirs.
                let data_type = derivation.columns[column.index].data_type().clone();
                let field = Field::new(column.name.as_str(), data_type, true);
                if derivation.tokens.contains(&column.index) {
                    field.with_metadata(
                        [(TOKEN_METADATA_KEY.to_string(), TOKEN_METADATA_VALUE.to_string())].into_iter().collect(),
                    )
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
    );
    let sample = RecordBatch::try_new(Arc::new(schema), derivation.columns.clone())
        .map_err(|error| PolicyError::invalid("sample", error.to_string()))?;
    let (epsilon, delta) = match kind {
        SampleKind::Synthetic => (params.epsilon, SYNTHETIC_DELTA),
        SampleKind::Deidentified => (0.0, 0.0),
    };
    let report = SampleReport {
        dataset: dataset.id(),
        kind,
        source_rows: table.num_rows() as u64,
        sample_rows: sample.num_rows() as u64,
        columns: source
            .columns
            .iter()
            .zip(&derivation.treatments)
            .map(|(column, treatment)| ColumnTreatment {
                column: column.name.clone(),
                tag: column.tag,
                treatment: treatment.clone(),
            })
            .collect(),
        risk,
        loss,
        epsilon,
        delta,
        rules,
        offered: refusals.is_empty(),
        refusals,
    };
    Ok(Derived { table: sample, report })
}

/// The keys one grant's sample-mode jobs use, derived from the grant's pseudonym key: token
/// columns are re-keyed with `tokens`, and a developer's imports are mapped onto the sample's
/// subjects with `imports`. Neither is the domain's key, so nothing a developer holds under one
/// grant links to another grant's sample or to the real keys.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantSampleKeys {
    /// Re-keys stored tokens for this grant.
    pub tokens: [u8; 32],
    /// Maps imported keys onto sample subjects for this grant.
    pub imports: [u8; 32],
}

impl std::fmt::Debug for GrantSampleKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantSampleKeys").finish_non_exhaustive()
    }
}

impl GrantSampleKeys {
    /// The keys of the grant whose pseudonym key is `grant_key`.
    pub fn of(grant_key: &[u8; 32]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, grant_key);
        let derive = |label: &[u8]| {
            let mut key = [0u8; 32];
            key.copy_from_slice(hmac::sign(&root, label).as_ref());
            key
        };
        Self { tokens: derive(b"unseen sample tokens per grant v1"), imports: derive(b"unseen import sample v1") }
    }
}

/// The sample of a developer's imported table for one grant's sample-mode jobs. The
/// developer's own values stay, but its keys never meet the sample by value: each subject key
/// is mapped by a grant-keyed hash onto one of `pool` (the stored subject tokens of the grant's
/// samples of the same kind), so joins return rows, of arbitrary subjects; identifier values
/// become grant-keyed tokens that match nothing. Both are marked as tokens, so the runtime
/// re-keys them with the sample's.
pub fn import_sample(
    dataset: &DatasetVersion,
    table: &RecordBatch,
    pool: &[String],
    keys: &GrantSampleKeys,
) -> Result<RecordBatch, PolicyError> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &keys.imports);
    let schema = table.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let marked = |name: &str| {
        Field::new(name, DataType::Utf8, true)
            .with_metadata([(TOKEN_METADATA_KEY.to_string(), TOKEN_METADATA_VALUE.to_string())].into_iter().collect())
    };
    for (index, field) in schema.fields().iter().enumerate() {
        let tag = dataset.tag_of(field.name()).unwrap_or(ColumnTag::Public);
        let column = table.column(index);
        match tag {
            ColumnTag::Subject | ColumnTag::Identifier
                if values::is_textual(field.data_type()) || tag == ColumnTag::Subject =>
            {
                let coded = values::code_text(column, field.name())?;
                let is_subject = tag == ColumnTag::Subject;
                let label: &[u8] = if is_subject { b"subject\0" } else { b"identifier\0" };
                let mapped: Vec<String> = coded
                    .values
                    .iter()
                    .map(|value| {
                        let mut context = hmac::Context::with_key(&key);
                        context.update(label);
                        context.update(value.as_bytes());
                        let tag = context.sign();
                        let mut bytes = [0u8; 32];
                        bytes.copy_from_slice(tag.as_ref());
                        let mut word = [0u8; 8];
                        word.copy_from_slice(&bytes[..8]);
                        match (is_subject, pool.is_empty()) {
                            (true, false) => pool[(u64::from_le_bytes(word) % pool.len() as u64) as usize].clone(),
                            _ => token_of(&bytes),
                        }
                    })
                    .collect();
                let values = (0..column.len()).map(|row| {
                    let code = coded.codes[row];
                    (code != NULL_CODE).then(|| mapped[code as usize].as_str())
                });
                columns.push(values::text_column(values, &DataType::Utf8, field.name())?);
                fields.push(marked(field.name()));
            }
            ColumnTag::Identifier => {
                columns.push(values::null_column(field.data_type(), column.len()));
                fields.push(Field::new(field.name(), field.data_type().clone(), true));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|error| PolicyError::invalid("imported table", error.to_string()))
}

/// The keys a derivation uses, each derived from the domain's sample key under its own label.
pub(crate) struct SampleKeys {
    token: hmac::Key,
    noise: hmac::Key,
}

impl SampleKeys {
    fn new(key: &[u8; 32]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let derive = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Self { token: derive(b"unseen sample tokens v2"), noise: derive(b"unseen sample noise v2") }
    }

    /// The tag of a value: its token and its sampling bucket come from it.
    fn tag(&self, value: &str) -> [u8; 32] {
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&self.token, value.as_bytes()).as_ref());
        tag
    }

    /// A keyed 256-bit draw for `parts`, from which a row's noise and order come.
    pub(crate) fn noise(&self, parts: &[&[u8]]) -> [u64; 4] {
        let mut context = hmac::Context::with_key(&self.noise);
        for part in parts {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let tag = context.sign();
        let bytes = tag.as_ref();
        let word = |index: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
            u64::from_le_bytes(word)
        };
        [word(0), word(1), word(2), word(3)]
    }
}

/// The stored token of a value (subjects, identifiers, high-cardinality text): the same in
/// every dataset and version of the domain, re-keyed per grant when a job reads it.
fn token_of(tag: &[u8; 32]) -> String {
    format!("t_{}", hex::encode(&tag[..12]))
}

/// The token a value is stored as in every sample of the domain whose sample key is `key`
/// (before the runtime re-keys it per grant). Without the key it cannot be computed; tests and
/// the domain's own measurements use it to tell which real subject a sample row names.
pub fn stored_token(key: &[u8; 32], value: &str) -> String {
    token_of(&SampleKeys::new(key).tag(value))
}

/// Whether a tag falls in the sampled share (`percent` of 10,000 buckets × 100).
fn sampled(tag: &[u8; 32], percent: u8) -> bool {
    let mut word = [0u8; 8];
    word.copy_from_slice(&tag[24..32]);
    u64::from_le_bytes(word) % 10_000 < u64::from(percent) * 100
}

/// How a derivation treats a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Model {
    /// The subject column: tokens.
    Subject,
    /// Identifiers and high-cardinality text: tokens.
    Token,
    /// Low-cardinality text or booleans.
    Categorical,
    /// Numbers, dates and times.
    Numeric,
    /// A type the derivations do not model: all null.
    Nulled,
}

/// Most distinct values a text column may have to be treated as categories.
const MAX_CATEGORIES: usize = 1_000;

/// One column of the real data, prepared once for every derivation and attack.
pub(crate) struct SourceColumn {
    pub index: usize,
    pub name: String,
    pub tag: ColumnTag,
    pub data_type: DataType,
    pub model: Model,
    /// Text columns (subject, token, categorical), dictionary-coded.
    pub text: Option<Coded>,
    /// Numeric columns.
    pub numbers: Option<Vec<Option<f64>>>,
}

impl SourceColumn {
    /// Whether an outsider may know the column's values: quasi-identifiers and public
    /// columns, as categories or numbers.
    pub fn is_quasi_identifier(&self) -> bool {
        matches!(self.tag, ColumnTag::Quasi | ColumnTag::Public)
            && matches!(self.model, Model::Categorical | Model::Numeric)
    }
}

/// The real data, analysed: columns modelled and coded, subjects tokenised.
pub(crate) struct Analysed {
    /// What the subject column identifies.
    pub subject_kind: Option<crate::SubjectKind>,
    pub rows: usize,
    pub columns: Vec<SourceColumn>,
    /// Index into `columns` of the subject column.
    pub subject: Option<usize>,
    /// Per distinct subject (the subject column's codes), its keyed tag.
    pub subject_tags: Vec<[u8; 32]>,
}

impl Analysed {
    fn new(dataset: &DatasetVersion, table: &RecordBatch, keys: &SampleKeys) -> Result<Self, PolicyError> {
        let schema = table.schema();
        let rows = table.num_rows();
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut subject = None;
        for (index, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            let tag = dataset.tag_of(name).unwrap_or(ColumnTag::Public);
            let data_type = field.data_type().clone();
            let array: &ArrayRef = table.column(index);
            let (model, text, numbers) = if tag == ColumnTag::Subject {
                subject = Some(index);
                (Model::Subject, Some(values::code_text(array, name)?), None)
            } else if values::is_textual(&data_type)
                && !(tag == ColumnTag::Identifier && data_type == DataType::Boolean)
            {
                let coded = values::code_text(array, name)?;
                (Model::Categorical, Some(coded), None)
            } else if values::is_numeric(&data_type) && tag != ColumnTag::Identifier {
                (Model::Numeric, None, Some(values::numbers(array, name)?))
            } else {
                (Model::Nulled, None, None)
            };
            columns.push(SourceColumn { index, name: name.clone(), tag, data_type, model, text, numbers });
        }
        let subject_tags: Vec<[u8; 32]> = match subject {
            Some(index) => {
                let coded = columns[index].text.as_ref().ok_or_else(|| PolicyError::invalid("subject", "not text"))?;
                coded.values.iter().map(|value| keys.tag(value)).collect()
            }
            None => Vec::new(),
        };
        let subjects = if subject.is_some() { subject_tags.len() } else { rows };
        for column in &mut columns {
            if column.model != Model::Categorical {
                continue;
            }
            let distinct = column.text.as_ref().map_or(0, |coded| coded.values.len());
            let few = distinct <= MAX_CATEGORIES && distinct.saturating_mul(2) <= subjects.max(4);
            if column.tag == ColumnTag::Identifier || !few {
                column.model = Model::Token;
            }
        }
        Ok(Self { subject_kind: dataset.subject_kind, rows, columns, subject, subject_tags })
    }

    /// The subject code of `row` (its row index when the dataset has no subject column).
    pub fn subject_of(&self, row: usize) -> u32 {
        match self.subject {
            Some(index) => self.columns[index].text.as_ref().map_or(NULL_CODE, |coded| coded.codes[row]),
            None => row as u32,
        }
    }

    /// Distinct subjects (rows when there is no subject column).
    pub fn subject_count(&self) -> usize {
        if self.subject.is_some() { self.subject_tags.len() } else { self.rows }
    }
}

/// What a derivation produced, and what the attacks need to know about it.
pub(crate) struct Derivation {
    /// The sample's columns, in the dataset's order and types.
    pub columns: Vec<ArrayRef>,
    /// Indexes of token columns.
    pub tokens: Vec<usize>,
    /// Per column, what was done to it.
    pub treatments: Vec<String>,
    /// The sample as an attacker reads it.
    pub published: risk::Published,
}

/// Counts values per key, for marginal distances and category decisions.
pub(crate) fn counts<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, u64> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests;
