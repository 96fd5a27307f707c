//! What a user sets for ingest, with defaults (see the README's table).

use std::time::Duration;

use anyhow::bail;
use runtime::config::var;

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
        /// `MAX_STREAM_BACKLOG` (default 100000): most entries the Stream may
        /// hold (cases not yet stored); at the bound ingest answers 503, so a
        /// slow or absent consumer cannot make Redis grow without limit.
        max_backlog: usize,
        /// `MAX_STREAM_BACKLOG_BYTES` (default 209715200, 200 MiB): most
        /// memory the Stream may use (Redis' `MEMORY USAGE`, sampled); at the
        /// bound ingest answers 503. Keep it below Redis' `maxmemory`.
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
    /// `INGEST_ROUTE`: `grpc`, `redis` or `http`; default `http` when `K_SINK`
    /// is set, otherwise required.
    pub route: Route,
    /// `MAX_BATCH_CASES` (default 1000): most cases in one request.
    pub max_batch: usize,
    /// `FORWARD_TIMEOUT_MS` (default 5000): how long the next hop may take
    /// before the request is answered 503.
    pub forward_timeout: Duration,
    /// `MAX_BODY_BYTES` (default 1 MiB), shared with the runtime.
    pub body_limit: usize,
    /// `MONGODB_URI` / `MONGODB_DATABASE`: where the ingest log goes; with no
    /// `MONGODB_URI` there is no ingest log.
    pub ingest_log: Option<store::MongoConfig>,
    /// `INGEST_LOG_TTL_S` (default 86400): how long ingest log records are kept.
    pub ingest_log_ttl: Duration,
    /// Who may post, from which origin, how often (see `access`).
    pub access: crate::access::AccessConfig,
    /// Where `Idempotency-Key`s are remembered (see `idempotency`).
    pub idempotency: crate::idempotency::IdempotencyConfig,
}

impl IngestConfig {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<IngestConfig> {
        let sink = lookup("K_SINK").filter(|s| !s.trim().is_empty());
        let route_name = var(lookup, "INGEST_ROUTE", String::new())?;
        let route = match (route_name.as_str(), sink) {
            ("grpc", _) => Route::Grpc {
                writer_url: var(
                    lookup,
                    "GRPC_WRITER_URL",
                    "http://127.0.0.1:8090".to_owned(),
                )?,
            },
            ("redis", _) => Route::Redis {
                url: var(lookup, "REDIS_URL", "redis://127.0.0.1:6379/".to_owned())?,
                key_prefix: var(lookup, "REDIS_KEY_PREFIX", "covid:".to_owned())?,
                max_backlog: var(lookup, "MAX_STREAM_BACKLOG", 100_000usize)?,
                max_backlog_bytes: var(lookup, "MAX_STREAM_BACKLOG_BYTES", 200u64 << 20)?,
            },
            // `sink` is the route's former name, still accepted.
            ("http" | "sink" | "", Some(url)) => Route::Http(url),
            ("http" | "sink" | "", None) => bail!(
                "ingest has nowhere to send cases: set INGEST_ROUTE=grpc or INGEST_ROUTE=redis, or K_SINK"
            ),
            (other, _) => bail!("INGEST_ROUTE={other:?} is not one of grpc, redis, http"),
        };
        let max_batch = var(lookup, "MAX_BATCH_CASES", 1000usize)?;
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
        Ok(IngestConfig {
            route,
            max_batch,
            forward_timeout: Duration::from_millis(var(lookup, "FORWARD_TIMEOUT_MS", 5000u64)?),
            body_limit: var(lookup, "MAX_BODY_BYTES", 1024 * 1024usize)?,
            ingest_log: match lookup("MONGODB_URI").filter(|s| !s.trim().is_empty()) {
                Some(_) => Some(store::MongoConfig::from_lookup(lookup)?),
                None => None,
            },
            ingest_log_ttl: Duration::from_secs(var(lookup, "INGEST_LOG_TTL_S", 86_400u64)?),
            access: crate::access::AccessConfig::from_lookup(lookup)?,
            idempotency: crate::idempotency::IdempotencyConfig::from_lookup(lookup)?,
        })
    }
}
