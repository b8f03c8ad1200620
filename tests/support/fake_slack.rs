//! In-process fake of the Slack Web API (and of `response_url`) for black-box tests.
//!
//! The contract reproduced here is `/work/shared/reference/slack.md`:
//! - §3 "Web API methods we need" and its "Error/limit shapes": business errors are HTTP 200
//!   `{"ok":false,"error":"<code>"}` (optionally `errors`, `warning`, `response_metadata`);
//!   rate limits are HTTP 429 + `Retry-After` + `{"ok":false,"error":"ratelimited"}`; Block Kit
//!   limits (≤ 50 blocks per message, ≤ 100 per modal, section text ≤ 3000, …) give
//!   `invalid_blocks` with `errors:["… [json-pointer:/blocks/N/…]"]`; message `text` above
//!   40,000 characters is truncated with `warning: "message_truncated"`. Token: `Authorization:
//!   Bearer …`; a `token` inside a JSON body is ignored. JSON bodies are accepted by *write*
//!   methods only; read methods take form/query arguments.
//! - §2.4 "Timing & one-shot rules": `trigger_id` expires after 3 s and is single-use;
//!   `response_url` may be used at most 5 times (within 30 minutes).
//! - §4 "OpenAPI spec and local emulators": an in-process axum fake rather than Prism; the
//!   spec's known defects (views.* as GET, `rate_limited` spelling, `token` header) are *not*
//!   reproduced — real Slack behaviour is.
//!
//! Response shapes are copied from Slack's documented examples (method pages as mirrored in
//! `tonnenpinguin/slack-api-docs:methods/*.json`) and checked against the slack-morphism 2.31
//! response models (see `tests/fake_slack_contract.rs`), so a typed client deserialises them.
//!
//! Guiding rule: **the fake is never kinder than the real API**. Where Slack's exact behaviour is
//! undocumented the fake picks the stricter plausible answer and says so in a comment.
//!
//! Deliberate deviations (all stricter than Slack):
//! - only `Authorization: Bearer` is accepted; real Slack also takes a form-body `token`;
//! - `multipart/form-data` and `text/plain` bodies are rejected (`invalid_form_data` /
//!   `invalid_post_type`);
//! - chat.postEphemeral requires the target user to exist (`add_user`) and, if the channel has
//!   an explicit member list (`set_channel_members`), to be in it.
//!
//! Channels: a public channel the bot is not in answers posts with `not_in_channel` until
//! `conversations.join`; a private channel (`add_private_channel`) the bot is not in does not
//! exist for it (`channel_not_found` from every method, `conversations.join` included, as Slack
//! shows a bot only the private channels it was invited to), and one it is in cannot be joined
//! (`method_not_supported_for_channel_type`, conversations.join's documented code for a
//! conversation type it does not take).
//!
//! Layout: constants → public types → `FakeSlack` (setup, scripting, inspection) → HTTP
//! handlers → per-method behaviour → Block Kit validation → small helpers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Map, Value, json};

// ============================================================================================
// Constants
// ============================================================================================

/// Bot token accepted by default.
pub const DEFAULT_TOKEN: &str = "xoxb-test-token";
/// Workspace (team) id of the fake.
pub const TEAM_ID: &str = "T0FAKE";
/// User id of the bot user the token belongs to.
pub const BOT_USER_ID: &str = "U0BOT";
/// Bot id of the app.
pub const BOT_ID: &str = "B0FAKE";
/// App id of the app.
pub const APP_ID: &str = "A0FAKE";
/// Base of permalinks (`chat.getPermalink`) and of `auth.test`'s `url`.
pub const WORKSPACE_URL: &str = "https://fake.slack.com/";

/// Slack: at most 50 blocks in a message.
pub const MAX_MESSAGE_BLOCKS: usize = 50;
/// Slack: at most 100 blocks in a modal / home view.
pub const MAX_VIEW_BLOCKS: usize = 100;
/// Slack: a section's `text` is at most 3000 characters.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack truncates message `text` above 40,000 characters (`warning: message_truncated`).
pub const MAX_MESSAGE_TEXT: usize = 40_000;
/// Slack: a `trigger_id` expires 3 s after it was issued.
pub const TRIGGER_TTL: Duration = Duration::from_secs(3);
/// Slack: a `response_url` may be used 5 times (real limit: 5 uses within 30 minutes).
pub const RESPONSE_URL_MAX_USES: u32 = 5;
/// Slack: a `response_url` expires 30 minutes after it was issued.
pub const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);
/// Slack: a view payload may be at most 250 kB (`view_too_large`).
pub const MAX_VIEW_BYTES: usize = 250_000;

/// First message `ts` is `1700000000.000100`; every new ts is 100 µs later (monotonic).
const TS_EPOCH_SECS: u64 = 1_700_000_000;
const TS_STEP_MICROS: u64 = 100;

/// Write methods: accept `application/json` *and* form bodies.
const WRITE_METHODS: &[&str] = &[
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "chat.delete",
    "views.open",
    "views.update",
    "views.push",
    "views.publish",
    "reactions.add",
    "pins.add",
    "pins.remove",
    "conversations.join",
    "conversations.open",
    "conversations.create",
    "conversations.invite",
    "conversations.setTopic",
    "usergroups.users.update",
];

/// Read methods: form-encoded body or query arguments only; a JSON body is ignored.
const READ_METHODS: &[&str] = &[
    "auth.test",
    "users.info",
    "users.lookupByEmail",
    "usergroups.list",
    "usergroups.users.list",
    "chat.getPermalink",
    "conversations.info",
    "conversations.history",
    "conversations.replies",
];

/// Key under which `fail_next` scripts faults for `POST /response/{id}`.
pub const RESPONSE_URL_METHOD: &str = "response_url";

// ============================================================================================
// Public types
// ============================================================================================

/// A scripted failure, consumed by the next call(s) of one method (see [`FakeSlack::fail_next`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 429, header `Retry-After: N`, body `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP `status` from Slack's edge: 500 with an empty body, other statuses with a small
    /// HTML page (`text/html`), as Slack's load balancers answer. Never JSON.
    ServerError(u16),
    /// HTTP 200 `{"ok":false,"error":"<code>"}`.
    Error(String),
    /// Sleep this long, then answer normally (the call is still processed).
    Delay(Duration),
}

impl Fault {
    /// `Fault::Error(code.into())`.
    pub fn error(code: &str) -> Fault {
        Fault::Error(code.to_string())
    }
}

/// One recorded Web API call (every call is recorded, including rejected and faulted ones).
#[derive(Debug, Clone)]
pub struct Call {
    /// Method name, e.g. `chat.postMessage`.
    pub method: String,
    /// Request body: the JSON value for JSON bodies, a JSON object of strings for form bodies,
    /// `Value::Null` for an empty body, a JSON string (lossy UTF-8) for unparseable bodies.
    pub body: Value,
    /// Query-string arguments as a JSON object of strings (empty object if none).
    pub query: Value,
    /// `Content-Type` header as sent.
    pub content_type: Option<String>,
    /// Whether an `Authorization` header was present (whatever its value).
    pub headers_authorization_present: bool,
    /// Arrival time.
    pub at: Instant,
}

/// A message stored in a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub text: String,
    /// The Block Kit array as sent (`Value::Null` if the message has no blocks).
    pub blocks: Value,
    pub thread_ts: Option<String>,
    /// Number of successful `chat.update` / `replace_original` edits.
    pub updated: u32,
    /// Author: [`BOT_USER_ID`] for messages posted through the API.
    pub user: String,
    /// `metadata` as sent (`Value::Null` if none).
    pub metadata: Value,
    /// Reaction names added through `reactions.add`, in order.
    pub reactions: Vec<String>,
    pub pinned: bool,
}

/// An ephemeral message posted with `chat.postEphemeral`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Value,
    pub thread_ts: Option<String>,
    pub message_ts: String,
}

/// A modal opened/updated/pushed through `views.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedView {
    pub id: String,
    /// The view object as returned to the client (submitted view + id/hash/state…).
    pub view: Value,
    pub hash: String,
    pub external_id: Option<String>,
    /// Trigger that opened/pushed it.
    pub trigger_id: Option<String>,
    /// Number of successful `views.update` calls.
    pub updates: u32,
    /// `true` if created by `views.push`.
    pub pushed: bool,
}

/// One POST to a `response_url` (accepted or not).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseUrlPost {
    /// Parsed JSON body (a JSON string holding the raw text if it was not JSON).
    pub body: Value,
    /// HTTP status the fake answered.
    pub status: u16,
    pub at: Instant,
}

// ============================================================================================
// Internal state
// ============================================================================================

type Shared = Arc<Mutex<Inner>>;
type Args = Map<String, Value>;

#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: Option<String>,
    archived: bool,
    /// Whether the bot user is a member.
    member: bool,
    /// A private channel: invisible to a bot that is not in it (`channel_not_found` from every
    /// method), and never joinable (`conversations.join`).
    private: bool,
    is_im: bool,
    is_mpim: bool,
    /// For IMs: the other user.
    im_user: Option<String>,
    /// Explicit human member list (None = not tracked; any known user counts as member).
    members: Option<Vec<String>>,
    /// The channel topic (`conversations.setTopic`; shown by `conversations.info`).
    topic: String,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    name: String,
    email: String,
    tz: String,
    /// A deactivated member: users.info still answers, with `deleted: true`.
    deleted: bool,
    /// A bot user (`is_bot: true`, with `profile.bot_id`).
    is_bot: bool,
    /// A workflow/app user (`is_app_user: true`).
    is_app_user: bool,
}

#[derive(Debug, Clone)]
struct UserGroup {
    id: String,
    handle: String,
    name: String,
    users: Vec<String>,
    date_update: u64,
    updated_by: String,
}

#[derive(Debug, Clone)]
struct Trigger {
    issued: Instant,
    used: bool,
}

#[derive(Debug, Clone)]
struct ResponseUrl {
    created: Instant,
    uses: u32,
    expired: bool,
    channel: Option<String>,
    message_ts: Option<String>,
    posts: Vec<ResponseUrlPost>,
}

struct Inner {
    token: String,
    base_url: String,
    calls: Vec<Call>,
    faults: HashMap<String, VecDeque<Fault>>,
    channels: BTreeMap<String, Channel>,
    /// All messages of all channels, in posting order.
    messages: Vec<Message>,
    ephemerals: Vec<Ephemeral>,
    users: BTreeMap<String, User>,
    usergroups: BTreeMap<String, UserGroup>,
    triggers: HashMap<String, Trigger>,
    /// Home tabs published with `views.publish`, by user.
    homes: BTreeMap<String, Value>,
    views: Vec<OpenedView>,
    response_urls: HashMap<String, ResponseUrl>,
    ts_seq: u64,
    id_seq: u64,
    /// Added to every Web API answer (benchmarks: a realistic round trip).
    latency: Duration,
    /// Socket Mode: the app-level token `apps.connections.open` accepts, and where its URLs come
    /// from (the fake Socket Mode server). `None`: Socket Mode is off for this app.
    socket_mode: Option<(String, SocketMinter)>,
}

/// Mints a fresh single-use Socket Mode URL.
pub type SocketMinter = Arc<dyn Fn() -> String + Send + Sync>;

/// Per-request context: warnings to attach to the response.
struct Ctx {
    now: Instant,
    warnings: Vec<String>,
}

/// An `ok:false` answer.
#[derive(Debug)]
struct ApiError {
    code: String,
    extra: Map<String, Value>,
}

impl ApiError {
    fn new(code: &str) -> ApiError {
        ApiError {
            code: code.to_string(),
            extra: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// `invalid_arguments` with `response_metadata.messages` (`[ERROR] …`), as Slack answers
    /// for schema violations in views and missing required arguments.
    fn invalid_arguments(messages: Vec<String>) -> ApiError {
        let messages: Vec<String> = messages
            .into_iter()
            .map(|m| format!("[ERROR] {m}"))
            .collect();
        ApiError::new("invalid_arguments")
            .with("response_metadata", json!({ "messages": messages }))
    }

    fn missing(arg: &str) -> ApiError {
        ApiError::invalid_arguments(vec![format!("missing required field: {arg}")])
    }
}

type ApiResult = Result<Map<String, Value>, ApiError>;

fn err(code: &str) -> ApiError {
    ApiError::new(code)
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not poison the fake for the assertions that follow.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

// ============================================================================================
// FakeSlack: setup, scripting, inspection
// ============================================================================================

/// A running fake Slack. The server task is aborted when this value is dropped.
pub struct FakeSlack {
    addr: SocketAddr,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    /// Binds 127.0.0.1:0 and serves with the token [`DEFAULT_TOKEN`].
    pub async fn start() -> FakeSlack {
        FakeSlack::start_with_token(DEFAULT_TOKEN).await
    }

    /// Binds 127.0.0.1:0 and serves, accepting only `Authorization: Bearer <token>`.
    pub async fn start_with_token(token: &str) -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake slack: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake slack: local_addr");
        let inner: Shared = Arc::new(Mutex::new(Inner::new(token, format!("http://{addr}"))));
        let app = Router::new()
            .route("/api/{method}", post(api_handler).get(api_handler))
            .route("/response/{id}", post(response_url_handler))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack {
            addr,
            inner,
            server,
        }
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    // ---------------------------------------------------------------- addresses & token

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/api` — the Web API base; methods are at `{api_url}/{method}`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.url())
    }

    /// The accepted bot token.
    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// Every Web API call answers after `latency` (benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Turns Socket Mode on: `apps.connections.open` accepts `app_token` (Bearer) and answers with
    /// a URL from `minter` (see `fake_socket_mode.rs`).
    pub fn enable_socket_mode(&self, app_token: &str, minter: SocketMinter) {
        self.state().socket_mode = Some((app_token.to_string(), minter));
    }

    /// Changes the accepted token (simulates rotation: the old token now gets `invalid_auth`).
    pub fn set_token(&self, token: &str) {
        self.state().token = token.to_string();
    }

    // ---------------------------------------------------------------- workspace fixtures

    /// Adds a public channel the bot is a member of.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.state().insert_channel(id, name, true);
    }

    /// Adds a public channel the bot is *not* a member of (posting → `not_in_channel` until
    /// `conversations.join`).
    pub fn add_channel_not_member(&self, id: &str, name: &str) {
        self.state().insert_channel(id, name, false);
    }

    /// Adds a private channel, with the bot in it or not. One the bot is not in is invisible to
    /// it: every method answers `channel_not_found` (conversations.join included); one it is in
    /// answers `conversations.join` with `method_not_supported_for_channel_type`.
    pub fn add_private_channel(&self, id: &str, name: &str, bot_member: bool) {
        let mut st = self.state();
        st.insert_channel(id, name, bot_member);
        st.channel_mut(id).private = true;
    }

    /// Archives a channel (posting → `is_archived`). Panics if unknown.
    pub fn archive_channel(&self, id: &str) {
        self.state().channel_mut(id).archived = true;
    }

    /// Sets whether the bot is a member of a channel. Panics if unknown.
    /// Set a channel's topic as a person would. Panics if unknown.
    pub fn set_topic(&self, id: &str, topic: &str) {
        self.state().channel_mut(id).topic = topic.to_string();
    }
    /// A channel's topic. Panics if unknown.
    pub fn topic(&self, id: &str) -> String {
        self.state().channel_mut(id).topic.clone()
    }

    pub fn set_bot_member(&self, id: &str, member: bool) {
        self.state().channel_mut(id).member = member;
    }

    /// Whether the bot is a member of a channel. Panics if unknown.
    pub fn is_bot_member(&self, id: &str) -> bool {
        self.state().channel_mut(id).member
    }

    /// Tracks the human members of a channel (used by chat.postEphemeral's
    /// `user_not_in_channel`). Panics if unknown.
    pub fn set_channel_members(&self, id: &str, users: &[&str]) {
        self.state().channel_mut(id).members = Some(users.iter().map(|u| u.to_string()).collect());
    }

    /// Adds a workspace user (`users.info`, `users.lookupByEmail`, user groups, DMs).
    pub fn add_user(&self, id: &str, name: &str, email: &str, tz: &str) {
        self.state().users.insert(
            id.to_string(),
            User {
                id: id.to_string(),
                name: name.to_string(),
                email: email.to_string(),
                tz: tz.to_string(),
                deleted: false,
                is_bot: false,
                is_app_user: false,
            },
        );
    }

    /// Adds a bot user: users.info answers it with `is_bot: true` and a `profile.bot_id`, and no
    /// email, as Slack does for bot users.
    pub fn add_bot_user(&self, id: &str, name: &str) {
        self.add_user(id, name, "", "UTC");
        self.state().users.get_mut(id).expect("just added").is_bot = true;
    }

    /// Adds an app (workflow) user: users.info answers `is_app_user: true`.
    pub fn add_app_user(&self, id: &str, name: &str) {
        self.add_user(id, name, "", "UTC");
        self.state()
            .users
            .get_mut(id)
            .expect("just added")
            .is_app_user = true;
    }

    /// Deactivates a member: users.info keeps answering, with `deleted: true` (Slack never
    /// forgets a deactivated account). Panics if unknown.
    pub fn deactivate_user(&self, id: &str) {
        self.state()
            .users
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake slack: no user {id}"))
            .deleted = true;
    }

    /// Adds a user group (`handle` without `@`; its `name` is the handle).
    pub fn add_usergroup(&self, id: &str, handle: &str, members: &[&str]) {
        self.state().usergroups.insert(
            id.to_string(),
            UserGroup {
                id: id.to_string(),
                handle: handle.to_string(),
                name: handle.to_string(),
                users: members.iter().map(|m| m.to_string()).collect(),
                date_update: TS_EPOCH_SECS,
                updated_by: "U0ADMIN".to_string(),
            },
        );
    }

    /// Puts a message authored by `user` (a human) into a channel; returns its ts. The bot
    /// cannot `chat.update` it (`cant_update_message`). Panics if the channel is unknown.
    pub fn insert_message(&self, channel: &str, user: &str, text: &str) -> String {
        let mut st = self.state();
        st.channel_mut(channel);
        let ts = st.next_ts();
        st.messages.push(Message {
            channel: channel.to_string(),
            ts: ts.clone(),
            text: text.to_string(),
            blocks: Value::Null,
            thread_ts: None,
            updated: 0,
            user: user.to_string(),
            metadata: Value::Null,
            reactions: Vec::new(),
            pinned: false,
        });
        ts
    }

    /// Puts a reply by `user` (a human) into the thread of `thread_ts`; returns its ts.
    /// Panics if the channel is unknown.
    pub fn insert_reply(&self, channel: &str, thread_ts: &str, user: &str, text: &str) -> String {
        let mut st = self.state();
        st.channel_mut(channel);
        let ts = st.next_ts();
        st.messages.push(Message {
            channel: channel.to_string(),
            ts: ts.clone(),
            text: text.to_string(),
            blocks: Value::Null,
            thread_ts: Some(thread_ts.to_string()),
            updated: 0,
            user: user.to_string(),
            metadata: Value::Null,
            reactions: Vec::new(),
            pinned: false,
        });
        ts
    }

    /// The id of a channel by name (e.g. one created through `conversations.create`).
    pub fn channel_id_by_name(&self, name: &str) -> Option<String> {
        self.state().resolve_channel(name)
    }

    /// Tracked human members of a channel (`None` when not tracked). Panics if unknown.
    pub fn channel_members(&self, id: &str) -> Option<Vec<String>> {
        self.state().channel_mut(id).members.clone()
    }

    // ---------------------------------------------------------------- trigger ids

    /// Mints a fresh, valid `trigger_id` (issued now, unused), shaped like Slack's
    /// `12345.98765.abcd2358fdea`.
    pub fn trigger_id(&self) -> String {
        let mut st = self.state();
        let n = st.next_id();
        let id = format!(
            "{}.{}.{:032x}",
            100_000 + n,
            7_000_000 + n,
            rand::random::<u128>()
        );
        st.register_trigger(&id, Instant::now());
        id
    }

    /// Registers a trigger id (e.g. one from an interaction fixture) as issued now.
    pub fn register_trigger(&self, trigger_id: &str) {
        self.state().register_trigger(trigger_id, Instant::now());
    }

    /// Registers a trigger id as issued `age` ago (so `age > 3 s` is already expired).
    pub fn register_trigger_issued_ago(&self, trigger_id: &str, age: Duration) {
        let issued = Instant::now()
            .checked_sub(age)
            .expect("fake slack: age too large for Instant");
        self.state().register_trigger(trigger_id, issued);
    }

    // ---------------------------------------------------------------- response_url

    /// Mints a fresh `response_url` not tied to any message: posts are only recorded.
    pub fn response_url(&self) -> String {
        self.state().mint_response_url(None, None)
    }

    /// Mints a `response_url` for a slash command in `channel`: `response_type: in_channel`
    /// posts a new message there.
    pub fn response_url_for_channel(&self, channel: &str) -> String {
        self.state()
            .mint_response_url(Some(channel.to_string()), None)
    }

    /// Mints a `response_url` for an interaction on message (`channel`, `ts`):
    /// `replace_original: true` edits it, `delete_original: true` deletes it, `in_channel`
    /// posts a new message in the channel.
    pub fn response_url_for_message(&self, channel: &str, ts: &str) -> String {
        self.state()
            .mint_response_url(Some(channel.to_string()), Some(ts.to_string()))
    }

    /// Marks a response_url as expired (as after 30 minutes): posts → 404 `expired_url`.
    pub fn expire_response_url(&self, id_or_url: &str) {
        let id = response_url_id(id_or_url);
        self.state()
            .response_urls
            .get_mut(&id)
            .unwrap_or_else(|| panic!("fake slack: unknown response_url {id_or_url}"))
            .expired = true;
    }

    /// All POSTs to a response_url (pass the id or the whole URL), accepted or not.
    pub fn response_url_posts(&self, id_or_url: &str) -> Vec<ResponseUrlPost> {
        let id = response_url_id(id_or_url);
        self.state()
            .response_urls
            .get(&id)
            .map(|r| r.posts.clone())
            .unwrap_or_default()
    }

    /// Number of accepted uses of a response_url so far.
    pub fn response_url_uses(&self, id_or_url: &str) -> u32 {
        let id = response_url_id(id_or_url);
        self.state().response_urls.get(&id).map_or(0, |r| r.uses)
    }

    /// Waits until at least `n` posts (accepted or not) reached a response_url.
    pub async fn wait_for_response_url_posts(
        &self,
        id_or_url: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<ResponseUrlPost> {
        let id = response_url_id(id_or_url);
        self.poll(
            timeout,
            &format!("{n} post(s) to response_url {id}"),
            |st| {
                let posts = st.response_urls.get(&id).map(|r| r.posts.clone())?;
                (posts.len() >= n).then_some(posts)
            },
        )
        .await
    }

    // ---------------------------------------------------------------- fault injection

    /// The next `times` calls of `method` (a Web API method name, or [`RESPONSE_URL_METHOD`]
    /// for response_url posts, or `"*"` for any method) get `fault`. Method-specific faults are
    /// consumed before `"*"` ones. Faults apply before authentication.
    pub fn fail_next(&self, method: &str, fault: Fault, times: usize) {
        let mut st = self.state();
        let queue = st.faults.entry(method.to_string()).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// Drops all scripted faults.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    // ---------------------------------------------------------------- recorded calls

    /// Recorded calls of one method, oldest first.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// All recorded calls, oldest first.
    pub fn all_calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn call_count(&self, method: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .count()
    }

    /// Forgets recorded calls (not state: channels, messages… stay).
    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }

    /// Polls every 10 ms until at least `n` calls of `method` were recorded; returns them.
    /// Panics on timeout, listing the methods that were recorded.
    pub async fn wait_for_calls(&self, method: &str, n: usize, timeout: Duration) -> Vec<Call> {
        self.poll(timeout, &format!("{n} call(s) to {method}"), |st| {
            let calls: Vec<Call> = st
                .calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect();
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    // ---------------------------------------------------------------- workspace state

    /// Messages currently in a channel (deleted ones excluded), oldest first.
    pub fn messages_in(&self, channel: &str) -> Vec<Message> {
        self.state()
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.state()
            .messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
            .cloned()
    }

    /// Waits until a channel holds at least `n` messages; returns them.
    pub async fn wait_for_messages(
        &self,
        channel: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Message> {
        self.poll(timeout, &format!("{n} message(s) in {channel}"), |st| {
            let msgs: Vec<Message> = st
                .messages
                .iter()
                .filter(|m| m.channel == channel)
                .cloned()
                .collect();
            (msgs.len() >= n).then_some(msgs)
        })
        .await
    }

    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.state().ephemerals.clone()
    }

    /// The Home tab last published for `user`, if any.
    pub fn home_of(&self, user: &str) -> Option<Value> {
        self.state().homes.get(user).cloned()
    }

    pub fn views(&self) -> Vec<OpenedView> {
        self.state().views.clone()
    }

    /// Current members of a user group. Panics if unknown.
    pub fn usergroup_members(&self, id: &str) -> Vec<String> {
        self.state()
            .usergroups
            .get(id)
            .unwrap_or_else(|| panic!("fake slack: unknown usergroup {id}"))
            .users
            .clone()
    }

    /// The DM channel id opened for a user by `conversations.open` or a post to a user id.
    pub fn dm_channel_of(&self, user: &str) -> Option<String> {
        self.state()
            .channels
            .values()
            .find(|c| c.is_im && c.im_user.as_deref() == Some(user))
            .map(|c| c.id.clone())
    }

    // ---------------------------------------------------------------- polling

    async fn poll<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Inner) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let summary = {
                let st = self.state();
                if let Some(found) = probe(&st) {
                    return found;
                }
                st.recorded_summary()
            };
            if Instant::now() >= deadline {
                panic!(
                    "fake slack: timed out after {timeout:?} waiting for {what}; \
                     recorded calls: [{summary}]"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Inner {
    fn new(token: &str, base_url: String) -> Inner {
        Inner {
            token: token.to_string(),
            base_url,
            calls: Vec::new(),
            faults: HashMap::new(),
            channels: BTreeMap::new(),
            messages: Vec::new(),
            ephemerals: Vec::new(),
            users: BTreeMap::new(),
            usergroups: BTreeMap::new(),
            triggers: HashMap::new(),
            views: Vec::new(),
            homes: BTreeMap::new(),
            response_urls: HashMap::new(),
            ts_seq: 0,
            id_seq: 0,
            latency: Duration::ZERO,
            socket_mode: None,
        }
    }

    fn insert_channel(&mut self, id: &str, name: &str, member: bool) {
        self.channels.insert(
            id.to_string(),
            Channel {
                id: id.to_string(),
                name: Some(name.trim_start_matches('#').to_string()),
                archived: false,
                member,
                private: false,
                is_im: false,
                is_mpim: false,
                im_user: None,
                topic: String::new(),
                members: None,
            },
        );
    }

    fn channel_mut(&mut self, id: &str) -> &mut Channel {
        self.channels
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake slack: unknown channel {id}; add_channel it first"))
    }

    fn register_trigger(&mut self, id: &str, issued: Instant) {
        self.triggers.insert(
            id.to_string(),
            Trigger {
                issued,
                used: false,
            },
        );
    }

    fn mint_response_url(&mut self, channel: Option<String>, message_ts: Option<String>) -> String {
        let n = self.next_id();
        let id = format!("{n:04}{:016x}", rand::random::<u64>());
        self.response_urls.insert(
            id.clone(),
            ResponseUrl {
                created: Instant::now(),
                uses: 0,
                expired: false,
                channel,
                message_ts,
                posts: Vec::new(),
            },
        );
        format!("{}/response/{id}", self.base_url)
    }

    /// Monotonically increasing message ts: `1700000000.000100`, `1700000000.000200`, …
    fn next_ts(&mut self) -> String {
        self.ts_seq += 1;
        let micros = self.ts_seq * TS_STEP_MICROS;
        format!(
            "{}.{:06}",
            TS_EPOCH_SECS + micros / 1_000_000,
            micros % 1_000_000
        )
    }

    fn next_id(&mut self) -> u64 {
        self.id_seq += 1;
        self.id_seq
    }

    fn take_fault(&mut self, method: &str) -> Option<Fault> {
        for key in [method, "*"] {
            if let Some(fault) = self.faults.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(fault);
            }
        }
        None
    }

    /// "chat.postMessage×2, users.info×1" in order of first occurrence.
    fn recorded_summary(&self) -> String {
        let mut order: Vec<(&str, usize)> = Vec::new();
        for call in &self.calls {
            match order.iter_mut().find(|(m, _)| *m == call.method) {
                Some((_, n)) => *n += 1,
                None => order.push((&call.method, 1)),
            }
        }
        order
            .iter()
            .map(|(m, n)| format!("{m}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ============================================================================================
// HTTP layer
// ============================================================================================

/// How the request body was understood.
enum BodyKind {
    Empty,
    Json(Args),
    Form(Args),
    /// The body cannot be used; answer with this error code.
    Invalid(&'static str),
}

struct ParsedBody {
    kind: BodyKind,
    /// What gets recorded in [`Call::body`].
    recorded: Value,
    /// `missing_charset` / `superfluous_charset`, as Slack warns.
    warning: Option<&'static str>,
}

fn parse_body(content_type: Option<&str>, body: &[u8]) -> ParsedBody {
    let lossy = || Value::String(String::from_utf8_lossy(body).into_owned());
    if body.is_empty() {
        return ParsedBody {
            kind: BodyKind::Empty,
            recorded: Value::Null,
            warning: None,
        };
    }
    let Some(content_type) = content_type else {
        return ParsedBody {
            kind: BodyKind::Invalid("missing_post_type"),
            recorded: lossy(),
            warning: None,
        };
    };
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    if let Some(cs) = &charset
        && !matches!(cs.as_str(), "utf-8" | "utf8" | "iso-8859-1")
    {
        return ParsedBody {
            kind: BodyKind::Invalid("invalid_charset"),
            recorded: lossy(),
            warning: None,
        };
    }
    match mime.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => ParsedBody {
                recorded: Value::Object(map.clone()),
                kind: BodyKind::Json(map),
                warning: charset.is_none().then_some("missing_charset"),
            },
            Ok(other) => ParsedBody {
                kind: BodyKind::Invalid("invalid_json"),
                recorded: other,
                warning: None,
            },
            Err(_) => ParsedBody {
                kind: BodyKind::Invalid("invalid_json"),
                recorded: lossy(),
                warning: None,
            },
        },
        "application/x-www-form-urlencoded" => match parse_form(body) {
            Some(map) => ParsedBody {
                recorded: Value::Object(map.clone()),
                kind: BodyKind::Form(map),
                warning: charset.is_some().then_some("superfluous_charset"),
            },
            None => ParsedBody {
                kind: BodyKind::Invalid("invalid_form_data"),
                recorded: lossy(),
                warning: None,
            },
        },
        // Valid for real Slack, but this fake does not parse multipart (stricter, see //!).
        "multipart/form-data" => ParsedBody {
            kind: BodyKind::Invalid("invalid_form_data"),
            recorded: lossy(),
            warning: None,
        },
        _ => ParsedBody {
            kind: BodyKind::Invalid("invalid_post_type"),
            recorded: lossy(),
            warning: None,
        },
    }
}

fn parse_form(bytes: &[u8]) -> Option<Args> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes).ok()?;
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, retry_after_secs.to_string()),
                (
                    header::CONTENT_TYPE,
                    "application/json; charset=utf-8".to_string(),
                ),
            ],
            json!({"ok": false, "error": "ratelimited"}).to_string(),
        )
            .into_response(),
        Fault::ServerError(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                status.into_response()
            } else {
                let reason = status.canonical_reason().unwrap_or("Error");
                let page = format!(
                    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
                     <center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
                );
                (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
            }
        }
        Fault::Error(code) => json_response(StatusCode::OK, &json!({"ok": false, "error": code})),
        Fault::Delay(_) => unreachable!("delays are served by the caller"),
    }
}

/// Sleeps for `Delay` faults; returns an early response for the others.
async fn apply_fault(fault: Option<Fault>) -> Option<Response> {
    match fault? {
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        other => Some(fault_response(&other)),
    }
}

/// `POST|GET /api/{method}`.
async fn api_handler(
    State(shared): State<Shared>,
    http_method: axum::http::Method,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let parsed = parse_body(content_type.as_deref(), &body);
    let query_args = query
        .as_deref()
        .and_then(|q| parse_form(q.as_bytes()))
        .unwrap_or_default();

    let fault = {
        let mut st = lock(&shared);
        st.calls.push(Call {
            method: method.clone(),
            body: parsed.recorded.clone(),
            query: Value::Object(query_args.clone()),
            content_type,
            headers_authorization_present: authorization.is_some(),
            at: Instant::now(),
        });
        (st.take_fault(&method), st.latency)
    };
    let (fault, latency) = fault;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(response) = apply_fault(fault).await {
        return response;
    }
    if method == "apps.connections.open" {
        let st = lock(&shared);
        return apps_connections_open(&st, &http_method, authorization.as_deref());
    }

    let body = {
        let mut st = lock(&shared);
        st.handle_api(&method, authorization.as_deref(), parsed, query_args)
    };
    json_response(StatusCode::OK, &body)
}

/// `apps.connections.open` (reference/slack-socket-mode.md §1 and "choices made in our fake"):
/// POST only (`insecure_request`), the app-level token only as `Authorization: Bearer` (a `token`
/// form or query field alone gets `not_authed`; a bot or unknown token `invalid_auth`), and the
/// answer carries `X-OAuth-Scopes: connections:write`.
fn apps_connections_open(
    st: &Inner,
    http_method: &axum::http::Method,
    authorization: Option<&str>,
) -> Response {
    let fail = |code: &str| json_response(StatusCode::OK, &json!({"ok": false, "error": code}));
    if http_method != axum::http::Method::POST {
        return fail("insecure_request");
    }
    let bearer = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty())
    });
    let Some(token) = bearer else {
        return fail("not_authed");
    };
    let Some((app_token, minter)) = st.socket_mode.as_ref() else {
        return fail("invalid_auth");
    };
    if &token != app_token {
        return fail("invalid_auth");
    }
    let url = minter();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (
                header::HeaderName::from_static("x-oauth-scopes"),
                "connections:write",
            ),
        ],
        json!({"ok": true, "url": url}).to_string(),
    )
        .into_response()
}

/// `POST /response/{id}` — stand-in for `https://hooks.slack.com/actions/…` /
/// `…/commands/…`. Answers are those of Slack's webhook endpoints: 200 on success, otherwise a
/// 4xx with a short plain-text error code.
async fn response_url_handler(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let fault = lock(&shared).take_fault(RESPONSE_URL_METHOD);
    if let Some(response) = apply_fault(fault).await {
        return response;
    }
    let (status, text) = lock(&shared).handle_response_url(&id, &body, now);
    if status == StatusCode::OK {
        json_response(status, &json!({"ok": true}))
    } else {
        (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
    }
}

// ============================================================================================
// Web API dispatch
// ============================================================================================

impl Inner {
    /// Authenticates, builds the arguments, dispatches; returns the JSON body (always HTTP 200).
    fn handle_api(
        &mut self,
        method: &str,
        authorization: Option<&str>,
        parsed: ParsedBody,
        query_args: Args,
    ) -> Value {
        let mut ctx = Ctx {
            now: Instant::now(),
            warnings: Vec::new(),
        };
        let result =
            self.authenticate_and_dispatch(method, authorization, parsed, query_args, &mut ctx);
        finish(result, ctx.warnings)
    }

    fn authenticate_and_dispatch(
        &mut self,
        method: &str,
        authorization: Option<&str>,
        parsed: ParsedBody,
        query_args: Args,
        ctx: &mut Ctx,
    ) -> ApiResult {
        let is_write = WRITE_METHODS.contains(&method);
        if !is_write && !READ_METHODS.contains(&method) {
            return Err(err("unknown_method").with("req_method", json!(method)));
        }

        // Authentication: Bearer only. A `token` in a JSON body is ignored, like Slack does.
        let bearer = authorization.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|t| !t.is_empty())
        });
        match bearer {
            None => return Err(err("not_authed")),
            Some(t) if t != self.token => return Err(err("invalid_auth")),
            Some(_) => {}
        }

        if let Some(w) = parsed.warning {
            ctx.warnings.push(w.to_string());
        }
        let mut args = query_args;
        match parsed.kind {
            BodyKind::Invalid(code) => return Err(err(code)),
            BodyKind::Empty => {}
            BodyKind::Form(form) => args.extend(form),
            // Slack only reads JSON bodies for write methods; for read methods the JSON body is
            // silently treated as "no arguments".
            BodyKind::Json(json) if is_write => args.extend(json),
            BodyKind::Json(_) => {}
        }
        args.remove("token");

        match method {
            "auth.test" => Ok(self.auth_test()),
            "chat.postMessage" => self.chat_post_message(&args, ctx),
            "chat.update" => self.chat_update(&args, ctx),
            "chat.postEphemeral" => self.chat_post_ephemeral(&args, ctx),
            "chat.delete" => self.chat_delete(&args),
            "chat.getPermalink" => self.chat_get_permalink(&args),
            "views.open" => self.views_open(&args, ctx, false),
            "views.push" => self.views_open(&args, ctx, true),
            "views.update" => self.views_update(&args),
            "views.publish" => self.views_publish(&args),
            "reactions.add" => self.reactions_add(&args),
            "pins.add" => self.pins_add(&args),
            "pins.remove" => self.pins_remove(&args),
            "conversations.join" => self.conversations_join(&args, ctx),
            "conversations.open" => self.conversations_open(&args),
            "conversations.info" => self.conversations_info(&args),
            "conversations.setTopic" => self.conversations_set_topic(&args),
            "conversations.create" => self.conversations_create(&args),
            "conversations.invite" => self.conversations_invite(&args),
            "conversations.history" => self.conversations_history(&args),
            "conversations.replies" => self.conversations_replies(&args),
            "users.info" => self.users_info(&args),
            "users.lookupByEmail" => self.users_lookup_by_email(&args),
            "usergroups.list" => Ok(self.usergroups_list(&args)),
            "usergroups.users.list" => self.usergroups_users_list(&args),
            "usergroups.users.update" => self.usergroups_users_update(&args),
            other => unreachable!("method {other} is listed but not dispatched"),
        }
    }
}

/// Adds `ok`, and the `warning` / `response_metadata.warnings` Slack attaches.
fn finish(result: ApiResult, warnings: Vec<String>) -> Value {
    let mut body = match result {
        Ok(mut map) => {
            map.insert("ok".into(), json!(true));
            map
        }
        Err(e) => {
            let mut map = e.extra;
            map.insert("ok".into(), json!(false));
            map.insert("error".into(), json!(e.code));
            map
        }
    };
    if !warnings.is_empty() {
        body.insert("warning".into(), json!(warnings.join(",")));
        let meta = body.entry("response_metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("warnings".into(), json!(warnings));
        }
    }
    Value::Object(body)
}

// ============================================================================================
// Methods: auth, chat.*
// ============================================================================================

impl Inner {
    fn auth_test(&self) -> Map<String, Value> {
        obj(json!({
            "url": WORKSPACE_URL,
            "team": "Fake",
            "user": "slackops",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        }))
    }

    /// Resolves a channel argument: id, or name with/without `#`.
    /// A channel as a Web API call by the bot sees it: a private channel the bot is not in does
    /// not exist for it (Slack answers `channel_not_found`).
    fn visible_channel(&self, arg: &str) -> Option<String> {
        self.resolve_channel(arg)
            .filter(|id| !self.channels[id].private || self.channels[id].member)
    }

    fn resolve_channel(&self, arg: &str) -> Option<String> {
        if self.channels.contains_key(arg) {
            return Some(arg.to_string());
        }
        let name = arg.strip_prefix('#').unwrap_or(arg);
        self.channels
            .values()
            .find(|c| c.name.as_deref() == Some(name))
            .map(|c| c.id.clone())
    }

    /// Channel that the bot may post into, or the Slack error for it.
    fn postable_channel(
        &mut self,
        arg: Option<String>,
        allow_user_dm: bool,
    ) -> Result<String, ApiError> {
        let arg = arg.ok_or_else(|| err("channel_not_found"))?;
        let id = match self.visible_channel(&arg) {
            Some(id) => id,
            // chat.postMessage to a user id posts into the bot's DM with that user (App Home).
            None if allow_user_dm && self.users.contains_key(&arg) => self.open_im(&arg).0,
            None => return Err(err("channel_not_found")),
        };
        let channel = &self.channels[&id];
        if channel.archived {
            return Err(err("is_archived"));
        }
        if !channel.member {
            return Err(err("not_in_channel"));
        }
        Ok(id)
    }

    fn message_index(&self, channel: &str, ts: &str) -> Option<usize> {
        self.messages
            .iter()
            .position(|m| m.channel == channel && m.ts == ts)
    }

    fn chat_post_message(&mut self, args: &Args, ctx: &mut Ctx) -> ApiResult {
        let channel = self.postable_channel(arg_str(args, "channel"), true)?;
        let content = MessageContent::from_args(args, ctx)?;
        let thread_ts = arg_str(args, "thread_ts");
        let ts = self.next_ts();
        let message = Message {
            channel: channel.clone(),
            ts: ts.clone(),
            text: content.text.unwrap_or_default(),
            blocks: content.blocks.unwrap_or(Value::Null),
            thread_ts: thread_ts.clone(),
            updated: 0,
            user: BOT_USER_ID.to_string(),
            metadata: content.metadata.unwrap_or(Value::Null),
            reactions: Vec::new(),
            pinned: false,
        };
        let message_json = bot_message_json(&message, content.attachments.as_ref());
        self.messages.push(message);
        Ok(obj(json!({
            "channel": channel,
            "ts": ts,
            "message": message_json,
        })))
    }

    fn chat_update(&mut self, args: &Args, ctx: &mut Ctx) -> ApiResult {
        let channel_arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let channel = self
            .visible_channel(&channel_arg)
            .ok_or_else(|| err("channel_not_found"))?;
        if self.channels[&channel].archived {
            return Err(err("is_archived"));
        }
        let ts = arg_str(args, "ts").ok_or_else(|| err("message_not_found"))?;
        let idx = self
            .message_index(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        if self.messages[idx].user != BOT_USER_ID {
            return Err(err("cant_update_message"));
        }
        let content = MessageContent::from_args(args, ctx)?;
        let message = &mut self.messages[idx];
        // Omitted fields keep their previous value; `blocks: []` removes the blocks.
        if let Some(text) = content.text {
            message.text = text;
        }
        if let Some(blocks) = content.blocks {
            message.blocks = if blocks.as_array().is_some_and(Vec::is_empty) {
                Value::Null
            } else {
                blocks
            };
        }
        if let Some(metadata) = content.metadata {
            message.metadata = metadata;
        }
        message.updated += 1;
        let message = message.clone();
        let edited_ts = self.next_ts();
        let mut message_json = bot_message_json(&message, content.attachments.as_ref());
        message_json.remove("thread_ts");
        message_json.insert(
            "edited".into(),
            json!({"user": BOT_USER_ID, "ts": edited_ts}),
        );
        let mut out = obj(json!({
            "channel": channel,
            "ts": ts,
            "text": message.text,
            "message": message_json,
        }));
        if let Some(thread_ts) = message.thread_ts {
            out.insert("thread_ts".into(), json!(thread_ts));
        }
        Ok(out)
    }

    fn chat_post_ephemeral(&mut self, args: &Args, ctx: &mut Ctx) -> ApiResult {
        let channel = self.postable_channel(arg_str(args, "channel"), false)?;
        let user = arg_str(args, "user").ok_or_else(|| err("user_not_in_channel"))?;
        let known = self.users.contains_key(&user);
        let in_channel = match &self.channels[&channel].members {
            Some(members) => members.contains(&user),
            None => true,
        };
        if !known || !in_channel {
            return Err(err("user_not_in_channel"));
        }
        let content = MessageContent::from_args(args, ctx)?;
        let message_ts = self.next_ts();
        self.ephemerals.push(Ephemeral {
            channel,
            user,
            text: content.text.unwrap_or_default(),
            blocks: content.blocks.unwrap_or(Value::Null),
            thread_ts: arg_str(args, "thread_ts"),
            message_ts: message_ts.clone(),
        });
        Ok(obj(json!({ "message_ts": message_ts })))
    }

    fn chat_delete(&mut self, args: &Args) -> ApiResult {
        let channel_arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let channel = self
            .visible_channel(&channel_arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let ts = arg_str(args, "ts").ok_or_else(|| err("message_not_found"))?;
        let idx = self
            .message_index(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        if self.messages[idx].user != BOT_USER_ID {
            return Err(err("cant_delete_message"));
        }
        self.messages.remove(idx);
        Ok(obj(json!({ "channel": channel, "ts": ts })))
    }

    fn chat_get_permalink(&mut self, args: &Args) -> ApiResult {
        let channel_arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let channel = self
            .visible_channel(&channel_arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let ts = arg_str(args, "message_ts").ok_or_else(|| err("message_not_found"))?;
        let idx = self
            .message_index(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        let mut permalink = format!("{WORKSPACE_URL}archives/{channel}/p{}", ts.replace('.', ""));
        if let Some(thread_ts) = &self.messages[idx].thread_ts
            && *thread_ts != ts
        {
            permalink.push_str(&format!("?thread_ts={thread_ts}&cid={channel}"));
        }
        Ok(obj(json!({ "channel": channel, "permalink": permalink })))
    }
}

/// `text`/`blocks`/`attachments`/`metadata` of chat.postMessage / chat.update /
/// chat.postEphemeral / response_url bodies, validated like Slack.
struct MessageContent {
    text: Option<String>,
    blocks: Option<Value>,
    attachments: Option<Value>,
    metadata: Option<Value>,
}

impl MessageContent {
    fn from_args(args: &Args, ctx: &mut Ctx) -> Result<MessageContent, ApiError> {
        let blocks = arg_json(args, "blocks").map_err(|()| err("invalid_blocks_format"))?;
        let attachments = arg_json(args, "attachments").map_err(|()| err("invalid_attachments"))?;
        let metadata = arg_json(args, "metadata").map_err(|()| err("invalid_metadata_format"))?;
        let mut text = arg_str(args, "text");

        let has_blocks = blocks
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|b| !b.is_empty());
        let has_attachments = attachments
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if text.is_none() && !has_blocks && !has_attachments {
            return Err(err("no_text"));
        }
        if let Some(blocks) = &blocks {
            validate_message_blocks(blocks)?;
        }
        if let Some(md) = &metadata
            && md.get("event_type").and_then(Value::as_str).is_none()
        {
            return Err(err("invalid_metadata_format"));
        }
        if let Some(t) = &mut text
            && truncate_chars(t, MAX_MESSAGE_TEXT)
        {
            ctx.warnings.push("message_truncated".to_string());
        }
        Ok(MessageContent {
            text,
            blocks,
            attachments,
            metadata,
        })
    }
}

/// The `message` object Slack returns for a bot-posted message.
fn bot_message_json(m: &Message, attachments: Option<&Value>) -> Map<String, Value> {
    let mut out = obj(json!({
        "type": "message",
        "text": m.text,
        "user": m.user,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "ts": m.ts,
    }));
    if !m.blocks.is_null() {
        out.insert("blocks".into(), m.blocks.clone());
    }
    if let Some(a) = attachments {
        out.insert("attachments".into(), a.clone());
    }
    if !m.metadata.is_null() {
        out.insert("metadata".into(), m.metadata.clone());
    }
    if let Some(t) = &m.thread_ts {
        out.insert("thread_ts".into(), json!(t));
    }
    out
}

// ============================================================================================
// Methods: views.*
// ============================================================================================

impl Inner {
    /// Exchanges a trigger: unknown-but-well-formed → `expired_trigger_id`, malformed →
    /// `invalid_trigger_id`, older than 3 s → `expired_trigger_id`, already used →
    /// `exchanged_trigger_id` (error names per Slack's views.open documentation).
    fn exchange_trigger(&mut self, trigger_id: &str, now: Instant) -> Result<(), ApiError> {
        match self.triggers.get_mut(trigger_id) {
            Some(t) if t.used => Err(err("exchanged_trigger_id")),
            Some(t) if now.saturating_duration_since(t.issued) > TRIGGER_TTL => {
                Err(err("expired_trigger_id"))
            }
            Some(t) => {
                t.used = true;
                Ok(())
            }
            None if looks_like_trigger_id(trigger_id) => Err(err("expired_trigger_id")),
            None => Err(err("invalid_trigger_id")),
        }
    }

    /// views.open and views.push (same arguments; push marks the view as pushed).
    fn views_open(&mut self, args: &Args, ctx: &mut Ctx, pushed: bool) -> ApiResult {
        let trigger_id =
            arg_str(args, "trigger_id").ok_or_else(|| ApiError::missing("trigger_id"))?;
        let view = arg_json(args, "view")
            .map_err(|()| ApiError::invalid_arguments(vec!["invalid `view` JSON".into()]))?
            .ok_or_else(|| ApiError::missing("view"))?;
        // The view is validated before the trigger is exchanged.
        let view = validate_view(&view)?;
        let external_id = view
            .get("external_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if let Some(ext) = &external_id
            && self
                .views
                .iter()
                .any(|v| v.external_id.as_ref() == Some(ext))
        {
            return Err(err("duplicate_external_id"));
        }
        self.exchange_trigger(&trigger_id, ctx.now)?;

        let n = self.next_id();
        let id = format!("V0FAKE{n:05}");
        let hash = new_view_hash(n);
        let returned = stateful_view(view, &id, &hash);
        self.views.push(OpenedView {
            id,
            view: returned.clone(),
            hash,
            external_id,
            trigger_id: Some(trigger_id),
            updates: 0,
            pushed,
        });
        Ok(obj(json!({ "view": returned })))
    }

    /// views.publish (Slack's method page): `user_id` and a `home` view; an unknown user is
    /// `not_found`. The published view replaces the user's Home tab.
    fn views_publish(&mut self, args: &Args) -> ApiResult {
        let user = arg_str(args, "user_id").ok_or_else(|| ApiError::missing("user_id"))?;
        let view = arg_json(args, "view")
            .map_err(|()| ApiError::invalid_arguments(vec!["invalid `view` JSON".into()]))?
            .ok_or_else(|| ApiError::missing("view"))?;
        let view = validate_home(&view)?;
        if !self.users.contains_key(&user) {
            return Err(err("not_found"));
        }
        let n = self.next_id();
        let returned = stateful_view(view, &format!("V0HOME{n:05}"), &new_view_hash(n));
        self.homes.insert(user, returned.clone());
        Ok(obj(json!({ "view": returned })))
    }

    fn views_update(&mut self, args: &Args) -> ApiResult {
        let view_id = arg_str(args, "view_id");
        let external_id = arg_str(args, "external_id");
        if view_id.is_none() && external_id.is_none() {
            return Err(ApiError::missing("view_id"));
        }
        let view = arg_json(args, "view")
            .map_err(|()| ApiError::invalid_arguments(vec!["invalid `view` JSON".into()]))?
            .ok_or_else(|| ApiError::missing("view"))?;
        let view = validate_view(&view)?;
        let idx = self
            .views
            .iter()
            .position(|v| {
                view_id.as_deref() == Some(v.id.as_str())
                    || (view_id.is_none() && external_id.is_some() && v.external_id == external_id)
            })
            .ok_or_else(|| err("not_found"))?;
        if let Some(hash) = arg_str(args, "hash")
            && hash != self.views[idx].hash
        {
            return Err(err("hash_conflict"));
        }
        let n = self.next_id();
        let hash = new_view_hash(n);
        let id = self.views[idx].id.clone();
        let returned = stateful_view(view, &id, &hash);
        let stored = &mut self.views[idx];
        stored.view = returned.clone();
        stored.hash = hash;
        stored.updates += 1;
        Ok(obj(json!({ "view": returned })))
    }
}

/// Slack's `trigger_id` format: `12345.98765.abcd2358fdea`.
fn looks_like_trigger_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[..2]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !parts[2].is_empty()
        && parts[2].bytes().all(|b| b.is_ascii_alphanumeric())
}

fn new_view_hash(n: u64) -> String {
    format!("{}.{:08x}", TS_EPOCH_SECS + n, rand::random::<u32>())
}

/// The view as Slack returns it: submitted fields, defaults, and the state parameters.
fn stateful_view(view: Map<String, Value>, id: &str, hash: &str) -> Value {
    let mut out = view;
    for (key, default) in [
        ("private_metadata", json!("")),
        ("callback_id", json!("")),
        ("external_id", json!("")),
        ("clear_on_close", json!(false)),
        ("notify_on_close", json!(false)),
    ] {
        out.entry(key).or_insert(default);
    }
    out.insert("id".into(), json!(id));
    out.insert("team_id".into(), json!(TEAM_ID));
    out.insert("state".into(), json!({"values": {}}));
    out.insert("hash".into(), json!(hash));
    out.insert("previous_view_id".into(), Value::Null);
    out.insert("root_view_id".into(), json!(id));
    out.insert("app_id".into(), json!(APP_ID));
    out.insert("app_installed_team_id".into(), json!(TEAM_ID));
    out.insert("bot_id".into(), json!(BOT_ID));
    Value::Object(out)
}

// ============================================================================================
// Methods: reactions, pins, conversations
// ============================================================================================

impl Inner {
    /// (channel id, message index) addressed by `channel` + `timestamp`.
    fn addressed_message(&self, args: &Args) -> Result<(String, usize), ApiError> {
        let channel_arg = arg_str(args, "channel").ok_or_else(|| err("no_item_specified"))?;
        let ts = arg_str(args, "timestamp").ok_or_else(|| err("no_item_specified"))?;
        let channel = self
            .visible_channel(&channel_arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let idx = self
            .message_index(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        Ok((channel, idx))
    }

    fn reactions_add(&mut self, args: &Args) -> ApiResult {
        let name = arg_str(args, "name").ok_or_else(|| err("invalid_name"))?;
        if name.contains(':') || name.contains(' ') {
            return Err(err("invalid_name"));
        }
        let (_, idx) = self.addressed_message(args)?;
        let message = &mut self.messages[idx];
        if message.reactions.contains(&name) {
            return Err(err("already_reacted"));
        }
        message.reactions.push(name);
        Ok(Map::new())
    }

    fn pins_add(&mut self, args: &Args) -> ApiResult {
        let (_, idx) = self.addressed_message(args)?;
        let message = &mut self.messages[idx];
        if message.pinned {
            return Err(err("already_pinned"));
        }
        message.pinned = true;
        Ok(Map::new())
    }

    fn pins_remove(&mut self, args: &Args) -> ApiResult {
        let (_, idx) = self.addressed_message(args)?;
        let message = &mut self.messages[idx];
        if !message.pinned {
            return Err(err("no_pin"));
        }
        message.pinned = false;
        Ok(Map::new())
    }

    fn conversations_join(&mut self, args: &Args, ctx: &mut Ctx) -> ApiResult {
        let arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let id = self
            .visible_channel(&arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let channel = self.channel_mut(&id);
        // Only public channels can be joined; a private one the bot is not in is already
        // `channel_not_found` above.
        if channel.is_im || channel.is_mpim || channel.private {
            return Err(err("method_not_supported_for_channel_type"));
        }
        if channel.archived {
            return Err(err("is_archived"));
        }
        if channel.member {
            ctx.warnings.push("already_in_channel".to_string());
        }
        channel.member = true;
        let info = channel_json(channel);
        Ok(obj(json!({ "channel": info })))
    }

    /// Opens (or finds) the DM with `user`; returns (channel id, already_open).
    fn open_im(&mut self, user: &str) -> (String, bool) {
        if let Some(c) = self
            .channels
            .values()
            .find(|c| c.is_im && c.im_user.as_deref() == Some(user))
        {
            return (c.id.clone(), true);
        }
        let n = self.next_id();
        let id = format!("D0FAKE{n:05}");
        self.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                name: None,
                archived: false,
                member: true,
                private: false,
                is_im: true,
                is_mpim: false,
                im_user: Some(user.to_string()),
                topic: String::new(),
                members: Some(vec![user.to_string()]),
            },
        );
        (id, false)
    }

    fn conversations_open(&mut self, args: &Args) -> ApiResult {
        if let Some(channel) = arg_str(args, "channel") {
            let id = self
                .visible_channel(&channel)
                .ok_or_else(|| err("channel_not_found"))?;
            return Ok(obj(json!({
                "no_op": true, "already_open": true, "channel": {"id": id}
            })));
        }
        if args.get("users").is_some_and(Value::is_array) {
            return Err(err("invalid_array_arg"));
        }
        let users_arg = arg_str(args, "users").ok_or_else(|| err("users_list_not_supplied"))?;
        let users: Vec<String> = split_ids(&users_arg);
        if users.is_empty() {
            return Err(err("users_list_not_supplied"));
        }
        if let Some(unknown) = users.iter().find(|u| !self.users.contains_key(*u)) {
            return Err(err("user_not_found").with("user", json!(unknown)));
        }
        let (id, already_open) = if users.len() == 1 {
            self.open_im(&users[0])
        } else {
            let n = self.next_id();
            let id = format!("G0FAKE{n:05}");
            self.channels.insert(
                id.clone(),
                Channel {
                    id: id.clone(),
                    name: Some(format!("mpdm-{}-1", users.join("--"))),
                    archived: false,
                    member: true,
                    private: false,
                    is_im: false,
                    is_mpim: true,
                    im_user: None,
                    topic: String::new(),
                    members: Some(users.clone()),
                },
            );
            (id, false)
        };
        let mut out = obj(json!({ "channel": {"id": id} }));
        if already_open {
            out.insert("no_op".into(), json!(true));
            out.insert("already_open".into(), json!(true));
        }
        Ok(out)
    }

    /// `conversations.setTopic` (channel, topic): the bot must be in the channel
    /// (`not_in_channel`), which must not be archived (`is_archived`); topics are at most 250
    /// characters (`too_long`; Slack refuses, it does not truncate). `missing_scope` (no
    /// `channels:write.topic`) is scripted with `fail_next`.
    fn conversations_set_topic(&mut self, args: &Args) -> ApiResult {
        let arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let topic = arg_str(args, "topic").unwrap_or_default();
        let id = self
            .visible_channel(&arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let channel = self.channel_mut(&id);
        if channel.archived {
            return Err(err("is_archived"));
        }
        if !channel.member && !channel.is_im {
            return Err(err("not_in_channel"));
        }
        if topic.chars().count() > 250 {
            return Err(err("too_long"));
        }
        channel.topic = topic;
        let info = channel_json(channel);
        Ok(obj(json!({ "channel": info })))
    }

    fn conversations_info(&mut self, args: &Args) -> ApiResult {
        let arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let id = self
            .visible_channel(&arg)
            .ok_or_else(|| err("channel_not_found"))?;
        Ok(obj(json!({ "channel": channel_json(&self.channels[&id]) })))
    }
}

/// `ts` as (seconds, micros) so `1700000000.000100` compares as a time.
fn ts_key(ts: &str) -> (u64, u64) {
    let (a, b) = ts.split_once('.').unwrap_or((ts, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

impl Inner {
    /// A message as conversations.history / conversations.replies return it.
    fn listed_message_json(&self, m: &Message) -> Value {
        let mut v = if m.user == BOT_USER_ID {
            Value::Object(bot_message_json(m, None))
        } else {
            let mut v = json!({"type": "message", "user": m.user, "text": m.text, "ts": m.ts,
                               "team": TEAM_ID});
            if let Some(t) = &m.thread_ts {
                v["thread_ts"] = json!(t);
            }
            v
        };
        let replies = self
            .messages
            .iter()
            .filter(|r| {
                r.channel == m.channel && r.thread_ts.as_deref() == Some(&m.ts) && r.ts != m.ts
            })
            .count();
        if replies > 0 {
            v["thread_ts"] = json!(m.ts);
            v["reply_count"] = json!(replies);
        }
        if !m.reactions.is_empty() {
            v["reactions"] = json!(
                m.reactions
                    .iter()
                    .map(|r| json!({"name": r, "count": 1, "users": [BOT_USER_ID]}))
                    .collect::<Vec<_>>()
            );
        }
        v
    }

    /// A channel the bot may read: `channel_not_found`, else `not_in_channel` unless a member.
    fn readable_channel(&self, args: &Args) -> Result<String, ApiError> {
        let arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let id = self
            .visible_channel(&arg)
            .ok_or_else(|| err("channel_not_found"))?;
        if !self.channels[&id].member {
            return Err(err("not_in_channel"));
        }
        Ok(id)
    }

    /// Top-level messages (and thread parents), newest first, within `oldest`/`latest`
    /// (exclusive unless `inclusive`), at most `limit` (default 100, max 999).
    fn conversations_history(&mut self, args: &Args) -> ApiResult {
        let channel = self.readable_channel(args)?;
        let inclusive = arg_bool(args, "inclusive");
        let latest = arg_str(args, "latest").map(|t| ts_key(&t));
        let oldest = arg_str(args, "oldest").map(|t| ts_key(&t));
        let limit = arg_str(args, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .clamp(1, 999);
        let mut list: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .filter(|m| m.thread_ts.is_none() || m.thread_ts.as_deref() == Some(m.ts.as_str()))
            .filter(|m| {
                let k = ts_key(&m.ts);
                let below = latest.is_none_or(|l| if inclusive { k <= l } else { k < l });
                let above = oldest.is_none_or(|o| if inclusive { k >= o } else { k > o });
                below && above
            })
            .collect();
        list.sort_by_key(|m| std::cmp::Reverse(ts_key(&m.ts)));
        let has_more = list.len() > limit;
        let messages: Vec<Value> = list
            .into_iter()
            .take(limit)
            .map(|m| self.listed_message_json(m))
            .collect();
        Ok(obj(json!({
            "messages": messages, "has_more": has_more, "pin_count": 0,
            "response_metadata": {"next_cursor": ""}
        })))
    }

    /// The thread `ts` belongs to (given the parent's ts or a reply's): parent first, then
    /// replies within `oldest`/`latest` (exclusive unless `inclusive`), oldest first;
    /// `thread_not_found` when there is no such message. A message outside any thread comes
    /// back alone.
    fn conversations_replies(&mut self, args: &Args) -> ApiResult {
        let channel = self.readable_channel(args)?;
        let ts = arg_str(args, "ts").ok_or_else(|| ApiError::missing("ts"))?;
        let limit = arg_str(args, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(1000)
            .clamp(1, 1000);
        let idx = self
            .message_index(&channel, &ts)
            .ok_or_else(|| err("thread_not_found"))?;
        let root = self.messages[idx].thread_ts.clone().unwrap_or(ts);
        let inclusive = arg_bool(args, "inclusive");
        let latest = arg_str(args, "latest").map(|t| ts_key(&t));
        let oldest = arg_str(args, "oldest").map(|t| ts_key(&t));
        // The parent always comes first; `oldest`/`latest` bound the replies.
        let mut list: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| {
                m.channel == channel && (m.ts == root || m.thread_ts.as_deref() == Some(&root))
            })
            .filter(|m| {
                let k = ts_key(&m.ts);
                m.ts == root
                    || (latest.is_none_or(|l| if inclusive { k <= l } else { k < l })
                        && oldest.is_none_or(|o| if inclusive { k >= o } else { k > o }))
            })
            .collect();
        list.sort_by_key(|m| ts_key(&m.ts));
        let has_more = list.len() > limit;
        let messages: Vec<Value> = list
            .into_iter()
            .take(limit)
            .map(|m| self.listed_message_json(m))
            .collect();
        Ok(obj(json!({
            "messages": messages, "has_more": has_more,
            "response_metadata": {"next_cursor": ""}
        })))
    }

    /// Creates a public (or private) channel the bot is in. Names: lowercase letters, digits,
    /// `-` and `_`, at most 80 characters (Slack's conversations.create errors).
    fn conversations_create(&mut self, args: &Args) -> ApiResult {
        let name = arg_str(args, "name").ok_or_else(|| err("invalid_name_required"))?;
        if name.chars().count() > 80 {
            return Err(err("invalid_name_maxlength"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(err("invalid_name_specials"));
        }
        if self.resolve_channel(&name).is_some() {
            return Err(err("name_taken"));
        }
        let private = arg_bool(args, "is_private");
        let n = self.next_id();
        let id = format!("C0NEW{n:05}");
        self.insert_channel(&id, &name, true);
        let channel = self.channel_mut(&id);
        channel.members = Some(Vec::new());
        channel.private = private;
        let info = channel_json(channel);
        Ok(obj(json!({ "channel": info })))
    }

    /// Invites users (comma-separated IDs) to a channel the bot is in.
    fn conversations_invite(&mut self, args: &Args) -> ApiResult {
        if args.get("users").is_some_and(Value::is_array) {
            return Err(err("invalid_array_arg"));
        }
        let arg = arg_str(args, "channel").ok_or_else(|| err("channel_not_found"))?;
        let id = self
            .visible_channel(&arg)
            .ok_or_else(|| err("channel_not_found"))?;
        let users = split_ids(&arg_str(args, "users").unwrap_or_default());
        if users.is_empty() {
            return Err(err("no_user"));
        }
        if users.len() > 1000 {
            return Err(err("too_many_users"));
        }
        if users.iter().any(|u| u == BOT_USER_ID) {
            return Err(err("cant_invite_self"));
        }
        if let Some(unknown) = users.iter().find(|u| !self.users.contains_key(*u)) {
            return Err(err("user_not_found").with("user", json!(unknown)));
        }
        let channel = self.channel_mut(&id);
        if channel.archived {
            return Err(err("is_archived"));
        }
        if !channel.member {
            return Err(err("not_in_channel"));
        }
        let members = channel.members.get_or_insert_with(Vec::new);
        if users.iter().any(|u| members.contains(u)) {
            return Err(err("already_in_channel"));
        }
        members.extend(users);
        let info = channel_json(channel);
        Ok(obj(json!({ "channel": info })))
    }
}

/// A conversation object (conversations.info / conversations.join).
fn channel_json(c: &Channel) -> Value {
    if c.is_im {
        return json!({
            "id": c.id,
            "created": TS_EPOCH_SECS,
            "is_im": true,
            "is_org_shared": false,
            "user": c.im_user,
            "is_user_deleted": false,
            "priority": 0,
        });
    }
    json!({
        "id": c.id,
        "name": c.name,
        "name_normalized": c.name,
        "created": TS_EPOCH_SECS,
        "creator": "U0ADMIN",
        "is_channel": !c.is_mpim,
        "is_group": false,
        "is_im": false,
        "is_mpim": c.is_mpim,
        "is_private": c.is_mpim || c.private,
        "is_archived": c.archived,
        "is_general": false,
        "is_shared": false,
        "is_org_shared": false,
        "is_member": c.member,
        "topic": {"value": c.topic, "creator": if c.topic.is_empty() { "" } else { "U0ADMIN" }, "last_set": 0},
        "purpose": {"value": "", "creator": "", "last_set": 0},
        "previous_names": [],
    })
}

// ============================================================================================
// Methods: users, usergroups
// ============================================================================================

impl Inner {
    fn users_info(&mut self, args: &Args) -> ApiResult {
        let id = arg_str(args, "user").ok_or_else(|| err("user_not_found"))?;
        // The token's own bot user is a workspace member too, answered as a bot.
        let own_bot = User {
            id: BOT_USER_ID.to_string(),
            name: "slackops".to_string(),
            email: String::new(),
            tz: "UTC".to_string(),
            deleted: false,
            is_bot: true,
            is_app_user: false,
        };
        let user = match self.users.get(&id) {
            Some(u) => u,
            None if id == BOT_USER_ID => &own_bot,
            None => return Err(err("user_not_found")),
        };
        let mut user_json = user_json(user);
        if arg_bool(args, "include_locale") {
            user_json["locale"] = json!("en-US");
        }
        Ok(obj(json!({ "user": user_json })))
    }

    fn users_lookup_by_email(&mut self, args: &Args) -> ApiResult {
        let email = arg_str(args, "email").ok_or_else(|| ApiError::missing("email"))?;
        // Slack matches e-mail addresses case-insensitively.
        let user = self
            .users
            .values()
            .find(|u| !u.email.is_empty() && u.email.eq_ignore_ascii_case(&email))
            .ok_or_else(|| err("users_not_found"))?;
        Ok(obj(json!({ "user": user_json(user) })))
    }

    fn usergroups_list(&mut self, args: &Args) -> Map<String, Value> {
        let include_users = arg_bool(args, "include_users");
        let groups: Vec<Value> = self
            .usergroups
            .values()
            .map(|g| usergroup_json(g, include_users))
            .collect();
        obj(json!({ "usergroups": groups }))
    }

    fn usergroups_users_list(&mut self, args: &Args) -> ApiResult {
        let id = arg_str(args, "usergroup").ok_or_else(|| ApiError::missing("usergroup"))?;
        let group = self
            .usergroups
            .get(&id)
            .ok_or_else(|| err("no_such_subteam"))?;
        Ok(obj(json!({ "users": group.users })))
    }

    /// Replaces the whole member list (`users` is a comma-separated string).
    fn usergroups_users_update(&mut self, args: &Args) -> ApiResult {
        let id = arg_str(args, "usergroup").ok_or_else(|| ApiError::missing("usergroup"))?;
        // Slack documents `users` as a comma-separated *string*; a JSON array is refused.
        if args.get("users").is_some_and(Value::is_array) {
            return Err(err("invalid_array_arg"));
        }
        let users = split_ids(&arg_str(args, "users").unwrap_or_default());
        if users.is_empty() {
            return Err(err("no_users_provided"));
        }
        if users.iter().any(|u| !self.users.contains_key(u)) {
            return Err(err("invalid_users"));
        }
        if !self.usergroups.contains_key(&id) {
            // Not in usergroups.users.update's documented list; it is usergroups.users.list's
            // answer for an unknown group.
            return Err(err("no_such_subteam"));
        }
        let mut deduped: Vec<String> = Vec::new();
        for u in users {
            if !deduped.contains(&u) {
                deduped.push(u);
            }
        }
        let n = self.next_id();
        let group = self.usergroups.get_mut(&id).expect("checked above");
        group.users = deduped;
        group.date_update = TS_EPOCH_SECS + n;
        group.updated_by = BOT_USER_ID.to_string();
        Ok(obj(json!({ "usergroup": usergroup_json(group, true) })))
    }
}

fn user_json(u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "team_id": TEAM_ID,
        "name": u.name,
        "deleted": u.deleted,
        "color": "9f69e7",
        "real_name": u.name,
        "tz": u.tz,
        "profile": {
            "real_name": u.name,
            "real_name_normalized": u.name,
            "display_name": u.name,
            "display_name_normalized": u.name,
            "email": u.email,
            "team": TEAM_ID,
        },
        "is_admin": false,
        "is_owner": false,
        "is_primary_owner": false,
        "is_restricted": false,
        "is_ultra_restricted": false,
        "is_bot": u.is_bot,
        "is_app_user": u.is_app_user,
        "updated": TS_EPOCH_SECS,
        "has_2fa": false,
    });
    // Bot users carry their bot id and no email; deactivated members keep their profile.
    if u.is_bot {
        v["profile"]["bot_id"] = json!(format!("B{}", u.id.trim_start_matches('U')));
    }
    if u.email.is_empty()
        && let Some(p) = v["profile"].as_object_mut()
    {
        p.remove("email");
    }
    // Standard-time offsets of a few zones (no DST), as a stand-in for Slack's computation.
    if let Some(offset) = tz_offset(&u.tz) {
        v["tz_offset"] = json!(offset);
    }
    v
}

fn tz_offset(tz: &str) -> Option<i32> {
    Some(match tz {
        "UTC" | "Etc/UTC" | "Europe/London" | "Europe/Dublin" | "Europe/Lisbon" => 0,
        "Europe/Berlin" | "Europe/Paris" | "Europe/Amsterdam" | "Europe/Madrid" => 3600,
        "Europe/Helsinki" | "Europe/Kiev" | "Europe/Kyiv" | "Europe/Athens" => 7200,
        "Asia/Kolkata" => 19800,
        "Asia/Singapore" | "Asia/Shanghai" => 28800,
        "Asia/Tokyo" => 32400,
        "Australia/Sydney" => 36000,
        "America/New_York" | "America/Toronto" => -18000,
        "America/Chicago" => -21600,
        "America/Denver" => -25200,
        "America/Los_Angeles" => -28800,
        _ => return None,
    })
}

fn usergroup_json(g: &UserGroup, include_users: bool) -> Value {
    let mut v = json!({
        "id": g.id,
        "team_id": TEAM_ID,
        "is_usergroup": true,
        "is_subteam": true,
        "name": g.name,
        "description": "",
        "handle": g.handle,
        "is_external": false,
        "date_create": TS_EPOCH_SECS,
        "date_update": g.date_update,
        "date_delete": 0,
        "auto_type": null,
        "created_by": "U0ADMIN",
        "updated_by": g.updated_by,
        "deleted_by": null,
        "prefs": {"channels": [], "groups": []},
        "user_count": g.users.len(),
    });
    if include_users {
        v["users"] = json!(g.users);
    }
    v
}

// ============================================================================================
// response_url
// ============================================================================================

impl Inner {
    /// Returns (status, plain-text error) — the error text is only used for non-200 answers.
    fn handle_response_url(&mut self, id: &str, raw: &[u8], now: Instant) -> (StatusCode, String) {
        let body = serde_json::from_slice::<Value>(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()));
        let (status, text) = self.response_url_outcome(id, &body, now);
        if let Some(r) = self.response_urls.get_mut(id) {
            r.posts.push(ResponseUrlPost {
                body,
                status: status.as_u16(),
                at: now,
            });
        }
        (status, text.to_string())
    }

    fn response_url_outcome(
        &mut self,
        id: &str,
        body: &Value,
        now: Instant,
    ) -> (StatusCode, &'static str) {
        let Some(url) = self.response_urls.get(id) else {
            return (StatusCode::NOT_FOUND, "no_service");
        };
        if url.expired || now.saturating_duration_since(url.created) > RESPONSE_URL_TTL {
            return (StatusCode::NOT_FOUND, "expired_url");
        }
        // Slack: 5 uses per response_url (within 30 minutes); the 6th is refused.
        if url.uses >= RESPONSE_URL_MAX_USES {
            return (StatusCode::NOT_FOUND, "used_url");
        }
        let Some(args) = body.as_object() else {
            return (StatusCode::BAD_REQUEST, "invalid_payload");
        };
        let (channel, message_ts) = (url.channel.clone(), url.message_ts.clone());

        // Rejected payloads do not consume a use.
        if arg_bool(args, "delete_original") {
            if let (Some(ch), Some(ts)) = (&channel, &message_ts)
                && let Some(idx) = self.message_index(ch, ts)
            {
                self.messages.remove(idx);
            }
        } else {
            let mut ctx = Ctx {
                now,
                warnings: Vec::new(),
            };
            let content = match MessageContent::from_args(args, &mut ctx) {
                Ok(c) => c,
                Err(e) if e.code == "no_text" => return (StatusCode::BAD_REQUEST, "no_text"),
                Err(_) => return (StatusCode::BAD_REQUEST, "invalid_blocks"),
            };
            let in_channel = arg_str(args, "response_type").as_deref() == Some("in_channel");
            if arg_bool(args, "replace_original") {
                if let (Some(ch), Some(ts)) = (&channel, &message_ts)
                    && let Some(idx) = self.message_index(ch, ts)
                {
                    let m = &mut self.messages[idx];
                    m.text = content.text.unwrap_or_default();
                    m.blocks = content.blocks.unwrap_or(Value::Null);
                    m.updated += 1;
                }
            } else if in_channel && let Some(ch) = &channel {
                let ts = self.next_ts();
                self.messages.push(Message {
                    channel: ch.clone(),
                    ts,
                    text: content.text.unwrap_or_default(),
                    blocks: content.blocks.unwrap_or(Value::Null),
                    thread_ts: arg_str(args, "thread_ts"),
                    updated: 0,
                    user: BOT_USER_ID.to_string(),
                    metadata: Value::Null,
                    reactions: Vec::new(),
                    pinned: false,
                });
            }
            // Ephemeral responses (the default) are only recorded.
        }
        if let Some(url) = self.response_urls.get_mut(id) {
            url.uses += 1;
        }
        (StatusCode::OK, "ok")
    }
}

/// Accepts a bare id or a full `…/response/{id}` URL.
fn response_url_id(id_or_url: &str) -> String {
    id_or_url
        .rsplit('/')
        .next()
        .unwrap_or(id_or_url)
        .to_string()
}

// ============================================================================================
// Block Kit validation (limits per reference §3; error strings in Slack's format)
// ============================================================================================

/// Known block types; anything else is refused like Slack does.
const BLOCK_TYPES: &[&str] = &[
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
];

fn validate_message_blocks(blocks: &Value) -> Result<(), ApiError> {
    let Some(list) = blocks.as_array() else {
        return Err(err("invalid_blocks_format"));
    };
    let mut errors = Vec::new();
    if list.len() > MAX_MESSAGE_BLOCKS {
        errors.push(format!(
            "no more than {MAX_MESSAGE_BLOCKS} items allowed [json-pointer:/blocks]"
        ));
    }
    check_blocks(list, "/blocks", &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    let messages: Vec<String> = errors.iter().map(|e| format!("[ERROR] {e}")).collect();
    Err(err("invalid_blocks")
        .with("errors", json!(errors))
        .with("response_metadata", json!({ "messages": messages })))
}

/// Validates a modal; Slack reports view problems as `invalid_arguments` + messages.
/// A Home tab: `type: home`, at most 100 blocks, no title needed (Slack's view reference).
fn validate_home(view: &Value) -> Result<Map<String, Value>, ApiError> {
    let Some(map) = view.as_object() else {
        return Err(ApiError::invalid_arguments(vec![
            "failed to match all allowed schemas [json-pointer:/view]".into(),
        ]));
    };
    if view.to_string().len() > MAX_VIEW_BYTES {
        return Err(err("view_too_large"));
    }
    let mut errors = Vec::new();
    if map.get("type").and_then(Value::as_str) != Some("home") {
        errors.push("unsupported view type for this method [json-pointer:/view/type]".into());
    }
    match map.get("blocks").and_then(Value::as_array) {
        Some(blocks) if blocks.len() > MAX_VIEW_BLOCKS => errors.push(format!(
            "no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"
        )),
        Some(blocks) => check_blocks(blocks, "/view/blocks", &mut errors),
        None => errors.push("missing required field: blocks [json-pointer:/view]".into()),
    }
    if errors.is_empty() {
        Ok(map.clone())
    } else {
        Err(ApiError::invalid_arguments(errors))
    }
}

fn validate_view(view: &Value) -> Result<Map<String, Value>, ApiError> {
    let Some(map) = view.as_object() else {
        return Err(ApiError::invalid_arguments(vec![
            "failed to match all allowed schemas [json-pointer:/view]".into(),
        ]));
    };
    if view.to_string().len() > MAX_VIEW_BYTES {
        return Err(err("view_too_large"));
    }
    let mut errors = Vec::new();
    match map.get("type").and_then(Value::as_str) {
        Some("modal") => {}
        Some(other) => errors.push(format!(
            "unsupported view type {other} for this method [json-pointer:/view/type]"
        )),
        None => errors.push("missing required field: type [json-pointer:/view]".into()),
    }
    match map.get("title") {
        Some(title) => check_text_object(title, 24, "/view/title", true, &mut errors),
        None => errors.push("missing required field: title [json-pointer:/view]".into()),
    }
    for key in ["submit", "close"] {
        if let Some(v) = map.get(key) {
            check_text_object(v, 24, &format!("/view/{key}"), true, &mut errors);
        }
    }
    check_max_len(map, "private_metadata", 3000, "/view", &mut errors);
    check_max_len(map, "callback_id", 255, "/view", &mut errors);
    check_max_len(map, "external_id", 255, "/view", &mut errors);
    match map.get("blocks").and_then(Value::as_array) {
        Some(blocks) => {
            if blocks.len() > MAX_VIEW_BLOCKS {
                errors.push(format!(
                    "no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]"
                ));
            }
            check_blocks(blocks, "/view/blocks", &mut errors);
            let has_input = blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("input"));
            if has_input && !map.contains_key("submit") {
                errors.push(
                    "a submit button is required when the view contains input blocks \
                     [json-pointer:/view/submit]"
                        .into(),
                );
            }
        }
        None => errors.push("missing required field: blocks [json-pointer:/view]".into()),
    }
    if errors.is_empty() {
        Ok(map.clone())
    } else {
        Err(ApiError::invalid_arguments(errors))
    }
}

fn check_blocks(blocks: &[Value], base: &str, errors: &mut Vec<String>) {
    let mut block_ids = HashSet::new();
    for (i, block) in blocks.iter().enumerate() {
        let p = format!("{base}/{i}");
        let Some(b) = block.as_object() else {
            errors.push(format!("must be an object [json-pointer:{p}]"));
            continue;
        };
        let Some(ty) = b.get("type").and_then(Value::as_str) else {
            errors.push(format!("missing required field: type [json-pointer:{p}]"));
            continue;
        };
        if !BLOCK_TYPES.contains(&ty) {
            errors.push(format!("unsupported type: {ty} [json-pointer:{p}/type]"));
            continue;
        }
        if let Some(id) = b.get("block_id").and_then(Value::as_str) {
            check_max_len(b, "block_id", 255, &p, errors);
            if !block_ids.insert(id.to_string()) {
                errors.push(format!(
                    "duplicate block_id {id} [json-pointer:{p}/block_id]"
                ));
            }
        }
        match ty {
            "section" => {
                let text = b.get("text");
                let fields = b.get("fields");
                if text.is_none() && fields.is_none() {
                    errors.push(format!(
                        "must provide either text or fields [json-pointer:{p}]"
                    ));
                }
                if let Some(t) = text {
                    check_text_object(t, MAX_SECTION_TEXT, &format!("{p}/text"), false, errors);
                }
                if let Some(f) = fields {
                    let list = f.as_array().map(Vec::as_slice).unwrap_or_default();
                    if list.len() > 10 {
                        errors.push(format!(
                            "no more than 10 items allowed [json-pointer:{p}/fields]"
                        ));
                    }
                    for (j, field) in list.iter().enumerate() {
                        check_text_object(field, 2000, &format!("{p}/fields/{j}"), false, errors);
                    }
                }
                if let Some(acc) = b.get("accessory") {
                    check_element(acc, &format!("{p}/accessory"), errors);
                }
            }
            "header" => match b.get("text") {
                Some(t) => check_text_object(t, 150, &format!("{p}/text"), true, errors),
                None => errors.push(format!("missing required field: text [json-pointer:{p}]")),
            },
            "markdown" => {
                let len = b
                    .get("text")
                    .and_then(Value::as_str)
                    .map(|t| t.chars().count());
                match len {
                    None => errors.push(format!("missing required field: text [json-pointer:{p}]")),
                    Some(n) if n > 12_000 => errors.push(format!(
                        "must be less than 12001 characters [json-pointer:{p}/text]"
                    )),
                    Some(_) => {}
                }
            }
            "actions" | "context" => {
                let max = if ty == "actions" { 25 } else { 10 };
                let list = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if list.is_empty() {
                    errors.push(format!(
                        "must provide at least 1 item [json-pointer:{p}/elements]"
                    ));
                }
                if list.len() > max {
                    errors.push(format!(
                        "no more than {max} items allowed [json-pointer:{p}/elements]"
                    ));
                }
                for (j, el) in list.iter().enumerate() {
                    let ep = format!("{p}/elements/{j}");
                    match el.get("type").and_then(Value::as_str) {
                        Some("plain_text" | "mrkdwn") => {
                            check_text_object(el, 3000, &ep, false, errors)
                        }
                        _ => check_element(el, &ep, errors),
                    }
                }
            }
            "input" => {
                match b.get("label") {
                    Some(l) => check_text_object(l, 2000, &format!("{p}/label"), true, errors),
                    None => {
                        errors.push(format!("missing required field: label [json-pointer:{p}]"))
                    }
                }
                if let Some(h) = b.get("hint") {
                    check_text_object(h, 2000, &format!("{p}/hint"), true, errors);
                }
                match b.get("element") {
                    Some(el) => check_element(el, &format!("{p}/element"), errors),
                    None => errors.push(format!(
                        "missing required field: element [json-pointer:{p}]"
                    )),
                }
            }
            _ => {}
        }
    }
}

/// A text object `{type: plain_text|mrkdwn, text}` with 1..=max characters.
fn check_text_object(t: &Value, max: usize, p: &str, plain_only: bool, errors: &mut Vec<String>) {
    let ty = t.get("type").and_then(Value::as_str);
    let valid_type = match ty {
        Some("plain_text") => true,
        Some("mrkdwn") => !plain_only,
        _ => false,
    };
    if !valid_type {
        errors.push(format!(
            "must be a valid text object [json-pointer:{p}/type]"
        ));
        return;
    }
    match t
        .get("text")
        .and_then(Value::as_str)
        .map(|s| s.chars().count())
    {
        None => errors.push(format!("missing required field: text [json-pointer:{p}]")),
        Some(0) => errors.push(format!(
            "must be more than 0 characters [json-pointer:{p}/text]"
        )),
        Some(n) if n > max => errors.push(format!(
            "must be less than {} characters [json-pointer:{p}/text]",
            max + 1
        )),
        Some(_) => {}
    }
}

/// Interactive elements: buttons (text ≤ 75, value ≤ 2000, url ≤ 3000), action_id ≤ 255,
/// options (≤ 100; text ≤ 75, value ≤ 150), confirm dialogs.
fn check_element(el: &Value, p: &str, errors: &mut Vec<String>) {
    let Some(e) = el.as_object() else {
        errors.push(format!("must be an object [json-pointer:{p}]"));
        return;
    };
    check_max_len(e, "action_id", 255, p, errors);
    if e.get("type").and_then(Value::as_str) == Some("button") {
        match e.get("text") {
            Some(t) => check_text_object(t, 75, &format!("{p}/text"), true, errors),
            None => errors.push(format!("missing required field: text [json-pointer:{p}]")),
        }
        check_max_len(e, "value", 2000, p, errors);
        check_max_len(e, "url", 3000, p, errors);
    }
    if let Some(options) = e.get("options").and_then(Value::as_array) {
        check_options(options, &format!("{p}/options"), errors);
    }
    // A select holds `options` or `option_groups` (≤ 100 groups, label ≤ 75, each ≤ 100
    // options), never both.
    if let Some(groups) = e.get("option_groups").and_then(Value::as_array) {
        if e.contains_key("options") {
            errors.push(format!(
                "options and option_groups cannot both be set [json-pointer:{p}]"
            ));
        }
        if groups.len() > 100 {
            errors.push(format!(
                "no more than 100 items allowed [json-pointer:{p}/option_groups]"
            ));
        }
        for (g, group) in groups.iter().enumerate() {
            let gp = format!("{p}/option_groups/{g}");
            match group.get("label") {
                Some(t) => check_text_object(t, 75, &format!("{gp}/label"), true, errors),
                None => errors.push(format!("missing required field: label [json-pointer:{gp}]")),
            }
            let options = group.get("options").and_then(Value::as_array);
            check_options(
                options.map(Vec::as_slice).unwrap_or_default(),
                &format!("{gp}/options"),
                errors,
            );
        }
    }
    if let Some(confirm) = e.get("confirm") {
        let cp = format!("{p}/confirm");
        for (key, max) in [("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)] {
            if let Some(t) = confirm.get(key) {
                check_text_object(t, max, &format!("{cp}/{key}"), key != "text", errors);
            }
        }
    }
}

/// A list of options: ≤ 100, each text ≤ 75 and value ≤ 150.
fn check_options(options: &[Value], p: &str, errors: &mut Vec<String>) {
    if options.len() > 100 {
        errors.push(format!("no more than 100 items allowed [json-pointer:{p}]"));
    }
    for (i, o) in options.iter().enumerate() {
        let op = format!("{p}/{i}");
        if let Some(t) = o.get("text") {
            check_text_object(t, 75, &format!("{op}/text"), false, errors);
        }
        if let Some(map) = o.as_object() {
            check_max_len(map, "value", 150, &op, errors);
        }
    }
}

fn check_max_len(
    map: &Map<String, Value>,
    key: &str,
    max: usize,
    p: &str,
    errors: &mut Vec<String>,
) {
    if let Some(s) = map.get(key).and_then(Value::as_str)
        && s.chars().count() > max
    {
        errors.push(format!(
            "must be less than {} characters [json-pointer:{p}/{key}]",
            max + 1
        ));
    }
}

// ============================================================================================
// Small helpers
// ============================================================================================

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A string argument (numbers/bools stringified); empty strings count as absent.
fn arg_str(args: &Args, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn arg_bool(args: &Args, key: &str) -> bool {
    match args.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// A JSON argument: a JSON value in JSON bodies, a JSON-encoded string in form bodies.
/// `Err(())` if the string is not JSON.
fn arg_json(args: &Args, key: &str) -> Result<Option<Value>, ()> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
        Some(v) => Ok(Some(v.clone())),
    }
}

fn split_ids(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Truncates to `max` characters; returns whether it did.
fn truncate_chars(s: &mut String, max: usize) -> bool {
    match s.char_indices().nth(max) {
        Some((byte_idx, _)) => {
            s.truncate(byte_idx);
            true
        }
        None => false,
    }
}
