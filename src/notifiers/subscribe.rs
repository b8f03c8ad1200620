//! `/announce subscribe [systems…]`, `/announce unsubscribe` and `/announce subscriptions`: a
//! channel subscribes itself to the public outage and maintenance notices of
//! [`super::channels`].
//!
//! They are subcommands of the announcements' command, handed over through the registry, so the
//! people who may announce are the people who may subscribe a channel (the command checks it
//! before handing over, as for `maintenance` and `postmortems`): a subscription makes slackops
//! post in a channel, which is announcing.
//!
//! Subscribing needs Slack (joining a public channel, proving the bot can post in a private one),
//! which is a job's work after the ack: the command checks what it can alone (the systems, not a
//! DM) and queues [`SubscribeJob`], which joins, posts the confirmation in the channel, then
//! saves, and answers through the command's `response_url` when it cannot. A channel the bot
//! cannot post in is never saved.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::channels::{self, FEATURE, Subscription, system_names};
use crate::announcements::settings::SystemEntry;
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{CommandHandler, JobHandler, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::api::{Message, SlackError, SlackErrorCode};
use crate::slack::blocks::{self, mention};
use crate::slack::mrkdwn::{JoinMrkdwn, Mrkdwn};
use crate::slack::payload::SlashCommand;
use crate::state::AppState;

/// The job kind that joins, confirms and saves one subscription.
pub const JOB_SUBSCRIBE: &str = "notifiers.subscribe";

/// What `/invite` needs to be told when the bot is not in a private channel.
const INVITE_FIRST: &str = ":lock: This is a private channel slackops is not in. Invite it first (`/invite @slackops`), then subscribe again. Nothing was changed.";

/// The systems named after the subcommand word (spaces or commas between them), as configured
/// ids, each once; or the message naming the unknown ones and listing the valid ones.
pub fn parse_systems(catalogue: &[SystemEntry], text: &str) -> Result<Vec<String>, Mrkdwn> {
    let mut ids: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for word in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .skip(1)
    {
        match catalogue.iter().find(|s| s.id.eq_ignore_ascii_case(word)) {
            Some(s) if !ids.contains(&s.id) => ids.push(s.id.clone()),
            Some(_) => {}
            None => unknown.push(word.to_string()),
        }
    }
    if unknown.is_empty() {
        return Ok(ids);
    }
    let valid = if catalogue.is_empty() {
        Mrkdwn::from("none are configured (`announcements.systems`)")
    } else {
        catalogue
            .iter()
            .map(|s| mrkdwn!("`{}` ({})", s.id, s.name))
            .join_mrkdwn(", ")
    };
    Err(mrkdwn!(
        ":warning: Unknown system{} {}. Valid systems: {}. Nothing was changed.",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.iter().map(|u| mrkdwn!("`{}`", u)).join_mrkdwn(", "),
        valid,
    ))
}

/// Why a command's channel cannot be subscribed without asking Slack: a DM or a group DM.
fn not_a_channel(cmd: &SlashCommand) -> Option<&'static str> {
    let id = cmd.channel_id.as_deref().unwrap_or_default();
    let name = cmd.channel_name.as_deref().unwrap_or_default();
    if id.is_empty() {
        return Some(
            ":warning: Slack did not say which channel this is; run the command again in the channel to subscribe.",
        );
    }
    if id.starts_with('D') || name == "directmessage" {
        return Some(
            ":no_entry: Notices go to channels, not direct messages: run this command in the channel that should get them.",
        );
    }
    if name.starts_with("mpdm-") {
        return Some(
            ":no_entry: Notices go to channels, not group direct messages: run this command in the channel that should get them.",
        );
    }
    None
}

/// What the subscribe job is queued with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeAsk {
    pub channel: String,
    /// Ids; empty: every system.
    pub systems: Vec<String>,
    pub by: String,
    pub response_url: Option<String>,
}

/// `/announce subscribe [systems…]`.
pub struct SubscribeCommand;

#[async_trait]
impl CommandHandler for SubscribeCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let state = &cx.state;
        if let Some(why) = not_a_channel(&cmd) {
            return Ok(Ack::ephemeral(why));
        }
        let catalogue = &state.settings().announcements.systems;
        let systems = match parse_systems(catalogue, &cmd.text) {
            Ok(s) => s,
            Err(why) => return Ok(Ack::ephemeral(why)),
        };
        let channel = cmd.channel_id.clone().unwrap_or_default();
        let ask = SubscribeAsk {
            channel: channel.clone(),
            systems: systems.clone(),
            by: cx.user_id.clone(),
            response_url: cmd.response_url.clone(),
        };
        // Once per command: its response_url is unique to it.
        let once = hex::encode(Sha256::digest(
            cmd.response_url.as_deref().unwrap_or_default().as_bytes(),
        ));
        let mut job = NewJob::new(JOB_SUBSCRIBE, &ask);
        if cmd.response_url.is_some() {
            job = job.dedup(format!("{JOB_SUBSCRIBE}:{channel}:{}", &once[..32]));
        }
        state.jobs().enqueue(job).await?;
        Ok(Ack::ephemeral(mrkdwn!(
            ":hourglass_flowing_sand: Subscribing {} to public outage and maintenance notices for {}…",
            Mrkdwn::channel(&channel),
            system_names(catalogue, &systems)
        )))
    }
}

/// Answer the person who subscribed, if Slack gave a `response_url`. An answer that cannot be
/// delivered is logged: the outcome itself is decided.
async fn answer(state: &AppState, ask: &SubscribeAsk, text: Mrkdwn) {
    let Some(url) = &ask.response_url else {
        return;
    };
    let body = serde_json::to_value(Reply::ephemeral(text)).unwrap_or_default();
    if let Err(e) = state.slack().respond(url, &body).await {
        tracing::warn!(channel = %ask.channel, error = %e, "could not answer the subscribe command");
    }
}

/// Joins the channel (public), posts the confirmation in it (which proves the bot may post
/// there), then saves the subscription. A channel the bot cannot post in gets an answer and is
/// not saved. A retry after a failed save may post the confirmation again; never a notice.
pub struct SubscribeJob;

#[async_trait]
impl JobHandler for SubscribeJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let ask: SubscribeAsk = job.payload().map_err(JobError::Permanent)?;
        let slack = state.slack();
        // A public channel is joined (a no-op when the bot is in it already); a private one
        // cannot be joined, and whether the bot is in it shows when it posts the confirmation.
        match slack.conversations_join(&ask.channel).await {
            Ok(()) => {}
            Err(e)
                if e.is(SlackErrorCode::Other(
                    "method_not_supported_for_channel_type".into(),
                )) => {}
            Err(e) => return failed(state, job, &ask, e).await,
        }
        let db = |e: sqlx::Error| JobError::from(anyhow::anyhow!(crate::store::short_db_error(&e)));
        let before = channels::get(state.db().pool(), &ask.channel)
            .await
            .map_err(db)?;
        let settings = state.settings();
        let command = &settings.announcements.command;
        let names = system_names(&settings.announcements.systems, &ask.systems);
        let verb = if before.is_some() {
            "changed this channel's subscription: it now gets"
        } else {
            "subscribed this channel to"
        };
        let text = mrkdwn!(
            ":bell: {} {} public outage and maintenance notices for {}. `/{} unsubscribe` stops them.",
            mention(&ask.by),
            verb,
            names,
            command.trim_start_matches('/'),
        );
        if let Err(e) = slack.post_message(&Message::text(&ask.channel, text)).await {
            return failed(state, job, &ask, e).await;
        }
        channels::save(state, &ask.channel, &ask.systems, &ask.by)
            .await
            .map_err(db)?;
        state
            .audit(
                FEATURE,
                "subscribe",
                &ask.by,
                &format!("channel:{}", ask.channel),
                if before.is_some() { "replaced" } else { "ok" },
                json!({"systems": ask.systems, "before": before.map(|b| b.systems)}),
            )
            .await;
        Ok(())
    }
}

/// What to answer when Slack refuses the channel itself: a private channel the bot is not in
/// (Slack hides it: `channel_not_found`; or `not_in_channel`), or an archived one.
fn refusal(e: &SlackError) -> Option<&'static str> {
    if e.is(SlackErrorCode::ChannelNotFound) || e.is(SlackErrorCode::NotInChannel) {
        Some(INVITE_FIRST)
    } else if e.is(SlackErrorCode::IsArchived) {
        Some(":no_entry: This channel is archived; nothing was changed.")
    } else {
        None
    }
}

/// A Slack error while subscribing: answered and done when it is about the channel, retried
/// when Slack may answer differently later (answered on the last attempt), answered and failed
/// otherwise (a missing scope, a revoked token: the operators' to fix).
async fn failed(
    state: &AppState,
    job: &Job,
    ask: &SubscribeAsk,
    e: SlackError,
) -> Result<(), JobError> {
    if let Some(why) = refusal(&e) {
        answer(state, ask, why.into()).await;
        state
            .audit(
                FEATURE,
                "subscribe",
                &ask.by,
                &format!("channel:{}", ask.channel),
                "refused",
                json!({"slack_error": e.code().map(|c| c.to_string())}),
            )
            .await;
        return Ok(());
    }
    if e.is_transient() && !job.is_last_attempt() {
        return Err(e.into());
    }
    answer(
        state,
        ask,
        mrkdwn!(
            ":warning: This channel could not be subscribed: Slack answered {}. Nothing was changed; try again later or ask your slackops operators.",
            e
        ),
    )
    .await;
    Err(JobError::Permanent(e.into()))
}

/// `/announce unsubscribe`.
pub struct UnsubscribeCommand;

#[async_trait]
impl CommandHandler for UnsubscribeCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let Some(channel) = cmd.channel_id.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Ack::ephemeral(
                ":warning: Slack did not say which channel this is.",
            ));
        };
        let removed = channels::remove(state, channel).await?;
        state
            .audit(
                FEATURE,
                "unsubscribe",
                &cx.user_id,
                &format!("channel:{channel}"),
                if removed { "ok" } else { "none" },
                json!({}),
            )
            .await;
        let here = Mrkdwn::channel(channel);
        Ok(Ack::ephemeral(if removed {
            mrkdwn!(
                ":no_bell: {} is unsubscribed: it gets no more outage or maintenance notices.",
                here
            )
        } else {
            mrkdwn!("{} had no subscription; nothing changed.", here)
        }))
    }
}

/// `/announce subscriptions`: this channel's subscription, then every subscribed channel.
pub struct ListCommand;

/// How many channels the list names before "… and N more".
const LIST_MAX: usize = 40;

#[async_trait]
impl CommandHandler for ListCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let catalogue = &state.settings().announcements.systems;
        let command = state.settings().announcements.command.clone();
        let command = command.trim_start_matches('/');
        let here = cmd.channel_id.clone().unwrap_or_default();
        let subs = channels::all(state.db().pool()).await?;
        let line = |s: &Subscription| {
            mrkdwn!(
                "• {}: {} (by {}, {})",
                Mrkdwn::channel(&s.channel),
                system_names(catalogue, &s.systems),
                mention(&s.updated_by),
                blocks::date(s.updated_at)
            )
        };
        let mut text = match subs.iter().find(|s| s.channel == here) {
            Some(s) => mrkdwn!(
                ":bell: This channel gets public outage and maintenance notices for {} (subscribed by {}, {}). `/{} unsubscribe` stops them.",
                system_names(catalogue, &s.systems),
                mention(&s.updated_by),
                blocks::date(s.updated_at),
                command
            ),
            None => mrkdwn!(
                "This channel has no subscription. `/{} subscribe [systems…]` subscribes it (no systems: all of them).",
                command
            ),
        };
        if subs.is_empty() {
            text.push("\nNo channel is subscribed.");
        } else {
            text.push(mrkdwn!("\n*Subscribed channels* ({}):\n", subs.len()));
            text.push(subs.iter().take(LIST_MAX).map(line).join_mrkdwn("\n"));
            if subs.len() > LIST_MAX {
                text.push(mrkdwn!("\n… and {} more", subs.len() - LIST_MAX));
            }
        }
        Ok(Ack::ephemeral(text.truncate(3900)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Vec<SystemEntry> {
        ["search", "payments"]
            .iter()
            .map(|id| SystemEntry {
                id: (*id).into(),
                name: id.to_uppercase(),
                group: None,
            })
            .collect()
    }

    #[test]
    fn systems_are_the_words_after_the_subcommand() {
        let c = catalogue();
        assert_eq!(parse_systems(&c, "subscribe"), Ok(vec![]));
        assert_eq!(
            parse_systems(&c, "subscribe Payments, search payments"),
            Ok(vec!["payments".to_string(), "search".to_string()])
        );
    }

    #[test]
    fn an_unknown_system_is_named_with_the_valid_ones() {
        let why = parse_systems(&catalogue(), "subscribe search <!here>")
            .unwrap_err()
            .into_string();
        assert!(why.contains("`&lt;!here&gt;`"), "{why}");
        assert!(
            why.contains("`search` (SEARCH), `payments` (PAYMENTS)"),
            "{why}"
        );
        assert!(why.contains("Nothing was changed"), "{why}");
    }
}
