//! The in-memory snapshot behind the status page, and how it is loaded.
//!
//! Each replica holds its own [`StatusCache`] and refreshes it from the store in the background
//! (every `status.refresh_interval_ms`, and at once after a local change). Requests only ever
//! read the cache: when the store is unreachable the last snapshot keeps being served, and the
//! cache remembers since when refreshing fails so the page can say how old it is.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::maintenance::model::Maintenance;
use crate::state::AppState;

/// An outage as the status page needs it (public outages only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageEntry {
    pub id: String,
    pub summary: String,
    pub systems: Vec<String>,
    /// `critical`, `major` or `minor`.
    pub severity: String,
    /// `open` or `resolved`.
    pub state: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    /// `30m`, `2h`, `8h`, `24h` or `unknown`.
    pub eta: String,
    pub updated_at: i64,
    /// The newest history entry with a reason: `(at, reason)`.
    pub latest_update: Option<(i64, String)>,
}

/// What the page shows, as loaded at `loaded_at`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub loaded_at: i64,
    pub outages: Vec<OutageEntry>,
    pub maintenances: Vec<Maintenance>,
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    /// Since when refreshing fails (clock ms), and why; cleared by the next success.
    failing_since: Option<i64>,
    last_error: Option<String>,
}

/// The per-replica cache; lives in [`AppState`].
#[derive(Debug, Default)]
pub struct StatusCache {
    inner: RwLock<Inner>,
    wake: Notify,
}

/// The cache's view for one request.
#[derive(Debug, Clone)]
pub struct Current {
    pub snapshot: Arc<Snapshot>,
    pub failing_since: Option<i64>,
}

impl StatusCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last snapshot, if one was ever loaded.
    pub fn current(&self) -> Option<Current> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.snapshot.clone().map(|snapshot| Current {
            snapshot,
            failing_since: g.failing_since,
        })
    }

    /// Why the last refresh failed, while it fails.
    pub fn last_error(&self) -> Option<String> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.last_error.clone()
    }

    /// Ask the refresher to reload now (after a local change).
    pub fn refresh_soon(&self) {
        self.wake.notify_one();
    }

    fn store(&self, snapshot: Snapshot) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.snapshot = Some(Arc::new(snapshot));
        g.failing_since = None;
        g.last_error = None;
    }

    fn failed(&self, now: i64, error: String) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.failing_since.get_or_insert(now);
        g.last_error = Some(error);
    }
}

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

/// Load a snapshot: open public outages, public outages resolved within the history, and public
/// maintenance windows not canceled that end within or after the history.
pub async fn load(state: &AppState) -> Result<Snapshot, sqlx::Error> {
    let now = state.now_ms();
    let since = now - i64::from(state.settings().status.history_days) * 86_400_000;
    let pool = state.db().pool();
    let rows: Vec<OutageRow> = sqlx::query_as(
        "SELECT id, summary, systems, severity, state, started_at, resolved_at, eta, updated_at
         FROM outages
         WHERE public = 1 AND (state = 'open' OR resolved_at >= $1)
         ORDER BY started_at DESC, id
         LIMIT 500",
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
        .maintenances_ending_after(since, true, 500)
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
