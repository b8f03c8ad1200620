//! `/announce [system filter]` and the modals that create and change an outage.
//!
//! The modals' block ids are the field names [`model::validate`] reports (`summary`, `systems`,
//! `impact.<audience>`, …), so a validation error is shown on the input it is about. The modal
//! is opened before anything slow: Slack's `trigger_id` lives 3 s.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::alerts::{self, DecisionError};
use super::changes::{self, Change, ChangeError, Kind};
use super::model::{self, AFFECTED, ETAS, Fields, Impact, Outage};
use super::{ACTION_REASSIGN, VIEW_NEW, VIEW_REASSIGN, VIEW_UPDATE, may_change};
use crate::announcements::settings::AnnouncementsSettings;
use crate::mrkdwn;
use crate::policy::may_announce;
use crate::registry::{ActionHandler, CommandHandler, SlackCtx, ViewHandler};
use crate::slack::ack::Ack;
use crate::slack::blocks::truncate;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction, SlashCommand, View};
use crate::state::AppState;

/// Which fields a modal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    New,
    Update,
    Reassign,
}

fn pt(text: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": truncate(text, max)})
}

fn option(text: &str, value: &str) -> Value {
    json!({"text": pt(text, 75), "value": truncate(value, 150)})
}

fn input(block_id: &str, label: &str, element: Value, optional: bool) -> Value {
    json!({"type": "input", "block_id": block_id, "optional": optional,
           "label": pt(label, 2000), "element": element})
}

fn select(options: Vec<Value>, initial: Option<Value>, placeholder: &str) -> Value {
    let mut e = json!({"type": "static_select", "action_id": "value",
                       "placeholder": pt(placeholder, 150), "options": options});
    if let Some(i) = initial {
        e["initial_option"] = i;
    }
    e
}

fn text_input(initial: &str, multiline: bool, max: usize) -> Value {
    let mut e = json!({"type": "plain_text_input", "action_id": "value",
                       "multiline": multiline, "max_length": max});
    if !initial.is_empty() {
        e["initial_value"] = json!(truncate(initial, max));
    }
    e
}

fn user_select(initial: &str) -> Value {
    let mut e = json!({"type": "users_select", "action_id": "value",
                       "placeholder": pt("Choose a person", 150)});
    if !initial.is_empty() {
        e["initial_user"] = json!(initial);
    }
    e
}

/// What the modal carries between opening and submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    #[serde(rename = "o", default)]
    pub outage_id: Option<String>,
    #[serde(rename = "v", default)]
    pub version: i64,
    /// The alert group whose suggestion opened the form (announcing decides the suggestion).
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub alert_group: Option<String>,
    /// The page this announcement was started from (a pager incident's link): the announcement
    /// always links back to it, even when the summary was edited.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub incident_url: Option<String>,
}

impl Meta {
    /// A new outage's form.
    pub fn new_outage() -> Self {
        Self {
            outage_id: None,
            version: 0,
            incident_url: None,
            alert_group: None,
        }
    }
}

/// The summary with a link back to the incident it came from, unless it already holds one.
pub fn with_incident_link(summary: &str, incident_url: Option<&str>) -> String {
    match incident_url {
        Some(url) if !url.is_empty() && !summary.contains(url) => {
            format!("{}\nIncident: {url}", summary.trim_end())
        }
        _ => summary.to_string(),
    }
}

/// The outage form. `filter` ranks matching systems first; `defaults` pre-fills it.
pub fn form_view(
    settings: &AnnouncementsSettings,
    mode: Mode,
    filter: &str,
    defaults: &Fields,
    meta: &Meta,
) -> Value {
    let mut blocks = Vec::new();
    if mode != Mode::Reassign {
        blocks.push(input(
            "summary",
            "Summary: who cannot do what, and why if known",
            text_input(&defaults.summary, true, model::SUMMARY_MAX),
            false,
        ));
        blocks.push(systems_input(settings, filter, defaults));
        blocks.extend(impact_inputs(settings, defaults));
        blocks.push(severity_input(settings, defaults));
        blocks.push(eta_input(defaults));
    }
    if mode != Mode::Update {
        blocks.push(input(
            "resolution_assignee",
            "Resolution assignee",
            user_select(&defaults.resolution_assignee),
            false,
        ));
        blocks.push(input(
            "communication_assignee",
            "Communication assignee",
            user_select(&defaults.communication_assignee),
            false,
        ));
    }
    if mode != Mode::Reassign {
        let opt = option("Show it on the public status page", "public");
        let mut e = json!({"type": "checkboxes", "action_id": "value", "options": [opt]});
        if defaults.public {
            e["initial_options"] = json!([opt]);
        }
        blocks.push(input("public", "Status page", e, true));
    }
    if mode != Mode::New {
        blocks.push(input(
            "reason",
            "Why? (posted in the thread with the change)",
            text_input("", true, model::REASON_MAX),
            false,
        ));
    }
    let (callback, title, submit) = match mode {
        Mode::New => (VIEW_NEW, "Announce an outage", "Announce"),
        Mode::Update => (VIEW_UPDATE, "Update the outage", "Update"),
        Mode::Reassign => (VIEW_REASSIGN, "Reassign the outage", "Reassign"),
    };
    json!({
        "type": "modal",
        "callback_id": callback,
        "title": pt(title, 24),
        "submit": pt(submit, 24),
        "close": pt("Cancel", 24),
        "private_metadata": serde_json::to_string(meta).unwrap_or_default(),
        "blocks": blocks
    })
}

/// The affected systems, those matching `filter` first.
fn systems_input(settings: &AnnouncementsSettings, filter: &str, defaults: &Fields) -> Value {
    let systems: Vec<Value> = model::rank_systems(settings, filter)
        .into_iter()
        .take(100)
        .map(|s| option(&s.name, &s.id))
        .collect();
    let mut e = json!({"type": "multi_static_select", "action_id": "value",
                       "placeholder": pt("Choose the affected systems", 150),
                       "options": systems});
    let initial: Vec<Value> = settings
        .systems
        .iter()
        .filter(|s| defaults.systems.contains(&s.id))
        .map(|s| option(&s.name, &s.id))
        .collect();
    if !initial.is_empty() {
        e["initial_options"] = json!(initial);
    }
    input("systems", "Affected systems", e, false)
}

/// Whether each audience is affected, and how.
fn impact_inputs(settings: &AnnouncementsSettings, defaults: &Fields) -> Vec<Value> {
    let mut blocks = Vec::new();
    for a in &settings.audiences {
        let current = defaults.impact.get(&a.id).cloned().unwrap_or_default();
        let opts: Vec<Value> = AFFECTED.iter().map(|(v, l)| option(l, v)).collect();
        let initial = AFFECTED
            .iter()
            .find(|(v, _)| *v == current.affected)
            .map(|(v, l)| option(l, v));
        blocks.push(input(
            &format!("impact.{}", a.id),
            &format!("Impact on {}", a.name),
            select(opts, initial, "Affected?"),
            false,
        ));
        blocks.push(input(
            &format!("impact.{}.details", a.id),
            &format!("Impact on {}: details", a.name),
            text_input(&current.details, false, model::DETAILS_MAX),
            true,
        ));
    }
    blocks
}

fn severity_input(settings: &AnnouncementsSettings, defaults: &Fields) -> Value {
    let sev: Vec<Value> = settings.severities.iter().map(|s| option(s, s)).collect();
    let initial = settings
        .severities
        .iter()
        .find(|s| **s == defaults.severity)
        .map(|s| option(s, s));
    input(
        "severity",
        "Severity",
        select(sev, initial, "Choose"),
        false,
    )
}

fn eta_input(defaults: &Fields) -> Value {
    let etas: Vec<Value> = ETAS.iter().map(|(id, l, _)| option(l, id)).collect();
    let initial = ETAS
        .iter()
        .find(|(id, _, _)| *id == defaults.eta)
        .map(|(id, l, _)| option(l, id));
    input(
        "eta",
        "ETA (from now)",
        select(etas, initial, "Choose"),
        false,
    )
}

/// The fields as submitted, over `base` (fields a mode does not ask for keep their value).
pub fn fields_from_view(
    settings: &AnnouncementsSettings,
    view: &View,
    mode: Mode,
    base: &Fields,
) -> Fields {
    let mut f = base.clone();
    let get = |b: &str| view.input(b, "value").unwrap_or_default();
    if mode != Mode::Reassign {
        f.summary = get("summary");
        f.systems = view.inputs("systems", "value");
        for a in &settings.audiences {
            f.impact.insert(
                a.id.clone(),
                Impact {
                    affected: get(&format!("impact.{}", a.id)),
                    details: get(&format!("impact.{}.details", a.id)).trim().to_string(),
                },
            );
        }
        f.severity = get("severity");
        f.eta = get("eta");
        f.public = view.inputs("public", "value").iter().any(|v| v == "public");
    }
    if mode != Mode::Update {
        f.resolution_assignee = get("resolution_assignee");
        f.communication_assignee = get("communication_assignee");
    }
    f
}

/// A modal that only says something.
pub fn message_view(heading: &str, text: impl Into<Mrkdwn>) -> Value {
    crate::slack::blocks::message_view(heading, text)
}

/// `/announce`.
pub struct AnnounceCommand;

#[async_trait]
impl CommandHandler for AnnounceCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let text = cmd.text.trim().to_string();
        let first = text.split_whitespace().next().unwrap_or("");
        let state = &cx.state;
        let settings = &state.settings().announcements;
        if let Some(sub) = state.registry().subcommand_handler(&cmd.command, first) {
            // A subcommand another feature registered (`maintenance`: scheduling maintenance)
            // is announcing too: the same people may do it.
            if let Err(why) = may_announce(state, &cx.user_id).await? {
                return Ok(Ack::ephemeral(why));
            }
            return sub.handle(cx, cmd).await;
        }
        if first.eq_ignore_ascii_case("help") {
            return Ok(Ack::ephemeral(mrkdwn!(
                "`{} [system]` announces an outage (the systems matching the text are listed first).\n`{} maintenance …` schedules maintenance.\n`{} postmortems` lists the open postmortems.\n`{} subscribe [systems…]` posts public outage and maintenance notices in this channel (no systems: all); `{} subscriptions` lists them; `{} unsubscribe` stops them.",
                settings.command,
                settings.command,
                settings.command,
                settings.command,
                settings.command,
                settings.command,
            )));
        }
        if settings.channel.is_none() || settings.systems.is_empty() {
            return Ok(Ack::ephemeral(
                "Outage announcements are not set up yet: `announcements.channel` and `announcements.systems` must be configured. Ask your slackops operators.",
            ));
        }
        if let Err(why) = may_announce(state, &cx.user_id).await? {
            return Ok(Ack::ephemeral(why));
        }
        let Some(trigger) = cmd.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral(
                "Slack did not send a trigger for the form; try again.",
            ));
        };
        let mut defaults = Fields {
            resolution_assignee: cx.user_id.clone(),
            communication_assignee: cx.user_id.clone(),
            ..Fields::default()
        };
        // A filter naming exactly one system pre-selects it.
        let ranked = model::rank_systems(settings, &text);
        if !text.is_empty() {
            let t = text.to_lowercase();
            let exact: Vec<_> = ranked
                .iter()
                .filter(|s| s.id.to_lowercase() == t || s.name.to_lowercase() == t)
                .collect();
            if exact.len() == 1 {
                defaults.systems = vec![exact[0].id.clone()];
            }
        }
        let view = form_view(settings, Mode::New, &text, &defaults, &Meta::new_outage());
        match state.slack().views_open(trigger, &view).await {
            Ok(_) => Ok(Ack::Empty),
            Err(e) => {
                warn!(error = %e, "opening the announce modal failed");
                Ok(Ack::ephemeral(mrkdwn!(
                    "The form could not be opened ({}); run `{}` again.",
                    e,
                    settings.command,
                )))
            }
        }
    }
}

fn view_errors(problems: Vec<(String, String)>, known: &[String]) -> Ack {
    // An error about a field the modal has no input for goes on the first input.
    let first = known.first().cloned().unwrap_or_else(|| "summary".into());
    Ack::ViewErrors(
        problems
            .into_iter()
            .map(|(k, m)| {
                if known.contains(&k) {
                    (k, m)
                } else {
                    (first.clone(), format!("{k}: {m}"))
                }
            })
            .collect(),
    )
}

fn block_ids(view_json: &Value) -> Vec<String> {
    view_json["blocks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The new-outage modal's submission.
pub struct NewView;

#[async_trait]
impl ViewHandler for NewView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let settings = &state.settings().announcements;
        if let Err(why) = may_announce(state, &cx.user_id).await? {
            return Ok(Ack::ViewUpdate(message_view("Announce", &why)));
        }
        let view = interaction.view.clone().unwrap_or_default();
        let mut fields = fields_from_view(settings, &view, Mode::New, &Fields::default());
        let meta: Option<Meta> = serde_json::from_str(&view.private_metadata).ok();
        if let Some(url) = meta.and_then(|m| m.incident_url)
            && !fields.summary.trim().is_empty()
        {
            fields.summary = with_incident_link(&fields.summary, Some(&url));
        }
        model::complete_impact(settings, &mut fields);
        let mut problems = model::validate(settings, &fields);
        if problems.is_empty() {
            problems = match changes::assignee_problems(state, &fields, None).await {
                Ok(p) => p,
                Err(ChangeError::Unavailable { field, message }) => vec![(field, message)],
                Err(e) => return Err(e.into()),
            };
        }
        if !problems.is_empty() {
            let known = block_ids(&form_view(
                settings,
                Mode::New,
                "",
                &fields,
                &Meta::new_outage(),
            ));
            return Ok(view_errors(problems, &known));
        }
        let group = serde_json::from_str::<Meta>(&view.private_metadata)
            .ok()
            .and_then(|m| m.alert_group);
        let outage = match group {
            None => changes::announce(state, fields, &cx.user_id).await?,
            Some(g) => match alerts::announce_from(state, &g, fields, &cx.user_id).await {
                Ok(o) => o,
                Err(DecisionError::Other(e)) => return Err(e),
                Err(e) => {
                    return Ok(Ack::ViewUpdate(message_view(
                        "Announce",
                        mrkdwn!("Nothing was announced: {}.", e),
                    )));
                }
            },
        };
        state
            .audit(
                super::FEATURE,
                "announce",
                &cx.user_id,
                &format!("outage:{}", outage.id),
                "ok",
                json!({"systems": outage.fields.systems, "severity": outage.fields.severity}),
            )
            .await;
        Ok(Ack::Empty)
    }
}

/// Load an outage from a button's value and check who clicked. `Err(ack)` answers the person.
pub async fn outage_for_action(
    state: &AppState,
    user: &str,
    action: &Action,
    verb: &str,
) -> anyhow::Result<Result<Outage, Ack>> {
    let id = action.value.clone().unwrap_or_default();
    let Some(outage) = model::load(state.db().pool(), &id).await? else {
        return Ok(Err(Ack::ephemeral("This outage no longer exists.")));
    };
    if let Err(why) = may_change(state, &outage, user, verb).await? {
        return Ok(Err(Ack::ephemeral(why)));
    }
    Ok(Ok(outage))
}

/// Update and Reassign buttons (also Update on the ETA-passed prompt).
pub struct OpenChange;

#[async_trait]
impl ActionHandler for OpenChange {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let mode = if action.action_id.starts_with(ACTION_REASSIGN) {
            Mode::Reassign
        } else {
            Mode::Update
        };
        let verb = if mode == Mode::Reassign {
            "reassign"
        } else {
            "update"
        };
        let outage = match outage_for_action(state, &cx.user_id, &action, verb).await? {
            Ok(o) => o,
            Err(ack) => return Ok(ack),
        };
        if !outage.is_open() {
            return Ok(Ack::ephemeral(
                "This outage is resolved; reopen it to change it.",
            ));
        }
        let Some(trigger) = interaction.trigger_id.as_deref() else {
            return Ok(Ack::ephemeral("Slack sent no trigger; try again."));
        };
        let view = form_view(
            &state.settings().announcements,
            mode,
            "",
            &outage.fields,
            &Meta {
                outage_id: Some(outage.id.clone()),
                version: outage.version,
                incident_url: None,
                alert_group: None,
            },
        );
        if let Err(e) = state.slack().views_open(trigger, &view).await {
            warn!(error = %e, "opening the change modal failed");
            return Ok(Ack::ephemeral(mrkdwn!(
                "The form could not be opened ({}); try again.",
                e,
            )));
        }
        Ok(Ack::Empty)
    }
}

/// The Update and Reassign modals' submission.
pub struct ChangeView;

#[async_trait]
impl ViewHandler for ChangeView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let settings = &state.settings().announcements;
        let view = interaction.view.clone().unwrap_or_default();
        let mode = if view.callback_id == VIEW_REASSIGN {
            Mode::Reassign
        } else {
            Mode::Update
        };
        let Some(meta) = serde_json::from_str::<Meta>(&view.private_metadata)
            .ok()
            .filter(|m| m.outage_id.is_some())
        else {
            return Ok(Ack::ViewUpdate(message_view(
                "Outage",
                "This form is out of date; open it again from the announcement.",
            )));
        };
        let id = meta.outage_id.clone().unwrap_or_default();
        let Some(outage) = model::load(state.db().pool(), &id).await? else {
            return Ok(Ack::ViewUpdate(message_view(
                "Outage",
                "This outage no longer exists.",
            )));
        };
        let verb = if mode == Mode::Reassign {
            "reassign"
        } else {
            "update"
        };
        if let Err(why) = may_change(state, &outage, &cx.user_id, verb).await? {
            return Ok(Ack::ViewUpdate(message_view("Outage", &why)));
        }
        let fields = fields_from_view(settings, &view, mode, &outage.fields);
        let reason = view.input("reason", "value").unwrap_or_default();
        let known = block_ids(&form_view(settings, mode, "", &fields, &meta));
        let mut problems = model::validate(settings, &fields);
        if reason.trim().is_empty() {
            problems.push(("reason".into(), "Say why, for the people following.".into()));
        }
        if !problems.is_empty() {
            return Ok(view_errors(problems, &known));
        }
        let kind = if mode == Mode::Reassign {
            Kind::Reassigned
        } else {
            Kind::Updated
        };
        let change = Change {
            kind,
            by: cx.user_id.clone(),
            reason: Some(reason.trim().to_string()),
            expected_version: Some(meta.version),
            fields: Some(fields),
            resolution: None,
        };
        match changes::apply(state, &id, change).await {
            Ok(_) => Ok(Ack::Empty),
            Err(ChangeError::Invalid(p)) => Ok(view_errors(p, &known)),
            Err(ChangeError::Unavailable { field, message }) => {
                Ok(view_errors(vec![(field, message)], &known))
            }
            Err(ChangeError::NothingChanged) => Ok(Ack::view_error(
                known.first().cloned().unwrap_or_else(|| "reason".into()),
                "Nothing changed: change a field, or cancel.",
            )),
            Err(ChangeError::Conflict) => Ok(Ack::ViewUpdate(message_view(
                "Outage",
                "Someone changed this outage while you were editing; open the form again to see the latest.",
            ))),
            Err(ChangeError::NotFound) => Ok(Ack::ViewUpdate(message_view(
                "Outage",
                "This outage no longer exists.",
            ))),
            Err(ChangeError::WrongState(s)) => Ok(Ack::ViewUpdate(message_view(
                "Outage",
                mrkdwn!("Not changed: {}.", s),
            ))),
            Err(ChangeError::Other(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_incident_link;

    #[test]
    fn an_announcement_started_from_a_page_keeps_its_link() {
        let url = "https://acme.pagerduty.com/incidents/P1";
        assert_eq!(
            with_incident_link("Checkout down", Some(url)),
            format!("Checkout down\nIncident: {url}")
        );
        let edited = format!("Checkout down, see {url}");
        assert_eq!(with_incident_link(&edited, Some(url)), edited);
        assert_eq!(with_incident_link("x", None), "x");
    }
}
