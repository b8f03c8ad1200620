//! Scheduled maintenance: windows created from Slack (`/announce maintenance`) or the API, announced
//! when created, when they start and when they end, without anyone acting.

use axum::Router;

use crate::config::Settings;
use crate::registry::{Registry, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::payload::SlashCommand;
use crate::state::AppState;

/// `/announce maintenance …`: the announcements command hands this subcommand over.
pub async fn command(_cx: SlackCtx, _cmd: SlashCommand) -> anyhow::Result<Ack> {
    Ok(Ack::ephemeral("Scheduled maintenance is not available yet."))
}

pub fn register(_registry: &mut Registry, _settings: &Settings) {}

/// `/api/v1/maintenances`.
pub fn routes() -> Router<AppState> {
    Router::new()
}
