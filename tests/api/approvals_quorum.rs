//! Quorum (`approvals.approvers[].required_approvals`), through the real service against the fake
//! Gate and fake Slack: distinct approvers are counted and the last needed one sends the only
//! PATCH; a repeat approval, an approval for another input and the trigger user's approval under
//! four-eyes count nothing and are answered privately; one Reject stops at once; a judgment taken
//! in Deck ends the count; approvals arriving together on two instances sharing a database are each
//! counted once with one PATCH. On every engine `TestDb::all` offers.

use std::time::Duration;

use serde_json::Value;

use crate::approvals_flow::{
    WAIT, action_elements, all_text, audit_outcomes, click, ephemeral_texts, judgment_of,
    start_judgment, wait_for_ephemeral, wait_for_settled_message, wait_for_state,
};
use crate::approvals_support::{
    APPROVER, APPROVER2, CHANNEL, TRIGGER_USER, add_mj, approvals_builder, stage_event,
};
use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_slack::Message;

const EXEC: &str = "01J6EXEC0000000000000000Q1";
const STAGE: &str = "01J6STAGE000000000000000Q1";
const APPROVE: &str = "approvals:approve";
const REJECT: &str = "approvals:reject";
/// Long enough for a wrongly queued PATCH to have reached the fake Gate.
const SETTLE: Duration = Duration::from_millis(700);

/// The approvals builder with `required_approvals` set on its rule.
async fn quorum_builder(db: TestDb, need: u32) -> TestAppBuilder {
    approvals_builder(db).await.settings(move |s| {
        for r in &mut s.approvals.approvers {
            r.required_approvals = need;
        }
    })
}

/// Wait until the message's status shows `needle` (the buttons still there).
async fn wait_for_live_status(app: &TestApp, msg: &Message, needle: &str) -> Message {
    eventually(
        WAIT,
        &format!("the live message to show {needle:?}"),
        || async {
            app.slack.message(&msg.channel, &msg.ts).filter(|m| {
                !action_elements(&m.blocks).is_empty() && all_text(&m.blocks).contains(needle)
            })
        },
    )
    .await
}

fn patches_now(app: &TestApp) -> usize {
    app.gate.patch_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_of_two_distinct_approvers_sends_one_patch_after_the_second_approval() {
    for db in TestDb::all("approvals_quorum::quorum_of_two").await {
        let engine = db.engine;
        let app = quorum_builder(db, 2).await.spawn().await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        // First approval: counted, nothing sent, progress shown with the buttons still live.
        let (status, _, url) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        assert_eq!(status, 200, "{engine:?}");
        let told = wait_for_ephemeral(&app, &url).await;
        assert!(
            told.contains("1 of 2"),
            "{engine:?}: told privately: {told}"
        );
        let live = wait_for_live_status(&app, &msg, "1 of 2 approvals: <@U0BOB>").await;
        assert!(
            all_text(&live.blocks).contains("<!date^"),
            "{engine:?}: says when: {}",
            all_text(&live.blocks)
        );
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            patches_now(&app),
            0,
            "{engine:?}: no PATCH before the quorum"
        );
        let j = judgment_of(&app, EXEC).await.expect("judgment");
        assert_eq!(j["state"], "awaiting", "{engine:?}");
        assert_eq!(j["approvals"], 1, "{engine:?}");

        // Second, distinct approval: the quorum is complete, one PATCH.
        let (status, _, url2) = click(&app, &app, APPROVER2, APPROVE, &msg, None).await;
        assert_eq!(status, 200, "{engine:?}");
        let j = wait_for_state(&app, EXEC, "approved").await;
        assert_eq!(
            j["judge_user"], APPROVER2,
            "{engine:?}: the last approver claims"
        );
        let settled = wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved*").await;
        assert!(all_text(&settled.blocks).contains("*Approved* by <@U0CAROL>"));
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "continue");
        assert!(ephemeral_texts(&app, &url2).is_empty(), "{engine:?}");
        let audit = audit_outcomes(&j);
        assert!(
            audit.contains(&(APPROVER.into(), "approve".into(), "counted".into()))
                && audit.contains(&(APPROVER2.into(), "approve".into(), "claimed".into())),
            "{engine:?}: each approval audited: {audit:?}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_of_three_counts_a_repeat_approval_once_and_tells_the_person_privately() {
    for db in TestDb::all("approvals_quorum::quorum_of_three").await {
        let engine = db.engine;
        let app = quorum_builder(db, 3).await.spawn().await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        wait_for_live_status(&app, &msg, "1 of 3 approvals").await;
        let (_, _, again) = click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        let told = wait_for_ephemeral(&app, &again).await;
        assert!(
            told.contains("already approved") && told.contains("1 of 3"),
            "{engine:?}: the repeat is told privately: {told}"
        );
        let j = judgment_of(&app, EXEC).await.expect("judgment");
        assert_eq!(j["approvals"], 1, "{engine:?}: counted once");

        click(&app, &app, APPROVER2, APPROVE, &msg, None).await;
        wait_for_live_status(&app, &msg, "2 of 3 approvals").await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            patches_now(&app),
            0,
            "{engine:?}: two of three send nothing"
        );

        click(&app, &app, TRIGGER_USER, APPROVE, &msg, None).await;
        wait_for_state(&app, EXEC, "approved").await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(
            patches_now(&app),
            1,
            "{engine:?}: one PATCH for three approvals"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_reject_mid_quorum_stops_at_once() {
    for db in TestDb::all("approvals_quorum::reject_mid_quorum").await {
        let engine = db.engine;
        let app = quorum_builder(db, 2).await.spawn().await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        wait_for_live_status(&app, &msg, "1 of 2 approvals").await;
        click(&app, &app, APPROVER2, REJECT, &msg, None).await;

        wait_for_state(&app, EXEC, "rejected").await;
        wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Rejected* by <@U0CAROL>").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "stop", "{engine:?}");

        // A late approval changes nothing.
        let (_, _, late) = click(&app, &app, TRIGGER_USER, APPROVE, &msg, None).await;
        let told = wait_for_ephemeral(&app, &late).await;
        assert!(told.contains("already"), "{engine:?}: {told}");
        tokio::time::sleep(SETTLE).await;
        assert_eq!(patches_now(&app), 1, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_four_eyes_the_trigger_users_approval_never_counts_towards_the_quorum() {
    for db in TestDb::all("approvals_quorum::four_eyes").await {
        let engine = db.engine;
        let app = quorum_builder(db, 2)
            .await
            .settings(|s| s.approvals.four_eyes = true)
            .spawn()
            .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        let (_, _, url) = click(&app, &app, TRIGGER_USER, APPROVE, &msg, None).await;
        let told = wait_for_ephemeral(&app, &url).await;
        assert!(told.contains("four-eyes"), "{engine:?}: {told}");
        let j = judgment_of(&app, EXEC).await.expect("judgment");
        assert_eq!(j["approvals"], 0, "{engine:?}: not counted");

        click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        wait_for_live_status(&app, &msg, "1 of 2 approvals: <@U0BOB>").await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(patches_now(&app), 0, "{engine:?}");
        click(&app, &app, APPROVER2, APPROVE, &msg, None).await;
        wait_for_state(&app, EXEC, "approved").await;
        assert_eq!(patches_now(&app), 1, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_approval_fixes_the_input_and_another_input_is_not_counted() {
    for db in TestDb::all("approvals_quorum::input_rule").await {
        let engine = db.engine;
        let app = quorum_builder(db, 2).await.spawn().await;
        add_mj(&app.gate, EXEC, STAGE);
        let hostile = "<!channel> *rollback*";
        app.gate
            .set_judgment_inputs(EXEC, STAGE, &["deploy", hostile]);
        let exec = app.gate.execution(EXEC);
        app.echo(&stage_event("orca:stage:starting", &exec, STAGE))
            .await;
        let msg = app.slack.wait_for_messages(CHANNEL, 1, WAIT).await[0].clone();

        click(&app, &app, APPROVER, APPROVE, &msg, Some(hostile)).await;
        let live = wait_for_live_status(&app, &msg, "1 of 2 approvals").await;
        let text = all_text(&live.blocks);
        assert!(
            text.contains("for the input *&lt;!channel&gt; *rollback**"),
            "{engine:?}: the fixed input is shown, escaped: {text}"
        );
        assert!(
            !live.blocks.to_string().contains("<!channel>"),
            "{engine:?}: inert"
        );
        let ids: Vec<Value> = action_elements(&live.blocks)
            .iter()
            .map(|e| e["action_id"].clone())
            .collect();
        assert!(
            !ids.contains(&Value::from("approvals:input")),
            "{engine:?}: no select once fixed: {ids:?}"
        );

        // Another input (from a message still showing the select): told, not counted.
        let (_, _, url) = click(&app, &app, APPROVER2, APPROVE, &msg, Some("deploy")).await;
        let told = wait_for_ephemeral(&app, &url).await;
        assert!(
            told.contains("&lt;!channel&gt;") && told.contains("nothing was counted"),
            "{engine:?}: told which input is being approved: {told}"
        );
        assert_eq!(judgment_of(&app, EXEC).await.expect("j")["approvals"], 1);

        // Without choosing: approves the fixed input.
        click(&app, &app, APPROVER2, APPROVE, &msg, None).await;
        let j = wait_for_state(&app, EXEC, "approved").await;
        assert_eq!(j["judgment_input"], hostile, "{engine:?}");
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}");
        assert_eq!(patches[0].body["judgmentInput"], hostile, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_judgment_taken_in_deck_mid_quorum_ends_the_count() {
    for db in TestDb::all("approvals_quorum::deck_mid_quorum").await {
        let engine = db.engine;
        let app = quorum_builder(db, 2).await.spawn().await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        click(&app, &app, APPROVER, APPROVE, &msg, None).await;
        wait_for_live_status(&app, &msg, "1 of 2 approvals").await;

        app.gate
            .complete_stage(EXEC, STAGE, "continue", "dave@example.com");
        let execution = app.gate.execution(EXEC);
        app.echo(&stage_event("orca:stage:complete", &execution, STAGE))
            .await;

        wait_for_settled_message(&app, CHANNEL, &msg.ts, "Approved in Spinnaker").await;
        let (_, _, url) = click(&app, &app, APPROVER2, APPROVE, &msg, None).await;
        let told = wait_for_ephemeral(&app, &url).await;
        assert!(told.contains("already closed"), "{engine:?}: {told}");
        tokio::time::sleep(SETTLE).await;
        assert_eq!(patches_now(&app), 0, "{engine:?}: slackops sent nothing");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_arriving_together_on_two_instances_are_each_counted_once_with_one_patch() {
    for db in TestDb::all("approvals_quorum::two_instances").await {
        let engine = db.engine;
        let first = quorum_builder(db, 2).await.spawn().await;
        let db_url = first.settings.database.url.clone();
        let slack_url = first.settings.slack.api_url.clone();
        let gate_url = first.settings.spinnaker.gate_url.clone();
        let second = quorum_builder(TestDb::sqlite(), 2)
            .await
            .settings(move |s| {
                s.database.url = db_url;
                s.slack.api_url = slack_url;
                s.spinnaker.gate_url = gate_url;
            })
            .spawn()
            .await;
        let (_, msg) = start_judgment(&first, EXEC, STAGE).await;

        let (a, b) = tokio::join!(
            click(&first, &first, APPROVER, APPROVE, &msg, None),
            click(&first, &second, APPROVER2, APPROVE, &msg, None)
        );
        assert_eq!((a.0, b.0), (200, 200), "{engine:?}");
        let j = wait_for_state(&first, EXEC, "approved").await;
        assert_eq!(j["approvals"], 2, "{engine:?}: both counted");
        tokio::time::sleep(SETTLE).await;
        assert_eq!(first.gate.patch_count(), 1, "{engine:?}: one PATCH");
        assert_eq!(second.gate.patch_count(), 0, "{engine:?}");
        wait_for_settled_message(&first, CHANNEL, &msg.ts, "*Approved*").await;
        second.stop().await;
        first.stop().await;
    }
}
