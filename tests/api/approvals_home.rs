//! The Home tab: `app_home_opened` publishes (`views.publish`) the judgments waiting that this
//! person may judge, with the quorum's progress, a link to the message and the channel message's
//! own buttons; then the pipelines they started from Slack in the last 24 hours. Judging from the
//! Home tab updates the channel message and publishes the person's Home tab again. Hostile names
//! stay inert. On every engine `TestDb::all` offers.

use serde_json::{Value, json};

use crate::approvals_flow::{
    WAIT, action_elements, start_judgment, wait_for_settled_message, wait_for_state,
};
use crate::approvals_support::{APP, APPROVER, APPROVER2, CHANNEL, OUTSIDER, approvals_builder};
use crate::helpers::{TestApp, TestDb, eventually, now_secs};

const EXEC: &str = "01J6EXEC0000000000000000H1";
const STAGE: &str = "01J6STAGE000000000000000H1";

fn home_opened(user: &str) -> Value {
    json!({
        "token": "legacy", "team_id": "T0FAKE", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": format!("Ev{}", uuid::Uuid::new_v4().simple()), "event_time": now_secs(),
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                  "event_ts": "1700000100.000100"}
    })
}

/// Open the Home tab of `user` and wait until a published view satisfies `ok`.
async fn open_home(app: &TestApp, user: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let before = app.slack.call_count("views.publish");
    let r = app.event(&home_opened(user), None).await;
    assert_eq!(r.status(), 200, "the event is acknowledged");
    eventually(WAIT, "the Home tab to be published", || async {
        (app.slack.call_count("views.publish") > before)
            .then(|| app.slack.home_of(user))
            .flatten()
            .filter(|v| ok(v))
    })
    .await
}

/// A block_actions payload from a button in the Home tab, as Slack sends it (no response_url).
fn home_click(
    app: &TestApp,
    user: &str,
    action_id: &str,
    judgment_id: &str,
    view: &Value,
) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
        "api_app_id": "A0APP", "token": "legacy",
        "container": {"type": "view", "view_id": view["id"]},
        "trigger_id": app.slack.trigger_id(),
        "team": {"id": "T0FAKE", "domain": "fake"},
        "view": view,
        "actions": [{"action_id": action_id, "block_id": format!("approvals_home_{judgment_id}"),
                     "type": "button", "value": judgment_id, "action_ts": crate::helpers::action_ts()}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_home_tab_lists_what_waits_for_the_person_and_their_pipelines() {
    for db in TestDb::all("approvals_home::content").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| s.approvals.approvers[0].required_approvals = 2)
            .spawn()
            .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        // A pipeline run started from Slack by bob, with a hostile pipeline name.
        sqlx::query(
            "INSERT INTO pipeline_runs (id, execution_id, application, pipeline_name, started_by, status, started_at, parameters)
             VALUES ('r1', '01J6RUN', $1, '<!channel> deploy', $2, 'RUNNING', $3, '{}')",
        )
        .bind(APP)
        .bind(APPROVER)
        .bind(app.state.now_ms() - 60_000)
        .execute(app.state.db().pool())
        .await
        .expect("a run");

        let home = open_home(&app, APPROVER, |v| {
            v.to_string().contains(EXEC) || v.to_string().contains("Approve prod")
        })
        .await;
        let text = home.to_string();
        assert_eq!(home["type"], "home", "{engine:?}");
        assert!(text.contains("Waiting for you"), "{engine:?}");
        assert!(
            text.contains(&format!("*{APP}* › *deploy-prod* — stage *Approve prod*")),
            "{engine:?}: names the judgment: {text}"
        );
        assert!(
            text.contains("0 of 2 approvals"),
            "{engine:?}: the quorum: {text}"
        );
        assert!(
            text.contains(&format!("/archives/{CHANNEL}/p{}", msg.ts.replace('.', ""))),
            "{engine:?}: links to the channel message: {text}"
        );
        let elements = action_elements(&home["blocks"]);
        let ids: Vec<&str> = elements
            .iter()
            .filter_map(|e| e["action_id"].as_str())
            .collect();
        assert_eq!(
            ids,
            vec!["approvals:approve", "approvals:reject"],
            "{engine:?}"
        );
        assert!(
            elements.iter().all(|e| e["confirm"].is_object()),
            "{engine:?}: confirmed"
        );
        assert!(
            text.contains("&lt;!channel&gt; deploy"),
            "{engine:?}: the run, escaped: {text}"
        );
        assert!(!text.contains("<!channel>"), "{engine:?}: inert");

        // Someone who may not judge it sees nothing waiting.
        let other = open_home(&app, OUTSIDER, |_| true).await;
        assert!(
            other
                .to_string()
                .contains("No Manual Judgment is waiting for you"),
            "{engine:?}: {other:#}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn judging_from_the_home_tab_updates_the_channel_message_and_the_home_tab() {
    for db in TestDb::all("approvals_home::judging").await {
        let engine = db.engine;
        let app = approvals_builder(db)
            .await
            .settings(|s| s.approvals.approvers[0].required_approvals = 2)
            .spawn()
            .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        let home = open_home(&app, APPROVER, |v| v.to_string().contains("Approve prod")).await;
        let jid = action_elements(&home["blocks"])[0]["value"]
            .as_str()
            .expect("judgment id")
            .to_string();

        // Bob approves from his Home tab: counted, and his Home tab says so.
        let before = app.slack.call_count("views.publish");
        let r = app
            .interaction(&home_click(
                &app,
                APPROVER,
                "approvals:approve",
                &jid,
                &home,
            ))
            .await;
        assert_eq!(r.status(), 200, "{engine:?}");
        eventually(WAIT, "the channel message to show the progress", || async {
            app.slack
                .message(CHANNEL, &msg.ts)
                .filter(|m| m.blocks.to_string().contains("1 of 2 approvals: <@U0BOB>"))
        })
        .await;
        let republished = eventually(WAIT, "bob's Home tab again", || async {
            (app.slack.call_count("views.publish") > before)
                .then(|| app.slack.home_of(APPROVER))
                .flatten()
                .filter(|v| v.to_string().contains("Your approval is counted"))
        })
        .await;
        assert!(
            republished.to_string().contains("1 of 2 approvals"),
            "{engine:?}"
        );

        // Again from the Home tab: told there, not counted twice.
        let r = app
            .interaction(&home_click(
                &app,
                APPROVER,
                "approvals:approve",
                &jid,
                &republished,
            ))
            .await;
        assert_eq!(r.status(), 200);
        eventually(WAIT, "the repeat to be told in the Home tab", || async {
            app.slack
                .home_of(APPROVER)
                .filter(|v| v.to_string().contains("already approved"))
        })
        .await;

        // Carol completes the quorum from hers: one PATCH, the message settles.
        let carol = open_home(&app, APPROVER2, |v| v.to_string().contains("Approve prod")).await;
        app.interaction(&home_click(
            &app,
            APPROVER2,
            "approvals:approve",
            &jid,
            &carol,
        ))
        .await;
        wait_for_state(&app, EXEC, "approved").await;
        wait_for_settled_message(&app, CHANNEL, &msg.ts, "*Approved* by <@U0CAROL>").await;
        assert_eq!(app.gate.patch_count(), 1, "{engine:?}");
        eventually(WAIT, "carol's Home tab without the judgment", || async {
            app.slack.home_of(APPROVER2).filter(|v| {
                v.to_string()
                    .contains("No Manual Judgment is waiting for you")
            })
        })
        .await;
        app.stop().await;
    }
}
