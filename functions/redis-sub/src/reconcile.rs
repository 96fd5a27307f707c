//! The reconciling pass of push mode. eventing-redis' RedisStreamSource is
//! not enough on its own: it acknowledges an entry whatever redis-sub
//! answered (a 503 while MongoDB is away is not retried later), and on
//! restart it re-creates its group at `$`, so entries added while it was
//! down are never delivered. Every `RECONCILE_INTERVAL_MS`, this pass stores
//! the entries older than `RECONCILE_AFTER_MS` still in the Stream (the
//! source's deliveries delete the rest) and settles them like any other.
//! Racing a late delivery is harmless: writes are idempotent on the case id.

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use runtime::Context;
use store::Keys;
use store::Writer;

use crate::config::SubConfig;
use crate::entries;

pub struct Reconciler {
    pub ctx: Context,
    pub conn: ConnectionManager,
    pub keys: Keys,
    pub groups: Vec<String>,
    pub config: SubConfig,
    pub writer: Writer,
}

impl Reconciler {
    /// Runs a pass at start (a restart finds what the source skipped) and
    /// then every interval, until shutdown.
    pub async fn run(mut self) {
        metrics::counter!("redis_sub_reconciled_entries_total").increment(0);
        while !self.ctx.shutdown.is_cancelled() {
            match self.pass().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    entries = n,
                    "reconciling pass settled entries the source had not delivered"
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reconciling pass failed; retried next interval")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.reconcile_interval) => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// Settles every entry older than the bound; returns how many.
    pub async fn pass(&mut self) -> anyhow::Result<usize> {
        // The bound is on Redis' clock, the one that made the entry ids.
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let Some(bound_ms) = now_ms.checked_sub(self.config.reconcile_after.as_millis() as u64)
        else {
            return Ok(0);
        };
        let stream = self.keys.stream();
        let mut start = "-".to_owned();
        let mut settled = 0;
        while !self.ctx.shutdown.is_cancelled() {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&start)
                .arg(bound_ms)
                .arg("COUNT")
                .arg(self.config.read_count)
                .query_async(&mut self.conn)
                .await?;
            let Some(last) = page.ids.last() else { break };
            start = format!("({}", last.id);
            let decoded = entries::decode(&page.ids);
            self.writer
                .write(
                    &decoded.cases,
                    decoded.traceparent.as_deref(),
                    self.config.write_deadline,
                )
                .await?;
            entries::settle(&mut self.conn, &self.keys, &self.groups, &decoded).await?;
            settled += page.ids.len();
            metrics::counter!("redis_sub_reconciled_entries_total")
                .increment(page.ids.len() as u64);
            if page.ids.len() < self.config.read_count {
                break;
            }
        }
        entries::observe_dead_letters(&mut self.conn, &self.keys).await;
        Ok(settled)
    }
}
