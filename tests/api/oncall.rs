//! On-call user-group sync (issue 5), through the real service against fake PagerDuty, Opsgenie,
//! Grafana OnCall (tests/support/fake_oncall.rs) and fake Slack: diff-only writes, placeholder
//! accounts, the empty-group policy, missing people, 429 retries, pagination, dry runs, the lease,
//! one notice per change, static rota handoffs, failures reported with an error id, `/oncall`.
//! Tests that touch storage run on every engine `TestDb::all` offers.

use std::time::{Duration, Instant};

use serde_json::Value;
use slackops::clock::ManualClock;
use slackops::oncall::settings::{
    EmptyPolicy, GroupSettings, ProviderKind, RotaEvery, RotaSettings, SourceSettings,
};
use slackops::oncall::sync::{Outcome, SyncError, SyncOptions, SyncReport, render, sync};

use crate::helpers::{TestApp, TestAppBuilder, TestDb, eventually};
use crate::support::fake_oncall::{
    FakeOncall, GRAFANA_TOKEN, OG_TOKEN, OncallFault, PD_TOKEN, PdOncall,
};
use crate::support::fake_slack::Fault;

pub(crate) const GROUP: &str = "S0PLAT";
pub(crate) const HANDLE: &str = "platform-oncall";
pub(crate) const NOTICES: &str = "C0ONCALL";
pub(crate) const OPS: &str = "C0OPSALERTS";
pub(crate) const HOUR: i64 = 3_600_000;

pub(crate) fn pd_source(schedules: &[&str]) -> SourceSettings {
    SourceSettings {
        provider: ProviderKind::Pagerduty,
        schedules: schedules.iter().map(|s| s.to_string()).collect(),
        escalation_policies: vec![],
        escalation_levels: vec![],
        permanent: false,
        by_name: false,
        rota: None,
    }
}

pub(crate) fn group(handle: &str, sources: Vec<SourceSettings>) -> GroupSettings {
    GroupSettings {
        handle: handle.into(),
        sources,
        channel: Some(NOTICES.into()),
        ..Default::default()
    }
}

/// The service with the on-call fakes wired in and one PagerDuty-backed group; `f` adjusts.
pub(crate) async fn spawn(
    db: TestDb,
    clock: Option<ManualClock>,
    f: impl FnOnce(&mut slackops::config::Settings) + Send + 'static,
) -> (TestApp, FakeOncall) {
    spawn_with(db, clock, false, f).await
}

/// [`spawn`], with the periodic tasks (the interval sync and the handoff task) running when
/// `periodic` is set.
pub(crate) async fn spawn_with(
    db: TestDb,
    clock: Option<ManualClock>,
    periodic: bool,
    f: impl FnOnce(&mut slackops::config::Settings) + Send + 'static,
) -> (TestApp, FakeOncall) {
    spawn_prepared(db, clock, periodic, f, |_| {}).await
}

/// [`spawn_with`], with `prepare` run on the fake provider before the service starts: the
/// workspace and the schedules are in place before anything reads them (with periodic tasks on,
/// the sync runs as soon as the service takes its lease).
pub(crate) async fn spawn_prepared(
    db: TestDb,
    clock: Option<ManualClock>,
    periodic: bool,
    f: impl FnOnce(&mut slackops::config::Settings) + Send + 'static,
    prepare: impl FnOnce(&FakeOncall),
) -> (TestApp, FakeOncall) {
    let oncall = FakeOncall::start().await;
    let (pd, og, gf) = (
        oncall.pagerduty_url(),
        oncall.opsgenie_url(),
        oncall.grafana_url(),
    );
    let mut b = TestAppBuilder::new(db).await.settings(move |s| {
        let o = &mut s.oncall;
        o.interval_secs = 0;
        o.pagerduty.base_url = pd.parse().unwrap();
        o.pagerduty.token = slackops::config::Secret::new(PD_TOKEN);
        o.opsgenie.base_url = Some(og.parse().unwrap());
        o.opsgenie.token = slackops::config::Secret::new(OG_TOKEN);
        o.grafana.base_url = Some(gf.parse().unwrap());
        o.grafana.token = slackops::config::Secret::new(GRAFANA_TOKEN);
        o.request_timeout_ms = 2000;
        o.ops_channel = Some(OPS.into());
        o.groups = vec![group(HANDLE, vec![pd_source(&["PSCHED1"])])];
        f(s);
    });
    if let Some(c) = clock {
        b = b.clock(std::sync::Arc::new(c));
    }
    if periodic {
        b = b.with_periodic();
    }
    // The schedule the default group reads exists, whether or not anyone is on it.
    oncall.pd_add_schedule("PSCHED1");
    let slack = &b.slack;
    slack.add_channel(NOTICES, "platform-oncall");
    slack.add_channel(OPS, "ops-alerts");
    slack.add_user("U0ALICE", "alice", "alice@example.com", "UTC");
    slack.add_user("U0BOB", "bob", "bob@example.com", "UTC");
    slack.add_user("U0CAROL", "carol", "carol@example.com", "UTC");
    slack.add_user("U0NOOP", "noop", "noop@example.com", "UTC");
    slack.add_usergroup(GROUP, HANDLE, &["U0ALICE"]);
    prepare(&oncall);
    let app = b.spawn().await;
    (app, oncall)
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `who` is on call on PSCHED1 from an hour ago to an hour from now.
fn on_call_now(oncall: &FakeOncall, user: &str, email: &str) {
    oncall.pd_add(PdOncall::scheduled(
        user,
        email,
        "PSCHED1",
        now() - HOUR,
        now() + HOUR,
    ));
}

pub(crate) async fn run(app: &TestApp, dry_run: bool) -> SyncReport {
    sync(
        &app.state,
        &SyncOptions {
            dry_run,
            groups: vec![],
            actor: "test".into(),
            due_only: false,
        },
    )
    .await
    .expect("sync runs")
}

pub(crate) fn plan<'a>(r: &'a SyncReport, handle: &str) -> &'a slackops::oncall::sync::GroupPlan {
    r.groups
        .iter()
        .find(|g| g.handle == handle)
        .unwrap_or_else(|| panic!("a plan for @{handle}: {r:?}"))
}

pub(crate) fn ids(members: &[slackops::oncall::sync::Member]) -> Vec<&str> {
    members.iter().map(|m| m.slack_id.as_str()).collect()
}

/// Wait until every queued job has finished, so moving the manual clock cannot expire a running
/// job's lease (which would run it again, as after a crash).
pub(crate) async fn settled(app: &TestApp) {
    eventually(
        Duration::from_secs(10),
        "the job queue to drain",
        || async {
            (count(
                app,
                "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')",
            )
            .await
                == 0)
                .then_some(())
        },
    )
    .await;
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(app.state.db().pool())
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sync_with_nothing_changed_writes_nothing_and_looks_nobody_up_again() {
    for db in TestDb::all("oncall::a_second_sync_with_nothing_changed").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");

        let first = run(&app, false).await;
        let p = plan(&first, HANDLE);
        assert_eq!(p.outcome, Outcome::Updated, "{p:?}");
        assert_eq!(ids(&p.added), ["U0BOB"]);
        assert_eq!(ids(&p.removed), ["U0ALICE"]);
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
        assert_eq!(app.slack.call_count("usergroups.users.update"), 1);
        assert_eq!(app.slack.call_count("users.lookupByEmail"), 1);

        let second = run(&app, false).await;
        assert_eq!(plan(&second, HANDLE).outcome, Outcome::Unchanged);
        assert_eq!(ids(&plan(&second, HANDLE).unchanged), ["U0BOB"]);
        assert_eq!(
            app.slack.call_count("usergroups.users.update"),
            1,
            "no second write"
        );
        assert_eq!(
            app.slack.call_count("users.lookupByEmail"),
            1,
            "served from the cache"
        );
        // The unchanged run read Slack once (the list with members), not once per group.
        assert_eq!(app.slack.call_count("usergroups.users.list"), 1);
        assert_eq!(app.slack.call_count("usergroups.list"), 2);
        let metrics = app.metrics_text().await;
        assert!(
            metrics.contains("slackops_oncall_group_syncs_total{kind=\"updated\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("slackops_oncall_group_syncs_total{kind=\"unchanged\"} 1"),
            "{metrics}"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_shift_notice_and_one_dm_per_change_however_often_the_sync_runs() {
    for db in TestDb::all("oncall::one_shift_notice_per_change").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        for _ in 0..3 {
            run(&app, false).await;
        }
        let msgs = app
            .slack
            .wait_for_messages(NOTICES, 1, Duration::from_secs(10))
            .await;
        assert_eq!(
            msgs[0].text,
            ":pager: <@U0BOB> is now on call for *@platform-oncall*, taking over from <@U0ALICE>."
        );
        let dm = eventually(Duration::from_secs(10), "a DM to bob", || async {
            app.slack.dm_channel_of("U0BOB")
        })
        .await;
        let dms = app
            .slack
            .wait_for_messages(&dm, 1, Duration::from_secs(10))
            .await;
        assert!(
            dms[0]
                .text
                .contains("You are now on call for *@platform-oncall*"),
            "{}",
            dms[0].text
        );

        // The next change is announced once too.
        oncall.pd_clear();
        on_call_now(&oncall, "PCAROL", "carol@example.com");
        run(&app, false).await;
        run(&app, false).await;
        let msgs = app
            .slack
            .wait_for_messages(NOTICES, 2, Duration::from_secs(10))
            .await;
        assert!(
            msgs[1].text.contains("<@U0CAROL> is now on call"),
            "{}",
            msgs[1].text
        );
        assert!(
            msgs[1].text.contains("taking over from <@U0BOB>"),
            "{}",
            msgs[1].text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            app.slack.messages_in(NOTICES).len(),
            2,
            "no repeated notice"
        );
        assert_eq!(app.slack.messages_in(&dm).len(), 1);
        assert_eq!(
            count(
                &app,
                "SELECT COUNT(*) FROM jobs WHERE kind = 'oncall.notice'"
            )
            .await,
            2
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placeholder_accounts_are_never_put_in_the_group() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |s| {
        s.oncall.groups[0].ignore = vec!["noop@example.com".into()];
    })
    .await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    on_call_now(&oncall, "PNOOP", "noop@example.com");
    let r = run(&app, false).await;
    let p = plan(&r, HANDLE);
    assert_eq!(p.ignored, ["noop@example.com"]);
    assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
    assert!(render(&r).contains("ignored placeholder: noop@example.com"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_rota_keeps_the_current_members_by_default() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |_| {}).await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    let r = run(&app, false).await;
    assert_eq!(plan(&r, HANDLE).outcome, Outcome::Updated);
    // Then nobody is on call: Slack refuses empty groups, and bob stays.
    oncall.pd_clear();
    let r = run(&app, false).await;
    let p = plan(&r, HANDLE);
    assert_eq!(p.outcome, Outcome::KeptEmpty, "{p:?}");
    assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
    assert_eq!(app.slack.call_count("usergroups.users.update"), 1);
    let msgs = app
        .slack
        .wait_for_messages(OPS, 1, Duration::from_secs(10))
        .await;
    assert!(
        msgs[0]
            .text
            .contains("Nobody is on call for *@platform-oncall*"),
        "{}",
        msgs[0].text
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_rota_can_fall_back_to_a_configured_list() {
    let (app, _oncall) = spawn(TestDb::sqlite(), None, |s| {
        s.oncall.groups[0].when_empty = EmptyPolicy::Fallback;
        s.oncall.groups[0].fallback = vec!["carol@example.com".into(), "U0BOB".into()];
    })
    .await;
    let r = run(&app, false).await;
    let p = plan(&r, HANDLE);
    assert_eq!(p.outcome, Outcome::Updated, "{p:?}");
    assert!(p.fell_back);
    assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB", "U0CAROL"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_missing_in_slack_are_reported_once_and_the_others_synced() {
    for db in TestDb::all("oncall::people_missing_in_slack").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        on_call_now(&oncall, "PDAVE", "dave@example.com");
        let r = run(&app, false).await;
        let p = plan(&r, HANDLE);
        assert_eq!(p.missing, ["dave@example.com"]);
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
        let msgs = app
            .slack
            .wait_for_messages(OPS, 1, Duration::from_secs(10))
            .await;
        assert!(
            msgs[0].text.contains("dave@example.com"),
            "{}",
            msgs[0].text
        );
        // Still missing on the next run: not posted again within the throttle window.
        run(&app, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(app.slack.messages_in(OPS).len(), 1);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slack_rate_limits_are_waited_out_using_retry_after() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |_| {}).await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    app.slack.fail_next(
        "usergroups.users.update",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    app.slack
        .fail_next("users.lookupByEmail", Fault::ServerError(503), 1);
    let started = Instant::now();
    let r = run(&app, false).await;
    assert_eq!(plan(&r, HANDLE).outcome, Outcome::Updated);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(app.slack.call_count("usergroups.users.update"), 2);
    assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagerduty_rate_limits_are_waited_out_using_ratelimit_reset() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |_| {}).await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    oncall.fail_next("pagerduty", OncallFault::RateLimited { reset_secs: 1 }, 1);
    oncall.fail_next("pagerduty", OncallFault::Server(502), 1);
    let started = Instant::now();
    let r = run(&app, false).await;
    assert_eq!(plan(&r, HANDLE).outcome, Outcome::Updated, "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(oncall.calls("pagerduty").len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagerduty_pages_are_followed_and_people_deduplicated() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |s| {
        s.oncall.pagerduty.page_size = 2;
    })
    .await;
    app.slack.add_user("U0DAN", "dan", "dan@example.com", "UTC");
    for (u, e) in [
        ("PBOB", "bob@example.com"),
        ("PCAROL", "carol@example.com"),
        ("PDAN", "dan@example.com"),
    ] {
        on_call_now(&oncall, u, e);
    }
    // Bob also on level 2 of another policy: one member, not two.
    let mut again = PdOncall::scheduled(
        "PBOB",
        "bob@example.com",
        "PSCHED1",
        now() - HOUR,
        now() + HOUR,
    );
    again.policy = "PEP2".into();
    again.level = 2;
    oncall.pd_add(again);
    // A permanent on-call, not asked for.
    let mut permanent = PdOncall::scheduled("PALICE", "alice@example.com", "x", 0, 0);
    permanent.schedule = None;
    permanent.start = None;
    permanent.end = None;
    oncall.pd_add(permanent);

    run(&app, false).await;
    assert_eq!(
        app.slack.usergroup_members(GROUP),
        ["U0BOB", "U0CAROL", "U0DAN"]
    );
    let offsets: Vec<String> = oncall
        .calls("pagerduty")
        .iter()
        .filter_map(|c| {
            c.query
                .iter()
                .find(|(k, _)| k == "offset")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(offsets, ["0", "2"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_prints_the_plan_and_changes_nothing() {
    for db in TestDb::all("oncall::a_dry_run_changes_nothing").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        let r = run(&app, true).await;
        let p = plan(&r, HANDLE);
        assert_eq!(p.outcome, Outcome::WouldUpdate);
        let out = render(&r);
        assert!(out.contains("+ added     U0BOB (bob@example.com)"), "{out}");
        assert!(out.contains("- removed   U0ALICE"), "{out}");
        assert!(out.contains("dry run, nothing changed"), "{out}");
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0ALICE"]);
        assert_eq!(app.slack.call_count("usergroups.users.update"), 0);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM oncall_groups").await, 0);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM jobs").await, 0);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM leases").await, 0);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_keeps_two_concurrent_syncs_from_both_writing() {
    for db in TestDb::all("oncall::the_lease_keeps_two_concurrent_syncs").await {
        let (first, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        // A second replica on the same database and the same Slack.
        let (url, slack_url, pd) = (
            first.settings.database.url.clone(),
            first.slack.api_url(),
            oncall.pagerduty_url(),
        );
        let settings = first.settings.clone();
        let second = TestAppBuilder::new(TestDb::sqlite())
            .await
            .settings(move |s| {
                s.oncall = settings.oncall.clone();
                s.oncall.pagerduty.base_url = pd.parse().unwrap();
                s.database.url = url;
                s.slack.api_url = slack_url.parse().unwrap();
            })
            .spawn()
            .await;
        // Slow provider answers make the two runs overlap.
        oncall.fail_next(
            "pagerduty",
            OncallFault::Delay(Duration::from_millis(800)),
            2,
        );
        let opts = SyncOptions {
            actor: "test".into(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(sync(&first.state, &opts), sync(&second.state, &opts));
        let busy = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(SyncError::Busy)))
            .count();
        assert_eq!(busy, 1, "exactly one run holds the lease: {a:?} {b:?}");
        assert_eq!(first.slack.call_count("usergroups.users.update"), 1);
        // Once it is released, the next run goes ahead (and has nothing to do).
        let r = run(&second, false).await;
        assert_eq!(plan(&r, HANDLE).outcome, Outcome::Unchanged);
        second.stop().await;
        first.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_rota_hands_off_at_its_time_and_adds_the_next_shift_early() {
    for db in TestDb::all("oncall::a_static_rota_hands_off").await {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        let clock = ManualClock::at_secs(t("2026-11-09T08:00:00Z") / 1000);
        let (app, _oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.rotas.insert(
                "platform".into(),
                RotaSettings {
                    people: vec!["carol@example.com".into(), "U0BOB".into()],
                    every: RotaEvery::Weekly,
                    handoff: "09:00".into(),
                    weekday: Some("monday".into()),
                    start: "2026-11-02".into(),
                    utc_offset: "+00:00".into(),
                },
            );
            let mut src = pd_source(&[]);
            src.provider = ProviderKind::Static;
            src.rota = Some("platform".into());
            s.oncall.groups = vec![group(HANDLE, vec![src])];
            s.oncall.groups[0].handover_minutes = 30;
        })
        .await;
        // 08:00 on the second Monday: carol's week until 09:00.
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0CAROL"]);
        app.slack
            .wait_for_messages(NOTICES, 1, Duration::from_secs(10))
            .await;
        settled(&app).await;
        // 08:40: bob comes in early (30 min handover window), carol stays until 09:00.
        clock.set_ms(t("2026-11-09T08:40:00Z"));
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB", "U0CAROL"]);
        let msgs = app
            .slack
            .wait_for_messages(NOTICES, 2, Duration::from_secs(10))
            .await;
        assert!(
            msgs[1].text.contains("<@U0BOB> is now on call"),
            "{}",
            msgs[1].text
        );
        settled(&app).await;
        // 09:00: bob alone.
        clock.set_ms(t("2026-11-09T09:00:00Z"));
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB"]);
        let msgs = app
            .slack
            .wait_for_messages(NOTICES, 3, Duration::from_secs(10))
            .await;
        assert!(
            msgs[2].text.contains("<@U0CAROL> went off call"),
            "{}",
            msgs[2].text
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_group_never_stops_the_others_and_is_reported_once_with_an_error_id() {
    for db in TestDb::all("oncall::a_failing_group_never_stops_the_others").await {
        let (app, oncall) = spawn(db, None, |s| {
            let og = SourceSettings {
                provider: ProviderKind::Opsgenie,
                schedules: vec!["ops-rota".into()],
                by_name: true,
                ..pd_source(&[])
            };
            s.oncall.groups.insert(0, group("storage-oncall", vec![og]));
        })
        .await;
        app.slack
            .add_usergroup("S0STOR", "storage-oncall", &["U0ALICE"]);
        oncall.og_add("OG1", "ops-rota", "carol@example.com", None, None);
        oncall.og_forbid("OG1");
        on_call_now(&oncall, "PBOB", "bob@example.com");

        let r = run(&app, false).await;
        let failed = plan(&r, "storage-oncall");
        assert_eq!(failed.outcome, Outcome::Failed);
        let id = failed.error_id.clone().expect("an error id");
        assert!(
            failed.error.as_deref().unwrap().contains("403"),
            "{failed:?}"
        );
        assert_eq!(plan(&r, HANDLE).outcome, Outcome::Updated);
        assert_eq!(
            app.slack.usergroup_members("S0STOR"),
            ["U0ALICE"],
            "left as it was"
        );
        let msgs = app
            .slack
            .wait_for_messages(OPS, 1, Duration::from_secs(10))
            .await;
        assert!(msgs[0].text.contains(&id), "{}", msgs[0].text);
        assert!(msgs[0].text.contains("storage-oncall"), "{}", msgs[0].text);
        // The same failure again: throttled.
        run(&app, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(app.slack.messages_in(OPS).len(), 1);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opsgenie_and_grafana_oncall_sources_fill_their_groups() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |s| {
        let og = SourceSettings {
            provider: ProviderKind::Opsgenie,
            schedules: vec!["OG1".into()],
            ..pd_source(&[])
        };
        let gf = SourceSettings {
            provider: ProviderKind::Grafana,
            schedules: vec!["SGRAF".into()],
            ..pd_source(&[])
        };
        s.oncall.groups = vec![group("ops-oncall", vec![og]), group("web-oncall", vec![gf])];
        s.oncall.groups[1].handover_minutes = 60;
    })
    .await;
    app.slack.add_usergroup("S0OPS", "ops-oncall", &["U0ALICE"]);
    app.slack.add_usergroup("S0WEB", "web-oncall", &["U0ALICE"]);
    oncall.og_add("OG1", "ops", "carol@example.com", Some(now() - HOUR), None);
    oncall.gf_add_user("UG1", "bob@example.com", Some("U0BOB"));
    oncall.gf_add_user("UG2", "carol@example.com", Some("U0CAROL"));
    oncall.gf_set_on_call_now("SGRAF", &["UG1"]);
    oncall.gf_add_shift("SGRAF", "UG1", now() - HOUR, now() + HOUR / 2);
    // Carol's shift starts in 30 minutes: inside the 60-minute handover window.
    oncall.gf_add_shift("SGRAF", "UG2", now() + HOUR / 2, now() + 8 * HOUR);
    let r = run(&app, false).await;
    assert_eq!(plan(&r, "ops-oncall").outcome, Outcome::Updated, "{r:?}");
    assert_eq!(app.slack.usergroup_members("S0OPS"), ["U0CAROL"]);
    assert_eq!(app.slack.usergroup_members("S0WEB"), ["U0BOB", "U0CAROL"]);
    // Grafana users carry their Slack IDs: only carol's Opsgenie email was looked up.
    assert_eq!(app.slack.call_count("users.lookupByEmail"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_oncall_command_shows_who_is_on_now_and_next() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |_| {}).await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    oncall.pd_add(PdOncall::scheduled(
        "PCAROL",
        "carol@example.com",
        "PSCHED1",
        now() + HOUR,
        now() + 9 * HOUR,
    ));
    let resp = app.command("/oncall", "@platform-oncall", "U0ALICE").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("*@platform-oncall*"), "{text}");
    assert!(text.contains("Now: <@U0BOB> (until <!date^"), "{text}");
    assert!(text.contains("Next: <@U0CAROL> from <!date^"), "{text}");

    let resp = app.command("/oncall", "nope", "U0ALICE").await;
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("no on-call group *nope*"),
        "{body}"
    );
    // Reading changes nothing.
    assert_eq!(app.slack.call_count("usergroups.users.update"), 0);
    app.stop().await;
}

/// §D: `/oncalls` lists on-calls per escalation rule, so a schedule no policy uses returns
/// nothing there; its own final layer says who is on call, and the plan says which answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_outside_every_escalation_policy_is_read_from_its_final_layer() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |s| {
        s.oncall.groups = vec![group(HANDLE, vec![pd_source(&["PSCHED1", "PLONE"])])];
    })
    .await;
    on_call_now(&oncall, "PBOB", "bob@example.com");
    oncall.pd_add_unreferenced(PdOncall::scheduled(
        "PCAROL",
        "carol@example.com",
        "PLONE",
        now() - HOUR,
        now() + HOUR,
    ));

    // The dry run names both people and where each answer came from.
    let r = run(&app, true).await;
    let out = render(&r);
    assert!(
        out.contains("+ added     U0CAROL (carol@example.com)"),
        "{out}"
    );
    assert!(out.contains("+ added     U0BOB (bob@example.com)"), "{out}");
    assert!(
        out.contains("source: pagerduty /oncalls: schedule PSCHED1\n"),
        "{out}"
    );
    assert!(
        out.contains("source: pagerduty /schedules/PLONE final layer"),
        "{out}"
    );
    let asked: Vec<String> = oncall
        .calls("pagerduty")
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert!(
        !asked.contains(&"/schedules/PSCHED1".to_string()),
        "a schedule /oncalls answered for needs no fallback: {asked:?}"
    );

    // The real run puts both in the group.
    let r = run(&app, false).await;
    assert_eq!(plan(&r, HANDLE).outcome, Outcome::Updated);
    let mut members = app.slack.usergroup_members(GROUP);
    members.sort();
    assert_eq!(members, ["U0BOB", "U0CAROL"]);

    // `/oncall` names Carol too, and says where the answer came from.
    let resp = app.command("/oncall", "@platform-oncall", "U0ALICE").await;
    let body: Value = resp.json().await.unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("<@U0CAROL>"), "{text}");
    assert!(text.contains("/schedules/PLONE final layer"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_periodic_sync_runs_inside_serve() {
    let (app, oncall) = {
        let oncall = FakeOncall::start().await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        let pd = oncall.pagerduty_url();
        let app = TestAppBuilder::new(TestDb::sqlite())
            .await
            .settings(move |s| {
                s.oncall.interval_secs = 1;
                s.oncall.pagerduty.base_url = pd.parse().unwrap();
                s.oncall.pagerduty.token = slackops::config::Secret::new(PD_TOKEN);
                s.oncall.groups = vec![group(HANDLE, vec![pd_source(&["PSCHED1"])])];
            })
            .with_periodic()
            .spawn()
            .await;
        app.slack.add_user("U0BOB", "bob", "bob@example.com", "UTC");
        app.slack.add_channel(NOTICES, "platform-oncall");
        app.slack.add_usergroup(GROUP, HANDLE, &["U0ALICE"]);
        (app, oncall)
    };
    eventually(
        Duration::from_secs(15),
        "the periodic sync to update the group",
        || async { (app.slack.usergroup_members(GROUP) == ["U0BOB"]).then_some(()) },
    )
    .await;
    drop(oncall);
    app.stop().await;
}

/// `slackops oncall sync` as an operator runs it: the real binary, configured by environment.
async fn cli(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_slackops"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI exits within 60 s")
    .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_prints_the_plan_changes_nothing_on_a_dry_run_and_syncs_otherwise() {
    let slack = crate::support::fake_slack::FakeSlack::start().await;
    let oncall = FakeOncall::start().await;
    slack.add_user("U0ALICE", "alice", "alice@example.com", "UTC");
    slack.add_user("U0BOB", "bob", "bob@example.com", "UTC");
    slack.add_channel(NOTICES, "platform-oncall");
    slack.add_usergroup(GROUP, HANDLE, &["U0ALICE"]);
    on_call_now(&oncall, "PBOB", "bob@example.com");
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("SLACKOPS_DATABASE__URL", format!("sqlite://{}", dir.path().join("cli.db").display())),
        ("SLACKOPS_SLACK__SIGNING_SECRET", "cli-signing-secret-0123".into()),
        ("SLACKOPS_SLACK__BOT_TOKEN", slack.token()),
        ("SLACKOPS_SLACK__API_URL", slack.api_url()),
        ("SLACKOPS_ONCALL__PAGERDUTY__BASE_URL", oncall.pagerduty_url()),
        ("SLACKOPS_ONCALL__PAGERDUTY__TOKEN", PD_TOKEN.into()),
        (
            "SLACKOPS_ONCALL__GROUPS",
            format!(
                r#"[{{handle="{HANDLE}",channel="{NOTICES}",sources=[{{provider="pagerduty",schedules=["PSCHED1"]}}]}}]"#
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let (code, out, err) = cli(&["oncall", "sync", "--dry-run"], &env).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("@platform-oncall (S0PLAT): would update (dry run)"),
        "{out}"
    );
    assert!(out.contains("+ added     U0BOB (bob@example.com)"), "{out}");
    assert!(out.contains("- removed   U0ALICE"), "{out}");
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert_eq!(slack.usergroup_members(GROUP), ["U0ALICE"]);
    assert_eq!(slack.call_count("usergroups.users.update"), 0);

    let (code, out, err) = cli(&["oncall", "sync", "--group", "@platform-oncall"], &env).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("@platform-oncall (S0PLAT): updated"), "{out}");
    assert_eq!(slack.usergroup_members(GROUP), ["U0BOB"]);
    // The CLI delivered the notice it queued before exiting.
    assert_eq!(slack.messages_in(NOTICES).len(), 1);

    let (code, _, err) = cli(&["oncall", "sync", "--group", "nope"], &env).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown group nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_hitting_every_group_is_reported_in_one_message() {
    let (app, _oncall) = spawn(TestDb::sqlite(), None, |s| {
        s.oncall.groups = (0..5)
            .map(|i| group(&format!("team{i}-oncall"), vec![pd_source(&["PSCHED1"])]))
            .collect();
    })
    .await;
    app.slack
        .fail_next("usergroups.list", Fault::error("missing_scope"), 1);
    let r = run(&app, false).await;
    assert_eq!(r.failures(), 5);
    assert!(r.groups.iter().all(|g| g.error_id.is_some()));
    let msgs = app
        .slack
        .wait_for_messages(OPS, 1, Duration::from_secs(10))
        .await;
    assert!(
        msgs[0].text.contains("could not update 5 of 5 groups"),
        "{}",
        msgs[0].text
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.slack.messages_in(OPS).len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notice_delayed_past_the_next_change_is_not_posted() {
    for db in TestDb::all("oncall::a_notice_delayed_past_the_next_change").await {
        let (app, oncall) = spawn(db, None, |_| {}).await;
        on_call_now(&oncall, "PBOB", "bob@example.com");
        run(&app, false).await;
        app.slack
            .wait_for_messages(NOTICES, 1, Duration::from_secs(10))
            .await;
        oncall.pd_clear();
        on_call_now(&oncall, "PCAROL", "carol@example.com");
        run(&app, false).await;
        app.slack
            .wait_for_messages(NOTICES, 2, Duration::from_secs(10))
            .await;
        settled(&app).await;
        let dm = app.slack.dm_channel_of("U0BOB").expect("bob got a DM");
        assert_eq!(app.slack.messages_in(&dm).len(), 1);

        // The first change's notice and DM, delivered late (as after a Slack outage).
        let late = slackops::oncall::sync::Notice {
            handle: HANDLE.into(),
            usergroup_id: GROUP.into(),
            channel: Some(NOTICES.into()),
            added: vec!["U0BOB".into()],
            removed: vec!["U0ALICE".into()],
            members: vec!["U0BOB".into()],
            generation: 1,
        };
        let dm_job = slackops::oncall::notify::Dm {
            handle: HANDLE.into(),
            user: "U0BOB".into(),
            members: vec!["U0BOB".into()],
        };
        let jobs = app.state.jobs();
        jobs.enqueue(slackops::jobs::NewJob::new(
            slackops::oncall::JOB_NOTICE,
            &late,
        ))
        .await
        .unwrap();
        jobs.enqueue(slackops::jobs::NewJob::new(
            slackops::oncall::JOB_DM,
            &dm_job,
        ))
        .await
        .unwrap();
        settled(&app).await;
        assert_eq!(
            app.slack.messages_in(NOTICES).len(),
            2,
            "superseded: not posted"
        );
        assert_eq!(
            app.slack.messages_in(&dm).len(),
            1,
            "bob is off call: no DM"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_oncall_command_names_opsgenie_s_next_people_without_a_time() {
    let (app, oncall) = spawn(TestDb::sqlite(), None, |s| {
        let og = SourceSettings {
            provider: ProviderKind::Opsgenie,
            schedules: vec!["OG1".into()],
            ..pd_source(&[])
        };
        s.oncall.groups = vec![group(HANDLE, vec![og])];
    })
    .await;
    oncall.og_add(
        "OG1",
        "ops",
        "bob@example.com",
        Some(now() - HOUR),
        Some(now() + HOUR),
    );
    oncall.og_add("OG1", "ops", "carol@example.com", Some(now() + HOUR), None);
    let resp = app.command("/oncall", "", "U0ALICE").await;
    let body: Value = resp.json().await.unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("Now: <@U0BOB>"), "{text}");
    assert!(
        text.contains("Next: <@U0CAROL> (Opsgenie does not say when)"),
        "{text}"
    );
    app.stop().await;
}

/// The sample of one series in a `/metrics` text, if exported.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_successful_sync_of_each_group_is_exported_and_a_kept_group_counts_as_synced() {
    for db in TestDb::all("oncall::the_last_successful_sync_of_each_group_is_exported").await {
        let start = now();
        let clock = ManualClock::at_secs(start / 1000);
        let (app, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.interval_secs = 300;
        })
        .await;
        let last_sync =
            format!("slackops_oncall_group_last_sync_timestamp_seconds{{group=\"{HANDLE}\"}}");
        let m = app.metrics_text().await;
        assert_eq!(sample(&m, &last_sync), Some(0.0), "never synced: {m}");
        assert_eq!(
            sample(&m, "slackops_oncall_sync_interval_seconds"),
            Some(300.0),
            "the rules compare the age with the interval: {m}"
        );
        assert_eq!(
            sample(&m, "slackops_oncall_group_syncs_total{kind=\"failed\"}"),
            Some(0.0),
            "exported before the first failure, so increase() sees it: {m}"
        );

        on_call_now(&oncall, "PBOB", "bob@example.com");
        assert_eq!(
            plan(&run(&app, false).await, HANDLE).outcome,
            Outcome::Updated
        );
        let synced = (start / 1000) as f64;
        let m = app.metrics_text().await;
        assert_eq!(sample(&m, &last_sync), Some(synced), "{m}");

        // Nobody on call ten minutes later: the members are kept, and the group was synced.
        clock.advance_ms(600_000);
        oncall.pd_clear();
        assert_eq!(
            plan(&run(&app, false).await, HANDLE).outcome,
            Outcome::KeptEmpty
        );
        let m = app.metrics_text().await;
        assert_eq!(sample(&m, &last_sync), Some(synced + 600.0), "{m}");

        // A failing source leaves the time where it was, and counts the failure.
        clock.advance_ms(600_000);
        oncall.fail_next("pagerduty", OncallFault::Server(500), 10);
        assert_eq!(
            plan(&run(&app, false).await, HANDLE).outcome,
            Outcome::Failed
        );
        let m = app.metrics_text().await;
        assert_eq!(sample(&m, &last_sync), Some(synced + 600.0), "{m}");
        assert_eq!(
            sample(&m, "slackops_oncall_group_syncs_total{kind=\"failed\"}"),
            Some(1.0),
            "{m}"
        );
        app.stop().await;
    }
}
