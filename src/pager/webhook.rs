//! What the three products send, authenticated and read into one [`Event`].
//!
//! Authentication comes first and looks only at headers and raw bytes (reference
//! pager-incidents.md §A1 "Signature", §B1 "Authentication", §C1 "Authentication"): a request
//! that fails it is never parsed. Reading is tolerant where the products are loose (unknown
//! event types, actions and fields are accepted and ignored, as PagerDuty asks) and strict only
//! about what an incident needs (its id). Nothing here touches the database or logs a body.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::model::{ACKNOWLEDGED, Actor, Assignee, RESOLVED, TRIGGERED};
use super::settings::{PagerProvider, SecretList};
use crate::oncall::providers::parse_time;
use crate::secret::Secret;

/// Why a webhook was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The endpoint has no secret or token configured.
    Disabled,
    /// No credential header (PagerDuty: no signature header, which it calls malformed).
    Missing,
    /// A credential that does not match.
    Wrong,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Disabled, Refusal::Missing, Refusal::Wrong];
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
        }
    }
}

/// `X-PagerDuty-Signature`: comma-separated `v1=<hex HMAC-SHA256(body)>` entries, any one of
/// which may match any configured secret (rotation). Entries of other versions and non-hex
/// entries are skipped; comparison is constant time (§A1 "Signature").
pub fn verify_pagerduty(
    secrets: &SecretList,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), Refusal> {
    if secrets.is_empty() {
        return Err(Refusal::Disabled);
    }
    let header = header.ok_or(Refusal::Missing)?;
    let signatures: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .collect();
    for secret in secrets.iter() {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        for sig in &signatures {
            if mac.clone().verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Refusal::Wrong)
}

/// `v1=<hex>` for a secret and body (what PagerDuty sends; for tests and tools).
pub fn sign_pagerduty(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Opsgenie: the integration's custom header `Authorization: Bearer <token>` (§B1).
pub fn verify_bearer(token: &Secret, header: Option<&str>) -> Result<(), Refusal> {
    if token.is_empty() {
        return Err(Refusal::Disabled);
    }
    let header = header.ok_or(Refusal::Missing)?;
    let presented = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(Refusal::Wrong)?;
    if token.matches(presented.trim().as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Grafana OnCall: `Authorization` is the configured "Authorization Header" verbatim (§C1).
pub fn verify_verbatim(token: &Secret, header: Option<&str>) -> Result<(), Refusal> {
    if token.is_empty() {
        return Err(Refusal::Disabled);
    }
    let header = header.ok_or(Refusal::Missing)?;
    if token.matches(header.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// One incident event, whichever product sent it.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub provider: PagerProvider,
    /// De-duplication keys: a delivery or event already taken in under any of them is ignored.
    pub keys: Vec<String>,
    /// The event type, for logs.
    pub kind: String,
    pub incident_id: String,
    /// IDs and names of the service, team or integration, for routing.
    pub services: Vec<String>,
    pub service_name: String,
    pub title: String,
    pub urgency: Option<String>,
    pub url: Option<String>,
    pub opened_at: Option<i64>,
    /// The state the event reports, if it reports one.
    pub status: Option<&'static str>,
    /// The provider's time of that state (ms).
    pub at: i64,
    pub by: Actor,
    /// The assignees, when the event says.
    pub assignees: Option<Vec<Assignee>>,
}

fn s(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|x| !x.is_empty())
}

/// A PagerDuty V3 webhook body (§A1 "Envelope", "`data` for an incident"). `Ok(None)` for events
/// that carry no incident (pings, service events, notes and responders, which carry only a
/// reference).
pub fn pagerduty(body: &Value, delivery: Option<&str>) -> Result<Option<Event>, String> {
    let ev = body
        .get("event")
        .filter(|e| e.is_object())
        .ok_or("not a PagerDuty V3 webhook: `event` is missing")?;
    let kind = s(ev, "/event_type").ok_or("event.event_type is missing")?;
    let data = ev.get("data").cloned().unwrap_or(Value::Null);
    if s(ev, "/resource_type").as_deref() != Some("incident")
        || s(&data, "/type").as_deref() != Some("incident")
    {
        return Ok(None);
    }
    let incident_id = s(&data, "/id").ok_or("event.data.id is missing")?;
    let at = parse_time(ev.get("occurred_at")).ok_or("event.occurred_at is not a time")?;
    let mut keys: Vec<String> = delivery
        .map(|d| format!("pagerduty:delivery:{d}"))
        .into_iter()
        .collect();
    if let Some(id) = s(ev, "/id") {
        keys.push(format!("pagerduty:event:{id}"));
    }
    let status = match s(&data, "/status").as_deref() {
        Some("triggered") => Some(TRIGGERED),
        Some("acknowledged") => Some(ACKNOWLEDGED),
        Some("resolved") => Some(RESOLVED),
        _ => None,
    };
    let urgency = match (s(&data, "/priority/summary"), s(&data, "/urgency")) {
        (Some(p), Some(u)) => Some(format!("{p} · {u} urgency")),
        (Some(p), None) => Some(p),
        (None, Some(u)) => Some(format!("{u} urgency")),
        (None, None) => None,
    };
    let assignees = data.get("assignees").and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|u| Assignee {
                id: s(u, "/id"),
                name: s(u, "/summary"),
                email: s(u, "/email"),
            })
            .collect()
    });
    // `agent` is a user or service reference, or null for automation (auto-resolve).
    let by = match ev.get("agent") {
        Some(a) if s(a, "/type").as_deref() == Some("user_reference") => Actor {
            name: s(a, "/summary"),
            ..Actor::default()
        },
        _ => Actor::default(),
    };
    Ok(Some(Event {
        provider: PagerProvider::Pagerduty,
        keys,
        kind,
        services: [s(&data, "/service/id"), s(&data, "/service/summary")]
            .into_iter()
            .flatten()
            .collect(),
        service_name: s(&data, "/service/summary").unwrap_or_default(),
        title: s(&data, "/title").unwrap_or_else(|| incident_id.clone()),
        urgency,
        url: s(&data, "/html_url"),
        opened_at: parse_time(data.get("created_at")),
        status,
        at,
        by,
        assignees,
        incident_id,
    }))
}

/// An Opsgenie webhook integration body (§B1 "Body"). `Ok(None)` for test actions.
pub fn opsgenie(body: &Value) -> Result<Option<Event>, String> {
    let action = s(body, "/action").ok_or("not an Opsgenie webhook: `action` is missing")?;
    let alert = body
        .get("alert")
        .filter(|a| a.is_object())
        .ok_or("`alert` is missing")?;
    if action == "TestAction" {
        return Ok(None);
    }
    let incident_id = s(alert, "/alertId").ok_or("alert.alertId is missing")?;
    let created = alert.get("createdAt").and_then(Value::as_i64);
    // updatedAt is in nanoseconds, createdAt in milliseconds.
    let updated = alert
        .get("updatedAt")
        .and_then(Value::as_i64)
        .map(|ns| ns / 1_000_000);
    let at = updated.or(created).ok_or("alert.updatedAt is missing")?;
    let status = match action.as_str() {
        "Create" | "UnAcknowledge" => Some(TRIGGERED),
        "Acknowledge" => Some(ACKNOWLEDGED),
        "Close" => Some(RESOLVED),
        _ => None,
    };
    let (services, service_name) = opsgenie_teams(body, alert);
    let priority = match alert.get("priority") {
        Some(Value::String(p)) => Some(p.clone()),
        Some(Value::Number(n)) => Some(format!("P{n}")),
        _ => None,
    };
    let username = s(alert, "/username");
    let by = Actor {
        name: username.clone(),
        email: username.filter(|u| u.contains('@')),
        slack: None,
    };
    let assignees = s(alert, "/owner").map(|o| {
        vec![Assignee {
            id: None,
            email: o.contains('@').then(|| o.clone()),
            name: Some(o),
        }]
    });
    Ok(Some(Event {
        provider: PagerProvider::Opsgenie,
        keys: vec![format!(
            "opsgenie:{incident_id}:{action}:{}",
            alert
                .get("updatedAt")
                .map(Value::to_string)
                .unwrap_or_default()
        )],
        kind: action,
        services,
        service_name,
        title: s(alert, "/message").unwrap_or_else(|| incident_id.clone()),
        urgency: priority,
        url: None,
        opened_at: created,
        status,
        at,
        by,
        assignees,
        incident_id,
    }))
}

/// The alert's teams, for routing: team ids, and the ids and names of team responders; and
/// the name to show (the first team responder's, else the integration's).
fn opsgenie_teams(body: &Value, alert: &Value) -> (Vec<String>, String) {
    let mut services: Vec<String> = alert
        .get("teams")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let teams: Vec<&Value> = alert
        .get("responders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("team"))
        .collect();
    for r in &teams {
        services.extend([s(r, "/id"), s(r, "/name")].into_iter().flatten());
    }
    let name = teams
        .first()
        .and_then(|r| s(r, "/name"))
        .or_else(|| s(body, "/integrationName"))
        .unwrap_or_default();
    (services, name)
}

/// A Grafana OnCall outgoing webhook, "Forward All" (§C1 "Payload"). The payload is built from
/// the alert group's state when the webhook runs, so the state reported is `alert_group.state`
/// at the time that state was reached, whatever `event.type` says. `Ok(None)` for events without
/// an alert group.
pub fn grafana_oncall(body: &Value) -> Result<Option<Event>, String> {
    let kind =
        s(body, "/event/type").ok_or("not a Grafana OnCall webhook: event.type is missing")?;
    let Some(group) = body.get("alert_group").filter(|g| g.is_object()) else {
        return Ok(None);
    };
    let incident_id = s(group, "/id")
        .or_else(|| s(body, "/alert_group_id"))
        .ok_or("alert_group.id is missing")?;
    let time = |p: &str| parse_time(group.get(p));
    let event_time = parse_time(body.pointer("/event/time"));
    let created = time("created_at");
    let (status, at) = match s(group, "/state").as_deref() {
        Some("resolved") => (Some(RESOLVED), time("resolved_at")),
        Some("acknowledged") => (Some(ACKNOWLEDGED), time("acknowledged_at")),
        // Firing again after an unresolve or unacknowledge: the latest time the group shows.
        Some("firing") | Some("new") => (
            Some(TRIGGERED),
            [
                event_time,
                created,
                time("acknowledged_at"),
                time("resolved_at"),
            ]
            .into_iter()
            .flatten()
            .max(),
        ),
        _ => (None, event_time),
    };
    let at = at
        .or(event_time)
        .or(created)
        .ok_or("no time in the event")?;
    let by = match body.get("user").filter(|u| u.is_object()) {
        Some(u) => Actor {
            name: s(u, "/username"),
            email: s(u, "/email"),
            slack: None,
        },
        None => Actor::default(),
    };
    Ok(Some(Event {
        provider: PagerProvider::GrafanaOncall,
        keys: vec![format!(
            "grafana_oncall:{incident_id}:{kind}:{}",
            s(body, "/event/time").unwrap_or_default()
        )],
        services: [
            s(body, "/integration/id"),
            s(body, "/integration/name"),
            s(group, "/integration_id"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        service_name: s(body, "/integration/name").unwrap_or_default(),
        title: s(group, "/title").unwrap_or_else(|| incident_id.clone()),
        urgency: None,
        url: s(group, "/permalinks/web"),
        opened_at: created,
        status,
        at,
        by,
        assignees: None,
        kind,
        incident_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PagerDuty/go-pagerduty:webhookv3/webhookv3_test.go `secret` and `defaultBody`
    /// (reference §A1 "Known-answer vector").
    const GO_SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    const GO_BODY: &str = include_str!("testdata/go_pagerduty_priority_updated.json");
    const GO_SIGNATURE: &str =
        "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";

    fn secrets(list: &[&str]) -> SecretList {
        SecretList(list.iter().map(|s| Secret::new(*s)).collect())
    }

    #[test]
    fn the_known_answer_vector_verifies_and_signs() {
        let ok = verify_pagerduty(
            &secrets(&[GO_SECRET]),
            Some(GO_SIGNATURE),
            GO_BODY.as_bytes(),
        );
        assert_eq!(ok, Ok(()));
        assert_eq!(sign_pagerduty(GO_SECRET, GO_BODY.as_bytes()), GO_SIGNATURE);
    }

    #[test]
    fn any_signature_may_match_any_secret_during_rotation() {
        let header = format!("v0=zz,v1=nothex,v1={},{GO_SIGNATURE}", "ab".repeat(32));
        let both = secrets(&["old-secret", GO_SECRET]);
        assert_eq!(
            verify_pagerduty(&both, Some(&header), GO_BODY.as_bytes()),
            Ok(())
        );
        let wrong = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";
        assert_eq!(
            verify_pagerduty(&both, Some(wrong), GO_BODY.as_bytes()),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            verify_pagerduty(&both, None, GO_BODY.as_bytes()),
            Err(Refusal::Missing)
        );
        assert_eq!(
            verify_pagerduty(&secrets(&[]), Some(GO_SIGNATURE), GO_BODY.as_bytes()),
            Err(Refusal::Disabled)
        );
        // One altered byte of the body.
        let altered = GO_BODY.replacen("bump", "Bump", 1);
        assert_eq!(
            verify_pagerduty(&both, Some(GO_SIGNATURE), altered.as_bytes()),
            Err(Refusal::Wrong)
        );
    }

    #[test]
    fn tokens_are_checked_with_and_without_a_scheme() {
        let t = Secret::new("token-0123456789abcdef");
        assert_eq!(
            verify_bearer(&t, Some("Bearer token-0123456789abcdef")),
            Ok(())
        );
        assert_eq!(
            verify_bearer(&t, Some("token-0123456789abcdef")),
            Err(Refusal::Wrong)
        );
        assert_eq!(verify_verbatim(&t, Some("token-0123456789abcdef")), Ok(()));
        assert_eq!(
            verify_verbatim(&t, Some("Bearer token-0123456789abcdef")),
            Err(Refusal::Wrong)
        );
        assert_eq!(verify_verbatim(&t, None), Err(Refusal::Missing));
        assert_eq!(
            verify_verbatim(&Secret::default(), Some("")),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn a_pagerduty_event_reads_as_the_incident_at_its_time() {
        let body: Value = serde_json::from_str(GO_BODY).expect("json");
        let e = pagerduty(&body, Some("wh-1"))
            .expect("ok")
            .expect("incident");
        assert_eq!(e.incident_id, "PGR0VU2");
        assert_eq!(e.status, Some(TRIGGERED));
        assert_eq!(e.services, ["PF9KMXH", "API Service"]);
        assert_eq!(e.urgency.as_deref(), Some("P1 · high urgency"));
        assert_eq!(
            e.keys,
            [
                "pagerduty:delivery:wh-1",
                "pagerduty:event:01BWDWL3NYY7LUFPZCC28QUCMK"
            ]
        );
        assert_eq!(e.by.name.as_deref(), Some("Tenex Engineer"));
        assert_eq!(
            e.assignees.expect("assignees")[0].name.as_deref(),
            Some("User 123")
        );
        let note = serde_json::json!({"event": {"id": "x", "event_type": "incident.annotated",
            "resource_type": "incident", "occurred_at": "2021-04-26T17:36:27.458Z",
            "data": {"type": "incident_note", "incident": {"id": "PGR0VU2"}}}});
        assert!(pagerduty(&note, None).expect("ok").is_none());
        assert!(pagerduty(&serde_json::json!({"x": 1}), None).is_err());
    }

    #[test]
    fn opsgenie_times_are_nanoseconds_and_actions_map_to_states() {
        let body = serde_json::json!({"action": "Acknowledge", "alert": {"alertId": "a-1",
            "message": "CPU", "createdAt": 1_700_000_000_000i64,
            "updatedAt": 1_700_000_060_000_000_001i64, "username": "bob@example.com",
            "priority": "P2", "teams": ["team-id"],
            "responders": [{"id": "team-id", "type": "team", "name": "ops"}]},
            "integrationName": "slackops"});
        let e = opsgenie(&body).expect("ok").expect("event");
        assert_eq!(e.status, Some(ACKNOWLEDGED));
        assert_eq!(e.at, 1_700_000_060_000);
        assert_eq!(e.service_name, "ops");
        assert!(e.services.contains(&"team-id".to_string()));
        assert_eq!(e.by.email.as_deref(), Some("bob@example.com"));
    }

    #[test]
    fn grafana_reports_the_groups_state_at_its_own_time() {
        // A late `acknowledge` whose payload was built after the group was resolved.
        let body = serde_json::json!({"event": {"type": "acknowledge", "time": "2026-01-05T10:01:00Z"},
            "user": {"id": "U1", "username": "bob", "email": "bob@example.com"},
            "alert_group": {"id": "IG1", "state": "resolved", "title": "Disk full",
                "created_at": "2026-01-05T10:00:00Z", "acknowledged_at": "2026-01-05T10:01:00Z",
                "resolved_at": "2026-01-05T10:02:00Z", "permalinks": {"web": "https://oncall/IG1"}},
            "integration": {"id": "CI1", "name": "prod alerts"}});
        let e = grafana_oncall(&body).expect("ok").expect("event");
        assert_eq!(e.status, Some(RESOLVED));
        assert_eq!(
            e.at,
            parse_time(Some(&Value::String("2026-01-05T10:02:00Z".into()))).unwrap_or_default()
        );
        assert_eq!(e.url.as_deref(), Some("https://oncall/IG1"));
        assert_eq!(e.services, ["CI1", "prod alerts"]);
    }
}
