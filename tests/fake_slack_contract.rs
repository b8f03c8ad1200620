//! Pins the behaviour of the fake Slack (`tests/support/fake_slack.rs`) to the contract in
//! `/work/shared/reference/slack.md` §2.4, §3 and §4, quirks included, and checks that its
//! answers deserialise into slack-morphism's response models.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::fake_slack::{DEFAULT_TOKEN, FakeSlack, Fault, RESPONSE_URL_METHOD};

const CHAN: &str = "C0DEPLOYS";
const USER: &str = "U0ALICE";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

async fn fake() -> FakeSlack {
    let fake = FakeSlack::start().await;
    fake.add_channel(CHAN, "deploys");
    fake.add_user(USER, "alice", "alice@example.com", "Europe/Berlin");
    fake
}

/// JSON POST with the right bearer token; returns (status, body).
async fn post_json(fake: &FakeSlack, method: &str, body: Value) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

/// Form POST with the right bearer token.
async fn post_form(fake: &FakeSlack, method: &str, form: &[(&str, &str)]) -> Value {
    client()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .form(form)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json body")
}

async fn ok_json(fake: &FakeSlack, method: &str, body: Value) -> Value {
    let (status, v) = post_json(fake, method, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["ok"], json!(true), "{method} failed: {v}");
    v
}

async fn post_text(fake: &FakeSlack, text: &str) -> String {
    let v = ok_json(
        fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": text}),
    )
    .await;
    v["ts"].as_str().expect("ts").to_string()
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

// ------------------------------------------------------------------------------ auth

#[tokio::test]
async fn bearer_auth_is_required_and_json_body_token_is_ignored() {
    let fake = fake().await;
    let url = format!("{}/auth.test", fake.api_url());

    let none: Value = client()
        .post(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!({"ok": false, "error": "not_authed"}));

    let wrong = client()
        .post(&url)
        .bearer_auth("xoxb-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::OK, "auth errors are HTTP 200");
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_auth"
    );

    // Like real Slack, a token inside a JSON body does not authenticate.
    let in_body: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .json(&json!({"token": DEFAULT_TOKEN, "channel": CHAN, "text": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(in_body["error"], "not_authed");
    assert!(fake.messages_in(CHAN).is_empty());

    let ok = ok_json(&fake, "auth.test", json!({})).await;
    assert_eq!(ok["user_id"], "U0BOT");
    assert_eq!(ok["bot_id"], "B0FAKE");
    let typed: slack_morphism::api::SlackApiAuthTestResponse =
        serde_json::from_value(ok).expect("slack-morphism auth.test");
    assert_eq!(typed.team_id.0, "T0FAKE");

    let calls = fake.calls("chat.postMessage");
    assert_eq!(calls.len(), 1, "rejected calls are recorded too");
    assert!(!calls[0].headers_authorization_present);
    assert_eq!(calls[0].body["token"], DEFAULT_TOKEN);
    assert!(
        fake.calls("auth.test")
            .iter()
            .all(|c| c.method == "auth.test")
    );
    assert_eq!(fake.call_count("auth.test"), 3);
}

#[tokio::test]
async fn unknown_method_and_bad_bodies() {
    let fake = fake().await;
    let (_, v) = post_json(&fake, "chat.nope", json!({})).await;
    assert_eq!(v["error"], "unknown_method");
    assert_eq!(v["req_method"], "chat.nope");

    let bad_json: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad_json["error"], "invalid_json");

    let no_type: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .body("channel=C1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(no_type["error"], "missing_post_type");

    // JSON without charset → Slack's `missing_charset` warning; with charset → none.
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": "a"}),
    )
    .await;
    assert_eq!(v["warning"], "missing_charset");
    let v: Value = client()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"channel": CHAN, "text": "b"}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true);
    assert!(v.get("warning").is_none(), "{v}");
}

// ------------------------------------------------------------------------------ faults

#[tokio::test]
async fn rate_limit_fault_is_429_with_retry_after_then_recovers() {
    let fake = fake().await;
    fake.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        2,
    );
    for _ in 0..2 {
        let resp = client()
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .bearer_auth(DEFAULT_TOKEN)
            .json(&json!({"channel": CHAN, "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"ok": false, "error": "ratelimited"})
        );
    }
    post_text(&fake, "third time").await;
    assert_eq!(
        fake.messages_in(CHAN).len(),
        1,
        "faulted calls change nothing"
    );
    assert_eq!(fake.call_count("chat.postMessage"), 3);
}

#[tokio::test]
async fn server_error_business_error_and_delay_faults() {
    let fake = fake().await;
    fake.fail_next("users.info", Fault::ServerError(503), 1);
    fake.fail_next("users.info", Fault::ServerError(500), 1);
    fake.fail_next("users.info", Fault::error("fatal_error"), 1);
    fake.fail_next("users.info", Fault::Delay(Duration::from_millis(300)), 1);
    let call = || {
        client()
            .post(format!("{}/users.info", fake.api_url()))
            .bearer_auth(DEFAULT_TOKEN)
            .form(&[("user", USER)])
            .send()
    };

    let r = call().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text().await.unwrap().contains("<html>"),
        "edge errors are not JSON"
    );

    let r = call().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text().await.unwrap(), "");

    let r = call().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"ok": false, "error": "fatal_error"})
    );

    let started = Instant::now();
    let r: Value = call().await.unwrap().json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r["ok"], true, "a delayed call is still answered normally");
}

#[tokio::test]
async fn wildcard_faults_apply_to_any_method() {
    let fake = fake().await;
    fake.fail_next("*", Fault::error("service_unavailable"), 1);
    let (_, v) = post_json(&fake, "auth.test", json!({})).await;
    assert_eq!(v["error"], "service_unavailable");
    ok_json(&fake, "auth.test", json!({})).await;
}

// ------------------------------------------------------------------------------ chat.*

#[tokio::test]
async fn post_message_then_update_and_unknown_ts() {
    let fake = fake().await;
    let blocks = json!([section("*Deploy* waiting for approval")]);
    let v = ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": "fallback", "blocks": blocks}),
    )
    .await;
    let ts = v["ts"].as_str().unwrap().to_string();
    assert_eq!(ts, "1700000000.000100");
    assert_eq!(v["channel"], CHAN);
    assert_eq!(v["message"]["ts"], ts.as_str());
    assert_eq!(v["message"]["type"], "message");
    assert_eq!(v["message"]["bot_id"], "B0FAKE");
    assert_eq!(v["message"]["user"], "U0BOT");
    let typed: slack_morphism::api::SlackApiChatPostMessageResponse =
        serde_json::from_value(v).expect("slack-morphism chat.postMessage");
    assert_eq!(typed.ts.0, ts);

    // ts are monotonically increasing
    let ts2 = post_text(&fake, "second").await;
    assert!(ts2 > ts);

    let up = ok_json(
        &fake,
        "chat.update",
        json!({"channel": CHAN, "ts": ts, "text": "approved", "blocks": [section("Approved")]}),
    )
    .await;
    assert_eq!(up["ts"], ts.as_str());
    let _: slack_morphism::api::SlackApiChatUpdateResponse =
        serde_json::from_value(up).expect("slack-morphism chat.update");
    let m = fake.message(CHAN, &ts).unwrap();
    assert_eq!(m.text, "approved");
    assert_eq!(m.updated, 1);
    assert_eq!(m.blocks[0]["text"]["text"], "Approved");

    // Text-only update keeps the blocks (Slack keeps omitted fields).
    ok_json(
        &fake,
        "chat.update",
        json!({"channel": CHAN, "ts": ts, "text": "t2"}),
    )
    .await;
    assert_eq!(
        fake.message(CHAN, &ts).unwrap().blocks[0]["text"]["text"],
        "Approved"
    );

    let (_, v) = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHAN, "ts": "1700000999.000100", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "message_not_found");

    let human_ts = fake.insert_message(CHAN, USER, "hello");
    let (_, v) = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHAN, "ts": human_ts, "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "cant_update_message");
}

#[tokio::test]
async fn post_message_via_form_with_blocks_as_json_string() {
    let fake = fake().await;
    let blocks = json!([section("from a form")]).to_string();
    let v = post_form(
        &fake,
        "chat.postMessage",
        &[
            ("channel", CHAN),
            ("text", "t"),
            ("blocks", &blocks),
            ("thread_ts", "1700000000.000100"),
        ],
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    let m = &fake.messages_in(CHAN)[0];
    assert_eq!(m.blocks[0]["text"]["text"], "from a form");
    assert_eq!(m.thread_ts.as_deref(), Some("1700000000.000100"));
    let call = &fake.calls("chat.postMessage")[0];
    assert_eq!(
        call.body["channel"], CHAN,
        "form bodies are recorded as objects of strings"
    );
    assert!(call.headers_authorization_present);

    let v = post_form(
        &fake,
        "chat.postMessage",
        &[("channel", CHAN), ("blocks", "[oops")],
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks_format");
}

#[tokio::test]
async fn channel_errors_membership_and_join() {
    let fake = fake().await;
    fake.add_channel_not_member("C0OUTSIDE", "outside");
    fake.add_channel("C0OLD", "old");
    fake.archive_channel("C0OLD");

    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "C0NOPE", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "channel_not_found");
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "C0OLD", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "is_archived");
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "C0OUTSIDE", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "not_in_channel");

    let joined = ok_json(&fake, "conversations.join", json!({"channel": "C0OUTSIDE"})).await;
    assert_eq!(joined["channel"]["is_member"], true);
    let _: slack_morphism::api::SlackApiConversationsJoinResponse =
        serde_json::from_value(joined).expect("slack-morphism conversations.join");
    assert!(fake.is_bot_member("C0OUTSIDE"));
    let again = ok_json(&fake, "conversations.join", json!({"channel": "C0OUTSIDE"})).await;
    assert_eq!(again["warning"], "missing_charset,already_in_channel");
    let (_, v) = post_json(&fake, "conversations.join", json!({"channel": "C0OLD"})).await;
    assert_eq!(v["error"], "is_archived");

    ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "C0OUTSIDE", "text": "x"}),
    )
    .await;
    ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "#deploys", "text": "by name"}),
    )
    .await;
    assert_eq!(fake.messages_in(CHAN)[0].text, "by name");

    let info = post_form(&fake, "conversations.info", &[("channel", "C0OLD")]).await;
    assert_eq!(info["channel"]["is_archived"], true);
    let _: slack_morphism::api::SlackApiConversationsInfoResponse =
        serde_json::from_value(info).expect("slack-morphism conversations.info");
}

#[tokio::test]
async fn a_private_channel_is_invisible_to_a_bot_not_in_it_and_never_joinable() {
    let fake = fake().await;
    fake.add_private_channel("C0SECRET", "secret", false);
    fake.add_private_channel("C0PRIV", "priv", true);
    for method in ["conversations.join", "chat.postMessage"] {
        let (_, v) = post_json(&fake, method, json!({"channel": "C0SECRET", "text": "x"})).await;
        assert_eq!(v["error"], "channel_not_found", "{method}");
    }
    let info = post_form(&fake, "conversations.info", &[("channel", "C0SECRET")]).await;
    assert_eq!(info["error"], "channel_not_found");
    assert!(!fake.is_bot_member("C0SECRET"));

    let (_, v) = post_json(&fake, "conversations.join", json!({"channel": "C0PRIV"})).await;
    assert_eq!(v["error"], "method_not_supported_for_channel_type");
    ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": "C0PRIV", "text": "in"}),
    )
    .await;
    let info = post_form(&fake, "conversations.info", &[("channel", "C0PRIV")]).await;
    assert_eq!(info["channel"]["is_private"], true);
    let _: slack_morphism::api::SlackApiConversationsInfoResponse =
        serde_json::from_value(info).expect("slack-morphism conversations.info");
}

#[tokio::test]
async fn no_text_and_text_truncation() {
    let fake = fake().await;
    let (_, v) = post_json(&fake, "chat.postMessage", json!({"channel": CHAN})).await;
    assert_eq!(v["error"], "no_text");
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": ""}),
    )
    .await;
    assert_eq!(v["error"], "no_text");

    let long = "é".repeat(40_001);
    let v = ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": long}),
    )
    .await;
    assert_eq!(v["warning"], "missing_charset,message_truncated");
    assert!(
        v["response_metadata"]["warnings"]
            .as_array()
            .unwrap()
            .contains(&json!("message_truncated"))
    );
    assert_eq!(fake.messages_in(CHAN)[0].text.chars().count(), 40_000);
}

#[tokio::test]
async fn ephemeral_permalink_delete() {
    let fake = fake().await;
    let v = ok_json(
        &fake,
        "chat.postEphemeral",
        json!({"channel": CHAN, "user": USER, "text": "only you"}),
    )
    .await;
    assert!(v["message_ts"].as_str().unwrap().starts_with("1700000000."));
    assert_eq!(fake.ephemerals()[0].user, USER);
    assert!(
        fake.messages_in(CHAN).is_empty(),
        "ephemerals are not channel messages"
    );
    let (_, v) = post_json(
        &fake,
        "chat.postEphemeral",
        json!({"channel": CHAN, "user": "U0GHOST", "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], "user_not_in_channel");

    let ts = post_text(&fake, "link me").await;
    let v = post_form(
        &fake,
        "chat.getPermalink",
        &[("channel", CHAN), ("message_ts", &ts)],
    )
    .await;
    assert_eq!(
        v["permalink"],
        format!(
            "https://fake.slack.com/archives/{CHAN}/p{}",
            ts.replace('.', "")
        )
    );
    let _: slack_morphism::api::SlackApiChatGetPermalinkResponse =
        serde_json::from_value(v).expect("slack-morphism chat.getPermalink");
    let v = post_form(
        &fake,
        "chat.getPermalink",
        &[("channel", CHAN), ("message_ts", "1.2")],
    )
    .await;
    assert_eq!(v["error"], "message_not_found");

    ok_json(&fake, "chat.delete", json!({"channel": CHAN, "ts": ts})).await;
    assert!(fake.message(CHAN, &ts).is_none());
}

// ------------------------------------------------------------------------------ read methods

#[tokio::test]
async fn read_methods_ignore_json_bodies() {
    let fake = fake().await;
    // JSON to a read method = no arguments at all (Slack's real behaviour).
    let (status, v) = post_json(&fake, "users.info", json!({"user": USER})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"], "user_not_found");
    let (_, v) = post_json(
        &fake,
        "users.lookupByEmail",
        json!({"email": "alice@example.com"}),
    )
    .await;
    assert_eq!(v["error"], "invalid_arguments");

    // Form body and query string work.
    let v = post_form(&fake, "users.info", &[("user", USER)]).await;
    assert_eq!(v["user"]["profile"]["email"], "alice@example.com");
    assert_eq!(v["user"]["tz"], "Europe/Berlin");
    let _: slack_morphism::api::SlackApiUsersInfoResponse =
        serde_json::from_value(v).expect("slack-morphism users.info");
    let v: Value = client()
        .get(format!("{}/users.info", fake.api_url()))
        .bearer_auth(DEFAULT_TOKEN)
        .query(&[("user", USER)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["user"]["id"], USER);

    let v = post_form(
        &fake,
        "users.lookupByEmail",
        &[("email", "ALICE@example.com")],
    )
    .await;
    assert_eq!(v["user"]["id"], USER);
    let v = post_form(
        &fake,
        "users.lookupByEmail",
        &[("email", "bob@example.com")],
    )
    .await;
    assert_eq!(v["error"], "users_not_found");
}

// ------------------------------------------------------------------------------ Block Kit

#[tokio::test]
async fn block_kit_limits_are_enforced() {
    let fake = fake().await;
    let blocks: Vec<Value> = (0..51).map(|i| section(&format!("b{i}"))).collect();
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "blocks": blocks}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("[json-pointer:/blocks]")
    );
    let fifty = &blocks[..50];
    ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "blocks": fifty}),
    )
    .await;

    let long = "x".repeat(3001);
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "text": "t", "blocks": [section("ok"), section(&long)]}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks");
    assert_eq!(
        v["errors"],
        json!(["must be less than 3001 characters [json-pointer:/blocks/1/text/text]"])
    );
    assert_eq!(
        v["response_metadata"]["messages"][0],
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/1/text/text]"
    );

    let (_, v) = post_json(
        &fake,
        "chat.update",
        json!({"channel": CHAN, "ts": fake.messages_in(CHAN)[0].ts, "blocks": [section(&long)]}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks", "chat.update validates too");

    let button = json!({"type": "actions", "elements": [{
        "type": "button", "action_id": "approve",
        "text": {"type": "plain_text", "text": "y".repeat(76)}
    }]});
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "blocks": [button]}),
    )
    .await;
    assert_eq!(
        v["errors"],
        json!(["must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]"])
    );
    let (_, v) = post_json(
        &fake,
        "chat.postMessage",
        json!({"channel": CHAN, "blocks": [{"type": "fancy_new_block"}]}),
    )
    .await;
    assert_eq!(v["error"], "invalid_blocks");
}

// ------------------------------------------------------------------------------ views

fn modal(title: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": "approve_modal",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Approve"},
        "blocks": [{
            "type": "input", "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason_input"}
        }]
    })
}

#[tokio::test]
async fn trigger_ids_are_single_use_and_expire_after_3s() {
    let fake = fake().await;
    let trigger = fake.trigger_id();
    let v = ok_json(
        &fake,
        "views.open",
        json!({"trigger_id": trigger, "view": modal("Approve")}),
    )
    .await;
    let view_id = v["view"]["id"].as_str().unwrap().to_string();
    assert!(view_id.starts_with('V'));
    assert!(v["view"]["hash"].as_str().is_some());
    let _: slack_morphism::api::SlackApiViewsOpenResponse =
        serde_json::from_value(v.clone()).expect("slack-morphism views.open");

    // Reuse → exchanged_trigger_id (Slack's documented code for a spent trigger).
    let (_, again) = post_json(
        &fake,
        "views.open",
        json!({"trigger_id": trigger, "view": modal("Again")}),
    )
    .await;
    assert_eq!(again["error"], "exchanged_trigger_id");

    // Older than 3 s → expired_trigger_id.
    fake.register_trigger_issued_ago("111.222.old", Duration::from_millis(3100));
    let (_, old) = post_json(
        &fake,
        "views.open",
        json!({"trigger_id": "111.222.old", "view": modal("Old")}),
    )
    .await;
    assert_eq!(old["error"], "expired_trigger_id");

    // Well-formed but never issued → expired_trigger_id; malformed → invalid_trigger_id.
    let (_, unknown) = post_json(
        &fake,
        "views.open",
        json!({"trigger_id": "9.9.abc", "view": modal("U")}),
    )
    .await;
    assert_eq!(unknown["error"], "expired_trigger_id");
    let (_, bad) = post_json(
        &fake,
        "views.open",
        json!({"trigger_id": "nope", "view": modal("B")}),
    )
    .await;
    assert_eq!(bad["error"], "invalid_trigger_id");

    // An invalid view is refused before the trigger is spent.
    let fresh = fake.trigger_id();
    let (_, too_long) = post_json(
        &fake,
        "views.open",
        json!({"trigger_id": fresh, "view": modal("A title far longer than 24 chars")}),
    )
    .await;
    assert_eq!(too_long["error"], "invalid_arguments");
    assert_eq!(
        too_long["response_metadata"]["messages"][0],
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    );
    ok_json(
        &fake,
        "views.open",
        json!({"trigger_id": fresh, "view": modal("Fine")}),
    )
    .await;

    // views.update by id, with hash conflict detection.
    let hash = v["view"]["hash"].as_str().unwrap();
    let (_, conflict) = post_json(
        &fake,
        "views.update",
        json!({"view_id": view_id, "hash": "stale", "view": modal("Updated")}),
    )
    .await;
    assert_eq!(conflict["error"], "hash_conflict");
    let up = ok_json(
        &fake,
        "views.update",
        json!({"view_id": view_id, "hash": hash, "view": modal("Updated")}),
    )
    .await;
    assert_eq!(up["view"]["title"]["text"], "Updated");
    let (_, missing) = post_json(
        &fake,
        "views.update",
        json!({"view_id": "V0NOPE", "view": modal("x")}),
    )
    .await;
    assert_eq!(missing["error"], "not_found");
    assert_eq!(fake.views().len(), 2);
    assert_eq!(fake.views()[0].updates, 1);
}

// ------------------------------------------------------------------------------ response_url

#[tokio::test]
async fn response_url_allows_five_uses_then_fails() {
    let fake = fake().await;
    let url = fake.response_url();
    for i in 0..5 {
        let r = client()
            .post(&url)
            .json(&json!({"text": format!("update {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "use {i}");
    }
    let sixth = client()
        .post(&url)
        .json(&json!({"text": "6"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), StatusCode::NOT_FOUND);
    assert_eq!(sixth.text().await.unwrap(), "used_url");

    let posts = fake.response_url_posts(&url);
    assert_eq!(posts.len(), 6);
    assert_eq!(posts[0].body["text"], "update 0");
    assert_eq!(posts[5].status, 404);
    assert_eq!(fake.response_url_uses(&url), 5);
}

#[tokio::test]
async fn response_url_bound_to_a_message_replaces_and_posts() {
    let fake = fake().await;
    let ts = post_text(&fake, "Approve deploy?").await;
    let url = fake.response_url_for_message(CHAN, &ts);
    let r = client()
        .post(&url)
        .json(&json!({"replace_original": true, "text": "Approved by alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m = fake.message(CHAN, &ts).unwrap();
    assert_eq!((m.text.as_str(), m.updated), ("Approved by alice", 1));

    client()
        .post(&url)
        .json(&json!({"response_type": "in_channel", "text": "FYI"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.messages_in(CHAN).len(), 2);

    let empty = client().post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        fake.response_url_uses(&url),
        2,
        "rejected posts do not consume a use"
    );

    fake.expire_response_url(&url);
    let late = client()
        .post(&url)
        .json(&json!({"text": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.text().await.unwrap(), "expired_url");

    fake.fail_next(RESPONSE_URL_METHOD, Fault::ServerError(503), 1);
    let other = fake.response_url();
    let r = client()
        .post(&other)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ------------------------------------------------------------------------------ usergroups

#[tokio::test]
async fn usergroups_list_users_and_update() {
    let fake = fake().await;
    fake.add_user("U0BOB", "bob", "bob@example.com", "America/New_York");
    fake.add_usergroup("S0ONCALL", "oncall", &[USER]);

    let list = post_form(&fake, "usergroups.list", &[("include_users", "true")]).await;
    assert_eq!(list["usergroups"][0]["handle"], "oncall");
    assert_eq!(list["usergroups"][0]["users"], json!([USER]));
    let _: slack_morphism::api::SlackApiUserGroupsListResponse =
        serde_json::from_value(list).expect("slack-morphism usergroups.list");

    let users = post_form(&fake, "usergroups.users.list", &[("usergroup", "S0ONCALL")]).await;
    assert_eq!(users["users"], json!([USER]));
    let _: slack_morphism::api::SlackApiUserGroupsUsersListResponse =
        serde_json::from_value(users).expect("slack-morphism usergroups.users.list");
    let none = post_form(&fake, "usergroups.users.list", &[("usergroup", "S0NOPE")]).await;
    assert_eq!(none["error"], "no_such_subteam");

    let v = ok_json(
        &fake,
        "usergroups.users.update",
        json!({"usergroup": "S0ONCALL", "users": "U0BOB,U0ALICE"}),
    )
    .await;
    assert_eq!(v["usergroup"]["users"], json!(["U0BOB", USER]));
    assert_eq!(v["usergroup"]["user_count"], 2);
    assert_eq!(fake.usergroup_members("S0ONCALL"), vec!["U0BOB", USER]);
    let v = post_form(
        &fake,
        "usergroups.users.update",
        &[("usergroup", "S0ONCALL"), ("users", "U0BOB")],
    )
    .await;
    assert_eq!(v["ok"], true, "form bodies work for write methods");

    let (_, v) = post_json(
        &fake,
        "usergroups.users.update",
        json!({"usergroup": "S0ONCALL", "users": ""}),
    )
    .await;
    assert_eq!(v["error"], "no_users_provided");
    let (_, v) = post_json(
        &fake,
        "usergroups.users.update",
        json!({"usergroup": "S0ONCALL", "users": "U0BOB,U0GHOST"}),
    )
    .await;
    assert_eq!(v["error"], "invalid_users");
    let (_, v) = post_json(
        &fake,
        "usergroups.users.update",
        json!({"usergroup": "S0ONCALL", "users": ["U0BOB"]}),
    )
    .await;
    assert_eq!(v["error"], "invalid_array_arg");
    assert_eq!(fake.usergroup_members("S0ONCALL"), vec!["U0BOB"]);
}

// ------------------------------------------------------------------------------ reactions, pins, DMs

#[tokio::test]
async fn reactions_pins_and_dms() {
    let fake = fake().await;
    let ts = post_text(&fake, "deploy done").await;
    let target = json!({"channel": CHAN, "timestamp": ts, "name": "white_check_mark"});
    ok_json(&fake, "reactions.add", target.clone()).await;
    let (_, v) = post_json(&fake, "reactions.add", target.clone()).await;
    assert_eq!(v["error"], "already_reacted");
    ok_json(&fake, "pins.add", target.clone()).await;
    let (_, v) = post_json(&fake, "pins.add", target.clone()).await;
    assert_eq!(v["error"], "already_pinned");
    ok_json(&fake, "pins.remove", target.clone()).await;
    let (_, v) = post_json(&fake, "pins.remove", target).await;
    assert_eq!(v["error"], "no_pin");
    let m = fake.message(CHAN, &ts).unwrap();
    assert_eq!(m.reactions, vec!["white_check_mark"]);
    assert!(!m.pinned);

    let v = ok_json(&fake, "conversations.open", json!({"users": USER})).await;
    let dm = v["channel"]["id"].as_str().unwrap().to_string();
    assert!(dm.starts_with('D'));
    assert_eq!(fake.dm_channel_of(USER).as_deref(), Some(dm.as_str()));
    let v = ok_json(&fake, "conversations.open", json!({"users": USER})).await;
    assert_eq!(v["already_open"], true);
    ok_json(
        &fake,
        "chat.postMessage",
        json!({"channel": dm, "text": "psst"}),
    )
    .await;
    assert_eq!(fake.messages_in(&dm).len(), 1);
    let (_, v) = post_json(&fake, "conversations.open", json!({"users": "U0GHOST"})).await;
    assert_eq!(v["error"], "user_not_found");
}

#[tokio::test]
async fn conversations_create_invite_history_and_replies() {
    let fake = fake().await;
    fake.add_user("U0BOB", "bob", "bob@example.com", "UTC");
    let v = ok_json(
        &fake,
        "conversations.create",
        json!({"name": "inc-search-261121"}),
    )
    .await;
    let _: slack_morphism::api::SlackApiConversationsCreateResponse =
        serde_json::from_value(v.clone()).expect("slack-morphism model");
    let created = v["channel"]["id"].as_str().unwrap().to_string();
    for (name, error) in [
        ("inc-search-261121", "name_taken"),
        ("Has Spaces", "invalid_name_specials"),
        (&*"x".repeat(81), "invalid_name_maxlength"),
    ] {
        let (_, v) = post_json(&fake, "conversations.create", json!({"name": name})).await;
        assert_eq!(v["error"], error, "{name}");
    }
    let v = ok_json(
        &fake,
        "conversations.invite",
        json!({"channel": created, "users": format!("{USER},U0BOB")}),
    )
    .await;
    let _: slack_morphism::api::SlackApiConversationsInviteResponse =
        serde_json::from_value(v).expect("slack-morphism model");
    assert_eq!(
        fake.channel_members(&created),
        Some(vec![USER.to_string(), "U0BOB".to_string()])
    );
    for (users, error) in [
        (USER.to_string(), "already_in_channel"),
        ("U0GHOST".to_string(), "user_not_found"),
        ("U0BOT".to_string(), "cant_invite_self"),
    ] {
        let (_, v) = post_json(
            &fake,
            "conversations.invite",
            json!({"channel": created, "users": users}),
        )
        .await;
        assert_eq!(v["error"], error);
    }

    let parent = post_text(&fake, "announcement").await;
    let reply = fake.insert_reply(CHAN, &parent, USER, "a reply");
    let other = fake.insert_message(CHAN, USER, "top level");
    // Read methods take form arguments.
    let v = post_form(
        &fake,
        "conversations.history",
        &[
            ("channel", CHAN),
            ("latest", &other),
            ("oldest", &other),
            ("inclusive", "true"),
            ("limit", "1"),
        ],
    )
    .await;
    let typed: slack_morphism::api::SlackApiConversationsHistoryResponse =
        serde_json::from_value(v.clone()).expect("slack-morphism model");
    assert_eq!(typed.messages.len(), 1);
    assert_eq!(v["messages"][0]["text"], "top level");
    let v = post_form(&fake, "conversations.history", &[("channel", CHAN)]).await;
    let texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec!["top level", "announcement"],
        "newest first, no replies"
    );
    assert_eq!(v["messages"][1]["reply_count"], 1);

    let v = post_form(
        &fake,
        "conversations.replies",
        &[
            ("channel", CHAN),
            ("ts", &reply),
            ("oldest", &reply),
            ("latest", &reply),
            ("inclusive", "true"),
        ],
    )
    .await;
    let _: slack_morphism::api::SlackApiConversationsRepliesResponse =
        serde_json::from_value(v.clone()).expect("slack-morphism model");
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["ts"], parent.as_str(), "the parent comes first");
    assert_eq!(msgs[1]["ts"], reply.as_str());
    assert_eq!(msgs[1]["thread_ts"], parent.as_str());
    let v = post_form(
        &fake,
        "conversations.replies",
        &[("channel", CHAN), ("ts", "1.2")],
    )
    .await;
    assert_eq!(v["error"], "thread_not_found");
    fake.add_channel_not_member("C0OTHER", "other");
    let v = post_form(&fake, "conversations.history", &[("channel", "C0OTHER")]).await;
    assert_eq!(v["error"], "not_in_channel");
}

// ------------------------------------------------------------------------------ waiting

#[tokio::test]
async fn wait_for_calls_sees_late_calls() {
    let fake = fake().await;
    let url = format!("{}/auth.test", fake.api_url());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = client().post(url).bearer_auth(DEFAULT_TOKEN).send().await;
    });
    let calls = fake
        .wait_for_calls("auth.test", 1, Duration::from_secs(5))
        .await;
    assert_eq!(calls.len(), 1);
    fake.reset_calls();
    assert_eq!(fake.call_count("auth.test"), 0);
}

#[tokio::test]
#[should_panic(expected = "recorded calls: [auth.test×1]")]
async fn wait_for_calls_panics_with_recorded_methods() {
    let fake = fake().await;
    ok_json(&fake, "auth.test", json!({})).await;
    fake.wait_for_calls("chat.postMessage", 1, Duration::from_millis(50))
        .await;
}
