//! Maintenance windows: the row, the one validation shared by the modal and the API, and the
//! queries. Whether a window is upcoming, in progress or finished is never stored: it follows
//! from the clock, so every replica and the status page agree without anyone acting.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::settings::MaintenanceSettings;
use crate::announcements::settings::SystemEntry;
use crate::store::Db;

pub const SCHEDULED: &str = "scheduled";
pub const CANCELED: &str = "canceled";

pub const TITLE_MAX: usize = 150;
pub const SUMMARY_MAX: usize = 3000;
/// A start this little in the past still counts as "now" (pickers have minute precision).
pub const PAST_SLACK_MS: i64 = 5 * 60 * 1000;

/// One window as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub systems: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub public: bool,
    pub state: String,
    pub created_by: String,
    pub canceled_at: Option<i64>,
    pub announced_start: bool,
    pub announced_end: bool,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: String,
    title: String,
    summary: String,
    systems: String,
    starts_at: i64,
    ends_at: i64,
    public: i64,
    state: String,
    created_by: String,
    canceled_at: Option<i64>,
    announced_start: i64,
    announced_end: i64,
    channel: Option<String>,
    message_ts: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<Row> for Maintenance {
    fn from(r: Row) -> Self {
        Maintenance {
            id: r.id,
            title: r.title,
            summary: r.summary,
            systems: serde_json::from_str(&r.systems).unwrap_or_default(),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            public: r.public != 0,
            state: r.state,
            created_by: r.created_by,
            canceled_at: r.canceled_at,
            announced_start: r.announced_start != 0,
            announced_end: r.announced_end != 0,
            channel: r.channel,
            message_ts: r.message_ts,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const COLUMNS: &str = "id, title, summary, systems, starts_at, ends_at, public, state, created_by, \
     canceled_at, announced_start, announced_end, channel, message_ts, version, created_at, updated_at";

/// Where a window stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Upcoming,
    InProgress,
    Finished,
    Canceled,
}

impl Maintenance {
    /// What the window is about: its summary, or its title when it has none.
    pub fn description(&self) -> &str {
        if self.summary.trim().is_empty() {
            &self.title
        } else {
            &self.summary
        }
    }

    pub fn phase(&self, now: i64) -> Phase {
        if self.state == CANCELED {
            Phase::Canceled
        } else if now < self.starts_at {
            Phase::Upcoming
        } else if now < self.ends_at {
            Phase::InProgress
        } else {
            Phase::Finished
        }
    }

    /// The window as the API, webhooks and the status JSON show it.
    pub fn view(&self, now: i64) -> MaintenanceView {
        MaintenanceView {
            id: self.id.clone(),
            title: self.title.clone(),
            summary: self.summary.clone(),
            systems: self.systems.clone(),
            starts_at: rfc3339(self.starts_at),
            ends_at: rfc3339(self.ends_at),
            public: self.public,
            state: self.state.clone(),
            phase: self.phase(now),
            created_by: self.created_by.clone(),
            canceled_at: self.canceled_at.map(rfc3339),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            version: self.version,
        }
    }

    pub fn to_json(&self, now: i64) -> Value {
        serde_json::to_value(self.view(now)).unwrap_or(Value::Null)
    }
}

/// A maintenance window as the API and webhook events show it. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Maintenance)]
pub struct MaintenanceView {
    pub id: String,
    pub title: String,
    pub summary: String,
    /// Ids from `announcements.systems`.
    pub systems: Vec<String>,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// Shown on the public status page.
    pub public: bool,
    /// `scheduled` or `canceled`.
    pub state: String,
    /// Where the window stands now.
    pub phase: Phase,
    /// A Slack user id, or `api`.
    pub created_by: String,
    #[schema(format = DateTime)]
    pub canceled_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub version: i64,
}

/// Milliseconds as RFC 3339 in UTC (`2026-11-21T18:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What a person or a tool asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub title: String,
    pub summary: String,
    pub systems: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub public: bool,
}

/// A problem with one field of a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn fe(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Check a draft: for a new window (`existing` is `None`) or a change to `existing`. Returns every
/// problem, each naming its field (`title`, `summary`, `systems`, `starts_at`, `ends_at`).
pub fn validate(
    settings: &MaintenanceSettings,
    catalogue: &[SystemEntry],
    draft: &Draft,
    now: i64,
    existing: Option<&Maintenance>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let title = draft.title.trim();
    if title.is_empty() {
        errors.push(fe("title", "required: what is being maintained"));
    } else if title.chars().count() > TITLE_MAX {
        errors.push(fe("title", format!("at most {TITLE_MAX} characters")));
    }
    if draft.summary.chars().count() > SUMMARY_MAX {
        errors.push(fe("summary", format!("at most {SUMMARY_MAX} characters")));
    }
    if draft.systems.is_empty() && !catalogue.is_empty() {
        errors.push(fe("systems", "choose at least one system"));
    }
    let unknown: Vec<&str> = draft
        .systems
        .iter()
        .filter(|s| !catalogue.iter().any(|c| &c.id == *s))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        errors.push(fe(
            "systems",
            format!(
                "unknown system(s) {}; the catalogue has {}",
                unknown.join(", "),
                if catalogue.is_empty() {
                    "none (announcements.systems)".to_string()
                } else {
                    catalogue
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    let m = settings;
    let started = existing.is_some_and(|e| e.phase(now) != Phase::Upcoming || e.announced_start);
    match existing {
        Some(e) if started && draft.starts_at != e.starts_at => errors.push(fe(
            "starts_at",
            "the window has already started; its start cannot change",
        )),
        Some(e) if draft.starts_at == e.starts_at => {}
        _ if draft.starts_at < now - PAST_SLACK_MS => {
            errors.push(fe("starts_at", "is in the past"))
        }
        _ if draft.starts_at > now + (m.max_ahead_days as i64) * 86_400_000 => errors.push(fe(
            "starts_at",
            format!("is more than {} days ahead", m.max_ahead_days),
        )),
        _ => {}
    }
    if draft.ends_at <= draft.starts_at {
        errors.push(fe("ends_at", "must be after the start"));
    } else if draft.ends_at <= now {
        errors.push(fe("ends_at", "is in the past"));
    } else if draft.ends_at - draft.starts_at > (m.max_duration_hours as i64) * 3_600_000 {
        errors.push(fe(
            "ends_at",
            format!(
                "the window may last at most {} hours (maintenance.max_duration_hours)",
                m.max_duration_hours
            ),
        ));
    }
    errors
}

impl Db {
    pub async fn maintenance(&self, id: &str) -> Result<Option<Maintenance>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM maintenances WHERE id = $1");
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(Maintenance::from))
    }

    /// Windows not canceled that end after `since`, earliest start first (the status page's).
    pub async fn maintenances_ending_after(
        &self,
        since: i64,
        public_only: bool,
        limit: i64,
    ) -> Result<Vec<Maintenance>, sqlx::Error> {
        let public = if public_only { " AND public = 1" } else { "" };
        let sql = format!(
            "SELECT {COLUMNS} FROM maintenances WHERE ends_at > $1 AND state = 'scheduled'{public}
             ORDER BY starts_at, id LIMIT $2"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(Maintenance::from).collect())
    }

    /// The most recently created windows, canceled ones included (the API's list).
    pub async fn maintenances_recent(&self, limit: i64) -> Result<Vec<Maintenance>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM maintenances ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(Maintenance::from).collect())
    }

    /// Windows whose start (`start = true`) or end is due and not yet announced.
    pub async fn maintenances_due(
        &self,
        now: i64,
        start: bool,
    ) -> Result<Vec<Maintenance>, sqlx::Error> {
        let cond = if start {
            "announced_start = 0 AND starts_at <= $1"
        } else {
            "announced_end = 0 AND ends_at <= $1"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM maintenances WHERE state = 'scheduled' AND {cond}
             ORDER BY starts_at LIMIT 100"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(Maintenance::from).collect())
    }
}

/// Insert a new window.
pub async fn insert(conn: &mut sqlx::AnyConnection, m: &Maintenance) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO maintenances (id, title, summary, systems, starts_at, ends_at, public, state,
             created_by, canceled_at, announced_start, announced_end, channel, message_ts, version,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 0, 0, NULL, NULL, 1, $10, $10)",
    )
    .bind(&m.id)
    .bind(&m.title)
    .bind(&m.summary)
    .bind(serde_json::to_string(&m.systems).unwrap_or_else(|_| "[]".into()))
    .bind(m.starts_at)
    .bind(m.ends_at)
    .bind(i64::from(m.public))
    .bind(SCHEDULED)
    .bind(&m.created_by)
    .bind(m.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Apply a change to a window at `version`. False when someone changed it first, or it was
/// canceled or has ended meanwhile.
pub async fn update(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    version: i64,
    d: &Draft,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE maintenances SET title = $1, summary = $2, systems = $3, starts_at = $4,
                ends_at = $5, public = $6, version = version + 1, updated_at = $7
         WHERE id = $8 AND version = $9 AND state = 'scheduled' AND announced_end = 0",
    )
    .bind(d.title.trim())
    .bind(d.summary.trim())
    .bind(serde_json::to_string(&d.systems).unwrap_or_else(|_| "[]".into()))
    .bind(d.starts_at)
    .bind(d.ends_at)
    .bind(i64::from(d.public))
    .bind(now)
    .bind(id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Cancel a window that has not ended. False when it was already canceled or has ended.
pub async fn cancel(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE maintenances SET state = 'canceled', canceled_at = $1, version = version + 1,
                updated_at = $1
         WHERE id = $2 AND state = 'scheduled' AND announced_end = 0 AND ends_at > $1",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Mark a window's start (or end) as announced. True for the one caller that does it.
pub async fn mark_announced(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    start: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = if start {
        "UPDATE maintenances SET announced_start = 1, updated_at = $1
         WHERE id = $2 AND state = 'scheduled' AND announced_start = 0"
    } else {
        "UPDATE maintenances SET announced_start = 1, announced_end = 1, updated_at = $1
         WHERE id = $2 AND state = 'scheduled' AND announced_end = 0"
    };
    let res = sqlx::query(sql)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Remember where the creation was announced (once).
pub async fn set_message(db: &Db, id: &str, channel: &str, ts: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE maintenances SET channel = $1, message_ts = $2 WHERE id = $3 AND message_ts IS NULL",
    )
    .bind(channel)
    .bind(ts)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(res.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MaintenanceSettings {
        MaintenanceSettings::default()
    }

    fn catalogue() -> Vec<SystemEntry> {
        vec![SystemEntry {
            id: "api".into(),
            name: "API".into(),
            group: None,
        }]
    }

    fn draft(start: i64, end: i64) -> Draft {
        Draft {
            title: "Database upgrade".into(),
            summary: String::new(),
            systems: vec!["api".into()],
            starts_at: start,
            ends_at: end,
            public: true,
        }
    }

    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;

    #[test]
    fn a_window_in_the_future_is_valid() {
        assert!(
            validate(
                &settings(),
                &catalogue(),
                &draft(NOW + H, NOW + 2 * H),
                NOW,
                None
            )
            .is_empty()
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let fields = |d: Draft| {
            validate(&settings(), &catalogue(), &d, NOW, None)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(draft(NOW + 2 * H, NOW + H)), vec!["ends_at"]);
        assert_eq!(fields(draft(NOW - 2 * H, NOW + H)), vec!["starts_at"]);
        assert_eq!(
            fields(draft(NOW - 3 * H, NOW - 2 * H)),
            vec!["starts_at", "ends_at"]
        );
        let mut d = draft(NOW + H, NOW + 2 * H);
        d.title = "  ".into();
        d.systems = vec!["nope".into()];
        assert_eq!(fields(d), vec!["title", "systems"]);
        assert_eq!(
            fields(draft(NOW + H, NOW + H + 8 * 24 * H)),
            vec!["ends_at"]
        );
    }

    #[test]
    fn a_started_window_keeps_its_start() {
        let m = Maintenance {
            id: "m".into(),
            title: "t".into(),
            summary: String::new(),
            systems: vec!["api".into()],
            starts_at: NOW - H,
            ends_at: NOW + H,
            public: true,
            state: SCHEDULED.into(),
            created_by: "api".into(),
            canceled_at: None,
            announced_start: true,
            announced_end: false,
            channel: None,
            message_ts: None,
            version: 1,
            created_at: NOW - 2 * H,
            updated_at: NOW - 2 * H,
        };
        assert!(
            validate(
                &settings(),
                &catalogue(),
                &draft(NOW - H, NOW + 3 * H),
                NOW,
                Some(&m)
            )
            .is_empty()
        );
        let e = validate(
            &settings(),
            &catalogue(),
            &draft(NOW + H, NOW + 3 * H),
            NOW,
            Some(&m),
        );
        assert_eq!(e[0].field, "starts_at");
        assert_eq!(m.phase(NOW), Phase::InProgress);
        assert_eq!(m.phase(NOW + H), Phase::Finished);
        assert_eq!(m.phase(NOW - 2 * H), Phase::Upcoming);
    }
}
