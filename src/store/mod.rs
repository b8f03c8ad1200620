//! Storage: one schema, one set of queries, on SQLite (the embedded default, one replica) and
//! PostgreSQL (several replicas).
//!
//! Queries go through sqlx's `Any` driver with portable SQL (`$N` parameters, `ON CONFLICT`,
//! `RETURNING`, times as Unix milliseconds), so every guarantee is tested on both engines with the
//! same code. Concurrency guarantees come from the database, never from in-process locks: a unique
//! key or a conditional `UPDATE … WHERE state = …` decides who wins, which holds across replicas.
//! Migrations are embedded in the binary and applied at start and by `slackops migrate`.

pub mod audit;
pub mod leases;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::config::DatabaseSettings;

/// The embedded migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A cheap handle to the connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connect (creating the SQLite file if needed). Does not migrate.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let raw = settings.url.expose();
        let (url, backend) = if raw.starts_with("sqlite:") {
            (sqlite_url(raw), Backend::Sqlite)
        } else {
            (raw.to_string(), Backend::Postgres)
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database.url {} is not valid", settings.display_url()))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let mut pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(settings.connect_timeout_secs));
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the single writer; busy_timeout makes writers queue for
            // the lock instead of failing with SQLITE_BUSY.
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to database {}", settings.display_url()))?;
        Ok(Db { pool, backend })
    }

    /// Apply the embedded migrations (idempotent; PostgreSQL serialises concurrent runs with an
    /// advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Reachable and fully migrated: what `/readyz` reports.
    pub async fn readiness(&self) -> Result<(), String> {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| {
                    format!(
                        "database unreachable or not migrated: {}",
                        short_db_error(&e)
                    )
                })?;
        match applied {
            Some(v) if v >= latest => Ok(()),
            Some(v) => Err(format!("migrations pending: applied {v}, latest {latest}")),
            None => Err("migrations not applied".into()),
        }
    }
}

/// `sqlite://file.db` must be told to create the file; `sqlite::memory:` and explicit modes are kept.
fn sqlite_url(raw: &str) -> String {
    if raw.contains("mode=") || raw.contains(":memory:") {
        raw.to_string()
    } else if raw.contains('?') {
        format!("{raw}&mode=rwc")
    } else {
        format!("{raw}?mode=rwc")
    }
}

/// A database error without query text or parameters, for logs and health output.
pub fn short_db_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!("database error: {}", d.message()),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::Io(io) => format!("i/o error: {io}"),
        other => other.to_string(),
    }
}

/// True when an insert lost to a unique key.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.code().as_deref() == Some("23505")
                || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// A new sortable unique id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file_unless_told_otherwise() {
        assert_eq!(sqlite_url("sqlite://x.db"), "sqlite://x.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://x.db?cache=shared"),
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
