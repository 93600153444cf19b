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
//!
//! The walk also says what every output column is, whatever the grant allows
//! ([`ValueClass`]: a key, a count or a sum or mean of a linear expression, a spread, one
//! subject's value, rows, …), from DataFusion's aggregate functions as planned, and gives each
//! aggregated column its measure identity: the aggregate and the rows below its GROUP BY as
//! normalised text, so that outputs grouped differently over the same rows relate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, NullEquality};
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
use unseen_policy::review::{SubjectSketches, ValueClass, aggregate_function_class, is_magnitude_function, key_text};
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
    /// What the field is (a key, an aggregate, one subject's value, …); None for a literal,
    /// which derives from no data.
    class: Option<ValueClass>,
    /// The aggregate function or expression, as planned, that decided `class`.
    origin: String,
    /// How the field is computed from `raw`.
    shape: Shape,
    /// The field's value as normalised text: source columns as `dataset@vN.column`, no
    /// aliases, an aggregate followed by the rows it reads (`sum(…) FROM …`). An aggregated
    /// output column's measure identity.
    text: String,
}

impl FieldLineage {
    fn merge(&mut self, other: &FieldLineage) {
        self.raw.extend(&other.raw);
        self.aggregated.extend(&other.aggregated);
        let class = combine_classes(self.class, other.class);
        if class != self.class {
            self.origin = if class == other.class { other.origin.clone() } else { String::new() };
            self.class = class;
        }
        self.shape = self.shape.max(other.shape);
    }
}

/// The class of a value computed from two: the weaker ([`ValueClass::combine`]); a literal
/// adds nothing.
fn combine_classes(left: Option<ValueClass>, right: Option<ValueClass>) -> Option<ValueClass> {
    match (left, right) {
        (None, class) | (class, None) => class,
        (Some(left), Some(right)) => Some(left.combine(right)),
    }
}

/// The rows a plan node produces, as normalised text, for measure identities: the relations
/// an inner join combines (sorted: the order of FROM and JOIN does not matter), and the set of
/// conditions on them (WHERE and ON alike). Anything that is not a filtered product (an outer
/// join, a LIMIT, DISTINCT, a nested aggregate, a union) becomes one opaque relation.
#[derive(Debug, Clone, Default)]
struct Rows {
    relations: Vec<String>,
    conditions: BTreeSet<String>,
    /// The ORDER BY of the rows, which matters only to a LIMIT above it.
    order: Vec<String>,
}

impl Rows {
    fn relation(text: String) -> Self {
        Self { relations: vec![text], ..Self::default() }
    }

    fn render(&self) -> String {
        let mut relations = self.relations.clone();
        relations.sort();
        let mut text = relations.join(" × ");
        if !self.conditions.is_empty() {
            text.push_str(" WHERE ");
            text.push_str(&self.conditions.iter().cloned().collect::<Vec<_>>().join(" AND "));
        }
        text
    }
}

/// A walked plan node: its fields' lineage and the rows it produces.
struct Walked {
    fields: Vec<FieldLineage>,
    rows: Rows,
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
    /// Scans of each dataset met so far, so that a self-join's second scan has a text of its
    /// own (`population@v1#2`).
    scans: BTreeMap<String, usize>,
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
            let mut pseudonymised: BTreeSet<String> = table
                .dataset
                .columns
                .iter()
                .filter(|column| grant.mode(dataset_id, &column.name) == AccessMode::Pseudonymised)
                .map(|column| column.name.clone())
                .collect();
            let key = grant.pseudonym_key().map_err(|error| RuntimeError::Internal(error.to_string()))?;
            // A sample's tokens are stored under the domain's key; every grant reads them
            // re-keyed under its own, so two grants' samples (and a developer's imports) never
            // link. Pseudonymised columns of a sample get the same per-grant key.
            let key = match mode {
                Mode::Sample => {
                    pseudonymised.extend(crate::sample::token_columns(&table.sample_path)?);
                    unseen_policy::sample::GrantSampleKeys::of(&key).tokens
                }
                Mode::Production => key,
            };
            let row_filter = grant.row_filter(dataset_id);
            if !pseudonymised.is_empty() || row_filter.is_some() {
                let stored = context.deregister_table(name).ok().flatten().ok_or_else(|| {
                    RuntimeError::Internal(format!("{dataset_id} vanished while it was being registered"))
                })?;
                let condition = match row_filter {
                    Some(sql) => Some(row_condition(&context, grant, dataset_id, name, &stored, sql)?),
                    None => None,
                };
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
            scans: BTreeMap::new(),
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
                .map(|(position, field)| {
                    let output = plan.schema().field(position);
                    let sources = field
                        .raw
                        .union(&field.aggregated)
                        .map(|&source| walker.sources[source].column.clone())
                        .collect();
                    output_column(output.name(), output.data_type(), field, sources)
                })
                .collect(),
            aggregated: false,
            subject_kinds: walker.subject_kinds.iter().copied().collect(),
            contributors: Vec::new(),
            magnitudes: Vec::new(),
            suppressed_groups: 0,
            suppression_rule: None,
            withheld_keys: Vec::new(),
            withheld_values: Vec::new(),
            withheld_contributors: Vec::new(),
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
            let measures: Vec<Option<Float64Array>> = (0..batch.num_columns())
                .filter(|index| lineage.columns.get(*index).is_some_and(|column| column.aggregated))
                .map(|index| {
                    datafusion::arrow::compute::cast(batch.column(index), &DataType::Float64)
                        .ok()
                        .map(|values| values.as_primitive::<Float64Type>().clone())
                })
                .collect();
            for row in (0..batch.num_rows()).filter(|&row| !keep.value(row)) {
                let values = keys.iter().map(|&index| key_text(batch.column(index).as_ref(), row)).collect();
                lineage.withheld_keys.push(values);
                let values = measures
                    .iter()
                    .map(|column| column.as_ref().filter(|column| column.is_valid(row)).map(|column| column.value(row)))
                    .collect();
                lineage.withheld_values.push(values);
                let fewest = counters
                    .iter()
                    .map(|&(index, _)| {
                        let column = batch.column(index).as_primitive::<Int64Type>();
                        if column.is_valid(row) { column.value(row).max(0) as u64 } else { 0 }
                    })
                    .min()
                    .unwrap_or(0);
                lineage.withheld_contributors.push(fewest);
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
        (lineage.class, lineage.origin) = classify(expr, schema, input);
        lineage.text = expr_text(expr, schema, input);
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
        Ok(self.walk_rows(plan)?.fields)
    }

    /// Lineage of every field of `plan`, and its rows as normalised text, checking every use
    /// of a source column on the way.
    fn walk_rows(&mut self, plan: &LogicalPlan) -> Result<Walked, RuntimeError> {
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
                    fields.push(FieldLineage {
                        raw: BTreeSet::from([source]),
                        class: Some(ValueClass::Key),
                        ..FieldLineage::default()
                    });
                }
                let dataset = self.session.tables.get(&table).map_or_else(|| table.clone(), DatasetVersion::id);
                let instance = self.scans.entry(dataset.clone()).or_default();
                *instance += 1;
                let relation = if *instance == 1 { dataset } else { format!("{dataset}#{instance}") };
                for (field, index) in fields.iter_mut().zip(scan.projected_schema.fields()) {
                    field.text = format!("{relation}.{}", index.name());
                }
                let mut rows = Rows::relation(relation);
                let input_schema = scan.projected_schema.as_ref();
                for filter in &scan.filters {
                    self.expr(filter, input_schema, &fields, Some(&Usage::Filter))?;
                    rows.conditions.insert(condition_text(filter, input_schema, &fields));
                }
                if let Some(fetch) = scan.fetch {
                    rows = Rows::relation(format!("limit {fetch} of {}", rows.render()));
                }
                Ok(Walked { fields, rows })
            }
            LogicalPlan::Projection(projection) => {
                let input = self.walk_rows(&projection.input)?;
                let schema = projection.input.schema();
                let fields = projection
                    .expr
                    .iter()
                    .map(|expr| self.expr(expr, schema, &input.fields, None))
                    .collect::<Result<_, _>>()?;
                Ok(Walked { fields, rows: input.rows })
            }
            LogicalPlan::Filter(filter) => {
                let mut input = self.walk_rows(&filter.input)?;
                let schema = filter.input.schema();
                self.condition(&filter.predicate, schema, &input.fields)?;
                for conjunct in split_conjunction(&filter.predicate) {
                    input.rows.conditions.insert(condition_text(conjunct, schema, &input.fields));
                }
                Ok(input)
            }
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.walk_rows(&aggregate.input)?;
                let schema = aggregate.input.schema();
                let rows = input.rows.render();
                let mut fields = Vec::new();
                for expr in &aggregate.group_expr {
                    let mut lineage = self.expr(expr, schema, &input.fields, Some(&Usage::GroupBy))?;
                    // A group label computed from aggregates below is neither a key nor a measure.
                    lineage.class = combine_classes(Some(ValueClass::Key), lineage.class);
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
                let keys: Vec<String> = fields.iter().map(|field| field.text.clone()).collect();
                for expr in &aggregate.aggr_expr {
                    fields.push(self.aggregate_expr(expr, schema, &input.fields, &rows)?);
                }
                let rows = Rows::relation(format!("groups of [{}] of {rows}", keys.join(", ")));
                Ok(Walked { fields, rows })
            }
            LogicalPlan::Join(join) => {
                let left = self.walk_rows(&join.left)?;
                let right = self.walk_rows(&join.right)?;
                let mut both = left.fields.clone();
                both.extend(right.fields.iter().cloned());
                let combined = join
                    .left
                    .schema()
                    .join(join.right.schema())
                    .map_err(|error| RuntimeError::Internal(error.to_string()))?;
                let mut conditions = BTreeSet::new();
                for (left_key, right_key) in &join.on {
                    let left_lineage = self.expr(left_key, join.left.schema(), &left.fields, Some(&Usage::Join))?;
                    let right_lineage = self.expr(right_key, join.right.schema(), &right.fields, Some(&Usage::Join))?;
                    self.join_keys(&left_lineage, &right_lineage, &left_key.clone().eq(right_key.clone()))?;
                    let operator = match join.null_equality {
                        NullEquality::NullEqualsNothing => "=",
                        NullEquality::NullEqualsNull => "IS NOT DISTINCT FROM",
                    };
                    let mut sides = [left_lineage.text, right_lineage.text];
                    sides.sort();
                    conditions.insert(format!("{} {operator} {}", sides[0], sides[1]));
                }
                if let Some(filter) = &join.filter {
                    self.condition(filter, &combined, &both)?;
                    for conjunct in split_conjunction(filter) {
                        conditions.insert(condition_text(conjunct, &combined, &both));
                    }
                }
                let rows = match join.join_type {
                    JoinType::Inner => {
                        let mut rows = left.rows;
                        rows.relations.extend(right.rows.relations);
                        rows.conditions.extend(right.rows.conditions);
                        rows.conditions.extend(conditions);
                        rows.order.clear();
                        rows
                    }
                    other => Rows::relation(format!(
                        "{other}{} join of ({}) and ({}) on {}",
                        if join.null_aware { " null-aware" } else { "" },
                        left.rows.render(),
                        right.rows.render(),
                        conditions.into_iter().collect::<Vec<_>>().join(" AND ")
                    )),
                };
                let fields = match join.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => left.fields,
                    JoinType::RightSemi | JoinType::RightAnti => right.fields,
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => both,
                    JoinType::LeftMark | JoinType::RightMark => {
                        return Err(refusal("unsupported_plan", "mark joins are not supported by the policy check"));
                    }
                };
                if fields.len() != join.schema.fields().len() {
                    return Err(RuntimeError::Internal("join lineage does not match the join schema".into()));
                }
                Ok(Walked { fields, rows })
            }
            LogicalPlan::Sort(sort) => {
                let mut input = self.walk_rows(&sort.input)?;
                let schema = sort.input.schema();
                input.rows.order.clear();
                for expr in &sort.expr {
                    let lineage = self.expr(&expr.expr, schema, &input.fields, Some(&Usage::Order))?;
                    let direction = if expr.asc { "ASC" } else { "DESC" };
                    let nulls = if expr.nulls_first { "FIRST" } else { "LAST" };
                    input.rows.order.push(format!("{} {direction} NULLS {nulls}", lineage.text));
                }
                Ok(input)
            }
            LogicalPlan::Window(window) => {
                let mut input = self.walk_rows(&window.input)?;
                let schema = window.input.schema();
                for expr in &window.window_expr {
                    // Window results are per row: everything they read counts as raw.
                    let mut lineage = self.expr(expr, schema, &input.fields.clone(), Some(&Usage::Order))?;
                    lineage.shape = Shape::Selective;
                    input.fields.push(lineage);
                }
                Ok(input)
            }
            LogicalPlan::Limit(limit) => {
                let input = self.walk_rows(&limit.input)?;
                let bound = |expr: &Option<Box<Expr>>| expr.as_ref().map_or_else(|| "-".to_string(), |e| e.to_string());
                let mut text =
                    format!("limit {} offset {} of {}", bound(&limit.fetch), bound(&limit.skip), input.rows.render());
                if !input.rows.order.is_empty() {
                    text.push_str(&format!(" ordered by {}", input.rows.order.join(", ")));
                }
                Ok(Walked { fields: input.fields, rows: Rows::relation(text) })
            }
            LogicalPlan::SubqueryAlias(alias) => self.walk_rows(&alias.input),
            LogicalPlan::Repartition(repartition) => self.walk_rows(&repartition.input),
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => {
                let input = self.walk_rows(input)?;
                let texts: Vec<String> = input.fields.iter().map(|field| field.text.clone()).collect();
                let rows = Rows::relation(format!("distinct [{}] of {}", texts.join(", "), input.rows.render()));
                Ok(Walked { fields: input.fields, rows })
            }
            LogicalPlan::Union(union) => {
                let mut fields = vec![FieldLineage::default(); union.schema.fields().len()];
                let mut texts = vec![Vec::new(); fields.len()];
                let mut relations = Vec::new();
                for input in &union.inputs {
                    let input = self.walk_rows(input)?;
                    for ((field, lineage), text) in fields.iter_mut().zip(input.fields).zip(&mut texts) {
                        field.merge(&lineage);
                        text.push(lineage.text);
                    }
                    relations.push(input.rows.render());
                }
                for (field, text) in fields.iter_mut().zip(texts) {
                    field.text = format!("union({})", text.join(" | "));
                }
                Ok(Walked { fields, rows: Rows::relation(format!("union of ({})", relations.join(") and ("))) })
            }
            LogicalPlan::EmptyRelation(relation) => {
                let rows = if relation.produce_one_row { "one row" } else { "no rows" };
                Ok(Walked {
                    fields: vec![FieldLineage::default(); relation.schema.fields().len()],
                    rows: Rows::relation(rows.into()),
                })
            }
            LogicalPlan::Values(values) => {
                let listed: Vec<String> = values
                    .values
                    .iter()
                    .map(|row| row.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
                    .collect();
                let relation = format!("values ({})", listed.join("), ("));
                let fields = (0..values.schema.fields().len())
                    .map(|index| FieldLineage { text: format!("{relation}.{index}"), ..FieldLineage::default() })
                    .collect();
                Ok(Walked { fields, rows: Rows::relation(relation) })
            }
            other => Err(refusal(
                "unsupported_plan",
                &format!("queries containing {} are not supported by the policy check", plan_kind(other)),
            )),
        }
    }

    /// Lineage of one aggregate over `input` (whose rows are `rows`): its class by the
    /// function and what its arguments are, and its text, the measure identity.
    fn aggregate_expr(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        input: &[FieldLineage],
        rows: &str,
    ) -> Result<FieldLineage, RuntimeError> {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(function) = inner else {
            return Err(refusal("unsupported_plan", "aggregate expressions must be aggregate function calls"));
        };
        let name = function.func.name().to_lowercase();
        let mut lineage = FieldLineage { shape: Shape::Selective, ..FieldLineage::default() };
        // Only a count, or a sum, mean or spread of linear arguments over every row of the
        // group, is an aggregate: DISTINCT (outside a count), a FILTER clause or a selective
        // argument pick rows the contributor count does not see.
        let counting = matches!(name.as_str(), "count" | "approx_distinct");
        let mut plain = true;
        let mut class = aggregate_function_class(&name);
        for argument in &function.params.args {
            // A FILTER clause singles out rows just as a CASE in the argument would; DISTINCT
            // makes a sum one of values, not of rows (`avg(DISTINCT x)` of a group where all
            // but one share a value gives that one away).
            let shape = if function.params.filter.is_some() || (function.params.distinct && !counting) {
                Shape::Selective
            } else {
                self.shape(argument, schema, input)
            };
            plain &= shape.argument() != Argument::Selective;
            let usage = Usage::Aggregate { function: name.clone(), argument: shape.argument() };
            let argument = self.expr(argument, schema, input, Some(&usage))?;
            lineage.aggregated.extend(argument.raw.iter().chain(&argument.aggregated));
            // An aggregate of values that are already one subject's is no better than they are.
            if let Some(argument_class) = argument.class.filter(|class| *class != ValueClass::Key) {
                class = class.combine(argument_class);
            }
        }
        if class.is_aggregate() && !plain {
            class = ValueClass::Selective;
        }
        if inner.get_type(schema).is_ok_and(|data_type| data_type.is_nested()) {
            class = ValueClass::RowLevel;
        }
        lineage.class = Some(class);
        lineage.origin = unaliased(inner).to_string();
        lineage.text = format!("{} FROM {rows}", expr_text(inner, schema, input));
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
                        let arguments = magnitude_arguments(expr, input.schema());
                        for (index, (argument, filter)) in arguments.into_iter().enumerate() {
                            let hidden = format!("{LARGEST_PREFIX}{position}_{index}_{}", kind.as_str());
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

/// An output column's lineage from its field: its class — a list, struct, map or union column
/// is rows, whatever produced it — and, for a measure, its identity.
fn output_column(name: &str, data_type: &DataType, field: &FieldLineage, sources: Vec<SourceColumn>) -> ColumnLineage {
    let mut class = field.class.unwrap_or(ValueClass::Key);
    let mut expression = field.origin.clone();
    if data_type.is_nested() && class != ValueClass::RowLevel {
        class = ValueClass::RowLevel;
        if expression.is_empty() {
            expression = name.to_string();
        }
    }
    ColumnLineage {
        name: name.to_string(),
        sources,
        aggregated: class.is_aggregate(),
        class,
        expression: if class == ValueClass::Key { String::new() } else { expression },
        measure: class.is_aggregate().then(|| field.text.clone()),
    }
}

/// What `expr` computes, by what its inputs are, and the expression that decided it. A
/// function of aggregates (`round(sum(x))`, `sum(x) / count(*)`) is the weakest of them; a
/// value mixing a row's key with an aggregate is unknown; a list, struct or map computed from
/// aggregated values is rows. Every expression DataFusion plans is named here, so that a new
/// kind of expression is a compile error rather than a silent aggregate.
fn classify(expr: &Expr, schema: &DFSchema, input: &[FieldLineage]) -> (Option<ValueClass>, String) {
    let unknown = || (Some(ValueClass::Unknown), unaliased(expr).to_string());
    let (class, origin) = match expr {
        Expr::Alias(alias) => return classify(&alias.expr, schema, input),
        Expr::Column(column) => match schema.index_of_column(column).ok().and_then(|index| input.get(index)) {
            Some(field) => (field.class, field.origin.clone()),
            None => return unknown(),
        },
        Expr::Literal(..) | Expr::ScalarVariable(..) | Expr::Placeholder(_) | Expr::LambdaVariable(_) => {
            (None, String::new())
        }
        // Aggregates are judged in their Aggregate node; anywhere else, and for what the check
        // refuses anyway, the walker does not know what the value is.
        Expr::AggregateFunction(_)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_)
        | Expr::ScalarSubquery(_)
        | Expr::OuterReferenceColumn(..)
        | Expr::Unnest(_) => return unknown(),
        #[allow(deprecated)] // Resolved by the planner; named so that the match stays exhaustive.
        Expr::Wildcard { .. } => return unknown(),
        // A window function's value is per row, computed from other rows.
        Expr::WindowFunction(_) => combine_children(expr, schema, input, Some(ValueClass::Key)),
        Expr::BinaryExpr(_)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::Not(_)
        | Expr::IsNotNull(_)
        | Expr::IsNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Negative(_)
        | Expr::Between(_)
        | Expr::Case(_)
        | Expr::Cast(_)
        | Expr::TryCast(_)
        | Expr::ScalarFunction(_)
        | Expr::InList(_)
        | Expr::GroupingSet(_)
        | Expr::HigherOrderFunction(_)
        | Expr::Lambda(_) => combine_children(expr, schema, input, None),
    };
    let aggregated = class.is_some_and(|class| class != ValueClass::Key && class != ValueClass::RowLevel);
    if aggregated && expr.get_type(schema).is_ok_and(|data_type| data_type.is_nested()) {
        return (Some(ValueClass::RowLevel), unaliased(expr).to_string());
    }
    (class, origin)
}

/// The weakest class among `expr`'s children (and `start`), with the expression that decided
/// it: the child's, or `expr` itself when combining made the class (a key with an aggregate).
fn combine_children(
    expr: &Expr,
    schema: &DFSchema,
    input: &[FieldLineage],
    start: Option<ValueClass>,
) -> (Option<ValueClass>, String) {
    let (mut class, mut origin) = (start, String::new());
    let _ = expr.apply_children(|child| {
        let (child_class, child_origin) = classify(child, schema, input);
        let combined = combine_classes(class, child_class);
        if combined != class {
            origin = if combined == child_class { child_origin } else { unaliased(expr).to_string() };
            class = combined;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (class, origin)
}

/// `expr` without its aliases, as the module's query planned it, for messages.
fn unaliased(expr: &Expr) -> Expr {
    expr.clone().unalias_nested().data
}

/// `expr` as normalised text: every column replaced by its field's text (parenthesised unless
/// it is a source column), aliases left out.
fn expr_text(expr: &Expr, schema: &DFSchema, input: &[FieldLineage]) -> String {
    let field_text = |column: &Column| {
        schema.index_of_column(column).ok().and_then(|index| input.get(index)).map(|field| field.text.clone())
    };
    let expr = unaliased(expr);
    if let Expr::Column(column) = &expr {
        return field_text(column).unwrap_or_else(|| expr.to_string());
    }
    let replaced = expr.clone().transform_up(|node| match node {
        Expr::Column(column) => {
            let text = field_text(&column).unwrap_or_else(|| column.to_string());
            let name = if text.contains([' ', '(', ')']) { format!("({text})") } else { text };
            Ok(Transformed::yes(Expr::Column(Column::from_name(name))))
        }
        other => Ok(Transformed::no(other)),
    });
    replaced.map_or_else(|_| expr.to_string(), |replaced| replaced.data.to_string())
}

/// One condition as normalised text; the sides of an equality in order, so that
/// `a.x = b.x` and `b.x = a.x` read the same.
fn condition_text(condition: &Expr, schema: &DFSchema, input: &[FieldLineage]) -> String {
    match condition {
        Expr::BinaryExpr(binary) if binary.op == Operator::Eq => {
            let mut sides = [expr_text(&binary.left, schema, input), expr_text(&binary.right, schema, input)];
            sides.sort();
            format!("{} = {}", sides[0], sides[1])
        }
        other => expr_text(other, schema, input),
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

/// The arguments (each with the rows it is read on) of a magnitude aggregate — a sum, mean or
/// spread ([`is_magnitude_function`]) of something that is not a constant — whose cells the
/// dominance rules judge by the largest contributions to the sum of each argument: a variance
/// or a standard deviation carries the checks of the sum it comes from, a covariance those of
/// both its sums. COUNT is not a magnitude.
fn magnitude_arguments(expr: &Expr, input: &DFSchema) -> Vec<(Expr, Option<Expr>)> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = inner else { return Vec::new() };
    if !is_magnitude_function(&function.func.name().to_ascii_lowercase()) {
        return Vec::new();
    }
    let arguments = &function.params.args;
    let mut filter = function.params.filter.as_deref().cloned();
    if arguments.len() > 1 {
        // A statistic of two variables reads only the rows where both are present.
        for argument in arguments {
            let present = argument.clone().is_not_null();
            filter = Some(match filter {
                Some(filter) => filter.and(present),
                None => present,
            });
        }
    }
    arguments
        .iter()
        .filter(|argument| {
            !matches!(argument, Expr::Literal(..))
                && argument.get_type(input).is_ok_and(|data_type| data_type.is_numeric())
        })
        .map(|argument| (argument.clone(), filter.clone()))
        .collect()
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

#[cfg(test)]
mod tests {
    use unseen_policy::{DatasetRequest, DisclosureParams, ScenarioApplication};

    use super::*;

    /// The demo's three registers, small, with every column `visible`: a grant an operator
    /// should not have approved, so that what a column is shows apart from what the grant allows.
    async fn visible_session() -> (tempfile::TempDir, GovernedSession) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let enterprises = unseen_samples::data::enterprises(120, 3);
        let batches = [
            unseen_samples::data::population(300, 3),
            unseen_samples::data::electricity(&enterprises, 3, 3),
            enterprises,
        ];
        let catalog = [
            unseen_samples::scenarios::population(),
            unseen_samples::scenarios::electricity(),
            unseen_samples::scenarios::enterprise(),
        ];
        let mut tables = Vec::new();
        let mut datasets = Vec::new();
        for (dataset, batch) in catalog.into_iter().zip(&batches) {
            let path = dir.path().join(format!("{}.parquet", dataset.name));
            unseen_samples::data::write_parquet(batch, &path).expect("write parquet");
            let columns = dataset.columns.iter().map(|column| (column.name.clone(), AccessMode::Visible)).collect();
            datasets.push(DatasetRequest { dataset: dataset.id(), columns, row_filter: None });
            tables.push(DomainTable { dataset, production_path: path.clone(), sample_path: path });
        }
        let application = ScenarioApplication {
            title: "t".into(),
            purpose: "p".into(),
            developer: "acme".into(),
            datasets,
            outputs: Vec::new(),
            disclosure: DisclosureParams { threshold_k: 2, ..Default::default() },
            validity_days: 30,
            limits: Default::default(),
        };
        let grant = Grant::freeze("g-visible".into(), "s-1".into(), application, "op".into(), 0, [1; 32]);
        let session = GovernedSession::new(&grant, &tables, Mode::Production).await.expect("session opens");
        (dir, session)
    }

    async fn last_column(session: &GovernedSession, sql: &str) -> ColumnLineage {
        let (_, lineage) = session.check(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
        lineage.columns.last().cloned().expect("a column")
    }

    #[tokio::test]
    async fn every_output_column_is_classified_by_what_it_is() {
        use ValueClass::*;
        let (_dir, session) = visible_session().await;
        let cases = [
            ("SELECT district, COUNT(*) AS v FROM population GROUP BY district", Aggregate),
            ("SELECT COUNT(DISTINCT person_id) AS v FROM population", Aggregate),
            ("SELECT approx_distinct(person_id) AS v FROM population", Aggregate),
            ("SELECT SUM(kwh) AS v FROM electricity", Aggregate),
            ("SELECT AVG(kwh / 1000.0) AS v FROM electricity", Aggregate),
            ("SELECT round(SUM(kwh)) AS v FROM electricity", Aggregate),
            ("SELECT SUM(kwh) / COUNT(*) AS v FROM electricity", Aggregate),
            ("SELECT COALESCE(SUM(kwh), 0) * 2 AS v FROM electricity", Aggregate),
            ("SELECT stddev(kwh) AS v FROM electricity", Spread),
            ("SELECT stddev_samp(kwh) AS v FROM electricity", Spread),
            ("SELECT stddev_pop(kwh) AS v FROM electricity", Spread),
            ("SELECT var_samp(kwh) AS v FROM electricity", Spread),
            ("SELECT var_pop(kwh) AS v FROM electricity", Spread),
            ("SELECT covar_pop(employees, registered_capital) AS v FROM enterprise", Spread),
            ("SELECT corr(employees, registered_capital) AS v FROM enterprise", Spread),
            ("SELECT stddev(kwh) / AVG(kwh) AS v FROM electricity", Spread),
            ("SELECT MAX(kwh) AS v FROM electricity", SingleValue),
            ("SELECT MIN(kwh) AS v FROM electricity", SingleValue),
            ("SELECT median(kwh) AS v FROM electricity", SingleValue),
            ("SELECT approx_median(kwh) AS v FROM electricity", SingleValue),
            ("SELECT approx_percentile_cont(kwh, 0.9) AS v FROM electricity", SingleValue),
            ("SELECT first_value(kwh) AS v FROM electricity", SingleValue),
            ("SELECT last_value(kwh ORDER BY month) AS v FROM electricity", SingleValue),
            ("SELECT nth_value(kwh, 2 ORDER BY kwh) AS v FROM electricity", SingleValue),
            ("SELECT any_value(name) AS v FROM population", SingleValue),
            ("SELECT bool_or(kwh > 1000) AS v FROM electricity", SingleValue),
            ("SELECT bit_xor(employees) AS v FROM enterprise", SingleValue),
            ("SELECT max(concat(id_card, 'x')) AS v FROM population", SingleValue),
            ("SELECT round(MAX(kwh)) AS v FROM electricity", SingleValue),
            ("SELECT SUM(kwh) - MAX(kwh) AS v FROM electricity", SingleValue),
            ("SELECT array_agg(id_card) AS v FROM population", RowLevel),
            ("SELECT string_agg(name, ',') AS v FROM population", RowLevel),
            ("SELECT cardinality(array_agg(kwh)) AS v FROM electricity", RowLevel),
            ("SELECT make_array(SUM(kwh), COUNT(*)) AS v FROM electricity", RowLevel),
            ("SELECT named_struct('total', SUM(kwh)) AS v FROM electricity", RowLevel),
            ("SELECT SUM(CASE WHEN month = '2024-01' THEN kwh END) AS v FROM electricity", Selective),
            ("SELECT SUM(kwh * kwh) AS v FROM electricity", Selective),
            ("SELECT SUM(DISTINCT kwh) AS v FROM electricity", Selective),
            ("SELECT COUNT(*) FILTER (WHERE kwh > 1000) AS v FROM electricity", Selective),
            ("SELECT COUNT(CASE WHEN sex = '女' THEN 1 END) AS v FROM population", Selective),
            ("SELECT stddev(kwh * kwh) AS v FROM electricity", Selective),
            ("SELECT district, concat(district, COUNT(*)) AS v FROM population GROUP BY district", Unknown),
            ("SELECT district, COUNT(*) AS n, district AS v FROM population GROUP BY district", Key),
            ("SELECT 'all' AS v, COUNT(*) AS n FROM population", Aggregate),
            ("SELECT district AS v FROM population", Key),
        ];
        let mut wrong = Vec::new();
        for (sql, expected) in cases {
            let column = last_column(&session, sql).await;
            if column.class != expected || column.aggregated != expected.is_aggregate() {
                wrong.push(format!(
                    "{sql}: {:?} (aggregated {}), expected {expected:?}",
                    column.class, column.aggregated
                ));
            }
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
        let (_, lineage) = session.check("SELECT 'all' AS scope, COUNT(*) AS n FROM population").await.unwrap();
        assert_eq!(lineage.columns[0].class, Key, "a literal is a key, derived from no data");
    }

    #[tokio::test]
    async fn a_blocked_column_names_the_function_that_made_it_so() {
        let (_dir, session) = visible_session().await;
        let column = last_column(&session, "SELECT round(MAX(e.registered_capital)) AS top FROM enterprise e").await;
        assert_eq!(column.expression, "max(e.registered_capital)");
        assert_eq!(column.sources.len(), 1);
        let column =
            last_column(&session, "SELECT district, concat(district, COUNT(*)) AS x FROM population GROUP BY district")
                .await;
        assert!(column.expression.starts_with("concat("), "{}", column.expression);
        let column = last_column(&session, "SELECT district, COUNT(*) AS n FROM population GROUP BY district").await;
        assert_eq!(column.expression, "count(Int64(1))");
        assert_eq!(last_column(&session, "SELECT district FROM population").await.expression, "");
    }

    #[tokio::test]
    async fn an_unknown_aggregate_function_is_not_an_aggregate() {
        let (_dir, session) = visible_session().await;
        session.context.register_udaf(CappedContributors::udaf(10).as_ref().clone());
        let sql = "SELECT unseen_contributors(CAST(birth_year AS BIGINT UNSIGNED)) AS n FROM population";
        let column = last_column(&session, sql).await;
        assert_eq!(column.class, ValueClass::Unknown);
        assert!(!column.aggregated);
        assert_eq!(column.measure, None);
    }

    #[test]
    fn every_aggregate_function_datafusion_registers_has_a_class() {
        let state = SessionContext::new().state();
        let unclassified: Vec<&str> = state
            .aggregate_functions()
            .values()
            .map(|function| function.name())
            .filter(|name| aggregate_function_class(name) == ValueClass::Unknown)
            .collect();
        assert!(unclassified.is_empty(), "no class for {unclassified:?}");
    }

    #[tokio::test]
    async fn a_measure_is_the_aggregate_and_its_input_whatever_the_grouping_spelling_and_order() {
        let (_dir, session) = visible_session().await;
        let measure = |sql: &'static str| {
            let session = &session;
            async move {
                let (_, lineage) = session.check(sql).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
                let column = lineage.columns.iter().find(|column| column.aggregated).expect("an aggregated column");
                column.measure.clone().expect("an aggregated column has a measure")
            }
        };
        let base = measure(
            "SELECT e.district, SUM(u.kwh) AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY e.district",
        )
        .await;
        let same = [
            "SELECT industry, district, sum(kwh) AS x FROM electricity JOIN enterprise ON enterprise.uscc = electricity.uscc \
             WHERE month >= '2024-02' GROUP BY industry, district ORDER BY x DESC LIMIT 5",
            "SELECT SUM(kwh) AS grand_total FROM enterprise e, electricity u WHERE u.month >= '2024-02' AND e.uscc = u.uscc",
            "select   district ,SUM( u.kwh )  from electricity as u inner join enterprise as e on e.uscc=u.uscc \
             where u.month>='2024-02' group by district having count(*) > 1",
            "SELECT e.industry, e.district, SUM(u.kwh) AS t FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY ROLLUP(e.industry, e.district)",
            "SELECT d, SUM(k) AS t FROM (SELECT e.district AS d, u.kwh AS k FROM electricity u JOIN enterprise e \
             ON u.uscc = e.uscc WHERE u.month >= '2024-02') sub GROUP BY d",
        ];
        for sql in same {
            assert_eq!(measure(sql).await, base, "{sql}");
        }
        let different = [
            "SELECT e.district, SUM(u.kwh) AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-03' GROUP BY e.district",
            "SELECT e.district, SUM(u.kwh) AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.district",
            "SELECT e.district, SUM(u.kwh) AS total FROM electricity u LEFT JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY e.district",
            "SELECT e.district, AVG(u.kwh) AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY e.district",
            "SELECT e.district, SUM(u.kwh / 1000.0) AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY e.district",
            "SELECT e.district, SUM(u.kwh) / 1000 AS total FROM electricity u JOIN enterprise e ON u.uscc = e.uscc \
             WHERE u.month >= '2024-02' GROUP BY e.district",
            "SELECT SUM(kwh) AS total FROM electricity WHERE month >= '2024-02'",
        ];
        for sql in different {
            assert_ne!(measure(sql).await, base, "{sql}");
        }
        assert_eq!(
            base,
            "sum(electricity@v1.kwh) FROM electricity@v1 × enterprise@v1 \
             WHERE electricity@v1.month >= Utf8(\"2024-02\") AND electricity@v1.uscc = enterprise@v1.uscc",
            "sources by dataset, not alias; relations and conditions sorted"
        );
        let (_, lineage) =
            session.check("SELECT district, COUNT(*) AS n FROM population GROUP BY district").await.unwrap();
        assert_eq!(lineage.columns[0].measure, None, "a key has no measure");
    }

    #[tokio::test]
    async fn a_self_join_keeps_its_two_scans_apart_in_the_measure() {
        let (_dir, session) = visible_session().await;
        let (_, left) = session
            .check(
                "SELECT COUNT(*) AS n FROM population p JOIN population q ON p.id_card = q.id_card WHERE p.sex = '女'",
            )
            .await
            .unwrap();
        let (_, both) = session
            .check("SELECT COUNT(*) AS n FROM population p JOIN population q ON p.id_card = q.id_card WHERE p.sex = '女' AND q.sex = '女'")
            .await
            .unwrap();
        assert_ne!(left.columns[0].measure, both.columns[0].measure);
        assert!(left.columns[0].measure.as_deref().is_some_and(|text| text.contains("population@v1#2")));
    }

    #[tokio::test]
    async fn a_spread_carries_the_largest_contributions_of_the_sum_it_comes_from() {
        let (_dir, session) = visible_session().await;
        let spread = session
            .query("SELECT industry, stddev(employees) AS s, COUNT(*) AS n FROM enterprise GROUP BY industry ORDER BY industry")
            .await
            .unwrap();
        let sum = session
            .query("SELECT industry, SUM(employees) AS s, COUNT(*) AS n FROM enterprise GROUP BY industry ORDER BY industry")
            .await
            .unwrap();
        let [magnitude] = spread.lineage.magnitudes.as_slice() else {
            panic!("one magnitude for the spread: {:?}", spread.lineage.magnitudes)
        };
        assert_eq!(magnitude.columns, vec!["s".to_string()]);
        assert_eq!(magnitude.per_row, sum.lineage.magnitudes[0].per_row, "the same summary as the sum's");

        let both = session
            .query("SELECT industry, corr(employees, registered_capital) AS c FROM enterprise GROUP BY industry")
            .await
            .unwrap();
        assert_eq!(both.lineage.magnitudes.len(), 2, "a correlation carries the checks of both its sums");
        assert!(both.lineage.magnitudes.iter().all(|magnitude| magnitude.columns == vec!["c".to_string()]));
        let single =
            session.query("SELECT industry, MAX(employees) AS m FROM enterprise GROUP BY industry").await.unwrap();
        assert!(single.lineage.magnitudes.is_empty(), "one subject's value is blocked, not judged for dominance");
    }
}
