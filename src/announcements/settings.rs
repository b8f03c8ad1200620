//! The `announcements` configuration section: the `/announce` command, the catalogue of systems
//! and audiences, who may announce and edit, and the reminders' timing.
//!
//! Owned by the announcements feature and composed into [`crate::config::Settings`]; the
//! catalogue is also read by maintenance and the status page. It imports only the shared
//! primitives, never a handler or the whole configuration.

use serde::{Deserialize, Serialize};

use crate::principals::Principals;
use crate::settings_check::ConfigProblem;

/// Outage announcements (`/announce`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnouncementsSettings {
    /// The slash command's name, as created in the Slack app.
    pub command: String,
    /// Channel (ID) where announcements are posted and pinned, and maintenance is announced.
    pub channel: Option<String>,
    /// The catalogue of systems an outage or maintenance can affect (also the status page's rows).
    pub systems: Vec<SystemEntry>,
    /// Audiences whose impact is asked for, each told once in its own channel.
    pub audiences: Vec<AudienceEntry>,
    /// Severities offered, most severe first.
    pub severities: Vec<String>,
    /// Who may announce an outage (default: everyone in the workspace).
    pub announcers: Principals,
    /// Who may change any announcement, besides its announcer and assignees.
    pub editors: Principals,
    /// Reacting with this emoji (name without colons) to a message in an incident's channel or
    /// its announcement's thread copies the message into the thread.
    pub reaction_emoji: String,
    /// DM the assignees this long before the ETA runs out (0 turns it off).
    pub remind_before_eta_mins: u64,
    /// Nudge the communication assignee after this long without an update (0 turns it off).
    pub nudge_after_mins: u64,
    /// How long "Snooze" on the ETA-passed prompt postpones the next prompt.
    pub snooze_mins: u64,
    /// How often reminders are checked.
    pub reminder_check_secs: u64,
    /// Offer "Create channel" on announcements.
    pub create_channel: bool,
    /// Prefix of incident channels' names (`<prefix>-<system>-<yymmdd>`).
    pub channel_prefix: String,
}

impl Default for AnnouncementsSettings {
    fn default() -> Self {
        Self {
            command: "/announce".into(),
            channel: None,
            systems: Vec::new(),
            audiences: Vec::new(),
            severities: vec!["critical".into(), "major".into(), "minor".into()],
            announcers: Principals {
                everyone: true,
                ..Principals::default()
            },
            editors: Principals::default(),
            reaction_emoji: "point_up".into(),
            remind_before_eta_mins: 10,
            nudge_after_mins: 30,
            snooze_mins: 15,
            reminder_check_secs: 60,
            create_channel: true,
            channel_prefix: "inc".into(),
        }
    }
}

impl AnnouncementsSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: String, message: &str| {
            p.push(ConfigProblem {
                key,
                message: message.into(),
            })
        };
        // Ids travel as menu option values, which Block Kit caps at 150 characters.
        let slug = |s: &str| {
            !s.is_empty()
                && s.len() <= 150
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        if !self.command.starts_with('/') || self.command.len() < 2 {
            bad(
                "announcements.command".into(),
                "must be a slash command such as /announce",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.systems.iter().enumerate() {
            if !slug(&s.id) {
                bad(
                    format!("announcements.systems[{i}].id"),
                    "required: lowercase letters, digits, - or _ (at most 150)",
                );
            } else if !seen.insert(s.id.clone()) {
                bad(format!("announcements.systems[{i}].id"), "is not unique");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.audiences.iter().enumerate() {
            if !slug(&a.id) {
                bad(
                    format!("announcements.audiences[{i}].id"),
                    "required: lowercase letters, digits, - or _ (at most 150)",
                );
            } else if !seen.insert(a.id.clone()) {
                bad(format!("announcements.audiences[{i}].id"), "is not unique");
            }
        }
        if self.severities.is_empty() || self.severities.iter().any(|s| !slug(s)) {
            bad(
                "announcements.severities".into(),
                "must list at least one severity, each lowercase letters, digits, - or _ (at most 150)",
            );
        }
        if self.reaction_emoji.is_empty()
            || self.reaction_emoji.contains(':')
            || self.reaction_emoji.contains(' ')
        {
            bad(
                "announcements.reaction_emoji".into(),
                "an emoji name without colons, such as point_up",
            );
        }
        if self.snooze_mins == 0 {
            bad("announcements.snooze_mins".into(), "must be at least 1");
        }
        if self.reminder_check_secs == 0 {
            bad(
                "announcements.reminder_check_secs".into(),
                "must be at least 1",
            );
        }
        if !slug(&self.channel_prefix) || self.channel_prefix.len() > 20 {
            bad(
                "announcements.channel_prefix".into(),
                "lowercase letters, digits, - or _, at most 20 characters",
            );
        }
        p
    }
}

/// One system in the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemEntry {
    /// Stable identifier stored with outages (lowercase, `[a-z0-9-]`).
    pub id: String,
    /// Name shown in Slack and on the status page.
    pub name: String,
    /// Optional group the status page lists the system under.
    pub group: Option<String>,
}

/// An audience (for example sales, B2B partners, customers) and the channel that hears of outages
/// affecting it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AudienceEntry {
    pub id: String,
    pub name: String,
    /// Channel (ID) told once per outage that affects this audience.
    pub channel: Option<String>,
}
