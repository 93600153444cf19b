//! Releases: an approved output is signed into a bundle a developer downloads and anyone
//! verifies against the domain's public key.

use serde::{Deserialize, Serialize};
use unseen_policy::review::release_table;
use unseen_policy::{DatasetVersion, Grant, OutputKind, ReviewReport, sha256_hex};

use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::store::NewRelease;

use super::files::{csv_bytes, io, read_parquet, write_atomically};
use super::{AuditEvent, Domain, decode, found, now_ms};

/// The signed manifest of a release bundle (来源可溯、去向可查).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Release id.
    pub release_id: String,
    /// The domain that signed it.
    pub domain: String,
    /// Output name.
    pub output: String,
    /// Hex SHA-256 of the released data file.
    pub data_sha256: String,
    /// Hex SHA-256 of the module that computed it.
    pub module_sha256: String,
    /// Grant id and hash.
    pub grant_id: String,
    /// Hex SHA-256 of the grant.
    pub grant_sha256: String,
    /// Dataset versions read, with content hashes.
    pub datasets: Vec<(String, String)>,
    /// The developer's own imported tables the job read (社会数据): `i-N name@vN` and content
    /// hash. Absent when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<(String, String)>,
    /// Hex SHA-256 of the review report.
    pub report_sha256: String,
    /// Who approved: `auto` or the operator.
    pub approver: String,
    /// When.
    pub released_at_unix_ms: i64,
}

/// A release bundle: manifest bytes, signature and data.
#[derive(Debug, Clone)]
pub struct ReleaseBundle {
    /// Release id.
    pub id: String,
    /// Manifest JSON, exactly the signed bytes.
    pub manifest: Vec<u8>,
    /// Ed25519 signature by the domain key.
    pub signature: Vec<u8>,
    /// Released data (CSV).
    pub data: Vec<u8>,
    /// The domain's public key.
    pub public_key: Vec<u8>,
}

/// Checks a release bundle offline: signature over the manifest by `public_key`, and the
/// data's hash against the manifest.
pub fn verify_release(
    manifest: &[u8],
    signature: &[u8],
    data: &[u8],
    public_key: &[u8],
) -> Result<ReleaseManifest, GatewayError> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(manifest, signature)
        .map_err(|_| GatewayError::Denied("release signature does not verify under the domain key".into()))?;
    let parsed: ReleaseManifest = serde_json::from_slice(manifest)
        .map_err(|error| GatewayError::InvalidInput(format!("release manifest is not valid JSON: {error}")))?;
    let actual = sha256_hex(data);
    if actual != parsed.data_sha256 {
        return Err(GatewayError::Denied(format!(
            "release data hash {actual} differs from the manifest's {}",
            parsed.data_sha256
        )));
    }
    Ok(parsed)
}

impl Domain {
    /// Builds and signs the release bundle of an egress request.
    pub(super) async fn release(
        &self,
        who: &Principal,
        egress_id: &str,
        approver: &str,
    ) -> Result<String, GatewayError> {
        let egress = found(self.store.egress(egress_id).await?, format_args!("egress request {egress_id}"))?;
        let report: ReviewReport = decode(&egress.report_json, "a report")?;
        let job = found(self.store.job(&egress.job_id).await?, "job")?;
        let grant_row = found(self.store.grant(&job.grant_id).await?, "grant")?;
        let grant: Grant = decode(&grant_row.json, "a grant")?;
        let output = found(self.store.output(&egress.job_id, &egress.output_name).await?, "output")?;
        let data = if output.kind != OutputKind::Artifact {
            // The table as reviewed (with its noise, if any), written when the request was made.
            let candidate = self.dir.join("egress").join(format!("{egress_id}.parquet"));
            let table = match std::fs::read(&candidate) {
                Ok(bytes) => read_parquet(bytes)?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound && report.noise.is_empty() => {
                    let bytes = std::fs::read(self.domain_file(&output.path)).map_err(io("reading a held output"))?;
                    release_table(&report, &read_parquet(bytes)?)
                        .map_err(|error| GatewayError::internal("applying the review", error))?
                }
                Err(error) => return Err(GatewayError::internal("reading the reviewed table", error)),
            };
            csv_bytes(&table)?
        } else {
            std::fs::read(self.domain_file(&output.path)).map_err(io("reading a held output"))?
        };
        let mut datasets = Vec::new();
        for dataset_id in grant.datasets() {
            let stored = self.dataset(dataset_id).await?;
            datasets.push((dataset_id.to_string(), stored.dataset.content_hash));
        }
        let mut imports = Vec::new();
        for import_id in &job.imports {
            let row = found(self.store.import(import_id).await?, "import")?;
            let dataset: DatasetVersion = decode(&row.json, "an import")?;
            imports.push((format!("{import_id} {}", dataset.id()), dataset.content_hash));
        }
        let release_id = self.store.next_id("r").await?;
        let manifest = ReleaseManifest {
            release_id: release_id.clone(),
            domain: self.name.clone(),
            output: egress.output_name.clone(),
            data_sha256: sha256_hex(&data),
            module_sha256: job.module_hash,
            grant_id: grant.id.clone(),
            grant_sha256: grant.hash(),
            datasets,
            imports,
            report_sha256: sha256_hex(egress.report_json.as_bytes()),
            approver: approver.to_string(),
            released_at_unix_ms: now_ms(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| GatewayError::internal("encoding a manifest", error))?;
        let signature = self.release_key.sign(&manifest_bytes);
        let dir = self.dir.join("releases").join(&release_id);
        std::fs::create_dir_all(&dir).map_err(io("creating a release directory"))?;
        write_atomically(&dir.join("data.csv"), &data)?;
        write_atomically(&dir.join("report.json"), egress.report_json.as_bytes())?;
        write_atomically(&dir.join("manifest.sig"), signature.as_ref())?;
        write_atomically(&dir.join("manifest.json"), &manifest_bytes)?;
        // The release's row, its link to the request and its log entry commit together.
        let mut transaction = self.store.begin().await?;
        transaction
            .insert_release(&NewRelease {
                id: &release_id,
                egress_id,
                developer: &egress.developer,
                dir: &self.stored_path(&dir),
            })
            .await?;
        transaction.log(
            AuditEvent::new(who, "release.sign", "release", &release_id)
                .object_hash(sha256_hex(&manifest_bytes))
                .grant(grant.id.clone())
                .decision("released")
                .reason(approver)
                .entry(),
        );
        self.commit(transaction).await?;
        Ok(release_id)
    }

    /// A release bundle, for the developer who owns it.
    pub async fn release_bundle(&self, who: &Principal, release_id: &str) -> Result<ReleaseBundle, GatewayError> {
        Self::require(who, Role::Developer)?;
        let row = found(self.store.release(release_id).await?, format_args!("release {release_id}"))?;
        Self::require_owner(who, &row.developer, &format!("release {release_id}"))?;
        let dir = self.domain_file(&row.dir);
        Ok(ReleaseBundle {
            id: release_id.to_string(),
            manifest: std::fs::read(dir.join("manifest.json")).map_err(io("reading a release"))?,
            signature: std::fs::read(dir.join("manifest.sig")).map_err(io("reading a release"))?,
            data: std::fs::read(dir.join("data.csv")).map_err(io("reading a release"))?,
            public_key: self.public_key(),
        })
    }
}
