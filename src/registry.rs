//! The dispatch table: every handler a feature offers, registered in one place
//! ([`crate::features::register_all`]).
//!
//! Slack commands are keyed by command name, block actions by `action_id` prefix (the longest
//! matching prefix wins), views by `callback_id`, shortcuts by `callback_id`, Events API events by
//! `event.type`, jobs by kind, and Spinnaker echo events by event type. A feature may also add a
//! subcommand to another feature's command ([`Registry::subcommand`]), which that command hands
//! over without either feature importing the other. Adding a feature means adding its handlers
//! here; the interaction layer itself never changes, and this module never names a feature.
//!
//! The state holds the table without naming its type (see [`crate::state::StateParts`]);
//! [`AppState::registry`] is defined here and gives it back typed.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::jobs::{Job, JobError};
use crate::slack::ack::Ack;
use crate::slack::payload::{Action, EventCallback, Interaction, SlashCommand};
use crate::state::AppState;

/// Who and where, for a verified Slack request.
#[derive(Clone, Debug)]
pub struct SlackCtx {
    pub state: AppState,
    pub team_id: Option<String>,
    pub user_id: String,
}

/// A slash command such as `/spinnaker`.
#[async_trait]
pub trait CommandHandler: Send + Sync + 'static {
    async fn handle(&self, cx: SlackCtx, cmd: SlashCommand) -> anyhow::Result<Ack>;
}

/// A button, select or other element in a message or modal.
#[async_trait]
pub trait ActionHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        cx: SlackCtx,
        interaction: Arc<Interaction>,
        action: Action,
    ) -> anyhow::Result<Ack>;
}

/// A modal: its submission, and optionally its closing.
#[async_trait]
pub trait ViewHandler: Send + Sync + 'static {
    async fn submit(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack>;
    async fn closed(&self, _cx: SlackCtx, _interaction: Arc<Interaction>) -> anyhow::Result<Ack> {
        Ok(Ack::Empty)
    }
}

/// A global shortcut or message action.
#[async_trait]
pub trait ShortcutHandler: Send + Sync + 'static {
    async fn handle(&self, cx: SlackCtx, interaction: Arc<Interaction>) -> anyhow::Result<Ack>;
}

/// An Events API event. An error makes the layer answer 500, so Slack retries the delivery.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, state: AppState, event: EventCallback) -> anyhow::Result<()>;
}

/// A Spinnaker echo event (already authenticated and parsed as JSON).
#[async_trait]
pub trait EchoHandler: Send + Sync + 'static {
    async fn handle(&self, state: AppState, event: Arc<serde_json::Value>) -> anyhow::Result<()>;
}

/// What a feature implements to run one kind of job. Handlers must be idempotent: a job whose
/// worker died after doing the work but before recording it runs again.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, state: &AppState, job: &Job) -> Result<(), JobError>;
}

/// Work done every so often by one replica at a time (pollers, reconcilers, syncs). The runner
/// holds the database lease named [`Periodic::name`] while it runs the task.
#[async_trait]
pub trait Periodic: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// `None` disables the task under this configuration.
    fn interval(&self, state: &AppState) -> Option<std::time::Duration>;
    async fn run(&self, state: &AppState) -> anyhow::Result<()>;
}

impl AppState {
    /// The dispatch table every feature registered into at start-up (see [`crate::features`]).
    pub fn registry(&self) -> &Registry {
        // `startup` is the only place that builds the state, and it always gives it a Registry.
        self.registry_untyped()
            .downcast_ref::<Registry>()
            .expect("the state's dispatch table is a Registry (built by startup)")
    }
}

#[derive(Default, Clone)]
pub struct Registry {
    commands: HashMap<String, Arc<dyn CommandHandler>>,
    /// By (command, first word of its text).
    subcommands: HashMap<(String, String), Arc<dyn CommandHandler>>,
    actions: Vec<(String, Arc<dyn ActionHandler>)>,
    views: HashMap<String, Arc<dyn ViewHandler>>,
    shortcuts: HashMap<String, Arc<dyn ShortcutHandler>>,
    events: HashMap<String, Arc<dyn EventHandler>>,
    echo: HashMap<String, Vec<Arc<dyn EchoHandler>>>,
    jobs: HashMap<String, Arc<dyn JobHandler>>,
    periodic: Vec<Arc<dyn Periodic>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("commands", &self.commands.keys().collect::<Vec<_>>())
            .field("subcommands", &self.subcommands.keys().collect::<Vec<_>>())
            .field(
                "actions",
                &self.actions.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("views", &self.views.keys().collect::<Vec<_>>())
            .field("events", &self.events.keys().collect::<Vec<_>>())
            .field("jobs", &self.jobs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// `name` with or without the leading slash.
    pub fn command(&mut self, name: &str, h: impl CommandHandler) -> &mut Self {
        self.commands
            .insert(format!("/{}", name.trim_start_matches('/')), Arc::new(h));
        self
    }
    /// A subcommand one feature adds to another feature's command: `/announce maintenance …` is
    /// scheduled maintenance's, though `/announce` is the announcements'. The command's own
    /// handler looks up the first word of its text ([`Registry::subcommand_handler`]) and hands
    /// over, so neither feature imports the other. `word` matches in any case.
    pub fn subcommand(&mut self, command: &str, word: &str, h: impl CommandHandler) -> &mut Self {
        self.subcommands
            .insert(subcommand_key(command, word), Arc::new(h));
        self
    }
    pub fn action_prefix(&mut self, prefix: &str, h: impl ActionHandler) -> &mut Self {
        // Registering a prefix again replaces its handler, as for every other kind.
        self.actions.retain(|(p, _)| p != prefix);
        self.actions.push((prefix.to_string(), Arc::new(h)));
        // Longest prefix first, so "approvals:input" wins over "approvals:".
        self.actions
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }
    pub fn view(&mut self, callback_id: &str, h: impl ViewHandler) -> &mut Self {
        self.views.insert(callback_id.to_string(), Arc::new(h));
        self
    }
    pub fn shortcut(&mut self, callback_id: &str, h: impl ShortcutHandler) -> &mut Self {
        self.shortcuts.insert(callback_id.to_string(), Arc::new(h));
        self
    }
    pub fn event(&mut self, event_type: &str, h: impl EventHandler) -> &mut Self {
        self.events.insert(event_type.to_string(), Arc::new(h));
        self
    }
    /// Several features may listen to the same echo event type.
    pub fn echo(&mut self, event_type: &str, h: Arc<dyn EchoHandler>) -> &mut Self {
        self.echo.entry(event_type.to_string()).or_default().push(h);
        self
    }
    pub fn job(&mut self, kind: &str, h: impl JobHandler) -> &mut Self {
        self.jobs.insert(kind.to_string(), Arc::new(h));
        self
    }

    pub fn periodic(&mut self, p: impl Periodic) -> &mut Self {
        self.periodic.push(Arc::new(p));
        self
    }
    pub fn periodic_tasks(&self) -> &[Arc<dyn Periodic>] {
        &self.periodic
    }

    pub fn command_handler(&self, command: &str) -> Option<Arc<dyn CommandHandler>> {
        self.commands.get(command).cloned()
    }
    /// The handler another feature registered for `word` under `command`, if any.
    pub fn subcommand_handler(&self, command: &str, word: &str) -> Option<Arc<dyn CommandHandler>> {
        self.subcommands
            .get(&subcommand_key(command, word))
            .cloned()
    }
    pub fn action_handler(&self, action_id: &str) -> Option<Arc<dyn ActionHandler>> {
        self.actions
            .iter()
            .find(|(p, _)| action_id.starts_with(p.as_str()))
            .map(|(_, h)| h.clone())
    }
    pub fn view_handler(&self, callback_id: &str) -> Option<Arc<dyn ViewHandler>> {
        self.views.get(callback_id).cloned()
    }
    pub fn shortcut_handler(&self, callback_id: &str) -> Option<Arc<dyn ShortcutHandler>> {
        self.shortcuts.get(callback_id).cloned()
    }
    pub fn event_handler(&self, event_type: &str) -> Option<Arc<dyn EventHandler>> {
        self.events.get(event_type).cloned()
    }
    pub fn echo_handlers(&self, event_type: &str) -> &[Arc<dyn EchoHandler>] {
        self.echo.get(event_type).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn job_handler(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.jobs.get(kind).cloned()
    }
    pub fn commands(&self) -> impl Iterator<Item = &str> {
        self.commands.keys().map(String::as_str)
    }
    /// Every registered job kind, sorted.
    pub fn job_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }
}

/// `command` with its leading slash, as [`Registry::command`] keys it, and `word` in lower case.
fn subcommand_key(command: &str, word: &str) -> (String, String) {
    (
        format!("/{}", command.trim_start_matches('/')),
        word.to_ascii_lowercase(),
    )
}
