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
    /// How Alertmanager alert groups become suggestions or announcements; the first rule whose
    /// `match` fits an alert decides. Alerts no rule matches are acknowledged and ignored.
    pub alert_rules: Vec<AlertRule>,
    /// An outage announced by a rule in `announce` mode is resolved once all its alerts have
    /// stayed resolved this long.
    pub auto_resolve_after_mins: u64,
    /// A postmortem is due this many working days (Monday to Friday) after the outage resolved.
    pub postmortem_due_days: u64,
    /// After the due date, the owner is reminded again every this many days until the report is
    /// linked.
    pub postmortem_remind_days: u64,
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
            alert_rules: Vec::new(),
            auto_resolve_after_mins: 10,
            postmortem_due_days: 5,
            postmortem_remind_days: 2,
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
        p.extend(self.alert_rule_problems());
        if self.postmortem_remind_days == 0 {
            p.push(ConfigProblem {
                key: "announcements.postmortem_remind_days".into(),
                message: "must be at least 1".into(),
            });
        }
        p
    }

    /// Each alert rule names where its systems come from, and an `announce` rule names who is
    /// assigned (an announcement needs a person).
    fn alert_rule_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        for (i, r) in self.alert_rules.iter().enumerate() {
            let mut bad = |key: &str, message: &str| {
                p.push(ConfigProblem {
                    key: format!("announcements.alert_rules[{i}].{key}"),
                    message: message.into(),
                })
            };
            if r.systems.is_empty() && r.systems_label.trim().is_empty() {
                bad("systems_label", "name a label, or list `systems`");
            }
            if let Some(s) = r
                .systems
                .iter()
                .find(|s| !self.systems.iter().any(|x| &x.id == *s))
            {
                bad("systems", &format!("{s:?} is not in announcements.systems"));
            }
            if r.severity_label.trim().is_empty() {
                bad("severity_label", "must name a label");
            }
            let person = r.assignee.as_deref().is_some_and(|a| {
                a.len() >= 3
                    && (a.starts_with('U') || a.starts_with('W'))
                    && a.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            });
            if r.mode == AlertMode::Announce && !person {
                bad(
                    "assignee",
                    "required with mode announce: the Slack user ID assigned to the outages it announces",
                );
            } else if r.assignee.is_some() && !person {
                bad("assignee", "must be a Slack user ID such as U0123ABCD");
            }
        }
        p
    }
}

/// What a matching alert group becomes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertMode {
    /// A suggestion message with Announce and Dismiss buttons.
    #[default]
    Suggest,
    /// An outage announced at once, resolved automatically.
    Announce,
}

/// One `announcements.alert_rules` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRule {
    /// Labels an alert must carry with exactly these values (empty: every alert).
    #[serde(rename = "match")]
    pub matchers: std::collections::BTreeMap<String, String>,
    /// The label whose value names the affected system (ids of `announcements.systems`,
    /// comma-separated for several); ignored when `systems` is given.
    pub systems_label: String,
    /// Fixed systems for every alert this rule matches.
    pub systems: Vec<String>,
    /// The label whose value is the severity (used when it is one of `announcements.severities`).
    pub severity_label: String,
    pub mode: AlertMode,
    /// Who is assigned (resolution and communication) to outages this rule announces; also the
    /// default in the prefilled `/announce` modal. Required with `mode: announce`.
    pub assignee: Option<String>,
}

impl Default for AlertRule {
    fn default() -> Self {
        Self {
            matchers: Default::default(),
            systems_label: "system".into(),
            systems: Vec::new(),
            severity_label: "severity".into(),
            mode: AlertMode::Suggest,
            assignee: None,
        }
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
