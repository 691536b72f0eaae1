//! When and how long to wait before trying a registry request again.
//!
//! Registries fail in bursts: a 503 while one restarts, a 429 window from Docker
//! Hub or a proxy, a connection cut by a load balancer. kiln retries with
//! exponential backoff and jitter (0.5 s doubling, at most 10 s a wait) for as long
//! as the policy's window lasts (60 s by default), and waits what `Retry-After`
//! asks when that fits in the window. A refused connection is retried only a few
//! times: it usually means a wrong host or port, and the user should hear so fast.

use std::time::{Duration, Instant, SystemTime};

/// How often and how long to retry one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries after the first attempt (0: never retry).
    pub retries: u32,
    /// No retry starts later than this after the first attempt.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retries: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Retries of a refused connection, whatever the policy allows.
pub const CONNECT_RETRIES: u32 = 3;

const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(10);

impl Policy {
    /// The wait before retry number `retry` (1-based) of an operation that
    /// started at `started`, or `None` when the policy says to give up.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        started: Instant,
    ) -> Option<Duration> {
        self.delay_at(retry, retry_after, started.elapsed(), jitter())
    }

    /// [`Policy::delay`] with the elapsed time and a jitter factor in [0, 1).
    fn delay_at(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.retries {
            return None;
        }
        let backoff = FIRST
            .saturating_mul(1u32 << (retry - 1).min(16))
            .min(LONGEST);
        // Up to 25% more, so that many jobs hit by the same outage spread out.
        let wait = match retry_after {
            Some(asked) => asked,
            None => backoff.mul_f64(1.0 + jitter / 4.0),
        };
        (elapsed + wait <= self.window).then_some(wait)
    }
}

/// The retries of one operation so far, under its policy.
#[derive(Debug)]
pub struct Attempts {
    policy: Policy,
    started: Instant,
    /// Retries made so far.
    pub made: u32,
}

impl Attempts {
    pub fn new(policy: Policy) -> Attempts {
        Attempts {
            policy,
            started: Instant::now(),
            made: 0,
        }
    }

    /// The wait before the next retry, counting it; `None` to give up.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let wait = self
            .policy
            .delay(self.made + 1, retry_after, self.started)?;
        self.made += 1;
        Some(wait)
    }

    pub fn allowed(&self) -> u32 {
        self.policy.retries
    }

    /// Allow at most `n` retries from now on (a refused connection).
    pub fn limit_to(&mut self, n: u32) {
        self.policy.retries = self.policy.retries.min(n);
    }
}

/// A cheap jitter factor in [0, 1), from the clock's nanoseconds.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A TLS handshake or certificate failure: trying again cannot help, the trust
/// configuration has to change.
pub fn is_tls_failure(cause: &str) -> bool {
    let c = cause.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "corrupt message"]
        .iter()
        .any(|k| c.contains(k))
}

/// Statuses worth another try: throttling and the server's own trouble.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_window() {
        let p = Policy::default();
        let d = |retry, elapsed| p.delay_at(retry, None, Duration::from_secs(elapsed), 0.0);
        assert_eq!(d(1, 0), Some(Duration::from_millis(500)));
        assert_eq!(d(2, 0), Some(Duration::from_secs(1)));
        assert_eq!(d(5, 0), Some(Duration::from_secs(8)));
        assert_eq!(d(6, 0), Some(Duration::from_secs(10)), "capped at 10 s");
        assert_eq!(d(11, 0), None, "more retries than allowed");
        assert_eq!(d(3, 59), None, "past the window");
        let jittered = p.delay_at(2, None, Duration::ZERO, 0.99).unwrap();
        assert!(jittered > Duration::from_secs(1) && jittered < Duration::from_millis(1250));
        // A 4 s 429 window and a 5 s outage both fit in the default window.
        let total: Duration = (1..=5).filter_map(|r| d(r, 0)).sum();
        assert!(total >= Duration::from_secs(5));
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits() {
        let p = Policy::default();
        let asked = Some(Duration::from_secs(4));
        assert_eq!(p.delay_at(1, asked, Duration::ZERO, 0.5), asked);
        assert_eq!(
            p.delay_at(1, Some(Duration::from_secs(120)), Duration::ZERO, 0.5),
            None
        );
        let never = Policy {
            retries: 0,
            ..Policy::default()
        };
        assert_eq!(never.delay_at(1, None, Duration::ZERO, 0.0), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(501));
    }
}
