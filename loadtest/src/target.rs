//! Targets: where requests go, and with which Host header.

use std::net::SocketAddr;

use http::HeaderValue;
use http::uri::{PathAndQuery, Uri};

use crate::cli::{HostHeaderArg, TargetArg};

/// One service under load, resolved once before the run.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The base URL as given, for reports.
    pub url: String,
    /// `host:port` to connect to (resolved to [`Target::addr`] before the run).
    pub authority: String,
    pub addr: Option<SocketAddr>,
    /// Host header sent: the URL's authority unless overridden by --host-header.
    pub host: HeaderValue,
    /// Request path: the URL's path followed by --path.
    pub path: PathAndQuery,
}

/// Checks every `--target` and attaches its `--host-header`.
pub fn resolve(
    targets: &[TargetArg],
    hosts: &[HostHeaderArg],
    path: &str,
) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        if out.iter().any(|o| o.name == t.name) {
            return Err(format!(
                "--target {} is given twice: give each target its own name",
                t.name
            ));
        }
        out.push(parse_one(t, path)?);
    }
    for h in hosts {
        let names = || {
            out.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let names = names();
        let target = out.iter_mut().find(|t| t.name == h.name).ok_or_else(|| {
            format!(
                "--host-header {}={} names no target; the targets are: {names}",
                h.name, h.host
            )
        })?;
        target.host = HeaderValue::from_str(&h.host).map_err(|_| {
            format!(
                "--host-header {}={}: not a valid Host header value",
                h.name, h.host
            )
        })?;
    }
    Ok(out)
}

fn parse_one(t: &TargetArg, path: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("bad --target {}={}: {why}", t.name, t.url);
    let uri: Uri = t
        .url
        .parse()
        .map_err(|e| bad(&format!("{e}; write e.g. http://127.0.0.1:8081")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported: loadtest speaks plain HTTP/1.1 to keep one core fast; \
                 point it at the ingress's http port (with --host-header) or at the service directly",
            ));
        }
        _ => {
            return Err(bad(
                "the URL must start with http://, e.g. http://127.0.0.1:8081",
            ));
        }
    }
    let auth = uri
        .authority()
        .ok_or_else(|| bad("the URL has no host, e.g. http://127.0.0.1:8081"))?;
    let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
    if !path.starts_with('/') {
        return Err(format!("--path {path:?} must start with '/', e.g. /cases"));
    }
    let full = format!("{}{}", uri.path().trim_end_matches('/'), path);
    let path =
        PathAndQuery::try_from(full.as_str()).map_err(|e| format!("--path {path:?}: {e}"))?;
    Ok(Target {
        name: t.name.clone(),
        url: t.url.clone(),
        authority,
        addr: None,
        host: HeaderValue::from_str(auth.as_str())
            .map_err(|_| bad("the host is not a valid Host header"))?,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, url: &str) -> TargetArg {
        TargetArg {
            name: name.into(),
            url: url.into(),
        }
    }

    #[test]
    fn joins_base_and_path_and_overrides_host() {
        let hosts = [HostHeaderArg {
            name: "grpc".into(),
            host: "ingest-grpc.example.com".into(),
        }];
        let ts = resolve(
            &[
                t("grpc", "http://127.0.0.1:8081"),
                t("redis", "http://localhost/api/"),
            ],
            &hosts,
            "/cases",
        )
        .unwrap();
        assert_eq!(ts[0].authority, "127.0.0.1:8081");
        assert_eq!(ts[0].path.as_str(), "/cases");
        assert_eq!(ts[0].host, "ingest-grpc.example.com");
        assert_eq!(ts[1].authority, "localhost:80");
        assert_eq!(ts[1].path.as_str(), "/api/cases");
        assert_eq!(ts[1].host, "localhost");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = resolve(&[t("a", "https://x")], &[], "/cases").unwrap_err();
        assert!(e.contains("https is not supported"), "{e}");
        let e = resolve(&[t("a", "127.0.0.1:8081")], &[], "/cases").unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = resolve(&[t("a", "http://x"), t("a", "http://y")], &[], "/cases").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let hosts = [HostHeaderArg {
            name: "b".into(),
            host: "h".into(),
        }];
        let e = resolve(&[t("a", "http://x")], &hosts, "/cases").unwrap_err();
        assert!(e.contains("the targets are: a"), "{e}");
    }
}
