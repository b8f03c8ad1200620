//! Reminders and expiry of waiting judgments, with the service's clock injected (a
//! `ManualClock` moved forward; the periodic pass is run by hand as one replica's timer would):
//! reminders on schedule naming the approvers, at most `max_reminders`, once per interval even
//! when two passes run at once, never after the judgment ended; expiry with `leave` and with
//! `reject`, exactly once and audited; a click racing the expiry gives one outcome. On every engine
//! `TestDb::all` offers.
//!
//! The clock starts in the past and ends near the real time, so the clicks (signed with the real
//! time) stay inside the signature window the service checks against its clock.

use std::sync::Arc;

use slackops::approvals::timers::run_once;
use slackops::clock::ManualClock;
use slackops::config::OnExpiry;

use crate::approvals_flow::{
    WAIT, audit_outcomes, click, judgment_of, replies, start_judgment, top_level,
    wait_for_ephemeral, wait_for_settled_message, wait_for_state,
};
use crate::approvals_support::{APPROVER, CHANNEL, approvals_builder};
use crate::helpers::{TestApp, TestDb, eventually, now_secs};

const EXEC: &str = "01J6EXEC0000000000000000T1";
const EXEC2: &str = "01J6EXEC0000000000000000T2";
const STAGE: &str = "01J6STAGE000000000000000T1";
const MIN: i64 = 60_000;

async fn timers_app(
    db: TestDb,
    minutes_ago: i64,
    f: impl FnOnce(&mut slackops::config::Settings) + Send + 'static,
) -> (TestApp, ManualClock) {
    let clock = ManualClock::at_secs(now_secs() - minutes_ago * 60);
    let app = approvals_builder(db)
        .await
        .clock(Arc::new(clock.clone()))
        .settings(f)
        .spawn()
        .await;
    (app, clock)
}

async fn wait_for_reply(app: &TestApp, ts: &str, needle: &str) -> String {
    eventually(WAIT, &format!("a thread reply with {needle:?}"), || async {
        replies(app, CHANNEL, ts)
            .into_iter()
            .map(|m| m.text)
            .find(|t| t.contains(needle))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reminders_come_on_schedule_naming_the_approvers_at_most_max_and_never_after_the_end() {
    for db in TestDb::all("approvals_timers::reminders").await {
        let engine = db.engine;
        let (app, clock) = timers_app(db, 40, |s| {
            s.approvals.remind_after_mins = 10;
            s.approvals.max_reminders = 2;
        })
        .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        clock.advance_ms(5 * MIN);
        assert_eq!(
            run_once(&app.state).await.expect("pass").0,
            0,
            "{engine:?}: not yet"
        );

        clock.advance_ms(5 * MIN);
        let (a, b) = tokio::join!(run_once(&app.state), run_once(&app.state));
        assert_eq!(
            a.expect("pass").0 + b.expect("pass").0,
            1,
            "{engine:?}: two passes at once queue one reminder"
        );
        let first = wait_for_reply(&app, &msg.ts, "Reminder 1 of 2").await;
        assert!(
            first.contains(&format!("<@{APPROVER}>")) && first.contains("10 minutes"),
            "{engine:?}: names the approvers and the wait: {first}"
        );
        assert_eq!(
            run_once(&app.state).await.expect("pass").0,
            0,
            "{engine:?}: once per interval"
        );

        clock.advance_ms(10 * MIN);
        assert_eq!(run_once(&app.state).await.expect("pass").0, 1, "{engine:?}");
        wait_for_reply(&app, &msg.ts, "Reminder 2 of 2").await;
        clock.advance_ms(10 * MIN);
        assert_eq!(
            run_once(&app.state).await.expect("pass").0,
            0,
            "{engine:?}: at most 2"
        );

        // A second judgment decided before its first interval gets no reminder afterwards.
        let (_, msg2) = start_judgment_second(&app).await;
        clock.advance_ms(9 * MIN);
        click(&app, &app, APPROVER, "approvals:approve", &msg2, None).await;
        wait_for_state(&app, EXEC2, "approved").await;
        clock.advance_ms(20 * MIN);
        assert_eq!(run_once(&app.state).await.expect("pass").0, 0, "{engine:?}");
        assert!(
            replies(&app, CHANNEL, &msg2.ts)
                .iter()
                .all(|m| !m.text.contains("Reminder")),
            "{engine:?}: no reminder after the end"
        );
        let reminders = replies(&app, CHANNEL, &msg.ts)
            .iter()
            .filter(|m| m.text.contains("Reminder"))
            .count();
        assert_eq!(reminders, 2, "{engine:?}");
        app.stop().await;
    }
}

async fn start_judgment_second(
    app: &TestApp,
) -> (serde_json::Value, crate::support::fake_slack::Message) {
    let exec = crate::approvals_support::add_mj(&app.gate, EXEC2, STAGE);
    let r = app
        .echo(&crate::approvals_support::stage_event(
            "orca:stage:starting",
            &exec,
            STAGE,
        ))
        .await;
    assert_eq!(r.status(), 200);
    let msg = eventually(WAIT, "the second judgment's message", || async {
        top_level(app, CHANNEL)
            .into_iter()
            .find(|m| m.blocks.to_string().contains(EXEC2))
    })
    .await;
    (exec, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_with_leave_removes_the_buttons_links_to_deck_once_and_audits() {
    for db in TestDb::all("approvals_timers::expiry_leave").await {
        let engine = db.engine;
        let (app, clock) = timers_app(db, 22, |s| s.approvals.expire_after_mins = 20).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;

        clock.advance_ms(19 * MIN);
        assert_eq!(
            run_once(&app.state).await.expect("pass").1,
            0,
            "{engine:?}: not yet"
        );
        clock.advance_ms(3 * MIN);
        let (a, b) = tokio::join!(run_once(&app.state), run_once(&app.state));
        assert_eq!(
            a.expect("pass").1 + b.expect("pass").1,
            1,
            "{engine:?}: once"
        );

        let m =
            wait_for_settled_message(&app, CHANNEL, &msg.ts, "Expired in Slack after 22 minutes")
                .await;
        assert!(
            m.blocks.to_string().contains("Judge it in Deck"),
            "{engine:?}: links to Deck"
        );
        wait_for_reply(&app, &msg.ts, "Expired in Slack").await;
        let j = wait_for_state(&app, EXEC, "expired").await;
        assert!(
            audit_outcomes(&j).contains(&("slackops".into(), "expire".into(), "expired".into())),
            "{engine:?}: audited: {:?}",
            audit_outcomes(&j)
        );
        let (_, _, url) = click(&app, &app, APPROVER, "approvals:approve", &msg, None).await;
        assert!(
            wait_for_ephemeral(&app, &url)
                .await
                .contains("already closed")
        );
        assert_eq!(
            app.gate.patch_count(),
            0,
            "{engine:?}: Spinnaker keeps waiting"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_with_reject_sends_one_stop_and_records_it_as_expired() {
    for db in TestDb::all("approvals_timers::expiry_reject").await {
        let engine = db.engine;
        let (app, clock) = timers_app(db, 31, |s| {
            s.approvals.expire_after_mins = 30;
            s.approvals.on_expiry = OnExpiry::Reject;
        })
        .await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        clock.advance_ms(31 * MIN);
        assert_eq!(run_once(&app.state).await.expect("pass").1, 1, "{engine:?}");

        let j = wait_for_state(&app, EXEC, "expired").await;
        assert_eq!(j["decision"], "stop", "{engine:?}");
        wait_for_settled_message(&app, CHANNEL, &msg.ts, "slackops rejected it").await;
        wait_for_reply(&app, &msg.ts, "Expired after 31 minutes").await;
        let patches = app.gate.patches();
        assert_eq!(patches.len(), 1, "{engine:?}: one PATCH: {patches:#?}");
        assert_eq!(patches[0].body["judgmentStatus"], "stop");
        assert_eq!(app.gate.stage(EXEC, STAGE)["status"], "TERMINAL");
        assert_eq!(run_once(&app.state).await.expect("pass").1, 0, "{engine:?}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_racing_the_expiry_gives_exactly_one_outcome() {
    for db in TestDb::all("approvals_timers::click_races_expiry").await {
        let engine = db.engine;
        let (app, clock) = timers_app(db, 21, |s| s.approvals.expire_after_mins = 20).await;
        let (_, msg) = start_judgment(&app, EXEC, STAGE).await;
        clock.advance_ms(21 * MIN);

        let (clicked, pass) = tokio::join!(
            click(&app, &app, APPROVER, "approvals:approve", &msg, None),
            run_once(&app.state)
        );
        let expired = pass.expect("pass").1;
        assert_eq!(clicked.0, 200);
        if expired == 1 {
            let j = wait_for_state(&app, EXEC, "expired").await;
            assert_eq!(j["approvals"], 0, "{engine:?}: the click counted nothing");
            assert!(
                wait_for_ephemeral(&app, &clicked.2)
                    .await
                    .contains("closed")
            );
            assert_eq!(app.gate.patch_count(), 0, "{engine:?}");
        } else {
            wait_for_state(&app, EXEC, "approved").await;
            assert_eq!(app.gate.patch_count(), 1, "{engine:?}: the click won");
            assert_eq!(run_once(&app.state).await.expect("pass").1, 0);
        }
        let j = judgment_of(&app, EXEC).await.expect("j");
        assert!(
            j["state"] == "expired" || j["state"] == "approved",
            "{engine:?}: {j:#}"
        );
        app.stop().await;
    }
}
