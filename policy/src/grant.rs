//! Scenario applications and the grants they are frozen into on approval (无场景不授权).
//!
//! A grant is an immutable snapshot of an approved application, hashed so that every job,
//! log entry and release can cite exactly which policy it ran under.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AccessMode, ColumnTag, DatasetVersion, Grade, JobLimits, PolicyError, sha256_hex};

mod risk;

pub use risk::ModeRisk;

/// Longest validity a grant may have: three years (docs/policy-basis.md, grant validity).
pub const MAX_VALIDITY_DAYS: u32 = 3 * 366;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The columns of one dataset version an application asks for, with their access modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRequest {
    /// `name@vN` of the dataset version.
    pub dataset: String,
    /// Column name → requested mode; unnamed columns are denied.
    pub columns: BTreeMap<String, AccessMode>,
    /// Rows the grant covers, as an SQL condition over the dataset's columns
    /// (`district = '吴兴区'`); every other row is invisible to the module. None: all rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_filter: Option<String>,
}

/// How a job may use a column of its developer's own imported data: as it is, except for keys
/// (`subject`, `identifier`), which only join.
pub fn imported_column_mode(tag: ColumnTag) -> AccessMode {
    match tag {
        ColumnTag::Subject | ColumnTag::Identifier => AccessMode::JoinOnly,
        ColumnTag::Quasi | ColumnTag::Sensitive | ColumnTag::Public => AccessMode::Visible,
    }
}

/// Longest row filter a grant may carry.
pub const MAX_ROW_FILTER_BYTES: usize = 4096;

/// An output the developer intends to release: the egress contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// The name a module emits the output under.
    pub name: String,
    /// Expected columns, in order.
    pub columns: Vec<String>,
    /// Most rows a release of it may have.
    pub max_rows: u64,
    /// Set for a verification output (数据核验): the domain, not the module, writes it, one
    /// row per claim the module submits. None: a table or artifact the module emits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
}

impl OutputSpec {
    /// A table (or artifact) output the module emits.
    pub fn table(name: &str, columns: &[&str], max_rows: u64) -> Self {
        Self {
            name: name.into(),
            columns: columns.iter().map(|column| (*column).to_string()).collect(),
            max_rows,
            verification: None,
        }
    }

    /// A verification output answering at most `max_rows` claims per job under `spec`; its
    /// columns are the ones the domain writes ([`VerificationSpec::columns`]).
    pub fn verification(name: &str, max_rows: u64, spec: VerificationSpec) -> Self {
        Self { name: name.into(), columns: spec.columns(), max_rows, verification: Some(spec) }
    }
}

/// Column a verification output numbers its claims in (1, 2, … in the order submitted).
pub const CLAIM_COLUMN: &str = "claim";
/// Column saying whether a verification output found the claimed key.
pub const FOUND_COLUMN: &str = "found";
/// Most fields one verification output may compare.
pub const MAX_VERIFICATION_FIELDS: usize = 16;

/// What a verification output (数据核验) may check: a developer claims facts about subjects it
/// names by key (an enterprise's name and district under its credit code), and the domain
/// answers, per claim and field, only whether the claim matches the granted data. The module
/// never sees the data or the answers; the answers are rate-limited per grant and per key so
/// that guessing a value claim by claim stays slow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationSpec {
    /// `name@vN` of the dataset claims are checked against; the application must name it.
    pub dataset: String,
    /// The column claims name their subject by (a `subject` or `identifier` column, one row
    /// per value).
    pub key: String,
    /// The columns a claim may state a value for, each answered match or mismatch.
    pub fields: Vec<String>,
    /// Most claims the grant may have answered in any 24 hours, over all its jobs.
    pub claims_per_day: u64,
    /// Most claims about one key the grant may have answered in any 24 hours; later ones are
    /// withheld. Default 3.
    #[serde(default = "default_attempts_per_key")]
    pub attempts_per_key: u32,
}

fn default_attempts_per_key() -> u32 {
    3
}

impl VerificationSpec {
    /// The columns of the output the domain writes: `claim`, `found`, then one per field.
    pub fn columns(&self) -> Vec<String> {
        [CLAIM_COLUMN, FOUND_COLUMN]
            .iter()
            .map(|column| (*column).to_string())
            .chain(self.fields.iter().cloned())
            .collect()
    }

    fn validate(
        &self,
        output: &OutputSpec,
        request: Option<&DatasetRequest>,
        dataset: &DatasetVersion,
    ) -> Result<(), PolicyError> {
        let invalid = |message: String| PolicyError::invalid(format!("outputs.{}.verification", output.name), message);
        let Some(request) = request else {
            return Err(invalid(format!("checks {}, which the application does not name in datasets", self.dataset)));
        };
        match dataset.tag_of(&self.key) {
            Some(ColumnTag::Subject | ColumnTag::Identifier) => {}
            Some(tag) => {
                return Err(invalid(format!(
                    "key {} of {} is tagged {}; claims name their subject by a subject or identifier column",
                    self.key,
                    self.dataset,
                    tag.as_str()
                )));
            }
            None => {
                return Err(PolicyError::NotFound { kind: "column", name: format!("{}.{}", self.dataset, self.key) });
            }
        }
        if self.fields.is_empty() || self.fields.len() > MAX_VERIFICATION_FIELDS {
            return Err(invalid(format!(
                "names {} fields; it needs 1 to {MAX_VERIFICATION_FIELDS}",
                self.fields.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in std::iter::once(&self.key).chain(&self.fields) {
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!(
                    "column {name} is named twice (fields must differ from each other and from the key)"
                )));
            }
            if name == CLAIM_COLUMN || name == FOUND_COLUMN {
                return Err(invalid(format!("column {name} would clash with the output's own \"{name}\" column")));
            }
            if dataset.tag_of(name).is_none() {
                return Err(PolicyError::NotFound { kind: "column", name: format!("{}.{name}", self.dataset) });
            }
            if request.columns.get(name) == Some(&AccessMode::Pseudonymised) {
                return Err(invalid(format!(
                    "column {name} is pseudonymised in this application; claims are compared with stored values"
                )));
            }
        }
        if self.claims_per_day == 0 || self.attempts_per_key == 0 {
            return Err(invalid("claims_per_day and attempts_per_key must be at least 1".into()));
        }
        if output.columns != self.columns() {
            return Err(invalid(format!(
                "declares columns [{}]; the domain writes [{}]",
                output.columns.join(", "),
                self.columns().join(", ")
            )));
        }
        Ok(())
    }
}

/// Largest n an (n,k)-dominance rule may use: the engine reports this many largest
/// contributions per magnitude cell.
pub const MAX_DOMINANCE_N: usize = 5;

/// Disclosure-control parameters of a scenario: what the egress reviewer (出域审核) checks.
///
/// Parameters added after the first grants were frozen are written only when they differ
/// from their defaults, so the hash of an existing grant does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureParams {
    /// Every released cell needs at least this many distinct contributing subjects.
    pub threshold_k: u64,
    /// Outputs that pass every rule leave without waiting for an operator.
    pub auto_release: bool,
    /// p%-rule on magnitude cells: a cell is sensitive when the contributions of everyone but
    /// the two largest subjects are less than p% of the largest, i.e. the second largest could
    /// estimate the largest to within p%. 0 turns the rule off. Default 10 (ACRO's p = 0.1).
    #[serde(default = "default_p_percent", skip_serializing_if = "is_default_p_percent")]
    pub p_percent: u32,
    /// (n,k)-dominance on magnitude cells: sensitive when the n largest subjects make up k% of
    /// the total or more. Default n = 2, k = 90% (ACRO's defaults); n = 0 turns it off.
    #[serde(default, skip_serializing_if = "NkRule::is_default")]
    pub nk_rule: NkRule,
    /// Suppress further cells so that no suppressed cell can be recovered from the totals of
    /// its row or column (or from a margin published elsewhere). Default on.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub secondary_suppression: bool,
    /// Round every released aggregate to a multiple of this base (e.g. 5). 0: no rounding.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rounding_base: u64,
    /// Differencing: no released group may differ from another group released under the
    /// same grant (earlier, or in the same output) by fewer than k subjects, or their
    /// difference would describe those few. Default on.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub differencing: bool,
    /// Differential privacy (差分隐私): when set, every measure of a table output is released
    /// with discrete Laplace noise and each release spends ε from the grant's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyParams>,
}

/// Differential-privacy parameters of a grant.
///
/// Each table output released spends `epsilon_per_release`, split evenly over its measure
/// columns; a column with sensitivity Δ gets discrete Laplace noise of scale Δ·m/ε (m
/// measures). Once the budget is spent, further releases are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyParams {
    /// Total ε the grant may spend over its validity.
    pub epsilon_budget: f64,
    /// ε spent by each released table output.
    pub epsilon_per_release: f64,
    /// Output column → L1 sensitivity: the most one subject can change that column, summed
    /// over the output's rows (1 for a count of subjects who appear in one group; the
    /// clipping bound for a sum). The reviewer checks every cell's largest host-counted
    /// contribution against it.
    pub sensitivity: BTreeMap<String, f64>,
}

// Validated finite and positive, so equality is reflexive.
impl Eq for PrivacyParams {}

/// Largest ε a grant may hold in total.
pub const MAX_EPSILON_BUDGET: f64 = 100.0;

impl PrivacyParams {
    /// Checks the parameters are finite, positive and within bounds.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if !positive(self.epsilon_budget) || self.epsilon_budget > MAX_EPSILON_BUDGET {
            return Err(PolicyError::invalid(
                "privacy.epsilon_budget",
                format!("{} is outside (0, {MAX_EPSILON_BUDGET}]", self.epsilon_budget),
            ));
        }
        if !positive(self.epsilon_per_release) || self.epsilon_per_release > self.epsilon_budget {
            return Err(PolicyError::invalid(
                "privacy.epsilon_per_release",
                format!("{} is outside (0, epsilon_budget = {}]", self.epsilon_per_release, self.epsilon_budget),
            ));
        }
        if self.sensitivity.is_empty() {
            return Err(PolicyError::invalid(
                "privacy.sensitivity",
                "names no column; every released measure needs one",
            ));
        }
        for (column, &sensitivity) in &self.sensitivity {
            if !positive(sensitivity) || sensitivity > 1e12 {
                return Err(PolicyError::invalid(
                    "privacy.sensitivity",
                    format!("column \"{column}\": {sensitivity} is outside (0, 1e12]"),
                ));
            }
        }
        Ok(())
    }
}

/// The (n,k)-dominance rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NkRule {
    /// How many of the largest subjects are added up (0: rule off).
    pub n: u32,
    /// Their share of the total, in percent, above which the cell is sensitive.
    pub k_percent: u32,
}

impl Default for NkRule {
    fn default() -> Self {
        Self { n: 2, k_percent: 90 }
    }
}

impl NkRule {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_p_percent() -> u32 {
    10
}

fn is_default_p_percent(p: &u32) -> bool {
    *p == default_p_percent()
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Largest rounding base a grant may ask for.
pub const MAX_ROUNDING_BASE: u64 = 1_000_000;

impl Default for DisclosureParams {
    fn default() -> Self {
        Self {
            threshold_k: 10,
            auto_release: false,
            p_percent: default_p_percent(),
            nk_rule: NkRule::default(),
            secondary_suppression: true,
            rounding_base: 0,
            differencing: true,
            privacy: None,
        }
    }
}

impl DisclosureParams {
    /// Checks the parameters are in range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.threshold_k < 2 {
            return Err(PolicyError::invalid("threshold_k", "must be at least 2"));
        }
        if self.p_percent > 100 {
            return Err(PolicyError::invalid("p_percent", format!("{} is outside 0..=100", self.p_percent)));
        }
        if self.nk_rule.n as usize > MAX_DOMINANCE_N {
            return Err(PolicyError::invalid(
                "nk_rule.n",
                format!(
                    "{} is above {MAX_DOMINANCE_N}, the most largest contributions the engine reports",
                    self.nk_rule.n
                ),
            ));
        }
        if self.nk_rule.n > 0 && !(1..=100).contains(&self.nk_rule.k_percent) {
            return Err(PolicyError::invalid(
                "nk_rule.k_percent",
                format!("{} is outside 1..=100", self.nk_rule.k_percent),
            ));
        }
        if self.rounding_base > MAX_ROUNDING_BASE {
            return Err(PolicyError::invalid(
                "rounding_base",
                format!("{} is above {MAX_ROUNDING_BASE}", self.rounding_base),
            ));
        }
        if let Some(privacy) = &self.privacy {
            privacy.validate()?;
        }
        Ok(())
    }
}

/// What a developer files to use data (场景申请).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioApplication {
    /// Short title.
    pub title: String,
    /// Purpose in the developer's words.
    pub purpose: String,
    /// The applying organisation (开发主体).
    pub developer: String,
    /// Datasets, columns and access modes needed.
    pub datasets: Vec<DatasetRequest>,
    /// Outputs to be released.
    pub outputs: Vec<OutputSpec>,
    /// Disclosure-control parameters asked for.
    pub disclosure: DisclosureParams,
    /// Validity period in days (at most three years).
    pub validity_days: u32,
    /// Resources one job may use (defaults when the application names none).
    #[serde(default)]
    pub limits: JobLimits,
}

impl ScenarioApplication {
    /// Checks an application against the catalog: datasets exist and are grantable, columns
    /// exist, parameters are in range. `catalog` resolves `name@vN`.
    pub fn validate<'a>(&self, catalog: impl Fn(&str) -> Option<&'a DatasetVersion>) -> Result<(), PolicyError> {
        if self.title.trim().is_empty() {
            return Err(PolicyError::invalid("title", "must not be empty"));
        }
        if self.purpose.trim().is_empty() {
            return Err(PolicyError::invalid("purpose", "must say what the data is used for (无场景不授权)"));
        }
        if self.validity_days == 0 || self.validity_days > MAX_VALIDITY_DAYS {
            return Err(PolicyError::invalid(
                "validity_days",
                format!("{} is outside 1..={MAX_VALIDITY_DAYS} (at most three years)", self.validity_days),
            ));
        }
        self.disclosure.validate()?;
        self.limits.validate()?;
        if self.datasets.is_empty() {
            return Err(PolicyError::invalid("datasets", "an application names at least one dataset"));
        }
        for request in &self.datasets {
            let dataset = catalog(&request.dataset)
                .ok_or_else(|| PolicyError::NotFound { kind: "dataset version", name: request.dataset.clone() })?;
            if dataset.grade == Grade::Core {
                return Err(PolicyError::Denied(format!(
                    "dataset \"{}\" is graded core (核心数据) and can never be granted",
                    request.dataset
                )));
            }
            if let Some(condition) = &request.row_filter
                && (condition.trim().is_empty() || condition.len() > MAX_ROW_FILTER_BYTES)
            {
                return Err(PolicyError::invalid(
                    "row_filter",
                    format!(
                        "the row filter on {} must be a non-empty condition of at most {MAX_ROW_FILTER_BYTES} bytes",
                        request.dataset
                    ),
                ));
            }
            for column in request.columns.keys() {
                if dataset.tag_of(column).is_none() {
                    return Err(PolicyError::NotFound {
                        kind: "column",
                        name: format!("{}.{column}", request.dataset),
                    });
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for output in &self.outputs {
            if !names.insert(output.name.as_str()) {
                return Err(PolicyError::invalid("outputs", format!("output \"{}\" is declared twice", output.name)));
            }
            if output.columns.is_empty() {
                return Err(PolicyError::invalid("outputs", format!("output \"{}\" declares no columns", output.name)));
            }
            if let Some(verification) = &output.verification {
                let dataset = catalog(&verification.dataset).ok_or_else(|| PolicyError::NotFound {
                    kind: "dataset version",
                    name: verification.dataset.clone(),
                })?;
                let request = self.datasets.iter().find(|request| request.dataset == verification.dataset);
                verification.validate(output, request, dataset)?;
            }
        }
        Ok(())
    }
}

/// An approved application, frozen: the scenario's digital contract (数字合约).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id (`g-1`).
    pub id: String,
    /// The scenario it was approved from.
    pub scenario_id: String,
    /// The application as approved.
    pub application: ScenarioApplication,
    /// Who approved it.
    pub approved_by: String,
    /// When it was approved.
    pub approved_at_unix_ms: i64,
    /// When it stops being usable.
    pub expires_at_unix_ms: i64,
    /// Key for pseudonymisation tokens, unique to this grant (hex).
    pub pseudonym_key_hex: String,
    /// The developer's own imported tables a job's grant was extended with
    /// ([`Grant::with_imports`]), by `name@vN`; never part of an approved grant (so its hash is
    /// unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
}

impl Grant {
    /// Freezes a validated application into a grant. `pseudonym_key` is fresh randomness the
    /// caller drew; `now_unix_ms` the approval time.
    pub fn freeze(
        id: String,
        scenario_id: String,
        application: ScenarioApplication,
        approved_by: String,
        now_unix_ms: i64,
        pseudonym_key: [u8; 32],
    ) -> Grant {
        let expires_at_unix_ms = now_unix_ms + i64::from(application.validity_days) * DAY_MS;
        Grant {
            id,
            scenario_id,
            application,
            approved_by,
            approved_at_unix_ms: now_unix_ms,
            expires_at_unix_ms,
            pseudonym_key_hex: hex::encode(pseudonym_key),
            imports: Vec::new(),
        }
    }

    /// Hex SHA-256 of the grant's canonical JSON, cited by jobs, log entries and releases.
    pub fn hash(&self) -> String {
        // Struct fields serialise in declaration order and maps are BTreeMaps: the JSON is canonical.
        sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// The mode of `column` of dataset `dataset` (`name@vN`); denied unless the grant names it.
    pub fn mode(&self, dataset: &str, column: &str) -> AccessMode {
        self.application
            .datasets
            .iter()
            .find(|request| request.dataset == dataset)
            .and_then(|request| request.columns.get(column).copied())
            .unwrap_or(AccessMode::Denied)
    }

    /// The grant's row filter on dataset `dataset` (`name@vN`), if it has one.
    pub fn row_filter(&self, dataset: &str) -> Option<&str> {
        self.application
            .datasets
            .iter()
            .find(|request| request.dataset == dataset)
            .and_then(|request| request.row_filter.as_deref())
    }

    /// The grant's pseudonymisation key.
    pub fn pseudonym_key(&self) -> Result<[u8; 32], PolicyError> {
        let bytes = hex::decode(&self.pseudonym_key_hex).map_err(|_| {
            PolicyError::invalid("pseudonym_key_hex", format!("grant {} has a key that is not hex", self.id))
        })?;
        bytes.try_into().map_err(|_| {
            PolicyError::invalid("pseudonym_key_hex", format!("grant {} has a key that is not 32 bytes", self.id))
        })
    }

    /// The dataset versions the grant names.
    pub fn datasets(&self) -> impl Iterator<Item = &str> {
        self.application.datasets.iter().map(|request| request.dataset.as_str())
    }

    /// The declared output called `name`, if any.
    pub fn output(&self, name: &str) -> Option<&OutputSpec> {
        self.application.outputs.iter().find(|output| output.name == name)
    }

    /// The grant a job runs under once its developer's approved imports (社会数据;
    /// docs/policy-basis.md, social data) join the granted datasets. Imported columns are
    /// `visible`, except `subject` and `identifier` columns, which are `join_only`: the
    /// developer's own keys serve to join with public data, never to be printed. The approved contract is unchanged; releases cite
    /// [`Grant::hash`] of the grant as approved.
    pub fn with_imports(&self, imports: &[DatasetVersion]) -> Result<Grant, PolicyError> {
        let mut grant = self.clone();
        for import in imports {
            let taken = grant.application.datasets.iter().any(|request| {
                request.dataset.rsplit_once('@').map_or(request.dataset.as_str(), |(name, _)| name) == import.name
            });
            if taken {
                return Err(PolicyError::invalid(
                    "imports",
                    format!(
                        "imported dataset {} has the name of a dataset grant {} already covers; modules could not tell them apart",
                        import.id(),
                        self.id
                    ),
                ));
            }
            let columns =
                import.columns.iter().map(|column| (column.name.clone(), imported_column_mode(column.tag))).collect();
            grant.application.datasets.push(DatasetRequest { dataset: import.id(), columns, row_filter: None });
            grant.imports.push(import.id());
        }
        Ok(grant)
    }

    /// Whether `dataset` (`name@vN`) is one of the developer's imported tables, not granted data.
    pub fn is_import(&self, dataset: &str) -> bool {
        self.imports.iter().any(|import| import == dataset)
    }

    /// Whether the grant may be used at `now_unix_ms`.
    pub fn check_usable(&self, now_unix_ms: i64) -> Result<(), PolicyError> {
        if now_unix_ms >= self.expires_at_unix_ms {
            return Err(PolicyError::Denied(format!("grant {} expired; a new scenario approval is needed", self.id)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColumnSpec, ColumnTag, SubjectKind};

    fn dataset(grade: Grade) -> DatasetVersion {
        DatasetVersion {
            name: "population".into(),
            version: 1,
            provider: "bureau".into(),
            grade,
            content_hash: "00".into(),
            subject_kind: Some(SubjectKind::Person),
            columns: vec![
                ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
                ColumnSpec { name: "district".into(), tag: ColumnTag::Quasi },
            ],
        }
    }

    fn application() -> ScenarioApplication {
        ScenarioApplication {
            title: "t".into(),
            purpose: "population report".into(),
            developer: "acme".into(),
            datasets: vec![DatasetRequest {
                dataset: "population@v1".into(),
                columns: BTreeMap::from([("district".to_string(), AccessMode::Visible)]),
                row_filter: None,
            }],
            outputs: vec![OutputSpec::table("by_district", &["district"], 100)],
            disclosure: DisclosureParams::default(),
            validity_days: 365,
            limits: Default::default(),
        }
    }

    #[test]
    fn core_data_is_never_grantable() {
        let core = dataset(Grade::Core);
        let error = application().validate(|_| Some(&core)).unwrap_err();
        assert!(error.to_string().contains("core"), "{error}");
        let general = dataset(Grade::General);
        assert_eq!(application().validate(|_| Some(&general)), Ok(()));
    }

    #[test]
    fn imports_join_the_job_grant_with_their_keys_join_only_and_the_contract_unchanged() {
        let grant = Grant::freeze("g-1".into(), "s-1".into(), application(), "op".into(), 0, [7; 32]);
        let mut customers = dataset(Grade::General);
        customers.name = "customers".into();
        customers.columns.push(ColumnSpec { name: "phone".into(), tag: ColumnTag::Identifier });
        customers.columns.push(ColumnSpec { name: "segment".into(), tag: ColumnTag::Public });
        let job_grant = grant.with_imports(std::slice::from_ref(&customers)).unwrap();
        assert_eq!(job_grant.mode("customers@v1", "person_id"), AccessMode::JoinOnly);
        assert_eq!(job_grant.mode("customers@v1", "phone"), AccessMode::JoinOnly);
        assert_eq!(job_grant.mode("customers@v1", "district"), AccessMode::Visible);
        assert_eq!(job_grant.mode("customers@v1", "segment"), AccessMode::Visible);
        assert!(job_grant.is_import("customers@v1") && !job_grant.is_import("population@v1"));
        assert_eq!(job_grant.mode("population@v1", "person_id"), grant.mode("population@v1", "person_id"));
        assert_eq!(grant.mode("customers@v1", "segment"), AccessMode::Denied, "the approved grant is untouched");
        assert_eq!(grant.with_imports(&[]).unwrap().hash(), grant.hash());
        // An import named like a granted dataset would shadow it.
        let shadow = dataset(Grade::General);
        let error = grant.with_imports(&[shadow]).unwrap_err().to_string();
        assert!(error.contains("population@v1") && error.contains("g-1"), "{error}");
    }

    #[test]
    fn validity_is_capped_at_three_years() {
        let general = dataset(Grade::General);
        let mut long = application();
        long.validity_days = 5 * 365;
        assert!(long.validate(|_| Some(&general)).unwrap_err().to_string().contains("three years"));
    }

    #[test]
    fn row_filters_are_checked_and_found_per_dataset() {
        let general = dataset(Grade::General);
        let mut filtered = application();
        filtered.datasets[0].row_filter = Some("district = '吴兴区'".into());
        assert_eq!(filtered.validate(|_| Some(&general)), Ok(()));
        let grant = Grant::freeze("g-1".into(), "s-1".into(), filtered.clone(), "op".into(), 0, [7; 32]);
        assert_eq!(grant.row_filter("population@v1"), Some("district = '吴兴区'"));
        assert_eq!(grant.row_filter("other@v1"), None);
        assert_eq!(grant.pseudonym_key(), Ok([7; 32]));
        filtered.datasets[0].row_filter = Some("  ".into());
        let error = filtered.validate(|_| Some(&general)).unwrap_err().to_string();
        assert!(error.contains("row filter on population@v1"), "{error}");
    }

    #[test]
    fn a_grant_without_row_filters_hashes_as_before_they_existed() {
        let grant = Grant::freeze("g-1".into(), "s-1".into(), application(), "op".into(), 0, [7; 32]);
        let json = serde_json::to_string(&grant).unwrap();
        assert!(!json.contains("row_filter"), "absent filters are not serialised: {json}");
        assert!(!json.contains("verification"), "nor absent verification specs: {json}");
    }

    fn verification(fields: &[&str]) -> VerificationSpec {
        VerificationSpec {
            dataset: "population@v1".into(),
            key: "person_id".into(),
            fields: fields.iter().map(|field| (*field).to_string()).collect(),
            claims_per_day: 100,
            attempts_per_key: 3,
        }
    }

    #[test]
    fn verification_outputs_are_checked_against_the_catalog_and_the_application() {
        let general = dataset(Grade::General);
        let valid = |spec: VerificationSpec| {
            let mut application = application();
            application.outputs.push(OutputSpec::verification("checks", 50, spec));
            application.validate(|_| Some(&general))
        };
        assert_eq!(valid(verification(&["district"])), Ok(()));
        assert_eq!(verification(&["district"]).columns(), ["claim", "found", "district"]);

        let mut by_district = verification(&["person_id"]);
        by_district.key = "district".into();
        let error = valid(by_district).unwrap_err().to_string();
        assert!(error.contains("key district of population@v1 is tagged quasi"), "{error}");
        let error = valid(verification(&[])).unwrap_err().to_string();
        assert!(error.contains("names 0 fields"), "{error}");
        let error = valid(verification(&["district", "district"])).unwrap_err().to_string();
        assert!(error.contains("named twice"), "{error}");
        let error = valid(verification(&["income"])).unwrap_err().to_string();
        assert!(error.contains("population@v1.income"), "{error}");
        let mut elsewhere = verification(&["district"]);
        elsewhere.dataset = "enterprise@v1".into();
        let error = valid(elsewhere).unwrap_err().to_string();
        assert!(error.contains("does not name"), "{error}");

        let mut tokens = application();
        tokens.datasets[0].columns.insert("district".into(), AccessMode::Pseudonymised);
        tokens.outputs.push(OutputSpec::verification("checks", 50, verification(&["district"])));
        let error = tokens.validate(|_| Some(&general)).unwrap_err().to_string();
        assert!(error.contains("district is pseudonymised"), "{error}");

        let mut hand_written = application();
        let mut checks = OutputSpec::verification("checks", 50, verification(&["district"]));
        checks.columns = vec!["claim".into(), "district".into()];
        hand_written.outputs.push(checks);
        let error = hand_written.validate(|_| Some(&general)).unwrap_err().to_string();
        assert!(error.contains("the domain writes [claim, found, district]"), "{error}");
    }

    #[test]
    fn unnamed_columns_are_denied_and_grants_expire() {
        let grant = Grant::freeze("g-1".into(), "s-1".into(), application(), "op".into(), 0, [7; 32]);
        assert_eq!(grant.mode("population@v1", "district"), AccessMode::Visible);
        assert_eq!(grant.mode("population@v1", "person_id"), AccessMode::Denied);
        assert!(grant.check_usable(1).is_ok());
        assert!(grant.check_usable(grant.expires_at_unix_ms).is_err());
        assert_eq!(grant.hash(), grant.clone().hash());
    }
}
