//! The demo's catalog and scenario applications, shared by the demo, the tests and the
//! benchmarks: how a provider tags the synthetic registers, and what the two developers of the
//! demo apply for.

use std::collections::BTreeMap;

use unseen_policy::{
    AccessMode, ColumnSpec, ColumnTag, DatasetRequest, DatasetVersion, DisclosureParams, Grade, OutputSpec,
    ScenarioApplication, SubjectKind, VerificationSpec,
};

fn dataset(name: &str, grade: Grade, kind: SubjectKind, columns: &[(&str, ColumnTag)]) -> DatasetVersion {
    DatasetVersion {
        name: name.into(),
        version: 1,
        provider: "huzhou-data-bureau".into(),
        grade,
        content_hash: String::new(),
        subject_kind: Some(kind),
        columns: columns.iter().map(|(name, tag)| ColumnSpec { name: (*name).into(), tag: *tag }).collect(),
    }
}

/// The population register (人口库) as its provider tags it.
pub fn population() -> DatasetVersion {
    dataset(
        "population",
        Grade::Important,
        SubjectKind::Person,
        &[
            ("person_id", ColumnTag::Subject),
            ("id_card", ColumnTag::Identifier),
            ("name", ColumnTag::Identifier),
            ("sex", ColumnTag::Quasi),
            ("birth_year", ColumnTag::Quasi),
            ("district", ColumnTag::Quasi),
        ],
    )
}

/// The enterprise register (法人库) as its provider tags it.
pub fn enterprise() -> DatasetVersion {
    dataset(
        "enterprise",
        Grade::General,
        SubjectKind::Enterprise,
        &[
            ("uscc", ColumnTag::Subject),
            ("name", ColumnTag::Public),
            ("industry", ColumnTag::Public),
            ("district", ColumnTag::Public),
            ("employees", ColumnTag::Sensitive),
            ("registered_capital", ColumnTag::Sensitive),
        ],
    )
}

/// Monthly electricity use (用电数据) as its provider tags it.
pub fn electricity() -> DatasetVersion {
    dataset(
        "electricity",
        Grade::Important,
        SubjectKind::Enterprise,
        &[("uscc", ColumnTag::Subject), ("month", ColumnTag::Public), ("kwh", ColumnTag::Sensitive)],
    )
}

/// Monthly social-insurance contributions (社保缴费) as their provider tags them: the contact
/// details are identifiers; the employer, like the month, only narrows who a row is about.
pub fn social_insurance() -> DatasetVersion {
    dataset(
        "social_insurance",
        Grade::Important,
        SubjectKind::Person,
        &[
            ("person_id", ColumnTag::Subject),
            ("mobile", ColumnTag::Identifier),
            ("bank_card", ColumnTag::Identifier),
            ("employer_uscc", ColumnTag::Quasi),
            ("month", ColumnTag::Public),
            ("contribution_base", ColumnTag::Sensitive),
            ("pension_paid", ColumnTag::Sensitive),
        ],
    )
}

/// Green energy (绿色能源): electricity use by industry and district. Keys join-only, kWh
/// aggregate-only, threshold k = 10, releases reviewed by an operator.
pub fn green_energy() -> ScenarioApplication {
    ScenarioApplication {
        title: "Green energy: electricity use by industry and district".into(),
        purpose:
            "Publish electricity intensity by industry and district for Huzhou's green-energy programme (绿色能源)"
                .into(),
        developer: "greenfin-analytics".into(),
        datasets: vec![
            DatasetRequest {
                dataset: "enterprise@v1".into(),
                columns: BTreeMap::from([
                    ("uscc".into(), AccessMode::JoinOnly),
                    ("industry".into(), AccessMode::Visible),
                    ("district".into(), AccessMode::Visible),
                ]),
                row_filter: None,
            },
            DatasetRequest {
                dataset: "electricity@v1".into(),
                columns: BTreeMap::from([
                    ("uscc".into(), AccessMode::JoinOnly),
                    ("kwh".into(), AccessMode::AggregateOnly),
                ]),
                row_filter: None,
            },
        ],
        outputs: vec![OutputSpec {
            name: "kwh_by_industry_district".into(),
            columns: vec!["industry".into(), "district".into(), "total_kwh".into()],
            max_rows: 1_000,
            verification: None,
        }],
        disclosure: DisclosureParams { threshold_k: 10, auto_release: false, ..Default::default() },
        validity_days: 365,
        limits: Default::default(),
    }
}

/// Population statistics report (统计分析报告): residents by district, sex and age band.
/// Birth years are visible so that the report can band them; identifiers are not granted.
pub fn population_report() -> ScenarioApplication {
    ScenarioApplication {
        title: "Population statistics by district, sex and age band".into(),
        purpose: "Annual statistical report of the resident population (统计分析报告)".into(),
        developer: "city-statistics-institute".into(),
        datasets: vec![DatasetRequest {
            dataset: "population@v1".into(),
            columns: BTreeMap::from([
                ("district".into(), AccessMode::Visible),
                ("sex".into(), AccessMode::Visible),
                ("birth_year".into(), AccessMode::Visible),
            ]),
            row_filter: None,
        }],
        outputs: vec![OutputSpec {
            name: "residents_by_district_sex_age".into(),
            columns: vec!["district".into(), "sex".into(), "age_band".into(), "residents".into()],
            max_rows: 500,
            verification: None,
        }],
        disclosure: DisclosureParams { threshold_k: 10, auto_release: true, ..Default::default() },
        validity_days: 365,
        limits: Default::default(),
    }
}

/// Energy model: kWh against staff, fitted by the module over industry × district aggregates
/// and released as an artifact (the coefficients), which an operator always reviews.
pub fn energy_model() -> ScenarioApplication {
    let mut application = green_energy();
    application.title = "Electricity use against head count, by industry and district".into();
    application.purpose = "Fit a planning model of electricity use per employee (绿色能源)".into();
    if let Some(enterprise) = application.datasets.iter_mut().find(|request| request.dataset == "enterprise@v1") {
        enterprise.columns.insert("employees".into(), AccessMode::AggregateOnly);
    }
    application.outputs = vec![OutputSpec {
        name: "kwh_model".into(),
        columns: vec!["intercept".into(), "slope".into(), "groups".into()],
        max_rows: 1,
        verification: None,
    }];
    application
}

/// Enterprise verification (数据核验): a bank checks what loan applicants say about their
/// companies — name, district, industry — against the enterprise register. The module may read
/// no column of the register; the domain answers each claim into a verification output, at
/// most 200 claims a day and 3 claims about one enterprise a day.
pub fn enterprise_verification() -> ScenarioApplication {
    ScenarioApplication {
        title: "Enterprise verification for loan applications".into(),
        purpose: "Check applicants' stated company facts against the enterprise register (数据核验); only match or mismatch per claim leaves".into(),
        developer: "huzhou-rural-bank".into(),
        datasets: vec![DatasetRequest { dataset: "enterprise@v1".into(), columns: BTreeMap::new(), row_filter: None }],
        outputs: vec![OutputSpec::verification(
            "enterprise_checks",
            50,
            VerificationSpec {
                dataset: "enterprise@v1".into(),
                key: "uscc".into(),
                fields: vec!["name".into(), "district".into(), "industry".into()],
                claims_per_day: 200,
                attempts_per_key: 3,
            },
        )],
        disclosure: DisclosureParams { threshold_k: 10, auto_release: true, ..Default::default() },
        validity_days: 365,
        limits: Default::default(),
    }
}

/// Resident verification (数据核验): reads `id_card` and `name` inside the domain to match
/// applicants; only match counts are meant to leave. The demo's hostile module abuses it.
pub fn resident_verification() -> ScenarioApplication {
    ScenarioApplication {
        title: "Resident verification".into(),
        purpose: "Verify applicants' resident registration (数据核验); only match counts leave".into(),
        developer: "shadow-analytics".into(),
        datasets: vec![DatasetRequest {
            dataset: "population@v1".into(),
            columns: BTreeMap::from([
                ("id_card".into(), AccessMode::Visible),
                ("name".into(), AccessMode::Visible),
                ("district".into(), AccessMode::Visible),
            ]),
            row_filter: None,
        }],
        outputs: vec![
            OutputSpec::table("verification_result", &["district", "matched"], 100),
            OutputSpec::table("verification_notes", &["text"], 1),
        ],
        disclosure: DisclosureParams { threshold_k: 10, auto_release: true, ..Default::default() },
        validity_days: 90,
        limits: Default::default(),
    }
}
