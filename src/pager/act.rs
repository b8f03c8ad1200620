//! Carrying out a claimed click: read the incident as the provider shows it now, then act as the
//! person who clicked, once.
//!
//! Reading first is what keeps a stale message from doing harm: PagerDuty reopens a resolved
//! incident that is acknowledged (reference pager-incidents.md §A2 "Reopening quirk"), so an
//! incident resolved elsewhere is never acted on, only shown. The provider is called as the
//! person where its API allows (PagerDuty's `From` with their email, Opsgenie's `user`); Grafana
//! OnCall acts as its token's owner and the message credits the person who clicked. Opsgenie
//! answers 202 and decides later: the claim stays until its request status says, and a failure
//! is told to the person instead of being shown as done ([`FollowJob`]). Transient failures
//! (429, 5xx, timeouts) are retried from the queue, reading the state again before each try,
//! since none of the products takes an idempotency key.

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::click::ActRequest;
use super::delivery::render_now;
use super::model::{self, Actor, Incident, Reported};
use super::settings::PagerProvider;
use super::{FEATURE, JOB_FOLLOW};
use crate::jobs::{Job, JobError, NewJob};
use crate::oncall::providers::{ProviderError, parse_time};
use crate::registry::JobHandler;
use crate::slack::mrkdwn::Mrkdwn;
use crate::state::AppState;

fn db_err(e: sqlx::Error) -> JobError {
    JobError::from(anyhow::Error::from(e))
}

/// The claimed incident, or `None` when the claim is over (done, or replaced).
async fn claimed(state: &AppState, req: &ActRequest) -> Result<Option<Incident>, JobError> {
    let inc = state.db().pager_incident(&req.id).await.map_err(db_err)?;
    Ok(inc.filter(|i| i.claimed_at == Some(req.claimed_at) && i.claim_user.is_some()))
}

/// Why acting did not happen, for the person who clicked.
enum Stop {
    /// Nothing was sent: tell them why.
    Tell(String),
    /// A transient failure (429, 5xx, timeout, the database): the queue tries again.
    Retry(String),
    /// Our own earlier attempt got there before its answer was lost: show it, quietly.
    Already { status: &'static str, at: i64 },
    /// The incident moved on elsewhere: show its state and tell them why nothing was sent.
    Moved {
        status: &'static str,
        at: i64,
        why: String,
    },
}

/// The provider's view of the incident: its state and when it got there.
async fn current(state: &AppState, inc: &Incident) -> Result<(&'static str, i64), ProviderError> {
    let p = &state.oncall().providers;
    let id = inc.incident_id.as_str();
    let missing = |k: &str| ProviderError::NotConfigured(format!("oncall.{k} is not configured"));
    let (status, at) = match inc.provider() {
        Some(PagerProvider::Pagerduty) => {
            let v = p
                .pagerduty
                .as_ref()
                .ok_or_else(|| missing("pagerduty"))?
                .incident(id)
                .await?;
            let s = match v.get("status").and_then(Value::as_str) {
                Some("resolved") => model::RESOLVED,
                Some("acknowledged") => model::ACKNOWLEDGED,
                _ => model::TRIGGERED,
            };
            (s, parse_time(v.get("last_status_change_at")))
        }
        Some(PagerProvider::Opsgenie) => {
            let v = p
                .opsgenie
                .as_ref()
                .ok_or_else(|| missing("opsgenie"))?
                .alert(id)
                .await?;
            let s = if v.get("status").and_then(Value::as_str) == Some("closed") {
                model::RESOLVED
            } else if v.get("acknowledged").and_then(Value::as_bool) == Some(true) {
                model::ACKNOWLEDGED
            } else {
                model::TRIGGERED
            };
            (s, parse_time(v.get("updatedAt")))
        }
        Some(PagerProvider::GrafanaOncall) => {
            let v = p
                .grafana
                .as_ref()
                .ok_or_else(|| missing("grafana"))?
                .alert_group(id)
                .await?;
            match v.get("state").and_then(Value::as_str) {
                Some("resolved") => (model::RESOLVED, parse_time(v.get("resolved_at"))),
                Some("acknowledged") => (model::ACKNOWLEDGED, parse_time(v.get("acknowledged_at"))),
                _ => (model::TRIGGERED, None),
            }
        }
        None => return Err(missing("the incident's provider")),
    };
    Ok((
        status,
        at.unwrap_or_else(|| state.now_ms()).max(inc.status_at),
    ))
}

/// What the click's verb asks the incident to become.
fn target(verb: &str) -> &'static str {
    if verb == model::RESOLVE {
        model::RESOLVED
    } else {
        model::ACKNOWLEDGED
    }
}

/// Decide from the current state whether the click may still act.
fn check(current: &'static str, at: i64, verb: &str, retry: bool) -> Result<(), Stop> {
    match (current, verb) {
        // Our own earlier attempt may have acted before its answer was lost.
        (c, v) if retry && c == target(v) => Err(Stop::Already { status: c, at }),
        (model::RESOLVED, _) => Err(Stop::Moved {
            status: current,
            at,
            why: "This incident was already resolved elsewhere, so nothing was sent (acknowledging it would have reopened it).".into(),
        }),
        (model::ACKNOWLEDGED, model::ACKNOWLEDGE) => Err(Stop::Moved {
            status: current,
            at,
            why: "This incident was already acknowledged elsewhere. Nothing was sent.".into(),
        }),
        _ => Ok(()),
    }
}

/// The state an action reached, credited to the person who clicked.
struct Done {
    status: &'static str,
    at: i64,
    by: Actor,
}

impl Done {
    fn reported(&self) -> Reported<'_> {
        Reported {
            status: self.status,
            at: self.at,
            by: &self.by,
        }
    }
}

/// Run a claimed Acknowledge or Resolve.
pub struct ActJob;

#[async_trait]
impl JobHandler for ActJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let req: ActRequest = job.payload().map_err(JobError::Permanent)?;
        let Some(inc) = claimed(state, &req).await? else {
            return Ok(());
        };
        let verb = inc.claim_action.clone().unwrap_or_default();
        let user = inc.claim_user.clone().unwrap_or_default();
        let result = attempt(state, &inc, &user, &verb, job.attempts > 1).await;
        match result {
            Ok(Some(done)) => finish(state, &inc, &req, &verb, Some(done.reported()), None).await,
            // Opsgenie accepted the request; the follow job decides.
            Ok(None) => Ok(()),
            Err(Stop::Already { status, at }) => {
                show(state, &inc, status, at).await?;
                finish(state, &inc, &req, &verb, None, None).await
            }
            Err(Stop::Moved { status, at, why }) => {
                show(state, &inc, status, at).await?;
                finish(state, &inc, &req, &verb, None, Some(why)).await
            }
            Err(Stop::Tell(why)) => finish(state, &inc, &req, &verb, None, Some(why)).await,
            Err(Stop::Retry(why)) => Err(JobError::from(anyhow::anyhow!("{why}"))),
        }
        .or_else(|e| retry_or_give_up(state, job, &inc, &req, &verb, e))
    }
}

/// Record the state the provider showed (it reached it elsewhere, by whom is not known).
async fn show(
    state: &AppState,
    inc: &Incident,
    status: &'static str,
    at: i64,
) -> Result<(), JobError> {
    let by = Actor::default();
    let r = Reported {
        status,
        at,
        by: &by,
    };
    let db = state.db();
    db.pager_report(db.pool(), &inc.id, &r, state.now_ms())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// A transient failure: retried, or on the last attempt the claim ends and the person is told.
fn retry_or_give_up(
    state: &AppState,
    job: &Job,
    inc: &Incident,
    req: &ActRequest,
    verb: &str,
    e: JobError,
) -> Result<(), JobError> {
    if !job.is_last_attempt() {
        return Err(e);
    }
    let (st, inc, req, verb) = (state.clone(), inc.clone(), req.clone(), verb.to_string());
    let why = format!(
        "The paging service did not answer ({e}). It is not known whether your {verb} reached it: check the incident before trying again."
    );
    state.tasks().spawn(async move {
        if let Err(e) = finish(&st, &inc, &req, &verb, None, Some(why)).await {
            warn!(error = %e, "ending a failed pager claim failed");
        }
    });
    Err(e)
}

/// Read the state, then call the provider. `Ok(Some(done))` when done, `Ok(None)` when
/// accepted for later (Opsgenie), `Err(Stop)` when nothing was sent or it must be retried.
async fn attempt(
    state: &AppState,
    inc: &Incident,
    user: &str,
    verb: &str,
    retry: bool,
) -> Result<Option<Done>, Stop> {
    let (status, at) = current(state, inc).await.map_err(refusal_or_retry)?;
    check(status, at, verb, retry)?;
    let who = state
        .authz()
        .identity(user)
        .await
        .map_err(|e| Stop::Retry(format!("Slack could not say who clicked: {e}")))?;
    let to = target(verb);
    let at = match call(state, inc, verb, &who).await? {
        Called::At(at) => at.unwrap_or_else(|| state.now_ms()),
        Called::Accepted => return Ok(None),
    };
    Ok(Some(Done {
        status: to,
        at,
        by: Actor {
            name: Some(who.name.clone()),
            email: who.email.clone(),
            slack: Some(user.to_string()),
        },
    }))
}

/// What a provider call gave.
enum Called {
    /// Done, at the provider's time if it said.
    At(Option<i64>),
    /// Accepted for later processing (Opsgenie's 202).
    Accepted,
}

/// Call the incident's provider as `who`.
async fn call(
    state: &AppState,
    inc: &Incident,
    verb: &str,
    who: &crate::authz::Identity,
) -> Result<Called, Stop> {
    let p = &state.oncall().providers;
    let id = inc.incident_id.as_str();
    let resolve = verb == model::RESOLVE;
    match inc.provider() {
        Some(PagerProvider::Pagerduty) => {
            let Some(email) = who.email.as_deref() else {
                return Err(Stop::Tell("Your Slack profile shows no email, and PagerDuty needs one to know who acts. Nothing was sent.".into()));
            };
            let pd = p.pagerduty.as_ref().ok_or_else(not_configured)?;
            let v = pd
                .set_status(id, target(verb), email)
                .await
                .map_err(refusal_or_retry)?;
            Ok(Called::At(parse_time(v.get("last_status_change_at"))))
        }
        Some(PagerProvider::Opsgenie) => {
            let og = p.opsgenie.as_ref().ok_or_else(not_configured)?;
            let person = who.email.clone().unwrap_or_else(|| who.name.clone());
            let action = if resolve { "close" } else { "acknowledge" };
            let note = format!("{verb} from Slack by {}", who.name);
            let rid = og
                .alert_action(id, action, &person, &note)
                .await
                .map_err(refusal_or_retry)?;
            follow(state, inc, &rid).await?;
            Ok(Called::Accepted)
        }
        Some(PagerProvider::GrafanaOncall) => {
            let g = p.grafana.as_ref().ok_or_else(not_configured)?;
            let action = if resolve { "resolve" } else { "acknowledge" };
            g.alert_group_action(id, action)
                .await
                .map_err(refusal_or_retry)?;
            Ok(Called::At(None))
        }
        None => Err(not_configured()),
    }
}

fn not_configured() -> Stop {
    Stop::Tell("This paging service's API is not configured on slackops, so nothing was sent. Ask your slackops operators.".into())
}

/// A transient failure is retried by the queue; a refusal is told to the person.
fn refusal_or_retry(e: ProviderError) -> Stop {
    if e.is_transient() {
        Stop::Retry(e.to_string())
    } else {
        Stop::Tell(explain(&e))
    }
}

/// What to tell the person about a provider's refusal.
fn explain(e: &ProviderError) -> String {
    match e {
        ProviderError::Refused {
            provider,
            status,
            message,
        } => {
            let hint = if message.contains("Requester User Not Found") || message.contains("From") {
                " Your Slack email is not a user of the PagerDuty account."
            } else if *status == 401 || *status == 403 {
                " slackops's token may lack write access: acknowledging needs a token with write access."
            } else {
                ""
            };
            format!("{provider} refused it (HTTP {status}: {message}).{hint} Nothing changed.")
        }
        other => format!("{other}. Nothing changed."),
    }
}

/// Remember Opsgenie's request id and queue the follow job.
async fn follow(state: &AppState, inc: &Incident, request_id: &str) -> Result<(), Stop> {
    let claimed_at = inc.claimed_at.unwrap_or_default();
    let store = |e: sqlx::Error| Stop::Retry(crate::store::short_db_error(&e));
    state
        .db()
        .pager_set_request(&inc.id, claimed_at, request_id)
        .await
        .map_err(store)?;
    let check = state.settings().pager.opsgenie.request_check_ms as i64;
    let job = NewJob::new(
        JOB_FOLLOW,
        &ActRequest {
            id: inc.id.clone(),
            claimed_at,
        },
    )
    .dedup(format!("{JOB_FOLLOW}:{}:{claimed_at}", inc.id))
    .run_at(state.now_ms() + check);
    state.jobs().enqueue(job).await.map_err(store)?;
    Ok(())
}

/// End the claim: show the state reached (credited to the person) or tell them why not, then
/// render.
async fn finish(
    state: &AppState,
    inc: &Incident,
    req: &ActRequest,
    verb: &str,
    done: Option<Reported<'_>>,
    tell: Option<String>,
) -> Result<(), JobError> {
    let provider = inc.provider.as_str();
    let user = inc.claim_user.clone().unwrap_or_default();
    let released = state
        .db()
        .pager_release(&inc.id, req.claimed_at, done.as_ref(), state.now_ms())
        .await
        .map_err(db_err)?;
    if !released {
        return Ok(());
    }
    let outcome = if done.is_some() { "done" } else { "not_done" };
    state.metrics().pager_action(provider, verb, outcome);
    state
        .audit(
            FEATURE,
            verb,
            &user,
            &inc.subject(),
            outcome,
            json!({"reason": tell}),
        )
        .await;
    info!(incident = %inc.id, verb, outcome, "pager action finished");
    if let (Some(text), Some(channel)) = (&tell, &inc.channel)
        && let Err(e) = state
            .slack()
            .post_ephemeral(channel, &user, &Mrkdwn::text(text), None)
            .await
    {
        warn!(error = %e, "telling the person why their click did nothing failed");
    }
    render_now(state, &inc.id).await
}

/// Follow an Opsgenie request until it is processed.
pub struct FollowJob;

#[async_trait]
impl JobHandler for FollowJob {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError> {
        let req: ActRequest = job.payload().map_err(JobError::Permanent)?;
        let Some(inc) = claimed(state, &req).await? else {
            return Ok(());
        };
        let (Some(rid), Some(og)) = (&inc.request_id, &state.oncall().providers.opsgenie) else {
            return Ok(());
        };
        let verb = inc.claim_action.clone().unwrap_or_default();
        let settings = &state.settings().pager.opsgenie;
        match og.request_status(rid).await {
            Ok(Some((true, _))) => {
                let user = inc.claim_user.clone().unwrap_or_default();
                let who = state.authz().identity(&user).await.ok();
                let by = Actor {
                    name: who.as_ref().map(|w| w.name.clone()),
                    email: who.as_ref().and_then(|w| w.email.clone()),
                    slack: Some(user),
                };
                let r = Reported {
                    status: target(&verb),
                    at: state.now_ms(),
                    by: &by,
                };
                finish(state, &inc, &req, &verb, Some(r), None).await
            }
            Ok(Some((false, status))) => {
                let why = format!("Opsgenie did not {verb} the alert: {status}. Nothing changed.");
                finish(state, &inc, &req, &verb, None, Some(why)).await
            }
            Ok(None)
                if state.now_ms() - req.claimed_at > settings.request_check_secs as i64 * 1000 =>
            {
                let why = format!(
                    "Opsgenie accepted your {verb} but has not processed it after {}s; check the alert in Opsgenie.",
                    settings.request_check_secs
                );
                finish(state, &inc, &req, &verb, None, Some(why)).await
            }
            Ok(None) => Err(JobError::NotYet(std::time::Duration::from_millis(
                settings.request_check_ms,
            ))),
            Err(e) if e.is_transient() => Err(JobError::from(anyhow::Error::from(e))),
            Err(e) => finish(state, &inc, &req, &verb, None, Some(explain(&e))).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(r: Result<(), Stop>) -> &'static str {
        match r {
            Ok(()) => "act",
            Err(Stop::Already { .. }) => "already",
            Err(Stop::Moved { .. }) => "moved",
            Err(Stop::Tell(_)) => "tell",
            Err(Stop::Retry(_)) => "retry",
        }
    }

    #[test]
    fn a_resolved_incident_is_never_acted_on_and_a_retry_recognises_its_own_work() {
        use model::{ACKNOWLEDGE, ACKNOWLEDGED, RESOLVE, RESOLVED, TRIGGERED};
        assert_eq!(stopped(check(TRIGGERED, 1, ACKNOWLEDGE, false)), "act");
        assert_eq!(stopped(check(ACKNOWLEDGED, 1, RESOLVE, false)), "act");
        assert_eq!(stopped(check(RESOLVED, 1, ACKNOWLEDGE, false)), "moved");
        assert_eq!(stopped(check(RESOLVED, 1, RESOLVE, false)), "moved");
        assert_eq!(stopped(check(ACKNOWLEDGED, 1, ACKNOWLEDGE, false)), "moved");
        // A retry after a lost answer: the provider already shows the click's outcome.
        assert_eq!(stopped(check(RESOLVED, 1, RESOLVE, true)), "already");
        assert_eq!(
            stopped(check(ACKNOWLEDGED, 1, ACKNOWLEDGE, true)),
            "already"
        );
        assert_eq!(stopped(check(RESOLVED, 1, ACKNOWLEDGE, true)), "moved");
    }
}
