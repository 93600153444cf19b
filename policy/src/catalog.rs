//! The catalog: dataset versions as providers register them, with grade and column tags.
//!
//! A dataset version is immutable and named by the hash of its content, so a grant, a job and
//! a release can say exactly which data they were about.

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// The classification grade of a dataset (分类分级). `Core` data is never grantable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 一般数据.
    General,
    /// 重要数据.
    Important,
    /// 核心数据: never leaves the provider's control; no grant may name it.
    Core,
}

/// What a column is, from a privacy point of view. The tag decides defaults and review rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnTag {
    /// The privacy unit: the key of the person or company a row is about.
    Subject,
    /// A direct identifier (身份证号, phone, name): never leaves, even derived.
    Identifier,
    /// A quasi-identifier (age, address): identifying in combination.
    Quasi,
    /// A sensitive attribute (income, diagnosis, consumption).
    Sensitive,
    /// Public information.
    Public,
}

impl ColumnTag {
    /// The tag's name as written in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Identifier => "identifier",
            Self::Quasi => "quasi",
            Self::Sensitive => "sensitive",
            Self::Public => "public",
        }
    }
}

/// What kind of entity a dataset's subject column identifies. Contributor thresholds are met
/// per kind: a query over persons and companies needs k of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// Natural persons.
    Person,
    /// Enterprises and other organisations.
    Enterprise,
}

impl SubjectKind {
    /// The kind's name as written in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Enterprise => "enterprise",
        }
    }
}

/// One column of a dataset version and its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Column name as it appears in the data.
    pub name: String,
    /// Privacy tag given by the provider.
    pub tag: ColumnTag,
}

/// An immutable, content-hashed version of a dataset as registered by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetVersion {
    /// Dataset name, also the table name modules query (`population`).
    pub name: String,
    /// Version number, starting at 1.
    pub version: u32,
    /// The providing organisation (数据提供单位).
    pub provider: String,
    /// Grade (分类分级).
    pub grade: Grade,
    /// Hex SHA-256 of the data file's bytes.
    pub content_hash: String,
    /// What the subject column identifies, when the dataset has one.
    pub subject_kind: Option<SubjectKind>,
    /// Every column with its tag.
    pub columns: Vec<ColumnSpec>,
}

impl DatasetVersion {
    /// `name@vN`, the identifier grants and messages use.
    pub fn id(&self) -> String {
        format!("{}@v{}", self.name, self.version)
    }

    /// The tag of `column`, if the dataset has it.
    pub fn tag_of(&self, column: &str) -> Option<ColumnTag> {
        self.columns.iter().find(|c| c.name == column).map(|c| c.tag)
    }

    /// The subject column, if any.
    pub fn subject_column(&self) -> Option<&str> {
        self.columns.iter().find(|c| c.tag == ColumnTag::Subject).map(|c| c.name.as_str())
    }

    /// Checks what a provider registers: a name modules can write in SQL, unique columns, at
    /// most one subject column, and a subject kind exactly when there is a subject column.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !is_identifier_like(&self.name) {
            return Err(PolicyError::invalid(
                "dataset name",
                format!("\"{}\" must be lowercase letters, digits and '_' starting with a letter", self.name),
            ));
        }
        if self.version == 0 {
            return Err(PolicyError::invalid("dataset version", "versions start at 1"));
        }
        if self.columns.is_empty() {
            return Err(PolicyError::invalid("columns", format!("dataset \"{}\" has no columns", self.name)));
        }
        let mut seen = std::collections::BTreeSet::new();
        for column in &self.columns {
            if !seen.insert(column.name.as_str()) {
                return Err(PolicyError::invalid("columns", format!("column \"{}\" is listed twice", column.name)));
            }
        }
        let subjects = self.columns.iter().filter(|c| c.tag == ColumnTag::Subject).count();
        if subjects > 1 {
            return Err(PolicyError::invalid(
                "columns",
                format!("dataset \"{}\" has {subjects} subject columns; at most one", self.name),
            ));
        }
        match (subjects, self.subject_kind) {
            (1, None) => Err(PolicyError::invalid(
                "subject_kind",
                "a dataset with a subject column must say whether it is person or enterprise",
            )),
            (0, Some(_)) => Err(PolicyError::invalid("subject_kind", "given but no column is tagged subject")),
            _ => Ok(()),
        }
    }
}

fn is_identifier_like(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population() -> DatasetVersion {
        DatasetVersion {
            name: "population".into(),
            version: 1,
            provider: "bureau".into(),
            grade: Grade::Important,
            content_hash: "00".into(),
            subject_kind: Some(SubjectKind::Person),
            columns: vec![
                ColumnSpec { name: "person_id".into(), tag: ColumnTag::Subject },
                ColumnSpec { name: "id_card".into(), tag: ColumnTag::Identifier },
            ],
        }
    }

    #[test]
    fn a_well_formed_dataset_validates() {
        assert_eq!(population().validate(), Ok(()));
        assert_eq!(population().id(), "population@v1");
    }

    #[test]
    fn a_subject_column_needs_a_subject_kind() {
        let mut dataset = population();
        dataset.subject_kind = None;
        assert!(dataset.validate().unwrap_err().to_string().contains("person or enterprise"));
    }

    #[test]
    fn names_must_be_sql_friendly() {
        let mut dataset = population();
        dataset.name = "Population; DROP".into();
        assert!(dataset.validate().is_err());
    }
}
