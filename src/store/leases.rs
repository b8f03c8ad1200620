//! Named leases: "only one replica does this at a time" (the on-call sync, reconcilers).
//!
//! A lease is a row `(name, owner, until)`. Taking it is one conditional upsert that succeeds only
//! when the row is absent, expired, or already ours, so two replicas can never both hold it. A
//! holder that dies simply stops renewing; the lease expires and another replica takes over.

use super::Db;

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

    /// Give the lease up early (on shutdown or when the work is done).
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
