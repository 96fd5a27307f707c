//! Configuration from the environment only (12-factor), read once.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::auth::{Secret, token_var};

/// Reads one variable through `lookup`, with a default and a clear error.
pub fn var<T: FromStr>(
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
    pub fn from_env(function: &str) -> anyhow::Result<Config> {
        Config::from_lookup(function, &env_lookup)
    }

    pub fn from_lookup(
        function: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let service = var(lookup, "K_SERVICE", function.to_owned())?;
        let revision = var(lookup, "K_REVISION", format!("{service}-local"))?;
        let configuration = var(lookup, "K_CONFIGURATION", service.clone())?;
        let sink = lookup("K_SINK").filter(|s| !s.trim().is_empty());
        if let Some(s) = &sink {
            let u = url::Url::parse(s).with_context(|| format!("K_SINK={s:?} is not a URL"))?;
            if !matches!(u.scheme(), "http" | "https") || s.parse::<http::Uri>().is_err() {
                bail!("K_SINK={s:?} is not an http:// or https:// URL");
            }
        }
        let ce_overrides = match lookup("K_CE_OVERRIDES").filter(|s| !s.trim().is_empty()) {
            None => Vec::new(),
            Some(raw) => parse_overrides(&raw)?,
        };
        let body_limit = var(lookup, "MAX_BODY_BYTES", 1024 * 1024usize)?;
        if body_limit == 0 {
            bail!("MAX_BODY_BYTES must be above 0");
        }
        Ok(Config {
            host: var(lookup, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: var(lookup, "PORT", 8080u16)?,
            service,
            revision,
            configuration,
            sink,
            ce_overrides,
            body_limit,
            request_timeout: Duration::from_millis(var(lookup, "REQUEST_TIMEOUT_MS", 30_000u64)?),
            shutdown_timeout: Duration::from_millis(var(lookup, "SHUTDOWN_TIMEOUT_MS", 20_000u64)?),
            header_read_timeout: Duration::from_millis(
                var(lookup, "HEADER_READ_TIMEOUT_MS", 30_000u64)?.max(1),
            ),
            internal_token: token_var(lookup, "INTERNAL_TOKEN")?,
            lambda_runtime_api: lookup("AWS_LAMBDA_RUNTIME_API").filter(|s| !s.is_empty()),
            deployed: lookup("KUBERNETES_SERVICE_HOST").is_some_and(|s| !s.trim().is_empty()),
            allow_open_writes: var(lookup, "ALLOW_OPEN_WRITES", false)?,
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
