//! The lineage rule: what every output column is, and which kinds may leave.
//!
//! The host classifies each output column from the query plan (`runtime::governed`) into a
//! [`ValueClass`] and records it in the column's lineage. Only keys, counts, sums and means
//! of linear expressions (aggregates), and spreads — whose cells carry the dominance checks of
//! the sums they come from — are aggregates in the disclosure sense (docs/review-report.md,
//! lineage). A minimum, a median or a first value is one subject's value; a list is the rows
//! themselves. The rule judges the class, not the grant: a grant that left identifier columns
//! `visible` by mistake does not make `array_agg(id_card)` an aggregate.

use super::ReviewRule;
use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use super::{ColumnLineage, OutputLineage, ReviewReport, RuleOutcome};
use crate::ColumnTag;

/// What an output column is, as the host classified it from the query plan.
///
/// The order of the variants is the order of harm: a value computed from several columns has
/// the weakest class among them ([`ValueClass::combine`]). Lineage stored before classes
/// existed has none and reads as [`ValueClass::Unknown`], which the reviewer blocks for every
/// column that reads a source column: such an output is run again rather than judged on a
/// guess (its `aggregated` flag is what the old, too generous, lineage said).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueClass {
    /// A row's or a group's own value (a GROUP BY key, a projected column, a literal): not
    /// aggregated. Keys may not derive from identifier or subject columns.
    Key,
    /// A count (also of distinct values), or a sum or mean of a linear expression of the rows:
    /// what a threshold and the dominance rules protect.
    Aggregate,
    /// A variance, standard deviation, covariance, correlation or regression statistic: a
    /// second moment, released with the dominance checks of the sums it comes from.
    Spread,
    /// A count, sum, mean or spread of an expression that can single out rows or recover
    /// values (CASE, comparisons, functions, products of columns, FILTER, DISTINCT in a sum):
    /// the threshold counts the group, not the rows such an argument picks.
    Selective,
    /// One subject's value: min, max, median, percentiles, first, last or any value, the
    /// mode, boolean and bitwise folds.
    SingleValue,
    /// The rows themselves: array_agg, string_agg, and every list, struct, map or union column.
    RowLevel,
    /// Not known to be an aggregate: an aggregate function the reviewer does not know, a
    /// value mixing a row's key with an aggregate, or lineage written before classes existed.
    #[default]
    Unknown,
}

impl ValueClass {
    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Aggregate => "aggregate",
            Self::Spread => "spread",
            Self::Selective => "selective",
            Self::SingleValue => "single_value",
            Self::RowLevel => "row_level",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the column is an aggregate in the disclosure sense: a measure the threshold,
    /// dominance and suppression rules judge cell by cell. `ColumnLineage::aggregated` says
    /// the same in lineage the host writes.
    pub fn is_aggregate(self) -> bool {
        matches!(self, Self::Aggregate | Self::Spread)
    }

    /// Whether the reviewer blocks a column of this class that derives from data.
    pub fn is_blocked(self) -> bool {
        matches!(self, Self::Selective | Self::SingleValue | Self::RowLevel | Self::Unknown)
    }

    /// The class of a value computed from values of both classes: the weaker one. A row's key
    /// combined with an aggregate (`concat(district, sum(kwh))`) is neither a key nor a
    /// measure the cell rules can protect, and so is unknown.
    pub fn combine(self, other: Self) -> Self {
        match (self, other) {
            (Self::Key, Self::Aggregate | Self::Spread) | (Self::Aggregate | Self::Spread, Self::Key) => Self::Unknown,
            (left, right) => left.max(right),
        }
    }

    /// What the class means for release, as the reviewer's refusal says it.
    fn verdict(self) -> &'static str {
        match self {
            Self::Key => "a key",
            Self::Aggregate => "an aggregate",
            Self::Spread => "a spread",
            Self::Selective => {
                "an aggregate of rows its argument picks out, not a count, sum or mean of a linear expression"
            }
            Self::SingleValue => "one subject's value, not an aggregate",
            Self::RowLevel => "rows, not an aggregate",
            Self::Unknown => "not known to be an aggregate",
        }
    }
}

/// The class of an aggregate function's result, by the name DataFusion plans it under
/// (`AggregateFunction.func.name()`, aliases resolved: `stddev_samp` plans as `stddev`), for
/// a plain argument. The caller lowers [`ValueClass::Aggregate`] and [`ValueClass::Spread`]
/// to [`ValueClass::Selective`] when the argument is not linear, a FILTER clause picks rows,
/// or DISTINCT applies to anything but a count. Every function DataFusion 55 registers is
/// listed; any other name is [`ValueClass::Unknown`]: an unknown function is not an aggregate.
pub fn aggregate_function_class(name: &str) -> ValueClass {
    match name {
        "count" | "approx_distinct" | "regr_count" | "sum" | "avg" | "regr_avgx" | "regr_avgy" => ValueClass::Aggregate,
        "var" | "var_pop" | "stddev" | "stddev_pop" | "covar_samp" | "covar_pop" | "corr" | "regr_slope"
        | "regr_intercept" | "regr_r2" | "regr_sxx" | "regr_syy" | "regr_sxy" => ValueClass::Spread,
        "min"
        | "max"
        | "median"
        | "approx_median"
        | "percentile_cont"
        | "approx_percentile_cont"
        | "approx_percentile_cont_with_weight"
        | "first_value"
        | "last_value"
        | "nth_value"
        | "any_value"
        | "mode"
        | "bool_and"
        | "bool_or"
        | "bit_and"
        | "bit_or"
        | "bit_xor" => ValueClass::SingleValue,
        "array_agg" | "string_agg" => ValueClass::RowLevel,
        // 1 or 0 per grouping set: describes the group, carries no value.
        "grouping" => ValueClass::Key,
        _ => ValueClass::Unknown,
    }
}

/// Whether an aggregate function's value is made of its arguments' magnitudes — a sum, a mean
/// or a spread — so that its cells are judged by the dominance rules on the largest
/// contributions to the sums of those arguments. Counts are not magnitudes.
pub fn is_magnitude_function(name: &str) -> bool {
    aggregate_function_class(name).is_aggregate() && !matches!(name, "count" | "approx_distinct" | "regr_count")
}

/// The `lineage` rule: every column that derives from data is a key, an aggregate or a
/// spread, and no key derives from an identifier or subject column. A list, struct, map or
/// union column of the table is rows whatever its lineage says: the reviewer reads the type
/// itself.
pub(super) fn check_lineage(lineage: &OutputLineage, schema: &Schema, report: &mut ReviewReport) {
    let mut leaks = Vec::new();
    let (mut keys, mut aggregates, mut spreads) = (0, 0, 0);
    for field in schema.fields().iter().filter(|field| field.data_type().is_nested()) {
        let classified = lineage.columns.iter().any(|column| {
            &column.name == field.name() && column.class == ValueClass::RowLevel && derives_from_data(column)
        });
        if !classified {
            leaks.push(format!(
                "column \"{}\" is of type {}: {}",
                field.name(),
                field.data_type(),
                ValueClass::RowLevel.verdict()
            ));
        }
    }
    for column in &lineage.columns {
        match column.class {
            ValueClass::Key => keys += 1,
            ValueClass::Aggregate => aggregates += 1,
            ValueClass::Spread => spreads += 1,
            _ => {}
        }
        if column.class.is_blocked() && derives_from_data(column) {
            leaks.push(format!(
                "column \"{}\" is {}{}: {}",
                column.name,
                if column.expression.is_empty() { "computed" } else { column.expression.as_str() },
                of_sources(column),
                column.class.verdict()
            ));
        } else if column.class == ValueClass::Key {
            for source in &column.sources {
                if matches!(source.tag, ColumnTag::Identifier | ColumnTag::Subject) {
                    leaks.push(format!(
                        "column \"{}\" derives from {} column {}.{} without aggregation",
                        column.name,
                        source.tag.as_str(),
                        source.dataset,
                        source.column
                    ));
                }
            }
        }
    }
    if leaks.is_empty() {
        report.push(
            ReviewRule::Lineage,
            RuleOutcome::Pass,
            format!(
                "{keys} keys, {aggregates} aggregates, {spreads} spreads; no identifier or subject column leaves unaggregated"
            ),
        );
    } else {
        report.push(ReviewRule::Lineage, RuleOutcome::Blocked, leaks.join("; "));
    }
}

/// A column derives from data when it reads a source column or was computed by a function
/// over the rows (`array_agg(1)` reads no column, yet one element per row is data).
fn derives_from_data(column: &ColumnLineage) -> bool {
    !column.sources.is_empty() || !column.expression.is_empty()
}

fn of_sources(column: &ColumnLineage) -> String {
    if column.sources.is_empty() {
        return String::new();
    }
    let names: Vec<String> =
        column.sources.iter().map(|source| format!("{}.{}", source.dataset, source.column)).collect();
    format!(" of {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::SourceColumn;

    fn income() -> Vec<SourceColumn> {
        vec![SourceColumn { dataset: "population@v1".into(), column: "income".into(), tag: ColumnTag::Sensitive }]
    }

    fn review(columns: Vec<ColumnLineage>) -> ReviewReport {
        let lineage = OutputLineage { columns, ..OutputLineage::default() };
        let mut report = ReviewReport::new("out", super::super::OutputKind::Table);
        check_lineage(&lineage, &Schema::empty(), &mut report);
        report
    }

    fn classified(name: &str, expression: &str, sources: Vec<SourceColumn>, class: ValueClass) -> ColumnLineage {
        ColumnLineage { expression: expression.into(), ..ColumnLineage::new(name, sources, class) }
    }

    #[test]
    fn a_maximum_is_blocked_naming_the_column_the_function_and_the_class() {
        let report = review(vec![classified("top", "max(income)", income(), ValueClass::SingleValue)]);
        let lineage = report.rule("lineage").expect("the rule ran");
        assert_eq!(lineage.outcome, RuleOutcome::Blocked);
        assert_eq!(
            lineage.figure,
            "column \"top\" is max(income) of population@v1.income: one subject's value, not an aggregate"
        );
    }

    #[test]
    fn lists_selective_sums_and_unknown_functions_are_blocked_too() {
        for (class, phrase) in [
            (ValueClass::RowLevel, "rows, not an aggregate"),
            (ValueClass::Selective, "not a count, sum or mean of a linear expression"),
            (ValueClass::Unknown, "not known to be an aggregate"),
        ] {
            let report = review(vec![classified("x", "f(income)", income(), class)]);
            let lineage = report.rule("lineage").expect("the rule ran");
            assert_eq!(lineage.outcome, RuleOutcome::Blocked, "{class:?}");
            assert!(lineage.figure.contains(phrase), "{}", lineage.figure);
        }
    }

    #[test]
    fn counts_sums_spreads_and_plain_keys_pass() {
        let report = review(vec![
            ColumnLineage::new("district", Vec::new(), ValueClass::Key),
            ColumnLineage::new("n", Vec::new(), ValueClass::Aggregate),
            ColumnLineage::new("total", income(), ValueClass::Aggregate),
            ColumnLineage::new("spread", income(), ValueClass::Spread),
        ]);
        let lineage = report.rule("lineage").expect("the rule ran");
        assert_eq!(lineage.outcome, RuleOutcome::Pass, "{}", lineage.figure);
        assert!(lineage.figure.starts_with("1 keys, 2 aggregates, 1 spreads"), "{}", lineage.figure);
    }

    #[test]
    fn a_list_column_is_rows_whatever_its_lineage_says() {
        use arrow::datatypes::{DataType, Field};
        let list = DataType::List(std::sync::Arc::new(Field::new("item", DataType::Utf8, true)));
        let schema = Schema::new(vec![Field::new("ids", list, true)]);
        let lineage = OutputLineage {
            columns: vec![ColumnLineage::new("ids", Vec::new(), ValueClass::Aggregate)],
            ..OutputLineage::default()
        };
        let mut report = ReviewReport::new("out", super::super::OutputKind::Table);
        check_lineage(&lineage, &schema, &mut report);
        let rule = report.rule("lineage").expect("the rule ran");
        assert_eq!(rule.outcome, RuleOutcome::Blocked);
        assert!(rule.figure.starts_with("column \"ids\" is of type List("), "{}", rule.figure);
        assert!(rule.figure.ends_with("rows, not an aggregate"), "{}", rule.figure);
    }

    #[test]
    fn a_literal_column_derives_from_no_data_and_passes_whatever_its_class() {
        let report = review(vec![ColumnLineage::new("label", Vec::new(), ValueClass::Unknown)]);
        assert_eq!(report.rule("lineage").map(|rule| rule.outcome), Some(RuleOutcome::Pass));
    }

    #[test]
    fn lineage_stored_before_classes_reads_as_unknown_and_is_blocked() {
        let stored = r#"{"name":"top","sources":[{"dataset":"population@v1","column":"income","tag":"sensitive"}],"aggregated":true}"#;
        let column: ColumnLineage = serde_json::from_str(stored).expect("old lineage still reads");
        assert_eq!(column.class, ValueClass::Unknown);
        assert_eq!(column.measure, None);
        assert_eq!(review(vec![column]).rule("lineage").map(|rule| rule.outcome), Some(RuleOutcome::Blocked));
    }

    #[test]
    fn the_class_of_a_mixture_is_the_weaker_and_a_key_with_an_aggregate_is_unknown() {
        use ValueClass::*;
        assert_eq!(Aggregate.combine(Aggregate), Aggregate);
        assert_eq!(Aggregate.combine(Spread), Spread);
        assert_eq!(Spread.combine(SingleValue), SingleValue);
        assert_eq!(SingleValue.combine(RowLevel), RowLevel);
        assert_eq!(Key.combine(Key), Key);
        assert_eq!(Key.combine(Aggregate), Unknown);
        assert_eq!(Spread.combine(Key), Unknown);
        assert_eq!(Key.combine(SingleValue), SingleValue);
        assert!(Aggregate.is_aggregate() && Spread.is_aggregate() && !Key.is_aggregate());
    }

    #[test]
    fn the_function_table_classifies_by_the_planned_name_and_knows_nothing_else() {
        assert_eq!(aggregate_function_class("sum"), ValueClass::Aggregate);
        assert_eq!(aggregate_function_class("stddev"), ValueClass::Spread);
        assert_eq!(aggregate_function_class("max"), ValueClass::SingleValue);
        assert_eq!(aggregate_function_class("approx_percentile_cont"), ValueClass::SingleValue);
        assert_eq!(aggregate_function_class("array_agg"), ValueClass::RowLevel);
        assert_eq!(aggregate_function_class("my_udaf"), ValueClass::Unknown);
        assert!(is_magnitude_function("avg") && is_magnitude_function("var_pop") && is_magnitude_function("corr"));
        assert!(!is_magnitude_function("count") && !is_magnitude_function("max"));
    }

    #[test]
    fn class_names_are_stored_as_shown() {
        for class in [
            ValueClass::Key,
            ValueClass::Aggregate,
            ValueClass::Spread,
            ValueClass::Selective,
            ValueClass::SingleValue,
            ValueClass::RowLevel,
            ValueClass::Unknown,
        ] {
            assert_eq!(serde_json::to_string(&class).unwrap(), format!("\"{}\"", class.as_str()));
        }
    }
}
