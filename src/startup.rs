//! Building and running the service: state, router, job worker, periodic tasks, graceful shutdown.
//!
//! [`Application::build`] connects and migrates the database, registers every feature, binds the
//! listener and reports the bound port, so tests run the real service on port 0. [`router`] is a
//! pure function of prepared state. In Socket Mode it also holds the outbound connections to Slack
//! ([`slack::socket`]). On SIGTERM or Ctrl-C the service stops accepting (and stops reading
//! Socket Mode envelopes), finishes in-flight requests and acks, background handler tasks and
//! running jobs, closes the sockets, bounded by
//! `server.shutdown_timeout_secs`; jobs still running then keep their rows and are resumed by any
//! replica once their lease expires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, info_span, warn};

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Settings, SlackMode};
use crate::jobs::worker::Worker;
use crate::registry::Registry;
use crate::state::{AppState, StateParts};
use crate::store::Db;
use crate::{features, http, slack, spinnaker};

type RegistryHook = Box<dyn FnOnce(&mut Registry) + Send>;

/// Options beyond the configuration, for tests and benchmarks.
pub struct ApplicationBuilder {
    settings: Settings,
    clock: Option<SharedClock>,
    hooks: Vec<RegistryHook>,
    run_worker: bool,
    run_periodic: bool,
}

impl ApplicationBuilder {
    /// Use this clock instead of the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Add handlers to the registry after the features registered theirs.
    pub fn register(mut self, hook: impl FnOnce(&mut Registry) + Send + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }
    /// Do not run the job worker in this process (tests that drive the queue by hand).
    pub fn without_worker(mut self) -> Self {
        self.run_worker = false;
        self
    }
    /// Do not run periodic tasks (pollers, reconcilers, syncs) in this process.
    pub fn without_periodic(mut self) -> Self {
        self.run_periodic = false;
        self
    }

    pub async fn build(self) -> anyhow::Result<Application> {
        crate::telemetry::install_crypto_provider();
        let settings = self.settings;
        let db = Db::connect(&settings.database).await?;
        db.migrate().await?;

        let mut registry = Registry::default();
        features::register_all(&mut registry, &settings);
        for hook in self.hooks {
            hook(&mut registry);
        }

        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("slackops/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;

        let listen = settings.server.listen;
        let state = AppState::new(StateParts {
            settings,
            db,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            registry: Arc::new(registry),
            http,
        })?;
        http::preset_metrics(&state);
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
        let addr = listener.local_addr()?;
        Ok(Application {
            listener,
            addr,
            state,
            run_worker: self.run_worker,
            run_periodic: self.run_periodic,
        })
    }
}

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    run_worker: bool,
    run_periodic: bool,
}

impl Application {
    pub fn builder(settings: Settings) -> ApplicationBuilder {
        ApplicationBuilder {
            settings,
            clock: None,
            hooks: Vec::new(),
            run_worker: true,
            run_periodic: true,
        }
    }

    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::builder(settings).build().await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Run until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            signal_stop.cancel();
        });
        self.run_until(stop).await
    }

    /// Run until `stop` is cancelled, then shut down gracefully.
    pub async fn run_until(self, stop: CancellationToken) -> anyhow::Result<()> {
        let state = self.state.clone();
        let grace = Duration::from_secs(state.settings().server.shutdown_timeout_secs);
        info!(address = %self.addr, database = ?state.db().backend(), "slackops listening");

        let worker = self.run_worker.then(|| {
            let w = Worker::new(state.clone());
            tokio::spawn(w.run(stop.clone(), grace))
        });
        let periodic = if self.run_periodic {
            features::spawn_periodic(&state, stop.clone())
        } else {
            Vec::new()
        };
        // Every replica keeps its own status page snapshot, periodic tasks or not.
        let status_refresher = crate::status::spawn_refresher(&state, stop.clone());
        // Socket Mode: outbound connections to Slack instead of the /slack/* routes.
        let socket = (state.settings().slack.mode == SlackMode::Socket)
            .then(|| tokio::spawn(slack::socket::run(state.clone(), stop.clone())));

        let app = router(state.clone());
        let server =
            // The peer address is what the status page's subscribe limit counts by.
            axum::serve(
                self.listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });

        stop.cancelled().await;
        let drained = tokio::time::timeout(grace, async {
            let _ = server.await;
            if let Some(w) = worker {
                let _ = w.await;
            }
            for p in periodic {
                let _ = p.await;
            }
            let _ = status_refresher.await;
            if let Some(s) = socket {
                let _ = s.await;
            }
            state.tasks().close();
            state.tasks().wait().await;
        })
        .await;
        if drained.is_err() {
            warn!(
                grace_secs = grace.as_secs(),
                "shutdown grace period ended before all work finished; unfinished jobs resume from the queue"
            );
        }
        info!("slackops stopped");
        Ok(())
    }
}

/// Slack's HTTP transport. In Socket Mode nothing calls these, so they are not mounted (404).
fn slack_routes(mode: SlackMode) -> Router<AppState> {
    match mode {
        SlackMode::Http => Router::new()
            .route("/slack/commands", post(slack::routes::commands))
            .route("/slack/interactions", post(slack::routes::interactions))
            .route("/slack/events", post(slack::routes::events)),
        SlackMode::Socket => Router::new(),
    }
}

/// The HTTP surface, as a pure function of the state.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(slack_routes(state.settings().slack.mode))
        .route("/spinnaker/events", post(spinnaker::echo::receive))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .merge(features::routes())
        .layer(middleware::from_fn_with_state(state.clone(), http::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    info_span!(
                        "request",
                        method = %req.method(),
                        route,
                        request_id = id,
                        slack.team = tracing::field::Empty,
                        slack.user = tracing::field::Empty,
                        echo.type = tracing::field::Empty,
                    )
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Duration::from_secs(30),
                )),
        )
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
