//! Social data (社会数据; docs/policy-basis.md, social data): a developer's own table, imported
//! for one of its grants. It is usable only after an operator approves it, and only by jobs under that
//! grant, where its key columns (`subject`, `identifier`) only join
//! ([`unseen_policy::imported_column_mode`]).
//!
//! At rest it is encrypted with AES-256-GCM under a key of its own (`keys/imports/<token>.key`,
//! ciphertext `imports/<token>.sealed`, the token as associated data). Rejecting the import or
//! terminating its grant destroys the key and the ciphertext (crypto-shredding); the log keeps
//! that it happened. A job gets a decrypted copy in `work/<job>/`, removed when the job ends
//! and, after a crash, when the domain opens.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use unseen_policy::{DatasetVersion, Grade, sha256_hex};
use unseen_runtime::{DomainTable, Mode};

use super::datasets::check_tagged_columns;
use super::files::{io, read_parquet, remove_if_present, write_atomically};
use super::{AuditEvent, DatasetRegistration, Domain, decode, found};
use crate::GatewayError;
use crate::identity::{Principal, Role};
use crate::states::ImportState;
use crate::store::{ImportRow, NewImport};

/// Largest table a developer may import (bytes of Parquet).
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

/// The states of an import whose key and ciphertext the domain still holds.
pub(super) const HELD: [ImportState; 2] = [ImportState::Submitted, ImportState::Approved];

/// An imported table as its developer and the operator see it: what it is, never what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportView {
    /// Import id (`i-N`).
    pub id: String,
    /// The importing organisation.
    pub developer: String,
    /// The grant whose jobs may use it.
    pub grant_id: String,
    /// The table as jobs see it: name (the SQL table name), version, columns and tags.
    pub dataset: DatasetVersion,
    /// Rows in the table.
    pub rows: u64,
    /// Bytes of Parquet imported.
    pub bytes: u64,
    /// Its state.
    pub state: ImportState,
    /// The operator's reason, or why it was destroyed.
    pub reason: String,
}

/// An approved import a job was given.
#[derive(Debug, Clone)]
pub(super) struct JobImport {
    pub(super) id: String,
    sealed: String,
    pub(super) dataset: DatasetVersion,
}

fn import_view(row: ImportRow) -> Result<ImportView, GatewayError> {
    Ok(ImportView {
        dataset: decode(&row.json, "an import")?,
        id: row.id,
        developer: row.developer,
        grant_id: row.grant_id,
        rows: row.rows,
        bytes: row.bytes,
        state: row.state,
        reason: row.reason,
    })
}

/// Where an import's ciphertext and key are kept.
fn sealed_paths(dir: &Path, sealed: &str) -> (PathBuf, PathBuf) {
    (
        dir.join("imports").join(format!("{sealed}.sealed")),
        dir.join("keys").join("imports").join(format!("{sealed}.key")),
    )
}

fn cipher(key: &[u8]) -> Result<LessSafeKey, GatewayError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| GatewayError::Internal("an import key is not 32 bytes".into()))
}

/// `nonce ‖ ciphertext ‖ tag` of `plaintext` under `key`, bound to `sealed` (the file token).
fn seal(key: &[u8], sealed: &str, mut plaintext: Vec<u8>, random: &SystemRandom) -> Result<Vec<u8>, GatewayError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|_| GatewayError::Internal("drawing a nonce".into()))?;
    cipher(key)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(sealed.as_bytes()), &mut plaintext)
        .map_err(|_| GatewayError::Internal("encrypting an import".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plaintext);
    Ok(out)
}

/// The plaintext of [`seal`]'s output; fails when a byte of it, or the key, was changed.
fn unseal(key: &[u8], sealed: &str, mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err("its encrypted file is truncated".into());
    }
    let mut body = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| "its nonce is malformed".to_string())?;
    let plaintext = cipher(key)
        .map_err(|error| error.to_string())?
        .open_in_place(nonce, Aad::from(sealed.as_bytes()), &mut body)
        .map_err(|_| "its encrypted file or its key was altered".to_string())?
        .len();
    body.truncate(plaintext);
    Ok(body)
}

/// Overwrites a key file with zeros in place and syncs it before removing it, so the key is
/// not left in the file's blocks (writing a new file and renaming it over would free the old
/// blocks with the key still in them); then removes the ciphertext.
fn destroy_sealed(dir: &Path, sealed: &str) -> Result<(), GatewayError> {
    use std::io::Write;
    let (data, key) = sealed_paths(dir, sealed);
    match std::fs::OpenOptions::new().write(true).open(&key) {
        Ok(mut file) => {
            let length = file.metadata().map_err(io("reading an import key's size"))?.len();
            file.write_all(&vec![0u8; length as usize]).map_err(io("overwriting an import key"))?;
            file.sync_all().map_err(io("syncing an overwritten import key"))?;
            remove_if_present(&key)?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(GatewayError::internal("opening an import key to destroy it", error)),
    }
    remove_if_present(&data)
}

impl Domain {
    /// A developer imports its own table for `grant_id` (an active grant of its own). It is
    /// checked like a provider's dataset (readable Parquet, every column tagged, valid names),
    /// must not be named like a dataset the grant covers, is encrypted under a fresh key, and
    /// waits for an operator: no job sees it before it is approved.
    pub async fn import_data(
        &self,
        who: &Principal,
        grant_id: &str,
        registration: DatasetRegistration,
        parquet: Vec<u8>,
    ) -> Result<ImportView, GatewayError> {
        Self::require(who, Role::Developer)?;
        let grant = self.grant_for(who, grant_id).await?;
        if parquet.len() > MAX_IMPORT_BYTES {
            return Err(GatewayError::InvalidInput(format!(
                "the table is {} bytes; at most {MAX_IMPORT_BYTES} can be imported",
                parquet.len()
            )));
        }
        let earlier = self.store.count_imports_named(grant_id, &registration.name).await?;
        let dataset = DatasetVersion {
            name: registration.name,
            version: earlier as u32 + 1,
            provider: who.organisation.clone(),
            grade: Grade::General,
            content_hash: sha256_hex(&parquet),
            subject_kind: registration.subject_kind,
            columns: registration.columns,
        };
        dataset.validate()?;
        // Refuses a name that would shadow a granted dataset in the job's SQL.
        grant.with_imports(std::slice::from_ref(&dataset))?;
        let bytes = parquet.len() as u64;
        let rows = {
            let table = read_parquet(parquet.clone())?;
            check_tagged_columns(&dataset, &table)?;
            table.num_rows() as u64
        };
        let random = SystemRandom::new();
        let mut token = [0u8; 16];
        let mut key = [0u8; 32];
        random.fill(&mut token).map_err(|_| GatewayError::Internal("drawing an import token".into()))?;
        random.fill(&mut key).map_err(|_| GatewayError::Internal("drawing an import key".into()))?;
        let sealed = hex::encode(token);
        let ciphertext = seal(&key, &sealed, parquet, &random)?;
        let (data_path, key_path) = sealed_paths(&self.dir, &sealed);
        // Files first: a crash before the commit leaves files no row names, which the next
        // open removes.
        write_atomically(&key_path, &key)?;
        write_atomically(&data_path, &ciphertext)?;
        let json =
            serde_json::to_string(&dataset).map_err(|error| GatewayError::internal("encoding an import", error))?;
        let mut transaction = self.store.begin().await?;
        let id = transaction.next_id("i").await?;
        transaction
            .insert_import(&NewImport {
                id: &id,
                developer: &who.organisation,
                grant_id,
                name: &dataset.name,
                json: &json,
                sealed: &sealed,
                state: ImportState::Submitted,
                rows,
                bytes,
            })
            .await?;
        let columns: Vec<String> =
            dataset.columns.iter().map(|column| format!("{} ({})", column.name, column.tag.as_str())).collect();
        transaction.log(
            AuditEvent::new(who, "import.submit", "import", &id)
                .object_hash(dataset.content_hash.clone())
                .grant(grant_id.to_string())
                .decision("submitted")
                .reason(format!("{}: {rows} rows; {}", dataset.id(), columns.join(", ")))
                .entry(),
        );
        self.commit(transaction).await?;
        self.import(who, &id).await
    }

    /// One import, for its developer or an operator.
    pub async fn import(&self, who: &Principal, import_id: &str) -> Result<ImportView, GatewayError> {
        if !matches!(who.role, Role::Developer | Role::Operator) {
            Self::require(who, Role::Operator)?;
        }
        let what = format!("imported table {import_id}");
        let row = found(self.store.import(import_id).await?, &what)?;
        Self::require_owner(who, &row.developer, &what)?;
        import_view(row)
    }

    /// Imports in `state` (all when empty): a developer's own, or every one for an operator.
    pub async fn list_imports(&self, who: &Principal, state: &str) -> Result<Vec<ImportView>, GatewayError> {
        if !matches!(who.role, Role::Developer | Role::Operator) {
            Self::require(who, Role::Operator)?;
        }
        let rows = self.store.imports().await?;
        rows.into_iter()
            .filter(|row| who.role == Role::Operator || row.developer == who.organisation)
            .filter(|row| state.is_empty() || row.state == state)
            .map(import_view)
            .collect()
    }

    /// An operator approves a submitted import (jobs submitted afterwards under its grant can
    /// read it) or rejects it (its key and ciphertext are destroyed at once).
    pub async fn decide_import(
        &self,
        who: &Principal,
        import_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<ImportView, GatewayError> {
        Self::require(who, Role::Operator)?;
        if !approve && reason.trim().is_empty() {
            return Err(GatewayError::InvalidInput(
                "say why the import is rejected: the developer reads the reason and it goes into the audit log".into(),
            ));
        }
        let view = self.import(who, import_id).await?;
        if view.state != ImportState::Submitted {
            return Err(GatewayError::FailedPrecondition(format!(
                "imported table {import_id} is {}; only a submitted import can be decided",
                view.state
            )));
        }
        let state = if approve { ImportState::Approved } else { ImportState::Rejected };
        let mut transaction = self.store.begin().await?;
        let changed = transaction.set_import_state(import_id, (ImportState::Submitted, state), reason).await?;
        Self::decided(changed, ("imported table", import_id))?;
        transaction.log(
            AuditEvent::new(who, if approve { "import.approve" } else { "import.reject" }, "import", import_id)
                .object_hash(view.dataset.content_hash.clone())
                .grant(view.grant_id.clone())
                .decision(state.as_str())
                .reason(reason.to_string())
                .entry(),
        );
        self.commit(transaction).await?;
        if !approve {
            let row = found(self.store.import(import_id).await?, "import")?;
            destroy_sealed(&self.dir, &row.sealed)?;
        }
        self.import(who, import_id).await
    }

    /// The approved imports of `grant_id` a job gets: the latest version of each name.
    pub(super) async fn approved_imports(&self, grant_id: &str) -> Result<Vec<JobImport>, GatewayError> {
        let rows = self.store.imports_of_grant(grant_id, &[ImportState::Approved]).await?;
        let mut imports: Vec<JobImport> = Vec::with_capacity(rows.len());
        for row in rows {
            let dataset: DatasetVersion = decode(&row.json, "an import")?;
            imports.retain(|earlier| earlier.dataset.name != dataset.name);
            imports.push(JobImport { id: row.id, sealed: row.sealed, dataset });
        }
        Ok(imports)
    }

    /// Decrypts a job's imports into `work`. For sample mode it writes their sample-mode copies
    /// instead: the developer's own values, with subject keys mapped by a grant-keyed hash
    /// onto the subjects of the grant's samples (`granted`) and identifiers made grant-keyed
    /// tokens, so an import never meets a sample by value. An import destroyed since the job
    /// was queued fails the job with a message saying so.
    pub(super) async fn open_imports(
        &self,
        imports: &[JobImport],
        work: &Path,
        mode: Mode,
        grant: &unseen_policy::Grant,
        granted: &[DomainTable],
    ) -> Result<Result<Vec<DomainTable>, String>, GatewayError> {
        let mut tables = Vec::with_capacity(imports.len());
        if imports.is_empty() {
            return Ok(Ok(tables));
        }
        std::fs::create_dir_all(work).map_err(io("creating a job's work directory"))?;
        for import in imports {
            let (data_path, key_path) = sealed_paths(&self.dir, &import.sealed);
            let (Ok(key), Ok(ciphertext)) = (std::fs::read(&key_path), std::fs::read(&data_path)) else {
                return Ok(Err(format!(
                    "imported table {} ({}) is no longer in the domain: it was destroyed after the job was queued",
                    import.id,
                    import.dataset.id()
                )));
            };
            let plaintext = match unseal(&key, &import.sealed, ciphertext) {
                Ok(plaintext) => plaintext,
                Err(why) => {
                    return Err(GatewayError::Internal(format!(
                        "imported table {} does not decrypt: {why}",
                        import.id
                    )));
                }
            };
            if sha256_hex(&plaintext) != import.dataset.content_hash {
                return Err(GatewayError::Internal(format!(
                    "imported table {} decrypts to other bytes than were imported",
                    import.id
                )));
            }
            let production_path = work.join(format!("{}.parquet", import.id));
            write_atomically(&production_path, &plaintext)?;
            let sample_path = work.join(format!("{}.sample.parquet", import.id));
            if mode == Mode::Sample {
                let pool = self.subject_pool(granted, &import.dataset).await?;
                let keys = super::samples::grant_sample_keys(grant)?;
                unseen_runtime::sample::derive_import_sample(
                    &import.dataset,
                    &production_path,
                    &sample_path,
                    &pool,
                    &keys,
                )
                .await?;
                // Sample mode never reads the real rows: they go before the module starts.
                remove_if_present(&production_path)?;
            }
            tables.push(DomainTable { dataset: import.dataset.clone(), production_path, sample_path });
        }
        Ok(Ok(tables))
    }

    /// On termination: destroys the keys and ciphertexts of the grant's imports that are
    /// still held; the caller records them as destroyed. Returns their ids.
    pub(super) async fn destroy_grant_imports(&self, grant_id: &str) -> Result<Vec<String>, GatewayError> {
        let held = self.store.imports_of_grant(grant_id, &HELD).await?;
        for import in &held {
            destroy_sealed(&self.dir, &import.sealed)?;
        }
        Ok(held.into_iter().map(|import| import.id).collect())
    }

    /// On open: removes what no held import names — the files of an import whose commit a
    /// crash prevented, of a rejected one whose key was not yet destroyed — and every job's
    /// decrypted copies.
    pub(super) async fn sweep_import_files(&self) -> Result<(), GatewayError> {
        let work = self.dir.join("work");
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(io("clearing the work directory"))?;
        }
        let held: std::collections::BTreeSet<String> =
            self.store.imports_in(&HELD).await?.into_iter().map(|row| row.sealed).collect();
        for sub in ["imports", "keys/imports"] {
            for entry in std::fs::read_dir(self.dir.join(sub)).map_err(io("listing imported tables"))? {
                let path = entry.map_err(io("listing imported tables"))?.path();
                let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_string();
                let finished =
                    matches!(path.extension().and_then(|extension| extension.to_str()), Some("sealed" | "key"));
                if !finished {
                    // A write a crash interrupted (`.partial`).
                    remove_if_present(&path)?;
                } else if !held.contains(&stem) {
                    destroy_sealed(&self.dir, &stem)?;
                    remove_if_present(&path)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tables_open_only_with_their_key_and_token_and_unaltered() {
        let random = SystemRandom::new();
        let (key, other_key) = ([3u8; 32], [4u8; 32]);
        let plaintext = b"PAR1 enterprise customers PAR1".to_vec();
        let sealed = seal(&key, "token-a", plaintext.clone(), &random).unwrap();
        assert!(!sealed.windows(4).any(|window| window == b"PAR1"), "the ciphertext shows no plaintext");
        assert_eq!(unseal(&key, "token-a", sealed.clone()).unwrap(), plaintext);
        assert!(unseal(&other_key, "token-a", sealed.clone()).is_err(), "another key");
        assert!(unseal(&key, "token-b", sealed.clone()).is_err(), "another file's token");
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 2] ^= 1;
        assert!(unseal(&key, "token-a", flipped).unwrap_err().contains("altered"));
        assert!(unseal(&key, "token-a", sealed[..10].to_vec()).unwrap_err().contains("truncated"));
    }
}
