//! `slackops oncall sync [--dry-run] [--group HANDLE]…`: run the sync once and print the plan
//! per group (added, removed, unchanged, missing in Slack). With `--dry-run` nothing changes:
//! no Slack write, no database write, no notice. Without it the run takes the same lease as the
//! periodic sync, so it never writes at the same time as a running service, and it delivers the
//! shift notices it queued before exiting (what it cannot deliver in 30 s stays queued for the
//! service). Exit status: 0 when every group synced, 1 when one failed or another sync was running.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use super::sync::{SyncError, SyncOptions, render, sync};
use crate::startup::Application;

#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Sync the on-call user groups once and print the plan per group.
    Sync {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only this group (handle, with or without @); may be repeated.
        #[arg(long = "group", value_name = "HANDLE")]
        groups: Vec<String>,
    },
}

/// Run `command` on `app` (built without periodic tasks, see [`crate::cli`]).
pub async fn run(app: Application, command: OncallCommand) -> ExitCode {
    let OncallCommand::Sync { dry_run, groups } = command;
    let state = app.state().clone();
    let opts = SyncOptions {
        dry_run,
        groups,
        actor: "cli".into(),
        due_only: false,
    };
    let stop = CancellationToken::new();
    // The worker delivers the notices this run queues.
    let service = (!dry_run).then(|| tokio::spawn(app.run_until(stop.clone())));
    let result = sync(&state, &opts).await;
    let code = match &result {
        Ok(report) => {
            print!("{}", render(report));
            let queued = report.groups.iter().filter(|g| g.announced).count();
            if queued > 0 {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while pending_notices(&state).await > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let left = pending_notices(&state).await;
                if left > 0 {
                    println!(
                        "{left} shift notice(s) still queued; the running service delivers them"
                    );
                }
            }
            if report.failures() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e @ SyncError::UnknownGroup(..)) => {
            eprintln!("slackops: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("slackops: {e:#}");
            ExitCode::FAILURE
        }
    };
    stop.cancel();
    if let Some(s) = service {
        let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
    }
    code
}

async fn pending_notices(state: &crate::state::AppState) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')
           AND kind IN ('oncall.notice', 'oncall.dm', 'oncall.alert')",
    )
    .fetch_one(state.db().pool())
    .await
    .unwrap_or(0)
}
