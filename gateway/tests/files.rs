//! The domain directory's files at open: what an interrupted write left (`*.partial`) is
//! swept and the files beside it kept; the domain's keys are readable by their owner only.

use std::path::Path;

use unseen_gateway::Domain;

fn plant(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
    std::fs::write(path, bytes).expect("a planted file");
}

#[tokio::test]
async fn partial_files_an_interrupted_write_left_are_removed_when_the_domain_opens_and_real_files_stay() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    drop(Domain::open(dir.path(), "files.domain").await.expect("the domain opens"));
    let partial = [
        "datasets/ab.partial",
        "outputs/j-1/counts.partial",
        "releases/r-1.partial",
        "keys/domain.partial",
        "keys/imports/k.partial",
    ];
    let real = ["datasets/ab.parquet", "outputs/j-1/counts.arrow", "releases/r-1.csv", "samples/s-1.csv"];
    for path in partial.iter().chain(&real) {
        plant(&dir.path().join(path), b"bytes");
    }
    let public_key = {
        let domain = Domain::open(dir.path(), "files.domain").await.expect("the domain reopens");
        domain.public_key()
    };
    for path in partial {
        assert!(!dir.path().join(path).exists(), "{path} is swept");
    }
    for path in real {
        assert_eq!(std::fs::read(dir.path().join(path)).expect(path), b"bytes", "{path} stays");
    }
    let domain = Domain::open(dir.path(), "files.domain").await.expect("the domain opens a third time");
    assert_eq!(domain.public_key(), public_key, "the domain key survives the sweep");
}

#[cfg(unix)]
#[tokio::test]
async fn the_domain_keys_are_created_owner_only_and_an_older_domain_keys_are_tightened_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mode =
        |name: &str| std::fs::metadata(dir.path().join("keys").join(name)).expect(name).permissions().mode() & 0o777;
    drop(Domain::open(dir.path(), "files.domain").await.expect("the domain opens"));
    for key in ["domain.pk8", "sample.key"] {
        assert_eq!(mode(key), 0o600, "{key} when created");
        std::fs::set_permissions(dir.path().join("keys").join(key), std::fs::Permissions::from_mode(0o644))
            .expect("loosened as an older domain wrote it");
    }
    drop(Domain::open(dir.path(), "files.domain").await.expect("the domain reopens"));
    for key in ["domain.pk8", "sample.key"] {
        assert_eq!(mode(key), 0o600, "{key} after reopening");
    }
}
