//! `unseen check` as a developer runs it: the domain's rules, offline, on local files.

use std::path::Path;
use std::process::Command;

fn unseen(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unseen")).args(args).current_dir(dir).output().expect("run unseen")
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("one JSON document, got {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn check_reviews_a_query_refuses_a_forbidden_one_and_says_so_in_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("try");
    let written = unseen(&["check", "--write-example", example.to_str().unwrap()], dir.path());
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let grant = example.join("grant.json");
    let (grant, data) = (grant.to_str().unwrap(), example.to_str().unwrap());

    // The green-energy aggregate: small groups withheld, the rest waits for an operator
    // (the grant does not auto-release).
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u \
               JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let checked = unseen(&["check", "--grant", grant, "--data", data, "--sql", sql, "--json"], dir.path());
    assert_eq!(checked.status.code(), Some(10), "needs review: {}", String::from_utf8_lossy(&checked.stderr));
    let outcome = json(&checked);
    assert_eq!(outcome["outcome"], "needs_review");
    let rules: Vec<&str> =
        outcome["report"]["rules"].as_array().unwrap().iter().map(|rule| rule["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["contract", "lineage", "threshold", "dominance", "differencing", "secondary", "content"]);
    assert!(outcome["report"]["cells_suppressed"].as_u64().unwrap() > 0, "small groups are withheld");

    // The human rendering names the rules and shows the release.
    let text = unseen(&["check", "--grant", grant, "--data", data, "--sql", sql, "--show-release"], dir.path());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("threshold") && text.contains("as released:"), "{text}");

    // Projecting a join_only key is refused by the engine, naming the column.
    let dump = "SELECT u.uscc, SUM(u.kwh) AS total_kwh FROM electricity u GROUP BY u.uscc";
    let refused = unseen(&["check", "--grant", grant, "--data", data, "--sql", dump, "--json"], dir.path());
    assert_eq!(refused.status.code(), Some(12));
    let refusal = json(&refused)["refusal"].as_str().unwrap().to_string();
    assert!(refusal.contains("uscc") && refusal.contains("join_only"), "{refusal}");

    // A computed table: counts and dominance figures in their own columns.
    let computed = dir.path().join("computed.csv");
    std::fs::write(
        &computed,
        "industry,district,total_kwh,companies,dominance_total,dominance_top1,dominance_top2\n\
         制造业,吴兴区,1000,40,1000,120,80\n\
         制造业,南浔区,900,3,900,500,200\n\
         批发零售,吴兴区,800,25,800,760,10\n\
         批发零售,南浔区,700,30,700,90,80\n",
    )
    .unwrap();
    let table = unseen(
        &["check", "--grant", grant, "--table", computed.to_str().unwrap(), "--contributors", "companies", "--json"],
        dir.path(),
    );
    assert_eq!(table.status.code(), Some(10), "{}", String::from_utf8_lossy(&table.stderr));
    let report = &json(&table)["report"];
    let cells: Vec<(u64, &str)> = report["suppressed_cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| (cell["row"].as_u64().unwrap(), cell["rule"].as_str().unwrap()))
        .collect();
    // Row 1 has 3 companies (threshold), row 2 one company with 95% (dominance). They sit on
    // a diagonal, so each of rows 0 and 3 alone would follow from its industry's total: both go.
    assert_eq!(cells, [(0, "secondary"), (1, "threshold"), (2, "dominance"), (3, "secondary")], "{report}");

    // Bad input says what is wrong.
    let missing = unseen(&["check", "--grant", grant, "--table", computed.to_str().unwrap()], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no column \"contributors\""));
}

#[test]
fn a_drafted_application_asks_for_the_narrowest_modes_and_is_enough_for_its_queries() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("try");
    let written = unseen(&["check", "--write-example", example.to_str().unwrap()], dir.path());
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let data = example.to_str().unwrap();
    let draft = dir.path().join("draft.json");
    let by_district = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u \
                       JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let large_firms = "SELECT COUNT(*) AS firms FROM enterprise WHERE employees > 100";
    let drafted = unseen(
        &[
            "scenario",
            "draft",
            "--data",
            data,
            "--sql",
            by_district,
            "--output",
            "kwh_by_industry_district",
            "--sql",
            large_firms,
            "--title",
            "Green energy",
            "--out",
            draft.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert!(drafted.status.success(), "{}", String::from_utf8_lossy(&drafted.stderr));
    let application: serde_json::Value = serde_json::from_slice(&std::fs::read(&draft).unwrap()).unwrap();
    let modes = |dataset: &str| {
        application["datasets"].as_array().unwrap().iter().find(|request| request["dataset"] == dataset).unwrap()
            ["columns"]
            .clone()
    };
    assert_eq!(modes("electricity@v1"), serde_json::json!({"kwh": "aggregate_only", "uscc": "join_only"}));
    assert_eq!(
        modes("enterprise@v1"),
        serde_json::json!({"district": "visible", "employees": "filter_only", "industry": "visible", "uscc": "join_only"})
    );
    assert!(
        application["datasets"].as_array().unwrap().iter().all(|request| request["dataset"] != "population@v1"),
        "datasets no query reads are not asked for"
    );
    let outputs = &application["outputs"];
    assert_eq!(outputs[0]["name"], "kwh_by_industry_district");
    assert_eq!(outputs[0]["columns"], serde_json::json!(["industry", "district", "total_kwh"]));
    assert_eq!(
        (outputs[1]["name"].as_str(), &outputs[1]["columns"]),
        (Some("result_2"), &serde_json::json!(["firms"]))
    );
    let why = json(&drafted)["columns"].clone();
    let kwh = why.as_array().unwrap().iter().find(|choice| choice["column"] == "kwh").unwrap();
    assert_eq!(kwh["uses"], serde_json::json!(["in sum() in query 1"]));

    // The draft is exactly enough: each query passes the engine under it.
    for (sql, output) in [(by_district, "kwh_by_industry_district"), (large_firms, "result_2")] {
        let checked = unseen(
            &["check", "--grant", draft.to_str().unwrap(), "--data", data, "--sql", sql, "--output", output, "--json"],
            dir.path(),
        );
        assert_ne!(checked.status.code(), Some(12), "{}", String::from_utf8_lossy(&checked.stdout));
    }
    // A query no grant could allow is named, not drafted.
    let nested = "SELECT industry, COUNT(*) AS firms FROM enterprise WHERE uscc IN (SELECT uscc FROM electricity) \
                  GROUP BY industry";
    let refused = unseen(&["scenario", "draft", "--data", data, "--sql", nested], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("query 1 would be refused under any grant"), "{message}");
}

/// Rows of a Parquet file, from its footer.
fn parquet_rows(path: &Path) -> i64 {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    SerializedFileReader::new(file).expect("a Parquet file").metadata().file_metadata().num_rows()
}

#[test]
fn the_example_data_comes_in_the_sizes_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("big");
    let written = unseen(
        &[
            "check",
            "--write-example",
            example.to_str().unwrap(),
            "--example-people",
            "20000",
            "--example-enterprises",
            "1500",
            "--example-months",
            "2",
        ],
        dir.path(),
    );
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    assert_eq!(parquet_rows(&example.join("population.parquet")), 20_000);
    assert_eq!(parquet_rows(&example.join("enterprise.parquet")), 1_500);
    assert_eq!(parquet_rows(&example.join("electricity.parquet")), 3_000);
    let insured = parquet_rows(&example.join("social_insurance.parquet"));
    assert!((8_000..=24_000).contains(&insured), "about 0.4 × people × months: {insured}");

    let empty = unseen(&["check", "--write-example", "x", "--example-months", "0"], dir.path());
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("--example-months must be at least 1"), "{empty:?}");
    let stray = unseen(&["check", "--example-people", "5"], dir.path());
    assert!(!stray.status.success(), "sizes without --write-example are a usage error");
}

#[test]
fn a_reader_closing_the_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("try");
    assert!(unseen(&["check", "--write-example", example.to_str().unwrap()], dir.path()).status.success());
    let sql = "SELECT e.industry, e.district, SUM(u.kwh) AS total_kwh FROM electricity u \
               JOIN enterprise e ON u.uscc = e.uscc GROUP BY e.industry, e.district";
    let grant = example.join("grant.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_unseen"))
        .args(["check", "--grant", grant.to_str().unwrap(), "--data", example.to_str().unwrap(), "--sql", sql])
        .arg("--show-release")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run unseen");
    drop(child.stdout.take()); // like `| head -0`: nobody reads
    let output = child.wait_with_output().expect("the command ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}
