//! [`Mrkdwn`]: the one path by which text reaches a Slack mrkdwn field.
//!
//! Slack formats `<…>` as mentions, broadcasts (`<!channel>`) and links, so a summary, a pipeline
//! name or a reason typed by someone else must reach a message with `&`, `<` and `>` escaped
//! (reference/slack.md, "Escaping text"). Escaping at each call site was forgotten in places
//! (the `text` fallback of most messages), so every mrkdwn field of the Web API client
//! ([`api::Message`](super::api::Message), updates, ephemerals, replies) and every mrkdwn block
//! helper takes a [`Mrkdwn`], and a `Mrkdwn` can only be made by:
//! - escaping text: [`Mrkdwn::text`], or any non-`Mrkdwn` argument of [`mrkdwn!`](crate::mrkdwn);
//! - a `&'static str` literal, which is markup we wrote (`"*Approve?*"`);
//! - the trusted builders here: [`Mrkdwn::user`], [`Mrkdwn::channel`], [`Mrkdwn::usergroup`],
//!   [`Mrkdwn::link`], [`Mrkdwn::date`], and the HTML converter in [`html`](super::html);
//! - composing `Mrkdwn` pieces ([`mrkdwn!`](crate::mrkdwn), [`Mrkdwn::join`], [`Mrkdwn::push`]).
//!
//! An escaped value stays a `Mrkdwn`, so passing it on never escapes it twice (`&amp;lt;`).
//! Plain-text objects (headers, buttons, modal titles, options) are not mrkdwn and stay `&str`:
//! Slack would show `&lt;` there literally. This module must never offer a public way to wrap a
//! runtime `String` unescaped.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Text that is safe to place in a Slack mrkdwn field. See the module docs for how one is made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Mrkdwn(String);

/// Escape `&`, `<` and `>` so text cannot form links, mentions or broadcasts.
pub fn escape(text: &str) -> Mrkdwn {
    Mrkdwn::text(text)
}

impl Mrkdwn {
    /// User or upstream text, escaped.
    pub fn text(text: &str) -> Self {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            }
        }
        Mrkdwn(out)
    }

    /// `<@U…>`; an ID that is not one is shown as escaped text instead of forming markup.
    pub fn user(id: &str) -> Self {
        Self::reference("@", id)
    }

    /// `<#C…>`.
    pub fn channel(id: &str) -> Self {
        Self::reference("#", id)
    }

    /// `<!subteam^S…>`: a user-group mention.
    pub fn usergroup(id: &str) -> Self {
        Self::reference("!subteam^", id)
    }

    fn reference(sigil: &str, id: &str) -> Self {
        if is_slack_id(id) {
            Mrkdwn(format!("<{sigil}{id}>"))
        } else {
            Self::text(id)
        }
    }

    /// `<url|label>` with the label escaped; the URL cannot end the link or split its label.
    pub fn link(url: &str, label: &str) -> Self {
        let url = url
            .replace('<', "%3C")
            .replace('>', "%3E")
            .replace('|', "%7C");
        Mrkdwn(format!("<{url}|{}>", Self::text(label).0))
    }

    /// `<!date^…>`: shown in each reader's own time zone, with a UTC fallback.
    pub fn date(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let fallback = chrono::DateTime::from_timestamp(secs, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        Mrkdwn(format!(
            "<!date^{secs}^{{date_short_pretty}} at {{time}}|{fallback}>"
        ))
    }

    /// The pieces with `sep` between them.
    pub fn join<I>(pieces: I, sep: &str) -> Self
    where
        I: IntoIterator,
        I::Item: ToMrkdwn,
    {
        let sep = Self::text(sep);
        let mut out = Mrkdwn::default();
        for (i, p) in pieces.into_iter().enumerate() {
            if i > 0 {
                out.push(&sep);
            }
            out.push(p.to_mrkdwn());
        }
        out
    }

    /// Append mrkdwn (a literal, or another `Mrkdwn`).
    pub fn push(&mut self, more: impl Into<Mrkdwn>) {
        self.0.push_str(&more.into().0);
    }

    /// At most `max` characters, ending with `…` when cut, and never cut inside an escape or a
    /// `<…>` we built (a half link would show its raw URL).
    pub fn truncate(&self, max: usize) -> Self {
        Self::truncate_with(self, max, &Mrkdwn::default())
    }

    /// As [`Mrkdwn::truncate`], keeping `suffix` (say, a link to the full text) whole.
    pub fn truncate_with(&self, max: usize, suffix: &Mrkdwn) -> Self {
        if self.0.chars().count() <= max {
            return self.clone();
        }
        let room = max.saturating_sub(suffix.0.chars().count() + 1);
        let mut cut: String = self.0.chars().take(room).collect();
        let open = cut.rfind('<').filter(|&i| !cut[i..].contains('>'));
        let amp = cut.rfind('&').filter(|&i| !cut[i..].contains(';'));
        if let Some(i) = open.into_iter().chain(amp).min() {
            cut.truncate(i);
        }
        Mrkdwn(format!("{cut}…{}", suffix.0))
    }

    /// Text Slack sent us (a message's `text`, mrkdwn with `&`, `<`, `>` escaped) to quote
    /// without acting again: its `<…>` tokens become what they read as, so a copy neither
    /// mentions, broadcasts nor hides a link behind a label (`label (url)`).
    pub fn quote_slack(text: &str) -> Self {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open].replace('>', "&gt;"));
            let after = &rest[open + 1..];
            match after.find('>') {
                Some(close) => {
                    out.push_str(&token_text(&after[..close]));
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("&lt;");
                    rest = after;
                }
            }
        }
        out.push_str(&rest.replace('>', "&gt;"));
        Mrkdwn(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// For [`mrkdwn!`](crate::mrkdwn) and the HTML converter only: text already made safe.
    #[doc(hidden)]
    pub fn __composed(safe: String) -> Self {
        Mrkdwn(safe)
    }
}

/// What a Slack `<…>` token reads as, with no markup left in it.
fn token_text(inner: &str) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((t, l)) => (t, Some(l)),
        None => (inner, None),
    };
    let shown = match (target.chars().next(), label) {
        (Some('@'), Some(l)) => format!("@{}", l.trim_start_matches('@')),
        (Some('#'), Some(l)) => format!("#{l}"),
        (Some('@' | '#'), None) => target.to_string(),
        (Some('!'), Some(l)) => l.to_string(),
        (Some('!'), None) => format!("@{}", target[1..].split('^').next().unwrap_or("")),
        (_, Some(l)) => format!("{l} ({target})"),
        (_, None) => target.to_string(),
    };
    shown.replace('<', "&lt;").replace('>', "&gt;")
}

/// Slack IDs are upper-case letters and digits (`U0123`, `C0123`, `S0123`, `W0123`).
fn is_slack_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A literal in our own code is markup we wrote; runtime strings are never `'static`.
impl From<&'static str> for Mrkdwn {
    fn from(markup: &'static str) -> Self {
        Mrkdwn(markup.to_string())
    }
}

impl From<&Mrkdwn> for Mrkdwn {
    fn from(m: &Mrkdwn) -> Self {
        m.clone()
    }
}

impl Serialize for Mrkdwn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Only for our own job payloads: what was stored was a `Mrkdwn` when the job was queued.
impl<'de> Deserialize<'de> for Mrkdwn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Mrkdwn)
    }
}

impl PartialEq<&str> for Mrkdwn {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// How a [`mrkdwn!`](crate::mrkdwn) argument becomes mrkdwn: a `Mrkdwn` as it is, anything
/// else through its `Display` and escaped.
pub trait ToMrkdwn {
    fn to_mrkdwn(&self) -> Mrkdwn;
}

impl ToMrkdwn for Mrkdwn {
    fn to_mrkdwn(&self) -> Mrkdwn {
        self.clone()
    }
}

impl ToMrkdwn for &Mrkdwn {
    fn to_mrkdwn(&self) -> Mrkdwn {
        (*self).clone()
    }
}

/// `iter.join_mrkdwn(", ")`: [`Mrkdwn::join`] at the end of an iterator chain.
pub trait JoinMrkdwn: Iterator + Sized
where
    Self::Item: ToMrkdwn,
{
    fn join_mrkdwn(self, sep: &str) -> Mrkdwn {
        Mrkdwn::join(self, sep)
    }
}

impl<I: Iterator> JoinMrkdwn for I where I::Item: ToMrkdwn {}

impl<T: std::fmt::Display + ?Sized> ToMrkdwn for T {
    fn to_mrkdwn(&self) -> Mrkdwn {
        Mrkdwn::text(&self.to_string())
    }
}

/// Refuses at compile time a `{name}` capture in a [`mrkdwn!`](crate::mrkdwn) format string (a
/// captured variable would bypass the escaping of arguments) and a `<` (mentions and links are
/// made by the builders, which check what goes in them).
pub const fn check_format(fmt: &str) {
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i] != b'<',
            "mrkdwn!: build mentions and links with Mrkdwn::user/channel/link, not in the format"
        );
        if b[i] == b'{' {
            if i + 1 < b.len() && b[i + 1] == b'{' {
                i += 2;
                continue;
            }
            let next = if i + 1 < b.len() { b[i + 1] } else { b'}' };
            assert!(
                next == b'}' || next == b':' || next.is_ascii_digit(),
                "mrkdwn!: pass values as arguments ({{}}), not as {{name}} captures"
            );
        }
        i += 1;
    }
}

/// `format!` for mrkdwn: the format string is trusted markup, every argument is escaped unless it
/// is already a [`Mrkdwn`](crate::slack::mrkdwn::Mrkdwn).
///
/// ```
/// use slackops::{mrkdwn, slack::mrkdwn::Mrkdwn};
/// let m = mrkdwn!("*{}* by {}", "<!channel>", Mrkdwn::user("U1"));
/// assert_eq!(m, "*&lt;!channel&gt;* by <@U1>");
/// ```
#[macro_export]
macro_rules! mrkdwn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        const _: () = $crate::slack::mrkdwn::check_format($fmt);
        #[allow(unused_imports)]
        use $crate::slack::mrkdwn::ToMrkdwn as _;
        $crate::slack::mrkdwn::Mrkdwn::__composed(format!(
            $fmt $(, ($arg).to_mrkdwn().into_string())*
        ))
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<!channel> <https://evil.example|Log in> & <@U0EVIL>";

    #[test]
    fn text_escapes_ampersand_and_angle_brackets_only() {
        assert_eq!(
            Mrkdwn::text(HOSTILE),
            "&lt;!channel&gt; &lt;https://evil.example|Log in&gt; &amp; &lt;@U0EVIL&gt;"
        );
        assert_eq!(Mrkdwn::text("*bold* _it_ `c`"), "*bold* _it_ `c`");
    }

    #[test]
    fn composing_escapes_strings_once_and_mrkdwn_never_again() {
        let summary = Mrkdwn::text("a & <b>");
        let m = mrkdwn!("*{}*: {} ({})", summary, "<!here>", 3);
        assert_eq!(m, "*a &amp; &lt;b&gt;*: &lt;!here&gt; (3)");
        let again = mrkdwn!("{}", m);
        assert_eq!(again, m.as_str(), "no &amp;lt;");
        assert!(!mrkdwn!("{}", &again).as_str().contains("&amp;lt;"));
    }

    #[test]
    fn references_are_built_only_from_slack_ids() {
        assert_eq!(Mrkdwn::user("U0ALICE"), "<@U0ALICE>");
        assert_eq!(Mrkdwn::channel("C01"), "<#C01>");
        assert_eq!(Mrkdwn::usergroup("S01"), "<!subteam^S01>");
        assert_eq!(Mrkdwn::user("U1> <!channel"), "U1&gt; &lt;!channel");
        assert_eq!(Mrkdwn::channel("x|y"), "x|y");
    }

    #[test]
    fn a_link_escapes_its_label_and_cannot_be_broken_by_its_url() {
        assert_eq!(
            Mrkdwn::link("https://x.example/a?b=1&c=2", "Log | in > <!channel>"),
            "<https://x.example/a?b=1&c=2|Log | in &gt; &lt;!channel&gt;>"
        );
        assert_eq!(
            Mrkdwn::link("https://x.example/|<!here>", "ok"),
            "<https://x.example/%7C%3C!here%3E|ok>"
        );
    }

    #[test]
    fn join_escapes_the_separator_and_plain_pieces() {
        let m = Mrkdwn::join([Mrkdwn::user("U1"), Mrkdwn::text("<x>")], " & ");
        assert_eq!(m, "<@U1> &amp; &lt;x&gt;");
        assert_eq!(Mrkdwn::join(["<a>", "b"], ", "), "&lt;a&gt;, b");
    }

    #[test]
    fn truncation_never_leaves_half_an_escape_or_link() {
        let m = mrkdwn!("{}{}", "aaaa", Mrkdwn::link("https://x.example", "label"));
        assert_eq!(m.truncate(10), "aaaa…");
        assert_eq!(Mrkdwn::text("ab<cd").truncate(5), "ab…");
        let t = Mrkdwn::text(&"é".repeat(50)).truncate(20);
        assert_eq!(t.as_str().chars().count(), 20);
        let w = Mrkdwn::text(&"a".repeat(100))
            .truncate_with(20, &Mrkdwn::link("https://u.example", "more"));
        assert!(w.as_str().ends_with("<https://u.example|more>"), "{w:?}");
    }

    #[test]
    fn quoting_slack_text_keeps_its_escapes_and_defuses_its_tokens() {
        let m = Mrkdwn::quote_slack(
            "<!channel> <https://evil.example|Log in> &amp; <@U0EVIL> <#C1|ops> &lt;b&gt; <!subteam^S1|@team> x > y <oops",
        );
        assert_eq!(
            m,
            "@channel Log in (https://evil.example) &amp; @U0EVIL #ops &lt;b&gt; @team x &gt; y &lt;oops"
        );
    }

    #[test]
    fn the_format_check_refuses_captures_and_allows_positions() {
        check_format("*{}* {0} {:>3} {{literal}}");
        let refused = std::panic::catch_unwind(|| check_format("{name}"));
        assert!(refused.is_err());
        let refused = std::panic::catch_unwind(|| check_format("<@{}>"));
        assert!(refused.is_err());
    }

    #[test]
    fn serializes_as_a_plain_json_string() {
        let v = serde_json::to_value(mrkdwn!("{}", "<x>")).unwrap();
        assert_eq!(v, serde_json::json!("&lt;x&gt;"));
    }
}
