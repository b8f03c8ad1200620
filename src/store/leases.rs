//! Named leases: "only one replica does this at a time" (the on-call sync, reconcilers).
//!
//! A lease is a row `(name, owner, until)`. Taking it is one conditional upsert that succeeds only
//! when the row is absent, expired, or already ours, so two replicas can never both hold it. A
//! holder that dies simply stops renewing; the lease expires and another replica takes over.
//!
//! How long a lease lives is sized to the work it guards ([`LeaseTiming::for_interval`]): one
//! interval, renewed (and, by the others, polled) every third of it, so a dead holder is replaced
//! within about one interval, never after a fixed minute or several intervals.

use std::time::Duration;

use super::Db;

/// The shortest lease: below this a slow database round trip could lose a live holder's lease.
const MIN_TTL: Duration = Duration::from_secs(1);

/// A lease's lifetime and how often its holder renews it (and the others try to take it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew_every: Duration,
}

impl LeaseTiming {
    /// For work done every `interval`: the lease lives one interval (at least a second) and is
    /// renewed every third of that. A holder that stops is replaced at most `ttl + renew_every`
    /// (4/3 of the interval) after its last renewal; one that shuts down releases it at once.
    pub fn for_interval(interval: Duration) -> Self {
        let ttl = interval.max(MIN_TTL);
        LeaseTiming {
            ttl,
            renew_every: ttl / 3,
        }
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// The longest a dead holder keeps others from the work: the bound the docs promise.
    pub fn takeover_bound(&self) -> Duration {
        self.ttl + self.renew_every
    }
}

impl Db {
    /// Take or renew the lease `name` for `owner` until `now_ms + ttl_ms`. True when held.
    pub async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let res = sqlx::query(
            "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
             WHERE leases.until < $4 OR leases.owner = excluded.owner",
        )
        .bind(name)
        .bind(owner)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Give the lease up early (on shutdown or when the work is done), so another holder need
    /// not wait for it to expire.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lives_one_interval_and_is_renewed_every_third_of_it() {
        let t = LeaseTiming::for_interval(Duration::from_secs(300));
        assert_eq!(t.ttl, Duration::from_secs(300));
        assert_eq!(t.renew_every, Duration::from_secs(100));
        assert_eq!(t.takeover_bound(), Duration::from_secs(400));
        // Not a fixed minute for short intervals, nor twice the interval for long ones.
        let short = LeaseTiming::for_interval(Duration::from_secs(3));
        assert_eq!(short.ttl, Duration::from_secs(3));
        assert_eq!(short.takeover_bound(), Duration::from_secs(4));
        // A floor of one second for intervals shorter than a database round trip matters.
        assert_eq!(
            LeaseTiming::for_interval(Duration::from_millis(100)).ttl,
            Duration::from_secs(1)
        );
    }
}
