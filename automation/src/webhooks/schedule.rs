//! The retry schedule, pure: after the n-th failed attempt at a message, the next attempt
//! waits [`BASE_DELAYS`]\[n-1\] (then 12 h each time), with ±10 % jitter, as long as the next
//! attempt is due within [`GIVE_UP_AFTER`] (3 days) of the first failure (nominal times,
//! without jitter, so the number of attempts is fixed: 14). After the last failure the
//! subscription is disabled.
//!
//! | failure | next attempt after | nominal time since the first failure |
//! |---|---|---|
//! | 1 | 5 s | 5 s |
//! | 2 | 30 s | 35 s |
//! | 3 | 2 min | 2 min 35 s |
//! | 4 | 10 min | 12 min 35 s |
//! | 5 | 30 min | 42 min 35 s |
//! | 6 | 1 h | 1 h 42 min |
//! | 7 | 2 h | 3 h 42 min |
//! | 8 | 4 h | 7 h 42 min |
//! | 9 | 8 h | 15 h 42 min |
//! | 10–13 | 12 h | 27 h 42 min … 63 h 42 min |
//! | 14 | — (disabled) | |
//!
//! Tests run it under a compressed clock: every delay divided by a factor
//! (`crm-api serve --webhooks-time-divisor`, hidden, for tests only).

use std::time::Duration;

/// The first delays, then [`LATER_DELAY`] each time.
pub const BASE_DELAYS: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
];
/// The delay after the ninth failure and every later one.
pub const LATER_DELAY: Duration = Duration::from_secs(12 * 60 * 60);
/// A message is given up (and its subscription disabled) once the next attempt would come
/// later than this after its first failure.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 60 * 60);
/// Jitter: a delay is multiplied by a factor in [1 - JITTER, 1 + JITTER].
pub const JITTER: f64 = 0.1;

/// The nominal delay after the `failures`-th failure (1-based), or `None` when the schedule
/// has ended and the subscription is to be disabled.
pub fn nominal_delay(failures: u32) -> Option<Duration> {
    if failures == 0 {
        return Some(Duration::ZERO);
    }
    let delay = |n: u32| {
        BASE_DELAYS
            .get(n as usize - 1)
            .copied()
            .unwrap_or(LATER_DELAY)
    };
    let elapsed: Duration = (1..=failures).map(delay).sum();
    (elapsed <= GIVE_UP_AFTER).then(|| delay(failures))
}

/// The delay after the `failures`-th failure with jitter (`unit` in [0, 1): 0.5 is none),
/// divided by `divisor` (1 in production), or `None` when the schedule has ended.
pub fn retry_delay(failures: u32, unit: f64, divisor: u32) -> Option<Duration> {
    let nominal = nominal_delay(failures)?;
    let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    Some(nominal.mul_f64(factor) / divisor.max(1))
}

/// How many attempts a message gets before its subscription is disabled.
pub fn attempts_before_disabling() -> u32 {
    (1..).find(|n| nominal_delay(*n).is_none()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_backs_off_then_ends_within_three_days() {
        let delays: Vec<u64> = (1..)
            .map_while(nominal_delay)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(
            delays,
            [
                5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 43_200, 43_200, 43_200,
                43_200
            ]
        );
        let total: u64 = delays.iter().sum();
        assert!(total <= GIVE_UP_AFTER.as_secs(), "{total}");
        // One more 12 h wait would pass 3 days.
        assert!(total + LATER_DELAY.as_secs() > GIVE_UP_AFTER.as_secs());
        assert_eq!(attempts_before_disabling(), 14);
        assert_eq!(nominal_delay(14), None);
        assert_eq!(nominal_delay(100), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_the_divisor_compresses() {
        assert_eq!(retry_delay(1, 0.5, 1), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(1, 0.0, 1), Some(Duration::from_millis(4_500)));
        assert_eq!(retry_delay(1, 1.0, 1), Some(Duration::from_millis(5_500)));
        assert_eq!(retry_delay(2, 0.5, 1_000), Some(Duration::from_millis(30)));
        for failures in 1..14 {
            for unit in [0.0, 0.25, 0.5, 0.99, 1.0, -3.0, 7.0] {
                let delay = retry_delay(failures, unit, 1).expect("scheduled");
                let nominal = nominal_delay(failures).expect("nominal");
                assert!(delay >= nominal.mul_f64(0.9) && delay <= nominal.mul_f64(1.1));
            }
        }
        assert_eq!(retry_delay(14, 0.5, 1), None);
        assert_eq!(retry_delay(1, 0.5, 0), Some(Duration::from_secs(5)));
    }
}
