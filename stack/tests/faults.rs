//! Faults under load: for each fault, a fresh pipeline (its own Redis and
//! MongoDB-compatible server, so the test can stop, restart and freeze
//! them), a steady load through both ingest paths, the fault, then recovery
//! and the audit: every case answered 202 stored exactly once, no case
//! answered 503 (or any 4xx) stored, every case answered 504 or not answered
//! at all stored at most once, every counter equal to the stored documents. The table is printed (`-- --nocapture`) and written to
//! `target/faults-report.md`.
//!
//! `FAULT_SOAK_SECS=<n>` runs the load n seconds per fault, repeating the
//! fault every few seconds (a soak); unset, each fault is injected once.
//! `FAULT_ONLY=<text>` runs only the faults whose name contains it
//! (e.g. `aggregate`, `MongoDB`); `FAULT_ECHO_LOGS=1` echoes the functions' logs.
//!
//! The binaries come from `cargo build --workspace --bins` (make test does).

mod common;
/// The load, the faults, the audit and the report (stack/tests/faults/).
mod faults {
    pub mod audit;
    pub mod inject;
    pub mod load;
    pub mod report;
}

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Pipeline;
use events::WritePath;
use faults::audit::{Audit, Stored};
use faults::inject::{self, Fault, Schedule, Stores};
use faults::load::{Answer, LoadShape, Target};
use faults::report::{self, Row};
use serde_json::json;
use stack::{MongoServer, RedisServer};
use tokio_util::sync::CancellationToken;

/// Every fault, one at a time, each on its own fresh pipeline.
const FAULTS: [Fault; 8] = [
    Fault::Kill("ingest-grpc"),
    Fault::Kill("ingest-redis"),
    Fault::Kill("grpc-writer"),
    Fault::Kill("redis-sub"),
    Fault::Kill("aggregate"),
    Fault::RestartRedis(Duration::from_secs(2)),
    // Longer than grpc-writer's WRITE_DEADLINE_MS (4 s): the gRPC path
    // answers 503 while the Redis path keeps accepting into the Stream.
    Fault::RestartMongo(Duration::from_secs(5)),
    Fault::StallMongo(Duration::from_secs(4)),
];

/// A few clients per ingest path, each posting 5 cases every 50 ms: steady
/// traffic that a debug build on two cores keeps up with, so what the test
/// sees is the fault, not overload.
const LOAD: LoadShape = LoadShape {
    clients: 2,
    batch: 5,
    pace: Duration::from_millis(50),
    request_timeout: Duration::from_secs(15),
};

/// Longest a pipeline may take to store everything accepted and agree on
/// every counter after a fault. Generous: it bounds a failing run, it is
/// not a timing assertion (the measured time is reported).
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);

/// A recovery slower than this gets a note of what it waited for (the
/// report only; nothing is asserted on it).
const SLOW_RECOVERY: Duration = Duration::from_secs(5);

async fn start(redis_url: &str, mongodb_uri: &str, extra_env: &[(&str, &str)]) -> Pipeline {
    common::start(common::Start {
        bin_dir: stack::testing::built_binaries().unwrap(),
        redis_url,
        mongodb_uri,
        name: "faults",
        extra_env,
        echo_logs: std::env::var("FAULT_ECHO_LOGS").is_ok_and(|v| v == "1"),
    })
    .await
}

/// Stores of one fault run, in a temporary directory.
fn own_stores(dir: &std::path::Path) -> Stores {
    // Redis with its append-only file: the Stream holds accepted cases until
    // they are stored, so a Redis that forgets it on restart loses them.
    // Production Redis for the Stream must be persistent too.
    Stores {
        redis: RedisServer::start_with(&dir.join("redis"), None, true).unwrap(),
        mongo: MongoServer::start(&dir.join("mongo")).unwrap(),
    }
}

impl Pipeline {
    fn targets(&self) -> Vec<Target> {
        ["ingest-grpc", "ingest-redis"]
            .map(|f| Target {
                function: f.to_owned(),
                url: self.sup.url(f),
            })
            .to_vec()
    }

    /// Every stored case (id and name), read by `_id` cursor.
    async fn stored(&self) -> Result<Vec<Stored>, String> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .cases
                .page(1000, after.as_deref(), None, None)
                .await
                .map_err(|e| e.to_string())?;
            all.extend(page.cases.iter().map(|c| Stored {
                id: c.id.clone(),
                name: c.case.name.to_string(),
            }));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let count = self.cases.count(None).await.map_err(|e| e.to_string())?;
        if count != all.len() as u64 {
            return Err(format!(
                "{count} documents stored but {} readable as cases",
                all.len()
            ));
        }
        Ok(all)
    }

    /// Whether every statistic equals what the stored documents say; if
    /// not, the first one that differs.
    async fn counters_agree(&self) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let stored = self.cases.count(None).await.map_err(|x| e(&x))?;
        let same = |what: &str, n: u64, want: u64| {
            if n == want {
                Ok(())
            } else {
                Err(format!("{what} is {n}, {want} stored"))
            }
        };
        let totals = self.agg.totals().await.map_err(|x| e(&x))?;
        same("MongoDB total", totals.total, stored)?;
        for p in WritePath::ALL {
            let n = self.cases.count(Some(p)).await.map_err(|x| e(&x))?;
            same(
                &format!("MongoDB total on path {p}"),
                totals.by_path.get(p.as_str()).copied().unwrap_or(0),
                n,
            )?;
        }
        let areas: u64 = self
            .agg
            .top_areas(1000)
            .await
            .map_err(|x| e(&x))?
            .iter()
            .map(|a| a.cases)
            .sum();
        same("sum over areas", areas, stored)?;
        let states: u64 = self
            .agg
            .states()
            .await
            .map_err(|x| e(&x))?
            .iter()
            .map(|s| s.cases)
            .sum();
        same("sum over states", states, stored)?;
        let redis = self.agg.redis().totals().await.map_err(|x| e(&x))?;
        same(
            "Redis total",
            redis.get("cases").copied().unwrap_or(0).max(0) as u64,
            stored,
        )?;
        let ages: u64 = self
            .agg
            .redis()
            .ages()
            .await
            .map_err(|x| e(&x))?
            .iter()
            .map(|b| b.cases)
            .sum();
        same("sum over Redis age buckets", ages, stored)
    }

    /// Polls until every accepted case is stored, every counter agrees and
    /// the Stream is drained (redis-sub deletes an entry once it is stored,
    /// so an entry left over is work the pipeline has not finished);
    /// returns the stored cases, or why not within [`RECOVERY_LIMIT`].
    /// `last_wait` gets the last unfinished state seen: what recovery waited for.
    async fn wait_recovered(
        &self,
        accepted: &HashSet<&str>,
        last_wait: &mut Option<String>,
    ) -> Result<Vec<Stored>, String> {
        let start = Instant::now();
        loop {
            let state = match self.counters_agree().await {
                Ok(()) if self.stream_backlog().await != (0, 0) => {
                    let (len, pending) = self.stream_backlog().await;
                    format!(
                        "the Stream still holds {len} entries ({pending} delivered, not acknowledged)"
                    )
                }
                Ok(()) => match self.stored().await {
                    Ok(stored) => {
                        let have: HashSet<&str> = stored.iter().map(|s| s.id.as_str()).collect();
                        let missing = accepted.iter().filter(|id| !have.contains(*id)).count();
                        if missing == 0 {
                            return Ok(stored);
                        }
                        format!("{missing} accepted cases not stored yet")
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            *last_wait = Some(state.clone());
            if start.elapsed() > RECOVERY_LIMIT {
                return Err(format!("not recovered within {RECOVERY_LIMIT:?}: {state}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Entries still in the Stream, and those of them delivered but not acknowledged.
    async fn stream_backlog(&self) -> (u64, u64) {
        let mut c = self.redis.clone();
        let len: u64 = redis::cmd("XLEN")
            .arg(self.keys.stream())
            .query_async(&mut c)
            .await
            .unwrap_or(0);
        let pending: Option<(u64, redis::Value, redis::Value, redis::Value)> =
            redis::cmd("XPENDING")
                .arg(self.keys.stream())
                .arg(self.keys.consumer_group())
                .query_async(&mut c)
                .await
                .ok();
        (len, pending.map_or(0, |p| p.0))
    }

    async fn dead_letters(&self) -> u64 {
        redis::cmd("XLEN")
            .arg(self.keys.dead_letters())
            .query_async(&mut self.redis.clone())
            .await
            .unwrap_or(0)
    }
}

fn schedule() -> Schedule {
    Schedule {
        soak: inject::soak_from_env().unwrap(),
        period: Duration::from_secs(15),
        tail: Duration::from_millis(500),
        accepted_between: 5,
        comeback_limit: Duration::from_secs(30),
    }
}

/// One fault on its own fresh pipeline, under load; never panics on a
/// broken guarantee (the row says what broke, so the table shows every fault).
async fn run(fault: Fault, schedule: &Schedule) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = own_stores(dir.path());
    let p = start(&stores.redis.url(), &stores.mongo.uri(), &[]).await;
    let mut notes = Vec::new();
    let mut problems = Vec::new();

    // Memory is sampled through the stall and the catch-up after it: an
    // unbounded queue anywhere would show as a growing process.
    let sampling = CancellationToken::new();
    let rss = async {
        match fault {
            Fault::StallMongo(_) => {
                inject::peak_rss(&p.sup, Duration::from_millis(200), &sampling).await
            }
            _ => Default::default(),
        }
    };
    let under_fault = async {
        let load = LOAD.start(p.targets());
        let (requests, injections) =
            inject::inject_under_load(load, fault, schedule, &p.sup, &mut stores)
                .await
                .unwrap();
        let accepted: HashSet<&str> = requests
            .iter()
            .filter_map(|r| match &r.answer {
                Answer::Accepted(ids) => Some(ids.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect();
        let mut last_wait = None;
        let recovered = p.wait_recovered(&accepted, &mut last_wait).await;
        let recovery = injections.last_end.elapsed();
        sampling.cancel();
        (
            requests,
            injections,
            recovered.map(|stored| (recovery, stored)),
            last_wait,
        )
    };
    let ((requests, injections, recovered, last_wait), peak_rss) = tokio::join!(under_fault, rss);
    problems.extend(injections.problems);
    notes.push(format!("injected {}×", injections.count));
    let (recovery, stored) = match recovered {
        Ok((recovery, stored)) => {
            // What a slow recovery waited for is the lead to its cause.
            if let Some(state) = last_wait.filter(|_| recovery > SLOW_RECOVERY) {
                notes.push(format!("recovery waited last for: {state}"));
            }
            (Some(recovery), stored)
        }
        Err(e) => {
            problems.push(e);
            (None, p.stored().await.unwrap_or_default())
        }
    };
    let audit = Audit::new(&requests, &stored);
    notes.extend(report::unanswered(&requests));

    // A dependency outage must not crash a function (README: retries and
    // back-pressure, not a crash loop); a killed one must have been restarted.
    for name in p.sup.names() {
        let restarts = p.sup.restarts(&name);
        if fault.killed() == Some(name.as_str()) {
            notes.push(format!("{name} restarted {restarts}×"));
            if restarts < injections.count {
                problems.push(format!(
                    "{name} was killed {}× but restarted {restarts}×",
                    injections.count
                ));
            }
        } else if restarts > 0 {
            problems.push(format!(
                "{name} exited {restarts}× although it was not killed"
            ));
        }
    }
    let dead = p.dead_letters().await;
    if dead > 0 {
        problems.push(format!("{dead} stream entries dead-lettered"));
    }
    if !peak_rss.is_empty() {
        notes.push(format!("peak RSS: {}", report::format_rss(&peak_rss)));
    }
    p.sup.stop().await;
    Row {
        fault: fault.to_string(),
        audit,
        back_after: injections.back_after,
        recovery,
        notes,
        problems,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_under_load_loses_nothing_and_stores_nothing_twice() {
    let schedule = schedule();
    let mut rows = Vec::new();
    let only = std::env::var("FAULT_ONLY").unwrap_or_default();
    for fault in FAULTS.into_iter().filter(|f| f.to_string().contains(&only)) {
        let started = Instant::now();
        let row = run(fault, &schedule).await;
        eprintln!(
            "[faults] {fault}: {} in {:.1} s",
            if row.holds() { "ok" } else { "BROKEN" },
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    let title = format!(
        "Faults under load ({} clients per ingest path, {} cases per request every {} ms; load {} per fault)",
        LOAD.clients,
        LOAD.batch,
        LOAD.pace.as_millis(),
        if schedule.soak.is_zero() {
            "until the path serves again".to_owned()
        } else {
            format!("{} s", schedule.soak.as_secs())
        }
    );
    let report = report::report(&title, &rows);
    println!("{report}");
    let path = stack::testing::built_binaries()
        .unwrap()
        .parent()
        .unwrap()
        .join("faults-report.md");
    std::fs::write(&path, &report).unwrap();
    let broken: Vec<&str> = rows
        .iter()
        .filter(|r| !r.holds())
        .map(|r| r.fault.as_str())
        .collect();
    assert!(
        broken.is_empty(),
        "guarantees broken under: {}\n\n{report}",
        broken.join(", ")
    );
}

/// ingest's Redis route stops at `MAX_STREAM_BACKLOG` entries: with no
/// consumer, the request that would go past it is answered 503 with
/// Retry-After, and the Stream never holds more than the bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_stream_answers_503_and_never_grows_past_its_bound() {
    const BOUND: u64 = 10;
    let servers = stack::testing::servers();
    let p = start(
        &servers.redis_url,
        &servers.mongodb_uri,
        &[
            ("STREAM_CONSUMER", "false"),
            ("MAX_STREAM_BACKLOG", &BOUND.to_string()),
            ("MAX_BATCH_CASES", "5"),
        ],
    )
    .await;
    let http = stack::testing::http_client();
    let url = format!("{}/cases", p.sup.url("ingest-redis"));
    let case = |i: u64| json!({"name": format!("B{i}"), "location": "Petén", "age": 40, "infectedtype": "communitary", "state": "active"});
    let stream_len = || async { p.stream_backlog().await.0 };

    for i in 0..BOUND {
        let resp = http.post(&url).json(&case(i)).send().await.unwrap();
        assert_eq!(
            resp.status(),
            202,
            "request {} of {BOUND}: {}",
            i + 1,
            resp.text().await.unwrap()
        );
    }
    let resp = http.post(&url).json(&case(BOUND)).send().await.unwrap();
    assert_eq!(
        resp.status(),
        503,
        "request {} of a bound of {BOUND}",
        BOUND + 1
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    let error = resp.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("MAX_STREAM_BACKLOG"), "{error}");
    assert_eq!(stream_len().await, BOUND);

    // Emptied (as a consumer would), then many concurrent requests: exactly
    // the bound gets in; the check and the append are one atomic step.
    let _: u64 = redis::cmd("XTRIM")
        .arg(p.keys.stream())
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..3 * BOUND {
        let (http, url, body) = (http.clone(), url.clone(), case(100 + i));
        posts.spawn(async move {
            http.post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = posts.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count() as u64,
        BOUND,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [202, 503].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(stream_len().await, BOUND);

    // A batch that does not fit is refused whole; one that fits gets in whole.
    let _: u64 = redis::cmd("XTRIM")
        .arg(p.keys.stream())
        .arg("MAXLEN")
        .arg(BOUND - 3)
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();
    let batch = |n: u64| serde_json::Value::Array((0..n).map(|i| case(200 + i)).collect());
    assert_eq!(
        http.post(&url)
            .json(&batch(5))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        stream_len().await,
        BOUND - 3,
        "nothing of a refused batch is appended"
    );
    assert_eq!(
        http.post(&url)
            .json(&batch(3))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(stream_len().await, BOUND);
    p.sup.stop().await;
}

/// The same bound in bytes: with entries to spare but `MAX_STREAM_BACKLOG_BYTES`
/// reached (the Stream's `MEMORY USAGE`), ingest answers 503 naming the
/// variable, and the Stream stops growing.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_full_in_bytes_answers_503_and_stops_growing() {
    const BYTES: u64 = 32 * 1024;
    let servers = stack::testing::servers();
    let p = start(
        &servers.redis_url,
        &servers.mongodb_uri,
        &[
            ("STREAM_CONSUMER", "false"),
            ("MAX_STREAM_BACKLOG", "100000"),
            ("MAX_STREAM_BACKLOG_BYTES", &BYTES.to_string()),
        ],
    )
    .await;
    let http = stack::testing::http_client();
    let url = format!("{}/cases", p.sup.url("ingest-redis"));
    let long = "x".repeat(190);
    let mut refused = None;
    for i in 0..2_000 {
        let body = json!({"name": format!("{long}{i:04}"), "location": long, "age": 40, "infectedtype": "communitary", "state": "active"});
        let resp = http.post(&url).json(&body).send().await.unwrap();
        match resp.status().as_u16() {
            202 => {}
            503 => {
                refused = Some(resp.json::<serde_json::Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refused = refused.expect("the byte bound was reached within 2,000 cases");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("MAX_STREAM_BACKLOG_BYTES"), "{error}");
    let (len, _) = p.stream_backlog().await;
    assert!(len < 2_000, "refused on bytes, not entries: {len} entries");
    let usage: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(p.keys.stream())
        .query_async(&mut p.redis.clone())
        .await
        .unwrap();
    // The last entry in may take a new stream node (up to 4 KiB).
    assert!(
        usage <= BYTES + 8192,
        "{usage} bytes past a bound of {BYTES}"
    );
    // Still full: the next case is refused too, and nothing was added.
    let again = http
        .post(&url)
        .json(&json!({"name": "Again", "location": "Petén", "age": 40, "infectedtype": "communitary", "state": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 503);
    assert_eq!(p.stream_backlog().await.0, len);
}
