//! The public status page (`/status`, `/status.json`, `/status/feed.atom`), served from an
//! in-memory snapshot so it stays up when the database does not.

use axum::Router;

use crate::config::Settings;
use crate::registry::Registry;
use crate::state::AppState;

pub fn register(_registry: &mut Registry, _settings: &Settings) {}

pub fn routes() -> Router<AppState> {
    Router::new()
}
