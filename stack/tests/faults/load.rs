//! The fault tests' load: a steady, bounded load through the ingest
//! functions that records what every request was answered. Every case has a
//! unique name, so the audit catches a case stored twice under two ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    Unanswered(String),
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
            Answer::Refused { .. } | Answer::Unanswered(_) => s.shape.pace * 2,
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
        Err(e) => return Answer::Unanswered(e.to_string()),
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
            Err(e) => Answer::Unanswered(format!("202 without a readable body: {e}")),
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
