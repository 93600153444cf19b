//! What a regulator reads: checkpoints, entries, inclusion and consistency proofs, exports.

use unseen_audit::Export;

use crate::GatewayError;
use crate::identity::{Principal, Role};

use super::Domain;

/// Most audit entries one `audit_entries` call returns.
pub const MAX_AUDIT_ENTRIES: u64 = 10_000;

impl Domain {
    /// The latest signed checkpoint of the audit log (regulators).
    pub fn checkpoint(&self, who: &Principal) -> Result<(String, u64), GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.checkpoint(&self.signer)?)
    }

    /// Audit entries `[start, end)` (at most [`MAX_AUDIT_ENTRIES`]), or every entry about
    /// `object_id` when it is not empty (regulators).
    pub fn audit_entries(
        &self,
        who: &Principal,
        start: u64,
        end: u64,
        object_id: &str,
    ) -> Result<(Vec<unseen_audit::RawEntry>, u64), GatewayError> {
        Self::require(who, Role::Regulator)?;
        let size = self.audit.len();
        let entries = if object_id.is_empty() {
            if end < start || end - start > MAX_AUDIT_ENTRIES {
                return Err(GatewayError::InvalidInput(format!(
                    "entries [{start}, {end}): ask for at most {MAX_AUDIT_ENTRIES} at a time"
                )));
            }
            self.audit.raw_entries(start, end)?
        } else {
            self.audit.raw_entries_about(object_id)?
        };
        Ok((entries, size))
    }

    /// The RFC 9162 inclusion proof of entry `index` in the tree of `size` entries (regulators).
    pub fn audit_inclusion_proof(&self, who: &Principal, index: u64, size: u64) -> Result<Vec<[u8; 32]>, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.inclusion_proof(index, size)?)
    }

    /// The RFC 9162 consistency proof between tree sizes `old` and `new` (regulators).
    pub fn audit_consistency_proof(&self, who: &Principal, old: u64, new: u64) -> Result<Vec<[u8; 32]>, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.consistency_proof(old, new)?)
    }

    /// The whole audit log as an offline-verifiable export (regulators).
    pub fn export_audit(&self, who: &Principal) -> Result<Export, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.export(&self.signer)?)
    }

    /// Entries `[start, end)` of the log as an export with every leaf hash and a signed
    /// checkpoint, verifiable offline (regulators).
    pub fn export_audit_range(&self, who: &Principal, start: u64, end: u64) -> Result<Export, GatewayError> {
        Self::require(who, Role::Regulator)?;
        Ok(self.audit.export_range(&self.signer, start, end)?)
    }
}
