//! Verification (数据核验): the host answers a module's claims about subjects, field by field,
//! without the module seeing the data or the answers.
//!
//! A claim names a subject by the grant's verification key (an enterprise's credit code) and
//! states values for some of the declared fields. The host looks the keys up in the granted
//! table (behind the grant's row filter), compares each stated value with the stored one as
//! the stored column's type, and writes the output itself: `claim` (1, 2, … in the order
//! submitted), `found`, and one boolean per field, null where the claim stated nothing or the
//! key was not found. The claimed keys travel as grant-keyed tokens in the output's lineage,
//! for the reviewer's rate limits; the output goes to egress review like any other.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, lit};
use ring::hmac;
use unseen_policy::grant::{CLAIM_COLUMN, FOUND_COLUMN};
use unseen_policy::{VerificationLineage, VerificationSpec};

use crate::governed::GovernedSession;
use crate::pseudonym::Pseudonymiser;

/// The answers to one batch of claims and the host's record of what was claimed.
#[derive(Debug, Clone)]
pub struct Answers {
    /// `claim`, `found`, then one boolean per declared field.
    pub table: RecordBatch,
    /// The claimed keys as tokens, per row.
    pub lineage: VerificationLineage,
}

/// Why a batch of claims was not answered; the message is the module's to read and names no
/// stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsRefused(pub String);

impl GovernedSession {
    /// Answers `claims` under the verification output `spec`. The claims have a string column
    /// named as the key and, optionally, string columns named as declared fields.
    pub async fn verify(&self, spec: &VerificationSpec, claims: &RecordBatch) -> Result<Answers, ClaimsRefused> {
        let refused = |message: String| ClaimsRefused(message);
        let keys = claimed_strings(claims, &spec.key)?
            .ok_or_else(|| refused(format!("the claims have no \"{}\" column to name their subjects by", spec.key)))?;
        if let Some(row) = keys.iter().position(Option::is_none) {
            return Err(refused(format!("claim {} has no \"{}\"", row + 1, spec.key)));
        }
        for field in claims.schema().fields() {
            if field.name() != &spec.key && !spec.fields.contains(field.name()) {
                return Err(refused(format!(
                    "the claims have a column \"{}\" that is neither the key \"{}\" nor one of the declared fields [{}]",
                    field.name(),
                    spec.key,
                    spec.fields.join(", ")
                )));
            }
        }
        let keys: Vec<String> = keys.into_iter().flatten().collect();
        let stored = self.stored_rows(spec, &keys).await?;
        let found = index_by_key(&stored, spec)?;
        let positions: UInt32Array = keys.iter().map(|key| found.get(key.as_str()).copied()).collect();

        let mut fields =
            vec![Field::new(CLAIM_COLUMN, DataType::Int64, false), Field::new(FOUND_COLUMN, DataType::Boolean, false)];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(1..=claims.num_rows() as i64)),
            Arc::new(BooleanArray::from_iter(positions.iter().map(|position| Some(position.is_some())))),
        ];
        for (index, field) in spec.fields.iter().enumerate() {
            let answers = match claimed_strings(claims, field)? {
                None => BooleanArray::new_null(claims.num_rows()),
                Some(_) => compare(stored.column(index + 1), &positions, claims, field)?,
            };
            fields.push(Field::new(field, DataType::Boolean, true));
            columns.push(Arc::new(answers));
        }
        let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|error| refused(format!("building the answers: {error}")))?;
        let key = self.grant.pseudonym_key().map_err(|error| refused(error.to_string()))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
        let claim_keys = keys.iter().map(|value| Pseudonymiser::token(&key, value)).collect();
        Ok(Answers { table, lineage: VerificationLineage { dataset: spec.dataset.clone(), claim_keys } })
    }

    /// The granted rows whose key is one of `keys`: the key column, then the fields.
    async fn stored_rows(&self, spec: &VerificationSpec, keys: &[String]) -> Result<RecordBatch, ClaimsRefused> {
        let refused = |error: datafusion::error::DataFusionError| {
            ClaimsRefused(format!("looking the claims up in {}: {error}", spec.dataset))
        };
        let table = self
            .tables
            .iter()
            .find(|(_, dataset)| dataset.id() == spec.dataset)
            .map(|(name, _)| name.clone())
            .ok_or_else(|| ClaimsRefused(format!("grant {} does not cover {}", self.grant.id, spec.dataset)))?;
        let column = |name: &str| Expr::Column(Column::from_name(name));
        let wanted: Vec<Expr> = keys.iter().map(|key| lit(key.as_str())).collect();
        let selected: Vec<Expr> = std::iter::once(&spec.key).chain(&spec.fields).map(|name| column(name)).collect();
        let frame = self.context.table(table.as_str()).await.map_err(refused)?;
        let frame = frame.filter(column(&spec.key).in_list(wanted, false)).map_err(refused)?;
        let frame = frame.select(selected).map_err(refused)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(refused)?;
        concat_batches(&schema, &batches).map_err(|error| ClaimsRefused(format!("reading {}: {error}", spec.dataset)))
    }
}

/// The values of a claims column as text, or None when the claims have no such column.
fn claimed_strings(claims: &RecordBatch, name: &str) -> Result<Option<Vec<Option<String>>>, ClaimsRefused> {
    let Some(column) = claims.column_by_name(name) else { return Ok(None) };
    if !matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return Err(ClaimsRefused(format!(
            "claims column \"{name}\" is {}; claims are stated as text",
            column.data_type()
        )));
    }
    let text = cast(column, &DataType::Utf8).map_err(|error| ClaimsRefused(error.to_string()))?;
    let text = text.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
    Ok(text.map(|values| values.iter().map(|value| value.map(str::to_string)).collect()))
}

/// Key → row of `stored`; a key on two rows cannot be answered for.
fn index_by_key(stored: &RecordBatch, spec: &VerificationSpec) -> Result<HashMap<String, u32>, ClaimsRefused> {
    let keys = cast(stored.column(0), &DataType::Utf8).map_err(|error| ClaimsRefused(error.to_string()))?;
    let keys = keys.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
    let mut index = HashMap::new();
    for (row, key) in keys.into_iter().flatten().enumerate() {
        let Some(key) = key else { continue };
        if index.insert(key.to_string(), row as u32).is_some() {
            return Err(ClaimsRefused(format!(
                "{} has more than one row for a claimed {}; verification needs a key with one row per subject",
                spec.dataset, spec.key
            )));
        }
    }
    Ok(index)
}

/// Per claim: whether the stated value of `field` equals the stored one (compared as the
/// stored column's type); null where nothing was stated or the key was not found; false where
/// the statement is not a value of that type.
fn compare(
    stored: &ArrayRef,
    positions: &UInt32Array,
    claims: &RecordBatch,
    field: &str,
) -> Result<BooleanArray, ClaimsRefused> {
    let failed = |error: datafusion::arrow::error::ArrowError| ClaimsRefused(format!("comparing \"{field}\": {error}"));
    let stated = claims.column_by_name(field).ok_or_else(|| ClaimsRefused(format!("no claims column \"{field}\"")))?;
    let typed = cast_with_options(stated, stored.data_type(), &CastOptions { safe: true, ..Default::default() })
        .map_err(failed)?;
    let looked_up = take(stored, positions, None).map_err(failed)?;
    let equal = eq(&looked_up, &typed).map_err(failed)?;
    Ok((0..claims.num_rows())
        .map(|row| {
            if positions.is_null(row) || stated.is_null(row) {
                None
            } else if typed.is_null(row) || looked_up.is_null(row) {
                Some(false)
            } else {
                Some(equal.value(row))
            }
        })
        .collect())
}
