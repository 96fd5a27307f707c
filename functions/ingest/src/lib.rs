//! ingest: `POST /cases` takes one JSON case, a JSON array (a batch) or NDJSON,
//! gives every valid case its CloudEvent id and sends it on through the
//! configured route. A batch is all-or-nothing. Who may post is in `access`;
//! retried requests keep their ids through `idempotency`.

pub mod access;
pub mod body;
pub mod config;
pub mod forward;
pub mod grpc_batch;
pub mod idempotency;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chrono::Utc;
use events::{CaseError, Reported};
use runtime::{ApiError, Context, Routes, TraceContext};
use serde::Serialize;

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
        .route("/cases", post(post_cases))
        .with_state(state);
    let routes = Routes::new(router).ready_when("next hop", move || {
        let s = ready.clone();
        async move { s.forwarder.check().await }
    });
    access.apply(routes)
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub ids: Vec<String>,
}

enum Format {
    Json,
    Ndjson,
}

fn refuse(reason: &'static str, err: ApiError) -> ApiError {
    metrics::counter!("ingest_requests_refused_total", "reason" => reason).increment(1);
    err
}

async fn post_cases(
    State(s): State<Arc<Ingest>>,
    Extension(trace): Extension<TraceContext>,
    req: Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut seen = Seen::default();
    let result = accept(&s, trace, req, &mut seen).await;
    if let Some(log) = &s.log {
        let (result_name, reason) = match &result {
            Ok(_) => ("accepted", String::new()),
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                ("unavailable", e.error.clone())
            }
            Err(e) if e.status == StatusCode::GATEWAY_TIMEOUT => {
                ("outcome_unknown", e.error.clone())
            }
            Err(e) => ("refused", e.error.clone()),
        };
        log.log(store::LogEntry {
            time_ms: Utc::now().timestamp_millis(),
            path: s.route.to_owned(),
            result: result_name.to_owned(),
            reason: reason.chars().take(300).collect(),
            cases: seen.cases as u32,
            bytes: seen.bytes as u64,
            revision: s.revision.clone(),
        });
    }
    result
}

/// What a request turned out to hold, for the ingest log.
#[derive(Default)]
struct Seen {
    cases: usize,
    bytes: usize,
}

async fn accept(
    s: &Ingest,
    trace: TraceContext,
    req: Request,
    seen: &mut Seen,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let key = idempotency::Key::from_headers(req.headers()).map_err(|e| refuse("invalid", e))?;
    let format = match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) => match ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "application/json" => Format::Json,
            "application/x-ndjson" | "application/ndjson" => Format::Ndjson,
            other => {
                return Err(refuse(
                    "unsupported_media_type",
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "content type {other:?} is not accepted: send application/json (a case or an array of cases) or application/x-ndjson"
                        ),
                    ),
                ));
            }
        },
        None => {
            return Err(refuse(
                "unsupported_media_type",
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "missing Content-Type: send application/json (a case or an array of cases) or application/x-ndjson",
                ),
            ));
        }
    };
    let limit = s.config.body_limit;
    let body = body::read_limited(req.into_body(), limit)
        .await
        .map_err(|e| match e {
            body::BodyError::TooLarge => refuse(
                "too_large",
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over the {limit}-byte limit: send smaller batches"),
                ),
            ),
            body::BodyError::Read(e) => refuse(
                "bad_body",
                ApiError::bad_request(format!("could not read the body: {e}")),
            ),
        })?;
    seen.bytes = body.len();
    let cases = match format {
        Format::Json => events::parse_json_body(&body),
        Format::Ndjson => events::parse_ndjson_body(&body),
    }
    .map_err(|e: CaseError| {
        refuse(
            "invalid",
            ApiError::bad_request(e.message)
                .with_field(e.field, e.index)
                .at(e.line, e.column),
        )
    })?;
    seen.cases = cases.len();
    if cases.len() > s.config.max_batch {
        return Err(refuse(
            "too_large",
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the batch has {} cases; at most {} are accepted in one request",
                    cases.len(),
                    s.config.max_batch
                ),
            ),
        ));
    }

    // A keyed request gets the ids (and time) of its first attempt.
    let (now, ids) = match &key {
        None => (
            Utc::now(),
            (0..cases.len())
                .map(|_| Reported::new_id())
                .collect::<Vec<_>>(),
        ),
        Some(key) => {
            let digest = idempotency::cases_digest(&cases);
            let now_ms = Utc::now().timestamp_millis().max(0) as u64;
            let claimed = s.keys.claim(key, &digest, now_ms).await.map_err(|e| {
                let reason = if e.status.is_client_error() {
                    "idempotency_key_reused"
                } else {
                    "unavailable"
                };
                refuse(reason, e)
            })?;
            if claimed.replay {
                metrics::counter!("ingest_idempotent_replays_total").increment(1);
            }
            let first = chrono::DateTime::from_timestamp_millis(claimed.first_seen_ms as i64)
                .unwrap_or_else(Utc::now);
            (
                first,
                idempotency::ids(key, &digest, claimed.first_seen_ms, cases.len()),
            )
        }
    };
    let traceparent = trace.to_string();
    let reported: Vec<Reported> = cases
        .into_iter()
        .zip(ids)
        .map(|(case, id)| Reported {
            id,
            case,
            time: now,
            revision: Some(s.revision.clone()),
            traceparent: Some(traceparent.clone()),
        })
        .collect();
    let ids: Vec<String> = reported.iter().map(|r| r.id.clone()).collect();
    let events = forward::to_events(&reported, &s.source);

    let deadline = tokio::time::Instant::now() + s.config.forward_timeout;
    if let Err(e) = s.forwarder.forward(events, &traceparent, deadline).await {
        tracing::warn!(route = s.route, error = %e, unknown = e.outcome_unknown, cases = ids.len(), "next hop did not take the cases");
        let retry = std::time::Duration::from_secs(1);
        return Err(if e.outcome_unknown {
            refuse(
                "outcome_unknown",
                ApiError::outcome_unknown(
                    format!(
                        "outcome unknown: {e}; retry with the same Idempotency-Key, or look up these ids"
                    ),
                    ids,
                    retry,
                ),
            )
        } else {
            refuse(
                "unavailable",
                ApiError::unavailable(format!("cases not accepted, try again: {e}"), retry),
            )
        });
    }
    metrics::counter!("ingest_cases_accepted_total", "route" => s.route)
        .increment(ids.len() as u64);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: ids.len(),
            ids,
        }),
    ))
}
