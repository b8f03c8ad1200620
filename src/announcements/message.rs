//! How an outage looks in Slack: the announcement (one message, updated in place), the thread
//! reply for each change, and the one-time audience posts. Pure functions of the stored outage,
//! so rendering twice gives the same message and a retried job cannot show something different.

use serde_json::Value;
use slack_morphism::prelude::SlackBlockButtonStyle;

use super::model::{self, HistoryRow, Outage};
use super::{
    ACTION_CHANNEL, ACTION_POSTMORTEM, ACTION_REASSIGN, ACTION_REOPEN, ACTION_RESOLVE,
    ACTION_SNOOZE, ACTION_UPDATE,
};
use crate::announcements::settings::AnnouncementsSettings;
use crate::slack::blocks::{self, escape, mention};

fn severity_emoji(severity: &str, settings: &AnnouncementsSettings) -> &'static str {
    match settings.severities.iter().position(|s| s == severity) {
        Some(0) => ":red_circle:",
        Some(1) => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    }
}

/// The announcement's fallback text (notifications, screen readers).
pub fn text(o: &Outage, settings: &AnnouncementsSettings) -> String {
    let systems = model::system_names(settings, &o.fields.systems);
    if o.is_open() {
        format!(
            "Outage ({}) affecting {systems}: {}",
            o.fields.severity,
            blocks::truncate(&o.fields.summary, 300)
        )
    } else {
        format!("Resolved outage affecting {systems}")
    }
}

/// The announcement's blocks.
pub fn blocks(o: &Outage, settings: &AnnouncementsSettings) -> Value {
    let f = &o.fields;
    let systems = model::system_names(settings, &f.systems);
    let mut b = Vec::new();
    if o.is_open() {
        b.push(blocks::header(&format!("Outage: {systems}")));
    } else {
        b.push(blocks::header(&format!("Resolved: {systems}")));
    }
    b.push(blocks::section(&escape(&f.summary)));
    let fields = fact_fields(o, settings, &systems);
    b.push(blocks::fields(&fields[..fields.len().min(10)]));
    if fields.len() > 10 {
        b.push(blocks::fields(&fields[10..]));
    }
    if let Some(r) = &o.resolution {
        let mut t = format!("*Resolution*\n{}", escape(&r.summary));
        match (&r.report_url, r.postmortem) {
            (Some(u), _) => t.push_str(&format!("\nSee {}.", blocks::link(u, "the report"))),
            (None, true) => t.push_str(&format!(
                "\nA postmortem is due from {} by {}.",
                mention(&f.resolution_assignee),
                blocks::date(model::working_days_after(
                    o.resolved_at.unwrap_or(o.updated_at),
                    settings.postmortem_due_days
                ))
            )),
            (None, false) => {}
        }
        if let Some(s) = r
            .postmortem_summary
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            t.push_str(&format!("\n*Postmortem*: {}", escape(s)));
        }
        b.push(blocks::section(&t));
    }
    b.push(blocks::context(&context_line(o)));
    b.push(blocks::actions("announcement", buttons(o, settings)));
    blocks::to_json(&b)
}

/// Severity, systems, each audience's impact, the assignees, and the ETA (open) or the
/// duration (resolved).
fn fact_fields(o: &Outage, settings: &AnnouncementsSettings, systems: &str) -> Vec<String> {
    let f = &o.fields;
    let mut fields = vec![
        format!(
            "*Severity*\n{} {}",
            severity_emoji(&f.severity, settings),
            escape(&f.severity)
        ),
        format!("*Affected systems*\n{}", escape(systems)),
    ];
    for a in &settings.audiences {
        let i = f.impact.get(&a.id).cloned().unwrap_or_default();
        fields.push(format!(
            "*Impact on {}*\n{}",
            escape(&a.name),
            escape(&model::impact_text(&i))
        ));
    }
    fields.push(format!(
        "*Assignees*\n{} for resolution\n{} for communication",
        mention(&f.resolution_assignee),
        mention(&f.communication_assignee)
    ));
    if o.is_open() {
        let eta = match o.eta_deadline() {
            Some(d) => format!("{} (by {})", model::eta_label(&f.eta), blocks::date(d)),
            None => "unknown".into(),
        };
        fields.push(format!("*ETA*\n{eta}"));
    } else {
        fields.push(format!(
            "*Duration*\n{}",
            model::duration_text(o.resolved_at.unwrap_or(o.updated_at) - o.started_at)
        ));
    }
    fields
}

/// Who announced it and when, who resolved it, its incident channel, whether it is public.
fn context_line(o: &Outage) -> String {
    let mut context = vec![format!(
        "Announced by {} {}",
        who(&o.announced_by),
        blocks::date(o.started_at)
    )];
    if let (Some(r), Some(at)) = (&o.resolution, o.resolved_at) {
        context.push(format!(
            "resolved by {} {}",
            who(&r.resolved_by),
            blocks::date(at)
        ));
    }
    if let Some(c) = &o.incident_channel {
        context.push(format!("incident channel <#{c}>"));
    }
    context.push(if o.fields.public {
        "on the public status page".into()
    } else {
        "not on the public status page".into()
    });
    context.join(" · ")
}

/// Update, Reassign, Resolve and Create channel while open; Reopen once resolved.
fn buttons(
    o: &Outage,
    settings: &AnnouncementsSettings,
) -> Vec<slack_morphism::prelude::SlackActionBlockElement> {
    let id = &o.id;
    let mut buttons: Vec<slack_morphism::prelude::SlackActionBlockElement> = Vec::new();
    if o.is_open() {
        buttons.push(
            blocks::button(ACTION_UPDATE, "Update", id)
                .with_style(SlackBlockButtonStyle::Primary)
                .into(),
        );
        buttons.push(blocks::button(ACTION_REASSIGN, "Reassign", id).into());
        buttons.push(blocks::button(ACTION_RESOLVE, "Resolve", id).into());
        if settings.create_channel && o.incident_channel.is_none() {
            buttons.push(blocks::button(ACTION_CHANNEL, "Create channel", id).into());
        }
    } else {
        if o.resolution
            .as_ref()
            .is_some_and(|r| r.postmortem && r.report_url.is_none())
        {
            buttons.push(
                blocks::button(ACTION_POSTMORTEM, "Add postmortem", id)
                    .with_style(SlackBlockButtonStyle::Primary)
                    .into(),
            );
        }
        buttons.push(
            blocks::button(ACTION_REOPEN, "Reopen", id)
                .with_style(SlackBlockButtonStyle::Danger)
                .with_confirm(blocks::confirm(
                    "Reopen this outage?",
                    "It is announced as open again and pinned.",
                    "Reopen",
                    "Cancel",
                ))
                .into(),
        );
    }
    buttons
}

/// `<@U…>` for people, the name for the API (`api:monitoring`).
pub fn who(by: &str) -> String {
    match by.strip_prefix("api:") {
        Some(name) => format!("`{}` (API)", escape(name)),
        None => mention(by),
    }
}

/// The thread reply for one history entry: exactly what changed, by whom, and why.
pub fn change_reply(h: &HistoryRow, o: &Outage) -> String {
    let mut lines = Vec::new();
    match h.kind.as_str() {
        "resolved" => lines.push(format!(
            ":white_check_mark: *Resolved* by {} after {}.",
            who(&h.by_user),
            model::duration_text(o.resolved_at.unwrap_or(h.at) - o.started_at)
        )),
        "reopened" => lines.push(format!(
            ":rotating_light: *Reopened* by {}.",
            who(&h.by_user)
        )),
        "postmortem" => return postmortem_reply(h, o),
        _ => lines.push(format!("*{}* by {}:", capital(&h.kind), who(&h.by_user))),
    }
    for c in h.changes() {
        if c.field == "state" {
            continue;
        }
        if c.from.is_empty() {
            lines.push(format!(
                "• *{}*: {}",
                escape(&c.label),
                value(&c.field, &c.to)
            ));
        } else {
            lines.push(format!(
                "• *{}*: {} → {}",
                escape(&c.label),
                value(&c.field, &c.from),
                value(&c.field, &c.to)
            ));
        }
    }
    // A resolution's reason is its summary, already listed above.
    if let Some(r) = h
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty() && h.kind != "resolved")
    {
        lines.push(format!("_Why:_ {}", escape(r.trim())));
    }
    blocks::truncate(&lines.join("\n"), 3900)
}

/// The thread reply when the postmortem's report is linked.
fn postmortem_reply(h: &HistoryRow, o: &Outage) -> String {
    let r = o.resolution.clone().unwrap_or_default();
    let mut t = format!(":page_facing_up: *Postmortem* added by {}", who(&h.by_user));
    if let Some(u) = &r.report_url {
        t.push_str(&format!(": {}", blocks::link(u, "the report")));
    }
    if let Some(s) = r
        .postmortem_summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        t.push_str(&format!("\n{}", escape(s.trim())));
    }
    blocks::truncate(&t, 3900)
}

/// The DM to a postmortem's owner once it is due, with the Add postmortem button.
pub fn postmortem_due_dm(
    o: &Outage,
    settings: &AnnouncementsSettings,
    due_at: i64,
    now: i64,
) -> (String, Value) {
    let late = if now - due_at >= 86_400_000 {
        format!(" (overdue by {})", model::duration_text(now - due_at))
    } else {
        String::new()
    };
    let text = format!(
        ":memo: The postmortem of the outage affecting *{}* was due {}{late}. Add the report's link with *Add postmortem*. {}",
        escape(&model::system_names(settings, &o.fields.systems)),
        blocks::date(due_at),
        link_to(o)
    );
    let b = vec![
        blocks::section(&text),
        blocks::actions(
            "postmortem",
            vec![
                blocks::button(ACTION_POSTMORTEM, "Add postmortem", &o.id)
                    .with_style(SlackBlockButtonStyle::Primary)
                    .into(),
            ],
        ),
    ];
    (text, blocks::to_json(&b))
}

/// Mentions and dates are ours and kept; anything a person typed is escaped.
fn value(field: &str, v: &str) -> String {
    match field {
        "resolution_assignee" | "communication_assignee" | "resolved_at" => v.to_string(),
        _ => escape(&blocks::truncate(v, 500)),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The post in an affected audience's channel.
pub fn audience_post(o: &Outage, settings: &AnnouncementsSettings, audience: &str) -> String {
    let name = settings
        .audiences
        .iter()
        .find(|a| a.id == audience)
        .map(|a| a.name.clone())
        .unwrap_or_else(|| audience.to_string());
    let systems = model::system_names(settings, &o.fields.systems);
    let link = match &o.permalink {
        Some(p) => blocks::link(p, "the announcement"),
        None => "the announcement".into(),
    };
    format!(
        ":rotating_light: A new outage affecting *{}* has been announced ({}): {}. Follow {link} for updates.",
        escape(&name),
        escape(&systems),
        escape(&blocks::truncate(&o.fields.summary, 500))
    )
}

/// A DM to someone who became (or is no longer) an assignee.
pub fn assignment_dm(
    o: &Outage,
    settings: &AnnouncementsSettings,
    role: &str,
    by: &str,
    now_assigned: bool,
) -> String {
    let what = if now_assigned {
        format!("made you the *{role} assignee*")
    } else {
        format!("made someone else the *{role} assignee* (you no longer are)")
    };
    format!(
        ":wave: {} {what} of the outage affecting *{}*: {} {}",
        who(by),
        escape(&model::system_names(settings, &o.fields.systems)),
        escape(&blocks::truncate(&o.fields.summary, 300)),
        link_to(o)
    )
}

/// A DM with the ETA about to run out.
pub fn before_eta_dm(o: &Outage, settings: &AnnouncementsSettings, deadline: i64) -> String {
    format!(
        ":hourglass_flowing_sand: The ETA of the outage affecting *{}* runs out {}. {} Resolve it or update the ETA from the announcement.",
        escape(&model::system_names(settings, &o.fields.systems)),
        blocks::date(deadline),
        link_to(o)
    )
}

/// The prompt after the ETA passed, with Update and Snooze buttons.
pub fn eta_passed_prompt(o: &Outage, settings: &AnnouncementsSettings) -> (String, Value) {
    let text = format!(
        ":alarm_clock: The ETA of the outage affecting *{}* has passed and it is not resolved. Please update the ETA. {}",
        escape(&model::system_names(settings, &o.fields.systems)),
        link_to(o)
    );
    let b = vec![
        blocks::section(&text),
        blocks::actions(
            "eta_passed",
            vec![
                blocks::button(ACTION_UPDATE, "Update", &o.id)
                    .with_style(SlackBlockButtonStyle::Primary)
                    .into(),
                blocks::button(
                    ACTION_SNOOZE,
                    &format!("Snooze {} min", settings.snooze_mins),
                    &o.id,
                )
                .into(),
            ],
        ),
    ];
    (text, blocks::to_json(&b))
}

/// The nudge to the communication assignee.
pub fn nudge_dm(o: &Outage, settings: &AnnouncementsSettings, quiet_ms: i64) -> String {
    format!(
        ":speech_balloon: No update was posted for {} on the outage affecting *{}*. Please give an update (Update on the announcement). {}",
        model::duration_text(quiet_ms),
        escape(&model::system_names(settings, &o.fields.systems)),
        link_to(o)
    )
}

fn link_to(o: &Outage) -> String {
    o.permalink
        .as_deref()
        .map(|p| blocks::link(p, "Open the announcement"))
        .unwrap_or_default()
}
