//! Live pushes: one Redis Pub/Sub subscription per process, one snapshot
//! built per change (at most one per `SSE_MIN_INTERVAL_MS`), shared by every
//! connected client through a watch channel, which also coalesces: a slow
//! client just skips to the newest snapshot.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use runtime::{Backoff, Context};
use store::Aggregator;
use tokio::sync::{Notify, watch};

use crate::snapshot;

/// The latest snapshot as JSON (`None` until the first one is built).
pub type Latest = watch::Receiver<Option<Arc<str>>>;

/// Starts the subscriber and the snapshot builder; returns the receiver clients clone.
pub fn start(
    ctx: &Context,
    agg: Aggregator,
    redis_url: String,
    channel: String,
    min_interval: Duration,
    refresh: Duration,
) -> Latest {
    let (tx, rx) = watch::channel(None);
    let changed = Arc::new(Notify::new());
    ctx.tasks
        .spawn(subscribe(ctx.clone(), redis_url, channel, changed.clone()));
    ctx.tasks
        .spawn(build(ctx.clone(), agg, tx, changed, min_interval, refresh));
    rx
}

async fn subscribe(ctx: Context, url: String, channel: String, changed: Arc<Notify>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !ctx.shutdown.is_cancelled() {
        let session = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            // Anything may have changed while we were not listening.
            changed.notify_one();
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                changed.notify_one();
            }
            Ok::<_, redis::RedisError>(())
        };
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "stats.updated subscription lost; reconnecting");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = ctx.shutdown.cancelled() => return,
                }
            }
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

async fn build(
    ctx: Context,
    agg: Aggregator,
    tx: watch::Sender<Option<Arc<str>>>,
    changed: Arc<Notify>,
    min_interval: Duration,
    refresh: Duration,
) {
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(refresh) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        // Only build when someone is listening.
        if tx.receiver_count() > 1 {
            match snapshot::snapshot(&agg).await {
                Ok(s) => {
                    let json: Arc<str> = serde_json::to_string(&s)
                        .expect("a snapshot serializes")
                        .into();
                    tx.send_replace(Some(json));
                }
                Err(e) => tracing::warn!(error = %e, "could not build a snapshot"),
            }
        }
        tokio::time::sleep(min_interval).await;
    }
}
