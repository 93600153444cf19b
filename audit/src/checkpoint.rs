//! The domain's signing key and the checkpoints it signs: C2SP signed notes committing the
//! domain to a log size and root (docs/audit-format.md §3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::AuditError;
use crate::merkle::Hash;

/// The domain's signing key, named as checkpoints name it.
pub struct DomainSigner {
    name: String,
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DomainSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl DomainSigner {
    /// A signer from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, AuditError> {
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
            return Err(AuditError::InvalidInput(format!(
                "key name \"{name}\" must be non-empty, without spaces or '+'"
            )));
        }
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| AuditError::InvalidInput("not a PKCS#8 Ed25519 key".into()))?;
        Ok(Self { name: name.to_string(), key_pair })
    }

    /// A fresh PKCS#8 Ed25519 key.
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuditError> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| AuditError::InvalidInput("could not generate a key".into()))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.key_pair.public_key().as_ref());
        key
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The signed-note key id: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(name.as_bytes());
    context.update(b"\n\x01");
    context.update(public_key);
    let digest = context.finish();
    [digest.as_ref()[0], digest.as_ref()[1], digest.as_ref()[2], digest.as_ref()[3]]
}

/// A verified checkpoint: the log's origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

/// Signs a checkpoint body as a C2SP signed note.
pub fn sign_checkpoint(origin: &str, size: u64, root: &Hash, signer: &DomainSigner) -> String {
    let body = format!("{origin}\n{size}\n{}\n", BASE64.encode(root));
    let signature = signer.key_pair.sign(body.as_bytes());
    let mut blob = key_id(&signer.name, &signer.public_key()).to_vec();
    blob.extend_from_slice(signature.as_ref());
    format!("{body}\n\u{2014} {} {}\n", signer.name, BASE64.encode(blob))
}

/// Verifies a signed checkpoint note against the key `key_name` / `public_key`.
pub fn verify_checkpoint(note: &str, key_name: &str, public_key: &[u8; 32]) -> Result<Checkpoint, AuditError> {
    let (body, signatures) =
        note.split_once("\n\n").ok_or_else(|| AuditError::InvalidInput("checkpoint has no signature block".into()))?;
    let body = format!("{body}\n");
    let wanted_id = key_id(key_name, public_key);
    let mut verified = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else { continue };
        let Some((name, blob)) = rest.split_once(' ') else { continue };
        if name != key_name {
            continue;
        }
        let blob = BASE64.decode(blob).map_err(|_| AuditError::InvalidSignature("signature is not base64".into()))?;
        if blob.len() != 68 || blob[..4] != wanted_id {
            continue;
        }
        UnparsedPublicKey::new(&ED25519, public_key).verify(body.as_bytes(), &blob[4..]).map_err(|_| {
            AuditError::InvalidSignature(format!("checkpoint signature by \"{key_name}\" does not verify"))
        })?;
        verified = true;
    }
    if !verified {
        return Err(AuditError::InvalidSignature(format!("no signature by \"{key_name}\" with the given key")));
    }
    let mut lines = body.lines();
    let origin = lines.next().unwrap_or_default().to_string();
    let size = lines
        .next()
        .and_then(|size| size.parse().ok())
        .ok_or_else(|| AuditError::InvalidInput("checkpoint size is not a number".into()))?;
    let root = lines
        .next()
        .and_then(|root| BASE64.decode(root).ok())
        .and_then(|root| <[u8; 32]>::try_from(root).ok())
        .ok_or_else(|| AuditError::InvalidInput("checkpoint root is not 32 base64 bytes".into()))?;
    Ok(Checkpoint { origin, size, root })
}
