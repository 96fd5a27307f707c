//! The gRPC route's calls, shared by concurrent requests. Every request's
//! cases join a queue; a sender task takes whatever is queued (up to
//! [`MAX_CASES`]) into one `Write` call, with at most [`MAX_CALLS`] calls in
//! flight. Nothing waits on a timer: with no call in flight a request goes
//! out at once, and under load the queue fills while calls are busy, so one
//! call carries many requests. Single-case POSTs then cost the writer one
//! call per batch instead of one per case. Each request gets its own slice
//! of the per-case results, or the call's error.
//!
//! A request whose deadline passes while it is still queued is taken out of
//! the queue and never sent: its caller can say for certain that nothing was
//! stored. Once sent, the call carries the earliest deadline of its requests
//! (`grpc-timeout`), and grpc-writer does not commit past it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use events::proto::writer::{self, WriteRequest};
use events::proto::{ce, writer::case_writer_client::CaseWriterClient};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use runtime::auth::GrpcBearer;

pub type Client = CaseWriterClient<InterceptedService<Channel, GrpcBearer>>;

/// Most cases in one call (a request larger than this still goes whole).
pub const MAX_CASES: usize = 1000;
/// Most calls in flight at once.
pub const MAX_CALLS: usize = 8;

type Reply = Result<Vec<writer::WriteResult>, tonic::Status>;

/// What became of a request that got no answer by its deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Still queued: taken out, never sent. Nothing was stored.
    NotSent,
    /// In a call that has not answered: the cases may be stored.
    InFlight,
}

const QUEUED: u8 = 0;
const SENT: u8 = 1;
const WITHDRAWN: u8 = 2;

struct QueuedWrite {
    events: Vec<ce::CloudEvent>,
    traceparent: String,
    deadline: Instant,
    /// QUEUED until the sender takes it (SENT) or its caller gives up first (WITHDRAWN).
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Reply>,
}

/// Takes a queued job back; false when the sender has already taken it.
fn withdraw(state: &AtomicU8) -> bool {
    state
        .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

struct Withdraw(Arc<AtomicU8>);

impl Drop for Withdraw {
    fn drop(&mut self) {
        withdraw(&self.0);
    }
}

impl QueuedWrite {
    /// The sender takes the job unless its caller has withdrawn it.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, SENT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[derive(Clone)]
pub struct GrpcBatcher {
    tx: mpsc::Sender<QueuedWrite>,
    client: Client,
}

impl GrpcBatcher {
    /// Starts the sender task; it ends when the last handle is dropped.
    pub fn start(client: Client) -> GrpcBatcher {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(rx, client.clone()));
        GrpcBatcher { tx, client }
    }

    /// The client itself, for calls that must not be grouped (`/readyz`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Writes `events` in the next call; their results in order, or, at
    /// `deadline`, what became of the unanswered request.
    pub async fn write(
        &self,
        events: Vec<ce::CloudEvent>,
        traceparent: &str,
        deadline: Instant,
    ) -> Result<Reply, Unanswered> {
        let (reply, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        // A caller that goes away (its client disconnected) withdraws a job
        // that is still queued, as one whose deadline passed does.
        let _withdraw = Withdraw(state.clone());
        let job = QueuedWrite {
            events,
            traceparent: traceparent.to_owned(),
            deadline,
            state: state.clone(),
            reply,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(Err(tonic::Status::unavailable("ingest is shutting down"))),
            Err(_) => return Err(Unanswered::NotSent),
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Ok(Err(tonic::Status::unavailable("the call was abandoned"))),
            Err(_) if withdraw(&state) => Err(Unanswered::NotSent),
            Err(_) => Err(Unanswered::InFlight),
        }
    }
}

async fn run(mut rx: mpsc::Receiver<QueuedWrite>, client: Client) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    while let Some(first) = rx.recv().await {
        // Wait for a free call slot first: while every slot is busy, more
        // requests queue up and ride along in this call.
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = Vec::new();
        let mut size = 0;
        if first.take() {
            size = first.events.len();
            jobs.push(first);
        }
        while size < MAX_CASES {
            match rx.try_recv() {
                Ok(job) if job.take() => {
                    size += job.events.len();
                    jobs.push(job);
                }
                // Withdrawn by its caller while queued: dropped unsent.
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let mut client = client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            call(&mut client, jobs).await;
        });
    }
}

async fn call(client: &mut Client, mut jobs: Vec<QueuedWrite>) {
    let counts: Vec<usize> = jobs.iter().map(|j| j.events.len()).collect();
    let mut req = tonic::Request::new(WriteRequest {
        events: jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.events))
            .collect(),
    });
    if let Ok(v) = jobs[0].traceparent.parse() {
        req.metadata_mut().insert("traceparent", v);
    }
    // The earliest caller's deadline travels with the call (grpc-timeout).
    if let Some(deadline) = jobs.iter().map(|j| j.deadline).min() {
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    metrics::histogram!("ingest_grpc_call_requests").record(jobs.len() as f64);
    match client.write(req).await {
        Ok(resp) => {
            let mut results = resp.into_inner().results.into_iter();
            for (job, n) in jobs.into_iter().zip(counts) {
                let mine: Vec<_> = results.by_ref().take(n).collect();
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(status) => {
            for job in jobs {
                let _ = job.reply.send(Err(status.clone()));
            }
        }
    }
}
