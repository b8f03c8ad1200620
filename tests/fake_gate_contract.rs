//! Pins the behaviour of the fake Gate (`tests/support/fake_gate.rs`) to the
//! contract in `/work/shared/reference/spinnaker.md` §1.1–1.5 and §4, quirks
//! included, so black-box tests of the companion run against a faithful Gate.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::fake_gate::{Auth, FakeGate};

const APP: &str = "myapp";
const PIPELINE: &str = "deploy-prod";
const EXEC: &str = "01J6EXEC0000000000000000AA";
const STAGE: &str = "01J6STAGE000000000000000BB";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

async fn gate_with_mj() -> FakeGate {
    let gate = FakeGate::start().await;
    gate.add_execution(FakeGate::mj_execution(APP, PIPELINE, EXEC, STAGE));
    gate
}

fn stage<'a>(exec: &'a Value, stage_id: &str) -> &'a Value {
    exec["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["id"] == stage_id)
        .expect("stage present")
}

async fn patch(
    gate: &FakeGate,
    exec: &str,
    stage: &str,
    user: &str,
    body: Value,
) -> reqwest::Response {
    client()
        .patch(format!("{}/pipelines/{exec}/stages/{stage}", gate.url()))
        .header("X-SPINNAKER-USER", user)
        .json(&body)
        .send()
        .await
        .expect("PATCH")
}

async fn get_json(url: String) -> (StatusCode, Value) {
    let response = client().get(url).send().await.expect("GET");
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, value)
}

// ---------------------------------------------------------------------------
// Fixture shape (§1.4, §4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_pipeline_returns_realistic_mj_execution() {
    let gate = gate_with_mj().await;
    let (status, exec) = get_json(format!("{}/pipelines/{EXEC}", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exec["type"], "PIPELINE");
    assert_eq!(exec["id"], EXEC);
    assert_eq!(exec["application"], APP);
    assert_eq!(exec["name"], PIPELINE);
    assert_eq!(exec["status"], "RUNNING");
    assert_eq!(exec["canceled"], false);
    assert_eq!(exec["trigger"]["type"], "manual");
    assert_eq!(exec["trigger"]["user"], "alice@example.com");
    assert!(exec["authentication"]["allowedAccounts"].is_array());
    assert!(exec["startTime"].is_i64() && exec["buildTime"].is_i64());
    let stages = exec["stages"].as_array().unwrap();
    assert_eq!(stages[0]["status"], "SUCCEEDED");
    let mj = stage(&exec, STAGE);
    assert_eq!(mj["type"], "manualJudgment");
    assert_eq!(mj["name"], "Approve prod");
    assert_eq!(mj["status"], "RUNNING");
    assert_eq!(mj["refId"], "2");
    assert!(mj["lastModified"].is_null());
    assert!(
        mj["context"]["instructions"]
            .as_str()
            .unwrap()
            .contains("<b>")
    );
    assert_eq!(mj["context"]["judgmentInputs"], json!([]));
    assert_eq!(mj["context"]["failPipeline"], true);
    assert!(mj["context"].get("judgmentStatus").is_none());

    gate.set_judgment_inputs(EXEC, STAGE, &["deploy", "rollback"]);
    gate.set_selected_stage_roles(EXEC, STAGE, &["release-managers"]);
    gate.set_instructions(EXEC, STAGE, "Ship <i>it</i>?");
    let ctx = gate.stage(EXEC, STAGE)["context"].clone();
    assert_eq!(
        ctx["judgmentInputs"],
        json!([{"value": "deploy"}, {"value": "rollback"}])
    );
    assert_eq!(ctx["selectedStageRoles"], json!(["release-managers"]));
    assert_eq!(ctx["instructions"], "Ship <i>it</i>?");
}

#[tokio::test]
async fn get_pipeline_unknown_is_404_and_forbidden_is_empty_200() {
    let gate = gate_with_mj().await;
    let (status, body) = get_json(format!("{}/pipelines/nope", gate.url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "Not Found");
    assert_eq!(body["message"], "Pipeline not found (id: nope)");
    assert!(body["timestamp"].is_i64());

    gate.set_read_forbidden(EXEC);
    let response = client()
        .get(format!("{}/pipelines/{EXEC}", gate.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "");
}

// ---------------------------------------------------------------------------
// PATCH (§1.1, §4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn patch_continue_merges_context_and_succeeds_the_pipeline() {
    let gate = gate_with_mj().await;
    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue", "judgmentInput": "deploy", "slackUser": "U123"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    // The PATCH answer is the whole execution, taken before the task ran.
    assert_eq!(body["id"], EXEC);
    assert_eq!(stage(&body, STAGE)["status"], "RUNNING");
    assert_eq!(stage(&body, STAGE)["context"]["judgmentStatus"], "continue");

    let exec = gate.execution(EXEC);
    let mj = stage(&exec, STAGE);
    assert_eq!(mj["status"], "SUCCEEDED");
    assert_eq!(
        mj["context"]["slackUser"], "U123",
        "putAll keeps extra keys"
    );
    assert_eq!(mj["context"]["judgmentInput"], "deploy");
    assert_eq!(mj["context"]["lastModifiedBy"], "bob@example.com");
    assert_eq!(
        mj["context"]["instructions"],
        stage(&body, STAGE)["context"]["instructions"]
    );
    assert_eq!(mj["lastModified"]["user"], "bob@example.com");
    assert_eq!(mj["lastModified"]["allowedAccounts"], json!([]));
    assert!(mj["lastModified"]["lastModifiedTime"].is_i64());
    assert_eq!(exec["status"], "SUCCEEDED");

    let patches = gate.patches();
    assert_eq!(gate.patch_count(), 1);
    assert_eq!(patches[0].execution_id, EXEC);
    assert_eq!(patches[0].stage_id, STAGE);
    assert_eq!(
        patches[0].spinnaker_user.as_deref(),
        Some("bob@example.com")
    );
    assert!(!patches[0].authorization_present);
    assert_eq!(patches[0].body["slackUser"], "U123");
}

#[tokio::test]
async fn patch_without_user_header_is_anonymous() {
    let gate = gate_with_mj().await;
    let response = client()
        .patch(format!("{}/pipelines/{EXEC}/stages/{STAGE}", gate.url()))
        .json(&json!({"judgmentStatus": "CONTINUE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let exec = gate.execution(EXEC);
    assert_eq!(stage(&exec, STAGE)["lastModified"]["user"], "anonymous");
    assert_eq!(
        stage(&exec, STAGE)["status"],
        "SUCCEEDED",
        "case-insensitive"
    );
}

#[tokio::test]
async fn patch_stop_fails_the_pipeline_unless_fail_pipeline_false() {
    let gate = gate_with_mj().await;
    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "stop"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let exec = gate.execution(EXEC);
    assert_eq!(stage(&exec, STAGE)["status"], "TERMINAL");
    assert_eq!(exec["status"], "TERMINAL");

    let other = "01J6EXEC0000000000000000CC";
    gate.add_execution(FakeGate::mj_execution(APP, PIPELINE, other, STAGE));
    gate.set_stage_context(other, STAGE, "failPipeline", json!(false));
    patch(
        &gate,
        other,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "stop"}),
    )
    .await;
    let exec = gate.execution(other);
    assert_eq!(stage(&exec, STAGE)["status"], "FAILED_CONTINUE");
    assert_eq!(exec["status"], "SUCCEEDED");
}

#[tokio::test]
async fn patch_on_finished_stage_answers_200_and_does_not_change_outcome() {
    let gate = gate_with_mj().await;
    gate.complete_stage(EXEC, STAGE, "continue", "alice@example.com");
    let before = gate.execution(EXEC);
    assert_eq!(stage(&before, STAGE)["status"], "SUCCEEDED");
    assert_eq!(before["status"], "SUCCEEDED");

    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "carol@example.com",
        json!({"judgmentStatus": "stop"}),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "no RUNNING check, no 409"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(stage(&body, STAGE)["status"], "SUCCEEDED");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = gate.execution(EXEC);
    let mj = stage(&after, STAGE);
    assert_eq!(mj["status"], "SUCCEEDED", "outcome unchanged");
    assert_eq!(after["status"], "SUCCEEDED");
    assert_eq!(mj["endTime"], stage(&before, STAGE)["endTime"]);
    // ...but the context was rewritten.
    assert_eq!(mj["context"]["judgmentStatus"], "stop");
    assert_eq!(mj["context"]["lastModifiedBy"], "carol@example.com");
}

#[tokio::test]
async fn patch_unknown_stage_is_empty_200_and_unknown_execution_is_404() {
    let gate = gate_with_mj().await;
    let response = patch(
        &gate,
        EXEC,
        "no-such-stage",
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(stage(&gate.execution(EXEC), STAGE)["status"], "RUNNING");

    let response = patch(
        &gate,
        "no-such-exec",
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(gate.patch_count(), 2, "both PATCHes are recorded");
    assert_eq!(gate.patches()[1].status, 404);
}

#[tokio::test]
async fn fiat_refusal_resets_judgment_and_leaves_stage_running() {
    let gate = gate_with_mj().await;
    gate.set_selected_stage_roles(EXEC, STAGE, &["release-managers"]);
    gate.set_fiat_refuses("mallory@example.com");
    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "mallory@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the PATCH still answers 200"
    );

    let exec = gate.execution(EXEC);
    let mj = stage(&exec, STAGE);
    assert_eq!(mj["status"], "RUNNING");
    assert_eq!(mj["context"]["judgmentStatus"], "");
    assert_eq!(mj["context"]["lastModifiedBy"], "mallory@example.com");
    assert_eq!(exec["status"], "RUNNING");

    // An authorised judge afterwards succeeds.
    patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(stage(&gate.execution(EXEC), STAGE)["status"], "SUCCEEDED");
}

#[tokio::test]
async fn fiat_is_not_consulted_when_the_stage_has_no_roles() {
    let gate = gate_with_mj().await;
    gate.set_fiat_refuses("*");
    patch(
        &gate,
        EXEC,
        STAGE,
        "mallory@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(stage(&gate.execution(EXEC), STAGE)["status"], "SUCCEEDED");
}

#[tokio::test]
async fn transition_delay_models_orca_reschedule() {
    let gate = gate_with_mj().await;
    gate.set_transition_delay(Duration::from_millis(300));
    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, exec) = get_json(format!("{}/pipelines/{EXEC}", gate.url())).await;
    assert_eq!(stage(&exec, STAGE)["status"], "RUNNING");
    assert_eq!(stage(&exec, STAGE)["context"]["judgmentStatus"], "continue");
    assert!(
        gate.wait_for_stage_status(EXEC, STAGE, "SUCCEEDED", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn stuck_pipeline_never_transitions() {
    let gate = gate_with_mj().await;
    gate.set_auto_transition(false);
    patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert!(
        !gate
            .wait_for_stage_status(EXEC, STAGE, "SUCCEEDED", Duration::from_millis(200))
            .await
    );
}

// ---------------------------------------------------------------------------
// Trigger v1 (§1.2)
// ---------------------------------------------------------------------------

fn deploy_config() -> Value {
    json!({
        "name": "deploy-prod",
        "parameterConfig": [
            {"name": "version", "required": true, "default": null},
            {"name": "env", "required": true, "default": "prod"}
        ],
        "notifications": [{"type": "slack", "address": "#deploys", "when": ["pipeline.failed"]}],
        "stages": [
            {"refId": "1", "type": "manualJudgment", "name": "Approve", "requisiteStageRefIds": [],
             "instructions": "Go?", "judgmentInputs": [], "failPipeline": true},
            {"refId": "2", "type": "deployManifest", "name": "Deploy", "requisiteStageRefIds": ["1"]}
        ]
    })
}

#[tokio::test]
async fn trigger_v1_answers_202_with_ref_and_creates_running_execution() {
    let gate = FakeGate::start().await;
    let config_id = gate.add_pipeline_config(APP, deploy_config());
    let response = client()
        .post(format!("{}/pipelines/{APP}/deploy-prod", gate.url()))
        .header("X-SPINNAKER-USER", "bot@example.com")
        .json(&json!({"type": "manual", "parameters": {"version": "v43"}, "artifacts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let reference = body["ref"].as_str().unwrap();
    let id = reference.strip_prefix("/pipelines/").expect("ref shape");
    assert_eq!(id.len(), 26, "ULID-like id");

    let (status, exec) = get_json(format!("{}{reference}", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exec["status"], "RUNNING");
    assert_eq!(exec["pipelineConfigId"], config_id);
    assert_eq!(
        exec["trigger"]["user"], "bot@example.com",
        "Gate fills trigger.user"
    );
    assert_eq!(exec["trigger"]["notifications"], json!([]));
    assert_eq!(exec["trigger"]["parameters"]["version"], "v43");
    assert_eq!(
        exec["trigger"]["parameters"]["env"], "prod",
        "defaults applied"
    );
    assert_eq!(exec["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(exec["stages"][0]["status"], "RUNNING");
    assert_eq!(exec["stages"][0]["type"], "manualJudgment");
    assert_eq!(exec["stages"][0]["context"]["instructions"], "Go?");
    assert_eq!(exec["stages"][1]["status"], "NOT_STARTED");

    // The triggered MJ can be judged; the downstream stage then completes.
    let mj_id = exec["stages"][0]["id"].as_str().unwrap().to_string();
    patch(
        &gate,
        id,
        &mj_id,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    let exec = gate.execution(id);
    assert_eq!(exec["stages"][1]["status"], "SUCCEEDED");
    assert_eq!(exec["status"], "SUCCEEDED");

    // Lookup by config id works too.
    let response = client()
        .post(format!("{}/pipelines/{APP}/{config_id}", gate.url()))
        .json(&json!({"type": "manual", "user": "alice@example.com", "parameters": {"version": "v1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let triggers = gate.triggers();
    assert_eq!(triggers.len(), 2);
    assert_eq!(triggers[0].pipeline_name_or_id, "deploy-prod");
    assert_eq!(triggers[0].execution_id.as_deref(), Some(id));
    assert!(
        triggers[0].body.get("user").is_none(),
        "recorded as received"
    );
    assert_eq!(triggers[1].status, 202);
}

#[tokio::test]
async fn trigger_v1_missing_config_is_404_with_gate_reason() {
    let gate = FakeGate::start().await;
    gate.add_pipeline_config(APP, deploy_config());
    let response = client()
        .post(format!("{}/pipelines/{APP}/nope", gate.url()))
        .json(&json!({"type": "manual"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        "Unable to trigger pipeline (application: myapp, pipelineNameOrId: nope). \
         Error: Pipeline configuration not found (id: nope)"
    );
    assert_eq!(gate.triggers()[0].status, 404);
}

#[tokio::test]
async fn trigger_v1_missing_required_parameter_is_400() {
    let gate = FakeGate::start().await;
    gate.add_pipeline_config(APP, deploy_config());
    let response = client()
        .post(format!("{}/pipelines/{APP}/deploy-prod", gate.url()))
        .json(&json!({"type": "manual", "parameters": {"env": "staging"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Required parameter version is missing");
    assert_eq!(gate.executions().len(), 0);
}

// ---------------------------------------------------------------------------
// Cancel (§1.4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cancel_marks_execution_canceled() {
    let gate = gate_with_mj().await;
    let response = client()
        .put(format!("{}/pipelines/{EXEC}/cancel", gate.url()))
        .query(&[("reason", "rolled back from Slack")])
        .header("X-SPINNAKER-USER", "bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "");
    let exec = gate.execution(EXEC);
    assert_eq!(exec["status"], "CANCELED");
    assert_eq!(exec["canceled"], true);
    assert_eq!(exec["canceledBy"], "bob@example.com");
    assert_eq!(exec["cancellationReason"], "rolled back from Slack");
    assert_eq!(stage(&exec, STAGE)["status"], "CANCELED");

    let response = client()
        .put(format!("{}/pipelines/nope/cancel", gate.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// Listing (§1.4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pipelines_limit_is_per_pipeline_config() {
    let gate = FakeGate::start().await;
    let base = 1_700_000_000_000_i64;
    let mut ids = Vec::new();
    for (n, pipeline) in ["alpha", "alpha", "alpha", "beta", "beta", "beta"]
        .iter()
        .enumerate()
    {
        let id = format!("01J6EXEC00000000000000000{n}");
        let mut exec = FakeGate::mj_execution(APP, pipeline, &id, &format!("stage-{n}"));
        exec["startTime"] = json!(base + n as i64 * 1000);
        gate.add_execution(exec);
        ids.push(id);
    }
    gate.complete_stage(&ids[0], "stage-0", "continue", "bob@example.com");

    let (status, list) = get_json(format!(
        "{}/applications/{APP}/pipelines?limit=2",
        gate.url()
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let got: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    // Two newest per config; orca's startTimeOrId sorts ascending.
    assert_eq!(
        got,
        vec![
            ids[1].as_str(),
            ids[2].as_str(),
            ids[4].as_str(),
            ids[5].as_str()
        ]
    );

    let (_, running) = get_json(format!(
        "{}/applications/{APP}/pipelines?limit=1&statuses=RUNNING,PAUSED",
        gate.url()
    ))
    .await;
    let got: Vec<&str> = running
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[5].as_str()]);

    let (_, succeeded) = get_json(format!(
        "{}/applications/{APP}/pipelines?statuses=SUCCEEDED",
        gate.url()
    ))
    .await;
    assert_eq!(succeeded.as_array().unwrap().len(), 1);

    let (_, unexpanded) = get_json(format!(
        "{}/applications/{APP}/pipelines?expand=false",
        gate.url()
    ))
    .await;
    assert_eq!(unexpanded.as_array().unwrap().len(), 6);
    let mj = &unexpanded[0]["stages"][1];
    assert_eq!(mj["type"], "manualJudgment");
    assert_eq!(mj["context"], json!({}));
    assert_eq!(mj["tasks"], json!([]));
}

#[tokio::test]
async fn applications_and_pipeline_configs() {
    let gate = FakeGate::start().await;
    let (status, _) = get_json(format!("{}/applications/{APP}", gate.url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gate.add_application(APP);
    let (status, app) = get_json(format!("{}/applications/{APP}", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app["name"], APP);

    gate.add_pipeline_config(APP, deploy_config());
    let (status, configs) =
        get_json(format!("{}/applications/{APP}/pipelineConfigs", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(configs[0]["name"], "deploy-prod");
    assert_eq!(configs[0]["application"], APP);
    let (status, config) = get_json(format!(
        "{}/applications/{APP}/pipelineConfigs/deploy-prod",
        gate.url()
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["id"], configs[0]["id"]);
    let (status, body) = get_json(format!(
        "{}/applications/{APP}/pipelineConfigs/nope",
        gate.url()
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["message"],
        "Pipeline config (id: nope) not found for Application (id: myapp)"
    );
}

// ---------------------------------------------------------------------------
// Auth, health and faults (§1.5, §1.6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn health_and_auth_user() {
    let gate = FakeGate::start().await;
    let (status, health) = get_json(format!("{}/health", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "UP"}));
    let (_, user) = get_json(format!("{}/auth/user", gate.url())).await;
    assert_eq!(user["username"], "anonymous");
    assert_eq!(user["roles"], json!([]));

    gate.require_auth(Auth::Basic("slackops".into(), "s3cret".into()));
    let response = client()
        .get(format!("{}/auth/user", gate.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    let response = client()
        .get(format!("{}/auth/user", gate.url()))
        .basic_auth("slackops", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let user: Value = client()
        .get(format!("{}/auth/user", gate.url()))
        .basic_auth("slackops", Some("s3cret"))
        .header("X-SPINNAKER-USER", "ignored@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        user["username"], "slackops",
        "the principal wins over the header"
    );
    let (status, _) = get_json(format!("{}/health", gate.url())).await;
    assert_eq!(status, StatusCode::OK, "health needs no auth");

    gate.require_auth(Auth::Bearer("spk_token".into()));
    let response = client()
        .get(format!("{}/auth/user", gate.url()))
        .bearer_auth("spk_token")
        .header("X-SPINNAKER-USER", "bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "bob@example.com");
    let response = client()
        .get(format!("{}/auth/user", gate.url()))
        .header("X-Spinnaker-Token", "spk_token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client()
        .get(format!("{}/auth/user", gate.url()))
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        gate.requests()
            .iter()
            .any(|r| r.authorization_present && r.status == 401)
    );
}

#[tokio::test]
async fn down_answers_503_everywhere() {
    let gate = gate_with_mj().await;
    gate.set_down(true);
    for path in ["/health".to_string(), format!("/pipelines/{EXEC}")] {
        let response = client()
            .get(format!("{}{path}", gate.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    let response = patch(
        &gate,
        EXEC,
        STAGE,
        "bob@example.com",
        json!({"judgmentStatus": "continue"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gate.patch_count(), 0, "never reached orca");
    assert_eq!(stage(&gate.execution(EXEC), STAGE)["status"], "RUNNING");

    gate.set_down(false);
    let (status, _) = get_json(format!("{}/health", gate.url())).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn timed_out_patch_is_still_applied() {
    let gate = gate_with_mj().await;
    gate.set_delay(Duration::from_millis(300));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let result = short
        .patch(format!("{}/pipelines/{EXEC}/stages/{STAGE}", gate.url()))
        .json(&json!({"judgmentStatus": "continue"}))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(
        gate.wait_for_stage_status(EXEC, STAGE, "SUCCEEDED", Duration::from_secs(5))
            .await
    );
    assert_eq!(gate.patch_count(), 1);
}

#[tokio::test]
async fn fail_next_and_delay() {
    let gate = gate_with_mj().await;
    gate.fail_next(2, 502);
    for _ in 0..2 {
        let (status, body) = get_json(format!("{}/pipelines/{EXEC}", gate.url())).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["status"], 502);
    }
    let (status, _) = get_json(format!("{}/pipelines/{EXEC}", gate.url())).await;
    assert_eq!(status, StatusCode::OK);

    gate.set_delay(Duration::from_millis(300));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let result = short.get(format!("{}/health", gate.url())).send().await;
    assert!(result.unwrap_err().is_timeout());
    // The request still completes server-side, like a real Gate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gate.request_count() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gate.request_count(), 4);
}
