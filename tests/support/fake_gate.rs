//! An in-process fake of Spinnaker **Gate** (with the orca and front50
//! behaviour behind it) for black-box tests of the SlackOps companion.
//!
//! Every behaviour below follows the contract in
//! `/work/shared/reference/spinnaker.md` (cited as `ref §x.y`), including the
//! real quirks a client has to survive:
//!
//! | route | behaviour | source |
//! | --- | --- | --- |
//! | `PATCH /pipelines/{executionId}/stages/{stageId}` | merges the body into `stage.context` (`putAll`), stamps `lastModified` and `context.lastModifiedBy`, answers 200 with the whole execution; **no RUNNING check**; unknown stage → **200 with an empty body**; unknown execution → 404; the judgment is evaluated afterwards (orca's reschedule), optionally after a delay; Fiat may silently reset `judgmentStatus` to `""` | ref §1.1, §4 |
//! | `POST /pipelines/{application}/{pipelineNameOrId}` | trigger v1: body is the trigger; config looked up by name then id; 404 / 400 / 202 `{"ref"}` | ref §1.2 |
//! | `PUT /pipelines/{id}/cancel?reason=` | 200 with an empty body, execution CANCELED | ref §1.4 |
//! | `PUT /applications/{app}/pipelines/{id}/cancel` | deprecated alias of the above | ref §1.4 |
//! | `GET /pipelines/{id}` | execution JSON; 404 `Pipeline not found (id: X)`; an upstream 403 becomes **200 with an empty body** | ref §1.4 |
//! | `GET /applications/{app}/pipelineConfigs[/{name}]` | front50 configs; 404 for a missing name | ref §1.4 |
//! | `GET /applications/{app}/pipelines?limit=&statuses=&expand=` | `limit` is **per pipeline config**; CSV `statuses`; `expand=false` strips context/outputs/tasks | ref §1.4 |
//! | `GET /applications/{app}` | 404 for unknown applications | ref §1.4 (Gate `ApplicationController`) |
//! | `GET /auth/user`, `GET /health` | who Gate thinks you are; `{"status":"UP"}` | ref §1.6 |
//! | errors | Spring error body `{"timestamp","status","error","message","exception"}` | ref §1.5 |
//!
//! Beyond the routes the fake offers fault injection (Gate down behind a load
//! balancer, the next N requests failing, a fixed latency), auth emulation
//! (`Auth::Bearer` / `Auth::Basic`) and recorders for every PATCH, trigger and
//! request, so tests can assert on what the companion actually sent.
//!
//! Modelling choices worth knowing (each documented where it is implemented):
//! - The PATCH response is the execution *before* the judgment is evaluated
//!   (the stage still RUNNING), as orca's is; poll afterwards (ref §1.1).
//! - Fiat refusals only apply to stages with `requiredJudgmentRoles` or
//!   `selectedStageRoles` set, as in orca; [`FakeGate::mj_execution`] has none.
//! - The user orca records is a Basic principal, else `X-SPINNAKER-USER`,
//!   else `anonymous` (ref §1.6; see [`FakeGate::set_trust_user_header`]).
//! - `GET /applications/{app}/pipelines` keeps orca's real ordering:
//!   `startTime` **ascending**, not newest first; `limit=0` means 10 (Gate's
//!   `limit ?: 10`); only executions of the app's configs are listed, so
//!   [`FakeGate::add_execution`] links or creates a config.
//! - Only Manual Judgment is simulated: after a judgment, downstream stages
//!   that become ready start (another MJ waits RUNNING, anything else
//!   SUCCEEDS at once) and the execution ends when nothing is left to run.
//!   Stages started by a trigger stay RUNNING until judged or set by a test.
//! - A request keeps running when its client gives up (it is processed on
//!   its own task), so a timed-out PATCH is still applied, as with a real
//!   Gate.
//!
//! Design: all state lives in one `Arc<std::sync::Mutex<Inner>>`; the lock is
//! never held across an `.await` (the only awaits are the injected latency and
//! the delayed judgment evaluation, both outside the lock). Requests are
//! routed by hand in `Inner::route` so that Gate's overlapping path shapes
//! (`/pipelines/{id}/cancel` vs `/pipelines/{app}/{name}`) resolve as Spring
//! resolves them.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

// =============================================================================
// Public types
// =============================================================================

/// Which credentials the fake Gate demands (ref §1.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Auth disabled: every request is accepted (the default).
    None,
    /// `Authorization: Bearer <token>` (OAuth2 / API token) or
    /// `X-Spinnaker-Token: <token>` (API tokens, 2026.2+).
    Bearer(String),
    /// HTTP Basic with this user and password (basic / LDAP). The user is the
    /// principal and therefore wins over `X-SPINNAKER-USER`.
    Basic(String, String),
}

/// One `PATCH /pipelines/{executionId}/stages/{stageId}` as it reached the
/// handler (requests rejected by fault injection or auth are not recorded
/// here, only in [`FakeGate::requests`]).
#[derive(Clone, Debug)]
pub struct RecordedPatch {
    pub execution_id: String,
    pub stage_id: String,
    /// The JSON body (Null when it was not valid JSON).
    pub body: Value,
    /// Raw `X-SPINNAKER-USER` header, if any.
    pub spinnaker_user: Option<String>,
    /// Whether an `Authorization` header was present.
    pub authorization_present: bool,
    /// Raw `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The user orca recorded in `lastModified.user`.
    pub effective_user: String,
    /// HTTP status the fake answered.
    pub status: u16,
    /// When the PATCH arrived (for latency benchmarks).
    pub at: std::time::Instant,
}

/// One `POST /pipelines/{application}/{pipelineNameOrId}` (trigger v1).
#[derive(Clone, Debug)]
pub struct RecordedTrigger {
    pub application: String,
    pub pipeline_name_or_id: String,
    /// The body exactly as received (before Gate filled `user`/`notifications`).
    pub body: Value,
    pub spinnaker_user: Option<String>,
    pub authorization_present: bool,
    pub status: u16,
    /// Id of the execution created, for a 202.
    pub execution_id: Option<String>,
}

/// Every request the fake saw, including rejected ones.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub spinnaker_user: Option<String>,
    pub authorization_present: bool,
    pub status: u16,
}

/// The fake Gate. Dropping it stops the server.
pub struct FakeGate {
    addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGate {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// =============================================================================
// Internal state
// =============================================================================

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    // A panicking test thread must not poison the fake for the others.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Inner {
    /// Executions by id (orca's execution repository).
    executions: HashMap<String, Value>,
    /// Pipeline configs per application, in insertion order (front50).
    configs: HashMap<String, Vec<Value>>,
    /// Known applications (front50).
    applications: BTreeSet<String>,
    /// Execution ids whose read orca refuses (403), which Gate turns into an
    /// empty 200 (ref §1.4).
    read_forbidden: HashSet<String>,
    /// Users Fiat refuses as judges; `"*"` refuses everybody (ref §4).
    fiat_refuses: HashSet<String>,
    /// Time between a PATCH and the judgment task running (orca reschedule).
    transition_delay: Duration,
    /// When false, judgments are stored but never evaluated (a stuck
    /// pipeline, ref §6 item 5).
    auto_transition: bool,
    /// Whether `X-SPINNAKER-USER` names the user when there is no principal.
    trust_user_header: bool,
    auth: Auth,
    down: bool,
    fail_queue: VecDeque<StatusCode>,
    delay: Duration,
    patches: Vec<RecordedPatch>,
    triggers: Vec<RecordedTrigger>,
    requests: Vec<RecordedRequest>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            executions: HashMap::new(),
            configs: HashMap::new(),
            applications: BTreeSet::new(),
            read_forbidden: HashSet::new(),
            fiat_refuses: HashSet::new(),
            transition_delay: Duration::ZERO,
            auto_transition: true,
            trust_user_header: true,
            auth: Auth::None,
            down: false,
            fail_queue: VecDeque::new(),
            delay: Duration::ZERO,
            patches: Vec::new(),
            triggers: Vec::new(),
            requests: Vec::new(),
        }
    }
}

/// A judgment evaluation to run later (orca's `runner.reschedule`, ref §1.1).
struct FollowUp {
    execution_id: String,
    stage_id: String,
    after: Duration,
}

// =============================================================================
// Lifecycle
// =============================================================================

impl FakeGate {
    /// Binds `127.0.0.1:0` and serves the fake Gate on a spawned task.
    pub async fn start() -> FakeGate {
        let shared: Shared = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake gate: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake gate: local addr");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGate {
            addr,
            shared,
            server,
        }
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }
}

// =============================================================================
// Fixtures (ref §1.4 execution and stage keys, §3a example, §4 MJ config)
// =============================================================================

impl FakeGate {
    /// A realistic RUNNING execution of `pipeline_name` in `app`: a finished
    /// `deploy` stage (refId "1") followed by a RUNNING `manualJudgment` stage
    /// (refId "2", id `stage_id`, name "Approve prod") waiting for judgment.
    ///
    /// The MJ context has HTML `instructions`, `judgmentInputs: []`,
    /// `failPipeline: true`, `selectedStageRoles: []` (no role check, so Fiat
    /// refusals do not apply until roles are set, ref §4) and no
    /// `judgmentStatus`. `pipelineConfigId` is [`FakeGate::config_id`]`(app,
    /// pipeline_name)`.
    pub fn mj_execution(app: &str, pipeline_name: &str, exec_id: &str, stage_id: &str) -> Value {
        let now = now_ms();
        let start = now - 120_000;
        let deploy_start = start + 1_000;
        let deploy_end = start + 60_000;
        let mj_start = deploy_end + 500;
        let deploy_stage = json!({
            "id": new_ulid(),
            "refId": "1",
            "type": "deploy",
            "name": "Deploy to staging",
            "startTime": deploy_start,
            "endTime": deploy_end,
            "status": "SUCCEEDED",
            "context": {
                "account": "staging",
                "cloudProvider": "kubernetes",
                "clusters": []
            },
            "outputs": {},
            "tasks": [task("deploy", "SUCCEEDED", deploy_start, Some(deploy_end))],
            "syntheticStageOwner": null,
            "parentStageId": null,
            "requisiteStageRefIds": [],
            "scheduledTime": null,
            "lastModified": null
        });
        let instructions = format!(
            "Promote <b>v42</b> to <a href=\"https://deck.example.com/#/applications/{app}\">prod</a>?<br/>Check the <i>canary</i> first."
        );
        let mj_stage = json!({
            "id": stage_id,
            "refId": "2",
            "type": "manualJudgment",
            "name": "Approve prod",
            "startTime": mj_start,
            "endTime": null,
            "status": "RUNNING",
            "context": {
                "instructions": instructions,
                "judgmentInputs": [],
                "failPipeline": true,
                "propagateAuthenticationContext": true,
                "selectedStageRoles": [],
                "sendNotifications": false,
                "notifications": [],
                "isNew": true
            },
            "outputs": {},
            "tasks": [task("waitForJudgment", "RUNNING", mj_start, None)],
            "syntheticStageOwner": null,
            "parentStageId": null,
            "requisiteStageRefIds": ["1"],
            "scheduledTime": null,
            "lastModified": null
        });
        let trigger = json!({
            "type": "manual",
            "user": "alice@example.com",
            "parameters": {"version": "v42", "env": "prod"},
            "artifacts": [],
            "notifications": [],
            "expectedArtifacts": [],
            "resolvedExpectedArtifacts": [],
            "dryRun": false,
            "rebake": false,
            "strategy": false
        });
        json!({
            "type": "PIPELINE",
            "id": exec_id,
            "application": app,
            "name": pipeline_name,
            "buildTime": start,
            "startTime": start,
            "endTime": null,
            "status": "RUNNING",
            "canceled": false,
            "canceledBy": null,
            "cancellationReason": null,
            "limitConcurrent": true,
            "keepWaitingPipelines": false,
            "origin": "deck",
            "spelEvaluator": "v4",
            "partition": null,
            "paused": null,
            "description": null,
            "source": null,
            "initialConfig": {},
            "systemNotifications": [],
            "notifications": [],
            "authentication": {
                "user": "alice@example.com",
                "allowedAccounts": ["prod", "staging"]
            },
            "trigger": trigger,
            "pipelineConfigId": Self::config_id(app, pipeline_name),
            "stages": [deploy_stage, mj_stage]
        })
    }

    /// The deterministic front50 id the fake uses for the config `name` of
    /// `app` (UUID-shaped), when a config or execution does not bring its own.
    pub fn config_id(app: &str, name: &str) -> String {
        let mut h1 = DefaultHasher::new();
        (app, name, 1u8).hash(&mut h1);
        let mut h2 = DefaultHasher::new();
        (app, name, 2u8).hash(&mut h2);
        uuid::Uuid::from_u64_pair(h1.finish(), h2.finish()).to_string()
    }

    /// A fresh ULID-like id (26 Crockford base32 characters), as orca mints.
    pub fn new_id() -> String {
        new_ulid()
    }
}

fn task(name: &str, status: &str, start: i64, end: Option<i64>) -> Value {
    let class = match name {
        "waitForJudgment" => {
            "com.netflix.spinnaker.orca.echo.pipeline.ManualJudgmentStage$WaitForManualJudgmentTask"
        }
        _ => "com.netflix.spinnaker.orca.kato.tasks.FakeTask",
    };
    json!({
        "id": "1",
        "implementingClass": class,
        "name": name,
        "startTime": start,
        "endTime": end,
        "status": status,
        "stageStart": true,
        "stageEnd": true,
        "loopStart": false,
        "loopEnd": false
    })
}

// =============================================================================
// State setup and inspection from tests
// =============================================================================

impl FakeGate {
    /// Stores an execution (e.g. from [`FakeGate::mj_execution`]); replaces one
    /// with the same id. Registers its application. If no config of the
    /// application has its `pipelineConfigId`, the execution is linked to the
    /// config of the same `name` if there is one, otherwise a minimal config
    /// is created (orca only lists executions of front50 configs, ref §1.4).
    ///
    /// # Panics
    /// If the value has no string `id` or `application`.
    pub fn add_execution(&self, mut execution: Value) {
        let id = str_field(&execution, "id").expect("execution needs an id");
        let app = str_field(&execution, "application").expect("execution needs an application");
        let name = str_field(&execution, "name").unwrap_or_else(|| id.clone());
        let mut inner = self.inner();
        inner.applications.insert(app.clone());
        let configs = inner.configs.entry(app.clone()).or_default();
        let wanted = str_field(&execution, "pipelineConfigId");
        let linked = wanted
            .as_deref()
            .is_some_and(|cid| configs.iter().any(|c| c["id"] == cid));
        if !linked {
            if let Some(by_name) = configs.iter().find(|c| c["name"] == name.as_str()) {
                execution["pipelineConfigId"] = by_name["id"].clone();
            } else {
                let cid = wanted.unwrap_or_else(|| Self::config_id(&app, &name));
                execution["pipelineConfigId"] = json!(cid);
                configs.push(minimal_config(&app, &name, &cid));
            }
        }
        inner.executions.insert(id, execution);
    }

    /// A copy of the stored execution.
    ///
    /// # Panics
    /// If there is no such execution.
    pub fn execution(&self, id: &str) -> Value {
        self.inner()
            .executions
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("fake gate: no execution {id}"))
    }

    /// Whether an execution with this id is stored.
    pub fn has_execution(&self, id: &str) -> bool {
        self.inner().executions.contains_key(id)
    }

    /// All stored executions (unordered).
    pub fn executions(&self) -> Vec<Value> {
        self.inner().executions.values().cloned().collect()
    }

    /// Deletes an execution (later reads answer 404).
    pub fn remove_execution(&self, id: &str) -> Option<Value> {
        self.inner().executions.remove(id)
    }

    /// A copy of one stage of a stored execution.
    ///
    /// # Panics
    /// If the execution or stage does not exist.
    pub fn stage(&self, exec_id: &str, stage_id: &str) -> Value {
        self.with_stage(exec_id, stage_id, |stage| stage.clone())
    }

    /// Sets `context[key] = value` on a stored stage.
    pub fn set_stage_context(&self, exec_id: &str, stage_id: &str, key: &str, value: Value) {
        self.with_stage(exec_id, stage_id, |stage| {
            context_mut(stage).insert(key.to_string(), value);
        });
    }

    /// Sets `context.judgmentInputs` to `[{"value": v}, ...]` (ref §1.1, §4).
    pub fn set_judgment_inputs(&self, exec_id: &str, stage_id: &str, values: &[&str]) {
        let inputs: Vec<Value> = values.iter().map(|v| json!({ "value": v })).collect();
        self.set_stage_context(exec_id, stage_id, "judgmentInputs", json!(inputs));
    }

    /// Sets `context.selectedStageRoles` (Deck's "Authorized Groups", ref §4).
    pub fn set_selected_stage_roles(&self, exec_id: &str, stage_id: &str, roles: &[&str]) {
        self.set_stage_context(exec_id, stage_id, "selectedStageRoles", json!(roles));
    }

    /// Sets `context.requiredJudgmentRoles` (takes precedence, ref §4).
    pub fn set_required_judgment_roles(&self, exec_id: &str, stage_id: &str, roles: &[&str]) {
        self.set_stage_context(exec_id, stage_id, "requiredJudgmentRoles", json!(roles));
    }

    /// Sets `context.instructions` (HTML allowed, ref §4).
    pub fn set_instructions(&self, exec_id: &str, stage_id: &str, html: &str) {
        self.set_stage_context(exec_id, stage_id, "instructions", json!(html));
    }

    /// Sets a stage's status (and its RUNNING tasks'); a complete status also
    /// sets `endTime`. Does not touch the execution or other stages.
    pub fn set_stage_status(&self, exec_id: &str, stage_id: &str, status: &str) {
        let now = now_ms();
        self.with_stage(exec_id, stage_id, |stage| {
            if is_complete(status) {
                finish_stage(stage, status, now);
            } else {
                stage["status"] = json!(status);
                stage["endTime"] = Value::Null;
            }
        });
    }

    /// Sets an execution's status; a complete status also sets `endTime`.
    pub fn set_execution_status(&self, exec_id: &str, status: &str) {
        let mut inner = self.inner();
        let exec = inner
            .executions
            .get_mut(exec_id)
            .unwrap_or_else(|| panic!("fake gate: no execution {exec_id}"));
        exec["status"] = json!(status);
        exec["endTime"] = if is_complete(status) {
            json!(now_ms())
        } else {
            Value::Null
        };
    }

    /// Simulates somebody judging the stage in Deck: stores `judgmentStatus`
    /// and `lastModified`/`lastModifiedBy` for `by_user`, then evaluates the
    /// judgment at once (no Fiat check, no delay). A stage that is no longer
    /// RUNNING only gets its context rewritten, like a real PATCH (ref §1.1).
    pub fn complete_stage(
        &self,
        exec_id: &str,
        stage_id: &str,
        judgment_status: &str,
        by_user: &str,
    ) {
        let mut inner = self.inner();
        let exec = inner
            .executions
            .get_mut(exec_id)
            .unwrap_or_else(|| panic!("fake gate: no execution {exec_id}"));
        let stage = stage_mut(exec, stage_id)
            .unwrap_or_else(|| panic!("fake gate: no stage {stage_id} in {exec_id}"));
        let mut body = Map::new();
        body.insert("judgmentStatus".into(), json!(judgment_status));
        apply_stage_patch(stage, body, by_user);
        evaluate_judgment(exec, stage_id, None);
    }

    /// Registers an application so `GET /applications/{app}` answers 200.
    pub fn add_application(&self, app: &str) {
        self.inner().applications.insert(app.to_string());
    }

    /// Stores a front50 pipeline config for `app` and returns its id. `name`
    /// is required; `id` defaults to [`FakeGate::config_id`]`(app, name)`;
    /// `application` is filled in. A config with the same name is replaced
    /// (keeping its id when the new one brings none). Recognised keys:
    /// `parameterConfig[] {name, required, default}`, `notifications`,
    /// `stages[] {refId, type, name, requisiteStageRefIds, ...context}`.
    ///
    /// # Panics
    /// If `config` is not an object with a string `name`.
    pub fn add_pipeline_config(&self, app: &str, mut config: Value) -> String {
        let name = str_field(&config, "name").expect("pipeline config needs a name");
        let mut inner = self.inner();
        inner.applications.insert(app.to_string());
        let configs = inner.configs.entry(app.to_string()).or_default();
        let existing = configs.iter().position(|c| c["name"] == name.as_str());
        let id = str_field(&config, "id")
            .or_else(|| existing.map(|i| configs[i]["id"].as_str().unwrap_or_default().to_string()))
            .unwrap_or_else(|| Self::config_id(app, &name));
        config["id"] = json!(id);
        config["application"] = json!(app);
        match existing {
            Some(i) => configs[i] = config,
            None => configs.push(config),
        }
        id
    }

    fn with_stage<T>(&self, exec_id: &str, stage_id: &str, f: impl FnOnce(&mut Value) -> T) -> T {
        let mut inner = self.inner();
        let exec = inner
            .executions
            .get_mut(exec_id)
            .unwrap_or_else(|| panic!("fake gate: no execution {exec_id}"));
        let stage = stage_mut(exec, stage_id)
            .unwrap_or_else(|| panic!("fake gate: no stage {stage_id} in {exec_id}"));
        f(stage)
    }

    /// Polls the stored state until the stage has `status` or `timeout`
    /// passes; returns whether it got there.
    pub async fn wait_for_stage_status(
        &self,
        exec_id: &str,
        stage_id: &str,
        status: &str,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = {
                let inner = self.inner();
                inner
                    .executions
                    .get(exec_id)
                    .and_then(|e| e["stages"].as_array())
                    .and_then(|s| s.iter().find(|s| s["id"] == stage_id))
                    .map(|s| s["status"].clone())
            };
            if current.as_ref().and_then(Value::as_str) == Some(status) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// =============================================================================
// Quirk, fault and auth switches
// =============================================================================

impl FakeGate {
    /// Orca refuses to show this execution (403 under `@PostAuthorize READ`);
    /// Gate swallows that and answers `GET /pipelines/{id}` with **200 and an
    /// empty body** (ref §1.4).
    pub fn set_read_forbidden(&self, exec_id: &str) {
        self.inner().read_forbidden.insert(exec_id.to_string());
    }

    /// Time between a judging PATCH and the judgment being evaluated (orca's
    /// reschedule of `waitForJudgment`, ref §1.1, §4). Default zero: the
    /// evaluation runs right after the PATCH response is built, so the PATCH
    /// response itself still shows the stage RUNNING, as orca's does.
    pub fn set_transition_delay(&self, delay: Duration) {
        self.inner().transition_delay = delay;
    }

    /// `false` stores judgments but never evaluates them: the pipeline stays
    /// stuck on the MJ (ref §6 item 5). Default `true`.
    pub fn set_auto_transition(&self, enabled: bool) {
        self.inner().auto_transition = enabled;
    }

    /// Fiat refuses `user_or_any` as a judge (`"*"` = everybody): when the
    /// judgment is evaluated on a stage **with roles set**
    /// (`requiredJudgmentRoles`, else `selectedStageRoles`), orca silently
    /// resets `judgmentStatus` to `""` and leaves the stage RUNNING; the PATCH
    /// still answered 200 and `lastModifiedBy` names the refused user
    /// (ref §4). Stages without roles are never checked, as in orca.
    pub fn set_fiat_refuses(&self, user_or_any: &str) {
        self.inner().fiat_refuses.insert(user_or_any.to_string());
    }

    /// Forgets every Fiat refusal.
    pub fn clear_fiat_refusals(&self) {
        self.inner().fiat_refuses.clear();
    }

    /// Whether `X-SPINNAKER-USER` names the user when there is no principal
    /// (header auth, or orca reached through a trusting proxy). `false`
    /// models Gate with auth disabled, where everyone is `anonymous`
    /// (ref §1.6). Default `true`.
    pub fn set_trust_user_header(&self, trusted: bool) {
        self.inner().trust_user_header = trusted;
    }

    /// Demands credentials on every route but `/health`; missing or wrong
    /// ones get 401 with a Spring error body (ref §1.5, §1.6).
    pub fn require_auth(&self, auth: Auth) {
        self.inner().auth = auth;
    }

    /// Gate unreachable behind a load balancer: every route answers 503 with
    /// a plain-text body (not JSON!).
    pub fn set_down(&self, down: bool) {
        self.inner().down = down;
    }

    /// The next `n` requests (whatever the route) answer `status` with a
    /// Spring error body; calls queue up.
    pub fn fail_next(&self, n: usize, status: u16) {
        let status = StatusCode::from_u16(status).expect("valid HTTP status");
        let mut inner = self.inner();
        inner.fail_queue.extend(std::iter::repeat_n(status, n));
    }

    /// Latency added before every request is handled (including faults). A
    /// client that times out meanwhile does not cancel the request: it is
    /// still applied and recorded, only the response is lost.
    pub fn set_delay(&self, delay: Duration) {
        self.inner().delay = delay;
    }

    /// Every PATCH that reached the stage handler, in order.
    pub fn patches(&self) -> Vec<RecordedPatch> {
        self.inner().patches.clone()
    }

    /// Number of PATCHes that reached the stage handler.
    pub fn patch_count(&self) -> usize {
        self.inner().patches.len()
    }

    /// Every trigger v1 POST that reached the trigger handler, in order.
    pub fn triggers(&self) -> Vec<RecordedTrigger> {
        self.inner().triggers.clone()
    }

    /// Every request received, including ones rejected by faults or auth.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner().requests.clone()
    }

    /// Number of requests received.
    pub fn request_count(&self) -> usize {
        self.inner().requests.len()
    }
}

// =============================================================================
// HTTP plumbing
// =============================================================================

/// What a route answers; turned into an axum response outside the lock.
struct Reply {
    status: StatusCode,
    body: ReplyBody,
}

enum ReplyBody {
    Json(Value),
    Empty,
    Text(&'static str),
}

impl Reply {
    fn json(status: StatusCode, value: Value) -> Self {
        Self {
            status,
            body: ReplyBody::Json(value),
        }
    }

    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: ReplyBody::Empty,
        }
    }

    /// Spring error attributes without `path` (ref §1.5).
    fn error(status: StatusCode, message: impl Into<String>, exception: &str) -> Self {
        Self::json(
            status,
            json!({
                "timestamp": now_ms(),
                "status": status.as_u16(),
                "error": status.canonical_reason().unwrap_or("Error"),
                "message": message.into(),
                "exception": exception,
            }),
        )
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            ReplyBody::Json(value) => {
                let mut r = Response::new(Body::from(value.to_string()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            ReplyBody::Empty => Response::new(Body::empty()),
            ReplyBody::Text(text) => {
                let mut r = Response::new(Body::from(text));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            }
        };
        *response.status_mut() = self.status;
        response
    }
}

const NOT_FOUND_EXCEPTION: &str = "com.netflix.spinnaker.kork.web.exceptions.NotFoundException";
const EXECUTION_NOT_FOUND: &str =
    "com.netflix.spinnaker.orca.pipeline.persistence.ExecutionNotFoundException";
const ILLEGAL_ARGUMENT: &str = "java.lang.IllegalArgumentException";
const NOT_READABLE: &str = "org.springframework.http.converter.HttpMessageNotReadableException";

/// A parsed request, borrowed from the axum extractors.
struct Req<'a> {
    method: &'a Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Req<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn spinnaker_user(&self) -> Option<String> {
        self.header("x-spinnaker-user").map(str::to_string)
    }

    fn has_authorization(&self) -> bool {
        self.headers.contains_key(header::AUTHORIZATION)
    }
}

/// The axum fallback: every request lands here. The work runs on its own
/// task, so a client that gives up (e.g. times out during [`FakeGate::set_delay`])
/// does not cancel it: like a real Gate, the change is applied and only the
/// response is lost.
async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = tokio::spawn(process(shared, method, uri, headers, body));
    match work.await {
        Ok(reply) => reply.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn process(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let delay = lock(&shared).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let req = Req {
        method: &method,
        segments: uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query: uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default(),
        headers: &headers,
        body: &body,
    };
    let (reply, follow_up) = {
        let mut inner = lock(&shared);
        let (reply, follow_up) = inner.serve(&req);
        inner.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            spinnaker_user: req.spinnaker_user(),
            authorization_present: req.has_authorization(),
            status: reply.status.as_u16(),
        });
        (reply, follow_up)
    };
    if let Some(FollowUp {
        execution_id,
        stage_id,
        after,
    }) = follow_up
    {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            lock(&shared).run_judgment_task(&execution_id, &stage_id);
        });
    }
    reply
}

// =============================================================================
// Routing, faults and auth
// =============================================================================

impl Inner {
    fn serve(&mut self, req: &Req<'_>) -> (Reply, Option<FollowUp>) {
        if self.down {
            // What a load balancer in front of a dead Gate answers.
            return (
                Reply {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: ReplyBody::Text("no healthy upstream"),
                },
                None,
            );
        }
        if let Some(status) = self.fail_queue.pop_front() {
            let message = format!("Injected failure ({})", status.as_u16());
            return (
                Reply::error(status, message, "java.lang.RuntimeException"),
                None,
            );
        }
        let is_health = req.segments.len() == 1 && req.segments[0] == "health";
        if !is_health && !self.authenticated(req) {
            return (
                Reply::error(
                    StatusCode::UNAUTHORIZED,
                    "Full authentication is required to access this resource",
                    "org.springframework.security.authentication.InsufficientAuthenticationException",
                ),
                None,
            );
        }
        self.route(req)
    }

    fn route(&mut self, req: &Req<'_>) -> (Reply, Option<FollowUp>) {
        let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let reply = match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["health"]) => Reply::json(StatusCode::OK, json!({"status": "UP"})),
            ("GET", ["auth", "user"]) => self.auth_user(req),
            ("GET", ["pipelines", id]) => self.get_pipeline(id),
            ("PATCH", ["pipelines", id, "stages", stage_id]) => {
                return self.patch_stage(req, id, stage_id);
            }
            ("PUT", ["pipelines", id, "cancel"]) => self.cancel(req, id),
            ("POST", ["pipelines", app, name]) => self.trigger(req, app, name),
            ("GET", ["applications", app]) => self.get_application(app),
            ("GET", ["applications", app, "pipelineConfigs"]) => self.list_configs(req, app),
            ("GET", ["applications", app, "pipelineConfigs", name]) => self.get_config(app, name),
            ("GET", ["applications", app, "pipelines"]) => self.list_executions(req, app),
            ("PUT", ["applications", _app, "pipelines", id, "cancel"]) => self.cancel(req, id),
            (_, shape) if known_shape(shape) => Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Request method '{}' is not supported", req.method),
                "org.springframework.web.HttpRequestMethodNotSupportedException",
            ),
            _ => Reply::error(
                StatusCode::NOT_FOUND,
                "No message available",
                "org.springframework.web.servlet.NoHandlerFoundException",
            ),
        };
        (reply, None)
    }

    fn authenticated(&self, req: &Req<'_>) -> bool {
        let authorization = req.header("authorization").and_then(|v| v.split_once(' '));
        match &self.auth {
            Auth::None => true,
            Auth::Basic(user, pass) => {
                let expected = base64(format!("{user}:{pass}").as_bytes());
                authorization.is_some_and(|(scheme, value)| {
                    scheme.eq_ignore_ascii_case("basic") && value.trim() == expected
                })
            }
            Auth::Bearer(token) => {
                authorization.is_some_and(|(scheme, value)| {
                    scheme.eq_ignore_ascii_case("bearer") && value.trim() == token
                }) || req.header("x-spinnaker-token") == Some(token.as_str())
            }
        }
    }

    /// The user Gate forwards to orca: a Basic principal wins, then
    /// `X-SPINNAKER-USER` (when trusted), then `anonymous` (ref §1.6).
    fn principal(&self, req: &Req<'_>) -> String {
        if let Auth::Basic(user, _) = &self.auth {
            return user.clone();
        }
        if self.trust_user_header
            && let Some(user) = req.header("x-spinnaker-user").filter(|u| !u.is_empty())
        {
            return user.to_string();
        }
        "anonymous".to_string()
    }
}

fn known_shape(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["health"]
            | ["auth", "user"]
            | ["pipelines", _]
            | ["pipelines", _, _]
            | ["pipelines", _, "stages", _]
            | ["applications", _]
            | ["applications", _, "pipelineConfigs"]
            | ["applications", _, "pipelineConfigs", _]
            | ["applications", _, "pipelines"]
            | ["applications", _, "pipelines", _, "cancel"]
    )
}

// =============================================================================
// Route handlers
// =============================================================================

impl Inner {
    /// `GET /auth/user`.
    fn auth_user(&self, req: &Req<'_>) -> Reply {
        let user = self.principal(req);
        Reply::json(
            StatusCode::OK,
            json!({
                "username": user,
                "email": user,
                "roles": [],
                "allowedAccounts": [],
                "enabled": true,
                "accountNonExpired": true,
                "accountNonLocked": true,
                "credentialsNonExpired": true
            }),
        )
    }

    /// `GET /pipelines/{id}` (ref §1.4).
    fn get_pipeline(&self, id: &str) -> Reply {
        if self.read_forbidden.contains(id) {
            return Reply::empty(StatusCode::OK);
        }
        match self.executions.get(id) {
            Some(exec) => Reply::json(StatusCode::OK, exec.clone()),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                format!("Pipeline not found (id: {id})"),
                NOT_FOUND_EXCEPTION,
            ),
        }
    }

    /// `PATCH /pipelines/{executionId}/stages/{stageId}` (ref §1.1, §4).
    fn patch_stage(
        &mut self,
        req: &Req<'_>,
        exec_id: &str,
        stage_id: &str,
    ) -> (Reply, Option<FollowUp>) {
        let user = self.principal(req);
        let parsed = parse_object(req.body, false);
        let body_value = match &parsed {
            Ok(map) => Value::Object(map.clone()),
            Err(_) => serde_json::from_slice(req.body).unwrap_or(Value::Null),
        };
        let mut follow_up = None;
        let reply = match parsed {
            Err(reply) => reply,
            Ok(body) => match self.executions.get_mut(exec_id) {
                None => Reply::error(
                    StatusCode::NOT_FOUND,
                    format!("No PIPELINE found for {exec_id}"),
                    EXECUTION_NOT_FOUND,
                ),
                Some(exec) => match stage_mut(exec, stage_id) {
                    // orca: IllegalArgumentException swallowed by doInternal.
                    None => Reply::empty(StatusCode::OK),
                    // manualSkip validation throws (405-annotated), also
                    // swallowed; the update is not stored (ref §1.1).
                    Some(stage) if truthy(body.get("manualSkip")) && stage["type"] != "wait" => {
                        Reply::empty(StatusCode::OK)
                    }
                    Some(stage) => {
                        let judges = body.contains_key("judgmentStatus")
                            && stage["status"] == "RUNNING"
                            && stage["type"] == "manualJudgment";
                        apply_stage_patch(stage, body, &user);
                        let snapshot = exec.clone();
                        if judges && self.auto_transition {
                            follow_up = Some(FollowUp {
                                execution_id: exec_id.to_string(),
                                stage_id: stage_id.to_string(),
                                after: self.transition_delay,
                            });
                        }
                        Reply::json(StatusCode::OK, snapshot)
                    }
                },
            },
        };
        self.patches.push(RecordedPatch {
            execution_id: exec_id.to_string(),
            stage_id: stage_id.to_string(),
            body: body_value,
            spinnaker_user: req.spinnaker_user(),
            authorization_present: req.has_authorization(),
            content_type: req.header("content-type").map(str::to_string),
            effective_user: user,
            status: reply.status.as_u16(),
            at: std::time::Instant::now(),
        });
        match follow_up {
            Some(f) if f.after.is_zero() => {
                self.run_judgment_task(&f.execution_id, &f.stage_id);
                (reply, None)
            }
            other => (reply, other),
        }
    }

    /// orca's `waitForJudgment` task running after the reschedule.
    fn run_judgment_task(&mut self, exec_id: &str, stage_id: &str) {
        let fiat = self.fiat_refuses.clone();
        if let Some(exec) = self.executions.get_mut(exec_id) {
            evaluate_judgment(exec, stage_id, Some(&fiat));
        }
    }

    /// `PUT /pipelines/{id}/cancel?reason=` (ref §1.4).
    fn cancel(&mut self, req: &Req<'_>, id: &str) -> Reply {
        let user = self.principal(req);
        let reason = req.query("reason").map(str::to_string);
        let Some(exec) = self.executions.get_mut(id) else {
            return Reply::error(
                StatusCode::NOT_FOUND,
                format!("No PIPELINE found for {id}"),
                EXECUTION_NOT_FOUND,
            );
        };
        let now = now_ms();
        exec["canceled"] = json!(true);
        exec["canceledBy"] = json!(user);
        exec["cancellationReason"] = json!(reason);
        let status = exec["status"].as_str().unwrap_or("RUNNING").to_string();
        if !is_complete(&status) {
            exec["status"] = json!("CANCELED");
            exec["endTime"] = json!(now);
            for stage in stages_mut(exec) {
                if stage["status"] == "RUNNING" {
                    finish_stage(stage, "CANCELED", now);
                }
            }
        }
        // orca answers 202 with no body; Gate relays 200 with no body.
        Reply::empty(StatusCode::OK)
    }

    /// `POST /pipelines/{application}/{pipelineNameOrId}` (ref §1.2).
    fn trigger(&mut self, req: &Req<'_>, app: &str, name_or_id: &str) -> Reply {
        let user = self.principal(req);
        let received = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(req.body).unwrap_or(Value::Null)
        };
        let (reply, execution_id) = match parse_object(req.body, true) {
            Err(reply) => (reply, None),
            Ok(trigger) => self.start_execution(app, name_or_id, trigger, &user),
        };
        self.triggers.push(RecordedTrigger {
            application: app.to_string(),
            pipeline_name_or_id: name_or_id.to_string(),
            body: received,
            spinnaker_user: req.spinnaker_user(),
            authorization_present: req.has_authorization(),
            status: reply.status.as_u16(),
            execution_id,
        });
        reply
    }

    fn start_execution(
        &mut self,
        app: &str,
        name_or_id: &str,
        mut trigger: Map<String, Value>,
        user: &str,
    ) -> (Reply, Option<String>) {
        // Gate: trigger.user ?: authenticated user; notifications ?: [].
        if !truthy(trigger.get("user")) {
            trigger.insert("user".into(), json!(user));
        }
        if !truthy(trigger.get("notifications")) {
            trigger.insert("notifications".into(), json!([]));
        }
        trigger.entry("type").or_insert_with(|| json!("manual"));

        let configs = self.configs.get(app).map(Vec::as_slice).unwrap_or_default();
        let config = configs
            .iter()
            .find(|c| c["name"] == name_or_id)
            .or_else(|| configs.iter().find(|c| c["id"] == name_or_id))
            .cloned();
        let Some(config) = config else {
            let message = format!(
                "Unable to trigger pipeline (application: {app}, pipelineNameOrId: {name_or_id}). \
                 Error: Pipeline configuration not found (id: {name_or_id})"
            );
            return (
                Reply::error(StatusCode::NOT_FOUND, message, NOT_FOUND_EXCEPTION),
                None,
            );
        };

        // Gate: required && default == null && not supplied -> 400; orca then
        // fills the defaults of the parameters that were not supplied.
        let mut parameters = trigger
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for param in config["parameterConfig"].as_array().into_iter().flatten() {
            let Some(pname) = param["name"].as_str() else {
                continue;
            };
            let supplied = parameters.get(pname).is_some_and(|v| !v.is_null());
            let default = &param["default"];
            if param["required"] == true && default.is_null() && !supplied {
                return (
                    Reply::error(
                        StatusCode::BAD_REQUEST,
                        format!("Required parameter {pname} is missing"),
                        ILLEGAL_ARGUMENT,
                    ),
                    None,
                );
            }
            if !supplied && !default.is_null() {
                parameters.insert(pname.to_string(), default.clone());
            }
        }
        trigger.insert("parameters".into(), Value::Object(parameters));
        trigger.entry("artifacts").or_insert_with(|| json!([]));

        let id = new_ulid();
        let now = now_ms();
        let mut notifications = config["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        notifications.extend(
            trigger["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        let stages: Vec<Value> = config["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| stage_from_config(s, now))
            .collect();
        let execution = json!({
            "type": "PIPELINE",
            "id": id,
            "application": app,
            "name": config["name"],
            "buildTime": now,
            "startTime": now,
            "endTime": null,
            "status": "RUNNING",
            "canceled": false,
            "canceledBy": null,
            "cancellationReason": null,
            "limitConcurrent": config.get("limitConcurrent").cloned().unwrap_or(json!(true)),
            "keepWaitingPipelines": config.get("keepWaitingPipelines").cloned().unwrap_or(json!(false)),
            "origin": "api",
            "spelEvaluator": "v4",
            "partition": null,
            "paused": null,
            "initialConfig": {},
            "systemNotifications": [],
            "notifications": notifications,
            "authentication": {"user": user, "allowedAccounts": []},
            "trigger": Value::Object(trigger),
            "pipelineConfigId": config["id"],
            "stages": stages,
        });
        self.executions.insert(id.clone(), execution);
        self.applications.insert(app.to_string());
        (
            Reply::json(
                StatusCode::ACCEPTED,
                json!({ "ref": format!("/pipelines/{id}") }),
            ),
            Some(id),
        )
    }

    /// `GET /applications/{app}`.
    fn get_application(&self, app: &str) -> Reply {
        if !self.applications.contains(app) {
            return Reply::error(
                StatusCode::NOT_FOUND,
                format!("Application not found (id: {app})"),
                NOT_FOUND_EXCEPTION,
            );
        }
        Reply::json(
            StatusCode::OK,
            json!({
                "name": app,
                "attributes": {
                    "name": app,
                    "email": format!("{app}-team@example.com"),
                    "cloudProviders": "kubernetes",
                    "user": "alice@example.com",
                    "permissions": {}
                },
                "clusters": {}
            }),
        )
    }

    /// `GET /applications/{app}/pipelineConfigs[?pipelineNameFilter=]`.
    fn list_configs(&self, req: &Req<'_>, app: &str) -> Reply {
        let filter = req.query("pipelineNameFilter").map(str::to_lowercase);
        let configs: Vec<Value> = self
            .configs
            .get(app)
            .into_iter()
            .flatten()
            .filter(|c| match &filter {
                Some(f) => c["name"].as_str().unwrap_or("").to_lowercase().contains(f),
                None => true,
            })
            .cloned()
            .collect();
        Reply::json(StatusCode::OK, Value::Array(configs))
    }

    /// `GET /applications/{app}/pipelineConfigs/{name}` (matches by name only).
    fn get_config(&self, app: &str, name: &str) -> Reply {
        match self
            .configs
            .get(app)
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        {
            Some(config) => Reply::json(StatusCode::OK, config.clone()),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                format!("Pipeline config (id: {name}) not found for Application (id: {app})"),
                NOT_FOUND_EXCEPTION,
            ),
        }
    }

    /// `GET /applications/{app}/pipelines?limit=&statuses=&expand=`.
    ///
    /// Real semantics (orca `TaskController.getPipelinesForApplication`):
    /// - only executions of the app's front50 config ids are considered;
    /// - per config, the `limit` most recent executions matching `statuses`;
    /// - Gate's `limit ?: 10`, so a missing **or zero** limit means 10;
    /// - the merged list is sorted by `startTime` **ascending** (executions
    ///   that have not started first, ties by id descending): orca's
    ///   `startTimeOrId`; Deck sorts on its own;
    /// - `expand` defaults to true; `expand=false` empties `context`,
    ///   `outputs` and `tasks` of every stage.
    fn list_executions(&self, req: &Req<'_>, app: &str) -> Reply {
        let limit = req
            .query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(10);
        let statuses: Option<Vec<&str>> = req
            .query("statuses")
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').map(str::trim).collect());
        let expand = req.query("expand") != Some("false");

        let mut result: Vec<Value> = Vec::new();
        for config in self.configs.get(app).into_iter().flatten() {
            let mut group: Vec<&Value> = self
                .executions
                .values()
                .filter(|e| e["pipelineConfigId"] == config["id"])
                .filter(|e| match &statuses {
                    Some(list) => list.iter().any(|s| e["status"] == *s),
                    None => true,
                })
                .collect();
            group.sort_by(|a, b| start_time_or_id(b, a));
            result.extend(group.into_iter().take(limit).cloned());
        }
        result.sort_by(start_time_or_id);
        if !expand {
            for exec in &mut result {
                for stage in stages_mut(exec) {
                    stage["context"] = json!({});
                    stage["outputs"] = json!({});
                    stage["tasks"] = json!([]);
                }
            }
        }
        Reply::json(StatusCode::OK, Value::Array(result))
    }
}

// =============================================================================
// Orca execution model helpers (ref §1.1, §4)
// =============================================================================

/// Statuses after which orca considers a stage or execution finished.
fn is_complete(status: &str) -> bool {
    matches!(
        status,
        "SUCCEEDED" | "FAILED_CONTINUE" | "TERMINAL" | "CANCELED" | "STOPPED" | "SKIPPED"
    )
}

fn stages_mut(exec: &mut Value) -> impl Iterator<Item = &mut Value> {
    exec.get_mut("stages")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn stage_mut<'a>(exec: &'a mut Value, stage_id: &str) -> Option<&'a mut Value> {
    stages_mut(exec).find(|s| s["id"] == stage_id)
}

fn context_mut(stage: &mut Value) -> &mut Map<String, Value> {
    if !stage["context"].is_object() {
        stage["context"] = json!({});
    }
    stage["context"]
        .as_object_mut()
        .expect("context is an object")
}

/// orca `updatePipelineStage`: `context.putAll(body)`, then `lastModified`
/// and the deprecated `context.lastModifiedBy` (ref §1.1).
fn apply_stage_patch(stage: &mut Value, body: Map<String, Value>, user: &str) {
    let context = context_mut(stage);
    context.extend(body);
    context.insert("lastModifiedBy".into(), json!(user));
    stage["lastModified"] = json!({
        "user": user,
        "allowedAccounts": [],
        "lastModifiedTime": now_ms(),
    });
}

/// Marks a stage (and its unfinished tasks) as finished with `status`.
fn finish_stage(stage: &mut Value, status: &str, now: i64) {
    stage["status"] = json!(status);
    stage["endTime"] = json!(now);
    if let Some(tasks) = stage["tasks"].as_array_mut() {
        for task in tasks {
            if !task["status"].as_str().is_some_and(is_complete) {
                task["status"] = json!(status);
                task["endTime"] = json!(now);
            }
        }
    }
}

/// Starts a stage: RUNNING, `startTime`, and its wait task.
fn start_stage(stage: &mut Value, now: i64) {
    stage["status"] = json!("RUNNING");
    stage["startTime"] = json!(now);
    let task_name = if stage["type"] == "manualJudgment" {
        "waitForJudgment"
    } else {
        "run"
    };
    stage["tasks"] = json!([task(task_name, "RUNNING", now, None)]);
}

/// A NOT_STARTED execution stage built from a front50 stage config (or
/// RUNNING when it has no prerequisites). Everything but the structural keys
/// becomes the context.
fn stage_from_config(config: &Value, now: i64) -> Value {
    let mut context = config.as_object().cloned().unwrap_or_default();
    for key in ["refId", "type", "name", "requisiteStageRefIds"] {
        context.remove(key);
    }
    let requisites = config["requisiteStageRefIds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut stage = json!({
        "id": new_ulid(),
        "refId": config["refId"],
        "type": config["type"],
        "name": config["name"],
        "startTime": null,
        "endTime": null,
        "status": "NOT_STARTED",
        "context": context,
        "outputs": {},
        "tasks": [],
        "syntheticStageOwner": null,
        "parentStageId": null,
        "requisiteStageRefIds": requisites,
        "scheduledTime": null,
        "lastModified": null,
    });
    if requisites.is_empty() {
        start_stage(&mut stage, now);
    }
    stage
}

/// orca `WaitForManualJudgmentTask` plus what the queue does afterwards
/// (ref §4): `continue` → SUCCEEDED and the pipeline moves on; `stop` →
/// TERMINAL and the pipeline fails (with `failPipeline: false` orca turns the
/// TERMINAL task result into FAILED_CONTINUE and moves on); anything else
/// keeps the stage RUNNING. With `fiat` given, a stage with roles whose judge
/// is refused gets `judgmentStatus` reset to `""` and stays RUNNING.
fn evaluate_judgment(exec: &mut Value, stage_id: &str, fiat: Option<&HashSet<String>>) {
    let now = now_ms();
    let Some(stage) = stage_mut(exec, stage_id) else {
        return;
    };
    if stage["status"] != "RUNNING" {
        return;
    }
    let judgment = stage["context"]["judgmentStatus"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    if judgment != "continue" && judgment != "stop" {
        return;
    }
    if let Some(refused) = fiat {
        let context = &stage["context"];
        let required = non_empty_array(&context["requiredJudgmentRoles"]);
        let roles = required.or_else(|| non_empty_array(&context["selectedStageRoles"]));
        let judge = stage["lastModified"]["user"]
            .as_str()
            .unwrap_or("anonymous");
        if roles.is_some() && (refused.contains("*") || refused.contains(judge)) {
            context_mut(stage).insert("judgmentStatus".into(), json!(""));
            return;
        }
    }
    let fail_pipeline = stage["context"]["failPipeline"] != false;
    match (judgment.as_str(), fail_pipeline) {
        ("continue", _) => finish_stage(stage, "SUCCEEDED", now),
        (_, false) => finish_stage(stage, "FAILED_CONTINUE", now),
        (_, true) => {
            finish_stage(stage, "TERMINAL", now);
            exec["status"] = json!("TERMINAL");
            exec["endTime"] = json!(now);
            return;
        }
    }
    advance(exec, now);
}

/// Moves the pipeline on after a stage finished: ready NOT_STARTED stages
/// start (a `manualJudgment` waits RUNNING; any other stage type completes
/// at once, the fake only simulates judgments); when nothing is left to run
/// the execution SUCCEEDS.
fn advance(exec: &mut Value, now: i64) {
    loop {
        let done: HashSet<String> = stages_mut(exec)
            .filter(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("SUCCEEDED" | "FAILED_CONTINUE" | "SKIPPED")
                )
            })
            .filter_map(|s| s["refId"].as_str().map(str::to_string))
            .collect();
        let mut progressed = false;
        for stage in stages_mut(exec) {
            let ready = stage["status"] == "NOT_STARTED"
                && stage["requisiteStageRefIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|r| r.as_str().is_some_and(|r| done.contains(r)));
            if ready {
                start_stage(stage, now);
                if stage["type"] != "manualJudgment" {
                    finish_stage(stage, "SUCCEEDED", now);
                }
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    let unfinished =
        stages_mut(exec).any(|s| matches!(s["status"].as_str(), Some("RUNNING" | "NOT_STARTED")));
    if !unfinished {
        exec["status"] = json!("SUCCEEDED");
        exec["endTime"] = json!(now);
    }
}

/// orca's `startTimeOrId` comparator: startTime ascending (missing = 0),
/// then id descending.
fn start_time_or_id(a: &Value, b: &Value) -> std::cmp::Ordering {
    let start = |v: &Value| v["startTime"].as_i64().unwrap_or(0);
    start(a)
        .cmp(&start(b))
        .then_with(|| b["id"].as_str().cmp(&a["id"].as_str()))
}

fn minimal_config(app: &str, name: &str, id: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "application": app,
        "index": 0,
        "keepWaitingPipelines": false,
        "limitConcurrent": true,
        "parameterConfig": [],
        "notifications": [],
        "triggers": [],
        "stages": [],
        "spelEvaluator": "v4",
        "updateTs": now_ms().to_string(),
        "lastModifiedBy": "alice@example.com"
    })
}

// =============================================================================
// Small utilities
// =============================================================================

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// 48-bit millisecond timestamp + 80 random bits, Crockford base32 (ULID).
fn new_ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = (now_ms() as u128) & ((1u128 << 48) - 1);
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    let mut n = (millis << 80) | random;
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Groovy truth for the values Gate/orca test with `?:` and `if`.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
    }
}

fn non_empty_array(value: &Value) -> Option<&Vec<Value>> {
    value.as_array().filter(|a| !a.is_empty())
}

/// Parses a `@RequestBody Map`; an empty body is `{}` only when the body is
/// optional (`required = false`), otherwise Spring answers 400.
fn parse_object(body: &[u8], optional: bool) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(Map::new())
        } else {
            Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "Required request body is missing",
                NOT_READABLE,
            ))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) if optional => Ok(Map::new()),
        Ok(_) | Err(_) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "JSON parse error: could not read the request body as a JSON object",
            NOT_READABLE,
        )),
    }
}

/// Decodes `%XX` escapes of a path segment (`+` stays a plus in paths).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (for the expected Basic header).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
