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
use crate::mrkdwn;
use crate::slack::blocks::{self, escape, mention};
use crate::slack::mrkdwn::Mrkdwn;

fn severity_emoji(severity: &str, settings: &AnnouncementsSettings) -> &'static str {
    match settings.severities.iter().position(|s| s == severity) {
        Some(0) => ":red_circle:",
        Some(1) => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    }
}

/// The announcement's fallback text (notifications, screen readers).
pub fn text(o: &Outage, settings: &AnnouncementsSettings) -> Mrkdwn {
    let systems = model::system_names(settings, &o.fields.systems);
    if o.is_open() {
        mrkdwn!(
            "Outage ({}) affecting {}: {}",
            o.fields.severity,
            systems,
            blocks::truncate(&o.fields.summary, 300),
        )
    } else {
        mrkdwn!("Resolved outage affecting {}", systems)
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
    b.push(blocks::section(escape(&f.summary)));
    let fields = fact_fields(o, settings, &systems);
    b.push(blocks::fields(&fields[..fields.len().min(10)]));
    if fields.len() > 10 {
        b.push(blocks::fields(&fields[10..]));
    }
    if let Some(r) = &o.resolution {
        let mut t = mrkdwn!("*Resolution*\n{}", escape(&r.summary));
        match (&r.report_url, r.postmortem) {
            (Some(u), _) => t.push(mrkdwn!("\nSee {}.", blocks::link(u, "the report"))),
            (None, true) => t.push(mrkdwn!(
                "\nA postmortem is due from {} by {}.",
                mention(&f.resolution_assignee),
                blocks::date(model::working_days_after(
                    o.resolved_at.unwrap_or(o.updated_at),
                    settings.postmortem_due_days
                )),
            )),
            (None, false) => {}
        }
        if let Some(s) = r
            .postmortem_summary
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            t.push(mrkdwn!("\n*Postmortem*: {}", escape(s)));
        }
        b.push(blocks::section(&t));
    }
    b.push(blocks::context(context_line(o)));
    b.push(blocks::actions("announcement", buttons(o, settings)));
    blocks::to_json(&b)
}

/// Severity, systems, each audience's impact, the assignees, and the ETA (open) or the
/// duration (resolved).
fn fact_fields(o: &Outage, settings: &AnnouncementsSettings, systems: &str) -> Vec<Mrkdwn> {
    let f = &o.fields;
    let mut fields = vec![
        mrkdwn!(
            "*Severity*\n{} {}",
            severity_emoji(&f.severity, settings),
            escape(&f.severity),
        ),
        mrkdwn!("*Affected systems*\n{}", escape(systems)),
    ];
    for a in &settings.audiences {
        let i = f.impact.get(&a.id).cloned().unwrap_or_default();
        fields.push(mrkdwn!(
            "*Impact on {}*\n{}",
            escape(&a.name),
            escape(&model::impact_text(&i)),
        ));
    }
    fields.push(mrkdwn!(
        "*Assignees*\n{} for resolution\n{} for communication",
        mention(&f.resolution_assignee),
        mention(&f.communication_assignee),
    ));
    if o.is_open() {
        let eta = match o.eta_deadline() {
            Some(d) => mrkdwn!("{} (by {})", model::eta_label(&f.eta), blocks::date(d)),
            None => "unknown".into(),
        };
        fields.push(mrkdwn!("*ETA*\n{}", eta));
    } else {
        fields.push(mrkdwn!(
            "*Duration*\n{}",
            model::duration_text(o.resolved_at.unwrap_or(o.updated_at) - o.started_at),
        ));
    }
    fields
}

/// Who announced it and when, who resolved it, its incident channel, whether it is public.
fn context_line(o: &Outage) -> Mrkdwn {
    let mut context = vec![mrkdwn!(
        "Announced by {} {}",
        who(&o.announced_by),
        blocks::date(o.started_at),
    )];
    if let (Some(r), Some(at)) = (&o.resolution, o.resolved_at) {
        context.push(mrkdwn!(
            "resolved by {} {}",
            who(&r.resolved_by),
            blocks::date(at),
        ));
    }
    if let Some(c) = &o.incident_channel {
        context.push(mrkdwn!("incident channel {}", Mrkdwn::channel(c)));
    }
    context.push(if o.fields.public {
        "on the public status page".into()
    } else {
        "not on the public status page".into()
    });
    Mrkdwn::join(context, " · ")
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
pub fn who(by: &str) -> Mrkdwn {
    match by.strip_prefix("api:") {
        Some(name) => mrkdwn!("`{}` (API)", escape(name)),
        None => mention(by),
    }
}

/// The thread reply for one history entry: exactly what changed, by whom, and why.
pub fn change_reply(h: &HistoryRow, o: &Outage) -> Mrkdwn {
    let mut lines = Vec::new();
    match h.kind.as_str() {
        "resolved" => lines.push(mrkdwn!(
            ":white_check_mark: *Resolved* by {} after {}.",
            who(&h.by_user),
            model::duration_text(o.resolved_at.unwrap_or(h.at) - o.started_at),
        )),
        "reopened" => lines.push(mrkdwn!(
            ":rotating_light: *Reopened* by {}.",
            who(&h.by_user),
        )),
        "postmortem" => return postmortem_reply(h, o),
        _ => lines.push(mrkdwn!("*{}* by {}:", capital(&h.kind), who(&h.by_user))),
    }
    for c in h.changes() {
        if c.field == "state" {
            continue;
        }
        if c.from.is_empty() {
            lines.push(mrkdwn!(
                "• *{}*: {}",
                escape(&c.label),
                value(&c.field, &c.to),
            ));
        } else {
            lines.push(mrkdwn!(
                "• *{}*: {} → {}",
                escape(&c.label),
                value(&c.field, &c.from),
                value(&c.field, &c.to),
            ));
        }
    }
    // A resolution's reason is its summary, already listed above.
    if let Some(r) = h
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty() && h.kind != "resolved")
    {
        lines.push(mrkdwn!("_Why:_ {}", escape(r.trim())));
    }
    Mrkdwn::join(lines, "\n").truncate(3900)
}

/// The thread reply when the postmortem's report is linked.
fn postmortem_reply(h: &HistoryRow, o: &Outage) -> Mrkdwn {
    let r = o.resolution.clone().unwrap_or_default();
    let mut t = mrkdwn!(":page_facing_up: *Postmortem* added by {}", who(&h.by_user));
    if let Some(u) = &r.report_url {
        t.push(mrkdwn!(": {}", blocks::link(u, "the report")));
    }
    if let Some(s) = r
        .postmortem_summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        t.push(mrkdwn!("\n{}", escape(s.trim())));
    }
    t.truncate(3900)
}

/// The DM to a postmortem's owner once it is due, with the Add postmortem button.
pub fn postmortem_due_dm(
    o: &Outage,
    settings: &AnnouncementsSettings,
    due_at: i64,
    now: i64,
) -> (Mrkdwn, Value) {
    let late = if now - due_at >= 86_400_000 {
        mrkdwn!(" (overdue by {})", model::duration_text(now - due_at))
    } else {
        Mrkdwn::default()
    };
    let text = mrkdwn!(
        ":memo: The postmortem of the outage affecting *{}* was due {}{}. Add the report's link with *Add postmortem*. {}",
        escape(&model::system_names(settings, &o.fields.systems)),
        blocks::date(due_at),
        late,
        link_to(o),
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

/// Mentions and dates are rebuilt from what they hold; anything a person typed is escaped.
fn value(field: &str, v: &str) -> Mrkdwn {
    let inner = v.strip_prefix('<').and_then(|v| v.strip_suffix('>'));
    match (field, inner) {
        ("resolution_assignee" | "communication_assignee", Some(m)) => match m.strip_prefix('@') {
            Some(id) => Mrkdwn::user(id),
            None => escape(v),
        },
        ("resolved_at", Some(d)) => d
            .strip_prefix("!date^")
            .and_then(|d| d.split('^').next())
            .and_then(|secs| secs.parse::<i64>().ok())
            .map(|secs| blocks::date(secs * 1000))
            .unwrap_or_else(|| escape(v)),
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
pub fn audience_post(o: &Outage, settings: &AnnouncementsSettings, audience: &str) -> Mrkdwn {
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
    mrkdwn!(
        ":rotating_light: A new outage affecting *{}* has been announced ({}): {}. Follow {} for updates.",
        escape(&name),
        escape(&systems),
        escape(&blocks::truncate(&o.fields.summary, 500)),
        link,
    )
}

/// A DM to someone who became (or is no longer) an assignee.
pub fn assignment_dm(
    o: &Outage,
    settings: &AnnouncementsSettings,
    role: &str,
    by: &str,
    now_assigned: bool,
) -> Mrkdwn {
    let what = if now_assigned {
        mrkdwn!("made you the *{} assignee*", role)
    } else {
        mrkdwn!(
            "made someone else the *{} assignee* (you no longer are)",
            role
        )
    };
    mrkdwn!(
        ":wave: {} {} of the outage affecting *{}*: {} {}",
        who(by),
        what,
        escape(&model::system_names(settings, &o.fields.systems)),
        escape(&blocks::truncate(&o.fields.summary, 300)),
        link_to(o),
    )
}

/// A DM with the ETA about to run out.
pub fn before_eta_dm(o: &Outage, settings: &AnnouncementsSettings, deadline: i64) -> Mrkdwn {
    mrkdwn!(
        ":hourglass_flowing_sand: The ETA of the outage affecting *{}* runs out {}. {} Resolve it or update the ETA from the announcement.",
        escape(&model::system_names(settings, &o.fields.systems)),
        blocks::date(deadline),
        link_to(o),
    )
}

/// The prompt after the ETA passed, with Update and Snooze buttons.
pub fn eta_passed_prompt(o: &Outage, settings: &AnnouncementsSettings) -> (Mrkdwn, Value) {
    let text = mrkdwn!(
        ":alarm_clock: The ETA of the outage affecting *{}* has passed and it is not resolved. Please update the ETA. {}",
        escape(&model::system_names(settings, &o.fields.systems)),
        link_to(o),
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
pub fn nudge_dm(o: &Outage, settings: &AnnouncementsSettings, quiet_ms: i64) -> Mrkdwn {
    mrkdwn!(
        ":speech_balloon: No update was posted for {} on the outage affecting *{}*. Please give an update (Update on the announcement). {}",
        model::duration_text(quiet_ms),
        escape(&model::system_names(settings, &o.fields.systems)),
        link_to(o),
    )
}

fn link_to(o: &Outage) -> Mrkdwn {
    o.permalink
        .as_deref()
        .map(|p| blocks::link(p, "Open the announcement"))
        .unwrap_or_default()
}
