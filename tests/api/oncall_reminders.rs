//! Shift reminders and handoff notes (issue 15), through the real service against the fake
//! PagerDuty and fake Slack: one DM per shift `oncall.remind_before_shift_mins` ahead (not
//! before), in the person's Slack time zone, naming the group and whom they take over from; no
//! second DM across a restart or with two replicas on one database; a moved shift reminded again;
//! a cancelled one never; nothing when the setting is off. The "Hand over" button on the
//! shift-change notice: modal, note posted in the notice's thread and DMed to whoever comes on,
//! once even on a double submit; an empty note is a field error; a stranger is refused.

use std::time::Duration;

use serde_json::{Value, json};
use slackops::clock::ManualClock;
use slackops::oncall::schedule;
use slackops::oncall::sync::{SyncOptions, sync};

use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::oncall::{HANDLE, HOUR, NOTICES, count, run, spawn, spawn_prepared};
use crate::support::fake_oncall::{FakeOncall, PdOncall};

const MIN: i64 = 60_000;
const BERLIN: &str = "Europe/Berlin";

fn t(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// Bob until `h`, carol from `h` for 8 hours.
fn handoff_at(oncall: &FakeOncall, h: i64) {
    oncall.pd_clear();
    oncall.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        h - 8 * HOUR,
        h,
    ));
    oncall.pd_add(PdOncall::scheduled(
        "PCAROL",
        "carol@example.com",
        "PSCHED1",
        h,
        h + 8 * HOUR,
    ));
}

async fn due_run(app: &TestApp) {
    sync(
        &app.state,
        &SyncOptions {
            actor: "test".into(),
            due_only: true,
            ..Default::default()
        },
    )
    .await
    .expect("sync runs");
}

/// A full sync, waiting for the lease when the periodic tasks hold it.
async fn run_when_free(app: &TestApp) {
    let opts = SyncOptions {
        actor: "test".into(),
        ..Default::default()
    };
    eventually(Duration::from_secs(10), "the sync lease", || async {
        sync(&app.state, &opts).await.ok().map(|_| ())
    })
    .await;
}

/// The DMs `user` received.
fn dms(app: &TestApp, user: &str) -> Vec<String> {
    app.slack
        .dm_channel_of(user)
        .map(|c| {
            app.slack
                .messages_in(&c)
                .into_iter()
                .map(|m| m.text)
                .collect()
        })
        .unwrap_or_default()
}

async fn dms_become(app: &TestApp, user: &str, n: usize, what: &str) -> Vec<String> {
    eventually(Duration::from_secs(10), what, || async {
        let d = dms(app, user);
        (d.len() >= n).then_some(d)
    })
    .await
}

fn reminders(texts: &[String]) -> Vec<&String> {
    texts
        .iter()
        .filter(|t| t.contains(":alarm_clock:"))
        .collect()
}

/// A second process on the same database and fake Slack as `first`.
async fn replica(first: &TestApp, clock: &ManualClock, periodic: bool) -> TestApp {
    let (url, slack_url, settings) = (
        first.settings.database.url.clone(),
        first.slack.api_url(),
        first.settings.oncall.clone(),
    );
    let mut b = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(move |s| {
            s.oncall = settings;
            s.database.url = url;
            s.slack.api_url = slack_url.parse().unwrap();
        })
        .clock(std::sync::Arc::new(clock.clone()));
    if periodic {
        b = b.with_periodic();
    }
    b.spawn().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shift_is_reminded_once_at_its_time_in_the_persons_time_zone_even_across_a_restart() {
    for db in TestDb::all("oncall_reminders::once_per_shift").await {
        let h = t("2026-11-09T09:00:00Z");
        // The providers are read an hour plus the reminder's hour ahead: carol's shift is seen.
        let clock = ManualClock::at_secs((h - 90 * MIN) / 1000);
        let (mut first, oncall) = spawn_prepared(
            db,
            Some(clock.clone()),
            true,
            |s| {
                s.oncall.interval_secs = 300;
                s.oncall.remind_before_shift_mins = 60;
            },
            |oncall| handoff_at(oncall, h),
        )
        .await;
        first
            .slack
            .add_user("U0CAROL", "carol", "carol@example.com", BERLIN);
        // The start-up read schedules a read of the group at the reminder's moment.
        eventually(
            Duration::from_secs(10),
            "the reminder scheduled",
            || async {
                (schedule::recorded(&first.state, HANDLE).await.ok()? == Some(h - 60 * MIN))
                    .then_some(())
            },
        )
        .await;

        // A minute early: nothing.
        first.settle_jobs().await;
        clock.set_ms(h - 61 * MIN);
        tokio::time::sleep(schedule::TICK * 2).await;
        first.settle_jobs().await;
        assert!(reminders(&dms(&first, "U0CAROL")).is_empty());

        // At the moment: the handoff task reads the group and carol is reminded, in Berlin time.
        clock.set_ms(h - 60 * MIN);
        let got = dms_become(&first, "U0CAROL", 1, "carol's reminder").await;
        assert_eq!(
            got,
            [
                ":alarm_clock: Your on-call shift for *@platform-oncall* is coming up: \
                 Mon 9 Nov 10:00–18:00 (Europe/Berlin). You take over from <@U0BOB>."
            ]
        );
        assert!(
            reminders(&dms(&first, "U0BOB")).is_empty(),
            "bob's shift is running"
        );
        // Then the schedule moves on to the handoff itself.
        eventually(Duration::from_secs(5), "the handoff scheduled", || async {
            (schedule::recorded(&first.state, HANDLE).await.ok()? == Some(h)).then_some(())
        })
        .await;

        // More reads of the same shift (the interval's) remind nobody again.
        first.settle_jobs().await;
        clock.set_ms(h - 50 * MIN);
        run_when_free(&first).await;
        first.settle_jobs().await;
        first.shutdown().await;

        // A new process on the same database reads every group at start: still one reminder.
        let reads = oncall.calls("pagerduty").len();
        clock.set_ms(h - 40 * MIN);
        let second = replica(&first, &clock, true).await;
        eventually(Duration::from_secs(10), "the start-up read", || async {
            (oncall.calls("pagerduty").len() > reads).then_some(())
        })
        .await;
        second.settle_jobs().await;
        run_when_free(&second).await;
        second.settle_jobs().await;
        assert_eq!(reminders(&dms(&first, "U0CAROL")).len(), 1);
        second.stop().await;
        first.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_database_remind_a_shift_once() {
    for db in TestDb::all("oncall_reminders::two_replicas").await {
        let h = t("2026-11-09T09:00:00Z");
        let clock = ManualClock::at_secs((h - 2 * HOUR) / 1000);
        let (first, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.remind_before_shift_mins = 30;
        })
        .await;
        handoff_at(&oncall, h);
        run(&first, false).await;
        first.settle_jobs().await;
        let second = replica(&first, &clock, false).await;
        clock.set_ms(h - 30 * MIN);
        let opts = SyncOptions {
            actor: "test".into(),
            ..Default::default()
        };
        // Together (one of them may find the lease held), then one after the other.
        let _ = tokio::join!(sync(&first.state, &opts), sync(&second.state, &opts));
        let _ = sync(&second.state, &opts).await;
        let _ = sync(&first.state, &opts).await;
        dms_become(&first, "U0CAROL", 1, "carol's reminder").await;
        first.settle_jobs().await;
        second.settle_jobs().await;
        assert_eq!(reminders(&dms(&first, "U0CAROL")).len(), 1);
        assert_eq!(
            count(
                &first,
                "SELECT COUNT(*) FROM jobs WHERE kind = 'oncall.remind'"
            )
            .await,
            1
        );
        second.stop().await;
        first.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moved_shift_is_reminded_again_at_its_new_time() {
    for db in TestDb::all("oncall_reminders::moved").await {
        let h = t("2026-11-09T09:00:00Z");
        let clock = ManualClock::at_secs((h - 2 * HOUR) / 1000);
        let (app, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.remind_before_shift_mins = 60;
        })
        .await;
        app.slack
            .add_user("U0CAROL", "carol", "carol@example.com", BERLIN);
        handoff_at(&oncall, h);
        run(&app, false).await;
        assert_eq!(
            schedule::recorded(&app.state, HANDLE).await.unwrap(),
            Some(h - 60 * MIN)
        );
        app.settle_jobs().await;
        clock.set_ms(h - 60 * MIN);
        due_run(&app).await;
        dms_become(&app, "U0CAROL", 1, "the first reminder").await;

        // An override: bob stays two hours longer, carol starts at 11:00 UTC. The next read (at
        // what was the handoff) sees it.
        let later = h + 2 * HOUR;
        handoff_at(&oncall, later);
        app.settle_jobs().await;
        clock.set_ms(h + 10 * MIN);
        run(&app, false).await;
        assert_eq!(
            schedule::recorded(&app.state, HANDLE).await.unwrap(),
            Some(later - 60 * MIN)
        );
        app.settle_jobs().await;
        clock.set_ms(later - 61 * MIN);
        due_run(&app).await;
        app.settle_jobs().await;
        assert_eq!(dms(&app, "U0CAROL").len(), 1, "not before its new time");
        clock.set_ms(later - 60 * MIN);
        due_run(&app).await;
        let got = dms_become(&app, "U0CAROL", 2, "the reminder at the new time").await;
        assert!(
            got[1].contains("Mon 9 Nov 12:00–20:00 (Europe/Berlin)"),
            "{got:?}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_shift_is_never_reminded() {
    for db in TestDb::all("oncall_reminders::cancelled").await {
        let h = t("2026-11-09T09:00:00Z");
        let clock = ManualClock::at_secs((h - 2 * HOUR) / 1000);
        let (app, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.remind_before_shift_mins = 60;
        })
        .await;
        handoff_at(&oncall, h);
        run(&app, false).await;
        assert_eq!(
            schedule::recorded(&app.state, HANDLE).await.unwrap(),
            Some(h - 60 * MIN)
        );
        // Carol's shift is cancelled: bob covers the day.
        oncall.pd_clear();
        oncall.pd_add(PdOncall::scheduled(
            "PBOB",
            "bob@example.com",
            "PSCHED1",
            h - 8 * HOUR,
            h + 8 * HOUR,
        ));
        app.settle_jobs().await;
        // The read at the reminder's moment no longer sees the shift.
        clock.set_ms(h - 60 * MIN);
        due_run(&app).await;
        app.settle_jobs().await;
        clock.set_ms(h - 10 * MIN);
        run(&app, false).await;
        app.settle_jobs().await;
        assert!(dms(&app, "U0CAROL").is_empty());
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM jobs WHERE kind = 'oncall.remind'"
            )
            .await,
            0
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reminder_queued_before_its_shift_was_cancelled_is_not_sent() {
    let h = t("2026-11-09T09:00:00Z");
    let clock = ManualClock::at_secs((h - 2 * HOUR) / 1000);
    let (app, oncall) = spawn(TestDb::sqlite(), Some(clock.clone()), |s| {
        s.oncall.remind_before_shift_mins = 60;
    })
    .await;
    handoff_at(&oncall, h);
    // Slack fails for a while: the reminder waits in the queue for its retry.
    app.slack.fail_next(
        "conversations.open",
        crate::support::fake_slack::Fault::ServerError(500),
        50,
    );
    clock.set_ms(h - 60 * MIN);
    run(&app, false).await;
    eventually(Duration::from_secs(20), "a failed attempt", || async {
        (count(
            &app,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'oncall.remind' AND state = 'pending' AND attempts >= 1",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    // Cancelled before the retry.
    oncall.pd_clear();
    oncall.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        h - 8 * HOUR,
        h + 8 * HOUR,
    ));
    run(&app, false).await;
    app.slack.clear_faults();
    clock.set_ms(h - 30 * MIN);
    app.settle_jobs().await;
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'oncall.remind' AND state = 'done'"
        )
        .await,
        1,
        "the retry ran and dropped the reminder"
    );
    assert!(dms(&app, "U0CAROL").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_reminders_off_nothing_is_sent_or_recorded() {
    let h = t("2026-11-09T09:00:00Z");
    let clock = ManualClock::at_secs((h - 2 * HOUR) / 1000);
    let (app, oncall) = spawn(TestDb::sqlite(), Some(clock.clone()), |_| {}).await;
    handoff_at(&oncall, h);
    run(&app, false).await;
    assert_eq!(
        schedule::recorded(&app.state, HANDLE).await.unwrap(),
        Some(h)
    );
    app.settle_jobs().await;
    clock.set_ms(h - 30 * MIN);
    run(&app, false).await;
    app.settle_jobs().await;
    assert!(dms(&app, "U0CAROL").is_empty());
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM oncall_shift_reminders").await,
        0
    );
    app.stop().await;
}

// ------------------------------------------------------------------------- handoff notes

async fn post(app: &TestApp, payload: &Value) -> Value {
    let resp = app.interaction(payload).await;
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.expect("body");
    if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).expect("JSON ack")
    }
}

/// The button clicked by `user`: the ack and the click's response_url.
async fn click(app: &TestApp, user: &str, value: &str, ts: &str) -> (Value, String) {
    let response_url = app.slack.response_url_for_message(NOTICES, ts);
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": app.slack.trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": NOTICES},
        "channel": {"id": NOTICES, "name": "platform-oncall"},
        "message": {"ts": ts, "type": "message"},
        "response_url": response_url,
        "actions": [{"action_id": "oncall:handover", "block_id": "handover", "type": "button",
                     "value": value, "action_ts": crate::helpers::action_ts()}]
    });
    (post(app, &payload).await, response_url)
}

fn submission(user: &str, view: &Value, note: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "view": {
            "id": view["id"], "team_id": "T0FAKE", "type": "modal",
            "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
            "hash": view["hash"], "root_view_id": view["id"], "previous_view_id": null,
            "state": {"values": {"note": {"value": {"type": "plain_text_input", "value": note}}}}
        },
        "response_urls": []
    })
}

/// Alice (in the group before) hands over to bob: the notice of the first sync and its button.
async fn handed_over_notice(app: &TestApp, oncall: &FakeOncall) -> (String, String) {
    let now = crate::oncall::now();
    oncall.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        now - HOUR,
        now + HOUR,
    ));
    run(app, false).await;
    let notices = app
        .slack
        .wait_for_messages(NOTICES, 1, Duration::from_secs(10))
        .await;
    let notice = &notices[0];
    assert!(
        notice.text.contains("<@U0BOB> is now on call"),
        "{}",
        notice.text
    );
    let button = &notice.blocks[1]["elements"][0];
    assert_eq!(button["action_id"], "oncall:handover");
    assert_eq!(button["text"]["text"], "Hand over");
    (
        notice.ts.clone(),
        button["value"].as_str().unwrap().to_string(),
    )
}

fn handover_view(app: &TestApp) -> Value {
    app.slack
        .views()
        .into_iter()
        .rev()
        .find(|v| v.view["callback_id"] == "oncall:handover")
        .expect("the handover modal was opened")
        .view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_person_going_off_call_hands_over_with_a_note_posted_once() {
    for db in TestDb::all("oncall_reminders::handover").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        let (ts, value) = handed_over_notice(&app, &oncall).await;

        let (ack, _) = click(&app, "U0ALICE", &value, &ts).await;
        assert!(ack.is_null(), "{ack}");
        let view = handover_view(&app);
        assert_eq!(view["blocks"][1]["block_id"], "note");
        assert_eq!(view["blocks"][1]["element"]["multiline"], true);

        // Nothing but spaces: a field error, nothing posted.
        let ack = post(&app, &submission("U0ALICE", &view, "  \n ")).await;
        assert_eq!(ack["response_action"], "errors", "{ack}");
        assert!(ack["errors"]["note"].as_str().is_some(), "{ack}");

        // The note, submitted twice (a double press).
        let note = "db-3 disk at 85% <!channel>\nwatch the *billing* cron & backups";
        let a = post(&app, &submission("U0ALICE", &view, note)).await;
        assert!(a.is_null(), "{a}");
        let _ = post(&app, &submission("U0ALICE", &view, note)).await;
        let dm = dms_become(&app, "U0BOB", 2, "bob's DMs").await;
        app.settle_jobs().await;

        let thread: Vec<_> = app
            .slack
            .messages_in(NOTICES)
            .into_iter()
            .filter(|m| m.thread_ts.as_deref() == Some(ts.as_str()))
            .collect();
        assert_eq!(thread.len(), 1, "{thread:?}");
        assert_eq!(
            thread[0].text,
            ":memo: Handover note from <@U0ALICE> for *@platform-oncall*:\n\
             >db-3 disk at 85% &lt;!channel&gt;\n>watch the *billing* cron &amp; backups"
        );
        // Bob's DMs: the on-call DM of the change, then the note, once.
        let notes: Vec<_> = dms(&app, "U0BOB")
            .into_iter()
            .filter(|t| t.contains(":memo:"))
            .collect();
        assert_eq!(notes.len(), 1, "{dm:?}");
        assert!(
            notes[0].starts_with(":memo: <@U0ALICE> handed *@platform-oncall* over to you"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("&lt;!channel&gt;"), "{}", notes[0]);
        assert!(dms(&app, "U0ALICE").is_empty(), "the writer gets no copy");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_person_going_off_call_can_hand_over() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |_| {}).await;
    let (ts, value) = handed_over_notice(&app, &oncall).await;
    let views = app.slack.views().len();
    // Carol was not on call; bob is coming on, not going off.
    for who in ["U0CAROL", "U0BOB"] {
        let (ack, url) = click(&app, who, &value, &ts).await;
        assert!(ack.is_null(), "{ack}");
        let reply = &app
            .slack
            .wait_for_response_url_posts(&url, 1, Duration::from_secs(5))
            .await[0]
            .body;
        let text = reply["text"].as_str().unwrap_or_else(|| panic!("{reply}"));
        assert!(
            text.starts_with("Only the person going off call (<@U0ALICE>) can hand over"),
            "{text}"
        );
        assert_eq!(reply["response_type"], "ephemeral");
    }
    assert_eq!(app.slack.views().len(), views, "no modal for them");

    // A forged submission from someone else is refused too.
    click(&app, "U0ALICE", &value, &ts).await;
    let view = handover_view(&app);
    let ack = post(&app, &submission("U0CAROL", &view, "not mine to write")).await;
    assert_eq!(ack["response_action"], "update", "{ack}");
    app.settle_jobs().await;
    assert!(
        app.slack
            .messages_in(NOTICES)
            .iter()
            .all(|m| m.thread_ts.is_none()),
        "nothing posted"
    );
    app.stop().await;
}
