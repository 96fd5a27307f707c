//! The always-on consumer: reads the Stream through the consumer group,
//! stores each batch, and only then acknowledges and deletes the entries
//! (XACK + XDEL), so the Stream holds only what is not yet stored and memory
//! stays bounded. Entries a crashed consumer left pending are claimed after
//! `CLAIM_IDLE_MS` (XAUTOCLAIM); a restarted consumer first finishes its own.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use runtime::{Backoff, Context};
use store::Keys;
use store::Writer;

use crate::config::SubConfig;
use crate::entries;

pub struct Consumer {
    ctx: Context,
    conn: ConnectionManager,
    keys: Keys,
    group: String,
    name: String,
    config: SubConfig,
    writer: Writer,
    /// Shared by the readers of one process: when the next read of the
    /// group may start. One reader reads at a time, paced by `READ_WAIT_MS`
    /// as a single reader would be; their writes overlap.
    turn: ReadTurn,
}

/// See [`Consumer::turn`].
pub type ReadTurn = std::sync::Arc<tokio::sync::Mutex<tokio::time::Instant>>;

enum Read {
    /// The group's new entries (`>`).
    New,
    /// This consumer's own pending entries (`0`), after a restart.
    Own,
}

impl Consumer {
    pub fn new(
        ctx: Context,
        conn: ConnectionManager,
        config: SubConfig,
        writer: Writer,
        turn: ReadTurn,
    ) -> Consumer {
        let keys = config.redis.keys();
        Consumer {
            group: keys.consumer_group(),
            name: config.consumer_name.clone(),
            ctx,
            conn,
            keys,
            config,
            writer,
            turn,
        }
    }

    /// Runs until shutdown; a batch being written is finished first.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        while !self.ctx.shutdown.is_cancelled() {
            if let Err(e) = self.ensure_group().await {
                tracing::warn!(error = %e, "cannot create the consumer group yet; retrying");
                self.pause(backoff.next_delay()).await;
                continue;
            }
            break;
        }
        tracing::info!(consumer = %self.name, stream = %self.keys.stream(), "consuming");
        let mut own_done = false;
        let mut claim_cursor = "0-0".to_owned();
        let mut last_claim = tokio::time::Instant::now();
        // When the last read found some entries but not a full batch, the next
        // one (by any reader of this process) waits until READ_WAIT_MS after
        // it: under steady traffic a write then carries that long's cases,
        // not whatever arrived during the previous write. A quiet Stream is
        // read at once (BLOCK), a backlog in full batches without a pause.
        while !self.ctx.shutdown.is_cancelled() {
            let step = async {
                if !own_done {
                    let n = self.read(Read::Own).await?;
                    own_done = n == 0;
                    return Ok::<_, redis::RedisError>(());
                }
                if last_claim.elapsed() >= self.config.claim_idle / 2 {
                    last_claim = tokio::time::Instant::now();
                    claim_cursor = self.claim(&claim_cursor).await?;
                }
                let entries = {
                    let turn = self.turn.clone();
                    let mut next_read = turn.lock().await;
                    tokio::time::sleep_until(*next_read).await;
                    let started = tokio::time::Instant::now();
                    let entries = self.fetch(Read::New).await?;
                    if !entries.is_empty() && entries.len() < self.config.read_count {
                        *next_read = started + self.config.read_wait;
                    }
                    entries
                };
                // The turn is free again: another reader reads while this one writes.
                if !entries.is_empty() {
                    self.handle(entries).await?;
                }
                Ok(())
            };
            match step.await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "Redis unavailable; retrying");
                    // A batch may be stored but not yet acknowledged: re-read our
                    // own pending entries first (storing them again is a no-op),
                    // rather than leaving them to the idle claim.
                    own_done = false;
                    self.pause(backoff.next_delay()).await;
                }
            }
        }
        tracing::info!(consumer = %self.name, "consumer stopped");
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.ctx.shutdown.cancelled() => {}
        }
    }

    async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        // From "0": entries added before the group existed are consumed too.
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.stream())
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Reads and handles one batch; returns how many entries it had.
    async fn read(&mut self, which: Read) -> redis::RedisResult<usize> {
        let entries = self.fetch(which).await?;
        let n = entries.len();
        if n > 0 {
            self.handle(entries).await?;
        }
        Ok(n)
    }

    /// Reads one batch of entries.
    async fn fetch(&mut self, which: Read) -> redis::RedisResult<Vec<StreamId>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.config.read_count);
        let id = match which {
            Read::New => {
                cmd.arg("BLOCK").arg(1000);
                ">"
            }
            Read::Own => "0",
        };
        cmd.arg("STREAMS").arg(self.keys.stream()).arg(id);
        let reply: Option<StreamReadReply> = match cmd.query_async(&mut self.conn).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or group was deleted (e.g. a Redis restart without persistence).
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Claims entries idle on other consumers; returns the next cursor.
    async fn claim(&mut self, cursor: &str) -> redis::RedisResult<String> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.stream())
            .arg(&self.group)
            .arg(&self.name)
            .arg(self.config.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(self.config.read_count)
            .query_async(&mut self.conn)
            .await?;
        if !reply.claimed.is_empty() {
            metrics::counter!("redis_sub_claimed_total").increment(reply.claimed.len() as u64);
            tracing::info!(
                entries = reply.claimed.len(),
                "claimed entries left pending by another consumer"
            );
            self.handle(reply.claimed).await?;
        }
        let pending: redis::RedisResult<(u64, redis::Value, redis::Value, redis::Value)> =
            redis::cmd("XPENDING")
                .arg(self.keys.stream())
                .arg(&self.group)
                .query_async(&mut self.conn)
                .await;
        if let Ok((count, ..)) = pending {
            metrics::gauge!("redis_sub_pending_entries").set(count as f64);
        }
        entries::observe_dead_letters(&mut self.conn, &self.keys).await;
        Ok(reply.next_stream_id)
    }

    /// Stores the entries' cases, then acknowledges and deletes the entries
    /// (see `entries`); undecodable ones go to the dead-letter stream.
    async fn handle(&mut self, entries: Vec<StreamId>) -> redis::RedisResult<()> {
        let decoded = entries::decode(&entries);
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            match self
                .writer
                .write(
                    &decoded.cases,
                    decoded.traceparent.as_deref(),
                    self.config.write_deadline,
                )
                .await
            {
                Ok(_) => break,
                Err(e) if !self.ctx.shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, entries = decoded.cases.len(), "MongoDB unavailable; entries stay pending and are retried");
                    self.pause(backoff.next_delay()).await;
                }
                // Shutting down: leave the entries pending; they are resumed or claimed later.
                Err(_) => return Ok(()),
            }
        }
        entries::settle(
            &mut self.conn,
            &self.keys,
            std::slice::from_ref(&self.group),
            &decoded,
        )
        .await
    }
}
