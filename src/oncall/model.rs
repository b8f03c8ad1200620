//! What the on-call providers answer with: a person on call and the stretch of time they are on
//! call. Plain data shared by the providers, the sync and `/oncall`; it imports nothing from the
//! feature, so every provider can use it without depending on the code that runs them. It must
//! stay plain data: a provider's quirks belong in that provider.

use crate::clock::Millis;

/// Someone a provider says is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The provider's user ID (or the email / Slack ID for providers without IDs).
    pub id: String,
    pub email: Option<String>,
    /// Known directly (Grafana OnCall, a rota listing Slack IDs): no lookup needed.
    pub slack_id: Option<String>,
    pub name: Option<String>,
}

impl Person {
    /// How the person is shown in plans and reports.
    pub fn label(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| self.id.clone())
    }
}

/// A stretch of time someone is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub person: Person,
    /// `None`: already running.
    pub start: Option<Millis>,
    /// `None`: no known end.
    pub end: Option<Millis>,
}
