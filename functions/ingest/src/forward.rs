//! Sending accepted cases on, one way per route. A batch goes in as few round
//! trips as the route allows: one gRPC call (shared with concurrent requests,
//! see `grpc_batch`), one script that checks the Stream's bound and XADDs the
//! batch, or concurrent POSTs to an HTTP sink.

use std::time::Duration;

use events::proto::{to_proto, writer};
use events::{Event, Reported};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use runtime::{Context, Sink};
use tonic::transport::Endpoint;

use crate::config::Route;
use crate::grpc_batch::{GrpcBatcher, Unanswered};
use runtime::auth::GrpcBearer;

/// Why the next hop did not take the cases.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ForwardError {
    pub message: String,
    /// The next hop may have stored the cases (it was sent them and did not
    /// answer, or the answer was lost). When false, nothing was stored.
    pub outcome_unknown: bool,
}

impl ForwardError {
    fn refused(message: String) -> ForwardError {
        ForwardError {
            message,
            outcome_unknown: false,
        }
    }

    fn unknown(message: String) -> ForwardError {
        ForwardError {
            message,
            outcome_unknown: true,
        }
    }
}

/// Whether a gRPC error leaves the outcome open: the writer's own answers
/// say what happened, except `UNKNOWN`; a call that broke or timed out on
/// the way may have been served, unless it never connected.
fn grpc_outcome_unknown(s: &tonic::Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    if cause.is_none() {
        // Sent by the writer, or tonic's own "Timeout expired" (CANCELLED).
        return matches!(s.code(), tonic::Code::Unknown | tonic::Code::Cancelled);
    }
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return false;
        }
        cause = e.source();
    }
    true
}

/// Whether a Redis error leaves the outcome open: an error reply means the
/// script did not run; a connection that broke mid-call may have run it.
fn redis_outcome_unknown(e: &redis::RedisError) -> bool {
    !e.is_connection_refusal() && (e.is_io_error() || e.is_timeout() || e.is_connection_dropped())
}

pub enum Forwarder {
    Http(Box<Sink>),
    Grpc(GrpcBatcher),
    Redis {
        conn: ConnectionManager,
        stream: String,
        max_backlog: usize,
        max_backlog_bytes: u64,
        append: redis::Script,
    },
}

/// Appends a batch to the Stream unless that would take the Stream past its
/// bounds, in entries or in bytes. A script runs alone, so the batch enters
/// whole or not at all and concurrent ingests cannot overshoot between the
/// check and the append. XLEN is O(1); MEMORY USAGE samples 5 nodes of the
/// Stream: both cost nothing next to the XADDs.
/// KEYS[1]: the Stream; ARGV[1]: the entry bound; ARGV[2]: the byte bound;
/// ARGV[3]: the entry field; ARGV[4..]: the entries.
/// Returns {appended (0 or 1), Stream length, Stream bytes before}.
const APPEND_BOUNDED: &str = r#"
local bound = tonumber(ARGV[1])
local bytes_bound = tonumber(ARGV[2])
local len = redis.call('XLEN', KEYS[1])
local bytes = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', '5') or 0
local n = #ARGV - 3
local adding = 0
for i = 4, #ARGV do adding = adding + #ARGV[i] end
if len + n > bound or bytes + adding > bytes_bound then return {0, len, bytes} end
for i = 4, #ARGV do redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[i]) end
return {1, len + n, bytes}
"#;

impl Forwarder {
    /// Sets up the route without connecting (connections are lazy).
    pub fn new(ctx: &Context, route: &Route, timeout: Duration) -> anyhow::Result<Forwarder> {
        Ok(match route {
            Route::Http(url) => Forwarder::Http(Box::new(ctx.sink_to(url))),
            Route::Grpc { writer_url } => {
                let channel = Endpoint::from_shared(writer_url.clone())
                    .map_err(|e| {
                        anyhow::anyhow!("GRPC_WRITER_URL={writer_url:?} is not a URL: {e}")
                    })?
                    .connect_timeout(Duration::from_secs(1).min(timeout))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .connect_lazy();
                let bearer = GrpcBearer::new(ctx.config.internal_token.as_ref());
                Forwarder::Grpc(GrpcBatcher::start(
                    writer::case_writer_client::CaseWriterClient::with_interceptor(channel, bearer),
                ))
            }
            Route::Redis {
                url,
                key_prefix,
                max_backlog,
                max_backlog_bytes,
            } => Forwarder::Redis {
                conn: runtime::redis::connect_lazy(url)?,
                stream: store::Keys::new(key_prefix.clone()).stream(),
                max_backlog: *max_backlog,
                max_backlog_bytes: *max_backlog_bytes,
                append: redis::Script::new(APPEND_BOUNDED),
            },
        })
    }

    /// Hands `events` (all `case.reported`) to the next hop by `deadline`;
    /// all, or an error that says whether any may have been stored.
    pub async fn forward(
        &self,
        events: Vec<Event>,
        traceparent: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ForwardError> {
        let sent = match self {
            Forwarder::Grpc(batcher) => {
                return to_grpc(batcher, &events, traceparent, deadline).await;
            }
            Forwarder::Http(sink) => {
                tokio::time::timeout_at(deadline, to_sink(sink, events, traceparent)).await
            }
            Forwarder::Redis {
                conn,
                stream,
                max_backlog,
                max_backlog_bytes,
                append,
            } => {
                let bounds = (*max_backlog, *max_backlog_bytes);
                let append = to_stream(conn, append, stream, bounds, &events);
                tokio::time::timeout_at(deadline, append).await
            }
        };
        sent.unwrap_or_else(|_| {
            Err(ForwardError::unknown(
                "the next hop did not answer in time (FORWARD_TIMEOUT_MS); it may have stored the cases"
                    .to_owned(),
            ))
        })
    }

    /// Whether the next hop answers, for `/readyz`.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Forwarder::Http(_) => Ok(()),
            Forwarder::Grpc(batcher) => {
                // An empty batch is a cheap round trip that proves the writer answers.
                batcher
                    .client()
                    .write(writer::WriteRequest { events: vec![] })
                    .await
                    .map(|_| ())
                    .map_err(|s| s.message().to_owned())
            }
            Forwarder::Redis { conn, .. } => runtime::redis::ping(&mut conn.clone()).await,
        }
    }
}

/// `case.reported` events for `reported`, stamped by this source.
pub fn to_events(reported: &[Reported], source: &str) -> Vec<Event> {
    reported.iter().map(|r| r.to_event(source)).collect()
}

async fn to_grpc(
    batcher: &GrpcBatcher,
    events: &[Event],
    traceparent: &str,
    deadline: tokio::time::Instant,
) -> Result<(), ForwardError> {
    let n = events.len();
    let results = match batcher
        .write(events.iter().map(to_proto).collect(), traceparent, deadline)
        .await
    {
        Ok(Ok(results)) => results,
        Ok(Err(s)) => {
            let message = format!(
                "the gRPC writer did not store the cases: {} ({:?})",
                s.message(),
                s.code()
            );
            return Err(if grpc_outcome_unknown(&s) {
                ForwardError::unknown(message)
            } else {
                ForwardError::refused(message)
            });
        }
        Err(Unanswered::NotSent) => {
            return Err(ForwardError::refused(
                "the gRPC writer was busy until the deadline (FORWARD_TIMEOUT_MS); the cases were not sent"
                    .to_owned(),
            ));
        }
        Err(Unanswered::InFlight) => {
            return Err(ForwardError::unknown(
                "the gRPC writer did not answer in time (FORWARD_TIMEOUT_MS); it may have stored the cases"
                    .to_owned(),
            ));
        }
    };
    if results.len() != n {
        return Err(ForwardError::unknown(format!(
            "the gRPC writer answered {} results for {n} cases",
            results.len()
        )));
    }
    // grpc-writer stores a request whole or not at all.
    if let Some(r) = results
        .iter()
        .find(|r| r.status == writer::WriteStatus::Rejected as i32)
    {
        return Err(ForwardError::refused(format!(
            "the gRPC writer rejected case {}: {}",
            r.id, r.error
        )));
    }
    Ok(())
}

async fn to_sink(sink: &Sink, events: Vec<Event>, traceparent: &str) -> Result<(), ForwardError> {
    let failures: Vec<String> = match <[Event; 1]>::try_from(events) {
        // A single case (the common request) needs no fan-out.
        Ok([event]) => sink
            .send(&event, Some(traceparent))
            .await
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect(),
        Err(events) => {
            futures::stream::iter(events)
                .map(|e| async move { sink.send(&e, Some(traceparent)).await })
                .buffer_unordered(32)
                .filter_map(|r| async move { r.err().map(|e| e.to_string()) })
                .collect()
                .await
        }
    };
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(ForwardError::refused(format!(
            "the sink refused {} of the cases: {first}",
            failures.len()
        ))),
    }
}

async fn to_stream(
    conn: &ConnectionManager,
    append: &redis::Script,
    stream: &str,
    (max_backlog, max_backlog_bytes): (usize, u64),
    events: &[Event],
) -> Result<(), ForwardError> {
    let mut script = append.key(stream);
    script
        .arg(max_backlog)
        .arg(max_backlog_bytes)
        .arg(events::redis::STREAM_FIELD);
    for e in events {
        script.arg(events::redis::encode(e));
    }
    let (appended, len, bytes): (u8, u64, u64) =
        script.invoke_async(&mut conn.clone()).await.map_err(|e| {
            let message = format!("Redis did not take the cases: {e}");
            if redis_outcome_unknown(&e) {
                ForwardError::unknown(message)
            } else {
                ForwardError::refused(message)
            }
        })?;
    metrics::gauge!("ingest_stream_backlog").set(len as f64);
    if appended == 0 {
        // Back-pressure: the consumer is behind or MongoDB is away.
        return Err(ForwardError::refused(format!(
            "the Redis Stream already holds {len} cases ({bytes} bytes) not yet stored \
             (MAX_STREAM_BACKLOG={max_backlog}, MAX_STREAM_BACKLOG_BYTES={max_backlog_bytes})"
        )));
    }
    Ok(())
}
