//! One authorization model for every feature: who may act is a set of Slack user IDs, Slack user
//! groups and emails (or everyone), and every decision is explained and audited by the caller.
//!
//! Group memberships (`usergroups.users.list`), group handles (`usergroups.list`) and user
//! profiles (`users.info`, for the email) are cached with moka for `approvals.membership_cache_secs`,
//! so a burst of clicks costs Slack a handful of calls. When Slack cannot be asked, the answer is
//! an error, never "allowed".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::mrkdwn;
use crate::principals::Principals;
use crate::slack::api::{SlackApi, SlackError};
use crate::slack::mrkdwn::Mrkdwn;

/// A Slack user as authorization sees them.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    /// From the profile; requires the `users:read.email` scope.
    pub email: Option<String>,
    pub name: String,
    pub tz: Option<String>,
    /// Deactivated in the workspace (`deleted` in `users.info`).
    pub deactivated: bool,
    /// A bot or an app user (`is_bot`, `is_app_user`): not a person.
    pub bot: bool,
}

impl Identity {
    /// Why this user cannot be given work (be an assignee, receive reminders): `None` for an
    /// active human member.
    pub fn not_a_person(&self) -> Option<&'static str> {
        if self.deactivated {
            Some("is deactivated in this workspace")
        } else if self.bot {
            Some("is a bot or an app, not a person")
        } else {
            None
        }
    }
}

#[derive(Clone)]
pub struct Authz {
    slack: SlackApi,
    users: Cache<String, Arc<Identity>>,
    members: Cache<String, Arc<HashSet<String>>>,
    handles: Cache<(), Arc<HashMap<String, String>>>,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authz")
    }
}

fn arc_err(e: Arc<SlackError>) -> SlackError {
    (*e).clone()
}

impl Authz {
    pub fn new(slack: SlackApi, ttl: Duration) -> Self {
        Self {
            slack,
            users: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl.max(Duration::from_secs(300)))
                .build(),
            members: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(ttl)
                .build(),
            handles: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
        }
    }

    /// The user's profile (cached).
    pub async fn identity(&self, user_id: &str) -> Result<Arc<Identity>, SlackError> {
        let slack = self.slack.clone();
        let id = user_id.to_string();
        self.users
            .try_get_with(user_id.to_string(), async move {
                let u = slack.users_info(&id).await?;
                let name = u
                    .profile
                    .display_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .or(u.real_name.clone())
                    .or(u.name.clone())
                    .unwrap_or_else(|| id.clone());
                Ok(Arc::new(Identity {
                    user_id: id,
                    email: u.profile.email.map(|e| e.to_ascii_lowercase()),
                    name,
                    tz: u.tz,
                    deactivated: u.deleted,
                    bot: u.is_bot || u.is_app_user,
                }))
            })
            .await
            .map_err(arc_err)
    }

    /// Whether `user_id` is an active human member of the workspace: `Ok(Err(why))` when not
    /// (unknown, deactivated, a bot or an app), `Err` when Slack could not be asked.
    pub async fn active_person(&self, user_id: &str) -> Result<Result<(), String>, SlackError> {
        match self.identity(user_id).await {
            Ok(who) => Ok(match who.not_a_person() {
                Some(why) => Err(format!("{user_id} {why}.")),
                None => Ok(()),
            }),
            Err(e) if e.code() == Some(&crate::slack::api::SlackErrorCode::UserNotFound) => Ok(
                Err(format!("No member of this workspace has the ID {user_id}.")),
            ),
            Err(e) => Err(e),
        }
    }

    /// A group's ID from its handle (`release-managers`, `@release-managers`) or ID (`S…`).
    pub async fn group_id(&self, group: &str) -> Result<Option<String>, SlackError> {
        let g = group.trim_start_matches('@');
        if g.starts_with('S')
            && g.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Ok(Some(g.to_string()));
        }
        let slack = self.slack.clone();
        let map = self
            .handles
            .try_get_with((), async move {
                let groups = slack.usergroups_list().await?;
                Ok(Arc::new(
                    groups
                        .into_iter()
                        .filter(|g| g.date_delete.unwrap_or(0) == 0)
                        .map(|g| (g.handle.to_ascii_lowercase(), g.id))
                        .collect::<HashMap<_, _>>(),
                ))
            })
            .await
            .map_err(arc_err)?;
        Ok(map.get(&g.to_ascii_lowercase()).cloned())
    }

    /// Members of a group (cached). An unknown group has no members.
    pub async fn group_members(&self, group: &str) -> Result<Arc<HashSet<String>>, SlackError> {
        let Some(id) = self.group_id(group).await? else {
            return Ok(Arc::new(HashSet::new()));
        };
        let slack = self.slack.clone();
        let gid = id.clone();
        self.members
            .try_get_with(id, async move {
                let users = slack.usergroup_members(&gid).await?;
                Ok(Arc::new(users.into_iter().collect::<HashSet<_>>()))
            })
            .await
            .map_err(arc_err)
    }

    pub async fn in_any_group(&self, user_id: &str, groups: &[String]) -> Result<bool, SlackError> {
        for g in groups {
            if self.group_members(g).await?.contains(user_id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the user `user_id` is one of `principals`, reading their profile only when the
    /// answer depends on it (an email rule or a group).
    pub async fn allows_user(
        &self,
        principals: &Principals,
        user_id: &str,
    ) -> Result<bool, SlackError> {
        if principals.everyone || principals.users.iter().any(|u| u == user_id) {
            return Ok(true);
        }
        if principals.is_empty() {
            return Ok(false);
        }
        let who = self.identity(user_id).await?;
        self.allows(principals, &who).await
    }

    /// Whether `who` is one of `principals`.
    pub async fn allows(
        &self,
        principals: &Principals,
        who: &Identity,
    ) -> Result<bool, SlackError> {
        if principals.everyone || principals.users.iter().any(|u| u == &who.user_id) {
            return Ok(true);
        }
        if let Some(email) = &who.email
            && principals
                .emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(email))
        {
            return Ok(true);
        }
        self.in_any_group(&who.user_id, &principals.groups).await
    }

    /// `<!subteam^ID>` mentions (or `@handle` when unknown) for explanations.
    pub async fn describe_groups(&self, groups: &[String]) -> Mrkdwn {
        let mut out = Vec::new();
        for g in groups {
            match self.group_id(g).await {
                Ok(Some(id)) => out.push(Mrkdwn::usergroup(&id)),
                _ => out.push(mrkdwn!("@{}", g.trim_start_matches('@'))),
            }
        }
        Mrkdwn::join(out, ", ")
    }

    /// Describe a principal set for a person who was refused.
    pub async fn describe(&self, p: &Principals) -> Mrkdwn {
        let mut parts = Vec::new();
        if !p.users.is_empty() {
            parts.push(Mrkdwn::join(p.users.iter().map(|u| Mrkdwn::user(u)), ", "));
        }
        if !p.groups.is_empty() {
            parts.push(mrkdwn!(
                "members of {}",
                self.describe_groups(&p.groups).await
            ));
        }
        if !p.emails.is_empty() {
            parts.push(mrkdwn!("{} listed email address(es)", p.emails.len()));
        }
        if parts.is_empty() {
            "nobody (no approvers are configured)".into()
        } else {
            Mrkdwn::join(parts, "; ")
        }
    }
}
