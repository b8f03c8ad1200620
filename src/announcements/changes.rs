//! The one write path for outages: announcing, and every later change (update, reassign,
//! resolve, reopen), from Slack and from the API alike.
//!
//! Each write is one transaction that updates the row (guarded by its `version`, so two people
//! editing at once cannot silently overwrite each other), appends one `outage_history` row, and
//! queues everything that must follow — the message update, the thread reply, audience posts,
//! webhook events — as jobs in the same transaction. So a change that committed is always shown,
//! and one that did not leaves nothing behind. This module never calls Slack.

use serde_json::json;

use super::model::{self, FieldChange, Fields, Outage, Resolution};
use super::payload::{AlertGroupRef, AudienceRef, Dm, OutageRef};
use super::settings::AnnouncementsSettings;
use super::{JOB_ALERT_RENDER, JOB_AUDIENCE, JOB_DM, JOB_POST, JOB_RENDER, JOB_THREAD, message};
use crate::jobs::NewJob;
use crate::notifiers::StatusEvent;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;
use crate::store::new_id;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such outage")]
    NotFound,
    #[error("the outage changed meanwhile; look again and retry")]
    Conflict,
    #[error("nothing changed")]
    NothingChanged,
    #[error("{0}")]
    WrongState(String),
    #[error("invalid: {0:?}")]
    Invalid(Vec<(String, String)>),
    /// Slack could not be asked whether an assignee is an active person; nothing was changed.
    #[error("{message}")]
    Unavailable { field: String, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ChangeError {
    fn from(e: sqlx::Error) -> Self {
        ChangeError::Other(anyhow::anyhow!(crate::store::short_db_error(&e)))
    }
}

/// What kind of change, as history, audit and webhook events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Announced,
    Updated,
    Reassigned,
    Resolved,
    Reopened,
    /// The postmortem's report is linked (a resolved outage).
    Postmortem,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Announced => "announced",
            Kind::Updated => "updated",
            Kind::Reassigned => "reassigned",
            Kind::Resolved => "resolved",
            Kind::Reopened => "reopened",
            Kind::Postmortem => "postmortem",
        }
    }
}

async fn insert_history(
    conn: &mut sqlx::AnyConnection,
    outage: &Outage,
    by: &str,
    kind: Kind,
    changes: &[FieldChange],
    reason: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outage_history (id, outage_id, seq, at, by_user, kind, changes, reason, snapshot)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id())
    .bind(&outage.id)
    .bind(outage.version)
    .bind(at)
    .bind(by)
    .bind(kind.as_str())
    .bind(serde_json::to_string(changes).unwrap_or_else(|_| "[]".into()))
    .bind(reason)
    .bind(outage.to_json().to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queue the audience posts owed for `outage`: one per audience answered "yes", ever.
async fn queue_audiences(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    outage: &Outage,
) -> Result<(), sqlx::Error> {
    for a in &state.settings().announcements.audiences {
        let affected = outage
            .fields
            .impact
            .get(&a.id)
            .is_some_and(|i| i.affected == "yes");
        if affected && a.channel.is_some() {
            state
                .jobs()
                .insert(
                    &mut *conn,
                    NewJob::new(
                        JOB_AUDIENCE,
                        &AudienceRef {
                            outage_id: outage.id.clone(),
                            audience: a.id.clone(),
                        },
                    )
                    .dedup(format!("announcements:audience:{}:{}", outage.id, a.id)),
                )
                .await?;
        }
    }
    Ok(())
}

/// Tell people who became (or stopped being) an assignee, except whoever made the change.
async fn queue_assignment_dms(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    old: Option<&Outage>,
    new: &Outage,
    by: &str,
) -> Result<(), sqlx::Error> {
    let settings = &state.settings().announcements;
    let roles = |o: &Outage| {
        [
            ("resolution", o.fields.resolution_assignee.clone()),
            ("communication", o.fields.communication_assignee.clone()),
        ]
    };
    let mut dms: Vec<Dm> = Vec::new();
    let mut tell = |user: &str, text: Mrkdwn| {
        if user != by && !user.is_empty() {
            dms.push(Dm {
                user: user.to_string(),
                text,
                blocks: None,
            });
        }
    };
    let new_roles = roles(new);
    for (i, (role, user)) in new_roles.iter().enumerate() {
        let before = old.map(|o| roles(o)[i].1.clone());
        if before.as_deref() == Some(user.as_str()) {
            continue;
        }
        tell(user, message::assignment_dm(new, settings, role, by, true));
        if let Some(b) = before {
            tell(&b, message::assignment_dm(new, settings, role, by, false));
        }
    }
    for (i, dm) in dms.into_iter().enumerate() {
        let key = format!(
            "announcements:assign:{}:{}:{}:{i}",
            new.id, new.version, dm.user
        );
        state
            .jobs()
            .insert(&mut *conn, NewJob::new(JOB_DM, &dm).dedup(key))
            .await?;
    }
    Ok(())
}

fn event(kind: Kind, outage: &Outage, at: i64) -> StatusEvent {
    StatusEvent {
        kind: format!("outage.{}", kind.as_str()),
        id: outage.id.clone(),
        at,
        data: outage.to_json(),
    }
}

/// Announce a new outage: store it and queue its message, its audience posts and its event.
/// `fields` must have passed [`model::validate`].
pub async fn announce(state: &AppState, fields: Fields, by: &str) -> anyhow::Result<Outage> {
    let mut tx = state.db().pool().begin().await?;
    let outage = announce_in(state, &mut tx, new_id(), fields, by).await?;
    tx.commit().await?;
    state.jobs().wake();
    crate::status::changed(state);
    Ok(outage)
}

/// [`announce`] inside the caller's transaction, under a chosen id: for callers that must record
/// what the outage came from in the same transaction (an alert group). The caller commits, then
/// wakes the jobs and tells the status page.
pub async fn announce_in(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    id: String,
    mut fields: Fields,
    by: &str,
) -> anyhow::Result<Outage> {
    let settings = &state.settings().announcements;
    model::complete_impact(settings, &mut fields);
    fields.summary = fields.summary.trim().to_string();
    let now = state.now_ms();
    let outage = Outage {
        id,
        fields,
        eta_set_at: now,
        state: model::OPEN.into(),
        announced_by: by.to_string(),
        started_at: now,
        resolved_at: None,
        resolution: None,
        channel: settings.channel.clone(),
        message_ts: None,
        permalink: None,
        incident_channel: None,
        last_update_at: now,
        version: 1,
        created_at: now,
        updated_at: now,
        eta_snoozed_until: None,
    };
    let f = &outage.fields;
    sqlx::query(
        "INSERT INTO outages (id, summary, systems, impact, severity, eta, eta_set_at,
            resolution_assignee, communication_assignee, public, state, announced_by, started_at,
            channel, last_update_at, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    )
    .bind(&outage.id)
    .bind(&f.summary)
    .bind(serde_json::to_string(&f.systems)?)
    .bind(serde_json::to_string(&f.impact)?)
    .bind(&f.severity)
    .bind(&f.eta)
    .bind(now)
    .bind(&f.resolution_assignee)
    .bind(&f.communication_assignee)
    .bind(i64::from(f.public))
    .bind(model::OPEN)
    .bind(by)
    .bind(now)
    .bind(&outage.channel)
    .bind(now)
    .bind(outage.version)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    insert_history(tx, &outage, by, Kind::Announced, &[], None, now).await?;
    state
        .jobs()
        .insert(
            &mut *tx,
            NewJob::new(
                JOB_POST,
                &OutageRef {
                    outage_id: outage.id.clone(),
                    version: 1,
                },
            )
            .dedup(format!("announcements:post:{}", outage.id)),
        )
        .await?;
    queue_audiences(state, tx, &outage).await?;
    queue_assignment_dms(state, tx, None, &outage, by).await?;
    crate::notifiers::enqueue(state, tx, &event(Kind::Announced, &outage, now)).await?;
    Ok(outage)
}

/// A change to make.
pub struct Change {
    pub kind: Kind,
    pub by: String,
    pub reason: Option<String>,
    /// The version the person saw; `None` to apply to whatever is current (the API).
    pub expected_version: Option<i64>,
    /// New editable fields (for update and reassign).
    pub fields: Option<Fields>,
    /// For resolve.
    pub resolution: Option<(Resolution, i64)>,
}

/// Assignees must be active human members: a bot, an app, a deactivated or unknown user could
/// never receive the reminders and nudges (users.info: `deleted`, `is_bot`, `is_app_user`).
/// Checks the assignees of `fields` that differ from `before` (all of them for a new outage), so
/// an outage whose assignee left can still be edited and reassigned. Field-named problems, or
/// [`ChangeError::Unavailable`] when Slack could not be asked.
pub async fn assignee_problems(
    state: &AppState,
    fields: &Fields,
    before: Option<&Fields>,
) -> Result<Vec<(String, String)>, ChangeError> {
    let mut problems = Vec::new();
    for (field, user, old) in [
        (
            "resolution_assignee",
            &fields.resolution_assignee,
            before.map(|b| &b.resolution_assignee),
        ),
        (
            "communication_assignee",
            &fields.communication_assignee,
            before.map(|b| &b.communication_assignee),
        ),
    ] {
        if old == Some(user) {
            continue;
        }
        if let Err(why) = state.authz().active_person(user).await.map_err(|e| {
            tracing::warn!(field, error = %e, "could not check an assignee with Slack");
            ChangeError::Unavailable {
                field: field.to_string(),
                message: "Slack could not be asked whether this is an active person; try again."
                    .into(),
            }
        })? {
            problems.push((field.to_string(), format!("Choose an active person: {why}")));
        }
    }
    Ok(problems)
}

/// Apply a change: validate, write it with its history row, queue the message update, the
/// thread reply, new audience posts and the webhook event. Returns the outage after the change.
pub async fn apply(state: &AppState, id: &str, change: Change) -> Result<Outage, ChangeError> {
    let settings = &state.settings().announcements;
    let old = model::load(state.db().pool(), id)
        .await?
        .ok_or(ChangeError::NotFound)?;
    if change.expected_version.is_some_and(|v| v != old.version) {
        return Err(ChangeError::Conflict);
    }
    let now = state.now_ms();
    let (mut new, changes) = changed(settings, &old, &change, now)?;
    if changes.is_empty() {
        return Err(ChangeError::NothingChanged);
    }
    let people = assignee_problems(state, &new.fields, Some(&old.fields)).await?;
    if !people.is_empty() {
        return Err(ChangeError::Invalid(people));
    }
    new.version = old.version + 1;
    new.updated_at = now;
    new.last_update_at = now;
    let mut tx = state.db().pool().begin().await?;
    if !write_row(&mut tx, &new, old.version, now).await? {
        return Err(ChangeError::Conflict);
    }
    insert_history(
        &mut tx,
        &new,
        &change.by,
        change.kind,
        &changes,
        change.reason.as_deref(),
        now,
    )
    .await?;
    record_postmortem(state, &mut tx, &new, &change, now).await?;
    queue_follow_ups(state, &mut tx, &old, &new, &change, now).await?;
    tx.commit().await?;
    state.jobs().wake();
    crate::status::changed(state);
    state
        .audit(
            super::FEATURE,
            change.kind.as_str(),
            &change.by,
            &format!("outage:{}", new.id),
            "ok",
            json!({"version": new.version, "fields": changes.iter().map(|c| c.field.clone()).collect::<Vec<_>>()}),
        )
        .await;
    Ok(new)
}

/// The outage after `change`, and the fields it changes (empty: nothing would change); or why
/// it cannot be made (invalid fields, or not in a state it applies to).
fn changed(
    settings: &AnnouncementsSettings,
    old: &Outage,
    change: &Change,
    now: i64,
) -> Result<(Outage, Vec<FieldChange>), ChangeError> {
    let mut new = old.clone();
    let mut changes = Vec::new();
    match change.kind {
        Kind::Announced => return Err(ChangeError::WrongState("already announced".into())),
        Kind::Updated | Kind::Reassigned => {
            let mut fields = change.fields.clone().unwrap_or_else(|| old.fields.clone());
            model::complete_impact(settings, &mut fields);
            fields.summary = fields.summary.trim().to_string();
            let problems = model::validate(settings, &fields);
            if !problems.is_empty() {
                return Err(ChangeError::Invalid(problems));
            }
            changes = model::diff(settings, &old.fields, &fields);
            if fields.eta != old.fields.eta {
                // The ETA counts from when it was set (as Phoenix's set_eta); reminders start over.
                new.eta_set_at = now;
                new.eta_snoozed_until = None;
            }
            new.fields = fields;
        }
        Kind::Resolved => {
            if !old.is_open() {
                return Err(ChangeError::WrongState("it is already resolved".into()));
            }
            let Some((r, at)) = change.resolution.clone() else {
                return Err(ChangeError::Invalid(vec![(
                    "resolution".into(),
                    "required".into(),
                )]));
            };
            changes = resolution_changes(settings, &r, at);
            new.state = model::RESOLVED.into();
            new.resolved_at = Some(at);
            new.resolution = Some(r);
        }
        Kind::Postmortem => {
            let Some((r, _)) = change.resolution.clone() else {
                return Err(ChangeError::Invalid(vec![(
                    "postmortem".into(),
                    "required".into(),
                )]));
            };
            if old.is_open() {
                return Err(ChangeError::WrongState(
                    "it is open; a postmortem is added once it is resolved".into(),
                ));
            }
            let before = old.resolution.clone().unwrap_or_default();
            let from = before.report_url.clone().unwrap_or_default();
            let to = r.report_url.clone().unwrap_or_default();
            changes.push(fc(settings, "report_url", &from, &to));
            let summary = r.postmortem_summary.clone().unwrap_or_default();
            let old_summary = before.postmortem_summary.clone().unwrap_or_default();
            changes.push(fc(settings, "postmortem_summary", &old_summary, &summary));
            changes.retain(|c| c.from != c.to);
            new.resolution = Some(Resolution {
                report_url: r.report_url,
                postmortem_summary: r.postmortem_summary,
                ..before
            });
        }
        Kind::Reopened => {
            if old.is_open() {
                return Err(ChangeError::WrongState("it is open".into()));
            }
            changes.push(fc(settings, "state", model::RESOLVED, model::OPEN));
            new.state = model::OPEN.into();
            new.resolved_at = None;
            new.resolution = None;
            new.eta_set_at = now;
            new.eta_snoozed_until = None;
        }
    }
    Ok((new, changes))
}

/// Keep the outage's postmortem in step, in the change's transaction: resolving with
/// "postmortem needed" makes it owed (by the resolution assignee, due
/// `announcements.postmortem_due_days` working days after it was resolved); linking the report
/// settles it.
async fn record_postmortem(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    new: &Outage,
    change: &Change,
    now: i64,
) -> Result<(), sqlx::Error> {
    let Some(r) = new.resolution.as_ref() else {
        return Ok(());
    };
    let owes = change.kind == Kind::Resolved && r.postmortem;
    if !owes && change.kind != Kind::Postmortem {
        return Ok(());
    }
    let resolved_at = new.resolved_at.unwrap_or(now);
    let days = state.settings().announcements.postmortem_due_days;
    let (added_by, added_at) = if r.report_url.is_some() {
        (Some(change.by.as_str()), Some(now))
    } else {
        (None, None)
    };
    sqlx::query(
        "INSERT INTO postmortems (outage_id, owner, due_at, url, summary, added_by, added_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (outage_id) DO UPDATE SET url = excluded.url, summary = excluded.summary,
            added_by = excluded.added_by, added_at = excluded.added_at",
    )
    .bind(&new.id)
    .bind(&new.fields.resolution_assignee)
    .bind(model::working_days_after(resolved_at, days))
    .bind(&r.report_url)
    .bind(&r.postmortem_summary)
    .bind(added_by)
    .bind(added_at)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if owes {
        // Resolved again after a reopen: a new owner and due date.
        sqlx::query("UPDATE postmortems SET owner = $1, due_at = $2 WHERE outage_id = $3")
            .bind(&new.fields.resolution_assignee)
            .bind(model::working_days_after(resolved_at, days))
            .bind(&new.id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// What resolving changes, as the thread reply lists it.
fn resolution_changes(
    settings: &AnnouncementsSettings,
    r: &Resolution,
    at: i64,
) -> Vec<FieldChange> {
    let mut changes = vec![
        fc(settings, "state", model::OPEN, model::RESOLVED),
        fc(settings, "resolution", "", &r.summary),
        fc(
            settings,
            "resolved_at",
            "",
            crate::slack::blocks::date(at).as_str(),
        ),
        fc(settings, "postmortem", "", &model::yes_no(r.postmortem)),
    ];
    if let Some(u) = &r.report_url {
        changes.push(fc(settings, "report_url", "", u));
    }
    changes
}

/// Write the outage's row if it is still at `old_version`; false when someone else changed it
/// meanwhile.
async fn write_row(
    conn: &mut sqlx::AnyConnection,
    new: &Outage,
    old_version: i64,
    now: i64,
) -> Result<bool, ChangeError> {
    let f = &new.fields;
    let res = sqlx::query(
        "UPDATE outages SET summary = $1, systems = $2, impact = $3, severity = $4, eta = $5,
            eta_set_at = $6, resolution_assignee = $7, communication_assignee = $8, public = $9,
            state = $10, resolved_at = $11, resolution = $12, last_update_at = $13, version = $14,
            updated_at = $15, eta_snoozed_until = $16
         WHERE id = $17 AND version = $18",
    )
    .bind(&f.summary)
    .bind(serde_json::to_string(&f.systems).map_err(anyhow::Error::from)?)
    .bind(serde_json::to_string(&f.impact).map_err(anyhow::Error::from)?)
    .bind(&f.severity)
    .bind(&f.eta)
    .bind(new.eta_set_at)
    .bind(&f.resolution_assignee)
    .bind(&f.communication_assignee)
    .bind(i64::from(f.public))
    .bind(&new.state)
    .bind(new.resolved_at)
    .bind(
        new.resolution
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_default()),
    )
    .bind(now)
    .bind(new.version)
    .bind(now)
    .bind(new.eta_snoozed_until)
    .bind(&new.id)
    .bind(old_version)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Queue, in the change's transaction, what must follow it: the message update and the thread
/// reply for this version, posts to audiences newly affected, DMs to new assignees, the webhook
/// event.
async fn queue_follow_ups(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    old: &Outage,
    new: &Outage,
    change: &Change,
    now: i64,
) -> Result<(), sqlx::Error> {
    let r = OutageRef {
        outage_id: new.id.clone(),
        version: new.version,
    };
    state
        .jobs()
        .insert(
            &mut *conn,
            NewJob::new(JOB_RENDER, &r)
                .dedup(format!("announcements:render:{}:{}", new.id, new.version)),
        )
        .await?;
    state
        .jobs()
        .insert(
            &mut *conn,
            NewJob::new(JOB_THREAD, &r)
                .dedup(format!("announcements:thread:{}:{}", new.id, new.version)),
        )
        .await?;
    queue_audiences(state, conn, new).await?;
    queue_assignment_dms(state, conn, Some(old), new, &change.by).await?;
    queue_suggestion_updates(state, conn, new).await?;
    crate::notifiers::enqueue(state, conn, &event(change.kind, new, now)).await
}

/// The suggestions this outage was announced from show its state (their Resolve button goes
/// once it is resolved): queue their update with the change.
async fn queue_suggestion_updates(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    new: &Outage,
) -> Result<(), sqlx::Error> {
    let groups: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM alert_groups WHERE outage_id = $1 AND message_ts IS NOT NULL",
    )
    .bind(&new.id)
    .fetch_all(&mut *conn)
    .await?;
    for (group_id,) in groups {
        let key = format!("alerts:render:{group_id}:outage:{}:{}", new.id, new.version);
        let r = AlertGroupRef {
            group_id,
            version: 0,
        };
        state
            .jobs()
            .insert(&mut *conn, NewJob::new(JOB_ALERT_RENDER, &r).dedup(key))
            .await?;
    }
    Ok(())
}

fn fc(settings: &AnnouncementsSettings, field: &str, from: &str, to: &str) -> FieldChange {
    FieldChange {
        field: field.into(),
        label: model::label(settings, field),
        from: from.into(),
        to: to.into(),
    }
}
