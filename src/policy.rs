//! Permissions that more than one feature checks, decided with the shared authorization model
//! ([`crate::authz`]) and audited here, so no feature has to import another to ask.
//!
//! Announcing is one permission (`announcements.announcers`) whether it is an outage
//! (`/announce`, the announcements feature) or scheduled maintenance (`/announce maintenance`,
//! the maintenance feature). This module must never hold a feature's own rules: a rule used by
//! one feature stays in that feature.

use serde_json::json;

use crate::mrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

/// The feature refusals of the announcer permission are audited under (as they always were).
const ANNOUNCEMENTS: &str = "announcements";

/// May `user` announce? `Ok(Err(explanation))` when not (audited).
pub async fn may_announce(state: &AppState, user: &str) -> anyhow::Result<Result<(), Mrkdwn>> {
    let p = &state.settings().announcements.announcers;
    if state.authz().allows_user(p, user).await? {
        return Ok(Ok(()));
    }
    state
        .audit(
            ANNOUNCEMENTS,
            "announce",
            user,
            "announce",
            "refused",
            json!({}),
        )
        .await;
    Ok(Err(mrkdwn!(
        ":no_entry: You may not announce outages. Allowed: {}. Ask your slackops operators (`announcements.announcers`).",
        state.authz().describe(p).await
    )))
}
