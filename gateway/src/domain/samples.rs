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

use super::{AuditEvent, Domain, StoredDataset, decode};
use crate::error::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::NewSample;

/// Random words for a derivation: HMAC-SHA256 in counter mode under a key drawn once from
/// the operating system (a synthetic sample draws millions of words; one system call each
/// would dominate its derivation).
struct DrawnBits {
    key: ring::hmac::Key,
    counter: u64,
    words: [u64; 4],
    next: usize,
}

impl DrawnBits {
    fn seeded() -> Result<Self, GatewayError> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| GatewayError::Internal("drawing a sample's random key".into()))?;
        Ok(Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed), counter: 0, words: [0; 4], next: 4 })
    }
}

impl unseen_policy::noise::RandomBits for DrawnBits {
    fn next_u64(&mut self) -> Result<u64, unseen_policy::noise::RandomnessFailed> {
        if self.next == self.words.len() {
            let tag = ring::hmac::sign(&self.key, &self.counter.to_le_bytes());
            self.counter += 1;
            for (word, bytes) in self.words.iter_mut().zip(tag.as_ref().chunks_exact(8)) {
                let mut chunk = [0u8; 8];
                chunk.copy_from_slice(bytes);
                *word = u64::from_le_bytes(chunk);
            }
            self.next = 0;
        }
        self.next += 1;
        Ok(self.words[self.next - 1])
    }
}

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

/// What an operator does with a sample besides looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDecision {
    /// Derive it if it does not exist yet, and show it.
    Show,
    /// Developers' sample-mode jobs read it from now on (if its risk is under the thresholds).
    Offer,
    /// Developers get no sample of the dataset until one is offered again.
    Withdraw,
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
        let mut random = DrawnBits::seeded()?;
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
        decision: SampleDecision,
        reason: &str,
    ) -> Result<SampleView, GatewayError> {
        Self::require(who, Role::Operator)?;
        if decision != SampleDecision::Show && reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput("reason: offering or withdrawing a sample needs a reason".into()));
        }
        let stored = self.dataset(dataset_id).await?;
        let rules = SampleRules::of(stored.dataset.grade);
        if kind == SampleKind::Deidentified && !rules.deidentified_allowed {
            return Err(GatewayError::Denied(format!(
                "rule sample_kind: dataset {dataset_id} is graded {:?}; only synthetic samples may be offered, never real rows",
                stored.dataset.grade
            )));
        }
        let existing = self.store.sample(dataset_id, kind).await?;
        let (path, report, content_hash) = match existing {
            Some(row) => {
                let report: SampleReport = decode(&row.report_json, "a sample report")?;
                let path = self.domain_file(&row.path);
                let bytes = std::fs::read(&path)
                    .map_err(|error| GatewayError::Internal(format!("reading sample {}: {error}", path.display())))?;
                (path, report, sha256_hex(&bytes))
            }
            None => {
                let (path, report, content_hash) = self.derive_sample_file(&stored.dataset, &stored.path, kind).await?;
                let mut transaction = self.store.begin().await?;
                self.record_sample(&mut transaction, who, &stored.dataset, &path, &report, &content_hash).await?;
                self.commit(transaction).await?;
                (path, report, content_hash)
            }
        };
        let mut offered = stored.sample_kind == Some(kind);
        if decision == SampleDecision::Withdraw && offered {
            self.set_offered_sample(who, dataset_id, kind, None, &content_hash, reason).await?;
            offered = false;
        }
        if decision == SampleDecision::Offer && !offered {
            if !report.offered {
                return Err(GatewayError::FailedPrecondition(format!(
                    "the {} sample of {dataset_id} is not offered: {}",
                    kind.as_str(),
                    report.refusals.join("; ")
                )));
            }
            self.set_offered_sample(who, dataset_id, kind, Some(&path), &content_hash, reason).await?;
            offered = true;
        }
        Ok(SampleView { dataset: dataset_id.to_string(), kind, offered, report, content_hash })
    }

    /// Offers the sample at `path` of `kind` to developers (`dataset.sample.offer`), or with no
    /// path withdraws the offered sample of `kind` (`dataset.sample.withdraw`), with its entry.
    async fn set_offered_sample(
        &self,
        who: &Principal,
        dataset_id: &str,
        kind: SampleKind,
        path: Option<&Path>,
        content_hash: &str,
        reason: &str,
    ) -> Result<(), GatewayError> {
        let mut transaction = self.store.begin().await?;
        let action = match path {
            Some(path) => {
                transaction.set_dataset_sample(dataset_id, Some(kind), &path.to_string_lossy()).await?;
                "dataset.sample.offer"
            }
            None => {
                transaction.clear_dataset_sample(dataset_id, kind).await?;
                "dataset.sample.withdraw"
            }
        };
        transaction.log(
            AuditEvent::new(who, action, "dataset", dataset_id)
                .object_hash(content_hash.to_string())
                .decision(kind.as_str())
                .reason(reason.to_string())
                .entry(),
        );
        self.commit(transaction).await?;
        self.forget_dataset(dataset_id);
        Ok(())
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
            .insert_sample(&NewSample {
                dataset_id: &id,
                kind: report.kind,
                path: &self.stored_path(path),
                report_json: &json,
            })
            .await?;
        transaction.log(
            AuditEvent::new(who, "dataset.sample", "dataset", &id)
                .object_hash(content_hash.to_string())
                .decision(if report.offered { "measured" } else { "not_offered" })
                .reason(sample_detail(report))
                .entry(),
        );
        Ok(())
    }

    /// Refuses a sample-mode job over a dataset version whose sample is not offered, naming
    /// it and why.
    pub(super) fn require_offered_samples(datasets: &[StoredDataset]) -> Result<(), GatewayError> {
        match datasets.iter().find(|stored| stored.sample_kind.is_none()) {
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
        let unmeasured = self.store.datasets_without_samples().await?;
        let domain = Principal { organisation: self.name.clone(), name: "domain".into(), role: Role::Operator };
        for row in unmeasured {
            let stored = self.dataset(&row.id).await?;
            let kind = SampleRules::of(stored.dataset.grade).default_kind;
            // A dataset whose sample cannot be derived keeps none offered; the domain opens.
            let derived = self.derive_sample_file(&stored.dataset, &stored.path, kind).await;
            let (path, report, content_hash) = match derived {
                Ok(derived) => derived,
                Err(error) => {
                    tracing::error!(dataset = %row.id, %error, "deriving a dataset's sample failed; none is offered");
                    continue;
                }
            };
            let mut transaction = self.store.begin().await?;
            self.record_sample(&mut transaction, &domain, &stored.dataset, &path, &report, &content_hash).await?;
            let offered_kind = report.offered.then_some(kind);
            transaction.set_dataset_sample(&row.id, offered_kind, &path.to_string_lossy()).await?;
            self.commit(transaction).await?;
            self.forget_dataset(&row.id);
        }
        Ok(())
    }
}

/// The keys a grant's sample-mode jobs use: its pseudonym key decides them.
pub(super) fn grant_sample_keys(grant: &Grant) -> Result<unseen_policy::sample::GrantSampleKeys, GatewayError> {
    Ok(unseen_policy::sample::GrantSampleKeys::of(&grant.pseudonym_key()?))
}
