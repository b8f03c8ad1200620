//! **Announce outage**: hand the incident over to the outage form of `/announce`, prefilled.
//!
//! The summary starts from the incident's title, the systems from the route's `systems`, and the
//! person who clicked is both assignee; the form carries the incident's link, so the
//! announcement links back to it whatever the summary becomes. Who may announce is the
//! announcements' rule (`crate::policy::may_announce`), not the pager's: announcing is a
//! different decision from acknowledging. The modal is opened before anything slow, since
//! Slack's `trigger_id` lives 3 s.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use tracing::warn;

use super::FEATURE;
use crate::announcements::modal::{Meta, Mode, form_view, with_incident_link};
use crate::announcements::model::Fields;
use crate::mrkdwn;
use crate::policy::may_announce;
use crate::registry::{ActionHandler, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::payload::{Action, Interaction};

pub struct AnnounceHandler;

#[async_trait]
impl ActionHandler for AnnounceHandler {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let settings = &state.settings().announcements;
        let id = action.value.as_deref().unwrap_or_default();
        let Some(inc) = state.db().pager_incident(id).await? else {
            return Ok(Ack::ephemeral(
                "slackops does not know this incident any more.",
            ));
        };
        if settings.channel.is_none() || settings.systems.is_empty() {
            return Ok(Ack::ephemeral(
                "Outage announcements are not set up yet: `announcements.channel` and `announcements.systems` must be configured. Ask your slackops operators.",
            ));
        }
        if let Err(why) = may_announce(state, &cx.user_id).await? {
            return Ok(Ack::ephemeral(why));
        }
        let Some(trigger) = interaction.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral(
                "Slack sent no trigger for the form; try again.",
            ));
        };
        let systems = inc.route().systems;
        let defaults = Fields {
            summary: with_incident_link(&inc.title, inc.url.as_deref()),
            systems: settings
                .systems
                .iter()
                .filter(|s| systems.contains(&s.id))
                .map(|s| s.id.clone())
                .collect(),
            resolution_assignee: cx.user_id.clone(),
            communication_assignee: cx.user_id.clone(),
            ..Fields::default()
        };
        let meta = Meta {
            incident_url: inc.url.clone(),
            ..Meta::new_outage()
        };
        let view = form_view(settings, Mode::New, "", &defaults, &meta);
        match state.slack().views_open(trigger, &view).await {
            Ok(_) => {
                state
                    .audit(
                        FEATURE,
                        "announce_form",
                        &cx.user_id,
                        &inc.subject(),
                        "opened",
                        json!({}),
                    )
                    .await;
                Ok(Ack::Empty)
            }
            Err(e) => {
                warn!(error = %e, "opening the announce form from an incident failed");
                Ok(Ack::ephemeral(mrkdwn!(
                    "The form could not be opened ({}); press Announce outage again.",
                    e,
                )))
            }
        }
    }
}
