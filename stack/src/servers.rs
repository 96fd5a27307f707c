//! Local Redis and MongoDB-compatible servers, each its own process on a
//! loopback port, in a private data directory.
//!
//! Production points `REDIS_URL` and `MONGODB_URI` at real servers; these are
//! for one machine: `make up`, the tests and the benchmarks.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the project's own tools are installed (`COVID_TOOLS_DIR`, default
/// `/opt/covid-realtime`); `scripts/setup.sh` puts them there.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("COVID_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/covid-realtime"))
}

/// The MongoDB-compatible server binary (`SECANTUSD`, or the installed one).
pub fn secantusd() -> PathBuf {
    std::env::var_os("SECANTUSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("secantus/bin/secantusd-rs"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free loopback port that is none of `promised` (ports picked for
/// servers that have not bound them yet, which the kernel may hand out again).
pub fn free_port_except(promised: &[u16]) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let p = free_port()?;
        if !promised.contains(&p) {
            return Ok(p);
        }
    }
    bail!("no free loopback port outside {promised:?}")
}

/// Ends the child with its parent, even if the parent is killed with -9.
/// Call from a thread that lives as long as the process.
fn die_with_parent(cmd: &mut Command) {
    crate::process::die_with_parent(cmd);
}

fn wait_for_port(
    port: u16,
    child: &mut Child,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before listening on port {port}");
        }
        if start.elapsed() > timeout {
            bail!("{what} did not listen on port {port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // SIGTERM first so the server closes its files cleanly.
        let _ = crate::process::send_signal(c.id(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A `redis-server` on a loopback port, without persistence.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A throw-away server (tests, benchmarks).
    pub fn start(dir: &Path) -> anyhow::Result<RedisServer> {
        RedisServer::start_with(dir, None, false)
    }

    /// `port` (or a free one); `persistent` keeps data across restarts (append-only file in `dir`).
    pub fn start_with(
        dir: &Path,
        port: Option<u16>,
        persistent: bool,
    ) -> anyhow::Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut s = RedisServer {
                port,
                dir: dir.to_owned(),
                persistent,
                child: None,
            };
            match s.spawn() {
                Ok(()) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
                "--protected-mode",
                "no",
            ])
            .args(["--maxclients", "10000", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context(
            "cannot start redis-server: install it with `apt-get install -y redis-server` (scripts/setup.sh does)",
        )?;
        wait_for_port(
            self.port,
            &mut child,
            "redis-server",
            Duration::from_secs(10),
        )?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// Starts again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SecantusDB, a MongoDB wire-protocol server on WiredTiger, as a separate
/// process (it is GPL-2.0: never linked into the project).
pub struct MongoServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl MongoServer {
    pub fn start(dir: &Path) -> anyhow::Result<MongoServer> {
        MongoServer::start_on(dir, 0)
    }

    /// On `port` (0: a free one), keeping data in `dir`.
    pub fn start_on(dir: &Path, port: u16) -> anyhow::Result<MongoServer> {
        let mut s = MongoServer {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = secantusd();
        if !bin.exists() {
            bail!(
                "the MongoDB-compatible server is not installed at {}: run scripts/setup.sh (or set SECANTUSD)",
                bin.display()
            );
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.dir)
            .args([
                "--log-file-max",
                "16MB",
                "--cache-size",
                "512M",
                "--log-level",
                "WARNING",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "{} did not print its listening address within 30 s",
                    bin.display()
                );
            }
        };
        self.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("unexpected listening address {addr:?}"))?;
        wait_for_port(
            self.port,
            &mut child,
            "secantusd-rs",
            Duration::from_secs(10),
        )?;
        self.child = Some(child);
        self.set_transaction_lifetime(Duration::from_secs(10))
    }

    /// How long the server keeps a transaction whose client went away (the
    /// default 60 s would freeze counting for a minute after an aggregate is
    /// killed mid-transaction; its transactions take milliseconds).
    /// Production MongoDB gets the same setting (knative/stores/mongodb.yaml).
    fn set_transaction_lifetime(&self, limit: Duration) -> anyhow::Result<()> {
        let uri = self.uri();
        let secs = limit.as_secs() as i32;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let client = mongodb::Client::with_uri_str(&uri).await?;
                client
                    .database("admin")
                    .run_command(mongodb::bson::doc! {"setParameter": 1, "transactionLifetimeLimitSeconds": secs})
                    .await?;
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("setting the transaction lifetime panicked"))?
        .context("cannot set transactionLifetimeLimitSeconds on the MongoDB-compatible server")
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        stop(&mut self.child);
    }

    /// Starts again on the same port and data (after [`MongoServer::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
