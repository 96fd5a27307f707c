//! aggregate: receives `case.stored` CloudEvents (`POST /`) and keeps the
//! statistics the dashboard reads. Counting is exactly once (see
//! `store::stats`): a redelivered event changes nothing. After updates it
//! publishes a coalesced `stats.updated` notice on Redis Pub/Sub.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use events::http::CloudEvent;
use events::{StatsUpdated, StoredBatch, StoredCase};
use runtime::{ApiError, Context, Routes};
use store::{Aggregator, Mongo, RedisStats};
use tokio::sync::{mpsc, oneshot, watch};

pub use config::AggregateConfig;

pub async fn routes(ctx: Context) -> anyhow::Result<Routes> {
    routes_with(
        ctx,
        AggregateConfig::from_lookup(&runtime::config::env_lookup)?,
    )
    .await
}

struct Job {
    ids: Vec<String>,
    reply: oneshot::Sender<Result<(), String>>,
}

struct Shared {
    jobs: mpsc::Sender<Job>,
}

pub async fn routes_with(ctx: Context, config: AggregateConfig) -> anyhow::Result<Routes> {
    let mongo = Mongo::connect_lazy(&config.mongo).await?;
    let conn = runtime::redis::connect_lazy(&config.redis_url)?;
    let keys = events::redis::Keys::new(config.key_prefix.clone());
    let agg = Aggregator::new(mongo.clone(), RedisStats::new(conn.clone(), keys.clone()));
    let (changed, watch_rx) = watch::channel(0u64);
    let (jobs, jobs_rx) = mpsc::channel(1024);
    ctx.tasks.spawn(flusher(
        jobs_rx,
        agg.clone(),
        config.flush_wait,
        changed.clone(),
    ));
    ctx.tasks.spawn(sweeper(
        ctx.clone(),
        agg.clone(),
        config.sweep_interval,
        changed,
    ));
    let source = format!("/covid-realtime/{}", ctx.config.service);
    ctx.tasks.spawn(notifier(
        ctx.clone(),
        conn.clone(),
        keys.stats_channel(),
        source,
        watch_rx,
        config.notify_interval,
        agg,
    ));

    let router = Router::new()
        .route("/", post(receive))
        .with_state(Arc::new(Shared { jobs }));
    Ok(Routes::new(router)
        .ready_when("mongodb", mongo.ready_check())
        .ready_when("redis", runtime::redis::ready_check(&conn)))
}

/// `POST /`: a `case.stored` event. Answers 202 once its cases are counted,
/// 503 when the stores are unavailable (the sender retries).
async fn receive(
    State(s): State<Arc<Shared>>,
    CloudEvent(event): CloudEvent,
) -> Result<StatusCode, ApiError> {
    let batch = StoredBatch::from_event(&event).map_err(|e| ApiError::bad_request(e.0))?;
    let ids = batch.cases.into_iter().map(|c| c.id).collect();
    let (reply, rx) = oneshot::channel();
    let unavailable = |e: String| {
        ApiError::unavailable(
            format!("statistics not updated, retry: {e}"),
            Duration::from_secs(1),
        )
    };
    s.jobs
        .send(Job { ids, reply })
        .await
        .map_err(|_| unavailable("shutting down".into()))?;
    rx.await
        .map_err(|_| unavailable("stopped".into()))?
        .map_err(unavailable)?;
    Ok(StatusCode::ACCEPTED)
}

/// Counts by path and revision only: both are ours (an enum, and a checked
/// revision name). A label from client text (state, location) would add a
/// series per string a client invents; those counts are in the dashboard.
fn record(counted: &[StoredCase]) {
    for c in counted {
        let rev = c.revision.clone().unwrap_or_default();
        metrics::counter!("aggregate_cases_counted_total", "path" => c.path.as_str(), "revision" => rev).increment(1);
    }
}

/// Counts the ids of all events that arrive within `wait` in one transaction.
async fn flusher(
    mut rx: mpsc::Receiver<Job>,
    agg: Aggregator,
    wait: Duration,
    changed: watch::Sender<u64>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let until = tokio::time::Instant::now() + wait;
        let mut n = jobs[0].ids.len();
        while n < 5000 {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(j)) => {
                    n += j.ids.len();
                    jobs.push(j);
                }
                _ => break,
            }
        }
        let ids: Vec<String> = jobs.iter().flat_map(|j| j.ids.iter().cloned()).collect();
        let start = std::time::Instant::now();
        let result = agg.count(&ids).await;
        metrics::histogram!("aggregate_flush_duration_seconds")
            .record(start.elapsed().as_secs_f64());
        let reply = match result {
            Ok(counted) => {
                record(&counted);
                if !counted.is_empty() {
                    changed.send_modify(|v| *v += 1);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), ids = ids.len(), "counting failed");
                Err(format!("{e:#}"))
            }
        };
        for j in jobs {
            let _ = j.reply.send(reply.clone());
        }
    }
}

async fn sweeper(ctx: Context, agg: Aggregator, every: Duration, changed: watch::Sender<u64>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        match agg.sweep(Duration::from_secs(2), 2000).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("aggregate_swept_total").increment(n as u64);
                tracing::info!(
                    cases = n,
                    "counted cases whose case.stored event did not arrive"
                );
                changed.send_modify(|v| *v += 1);
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "sweep failed; will retry"),
        }
    }
}

/// Publishes `stats.updated` after changes, at most once per `min_interval`.
async fn notifier(
    ctx: Context,
    conn: redis::aio::ConnectionManager,
    channel: String,
    source: String,
    mut rx: watch::Receiver<u64>,
    min_interval: Duration,
    agg: Aggregator,
) {
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = ctx.shutdown.cancelled() => return,
        }
        let total = agg
            .redis()
            .totals()
            .await
            .ok()
            .and_then(|t| t.get("cases").copied())
            .unwrap_or(0)
            .max(0) as u64;
        let notice = StatsUpdated {
            total,
            at_ms: chrono::Utc::now().timestamp_millis(),
        }
        .to_event(&source);
        let payload = events::redis::encode(&notice);
        if let Err(e) = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async::<i64>(&mut conn.clone())
            .await
        {
            tracing::debug!(error = %e, "stats.updated not published (a lost notice is harmless)");
        }
        tokio::time::sleep(min_interval).await;
    }
}
