//! Cold start per function: time from process start to the first successful
//! response (what a Knative user waits for on scale-from-zero, minus the
//! platform's own work), binary size and idle RSS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::report::table;
use crate::stats::{median, percentile};
use crate::{Ctx, procs};

const FUNCTIONS: [&str; 5] = [
    "ingest",
    "grpc-writer",
    "redis-sub",
    "aggregate",
    "dashboard-api",
];

/// One blocking GET /healthz; true on a 200.
fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// Starts the binary and polls until it answers; returns the elapsed time.
fn cold_start(
    bin: &std::path::Path,
    env: &[(String, String)],
    port: u16,
) -> anyhow::Result<(Duration, procs::Proc)> {
    let start = Instant::now();
    let p = procs::Proc::spawn(bin, env)?;
    loop {
        if healthz(port) {
            return Ok((start.elapsed(), p));
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "{} did not answer within 10 s",
            bin.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== cold starts");
    let dir = ctx.work.path().join("coldstart");
    let redis = stack::RedisServer::start(&dir.join("redis"))?;
    let mongo = stack::MongoServer::start(&dir.join("mongo"))?;
    let runs = (ctx.runs * 5).max(10);
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for f in FUNCTIONS {
        let bin = ctx.bin(f);
        let mut times = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..runs {
            let port = stack::free_port()?;
            let mut env: Vec<(String, String)> = [
                ("PORT", port.to_string()),
                ("HOST", "127.0.0.1".into()),
                ("RUST_LOG", "warn".into()),
                ("REDIS_URL", redis.url()),
                ("MONGODB_URI", mongo.uri()),
                ("DASHBOARD_DIR", "dashboard/dist".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            if f == "ingest" {
                env.push(("INGEST_ROUTE".into(), "redis".into()));
            }
            let b = bin.clone();
            let (t, p) = tokio::task::spawn_blocking(move || cold_start(&b, &env, port)).await??;
            times.push(t.as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(300)).await;
            idle.push(procs::rss_mib(p.pid()).unwrap_or(0.0));
            drop(p);
        }
        let (med, p90, min) = (
            median(&times),
            percentile(&times, 0.9),
            percentile(&times, 0.0),
        );
        let size = procs::file_mib(&bin);
        let rss = median(&idle);
        rows.push(vec![
            f.to_owned(),
            format!("{med:.1} ms"),
            format!("{p90:.1} ms"),
            format!("{min:.1} ms"),
            format!("{size:.1} MiB"),
            format!("{rss:.1} MiB"),
        ]);
        out.push(json!({"function": f, "runs": runs, "median_ms": med, "p90_ms": p90, "min_ms": min, "binary_mib": size, "idle_rss_mib": rss}));
    }
    drop((redis, mongo));
    let md = format!(
        "Cold start: from process start (spawn) to the first `200` from `/healthz`, polled every 0.2 ms, {runs} starts per function, release build. Idle RSS 300 ms after start. Target: under 20 ms per function.\n\n{}\nCommand: `target/release/bench coldstart`\n",
        table(
            &["function", "median", "p90", "min", "binary", "idle RSS"],
            &rows
        )
    );
    println!("{md}");
    crate::report::write_json(
        &ctx.results,
        "coldstart",
        &json!({"machine": ctx.machine, "functions": out}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "coldstart", &md)
}
