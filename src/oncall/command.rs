//! `/oncall [group]`: who is on call now and who is next, per group, asked live from the
//! providers (an ephemeral answer; the interaction layer delivers it late through `response_url`
//! when the providers take longer than Slack's 3 s).

use async_trait::async_trait;
use futures::StreamExt;

use super::clients::Oncall;
use super::model::{Person, Shift};
use super::settings::GroupSettings;
use crate::clock::Millis;
use crate::mrkdwn;
use crate::registry::{CommandHandler, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks::{self, date, escape, mention};
use crate::slack::choices;
use crate::slack::mrkdwn::Mrkdwn;
use crate::slack::payload::SlashCommand;
use crate::state::AppState;

pub struct OncallCommand;

#[async_trait]
impl CommandHandler for OncallCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let settings = &state.settings().oncall;
        let arg = cmd.text.trim().trim_start_matches('@');
        let groups: Vec<&GroupSettings> = if arg.is_empty() {
            settings.groups.iter().collect()
        } else if arg == "help" {
            return Ok(Ack::ephemeral(mrkdwn!(
                "`{}` shows who is on call now and who is next for every on-call group; `{} &lt;group&gt;` for one group (e.g. `{} platform-oncall`).",
                settings.command,
                settings.command,
                settings.command,
            )));
        } else {
            match settings.group(arg) {
                Some(g) => vec![g],
                None => {
                    let known: Vec<String> = settings
                        .groups
                        .iter()
                        .map(|g| format!("`{}`", g.handle.trim_start_matches('@')))
                        .collect();
                    return Ok(Ack::ephemeral(mrkdwn!(
                        "There is no on-call group *{}*. Groups: {}.",
                        escape(arg),
                        if known.is_empty() {
                            "none are configured".to_string()
                        } else {
                            known.join(", ")
                        },
                    )));
                }
            }
        };
        if groups.is_empty() {
            return Ok(Ack::ephemeral(
                "No on-call groups are configured (`oncall.groups`).",
            ));
        }
        let svc = state.oncall().clone();
        let now = state.now_ms();
        let owned: Vec<GroupSettings> = groups.into_iter().cloned().collect();
        let sections: Vec<Mrkdwn> = futures::stream::iter(owned)
            .map(|g| {
                let svc = svc.clone();
                async move { describe(state, &svc, &g, now).await }
            })
            .buffered(settings.concurrency.max(1))
            .collect()
            .await;
        // Every group in the blocks (split into sections, none dropped without saying so); the
        // text is the notification fallback.
        let entries: Vec<Mrkdwn> = sections.iter().map(|s| mrkdwn!("{}\n", s)).collect();
        let hint = mrkdwn!("Ask for one group: `{} &lt;group&gt;`.", settings.command);
        let b = choices::list_blocks(&Mrkdwn::default(), &entries, &hint);
        Ok(Ack::Message(
            Reply::ephemeral(Mrkdwn::join(sections, "\n\n").truncate(39_000))
                .blocks(blocks::to_json(&b)),
        ))
    }
}

/// One group: who is on call now (until when) and who is next (from when).
async fn describe(state: &AppState, svc: &Oncall, g: &GroupSettings, now: Millis) -> Mrkdwn {
    let handle = escape(g.handle.trim_start_matches('@'));
    let horizon = now + (state.settings().oncall.next_horizon_hours as i64) * 3_600_000;
    let Asked {
        mut shifts,
        mut next_untimed,
        next_unknown,
        sources,
    } = match ask_sources(svc, g, now, horizon).await {
        Ok(asked) => asked,
        Err(warning) => return mrkdwn!("*@{}*\n:warning: {}", handle, warning),
    };
    shifts.retain(|s| !placeholder(g, &s.person));
    next_untimed.retain(|p| !placeholder(g, p));
    let mut out = mrkdwn!("*@{}*\n", handle);
    out.push(now_line(state, svc, &shifts, now).await);
    out.push(next_line(state, svc, &shifts, next_untimed, next_unknown, now).await);
    let window = g.window_ms();
    out.push(match super::schedule::next_change(&shifts, now, window) {
        Some(t) => mrkdwn!("\n@{} changes next at {}", handle, date(t)),
        None => mrkdwn!("\n@{} changes next: not known", handle),
    });
    if !sources.is_empty() {
        out.push(mrkdwn!("\n_Source: {}_", escape(&sources.join("; "))));
    }
    out
}

/// What a group's sources say, from now to the horizon.
struct Asked {
    shifts: Vec<Shift>,
    /// The next people, from providers that do not say when shifts change (Opsgenie).
    next_untimed: Vec<Person>,
    /// A provider could not say who is next.
    next_unknown: bool,
    /// Which provider endpoints answered.
    sources: Vec<String>,
}

/// Ask every source of the group; `Err` is the warning to show instead (escaped).
async fn ask_sources(
    svc: &Oncall,
    g: &GroupSettings,
    now: Millis,
    horizon: Millis,
) -> Result<Asked, Mrkdwn> {
    let mut shifts: Vec<Shift> = Vec::new();
    let mut next_unknown = false;
    let mut next_untimed: Vec<Person> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    for source in &g.sources {
        let provider = match svc.providers.for_source(source) {
            Ok(p) => p,
            Err(e) => return Err(escape(&e.to_string())),
        };
        let until = if provider.knows_shift_times() {
            horizon
        } else {
            match provider.next(source, now).await {
                Ok(Some(people)) => next_untimed.extend(people),
                Ok(None) | Err(_) => next_unknown = true,
            }
            now
        };
        match provider.answer(source, now, until).await {
            Ok(answer) => {
                shifts.extend(answer.shifts);
                sources.extend(answer.sources);
            }
            Err(e) => {
                return Err(mrkdwn!(
                    "could not ask {}: {}",
                    source.provider.as_str(),
                    escape(&e.to_string()),
                ));
            }
        }
    }
    Ok(Asked {
        shifts,
        next_untimed,
        next_unknown,
        sources,
    })
}

/// One of the group's placeholder accounts (`ignore`).
fn placeholder(g: &GroupSettings, p: &Person) -> bool {
    g.ignore.iter().any(|i| {
        i.eq_ignore_ascii_case(&p.id)
            || p.email
                .as_deref()
                .is_some_and(|e| i.eq_ignore_ascii_case(e))
            || p.name.as_deref().is_some_and(|n| i.eq_ignore_ascii_case(n))
    })
}

/// `Now: …` with when the current shift ends, or nobody.
async fn now_line(state: &AppState, svc: &Oncall, shifts: &[Shift], now: Millis) -> Mrkdwn {
    let current: Vec<&Shift> = shifts
        .iter()
        .filter(|s| s.start.is_none_or(|st| st <= now) && s.end.is_none_or(|en| en > now))
        .collect();
    if current.is_empty() {
        return "Now: nobody\n".into();
    }
    let until = current.iter().filter_map(|s| s.end).min();
    mrkdwn!(
        "Now: {}{}\n",
        names(state, svc, &current).await,
        until
            .map(|u| mrkdwn!(" (until {})", date(u)))
            .unwrap_or_default(),
    )
}

/// `Next: …`: the next shift and when it starts, else the next people without a time, else
/// why nobody is named.
async fn next_line(
    state: &AppState,
    svc: &Oncall,
    shifts: &[Shift],
    next_untimed: Vec<Person>,
    next_unknown: bool,
    now: Millis,
) -> Mrkdwn {
    let next_start = shifts
        .iter()
        .filter_map(|s| s.start.filter(|st| *st > now))
        .min();
    let next: Vec<&Shift> = shifts
        .iter()
        .filter(|s| next_start.is_some() && s.start == next_start)
        .collect();
    let untimed: Vec<Shift> = next_untimed
        .into_iter()
        .map(|person| Shift {
            person,
            start: None,
            end: None,
        })
        .collect();
    match next_start {
        Some(st) => mrkdwn!("Next: {} from {}", names(state, svc, &next).await, date(st)),
        None if !untimed.is_empty() => mrkdwn!(
            "Next: {} (Opsgenie does not say when)",
            names(state, svc, &untimed.iter().collect::<Vec<_>>()).await,
        ),
        None if next_unknown => "Next: not known".into(),
        None => "Next: no change within the next days".into(),
    }
}

async fn names(state: &AppState, svc: &Oncall, shifts: &[&Shift]) -> Mrkdwn {
    let mut out: Vec<Mrkdwn> = Vec::new();
    for s in shifts {
        let p = &s.person;
        let id = match (&p.slack_id, &p.email) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(e)) => svc.slack_id(state.slack(), e).await.ok().flatten(),
            _ => None,
        };
        let shown = match id {
            Some(id) => mention(&id),
            None => mrkdwn!("{} (not in Slack)", escape(&p.label())),
        };
        if !out.contains(&shown) {
            out.push(shown);
        }
    }
    Mrkdwn::join(out, ", ")
}
