//! Who may write: bearer credentials on a function's write routes.
//!
//! Every request to a function's own routes with a method other than GET,
//! HEAD or OPTIONS needs the credentials its [`crate::Routes`] name. By default
//! that is the internal token (`INTERNAL_TOKEN`, the hops between functions);
//! a function with a public write endpoint (ingest) names its own
//! [`Verifier`] instead: a static token and/or JWTs. Reads stay public.
//! With no credential configured, writes are open (the laptop default) and
//! the function says so once at start-up. Deployed (under Kubernetes), a
//! function with no write credential refuses to start unless
//! `ALLOW_OPEN_WRITES=true` says an open endpoint is meant
//! ([`refuse_open_when_deployed`]).
//!
//! Refusals: 401 `{"error"}` with `WWW-Authenticate: Bearer` (no or a bad
//! credential), 403 for a valid JWT without the required scope. gRPC
//! callers get the same as a gRPC status (UNAUTHENTICATED / PERMISSION_DENIED).
//! A function calling another over gRPC sends the internal token with
//! [`GrpcBearer`]. JWTs are checked in [`jwt`].

use std::fmt;
use std::sync::Arc;

use anyhow::bail;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use subtle::ConstantTimeEq;

use crate::error::ApiError;

pub mod jwt;
pub use jwt::{JwtConfig, JwtVerifier};

/// Shortest static token accepted: shorter ones are guessable.
pub const MIN_TOKEN_CHARS: usize = 16;
/// HS256 secrets shorter than the hash (RFC 7518 §3.2) are refused.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`.
pub const JWT_LEEWAY_S: u64 = 30;

/// A credential read from the environment. Its `Debug` never shows it, so a
/// config struct holding one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `Authorization: Bearer <secret>`, marked sensitive so HTTP stacks never log it.
    pub fn bearer_header(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("a token is visible ASCII (checked when read)");
        v.set_sensitive(true);
        v
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads a bearer token variable: unset or blank is `None`; anything else
/// must be visible ASCII (it travels in a header) and at least
/// [`MIN_TOKEN_CHARS`] long. Errors name the variable, never the value.
pub fn token_var(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: &str,
) -> anyhow::Result<Option<Secret>> {
    let Some(raw) = lookup(key) else {
        return Ok(None);
    };
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "{key} must be visible ASCII characters only (no spaces): it is sent in an Authorization header"
        );
    }
    if value.len() < MIN_TOKEN_CHARS {
        bail!(
            "{key} is {} characters long; use at least {MIN_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 32`)",
            value.len()
        );
    }
    Ok(Some(Secret::new(value)))
}

/// The credentials one set of routes accepts. Empty: open to anyone.
#[derive(Default)]
pub struct Verifier {
    /// SHA-256 of each accepted static token, with the variable it came from.
    /// Comparing digests in constant time hides the tokens' length too.
    tokens: Vec<([u8; 32], &'static str)>,
    jwt: Option<JwtVerifier>,
    /// The variables that would turn checking on, for the "auth is off" log.
    enabled_by: &'static str,
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl Verifier {
    /// Accepts anyone.
    pub fn open() -> Verifier {
        Verifier::default()
    }

    /// What internal hops accept: `INTERNAL_TOKEN` when set.
    pub fn internal(token: Option<&Secret>) -> Verifier {
        Verifier::open()
            .token("INTERNAL_TOKEN", token)
            .enabled_by("INTERNAL_TOKEN")
    }

    /// Names the variables that configure this verifier (for the start-up log).
    pub fn enabled_by(mut self, variables: &'static str) -> Verifier {
        self.enabled_by = variables;
        self
    }

    /// "set X" advice for the start-up log when the verifier is open.
    pub fn configured_by(&self) -> String {
        match self.enabled_by {
            "" => "configure credentials".to_owned(),
            vars => format!("set {vars}"),
        }
    }

    /// Also accepts `token` (named by its variable, for logs) when it is set.
    pub fn token(mut self, variable: &'static str, token: Option<&Secret>) -> Verifier {
        if let Some(t) = token {
            self.tokens.push((digest(t.expose()), variable));
        }
        self
    }

    /// Also accepts JWTs checked by `jwt`.
    pub fn jwt(mut self, jwt: Option<JwtVerifier>) -> Verifier {
        self.jwt = jwt;
        self
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// What is accepted, for the start-up log (names, never values).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.tokens.iter().map(|(_, v)| v.to_string()).collect();
        if let Some(j) = &self.jwt {
            parts.push(format!("a JWT ({})", j.algorithms().join(" or ")));
        }
        parts.join(" or ")
    }

    /// Checks the request's `Authorization: Bearer` credential.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.is_open() {
            return Ok(());
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if headers.contains_key(header::AUTHORIZATION) {
                Denied::invalid("send one Authorization header, not several")
            } else {
                Denied::Missing
            });
        };
        let value = value
            .to_str()
            .map_err(|_| Denied::invalid("the Authorization header is not visible ASCII"))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Denied::invalid(
                "use the Bearer scheme: `Authorization: Bearer <token>`",
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(Denied::invalid("the bearer token is empty"));
        }
        // Every configured token is compared, whatever matched first.
        let presented = digest(token);
        let matched = self
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |acc, (d, _)| {
                acc | d.ct_eq(&presented)
            });
        if bool::from(matched) {
            return Ok(());
        }
        match &self.jwt {
            Some(jwt) if token.bytes().filter(|b| *b == b'.').count() == 2 => jwt.verify(token),
            _ => Err(Denied::invalid("the bearer token is not valid")),
        }
    }
}

/// Deployed with write routes that would accept anyone: an error, unless
/// `allow_open` (`ALLOW_OPEN_WRITES=true`). An empty Secret key must not turn
/// a cluster's write endpoints into anonymous ones; a laptop stays open.
pub fn refuse_open_when_deployed(
    writers: &Verifier,
    deployed: bool,
    allow_open: bool,
) -> anyhow::Result<()> {
    if deployed && writers.is_open() && !allow_open {
        bail!(
            "refusing to start: this runs under Kubernetes (KUBERNETES_SERVICE_HOST is set) and its write \
             routes have no credential, so they would accept any caller. {} (from the Secret \
             covid-realtime-secrets, knative/secrets/), or set ALLOW_OPEN_WRITES=true if the open endpoint \
             is meant and callers are restricted another way (a NetworkPolicy, a mesh policy)",
            writers.configured_by()
        );
    }
    Ok(())
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header: 401.
    Missing,
    /// A credential that does not verify: 401 `invalid_token`.
    Invalid(String),
    /// A valid JWT without this scope: 403 `insufficient_scope`.
    Scope(String),
}

impl Denied {
    fn invalid(msg: impl Into<String>) -> Denied {
        Denied::Invalid(msg.into())
    }

    pub fn message(&self) -> String {
        match self {
            Denied::Missing => {
                "this endpoint needs credentials: send `Authorization: Bearer <token>`".into()
            }
            Denied::Invalid(m) => m.clone(),
            Denied::Scope(s) => {
                format!("the JWT is valid but lacks the scope {s:?} this endpoint needs")
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Invalid(_) => "invalid",
            Denied::Scope(_) => "scope",
        }
    }

    /// RFC 6750 §3 challenge.
    fn challenge(&self) -> String {
        let realm = r#"Bearer realm="covid-realtime""#;
        let quoted = |s: &str| s.replace(['"', '\\'], "'");
        match self {
            Denied::Missing => realm.to_owned(),
            Denied::Invalid(m) => format!(
                r#"{realm}, error="invalid_token", error_description="{}""#,
                quoted(m)
            ),
            Denied::Scope(s) => format!(
                r#"{realm}, error="insufficient_scope", scope="{}""#,
                quoted(s)
            ),
        }
    }

    /// The HTTP answer; for a gRPC request, the matching gRPC status instead.
    pub fn into_response_for(self, grpc: bool) -> Response {
        metrics::counter!("auth_denied_total", "reason" => self.reason()).increment(1);
        let challenge = HeaderValue::from_str(&self.challenge())
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        if grpc {
            // Trailers-only response: HTTP 200 with the status in headers.
            let code = if matches!(self, Denied::Scope(_)) {
                "7"
            } else {
                "16"
            };
            let mut resp = StatusCode::OK.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from_static(code));
            if let Ok(v) = HeaderValue::from_str(&grpc_message(&self.message())) {
                h.insert("grpc-message", v);
            }
            h.insert(header::WWW_AUTHENTICATE, challenge);
            return resp;
        }
        let status = if matches!(self, Denied::Scope(_)) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut resp = ApiError::new(status, self.message()).into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        resp
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn grpc_message(m: &str) -> String {
    m.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Methods that cannot change data and so never need credentials.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Middleware: write requests must pass `verifier`; reads pass through.
pub async fn require(State(verifier): State<Arc<Verifier>>, req: Request, next: Next) -> Response {
    if is_read(req.method()) {
        return next.run(req).await;
    }
    match verifier.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(denied) => {
            tracing::debug!(
                reason = denied.reason(),
                "write refused: {}",
                denied.message()
            );
            denied.into_response_for(is_grpc(req.headers()))
        }
    }
}

/// Sends the internal token (`INTERNAL_TOKEN`) as gRPC metadata on every
/// call from one function to another: the client side of [`require`].
#[derive(Clone)]
pub struct GrpcBearer(Option<tonic::metadata::AsciiMetadataValue>);

impl GrpcBearer {
    pub fn new(token: Option<&Secret>) -> GrpcBearer {
        GrpcBearer(token.map(|t| {
            let mut v: tonic::metadata::AsciiMetadataValue = format!("Bearer {}", t.expose())
                .parse()
                .expect("a token is visible ASCII (checked when read)");
            v.set_sensitive(true);
            v
        }))
    }
}

impl tonic::service::Interceptor for GrpcBearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests;
