//! What a run measured, per target: counts, an HDR latency histogram
//! (microseconds), status codes, transport errors and serving revisions.
//!
//! Every virtual user owns its own [`Stats`] and records without locks; the
//! run merges them at the end. [`Live`] is the small per-user window the
//! once-a-second progress line reads.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request got no HTTP response. Names are stable (report keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportError {
    /// Nothing listens at the target's address.
    ConnectRefused,
    /// The TCP connection was not established within --timeout.
    ConnectTimeout,
    /// Any other failure to connect (unreachable network, no such host...).
    Connect,
    /// Connected, but the response did not complete within --timeout.
    Timeout,
    /// The peer reset the connection.
    ConnectionReset,
    /// The peer closed the connection before the response was complete.
    ConnectionClosed,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// Any other I/O error.
    Io,
}

impl TransportError {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportError::ConnectRefused => "connect_refused",
            TransportError::ConnectTimeout => "connect_timeout",
            TransportError::Connect => "connect",
            TransportError::Timeout => "timeout",
            TransportError::ConnectionReset => "connection_reset",
            TransportError::ConnectionClosed => "connection_closed",
            TransportError::Protocol => "protocol",
            TransportError::Io => "io",
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One HTTP response, as the stats need it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    /// The `x-revision` header, when present and valid UTF-8.
    pub revision: Option<&'a str>,
    /// Cases the server said it accepted (`accepted` of a 2xx body).
    pub accepted: u64,
    pub body_bytes: u64,
}

/// Counters and latencies of one target (or of several, merged).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Requests that completed: with a response or with a transport error.
    pub requests: u64,
    pub cases_sent: u64,
    pub cases_accepted: u64,
    pub body_bytes: u64,
    /// Latency of requests that got a response (any status), in µs.
    latency: Histogram<u64>,
    /// Exact extremes: the histogram only knows them to 3 digits.
    min_us: u64,
    max_us: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<TransportError, u64>,
    /// Responses per `x-revision` value; responses without one are in `no_revision`.
    pub revisions: BTreeMap<String, RevisionStats>,
    pub no_revision: RevisionStats,
}

/// The responses of one revision: a canary is judged against the stable
/// revision under the same load by these (non-2xx and latency per revision).
#[derive(Debug, Clone)]
pub struct RevisionStats {
    pub responses: u64,
    /// Non-2xx responses (a transport error has no `x-revision`: it is in
    /// the target's `transport_errors` only).
    pub errors: u64,
    latency: Histogram<u64>,
}

impl Default for RevisionStats {
    fn default() -> Self {
        RevisionStats {
            responses: 0,
            errors: 0,
            latency: Histogram::new(3)
                .expect("3 significant digits is a valid histogram precision"),
        }
    }
}

impl RevisionStats {
    fn record(&mut self, us: u64, status: u16) {
        self.responses += 1;
        self.errors += u64::from(!(200..300).contains(&status));
        // `us` is already clamped by `record` below.
        self.latency
            .record(us)
            .expect("an auto-resizing histogram records any value up to an hour");
    }

    fn merge(&mut self, other: &RevisionStats) {
        self.responses += other.responses;
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms always merge");
    }

    /// Latency at quantile `q` (0..=1) in µs; 0 without responses.
    pub fn latency_at(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q)
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            requests: 0,
            cases_sent: 0,
            cases_accepted: 0,
            body_bytes: 0,
            // Auto-resizing from 1µs: a user's histogram stays as small as
            // its slowest response needs; 3 significant digits is exact to
            // the microsecond below 2ms.
            latency: Histogram::new(3)
                .expect("3 significant digits is a valid histogram precision"),
            min_us: u64::MAX,
            max_us: 0,
            statuses: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            revisions: BTreeMap::new(),
            no_revision: RevisionStats::default(),
        }
    }
}

/// Share of responses served by one revision, and how they went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionShare {
    /// The `x-revision` value; `null` for responses without the header.
    pub revision: Option<String>,
    pub responses: u64,
    /// `responses` over all responses of the target, 0..=1.
    pub share: f64,
    /// Non-2xx responses from this revision.
    pub errors: u64,
    /// Latency of this revision's responses, in microseconds.
    pub latency_us: RevisionLatency,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionLatency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Stats {
    pub fn record_response(&mut self, latency: Duration, cases_sent: u64, r: Response<'_>) {
        self.requests += 1;
        self.cases_sent += cases_sent;
        self.cases_accepted += r.accepted;
        self.body_bytes += r.body_bytes;
        let us = record(&mut self.latency, latency);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        *self.statuses.entry(r.status).or_default() += 1;
        let revision = match r.revision {
            // Look up by &str first: no allocation once a revision is known.
            Some(rev) => {
                if !self.revisions.contains_key(rev) {
                    self.revisions
                        .insert(rev.to_owned(), RevisionStats::default());
                }
                self.revisions.get_mut(rev).expect("inserted above")
            }
            None => &mut self.no_revision,
        };
        revision.record(us, r.status);
    }

    pub fn record_error(&mut self, cases_sent: u64, kind: TransportError) {
        self.requests += 1;
        self.cases_sent += cases_sent;
        *self.transport_errors.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.cases_sent += other.cases_sent;
        self.cases_accepted += other.cases_accepted;
        self.body_bytes += other.body_bytes;
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms always merge");
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.transport_errors {
            *self.transport_errors.entry(*k).or_default() += v;
        }
        for (k, v) in &other.revisions {
            self.revisions.entry(k.clone()).or_default().merge(v);
        }
        self.no_revision.merge(&other.no_revision);
    }

    /// Requests that got an HTTP response.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Failed requests: non-2xx responses plus transport errors.
    pub fn errors(&self) -> u64 {
        let non_2xx: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        non_2xx + self.transport_errors.values().sum::<u64>()
    }

    /// `errors / requests`, 0 when nothing was sent.
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors(), self.requests)
    }

    /// Latency at quantile `q` (0..=1) in µs; 0 without responses. Exact
    /// below 2ms, within 0.1% above (never above the exact maximum).
    pub fn latency_at(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q).min(self.max_us)
        }
    }

    pub fn latency_min(&self) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.min_us
        }
    }

    pub fn latency_max(&self) -> u64 {
        self.max_us
    }

    pub fn latency_mean(&self) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.mean()
        }
    }

    /// Responses per revision, largest share first (ties by name, no header last).
    pub fn revision_shares(&self) -> Vec<RevisionShare> {
        let total = self.responses();
        let mut shares: Vec<RevisionShare> = self
            .revisions
            .iter()
            .map(|(rev, r)| (Some(rev.clone()), r))
            .chain((self.no_revision.responses > 0).then_some((None, &self.no_revision)))
            .map(|(revision, r)| RevisionShare {
                revision,
                responses: r.responses,
                share: ratio(r.responses, total),
                errors: r.errors,
                latency_us: RevisionLatency {
                    p50: r.latency_at(0.50),
                    p90: r.latency_at(0.90),
                    p99: r.latency_at(0.99),
                    max: r.latency_at(1.0),
                },
            })
            .collect();
        shares.sort_by(|a, b| {
            let key = |s: &RevisionShare| {
                (
                    std::cmp::Reverse(s.responses),
                    s.revision.is_none(),
                    s.revision.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        shares
    }
}

/// The window the progress line reads once a second: one per user, behind a
/// mutex only that user and the progress task touch (never contended per request
/// by other users).
#[derive(Debug)]
pub struct Live {
    pub requests: u64,
    pub errors: u64,
    /// Two significant digits are plenty for a live p99.
    latency: Histogram<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            requests: 0,
            errors: 0,
            latency: Histogram::new(2).expect("2 significant digits is valid"),
        }
    }
}

impl Live {
    pub fn record(&mut self, latency: Option<Duration>, error: bool) {
        self.requests += 1;
        self.errors += u64::from(error);
        if let Some(l) = latency {
            record(&mut self.latency, l);
        }
    }

    /// Moves this window's counts into `into` and starts a new window.
    pub fn drain_into(&mut self, into: &mut Live) {
        into.requests += std::mem::take(&mut self.requests);
        into.errors += std::mem::take(&mut self.errors);
        if !self.latency.is_empty() {
            into.latency
                .add(&self.latency)
                .expect("auto-resizing histograms always merge");
            self.latency.reset();
        }
    }

    pub fn p99(&self) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(0.99))
    }
}

/// Cases accepted according to a 2xx body `{"accepted": n, ...}`, found
/// without parsing the whole body (the ids can be long).
pub fn parse_accepted(body: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"accepted\"";
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    let Some(rest) = body[at + KEY.len()..].trim_ascii_start().strip_prefix(b":") else {
        return 0;
    };
    rest.trim_ascii_start()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
}

/// Longest latency recorded; anything longer (only possible with a huge
/// --timeout) is recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// Records `latency` and returns it in whole µs (at least 1).
fn record(h: &mut Histogram<u64>, latency: Duration) -> u64 {
    // `record`, not `saturating_record`: the latter clamps to the current
    // size instead of growing an auto-resizing histogram.
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS);
    h.record(us)
        .expect("an auto-resizing histogram records any value up to an hour");
    us
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, revision: Option<&str>) -> Response<'_> {
        Response {
            status,
            revision,
            accepted: u64::from(status == 202),
            body_bytes: 10,
        }
    }

    #[test]
    fn percentiles_of_known_latencies() {
        let mut s = Stats::default();
        for us in 1..=1000u64 {
            s.record_response(Duration::from_micros(us), 1, ok(202, None));
        }
        assert_eq!(s.latency_min(), 1);
        assert_eq!(s.latency_at(0.5), 500);
        assert_eq!(s.latency_at(0.9), 900);
        assert_eq!(s.latency_at(0.99), 990);
        assert_eq!(s.latency_at(0.999), 999);
        assert_eq!(s.latency_max(), 1000);
        assert!((s.latency_mean() - 500.5).abs() < 0.01);
    }

    #[test]
    fn large_latencies_keep_three_digits() {
        let mut s = Stats::default();
        s.record_response(Duration::from_micros(1_234_567), 1, ok(202, None));
        s.record_response(Duration::from_micros(1_234_000), 1, ok(202, None));
        assert_eq!(s.latency_max(), 1_234_567, "the maximum is exact");
        let p50 = s.latency_at(0.5) as f64;
        assert!((p50 - 1_234_000.0).abs() / 1_234_000.0 < 0.001, "{p50}");
    }

    #[test]
    fn errors_are_non_2xx_plus_transport() {
        let mut s = Stats::default();
        for status in [202, 202, 200, 400, 503] {
            s.record_response(Duration::from_micros(5), 2, ok(status, Some("r")));
        }
        s.record_error(2, TransportError::ConnectRefused);
        s.record_error(2, TransportError::Timeout);
        assert_eq!(s.requests, 7);
        assert_eq!(s.responses(), 5);
        assert_eq!(s.errors(), 4);
        assert_eq!(s.cases_sent, 14);
        assert_eq!(s.cases_accepted, 2);
        assert!((s.error_rate() - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(s.transport_errors[&TransportError::ConnectRefused], 1);
    }

    #[test]
    fn revision_shares_count_responses_only() {
        let mut s = Stats::default();
        for i in 0..20 {
            let rev = if i % 10 == 9 { "rev-b" } else { "rev-a" };
            s.record_response(Duration::from_micros(5), 1, ok(202, Some(rev)));
        }
        s.record_response(Duration::from_micros(5), 1, ok(202, None));
        s.record_response(Duration::from_micros(5), 1, ok(202, None));
        s.record_error(1, TransportError::Timeout);
        let shares = s.revision_shares();
        let want = [
            (Some("rev-a"), 18, 18.0 / 22.0),
            (Some("rev-b"), 2, 2.0 / 22.0),
            (None, 2, 2.0 / 22.0),
        ];
        assert_eq!(shares.len(), want.len());
        for (got, (rev, n, share)) in shares.iter().zip(want) {
            assert_eq!(got.revision.as_deref(), rev);
            assert_eq!(got.responses, n);
            assert!((got.share - share).abs() < 1e-12);
        }
    }

    #[test]
    fn each_revision_has_its_errors_and_latency() {
        let mut s = Stats::default();
        for _ in 0..99 {
            s.record_response(Duration::from_micros(100), 1, ok(202, Some("stable")));
        }
        s.record_response(Duration::from_micros(100), 1, ok(503, Some("stable")));
        for i in 0..10 {
            let status = if i < 3 { 500 } else { 202 };
            s.record_response(Duration::from_micros(900), 1, ok(status, Some("canary")));
        }
        let shares = s.revision_shares();
        let stable = &shares[0];
        let canary = &shares[1];
        assert_eq!(
            (stable.revision.as_deref(), stable.responses, stable.errors),
            (Some("stable"), 100, 1)
        );
        assert_eq!(stable.latency_us.p99, 100);
        assert_eq!(
            (canary.revision.as_deref(), canary.responses, canary.errors),
            (Some("canary"), 10, 3)
        );
        assert_eq!((canary.latency_us.p50, canary.latency_us.max), (900, 900));
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.record_response(Duration::from_micros(100), 3, ok(202, Some("x")));
        b.record_response(Duration::from_micros(300), 1, ok(503, Some("y")));
        b.record_error(1, TransportError::ConnectionReset);
        a.merge(&b);
        assert_eq!(
            (a.requests, a.cases_sent, a.responses(), a.errors()),
            (3, 5, 2, 2)
        );
        assert_eq!((a.latency_min(), a.latency_max()), (100, 300));
        assert_eq!(a.revisions.len(), 2);
        assert_eq!(a.statuses[&503], 1);
    }

    #[test]
    fn live_window_drains() {
        let mut user = Live::default();
        let mut acc = Live::default();
        user.record(Some(Duration::from_micros(100)), false);
        user.record(None, true);
        user.drain_into(&mut acc);
        assert_eq!((user.requests, user.errors, user.p99()), (0, 0, None));
        assert_eq!((acc.requests, acc.errors), (2, 1));
        assert_eq!(acc.p99(), Some(100));
    }

    #[test]
    fn accepted_is_found_cheaply() {
        assert_eq!(parse_accepted(br#"{"accepted": 12, "ids": ["a"]}"#), 12);
        assert_eq!(parse_accepted(br#"{"ids":["x"],"accepted":3}"#), 3);
        assert_eq!(parse_accepted(br#"{"error":"bad"}"#), 0);
        assert_eq!(parse_accepted(b""), 0);
    }
}
