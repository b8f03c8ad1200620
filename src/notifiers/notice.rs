//! Which changes subscribers hear of, and which subscribers: one rule for the subscribed Slack
//! channels ([`super::channels`]) and the status page's email subscribers
//! ([`crate::status::email`]), so the two can never disagree about what is public news.
//!
//! Works on an event's kind and data (as [`super::StatusEvent`] carries them) and imports nothing
//! else, so the status page's emails can use it without importing the notifiers that call them.

use serde_json::Value;

/// The changes subscribers hear of: an outage opening (or opening again), each update, its
/// resolution; a maintenance window scheduled, started, ended, and canceled (so a scheduled
/// notice is never left standing). Reassignments, postmortem links and window edits are internal.
pub const NOTICE_KINDS: &[&str] = &[
    "outage.announced",
    "outage.updated",
    "outage.reopened",
    "outage.resolved",
    "maintenance.scheduled",
    "maintenance.started",
    "maintenance.ended",
    "maintenance.canceled",
];

/// Whether subscribers hear of a change at all: a kind they get, about something public.
pub fn noticed(kind: &str, data: &Value) -> bool {
    NOTICE_KINDS.contains(&kind) && data["public"].as_bool() == Some(true)
}

/// The systems a change is about, as its event carries them.
pub fn systems(data: &Value) -> Vec<String> {
    data["systems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a subscriber who picked `picked` (empty: every system) hears of a change to
/// `systems`. A change naming no system reaches only those subscribed to every system.
pub fn reaches(picked: &[String], systems: &[String]) -> bool {
    picked.is_empty() || picked.iter().any(|p| systems.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscribers_get_their_systems_or_everything() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(reaches(&v(&[]), &v(&["api"])));
        assert!(reaches(&v(&["api", "db"]), &v(&["db"])));
        assert!(!reaches(&v(&["web"]), &v(&["api", "db"])));
        assert!(reaches(&v(&[]), &v(&[])));
        assert!(!reaches(&v(&["api"]), &v(&[])));
    }

    #[test]
    fn only_public_changes_of_the_notice_kinds_are_noticed() {
        let public = json!({"public": true});
        assert!(noticed("outage.announced", &public));
        assert!(noticed("maintenance.ended", &public));
        assert!(!noticed("outage.announced", &json!({"public": false})));
        assert!(!noticed("outage.announced", &json!({})));
        assert!(!noticed("outage.reassigned", &public));
        assert!(!noticed("maintenance.updated", &public));
    }

    #[test]
    fn a_change_names_its_systems() {
        assert_eq!(
            systems(&json!({"systems": ["search", "api"]})),
            ["search", "api"]
        );
        assert!(systems(&json!({})).is_empty());
    }
}
