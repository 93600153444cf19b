//! Sampled, desensitised copies of datasets (经抽样、脱敏后的公共数据样本) for sample mode.
//!
//! What happens to a column is decided by its tag:
//! - `subject`: replaced by a keyed token (HMAC-SHA256 under the domain's sample key), the
//!   same in every dataset, so samples still join; rows are kept when the token falls in
//!   the sampled fraction, so the sample is consistent across datasets of one subject kind;
//! - `identifier`: masked, keeping only a short non-identifying prefix;
//! - `quasi`: integers generalised to 5-unit bands (birth years to 5-year bands);
//! - `sensitive`: numbers perturbed by up to ±10%, deterministically per row;
//! - `public`: kept.
//!
//! No value of a subject or identifier column of the real data appears in its sample.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ring::hmac;
use unseen_policy::{ColumnTag, DatasetVersion};

use crate::RuntimeError;

/// What derivation produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SampleStats {
    /// Rows in the real dataset.
    pub source_rows: u64,
    /// Rows in the sample.
    pub sample_rows: u64,
}

/// Derives the desensitised sample of `dataset` from `source` into `target` (Parquet),
/// keeping about `percent`% of subjects.
pub async fn derive_sample(
    dataset: &DatasetVersion,
    source: &Path,
    target: &Path,
    key: &[u8; 32],
    percent: u8,
) -> Result<SampleStats, RuntimeError> {
    let context = SessionContext::new();
    let path = source.to_str().ok_or_else(|| RuntimeError::Internal(format!("non-UTF-8 path {}", source.display())))?;
    let frame = context
        .read_parquet(path, ParquetReadOptions::default())
        .await
        .map_err(|error| RuntimeError::Internal(format!("reading {}: {error}", dataset.id())))?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches =
        frame.collect().await.map_err(|error| RuntimeError::Internal(format!("reading {}: {error}", dataset.id())))?;
    let table = concat_batches(&schema, &batches).map_err(|error| RuntimeError::Internal(error.to_string()))?;
    let sample = desensitise(dataset, &table, key, percent)?;
    write_parquet(&sample, target)?;
    Ok(SampleStats { source_rows: table.num_rows() as u64, sample_rows: sample.num_rows() as u64 })
}

/// The pure part of [`derive_sample`]: one table in, its sample out.
pub fn desensitise(
    dataset: &DatasetVersion,
    table: &RecordBatch,
    key: &[u8; 32],
    percent: u8,
) -> Result<RecordBatch, RuntimeError> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let rows = table.num_rows();
    let schema = table.schema();
    let subject_index = dataset.subject_column().and_then(|name| schema.index_of(name).ok());
    let keep: BooleanArray = match subject_index {
        Some(index) => {
            let values = as_strings(table.column(index))?;
            (0..rows)
                .map(|row| Some(values.is_valid(row) && token_bucket(&key, values.value(row)) < u64::from(percent)))
                .collect()
        }
        None => (0..rows).map(|row| Some(row_bucket(row) < u64::from(percent))).collect(),
    };
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let column = table.column(index);
        let tag = dataset.tag_of(field.name()).unwrap_or(ColumnTag::Public);
        let (data_type, array): (DataType, ArrayRef) = match tag {
            ColumnTag::Subject => {
                let values = as_strings(column)?;
                let tokens: StringArray =
                    (0..rows).map(|row| values.is_valid(row).then(|| token(&key, values.value(row)))).collect();
                (DataType::Utf8, Arc::new(tokens))
            }
            ColumnTag::Identifier => {
                let values = as_strings(column)?;
                let masked: StringArray =
                    (0..rows).map(|row| values.is_valid(row).then(|| mask(values.value(row)))).collect();
                (DataType::Utf8, Arc::new(masked))
            }
            ColumnTag::Quasi if field.data_type() == &DataType::Int32 => {
                let values = column.as_primitive::<Int32Type>();
                (
                    DataType::Int32,
                    Arc::new(values.iter().map(|value| value.map(|v| v - v.rem_euclid(5))).collect::<Int32Array>()),
                )
            }
            ColumnTag::Quasi if field.data_type() == &DataType::Int64 => {
                let values = column.as_primitive::<Int64Type>();
                (
                    DataType::Int64,
                    Arc::new(values.iter().map(|value| value.map(|v| v - v.rem_euclid(5))).collect::<Int64Array>()),
                )
            }
            ColumnTag::Sensitive if field.data_type().is_numeric() => {
                let values =
                    cast(column, &DataType::Float64).map_err(|error| RuntimeError::Internal(error.to_string()))?;
                let values = values.as_primitive::<Float64Type>();
                let perturbed: Float64Array = values
                    .iter()
                    .enumerate()
                    .map(|(row, value)| {
                        value.map(|v| {
                            v * (0.9 + 0.2 * (row_bucket(row.wrapping_mul(31).wrapping_add(7)) as f64 / 100.0))
                        })
                    })
                    .collect();
                (DataType::Float64, Arc::new(perturbed))
            }
            _ => (field.data_type().clone(), column.clone()),
        };
        fields.push(Field::new(field.name(), data_type, true));
        columns.push(array);
    }
    let desensitised = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|error| RuntimeError::Internal(error.to_string()))?;
    filter_record_batch(&desensitised, &keep).map_err(|error| RuntimeError::Internal(error.to_string()))
}

fn as_strings(column: &ArrayRef) -> Result<StringArray, RuntimeError> {
    let utf8 = cast(column, &DataType::Utf8).map_err(|error| RuntimeError::Internal(error.to_string()))?;
    Ok(utf8.as_string::<i32>().clone())
}

fn token(key: &hmac::Key, value: &str) -> String {
    let tag = hmac::sign(key, value.as_bytes());
    format!("s_{}", hex::encode(&tag.as_ref()[..10]))
}

fn token_bucket(key: &hmac::Key, value: &str) -> u64 {
    let tag = hmac::sign(key, value.as_bytes());
    let bytes = tag.as_ref();
    u64::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27], bytes[28], bytes[29], bytes[30], bytes[31]]) % 100
}

fn row_bucket(row: usize) -> u64 {
    let mut mixed = (row as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (mixed ^ (mixed >> 31)) % 100
}

/// Keeps at most the first four characters (a region prefix, a surname) and hides the rest.
fn mask(value: &str) -> String {
    let visible = if value.chars().count() > 8 { 4 } else { 1 };
    value.chars().enumerate().map(|(index, c)| if index < visible { c } else { '*' }).collect()
}

fn write_parquet(batch: &RecordBatch, target: &Path) -> Result<(), RuntimeError> {
    let temporary = target.with_extension("parquet.partial");
    let file = std::fs::File::create(&temporary)
        .map_err(|error| RuntimeError::Internal(format!("creating {}: {error}", temporary.display())))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), None).map_err(|error| RuntimeError::Internal(error.to_string()))?;
    writer.write(batch).map_err(|error| RuntimeError::Internal(error.to_string()))?;
    let file = writer.into_inner().map_err(|error| RuntimeError::Internal(error.to_string()))?;
    file.sync_all().map_err(|error| RuntimeError::Internal(error.to_string()))?;
    std::fs::rename(&temporary, target)
        .map_err(|error| RuntimeError::Internal(format!("renaming to {}: {error}", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use unseen_policy::{ColumnSpec, Grade, SubjectKind};

    #[test]
    fn no_subject_or_identifier_value_survives_and_sampling_is_consistent() {
        let dataset = DatasetVersion {
            name: "population".into(),
            version: 1,
            provider: "p".into(),
            grade: Grade::General,
            content_hash: "0".into(),
            subject_kind: Some(SubjectKind::Person),
            columns: vec![
                ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
                ColumnSpec { name: "id_card".into(), tag: ColumnTag::Identifier },
                ColumnSpec { name: "birth_year".into(), tag: ColumnTag::Quasi },
            ],
        };
        let ids: Vec<String> = (0..1000).map(|i| format!("P{i:08}")).collect();
        let cards: Vec<String> = (0..1000).map(|i| format!("3305021980{i:08}")).collect();
        let years: Vec<i32> = (0..1000).map(|i| 1950 + i % 50).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("person_id", DataType::Utf8, false),
            Field::new("id_card", DataType::Utf8, false),
            Field::new("birth_year", DataType::Int32, false),
        ]));
        let table = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.clone())),
                Arc::new(StringArray::from(cards.clone())),
                Arc::new(Int32Array::from(years)),
            ],
        )
        .unwrap();
        let sample = desensitise(&dataset, &table, &[9; 32], 10).unwrap();
        assert!((40..200).contains(&sample.num_rows()), "about 10% kept, got {}", sample.num_rows());
        let tokens = sample.column(0).as_string::<i32>();
        let masked = sample.column(1).as_string::<i32>();
        for row in 0..sample.num_rows() {
            assert!(!ids.iter().any(|id| id == tokens.value(row)));
            assert!(!cards.iter().any(|card| card == masked.value(row)));
            assert_eq!(sample.column(2).as_primitive::<Int32Type>().value(row) % 5, 0);
        }
        assert_eq!(desensitise(&dataset, &table, &[9; 32], 10).unwrap(), sample, "deterministic");
    }
}
