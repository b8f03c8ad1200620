//! The Slack Web API client ([`SlackApi`]) against the fake Slack (tests/support/fake_slack.rs),
//! whose contract is reference/slack.md §3: business errors are HTTP 200 `{"ok":false,…}`, rate
//! limits are HTTP 429 + `Retry-After`, Slack's edge answers 5xx without JSON, read methods take
//! form arguments, and a `response_url` takes 5 uses (§2.4).
//!
//! Most tests build a client directly, pointed at the fake, so each can tune its own settings; the
//! metrics test goes through a running service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use slackops::config::{Secret, SlackSettings};
use slackops::jobs::JobError;
use slackops::metrics::Metrics;
use slackops::slack::api::{Message, SlackApi, SlackError, SlackErrorCode};

use crate::helpers::{TestAppBuilder, TestDb};
use crate::support::fake_slack::{FakeSlack, Fault};

/// A client for `fake`, with the harness's quick-retry settings and then `tweak`.
fn client(fake: &FakeSlack, tweak: impl FnOnce(&mut SlackSettings)) -> (SlackApi, Arc<Metrics>) {
    slackops::telemetry::install_crypto_provider();
    let mut s = SlackSettings {
        bot_token: Secret::new(fake.token()),
        api_url: fake.api_url().parse().expect("fake api url"),
        request_timeout_ms: 2000,
        max_retries: 3,
        ..SlackSettings::default()
    };
    tweak(&mut s);
    let metrics = Arc::new(Metrics::new());
    let api = SlackApi::new(&s, reqwest::Client::new(), metrics.clone());
    (api, metrics)
}

async fn fake_with_channel(channel: &str) -> FakeSlack {
    let fake = FakeSlack::start().await;
    fake.add_channel(channel, "ops");
    fake
}

/// The value of one sample in a Prometheus/OpenMetrics text exposition; 0 when absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().expect("numeric sample"))
        .sum()
}

// ============================================================================================
// Rate limits
// ============================================================================================

#[tokio::test]
async fn http_429_with_retry_after_is_retried_after_the_wait_and_succeeds() {
    // Arrange
    let fake = fake_with_channel("C0OPS").await;
    fake.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let (api, _) = client(&fake, |_| {});

    // Act
    let started = Instant::now();
    let posted = api
        .post_message(&Message::text("C0OPS", "deploying checkout"))
        .await;
    let elapsed = started.elapsed();

    // Assert
    let posted = posted.expect("succeeds after the wait");
    assert_eq!(posted.channel, "C0OPS");
    assert!(
        elapsed >= Duration::from_millis(950),
        "waited only {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let calls = fake.calls("chat.postMessage");
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(fake.messages_in("C0OPS").len(), 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_inline_limit_is_returned_as_rate_limited() {
    // Arrange: the default max_inline_retry_after_secs is 30.
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "alice", "alice@example.com", "Europe/Paris");
    fake.fail_next(
        "users.info",
        Fault::RateLimited {
            retry_after_secs: 120,
        },
        1,
    );
    let (api, _) = client(&fake, |s| s.max_inline_retry_after_secs = 30);

    // Act
    let started = Instant::now();
    let err = api.users_info("U0ALICE").await.expect_err("rate limited");
    let elapsed = started.elapsed();

    // Assert: returned at once, with the duration, for a job to reschedule itself.
    match &err {
        SlackError::RateLimited {
            method,
            retry_after,
        } => {
            assert_eq!(method, "users.info");
            assert_eq!(*retry_after, Duration::from_secs(120));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(fake.call_count("users.info"), 1);
    assert!(err.is_transient());
    match JobError::from(err) {
        JobError::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(120))),
        JobError::Permanent(e) => panic!("expected a retry, got permanent {e}"),
        JobError::NotYet(_) => panic!("expected a retry, got not-yet"),
    }
}

// ============================================================================================
// ok:false
// ============================================================================================

#[tokio::test]
async fn ok_false_becomes_a_typed_error_code_and_is_not_retried() {
    // Arrange
    let fake = fake_with_channel("C0OPS").await;
    let (api, _) = client(&fake, |_| {});

    // Act
    let no_channel = api
        .post_message(&Message::text("C0MISSING", "hello"))
        .await
        .expect_err("unknown channel");
    let no_message = api
        .update_message("C0OPS", "1700000000.999900", &"edited".into(), None)
        .await
        .expect_err("unknown message");

    // Assert
    assert_eq!(no_channel.code(), Some(&SlackErrorCode::ChannelNotFound));
    assert!(no_channel.is(SlackErrorCode::ChannelNotFound));
    assert!(!no_channel.is_transient());
    assert_eq!(no_message.code(), Some(&SlackErrorCode::MessageNotFound));
    assert!(matches!(
        &no_message,
        SlackError::Api { method, .. } if method == "chat.update"
    ));
    assert_eq!(fake.call_count("chat.postMessage"), 1);
    assert_eq!(fake.call_count("chat.update"), 1);
}

#[tokio::test]
async fn a_bad_token_is_a_configuration_error() {
    // Arrange
    let fake = FakeSlack::start().await;
    let (api, _) = client(&fake, |s| s.bot_token = Secret::new("xoxb-revoked"));

    // Act
    let err = api.auth_test().await.expect_err("invalid token");

    // Assert
    assert_eq!(err.code(), Some(&SlackErrorCode::InvalidAuth));
    assert!(err.code().is_some_and(SlackErrorCode::is_configuration));
    assert!(!err.is_transient());
    assert!(
        !err.to_string().contains("xoxb-revoked"),
        "the token never appears in errors: {err}"
    );
}

// ============================================================================================
// 5xx and timeouts
// ============================================================================================

#[tokio::test]
async fn server_errors_are_retried_then_surfaced_after_max_retries() {
    // Arrange: Slack's edge answers 500 with an empty body, every time.
    let fake = fake_with_channel("C0OPS").await;
    fake.fail_next("chat.postMessage", Fault::ServerError(500), 10);
    let (api, _) = client(&fake, |s| s.max_retries = 3);

    // Act
    let err = api
        .post_message(&Message::text("C0OPS", "hello"))
        .await
        .expect_err("keeps failing");

    // Assert
    assert!(
        matches!(&err, SlackError::Server { status: 500, method } if method == "chat.postMessage"),
        "{err:?}"
    );
    assert_eq!(fake.call_count("chat.postMessage"), 3);
    assert!(err.is_transient());
    assert!(fake.messages_in("C0OPS").is_empty());
}

#[tokio::test]
async fn a_transient_503_followed_by_success_succeeds() {
    // Arrange: one HTML 503 from the edge, then the real answer.
    let fake = fake_with_channel("C0OPS").await;
    fake.fail_next("chat.postMessage", Fault::ServerError(503), 1);
    let (api, _) = client(&fake, |_| {});

    // Act
    let posted = api.post_message(&Message::text("C0OPS", "hello")).await;

    // Assert
    assert!(posted.is_ok(), "{posted:?}");
    assert_eq!(fake.call_count("chat.postMessage"), 2);
    assert_eq!(fake.messages_in("C0OPS").len(), 1);
}

#[tokio::test]
async fn a_call_that_times_out_is_retried_and_then_succeeds() {
    // Arrange: the first users.info answer comes after the client's timeout.
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "alice", "alice@example.com", "Europe/Paris");
    fake.fail_next("users.info", Fault::Delay(Duration::from_millis(800)), 1);
    let (api, _) = client(&fake, |s| s.request_timeout_ms = 300);

    // Act
    let user = api.users_info("U0ALICE").await;

    // Assert
    assert_eq!(user.expect("second attempt succeeds").id, "U0ALICE");
    assert_eq!(fake.call_count("users.info"), 2);
}

// ============================================================================================
// chat.postMessage pacing
// ============================================================================================

#[tokio::test]
async fn posts_to_one_channel_are_paced_while_posts_to_many_channels_are_not() {
    // Arrange: 5 per second with a burst of 2 — six posts to one channel need ≥ 4 × 200 ms.
    let fake = fake_with_channel("C0ONE").await;
    for i in 0..6 {
        fake.add_channel(&format!("C0MANY{i}"), &format!("many{i}"));
    }
    let (api, _) = client(&fake, |s| {
        s.post_rate_per_channel = 5.0;
        s.post_burst_per_channel = 2;
    });

    // Act
    let started = Instant::now();
    for i in 0..6 {
        api.post_message(&Message::text(
            "C0ONE",
            slackops::mrkdwn!("one channel {}", i),
        ))
        .await
        .expect("posted");
    }
    let one_channel = started.elapsed();
    let started = Instant::now();
    for i in 0..6 {
        api.post_message(&Message::text(format!("C0MANY{i}"), "many channels"))
            .await
            .expect("posted");
    }
    let many_channels = started.elapsed();

    // Assert
    assert!(
        one_channel >= Duration::from_millis(750),
        "one channel took {one_channel:?}"
    );
    assert!(
        one_channel < Duration::from_secs(3),
        "one channel took {one_channel:?}"
    );
    assert!(
        many_channels < Duration::from_millis(300),
        "many channels took {many_channels:?}"
    );
    assert_eq!(fake.messages_in("C0ONE").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_to_one_channel_are_paced_too() {
    // Arrange
    let fake = fake_with_channel("C0OPS").await;
    let (api, _) = client(&fake, |s| {
        s.post_rate_per_channel = 5.0;
        s.post_burst_per_channel = 2;
    });

    // Act
    let posts = (0..6).map(|i| {
        let api = api.clone();
        async move {
            api.post_message(&Message::text(
                "C0OPS",
                slackops::mrkdwn!("concurrent {}", i),
            ))
            .await
        }
    });
    let results = futures::future::join_all(posts).await;

    // Assert: the fake saw the six calls spread over ≥ 4 intervals.
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = fake.calls("chat.postMessage");
    assert_eq!(calls.len(), 6);
    let first = calls.iter().map(|c| c.at).min().expect("calls");
    let last = calls.iter().map(|c| c.at).max().expect("calls");
    let spread = last.duration_since(first);
    assert!(spread >= Duration::from_millis(750), "spread {spread:?}");
}

// ============================================================================================
// response_url
// ============================================================================================

#[tokio::test]
async fn a_response_url_takes_five_uses_and_the_sixth_is_refused_without_calling_slack() {
    // Arrange
    let fake = FakeSlack::start().await;
    let url = fake.response_url();
    let (api, _) = client(&fake, |_| {});

    // Act
    let mut results = Vec::new();
    for i in 0..6 {
        results.push(
            api.respond(&url, &json!({"text": format!("update {i}")}))
                .await,
        );
    }

    // Assert
    for (i, r) in results[..5].iter().enumerate() {
        assert!(r.is_ok(), "use {} failed: {r:?}", i + 1);
    }
    assert!(
        matches!(results[5], Err(SlackError::ResponseUrlExhausted)),
        "{:?}",
        results[5]
    );
    assert_eq!(fake.response_url_posts(&url).len(), 5);
    assert_eq!(fake.response_url_uses(&url), 5);
}

// ============================================================================================
// Read methods (form-encoded)
// ============================================================================================

#[tokio::test]
async fn users_info_and_lookup_by_email_work_as_form_encoded_reads() {
    // Arrange
    let fake = FakeSlack::start().await;
    fake.add_user("U0ALICE", "alice", "alice@example.com", "Europe/Paris");
    let (api, _) = client(&fake, |_| {});

    // Act
    let by_id = api.users_info("U0ALICE").await;
    let by_email = api.lookup_by_email("Alice@Example.com").await;
    let nobody = api.lookup_by_email("nobody@example.com").await;
    let unknown_id = api.users_info("U0NOBODY").await;

    // Assert
    let by_id = by_id.expect("users.info");
    assert_eq!(by_id.id, "U0ALICE");
    assert_eq!(by_id.profile.email.as_deref(), Some("alice@example.com"));
    assert_eq!(by_id.tz.as_deref(), Some("Europe/Paris"));
    assert_eq!(
        by_email.expect("lookupByEmail").map(|u| u.id).as_deref(),
        Some("U0ALICE")
    );
    assert!(nobody.expect("not found is not an error").is_none());
    assert_eq!(
        unknown_id.expect_err("unknown user").code(),
        Some(&SlackErrorCode::UserNotFound)
    );
    for method in ["users.info", "users.lookupByEmail"] {
        for call in fake.calls(method) {
            let ct = call.content_type.unwrap_or_default();
            assert!(
                ct.starts_with("application/x-www-form-urlencoded"),
                "{method} sent {ct}"
            );
            assert!(call.headers_authorization_present);
        }
    }
    assert_eq!(fake.calls("users.info")[0].body["user"], "U0ALICE");
}

// ============================================================================================
// Metrics
// ============================================================================================

#[tokio::test]
async fn metrics_count_slack_api_calls_by_method_and_outcome() {
    // Arrange
    let app = TestAppBuilder::new(TestDb::sqlite()).await.spawn().await;
    app.slack.add_channel("C0OPS", "ops");
    app.slack.fail_next(
        "chat.postMessage",
        Fault::RateLimited {
            retry_after_secs: 120,
        },
        1,
    );
    let slack = app.state.slack();

    // Act
    let limited = slack.post_message(&Message::text("C0OPS", "one")).await;
    let ok = slack.post_message(&Message::text("C0OPS", "two")).await;
    let missing = slack
        .post_message(&Message::text("C0MISSING", "three"))
        .await;
    let metrics = app.metrics_text().await;

    // Assert
    assert!(matches!(limited, Err(SlackError::RateLimited { .. })));
    assert!(ok.is_ok());
    assert!(missing.is_err());
    let name = "slackops_slack_api_calls_total";
    let m = "chat.postMessage";
    assert_eq!(
        metric(&metrics, name, &[("method", m), ("outcome", "ok")]),
        1.0
    );
    assert_eq!(
        metric(&metrics, name, &[("method", m), ("outcome", "ratelimited")]),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            name,
            &[("method", m), ("outcome", "channel_not_found")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_response_url_answering_429_is_counted_as_ratelimited_not_as_a_server_error() {
    // Arrange: Slack's edge answers 429, then 500, then accepts (reference/slack.md, response_url).
    let app = TestAppBuilder::new(TestDb::sqlite()).await.spawn().await;
    let url = app.slack.response_url();
    let key = crate::support::fake_slack::RESPONSE_URL_METHOD;
    app.slack.fail_next(key, Fault::ServerError(429), 1);
    app.slack.fail_next(key, Fault::ServerError(500), 1);

    // Act: the client retries transient answers.
    let posted = app
        .state
        .slack()
        .respond(&url, &json!({"text": "done"}))
        .await;
    let metrics = app.metrics_text().await;

    // Assert
    assert!(posted.is_ok(), "{posted:?}");
    let name = "slackops_slack_api_calls_total";
    for outcome in ["ratelimited", "http_5xx", "ok"] {
        assert_eq!(
            metric(
                &metrics,
                name,
                &[("method", "response_url"), ("outcome", outcome)]
            ),
            1.0,
            "{outcome}: {metrics}"
        );
    }
}
