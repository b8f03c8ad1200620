//! The command line: `serve`, `migrate`, `version`, `openapi`, `check-config [--probe]`, `oncall sync`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::{ConfigSource, Settings, redacted_view};
use crate::startup::Application;
use crate::store::Db;

// The doc comments are also `--help`'s text, where `SLACKOPS_<SECTION>__<KEY>` is not HTML.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Parser)]
#[command(name = "slackops", version, about = "Spinnaker operations from Slack")]
pub struct Cli {
    /// The YAML configuration file (also SLACKOPS_CONFIG). Environment variables
    /// SLACKOPS_<SECTION>__<KEY> override it.
    #[arg(long, global = true, env = "SLACKOPS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the version.
    Version,
    /// Print the OpenAPI document of /api/v1 (as committed in docs/openapi.json).
    Openapi,
    /// Load and validate the configuration and print it with every secret redacted.
    CheckConfig {
        /// Also call Slack auth.test, Gate and the database to show which integrations work; in
        /// Socket Mode, also open one Slack connection and wait for its hello.
        #[arg(long)]
        probe: bool,
    },
    /// On-call user groups: `oncall sync [--dry-run] [--group HANDLE]`.
    Oncall {
        #[command(subcommand)]
        command: crate::oncall::cli::OncallCommand,
    },
}

/// Parse arguments and run; the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Version = cli.command {
        println!("slackops {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Command::Openapi = cli.command {
        print!("{}", crate::openapi::json());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(&ConfigSource::from_process(cli.config.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slackops: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::install_crypto_provider();
    match cli.command {
        Command::Version | Command::Openapi => ExitCode::SUCCESS,
        Command::Serve => {
            crate::telemetry::init(&settings.log);
            let result = async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            }
            .await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error.message = %e, error.cause_chain = ?e, "slackops failed");
                    eprintln!("slackops: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate => {
            crate::telemetry::init(&settings.log);
            let result = async {
                let db = Db::connect(&settings.database).await?;
                db.migrate().await
            }
            .await;
            match result {
                Ok(()) => {
                    println!("migrations applied to {}", settings.database.display_url());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("slackops: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Oncall { command } => oncall(settings, command).await,
        Command::CheckConfig { probe } => {
            let view = redacted_view(&settings);
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            if !probe {
                println!("configuration is valid");
                return ExitCode::SUCCESS;
            }
            let report = probe_integrations(&settings).await;
            println!(
                "{}",
                serde_json::to_string_pretty(&report.0).unwrap_or_default()
            );
            if report.1 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `oncall …`: the service without its periodic tasks, on a private port, logging to stderr.
async fn oncall(mut settings: Settings, command: crate::oncall::cli::OncallCommand) -> ExitCode {
    // Logs go to stderr: stdout is the plan.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // A private port: a service on this host may hold the configured one.
    settings.server.listen = "127.0.0.1:0".parse().expect("static address");
    let app = match Application::builder(settings)
        .without_periodic()
        .build()
        .await
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("slackops: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    crate::oncall::cli::run(app, command).await
}

/// Call each integration once; `(report, all_ok)`.
pub async fn probe_integrations(settings: &Settings) -> (serde_json::Value, bool) {
    use std::sync::Arc;

    let metrics = Arc::new(crate::metrics::Metrics::new());
    let http = reqwest::Client::new();
    let mut all_ok = true;
    let mut probe = serde_json::Map::new();

    let slack = crate::slack::api::SlackApi::new(&settings.slack, http, metrics.clone());
    if settings.slack.mode == crate::config::SlackMode::Socket {
        let socket = crate::slack::socket::probe::probe(&slack, &settings.slack).await;
        if socket["ok"] != true {
            all_ok = false;
        }
        probe.insert("slack_socket_mode".into(), socket);
    }
    let slack_result = match slack.auth_test().await {
        Ok(a) => {
            json!({"ok": true, "team": a.team, "team_id": a.team_id, "bot_user": a.user, "bot_user_id": a.user_id})
        }
        Err(e) => {
            all_ok = false;
            json!({"ok": false, "error": e.to_string()})
        }
    };
    probe.insert("slack".into(), slack_result);

    let gate_result = match crate::spinnaker::gate::GateClient::new(&settings.spinnaker, metrics) {
        Ok(gate) => match gate.whoami().await {
            Ok(user) => {
                json!({"ok": true, "url": settings.spinnaker.gate_url.as_str(), "authenticated_as": user.get("username").cloned().unwrap_or(serde_json::Value::Null)})
            }
            Err(e) => {
                all_ok = false;
                json!({"ok": false, "url": settings.spinnaker.gate_url.as_str(), "error": e.to_string()})
            }
        },
        Err(e) => {
            all_ok = false;
            json!({"ok": false, "error": e.to_string()})
        }
    };
    probe.insert("gate".into(), gate_result);

    let db_result = match Db::connect(&settings.database).await {
        Ok(db) => match db.readiness().await {
            Ok(()) => json!({"ok": true, "url": settings.database.display_url()}),
            Err(reason) => {
                json!({"ok": false, "url": settings.database.display_url(), "error": reason, "hint": "run `slackops migrate` (serve also migrates at start)"})
            }
        },
        Err(e) => {
            json!({"ok": false, "url": settings.database.display_url(), "error": format!("{e:#}")})
        }
    };
    if db_result["ok"] != true {
        all_ok = false;
    }
    probe.insert("database".into(), db_result);
    (json!({"probe": probe}), all_ok)
}
