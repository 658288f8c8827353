//! Given/when/then tests of the launch command's limits (max lifetime, budget) and of the
//! relaunch backoff, with the arithmetic of each deadline in the comments.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use tgp_events::events::{InstanceEvent, InterruptionReason, Limit, OfferSummary};
use tgp_events::{AttemptId, BillingGranularity, BillingUnit, InstanceId, LaunchCommand, LaunchRequest, Money};

use crate::aggregate::{BUDGET_MARGIN, Instance, InstanceCommand as C};
use crate::instance_actor::{Step, next_step};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}
fn id() -> InstanceId {
    "job-limits".parse().unwrap()
}
fn money(s: &str) -> Money {
    s.parse().unwrap()
}
fn request(extra: &str) -> LaunchRequest {
    let json = format!(r#"{{"gpu_type":"H100","gpu_count":1,"max_hourly_price":"3"{extra}}}"#);
    LaunchCommand::from_json(json.as_bytes()).unwrap().with_env(Default::default())
}
fn requested(extra: &str) -> InstanceEvent {
    InstanceEvent::LaunchRequested { instance_id: id(), request: request(extra), at: t0() }
}
fn selected(price: &str) -> InstanceEvent {
    let offer = OfferSummary {
        provider: "simulated".parse().unwrap(),
        offer_id: format!("o-{price}"),
        gpu_type: tgp_events::GpuType::H100,
        gpu_count: 1,
        region: "us-east".parse().unwrap(),
        hourly_price: money(price),
        spot: true,
    };
    InstanceEvent::OfferSelected { offer, bid: None, reason: "cheapest".into(), candidates: vec![], at: t0() }
}
fn attempted(n: u32, at: DateTime<Utc>) -> InstanceEvent {
    InstanceEvent::LaunchAttempted {
        attempt_id: AttemptId::new(&id(), n),
        attempt_number: n,
        provider: "simulated".parse().unwrap(),
        offer_id: "o".into(),
        at,
    }
}
fn launched(n: u32, price: &str, billing: BillingGranularity, at: DateTime<Utc>) -> InstanceEvent {
    InstanceEvent::Launched {
        attempt_id: AttemptId::new(&id(), n),
        provider: "simulated".parse().unwrap(),
        provider_instance_id: format!("m-{n}"),
        hourly_price: money(price),
        spot: true,
        billing,
        adopted: false,
        at,
    }
}
fn relaunched(n: u32, price: &str, at: DateTime<Utc>) -> InstanceEvent {
    InstanceEvent::Relaunched {
        attempt_id: AttemptId::new(&id(), n),
        provider: "simulated".parse().unwrap(),
        provider_instance_id: format!("m-{n}"),
        replaces: format!("m-{}", n - 1),
        hourly_price: money(price),
        spot: true,
        billing: BillingGranularity::PER_SECOND,
        adopted: false,
        at,
    }
}
fn interrupted(n: u32, at: DateTime<Utc>) -> InstanceEvent {
    InstanceEvent::Interrupted {
        provider_instance_id: format!("m-{n}"),
        reason: InterruptionReason::Preempted,
        raw_status: "preempted".into(),
        detected_by: "status_poll".into(),
        at,
    }
}
fn fold(events: &[InstanceEvent]) -> Instance {
    let mut instance = Instance::default();
    for e in events {
        instance.fold(e.clone());
    }
    instance
}
fn framework() -> TestFramework<Instance> {
    TestFramework::with(())
}

#[test]
fn max_lifetime_ends_the_chain_when_it_passes_and_not_before() {
    let given = vec![
        requested(r#","max_lifetime":"1h""#),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", BillingGranularity::PER_SECOND, t0() + Duration::minutes(1)),
    ];
    assert_eq!(fold(&given).limit_deadline(), Some((Limit::MaxLifetime, t0() + Duration::hours(1))));
    framework()
        .given(given.clone())
        .when(C::EnforceLimits { at: t0() + Duration::minutes(59) })
        .then_expect_events(vec![]);
    let end = t0() + Duration::hours(1);
    framework().given(given).when(C::EnforceLimits { at: end }).then_expect_events(vec![
        InstanceEvent::TerminationRequested {
            reason: "max_lifetime 1h reached".into(),
            limit: Some(Limit::MaxLifetime),
            at: end,
        },
    ]);
}

#[test]
fn a_budget_counts_every_run_of_the_chain() {
    // Budget $2.00. Run 1: $1.00/h per second from t0, interrupted at t0+1h: $1.00 billed.
    // Run 2: $2.00/h from t0+1h10m: the $1.00 left buys 1,800 s, so the chain must stop by
    // t0+1h10m+30m, less the margin for the termination call.
    let relaunch_at = t0() + Duration::minutes(70);
    let given = vec![
        requested(r#","budget":"2.00""#),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", BillingGranularity::PER_SECOND, t0()),
        interrupted(1, t0() + Duration::hours(1)),
        selected("2.00"),
        attempted(2, relaunch_at),
        relaunched(2, "2.00", relaunch_at),
    ];
    let instance = fold(&given);
    assert_eq!(instance.spent_dollar_seconds, rust_decimal::Decimal::from(3_600), "$1.00 x 3,600 s");
    let deadline = relaunch_at + Duration::minutes(30) - BUDGET_MARGIN;
    assert_eq!(instance.limit_deadline(), Some((Limit::Budget, deadline)));
    assert_eq!(next_step(&instance, deadline - Duration::seconds(1)), Step::Wait);
    assert_eq!(next_step(&instance, deadline), Step::EnforceLimits);
    framework().given(given).when(C::EnforceLimits { at: deadline }).then_expect_events(vec![
        InstanceEvent::TerminationRequested {
            reason: "budget $2.00 reached (finished runs billed $1.00)".into(),
            limit: Some(Limit::Budget),
            at: deadline,
        },
    ]);
}

#[test]
fn an_hourly_billed_run_stops_before_the_hour_it_cannot_pay_for() {
    // $1.00/h billed per started hour, budget $2.50: two whole hours are affordable, a third
    // started hour is not, so the run stops before t0+2h.
    let hourly = BillingGranularity { unit: BillingUnit::Hour, minimum_seconds: 0 };
    let instance = fold(&[
        requested(r#","budget":"2.50""#),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", hourly, t0()),
    ]);
    assert_eq!(instance.limit_deadline(), Some((Limit::Budget, t0() + Duration::hours(2) - BUDGET_MARGIN)));
    // A minimum billed period the budget cannot cover stops the run at once.
    let minimum = BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 3 * 3_600 };
    let instance = fold(&[
        requested(r#","budget":"2.50""#),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", minimum, t0()),
    ]);
    assert_eq!(instance.limit_deadline(), Some((Limit::Budget, t0())));
}

#[test]
fn a_price_whose_shortest_run_the_budget_cannot_pay_for_is_not_affordable() {
    // $1.00 left: at $20/h two minutes cost $0.67 (affordable); at $40/h, $1.33 (not). A one-hour
    // minimum at $2/h costs $2.00 (not).
    let instance = fold(&[requested(r#","budget":"1.00""#)]);
    assert!(instance.can_afford(money("20.00"), BillingGranularity::PER_SECOND));
    assert!(!instance.can_afford(money("40.00"), BillingGranularity::PER_SECOND));
    let hour_minimum = BillingGranularity { unit: BillingUnit::Second, minimum_seconds: 3_600 };
    assert!(!instance.can_afford(money("2.00"), hour_minimum));
    assert!(fold(&[requested("")]).can_afford(money("1000"), hour_minimum), "no budget, no limit");
}

#[test]
fn a_spent_budget_ends_a_chain_waiting_to_relaunch_at_once() {
    // $1.00 budget spent by a one-hour run at $1.00/h: the interrupted chain does not relaunch.
    let lost = t0() + Duration::hours(1);
    let given = vec![
        requested(r#","budget":"1.00""#),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", BillingGranularity::PER_SECOND, t0()),
        interrupted(1, lost),
    ];
    assert_eq!(next_step(&fold(&given), lost), Step::EnforceLimits);
    framework().given(given).when(C::EnforceLimits { at: lost }).then_expect_events(vec![
        InstanceEvent::TerminationRequested {
            reason: "budget $1.00 reached (finished runs billed $1.00)".into(),
            limit: Some(Limit::Budget),
            at: lost,
        },
        InstanceEvent::Terminated { provider_instance_id: None, at: lost },
    ]);
}

#[test]
fn relaunches_back_off_per_setback_in_a_row() {
    // Backoff 5 s, doubled per setback in a row: 5 s after the first interruption, 10 s after a
    // failed attempt that followed it; a capacity failure adds no wait; running resets it.
    let policy = r#","relaunch":{"backoff_seconds":5,"max_backoff_seconds":60}"#;
    let lost = t0() + Duration::hours(1);
    let mut events = vec![
        requested(policy),
        selected("1.00"),
        attempted(1, t0()),
        launched(1, "1.00", BillingGranularity::PER_SECOND, t0()),
        interrupted(1, lost),
    ];
    let instance = fold(&events);
    assert_eq!(instance.backoff_until(), Some(lost + Duration::seconds(5)));
    assert_eq!(next_step(&instance, lost + Duration::seconds(4)), Step::Wait);
    assert_eq!(next_step(&instance, lost + Duration::seconds(5)), Step::Select);
    assert_eq!(instance.next_wake(), Some(lost + Duration::seconds(5)));

    let failed_at = lost + Duration::seconds(6);
    let failure = |class| InstanceEvent::LaunchFailed {
        attempt_id: Some(AttemptId::new(&id(), 2)),
        provider: None,
        class,
        message: "no".into(),
        at: failed_at,
    };
    events.extend([selected("1.10"), attempted(2, lost), failure(tgp_events::events::FailureClass::Capacity)]);
    assert_eq!(fold(&events).backoff_until(), Some(lost + Duration::seconds(5)), "capacity fails over at once");
    events.extend([selected("1.20"), attempted(3, lost), failure(tgp_events::events::FailureClass::ProviderOutage)]);
    assert_eq!(fold(&events).backoff_until(), Some(failed_at + Duration::seconds(10)));
    events.extend([
        selected("1.30"),
        attempted(4, failed_at),
        relaunched(4, "1.30", failed_at),
        InstanceEvent::Running { provider_instance_id: "m-4".into(), connection: Default::default(), at: failed_at },
    ]);
    assert_eq!(fold(&events).setbacks, None);
}
