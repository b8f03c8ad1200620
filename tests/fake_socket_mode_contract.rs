//! The fake Socket Mode edge (tests/support/fake_socket_mode.rs) and the fake Slack's
//! `apps.connections.open` keep the contract of /work/shared/reference/slack-socket-mode.md and its
//! "choices made in our fake", checked with a plain WebSocket client (not slackops), so the
//! service's tests stand on a fake that is known to behave like Slack.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::fake_slack::{DEFAULT_TOKEN, FakeSlack, Fault};
use support::fake_socket_mode::{APP_ID, APP_TOKEN, DispatchFailed, FakeSocketMode};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

async fn fakes() -> (FakeSlack, FakeSocketMode) {
    slackops::telemetry::install_crypto_provider();
    let slack = FakeSlack::start().await;
    let socket = FakeSocketMode::start().await;
    slack.enable_socket_mode(APP_TOKEN, socket.minter());
    (slack, socket)
}

/// POST apps.connections.open with this Authorization header (or none) and form body.
async fn open_call(
    slack: &FakeSlack,
    bearer: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/apps.connections.open", slack.api_url()))
        .form(form);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("fake slack answers")
}

async fn fresh_url(slack: &FakeSlack) -> String {
    let v: Value = open_call(slack, Some(APP_TOKEN), &[])
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["ok"], true, "{v}");
    v["url"].as_str().expect("url").to_string()
}

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake")
        .0
}

/// The next text frame as JSON (pings are answered by tungstenite and skipped).
async fn next_json(ws: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("readable frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).expect("JSON frame");
        }
        if let Message::Close(_) = m {
            panic!("closed while waiting for a message");
        }
    }
}

async fn connected(slack: &FakeSlack) -> (Client, Value) {
    let mut ws = connect(&fresh_url(slack).await).await;
    let hello = next_json(&mut ws).await;
    (ws, hello)
}

fn block_actions(container: &str) -> Value {
    let mut p = json!({"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"},
        "container": {"type": container}, "actions": [{"action_id": "a", "type": "button"}]});
    if container == "view" {
        p["view"] = json!({"id": "V1", "callback_id": "cb"});
    }
    p
}

#[tokio::test]
async fn apps_connections_open_answers_the_app_token_with_a_ticketed_url_and_its_scope() {
    let (slack, _socket) = fakes().await;

    let resp = open_call(&slack, Some(APP_TOKEN), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-oauth-scopes"].to_str().unwrap(),
        "connections:write"
    );
    let v: Value = resp.json().await.unwrap();
    let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.scheme(), "ws");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(url.path(), "/link/");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["app_id"], APP_ID);
    assert!(uuid::Uuid::parse_str(&q["ticket"]).is_ok(), "{q:?}");
    assert_ne!(
        fresh_url(&slack).await,
        url.to_string(),
        "every call mints a new ticket"
    );
}

#[tokio::test]
async fn apps_connections_open_refuses_the_bot_token_a_form_token_and_a_get() {
    let (slack, _socket) = fakes().await;
    let error = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 200, "errors are HTTP 200 ok:false");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["ok"], false);
        v["error"].as_str().unwrap().to_string()
    };
    assert_eq!(
        error(open_call(&slack, Some(DEFAULT_TOKEN), &[]).await).await,
        "invalid_auth"
    );
    assert_eq!(
        error(open_call(&slack, Some("xapp-1-unknown"), &[]).await).await,
        "invalid_auth"
    );
    assert_eq!(
        error(open_call(&slack, None, &[("token", APP_TOKEN)]).await).await,
        "not_authed"
    );
    let get = reqwest::Client::new()
        .get(format!("{}/apps.connections.open", slack.api_url()))
        .bearer_auth(APP_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error(get).await, "insecure_request");
}

#[tokio::test]
async fn apps_connections_open_faults_are_429_with_retry_after_5xx_and_ok_false() {
    let (slack, _socket) = fakes().await;
    slack.fail_next(
        "apps.connections.open",
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    slack.fail_next("apps.connections.open", Fault::ServerError(503), 1);
    slack.fail_next("apps.connections.open", Fault::error("internal_error"), 1);

    let r = open_call(&slack, Some(APP_TOKEN), &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = open_call(&slack, Some(APP_TOKEN), &[]).await;
    assert_eq!(r.status(), 503);
    let v: Value = open_call(&slack, Some(APP_TOKEN), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"ok": false, "error": "internal_error"}));
    let v: Value = open_call(&slack, Some(APP_TOKEN), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true, "faults are consumed: {v}");
    assert_eq!(slack.call_count("apps.connections.open"), 4);
}

#[tokio::test]
async fn a_ticket_is_single_use_and_an_unknown_one_gets_409() {
    let (slack, socket) = fakes().await;
    let url = fresh_url(&slack).await;
    let _first = connect(&url).await;
    let reused = tokio_tungstenite::connect_async(&url).await;
    match reused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 409);
            assert!(resp.body().as_ref().is_none_or(|b| b.is_empty()));
        }
        other => panic!(
            "a reused ticket must be refused with 409: {:?}",
            other.map(|_| ())
        ),
    }
    let forged = url.replace("ticket=", "ticket=0");
    assert!(tokio_tungstenite::connect_async(&forged).await.is_err());
    let statuses: Vec<u16> = socket.handshakes().iter().map(|h| h.status).collect();
    assert_eq!(statuses, vec![101, 409, 409]);
}

#[tokio::test]
async fn hello_comes_first_with_the_app_and_the_number_of_connections() {
    let (slack, _socket) = fakes().await;
    let (_a, hello_a) = connected(&slack).await;
    let (_b, hello_b) = connected(&slack).await;
    assert_eq!(hello_a["type"], "hello");
    assert_eq!(hello_a["connection_info"]["app_id"], APP_ID);
    assert_eq!(hello_a["num_connections"], 1);
    assert_eq!(hello_b["num_connections"], 2);
    assert_eq!(hello_a["debug_info"]["approximate_connection_time"], 3600);
    let mut ws = connect(&format!(
        "{}&debug_reconnects=true",
        fresh_url(&slack).await
    ))
    .await;
    assert_eq!(
        next_json(&mut ws).await["debug_info"]["approximate_connection_time"],
        360
    );
}

#[tokio::test]
async fn hello_can_be_held_until_a_test_releases_it() {
    let (slack, socket) = fakes().await;
    socket.hold_hello(true);
    let mut ws = connect(&fresh_url(&slack).await).await;
    let early = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(early.is_err(), "no hello while held: {early:?}");
    assert!(socket.routable().is_empty());
    socket.release_hello();
    assert_eq!(next_json(&mut ws).await["type"], "hello");
    socket.wait_for_routable(1, WAIT).await;
}

#[tokio::test]
async fn the_eleventh_connection_is_refused_with_too_many_websockets() {
    let (slack, socket) = fakes().await;
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(connected(&slack).await.0);
    }
    let mut eleventh = connect(&fresh_url(&slack).await).await;
    let m = next_json(&mut eleventh).await;
    assert_eq!(m["type"], "disconnect");
    assert_eq!(m["reason"], "too_many_websockets");
    let closed = tokio::time::timeout(WAIT, eleventh.next()).await.unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{closed:?}"
    );
    assert_eq!(
        socket.routable().len(),
        10,
        "the refused one gets no envelopes"
    );
}

#[tokio::test]
async fn envelopes_say_whether_they_accept_a_response_payload_and_acks_are_recorded() {
    let (slack, socket) = fakes().await;
    let (mut ws, _) = connected(&slack).await;
    socket.wait_for_routable(1, WAIT).await;

    let cases = [
        (
            socket.send_slash_command(json!({"command": "/x", "user_id": "U1", "text": ""})),
            "slash_commands",
            true,
        ),
        (
            socket.send_interactive(
                json!({"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1"}}),
            ),
            "interactive",
            true,
        ),
        (
            socket.send_interactive(json!({"type": "block_suggestion", "user": {"id": "U1"}})),
            "interactive",
            true,
        ),
        (
            socket.send_interactive(block_actions("message")),
            "interactive",
            true,
        ),
        (
            socket.send_interactive(block_actions("view")),
            "interactive",
            false,
        ),
        (
            socket.send_interactive(json!({"type": "view_closed", "user": {"id": "U1"}})),
            "interactive",
            false,
        ),
        (
            socket.send_interactive(
                json!({"type": "shortcut", "user": {"id": "U1"}, "callback_id": "s"}),
            ),
            "interactive",
            false,
        ),
    ];
    for (sent, kind, accepts) in cases {
        let id = sent.expect("a connection is open");
        let e = next_json(&mut ws).await;
        assert_eq!(e["envelope_id"], id.as_str());
        assert_eq!(e["type"], kind);
        assert_eq!(e["accepts_response_payload"], accepts, "{e}");
        assert!(
            e.get("retry_attempt").is_none(),
            "only events carry retry_attempt"
        );
    }
    let ev = socket.send_event(
        json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "reaction_added"}}),
    );
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["accepts_response_payload"].as_bool()),
        (Some("events_api"), Some(false))
    );
    assert_eq!(
        (e["retry_attempt"].as_u64(), e["retry_reason"].as_str()),
        (Some(0), Some(""))
    );

    // Acks: a payload, an empty payload object, and a payload where none is accepted.
    let d = socket.deliveries();
    let ack = |id: &str, payload: Option<Value>| {
        let mut v = json!({"envelope_id": id});
        if let Some(p) = payload {
            v["payload"] = p;
        }
        Message::text(v.to_string())
    };
    ws.send(ack(&d[0].envelope_id, Some(json!({"text": "hi"}))))
        .await
        .unwrap();
    ws.send(ack(&d[1].envelope_id, Some(json!({}))))
        .await
        .unwrap();
    ws.send(ack(&ev, Some(json!({"text": "ignored"}))))
        .await
        .unwrap();
    let a0 = socket.wait_for_ack(&d[0].envelope_id, WAIT).await;
    assert_eq!(a0.payload, Some(json!({"text": "hi"})));
    assert!(a0.latency.is_some_and(|l| l < Duration::from_secs(3)) && !a0.late);
    let a1 = socket.wait_for_ack(&d[1].envelope_id, WAIT).await;
    assert_eq!(a1.payload, None, "payload {{}} is an empty ack");
    let a2 = socket.wait_for_ack(&ev, WAIT).await;
    assert!(a2.ignored_payload && a2.payload.is_none());
}

#[tokio::test]
async fn interactions_and_commands_fail_at_once_without_a_connection() {
    let (_slack, socket) = fakes().await;
    assert_eq!(
        socket.send_interactive(block_actions("message")),
        Err(DispatchFailed)
    );
    assert_eq!(
        socket.send_slash_command(json!({"command": "/x"})),
        Err(DispatchFailed)
    );
}

#[tokio::test]
async fn an_unacknowledged_event_comes_again_as_a_new_envelope_and_a_late_ack_does_not_stop_it() {
    let (slack, socket) = fakes().await;
    socket.set_redelivery_delays([
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(200),
    ]);
    let (mut ws, _) = connected(&slack).await;
    socket.wait_for_routable(1, WAIT).await;
    let first = socket.send_event(json!({"type": "event_callback", "event_id": "EvRetry", "event": {"type": "reaction_added"}}));
    let e0 = next_json(&mut ws).await;
    assert_eq!(e0["envelope_id"], first.as_str());

    // No ack within 3 s: retry 1, a new envelope_id, same event.
    let e1 = tokio::time::timeout(Duration::from_secs(5), next_json(&mut ws))
        .await
        .unwrap();
    assert_ne!(e1["envelope_id"], e0["envelope_id"]);
    assert_eq!(e1["payload"], e0["payload"]);
    assert_eq!(
        (e1["retry_attempt"].as_u64(), e1["retry_reason"].as_str()),
        (Some(1), Some("timeout"))
    );
    // A late ack of the first delivery does not cancel anything; acking retry 1 in time does.
    ws.send(Message::text(json!({"envelope_id": first}).to_string()))
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"envelope_id": e1["envelope_id"]}).to_string(),
    ))
    .await
    .unwrap();
    assert!(socket.wait_for_ack(&first, WAIT).await.late);
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let all = socket.deliveries_of_event("EvRetry");
    assert_eq!(all.len(), 2, "no retry after an ack in time: {all:#?}");
    assert!(socket.given_up_events().is_empty());
}

#[tokio::test]
async fn refresh_warns_then_stops_routing_and_closes_after_the_grace_period() {
    let (slack, socket) = fakes().await;
    socket.set_grace(Duration::from_millis(300));
    let (mut a, _) = connected(&slack).await;
    let ids = socket.wait_for_routable(1, WAIT).await;
    let (mut b, _) = connected(&slack).await;
    socket.wait_for_routable(2, WAIT).await;

    socket.refresh(ids[0], Some(Duration::from_millis(200)));
    let w = next_json(&mut a).await;
    assert_eq!(
        (w["type"].as_str(), w["reason"].as_str()),
        (Some("disconnect"), Some("warning"))
    );
    assert!(
        w["debug_info"]["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("applink-fake-"))
    );
    assert!(
        socket.routable().contains(&ids[0]),
        "still routed to after a warning"
    );
    let r = next_json(&mut a).await;
    assert_eq!(r["reason"], "refresh_requested");
    assert!(!socket.routable().contains(&ids[0]));
    for _ in 0..5 {
        socket.send_slash_command(json!({"command": "/x"})).unwrap();
        assert_eq!(
            next_json(&mut b).await["type"],
            "slash_commands",
            "new envelopes go elsewhere"
        );
    }
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1000));
}

#[tokio::test]
async fn an_abrupt_drop_ends_the_connection_without_a_close_frame() {
    let (slack, socket) = fakes().await;
    let (mut ws, _) = connected(&slack).await;
    let ids = socket.wait_for_routable(1, WAIT).await;
    socket.drop_abruptly(ids[0]);
    let end = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        !matches!(end, Some(Ok(Message::Close(_)))),
        "no close frame: {end:?}"
    );
    socket.wait_for_open_at_most(0, WAIT).await;
}

#[tokio::test]
async fn the_fake_pings_answers_pings_and_drops_a_stalled_connection_after_the_pong_timeout() {
    let (slack, socket) = fakes().await;
    socket.set_keepalive(Duration::from_millis(100), Duration::from_millis(300));
    let (mut ws, _) = connected(&slack).await;
    let ids = socket.wait_for_routable(1, WAIT).await;
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let mut got_ping = false;
    let mut got_pong = false;
    while !(got_ping && got_pong) {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => got_ping = true,
            Some(Ok(Message::Pong(p))) => got_pong = p.as_ref() == b"hi",
            other => panic!("{other:?}"),
        }
    }
    socket.stall(ids[0]);
    // Keep reading (so our side would answer any ping): the silence is the fake's alone.
    tokio::spawn(async move { while ws.next().await.is_some() {} });
    // The stalled side neither reads our pongs nor writes: after the pong timeout it is dropped.
    socket
        .wait_for_open_at_most(0, Duration::from_secs(3))
        .await;
    assert!(socket.connections()[0].stalled);
}
