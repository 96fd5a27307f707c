//! The request path of `POST /cases`: read the body, choose its format, give
//! every case its id, hand the cases on, and tell the ingest log what the
//! request held. Each step is its own function; the log facts come back as a
//! value next to the answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use events::{Case, CaseError, Reported};
use runtime::{ApiError, TraceContext};
use serde::Serialize;

use crate::{Ingest, body, forward, idempotency};

/// The answer to an accepted request.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub ids: Vec<String>,
}

/// How the body is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
}

/// What a request turned out to hold, for the ingest log.
#[derive(Debug, Default, Clone, Copy)]
struct LogFacts {
    cases: usize,
    bytes: usize,
}

/// A refusal, counted by reason.
fn refuse(reason: &'static str, err: ApiError) -> ApiError {
    metrics::counter!("ingest_requests_refused_total", "reason" => reason).increment(1);
    err
}

pub(crate) async fn post_cases(
    State(s): State<Arc<Ingest>>,
    Extension(trace): Extension<TraceContext>,
    req: Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let (result, facts) = accept(&s, trace, req).await;
    log(&s, &result, facts);
    result.map(|accepted| (StatusCode::ACCEPTED, Json(accepted)))
}

/// One ingest log record for the request, when there is an ingest log.
fn log(s: &Ingest, result: &Result<Accepted, ApiError>, facts: LogFacts) {
    let Some(log) = &s.log else { return };
    let (result_name, reason) = match result {
        Ok(_) => ("accepted", ""),
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => ("unavailable", e.error.as_str()),
        Err(e) if e.status == StatusCode::GATEWAY_TIMEOUT => ("outcome_unknown", e.error.as_str()),
        Err(e) => ("refused", e.error.as_str()),
    };
    log.log(store::LogEntry {
        time_ms: Utc::now().timestamp_millis(),
        path: s.route.to_owned(),
        result: result_name.to_owned(),
        reason: reason.chars().take(300).collect(),
        cases: facts.cases as u32,
        bytes: facts.bytes as u64,
        revision: s.revision.clone(),
    });
}

/// The answer to the request, and what it held (as far as it was read).
async fn accept(
    s: &Ingest,
    trace: TraceContext,
    req: Request,
) -> (Result<Accepted, ApiError>, LogFacts) {
    let mut facts = LogFacts::default();
    let (key, format) = match read_headers(req.headers()) {
        Ok(v) => v,
        Err(e) => return (Err(e), facts),
    };
    let body = match read_body(req, s.config.body_limit).await {
        Ok(b) => b,
        Err(e) => return (Err(e), facts),
    };
    facts.bytes = body.len();
    let cases = match parse_cases(&body, format) {
        Ok(c) => c,
        Err(e) => return (Err(e), facts),
    };
    facts.cases = cases.len();
    if let Err(e) = check_batch(cases.len(), s.config.max_batch) {
        return (Err(e), facts);
    }
    let traceparent = trace.to_string();
    let reported = match mint(s, key.as_ref(), cases, &traceparent).await {
        Ok(r) => r,
        Err(e) => return (Err(e), facts),
    };
    (send(s, reported, &traceparent).await, facts)
}

/// The `Idempotency-Key` (if any) and the body's format.
fn read_headers(headers: &HeaderMap) -> Result<(Option<idempotency::Key>, Format), ApiError> {
    let key = idempotency::Key::from_headers(headers).map_err(|e| refuse("invalid", e))?;
    let unsupported = |message: String| {
        refuse(
            "unsupported_media_type",
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
        )
    };
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unsupported(
            "missing Content-Type: send application/json (a case or an array of cases) or application/x-ndjson".to_owned(),
        ));
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => Format::Json,
        "application/x-ndjson" | "application/ndjson" => Format::Ndjson,
        other => {
            return Err(unsupported(format!(
                "content type {other:?} is not accepted: send application/json (a case or an array of cases) or application/x-ndjson"
            )));
        }
    };
    Ok((key, format))
}

/// The whole body; a body over `limit` is a 413, told apart by its error kind.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    body::read_limited(req.into_body(), limit)
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
        })
}

/// The valid cases of the body, or a 400 naming the first bad field.
fn parse_cases(body: &[u8], format: Format) -> Result<Vec<Case>, ApiError> {
    match format {
        Format::Json => events::parse_json_body(body),
        Format::Ndjson => events::parse_ndjson_body(body),
    }
    .map_err(|e: CaseError| {
        refuse(
            "invalid",
            ApiError::bad_request(e.message)
                .with_field(e.field, e.index)
                .at(e.line, e.column),
        )
    })
}

fn check_batch(cases: usize, max_batch: usize) -> Result<(), ApiError> {
    if cases <= max_batch {
        return Ok(());
    }
    Err(refuse(
        "too_large",
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the batch has {cases} cases; at most {max_batch} are accepted in one request"),
        ),
    ))
}

/// Every case with its id and time. A keyed request gets the ids (and time)
/// of its first attempt.
async fn mint(
    s: &Ingest,
    key: Option<&idempotency::Key>,
    cases: Vec<Case>,
    traceparent: &str,
) -> Result<Vec<Reported>, ApiError> {
    let (time, ids) = match key {
        None => (
            Utc::now(),
            (0..cases.len()).map(|_| Reported::new_id()).collect(),
        ),
        Some(key) => first_ids(s, key, &cases).await?,
    };
    Ok(cases
        .into_iter()
        .zip(ids)
        .map(|(case, id)| Reported {
            id,
            case,
            time,
            revision: Some(s.revision.clone()),
            traceparent: Some(traceparent.to_owned()),
        })
        .collect())
}

/// The time and ids of the first attempt of a keyed request.
async fn first_ids(
    s: &Ingest,
    key: &idempotency::Key,
    cases: &[Case],
) -> Result<(DateTime<Utc>, Vec<String>), ApiError> {
    let digest = idempotency::cases_digest(cases);
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
    let first =
        DateTime::from_timestamp_millis(claimed.first_seen_ms as i64).unwrap_or_else(Utc::now);
    let ids = idempotency::ids(key, &digest, claimed.first_seen_ms, cases.len());
    Ok((first, ids))
}

/// Hands the cases to the next hop; 503 when it did not take them, 504 with
/// the ids when nobody can know.
async fn send(
    s: &Ingest,
    reported: Vec<Reported>,
    traceparent: &str,
) -> Result<Accepted, ApiError> {
    let ids: Vec<String> = reported.iter().map(|r| r.id.clone()).collect();
    let events = forward::to_events(&reported, &s.source);
    let deadline = tokio::time::Instant::now() + s.config.forward_timeout;
    if let Err(e) = s.forwarder.forward(events, traceparent, deadline).await {
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
    Ok(Accepted {
        accepted: ids.len(),
        ids,
    })
}
