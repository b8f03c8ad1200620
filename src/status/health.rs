//! How a system is doing: the states the status page shows, in order of how bad they are, and
//! how an outage's severity maps onto them. Shared by the current view and the uptime history so
//! both colour a system the same way.

use serde::Serialize;

/// How a system is doing, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Operational,
    Maintenance,
    Degraded,
    PartialOutage,
    MajorOutage,
}

impl Health {
    pub fn text(self) -> &'static str {
        match self {
            Health::Operational => "Operational",
            Health::Maintenance => "Under maintenance",
            Health::Degraded => "Degraded performance",
            Health::PartialOutage => "Partial outage",
            Health::MajorOutage => "Major outage",
        }
    }
    pub fn overall_text(self) -> &'static str {
        match self {
            Health::Operational => "All systems operational",
            Health::Maintenance => "Maintenance in progress",
            Health::Degraded => "Some systems have degraded performance",
            Health::PartialOutage => "Partial outage",
            Health::MajorOutage => "Major outage",
        }
    }
    pub fn from_severity(severity: &str) -> Health {
        match severity {
            "critical" => Health::MajorOutage,
            "major" => Health::PartialOutage,
            _ => Health::Degraded,
        }
    }
    pub fn css(self) -> &'static str {
        match self {
            Health::Operational => "ok",
            Health::Maintenance => "maint",
            Health::Degraded => "minor",
            Health::PartialOutage => "major",
            Health::MajorOutage => "critical",
        }
    }
}
