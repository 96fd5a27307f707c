//! The faults themselves (`kill -9` of a function; a store stopped and
//! restarted, or frozen), injected on a schedule under load, and memory
//! sampling of the function processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use stack::{MongoServer, RedisServer, Supervisor};

use super::load::{RunningLoad, Sent};

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
    stack::process::send_signal(pid, sig)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_of_this_process() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
