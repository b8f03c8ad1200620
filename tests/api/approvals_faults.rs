//! Approvals when things go wrong (issue 3, "When things fail" and "Judged elsewhere, and lost
//! events"): Gate down then up, Gate down for good, orca's silent Fiat reset
//! (reference/spinnaker.md §4), judgments taken in Deck or a pipeline canceled, lost echo events
//! caught by the reconciler, events out of order (§3a), a restart between the claim and the PATCH
//! (and after the PATCH), Slack rate limits on the message update, the judgments API and the
//! polling fallback. Every test runs on every engine `TestDb::all` offers.

use std::time::Duration;

use serde_json::{Value, json};
use slackops::approvals::message::{ACTION_APPROVE, ACTION_REJECT};
use slackops::approvals::{intake, reconcile};

use crate::approvals_support::{
    APP, APPROVER, APPROVER2, CHANNEL, add_mj, approvals_builder, click_payload, judgment_id_of,
    pipeline_event, stage_event,
};
use crate::helpers::{API_TOKEN, TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_gate::FakeGate;
use crate::support::fake_slack::{FakeSlack, Fault, Message};

const WAIT: Duration = Duration::from_secs(20);

// ============================================================================================
// Local helpers
// ============================================================================================

/// A posted judgment message.
struct Posted {
    exec: String,
    stage: String,
    ts: String,
    id: String,
}

fn fresh_ids() -> (String, String) {
    (FakeGate::new_id(), FakeGate::new_id())
}

/// The text of the message's status block.
fn status_of(m: &Message) -> String {
    m.blocks
        .as_array()
        .and_then(|a| a.iter().find(|b| b["block_id"] == "approvals_status"))
        .and_then(|b| b.pointer("/text/text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The action ids of the message's interactive elements.
fn action_ids(m: &Message) -> Vec<String> {
    m.blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect()
}

fn has_buttons(m: &Message) -> bool {
    let ids = action_ids(m);
    ids.iter().any(|a| a == ACTION_APPROVE) && ids.iter().any(|a| a == ACTION_REJECT)
}

/// Top-level messages in the approvals channel.
fn top_messages(slack: &FakeSlack) -> Vec<Message> {
    slack
        .messages_in(CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.is_none())
        .collect()
}

/// Replies in a message's thread.
fn thread_of(slack: &FakeSlack, ts: &str) -> Vec<Message> {
    slack
        .messages_in(CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(ts))
        .collect()
}

/// Wait until the judgment message at `ts` satisfies `pred`; on timeout, panic showing the last
/// status and buttons seen.
async fn wait_message(
    slack: &FakeSlack,
    ts: &str,
    what: &str,
    pred: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = slack.message(CHANNEL, ts);
        if let Some(m) = &m
            && pred(m)
        {
            return m.clone();
        }
        if tokio::time::Instant::now() > deadline {
            let last = m
                .map(|m| format!("status {:?}, actions {:?}", status_of(&m), action_ids(&m)))
                .unwrap_or_else(|| "no such message".into());
            panic!("timed out after {WAIT:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After `late` (longer than any Slack retry still in flight can take), the message at `ts`
/// settles on a state satisfying `pred`: a stale write landing after the outcome (a retried
/// "approving…" update) must not be the last word. A momentary flicker that the service corrects
/// itself is tolerated; the settled state is what people see.
async fn assert_settles(
    slack: &FakeSlack,
    ts: &str,
    late: Duration,
    what: &str,
    pred: impl Fn(&Message) -> bool,
) {
    tokio::time::sleep(late).await;
    wait_message(slack, ts, what, pred).await;
}

/// Wait until a thread reply of the message at `ts` contains `needle`.
async fn wait_thread_note(slack: &FakeSlack, ts: &str, needle: &str) -> Message {
    eventually(
        WAIT,
        &format!("a thread reply containing {needle:?}"),
        || {
            let found = thread_of(slack, ts)
                .into_iter()
                .find(|m| m.text.contains(needle));
            async move { found }
        },
    )
    .await
}

/// Send `orca:stage:starting` for the stage of `execution` and wait for its message.
async fn announce(app: &TestApp, slack: &FakeSlack, execution: &Value, stage: &str) -> Posted {
    let exec = execution["id"].as_str().expect("execution id").to_string();
    let r = app
        .echo(&stage_event("orca:stage:starting", execution, stage))
        .await;
    assert_eq!(r.status(), 200, "the starting event is accepted");
    let m = eventually(WAIT, "the judgment message to be posted", || {
        let found = top_messages(slack)
            .into_iter()
            .find(|m| m.blocks.to_string().contains(exec.as_str()));
        async move { found }
    })
    .await;
    assert!(
        has_buttons(&m),
        "a fresh judgment offers Approve and Reject"
    );
    let id = judgment_id_of(&m.blocks).expect("the buttons carry the judgment id");
    Posted {
        exec,
        stage: stage.to_string(),
        ts: m.ts,
        id,
    }
}

/// Add a running Manual Judgment to the fake Gate and post its message.
async fn post_judgment(app: &TestApp, slack: &FakeSlack, gate: &FakeGate) -> Posted {
    let (exec, stage) = fresh_ids();
    let execution = add_mj(gate, &exec, &stage);
    announce(app, slack, &execution, &stage).await
}

/// A click on a judgment message. The response_url belongs to `slack` (the fake that holds the
/// message), whichever app receives the click.
async fn click(app: &TestApp, slack: &FakeSlack, user: &str, action: &str, p: &Posted) {
    let mut payload = click_payload(app, user, action, &p.id, CHANNEL, &p.ts, None);
    payload["response_url"] = json!(slack.response_url_for_message(CHANNEL, &p.ts));
    let r = app.interaction(&payload).await;
    assert_eq!(r.status(), 200, "the click is acknowledged");
}

/// `GET /api/v1/judgments[?state=…]` with the API token.
async fn judgments(app: &TestApp, state: Option<&str>) -> Vec<Value> {
    let mut req = app
        .client
        .get(app.url("/api/v1/judgments"))
        .bearer_auth(API_TOKEN);
    if let Some(s) = state {
        req = req.query(&[("state", s)]);
    }
    let r = req.send().await.expect("request reaches the service");
    assert_eq!(r.status(), 200, "the judgments API answers");
    let body: Value = r.json().await.expect("JSON body");
    body["judgments"].as_array().cloned().unwrap_or_default()
}

/// Wait until no job is pending or running (e.g. the render a fresh post queues).
async fn wait_queue_idle(app: &TestApp) {
    eventually(WAIT, "the job queue to be idle", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')")
                .fetch_one(app.state.db().pool())
                .await
                .expect("counting jobs");
        (n == 0).then_some(())
    })
    .await
}

async fn count_jobs(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jobs WHERE kind = $1")
        .bind(kind)
        .fetch_one(app.state.db().pool())
        .await
        .expect("counting jobs")
}

fn patch_requests(gate: &FakeGate) -> usize {
    gate.requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count()
}

fn approved_by(m: &Message, user: &str) -> bool {
    let s = status_of(m);
    s.contains("*Approved* by") && s.contains(&format!("<@{user}>")) && action_ids(m).is_empty()
}

/// Take the fakes and the database out of a builder (replacing them with throw-away ones), so
/// they outlive the app it spawns: later apps on the same database use the same fakes. The
/// builder's settings still point at the originals.
async fn detach(mut b: TestAppBuilder) -> (TestAppBuilder, FakeSlack, FakeGate, TestDb) {
    let slack = std::mem::replace(&mut b.slack, FakeSlack::start().await);
    let gate = std::mem::replace(&mut b.gate, FakeGate::start().await);
    let db = std::mem::replace(&mut b.db, TestDb::sqlite());
    (b, slack, gate, db)
}

/// Another service instance with exactly `settings` (same database and fakes).
async fn same_as(settings: &slackops::config::Settings) -> TestAppBuilder {
    let s = settings.clone();
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(move |x| *x = s)
}

// ============================================================================================
// Gate unreachable
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gate_down_then_up_the_judgment_goes_through_once_after_retries() {
    for db in TestDb::all("approvals_faults::gate_down_then_up").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.jobs.backoff_base_ms = 20;
                s.jobs.backoff_max_ms = 200;
                // Plenty of attempts: Gate comes back well before they run out.
                s.approvals.judge_max_attempts = 200;
            })
            .spawn()
            .await;
        let p = post_judgment(&app, &app.slack, &app.gate).await;

        app.gate.set_down(true);
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;

        let note = wait_thread_note(&app.slack, &p.ts, "did not answer").await;
        assert!(
            note.text.contains(&format!("<@{APPROVER}>")),
            "[{engine:?}] the note addresses the judge: {}",
            note.text
        );
        let judging = wait_message(
            &app.slack,
            &p.ts,
            "the message to show the judging state",
            |m| status_of(m).contains("Approving"),
        )
        .await;
        assert!(
            action_ids(&judging).is_empty(),
            "[{engine:?}] no buttons while judging"
        );
        assert_eq!(patch_requests(&app.gate), 0, "[{engine:?}] Gate is down");

        app.gate.set_down(false);
        let m = wait_message(&app.slack, &p.ts, "the message to end approved", |m| {
            approved_by(m, APPROVER)
        })
        .await;
        assert!(
            action_ids(&m).is_empty(),
            "[{engine:?}] no buttons once approved"
        );
        let patches = app.gate.patches();
        assert_eq!(
            patches.len(),
            1,
            "[{engine:?}] exactly one PATCH: {patches:?}"
        );
        assert_eq!(patches[0].body["judgmentStatus"], "continue");
        assert_eq!(
            app.gate.stage(&p.exec, &p.stage)["status"],
            "SUCCEEDED",
            "[{engine:?}] Spinnaker continued"
        );
        let approved = judgments(&app, Some("approved")).await;
        assert!(
            approved.iter().any(|j| j["id"] == p.id.as_str()),
            "[{engine:?}] the judgment is recorded as approved"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gate_down_for_good_gives_the_buttons_back_with_an_error_and_judges_nothing() {
    for db in TestDb::all("approvals_faults::gate_down_for_good").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.jobs.backoff_base_ms = 20;
                s.jobs.backoff_max_ms = 100;
                s.approvals.judge_max_attempts = 2;
            })
            .spawn()
            .await;
        let p = post_judgment(&app, &app.slack, &app.gate).await;

        app.gate.set_down(true);
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;

        let m = wait_message(
            &app.slack,
            &p.ts,
            "the buttons to come back with an error note",
            |m| has_buttons(m) && status_of(m).contains("could not be reached"),
        )
        .await;
        assert!(
            status_of(&m).contains("open again"),
            "[{engine:?}] the message says the judgment is open again: {}",
            status_of(&m)
        );
        wait_thread_note(&app.slack, &p.ts, "could not be reached").await;
        assert_eq!(
            patch_requests(&app.gate),
            0,
            "[{engine:?}] no PATCH ever reached Gate"
        );
        assert_eq!(app.gate.patch_count(), 0);

        let awaiting = judgments(&app, Some("awaiting")).await;
        let j = awaiting
            .iter()
            .find(|j| j["id"] == p.id.as_str())
            .unwrap_or_else(|| panic!("[{engine:?}] the judgment is awaiting again: {awaiting:?}"));
        assert!(
            j["audit"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["outcome"] == "not_accepted")),
            "[{engine:?}] the failure is audited: {}",
            j["audit"]
        );
        assert!(judgments(&app, Some("judging")).await.is_empty());
        app.gate.set_down(false);
        assert_eq!(
            app.gate.stage(&p.exec, &p.stage)["status"],
            "RUNNING",
            "[{engine:?}] the stage still waits for a judgment"
        );
        app.stop().await;
    }
}

/// Gate took the PATCH (200) but orca has not acted on it when slackops stops waiting (a stuck
/// pipeline, reference/spinnaker.md §1.1: poll until the stage leaves RUNNING, then report what
/// actually happened). The judgment did reach Spinnaker, so the message must not say that Gate
/// could not be reached or that nothing was judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_judgment_gate_accepted_but_orca_has_not_acted_on_is_not_reported_as_never_sent() {
    for db in TestDb::all("approvals_faults::accepted_not_acted_on").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.jobs.backoff_base_ms = 20;
                s.jobs.backoff_max_ms = 100;
                s.approvals.judge_max_attempts = 2;
                s.approvals.outcome_wait_secs = 1;
            })
            .spawn()
            .await;
        let p = post_judgment(&app, &app.slack, &app.gate).await;
        app.gate.set_auto_transition(false);
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;

        // Spinnaker holds the judgment but orca does not act: the message keeps saying it is
        // being judged, explains the wait, offers no buttons, and nothing is sent again — even
        // after more checks than judge_max_attempts allows for failures.
        let status = eventually(WAIT, "the message to explain the wait", || async {
            let m = app.slack.message(CHANNEL, &p.ts)?;
            let status = status_of(&m);
            status
                .contains("has not acted on it yet")
                .then_some((status, action_ids(&m)))
        })
        .await;
        assert!(
            status.0.contains("Approving"),
            "[{engine:?}] still judging: {:?}",
            status.0
        );
        assert!(
            status.1.is_empty(),
            "[{engine:?}] no buttons while Spinnaker holds the judgment: {:?}",
            status.1
        );
        assert!(
            !status.0.contains("Nothing was judged") && !status.0.contains("could not be reached"),
            "[{engine:?}] {:?}",
            status.0
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            app.gate.patch_count(),
            1,
            "[{engine:?}] the judgment was sent once"
        );
        let stage = app.gate.stage(&p.exec, &p.stage);
        assert_eq!(
            stage["context"]["judgmentStatus"], "continue",
            "Spinnaker holds it"
        );

        // Orca finally acts on it: the message reports the approval by the Slack judge.
        app.gate
            .complete_stage(&p.exec, &p.stage, "continue", "bob@example.com");
        eventually(WAIT, "the approval to be reported", || async {
            let m = app.slack.message(CHANNEL, &p.ts)?;
            status_of(&m).contains("*Approved* by").then_some(())
        })
        .await;
        assert_eq!(app.gate.patch_count(), 1, "[{engine:?}] still one judgment");
        app.stop().await;
    }
}

// ============================================================================================
// Orca's silent reset (reference/spinnaker.md §4)
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_fiat_reset_is_reported_as_not_accepted_and_the_buttons_come_back() {
    for db in TestDb::all("approvals_faults::silent_fiat_reset").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.approvals
                    .role_groups
                    .insert("release".into(), vec!["release-managers".into()]);
            })
            .spawn()
            .await;
        let (exec, stage) = fresh_ids();
        add_mj(&app.gate, &exec, &stage);
        app.gate
            .set_selected_stage_roles(&exec, &stage, &["release"]);
        app.gate.set_fiat_refuses("*");
        let p = announce(&app, &app.slack, &app.gate.execution(&exec), &stage).await;

        // Carol is an approver and in @release-managers, so slackops' own policy allows her.
        click(&app, &app.slack, APPROVER2, ACTION_APPROVE, &p).await;

        let m = wait_message(
            &app.slack,
            &p.ts,
            "the message to say Spinnaker did not accept the judgment",
            |m| status_of(m).contains("did not accept"),
        )
        .await;
        assert!(
            has_buttons(&m),
            "[{engine:?}] Approve and Reject are back: {:?}",
            action_ids(&m)
        );
        assert_eq!(app.gate.patch_count(), 1, "[{engine:?}] exactly one PATCH");
        let s = app.gate.stage(&exec, &stage);
        assert_eq!(s["status"], "RUNNING", "[{engine:?}] the stage still runs");
        assert_eq!(
            s["context"]["judgmentStatus"], "",
            "[{engine:?}] orca reset it"
        );
        wait_thread_note(&app.slack, &p.ts, "did not accept").await;
        let awaiting = judgments(&app, Some("awaiting")).await;
        assert!(
            awaiting.iter().any(|j| j["id"] == p.id.as_str()),
            "[{engine:?}] the judgment is open again"
        );
        // Nothing more is sent by itself.
        assert!(judgments(&app, Some("judging")).await.is_empty());
        assert_eq!(app.gate.patch_count(), 1);
        app.stop().await;
    }
}

// ============================================================================================
// Judged elsewhere
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn judged_in_deck_updates_the_message_without_buttons_and_names_the_judge() {
    for db in TestDb::all("approvals_faults::judged_in_deck").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        for (decision, event, verb) in [
            ("continue", "orca:stage:complete", "Approved in Spinnaker"),
            ("stop", "orca:stage:failed", "Rejected in Spinnaker"),
        ] {
            let p = post_judgment(&app, &app.slack, &app.gate).await;
            app.gate
                .complete_stage(&p.exec, &p.stage, decision, "dave@example.com");
            let execution = app.gate.execution(&p.exec);
            let r = app.echo(&stage_event(event, &execution, &p.stage)).await;
            assert_eq!(r.status(), 200);
            let m = wait_message(&app.slack, &p.ts, &format!("{verb} in the message"), |m| {
                status_of(m).contains(verb)
            })
            .await;
            assert!(
                action_ids(&m).is_empty(),
                "[{engine:?}] {decision}: no buttons left: {:?}",
                action_ids(&m)
            );
            assert!(
                status_of(&m).contains("dave@example.com"),
                "[{engine:?}] {decision}: the message names the judge: {}",
                status_of(&m)
            );
        }
        assert_eq!(
            app.gate.patch_count(),
            0,
            "[{engine:?}] slackops sent nothing"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canceled_pipeline_updates_the_message_without_buttons() {
    for db in TestDb::all("approvals_faults::pipeline_canceled").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let p = post_judgment(&app, &app.slack, &app.gate).await;

        // Cancel through the fake Gate's own route, as a user in Deck would.
        let r = reqwest::Client::new()
            .put(format!("{}/pipelines/{}/cancel", app.gate.url(), p.exec))
            .query(&[("reason", "release postponed")])
            .header("X-SPINNAKER-USER", "erin@example.com")
            .send()
            .await
            .expect("fake gate answers");
        assert_eq!(r.status(), 200);
        let execution = app.gate.execution(&p.exec);
        assert_eq!(execution["canceled"], true);
        assert_eq!(execution["canceledBy"], "erin@example.com");
        assert_eq!(execution["cancellationReason"], "release postponed");

        let r = app
            .echo(&pipeline_event("orca:pipeline:failed", &execution))
            .await;
        assert_eq!(r.status(), 200);
        let m = wait_message(&app.slack, &p.ts, "the message to say canceled", |m| {
            status_of(m).contains("canceled")
        })
        .await;
        assert!(action_ids(&m).is_empty(), "[{engine:?}] no buttons left");
        let s = status_of(&m);
        assert!(
            s.contains("erin@example.com") && s.contains("release postponed"),
            "[{engine:?}] who canceled and why: {s}"
        );
        assert_eq!(app.gate.patch_count(), 0);
        app.stop().await;
    }
}

// ============================================================================================
// Lost events: the reconciler
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_closes_a_judgment_whose_event_was_lost() {
    for db in TestDb::all("approvals_faults::reconciler_lost_event").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;

        // Judged in Deck, and echo's event never arrives.
        let judged = post_judgment(&app, &app.slack, &app.gate).await;
        let waiting = post_judgment(&app, &app.slack, &app.gate).await;
        app.gate
            .complete_stage(&judged.exec, &judged.stage, "continue", "dave@example.com");

        let closed = reconcile::reconcile_once(&app.state)
            .await
            .expect("the reconciler runs");
        assert_eq!(closed, 1, "[{engine:?}] one judgment was decided in Deck");
        let m = wait_message(&app.slack, &judged.ts, "the reconciled message", |m| {
            status_of(m).contains("Approved in Spinnaker")
        })
        .await;
        assert!(action_ids(&m).is_empty(), "[{engine:?}] buttons removed");
        assert!(
            status_of(&m).contains("dave@example.com"),
            "[{engine:?}] the message says who judged: {}",
            status_of(&m)
        );
        let other = app.slack.message(CHANNEL, &waiting.ts).expect("message");
        assert!(
            has_buttons(&other),
            "[{engine:?}] a waiting stage keeps its buttons"
        );

        // The execution is deleted.
        app.gate.remove_execution(&waiting.exec);
        let closed = reconcile::reconcile_once(&app.state)
            .await
            .expect("the reconciler runs");
        assert_eq!(closed, 1, "[{engine:?}] the vanished execution is closed");
        let m = wait_message(&app.slack, &waiting.ts, "the vanished message", |m| {
            status_of(m).contains("no longer exists")
        })
        .await;
        assert!(action_ids(&m).is_empty(), "[{engine:?}] buttons removed");

        let closed = reconcile::reconcile_once(&app.state)
            .await
            .expect("the reconciler runs");
        assert_eq!(closed, 0, "[{engine:?}] nothing is left open");
        assert_eq!(app.gate.patch_count(), 0);
        app.stop().await;
    }
}

// ============================================================================================
// Out of order
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_before_its_start_never_posts_live_buttons() {
    for db in TestDb::all("approvals_faults::out_of_order").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let (exec, stage) = fresh_ids();
        let running = add_mj(&app.gate, &exec, &stage);
        let starting = stage_event("orca:stage:starting", &running, &stage);
        app.gate
            .complete_stage(&exec, &stage, "continue", "dave@example.com");
        let done = app.gate.execution(&exec);
        assert_eq!(
            done["stages"][1]["startTime"], running["stages"][1]["startTime"],
            "the same stage run"
        );

        let r = app
            .echo(&stage_event("orca:stage:complete", &done, &stage))
            .await;
        assert_eq!(r.status(), 200);
        let r = app.echo(&starting).await;
        assert_eq!(r.status(), 200);

        // A later judgment of another execution is posted after anything the late start could
        // have queued, so once it shows up the queue has had its chance.
        let control = post_judgment(&app, &app.slack, &app.gate).await;
        let top = top_messages(&app.slack);
        assert_eq!(
            top.len(),
            1,
            "[{engine:?}] only the control judgment was posted: {:?}",
            top.iter().map(status_of).collect::<Vec<_>>()
        );
        assert_eq!(top[0].ts, control.ts);
        assert!(
            !top[0].blocks.to_string().contains(exec.as_str()),
            "[{engine:?}] nothing was posted for the decided stage"
        );
        assert_eq!(
            count_jobs(&app, "approvals.post").await,
            1,
            "[{engine:?}] only the control judgment was queued for posting"
        );
        let all = judgments(&app, None).await;
        let j = all
            .iter()
            .find(|j| j["execution_id"] == exec.as_str())
            .unwrap_or_else(|| panic!("[{engine:?}] the decided run is remembered: {all:?}"));
        assert_eq!(j["state"], "decided_elsewhere");
        assert_eq!(j["decided_by"], "dave@example.com");
        app.stop().await;
    }
}

// ============================================================================================
// Restarts
// ============================================================================================

/// What survives the apps of a restart test: their shared settings, the fakes and the database
/// (which hold all state), the posted judgment and its claim time.
struct Restarted {
    settings: slackops::config::Settings,
    slack: FakeSlack,
    gate: FakeGate,
    _db: TestDb,
    p: Posted,
    claimed_at: i64,
}

/// App A posts the message and stops; app B (no worker) takes the click, so the claim and its
/// judge job are stored but not run, and stops.
async fn claim_then_stop(db: TestDb) -> Restarted {
    let engine = db.engine;
    let (a, slack, gate, db) = detach(approvals_builder(db).await).await;
    let settings = a.settings.clone();

    let app_a = a.spawn().await;
    let p = post_judgment(&app_a, &slack, &gate).await;
    app_a.stop().await;

    let app_b = same_as(&settings).await.without_worker().spawn().await;
    click(&app_b, &slack, APPROVER, ACTION_APPROVE, &p).await;
    let judging = eventually(WAIT, "the claim to be stored", || async {
        let j = judgments(&app_b, Some("judging")).await;
        (!j.is_empty()).then_some(j)
    })
    .await;
    assert_eq!(judging.len(), 1);
    assert_eq!(judging[0]["id"], p.id.as_str());
    assert_eq!(judging[0]["judge_user"], APPROVER);
    let claimed_at = judging[0]["claimed_at"].as_i64().expect("claimed_at");
    wait_message(&slack, &p.ts, "the message to show approving…", |m| {
        status_of(m).contains("Approving") && action_ids(m).is_empty()
    })
    .await;
    let judge_jobs: Vec<String> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'approvals.judge'")
            .fetch_all(app_b.state.db().pool())
            .await
            .expect("reading jobs");
    assert_eq!(
        judge_jobs,
        vec!["pending".to_string()],
        "[{engine:?}] the judge job is stored, not run"
    );
    assert_eq!(
        gate.patch_count(),
        0,
        "[{engine:?}] nothing reached Gate yet"
    );
    app_b.stop().await;
    Restarted {
        settings,
        slack,
        gate,
        _db: db,
        p,
        claimed_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_between_the_claim_and_the_patch_judges_exactly_once() {
    for db in TestDb::all("approvals_faults::restart_before_patch").await {
        let engine = db.engine;
        let r = claim_then_stop(db).await;

        let app_c = same_as(&r.settings).await.spawn().await;
        let m = wait_message(&r.slack, &r.p.ts, "the message to end approved", |m| {
            approved_by(m, APPROVER)
        })
        .await;
        assert!(!status_of(&m).contains("Approving"));
        assert_eq!(r.gate.patch_count(), 1, "[{engine:?}] exactly one PATCH");
        let patch = &r.gate.patches()[0];
        assert_eq!(patch.body["judgmentStatus"], "continue");
        assert_eq!(
            patch.body["slackopsClaim"],
            format!("{}/{}", r.p.id, r.claimed_at),
            "[{engine:?}] the PATCH carries the claim's marker"
        );
        assert_eq!(r.gate.stage(&r.p.exec, &r.p.stage)["status"], "SUCCEEDED");
        assert!(judgments(&app_c, Some("judging")).await.is_empty());
        let approved = judgments(&app_c, Some("approved")).await;
        assert!(approved.iter().any(|j| j["id"] == r.p.id.as_str()));
        app_c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_after_the_patch_reached_gate_sends_no_second_patch() {
    for db in TestDb::all("approvals_faults::restart_after_patch").await {
        let engine = db.engine;
        let r = claim_then_stop(db).await;

        // The crashed replica's PATCH, exactly as slackops sends it, reached Gate.
        let marker = format!("{}/{}", r.p.id, r.claimed_at);
        let resp = reqwest::Client::new()
            .patch(format!(
                "{}/pipelines/{}/stages/{}",
                r.gate.url(),
                r.p.exec,
                r.p.stage
            ))
            .json(&json!({"judgmentStatus": "continue", "slackopsClaim": marker}))
            .send()
            .await
            .expect("fake gate answers");
        assert_eq!(resp.status(), 200);
        assert!(
            r.gate
                .wait_for_stage_status(&r.p.exec, &r.p.stage, "SUCCEEDED", WAIT)
                .await,
            "Spinnaker acted on the judgment"
        );
        assert_eq!(r.gate.patch_count(), 1);

        let app_c = same_as(&r.settings).await.spawn().await;
        let m = wait_message(&r.slack, &r.p.ts, "the message to end approved", |m| {
            approved_by(m, APPROVER)
        })
        .await;
        assert!(!status_of(&m).contains("Approving"));
        assert_eq!(
            r.gate.patch_count(),
            1,
            "[{engine:?}] no second PATCH after the restart: {:?}",
            r.gate.patches()
        );
        assert!(judgments(&app_c, Some("judging")).await.is_empty());
        let approved = judgments(&app_c, Some("approved")).await;
        assert!(
            approved.iter().any(|j| j["id"] == r.p.id.as_str()),
            "[{engine:?}] recorded as approved by the judge, not as decided elsewhere"
        );
        app_c.stop().await;
    }
}

// ============================================================================================
// Slack faults on the message update
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slack_rate_limits_and_5xx_on_the_update_lose_nothing() {
    for db in TestDb::all("approvals_faults::slack_update_faults").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.jobs.backoff_base_ms = 20;
                s.jobs.backoff_max_ms = 200;
            })
            .spawn()
            .await;
        for (label, fault) in [
            (
                "429",
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
            ),
            ("503", Fault::ServerError(503)),
        ] {
            let p = post_judgment(&app, &app.slack, &app.gate).await;
            // The click comes later than the post and its follow-ups, as in real life.
            wait_queue_idle(&app).await;
            let before = app.slack.call_count("chat.update");
            app.slack.fail_next("chat.update", fault, 3);
            click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;
            let m = wait_message(&app.slack, &p.ts, "the message to end approved", |m| {
                approved_by(m, APPROVER)
            })
            .await;
            assert!(
                action_ids(&m).is_empty(),
                "[{engine:?}] {label}: no buttons"
            );
            assert!(
                app.slack.call_count("chat.update") >= before + 4,
                "[{engine:?}] {label}: the failed updates were retried"
            );
            wait_thread_note(&app.slack, &p.ts, "Approved").await;
            // The click's inline update retries (3 attempts, Retry-After 1 s plus jitter) are
            // over within 3 s of the click.
            assert_settles(
                &app.slack,
                &p.ts,
                Duration::from_secs(4),
                &format!("[{engine:?}] {label}: the message to settle on approved"),
                |m| approved_by(m, APPROVER),
            )
            .await;
        }
        assert_eq!(
            app.gate.patch_count(),
            2,
            "[{engine:?}] one PATCH per judgment"
        );
        app.stop().await;
    }
}

/// The click's own "approving…" update is retried inline by the Slack client (Retry-After). When
/// that retry lands after the judge job already rendered the outcome, the message must still end
/// approved: the "no message stays at approving…".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_retry_of_the_approving_update_does_not_overwrite_the_outcome() {
    for db in TestDb::all("approvals_faults::late_approving_update").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let p = post_judgment(&app, &app.slack, &app.gate).await;
        wait_queue_idle(&app).await;
        // Gate answers a little slowly, so the click's update is the one that meets the 429, and
        // the outcome is rendered while the client waits out the Retry-After.
        app.gate.set_delay(Duration::from_millis(100));
        app.slack.fail_next(
            "chat.update",
            Fault::RateLimited {
                retry_after_secs: 2,
            },
            1,
        );
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;
        wait_message(&app.slack, &p.ts, "the message to show approved", |m| {
            approved_by(m, APPROVER)
        })
        .await;
        assert_eq!(app.gate.patch_count(), 1);
        // Longer than the Retry-After (2 s plus up to 250 ms of jitter).
        assert_settles(
            &app.slack,
            &p.ts,
            Duration::from_secs(4),
            &format!("[{engine:?}] the message to settle on approved"),
            |m| approved_by(m, APPROVER),
        )
        .await;
        app.stop().await;
    }
}

// ============================================================================================
// GET /api/v1/judgments
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_judgments_api_requires_a_token_validates_state_and_shows_the_audit_trail() {
    for db in TestDb::all("approvals_faults::judgments_api").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let url = app.url("/api/v1/judgments");

        let r = app.client.get(&url).send().await.expect("answer");
        assert_eq!(r.status(), 401, "[{engine:?}] no token");
        let r = app
            .client
            .get(&url)
            .bearer_auth("not-the-token")
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 401, "[{engine:?}] wrong token");

        let r = app
            .client
            .get(&url)
            .query(&[("state", "bogus")])
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 400, "[{engine:?}] unknown state");
        let body: Value = r.json().await.expect("JSON error");
        assert_eq!(
            body["field"], "state",
            "[{engine:?}] names the field: {body}"
        );

        let p = post_judgment(&app, &app.slack, &app.gate).await;
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;
        wait_message(&app.slack, &p.ts, "the message to end approved", |m| {
            approved_by(m, APPROVER)
        })
        .await;

        let approved = judgments(&app, Some("approved")).await;
        assert_eq!(approved.len(), 1, "[{engine:?}] {approved:?}");
        let j = &approved[0];
        assert_eq!(j["id"], p.id.as_str());
        assert_eq!(j["state"], "approved");
        assert_eq!(j["execution_id"], p.exec.as_str());
        assert_eq!(j["judge_user"], APPROVER);
        let audit = j["audit"].as_array().expect("an audit trail");
        assert!(
            audit.iter().any(|e| e["action"] == "approve"
                && e["outcome"] == "claimed"
                && e["actor"] == APPROVER),
            "[{engine:?}] the claim is audited: {audit:?}"
        );
        assert!(
            audit
                .iter()
                .any(|e| e["action"] == "approve" && e["outcome"] == "approved"),
            "[{engine:?}] the approval is audited: {audit:?}"
        );
        assert!(judgments(&app, Some("awaiting")).await.is_empty());
        app.stop().await;
    }
}

// ============================================================================================
// Polling fallback
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_poller_posts_a_running_judgment_once() {
    for db in TestDb::all("approvals_faults::poller").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| s.approvals.poll_applications = vec![APP.into()])
            .spawn()
            .await;
        let (exec, stage) = fresh_ids();
        add_mj(&app.gate, &exec, &stage);

        let started = intake::poll_once(&app.state).await.expect("poll");
        assert_eq!(started, 1, "[{engine:?}] one running judgment found");
        let m = eventually(WAIT, "the polled judgment's message", || {
            let found = top_messages(&app.slack)
                .into_iter()
                .find(|m| m.blocks.to_string().contains(exec.as_str()));
            async move { found }
        })
        .await;
        assert!(has_buttons(&m), "[{engine:?}] with buttons");

        let again = intake::poll_once(&app.state).await.expect("poll");
        assert_eq!(again, 0, "[{engine:?}] nothing new");
        assert_eq!(
            count_jobs(&app, "approvals.post").await,
            1,
            "[{engine:?}] posted once"
        );
        assert_eq!(top_messages(&app.slack).len(), 1);
        assert!(
            app.gate
                .requests()
                .iter()
                .any(|r| r.path == format!("/applications/{APP}/pipelines")
                    && r.query.as_deref().is_some_and(|q| q.contains("RUNNING"))),
            "[{engine:?}] polled Gate's running executions"
        );
        app.stop().await;
    }
}

// ============================================================================================
// Telling the truth quickly: events without their execution, Gate refusals, long inputs
// ============================================================================================

/// The event echo sends with `echo.events.includeFullExecution: false`: no `content.execution`.
fn without_execution(mut event: Value) -> Value {
    if let Some(c) = event["content"].as_object_mut() {
        c.remove("execution");
    }
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_without_their_execution_update_the_message_at_once() {
    for db in TestDb::all("approvals_faults::events_without_execution").await {
        let engine = db.engine;
        // No periodic tasks: the reconciler never runs, so only the event can settle it.
        let app = approvals_builder(db).await.spawn().await;
        for (decision, event, verb) in [
            ("continue", "orca:stage:complete", "Approved in Spinnaker"),
            ("stop", "orca:stage:failed", "Rejected in Spinnaker"),
        ] {
            let p = post_judgment(&app, &app.slack, &app.gate).await;
            app.gate
                .complete_stage(&p.exec, &p.stage, decision, "dave@example.com");
            let execution = app.gate.execution(&p.exec);
            let r = app
                .echo(&without_execution(stage_event(event, &execution, &p.stage)))
                .await;
            assert_eq!(r.status(), 200, "[{engine:?}] {event} is accepted");
            let m = wait_message(&app.slack, &p.ts, &format!("{verb} in the message"), |m| {
                status_of(m).contains(verb)
            })
            .await;
            assert!(
                action_ids(&m).is_empty(),
                "[{engine:?}] {decision}: no buttons left: {:?}",
                action_ids(&m)
            );
            assert!(
                status_of(&m).contains("dave@example.com"),
                "[{engine:?}] {decision}: names the judge: {}",
                status_of(&m)
            );
        }

        // A pipeline canceled in Deck, its event without the execution: the message says what
        // happened (canceled, by whom, why), not merely that it ended.
        let p = post_judgment(&app, &app.slack, &app.gate).await;
        let r = reqwest::Client::new()
            .put(format!("{}/pipelines/{}/cancel", app.gate.url(), p.exec))
            .query(&[("reason", "release postponed")])
            .header("X-SPINNAKER-USER", "erin@example.com")
            .send()
            .await
            .expect("fake gate answers");
        assert_eq!(r.status(), 200);
        let execution = app.gate.execution(&p.exec);
        let r = app
            .echo(&without_execution(pipeline_event(
                "orca:pipeline:failed",
                &execution,
            )))
            .await;
        assert_eq!(r.status(), 200);
        let m = wait_message(&app.slack, &p.ts, "the message to say canceled", |m| {
            status_of(m).contains("anceled")
        })
        .await;
        assert!(action_ids(&m).is_empty(), "[{engine:?}] no buttons left");
        let s = status_of(&m);
        assert!(
            s.contains("erin@example.com") && s.contains("release postponed"),
            "[{engine:?}] who canceled and why: {s}"
        );
        assert_eq!(
            app.gate.patch_count(),
            0,
            "[{engine:?}] slackops judged nothing"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_refusal_while_judging_is_logged_counted_and_told_to_the_judge() {
    use crate::support::fake_gate::Auth;
    use slackops::config::{GateAuthKind, Secret};
    for db in TestDb::all("approvals_faults::gate_refusal_while_judging").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| {
                s.spinnaker.auth.kind = GateAuthKind::Bearer;
                s.spinnaker.auth.token = Secret::new("wrong-gate-token-4242");
            })
            .spawn()
            .await;

        // 401: Gate no longer accepts slackops' token.
        let p = post_judgment(&app, &app.slack, &app.gate).await;
        app.gate.require_auth(Auth::Bearer("the-real-token".into()));
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &p).await;
        let note = wait_thread_note(&app.slack, &p.ts, "spinnaker.auth").await;
        assert!(
            note.text.contains(&format!("<@{APPROVER}>")),
            "[{engine:?}] the judge is told: {}",
            note.text
        );
        wait_message(&app.slack, &p.ts, "the buttons to come back", has_buttons).await;
        app.gate.require_auth(Auth::None);

        // 403: Gate knows slackops but refuses the read.
        let q = post_judgment(&app, &app.slack, &app.gate).await;
        app.gate.fail_next(1, 403);
        click(&app, &app.slack, APPROVER, ACTION_APPROVE, &q).await;
        let note = wait_thread_note(&app.slack, &q.ts, "permissions").await;
        assert!(
            note.text.contains(&format!("<@{APPROVER}>")),
            "[{engine:?}] the judge is told: {}",
            note.text
        );
        wait_message(&app.slack, &q.ts, "the buttons to come back", has_buttons).await;
        assert_eq!(app.gate.patch_count(), 0, "[{engine:?}] nothing judged");

        // Counted, by outcome.
        let metrics = app.metrics_text().await;
        for outcome in ["unauthorized", "forbidden"] {
            let series = format!(
                "slackops_gate_calls_total{{method=\"get_execution\",outcome=\"{outcome}\"}}"
            );
            assert!(
                crate::monitoring::sample(&metrics, &series).unwrap_or(0.0) >= 1.0,
                "[{engine:?}] {series} counted"
            );
        }

        // Logged as a warning with what to check, never with the token.
        for (exec, check) in [(&p.exec, "spinnaker.auth"), (&q.exec, "Fiat permissions")] {
            let Some(lines) = crate::helpers::logged(exec) else {
                continue;
            };
            assert!(
                lines.iter().any(|l| l["level"] == "WARN"
                    && l["check"].as_str().unwrap_or_default().contains(check)),
                "[{engine:?}] a warning says to check {check}: {lines:#?}"
            );
            assert!(
                !lines
                    .iter()
                    .any(|l| l.to_string().contains("wrong-gate-token-4242")),
                "[{engine:?}] the token is never logged"
            );
        }
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_judgment_input_longer_than_150_characters_can_be_chosen_and_reaches_gate_whole() {
    for db in TestDb::all("approvals_faults::long_judgment_input").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let long = format!(
            "deploy to every region once the canary passes, {}then stop",
            "keep the old version warm for an hour, ".repeat(5)
        );
        assert!(long.chars().count() > 150);
        let (exec, stage) = fresh_ids();
        add_mj(&app.gate, &exec, &stage);
        app.gate
            .set_judgment_inputs(&exec, &stage, &[long.as_str(), "rollback"]);
        let execution = app.gate.execution(&exec);
        let p = announce(&app, &app.slack, &execution, &stage).await;
        let m = app.slack.message(CHANNEL, &p.ts).expect("the message");
        let select = m
            .blocks
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action_id"] == "approvals:input")
            .expect("a judgment-input menu");
        let option = select["options"][0].clone();
        assert!(
            option["value"].as_str().unwrap_or_default().chars().count() <= 150,
            "[{engine:?}] within Block Kit's limit: {option}"
        );

        // Slack sends the chosen option back as the message offered it.
        let mut payload =
            click_payload(&app, APPROVER, ACTION_APPROVE, &p.id, CHANNEL, &p.ts, None);
        payload["state"]["values"]["approvals_decide"]["approvals:input"] =
            json!({"type": "static_select", "selected_option": option});
        let r = app.interaction(&payload).await;
        assert_eq!(r.status(), 200);
        wait_message(&app.slack, &p.ts, "the approval in the message", |m| {
            status_of(m).contains("Approved")
        })
        .await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "[{engine:?}] one judgment");
        assert_eq!(
            patches[0].body["judgmentInput"],
            long.as_str(),
            "[{engine:?}] the exact input reaches Gate"
        );
        app.stop().await;
    }
}
