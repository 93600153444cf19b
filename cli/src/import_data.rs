//! `unseen import …`: a developer's own tables (社会数据; docs/policy-basis.md, social data),
//! imported for one of its grants and usable by that grant's jobs once an operator approves
//! them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use unseen_gateway::identity::Role;
use unseen_proto::v1 as pb;

use crate::client::{Client, ClientArgs, Progress, emit, wire_name};
use crate::workflow::{Decision, TableTags, UPLOAD_CHUNK_BYTES, developer, operator, runtime, tagged_table};

/// Imported tables (社会数据): a developer brings its own data to join with public data.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import your own table (Parquet) for one of your grants (developer). It is encrypted in
    /// the domain and usable by the grant's jobs, under its file name as the SQL table name,
    /// once an operator approves it; subject and identifier columns only join.
    #[command(after_help = "Examples:\n  \
        unseen import submit customers.parquet --grant g-1 --subject-kind enterprise \\\n    \
        --column uscc=subject --column contact_phone=identifier --column segment=public\n  \
        unseen import submit customers.parquet --grant g-1 --catalog my-tables.json")]
    Submit {
        /// The table, a Parquet file.
        file: PathBuf,
        /// The grant whose jobs may use it.
        #[arg(long)]
        grant: String,
        /// The table's name in SQL [default: the file's stem].
        #[arg(long)]
        name: Option<String>,
        /// A catalog (JSON list of dataset versions) whose entry of this name gives the
        /// subject kind and column tags.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// What the subject column identifies: person or enterprise.
        #[arg(long, conflicts_with = "catalog")]
        subject_kind: Option<String>,
        /// A column and its tag, `NAME=TAG` (subject, identifier, quasi, sensitive, public);
        /// repeat for every column.
        #[arg(long = "column", value_name = "NAME=TAG", conflicts_with = "catalog")]
        columns: Vec<String>,
    },
    /// Imported tables with their state: every one for an operator, your own for a developer.
    List {
        /// Only those in this state: submitted, approved, rejected or destroyed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Approve a submitted import: the grant's jobs submitted from now on can read it (operator).
    Approve(Decision),
    /// Reject a submitted import: its key and encrypted table are destroyed at once (operator).
    Reject(Decision),
}

fn import_json(view: &pb::ImportView) -> Value {
    let columns: Vec<Value> =
        view.columns.iter().map(|column| json!({"name": column.name, "tag": column.tag})).collect();
    json!({
        "import_id": view.import_id, "developer": view.developer, "grant_id": view.grant_id,
        "dataset": view.dataset, "content_hash": view.content_hash, "subject_kind": view.subject_kind,
        "columns": columns, "rows": view.rows, "bytes": view.bytes, "state": view.state, "reason": view.reason,
    })
}

fn import_line(view: &pb::ImportView) -> String {
    let columns: Vec<String> = view.columns.iter().map(|column| format!("{}={}", column.name, column.tag)).collect();
    let reason = if view.reason.is_empty() { String::new() } else { format!(" ({})", view.reason) };
    format!(
        "{:<8} {:<10} {:<24} grant {:<6} {:<20} {} rows  {}{reason}",
        view.import_id,
        view.state,
        view.developer,
        view.grant_id,
        view.dataset,
        view.rows,
        columns.join(" ")
    )
}

/// Runs `unseen import …`.
pub fn run(args: ImportArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        match args.command {
            ImportCommand::Submit { file, grant, name, catalog, subject_kind, columns } => {
                let client = Client::connect(&args.client, Role::Developer, "import submit").await?;
                let tags = TableTags { name, catalog, grade: None, subject_kind, columns };
                let (spec, parquet) = tagged_table(&file, tags)?;
                let name = spec.name.clone();
                let total = parquet.len() as u64;
                let tags: Vec<pb::ColumnTag> = spec
                    .columns
                    .iter()
                    .map(|column| pb::ColumnTag { name: column.name.clone(), tag: wire_name(&column.tag) })
                    .collect();
                let chunks: Vec<pb::ImportChunk> = parquet
                    .chunks(UPLOAD_CHUNK_BYTES)
                    .enumerate()
                    .map(|(index, data)| match index {
                        0 => pb::ImportChunk {
                            grant_id: grant.clone(),
                            name: spec.name.clone(),
                            subject_kind: spec.subject_kind.as_ref().map(wire_name).unwrap_or_default(),
                            columns: tags.clone(),
                            data: data.to_vec(),
                        },
                        _ => pb::ImportChunk { data: data.to_vec(), ..Default::default() },
                    })
                    .collect();
                let mut progress = Progress::new(client.json);
                let mut sent = 0u64;
                let label = format!("importing {name}");
                let stream = tokio_stream::iter(chunks).map(move |chunk| {
                    sent += chunk.data.len() as u64;
                    progress.bytes(&label, sent, total);
                    chunk
                });
                let view = developer(&client)
                    .import_data(stream)
                    .await
                    .map_err(|status| client.refused(&format!("importing {}", file.display()), status))?
                    .into_inner();
                emit(client.json, &import_json(&view), || {
                    format!(
                        "imported {} as {} for grant {} ({} rows, sha256 {}), encrypted in the domain\n\
                         next: an operator approves it (unseen import approve {0} --reason …); \
                         jobs submitted after that can query table {}",
                        view.import_id, view.dataset, view.grant_id, view.rows, view.content_hash, spec.name
                    )
                })?;
            }
            ImportCommand::List { state } => {
                let client =
                    Client::connect_as(&args.client, &[Role::Developer, Role::Operator], "import list").await?;
                let request = pb::ListRequest { state: state.unwrap_or_default() };
                let reply = match client.principal.role {
                    Role::Operator => operator(&client).list_imports(request).await,
                    _ => developer(&client).list_imports(request).await,
                };
                let imports = reply.map_err(|status| client.refused("listing imports", status))?.into_inner().imports;
                let value: Vec<Value> = imports.iter().map(import_json).collect();
                emit(client.json, &value, || {
                    if imports.is_empty() {
                        return "no imported tables".into();
                    }
                    imports.iter().map(|view| import_line(view) + "\n").collect()
                })?;
            }
            ImportCommand::Approve(decision) => decide(&args.client, &decision, true).await?,
            ImportCommand::Reject(decision) => decide(&args.client, &decision, false).await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn decide(args: &ClientArgs, decision: &Decision, approve: bool) -> Result<()> {
    let verb = if approve { "approve" } else { "reject" };
    let client = Client::connect(args, Role::Operator, &format!("import {verb}")).await?;
    let view = operator(&client)
        .decide_import(pb::DecideRequest { id: decision.id.clone(), approve, reason: decision.reason.clone() })
        .await
        .map_err(|status| client.refused(&format!("deciding import {}", decision.id), status))?
        .into_inner();
    emit(client.json, &import_json(&view), || import_line(&view))
}
