//! The in-memory snapshot behind the status page: what each replica serves `/status` from.
//!
//! Requests only ever read it; the refresher ([`super::snapshot`]) writes it. It sits below the
//! feature's handlers and the shared state holds it, so it imports nothing that reaches the
//! state. It must never be filled from anything but the store's public outages and windows.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::maintenance::model::Maintenance;

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

/// The per-replica cache; lives in [`crate::state::AppState`].
#[derive(Debug, Default)]
pub struct StatusCache {
    inner: RwLock<Inner>,
    /// Woken by [`StatusCache::refresh_soon`]; the refresher waits on it.
    pub(crate) wake: Notify,
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

    /// How old the snapshot served is at `now` (clock ms); `None` before the first load.
    pub fn age_ms(&self, now: i64) -> Option<i64> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.snapshot.as_ref().map(|s| (now - s.loaded_at).max(0))
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

    pub(crate) fn store(&self, snapshot: Snapshot) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.snapshot = Some(Arc::new(snapshot));
        g.failing_since = None;
        g.last_error = None;
    }

    pub(crate) fn failed(&self, now: i64, error: String) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.failing_since.get_or_insert(now);
        g.last_error = Some(error);
    }
}
