//! Groups concurrent write requests into one bulk insert (a
//! [`runtime::batch::Batcher`], `WRITES_IN_FLIGHT` at a time). A write that
//! follows one that was not full starts `WRITE_BATCH_WAIT_MS` after it, so
//! under steady traffic it carries that long's requests; a request after a
//! quiet spell is written at once, and a full batch goes at once. The
//! queue is bounded: when MongoDB is slow, callers wait, then time out.
//!
//! A request may carry its caller's deadline (`grpc-timeout`): a request
//! whose deadline has passed is dropped before its insert, and a batch's
//! transaction does not commit past the earliest deadline in it, so the
//! answer `DEADLINE_EXCEEDED` always means nothing of the request was stored.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use events::Reported;
use runtime::batch::{Limits, Unanswered};
use store::Writer;

use crate::config::WriterConfig;
use tokio::time::Instant;

/// Ids the write found already stored; every other id in the job is stored.
pub type Duplicates = Arc<HashSet<String>>;

/// Why a write did not store its cases.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Nothing was stored; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's deadline passed before the commit: nothing was stored.
    #[error("the caller's deadline passed before the cases were committed; nothing was stored")]
    DeadlinePassed,
    /// A commit was attempted and its result is unknown: the cases may be stored.
    #[error("MongoDB did not confirm the commit; the cases may be stored: {0}")]
    Unknown(String),
}

/// One `Write` call's cases, waiting for the next bulk insert.
struct QueuedCases {
    cases: Vec<Reported>,
    traceparent: Option<String>,
    commit_by: Option<Instant>,
}

type Outcome = Result<Duplicates, WriteError>;

#[derive(Clone)]
pub struct Batcher {
    writes: runtime::batch::Batcher<QueuedCases, Outcome>,
}

impl Batcher {
    /// Starts the batching task; it ends once every `Batcher` handle is gone
    /// and the queue is written (so SIGTERM drains it).
    pub fn start(ctx: &runtime::Context, writer: Writer, config: &WriterConfig) -> Batcher {
        let limits = Limits {
            max_items: usize::MAX,
            max_weight: config.batch_max,
            // Paced, not held: a request after a quiet spell is written at
            // once; under steady traffic a write carries `batch_wait` of them.
            pace: config.batch_wait,
            in_flight: config.writes_in_flight,
            queue: 1024,
        };
        let deadline = config.write_deadline;
        let (writes, task) = runtime::batch::Batcher::new(limits, move |requests| {
            write(writer.clone(), requests, deadline)
        });
        ctx.tasks.spawn(task);
        Batcher { writes }
    }

    /// Stores `cases` in the next batch, committed before `commit_by` or not at all.
    pub async fn write(
        &self,
        cases: Vec<Reported>,
        traceparent: Option<String>,
        commit_by: Option<Instant>,
    ) -> Result<Duplicates, WriteError> {
        let weight = cases.len();
        let request = QueuedCases {
            cases,
            traceparent,
            commit_by,
        };
        let answer = match self.writes.submit(request, weight, commit_by).await {
            // The write does not commit past `commit_by`: its answer comes soon.
            Err(Unanswered::InFlight(pending)) => pending.outcome().await,
            other => other,
        };
        match answer {
            Ok(outcome) => outcome,
            // Never written: its caller gave up while it was queued, or the
            // writer is stopping.
            Err(Unanswered::NotSent) if commit_by.is_some_and(|t| Instant::now() >= t) => {
                metrics::counter!("writer_requests_expired_total").increment(1);
                Err(WriteError::DeadlinePassed)
            }
            Err(Unanswered::NotSent) => Err(WriteError::Unavailable(
                "the writer is shutting down".to_owned(),
            )),
            Err(Unanswered::InFlight(_) | Unanswered::Lost) => Err(WriteError::Unknown(
                "the write ended without an answer".to_owned(),
            )),
        }
    }
}

/// One bulk insert of the requests' cases; each request gets the outcome.
async fn write(writer: Writer, requests: Vec<QueuedCases>, deadline: Duration) -> Vec<Outcome> {
    // A request whose deadline passed while the batch gathered is not written.
    let now = Instant::now();
    let live: Vec<bool> = requests
        .iter()
        .map(|r| r.commit_by.is_none_or(|t| t > now))
        .collect();
    let all: Vec<Reported> = requests
        .iter()
        .zip(&live)
        .filter(|(_, live)| **live)
        .flat_map(|(r, _)| r.cases.iter().cloned())
        .collect();
    let result = if all.is_empty() {
        Ok(Duplicates::default())
    } else {
        let traceparent = requests.iter().find_map(|r| r.traceparent.clone());
        let commit_by = requests
            .iter()
            .zip(&live)
            .filter(|(_, live)| **live)
            .filter_map(|(r, _)| r.commit_by)
            .min();
        match writer
            .write_by(&all, traceparent.as_deref(), deadline, commit_by)
            .await
        {
            Ok(outcome) => Ok(Arc::new(
                outcome.duplicates.into_iter().collect::<HashSet<_>>(),
            )),
            Err(e) if store::cases::is_deadline_passed(&e) => Err(WriteError::DeadlinePassed),
            Err(e) if e.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT) => {
                Err(WriteError::Unknown(e.to_string()))
            }
            Err(e) => Err(WriteError::Unavailable(format!(
                "MongoDB is unavailable: {e}"
            ))),
        }
    };
    live.into_iter()
        .map(|live| {
            if live {
                result.clone()
            } else {
                metrics::counter!("writer_requests_expired_total").increment(1);
                Err(WriteError::DeadlinePassed)
            }
        })
        .collect()
}
