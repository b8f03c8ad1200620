//! Judging by command: `/spinnaker approve <execution id | Deck URL> [input]` and
//! `/spinnaker reject <execution id | Deck URL> [reason]` go through the same authorization,
//! claim, quorum and outcome as the buttons; the answer is private; the channel message is
//! updated as for a click; several waiting judgments in one execution are listed with buttons;
//! a rejection's reason reaches the thread and the audit log and stays inert. On every engine
//! `TestDb::all` offers.

use serde_json::{Value, json};

use crate::approvals_flow::{
    WAIT, action_elements, all_text, click, judgment_of, replies, start_judgment,
    wait_for_settled_message, wait_for_state,
};
use crate::approvals_support::{
    APP, APPROVER, APPROVER2, CHANNEL, OUTSIDER, add_mj, approvals_builder, stage_event,
};
use crate::helpers::{TestApp, TestDb, eventually};

const EXEC: &str = "01J6EXEC0000000000000000C1";
const EXEC2: &str = "01J6EXEC0000000000000000C2";
const STAGE: &str = "01J6STAGE000000000000000C1";
const STAGE_B: &str = "01J6STAGE000000000000000C2";

/// `/spinnaker <text>` from `user`; returns the private answer (the ack's JSON).
async fn spinnaker(app: &TestApp, text: &str, user: &str) -> Value {
    let resp = app.command("/spinnaker", text, user).await;
    assert_eq!(resp.status(), 200, "the command is acknowledged");
    let body: Value = resp.json().await.expect("JSON ack");
    assert_eq!(
        body["response_type"], "ephemeral",
        "the answer is private: {body:#}"
    );
    body
}

fn text_of(body: &Value) -> String {
    body["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_by_id_and_reject_by_deck_url_with_a_reason_in_the_thread_and_the_audit() {
    for db in TestDb::all("approvals_command::approve_and_reject").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        let answer = text_of(&spinnaker(&app, &format!("approve {EXEC}"), APPROVER).await);
        assert!(answer.contains("Approving"), "{engine:?}: {answer}");
        wait_for_state(&app, EXEC, "approved").await;
        wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved* by <@U0BOB>").await;
        assert_eq!(app.gate.patches()[0].body["judgmentStatus"], "continue");

        // The second by its Deck URL, as Slack sends a pasted link, with a hostile reason.
        let exec2 = add_mj(&app.gate, EXEC2, STAGE);
        app.echo(&stage_event("orca:stage:starting", &exec2, STAGE))
            .await;
        let msg2 = eventually(WAIT, "the second message", || async {
            app.slack
                .messages_in(CHANNEL)
                .into_iter()
                .find(|m| m.thread_ts.is_none() && m.blocks.to_string().contains(EXEC2))
        })
        .await;
        let url = format!(
            "<https://deck.example.com/#/applications/{APP}/executions/details/{EXEC2}?stage=1>"
        );
        let reason = "<!channel> canary *failing* &lt;@U0BOB&gt;";
        let answer = text_of(&spinnaker(&app, &format!("reject {url} {reason}"), APPROVER2).await);
        assert!(answer.contains("Rejecting"), "{engine:?}: {answer}");
        let j = wait_for_state(&app, EXEC2, "rejected").await;
        let settled = wait_for_settled_message(&app, CHANNEL, &msg2.ts, "*Rejected*").await;
        let shown = all_text(&settled.blocks);
        assert!(
            shown.contains("Reason: &lt;!channel&gt; canary *failing*"),
            "{engine:?}: {shown}"
        );
        assert!(
            !settled.blocks.to_string().contains("<!channel>"),
            "{engine:?}: inert"
        );
        let thread = eventually(WAIT, "the reason in the thread", || async {
            replies(&app, CHANNEL, &msg2.ts)
                .into_iter()
                .map(|m| m.text)
                .find(|t| t.contains("Reason:"))
        })
        .await;
        assert!(
            !thread.contains("<!channel>") && !thread.contains("<@U0BOB>"),
            "{engine:?}: the reason stays inert in the thread: {thread}"
        );
        let audited = j["audit"].as_array().expect("audit").iter().any(|a| {
            // The detail is stored as JSON text.
            let detail: Value = a["detail"]
                .as_str()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            a["action"] == "reject"
                && detail["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("canary *failing*"))
        });
        assert!(
            audited,
            "{engine:?}: the reason is audited: {:#}",
            j["audit"]
        );
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 2, "{engine:?}: one PATCH each");
        assert_eq!(patches[1].body["judgmentStatus"], "stop");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_by_command_counts_towards_the_quorum_like_a_click() {
    for db in TestDb::all("approvals_command::quorum").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| s.approvals.approvers[0].required_approvals = 2)
            .spawn()
            .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        let answer = text_of(&spinnaker(&app, &format!("approve {EXEC}"), APPROVER).await);
        assert!(answer.contains("1 of 2"), "{engine:?}: {answer}");
        let again = text_of(&spinnaker(&app, &format!("approve {EXEC}"), APPROVER).await);
        assert!(again.contains("already approved"), "{engine:?}: {again}");
        click(&app, &app, APPROVER2, "approvals:approve", &msg, None).await;
        wait_for_state(&app, EXEC, "approved").await;
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_judgments_in_one_execution_are_listed_with_buttons_instead_of_guessing() {
    for db in TestDb::all("approvals_command::parallel").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        let mut exec = add_mj(&app.gate, EXEC, STAGE);
        let mut second = exec["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == STAGE))
            .cloned()
            .expect("the judgment stage");
        second["id"] = json!(STAGE_B);
        second["refId"] = json!("3");
        second["name"] = json!("Approve EU <b>");
        exec["stages"].as_array_mut().expect("stages").push(second);
        app.gate.add_execution(exec.clone());
        for s in [STAGE, STAGE_B] {
            app.echo(&stage_event("orca:stage:starting", &exec, s))
                .await;
        }
        eventually(WAIT, "two messages", || async {
            (app.slack.messages_in(CHANNEL).len() >= 2).then_some(())
        })
        .await;

        let body = spinnaker(&app, &format!("approve {EXEC}"), APPROVER).await;
        assert!(
            text_of(&body).contains("2 Manual Judgments"),
            "{engine:?}: {body:#}"
        );
        let elements = action_elements(&body["blocks"]);
        let approves: Vec<&Value> = elements
            .iter()
            .filter(|e| e["action_id"] == "approvals:approve")
            .collect();
        assert_eq!(
            approves.len(),
            2,
            "{engine:?}: one Approve per judgment: {body:#}"
        );
        assert!(
            approves.iter().all(|e| e["confirm"].is_object()),
            "{engine:?}"
        );
        assert_ne!(approves[0]["value"], approves[1]["value"], "{engine:?}");
        assert!(
            body["blocks"].to_string().contains("Approve EU &lt;b&gt;"),
            "{engine:?}: names escaped"
        );
        assert_eq!(app.gate.patch_count(), 0, "{engine:?}: nothing judged");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_by_command_say_why_and_change_nothing() {
    for db in TestDb::all("approvals_command::refusals").await {
        let engine = db.engine;
        let app = approvals_builder(db).await.spawn().await;
        start_judgment(&app, EXEC, STAGE).await;

        let outsider = text_of(&spinnaker(&app, &format!("approve {EXEC}"), OUTSIDER).await);
        assert!(
            outsider.contains("not an approver"),
            "{engine:?}: {outsider}"
        );
        let unknown = text_of(&spinnaker(&app, "reject 01J6NOSUCHEXEC", APPROVER).await);
        assert!(
            unknown.contains("No Manual Judgment"),
            "{engine:?}: {unknown}"
        );
        let bad = text_of(&spinnaker(&app, "approve not/a/deck/url", APPROVER).await);
        assert!(
            bad.contains("not a Deck execution URL"),
            "{engine:?}: {bad}"
        );
        let missing = text_of(&spinnaker(&app, "reject", APPROVER).await);
        assert!(
            missing.contains("Usage") && missing.contains("reject &lt;execution id"),
            "{engine:?}: {missing}"
        );
        let wrong_input =
            text_of(&spinnaker(&app, &format!("approve {EXEC} nonsense"), APPROVER).await);
        assert!(
            wrong_input.contains("no judgment inputs"),
            "{engine:?}: {wrong_input}"
        );

        assert_eq!(app.gate.patch_count(), 0, "{engine:?}: nothing sent");
        assert_eq!(
            judgment_of(&app, EXEC).await.expect("j")["state"],
            "awaiting"
        );
        let help = text_of(&spinnaker(&app, "help", APPROVER).await);
        assert!(
            help.contains("/spinnaker approve &lt;execution id | Deck URL&gt; [input]")
                && help.contains("/spinnaker reject &lt;execution id | Deck URL&gt; [reason]"),
            "{engine:?}: help lists both: {help}"
        );
        app.stop().await;
    }
}
