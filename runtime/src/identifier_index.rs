//! The exact values of identifier columns, read from the stored data so that the egress
//! reviewer can recognise them when a module copies one into an output.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use unseen_policy::ColumnTag;
use unseen_policy::identifiers::IdentifierSet;

use crate::{DomainTable, RuntimeError};

/// The values of every `identifier` and `subject` column of `tables`' production data.
pub async fn identifier_set(tables: &[DomainTable]) -> Result<IdentifierSet, RuntimeError> {
    let context = SessionContext::new();
    let mut values: Vec<String> = Vec::new();
    for table in tables {
        let columns: Vec<&str> = table
            .dataset
            .columns
            .iter()
            .filter(|column| matches!(column.tag, ColumnTag::Identifier | ColumnTag::Subject))
            .map(|column| column.name.as_str())
            .collect();
        if columns.is_empty() {
            continue;
        }
        let failed = |error: datafusion::error::DataFusionError| {
            RuntimeError::Internal(format!("reading identifiers of {}: {error}", table.dataset.id()))
        };
        let path = table.production_path.to_string_lossy().to_string();
        let frame = context.read_parquet(path, ParquetReadOptions::default()).await.map_err(failed)?;
        let batches = frame.select_columns(&columns).map_err(failed)?.collect().await.map_err(failed)?;
        for batch in batches {
            for column in batch.columns() {
                let strings =
                    cast(column, &DataType::Utf8).map_err(|error| RuntimeError::Internal(error.to_string()))?;
                let strings = strings.as_string::<i32>();
                values.extend(
                    (0..strings.len()).filter(|&row| strings.is_valid(row)).map(|row| strings.value(row).to_string()),
                );
            }
        }
    }
    Ok(IdentifierSet::from_values(values))
}
