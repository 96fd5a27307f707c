//! Who may post cases, from which browser origin, and how often: ingest's
//! public write endpoint. The checks themselves are the runtime's (`auth`,
//! `ratelimit`); this is their configuration and wiring.
//!
//! - Credentials: `INGEST_TOKEN` (a static bearer token) and/or JWTs
//!   (`JWT_HS256_SECRET` or `JWT_RS256_PUBLIC_KEY(_FILE)`, with `JWT_ISSUER`,
//!   `JWT_AUDIENCE`, `JWT_REQUIRED_SCOPE`). None set: anyone may post.
//! - Browsers: a request carrying an `Origin` is refused (403) unless it is
//!   `CORS_ORIGIN`, which is then also allowed by CORS. Ingest serves no page,
//!   so any browser origin is foreign; with none configured, a page elsewhere
//!   cannot post cases even with a simple (no-preflight) request.
//! - Rate: `RATE_LIMIT_RPS` per client address (default off), 429 above it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use runtime::auth::{JwtConfig, JwtVerifier, token_var};
use runtime::config::var;
use runtime::ratelimit::RateLimiter;
use runtime::{ApiError, Routes, Secret, Verifier};
use tower_http::cors::CorsLayer;

/// Most clients the rate limiter remembers at once (about 1 MB).
pub const RATE_LIMIT_CLIENTS: usize = 10_000;

/// `Idempotency-Key` and the trace context may be sent cross-origin too.
const CORS_REQUEST_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("traceparent"),
];

#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `INGEST_TOKEN`: a static bearer token that may post cases.
    pub ingest_token: Option<Secret>,
    /// `JWT_*`: JWTs that may post cases.
    pub jwt: Option<JwtConfig>,
    /// `CORS_ORIGIN` (default unset: no browser origin may post): the one
    /// origin whose pages may post cases.
    pub cors_origin: Option<HeaderValue>,
    /// `RATE_LIMIT_RPS` (default 0: off) and `RATE_LIMIT_BURST` (default:
    /// twice the rate, at least 1): requests per second per client address.
    pub rate_limit: Option<(f64, u32)>,
    /// `RATE_LIMIT_TRUSTED_HOPS` (default 0): how many proxies in front of
    /// ingest append to `X-Forwarded-For`; the client is the address the
    /// outermost one appended. 0: the peer address, which behind Knative is
    /// queue-proxy's, so the limit is then per pod.
    pub trusted_hops: usize,
}

impl AccessConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<AccessConfig> {
        let rps = var(lookup, "RATE_LIMIT_RPS", 0f64)?;
        if !rps.is_finite() || rps < 0.0 {
            bail!("RATE_LIMIT_RPS must be a number of requests per second, 0 (off) or more");
        }
        let default_burst = (rps * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        let burst = var(lookup, "RATE_LIMIT_BURST", default_burst)?;
        if burst == 0 {
            bail!("RATE_LIMIT_BURST must be at least 1");
        }
        Ok(AccessConfig {
            ingest_token: token_var(lookup, "INGEST_TOKEN")?,
            jwt: JwtConfig::from_lookup(lookup)?,
            cors_origin: lookup("CORS_ORIGIN")
                .map(|o| parse_origin(o.trim()))
                .transpose()?
                .flatten(),
            rate_limit: (rps > 0.0).then_some((rps, burst)),
            trusted_hops: var(lookup, "RATE_LIMIT_TRUSTED_HOPS", 0usize)?,
        })
    }

    /// Who may post: `INGEST_TOKEN` or a JWT; nobody configured means anyone.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        let jwt = self.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        Ok(Verifier::open()
            .token("INGEST_TOKEN", self.ingest_token.as_ref())
            .jwt(jwt)
            .enabled_by("INGEST_TOKEN, JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY"))
    }

    /// Puts the checks on ingest's routes: (outermost first) CORS, the origin
    /// check, the rate limit, then the credential check.
    pub fn apply(&self, routes: Routes) -> anyhow::Result<Routes> {
        let mut routes = routes.writes_need(self.verifier()?);
        if let Some((rps, burst)) = self.rate_limit {
            let limiter = Arc::new(
                RateLimiter::new(rps, burst, RATE_LIMIT_CLIENTS).trusting_hops(self.trusted_hops),
            );
            routes = routes.before_auth(middleware::from_fn_with_state(
                limiter,
                runtime::ratelimit::layer,
            ));
        }
        routes = routes.before_auth(middleware::from_fn_with_state(
            self.cors_origin.clone(),
            same_origin_only,
        ));
        if let Some(origin) = &self.cors_origin {
            routes = routes.before_auth(
                CorsLayer::new()
                    .allow_origin(origin.clone())
                    .allow_methods([Method::POST])
                    .allow_headers(CORS_REQUEST_HEADERS)
                    .expose_headers([
                        HeaderName::from_static(events::REVISION_HEADER),
                        header::RETRY_AFTER,
                    ])
                    .max_age(Duration::from_secs(600)),
            );
        }
        Ok(routes)
    }
}

/// `CORS_ORIGIN` is one origin: `scheme://host[:port]`, nothing else.
fn parse_origin(raw: &str) -> anyhow::Result<Option<HeaderValue>> {
    if raw.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(raw).map_err(|e| {
        anyhow::anyhow!("CORS_ORIGIN={raw:?} is not an origin like https://example.org: {e}")
    })?;
    let origin = url.origin().ascii_serialization();
    if origin != raw.trim_end_matches('/') {
        bail!("CORS_ORIGIN={raw:?} must be just an origin (scheme://host[:port]), e.g. {origin:?}");
    }
    Ok(Some(HeaderValue::from_str(&origin)?))
}

/// Middleware: a request from a browser page (it carries `Origin`) is
/// refused unless it comes from `CORS_ORIGIN`. Preflights are CORS's
/// business, and requests without `Origin` (curl, servers) pass.
async fn same_origin_only(
    State(allowed): State<Option<HeaderValue>>,
    req: Request,
    next: Next,
) -> Response {
    match req.headers().get(header::ORIGIN) {
        Some(origin) if req.method() != Method::OPTIONS && Some(origin) != allowed.as_ref() => {
            metrics::counter!("ingest_requests_refused_total", "reason" => "origin").increment(1);
            let shown = String::from_utf8_lossy(origin.as_bytes())
                .chars()
                .take(100)
                .collect::<String>();
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cases cannot be posted from a page at {shown:?}: set CORS_ORIGIN to that origin to allow it"),
            )
            .with_field(Some("Origin".into()), None)
            .into_response()
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> anyhow::Result<AccessConfig> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AccessConfig::from_lookup(&move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults_are_open() {
        let c = cfg(&[]).unwrap();
        assert!(
            c.ingest_token.is_none()
                && c.jwt.is_none()
                && c.cors_origin.is_none()
                && c.rate_limit.is_none()
        );
        assert!(c.verifier().unwrap().is_open());
    }

    #[test]
    fn rate_limit_and_burst() {
        assert_eq!(
            cfg(&[("RATE_LIMIT_RPS", "50")]).unwrap().rate_limit,
            Some((50.0, 100))
        );
        assert_eq!(
            cfg(&[("RATE_LIMIT_RPS", "0.5"), ("RATE_LIMIT_BURST", "3")])
                .unwrap()
                .rate_limit,
            Some((0.5, 3))
        );
        assert!(
            cfg(&[("RATE_LIMIT_RPS", "-1")])
                .unwrap_err()
                .to_string()
                .contains("RATE_LIMIT_RPS")
        );
        assert!(
            cfg(&[("RATE_LIMIT_RPS", "1"), ("RATE_LIMIT_BURST", "0")])
                .unwrap_err()
                .to_string()
                .contains("RATE_LIMIT_BURST")
        );
    }

    #[test]
    fn cors_origin_must_be_an_origin() {
        assert_eq!(
            cfg(&[("CORS_ORIGIN", "https://lab.example.org/")])
                .unwrap()
                .cors_origin
                .unwrap(),
            "https://lab.example.org"
        );
        assert_eq!(
            cfg(&[("CORS_ORIGIN", "http://127.0.0.1:5173")])
                .unwrap()
                .cors_origin
                .unwrap(),
            "http://127.0.0.1:5173"
        );
        for bad in ["*", "lab.example.org", "https://lab.example.org/page"] {
            assert!(
                cfg(&[("CORS_ORIGIN", bad)])
                    .unwrap_err()
                    .to_string()
                    .contains("CORS_ORIGIN"),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let c = cfg(&[
            ("INGEST_TOKEN", "ingest-secret-0123456789"),
            ("JWT_HS256_SECRET", "jwt-secret-jwt-secret-jwt-secret-0123"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("ingest-secret") && !debug.contains("jwt-secret"),
            "{debug}"
        );
        assert_eq!(
            c.verifier().unwrap().describe(),
            "INGEST_TOKEN or a JWT (HS256)"
        );
    }
}
