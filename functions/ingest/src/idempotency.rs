//! `Idempotency-Key`: a client that retries a request after a timeout gets
//! the same case ids, so the idempotent stores make the retry a no-op.
//!
//! The ids of a keyed request are UUIDv7s whose 74 "random" bits come from
//! SHA-256 of (key, cases, index in the batch) and whose time is when ingest
//! first saw the key. That time is kept in Redis (`<prefix>idem:<SHA-256 of
//! the key>`, with the cases' digest, for `IDEMPOTENCY_TTL_S`): a retry comes
//! later, and a time taken from its own clock would change the ids. Keeping
//! the first-seen time, rather than hashing everything, keeps keyed ids
//! sorted by acceptance time like all others, which the dashboard's
//! newest-first paging relies on. The stored digest also catches a key
//! reused for different cases: 422, nothing sent on.
//!
//! A key is scoped by the credential that sent it (a JWT's issuer and
//! subject, or the static token; requests with no credential, when auth is
//! off, share one scope), so one client cannot pre-claim another's key:
//! the same key from two credentials is two keys, with different ids.
//!
//! Trade-offs: keyed requests need Redis (503 while it is away; unkeyed
//! requests do not); a retry after the TTL gets new ids (a duplicate).

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use events::{Case, Reported};
use redis::aio::ConnectionManager;
use runtime::ApiError;

pub const HEADER: &str = "idempotency-key";
/// How the header is named in errors.
const FIELD: &str = "Idempotency-Key";
const MAX_KEY_CHARS: usize = 128;

#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// Where keys are kept, whatever the route.
    pub redis: store::RedisConfig,
    /// `IDEMPOTENCY_TTL_S`: how long a key is remembered; a retry within it
    /// gets the same ids.
    pub ttl: Duration,
}

/// A valid `Idempotency-Key` (1 to 128 visible ASCII characters) and the
/// credential it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    key: String,
    scope: String,
}

/// Who sent a request, for scoping keys: the JWT's `iss` and `sub` (a
/// refreshed token keeps its scope), else a digest of the bearer token,
/// else one shared anonymous scope. The credential was verified before the
/// handler runs, so the JWT's claims are read here without checking again.
fn credential_scope(headers: &HeaderMap) -> String {
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
    else {
        return "anonymous".to_owned();
    };
    let mut validation = jsonwebtoken::Validation::default();
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&[]),
        &validation,
    );
    if let Ok(data) = claims
        && let Some(sub) = data.claims["sub"].as_str()
    {
        let iss = data.claims["iss"].as_str().unwrap_or("");
        return format!("jwt:{iss}\0{sub}");
    }
    format!("token:{}", hex(&sha256(&[token.as_bytes()])))
}

impl Key {
    /// The request's key, if it sent one; 400 naming the header if it is not valid.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Key>, ApiError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = |why: &str| {
            ApiError::bad_request(format!("{FIELD} {why}: send 1 to {MAX_KEY_CHARS} visible ASCII characters, e.g. a UUID, the same on every retry"))
                .with_field(Some(FIELD.into()), None)
        };
        if values.next().is_some() {
            return Err(bad("is given more than once"));
        }
        let raw = value.as_bytes();
        if raw.is_empty() {
            return Err(bad("is empty"));
        }
        if raw.len() > MAX_KEY_CHARS {
            return Err(bad(&format!("is {} characters long", raw.len())));
        }
        if !raw.iter().all(u8::is_ascii_graphic) {
            return Err(bad("has characters other than visible ASCII"));
        }
        Ok(Some(Key {
            key: String::from_utf8_lossy(raw).into_owned(),
            scope: credential_scope(headers),
        }))
    }

    fn digest(&self) -> [u8; 32] {
        sha256(&[
            b"covid-realtime/idempotency-key/v2\0",
            self.scope.as_bytes(),
            b"\0",
            self.key.as_bytes(),
        ])
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the cases as parsed, so the same cases sent again as NDJSON,
/// or with other spacing, are the same request.
pub fn cases_digest(cases: &[Case]) -> [u8; 32] {
    sha256(&[&serde_json::to_vec(cases).expect("cases serialize")])
}

/// The ids of a keyed request: the same for the same key, cases and first-seen time.
pub fn ids(key: &Key, cases: &[u8; 32], first_seen_ms: u64, n: usize) -> Vec<String> {
    let k = key.digest();
    (0..n as u64)
        .map(|i| {
            let h = sha256(&[&k, cases, &i.to_le_bytes()]);
            Reported::id_at(first_seen_ms, h[..10].try_into().expect("10 bytes"))
        })
        .collect()
}

/// Records a key's first use atomically; returns the stored value when the
/// key was already known. KEYS[1]: the key; ARGV[1]: `<ms>:<digest>`; ARGV[2]: TTL in ms.
const CLAIM: &str = r#"
local seen = redis.call('GET', KEYS[1])
if seen then return seen end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#;

/// Where keys are remembered.
pub struct KeyStore {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    claim: redis::Script,
}

/// What a key says about this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// When ingest first saw the key (the ids' time).
    pub first_seen_ms: u64,
    /// Whether this is a retry of a request already seen.
    pub replay: bool,
}

impl KeyStore {
    /// Sets up the store without connecting (the connection is lazy).
    pub fn new(config: &IdempotencyConfig) -> anyhow::Result<KeyStore> {
        Ok(KeyStore {
            conn: runtime::redis::connect_lazy(&config.redis.url)?,
            prefix: config.redis.key_prefix.clone(),
            ttl: config.ttl,
            claim: redis::Script::new(CLAIM),
        })
    }

    /// Claims `key` for `cases` (their digest) at `now_ms`, or finds its
    /// earlier claim. 422 if the key was used for other cases; 503 if Redis is away.
    pub async fn claim(
        &self,
        key: &Key,
        cases: &[u8; 32],
        now_ms: u64,
    ) -> Result<Claimed, ApiError> {
        let redis_key = format!("{}idem:{}", self.prefix, hex(&key.digest()));
        let mine = format!("{now_ms}:{}", hex(cases));
        let seen: Option<String> = self
            .claim
            .key(&redis_key)
            .arg(&mine)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| {
                ApiError::unavailable(
                    format!("cases not accepted, try again: the Idempotency-Key store (Redis) is unavailable: {e}"),
                    Duration::from_secs(1),
                )
            })?;
        let Some(seen) = seen else {
            return Ok(Claimed {
                first_seen_ms: now_ms,
                replay: false,
            });
        };
        let (ms, digest) = seen.split_once(':').unwrap_or(("", ""));
        let first_seen_ms = ms.parse().map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the stored Idempotency-Key record is unreadable: use a new key",
            )
        })?;
        if digest != hex(cases) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("this {FIELD} was already used for different cases: a retry must send the same cases; new cases need a new key"),
            )
            .with_field(Some(FIELD.into()), None));
        }
        Ok(Claimed {
            first_seen_ms,
            replay: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn keys_are_1_to_128_visible_ascii_characters() {
        assert_eq!(Key::from_headers(&HeaderMap::new()).unwrap(), None);
        assert!(
            Key::from_headers(&headers(&[b"0197a1b2-retry-1"]))
                .unwrap()
                .is_some()
        );
        assert!(
            Key::from_headers(&headers(&[&[b'k'; 128]]))
                .unwrap()
                .is_some()
        );
        for (bad, why) in [
            (vec![&b""[..]], "empty"),
            (vec![&[b'k'; 129][..]], "129 characters"),
            (vec![&b"has space"[..]], "visible ASCII"),
            (vec![&b"caf\xc3\xa9"[..]], "visible ASCII"),
            (vec![&b"a"[..], &b"b"[..]], "more than once"),
        ] {
            let e = Key::from_headers(&headers(&bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.field.as_deref(), Some("Idempotency-Key"));
            assert!(e.error.contains(why), "{}", e.error);
        }
    }

    #[test]
    fn ids_depend_on_key_cases_time_and_index() {
        let key = Key {
            key: "k1".into(),
            scope: "anonymous".into(),
        };
        let cases = cases_digest(&[Case::new("A", "L", 1, "x", "y").unwrap()]);
        let a = ids(&key, &cases, 1_700_000_000_000, 3);
        assert_eq!(a, ids(&key, &cases, 1_700_000_000_000, 3), "deterministic");
        assert_eq!(
            a.iter().collect::<std::collections::HashSet<_>>().len(),
            3,
            "distinct within a batch"
        );
        let other_key = Key {
            key: "k2".into(),
            ..key.clone()
        };
        assert_ne!(a, ids(&other_key, &cases, 1_700_000_000_000, 3));
        let other_client = Key {
            scope: "token:beef".into(),
            ..key.clone()
        };
        assert_ne!(a, ids(&other_client, &cases, 1_700_000_000_000, 3));
        assert_ne!(a, ids(&key, &cases_digest(&[]), 1_700_000_000_000, 3));
        assert!(
            ids(&key, &cases, 1_700_000_000_001, 1)[0] > a[0],
            "later first-seen time, later ids"
        );
    }

    #[test]
    fn the_cases_digest_ignores_formatting() {
        let spaced = events::parse_json_body(
            br#"[ {"name":" A ","location":"L","age":1,"infectedtype":"x","state":"y"} ]"#,
        )
        .unwrap();
        let ndjson = events::parse_ndjson_body(b"{\"name\":\"A\",\"location\":\"L\",\"age\":1,\"infectedtype\":\"x\",\"state\":\"y\"}\n").unwrap();
        assert_eq!(cases_digest(&spaced), cases_digest(&ndjson));
    }
}
