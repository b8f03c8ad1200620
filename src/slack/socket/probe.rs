//! `slackops check-config --probe` in Socket Mode: open one connection the way the service does,
//! wait for `hello`, close it cleanly, and say what happened. Prints neither the token nor the URL.

use serde_json::{Value, json};

use super::connection;
use crate::config::SlackSettings;
use crate::slack::api::SlackApi;

/// `{"ok": true, "hello": true, …}` or `{"ok": false, "hello": false, "error": …}`.
pub async fn probe(api: &SlackApi, settings: &SlackSettings) -> Value {
    match connection::open(api, settings).await {
        Ok(opened) => {
            let hello = opened.hello.clone();
            connection::close(opened).await;
            json!({
                "ok": true,
                "hello": true,
                "app_id": hello.app_id,
                "num_connections": hello.num_connections,
            })
        }
        Err(e) => {
            let mut v = json!({"ok": false, "hello": false, "error": e.to_string()});
            if e.is_configuration() {
                v["fix"] = json!(
                    "slack.app_token (env SLACKOPS_SLACK__APP_TOKEN or slack.app_token_file): an app-level token (xapp-…) with the connections:write scope, for an app with Socket Mode enabled"
                );
            }
            v
        }
    }
}
