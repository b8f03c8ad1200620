//! How the status page's snapshot is loaded: each replica refreshes its [`StatusCache`](super::cache::StatusCache) from the
//! store in the background (every `status.refresh_interval_ms`, and at once after a local
//! change). When the store is unreachable the last snapshot keeps being served, and the cache
//! records since when refreshing fails so the page can say how old it is.

use std::collections::HashMap;
use std::time::Duration;

use super::cache::{OutageEntry, Snapshot};
use crate::state::AppState;

#[derive(Debug, sqlx::FromRow)]
struct OutageRow {
    id: String,
    summary: String,
    systems: String,
    severity: String,
    state: String,
    started_at: i64,
    resolved_at: Option<i64>,
    eta: String,
    updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct UpdateRow {
    outage_id: String,
    at: i64,
    reason: Option<String>,
}

/// Load a snapshot: open public outages, public outages resolved within the history or the
/// uptime bars' period (whichever is longer, plus a day for the time zone), and public maintenance
/// windows not canceled that end within or after it. The page picks the history and the bars
/// out of it, so it never asks the database.
pub async fn load(state: &AppState) -> Result<Snapshot, sqlx::Error> {
    let now = state.now_ms();
    let since = now - (i64::from(state.settings().status.kept_days()) + 1) * 86_400_000;
    let pool = state.db().pool();
    let rows: Vec<OutageRow> = sqlx::query_as(
        "SELECT id, summary, systems, severity, state, started_at, resolved_at, eta, updated_at
         FROM outages
         WHERE public = 1 AND (state = 'open' OR resolved_at >= $1)
         ORDER BY started_at DESC, id
         LIMIT 5000",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    // The latest update of each of those outages: its newest history row that has a reason.
    let updates: Vec<UpdateRow> = sqlx::query_as(
        "SELECT h.outage_id, h.at, h.reason
         FROM outage_history h
         JOIN (SELECT outage_id, MAX(seq) AS seq FROM outage_history
               WHERE reason IS NOT NULL AND reason <> ''
               GROUP BY outage_id) latest
           ON latest.outage_id = h.outage_id AND latest.seq = h.seq
         JOIN outages o ON o.id = h.outage_id
         WHERE o.public = 1 AND (o.state = 'open' OR o.resolved_at >= $1)",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut latest: HashMap<String, (i64, String)> = updates
        .into_iter()
        .filter_map(|u| Some((u.outage_id, (u.at, u.reason?))))
        .collect();
    let outages = rows
        .into_iter()
        .map(|r| OutageEntry {
            latest_update: latest.remove(&r.id),
            systems: serde_json::from_str(&r.systems).unwrap_or_default(),
            id: r.id,
            summary: r.summary,
            severity: r.severity,
            state: r.state,
            started_at: r.started_at,
            resolved_at: r.resolved_at,
            eta: r.eta,
            updated_at: r.updated_at,
        })
        .collect();
    let maintenances = state
        .db()
        .maintenances_ending_after(since, true, 5000)
        .await?;
    Ok(Snapshot {
        loaded_at: now,
        outages,
        maintenances,
    })
}

/// Load once and store the result (or record the failure, keeping the last snapshot).
pub async fn refresh(state: &AppState) {
    let cache = state.status();
    let limit = Duration::from_secs(10);
    match tokio::time::timeout(limit, load(state)).await {
        Ok(Ok(s)) => {
            if cache.last_error().is_some() {
                tracing::info!("status page snapshot refreshed again");
            }
            cache.store(s)
        }
        Ok(Err(e)) => {
            let why = crate::store::short_db_error(&e);
            if cache.last_error().is_none() {
                tracing::warn!(error = %why, "cannot refresh the status page snapshot; serving the last one");
            }
            cache.failed(state.now_ms(), why);
        }
        Err(_) => {
            if cache.last_error().is_none() {
                tracing::warn!(
                    "refreshing the status page snapshot timed out; serving the last one"
                );
            }
            cache.failed(state.now_ms(), "timed out".into());
        }
    }
}

/// Refresh every `status.refresh_interval_ms` and when asked, until `stop`.
pub fn spawn_refresher(
    state: &AppState,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let every = Duration::from_millis(state.settings().status.refresh_interval_ms.max(100));
        loop {
            refresh(&state).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = state.status().wake.notified() => {}
                _ = stop.cancelled() => break,
            }
        }
    })
}
