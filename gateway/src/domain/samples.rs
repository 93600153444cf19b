//! Development samples (样本) of dataset versions: the one path where rows reach a developer
//! without review.
//!
//! At registration the grade's default kind is derived and measured by attack
//! (`unseen_policy::sample`); it is offered to developers only when its risk is under the
//! grade's thresholds. An operator may derive the other kind (once per kind and version: a
//! synthetic sample spends its ε once) and choose which kind developers get. Every
//! derivation and every choice is an audit entry with the figures. A sample-mode job is
//! refused while a dataset it reads has no sample offered.

use std::path::{Path, PathBuf};

use unseen_policy::sample::{SampleKind, SampleParams, SampleReport, SampleRules};
use unseen_policy::{DatasetVersion, Grant, sha256_hex};
use unseen_runtime::DomainTable;

use super::{Domain, StoredDataset, SystemBits, audit_entry, now_ms};
use crate::error::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::Param;

/// A derived sample as the operator sees it.
#[derive(Debug, Clone)]
pub struct SampleView {
    /// `name@vN`.
    pub dataset: String,
    /// Which kind.
    pub kind: SampleKind,
    /// Whether developers' sample-mode jobs read this kind now.
    pub offered: bool,
    /// The derivation's report: treatments, risk, loss, ε.
    pub report: SampleReport,
    /// Hex SHA-256 of the sample file.
    pub content_hash: String,
}

/// One line for the audit log: what was derived and what the attacks found.
fn sample_detail(report: &SampleReport) -> String {
    let mut detail = format!(
        "{} sample, {} of {} rows; {:.2}% of rows single out a subject, {:.2}% of sensitive values recovered within 1% (thresholds {:.2}%, {:.2}%)",
        report.kind.as_str(),
        report.sample_rows,
        report.source_rows,
        100.0 * report.risk.unique_share,
        100.0 * report.risk.recovered_share,
        100.0 * report.rules.max_unique_share,
        100.0 * report.rules.max_recovered_share,
    );
    if report.epsilon > 0.0 {
        detail.push_str(&format!("; ε = {} spent, δ = {:e}", report.epsilon, report.delta));
    }
    for refusal in &report.refusals {
        detail.push_str("; ");
        detail.push_str(refusal);
    }
    detail
}

impl Domain {
    fn sample_file(&self, dataset: &DatasetVersion, kind: SampleKind) -> PathBuf {
        self.dir.join("samples").join(format!("{}-v{}-{}.parquet", dataset.name, dataset.version, kind.as_str()))
    }

    /// Derives the `kind` sample of a dataset version into its file and measures it. The
    /// caller records it (a `samples` row and an audit entry, in one commit).
    pub(super) async fn derive_sample_file(
        &self,
        dataset: &DatasetVersion,
        source: &Path,
        kind: SampleKind,
    ) -> Result<(PathBuf, SampleReport, String), GatewayError> {
        let target = self.sample_file(dataset, kind);
        let mut random = SystemBits::default();
        let report = unseen_runtime::sample::derive_sample(
            kind,
            dataset,
            source,
            &target,
            &self.sample_key,
            &SampleParams::default(),
            &mut random,
        )
        .await?;
        let bytes = std::fs::read(&target)
            .map_err(|error| GatewayError::Internal(format!("reading back {}: {error}", target.display())))?;
        Ok((target, report, sha256_hex(&bytes)))
    }

    /// Derives (once per kind) or shows the `kind` sample of `dataset_id`; with `offer`,
    /// developers' sample-mode jobs read it from now on — if its risk is under the grade's
    /// thresholds.
    pub async fn derive_sample(
        &self,
        who: &Principal,
        dataset_id: &str,
        kind: SampleKind,
        offer: bool,
        reason: &str,
    ) -> Result<SampleView, GatewayError> {
        Self::require(who, Role::Operator)?;
        if offer && reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput("reason: offering a sample needs a reason".into()));
        }
        let stored = self.dataset(dataset_id).await?;
        let rules = SampleRules::of(stored.dataset.grade);
        if kind == SampleKind::Deidentified && !rules.deidentified_allowed {
            return Err(GatewayError::Denied(format!(
                "rule sample_kind: dataset {dataset_id} is graded {:?}; only synthetic samples may be offered, never real rows",
                stored.dataset.grade
            )));
        }
        let existing = self
            .store
            .fetch(
                "SELECT path, report_json FROM samples WHERE dataset_id = $1 AND kind = $2",
                &[Param::Text(dataset_id), Param::Text(kind.as_str())],
            )
            .await?;
        let (path, report, content_hash) = match existing.first() {
            Some(row) => {
                let report: SampleReport = serde_json::from_str(&row["report_json"])
                    .map_err(|error| GatewayError::internal("decoding a sample report", error))?;
                let bytes = std::fs::read(&row["path"])
                    .map_err(|error| GatewayError::Internal(format!("reading sample {}: {error}", row["path"])))?;
                (PathBuf::from(&row["path"]), report, sha256_hex(&bytes))
            }
            None => {
                let (path, report, content_hash) =
                    self.derive_sample_file(&stored.dataset, Path::new(&stored.path), kind).await?;
                let mut transaction = self.store.begin().await?;
                self.record_sample(&mut transaction, who, &stored.dataset, &path, &report, &content_hash).await?;
                self.commit(transaction).await?;
                (path, report, content_hash)
            }
        };
        let mut offered = stored.sample_kind == kind.as_str();
        if offer && !offered {
            if !report.offered {
                return Err(GatewayError::FailedPrecondition(format!(
                    "the {} sample of {dataset_id} is not offered: {}",
                    kind.as_str(),
                    report.refusals.join("; ")
                )));
            }
            let mut transaction = self.store.begin().await?;
            transaction
                .execute(
                    "UPDATE datasets SET sample_kind = $1, sample_path = $2 WHERE id = $3",
                    &[Param::Text(kind.as_str()), Param::Text(&path.to_string_lossy()), Param::Text(dataset_id)],
                )
                .await?;
            transaction.log(audit_entry(
                who,
                "dataset.sample.offer",
                "dataset",
                dataset_id,
                Some(content_hash.clone()),
                None,
                kind.as_str(),
                reason.to_string(),
            ));
            self.commit(transaction).await?;
            self.forget_dataset(dataset_id);
            offered = true;
        }
        Ok(SampleView { dataset: dataset_id.to_string(), kind, offered, report, content_hash })
    }

    /// Writes a derived sample's row and its audit entry into `transaction`.
    pub(super) async fn record_sample(
        &self,
        transaction: &mut crate::store::Transaction,
        who: &Principal,
        dataset: &DatasetVersion,
        path: &Path,
        report: &SampleReport,
        content_hash: &str,
    ) -> Result<(), GatewayError> {
        let json =
            serde_json::to_string(report).map_err(|error| GatewayError::internal("encoding a sample report", error))?;
        let id = dataset.id();
        transaction
            .execute(
                "INSERT INTO samples (dataset_id, kind, path, report_json, created_ms) VALUES ($1, $2, $3, $4, $5)",
                &[
                    Param::Text(&id),
                    Param::Text(report.kind.as_str()),
                    Param::Text(&path.to_string_lossy()),
                    Param::Text(&json),
                    Param::Int(now_ms()),
                ],
            )
            .await?;
        transaction.log(audit_entry(
            who,
            "dataset.sample",
            "dataset",
            &id,
            Some(content_hash.to_string()),
            None,
            if report.offered { "measured" } else { "not_offered" },
            sample_detail(report),
        ));
        Ok(())
    }

    /// Refuses a sample-mode job over a dataset version whose sample is not offered, naming
    /// it and why.
    pub(super) fn require_offered_samples(datasets: &[StoredDataset]) -> Result<(), GatewayError> {
        match datasets.iter().find(|stored| stored.sample_kind.is_empty()) {
            None => Ok(()),
            Some(stored) => {
                let id = stored.dataset.id();
                Err(GatewayError::Denied(format!(
                    "rule sample_risk: dataset {id} has no development sample offered to developers (its measured risk is over the grade's thresholds); an operator may offer a synthetic one with `unseen dataset sample {id} --kind synthetic --offer --reason …`"
                )))
            }
        }
    }

    /// The sample-mode copies of a job's imports are mapped onto the subjects of the grant's
    /// samples of the same kind: the pool of stored subject tokens per subject kind.
    pub(super) async fn subject_pool(
        &self,
        tables: &[DomainTable],
        import: &DatasetVersion,
    ) -> Result<Vec<String>, GatewayError> {
        let Some(kind) = import.subject_kind else { return Ok(Vec::new()) };
        let samples: Vec<(&str, &Path)> = tables
            .iter()
            .filter(|table| table.dataset.subject_kind == Some(kind))
            .filter_map(|table| Some((table.dataset.subject_column()?, table.sample_path.as_path())))
            .collect();
        Ok(unseen_runtime::sample::subject_pool(&samples).await?)
    }

    /// Dataset versions registered before samples were measured (no `samples` row) get their
    /// grade's default sample now, measured and logged like a new registration's.
    pub(super) async fn measure_unmeasured_samples(&self) -> Result<(), GatewayError> {
        let unmeasured = self
            .store
            .fetch(
                "SELECT id FROM datasets WHERE NOT EXISTS (SELECT 1 FROM samples WHERE samples.dataset_id = datasets.id) ORDER BY created_ms",
                &[],
            )
            .await?;
        let domain = Principal { organisation: self.name.clone(), name: "domain".into(), role: Role::Operator };
        for row in unmeasured {
            let stored = self.dataset(&row["id"]).await?;
            let kind = SampleRules::of(stored.dataset.grade).default_kind;
            let (path, report, content_hash) =
                self.derive_sample_file(&stored.dataset, Path::new(&stored.path), kind).await?;
            let mut transaction = self.store.begin().await?;
            self.record_sample(&mut transaction, &domain, &stored.dataset, &path, &report, &content_hash).await?;
            let offered_kind = if report.offered { kind.as_str() } else { "" };
            transaction
                .execute(
                    "UPDATE datasets SET sample_kind = $1, sample_path = $2 WHERE id = $3",
                    &[Param::Text(offered_kind), Param::Text(&path.to_string_lossy()), Param::Text(&row["id"])],
                )
                .await?;
            self.commit(transaction).await?;
            self.forget_dataset(&row["id"]);
        }
        Ok(())
    }
}

/// The keys a grant's sample-mode jobs use: its pseudonym key decides them.
pub(super) fn grant_sample_keys(grant: &Grant) -> Result<unseen_policy::sample::GrantSampleKeys, GatewayError> {
    Ok(unseen_policy::sample::GrantSampleKeys::of(&grant.pseudonym_key()?))
}
