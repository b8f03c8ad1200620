//! The payloads of the announcement jobs: what the write path ([`super::changes`]), reminders and
//! "Create channel" queue, and what the jobs in [`super::delivery`] and [`super::channel`] read.
//!
//! Plain data shared by the code that queues a job and the code that runs it, so neither imports
//! the other. A payload is stored in the database with its job: a field added here must have a
//! default, or jobs queued by the previous version fail to read.

use crate::slack::mrkdwn::Mrkdwn;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Payload of the jobs that act on one version of an outage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutageRef {
    pub outage_id: String,
    #[serde(default)]
    pub version: i64,
}

/// Payload of the audience post.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceRef {
    pub outage_id: String,
    pub audience: String,
}

/// A direct message (reminders).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dm {
    pub user: String,
    pub text: Mrkdwn,
    #[serde(default)]
    pub blocks: Option<Value>,
}

/// Payload of the suggestion jobs: one version of one alert group (0: whatever is current).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertGroupRef {
    pub group_id: String,
    #[serde(default)]
    pub version: i64,
}
