//! The documents people write for a domain, read from files strictly: a field the domain does
//! not know is an error naming the file and the field's path (`unseen_policy::from_json_strict`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use unseen_policy::{DatasetVersion, ScenarioApplication};

fn read_strict<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(unseen_policy::from_json_strict(&format!("{what} in {}", path.display()), &bytes)?)
}

/// A provider's catalog: a list of dataset versions with their column tags.
pub fn read_catalog(path: &Path) -> Result<Vec<DatasetVersion>> {
    read_strict(path, "list of dataset versions")
}

/// A developer's scenario application.
pub fn read_application(path: &Path) -> Result<ScenarioApplication> {
    read_strict(path, "scenario application")
}
