//! Datasets (数据集): a provider registers a version with its tags and grade; the domain checks
//! the file against the tags, keeps it, derives its development sample and logs it.

use datafusion::arrow::array::RecordBatch;
use unseen_policy::{ColumnSpec, DatasetVersion, sha256_hex};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::NewDataset;

use super::files::{read_parquet, write_atomically};
use super::samples::SampleView;
use super::{AuditEvent, Domain, StoredDataset, decode, found};

/// A dataset registration as the provider states it.
#[derive(Debug, Clone)]
pub struct DatasetRegistration {
    /// Dataset name.
    pub name: String,
    /// Grade.
    pub grade: unseen_policy::Grade,
    /// Subject kind, if a column is tagged subject.
    pub subject_kind: Option<unseen_policy::SubjectKind>,
    /// Columns and tags.
    pub columns: Vec<ColumnSpec>,
}

/// Every tagged column is in `table` and every column of `table` is tagged.
pub(super) fn check_tagged_columns(dataset: &DatasetVersion, table: &RecordBatch) -> Result<(), GatewayError> {
    for column in &dataset.columns {
        if table.schema().index_of(&column.name).is_err() {
            return Err(GatewayError::InvalidInput(format!(
                "column \"{}\" is tagged but not in the Parquet file",
                column.name
            )));
        }
    }
    for field in table.schema().fields() {
        if dataset.tag_of(field.name()).is_none() {
            return Err(GatewayError::InvalidInput(format!(
                "column \"{}\" of the Parquet file has no tag; every column needs one",
                field.name()
            )));
        }
    }
    Ok(())
}

impl Domain {
    /// Registers a new dataset version from Parquet bytes and derives its sample: the grade's
    /// default kind, measured by attack and offered only under the grade's thresholds.
    pub async fn register_dataset(
        &self,
        who: &Principal,
        registration: DatasetRegistration,
        parquet: Vec<u8>,
    ) -> Result<(DatasetVersion, u64, SampleView), GatewayError> {
        Self::require(who, Role::Provider)?;
        let content_hash = sha256_hex(&parquet);
        let version = self.store.latest_dataset_version(&registration.name).await?.unwrap_or(0) + 1;
        let dataset = DatasetVersion {
            name: registration.name,
            version,
            provider: who.organisation.clone(),
            grade: registration.grade,
            content_hash: content_hash.clone(),
            subject_kind: registration.subject_kind,
            columns: registration.columns,
        };
        dataset.validate()?;
        check_tagged_columns(&dataset, &read_parquet(parquet.clone())?)?;
        let id = dataset.id();
        let path = self.dir.join("datasets").join(format!("{content_hash}.parquet"));
        write_atomically(&path, &parquet)?;
        let kind = unseen_policy::sample::SampleRules::of(dataset.grade).default_kind;
        let (sample_path, report, sample_hash) = self.derive_sample_file(&dataset, &path, kind).await?;
        let json =
            serde_json::to_string(&dataset).map_err(|error| GatewayError::internal("encoding a dataset", error))?;
        let mut transaction = self.store.begin().await?;
        transaction
            .insert_dataset(&NewDataset {
                id: &id,
                name: &dataset.name,
                version,
                json: &json,
                path: &self.stored_path(&path),
                sample_path: &self.stored_path(&sample_path),
                sample_kind: report.offered.then_some(kind),
            })
            .await?;
        let source_rows = report.source_rows;
        transaction.log(
            AuditEvent::new(who, "dataset.register", "dataset", &id)
                .object_hash(content_hash)
                .decision("registered")
                .reason(format!("{source_rows} rows"))
                .entry(),
        );
        self.record_sample(&mut transaction, who, &dataset, &sample_path, &report, &sample_hash).await?;
        self.commit(transaction).await?;
        let offered = report.offered;
        let view = SampleView { dataset: id, kind, offered, report, content_hash: sample_hash };
        Ok((dataset, source_rows, view))
    }

    pub(crate) async fn dataset(&self, id: &str) -> Result<StoredDataset, GatewayError> {
        let known = self.dataset_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
        if let Some(known) = known {
            return Ok(known);
        }
        let row = found(self.store.dataset(id).await?, format_args!("dataset version \"{id}\""))?;
        let stored = StoredDataset {
            dataset: decode(&row.json, "a dataset")?,
            path: self.domain_file(&row.path),
            sample_path: self.domain_file(&row.sample_path),
            sample_kind: row.sample_kind,
        };
        self.dataset_versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_string(), stored.clone());
        Ok(stored)
    }

    /// Drops a dataset version's cached row after its offered sample changed.
    pub(super) fn forget_dataset(&self, id: &str) {
        self.dataset_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}
