//! The sync: for each configured group, who should be in it, what Slack has, and the smallest
//! write that makes them agree.
//!
//! One run reads every group's members with a single `usergroups.list` (`include_users`), so an
//! unchanged run costs one Slack read plus provider calls and cached lookups; a group that looks
//! different is re-read with `usergroups.users.list` just before `usergroups.users.update`, so a
//! stale snapshot never causes a write. Groups run in parallel (`oncall.concurrency`), each on its
//! own. A run that may write holds the database lease [`RUN_LEASE`], so two
//! syncs (two replicas, or `serve` and the CLI) never write at once; a dry run takes no lease and
//! changes nothing, not even the database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::RUN_LEASE;
use super::clients::Oncall;
use super::model::Person;
use super::settings::{EmptyPolicy, GroupSettings};
use crate::clock::Millis;
use crate::registry::Periodic;
use crate::slack::api::SlackError;
use crate::state::AppState;

pub use super::notify::Notice;
pub use super::report::{GroupPlan, Member, Outcome, SyncReport};

/// What to sync, and how.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Plan only: no Slack write, no database write, no notices.
    pub dry_run: bool,
    /// Only these handles (empty: every configured group).
    pub groups: Vec<String>,
    /// Who asked (`system` for the periodic sync, `cli` for the command line).
    pub actor: String,
    /// Only the groups whose recorded next change has come (the handoff task's runs); decided
    /// once the run lease is held, so two replicas never both sync a due group.
    pub due_only: bool,
}

/// Why a run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("another on-call sync is running (lease {RUN_LEASE}); try again when it has finished")]
    Busy,
    #[error("unknown group {0}: configured groups are {1}")]
    UnknownGroup(String, String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

const DAY_MS: i64 = 86_400_000;

/// A Slack user group as the run's snapshot has it.
#[derive(Debug, Clone)]
struct SlackGroup {
    id: String,
    users: Vec<String>,
}

/// Run a sync.
pub async fn sync(state: &AppState, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
    let settings = &state.settings().oncall;
    let groups: Vec<GroupSettings> = if opts.groups.is_empty() {
        settings.groups.clone()
    } else {
        let mut v = Vec::new();
        for h in &opts.groups {
            let g = settings.group(h).ok_or_else(|| {
                SyncError::UnknownGroup(
                    h.clone(),
                    settings
                        .groups
                        .iter()
                        .map(|g| format!("@{}", g.handle.trim_start_matches('@')))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })?;
            v.push(g.clone());
        }
        v
    };

    // The run lease: only one sync that may write at a time, across replicas and the CLI.
    let owner = format!("{}-{}", opts.actor, uuid::Uuid::new_v4().simple());
    // Sized to the interval like every periodic lease (renewed while the run goes on), so a
    // replica that dies mid-run holds up the next sync by at most about one interval. With the
    // periodic sync off (0) a CLI run still needs a lease: 15 s, renewed every 5 s.
    let timing = crate::store::leases::LeaseTiming::for_interval(Duration::from_secs(
        settings.interval_secs.max(15),
    ));
    let ttl_ms = timing.ttl_ms();
    let renew = if opts.dry_run {
        None
    } else {
        let held = state
            .db()
            .try_lease(RUN_LEASE, &owner, state.now_ms(), ttl_ms)
            .await
            .context("taking the on-call sync lease")?;
        if !held {
            return Err(SyncError::Busy);
        }
        let (st, o) = (state.clone(), owner.clone());
        Some(Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(timing.renew_every).await;
                let _ = st.db().try_lease(RUN_LEASE, &o, st.now_ms(), ttl_ms).await;
            }
        })))
    };

    let groups = if opts.due_only {
        due_groups(state, groups).await
    } else {
        Ok(groups)
    };
    let report = match groups {
        Ok(groups) if !groups.is_empty() || !opts.due_only => {
            let started = state.now_ms();
            let report = run(state, &groups, opts).await;
            if !opts.dry_run {
                super::schedule::record(state, &report, started).await;
            }
            Ok(report)
        }
        Ok(_) => Ok(SyncReport {
            dry_run: opts.dry_run,
            groups: vec![],
        }),
        Err(e) => Err(e),
    };

    if let Some(r) = renew {
        drop(r);
        if let Err(e) = state.db().release_lease(RUN_LEASE, &owner).await {
            warn!(error = %crate::store::short_db_error(&e), "releasing the on-call sync lease failed; it expires by itself");
        }
    }
    let report = report?;
    if !opts.dry_run {
        super::notify::report_problems(state, &report).await;
    }
    Ok(report)
}

/// The groups among `groups` whose recorded next change has come.
async fn due_groups(
    state: &AppState,
    groups: Vec<GroupSettings>,
) -> Result<Vec<GroupSettings>, SyncError> {
    let due = super::schedule::due(state, state.now_ms())
        .await
        .context("reading the on-call schedule")?;
    Ok(groups
        .into_iter()
        .filter(|g| due.contains(&g.handle.trim_start_matches('@').to_ascii_lowercase()))
        .collect())
}

/// Renews the run lease while held; stops when dropped, also when the sync future is dropped
/// part way (shutdown), so an abandoned run's lease simply expires.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(state: &AppState, groups: &[GroupSettings], opts: &SyncOptions) -> SyncReport {
    let mut report = SyncReport {
        dry_run: opts.dry_run,
        groups: plan_groups(state, groups, opts).await,
    };
    for p in &mut report.groups {
        account(state, p, opts).await;
    }
    let changed = report
        .groups
        .iter()
        .filter(|g| matches!(g.outcome, Outcome::Updated | Outcome::WouldUpdate))
        .count();
    info!(
        groups = report.groups.len(),
        changed,
        failed = report.failures(),
        dry_run = opts.dry_run,
        "on-call sync finished"
    );
    report
}

/// Sync every group, `oncall.concurrency` at a time, each on its own; the plans in the
/// configuration's order.
async fn plan_groups(
    state: &AppState,
    groups: &[GroupSettings],
    opts: &SyncOptions,
) -> Vec<GroupPlan> {
    let svc = state.oncall().clone();
    let now = state.now_ms();
    let snapshot = match slack_groups(state).await {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => Err(e),
    };
    let concurrency = state.settings().oncall.concurrency.max(1);
    // Owned items: a stream over borrowed groups trips the compiler's higher-ranked lifetime
    // check inside `async_trait` futures.
    let mut plans: Vec<(usize, GroupPlan)> =
        futures::stream::iter(groups.iter().cloned().enumerate())
            .map(|(i, g)| {
                let (svc, snapshot) = (svc.clone(), snapshot.clone());
                async move {
                    let plan = match snapshot {
                        Ok(snap) => sync_group(state, &svc, &g, &snap, now, opts).await,
                        Err(e) => GroupPlan::new(g.handle.trim_start_matches('@')).failed(
                            "slack",
                            format!("reading the Slack user groups failed: {e}"),
                        ),
                    };
                    (i, plan)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    plans.sort_by_key(|(i, _)| *i);
    plans.into_iter().map(|(_, p)| p).collect()
}

/// Count a group's outcome in `/metrics`; give a failure an error id shared by its log line, its
/// audit row and the ops channel's alert; log people missing in Slack.
async fn account(state: &AppState, p: &mut GroupPlan, opts: &SyncOptions) {
    if !opts.dry_run {
        state.metrics().oncall_group(p.outcome.label());
        if p.outcome == Outcome::KeptEmpty {
            touch_synced(state, &p.handle).await;
        }
    }
    if p.outcome == Outcome::Failed {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        error!(
            oncall.group = %p.handle,
            error_id = %id,
            error.message = p.error.as_deref().unwrap_or(""),
            "on-call sync failed for a group; it keeps its current members"
        );
        if !opts.dry_run {
            state
                .audit(
                    super::FEATURE,
                    "update_group",
                    &opts.actor,
                    &format!("oncall:{}", p.handle),
                    "failed",
                    json!({"error_id": id, "error": p.error}),
                )
                .await;
        }
        p.error_id = Some(id);
    } else if !p.missing.is_empty() {
        warn!(oncall.group = %p.handle, missing = ?p.missing, "people on call have no Slack account; they are left out");
    }
}

/// Every user group with its members, in one call.
async fn slack_groups(state: &AppState) -> Result<HashMap<String, SlackGroup>, SlackError> {
    let v: Value = state
        .slack()
        .call("usergroups.list", &json!({"include_users": true}))
        .await?;
    let mut out = HashMap::new();
    for g in v
        .get("usergroups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(handle)) = (
            g.get("id").and_then(Value::as_str),
            g.get("handle").and_then(Value::as_str),
        ) else {
            continue;
        };
        if g.get("date_delete").and_then(Value::as_i64).unwrap_or(0) != 0 {
            continue;
        }
        let users = g
            .get("users")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            handle.to_ascii_lowercase(),
            SlackGroup {
                id: id.to_string(),
                users,
            },
        );
    }
    Ok(out)
}

/// Whether a person is one of the group's placeholder accounts.
fn ignored(g: &GroupSettings, p: &Person) -> bool {
    g.ignore.iter().any(|i| {
        let i = i.trim();
        i.eq_ignore_ascii_case(&p.id)
            || p.email
                .as_deref()
                .is_some_and(|e| i.eq_ignore_ascii_case(e))
            || p.name.as_deref().is_some_and(|n| i.eq_ignore_ascii_case(n))
            || p.slack_id.as_deref().is_some_and(|s| i == s)
    })
}

/// The shifts of a group's sources from `from` to `until` (the end of the handover window) and,
/// from providers that know shift times, `lookahead` further, so the next change is known; and
/// which provider endpoints answered.
pub async fn on_call(
    svc: &Oncall,
    g: &GroupSettings,
    from: Millis,
    until: Millis,
    lookahead: Millis,
) -> Result<super::providers::Answer, super::providers::ProviderError> {
    let mut out = super::providers::Answer::default();
    for source in &g.sources {
        let provider = svc.providers.for_source(source)?;
        // Providers without shift times (Opsgenie's who-is-on-call) read `until` as an instant:
        // reading further would mistake later people for the handover's.
        let read_until = if provider.knows_shift_times() {
            until + lookahead
        } else {
            until
        };
        let answer = provider.answer(source, from, read_until).await?;
        out.shifts.extend(answer.shifts);
        out.sources.extend(answer.sources);
    }
    Ok(out)
}

/// Resolve people to Slack IDs: `(slack id → label, missing labels)`.
async fn resolve(
    state: &AppState,
    svc: &Oncall,
    people: Vec<Person>,
) -> Result<(BTreeMap<String, String>, Vec<String>), Arc<SlackError>> {
    type Looked = Result<(Person, Option<String>), Arc<SlackError>>;
    let results: Vec<Looked> = futures::stream::iter(people)
        .map(|p| async move {
            let id = svc.person_id(state.slack(), &p).await?;
            Ok((p, id))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for r in results {
        let (p, id) = r?;
        match id {
            Some(id) => {
                found.entry(id).or_insert_with(|| p.label());
            }
            None => missing.push(p.label()),
        }
    }
    missing.sort();
    missing.dedup();
    Ok((found, missing))
}

/// A configured fallback entry as a person: a Slack ID or an email.
fn entry_person(entry: &str) -> Person {
    let e = entry.trim();
    let slack = !e.contains('@') && (e.starts_with('U') || e.starts_with('W'));
    Person {
        id: e.to_string(),
        email: e.contains('@').then(|| e.to_string()),
        slack_id: slack.then(|| e.to_string()),
        name: None,
    }
}

/// One group's run: who should be in it, what Slack has, and the smallest write that makes them
/// agree (none on a dry run). A failure anywhere leaves the group as it was.
async fn sync_group(
    state: &AppState,
    svc: &Oncall,
    g: &GroupSettings,
    snapshot: &HashMap<String, SlackGroup>,
    now: Millis,
    opts: &SyncOptions,
) -> GroupPlan {
    let handle = g.handle.trim_start_matches('@').to_string();
    let mut plan = GroupPlan::new(&handle);
    let Some(group) = snapshot.get(&handle.to_ascii_lowercase()) else {
        return plan.failed(
            "no_group",
            format!("Slack has no user group @{handle} (create it, or fix the handle)"),
        );
    };
    plan.usergroup_id = Some(group.id.clone());

    let window = g.window_ms();
    let until = now + window;
    // PagerDuty answers at most 90 days ahead: a 90-day rotation reads no further.
    let lookahead =
        super::schedule::lookahead_ms(&state.settings().oncall).min((90 * DAY_MS - window).max(0));
    let shifts = match on_call(svc, g, now, until, lookahead).await {
        Ok(answer) => {
            plan.sources = answer.sources;
            answer.shifts
        }
        Err(e) => return plan.failed(e.kind(), e.to_string()),
    };
    plan.next_change = super::schedule::next_change(
        shifts.iter().filter(|s| !ignored(g, &s.person)),
        now,
        window,
    );
    if !opts.dry_run {
        let timed: Vec<&super::Shift> = shifts.iter().filter(|s| !ignored(g, &s.person)).collect();
        plan.next_reminder = match super::remind::record(state, svc, g, &timed, now).await {
            Ok(next) => next,
            Err(e) => {
                // The group's members do not depend on it: read the group again soon.
                warn!(oncall.group = %handle, error = %format!("{e:#}"), "recording the shift reminders failed; retrying soon");
                Some(now + super::schedule::RETRY_MS)
            }
        };
    }
    let people = on_call_people(g, shifts, now, until, &mut plan);
    let (mut desired, missing) = match resolve(state, svc, people).await {
        Ok(r) => r,
        Err(e) => return plan.failed("slack", format!("looking people up in Slack failed: {e}")),
    };
    plan.missing = missing;
    if desired.is_empty() {
        (desired, plan) = match when_empty(state, svc, g, group, plan).await {
            Ok(next) => next,
            Err(done) => return done,
        };
    }
    let want: BTreeSet<String> = desired.keys().cloned().collect();
    plan = match update_members(state, &handle, group, &want, &desired, opts, plan).await {
        Ok(p) => p,
        Err(failed) => return failed,
    };
    if !opts.dry_run && !g.topic_channels.is_empty() {
        let members: Vec<String> = want.iter().cloned().collect();
        plan.topics = super::topics::update(state, g, &members, plan.next_change).await;
    }
    if !opts.dry_run {
        let before: Vec<String> = group.users.clone();
        match record(state, g, &group.id, before, &want).await {
            Ok(announced) => plan.announced = announced,
            Err(e) => {
                // Slack is right; only the notice is at stake. The next run records it.
                warn!(oncall.group = %handle, error = %format!("{e:#}"), "recording the on-call change failed; the next run retries the notice");
            }
        }
    }
    plan
}

/// The distinct people on call between `now` and `until`, placeholders (`ignore`) left out and
/// noted in the plan.
fn on_call_people(
    g: &GroupSettings,
    shifts: Vec<super::Shift>,
    now: Millis,
    until: Millis,
    plan: &mut GroupPlan,
) -> Vec<Person> {
    let mut people: Vec<Person> = Vec::new();
    for s in shifts {
        let active = s.start.is_none_or(|st| st <= until) && s.end.is_none_or(|en| en > now);
        if !active {
            continue;
        }
        if ignored(g, &s.person) {
            plan.ignored.push(s.person.label());
            continue;
        }
        if !people.contains(&s.person) {
            people.push(s.person);
        }
    }
    plan.ignored.sort();
    plan.ignored.dedup();
    people
}

/// Nobody (found in Slack) is on call: keep the group's members (`when_empty: keep`, or no
/// fallback person found either), or use the fallback people. `Err` is the finished plan.
async fn when_empty(
    state: &AppState,
    svc: &Oncall,
    g: &GroupSettings,
    group: &SlackGroup,
    mut plan: GroupPlan,
) -> Result<(BTreeMap<String, String>, GroupPlan), GroupPlan> {
    match g.when_empty {
        EmptyPolicy::Keep => {
            plan.outcome = Outcome::KeptEmpty;
            plan.unchanged = members(&group.users, &BTreeMap::new());
            Err(plan)
        }
        EmptyPolicy::Fallback => {
            let fb: Vec<Person> = g.fallback.iter().map(|e| entry_person(e)).collect();
            let desired = match resolve(state, svc, fb).await {
                Ok((found, missing)) => {
                    plan.missing.extend(missing);
                    plan.fell_back = true;
                    found
                }
                Err(e) => {
                    return Err(plan.failed(
                        "slack",
                        format!("looking the fallback people up in Slack failed: {e}"),
                    ));
                }
            };
            if desired.is_empty() {
                plan.outcome = Outcome::KeptEmpty;
                plan.unchanged = members(&group.users, &BTreeMap::new());
                return Err(plan);
            }
            Ok((desired, plan))
        }
    }
}

/// Compare `want` with the group's members (re-read live before any write) and write the
/// difference, unless it is a dry run; the plan lists who is added, removed and unchanged.
/// `Err` is the failed plan: the group was left as it was.
async fn update_members(
    state: &AppState,
    handle: &str,
    group: &SlackGroup,
    want: &BTreeSet<String>,
    labels: &BTreeMap<String, String>,
    opts: &SyncOptions,
    mut plan: GroupPlan,
) -> Result<GroupPlan, GroupPlan> {
    let mut current: BTreeSet<String> = group.users.iter().cloned().collect();
    if *want != current {
        // Confirm against Slack's live answer before writing.
        match state.slack().usergroup_members(&group.id).await {
            Ok(live) => current = live.into_iter().collect(),
            Err(e) => {
                return Err(
                    plan.failed("slack", format!("reading @{handle}'s members failed: {e}"))
                );
            }
        }
    }
    plan.added = want
        .difference(&current)
        .map(|id| member(id, labels))
        .collect();
    plan.removed = current
        .difference(want)
        .map(|id| member(id, labels))
        .collect();
    plan.unchanged = want
        .intersection(&current)
        .map(|id| member(id, labels))
        .collect();
    if *want == current {
        plan.outcome = Outcome::Unchanged;
    } else if opts.dry_run {
        plan.outcome = Outcome::WouldUpdate;
    } else {
        let users: Vec<String> = want.iter().cloned().collect();
        if let Err(e) = state.slack().usergroup_set_members(&group.id, &users).await {
            return Err(plan.failed(
                e.code().map(|c| c.as_str()).unwrap_or("slack"),
                format!("updating @{handle} failed: {e}"),
            ));
        }
        plan.outcome = Outcome::Updated;
        state
            .audit(
                super::FEATURE,
                "update_group",
                &opts.actor,
                &format!("oncall:{handle}"),
                "ok",
                json!({
                    "usergroup": group.id,
                    "added": plan.added.iter().map(|m| &m.slack_id).collect::<Vec<_>>(),
                    "removed": plan.removed.iter().map(|m| &m.slack_id).collect::<Vec<_>>(),
                }),
            )
            .await;
    }
    Ok(plan)
}

fn member(id: &str, labels: &BTreeMap<String, String>) -> Member {
    Member {
        slack_id: id.to_string(),
        label: labels.get(id).cloned().unwrap_or_default(),
    }
}

fn members(ids: &[String], labels: &BTreeMap<String, String>) -> Vec<Member> {
    ids.iter().map(|id| member(id, labels)).collect()
}

/// A run that kept a group's members because nobody is on call still synced it: move
/// `synced_at` on (the group's row exists once a run has recorded it).
async fn touch_synced(state: &AppState, handle: &str) {
    let handle = handle.trim_start_matches('@').to_ascii_lowercase();
    if let Err(e) = sqlx::query("UPDATE oncall_groups SET synced_at = $1 WHERE handle = $2")
        .bind(state.now_ms())
        .bind(&handle)
        .execute(state.db().pool())
        .await
    {
        warn!(oncall.group = %handle, error = %crate::store::short_db_error(&e), "recording the sync time failed");
    }
}

/// When each configured group was last synced (clock ms; 0 when never), for `/metrics`.
pub async fn last_syncs(state: &AppState) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT handle, synced_at FROM oncall_groups")
        .fetch_all(state.db().pool())
        .await?;
    let synced: HashMap<String, i64> = rows.into_iter().collect();
    Ok(state
        .settings()
        .oncall
        .groups
        .iter()
        .map(|g| {
            let handle = g.handle.trim_start_matches('@').to_ascii_lowercase();
            let at = synced.get(&handle).copied().unwrap_or(0);
            (handle, at)
        })
        .collect())
}

/// Record the group's members; when they differ from what was last announced, move the
/// generation on (one conditional update: exactly one run wins) and queue the notices in the same
/// transaction. True when this run queued them.
async fn record(
    state: &AppState,
    g: &GroupSettings,
    usergroup_id: &str,
    slack_before: Vec<String>,
    want: &BTreeSet<String>,
) -> anyhow::Result<bool> {
    let handle = g.handle.trim_start_matches('@').to_ascii_lowercase();
    let now = state.now_ms();
    let mut baseline = slack_before;
    baseline.sort();
    baseline.dedup();
    let new: Vec<String> = want.iter().cloned().collect();
    let mut tx = state.db().pool().begin().await?;
    let (old, generation) =
        match next_generation(&mut tx, &handle, usergroup_id, &baseline, &new, now).await? {
            Recorded::Unchanged => {
                tx.commit().await?;
                return Ok(false);
            }
            Recorded::Raced => {
                tx.rollback().await?;
                return Ok(false);
            }
            Recorded::Moved { old, generation } => (old, generation),
        };
    let notice = Notice {
        handle: handle.clone(),
        usergroup_id: usergroup_id.to_string(),
        channel: g.channel.clone(),
        added: new.iter().filter(|u| !old.contains(u)).cloned().collect(),
        removed: old.iter().filter(|u| !new.contains(u)).cloned().collect(),
        members: new.clone(),
        generation,
    };
    queue_notices(state, &mut tx, g, &notice).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(true)
}

/// What recording a group's members found.
enum Recorded {
    /// They are what was last announced: nothing to tell (the sync time was recorded).
    Unchanged,
    /// Another run moved the generation on first; its notices are queued.
    Raced,
    /// This run moved it on.
    Moved { old: Vec<String>, generation: i64 },
}

/// Move the group's recorded members to `new` and its generation on, if they differ and no
/// other run got there first. The first sight of a group records what Slack had before this run
/// as the baseline.
async fn next_generation(
    conn: &mut sqlx::AnyConnection,
    handle: &str,
    usergroup_id: &str,
    baseline: &[String],
    new: &[String],
    now: Millis,
) -> anyhow::Result<Recorded> {
    let new_json = serde_json::to_string(new)?;
    // First sight of the group: what Slack had before this run is the baseline.
    sqlx::query(
        "INSERT INTO oncall_groups (handle, usergroup_id, members, generation, changed_at, synced_at)
         VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (handle) DO NOTHING",
    )
    .bind(handle)
    .bind(usergroup_id)
    .bind(serde_json::to_string(baseline)?)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let (old_json, generation): (String, i64) =
        sqlx::query_as("SELECT members, generation FROM oncall_groups WHERE handle = $1")
            .bind(handle)
            .fetch_one(&mut *conn)
            .await?;
    if old_json == new_json {
        sqlx::query("UPDATE oncall_groups SET synced_at = $1 WHERE handle = $2")
            .bind(now)
            .bind(handle)
            .execute(&mut *conn)
            .await?;
        return Ok(Recorded::Unchanged);
    }
    let res = sqlx::query(
        "UPDATE oncall_groups SET members = $1, generation = generation + 1, usergroup_id = $2,
                changed_at = $3, synced_at = $3
         WHERE handle = $4 AND generation = $5",
    )
    .bind(&new_json)
    .bind(usergroup_id)
    .bind(now)
    .bind(handle)
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    if res.rows_affected() != 1 {
        // Another run recorded a change first; its notices are queued.
        return Ok(Recorded::Raced);
    }
    let old: Vec<String> = serde_json::from_str(&old_json).unwrap_or_default();
    Ok(Recorded::Moved {
        old,
        generation: generation + 1,
    })
}

/// Queue the shift-change notice (when the group has a channel) and a DM to each person coming
/// on call (unless the group turns DMs off), once per generation.
async fn queue_notices(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    g: &GroupSettings,
    notice: &Notice,
) -> Result<(), sqlx::Error> {
    let (handle, generation) = (&notice.handle, notice.generation);
    let jobs = state.jobs();
    if notice.channel.is_some() {
        jobs.insert(
            &mut *conn,
            crate::jobs::NewJob::new(super::JOB_NOTICE, notice)
                .dedup(format!("{}:{handle}:{generation}", super::JOB_NOTICE)),
        )
        .await?;
    }
    if g.dm() {
        for user in &notice.added {
            jobs.insert(
                &mut *conn,
                crate::jobs::NewJob::new(
                    super::JOB_DM,
                    &super::notify::Dm {
                        handle: handle.clone(),
                        user: user.clone(),
                        members: notice.members.clone(),
                    },
                )
                .dedup(format!("{}:{handle}:{generation}:{user}", super::JOB_DM)),
            )
            .await?;
        }
    }
    Ok(())
}

/// The periodic sync inside `serve`.
pub struct SyncTask;

#[async_trait]
impl Periodic for SyncTask {
    fn name(&self) -> &'static str {
        "oncall.sync"
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        let s = &state.settings().oncall;
        (s.interval_secs > 0 && !s.groups.is_empty()).then(|| Duration::from_secs(s.interval_secs))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        let opts = SyncOptions {
            actor: "system".into(),
            ..Default::default()
        };
        match sync(state, &opts).await {
            Ok(_) => Ok(()),
            Err(SyncError::Busy) => {
                info!("another on-call sync is running; skipping this interval");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Syncs each group at its next change. It reads nothing else: the interval task reads every
/// group as soon as a replica takes its lease (at start, on takeover) and records the moments.
#[derive(Default)]
pub struct HandoffTask;

#[async_trait]
impl Periodic for HandoffTask {
    fn name(&self) -> &'static str {
        "oncall.handoffs"
    }
    /// On whenever the periodic sync is (the interval stays the safety net).
    fn interval(&self, state: &AppState) -> Option<Duration> {
        let s = &state.settings().oncall;
        (s.interval_secs > 0 && !s.groups.is_empty()).then_some(super::schedule::TICK)
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        if super::schedule::due(state, state.now_ms())
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let opts = SyncOptions {
            actor: "system".into(),
            due_only: true,
            ..Default::default()
        };
        match sync(state, &opts).await {
            Ok(_) => Ok(()),
            // Another run holds the lease: try again next tick (the groups stay due).
            Err(SyncError::Busy) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The plan as the command line prints it.
pub fn render(report: &SyncReport) -> String {
    let mut out = String::new();
    let who = |m: &Member| {
        if m.label.is_empty() {
            m.slack_id.clone()
        } else {
            format!("{} ({})", m.slack_id, m.label)
        }
    };
    for g in &report.groups {
        let status = match g.outcome {
            Outcome::Updated => "updated",
            Outcome::WouldUpdate => "would update (dry run)",
            Outcome::Unchanged => "unchanged",
            Outcome::KeptEmpty => "nobody on call: current members kept",
            Outcome::Failed => "FAILED",
        };
        let id = g.usergroup_id.as_deref().unwrap_or("?");
        out.push_str(&format!("@{} ({id}): {status}\n", g.handle));
        for source in &g.sources {
            out.push_str(&format!("  source: {source}\n"));
        }
        if g.fell_back {
            out.push_str("  nobody on call: using the fallback list\n");
        }
        for m in &g.added {
            out.push_str(&format!("  + added     {}\n", who(m)));
        }
        for m in &g.removed {
            out.push_str(&format!("  - removed   {}\n", who(m)));
        }
        for m in &g.unchanged {
            out.push_str(&format!("  = unchanged {}\n", who(m)));
        }
        for m in &g.missing {
            out.push_str(&format!("  ! missing in Slack: {m}\n"));
        }
        for m in &g.ignored {
            out.push_str(&format!("  . ignored placeholder: {m}\n"));
        }
        for t in &g.topics {
            out.push_str(&match &t.error {
                Some(e) => format!("  ! topic of {}: cannot write ({e})\n", t.channel),
                None => format!("  # topic of {}: {}\n", t.channel, t.outcome),
            });
        }
        if let Some(e) = &g.error {
            out.push_str(&format!(
                "  error: {e} (error id {})\n",
                g.error_id.as_deref().unwrap_or("-")
            ));
        } else {
            out.push_str(&match g.next_change {
                Some(t) => format!("  changes next: {}\n", super::schedule::utc(t)),
                None => "  changes next: not known (the interval sync reads it again)\n".into(),
            });
        }
    }
    let count = |o: Outcome| report.groups.iter().filter(|g| g.outcome == o).count();
    out.push_str(&format!(
        "{} groups: {} updated, {} would update, {} unchanged, {} kept (empty), {} failed{}\n",
        report.groups.len(),
        count(Outcome::Updated),
        count(Outcome::WouldUpdate),
        count(Outcome::Unchanged),
        count(Outcome::KeptEmpty),
        count(Outcome::Failed),
        if report.dry_run {
            " — dry run, nothing changed"
        } else {
            ""
        }
    ));
    out
}
