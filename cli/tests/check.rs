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
