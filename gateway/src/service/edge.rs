//! Validation at the edge: ids, hashes, enum values, state filters and bounded text are
//! checked before the domain is asked, so a malformed request is INVALID_ARGUMENT naming the
//! field (`gateway/tests/edge.rs`).

use tonic::Status;

/// An enum field as serde spells it; any other value is INVALID_ARGUMENT naming the field and
/// the values allowed.
pub(super) fn json_enum<T: serde::de::DeserializeOwned>(field: &str, value: &str, allowed: &str) -> Result<T, Status> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| Status::invalid_argument(format!("{field} \"{value}\" is not one of {allowed}")))
}

/// Longest reason an operator may give (characters).
pub(super) const MAX_REASON_CHARS: usize = 2_000;
/// Longest scenario application (bytes of JSON).
pub(super) const MAX_APPLICATION_BYTES: usize = 1024 * 1024;
/// Longest output or object name (characters).
pub(super) const MAX_NAME_CHARS: usize = 128;

/// An object id as the domain issues them, `<prefix>-<number>` (`j-12`), so a malformed one is
/// answered INVALID_ARGUMENT naming the field, before any lookup.
pub(super) fn object_id(field: &str, value: &str, prefix: char, what: &str) -> Result<(), Status> {
    let well_formed = value.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(|number| {
        !number.is_empty() && number.len() <= 18 && number.bytes().all(|byte| byte.is_ascii_digit())
    });
    if well_formed {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "{field} \"{}\" is not {what} id ({prefix}-<number>, e.g. {prefix}-1)",
        shortened(value)
    )))
}

/// A dataset version id, `name@vN` (`population@v3`).
pub(super) fn dataset_id(field: &str, value: &str) -> Result<(), Status> {
    let well_formed = value.split_once("@v").is_some_and(|(name, version)| {
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
            && !version.is_empty()
            && version.len() <= 9
            && version.bytes().all(|byte| byte.is_ascii_digit())
    });
    if well_formed {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "{field} \"{}\" is not a dataset version (name@vN, e.g. population@v1)",
        shortened(value)
    )))
}

/// A module's content hash: 64 lowercase hex digits.
pub(super) fn module_hash(value: &str) -> Result<(), Status> {
    if value.len() == 64 && value.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)) {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "module_hash \"{}\" is not a module hash (64 lowercase hex digits, as UploadModule returned it)",
        shortened(value)
    )))
}

/// Free text with an upper bound on its length (and, when `required`, not blank).
pub(super) fn bounded_text(field: &str, value: &str, max_chars: usize, required: bool) -> Result<(), Status> {
    if required && value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(Status::invalid_argument(format!(
            "{field} has {chars} characters; at most {max_chars} are accepted"
        )));
    }
    Ok(())
}

/// The first characters of a value for an error message, so a huge field is not echoed.
pub(super) fn shortened(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// A list filter is empty (everything) or one of the states the object can be in, so that a
/// typo answers INVALID_ARGUMENT instead of an empty list.
pub(super) fn validate_state_filter(state: &str, states: &[&str]) -> Result<(), Status> {
    if state.is_empty() || states.contains(&state) {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "state \"{state}\" is not a state of this list; use one of {} or leave it empty",
        states.join(", ")
    )))
}
