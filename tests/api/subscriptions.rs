//! Channel subscriptions, black-box: `/announce subscribe [systems…]`, `unsubscribe` and
//! `subscriptions` from a channel, and the notices subscribed channels get for public outage and
//! maintenance changes — against the fake Slack (public channels joined with
//! `conversations.join`, private ones invisible to a bot not in them, reference/slack.md §3), on
//! SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use slackops::clock::{Clock, ManualClock};

use crate::announcements::{api, api_body, builder, workspace};
use crate::helpers::{API_TOKEN, TestApp, TestDb, eventually};
use crate::support::fake_slack::{Fault, Message};

const ALICE: &str = "U0ALICE";
const SEARCH_WATCH: &str = "C0SWATCH";
const PAY_WATCH: &str = "C0PWATCH";
const ALL_WATCH: &str = "C0AWATCH";
const WAIT: Duration = Duration::from_secs(10);

/// A signed `/announce <text>` from `user` in `channel`; the ack's body and the command's
/// response_url.
async fn command_in(
    app: &TestApp,
    channel: &str,
    channel_name: &str,
    text: &str,
    user: &str,
) -> (Value, String) {
    let response_url = app.slack.response_url_for_channel(channel);
    let trigger_id = app.slack.trigger_id();
    let body = serde_urlencoded::to_string([
        ("token", "legacy-verification-token"),
        ("team_id", "T0TEAM"),
        ("team_domain", "example"),
        ("channel_id", channel),
        ("channel_name", channel_name),
        ("user_id", user),
        ("user_name", user),
        ("command", "/announce"),
        ("text", text),
        ("api_app_id", "A0APP"),
        ("response_url", response_url.as_str()),
        ("trigger_id", trigger_id.as_str()),
    ])
    .expect("form");
    let r = app
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v = r.json().await.unwrap_or(Value::Null);
    (v, response_url)
}

/// Subscribe `channel` and wait for the confirmation slackops posts in it.
async fn subscribe(app: &TestApp, channel: &str, text: &str) {
    let before = app.slack.messages_in(channel).len();
    let (ack, _) = command_in(app, channel, "watch", text, ALICE).await;
    assert!(
        ack["text"].as_str().unwrap_or("").contains("Subscribing"),
        "{ack}"
    );
    app.slack.wait_for_messages(channel, before + 1, WAIT).await;
    eventually(WAIT, "the subscription to be saved", || async {
        subscribed(app, channel).await.then_some(())
    })
    .await;
}

async fn subscribed(app: &TestApp, channel: &str) -> bool {
    slackops::notifiers::channels::get(app.state.db().pool(), channel)
        .await
        .unwrap()
        .is_some()
}

/// The notices in `channel` (slackops' confirmations left out).
fn notices(app: &TestApp, channel: &str) -> Vec<Message> {
    app.slack
        .messages_in(channel)
        .into_iter()
        .filter(|m| !m.text.starts_with(":bell:"))
        .collect()
}

fn maintenance_body(title: &str, start: i64, end: i64, public: bool) -> String {
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    json!({"title": title, "summary": "Expect <short> blips.", "systems": ["search"],
           "starts_at": rfc(start), "ends_at": rfc(end), "public": public})
    .to_string()
}

async fn create_maintenance(app: &TestApp, body: String) -> Value {
    let r = app
        .client
        .post(app.url("/api/v1/maintenances"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn subscribe_joins_a_public_channel_and_subscriptions_and_unsubscribe_answer() {
    for db in TestDb::all("subscribe_list_unsubscribe").await {
        let app = builder(db).await.spawn().await;
        workspace(&app);
        app.slack
            .add_channel_not_member(SEARCH_WATCH, "search-watch");

        subscribe(&app, SEARCH_WATCH, "subscribe search Payments").await;
        assert!(app.slack.is_bot_member(SEARCH_WATCH), "joined to post");
        let confirmation = &app.slack.messages_in(SEARCH_WATCH)[0];
        assert!(
            confirmation
                .text
                .contains("<@U0ALICE> subscribed this channel")
                && confirmation.text.contains("Search, Payments"),
            "{}",
            confirmation.text
        );
        let (list, _) =
            command_in(&app, SEARCH_WATCH, "search-watch", "subscriptions", ALICE).await;
        let list = list["text"].as_str().unwrap().to_string();
        assert!(
            list.contains("This channel gets") && list.contains("Search, Payments"),
            "{list}"
        );
        assert_eq!(list.matches("• <#C0SWATCH>").count(), 1, "{list}");

        // Subscribing again replaces the systems.
        subscribe(&app, SEARCH_WATCH, "subscribe").await;
        let (list, _) =
            command_in(&app, SEARCH_WATCH, "search-watch", "subscriptions", ALICE).await;
        let list = list["text"].as_str().unwrap().to_string();
        assert!(list.contains("for all systems"), "{list}");
        assert!(
            app.slack.messages_in(SEARCH_WATCH)[1]
                .text
                .contains("changed this channel's subscription"),
        );

        let (ack, _) = command_in(&app, SEARCH_WATCH, "search-watch", "unsubscribe", ALICE).await;
        assert!(
            ack["text"].as_str().unwrap().contains("is unsubscribed"),
            "{ack}"
        );
        assert!(!subscribed(&app, SEARCH_WATCH).await);
        let (ack, _) = command_in(&app, SEARCH_WATCH, "search-watch", "UNSUBSCRIBE", ALICE).await;
        assert!(
            ack["text"]
                .as_str()
                .unwrap()
                .contains("had no subscription"),
            "{ack}"
        );
        let (list, _) =
            command_in(&app, SEARCH_WATCH, "search-watch", "subscriptions", ALICE).await;
        let list = list["text"].as_str().unwrap().to_string();
        assert!(
            list.contains("no subscription") && list.contains("No channel is subscribed"),
            "{list}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_system_a_dm_or_a_private_channel_the_bot_is_not_in_is_refused_and_nothing_is_saved()
 {
    let app = builder(TestDb::sqlite()).await.spawn().await;
    workspace(&app);
    app.slack
        .add_channel_not_member(SEARCH_WATCH, "search-watch");
    app.slack.add_private_channel("C0SECRET", "secret", false);
    app.slack.add_private_channel("C0PRIV", "priv-ops", true);

    let (ack, _) = command_in(
        &app,
        SEARCH_WATCH,
        "search-watch",
        "subscribe search nope",
        ALICE,
    )
    .await;
    let text = ack["text"].as_str().unwrap();
    assert!(
        text.contains("Unknown system `nope`")
            && text.contains("`search` (Search), `payments` (Payments), `pay-api` (Pay API)")
            && text.contains("Nothing was changed"),
        "{text}"
    );
    for (channel, name) in [("D0DM", "directmessage"), ("C0MPIM", "mpdm-alice--bob-1")] {
        let (ack, _) = command_in(&app, channel, name, "subscribe", ALICE).await;
        assert!(
            ack["text"]
                .as_str()
                .unwrap()
                .contains("not direct messages")
                || ack["text"]
                    .as_str()
                    .unwrap()
                    .contains("not group direct messages"),
            "{ack}"
        );
    }

    // A private channel the bot is not in: Slack hides it; the answer says to invite the bot.
    let (ack, url) = command_in(&app, "C0SECRET", "privategroup", "subscribe", ALICE).await;
    assert!(ack["text"].as_str().unwrap().contains("Subscribing"));
    let posts = app.slack.wait_for_response_url_posts(&url, 1, WAIT).await;
    let answer = posts[0].body["text"].as_str().unwrap();
    assert!(answer.contains("/invite @slackops"), "{answer}");
    assert_eq!(posts[0].body["response_type"], "ephemeral");
    app.settle_jobs().await;
    assert!(!subscribed(&app, "C0SECRET").await);
    assert!(!subscribed(&app, SEARCH_WATCH).await);
    assert_eq!(
        app.slack.call_count("conversations.join"),
        1,
        "only C0SECRET's attempt"
    );
    assert!(!app.slack.is_bot_member(SEARCH_WATCH));

    // A private channel the bot was invited to: nothing to join, subscribed.
    subscribe(&app, "C0PRIV", "subscribe payments").await;
    app.stop().await;
}

#[tokio::test]
async fn outage_notices_reach_matching_subscribed_channels_once_per_change_and_only_when_public() {
    for db in TestDb::all("outage_notices_to_channels").await {
        let engine = db.engine;
        let app = builder(db)
            .await
            .settings(|s| {
                s.status.public_url = Some("https://status.example.com/".parse().unwrap());
            })
            .spawn()
            .await;
        workspace(&app);
        for (id, name) in [
            (SEARCH_WATCH, "search-watch"),
            (PAY_WATCH, "pay-watch"),
            (ALL_WATCH, "all-watch"),
        ] {
            app.slack.add_channel_not_member(id, name);
        }
        subscribe(&app, SEARCH_WATCH, "subscribe search").await;
        subscribe(&app, PAY_WATCH, "subscribe payments pay-api").await;
        subscribe(&app, ALL_WATCH, "subscribe").await;

        // Not public: subscribers never hear of it.
        let (status, hidden) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(status, 201, "{hidden}");
        let mut public = api_body("2h");
        public["public"] = json!(true);
        public["summary"] = json!("Search returns <nothing> & more");
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(public),
        )
        .await;
        assert_eq!(status, 201, "{o}");
        let path = format!("/api/v1/announcements/{}", o["id"].as_str().unwrap());
        for w in [SEARCH_WATCH, ALL_WATCH] {
            let n = eventually(WAIT, "the opening notice", || async {
                Some(notices(&app, w)).filter(|n| !n.is_empty())
            })
            .await;
            assert!(n[0].text.starts_with("Outage: Search"), "{}", n[0].text);
            let b = n[0].blocks.to_string();
            assert!(
                b.contains("Search returns &lt;nothing&gt; &amp; more"),
                "escaped: {b}"
            );
            assert!(b.contains("https://status.example.com/"), "{b}");
        }

        // An update, whose first attempt to post fails at Slack's edge, then the resolution.
        app.settle_jobs().await;
        app.slack
            .fail_next("chat.postMessage", Fault::ServerError(500), 4);
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"eta": "8h", "reason": "bigger than we thought"})),
        )
        .await;
        assert_eq!(status, 200);
        for w in [SEARCH_WATCH, ALL_WATCH] {
            eventually(WAIT, "the update notice", || async {
                (notices(&app, w).len() == 2).then_some(())
            })
            .await;
        }
        let (status, v) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"state": "resolved", "resolution": {"summary": "Index rebuilt"}})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        for w in [SEARCH_WATCH, ALL_WATCH] {
            eventually(WAIT, "the resolution notice", || async {
                (notices(&app, w).len() == 3).then_some(())
            })
            .await;
        }
        let n = notices(&app, SEARCH_WATCH);
        assert!(n[1].text.starts_with("Outage update"), "{}", n[1].text);
        assert!(n[2].text.starts_with("Outage resolved"), "{}", n[2].text);
        assert!(n[2].blocks.to_string().contains("Index rebuilt"));
        assert!(
            n[1].blocks.to_string().contains("https://fake.slack.com/"),
            "the announcement's permalink once it is posted: {}",
            n[1].blocks
        );

        // Unsubscribed: nothing more, though the outage changes again.
        command_in(&app, ALL_WATCH, "all-watch", "unsubscribe", ALICE).await;
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &path,
            Some(json!({"state": "open", "reason": "it came back"})),
        )
        .await;
        assert_eq!(status, 200);
        eventually(WAIT, "the reopening notice", || async {
            (notices(&app, SEARCH_WATCH).len() == 4).then_some(())
        })
        .await;
        app.settle_jobs().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            notices(&app, SEARCH_WATCH).len(),
            4,
            "{engine:?}: once per change"
        );
        assert_eq!(
            notices(&app, ALL_WATCH).len(),
            3,
            "{engine:?}: unsubscribed"
        );
        assert!(
            notices(&app, PAY_WATCH).is_empty(),
            "{engine:?}: not its systems"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn maintenance_notices_go_out_when_scheduled_started_and_ended_once_each() {
    for db in TestDb::all("maintenance_notices_to_channels").await {
        let engine = db.engine;
        let clock = ManualClock::at_secs(chrono::Utc::now().timestamp());
        let app = builder(db)
            .await
            .settings(|s| {
                s.maintenance.check_interval_secs = 1;
                // No announcements channel: only notices post, so the fault below hits one.
                s.announcements.channel = None;
            })
            .clock(Arc::new(clock.clone()))
            .with_periodic()
            .spawn()
            .await;
        workspace(&app);
        app.slack.add_channel(ALL_WATCH, "all-watch");
        subscribe(&app, ALL_WATCH, "subscribe search").await;

        let now = clock.now_ms();
        let (start, end) = (now + 10 * 60_000, now + 70 * 60_000);
        create_maintenance(&app, maintenance_body("Hidden work", start, end, false)).await;
        // The first attempt fails three times at Slack's edge (every try of the client), so the
        // job itself is retried: still one notice.
        app.slack
            .fail_next("chat.postMessage", Fault::ServerError(500), 3);
        create_maintenance(&app, maintenance_body("Index <rebuild>", start, end, true)).await;
        // The retry is due after the backoff on the injected clock: move it along meanwhile.
        eventually(WAIT, "the scheduled notice", || async {
            clock.advance_ms(100);
            (notices(&app, ALL_WATCH).len() == 1).then_some(())
        })
        .await;
        app.settle_jobs().await;
        clock.set_ms(start + 1000);
        eventually(WAIT, "the started notice", || async {
            (notices(&app, ALL_WATCH).len() == 2).then_some(())
        })
        .await;
        app.settle_jobs().await;
        clock.set_ms(end + 1000);
        eventually(WAIT, "the ended notice", || async {
            (notices(&app, ALL_WATCH).len() == 3).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let n = notices(&app, ALL_WATCH);
        assert_eq!(n.len(), 3, "{engine:?}: {n:?}");
        assert!(
            n[0].text.starts_with("Maintenance scheduled: Search"),
            "{}",
            n[0].text
        );
        assert!(n[0].blocks.to_string().contains("Index &lt;rebuild&gt;"));
        assert!(
            n[1].text.starts_with("Maintenance started"),
            "{}",
            n[1].text
        );
        assert!(n[2].text.starts_with("Maintenance ended"), "{}", n[2].text);
        let retried: i64 = sqlx::query_scalar(
            "SELECT MAX(attempts) FROM jobs WHERE kind = 'notifiers.channel_notice'",
        )
        .fetch_one(app.state.db().pool())
        .await
        .unwrap();
        assert_eq!(
            retried, 2,
            "{engine:?}: the scheduled notice took a second attempt"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_channel_that_was_archived_loses_its_subscription_instead_of_retrying() {
    let app = builder(TestDb::sqlite()).await.spawn().await;
    workspace(&app);
    app.slack.add_channel(SEARCH_WATCH, "search-watch");
    app.slack.add_channel(PAY_WATCH, "pay-watch");
    subscribe(&app, SEARCH_WATCH, "subscribe search").await;
    subscribe(&app, PAY_WATCH, "subscribe search").await;
    app.slack.archive_channel(SEARCH_WATCH);
    app.slack.set_bot_member(PAY_WATCH, false);
    app.slack.reset_calls();

    let mut public = api_body("2h");
    public["public"] = json!(true);
    let (status, _) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/announcements",
        Some(public),
    )
    .await;
    assert_eq!(status, 201);
    for w in [SEARCH_WATCH, PAY_WATCH] {
        eventually(WAIT, "the subscription to be dropped", || async {
            (!subscribed(&app, w).await).then_some(())
        })
        .await;
    }
    app.settle_jobs().await;
    let to = |c: &str| {
        app.slack
            .calls("chat.postMessage")
            .iter()
            .filter(|call| call.body["channel"] == c)
            .count()
    };
    assert_eq!(to(SEARCH_WATCH), 1, "is_archived: tried once, not retried");
    assert_eq!(to(PAY_WATCH), 1, "not_in_channel: tried once, not rejoined");
    assert_eq!(app.slack.call_count("conversations.join"), 0);
    let failed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = 'notifiers.channel_notice' AND state <> 'done'",
    )
    .fetch_one(app.state.db().pool())
    .await
    .unwrap();
    assert_eq!(failed, 0);
    app.stop().await;
}
