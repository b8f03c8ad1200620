//! Pager incidents end to end: the real service on SQLite against the fake PagerDuty, Opsgenie
//! and Grafana OnCall of tests/support/fake_pager.rs (reference pager-incidents.md) and the fake
//! Slack. Webhooks are delivered the way each product delivers them (signatures, retries,
//! duplicates, out-of-order events), clicks the way Slack sends them.

use std::time::Duration;

use serde_json::{Value, json};
use slackops::config::{PagerProvider, PagerRoute, Principals, Secret, SecretList, SystemEntry};

use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_pager::{
    self, FakePager, GF_TOKEN, GF_TOKEN_OWNER, GF_WEBHOOK_TOKEN, GfGroup, OG_KEY, OG_WEBHOOK_TOKEN,
    OgAlert, PD_SECRET, PD_TOKEN, PdIncident, now_ms,
};
use crate::support::fake_slack::Message;

const CHANNEL: &str = "C0PAGE";
/// Where outages are announced.
const OUTAGES: &str = "C0OUTAGE";
const ONCALL_GROUP: &str = "S0ONCALL";
/// On call (in the group), a PagerDuty user.
const BOB: &str = "U0BOB";
const BOB_EMAIL: &str = "bob@example.com";
/// On call too.
const CAROL: &str = "U0CAROL";
const CAROL_EMAIL: &str = "carol@example.com";
/// A configured responder without a PagerDuty account.
const DAVE: &str = "U0DAVE";
/// Neither on call nor a responder.
const MALLORY: &str = "U0MALLORY";
const WAIT: Duration = Duration::from_secs(15);
/// Time after which a duplicate (a second message, a second call) would have shown up.
const SETTLE: Duration = Duration::from_millis(800);

const ACK: &str = "pager:acknowledge";
const RESOLVE: &str = "pager:resolve";
const ANNOUNCE: &str = "pager:announce";

struct Pager {
    app: TestApp,
    fake: FakePager,
}

async fn pager_app() -> Pager {
    let fake = FakePager::start().await;
    let (pd, og, gf) = (
        fake.pagerduty_url(),
        fake.opsgenie_url(),
        fake.grafana_url(),
    );
    let b = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(move |s| {
            s.oncall.pagerduty.base_url = pd.parse().expect("url");
            s.oncall.pagerduty.token = Secret::new(PD_TOKEN);
            s.oncall.opsgenie.base_url = Some(og.parse().expect("url"));
            s.oncall.opsgenie.token = Secret::new(OG_KEY);
            s.oncall.grafana.base_url = Some(gf.parse().expect("url"));
            s.oncall.grafana.token = Secret::new(GF_TOKEN);
            s.oncall.max_attempts = 1;
            s.pager.pagerduty.webhook_secrets =
                SecretList(vec![Secret::new("an-older-secret"), Secret::new(PD_SECRET)]);
            s.pager.opsgenie.webhook_token = Secret::new(OG_WEBHOOK_TOKEN);
            s.pager.opsgenie.request_check_ms = 100;
            s.pager.grafana_oncall.webhook_token = Secret::new(GF_WEBHOOK_TOKEN);
            let route = |provider, service: &str| PagerRoute {
                provider,
                service: service.into(),
                channel: CHANNEL.into(),
                oncall_group: Some(ONCALL_GROUP.into()),
                systems: vec!["checkout".into()],
            };
            s.pager.routes = vec![
                route(PagerProvider::Pagerduty, "Checkout API"),
                route(PagerProvider::Opsgenie, "ops-team"),
                route(PagerProvider::GrafanaOncall, "CI1"),
            ];
            s.pager.responders = Principals {
                users: vec![DAVE.into()],
                ..Principals::default()
            };
            s.announcements.channel = Some(OUTAGES.into());
            s.announcements.systems = vec![SystemEntry {
                id: "checkout".into(),
                name: "Checkout".into(),
                group: None,
            }];
            s.slack.post_rate_per_channel = 1000.0;
            s.slack.post_burst_per_channel = 1000;
        });
    b.slack.add_channel(CHANNEL, "pages");
    b.slack.add_channel(OUTAGES, "outages");
    b.slack.add_user(BOB, "bob", BOB_EMAIL, "UTC");
    b.slack.add_user(CAROL, "carol", CAROL_EMAIL, "UTC");
    b.slack.add_user(DAVE, "dave", "dave@example.com", "UTC");
    b.slack
        .add_user(MALLORY, "mallory", "mallory@example.com", "UTC");
    b.slack
        .add_usergroup(ONCALL_GROUP, "checkout-oncall", &[BOB, CAROL]);
    fake.pd_add_user("PBOB", BOB_EMAIL, "Bob");
    fake.pd_add_user("PCAROL", CAROL_EMAIL, "Carol");
    let app = b.spawn().await;
    fake.set_target(&app.address);
    Pager { app, fake }
}

fn pd_incident(id: &str) -> PdIncident {
    PdIncident {
        id: id.into(),
        title: "Checkout <!channel> 500s".into(),
        service_id: "PSVC1".into(),
        service_name: "Checkout API".into(),
        status: "triggered".into(),
        assignees: vec![("PBOB".into(), "Bob".into())],
        last_change_ms: now_ms() - 60_000,
    }
}

impl Pager {
    /// An incident triggered in PagerDuty and delivered; its message once posted.
    async fn triggered(&self, id: &str) -> Message {
        let inc = pd_incident(id);
        self.fake.pd_add(inc.clone());
        let event = FakePager::pd_event(&inc, "incident.triggered", inc.last_change_ms, None);
        assert_eq!(self.deliver(&event).await, 202);
        self.message_of(id).await
    }

    async fn deliver(&self, event: &Value) -> u16 {
        self.fake
            .pd_deliver(&self.app.address, event, &[PD_SECRET])
            .await
    }

    /// The one message about a provider incident.
    async fn message_of(&self, incident: &str) -> Message {
        let slack = &self.app.slack;
        eventually(WAIT, &format!("the message of {incident}"), || async {
            slack
                .messages_in(CHANNEL)
                .into_iter()
                .find(|m| m.blocks.to_string().contains(incident))
        })
        .await
    }

    /// The message once `pred` holds for it.
    async fn message_when(&self, ts: &str, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        let slack = &self.app.slack;
        eventually(WAIT, what, || async {
            slack.message(CHANNEL, ts).filter(|m| pred(m))
        })
        .await
    }

    /// A click as Slack sends it; the response_url the layer answers on.
    async fn click(&self, user: &str, action_id: &str, msg: &Message) -> (u16, String) {
        let url = self.app.slack.response_url_for_message(CHANNEL, &msg.ts);
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0FAKE"},
            "api_app_id": "A0APP", "token": "legacy",
            "container": {"type": "message", "message_ts": msg.ts, "channel_id": CHANNEL, "is_ephemeral": false},
            "trigger_id": self.app.slack.trigger_id(),
            "team": {"id": "T0FAKE", "domain": "fake"},
            "channel": {"id": CHANNEL, "name": "pages"},
            "message": {"type": "message", "ts": msg.ts, "text": msg.text},
            "state": {"values": {}},
            "response_url": url,
            "actions": [{"action_id": action_id, "block_id": "pager_act", "type": "button",
                         "value": row_id(msg), "action_ts": crate::helpers::action_ts()}]
        });
        let status = self.app.interaction(&payload).await.status().as_u16();
        (status, url)
    }

    /// The private notices (chat.postEphemeral) sent to `user`.
    fn notices(&self, user: &str) -> Vec<String> {
        self.app
            .slack
            .ephemerals()
            .into_iter()
            .filter(|e| e.user == user)
            .map(|e| e.text)
            .collect()
    }

    async fn reply(&self, url: &str) -> String {
        self.app
            .slack
            .wait_for_response_url_posts(url, 1, WAIT)
            .await;
        self.app.slack.response_url_posts(url)[0].body["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The incident row id the message's buttons carry.
fn row_id(msg: &Message) -> String {
    buttons(msg)
        .first()
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// (action_id, value) of the message's buttons.
fn buttons(msg: &Message) -> Vec<(String, String)> {
    msg.blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn action_ids(msg: &Message) -> Vec<String> {
    buttons(msg).into_iter().map(|(a, _)| a).collect()
}

fn shows(msg: &Message, text: &str) -> bool {
    msg.blocks.to_string().contains(text)
}

#[tokio::test]
async fn a_triggered_incident_is_posted_once_across_duplicate_deliveries() {
    // Arrange
    let p = pager_app().await;
    let inc = pd_incident("PINC1");
    p.fake.pd_add(inc.clone());
    let event = FakePager::pd_event(&inc, "incident.triggered", inc.last_change_ms, None);
    let bytes = event.to_string().into_bytes();
    let sig = slackops::pager::webhook::sign_pagerduty(PD_SECRET, &bytes);

    // Act: one delivery retried with its X-Webhook-Id, then the same event in a new delivery
    let first = p
        .fake
        .pd_deliver_raw(&p.app.address, &bytes, &sig, "wh-1")
        .await;
    let retry = p
        .fake
        .pd_deliver_raw(&p.app.address, &bytes, &sig, "wh-1")
        .await;
    let again = p
        .fake
        .pd_deliver_raw(&p.app.address, &bytes, &sig, "wh-2")
        .await;

    // Assert
    assert_eq!(
        (first, retry, again),
        (202, 202, 202),
        "every delivery is answered 2xx"
    );
    let msg = p.message_of("PINC1").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(p.app.slack.messages_in(CHANNEL).len(), 1, "posted once");
    let text = msg.blocks.to_string();
    assert!(
        text.contains("Checkout &lt;!channel&gt; 500s"),
        "title escaped: {text}"
    );
    assert!(
        text.contains("https://acme.pagerduty.com/incidents/PINC1"),
        "links to the incident"
    );
    assert!(
        text.contains("<!subteam^S0ONCALL>"),
        "mentions the on-call group"
    );
    assert!(
        text.contains("Checkout API") && text.contains("P1"),
        "service and priority"
    );
    assert!(
        text.contains(&format!("<@{BOB}>")),
        "the assignee as a Slack mention: {text}"
    );
    assert_eq!(action_ids(&msg), [ACK, RESOLVE, ANNOUNCE]);
    let metrics = p.app.metrics_text().await;
    assert!(
        metrics.contains(
            r#"slackops_pager_webhook_events_total{provider="pagerduty",reason="duplicate"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_signatures_and_tokens_are_refused_with_nothing_parsed() {
    let p = pager_app().await;
    let client = reqwest::Client::new();
    let post = |path: &str, auth: Option<(&str, &str)>, body: &'static str| {
        let mut r = client
            .post(p.app.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some((k, v)) = auth {
            r = r.header(k, v);
        }
        r.send()
    };
    // A body that is not even JSON: a parse would answer 400, so 401/403 prove nothing was read.
    let garbage = "{not json";
    let wrong_sig = format!("v1={}", "ab".repeat(32));
    let cases = [
        (
            "/pager/pagerduty",
            Some(("x-pagerduty-signature", wrong_sig.as_str())),
            403,
        ),
        ("/pager/pagerduty", None, 400),
        (
            "/pager/opsgenie",
            Some(("authorization", "Bearer not-the-token")),
            401,
        ),
        (
            "/pager/opsgenie",
            Some(("authorization", OG_WEBHOOK_TOKEN)),
            401,
        ),
        ("/pager/opsgenie", None, 401),
        (
            "/pager/grafana-oncall",
            Some(("authorization", "Bearer gf-webhook-token-0123456789")),
            401,
        ),
        ("/pager/grafana-oncall", None, 401),
    ];
    for (path, auth, want) in cases {
        let got = post(path, auth, garbage)
            .await
            .expect("answer")
            .status()
            .as_u16();
        assert_eq!(got, want, "{path} with {auth:?}");
    }
    // A correctly signed event with one altered byte.
    let inc = pd_incident("PINC2");
    let event = FakePager::pd_event(&inc, "incident.triggered", inc.last_change_ms, None);
    let bytes = event.to_string().into_bytes();
    let sig = slackops::pager::webhook::sign_pagerduty(PD_SECRET, &bytes);
    let altered = event.to_string().replace("PINC2", "PINC3").into_bytes();
    let got = p
        .fake
        .pd_deliver_raw(&p.app.address, &altered, &sig, "wh-x")
        .await;
    assert_eq!(
        got, 403,
        "an altered body is refused (PagerDuty does not redeliver 4xx)"
    );

    tokio::time::sleep(SETTLE).await;
    assert!(
        p.app.slack.messages_in(CHANNEL).is_empty(),
        "nothing posted"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pager_incidents")
        .fetch_one(p.app.state.db().pool())
        .await
        .expect("count");
    assert_eq!(rows, 0, "nothing recorded");
    let metrics = p.app.metrics_text().await;
    assert!(
        metrics.contains(
            r#"slackops_pager_webhook_refusals_total{provider="pagerduty",reason="wrong"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"slackops_pager_webhook_refusals_total{provider="opsgenie",reason="wrong"} 2"#
        ),
        "{metrics}"
    );
    // The right token, verbatim for Grafana OnCall and as a Bearer for Opsgenie, is accepted.
    let ok = post(
        "/pager/grafana-oncall",
        Some(("authorization", GF_WEBHOOK_TOKEN)),
        r#"{"event": {"type": "escalation", "time": "2026-01-05T10:00:00Z"}}"#,
    )
    .await
    .expect("answer");
    assert_eq!(ok.status().as_u16(), 202);
}

#[tokio::test]
async fn a_double_click_acknowledges_once_as_the_person_who_clicked() {
    // Arrange
    let p = pager_app().await;
    let msg = p.triggered("PINC4").await;

    // Act: the same person clicks twice at once
    let ((s1, u1), (s2, u2)) = tokio::join!(p.click(BOB, ACK, &msg), p.click(BOB, ACK, &msg));

    // Assert
    assert_eq!((s1, s2), (200, 200));
    let acked = p
        .message_when(&msg.ts, "the acknowledgement shown", |m| {
            shows(m, "Acknowledged") && shows(m, &format!("by <@{BOB}>"))
        })
        .await;
    tokio::time::sleep(SETTLE).await;
    let puts = p.fake.writes();
    assert_eq!(puts.len(), 1, "one PagerDuty call: {puts:?}");
    assert_eq!(
        puts[0].from.as_deref(),
        Some(BOB_EMAIL),
        "From: the person who clicked"
    );
    assert_eq!(
        puts[0].body,
        json!({"incident": {"type": "incident_reference", "status": "acknowledged"}})
    );
    assert_eq!(
        p.fake.pd_incident("PINC4").expect("incident").status,
        "acknowledged"
    );
    assert_eq!(
        action_ids(&acked),
        [RESOLVE, ANNOUNCE],
        "no Acknowledge button any more"
    );
    let told = [u1, u2]
        .iter()
        .filter(|u| !p.app.slack.response_url_posts(u).is_empty())
        .count();
    assert_eq!(told, 1, "the second click is told it did nothing");
}

#[tokio::test]
async fn two_people_resolving_at_once_give_one_call_and_the_other_is_told() {
    let p = pager_app().await;
    let msg = p.triggered("PINC5").await;

    let ((_, bob_url), (_, carol_url)) =
        tokio::join!(p.click(BOB, RESOLVE, &msg), p.click(CAROL, RESOLVE, &msg));

    let done = p
        .message_when(&msg.ts, "resolved", |m| shows(m, "Resolved"))
        .await;
    tokio::time::sleep(SETTLE).await;
    let puts = p.fake.writes();
    assert_eq!(puts.len(), 1, "one call: {puts:?}");
    let winner = if puts[0].from.as_deref() == Some(BOB_EMAIL) {
        BOB
    } else {
        CAROL
    };
    let loser_url = if winner == BOB { carol_url } else { bob_url };
    let told = p.reply(&loser_url).await;
    assert!(
        told.contains(&format!("<@{winner}>")) && told.contains("resolving"),
        "{told}"
    );
    assert!(
        shows(&done, &format!("by <@{winner}>")),
        "credited to the winner"
    );
    assert!(
        action_ids(&done).is_empty(),
        "a resolved incident has no buttons"
    );
}

#[tokio::test]
async fn an_unauthorized_click_is_refused_privately_and_nothing_is_sent() {
    let p = pager_app().await;
    let msg = p.triggered("PINC6").await;

    let (status, url) = p.click(MALLORY, ACK, &msg).await;

    assert_eq!(status, 200);
    let told = p.reply(&url).await;
    assert!(
        told.contains("on-call") && told.contains("Nothing was sent"),
        "{told}"
    );
    tokio::time::sleep(SETTLE).await;
    assert!(p.fake.writes().is_empty(), "no provider call");
    let now = p.app.slack.message(CHANNEL, &msg.ts).expect("message");
    assert_eq!(
        action_ids(&now),
        [ACK, RESOLVE, ANNOUNCE],
        "buttons unchanged"
    );
}

#[tokio::test]
async fn a_stale_click_never_reopens_an_incident_resolved_elsewhere() {
    let p = pager_app().await;
    let msg = p.triggered("PINC7").await;
    // Resolved in PagerDuty; its webhook has not arrived yet.
    p.fake.pd_set_status("PINC7", "resolved");

    let _ = p.click(BOB, ACK, &msg).await;

    let shown = p
        .message_when(&msg.ts, "resolved shown", |m| shows(m, "Resolved"))
        .await;
    let told = eventually(WAIT, "the person told", || async {
        p.notices(BOB)
            .into_iter()
            .find(|t| t.contains("already resolved"))
    })
    .await;
    assert!(
        told.contains("Nothing was sent") || told.contains("nothing was sent"),
        "{told}"
    );
    assert!(
        p.fake.writes().is_empty(),
        "no PUT: acknowledging would reopen it"
    );
    assert_eq!(
        p.fake.pd_incident("PINC7").expect("incident").status,
        "resolved"
    );
    assert!(action_ids(&shown).is_empty());
}

#[tokio::test]
async fn changes_made_elsewhere_update_the_message_and_older_events_never_win() {
    let p = pager_app().await;
    let msg = p.triggered("PINC8").await;
    let mut inc = pd_incident("PINC8");
    let t0 = inc.last_change_ms;
    inc.status = "acknowledged".into();
    let acked = FakePager::pd_event(
        &inc,
        "incident.acknowledged",
        t0 + 1000,
        Some(("PCAROL", "Carol")),
    );
    inc.status = "resolved".into();
    // Auto-resolve: no agent.
    let resolved = FakePager::pd_event(&inc, "incident.resolved", t0 + 2000, None);

    // Act: the resolve arrives before the acknowledge
    assert_eq!(p.deliver(&resolved).await, 202);
    p.message_when(&msg.ts, "resolved", |m| shows(m, "Resolved"))
        .await;
    assert_eq!(p.deliver(&acked).await, 202);
    tokio::time::sleep(SETTLE).await;

    // Assert: still resolved, updated in place
    let now = p.app.slack.message(CHANNEL, &msg.ts).expect("message");
    assert!(
        shows(&now, "Resolved") && !shows(&now, "Acknowledged"),
        "{:?}",
        now.blocks
    );
    assert!(action_ids(&now).is_empty());
    assert_eq!(
        p.app.slack.messages_in(CHANNEL).len(),
        1,
        "the same message"
    );
    assert!(now.updated >= 1);
}

#[tokio::test]
async fn a_person_without_a_pagerduty_account_is_told_why_and_the_buttons_come_back() {
    let p = pager_app().await;
    let msg = p.triggered("PINC9").await;

    let _ = p.click(DAVE, ACK, &msg).await;

    let told = eventually(WAIT, "the refusal told", || async {
        p.notices(DAVE)
            .into_iter()
            .find(|t| t.contains("Requester User Not Found"))
    })
    .await;
    assert!(told.contains("not a user"), "{told}");
    let back = p
        .message_when(&msg.ts, "buttons back", |m| action_ids(m).len() == 3)
        .await;
    assert!(shows(&back, "Triggered"));
    assert_eq!(
        p.fake.pd_incident("PINC9").expect("incident").status,
        "triggered"
    );
}

#[tokio::test]
async fn provider_failures_are_retried_from_the_queue_and_act_once() {
    let p = pager_app().await;
    let msg = p.triggered("PINC10").await;
    p.fake.fail_writes("pd", 500, 1);

    let _ = p.click(BOB, RESOLVE, &msg).await;

    p.message_when(&msg.ts, "resolved after a retry", |m| {
        shows(m, "Resolved") && shows(m, &format!("<@{BOB}>"))
    })
    .await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(p.fake.writes().len(), 2, "the failed call and its retry");
    assert_eq!(
        p.fake.pd_incident("PINC10").expect("incident").status,
        "resolved"
    );
    assert!(p.notices(BOB).is_empty(), "nothing to tell: it worked");
}

fn og_alert(id: &str) -> OgAlert {
    OgAlert {
        id: id.into(),
        message: "Queue backlog".into(),
        team_id: "team-1".into(),
        team_name: "ops-team".into(),
        closed: false,
        acknowledged: false,
        updated_ns: now_ms() * 1_000_000,
    }
}

#[tokio::test]
async fn opsgenie_acknowledge_waits_for_the_request_status() {
    let p = pager_app().await;
    let alert = og_alert("og-1");
    p.fake.og_add(alert.clone());
    let create = FakePager::og_event(&alert, "Create", "System");
    let auth = format!("Bearer {OG_WEBHOOK_TOKEN}");
    assert_eq!(
        p.fake
            .og_deliver(&p.app.address, &create, Some(&auth))
            .await,
        202
    );
    let msg = p.message_of("og-1").await;

    let _ = p.click(BOB, ACK, &msg).await;

    let acked = p
        .message_when(&msg.ts, "acknowledged", |m| shows(m, "Acknowledged"))
        .await;
    assert!(shows(&acked, &format!("<@{BOB}>")));
    let writes = p.fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].from.as_deref(),
        Some(BOB_EMAIL),
        "Opsgenie's `user`"
    );
    assert!(p.fake.og_alert("og-1").expect("alert").acknowledged);
}

#[tokio::test]
async fn an_opsgenie_request_that_fails_is_told_instead_of_shown_as_done() {
    let p = pager_app().await;
    let alert = og_alert("og-2");
    p.fake.og_add(alert.clone());
    let auth = format!("Bearer {OG_WEBHOOK_TOKEN}");
    p.fake
        .og_deliver(
            &p.app.address,
            &FakePager::og_event(&alert, "Create", "System"),
            Some(&auth),
        )
        .await;
    let msg = p.message_of("og-2").await;
    p.fake.og_fail_next_request("Alert does not exist");

    let _ = p.click(CAROL, RESOLVE, &msg).await;

    let told = eventually(WAIT, "the failure told", || async {
        p.notices(CAROL)
            .into_iter()
            .find(|t| t.contains("Alert does not exist"))
    })
    .await;
    assert!(told.contains("did not"), "{told}");
    let back = p
        .message_when(&msg.ts, "buttons back", |m| action_ids(m).len() == 3)
        .await;
    assert!(!shows(&back, "Resolved"), "never shown as done");
}

#[tokio::test]
async fn grafana_oncall_acts_as_the_token_owner_and_credits_the_slack_user() {
    let p = pager_app().await;
    p.fake.gf_add(GfGroup {
        id: "IG1".into(),
        title: "Disk full".into(),
        integration_id: "CI1".into(),
        state: "firing".into(),
        created_ms: now_ms() - 10_000,
        acknowledged_ms: None,
        resolved_ms: None,
    });
    let created = p.fake.gf_event("IG1", "alert group created", None);
    assert_eq!(
        p.fake
            .gf_deliver(&p.app.address, &created, Some(GF_WEBHOOK_TOKEN))
            .await,
        202
    );
    let msg = p.message_of("IG1").await;

    let _ = p.click(CAROL, ACK, &msg).await;

    let acked = p
        .message_when(&msg.ts, "acknowledged", |m| shows(m, "Acknowledged"))
        .await;
    // The webhook OnCall sends for it names the token's owner; the message keeps the person.
    tokio::time::sleep(SETTLE).await;
    let now = p.app.slack.message(CHANNEL, &msg.ts).expect("message");
    assert!(shows(&acked, &format!("by <@{CAROL}>")));
    assert!(
        shows(&now, &format!("by <@{CAROL}>")) && !shows(&now, GF_TOKEN_OWNER),
        "{:?}",
        now.blocks
    );
    assert_eq!(p.fake.writes().len(), 1);
    assert_eq!(p.fake.gf_group("IG1").expect("group").state, "acknowledged");
}

#[tokio::test]
async fn announce_outage_opens_the_form_prefilled_and_the_announcement_links_back() {
    let p = pager_app().await;
    let msg = p.triggered("PINC11").await;

    let (status, _) = p.click(BOB, ANNOUNCE, &msg).await;

    assert_eq!(status, 200);
    let view = eventually(WAIT, "the outage form", || async {
        p.app.slack.views().into_iter().next()
    })
    .await;
    let v = view.view.to_string();
    assert_eq!(view.view["callback_id"], "announcements:new");
    assert!(
        v.contains("https://acme.pagerduty.com/incidents/PINC11"),
        "the summary links back: {v}"
    );
    assert!(
        v.contains("Checkout <!channel> 500s") || v.contains("Checkout &lt;!channel&gt; 500s"),
        "summary from the title"
    );
    let systems = view.view["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .find(|b| b["block_id"] == "systems")
        .cloned()
        .expect("systems");
    assert_eq!(
        systems["element"]["initial_options"][0]["value"], "checkout",
        "the route's systems"
    );
    let meta: Value =
        serde_json::from_str(view.view["private_metadata"].as_str().unwrap_or("{}")).expect("meta");
    assert_eq!(
        meta["i"], "https://acme.pagerduty.com/incidents/PINC11",
        "the link travels with the form"
    );

    // The person rewrites the summary, dropping the link; the announcement still links back.
    let text = |v: &str| json!({"value": {"type": "plain_text_input", "value": v}});
    let select =
        |v: &str| json!({"value": {"type": "static_select", "selected_option": {"value": v}}});
    let user = |u: &str| json!({"value": {"type": "users_select", "selected_user": u}});
    let values = json!({
        "summary": text("Checkout fails for everyone"),
        "systems": {"value": {"type": "multi_static_select", "selected_options": [{"value": "checkout"}]}},
        "severity": select("major"),
        "eta": select("2h"),
        "resolution_assignee": user(BOB),
        "communication_assignee": user(BOB),
        "public": {"value": {"type": "checkboxes", "selected_options": []}}
    });
    let v = &view.view;
    let submission = json!({
        "type": "view_submission",
        "user": {"id": BOB, "username": "bob", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE", "domain": "fake"},
        "api_app_id": "A0APP",
        "trigger_id": p.app.slack.trigger_id(),
        "view": {"id": v["id"], "team_id": "T0FAKE", "type": "modal", "callback_id": v["callback_id"],
                 "private_metadata": v["private_metadata"], "hash": v["hash"], "root_view_id": v["id"],
                 "previous_view_id": null, "state": {"values": values}},
        "response_urls": []
    });
    let answer = p.app.interaction(&submission).await;
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.unwrap_or_default();
    assert!(!body.contains("errors"), "the form is accepted: {body}");
    let announced = p.app.slack.wait_for_messages(OUTAGES, 1, WAIT).await;
    let shown = announced[0].blocks.to_string() + &announced[0].text;
    assert!(shown.contains("Checkout fails for everyone"), "{shown}");
    assert!(
        shown.contains("https://acme.pagerduty.com/incidents/PINC11"),
        "links back to the incident: {shown}"
    );
}

#[tokio::test]
async fn pager_webhooks_on_postgres_post_once_across_concurrent_duplicates() {
    let Some(db) =
        TestDb::postgres("pager_webhooks_on_postgres_post_once_across_concurrent_duplicates").await
    else {
        return;
    };
    let fake = FakePager::start().await;
    let b = TestAppBuilder::new(db).await.settings(|s| {
        s.oncall.pagerduty.token = Secret::new(PD_TOKEN);
        s.pager.pagerduty.webhook_secrets = SecretList(vec![Secret::new(PD_SECRET)]);
        s.pager.routes = vec![PagerRoute {
            provider: PagerProvider::Pagerduty,
            service: "*".into(),
            channel: CHANNEL.into(),
            ..Default::default()
        }];
    });
    b.slack.add_channel(CHANNEL, "pages");
    let app = b.spawn().await;
    let inc = pd_incident("PPG1");
    let event = FakePager::pd_event(&inc, "incident.triggered", inc.last_change_ms, None);
    let (a, b2, c) = tokio::join!(
        fake.pd_deliver(&app.address, &event, &[PD_SECRET]),
        fake.pd_deliver(&app.address, &event, &[PD_SECRET]),
        fake.pd_deliver(&app.address, &event, &[PD_SECRET])
    );
    assert_eq!((a, b2, c), (202, 202, 202));
    app.slack.wait_for_messages(CHANNEL, 1, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(app.slack.messages_in(CHANNEL).len(), 1);
    let _ = fake_pager::iso(0);
}

#[tokio::test]
async fn opsgenie_events_out_of_order_never_overwrite_a_newer_state() {
    let p = pager_app().await;
    let auth = format!("Bearer {OG_WEBHOOK_TOKEN}");
    let mut alert = og_alert("og-3");
    let create = FakePager::og_event(&alert, "Create", "System");
    alert.updated_ns += 1_000_000_000;
    let ack = FakePager::og_event(&alert, "Acknowledge", BOB_EMAIL);
    alert.updated_ns += 1_000_000_000;
    let close = FakePager::og_event(&alert, "Close", CAROL_EMAIL);

    // Opsgenie does not promise an order: the close overtakes the acknowledge.
    for body in [&create, &close, &ack, &ack] {
        assert_eq!(
            p.fake.og_deliver(&p.app.address, body, Some(&auth)).await,
            202
        );
    }

    let msg = p.message_of("og-3").await;
    let now = p
        .message_when(&msg.ts, "closed", |m| shows(m, "Resolved"))
        .await;
    tokio::time::sleep(SETTLE).await;
    let now = p.app.slack.message(CHANNEL, &now.ts).expect("message");
    assert!(
        shows(&now, "Resolved") && !shows(&now, "Acknowledged"),
        "{:?}",
        now.blocks
    );
    assert!(
        shows(&now, &format!("by <@{CAROL}>")),
        "the closer, through the email mapping"
    );
    assert!(action_ids(&now).is_empty());
    assert_eq!(p.app.slack.messages_in(CHANNEL).len(), 1);
}
