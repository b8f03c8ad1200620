//! On-call sync benchmark (issue 5): 200 Slack user groups × 8 people each, against the local fake
//! PagerDuty and fake Slack answering every request after 20 ms, on the embedded SQLite default.
//!
//! Measures the wall time of a full sync and the number of Slack and PagerDuty calls, for
//! 1. a cold run (every group differs from the schedule, every email unknown to the cache);
//! 2. a warm run with nothing changed (no write, every lookup served from the cache);
//! 3. a run after a handoff in 10 groups (writes only for those, lookups only for new people).
//!
//! Then a simulated day on an injected clock (issue 15): `--day-groups N` groups (default: as many
//! as `--groups`), one handoff each, spread over the day, once with the 5-minute interval alone and
//! once with the handoff task as well, both driven tick by tick through the real periodic tasks'
//! code: Slack and PagerDuty calls per day, and the delay from handoff to group change
//! (p50, p99, max) in clock time.
//!
//! Run: `cargo bench --bench oncall` (options: `-- --groups N --people N --latency-ms N
//! --concurrency N --day-groups N`). Only 127.0.0.1 is contacted. Exits non-zero when a run fails a group or the
//! call counts are not what diff-only writes and the cache promise.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use slackops::config::{Secret, Settings};
use slackops::oncall::settings::{GroupSettings, ProviderKind, SourceSettings};
use slackops::oncall::sync::{Outcome, SyncOptions, SyncReport, sync};
use slackops::startup::Application;
use support::fake_oncall::{FakeOncall, PD_TOKEN, PdOncall};
use support::fake_slack::FakeSlack;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn counts(slack: &FakeSlack) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in slack.all_calls() {
        *m.entry(c.method).or_insert(0) += 1;
    }
    m
}

struct Run {
    name: &'static str,
    wall: Duration,
    slack: BTreeMap<String, usize>,
    pagerduty: usize,
    report: SyncReport,
}

async fn measure(
    name: &'static str,
    state: &slackops::state::AppState,
    slack: &FakeSlack,
    oncall: &FakeOncall,
) -> Run {
    slack.reset_calls();
    oncall.reset_calls();
    let opts = SyncOptions {
        actor: "bench".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let report = sync(state, &opts).await.expect("sync runs");
    let wall = started.elapsed();
    Run {
        name,
        wall,
        slack: counts(slack),
        pagerduty: oncall.calls("pagerduty").len(),
        report,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    slackops::telemetry::install_crypto_provider();
    if let Ok(level) = std::env::var("BENCH_LOG") {
        slackops::telemetry::init(&slackops::config::LogSettings {
            level,
            ..Default::default()
        });
    }
    let n_groups = arg("--groups", 200);
    let n_people = arg("--people", 8);
    let latency = Duration::from_millis(arg("--latency-ms", 20) as u64);

    let slack = FakeSlack::start().await;
    let oncall = FakeOncall::start().await;
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000;
    let mut groups = Vec::new();
    for g in 0..n_groups {
        for p in 0..n_people {
            let (user, email) = (format!("U{g:04}P{p}"), format!("g{g}p{p}@example.com"));
            slack.add_user(&user, &user, &email, "UTC");
            oncall.pd_add(PdOncall::scheduled(
                &format!("PD{g}x{p}"),
                &email,
                &format!("PS{g}"),
                now - hour,
                now + 8 * hour,
            ));
        }
        slack.add_user(
            &format!("U{g:04}NEXT"),
            "next",
            &format!("g{g}next@example.com"),
            "UTC",
        );
        // Each group starts with someone who is no longer on call.
        slack.add_user(
            &format!("U{g:04}OLD"),
            "old",
            &format!("g{g}old@example.com"),
            "UTC",
        );
        slack.add_usergroup(
            &format!("S{g:04}"),
            &format!("team{g}-oncall"),
            &[&format!("U{g:04}OLD")],
        );
        groups.push(GroupSettings {
            handle: format!("team{g}-oncall"),
            sources: vec![SourceSettings {
                provider: ProviderKind::Pagerduty,
                schedules: vec![format!("PS{g}")],
                escalation_policies: vec![],
                escalation_levels: vec![],
                permanent: false,
                by_name: false,
                rota: None,
            }],
            channel: Some("C0ONCALL".into()),
            ..Default::default()
        });
    }
    slack.add_channel("C0ONCALL", "oncall");
    slack.set_latency(latency);
    oncall.set_latency(latency);

    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.database.url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ));
    s.slack.signing_secret = Secret::new("bench-signing-secret-0123456789");
    s.slack.bot_token = Secret::new(slack.token());
    s.slack.api_url = slack.api_url().parse().unwrap();
    s.oncall.interval_secs = 0;
    s.oncall.concurrency = arg("--concurrency", s.oncall.concurrency);
    s.oncall.pagerduty.base_url = oncall.pagerduty_url().parse().unwrap();
    s.oncall.pagerduty.token = Secret::new(PD_TOKEN);
    s.oncall.groups = groups;
    let concurrency = s.oncall.concurrency;
    // The job worker stays off: notice delivery is not part of the sync's wall time.
    let app = Application::builder(s)
        .without_worker()
        .without_periodic()
        .build()
        .await
        .expect("service builds");
    let state = app.state().clone();

    let cold = measure("cold: every group changes", &state, &slack, &oncall).await;
    let warm = measure("warm: nothing changed", &state, &slack, &oncall).await;
    // A handoff in 10 groups: person 0 hands over to the group's "next" person.
    let changed = n_groups.min(10);
    oncall.pd_clear();
    for g in 0..n_groups {
        for p in 0..n_people {
            let email = if g < changed && p == 0 {
                format!("g{g}next@example.com")
            } else {
                format!("g{g}p{p}@example.com")
            };
            oncall.pd_add(PdOncall::scheduled(
                &format!("PD{g}x{p}"),
                &email,
                &format!("PS{g}"),
                now - hour,
                now + 8 * hour,
            ));
        }
    }
    let handoff = measure("handoff in 10 groups", &state, &slack, &oncall).await;

    println!(
        "\n## On-call sync: {n_groups} groups × {n_people} people, fakes answering in {} ms, concurrency {concurrency}\n",
        latency.as_millis()
    );
    println!(
        "| run | wall time | groups updated | Slack calls | usergroups.list | usergroups.users.list | usergroups.users.update | users.lookupByEmail | PagerDuty calls |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for r in [&cold, &warm, &handoff] {
        let c = |m: &str| r.slack.get(m).copied().unwrap_or(0);
        let updated = r
            .report
            .groups
            .iter()
            .filter(|g| g.outcome == Outcome::Updated)
            .count();
        println!(
            "| {} | {:.2} s | {updated} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.wall.as_secs_f64(),
            r.slack.values().sum::<usize>(),
            c("usergroups.list"),
            c("usergroups.users.list"),
            c("usergroups.users.update"),
            c("users.lookupByEmail"),
            r.pagerduty
        );
        if r.report.failures() > 0 {
            ok = false;
            eprintln!("{}: {} group(s) failed", r.name, r.report.failures());
        }
    }
    let c = |r: &Run, m: &str| r.slack.get(m).copied().unwrap_or(0);
    let checks = [
        (
            "cold run writes every group",
            c(&cold, "usergroups.users.update") == n_groups,
        ),
        ("cold run under 5 s", cold.wall < Duration::from_secs(5)),
        (
            "warm run writes nothing",
            c(&warm, "usergroups.users.update") == 0,
        ),
        (
            "warm run looks nobody up",
            c(&warm, "users.lookupByEmail") == 0,
        ),
        (
            "handoff writes only the changed groups",
            c(&handoff, "usergroups.users.update") == changed,
        ),
        (
            "handoff looks up only the new people",
            c(&handoff, "users.lookupByEmail") == changed,
        ),
    ];
    println!();
    for (what, pass) in checks {
        println!("- {what}: {}", if pass { "yes" } else { "NO" });
        ok &= pass;
    }
    drop(app);
    ok &= day(arg("--day-groups", n_groups)).await;
    if !ok {
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ a simulated day

const SEC: i64 = 1000;
const DAY: i64 = 86_400 * SEC;
const INTERVAL: i64 = 300 * SEC;

/// What one simulated day cost and how late each group followed its handoff.
struct Day {
    slack: BTreeMap<String, usize>,
    pagerduty: usize,
    /// Handoff → group change, per group (ms on the injected clock).
    delays: Vec<i64>,
    wall: Duration,
}

/// `n` groups on one simulated day on an injected clock, each with one handoff, spread evenly
/// over the day: with the 5-minute interval alone, and with the handoff task as well (both the
/// real periodic tasks' code, driven tick by tick). The fakes answer at once: this counts calls
/// and measures lateness in clock time; the wall time of a run is the first table's.
async fn day(n: usize) -> bool {
    let interval_only = simulate(n, false).await;
    let scheduled = simulate(n, true).await;
    println!(
        "\n## A simulated day: {n} groups, one handoff each, spread over the day; interval 300 s\n"
    );
    println!(
        "| mode | Slack calls | usergroups.list | usergroups.users.list | usergroups.users.update | PagerDuty calls | delay p50 | delay p99 | delay max | simulation wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, d) in [
        ("interval alone", &interval_only),
        ("interval + handoff task (2 s tick)", &scheduled),
    ] {
        let c = |m: &str| d.slack.get(m).copied().unwrap_or(0);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            d.slack.values().sum::<usize>(),
            c("usergroups.list"),
            c("usergroups.users.list"),
            c("usergroups.users.update"),
            d.pagerduty,
            secs(pct(&d.delays, 50)),
            secs(pct(&d.delays, 99)),
            secs(*d.delays.iter().max().unwrap_or(&0)),
            d.wall.as_secs_f64(),
        );
    }
    let total = |d: &Day| d.slack.values().sum::<usize>() + d.pagerduty;
    let writes = |d: &Day| d.slack.get("usergroups.users.update").copied().unwrap_or(0);
    let checks = [
        (
            "every group changed once in each mode",
            interval_only.delays.len() == n && scheduled.delays.len() == n,
        ),
        (
            "one write per handoff in each mode (diff-only)",
            writes(&interval_only) == n && writes(&scheduled) == n,
        ),
        (
            "the handoff task adds at most 2 % calls",
            total(&scheduled) * 100 <= total(&interval_only) * 102,
        ),
        (
            "every handoff reaches Slack within 10 s",
            scheduled.delays.iter().all(|d| (0..=10 * SEC).contains(d)),
        ),
    ];
    println!();
    let mut ok = true;
    for (what, pass) in checks {
        println!("- {what}: {}", if pass { "yes" } else { "NO" });
        ok &= pass;
    }
    ok
}

fn pct(v: &[i64], p: usize) -> i64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    v[((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1]
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// One simulated day; `handoff_task`: run the handoff task every tick besides the interval.
async fn simulate(n: usize, handoff_task: bool) -> Day {
    use slackops::clock::ManualClock;
    use slackops::registry::Periodic;

    let t0 = 1_794_182_400_000; // 2026-11-09 00:00 UTC
    let spacing = DAY / n.max(1) as i64;
    let handoff = |g: usize| t0 + spacing / 2 + g as i64 * spacing;
    let slack = FakeSlack::start().await;
    let oncall = FakeOncall::start().await;
    let mut groups = Vec::new();
    for g in 0..n {
        let h = handoff(g);
        let people = [format!("U{g:04}A"), format!("U{g:04}B")];
        for (i, u) in people.iter().enumerate() {
            slack.add_user(u, u, &format!("{u}@example.com"), "UTC");
            oncall.pd_add(PdOncall::scheduled(
                &format!("P{u}"),
                &format!("{u}@example.com"),
                &format!("PS{g}"),
                h - DAY + i as i64 * DAY,
                h + i as i64 * DAY,
            ));
        }
        slack.add_usergroup(
            &format!("S{g:04}"),
            &format!("team{g}-oncall"),
            &[&people[0]],
        );
        groups.push(GroupSettings {
            handle: format!("team{g}-oncall"),
            sources: vec![SourceSettings {
                provider: ProviderKind::Pagerduty,
                schedules: vec![format!("PS{g}")],
                escalation_policies: vec![],
                escalation_levels: vec![],
                permanent: false,
                by_name: false,
                rota: None,
            }],
            channel: Some("C0ONCALL".into()),
            ..Default::default()
        });
    }
    slack.add_channel("C0ONCALL", "oncall");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.database.url = Secret::new(format!("sqlite://{}", dir.path().join("day.db").display()));
    s.slack.signing_secret = Secret::new("bench-signing-secret-0123456789");
    s.slack.bot_token = Secret::new(slack.token());
    s.slack.api_url = slack.api_url().parse().unwrap();
    s.oncall.interval_secs = (INTERVAL / SEC) as u64;
    s.oncall.pagerduty.base_url = oncall.pagerduty_url().parse().unwrap();
    s.oncall.pagerduty.token = Secret::new(PD_TOKEN);
    s.oncall.groups = groups;
    let clock = ManualClock::at_secs(t0 / 1000);
    let app = Application::builder(s)
        .clock(std::sync::Arc::new(clock.clone()))
        .without_worker()
        .without_periodic()
        .build()
        .await
        .expect("service builds");
    let state = app.state().clone();
    let interval_task = slackops::oncall::sync::SyncTask;
    let handoffs = slackops::oncall::sync::HandoffTask;
    // The start: every group read once (the interval task runs as soon as it takes its lease).
    interval_task.run(&state).await.expect("first interval");
    slack.reset_calls();
    oncall.reset_calls();
    let tick = slackops::oncall::schedule::TICK.as_millis() as i64;
    let started = Instant::now();
    let mut t = t0;
    while t < t0 + DAY {
        t += if handoff_task { tick } else { INTERVAL };
        clock.set_ms(t);
        if (t - t0) % INTERVAL == 0 {
            interval_task.run(&state).await.expect("interval sync");
        }
        if handoff_task {
            handoffs.run(&state).await.expect("handoff tick");
        }
    }
    let wall = started.elapsed();
    let changed: Vec<(String, i64)> =
        sqlx::query_as("SELECT handle, changed_at FROM oncall_groups WHERE generation = 1")
            .fetch_all(state.db().pool())
            .await
            .expect("read the changes");
    let delays = changed
        .iter()
        .filter_map(|(handle, at)| {
            let g: usize = handle
                .strip_prefix("team")?
                .strip_suffix("-oncall")?
                .parse()
                .ok()?;
            Some(at - handoff(g))
        })
        .collect();
    let day = Day {
        slack: counts(&slack),
        pagerduty: oncall.calls("pagerduty").len(),
        delays,
        wall,
    };
    drop(app);
    day
}
