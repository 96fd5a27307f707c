//! The facts the manifests are checked against, written once: the functions,
//! every environment variable each one reads (with its default), the metrics
//! each one exports, and the CloudEvent types. Source: the project's design
//! and the functions' own config docs; `source_scan` keeps this table and the
//! code in step (a variable read in code but missing here fails a test).

/// What happens when a variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// A default that is right on a cluster too.
    Value(&'static str),
    /// A default that points at the loopback interface: right on a laptop,
    /// wrong on a cluster. Must be set in every Service that uses it.
    Loopback(&'static str),
    /// Unset turns a feature off, or has a documented meaning.
    Unset,
    /// No default that works: must be set in every Service that uses it.
    Required,
    /// Set by Knative Serving or Kubernetes (PORT, K_SERVICE, HOSTNAME...).
    Platform,
    /// Injected by a SinkBinding or a source (K_SINK, K_CE_OVERRIDES).
    Binding,
}

/// One environment variable a function reads.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    pub default: Default,
    /// Read only when another variable has this value (ingest's route).
    pub when: Option<(&'static str, &'static str)>,
}

const fn v(name: &'static str, default: Default) -> Var {
    Var {
        name,
        default,
        when: None,
    }
}

const fn when(name: &'static str, default: Default, var: &'static str, value: &'static str) -> Var {
    Var {
        name,
        default,
        when: Some((var, value)),
    }
}

/// A function: a binary of the workspace, deployed as one or more Knative Services.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// The binary's name (and the image name's last segment).
    pub name: &'static str,
    /// Variables this function reads besides [`COMMON_VARS`].
    pub vars: &'static [Var],
    /// Metrics this function exports besides [`COMMON_METRICS`].
    pub metrics: &'static [&'static str],
    /// Sends CloudEvents on, so every deployment needs a K_SINK.
    pub needs_sink: bool,
    /// The container port name Knative must see (`h2c` for gRPC).
    pub port_name: &'static str,
}

/// Read by every function (the runtime crate).
pub const COMMON_VARS: &[Var] = &[
    v("PORT", Default::Platform),
    v("HOST", Default::Value("0.0.0.0")),
    v("K_SERVICE", Default::Platform),
    v("K_REVISION", Default::Platform),
    v("K_CONFIGURATION", Default::Platform),
    v("K_SINK", Default::Binding),
    v("K_CE_OVERRIDES", Default::Binding),
    v("MAX_BODY_BYTES", Default::Value("1048576")),
    v("REQUEST_TIMEOUT_MS", Default::Value("30000")),
    v("SHUTDOWN_TIMEOUT_MS", Default::Value("20000")),
    v("HEADER_READ_TIMEOUT_MS", Default::Value("30000")),
    // Bearer token of the hops between functions; unset: hops are not checked.
    v("INTERNAL_TOKEN", Default::Unset),
    // Set in every pod: deployed, so open write routes refuse to start...
    v("KUBERNETES_SERVICE_HOST", Default::Platform),
    // ...unless this says the open endpoint is meant.
    v("ALLOW_OPEN_WRITES", Default::Value("false")),
    v("RUST_LOG", Default::Value("info")),
    v("LOG_FORMAT", Default::Value("json")),
    v("AWS_LAMBDA_RUNTIME_API", Default::Unset),
];

/// Variables that carry credentials: only ever from a Secret (secretKeyRef).
pub const SECRET_VARS: &[&str] = &[
    "MONGODB_URI",
    "INGEST_TOKEN",
    "INTERNAL_TOKEN",
    "JWT_HS256_SECRET",
];

/// Variables Knative Serving sets itself and refuses in a Service's env.
pub const KNATIVE_RESERVED: &[&str] = &["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// Exported by every function (the runtime crate).
pub const COMMON_METRICS: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "http_requests_in_flight",
    "http_request_errors_total",
    "function_info",
    "function_start_to_listen_seconds",
];

const MONGODB_URI: Var = v(
    "MONGODB_URI",
    Default::Loopback("mongodb://127.0.0.1:27017/?directConnection=true"),
);
const MONGODB_DATABASE: Var = v("MONGODB_DATABASE", Default::Value("covid"));
const REDIS_URL: Var = v("REDIS_URL", Default::Loopback("redis://127.0.0.1:6379/"));
const REDIS_KEY_PREFIX: Var = v("REDIS_KEY_PREFIX", Default::Value("covid:"));
const WRITER_METRICS: [&str; 4] = [
    "writer_cases_stored_total",
    "writer_cases_duplicate_total",
    "writer_batch_size",
    "writer_write_duration_seconds",
];

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "ingest",
        vars: &[
            // grpc | redis | http; http is the default only when K_SINK is set.
            v("INGEST_ROUTE", Default::Required),
            when(
                "GRPC_WRITER_URL",
                Default::Loopback("http://127.0.0.1:8090"),
                "INGEST_ROUTE",
                "grpc",
            ),
            when(
                "REDIS_URL",
                Default::Loopback("redis://127.0.0.1:6379/"),
                "INGEST_ROUTE",
                "redis",
            ),
            when(
                "REDIS_KEY_PREFIX",
                Default::Value("covid:"),
                "INGEST_ROUTE",
                "redis",
            ),
            // Most entries the stream may hold before ingest answers 503.
            when(
                "MAX_STREAM_BACKLOG",
                Default::Value("100000"),
                "INGEST_ROUTE",
                "redis",
            ),
            // Most bytes the stream may use before ingest answers 503.
            when(
                "MAX_STREAM_BACKLOG_BYTES",
                Default::Value("209715200"),
                "INGEST_ROUTE",
                "redis",
            ),
            v("MAX_BATCH_CASES", Default::Value("1000")),
            v("FORWARD_TIMEOUT_MS", Default::Value("5000")),
            // Unset: no ingest log.
            v("MONGODB_URI", Default::Unset),
            MONGODB_DATABASE,
            v("INGEST_LOG_TTL_S", Default::Value("86400")),
            // Who may post (a Secret): a static bearer token and/or JWTs; none set: anyone.
            v("INGEST_TOKEN", Default::Unset),
            v("JWT_HS256_SECRET", Default::Unset),
            v("JWT_RS256_PUBLIC_KEY", Default::Unset),
            v("JWT_RS256_PUBLIC_KEY_FILE", Default::Unset),
            v("JWT_ISSUER", Default::Unset),
            v("JWT_AUDIENCE", Default::Unset),
            v("JWT_REQUIRED_SCOPE", Default::Unset),
            // Unset: no browser origin may post.
            v("CORS_ORIGIN", Default::Unset),
            // 0: no rate limit; the burst defaults to twice the rate, at least 1.
            v("RATE_LIMIT_RPS", Default::Value("0")),
            v(
                "RATE_LIMIT_BURST",
                Default::Value("2 x RATE_LIMIT_RPS, at least 1"),
            ),
            // 0: limit by peer address (per pod behind Knative).
            v("RATE_LIMIT_TRUSTED_HOPS", Default::Value("0")),
            v("IDEMPOTENCY_TTL_S", Default::Value("86400")),
        ],
        metrics: &[
            "ingest_cases_accepted_total",
            "ingest_requests_refused_total",
            "ingest_grpc_call_requests",
        ],
        needs_sink: false,
        port_name: "http1",
    },
    Function {
        name: "grpc-writer",
        vars: &[
            MONGODB_URI,
            MONGODB_DATABASE,
            v("WRITE_BATCH_MAX", Default::Value("1000")),
            v("WRITE_BATCH_WAIT_MS", Default::Value("2")),
            v("WRITE_DEADLINE_MS", Default::Value("4000")),
            v("WRITE_MAX_EVENTS", Default::Value("10000")),
        ],
        metrics: &WRITER_METRICS,
        needs_sink: true,
        port_name: "h2c",
    },
    Function {
        name: "redis-sub",
        vars: &[
            REDIS_URL,
            REDIS_KEY_PREFIX,
            MONGODB_URI,
            MONGODB_DATABASE,
            // true: the always-on consumer loop; false: push only (RedisStreamSource).
            v("STREAM_CONSUMER", Default::Value("true")),
            v("CONSUMER_NAME", Default::Value("<K_REVISION>-<HOSTNAME>")),
            v("READ_COUNT", Default::Value("500")),
            v("CLAIM_IDLE_MS", Default::Value("30000")),
            // Push mode: the RedisStreamSource's group, and the reconciling pass.
            v("SOURCE_GROUP", Default::Value("redis-stream-source")),
            v("RECONCILE_AFTER_MS", Default::Value("30000")),
            v("RECONCILE_INTERVAL_MS", Default::Value("10000")),
            v("WRITE_DEADLINE_MS", Default::Value("4000")),
            v("HOSTNAME", Default::Platform),
        ],
        metrics: &[
            WRITER_METRICS[0],
            WRITER_METRICS[1],
            WRITER_METRICS[2],
            WRITER_METRICS[3],
            "redis_sub_pending_entries",
            "redis_sub_claimed_total",
        ],
        needs_sink: true,
        port_name: "http1",
    },
    Function {
        name: "aggregate",
        vars: &[
            MONGODB_URI,
            MONGODB_DATABASE,
            REDIS_URL,
            REDIS_KEY_PREFIX,
            v("AGGREGATE_FLUSH_MS", Default::Value("20")),
            v("SWEEP_INTERVAL_MS", Default::Value("2000")),
            v("NOTIFY_MIN_INTERVAL_MS", Default::Value("200")),
        ],
        metrics: &["aggregate_cases_counted_total"],
        needs_sink: false,
        port_name: "http1",
    },
    Function {
        name: "dashboard-api",
        vars: &[
            MONGODB_URI,
            MONGODB_DATABASE,
            REDIS_URL,
            REDIS_KEY_PREFIX,
            // Unset: same origin only.
            v("CORS_ORIGIN", Default::Unset),
            // A path relative to the working directory: right for `make up`, not in the image.
            v("DASHBOARD_DIR", Default::Required),
            v("SSE_MIN_INTERVAL_MS", Default::Value("250")),
            v("SSE_REFRESH_MS", Default::Value("5000")),
            v("SSE_MAX_CLIENTS", Default::Value("1000")),
        ],
        metrics: &["dashboard_sse_clients"],
        needs_sink: false,
        port_name: "http1",
    },
];

/// Listed in the design, not read by the code yet: (function, variable).
/// The source scan fails once the code reads one of these, so the entry is
/// removed here when it is implemented.
pub const NOT_YET_IMPLEMENTED: &[(&str, &str)] = &[];

/// The CloudEvent types of the pipeline (Trigger filters use these).
pub const EVENT_TYPES: &[&str] = &[
    "io.covidrealtime.case.reported.v1",
    "io.covidrealtime.case.stored.v2",
    "io.covidrealtime.stats.updated.v1",
];

/// The function called `name`.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

impl Function {
    /// Every variable this function reads: common ones, then its own.
    pub fn all_vars(&self) -> impl Iterator<Item = &'static Var> + '_ {
        COMMON_VARS.iter().chain(self.vars.iter())
    }

    /// The variable `name`, if this function reads it.
    pub fn var(&self, name: &str) -> Option<&'static Var> {
        // Own entries first: they override the common ones' defaults.
        self.vars
            .iter()
            .chain(COMMON_VARS.iter())
            .find(|v| v.name == name)
    }

    /// Every metric this function exports.
    pub fn all_metrics(&self) -> impl Iterator<Item = &'static str> + '_ {
        COMMON_METRICS.iter().chain(self.metrics.iter()).copied()
    }
}

/// Every metric name any function exports.
pub fn all_metric_names() -> std::collections::BTreeSet<&'static str> {
    FUNCTIONS.iter().flat_map(|f| f.all_metrics()).collect()
}
