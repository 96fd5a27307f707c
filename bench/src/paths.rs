//! The two write paths end to end (the seed's question): for the gRPC path
//! (ingest → grpc-writer → MongoDB) and the Redis path (ingest → Redis
//! Stream → redis-sub → MongoDB), with single cases and 100-case batches:
//! sustained cases/s from the first POST until stored, ingest response
//! latency, accept-to-stored latency, CPU seconds per 1,000 cases for the
//! whole stack (and which process spends them), MongoDB documents touched
//! per case, how far the counters trail the documents under load, the
//! recovery after aggregate is frozen, and peak RSS per function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::doc;
use serde_json::{Value, json};
use stack::{MongoServer, Ports, RedisServer, StackConfig, Supervisor};
use store::{CaseStore, Mongo, MongoConfig};

use crate::loadgen::Loadtest;
use crate::report::{int, table};
use crate::stats::{median, percentile};
use crate::{Ctx, procs};

const FUNCTIONS: [&str; 6] = [
    "ingest-grpc",
    "ingest-redis",
    "grpc-writer",
    "redis-sub",
    "aggregate",
    "dashboard-api",
];

pub struct Running {
    pub sup: Supervisor,
    pub redis: RedisServer,
    pub mongo: MongoServer,
    pub cases: CaseStore,
    pub mongo_client: Mongo,
}

impl Running {
    /// Every process of the stack and its pid (functions and stores).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = FUNCTIONS
            .iter()
            .filter_map(|f| self.sup.pid(f).map(|p| (f.to_string(), p)))
            .collect();
        v.extend(self.redis.pid().map(|p| ("redis".to_owned(), p)));
        v.extend(self.mongo.pid().map(|p| ("mongodb".to_owned(), p)));
        v
    }

    pub fn cpu(&self) -> BTreeMap<String, f64> {
        self.pids()
            .into_iter()
            .map(|(n, p)| (n, procs::cpu_s(p).unwrap_or(0.0)))
            .collect()
    }
}

/// A fresh stack from the release binaries, on free ports, with empty stores.
pub async fn start_stack(ctx: &Ctx, name: &str) -> anyhow::Result<Running> {
    let dir = ctx.work.path().join(name);
    let redis = RedisServer::start(&dir.join("redis"))?;
    let mongo = MongoServer::start(&dir.join("mongo"))?;
    let config = StackConfig {
        bin_dir: ctx.bins.clone(),
        redis_url: redis.url(),
        mongodb_uri: mongo.uri(),
        database: "bench".into(),
        key_prefix: "bench:".into(),
        ports: Ports::free()?,
        dashboard_dir: PathBuf::from("dashboard/dist"),
        extra_env: vec![("RUST_LOG".into(), "warn".into())],
        echo_logs: false,
    };
    let sup = Supervisor::start(&config)?;
    sup.wait_ready(Duration::from_secs(60)).await?;
    let mongo_client = Mongo::connect_lazy(&MongoConfig {
        uri: mongo.uri(),
        database: "bench".into(),
    })
    .await?;
    Ok(Running {
        sup,
        redis,
        mongo,
        cases: CaseStore::new(mongo_client.clone()),
        mongo_client,
    })
}

/// The smallest UUIDv7 string at or after `ms` (ids sort by acceptance time).
fn id_floor(ms: i64) -> String {
    let ms = ms as u64;
    format!("{:08x}-{:04x}-", ms >> 16, ms & 0xffff)
}

/// `(reported_at, stored_at)` in ms of each case of one path accepted since
/// `since_ms`, read as a stream (16 bytes a case, whatever the run's size).
async fn accept_and_store_times(
    r: &Running,
    path: &str,
    since_ms: i64,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let mut docs = r
        .mongo_client
        .collection(store::mongo::CASES)
        .find(doc! {"_id": {"$gte": id_floor(since_ms)}, "path": path})
        .projection(doc! {"reported_at": 1, "stored_at": 1})
        .await?;
    let mut times = Vec::new();
    while let Some(d) = docs.try_next().await? {
        let ms = |f: &str| d.get_datetime(f).map(|t| t.timestamp_millis());
        times.push((ms("reported_at")?, ms("stored_at")?));
    }
    Ok(times)
}

/// Documents MongoDB inserted, updated, deleted and returned so far
/// (`serverStatus` `metrics.document`): what the design costs the database.
async fn documents_touched(r: &Running) -> anyhow::Result<f64> {
    let status = r
        .mongo_client
        .client()
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await?;
    let d = status.get_document("metrics")?.get_document("document")?;
    let mut sum = 0.0;
    for k in ["inserted", "updated", "deleted", "returned"] {
        sum += match d.get(k) {
            Some(mongodb::bson::Bson::Int32(v)) => f64::from(*v),
            Some(mongodb::bson::Bson::Int64(v)) => *v as f64,
            Some(mongodb::bson::Bson::Double(v)) => *v,
            _ => anyhow::bail!("serverStatus has no metrics.document.{k}"),
        };
    }
    Ok(sum)
}

/// Stored cases not counted yet: the cases of the counting records still
/// waiting (a record is deleted in the transaction that counts its cases).
async fn uncounted(mongo: &Mongo) -> anyhow::Result<i64> {
    let mut sums = mongo
        .collection(store::mongo::BATCHES)
        .aggregate([doc! {"$group": {"_id": null, "cases": {"$sum": "$cases"}}}])
        .await?;
    let Some(d) = sums.try_next().await? else {
        return Ok(0);
    };
    Ok(match d.get("cases") {
        Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
        Some(mongodb::bson::Bson::Int64(v)) => *v,
        Some(mongodb::bson::Bson::Double(v)) => *v as i64,
        _ => 0,
    })
}

/// Waits until every stored case is counted; how long that took.
async fn wait_counted(r: &Running, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while uncounted(&r.mongo_client).await? != 0 {
        anyhow::ensure!(
            start.elapsed() < limit,
            "the counters did not reach the stored documents within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

/// Samples how many stored cases are not counted yet, every 100 ms, until
/// `stop` is set; the largest gap seen.
fn sample_trail(
    r: &Running,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> impl std::future::Future<Output = i64> + Send + 'static {
    let mongo = r.mongo_client.clone();
    async move {
        let mut worst = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = uncounted(&mongo).await {
                worst = worst.max(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worst
    }
}

/// Waits until the `n` cases of one path accepted since `since_ms` are
/// stored. It counts only those (an `_id` range), so a poll costs the run's
/// cases, not the whole collection; when the last was stored is read from
/// the documents, so the poll's own time is not part of any figure.
async fn wait_stored(
    r: &Running,
    path: events::WritePath,
    since_ms: i64,
    n: u64,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let cases = r.mongo_client.collection(store::mongo::CASES);
    loop {
        let filter = doc! {"_id": {"$gte": id_floor(since_ms)}, "path": path.as_str()};
        if cases.count_documents(filter).await? >= n {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "cases on the {path} path not stored within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Run {
    requests_per_s: f64,
    sustained: f64,
    ingest_p50_us: f64,
    ingest_p99_us: f64,
    a2s_p50: f64,
    a2s_p99: f64,
    cpu_per_1000: f64,
    cpu_split: BTreeMap<String, f64>,
    errors: u64,
    /// MongoDB documents touched per stored case, counting included.
    docs_per_case: f64,
    /// The largest number of stored but uncounted cases during the run, in
    /// seconds of the run's traffic.
    trail_s: f64,
}

async fn one_run(
    ctx: &Ctx,
    r: &Running,
    path: events::WritePath,
    args: &[String],
) -> anyhow::Result<Run> {
    let touched0 = documents_touched(r).await?;
    let cpu0 = r.cpu();
    let t0_ms = chrono::Utc::now().timestamp_millis();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trail = tokio::spawn(sample_trail(r, stop.clone()));
    let report = ctx.loadtest.run(args)?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_stored(r, path, t0_ms, report.total.cases_accepted).await?;
    wait_counted(r, Duration::from_secs(120)).await?;
    let touched = documents_touched(r).await? - touched0;
    let cpu1 = r.cpu();
    let accepted = report.total.cases_accepted.max(1) as f64;
    let split: BTreeMap<String, f64> = cpu1
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - cpu0.get(k).copied().unwrap_or(0.0)) / accepted * 1000.0,
            )
        })
        .collect();
    let times = accept_and_store_times(r, path.as_str(), t0_ms).await?;
    let lat: Vec<f64> = times.iter().map(|(a, s)| (s - a) as f64).collect();
    // From the first case accepted until the last stored, by the cases' own
    // times (one clock: the stack's machine).
    let first = times.iter().map(|t| t.0).min().unwrap_or(t0_ms);
    let last = times.iter().map(|t| t.1).max().unwrap_or(first);
    let elapsed = ((last - first) as f64 / 1000.0).max(0.001);
    let worst_trail = trail.await? as f64;
    Ok(Run {
        docs_per_case: touched / accepted,
        trail_s: worst_trail / (accepted / elapsed),
        requests_per_s: report.total.requests_per_s,
        sustained: accepted / elapsed,
        ingest_p50_us: report.total.latency_us.p50 as f64,
        ingest_p99_us: report.total.latency_us.p99 as f64,
        a2s_p50: percentile(&lat, 0.5),
        a2s_p99: percentile(&lat, 0.99),
        cpu_per_1000: split.values().sum(),
        cpu_split: split,
        errors: report.total.errors,
    })
}

/// Aggregate frozen (SIGSTOP) for 10 s under a steady load, then resumed as
/// the load ends: how long until the counters equal the stored documents.
async fn recovery(ctx: &Ctx, r: &Running, args: Vec<String>) -> anyhow::Result<Duration> {
    let loadtest = crate::loadgen::Loadtest {
        bin: ctx.loadtest.bin.clone(),
        dir: ctx.loadtest.dir.clone(),
    };
    let load = std::thread::spawn(move || loadtest.run(&args));
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.sup.signal("aggregate", libc::SIGSTOP)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    r.sup.signal("aggregate", libc::SIGCONT)?;
    let resumed = Instant::now();
    load.join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    wait_counted(r, Duration::from_secs(120)).await?;
    Ok(resumed.elapsed())
}

fn med(runs: &[Run], f: fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    println!("== write paths end to end");
    let r = start_stack(ctx, "paths").await?;
    let secs = format!("{}s", ctx.secs);
    let mut rows = Vec::new();
    let mut split_rows = Vec::new();
    let mut each_rows = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    let mut cost: BTreeMap<(String, u32), f64> = BTreeMap::new();
    let mut recoveries: Vec<Vec<String>> = Vec::new();
    for (path, function) in [
        (events::WritePath::Grpc, "ingest-grpc"),
        (events::WritePath::Redis, "ingest-redis"),
    ] {
        let target = format!("{}={}", path, r.sup.url(function));
        for batch in [100u32, 1] {
            // One argument list for both models: `model` is --users N or --rate R.
            let load_args = |model: [&str; 2]| {
                let batch = batch.to_string();
                let mut extra = model.to_vec();
                if batch != "1" {
                    extra.extend(["--batch", &batch]);
                }
                crate::loadgen::Loadtest::args(ctx.secs, &target, &extra)
            };
            let args = load_args(["--users", if batch == 1 { "64" } else { "16" }]);
            let mut runs = Vec::new();
            for i in 0..ctx.runs {
                println!("  {path}, batch {batch}: run {}/{}", i + 1, ctx.runs);
                runs.push(one_run(ctx, &r, path, &args).await?);
            }
            // Accept-to-stored at half the pipeline's peak (open model). The peak
            // is the sustained store rate: on the Redis path ingest can accept
            // faster than redis-sub stores (the Stream absorbs the difference).
            let peak_requests = med(&runs, |x| x.sustained) / f64::from(batch);
            let half = (peak_requests / 2.0).round().max(1.0);
            let half_args = load_args(["--rate", &half.to_string()]);
            let mut half_runs = Vec::new();
            for _ in 0..ctx.runs {
                half_runs.push(one_run(ctx, &r, path, &half_args).await?);
            }
            if batch == 100 {
                // The load runs 13 s: 3 s before the freeze, 10 s frozen.
                let freeze_args = {
                    let mut a = half_args.clone();
                    let i = a
                        .iter()
                        .position(|x| x == "--duration")
                        .expect("a duration")
                        + 1;
                    a[i] = "13s".to_owned();
                    a
                };
                let mut secs = Vec::new();
                for i in 0..ctx.runs {
                    println!(
                        "  {path}, batch {batch}: aggregate frozen 10 s, run {}/{}",
                        i + 1,
                        ctx.runs
                    );
                    secs.push(recovery(ctx, &r, freeze_args.clone()).await?.as_secs_f64());
                }
                recoveries.push(vec![
                    format!("{path}, {batch}-case batches at {half} requests/s"),
                    format!("{:.2} s", median(&secs)),
                    secs.iter()
                        .map(|s| format!("{s:.2}"))
                        .collect::<Vec<_>>()
                        .join(" · "),
                ]);
                out.push(json!({"path": path.as_str(), "batch": batch, "recovery_after_10s_freeze_s": secs, "command": Loadtest::command(&freeze_args)}));
            }
            let cpu = med(&runs, |x| x.cpu_per_1000);
            cost.insert((path.to_string(), batch), cpu);
            let split: BTreeMap<String, f64> = runs[0]
                .cpu_split
                .keys()
                .map(|k| {
                    (
                        k.clone(),
                        median(&runs.iter().map(|x| x.cpu_split[k]).collect::<Vec<_>>()),
                    )
                })
                .collect();
            let label = format!(
                "{path}, {}",
                if batch == 1 {
                    "single case".to_owned()
                } else {
                    format!("{batch}-case batch")
                }
            );
            rows.push(vec![
                label.clone(),
                int(med(&runs, |x| x.sustained)),
                format!(
                    "{:.2} / {:.2} ms",
                    med(&runs, |x| x.ingest_p50_us) / 1000.0,
                    med(&runs, |x| x.ingest_p99_us) / 1000.0
                ),
                format!(
                    "{:.0} / {:.0} ms",
                    med(&runs, |x| x.a2s_p50),
                    med(&runs, |x| x.a2s_p99)
                ),
                format!(
                    "{:.0} / {:.0} ms",
                    med(&half_runs, |x| x.a2s_p50),
                    med(&half_runs, |x| x.a2s_p99)
                ),
                format!("{cpu:.3}"),
                format!("{:.2}", med(&runs, |x| x.docs_per_case)),
                format!("{:.2} s", med(&runs, |x| x.trail_s)),
                runs.iter()
                    .chain(half_runs.iter())
                    .map(|x| x.errors)
                    .sum::<u64>()
                    .to_string(),
            ]);
            let each = |list: &[Run], f: fn(&Run) -> f64| {
                list.iter()
                    .map(|x| int(f(x)))
                    .collect::<Vec<_>>()
                    .join(" · ")
            };
            each_rows.push(vec![
                label.clone(),
                each(&runs, |x| x.sustained),
                format!("{} ms", each(&half_runs, |x| x.a2s_p99)),
            ]);
            let mut srow = vec![label.clone()];
            for name in [
                "ingest-grpc",
                "ingest-redis",
                "grpc-writer",
                "redis-sub",
                "redis",
                "mongodb",
                "aggregate",
            ] {
                srow.push(format!("{:.3}", split.get(name).copied().unwrap_or(0.0)));
            }
            split_rows.push(srow);
            out.push(json!({
                "path": path.as_str(), "batch": batch, "command": Loadtest::command(&args), "half_rate_command": Loadtest::command(&half_args),
                "sustained_cases_per_s": med(&runs, |x| x.sustained),
                "ingest_p50_us": med(&runs, |x| x.ingest_p50_us), "ingest_p99_us": med(&runs, |x| x.ingest_p99_us),
                "accept_to_stored_p50_ms": med(&runs, |x| x.a2s_p50), "accept_to_stored_p99_ms": med(&runs, |x| x.a2s_p99),
                "half_rate_requests_per_s": half, "peak_requests_per_s_accepted": med(&runs, |x| x.requests_per_s),
                "half_rate_accept_to_stored_p50_ms": med(&half_runs, |x| x.a2s_p50), "half_rate_accept_to_stored_p99_ms": med(&half_runs, |x| x.a2s_p99),
                "half_rate_accept_to_stored_p99_each_run_ms": half_runs.iter().map(|x| x.a2s_p99).collect::<Vec<_>>(),
                "cpu_s_per_1000_cases": cpu, "cpu_split_per_1000_cases": split,
                "mongodb_documents_per_case": runs.iter().map(|x| x.docs_per_case).collect::<Vec<_>>(),
                "counters_trail_s": runs.iter().map(|x| x.trail_s).collect::<Vec<_>>(),
                "sustained_each_run": runs.iter().map(|x| x.sustained).collect::<Vec<_>>(),
            }));
        }
    }
    let peak: Vec<Vec<String>> = r
        .pids()
        .into_iter()
        .map(|(n, p)| {
            vec![
                n,
                format!("{:.1} MiB", procs::peak_rss_mib(p).unwrap_or(0.0)),
            ]
        })
        .collect();
    let verdict = |batch: u32| {
        let g = cost[&("grpc".to_owned(), batch)];
        let rd = cost[&("redis".to_owned(), batch)];
        let (cheap, dear, c, d) = if g <= rd {
            ("gRPC", "Redis", g, rd)
        } else {
            ("Redis", "gRPC", rd, g)
        };
        format!(
            "with {}: the **{cheap} path is cheaper**: {c:.3} CPU-seconds per 1,000 cases against {d:.3} on the {dear} path ({:.0}% less)",
            if batch == 1 {
                "single cases".to_owned()
            } else {
                format!("{batch}-case batches")
            },
            (1.0 - c / d) * 100.0
        )
    };
    let md = format!(
        "Both paths end to end on one machine (every function, Redis and the MongoDB-compatible server on the same 2 cores, load generator on one thread). Medians of {runs} runs of {secs}. Sustained = accepted cases / time from the first case accepted until the last stored, by the cases' own `reported_at` and `stored_at` (until 233d87c this ended at the first poll of a whole-collection count that saw them all, a poll that took up to ~4 s once the collection was large). Accept-to-stored = `stored_at − reported_at` of every case of the run. CPU = user+system seconds of every process of the stack (not the load generator) per 1,000 accepted cases.\n\n{}\n{}\n\nEach run (the medians above are of these):\n\n{}\nMongoDB docs / case = documents the server inserted, updated, deleted and returned (`serverStatus` `metrics.document`), from the first POST until every case is counted, per accepted case. Counters trail = the most stored-but-uncounted cases seen during the run (sampled every 100 ms), in seconds of the run's traffic.\n\nRecovery: aggregate frozen (SIGSTOP) for 10 s under half the peak rate, resumed as the load ends; time until the counters equal the stored documents (median, then each run):\n\n{}\nWhere the CPU goes (seconds per 1,000 cases):\n\n{}\nPeak RSS over the whole run:\n\n{}\nCommand: `target/release/bench paths` (each row's load command is in `bench/results/paths.json`).\n",
        table(
            &[
                "path, load",
                "sustained cases/s",
                "ingest p50 / p99",
                "accept→stored p50 / p99",
                "same at half the peak rate",
                "CPU s / 1,000 cases",
                "MongoDB docs / case",
                "counters trail",
                "errors"
            ],
            &rows
        ),
        [verdict(100), verdict(1)]
            .map(|v| format!("- {v}"))
            .join("\n"),
        table(
            &[
                "path, load",
                "sustained cases/s",
                "accept→stored p99 at half the peak rate"
            ],
            &each_rows
        ),
        table(&["load", "recovery", "each run"], &recoveries),
        table(
            &[
                "path, load",
                "ingest-grpc",
                "ingest-redis",
                "grpc-writer",
                "redis-sub",
                "redis",
                "mongodb",
                "aggregate"
            ],
            &split_rows
        ),
        table(&["process", "peak RSS"], &peak),
        runs = ctx.runs,
    );
    println!("{md}");
    r.sup.stop().await;
    crate::report::write_json(
        &ctx.results,
        "paths",
        &json!({"machine": ctx.machine, "runs": ctx.runs, "secs": ctx.secs, "results": out}),
    )?;
    crate::report::update_markdown(&ctx.markdown, "paths", &md)
}
