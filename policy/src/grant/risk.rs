//! Access modes an operator should read twice before approving a scenario (审批风险提示). They
//! are not refused — a grant may need them, and the egress review still stands behind every
//! output — but each widens what a module sees of single subjects, so `scenario show` names
//! them with the reason and the safer mode.

use serde::Serialize;

use crate::{AccessMode, ColumnTag, DatasetVersion, ScenarioApplication};

/// One requested access mode that deserves an operator's attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeRisk {
    /// The dataset version (`name@vN`).
    pub dataset: String,
    /// The column the mode is for.
    pub column: String,
    /// The mode requested.
    pub mode: AccessMode,
    /// What the mode lets a module do, and what would be safer.
    pub reason: String,
}

impl ScenarioApplication {
    /// The requested modes an operator should look at, dataset by dataset in the application's
    /// order and column by column in name order. `catalog` resolves `name@vN`; a dataset it does
    /// not know is skipped (validation refuses it on its own).
    ///
    /// - A subject or identifier column `visible`: the module reads every subject's direct key.
    /// - A `filter_only` column beside visible quasi-identifiers: a condition on it inside a
    ///   group the quasi-identifiers narrow to one subject answers yes or no about that subject.
    pub fn risky_modes<'a>(&self, catalog: impl Fn(&str) -> Option<&'a DatasetVersion>) -> Vec<ModeRisk> {
        let mut risks = Vec::new();
        for request in &self.datasets {
            let Some(dataset) = catalog(&request.dataset) else { continue };
            let visible_quasi: Vec<&str> = request
                .columns
                .iter()
                .filter(|(column, mode)| {
                    **mode == AccessMode::Visible && dataset.tag_of(column) == Some(ColumnTag::Quasi)
                })
                .map(|(column, _)| column.as_str())
                .collect();
            for (column, &mode) in &request.columns {
                let reason = match (dataset.tag_of(column), mode) {
                    (Some(tag @ (ColumnTag::Subject | ColumnTag::Identifier)), AccessMode::Visible) => format!(
                        "a {} column visible: the module reads each subject's direct key row by row; \
                         pseudonymised (tokens that join within the grant) or join_only usually suffices",
                        tag.as_str()
                    ),
                    (_, AccessMode::FilterOnly) if !visible_quasi.is_empty() => format!(
                        "filter_only beside visible quasi-identifiers ({}): a condition on {column} within a \
                         group they narrow to one subject tells that subject's value; aggregate_only is safer",
                        visible_quasi.join(", ")
                    ),
                    _ => continue,
                };
                risks.push(ModeRisk { dataset: request.dataset.clone(), column: column.clone(), mode, reason });
            }
        }
        risks
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{ColumnSpec, DatasetRequest, Grade};

    fn dataset() -> DatasetVersion {
        let column = |name: &str, tag| ColumnSpec { name: name.into(), tag };
        DatasetVersion {
            name: "residents".into(),
            version: 1,
            provider: "huzhou-data".into(),
            grade: Grade::General,
            content_hash: String::new(),
            subject_kind: None,
            columns: vec![
                column("person_id", ColumnTag::Subject),
                column("phone", ColumnTag::Identifier),
                column("district", ColumnTag::Quasi),
                column("age", ColumnTag::Quasi),
                column("income", ColumnTag::Sensitive),
            ],
        }
    }

    fn asking(modes: &[(&str, AccessMode)]) -> ScenarioApplication {
        ScenarioApplication {
            title: "t".into(),
            purpose: "p".into(),
            developer: "acme".into(),
            datasets: vec![DatasetRequest {
                dataset: "residents@v1".into(),
                columns: modes.iter().map(|(column, mode)| (column.to_string(), *mode)).collect::<BTreeMap<_, _>>(),
                row_filter: None,
            }],
            outputs: vec![],
            disclosure: Default::default(),
            validity_days: 30,
            limits: Default::default(),
        }
    }

    fn flagged(modes: &[(&str, AccessMode)]) -> Vec<(String, AccessMode)> {
        let dataset = dataset();
        asking(modes)
            .risky_modes(|id| (id == "residents@v1").then_some(&dataset))
            .into_iter()
            .map(|risk| (risk.column, risk.mode))
            .collect()
    }

    #[test]
    fn a_visible_subject_or_identifier_is_flagged_and_a_pseudonymised_one_is_not() {
        use AccessMode::*;
        assert_eq!(
            flagged(&[("person_id", Visible), ("phone", Visible), ("district", Visible)]),
            [("person_id".to_string(), Visible), ("phone".to_string(), Visible)]
        );
        assert_eq!(flagged(&[("person_id", Pseudonymised), ("phone", JoinOnly), ("district", Visible)]), []);
    }

    #[test]
    fn filter_only_is_flagged_beside_visible_quasi_identifiers_only() {
        use AccessMode::*;
        let dataset = dataset();
        let risks =
            asking(&[("income", FilterOnly), ("age", Visible), ("district", Visible)]).risky_modes(|_| Some(&dataset));
        assert_eq!(risks.len(), 1);
        assert_eq!((risks[0].column.as_str(), risks[0].mode), ("income", FilterOnly));
        assert!(risks[0].reason.contains("(age, district)"), "{}", risks[0].reason);
        assert_eq!(flagged(&[("income", FilterOnly), ("age", AggregateOnly)]), []);
    }

    #[test]
    fn a_dataset_the_catalog_does_not_know_is_skipped() {
        let risks = asking(&[("person_id", AccessMode::Visible)]).risky_modes(|_| None);
        assert!(risks.is_empty());
    }
}
