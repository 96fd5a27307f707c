//! The ingest log: one record per ingest request (time, path, result and
//! reason, cases, bytes, revision), written in batches off the request path
//! and expired by a TTL index (`INGEST_LOG_TTL_S`), so it cannot grow without bound.
//!
//! Ingest, the log's one writer, owns that index: it creates it, and when
//! `INGEST_LOG_TTL_S` changes it changes the TTL in place with `collMod`
//! (creating it again with other options is MongoDB's IndexOptionsConflict).
//! No case write, count or sweep touches it.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{IndexModel, error::ErrorKind};
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
    /// Set for the log's owner (ingest): the TTL its index must have.
    ttl: Option<Duration>,
    indexed: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// The TTL index's key and name.
const TTL_INDEX: &str = "time_1";
/// MongoDB's IndexOptionsConflict and IndexKeySpecsConflict codes.
const INDEX_CONFLICT: [i32; 2] = [85, 86];

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
    /// A reader of the log (or a writer that leaves its index alone).
    pub fn new(mongo: Mongo) -> IngestLog {
        IngestLog {
            mongo,
            ttl: None,
            indexed: Default::default(),
        }
    }

    /// The log's owner: its writes keep the TTL index at `ttl`.
    pub fn owner(mongo: Mongo, ttl: Duration) -> IngestLog {
        IngestLog {
            ttl: Some(ttl),
            ..IngestLog::new(mongo)
        }
    }

    /// Makes the TTL index expire records after `ttl`: creates it, or
    /// changes an existing one's TTL with `collMod`. Idempotent.
    pub async fn ensure_ttl_index(&self, ttl: Duration) -> mongodb::error::Result<()> {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        match self.ttl_seconds().await? {
            Some(s) if s == seconds => return Ok(()),
            Some(_) => return self.change_ttl(seconds).await,
            None => {}
        }
        let index = IndexModel::builder()
            .keys(doc! {"time": 1})
            .options(
                IndexOptions::builder()
                    .name(TTL_INDEX.to_owned())
                    .expire_after(ttl)
                    .build(),
            )
            .build();
        match self.mongo.collection(INGEST_LOG).create_index(index).await {
            Ok(_) => Ok(()),
            // Another ingest created it meanwhile, with another TTL.
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if INDEX_CONFLICT.contains(&c.code)) => {
                self.change_ttl(seconds).await
            }
            Err(e) => Err(e),
        }
    }

    /// The TTL index's `expireAfterSeconds`; `None` when there is no index.
    pub async fn ttl_seconds(&self) -> mongodb::error::Result<Option<i64>> {
        let indexes: Vec<IndexModel> = match self.mongo.collection(INGEST_LOG).list_indexes().await
        {
            Ok(cursor) => cursor.try_collect().await?,
            // No collection yet (NamespaceNotFound): no index either.
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 26) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(indexes
            .iter()
            .find(|i| i.keys == doc! {"time": 1})
            .map(|i| {
                i.options
                    .as_ref()
                    .and_then(|o| o.expire_after)
                    .map_or(0, |d| d.as_secs() as i64)
            }))
    }

    async fn change_ttl(&self, seconds: i64) -> mongodb::error::Result<()> {
        self.mongo
            .db()
            .run_command(doc! {
                "collMod": INGEST_LOG,
                "index": {"keyPattern": {"time": 1}, "expireAfterSeconds": Bson::Int64(seconds)},
            })
            .await
            .map(|_| ())
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
        if let Some(ttl) = self.ttl {
            // Retried with the next batch; the entries are written either way.
            let indexed = self
                .indexed
                .get_or_try_init(|| self.ensure_ttl_index(ttl))
                .await;
            if let Err(e) = indexed {
                tracing::warn!(error = %e, "could not set the ingest log's TTL index; will retry");
            }
        }
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
