//! Outage announcements: `/announce` opens a modal; the outage is one pinned message updated in
//! place, with its history in the thread, reminders, and a public status page entry.

use axum::Router;

use crate::config::Settings;
use crate::registry::Registry;
use crate::state::AppState;

pub fn register(_registry: &mut Registry, _settings: &Settings) {}

/// `/api/v1/announcements`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
