//! Handoff notes: the shift-change notice in the group's channel carries a "Hand over" button;
//! the person going off call writes a note in a modal, and the note is posted in the notice's
//! thread and DMed to whoever comes on.
//!
//! Who may hand over: the people the change takes off call (`removed`), or, when nobody goes off
//! (someone joins early for the handover window), the people already on call, who go off when
//! the window ends. Everyone else is told so, privately. The note goes to the people coming on
//! (`added`), or, when nobody comes on, to those who stay on call; never to its writer. The button
//! carries the notice's group, generation and these two lists, so a click needs no lookup; the
//! modal carries them on with the notice's channel and `ts`.
//!
//! The click only opens the modal (`views.open`, allowed before the ack); the submission only
//! checks the note and queues jobs (a thread post, one DM per person), each with a dedup key per
//! submitted view, so a double submit (or a retried delivery) posts once. What it must never do:
//! post the note unescaped, log it, or accept it from someone who is not going off call.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::notify::Handover;
use crate::jobs::{Job, JobError, NewJob};
use crate::mrkdwn;
use crate::registry::{ActionHandler, JobHandler, SlackCtx, ViewHandler};
use crate::slack::ack::Ack;
use crate::slack::api::Message;
use crate::slack::blocks::{mention, message_view};
use crate::slack::mrkdwn::{JoinMrkdwn, Mrkdwn};
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

/// The longest note (Slack's own limit for a plain-text input is 3000).
pub const NOTE_MAX: usize = 3000;
/// The input's block id: field errors are shown on it.
pub const NOTE_BLOCK: &str = "note";

fn only_off(h: &Handover) -> Mrkdwn {
    mrkdwn!(
        "Only the person going off call ({}) can hand over *@{}*.",
        h.off.iter().map(|u| mention(u)).join_mrkdwn(", "),
        h.handle
    )
}

/// The note's modal.
pub fn note_view(h: &Handover) -> Value {
    json!({
        "type": "modal",
        "callback_id": super::VIEW_HANDOVER,
        "title": {"type": "plain_text", "text": "Hand over"},
        "submit": {"type": "plain_text", "text": "Post note"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": serde_json::to_string(h).unwrap_or_default(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn!(
                "Your handover note for *@{}* is posted in the thread of the shift-change notice and sent to {}.",
                h.handle,
                h.on.iter().map(|u| mention(u)).join_mrkdwn(", ")
            ).truncate(3000)}},
            {"type": "input", "block_id": NOTE_BLOCK,
             "label": {"type": "plain_text", "text": "Handover note"},
             "element": {"type": "plain_text_input", "action_id": "value", "multiline": true,
                         "max_length": NOTE_MAX,
                         "placeholder": {"type": "plain_text",
                                         "text": "Open incidents, things to watch, anything unusual"}}}
        ]
    })
}

/// Mrkdwn quote of user text, escaped.
fn quote(note: &str) -> Mrkdwn {
    note.split('\n')
        .map(|line| mrkdwn!(">{}", line))
        .join_mrkdwn("\n")
}

/// The "Hand over" button.
pub struct HandoverAction;

#[async_trait]
impl ActionHandler for HandoverAction {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let Some(mut h) = action
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<Handover>(v).ok())
        else {
            return Ok(Ack::ephemeral(
                "This button cannot be used any more; write your handover note in the thread.",
            ));
        };
        if !h.off.contains(&cx.user_id) {
            return Ok(Ack::ephemeral(only_off(&h)));
        }
        let (Some(channel), Some(ts), Some(trigger)) = (
            interaction.channel_id(),
            interaction.message_ts(),
            interaction.trigger_id.as_deref(),
        ) else {
            return Ok(Ack::ephemeral(
                "Slack did not say which message this is; write your handover note in the thread.",
            ));
        };
        h.channel = Some(channel.to_string());
        h.ts = Some(ts.to_string());
        match cx.state.slack().views_open(trigger, &note_view(&h)).await {
            Ok(_) => Ok(Ack::Empty),
            Err(e) => {
                warn!(error = %e, "opening the handover modal failed");
                Ok(Ack::ephemeral(mrkdwn!(
                    "The form could not be opened ({}); press Hand over again.",
                    e
                )))
            }
        }
    }
}

/// A handover note to post: in the notice's thread, or to one person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotePost {
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub user: Option<String>,
    pub text: Mrkdwn,
}

/// The note's submission.
pub struct HandoverView;

#[async_trait]
impl ViewHandler for HandoverView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let view = interaction.view.clone().unwrap_or_default();
        let Ok(h) = serde_json::from_str::<Handover>(&view.private_metadata) else {
            return Ok(Ack::ViewUpdate(message_view(
                "Hand over",
                "This form cannot be used any more; write your handover note in the thread.",
            )));
        };
        if !h.off.contains(&cx.user_id) {
            return Ok(Ack::ViewUpdate(message_view("Hand over", only_off(&h))));
        }
        let note = view.input(NOTE_BLOCK, "value").unwrap_or_default();
        let note = note.trim();
        if note.is_empty() {
            return Ok(Ack::view_error(
                NOTE_BLOCK,
                "Write a note for whoever comes on call.",
            ));
        }
        if note.chars().count() > NOTE_MAX {
            return Ok(Ack::view_error(
                NOTE_BLOCK,
                format!("At most {NOTE_MAX} characters."),
            ));
        }
        let (Some(channel), Some(ts)) = (h.channel.clone(), h.ts.clone()) else {
            return Ok(Ack::ViewUpdate(message_view(
                "Hand over",
                "This form lost track of its notice; write your handover note in the thread.",
            )));
        };
        let group = mrkdwn!("*@{}*", h.handle);
        let writer = mention(&cx.user_id);
        let mut jobs = vec![(
            "thread".to_string(),
            NotePost {
                channel: Some(channel.clone()),
                thread_ts: Some(ts),
                user: None,
                text: mrkdwn!(
                    ":memo: Handover note from {} for {}:\n{}",
                    &writer,
                    &group,
                    quote(note)
                ),
            },
        )];
        for u in h.on.iter().filter(|u| **u != cx.user_id) {
            jobs.push((
                format!("dm:{u}"),
                NotePost {
                    channel: None,
                    thread_ts: None,
                    user: Some(u.clone()),
                    text: mrkdwn!(
                        ":memo: {} handed {} over to you with a note (also in the thread of the shift-change notice in {}):\n{}",
                        &writer,
                        &group,
                        Mrkdwn::channel(&channel),
                        quote(note)
                    ),
                },
            ));
        }
        let mut tx = state.db().pool().begin().await?;
        for (suffix, post) in &jobs {
            state
                .jobs()
                .insert(
                    &mut *tx,
                    NewJob::new(super::JOB_HANDOVER, post).dedup(format!(
                        "{}:{}:{suffix}",
                        super::JOB_HANDOVER,
                        view.id
                    )),
                )
                .await?;
        }
        tx.commit().await?;
        state.jobs().wake();
        state
            .audit(
                super::FEATURE,
                "handover",
                &cx.user_id,
                &format!("oncall:{}", h.handle),
                "ok",
                json!({"generation": h.generation, "to": h.on, "chars": note.chars().count()}),
            )
            .await;
        Ok(Ack::Empty)
    }
}

/// Posts a handover note.
pub struct HandoverJob;

#[async_trait]
impl JobHandler for HandoverJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let p: NotePost = job.payload().map_err(JobError::Permanent)?;
        let channel = match (&p.channel, &p.user) {
            (Some(c), _) => c.clone(),
            (None, Some(u)) => state.slack().open_dm(u).await?,
            (None, None) => return Ok(()),
        };
        let mut msg = Message::text(channel, p.text);
        if let Some(ts) = &p.thread_ts {
            msg = msg.in_thread(ts);
        }
        state.slack().post_message(&msg).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_quoted_and_escaped() {
        assert_eq!(
            quote("a <!channel>\nb & c"),
            ">a &lt;!channel&gt;\n>b &amp; c"
        );
    }
}
