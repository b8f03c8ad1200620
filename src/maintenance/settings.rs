//! The `maintenance` configuration section: how often windows are checked for their start and
//! end, and the limits on a window.
//!
//! Owned by the maintenance feature and composed into [`crate::config::Settings`]; it imports only
//! the shared primitives, never a handler or the whole configuration.

use serde::{Deserialize, Serialize};

use crate::settings_check::ConfigProblem;

/// Scheduled maintenance (`/announce maintenance`, `/api/v1/maintenances`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// How often one replica looks for windows that started or ended, to announce them.
    pub check_interval_secs: u64,
    /// The longest window accepted.
    pub max_duration_hours: u64,
    /// How far ahead a window may be scheduled.
    pub max_ahead_days: u64,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            check_interval_secs: 30,
            max_duration_hours: 7 * 24,
            max_ahead_days: 365,
        }
    }
}

impl MaintenanceSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        if self.check_interval_secs == 0 {
            bad(
                "maintenance.check_interval_secs".into(),
                "must be at least 1",
            );
        }
        if self.max_duration_hours == 0 {
            bad(
                "maintenance.max_duration_hours".into(),
                "must be at least 1",
            );
        }
        if self.max_ahead_days == 0 {
            bad("maintenance.max_ahead_days".into(), "must be at least 1");
        }
        p
    }
}
