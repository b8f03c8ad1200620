//! The `pipelines` configuration section: the slash command's name, who may start and cancel
//! which pipelines, and how started executions are followed.
//!
//! Owned by the pipelines feature and composed into [`crate::config::Settings`]; it imports only
//! the shared primitives, never a handler or the whole configuration.

use serde::{Deserialize, Serialize};

use crate::principals::Principals;
use crate::settings_check::ConfigProblem;

/// The pipeline slash command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelinesSettings {
    /// The slash command's name, as created in the Slack app.
    pub command: String,
    /// Who may start and cancel, per application (`*` for all) and optionally pipeline; the most
    /// specific matching rule applies. An application no rule matches cannot be started or
    /// canceled from Slack.
    pub rules: Vec<PipelineRule>,
    /// How often a started execution is checked until it ends.
    pub follow_interval_secs: u64,
    /// Stop following an execution after this long.
    pub follow_max_hours: u64,
    /// Executions listed by `status`.
    pub status_limit: usize,
}

impl Default for PipelinesSettings {
    fn default() -> Self {
        Self {
            command: "/spinnaker".into(),
            rules: Vec::new(),
            follow_interval_secs: 15,
            follow_max_hours: 24,
            status_limit: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineRule {
    pub application: String,
    pub pipeline: Option<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub emails: Vec<String>,
    pub everyone: bool,
    /// Ask for a confirmation (a button) before starting.
    pub confirm: bool,
    /// False: the pipeline cannot be started from Slack at all (cancel still follows the rule).
    pub startable: bool,
}

impl Default for PipelineRule {
    fn default() -> Self {
        Self {
            application: String::new(),
            pipeline: None,
            users: Vec::new(),
            groups: Vec::new(),
            emails: Vec::new(),
            everyone: false,
            confirm: false,
            startable: true,
        }
    }
}

impl PipelineRule {
    pub fn principals(&self) -> Principals {
        Principals {
            users: self.users.clone(),
            groups: self.groups.clone(),
            emails: self.emails.clone(),
            everyone: self.everyone,
        }
    }
}

impl PipelinesSettings {
    /// Problems in this section, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: &str| {
            p.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
            })
        };
        if !self.command.starts_with('/') || self.command.len() < 2 {
            bad(
                "pipelines.command",
                "must be a slash command such as /spinnaker",
            );
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.application.is_empty() {
                bad(
                    &format!("pipelines.rules[{i}].application"),
                    "required (an application name, or *)",
                );
            }
        }
        if self.follow_interval_secs < 2 {
            bad("pipelines.follow_interval_secs", "must be at least 2");
        }
        p
    }
}
