//! The engine: virtual users (closed model) or arrival-driven workers (open
//! model) sending to the targets until the run ends.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Conn, Reply, RequestTemplate};
use crate::schedule::{Arrivals, Tickets, latency_origin, user_start};
use crate::stats::{Live, Response, Stats, TransportError, parse_accepted};
use crate::target::Target;
use crate::traffic::BodyPool;

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// `users` loop request -> response, started at `spawn_rate` per second.
    Closed { users: u32, spawn_rate: Option<f64> },
    /// Requests arrive at `rate` per second whatever the responses, at most
    /// `max_in_flight` outstanding.
    Open { rate: f64, max_in_flight: u32 },
}

/// Everything a run needs, checked and built before it starts.
#[derive(Debug)]
pub struct Plan {
    /// With [`Target::addr`] resolved.
    pub targets: Vec<Target>,
    pub model: Model,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub timeout: Duration,
    pub pool: BodyPool,
    pub authorization: Option<HeaderValue>,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// From the first request to the last response.
    pub elapsed: Duration,
    /// Per target, in the order of `Plan::targets`.
    pub per_target: Vec<Stats>,
    /// True when Ctrl-C ended the run early.
    pub interrupted: bool,
}

/// State shared by all users of a run. Read on every request, written only
/// through atomics: no lock is shared between users.
pub struct Shared {
    plan: Plan,
    templates: Vec<RequestTemplate>,
    pub start: Instant,
    deadline: Option<Instant>,
    /// Closed model with --requests: requests handed out so far.
    issued: AtomicU64,
    /// Cancelled when --requests are all handed out, so that users still
    /// waiting for their spawn time do not wait for nothing.
    exhausted: CancellationToken,
    tickets: Option<Tickets>,
    pub stop: CancellationToken,
    /// Users (or open-model workers) started so far.
    pub active: AtomicU32,
    /// One progress window per user, read by the progress task.
    pub live: Vec<Arc<Mutex<Live>>>,
}

impl Shared {
    pub fn new(plan: Plan, stop: CancellationToken) -> Arc<Shared> {
        let templates = plan
            .targets
            .iter()
            .map(|t| {
                RequestTemplate::new(
                    t,
                    plan.pool.content_type.clone(),
                    plan.authorization.clone(),
                )
            })
            .collect();
        let start = Instant::now();
        let (workers, tickets) = match plan.model {
            Model::Closed { users, .. } => (users, None),
            Model::Open {
                rate,
                max_in_flight,
            } => {
                let arrivals = Arrivals::new(rate, plan.duration, plan.requests);
                // More workers than arrivals would only hold idle connections.
                let workers = u64::from(max_in_flight).min(arrivals.count().max(1)) as u32;
                (workers, Some(Tickets::new(arrivals)))
            }
        };
        Arc::new(Shared {
            deadline: plan.duration.map(|d| start + d),
            templates,
            start,
            issued: AtomicU64::new(0),
            exhausted: CancellationToken::new(),
            tickets,
            stop,
            active: AtomicU32::new(0),
            live: (0..workers).map(|_| Arc::default()).collect(),
            plan,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Closed model: may this user send one more request?
    fn may_send(&self, now: Instant) -> bool {
        if self.stop.is_cancelled() || self.deadline.is_some_and(|d| now >= d) {
            return false;
        }
        match self.plan.requests {
            Some(limit) => {
                let may = self.issued.fetch_add(1, Ordering::Relaxed) < limit;
                if !may {
                    self.exhausted.cancel();
                }
                may
            }
            None => true,
        }
    }
}

/// Runs the plan to its end (or until `shared.stop` is cancelled) and merges
/// what every user measured.
pub async fn run(shared: Arc<Shared>) -> Outcome {
    let targets = shared.plan.targets.len();
    let mut tasks = tokio::task::JoinSet::new();
    match shared.plan.model {
        Model::Closed { spawn_rate, .. } => {
            for (i, live) in shared.live.iter().enumerate() {
                let (shared, live) = (shared.clone(), live.clone());
                // Users are spread evenly: user i loads target i mod n.
                let starts = user_start(i as u32, spawn_rate);
                tasks.spawn(async move { closed_user(&shared, i % targets, live, starts).await });
            }
        }
        Model::Open { .. } => {
            for live in &shared.live {
                let (shared, live) = (shared.clone(), live.clone());
                tasks.spawn(async move { open_worker(&shared, live).await });
            }
        }
    }
    let mut per_target = vec![Stats::default(); targets];
    while let Some(done) = tasks.join_next().await {
        let user = done.expect("a virtual user panicked; this is a bug in loadtest");
        for (total, s) in per_target.iter_mut().zip(&user) {
            total.merge(s);
        }
    }
    Outcome {
        elapsed: shared.start.elapsed(),
        per_target,
        interrupted: shared.stop.is_cancelled(),
    }
}

async fn closed_user(
    shared: &Shared,
    target: usize,
    live: Arc<Mutex<Live>>,
    starts: Duration,
) -> Vec<Stats> {
    let mut stats = vec![Stats::default(); shared.plan.targets.len()];
    let wake = shared.start + starts;
    // A user due after the end never starts (the run must not outlast --duration).
    if shared.deadline.is_some_and(|end| wake >= end) {
        return stats;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(wake) => {}
        _ = shared.stop.cancelled() => return stats,
        _ = shared.exhausted.cancelled() => return stats,
    }
    shared.active.fetch_add(1, Ordering::Relaxed);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut conn = Conn::new(addr(&shared.plan.targets[target]));
    let template = &shared.templates[target];
    let pool = &shared.plan.pool;
    let mut now = Instant::now();
    while shared.may_send(now) {
        let req = template.build(pool.pick(&mut rng));
        let sent = now;
        let result = conn.send(req, shared.plan.timeout).await;
        now = Instant::now();
        record(
            &mut stats[target],
            &live,
            pool.cases_per_body,
            result,
            now - sent,
        );
        // Users that never wait (a fast server) must still let others run
        // on a single-threaded runtime.
        tokio::task::consume_budget().await;
    }
    stats
}

async fn open_worker(shared: &Shared, live: Arc<Mutex<Live>>) -> Vec<Stats> {
    let targets = &shared.plan.targets;
    let mut stats = vec![Stats::default(); targets.len()];
    let tickets = shared.tickets.as_ref().expect("the open model has tickets");
    shared.active.fetch_add(1, Ordering::Relaxed);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    // Connections are opened on first use: a worker may only ever see one target.
    let mut conns: Vec<Conn> = targets.iter().map(|t| Conn::new(addr(t))).collect();
    let pool = &shared.plan.pool;
    while !shared.stop.is_cancelled() {
        let Some(ticket) = tickets.take() else { break };
        let intended = shared.start + ticket.due;
        let taken_at = Instant::now();
        if intended > taken_at {
            tokio::select! {
                _ = tokio::time::sleep_until(intended) => {}
                _ = shared.stop.cancelled() => break,
            }
        }
        let t = (ticket.index % targets.len() as u64) as usize;
        let req = shared.templates[t].build(pool.pick(&mut rng));
        let sent_at = Instant::now();
        let result = conns[t].send(req, shared.plan.timeout).await;
        let origin = latency_origin(intended.into_std(), taken_at.into_std(), sent_at.into_std());
        let latency = Instant::now().into_std() - origin;
        record(&mut stats[t], &live, pool.cases_per_body, result, latency);
        tokio::task::consume_budget().await;
    }
    stats
}

fn record(
    stats: &mut Stats,
    live: &Mutex<Live>,
    cases: u64,
    result: Result<Reply, TransportError>,
    latency: Duration,
) {
    let ok = match result {
        Ok(reply) => {
            let ok = reply.head.status.is_success();
            let revision = reply
                .head
                .headers
                .get(events::REVISION_HEADER)
                .and_then(|v| v.to_str().ok());
            let accepted = if ok { parse_accepted(&reply.body) } else { 0 };
            let response = Response {
                status: reply.head.status.as_u16(),
                revision,
                accepted,
                body_bytes: reply.body.len() as u64,
            };
            stats.record_response(latency, cases, response);
            Some(ok)
        }
        Err(kind) => {
            stats.record_error(cases, kind);
            None
        }
    };
    // Only this user and, once a second, the progress task take this lock.
    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
    live.record(ok.map(|_| latency), ok != Some(true));
}

fn addr(t: &Target) -> std::net::SocketAddr {
    t.addr
        .expect("target addresses are resolved before the run")
}
