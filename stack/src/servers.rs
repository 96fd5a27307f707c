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

/// How to start one kind of server; [`LocalServer`] owns the process.
pub trait ServerKind {
    /// Starts the server on `port` (0: a port it picks, where it can) and
    /// returns once it listens: the child and the port it listens on. The
    /// child must die with this process ([`crate::process::die_with_parent`]).
    fn spawn(&self, port: u16) -> anyhow::Result<(Child, u16)>;
}

/// One local server process on a loopback port: started, stopped (SIGTERM,
/// then SIGKILL after 5 s), restarted on the same port, stopped when dropped.
pub struct LocalServer<K: ServerKind> {
    kind: K,
    port: u16,
    child: Option<Child>,
}

/// A `redis-server` on a loopback port.
pub type RedisServer = LocalServer<Redis>;
/// SecantusDB, a MongoDB wire-protocol server on WiredTiger.
pub type MongoServer = LocalServer<Mongo>;

impl<K: ServerKind> LocalServer<K> {
    fn launch(kind: K, port: u16) -> anyhow::Result<LocalServer<K>> {
        let (child, port) = kind.spawn(port)?;
        Ok(LocalServer {
            kind,
            port,
            child: Some(child),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
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

    /// Starts again on the same port and data (after [`LocalServer::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let (child, port) = self.kind.spawn(self.port)?;
        self.port = port;
        self.child = Some(child);
        Ok(())
    }
}

impl<K: ServerKind> Drop for LocalServer<K> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server` in `dir`, without persistence unless asked.
pub struct Redis {
    dir: PathBuf,
    /// Keeps data across restarts (append-only file in `dir`).
    persistent: bool,
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
        // A free port may be taken before redis-server binds it: try another.
        for _ in 0..5 {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            let kind = Redis {
                dir: dir.to_owned(),
                persistent,
            };
            match LocalServer::launch(kind, port) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl ServerKind for Redis {
    fn spawn(&self, port: u16) -> anyhow::Result<(Child, u16)> {
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
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
        crate::process::die_with_parent(&mut cmd);
        let child = cmd.spawn().context(
            "cannot start redis-server: install it with `apt-get install -y redis-server` (scripts/setup.sh does)",
        )?;
        listening_or_killed(child, |child| {
            wait_for_port(port, child, "redis-server", Duration::from_secs(10))?;
            Ok(port)
        })
    }
}

/// SecantusDB in `dir`, as a separate process (it is GPL-2.0: never linked
/// into the project).
pub struct Mongo {
    dir: PathBuf,
}

impl MongoServer {
    pub fn start(dir: &Path) -> anyhow::Result<MongoServer> {
        MongoServer::start_on(dir, 0)
    }

    /// On `port` (0: a free one), keeping data in `dir`.
    pub fn start_on(dir: &Path, port: u16) -> anyhow::Result<MongoServer> {
        LocalServer::launch(
            Mongo {
                dir: dir.to_owned(),
            },
            port,
        )
    }

    pub fn uri(&self) -> String {
        mongo_uri(self.port)
    }
}

fn mongo_uri(port: u16) -> String {
    format!("mongodb://127.0.0.1:{port}/?directConnection=true")
}

impl ServerKind for Mongo {
    fn spawn(&self, port: u16) -> anyhow::Result<(Child, u16)> {
        let bin = secantusd();
        if !bin.exists() {
            bail!(
                "the MongoDB-compatible server is not installed at {}: run scripts/setup.sh (or set SECANTUSD)",
                bin.display()
            );
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = Command::new(&bin);
        cmd.env(
            WT_CONFIG_EXTRA,
            wt_config_extra(std::env::var(WT_CONFIG_EXTRA).ok().as_deref()),
        );
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
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
        crate::process::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        listening_or_killed(child, |child| {
            let port = listening_port(child)
                .with_context(|| format!("{} did not start", bin.display()))?;
            wait_for_port(port, child, "secantusd-rs", Duration::from_secs(10))?;
            set_transaction_lifetime(&mongo_uri(port), Duration::from_secs(10))?;
            Ok(port)
        })
    }
}

/// SecantusDB's variable of WiredTiger settings added to its own.
const WT_CONFIG_EXTRA: &str = "SECANTUS_WT_CONFIG_EXTRA";

/// WiredTiger settings of the local server: one eviction thread, not
/// SecantusDB's four. On a small machine that also runs every function,
/// four eviction threads that wake together take the cores from the writers
/// in bursts (every ~1.1 s at 16,000 cases a second on 2 cores), and a write
/// waits 50–100 ms for them; one thread evicts as fast as the cases arrive
/// and leaves the other core to the pipeline (BENCHMARKS.md, "Write paths").
/// The user's own settings come after these, and WiredTiger takes the last
/// of a repeated key, so theirs win.
const WT_CONFIG: &str = "eviction=(threads_min=1,threads_max=1)";

fn wt_config_extra(user: Option<&str>) -> String {
    match user.map(str::trim) {
        Some(extra) if !extra.is_empty() => format!("{WT_CONFIG},{extra}"),
        _ => WT_CONFIG.to_owned(),
    }
}

/// The child and its port once `ready` says it listens; killed (not left
/// running unowned) when it does not.
fn listening_or_killed(
    mut child: Child,
    ready: impl FnOnce(&mut Child) -> anyhow::Result<u16>,
) -> anyhow::Result<(Child, u16)> {
    match ready(&mut child) {
        Ok(port) => Ok((child, port)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// The port SecantusDB prints it listens on; its stdout is drained after,
/// so the server never blocks on a full pipe.
fn listening_port(child: &mut Child) -> anyhow::Result<u16> {
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
        for _ in lines {}
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("no listening address printed within 30 s"))?;
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("unexpected listening address {addr:?}"))
}

/// How long the server keeps a transaction whose client went away (the
/// default 60 s would freeze counting for a minute after an aggregate is
/// killed mid-transaction; its transactions take milliseconds).
/// Production MongoDB gets the same setting (knative/stores/mongodb.yaml).
fn set_transaction_lifetime(uri: &str, limit: Duration) -> anyhow::Result<()> {
    let uri = uri.to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A stopped child is reaped, so its /proc entry is gone.
        Path::new(&format!("/proc/{pid}")).exists()
    }

    fn answers(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn both_servers_restart_on_their_port_and_end_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = RedisServer::start(&dir.path().join("redis")).unwrap();
        let mut mongo = MongoServer::start(&dir.path().join("mongo")).unwrap();
        let (redis_port, mongo_port) = (redis.port(), mongo.port());
        let first_pids = (redis.pid().unwrap(), mongo.pid().unwrap());

        redis.stop();
        mongo.stop();
        assert_eq!((redis.pid(), mongo.pid()), (None, None));
        assert!(!alive(first_pids.0) && !alive(first_pids.1));

        redis.restart().unwrap();
        mongo.restart().unwrap();
        assert_eq!((redis.port(), mongo.port()), (redis_port, mongo_port));
        assert!(answers(redis_port) && answers(mongo_port));
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{redis_port}/"));
        assert!(mongo.uri().contains(&format!(":{mongo_port}/")));

        let pids = (redis.pid().unwrap(), mongo.pid().unwrap());
        drop(redis);
        drop(mongo);
        assert!(
            !alive(pids.0) && !alive(pids.1),
            "dropped servers must be gone"
        );
    }

    #[test]
    fn the_server_runs_with_one_eviction_thread_unless_told_otherwise() {
        // WiredTiger records the settings a database was created with.
        let dir = tempfile::tempdir().unwrap();
        let mongo = MongoServer::start(dir.path()).unwrap();
        let created = std::fs::read_to_string(dir.path().join("WiredTiger.basecfg")).unwrap();
        assert!(
            created.contains("eviction=(threads_max=1,threads_min=1)"),
            "{created}"
        );
        drop(mongo);
        // A user's settings come last, so WiredTiger takes theirs.
        assert_eq!(
            wt_config_extra(Some(" eviction=(threads_max=2) ")),
            format!("{WT_CONFIG},eviction=(threads_max=2)")
        );
        assert_eq!(wt_config_extra(Some("")), WT_CONFIG);
        assert_eq!(wt_config_extra(None), WT_CONFIG);
    }

    #[test]
    fn a_server_that_never_listens_is_killed_not_left_running() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let e = listening_or_killed(child, |_| bail!("never printed its address")).unwrap_err();
        assert!(e.to_string().contains("never printed"), "{e}");
        assert!(!alive(pid), "the child must be killed and reaped");
    }
}
