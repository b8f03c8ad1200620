//! Pins the behaviour of the on-call fakes (`tests/support/fake_oncall.rs`) to
//! `/work/shared/reference/oncall-and-announcements.md` §D, quirks included: PagerDuty's auth
//! header, pagination (`more`, 100 per page, 10,000 offset cap), 90-day window, permanent
//! on-calls with null times, references without `include[]=users`, 429 with `ratelimit-reset`;
//! Opsgenie's GenieKey, `flat=true` recipients, name lookup, next-on-calls, 403/40301, an
//! unescaped `+`;
//! Grafana OnCall's bare token, `on_call_now`, required `final_shifts` dates, users' Slack IDs.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::fake_oncall::{FakeOncall, GRAFANA_TOKEN, OG_TOKEN, OncallFault, PD_TOKEN, PdOncall};

const HOUR: i64 = 3_600_000;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn get(
    url: &str,
    auth: Option<&str>,
    query: &[(&str, String)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(url).query(query);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("send");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn pd_auth() -> String {
    format!("Token token={PD_TOKEN}")
}

#[tokio::test]
async fn pagerduty_needs_its_token_scheme() {
    let f = FakeOncall::start().await;
    let url = format!("{}/oncalls", f.pagerduty_url());
    let (s, _, body) = get(&url, Some(&format!("Bearer {PD_TOKEN}")), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].is_string());
    let (s, _, _) = get(&url, Some(&pd_auth()), &[]).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn pagerduty_pages_with_offset_limit_and_more() {
    let f = FakeOncall::start().await;
    for i in 0..5 {
        f.pd_add(PdOncall::scheduled(
            &format!("PU{i}"),
            &format!("u{i}@x.com"),
            "PS",
            now() - HOUR,
            now() + HOUR,
        ));
    }
    let url = format!("{}/oncalls", f.pagerduty_url());
    let q = |offset: u32, limit: u32| {
        vec![("limit", limit.to_string()), ("offset", offset.to_string())]
    };
    let (_, _, p1) = get(&url, Some(&pd_auth()), &q(0, 2)).await;
    assert_eq!(p1["oncalls"].as_array().unwrap().len(), 2);
    assert_eq!(p1["more"], true);
    assert!(p1["total"].is_null(), "total is null unless total=true");
    let (_, _, p3) = get(&url, Some(&pd_auth()), &q(4, 2)).await;
    assert_eq!(p3["oncalls"].as_array().unwrap().len(), 1);
    assert_eq!(p3["more"], false);
    // Pages hold at most 100; offset + limit may not pass 10,000.
    let (_, _, big) = get(&url, Some(&pd_auth()), &q(0, 500)).await;
    assert_eq!(big["limit"], 100);
    let (s, _, _) = get(&url, Some(&pd_auth()), &q(9_950, 100)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pagerduty_users_are_references_unless_included_and_permanent_oncalls_have_no_times() {
    let f = FakeOncall::start().await;
    f.pd_add(PdOncall::scheduled(
        "PBOB",
        "bob@x.com",
        "PS",
        now() - HOUR,
        now() + HOUR,
    ));
    let mut perm = PdOncall::scheduled("PALICE", "alice@x.com", "", 0, 0);
    perm.schedule = None;
    perm.start = None;
    perm.end = None;
    f.pd_add(perm);
    let url = format!("{}/oncalls", f.pagerduty_url());
    let (_, _, v) = get(&url, Some(&pd_auth()), &[("schedule_ids[]", "PS".into())]).await;
    let items = v["oncalls"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "permanent on-calls need a null among schedule_ids[]"
    );
    assert_eq!(items[0]["user"]["type"], "user_reference");
    assert!(items[0]["user"]["email"].is_null());
    let (_, _, v) = get(
        &url,
        Some(&pd_auth()),
        &[
            ("schedule_ids[]", "PS".into()),
            ("schedule_ids[]", "null".into()),
            ("include[]", "users".into()),
        ],
    )
    .await;
    let items = v["oncalls"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let perm = items.iter().find(|i| i["user"]["id"] == "PALICE").unwrap();
    assert!(perm["start"].is_null() && perm["end"].is_null() && perm["schedule"].is_null());
    let bob = items.iter().find(|i| i["user"]["id"] == "PBOB").unwrap();
    assert_eq!(bob["user"]["email"], "bob@x.com");
}

/// §D: on-calls exist per escalation rule, so a schedule no policy references is absent from
/// `/oncalls`; its own final layer names who is on call, and only when since/until are given.
#[tokio::test]
async fn pagerduty_a_schedule_outside_every_policy_is_only_in_its_final_layer() {
    let f = FakeOncall::start().await;
    let (start, end) = (now() - HOUR, now() + HOUR);
    f.pd_add_unreferenced(PdOncall::scheduled(
        "PCAROL",
        "carol@x.com",
        "PLONE",
        start,
        end,
    ));
    let oncalls = format!("{}/oncalls", f.pagerduty_url());
    let window = [("since", iso(now())), ("until", iso(now() + 60_000))];
    let mut q: Vec<(&str, String)> = vec![("schedule_ids[]", "PLONE".into())];
    q.extend(window.iter().cloned());
    let (s, _, v) = get(&oncalls, Some(&pd_auth()), &q).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["oncalls"],
        json!([]),
        "/oncalls knows no unreferenced schedule"
    );

    let schedule = format!("{}/schedules/PLONE", f.pagerduty_url());
    let (s, _, v) = get(&schedule, Some(&pd_auth()), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["schedule"]["final_schedule"]["rendered_schedule_entries"].is_null(),
        "entries are rendered only with since/until: {v}"
    );
    let (_, _, v) = get(&schedule, Some(&pd_auth()), &window).await;
    let entries = v["schedule"]["final_schedule"]["rendered_schedule_entries"]
        .as_array()
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["user"]["id"], "PCAROL");
    assert_eq!(entries[0]["user"]["type"], "user_reference");
    assert!(entries[0]["user"]["email"].is_null());
    assert_eq!(
        entries[0]["start"],
        json!(window[0].1),
        "clipped to the window"
    );
    let (s, _, _) = get(
        &format!("{}/schedules/PNONE", f.pagerduty_url()),
        Some(&pd_auth()),
        &window,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pagerduty_windows_are_at_most_90_days_and_429_carries_ratelimit_reset() {
    let f = FakeOncall::start().await;
    let url = format!("{}/oncalls", f.pagerduty_url());
    let (s, _, _) = get(
        &url,
        Some(&pd_auth()),
        &[
            ("since", iso(now())),
            ("until", iso(now() + 91 * 24 * HOUR)),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    f.fail_next("pagerduty", OncallFault::RateLimited { reset_secs: 7 }, 1);
    let (s, h, body) = get(&url, Some(&pd_auth()), &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["ratelimit-reset"], "7");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(body["error"]["code"], 2020);
    let (s, _, _) = get(&url, Some(&pd_auth()), &[]).await;
    assert_eq!(s, StatusCode::OK, "the fault is consumed");
}

#[tokio::test]
async fn opsgenie_flat_recipients_by_id_or_name_with_genie_key() {
    let f = FakeOncall::start().await;
    f.og_add(
        "OG1",
        "ops rota",
        "carol@x.com",
        Some(now() - HOUR),
        Some(now() + HOUR),
    );
    f.og_add("OG1", "ops rota", "dan@x.com", Some(now() + HOUR), None);
    let auth = format!("GenieKey {OG_TOKEN}");
    let url = |id: &str| format!("{}/v2/schedules/{id}/on-calls", f.opsgenie_url());
    let (s, _, _) = get(&url("OG1"), Some(OG_TOKEN), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, v) = get(&url("OG1"), Some(&auth), &[("flat", "true".into())]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["data"]["onCallRecipients"],
        serde_json::json!(["carol@x.com"])
    );
    let (_, _, v) = get(&url("OG1"), Some(&auth), &[]).await;
    assert_eq!(v["data"]["onCallParticipants"][0]["type"], "user");
    let (_, _, v) = get(
        &url("ops rota"),
        Some(&auth),
        &[
            ("scheduleIdentifierType", "name".into()),
            ("flat", "true".into()),
            ("date", iso(now() + 2 * HOUR)),
        ],
    )
    .await;
    assert_eq!(
        v["data"]["onCallRecipients"],
        serde_json::json!(["dan@x.com"])
    );
    let (s, _, _) = get(&url("ops rota"), Some(&auth), &[]).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "names only with scheduleIdentifierType=name"
    );
}

#[tokio::test]
async fn opsgenie_refuses_unescaped_plus_and_keys_without_access() {
    let f = FakeOncall::start().await;
    f.og_add("OG1", "ops", "carol@x.com", None, None);
    let auth = format!("GenieKey {OG_TOKEN}");
    let raw = format!(
        "{}/v2/schedules/OG1/on-calls?date=2026-11-21T10:00:00+01:00",
        f.opsgenie_url()
    );
    let resp = client()
        .get(&raw)
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    f.og_forbid("OG1");
    let (s, _, v) = get(
        &format!("{}/v2/schedules/OG1/on-calls", f.opsgenie_url()),
        Some(&auth),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], 40301);
}

#[tokio::test]
async fn grafana_schedule_final_shifts_and_users() {
    let f = FakeOncall::start().await;
    f.gf_add_user("UG1", "bob@x.com", Some("U0BOB"));
    f.gf_set_on_call_now("SG", &["UG1"]);
    f.gf_add_shift("SG", "UG1", now() - HOUR, now() + HOUR);
    let base = f.grafana_url();
    let (s, _, v) = get(
        &format!("{base}/api/v1/schedules/SG/"),
        Some(&format!("Bearer {GRAFANA_TOKEN}")),
        &[],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the token goes alone, with no scheme"
    );
    assert_eq!(v["detail"], "Invalid token.");
    let (s, _, v) = get(
        &format!("{base}/api/v1/schedules/SG/"),
        Some(GRAFANA_TOKEN),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["on_call_now"], serde_json::json!(["UG1"]));
    let shifts = format!("{base}/api/v1/schedules/SG/final_shifts");
    let (s, _, _) = get(
        &shifts,
        Some(GRAFANA_TOKEN),
        &[("start_date", "2026-11-01".into())],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "both dates are required");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (s, _, v) = get(
        &shifts,
        Some(GRAFANA_TOKEN),
        &[("start_date", today.clone()), ("end_date", today)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["results"][0]["user_pk"], "UG1");
    assert_eq!(v["results"][0]["user_email"], "bob@x.com");
    assert!(v["next"].is_null());
    let (_, _, u) = get(
        &format!("{base}/api/v1/users/UG1/"),
        Some(GRAFANA_TOKEN),
        &[],
    )
    .await;
    assert_eq!(u["slack"][0]["user_id"], "U0BOB");
    let (s, _, _) = get(
        &format!("{base}/api/v1/users/UG1"),
        Some(GRAFANA_TOKEN),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "object routes end with a slash");
}
