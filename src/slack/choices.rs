//! What a menu option or a button carries back to us: a reference to a choice, never its text.
//!
//! Block Kit caps an option's `value` at 150 characters and a button's at 2000
//! (reference/slack.md §3, "Block Kit limits"). A value cut to fit can never match the choice it
//! came from, so a long judgment input or parameter option could be shown but never chosen.
//! Options therefore carry `#<index>:<hash>`: the position of the choice in the list the message
//! or modal was built from, and a short hash of its exact text, so the handler finds the exact
//! text again (and refuses a reference to a list that changed meanwhile). A value that is not a
//! reference is matched as exact text, which keeps menus posted before references existed
//! working. Long lists are split into sections by [`list_blocks`] instead of being cut.

use serde_json::Value;
use sha2::{Digest, Sha256};
use slack_morphism::prelude::SlackBlock;

use super::blocks::{self, MESSAGE_BLOCKS_MAX, SECTION_TEXT_MAX, truncate};
use super::mrkdwn::Mrkdwn;
use crate::mrkdwn;

/// Most options a static select may hold.
pub const SELECT_OPTIONS_MAX: usize = 100;
/// An option's `value` limit.
pub const OPTION_VALUE_MAX: usize = 150;

fn hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// The option value for the choice at `index` whose text is `text` (always under 30 characters).
pub fn option_ref(index: usize, text: &str) -> String {
    format!("#{index}:{}", hash(text))
}

/// The exact choice an option value refers to: a reference made by [`option_ref`] over the same
/// list, else a value equal to one of the choices. `None` when it matches nothing.
pub fn resolve<'a>(value: &str, choices: &'a [String]) -> Option<&'a str> {
    if let Some((index, h)) = value
        .strip_prefix('#')
        .and_then(|rest| rest.split_once(':'))
        && let Ok(i) = index.parse::<usize>()
        && let Some(choice) = choices.get(i)
        && hash(choice) == h
    {
        return Some(choice);
    }
    choices.iter().find(|c| *c == value).map(String::as_str)
}

/// Block Kit options (`{text, value}`) for `choices`, each value a reference. The text shown is
/// cut to Slack's 75 characters; the value always brings back the whole choice.
pub fn options_json(choices: &[String]) -> Vec<Value> {
    choices
        .iter()
        .enumerate()
        .map(|(i, c)| option_json(i, c))
        .collect()
}

fn option_json(index: usize, text: &str) -> Value {
    serde_json::json!({
        "text": {"type": "plain_text", "text": truncate(text, 75)},
        "value": option_ref(index, text)
    })
}

/// The options of a static select over `choices`: `options` when they fit one list, else
/// `option_groups` of 100 (Slack allows 100 groups), so no choice is left out.
pub fn select_options(choices: &[String]) -> (&'static str, Value) {
    if choices.len() <= SELECT_OPTIONS_MAX {
        return ("options", Value::Array(options_json(choices)));
    }
    let groups: Vec<Value> = choices
        .chunks(SELECT_OPTIONS_MAX)
        .enumerate()
        .map(|(g, chunk)| {
            let first = g * SELECT_OPTIONS_MAX;
            serde_json::json!({
                "label": {"type": "plain_text", "text": format!("{}–{}", first + 1, first + chunk.len())},
                "options": chunk
                    .iter()
                    .enumerate()
                    .map(|(i, c)| option_json(first + i, c))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    ("option_groups", Value::Array(groups))
}

/// A list as section blocks: `heading`, then every line, packed into sections under Slack's
/// 3000-character limit without splitting a line. When the lines need more than a message's 50
/// blocks, the last block says how many were left out and `more_hint` says where to see them.
pub fn list_blocks(heading: &Mrkdwn, lines: &[Mrkdwn], more_hint: &Mrkdwn) -> Vec<SlackBlock> {
    // (text, entries in it)
    let mut sections: Vec<(Mrkdwn, usize)> = Vec::new();
    let mut current = (heading.clone(), 0);
    for line in lines {
        let line = line.truncate(SECTION_TEXT_MAX - 1);
        let len = current.0.as_str().chars().count();
        if len > 0 && len + 1 + line.as_str().chars().count() > SECTION_TEXT_MAX {
            sections.push(std::mem::take(&mut current));
        }
        if !current.0.is_empty() {
            current.0.push(Mrkdwn::from("\n"));
        }
        current.0.push(&line);
        current.1 += 1;
    }
    if !current.0.is_empty() {
        sections.push(current);
    }
    if sections.len() <= MESSAGE_BLOCKS_MAX {
        return sections.iter().map(|(s, _)| blocks::section(s)).collect();
    }
    let kept = &sections[..MESSAGE_BLOCKS_MAX - 1];
    let shown: usize = kept.iter().map(|(_, n)| n).sum();
    let mut out: Vec<SlackBlock> = kept.iter().map(|(s, _)| blocks::section(s)).collect();
    out.push(blocks::context(mrkdwn!(
        "…and {} more not shown: a Slack message holds at most {} blocks. {}",
        lines.len() - shown,
        MESSAGE_BLOCKS_MAX,
        more_hint
    )));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(n: usize, c: char) -> String {
        std::iter::repeat_n(c, n).collect()
    }

    #[test]
    fn references_bring_back_the_exact_text_of_long_choices() {
        let a = format!("{}-a", long(200, 'x'));
        let b = format!("{}-b", long(200, 'x'));
        let choices = vec![a.clone(), b.clone(), "short".to_string()];
        for (i, c) in choices.iter().enumerate() {
            let r = option_ref(i, c);
            assert!(r.len() <= OPTION_VALUE_MAX, "{r}");
            assert_eq!(resolve(&r, &choices), Some(c.as_str()));
        }
        assert_eq!(
            resolve("short", &choices),
            Some("short"),
            "plain text still matches"
        );
        assert_eq!(
            resolve(&option_ref(0, &b), &choices),
            None,
            "a stale reference"
        );
        assert_eq!(resolve("#7:000000000000", &choices), None);
        assert_eq!(resolve(&truncate(&a, 150), &choices), None);
    }

    #[test]
    fn more_than_a_hundred_choices_become_groups_keeping_every_one() {
        let choices: Vec<String> = (0..230).map(|i| format!("v{i}")).collect();
        let (key, v) = select_options(&choices);
        assert_eq!(key, "option_groups");
        let groups = v.as_array().unwrap();
        assert_eq!(groups.len(), 3);
        let values: Vec<&str> = groups
            .iter()
            .flat_map(|g| g["options"].as_array().unwrap())
            .map(|o| o["value"].as_str().unwrap())
            .collect();
        assert_eq!(values.len(), 230);
        assert_eq!(resolve(values[229], &choices), Some("v229"));
    }

    #[test]
    fn lists_are_split_into_sections_without_cutting_a_line() {
        let lines: Vec<Mrkdwn> = (0..60)
            .map(|i| Mrkdwn::text(&format!("• pipeline-{i:02}-{}", long(80, 'n'))))
            .collect();
        let b = blocks::to_json(&list_blocks(&"Pipelines:".into(), &lines, &"".into()));
        let texts: Vec<String> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"]["text"].as_str().unwrap().to_string())
            .collect();
        assert!(texts.len() > 1);
        assert!(texts.iter().all(|t| t.chars().count() <= SECTION_TEXT_MAX));
        let all = texts.join("\n");
        for l in &lines {
            assert!(all.lines().any(|x| x == l.as_str()), "{l:?} is shown whole");
        }
    }

    #[test]
    fn a_list_beyond_fifty_blocks_says_how_many_are_left_out() {
        let lines: Vec<Mrkdwn> = (0..200)
            .map(|i| Mrkdwn::text(&format!("{i}:{}", long(1400, 'z'))))
            .collect();
        let b = blocks::to_json(&list_blocks(&"H".into(), &lines, &"See Deck.".into()));
        let arr = b.as_array().unwrap();
        assert_eq!(arr.len(), MESSAGE_BLOCKS_MAX);
        let last = arr.last().unwrap()["elements"][0]["text"].as_str().unwrap();
        let shown = arr.len() - 1; // two lines per section, the heading in the first
        assert!(last.contains("more not shown"), "{last}");
        assert!(last.contains("See Deck."));
        let n: usize = last.split_whitespace().nth(1).unwrap().parse().unwrap();
        let visible: usize = arr[..shown]
            .iter()
            .map(|s| {
                s["text"]["text"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains(':'))
                    .count()
            })
            .sum();
        assert_eq!(n + visible, 200, "{last}");
    }
}
