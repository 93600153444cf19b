//! Entries and a signer the unit tests of several files share.

use crate::{DomainSigner, Entry};

/// Entry `i` of a test log: about grant `g-{i}`, at time `i`.
pub(crate) fn entry(i: i64) -> Entry {
    Entry {
        time_unix_ms: i,
        organisation: "org".into(),
        principal: "p".into(),
        role: "operator".into(),
        action: "scenario.approve".into(),
        object_kind: "grant".into(),
        object_id: format!("g-{i}"),
        object_hash: None,
        grant: Some(format!("g-{i}")),
        decision: "approved".into(),
        reason: "ok".into(),
    }
}

/// A fresh signing key named `test.domain`.
pub(crate) fn new_signer() -> DomainSigner {
    DomainSigner::from_pkcs8("test.domain", &DomainSigner::generate_pkcs8().unwrap()).unwrap()
}
