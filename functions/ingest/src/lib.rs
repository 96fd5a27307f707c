//! ingest: `POST /cases` takes one JSON case, a JSON array (a batch) or NDJSON,
//! gives every valid case its CloudEvent id and sends it on through the
//! configured route. A batch is all-or-nothing. The request path is in
//! `accept`; who may post is in `access`; retried requests keep their ids
//! through `idempotency`.

mod accept;
pub mod access;
pub mod body;
pub mod config;
pub mod forward;
pub mod grpc_batch;
pub mod idempotency;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use runtime::{Context, Routes};

pub use accept::Accepted;
pub use config::{IngestConfig, Route};
use forward::Forwarder;
use idempotency::KeyStore;

/// ingest, declared once: its name, its variables ([`IngestConfig`]) and its routes.
pub struct Function;

impl runtime::Function for Function {
    const NAME: &'static str = "ingest";
    type Config = IngestConfig;

    fn routes(ctx: Context, config: IngestConfig) -> impl Future<Output = anyhow::Result<Routes>> {
        routes(ctx, config)
    }
}

struct Ingest {
    forwarder: Forwarder,
    keys: KeyStore,
    log: Option<store::ingest_log::LogSender>,
    config: IngestConfig,
    source: String,
    revision: String,
    route: &'static str,
}

/// HELP texts of ingest's metrics.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ingest_cases_accepted_total",
        "Cases answered 202 (handed to the next hop), by route"
    );
    describe_counter!(
        "ingest_requests_refused_total",
        "POST /cases requests refused, by reason"
    );
    describe_counter!(
        "ingest_idempotent_replays_total",
        "Requests with an Idempotency-Key seen before, answered from the first answer"
    );
    describe_gauge!(
        "ingest_stream_backlog",
        "Entries in the Redis Stream (cases not yet stored) after the last append"
    );
    describe_histogram!(
        "ingest_grpc_call_requests",
        "Requests whose cases shared one gRPC Write call"
    );
}

pub async fn routes(ctx: Context, config: IngestConfig) -> anyhow::Result<Routes> {
    describe_metrics();
    let forwarder = Forwarder::new(&ctx, &config.route, config.forward_timeout)?;
    let log = match &config.ingest_log {
        Some(mc) => {
            let mongo = store::Mongo::connect_lazy(mc).await?;
            let log = store::IngestLog::owner(mongo, config.ingest_log_ttl);
            Some(log.start_writer(10_000, &ctx))
        }
        None => None,
    };
    // Every event carries the revision; receivers refuse one that could not
    // be a field name, so a bad K_REVISION must stop ingest here instead.
    events::check_revision(&ctx.config.revision).map_err(|e| anyhow::anyhow!("K_REVISION: {e}"))?;
    let state = Arc::new(Ingest {
        forwarder,
        keys: KeyStore::new(&config.idempotency)?,
        log,
        route: config.route.name(),
        source: format!("/covid-realtime/{}", ctx.config.service),
        revision: ctx.config.revision.clone(),
        config,
    });
    let ready = state.clone();
    let access = state.config.access.clone();
    let router = Router::new()
        .route("/cases", post(accept::post_cases))
        .with_state(state);
    let routes = Routes::new(router).ready_when("next hop", move || {
        let s = ready.clone();
        async move { s.forwarder.check().await }
    });
    access.apply(routes)
}
