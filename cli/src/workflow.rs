//! The workflow's client commands over the gateway's gRPC API, one group per object: datasets
//! (provider), scenarios (developer and operator), modules, jobs, egress requests and releases.
//! Each command says what happened and what comes next; `--json` prints the same as one
//! document.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use unseen_gateway::identity::Role;
use unseen_policy::{ColumnSpec, ColumnTag, DatasetVersion, Grade, ReviewReport, ScenarioApplication, SubjectKind};
use unseen_proto::v1 as pb;
use unseen_proto::v1::developer_client::DeveloperClient;
use unseen_proto::v1::operator_client::OperatorClient;
use unseen_proto::v1::provider_client::ProviderClient;

use crate::client::{Client, ClientArgs, Progress, embedded_json, emit, wire_name};

/// Exit status of `job run --wait` and `job show --wait` when the job did not succeed.
const EXIT_JOB_DID_NOT_SUCCEED: u8 = 4;
/// Exit status of egress commands: the output waits for an operator.
const EXIT_AWAITING_OPERATOR: u8 = 10;
/// Exit status of egress commands: the output may not leave (blocked or rejected).
const EXIT_NOT_RELEASED: u8 = 11;
/// Module bytes per upload message.
pub(crate) const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// Longest one `GetJob` call waits before the client asks again.
const WAIT_SLICE_MS: u32 = 10_000;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

pub(crate) fn developer(client: &Client) -> DeveloperClient<tonic::transport::Channel> {
    let limit = unseen_gateway::server::MAX_MESSAGE_BYTES;
    DeveloperClient::new(client.channel.clone()).max_encoding_message_size(limit).max_decoding_message_size(limit)
}

pub(crate) fn operator(client: &Client) -> OperatorClient<tonic::transport::Channel> {
    OperatorClient::new(client.channel.clone()).max_decoding_message_size(unseen_gateway::server::MAX_MESSAGE_BYTES)
}

/// An operator's decision on one object, with the reason the audit log keeps (责任可究).
#[derive(Debug, Args)]
pub(crate) struct Decision {
    /// The object's id (`s-…`, `e-…`, `g-…`, `i-…`).
    pub(crate) id: String,
    /// Why: what you checked. The audit log keeps it; on a rejection the developer sees it.
    #[arg(long)]
    pub(crate) reason: String,
}

// ------------------------------------------------------------------------------------ datasets

/// Datasets (数据资源): a provider registers a new immutable version.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: DatasetCommand,
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Register a Parquet file as the next version of a dataset; the domain derives its
    /// desensitised sample. Column tags come from --catalog or from --column.
    #[command(after_help = "Examples:\n  \
        unseen dataset register try/enterprise.parquet --catalog try/catalog.json\n  \
        unseen dataset register kwh.parquet --name electricity --grade important --subject-kind enterprise \\\n    \
        --column uscc=subject --column month=public --column kwh=sensitive")]
    Register {
        /// The data, a Parquet file.
        file: PathBuf,
        /// The dataset's name, which is also the table modules query [default: the file's stem].
        #[arg(long)]
        name: Option<String>,
        /// A catalog (JSON list of dataset versions, as `unseen check --write-example` writes)
        /// whose entry of this name gives the grade, subject kind and column tags.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Grade (分类分级): general, important or core.
        #[arg(long, conflicts_with = "catalog")]
        grade: Option<String>,
        /// What the subject column identifies: person or enterprise.
        #[arg(long, conflicts_with = "catalog")]
        subject_kind: Option<String>,
        /// A column and its tag, `NAME=TAG` (subject, identifier, quasi, sensitive, public);
        /// repeat for every column.
        #[arg(long = "column", value_name = "NAME=TAG", conflicts_with = "catalog")]
        columns: Vec<String>,
    },
    /// (operator) Derive or show a dataset version's development sample (样本) of a kind, with
    /// what each column holds and the risk measured by attack; --offer makes developers'
    /// sample-mode jobs read it, --withdraw takes it away. Each kind is derived once per version
    /// (a synthetic sample spends its ε once). Every dataset starts with a synthetic sample;
    /// general data with a subject column may offer de-identified real rows instead, important
    /// and core data only synthetic ones.
    #[command(after_help = "Examples:\n  \
        unseen dataset sample enterprise@v1 --kind deidentified\n  \
        unseen dataset sample enterprise@v1 --kind deidentified --offer --reason \"models need real joint distributions\"\n  \
        unseen dataset sample enterprise@v1 --kind deidentified --withdraw --reason \"no real record in development\"")]
    Sample {
        /// The dataset version, `name@vN`.
        dataset: String,
        /// synthetic (no real record, drawn from differentially private marginals) or
        /// deidentified (k-anonymous real rows with perturbed values).
        #[arg(long)]
        kind: String,
        /// Offer it to developers from now on (refused when its risk is over the grade's
        /// thresholds).
        #[arg(long, requires = "reason", conflicts_with = "withdraw")]
        offer: bool,
        /// Withdraw it: developers get no sample of the dataset until one is offered again.
        #[arg(long, requires = "reason")]
        withdraw: bool,
        /// Why (recorded in the audit log); required with --offer and --withdraw.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Runs `unseen dataset …`.
pub fn dataset(args: DatasetArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        match args.command {
            DatasetCommand::Sample { dataset, kind, offer, withdraw, reason } => {
                let client = Client::connect(&args.client, Role::Operator, "dataset sample").await?;
                let mut progress = Progress::new(client.json);
                progress.show(&format!("deriving and measuring the {kind} sample of {dataset}"));
                let view = operator(&client)
                    .derive_sample(pb::DeriveSampleRequest {
                        dataset: dataset.clone(),
                        kind: kind.clone(),
                        offer,
                        withdraw,
                        reason: reason.unwrap_or_default(),
                    })
                    .await
                    .map_err(|status| client.refused(&format!("deriving the {kind} sample of {dataset}"), status))?
                    .into_inner();
                progress.finish();
                emit(client.json, &sample_json(&view), || sample_text(&view))?;
            }
            DatasetCommand::Register { file, name, catalog, grade, subject_kind, columns } => {
                let client = Client::connect(&args.client, Role::Provider, "dataset register").await?;
                let tags = TableTags { name, catalog, grade, subject_kind, columns };
                let (spec, parquet) = tagged_table(&file, tags)?;
                // The registering organisation is the provider (数据提供单位); a catalog entry
                // naming another is a mistake the domain would otherwise paper over.
                let organisation = &client.principal.organisation;
                if !spec.provider.is_empty() && &spec.provider != organisation {
                    bail!(
                        "the catalog names \"{}\" as the provider of {}, but you register for \"{organisation}\"; \
                         a provider registers only its own data",
                        spec.provider,
                        spec.name
                    );
                }
                let name = spec.name.clone();
                let mut progress = Progress::new(client.json);
                progress.show(&format!("registering {name} ({:.1} MiB)", parquet.len() as f64 / 1_048_576.0));
                let reply = ProviderClient::new(client.channel.clone())
                    .max_encoding_message_size(unseen_gateway::server::MAX_MESSAGE_BYTES)
                    .register_dataset(pb::RegisterDatasetRequest {
                        name: spec.name.clone(),
                        grade: wire_name(&spec.grade),
                        subject_kind: spec.subject_kind.as_ref().map(wire_name).unwrap_or_default(),
                        columns: spec
                            .columns
                            .iter()
                            .map(|column| pb::ColumnTag { name: column.name.clone(), tag: wire_name(&column.tag) })
                            .collect(),
                        parquet,
                    })
                    .await
                    .map_err(|status| client.refused(&format!("registering {name}"), status))?
                    .into_inner();
                progress.finish();
                let sample = reply.sample.unwrap_or_default();
                let value = json!({
                    "dataset": reply.dataset, "content_hash": reply.content_hash,
                    "rows": reply.rows, "sample_rows": reply.sample_rows, "sample": sample_json(&sample),
                });
                emit(client.json, &value, || {
                    format!(
                        "registered {}: {} rows, sha256 {}\n{}",
                        reply.dataset,
                        reply.rows,
                        reply.content_hash,
                        sample_text(&sample)
                    )
                })?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn sample_json(view: &pb::SampleView) -> serde_json::Value {
    json!({
        "dataset": view.dataset, "kind": view.kind, "offered": view.offered,
        "content_hash": view.content_hash, "report": embedded_json(&view.report_json),
    })
}

/// The sample report as an operator reads it, and whether developers get this sample.
fn sample_text(view: &pb::SampleView) -> String {
    let report = serde_json::from_str::<unseen_policy::sample::SampleReport>(&view.report_json)
        .map(|report| report.render())
        .unwrap_or_else(|_| format!("sample of {} ({})\n", view.dataset, view.kind));
    let status = if view.offered {
        "developers' sample-mode jobs read this sample"
    } else {
        "developers do not get this sample (an operator offers one with `unseen dataset sample … --offer`)"
    };
    format!("{}  {status}", report)
}

/// How a command line names and tags a table it sends: a name (default: the file's stem) and
/// the tags, from a catalog or from options.
pub(crate) struct TableTags {
    pub(crate) name: Option<String>,
    pub(crate) catalog: Option<PathBuf>,
    pub(crate) grade: Option<String>,
    pub(crate) subject_kind: Option<String>,
    pub(crate) columns: Vec<String>,
}

/// The table's catalog entry as `tags` state it, and its Parquet bytes.
pub(crate) fn tagged_table(file: &Path, tags: TableTags) -> Result<(DatasetVersion, Vec<u8>)> {
    let name = match tags.name {
        Some(name) => name,
        None => file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .ok_or_else(|| anyhow!("give the table a --name"))?
            .to_string(),
    };
    let spec = match &tags.catalog {
        Some(catalog) => catalog_entry(catalog, &name)?,
        None => spec_from_options(&name, tags.grade.as_deref(), tags.subject_kind.as_deref(), &tags.columns)?,
    };
    let parquet = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if !parquet.starts_with(b"PAR1") {
        bail!("{} is not a Parquet file; convert it first (the domain takes Parquet)", file.display());
    }
    Ok((spec, parquet))
}

fn catalog_entry(catalog: &Path, name: &str) -> Result<DatasetVersion> {
    let entries = crate::documents::read_catalog(catalog)?;
    let names: Vec<String> = entries.iter().map(|entry| entry.name.clone()).collect();
    entries.into_iter().find(|entry| entry.name == name).ok_or_else(|| {
        anyhow!("{} has no dataset \"{name}\" (it has {}); pass --name", catalog.display(), names.join(", "))
    })
}

fn parse_wire<T: serde::de::DeserializeOwned>(what: &str, value: &str, allowed: &str) -> Result<T> {
    serde_json::from_value(Value::String(value.to_string()))
        .map_err(|_| anyhow!("{what} \"{value}\" is not one of {allowed}"))
}

fn spec_from_options(
    name: &str,
    grade: Option<&str>,
    subject_kind: Option<&str>,
    columns: &[String],
) -> Result<DatasetVersion> {
    let grade: Grade = parse_wire("--grade", grade.unwrap_or("general"), "general, important, core")?;
    let subject_kind: Option<SubjectKind> =
        subject_kind.map(|kind| parse_wire("--subject-kind", kind, "person, enterprise")).transpose()?;
    if columns.is_empty() {
        bail!("say how each column is tagged with --column NAME=TAG, or take the tags from --catalog");
    }
    let columns = columns
        .iter()
        .map(|text| {
            let (column, tag) = text
                .split_once('=')
                .ok_or_else(|| anyhow!("--column \"{text}\" is not NAME=TAG, e.g. kwh=sensitive"))?;
            let tag: ColumnTag = parse_wire(
                &format!("the tag of column {column}"),
                tag.trim(),
                "subject, identifier, quasi, sensitive, public",
            )?;
            Ok(ColumnSpec { name: column.trim().to_string(), tag })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DatasetVersion {
        name: name.to_string(),
        version: 0,
        provider: String::new(),
        grade,
        content_hash: String::new(),
        subject_kind,
        columns,
    })
}

// ----------------------------------------------------------------------------------- scenarios

/// Scenarios (应用场景): developers apply, operators approve them into grants.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Submit a scenario application (JSON) for an operator to decide (developer).
    Submit {
        /// The application: purpose, datasets with columns and access modes, outputs.
        file: PathBuf,
    },
    /// Scenarios with their state and grant: all of them for an operator, your own for a
    /// developer.
    List {
        /// Only those in this state: submitted, approved or rejected.
        #[arg(long)]
        state: Option<String>,
    },
    /// One scenario, with its application.
    Show {
        /// The scenario id (`s-…`).
        id: String,
    },
    /// Draft an application from the queries you plan to run, offline: the datasets, columns
    /// and narrowest access modes they need, and one output per query. The domain's own
    /// engine plans each query; edit the title, purpose, disclosure and limits, then submit.
    #[command(after_help = "Examples:\n  \
        unseen check --write-example ./try\n  \
        unseen scenario draft --data ./try --out ./try/draft.json --title \"Green energy\" \\\n    \
        --sql \"SELECT e.industry, SUM(u.kwh) AS total_kwh FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry\" \\\n    \
        --output kwh_by_industry")]
    Draft {
        /// The data to plan against: a directory with `catalog.json` and a `<dataset>.parquet`
        /// (or `.csv`) per dataset — a sample, or `unseen check --write-example`'s files.
        #[arg(long)]
        data: PathBuf,
        /// A query you plan to run; repeat for each.
        #[arg(long = "sql", required = true)]
        queries: Vec<String>,
        /// The output each query's result is released as, in the order of --sql
        /// [default: result_1, result_2, …].
        #[arg(long = "output")]
        outputs: Vec<String>,
        /// The application's short title.
        #[arg(long, default_value = "TODO: a short title")]
        title: String,
        /// What the outputs are for, in your words (the operator reads it).
        #[arg(long, default_value = "TODO: what the outputs are for and who receives them")]
        purpose: String,
        /// Write the application here (JSON) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Approve a submitted scenario; its application is frozen into a grant (operator).
    Approve(Decision),
    /// Reject a submitted scenario (operator).
    Reject(Decision),
}

fn scenario_json(view: &pb::ScenarioView) -> Value {
    json!({
        "scenario_id": view.scenario_id, "developer": view.developer, "state": view.state,
        "reason": view.reason, "grant_id": view.grant_id,
        "application": embedded_json(&view.application_json),
        "risks": view.risks.iter().map(|risk| json!({
            "dataset": risk.dataset, "column": risk.column, "mode": risk.mode, "reason": risk.reason,
        })).collect::<Vec<_>>(),
    })
}

fn scenario_line(view: &pb::ScenarioView) -> String {
    let purpose = serde_json::from_str::<ScenarioApplication>(&view.application_json)
        .map(|application| application.title)
        .unwrap_or_default();
    let grant = if view.grant_id.is_empty() { String::new() } else { format!(" → grant {}", view.grant_id) };
    let reason = if view.state == "rejected" { format!(" ({})", view.reason) } else { String::new() };
    format!("{:<8} {:<10} {:<24} {purpose}{grant}{reason}", view.scenario_id, view.state, view.developer)
}

async fn list_scenarios(client: &Client, state: &str) -> Result<Vec<pb::ScenarioView>> {
    let request = pb::ListRequest { state: state.to_string() };
    let reply = match client.principal.role {
        Role::Operator => operator(client).list_scenarios(request).await,
        _ => developer(client).list_scenarios(request).await,
    };
    Ok(reply.map_err(|status| client.refused("listing scenarios", status))?.into_inner().scenarios)
}

/// Runs `unseen scenario …`.
pub fn scenario(args: ScenarioArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        match args.command {
            ScenarioCommand::Submit { file } => {
                let client = Client::connect(&args.client, Role::Developer, "scenario submit").await?;
                let application = crate::documents::read_application(&file)?;
                let reply = developer(&client)
                    .submit_scenario(pb::SubmitScenarioRequest {
                        application_json: serde_json::to_string(&application)?,
                    })
                    .await
                    .map_err(|status| client.refused("the scenario", status))?
                    .into_inner();
                let value = json!({ "scenario_id": reply.scenario_id, "state": reply.state });
                emit(client.json, &value, || {
                    format!(
                        "scenario {} submitted: \"{}\"\nnext: an operator decides it (unseen scenario approve {0}); \
                         see its state with `unseen scenario list`",
                        reply.scenario_id, application.title
                    )
                })?;
            }
            ScenarioCommand::List { state } => {
                let client =
                    Client::connect_as(&args.client, &[Role::Developer, Role::Operator], "scenario list").await?;
                let scenarios = list_scenarios(&client, state.as_deref().unwrap_or("")).await?;
                let value: Vec<Value> = scenarios.iter().map(scenario_json).collect();
                emit(client.json, &value, || {
                    if scenarios.is_empty() {
                        return "no scenarios".into();
                    }
                    scenarios.iter().map(|view| scenario_line(view) + "\n").collect()
                })?;
            }
            ScenarioCommand::Show { id } => {
                let client =
                    Client::connect_as(&args.client, &[Role::Developer, Role::Operator], "scenario show").await?;
                let scenarios = list_scenarios(&client, "").await?;
                let view = scenarios
                    .iter()
                    .find(|view| view.scenario_id == id)
                    .ok_or_else(|| anyhow!("scenario {id} not found"))?;
                emit(client.json, &scenario_json(view), || {
                    let application =
                        serde_json::to_string_pretty(&embedded_json(&view.application_json)).unwrap_or_default();
                    let risks: String = view
                        .risks
                        .iter()
                        .map(|risk| format!("  ! {}.{} {}: {}\n", risk.dataset, risk.column, risk.mode, risk.reason))
                        .collect();
                    let risks = if risks.is_empty() {
                        String::new()
                    } else {
                        format!("access modes to read twice before approving (审批风险提示):\n{risks}")
                    };
                    format!("{}\n{risks}{application}", scenario_line(view))
                })?;
            }
            ScenarioCommand::Draft { data, queries, outputs, title, purpose, out } => {
                let json = args.client.json;
                let request = crate::draft::DraftRequest { data, queries, outputs, title, purpose, out, json };
                crate::draft::draft(request).await?;
            }
            ScenarioCommand::Approve(decision) => decide_scenario(&args.client, &decision, true).await?,
            ScenarioCommand::Reject(decision) => decide_scenario(&args.client, &decision, false).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn decide_scenario(args: &ClientArgs, decision: &Decision, approve: bool) -> Result<()> {
    let (id, reason) = (decision.id.as_str(), decision.reason.as_str());
    let verb = if approve { "approve" } else { "reject" };
    let client = Client::connect(args, Role::Operator, &format!("scenario {verb}")).await?;
    let reply = operator(&client)
        .decide_scenario(pb::DecideRequest { id: id.to_string(), approve, reason: reason.to_string() })
        .await
        .map_err(|status| client.refused(&format!("deciding scenario {id}"), status))?
        .into_inner();
    let value = json!({
        "scenario_id": reply.scenario_id, "state": reply.state,
        "grant_id": reply.grant_id, "grant_hash": reply.grant_hash,
    });
    emit(client.json, &value, || {
        if approve {
            format!("scenario {} approved → grant {} (sha256 {})", reply.scenario_id, reply.grant_id, reply.grant_hash)
        } else {
            format!("scenario {} rejected: {reason}", reply.scenario_id)
        }
    })
}

// -------------------------------------------------------------------------------------- grants

/// Grants (授权): an operator suspends, resumes or terminates them.
#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// Grants with their state: active, suspended, expired or terminated.
    List {
        /// Only those in this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Stop a grant's work until it is resumed: its jobs stop, nothing new runs or leaves.
    Suspend(Decision),
    /// Let a suspended grant's work go on.
    Resume(Decision),
    /// End a grant for good: its jobs stop, its pending egress requests are rejected, its
    /// held outputs deleted and its imported tables destroyed. Releases already made and the
    /// audit log stay.
    Terminate(Decision),
}

fn grant_json(view: &pb::GrantView) -> Value {
    json!({
        "grant_id": view.grant_id, "scenario_id": view.scenario_id, "developer": view.developer,
        "state": view.state, "grant_hash": view.grant_hash,
        "expires_at_unix_ms": view.expires_at_unix_ms, "reason": view.reason,
    })
}

fn grant_line(view: &pb::GrantView) -> String {
    let reason = if view.reason.is_empty() { String::new() } else { format!(" ({})", view.reason) };
    format!(
        "{:<8} {:<11} {:<24} scenario {:<8} expires {}{reason}",
        view.grant_id,
        view.state,
        view.developer,
        view.scenario_id,
        crate::audit_client::utc(view.expires_at_unix_ms)
    )
}

/// Runs `unseen grant …`.
pub fn grant(args: GrantArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = Client::connect(&args.client, Role::Operator, "grant").await?;
        let (id, action, reason) = match args.command {
            GrantCommand::List { state } => {
                let grants = operator(&client)
                    .list_grants(pb::ListRequest { state: state.unwrap_or_default() })
                    .await
                    .map_err(|status| client.refused("listing grants", status))?
                    .into_inner()
                    .grants;
                let value: Vec<Value> = grants.iter().map(grant_json).collect();
                emit(client.json, &value, || {
                    if grants.is_empty() {
                        return "no grants".into();
                    }
                    grants.iter().map(|view| grant_line(view) + "\n").collect()
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            GrantCommand::Suspend(Decision { id, reason }) => (id, "suspend", reason),
            GrantCommand::Resume(Decision { id, reason }) => (id, "resume", reason),
            GrantCommand::Terminate(Decision { id, reason }) => (id, "terminate", reason),
        };
        let view = operator(&client)
            .change_grant(pb::ChangeGrantRequest { grant_id: id.clone(), action: action.into(), reason })
            .await
            .map_err(|status| client.refused(&format!("grant {id}"), status))?
            .into_inner();
        emit(client.json, &grant_json(&view), || grant_line(&view))?;
        Ok(ExitCode::SUCCESS)
    })
}

// ------------------------------------------------------------------------------------- modules

/// Modules (分析模块): a developer uploads WebAssembly bound to a grant.
#[derive(Debug, Args)]
pub struct ModuleArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ModuleCommand,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    /// Upload a module (.wasm) bound to a grant; it is validated and stored by content hash.
    Upload {
        /// The module.
        file: PathBuf,
        /// The grant it runs under.
        #[arg(long)]
        grant: String,
    },
}

/// Runs `unseen module …`.
pub fn module(args: ModuleArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = Client::connect(&args.client, Role::Developer, "module upload").await?;
        match args.command {
            ModuleCommand::Upload { file, grant } => {
                let reply = upload(&client, &file, &grant).await?;
                let value = json!({ "module_hash": reply.module_hash, "size": reply.size, "imports": reply.imports });
                emit(client.json, &value, || {
                    format!(
                        "module {} uploaded ({} bytes) for grant {grant}\nnext: unseen job run --grant {grant} \
                         --module {0} --sample --wait",
                        reply.module_hash, reply.size
                    )
                })?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn upload(client: &Client, file: &Path, grant: &str) -> Result<pb::UploadModuleReply> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!(
            "{} is not a WebAssembly module (no \\0asm header); build it with --target wasm32-wasip1",
            file.display()
        );
    }
    let total = bytes.len() as u64;
    let label = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let chunks: Vec<pb::ModuleChunk> = bytes
        .chunks(UPLOAD_CHUNK_BYTES)
        .enumerate()
        .map(|(index, data)| pb::ModuleChunk {
            grant_id: if index == 0 { grant.to_string() } else { String::new() },
            data: data.to_vec(),
        })
        .collect();
    let mut progress = Progress::new(client.json);
    let mut sent = 0u64;
    let stream = tokio_stream::iter(chunks).map(move |chunk| {
        sent += chunk.data.len() as u64;
        progress.bytes(&format!("uploading {label}"), sent, total);
        chunk
    });
    Ok(developer(client)
        .upload_module(stream)
        .await
        .map_err(|status| client.refused(&format!("uploading {}", file.display()), status))?
        .into_inner())
}

// ---------------------------------------------------------------------------------------- jobs

/// Jobs (作业): run a module on the sample or on the real data.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Run a module under a grant: on the desensitised sample (outputs come back at once) or
    /// on the real data (outputs stay in the domain until an egress request releases them).
    #[command(after_help = "Examples:\n  \
        unseen job run --grant g-1 --module green_energy.wasm --sample --wait --out ./sample-out\n  \
        unseen job run --grant g-1 --module 3f2a…(hash) --production --wait")]
    Run {
        /// The grant.
        #[arg(long)]
        grant: String,
        /// The module: its hash, or a .wasm file (uploaded first).
        #[arg(long)]
        module: String,
        /// Run on the desensitised sample (样本).
        #[arg(long, conflicts_with = "production", required_unless_present = "production")]
        sample: bool,
        /// Run on the real data (正式).
        #[arg(long)]
        production: bool,
        /// Text the module reads with `params` (at most 4 KiB), e.g. `month=2026-10`.
        #[arg(long, default_value = "", conflicts_with = "params_file")]
        params: String,
        /// Read the parameters from this file instead (e.g. the claims of a verification).
        #[arg(long, value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Wait for the job to end and show it.
        #[arg(long)]
        wait: bool,
        /// Write sample-mode outputs into this directory (one file per output).
        #[arg(long, requires = "wait")]
        out: Option<PathBuf>,
    },
    /// Show a job: state, outputs, queries, metering (and, on the sample, the outputs).
    Show {
        /// The job id (`j-…`).
        id: String,
        /// Wait up to this many seconds for it to end.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// Write sample-mode outputs into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cancel a job that is still queued.
    Cancel {
        /// The job id.
        id: String,
    },
}

fn job_ended(state: &str) -> bool {
    !matches!(state, "queued" | "running")
}

fn job_json(view: &pb::JobView) -> Value {
    json!({
        "job_id": view.job_id, "grant_id": view.grant_id, "mode": view.mode, "state": view.state,
        "error": view.error,
        "outputs": view.outputs.iter().map(|output| json!({
            "name": output.name, "kind": output.kind, "rows": output.rows,
            "suppressed_groups": output.suppressed_groups,
            "withheld": if output.withheld.is_empty() { Value::Null } else { Value::String(output.withheld.clone()) },
            "content": if output.content.is_empty() { Value::Null } else {
                match std::str::from_utf8(&output.content) {
                    Ok(text) => Value::String(text.to_string()),
                    Err(_) => json!({ "hex": hex::encode(&output.content) }),
                }
            },
        })).collect::<Vec<_>>(),
        "queries": view.queries.iter().map(|query| json!({
            "sql": query.sql, "outcome": query.outcome, "message": query.message,
            "rows": query.rows, "suppressed_groups": query.suppressed_groups,
        })).collect::<Vec<_>>(),
        "guest_log": view.guest_log,
        "metering": embedded_json(&view.metering_json),
    })
}

fn job_text(view: &pb::JobView) -> String {
    let mut text = format!("job {} ({} run, grant {}): {}\n", view.job_id, view.mode, view.grant_id, view.state);
    if !view.error.is_empty() {
        text += &format!("  error: {}\n", view.error);
    }
    for query in &view.queries {
        let detail = if query.outcome == "allowed" {
            format!("{} rows, {} groups withheld", query.rows, query.suppressed_groups)
        } else {
            query.message.clone()
        };
        text += &format!("  query {}: {detail}\n", query.outcome);
    }
    for output in &view.outputs {
        text += &format!(
            "  output \"{}\" ({}): {} rows, {} groups below k withheld by the engine\n",
            output.name, output.kind, output.rows, output.suppressed_groups
        );
        if !output.withheld.is_empty() {
            text += &format!("    {}\n", output.withheld);
        }
        if let Ok(content) = std::str::from_utf8(&output.content) {
            for line in content.lines().take(6) {
                text += &format!("    {line}\n");
            }
        }
    }
    for line in &view.guest_log {
        text += &format!("  guest log: {line}\n");
    }
    if view.mode == "production" && view.state == "succeeded" {
        for output in &view.outputs {
            text += &format!("next: unseen egress request {} {}\n", view.job_id, output.name);
        }
    }
    text
}

/// Asks for the job until it ends (or `deadline` passes), showing its state meanwhile.
async fn wait_for_job(client: &Client, job_id: &str, deadline: Option<Instant>) -> Result<pb::JobView> {
    let mut progress = Progress::new(client.json);
    loop {
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let wait_ms = remaining.map_or(WAIT_SLICE_MS, |left| (left.as_millis() as u32).min(WAIT_SLICE_MS));
        let view = developer(client)
            .get_job(pb::GetJobRequest { job_id: job_id.to_string(), wait_ms })
            .await
            .map_err(|status| client.refused(&format!("job {job_id}"), status))?
            .into_inner();
        if job_ended(&view.state) || remaining.is_some_and(|left| left.is_zero()) {
            return Ok(view);
        }
        progress.show(&format!("job {job_id}: {}", view.state));
    }
}

fn write_outputs(view: &pb::JobView, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for output in view.outputs.iter().filter(|output| !output.content.is_empty()) {
        let extension = if output.kind == "artifact" { "bin" } else { "csv" };
        let safe: String =
            output.name.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = dir.join(format!("{safe}.{extension}"));
        std::fs::write(&path, &output.content).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn show_job(client: &Client, view: &pb::JobView, out: Option<&Path>) -> Result<ExitCode> {
    let written = match out {
        Some(dir) => write_outputs(view, dir)?,
        None => Vec::new(),
    };
    let mut value = job_json(view);
    value["written"] = json!(written);
    emit(client.json, &value, || {
        let mut text = job_text(view);
        for path in &written {
            text += &format!("wrote {path}\n");
        }
        text
    })?;
    Ok(if !job_ended(&view.state) || view.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_JOB_DID_NOT_SUCCEED)
    })
}

/// Runs `unseen job …`.
pub fn job(args: JobArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let client = Client::connect(&args.client, Role::Developer, "job").await?;
        match args.command {
            JobCommand::Run { grant, module, sample, production: _, params, params_file, wait, out } => {
                let params = match params_file {
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the parameters from {}", path.display()))?,
                    None => params,
                };
                let module_hash = if Path::new(&module).is_file() {
                    let reply = upload(&client, Path::new(&module), &grant).await?;
                    if !client.json {
                        eprintln!("uploaded {module} as module {}", reply.module_hash);
                    }
                    reply.module_hash
                } else if module.len() == 64 && module.chars().all(|c| c.is_ascii_hexdigit()) {
                    module
                } else {
                    bail!("--module \"{module}\" is neither a .wasm file nor a module hash (64 hex digits)");
                };
                let mode = if sample { "sample" } else { "production" };
                let reply = developer(&client)
                    .run_job(pb::RunJobRequest {
                        grant_id: grant.clone(),
                        module_hash: module_hash.clone(),
                        mode: mode.into(),
                        params,
                    })
                    .await
                    .map_err(|status| client.refused("the job", status))?
                    .into_inner();
                if !wait {
                    let value = json!({ "job_id": reply.job_id, "state": reply.state, "module_hash": module_hash });
                    emit(client.json, &value, || {
                        format!("job {} {}\nnext: unseen job show {0} --wait 60", reply.job_id, reply.state)
                    })?;
                    return Ok(ExitCode::SUCCESS);
                }
                let view = wait_for_job(&client, &reply.job_id, None).await?;
                show_job(&client, &view, out.as_deref())
            }
            JobCommand::Show { id, wait, out } => {
                let view = match wait {
                    Some(seconds) => {
                        wait_for_job(&client, &id, Some(Instant::now() + Duration::from_secs(seconds))).await?
                    }
                    None => developer(&client)
                        .get_job(pb::GetJobRequest { job_id: id.clone(), wait_ms: 0 })
                        .await
                        .map_err(|status| client.refused(&format!("job {id}"), status))?
                        .into_inner(),
                };
                show_job(&client, &view, out.as_deref())
            }
            JobCommand::Cancel { id } => {
                let view = developer(&client)
                    .cancel_job(pb::CancelJobRequest { job_id: id.clone() })
                    .await
                    .map_err(|status| client.refused(&format!("cancelling job {id}"), status))?
                    .into_inner();
                emit(client.json, &job_json(&view), || format!("job {} {}", view.job_id, view.state))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

// -------------------------------------------------------------------------------------- egress

/// Egress requests (出域申请): the reviewer's rules, then an operator where the grant says so.
#[derive(Debug, Args)]
pub struct EgressArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: EgressCommand,
}

#[derive(Debug, Subcommand)]
#[command(after_help = "Exit status: 0 released, 10 awaiting an operator, 11 blocked or rejected, 1 error.")]
enum EgressCommand {
    /// Ask for a production job's output to leave the domain; prints the review report
    /// (developer).
    Request {
        /// The job id.
        job: String,
        /// The output's name.
        output: String,
    },
    /// One of your egress requests (developer).
    Show {
        /// The egress request id (`e-…`).
        id: String,
        /// Wait up to this many seconds for an operator's decision.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Egress requests, e.g. those awaiting a decision (operator).
    List {
        /// Only those in this state: auto_released, awaiting_operator, approved, rejected or
        /// blocked.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve an egress request awaiting an operator; the domain signs a release (operator).
    Approve(Decision),
    /// Reject an egress request awaiting an operator (operator).
    Reject(Decision),
}

fn egress_json(view: &pb::EgressView) -> Value {
    json!({
        "egress_id": view.egress_id, "job_id": view.job_id, "output_name": view.output_name,
        "state": view.state, "release_id": view.release_id, "reason": view.reason,
        "report": embedded_json(&view.report_json),
    })
}

fn egress_line(view: &pb::EgressView) -> String {
    let release = if view.release_id.is_empty() { String::new() } else { format!(" → release {}", view.release_id) };
    let reason = if view.reason.is_empty() { String::new() } else { format!(" ({})", view.reason) };
    format!(
        "{:<8} {:<18} job {:<8} output \"{}\"{release}{reason}",
        view.egress_id, view.state, view.job_id, view.output_name
    )
}

fn egress_text(view: &pb::EgressView) -> String {
    // The request's state first: the report's own verdict was the reviewer's, before any
    // operator decided.
    let mut text = egress_line(view);
    text += "\n";
    if let Ok(report) = serde_json::from_str::<ReviewReport>(&view.report_json) {
        text += "the reviewer's report:\n";
        text += &report.render();
        text += "\n";
    }
    text += &match view.state.as_str() {
        "auto_released" | "approved" => format!("next: unseen release get {}", view.release_id),
        "awaiting_operator" => format!(
            "next: an operator decides it (unseen egress approve {0}); follow it with `unseen egress show {0} --wait 600`",
            view.egress_id
        ),
        _ => "this output may not leave the domain as it is; the report says which rule stopped it".to_string(),
    };
    text
}

fn egress_exit(state: &str) -> ExitCode {
    match state {
        "auto_released" | "approved" => ExitCode::SUCCESS,
        "awaiting_operator" => ExitCode::from(EXIT_AWAITING_OPERATOR),
        _ => ExitCode::from(EXIT_NOT_RELEASED),
    }
}

/// Runs `unseen egress …`.
pub fn egress(args: EgressArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        match args.command {
            EgressCommand::Request { job, output } => {
                let client = Client::connect(&args.client, Role::Developer, "egress request").await?;
                let mut progress = Progress::new(client.json);
                progress.show(&format!("reviewing output \"{output}\" of job {job}"));
                let view = developer(&client)
                    .request_egress(pb::RequestEgressRequest { job_id: job.clone(), output_name: output.clone() })
                    .await
                    .map_err(|status| client.refused(&format!("egress of \"{output}\" from job {job}"), status))?
                    .into_inner();
                progress.finish();
                emit(client.json, &egress_json(&view), || egress_text(&view))?;
                Ok(egress_exit(&view.state))
            }
            EgressCommand::Show { id, wait } => {
                let client = Client::connect(&args.client, Role::Developer, "egress show").await?;
                let deadline = wait.map(|seconds| Instant::now() + Duration::from_secs(seconds));
                let mut progress = Progress::new(client.json);
                let view = loop {
                    let view = developer(&client)
                        .get_egress(pb::GetEgressRequest { egress_id: id.clone() })
                        .await
                        .map_err(|status| client.refused(&format!("egress request {id}"), status))?
                        .into_inner();
                    let waiting =
                        view.state == "awaiting_operator" && deadline.is_some_and(|deadline| Instant::now() < deadline);
                    if !waiting {
                        break view;
                    }
                    progress.show(&format!("egress request {id}: awaiting an operator"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                };
                progress.finish();
                emit(client.json, &egress_json(&view), || egress_text(&view))?;
                Ok(egress_exit(&view.state))
            }
            EgressCommand::List { state } => {
                let client = Client::connect(&args.client, Role::Operator, "egress list").await?;
                let views = operator(&client)
                    .list_egress(pb::ListRequest { state: state.unwrap_or_default() })
                    .await
                    .map_err(|status| client.refused("listing egress requests", status))?
                    .into_inner()
                    .requests;
                let value: Vec<Value> = views.iter().map(egress_json).collect();
                emit(client.json, &value, || {
                    if views.is_empty() {
                        return "no egress requests".into();
                    }
                    views.iter().map(|view| egress_line(view) + "\n").collect()
                })?;
                Ok(ExitCode::SUCCESS)
            }
            EgressCommand::Approve(decision) => decide_egress(&args.client, &decision, true).await,
            EgressCommand::Reject(decision) => decide_egress(&args.client, &decision, false).await,
        }
    })
}

async fn decide_egress(args: &ClientArgs, decision: &Decision, approve: bool) -> Result<ExitCode> {
    let (id, reason) = (decision.id.as_str(), decision.reason.as_str());
    let verb = if approve { "approve" } else { "reject" };
    let client = Client::connect(args, Role::Operator, &format!("egress {verb}")).await?;
    let view = operator(&client)
        .decide_egress(pb::DecideRequest { id: id.to_string(), approve, reason: reason.to_string() })
        .await
        .map_err(|status| client.refused(&format!("deciding egress request {id}"), status))?
        .into_inner();
    emit(client.json, &egress_json(&view), || egress_line(&view))?;
    Ok(egress_exit(&view.state))
}

// ------------------------------------------------------------------------------------ releases

/// Releases (出域结果): signed bundles of what left the domain.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    /// Download a release bundle (data.csv, manifest.json, manifest.sig, domain.pub) and
    /// verify it under the domain key (developer).
    Get {
        /// The release id (`r-…`).
        id: String,
        /// The directory to write the bundle into [default: ./release-<id>].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a bundle directory offline under the domain key.
    Verify {
        /// The bundle directory.
        dir: PathBuf,
    },
}

/// Refuses to write release `id` into a directory that holds anything but a bundle of that
/// same release: a bundle is evidence, and one must not silently replace another.
fn refuse_other_release(dir: &Path, id: &str) -> Result<()> {
    let Ok(mut entries) = std::fs::read_dir(dir) else { return Ok(()) };
    if entries.next().is_none() {
        return Ok(());
    }
    let held = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<unseen_gateway::ReleaseManifest>(&bytes).ok());
    match held {
        Some(manifest) if manifest.release_id == id => Ok(()),
        Some(manifest) => bail!(
            "{} holds release {}; give release {id} a directory of its own (--out, default ./release-{id})",
            dir.display(),
            manifest.release_id
        ),
        None => bail!("{} is not empty; give release {id} a directory of its own (--out)", dir.display()),
    }
}

/// Runs `unseen release …`.
pub fn release(args: ReleaseArgs) -> Result<ExitCode> {
    match args.command {
        ReleaseCommand::Get { id, out } => runtime()?.block_on(async {
            let client = Client::connect(&args.client, Role::Developer, "release get").await?;
            let bundle = developer(&client)
                .get_release(pb::GetReleaseRequest { release_id: id.clone() })
                .await
                .map_err(|status| client.refused(&format!("release {id}"), status))?
                .into_inner();
            let (key, key_source) = match client.domain_key()? {
                Some(key) => (key, "the domain key you hold"),
                None => (
                    bundle
                        .domain_public_key
                        .as_slice()
                        .try_into()
                        .map_err(|_| anyhow!("the bundle's key is not 32 bytes"))?,
                    "the key inside the bundle only (pass --domain-key to check it against the domain's)",
                ),
            };
            let manifest = unseen_gateway::verify_release(&bundle.manifest, &bundle.signature, &bundle.data, &key)
                .context("the release does not verify; do not use it")?;
            let dir = out.unwrap_or_else(|| PathBuf::from(format!("release-{id}")));
            refuse_other_release(&dir, &id)?;
            crate::demo::write_bundle(&dir, &bundle)?;
            let value =
                json!({ "release_id": id, "dir": dir.display().to_string(), "verified": true, "manifest": manifest });
            emit(client.json, &value, || {
                format!(
                    "release {id}: output \"{}\" of grant {}, approved by {}\nverified under {key_source}\nwrote {}",
                    manifest.output,
                    manifest.grant_id,
                    manifest.approver,
                    dir.display()
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }),
        ReleaseCommand::Verify { dir } => {
            let key = match args.client.trusted_domain_key()? {
                Some(key) => hex::encode(key),
                None => bail!(
                    "give the domain key with --domain-key (hex or a file): the bundle's own domain.pub proves \
                     nothing about who signed it"
                ),
            };
            crate::verify::run(crate::verify::VerifyCommand::Release { dir, public_key: key, json: args.client.json })
        }
    }
}
