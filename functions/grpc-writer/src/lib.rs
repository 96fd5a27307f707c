//! grpc-writer: the gRPC write path. Serves `covidrealtime.writer.v1.CaseWriter`
//! (unary and client-streaming) over h2c on `$PORT`, next to the contract's
//! HTTP routes; stores each case once (the event id is the key) and reports
//! per case whether it was stored, a duplicate, or rejected.

pub mod batcher;
pub mod config;
pub mod limit;

use events::proto::writer::case_writer_server::{CaseWriter, CaseWriterServer};
use events::proto::writer::{WriteRequest, WriteResponse, WriteResult, WriteStatus};
use events::{Reported, WritePath};
use futures::StreamExt;
use runtime::{Context, Routes};
use tonic::{Request, Response, Status, Streaming};

pub use batcher::{Batcher, WriteError};
pub use config::WriterConfig;
pub use limit::CappedBody;

/// grpc-writer, declared once: its name, its variables ([`WriterConfig`]) and its routes.
pub struct Function;

impl runtime::Function for Function {
    const NAME: &'static str = "grpc-writer";
    type Config = WriterConfig;

    fn routes(ctx: Context, config: WriterConfig) -> impl Future<Output = anyhow::Result<Routes>> {
        routes(ctx, config)
    }
}

pub async fn routes(ctx: Context, config: WriterConfig) -> anyhow::Result<Routes> {
    let mongo = store::Mongo::connect_lazy(&config.mongo).await?;
    let writer = store::Writer::new(&ctx, store::CaseStore::new(mongo.clone()), WritePath::Grpc);
    let batcher = Batcher::start(&ctx, writer, &config);
    let max_message = ctx.config.body_limit.max(4 << 20);
    let service =
        CaseWriterServer::new(WriterService { batcher }).max_decoding_message_size(max_message);
    let max_events = config.max_events;
    let router = tonic::service::Routes::new(service)
        .into_axum_router()
        .layer(tower::util::MapRequestLayer::new(
            move |req: axum::extract::Request| {
                req.map(|b| axum::body::Body::new(CappedBody::new(b, max_events, max_message)))
            },
        ));
    Ok(Routes::new(router).ready_when("mongodb", mongo.ready_check()))
}

pub struct WriterService {
    batcher: Batcher,
}

/// The instant the caller's `grpc-timeout` header gives, less a fifth of it
/// (100 ms to 1 s): a write must have committed by then, so that the answer
/// "not stored" reaches the caller before it gives up on its own.
fn commit_by<T>(req: &Request<T>) -> Option<tokio::time::Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    let margin = (d / 5).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    );
    Some(tokio::time::Instant::now() + d.saturating_sub(margin))
}

fn traceparent<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(|t| runtime::TraceContext::continue_from(Some(t)).to_string())
}

impl WriterService {
    /// Decodes every event, then stores them all in the next batch, or none:
    /// one invalid event rejects the whole request, so no valid half of a
    /// refused request is ever stored. One result per event, in order.
    async fn write_batch(
        &self,
        req: WriteRequest,
        traceparent: Option<String>,
        commit_by: Option<tokio::time::Instant>,
    ) -> Result<Vec<WriteResult>, Status> {
        let ids: Vec<String> = req.events.iter().map(|e| e.id.clone()).collect();
        let mut valid = Vec::with_capacity(req.events.len());
        let mut refusal: Option<(usize, String)> = None;
        for (i, pe) in req.events.into_iter().enumerate() {
            match events::proto::from_proto(pe).and_then(|e| Reported::from_event(&e)) {
                Ok(r) => valid.push(r),
                Err(e) => {
                    refusal.get_or_insert((i, e.0));
                }
            }
        }
        if let Some((bad, error)) = refusal {
            return Ok(ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| WriteResult {
                    error: if i == bad {
                        error.clone()
                    } else {
                        format!(
                            "not stored: event {bad} of the same request was rejected ({error})"
                        )
                    },
                    id,
                    status: WriteStatus::Rejected as i32,
                })
                .collect());
        }
        if valid.is_empty() {
            return Ok(Vec::new());
        }
        let duplicates = self
            .batcher
            .write(valid, traceparent, commit_by)
            .await
            .map_err(|e| match e {
                WriteError::DeadlinePassed => Status::deadline_exceeded(e.to_string()),
                WriteError::Unknown(_) => Status::unknown(e.to_string()),
                WriteError::Unavailable(_) => Status::unavailable(e.to_string()),
            })?;
        Ok(ids
            .into_iter()
            .map(|id| WriteResult {
                status: if duplicates.contains(&id) {
                    WriteStatus::Duplicate as i32
                } else {
                    WriteStatus::Stored as i32
                },
                id,
                error: String::new(),
            })
            .collect())
    }
}

#[tonic::async_trait]
impl CaseWriter for WriterService {
    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let (tp, by) = (traceparent(&req), commit_by(&req));
        let results = self.write_batch(req.into_inner(), tp, by).await?;
        Ok(Response::new(WriteResponse { results }))
    }

    async fn write_stream(
        &self,
        req: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let (tp, by) = (traceparent(&req), commit_by(&req));
        let mut stream = req.into_inner();
        let mut results = Vec::new();
        while let Some(msg) = stream.next().await {
            results.extend(self.write_batch(msg?, tp.clone(), by).await?);
        }
        Ok(Response::new(WriteResponse { results }))
    }
}
