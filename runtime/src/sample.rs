//! Development samples on disk (经抽样、脱敏后的样本): the I/O around
//! [`unseen_policy::sample`], which decides what a sample holds and measures it by attack.
//!
//! A sample is written once per dataset version and kind, as Parquet whose token columns are
//! marked in the schema ([`unseen_policy::sample::TOKEN_METADATA_KEY`]); [`token_columns`]
//! reads the marks back so the governed session re-keys those columns per grant.

use std::collections::BTreeSet;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use unseen_policy::DatasetVersion;
use unseen_policy::noise::RandomBits;
use unseen_policy::sample::{
    GrantSampleKeys, SampleKind, SampleParams, SampleReport, TOKEN_METADATA_KEY, TOKEN_METADATA_VALUE,
};

use crate::RuntimeError;

fn internal(context: &str) -> impl Fn(String) -> RuntimeError + '_ {
    move |error| RuntimeError::Internal(format!("{context}: {error}"))
}

/// Reads a whole Parquet file into one batch.
async fn read_table(path: &Path, what: &str) -> Result<RecordBatch, RuntimeError> {
    let context = SessionContext::new();
    let location = path.to_str().ok_or_else(|| RuntimeError::Internal(format!("non-UTF-8 path {}", path.display())))?;
    let frame = context
        .read_parquet(location, ParquetReadOptions::default())
        .await
        .map_err(|error| RuntimeError::Internal(format!("reading {what}: {error}")))?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(|error| RuntimeError::Internal(format!("reading {what}: {error}")))?;
    concat_batches(&schema, &batches).map_err(|error| RuntimeError::Internal(format!("reading {what}: {error}")))
}

/// Derives the `kind` sample of `dataset` from `source` into `target` (Parquet, written
/// atomically) and returns its report. `key` is the domain's sample key; `random` draws a
/// synthetic sample's noise and rows.
pub async fn derive_sample(
    kind: SampleKind,
    dataset: &DatasetVersion,
    source: &Path,
    target: &Path,
    key: &[u8; 32],
    params: &SampleParams,
    random: &mut (dyn RandomBits + Send),
) -> Result<SampleReport, RuntimeError> {
    let table = read_table(source, &dataset.id()).await?;
    let derived =
        unseen_policy::sample::derive(kind, dataset, &table, key, params, random).map_err(|error| match error {
            unseen_policy::PolicyError::Denied(message) => {
                RuntimeError::Refused(unseen_policy::Refusal { rule: "sample_kind".into(), message })
            }
            other => RuntimeError::Internal(format!("deriving the sample of {}: {other}", dataset.id())),
        })?;
    write_parquet(&derived.table, target)?;
    Ok(derived.report)
}

/// The columns of a sample file whose values are tokens, to be re-keyed per grant.
pub fn token_columns(path: &Path) -> Result<BTreeSet<String>, RuntimeError> {
    let file = std::fs::File::open(path)
        .map_err(|error| RuntimeError::Internal(format!("opening sample {}: {error}", path.display())))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| RuntimeError::Internal(format!("reading sample {}: {error}", path.display())))?;
    Ok(builder
        .schema()
        .fields()
        .iter()
        .filter(|field| field.metadata().get(TOKEN_METADATA_KEY).map(String::as_str) == Some(TOKEN_METADATA_VALUE))
        .map(|field| field.name().clone())
        .collect())
}

/// The distinct stored subject tokens of sample files, each given with its subject column:
/// what a grant's imports of that subject kind are mapped onto in sample mode.
pub async fn subject_pool(samples: &[(&str, &Path)]) -> Result<Vec<String>, RuntimeError> {
    let mut pool = BTreeSet::new();
    for (column, path) in samples {
        let table = read_table(path, &format!("sample {}", path.display())).await?;
        let Some(values) = table.column_by_name(column) else { continue };
        let text =
            cast(values, &DataType::Utf8).map_err(|error| internal("reading subject tokens")(error.to_string()))?;
        let strings = text.as_string::<i32>();
        pool.extend((0..strings.len()).filter(|&row| strings.is_valid(row)).map(|row| strings.value(row).to_string()));
    }
    Ok(pool.into_iter().collect())
}

/// Writes the sample-mode copy of a developer's imported table for one grant (see
/// [`unseen_policy::sample::import_sample`]).
pub async fn derive_import_sample(
    dataset: &DatasetVersion,
    source: &Path,
    target: &Path,
    pool: &[String],
    keys: &GrantSampleKeys,
) -> Result<u64, RuntimeError> {
    let table = read_table(source, &dataset.id()).await?;
    let sample = unseen_policy::sample::import_sample(dataset, &table, pool, keys)
        .map_err(|error| RuntimeError::Internal(format!("deriving the sample of {}: {error}", dataset.id())))?;
    write_parquet(&sample, target)?;
    Ok(sample.num_rows() as u64)
}

fn write_parquet(batch: &RecordBatch, target: &Path) -> Result<(), RuntimeError> {
    let failed = internal("writing a sample");
    let temporary = target.with_extension("parquet.partial");
    let file = std::fs::File::create(&temporary)
        .map_err(|error| RuntimeError::Internal(format!("creating {}: {error}", temporary.display())))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).map_err(|error| failed(error.to_string()))?;
    writer.write(batch).map_err(|error| failed(error.to_string()))?;
    let file = writer.into_inner().map_err(|error| failed(error.to_string()))?;
    file.sync_all().map_err(|error| failed(error.to_string()))?;
    std::fs::rename(&temporary, target)
        .map_err(|error| RuntimeError::Internal(format!("renaming to {}: {error}", target.display())))
}
