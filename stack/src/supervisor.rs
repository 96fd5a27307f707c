//! The process supervisor behind `make up`: every function as its own
//! process on a loopback port, with the environment Knative would give it,
//! logs prefixed by function name, a crashed function restarted with
//! back-off (as Kubernetes would), and everything stopped on request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// One function process: its Knative service name, binary, port and environment.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: String,
    pub port: u16,
    pub env: Vec<(String, String)>,
}

/// Credentials, each passed only to the functions that use it and never
/// inherited from the stack's own environment: the ingest token and JWT
/// settings go to ingest, the internal token to every function on a hop
/// (dashboard-api has no write routes, so it gets none).
pub const CREDENTIALS: &[&str] = &[
    "INGEST_TOKEN",
    "INTERNAL_TOKEN",
    "JWT_HS256_SECRET",
    "JWT_RS256_PUBLIC_KEY",
    "JWT_RS256_PUBLIC_KEY_FILE",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_REQUIRED_SCOPE",
];

fn uses_credential(function: &str, var: &str) -> bool {
    match var {
        "INTERNAL_TOKEN" => function != "dashboard-api",
        _ => function.starts_with("ingest"),
    }
}

/// Loopback ports of the local stack (each overridable by env in `make up`).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub dashboard: u16,
    pub ingest_grpc: u16,
    pub ingest_redis: u16,
    pub grpc_writer: u16,
    pub redis_sub: u16,
    pub aggregate: u16,
}

impl Default for Ports {
    fn default() -> Ports {
        Ports {
            dashboard: 8080,
            ingest_grpc: 8081,
            ingest_redis: 8082,
            grpc_writer: 8090,
            redis_sub: 8091,
            aggregate: 8092,
        }
    }
}

impl Ports {
    /// Every function's port.
    pub fn all(&self) -> [u16; 6] {
        [
            self.dashboard,
            self.ingest_grpc,
            self.ingest_redis,
            self.grpc_writer,
            self.redis_sub,
            self.aggregate,
        ]
    }

    /// Free ports for every function (tests and benchmarks).
    pub fn free() -> anyhow::Result<Ports> {
        let f = crate::free_port;
        Ok(Ports {
            dashboard: f()?,
            ingest_grpc: f()?,
            ingest_redis: f()?,
            grpc_writer: f()?,
            redis_sub: f()?,
            aggregate: f()?,
        })
    }
}

/// Everything the stack needs to know.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Where the function binaries are (a cargo target profile directory).
    pub bin_dir: PathBuf,
    pub redis_url: String,
    pub mongodb_uri: String,
    pub database: String,
    pub key_prefix: String,
    pub ports: Ports,
    pub dashboard_dir: PathBuf,
    /// Added to every function (and overriding the defaults below); the
    /// [`CREDENTIALS`] among them only to the functions that use them.
    pub extra_env: Vec<(String, String)>,
    /// Echo function output, each line prefixed with the function's name.
    pub echo_logs: bool,
}

impl StackConfig {
    /// The functions and the wiring between them, as Knative would give it:
    /// `K_SINK` from SinkBindings, `K_SERVICE`/`K_REVISION`/`K_CONFIGURATION`
    /// per Service, stores by URL.
    pub fn functions(&self) -> Vec<FunctionSpec> {
        let p = self.ports;
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        let stores = [
            ("MONGODB_URI", self.mongodb_uri.clone()),
            ("MONGODB_DATABASE", self.database.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.key_prefix.clone()),
        ];
        let spec = |name: &str, binary: &str, port: u16, own: Vec<(&str, String)>| {
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            env.insert("PORT".into(), port.to_string());
            env.insert("HOST".into(), "127.0.0.1".into());
            env.insert("K_SERVICE".into(), name.into());
            env.insert("K_CONFIGURATION".into(), name.into());
            env.insert("K_REVISION".into(), format!("{name}-00001"));
            for (k, v) in stores.iter().cloned().chain(own) {
                env.insert(k.into(), v);
            }
            for (k, v) in &self.extra_env {
                if CREDENTIALS.contains(&k.as_str()) && !uses_credential(name, k) {
                    continue;
                }
                env.insert(k.clone(), v.clone());
            }
            FunctionSpec {
                name: name.into(),
                binary: binary.into(),
                port,
                env: env.into_iter().collect(),
            }
        };
        let sink = format!("{}/", local(p.aggregate));
        vec![
            spec("aggregate", "aggregate", p.aggregate, vec![]),
            spec(
                "grpc-writer",
                "grpc-writer",
                p.grpc_writer,
                vec![("K_SINK", sink.clone())],
            ),
            spec(
                "redis-sub",
                "redis-sub",
                p.redis_sub,
                vec![("K_SINK", sink)],
            ),
            spec(
                "ingest-grpc",
                "ingest",
                p.ingest_grpc,
                vec![
                    ("INGEST_ROUTE", "grpc".into()),
                    ("GRPC_WRITER_URL", local(p.grpc_writer)),
                ],
            ),
            spec(
                "ingest-redis",
                "ingest",
                p.ingest_redis,
                vec![("INGEST_ROUTE", "redis".into())],
            ),
            spec(
                "dashboard-api",
                "dashboard-api",
                p.dashboard,
                vec![("DASHBOARD_DIR", self.dashboard_dir.display().to_string())],
            ),
        ]
    }
}

struct Process {
    spec: FunctionSpec,
    pid: Mutex<Option<u32>>,
    restarts: Mutex<u32>,
}

/// The running functions.
pub struct Supervisor {
    procs: BTreeMap<String, Arc<Process>>,
    stopping: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Supervisor {
    /// Starts every function of `config`; returns once all are spawned.
    pub fn start(config: &StackConfig) -> anyhow::Result<Supervisor> {
        // One TLS stack (ring) for the readiness client, as in the functions.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let stopping = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let mut procs = BTreeMap::new();
        for spec in config.functions() {
            let bin = config.bin_dir.join(&spec.binary);
            if !bin.exists() {
                bail!(
                    "{} is not built at {}: run `cargo build --release --bins` (make up does)",
                    spec.binary,
                    bin.display()
                );
            }
            let p = Arc::new(Process {
                spec,
                pid: Mutex::new(None),
                restarts: Mutex::new(0),
            });
            procs.insert(p.spec.name.clone(), p.clone());
            tasks.spawn(supervise(p, bin, stopping.clone(), config.echo_logs));
        }
        tasks.close();
        Ok(Supervisor {
            procs,
            stopping,
            tasks,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    pub fn spec(&self, name: &str) -> Option<&FunctionSpec> {
        self.procs.get(name).map(|p| &p.spec)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.procs[name].spec.port)
    }

    /// The current process id of a function, if it is running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        *self.procs.get(name)?.pid.lock().unwrap()
    }

    pub fn restarts(&self, name: &str) -> u32 {
        self.procs
            .get(name)
            .map(|p| *p.restarts.lock().unwrap())
            .unwrap_or(0)
    }

    /// Sends `signal` to a function's process (e.g. SIGKILL in fault tests);
    /// the supervisor restarts it as Kubernetes would.
    pub fn signal(&self, name: &str, signal: i32) -> anyhow::Result<()> {
        let pid = self
            .pid(name)
            .with_context(|| format!("{name} is not running"))?;
        crate::process::send_signal(pid, signal)
            .with_context(|| format!("cannot signal {name} (pid {pid})"))?;
        Ok(())
    }

    /// Waits until every function answers `/readyz` with 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let start = Instant::now();
        for name in self.procs.keys() {
            let url = format!("{}/readyz", self.url(name));
            loop {
                let last = match client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                };
                if start.elapsed() > timeout {
                    bail!("{name} is not ready after {timeout:?}: {last}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM to every function, then waits for them (they drain; a function
    /// still running after 15 s is killed).
    pub async fn stop(&self) {
        self.stopping.cancel();
        self.tasks.wait().await;
    }
}

async fn supervise(p: Arc<Process>, bin: PathBuf, stopping: CancellationToken, echo: bool) {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let status = run_once(&p, &bin, &stopping, echo).await;
        if stopping.is_cancelled() {
            return;
        }
        let ran = started.elapsed();
        if ran > Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        *p.restarts.lock().unwrap() += 1;
        eprintln!(
            "[stack] {} exited ({status}) after {:.1}s; restarting in {:?}",
            p.spec.name,
            ran.as_secs_f64(),
            delay
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn run_once(p: &Process, bin: &Path, stopping: &CancellationToken, echo: bool) -> String {
    let mut cmd = Command::new(bin);
    for var in CREDENTIALS {
        if !p.spec.env.iter().any(|(k, _)| k == var) {
            cmd.env_remove(var);
        }
    }
    cmd.envs(p.spec.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(if echo { Stdio::piped() } else { Stdio::null() })
        .stderr(if echo { Stdio::piped() } else { Stdio::null() })
        .kill_on_drop(true);
    // The function dies with the stack even on kill -9.
    crate::process::die_with_parent(cmd.as_std_mut());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return format!("could not start: {e}"),
    };
    *p.pid.lock().unwrap() = child.id();
    if echo {
        for (stream, name) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                &p.spec.name,
            ),
            (child.stderr.take().map(|s| Box::new(s) as _), &p.spec.name),
        ] {
            if let Some(s) = stream {
                let name = name.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(s).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        println!("[{name}] {line}");
                    }
                });
            }
        }
    }
    let status = tokio::select! {
        s = child.wait() => s,
        _ = stopping.cancelled() => {
            if let Some(pid) = child.id() {
                let _ = crate::process::send_signal(pid, libc::SIGTERM);
            }
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    };
    *p.pid.lock().unwrap() = None;
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_the_functions_that_use_them() {
        let config = StackConfig {
            bin_dir: PathBuf::from("/nonexistent"),
            redis_url: "redis://127.0.0.1:1/".into(),
            mongodb_uri: "mongodb://127.0.0.1:1/".into(),
            database: "covid".into(),
            key_prefix: "covid:".into(),
            ports: Ports::default(),
            dashboard_dir: PathBuf::from("dashboard/dist"),
            extra_env: [
                ("INGEST_TOKEN", "i"),
                ("INTERNAL_TOKEN", "n"),
                ("JWT_ISSUER", "j"),
                ("RUST_LOG", "warn"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            echo_logs: false,
        };
        let has = |f: &FunctionSpec, k: &str| f.env.iter().any(|(key, _)| key == k);
        for f in config.functions() {
            let ingest = f.name.starts_with("ingest");
            assert_eq!(has(&f, "INGEST_TOKEN"), ingest, "{}", f.name);
            assert_eq!(has(&f, "JWT_ISSUER"), ingest, "{}", f.name);
            assert_eq!(
                has(&f, "INTERNAL_TOKEN"),
                f.name != "dashboard-api",
                "{}",
                f.name
            );
            assert!(has(&f, "RUST_LOG"), "other variables go everywhere");
        }
    }
}
