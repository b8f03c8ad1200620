//! Alert groups from Alertmanager, and what they propose: one stored group per `groupKey`, the
//! rule it matches (`announcements.alert_rules`), and the outage it suggests or announces.
//!
//! Alertmanager delivers each group again and again — every `repeat_interval`, after restarts,
//! from each HA peer — and always with every alert of the group, not a difference
//! (monitoring-integrations.md §1.3). So a delivery is merged into the stored group, and only a
//! change (an alert joins, resolves or fires again) bumps the group's `version` and queues the
//! suggestion's update: a re-sent body changes nothing. Every write is a conditional `UPDATE …
//! WHERE version = …` (or an insert that loses to the unique id), and an outage is announced in
//! the same transaction as the write that records it, so two replicas handling the same delivery
//! announce it once. While the group's outage is open, alerts that flap never announce another.
//!
//! This module decides and stores; the suggestion message and its buttons are
//! [`super::suggestion`], the HTTP endpoint is [`super::alerts_api`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::alertmanager::{AlertStatus, Notification, StoredAlert};
use super::changes::{self, Change, ChangeError, Kind};
use super::model::{self, Fields, Resolution};
use super::payload::AlertGroupRef;
use super::settings::{AlertMode, AlertRule, AnnouncementsSettings};
use super::{JOB_ALERT_POST, JOB_ALERT_RENDER};
use crate::jobs::NewJob;
use crate::state::AppState;
use crate::store::new_id;

/// Who announces and resolves outages on Alertmanager's behalf (shown as "`alertmanager` (API)").
pub const ALERTMANAGER: &str = "api:alertmanager";

pub const SUGGESTED: &str = "suggested";
pub const DISMISSED: &str = "dismissed";
pub const ANNOUNCED: &str = "announced";

/// At most this many alerts are kept per group (the firing ones first).
const MAX_ALERTS: usize = 100;

/// What a group proposes: the outage's systems, severity and summary, and why it could not be
/// announced as is (the API's validation, by field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub systems: Vec<String>,
    pub severity: String,
    pub summary: String,
    #[serde(default)]
    pub problems: Vec<(String, String)>,
}

/// An alert group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub group_key: String,
    pub receiver: String,
    pub rule: i64,
    pub mode: AlertMode,
    pub status: AlertStatus,
    pub alerts: Vec<StoredAlert>,
    pub proposal: Proposal,
    pub state: String,
    pub decided_by: Option<String>,
    pub outage_id: Option<String>,
    pub episode: i64,
    pub resolved_at: Option<i64>,
    pub quiet_since: Option<i64>,
    pub channel: Option<String>,
    pub message_ts: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Group {
    pub fn is_firing(&self) -> bool {
        self.status == AlertStatus::Firing
    }
    /// The firing alerts, in the stored order.
    pub fn firing(&self) -> impl Iterator<Item = &StoredAlert> {
        self.alerts.iter().filter(|a| a.is_firing())
    }
    /// Does the group show a suggestion message: every suggest-mode group, and an announce-mode
    /// group that could not be announced.
    pub fn wants_message(&self) -> bool {
        self.message_ts.is_some() || self.mode == AlertMode::Suggest || self.state != ANNOUNCED
    }
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: String,
    group_key: String,
    receiver: String,
    rule: i64,
    mode: String,
    status: String,
    alerts: String,
    proposal: String,
    state: String,
    decided_by: Option<String>,
    outage_id: Option<String>,
    episode: i64,
    resolved_at: Option<i64>,
    quiet_since: Option<i64>,
    channel: Option<String>,
    message_ts: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, group_key, receiver, rule, mode, status, alerts, proposal, state, \
    decided_by, outage_id, episode, resolved_at, quiet_since, channel, message_ts, version, \
    created_at, updated_at";

impl From<GroupRow> for Group {
    fn from(r: GroupRow) -> Self {
        Group {
            id: r.id,
            group_key: r.group_key,
            receiver: r.receiver,
            rule: r.rule,
            mode: if r.mode == "announce" {
                AlertMode::Announce
            } else {
                AlertMode::Suggest
            },
            status: if r.status == "firing" {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            },
            alerts: serde_json::from_str(&r.alerts).unwrap_or_default(),
            proposal: serde_json::from_str(&r.proposal).unwrap_or_default(),
            state: r.state,
            decided_by: r.decided_by,
            outage_id: r.outage_id,
            episode: r.episode,
            resolved_at: r.resolved_at,
            quiet_since: r.quiet_since,
            channel: r.channel,
            message_ts: r.message_ts,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn mode_str(m: AlertMode) -> &'static str {
    match m {
        AlertMode::Suggest => "suggest",
        AlertMode::Announce => "announce",
    }
}

fn status_str(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// The stored id of a group key: its SHA-256, so keys of any length fit a button's value.
pub fn group_id(group_key: &str) -> String {
    hex::encode(Sha256::digest(group_key.as_bytes()))
}

pub async fn load(pool: &sqlx::AnyPool, id: &str) -> Result<Option<Group>, sqlx::Error> {
    let row: Option<GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM alert_groups WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Group::from))
}

/// Does `rule` match this alert's labels.
fn matches(rule: &AlertRule, alert: &StoredAlert) -> bool {
    rule.matchers
        .iter()
        .all(|(k, v)| alert.labels.get(k) == Some(v))
}

/// The first rule (in configuration order) that matches any alert of the group.
pub fn rule_for<'a>(
    settings: &'a AnnouncementsSettings,
    alerts: &[StoredAlert],
) -> Option<(usize, &'a AlertRule)> {
    settings
        .alert_rules
        .iter()
        .enumerate()
        .find(|(_, r)| alerts.iter().any(|a| matches(r, a)))
}

/// What the group proposes under `rule`, from the alerts the rule matches (the firing ones while
/// any fires): systems from the rule or the systems label, the most severe valid severity, the
/// first `summary` annotation; checked with the API's validation.
pub fn proposal(
    settings: &AnnouncementsSettings,
    rule: &AlertRule,
    alerts: &[StoredAlert],
) -> Proposal {
    let matched: Vec<&StoredAlert> = alerts.iter().filter(|a| matches(rule, a)).collect();
    let firing: Vec<&StoredAlert> = matched.iter().copied().filter(|a| a.is_firing()).collect();
    let basis = if firing.is_empty() { matched } else { firing };
    let mut systems: Vec<String> = rule.systems.clone();
    if systems.is_empty() {
        for a in &basis {
            let values = a.labels.get(&rule.systems_label).map(String::as_str);
            for s in values.unwrap_or("").split(',').map(str::trim) {
                if !s.is_empty() && !systems.iter().any(|x| x == s) {
                    systems.push(s.to_string());
                }
            }
        }
    }
    let given: Vec<&str> = basis
        .iter()
        .filter_map(|a| a.labels.get(&rule.severity_label).map(String::as_str))
        .collect();
    let severity = settings
        .severities
        .iter()
        .find(|s| given.contains(&s.as_str()))
        .cloned()
        .or_else(|| given.first().map(|s| s.to_string()))
        .unwrap_or_default();
    let summaries: Vec<&str> = basis
        .iter()
        .filter_map(|a| {
            a.annotations
                .get("summary")
                .or_else(|| a.labels.get("alertname"))
                .map(|s| s.trim())
        })
        .filter(|s| !s.is_empty())
        .collect();
    let mut summary = summaries.first().copied().unwrap_or("Alert").to_string();
    let others = summaries.iter().filter(|s| **s != summary).count();
    if others > 0 {
        summary.push_str(&format!(" (and {others} more)"));
    }
    let summary = crate::slack::blocks::truncate(&summary, model::SUMMARY_MAX);
    let problems = problems(settings, rule, &systems, &severity, &summary);
    Proposal {
        systems,
        severity,
        summary,
        problems,
    }
}

/// The API's validation of the proposal, limited to what the alerts decide.
fn problems(
    settings: &AnnouncementsSettings,
    rule: &AlertRule,
    systems: &[String],
    severity: &str,
    summary: &str,
) -> Vec<(String, String)> {
    let mut fields = Fields {
        summary: summary.to_string(),
        systems: systems.to_vec(),
        severity: severity.to_string(),
        eta: "unknown".into(),
        ..Fields::default()
    };
    model::complete_impact(settings, &mut fields);
    let mut p: Vec<(String, String)> = model::validate(settings, &fields)
        .into_iter()
        .filter(|(f, _)| matches!(f.as_str(), "summary" | "systems" | "severity"))
        .collect();
    if severity.is_empty() {
        p.retain(|(f, _)| f != "severity");
        p.push((
            "severity".into(),
            format!(
                "no `{}` label; choose one of {}",
                rule.severity_label,
                settings.severities.join(", ")
            ),
        ));
    }
    p
}

/// The group's alerts after a delivery: the delivered ones as delivered, and ones stored as firing
/// but no longer delivered (Alertmanager drops resolved alerts with `send_resolved: false`) as
/// resolved now. When the group fires again after it had resolved, its old alerts are dropped.
pub fn merge_alerts(
    stored: &[StoredAlert],
    incoming: &[StoredAlert],
    now: i64,
) -> Vec<StoredAlert> {
    let was_resolved = !stored.iter().any(StoredAlert::is_firing);
    let refires = was_resolved && incoming.iter().any(StoredAlert::is_firing);
    let mut by_fp: BTreeMap<String, StoredAlert> = BTreeMap::new();
    if !refires {
        for a in stored {
            let mut a = a.clone();
            if a.is_firing() {
                a.status = AlertStatus::Resolved;
                a.ends_at = Some(now);
            }
            by_fp.insert(a.fingerprint.clone(), a);
        }
    }
    for a in incoming {
        by_fp.insert(a.fingerprint.clone(), a.clone());
    }
    let mut v: Vec<StoredAlert> = by_fp.into_values().collect();
    v.sort_by_key(|a| (!a.is_firing(), a.starts_at, a.fingerprint.clone()));
    v.truncate(MAX_ALERTS);
    v
}

/// The group after a delivery, before any announcement: its alerts, status, proposal, and the
/// suggestion's state (a group that fires again after resolving is a new episode and is
/// suggested again, unless its outage is still open).
fn next(
    old: Option<&Group>,
    n: &Notification,
    alerts: Vec<StoredAlert>,
    (rule_index, rule): (usize, &AlertRule),
    proposal: Proposal,
    outage_open: bool,
    now: i64,
) -> Group {
    let firing = alerts.iter().any(StoredAlert::is_firing);
    let status = if firing {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let refires = old.is_some_and(|o| !o.is_firing()) && firing;
    let mut g = old.cloned().unwrap_or_else(|| Group {
        id: group_id(&n.group_key),
        group_key: n.group_key.clone(),
        receiver: String::new(),
        rule: 0,
        mode: rule.mode,
        status,
        alerts: Vec::new(),
        proposal: Proposal::default(),
        state: SUGGESTED.into(),
        decided_by: None,
        outage_id: None,
        episode: 1,
        resolved_at: None,
        quiet_since: None,
        channel: None,
        message_ts: None,
        version: 0,
        created_at: now,
        updated_at: now,
    });
    g.receiver = n.receiver.clone().unwrap_or_default();
    g.rule = rule_index as i64;
    g.mode = rule.mode;
    if refires {
        g.episode += 1;
        if g.state == DISMISSED || (g.state == ANNOUNCED && !outage_open) {
            g.state = SUGGESTED.into();
            g.decided_by = None;
        }
    }
    if firing {
        g.resolved_at = None;
        g.quiet_since = None;
    } else {
        g.resolved_at = alerts.iter().filter_map(|a| a.ends_at).max().or(Some(now));
        g.quiet_since = g.quiet_since.or(Some(now));
    }
    g.status = status;
    g.alerts = alerts;
    g.proposal = proposal;
    g
}

/// Same group, same meaning: a re-sent delivery.
fn unchanged(old: &Group, new: &Group) -> bool {
    old.status == new.status
        && old.alerts == new.alerts
        && old.proposal == new.proposal
        && old.state == new.state
        && old.mode == new.mode
        && old.rule == new.rule
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No rule matches its alerts: acknowledged, nothing stored.
    NoRule,
    /// Outage announcements are not configured here (`announcements.channel`).
    NotConfigured,
    /// The same as what is stored (a re-sent delivery).
    Unchanged,
    /// Stored; the suggestion shows it.
    Suggested,
    /// Stored; it changed a group whose outage is announced.
    Updated,
    /// An outage was announced from it now.
    Announced,
}

/// Receive one delivery: merge it into its group, announce when its rule says so, queue the
/// suggestion's post or update. Retries when another replica changed the group meanwhile.
pub async fn receive(
    state: &AppState,
    n: &Notification,
    incoming: &[StoredAlert],
) -> anyhow::Result<(String, Outcome)> {
    let settings = &state.settings().announcements;
    let id = group_id(&n.group_key);
    if settings.channel.is_none() {
        warn!(group = %id, "an Alertmanager delivery arrived but announcements.channel is not set");
        return Ok((id, Outcome::NotConfigured));
    }
    for _ in 0..8 {
        if let Some(outcome) = try_receive(state, settings, n, incoming, &id).await? {
            return Ok((id, outcome));
        }
    }
    anyhow::bail!("alert group {id} kept changing; Alertmanager will deliver it again")
}

/// One attempt; `None` when the group changed under us (read it again).
async fn try_receive(
    state: &AppState,
    settings: &AnnouncementsSettings,
    n: &Notification,
    incoming: &[StoredAlert],
    id: &str,
) -> anyhow::Result<Option<Outcome>> {
    let pool = state.db().pool();
    let now = state.now_ms();
    let old = load(pool, id).await?;
    let stored = old.as_ref().map(|g| g.alerts.as_slice()).unwrap_or(&[]);
    let alerts = merge_alerts(stored, incoming, now);
    let Some((ri, rule)) = rule_for(settings, &alerts) else {
        return Ok(Some(Outcome::NoRule));
    };
    let proposal = proposal(settings, rule, &alerts);
    let outage_open = match old.as_ref().and_then(|g| g.outage_id.as_deref()) {
        Some(o) => model::load(pool, o).await?.is_some_and(|o| o.is_open()),
        None => false,
    };
    let mut new = next(
        old.as_ref(),
        n,
        alerts,
        (ri, rule),
        proposal,
        outage_open,
        now,
    );
    if old.as_ref().is_some_and(|o| unchanged(o, &new)) {
        return Ok(Some(Outcome::Unchanged));
    }
    let announce = should_announce(old.as_ref(), &new, outage_open);
    if new.mode == AlertMode::Announce && new.is_firing() && !new.proposal.problems.is_empty() {
        warn!(group = %id, problems = ?new.proposal.problems.iter().map(|p| &p.0).collect::<Vec<_>>(),
              "an announce rule's alerts would not pass validation; shown as a suggestion instead");
    }
    let outage_id = announce.then(new_id);
    if let Some(o) = &outage_id {
        new.outage_id = Some(o.clone());
        new.state = ANNOUNCED.into();
        new.decided_by = Some(ALERTMANAGER.into());
    }
    new.version = old.as_ref().map_or(1, |o| o.version + 1);
    new.updated_at = now;
    let mut tx = pool.begin().await?;
    if !write(&mut tx, old.as_ref(), &new).await? {
        return Ok(None);
    }
    if let Some(o) = outage_id {
        let fields = announce_fields(settings, rule, &new.proposal);
        changes::announce_in(state, &mut tx, o, fields, ALERTMANAGER).await?;
    }
    queue_message(state, &mut tx, &new).await?;
    tx.commit().await?;
    state.jobs().wake();
    if announce {
        crate::status::changed(state);
        info!(group = %id, "announced an outage from an alert group");
        return Ok(Some(Outcome::Announced));
    }
    Ok(Some(if new.state == ANNOUNCED {
        Outcome::Updated
    } else {
        Outcome::Suggested
    }))
}

/// Announce now: an `announce` rule, firing, valid, and no outage of this group is open (so
/// flapping never announces a second one) nor was already announced in this episode.
fn should_announce(old: Option<&Group>, new: &Group, outage_open: bool) -> bool {
    let announced_this_episode = old
        .is_some_and(|o| o.outage_id.is_some() && o.episode == new.episode && o.state == ANNOUNCED);
    new.mode == AlertMode::Announce
        && new.is_firing()
        && new.proposal.problems.is_empty()
        && new.state != DISMISSED
        && !outage_open
        && !announced_this_episode
}

/// The outage an `announce` rule announces: the proposal, ETA unknown, the rule's assignee for
/// both roles, every audience unknown, not public.
fn announce_fields(settings: &AnnouncementsSettings, rule: &AlertRule, p: &Proposal) -> Fields {
    let who = rule.assignee.clone().unwrap_or_default();
    let mut f = Fields {
        summary: p.summary.clone(),
        systems: p.systems.clone(),
        severity: p.severity.clone(),
        eta: "unknown".into(),
        resolution_assignee: who.clone(),
        communication_assignee: who,
        ..Fields::default()
    };
    model::complete_impact(settings, &mut f);
    f
}

/// Insert the group (losing to another replica's insert) or update it if still at the version
/// read. False when someone else wrote first.
async fn write(
    conn: &mut sqlx::AnyConnection,
    old: Option<&Group>,
    g: &Group,
) -> anyhow::Result<bool> {
    let sql = match old {
        None => {
            "INSERT INTO alert_groups (receiver, rule, mode, status, alerts, proposal, state,
                decided_by, outage_id, episode, resolved_at, quiet_since, version, updated_at,
                id, group_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (id) DO NOTHING"
        }
        Some(_) => {
            "UPDATE alert_groups SET receiver = $1, rule = $2, mode = $3, status = $4, alerts = $5,
                proposal = $6, state = $7, decided_by = $8, outage_id = $9, episode = $10,
                resolved_at = $11, quiet_since = $12, version = $13, updated_at = $14
             WHERE id = $15 AND version = $16"
        }
    };
    let mut q = sqlx::query(sql)
        .bind(&g.receiver)
        .bind(g.rule)
        .bind(mode_str(g.mode))
        .bind(status_str(g.status))
        .bind(serde_json::to_string(&g.alerts)?)
        .bind(serde_json::to_string(&g.proposal)?)
        .bind(&g.state)
        .bind(&g.decided_by)
        .bind(&g.outage_id)
        .bind(g.episode)
        .bind(g.resolved_at)
        .bind(g.quiet_since)
        .bind(g.version)
        .bind(g.updated_at)
        .bind(&g.id);
    q = match old {
        None => q.bind(&g.group_key).bind(g.created_at),
        Some(o) => q.bind(o.version),
    };
    Ok(q.execute(&mut *conn).await?.rows_affected() == 1)
}

/// Queue the suggestion's first post (once per group) and its update to this version.
pub async fn queue_message(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    g: &Group,
) -> Result<(), sqlx::Error> {
    if !g.wants_message() {
        return Ok(());
    }
    let r = AlertGroupRef {
        group_id: g.id.clone(),
        version: g.version,
    };
    if g.message_ts.is_none() {
        state
            .jobs()
            .insert(
                &mut *conn,
                NewJob::new(JOB_ALERT_POST, &r).dedup(format!("alerts:post:{}", g.id)),
            )
            .await?;
    }
    state
        .jobs()
        .insert(
            &mut *conn,
            NewJob::new(JOB_ALERT_RENDER, &r)
                .dedup(format!("alerts:render:{}:{}", g.id, g.version)),
        )
        .await?;
    Ok(())
}

/// Why a person's decision on a suggestion was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("this alert group no longer exists")]
    NotFound,
    #[error("it was already {0}")]
    Decided(String),
    #[error("its alerts have all resolved")]
    Resolved,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Claim a suggested group for `new_state` in `conn`'s transaction: the one conditional update
/// that decides who acted first. False when someone else decided first.
async fn claim(
    conn: &mut sqlx::AnyConnection,
    g: &Group,
    new_state: &str,
    by: &str,
    outage_id: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE alert_groups SET state = $1, decided_by = $2,
            outage_id = COALESCE($3, outage_id), version = version + 1, updated_at = $4
         WHERE id = $5 AND state = $6 AND episode = $7",
    )
    .bind(new_state)
    .bind(by)
    .bind(outage_id)
    .bind(now)
    .bind(&g.id)
    .bind(SUGGESTED)
    .bind(g.episode)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

async fn suggested(state: &AppState, group_id: &str) -> Result<Group, DecisionError> {
    let g = load(state.db().pool(), group_id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or(DecisionError::NotFound)?;
    if g.state != SUGGESTED {
        return Err(DecisionError::Decided(g.state.clone()));
    }
    Ok(g)
}

/// Announce `fields` (already validated) from the suggestion `group_id`, by `user`: the group is
/// claimed and the outage announced in one transaction, so a second click or a second person
/// announces nothing.
pub async fn announce_from(
    state: &AppState,
    group_id: &str,
    fields: Fields,
    user: &str,
) -> Result<model::Outage, DecisionError> {
    let g = suggested(state, group_id).await?;
    let now = state.now_ms();
    let outage_id = new_id();
    let mut tx = state
        .db()
        .pool()
        .begin()
        .await
        .map_err(anyhow::Error::from)?;
    if !claim(&mut tx, &g, ANNOUNCED, user, Some(&outage_id), now)
        .await
        .map_err(anyhow::Error::from)?
    {
        return Err(DecisionError::Decided("decided by someone else".into()));
    }
    let outage = changes::announce_in(state, &mut tx, outage_id, fields, user).await?;
    let after = Group {
        version: g.version + 1,
        state: ANNOUNCED.into(),
        ..g
    };
    queue_message(state, &mut tx, &after)
        .await
        .map_err(anyhow::Error::from)?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    state.jobs().wake();
    crate::status::changed(state);
    Ok(outage)
}

/// Dismiss the suggestion `group_id` (its buttons go; it comes back if the group fires again
/// after resolving).
pub async fn dismiss(state: &AppState, group_id: &str, user: &str) -> Result<(), DecisionError> {
    let g = suggested(state, group_id).await?;
    let mut tx = state
        .db()
        .pool()
        .begin()
        .await
        .map_err(anyhow::Error::from)?;
    if !claim(&mut tx, &g, DISMISSED, user, None, state.now_ms())
        .await
        .map_err(anyhow::Error::from)?
    {
        return Err(DecisionError::Decided("decided by someone else".into()));
    }
    let after = Group {
        version: g.version + 1,
        state: DISMISSED.into(),
        ..g
    };
    queue_message(state, &mut tx, &after)
        .await
        .map_err(anyhow::Error::from)?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    state.jobs().wake();
    Ok(())
}

/// Resolve the open outages `announce` rules announced whose alerts have all stayed resolved for
/// `announcements.auto_resolve_after_mins`. Returns how many were resolved now. Run with the
/// reminders (one replica at a time); the outage's version decides if two runs race.
pub async fn auto_resolve(state: &AppState) -> anyhow::Result<usize> {
    let settings = &state.settings().announcements;
    let after_ms = settings.auto_resolve_after_mins as i64 * 60_000;
    let cutoff = state.now_ms() - after_ms;
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM alert_groups
         WHERE mode = 'announce' AND status = 'resolved' AND state = $1
           AND outage_id IS NOT NULL AND quiet_since <= $2",
    )
    .bind(ANNOUNCED)
    .bind(cutoff)
    .fetch_all(state.db().pool())
    .await?;
    let mut resolved = 0;
    for (id,) in ids {
        let Some(g) = load(state.db().pool(), &id).await? else {
            continue;
        };
        let Some(o) = g.outage_id.as_deref() else {
            continue;
        };
        let Some(outage) = model::load(state.db().pool(), o).await? else {
            continue;
        };
        if !outage.is_open() || outage.announced_by != ALERTMANAGER {
            continue;
        }
        let at = g
            .resolved_at
            .unwrap_or(cutoff)
            .clamp(outage.started_at, state.now_ms());
        let summary = format!(
            "Every alert of the group resolved; resolved automatically after {} min without alerts.",
            settings.auto_resolve_after_mins
        );
        let change = Change {
            kind: Kind::Resolved,
            by: ALERTMANAGER.into(),
            reason: Some(summary.clone()),
            expected_version: Some(outage.version),
            fields: None,
            resolution: Some((
                Resolution {
                    summary,
                    postmortem: false,
                    report_url: None,
                    resolved_by: ALERTMANAGER.into(),
                    postmortem_summary: None,
                },
                at,
            )),
        };
        match changes::apply(state, &outage.id, change).await {
            Ok(_) => {
                resolved += 1;
                state
                    .audit(
                        super::FEATURE,
                        "auto_resolve",
                        ALERTMANAGER,
                        &format!("outage:{}", outage.id),
                        "ok",
                        json!({"group": g.id}),
                    )
                    .await;
            }
            Err(ChangeError::Conflict | ChangeError::WrongState(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("auto-resolving outage {}: {e}", outage.id)),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announcements::settings::SystemEntry;

    fn alert(fp: &str, firing: bool, labels: &[(&str, &str)], summary: &str) -> StoredAlert {
        StoredAlert {
            fingerprint: fp.into(),
            status: if firing {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: [("summary".to_string(), summary.to_string())].into(),
            starts_at: 1_000,
            ends_at: (!firing).then_some(2_000),
        }
    }

    fn settings() -> AnnouncementsSettings {
        AnnouncementsSettings {
            systems: ["payments", "search"]
                .iter()
                .map(|id| SystemEntry {
                    id: (*id).into(),
                    name: (*id).into(),
                    group: None,
                })
                .collect(),
            alert_rules: vec![
                AlertRule {
                    matchers: [("team".to_string(), "pay".to_string())].into(),
                    mode: AlertMode::Announce,
                    assignee: Some("U0A".into()),
                    ..AlertRule::default()
                },
                AlertRule::default(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_proposes_from_the_labels() {
        let s = settings();
        let alerts = vec![
            alert(
                "a",
                true,
                &[("system", "search"), ("severity", "minor")],
                "Slow",
            ),
            alert(
                "b",
                true,
                &[("system", "payments,search"), ("severity", "critical")],
                "Down",
            ),
        ];
        let (i, rule) = rule_for(&s, &alerts).expect("a rule");
        assert_eq!(i, 1, "no alert carries team=pay");
        let p = proposal(&s, rule, &alerts);
        assert_eq!(p.systems, vec!["search", "payments"]);
        assert_eq!(p.severity, "critical", "the most severe valid one");
        assert_eq!(p.summary, "Slow (and 1 more)");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn proposals_that_would_fail_validation_say_which_field() {
        let s = settings();
        let alerts = vec![alert(
            "a",
            true,
            &[("system", "billing"), ("severity", "p1")],
            "x",
        )];
        let p = proposal(&s, &s.alert_rules[1], &alerts);
        let fields: Vec<_> = p.problems.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(fields, vec!["systems", "severity"]);
        let alerts = vec![alert("a", true, &[("system", "search")], "x")];
        let p = proposal(&s, &s.alert_rules[1], &alerts);
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].1.contains("no `severity` label"));
    }

    #[test]
    fn announce_rules_need_an_assignee_and_known_systems() {
        let mut s = settings();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        s.alert_rules[0].assignee = None;
        s.alert_rules[1].systems = vec!["billing".into()];
        s.alert_rules[1].assignee = Some("alice".into());
        s.postmortem_remind_days = 0;
        let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "announcements.alert_rules[0].assignee",
                "announcements.alert_rules[1].systems",
                "announcements.alert_rules[1].assignee",
                "announcements.postmortem_remind_days",
            ]
        );
    }

    #[test]
    fn rules_read_from_yaml_use_the_pinned_names_and_defaults() {
        let yaml = "match: {team: pay}\nmode: announce\nassignee: U0A\n";
        let r: AlertRule = serde_yaml::from_str(yaml).expect("parses");
        assert_eq!(r.matchers.get("team").map(String::as_str), Some("pay"));
        assert_eq!(
            (r.systems_label.as_str(), r.severity_label.as_str()),
            ("system", "severity")
        );
        assert_eq!(r.mode, AlertMode::Announce);
        let d = AnnouncementsSettings::default();
        assert_eq!(
            (
                d.auto_resolve_after_mins,
                d.postmortem_due_days,
                d.postmortem_remind_days
            ),
            (10, 5, 2)
        );
    }

    #[test]
    fn merging_marks_vanished_alerts_resolved_and_a_refire_starts_over() {
        let stored = vec![alert("a", true, &[], "x"), alert("b", true, &[], "y")];
        let incoming = vec![alert("a", true, &[], "x")];
        let m = merge_alerts(&stored, &incoming, 5_000);
        assert_eq!(m.len(), 2);
        assert!(m[0].is_firing() && m[0].fingerprint == "a");
        assert_eq!(
            (m[1].status, m[1].ends_at),
            (AlertStatus::Resolved, Some(5_000))
        );
        let all_resolved = vec![alert("a", false, &[], "x"), alert("b", false, &[], "y")];
        let refire = merge_alerts(&all_resolved, &[alert("c", true, &[], "z")], 9_000);
        assert_eq!(refire.len(), 1, "a new episode keeps only what fires now");
        assert_eq!(merge_alerts(&stored, &stored, 5_000), stored);
    }
}
