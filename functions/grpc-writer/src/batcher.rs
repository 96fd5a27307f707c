//! Groups concurrent write requests into one bulk insert. The first request
//! waits at most `batch_wait` for others; a full batch goes at once. The
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
use store::Writer;
use tokio::sync::{mpsc, oneshot};
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

struct QueuedCases {
    cases: Vec<Reported>,
    traceparent: Option<String>,
    commit_by: Option<Instant>,
    reply: oneshot::Sender<Result<Duplicates, WriteError>>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<QueuedCases>,
}

impl Batcher {
    /// Starts the batching task; it ends once every `Batcher` handle is gone
    /// and the queue is written (so SIGTERM drains it).
    pub fn start(
        ctx: &runtime::Context,
        writer: Writer,
        max: usize,
        wait: Duration,
        deadline: Duration,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(1024);
        ctx.tasks.spawn(run(rx, writer, max, wait, deadline));
        Batcher { tx }
    }

    /// Stores `cases` in the next batch, committed before `commit_by` or not at all.
    pub async fn write(
        &self,
        cases: Vec<Reported>,
        traceparent: Option<String>,
        commit_by: Option<Instant>,
    ) -> Result<Duplicates, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(QueuedCases {
                cases,
                traceparent,
                commit_by,
                reply,
            })
            .await
            .map_err(|_| WriteError::Unavailable("the writer is shutting down".to_owned()))?;
        rx.await.map_err(|_| {
            WriteError::Unavailable("the writer stopped before answering".to_owned())
        })?
    }
}

async fn run(
    mut rx: mpsc::Receiver<QueuedCases>,
    writer: Writer,
    max: usize,
    wait: Duration,
    deadline: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut size = first.cases.len();
        let mut jobs = vec![first];
        let until = tokio::time::Instant::now() + wait;
        while size < max {
            let job = match rx.try_recv() {
                Ok(j) => j,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(j)) => j,
                        _ => break,
                    }
                }
            };
            size += job.cases.len();
            jobs.push(job);
        }
        // A request whose caller has given up is not written at all.
        let now = Instant::now();
        let (jobs, expired): (Vec<QueuedCases>, Vec<QueuedCases>) = jobs
            .into_iter()
            .partition(|j| j.commit_by.is_none_or(|t| t > now));
        for job in expired {
            metrics::counter!("writer_requests_expired_total").increment(1);
            let _ = job.reply.send(Err(WriteError::DeadlinePassed));
        }
        if jobs.is_empty() {
            continue;
        }
        let all: Vec<Reported> = jobs.iter().flat_map(|j| j.cases.iter().cloned()).collect();
        let traceparent = jobs.iter().find_map(|j| j.traceparent.clone());
        let commit_by = jobs.iter().filter_map(|j| j.commit_by).min();
        let result = match writer
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
        };
        for job in jobs {
            let _ = job.reply.send(result.clone());
        }
    }
}
