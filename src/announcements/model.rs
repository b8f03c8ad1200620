//! What an outage is, how its fields are checked, and how it is read from the store.
//!
//! [`Fields`] is the part people edit (from the modal or the API); [`validate`] is the one check
//! both paths run, and it names each bad field the way the modal's block ids and the API's JSON
//! keys name them (`summary`, `systems`, `impact.<audience>`, …), so an error lands on the right
//! input in Slack and in the right `field` of a 400. Nothing here writes: every change goes
//! through [`super::changes`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::announcements::settings::AnnouncementsSettings;
use crate::slack::blocks::mention;

pub const OPEN: &str = "open";
pub const RESOLVED: &str = "resolved";

/// ETA choices: id, label, and how long from when it was set (`None`: unknown).
pub const ETAS: &[(&str, &str, Option<i64>)] = &[
    ("30m", "under 30 min", Some(30 * 60_000)),
    ("2h", "under 2 h", Some(2 * 3_600_000)),
    ("8h", "under 8 h", Some(8 * 3_600_000)),
    ("24h", "under 24 h", Some(24 * 3_600_000)),
    ("unknown", "unknown", None),
];

/// Impact answers.
pub const AFFECTED: &[(&str, &str)] = &[("yes", "Yes"), ("no", "No"), ("unknown", "Unknown")];

pub const SUMMARY_MAX: usize = 3000;
pub const DETAILS_MAX: usize = 500;
pub const REASON_MAX: usize = 1000;

pub fn eta_label(eta: &str) -> &str {
    ETAS.iter()
        .find(|(id, _, _)| *id == eta)
        .map(|(_, l, _)| *l)
        .unwrap_or(eta)
}

pub fn eta_duration(eta: &str) -> Option<i64> {
    ETAS.iter().find(|(id, _, _)| *id == eta).and_then(|e| e.2)
}

/// One audience's impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Impact {
    /// `yes`, `no` or `unknown`.
    #[schema(schema_with = affected_schema)]
    pub affected: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub details: String,
}

impl Default for Impact {
    fn default() -> Self {
        Self {
            affected: "unknown".into(),
            details: String::new(),
        }
    }
}

fn affected_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(AFFECTED.iter().map(|(id, _)| *id)))
        .build()
}

/// How an outage was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
pub struct Resolution {
    pub summary: String,
    pub postmortem: bool,
    #[serde(default)]
    pub report_url: Option<String>,
    pub resolved_by: String,
    /// The postmortem's summary, given with its report link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmortem_summary: Option<String>,
}

/// What people edit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    pub summary: String,
    pub systems: Vec<String>,
    pub impact: BTreeMap<String, Impact>,
    pub severity: String,
    pub eta: String,
    pub resolution_assignee: String,
    pub communication_assignee: String,
    pub public: bool,
}

/// An outage as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub id: String,
    pub fields: Fields,
    pub eta_set_at: i64,
    pub state: String,
    pub announced_by: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<Resolution>,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub permalink: Option<String>,
    pub incident_channel: Option<String>,
    pub last_update_at: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub eta_snoozed_until: Option<i64>,
}

impl Outage {
    pub fn is_open(&self) -> bool {
        self.state == OPEN
    }
    /// When the ETA runs out, if it is known.
    pub fn eta_deadline(&self) -> Option<i64> {
        eta_duration(&self.fields.eta).map(|d| self.eta_set_at + d)
    }
    /// People who may always change it, besides the editors.
    pub fn owners(&self) -> [&str; 3] {
        [
            &self.announced_by,
            &self.fields.resolution_assignee,
            &self.fields.communication_assignee,
        ]
    }
    /// The assignees, each once.
    pub fn assignees(&self) -> Vec<String> {
        let mut v = vec![self.fields.resolution_assignee.clone()];
        if self.fields.communication_assignee != self.fields.resolution_assignee {
            v.push(self.fields.communication_assignee.clone());
        }
        v
    }

    /// The outage as the API (and webhook events) show it.
    pub fn view(&self) -> OutageView {
        OutageView {
            id: self.id.clone(),
            summary: self.fields.summary.clone(),
            systems: self.fields.systems.clone(),
            impact: self.fields.impact.clone(),
            severity: self.fields.severity.clone(),
            eta: self.fields.eta.clone(),
            eta_deadline: self.eta_deadline(),
            resolution_assignee: self.fields.resolution_assignee.clone(),
            communication_assignee: self.fields.communication_assignee.clone(),
            public: self.fields.public,
            state: self.state.clone(),
            announced_by: self.announced_by.clone(),
            started_at: self.started_at,
            resolved_at: self.resolved_at,
            resolution: self.resolution.clone(),
            channel: self.channel.clone(),
            permalink: self.permalink.clone(),
            incident_channel: self.incident_channel.clone(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }
}

/// An outage as the API and webhook events show it. Times are milliseconds since the epoch.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Outage)]
pub struct OutageView {
    pub id: String,
    pub summary: String,
    /// Ids from `announcements.systems`.
    pub systems: Vec<String>,
    /// By audience (`announcements.audiences`).
    pub impact: BTreeMap<String, Impact>,
    /// One of `announcements.severities`.
    pub severity: String,
    #[schema(schema_with = eta_schema)]
    pub eta: String,
    /// When the ETA runs out; null when it is `unknown`.
    pub eta_deadline: Option<i64>,
    /// A Slack user id.
    pub resolution_assignee: String,
    /// A Slack user id.
    pub communication_assignee: String,
    /// Shown on the public status page.
    pub public: bool,
    #[schema(schema_with = state_schema)]
    pub state: String,
    /// A Slack user id, or `api:<by>` when announced through the API.
    pub announced_by: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<Resolution>,
    /// The channel of the announcement message (null until it is posted).
    pub channel: Option<String>,
    pub permalink: Option<String>,
    pub incident_channel: Option<String>,
    /// Moves on with every change; send it back in a PATCH to refuse a stale write (409).
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The ETA choices, as the API takes and shows them.
pub fn eta_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(ETAS.iter().map(|(id, _, _)| *id)))
        .build()
}

/// `open` or `resolved`.
pub fn state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some([OPEN, RESOLVED]))
        .build()
}

/// The stored row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutageRow {
    pub id: String,
    pub summary: String,
    pub systems: String,
    pub impact: String,
    pub severity: String,
    pub eta: String,
    pub eta_set_at: i64,
    pub resolution_assignee: String,
    pub communication_assignee: String,
    pub public: i64,
    pub state: String,
    pub announced_by: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub permalink: Option<String>,
    pub incident_channel: Option<String>,
    pub last_update_at: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub eta_snoozed_until: Option<i64>,
}

pub const COLUMNS: &str = "id, summary, systems, impact, severity, eta, eta_set_at, \
    resolution_assignee, communication_assignee, public, state, announced_by, started_at, \
    resolved_at, resolution, channel, message_ts, permalink, incident_channel, last_update_at, \
    version, created_at, updated_at, eta_snoozed_until";

impl From<OutageRow> for Outage {
    fn from(r: OutageRow) -> Self {
        Outage {
            fields: Fields {
                summary: r.summary,
                systems: serde_json::from_str(&r.systems).unwrap_or_default(),
                impact: serde_json::from_str(&r.impact).unwrap_or_default(),
                severity: r.severity,
                eta: r.eta,
                resolution_assignee: r.resolution_assignee,
                communication_assignee: r.communication_assignee,
                public: r.public != 0,
            },
            id: r.id,
            eta_set_at: r.eta_set_at,
            state: r.state,
            announced_by: r.announced_by,
            started_at: r.started_at,
            resolved_at: r.resolved_at,
            resolution: r
                .resolution
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            channel: r.channel,
            message_ts: r.message_ts,
            permalink: r.permalink,
            incident_channel: r.incident_channel,
            last_update_at: r.last_update_at,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            eta_snoozed_until: r.eta_snoozed_until,
        }
    }
}

/// One row of the append-only history.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct HistoryRow {
    pub id: String,
    pub outage_id: String,
    pub seq: i64,
    pub at: i64,
    pub by_user: String,
    pub kind: String,
    pub changes: String,
    pub reason: Option<String>,
}

impl HistoryRow {
    pub fn changes(&self) -> Vec<FieldChange> {
        serde_json::from_str(&self.changes).unwrap_or_default()
    }
    pub fn view(&self) -> HistoryEntry {
        HistoryEntry {
            seq: self.seq,
            at: self.at,
            by: self.by_user.clone(),
            kind: self.kind.clone(),
            changes: self.changes(),
            reason: self.reason.clone(),
        }
    }
}

/// One entry of an outage's history (never rewritten).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// A Slack user id or `api:<by>`.
    pub by: String,
    /// `announced`, `updated`, `reassigned`, `resolved`, `reopened`, …
    pub kind: String,
    pub changes: Vec<FieldChange>,
    pub reason: Option<String>,
}

/// One changed field, with both values as people read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub label: String,
    pub from: String,
    pub to: String,
}

pub async fn load(pool: &sqlx::AnyPool, id: &str) -> Result<Option<Outage>, sqlx::Error> {
    let row: Option<OutageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outages WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Outage::from))
}

/// Outages, newest first; `state` filters.
pub async fn list(
    pool: &sqlx::AnyPool,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<Outage>, sqlx::Error> {
    let rows: Vec<OutageRow> = match state {
        Some(s) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM outages WHERE state = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
            )))
            .bind(s)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM outages ORDER BY started_at DESC, id DESC LIMIT $1"
            )))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(Outage::from).collect())
}

pub async fn history(pool: &sqlx::AnyPool, id: &str) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, outage_id, seq, at, by_user, kind, changes, reason
         FROM outage_history WHERE outage_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

pub async fn history_entry(
    pool: &sqlx::AnyPool,
    id: &str,
    seq: i64,
) -> Result<Option<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, outage_id, seq, at, by_user, kind, changes, reason
         FROM outage_history WHERE outage_id = $1 AND seq = $2",
    )
    .bind(id)
    .bind(seq)
    .fetch_optional(pool)
    .await
}

/// Systems of the catalogue, those matching `filter` (by id or name, case-insensitively) first,
/// prefix matches before other matches; the catalogue's order is kept otherwise.
pub fn rank_systems<'a>(
    settings: &'a AnnouncementsSettings,
    filter: &str,
) -> Vec<&'a crate::announcements::settings::SystemEntry> {
    let f = filter.trim().to_lowercase();
    let score = |s: &crate::announcements::settings::SystemEntry| -> u8 {
        if f.is_empty() {
            return 2;
        }
        let (id, name) = (s.id.to_lowercase(), s.name.to_lowercase());
        if id == f || name == f {
            0
        } else if id.starts_with(&f) || name.starts_with(&f) {
            1
        } else if id.contains(&f) || name.contains(&f) {
            2
        } else {
            3
        }
    };
    let mut v: Vec<_> = settings.systems.iter().collect();
    v.sort_by_key(|s| score(s));
    v
}

/// How a field is named to people.
pub fn label(settings: &AnnouncementsSettings, field: &str) -> String {
    if let Some(a) = field.strip_prefix("impact.") {
        let name = settings
            .audiences
            .iter()
            .find(|x| x.id == a)
            .map(|x| x.name.as_str())
            .unwrap_or(a);
        return format!("Impact on {name}");
    }
    match field {
        "summary" => "Summary",
        "systems" => "Affected systems",
        "severity" => "Severity",
        "eta" => "ETA",
        "resolution_assignee" => "Resolution assignee",
        "communication_assignee" => "Communication assignee",
        "public" => "Public status page",
        "state" => "State",
        "resolution" => "Resolution",
        "resolved_at" => "Resolved at",
        "postmortem" => "Postmortem",
        "report_url" => "Report",
        "postmortem_summary" => "Postmortem summary",
        "incident_channel" => "Incident channel",
        other => other,
    }
    .to_string()
}

pub fn system_names(settings: &AnnouncementsSettings, ids: &[String]) -> String {
    ids.iter()
        .map(|id| {
            settings
                .systems
                .iter()
                .find(|s| &s.id == id)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| id.clone())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn impact_text(i: &Impact) -> String {
    let a = AFFECTED
        .iter()
        .find(|(id, _)| *id == i.affected)
        .map(|(_, l)| *l)
        .unwrap_or(&i.affected);
    if i.details.trim().is_empty() {
        a.to_string()
    } else {
        format!("{a}: {}", i.details.trim())
    }
}

/// What changed between two versions of the fields, each field once, in the form's order.
pub fn diff(settings: &AnnouncementsSettings, old: &Fields, new: &Fields) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, from: String, to: String| {
        if from != to {
            out.push(FieldChange {
                field: field.into(),
                label: label(settings, field),
                from,
                to,
            });
        }
    };
    push("summary", old.summary.clone(), new.summary.clone());
    push(
        "systems",
        system_names(settings, &old.systems),
        system_names(settings, &new.systems),
    );
    let audiences: std::collections::BTreeSet<&String> =
        old.impact.keys().chain(new.impact.keys()).collect();
    for a in audiences {
        let o = old.impact.get(a).cloned().unwrap_or_default();
        let n = new.impact.get(a).cloned().unwrap_or_default();
        push(&format!("impact.{a}"), impact_text(&o), impact_text(&n));
    }
    push("severity", old.severity.clone(), new.severity.clone());
    push(
        "eta",
        eta_label(&old.eta).into(),
        eta_label(&new.eta).into(),
    );
    push(
        "resolution_assignee",
        mention(&old.resolution_assignee).into_string(),
        mention(&new.resolution_assignee).into_string(),
    );
    push(
        "communication_assignee",
        mention(&old.communication_assignee).into_string(),
        mention(&new.communication_assignee).into_string(),
    );
    push("public", yes_no(old.public), yes_no(new.public));
    out
}

pub fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn is_user_id(s: &str) -> bool {
    s.len() >= 3
        && (s.starts_with('U') || s.starts_with('W'))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Fill in audiences the fields do not mention (as unknown) so every configured audience has an
/// answer.
pub fn complete_impact(settings: &AnnouncementsSettings, f: &mut Fields) {
    for a in &settings.audiences {
        f.impact.entry(a.id.clone()).or_default();
    }
}

/// Every problem with `f`, as (field, message). Empty when valid.
pub fn validate(settings: &AnnouncementsSettings, f: &Fields) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = Vec::new();
    let summary = f.summary.trim();
    if summary.is_empty() {
        e.push(("summary".into(), "Say what is broken and for whom.".into()));
    } else if summary.chars().count() > SUMMARY_MAX {
        e.push((
            "summary".into(),
            format!("At most {SUMMARY_MAX} characters."),
        ));
    }
    if f.systems.is_empty() {
        e.push(("systems".into(), "Choose at least one system.".into()));
    } else if let Some(bad) = f
        .systems
        .iter()
        .find(|s| !settings.systems.iter().any(|x| &x.id == *s))
    {
        e.push((
            "systems".into(),
            format!(
                "{bad:?} is not in the catalogue; use one of {}.",
                settings
                    .systems
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    e.extend(impact_problems(settings, f));
    if !settings.severities.contains(&f.severity) {
        e.push((
            "severity".into(),
            format!("Choose one of {}.", settings.severities.join(", ")),
        ));
    }
    if !ETAS.iter().any(|(id, _, _)| *id == f.eta) {
        e.push((
            "eta".into(),
            format!(
                "Choose one of {}.",
                ETAS.iter().map(|x| x.0).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    for (k, v) in [
        ("resolution_assignee", &f.resolution_assignee),
        ("communication_assignee", &f.communication_assignee),
    ] {
        if !is_user_id(v) {
            e.push((k.into(), "Choose a person (a Slack user ID).".into()));
        }
    }
    e
}

/// Each audience's impact: a configured audience, answered yes, no or unknown, with details
/// within bounds.
fn impact_problems(settings: &AnnouncementsSettings, f: &Fields) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = Vec::new();
    for (a, i) in &f.impact {
        if !settings.audiences.iter().any(|x| &x.id == a) {
            e.push((
                format!("impact.{a}"),
                format!(
                    "{a:?} is not a configured audience; use one of {}.",
                    settings
                        .audiences
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        }
        if !AFFECTED.iter().any(|(id, _)| *id == i.affected) {
            e.push((format!("impact.{a}"), "Choose yes, no or unknown.".into()));
        }
        if i.details.chars().count() > DETAILS_MAX {
            e.push((
                format!("impact.{a}.details"),
                format!("At most {DETAILS_MAX} characters."),
            ));
        }
    }
    e
}

/// A report link must be an http(s) URL.
pub fn valid_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// `days` working days (Monday to Friday) after `from_ms`, at the same time of day (UTC): the
/// postmortem's due date. A start on a weekend counts from the next Monday.
pub fn working_days_after(from_ms: i64, days: u64) -> i64 {
    use chrono::Datelike;
    let Some(mut t) = chrono::DateTime::from_timestamp_millis(from_ms) else {
        return from_ms;
    };
    let weekend = |d: &chrono::DateTime<chrono::Utc>| d.weekday().number_from_monday() > 5;
    while weekend(&t) {
        t += chrono::Duration::days(1);
    }
    let mut left = days;
    while left > 0 {
        t += chrono::Duration::days(1);
        if !weekend(&t) {
            left -= 1;
        }
    }
    t.timestamp_millis()
}

/// `1d 2h 5m`.
pub fn duration_text(ms: i64) -> String {
    let mins = (ms.max(0) + 30_000) / 60_000;
    let (d, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 || parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announcements::settings::{AudienceEntry, SystemEntry};

    fn settings() -> AnnouncementsSettings {
        AnnouncementsSettings {
            systems: vec![
                SystemEntry {
                    id: "search".into(),
                    name: "Search".into(),
                    group: None,
                },
                SystemEntry {
                    id: "payments".into(),
                    name: "Payments".into(),
                    group: None,
                },
                SystemEntry {
                    id: "pay-api".into(),
                    name: "Pay API".into(),
                    group: None,
                },
            ],
            audiences: vec![AudienceEntry {
                id: "sales".into(),
                name: "Sales".into(),
                channel: Some("C1".into()),
            }],
            ..Default::default()
        }
    }

    fn fields() -> Fields {
        Fields {
            summary: "Checkout fails".into(),
            systems: vec!["payments".into()],
            impact: [("sales".to_string(), Impact::default())].into(),
            severity: "major".into(),
            eta: "2h".into(),
            resolution_assignee: "U0A".into(),
            communication_assignee: "U0B".into(),
            public: false,
        }
    }

    #[test]
    fn the_filter_ranks_matching_systems_first() {
        let s = settings();
        let ids: Vec<_> = rank_systems(&s, "pay")
            .iter()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(ids, vec!["payments", "pay-api", "search"]);
        let ids: Vec<_> = rank_systems(&s, "").iter().map(|x| x.id.clone()).collect();
        assert_eq!(ids, vec!["search", "payments", "pay-api"]);
    }

    #[test]
    fn validation_names_each_bad_field() {
        let s = settings();
        assert!(validate(&s, &fields()).is_empty());
        let mut f = fields();
        f.summary = "  ".into();
        f.systems = vec!["nope".into()];
        f.severity = "meh".into();
        f.eta = "3h".into();
        f.resolution_assignee = String::new();
        f.impact.insert(
            "sales".into(),
            Impact {
                affected: "maybe".into(),
                details: String::new(),
            },
        );
        let names: Vec<_> = validate(&s, &f).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            vec![
                "summary",
                "systems",
                "impact.sales",
                "severity",
                "eta",
                "resolution_assignee"
            ]
        );
    }

    #[test]
    fn diff_lists_exactly_the_changed_fields() {
        let s = settings();
        let old = fields();
        let mut new = fields();
        new.eta = "8h".into();
        new.severity = "critical".into();
        let d = diff(&s, &old, &new);
        assert_eq!(
            d.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
            vec!["severity", "eta"]
        );
        assert_eq!(d[1].from, "under 2 h");
        assert_eq!(d[1].to, "under 8 h");
        assert!(diff(&s, &old, &old).is_empty());
    }

    #[test]
    fn configuration_problems_name_their_keys() {
        let mut s = settings();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        s.systems.push(s.systems[0].clone());
        s.audiences[0].id = "Sales Team".into();
        s.severities.clear();
        s.reaction_emoji = ":point_up:".into();
        s.snooze_mins = 0;
        let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "announcements.systems[3].id",
                "announcements.audiences[0].id",
                "announcements.severities",
                "announcements.reaction_emoji",
                "announcements.snooze_mins",
            ]
        );
    }

    #[test]
    fn postmortems_are_due_in_working_days() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // Wednesday + 5 working days = next Wednesday.
        assert_eq!(
            working_days_after(at("2026-12-02T10:00:00Z"), 5),
            at("2026-12-09T10:00:00Z")
        );
        // Friday + 1 = Monday; Friday + 5 = next Friday.
        assert_eq!(
            working_days_after(at("2026-12-04T16:00:00Z"), 1),
            at("2026-12-07T16:00:00Z")
        );
        assert_eq!(
            working_days_after(at("2026-12-04T16:00:00Z"), 5),
            at("2026-12-11T16:00:00Z")
        );
        // Resolved on a Saturday: counted from Monday.
        assert_eq!(
            working_days_after(at("2026-12-05T09:00:00Z"), 2),
            at("2026-12-09T09:00:00Z")
        );
        assert_eq!(
            working_days_after(at("2026-12-05T09:00:00Z"), 0),
            at("2026-12-07T09:00:00Z")
        );
    }

    #[test]
    fn durations_read_like_phoenix() {
        assert_eq!(duration_text(0), "0m");
        assert_eq!(duration_text(65 * 60_000), "1h 5m");
        assert_eq!(duration_text(26 * 3_600_000 + 5 * 60_000), "1d 2h 5m");
    }
}
