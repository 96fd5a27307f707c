//! What a user sets for ingest: its variables, declared once.

use std::time::Duration;

use anyhow::bail;
use runtime::settings::{Default, Settings, Var};
use runtime::{Config, Env};
use store::config::{MONGODB_DATABASE, MONGODB_URI, REDIS_KEY_PREFIX, REDIS_URL};

const INGEST_ROUTE: Var = Var::new(
    "INGEST_ROUTE",
    Default::Required,
    "`grpc`, `redis` or `http` (`sink`, its former name, is accepted); unset with `K_SINK` set: `http`",
);
const GRPC_WRITER_URL: Var = Var::new(
    "GRPC_WRITER_URL",
    Default::Local("http://127.0.0.1:8090"),
    "grpc-writer (route `grpc`)",
)
.when("INGEST_ROUTE", "grpc");
const MAX_BATCH_CASES: Var = Var::new(
    "MAX_BATCH_CASES",
    Default::Value("1000"),
    "most cases in one request (413 above it)",
);
const FORWARD_TIMEOUT_MS: Var = Var::new(
    "FORWARD_TIMEOUT_MS",
    Default::Value("5000"),
    "the next hop's deadline: a request not yet sent by then gets 503, one sent and not answered 504 (outcome unknown); the gRPC call carries it as `grpc-timeout`",
);
const INGEST_LOG_TTL_S: Var = Var::new(
    "INGEST_LOG_TTL_S",
    Default::Value("86400"),
    "how long ingest log records are kept; ingest alone owns the log's TTL index and changes it in place (`collMod`) when this changes; case writes never depend on it",
);
const MAX_STREAM_BACKLOG: Var = Var::new(
    "MAX_STREAM_BACKLOG",
    Default::Value("100000"),
    "Redis route: a batch that would grow the Stream past this many entries gets 503 (back-pressure while redis-sub cannot store)",
)
.when("INGEST_ROUTE", "redis");
const MAX_STREAM_BACKLOG_BYTES: Var = Var::new(
    "MAX_STREAM_BACKLOG_BYTES",
    Default::Value("209715200"),
    "Redis route: the same bound in bytes (the Stream's `MEMORY USAGE`; the default is 200 MiB); keep it below Redis' `maxmemory`",
)
.when("INGEST_ROUTE", "redis");
// Read by `access` (and runtime's `auth::JwtConfig`) through `Env::lookup`.
const INGEST_TOKEN: Var = Var::new(
    "INGEST_TOKEN",
    Default::Unset,
    "a static bearer token that may post cases (at least 16 characters)",
)
.secret();
const JWT_HS256_SECRET: Var = Var::new(
    "JWT_HS256_SECRET",
    Default::Unset,
    "JWTs signed HS256 with this secret (at least 32 bytes) may post cases",
)
.secret();
const JWT_RS256_PUBLIC_KEY: Var = Var::new(
    "JWT_RS256_PUBLIC_KEY",
    Default::Unset,
    "JWTs signed RS256, checked with this PEM public key (`\\n` allowed for newlines)",
);
const JWT_RS256_PUBLIC_KEY_FILE: Var = Var::new(
    "JWT_RS256_PUBLIC_KEY_FILE",
    Default::Unset,
    "the same key, from this file (set one of the two)",
);
const JWT_ISSUER: Var = Var::new(
    "JWT_ISSUER",
    Default::Unset,
    "when set, a JWT's `iss` must equal it",
);
const JWT_AUDIENCE: Var = Var::new(
    "JWT_AUDIENCE",
    Default::Unset,
    "when set, a JWT's `aud` must include it",
);
const JWT_REQUIRED_SCOPE: Var = Var::new(
    "JWT_REQUIRED_SCOPE",
    Default::Unset,
    "when set, a valid JWT without it in `scope` (or `scp`) gets 403",
);
const CORS_ORIGIN: Var = Var::new(
    "CORS_ORIGIN",
    Default::Unset,
    "the one origin whose pages may post cases (`https://host[:port]`); unset: no browser origin",
);
const RATE_LIMIT_RPS: Var = Var::new(
    "RATE_LIMIT_RPS",
    Default::Value("0"),
    "requests per second per client address (`0`: off); above it 429 with `Retry-After`",
);
const RATE_LIMIT_BURST: Var = Var::new(
    "RATE_LIMIT_BURST",
    Default::Computed("twice the rate, at least 1"),
    "requests a client may send at once before the rate applies",
);
const RATE_LIMIT_TRUSTED_HOPS: Var = Var::new(
    "RATE_LIMIT_TRUSTED_HOPS",
    Default::Value("0"),
    "proxies in front of ingest that append to `X-Forwarded-For`; the client is the address the outermost of them appended. `0`: the peer address, which behind Knative is queue-proxy's, so the limit is per pod",
);
const IDEMPOTENCY_TTL_S: Var = Var::new(
    "IDEMPOTENCY_TTL_S",
    Default::Value("86400"),
    "how long an `Idempotency-Key` is remembered (in Redis at `REDIS_URL`, any route)",
);

/// Where accepted cases go next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// CloudEvent over HTTP (binary mode) to `K_SINK`: the plain Knative way.
    Http(String),
    /// gRPC `CaseWriter.Write` to grpc-writer.
    Grpc { writer_url: String },
    /// `XADD` to the Redis Stream that redis-sub consumes.
    Redis {
        url: String,
        key_prefix: String,
        /// [`MAX_STREAM_BACKLOG`]: a slow or absent consumer cannot make Redis
        /// grow without limit.
        max_backlog: usize,
        /// [`MAX_STREAM_BACKLOG_BYTES`] (Redis' `MEMORY USAGE`, sampled).
        max_backlog_bytes: u64,
    },
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Http(_) => events::WritePath::Http.as_str(),
            Route::Grpc { .. } => events::WritePath::Grpc.as_str(),
            Route::Redis { .. } => events::WritePath::Redis.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// [`INGEST_ROUTE`].
    pub route: Route,
    /// [`MAX_BATCH_CASES`].
    pub max_batch: usize,
    /// [`FORWARD_TIMEOUT_MS`].
    pub forward_timeout: Duration,
    /// The runtime's `MAX_BODY_BYTES`.
    pub body_limit: usize,
    /// Where the ingest log goes; with no `MONGODB_URI`, no ingest log.
    pub ingest_log: Option<store::MongoConfig>,
    /// [`INGEST_LOG_TTL_S`].
    pub ingest_log_ttl: Duration,
    /// Who may post, from which origin, how often (see `access`).
    pub access: crate::access::AccessConfig,
    /// Where `Idempotency-Key`s are remembered (see `idempotency`).
    pub idempotency: crate::idempotency::IdempotencyConfig,
}

impl Settings for IngestConfig {
    const VARS: &'static [Var] = &[
        INGEST_ROUTE,
        GRPC_WRITER_URL,
        REDIS_URL.when("INGEST_ROUTE", "redis").used_as(
            REDIS_URL.default,
            "Redis (route `redis`, and `Idempotency-Key`s on any route)",
        ),
        REDIS_KEY_PREFIX.when("INGEST_ROUTE", "redis"),
        MAX_BATCH_CASES,
        FORWARD_TIMEOUT_MS,
        MONGODB_URI.used_as(
            Default::Unset,
            "where the ingest log goes; unset: no ingest log",
        ),
        MONGODB_DATABASE.used_as(MONGODB_DATABASE.default, "database of the ingest log"),
        INGEST_LOG_TTL_S,
        MAX_STREAM_BACKLOG,
        MAX_STREAM_BACKLOG_BYTES,
        INGEST_TOKEN,
        JWT_HS256_SECRET,
        JWT_RS256_PUBLIC_KEY,
        JWT_RS256_PUBLIC_KEY_FILE,
        JWT_ISSUER,
        JWT_AUDIENCE,
        JWT_REQUIRED_SCOPE,
        CORS_ORIGIN,
        RATE_LIMIT_RPS,
        RATE_LIMIT_BURST,
        RATE_LIMIT_TRUSTED_HOPS,
        IDEMPOTENCY_TTL_S,
    ];

    fn read(env: &Env, runtime: &Config) -> anyhow::Result<IngestConfig> {
        // Parsed once: the Redis route and the idempotency keys share it.
        let redis = store::RedisConfig::read(env)?;
        let route = match (env.raw(&INGEST_ROUTE).as_deref(), &runtime.sink) {
            (Some("grpc"), _) => Route::Grpc {
                writer_url: env.parse(&GRPC_WRITER_URL)?,
            },
            (Some("redis"), _) => Route::Redis {
                url: redis.url.clone(),
                key_prefix: redis.key_prefix.clone(),
                max_backlog: env.parse(&MAX_STREAM_BACKLOG)?,
                max_backlog_bytes: env.parse(&MAX_STREAM_BACKLOG_BYTES)?,
            },
            // `sink` is the route's former name, still accepted.
            (Some("http" | "sink") | None, Some(url)) => Route::Http(url.clone()),
            (Some("http" | "sink") | None, None) => bail!(
                "ingest has nowhere to send cases: set INGEST_ROUTE=grpc or INGEST_ROUTE=redis, or K_SINK"
            ),
            (Some(other), _) => bail!("INGEST_ROUTE={other:?} is not one of grpc, redis, http"),
        };
        let max_batch = env.parse(&MAX_BATCH_CASES)?;
        if max_batch == 0 {
            bail!("MAX_BATCH_CASES must be at least 1");
        }
        if let Route::Redis { max_backlog, .. } = &route
            && *max_backlog < max_batch
        {
            // Otherwise a full batch could never be accepted.
            bail!(
                "MAX_STREAM_BACKLOG ({max_backlog}) must be at least MAX_BATCH_CASES ({max_batch})"
            );
        }
        let idempotency_ttl: u64 = env.parse(&IDEMPOTENCY_TTL_S)?;
        if idempotency_ttl == 0 {
            bail!("IDEMPOTENCY_TTL_S must be at least 1 second");
        }
        Ok(IngestConfig {
            route,
            max_batch,
            forward_timeout: Duration::from_millis(env.parse(&FORWARD_TIMEOUT_MS)?),
            body_limit: runtime.body_limit,
            ingest_log: match env.raw(&MONGODB_URI) {
                Some(_) => Some(store::MongoConfig::read(env)?),
                None => None,
            },
            ingest_log_ttl: Duration::from_secs(env.parse(&INGEST_LOG_TTL_S)?),
            access: crate::access::AccessConfig::from_lookup(&|k| env.lookup(k))?,
            idempotency: crate::idempotency::IdempotencyConfig {
                redis,
                ttl: Duration::from_secs(idempotency_ttl),
            },
        })
    }
}

#[cfg(test)]
#[test]
fn the_declaration_matches_the_parser() {
    let problems =
        runtime::testing::declaration_problems::<crate::Function>(&[("INGEST_ROUTE", "grpc")]);
    assert!(problems.is_empty(), "{problems:#?}");
}
