//! Grafana annotations (`notifiers.grafana`) against a fake Grafana annotations API
//! (tests/support/fake_grafana.rs): an outage's region from its start with its end set on resolve,
//! a point per update, a maintenance window's region kept in step and removed when canceled;
//! retried after failures, and never a second annotation, even when Grafana's answer to a create
//! is lost.

use std::time::Duration;

use serde_json::{Value, json};
use slackops::config::Secret;
use slackops::notifiers::settings::GrafanaSettings;

use crate::announcements::{api, api_body, builder, workspace};
use crate::helpers::{TestApp, TestDb, eventually};
use crate::support::fake_grafana::FakeGrafana;

const TOKEN: &str = "glsa_test_token";
const WAIT: Duration = Duration::from_secs(20);

async fn grafana_app(db: TestDb, grafana: &FakeGrafana, dashboard: Option<&str>) -> TestApp {
    let url = grafana.url.clone();
    let dashboard = dashboard.map(str::to_owned);
    let app = builder(db)
        .await
        .settings(move |s| {
            s.notifiers.grafana = vec![GrafanaSettings {
                url: Some(url.parse().unwrap()),
                token: Secret::new(TOKEN),
                tags: vec!["slackops".into()],
                dashboard_uid: dashboard,
            }];
            s.jobs.backoff_base_ms = 50;
            s.jobs.backoff_max_ms = 200;
        })
        .spawn()
        .await;
    workspace(&app);
    app
}

fn tags(a: &Value) -> Vec<String> {
    a["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM grafana_annotations")
        .fetch_one(app.state.db().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_outage_is_one_region_closed_on_resolve_with_a_point_per_update_even_after_failures() {
    for db in TestDb::all("grafana_outage_region").await {
        let grafana = FakeGrafana::start(TOKEN).await;
        // The first create is stored by Grafana but its answer is lost; then two 500s.
        grafana.lose_next_create();
        let app = grafana_app(db, &grafana, None).await;
        let (status, o) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/announcements",
            Some(api_body("2h")),
        )
        .await;
        assert_eq!(status, 201, "{o}");
        let id = o["id"].as_str().unwrap().to_string();
        let started_at = o["started_at"].as_i64().unwrap();
        let region = eventually(WAIT, "the outage's region, its id stored", || async {
            (stored(&app).await == 1).then(|| grafana.annotations())
        })
        .await;
        assert_eq!(
            region.len(),
            1,
            "the lost create was found again, not repeated: {region:?}"
        );
        let region_id = region[0]["id"].as_i64().unwrap();
        assert_eq!(region[0]["time"], started_at);
        assert_eq!(region[0]["text"], "Outage: Search returns nothing");
        let t = tags(&region[0]);
        for want in [
            "slackops",
            "search",
            "critical",
            &format!("slackops:outage:{id}"),
        ] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }

        // An update is a point annotation; a failure on the way is retried.
        grafana.fail_next(2);
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/announcements/{id}"),
            Some(json!({"eta": "8h", "reason": "rebuilding the index"})),
        )
        .await;
        assert_eq!(status, 200);
        let points = eventually(WAIT, "the update's point", || async {
            let all = grafana.annotations();
            (all.len() == 2 && stored(&app).await == 2).then_some(all)
        })
        .await;
        let point = points.iter().find(|a| a["id"] != region_id).unwrap();
        assert_eq!(point["time"], point["timeEnd"], "a point");
        assert!(
            point["text"]
                .as_str()
                .unwrap()
                .starts_with("Outage updated")
        );
        assert!(tags(point).iter().any(|t| t == "critical"));

        // Resolving sets the region's end with a PATCH of the same annotation.
        let (status, r) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/announcements/{id}"),
            Some(json!({"state": "resolved",
                        "resolution": {"summary": "index rebuilt", "postmortem": false}})),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        let resolved_at = r["resolved_at"].as_i64().unwrap();
        let region = eventually(WAIT, "the region's end", || async {
            grafana
                .annotations()
                .into_iter()
                .find(|a| a["id"] == region_id && a["timeEnd"] == resolved_at)
        })
        .await;
        assert_eq!(region["time"], started_at, "from its start");
        assert!(resolved_at > started_at);
        let requests = grafana.requests();
        assert!(
            requests.contains(&format!("PATCH /api/annotations/{region_id}")),
            "{requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(grafana.annotations().len(), 2, "never a second region");
        let creates = requests
            .iter()
            .filter(|r| *r == "POST /api/annotations")
            .count();
        assert!(
            creates <= 3,
            "one lost create, the point's, and a retried one: {requests:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_maintenance_window_is_a_region_kept_in_step_and_removed_when_canceled() {
    for db in TestDb::all("grafana_maintenance_region").await {
        let grafana = FakeGrafana::start(TOKEN).await;
        let app = grafana_app(db, &grafana, Some("ops-overview")).await;
        let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
        let rfc = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let (start, end) = (now + 3_600_000, now + 7_200_000);
        let (status, m) = api(
            &app,
            reqwest::Method::POST,
            "/api/v1/maintenances",
            Some(json!({"title": "Kernel patching", "systems": ["payments"],
                        "starts_at": rfc(start), "ends_at": rfc(end), "public": true})),
        )
        .await;
        assert_eq!(status, 201, "{m}");
        let id = m["id"].as_str().unwrap().to_string();
        let region = eventually(WAIT, "the window's region", || async {
            grafana.annotations().into_iter().next()
        })
        .await;
        assert_eq!(
            (region["time"].as_i64(), region["timeEnd"].as_i64()),
            (Some(start), Some(end))
        );
        assert_eq!(region["dashboardUID"], "ops-overview");
        assert_eq!(region["text"], "Maintenance: Kernel patching");
        let t = tags(&region);
        assert!(t.contains(&"payments".to_string()) && t.contains(&"maintenance".to_string()));

        // Moved: the same annotation follows.
        let later = end + 1_800_000;
        let (status, _) = api(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/maintenances/{id}"),
            Some(json!({"ends_at": rfc(later)})),
        )
        .await;
        assert_eq!(status, 200);
        eventually(WAIT, "the region's new end", || async {
            let all = grafana.annotations();
            (all.len() == 1 && all[0]["timeEnd"] == later).then_some(())
        })
        .await;

        // Canceled: the window never happened, so its region goes.
        let (status, _) = api(
            &app,
            reqwest::Method::POST,
            &format!("/api/v1/maintenances/{id}/cancel"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        eventually(WAIT, "the region removed", || async {
            (grafana.annotations().is_empty() && stored(&app).await == 0).then_some(())
        })
        .await;
        app.stop().await;
    }
}
