//! Rotation groups (issue 15): `members: rotation` keeps a group such as `@platform-rotation` equal
//! to everyone with a shift in the next `rotation_days` days, per provider (PagerDuty `/oncalls`
//! over the window, Grafana OnCall `final_shifts`, a static rota), through the real service against
//! the fakes on an injected clock; the group changes when a shift leaves or enters the window.

use slackops::clock::ManualClock;
use slackops::oncall::settings::{Members, ProviderKind, RotaEvery, RotaSettings, SourceSettings};

use crate::helpers::TestDb;
use crate::oncall::{GROUP, HANDLE, HOUR, group, pd_source, run, settled, spawn};
use crate::support::fake_oncall::PdOncall;

const DAY: i64 = 24 * HOUR;

fn t(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pagerduty_rotation_group_holds_everyone_with_a_shift_in_the_window() {
    for db in TestDb::all("oncall_rotation::pagerduty").await {
        let now = t("2026-11-09T09:00:00Z");
        let clock = ManualClock::at_secs(now / 1000);
        let (app, oncall) = spawn(db, Some(clock.clone()), |s| {
            s.oncall.groups[0].members = Members::Rotation;
            s.oncall.groups[0].rotation_days = 7;
        })
        .await;
        oncall.pd_add(PdOncall::scheduled(
            "PBOB",
            "bob@example.com",
            "PSCHED1",
            now - DAY,
            now + DAY,
        ));
        oncall.pd_add(PdOncall::scheduled(
            "PCAROL",
            "carol@example.com",
            "PSCHED1",
            now + DAY,
            now + 3 * DAY,
        ));
        // Outside the 7 days: not (yet) in the rotation group.
        oncall.pd_add(PdOncall::scheduled(
            "PALICE",
            "alice@example.com",
            "PSCHED1",
            now + 9 * DAY,
            now + 10 * DAY,
        ));
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0BOB", "U0CAROL"]);
        // Rotation members are not told they are on call.
        settled(&app).await;
        assert!(app.slack.messages_in("U0CAROL").is_empty());
        // The next change: bob's shift ends (he has no later one).
        let next = slackops::oncall::schedule::recorded(&app.state, HANDLE)
            .await
            .unwrap();
        assert_eq!(next, Some(now + DAY));
        clock.set_ms(now + DAY);
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0CAROL"]);
        // Two days later alice's shift is inside the 7 days.
        clock.set_ms(now + 2 * DAY + HOUR);
        run(&app, false).await;
        assert_eq!(app.slack.usergroup_members(GROUP), ["U0ALICE", "U0CAROL"]);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grafana_and_static_rotation_groups_hold_the_whole_rota() {
    let now = t("2026-11-09T09:00:00Z");
    let clock = ManualClock::at_secs(now / 1000);
    let (app, oncall) = spawn(TestDb::sqlite(), Some(clock.clone()), |s| {
        s.oncall.rotas.insert(
            "web".into(),
            RotaSettings {
                people: vec![
                    "carol@example.com".into(),
                    "U0BOB".into(),
                    "alice@example.com".into(),
                ],
                every: RotaEvery::Weekly,
                handoff: "09:00".into(),
                weekday: Some("monday".into()),
                start: "2026-11-02".into(),
                utc_offset: "+00:00".into(),
            },
        );
        let gf = SourceSettings {
            provider: ProviderKind::Grafana,
            schedules: vec!["SGRAF".into()],
            ..pd_source(&[])
        };
        let st = SourceSettings {
            provider: ProviderKind::Static,
            rota: Some("web".into()),
            ..pd_source(&[])
        };
        let mut web = group("web-rotation", vec![st]);
        web.members = Members::Rotation;
        // Two weekly shifts ahead: bob's (from now: carol's week has just ended) and alice's
        // (next Monday).
        web.rotation_days = 8;
        let mut graf = group("graf-rotation", vec![gf]);
        graf.members = Members::Rotation;
        s.oncall.groups = vec![web, graf];
    })
    .await;
    app.slack
        .add_usergroup("S0WEB", "web-rotation", &["U0NOOP"]);
    app.slack
        .add_usergroup("S0GRAF", "graf-rotation", &["U0NOOP"]);
    oncall.gf_add_user("UG1", "bob@example.com", Some("U0BOB"));
    oncall.gf_add_user("UG2", "carol@example.com", Some("U0CAROL"));
    oncall.gf_add_user("UG3", "alice@example.com", Some("U0ALICE"));
    oncall.gf_set_on_call_now("SGRAF", &["UG1"]);
    oncall.gf_add_shift("SGRAF", "UG1", now - HOUR, now + 2 * DAY);
    oncall.gf_add_shift("SGRAF", "UG2", now + 2 * DAY, now + 9 * DAY);
    // Beyond the 28-day default.
    oncall.gf_add_shift("SGRAF", "UG3", now + 40 * DAY, now + 41 * DAY);
    run(&app, false).await;
    assert_eq!(app.slack.usergroup_members("S0WEB"), ["U0ALICE", "U0BOB"]);
    assert_eq!(app.slack.usergroup_members("S0GRAF"), ["U0BOB", "U0CAROL"]);
    app.stop().await;
}

#[test]
fn an_opsgenie_rotation_group_or_a_window_past_90_days_is_refused_by_name() {
    let mut s = slackops::oncall::settings::OncallSettings::default();
    s.opsgenie.token = slackops::config::Secret::new("k");
    let mut g = group(
        HANDLE,
        vec![SourceSettings {
            provider: ProviderKind::Opsgenie,
            schedules: vec!["OG1".into()],
            ..pd_source(&[])
        }],
    );
    g.members = Members::Rotation;
    g.rotation_days = 91;
    s.groups = vec![g];
    let keys: Vec<String> = s.problems().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        ["oncall.groups[0].members", "oncall.groups[0].rotation_days"]
    );
    s.groups[0].rotation_days = 28;
    s.groups[0].members = Members::OnCall;
    assert!(s.problems().is_empty(), "{:?}", s.problems());
}
