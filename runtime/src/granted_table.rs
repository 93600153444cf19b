//! A granted table as a module sees it: the grant's row filter already applied and
//! pseudonymised columns already replaced by tokens.
//!
//! This is a DataFusion table provider, not a view: a view's plan is inlined into the module's
//! query when the query is planned, where the policy check would see (and judge) the host's own
//! filter and token expressions. Behind this provider the module's plan holds one opaque scan
//! whose columns are what the grant lets it see; the host's plan is only built when the scan runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Result};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;

/// One table of a grant, behind the grant's row filter and pseudonymisation.
#[derive(Debug)]
pub struct GrantedTable {
    /// Scan of the stored data, filtered, with tokens in place of pseudonymised columns.
    plan: LogicalPlan,
    schema: SchemaRef,
}

impl GrantedTable {
    /// Wraps `stored` (the table as stored) registered as `name`. `row_filter` is the grant's
    /// condition over the stored columns; `pseudonymised` the columns to tokenise with
    /// `pseudonymiser`.
    pub fn new(
        name: &str,
        stored: Arc<dyn TableProvider>,
        row_filter: Option<Expr>,
        pseudonymised: &BTreeSet<String>,
        pseudonymiser: &Arc<ScalarUDF>,
    ) -> Result<Self> {
        let mut builder = LogicalPlanBuilder::scan(name, provider_as_source(stored), None)?;
        if let Some(condition) = row_filter {
            builder = builder.filter(condition)?;
        }
        let columns: Vec<Expr> = builder
            .schema()
            .columns()
            .into_iter()
            .map(|column: Column| {
                if pseudonymised.contains(column.name()) {
                    let name = column.name().to_string();
                    pseudonymiser.call(vec![Expr::Column(column)]).alias(name)
                } else {
                    Expr::Column(column)
                }
            })
            .collect();
        let plan = builder.project(columns)?.build()?;
        let schema = Arc::clone(plan.schema().inner());
        Ok(Self { plan, schema })
    }
}

#[async_trait]
impl TableProvider for GrantedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pushed filters are applied above the tokens, so they mean what the module wrote.
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut builder = LogicalPlanBuilder::from(self.plan.clone());
        if let Some(condition) = filters.iter().cloned().reduce(Expr::and) {
            builder = builder.filter(condition)?;
        }
        if let Some(projection) = projection {
            let columns: Vec<Expr> = projection
                .iter()
                .map(|&index| Expr::Column(Column::from(self.plan.schema().qualified_field(index))))
                .collect();
            builder = builder.project(columns)?;
        }
        if let Some(limit) = limit {
            builder = builder.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&builder.build()?).await
    }
}
