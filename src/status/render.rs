//! The status page's one view of a snapshot at a given time, rendered three ways: HTML (no
//! JavaScript, readable on a phone), JSON and Atom. Everything shown comes from the view, so the
//! three always say the same thing. All text is escaped: summaries and updates are written by
//! people, and system names come from configuration.

// Markup is written with its newlines visible in the format strings.
#![allow(clippy::write_with_newline)]

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::cache::{Current, OutageEntry};
pub use super::health::Health;
use super::settings::StatusSettings;
use super::uptime::{self, Cause, Day, Uptime};
use crate::announcements::settings::SystemEntry;
use crate::maintenance::model::{Maintenance, Phase, rfc3339};

fn eta_text(eta: &str) -> &str {
    match eta {
        "30m" => "under 30 minutes",
        "2h" => "about 2 hours",
        "8h" => "about 8 hours",
        "24h" => "about 24 hours",
        "unknown" | "" => "unknown",
        other => other,
    }
}

/// Systems by group, in catalogue order.
pub type Groups<'a> = Vec<(Option<String>, Vec<(&'a SystemEntry, Health)>)>;

/// Everything the page shows.
pub struct View<'a> {
    pub settings: &'a StatusSettings,
    /// The systems' catalogue (`announcements.systems`).
    pub catalogue: &'a [SystemEntry],
    pub now: i64,
    pub loaded_at: i64,
    pub failing_since: Option<i64>,
    pub systems: Groups<'a>,
    pub overall: Health,
    pub open: Vec<&'a OutageEntry>,
    pub in_progress: Vec<&'a Maintenance>,
    pub upcoming: Vec<&'a Maintenance>,
    pub history: Vec<HistoryItem<'a>>,
    /// Every outage and window the snapshot holds (the uptime bars' source).
    pub all_outages: &'a [OutageEntry],
    pub all_maintenances: &'a [Maintenance],
}

pub enum HistoryItem<'a> {
    Outage(&'a OutageEntry),
    Maintenance(&'a Maintenance),
}

impl HistoryItem<'_> {
    fn ended_at(&self) -> i64 {
        match self {
            HistoryItem::Outage(o) => o.resolved_at.unwrap_or(o.updated_at),
            HistoryItem::Maintenance(m) => m.ends_at,
        }
    }
}

impl<'a> View<'a> {
    pub fn new(
        settings: &'a StatusSettings,
        catalogue: &'a [SystemEntry],
        current: &'a Current,
        now: i64,
    ) -> View<'a> {
        let snap = &current.snapshot;
        let since = now - i64::from(settings.history_days) * 86_400_000;
        let open: Vec<&OutageEntry> = snap.outages.iter().filter(|o| o.state == "open").collect();
        let in_progress: Vec<&Maintenance> = snap
            .maintenances
            .iter()
            .filter(|m| m.phase(now) == Phase::InProgress)
            .collect();
        let upcoming: Vec<&Maintenance> = snap
            .maintenances
            .iter()
            .filter(|m| m.phase(now) == Phase::Upcoming)
            .collect();
        let mut history: Vec<HistoryItem> = snap
            .outages
            .iter()
            .filter(|o| o.state == "resolved" && o.resolved_at.is_some_and(|r| r >= since))
            .map(HistoryItem::Outage)
            .chain(
                snap.maintenances
                    .iter()
                    .filter(|m| m.phase(now) == Phase::Finished && m.ends_at >= since)
                    .map(HistoryItem::Maintenance),
            )
            .collect();
        history.sort_by_key(|h| std::cmp::Reverse(h.ended_at()));

        let health_of = |id: &str| {
            let outage = open
                .iter()
                .filter(|o| o.systems.iter().any(|s| s == id))
                .map(|o| Health::from_severity(&o.severity))
                .max();
            let maint = in_progress
                .iter()
                .any(|m| m.systems.iter().any(|s| s == id))
                .then_some(Health::Maintenance);
            outage.or(maint).unwrap_or(Health::Operational)
        };
        let mut systems: Groups = Vec::new();
        for s in catalogue {
            let h = health_of(&s.id);
            match systems.iter_mut().find(|(g, _)| *g == s.group) {
                Some((_, list)) => list.push((s, h)),
                None => systems.push((s.group.clone(), vec![(s, h)])),
            }
        }
        let overall = systems
            .iter()
            .flat_map(|(_, l)| l.iter().map(|(_, h)| *h))
            .chain(open.iter().map(|o| Health::from_severity(&o.severity)))
            .chain(in_progress.iter().map(|_| Health::Maintenance))
            .max()
            .unwrap_or(Health::Operational);
        View {
            settings,
            catalogue,
            now,
            loaded_at: snap.loaded_at,
            failing_since: current.failing_since,
            systems,
            overall,
            open,
            in_progress,
            upcoming,
            history,
            all_outages: &snap.outages,
            all_maintenances: &snap.maintenances,
        }
    }

    /// A system's uptime history over `status.uptime_days`.
    pub fn uptime(&self, system: &str) -> Uptime<'a> {
        uptime::compute(
            system,
            self.all_outages,
            self.all_maintenances,
            self.now,
            self.settings.uptime_days,
            self.settings.offset_secs().unwrap_or(0),
        )
    }

    fn age_secs(&self) -> i64 {
        ((self.now - self.loaded_at) / 1000).max(0)
    }

    /// Whether the page must say its data may be out of date.
    pub fn stale(&self) -> bool {
        self.failing_since.is_some() || self.age_secs() > self.settings.stale_after_secs as i64
    }

    fn system_name(&self, id: &str) -> String {
        self.catalogue
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    fn system_names(&self, ids: &[String]) -> String {
        ids.iter()
            .map(|i| self.system_name(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A time as people read it, in the configured zone.
    fn time(&self, ms: i64) -> String {
        let offset = self.settings.offset_secs().unwrap_or(0);
        chrono::DateTime::from_timestamp_millis(ms + i64::from(offset) * 1000)
            .map(|d| {
                format!(
                    "{} {}",
                    d.format("%a %Y-%m-%d %H:%M"),
                    self.settings.zone_label()
                )
            })
            .unwrap_or_default()
    }

    // ----------------------------------------------------------------------------------- JSON

    fn outage_json(&self, o: &OutageEntry) -> Value {
        json!({
            "id": o.id,
            "summary": o.summary,
            "severity": o.severity,
            "state": o.state,
            "systems": o.systems.iter().map(|s| json!({"id": s, "name": self.system_name(s)})).collect::<Vec<_>>(),
            "started_at": rfc3339(o.started_at),
            "resolved_at": o.resolved_at.map(rfc3339),
            "eta": o.eta,
            "updated_at": rfc3339(o.updated_at),
            "latest_update": o.latest_update.as_ref().map(|(at, text)| json!({"at": rfc3339(*at), "text": text})),
        })
    }

    fn maintenance_json(&self, m: &Maintenance) -> Value {
        json!({
            "id": m.id,
            "title": m.title,
            "summary": m.summary,
            "systems": m.systems.iter().map(|s| json!({"id": s, "name": self.system_name(s)})).collect::<Vec<_>>(),
            "starts_at": rfc3339(m.starts_at),
            "ends_at": rfc3339(m.ends_at),
            "phase": m.phase(self.now),
            "updated_at": rfc3339(m.updated_at),
        })
    }

    pub fn json(&self) -> Value {
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|h| match h {
                HistoryItem::Outage(o) => {
                    let mut v = self.outage_json(o);
                    v["type"] = json!("outage");
                    v
                }
                HistoryItem::Maintenance(m) => {
                    let mut v = self.maintenance_json(m);
                    v["type"] = json!("maintenance");
                    v
                }
            })
            .collect();
        json!({
            "title": self.settings.title,
            "generated_at": rfc3339(self.now),
            "overall": {"state": self.overall, "text": self.overall.overall_text()},
            "snapshot": {
                "loaded_at": rfc3339(self.loaded_at),
                "age_seconds": self.age_secs(),
                "stale": self.stale(),
                "refresh_failing_since": self.failing_since.map(rfc3339),
            },
            "groups": self.systems.iter().map(|(g, list)| json!({
                "name": g,
                "systems": list.iter().map(|(s, h)| json!({
                    "id": s.id, "name": s.name, "state": h, "text": h.text(),
                    "uptime": self.uptime_json(&s.id),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "outages": self.open.iter().map(|o| self.outage_json(o)).collect::<Vec<_>>(),
            "maintenance": {
                "in_progress": self.in_progress.iter().map(|m| self.maintenance_json(m)).collect::<Vec<_>>(),
                "upcoming": self.upcoming.iter().map(|m| self.maintenance_json(m)).collect::<Vec<_>>(),
            },
            "history_days": self.settings.history_days,
            "history": history,
            "uptime": {
                "days": self.settings.uptime_days,
                "time_zone": self.settings.zone_label(),
                "rule": uptime::RULE,
            },
        })
    }

    /// A system's uptime: the period's percentage and each day, oldest first.
    fn uptime_json(&self, system: &str) -> Value {
        let u = self.uptime(system);
        json!({
            "days": self.settings.uptime_days,
            "percent": u.percent(),
            "history": u.days.iter().map(|d| json!({
                "date": d.date.to_string(),
                "state": d.worst,
                "text": d.worst.text(),
                "uptime_percent": d.percent(),
                "label": self.day_label(d),
                "events": d.causes.iter().map(cause_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    // ----------------------------------------------------------------------------------- HTML

    fn stale_text(&self) -> String {
        let loaded = self.time(self.loaded_at);
        let age = human_duration(self.age_secs() * 1000);
        match self.failing_since {
            Some(_) => format!(
                "This page cannot reach its database right now. It shows the last information it \
                 has, from {loaded} ({age} ago), which may be out of date."
            ),
            None => format!(
                "This page was last refreshed at {loaded} ({age} ago); it may be out of date."
            ),
        }
    }

    pub fn html(&self) -> String {
        self.html_with("")
    }

    /// The page with `extra` (a rendered section: the subscribe form) after the history.
    pub fn html_with(&self, extra: &str) -> String {
        let mut h = String::with_capacity(8192 + extra.len());
        self.html_head(&mut h);
        self.incidents_section(&mut h);
        self.maintenance_section(&mut h);
        self.systems_section(&mut h);
        self.history_section(&mut h);
        h.push_str(extra);
        self.footer(&mut h);
        h
    }

    /// The document's head, the title, and the banners (out of date, overall state).
    fn html_head(&self, h: &mut String) {
        let title = esc(&self.settings.title);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<link rel=\"alternate\" type=\"application/atom+xml\" \
             href=\"/status/feed.atom\" title=\"{title}\">\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
             <h1>{title}</h1>\n"
        );
        if self.stale() {
            let _ = write!(
                h,
                "<p class=\"banner stale\" role=\"alert\" id=\"stale\">{}</p>\n",
                esc(&self.stale_text())
            );
        }
        let _ = write!(
            h,
            "<p class=\"banner {}\" id=\"overall\">{}</p>\n",
            self.overall.css(),
            esc(self.overall.overall_text())
        );
    }

    /// Current incidents, when there are any.
    fn incidents_section(&self, h: &mut String) {
        if !self.open.is_empty() {
            h.push_str("<section id=\"incidents\">\n<h2>Current incidents</h2>\n");
            for o in &self.open {
                let sev = Health::from_severity(&o.severity);
                let _ = write!(
                    h,
                    "<article class=\"card {}\">\n<h3>{}</h3>\n<p class=\"meta\"><span class=\"tag\">{}</span> \
                     Affects {} · since {}</p>\n",
                    sev.css(),
                    esc(&o.summary),
                    esc(sev.text()),
                    esc(&self.system_names(&o.systems)),
                    time_tag(o.started_at, &self.time(o.started_at)),
                );
                if let Some((at, text)) = &o.latest_update {
                    let _ = write!(
                        h,
                        "<p class=\"update\"><strong>Latest update</strong> ({}): {}</p>\n",
                        time_tag(*at, &self.time(*at)),
                        esc(text)
                    );
                }
                let _ = write!(
                    h,
                    "<p class=\"meta\">Expected resolution: {}</p>\n</article>\n",
                    esc(eta_text(&o.eta))
                );
            }
            h.push_str("</section>\n");
        }
    }

    /// Maintenance in progress and upcoming.
    fn maintenance_section(&self, h: &mut String) {
        h.push_str("<section id=\"maintenance\">\n<h2>Scheduled maintenance</h2>\n");
        if self.in_progress.is_empty() && self.upcoming.is_empty() {
            h.push_str("<p class=\"none\">No maintenance is scheduled.</p>\n");
        }
        for (m, label) in self
            .in_progress
            .iter()
            .map(|m| (m, "In progress"))
            .chain(self.upcoming.iter().map(|m| (m, "Upcoming")))
        {
            self.maintenance_card(h, m, label);
        }
        h.push_str("</section>\n");
    }

    /// Each system's state, by group, with its uptime bars.
    fn systems_section(&self, h: &mut String) {
        h.push_str("<section id=\"systems\">\n<h2>Systems</h2>\n");
        if self.systems.is_empty() {
            h.push_str("<p class=\"none\">No systems are configured.</p>\n");
        } else {
            let _ = write!(
                h,
                "<p class=\"rule\">Each bar is one day in {}, coloured by the system's worst state \
                 that day. {}</p>\n",
                esc(&self.settings.zone_label()),
                esc(uptime::RULE)
            );
        }
        for (group, list) in &self.systems {
            if let Some(g) = group {
                let _ = write!(h, "<h3>{}</h3>\n", esc(g));
            }
            h.push_str("<ul class=\"systems\">\n");
            for (s, health) in list {
                let _ = write!(
                    h,
                    "<li id=\"system-{}\"><div class=\"row\"><span class=\"name\">{}</span> \
                     <span class=\"state {}\">{}</span></div>\n",
                    esc(&s.id),
                    esc(&s.name),
                    health.css(),
                    esc(health.text())
                );
                self.uptime_bars(h, s);
                h.push_str("</li>\n");
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</section>\n");
    }

    /// One system's day bars (oldest first; narrow screens show the last 30) and its uptime.
    fn uptime_bars(&self, h: &mut String, s: &SystemEntry) {
        let u = self.uptime(&s.id);
        let n = self.settings.uptime_days;
        let _ = write!(
            h,
            "<ol class=\"bars\" aria-label=\"{}: the last {n} days, oldest first\">",
            esc(&s.name)
        );
        for d in &u.days {
            let label = esc(&self.day_label(d));
            let _ = write!(
                h,
                "<li class=\"{}\" title=\"{label}\" aria-label=\"{label}\"></li>",
                d.worst.css()
            );
        }
        let _ = write!(
            h,
            "</ol>\n<p class=\"uptime\"><span><span class=\"wide\">{n} days ago</span>\
             <span class=\"narrow\">{} days ago</span></span> <span class=\"pct\">{} uptime \
             over {n} days</span> <span>Today</span></p>\n",
            n.min(NARROW_DAYS),
            percent_text(u.percent()),
        );
    }

    /// What one day bar says, in its tooltip and to screen readers.
    fn day_label(&self, d: &Day) -> String {
        let mut t = format!("{}: {}", d.date.format("%a %Y-%m-%d"), d.worst.text());
        for c in &d.causes {
            match c {
                Cause::Outage(o) => {
                    let _ = write!(
                        t,
                        "; outage: {} ({})",
                        o.summary,
                        Health::from_severity(&o.severity).text().to_lowercase()
                    );
                }
                Cause::Maintenance(m) => {
                    let _ = write!(t, "; maintenance: {}", m.title);
                }
            }
        }
        if d.causes.is_empty() {
            t.push_str("; no outages");
        }
        let _ = write!(t, "; {} uptime", percent_text(d.percent()));
        t
    }

    /// Resolved outages and finished maintenance within the history.
    fn history_section(&self, h: &mut String) {
        let _ = write!(
            h,
            "<section id=\"history\">\n<h2>Past {} days</h2>\n",
            self.settings.history_days
        );
        if self.history.is_empty() {
            h.push_str("<p class=\"none\">Nothing to report.</p>\n");
        }
        for item in &self.history {
            match item {
                HistoryItem::Outage(o) => {
                    let end = o.resolved_at.unwrap_or(o.updated_at);
                    let _ = write!(
                        h,
                        "<article class=\"card past\">\n<h3>{}</h3>\n<p class=\"meta\"><span class=\"tag\">Resolved</span> \
                         {} · {} – {} ({})</p>\n",
                        esc(&o.summary),
                        esc(&self.system_names(&o.systems)),
                        time_tag(o.started_at, &self.time(o.started_at)),
                        time_tag(end, &self.time(end)),
                        esc(&human_duration(end - o.started_at)),
                    );
                    if let Some((at, text)) = &o.latest_update {
                        let _ = write!(
                            h,
                            "<p class=\"update\">{}: {}</p>\n",
                            time_tag(*at, &self.time(*at)),
                            esc(text)
                        );
                    }
                    h.push_str("</article>\n");
                }
                HistoryItem::Maintenance(m) => self.maintenance_card(h, m, "Completed maintenance"),
            }
        }
        h.push_str("</section>\n");
    }

    fn footer(&self, h: &mut String) {
        let _ = write!(
            h,
            "<footer>Updated {} · <a href=\"/status.json\">JSON</a> · <a href=\"/status/feed.atom\">Atom feed</a> · times in {}</footer>\n\
             </main>\n</body>\n</html>\n",
            time_tag(self.loaded_at, &self.time(self.loaded_at)),
            esc(&self.settings.zone_label())
        );
    }

    fn maintenance_card(&self, h: &mut String, m: &Maintenance, label: &str) {
        let class = if label == "Completed maintenance" {
            "past"
        } else {
            "maint"
        };
        let _ = write!(
            h,
            "<article class=\"card {class}\">\n<h3>{}</h3>\n<p class=\"meta\"><span class=\"tag\">{}</span> \
             {} · {} – {} ({})</p>\n",
            esc(&m.title),
            esc(label),
            esc(&self.system_names(&m.systems)),
            time_tag(m.starts_at, &self.time(m.starts_at)),
            time_tag(m.ends_at, &self.time(m.ends_at)),
            esc(&human_duration(m.ends_at - m.starts_at)),
        );
        if !m.summary.trim().is_empty() {
            let _ = write!(h, "<p>{}</p>\n", esc(&m.summary));
        }
        h.push_str("</article>\n");
    }

    // ----------------------------------------------------------------------------------- Atom

    /// The Atom feed; `base` is the page's absolute URL (`https://status.example.com/status`).
    pub fn atom(&self, base: &str) -> String {
        let entries = self.atom_entries();
        let updated = entries
            .iter()
            .map(|e| e.updated)
            .max()
            .unwrap_or(self.loaded_at);
        let mut x = String::with_capacity(4096);
        let _ = write!(
            x,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
             <title>{}</title>\n<id>{}</id>\n<updated>{}</updated>\n\
             <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n\
             <link rel=\"self\" type=\"application/atom+xml\" href=\"{}/feed.atom\"/>\n\
             <author><name>{}</name></author>\n",
            esc(&self.settings.title),
            esc(base),
            rfc3339(updated),
            esc(base),
            esc(base),
            esc(&self.settings.title),
        );
        for e in entries {
            let _ = write!(
                x,
                "<entry>\n<title>{}</title>\n<id>{}#{}</id>\n<updated>{}</updated>\n\
                 <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n<content type=\"text\">{}</content>\n</entry>\n",
                esc(&e.title),
                esc(base),
                esc(&e.id),
                rfc3339(e.updated),
                esc(base),
                esc(&e.content),
            );
        }
        x.push_str("</feed>\n");
        x
    }

    /// One feed entry per open outage, maintenance window (in progress, upcoming, finished) and
    /// resolved outage, in the page's order.
    fn atom_entries(&self) -> Vec<AtomEntry> {
        let mut entries: Vec<AtomEntry> = Vec::new();
        for o in &self.open {
            let mut content = format!(
                "{} ({}). Affects {}. Started {}. Expected resolution: {}.",
                o.summary,
                Health::from_severity(&o.severity).text(),
                self.system_names(&o.systems),
                self.time(o.started_at),
                eta_text(&o.eta)
            );
            if let Some((at, text)) = &o.latest_update {
                let _ = write!(content, " Latest update ({}): {text}", self.time(*at));
            }
            entries.push(AtomEntry {
                id: format!("outage:{}", o.id),
                title: format!("Outage: {}", o.summary),
                updated: o.updated_at,
                content,
            });
        }
        for (m, label) in self
            .in_progress
            .iter()
            .map(|m| (*m, "Maintenance in progress"))
            .chain(self.upcoming.iter().map(|m| (*m, "Scheduled maintenance")))
        {
            entries.push(AtomEntry {
                id: format!("maintenance:{}", m.id),
                title: format!("{label}: {}", m.title),
                updated: m.updated_at,
                content: format!(
                    "{}. Affects {}. From {} to {}.",
                    m.description(),
                    self.system_names(&m.systems),
                    self.time(m.starts_at),
                    self.time(m.ends_at)
                ),
            });
        }
        for item in &self.history {
            match item {
                HistoryItem::Outage(o) => {
                    let end = o.resolved_at.unwrap_or(o.updated_at);
                    entries.push(AtomEntry {
                        id: format!("outage:{}", o.id),
                        title: format!("Resolved: {}", o.summary),
                        updated: o.updated_at.max(end),
                        content: format!(
                            "{}. Affected {} from {} to {} ({}).{}",
                            o.summary,
                            self.system_names(&o.systems),
                            self.time(o.started_at),
                            self.time(end),
                            human_duration(end - o.started_at),
                            o.latest_update
                                .as_ref()
                                .map(|(_, t)| format!(" {t}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                HistoryItem::Maintenance(m) => entries.push(AtomEntry {
                    id: format!("maintenance:{}", m.id),
                    title: format!("Completed maintenance: {}", m.title),
                    updated: m.updated_at.max(m.ends_at),
                    content: format!(
                        "{}. Affected {} from {} to {}.",
                        m.description(),
                        self.system_names(&m.systems),
                        self.time(m.starts_at),
                        self.time(m.ends_at)
                    ),
                }),
            }
        }
        entries
    }
}

/// An outage or window that touched a day, as `/status.json` lists it.
fn cause_json(c: &Cause) -> Value {
    match c {
        Cause::Outage(o) => json!({
            "type": "outage",
            "id": o.id,
            "summary": o.summary,
            "severity": o.severity,
            "state": Health::from_severity(&o.severity),
        }),
        Cause::Maintenance(m) => json!({"type": "maintenance", "id": m.id, "title": m.title}),
    }
}

/// Day bars narrow screens show.
const NARROW_DAYS: u32 = 30;

/// `100%`, `99.95%`.
fn percent_text(p: f64) -> String {
    if p >= 100.0 {
        "100%".into()
    } else {
        format!("{p:.2}%")
    }
}

/// One entry of the Atom feed.
struct AtomEntry {
    id: String,
    title: String,
    updated: i64,
    content: String,
}

/// Escape text for HTML and XML, in content and in quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0; drop them.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A small page in the status page's style: `title` (escaped here), a heading (escaped here)
/// and `body` (HTML, escaped by the caller).
pub fn simple_page(title: &str, heading: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n{body}\
         </main>\n</body>\n</html>\n",
        esc(heading),
        esc(title),
        esc(heading),
    )
}

fn time_tag(ms: i64, shown: &str) -> String {
    format!("<time datetime=\"{}\">{}</time>", rfc3339(ms), esc(shown))
}

/// `2 h 5 min`, `45 min`, `30 s`.
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

const CSS: &str = "\
:root{color-scheme:light dark;--ok:#1a7f37;--maint:#0969da;--minor:#9a6700;--major:#bc4c00;--critical:#cf222e}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:Canvas;color:CanvasText}\
main{max-width:46rem;margin:0 auto;padding:1rem}\
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}h3{font-size:1rem;margin:.25rem 0}\
.banner{padding:.75rem 1rem;border-radius:.5rem;color:#fff;font-weight:600;margin:.5rem 0}\
.banner.ok{background:var(--ok)}.banner.maint{background:var(--maint)}.banner.minor{background:var(--minor)}\
.banner.major{background:var(--major)}.banner.critical{background:var(--critical)}\
.banner.stale{background:#fff8c5;color:#3b2300;font-weight:400;border:1px solid #d4a72c}\
.card{border:1px solid #8884;border-left:.35rem solid #888;border-radius:.4rem;padding:.5rem .75rem;margin:.5rem 0;overflow-wrap:anywhere}\
.card.critical{border-left-color:var(--critical)}.card.major{border-left-color:var(--major)}\
.card.minor{border-left-color:var(--minor)}.card.maint{border-left-color:var(--maint)}.card.past{border-left-color:#888}\
.card p{margin:.25rem 0}.meta{font-size:.9rem;opacity:.85}.tag{font-weight:600}\
ul.systems{list-style:none;padding:0;margin:0}\
ul.systems>li{padding:.5rem 0;border-bottom:1px solid #8883}\
.row{display:flex;justify-content:space-between;gap:1rem;flex-wrap:wrap}\
ol.bars{display:flex;gap:1px;list-style:none;padding:0;margin:.4rem 0 .1rem;height:2rem}\
ol.bars li{flex:1 1 0;min-width:2px;border-radius:1px;background:var(--ok)}\
ol.bars li.maint{background:var(--maint)}ol.bars li.minor{background:var(--minor)}\
ol.bars li.major{background:var(--major)}ol.bars li.critical{background:var(--critical)}\
.uptime{display:flex;justify-content:space-between;gap:.5rem;font-size:.8rem;opacity:.85;margin:0}\
.rule{font-size:.85rem;opacity:.85}.narrow{display:none}\
@media (max-width:40rem){ol.bars li:nth-last-child(n+31){display:none}.wide{display:none}.narrow{display:inline}}\
.state{font-weight:600}.state.ok{color:var(--ok)}.state.maint{color:var(--maint)}.state.minor{color:var(--minor)}\
.state.major{color:var(--major)}.state.critical{color:var(--critical)}\
.none{opacity:.8}footer{margin:2rem 0 1rem;font-size:.85rem;opacity:.8}a{color:inherit}\
form.subscribe input[type=email]{font:inherit;width:100%;max-width:24rem;box-sizing:border-box;padding:.4rem}\
form.subscribe fieldset{border:1px solid #8884;border-radius:.4rem;margin:.5rem 0}\
label.sys{display:inline-block;margin:.15rem 1rem .15rem 0}\
button{font:inherit;padding:.4rem 1rem}.error{color:var(--critical);font-weight:600}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(30_000), "30 s");
        assert_eq!(human_duration(45 * 60_000), "45 min");
        assert_eq!(human_duration(2 * 3_600_000), "2 h");
        assert_eq!(human_duration(125 * 60_000), "2 h 5 min");
        assert_eq!(human_duration(26 * 3_600_000), "1 d 2 h");
    }
}
