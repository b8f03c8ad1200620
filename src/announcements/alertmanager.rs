//! Prometheus Alertmanager's webhook payload (`webhook_config`, version 4) as we accept it: the
//! body types, the checks a delivery must pass, and the alerts in the form they are stored.
//!
//! Which fields are required follows the monitoring-integrations reference (§1.1 and its notes):
//! `groupKey`, `status`, `alerts[]` and each alert's `status`, `labels` and `startsAt`
//! (RFC 3339). Everything else is optional, and fields Alertmanager adds in later versions
//! (`notification_reason`, `routeLabels`) are ignored rather than refused, because a refused
//! delivery (4xx) is dropped by Alertmanager. Annotations are free text written by whoever wrote
//! the alerting rule: they are kept as data and only ever shown through the escaping path.
//! Pure code: nothing here reads the store or calls anyone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `firing` or `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One notification of one alert group, as Alertmanager sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({
    "version": "4",
    "groupKey": "{}/{severity=\"critical\"}:{alertname=\"ProbeFailure\"}",
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "slackops",
    "groupLabels": {"alertname": "ProbeFailure"},
    "commonLabels": {"alertname": "ProbeFailure", "system": "payments", "severity": "critical"},
    "commonAnnotations": {"summary": "Checkout probe fails"},
    "externalURL": "http://alertmanager.example.com:9093",
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "ProbeFailure", "system": "payments", "severity": "critical", "instance": "checkout-1"},
        "annotations": {"summary": "Checkout probe fails"},
        "startsAt": "2026-12-07T04:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com:9090/graph",
        "fingerprint": "9266ef3da838ad95"
    }]
}))]
pub struct Notification {
    /// Always `"4"` for this payload.
    #[serde(default)]
    pub version: Option<String>,
    /// Identifies the alert group (route and group labels); the same group keeps its key.
    #[serde(rename = "groupKey")]
    #[schema(min_length = 1)]
    pub group_key: String,
    /// How many alerts `max_alerts` cut off.
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: Option<i64>,
    /// `firing` while any alert of the body fires.
    pub status: AlertStatus,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(rename = "groupLabels", default)]
    pub group_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "commonLabels", default)]
    pub common_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "externalURL", default)]
    pub external_url: Option<String>,
    /// Every alert of the group (firing and recently resolved), not a difference.
    #[schema(min_items = 1)]
    pub alerts: Vec<Alert>,
}

/// One alert of the group.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    /// Free text (`summary`, `description`, …) from the alerting rule.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339; the zero time `0001-01-01T00:00:00Z` while the alert fires.
    #[serde(rename = "endsAt", default)]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: Option<String>,
    /// 16 lower-case hex digits (the label set's hash); computed from the labels when absent.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// An alert as stored with its group. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    #[serde(default)]
    pub ends_at: Option<i64>,
}

impl StoredAlert {
    pub fn is_firing(&self) -> bool {
        self.status == AlertStatus::Firing
    }
}

/// The label set's fingerprint as Prometheus computes it: FNV-1a 64 over the label names in
/// order, each name and value followed by the byte 0xFF, printed as 16 hex digits
/// (prometheus/common model/signature.go `labelSetToFingerprint`).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// RFC 3339 to milliseconds; the zero time (and anything before 1970) is "not set".
fn time(s: &str) -> Result<Option<i64>, ()> {
    let t = chrono::DateTime::parse_from_rfc3339(s.trim()).map_err(|_| ())?;
    let ms = t.timestamp_millis();
    Ok((ms > 0).then_some(ms))
}

/// The notification's alerts as stored, or the first wrong field as `(field, message)`, named
/// as the body names it (`alerts[2].startsAt`).
pub fn checked(n: &Notification) -> Result<Vec<StoredAlert>, (String, String)> {
    if n.group_key.trim().is_empty() {
        return Err(("groupKey".into(), "must not be empty".into()));
    }
    if n.alerts.is_empty() {
        return Err(("alerts".into(), "at least one alert is required".into()));
    }
    let mut out = Vec::with_capacity(n.alerts.len());
    for (i, a) in n.alerts.iter().enumerate() {
        let field = |f: &str| format!("alerts[{i}].{f}");
        let starts_at = match time(&a.starts_at) {
            Ok(Some(t)) => t,
            _ => return Err((field("startsAt"), "must be an RFC 3339 time".into())),
        };
        let ends_at = match a.ends_at.as_deref().filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => time(s).map_err(|_| (field("endsAt"), "must be an RFC 3339 time".into()))?,
        };
        let fingerprint = match a.fingerprint.as_deref().filter(|f| !f.is_empty()) {
            Some(f) if f.len() <= 64 && f.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                f.to_string()
            }
            Some(_) => return Err((field("fingerprint"), "must be hex digits".into())),
            None => fingerprint(&a.labels),
        };
        out.push(StoredAlert {
            fingerprint,
            status: a.status,
            labels: a.labels.clone(),
            annotations: a.annotations.clone().unwrap_or_default(),
            starts_at,
            ends_at: if a.status == AlertStatus::Resolved {
                ends_at
            } else {
                None
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprints_match_alertmanagers_own_vectors() {
        // prometheus/alertmanager template/template_test.go (monitoring-integrations.md §1.1).
        assert_eq!(
            fingerprint(&labels(&[("job", "foo"), ("severity", "warning")])),
            "9266ef3da838ad95"
        );
        assert_eq!(
            fingerprint(&labels(&[("job", "foo"), ("severity", "critical")])),
            "3b15fd163d36582e"
        );
    }

    fn notification(json: serde_json::Value) -> Notification {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn the_zero_end_time_of_a_firing_alert_is_no_end() {
        let n = notification(serde_json::json!({
            "groupKey": "{}:{}", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"a": "b"},
                        "startsAt": "2018-08-03T09:52:26.739266876+02:00",
                        "endsAt": "0001-01-01T00:00:00Z"}]
        }));
        let a = checked(&n).expect("valid");
        assert_eq!(a[0].ends_at, None);
        assert_eq!(a[0].starts_at, 1_533_282_746_739);
        assert_eq!(a[0].fingerprint, fingerprint(&labels(&[("a", "b")])));
    }

    #[test]
    fn bad_fields_are_named_as_the_body_names_them() {
        let bad = |alerts: serde_json::Value, key: &str| {
            let n = notification(
                serde_json::json!({"groupKey": key, "status": "firing", "alerts": alerts}),
            );
            checked(&n).expect_err("invalid").0
        };
        let ok = serde_json::json!({"status": "firing", "labels": {}, "startsAt": "2026-12-07T04:00:00Z"});
        assert_eq!(bad(serde_json::json!([ok.clone()]), " "), "groupKey");
        assert_eq!(bad(serde_json::json!([]), "k"), "alerts");
        let mut late = ok.clone();
        late["startsAt"] = "yesterday".into();
        assert_eq!(
            bad(serde_json::json!([ok.clone(), late]), "k"),
            "alerts[1].startsAt"
        );
        let mut end = ok.clone();
        end["endsAt"] = "soon".into();
        assert_eq!(bad(serde_json::json!([end]), "k"), "alerts[0].endsAt");
    }
}
