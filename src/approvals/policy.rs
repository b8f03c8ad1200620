//! Who may judge: approvers per application (optionally per pipeline), the stage's Spinnaker roles
//! mapped to Slack user groups, and the optional four-eyes rule. A refusal carries an explanation
//! for the person who clicked; nothing reaches Gate.
//!
//! Deck only greys buttons out and orca checks roles after the fact (silently resetting the
//! judgment, reference/spinnaker.md §4), so slackops checks before claiming.

use super::model::StageInfo;
use super::settings::{ApprovalsSettings, ApproverRule};
use crate::authz::Identity;
use crate::mrkdwn;
use crate::principals::Principals;
use crate::slack::blocks::escape;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

/// The rules that apply: pipeline-specific rules for this application, else application-wide
/// rules, else `*` rules.
pub fn approvers_for<'a>(
    settings: &'a ApprovalsSettings,
    application: &str,
    pipeline: &str,
) -> Vec<&'a ApproverRule> {
    let rules = &settings.approvers;
    let app = |r: &&ApproverRule| r.application.eq_ignore_ascii_case(application);
    let specific: Vec<_> = rules
        .iter()
        .filter(|r| app(r) && r.pipeline.as_deref() == Some(pipeline))
        .collect();
    if !specific.is_empty() {
        return specific;
    }
    let wide: Vec<_> = rules
        .iter()
        .filter(|r| app(r) && r.pipeline.is_none())
        .collect();
    if !wide.is_empty() {
        return wide;
    }
    rules.iter().filter(|r| r.application == "*").collect()
}

/// `Ok(Ok(()))` allowed; `Ok(Err(explanation))` refused; `Err` when Slack could not be asked.
pub async fn check(
    state: &AppState,
    info: &StageInfo,
    who: &Identity,
    decision: &str,
) -> anyhow::Result<Result<(), Mrkdwn>> {
    let settings = &state.settings().approvals;
    let authz = state.authz();
    let rules = approvers_for(settings, &info.application, &info.pipeline_name);
    if rules.is_empty() {
        return Ok(Err(mrkdwn!(
            "No approvers are configured for *{}*, so its judgments cannot be decided from Slack. Ask your slackops operators to add `approvals.approvers` for it.",
            escape(&info.application),
        )));
    }
    let mut allowed = false;
    for r in &rules {
        if authz.allows(&r.principals(), who).await? {
            allowed = true;
            break;
        }
    }
    if !allowed {
        let mut union = Principals::default();
        for r in &rules {
            let p = r.principals();
            union.users.extend(p.users);
            union.groups.extend(p.groups);
            union.emails.extend(p.emails);
        }
        return Ok(Err(mrkdwn!(
            "You are not an approver for *{}* › *{}*. Approvers: {}.",
            escape(&info.application),
            escape(&info.pipeline_name),
            authz.describe(&union).await,
        )));
    }

    if !info.roles.is_empty() {
        let groups: Vec<String> = info
            .roles
            .iter()
            .filter_map(|role| settings.role_groups.get(role))
            .flatten()
            .cloned()
            .collect();
        let roles = Mrkdwn::join(info.roles.iter().map(|r| mrkdwn!("`{}`", r)), ", ");
        if groups.is_empty() {
            return Ok(Err(mrkdwn!(
                "This stage requires one of the Spinnaker roles {}, and none of them is mapped to a Slack user group (`approvals.role_groups`). Judge it in Deck, or ask your slackops operators to map the role.",
                roles,
            )));
        }
        if !authz.in_any_group(&who.user_id, &groups).await? {
            return Ok(Err(mrkdwn!(
                "This stage requires one of the Spinnaker roles {}: members of {}. You are not in those groups.",
                roles,
                authz.describe_groups(&groups).await,
            )));
        }
    }

    if settings.four_eyes
        && decision == "continue"
        && let (Some(trigger), Some(email)) = (info.trigger_user.as_deref(), who.email.as_deref())
        && trigger.eq_ignore_ascii_case(email)
    {
        return Ok(Err(
            "You triggered this execution, so someone else must approve it (four-eyes rule). You may still reject it.".into(),
        ));
    }
    Ok(Ok(()))
}
