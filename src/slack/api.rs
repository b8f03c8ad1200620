//! The Slack Web API client: the only code that calls Slack.
//!
//! Slack reports business errors as HTTP 200 with `{"ok":false,"error":…}` (reference/slack.md §3,
//! spinnaker/spinnaker#2103), so every answer's `ok` is checked and mapped to a typed
//! [`SlackErrorCode`]. HTTP 429 is honoured through `Retry-After`: short waits are slept through
//! here, long ones are returned as [`SlackError::RateLimited`] so a job can be rescheduled for that
//! time. 5xx, timeouts and Slack's `internal_error` are retried with capped exponential backoff and
//! then surfaced. `chat.postMessage` is paced per channel (a token bucket: Slack allows about one
//! message per second per channel, with short bursts), and `response_url` uses are counted against
//! Slack's 5-uses-in-30-minutes limit so callers fall back to `chat.postMessage` in time.
//!
//! The token is sent only as a Bearer header; it, request bodies and response bodies are never logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, instrument, warn};
use url::Url;

use crate::config::SlackSettings;
use crate::metrics::SharedMetrics;
use crate::secret::Secret;
use crate::slack::mrkdwn::Mrkdwn;

/// Methods whose arguments Slack reads only from a form or query string (JSON bodies are accepted
/// by write methods only).
const FORM_METHODS: &[&str] = &[
    "apps.connections.open",
    "auth.test",
    "users.info",
    "users.lookupByEmail",
    "usergroups.list",
    "usergroups.users.list",
    "chat.getPermalink",
    "conversations.info",
    "conversations.members",
    "conversations.history",
    "conversations.replies",
];

/// An `error` code from an `ok:false` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackErrorCode {
    NotInChannel,
    ChannelNotFound,
    IsArchived,
    MessageNotFound,
    CantUpdateMessage,
    EditWindowClosed,
    MsgTooLong,
    NoText,
    InvalidBlocks,
    InvalidArguments,
    ExpiredTriggerId,
    UserNotInChannel,
    UserNotFound,
    UsersNotFound,
    AlreadyReacted,
    AlreadyPinned,
    NoPin,
    NoSuchSubteam,
    InvalidUsers,
    NoUsersProvided,
    PlanUpgradeRequired,
    PaidTeamsOnly,
    PermissionDenied,
    NotAuthed,
    InvalidAuth,
    TokenRevoked,
    AccountInactive,
    MissingScope,
    Ratelimited,
    InternalError,
    Other(String),
}

impl SlackErrorCode {
    pub fn parse(code: &str) -> Self {
        use SlackErrorCode::*;
        match code {
            "not_in_channel" => NotInChannel,
            "channel_not_found" => ChannelNotFound,
            "is_archived" => IsArchived,
            "message_not_found" => MessageNotFound,
            "cant_update_message" => CantUpdateMessage,
            "edit_window_closed" => EditWindowClosed,
            "msg_too_long" => MsgTooLong,
            "no_text" => NoText,
            "invalid_blocks" | "invalid_blocks_format" => InvalidBlocks,
            "invalid_arguments" => InvalidArguments,
            "expired_trigger_id"
            | "trigger_expired"
            | "trigger_exchanged"
            | "exchanged_trigger_id"
            | "invalid_trigger_id" => ExpiredTriggerId,
            "user_not_in_channel" => UserNotInChannel,
            "user_not_found" => UserNotFound,
            "users_not_found" => UsersNotFound,
            "already_reacted" => AlreadyReacted,
            "already_pinned" => AlreadyPinned,
            "no_pin" => NoPin,
            "no_such_subteam" => NoSuchSubteam,
            "invalid_users" => InvalidUsers,
            "no_users_provided" => NoUsersProvided,
            "plan_upgrade_required" => PlanUpgradeRequired,
            "paid_teams_only" => PaidTeamsOnly,
            "permission_denied" => PermissionDenied,
            "not_authed" => NotAuthed,
            "invalid_auth" => InvalidAuth,
            "token_revoked" | "token_expired" => TokenRevoked,
            "account_inactive" => AccountInactive,
            "missing_scope" => MissingScope,
            "ratelimited" | "rate_limited" => Ratelimited,
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                InternalError
            }
            other => Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        use SlackErrorCode::*;
        match self {
            NotInChannel => "not_in_channel",
            ChannelNotFound => "channel_not_found",
            IsArchived => "is_archived",
            MessageNotFound => "message_not_found",
            CantUpdateMessage => "cant_update_message",
            EditWindowClosed => "edit_window_closed",
            MsgTooLong => "msg_too_long",
            NoText => "no_text",
            InvalidBlocks => "invalid_blocks",
            InvalidArguments => "invalid_arguments",
            ExpiredTriggerId => "expired_trigger_id",
            UserNotInChannel => "user_not_in_channel",
            UserNotFound => "user_not_found",
            UsersNotFound => "users_not_found",
            AlreadyReacted => "already_reacted",
            AlreadyPinned => "already_pinned",
            NoPin => "no_pin",
            NoSuchSubteam => "no_such_subteam",
            InvalidUsers => "invalid_users",
            NoUsersProvided => "no_users_provided",
            PlanUpgradeRequired => "plan_upgrade_required",
            PaidTeamsOnly => "paid_teams_only",
            PermissionDenied => "permission_denied",
            NotAuthed => "not_authed",
            InvalidAuth => "invalid_auth",
            TokenRevoked => "token_revoked",
            AccountInactive => "account_inactive",
            MissingScope => "missing_scope",
            Ratelimited => "ratelimited",
            InternalError => "internal_error",
            Other(s) => s,
        }
    }

    /// For a refusal of slackops' token or app: what the operator should check. `None` for
    /// other errors.
    pub fn operator_check(&self) -> Option<&'static str> {
        use SlackErrorCode::*;
        match self {
            NotAuthed | InvalidAuth | TokenRevoked | AccountInactive => Some(
                "Slack refuses the bot token: check slack.bot_token (or bot_token_file) against the app's OAuth page; reinstall the app if it was uninstalled or the token revoked",
            ),
            MissingScope => Some(
                "the bot token lacks a scope this method needs: add it to the Slack app (README lists the scopes per feature) and reinstall",
            ),
            PermissionDenied => Some(
                "the workspace does not let the app do this (e.g. manage user groups): check the workspace's permission settings",
            ),
            Other(code)
                if matches!(
                    code.as_str(),
                    "no_permission"
                        | "not_allowed_token_type"
                        | "team_access_not_granted"
                        | "ekm_access_denied"
                ) =>
            {
                Some(
                    "Slack refuses this token for the method: check the token type (a bot token, xoxb-) and the app's installation in this workspace",
                )
            }
            _ => None,
        }
    }

    /// The token or app configuration is wrong: retrying cannot help until an operator acts.
    pub fn is_configuration(&self) -> bool {
        use SlackErrorCode::*;
        matches!(
            self,
            NotAuthed | InvalidAuth | TokenRevoked | AccountInactive | MissingScope
        )
    }
}

impl std::fmt::Display for SlackErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed Web API call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlackError {
    #[error("slack {method}: {code}{}", if .detail.is_empty() { String::new() } else { format!(" ({})", .detail.join("; ")) })]
    Api {
        method: String,
        code: SlackErrorCode,
        detail: Vec<String>,
    },
    #[error("slack {method}: rate limited, retry after {}s", .retry_after.as_secs())]
    RateLimited {
        method: String,
        retry_after: Duration,
    },
    #[error("slack {method}: HTTP {status}")]
    Server { method: String, status: u16 },
    #[error("slack {method}: timed out")]
    Timeout { method: String },
    #[error("slack {method}: {message}")]
    Transport { method: String, message: String },
    #[error("slack {method}: unexpected answer: {message}")]
    Decode { method: String, message: String },
    #[error("response_url can no longer be used (5 uses within 30 minutes)")]
    ResponseUrlExhausted,
    /// A handler called a method that must wait for its ack (see `slack::ack::before_ack`).
    #[error("slack {method}: refused before the ack; this is a job's work")]
    BeforeAck { method: String },
}

impl SlackError {
    pub fn code(&self) -> Option<&SlackErrorCode> {
        match self {
            SlackError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn is(&self, code: SlackErrorCode) -> bool {
        self.code() == Some(&code)
    }
    /// Worth trying again later (a job retry): rate limits, 5xx, timeouts, transport errors.
    pub fn is_transient(&self) -> bool {
        match self {
            SlackError::RateLimited { .. }
            | SlackError::Server { .. }
            | SlackError::Timeout { .. }
            | SlackError::Transport { .. } => true,
            SlackError::Api { code, .. } => matches!(
                code,
                SlackErrorCode::InternalError | SlackErrorCode::Ratelimited
            ),
            SlackError::Decode { .. }
            | SlackError::ResponseUrlExhausted
            | SlackError::BeforeAck { .. } => false,
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
    /// A label for metrics.
    fn outcome(&self) -> String {
        match self {
            SlackError::Api { code, .. } => code.as_str().to_string(),
            SlackError::RateLimited { .. } => "ratelimited".into(),
            // A response_url answers 429 without the Web API's Retry-After contract.
            SlackError::Server { status: 429, .. } => "ratelimited".into(),
            SlackError::Server { .. } => "http_5xx".into(),
            SlackError::Timeout { .. } => "timeout".into(),
            SlackError::Transport { .. } => "transport".into(),
            SlackError::Decode { .. } => "decode".into(),
            SlackError::ResponseUrlExhausted => "response_url_exhausted".into(),
            SlackError::BeforeAck { .. } => "before_ack".into(),
        }
    }
}

/// Log a refusal of slackops' token or app (once per call, whoever called) with what the
/// operator should check; never the token or the request.
fn log_refusal(method: &str, e: &SlackError) {
    if let Some(check) = e.code().and_then(SlackErrorCode::operator_check) {
        warn!(slack.method = method, slack.error = %e, check, "Slack refused slackops");
    }
}

impl From<SlackError> for crate::jobs::JobError {
    fn from(e: SlackError) -> Self {
        let after = e.retry_after();
        if e.is_transient() {
            crate::jobs::JobError::Retry {
                error: e.into(),
                after,
            }
        } else {
            crate::jobs::JobError::Permanent(e.into())
        }
    }
}

/// The identity `auth.test` reports.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthTest {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub team_id: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub bot_id: Option<String>,
}

/// A posted message.
#[derive(Debug, Clone, Deserialize)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// A message to post or update.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Message {
    pub channel: String,
    /// Fallback text (notifications, screen readers); required even with blocks. It is mrkdwn.
    pub text: Mrkdwn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_broadcast: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfurl_links: Option<bool>,
}

impl Message {
    pub fn text(channel: impl Into<String>, text: impl Into<Mrkdwn>) -> Self {
        Self {
            channel: channel.into(),
            text: text.into(),
            unfurl_links: Some(false),
            ..Default::default()
        }
    }
    pub fn blocks(mut self, blocks: Value) -> Self {
        self.blocks = Some(blocks);
        self
    }
    pub fn in_thread(mut self, ts: impl Into<String>) -> Self {
        self.thread_ts = Some(ts.into());
        self
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct UserProfile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
    #[serde(default)]
    pub tz_offset: Option<i64>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    /// Workflow and app users: not a person either.
    #[serde(default)]
    pub is_app_user: bool,
    #[serde(default)]
    pub profile: UserProfile,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserGroup {
    pub id: String,
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub date_delete: Option<i64>,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct SlackApi {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    /// The app-level token (`xapp-…`): `apps.connections.open` only.
    app_token: Secret,
    settings: SlackSettings,
    metrics: SharedMetrics,
    pacer: moka::sync::Cache<String, Arc<std::sync::Mutex<Bucket>>>,
    response_urls: moka::sync::Cache<String, Arc<AtomicU32>>,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &self.inner.base.as_str())
            .finish()
    }
}

/// Token bucket for one channel.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Slack's limit on one response_url.
pub const RESPONSE_URL_MAX_USES: u32 = 5;
pub const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);

impl SlackApi {
    pub fn new(settings: &SlackSettings, http: reqwest::Client, metrics: SharedMetrics) -> Self {
        let mut base = settings.api_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Self {
            inner: Arc::new(Inner {
                http,
                base,
                token: settings.bot_token.clone(),
                app_token: settings.app_token.clone(),
                settings: settings.clone(),
                metrics,
                pacer: moka::sync::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_idle(Duration::from_secs(600))
                    .build(),
                response_urls: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(RESPONSE_URL_TTL)
                    .build(),
            }),
        }
    }

    /// Call any method; `T` is the whole answer (with `ok:true` already checked).
    #[instrument(name = "slack.call", skip_all, fields(slack.method = method))]
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &Value,
    ) -> Result<T, SlackError> {
        let v = self.call_value(method, args).await?;
        serde_json::from_value(v).map_err(|e| SlackError::Decode {
            method: method.into(),
            message: e.to_string(),
        })
    }

    async fn call_value(&self, method: &str, args: &Value) -> Result<Value, SlackError> {
        self.refuse_before_ack(method)?;
        let s = &self.inner.settings;
        let max = s.max_retries.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.once(method, args).await;
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.outcome(),
            };
            self.inner.metrics.slack_call(method, &outcome);
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            log_refusal(method, &err);
            if attempt >= max || !err.is_transient() {
                return Err(err);
            }
            let wait = match &err {
                SlackError::RateLimited { retry_after, .. } => {
                    if retry_after.as_secs() > s.max_inline_retry_after_secs {
                        return Err(err);
                    }
                    *retry_after + Duration::from_millis(rand::rng().random_range(0..250))
                }
                _ => crate::backoff::upstream(attempt),
            };
            warn!(slack.method = method, error = %err, attempt, wait_ms = wait.as_millis() as u64, "slack call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&self, method: &str, args: &Value) -> Result<Value, SlackError> {
        self.once_with(&self.inner.token, method, args).await
    }

    async fn once_with(
        &self,
        token: &Secret,
        method: &str,
        args: &Value,
    ) -> Result<Value, SlackError> {
        let url = self
            .inner
            .base
            .join(method)
            .map_err(|e| SlackError::Transport {
                method: method.into(),
                message: e.to_string(),
            })?;
        let req = self
            .inner
            .http
            .post(url)
            .bearer_auth(token.expose())
            .timeout(Duration::from_millis(
                self.inner.settings.request_timeout_ms,
            ));
        let req = if FORM_METHODS.contains(&method) {
            req.form(&form_args(args))
        } else {
            // Slack asks for an explicit charset on JSON bodies (it warns `missing_charset`).
            req.header("content-type", "application/json; charset=utf-8")
                .body(serde_json::to_vec(args).unwrap_or_default())
        };
        let resp = req.send().await.map_err(|e| transport(method, e))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(30);
            return Err(SlackError::RateLimited {
                method: method.into(),
                retry_after: Duration::from_secs(retry_after),
            });
        }
        if status.is_server_error() {
            return Err(SlackError::Server {
                method: method.into(),
                status: status.as_u16(),
            });
        }
        let bytes = resp.bytes().await.map_err(|e| transport(method, e))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| SlackError::Decode {
            method: method.into(),
            message: format!("HTTP {status}, body is not JSON"),
        })?;
        check_ok(method, v)
    }

    /// A handler whose ack is pending may not wait on Slack (bugs, not load: logged as errors).
    fn refuse_before_ack(&self, method: &str) -> Result<(), SlackError> {
        if super::ack::is_before_ack() && !super::ack::allowed_before_ack(method) {
            self.inner.metrics.slack_call(method, "before_ack");
            tracing::error!(
                slack.method = method,
                "a Slack handler called the Web API before its ack; it must queue a job instead"
            );
            return Err(SlackError::BeforeAck {
                method: method.into(),
            });
        }
        Ok(())
    }

    /// Post a message, paced per channel (never before an ack: the pacing may wait).
    pub async fn post_message(&self, msg: &Message) -> Result<Posted, SlackError> {
        self.refuse_before_ack("chat.postMessage")?;
        self.pace(&msg.channel).await;
        self.call("chat.postMessage", &to_value(msg)).await
    }

    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &Mrkdwn,
        blocks: Option<&Value>,
    ) -> Result<Posted, SlackError> {
        let mut args = json!({"channel": channel, "ts": ts, "text": text});
        if let Some(b) = blocks {
            args["blocks"] = b.clone();
        }
        self.call("chat.update", &args).await
    }

    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &Mrkdwn,
        blocks: Option<&Value>,
    ) -> Result<(), SlackError> {
        let mut args = json!({"channel": channel, "user": user, "text": text});
        if let Some(b) = blocks {
            args["blocks"] = b.clone();
        }
        self.call::<Value>("chat.postEphemeral", &args)
            .await
            .map(|_| ())
    }

    pub async fn permalink(&self, channel: &str, ts: &str) -> Result<String, SlackError> {
        #[derive(Deserialize)]
        struct R {
            permalink: String,
        }
        let r: R = self
            .call(
                "chat.getPermalink",
                &json!({"channel": channel, "message_ts": ts}),
            )
            .await?;
        Ok(r.permalink)
    }

    /// Open a modal. Must happen within 3 s of the trigger.
    pub async fn views_open(&self, trigger_id: &str, view: &Value) -> Result<String, SlackError> {
        self.view_call(
            "views.open",
            json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
    }

    pub async fn views_update(
        &self,
        view_id: &str,
        view: &Value,
        hash: Option<&str>,
    ) -> Result<String, SlackError> {
        let mut args = json!({"view_id": view_id, "view": view});
        if let Some(h) = hash {
            args["hash"] = json!(h);
        }
        self.view_call("views.update", args).await
    }

    /// Publish a user's Home tab (`views.publish`); returns the view's id.
    pub async fn views_publish(&self, user_id: &str, view: &Value) -> Result<String, SlackError> {
        self.view_call("views.publish", json!({"user_id": user_id, "view": view}))
            .await
    }

    pub async fn views_push(&self, trigger_id: &str, view: &Value) -> Result<String, SlackError> {
        self.view_call(
            "views.push",
            json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
    }

    async fn view_call(&self, method: &str, args: Value) -> Result<String, SlackError> {
        let v: Value = self.call(method, &args).await?;
        Ok(v.pointer("/view/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    pub async fn users_info(&self, user: &str) -> Result<User, SlackError> {
        #[derive(Deserialize)]
        struct R {
            user: User,
        }
        let r: R = self.call("users.info", &json!({"user": user})).await?;
        Ok(r.user)
    }

    /// `Ok(None)` when no Slack user has that email.
    pub async fn lookup_by_email(&self, email: &str) -> Result<Option<User>, SlackError> {
        #[derive(Deserialize)]
        struct R {
            user: User,
        }
        match self
            .call::<R>("users.lookupByEmail", &json!({"email": email}))
            .await
        {
            Ok(r) => Ok(Some(r.user)),
            Err(e) if e.is(SlackErrorCode::UsersNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn usergroups_list(&self) -> Result<Vec<UserGroup>, SlackError> {
        #[derive(Deserialize)]
        struct R {
            usergroups: Vec<UserGroup>,
        }
        let r: R = self.call("usergroups.list", &json!({})).await?;
        Ok(r.usergroups)
    }

    pub async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>, SlackError> {
        #[derive(Deserialize)]
        struct R {
            users: Vec<String>,
        }
        let r: R = self
            .call("usergroups.users.list", &json!({"usergroup": usergroup}))
            .await?;
        Ok(r.users)
    }

    /// Replace a group's members (slack-morphism lacks this method; reference/slack.md §3).
    pub async fn usergroup_set_members(
        &self,
        usergroup: &str,
        users: &[String],
    ) -> Result<(), SlackError> {
        self.call::<Value>(
            "usergroups.users.update",
            &json!({"usergroup": usergroup, "users": users.join(",")}),
        )
        .await
        .map(|_| ())
    }

    /// Adding a reaction twice is not an error for our purposes.
    pub async fn reactions_add(
        &self,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> Result<(), SlackError> {
        match self
            .call::<Value>(
                "reactions.add",
                &json!({"channel": channel, "timestamp": ts, "name": name}),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(SlackErrorCode::AlreadyReacted) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn pins_add(&self, channel: &str, ts: &str) -> Result<(), SlackError> {
        match self
            .call::<Value>("pins.add", &json!({"channel": channel, "timestamp": ts}))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(SlackErrorCode::AlreadyPinned) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn pins_remove(&self, channel: &str, ts: &str) -> Result<(), SlackError> {
        match self
            .call::<Value>("pins.remove", &json!({"channel": channel, "timestamp": ts}))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(SlackErrorCode::NoPin) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn conversations_join(&self, channel: &str) -> Result<(), SlackError> {
        self.call::<Value>("conversations.join", &json!({"channel": channel}))
            .await
            .map(|_| ())
    }

    /// Create a public channel; returns its ID. `name_taken` comes back as an error code.
    pub async fn conversations_create(&self, name: &str) -> Result<String, SlackError> {
        let v: Value = self
            .call(
                "conversations.create",
                &json!({"name": name, "is_private": false}),
            )
            .await?;
        v.pointer("/channel/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Decode {
                method: "conversations.create".into(),
                message: "no channel.id".into(),
            })
    }

    /// Invite users (at most 1000) to a channel the bot is in.
    pub async fn conversations_invite(
        &self,
        channel: &str,
        users: &[String],
    ) -> Result<(), SlackError> {
        self.call::<Value>(
            "conversations.invite",
            &json!({"channel": channel, "users": users.join(",")}),
        )
        .await
        .map(|_| ())
    }

    /// One message of a channel's history by its `ts` (not thread replies), if it exists.
    pub async fn conversation_message(
        &self,
        channel: &str,
        ts: &str,
    ) -> Result<Option<Value>, SlackError> {
        let v: Value = self
            .call(
                "conversations.history",
                &json!({"channel": channel, "latest": ts, "oldest": ts, "inclusive": true, "limit": 1}),
            )
            .await?;
        Ok(v.get("messages")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter()
                    .find(|m| m.get("ts").and_then(Value::as_str) == Some(ts))
            })
            .cloned())
    }

    /// One message of a thread (a reply, or the parent) by its `ts`, if it exists; its
    /// `thread_ts` names the thread. Asks only for that message: since 2025 Slack allows
    /// non-Marketplace apps at most 15 messages per call, once a minute (reference/slack.md §3).
    pub async fn thread_message(
        &self,
        channel: &str,
        ts: &str,
    ) -> Result<Option<Value>, SlackError> {
        let v: Value = match self
            .call(
                "conversations.replies",
                &json!({"channel": channel, "ts": ts, "oldest": ts, "latest": ts,
                        "inclusive": true, "limit": 15}),
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.is(SlackErrorCode::Other("thread_not_found".into())) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(v.get("messages")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter()
                    .find(|m| m.get("ts").and_then(Value::as_str) == Some(ts))
            })
            .cloned())
    }

    /// The DM channel with a user.
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let v: Value = self
            .call("conversations.open", &json!({"users": user}))
            .await?;
        v.pointer("/channel/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Decode {
                method: "conversations.open".into(),
                message: "no channel.id".into(),
            })
    }

    /// A fresh Socket Mode URL (`wss://…?ticket=…`, single-use), asked with the app-level token.
    /// One attempt, no retries here: the Socket Mode listener backs off and honours
    /// `Retry-After` itself. The URL carries a ticket, so it comes back as a [`Secret`] that no log
    /// line or error can print.
    #[instrument(name = "slack.call", skip_all, fields(slack.method = "apps.connections.open"))]
    pub async fn apps_connections_open(&self) -> Result<Secret, SlackError> {
        let method = "apps.connections.open";
        let result = self
            .once_with(&self.inner.app_token, method, &json!({}))
            .await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.outcome(),
        };
        self.inner.metrics.slack_call(method, &outcome);
        if let Err(e) = &result {
            log_refusal(method, e);
        }
        let url = result?
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(Secret::new);
        url.ok_or_else(|| SlackError::Decode {
            method: method.into(),
            message: "no url in the answer".into(),
        })
    }

    pub async fn auth_test(&self) -> Result<AuthTest, SlackError> {
        self.call("auth.test", &json!({})).await
    }

    /// Post to a `response_url`, counting its uses. Fails with `ResponseUrlExhausted` once Slack's
    /// limit is reached, so the caller can fall back to the Web API.
    #[instrument(name = "slack.respond", skip_all)]
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        self.refuse_before_ack("response_url")?;
        let uses = self
            .inner
            .response_urls
            .get_with(response_url.to_string(), || Arc::new(AtomicU32::new(0)));
        if uses.fetch_add(1, Ordering::SeqCst) >= RESPONSE_URL_MAX_USES {
            self.inner.metrics.slack_call("response_url", "exhausted");
            return Err(SlackError::ResponseUrlExhausted);
        }
        let method = "response_url";
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .inner
                .http
                .post(response_url)
                .timeout(Duration::from_millis(
                    self.inner.settings.request_timeout_ms,
                ))
                .json(body)
                .send()
                .await;
            let err = match result {
                Ok(r) if r.status().is_success() => {
                    self.inner.metrics.slack_call(method, "ok");
                    return Ok(());
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    SlackError::Server {
                        method: method.into(),
                        status: r.status().as_u16(),
                    }
                }
                Ok(r) => {
                    self.inner.metrics.slack_call(method, "rejected");
                    return Err(SlackError::Api {
                        method: method.into(),
                        code: SlackErrorCode::Other(format!("http_{}", r.status().as_u16())),
                        detail: vec![],
                    });
                }
                Err(e) => transport(method, e),
            };
            self.inner.metrics.slack_call(method, &err.outcome());
            if attempt >= self.inner.settings.max_retries.max(1) {
                return Err(err);
            }
            tokio::time::sleep(crate::backoff::upstream(attempt)).await;
        }
    }

    /// Wait for the channel's token bucket.
    async fn pace(&self, channel: &str) {
        let s = &self.inner.settings;
        let bucket = self.inner.pacer.get_with(channel.to_string(), || {
            Arc::new(std::sync::Mutex::new(Bucket {
                tokens: f64::from(s.post_burst_per_channel.max(1)),
                last: Instant::now(),
            }))
        });
        let wait = {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let cap = f64::from(s.post_burst_per_channel.max(1));
            b.tokens = (b.tokens
                + now.duration_since(b.last).as_secs_f64() * s.post_rate_per_channel)
                .min(cap);
            b.last = now;
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / s.post_rate_per_channel)
            }
        };
        if !wait.is_zero() {
            debug!(
                channel,
                wait_ms = wait.as_millis() as u64,
                "pacing chat.postMessage"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Flatten JSON arguments into form fields (nested values as JSON text, as Slack expects).
fn form_args(args: &Value) -> Vec<(String, String)> {
    match args {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn check_ok(method: &str, v: Value) -> Result<Value, SlackError> {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        if let Some(w) = v.get("warning").and_then(Value::as_str) {
            debug!(slack.method = method, warning = w, "slack warning");
        }
        return Ok(v);
    }
    let code = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let mut detail: Vec<String> = Vec::new();
    for key in ["errors", "response_metadata"] {
        let list = match key {
            "errors" => v.get("errors"),
            _ => v.pointer("/response_metadata/messages"),
        };
        if let Some(a) = list.and_then(Value::as_array) {
            detail.extend(a.iter().map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }));
        }
    }
    Err(SlackError::Api {
        method: method.into(),
        code: SlackErrorCode::parse(code),
        detail,
    })
}

fn transport(method: &str, e: reqwest::Error) -> SlackError {
    if e.is_timeout() {
        SlackError::Timeout {
            method: method.into(),
        }
    } else {
        // reqwest errors may carry the URL; a response_url is a bearer capability, so drop it.
        SlackError::Transport {
            method: method.into(),
            message: e.without_url().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_false_maps_to_typed_codes_with_detail() {
        let e = check_ok(
            "chat.postMessage",
            json!({"ok":false,"error":"invalid_blocks","errors":["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]}),
        )
        .unwrap_err();
        assert!(e.is(SlackErrorCode::InvalidBlocks));
        assert!(e.to_string().contains("3001"));
        assert!(!e.is_transient());
        let e = check_ok("x", json!({"ok":false,"error":"internal_error"})).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(SlackErrorCode::parse("brand_new").as_str(), "brand_new");
    }

    #[test]
    fn form_args_flatten_nested_values_as_json() {
        let f = form_args(&json!({"user":"U1","n":3,"skip":null,"o":{"a":1}}));
        assert!(f.contains(&("user".into(), "U1".into())));
        assert!(f.contains(&("n".into(), "3".into())));
        assert!(f.contains(&("o".into(), "{\"a\":1}".into())));
        assert_eq!(f.len(), 3);
    }
}
