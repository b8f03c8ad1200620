//! HTML to Slack mrkdwn: Spinnaker Manual Judgment `instructions` as Slack shows them.
//!
//! Spinnaker lets pipeline authors write a Manual Judgment's instructions in HTML, and Deck renders
//! them as such. Slack would show that HTML as literal tags, so [`to_mrkdwn`] turns it into the
//! mrkdwn Slack formats: bold, italic, strike, code, code blocks, links, quotes and list lines.
//!
//! The instructions are written by whoever can edit a pipeline, not by the approver reading them,
//! so the output is untrusted text placed in a message that people act on. This module must never
//! emit raw HTML, nor a `<` that starts anything but a link we built ourselves from an
//! `http(s)`/`mailto` `href`: every literal `&`, `<` and `>` in the text is escaped, so no input can
//! forge a mention, a broadcast (`<!channel>`), a user or channel reference, or a link with a
//! misleading label. It must also never panic and stay linear in the input: it runs on data
//! straight from Spinnaker events, inside request handling.
//!
//! Tokenizing is left to `html5gum`, a WHATWG-compliant tokenizer, so tag soup is split the way a
//! browser splits it (quoted `>` in attributes, comments, uppercase names, entities, raw-text
//! `<script>`/`<style>`); this file only decides what each token means in mrkdwn.

use html5gum::{DefaultEmitter, Error, StartTag, Token, Tokenizer};

use super::mrkdwn::Mrkdwn;

/// Converts Spinnaker's HTML `instructions` into Slack mrkdwn. See the module docs for the rules.
///
/// Text without any markup (no tags, comments or doctype) keeps its whitespace and line breaks as
/// written and is only entity-decoded and escaped: people often type plain multi-line text there.
pub fn to_mrkdwn(html: &str) -> Mrkdwn {
    // Spans let a bogus comment such as `<!channel>` be shown as the text it was written as.
    let mut emitter = DefaultEmitter::<usize>::new_with_span();
    // Without this the tokenizer would read `<script>` bodies as markup and text as tags.
    emitter.naively_switch_states(true);
    let mut converter = Converter::default();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        match token {
            Ok(token) => converter.token(html, token),
            Err(never) => match never {},
        }
    }
    // The converter escapes every literal text and builds only checked links (module docs).
    Mrkdwn::__composed(converter.finish())
}

/// Deeper nesting of inline styles is ignored: it keeps per-word work bounded on hostile input.
const MAX_STYLE_DEPTH: usize = 32;
/// Lists nest visually up to this depth; deeper ones share its indentation so that indentation
/// cannot grow quadratically with the input.
const MAX_LIST_INDENT: usize = 8;
const INDENT: &str = "    ";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Bold,
    Italic,
    Strike,
    Code,
}

impl Style {
    fn marker(self) -> &'static str {
        match self {
            Style::Bold => "*",
            Style::Italic => "_",
            Style::Strike => "~",
            Style::Code => "`",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Style::Bold => 1,
            Style::Italic => 2,
            Style::Strike => 4,
            Style::Code => 8,
        }
    }
}

/// An open inline element. Its marker is written lazily, just before the first content inside it,
/// so empty elements never produce empty `**`.
struct StyleSpan {
    /// The tag that closes it (`"h"` stands for any heading, as `</h2>` closes `<h1>` in HTML).
    tag: &'static str,
    style: Style,
    /// What was written when it was opened; `None` when suppressed (nested same style, or inside
    /// code, where Slack would show the marker literally).
    written: Option<&'static str>,
}

struct List {
    ordered: bool,
    next: i64,
}

struct Pre {
    buf: String,
    depth: usize,
    /// HTML drops the newline right after `<pre>`.
    skip_newline: bool,
}

struct Link {
    url: String,
    label: String,
    leading_space: bool,
    trailing_space: bool,
}

#[derive(Default)]
struct Converter {
    out: String,
    spans: Vec<StyleSpan>,
    /// `spans[..emitted]` have had their opening marker written on the current line.
    emitted: usize,
    /// Closing markers just written, with `out.len()` after each: reopening the same style right
    /// away takes the closer back instead, so `<b>a</b><b>b</b>` gives `*ab*`, not `*a**b*`.
    recent_closers: Vec<(&'static str, usize)>,
    pending_newlines: u8,
    pending_space: bool,
    /// Whether the current line has its prefix (quote, bullet, indent) yet; false at the start so
    /// the first line gets one too.
    line_open: bool,
    pending_marker: Option<String>,
    lists: Vec<List>,
    quote_depth: usize,
    pre: Option<Pre>,
    link: Option<Link>,
    /// Inside an element whose content is never shown (`<script>`, `<style>`, ...): its name and
    /// how many of them are open.
    skip: Option<(Vec<u8>, usize)>,
    /// The text as is, for input that turns out to have no markup at all.
    plain: String,
    saw_markup: bool,
}

impl Converter {
    fn token(&mut self, html: &str, token: Token<usize>) {
        match token {
            Token::String(text) => self.source_text(&String::from_utf8_lossy(&text.value)),
            // HTML hides `<!channel>`, `<!here>` or `<!subteam^…>` as bogus comments, but they are
            // Slack syntax someone meant to show or to slip in: show them, escaped, as written.
            Token::Comment(comment) => match html.get(comment.span.start..comment.span.end) {
                Some(source) if is_bogus_bang_comment(source) => self.source_text(source),
                _ => self.markup_seen(),
            },
            Token::StartTag(tag) => {
                self.markup_seen();
                self.start_tag(&tag);
            }
            Token::EndTag(tag) => {
                self.markup_seen();
                self.end_tag(&tag.name);
            }
            Token::Doctype(_) => self.markup_seen(),
            // A tag cut off by the end of input is dropped, like a browser does, but it still
            // makes the input HTML rather than plain text.
            Token::Error(error) if error.value == Error::EofInTag => self.markup_seen(),
            Token::Error(_) => {}
        }
    }

    fn source_text(&mut self, text: &str) {
        if !self.saw_markup {
            self.plain.push_str(text);
        }
        if self.skip.is_none() {
            self.text(text);
        }
    }

    fn markup_seen(&mut self) {
        if !self.saw_markup {
            self.saw_markup = true;
            self.plain = String::new();
        }
    }

    fn finish(mut self) -> String {
        if !self.saw_markup {
            let mut out = String::with_capacity(self.plain.len());
            push_escaped(&mut out, &self.plain);
            return out;
        }
        self.finish_link();
        if self.pre.is_some() {
            self.flush_pre();
        }
        self.close_markers();
        // Only a first line's list indentation can lead; breaks and spaces never trail.
        match self.out.find(|c: char| !c.is_whitespace()) {
            Some(0) => self.out,
            Some(start) => self.out.split_off(start),
            None => String::new(),
        }
    }

    // ----- tags -----

    fn start_tag(&mut self, tag: &StartTag<usize>) {
        let name = tag.name.as_slice();
        if let Some((skipped, depth)) = &mut self.skip {
            if name == skipped.as_slice() {
                *depth += 1;
            }
            return;
        }
        // Browsers ignore `/>` on these too, and the tokenizer has already switched to raw text.
        if is_hidden(name) {
            self.skip = Some((name.to_vec(), 1));
            return;
        }
        if let Some(pre) = &mut self.pre {
            pre.skip_newline = false;
            match name {
                b"pre" => pre.depth += 1,
                b"br" => pre.buf.push('\n'),
                b"img" => {
                    if let Some(alt) = attr(tag, b"alt") {
                        let alt = alt.replace('\u{a0}', " ");
                        pre.buf.push_str(&alt);
                    }
                }
                _ if is_block(name) || is_list_part(name) || heading(name) || name == b"p" => {
                    pre_newline(pre)
                }
                _ => {}
            }
            return;
        }
        if let Some((tag_name, style)) = inline_style(name) {
            self.push_style(tag_name, style);
            return;
        }
        match name {
            b"br" => self.line_break(),
            b"p" => self.block(2),
            b"hr" => self.block(2),
            _ if heading(name) => {
                self.block(1);
                self.push_style("h", Style::Bold);
            }
            b"ul" | b"ol" => {
                self.block(1);
                self.pending_marker = None;
                let next = attr(tag, b"start")
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(1);
                self.lists.push(List {
                    ordered: name == b"ol",
                    next,
                });
            }
            b"li" => self.list_item(),
            b"blockquote" => {
                self.block(1);
                self.quote_depth = self.quote_depth.saturating_add(1);
            }
            b"pre" => {
                self.block(1);
                self.pre = Some(Pre {
                    buf: String::new(),
                    depth: 1,
                    skip_newline: true,
                });
            }
            b"a" => self.start_link(tag),
            b"img" => {
                if let Some(alt) = attr(tag, b"alt") {
                    self.text(&alt);
                }
            }
            // Cells sit side by side; without a gap their words would run together.
            b"td" | b"th" => self.space(),
            _ if is_block(name) => self.block(1),
            _ => {}
        }
    }

    fn end_tag(&mut self, name: &[u8]) {
        if let Some((skipped, depth)) = &mut self.skip {
            if name == skipped.as_slice() {
                *depth -= 1;
                if *depth == 0 {
                    self.skip = None;
                }
            }
            return;
        }
        if let Some(pre) = &mut self.pre {
            pre.skip_newline = false;
            if name == b"pre" {
                pre.depth -= 1;
                if pre.depth == 0 {
                    self.flush_pre();
                }
            } else if name == b"br" {
                pre.buf.push('\n');
            } else if is_block(name) || is_list_part(name) || heading(name) || name == b"p" {
                pre_newline(pre);
            }
            return;
        }
        if let Some((tag_name, _)) = inline_style(name) {
            self.pop_style(tag_name);
            return;
        }
        match name {
            b"br" => self.line_break(),
            b"p" => self.block(2),
            _ if heading(name) => {
                self.pop_style("h");
                self.block(1);
            }
            b"ul" | b"ol" => {
                self.block(1);
                self.pending_marker = None;
                self.lists.pop();
            }
            b"li" => {
                self.block(1);
                // An item with nothing in it shows no bullet.
                self.pending_marker = None;
            }
            b"blockquote" => {
                self.block(1);
                self.quote_depth = self.quote_depth.saturating_sub(1);
            }
            b"a" => self.finish_link(),
            _ if is_block(name) => self.block(1),
            _ => {}
        }
    }

    fn list_item(&mut self) {
        self.block(1);
        let depth = self.lists.len().clamp(1, MAX_LIST_INDENT);
        let bullet = match self.lists.last_mut() {
            Some(List {
                ordered: true,
                next,
            }) => {
                let bullet = format!("{next}. ");
                *next = next.saturating_add(1);
                bullet
            }
            _ => "• ".to_owned(),
        };
        self.pending_marker = Some(INDENT.repeat(depth - 1) + &bullet);
    }

    // ----- inline styles -----

    fn push_style(&mut self, tag: &'static str, style: Style) {
        if self.spans.len() < MAX_STYLE_DEPTH {
            self.spans.push(StyleSpan {
                tag,
                style,
                written: None,
            });
        }
    }

    /// Closes the innermost element opened by `tag`. Elements opened inside it but not closed
    /// (misnested HTML) are closed with it and reopened before the next content, so markers always
    /// pair up. A stray end tag with nothing to close is ignored.
    fn pop_style(&mut self, tag: &'static str) {
        let Some(i) = self.spans.iter().rposition(|s| s.tag == tag) else {
            return;
        };
        for j in (i..self.emitted).rev() {
            if let Some(marker) = self.spans[j].written {
                self.write_closer(marker);
            }
        }
        self.emitted = self.emitted.min(i);
        self.spans.remove(i);
    }

    fn open_markers(&mut self) {
        if self.emitted >= self.spans.len() {
            return;
        }
        let mut seen = self.spans[..self.emitted]
            .iter()
            .fold(0u8, |acc, s| acc | s.style.bit());
        for i in self.emitted..self.spans.len() {
            let style = self.spans[i].style;
            // Slack shows markers inside code literally, and `**x**` is not bold.
            let suppressed = seen & (style.bit() | Style::Code.bit()) != 0;
            seen |= style.bit();
            let written = (!suppressed).then(|| style.marker());
            if let Some(marker) = written {
                self.write_opener(marker);
            }
            self.spans[i].written = written;
        }
        self.emitted = self.spans.len();
    }

    /// Closes every written marker: Slack styles do not span lines, so they are closed at each
    /// line end and reopened on the next line.
    fn close_markers(&mut self) {
        for j in (0..self.emitted).rev() {
            if let Some(marker) = self.spans[j].written {
                self.write_closer(marker);
            }
        }
        self.emitted = 0;
    }

    fn write_closer(&mut self, marker: &'static str) {
        self.out.push_str(marker);
        self.recent_closers.push((marker, self.out.len()));
    }

    fn write_opener(&mut self, marker: &'static str) {
        if self.recent_closers.last() == Some(&(marker, self.out.len())) {
            self.recent_closers.pop();
            self.out.truncate(self.out.len() - marker.len());
        } else {
            self.push_raw(marker);
        }
    }

    // ----- layout -----

    /// Asks for `n` line breaks before the next content (2 = one blank line). Runs of block
    /// boundaries collapse, and breaks before the first content or after the last are never
    /// written, which trims the output.
    fn block(&mut self, n: u8) {
        self.finish_link();
        self.pending_newlines = self.pending_newlines.max(n);
    }

    fn line_break(&mut self) {
        if self.link.is_some() {
            self.space();
        } else {
            self.pending_newlines = (self.pending_newlines + 1).min(2);
        }
    }

    fn space(&mut self) {
        match &mut self.link {
            Some(link) if link.label.is_empty() => link.leading_space = true,
            Some(link) => link.trailing_space = true,
            None => self.pending_space = true,
        }
    }

    /// Everything before content: pending line breaks, the line's prefix, a pending space, and
    /// the markers of open styles.
    fn begin_content(&mut self) {
        self.begin_line(true);
        if self.pending_space {
            self.push_raw(" ");
            self.pending_space = false;
        }
        self.open_markers();
    }

    fn begin_line(&mut self, with_marker: bool) {
        if self.pending_newlines > 0 {
            if !self.out.is_empty() {
                self.close_markers();
                for _ in 0..self.pending_newlines {
                    self.push_raw("\n");
                }
                self.line_open = false;
            }
            self.pending_newlines = 0;
        }
        if !self.line_open {
            self.line_open = true;
            // Whitespace at a line start is not shown by HTML either.
            self.pending_space = false;
            self.push_quote_prefix();
            match self.pending_marker.take().filter(|_| with_marker) {
                Some(marker) => self.push_raw(&marker),
                None => {
                    let depth = self.lists.len().min(MAX_LIST_INDENT);
                    for _ in 0..depth {
                        self.push_raw(INDENT);
                    }
                }
            }
        }
    }

    fn push_quote_prefix(&mut self) {
        // Slack has one level of quote, so nested blockquotes share it.
        if self.quote_depth > 0 {
            self.push_raw("> ");
        }
    }

    fn push_raw(&mut self, s: &str) {
        self.recent_closers.clear();
        self.out.push_str(s);
    }

    // ----- text -----

    fn text(&mut self, text: &str) {
        if let Some(pre) = &mut self.pre {
            let mut text = text;
            if std::mem::take(&mut pre.skip_newline) {
                text = text.strip_prefix('\n').unwrap_or(text);
            }
            pre.buf.extend(text.chars().map(|c| match c {
                '\u{a0}' => ' ',
                c => c,
            }));
            return;
        }
        for (i, word) in text.split(is_collapsible_space).enumerate() {
            if i > 0 {
                self.space();
            }
            // NUL is dropped when escaping; a word of only NUL must not start a line either.
            if !word.trim_matches('\0').is_empty() {
                self.word(word);
            }
        }
    }

    fn word(&mut self, word: &str) {
        if let Some(link) = &mut self.link {
            if std::mem::take(&mut link.trailing_space) {
                link.label.push(' ');
            }
            push_escaped(&mut link.label, word);
            return;
        }
        self.begin_content();
        self.recent_closers.clear();
        push_escaped(&mut self.out, word);
    }

    // ----- links -----

    fn start_link(&mut self, tag: &StartTag<usize>) {
        // Links do not nest in HTML: a new `<a>` ends the previous one.
        self.finish_link();
        if let Some(url) = attr(tag, b"href").and_then(|href| link_target(&href)) {
            self.link = Some(Link {
                url,
                label: String::new(),
                leading_space: false,
                trailing_space: false,
            });
        }
    }

    /// Writes the open link as one unit, `<url|label>` (or `<url>` when it has no text, since the
    /// target is then the only thing worth showing).
    fn finish_link(&mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        if link.leading_space {
            self.pending_space = true;
        }
        let mut unit = String::with_capacity(link.url.len() + link.label.len() + 3);
        unit.push('<');
        unit.push_str(&link.url);
        if !link.label.is_empty() {
            unit.push('|');
            unit.push_str(&link.label);
        }
        unit.push('>');
        self.begin_content();
        self.push_raw(&unit);
        if link.trailing_space {
            self.pending_space = true;
        }
    }

    // ----- preformatted -----

    fn flush_pre(&mut self) {
        let Some(pre) = self.pre.take() else {
            return;
        };
        let content = pre.buf.trim_start_matches('\n').trim_end();
        if !content.is_empty() {
            self.pending_newlines = self.pending_newlines.max(1);
            self.begin_line(true);
            self.push_raw("```");
            for line in content.split('\n') {
                self.push_raw("\n");
                self.push_quote_prefix();
                push_escaped(&mut self.out, line);
            }
            self.push_raw("\n");
            self.push_quote_prefix();
            self.push_raw("```");
        }
        self.pending_space = false;
        self.block(1);
    }
}

/// `<!…>` that is neither a real comment (`<!--`) nor CDATA (`<![CDATA[`).
fn is_bogus_bang_comment(source: &str) -> bool {
    source
        .strip_prefix("<!")
        .is_some_and(|rest| !rest.starts_with(['-', '[']))
}

fn pre_newline(pre: &mut Pre) {
    if !pre.buf.is_empty() && !pre.buf.ends_with('\n') {
        pre.buf.push('\n');
    }
}

/// The mrkdwn link target for an `href`, or `None` when it should not be a link. Only web and
/// mail links are kept: `javascript:`, `data:` and relative URLs mean nothing in Slack.
fn link_target(href: &str) -> Option<String> {
    // What a browser does to an href before using it: trim, and drop tabs and newlines.
    let url: String = href
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let scheme = ["https://", "http://", "mailto:"]
        .into_iter()
        .find(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        })?;
    let rest = &url[scheme.len()..];
    if rest.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(url.len() + 8);
    out.push_str(scheme);
    for c in rest.chars() {
        match c {
            // `|` would end the target and `>` the whole link; `<` must never appear raw.
            '|' => out.push_str("%7C"),
            '>' => out.push_str("%3E"),
            '<' => out.push_str("%3C"),
            ' ' => out.push_str("%20"),
            // Slack reads `&amp;` in a target as `&`, like everywhere else in a message.
            '&' => out.push_str("&amp;"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn attr(tag: &StartTag<usize>, name: &[u8]) -> Option<String> {
    tag.attributes
        .get(name)
        .map(|v| String::from_utf8_lossy(&v.value).into_owned())
}

/// The only three characters Slack asks apps to escape; with them escaped no text can become a
/// mention, a broadcast or a link. NUL is dropped, as an HTML tree builder does.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\0' => {}
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// HTML's collapsible whitespace, plus no-break space: a `&nbsp;` next to a style marker would
/// stop Slack from rendering the style, and an extra space is not worth that.
fn is_collapsible_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0C' | '\u{a0}')
}

fn inline_style(name: &[u8]) -> Option<(&'static str, Style)> {
    Some(match name {
        b"b" => ("b", Style::Bold),
        b"strong" => ("strong", Style::Bold),
        b"i" => ("i", Style::Italic),
        b"em" => ("em", Style::Italic),
        b"s" => ("s", Style::Strike),
        b"del" => ("del", Style::Strike),
        b"strike" => ("strike", Style::Strike),
        b"code" => ("code", Style::Code),
        b"tt" => ("tt", Style::Code),
        _ => return None,
    })
}

fn heading(name: &[u8]) -> bool {
    matches!(name, b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6")
}

fn is_list_part(name: &[u8]) -> bool {
    matches!(name, b"ul" | b"ol" | b"li" | b"blockquote")
}

/// Elements whose content a browser never shows.
fn is_hidden(name: &[u8]) -> bool {
    matches!(
        name,
        b"script"
            | b"style"
            | b"template"
            | b"title"
            | b"iframe"
            | b"noscript"
            | b"noembed"
            | b"noframes"
    )
}

/// Block elements that start and end a line.
fn is_block(name: &[u8]) -> bool {
    matches!(
        name,
        b"div"
            | b"address"
            | b"article"
            | b"aside"
            | b"caption"
            | b"center"
            | b"dd"
            | b"details"
            | b"dialog"
            | b"dir"
            | b"dl"
            | b"dt"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"form"
            | b"header"
            | b"hgroup"
            | b"legend"
            | b"main"
            | b"menu"
            | b"nav"
            | b"section"
            | b"summary"
            | b"table"
            | b"tbody"
            | b"tfoot"
            | b"thead"
            | b"tr"
    )
}

#[cfg(test)]
mod tests {
    fn to_mrkdwn(html: &str) -> String {
        super::to_mrkdwn(html).into_string()
    }

    #[track_caller]
    fn check(html: &str, expected: &str) {
        assert_eq!(to_mrkdwn(html), expected, "input: {html:?}");
    }

    // ----- Spinnaker-like instructions -----

    #[test]
    fn converts_typical_spinnaker_instructions() {
        check(
            r#"Promote <b>v42</b> to <a href="https://grafana.example.com/d/x">prod</a>?<br>Check <code>error_rate</code> &lt; 1%"#,
            "Promote *v42* to <https://grafana.example.com/d/x|prod>?\nCheck `error_rate` &lt; 1%",
        );
    }

    #[test]
    fn converts_instructions_from_the_echo_event_example() {
        check("Promote <b>v42</b>?", "Promote *v42*?");
    }

    #[test]
    fn converts_a_multi_paragraph_runbook() {
        let html = "<h3>Before promoting</h3>\n<ol>\n  <li>Open the <a href=\"https://grafana.example.com/d/x?orgId=1&amp;from=now-1h\">dashboard</a></li>\n  <li>Confirm <strong>p99 &lt; 300ms</strong></li>\n</ol>\n<p>If in doubt, <em>reject</em>.</p>";
        check(
            html,
            "*Before promoting*\n1. Open the <https://grafana.example.com/d/x?orgId=1&amp;from=now-1h|dashboard>\n2. Confirm *p99 &lt; 300ms*\n\nIf in doubt, _reject_.",
        );
    }

    // ----- plain text and escaping -----

    #[test]
    fn plain_text_comes_back_unchanged() {
        check("Deploy v42 to prod?", "Deploy v42 to prod?");
    }

    #[test]
    fn plain_text_keeps_its_line_breaks_and_spacing() {
        check(
            "Deploy v42\n\n  then  verify",
            "Deploy v42\n\n  then  verify",
        );
    }

    #[test]
    fn plain_text_is_only_escaped() {
        check(
            "error_rate < 1% & latency > 200ms",
            "error_rate &lt; 1% &amp; latency &gt; 200ms",
        );
    }

    #[test]
    fn empty_input_gives_empty_output() {
        check("", "");
        check("<p></p>", "");
        check("<b></b><i> </i>", "");
    }

    #[test]
    fn broadcast_in_plain_text_is_escaped() {
        check(
            "<!channel> please approve",
            "&lt;!channel&gt; please approve",
        );
    }

    #[test]
    fn broadcast_next_to_markup_is_escaped() {
        check(
            "<b>Heads up</b> <!channel> <!here|here>",
            "*Heads up* &lt;!channel&gt; &lt;!here|here&gt;",
        );
    }

    #[test]
    fn slack_special_syntax_is_shown_escaped() {
        check(
            "<p>ping <!subteam^S123|@oncall> <@U123> <#C123|ops> <!date^1|x>",
            "ping &lt;!subteam^S123|@oncall&gt; &lt;@U123&gt; &lt;#C123|ops&gt; &lt;!date^1|x&gt;",
        );
    }

    #[test]
    fn broadcast_inside_a_link_label_is_escaped() {
        check(
            r#"<a href="https://x.example"><!channel></a>"#,
            "<https://x.example|&lt;!channel&gt;>",
        );
    }

    #[test]
    fn cdata_and_processing_instructions_are_dropped() {
        check("a<![CDATA[x]]>b<?xml version='1.0'?>c", "abc");
    }

    #[test]
    fn encoded_mentions_stay_text() {
        check(
            "<p>&lt;@U123&gt; &lt;#C123|ops&gt; &lt;!subteam^S1&gt;</p>",
            "&lt;@U123&gt; &lt;#C123|ops&gt; &lt;!subteam^S1&gt;",
        );
    }

    #[test]
    fn encoded_slack_link_stays_text() {
        check(
            "<i>&lt;https://evil.example|https://good.example&gt;</i>",
            "_&lt;https://evil.example|https://good.example&gt;_",
        );
    }

    #[test]
    fn decodes_named_and_numeric_entities_then_escapes() {
        check(
            "<p>&amp; &lt; &gt; &quot; &#39; &#x27; &#65;&#x42; &eacute; &copy;</p>",
            "&amp; &lt; &gt; \" ' ' AB é ©",
        );
    }

    #[test]
    fn nul_characters_are_dropped() {
        check("a\0b", "ab");
        check("<p>a\0b</p><pre>c\0d</pre>", "ab\n\n```\ncd\n```");
        check("<ul><li>\0</li></ul>x", "x");
    }

    #[test]
    fn nbsp_becomes_a_space() {
        check("<p>a&nbsp;b</p>", "a b");
    }

    #[test]
    fn unknown_entity_stays_literal_and_escaped() {
        check("<p>&bogus; &</p>", "&amp;bogus; &amp;");
    }

    // ----- whitespace and blocks -----

    #[test]
    fn collapses_whitespace_like_html() {
        check("<p>  a \n\t b   c </p>", "a b c");
    }

    #[test]
    fn br_becomes_a_newline() {
        check("a<br>b<br/>c<BR />d", "a\nb\nc\nd");
    }

    #[test]
    fn paragraphs_are_separated_by_one_blank_line() {
        check("<p>a</p><p>b</p>", "a\n\nb");
    }

    #[test]
    fn divs_become_lines() {
        check("<div>a</div><div>b</div>c", "a\nb\nc");
    }

    #[test]
    fn runs_of_blank_lines_collapse_to_one() {
        check("a<br><br><br><br>b<p></p><p></p><p>c</p>", "a\n\nb\n\nc");
    }

    #[test]
    fn output_is_trimmed() {
        check("<br><p> <b>x</b> </p><br><div></div>", "*x*");
        check("<ul>loose text</ul>", "loose text");
    }

    #[test]
    fn table_cells_are_separated() {
        check(
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",
            "a b\nc",
        );
    }

    #[test]
    fn horizontal_rule_separates_like_a_paragraph() {
        check("a<hr>b", "a\n\nb");
    }

    // ----- inline styles -----

    #[test]
    fn bold_and_strong_become_asterisks() {
        check("<b>a</b> <strong>b</strong>", "*a* *b*");
    }

    #[test]
    fn italic_and_em_become_underscores() {
        check("<i>a</i> <em>b</em>", "_a_ _b_");
    }

    #[test]
    fn strike_tags_become_tildes() {
        check("<s>a</s> <del>b</del> <strike>c</strike>", "~a~ ~b~ ~c~");
    }

    #[test]
    fn code_and_tt_become_backticks() {
        check("<code>a</code> <tt>b</tt>", "`a` `b`");
    }

    #[test]
    fn nested_styles_nest_markers() {
        check("<b><i>a</i></b>", "*_a_*");
    }

    #[test]
    fn whitespace_moves_outside_markers() {
        check("x<b> bold </b>y", "x *bold* y");
    }

    #[test]
    fn empty_or_blank_styles_emit_nothing() {
        check("a<b></b>b<i>  </i>c<code></code>", "ab c");
    }

    #[test]
    fn same_style_nested_is_not_doubled() {
        check("<b>a <strong>b</strong> c</b>", "*a b c*");
    }

    #[test]
    fn adjacent_same_style_merges() {
        check("<b>a</b><b>b</b>", "*ab*");
    }

    #[test]
    fn styles_inside_code_are_dropped() {
        check("<code>a <b>b</b></code>", "`a b`");
    }

    #[test]
    fn code_inside_bold_keeps_both() {
        check("<b>run <code>x</code></b>", "*run `x`*");
    }

    #[test]
    fn styles_are_closed_and_reopened_across_lines() {
        check("<b>a<br>b</b>", "*a*\n*b*");
    }

    #[test]
    fn unclosed_style_is_closed_at_the_end() {
        check("<b>a <i>b", "*a _b_*");
    }

    #[test]
    fn stray_end_tags_are_ignored() {
        check("a</b> b</i></code>", "a b");
    }

    #[test]
    fn misnested_styles_stay_balanced() {
        check("<b>a<i>b</b>c</i>", "*a_b_*_c_");
    }

    #[test]
    fn uppercase_tags_are_recognised() {
        check("<B>a</B> <EM>b</Em>", "*a* _b_");
    }

    #[test]
    fn attributes_with_angle_brackets_inside_quotes() {
        check(r#"<b title="a > b" data-x='<i>'>x</b>"#, "*x*");
    }

    #[test]
    fn comments_are_dropped() {
        check("a<!-- <b>hidden</b> -->b", "ab");
        check("a<!-- unterminated", "a");
    }

    #[test]
    fn deep_nesting_is_bounded_and_balanced() {
        let html = "<b><i>".repeat(1000) + "x" + &"</i></b>".repeat(1000);
        check(&html, "*_x_*");
    }

    // ----- links -----

    #[test]
    fn http_https_and_mailto_links_are_kept() {
        check(
            r#"<a href="http://a.example">a</a> <a href="HTTPS://b.example/p">b</a> <a href="mailto:oncall@example.com">mail</a>"#,
            "<http://a.example|a> <https://b.example/p|b> <mailto:oncall@example.com|mail>",
        );
    }

    #[test]
    fn other_schemes_keep_only_their_text() {
        check(
            r#"<a href="javascript:alert(1)">click</a> <a href="/pipelines">rel</a> <a>none</a> <a href="data:text/html,x">d</a>"#,
            "click rel none d",
        );
    }

    #[test]
    fn pipes_and_angle_brackets_in_urls_are_percent_encoded() {
        check(
            r#"<a href="https://x.example/?q=a|b&gt;c&lt;d e">x</a>"#,
            "<https://x.example/?q=a%7Cb%3Ec%3Cd%20e|x>",
        );
    }

    #[test]
    fn ampersands_in_urls_are_escaped() {
        check(
            r#"<a href="https://x.example/?a=1&b=2">x</a>"#,
            "<https://x.example/?a=1&amp;b=2|x>",
        );
    }

    #[test]
    fn link_label_is_escaped_and_cannot_forge_a_link() {
        check(
            r#"<a href="https://good.example">&lt;!channel&gt; | <b>x</b> &gt;</a>"#,
            "<https://good.example|&lt;!channel&gt; | x &gt;>",
        );
    }

    #[test]
    fn link_without_text_shows_its_url() {
        check(r#"<a href="https://x.example"></a>"#, "<https://x.example>");
    }

    #[test]
    fn link_spacing_follows_the_text() {
        check(
            r#"see<a href="https://x.example"> docs </a>now"#,
            "see <https://x.example|docs> now",
        );
    }

    #[test]
    fn link_inside_bold_is_wrapped() {
        check(
            r#"<b><a href="https://x.example">x</a></b>"#,
            "*<https://x.example|x>*",
        );
    }

    #[test]
    fn unclosed_link_is_finished_at_the_end() {
        check(r#"<a href="https://x.example">x"#, "<https://x.example|x>");
    }

    #[test]
    fn image_inside_link_gives_its_alt_as_label() {
        check(
            r#"<a href="https://x.example"><img src="a.png" alt="graph"></a>"#,
            "<https://x.example|graph>",
        );
    }

    #[test]
    fn href_whitespace_is_trimmed() {
        check(
            "<a href=\"  https://x.example/a\nb  \">x</a>",
            "<https://x.example/ab|x>",
        );
    }

    // ----- lists, headings, quotes, pre -----

    #[test]
    fn unordered_list_becomes_bullets() {
        check("<ul><li>a</li><li>b</li></ul>", "• a\n• b");
    }

    #[test]
    fn ordered_list_is_numbered() {
        check("<ol><li>a</li><li>b</li></ol>", "1. a\n2. b");
    }

    #[test]
    fn ordered_list_honours_start() {
        check(r#"<ol start="3"><li>a</li><li>b</li></ol>"#, "3. a\n4. b");
    }

    #[test]
    fn nested_lists_are_indented() {
        check(
            "<ul><li>a<ul><li>b</li><li>c<ol><li>d</li></ol></li></ul></li><li>e</li></ul>",
            "• a\n    • b\n    • c\n        1. d\n• e",
        );
    }

    #[test]
    fn list_without_closing_tags() {
        check("<ul><li>a<li>b</ul>after", "• a\n• b\nafter");
    }

    #[test]
    fn empty_list_items_show_no_bullet() {
        check("<ul><li></li><li> </li><li>x</li></ul>", "• x");
        check("<ul><li></li></ul>after", "after");
    }

    #[test]
    fn list_item_with_styles_and_link() {
        check(
            r#"<ul><li><b>check</b> <a href="https://x.example">dash</a></li></ul>"#,
            "• *check* <https://x.example|dash>",
        );
    }

    #[test]
    fn stray_list_item_is_a_bullet() {
        check("<li>a</li>", "• a");
    }

    #[test]
    fn list_indentation_is_capped() {
        let html = "<ul><li>top</li>".to_owned() + &"<ul>".repeat(50) + "<li>x</li>";
        let out = to_mrkdwn(&html);
        assert_eq!(out, format!("• top\n{}• x", "    ".repeat(7)));
    }

    #[test]
    fn headings_become_bold_lines() {
        check(
            "intro<h1>Title</h1>body<h6>Small</h6>",
            "intro\n*Title*\nbody\n*Small*",
        );
    }

    #[test]
    fn mismatched_heading_end_still_closes() {
        check("<h1>Title</h2>body", "*Title*\nbody");
    }

    #[test]
    fn blockquote_prefixes_each_line() {
        check(
            "before<blockquote>a<br>b</blockquote>after",
            "before\n> a\n> b\nafter",
        );
    }

    #[test]
    fn nested_blockquotes_share_one_level() {
        check(
            "<blockquote>a<blockquote>b</blockquote>c</blockquote>",
            "> a\n> b\n> c",
        );
    }

    #[test]
    fn pre_becomes_a_code_block_keeping_whitespace() {
        check(
            "run:<pre>\nkubectl get pods\n  -n prod &amp;&amp; echo &lt;ok&gt;\n</pre>then",
            "run:\n```\nkubectl get pods\n  -n prod &amp;&amp; echo &lt;ok&gt;\n```\nthen",
        );
    }

    #[test]
    fn pre_drops_inner_markup_but_keeps_text() {
        check(
            r#"<pre><b>x</b> <a href="https://x.example">y</a><br>z</pre>"#,
            "```\nx y\nz\n```",
        );
    }

    #[test]
    fn empty_pre_emits_nothing() {
        check("a<pre>\n  \n</pre>b", "a\nb");
    }

    #[test]
    fn unclosed_pre_is_closed_at_the_end() {
        check("<pre>x  y", "```\nx  y\n```");
    }

    #[test]
    fn pre_inside_blockquote_is_quoted() {
        check(
            "<blockquote><pre>a\nb</pre></blockquote>",
            "> ```\n> a\n> b\n> ```",
        );
    }

    // ----- dropped content -----

    #[test]
    fn script_and_style_content_is_dropped() {
        check(
            "a<script>alert('<b>x</b>')</script>b<style>p { color: red }</style>c",
            "abc",
        );
    }

    #[test]
    fn unclosed_script_drops_the_rest() {
        check("a<script>b<b>c</b>", "a");
    }

    #[test]
    fn uppercase_script_is_dropped() {
        check("a<SCRIPT type=x>1 < 2</ScRiPt>b", "ab");
    }

    #[test]
    fn image_becomes_its_alt_text() {
        check(
            r#"see <img src="x.png" alt="the graph"> now <img src="y.png">"#,
            "see the graph now",
        );
    }

    #[test]
    fn unknown_tags_keep_their_text() {
        check(
            r#"<span style="color:red">a</span> <font color=red>b</font> <u>c</u> <custom-el>d</custom-el>"#,
            "a b c d",
        );
    }

    #[test]
    fn doctype_and_document_wrappers_are_dropped() {
        check(
            "<!DOCTYPE html><html><head><title>t</title></head><body><p>x</p></body></html>",
            "x",
        );
    }

    #[test]
    fn broken_tag_at_the_end_is_dropped() {
        check("a <b", "a");
        check("a <b class=\"x", "a");
    }

    #[test]
    fn lone_angle_brackets_are_text() {
        check("<b>1 < 2 > 0</b> a <3", "*1 &lt; 2 &gt; 0* a &lt;3");
    }

    // ----- robustness -----

    const ADVERSARIAL: &[&str] = &[
        "<",
        ">",
        "&",
        "</",
        "<!",
        "<!--",
        "<?xml?>",
        "<![CDATA[x]]>",
        "&#0;&#xD800;&#x110000;&#99999999999;",
        "<a href>",
        "<a href='https://x|y>z'>",
        "<a href='https://'>x</a>",
        "<a href='mailto:'>x</a>",
        "<pre></pre></pre></pre>",
        "</li></ul></ol></blockquote></h1></a></pre></script>",
        "<ol start='-9223372036854775808'><li>x<li>y",
        "<ol start='9223372036854775807'><li>x<li>y",
        "<template><template></template>x</template>y",
        "<li><li><li>",
        "\u{0}<b>\u{0}</b>",
        "é<b>é</b>\u{1F600}<i>\u{1F600}</i>",
        "<a href=\"https://x\u{1}\u{7F}\u{85}.example\">x</a>",
        "<b\n\tclass=x\n>y</b\n>",
        "<blockquote><ul><li><pre>x</pre></li></ul></blockquote>",
    ];

    #[test]
    fn adversarial_inputs_do_not_panic_and_stay_safe() {
        for input in ADVERSARIAL {
            let out = to_mrkdwn(input);
            assert_safe(input, &out);
        }
    }

    #[test]
    fn control_characters_in_urls_are_percent_encoded() {
        check(
            "<a href=\"https://x\u{1}\u{7F}.example\">x</a>",
            "<https://x%01%7F.example|x>",
        );
    }

    /// Every `<` in the output opens a link we built: http(s) or mailto, closed by `>` before any
    /// other `<`; the only other `>` is our quote prefix at a line start.
    #[track_caller]
    fn assert_safe(input: &str, out: &str) {
        let shown = |s: &str| s.chars().take(300).collect::<String>();
        for line in out.lines() {
            let mut rest = line.strip_prefix("> ").unwrap_or(line);
            while let Some(start) = rest.find(['<', '>']) {
                let tail = &rest[start..];
                assert!(
                    tail.starts_with("<http://")
                        || tail.starts_with("<https://")
                        || tail.starts_with("<mailto:"),
                    "unsafe `<`/`>` in line {:?} from {:?}",
                    shown(line),
                    shown(input)
                );
                let end = tail.find('>').unwrap_or_else(|| {
                    panic!("unclosed link in {:?} from {:?}", shown(line), shown(input))
                });
                assert!(
                    !tail[1..end].contains('<'),
                    "`<` inside a link in {:?} from {:?}",
                    shown(line),
                    shown(input)
                );
                rest = &tail[end + 1..];
            }
        }
    }

    /// Small deterministic PRNG so the fuzz loop needs no extra dependency and failures repeat.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn random_input(rng: &mut XorShift, pieces: &[&str]) -> String {
        let len = rng.below(40);
        (0..len).map(|_| pieces[rng.below(pieces.len())]).collect()
    }

    const MARKUP_PIECES: &[&str] = &[
        "<",
        ">",
        "/",
        "</",
        "<!--",
        "-->",
        "<!",
        "=",
        "\"",
        "'",
        " ",
        "\n",
        "\t",
        "&",
        "&amp;",
        "&lt;",
        "&gt;",
        "&#",
        "&#x",
        "x",
        "3c",
        ";",
        "é",
        "\u{0}",
        "<b>",
        "</b>",
        "<i>",
        "</i>",
        "<code>",
        "</code>",
        "<s>",
        "<strong>",
        "<pre>",
        "</pre>",
        "<ul>",
        "<ol>",
        "<li>",
        "</li>",
        "</ul>",
        "<blockquote>",
        "</blockquote>",
        "<h2>",
        "</h2>",
        "<p>",
        "</p>",
        "<br>",
        "<div>",
        "<script>",
        "</script>",
        "<style>",
        "<a href=\"https://x.example/",
        "<a href='",
        "mailto:",
        "javascript:",
        "</a>",
        "<img alt=\"",
        "|",
        "!channel",
        "@U1",
        "<!channel>",
        "<B>",
        "<A HREF=http://y>",
        "<template>",
    ];

    #[test]
    fn fuzz_random_markup_never_panics_and_stays_safe() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let input = random_input(&mut rng, MARKUP_PIECES);
            let out = to_mrkdwn(&input);
            assert_safe(&input, &out);
            // HTML is trimmed and its blank lines collapsed; only plain text, kept as written,
            // may lead or trail with whitespace or hold longer runs of blank lines.
            let ws = char::is_whitespace;
            let input_nul_free = input.replace('\0', "");
            if out.starts_with(ws) {
                assert!(
                    input_nul_free.starts_with(ws),
                    "untrimmed {out:?} from {input:?}"
                );
            }
            if out.ends_with(ws) {
                assert!(
                    input_nul_free.ends_with(ws),
                    "untrimmed {out:?} from {input:?}"
                );
            }
            for part in out.split("```").step_by(2) {
                if part.contains("\n\n\n") {
                    assert!(
                        input_nul_free.contains("\n\n\n"),
                        "blank lines not collapsed: {out:?} from {input:?}"
                    );
                }
            }
        }
    }

    /// Without marker characters in the input, every marker in the output is ours: per line they
    /// must pair up and never be empty.
    const STYLE_PIECES: &[&str] = &[
        "<b>",
        "</b>",
        "<strong>",
        "</strong>",
        "<i>",
        "</i>",
        "<em>",
        "</em>",
        "<s>",
        "</s>",
        "<del>",
        "</del>",
        "<code>",
        "</code>",
        "<tt>",
        "</tt>",
        "<h1>",
        "</h1>",
        "</h3>",
        "<br>",
        "<p>",
        "</p>",
        "<div>",
        "<li>",
        "<ul>",
        "</ul>",
        "<ol>",
        "</li>",
        "<blockquote>",
        "</blockquote>",
        "<a href=\"https://x.example\">",
        "</a>",
        "<img alt=\"pic\">",
        "word",
        "x",
        " ",
        "\n",
        "&nbsp;",
        "<!-- c -->",
    ];

    #[test]
    fn fuzz_random_styles_emit_balanced_non_empty_markers() {
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for _ in 0..20_000 {
            let input = random_input(&mut rng, STYLE_PIECES);
            let out = to_mrkdwn(&input);
            assert_safe(&input, &out);
            for line in out.lines() {
                for marker in ['*', '_', '~', '`'] {
                    let count = line.chars().filter(|&c| c == marker).count();
                    assert!(
                        count % 2 == 0,
                        "unbalanced {marker} in {line:?} of {out:?} from {input:?}"
                    );
                    let doubled: String = [marker, marker].iter().collect();
                    assert!(
                        !line.contains(&doubled),
                        "empty {marker}{marker} in {out:?} from {input:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_hostile_input_stays_linear_in_output_size() {
        let unit = "<ul><li><b><i><blockquote>&amp;<a href='https://x|'>&lt;<br>";
        let input = unit.repeat(5_000);
        let out = to_mrkdwn(&input);
        assert!(
            out.len() <= 16 * input.len() + 64,
            "output {} for input {}",
            out.len(),
            input.len()
        );
        assert_safe("large hostile input", &out);
    }
}
