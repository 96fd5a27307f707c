//! Starting a real function binary on a free loopback port, driving a few
//! requests through it, and reading its `/metrics`: the dashboards' metric
//! names are checked against what the code exports, not against a list.
//!
//! [`CASES`] is the table: one row per function that can start here without
//! a store. A row says how to start it and which requests make its lazily
//! registered metrics appear. [`promtool_check`] runs Prometheus' own linter
//! on an exposition (the knative tests give it every function's, read from
//! the whole pipeline).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A request sent before the scrape.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub method: &'static str,
    pub path: &'static str,
    pub content_type: Option<&'static str>,
    pub body: &'static str,
}

/// How to start one function for a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The binary (and catalogue function) name.
    pub function: &'static str,
    /// Environment besides PORT and HOST; `{sink}` is replaced with the URL
    /// of a stand-in CloudEvents receiver (it answers 202, or 500 to a body
    /// containing `sink-refuses`).
    pub env: &'static [(&'static str, &'static str)],
    /// Requests that make the function's lazily registered metrics appear.
    pub warm_up: &'static [Request],
}

const CASE_JSON: &str = r#"{"name":"Scrape","location":"Quetzaltenango","age":41,"infectedtype":"community","state":"active"}"#;
const REFUSED_CASE_JSON: &str = r#"{"name":"sink-refuses","location":"Quetzaltenango","age":41,"infectedtype":"community","state":"active"}"#;

pub const CASES: &[Case] = &[Case {
    function: "ingest",
    // INGEST_ROUTE unset + K_SINK: the sink route, no Redis or gRPC writer needed.
    env: &[
        ("K_SINK", "{sink}"),
        ("K_REVISION", "ingest-scrape"),
        ("FORWARD_TIMEOUT_MS", "2000"),
    ],
    warm_up: &[
        Request {
            method: "GET",
            path: "/healthz",
            content_type: None,
            body: "",
        },
        // 202: ingest_cases_accepted_total
        Request {
            method: "POST",
            path: "/cases",
            content_type: Some("application/json"),
            body: CASE_JSON,
        },
        // 415: ingest_requests_refused_total
        Request {
            method: "POST",
            path: "/cases",
            content_type: Some("text/plain"),
            body: "x",
        },
        // the sink answers 500, ingest 503: http_request_errors_total
        Request {
            method: "POST",
            path: "/cases",
            content_type: Some("application/json"),
            body: REFUSED_CASE_JSON,
        },
    ],
}];

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// One request on a fresh connection (`connection: close`).
pub fn http(port: u16, req: &Request) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        req.method,
        req.path,
        req.body.len()
    );
    if let Some(ct) = req.content_type {
        head.push_str(&format!("content-type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(req.body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:.200}"))?;
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A CloudEvents receiver on a loopback port: 202 for every POST, 500 when the
/// body contains `sink-refuses`. Lives until the test process ends.
pub fn spawn_stand_in_sink() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = answer(conn);
            });
        }
    });
    Ok(url)
}

fn answer(conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut length = 0usize;
        let mut first = String::new();
        if reader.read_line(&mut first)? == 0 {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let status = if String::from_utf8_lossy(&body).contains("sink-refuses") {
            "500 Internal Server Error"
        } else {
            "202 Accepted"
        };
        writer.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())?;
    }
}

/// A started function; killed when dropped.
pub struct Running {
    child: Child,
    pub port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` on a free loopback port with a clean environment plus `env`.
pub fn start(binary: &Path, env: &[(String, String)]) -> anyhow::Result<Running> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut running = Running { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = running.child.try_wait()? {
            bail!("{} exited with {status} before listening", binary.display());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(running);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{} did not listen on 127.0.0.1:{port} within 20 s",
        binary.display()
    )
}

/// Metric names (`# TYPE` lines and samples) in a Prometheus text exposition.
pub fn exposed_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let name = if let Some(rest) = line.strip_prefix("# TYPE ") {
            rest.split_whitespace().next()
        } else if line.starts_with('#') || line.trim().is_empty() {
            None
        } else {
            line.split(['{', ' ']).next()
        };
        if let Some(n) = name {
            names.insert(crate::promql::base_name(n).to_owned());
        }
    }
    names
}

/// Runs one [`Case`]: start, warm up, scrape. Returns the metric names exposed.
pub fn run(case: &Case, binary: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    Ok(exposed_names(&scrape(case, binary)?))
}

/// Runs one [`Case`]: start, warm up, scrape. Returns the `/metrics` text.
pub fn scrape(case: &Case, binary: &Path) -> anyhow::Result<String> {
    let sink = spawn_stand_in_sink()?;
    let env: Vec<(String, String)> = case
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.replace("{sink}", &sink)))
        .collect();
    let running = start(binary, &env)?;
    for req in case.warm_up {
        http(running.port, req)
            .with_context(|| format!("{} {} {}", case.function, req.method, req.path))?;
    }
    let scrape = http(
        running.port,
        &Request {
            method: "GET",
            path: "/metrics",
            content_type: None,
            body: "",
        },
    )?;
    if scrape.status != 200 {
        bail!("{} GET /metrics answered {}", case.function, scrape.status);
    }
    Ok(scrape.body)
}

/// `promtool check metrics` (Prometheus' own linter) on an exposition:
/// its complaints, empty when it has none.
pub fn promtool_check(promtool: &Path, exposition: &str) -> anyhow::Result<String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", promtool.display()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match (out.status.success(), text.trim().is_empty()) {
        (true, true) => Ok(String::new()),
        (true, false) | (false, false) => Ok(text.trim().to_owned()),
        (false, true) => bail!(
            "promtool check metrics failed ({}) and said nothing",
            out.status
        ),
    }
}
