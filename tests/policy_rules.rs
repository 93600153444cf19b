//! Table-driven policy tests: every `.test` file in `tests/policy/` is a list of queries, one
//! per line, each with what the governed engine must do with it and (in a comment) why.
//!
//! ```text
//! grant mixed                                   which grant the file's queries run under
//! allow | SELECT …                              runs
//! allow rows=0 | SELECT …                       runs and the module sees exactly 0 rows
//! refuse access_mode.join_only id_card | …      refused by that rule (prefix), naming that column
//! refuse statement - | …                        refused by that rule; no column to name
//! invalid | SELECT …                            not a query the planner accepts
//! ```
//!
//! Lines starting with `#` are comments; SQL may end in a `-- comment` giving the reason.

use std::path::{Path, PathBuf};

use unseen_policy::Grant;
use unseen_runtime::{GovernedSession, Mode, RuntimeError};
use unseen_tests::{Fixture, fixture, green_grant, mixed_grant};

/// What one line expects.
#[derive(Debug)]
enum Expect {
    Allow { rows: Option<u64> },
    Refuse { rule: String, column: Option<String> },
    Invalid,
}

#[derive(Debug)]
struct Case {
    line: usize,
    expect: Expect,
    sql: String,
}

/// Parses a rule file into its grant name and cases; panics with the line on a malformed one.
fn parse(path: &Path) -> (String, Vec<Case>) {
    let text = std::fs::read_to_string(path).expect("read a rule file");
    let mut grant = None;
    let mut cases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("grant ") {
            grant = Some(name.trim().to_string());
            continue;
        }
        let (head, sql) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("{}:{line_number}: expected `verdict | SQL`", path.display()));
        let words: Vec<&str> = head.split_whitespace().collect();
        let expect = match words.as_slice() {
            ["allow"] => Expect::Allow { rows: None },
            ["allow", rows] => {
                let rows = rows
                    .strip_prefix("rows=")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{}:{line_number}: expected rows=N", path.display()));
                Expect::Allow { rows: Some(rows) }
            }
            ["refuse", rule, column] => {
                Expect::Refuse { rule: (*rule).to_string(), column: (*column != "-").then(|| (*column).to_string()) }
            }
            ["invalid"] => Expect::Invalid,
            _ => panic!("{}:{line_number}: unknown verdict `{head}`", path.display()),
        };
        cases.push(Case { line: line_number, expect, sql: sql.trim().to_string() });
    }
    (grant.unwrap_or_else(|| panic!("{}: no `grant` line", path.display())), cases)
}

fn grant_named(name: &str) -> Grant {
    match name {
        "green" => green_grant(),
        "mixed" => mixed_grant("g-mixed", [9; 32]),
        other => panic!("unknown grant `{other}` in a rule file"),
    }
}

/// Runs one case; `None` when it met its expectation, else what went wrong.
async fn check(session: &GovernedSession, case: &Case) -> Option<String> {
    let outcome = session.query(&case.sql).await;
    match (&case.expect, outcome) {
        (Expect::Allow { rows: None }, Ok(_)) => None,
        (Expect::Allow { rows: Some(expected) }, Ok(result)) if result.rows == *expected => None,
        (Expect::Allow { rows: Some(expected) }, Ok(result)) => {
            Some(format!("expected {expected} rows, the module would see {}", result.rows))
        }
        (Expect::Refuse { rule, column }, Err(RuntimeError::Refused(refusal))) => {
            let names_column =
                column.as_ref().is_none_or(|column| refusal.message.contains(&format!("column \"{column}\"")));
            if refusal.rule.starts_with(rule.as_str()) && names_column {
                None
            } else {
                Some(format!(
                    "expected {rule} naming {}, got {}: {}",
                    column.as_deref().unwrap_or("no column"),
                    refusal.rule,
                    refusal.message
                ))
            }
        }
        (Expect::Invalid, Err(RuntimeError::InvalidQuery(_))) => None,
        (expect, Err(error)) => Some(format!("expected {expect:?}, got {error}")),
        (expect, Ok(result)) => Some(format!("expected {expect:?}, but it ran and returned {} rows", result.rows)),
    }
}

fn rule_files() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("tests/policy exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "test"))
        .collect();
    files.sort();
    files
}

async fn run_file(fixture: &Fixture, path: &Path) -> (usize, Vec<String>) {
    let (grant, cases) = parse(path);
    let session = GovernedSession::new(&grant_named(&grant), &fixture.tables, Mode::Production)
        .await
        .expect("the grant's session opens");
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(problem) = check(&session, case).await {
            failures.push(format!("{}:{}: {}\n    {problem}", path.display(), case.line, case.sql));
        }
    }
    (cases.len(), failures)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_in_the_rule_files_meets_its_verdict() {
    let fixture = fixture().await;
    let files = rule_files();
    assert!(files.len() >= 2, "the rule files are found");
    let mut total = 0;
    let mut failures = Vec::new();
    for path in &files {
        let (cases, mut failed) = run_file(&fixture, path).await;
        total += cases;
        failures.append(&mut failed);
    }
    assert!(total >= 80, "the rule files hold {total} queries; expected the full set");
    assert!(failures.is_empty(), "{} of {total} queries misbehaved:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_malformed_rule_line_is_reported_with_its_line() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("bad.test");
    std::fs::write(&path, "grant green\nmaybe | SELECT 1\n").expect("write");
    let panic = std::panic::catch_unwind(|| parse(&path)).expect_err("an unknown verdict is an error");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("bad.test:2"), "{message}");
}
