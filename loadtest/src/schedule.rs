//! When requests are due.
//!
//! Closed model: user `i` starts at `i / spawn_rate` and then loops.
//! Open model: arrival `k` is due at `k / rate` from the start, whatever the
//! responses do. Workers take arrivals in order from one atomic counter, so
//! at most `--max-in-flight` are outstanding and none is skipped: when all
//! workers are busy (the server stalls), later arrivals go out late and their
//! latency counts from when they were due (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The open model's arrival times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrivals {
    rate: f64,
    duration: Option<Duration>,
    limit: Option<u64>,
}

impl Arrivals {
    /// `rate` arrivals per second, for `duration` and/or at most `limit` arrivals.
    pub fn new(rate: f64, duration: Option<Duration>, limit: Option<u64>) -> Arrivals {
        assert!(
            rate.is_finite() && rate > 0.0,
            "the arrival rate must be positive"
        );
        assert!(
            duration.is_some() || limit.is_some(),
            "an open run needs an end"
        );
        Arrivals {
            rate,
            duration,
            limit,
        }
    }

    /// When arrival `k` (from 0) is due, as an offset from the start; `None`
    /// when the run ends before it.
    pub fn due(&self, k: u64) -> Option<Duration> {
        if self.limit.is_some_and(|n| k >= n) {
            return None;
        }
        let due = self.offset(k);
        match self.duration {
            Some(d) if due >= d => None,
            _ => Some(due),
        }
    }

    /// How many arrivals the run has.
    pub fn count(&self) -> u64 {
        let by_time = self.duration.map(|d| {
            // First k whose due time is at or past the end; start near it and settle.
            let mut k = (d.as_secs_f64() * self.rate).floor() as u64;
            while k > 0 && self.offset(k - 1) >= d {
                k -= 1;
            }
            while self.offset(k) < d {
                k += 1;
            }
            k
        });
        match (by_time, self.limit) {
            (Some(t), Some(l)) => t.min(l),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => unreachable!("checked in Arrivals::new"),
        }
    }

    /// `k / rate`, rounded to whole nanoseconds so that an arrival landing
    /// exactly on the end is excluded instead of decided by float noise.
    fn offset(&self, k: u64) -> Duration {
        Duration::from_nanos((k as f64 * 1e9 / self.rate).round() as u64)
    }
}

/// Hands out arrivals in order to the open model's workers.
#[derive(Debug)]
pub struct Tickets {
    next: AtomicU64,
    arrivals: Arrivals,
}

/// One arrival taken by a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub index: u64,
    /// When it is due, as an offset from the start.
    pub due: Duration,
}

impl Tickets {
    pub fn new(arrivals: Arrivals) -> Tickets {
        Tickets {
            next: AtomicU64::new(0),
            arrivals,
        }
    }

    /// The next arrival, or `None` when the run has no more.
    pub fn take(&self) -> Option<Ticket> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        self.arrivals.due(index).map(|due| Ticket { index, due })
    }
}

/// Where a request's latency is measured from.
///
/// A worker that took its arrival early and slept until it was due was idle:
/// any lateness after that is the timer's (tokio sleeps in 1ms steps), not the
/// server's, so latency counts from the actual send. A worker that took its
/// arrival already late was busy because earlier responses were slow: that
/// wait is part of what a real client would see, so latency counts from the
/// intended time.
pub fn latency_origin(intended: Instant, taken_at: Instant, sent_at: Instant) -> Instant {
    if taken_at >= intended {
        intended
    } else {
        sent_at.max(intended)
    }
}

/// When closed-model user `i` (from 0) starts: `i / spawn_rate` seconds in,
/// or at once without a spawn rate.
pub fn user_start(i: u32, spawn_rate: Option<f64>) -> Duration {
    match spawn_rate {
        Some(r) => Duration::from_nanos((f64::from(i) * 1e9 / r).round() as u64),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced_and_end_before_the_duration() {
        let a = Arrivals::new(4.0, Some(Duration::from_secs(1)), None);
        let dues: Vec<_> = (0..10).map_while(|k| a.due(k)).collect();
        assert_eq!(dues, [0, 250, 500, 750].map(Duration::from_millis));
        assert_eq!(a.count(), 4);

        let a = Arrivals::new(10.0, Some(Duration::from_millis(300)), None);
        assert_eq!(a.due(2), Some(Duration::from_millis(200)));
        assert_eq!(a.due(3), None, "0.3s * 10/s is exactly 3 arrivals, not 4");
        assert_eq!(a.count(), 3);

        let a = Arrivals::new(200.0, Some(Duration::from_secs(2)), None);
        assert_eq!(a.count(), 400);
        assert_eq!(a.due(399), Some(Duration::from_millis(1995)));
        assert_eq!(a.due(400), None);
    }

    #[test]
    fn fractional_rates_and_limits() {
        let a = Arrivals::new(0.5, Some(Duration::from_secs(5)), None);
        assert_eq!(
            (0..9).map_while(|k| a.due(k)).collect::<Vec<_>>(),
            [0, 2, 4].map(Duration::from_secs)
        );
        assert_eq!(a.count(), 3);

        let a = Arrivals::new(3.0, Some(Duration::from_secs(10)), Some(5));
        assert_eq!(a.count(), 5);
        assert_eq!(a.due(4).unwrap().as_nanos(), 1_333_333_333);
        assert_eq!(a.due(5), None);

        let a = Arrivals::new(1000.0, None, Some(7));
        assert_eq!(a.count(), 7);
    }

    #[test]
    fn tickets_come_in_order_and_stop() {
        let t = Tickets::new(Arrivals::new(2.0, Some(Duration::from_secs(2)), None));
        let got: Vec<_> = std::iter::from_fn(|| t.take()).collect();
        assert_eq!(
            got.iter().map(|t| t.index).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(got[3].due, Duration::from_millis(1500));
        assert_eq!(t.take(), None, "stays ended");
    }

    #[test]
    fn latency_counts_from_intended_time_only_when_late() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Idle worker: took it 5ms early, the timer woke it 1ms late: measure from the send.
        assert_eq!(
            latency_origin(t0 + ms(10), t0 + ms(5), t0 + ms(11)),
            t0 + ms(11)
        );
        // Busy worker: it was due at 10ms but only free at 40ms: the 30ms wait counts.
        assert_eq!(
            latency_origin(t0 + ms(10), t0 + ms(40), t0 + ms(40)),
            t0 + ms(10)
        );
        // Never earlier than intended.
        assert_eq!(
            latency_origin(t0 + ms(10), t0 + ms(5), t0 + ms(9)),
            t0 + ms(10)
        );
    }

    #[test]
    fn users_are_spawned_at_the_spawn_rate() {
        assert_eq!(user_start(0, Some(10.0)), Duration::ZERO);
        assert_eq!(user_start(25, Some(10.0)), Duration::from_millis(2500));
        assert_eq!(user_start(3, Some(0.5)), Duration::from_secs(6));
        assert_eq!(user_start(49, None), Duration::ZERO);
    }
}
