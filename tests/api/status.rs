//! The public status page: what `/status`, `/status.json` and `/status/feed.atom` show, that they
//! escape what people wrote, that they answer 503 before the first snapshot, and that they keep
//! serving the last snapshot (and say how old it is) while the database is down. Outages are
//! inserted with SQL, as the announcements feature stores them
//! (migrations/20261121000005_announcements.sql).

use std::time::Duration;

use serde_json::{Value, json};
use slackops::config::SystemEntry;
use tower::ServiceExt;

use crate::helpers::{Engine, POSTGRES_ENV, TestApp, TestAppBuilder, TestDb, eventually};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

pub fn catalogue() -> Vec<SystemEntry> {
    let s = |id: &str, name: &str, group: Option<&str>| SystemEntry {
        id: id.into(),
        name: name.into(),
        group: group.map(str::to_owned),
    };
    vec![
        s("api", "Public API", Some("Platform")),
        s("db", "Database", Some("Platform")),
        s("web", "Web <shop> & \"cart\"", Some("Shop")),
        s("search", "Search", None),
    ]
}

/// A test service with the catalogue and a quick snapshot refresh.
pub async fn status_app(db: TestDb) -> TestApp {
    TestAppBuilder::new(db)
        .await
        .settings(|s| {
            s.announcements.systems = catalogue();
            s.status.refresh_interval_ms = 100;
            s.status.title = "Acme <status>".into();
        })
        .spawn()
        .await
}

pub struct OutageRow<'a> {
    pub id: &'a str,
    pub summary: &'a str,
    pub systems: &'a [&'a str],
    pub severity: &'a str,
    pub state: &'a str,
    pub public: bool,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
}

/// Insert an outage the way the announcements feature stores one.
pub async fn insert_outage(app: &TestApp, o: &OutageRow<'_>) {
    let systems = serde_json::to_string(o.systems).unwrap();
    sqlx::query(
        "INSERT INTO outages (id, summary, systems, impact, severity, eta, eta_set_at,
             resolution_assignee, communication_assignee, public, state, announced_by, started_at,
             resolved_at, resolution, channel, message_ts, permalink, incident_channel,
             last_update_at, version, created_at, updated_at)
         VALUES ($1, $2, $3, '{}', $4, '2h', $5, 'U0RES', 'U0COM', $6, $7, 'U0ANN', $5, $8, NULL,
             NULL, NULL, NULL, NULL, $5, 1, $5, $9)",
    )
    .bind(o.id)
    .bind(o.summary)
    .bind(systems)
    .bind(o.severity)
    .bind(o.started_at)
    .bind(i64::from(o.public))
    .bind(o.state)
    .bind(o.resolved_at)
    .bind(o.resolved_at.unwrap_or(o.started_at))
    .execute(app.state.db().pool())
    .await
    .expect("insert outage");
}

pub async fn insert_history(app: &TestApp, outage: &str, seq: i64, at: i64, reason: Option<&str>) {
    sqlx::query(
        "INSERT INTO outage_history (id, outage_id, seq, at, by_user, kind, changes, reason, snapshot)
         VALUES ($1, $2, $3, $4, 'U0ANN', 'updated', '[]', $5, '{}')",
    )
    .bind(format!("{outage}-{seq}"))
    .bind(outage)
    .bind(seq)
    .bind(at)
    .bind(reason)
    .execute(app.state.db().pool())
    .await
    .expect("insert history");
}

/// Insert a maintenance window directly (for windows in the past, which the API refuses).
pub async fn insert_maintenance(
    app: &TestApp,
    id: &str,
    title: &str,
    systems: &[&str],
    starts_at: i64,
    ends_at: i64,
    public: bool,
) {
    sqlx::query(
        "INSERT INTO maintenances (id, title, summary, systems, starts_at, ends_at, public, state,
             created_by, canceled_at, announced_start, announced_end, channel, message_ts, version,
             created_at, updated_at)
         VALUES ($1, $2, '', $3, $4, $5, $6, 'scheduled', 'api', NULL, 1, 1, NULL, NULL, 1, $4, $4)",
    )
    .bind(id)
    .bind(title)
    .bind(serde_json::to_string(systems).unwrap())
    .bind(starts_at)
    .bind(ends_at)
    .bind(i64::from(public))
    .execute(app.state.db().pool())
    .await
    .expect("insert maintenance");
}

pub async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// Wait until the page's JSON satisfies `f`.
pub async fn json_until(app: &TestApp, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(10), what, || async {
        let (status, body) = page(app, "/status.json").await;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && f(&v)).then_some(v)
    })
    .await
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The scenario every content test uses: an open outage with an update (and hostile text), a
/// private outage, a resolved outage inside and one outside the history, a maintenance window in
/// progress, an upcoming one and a finished one.
pub async fn seed(app: &TestApp) {
    let now = now_ms();
    insert_outage(
        app,
        &OutageRow {
            id: "o-open",
            summary: "Checkout <script>alert(1)</script> fails & \"times out\"",
            systems: &["web", "api"],
            severity: "critical",
            state: "open",
            public: true,
            started_at: now - 30 * MIN,
            resolved_at: None,
        },
    )
    .await;
    insert_history(app, "o-open", 1, now - 30 * MIN, None).await;
    insert_history(
        app,
        "o-open",
        2,
        now - 20 * MIN,
        Some("First look: the <b>database</b>"),
    )
    .await;
    insert_history(
        app,
        "o-open",
        3,
        now - 10 * MIN,
        Some("Failing over to the replica"),
    )
    .await;
    insert_history(app, "o-open", 4, now - 5 * MIN, None).await;
    insert_outage(
        app,
        &OutageRow {
            id: "o-private",
            summary: "Internal build farm is slow",
            systems: &["search"],
            severity: "major",
            state: "open",
            public: false,
            started_at: now - HOUR,
            resolved_at: None,
        },
    )
    .await;
    insert_outage(
        app,
        &OutageRow {
            id: "o-resolved",
            summary: "Search results were stale",
            systems: &["search"],
            severity: "minor",
            state: "resolved",
            public: true,
            started_at: now - 3 * DAY,
            resolved_at: Some(now - 3 * DAY + 90 * MIN),
        },
    )
    .await;
    insert_outage(
        app,
        &OutageRow {
            id: "o-old",
            summary: "Ancient outage",
            systems: &["api"],
            severity: "major",
            state: "resolved",
            public: true,
            started_at: now - 20 * DAY,
            resolved_at: Some(now - 20 * DAY + HOUR),
        },
    )
    .await;
    insert_maintenance(
        app,
        "m-now",
        "Database upgrade",
        &["db"],
        now - HOUR,
        now + HOUR,
        true,
    )
    .await;
    insert_maintenance(
        app,
        "m-next",
        "Search reindex",
        &["search"],
        now + DAY,
        now + DAY + 2 * HOUR,
        true,
    )
    .await;
    insert_maintenance(
        app,
        "m-done",
        "Network switch replacement",
        &["api"],
        now - 2 * DAY,
        now - 2 * DAY + HOUR,
        true,
    )
    .await;
    insert_maintenance(
        app,
        "m-private",
        "Secret work",
        &["api"],
        now - HOUR,
        now + HOUR,
        false,
    )
    .await;
    app.state.status().refresh_soon();
}

fn seeded(v: &Value) -> bool {
    v["outages"].as_array().is_some_and(|a| !a.is_empty())
        && v["history"].as_array().is_some_and(|a| a.len() >= 2)
}

#[tokio::test]
async fn status_json_shows_each_system_open_public_outages_maintenance_and_fourteen_days_of_history()
 {
    for db in TestDb::all("status_json_shows_each_system").await {
        let engine = db.engine;
        let app = status_app(db).await;
        seed(&app).await;
        let v = json_until(&app, "the seeded snapshot", seeded).await;

        assert_eq!(v["title"], "Acme <status>", "{engine:?}");
        assert_eq!(v["overall"]["state"], "major_outage");
        assert_eq!(v["snapshot"]["stale"], false);
        // Systems, grouped as configured, with the worst state that applies.
        let groups = v["groups"].as_array().unwrap();
        let names: Vec<Value> = groups.iter().map(|g| g["name"].clone()).collect();
        assert_eq!(names, vec![json!("Platform"), json!("Shop"), Value::Null]);
        let state_of = |id: &str| {
            groups
                .iter()
                .flat_map(|g| g["systems"].as_array().unwrap())
                .find(|s| s["id"] == id)
                .map(|s| s["state"].as_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(state_of("api"), "major_outage");
        assert_eq!(state_of("web"), "major_outage");
        assert_eq!(state_of("db"), "maintenance");
        assert_eq!(
            state_of("search"),
            "operational",
            "the private outage does not count"
        );

        // Only the public open outage, with its latest update (the newest row with a reason).
        let outages = v["outages"].as_array().unwrap();
        assert_eq!(outages.len(), 1, "{outages:?}");
        assert_eq!(outages[0]["id"], "o-open");
        assert_eq!(
            outages[0]["latest_update"]["text"],
            "Failing over to the replica"
        );
        assert_eq!(outages[0]["systems"][0]["name"], "Web <shop> & \"cart\"");

        // Maintenance: in progress and upcoming, public only.
        let ids = |p: &str| -> Vec<String> {
            v.pointer(p)
                .and_then(Value::as_array)
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("/maintenance/in_progress"), vec!["m-now"]);
        assert_eq!(ids("/maintenance/upcoming"), vec!["m-next"]);
        // History: the last 14 days, newest first; the 20-day-old outage is gone.
        assert_eq!(ids("/history"), vec!["m-done", "o-resolved"]);
        assert_eq!(v["history"][1]["type"], "outage");
        assert_eq!(v["history_days"], 14);
        app.stop().await;
    }
}

#[tokio::test]
async fn status_page_is_readable_html_that_escapes_what_people_wrote() {
    let app = status_app(TestDb::sqlite()).await;
    seed(&app).await;
    json_until(&app, "the seeded snapshot", seeded).await;
    let r = app.get("/status").await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"),
        "no script may run on the page"
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
    assert!(!html.contains("<script"), "no script, and none smuggled in");
    assert!(html.contains(
        "Checkout &lt;script&gt;alert(1)&lt;/script&gt; fails &amp; &quot;times out&quot;"
    ));
    assert!(html.contains("Failing over to the replica"));
    assert!(
        !html.contains("First look"),
        "only the latest update is shown"
    );
    assert!(html.contains("Web &lt;shop&gt; &amp; &quot;cart&quot;"));
    assert!(html.contains("<title>Acme &lt;status&gt;</title>"));
    assert!(html.contains("Major outage"));
    assert!(html.contains("Database upgrade") && html.contains("In progress"));
    assert!(html.contains("Search reindex") && html.contains("Upcoming"));
    assert!(html.contains("Network switch replacement") && html.contains("Completed maintenance"));
    assert!(html.contains("Search results were stale") && html.contains("Resolved"));
    assert!(html.contains("Past 14 days"));
    for hidden in ["Internal build farm", "Secret work"] {
        assert!(!html.contains(hidden), "{hidden} must not be shown");
    }
    // Beyond the 14 days of history, the old outage is only in its day bar's tooltip.
    let history = &html[html.find("<section id=\"history\">").unwrap()..];
    assert!(!history.contains("Ancient outage"));
    assert!(html.contains("; outage: Ancient outage (partial outage)"));
    assert!(
        !html.contains("id=\"stale\""),
        "fresh data carries no warning"
    );
    app.stop().await;
}

#[tokio::test]
async fn atom_feed_carries_the_same_entries_escaped() {
    let app = status_app(TestDb::sqlite()).await;
    seed(&app).await;
    json_until(&app, "the seeded snapshot", seeded).await;
    let r = app.get("/status/feed.atom").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/atom+xml")
    );
    let xml = r.text().await.unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"));
    assert!(xml.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    assert_eq!(
        xml.matches("<entry>").count(),
        5,
        "open outage, 2 maintenance, 2 history: {xml}"
    );
    assert!(xml.contains("<title>Outage: Checkout &lt;script&gt;alert(1)&lt;/script&gt; fails &amp; &quot;times out&quot;</title>"));
    assert!(xml.contains("Scheduled maintenance: Search reindex"));
    assert!(xml.contains("Maintenance in progress: Database upgrade"));
    assert!(xml.contains("Resolved: Search results were stale"));
    assert!(xml.contains("Completed maintenance: Network switch replacement"));
    assert!(!xml.contains("<script") && !xml.contains("Secret work"));
    // The feed links back to the page on the host it was asked through.
    assert!(xml.contains(&format!("href=\"http://127.0.0.1:{}/status\"", app.port)));
    app.stop().await;
}

#[tokio::test]
async fn status_answers_503_with_a_clear_message_before_any_snapshot_loaded() {
    // A built service whose refresher has not run: the router alone, as before the first load.
    let db = TestDb::sqlite();
    let builder = TestAppBuilder::new(db).await;
    let built = slackops::startup::Application::builder(builder.settings.clone())
        .without_worker()
        .without_periodic()
        .build()
        .await
        .expect("builds");
    for (path, kind) in [
        ("/status", "text/html"),
        ("/status.json", "application/json"),
        ("/status/feed.atom", "text/plain"),
    ] {
        let router = slackops::startup::router(built.state().clone());
        let resp = router
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        assert_eq!(resp.headers()["retry-after"], "5");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("has not been loaded from the database yet"),
            "{path}: {text}"
        );
    }
}

/// Make the database unreachable under a running service: on PostgreSQL the database is dropped
/// (its connections terminated), on SQLite the service's pool is closed.
async fn take_database_down(app: &TestApp) {
    match app.db.engine {
        Engine::Postgres => {
            use sqlx::Connection;
            let admin = std::env::var(POSTGRES_ENV).unwrap();
            let name = url::Url::parse(&app.db.url)
                .unwrap()
                .path()
                .trim_start_matches('/')
                .to_string();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
        }
        Engine::Sqlite => app.state.db().pool().close().await,
    }
}

#[tokio::test]
async fn status_page_keeps_serving_the_last_snapshot_while_the_database_is_down_and_says_how_old_it_is()
 {
    for db in TestDb::all("status_page_while_the_database_is_down").await {
        let engine = db.engine;
        let app = status_app(db).await;
        seed(&app).await;
        json_until(&app, "the seeded snapshot", seeded).await;

        take_database_down(&app).await;
        assert!(
            app.state.db().readiness().await.is_err(),
            "{engine:?}: the database really is unreachable"
        );

        // The page keeps answering from the last snapshot and says it is out of date.
        let v = json_until(&app, "a stale snapshot at least a second old", |v| {
            v["snapshot"]["stale"] == true && v["snapshot"]["age_seconds"].as_i64() >= Some(1)
        })
        .await;
        assert!(v["snapshot"]["refresh_failing_since"].is_string());
        assert_eq!(v["outages"][0]["id"], "o-open", "{engine:?}");
        assert_eq!(v["maintenance"]["in_progress"][0]["id"], "m-now");

        let (status, html) = page(&app, "/status").await;
        assert_eq!(status, 200, "{engine:?}");
        assert!(
            html.contains("id=\"stale\""),
            "{engine:?}: a banner says so"
        );
        assert!(html.contains("cannot reach its database"));
        assert!(
            html.contains(" ago)"),
            "{engine:?}: and how old the data is: {html}"
        );
        assert!(
            html.contains("Failing over to the replica"),
            "the last snapshot is shown"
        );
        let (status, xml) = page(&app, "/status/feed.atom").await;
        assert_eq!(status, 200);
        assert!(xml.contains("Database upgrade"));

        // It keeps answering quickly: no request waits on the database.
        let started = std::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(page(&app, "/status").await.0, 200);
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn maintenance_scheduled_through_the_api_shows_on_the_status_page_without_waiting_for_the_refresh()
 {
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(|s| {
            s.announcements.systems = catalogue();
            // Far longer than the test: only the refresh after the change can show it.
            s.status.refresh_interval_ms = 600_000;
        })
        .spawn()
        .await;
    json_until(&app, "the first snapshot", |_| true).await;
    let start = chrono::Utc::now() + chrono::Duration::hours(2);
    let end = start + chrono::Duration::hours(1);
    let r = app
        .client
        .post(app.url("/api/v1/maintenances"))
        .bearer_auth(crate::helpers::API_TOKEN)
        .json(&serde_json::json!({
            "title": "Kernel patching", "systems": ["api"],
            "starts_at": start.to_rfc3339(), "ends_at": end.to_rfc3339()
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v = json_until(&app, "the new window on the page", |v| {
        v["maintenance"]["upcoming"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(v["maintenance"]["upcoming"][0]["title"], "Kernel patching");
    app.stop().await;
}

/// The Chromium binary: `SLACKOPS_TEST_CHROMIUM`, else Debian's `chromium` package.
pub fn chromium() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("SLACKOPS_TEST_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Run headless Chromium on `url` with `args`; returns stdout.
pub async fn run_chromium(
    bin: &std::path::Path,
    profile: &std::path::Path,
    args: &[&str],
    url: &str,
) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within 90 s")
    .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text a person reads in one `<section id=…>` of the rendered DOM (tags stripped,
/// entities decoded, whitespace collapsed).
pub fn section_text(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id} in the page"));
    let end = dom[start..]
        .find("</section>")
        .map(|e| start + e)
        .unwrap_or(dom.len());
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn in_headless_chromium_a_person_sees_the_open_outage_the_maintenance_window_and_the_resolved_one()
 {
    let Some(bin) = chromium() else {
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium; .ci/run does)");
        return;
    };
    let app = status_app(TestDb::sqlite()).await;
    seed(&app).await;
    json_until(&app, "the seeded snapshot", seeded).await;
    let profile = tempfile::tempdir().unwrap();
    let url = app.url("/status");

    // A phone-sized window: what Chromium rendered, as a person reads it.
    let dom = run_chromium(
        &bin,
        profile.path(),
        &["--window-size=390,844", "--dump-dom"],
        &url,
    )
    .await;
    let incidents = section_text(&dom, "incidents");
    assert!(
        incidents.contains("Checkout <script>alert(1)</script> fails & \"times out\""),
        "the open outage, its text shown as written and not run: {incidents}"
    );
    assert!(incidents.contains("Major outage"));
    assert!(
        incidents.contains("Latest update") && incidents.contains("Failing over to the replica")
    );
    let maintenance = section_text(&dom, "maintenance");
    assert!(
        maintenance.contains("In progress Database"),
        "{maintenance}"
    );
    assert!(maintenance.contains("Database upgrade") && maintenance.contains("Search reindex"));
    let history = section_text(&dom, "history");
    assert!(
        history.contains("Search results were stale") && history.contains("Resolved"),
        "{history}"
    );
    assert!(history.contains("Network switch replacement"));
    assert!(
        !dom.contains("Internal build farm"),
        "private outages stay private"
    );
    let systems = section_text(&dom, "systems");
    assert!(systems.contains("Public API Major outage"), "{systems}");
    assert!(systems.contains("Database Under maintenance"));
    assert!(systems.contains("Search Operational"));

    // And it renders: a screenshot at phone size (kept when SLACKOPS_TEST_SCREENSHOT names a path).
    let shot = profile.path().join("status.png");
    run_chromium(
        &bin,
        profile.path(),
        &[
            "--window-size=390,1400",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("SLACKOPS_TEST_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    app.stop().await;
}

// ------------------------------------------------------------------------------ uptime history

/// 2026-12-07T12:00:00Z: 13:00 on Monday 2026-12-07 in the `+01:00` zone the uptime tests use.
const UPTIME_NOW: i64 = 1_796_644_800_000;

fn at(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// A service at [`UPTIME_NOW`] showing times at `+01:00`, with 90 days of bars and 14 of history.
async fn uptime_app(db: TestDb) -> TestApp {
    let clock = slackops::clock::ManualClock::at_secs(UPTIME_NOW / 1000);
    TestAppBuilder::new(db)
        .await
        .clock(std::sync::Arc::new(clock))
        .settings(|s| {
            s.announcements.systems = catalogue();
            s.status.refresh_interval_ms = 100;
            s.status.time_zone = "+01:00".into();
            s.status.time_zone_label = Some("CET".into());
        })
        .spawn()
        .await
}

fn resolved<'a>(
    id: &'a str,
    systems: &'a [&'a str],
    severity: &'a str,
    from: &str,
    to: &str,
) -> OutageRow<'a> {
    OutageRow {
        id,
        summary: id,
        systems,
        severity,
        state: "resolved",
        public: true,
        started_at: at(from),
        resolved_at: Some(at(to)),
    }
}

/// Crafted history: a critical outage across local midnight (23:00 on 12-04 to 01:00 on 12-05
/// at +01:00, all on 12-04 in UTC); 40 days ago, beyond the 14 days of history, a partial outage
/// 10:00–14:00 with a critical one 12:00–13:00 inside it; a maintenance window and a degraded
/// spell on other systems; a private outage that must not count.
async fn seed_uptime(app: &TestApp, with_cross_midnight: bool) {
    // The refresher reads outages, then windows, without one transaction: insert the window
    // first and the outage `uptime_loaded` waits for last, so once it shows, everything does.
    insert_maintenance(
        app,
        "m-db",
        "Database upgrade",
        &["db"],
        at("2026-12-04T01:00:00Z"),
        at("2026-12-04T03:00:00Z"),
        true,
    )
    .await;
    let mut private = resolved(
        "o-hidden",
        &["web"],
        "critical",
        "2026-12-01T08:00:00Z",
        "2026-12-01T10:00:00Z",
    );
    private.public = false;
    insert_outage(app, &private).await;
    if with_cross_midnight {
        let o = resolved(
            "o-cross",
            &["api"],
            "critical",
            "2026-12-04T22:00:00Z",
            "2026-12-05T00:00:00Z",
        );
        insert_outage(app, &o).await;
    }
    for o in [
        resolved(
            "o-partial",
            &["api"],
            "major",
            "2026-10-28T09:00:00Z",
            "2026-10-28T13:00:00Z",
        ),
        resolved(
            "o-inside",
            &["api"],
            "critical",
            "2026-10-28T11:00:00Z",
            "2026-10-28T12:00:00Z",
        ),
        resolved(
            "o-slow",
            &["search"],
            "minor",
            "2026-12-05T08:00:00Z",
            "2026-12-05T10:00:00Z",
        ),
    ] {
        insert_outage(app, &o).await;
    }
}

fn system<'v>(v: &'v Value, id: &str) -> &'v Value {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["systems"].as_array().unwrap())
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no system {id}"))
}

fn day<'v>(system: &'v Value, date: &str) -> &'v Value {
    system["uptime"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == date)
        .unwrap_or_else(|| panic!("no day {date}"))
}

/// The crafted history has loaded: the outage inserted last is in the snapshot.
fn uptime_loaded(v: &Value) -> bool {
    day(system(v, "search"), "2026-12-05")["state"] == "degraded"
}

#[tokio::test]
async fn status_json_gives_each_system_ninety_days_of_worst_states_and_the_uptime_by_the_stated_rule()
 {
    for db in TestDb::all("status_json_uptime").await {
        let engine = db.engine;
        let app = uptime_app(db).await;
        seed_uptime(&app, true).await;
        let v = json_until(&app, "the crafted history", uptime_loaded).await;

        assert_eq!(v["uptime"]["days"], 90, "{engine:?}");
        assert_eq!(v["uptime"]["time_zone"], "CET");
        assert!(v["uptime"]["rule"].as_str().unwrap().contains("half"));
        let api = system(&v, "api");
        let days = api["uptime"]["history"].as_array().unwrap();
        assert_eq!(days.len(), 90);
        assert_eq!(days[0]["date"], "2026-09-09", "oldest first");
        assert_eq!(days[89]["date"], "2026-12-07", "today, in the zone");

        // The outage across local midnight colours both local days, each with its hour.
        for date in ["2026-12-04", "2026-12-05"] {
            let d = day(api, date);
            assert_eq!(d["state"], "major_outage", "{date}");
            assert_eq!(d["uptime_percent"], 95.83, "23 of 24 hours up on {date}");
            assert_eq!(d["events"][0]["id"], "o-cross");
        }
        assert_eq!(day(api, "2026-12-06")["state"], "operational");
        assert_eq!(day(api, "2026-12-06")["events"], json!([]));

        // Overlapping outages 40 days ago (beyond the 14 days of history, still in the bars):
        // 1 h major + 3 h partial (half) = 2.5 h down.
        let d = day(api, "2026-10-28");
        assert_eq!(d["state"], "major_outage");
        assert_eq!(d["uptime_percent"], 89.58);
        assert_eq!(d["events"].as_array().unwrap().len(), 2);
        let history: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert!(!history.contains(&"o-partial"), "{history:?}");

        // 4.5 h down out of 89 days and 13 h: 99.79 % (truncated).
        assert_eq!(api["uptime"]["percent"], 99.79);

        // Maintenance and degraded colour their day but count as up; private outages not at all.
        let db_sys = system(&v, "db");
        assert_eq!(day(db_sys, "2026-12-04")["state"], "maintenance");
        assert_eq!(
            day(db_sys, "2026-12-04")["events"][0]["title"],
            "Database upgrade"
        );
        assert_eq!(db_sys["uptime"]["percent"], 100.0);
        let search = system(&v, "search");
        assert_eq!(day(search, "2026-12-05")["state"], "degraded");
        assert_eq!(search["uptime"]["percent"], 100.0);
        let web = system(&v, "web");
        assert_eq!(day(web, "2026-12-01")["state"], "operational");
        assert_eq!(web["uptime"]["percent"], 100.0);
        app.stop().await;
    }
}

/// The `<li>` of one system on the page.
fn system_item<'h>(html: &'h str, id: &str) -> &'h str {
    let start = html
        .find(&format!("<li id=\"system-{id}\">"))
        .unwrap_or_else(|| panic!("no system {id} on the page"));
    let end = html[start..].find("</p>\n</li>").unwrap() + start;
    &html[start..end]
}

#[tokio::test]
async fn status_page_draws_the_day_bars_with_tooltips_labels_and_the_rule_without_script() {
    let app = uptime_app(TestDb::sqlite()).await;
    seed_uptime(&app, true).await;
    json_until(&app, "the crafted history", uptime_loaded).await;
    let r = app.get("/status").await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(html.contains(
        "Uptime counts a major outage as down, a partial outage as half down, and degraded \
         performance and maintenance as up."
    ));

    let api = system_item(&html, "api");
    assert_eq!(api.matches("<li class=").count(), 90, "{api}");
    let label = "Sat 2026-12-05: Major outage; outage: o-cross (major outage); 95.83% uptime";
    assert!(
        api.contains(&format!(
            "<li class=\"critical\" title=\"{label}\" aria-label=\"{label}\"></li>"
        )),
        "{api}"
    );
    assert!(api.contains(
        "title=\"Wed 2026-10-28: Major outage; outage: o-partial (partial outage); outage: \
         o-inside (major outage); 89.58% uptime\""
    ));
    assert!(api.contains(
        "<li class=\"ok\" title=\"Sun 2026-12-06: Operational; no outages; 100% uptime\""
    ));
    assert!(api.contains("99.79% uptime over 90 days"), "{api}");
    assert!(api.contains("90 days ago") && api.contains("30 days ago"));
    let db = system_item(&html, "db");
    assert!(db.contains("<li class=\"maint\" title=\"Fri 2026-12-04: Under maintenance; maintenance: Database upgrade; 100% uptime\""), "{db}");
    assert!(db.contains("100% uptime over 90 days"));
    // The bars are coloured by CSS classes, and narrow screens keep only the last 30.
    assert!(html.contains("ol.bars li:nth-last-child(n+31){display:none}"));
    app.stop().await;
}

/// Pixels of `png` within 3 of `rgb` in every channel.
fn pixels_of(png_bytes: &[u8], rgb: [u8; 3]) -> usize {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks_exact(step)
        .filter(|p| step >= 3 && p[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 3))
        .count()
}

#[tokio::test]
async fn in_headless_chromium_the_uptime_bars_show_ninety_days_on_a_desktop_and_thirty_on_a_phone()
{
    let Some(bin) = chromium() else {
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium; .ci/run does)");
        return;
    };
    let app = uptime_app(TestDb::sqlite()).await;
    // Only the day 40 days ago is red (major outage); 12-05 is degraded (amber) on Search.
    seed_uptime(&app, false).await;
    json_until(&app, "the crafted history", uptime_loaded).await;
    let profile = tempfile::tempdir().unwrap();
    let url = app.url("/status");

    let dom = run_chromium(
        &bin,
        profile.path(),
        &["--window-size=390,844", "--dump-dom"],
        &url,
    )
    .await;
    let systems = section_text(&dom, "systems");
    assert!(
        systems.contains("Public API Operational") && systems.contains("uptime over 90 days"),
        "{systems}"
    );
    assert!(systems.contains("99.88% uptime over 90 days"), "{systems}");

    let red = [0xcf, 0x22, 0x2e];
    let amber = [0x9a, 0x67, 0x00];
    let mut shots = Vec::new();
    for (name, size) in [("desktop", "1280,1600"), ("phone", "390,1600")] {
        let shot = profile.path().join(format!("{name}.png"));
        run_chromium(
            &bin,
            profile.path(),
            &[
                &format!("--window-size={size}"),
                "--force-device-scale-factor=1",
                &format!("--screenshot={}", shot.display()),
            ],
            &url,
        )
        .await;
        let png = std::fs::read(&shot).expect("a screenshot was written");
        if let Ok(dir) = std::env::var("SLACKOPS_TEST_SCREENSHOT_DIR") {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("uptime-{name}.png")),
                &png,
            )
            .unwrap();
        }
        shots.push((name, pixels_of(&png, red), pixels_of(&png, amber)));
    }
    let (_, desktop_red, desktop_amber) = shots[0];
    let (_, phone_red, phone_amber) = shots[1];
    assert!(
        desktop_red > 50,
        "the red day 40 days ago shows on a desktop: {shots:?}"
    );
    assert!(desktop_amber > 50, "{shots:?}");
    assert_eq!(
        phone_red, 0,
        "a phone shows only the last 30 days: {shots:?}"
    );
    assert!(
        phone_amber > 50,
        "the degraded day 2 days ago shows on a phone: {shots:?}"
    );
    app.stop().await;
}
