//! Enterprise verification (数据核验) through the whole workflow: the domain answers a bank's
//! claims into a verification output, the answers leave on their own within the grant's
//! limits, and claims about one enterprise beyond `attempts_per_key` in 24 hours — counted
//! over every request of the grant, not only one job's — keep their rows but not their
//! answers.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use unseen_gateway::Domain;
use unseen_gateway::identity::Role;
use unseen_policy::RuleOutcome;
use unseen_runtime::Mode;

use crate::common;

use common::principal;

#[tokio::test(flavor = "multi_thread")]
async fn answers_leave_on_their_own_and_a_fourth_claim_about_one_enterprise_in_a_day_is_withheld() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let domain = Arc::new(Domain::open(dir.path(), "test.domain").await.expect("the domain opens"));
    let bank = principal("huzhou-rural-bank", Role::Developer);
    common::register_energy_data(&domain, dir.path(), 600, 3).await;
    let grant = common::granted(&domain, &bank, unseen_samples::scenarios::enterprise_verification()).await;
    let module = domain
        .upload_module(&bank, &grant.id, unseen_samples::modules::ENTERPRISE_VERIFICATION.to_vec())
        .await
        .expect("upload");

    let register = unseen_samples::data::enterprises(600, 3);
    let text = |column: &str| register.column_by_name(column).expect("column").as_string::<i32>().value(0).to_string();
    let (uscc, name) = (text("uscc"), text("name"));
    let run = |params: String| {
        let (domain, bank, grant, module) = (domain.clone(), bank.clone(), grant.id.clone(), module.hash.clone());
        async move {
            let job = domain.run_job(&bank, &grant, &module, Mode::Production, &params).await.expect("run");
            let finished = domain.job(&bank, &job, Duration::from_secs(120)).await.expect("job");
            assert_eq!(finished.state, "succeeded", "{}", finished.error);
            job
        }
    };

    // Two guesses at the first company's name: both answered, and the release says which.
    let first = run(format!("uscc,name\n{uscc},湖州猜错了有限公司\n{uscc},{name}\n")).await;
    let egress = domain.request_egress(&bank, &first, "enterprise_checks").await.expect("request");
    assert_eq!(egress.state, "auto_released", "{}", egress.report.render());
    let bundle = domain.release_bundle(&bank, &egress.release_id).await.expect("bundle");
    let data = String::from_utf8(bundle.data).expect("CSV");
    assert_eq!(
        data.lines().collect::<Vec<_>>(),
        ["claim,found,name,district,industry", "1,true,false,,", "2,true,true,,"]
    );

    // Two more the next hour: the third claim about it in 24 h is answered, the fourth is not.
    let second = run(format!("uscc,name\n{uscc},{name}\n{uscc},{name}\n")).await;
    let egress = domain.request_egress(&bank, &second, "enterprise_checks").await.expect("request");
    let rule = egress.report.rule("verification").expect("the verification rule ran");
    assert_eq!(rule.outcome, RuleOutcome::Suppressed, "{}", rule.figure);
    assert!(
        rule.figure.contains("2 earlier in 24 h") && rule.figure.contains("1 over attempts_per_key=3"),
        "{}",
        rule.figure
    );
    let bundle = domain.release_bundle(&bank, &egress.release_id).await.expect("bundle");
    let data = String::from_utf8(bundle.data).expect("CSV");
    assert_eq!(data.lines().collect::<Vec<_>>(), ["claim,found,name,district,industry", "1,true,true,,", "2,,,,"]);
    // The log's review entry says how many answers were withheld and by which rule.
    let regulator = principal("regulator", Role::Regulator);
    let (about, _) = domain.audit_entries(&regulator, 0, 0, &egress.id).expect("entries");
    let review = about
        .iter()
        .map(|raw| unseen_audit::Entry::from_canonical_bytes(&raw.bytes).expect("an entry"))
        .find(|entry| entry.action == "egress.review")
        .expect("a review entry");
    assert_eq!(review.reason, "4 cells suppressed (verification 4)");

    // On the sample, the developer reads the answers at once (against the sample's rows).
    let job =
        domain.run_job(&bank, &grant.id, &module.hash, Mode::Sample, &format!("uscc,name\n{uscc},{name}\n")).await;
    let finished = domain.job(&bank, &job.expect("run"), Duration::from_secs(120)).await.expect("job");
    let output = &finished.outputs[0];
    assert_eq!((output.kind.as_str(), output.rows), ("verification", 1));
    let content = String::from_utf8(output.content.clone()).expect("CSV");
    assert!(content.starts_with("claim,found,name,district,industry"), "{content}");
}
