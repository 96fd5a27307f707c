//! Fault tests and soaks of a running stack: a steady, bounded load through
//! the ingest functions that records what every request was answered, the
//! faults themselves (`kill -9` of a function; a store stopped and restarted,
//! or frozen), memory sampling of the function processes, the audit of what
//! ended up stored against what was answered, and the report table.
//!
//! The audit checks the README's guarantees from the client's side: every
//! case answered 202 is stored exactly once; a case answered 5xx (or never
//! answered) is stored at most once. Every case the load sends has a unique
//! name, so a case stored twice under two ids is caught as well as one
//! stored twice under the same id.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{MongoServer, RedisServer, Supervisor};

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

/// `FAULT_SOAK_SECS`: how long the load runs per fault; the fault repeats
/// while it runs. Unset or 0: the fault is injected once (the short CI run).
pub fn soak_from_env() -> anyhow::Result<Duration> {
    match std::env::var("FAULT_SOAK_SECS") {
        Ok(v) if !v.trim().is_empty() => {
            let secs: u64 = v
                .trim()
                .parse()
                .with_context(|| format!("FAULT_SOAK_SECS={v:?} is not a number of seconds"))?;
            Ok(Duration::from_secs(secs))
        }
        _ => Ok(Duration::ZERO),
    }
}

// ---------------------------------------------------------------------------
// Load

/// An ingest function the load posts to (`POST <url>/cases`).
#[derive(Debug, Clone)]
pub struct Target {
    pub function: String,
    pub url: String,
}

/// The shape of a steady load: per target, `clients` concurrent clients,
/// each posting a batch of `batch` new cases every `pace`.
#[derive(Debug, Clone)]
pub struct LoadShape {
    pub clients: usize,
    pub batch: usize,
    pub pace: Duration,
    /// A request not answered within this counts as failed (its cases may
    /// still be stored, as for a 5xx).
    pub request_timeout: Duration,
}

/// What one request was answered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 202 with the ids ingest gave the cases, in order.
    Accepted(Vec<String>),
    /// 5xx: 503 means nothing was stored; 504 (and any other 5xx) that the
    /// outcome is unknown. The client may retry after `retry_after`.
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Any other status: the load only sends valid cases, so this is a bug.
    Refused { status: u16, body: String },
    /// No answer (connection refused or reset, timeout): outcome unknown.
    NoAnswer(String),
}

/// One request of the load and its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub function: String,
    /// The cases' names, unique across the run, in body order.
    pub names: Vec<String>,
    pub answer: Answer,
}

struct LoadState {
    targets: Vec<Target>,
    shape: LoadShape,
    http: reqwest::Client,
    /// Requests answered 202 so far, per target: lets a driver wait for
    /// "the load is flowing again" instead of sleeping.
    accepted: Vec<AtomicUsize>,
    stop: CancellationToken,
}

/// A running load; [`RunningLoad::stop`] ends it and returns every request.
pub struct RunningLoad {
    state: Arc<LoadState>,
    clients: JoinSet<Vec<Sent>>,
}

const AREAS: [&str; 5] = ["Guatemala", "Petén", "Izabal", "Zacapa", "Sololá"];
const STATES: [&str; 3] = ["active", "recovered", "deceased"];

/// Longest wait a 503's `Retry-After` may impose on a load client, so the
/// load keeps probing during an outage.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);

impl LoadShape {
    /// Starts the clients; they run until [`RunningLoad::stop`].
    pub fn start(&self, targets: Vec<Target>) -> RunningLoad {
        let state = Arc::new(LoadState {
            accepted: targets.iter().map(|_| AtomicUsize::new(0)).collect(),
            targets,
            shape: self.clone(),
            http: reqwest::Client::builder()
                .timeout(self.request_timeout)
                .build()
                .expect("an HTTP client"),
            stop: CancellationToken::new(),
        });
        let mut clients = JoinSet::new();
        for t in 0..state.targets.len() {
            for c in 0..self.clients {
                clients.spawn(client(state.clone(), t, c));
            }
        }
        RunningLoad { state, clients }
    }
}

impl RunningLoad {
    /// Requests answered 202 so far by each target, in target order.
    pub fn accepted(&self) -> Vec<usize> {
        self.state
            .accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    pub fn targets(&self) -> &[Target] {
        &self.state.targets
    }

    /// Waits until every target has answered `n` more requests with 202
    /// than `since` (from [`RunningLoad::accepted`]); on `limit`, names the
    /// targets that did not.
    pub async fn wait_accepting(
        &self,
        since: &[usize],
        n: usize,
        limit: Duration,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let behind: Vec<&str> = self
                .accepted()
                .iter()
                .zip(since)
                .zip(&self.state.targets)
                .filter(|((now, before), _)| **now < **before + n)
                .map(|(_, t)| t.function.as_str())
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "{} accepted fewer than {n} requests within {limit:?}",
                    behind.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every client (each finishes the request it is in) and returns all requests.
    pub async fn stop(mut self) -> Vec<Sent> {
        self.state.stop.cancel();
        let mut all = Vec::new();
        while let Some(log) = self.clients.join_next().await {
            all.extend(log.expect("a load client does not panic"));
        }
        all
    }
}

async fn client(s: Arc<LoadState>, t: usize, c: usize) -> Vec<Sent> {
    let target = &s.targets[t];
    let url = format!("{}/cases", target.url);
    let mut log = Vec::new();
    let mut tick = tokio::time::interval(s.shape.pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = s.stop.cancelled() => break,
        }
        let names: Vec<String> = (0..s.shape.batch)
            .map(|k| format!("{} c{c} r{seq} #{k}", target.function))
            .collect();
        let body = Value::Array(
            names
                .iter()
                .enumerate()
                .map(|(k, n)| case(n, seq * s.shape.batch + k))
                .collect(),
        );
        let answer = post(&s.http, &url, &body).await;
        // Behave like a polite client: honour Retry-After, and do not spin
        // on a port nobody listens on while a function restarts.
        let pause = match &answer {
            Answer::Accepted(_) => {
                s.accepted[t].fetch_add(1, Ordering::Relaxed);
                Duration::ZERO
            }
            Answer::Unavailable { retry_after, .. } => {
                retry_after.unwrap_or(MAX_RETRY_AFTER).min(MAX_RETRY_AFTER)
            }
            Answer::Refused { .. } | Answer::NoAnswer(_) => s.shape.pace * 2,
        };
        log.push(Sent {
            function: target.function.clone(),
            names,
            answer,
        });
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = s.stop.cancelled() => break,
            }
        }
    }
    log
}

/// A valid case; `i` spreads cases over areas, states and age buckets.
fn case(name: &str, i: usize) -> Value {
    json!({
        "name": name,
        "location": AREAS[i % AREAS.len()],
        "age": (i * 7) % 100,
        "infectedtype": "communitary",
        "state": STATES[i % STATES.len()],
    })
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Answer {
    let resp = match http.post(url).json(body).send().await {
        Ok(r) => r,
        Err(e) => return Answer::NoAnswer(e.to_string()),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    match status {
        202 => match resp.json::<Value>().await {
            Ok(v) => Answer::Accepted(
                v["ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            // Accepted, but the answer was cut: the client cannot know the ids.
            Err(e) => Answer::NoAnswer(format!("202 without a readable body: {e}")),
        },
        500..=599 => Answer::Unavailable {
            status,
            retry_after,
        },
        _ => Answer::Refused {
            status,
            body: resp.text().await.unwrap_or_default(),
        },
    }
}

// ---------------------------------------------------------------------------
// Faults

/// One fault, injected into a running stack.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `kill -9` of a function; the supervisor restarts it, as Kubernetes would.
    Kill(&'static str),
    /// Redis stopped, down for this long, then started again (same port and data).
    RestartRedis(Duration),
    /// The MongoDB-compatible server stopped, down for this long, then started again.
    RestartMongo(Duration),
    /// The MongoDB-compatible server frozen (SIGSTOP) for this long, then
    /// resumed: connections stay open and every operation stalls, as on an
    /// overloaded or paused database.
    StallMongo(Duration),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(name) => write!(f, "kill -9 {name}"),
            Fault::RestartRedis(d) => write!(f, "Redis down {:.0} s, restarted", d.as_secs_f64()),
            Fault::RestartMongo(d) => write!(f, "MongoDB down {:.0} s, restarted", d.as_secs_f64()),
            Fault::StallMongo(d) => write!(f, "MongoDB stalled {:.0} s (SIGSTOP)", d.as_secs_f64()),
        }
    }
}

/// The stores of a stack under test, owned so faults can stop them.
pub struct Stores {
    pub redis: RedisServer,
    pub mongo: MongoServer,
}

impl Fault {
    /// Injects the fault and returns once it is over: the signal is sent, or
    /// the store is back (listening again, or resumed).
    ///
    /// Stopping and starting a store blocks; call this from a multi-thread runtime.
    pub async fn inject(&self, sup: &Supervisor, stores: &mut Stores) -> anyhow::Result<()> {
        match *self {
            Fault::Kill(name) => {
                // A previous kill may still be restarting: wait for the process to exist.
                let start = Instant::now();
                while sup.pid(name).is_none() {
                    if start.elapsed() > Duration::from_secs(30) {
                        bail!("{name} has not been running for 30 s");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sup.signal(name, libc::SIGKILL)
            }
            Fault::RestartRedis(down) => {
                tokio::task::block_in_place(|| stores.redis.stop());
                tokio::time::sleep(down).await;
                tokio::task::block_in_place(|| stores.redis.restart()).context("restarting Redis")
            }
            Fault::RestartMongo(down) => {
                tokio::task::block_in_place(|| stores.mongo.stop());
                tokio::time::sleep(down).await;
                tokio::task::block_in_place(|| stores.mongo.restart())
                    .context("restarting the MongoDB-compatible server")
            }
            Fault::StallMongo(length) => {
                let pid = stores
                    .mongo
                    .pid()
                    .context("the MongoDB-compatible server is not running")?;
                signal(pid, libc::SIGSTOP)?;
                tokio::time::sleep(length).await;
                signal(pid, libc::SIGCONT)
            }
        }
    }

    /// The function this fault kills, if any.
    pub fn killed(&self) -> Option<&'static str> {
        match self {
            Fault::Kill(name) => Some(name),
            _ => None,
        }
    }
}

fn signal(pid: u32, sig: i32) -> anyhow::Result<()> {
    crate::process::send_signal(pid, sig)
        .with_context(|| format!("cannot send signal {sig} to {pid}"))?;
    Ok(())
}

/// When and how often a fault is injected under load.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// A soak: the fault is injected again, `period` after the last one,
    /// for as long as the load has run less than this (zero: once).
    pub soak: Duration,
    /// Steady load between the end of one injection and the next.
    pub period: Duration,
    /// The load keeps running at least this long after the last injection,
    /// so restarted functions and resumed stores get traffic.
    pub tail: Duration,
    /// Requests each target must answer 202 before the first injection and
    /// again after each (proof the load flows and the path came back).
    pub accepted_between: usize,
    /// How long a path may take to accept again after an injection.
    pub comeback_limit: Duration,
}

/// What happened while a fault was injected under load.
#[derive(Debug)]
pub struct Injections {
    pub count: u32,
    /// End of the last injection: recovery time is measured from here.
    pub last_end: Instant,
    /// Longest time, over the injections, from the end of an injection until
    /// every path answered 202 again; `None` if one never did.
    pub back_after: Option<Duration>,
    /// Paths that did not accept again after an injection.
    pub problems: Vec<String>,
}

/// Runs `fault` against a stack under `load` on `schedule`, then stops the
/// load and returns every request with what happened.
pub async fn inject_under_load(
    load: RunningLoad,
    fault: Fault,
    schedule: &Schedule,
    sup: &Supervisor,
    stores: &mut Stores,
) -> anyhow::Result<(Vec<Sent>, Injections)> {
    let started = Instant::now();
    let mut problems = Vec::new();
    if let Err(e) = load
        .wait_accepting(
            &vec![0; load.targets().len()],
            schedule.accepted_between,
            schedule.comeback_limit,
        )
        .await
    {
        let requests = load.stop().await;
        bail!(
            "the load did not flow before the fault: {e} ({} requests sent)",
            requests.len()
        );
    }
    let injected = async {
        let mut count = 0;
        let mut back_after = Some(Duration::ZERO);
        let result = loop {
            if let Err(e) = fault.inject(sup, stores).await {
                break Err(e);
            }
            count += 1;
            let end = Instant::now();
            let since = load.accepted();
            let comeback = async {
                load.wait_accepting(&since, 1, schedule.comeback_limit)
                    .await?;
                let back = end.elapsed();
                load.wait_accepting(&since, schedule.accepted_between, schedule.comeback_limit)
                    .await?;
                Ok::<_, String>(back)
            };
            let (comeback, ()) = tokio::join!(comeback, tokio::time::sleep(schedule.tail));
            match comeback {
                Ok(d) => back_after = back_after.map(|b| b.max(d)),
                Err(e) => {
                    back_after = None;
                    problems.push(format!("after injection {count}: {e}"));
                }
            }
            if started.elapsed() + schedule.period >= schedule.soak {
                break Ok(end);
            }
            tokio::time::sleep(schedule.period).await;
        };
        result.map(|end| (count, end, back_after))
    }
    .await;
    let requests = load.stop().await;
    let (count, last_end, back_after) = injected?;
    Ok((
        requests,
        Injections {
            count,
            last_end,
            back_after,
            problems,
        },
    ))
}

// ---------------------------------------------------------------------------
// Memory

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples every function's resident memory each `every` until `until` is
/// cancelled; returns the peak per function in KiB. A function that is not
/// running at a sample (restarting) is skipped for that sample.
pub async fn peak_rss(
    sup: &Supervisor,
    every: Duration,
    until: &CancellationToken,
) -> BTreeMap<String, u64> {
    let mut peak: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = until.cancelled() => return peak,
        }
        for name in sup.names() {
            if let Some(kib) = sup.pid(&name).and_then(rss_kib) {
                let p = peak.entry(name).or_default();
                *p = (*p).max(kib);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Audit

/// A stored case as the audit sees it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub name: String,
}

/// What was sent, answered and stored, and every broken guarantee.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Cases sent.
    pub sent: usize,
    /// Cases answered 202.
    pub accepted: usize,
    /// Cases answered 5xx or not answered at all: each may be stored at most once.
    pub failed: usize,
    /// Of those, cases answered 503: none of them may be stored.
    pub refused: usize,
    /// Documents stored.
    pub stored: usize,
    /// Stored documents beyond the first of the same case (by id or by name).
    pub duplicates: usize,
    /// Cases answered 202 and not stored.
    pub lost: usize,
    /// Cases stored although they were answered 504 (outcome unknown), another
    /// 5xx, or not answered.
    pub stored_failed: usize,
    /// Cases stored although they were answered 503: a broken promise.
    pub stored_refused: usize,
    /// Every broken guarantee, in words.
    pub problems: Vec<String>,
}

/// At most this many ids are named in one problem.
const SHOW: usize = 5;

fn some<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.into_iter().take(SHOW).map(String::as_str).collect();
    v.join(", ")
}

impl Audit {
    /// Compares what the clients were answered with what is stored.
    pub fn new(sent: &[Sent], stored: &[Stored]) -> Audit {
        let mut a = Audit {
            stored: stored.len(),
            ..Audit::default()
        };
        // name → the id it was accepted under (None: answered 5xx or not at all).
        let mut expected: HashMap<&str, Option<&str>> = HashMap::new();
        let mut refused = Vec::new();
        let mut answered_503: std::collections::HashSet<&str> = Default::default();
        for s in sent {
            a.sent += s.names.len();
            match &s.answer {
                Answer::Accepted(ids) if ids.len() == s.names.len() => {
                    a.accepted += ids.len();
                    expected.extend(
                        s.names
                            .iter()
                            .map(String::as_str)
                            .zip(ids.iter().map(|i| Some(i.as_str()))),
                    );
                }
                Answer::Accepted(ids) => {
                    a.problems.push(format!(
                        "{}: 202 named {} ids for {} cases",
                        s.function,
                        ids.len(),
                        s.names.len()
                    ));
                    a.failed += s.names.len();
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Unavailable { status: 503, .. } => {
                    a.failed += s.names.len();
                    a.refused += s.names.len();
                    answered_503.extend(s.names.iter().map(String::as_str));
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Unavailable { .. } | Answer::NoAnswer(_) => {
                    a.failed += s.names.len();
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
                Answer::Refused { status, body } => {
                    refused.push(format!("{} {status} {body}", s.function));
                    expected.extend(s.names.iter().map(|n| (n.as_str(), None)));
                }
            }
        }
        if !refused.is_empty() {
            a.problems.push(format!(
                "{} requests of valid cases refused, e.g. {}",
                refused.len(),
                some(&refused)
            ));
        }

        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut by_name: HashMap<&str, Vec<&str>> = HashMap::new();
        for s in stored {
            *by_id.entry(&s.id).or_default() += 1;
            by_name.entry(&s.name).or_default().push(&s.id);
        }
        if by_id.len() != stored.len() {
            a.problems.push(format!(
                "{} ids are stored more than once",
                stored.len() - by_id.len()
            ));
        }
        a.duplicates = stored.len() - by_name.len();
        let twice: Vec<String> = by_name
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(n, ids)| format!("{n:?} as {}", ids.join(" and ")))
            .collect();
        if !twice.is_empty() {
            a.problems.push(format!(
                "{} cases stored more than once: {}",
                twice.len(),
                some(&twice)
            ));
        }

        let mut lost = Vec::new();
        let mut misfiled = Vec::new();
        for (name, id) in &expected {
            match (id, by_name.get(name)) {
                (Some(id), None) => lost.push(id.to_string()),
                (Some(id), Some(ids)) if !ids.contains(id) => misfiled.push(format!(
                    "{name:?} accepted as {id}, stored as {}",
                    ids.join(", ")
                )),
                (None, Some(_)) if answered_503.contains(name) => a.stored_refused += 1,
                (None, Some(_)) => a.stored_failed += 1,
                _ => {}
            }
        }
        a.lost = lost.len();
        if a.stored_refused > 0 {
            a.problems.push(format!(
                "{} cases answered 503 were stored: a 503 must mean nothing was stored",
                a.stored_refused
            ));
        }
        if !lost.is_empty() {
            lost.sort();
            a.problems.push(format!(
                "{} accepted cases not stored, e.g. {}",
                lost.len(),
                some(&lost)
            ));
        }
        if !misfiled.is_empty() {
            a.problems.push(format!(
                "{} accepted cases stored under another id: {}",
                misfiled.len(),
                some(&misfiled)
            ));
        }
        let strangers: Vec<String> = by_name
            .keys()
            .filter(|n| !expected.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        if !strangers.is_empty() {
            a.problems.push(format!(
                "{} stored cases were never sent: {}",
                strangers.len(),
                some(&strangers)
            ));
        }
        // The client-side form of "a 5xx'd case is stored at most once": it
        // cannot know those ids, only how many cases it was not promised.
        let distinct = by_name.len();
        if distinct > a.accepted + a.failed {
            a.problems.push(format!(
                "{distinct} distinct cases stored, more than the {} accepted plus the {} answered 5xx or not answered",
                a.accepted, a.failed
            ));
        }
        a
    }

    pub fn holds(&self) -> bool {
        self.problems.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Report

/// One fault's line in the report.
#[derive(Debug)]
pub struct Row {
    pub fault: String,
    pub audit: Audit,
    /// From the end of the (last) injection until both paths answered 202 again.
    pub back_after: Option<Duration>,
    /// From the end of the (last) injection until everything accepted was
    /// stored and every counter agreed with the stored documents; `None`
    /// if that never happened.
    pub recovery: Option<Duration>,
    /// Facts worth reading beside the numbers (restarts, memory, backlog).
    pub notes: Vec<String>,
    /// Broken guarantees found outside the audit (e.g. counters never agreed).
    pub problems: Vec<String>,
}

impl Row {
    pub fn holds(&self) -> bool {
        self.audit.holds()
            && self.problems.is_empty()
            && self.recovery.is_some()
            && self.back_after.is_some()
    }
}

/// Peak memory per function, for a note: `aggregate 21.3 MiB, ...`.
pub fn format_rss(peaks: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = peaks
        .iter()
        .map(|(n, kib)| format!("{n} {:.1} MiB", *kib as f64 / 1024.0))
        .collect();
    parts.join(", ")
}

/// The report as Markdown: a table, then each fault's notes and problems.
pub fn report(title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| fault | cases sent | accepted (202) | refused (503) | stored though refused | outcome unknown (504, no answer) | stored of those | stored | duplicates | lost | serving again after | recovery | ok |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"
    );
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".to_owned())
    };
    for r in rows {
        let a = &r.audit;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.fault,
            a.sent,
            a.accepted,
            a.refused,
            a.stored_refused,
            a.failed - a.refused,
            a.stored_failed,
            a.stored,
            a.duplicates,
            a.lost,
            secs(r.back_after),
            secs(r.recovery),
            if r.holds() { "yes" } else { "**NO**" }
        );
    }
    let _ = writeln!(out);
    for r in rows {
        let problems: Vec<&String> = r.audit.problems.iter().chain(&r.problems).collect();
        if r.notes.is_empty() && problems.is_empty() {
            continue;
        }
        let _ = writeln!(out, "- **{}**: {}", r.fault, r.notes.join("; "));
        for p in problems {
            let _ = writeln!(out, "  - PROBLEM: {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(names: &[&str], answer: Answer) -> Sent {
        Sent {
            function: "ingest".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            answer,
        }
    }

    fn stored(pairs: &[(&str, &str)]) -> Vec<Stored> {
        pairs
            .iter()
            .map(|(id, name)| Stored {
                id: id.to_string(),
                name: name.to_string(),
            })
            .collect()
    }

    fn accepted(ids: &[&str]) -> Answer {
        Answer::Accepted(ids.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn a_504_case_may_be_stored_once_and_a_stored_503_case_is_a_problem() {
        let unavailable = |status| Answer::Unavailable {
            status,
            retry_after: None,
        };
        let log = [
            sent(&["a", "b"], accepted(&["1", "2"])),
            sent(&["c"], unavailable(504)),
            sent(&["d"], unavailable(503)),
        ];
        let a = Audit::new(&log, &stored(&[("1", "a"), ("2", "b"), ("9", "c")]));
        assert!(a.holds(), "{:?}", a.problems);
        assert_eq!(
            (
                a.sent,
                a.accepted,
                a.failed,
                a.refused,
                a.stored,
                a.stored_failed,
                a.stored_refused,
                a.duplicates,
                a.lost
            ),
            (4, 2, 2, 1, 3, 1, 0, 0, 0)
        );
        let b = Audit::new(&log, &stored(&[("1", "a"), ("2", "b"), ("8", "d")]));
        assert_eq!(b.stored_refused, 1);
        assert!(
            b.problems
                .iter()
                .any(|p| p.contains("answered 503 were stored")),
            "{:?}",
            b.problems
        );
    }

    #[test]
    fn a_lost_case_a_duplicate_and_a_stranger_are_named() {
        let log = [sent(&["a", "b"], accepted(&["1", "2"]))];
        let a = Audit::new(&log, &stored(&[("1", "a"), ("7", "a"), ("8", "z")]));
        assert_eq!((a.lost, a.duplicates), (1, 1));
        let all = a.problems.join("\n");
        assert!(all.contains("not stored, e.g. 2"), "{all}");
        assert!(all.contains("\"a\" as"), "{all}");
        assert!(all.contains("never sent: z"), "{all}");
    }

    #[test]
    fn an_accepted_case_under_another_id_and_a_4xx_are_problems() {
        let log = [
            sent(&["a"], accepted(&["1"])),
            sent(
                &["b"],
                Answer::Refused {
                    status: 400,
                    body: "no".into(),
                },
            ),
        ];
        let a = Audit::new(&log, &stored(&[("5", "a")]));
        assert!(
            a.problems
                .iter()
                .any(|p| p.contains("stored under another id")),
            "{:?}",
            a.problems
        );
        assert!(
            a.problems.iter().any(|p| p.contains("refused")),
            "{:?}",
            a.problems
        );
    }

    #[test]
    fn reads_vmrss_of_this_process() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
