//! Exactly once per interaction: a submitted modal or a clicked button does its action once,
//! however often Slack delivers it (a network retry, a Socket Mode redelivery, a double press,
//! two replicas).
//!
//! The dispatcher claims every view submission and block action before its handler runs
//! ([`interaction_key`]): a modal by its view id, hash and submitted values (a double press or a
//! retry repeats all three; a corrected resubmission after field errors changes the values), a
//! click by its `action_ts`. Handlers whose action must happen once per *message* rather than
//! per click (a confirmation button) also call [`first_use`] with a key of their own at their
//! point of no return. Claims are rows of `interaction_claims`, taken with one `INSERT … ON
//! CONFLICT DO NOTHING`, so they hold across replicas and restarts on SQLite and PostgreSQL alike.
//! A claim whose handler failed or answered with field errors is given back, so a retry runs.
//! The job queue's purge forgets claims after a week.
//!
//! Nothing here knows a feature; no handler keeps its own "seen" table.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::payload::{Action, Interaction};
use crate::state::AppState;

/// The key one delivery of this interaction claims, if it can be identified.
pub fn interaction_key(interaction: &Interaction, action: Option<&Action>) -> Option<String> {
    match (interaction.kind.as_str(), action) {
        ("view_submission", _) => {
            let view = interaction.view.as_ref()?;
            Some(format!(
                "view:{}:{}:{}",
                view.id,
                view.hash.as_deref().unwrap_or(""),
                values_digest(&view.state.values)
            ))
        }
        ("block_actions", Some(a)) => Some(format!(
            "action:{}:{}:{}",
            interaction.user.id,
            a.action_id,
            a.action_ts.as_deref()?
        )),
        _ => None,
    }
}

/// A stable digest of a modal's submitted values (Slack's map has no order).
fn values_digest(
    values: &std::collections::HashMap<
        String,
        std::collections::HashMap<String, serde_json::Value>,
    >,
) -> String {
    let sorted: BTreeMap<&String, BTreeMap<&String, &serde_json::Value>> = values
        .iter()
        .map(|(block, actions)| (block, actions.iter().collect()))
        .collect();
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// Claim `key`: true the first time it is seen anywhere.
pub async fn claim(state: &AppState, key: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "INSERT INTO interaction_claims (claim_key, claimed_at) VALUES ($1, $2)
         ON CONFLICT (claim_key) DO NOTHING",
    )
    .bind(key)
    .bind(state.now_ms())
    .execute(state.db().pool())
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Give a claim back (its handler failed or asked for corrections), so the next delivery runs.
pub async fn release(state: &AppState, key: &str) {
    if let Err(e) = sqlx::query("DELETE FROM interaction_claims WHERE claim_key = $1")
        .bind(key)
        .execute(state.db().pool())
        .await
    {
        tracing::warn!(error = %crate::store::short_db_error(&e), "giving an interaction claim back failed; a retry of it will be ignored");
    }
}

/// A once-per-message action (a confirmation button): true the first time `key` is used.
pub async fn first_use(state: &AppState, key: &str) -> anyhow::Result<bool> {
    Ok(claim(state, &format!("once:{key}")).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submission(values: serde_json::Value) -> Interaction {
        serde_json::from_value(json!({
            "type": "view_submission",
            "user": {"id": "U1"},
            "view": {"id": "V1", "hash": "h1", "callback_id": "x", "state": {"values": values}}
        }))
        .unwrap()
    }

    #[test]
    fn a_repeated_submission_has_the_same_key_and_a_corrected_one_another() {
        let a = json!({"b1": {"a": {"type": "plain_text_input", "value": "x"}}, "b2": {"a": {"value": "y"}}});
        let same = json!({"b2": {"a": {"value": "y"}}, "b1": {"a": {"type": "plain_text_input", "value": "x"}}});
        let corrected = json!({"b1": {"a": {"type": "plain_text_input", "value": "z"}}, "b2": {"a": {"value": "y"}}});
        let key = |v| interaction_key(&submission(v), None).unwrap();
        assert_eq!(key(a.clone()), key(same));
        assert_ne!(key(a), key(corrected));
    }
}
