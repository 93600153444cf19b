//! Who may read the audit log through the gateway, and how bad requests are answered.

use unseen_gateway::identity::{Principal, Role};
use unseen_gateway::{Domain, GatewayError};

fn principal(role: Role) -> Principal {
    Principal { organisation: "org".into(), name: "someone".into(), role }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_regulators_read_the_audit_log_and_impossible_proofs_are_invalid_input() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Domain::open(dir.path(), "test.domain").await.expect("the domain opens");
    for role in [Role::Provider, Role::Developer, Role::Operator] {
        let who = principal(role);
        assert!(matches!(domain.audit_entries(&who, 0, 10, ""), Err(GatewayError::Denied(_))), "{role:?}");
        assert!(matches!(domain.audit_entries(&who, 0, 0, "r-1"), Err(GatewayError::Denied(_))), "{role:?}");
        assert!(matches!(domain.audit_inclusion_proof(&who, 0, 1), Err(GatewayError::Denied(_))), "{role:?}");
        assert!(matches!(domain.audit_consistency_proof(&who, 1, 1), Err(GatewayError::Denied(_))), "{role:?}");
        assert!(matches!(domain.checkpoint(&who), Err(GatewayError::Denied(_))), "{role:?}");
        assert!(matches!(domain.export_audit(&who), Err(GatewayError::Denied(_))), "{role:?}");
    }
    let regulator = principal(Role::Regulator);
    let (_, size) = domain.checkpoint(&regulator).expect("a checkpoint");
    assert!(matches!(domain.audit_inclusion_proof(&regulator, size, size), Err(GatewayError::InvalidInput(_))));
    assert!(matches!(domain.audit_consistency_proof(&regulator, 0, size), Err(GatewayError::InvalidInput(_))));
    assert!(matches!(domain.audit_entries(&regulator, 0, 20_000, ""), Err(GatewayError::InvalidInput(_))));
    assert!(domain.audit_entries(&regulator, 0, 10, "").is_ok());
}
