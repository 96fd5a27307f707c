//! redis-sub: the Redis write path. Consumes the Stream ingest appends to
//! (see `consumer`) and also accepts `case.reported` CloudEvents by HTTP
//! `POST /`, the push form of Knative's RedisStreamSource, so it can run as an
//! always-on consumer or scale to zero behind a source.

pub mod config;
pub mod consumer;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use events::http::CloudEvent;
use events::{Reported, WritePath};
use runtime::{ApiError, Context, Routes};

pub use config::SubConfig;
pub use consumer::Consumer;

pub async fn routes(ctx: Context) -> anyhow::Result<Routes> {
    routes_with(ctx, SubConfig::from_lookup(&runtime::config::env_lookup)?).await
}

struct Push {
    writer: store::Writer,
    deadline: Duration,
}

pub async fn routes_with(ctx: Context, config: SubConfig) -> anyhow::Result<Routes> {
    let mongo = store::Mongo::connect_lazy(&config.mongo).await?;
    let writer = store::Writer::new(&ctx, store::CaseStore::new(mongo.clone()), WritePath::Redis);
    metrics::describe_counter!(
        "redis_sub_claimed_total",
        "Stream entries reclaimed from a consumer idle past CLAIM_IDLE_MS"
    );
    metrics::describe_gauge!(
        "redis_sub_pending_entries",
        "Entries read by the consumer group but not acknowledged yet"
    );
    metrics::describe_counter!(
        "redis_sub_entries_total",
        "Stream entries stored and acknowledged"
    );
    metrics::describe_counter!(
        "redis_sub_dead_letters_total",
        "Stream entries that could not be decoded, moved to the dead-letter list"
    );
    metrics::counter!("redis_sub_claimed_total").increment(0);
    metrics::gauge!("redis_sub_pending_entries").set(0.0);
    // The consumer blocks on XREADGROUP: it gets a connection of its own.
    let ping = runtime::redis::connect_lazy(&config.redis_url)?;
    if config.stream_consumer {
        let conn = runtime::redis::connect_lazy(&config.redis_url)?;
        let consumer = Consumer::new(ctx.clone(), conn, config.clone(), writer.clone());
        ctx.tasks.spawn(consumer.run());
    }
    let state = Arc::new(Push {
        writer,
        deadline: config.write_deadline,
    });
    let router = Router::new().route("/", post(push)).with_state(state);
    Ok(Routes::new(router)
        .ready_when("mongodb", mongo.ready_check())
        .ready_when("redis", runtime::redis::ready_check(&ping)))
}

/// `POST /`: one `case.reported` event pushed by a source. 202 once stored
/// (or already stored), 400 if it is not a case event, 503 if MongoDB is away.
async fn push(
    State(s): State<Arc<Push>>,
    CloudEvent(event): CloudEvent,
) -> Result<StatusCode, ApiError> {
    let r = Reported::from_event(&event).map_err(|e| ApiError::bad_request(e.0))?;
    let tp = r.traceparent.clone();
    s.writer
        .write(&[r], tp.as_deref(), s.deadline)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!("not stored, retry: {e}"), Duration::from_secs(1))
        })?;
    Ok(StatusCode::ACCEPTED)
}
