//! In-process fake of Slack's Socket Mode edge: a WebSocket server on 127.0.0.1.
//!
//! The contract is `/work/shared/reference/slack-socket-mode.md`, and where the sources are silent
//! this fake follows that file's section "Where the sources are silent (choices made in our
//! fake)" point by point:
//!
//! - **URLs and tickets** (§1, §2, "Tickets", "URL"): [`FakeSocketMode::mint_url`] (called by the
//!   fake Slack's `apps.connections.open`) returns `ws://127.0.0.1:<port>/link/?ticket=<uuid>&app_id=<id>`.
//!   A ticket is single-use and valid 30 s; a reused, unknown or expired one gets HTTP **409** with
//!   an empty body at the handshake.
//! - **hello** (§3): sent right after the handshake (or when a test releases it, see
//!   [`FakeSocketMode::hold_hello`]); `num_connections` counts open connections that got hello,
//!   this one included; `approximate_connection_time` 3600 (360 with `debug_reconnects=true`). The
//!   fake never refreshes a connection on its own: tests do.
//! - **Connection limit** (§2): the 11th simultaneous connection gets a hello-less `disconnect`
//!   `too_many_websockets` and a close (1000), and never receives envelopes.
//! - **Envelopes** (§4): `events_api`, `interactive`, `slash_commands`, each routed to one
//!   connection chosen at random (seeded) among those that got hello, were not sent
//!   `refresh_requested` and whose close has not begun (a connection that got `warning` still
//!   receives). An envelope whose write fails goes to another live connection, same `envelope_id`.
//!   `accepts_response_payload` is true for `slash_commands`, `view_submission`,
//!   `block_suggestion` and `block_actions` on a message; false for `events_api`, `view_closed`,
//!   `shortcut` and `block_actions` inside a modal (§4, python-sdk fixtures).
//! - **Acks** (§5): accepted on any open connection of the app; an absent `payload` and
//!   `payload: {}` both mean an empty ack; a `payload` on an envelope that accepts none is recorded
//!   and ignored. Latency is measured from the envelope's frame written to the ack's frame read;
//!   the deadline is 3 s.
//! - **Redelivery** (§6): only `events_api`, when no ack came within the deadline: after 0 s, 1 s,
//!   5 s (Slack's 0 / 1 min / 5 min, compressed; [`FakeSocketMode::set_redelivery_delays`]), at
//!   most 3 times, each as a new envelope (new `envelope_id`, same payload and `event_id`) with
//!   `retry_attempt` 1..3 and `retry_reason` `"timeout"`. A late ack does not cancel a retry
//!   already due. With no connection at all an event waits for its next retry; an interaction or a
//!   command fails at once with `dispatch_failed`.
//! - **Refresh and drops** (§7): [`FakeSocketMode::refresh`] sends `warning` first (optional lead),
//!   then `refresh_requested`; from then on no new envelope goes to that connection, and it is
//!   closed (1000) after a grace period (default 2 s) during which its acks still count.
//!   [`FakeSocketMode::drop_abruptly`] resets the TCP connection with no close frame.
//! - **Keep-alive** (§8): the fake pings every 10 s and drops a connection whose pong is 20 s late
//!   (both configurable); it answers client pings. [`FakeSocketMode::stall`] stops a connection
//!   dead (no reads, no writes: no pongs, no acks), as a half-open socket.
//! - Close codes and `debug_info.host` (`applink-fake-<n>`) are invented.
//!
//! Never kinder than Slack: no ack means redelivery for events and a failure for interactions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The app id in URLs and hello.
pub const APP_ID: &str = "A0FAKE";
/// The app-level token the fake Slack accepts for `apps.connections.open`.
pub const APP_TOKEN: &str = "xapp-1-A0FAKE-1234567890-0123456789abcdef0123456789abcdef";
/// Slack allows 10 connections per app.
pub const MAX_CONNECTIONS: usize = 10;
/// The ack deadline.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// A ticket is valid this long after it was minted.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

// ============================================================================================
// Public types
// ============================================================================================

/// An envelope written (or meant to be written) to a connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub envelope_id: String,
    /// `events_api`, `interactive`, `slash_commands`.
    pub kind: String,
    pub accepts_response_payload: bool,
    /// `events_api` only: 0 on the first delivery, 1..3 on retries.
    pub retry_attempt: Option<u32>,
    pub payload: Value,
    /// The connection it was routed to (its last routing when a write failed).
    pub connection: Option<u64>,
    /// When its frame was written (None: never written, e.g. a stalled connection).
    pub written_at: Option<Instant>,
}

/// An ack as the fake read it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// The connection it was read on.
    pub connection: u64,
    /// The response payload; `None` for an absent `payload` or `payload: {}`.
    pub payload: Option<Value>,
    /// A payload was sent although the envelope accepts none (recorded and ignored).
    pub ignored_payload: bool,
    /// From the envelope's frame written to this ack's frame read.
    pub latency: Option<Duration>,
    /// Read after the 3 s deadline (Slack would already have given up).
    pub late: bool,
    /// No envelope with this id was ever sent.
    pub unknown: bool,
    pub at: Instant,
}

/// A connection as the fake sees it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub id: u64,
    pub got_hello: bool,
    pub open: bool,
    pub warned: bool,
    pub refresh_requested: bool,
    pub stalled: bool,
    /// Refused as the 11th (`too_many_websockets`).
    pub refused: bool,
    /// The client sent a close frame.
    pub closed_by_client: bool,
    pub envelopes_written: usize,
}

/// Slack could not hand an interaction or a command to the app: no connection is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchFailed;

/// What a handshake attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub ticket: String,
    pub status: u16,
}

// ============================================================================================
// State
// ============================================================================================

enum Cmd {
    /// Write an envelope (by id; the text is in the hub).
    Envelope(String),
    /// Write a control message.
    Text(String),
    /// Close handshake (code 1000).
    Close,
    /// Reset the TCP connection, no close frame.
    Abort,
    /// Stop reading and writing.
    Stall,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Cmd>,
    got_hello: bool,
    open: bool,
    warned: bool,
    refresh_requested: bool,
    closing: bool,
    stalled: bool,
    refused: bool,
    closed_by_client: bool,
    envelopes_written: usize,
}

impl Conn {
    fn routable(&self) -> bool {
        self.open && self.got_hello && !self.refresh_requested && !self.closing && !self.refused
    }
}

struct Ticket {
    minted: Instant,
    used: bool,
}

struct Hub {
    addr: SocketAddr,
    tickets: HashMap<String, Ticket>,
    handshakes: Vec<Handshake>,
    conns: Vec<Conn>,
    next_conn: u64,
    envelopes: HashMap<String, Delivery>,
    order: Vec<String>,
    acks: Vec<Ack>,
    rng: StdRng,
    hold_hello: bool,
    redelivery: [Duration; 3],
    grace: Duration,
    ping_every: Duration,
    pong_timeout: Duration,
    given_up_events: Vec<String>,
    /// Acks still to be lost in transit (read and discarded).
    lose_acks: usize,
    lost_acks: Vec<String>,
}

type Shared = Arc<(Mutex<Hub>, Notify)>;

fn lock(s: &Shared) -> MutexGuard<'_, Hub> {
    s.0.lock().unwrap_or_else(|e| e.into_inner())
}

// ============================================================================================
// FakeSocketMode
// ============================================================================================

/// A running fake. The server task is aborted when this value is dropped.
pub struct FakeSocketMode {
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSocketMode {
    fn drop(&mut self) {
        self.server.abort();
        for c in &lock(&self.shared).conns {
            let _ = c.tx.send(Cmd::Abort);
        }
    }
}

impl FakeSocketMode {
    /// Binds 127.0.0.1:0 and serves.
    pub async fn start() -> FakeSocketMode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake socket mode: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake socket mode: local_addr");
        let shared: Shared = Arc::new((
            Mutex::new(Hub {
                addr,
                tickets: HashMap::new(),
                handshakes: Vec::new(),
                conns: Vec::new(),
                next_conn: 0,
                envelopes: HashMap::new(),
                order: Vec::new(),
                acks: Vec::new(),
                rng: StdRng::seed_from_u64(0x5eed),
                hold_hello: false,
                redelivery: [
                    Duration::ZERO,
                    Duration::from_secs(1),
                    Duration::from_secs(5),
                ],
                grace: Duration::from_secs(2),
                ping_every: Duration::from_secs(10),
                pong_timeout: Duration::from_secs(20),
                given_up_events: Vec::new(),
                lose_acks: 0,
                lost_acks: Vec::new(),
            }),
            Notify::new(),
        ));
        let s = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(s.clone(), stream));
            }
        });
        FakeSocketMode { shared, server }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.shared)
    }

    // ---------------------------------------------------------------- URLs

    /// A fresh single-use URL, as `apps.connections.open` returns it.
    pub fn mint_url(&self) -> String {
        mint(&self.shared)
    }

    /// A closure minting URLs, for the fake Slack's `apps.connections.open`.
    pub fn minter(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let s = self.shared.clone();
        Arc::new(move || mint(&s))
    }

    /// Every handshake attempt with its status (101 accepted, 409 refused).
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.hub().handshakes.clone()
    }

    // ---------------------------------------------------------------- behaviour knobs

    /// While held, new connections get no hello until [`release_hello`](Self::release_hello).
    pub fn hold_hello(&self, hold: bool) {
        self.hub().hold_hello = hold;
        self.shared.1.notify_waiters();
    }

    pub fn release_hello(&self) {
        self.hold_hello(false);
    }

    /// The delays before retries 1, 2 and 3 of an unacknowledged event.
    pub fn set_redelivery_delays(&self, delays: [Duration; 3]) {
        self.hub().redelivery = delays;
    }

    /// How long a refreshed connection stays open after `refresh_requested`.
    pub fn set_grace(&self, grace: Duration) {
        self.hub().grace = grace;
    }

    /// The fake's pings: how often, and how late a pong may be before the connection is dropped.
    pub fn set_keepalive(&self, ping_every: Duration, pong_timeout: Duration) {
        let mut hub = self.hub();
        hub.ping_every = ping_every;
        hub.pong_timeout = pong_timeout;
    }

    /// The next `n` acks are lost in transit (as when written to a socket Slack is closing,
    /// reference §9): read and discarded, so Slack acts as if none came.
    pub fn lose_next_acks(&self, n: usize) {
        self.hub().lose_acks = n;
    }

    /// The envelope ids whose acks were lost.
    pub fn lost_acks(&self) -> Vec<String> {
        self.hub().lost_acks.clone()
    }

    /// Reseed the routing.
    pub fn set_seed(&self, seed: u64) {
        self.hub().rng = StdRng::seed_from_u64(seed);
    }

    // ---------------------------------------------------------------- connections

    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.hub()
            .conns
            .iter()
            .map(|c| ConnectionInfo {
                id: c.id,
                got_hello: c.got_hello,
                open: c.open,
                warned: c.warned,
                refresh_requested: c.refresh_requested,
                stalled: c.stalled,
                refused: c.refused,
                closed_by_client: c.closed_by_client,
                envelopes_written: c.envelopes_written,
            })
            .collect()
    }

    /// Open connections that got hello (what Slack routes to, plus refreshed ones in grace).
    pub fn live(&self) -> Vec<u64> {
        self.hub()
            .conns
            .iter()
            .filter(|c| c.open && c.got_hello)
            .map(|c| c.id)
            .collect()
    }

    /// Connections envelopes would be routed to now.
    pub fn routable(&self) -> Vec<u64> {
        self.hub()
            .conns
            .iter()
            .filter(|c| c.routable())
            .map(|c| c.id)
            .collect()
    }

    /// Waits until `n` connections are routable; returns their ids.
    pub async fn wait_for_routable(&self, n: usize, timeout: Duration) -> Vec<u64> {
        self.poll(timeout, &format!("{n} routable connection(s)"), |h| {
            let ids: Vec<u64> = h
                .conns
                .iter()
                .filter(|c| c.routable())
                .map(|c| c.id)
                .collect();
            (ids.len() >= n).then_some(ids)
        })
        .await
    }

    /// Waits until at most `n` connections are open.
    pub async fn wait_for_open_at_most(&self, n: usize, timeout: Duration) {
        self.poll(timeout, &format!("at most {n} open connection(s)"), |h| {
            (h.conns.iter().filter(|c| c.open).count() <= n).then_some(())
        })
        .await
    }

    /// `warning` (when `lead` is given, that long before) then `refresh_requested`; the
    /// connection is closed after the grace period.
    pub fn refresh(&self, id: u64, lead: Option<Duration>) {
        let s = self.shared.clone();
        tokio::spawn(async move {
            if let Some(lead) = lead {
                send_control(&s, id, "warning");
                tokio::time::sleep(lead).await;
            }
            send_control(&s, id, "refresh_requested");
            let grace = lock(&s).grace;
            tokio::time::sleep(grace).await;
            let mut hub = lock(&s);
            if let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) {
                c.closing = true;
                let _ = c.tx.send(Cmd::Close);
            }
        });
    }

    /// Only `warning` (the connection keeps receiving envelopes).
    pub fn warn(&self, id: u64) {
        send_control(&self.shared, id, "warning");
    }

    /// Any `disconnect` reason, without closing (e.g. `link_disabled`).
    pub fn disconnect(&self, id: u64, reason: &str) {
        send_control(&self.shared, id, reason);
    }

    /// Reset the TCP connection without a close frame.
    pub fn drop_abruptly(&self, id: u64) {
        let hub = self.hub();
        if let Some(c) = hub.conns.iter().find(|c| c.id == id) {
            let _ = c.tx.send(Cmd::Abort);
        }
    }

    /// Stop reading and writing on a connection (half-open socket).
    pub fn stall(&self, id: u64) {
        let mut hub = self.hub();
        if let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) {
            c.stalled = true;
            let _ = c.tx.send(Cmd::Stall);
        }
    }

    // ---------------------------------------------------------------- envelopes

    /// A slash command (its form fields as a JSON object of strings).
    pub fn send_slash_command(&self, fields: Value) -> Result<String, DispatchFailed> {
        self.send_now("slash_commands", fields, true)
    }

    /// An interactivity payload; `accepts_response_payload` follows the payload's type.
    pub fn send_interactive(&self, payload: Value) -> Result<String, DispatchFailed> {
        let accepts = accepts_response_payload(&payload);
        self.send_now("interactive", payload, accepts)
    }

    /// An Events API `event_callback`, redelivered while it is not acknowledged in time. Returns
    /// the first envelope's id.
    pub fn send_event(&self, payload: Value) -> String {
        let s = self.shared.clone();
        let first = new_envelope(&s, "events_api", payload.clone(), false, Some(0));
        let id = first.clone();
        tokio::spawn(redeliver(s, payload, first));
        id
    }

    fn send_now(
        &self,
        kind: &str,
        payload: Value,
        accepts: bool,
    ) -> Result<String, DispatchFailed> {
        if self.routable().is_empty() {
            return Err(DispatchFailed);
        }
        Ok(new_envelope(&self.shared, kind, payload, accepts, None))
    }

    pub fn delivery(&self, envelope_id: &str) -> Option<Delivery> {
        self.hub().envelopes.get(envelope_id).cloned()
    }

    /// Every envelope in the order they were created.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let hub = self.hub();
        hub.order
            .iter()
            .filter_map(|id| hub.envelopes.get(id).cloned())
            .collect()
    }

    /// The envelopes carrying the event `event_id` (first delivery and retries).
    pub fn deliveries_of_event(&self, event_id: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.kind == "events_api" && d.payload["event_id"] == event_id)
            .collect()
    }

    /// Events whose three retries all went unacknowledged.
    pub fn given_up_events(&self) -> Vec<String> {
        self.hub().given_up_events.clone()
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.hub().acks.clone()
    }

    pub fn acks_of(&self, envelope_id: &str) -> Vec<Ack> {
        self.hub()
            .acks
            .iter()
            .filter(|a| a.envelope_id == envelope_id)
            .cloned()
            .collect()
    }

    /// Waits for the first ack of an envelope.
    pub async fn wait_for_ack(&self, envelope_id: &str, timeout: Duration) -> Ack {
        self.poll(timeout, &format!("an ack of {envelope_id}"), |h| {
            h.acks
                .iter()
                .find(|a| a.envelope_id == envelope_id)
                .cloned()
        })
        .await
    }

    async fn poll<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Hub) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe(&self.hub()) {
                return v;
            }
            if Instant::now() >= deadline {
                let conns = self.connections();
                panic!(
                    "fake socket mode: timed out after {timeout:?} waiting for {what}; connections: {conns:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// accepts_response_payload per the reference's fake choices (python-sdk fixtures).
pub fn accepts_response_payload(payload: &Value) -> bool {
    match payload["type"].as_str().unwrap_or("") {
        "view_submission" | "block_suggestion" => true,
        "block_actions" => payload["container"]["type"] != "view" && payload.get("view").is_none(),
        _ => false,
    }
}

fn mint(s: &Shared) -> String {
    let mut hub = lock(s);
    let ticket = uuid::Uuid::new_v4().to_string();
    hub.tickets.insert(
        ticket.clone(),
        Ticket {
            minted: Instant::now(),
            used: false,
        },
    );
    format!("ws://{}/link/?ticket={ticket}&app_id={APP_ID}", hub.addr)
}

fn send_control(s: &Shared, id: u64, reason: &str) {
    let mut hub = lock(s);
    let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) else {
        return;
    };
    match reason {
        "warning" => c.warned = true,
        "refresh_requested" => c.refresh_requested = true,
        _ => {}
    }
    let text = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": format!("applink-fake-{id}")}}).to_string();
    let _ = c.tx.send(Cmd::Text(text));
}

/// Record an envelope and route it; returns its id.
fn new_envelope(
    s: &Shared,
    kind: &str,
    payload: Value,
    accepts: bool,
    retry: Option<u32>,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut hub = lock(s);
    hub.envelopes.insert(
        id.clone(),
        Delivery {
            envelope_id: id.clone(),
            kind: kind.to_string(),
            accepts_response_payload: accepts,
            retry_attempt: retry,
            payload,
            connection: None,
            written_at: None,
        },
    );
    hub.order.push(id.clone());
    route(&mut hub, &id, None);
    id
}

/// Send an envelope to a random routable connection other than `not`. False when there is none.
fn route(hub: &mut Hub, envelope_id: &str, not: Option<u64>) -> bool {
    let candidates: Vec<usize> = hub
        .conns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.routable() && Some(c.id) != not)
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let pick = candidates[hub.rng.random_range(0..candidates.len())];
    let conn = &hub.conns[pick];
    let (cid, sent) = (
        conn.id,
        conn.tx.send(Cmd::Envelope(envelope_id.to_string())).is_ok(),
    );
    if let Some(d) = hub.envelopes.get_mut(envelope_id) {
        d.connection = Some(cid);
    }
    sent
}

/// An event's deliveries: the first, then up to 3 retries while no ack came within the deadline.
async fn redeliver(s: Shared, payload: Value, first: String) {
    let mut current = first;
    for attempt in 1..=3u32 {
        wait_deadline(&s, &current).await;
        if acked_in_time(&s, &current) {
            return;
        }
        let delay = lock(&s).redelivery[attempt as usize - 1];
        tokio::time::sleep(delay).await;
        current = uuid::Uuid::new_v4().to_string();
        let mut hub = lock(&s);
        hub.envelopes.insert(
            current.clone(),
            Delivery {
                envelope_id: current.clone(),
                kind: "events_api".into(),
                accepts_response_payload: false,
                retry_attempt: Some(attempt),
                payload: payload.clone(),
                connection: None,
                written_at: None,
            },
        );
        hub.order.push(current.clone());
        // No connection: this retry is lost; the next one is due as scheduled.
        route(&mut hub, &current, None);
    }
    wait_deadline(&s, &current).await;
    if !acked_in_time(&s, &current) {
        let id = payload["event_id"].as_str().unwrap_or("").to_string();
        lock(&s).given_up_events.push(id);
    }
}

/// Until 3 s after the envelope was written (or now + 3 s if it never was).
async fn wait_deadline(s: &Shared, envelope_id: &str) {
    let started = Instant::now();
    tokio::time::sleep(ACK_DEADLINE).await;
    let written = lock(s)
        .envelopes
        .get(envelope_id)
        .and_then(|d| d.written_at)
        .unwrap_or(started);
    let due = written + ACK_DEADLINE + Duration::from_millis(1);
    let now = Instant::now();
    if due > now {
        tokio::time::sleep(due - now).await;
    }
}

fn acked_in_time(s: &Shared, envelope_id: &str) -> bool {
    lock(s)
        .acks
        .iter()
        .any(|a| a.envelope_id == envelope_id && !a.late)
}

// ============================================================================================
// Connections
// ============================================================================================

/// Check a handshake's ticket: single-use, minted, not expired.
fn check_ticket(s: &Shared, req: &Request) -> Result<(String, bool), String> {
    let query = req.uri().query().unwrap_or("");
    let params: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let ticket = params.get("ticket").cloned().unwrap_or_default();
    let debug = params.get("debug_reconnects").map(String::as_str) == Some("true");
    let mut hub = lock(s);
    let ok = req.uri().path() == "/link/"
        && match hub.tickets.get_mut(&ticket) {
            Some(t) if !t.used && t.minted.elapsed() <= TICKET_TTL => {
                t.used = true;
                true
            }
            Some(t) => {
                t.used = true;
                false
            }
            None => false,
        };
    hub.handshakes.push(Handshake {
        ticket: ticket.clone(),
        status: if ok { 101 } else { 409 },
    });
    if ok { Ok((ticket, debug)) } else { Err(ticket) }
}

// The handshake callback's error type is tungstenite's (`ErrorResponse`), not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve_connection(s: Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut debug = false;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match check_ticket(&s, req) {
            Ok((_, d)) => {
                debug = d;
                Ok(resp)
            }
            Err(_) => {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = StatusCode::CONFLICT;
                Err(refusal)
            }
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, refused) = {
        let mut hub = lock(&s);
        hub.next_conn += 1;
        let id = hub.next_conn;
        let refused = hub.conns.iter().filter(|c| c.open).count() >= MAX_CONNECTIONS;
        hub.conns.push(Conn {
            id,
            tx,
            got_hello: false,
            open: true,
            warned: false,
            refresh_requested: false,
            closing: false,
            stalled: false,
            refused,
            closed_by_client: false,
            envelopes_written: 0,
        });
        (id, refused)
    };
    if refused {
        let text = json!({"type": "disconnect", "reason": "too_many_websockets", "debug_info": {"host": format!("applink-fake-{id}")}});
        let _ = ws.send(Message::text(text.to_string())).await;
        let _ = ws.close(Some(close_frame())).await;
        mark_closed(&s, id, false);
        return;
    }
    if !hello(&s, &mut ws, id, debug).await {
        mark_closed(&s, id, false);
        return;
    }
    run_connection(&s, &mut ws, &mut rx, id).await;
}

fn close_frame() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

fn mark_closed(s: &Shared, id: u64, by_client: bool) {
    let mut hub = lock(s);
    if let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) {
        c.open = false;
        c.closed_by_client |= by_client;
    }
}

/// Wait while hello is held, then send it. False when the client went away first.
async fn hello(s: &Shared, ws: &mut WebSocketStream<TcpStream>, id: u64, debug: bool) -> bool {
    loop {
        let notified = s.1.notified();
        if !lock(s).hold_hello {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            m = ws.next() => if !matches!(m, Some(Ok(Message::Ping(_) | Message::Pong(_)))) { return false; },
        }
    }
    let num = {
        let mut hub = lock(s);
        if let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) {
            c.got_hello = true;
        }
        hub.conns.iter().filter(|c| c.open && c.got_hello).count()
    };
    let text = json!({
        "type": "hello",
        "connection_info": {"app_id": APP_ID},
        "num_connections": num,
        "debug_info": {"host": format!("applink-fake-{id}"), "started": "2026-11-01 12:00:00.000",
                       "build_number": 1, "approximate_connection_time": if debug { 360 } else { 3600 }}
    });
    ws.send(Message::text(text.to_string())).await.is_ok()
}

async fn run_connection(
    s: &Shared,
    ws: &mut WebSocketStream<TcpStream>,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
    id: u64,
) {
    let (ping_every, pong_timeout) = {
        let hub = lock(s);
        (hub.ping_every, hub.pong_timeout)
    };
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let mut last_pong = Instant::now();
    let mut stalled = false;
    let mut closing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None | Some(Cmd::Abort) => {
                    let _ = ws.get_ref().set_zero_linger();
                    mark_closed(s, id, false);
                    return;
                }
                Some(Cmd::Stall) => stalled = true,
                Some(_) if stalled => {}
                Some(Cmd::Envelope(eid)) => {
                    if !write_envelope(s, ws, id, &eid).await {
                        mark_closed(s, id, false);
                        reroute(s, id, &eid);
                        return;
                    }
                }
                Some(Cmd::Text(t)) => { let _ = ws.send(Message::text(t)).await; }
                Some(Cmd::Close) => {
                    let _ = ws.close(Some(close_frame())).await;
                    closing_since = Some(Instant::now());
                }
            },
            frame = ws.next(), if !stalled => match frame {
                Some(Ok(Message::Text(t))) => record_ack(s, id, &t),
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Close(_))) => {
                    // tungstenite answers the close; flush it.
                    let _ = ws.flush().await;
                    mark_closed(s, id, closing_since.is_none());
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    mark_closed(s, id, false);
                    return;
                }
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > ping_every + pong_timeout {
                    let _ = ws.get_ref().set_zero_linger();
                    mark_closed(s, id, false);
                    return;
                }
                if !stalled {
                    let _ = ws.send(Message::Ping(Default::default())).await;
                }
                if closing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                    mark_closed(s, id, false);
                    return;
                }
            }
        }
    }
}

async fn write_envelope(
    s: &Shared,
    ws: &mut WebSocketStream<TcpStream>,
    id: u64,
    eid: &str,
) -> bool {
    let text = {
        let hub = lock(s);
        let Some(d) = hub.envelopes.get(eid) else {
            return true;
        };
        let mut v = json!({
            "envelope_id": d.envelope_id,
            "type": d.kind,
            "accepts_response_payload": d.accepts_response_payload,
            "payload": d.payload,
        });
        if let Some(n) = d.retry_attempt {
            v["retry_attempt"] = json!(n);
            v["retry_reason"] = json!(if n == 0 { "" } else { "timeout" });
        }
        v.to_string()
    };
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    let mut hub = lock(s);
    let now = Instant::now();
    if let Some(d) = hub.envelopes.get_mut(eid) {
        d.written_at = Some(now);
        d.connection = Some(id);
    }
    if let Some(c) = hub.conns.iter_mut().find(|c| c.id == id) {
        c.envelopes_written += 1;
    }
    true
}

/// A write failed because the connection is gone: the same envelope goes to another connection.
fn reroute(s: &Shared, from: u64, eid: &str) {
    let mut hub = lock(s);
    route(&mut hub, eid, Some(from));
}

fn record_ack(s: &Shared, conn: u64, text: &str) {
    let now = Instant::now();
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(eid) = v["envelope_id"].as_str() else {
        return;
    };
    let payload = match v.get("payload") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(p) => Some(p.clone()),
    };
    let mut hub = lock(s);
    if hub.lose_acks > 0 {
        hub.lose_acks -= 1;
        hub.lost_acks.push(eid.to_string());
        return;
    }
    let delivery = hub.envelopes.get(eid).cloned();
    let latency = delivery
        .as_ref()
        .and_then(|d| d.written_at)
        .map(|w| now.saturating_duration_since(w));
    let accepts = delivery
        .as_ref()
        .is_some_and(|d| d.accepts_response_payload);
    let ignored = payload.is_some() && !accepts;
    hub.acks.push(Ack {
        envelope_id: eid.to_string(),
        connection: conn,
        payload: if ignored { None } else { payload },
        ignored_payload: ignored,
        latency,
        late: latency.is_some_and(|l| l > ACK_DEADLINE),
        unknown: delivery.is_none(),
        at: now,
    });
}
