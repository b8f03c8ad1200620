//! One Socket Mode connection, from `apps.connections.open` to its close.
//!
//! [`open`] asks Slack for a fresh single-use URL, performs the WebSocket handshake and waits for
//! `hello`: only then is the connection up. [`spawn`] then runs it: every envelope is dispatched
//! in its own task (the reader never waits for a handler) and acknowledged through the writer;
//! Slack's pings are answered and ours time out a connection that went deaf; a `disconnect`
//! `warning` / `refresh_requested` asks the slot for a replacement; once the slot has one, this
//! connection drains (keeps serving until Slack stops routing to it and its acks are out) and
//! closes cleanly. On shutdown it stops reading, lets in-flight acks finish and closes.
//!
//! The URL carries a ticket and the token is a credential: neither is ever logged or put in an
//! error. Handshake errors are rewritten so that no library message can echo the URL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::envelope::{self, Answer};
use super::protocol::{self, DisconnectReason, Envelope, Hello, Inbound};
use crate::config::SlackSettings;
use crate::slack::api::{SlackApi, SlackError};
use crate::state::AppState;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long Slack has to say `hello` after the handshake.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose pongs stop for this many ping intervals is replaced.
const MISSED_PONGS: u32 = 4;
/// How long a connection told to drain waits for Slack's `refresh_requested` or close before it
/// closes itself (Slack warns about 10 s ahead).
const DRAIN_CAP: Duration = Duration::from_secs(15);
/// How long the close handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Outgoing frames queued per connection.
const QUEUE: usize = 4096;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("apps.connections.open failed: {0}")]
    Api(SlackError),
    #[error("{0}")]
    Handshake(String),
    #[error("no hello within {}s", HELLO_TIMEOUT.as_secs())]
    HelloTimeout,
    #[error("Slack refused the connection before hello: {}", .0.as_str())]
    Refused(DisconnectReason),
    #[error("Slack closed the connection before hello")]
    Closed,
}

impl OpenError {
    /// The `reason` label of the reconnect this failure causes.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Api(_) if self.is_configuration() => "auth_failed",
            OpenError::Api(_) => "open_failed",
            OpenError::Handshake(_) | OpenError::Closed => "handshake_failed",
            OpenError::HelloTimeout => "hello_timeout",
            OpenError::Refused(DisconnectReason::TooManyWebsockets) => "too_many_websockets",
            OpenError::Refused(DisconnectReason::LinkDisabled) => "link_disabled",
            OpenError::Refused(_) => "disconnect",
        }
    }

    /// Retrying cannot help until an operator fixes the token or the app's settings.
    pub fn is_configuration(&self) -> bool {
        match self {
            OpenError::Api(e) => e.code().is_some_and(|c| {
                c.is_configuration() || matches!(c.as_str(), "not_allowed_token_type")
            }),
            OpenError::Refused(DisconnectReason::LinkDisabled) => true,
            _ => false,
        }
    }

    /// Slack's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OpenError::Api(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// A connection that received `hello`, not yet running.
pub struct Opened {
    pub hello: Hello,
    ws: Ws,
}

/// Ask for a fresh URL, connect, and wait for `hello`.
pub async fn open(api: &SlackApi, settings: &SlackSettings) -> Result<Opened, OpenError> {
    let url = api.apps_connections_open().await.map_err(OpenError::Api)?;
    let scheme_ok = ["wss://", "ws://"]
        .iter()
        .any(|s| url.expose().starts_with(s));
    if !scheme_ok {
        return Err(OpenError::Handshake(
            "apps.connections.open returned a URL that is not ws:// or wss://".into(),
        ));
    }
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(settings.max_body_bytes);
    config.max_frame_size = Some(settings.max_body_bytes);
    let handshake = tokio_tungstenite::connect_async_with_config(url.expose(), Some(config), true);
    let timeout = Duration::from_millis(settings.request_timeout_ms);
    let (mut ws, _) = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return Err(OpenError::Handshake(handshake_error(e))),
        Err(_) => {
            return Err(OpenError::Handshake(format!(
                "the WebSocket handshake took longer than {} ms",
                timeout.as_millis()
            )));
        }
    };
    let hello = await_hello(&mut ws).await?;
    Ok(Opened { hello, ws })
}

/// A description of a handshake failure that cannot contain the URL.
fn handshake_error(e: tungstenite::Error) -> String {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => format!(
            "Slack answered the WebSocket handshake with HTTP {}",
            resp.status().as_u16()
        ),
        E::Io(io) => format!("connecting failed: {io}"),
        E::Tls(t) => format!("TLS failed: {t}"),
        E::Url(_) => "the URL apps.connections.open returned cannot be used".into(),
        E::Protocol(p) => format!("WebSocket handshake failed: {p}"),
        _ => "WebSocket handshake failed".into(),
    }
}

async fn await_hello(ws: &mut Ws) -> Result<Hello, OpenError> {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| OpenError::HelloTimeout)?;
        match frame {
            Some(Ok(Message::Text(t))) => match protocol::parse(&t) {
                Ok(Inbound::Hello(h)) => return Ok(h),
                Ok(Inbound::Disconnect(r)) => return Err(OpenError::Refused(r)),
                Ok(_) | Err(_) => debug!("a message before hello was ignored"),
            },
            Some(Ok(Message::Close(_))) | None => return Err(OpenError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(OpenError::Handshake(handshake_error(e))),
        }
    }
}

/// Close an opened connection at once (the configuration probe).
pub async fn close(opened: Opened) {
    let mut ws = opened.ws;
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(normal_close()))).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
}

fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

/// A frame for the writer.
#[derive(Debug)]
pub enum Out {
    Ack(String),
    Ping,
    Close,
}

/// The writers of every open connection of this process. An ack whose own connection is gone is
/// written to another one: Slack accepts an ack on any connection of the app (reference §5).
#[derive(Clone, Default)]
pub struct AckRoute {
    writers: Arc<Mutex<Writers>>,
}

/// Each open connection's id and writer queue.
type Writers = Vec<(u64, mpsc::Sender<Out>)>;

impl AckRoute {
    fn add(&self, id: u64, tx: mpsc::Sender<Out>) {
        self.lock().push((id, tx));
    }
    fn remove(&self, id: u64) {
        self.lock().retain(|(i, _)| *i != id);
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Writers> {
        self.writers.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Hand an ack to any open connection but `not`; false when there is none.
    fn resend(&self, not: u64, text: String) -> bool {
        let writers = self.lock();
        let mut text = Some(text);
        for (id, tx) in writers.iter() {
            if *id == not {
                continue;
            }
            match tx.try_send(Out::Ack(text.take().unwrap_or_default())) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(Out::Ack(t)))
                | Err(mpsc::error::TrySendError::Closed(Out::Ack(t))) => text = Some(t),
                Err(_) => return false,
            }
        }
        false
    }
}

/// What a running connection tells its slot.
#[derive(Debug)]
pub enum ConnEvent {
    /// Slack announced a refresh: open the replacement, then drain this one.
    Replace(DisconnectReason),
    /// The connection is gone; the reason is the next reconnect's label.
    Ended(&'static str),
}

/// The slot's handle on a running connection.
pub struct Running {
    pub events: mpsc::Receiver<ConnEvent>,
    /// Cancel once the replacement is up: the connection drains and closes.
    pub drain: CancellationToken,
    pub opened_at: Instant,
}

/// What a connection shares with the process.
#[derive(Clone)]
pub struct Shared {
    pub state: AppState,
    pub route: AckRoute,
    pub stop: CancellationToken,
    /// Connection tasks, for shutdown to wait on.
    pub tasks: TaskTracker,
}

/// Start serving an opened connection.
pub fn spawn(shared: &Shared, opened: Opened, id: u64) -> Running {
    let (events_tx, events) = mpsc::channel(4);
    let drain = CancellationToken::new();
    let (sink, stream) = opened.ws.split();
    let (out, rx) = mpsc::channel(QUEUE);
    shared.route.add(id, out.clone());
    let writer = shared
        .tasks
        .spawn(write_loop(sink, rx, shared.route.clone(), id));
    let ping_every = Duration::from_millis(shared.state.settings().slack.socket_ping_interval_ms);
    let live = Live {
        id,
        shared: shared.clone(),
        stream,
        out,
        writer,
        inflight: TaskTracker::new(),
        events: events_tx,
        drain: drain.clone(),
        ping_every,
        last_pong: Instant::now(),
        replacement_asked: false,
        routing_stopped: false,
        draining_since: None,
    };
    let span = info_span!("socket", connection = id);
    shared.tasks.spawn(live.serve().instrument(span));
    Running {
        events,
        drain,
        opened_at: Instant::now(),
    }
}

async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Out>,
    route: AckRoute,
    id: u64,
) {
    while let Some(out) = rx.recv().await {
        let closing = matches!(out, Out::Close);
        let frame = match &out {
            Out::Ack(text) => Message::text(text.as_str()),
            Out::Ping => Message::Ping(Default::default()),
            Out::Close => Message::Close(Some(normal_close())),
        };
        // Feed while more is queued, flush once the queue is empty: one write for a burst.
        let mut sent = sink.feed(frame).await;
        if sent.is_ok() && (closing || rx.is_empty()) {
            sent = sink.flush().await;
        }
        if sent.is_err() || closing {
            route.remove(id);
            rx.close();
            if let (Err(_), Out::Ack(text)) = (&sent, out) {
                route.resend(id, text);
            }
            // RFC 6455 §5.5.1: nothing after our Close. Queued acks go to another connection.
            while let Ok(o) = rx.try_recv() {
                if let Out::Ack(text) = o {
                    route.resend(id, text);
                }
            }
            return;
        }
    }
}

/// Why the read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    Drained,
    ClosedBySlack,
    Dropped,
    Stale,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Drained => "drained",
            End::ClosedBySlack => "closed",
            End::Dropped => "dropped",
            End::Stale => "stale",
        }
    }
}

struct Live {
    id: u64,
    shared: Shared,
    stream: SplitStream<Ws>,
    out: mpsc::Sender<Out>,
    writer: tokio::task::JoinHandle<()>,
    /// Envelopes being dispatched on this connection.
    inflight: TaskTracker,
    events: mpsc::Sender<ConnEvent>,
    drain: CancellationToken,
    ping_every: Duration,
    last_pong: Instant,
    replacement_asked: bool,
    /// Slack sent `refresh_requested`: nothing new comes on this connection.
    routing_stopped: bool,
    draining_since: Option<Instant>,
}

impl Live {
    async fn serve(mut self) {
        let state = self.shared.state.clone();
        let health = state.socket_health();
        health.connected();
        let end = self.read_loop().await;
        let graceful = matches!(end, End::Shutdown | End::Drained);
        match end {
            End::Shutdown | End::Drained => info!(end = end.label(), "closing the connection"),
            End::ClosedBySlack => info!("Slack closed the connection"),
            End::Dropped => warn!("the connection dropped without a close"),
            End::Stale => warn!(
                missed_pongs = MISSED_PONGS,
                "no pong from Slack: the connection is stale and is replaced"
            ),
        }
        if !graceful {
            // Down already: readiness must not wait for the clean-up below.
            health.disconnected();
            let _ = self.events.try_send(ConnEvent::Ended(end.label()));
        }
        self.finish(end).await;
        if graceful {
            health.disconnected();
        }
    }

    /// Let in-flight envelopes be acknowledged (bounded by the ack deadline), then close. A
    /// connection that is gone or deaf loses its writer first, so those acks go to another one.
    async fn finish(mut self, end: End) {
        let bound = self.shared.state.settings().ack_deadline() + Duration::from_millis(500);
        if matches!(end, End::Stale | End::Dropped | End::ClosedBySlack) {
            self.shared.route.remove(self.id);
            self.writer.abort();
        }
        self.inflight.close();
        let _ = tokio::time::timeout(bound, self.inflight.wait()).await;
        if matches!(end, End::Shutdown | End::Drained) {
            let _ = tokio::time::timeout(CLOSE_WAIT, self.out.send(Out::Close)).await;
            // Wait for Slack's Close; data frames after ours are not processed (RFC 6455).
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(m)) = self.stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        } else if end == End::ClosedBySlack {
            // Reading on sends tungstenite's reply to Slack's Close: the handshake completes.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while self.stream.next().await.is_some() {}
            })
            .await;
        }
        self.shared.route.remove(self.id);
        drop(self.out);
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut self.writer).await;
        self.writer.abort();
    }

    async fn read_loop(&mut self) -> End {
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval(Duration::from_millis(50));
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.drained() {
                return End::Drained;
            }
            tokio::select! {
                biased;
                _ = self.shared.stop.cancelled() => return End::Shutdown,
                frame = self.stream.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    if self.last_pong.elapsed() > self.ping_every * MISSED_PONGS {
                        return End::Stale;
                    }
                    let _ = self.out.try_send(Out::Ping);
                }
                _ = self.drain.cancelled(), if self.draining_since.is_none() => {
                    debug!("replacement is up; draining");
                    self.draining_since = Some(Instant::now());
                }
                _ = recheck.tick(), if self.draining_since.is_some() => {}
            }
        }
    }

    /// Told to drain, Slack no longer routes here (or the cap passed), and every ack is out.
    fn drained(&self) -> bool {
        let Some(since) = self.draining_since else {
            return false;
        };
        (self.routing_stopped || since.elapsed() >= DRAIN_CAP) && self.inflight.is_empty()
    }

    fn on_frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Option<End> {
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(&text),
            Some(Ok(Message::Pong(_))) => {
                self.last_pong = Instant::now();
                None
            }
            Some(Ok(Message::Close(_))) => Some(End::ClosedBySlack),
            // tungstenite answers Slack's pings itself.
            Some(Ok(_)) => None,
            Some(Err(e)) => {
                debug!(error = %protocol_error(&e), "reading from the connection failed");
                Some(End::Dropped)
            }
            None => Some(End::Dropped),
        }
    }

    fn on_text(&mut self, text: &str) -> Option<End> {
        match protocol::parse(text) {
            Ok(Inbound::Envelope(e)) => self.dispatch(e),
            Ok(Inbound::Disconnect(reason)) => return self.on_disconnect(reason),
            Ok(Inbound::Hello(_)) => debug!("a second hello was ignored"),
            Ok(Inbound::Other(kind)) => debug!(message_type = %kind, "unknown message ignored"),
            Err(e) => warn!(error = %e, "an unreadable message from Slack was ignored"),
        }
        None
    }

    fn on_disconnect(&mut self, reason: DisconnectReason) -> Option<End> {
        info!(reason = reason.as_str(), "Slack sent disconnect");
        if reason == DisconnectReason::RefreshRequested {
            self.routing_stopped = true;
        }
        if reason.is_refresh() {
            if !self.replacement_asked {
                self.replacement_asked = true;
                let _ = self.events.try_send(ConnEvent::Replace(reason));
            }
            return None;
        }
        // Anything else (link_disabled, too_many_websockets, …): Slack closes this connection.
        self.routing_stopped = true;
        let _ = self.events.try_send(ConnEvent::Ended(match reason {
            DisconnectReason::LinkDisabled => "link_disabled",
            DisconnectReason::TooManyWebsockets => "too_many_websockets",
            _ => "disconnect",
        }));
        self.replacement_asked = true;
        self.draining_since.get_or_insert_with(Instant::now);
        None
    }

    /// Dispatch in its own task; the reader goes on at once.
    fn dispatch(&self, envelope: Envelope) {
        let state = self.shared.state.clone();
        state.metrics().socket_envelope(envelope.kind.label());
        let out = self.out.clone();
        let route = self.shared.route.clone();
        let id = self.id;
        let span = info_span!(
            "envelope",
            r#type = envelope.kind.label(),
            retry_attempt = envelope.retry_attempt.unwrap_or(0),
            slack.team = tracing::field::Empty,
            slack.user = tracing::field::Empty,
        );
        self.inflight.spawn(
            async move {
                let envelope_id = envelope.envelope_id.clone();
                let text = match envelope::answer(&state, envelope).await {
                    Answer::Ack(payload) => protocol::ack(&envelope_id, payload.as_ref()),
                    Answer::NoAck => return,
                };
                if let Err(mpsc::error::SendError(Out::Ack(text))) = out.send(Out::Ack(text)).await
                    && !route.resend(id, text)
                {
                    warn!("an ack could not be written: no connection is open");
                }
            }
            .instrument(span),
        );
    }
}

/// A read error's description (tungstenite's read errors carry no URL).
fn protocol_error(e: &tungstenite::Error) -> String {
    e.to_string()
}
