//! Configuration from the environment only (12-factor), read once, from
//! the variables declared in [`Config::VARS`].

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::auth::{Secret, token_var};
use crate::settings::{Default, Env, SetBy, Var};

/// Reads one variable through `lookup`, with a default and a clear error.
/// For parsers that take a lookup (ingest's `access`); a function's own
/// variables are read through [`Env`] from their declarations.
pub fn var<T: std::str::FromStr>(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: T,
) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match lookup(key) {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{key}={raw:?} is not valid: {e}")),
    }
}

/// The process environment as a lookup.
pub fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

const PORT: Var = Var::new(
    "PORT",
    Default::Value("8080"),
    "listening port (0: any free port)",
)
.set_by(SetBy::Platform);
const HOST: Var = Var::new("HOST", Default::Value("0.0.0.0"), "listening address");
const K_SERVICE: Var = Var::new(
    "K_SERVICE",
    Default::Computed("the function's name"),
    "Knative service name",
)
.set_by(SetBy::Platform);
const K_REVISION: Var = Var::new(
    "K_REVISION",
    Default::Computed("`<K_SERVICE>-local`"),
    "serving revision, sent back in `x-revision`",
)
.set_by(SetBy::Platform);
const K_CONFIGURATION: Var = Var::new(
    "K_CONFIGURATION",
    Default::Computed("`K_SERVICE`"),
    "Knative configuration name",
)
.set_by(SetBy::Platform);
const K_SINK: Var =
    Var::new("K_SINK", Default::Unset, "where output CloudEvents go").set_by(SetBy::Binding);
const K_CE_OVERRIDES: Var = Var::new(
    "K_CE_OVERRIDES",
    Default::Unset,
    "`{\"extensions\": {...}}` added to every output event",
)
.set_by(SetBy::Binding);
const MAX_BODY_BYTES: Var = Var::new(
    "MAX_BODY_BYTES",
    Default::Value("1048576"),
    "request body limit (413 above it)",
);
const REQUEST_TIMEOUT_MS: Var = Var::new(
    "REQUEST_TIMEOUT_MS",
    Default::Value("30000"),
    "a request (body included) still running after this gets 408",
);
const HEADER_READ_TIMEOUT_MS: Var = Var::new(
    "HEADER_READ_TIMEOUT_MS",
    Default::Value("30000"),
    "a connection that sends no (further) request head within this is closed: slow headers, silent or idle keep-alive connections",
);
const INTERNAL_TOKEN: Var = Var::new(
    "INTERNAL_TOKEN",
    Default::Unset,
    "bearer token of the hops between functions (unset: open): required on write routes (grpc-writer, redis-sub `POST /`, aggregate `POST /`) and sent by ingest and every `K_SINK` sender",
)
.secret();
const KUBERNETES_SERVICE_HOST: Var = Var::new(
    "KUBERNETES_SERVICE_HOST",
    Default::Unset,
    "set by Kubernetes in every pod: the function is deployed, so write routes with no credential refuse to start (see `ALLOW_OPEN_WRITES`)",
)
.set_by(SetBy::Platform);
const ALLOW_OPEN_WRITES: Var = Var::new(
    "ALLOW_OPEN_WRITES",
    Default::Value("false"),
    "under Kubernetes a function whose write routes have no credential (`INTERNAL_TOKEN`, or ingest's `INGEST_TOKEN`/`JWT_*`) refuses to start; `true` allows it on purpose, where callers are restricted another way (a NetworkPolicy). Off a cluster writes may stay open",
);
const SHUTDOWN_TIMEOUT_MS: Var = Var::new(
    "SHUTDOWN_TIMEOUT_MS",
    Default::Value("20000"),
    "how long SIGTERM waits for in-flight work",
);
/// Read by `telemetry` (tracing's `EnvFilter`), before the rest.
pub const RUST_LOG: Var = Var::new("RUST_LOG", Default::Value("info"), "log filter");
/// Read by `telemetry`, before the rest.
pub const LOG_FORMAT: Var = Var::new("LOG_FORMAT", Default::Value("json"), "`json` or `text`");
const AWS_LAMBDA_RUNTIME_API: Var = Var::new(
    "AWS_LAMBDA_RUNTIME_API",
    Default::Unset,
    "set by AWS Lambda: serve through the Lambda runtime",
)
.set_by(SetBy::Platform);

/// What Knative (or `make up`, or a test) tells a function through its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST` (default `0.0.0.0`).
    pub host: IpAddr,
    /// `PORT` (default 8080); 0 picks a free port.
    pub port: u16,
    /// `K_SERVICE` (default: the function's name).
    pub service: String,
    /// `K_REVISION` (default `<service>-local`), sent back in every response.
    pub revision: String,
    /// `K_CONFIGURATION` (default: the service).
    pub configuration: String,
    /// `K_SINK`: where this function sends its output CloudEvents.
    pub sink: Option<String>,
    /// `K_CE_OVERRIDES`: extensions added to every outgoing CloudEvent.
    pub ce_overrides: Vec<(String, String)>,
    /// `MAX_BODY_BYTES` (default 1 MiB).
    pub body_limit: usize,
    /// `REQUEST_TIMEOUT_MS` (default 30000): a request still running, or a
    /// body still arriving, after this is answered 408.
    pub request_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (default 20000): on SIGTERM, how long in-flight
    /// work may take before the process exits anyway. Below Knative's default
    /// 30 s termination grace period.
    pub shutdown_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_MS` (default 30000): an HTTP/1 connection that
    /// has not sent a whole request head within this is closed. It covers
    /// idle keep-alive connections too, so slow-header (slowloris) clients
    /// cannot hold connections open.
    pub header_read_timeout: Duration,
    /// `INTERNAL_TOKEN`: the bearer token of the hops between functions.
    /// When set, write routes need it (unless the function names other
    /// credentials) and this function sends it on its own hops.
    pub internal_token: Option<Secret>,
    /// `AWS_LAMBDA_RUNTIME_API` present: serve through the Lambda runtime.
    pub lambda_runtime_api: Option<String>,
    /// `KUBERNETES_SERVICE_HOST` present (Kubernetes sets it in every pod):
    /// deployed, so write routes with no credential refuse to start.
    pub deployed: bool,
    /// `ALLOW_OPEN_WRITES` (default false): deployed with no write
    /// credential on purpose (callers restricted another way, e.g. a NetworkPolicy).
    pub allow_open_writes: bool,
}

impl Config {
    /// Every variable the runtime reads, for every function.
    pub const VARS: &'static [Var] = &[
        PORT,
        HOST,
        K_SERVICE,
        K_REVISION,
        K_CONFIGURATION,
        K_SINK,
        K_CE_OVERRIDES,
        MAX_BODY_BYTES,
        REQUEST_TIMEOUT_MS,
        HEADER_READ_TIMEOUT_MS,
        INTERNAL_TOKEN,
        KUBERNETES_SERVICE_HOST,
        ALLOW_OPEN_WRITES,
        SHUTDOWN_TIMEOUT_MS,
        RUST_LOG,
        LOG_FORMAT,
        AWS_LAMBDA_RUNTIME_API,
    ];

    /// The runtime's variables alone, for a test that builds an [`crate::App`]
    /// without a function's declaration.
    pub fn from_lookup(
        function: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        Config::read(function, &Env::new(lookup, &[Config::VARS]))
    }

    pub fn read(function: &str, env: &Env) -> anyhow::Result<Config> {
        let service = env.raw(&K_SERVICE).unwrap_or_else(|| function.to_owned());
        let revision = env
            .raw(&K_REVISION)
            .unwrap_or_else(|| format!("{service}-local"));
        let configuration = env.raw(&K_CONFIGURATION).unwrap_or_else(|| service.clone());
        let sink = env.raw(&K_SINK);
        if let Some(s) = &sink {
            let u = url::Url::parse(s).with_context(|| format!("K_SINK={s:?} is not a URL"))?;
            if !matches!(u.scheme(), "http" | "https") || s.parse::<http::Uri>().is_err() {
                bail!("K_SINK={s:?} is not an http:// or https:// URL");
            }
        }
        let ce_overrides = match env.raw(&K_CE_OVERRIDES) {
            None => Vec::new(),
            Some(raw) => parse_overrides(&raw)?,
        };
        let body_limit: usize = env.parse(&MAX_BODY_BYTES)?;
        if body_limit == 0 {
            bail!("MAX_BODY_BYTES must be above 0");
        }
        let millis = |var: &Var| env.parse(var).map(Duration::from_millis);
        Ok(Config {
            host: env.parse(&HOST)?,
            port: env.parse(&PORT)?,
            service,
            revision,
            configuration,
            sink,
            ce_overrides,
            body_limit,
            request_timeout: millis(&REQUEST_TIMEOUT_MS)?,
            shutdown_timeout: millis(&SHUTDOWN_TIMEOUT_MS)?,
            header_read_timeout: millis(&HEADER_READ_TIMEOUT_MS)?.max(Duration::from_millis(1)),
            internal_token: token_var(&|k| env.lookup(k), INTERNAL_TOKEN.name)?,
            lambda_runtime_api: env.raw(&AWS_LAMBDA_RUNTIME_API),
            deployed: env.raw(&KUBERNETES_SERVICE_HOST).is_some(),
            allow_open_writes: env.parse(&ALLOW_OPEN_WRITES)?,
        })
    }
}

/// `K_CE_OVERRIDES` is `{"extensions": {"name": "value", ...}}`.
fn parse_overrides(raw: &str) -> anyhow::Result<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_str(raw)
        .with_context(|| format!("K_CE_OVERRIDES is not JSON: {raw:?}"))?;
    let Some(ext) = v.get("extensions") else {
        return Ok(Vec::new());
    };
    let Some(map) = ext.as_object() else {
        bail!("K_CE_OVERRIDES.extensions must be an object, got {ext}");
    };
    // Sorted, whatever serde_json's map order is (bson turns on preserve_order).
    let mut sorted: Vec<_> = map.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .into_iter()
        .map(|(k, v)| {
            // Receivers refuse events with invalid extension names: fail at start-up instead.
            events::check_extension_name(k).map_err(|e| anyhow::anyhow!("K_CE_OVERRIDES: {e}"))?;
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((k.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup("ingest", &move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.service, "ingest");
        assert_eq!(c.revision, "ingest-local");
        assert_eq!(c.body_limit, 1 << 20);
        assert!(c.sink.is_none());
        assert!(!c.deployed && !c.allow_open_writes);
    }

    #[test]
    fn kubernetes_and_allow_open_writes() {
        let c = cfg(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]).unwrap();
        assert!(c.deployed && !c.allow_open_writes);
        let c = cfg(&[("ALLOW_OPEN_WRITES", "true")]).unwrap();
        assert!(c.allow_open_writes);
        let err = cfg(&[("ALLOW_OPEN_WRITES", "yes")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ALLOW_OPEN_WRITES"), "{err}");
    }

    #[test]
    fn knative_variables() {
        let c = cfg(&[
            ("PORT", "9000"),
            ("K_SERVICE", "ingest-grpc"),
            ("K_REVISION", "ingest-grpc-00003"),
            ("K_SINK", "http://aggregate.default.svc.cluster.local"),
            (
                "K_CE_OVERRIDES",
                r#"{"extensions":{"team":"health","n":3}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.revision, "ingest-grpc-00003");
        assert_eq!(c.configuration, "ingest-grpc");
        assert_eq!(
            c.ce_overrides,
            vec![("n".into(), "3".into()), ("team".into(), "health".into())]
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert!(
            cfg(&[("PORT", "http")])
                .unwrap_err()
                .to_string()
                .contains("PORT")
        );
        assert!(
            cfg(&[("K_SINK", "not a url")])
                .unwrap_err()
                .to_string()
                .contains("K_SINK")
        );
        assert!(
            cfg(&[("K_CE_OVERRIDES", "{")])
                .unwrap_err()
                .to_string()
                .contains("K_CE_OVERRIDES")
        );
        assert!(
            cfg(&[("INTERNAL_TOKEN", "short")])
                .unwrap_err()
                .to_string()
                .contains("INTERNAL_TOKEN")
        );
        let bad_name = cfg(&[("K_CE_OVERRIDES", r#"{"extensions":{"team-name":"x"}}"#)])
            .unwrap_err()
            .to_string();
        assert!(
            bad_name.contains("K_CE_OVERRIDES") && bad_name.contains("team-name"),
            "{bad_name}"
        );
    }

    #[test]
    fn the_internal_token_is_never_in_debug_output() {
        let c = cfg(&[("INTERNAL_TOKEN", "internal-secret-0123456789")]).unwrap();
        assert_eq!(
            c.internal_token.as_ref().map(Secret::expose),
            Some("internal-secret-0123456789")
        );
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("internal-secret-0123456789"), "{debug}");
        assert!(debug.contains("redacted"));
    }
}
