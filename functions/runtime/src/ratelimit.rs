//! A per-client request rate limit: a token bucket per client address, in a
//! map of bounded size, answering 429 with `Retry-After` when a client is
//! over its rate.
//!
//! The client is the peer address; IPv6 clients are grouped by /64, the
//! block one host usually owns, so rotating addresses inside it does not
//! buy more requests. Memory is bounded by `capacity` clients: when the map
//! is full, clients whose bucket has refilled (idle ones, which behave
//! exactly like absent ones) are dropped first, then the least recently
//! seen, a tenth of the map at a time.
//!
//! Behind proxies (Knative's queue-proxy and activator, the ingress) every
//! request comes from a proxy's address, so the limit would be per pod.
//! With `trusted_hops` set to the number of proxies that append to
//! `X-Forwarded-For`, the client is the address the outermost of them
//! appended: the `trusted_hops`-th entry from the right. Entries left of it
//! are the client's own claims and are ignored; a request with fewer
//! entries than that (one that bypassed the proxies) is limited under its
//! peer address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by client.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    trusted_hops: usize,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests per second on average, bursts of up to `burst`, for at
    /// most `capacity` distinct clients remembered at once.
    pub fn new(rate: f64, burst: u32, capacity: usize) -> RateLimiter {
        assert!(
            rate > 0.0 && burst > 0 && capacity > 0,
            "a rate limit needs a positive rate, burst and capacity"
        );
        RateLimiter {
            rate,
            burst: f64::from(burst),
            capacity,
            trusted_hops: 0,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the client from `X-Forwarded-For` as `hops` trusted proxies
    /// wrote it (0: the peer address, the default).
    pub fn trusting_hops(mut self, hops: usize) -> RateLimiter {
        self.trusted_hops = hops;
        self
    }

    /// The client a request is limited as (see the module documentation).
    pub fn client_of(&self, headers: &axum::http::HeaderMap, peer: IpAddr) -> IpAddr {
        if self.trusted_hops == 0 {
            return peer;
        }
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        chain
            .len()
            .checked_sub(self.trusted_hops)
            .and_then(|i| chain[i].parse().ok())
            .unwrap_or(peer)
    }

    /// Takes one token for `client`, or says how long until one is available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = group(client);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !clients.contains_key(&key) && clients.len() >= self.capacity {
            self.make_room(&mut clients, now);
        }
        let b = clients.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * self.rate)
            .min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// How many clients are remembered (for tests and metrics).
    pub fn clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Frees at least a tenth of the map in one pass, so a flood of new
    /// addresses costs O(1) amortised per request, not a scan each.
    fn make_room(&self, clients: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let target = self.capacity - (self.capacity / 10).max(1);
        let refill =
            |b: &Bucket| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * self.rate;
        clients.retain(|_, b| refill(b) < self.burst);
        if clients.len() > target {
            let excess = clients.len() - target;
            let mut by_age: Vec<(Instant, IpAddr)> =
                clients.iter().map(|(k, b)| (b.last, *k)).collect();
            by_age.select_nth_unstable(excess - 1);
            for (_, k) in &by_age[..excess] {
                clients.remove(k);
            }
        }
    }
}

/// The key a client is limited under: its IPv4 address, or its IPv6 /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Middleware: 429 with `Retry-After` for a client over its rate. Requests
/// without a peer address (the Lambda runtime) share one bucket.
pub async fn layer(State(limiter): State<Arc<RateLimiter>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let client = limiter.client_of(req.headers(), peer);
    match limiter.check(client, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("http_requests_rate_limited_total").increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests from this client: at most {} a second; retry after the Retry-After delay",
                    limiter.rate
                ),
            );
            // Retry-After is whole seconds; round up so a prompt retry succeeds.
            e.retry_after = Some(Duration::from_secs(wait.as_secs_f64().ceil() as u64));
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allows_the_burst_then_the_rate() {
        let l = RateLimiter::new(2.0, 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip("10.0.0.1"), t0).is_ok());
        }
        let wait = l.check(ip("10.0.0.1"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(
            l.check(ip("10.0.0.2"), t0).is_ok(),
            "other clients have their own bucket"
        );
        assert!(
            l.check(ip("10.0.0.1"), t0 + Duration::from_millis(500))
                .is_ok(),
            "one token after 1/rate"
        );
        assert!(
            l.check(ip("10.0.0.1"), t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64_and_v4_mapped_is_v4() {
        let l = RateLimiter::new(1.0, 1, 100);
        let t0 = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t0).is_err(), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        assert!(l.check(ip("192.0.2.7"), t0).is_ok());
        assert!(
            l.check(ip("::ffff:192.0.2.7"), t0).is_err(),
            "the same IPv4 client"
        );
    }

    #[test]
    fn memory_stays_bounded_and_busy_clients_are_kept() {
        let l = RateLimiter::new(1.0, 2, 10);
        let t0 = Instant::now();
        // A busy client, out of tokens.
        assert!(l.check(ip("10.9.9.9"), t0).is_ok());
        assert!(l.check(ip("10.9.9.9"), t0).is_ok());
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(
                u32::from_be_bytes([10, 0, 0, 0]) + i,
            ));
            let _ = l.check(a, t0 + Duration::from_millis(u64::from(i)));
            assert!(l.clients() <= 10);
        }
        // Evicting the least recently seen eventually drops the busy client
        // under a flood of new ones; that is the price of bounded memory.
        // Without a flood, it is kept and still limited:
        let l = RateLimiter::new(1.0, 2, 10);
        assert!(l.check(ip("10.9.9.9"), t0).is_ok());
        assert!(l.check(ip("10.9.9.9"), t0).is_ok());
        for i in 0..5u8 {
            assert!(l.check(IpAddr::from([10, 1, 0, i]), t0).is_ok());
        }
        assert!(l.check(ip("10.9.9.9"), t0).is_err());
    }

    #[test]
    fn the_client_is_the_entry_the_outermost_trusted_proxy_appended() {
        let peer = ip("10.0.0.9");
        let mut h = axum::http::HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 203.0.113.5".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        let l = |n| RateLimiter::new(1.0, 1, 10).trusting_hops(n);
        assert_eq!(l(0).client_of(&h, peer), peer, "off: the peer");
        assert_eq!(l(1).client_of(&h, peer), ip("10.0.0.1"));
        assert_eq!(l(2).client_of(&h, peer), ip("203.0.113.5"));
        assert_eq!(l(4).client_of(&h, peer), peer, "fewer entries than hops");
        h.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(l(1).client_of(&h, peer), peer);
    }

    #[test]
    fn idle_clients_are_dropped_first() {
        let l = RateLimiter::new(10.0, 1, 2);
        let t0 = Instant::now();
        assert!(l.check(ip("10.0.0.1"), t0).is_ok());
        assert!(l.check(ip("10.0.0.2"), t0 + Duration::from_secs(5)).is_ok());
        // 10.0.0.1 has refilled by now; 10.0.0.2 has not (same instant).
        assert!(l.check(ip("10.0.0.3"), t0 + Duration::from_secs(5)).is_ok());
        assert_eq!(l.clients(), 2);
        assert!(
            l.check(ip("10.0.0.2"), t0 + Duration::from_secs(5))
                .is_err(),
            "the busy client was kept"
        );
    }
}
