//! `stack`: the whole pipeline on one machine.
//!
//! `stack up` starts Redis and the MongoDB-compatible server (unless
//! `REDIS_URL` / `MONGODB_URI` point at running ones) and every function as
//! its own process, prints the URLs, and runs until Ctrl-C. Writes need
//! credentials: the ingest token (`INGEST_TOKEN`, or a random one, printed
//! and kept in `<data dir>/ingest-token`) and a random internal token
//! between the functions.
//! `stack servers` starts only the two stores and prints their URLs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use stack::{MongoServer, Ports, RedisServer, StackConfig, Supervisor};

#[derive(Parser)]
#[command(
    name = "stack",
    about = "Run the covid-realtime pipeline on one machine, no cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the stores and every function; stop everything on Ctrl-C.
    Up {
        /// Where local data is kept between runs.
        #[arg(long, env = "STACK_DATA_DIR", default_value = ".local/stack")]
        data_dir: PathBuf,
        /// Start with empty stores (empties the data directory first).
        #[arg(long)]
        fresh: bool,
        /// Directory of the function binaries (default: next to this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The built dashboard page.
        #[arg(long, env = "DASHBOARD_DIR", default_value = "dashboard/dist")]
        dashboard_dir: PathBuf,
        /// Do not echo the functions' logs.
        #[arg(long)]
        quiet: bool,
    },
    /// Start only Redis and the MongoDB-compatible server (throw-away data) and print their URLs.
    Servers,
}

fn port(key: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(key) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}={v:?} is not a port number")),
        _ => Ok(default),
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// 244 random bits (two UUIDv4s, from the OS's generator) as 64 hex digits.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `key` from the environment, checked as the functions will check it, or
/// a new random token.
fn token(key: &str) -> anyhow::Result<String> {
    match std::env::var(key)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => Ok(random_token()),
        Some(t) if t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t),
        Some(_) => anyhow::bail!(
            "{key} must be at least 16 visible ASCII characters (e.g. `openssl rand -hex 32`), or unset for a random one"
        ),
    }
}

/// Keeps the ingest token where `make demo` and the load generator find it,
/// readable by this user only.
fn write_token_file(path: &Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{token}")?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Servers => servers().await,
        Cmd::Up {
            data_dir,
            fresh,
            bin_dir,
            dashboard_dir,
            quiet,
        } => up(data_dir, fresh, bin_dir, dashboard_dir, quiet).await,
    }
}

async fn servers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start(&dir.path().join("redis"))?;
    let mongo = MongoServer::start(&dir.path().join("mongo"))?;
    println!("REDIS_URL={}", redis.url());
    println!("MONGODB_URI={}", mongo.uri());
    wait_for_ctrl_c().await;
    Ok(())
}

async fn wait_for_ctrl_c() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn up(
    data_dir: PathBuf,
    fresh: bool,
    bin_dir: Option<PathBuf>,
    dashboard_dir: PathBuf,
    quiet: bool,
) -> anyhow::Result<()> {
    // Held until the stores are stopped: one stack per data directory.
    let _held = stack::data_dir::DataDir::claim(&data_dir, fresh)?;
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .expect("a binary has a directory")
            .to_owned(),
    };
    let d = Ports::default();
    let ports = Ports {
        dashboard: port("DASHBOARD_PORT", d.dashboard)?,
        ingest_grpc: port("INGEST_GRPC_PORT", d.ingest_grpc)?,
        ingest_redis: port("INGEST_REDIS_PORT", d.ingest_redis)?,
        grpc_writer: port("GRPC_WRITER_PORT", d.grpc_writer)?,
        redis_sub: port("REDIS_SUB_PORT", d.redis_sub)?,
        aggregate: port("AGGREGATE_PORT", d.aggregate)?,
    };
    // Our own stores unless real ones are given, on ports the functions
    // were not promised (they bind theirs only once the stores are up).
    let store_port = |var: &str| -> anyhow::Result<u16> {
        match port(var, 0)? {
            0 => stack::free_port_except(&ports.all()),
            p => Ok(p),
        }
    };
    let mut own_redis = None;
    let redis_url = match std::env::var("REDIS_URL").ok().filter(|v| !v.is_empty()) {
        Some(u) => u,
        None => {
            let r = RedisServer::start_with(
                &data_dir.join("redis"),
                Some(store_port("REDIS_PORT")?),
                true,
            )?;
            let url = r.url();
            own_redis = Some(r);
            url
        }
    };
    let mut own_mongo = None;
    let mongodb_uri = match std::env::var("MONGODB_URI").ok().filter(|v| !v.is_empty()) {
        Some(u) => u,
        None => {
            let m = MongoServer::start_on(&data_dir.join("mongo"), store_port("MONGODB_PORT")?)?;
            let uri = m.uri();
            own_mongo = Some(m);
            uri
        }
    };
    let mut extra_env = Vec::new();
    if std::env::var_os("LOG_FORMAT").is_none() {
        extra_env.push(("LOG_FORMAT".to_owned(), "text".to_owned()));
    }
    let ingest_token = token("INGEST_TOKEN")?;
    let token_file = data_dir.join("ingest-token");
    write_token_file(&token_file, &ingest_token)?;
    extra_env.push(("INGEST_TOKEN".to_owned(), ingest_token.clone()));
    extra_env.push(("INTERNAL_TOKEN".to_owned(), token("INTERNAL_TOKEN")?));
    // JWT settings given to `make up` go to ingest (the supervisor passes
    // credentials only where they are used).
    for key in stack::supervisor::CREDENTIALS
        .iter()
        .filter(|k| k.starts_with("JWT_"))
    {
        if let Some(v) = std::env::var(key).ok().filter(|v| !v.trim().is_empty()) {
            extra_env.push(((*key).to_owned(), v));
        }
    }
    let config = StackConfig {
        bin_dir,
        redis_url: redis_url.clone(),
        mongodb_uri: mongodb_uri.clone(),
        database: env_or("MONGODB_DATABASE", "covid"),
        key_prefix: env_or("REDIS_KEY_PREFIX", "covid:"),
        ports,
        dashboard_dir,
        extra_env,
        echo_logs: !quiet,
    };
    let sup = Supervisor::start(&config)?;
    let ready = tokio::select! {
        r = sup.wait_ready(Duration::from_secs(60)) => r,
        _ = wait_for_ctrl_c() => { sup.stop().await; return Ok(()); }
    };
    if let Err(e) = ready {
        eprintln!("[stack] {e:#}");
    }
    println!();
    println!(
        "covid-realtime is up ({}):",
        if own_mongo.is_some() {
            "local stores"
        } else {
            "given stores"
        }
    );
    println!("  dashboard         http://127.0.0.1:{}", ports.dashboard);
    println!(
        "  ingest (gRPC)     http://127.0.0.1:{}/cases",
        ports.ingest_grpc
    );
    println!(
        "  ingest (Redis)    http://127.0.0.1:{}/cases",
        ports.ingest_redis
    );
    println!("  grpc-writer       http://127.0.0.1:{}", ports.grpc_writer);
    println!("  redis-sub         http://127.0.0.1:{}", ports.redis_sub);
    println!("  aggregate         http://127.0.0.1:{}", ports.aggregate);
    println!("  Redis             {redis_url}");
    println!("  MongoDB           {mongodb_uri}");
    println!(
        "  ingest token      {ingest_token}  (also in {})",
        token_file.display()
    );
    println!(
        "Try: curl -H \"authorization: Bearer $(cat {})\" -H 'content-type: application/json' -d '{{\"name\":\"Ana\",\"location\":\"Petén\",\"age\":34,\"infectedtype\":\"communitary\",\"state\":\"active\"}}' http://127.0.0.1:{}/cases",
        token_file.display(),
        ports.ingest_grpc
    );
    println!("Ctrl-C stops everything.");
    wait_for_ctrl_c().await;
    eprintln!("[stack] stopping");
    sup.stop().await;
    drop(own_redis);
    drop(own_mongo);
    Ok(())
}
