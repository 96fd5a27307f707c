//! redis-sub: the Redis write path. Either consumes the Stream ingest
//! appends to through its own consumer group (`consumer`, always on), or
//! scales to zero behind eventing-redis' RedisStreamSource, which pushes each
//! entry to `POST /` (`push`), with a reconciling pass for what the source
//! skips (`reconcile`). Dead letters keep their payload and are replayed by
//! `redis-sub replay-dead-letters` (`replay`).

pub mod config;
pub mod consumer;
pub mod entries;
pub mod push;
pub mod reconcile;
pub mod replay;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use events::WritePath;
use runtime::{Context, Routes};

pub use config::SubConfig;
pub use consumer::Consumer;
pub use reconcile::Reconciler;

/// redis-sub, declared once: its name, its variables ([`SubConfig`]) and its routes.
pub struct Function;

impl runtime::Function for Function {
    const NAME: &'static str = "redis-sub";
    type Config = SubConfig;

    fn routes(ctx: Context, config: SubConfig) -> impl Future<Output = anyhow::Result<Routes>> {
        routes(ctx, config)
    }
}

pub async fn routes(ctx: Context, config: SubConfig) -> anyhow::Result<Routes> {
    let mongo = store::Mongo::connect_lazy(&config.mongo).await?;
    let writer = store::Writer::new(&ctx, store::CaseStore::new(mongo.clone()), WritePath::Redis);
    describe_metrics();
    metrics::counter!("redis_sub_entries_total").increment(0);
    metrics::counter!("redis_sub_dead_letters_total").increment(0);
    metrics::counter!("redis_sub_claimed_total").increment(0);
    metrics::gauge!("redis_sub_pending_entries").set(0.0);
    metrics::gauge!("redis_sub_dead_letters").set(0.0);
    // Each reader blocks on XREADGROUP: it gets a connection of its own.
    let shared = runtime::redis::connect_lazy(&config.redis.url)?;
    let keys = config.redis.keys();
    // Push mode deletes entries either group may still hold pending (the
    // source's, and ours from a former pull deployment): acknowledge in both.
    let groups = vec![keys.consumer_group(), config.source_group.clone()];
    if config.stream_consumer {
        // Readers of the group, each with its own name: a restarted process
        // resumes each one's pending entries under the same name. They take
        // turns to read and write at the same time.
        let turn: consumer::ReadTurn =
            std::sync::Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now()));
        for i in 1..=config.readers {
            let mut reader = config.clone();
            if i > 1 {
                reader.consumer_name = format!("{}-{i}", config.consumer_name);
            }
            let conn = runtime::redis::connect_lazy(&config.redis.url)?;
            let consumer = Consumer::new(ctx.clone(), conn, reader, writer.clone(), turn.clone());
            ctx.tasks.spawn(consumer.run());
        }
    } else {
        let reconciler = Reconciler {
            ctx: ctx.clone(),
            conn: shared.clone(),
            keys: keys.clone(),
            groups: groups.clone(),
            config: config.clone(),
            writer: writer.clone(),
        };
        ctx.tasks.spawn(reconciler.run());
    }
    let state = Arc::new(push::Push {
        writer,
        deadline: config.write_deadline,
        conn: shared.clone(),
        keys,
        groups,
    });
    let router = Router::new().route("/", post(push::push)).with_state(state);
    Ok(Routes::new(router)
        .ready_when("mongodb", mongo.ready_check())
        .ready_when("redis", runtime::redis::ready_check(&shared)))
}

/// HELP text of redis-sub's own metrics (Prometheus' linter wants one each).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "redis_sub_entries_total",
        "Stream entries settled: stored or dead-lettered, then acknowledged and deleted."
    );
    describe_counter!(
        "redis_sub_dead_letters_total",
        "Stream entries moved to the dead-letter stream because they are not a readable case."
    );
    describe_gauge!(
        "redis_sub_dead_letters",
        "Dead letters waiting for redis-sub replay-dead-letters."
    );
    describe_counter!(
        "redis_sub_claimed_total",
        "Entries claimed from a consumer that left them pending past CLAIM_IDLE_MS."
    );
    describe_gauge!(
        "redis_sub_pending_entries",
        "Entries delivered to a consumer of the group and not yet acknowledged."
    );
    describe_counter!(
        "redis_sub_reconciled_entries_total",
        "Push mode: entries the reconciling pass settled because the source had not delivered them."
    );
}
