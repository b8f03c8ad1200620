//! Reminders that remember what they sent (Phoenix kept no state and repeated its DM every run
//! after the ETA passed).
//!
//! A periodic task, run by one replica at a time under the `announcements.reminders` lease and
//! reading time from the injected clock, looks at every open outage:
//! - `remind_before_eta_mins` before the ETA runs out, each assignee gets a DM — once per ETA
//!   (the occasion is the deadline, so a new ETA gets its own reminder);
//! - once the ETA has passed, each assignee gets one prompt with Update and Snooze buttons — once
//!   per ETA, and once more after each snooze;
//! - after `nudge_after_mins` without an update, the communication assignee is nudged — once per
//!   quiet interval.
//!
//! "Sent" is a row in `outage_reminders` inserted in the same transaction as the DM jobs, so a
//! reminder is queued exactly once however often or wherever the task runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::message;
use super::modal::outage_for_action;
use super::model::{self, Outage};
use super::payload::Dm;
use super::{JOB_DM, model::COLUMNS, model::OutageRow};
use crate::jobs::NewJob;
use crate::mrkdwn;
use crate::registry::{ActionHandler, Periodic, SlackCtx};
use crate::slack::ack::{Ack, Reply};
use crate::slack::blocks;
use crate::slack::payload::{Action, Interaction};
use crate::state::AppState;

pub const TASK: &str = "announcements.reminders";

pub struct Reminders;

#[async_trait]
impl Periodic for Reminders {
    fn name(&self) -> &'static str {
        TASK
    }
    fn interval(&self, state: &AppState) -> Option<Duration> {
        Some(Duration::from_secs(
            state.settings().announcements.reminder_check_secs.max(1),
        ))
    }
    async fn run(&self, state: &AppState) -> anyhow::Result<()> {
        check(state).await?;
        super::alerts::auto_resolve(state).await?;
        super::postmortem::remind(state).await?;
        Ok(())
    }
}

/// Record the reminder `(kind, occasion)` for `o` and queue its DMs, once. True when queued now.
async fn once(
    state: &AppState,
    o: &Outage,
    kind: &str,
    occasion: &str,
    dms: Vec<Dm>,
) -> anyhow::Result<bool> {
    let mut tx = state.db().pool().begin().await?;
    let res = sqlx::query(
        "INSERT INTO outage_reminders (outage_id, kind, occasion, sent_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(&o.id)
    .bind(kind)
    .bind(occasion)
    .bind(state.now_ms())
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() != 1 {
        return Ok(false);
    }
    for dm in dms {
        let key = format!("announcements:dm:{}:{kind}:{occasion}:{}", o.id, dm.user);
        state
            .jobs()
            .insert(&mut *tx, NewJob::new(JOB_DM, &dm).dedup(key))
            .await?;
    }
    tx.commit().await?;
    state.jobs().wake();
    Ok(true)
}

/// One pass over the open outages. Returns how many reminders were queued.
pub async fn check(state: &AppState) -> anyhow::Result<usize> {
    let settings = &state.settings().announcements;
    let now = state.now_ms();
    let before_ms = settings.remind_before_eta_mins as i64 * 60_000;
    let nudge_ms = settings.nudge_after_mins as i64 * 60_000;
    let rows: Vec<OutageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outages WHERE state = 'open' ORDER BY started_at"
    )))
    .fetch_all(state.db().pool())
    .await?;
    let mut queued = 0;
    for o in rows.into_iter().map(Outage::from) {
        if let Some(deadline) = o.eta_deadline() {
            if before_ms > 0 && now >= deadline - before_ms && now < deadline {
                let text = message::before_eta_dm(&o, settings, deadline);
                let dms = o
                    .assignees()
                    .into_iter()
                    .map(|user| Dm {
                        user,
                        text: text.clone(),
                        blocks: None,
                    })
                    .collect();
                queued +=
                    usize::from(once(state, &o, "before_eta", &deadline.to_string(), dms).await?);
            }
            let snoozed = o.eta_snoozed_until.unwrap_or(0);
            if now >= deadline && now >= snoozed {
                let (text, b) = message::eta_passed_prompt(&o, settings);
                let dms = o
                    .assignees()
                    .into_iter()
                    .map(|user| Dm {
                        user,
                        text: text.clone(),
                        blocks: Some(b.clone()),
                    })
                    .collect();
                queued += usize::from(
                    once(
                        state,
                        &o,
                        "eta_passed",
                        &format!("{deadline}:{snoozed}"),
                        dms,
                    )
                    .await?,
                );
            }
        }
        let quiet = now - o.last_update_at;
        if nudge_ms > 0 && quiet >= nudge_ms {
            let period = quiet / nudge_ms;
            let dm = Dm {
                user: o.fields.communication_assignee.clone(),
                text: message::nudge_dm(&o, settings, quiet),
                blocks: None,
            };
            queued += usize::from(
                once(
                    state,
                    &o,
                    "nudge",
                    &format!("{}:{period}", o.last_update_at),
                    vec![dm],
                )
                .await?,
            );
        }
    }
    Ok(queued)
}

/// Snooze on the ETA-passed prompt: ask again after `snooze_mins`. The announcement itself does
/// not change (the ETA shown stays what was announced).
pub struct Snooze;

#[async_trait]
impl ActionHandler for Snooze {
    async fn handle(
        &self,
        cx: SlackCtx,
        _interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack> {
        let state = &cx.state;
        let o = match outage_for_action(state, &cx.user_id, &action, "snooze").await? {
            Ok(o) => o,
            Err(ack) => return Ok(ack),
        };
        if !o.is_open() {
            return Ok(Ack::ephemeral(
                "This outage is resolved; nothing to snooze.",
            ));
        }
        let until = state.now_ms() + state.settings().announcements.snooze_mins as i64 * 60_000;
        sqlx::query("UPDATE outages SET eta_snoozed_until = $1 WHERE id = $2 AND state = $3")
            .bind(until)
            .bind(&o.id)
            .bind(model::OPEN)
            .execute(state.db().pool())
            .await?;
        state
            .audit(
                super::FEATURE,
                "snooze",
                &cx.user_id,
                &format!("outage:{}", o.id),
                "ok",
                json!({"until": until}),
            )
            .await;
        Ok(Ack::Message(
            Reply::ephemeral(mrkdwn!(
                ":zzz: Snoozed: you will be asked again {} unless the ETA is updated.",
                blocks::date(until),
            ))
            .replace_original(),
        ))
    }
}
