//! Block Kit building blocks on slack-morphism's typed models, with Slack's limits applied.
//!
//! Slack rejects a whole message (`invalid_blocks`) when one text is over its limit
//! (reference/slack.md §3), so every helper here truncates to the documented limit. Mrkdwn fields
//! take a [`Mrkdwn`], so user text reaches them escaped exactly once (see [`super::mrkdwn`]);
//! plain-text fields (headers, buttons, titles) take `&str` and are never escaped. Features
//! compose these and send [`to_json`].

use serde_json::{Value, json};
use slack_morphism::prelude::*;

pub use super::mrkdwn::{Mrkdwn, escape};

/// Section text limit.
pub const SECTION_TEXT_MAX: usize = 3000;
/// Header text limit.
pub const HEADER_TEXT_MAX: usize = 150;
/// Button text limit.
pub const BUTTON_TEXT_MAX: usize = 75;
/// Button value limit.
pub const BUTTON_VALUE_MAX: usize = 2000;
/// Context element text (kept well under the section limit).
pub const CONTEXT_TEXT_MAX: usize = 2000;
/// Blocks per message.
pub const MESSAGE_BLOCKS_MAX: usize = 50;

/// Cut to at most `max` characters, ending with `…` when cut. Never splits a character.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cut to `max` characters but keep `suffix` (for example a link to the full text) intact.
pub fn truncate_with(text: &str, max: usize, suffix: &str) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(suffix.chars().count() + 1);
    format!("{}…{suffix}", text.chars().take(room).collect::<String>())
}

pub fn md_text(text: &Mrkdwn, max: usize) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
        text.truncate(max).into_string(),
    ))
}

pub fn plain(text: &str, max: usize) -> SlackBlockPlainTextOnly {
    SlackBlockPlainTextOnly::from(truncate(text, max))
}

pub fn section(text: impl Into<Mrkdwn>) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(md_text(&text.into(), SECTION_TEXT_MAX))
        .into()
}

pub fn section_with_id(block_id: &str, text: impl Into<Mrkdwn>) -> SlackBlock {
    SlackSectionBlock::new()
        .with_block_id(SlackBlockId(block_id.into()))
        .with_text(md_text(&text.into(), SECTION_TEXT_MAX))
        .into()
}

/// Up to 10 two-column fields.
pub fn fields(items: &[Mrkdwn]) -> SlackBlock {
    SlackSectionBlock::new()
        .with_fields(items.iter().take(10).map(|t| md_text(t, 2000)).collect())
        .into()
}

pub fn header(text: &str) -> SlackBlock {
    SlackHeaderBlock::new(plain(text, HEADER_TEXT_MAX)).into()
}

pub fn context(text: impl Into<Mrkdwn>) -> SlackBlock {
    let text = text.into().truncate(CONTEXT_TEXT_MAX).into_string();
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(text),
    )])
    .into()
}

pub fn divider() -> SlackBlock {
    SlackDividerBlock::new().into()
}

pub fn button(action_id: &str, text: &str, value: &str) -> SlackBlockButtonElement {
    SlackBlockButtonElement::new(plain(text, BUTTON_TEXT_MAX))
        .with_action_id(SlackActionId(action_id.into()))
        .with_value(truncate(value, BUTTON_VALUE_MAX))
}

pub fn link_button(action_id: &str, text: &str, url: &url::Url) -> SlackBlockButtonElement {
    SlackBlockButtonElement::new(plain(text, BUTTON_TEXT_MAX))
        .with_action_id(SlackActionId(action_id.into()))
        .with_url(url.clone())
}

/// A confirm dialog (title ≤ 100, text ≤ 300, buttons ≤ 30 characters).
pub fn confirm(title: &str, text: impl Into<Mrkdwn>, yes: &str, no: &str) -> SlackBlockConfirmItem {
    SlackBlockConfirmItem::new(
        plain(title, 100),
        md_text(&text.into(), 300),
        plain(yes, 30),
        plain(no, 30),
    )
}

pub fn actions(block_id: &str, elements: Vec<SlackActionBlockElement>) -> SlackBlock {
    SlackActionsBlock::new(elements.into_iter().take(25).collect())
        .with_block_id(SlackBlockId(block_id.into()))
        .into()
}

/// Blocks as JSON for the Web API, capped at Slack's 50 blocks per message.
pub fn to_json(blocks: &[SlackBlock]) -> Value {
    let capped: Vec<&SlackBlock> = blocks.iter().take(MESSAGE_BLOCKS_MAX).collect();
    serde_json::to_value(capped).unwrap_or(Value::Array(vec![]))
}

/// `<url|label>` with the label escaped.
pub fn link(url: &str, label: &str) -> Mrkdwn {
    Mrkdwn::link(url, label)
}

/// `<!date^…>`: shown in each reader's own time zone.
pub fn date(ms: i64) -> Mrkdwn {
    Mrkdwn::date(ms)
}

/// A user mention.
pub fn mention(user_id: &str) -> Mrkdwn {
    Mrkdwn::user(user_id)
}

/// A modal's title (Slack allows 24 characters).
pub fn modal_title(text: &str) -> Value {
    json!({"type": "plain_text", "text": truncate(text, 24)})
}

/// A modal that only says something.
pub fn message_view(heading: &str, text: impl Into<Mrkdwn>) -> Value {
    let text = text.into().truncate(SECTION_TEXT_MAX);
    json!({
        "type": "modal",
        "title": modal_title(heading),
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries_and_limits() {
        let s = "é".repeat(4000);
        let t = truncate(&s, SECTION_TEXT_MAX);
        assert_eq!(t.chars().count(), SECTION_TEXT_MAX);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
        let w = truncate_with(&"a".repeat(100), 20, " <u|more>");
        assert_eq!(w.chars().count(), 20);
        assert!(w.ends_with(" <u|more>"));
    }

    #[test]
    fn blocks_serialize_as_block_kit() {
        let b = vec![
            section("*hi*"),
            actions(
                "a",
                vec![
                    button("x:approve", "Approve", "v")
                        .with_style(SlackBlockButtonStyle::Primary)
                        .with_confirm(confirm("Sure?", "Really", "Yes", "No"))
                        .into(),
                ],
            ),
        ];
        let v = to_json(&b);
        assert_eq!(v[0]["type"], "section");
        assert_eq!(v[0]["text"]["type"], "mrkdwn");
        assert_eq!(v[1]["elements"][0]["action_id"], "x:approve");
        assert_eq!(v[1]["elements"][0]["style"], "primary");
        assert_eq!(v[1]["elements"][0]["confirm"]["confirm"]["text"], "Yes");
    }
}
