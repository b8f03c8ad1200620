//! `start <application> <pipeline> [name=value …]`: look the pipeline up, check the parameters
//! against its `parameterConfig`, ask for missing ones in a modal, confirm when configured, and
//! trigger it once.
//!
//! Slack's `trigger_id` expires 3 s after the command, and the lookups (Slack profile, user
//! groups, Gate) can be slow; when they take longer than about a second a loading modal is opened
//! first and updated once the answer is there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::warn;

use super::{ACTION_CONFIRM_START, StartRequest, VIEW_START, authorize, trigger_and_announce};
use crate::authz::Identity;
use crate::mrkdwn;
use crate::pipelines::settings::PipelineRule;
use crate::registry::{ActionHandler, SlackCtx, ViewHandler};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks::{self, escape, message_view, modal_title, truncate};
use crate::slack::choices;
use crate::slack::mrkdwn::JoinMrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::{Action, Interaction, SlashCommand};
use crate::spinnaker::gate::GateError;
use crate::state::AppState;

/// How long the lookups may take before a loading modal is opened.
const LOADING_AFTER: Duration = Duration::from_millis(1200);

/// One entry of a pipeline's `parameterConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub label: String,
    pub description: Option<String>,
    pub default: Option<String>,
    pub required: bool,
    pub options: Vec<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Read `parameterConfig`.
pub fn specs(config: &Value) -> Vec<ParamSpec> {
    config
        .get("parameterConfig")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let name = p.get("name").and_then(Value::as_str)?.to_string();
                    let options: Vec<String> = p
                        .get("options")
                        .and_then(Value::as_array)
                        .map(|o| {
                            o.iter()
                                .filter_map(|x| {
                                    x.get("value").and_then(scalar).or_else(|| scalar(x))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let has_options = p
                        .get("hasOptions")
                        .and_then(Value::as_bool)
                        .unwrap_or(!options.is_empty());
                    Some(ParamSpec {
                        label: p
                            .get("label")
                            .and_then(Value::as_str)
                            .filter(|l| !l.is_empty())
                            .unwrap_or(&name)
                            .to_string(),
                        description: p
                            .get("description")
                            .and_then(Value::as_str)
                            .filter(|d| !d.is_empty())
                            .map(str::to_owned),
                        default: p.get("default").and_then(scalar),
                        required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                        options: if has_options { options } else { Vec::new() },
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Check given parameters: known names, and values among a parameter's options.
pub fn validate(specs: &[ParamSpec], given: &BTreeMap<String, String>) -> Result<(), Mrkdwn> {
    for (k, v) in given {
        let Some(spec) = specs.iter().find(|s| &s.name == k) else {
            let known = if specs.is_empty() {
                Mrkdwn::from("it takes no parameters")
            } else {
                mrkdwn!(
                    "it takes {}",
                    specs
                        .iter()
                        .map(|s| mrkdwn!("`{}`", escape(&s.name)))
                        .join_mrkdwn(", "),
                )
            };
            return Err(mrkdwn!(
                "`{}` is not a parameter of this pipeline: {}.",
                escape(k),
                known,
            ));
        };
        // `name=` with nothing for a required parameter without a default opens the form
        // (`missing`); anything else blank would reach Gate as a value.
        if spec.required && is_blank(v) && (!v.is_empty() || spec.default.is_some()) {
            return Err(mrkdwn!(
                "`{}` is required and cannot be blank: give it a value, e.g. `{}=…`.",
                escape(k),
                escape(k),
            ));
        }
        if !spec.options.is_empty() && !spec.options.contains(v) {
            return Err(mrkdwn!(
                "`{}={}` is not allowed: `{}` must be one of {}.",
                escape(k),
                escape(v),
                escape(k),
                spec.options
                    .iter()
                    .map(|o| mrkdwn!("`{}`", escape(o)))
                    .join_mrkdwn(", "),
            ));
        }
    }
    Ok(())
}

/// A value that is empty or only spaces: not a value (Gate would take it as given).
pub fn is_blank(v: &str) -> bool {
    v.trim().is_empty()
}

/// One field of the submitted form: the exact value to send (`None`: not given, Gate applies the
/// default), or the field error. A select's value is a reference to one of the options.
fn submitted_value(s: &ParamSpec, raw: Option<String>) -> Result<Option<String>, String> {
    match raw.filter(|v| !is_blank(v)) {
        Some(v) if !s.options.is_empty() => match choices::resolve(&v, &s.options) {
            Some(o) => Ok(Some(o.to_string())),
            None => Err(truncate(
                &format!("Choose one of: {}", s.options.join(", ")),
                2000,
            )),
        },
        Some(v) => Ok(Some(v)),
        None if s.required && s.default.is_none() => {
            Err("Required: enter a value (spaces alone are not a value).".to_string())
        }
        None => Ok(None),
    }
}

/// Required parameters with no default that were not given.
pub fn missing<'a>(specs: &'a [ParamSpec], given: &BTreeMap<String, String>) -> Vec<&'a ParamSpec> {
    specs
        .iter()
        .filter(|s| {
            s.required && s.default.is_none() && given.get(&s.name).is_none_or(|v| v.is_empty())
            // A value of only spaces is refused by `validate`; `missing` asks for real gaps.
        })
        .collect()
}

fn block_id(name: &str) -> String {
    format!("param:{}", truncate(name, 240))
}

pub fn loading_view(req: &StartRequest) -> Value {
    message_view(
        "Start pipeline",
        &mrkdwn!(
            ":hourglass_flowing_sand: Looking up *{}* › *{}* in Spinnaker…",
            escape(&req.application),
            escape(&req.pipeline),
        ),
    )
}

/// The parameter form (also the confirmation step for pipelines that need one).
pub fn form_view(req: &StartRequest, specs: &[ParamSpec]) -> Value {
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": Mrkdwn::truncate(&mrkdwn!(
            "Start *{}* › *{}*{}",
            escape(&req.application),
            escape(&req.pipeline),
            if specs.is_empty() { "?" } else { " with these parameters:" },
        ), 3000)}}),
    ];
    for s in specs.iter().take(95) {
        let given = req
            .parameters
            .get(&s.name)
            .cloned()
            .or_else(|| s.default.clone());
        let element = if s.options.is_empty() {
            let mut e = json!({"type": "plain_text_input", "action_id": "value"});
            if let Some(v) = given.filter(|v| !v.is_empty()) {
                e["initial_value"] = json!(v);
            }
            e
        } else {
            // Options carry references, not their text (a value over 150 characters would be
            // cut by Block Kit and never match); more than 100 are grouped, none left out.
            let (key, options) = choices::select_options(&s.options);
            let mut e = json!({
                "type": "static_select",
                "action_id": "value",
                "placeholder": {"type": "plain_text", "text": "Choose a value"},
            });
            e[key] = options;
            if let Some(i) = given.and_then(|v| s.options.iter().position(|o| *o == v)) {
                e["initial_option"] = choices::options_json(&s.options)[i].clone();
            }
            e
        };
        let mut block = json!({
            "type": "input",
            "block_id": block_id(&s.name),
            "optional": !s.required,
            "label": {"type": "plain_text", "text": truncate(&s.label, 2000)},
            "element": element
        });
        if let Some(d) = &s.description {
            block["hint"] = json!({"type": "plain_text", "text": truncate(d, 2000)});
        }
        blocks.push(block);
    }
    json!({
        "type": "modal",
        "callback_id": VIEW_START,
        "title": modal_title("Start pipeline"),
        "submit": {"type": "plain_text", "text": "Start"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": serde_json::to_string(&StartRequest { parameters: BTreeMap::new(), ..req.clone() }).unwrap_or_default(),
        "blocks": blocks
    })
}

/// What the lookups found.
struct Prepared {
    who: Arc<Identity>,
    rule: PipelineRule,
    specs: Vec<ParamSpec>,
}

/// Identity, authorization, and the pipeline's config. `Err` is a message for the person.
async fn prepare(state: &AppState, user: &str, req: &StartRequest) -> Result<Prepared, Mrkdwn> {
    let who = state.authz().identity(user).await.map_err(|e| {
        mrkdwn!(
            "slackops could not read your Slack profile ({}); try again.",
            e
        )
    })?;
    let rule = match authorize(state, &who, &req.application, &req.pipeline, "start").await {
        Ok(Ok(rule)) => rule,
        Ok(Err(why)) => return Err(mrkdwn!(":no_entry: {}", why)),
        Err(e) => {
            return Err(mrkdwn!(
                "slackops could not check your permissions ({}); try again.",
                e,
            ));
        }
    };
    if !rule.startable {
        return Err(mrkdwn!(
            "*{}* › *{}* cannot be started from Slack (`pipelines.rules`: startable is false). Start it in Deck.",
            escape(&req.application),
            escape(&req.pipeline),
        ));
    }
    let config = match state
        .gate()
        .pipeline_config(&req.application, &req.pipeline)
        .await
    {
        Ok(c) => c,
        Err(GateError::NotFound(_)) => {
            return Err(not_found(state, &req.application, &req.pipeline).await);
        }
        Err(e) if e.is_transient() => {
            return Err(mrkdwn!(
                "Gate did not answer ({}); nothing was started. Try again in a moment.",
                escape(&e.to_string()),
            ));
        }
        Err(e) => {
            return Err(mrkdwn!(
                "Spinnaker would not show the pipeline: {}",
                escape(&e.to_string()),
            ));
        }
    };
    if config.get("disabled").and_then(Value::as_bool) == Some(true) {
        return Err(mrkdwn!(
            "*{}* › *{}* is disabled in Spinnaker.",
            escape(&req.application),
            escape(&req.pipeline),
        ));
    }
    Ok(Prepared {
        who,
        rule,
        specs: specs(&config),
    })
}

/// Why a pipeline lookup found nothing: the application, or the pipeline.
async fn not_found(state: &AppState, application: &str, pipeline: &str) -> Mrkdwn {
    let cmd = &state.settings().pipelines.command;
    match state.gate().application(application).await {
        Err(GateError::NotFound(_)) => mrkdwn!(
            "There is no application *{}* in Spinnaker. Check the spelling (application names are lower case).",
            escape(application),
        ),
        _ => {
            let names = state
                .gate()
                .pipeline_configs(application)
                .await
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| {
                            c.get("name")
                                .and_then(Value::as_str)
                                .map(|n| mrkdwn!("`{}`", escape(n)))
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let list = if names.is_empty() {
                mrkdwn!("See `{} pipelines {}`.", cmd, application)
            } else {
                mrkdwn!("Its pipelines: {}.", names.iter().join_mrkdwn(", "))
            };
            mrkdwn!(
                "*{}* has no pipeline *{}*. {}",
                escape(application),
                escape(pipeline),
                list,
            )
        }
    }
}

/// The `start` subcommand.
pub async fn start_command(
    state: &AppState,
    cmd: &SlashCommand,
    mut req: StartRequest,
) -> anyhow::Result<Ack> {
    req.channel = cmd.channel_id.clone();
    let (prepared, view_id) = prepare_showing_progress(state, cmd, &req).await;
    let p = match prepared {
        Ok(p) => p,
        Err(text) => return reply(state, view_id.as_deref(), text).await,
    };
    if let Err(text) = validate(&p.specs, &req.parameters) {
        let usage = format!(
            "\nUsage: `{} start {} {} name=value …`",
            state.settings().pipelines.command,
            req.application,
            req.pipeline
        );
        return reply(state, view_id.as_deref(), mrkdwn!("{}{}", text, usage)).await;
    }
    let lacking = missing(&p.specs, &req.parameters);
    if !lacking.is_empty() || (p.rule.confirm && view_id.is_some()) {
        return Ok(open_form(state, cmd, view_id.as_deref(), &req, &p.specs, &lacking).await);
    }
    if p.rule.confirm {
        return Ok(Ack::Message(confirmation(&req)));
    }
    match trigger_and_announce(state, &p.who, &req).await {
        Ok(text) => match view_id {
            Some(_) => reply(state, view_id.as_deref(), text).await,
            None => Ok(Ack::Empty),
        },
        Err(text) => reply(state, view_id.as_deref(), text).await,
    }
}

/// Prepare the start; when that takes longer than [`LOADING_AFTER`], open a loading modal while
/// it finishes (its id is returned, to answer in it).
async fn prepare_showing_progress(
    state: &AppState,
    cmd: &SlashCommand,
    req: &StartRequest,
) -> (Result<Prepared, Mrkdwn>, Option<String>) {
    let began = Instant::now();
    let work = prepare(state, &cmd.user_id, req);
    tokio::pin!(work);
    let mut view_id: Option<String> = None;
    let prepared = tokio::select! {
        r = &mut work => r,
        _ = tokio::time::sleep(LOADING_AFTER.saturating_sub(began.elapsed())) => {
            if let Some(t) = &cmd.trigger_id {
                match state.slack().views_open(t, &loading_view(req)).await {
                    Ok(id) => view_id = Some(id),
                    Err(e) => warn!(error = %e, "opening the loading modal failed"),
                }
            }
            work.await
        }
    };
    (prepared, view_id)
}

/// Answer in the modal if one is open, else privately.
async fn reply(state: &AppState, view_id: Option<&str>, text: Mrkdwn) -> anyhow::Result<Ack> {
    match view_id {
        Some(id) => {
            state
                .slack()
                .views_update(id, &message_view("Start pipeline", &text), None)
                .await?;
            Ok::<Ack, anyhow::Error>(Ack::Empty)
        }
        None => Ok(Ack::ephemeral(text)),
    }
}

/// Open the parameter form (in the loading modal when one is open); when Slack will not open
/// it, say which parameters to give in the command instead.
async fn open_form(
    state: &AppState,
    cmd: &SlashCommand,
    view_id: Option<&str>,
    req: &StartRequest,
    specs: &[ParamSpec],
    lacking: &[&ParamSpec],
) -> Ack {
    let form = form_view(req, specs);
    let opened = match (view_id, &cmd.trigger_id) {
        (Some(id), _) => state
            .slack()
            .views_update(id, &form, None)
            .await
            .map(|_| ()),
        (None, Some(t)) => state.slack().views_open(t, &form).await.map(|_| ()),
        (None, None) => Err(crate::slack::api::SlackError::ResponseUrlExhausted),
    };
    match opened {
        Ok(()) => Ack::Empty,
        Err(e) => {
            warn!(error = %e, "opening the parameter modal failed");
            let names = lacking
                .iter()
                .map(|s| format!("{}=…", s.name))
                .collect::<Vec<_>>()
                .join(" ");
            Ack::ephemeral(mrkdwn!(
                "This pipeline needs parameters, and the form could not be opened ({}). Give them in the command: `{} start {} {} {}`",
                e,
                state.settings().pipelines.command,
                req.application,
                req.pipeline,
                names,
            ))
        }
    }
}

/// An ephemeral "Start?" with a confirmed button carrying the request.
fn confirmation(req: &StartRequest) -> Reply {
    let value = serde_json::to_string(req).unwrap_or_default();
    let params = if req.parameters.is_empty() {
        Mrkdwn::from("no parameters")
    } else {
        req.parameters
            .iter()
            .map(|(k, v)| mrkdwn!("`{}`={}", escape(k), escape(v)))
            .join_mrkdwn(", ")
    };
    let text = mrkdwn!(
        "Start *{}* › *{}* with {}?",
        escape(&req.application),
        escape(&req.pipeline),
        params,
    );
    if value.len() > blocks::BUTTON_VALUE_MAX {
        return Reply::ephemeral(
            "Too many parameters to confirm with a button; start it with fewer parameters and fill in the rest in the form.",
        );
    }
    let button = blocks::button(ACTION_CONFIRM_START, "Start pipeline", &value)
        .with_style(slack_morphism::prelude::SlackBlockButtonStyle::Primary)
        .with_confirm(blocks::confirm(
            "Start this pipeline?",
            &text,
            "Start",
            "Cancel",
        ));
    let b = vec![
        blocks::section(&text),
        blocks::actions("pipelines_confirm", vec![button.into()]),
    ];
    Reply::ephemeral(text.clone()).blocks(blocks::to_json(&b))
}

/// The parameter modal's submission.
pub struct StartView;

#[async_trait]
impl ViewHandler for StartView {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let view = interaction.view.clone().unwrap_or_default();
        let Ok(mut req) = serde_json::from_str::<StartRequest>(&view.private_metadata) else {
            return Ok(Ack::ViewUpdate(message_view(
                "Start pipeline",
                "This form is out of date; run the command again.",
            )));
        };
        let p = match prepare(state, &cx.user_id, &req).await {
            Ok(p) => p,
            Err(text) => return Ok(Ack::ViewUpdate(message_view("Start pipeline", &text))),
        };
        let mut errors = Vec::new();
        let mut params = BTreeMap::new();
        for s in &p.specs {
            let bid = block_id(&s.name);
            match submitted_value(s, view.input(&bid, "value")) {
                Ok(Some(v)) => {
                    params.insert(s.name.clone(), v);
                }
                Ok(None) => {}
                Err(e) => errors.push((bid, e)),
            }
        }
        if !errors.is_empty() {
            return Ok(Ack::ViewErrors(errors));
        }
        req.parameters = params;
        match trigger_and_announce(state, &p.who, &req).await {
            Ok(text) => Ok(Ack::ViewUpdate(message_view("Pipeline started", &text))),
            Err(text) => {
                // Gate's 400 names the parameter: show it on that field when there is one.
                let named = p.specs.iter().find(|s| {
                    text.as_str()
                        .contains(&format!("parameter {} is missing", s.name))
                });
                match named {
                    Some(s) => Ok(Ack::ViewErrors(vec![(
                        block_id(&s.name),
                        text.into_string(),
                    )])),
                    None => Ok(Ack::ViewUpdate(message_view("Start pipeline", &text))),
                }
            }
        }
    }
}

/// The confirmation button of a pipeline that needs one.
pub struct ConfirmStart;

#[async_trait]
impl ActionHandler for ConfirmStart {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let Some(mut req) = action
            .value
            .as_deref()
            .and_then(|v| serde_json::from_str::<StartRequest>(v).ok())
        else {
            return Ok(Ack::ephemeral(
                "This button is out of date; run the command again.",
            ));
        };
        if req.channel.is_none() {
            req.channel = interaction.channel_id().map(str::to_owned);
        }
        let p = match prepare(state, &cx.user_id, &req).await {
            Ok(p) => p,
            Err(text) => return Ok(Ack::Message(Reply::ephemeral(text).replace_original())),
        };
        if let Err(text) = validate(&p.specs, &req.parameters) {
            return Ok(Ack::Message(Reply::ephemeral(text).replace_original()));
        }
        // One start per confirmation message, however many times it is clicked.
        let once = format!(
            "start:{}:{}",
            cx.user_id,
            interaction
                .message_ts()
                .or(action.action_ts.as_deref())
                .unwrap_or_default()
        );
        if !crate::slack::once::first_use(state, &once).await? {
            return Ok(Ack::ephemeral(
                "This confirmation was already used; the pipeline was started once.",
            ));
        }
        match trigger_and_announce(state, &p.who, &req).await {
            Ok(_) => Ok(Ack::Message(Reply {
                delete_original: Some(true),
                ..Reply::ephemeral("Started.")
            })),
            Err(text) => Ok(Ack::Message(Reply::ephemeral(text).replace_original())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({"name": "deploy", "parameterConfig": [
            {"name": "env", "label": "Environment", "required": true, "hasOptions": true, "options": [{"value": "staging"}, {"value": "prod"}]},
            {"name": "version", "required": true, "default": "latest", "description": "image tag"},
            {"name": "ticket", "required": true},
            {"name": "note", "required": false}
        ]})
    }

    #[test]
    fn reads_parameter_config() {
        let s = specs(&config());
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].label, "Environment");
        assert_eq!(s[0].options, vec!["staging", "prod"]);
        assert_eq!(s[1].default.as_deref(), Some("latest"));
        assert_eq!(s[2].label, "ticket");
    }

    #[test]
    fn validation_names_unknown_parameters_and_bad_options() {
        let s = specs(&config());
        let given = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(validate(&s, &given(&[("env", "prod")])).is_ok());
        assert!(
            validate(&s, &given(&[("colour", "red")]))
                .unwrap_err()
                .as_str()
                .contains("`colour` is not a parameter")
        );
        assert!(
            validate(&s, &given(&[("env", "qa")]))
                .unwrap_err()
                .as_str()
                .contains("must be one of `staging`, `prod`")
        );
        let m: Vec<_> = missing(&s, &given(&[("env", "prod")]))
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(
            m,
            vec!["ticket"],
            "a required parameter with a default is not missing"
        );
    }

    #[test]
    fn blank_required_values_are_refused_and_blank_optional_ones_are_not_sent() {
        let specs = specs(&config());
        let ticket = specs.iter().find(|s| s.name == "ticket").unwrap();
        assert!(submitted_value(ticket, Some("   ".into())).is_err());
        assert!(submitted_value(ticket, None).is_err());
        assert_eq!(
            submitted_value(ticket, Some(" CHG-1 ".into())),
            Ok(Some(" CHG-1 ".into()))
        );
        let given = [("ticket".to_string(), "  ".to_string())]
            .into_iter()
            .collect();
        assert!(
            validate(&specs, &given)
                .unwrap_err()
                .as_str()
                .contains("cannot be blank")
        );
    }

    #[test]
    fn the_form_prefills_given_values_and_defaults() {
        let req = StartRequest {
            application: "app".into(),
            pipeline: "deploy".into(),
            parameters: [("env".to_string(), "prod".to_string())]
                .into_iter()
                .collect(),
            channel: Some("C1".into()),
        };
        let v = form_view(&req, &specs(&config()));
        assert_eq!(v["callback_id"], VIEW_START);
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[1]["block_id"], "param:env");
        assert_eq!(
            blocks[1]["element"]["initial_option"]["text"]["text"],
            "prod"
        );
        let value = blocks[1]["element"]["initial_option"]["value"]
            .as_str()
            .unwrap();
        let env = &specs(&config())[0];
        assert_eq!(
            submitted_value(env, Some(value.into())),
            Ok(Some("prod".into()))
        );
        assert!(submitted_value(env, Some("qa".into())).is_err());
        assert_eq!(blocks[2]["element"]["initial_value"], "latest");
        assert_eq!(blocks[4]["optional"], true);
        let meta: StartRequest =
            serde_json::from_str(v["private_metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta.channel.as_deref(), Some("C1"));
    }
}
