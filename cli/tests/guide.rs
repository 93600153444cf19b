//! `docs/module-guide.md`, followed: every `sh` block is run line by line, in order, in an
//! empty directory, the way a developer reading it would (with `unseen` on the PATH), and its
//! Rust excerpt must be the sample module it is taken from. A guide that drifts from the
//! product fails here.
//!
//! Three things are the harness's, not the reader's: `export` lines set the environment of
//! the lines after them; `unseen serve DIR &` is started on a port the OS picks (tests never
//! take fixed ports) and later lines reach it through `UNSEEN_SERVER`; the samples' `cargo
//! build` line is checked to be the one `samples/build.rs` runs on every build, not run again.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::Server;

const GUIDE: &str = include_str!("../../docs/module-guide.md");
const SAMPLE_MODULE: &str = include_str!("../../samples/modules/green-energy/src/lib.rs");
const SAMPLES_BUILD: &str = include_str!("../../samples/build.rs");

/// The contents of every block fenced as `lang`, in order.
fn blocks(lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in GUIDE.lines() {
        match &mut current {
            None if line.trim() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A command line and the exit status it must end with (`# exit N`, else 0).
fn command_and_status(line: &str) -> (String, i32) {
    match line.rsplit_once("# exit ") {
        Some((command, status)) => (command.trim().to_string(), status.trim().parse().expect("# exit N")),
        None => (line.trim().to_string(), 0),
    }
}

#[test]
fn the_module_guide_runs_as_written_from_an_empty_directory_to_a_verified_release() {
    // The Rust the guide shows is the sample module's (compiled by samples/build.rs).
    let rust = blocks("rust");
    assert!(!rust.is_empty(), "the guide shows the module's code");
    for block in &rust {
        assert!(SAMPLE_MODULE.contains(block.trim()), "the guide's Rust is not in the green-energy sample:\n{block}");
    }

    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_unseen")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut server = None;
    let started = Instant::now();
    let mut ran = 0;
    for block in blocks("sh") {
        for line in block.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
            let (command, expected) = command_and_status(line);
            if let Some(assignment) = command.strip_prefix("export ") {
                let (name, value) = assignment.split_once('=').expect("export NAME=VALUE");
                env.insert(name.to_string(), value.trim_matches('"').to_string());
                continue;
            }
            if let Some(domain) = command.strip_prefix("unseen serve ").and_then(|rest| rest.strip_suffix(" &")) {
                let child = Server::start(&dir.path().join(domain.trim()));
                env.insert("UNSEEN_SERVER".into(), child.address.clone());
                server = Some(child);
                continue;
            }
            if command.starts_with("cargo build") {
                for part in ["--release", "--locked", "--target wasm32-wasip1", "samples/modules/Cargo.toml"] {
                    assert!(command.contains(part), "the guide's build line lacks {part}: {command}");
                }
                assert!(SAMPLES_BUILD.contains(r#"["build", "--release", "--locked", "--target", TARGET"#));
                continue;
            }
            let output = Command::new("bash")
                .args(["-c", &command])
                .current_dir(dir.path())
                .env("PATH", &path)
                .envs(&env)
                .output()
                .expect("run bash");
            assert_eq!(
                output.status.code(),
                Some(expected),
                "the guide's line\n  {command}\nended with {:?}, not {expected}:\n{}{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    drop(server);
    assert!(ran >= 15, "the guide's commands ran ({ran})");
    // It ends where the guide says: a release whose data is the reviewed table.
    let data = std::fs::read_to_string(dir.path().join("release/data.csv")).expect("the released data");
    assert!(data.starts_with("industry,district,total_kwh"), "{data}");
    // And the verification's answers are what section 6 says.
    let answers = std::fs::read_to_string(dir.path().join("answers/data.csv")).expect("the answers");
    assert_eq!(
        answers.lines().collect::<Vec<_>>(),
        ["claim,found,name,district,industry", "1,true,true,true,", "2,true,false,,", "3,false,,,"]
    );
    assert!(dir.path().join("sample-out").read_dir().unwrap().next().is_some(), "the sample run's outputs");
    eprintln!("the guide's {ran} commands ran in {:.1} s", started.elapsed().as_secs_f64());
}
