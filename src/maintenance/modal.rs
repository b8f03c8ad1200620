//! The `/announce maintenance` modal: title, details, start and end (Slack datetimepickers, shown
//! in each person's own time zone), systems from the catalogue, and whether the window appears on
//! the public status page. Bad input comes back as field errors in the modal.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::model::{self, Draft};
use super::{ChangeError, VIEW_CREATE};
use crate::mrkdwn;
use crate::registry::{SlackCtx, ViewHandler};
use crate::slack::ack::Ack;
use crate::slack::blocks::truncate;
use crate::slack::payload::{Interaction, SlashCommand};
use crate::state::AppState;

pub const B_TITLE: &str = "title";
pub const B_SUMMARY: &str = "summary";
pub const B_START: &str = "starts_at";
pub const B_END: &str = "ends_at";
pub const B_SYSTEMS: &str = "systems";
pub const B_PUBLIC: &str = "public";
/// Every input's `action_id`.
pub const A_VALUE: &str = "value";

fn plain(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max)})
}

/// The modal, with start and end proposed from `now` (the next quarter hour, for an hour).
pub fn view(state: &AppState, now: i64) -> Value {
    let quarter = 15 * 60;
    let start = (now / 1000 / quarter + 1) * quarter;
    let mut blocks = vec![
        json!({"type": "input", "block_id": B_TITLE, "label": plain("What is being maintained", 2000),
               "element": {"type": "plain_text_input", "action_id": A_VALUE, "max_length": model::TITLE_MAX,
                           "placeholder": plain("Database upgrade", 150)}}),
        json!({"type": "input", "block_id": B_SUMMARY, "optional": true, "label": plain("Details", 2000),
               "element": {"type": "plain_text_input", "action_id": A_VALUE, "multiline": true,
                           "max_length": model::SUMMARY_MAX}}),
        json!({"type": "input", "block_id": B_START, "label": plain("Starts", 2000),
               "hint": plain("In your time zone.", 2000),
               "element": {"type": "datetimepicker", "action_id": A_VALUE, "initial_date_time": start}}),
        json!({"type": "input", "block_id": B_END, "label": plain("Ends", 2000),
               "element": {"type": "datetimepicker", "action_id": A_VALUE, "initial_date_time": start + 3600}}),
    ];
    let catalogue = &state.settings().announcements.systems;
    if !catalogue.is_empty() {
        // System ids are at most 150 characters (checked at start-up), so they fit an option
        // value whole; a catalogue over 100 systems is grouped, never cut.
        let options: Vec<Value> = catalogue
            .iter()
            .map(|s| {
                let label = match &s.group {
                    Some(g) => format!("{} ({g})", s.name),
                    None => s.name.clone(),
                };
                json!({"text": plain(&label, 75), "value": s.id})
            })
            .collect();
        let mut element = json!({"type": "multi_static_select", "action_id": A_VALUE,
                                 "placeholder": plain("Choose systems", 150)});
        if options.len() <= 100 {
            element["options"] = json!(options);
        } else {
            let groups: Vec<Value> = options
                .chunks(100)
                .enumerate()
                .map(|(g, chunk)| json!({"label": plain(&format!("{}–{}", g * 100 + 1, g * 100 + chunk.len()), 75), "options": chunk}))
                .collect();
            element["option_groups"] = json!(groups);
        }
        blocks.push(json!({"type": "input", "block_id": B_SYSTEMS,
                           "label": plain("Affected systems", 2000), "element": element}));
    }
    let public = json!({"text": plain("Show on the public status page", 75), "value": "public"});
    blocks.push(json!({"type": "input", "block_id": B_PUBLIC, "optional": true, "label": plain("Status page", 2000),
           "element": {"type": "checkboxes", "action_id": A_VALUE, "options": [public.clone()],
                       "initial_options": [public]}}));
    json!({
        "type": "modal",
        "callback_id": VIEW_CREATE,
        "title": plain("Schedule maintenance", 24),
        "submit": plain("Schedule", 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    })
}

/// Open the modal for `/announce maintenance`.
pub async fn open(cx: &SlackCtx, cmd: &SlashCommand) -> anyhow::Result<Ack> {
    let Some(trigger) = cmd.trigger_id.as_deref() else {
        return Ok(Ack::ephemeral(
            "Slack sent no trigger for a modal; run the command again.",
        ));
    };
    match cx
        .state
        .slack()
        .views_open(trigger, &view(&cx.state, cx.state.now_ms()))
        .await
    {
        Ok(_) => Ok(Ack::Empty),
        Err(e) => {
            tracing::warn!(error = %e, "opening the maintenance modal failed");
            Ok(Ack::ephemeral(mrkdwn!(
                "The maintenance form could not be opened ({}); run the command again.",
                e,
            )))
        }
    }
}

/// The block that shows a field's error.
fn block_of(field: &str) -> &'static str {
    match field {
        "title" => B_TITLE,
        "summary" => B_SUMMARY,
        "starts_at" => B_START,
        "ends_at" => B_END,
        "systems" => B_SYSTEMS,
        _ => B_TITLE,
    }
}

/// The submission.
pub struct CreateView;

#[async_trait]
impl ViewHandler for CreateView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let Some(v) = interaction.view.as_ref() else {
            return Ok(Ack::Empty);
        };
        // Checked again on submit: who may announce can change while the form is open.
        if let Err(why) = crate::policy::may_announce(&cx.state, &cx.user_id).await? {
            return Ok(Ack::ViewUpdate(crate::slack::blocks::message_view(
                "Not allowed",
                &why,
            )));
        }
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut time = |block: &str| -> i64 {
            match v.input(block, A_VALUE).and_then(|s| s.parse::<i64>().ok()) {
                Some(secs) => secs * 1000,
                None => {
                    errors.push((block.to_string(), "Choose a date and a time.".into()));
                    0
                }
            }
        };
        let starts_at = time(B_START);
        let ends_at = time(B_END);
        if !errors.is_empty() {
            return Ok(Ack::ViewErrors(errors));
        }
        let draft = Draft {
            title: v.input(B_TITLE, A_VALUE).unwrap_or_default(),
            summary: v.input(B_SUMMARY, A_VALUE).unwrap_or_default(),
            systems: v.inputs(B_SYSTEMS, A_VALUE),
            starts_at,
            ends_at,
            public: v.inputs(B_PUBLIC, A_VALUE).iter().any(|o| o == "public"),
        };
        match super::create(&cx.state, draft, &cx.user_id).await {
            Ok(_) => Ok(Ack::Empty),
            Err(ChangeError::Invalid(errs)) => {
                let mut out: Vec<(String, String)> = Vec::new();
                for e in errs {
                    let block = block_of(e.field).to_string();
                    let message = capitalise(&e.message);
                    match out.iter_mut().find(|(b, _)| *b == block) {
                        Some((_, m)) => {
                            m.push(' ');
                            m.push_str(&message);
                        }
                        None => out.push((block, message)),
                    }
                }
                Ok(Ack::ViewErrors(out))
            }
            Err(ChangeError::Store(e)) => Err(anyhow::anyhow!(
                "saving the maintenance window failed: {}",
                crate::store::short_db_error(&e)
            )),
            Err(other) => Err(anyhow::anyhow!("unexpected: {other:?}")),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => {
            let mut out: String = f.to_uppercase().collect();
            out.push_str(c.as_str());
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}
