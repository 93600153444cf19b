//! What the gateway's tests share: principals and a provider registering the energy data.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use unseen_gateway::domain::DatasetRegistration;
use unseen_gateway::identity::{CertificateAuthority, Principal, Role};
use unseen_gateway::{Domain, ServerHandle, TlsMaterial};
use unseen_runtime::Mode;

/// Someone of `organisation` acting as `role`.
pub fn principal(organisation: &str, role: Role) -> Principal {
    Principal { organisation: organisation.into(), name: "someone".into(), role }
}

/// A domain's gateway served over mTLS on a port the OS picks, with the CA that issues the
/// identities its clients connect with.
pub struct Gateway {
    pub server: ServerHandle,
    authority: CertificateAuthority,
}

impl Gateway {
    /// Serves `domain` with a fresh CA.
    pub async fn serve(domain: Arc<Domain>) -> Self {
        let authority = CertificateAuthority::generate("test domain CA").expect("a CA");
        let pem = authority.issue_server(&["localhost", "127.0.0.1"]).expect("a server certificate");
        let tls =
            TlsMaterial { ca_pem: authority.ca_pem(), cert_pem: pem.cert_pem, key_pem: pem.key_pem, crl_pem: None };
        let server = unseen_gateway::serve(domain, "127.0.0.1:0".parse().expect("address"), &tls).await.expect("serve");
        Self { server, authority }
    }

    /// A connection as `principal`, with an identity the CA issues for it.
    pub async fn connect(&self, principal: Principal) -> tonic::transport::Channel {
        let pem = self.authority.issue_client(&principal).expect("an identity");
        let tls = TlsMaterial {
            ca_pem: self.authority.ca_pem(),
            cert_pem: pem.cert_pem,
            key_pem: pem.key_pem,
            crl_pem: None,
        };
        unseen_gateway::connect(&self.server.address.to_string(), &tls).await.expect("connect")
    }
}

/// Registers synthetic `enterprise` (`enterprises` companies) and twelve months of
/// `electricity` as the provider `bureau`, writing the files under `dir`.
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

/// Files `application` as `developer` (for its organisation) and has the operator approve it
/// into a grant.
pub async fn granted(
    domain: &Domain,
    developer: &Principal,
    mut application: unseen_policy::ScenarioApplication,
) -> unseen_policy::Grant {
    application.developer = developer.organisation.clone();
    let operator = principal("operator", Role::Operator);
    let scenario = domain.submit_scenario(developer, application).await.expect("submit");
    domain.decide_scenario(&operator, &scenario, true, "ok").await.expect("decide").expect("granted")
}

/// Uploads the green-energy module under `grant_id`, runs it on the production data and
/// waits for it to succeed; the job id.
pub async fn green_energy_job(domain: &Arc<Domain>, developer: &Principal, grant_id: &str) -> String {
    let module = domain
        .upload_module(developer, grant_id, unseen_samples::modules::GREEN_ENERGY.to_vec())
        .await
        .expect("upload");
    let job = domain.run_job(developer, grant_id, &module.hash, Mode::Production, "").await.expect("run");
    let finished = domain.job(developer, &job, Duration::from_secs(120)).await.expect("job");
    assert_eq!(finished.state, "succeeded", "{}", finished.error);
    job
}

/// A domain in a child process (this test binary run again), killed however the test ends.
pub struct ChildDomain(pub std::process::Child);

impl Drop for ChildDomain {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `test` of this binary again as a child with `env` set to `dir`; the lines it prints
/// that start with `marker` arrive, without the marker, on the receiver.
pub fn spawn_child(
    test: &str,
    env: &str,
    dir: &Path,
    marker: &'static str,
) -> (ChildDomain, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let process = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture"])
        .env(env, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the child domain");
    let mut process = ChildDomain(process);
    let stdout = process.0.stdout.take().expect("piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(marker) {
                let _ = sender.send(rest.to_string());
            }
        }
    });
    (process, receiver)
}
