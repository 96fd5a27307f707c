//! The gRPC route's calls, shared by concurrent requests (a
//! [`runtime::batch::Batcher`]). Every request's cases join a queue; a call
//! takes whatever is queued (up to [`MAX_CASES`]) into one `Write`, with at
//! most [`MAX_CALLS`] calls in flight. Nothing waits on a timer: with no
//! call in flight a request goes out at once, and under load the queue fills
//! while calls are busy, so one call carries many requests. Single-case POSTs then cost the writer one
//! call per batch instead of one per case. Each request gets its own slice
//! of the per-case results, or the call's error.
//!
//! A request whose deadline passes while it is still queued is taken out of
//! the queue and never sent: its caller can say for certain that nothing was
//! stored. Once sent, the call carries the earliest deadline of its requests
//! (`grpc-timeout`), and grpc-writer does not commit past it.

use events::proto::writer::{self, WriteRequest};
use events::proto::{ce, writer::case_writer_client::CaseWriterClient};
use runtime::batch::{self, Batcher, Limits};
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

/// One request's events, waiting for a call.
struct QueuedWrite {
    events: Vec<ce::CloudEvent>,
    traceparent: String,
    deadline: Instant,
}

#[derive(Clone)]
pub struct GrpcBatcher {
    calls: Batcher<QueuedWrite, Reply>,
    client: Client,
}

impl GrpcBatcher {
    /// Starts the sender task; it ends when the last handle is dropped.
    pub fn start(client: Client) -> GrpcBatcher {
        let limits = Limits {
            max_items: usize::MAX,
            max_weight: MAX_CASES,
            pace: std::time::Duration::ZERO,
            in_flight: MAX_CALLS,
            queue: 4096,
        };
        let sender = client.clone();
        let (calls, task) = Batcher::new(limits, move |requests| call(sender.clone(), requests));
        tokio::spawn(task);
        GrpcBatcher { calls, client }
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
        let weight = events.len();
        let request = QueuedWrite {
            events,
            traceparent: traceparent.to_owned(),
            deadline,
        };
        match self.calls.submit(request, weight, Some(deadline)).await {
            Ok(reply) => Ok(reply),
            Err(batch::Unanswered::NotSent) => Err(Unanswered::NotSent),
            // The call ended without an answer for it, or has not answered yet.
            Err(batch::Unanswered::InFlight(_) | batch::Unanswered::Lost) => {
                Err(Unanswered::InFlight)
            }
        }
    }
}

/// One `Write` call for the requests; each gets its own slice of the results.
async fn call(mut client: Client, mut requests: Vec<QueuedWrite>) -> Vec<Reply> {
    let counts: Vec<usize> = requests.iter().map(|r| r.events.len()).collect();
    let mut req = tonic::Request::new(WriteRequest {
        events: requests
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.events))
            .collect(),
    });
    if let Ok(v) = requests[0].traceparent.parse() {
        req.metadata_mut().insert("traceparent", v);
    }
    // The earliest caller's deadline travels with the call (grpc-timeout).
    if let Some(deadline) = requests.iter().map(|r| r.deadline).min() {
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    metrics::histogram!("ingest_grpc_call_requests").record(requests.len() as f64);
    match client.write(req).await {
        Ok(resp) => {
            let mut results = resp.into_inner().results.into_iter();
            counts
                .into_iter()
                .map(|n| Ok(results.by_ref().take(n).collect()))
                .collect()
        }
        Err(status) => counts.iter().map(|_| Err(status.clone())).collect(),
    }
}
