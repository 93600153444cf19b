//! Files of the domain's directory: written atomically, locked, read back as Arrow.

use std::path::{Component, Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::GatewayError;

/// The directories of a domain whose files the store names.
pub(super) const AREAS: [&str; 7] = ["datasets", "samples", "modules", "outputs", "egress", "releases", "imports"];

impl super::Domain {
    /// How the store names a file of the domain: relative to the domain's directory, so the
    /// domain can be served from any working directory and restored to another place.
    pub(super) fn stored_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// The file a stored path names. Domains before paths were stored relative to the domain
    /// kept them as the server's working directory saw them (`domain/state/datasets/….parquet`)
    /// or absolute; those are read from their area (`datasets/…`) onwards, so an older domain
    /// reads its files wherever it is served from.
    pub(super) fn domain_file(&self, stored: &str) -> PathBuf {
        self.dir.join(area_relative(Path::new(stored)))
    }
}

/// `path` from the last of the domain's areas it passes through (its file name aside), or
/// `path` itself when it names none.
fn area_relative(path: &Path) -> &Path {
    let components: Vec<Component<'_>> = path.components().collect();
    let area = components[..components.len().saturating_sub(1)]
        .iter()
        .rposition(|component| matches!(component, Component::Normal(name) if AREAS.iter().any(|area| name == area)));
    match area {
        Some(0) | None => path,
        Some(start) => {
            let skipped: PathBuf = components[..start].iter().collect();
            path.strip_prefix(skipped).unwrap_or(path)
        }
    }
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), GatewayError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(GatewayError::internal(&format!("deleting {}", path.display()), error)),
    }
}

pub(super) fn io(context: &str) -> impl Fn(std::io::Error) -> GatewayError + '_ {
    move |error| GatewayError::internal(context, error)
}

/// Writes `bytes` to `path` so that a crash never leaves a half-written file visible. What a
/// crash does leave, `*.partial`, is swept when the domain opens ([`sweep_partial_files`]).
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    write_atomically_with_mode(path, bytes, None)
}

/// Writes a secret (a domain key) as [`write_atomically`] does, readable by its owner only.
fn write_owner_only(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    write_atomically_with_mode(path, bytes, Some(0o600))
}

fn write_atomically_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), GatewayError> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temporary).map_err(io("creating a file"))?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        // A `.partial` left by an earlier crash keeps its mode through `open`; set it here.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("restricting a file"))?;
    }
    file.write_all(bytes).map_err(io("writing a file"))?;
    file.sync_all().map_err(io("syncing a file"))?;
    std::fs::rename(&temporary, path).map_err(io("renaming a file"))?;
    sync_parent_directory(path)
}

/// Makes a rename into `path`'s directory durable: without it a crash may forget the new name.
fn sync_parent_directory(path: &Path) -> Result<(), GatewayError> {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        std::fs::File::open(parent).and_then(|directory| directory.sync_all()).map_err(io("syncing a directory"))?;
    }
    Ok(())
}

/// Removes the `*.partial` files a crash or a full disk left in the domain's areas and keys
/// (never read: [`write_atomically`] renames a file only once it is whole); says how many.
pub(super) fn sweep_partial_files(dir: &Path) -> Result<usize, GatewayError> {
    fn sweep(directory: &Path, removed: &mut usize) -> Result<(), GatewayError> {
        let entries = match std::fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(GatewayError::internal(&format!("listing {}", directory.display()), error)),
        };
        for entry in entries {
            let entry = entry.map_err(io("listing the domain directory"))?;
            let file_type = entry.file_type().map_err(io("listing the domain directory"))?;
            let path = entry.path();
            if file_type.is_dir() {
                sweep(&path, removed)?;
            } else if file_type.is_file() && path.extension().is_some_and(|extension| extension == "partial") {
                remove_if_present(&path)?;
                *removed += 1;
            }
        }
        Ok(())
    }
    let mut removed = 0;
    for area in AREAS.into_iter().chain(["keys"]) {
        sweep(&dir.join(area), &mut removed)?;
    }
    Ok(removed)
}

/// Takes the lock of a domain directory, or says which process holds it. The lock is the
/// kernel's (flock on `domain.lock`), so it ends with its holder, even one killed with -9.
pub(super) fn lock_directory(dir: &Path) -> Result<std::fs::File, GatewayError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("domain.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening the domain's lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid}"),
            };
            return Err(GatewayError::Unavailable(format!(
                "the domain directory {} is in use by {holder}; stop it first (one process serves a domain at a time)",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(GatewayError::internal("locking the domain directory", error));
        }
    }
    file.set_len(0).map_err(io("writing the domain's lock file"))?;
    file.rewind().map_err(io("writing the domain's lock file"))?;
    writeln!(file, "{}", std::process::id()).map_err(io("writing the domain's lock file"))?;
    Ok(file)
}

/// Tightens a key an older domain wrote readable by all to its owner only.
fn restrict_to_owner(path: &Path) -> Result<(), GatewayError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path).map_err(io("reading a domain key"))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("restricting a domain key to its owner"))?;
        }
    }
    Ok(())
}

/// A domain key: read when present (and kept owner-only), else created owner-only (0600).
pub(super) fn read_key_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<Vec<u8>, GatewayError>,
) -> Result<Vec<u8>, GatewayError> {
    if path.exists() {
        restrict_to_owner(path)?;
        return std::fs::read(path).map_err(io("reading a domain key"));
    }
    let bytes = create()?;
    write_owner_only(path, &bytes)?;
    Ok(bytes)
}

pub(super) fn parquet_bytes(table: &RecordBatch) -> Result<Vec<u8>, GatewayError> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, table.schema(), None)
        .map_err(|error| GatewayError::internal("encoding parquet", error))?;
    writer.write(table).map_err(|error| GatewayError::internal("encoding parquet", error))?;
    writer.close().map_err(|error| GatewayError::internal("encoding parquet", error))?;
    Ok(buffer)
}

pub(super) fn read_parquet(bytes: Vec<u8>) -> Result<RecordBatch, GatewayError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|error| GatewayError::InvalidInput(format!("not a readable Parquet file: {error}")))?;
    let schema = reader.schema().clone();
    let batches: Vec<RecordBatch> = reader
        .build()
        .map_err(|error| GatewayError::InvalidInput(format!("not a readable Parquet file: {error}")))?
        .collect::<Result<_, _>>()
        .map_err(|error| GatewayError::InvalidInput(format!("corrupt Parquet data: {error}")))?;
    datafusion::arrow::compute::concat_batches(&schema, &batches)
        .map_err(|error| GatewayError::internal("reading parquet", error))
}

/// Renders a table as CSV (what sample outputs and releases carry).
pub fn csv_bytes(table: &RecordBatch) -> Result<Vec<u8>, GatewayError> {
    let mut buffer = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut buffer);
        writer.write(table).map_err(|error| GatewayError::internal("encoding csv", error))?;
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_path_is_read_from_its_area_however_an_older_domain_wrote_it() {
        for (stored, expected) in [
            ("datasets/ab.parquet", "datasets/ab.parquet"),
            ("domain/state/datasets/ab.parquet", "datasets/ab.parquet"),
            ("/srv/modules/domain/state/modules/cd.wasm", "modules/cd.wasm"),
            ("./d/state/outputs/j-1/counts.arrow", "outputs/j-1/counts.arrow"),
            ("/elsewhere/file.parquet", "/elsewhere/file.parquet"),
        ] {
            assert_eq!(area_relative(Path::new(stored)), Path::new(expected), "{stored}");
        }
    }
}
