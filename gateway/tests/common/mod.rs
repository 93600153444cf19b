//! What the gateway's tests share: principals and a provider registering the energy data.

use std::path::Path;

use unseen_gateway::Domain;
use unseen_gateway::domain::DatasetRegistration;
use unseen_gateway::identity::{Principal, Role};

/// Someone of `organisation` acting as `role`.
pub fn principal(organisation: &str, role: Role) -> Principal {
    Principal { organisation: organisation.into(), name: "someone".into(), role }
}

/// Registers synthetic `enterprise` (`enterprises` companies) and twelve months of
/// `electricity` as the provider `bureau`, writing the files under `dir`.
#[allow(dead_code, reason = "each test binary compiles this module; not every one registers data")]
pub async fn register_energy_data(domain: &Domain, dir: &Path, enterprises: usize, seed: u64) {
    let provider = principal("bureau", Role::Provider);
    let register = unseen_samples::data::enterprises(enterprises, seed);
    let electricity = unseen_samples::data::electricity(&register, 12, seed);
    for (dataset, batch) in
        [(unseen_samples::scenarios::enterprise(), &register), (unseen_samples::scenarios::electricity(), &electricity)]
    {
        let path = dir.join(format!("{}.parquet", dataset.name));
        unseen_samples::data::write_parquet(batch, &path).expect("write parquet");
        let registration = DatasetRegistration {
            name: dataset.name.clone(),
            grade: dataset.grade,
            subject_kind: dataset.subject_kind,
            columns: dataset.columns.clone(),
        };
        domain.register_dataset(&provider, registration, std::fs::read(&path).expect("read")).await.expect("register");
    }
}
