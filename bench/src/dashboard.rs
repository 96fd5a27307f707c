//! Dashboard reads and freshness: requests/s of `/api/summary` and
//! `/api/areas/top` with 10,000 and with 1,000,000 stored cases (the cost
//! must not grow with the number of cases), and accept-to-browser freshness
//! with 200 SSE clients connected.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use events::{Case, Reported, WritePath};
use serde_json::json;
use store::{Aggregator, CaseStore, Mongo, MongoConfig, RedisStats};
use tokio::sync::mpsc;

use crate::report::{int, table};
use crate::stats::{median, percentile};
use crate::{Ctx, procs};

const AREAS: [&str; 22] = [
    "Alta Verapaz",
    "Baja Verapaz",
    "Chimaltenango",
    "Chiquimula",
    "El Progreso",
    "Escuintla",
    "Guatemala",
    "Huehuetenango",
    "Izabal",
    "Jalapa",
    "Jutiapa",
    "Petén",
    "Quetzaltenango",
    "Quiché",
    "Retalhuleu",
    "Sacatepéquez",
    "San Marcos",
    "Santa Rosa",
    "Sololá",
    "Suchitepéquez",
    "Totonicapán",
    "Zacapa",
];
const STATES: [&str; 4] = ["active", "recovered", "hospitalized", "deceased"];

/// Stores `n` cases through the real write and aggregation code (bulk
/// inserts, then counting in large flushes), so the statistics are the ones
/// the pipeline would have made.
async fn seed(cases: &CaseStore, agg: &Aggregator, n: u64) -> anyhow::Result<()> {
    seed_with(cases, agg, n, false).await
}

/// As [`seed`]; with `distinct`, every case has a location and a state no
/// other case has (what a client inventing strings would send).
async fn seed_with(
    cases: &CaseStore,
    agg: &Aggregator,
    n: u64,
    distinct: bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let chunk = 5_000u64;
    let mut done = 0u64;
    while done < n {
        let k = chunk.min(n - done);
        let batch: Vec<Reported> = (done..done + k)
            .map(|i| Reported {
                id: Reported::new_id(),
                case: Case::new(
                    &format!("Case {i}"),
                    &if distinct {
                        format!("Invented place {i}")
                    } else {
                        AREAS[(i * 7 % 22) as usize].to_owned()
                    },
                    (i % 100) as i64,
                    "communitary",
                    &if distinct {
                        format!("invented-state-{i}")
                    } else {
                        STATES[(i % 4) as usize].to_owned()
                    },
                )
                .expect("valid"),
                time: chrono::Utc::now(),
                revision: Some("ingest-grpc-00001".into()),
                traceparent: None,
            })
            .collect();
        let stored = cases
            .insert(
                &batch,
                if done.is_multiple_of(2) {
                    WritePath::Grpc
                } else {
                    WritePath::Redis
                },
            )
            .await?;
        agg.count_batches(&stored.batch.into_iter().collect::<Vec<_>>())
            .await?;
        done += k;
        if done.is_multiple_of(100_000) {
            println!(
                "    seeded {done} cases ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// dashboard-api (release binary) over the bench's stores, on a free port,
/// once ready; the process and its base URL.
async fn start_api(
    ctx: &Ctx,
    redis: &stack::RedisServer,
    mongo: &stack::MongoServer,
) -> anyhow::Result<(procs::Proc, String)> {
    let port = stack::free_port()?;
    let env: Vec<(String, String)> = [
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("RUST_LOG", "warn".into()),
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", "bench:".into()),
        ("MONGODB_URI", mongo.uri()),
        ("MONGODB_DATABASE", "bench".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let api = procs::Proc::spawn(&ctx.bin("dashboard-api"), &env)?;
    let base = format!("http://127.0.0.1:{port}");
    procs::wait_http_ok(
        &ctx.http,
        &format!("{base}/readyz"),
        Duration::from_secs(20),
    )
    .await?;
    Ok((api, base))
}

fn wrk_rps(url: &str, secs: u64) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), url])
        .output()
        .context("wrk is not installed: run scripts/setup.sh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        !text.contains("Non-2xx"),
        "non-2xx answers from {url}: {text}"
    );
    crate::loadgen::wrk_requests_per_sec(&text)
}

/// Fresh Redis and MongoDB-compatible servers in `dir`, and the store
/// handles a seed writes through.
struct Stores {
    redis: stack::RedisServer,
    mongo: stack::MongoServer,
    cases: CaseStore,
    agg: Aggregator,
}

impl Stores {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Stores> {
        let redis = stack::RedisServer::start(&dir.join("redis"))?;
        let mongo = stack::MongoServer::start(&dir.join("mongo"))?;
        let m = Mongo::connect_lazy(&MongoConfig {
            uri: mongo.uri(),
            database: "bench".into(),
        })
        .await?;
        let redis_stats = RedisStats::new(
            runtime::redis::connect_lazy(&redis.url())?,
            store::Keys::new("bench:"),
        );
        Ok(Stores {
            cases: CaseStore::new(m.clone()),
            agg: Aggregator::new(m, redis_stats),
            redis,
            mongo,
        })
    }
}

async fn reads(ctx: &Ctx) -> anyhow::Result<(Vec<Vec<String>>, Vec<serde_json::Value>)> {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for n in [10_000u64, ctx.large] {
        println!("  reads with {n} stored cases");
        let dir = ctx.work.path().join(format!("reads-{n}"));
        let stores = Stores::start(&dir).await?;
        seed(&stores.cases, &stores.agg, n).await?;
        // Let the store finish writing the seed (checkpoints) before measuring reads.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (api, base) = start_api(ctx, &stores.redis, &stores.mongo).await?;
        let total: serde_json::Value = ctx
            .http
            .get(format!("{base}/api/summary"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            total["total"].as_u64() == Some(n),
            "seeded {n} but the summary says {}",
            total["total"]
        );
        for endpoint in ["/api/summary", "/api/areas/top?n=3"] {
            let url = format!("{base}{endpoint}");
            let mut rps = Vec::new();
            for _ in 0..ctx.runs {
                let u = url.clone();
                let secs = ctx.secs;
                rps.push(tokio::task::spawn_blocking(move || wrk_rps(&u, secs)).await??);
            }
            let r = median(&rps);
            rows.push(vec![
                endpoint.to_owned(),
                int(n as f64),
                int(r),
                format!("`wrk -t1 -c32 -d{}s {url}`", ctx.secs),
            ]);
            out.push(json!({"endpoint": endpoint, "stored_cases": n, "requests_per_s": r}));
        }
        drop(api);
    }
    Ok((rows, out))
}

/// The endpoints whose cost must not grow with the strings clients invent.
const STRING_ENDPOINTS: [&str; 3] = ["/api/snapshot", "/api/states", "/api/areas/top?n=3"];

/// Dashboard reads with 22 areas and 4 states, then with 100,000 distinct
/// locations and 100,000 distinct states (one case each): top areas and
/// states come from Redis sorted sets (O(log names + n)) and list at most
/// ten states plus "other", so the rate should not fall with the number of
/// strings.
pub async fn run_strings(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== dashboard reads against distinct client strings");
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (distinct, n) in [(false, 10_000u64), (true, 100_000)] {
        let strings = if distinct {
            int(n as f64)
        } else {
            "22 / 4".to_owned()
        };
        println!("  reads with {strings} distinct locations / states");
        let dir = ctx.work.path().join(format!("strings-{distinct}"));
        let stores = Stores::start(&dir).await?;
        seed_with(&stores.cases, &stores.agg, n, distinct).await?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (api, base) = start_api(ctx, &stores.redis, &stores.mongo).await?;
        let snapshot: serde_json::Value = ctx
            .http
            .get(format!("{base}/api/snapshot"))
            .send()
            .await?
            .json()
            .await?;
        let listed = snapshot["states"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            snapshot["summary"]["total"].as_u64() == Some(n) && listed <= 11,
            "seeded {n}: the snapshot says total {} with {listed} states",
            snapshot["summary"]["total"]
        );
        for endpoint in STRING_ENDPOINTS {
            let url = format!("{base}{endpoint}");
            let mut rps = Vec::new();
            for _ in 0..ctx.runs {
                let (u, secs) = (url.clone(), ctx.secs);
                rps.push(tokio::task::spawn_blocking(move || wrk_rps(&u, secs)).await??);
            }
            let r = median(&rps);
            rows.push(vec![
                endpoint.to_owned(),
                strings.clone(),
                int(n as f64),
                int(r),
                format!("`wrk -t1 -c32 -d{}s {url}`", ctx.secs),
            ]);
            out.push(json!({"endpoint": endpoint, "distinct_strings": distinct, "stored_cases": n, "requests_per_s": r}));
        }
        drop(api);
    }
    let md = format!(
        "Dashboard reads (dashboard-api alone, release) with the 22 areas and 4 states of `traffic.json`, then with 100,000 cases each naming a location and a state no other case names; medians of {} runs of {} s with wrk (1 thread, 32 connections). Every list is bounded (top areas by `n`, ten states plus `other`), and the rankings are Redis sorted sets, read in O(log names + n).\n\n{}\n\nCommand: `target/release/bench dashboard-strings`\n",
        ctx.runs,
        ctx.secs,
        table(
            &[
                "endpoint",
                "distinct locations / states",
                "stored cases",
                "requests/s",
                "command"
            ],
            &rows
        ),
    );
    println!("{md}");
    crate::report::write_json(
        &ctx.results,
        "dashboard-strings",
        &json!({"machine": ctx.machine, "reads": out}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "dashboard-strings", &md)
}

/// One SSE client: reports the `summary.total` of every snapshot it receives, with the time.
async fn sse_client(
    http: reqwest::Client,
    url: String,
    tx: mpsc::UnboundedSender<(u64, Instant)>,
) -> anyhow::Result<()> {
    let mut resp = http.get(url).send().await?;
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data)
                && let Some(t) = v["summary"]["total"].as_u64()
            {
                let _ = tx.send((t, now));
            }
        }
    }
    Ok(())
}

/// Load on the Redis path while the probes run: as fast as it goes (16
/// users, 100-case batches), long enough to outlast every probe.
const LOAD_SECS: u64 = 40;

/// Accept → browser: the time from ingest's `202` for a probe case to each
/// SSE client's first snapshot that counts it. Idle, that is a snapshot
/// whose total reaches the probes posted so far. Under load (`loaded`: the
/// Redis path at full speed meanwhile), cases arrive all the time, so the
/// probe is fresh once a snapshot counts every case stored when its `202`
/// came (the stored documents, counted right after): the dashboard has
/// caught up with the probe and everything before it.
async fn freshness(
    ctx: &Ctx,
    clients: usize,
    rounds: usize,
    loaded: bool,
) -> anyhow::Result<(Vec<f64>, String)> {
    println!(
        "  freshness with {clients} SSE clients{}",
        if loaded { ", under load" } else { "" }
    );
    let r = crate::paths::start_stack(
        ctx,
        if loaded {
            "freshness-load"
        } else {
            "freshness"
        },
    )
    .await?;
    let stream = format!("{}/api/stream", r.sup.url("dashboard-api"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .build()?;
    let mut receivers = Vec::new();
    for _ in 0..clients {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(sse_client(http.clone(), stream.clone(), tx));
        receivers.push(rx);
    }
    // Every client has its first snapshot before we start.
    for rx in &mut receivers {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await?
            .context("an SSE client closed")?;
    }
    let ingest = format!("{}/cases", r.sup.url("ingest-grpc"));
    let body = r#"{"name":"Fresh","location":"Petén","age":30,"infectedtype":"communitary","state":"active"}"#;
    let load_target = format!("redis={}", r.sup.url("ingest-redis"));
    let load_args = crate::loadgen::Loadtest::args(
        LOAD_SECS,
        &load_target,
        &["--users", "16", "--batch", "100"],
    );
    let load = loaded.then(|| {
        let loadtest = crate::loadgen::Loadtest {
            bin: ctx.loadtest.bin.clone(),
            dir: ctx.loadtest.dir.clone(),
        };
        let args = load_args.clone();
        std::thread::spawn(move || loadtest.run(&args))
    });
    if loaded {
        // Past the load's ramp-up: the probes see the steady state.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let receivers = Arc::new(tokio::sync::Mutex::new(receivers));
    let mut samples = Vec::new();
    for round in 1..=rounds as u64 {
        let resp = ctx
            .http
            .post(&ingest)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let accepted = Instant::now();
        anyhow::ensure!(resp.status() == 202, "ingest answered {}", resp.status());
        let fresh_at = if loaded {
            r.cases.count(None).await?
        } else {
            round
        };
        let mut rxs = receivers.lock().await;
        for rx in rxs.iter_mut() {
            loop {
                let (total, at) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                    .await?
                    .context("an SSE client closed")?;
                if total >= fresh_at {
                    samples.push(at.saturating_duration_since(accepted).as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        drop(rxs);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut setup =
        format!("{clients} clients on {stream}, {rounds} single cases posted to {ingest}");
    if let Some(load) = load {
        let report = load
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
        anyhow::ensure!(
            report.duration_s >= (LOAD_SECS - 1) as f64,
            "the load ended before the probes"
        );
        setup.push_str(&format!(
            ", meanwhile `{}` ({} cases/s accepted)",
            crate::loadgen::Loadtest::command(&load_args),
            int(report.total.cases_accepted_per_s)
        ));
    }
    r.sup.stop().await;
    Ok((samples, setup))
}

/// How the request rate with `large` stored cases compares with 10,000, per endpoint.
fn growth(reads: &[serde_json::Value], large: u64) -> String {
    let rate = |ep: &str, n: u64| {
        reads
            .iter()
            .find(|r| r["endpoint"] == ep && r["stored_cases"] == n)
            .and_then(|r| r["requests_per_s"].as_f64())
            .unwrap_or(0.0)
    };
    let parts: Vec<String> = ["/api/summary", "/api/areas/top?n=3"]
        .iter()
        .map(|ep| {
            format!(
                "`{ep}` {:+.0}%",
                (rate(ep, large) / rate(ep, 10_000).max(1.0) - 1.0) * 100.0
            )
        })
        .collect();
    format!(
        "Change in requests/s from 10,000 to {} stored cases: {}. Both endpoints read only materialised statistics (O(areas)); no read scans the cases.",
        int(large as f64),
        parts.join(", ")
    )
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== dashboard reads and freshness");
    let (rows, reads_out) = reads(ctx).await?;
    let (samples, setup) = freshness(ctx, 200, 20, false).await?;
    let (p50, p95, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        percentile(&samples, 1.0),
    );
    let (loaded, loaded_setup) = freshness(ctx, 200, 20, true).await?;
    let (lp50, lp95, lmax) = (
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.95),
        percentile(&loaded, 1.0),
    );
    let md = format!(
        "Dashboard reads against dashboard-api alone (release), the stores seeded through the real write and aggregation code; medians of {} runs of {} s with wrk (1 thread, 32 connections).\n\n{}\n{}\n\nFreshness, accept → browser: the time from ingest's `202` for one case to each of 200 connected SSE clients receiving a snapshot that includes it (whole pipeline running; {}): **p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms** over {} samples (target p95 < 1 s).\n\nSame under load, while the Redis path runs at full speed: the time from the probe's `202` to each client's first snapshot that counts every case stored when the `202` came ({}): **p50 {lp50:.0} ms, p95 {lp95:.0} ms, max {lmax:.0} ms** over {} samples.\n\nCommand: `target/release/bench dashboard`\n",
        ctx.runs,
        ctx.secs,
        table(
            &["endpoint", "stored cases", "requests/s", "command"],
            &rows
        ),
        growth(&reads_out, ctx.large),
        setup,
        samples.len(),
        loaded_setup,
        loaded.len()
    );
    println!("{md}");
    crate::report::write_json(
        &ctx.results,
        "dashboard",
        &json!({"machine": ctx.machine, "reads": reads_out, "freshness_ms": {"p50": p50, "p95": p95, "max": max, "samples": samples.len(), "setup": setup}, "freshness_under_load_ms": {"p50": lp50, "p95": lp95, "max": lmax, "samples": loaded.len(), "setup": loaded_setup}}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "dashboard", &md)
}
