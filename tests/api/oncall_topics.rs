//! Channel topics (issue 15): `topic_channels` start with "On call: …", the rest of the topic is
//! kept (shortened past Slack's 250 characters, never refused), Slack is read and written only when
//! the on-call part changes, and a channel slackops cannot write to is reported without stopping
//! the sync. Through the real service against fake PagerDuty and fake Slack
//! (`conversations.info`, `conversations.setTopic`, reference/slack.md §3), on an injected clock.

use slackops::clock::ManualClock;
use slackops::oncall::sync::{Outcome, render};

use crate::helpers::TestDb;
use crate::oncall::{GROUP, HANDLE, HOUR, plan, run, settled, spawn};
use crate::support::fake_oncall::PdOncall;
use crate::support::fake_slack::Fault;

const TOPIC: &str = "C0TOPIC";

fn t(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_topic_starts_with_who_is_on_call_keeps_the_rest_and_is_written_only_on_change() {
    for db in TestDb::all("oncall_topics::written_only_on_change").await {
        let h = t("2026-11-09T17:00:00Z");
        let clock = ManualClock::at_secs((h - 8 * HOUR) / 1000);
        let (app, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.groups[0].topic_channels = vec![TOPIC.into()];
        })
        .await;
        app.slack.add_channel(TOPIC, "platform");
        app.slack
            .set_topic(TOPIC, "Deploys: #deploys | runbook: go/platform");
        oncall.pd_add(PdOncall::scheduled(
            "PBOB",
            "bob@example.com",
            "PSCHED1",
            h - 10 * HOUR,
            h,
        ));
        oncall.pd_add(PdOncall::scheduled(
            "PCAROL",
            "carol@example.com",
            "PSCHED1",
            h,
            h + 10 * HOUR,
        ));
        run(&app, false).await;
        assert_eq!(
            app.slack.topic(TOPIC),
            "On call: <@U0BOB> (until 17:00 UTC) | Deploys: #deploys | runbook: go/platform"
        );
        assert_eq!(app.slack.call_count("conversations.setTopic"), 1);
        // Nothing changed: Slack is neither read nor written.
        let r = run(&app, false).await;
        assert_eq!(plan(&r, HANDLE).topics[0].outcome, "unchanged");
        assert_eq!(app.slack.call_count("conversations.info"), 1);
        assert_eq!(app.slack.call_count("conversations.setTopic"), 1);
        // Someone edits the rest; the handoff rewrites only the on-call part.
        app.slack.set_topic(
            TOPIC,
            "On call: <@U0BOB> (until 17:00 UTC) | Deploys paused",
        );
        settled(&app).await;
        clock.set_ms(h);
        run(&app, false).await;
        assert_eq!(
            app.slack.topic(TOPIC),
            "On call: <@U0CAROL> (until 03:00 UTC) | Deploys paused"
        );
        assert_eq!(app.slack.call_count("conversations.setTopic"), 2);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_topic_is_shortened_to_250_characters_not_refused() {
    let h = t("2026-11-09T17:00:00Z");
    let clock = ManualClock::at_secs((h - HOUR) / 1000);
    let (app, oncall) = spawn(TestDb::sqlite(), Some(clock), |s| {
        s.oncall.groups[0].topic_channels = vec![TOPIC.into()];
    })
    .await;
    app.slack.add_channel(TOPIC, "platform");
    let rest = format!("Read first: {}", "x".repeat(300));
    app.slack.set_topic(TOPIC, &rest);
    oncall.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        h - HOUR,
        h,
    ));
    let r = run(&app, false).await;
    assert_eq!(plan(&r, HANDLE).topics[0].outcome, "written");
    let topic = app.slack.topic(TOPIC);
    assert_eq!(topic.chars().count(), 250, "{topic}");
    assert!(
        topic.starts_with("On call: <@U0BOB> (until 17:00 UTC) | Read first: xxx"),
        "{topic}"
    );
    assert!(topic.ends_with('…'), "{topic}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_slackops_cannot_write_to_is_reported_and_never_stops_the_sync() {
    let h = t("2026-11-09T17:00:00Z");
    let clock = ManualClock::at_secs((h - HOUR) / 1000);
    let (app, oncall) = spawn(TestDb::sqlite(), Some(clock), |s| {
        s.oncall.groups[0].topic_channels =
            vec!["C0NOSCOPE".into(), "C0NOTIN".into(), TOPIC.into()];
    })
    .await;
    app.slack.add_channel_not_member("C0NOTIN", "elsewhere");
    app.slack.add_channel("C0NOSCOPE", "scoped");
    app.slack.add_channel(TOPIC, "platform");
    // An app installed before `channels:write.topic` was added to the manifest.
    app.slack
        .fail_next("conversations.setTopic", Fault::error("missing_scope"), 1);
    oncall.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        h - HOUR,
        h,
    ));
    let r = run(&app, false).await;
    let p = plan(&r, HANDLE);
    assert_eq!(p.outcome, Outcome::Updated, "{p:?}");
    assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
    let errors: Vec<(&str, Option<&str>)> = p
        .topics
        .iter()
        .map(|t| (t.channel.as_str(), t.error.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            ("C0NOSCOPE", Some("missing_scope")),
            ("C0NOTIN", Some("not_in_channel")),
            (TOPIC, None)
        ]
    );
    assert_eq!(
        app.slack.topic(TOPIC),
        "On call: <@U0BOB> (until 17:00 UTC)"
    );
    let out = render(&r);
    assert!(
        out.contains("topic of C0NOTIN: cannot write (not_in_channel)"),
        "{out}"
    );
    // Tried again next run (nothing was recorded for them); the written one is left alone.
    let r = run(&app, false).await;
    let outcomes: Vec<&str> = plan(&r, HANDLE).topics.iter().map(|t| t.outcome).collect();
    assert_eq!(outcomes, ["written", "failed", "unchanged"]);
    app.stop().await;
}
