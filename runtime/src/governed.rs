//! The governed DataFusion session: what a module's SQL may see is decided here, on the
//! logical plan, before any row moves.
//!
//! Every query is planned, then walked: each output column is traced back to the source
//! columns whose values flow into it, raw or through an aggregate, and every use of a source
//! column (projected, grouped, aggregated, filtered, joined, ordered) is put to the grant's
//! access mode through [`unseen_policy::access::decide`]. Plans this walker does not know are
//! refused: the check fails closed. When the result is an aggregate over subject data, the
//! plan is extended with host-counted distinct contributors per group, groups below the
//! grant's threshold are withheld, and the counts travel on as hidden lineage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Cast, Expr, ExprSchemable, JoinType, LogicalPlan, Operator, Projection, SubqueryAlias, TryCast,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{ExprFunctionExt, ParquetReadOptions, SessionConfig, SessionContext, cast};
use datafusion::sql::parser::Statement as DataFusionStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use unseen_policy::access::{Argument, Usage, decide};
use unseen_policy::review::{SubjectSketches, key_text};
use unseen_policy::{
    AccessMode, ColumnLineage, ColumnTag, Contributions, DatasetVersion, Grant, MagnitudeLineage, OutputLineage,
    Refusal, SourceColumn, SubjectCounts, SubjectKind,
};

use crate::RuntimeError;
use crate::contributors::CappedContributors;
use crate::granted_table::GrantedTable;
use crate::largest::LargestContributions;
use crate::pseudonym::Pseudonymiser;
use crate::subject_key::SubjectKeys;
use crate::subject_sketch::{self, SubjectSketcher};

/// Rows and bytes the leaves of an executed plan read from storage, for metering.
fn scanned(plan: &Arc<dyn ExecutionPlan>) -> (u64, u64) {
    if plan.children().is_empty() {
        let Some(metrics) = plan.metrics() else { return (0, 0) };
        let rows = metrics.output_rows().unwrap_or(0) as u64;
        let bytes = metrics.sum_by_name("bytes_scanned").map_or(0, |value| value.as_usize() as u64);
        return (rows, bytes);
    }
    plan.children().into_iter().map(scanned).fold((0, 0), |(rows, bytes), (r, b)| (rows + r, bytes + b))
}

/// Prefix of every column name the host adds; a module's query may not use it.
const RESERVED_PREFIX: &str = "__unseen";
/// Name prefix of the host's hidden contributor columns; never reaches a module.
const CONTRIBUTORS_PREFIX: &str = "__unseen_contributors_";
/// Name prefix of subject columns the host carries up through subqueries to count them.
const CARRIED_SUBJECT_PREFIX: &str = "__unseen_subject_";
/// Name prefix of the subject key column the host computes under an aggregate, per subject kind.
const SUBJECT_KEY_PREFIX: &str = "__unseen_subject_key_";
/// Name prefix of the host's hidden largest-contributions columns; never reaches a module.
const LARGEST_PREFIX: &str = "__unseen_largest_";
/// Name prefix of the host's hidden subject-sketch columns; never reaches a module.
const SKETCH_PREFIX: &str = "__unseen_sketch_";

/// Which copy of the data a job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The sampled, desensitised copy; outputs go straight back to the developer.
    Sample,
    /// The real data; outputs are held for egress review.
    Production,
}

/// A registered dataset version and where its files are inside the domain.
#[derive(Debug, Clone)]
pub struct DomainTable {
    /// The catalog entry.
    pub dataset: DatasetVersion,
    /// The real data (Parquet).
    pub production_path: PathBuf,
    /// The desensitised sample (Parquet).
    pub sample_path: PathBuf,
}

/// A query result as the module may see it, with the lineage it cannot see.
#[derive(Debug, Clone)]
pub struct GovernedResult {
    /// Batches without hidden columns and without suppressed groups.
    pub batches: Vec<RecordBatch>,
    /// Host-held lineage for the egress reviewer.
    pub lineage: OutputLineage,
    /// Rows in `batches`.
    pub rows: u64,
    /// Rows read from the tables' files to compute it.
    pub rows_scanned: u64,
    /// Bytes read from the tables' files to compute it.
    pub bytes_scanned: u64,
}

/// A DataFusion session holding exactly the tables one grant names.
pub struct GovernedSession {
    pub(crate) context: SessionContext,
    pub(crate) grant: Grant,
    mode: Mode,
    /// Table name → dataset version registered under it.
    pub(crate) tables: BTreeMap<String, DatasetVersion>,
}

impl std::fmt::Debug for GovernedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernedSession").field("grant", &self.grant.id).field("mode", &self.mode).finish()
    }
}

/// One source column as the walker knows it: identity, tag and granted mode.
#[derive(Debug, Clone)]
struct Source {
    column: SourceColumn,
    mode: AccessMode,
    subject_kind: Option<SubjectKind>,
}

/// How a field's value is computed from the source values that flow into it, from the most
/// to the least harmless. Decides what an aggregate over the field may reveal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// No source value: a literal.
    Constant,
    /// One source column's value, copied (possibly through a lossless cast).
    #[default]
    Column,
    /// A linear function of source values and constants.
    Linear,
    /// Anything else.
    Selective,
}

impl Shape {
    fn argument(self) -> Argument {
        match self {
            Self::Constant | Self::Column => Argument::Column,
            Self::Linear => Argument::Linear,
            Self::Selective => Argument::Selective,
        }
    }
}

/// Where the values of one plan field come from.
#[derive(Debug, Clone, Default)]
struct FieldLineage {
    /// Sources whose row values flow into the field.
    raw: BTreeSet<usize>,
    /// Sources that reach the field only through an aggregate.
    aggregated: BTreeSet<usize>,
    /// The field is the output of an aggregate function.
    is_aggregate: bool,
    /// How the field is computed from `raw`.
    shape: Shape,
}

impl FieldLineage {
    fn merge(&mut self, other: &FieldLineage) {
        self.raw.extend(&other.raw);
        self.aggregated.extend(&other.aggregated);
        self.is_aggregate |= other.is_aggregate;
        self.shape = self.shape.max(other.shape);
    }
}

/// The walker's state: the sources met so far, deduplicated.
struct Walker<'a> {
    session: &'a GovernedSession,
    sources: Vec<Source>,
    index: BTreeMap<(String, String), usize>,
    subject_kinds: BTreeSet<SubjectKind>,
    /// Largest-contributions columns the host added to the outermost aggregate.
    measures: Vec<Measure>,
    /// Every use of a source column the walk judged, in order, when asked for (drafting
    /// applications); None when checking queries, so the check records nothing.
    used: Option<std::cell::RefCell<Vec<(usize, Usage)>>>,
}

/// A hidden largest-contributions column and the output columns computed from its aggregate.
#[derive(Debug, Clone)]
struct Measure {
    hidden: String,
    measure: String,
    kind: SubjectKind,
    columns: BTreeSet<String>,
}

impl GovernedSession {
    /// Registers the grant's tables (production or sample files) and nothing else.
    pub async fn new(grant: &Grant, tables: &[DomainTable], mode: Mode) -> Result<Self, RuntimeError> {
        let config = SessionConfig::new().with_information_schema(false).with_target_partitions(2);
        let context = SessionContext::new_with_config(config);
        let mut registered = BTreeMap::new();
        for dataset_id in grant.datasets() {
            let table = tables.iter().find(|table| table.dataset.id() == dataset_id).ok_or_else(|| {
                RuntimeError::Internal(format!(
                    "grant {} names {dataset_id}, which the domain did not provide",
                    grant.id
                ))
            })?;
            let path = match mode {
                Mode::Sample => &table.sample_path,
                Mode::Production => &table.production_path,
            };
            let path =
                path.to_str().ok_or_else(|| RuntimeError::Internal(format!("non-UTF-8 path {}", path.display())))?;
            let name = table.dataset.name.as_str();
            context
                .register_parquet(name, path, ParquetReadOptions::default())
                .await
                .map_err(|error| RuntimeError::Internal(format!("registering {dataset_id}: {error}")))?;
            let pseudonymised: BTreeSet<String> = table
                .dataset
                .columns
                .iter()
                .filter(|column| grant.mode(dataset_id, &column.name) == AccessMode::Pseudonymised)
                .map(|column| column.name.clone())
                .collect();
            let row_filter = grant.row_filter(dataset_id);
            if !pseudonymised.is_empty() || row_filter.is_some() {
                let stored = context.deregister_table(name).ok().flatten().ok_or_else(|| {
                    RuntimeError::Internal(format!("{dataset_id} vanished while it was being registered"))
                })?;
                let condition = match row_filter {
                    Some(sql) => Some(row_condition(&context, grant, dataset_id, name, &stored, sql)?),
                    None => None,
                };
                let key = grant.pseudonym_key().map_err(|error| RuntimeError::Internal(error.to_string()))?;
                let granted = GrantedTable::new(name, stored, condition, &pseudonymised, &Pseudonymiser::udf(key))
                    .map_err(|error| {
                        RuntimeError::Internal(format!("building {dataset_id} for grant {}: {error}", grant.id))
                    })?;
                context
                    .register_table(name, Arc::new(granted))
                    .map_err(|error| RuntimeError::Internal(format!("registering {dataset_id}: {error}")))?;
            }
            registered.insert(table.dataset.name.clone(), table.dataset.clone());
        }
        Ok(Self { context, grant: grant.clone(), mode, tables: registered })
    }

    /// The granted columns, one `(table, column, arrow type, mode, tag)` per column.
    pub async fn describe(&self) -> Vec<(String, String, String, AccessMode, ColumnTag)> {
        let mut columns = Vec::new();
        for (name, dataset) in &self.tables {
            let Ok(provider) = self.context.table_provider(name.as_str()).await else { continue };
            let schema = provider.schema();
            for field in schema.fields() {
                let mode = self.grant.mode(&dataset.id(), field.name());
                if mode == AccessMode::Denied {
                    continue;
                }
                let tag = dataset.tag_of(field.name()).unwrap_or(ColumnTag::Public);
                columns.push((name.clone(), field.name().clone(), field.data_type().to_string(), mode, tag));
            }
        }
        columns
    }

    /// Plans, checks and runs `sql` under the grant.
    pub async fn query(&self, sql: &str) -> Result<GovernedResult, RuntimeError> {
        let plan = self.check(sql).await?;
        let (plan, lineage) = plan;
        let failed = |error: datafusion::error::DataFusionError| RuntimeError::Query(error.to_string());
        let physical = self.context.execute_logical_plan(plan).await.map_err(failed)?.create_physical_plan().await;
        let physical = physical.map_err(failed)?;
        let batches = collect(physical.clone(), self.context.task_ctx()).await.map_err(failed)?;
        let (rows_scanned, bytes_scanned) = scanned(&physical);
        let mut result = self.govern(batches, lineage)?;
        result.rows_scanned = rows_scanned;
        result.bytes_scanned = bytes_scanned;
        Ok(result)
    }

    /// Plans `sql` and checks it against the grant; returns the plan to run (extended with
    /// contributor counts where needed) and the lineage of its visible columns.
    pub async fn check(&self, sql: &str) -> Result<(LogicalPlan, OutputLineage), RuntimeError> {
        self.check_recording(sql, None).await
    }

    /// Checks `sql` like [`GovernedSession::check`] and returns every use it makes of a
    /// source column (project, group, join, filter, order, aggregate) and its output columns:
    /// under a grant where every column is `visible`, what `policy::least_mode` needs to
    /// draft the narrowest application for the query.
    pub async fn column_usages(&self, sql: &str) -> Result<(Vec<(SourceColumn, Usage)>, Vec<String>), RuntimeError> {
        let mut used = Vec::new();
        let (_, lineage) = self.check_recording(sql, Some(&mut used)).await?;
        Ok((used, lineage.columns.into_iter().map(|column| column.name).collect()))
    }

    async fn check_recording(
        &self,
        sql: &str,
        record: Option<&mut Vec<(SourceColumn, Usage)>>,
    ) -> Result<(LogicalPlan, OutputLineage), RuntimeError> {
        let state = self.context.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement =
            state.sql_to_statement(sql, &dialect).map_err(|error| RuntimeError::InvalidQuery(error.to_string()))?;
        let is_query = matches!(&statement, DataFusionStatement::Statement(inner) if matches!(inner.as_ref(), SqlStatement::Query(_)));
        if !is_query {
            return Err(refusal(
                "statement",
                "only queries may run in a domain; DDL, DML, COPY, EXPLAIN and settings are refused",
            ));
        }
        let references = state
            .resolve_table_references(&statement)
            .map_err(|error| RuntimeError::InvalidQuery(error.to_string()))?;
        for reference in references {
            let qualified = reference.catalog().is_some_and(|catalog| catalog != "datafusion")
                || reference.schema().is_some_and(|schema| schema != "public");
            if qualified || !self.tables.contains_key(reference.table()) {
                return Err(refusal(
                    "catalog",
                    &format!("table \"{reference}\" is not granted in grant {}", self.grant.id),
                ));
            }
        }
        let plan =
            state.statement_to_plan(statement).await.map_err(|error| RuntimeError::InvalidQuery(error.to_string()))?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| refusal("statement", "only queries may run in a domain; DDL, DML and statements are refused"))?;
        refuse_reserved_names(&plan)?;

        let mut walker = Walker {
            session: self,
            sources: Vec::new(),
            index: BTreeMap::new(),
            subject_kinds: BTreeSet::new(),
            measures: Vec::new(),
            used: record.is_some().then(Default::default),
        };
        let fields = walker.walk(&plan)?;
        for (position, field) in fields.iter().enumerate() {
            let name = plan.schema().field(position).name().clone();
            for &source in &field.raw {
                walker.decide(source, &Usage::Project).map_err(|refusal| with_context(refusal, &name))?;
            }
        }
        if let (Some(record), Some(used)) = (record, walker.used.take()) {
            let used = used.into_inner();
            record.extend(used.into_iter().map(|(source, usage)| (walker.sources[source].column.clone(), usage)));
        }

        let mut lineage = OutputLineage {
            columns: fields
                .iter()
                .enumerate()
                .map(|(position, field)| ColumnLineage {
                    name: plan.schema().field(position).name().clone(),
                    sources: field
                        .raw
                        .union(&field.aggregated)
                        .map(|&source| walker.sources[source].column.clone())
                        .collect(),
                    aggregated: field.raw.is_empty() && field.is_aggregate,
                    measure: None,
                })
                .collect(),
            aggregated: false,
            subject_kinds: walker.subject_kinds.iter().copied().collect(),
            contributors: Vec::new(),
            magnitudes: Vec::new(),
            suppressed_groups: 0,
            suppression_rule: None,
            withheld_keys: Vec::new(),
            sketches: Vec::new(),
            verification: None,
        };

        let aggregates = contains_aggregate(&plan);
        if !aggregates {
            walker.refuse_imported_lookup()?;
        }
        if walker.subject_kinds.is_empty() || !aggregates {
            return Ok((plan, lineage));
        }
        let plan = walker.add_contributors(&plan)?.ok_or_else(|| {
            refusal(
                "governed_aggregate",
                "aggregates over subject data must be the outermost step of a query (optionally followed by projection, HAVING, ORDER BY and LIMIT) so that contributors can be counted",
            )
        })?;
        lineage.aggregated = true;
        lineage.magnitudes = walker
            .measures
            .into_iter()
            .map(|measure| MagnitudeLineage {
                measure: measure.measure,
                columns: measure.columns.into_iter().collect(),
                kind: measure.kind,
                per_row: Vec::new(),
            })
            .collect();
        Ok((plan, lineage))
    }

    /// Splits hidden contributor columns off, withholds groups below the threshold (in
    /// production), and fills the lineage.
    fn govern(&self, batches: Vec<RecordBatch>, mut lineage: OutputLineage) -> Result<GovernedResult, RuntimeError> {
        let internal = |error: datafusion::arrow::error::ArrowError| RuntimeError::Internal(error.to_string());
        let k = self.grant.application.disclosure.threshold_k;
        let mut kept_batches = Vec::with_capacity(batches.len());
        let mut counts: BTreeMap<SubjectKind, Vec<u64>> = BTreeMap::new();
        let mut suppressed = 0u64;
        let mut rows = 0u64;
        for batch in batches {
            let schema = batch.schema();
            let mut counters: Vec<(usize, SubjectKind)> = Vec::new();
            let mut largest: Vec<usize> = Vec::new();
            let mut sketches: Vec<(usize, SubjectKind)> = Vec::new();
            for (index, field) in schema.fields().iter().enumerate() {
                if let Some(kind) = field.name().strip_prefix(CONTRIBUTORS_PREFIX) {
                    counters.push((index, hidden_kind(kind)));
                } else if field.name().starts_with(LARGEST_PREFIX) {
                    largest.push(index);
                } else if let Some(kind) = field.name().strip_prefix(SKETCH_PREFIX) {
                    sketches.push((index, hidden_kind(kind)));
                }
            }
            if counters.is_empty() {
                rows += batch.num_rows() as u64;
                kept_batches.push(batch);
                continue;
            }
            if largest.len() != lineage.magnitudes.len() {
                return Err(RuntimeError::Internal(format!(
                    "{} largest-contribution columns for {} magnitude aggregates",
                    largest.len(),
                    lineage.magnitudes.len()
                )));
            }
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|row| {
                    let enough = counters.iter().all(|&(index, _)| {
                        let column = batch.column(index).as_primitive::<Int64Type>();
                        column.is_valid(row) && column.value(row) as u64 >= k
                    });
                    Some(enough || self.mode == Mode::Sample)
                })
                .collect();
            for &(index, kind) in &counters {
                let column = batch.column(index).as_primitive::<Int64Type>();
                let per_row = counts.entry(kind).or_default();
                for row in 0..batch.num_rows() {
                    if keep.value(row) {
                        per_row.push(column.value(row).max(0) as u64);
                    }
                }
            }
            for (&index, magnitude) in largest.iter().zip(&mut lineage.magnitudes) {
                let summaries = batch.column(index).as_struct();
                let totals = summaries.column(0).as_primitive::<Float64Type>();
                let biggest = summaries.column(1).as_list::<i32>();
                let bucketed = summaries.column(2).as_boolean();
                for row in (0..batch.num_rows()).filter(|&row| keep.value(row)) {
                    magnitude.per_row.push(Contributions {
                        total: totals.value(row),
                        largest: biggest.value(row).as_primitive::<Float64Type>().values().to_vec(),
                        bucketed: bucketed.value(row),
                    });
                }
            }
            for &(index, kind) in &sketches {
                let column = batch.column(index).as_binary::<i32>();
                let per_row = match lineage.sketches.iter().position(|sketches| sketches.kind == kind) {
                    Some(position) => &mut lineage.sketches[position].per_row,
                    None => {
                        lineage.sketches.push(SubjectSketches { kind, per_row: Vec::new() });
                        &mut lineage.sketches.last_mut().expect("just pushed").per_row
                    }
                };
                for row in (0..batch.num_rows()).filter(|&row| keep.value(row)) {
                    let sketch = subject_sketch::decode(column.value(row), k)
                        .map_err(|error| RuntimeError::Internal(format!("subject sketch: {error}")))?;
                    per_row.push(sketch);
                }
            }
            suppressed += keep.iter().filter(|kept| *kept == Some(false)).count() as u64;
            let keys: Vec<usize> = (0..batch.num_columns())
                .filter(|index| lineage.columns.get(*index).is_some_and(|column| !column.aggregated))
                .collect();
            for row in (0..batch.num_rows()).filter(|&row| !keep.value(row)) {
                let values = keys.iter().map(|&index| key_text(batch.column(index).as_ref(), row)).collect();
                lineage.withheld_keys.push(values);
            }
            let filtered = filter_record_batch(&batch, &keep).map_err(internal)?;
            let visible: Vec<usize> = (0..filtered.num_columns())
                .filter(|index| {
                    !counters.iter().any(|(hidden, _)| hidden == index)
                        && !largest.contains(index)
                        && !sketches.iter().any(|(hidden, _)| hidden == index)
                })
                .collect();
            let projected = filtered.project(&visible).map_err(internal)?;
            rows += projected.num_rows() as u64;
            kept_batches.push(projected);
        }
        if lineage.aggregated {
            lineage.contributors = counts.into_iter().map(|(kind, per_row)| SubjectCounts { kind, per_row }).collect();
            lineage.suppressed_groups = suppressed;
            lineage.suppression_rule = Some(format!("threshold k={k} distinct subjects"));
        }
        Ok(GovernedResult { batches: kept_batches, lineage, rows, rows_scanned: 0, bytes_scanned: 0 })
    }
}

impl Walker<'_> {
    fn source(&mut self, table: &str, column: &str) -> Result<usize, RuntimeError> {
        if let Some(&index) = self.index.get(&(table.to_string(), column.to_string())) {
            return Ok(index);
        }
        let dataset = self.session.tables.get(table).ok_or_else(|| {
            refusal("catalog", &format!("table \"{table}\" is not granted in grant {}", self.session.grant.id))
        })?;
        let id = dataset.id();
        let tag = dataset.tag_of(column).unwrap_or(ColumnTag::Public);
        let mode = self.session.grant.mode(&id, column);
        if let Some(kind) = dataset.subject_kind {
            self.subject_kinds.insert(kind);
        }
        let subject_kind = if tag == ColumnTag::Subject { dataset.subject_kind } else { None };
        self.sources.push(Source {
            column: SourceColumn { dataset: id, column: column.to_string(), tag },
            mode,
            subject_kind,
        });
        self.index.insert((table.to_string(), column.to_string()), self.sources.len() - 1);
        Ok(self.sources.len() - 1)
    }

    /// A query without an aggregate may not read the developer's imported tables together
    /// with granted data: the developer chose the import's keys, so the granted rows they
    /// pick out would be a lookup of those subjects (as a join to literals would be). Inside
    /// an aggregate the contributors are counted and small groups withheld.
    fn refuse_imported_lookup(&self) -> Result<(), RuntimeError> {
        let grant = &self.session.grant;
        let imported = self.sources.iter().find(|source| grant.is_import(&source.column.dataset));
        let granted = self.sources.iter().find(|source| !grant.is_import(&source.column.dataset));
        if let (Some(imported), Some(granted)) = (imported, granted) {
            return Err(refusal(
                "imported_lookup",
                &format!(
                    "imported table {} meets dataset {} of grant {} only inside an aggregate: rows picked by your own keys would single out those subjects; GROUP BY and aggregate, so that contributors are counted",
                    imported.column.dataset, granted.column.dataset, grant.id
                ),
            ));
        }
        Ok(())
    }

    fn decide(&self, source: usize, usage: &Usage) -> Result<(), RuntimeError> {
        if let Some(used) = &self.used {
            used.borrow_mut().push((source, usage.clone()));
        }
        let source = &self.sources[source];
        decide(source.mode, usage, &source.column.column, &source.column.dataset, &self.session.grant.id)
            .map_err(RuntimeError::Refused)
    }

    /// Checks a condition (WHERE, HAVING, JOIN ON): an equality between two columns is a join
    /// key — the SQL planner leaves `JOIN … ON a = b` in the join's filter and comma joins in
    /// WHERE — and every other conjunct is a filter.
    fn condition(&self, predicate: &Expr, schema: &DFSchema, input: &[FieldLineage]) -> Result<(), RuntimeError> {
        for conjunct in split_conjunction(predicate) {
            match conjunct {
                Expr::BinaryExpr(binary)
                    if binary.op == Operator::Eq && is_column(&binary.left) && is_column(&binary.right) =>
                {
                    let left = self.expr(&binary.left, schema, input, Some(&Usage::Join))?;
                    let right = self.expr(&binary.right, schema, input, Some(&Usage::Join))?;
                    self.join_keys(&left, &right, conjunct)?;
                }
                _ => {
                    self.expr(conjunct, schema, input, Some(&Usage::Filter))?;
                }
            }
        }
        Ok(())
    }

    /// Lineage of an expression evaluated over `input` fields, checking `usage` for every
    /// column it reads.
    fn expr(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        input: &[FieldLineage],
        usage: Option<&Usage>,
    ) -> Result<FieldLineage, RuntimeError> {
        refuse_subqueries(expr)?;
        let mut lineage = FieldLineage::default();
        // In schema order, so that a refusal always names the same column first.
        let mut indices = expr
            .column_refs()
            .into_iter()
            .map(|column| schema.index_of_column(column).map_err(|error| RuntimeError::Internal(error.to_string())))
            .collect::<Result<Vec<usize>, _>>()?;
        indices.sort_unstable();
        for index in indices {
            let field = &input[index];
            if let Some(usage) = usage {
                for &source in &field.raw {
                    self.decide(source, usage).map_err(|refusal| with_expression(refusal, expr))?;
                }
            }
            lineage.merge(field);
        }
        lineage.shape = self.shape(expr, schema, input);
        Ok(lineage)
    }

    /// How `expr` computes its value from the fields it reads.
    fn shape(&self, expr: &Expr, schema: &DFSchema, input: &[FieldLineage]) -> Shape {
        let linear = |shape: Shape| match shape {
            Shape::Constant => Shape::Constant,
            Shape::Column | Shape::Linear => Shape::Linear,
            Shape::Selective => Shape::Selective,
        };
        match expr {
            Expr::Alias(alias) => self.shape(&alias.expr, schema, input),
            Expr::Column(column) => schema
                .index_of_column(column)
                .ok()
                .and_then(|index| input.get(index))
                .map_or(Shape::Selective, |field| field.shape),
            Expr::Literal(..) => Shape::Constant,
            Expr::Cast(Cast { expr: inner, field }) | Expr::TryCast(TryCast { expr: inner, field }) => {
                match self.shape(inner, schema, input) {
                    Shape::Constant => Shape::Constant,
                    shape => match inner.get_type(schema) {
                        Ok(from) if lossless_cast(&from, field.data_type()) => shape,
                        _ => Shape::Selective,
                    },
                }
            }
            Expr::Negative(inner) => linear(self.shape(inner, schema, input)),
            Expr::BinaryExpr(binary) => {
                let left = self.shape(&binary.left, schema, input);
                let right = self.shape(&binary.right, schema, input);
                match binary.op {
                    Operator::Plus | Operator::Minus => linear(left.max(right)),
                    Operator::Multiply if left == Shape::Constant => linear(right),
                    Operator::Multiply if right == Shape::Constant => linear(left),
                    // Integer division floors: `employees / 100` buckets values like a CASE would.
                    Operator::Divide
                        if right == Shape::Constant && !expr.get_type(schema).is_ok_and(|t| t.is_integer()) =>
                    {
                        linear(left)
                    }
                    _ if left == Shape::Constant && right == Shape::Constant => Shape::Constant,
                    _ => Shape::Selective,
                }
            }
            other if other.column_refs().is_empty() => Shape::Constant,
            _ => Shape::Selective,
        }
    }

    /// A join key that is only joinable must meet another granted column as it is: joined to a
    /// literal (`JOIN (VALUES ('9133…')) v ON e.uscc = v.x`) or an expression, the join tests
    /// for one value and tells the module which row has it.
    fn join_keys(&self, left: &FieldLineage, right: &FieldLineage, condition: &Expr) -> Result<(), RuntimeError> {
        for (side, other) in [(left, right), (right, left)] {
            for &source in &side.raw {
                let source = &self.sources[source];
                if source.mode != AccessMode::JoinOnly {
                    continue;
                }
                let bare = |field: &FieldLineage| field.raw.len() == 1 && field.shape == Shape::Column;
                if !bare(side) || !bare(other) {
                    return Err(RuntimeError::Refused(Refusal {
                        rule: "access_mode.join_only".into(),
                        message: format!(
                            "column \"{}\" of dataset \"{}\" is join_only in grant {}; it can only be joined to another granted column as it is, not to literals or expressions (in `{condition}`)",
                            source.column.column, source.column.dataset, self.session.grant.id
                        ),
                    }));
                }
            }
        }
        Ok(())
    }

    fn walk(&mut self, plan: &LogicalPlan) -> Result<Vec<FieldLineage>, RuntimeError> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let table = scan.table_name.table().to_string();
                let schema = scan.source.schema();
                let indices: Vec<usize> = match &scan.projection {
                    Some(indices) => indices.clone(),
                    None => (0..schema.fields().len()).collect(),
                };
                let mut fields = Vec::with_capacity(indices.len());
                for index in indices {
                    let source = self.source(&table, schema.field(index).name())?;
                    fields.push(FieldLineage { raw: BTreeSet::from([source]), ..FieldLineage::default() });
                }
                let input_schema = scan.projected_schema.as_ref();
                for filter in &scan.filters {
                    self.expr(filter, input_schema, &fields, Some(&Usage::Filter))?;
                }
                Ok(fields)
            }
            LogicalPlan::Projection(projection) => {
                let input = self.walk(&projection.input)?;
                let schema = projection.input.schema();
                projection.expr.iter().map(|expr| self.expr(expr, schema, &input, None)).collect()
            }
            LogicalPlan::Filter(filter) => {
                let input = self.walk(&filter.input)?;
                self.condition(&filter.predicate, filter.input.schema(), &input)?;
                Ok(input)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.walk(&aggregate.input)?;
                let schema = aggregate.input.schema();
                let mut fields = Vec::new();
                for expr in &aggregate.group_expr {
                    let lineage = self.expr(expr, schema, &input, Some(&Usage::GroupBy))?;
                    // A grouping set yields one output field per distinct grouping expression.
                    let width = match expr {
                        Expr::GroupingSet(set) => set.distinct_expr().len(),
                        _ => 1,
                    };
                    fields.extend(std::iter::repeat_n(lineage, width));
                }
                while fields.len() < aggregate.schema.fields().len() - aggregate.aggr_expr.len() {
                    // The grouping-id column of grouping sets carries no source values.
                    fields.push(FieldLineage::default());
                }
                for expr in &aggregate.aggr_expr {
                    fields.push(self.aggregate_expr(expr, schema, &input)?);
                }
                Ok(fields)
            }
            LogicalPlan::Join(join) => {
                let left = self.walk(&join.left)?;
                let right = self.walk(&join.right)?;
                let mut both = left.clone();
                both.extend(right.iter().cloned());
                let combined = join
                    .left
                    .schema()
                    .join(join.right.schema())
                    .map_err(|error| RuntimeError::Internal(error.to_string()))?;
                for (left_key, right_key) in &join.on {
                    let left_lineage = self.expr(left_key, join.left.schema(), &left, Some(&Usage::Join))?;
                    let right_lineage = self.expr(right_key, join.right.schema(), &right, Some(&Usage::Join))?;
                    self.join_keys(&left_lineage, &right_lineage, &left_key.clone().eq(right_key.clone()))?;
                }
                if let Some(filter) = &join.filter {
                    self.condition(filter, &combined, &both)?;
                }
                let fields = match join.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => left,
                    JoinType::RightSemi | JoinType::RightAnti => right,
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => both,
                    JoinType::LeftMark | JoinType::RightMark => {
                        return Err(refusal("unsupported_plan", "mark joins are not supported by the policy check"));
                    }
                };
                if fields.len() != join.schema.fields().len() {
                    return Err(RuntimeError::Internal("join lineage does not match the join schema".into()));
                }
                Ok(fields)
            }
            LogicalPlan::Sort(sort) => {
                let input = self.walk(&sort.input)?;
                for expr in &sort.expr {
                    self.expr(&expr.expr, sort.input.schema(), &input, Some(&Usage::Order))?;
                }
                Ok(input)
            }
            LogicalPlan::Window(window) => {
                let mut fields = self.walk(&window.input)?;
                let schema = window.input.schema();
                for expr in &window.window_expr {
                    // Window results are per row: everything they read counts as raw.
                    let mut lineage = self.expr(expr, schema, &fields.clone(), Some(&Usage::Order))?;
                    lineage.shape = Shape::Selective;
                    fields.push(lineage);
                }
                Ok(fields)
            }
            LogicalPlan::Limit(limit) => self.walk(&limit.input),
            LogicalPlan::SubqueryAlias(alias) => self.walk(&alias.input),
            LogicalPlan::Repartition(repartition) => self.walk(&repartition.input),
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => self.walk(input),
            LogicalPlan::Union(union) => {
                let mut fields = vec![FieldLineage::default(); union.schema.fields().len()];
                for input in &union.inputs {
                    for (field, lineage) in fields.iter_mut().zip(self.walk(input)?) {
                        field.merge(&lineage);
                    }
                }
                Ok(fields)
            }
            LogicalPlan::EmptyRelation(relation) => Ok(vec![FieldLineage::default(); relation.schema.fields().len()]),
            LogicalPlan::Values(values) => Ok(vec![FieldLineage::default(); values.schema.fields().len()]),
            other => Err(refusal(
                "unsupported_plan",
                &format!("queries containing {} are not supported by the policy check", plan_kind(other)),
            )),
        }
    }

    fn aggregate_expr(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        input: &[FieldLineage],
    ) -> Result<FieldLineage, RuntimeError> {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(function) = inner else {
            return Err(refusal("unsupported_plan", "aggregate expressions must be aggregate function calls"));
        };
        let name = function.func.name().to_lowercase();
        let mut lineage = FieldLineage { is_aggregate: true, shape: Shape::Selective, ..FieldLineage::default() };
        for argument in &function.params.args {
            // A FILTER clause singles out rows just as a CASE in the argument would.
            let shape = match function.params.filter {
                Some(_) => Shape::Selective,
                None => self.shape(argument, schema, input),
            };
            let usage = Usage::Aggregate { function: name.clone(), argument: shape.argument() };
            let argument = self.expr(argument, schema, input, Some(&usage))?;
            lineage.aggregated.extend(argument.raw.iter().chain(&argument.aggregated));
        }
        if let Some(filter) = &function.params.filter {
            self.expr(filter, schema, input, Some(&Usage::Filter))?;
        }
        for order in &function.params.order_by {
            self.expr(&order.expr, schema, input, Some(&Usage::Order))?;
        }
        Ok(lineage)
    }

    /// The field of `plan` that is the subject column of `kind`, copied as it is. A computed
    /// field is never taken: `concat(uscc, random())` would make every row its own subject.
    fn subject_field(&mut self, plan: &LogicalPlan, kind: SubjectKind) -> Result<Option<Column>, RuntimeError> {
        let fields = self.walk(plan)?;
        let schema = plan.schema();
        Ok(fields.iter().enumerate().find_map(|(index, field)| {
            let bare = field.raw.len() == 1 && field.aggregated.is_empty() && field.shape == Shape::Column;
            let source = *field.raw.first()?;
            (bare && self.sources[source].subject_kind == Some(kind))
                .then(|| Column::from(schema.qualified_field(index)))
        }))
    }

    /// Rebuilds `plan` so that it also outputs the subject column of `kind` from below, under a
    /// hidden name: subqueries and CTEs that dropped it still have their contributors counted.
    /// `None` when the subject cannot be carried up through some node.
    fn carry_subject(
        &mut self,
        plan: &LogicalPlan,
        kind: SubjectKind,
    ) -> Result<Option<(LogicalPlan, Column)>, RuntimeError> {
        let internal = |error: datafusion::error::DataFusionError| RuntimeError::Internal(error.to_string());
        let carried_name = format!("{CARRIED_SUBJECT_PREFIX}{}", kind.as_str());
        let rebuilt = match plan {
            LogicalPlan::Projection(projection) => {
                let (input, column) = match self.subject_field(&projection.input, kind)? {
                    Some(column) => (projection.input.as_ref().clone(), column),
                    None => match self.carry_subject(&projection.input, kind)? {
                        Some(carried) => carried,
                        None => return Ok(None),
                    },
                };
                let mut exprs = projection.expr.clone();
                exprs.push(Expr::Column(column).alias(&carried_name));
                let projection = Projection::try_new(exprs, Arc::new(input)).map_err(internal)?;
                (LogicalPlan::Projection(projection), Column::from_name(&carried_name))
            }
            LogicalPlan::SubqueryAlias(alias) => {
                let Some((input, _)) = self.carry_subject(&alias.input, kind)? else { return Ok(None) };
                let alias = SubqueryAlias::try_new(Arc::new(input), alias.alias.clone()).map_err(internal)?;
                let column = Column::new(Some(alias.alias.clone()), &carried_name);
                (LogicalPlan::SubqueryAlias(alias), column)
            }
            LogicalPlan::Filter(_) | LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
                let Some(child) = plan.inputs().first().copied() else { return Ok(None) };
                let Some((input, column)) = self.carry_subject(child, kind)? else { return Ok(None) };
                (plan.with_new_exprs(plan.expressions(), vec![input]).map_err(internal)?, column)
            }
            _ => return Ok(None),
        };
        Ok(Some(rebuilt))
    }

    /// Rebuilds the plan with hidden distinct-contributor counts on its outermost aggregate.
    /// `None` when the aggregate is not the outermost step.
    fn add_contributors(&mut self, plan: &LogicalPlan) -> Result<Option<LogicalPlan>, RuntimeError> {
        let internal = |error: datafusion::error::DataFusionError| RuntimeError::Internal(error.to_string());
        let rebuilt = match plan {
            LogicalPlan::Aggregate(aggregate) => {
                let mut input = Arc::clone(&aggregate.input);
                let mut subjects = Vec::new();
                for kind in self.subject_kinds.clone() {
                    let column = match self.subject_field(&input, kind)? {
                        Some(column) => column,
                        None => {
                            let (carried, column) = self.carry_subject(&input, kind)?.ok_or_else(|| {
                                refusal(
                                    "governed_aggregate",
                                    &format!(
                                        "the {} subject column must reach the aggregate so that contributors can be counted; keep it in the subqueries the aggregate reads",
                                        kind.as_str()
                                    ),
                                )
                            })?;
                            input = Arc::new(carried);
                            column
                        }
                    };
                    subjects.push((kind, column));
                }
                // Each subject is keyed once, under the aggregate, for every host function.
                let mut exprs: Vec<Expr> = input.schema().columns().into_iter().map(Expr::Column).collect();
                for (kind, column) in &subjects {
                    exprs.push(
                        SubjectKeys::udf()
                            .call(vec![Expr::Column(column.clone())])
                            .alias(format!("{SUBJECT_KEY_PREFIX}{}", kind.as_str())),
                    );
                }
                let input = Arc::new(LogicalPlan::Projection(Projection::try_new(exprs, input).map_err(internal)?));
                let mut aggr_expr = aggregate.aggr_expr.clone();
                for (kind, _) in subjects {
                    let key = Expr::Column(Column::from_name(format!("{SUBJECT_KEY_PREFIX}{}", kind.as_str())));
                    let disclosure = &self.session.grant.application.disclosure;
                    aggr_expr.push(
                        CappedContributors::udaf(disclosure.threshold_k)
                            .call(vec![key.clone()])
                            .alias(format!("{CONTRIBUTORS_PREFIX}{}", kind.as_str())),
                    );
                    if disclosure.differencing {
                        aggr_expr.push(
                            SubjectSketcher::udaf(disclosure.threshold_k)
                                .call(vec![key.clone()])
                                .alias(format!("{SKETCH_PREFIX}{}", kind.as_str())),
                        );
                    }
                    for (position, expr) in aggregate.aggr_expr.iter().enumerate() {
                        let Some((argument, filter)) = magnitude_argument(expr, input.schema()) else { continue };
                        let hidden = format!("{LARGEST_PREFIX}{position}_{}", kind.as_str());
                        let call =
                            LargestContributions::udaf().call(vec![key.clone(), cast(argument, DataType::Float64)]);
                        let call = match filter {
                            Some(filter) => call.filter(filter).build().map_err(internal)?,
                            None => call,
                        };
                        aggr_expr.push(call.alias(&hidden));
                        self.measures.push(Measure {
                            hidden,
                            measure: expr.schema_name().to_string(),
                            kind,
                            columns: BTreeSet::from([expr.schema_name().to_string()]),
                        });
                    }
                }
                let aggregate = Aggregate::try_new(input, aggregate.group_expr.clone(), aggr_expr)
                    .map_err(|error| RuntimeError::Internal(error.to_string()))?;
                LogicalPlan::Aggregate(aggregate)
            }
            LogicalPlan::Projection(projection) => {
                let Some(input) = self.add_contributors(&projection.input)? else { return Ok(None) };
                let mut exprs = projection.expr.clone();
                for kind in &self.subject_kinds {
                    exprs.push(Expr::Column(Column::from_name(format!("{CONTRIBUTORS_PREFIX}{}", kind.as_str()))));
                    if self.session.grant.application.disclosure.differencing {
                        exprs.push(Expr::Column(Column::from_name(format!("{SKETCH_PREFIX}{}", kind.as_str()))));
                    }
                }
                for measure in &mut self.measures {
                    let shown = projection.expr.iter().enumerate().filter(|(_, expr)| {
                        expr.column_refs().iter().any(|column| measure.columns.contains(&column.name))
                    });
                    let shown: BTreeSet<String> =
                        shown.map(|(position, _)| projection.schema.field(position).name().clone()).collect();
                    measure.columns = shown;
                    exprs.push(Expr::Column(Column::from_name(&measure.hidden)));
                }
                LogicalPlan::Projection(
                    Projection::try_new(exprs, Arc::new(input))
                        .map_err(|error| RuntimeError::Internal(error.to_string()))?,
                )
            }
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
                let Some(child) = plan.inputs().first().copied() else { return Ok(None) };
                let Some(input) = self.add_contributors(child)? else { return Ok(None) };
                plan.with_new_exprs(plan.expressions(), vec![input])
                    .map_err(|error| RuntimeError::Internal(error.to_string()))?
            }
            _ => return Ok(None),
        };
        Ok(Some(rebuilt))
    }
}

/// Refuses a query that names a column (an alias, a subquery's output) with the host's
/// reserved prefix: such a column could pass for the host's hidden contributor count or
/// subject key.
fn refuse_reserved_names(plan: &LogicalPlan) -> Result<(), RuntimeError> {
    let mut reserved = None;
    plan.apply_with_subqueries(|node| {
        reserved = node.schema().fields().iter().find(|field| field.name().starts_with(RESERVED_PREFIX)).cloned();
        Ok(if reserved.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })
    .map_err(|error| RuntimeError::Internal(error.to_string()))?;
    match reserved {
        Some(field) => Err(refusal(
            "reserved_name",
            &format!(
                "column name \"{}\" starts with \"{RESERVED_PREFIX}\", which the host reserves for its own columns; choose another alias",
                field.name()
            ),
        )),
        None => Ok(()),
    }
}

/// The subject kind a hidden column's name ends in.
fn hidden_kind(suffix: &str) -> SubjectKind {
    if suffix == SubjectKind::Person.as_str() { SubjectKind::Person } else { SubjectKind::Enterprise }
}

/// The grant's row filter on one table as a plan expression over the stored columns.
fn row_condition(
    context: &SessionContext,
    grant: &Grant,
    dataset_id: &str,
    name: &str,
    stored: &Arc<dyn datafusion::catalog::TableProvider>,
    sql: &str,
) -> Result<Expr, RuntimeError> {
    let invalid = |reason: String| {
        RuntimeError::Internal(format!(
            "the row filter of grant {} on {dataset_id} ({sql}) is not a condition on its columns: {reason}",
            grant.id
        ))
    };
    let schema =
        DFSchema::try_from_qualified_schema(name, &stored.schema()).map_err(|error| invalid(error.to_string()))?;
    let condition = context.parse_sql_expr(sql, &schema).map_err(|error| invalid(error.to_string()))?;
    if refuse_subqueries(&condition).is_err() {
        return Err(invalid("subqueries are not allowed".into()));
    }
    match condition.get_type(&schema) {
        Ok(DataType::Boolean) => Ok(condition),
        Ok(other) => Err(invalid(format!("it is of type {other}, not a condition"))),
        Err(error) => Err(invalid(error.to_string())),
    }
}

/// Whether a cast keeps every value apart (widening numbers, between string encodings). A
/// narrowing cast is a step function — `CAST(kwh / 1e6 AS INT)` buckets values — and so counts
/// as selective.
fn lossless_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    match (from, to) {
        (Dictionary(_, values), to) => lossless_cast(values, to),
        (Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32, Int64 | Float64 | Decimal128(..) | Decimal256(..)) => {
            true
        }
        (Int8 | Int16 | UInt8 | UInt16, Int32 | Float32) => true,
        (Int8 | UInt8, Int16) => true,
        (UInt8 | UInt16 | UInt32 | UInt64, UInt64) => true,
        (Float16 | Float32, Float32 | Float64) => true,
        (Decimal128(..), Decimal128(..) | Decimal256(..) | Float64) => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        _ => false,
    }
}

/// A bare column, possibly behind casts the planner inserted.
fn is_column(expr: &Expr) -> bool {
    match expr {
        Expr::Column(_) => true,
        Expr::Cast(cast) => is_column(&cast.expr),
        Expr::TryCast(cast) => is_column(&cast.expr),
        _ => false,
    }
}

/// The argument (and FILTER clause) of a magnitude aggregate — SUM or AVG of something that
/// is not a constant — whose cells dominance rules judge. COUNT is not a magnitude.
fn magnitude_argument(expr: &Expr, input: &DFSchema) -> Option<(Expr, Option<Expr>)> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = inner else { return None };
    if !matches!(function.func.name().to_ascii_lowercase().as_str(), "sum" | "avg" | "mean") {
        return None;
    }
    let [argument] = function.params.args.as_slice() else { return None };
    let numeric = argument.get_type(input).is_ok_and(|data_type| data_type.is_numeric());
    if matches!(argument, Expr::Literal(..)) || !numeric {
        return None;
    }
    Some((argument.clone(), function.params.filter.as_deref().cloned()))
}

fn contains_aggregate(plan: &LogicalPlan) -> bool {
    plan.exists(|node| Ok(matches!(node, LogicalPlan::Aggregate(_)))).unwrap_or(true)
}

fn refuse_subqueries(expr: &Expr) -> Result<(), RuntimeError> {
    let nested = expr
        .exists(|node| {
            Ok(matches!(
                node,
                Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::SetComparison(_)
                    | Expr::OuterReferenceColumn(..)
            ))
        })
        .unwrap_or(true);
    if nested {
        return Err(refusal(
            "unsupported_plan",
            "subqueries inside expressions are not supported by the policy check; use a JOIN",
        ));
    }
    Ok(())
}

fn plan_kind(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Ddl(_) => "DDL",
        LogicalPlan::Dml(_) => "DML",
        LogicalPlan::Copy(_) => "COPY",
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => "EXPLAIN",
        LogicalPlan::Statement(_) => "statements",
        LogicalPlan::Extension(_) => "extension nodes",
        LogicalPlan::Unnest(_) => "UNNEST",
        LogicalPlan::RecursiveQuery(_) => "recursive queries",
        LogicalPlan::Distinct(_) => "DISTINCT ON",
        LogicalPlan::Subquery(_) => "subqueries",
        LogicalPlan::DescribeTable(_) => "DESCRIBE",
        _ => "this plan node",
    }
}

fn refusal(rule: &str, message: &str) -> RuntimeError {
    RuntimeError::Refused(Refusal { rule: rule.to_string(), message: message.to_string() })
}

/// Points a refusal at the output column it was found in.
fn with_context(error: RuntimeError, output: &str) -> RuntimeError {
    match error {
        RuntimeError::Refused(mut refusal) => {
            refusal.message = format!("{} (output column \"{output}\")", refusal.message);
            RuntimeError::Refused(refusal)
        }
        other => other,
    }
}

/// Points a refusal at the expression that used the column.
fn with_expression(error: RuntimeError, expr: &Expr) -> RuntimeError {
    match error {
        RuntimeError::Refused(mut refusal) => {
            refusal.message = format!("{} (in `{expr}`)", refusal.message);
            RuntimeError::Refused(refusal)
        }
        other => other,
    }
}
