//! Exponential backoff with equal jitter (half the delay fixed, half random), shared by every
//! retry in the service: the upstream clients' retries within one call and the job queue's
//! retries between attempts. One formula, so retries against a struggling upstream spread out the
//! same way wherever they come from.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (1 for the first retry): `base` doubled per attempt,
/// capped at `cap`, of which a random half is jitter. Never zero.
pub fn exponential(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let base = base.as_millis().min(u128::from(u64::MAX)) as u64;
    let cap = cap.as_millis().min(u128::from(u64::MAX)) as u64;
    let exp = attempt.clamp(1, 31) - 1;
    let delay = base.saturating_mul(1u64 << exp).min(cap).max(1);
    Duration::from_millis(delay / 2 + rand::rng().random_range(0..=delay / 2))
}

/// Retries within one upstream call (Slack, the on-call providers): 200 ms, 400 ms, 800 ms …
/// capped at 5 s.
pub fn upstream(attempt: u32) -> Duration {
    exponential(attempt, Duration::from_millis(200), Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_is_capped_with_half_jitter() {
        for attempt in 1..40 {
            let d = upstream(attempt);
            let full = (200u64 << (attempt - 1).min(10)).min(5000);
            assert!(d >= Duration::from_millis(full / 2), "{attempt}: {d:?}");
            assert!(d <= Duration::from_millis(full), "{attempt}: {d:?}");
        }
        assert!(exponential(1, Duration::ZERO, Duration::ZERO) <= Duration::from_millis(1));
        let jobs = exponential(3, Duration::from_secs(1), Duration::from_secs(300));
        assert!(
            jobs >= Duration::from_secs(2) && jobs <= Duration::from_secs(4),
            "{jobs:?}"
        );
    }
}
