//! The judgment message: one Slack message per judgment, rendered from the stored judgment so that
//! every update (judging, approved, refused, judged in Deck, canceled) is a pure function of state.
//!
//! Live buttons appear only in `awaiting`; every other state renders without them, so a message
//! never offers a decision Spinnaker has already taken. Each decision button carries a confirm
//! dialog (keel users reported fat-finger approvals), names from Spinnaker are escaped, and the
//! stage's HTML instructions are rendered as mrkdwn within Block Kit's limits.

use serde_json::Value;
use slack_morphism::prelude::*;
use url::Url;

use super::model::{self, Judgment, StageInfo};
use super::quorum::Progress;
use crate::mrkdwn;
use crate::slack::blocks::{self, escape, link, mention, truncate};
use crate::slack::choices;
use crate::slack::html::to_mrkdwn;
use crate::slack::mrkdwn::Mrkdwn;
use crate::spinnaker::deck_url;

pub use crate::slack::blocks::date as slack_date;

pub const ACTION_APPROVE: &str = "approvals:approve";
pub const ACTION_REJECT: &str = "approvals:reject";
pub const ACTION_INPUT: &str = "approvals:input";
pub const ACTION_DECK: &str = "approvals:deck";
pub const DECIDE_BLOCK: &str = "approvals_decide";

fn who(user: Option<&str>, name: Option<&str>) -> Mrkdwn {
    match (user, name) {
        (Some(u), _) if u.starts_with('U') || u.starts_with('W') => mention(u),
        (Some(u), _) => escape(u),
        (None, Some(n)) => escape(n),
        (None, None) => "someone".into(),
    }
}

fn trigger_text(info: &StageInfo) -> Mrkdwn {
    let by = info.trigger_user.as_deref().map(escape);
    match (info.trigger_type.as_str(), by, &info.trigger_detail) {
        ("manual", Some(u), _) => mrkdwn!("{} (manual)", u),
        (_, Some(u), Some(d)) => mrkdwn!("{} ({})", d, u),
        (_, None, Some(d)) => escape(d),
        (t, Some(u), None) => mrkdwn!("{} ({})", u, t),
        (t, None, None) => mrkdwn!("{} trigger", t),
    }
}

/// Fallback text (notifications and screen readers) and the blocks.
pub fn render(j: &Judgment, progress: &Progress, deck: &Url) -> (Mrkdwn, Value) {
    let info = j.info();
    let deck_link = deck_url(deck, &j.application, &j.execution_id);
    let app = escape(&j.application);
    let pipeline = escape(&j.pipeline_name);
    let stage = escape(&j.stage_name);

    let mut out: Vec<SlackBlock> = vec![blocks::header(&format!(
        "Manual Judgment: {}",
        j.stage_name
    ))];
    let lead = if model::is_open(&j.state) {
        mrkdwn!(
            "*{}* › *{}* is waiting for a judgment at stage *{}*. {}",
            app,
            pipeline,
            stage,
            link(&deck_link, "Open in Deck")
        )
    } else {
        mrkdwn!(
            "*{}* › *{}*, stage *{}*. {}",
            app,
            pipeline,
            stage,
            link(&deck_link, "Open in Deck")
        )
    };
    out.push(blocks::section(lead));
    out.push(facts(j, &app, &pipeline, &info));
    out.extend(details(&info, &deck_link));

    let status = match j.state.as_str() {
        model::AWAITING => awaiting_line(j, progress),
        model::EXPIRED if j.decision.is_none() => mrkdwn!(
            "{} {}",
            status_line(j),
            link(&deck_link, "Judge it in Deck")
        ),
        _ => status_line(j),
    };
    out.push(blocks::divider());
    out.push(blocks::section_with_id("approvals_status", status));
    if j.state == model::AWAITING {
        out.push(decision_block(j, &info));
    }
    let fallback = mrkdwn!(
        "Manual Judgment for {} › {}: {}",
        app,
        pipeline,
        plain_status(j)
    );
    (fallback, blocks::to_json(&out))
}

/// Application, pipeline, who triggered it, when the stage started.
fn facts(j: &Judgment, app: &Mrkdwn, pipeline: &Mrkdwn, info: &StageInfo) -> SlackBlock {
    let started = if j.stage_start > 0 {
        slack_date(j.stage_start)
    } else {
        "unknown".into()
    };
    blocks::fields(&[
        mrkdwn!("*Application*\n{}", app),
        mrkdwn!("*Pipeline*\n{}", pipeline),
        mrkdwn!("*Triggered by*\n{}", trigger_text(info)),
        mrkdwn!("*Stage started*\n{}", started),
    ])
}

/// Parameters and artifacts in brief, the stage's instructions (cut with a link to Deck), and
/// the roles it requires; each only when there is any.
fn details(info: &StageInfo, deck_link: &str) -> Vec<SlackBlock> {
    let mut out: Vec<SlackBlock> = Vec::new();
    if !info.parameters.is_empty() {
        let list = info
            .parameters
            .iter()
            .map(|(k, v)| mrkdwn!("`{}`={}", k, truncate(v, 80)));
        out.push(blocks::context(mrkdwn!(
            "*Parameters:* {}",
            Mrkdwn::join(list, ", ")
        )));
    }
    if !info.artifacts.is_empty() {
        let list = info.artifacts.iter().take(10).map(|a| truncate(a, 120));
        let more = info.artifacts.len().saturating_sub(10);
        let suffix = if more > 0 {
            mrkdwn!(" and {} more", more)
        } else {
            Mrkdwn::default()
        };
        out.push(blocks::context(mrkdwn!(
            "*Artifacts:* {}{}",
            Mrkdwn::join(list, ", "),
            suffix
        )));
    }
    if let Some(html) = &info.instructions {
        let text = to_mrkdwn(html);
        if !text.as_str().trim().is_empty() {
            let body = mrkdwn!("*Instructions*\n{}", text);
            let more = mrkdwn!(" {}", link(deck_link, "full instructions in Deck"));
            out.push(blocks::section(
                body.truncate_with(blocks::SECTION_TEXT_MAX, &more),
            ));
        }
    }
    if !info.roles.is_empty() {
        let roles = info.roles.iter().map(|r| mrkdwn!("`{}`", r));
        out.push(blocks::context(mrkdwn!(
            "Requires one of the Spinnaker roles {}",
            Mrkdwn::join(roles, ", ")
        )));
    }

    out
}

/// The judgment-input menu. Each option carries a reference to its input, never the input's
/// text (Block Kit cuts an option value at 150 characters, so a long input could not be matched
/// back): the click handler resolves it to the exact text Deck would send. Over 100 inputs are
/// grouped, so every one stays choosable.
fn input_select(inputs: &[String]) -> SlackBlockStaticSelectElement {
    let item = |i: usize, v: &String| {
        SlackBlockChoiceItem::new(blocks::plain(v, 75), choices::option_ref(i, v))
    };
    let select = SlackBlockStaticSelectElement::new()
        .with_action_id(SlackActionId(ACTION_INPUT.into()))
        .with_placeholder(blocks::plain("Choose a judgment input", 150));
    if inputs.len() <= choices::SELECT_OPTIONS_MAX {
        return select.with_options(inputs.iter().enumerate().map(|(i, v)| item(i, v)).collect());
    }
    let groups = inputs
        .chunks(choices::SELECT_OPTIONS_MAX)
        .enumerate()
        .map(|(g, chunk)| {
            let first = g * choices::SELECT_OPTIONS_MAX;
            SlackBlockOptionGroup::new(
                blocks::plain(&format!("{}–{}", first + 1, first + chunk.len()), 75),
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| item(first + i, v))
                    .collect(),
            )
        })
        .collect();
    select.with_option_groups(groups)
}

fn decision_block(j: &Judgment, info: &StageInfo) -> SlackBlock {
    let mut elements: Vec<SlackActionBlockElement> = Vec::new();
    // Once the first approval fixed the input, the others approve that one: no select.
    if !info.judgment_inputs.is_empty() && j.quorum_input.is_none() {
        elements.push(input_select(&info.judgment_inputs).into());
    }
    let target = mrkdwn!("*{}* › *{}*", j.application, j.pipeline_name);
    elements.push(
        blocks::button(ACTION_APPROVE, "Approve", &j.id)
            .with_style(SlackBlockButtonStyle::Primary)
            .with_confirm(blocks::confirm(
                "Approve this judgment?",
                mrkdwn!(
                    "Spinnaker will continue {} past *{}*.",
                    target,
                    j.stage_name
                ),
                "Approve",
                "Cancel",
            ))
            .into(),
    );
    elements.push(
        blocks::button(ACTION_REJECT, "Reject", &j.id)
            .with_style(SlackBlockButtonStyle::Danger)
            .with_confirm(
                blocks::confirm(
                    "Reject this judgment?",
                    mrkdwn!("Spinnaker will stop {} at *{}*.", target, j.stage_name),
                    "Reject",
                    "Cancel",
                )
                .with_style("danger".into()),
            )
            .into(),
    );
    blocks::actions(DECIDE_BLOCK, elements)
}

fn reason_suffix(j: &Judgment) -> Mrkdwn {
    j.reason
        .as_deref()
        .map(|r| mrkdwn!("\nReason: {}", r))
        .unwrap_or_default()
}

/// An expired judgment: left to Deck, or rejected by slackops after the interval.
fn expired_line(j: &Judgment, when: &Mrkdwn) -> Mrkdwn {
    let after = match (j.expired_at, j.created_at) {
        (Some(e), c) if e > c => mrkdwn!(" after {} minutes without a judgment", (e - c) / 60_000),
        _ => Mrkdwn::default(),
    };
    if j.decision.as_deref() == Some("stop") {
        mrkdwn!(
            ":alarm_clock: *Expired{}*: slackops rejected it{}.",
            after,
            when
        )
    } else {
        mrkdwn!(
            ":alarm_clock: *Expired in Slack{}*. The buttons are gone; Spinnaker still waits.",
            after
        )
    }
}

fn input_suffix(j: &Judgment) -> Mrkdwn {
    j.judgment_input
        .as_deref()
        .map(|i| mrkdwn!(" with input *{}*", i))
        .unwrap_or_default()
}

/// The one-line state, in mrkdwn.
pub fn status_line(j: &Judgment) -> Mrkdwn {
    let judge = who(j.judge_user.as_deref(), j.judge_name.as_deref());
    let when = j
        .decided_at
        .map(|t| mrkdwn!(" at {}", slack_date(t)))
        .unwrap_or_default();
    let by = j
        .decided_by
        .as_deref()
        .map(escape)
        .unwrap_or_else(|| "someone".into());
    let note = j.note.as_deref().map(escape);
    match j.state.as_str() {
        model::AWAITING => match note {
            Some(n) => mrkdwn!(":warning: {}\nThe judgment is open again.", n),
            None => ":hourglass_flowing_sand: Waiting for a judgment.".into(),
        },
        model::JUDGING => {
            let verb = if j.decision.as_deref() == Some("stop") {
                "Rejecting"
            } else {
                "Approving"
            };
            let waiting = note.map(|n| mrkdwn!("\n{}", n)).unwrap_or_default();
            mrkdwn!(
                ":arrows_counterclockwise: {}… by {}{}{}",
                verb,
                judge,
                input_suffix(j),
                waiting
            )
        }
        model::APPROVED => mrkdwn!(
            ":white_check_mark: *Approved* by {}{}{}",
            judge,
            when,
            input_suffix(j)
        ),
        model::REJECTED => mrkdwn!(
            ":no_entry: *Rejected* by {}{}{}{}",
            judge,
            when,
            input_suffix(j),
            reason_suffix(j)
        ),
        model::EXPIRED => expired_line(j, &when),
        model::DECIDED_ELSEWHERE => {
            let verb = if j.decision.as_deref() == Some("stop") {
                "Rejected"
            } else {
                "Approved"
            };
            mrkdwn!(
                ":white_check_mark: *{} in Spinnaker* by {}{}{}",
                verb,
                by,
                when,
                input_suffix(j)
            )
        }
        model::CANCELED => {
            let reason = note.map(|n| mrkdwn!(": {}", n)).unwrap_or_default();
            mrkdwn!(
                ":no_entry_sign: *The pipeline was canceled* by {}{}{}",
                by,
                when,
                reason
            )
        }
        model::ENDED => mrkdwn!(
            ":hourglass: *The stage ended without a judgment*{}{}",
            note.map(|n| mrkdwn!(" ({})", n)).unwrap_or_default(),
            when
        ),
        model::VANISHED => ":grey_question: *This execution no longer exists in Spinnaker.*".into(),
        other => mrkdwn!("State: {}", other),
    }
}

/// The state of an awaiting judgment: a note (the judgment came back), then the quorum's
/// progress with who approved and when, and the input the first approval fixed.
pub fn awaiting_line(j: &Judgment, progress: &Progress) -> Mrkdwn {
    let mut line = status_line(j);
    if progress.need > 1 || !progress.approvals.is_empty() {
        line.push(&mrkdwn!("\n{}", progress_text(progress)));
    }
    if let Some(input) = &j.quorum_input {
        line.push(&mrkdwn!("\nApprovals are for the input *{}*.", input));
    }
    line
}

/// "1 of 2 approvals: @alice (at …)".
pub fn progress_text(progress: &Progress) -> Mrkdwn {
    let who: Vec<Mrkdwn> = progress
        .approvals
        .iter()
        .map(|a| {
            mrkdwn!(
                "{} ({})",
                who(Some(&a.user_id), Some(&a.user_name)),
                slack_date(a.approved_at)
            )
        })
        .collect();
    let have = progress.approvals.len();
    let mut text = mrkdwn!(
        ":ballot_box_with_check: {} of {} approvals",
        have,
        progress.need
    );
    if !who.is_empty() {
        text.push(&mrkdwn!(": {}", Mrkdwn::join(who, ", ")));
    }
    text
}

fn plain_status(j: &Judgment) -> &'static str {
    match j.state.as_str() {
        model::AWAITING => "waiting for a judgment",
        model::JUDGING => "being judged",
        model::EXPIRED => "expired in Slack",
        model::APPROVED => "approved",
        model::REJECTED => "rejected",
        model::DECIDED_ELSEWHERE => "judged in Spinnaker",
        model::CANCELED => "pipeline canceled",
        model::ENDED => "stage ended without a judgment",
        model::VANISHED => "execution no longer exists",
        _ => "updated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::model::StageInfo;

    fn judgment(state: &str, inputs: &[&str]) -> Judgment {
        let info = StageInfo {
            application: "myapp".into(),
            pipeline_name: "deploy <prod>".into(),
            execution_id: "01EXEC".into(),
            stage_id: "s2".into(),
            stage_name: "Approve prod".into(),
            stage_start: 1_700_000_000_000,
            instructions: Some("Promote <b>v42</b>?".into()),
            judgment_inputs: inputs.iter().map(|s| s.to_string()).collect(),
            trigger_type: "manual".into(),
            trigger_user: Some("alice@example.com".into()),
            parameters: vec![("version".into(), "v42".into())],
            ..Default::default()
        };
        Judgment {
            id: "J1".into(),
            execution_id: "01EXEC".into(),
            stage_id: "s2".into(),
            stage_start: info.stage_start,
            application: "myapp".into(),
            pipeline_name: info.pipeline_name.clone(),
            stage_name: "Approve prod".into(),
            state: state.into(),
            channel: None,
            message_ts: None,
            judge_user: Some("U1".into()),
            judge_name: Some("bob".into()),
            claimed_at: Some(1),
            decision: Some("continue".into()),
            judgment_input: None,
            decided_by: None,
            decided_at: Some(1_700_000_100_000),
            note: None,
            trigger_user: info.trigger_user.clone(),
            snapshot: serde_json::to_string(&info).unwrap(),
            created_at: 0,
            updated_at: 0,
            approvals: 0,
            quorum_input: None,
            reason: None,
            reminders_sent: 0,
            expired_at: None,
        }
    }

    fn deck() -> Url {
        Url::parse("https://deck.example.com").unwrap()
    }

    fn action_ids(blocks: &Value) -> Vec<String> {
        blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().iter())
            .map(|e| e["action_id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn awaiting_has_confirmed_approve_and_reject() {
        let (text, b) = render(&judgment("awaiting", &[]), &Progress::default(), &deck());
        assert!(text.as_str().contains("waiting"));
        assert_eq!(action_ids(&b), vec![ACTION_APPROVE, ACTION_REJECT]);
        let actions = b
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        for e in actions["elements"].as_array().unwrap() {
            assert!(e.get("confirm").is_some(), "every decision button confirms");
            assert_eq!(e["value"], "J1");
        }
        assert_eq!(actions["elements"][0]["style"], "primary");
        assert_eq!(actions["elements"][1]["style"], "danger");
        let all = b.to_string();
        assert!(all.contains("deploy &lt;prod&gt;"), "names are escaped");
        assert!(all.contains("*v42*"), "instructions rendered as mrkdwn");
        assert!(!all.contains("<b>"));
        assert!(
            all.contains("https://deck.example.com/#/applications/myapp/executions/details/01EXEC")
        );
    }

    #[test]
    fn judgment_inputs_add_a_select_before_the_buttons() {
        let (_, b) = render(
            &judgment("awaiting", &["deploy", "rollback"]),
            &Progress::default(),
            &deck(),
        );
        assert_eq!(
            action_ids(&b),
            vec![ACTION_INPUT, ACTION_APPROVE, ACTION_REJECT]
        );
    }

    #[test]
    fn a_judgment_input_of_any_length_is_offered_by_reference() {
        let long = format!("{}-end", "x".repeat(300));
        let inputs = [long.as_str(), "rollback"];
        let (_, b) = render(
            &judgment("awaiting", &inputs),
            &Progress::default(),
            &deck(),
        );
        let options = b
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|bl| bl["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action_id"] == ACTION_INPUT)
            .map(|e| e["options"].as_array().cloned().unwrap())
            .unwrap();
        let all: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        for (o, want) in options.iter().zip(inputs) {
            let value = o["value"].as_str().unwrap();
            assert!(value.chars().count() <= 150, "{value}");
            assert_eq!(choices::resolve(value, &all), Some(want));
        }
    }

    #[test]
    fn no_buttons_once_not_awaiting() {
        for s in [
            "judging",
            "approved",
            "rejected",
            "decided_elsewhere",
            "canceled",
            "ended",
            "vanished",
            "expired",
        ] {
            let (_, b) = render(&judgment(s, &["x"]), &Progress::default(), &deck());
            assert!(action_ids(&b).is_empty(), "{s} must not show buttons");
        }
        let (_, b) = render(&judgment("judging", &[]), &Progress::default(), &deck());
        assert!(b.to_string().contains("Approving… by <@U1>"));
    }

    #[test]
    fn long_instructions_are_truncated_with_a_link() {
        let mut j = judgment("awaiting", &[]);
        let mut info = j.info();
        info.instructions = Some("word ".repeat(2000));
        j.snapshot = serde_json::to_string(&info).unwrap();
        let (_, b) = render(&j, &Progress::default(), &deck());
        for block in b.as_array().unwrap() {
            if let Some(t) = block.pointer("/text/text").and_then(Value::as_str) {
                assert!(t.chars().count() <= 3000);
            }
        }
        assert!(b.to_string().contains("full instructions in Deck"));
    }

    #[test]
    fn progress_names_each_approver_escaped_and_hides_the_select_once_the_input_is_fixed() {
        use crate::approvals::model::Approval;
        let mut j = judgment("awaiting", &["deploy", "rollback"]);
        j.approvals = 1;
        j.quorum_input = Some("deploy <now>".into());
        let progress = Progress {
            need: 2,
            approvals: vec![
                Approval {
                    user_id: "U0ALICE".into(),
                    user_name: "alice".into(),
                    judgment_input: Some("deploy".into()),
                    approved_at: 1_700_000_000_000,
                },
                Approval {
                    user_id: "not-an-id".into(),
                    user_name: "<!channel> & co".into(),
                    judgment_input: None,
                    approved_at: 1_700_000_000_000,
                },
            ],
        };
        let (_, b) = render(&j, &progress, &deck());
        let all = b.to_string();
        assert!(all.contains("2 of 2 approvals: <@U0ALICE>"), "{all}");
        assert!(all.contains("not-an-id"), "a non-Slack id is shown as text");
        assert!(!all.contains("<!channel>"), "names are escaped: {all}");
        assert!(all.contains("for the input *deploy &lt;now&gt;*"), "{all}");
        assert_eq!(
            action_ids(&b),
            vec![ACTION_APPROVE, ACTION_REJECT],
            "no select once the input is fixed"
        );
    }

    #[test]
    fn a_rejection_reason_and_an_expiry_are_shown_escaped() {
        let mut j = judgment("rejected", &[]);
        j.decision = Some("stop".into());
        j.reason = Some("<!here> *broken*".into());
        let line = status_line(&j);
        assert!(
            line.as_str().contains("Reason: &lt;!here&gt; *broken*"),
            "{line:?}"
        );
        let mut e = judgment("expired", &[]);
        e.decision = None;
        e.created_at = 0;
        e.expired_at = Some(30 * 60_000);
        let (_, b) = render(&e, &Progress::default(), &deck());
        let all = b.to_string();
        assert!(all.contains("Expired in Slack after 30 minutes"), "{all}");
        assert!(all.contains("Judge it in Deck"), "{all}");
        e.decision = Some("stop".into());
        assert!(status_line(&e).as_str().contains("slackops rejected it"));
    }
}
