//! Scheduled maintenance: windows created from Slack (`/announce maintenance`) or the API, announced
//! when created, when they start and when they end, without anyone acting.
//!
//! Every change is one transaction that writes the window and queues what must follow it: the
//! Slack announcement (a job with a dedup key, so each is posted once) and the webhook deliveries
//! ([`crate::notifiers::enqueue`]). Starts and ends are noticed by a periodic task under a
//! database lease ([`announce::Announcer`]); a conditional update decides which run announces
//! them, so a window is announced once however many replicas run. Validation lives in one place
//! ([`model::validate`]) for the modal and the API alike.

pub mod announce;
pub mod api;
pub mod modal;
pub mod model;
pub mod settings;

use async_trait::async_trait;
use axum::Router;
use serde_json::Value;

use crate::jobs::NewJob;
use crate::notifiers::StatusEvent;
use crate::registry::{CommandHandler, Registry, SlackCtx};
use crate::slack::ack::Ack;
use crate::slack::payload::SlashCommand;
use crate::state::AppState;
use model::{Draft, FieldError, Maintenance};
use settings::MaintenanceSettings;

/// The creation modal's `callback_id`.
pub const VIEW_CREATE: &str = "maintenance:create";

/// `/announce maintenance …`: the announcements command hands this subcommand over.
pub async fn command(cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
    modal::open(&cx, &cmd).await
}

/// The `maintenance` subcommand of the announcements' command, as registered.
struct ScheduleCommand;

#[async_trait]
impl CommandHandler for ScheduleCommand {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack> {
        command(cx, cmd).await
    }
}

/// Register the window's modal, jobs and checks, and `maintenance` as a subcommand of
/// `announce_command` (`announcements.command`), which hands it over through the registry.
pub fn register(registry: &mut Registry, _settings: &MaintenanceSettings, announce_command: &str) {
    registry
        .subcommand(announce_command, "maintenance", ScheduleCommand)
        .view(VIEW_CREATE, modal::CreateView)
        .job(announce::JOB_POST, announce::PostJob)
        .periodic(announce::Announcer);
}

/// `/api/v1/maintenances`.
pub fn routes() -> Router<AppState> {
    api::routes()
}

/// Why a change was refused.
#[derive(Debug)]
pub enum ChangeError {
    Invalid(Vec<FieldError>),
    NotFound,
    /// Canceled or ended: it can no longer change.
    Conflict(String),
    /// Changed since the caller read it (a stale `version`, or a concurrent change).
    Stale,
    Store(sqlx::Error),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        ChangeError::Store(e)
    }
}

/// Queue the Slack announcement of `event` (`scheduled`, `updated`, `started`, `ended`,
/// `canceled`) and the webhooks' `maintenance.<event>` inside the caller's transaction.
pub(crate) async fn queue_event(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    m: &Maintenance,
    event: &str,
    detail: Option<String>,
) -> Result<(), sqlx::Error> {
    let now = state.now_ms();
    if state.settings().announcements.channel.is_some() {
        // Once per window and event; updates once per version.
        let key = match event {
            "updated" => format!("{}:{}:updated:{}", announce::JOB_POST, m.id, m.version),
            _ => format!("{}:{}:{event}", announce::JOB_POST, m.id),
        };
        let post = announce::Post {
            id: m.id.clone(),
            event: event.to_string(),
            detail,
        };
        state
            .jobs()
            .insert(
                &mut *conn,
                NewJob::new(announce::JOB_POST, &post).dedup(key),
            )
            .await?;
    }
    let ev = StatusEvent {
        kind: format!("maintenance.{event}"),
        id: m.id.clone(),
        at: now,
        data: m.to_json(now),
    };
    crate::notifiers::enqueue(state, conn, &ev).await
}

/// After a commit: wake the job worker and refresh this replica's status page.
fn after_commit(state: &AppState) {
    state.jobs().wake();
    crate::status::changed(state);
}

/// Create a window (from the modal or the API) and queue its announcement.
pub async fn create(
    state: &AppState,
    draft: Draft,
    created_by: &str,
) -> Result<Maintenance, ChangeError> {
    let now = state.now_ms();
    let errors = model::validate(
        &state.settings().maintenance,
        &state.settings().announcements.systems,
        &draft,
        now,
        None,
    );
    if !errors.is_empty() {
        return Err(ChangeError::Invalid(errors));
    }
    let m = Maintenance {
        id: crate::store::new_id(),
        title: draft.title.trim().to_string(),
        summary: draft.summary.trim().to_string(),
        systems: draft.systems,
        // A start a little in the past (the picker's minute) means now.
        starts_at: draft.starts_at.max(now),
        ends_at: draft.ends_at,
        public: draft.public,
        state: model::SCHEDULED.into(),
        created_by: created_by.to_string(),
        canceled_at: None,
        announced_start: false,
        announced_end: false,
        channel: None,
        message_ts: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db().pool().begin().await?;
    model::insert(&mut tx, &m).await?;
    queue_event(state, &mut tx, &m, "scheduled", None).await?;
    tx.commit().await?;
    after_commit(state);
    state
        .audit(
            "maintenance",
            "create",
            created_by,
            &format!("maintenance:{}", m.id),
            "scheduled",
            m.to_json(now),
        )
        .await;
    Ok(m)
}

/// Change a window: `apply` edits a draft made from the current window.
pub async fn update(
    state: &AppState,
    id: &str,
    actor: &str,
    expected_version: Option<i64>,
    apply: impl FnOnce(&mut Draft),
) -> Result<Maintenance, ChangeError> {
    let now = state.now_ms();
    let existing = state
        .db()
        .maintenance(id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    // A writer that read an older version must not overwrite a newer change unseen.
    if expected_version.is_some_and(|v| v != existing.version) {
        return Err(ChangeError::Stale);
    }
    if existing.state == model::CANCELED {
        return Err(ChangeError::Conflict("the window was canceled".into()));
    }
    if existing.announced_end || existing.ends_at <= now {
        return Err(ChangeError::Conflict("the window has ended".into()));
    }
    let mut draft = Draft {
        title: existing.title.clone(),
        summary: existing.summary.clone(),
        systems: existing.systems.clone(),
        starts_at: existing.starts_at,
        ends_at: existing.ends_at,
        public: existing.public,
    };
    apply(&mut draft);
    let errors = model::validate(
        &state.settings().maintenance,
        &state.settings().announcements.systems,
        &draft,
        now,
        Some(&existing),
    );
    if !errors.is_empty() {
        return Err(ChangeError::Invalid(errors));
    }
    let changes = describe_changes(&existing, &draft);
    if changes.is_empty() {
        return Ok(existing);
    }
    let mut tx = state.db().pool().begin().await?;
    if !model::update(&mut tx, id, existing.version, &draft, now).await? {
        return Err(ChangeError::Stale);
    }
    let mut updated = existing.clone();
    updated.title = draft.title.trim().to_string();
    updated.summary = draft.summary.trim().to_string();
    updated.systems = draft.systems;
    updated.starts_at = draft.starts_at;
    updated.ends_at = draft.ends_at;
    updated.public = draft.public;
    updated.version += 1;
    updated.updated_at = now;
    queue_event(
        state,
        &mut tx,
        &updated,
        "updated",
        Some(changes.join("; ")),
    )
    .await?;
    tx.commit().await?;
    after_commit(state);
    state
        .audit(
            "maintenance",
            "update",
            actor,
            &format!("maintenance:{id}"),
            "updated",
            serde_json::json!({"changes": changes}),
        )
        .await;
    Ok(updated)
}

/// Cancel a window that has not ended.
pub async fn cancel(state: &AppState, id: &str, actor: &str) -> Result<Maintenance, ChangeError> {
    let now = state.now_ms();
    let existing = state
        .db()
        .maintenance(id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    let mut tx = state.db().pool().begin().await?;
    if !model::cancel(&mut tx, id, now).await? {
        return Err(ChangeError::Conflict(
            if existing.state == model::CANCELED {
                "the window is already canceled"
            } else {
                "the window has ended"
            }
            .into(),
        ));
    }
    let mut canceled = existing;
    canceled.state = model::CANCELED.into();
    canceled.canceled_at = Some(now);
    canceled.version += 1;
    canceled.updated_at = now;
    queue_event(state, &mut tx, &canceled, "canceled", None).await?;
    tx.commit().await?;
    after_commit(state);
    state
        .audit(
            "maintenance",
            "cancel",
            actor,
            &format!("maintenance:{id}"),
            "canceled",
            Value::Null,
        )
        .await;
    Ok(canceled)
}

/// What a change does, one phrase per field, for the announcement and the audit log.
fn describe_changes(m: &Maintenance, d: &Draft) -> Vec<String> {
    let mut c = Vec::new();
    if m.title != d.title.trim() {
        c.push(format!("title: {:?} → {:?}", m.title, d.title.trim()));
    }
    if m.summary != d.summary.trim() {
        c.push("summary changed".to_string());
    }
    if m.systems != d.systems {
        c.push(format!(
            "systems: {} → {}",
            m.systems.join(", "),
            d.systems.join(", ")
        ));
    }
    if m.starts_at != d.starts_at {
        c.push(format!(
            "start: {} → {}",
            model::rfc3339(m.starts_at),
            model::rfc3339(d.starts_at)
        ));
    }
    if m.ends_at != d.ends_at {
        c.push(format!(
            "end: {} → {}",
            model::rfc3339(m.ends_at),
            model::rfc3339(d.ends_at)
        ));
    }
    if m.public != d.public {
        c.push(if d.public {
            "now on the public status page".to_string()
        } else {
            "no longer on the public status page".to_string()
        });
    }
    c
}
