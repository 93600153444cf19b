//! Documents people write — a provider's dataset catalog, a developer's scenario application —
//! read strictly: a field the domain does not know is an error naming it, never silently
//! dropped. A misspelt `row_filtr` that was ignored would widen a grant without anyone noticing.
//!
//! What the domain stored itself is read leniently elsewhere, so a newer domain still reads
//! rows an older one wrote.

use serde::de::DeserializeOwned;

use crate::PolicyError;

/// Reads `text` as a `T`, refusing unknown fields anywhere in it. `what` names the document in
/// the error ("scenario application", "catalog in catalog.json").
pub fn from_json_strict<T: DeserializeOwned>(what: &str, text: &[u8]) -> Result<T, PolicyError> {
    let mut unknown = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value: T = serde_ignored::deserialize(&mut deserializer, |path| unknown.push(path.to_string()))
        .map_err(|error| PolicyError::invalid(what, error.to_string()))?;
    deserializer.end().map_err(|error| PolicyError::invalid(what, error.to_string()))?;
    match unknown.as_slice() {
        [] => Ok(value),
        [field] => Err(PolicyError::invalid(what, format!("unknown field \"{field}\"; remove or correct it"))),
        fields => Err(PolicyError::invalid(
            what,
            format!(
                "unknown fields {}; remove or correct them",
                fields.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::{
        AccessMode, ColumnSpec, ColumnTag, DatasetRequest, DatasetVersion, Grade, OutputSpec, ScenarioApplication,
    };

    fn catalog() -> Value {
        let column = |name: &str, tag| ColumnSpec { name: name.into(), tag };
        let dataset = DatasetVersion {
            name: "population".into(),
            version: 1,
            provider: "huzhou-data".into(),
            grade: Grade::General,
            content_hash: String::new(),
            subject_kind: None,
            columns: vec![column("district", ColumnTag::Quasi), column("income", ColumnTag::Sensitive)],
        };
        serde_json::to_value(vec![dataset]).expect("a catalog serialises")
    }

    fn application() -> Value {
        serde_json::to_value(ScenarioApplication {
            title: "t".into(),
            purpose: "p".into(),
            developer: "acme".into(),
            datasets: vec![DatasetRequest {
                dataset: "population@v1".into(),
                columns: BTreeMap::from([("district".to_string(), AccessMode::Visible)]),
                row_filter: None,
            }],
            outputs: vec![OutputSpec::table("by_district", &["district"], 100)],
            disclosure: Default::default(),
            validity_days: 365,
            limits: Default::default(),
        })
        .expect("an application serialises")
    }

    fn strict<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T, PolicyError> {
        from_json_strict(what, value.to_string().as_bytes())
    }

    #[test]
    fn a_known_document_reads_as_it_would_leniently() {
        let lenient: Vec<DatasetVersion> = serde_json::from_value(catalog()).expect("lenient");
        assert_eq!(strict::<Vec<DatasetVersion>>("catalog", &catalog()), Ok(lenient));
        let lenient: ScenarioApplication = serde_json::from_value(application()).expect("lenient");
        assert_eq!(strict::<ScenarioApplication>("application", &application()), Ok(lenient));
    }

    #[test]
    fn a_misspelt_field_deep_in_a_catalog_is_refused_by_its_path() {
        let mut catalog = catalog();
        catalog[0]["columns"][1]["tags"] = json!("subject");
        let error = strict::<Vec<DatasetVersion>>("catalog", &catalog).expect_err("an unknown field");
        let message = error.to_string();
        assert!(message.starts_with("invalid catalog: unknown field"), "{message}");
        assert!(message.contains("0.columns.1.tags"), "{message}");
    }

    #[test]
    fn every_unknown_field_of_an_application_is_named_and_a_trailing_document_is_refused() {
        let mut application = application();
        application["datasets"][0]["row_filtr"] = json!("district = 'x'");
        application["approved"] = json!(true);
        let error = strict::<ScenarioApplication>("scenario application", &application).expect_err("two unknown");
        let message = error.to_string();
        assert!(message.contains("datasets.0.row_filtr") && message.contains("\"approved\""), "{message}");
        let error = from_json_strict::<Vec<DatasetVersion>>("catalog", b"[] []").expect_err("two documents");
        assert!(error.to_string().contains("trailing characters"), "{error}");
    }
}
