//! `unseen demo`: the whole 可用不可见 flow on synthetic data, in a temporary domain, with every
//! role talking to an in-process gateway over gRPC with mTLS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tonic::transport::Channel;
use unseen_gateway::TlsMaterial;
use unseen_gateway::identity::{CertificateAuthority, Principal, Role};
use unseen_policy::{ReviewReport, ScenarioApplication};
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_proto::v1::operator_client::OperatorClient;
use unseen_proto::v1::regulator_client::RegulatorClient;

/// Options of `unseen demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print one JSON document instead of the readable report.
    #[arg(long)]
    json: bool,
    /// Keep the domain in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// People in the synthetic population register.
    #[arg(long, default_value_t = 20_000)]
    people: usize,
    /// Enterprises in the synthetic enterprise register (12 months of electricity each).
    #[arg(long, default_value_t = 2_000)]
    enterprises: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// The demo's machine-readable result.
#[derive(Debug, Default, Serialize)]
pub struct DemoReport {
    /// The domain directory.
    pub domain_dir: String,
    /// Datasets registered.
    pub datasets: Vec<String>,
    /// Outputs that left the domain, with their release ids.
    pub released: Vec<Released>,
    /// Outputs that were blocked, with the rules that blocked them.
    pub blocked: Vec<Blocked>,
    /// Queries refused inside the domain.
    pub refused_queries: Vec<Refused>,
    /// Cells withheld from released outputs (threshold).
    pub suppressed_cells: u64,
    /// Rows the developer saw in sample mode.
    pub sample_rows: u64,
    /// The release bundle's signature and data hash verified under the domain key.
    pub release_verified: bool,
    /// The regulator's offline verification of the audit-log export.
    pub audit_verified: bool,
    /// Entries in the audit log.
    pub audit_entries: u64,
    /// Over the wire: the release's audit entries proved included in the final checkpoint, and
    /// the final checkpoint proved consistent with one taken early in the run.
    pub audit_proofs_verified: bool,
}

/// A released output.
#[derive(Debug, Serialize)]
pub struct Released {
    pub output: String,
    pub release_id: String,
    pub rows: u64,
    pub suppressed_cells: u64,
    pub approver: String,
    pub bundle_dir: String,
}

/// A blocked output.
#[derive(Debug, Serialize)]
pub struct Blocked {
    pub output: String,
    pub job_id: String,
    pub rules: Vec<String>,
    pub figures: Vec<String>,
}

/// A refused query.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub job_id: String,
    pub rule: String,
    pub message: String,
}

struct Say {
    quiet: bool,
}

impl Say {
    fn step(&self, text: impl AsRef<str>) {
        if !self.quiet {
            println!("▸ {}", text.as_ref());
        }
    }
    fn detail(&self, text: impl AsRef<str>) {
        if !self.quiet {
            for line in text.as_ref().lines() {
                println!("    {line}");
            }
        }
    }
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let report = runtime.block_on(run_demo(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    let ok = !report.released.is_empty()
        && !report.blocked.is_empty()
        && report.audit_verified
        && report.audit_proofs_verified
        && report.release_verified;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_summary(report: &DemoReport) {
    println!();
    println!("Summary");
    for released in &report.released {
        println!(
            "  released  {:<28} {} rows, {} cells suppressed, release {} (approved by {})",
            released.output, released.rows, released.suppressed_cells, released.release_id, released.approver
        );
    }
    for blocked in &report.blocked {
        println!("  blocked   {:<28} by {}", blocked.output, blocked.rules.join(", "));
    }
    for refused in &report.refused_queries {
        println!("  refused   query in {:<19} by {}", refused.job_id, refused.rule);
    }
    println!(
        "  audit log {} entries, verified offline: {}; release proved included and history consistent: {}",
        report.audit_entries,
        if report.audit_verified { "yes" } else { "NO" },
        if report.audit_proofs_verified { "yes" } else { "NO" }
    );
    println!("  domain    {}", report.domain_dir);
}

struct Clients {
    provider: pb::provider_client::ProviderClient<Channel>,
    developer: DeveloperClient<Channel>,
    intruder: DeveloperClient<Channel>,
    bank: DeveloperClient<Channel>,
    operator: OperatorClient<Channel>,
    regulator: RegulatorClient<Channel>,
}

fn principal(organisation: &str, name: &str, role: Role) -> Principal {
    Principal { organisation: organisation.into(), name: name.into(), role }
}

async fn run_demo(args: &DemoArgs) -> Result<DemoReport> {
    let say = Say { quiet: args.json };
    let temporary;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temporary =
                tempfile::Builder::new().prefix("unseen-demo-").tempdir().context("creating a temporary directory")?;
            temporary.path().to_path_buf()
        }
    };
    let mut report = DemoReport { domain_dir: dir.display().to_string(), ..DemoReport::default() };

    say.step("Creating a domain: CA, server certificate and one identity per role (mTLS)");
    let authority = CertificateAuthority::generate("unseen demo domain CA")?;
    let server_pem = authority.issue_server(&["localhost", "127.0.0.1"])?;
    let server_tls = TlsMaterial {
        ca_pem: authority.ca_pem(),
        cert_pem: server_pem.cert_pem,
        key_pem: server_pem.key_pem,
        crl_pem: None,
    };
    let identity = |who: &Principal| -> Result<TlsMaterial> {
        let pem = authority.issue_client(who)?;
        Ok(TlsMaterial { ca_pem: authority.ca_pem(), cert_pem: pem.cert_pem, key_pem: pem.key_pem, crl_pem: None })
    };
    let provider = principal("huzhou-data-bureau", "registrar", Role::Provider);
    let developer = principal("greenfin-analytics", "analyst", Role::Developer);
    let intruder = principal("shadow-analytics", "analyst", Role::Developer);
    let bank = principal("huzhou-rural-bank", "credit-officer", Role::Developer);
    let operator = principal("huzhou-data-group", "reviewer", Role::Operator);
    let regulator = principal("zhejiang-cac", "inspector", Role::Regulator);

    let domain = Arc::new(unseen_gateway::Domain::open(&dir.join("domain"), "unseen-demo.huzhou").await?);
    let public_key = domain.public_key();
    let server = unseen_gateway::serve(domain.clone(), "127.0.0.1:0".parse()?, &server_tls).await?;
    let address = server.address.to_string();
    say.detail(format!("gateway listening on {address} (mTLS, client certificates required)"));
    let channel = |who: Principal| {
        let address = address.clone();
        let tls = identity(&who);
        async move { Ok::<_, anyhow::Error>(unseen_gateway::connect(&address, &tls?).await?) }
    };
    let limit = unseen_gateway::server::MAX_MESSAGE_BYTES;
    let mut clients = Clients {
        provider: pb::provider_client::ProviderClient::new(channel(provider).await?).max_encoding_message_size(limit),
        developer: DeveloperClient::new(channel(developer).await?)
            .max_encoding_message_size(limit)
            .max_decoding_message_size(limit),
        intruder: DeveloperClient::new(channel(intruder).await?)
            .max_encoding_message_size(limit)
            .max_decoding_message_size(limit),
        bank: DeveloperClient::new(channel(bank).await?).max_decoding_message_size(limit),
        operator: OperatorClient::new(channel(operator).await?).max_decoding_message_size(limit),
        regulator: RegulatorClient::new(channel(regulator).await?).max_decoding_message_size(limit),
    };

    say.step(format!(
        "Provider registers synthetic public data (seed {}): {} residents, {} enterprises, 12 months of electricity",
        args.seed, args.people, args.enterprises
    ));
    let data_dir = dir.join("synthetic");
    std::fs::create_dir_all(&data_dir)?;
    let population = unseen_samples::data::population(args.people, args.seed);
    let enterprises = unseen_samples::data::enterprises(args.enterprises, args.seed);
    let electricity = unseen_samples::data::electricity(&enterprises, 12, args.seed);
    for (dataset, batch) in [
        (unseen_samples::scenarios::population(), &population),
        (unseen_samples::scenarios::enterprise(), &enterprises),
        (unseen_samples::scenarios::electricity(), &electricity),
    ] {
        let name = dataset.name.as_str();
        let path = data_dir.join(format!("{name}.parquet"));
        unseen_samples::data::write_parquet(batch, &path)?;
        let parquet = std::fs::read(&path)?;
        let reply = clients
            .provider
            .register_dataset(pb::RegisterDatasetRequest {
                name: name.into(),
                grade: wire_name(&dataset.grade),
                subject_kind: dataset.subject_kind.as_ref().map(wire_name).unwrap_or_default(),
                columns: dataset
                    .columns
                    .iter()
                    .map(|column| pb::ColumnTag { name: column.name.clone(), tag: wire_name(&column.tag) })
                    .collect(),
                parquet,
            })
            .await?
            .into_inner();
        let sample = reply.sample.clone().unwrap_or_default();
        let risk = serde_json::from_str::<unseen_policy::sample::SampleReport>(&sample.report_json)
            .map(|report| {
                format!(
                    "{:.1}% single out, {:.1}% recovered{}",
                    100.0 * report.risk.unique_share,
                    100.0 * report.risk.recovered_share,
                    if report.epsilon > 0.0 { format!(", ε = {}", report.epsilon) } else { String::new() }
                )
            })
            .unwrap_or_default();
        say.detail(format!(
            "{:<16} {:>7} rows  sha256 {}…  sample: {} {:>6} rows ({risk}){}",
            reply.dataset,
            reply.rows,
            &reply.content_hash[..16],
            sample.kind,
            reply.sample_rows,
            if sample.offered { "" } else { " NOT offered" }
        ));
        report.datasets.push(reply.dataset);
    }
    // The regulator keeps a checkpoint from early on; the final log must prove consistent with it.
    let early_checkpoint = clients.regulator.latest_checkpoint(pb::CheckpointRequest {}).await?.into_inner();

    say.step("Developer applies for the green-energy scenario (绿色能源); operator approves it into a grant");
    let green = unseen_samples::scenarios::green_energy();
    let green_grant = apply_and_approve(&mut clients.developer, &mut clients.operator, &green, &say).await?;

    say.step("A second developer applies for a resident-verification scenario (数据核验) that reads id_card inside the domain");
    let verification = unseen_samples::scenarios::resident_verification();
    let verification_grant =
        apply_and_approve(&mut clients.intruder, &mut clients.operator, &verification, &say).await?;

    say.step("Developer uploads the green-energy module (compiled from samples/modules/green-energy)");
    let green_module = upload(&mut clients.developer, &green_grant, unseen_samples::modules::GREEN_ENERGY).await?;
    say.detail(format!("module sha256 {}… accepted", &green_module[..16]));

    say.step("Sample mode (样本): the module runs on the development sample (synthetic or k-anonymous, measured by attack); outputs come straight back");
    let sample = run_job(&mut clients.developer, &green_grant, &green_module, "sample", "").await?;
    for output in &sample.outputs {
        report.sample_rows += output.rows;
        let text = String::from_utf8_lossy(&output.content);
        say.detail(format!("output \"{}\": {} rows; first lines:", output.name, output.rows));
        say.detail(text.lines().take(4).map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n"));
    }
    for line in &sample.guest_log {
        say.detail(format!("guest log: {line}"));
    }

    say.step("Production mode (正式): the same module bytes run on the real data; outputs are held");
    let production = run_job(&mut clients.developer, &green_grant, &green_module, "production", "").await?;
    for output in &production.outputs {
        say.detail(format!(
            "output \"{}\": {} rows held in the domain, {} groups below k withheld by the engine; guest log withheld ({} lines visible)",
            output.name,
            output.rows,
            output.suppressed_groups,
            production.guest_log.len()
        ));
    }
    if let Ok(metering) = serde_json::from_str::<serde_json::Value>(&production.metering_json) {
        let figure = |name: &str| metering[name].as_u64().unwrap_or(0);
        say.detail(format!(
            "metered for pricing (按成本定价): {} fuel units, {:.1} MiB peak memory, {} rows ({:.1} MiB) scanned, {:.1} ms in the module, {:.1} ms in queries, {} ms in all",
            figure("fuel"),
            figure("peak_memory_bytes") as f64 / 1048576.0,
            figure("rows_scanned"),
            figure("bytes_scanned") as f64 / 1048576.0,
            figure("guest_ns") as f64 / 1e6,
            figure("host_ns") as f64 / 1e6,
            figure("wall_ms")
        ));
    }

    say.step("Developer requests egress (出域); the reviewer checks every cell, the operator approves");
    let egress = clients
        .developer
        .request_egress(pb::RequestEgressRequest {
            job_id: production.job_id.clone(),
            output_name: "kwh_by_industry_district".into(),
        })
        .await?
        .into_inner();
    let review: ReviewReport = serde_json::from_str(&egress.report_json)?;
    say.detail(review.render());
    let egress = if egress.state == "awaiting_operator" {
        clients
            .operator
            .decide_egress(pb::DecideRequest {
                id: egress.egress_id.clone(),
                approve: true,
                reason: "aggregates only; every released cell has at least k enterprises".into(),
            })
            .await?
            .into_inner()
    } else {
        egress
    };
    if egress.release_id.is_empty() {
        bail!("the green-energy output was not released: {}", egress.state);
    }

    say.step(format!(
        "Release {} is signed by the domain key; the developer downloads and verifies it",
        egress.release_id
    ));
    let bundle = clients
        .developer
        .get_release(pb::GetReleaseRequest { release_id: egress.release_id.clone() })
        .await?
        .into_inner();
    let bundle_dir = dir.join(format!("release-{}", bundle.release_id));
    write_bundle(&bundle_dir, &bundle)?;
    let manifest = unseen_gateway::verify_release(&bundle.manifest, &bundle.signature, &bundle.data, &public_key)?;
    report.release_verified = true;
    say.detail(format!(
        "manifest: grant {} ({}…), module {}…, data {}…, approver {}",
        manifest.grant_id,
        &manifest.grant_sha256[..12],
        &manifest.module_sha256[..12],
        &manifest.data_sha256[..12],
        manifest.approver
    ));
    say.detail(format!("bundle written to {}", bundle_dir.display()));
    let released_rows = String::from_utf8_lossy(&bundle.data).lines().count().saturating_sub(1) as u64;
    report.suppressed_cells += review.cells_suppressed;
    report.released.push(Released {
        output: manifest.output.clone(),
        release_id: manifest.release_id.clone(),
        rows: released_rows,
        suppressed_cells: review.cells_suppressed,
        approver: manifest.approver.clone(),
        bundle_dir: bundle_dir.display().to_string(),
    });

    verify_enterprises(&mut clients, &enterprises, &public_key, &dir, &say, &mut report).await?;

    say.step("Hostile module, attempt 1: run under the green-energy grant and read the population register");
    let hostile_green = upload(&mut clients.developer, &green_grant, unseen_samples::modules::HOSTILE_ID_DUMP).await?;
    let refused = run_job(&mut clients.developer, &green_grant, &hostile_green, "production", "").await?;
    for query in refused.queries.iter().filter(|query| query.outcome != "allowed") {
        say.detail(format!("query {}", query.message));
        report.refused_queries.push(Refused {
            job_id: refused.job_id.clone(),
            rule: query.outcome.clone(),
            message: query.message.clone(),
        });
    }
    say.detail(format!("job {} {}: {}", refused.job_id, refused.state, refused.error));

    say.step("Hostile module, attempt 2: its own grant lets it read id_card inside the domain; it emits the raw rows");
    let hostile = upload(&mut clients.intruder, &verification_grant, unseen_samples::modules::HOSTILE_ID_DUMP).await?;
    let dump = run_job(&mut clients.intruder, &verification_grant, &hostile, "production", "").await?;
    for output in &dump.outputs {
        let egress = clients
            .intruder
            .request_egress(pb::RequestEgressRequest { job_id: dump.job_id.clone(), output_name: output.name.clone() })
            .await?
            .into_inner();
        let review: ReviewReport = serde_json::from_str(&egress.report_json)?;
        say.detail(review.render());
        if egress.state == "blocked" {
            report.blocked.push(Blocked {
                output: output.name.clone(),
                job_id: dump.job_id.clone(),
                rules: review.blocking_rules().iter().map(|rule| rule.to_string()).collect(),
                figures: review
                    .rules
                    .iter()
                    .filter(|rule| rule.outcome == unseen_policy::RuleOutcome::Blocked)
                    .map(|rule| rule.figure.clone())
                    .collect(),
            });
        } else {
            bail!("the hostile output \"{}\" was not blocked: {}", output.name, egress.state);
        }
    }

    say.step("Regulator exports the audit log and verifies it offline with the domain's public key");
    let checkpoint = clients.regulator.latest_checkpoint(pb::CheckpointRequest {}).await?.into_inner();
    say.detail(checkpoint.checkpoint.trim_end());
    let export = clients.regulator.export_audit(pb::ExportAuditRequest::default()).await?.into_inner();
    let export_path = dir.join("audit-export.json");
    std::fs::write(&export_path, &export.export_json)?;
    let parsed: unseen_audit::Export = serde_json::from_str(&export.export_json)?;
    let key: [u8; 32] = public_key.as_slice().try_into().context("the domain key is not 32 bytes")?;
    let verified = unseen_audit::verify_export(&parsed, &key)?;
    report.audit_verified = verified.size == checkpoint.size;
    report.audit_entries = verified.size;
    say.detail(format!(
        "{} entries verified, root {}; export at {}",
        verified.size,
        verified.root_hex,
        export_path.display()
    ));
    say.detail(format!("domain public key: {}", hex::encode(&public_key)));
    if let Some(release) = report.released.first() {
        report.audit_proofs_verified = prove_release_and_history(
            &mut clients.regulator,
            &release.release_id,
            &early_checkpoint,
            &checkpoint,
            &parsed.key_name,
            &key,
        )
        .await?;
        say.detail(format!(
            "release {} proved in the log of {} entries, and that log proved consistent with the checkpoint of {} taken before the scenario was filed",
            release.release_id, checkpoint.size, early_checkpoint.size
        ));
    }

    server.shutdown().await?;
    if args.dir.is_none() {
        report.domain_dir = format!("{} (temporary, removed)", report.domain_dir);
    }
    Ok(report)
}

/// A bank's claims about three applicants' companies (数据核验), answered by the domain and
/// released on their own: the first as registered, the second under a wrong name, the third
/// with a credit code the register does not have.
async fn verify_enterprises(
    clients: &mut Clients,
    register: &datafusion::arrow::array::RecordBatch,
    public_key: &[u8],
    dir: &Path,
    say: &Say,
    report: &mut DemoReport,
) -> Result<()> {
    use datafusion::arrow::array::AsArray;
    say.step("A bank checks applicants' stated company facts against the enterprise register (数据核验); its module reads no column of the register");
    let application = unseen_samples::scenarios::enterprise_verification();
    let grant = apply_and_approve(&mut clients.bank, &mut clients.operator, &application, say).await?;
    let module = upload(&mut clients.bank, &grant, unseen_samples::modules::ENTERPRISE_VERIFICATION).await?;
    let text = |column: &str, row: usize| {
        register.column_by_name(column).map(|values| values.as_string::<i32>().value(row).to_string())
    };
    let (Some(uscc), Some(name), Some(district), Some(other)) =
        (text("uscc", 0), text("name", 0), text("district", 0), text("uscc", 1))
    else {
        bail!("the enterprise register has fewer than two rows");
    };
    let claims = format!(
        "uscc,name,district\n{uscc},{name},{district}\n{other},湖州并不存在有限公司,\n91330500MA0000000X,{name},\n"
    );
    say.detail(format!("claims (the job's parameters):\n  {}", claims.trim_end().replace('\n', "\n  ")));
    let job = run_job(&mut clients.bank, &grant, &module, "production", &claims).await?;
    if job.state != "succeeded" {
        bail!("the verification job {}: {}", job.state, job.error);
    }
    let egress = clients
        .bank
        .request_egress(pb::RequestEgressRequest {
            job_id: job.job_id.clone(),
            output_name: "enterprise_checks".into(),
        })
        .await?
        .into_inner();
    let review: ReviewReport = serde_json::from_str(&egress.report_json)?;
    say.detail(review.render());
    if egress.release_id.is_empty() {
        bail!("the verification answers were not released: {}", egress.state);
    }
    let bundle =
        clients.bank.get_release(pb::GetReleaseRequest { release_id: egress.release_id.clone() }).await?.into_inner();
    let manifest = unseen_gateway::verify_release(&bundle.manifest, &bundle.signature, &bundle.data, public_key)?;
    let bundle_dir = dir.join(format!("release-{}", bundle.release_id));
    write_bundle(&bundle_dir, &bundle)?;
    let answers = String::from_utf8_lossy(&bundle.data);
    say.detail(format!("released answers, verified:\n  {}", answers.trim_end().replace('\n', "\n  ")));
    report.released.push(Released {
        output: manifest.output.clone(),
        release_id: manifest.release_id.clone(),
        rows: answers.lines().count().saturating_sub(1) as u64,
        suppressed_cells: review.cells_suppressed,
        approver: manifest.approver.clone(),
        bundle_dir: bundle_dir.display().to_string(),
    });
    Ok(())
}

/// What a regulator checks online, trusting nothing but the domain's key: the audit entries
/// about `release_id` are included in the `latest` checkpoint, and `latest` extends `early`.
async fn prove_release_and_history(
    regulator: &mut RegulatorClient<Channel>,
    release_id: &str,
    early: &pb::CheckpointReply,
    latest: &pb::CheckpointReply,
    key_name: &str,
    key: &[u8; 32],
) -> Result<bool> {
    use unseen_audit::merkle;
    let early = unseen_audit::verify_checkpoint(&early.checkpoint, key_name, key)?;
    let latest = unseen_audit::verify_checkpoint(&latest.checkpoint, key_name, key)?;
    let hashes = |reply: pb::ProofReply| -> Result<Vec<merkle::Hash>> {
        reply
            .hashes
            .into_iter()
            .map(|hash| hash.try_into().map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes")))
            .collect()
    };
    let about = regulator
        .audit_entries(pb::AuditEntriesRequest { start: 0, end: 0, object_id: release_id.into() })
        .await?
        .into_inner();
    if about.entries.is_empty() {
        bail!("the audit log has no entry about release {release_id}");
    }
    for entry in about.entries {
        let leaf = merkle::leaf_hash(entry.canonical_json.as_bytes());
        let proof = regulator
            .inclusion_proof(pb::InclusionProofRequest { index: entry.index, size: latest.size })
            .await?
            .into_inner();
        if !merkle::verify_inclusion(entry.index, latest.size, &leaf, &hashes(proof)?, &latest.root) {
            bail!("audit entry {} about release {release_id} is not in the signed log", entry.index);
        }
    }
    let proof = regulator
        .consistency_proof(pb::ConsistencyProofRequest { old_size: early.size, new_size: latest.size })
        .await?
        .into_inner();
    if !merkle::verify_consistency(early.size, latest.size, &early.root, &latest.root, &hashes(proof)?) {
        bail!("the log of {} entries does not extend the earlier log of {}", latest.size, early.size);
    }
    Ok(true)
}

async fn apply_and_approve(
    developer: &mut DeveloperClient<Channel>,
    operator: &mut OperatorClient<Channel>,
    application: &ScenarioApplication,
    say: &Say,
) -> Result<String> {
    let submitted = developer
        .submit_scenario(pb::SubmitScenarioRequest { application_json: serde_json::to_string(application)? })
        .await?
        .into_inner();
    let decided = operator
        .decide_scenario(pb::DecideRequest {
            id: submitted.scenario_id.clone(),
            approve: true,
            reason: "purpose, columns and outputs match the scenario".into(),
        })
        .await?
        .into_inner();
    say.detail(format!(
        "scenario {} approved → grant {} (sha256 {}…)",
        submitted.scenario_id,
        decided.grant_id,
        &decided.grant_hash[..16]
    ));
    Ok(decided.grant_id)
}

async fn upload(developer: &mut DeveloperClient<Channel>, grant_id: &str, bytes: &[u8]) -> Result<String> {
    let chunks: Vec<pb::ModuleChunk> = bytes
        .chunks(64 * 1024)
        .enumerate()
        .map(|(index, data)| pb::ModuleChunk {
            grant_id: if index == 0 { grant_id.to_string() } else { String::new() },
            data: data.to_vec(),
        })
        .collect();
    let reply = developer.upload_module(tokio_stream::iter(chunks)).await?.into_inner();
    Ok(reply.module_hash)
}

async fn run_job(
    developer: &mut DeveloperClient<Channel>,
    grant_id: &str,
    module_hash: &str,
    mode: &str,
    params: &str,
) -> Result<pb::JobView> {
    let job = developer
        .run_job(pb::RunJobRequest {
            grant_id: grant_id.into(),
            module_hash: module_hash.into(),
            mode: mode.into(),
            params: params.into(),
        })
        .await?
        .into_inner();
    loop {
        let view =
            developer.get_job(pb::GetJobRequest { job_id: job.job_id.clone(), wait_ms: 30_000 }).await?.into_inner();
        if view.state == "succeeded" || view.state == "failed" {
            return Ok(view);
        }
    }
}

/// The name an enum has on the wire: its serde name (`important`, `person`, `subject`).
fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_string)).unwrap_or_default()
}

pub(crate) fn write_bundle(dir: &Path, bundle: &pb::ReleaseBundle) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("manifest.json"), &bundle.manifest)?;
    std::fs::write(dir.join("manifest.sig"), &bundle.signature)?;
    std::fs::write(dir.join("data.csv"), &bundle.data)?;
    std::fs::write(dir.join("domain.pub"), hex::encode(&bundle.domain_public_key))?;
    Ok(())
}
