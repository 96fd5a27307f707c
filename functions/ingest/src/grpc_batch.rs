//! The gRPC route's calls, shared by concurrent requests. Every request's
//! cases join a queue; a sender task takes whatever is queued (up to
//! [`MAX_CASES`]) into one `Write` call, with at most [`MAX_CALLS`] calls in
//! flight. Nothing waits on a timer: with no call in flight a request goes
//! out at once, and under load the queue fills while calls are busy, so one
//! call carries many requests. Single-case POSTs then cost the writer one
//! call per batch instead of one per case. Each request gets its own slice
//! of the per-case results, or the call's error.

use std::sync::Arc;

use events::proto::writer::{self, WriteRequest};
use events::proto::{ce, writer::case_writer_client::CaseWriterClient};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::access::GrpcBearer;

pub type Client = CaseWriterClient<InterceptedService<Channel, GrpcBearer>>;

/// Most cases in one call (a request larger than this still goes whole).
pub const MAX_CASES: usize = 1000;
/// Most calls in flight at once.
pub const MAX_CALLS: usize = 8;

type Reply = Result<Vec<writer::WriteResult>, tonic::Status>;

struct Job {
    events: Vec<ce::CloudEvent>,
    traceparent: String,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct GrpcBatcher {
    tx: mpsc::Sender<Job>,
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

    /// Writes `events` in the next call; their results in order.
    pub async fn write(&self, events: Vec<ce::CloudEvent>, traceparent: &str) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                events,
                traceparent: traceparent.to_owned(),
                reply,
            })
            .await
            .map_err(|_| tonic::Status::unavailable("ingest is shutting down"))?;
        rx.await
            .map_err(|_| tonic::Status::unavailable("the call was abandoned"))?
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, client: Client) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    while let Some(first) = rx.recv().await {
        // Wait for a free call slot first: while every slot is busy, more
        // requests queue up and ride along in this call.
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let mut size = first.events.len();
        let mut jobs = vec![first];
        while size < MAX_CASES {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut client = client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            call(&mut client, jobs).await;
        });
    }
}

async fn call(client: &mut Client, mut jobs: Vec<Job>) {
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
