//! Shared servers for tests: a real Redis and a real MongoDB-compatible
//! server, started once per test process (or given by `make test` through
//! `COVID_TEST_REDIS_URL` and `COVID_TEST_MONGODB_URI`), with a fresh key
//! prefix or database name for every test so tests run in parallel.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use crate::servers::{MongoServer, RedisServer};

pub struct Servers {
    pub redis_url: String,
    pub mongodb_uri: String,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

/// The test servers. Never skips: if none are given, they are started here,
/// and a failure to start them fails the test with the reason.
pub fn servers() -> &'static Servers {
    // Tests build reqwest clients; the project uses one TLS stack (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    SERVERS.get_or_init(|| {
        let redis_url = std::env::var("COVID_TEST_REDIS_URL").ok();
        let mongodb_uri = std::env::var("COVID_TEST_MONGODB_URI").ok();
        if let (Some(redis_url), Some(mongodb_uri)) = (redis_url, mongodb_uri) {
            return Servers {
                redis_url,
                mongodb_uri,
            };
        }
        // Started from a thread that lives as long as the process, so the
        // servers (which die with their parent thread) outlive every test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let started = RedisServer::start(&dir.path().join("redis"))
                .and_then(|r| MongoServer::start(&dir.path().join("mongo")).map(|m| (r, m)));
            match started {
                Ok((r, m)) => {
                    tx.send(Ok(Servers {
                        redis_url: r.url(),
                        mongodb_uri: m.uri(),
                    }))
                    .unwrap();
                    let _keep = (r, m, dir);
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => tx.send(Err(format!("{e:#}"))).unwrap(),
            }
        });
        match rx.recv().expect("the server thread answers") {
            Ok(s) => s,
            Err(e) => panic!("cannot start the test servers: {e}"),
        }
    })
}

/// An HTTP client for tests, with the project's one TLS stack (ring)
/// installed first, as every function does at start-up.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A name no other test uses: `<what>_<uuid>`; usable as a database name or,
/// with a trailing `:`, as a Redis key prefix.
pub fn unique(what: &str) -> String {
    format!("{what}_{}", uuid::Uuid::new_v4().simple())
}

/// The directory of the function binaries the running test uses: the
/// profile directory its own executable is in (`target/<profile>/deps/<test>`).
pub fn built_binaries() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test binary has no profile directory")?
        .to_owned();
    if !dir.join("ingest").exists() {
        bail!(
            "function binaries not found in {}: run `cargo build --workspace --bins` first (make test does)",
            dir.display()
        );
    }
    Ok(dir)
}
