//! The incident's Slack message: what it is, where to see it, who has it, what state it is in and
//! by whom, and the buttons that still make sense.
//!
//! Every provider text goes through [`escape`] (titles and names may hold `<!channel>`). People
//! are shown as Slack mentions through the email → Slack ID cache the on-call sync keeps; when
//! an email is unknown the provider's name is shown instead. A resolved incident has no buttons;
//! an incident someone is acting on shows who and what instead of buttons, so nothing is left to
//! press twice.

use serde_json::Value;
use slack_morphism::prelude::*;

use super::model::{self, Actor, Assignee, Incident};
use super::{ACTION_ACK, ACTION_ANNOUNCE, ACTION_RESOLVE};
use crate::mrkdwn;
use crate::slack::blocks::{
    actions, button, context, date, escape, link, mention, section, to_json, truncate,
};
use crate::slack::mrkdwn::JoinMrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

/// Block id of the buttons.
pub const ACT_BLOCK: &str = "pager_act";

/// People as the message shows them: mentions where the email maps to a Slack user.
#[derive(Debug, Clone, Default)]
pub struct People {
    pub assignees: Vec<Mrkdwn>,
    pub status_by: Option<Mrkdwn>,
}

/// Resolve the incident's people to mentions. Lookups failing (Slack or the provider down) fall
/// back to names: the message is never held back for them.
pub async fn people(state: &AppState, inc: &Incident) -> People {
    let mut assignees = Vec::new();
    for a in inc.assignees() {
        assignees.push(person(state, inc, &a).await);
    }
    let by = Actor {
        name: inc.status_by_name.clone(),
        email: inc.status_by_email.clone(),
        slack: inc.status_by_slack.clone(),
    };
    let status_by = match (&by.slack, &by.email, &by.name) {
        (Some(id), _, _) => Some(mention(id)),
        (None, Some(email), name) => Some(
            slack_of(state, email)
                .await
                .map(|id| mention(&id))
                .unwrap_or_else(|| escape(name.as_deref().unwrap_or(email))),
        ),
        (None, None, Some(name)) => Some(escape(name)),
        (None, None, None) => None,
    };
    People {
        assignees,
        status_by,
    }
}

async fn slack_of(state: &AppState, email: &str) -> Option<String> {
    state
        .oncall()
        .slack_id(state.slack(), email)
        .await
        .ok()
        .flatten()
}

async fn person(state: &AppState, inc: &Incident, a: &Assignee) -> Mrkdwn {
    let mut email = a.email.clone();
    // PagerDuty's webhook assignees carry no email (§A1): ask for the user.
    if email.is_none()
        && inc.provider.as_str() == "pagerduty"
        && let (Some(id), Some(pd)) = (&a.id, &state.oncall().providers.pagerduty)
    {
        email = pd.user_email(id).await.ok().flatten();
    }
    if let Some(e) = &email
        && let Some(id) = slack_of(state, e).await
    {
        return mention(&id);
    }
    escape(
        a.name
            .as_deref()
            .or(email.as_deref())
            .or(a.id.as_deref())
            .unwrap_or("someone"),
    )
}

/// What the incident's state line says.
pub fn status_line(inc: &Incident, people: &People) -> Mrkdwn {
    let by = people
        .status_by
        .as_ref()
        .map(|b| mrkdwn!(" by {}", b))
        .unwrap_or_default();
    let when = mrkdwn!(" · {}", date(inc.status_at));
    match inc.status.as_str() {
        model::ACKNOWLEDGED => mrkdwn!(":eyes: *Acknowledged*{}{}", by, when),
        model::RESOLVED => mrkdwn!(":white_check_mark: *Resolved*{}{}", by, when),
        _ => mrkdwn!(":rotating_light: *Triggered*{}", when),
    }
}

/// The fallback text (notifications) and the blocks.
pub fn render(inc: &Incident, people: &People) -> (Mrkdwn, Value) {
    let provider = inc.provider().map(|p| p.label()).unwrap_or("Pager");
    let title = truncate(&inc.title, 200);
    let heading = match &inc.url {
        Some(url) => link(url, &title),
        None => escape(&title),
    };
    let route = inc.route();
    let group = route
        .oncall_group
        .as_deref()
        .filter(|_| !inc.is_resolved())
        .map(|g| mrkdwn!(" {}", group_mention(g)))
        .unwrap_or_default();
    let mut blocks = vec![section(&mrkdwn!("*{}*{}", heading, group))];
    let mut facts = vec![mrkdwn!("*Service:* {}", escape(&inc.service))];
    if let Some(u) = &inc.urgency {
        facts.push(mrkdwn!("*Urgency:* {}", escape(u)));
    }
    facts.push(mrkdwn!("*Opened:* {}", date(inc.opened_at)));
    if !people.assignees.is_empty() {
        facts.push(mrkdwn!(
            "*Assigned to:* {}",
            Mrkdwn::join(&people.assignees, ", ")
        ));
    }
    blocks.push(section(facts.iter().join_mrkdwn("\n")));
    blocks.push(section(status_line(inc, people)));
    match (&inc.claim_user, &inc.claim_action) {
        (Some(user), Some(action)) => blocks.push(context(&mrkdwn!(
            ":hourglass_flowing_sand: {} by {}…",
            if action == model::RESOLVE {
                "Resolving"
            } else {
                "Acknowledging"
            },
            mention(user),
        ))),
        _ if !inc.is_resolved() => blocks.push(buttons(inc)),
        _ => {}
    }
    blocks.push(context(&mrkdwn!(
        "{} incident `{}`",
        provider,
        escape(&inc.incident_id),
    )));
    let text = mrkdwn!(
        "{}: {} ({})",
        provider,
        escape(&title),
        match inc.status.as_str() {
            model::ACKNOWLEDGED => "acknowledged",
            model::RESOLVED => "resolved",
            _ => "triggered",
        },
    );
    (text, to_json(&blocks))
}

fn buttons(inc: &Incident) -> SlackBlock {
    let mut elements: Vec<SlackActionBlockElement> = Vec::new();
    if inc.status == model::TRIGGERED {
        elements.push(
            button(ACTION_ACK, "Acknowledge", &inc.id)
                .with_style(SlackBlockButtonStyle::Primary)
                .into(),
        );
    }
    elements.push(button(ACTION_RESOLVE, "Resolve", &inc.id).into());
    elements.push(button(ACTION_ANNOUNCE, "Announce outage", &inc.id).into());
    actions(ACT_BLOCK, elements)
}

/// `<!subteam^ID>` for a group ID, else the handle as text (a handle cannot be mentioned
/// without its ID).
fn group_mention(group: &str) -> Mrkdwn {
    let g = group.trim_start_matches('@');
    if g.starts_with('S')
        && g.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        Mrkdwn::usergroup(g)
    } else {
        mrkdwn!("@{}", escape(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(status: &str) -> Incident {
        Incident {
            id: "row1".into(),
            provider: "pagerduty".into(),
            incident_id: "PGR0VU2".into(),
            title: "<!channel> disk full".into(),
            service: "API Service".into(),
            urgency: Some("high urgency".into()),
            url: Some("https://acme.pagerduty.com/incidents/PGR0VU2".into()),
            opened_at: 1_700_000_000_000,
            assignees: "[]".into(),
            route: r#"{"provider":"pagerduty","service":"*","channel":"C1","oncall_group":"S0ONCALL","systems":[]}"#.into(),
            status: status.into(),
            status_at: 1_700_000_000_000,
            status_by_name: None,
            status_by_email: None,
            status_by_slack: None,
            claim_user: None,
            claim_action: None,
            claimed_at: None,
            request_id: None,
            channel: None,
            message_ts: None,
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn action_ids(blocks: &Value) -> Vec<String> {
        blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn buttons_follow_the_state_and_titles_are_escaped() {
        let (_, b) = render(&incident(model::TRIGGERED), &People::default());
        assert_eq!(
            action_ids(&b),
            [ACTION_ACK, ACTION_RESOLVE, ACTION_ANNOUNCE]
        );
        let text = b.to_string();
        assert!(text.contains("&lt;!channel&gt; disk full"), "{text}");
        assert!(text.contains("<!subteam^S0ONCALL>"), "{text}");
        let (_, b) = render(&incident(model::ACKNOWLEDGED), &People::default());
        assert_eq!(action_ids(&b), [ACTION_RESOLVE, ACTION_ANNOUNCE]);
        let (_, b) = render(&incident(model::RESOLVED), &People::default());
        assert!(action_ids(&b).is_empty());
        let mut claimed = incident(model::TRIGGERED);
        claimed.claim_user = Some("U1".into());
        claimed.claim_action = Some(model::ACKNOWLEDGE.into());
        let (_, b) = render(&claimed, &People::default());
        assert!(action_ids(&b).is_empty());
        assert!(b.to_string().contains("Acknowledging by <@U1>"));
    }
}
