//! The Slack interaction layer, black-box: `POST /slack/{commands,interactions,events}` on the real
//! service. Contracts are those of /work/shared/reference/slack.md: §1 request signing (v0, KAT-1,
//! ±300 s window, ssl_check), §2 payload shapes, the 3 s ack rule and Events API retries, and the
//! issue's HTTP surface (401 + JSON error, 413 over 1 MiB, unknown types → 200).
//!
//! Handlers registered here only record what reached them, so "nothing was dispatched" is a count
//! of zero rather than an absence of side effects. They use names no feature owns (`/layertest`,
//! `layertest:` action ids and callback ids), so a feature's own registration (approvals owns
//! `approvals:`) can neither shadow them nor be reached by them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use slackops::clock::ManualClock;
use slackops::config::Secret;
use slackops::registry::{ActionHandler, CommandHandler, EventHandler, SlackCtx, ViewHandler};
use slackops::slack::ack::Ack;
use slackops::slack::payload::{Action, EventCallback, Interaction, SlashCommand};
use slackops::slack::verify::sign;
use slackops::state::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually, now_secs};

// ============================================================================================
// Fixtures (reference/slack.md)
// ============================================================================================

/// KAT-1, Slack's documented example (§1).
const KAT1_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const KAT1_TS: i64 = 1531420618;
const KAT1_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const KAT1_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

/// The url_verification fixture of §2.3 (and of the derived signing vector in §1).
const URL_VERIFICATION: &str = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;

/// A fixed "now" for tests that must not race the wall clock around a window edge.
const FIXED_NOW: i64 = 1_750_000_000;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// The default `slack.max_body_bytes`.
const MAX_BODY: usize = 1024 * 1024;

/// bolt-python's block_actions fixture (§2.2) with our action id and response_url.
fn block_actions(action_id: &str, response_url: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": "W111", "username": "primary-owner", "name": "primary-owner", "team_id": "T111"},
        "api_app_id": "A111",
        "token": "verification_token",
        "container": {"type": "message", "message_ts": "111.222", "channel_id": "C111", "is_ephemeral": true},
        "trigger_id": "111.222.valid",
        "team": {"id": "T111", "domain": "workspace-domain", "enterprise_id": "E111", "enterprise_name": "Sandbox Org"},
        "channel": {"id": "C111", "name": "test-channel"},
        "response_url": response_url,
        "actions": [{
            "action_id": action_id, "block_id": "b",
            "text": {"type": "plain_text", "text": "Button", "emoji": true},
            "value": "click_me_123", "type": "button", "action_ts": "1596530385.194939"
        }]
    })
}

/// bolt-python's view_submission fixture (§2.2), key parts, with our callback_id.
fn view_submission(callback_id: &str) -> Value {
    json!({
        "type": "view_submission",
        "team": {"id": "T111", "domain": "workspace-domain"},
        "user": {"id": "W111", "username": "primary-owner", "name": "primary-owner", "team_id": "T111"},
        "api_app_id": "A111",
        "token": "verification_token",
        "trigger_id": "111.222.valid",
        "view": {
            "id": "V111",
            "team_id": "T111",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": "This is for you!",
            "state": {"values": {"hspI": {"maBWU": {"type": "plain_text_input", "value": "test"}}}},
            "hash": "1596530361.3wRYuk3R",
            "root_view_id": "V111",
            "previous_view_id": null,
            "app_id": "A111",
            "bot_id": "B111"
        },
        "response_urls": []
    })
}

/// bolt-python's event_callback fixture (§2.3) with our event id and event type.
fn event_callback(event_id: &str, event_type: &str, text: &str) -> Value {
    json!({
        "token": "verification_token",
        "team_id": "T111",
        "enterprise_id": "E111",
        "api_app_id": "A111",
        "event": {
            "client_msg_id": "9cbd4c5b-7ddf-4ede-b479-ad21fca66d63",
            "type": event_type,
            "text": text,
            "user": "W222",
            "ts": "1595926230.009600",
            "team": "T111",
            "channel": "C111",
            "event_ts": "1595926230.009600"
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1595926230,
        "authed_users": ["W111"]
    })
}

// ============================================================================================
// Recording handlers
// ============================================================================================

/// A handler that records what reached it and answers with a fixed ack.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    ack: Ack,
}

impl Recorder {
    fn new() -> Self {
        Self::answering(Ack::Empty)
    }
    fn answering(ack: Ack) -> Self {
        Self {
            seen: Arc::default(),
            ack,
        }
    }
    fn record(&self, what: String) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn count(&self) -> usize {
        self.seen().len()
    }
}

#[async_trait]
impl CommandHandler for Recorder {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        self.record(format!("{} by {}", cmd.command, cx.user_id));
        Ok(self.ack.clone())
    }
}

#[async_trait]
impl ActionHandler for Recorder {
    async fn handle(
        &self,
        _cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        self.record(action.action_id);
        Ok(self.ack.clone())
    }
}

#[async_trait]
impl ViewHandler for Recorder {
    async fn submit(&self, _cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let view = interaction.view.clone().unwrap_or_default();
        self.record(format!(
            "{}:{}",
            view.callback_id,
            view.input("hspI", "maBWU").unwrap_or_default()
        ));
        Ok(self.ack.clone())
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, _state: AppState, event: EventCallback) -> anyhow::Result<()> {
        self.record(event.event_id);
        Ok(())
    }
}

/// An event handler that fails its first run and succeeds afterwards.
#[derive(Clone, Default)]
struct FailsOnce {
    runs: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
}

#[async_trait]
impl EventHandler for FailsOnce {
    async fn handle(&self, _state: AppState, _event: EventCallback) -> anyhow::Result<()> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if !self.failed.swap(true, Ordering::SeqCst) {
            anyhow::bail!("downstream unavailable");
        }
        Ok(())
    }
}

/// A command handler slower than the ack deadline.
struct SlowCommand {
    sleep: Duration,
    finished: Arc<AtomicUsize>,
}

#[async_trait]
impl CommandHandler for SlowCommand {
    async fn handle(&self, _cx: SlackCtx, _cmd: SlashCommand) -> anyhow::Result<Ack> {
        tokio::time::sleep(self.sleep).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(Ack::ephemeral("done"))
    }
}

/// A block_actions handler slower than the ack deadline whose work is the counter increment.
struct SlowAction {
    sleep: Duration,
    finished: Arc<AtomicUsize>,
}

#[async_trait]
impl ActionHandler for SlowAction {
    async fn handle(
        &self,
        _cx: SlackCtx,
        _interaction: Arc<Interaction>,
        _action: Action,
    ) -> anyhow::Result<Ack> {
        tokio::time::sleep(self.sleep).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(Ack::Empty)
    }
}

// ============================================================================================
// Helpers
// ============================================================================================

/// The service with the clock fixed at `now`, `/layertest` and `/webhook-collect` recorded.
async fn app_at(now: i64, commands: &Recorder) -> TestApp {
    let rec = commands.clone();
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .clock(Arc::new(ManualClock::at_secs(now)))
        .register(move |r| {
            r.command("/layertest", rec.clone());
            r.command("/webhook-collect", rec);
        })
        .spawn()
        .await
}

/// The service at KAT-1's time with KAT-1's secret.
async fn kat1_app(commands: &Recorder) -> TestApp {
    let rec = commands.clone();
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .clock(Arc::new(ManualClock::at_secs(KAT1_TS)))
        .settings(|s| s.slack.signing_secret = Secret::new(KAT1_SECRET))
        .register(move |r| {
            r.command("/webhook-collect", rec);
        })
        .spawn()
        .await
}

/// A slash command form body for `/layertest` (no response_url: nothing to deliver late).
fn command_form() -> String {
    serde_urlencoded::to_string([
        ("team_id", "T0TEAM"),
        ("channel_id", "C0OPS"),
        ("user_id", "U0ALICE"),
        ("user_name", "alice"),
        ("command", "/layertest"),
        ("text", "checkout prod"),
    ])
    .expect("form")
}

/// POST with exactly these headers (each `None` is left out).
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &[u8],
    timestamp: Option<String>,
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body.to_vec());
    if let Some(ts) = timestamp {
        req = req.header("x-slack-request-timestamp", ts);
    }
    if let Some(sig) = signature {
        req = req.header("x-slack-signature", sig);
    }
    req.send().await.expect("request reaches the service")
}

/// The value of one sample in a Prometheus/OpenMetrics text exposition; 0 when absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().expect("numeric sample"))
        .sum()
}

async fn signature_failures(app: &TestApp, reason: &str) -> f64 {
    metric(
        &app.metrics_text().await,
        "slackops_slack_signature_failures_total",
        &[("reason", reason)],
    )
}

/// 401 with a JSON error body, the reason counted once, and nothing dispatched.
async fn assert_refused(app: &TestApp, resp: reqwest::Response, reason: &str, rec: &Recorder) {
    assert_eq!(resp.status(), 401, "refusal for {reason}");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: Value = resp.json().await.expect("JSON error body");
    assert!(
        body.get("error").and_then(Value::as_str).is_some(),
        "error body {body}"
    );
    let text = body.to_string();
    assert!(
        !text.contains("v0="),
        "the error must not echo a signature: {text}"
    );
    assert_eq!(rec.count(), 0, "nothing dispatched for {reason}");
    assert_eq!(
        signature_failures(app, reason).await,
        1.0,
        "metric {reason}"
    );
}

fn response_url_of(form_body: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(form_body).expect("form");
    pairs
        .into_iter()
        .find(|(k, _)| k == "response_url")
        .map(|(_, v)| v)
        .expect("response_url in the command body")
}

async fn body_text(resp: reqwest::Response) -> String {
    resp.text().await.expect("body")
}

// ============================================================================================
// Signing: known answers
// ============================================================================================

#[tokio::test]
async fn slacks_documented_signing_vector_verifies_end_to_end_with_the_clock_fixed() {
    // Arrange
    let rec = Recorder::new();
    let app = kat1_app(&rec).await;

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        KAT1_BODY.as_bytes(),
        Some(KAT1_TS.to_string()),
        Some(KAT1_SIGNATURE.into()),
    )
    .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(
        rec.seen(),
        vec!["/webhook-collect by U2CERLKJA".to_string()]
    );
}

#[tokio::test]
async fn slacks_documented_signing_vector_is_refused_as_stale_with_the_real_clock() {
    // Arrange: KAT-1's secret, but the real clock (2018 is far outside the window).
    let rec = Recorder::new();
    let hook = rec.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(|s| s.slack.signing_secret = Secret::new(KAT1_SECRET))
        .register(move |r| {
            r.command("/webhook-collect", hook);
        })
        .spawn()
        .await;

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        KAT1_BODY.as_bytes(),
        Some(KAT1_TS.to_string()),
        Some(KAT1_SIGNATURE.into()),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "stale_timestamp", &rec).await;
}

#[tokio::test]
async fn the_derived_json_vector_verifies_a_url_verification_with_the_clock_fixed() {
    // Arrange: §1's derived vector for the url_verification body.
    let rec = Recorder::new();
    let app = kat1_app(&rec).await;

    // Act
    let resp = post_raw(
        &app,
        "/slack/events",
        JSON,
        URL_VERIFICATION.as_bytes(),
        Some(KAT1_TS.to_string()),
        Some("v0=f9bd80929259f3f6d5fe3a3186c453c89cd1ad4862815a15837584f31c993652".into()),
    )
    .await;

    // Assert
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
}

// ============================================================================================
// Signing: tampering
// ============================================================================================

#[tokio::test]
async fn a_body_with_one_byte_changed_is_refused_and_not_dispatched() {
    // Arrange: KAT-1's signature over a body whose user id differs in its last byte.
    let rec = Recorder::new();
    let app = kat1_app(&rec).await;
    let tampered = KAT1_BODY.replacen("U2CERLKJA", "U2CERLKJB", 1);
    assert_eq!(tampered.len(), KAT1_BODY.len());

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        tampered.as_bytes(),
        Some(KAT1_TS.to_string()),
        Some(KAT1_SIGNATURE.into()),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "bad_signature", &rec).await;
}

#[tokio::test]
async fn an_uppercase_hex_signature_is_refused_although_the_digest_matches() {
    // Arrange: KAT-1 with its digest in uppercase. Slack sends lowercase hex and its SDKs
    // compare the header string exactly (reference/slack.md §1).
    let rec = Recorder::new();
    let app = kat1_app(&rec).await;
    let upper = format!("v0={}", KAT1_SIGNATURE["v0=".len()..].to_ascii_uppercase());

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        KAT1_BODY.as_bytes(),
        Some(KAT1_TS.to_string()),
        Some(upper),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "bad_signature", &rec).await;
}

#[tokio::test]
async fn a_second_signature_or_timestamp_header_is_refused_whatever_its_order() {
    let rec = Recorder::new();
    let app = kat1_app(&rec).await;
    let wrong_sig = format!("v0={}", "0".repeat(64));
    let cases = [
        (
            "x-slack-signature",
            KAT1_SIGNATURE.to_string(),
            wrong_sig.clone(),
            "duplicate_signature",
        ),
        (
            "x-slack-signature",
            wrong_sig,
            KAT1_SIGNATURE.to_string(),
            "duplicate_signature",
        ),
        (
            "x-slack-request-timestamp",
            KAT1_TS.to_string(),
            "1".into(),
            "duplicate_timestamp",
        ),
        (
            "x-slack-request-timestamp",
            "1".into(),
            KAT1_TS.to_string(),
            "duplicate_timestamp",
        ),
    ];
    for (name, first, second, reason) in cases {
        // Arrange: KAT-1, correctly signed, plus a second copy of one header.
        let before = signature_failures(&app, reason).await;
        let mut req = app
            .client
            .post(app.url("/slack/commands"))
            .header("content-type", FORM)
            .body(KAT1_BODY);
        for (n, v) in [
            ("x-slack-request-timestamp", KAT1_TS.to_string()),
            ("x-slack-signature", KAT1_SIGNATURE.to_string()),
        ] {
            if n != name {
                req = req.header(n, v);
            }
        }
        // reqwest appends a repeated header, so the request carries both copies.
        req = req.header(name, first).header(name, second);

        // Act
        let resp = req.send().await.expect("request reaches the service");

        // Assert
        assert_eq!(resp.status(), 401, "{name} twice");
        assert_eq!(
            signature_failures(&app, reason).await,
            before + 1.0,
            "{reason}"
        );
    }
    assert_eq!(rec.count(), 0, "nothing dispatched");
}

#[tokio::test]
async fn a_timestamp_301_seconds_in_the_past_is_refused_as_stale() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;

    // Act: correctly signed, but with a timestamp just outside the window.
    let resp = app
        .post_signed_at(
            "/slack/commands",
            FORM,
            command_form().as_bytes(),
            FIXED_NOW - 301,
        )
        .await;

    // Assert
    assert_refused(&app, resp, "stale_timestamp", &rec).await;
}

#[tokio::test]
async fn a_timestamp_301_seconds_in_the_future_is_refused() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;

    // Act
    let resp = app
        .post_signed_at(
            "/slack/commands",
            FORM,
            command_form().as_bytes(),
            FIXED_NOW + 301,
        )
        .await;

    // Assert
    assert_refused(&app, resp, "future_timestamp", &rec).await;
}

#[tokio::test]
async fn timestamps_300_seconds_either_side_are_still_accepted() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;

    // Act
    let past = app
        .post_signed_at(
            "/slack/commands",
            FORM,
            command_form().as_bytes(),
            FIXED_NOW - 300,
        )
        .await;
    let future = app
        .post_signed_at(
            "/slack/commands",
            FORM,
            command_form().as_bytes(),
            FIXED_NOW + 300,
        )
        .await;

    // Assert
    assert_eq!(past.status(), 200);
    assert_eq!(future.status(), 200);
    assert_eq!(rec.count(), 2);
}

#[tokio::test]
async fn a_request_without_a_signature_header_is_refused() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        command_form().as_bytes(),
        Some(FIXED_NOW.to_string()),
        None,
    )
    .await;

    // Assert
    assert_refused(&app, resp, "missing_signature", &rec).await;
}

#[tokio::test]
async fn a_request_without_a_timestamp_header_is_refused() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form();
    let signature = app.sign(FIXED_NOW, body.as_bytes());

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        body.as_bytes(),
        None,
        Some(signature),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "missing_timestamp", &rec).await;
}

#[tokio::test]
async fn an_unknown_signature_version_is_refused_even_with_the_right_mac() {
    // Arrange: the correct HMAC, labelled v1.
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form();
    let v1 = app
        .sign(FIXED_NOW, body.as_bytes())
        .replacen("v0=", "v1=", 1);

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        body.as_bytes(),
        Some(FIXED_NOW.to_string()),
        Some(v1),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "unknown_version", &rec).await;
}

#[tokio::test]
async fn a_signature_made_with_another_secret_is_refused() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form();
    let other = sign(
        "another-signing-secret-9876543210",
        FIXED_NOW,
        body.as_bytes(),
    );

    // Act
    let resp = post_raw(
        &app,
        "/slack/commands",
        FORM,
        body.as_bytes(),
        Some(FIXED_NOW.to_string()),
        Some(other),
    )
    .await;

    // Assert
    assert_refused(&app, resp, "bad_signature", &rec).await;
}

#[tokio::test]
async fn interactions_and_events_with_a_bad_signature_are_refused_and_not_dispatched() {
    // Arrange
    let actions = Recorder::new();
    let events = Recorder::new();
    let (a, e) = (actions.clone(), events.clone());
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("layertest:", a);
            r.event("app_mention", e);
        })
        .spawn()
        .await;
    let now = now_secs();
    let interaction = serde_urlencoded::to_string([(
        "payload",
        block_actions("layertest:approve", &app.slack.response_url()).to_string(),
    )])
    .expect("form");
    let event = event_callback("Ev0BADSIG", "app_mention", "<@W111> hi").to_string();
    let wrong = |body: &str| sign("another-signing-secret-9876543210", now, body.as_bytes());

    // Act
    let r1 = post_raw(
        &app,
        "/slack/interactions",
        FORM,
        interaction.as_bytes(),
        Some(now.to_string()),
        Some(wrong(&interaction)),
    )
    .await;
    let r2 = post_raw(
        &app,
        "/slack/events",
        JSON,
        event.as_bytes(),
        Some(now.to_string()),
        Some(wrong(&event)),
    )
    .await;

    // Assert
    assert_eq!(r1.status(), 401);
    assert_eq!(r2.status(), 401);
    assert_eq!(actions.count() + events.count(), 0);
    assert_eq!(signature_failures(&app, "bad_signature").await, 2.0);
}

// ============================================================================================
// Body size
// ============================================================================================

/// A correctly signed slash command padded to exactly `len` bytes.
fn command_form_of_len(len: usize) -> String {
    let mut body = command_form();
    body.push_str("&padding=");
    assert!(body.len() <= len);
    body.push_str(&"a".repeat(len - body.len()));
    body
}

#[tokio::test]
async fn a_body_over_the_cap_with_a_content_length_gets_413_and_is_not_dispatched() {
    // Arrange: signed correctly, one byte over 1 MiB.
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form_of_len(MAX_BODY + 1);

    // Act
    let resp = app
        .post_signed_at("/slack/commands", FORM, body.as_bytes(), FIXED_NOW)
        .await;

    // Assert
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.expect("JSON error body");
    assert!(err.get("error").is_some(), "{err}");
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form_of_len(MAX_BODY);

    // Act
    let resp = app
        .post_signed_at("/slack/commands", FORM, body.as_bytes(), FIXED_NOW)
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(rec.count(), 1);
}

/// POST a chunked body over a raw connection (no Content-Length), answering the status code.
/// The body is written from its own task so an early answer from the service is still read.
async fn post_chunked(app: &TestApp, path: &str, body: Vec<u8>, ts: i64) -> u16 {
    let signature = app.sign(ts, &body);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n\
         Transfer-Encoding: chunked\r\nX-Slack-Request-Timestamp: {ts}\r\n\
         X-Slack-Signature: {signature}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(64 * 1024) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        // Keep the write half open: hyper drops a connection whose client half-closes before
        // the answer (http1 half_close is off by default).
        Ok::<_, std::io::Error>(wr)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let status_line = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = rd.read(&mut buf).await.expect("read the answer");
            assert!(n > 0, "connection closed before an answer");
            answer.extend_from_slice(&buf[..n]);
            if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
                return String::from_utf8_lossy(&answer[..end]).into_owned();
            }
        }
    })
    .await
    .expect("an answer within 10 s");
    // The service may stop reading once it has refused the body; a broken pipe is expected then.
    drop(writer.await);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {status_line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_cap_gets_413_and_is_not_dispatched() {
    // Arrange: no Content-Length, so the cap must hold while reading.
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form_of_len(MAX_BODY + 64 * 1024).into_bytes();

    // Act
    let status = post_chunked(&app, "/slack/commands", body, FIXED_NOW).await;

    // Assert
    assert_eq!(status, 413);
    assert_eq!(rec.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_under_the_cap_is_verified_and_dispatched() {
    // Arrange: the raw chunked client itself works (control for the test above).
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = command_form_of_len(200 * 1024).into_bytes();

    // Act
    let status = post_chunked(&app, "/slack/commands", body, FIXED_NOW).await;

    // Assert
    assert_eq!(status, 200);
    assert_eq!(rec.count(), 1);
}

// ============================================================================================
// ssl_check and url_verification
// ============================================================================================

#[tokio::test]
async fn ssl_check_gets_an_empty_200_signed_or_unsigned_and_dispatches_nothing() {
    // Arrange: Slack's certificate check carries the command's fields; a handler is registered.
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;
    let body = format!("ssl_check=1&token=legacy-token&{}", command_form());

    // Act
    let unsigned = post_raw(&app, "/slack/commands", FORM, body.as_bytes(), None, None).await;
    let signed = app
        .post_signed_at("/slack/commands", FORM, body.as_bytes(), FIXED_NOW)
        .await;

    // Assert
    assert_eq!(unsigned.status(), 200);
    assert_eq!(body_text(unsigned).await, "");
    assert_eq!(signed.status(), 200);
    assert_eq!(body_text(signed).await, "");
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn ssl_check_smuggling_a_payload_dispatches_nothing() {
    // Arrange: bolt-js PR #2898 — an ssl_check body with a `payload=` must not reach a handler.
    let actions = Recorder::new();
    let a = actions.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("layertest:", a);
        })
        .spawn()
        .await;
    let payload = block_actions("layertest:approve", &app.slack.response_url()).to_string();
    let body = serde_urlencoded::to_string([("ssl_check", "1"), ("payload", payload.as_str())])
        .expect("form");

    // Act
    let unsigned = post_raw(
        &app,
        "/slack/interactions",
        FORM,
        body.as_bytes(),
        None,
        None,
    )
    .await;
    let signed = app
        .post_signed("/slack/interactions", FORM, body.as_bytes())
        .await;

    // Assert
    assert_eq!(unsigned.status(), 200);
    assert_eq!(body_text(unsigned).await, "");
    assert_eq!(signed.status(), 200);
    assert_eq!(body_text(signed).await, "");
    assert_eq!(actions.count(), 0);
}

#[tokio::test]
async fn a_signed_event_whose_text_mentions_ssl_check_is_still_dispatched() {
    // Arrange: ssl_check is a form field of slash-command requests, not a substring of any body.
    let events = Recorder::new();
    let e = events.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.event("app_mention", e);
        })
        .spawn()
        .await;
    let event = event_callback(
        "Ev0SSLTEXT",
        "app_mention",
        "<@W111> why does the probe send ssl_check=1?",
    );

    // Act
    let resp = app.event(&event, None).await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(events.seen(), vec!["Ev0SSLTEXT".to_string()]);
}

#[tokio::test]
async fn url_verification_is_answered_with_its_challenge() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let body: Value = serde_json::from_str(URL_VERIFICATION).expect("fixture");

    // Act
    let resp = app.event(&body, None).await;

    // Assert
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("JSON answer");
    assert_eq!(
        answer,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
}

#[tokio::test]
async fn an_unsigned_url_verification_is_refused() {
    // Arrange: url_verification is signed like every other delivery (§2.3).
    let app = crate::helpers::spawn_app().await;

    // Act
    let resp = post_raw(
        &app,
        "/slack/events",
        JSON,
        URL_VERIFICATION.as_bytes(),
        None,
        None,
    )
    .await;

    // Assert
    assert_eq!(resp.status(), 401);
    assert_eq!(signature_failures(&app, "missing_timestamp").await, 1.0);
}

// ============================================================================================
// Events API: deduplication and retries
// ============================================================================================

async fn app_with_event_handler(h: impl EventHandler + Clone) -> TestApp {
    TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.event("app_mention", h);
        })
        .spawn()
        .await
}

#[tokio::test]
async fn a_duplicate_event_id_is_dispatched_once() {
    // Arrange
    let events = Recorder::new();
    let app = app_with_event_handler(events.clone()).await;
    let event = event_callback("Ev0DUP", "app_mention", "<@W111> hi");

    // Act: the delivery, then Slack's retry of it.
    let first = app.event(&event, None).await;
    let retry = app.event(&event, Some(1)).await;

    // Assert
    assert_eq!(first.status(), 200);
    assert_eq!(retry.status(), 200);
    assert_eq!(events.seen(), vec!["Ev0DUP".to_string()]);
    let metrics = app.metrics_text().await;
    assert_eq!(
        metric(&metrics, "slackops_slack_duplicate_events_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn a_retry_of_an_event_never_processed_is_processed() {
    // Arrange: the first delivery never reached this service (e.g. a timeout on the way).
    let events = Recorder::new();
    let app = app_with_event_handler(events.clone()).await;
    let event = event_callback("Ev0RETRY", "app_mention", "<@W111> hi");

    // Act
    let resp = app.event(&event, Some(1)).await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(events.seen(), vec!["Ev0RETRY".to_string()]);
}

#[tokio::test]
async fn an_event_whose_handler_fails_gets_500_and_a_later_retry_is_processed_again() {
    // Arrange
    let handler = FailsOnce::default();
    let app = app_with_event_handler(handler.clone()).await;
    let event = event_callback("Ev0FAIL", "app_mention", "<@W111> hi");

    // Act
    let first = app.event(&event, None).await;
    let retry = app.event(&event, Some(1)).await;
    let second_retry = app.event(&event, Some(2)).await;

    // Assert: the failure asks Slack to retry; the retry runs; a further retry is a duplicate.
    assert_eq!(first.status(), 500);
    assert_eq!(retry.status(), 200);
    assert_eq!(second_retry.status(), 200);
    assert_eq!(handler.runs.load(Ordering::SeqCst), 2);
}

// ============================================================================================
// Unknown input is acknowledged, never an error
// ============================================================================================

#[tokio::test]
async fn an_unknown_event_type_gets_200_and_dispatches_nothing() {
    // Arrange
    let events = Recorder::new();
    let app = app_with_event_handler(events.clone()).await;
    let event = event_callback("Ev0NEW", "brand_new_event", "hello");

    // Act
    let resp = app.event(&event, None).await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(events.count(), 0);
}

#[tokio::test]
async fn an_unknown_envelope_type_gets_200() {
    // Arrange
    let events = Recorder::new();
    let app = app_with_event_handler(events.clone()).await;

    // Act
    let resp = app
        .event(
            &json!({"type": "brand_new_envelope", "team_id": "T111", "something": {"a": 1}}),
            None,
        )
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(events.count(), 0);
}

#[tokio::test]
async fn an_unknown_interaction_type_gets_200() {
    // Arrange
    let actions = Recorder::new();
    let a = actions.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("", a);
        })
        .spawn()
        .await;

    // Act
    let resp = app
        .interaction(&json!({
            "type": "something_slack_adds_later",
            "user": {"id": "W111", "team_id": "T111"},
            "team": {"id": "T111"},
            "actions": [{"action_id": "layertest:approve", "type": "button"}],
            "new_field": {"nested": true}
        }))
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(actions.count(), 0);
}

#[tokio::test]
async fn block_actions_with_an_unregistered_action_id_gets_200() {
    // Arrange
    let actions = Recorder::new();
    let a = actions.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("layertest:", a);
        })
        .spawn()
        .await;

    // Act
    let resp = app
        .interaction(&block_actions(
            "nobody:handles:this",
            &app.slack.response_url(),
        ))
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(actions.count(), 0);
}

#[tokio::test]
async fn an_unknown_slash_command_gets_an_ephemeral_message_naming_it() {
    // Arrange
    let rec = Recorder::new();
    let app = app_at(now_secs(), &rec).await;

    // Act
    let resp = app.command("/nope", "do things", "U0ALICE").await;

    // Assert
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON reply");
    assert_eq!(body["response_type"], "ephemeral");
    let text = body["text"].as_str().unwrap_or_default();
    assert!(text.contains("/nope"), "reply names the command: {text}");
    assert_eq!(rec.count(), 0);
}

// ============================================================================================
// The 3 s ack deadline
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_slower_than_the_deadline_is_acked_in_time_and_replies_through_response_url() {
    // Arrange
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.command(
                "/slow",
                SlowCommand {
                    sleep: Duration::from_secs(4),
                    finished: f,
                },
            );
        })
        .spawn()
        .await;
    let body = app.command_body("/slow", "", "U0ALICE");
    let response_url = response_url_of(&body);

    // Act
    let started = Instant::now();
    let resp = app
        .post_signed("/slack/commands", FORM, body.as_bytes())
        .await;
    let acked_after = started.elapsed();

    // Assert: Slack has its ack in time, before the work is done …
    assert_eq!(resp.status(), 200);
    assert!(
        acked_after < Duration::from_secs(3),
        "acked after {acked_after:?}"
    );
    assert_eq!(body_text(resp).await, "");
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    // … and the late reply reaches the command's response_url.
    let posts = app
        .slack
        .wait_for_response_url_posts(&response_url, 1, Duration::from_secs(6))
        .await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].status, 200);
    assert_eq!(posts[0].body["text"], "done");
    assert_eq!(posts[0].body["response_type"], "ephemeral");
    let metrics = app.metrics_text().await;
    assert_eq!(
        metric(
            &metrics,
            "slackops_slack_handler_deadline_exceeded_total",
            &[]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_action_slower_than_the_deadline_is_acked_in_time_and_completes_in_the_background()
{
    // Arrange
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix(
                "slow:",
                SlowAction {
                    sleep: Duration::from_secs(4),
                    finished: f,
                },
            );
        })
        .spawn()
        .await;

    // Act
    let started = Instant::now();
    let resp = app
        .interaction(&block_actions("slow:work", &app.slack.response_url()))
        .await;
    let acked_after = started.elapsed();

    // Assert
    assert_eq!(resp.status(), 200);
    assert!(
        acked_after < Duration::from_secs(3),
        "acked after {acked_after:?}"
    );
    assert_eq!(finished.load(Ordering::SeqCst), 0, "not done at ack time");
    eventually(Duration::from_secs(6), "the background work", || {
        let done = finished.load(Ordering::SeqCst);
        async move { (done == 1).then_some(()) }
    })
    .await;
}

// ============================================================================================
// Dispatch
// ============================================================================================

#[tokio::test]
async fn the_longest_action_id_prefix_wins() {
    // Arrange: the shorter prefix is registered first, so "first match" would be wrong.
    let general = Recorder::new();
    let input = Recorder::new();
    let (g, i) = (general.clone(), input.clone());
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("layertest:", g);
            r.action_prefix("layertest:input:", i);
        })
        .spawn()
        .await;

    // Act
    let r1 = app
        .interaction(&block_actions(
            "layertest:input:comment",
            &app.slack.response_url(),
        ))
        .await;
    let r2 = app
        .interaction(&block_actions(
            "layertest:approve:01HX",
            &app.slack.response_url(),
        ))
        .await;

    // Assert
    assert_eq!(r1.status(), 200);
    assert_eq!(r2.status(), 200);
    assert_eq!(input.seen(), vec!["layertest:input:comment".to_string()]);
    assert_eq!(general.seen(), vec!["layertest:approve:01HX".to_string()]);
}

#[tokio::test]
async fn an_action_prefix_registered_again_replaces_the_earlier_handler_as_commands_do() {
    // Arrange: the same prefix, and the same command name, registered twice (a test or a
    // feature overriding an earlier registration). For commands, views and events the registry
    // keeps the later handler; an action prefix must behave the same, not be silently shadowed.
    let (first_action, second_action) = (Recorder::new(), Recorder::new());
    let (first_command, second_command) = (Recorder::new(), Recorder::new());
    let (a1, a2) = (first_action.clone(), second_action.clone());
    let (c1, c2) = (first_command.clone(), second_command.clone());
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.action_prefix("layertest:", a1);
            r.action_prefix("layertest:", a2);
            r.command("/layertest", c1);
            r.command("/layertest", c2);
        })
        .spawn()
        .await;

    // Act
    let action = app
        .interaction(&block_actions("layertest:go", &app.slack.response_url()))
        .await;
    let command = app.command("/layertest", "", "U0ALICE").await;

    // Assert
    assert_eq!(action.status(), 200);
    assert_eq!(command.status(), 200);
    assert_eq!(
        (first_command.count(), second_command.count()),
        (0, 1),
        "commands: the later registration wins"
    );
    assert_eq!(
        (first_action.count(), second_action.count()),
        (0, 1),
        "action prefixes: the later registration should win too"
    );
}

#[tokio::test]
async fn a_view_submission_is_dispatched_by_callback_id_and_its_view_errors_are_rendered() {
    // Arrange
    let modal = Recorder::answering(Ack::view_error("hspI", "Tell us what is down"));
    let other = Recorder::new();
    let (m, o) = (modal.clone(), other.clone());
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.view("layertest:announce", m);
            r.view("layertest:other", o);
        })
        .spawn()
        .await;

    // Act
    let resp = app
        .interaction(&view_submission("layertest:announce"))
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON ack");
    assert_eq!(
        body,
        json!({"response_action": "errors", "errors": {"hspI": "Tell us what is down"}})
    );
    assert_eq!(modal.seen(), vec!["layertest:announce:test".to_string()]);
    assert_eq!(other.count(), 0);
}

#[tokio::test]
async fn a_view_submission_with_an_unknown_callback_id_gets_an_empty_200() {
    // Arrange
    let modal = Recorder::new();
    let m = modal.clone();
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .register(move |r| {
            r.view("layertest:announce", m);
        })
        .spawn()
        .await;

    // Act
    let resp = app.interaction(&view_submission("view-id")).await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(body_text(resp).await, "");
    assert_eq!(modal.count(), 0);
}

#[tokio::test]
async fn a_correctly_signed_command_reaches_its_handler() {
    // Arrange: control for the tampering tests — the same body, correctly signed, is dispatched.
    let rec = Recorder::new();
    let app = app_at(FIXED_NOW, &rec).await;

    // Act
    let resp = app
        .post_signed_at(
            "/slack/commands",
            FORM,
            command_form().as_bytes(),
            FIXED_NOW,
        )
        .await;

    // Assert
    assert_eq!(resp.status(), 200);
    assert_eq!(rec.seen(), vec!["/layertest by U0ALICE".to_string()]);
}
