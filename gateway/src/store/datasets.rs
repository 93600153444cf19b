//! Dataset versions and their development samples.

use unseen_policy::sample::SampleKind;

use super::rows::row;
use super::{Param, Store, Transaction};
use crate::GatewayError;
use crate::domain::now_ms;

/// Both kinds of sample, for reading a kind back.
const SAMPLE_KINDS: &[SampleKind] = &[SampleKind::Synthetic, SampleKind::Deidentified];

row! {
    /// A registered dataset version.
    pub struct DatasetRow from "datasets" key ["id"] {
        /// `name@vN`.
        pub id: String = text,
        /// The dataset version (`DatasetVersion`) as JSON.
        pub json: String = text,
        /// The real data's file.
        pub path: String = text,
        /// The file of the sample developers get (or, when none is offered, the last derived).
        pub sample_path: String = text,
        /// The kind of sample offered to developers, if one is.
        pub sample_kind: Option<SampleKind> = spelt_or_none(SAMPLE_KINDS, SampleKind::as_str),
    }
}

/// A dataset version as registered.
#[derive(Debug, Clone, Copy)]
pub struct NewDataset<'a> {
    /// `name@vN`.
    pub id: &'a str,
    /// The dataset's name.
    pub name: &'a str,
    /// Its version.
    pub version: u32,
    /// The dataset version as JSON.
    pub json: &'a str,
    /// The real data's file.
    pub path: &'a str,
    /// The sample's file.
    pub sample_path: &'a str,
    /// The kind of sample offered to developers, if one is.
    pub sample_kind: Option<SampleKind>,
}

row! {
    /// A derived development sample of a dataset version.
    pub struct SampleRow from "samples" key ["dataset_id", "kind"] {
        /// The sample's file.
        pub path: String = text,
        /// The derivation's report (`SampleReport`) as JSON.
        pub report_json: String = text,
    }
}

/// A sample as derived.
#[derive(Debug, Clone, Copy)]
pub struct NewSample<'a> {
    /// The dataset version, `name@vN`.
    pub dataset_id: &'a str,
    /// Which kind.
    pub kind: SampleKind,
    /// The sample's file.
    pub path: &'a str,
    /// The derivation's report as JSON.
    pub report_json: &'a str,
}

row! {
    /// The highest version of a dataset's name.
    struct LatestVersion from "datasets" key ["name"] {
        version: u32 = number,
    }
}

/// The spelling of a sample kind in `datasets.sample_kind`, empty for none.
fn kind_name(kind: Option<SampleKind>) -> &'static str {
    kind.map_or("", SampleKind::as_str)
}

impl Store {
    /// The highest version registered under `name`, if any is.
    pub async fn latest_dataset_version(&self, name: &str) -> Result<Option<u32>, GatewayError> {
        let latest: Option<LatestVersion> = self
            .row(
                "SELECT name, MAX(version) AS version FROM datasets WHERE name = $1 GROUP BY name",
                &[Param::Text(name)],
            )
            .await?;
        Ok(latest.map(|latest| latest.version))
    }

    /// A dataset version.
    pub async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, GatewayError> {
        self.row("SELECT id, json, path, sample_path, sample_kind FROM datasets WHERE id = $1", &[Param::Text(id)])
            .await
    }

    /// Dataset versions with no sample derived (registered before samples were), oldest first.
    pub async fn datasets_without_samples(&self) -> Result<Vec<DatasetRow>, GatewayError> {
        self.rows(
            "SELECT id, json, path, sample_path, sample_kind FROM datasets WHERE NOT EXISTS \
             (SELECT 1 FROM samples WHERE samples.dataset_id = datasets.id) ORDER BY created_ms",
            &[],
        )
        .await
    }

    /// The `kind` sample of a dataset version, if it was derived.
    pub async fn sample(&self, dataset_id: &str, kind: SampleKind) -> Result<Option<SampleRow>, GatewayError> {
        self.row(
            "SELECT dataset_id, kind, path, report_json FROM samples WHERE dataset_id = $1 AND kind = $2",
            &[Param::Text(dataset_id), Param::Text(kind.as_str())],
        )
        .await
    }
}

impl Transaction {
    /// Registers a dataset version.
    pub async fn insert_dataset(&mut self, dataset: &NewDataset<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO datasets (id, name, version, json, path, sample_path, sample_kind, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                Param::Text(dataset.id),
                Param::Text(dataset.name),
                Param::Int(i64::from(dataset.version)),
                Param::Text(dataset.json),
                Param::Text(dataset.path),
                Param::Text(dataset.sample_path),
                Param::Text(kind_name(dataset.sample_kind)),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }

    /// Sets the sample a dataset version offers developers (`None`: none) and its file.
    pub async fn set_dataset_sample(
        &mut self,
        id: &str,
        kind: Option<SampleKind>,
        path: &str,
    ) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE datasets SET sample_kind = $1, sample_path = $2 WHERE id = $3",
            &[Param::Text(kind_name(kind)), Param::Text(path), Param::Text(id)],
        )
        .await
        .map(drop)
    }

    /// Offers no sample of a dataset version any more, if it offered the `kind` one.
    pub async fn clear_dataset_sample(&mut self, id: &str, kind: SampleKind) -> Result<(), GatewayError> {
        self.execute(
            "UPDATE datasets SET sample_kind = '' WHERE id = $1 AND sample_kind = $2",
            &[Param::Text(id), Param::Text(kind.as_str())],
        )
        .await
        .map(drop)
    }

    /// Records a derived sample.
    pub async fn insert_sample(&mut self, sample: &NewSample<'_>) -> Result<(), GatewayError> {
        self.execute(
            "INSERT INTO samples (dataset_id, kind, path, report_json, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                Param::Text(sample.dataset_id),
                Param::Text(sample.kind.as_str()),
                Param::Text(sample.path),
                Param::Text(sample.report_json),
                Param::Int(now_ms()),
            ],
        )
        .await
        .map(drop)
    }
}
