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
use events::{StatsUpdated, StoredBatch};
use runtime::{ApiError, Context, Routes};
use store::batch::Carried;
use store::stats::{Counted, ToCount};
use store::{Aggregator, Mongo, RedisStats};
use tokio::sync::watch;

pub use config::AggregateConfig;

/// aggregate, declared once: its name, its variables ([`AggregateConfig`]) and its routes.
pub struct Function;

impl runtime::Function for Function {
    const NAME: &'static str = "aggregate";
    type Config = AggregateConfig;

    fn routes(
        ctx: Context,
        config: AggregateConfig,
    ) -> impl Future<Output = anyhow::Result<Routes>> {
        routes(ctx, config)
    }
}

/// Most batch records counted in one transaction. Each holds at most one
/// write's cases (`WRITE_BATCH_MAX`, `READ_COUNT`), so a flush stays well
/// under MongoDB's transaction and document limits.
const FLUSH_MAX_BATCHES: usize = 200;
/// Most cases counted in one transaction (a single larger batch still goes
/// whole): bounds the flush's outbox record, whose areas and states are at
/// most one entry per case, far below MongoDB's 16 MiB document limit.
const FLUSH_MAX_CASES: usize = 10_000;

/// Records to count, from their `case.stored` events or found by the sweep;
/// an item's weight is its batch's cases.
type Counting = runtime::batch::Batcher<ToCount, Result<(), String>>;

struct Shared {
    counting: Counting,
}

/// Counts the records of one flush in one transaction, one flush at a time.
/// Paced by `AGGREGATE_FLUSH_MS`: after a flush that was not full, the next
/// starts that long after it and takes every record that arrived meanwhile
/// (up to the flush bounds), so a flush's fixed cost (an update per area and
/// state, the totals, its outbox entry) is paid per interval, not per write.
/// An event after a quiet spell is counted at once.
fn start_counting(
    ctx: &Context,
    agg: Aggregator,
    pace: Duration,
    changed: watch::Sender<u64>,
) -> Counting {
    let limits = runtime::batch::Limits {
        max_items: FLUSH_MAX_BATCHES,
        max_weight: FLUSH_MAX_CASES,
        pace,
        in_flight: 1,
        queue: 1024,
    };
    let changed = Arc::new(changed);
    let (counting, task) = runtime::batch::Batcher::new(limits, move |records| {
        flush(agg.clone(), records, changed.clone())
    });
    ctx.tasks.spawn(task);
    counting
}

/// HELP texts of aggregate's metrics.
fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "aggregate_cases_counted_total",
        "Stored cases counted into the statistics, by write path and revision"
    );
    describe_counter!(
        "aggregate_batches_counted_total",
        "Counting records (one per stored batch) applied and deleted"
    );
    describe_counter!(
        "aggregate_batches_dead_lettered_total",
        "Counting records this version cannot read, moved to stats_batches_dead_letter"
    );
    describe_counter!(
        "aggregate_carried_refused_total",
        "Flushes whose events' carried deltas were not applied (a record counted already, or deltas not its own); their records were read instead"
    );
    describe_histogram!(
        "aggregate_flush_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one flush of counted increments to MongoDB and Redis"
    );
    describe_counter!(
        "aggregate_swept_batches_total",
        "Counting records whose case.stored event had not arrived, found by the sweep"
    );
}

pub async fn routes(ctx: Context, config: AggregateConfig) -> anyhow::Result<Routes> {
    describe_metrics();
    let mongo = Mongo::connect_lazy(&config.mongo).await?;
    let conn = runtime::redis::connect_lazy(&config.redis.url)?;
    let keys = config.redis.keys();
    let agg = Aggregator::new(mongo.clone(), RedisStats::new(conn.clone(), keys.clone()));
    let (changed, watch_rx) = watch::channel(0u64);
    let counting = start_counting(&ctx, agg.clone(), config.flush_pace, changed);
    ctx.tasks.spawn(sweeper(
        ctx.clone(),
        agg.clone(),
        config.sweep_interval,
        counting.clone(),
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
        .with_state(Arc::new(Shared { counting }));
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
    let unavailable = |e: String| {
        ApiError::unavailable(
            format!("statistics not updated, retry: {e}"),
            Duration::from_secs(1),
        )
    };
    let carried = match batch.record.as_deref() {
        Some(r) => Some(Carried::decode(r).map_err(ApiError::bad_request)?),
        None => None,
    };
    let weight = usize::try_from(batch.cases).unwrap_or(usize::MAX);
    let record = ToCount {
        id: batch.batch,
        carried,
    };
    s.counting
        .submit(record, weight, None)
        .await
        .map_err(|_| unavailable("shutting down".into()))?
        .map_err(unavailable)?;
    Ok(StatusCode::ACCEPTED)
}

/// Counts by path and revision only: both are ours (an enum, and a checked
/// revision name). A label from client text (state, location) would add a
/// series per string a client invents; those counts are in the dashboard.
fn record(counted: &Counted) {
    let d = &counted.deltas;
    metrics::counter!("aggregate_batches_counted_total").increment(counted.batches as u64);
    for ((path, revision), n) in &d.routes {
        let revision = revision.clone().unwrap_or_default();
        metrics::counter!("aggregate_cases_counted_total", "path" => path.clone(), "revision" => revision)
            .increment(*n as u64);
    }
}

/// Counts one flush's batch records in one transaction; every record's
/// sender gets the flush's outcome.
async fn flush(
    agg: Aggregator,
    batches: Vec<ToCount>,
    changed: Arc<watch::Sender<u64>>,
) -> Vec<Result<(), String>> {
    let n = batches.len();
    let start = std::time::Instant::now();
    let result = agg.count(batches).await;
    metrics::histogram!("aggregate_flush_duration_seconds").record(start.elapsed().as_secs_f64());
    let reply = match result {
        Ok(counted) => {
            record(&counted);
            if counted.batches > 0 {
                changed.send_modify(|v| *v += 1);
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), batches = n, "counting failed");
            Err(format!("{e:#}"))
        }
    };
    vec![reply; n]
}

/// Batch records the sweep counts per interval: up to this many writes' worth
/// of cases, so recovery runs at many times the ingest rate.
const SWEEP_MAX_BATCHES: i64 = 2000;
/// Records younger than this are left to their own `case.stored` event. A
/// record the sweep takes while its event is still on the way costs nothing
/// twice: the flusher deletes a record as it counts it, and a flush's Redis
/// half is applied once per flush id. Short, so that after aggregate was
/// away the counters catch up within a second or two of its return.
const SWEEP_AGE: Duration = Duration::from_secs(1);

/// Catches up every `every`: replays interrupted Redis updates, then hands
/// the batch records no event told us about to the flusher, so that one task
/// does all the counting and the sweep never conflicts with a flush.
async fn sweeper(ctx: Context, agg: Aggregator, every: Duration, counting: Counting) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let found = async {
            agg.replay_interrupted(SWEEP_AGE, SWEEP_MAX_BATCHES).await?;
            Ok::<_, anyhow::Error>(agg.uncounted_batches(SWEEP_AGE, SWEEP_MAX_BATCHES).await?)
        };
        let batches = match found.await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "sweep failed; will retry");
                continue;
            }
        };
        if batches.is_empty() {
            continue;
        }
        metrics::counter!("aggregate_swept_batches_total").increment(batches.len() as u64);
        tracing::info!(
            batches = batches.len(),
            "counting batches whose case.stored event did not arrive"
        );
        let replies = batches.into_iter().map(|(batch, cases)| {
            let weight = usize::try_from(cases).unwrap_or(usize::MAX);
            let record = ToCount {
                id: batch,
                carried: None,
            };
            counting.submit(record, weight, None)
        });
        // The next pass starts after these are counted, not before.
        futures::future::join_all(replies).await;
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
