//! Email subscriptions to the status page, black-box: the form on `/status`, double opt-in,
//! notices of public outages and maintenance for the subscriber's systems only, one-click
//! unsubscribe (RFC 8058), the abuse limits and the CSRF token, and SMTP retries, against a local
//! SMTP sink (tests/support/fake_smtp.rs), on SQLite and (when configured) PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use slackops::announcements::changes::{self, Change, Kind};
use slackops::announcements::model::{Fields, Outage, Resolution};
use slackops::maintenance::model::Draft;
use slackops::secret::Secret;

use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::status::catalogue;
use crate::support::fake_smtp::{FakeSmtp, Mail};

const PUBLIC: &str = "http://status.acme.test/status";
const SECRET: &str = "test-subscriptions-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);

async fn sub_app(
    db: TestDb,
    smtp: &FakeSmtp,
    tweak: impl FnOnce(&mut slackops::config::Settings),
) -> TestApp {
    let url = smtp.url();
    TestAppBuilder::new(db)
        .await
        .settings(|s| {
            s.announcements.systems = catalogue();
            s.status.refresh_interval_ms = 100;
            s.status.title = "Acme status".into();
            s.status.public_url = Some(PUBLIC.parse().unwrap());
            s.status.smtp.url = Secret::new(url);
            s.status.smtp.from = "Acme Status <status@acme.test>".into();
            s.status.smtp.timeout_ms = 3000;
            s.status.subscriptions.secret = Secret::new(SECRET);
            tweak(s);
        })
        .spawn()
        .await
}

/// The CSRF token of the form on `/status`.
async fn form_token(app: &TestApp) -> String {
    let html = eventually(WAIT, "the status page", || async {
        let r = app.get("/status").await;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

async fn post_form(app: &TestApp, pairs: &[(&str, &str)]) -> (u16, String) {
    let body = serde_urlencoded::to_string(pairs).unwrap();
    let r = app
        .client
        .post(app.url("/status/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn subscribe(app: &TestApp, token: &str, email: &str, systems: &[&str]) -> (u16, String) {
    let mut pairs = vec![("csrf", token), ("email", email)];
    for s in systems {
        pairs.push(("systems", s));
    }
    post_form(app, &pairs).await
}

/// Wait until `address` received `n` messages; returns them.
async fn mails_to(smtp: &FakeSmtp, address: &str, n: usize) -> Vec<Mail> {
    eventually(WAIT, &format!("{n} email(s) to {address}"), || async {
        let m = smtp.to(address);
        (m.len() >= n).then_some(m)
    })
    .await
}

/// The path and query of a link in an email (which points at `status.public_url`).
fn local(link: &str) -> String {
    link.strip_prefix("http://status.acme.test")
        .expect("links use status.public_url")
        .to_string()
}

/// Subscribe `email` and confirm it from the email's link (through its button page).
async fn subscribed(app: &TestApp, smtp: &FakeSmtp, email: &str, systems: &[&str]) {
    let before = smtp.to(email).len();
    let token = form_token(app).await;
    let (status, body) = subscribe(app, &token, email, systems).await;
    assert_eq!(status, 200, "{body}");
    let mail = mails_to(smtp, email, before + 1).await.pop().unwrap();
    assert!(
        mail.subject().contains("Confirm your subscription"),
        "{}",
        mail.subject()
    );
    let link = mail
        .link(&format!("{PUBLIC}/confirm?token="))
        .expect("a confirmation link");
    // Opening the link only shows a button: link scanners must not confirm.
    let page = app.get(&local(&link)).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    let r = app
        .client
        .post(app.url(&local(&link)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are subscribed"));
}

fn fields(summary: &str, systems: &[&str], public: bool) -> Fields {
    Fields {
        summary: summary.into(),
        systems: systems.iter().map(|s| s.to_string()).collect(),
        impact: BTreeMap::new(),
        severity: "critical".into(),
        eta: "2h".into(),
        resolution_assignee: "U0RES".into(),
        communication_assignee: "U0COM".into(),
        public,
    }
}

async fn announce(app: &TestApp, summary: &str, systems: &[&str], public: bool) -> Outage {
    changes::announce(&app.state, fields(summary, systems, public), "api:test")
        .await
        .expect("announced")
}

async fn resolve(app: &TestApp, id: &str) {
    let resolution = Resolution {
        summary: "Rolled back".into(),
        postmortem: false,
        report_url: None,
        resolved_by: "api:test".into(),
        postmortem_summary: None,
    };
    changes::apply(
        &app.state,
        id,
        Change {
            kind: Kind::Resolved,
            by: "api:test".into(),
            reason: None,
            expected_version: None,
            fields: None,
            resolution: Some((resolution, app.state.now_ms())),
        },
    )
    .await
    .expect("resolved");
}

async fn jobs_of_kind(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = $1")
        .bind(kind)
        .fetch_one(app.state.db().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn subscribers_confirm_get_notices_for_their_public_systems_and_unsubscribe_in_one_click() {
    for db in TestDb::all("status email subscriptions").await {
        let smtp = FakeSmtp::start().await;
        let app = sub_app(db, &smtp, |_| {}).await;

        // The page carries the form, without script, under its policy.
        form_token(&app).await;
        let r = app.get("/status").await;
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("form-action 'self'"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(html.contains("<form method=\"post\" action=\"/status/subscribe\""));
        assert!(html.contains("name=\"systems\" value=\"api\""));
        assert!(!html.contains("<script"));

        subscribed(&app, &smtp, "Ann@Example.com", &["api"]).await;
        subscribed(&app, &smtp, "bob@example.com", &["web"]).await;
        subscribed(&app, &smtp, "carol@example.com", &[]).await;
        let confirm = &smtp.to("ann@example.com")[0];
        assert_eq!(confirm.from, "status@acme.test");
        assert_eq!(
            confirm.header("List-Unsubscribe"),
            None,
            "not subscribed yet"
        );

        // A private outage is never emailed; a public one reaches the subscribers of its systems.
        let private = announce(&app, "Internal build farm down", &["api"], false).await;
        let outage = announce(&app, "Checkout fails", &["api", "db"], true).await;
        let ann = mails_to(&smtp, "ann@example.com", 2).await;
        let carol = mails_to(&smtp, "carol@example.com", 2).await;
        let notice = &ann[1];
        assert_eq!(notice.subject(), "[Acme status] Outage: Checkout fails");
        let body = notice.body();
        assert!(body.contains("Systems: Public API, Database"), "{body}");
        assert!(body.contains("Severity: Major outage"), "{body}");
        assert!(
            body.contains(&format!("Current status: {PUBLIC}")),
            "{body}"
        );
        assert!(carol[1].subject().contains("Checkout fails"));
        let unsubscribe = notice.header("List-Unsubscribe").expect("List-Unsubscribe");
        assert!(
            unsubscribe.starts_with(&format!("<{PUBLIC}/unsubscribe?token="))
                && unsubscribe.ends_with('>'),
            "{unsubscribe}"
        );
        assert_eq!(
            notice.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(
            body.contains(unsubscribe.trim_matches(['<', '>'])),
            "the link is in the body too"
        );
        assert_eq!(
            app.state
                .jobs()
                .by_dedup_key(&format!(
                    "status.email.fanout:outage.announced:{}:1",
                    private.id
                ))
                .await
                .unwrap()
                .map(|j| j.id),
            None,
            "nothing is queued for a private outage"
        );

        // One-click: a POST to the header's URI with the RFC 8058 body, no cookie, no CSRF token.
        let link = local(unsubscribe.trim_matches(['<', '>']));
        let r = app
            .client
            .post(app.url(&link))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("You are unsubscribed"));
        // Again: the same answer.
        let again = app.client.post(app.url(&link)).send().await.unwrap();
        assert_eq!(again.status(), 200);
        // A GET only shows the button.
        let page = app.get(&link).await.text().await.unwrap();
        assert!(page.contains("<button type=\"submit\">Unsubscribe</button>"));

        resolve(&app, &outage.id).await;
        let carol = mails_to(&smtp, "carol@example.com", 3).await;
        assert_eq!(carol[2].subject(), "[Acme status] Resolved: Checkout fails");
        assert!(carol[2].body().contains("State: Resolved"));
        app.settle_jobs().await;
        assert_eq!(
            smtp.to("ann@example.com").len(),
            2,
            "no notice after unsubscribing"
        );
        assert_eq!(
            smtp.to("bob@example.com").len(),
            1,
            "web was not affected: only the confirmation"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn maintenance_is_noticed_when_scheduled_started_and_ended_for_its_systems_only() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    subscribed(&app, &smtp, "dba@example.com", &["db"]).await;
    subscribed(&app, &smtp, "shop@example.com", &["web"]).await;
    let now = app.state.now_ms();
    let draft = |title: &str, public: bool| Draft {
        title: title.into(),
        summary: "Minor version upgrade".into(),
        systems: vec!["db".into()],
        starts_at: now + 1500,
        ends_at: now + 3500,
        public,
    };
    slackops::maintenance::create(&app.state, draft("Secret work", false), "api")
        .await
        .map_err(|_| "refused")
        .unwrap();
    slackops::maintenance::create(&app.state, draft("Database upgrade", true), "api")
        .await
        .map_err(|_| "refused")
        .unwrap();
    let m = mails_to(&smtp, "dba@example.com", 2).await;
    assert_eq!(
        m[1].subject(),
        "[Acme status] Scheduled maintenance: Database upgrade"
    );
    let body = m[1].body();
    assert!(
        body.contains("Systems: Database") && body.contains("When: "),
        "{body}"
    );
    assert!(m[1].header("List-Unsubscribe").is_some());

    tokio::time::sleep(Duration::from_millis(1700)).await;
    slackops::maintenance::announce::announce_due(&app.state)
        .await
        .unwrap();
    let m = mails_to(&smtp, "dba@example.com", 3).await;
    assert_eq!(
        m[2].subject(),
        "[Acme status] Maintenance started: Database upgrade"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    slackops::maintenance::announce::announce_due(&app.state)
        .await
        .unwrap();
    let m = mails_to(&smtp, "dba@example.com", 4).await;
    assert_eq!(
        m[3].subject(),
        "[Acme status] Maintenance completed: Database upgrade"
    );
    app.settle_jobs().await;
    assert_eq!(
        smtp.to("dba@example.com").len(),
        4,
        "nothing about the private window"
    );
    assert_eq!(
        smtp.to("shop@example.com").len(),
        1,
        "only the confirmation"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_form_answers_the_same_whether_or_not_the_address_is_subscribed() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    subscribed(&app, &smtp, "ann@example.com", &["api"]).await;
    let token = form_token(&app).await;
    let (s1, known) = subscribe(&app, &token, "ann@example.com", &["web"]).await;
    let (s2, unknown) = subscribe(&app, &token, "zed@example.com", &["web"]).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        known.replace("ann@example.com", "X"),
        unknown.replace("zed@example.com", "X")
    );
    assert!(known.contains("Check your inbox"));
    // The subscribed address gets a confirmation of the change; until it is confirmed, its
    // notices follow the systems it confirmed before.
    let ann = mails_to(&smtp, "ann@example.com", 2).await;
    assert!(ann[1].subject().contains("Confirm"));
    announce(&app, "API slow", &["api"], true).await;
    let ann = mails_to(&smtp, "ann@example.com", 3).await;
    assert!(ann[2].subject().contains("API slow"));
    app.stop().await;
}

#[tokio::test]
async fn a_missing_forged_expired_or_cross_site_form_token_is_refused_and_nothing_is_sent() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    let good = form_token(&app).await;
    let (status, page) = post_form(&app, &[("email", "ann@example.com")]).await;
    assert_eq!(status, 403);
    assert!(page.contains("did not come from this page"), "{page}");
    assert!(
        page.contains("name=\"csrf\""),
        "the page offers a fresh form"
    );
    // The issued time changed: the signature no longer matches.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[0] = (parts[0].parse::<i64>().unwrap() + 1).to_string();
    let forged = parts.join(".");
    let (status, _) = subscribe(&app, &forged, "ann@example.com", &[]).await;
    assert_eq!(status, 403);
    // Signed with another key.
    let mut other = app.settings.status.clone();
    other.subscriptions.secret = Secret::new("another-secret-another-secret-another");
    let foreign = slackops::status::tokens::csrf_token(&other, app.state.now_ms());
    assert_eq!(
        subscribe(&app, &foreign, "ann@example.com", &[]).await.0,
        403
    );
    // Expired: issued three hours ago.
    let old = slackops::status::tokens::csrf_token(
        &app.settings.status,
        app.state.now_ms() - 3 * 3_600_000,
    );
    assert_eq!(subscribe(&app, &old, "ann@example.com", &[]).await.0, 403);
    // A valid token posted from another site.
    let r = app
        .client
        .post(app.url("/status/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(
            serde_urlencoded::to_string([("csrf", good.as_str()), ("email", "ann@example.com")])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .post(app.url("/status/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(
            serde_urlencoded::to_string([("csrf", good.as_str()), ("email", "ann@example.com")])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A bad address is a field error on the page, not a 403.
    let (status, page) = subscribe(&app, &good, "not-an-address", &[]).await;
    assert_eq!(status, 400);
    assert!(page.contains("id=\"sub-error\"") && page.contains("value=\"not-an-address\""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(jobs_of_kind(&app, "status.email.send").await, 0);
    assert!(smtp.mails().is_empty());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM status_subscribers")
        .fetch_one(app.state.db().pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_twenty_first_request_from_one_client_in_an_hour_is_429() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    let token = form_token(&app).await;
    for i in 0..20 {
        let (status, body) = subscribe(&app, &token, &format!("user{i}@example.com"), &[]).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let r = app
        .client
        .post(app.url("/status/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        // Without a trusted proxy, a forwarded address is not believed.
        .header("x-forwarded-for", "198.51.100.7")
        .body(
            serde_urlencoded::to_string([("csrf", token.as_str()), ("email", "late@example.com")])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    mails_to(&smtp, "user19@example.com", 1).await;
    app.settle_jobs().await;
    assert!(smtp.to("late@example.com").is_empty());
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("slackops_status_subscribe_requests_total{result=\"limited\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |s| {
        s.status.subscriptions.trusted_proxy_hops = 1;
        s.status.subscriptions.max_requests_per_client_per_hour = 2;
    })
    .await;
    let token = form_token(&app).await;
    let post = |ip: &'static str, email: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.client
                .post(app.url("/status/subscribe"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-forwarded-for", format!("10.9.9.9, {ip}"))
                .body(
                    serde_urlencoded::to_string([("csrf", token.as_str()), ("email", email)])
                        .unwrap(),
                )
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("203.0.113.1", "a@example.com").await, 200);
    assert_eq!(post("203.0.113.1", "b@example.com").await, 200);
    assert_eq!(post("203.0.113.1", "c@example.com").await, 429);
    assert_eq!(
        post("203.0.113.2", "d@example.com").await,
        200,
        "another client"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_sixth_email_to_one_address_in_a_day_is_not_sent() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    subscribed(&app, &smtp, "ann@example.com", &[]).await;
    for i in 0..5 {
        announce(&app, &format!("Outage {i}"), &["api"], true).await;
        // One at a time, so which one is over the limit is known.
        mails_to(&smtp, "ann@example.com", (i + 2).min(5)).await;
        app.settle_jobs().await;
    }
    assert_eq!(
        smtp.to("ann@example.com").len(),
        5,
        "the confirmation and four notices"
    );
    let subjects: Vec<String> = smtp
        .to("ann@example.com")
        .iter()
        .map(Mail::subject)
        .collect();
    assert!(
        !subjects.iter().any(|s| s.contains("Outage 4")),
        "{subjects:?}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("slackops_status_emails_total{kind=\"notice\",result=\"limited\"} 1"),
        "{metrics}"
    );
    // A new subscribe request for the address is answered as always, but sends nothing more.
    let token = form_token(&app).await;
    assert_eq!(subscribe(&app, &token, "ann@example.com", &[]).await.0, 200);
    app.settle_jobs().await;
    assert_eq!(smtp.to("ann@example.com").len(), 5);
    app.stop().await;
}

#[tokio::test]
async fn a_transient_smtp_failure_is_retried_and_the_email_delivered_once() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    smtp.fail_next_data("451 4.3.0 Try again later");
    let token = form_token(&app).await;
    assert_eq!(subscribe(&app, &token, "ann@example.com", &[]).await.0, 200);
    mails_to(&smtp, "ann@example.com", 1).await;
    app.settle_jobs().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.to("ann@example.com").len(), 1, "delivered once");
    assert_eq!(smtp.data_attempts(), 2, "one refused attempt, one accepted");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("slackops_status_emails_total{kind=\"confirm\",result=\"retried\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slackops_status_emails_total{kind=\"confirm\",result=\"sent\"} 1"),
        "{metrics}"
    );

    // A permanent refusal is not retried.
    smtp.fail_next_data("554 5.7.1 Rejected");
    assert_eq!(subscribe(&app, &token, "bob@example.com", &[]).await.0, 200);
    eventually(WAIT, "the permanent failure", || async {
        (app.metrics_text().await)
            .contains("slackops_status_emails_total{kind=\"confirm\",result=\"failed\"} 1")
            .then_some(())
    })
    .await;
    app.settle_jobs().await;
    assert_eq!(smtp.data_attempts(), 3);
    assert!(smtp.to("bob@example.com").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn in_headless_chromium_the_page_shows_the_subscribe_form_under_its_policy() {
    let Some(bin) = crate::status::chromium() else {
        eprintln!("SKIPPED: chromium not installed (apt-get install chromium; .ci/run does)");
        return;
    };
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |_| {}).await;
    form_token(&app).await;
    let profile = tempfile::tempdir().unwrap();
    let dom = crate::status::run_chromium(
        &bin,
        profile.path(),
        &["--window-size=390,844", "--dump-dom"],
        &app.url("/status"),
    )
    .await;
    let form = crate::status::section_text(&dom, "subscribe");
    assert!(form.contains("Get notified by email"), "{form}");
    assert!(form.contains("Email address"), "{form}");
    assert!(
        form.contains("Public API") && form.contains("Search"),
        "{form}"
    );
    assert!(form.contains("Subscribe"), "{form}");
    assert!(
        dom.contains("<section id=\"systems\">"),
        "the rest of the page is unchanged"
    );
    // It renders (kept when SLACKOPS_TEST_SCREENSHOT_FORM names a path, to look at).
    let shot = profile.path().join("form.png");
    crate::status::run_chromium(
        &bin,
        profile.path(),
        &[
            "--window-size=390,2600",
            &format!("--screenshot={}", shot.display()),
        ],
        &app.url("/status"),
    )
    .await;
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG"));
    if let Ok(keep) = std::env::var("SLACKOPS_TEST_SCREENSHOT_FORM") {
        std::fs::write(keep, &png).unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn smtp_credentials_are_used_and_neither_they_nor_addresses_reach_the_logs() {
    let smtp = FakeSmtp::start().await;
    let app = sub_app(TestDb::sqlite(), &smtp, |s| {
        s.status.smtp.username = Secret::new("mailer");
        s.status.smtp.password = Secret::new("hunter2-smtp-password");
    })
    .await;
    smtp.fail_next_data("451 4.3.0 Try again later");
    let token = form_token(&app).await;
    assert_eq!(
        subscribe(&app, &token, "secret.person@example.com", &[])
            .await
            .0,
        200
    );
    mails_to(&smtp, "secret.person@example.com", 1).await;
    assert!(
        smtp.auths()
            .contains(&("mailer".into(), "hunter2-smtp-password".into())),
        "{:?}",
        smtp.auths()
    );
    let Some(retried) = crate::helpers::logged("status email not sent; retrying") else {
        return; // TEST_LOG is set: logs are printed, not captured
    };
    assert!(!retried.is_empty(), "the transient failure is logged");
    for needle in ["hunter2", "secret.person"] {
        assert_eq!(
            crate::helpers::logged(needle),
            Some(vec![]),
            "{needle} was logged"
        );
    }
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_error FROM jobs WHERE kind = 'status.email.send'")
            .fetch_all(app.state.db().pool())
            .await
            .unwrap();
    assert!(
        errors
            .iter()
            .flatten()
            .all(|e| !e.contains("secret.person") && !e.contains("hunter2")),
        "{errors:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_smtp_there_is_no_form_and_the_endpoints_are_404() {
    let app = TestAppBuilder::new(TestDb::sqlite())
        .await
        .settings(|s| {
            s.announcements.systems = catalogue();
            s.status.refresh_interval_ms = 100;
        })
        .spawn()
        .await;
    let html = eventually(WAIT, "the status page", || async {
        let r = app.get("/status").await;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(!html.contains("id=\"subscribe\""));
    let r = app
        .client
        .post(app.url("/status/subscribe"))
        .body("email=a%40example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}
