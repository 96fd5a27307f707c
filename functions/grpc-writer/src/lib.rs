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

pub use batcher::Batcher;
pub use config::WriterConfig;
pub use limit::CappedBody;

pub async fn routes(ctx: Context) -> anyhow::Result<Routes> {
    routes_with(
        ctx,
        WriterConfig::from_lookup(&runtime::config::env_lookup)?,
    )
    .await
}

pub async fn routes_with(ctx: Context, config: WriterConfig) -> anyhow::Result<Routes> {
    let mongo = store::Mongo::connect_lazy(&config.mongo).await?;
    let writer = store::Writer::new(&ctx, store::CaseStore::new(mongo.clone()), WritePath::Grpc);
    let batcher = Batcher::start(
        &ctx,
        writer,
        config.batch_max,
        config.batch_wait,
        config.write_deadline,
    );
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

fn traceparent<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(|t| runtime::TraceContext::continue_from(Some(t)).to_string())
}

impl WriterService {
    /// Decodes, stores the valid events in the next batch, and answers one
    /// result per event in order. Invalid events are rejected, not stored.
    async fn write_batch(
        &self,
        req: WriteRequest,
        traceparent: Option<String>,
    ) -> Result<Vec<WriteResult>, Status> {
        let mut results: Vec<WriteResult> = Vec::with_capacity(req.events.len());
        let mut valid = Vec::with_capacity(req.events.len());
        for pe in req.events {
            let id = pe.id.clone();
            let decoded = events::proto::from_proto(pe).and_then(|e| Reported::from_event(&e));
            match decoded {
                Ok(r) => {
                    valid.push(r);
                    results.push(WriteResult {
                        id,
                        status: WriteStatus::Stored as i32,
                        error: String::new(),
                    });
                }
                Err(e) => results.push(WriteResult {
                    id,
                    status: WriteStatus::Rejected as i32,
                    error: e.0,
                }),
            }
        }
        if valid.is_empty() {
            return Ok(results);
        }
        let duplicates = self
            .batcher
            .write(valid, traceparent)
            .await
            .map_err(Status::unavailable)?;
        for r in &mut results {
            if r.status == WriteStatus::Stored as i32 && duplicates.contains(&r.id) {
                r.status = WriteStatus::Duplicate as i32;
            }
        }
        Ok(results)
    }
}

#[tonic::async_trait]
impl CaseWriter for WriterService {
    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let tp = traceparent(&req);
        let results = self.write_batch(req.into_inner(), tp).await?;
        Ok(Response::new(WriteResponse { results }))
    }

    async fn write_stream(
        &self,
        req: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let tp = traceparent(&req);
        let mut stream = req.into_inner();
        let mut results = Vec::new();
        while let Some(msg) = stream.next().await {
            results.extend(self.write_batch(msg?, tp.clone()).await?);
        }
        Ok(Response::new(WriteResponse { results }))
    }
}
