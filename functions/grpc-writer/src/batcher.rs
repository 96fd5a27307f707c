//! Groups concurrent write requests into one bulk insert. The first request
//! waits at most `batch_wait` for others; a full batch goes at once. The
//! queue is bounded: when MongoDB is slow, callers wait, then time out.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use events::Reported;
use store::Writer;
use tokio::sync::{mpsc, oneshot};

/// Ids the write found already stored; every other id in the job is stored.
pub type Duplicates = Arc<HashSet<String>>;

struct Job {
    cases: Vec<Reported>,
    traceparent: Option<String>,
    reply: oneshot::Sender<Result<Duplicates, String>>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
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

    /// Stores `cases` in the next batch.
    pub async fn write(
        &self,
        cases: Vec<Reported>,
        traceparent: Option<String>,
    ) -> Result<Duplicates, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                cases,
                traceparent,
                reply,
            })
            .await
            .map_err(|_| "the writer is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the writer stopped before answering".to_owned())?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
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
        let all: Vec<Reported> = jobs.iter().flat_map(|j| j.cases.iter().cloned()).collect();
        let traceparent = jobs.iter().find_map(|j| j.traceparent.clone());
        let result = match writer.write(&all, traceparent.as_deref(), deadline).await {
            Ok(outcome) => Ok(Arc::new(
                outcome.duplicates.into_iter().collect::<HashSet<_>>(),
            )),
            Err(e) => Err(format!("MongoDB is unavailable: {e}")),
        };
        for job in jobs {
            let _ = job.reply.send(result.clone());
        }
    }
}
