//! The ingest log: one record per ingest request (time, path, result and
//! reason, cases, bytes, revision), written in batches off the request path
//! and expired by a TTL index (`INGEST_LOG_TTL_S`), so it cannot grow without bound.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::mongo::{INGEST_LOG, Mongo};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub time_ms: i64,
    /// The ingest route: `grpc`, `redis` or `sink`.
    pub path: String,
    /// `accepted`, `refused` or `unavailable`.
    pub result: String,
    pub reason: String,
    pub cases: u32,
    pub bytes: u64,
    pub revision: String,
}

impl LogEntry {
    fn to_doc(&self) -> Document {
        doc! {
            "time": DateTime::from_millis(self.time_ms),
            "path": &self.path,
            "result": &self.result,
            "reason": &self.reason,
            "cases": i64::from(self.cases),
            "bytes": self.bytes as i64,
            "revision": &self.revision,
        }
    }

    fn from_doc(d: &Document) -> Option<LogEntry> {
        Some(LogEntry {
            time_ms: d.get_datetime("time").ok()?.timestamp_millis(),
            path: d.get_str("path").ok()?.to_owned(),
            result: d.get_str("result").ok()?.to_owned(),
            reason: d.get_str("reason").unwrap_or("").to_owned(),
            cases: d.get_i64("cases").ok()? as u32,
            bytes: d.get_i64("bytes").ok()? as u64,
            revision: d.get_str("revision").unwrap_or("").to_owned(),
        })
    }
}

#[derive(Clone)]
pub struct IngestLog {
    mongo: Mongo,
}

/// Hands entries to the background writer; never waits.
#[derive(Clone)]
pub struct LogSender(mpsc::Sender<LogEntry>);

impl LogSender {
    /// Queues an entry; when the queue is full (MongoDB slow or gone) the
    /// entry is dropped and counted, so the log never slows ingest down.
    pub fn log(&self, entry: LogEntry) {
        if self.0.try_send(entry).is_err() {
            metrics::counter!("ingest_log_dropped_total").increment(1);
        }
    }
}

impl IngestLog {
    pub fn new(mongo: Mongo) -> IngestLog {
        IngestLog { mongo }
    }

    /// Starts the batching writer; it ends after `shutdown`, once the queue is written.
    pub fn start_writer(&self, capacity: usize, ctx: &runtime::Context) -> LogSender {
        metrics::describe_counter!(
            "ingest_log_dropped_total",
            "Ingest-log entries dropped because MongoDB could not keep up"
        );
        let shutdown = ctx.shutdown.clone();
        let (tx, mut rx) = mpsc::channel::<LogEntry>(capacity);
        let log = self.clone();
        ctx.tasks.spawn(async move {
            let mut batch = Vec::with_capacity(256);
            loop {
                let n = tokio::select! {
                    n = rx.recv_many(&mut batch, 256) => n,
                    _ = shutdown.cancelled() => { rx.close(); rx.recv_many(&mut batch, 4096).await }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = log.write(&batch).await {
                    metrics::counter!("ingest_log_dropped_total").increment(batch.len() as u64);
                    tracing::warn!(error = %e, entries = batch.len(), "could not write the ingest log");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                batch.clear();
                if shutdown.is_cancelled() && rx.is_empty() && rx.is_closed() {
                    break;
                }
            }
        });
        LogSender(tx)
    }

    pub async fn write(&self, entries: &[LogEntry]) -> mongodb::error::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.mongo.ensure_indexes().await?;
        self.mongo
            .collection(INGEST_LOG)
            .insert_many(entries.iter().map(LogEntry::to_doc))
            .ordered(false)
            .await?;
        Ok(())
    }

    /// The newest `limit` entries, newest first.
    pub async fn latest(&self, limit: u32) -> mongodb::error::Result<Vec<LogEntry>> {
        let docs: Vec<Document> = self
            .mongo
            .collection(INGEST_LOG)
            .find(doc! {})
            .sort(doc! {"time": -1})
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(LogEntry::from_doc).collect())
    }
}
