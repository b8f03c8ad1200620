//! A fake Prometheus Alertmanager: one alert group and the webhook notifications it sends, as
//! /work/shared/reference/monitoring-integrations.md §1 describes them.
//!
//! - The body is `template.Data` plus `version: "4"`, `groupKey`, `truncatedAlerts` (§1.1).
//! - The group key is the route key, `:`, then the group labels as `{name="value", …}` sorted;
//!   the same group keeps its key when it resolves and fires again (§1.1).
//! - Every notification carries **every alert of the group**, firing and resolved since the last
//!   notification, not a difference; resolved alerts are deleted once notified (§1.1, §1.3).
//! - A firing alert's `endsAt` is the zero time `0001-01-01T00:00:00Z` (§1.1).
//! - Alerts are sorted by `job`, then `instance`, then the label set (§1.1).
//! - `status` is `firing` while any alert of the body fires.
//! - `fingerprint` is the label set's FNV-1a 64 hash (computed here independently of the
//!   service's code, and checked against Alertmanager's vectors in its own test).
//! - A re-send (`repeat_interval`, an HA peer, a restart) is the same body again (§1.3).
//!
//! Timers are not simulated: the test says when a notification is sent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct SimAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
}

/// One alert group of one route and receiver.
#[derive(Debug, Clone)]
pub struct FakeAlertGroup {
    route_key: String,
    group_labels: BTreeMap<String, String>,
    receiver: String,
    alerts: Vec<SimAlert>,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// FNV-1a 64 over sorted names and values, each followed by 0xFF (prometheus/common
/// model/signature.go `labelSetToFingerprint`).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 14_695_981_039_346_656_037;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(1_099_511_628_211);
        }
    }
    format!("{h:016x}")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl FakeAlertGroup {
    /// A group of the root route (`{}`) grouped by these labels.
    pub fn new(group_labels: &[(&str, &str)]) -> Self {
        Self {
            route_key: "{}".into(),
            group_labels: map(group_labels),
            receiver: "slackops".into(),
            alerts: Vec::new(),
        }
    }

    /// `{}:{alertname="ProbeFailure", …}`.
    pub fn group_key(&self) -> String {
        let labels: Vec<String> = self
            .group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}:{{{}}}", self.route_key, labels.join(", "))
    }

    /// An alert with these labels (the group labels added) starts firing at `at`, or fires again.
    pub fn fire(
        &mut self,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        at: DateTime<Utc>,
    ) {
        let mut l = self.group_labels.clone();
        l.extend(map(labels));
        let annotations = map(annotations);
        match self.alerts.iter_mut().find(|a| a.labels == l) {
            Some(a) if a.ends_at.is_some() => {
                a.starts_at = at;
                a.ends_at = None;
                a.annotations = annotations;
            }
            Some(a) => a.annotations = annotations,
            None => self.alerts.push(SimAlert {
                labels: l,
                annotations,
                starts_at: at,
                ends_at: None,
            }),
        }
    }

    /// The alert with these labels (the group labels added) resolves at `at`.
    pub fn resolve(&mut self, labels: &[(&str, &str)], at: DateTime<Utc>) {
        let mut l = self.group_labels.clone();
        l.extend(map(labels));
        if let Some(a) = self.alerts.iter_mut().find(|a| a.labels == l) {
            a.ends_at = Some(at);
        }
    }

    fn common(maps: Vec<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
        let Some(first) = maps.first() else {
            return BTreeMap::new();
        };
        first
            .iter()
            .filter(|(k, v)| maps.iter().all(|m| m.get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The notification Alertmanager sends now: every alert of the group. Resolved alerts are
    /// deleted from the group afterwards (a later notification no longer carries them).
    pub fn notify(&mut self) -> Value {
        let body = self.body();
        self.alerts.retain(|a| a.ends_at.is_none());
        body
    }

    /// The body of the next notification, without sending it (for re-sends).
    pub fn body(&self) -> Value {
        let mut alerts = self.alerts.clone();
        let key = |a: &SimAlert| {
            (
                a.labels.get("job").cloned().unwrap_or_default(),
                a.labels.get("instance").cloned().unwrap_or_default(),
                a.labels.clone(),
            )
        };
        alerts.sort_by_key(key);
        let firing = alerts.iter().any(|a| a.ends_at.is_none());
        let items: Vec<Value> = alerts
            .iter()
            .map(|a| {
                json!({
                    "status": if a.ends_at.is_none() { "firing" } else { "resolved" },
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": a.ends_at.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up",
                    "fingerprint": fingerprint(&a.labels),
                })
            })
            .collect();
        json!({
            "receiver": self.receiver,
            "status": if firing { "firing" } else { "resolved" },
            "alerts": items,
            "groupLabels": self.group_labels,
            "commonLabels": Self::common(alerts.iter().map(|a| &a.labels).collect()),
            "commonAnnotations": Self::common(alerts.iter().map(|a| &a.annotations).collect()),
            "externalURL": "http://alertmanager.example.com:9093",
            "version": "4",
            "groupKey": self.group_key(),
            "truncatedAlerts": 0,
            "notification_reason": if firing { "first notification" } else { "all alerts resolved" },
        })
    }
}
