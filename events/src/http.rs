//! CloudEvents over HTTP: an axum extractor that honours the body limit
//! (the SDK's own reads without one) and a binary-mode encoder for senders
//! (the functions' sink client in `runtime::sink`, and a reqwest request
//! builder for tools and tests: the SDK's `reqwest` binding targets 0.12).
//! Binary and structured mode both work on receive; sending uses binary
//! mode, the Knative default.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudevents::binding::http::to_event;
use cloudevents::event::AttributeValue;
use cloudevents::{Data, Event};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Response header naming the revision that served the request (every
/// function's answers carry it), so a load test can measure a traffic split
/// from outside.
pub const REVISION_HEADER: &str = "x-revision";

/// An incoming CloudEvent (binary or structured mode).
///
/// Rejections are JSON: 413 over the route's body limit, 400 when the
/// request is not a valid CloudEvent (missing `ce-id`, unknown spec version...).
#[derive(Debug, Clone)]
pub struct CloudEvent(pub Event);

/// A JSON `{"error": ...}` response for a refused CloudEvent.
#[derive(Debug)]
pub struct CloudEventRejection {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for CloudEventRejection {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequest<S> for CloudEvent {
    type Rejection = CloudEventRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        // `Bytes` honours axum's DefaultBodyLimit and answers 413 past it.
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| CloudEventRejection {
                status: e.status(),
                message: e.body_text(),
            })?;
        decode(&headers, body.to_vec())
            .map(CloudEvent)
            .map_err(|e| CloudEventRejection {
                status: StatusCode::BAD_REQUEST,
                message: e.0,
            })
    }
}

/// Decodes a CloudEvent from an HTTP request (binary or structured mode) the
/// way every receiver does: the SDK's decoding, then [`crate::check_received`].
pub fn decode(headers: &http::HeaderMap, body: Vec<u8>) -> Result<Event, crate::EventError> {
    let event = to_event(headers, body)
        .map_err(|e| crate::EventError(format!("not a valid CloudEvent: {e}")))?;
    crate::event::check_received(&event)
        .map_err(|e| crate::EventError(format!("not a valid CloudEvent: {}", e.0)))?;
    Ok(event)
}

/// Why sending an event failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("could not encode the CloudEvent: {0}")]
    Encode(String),
    #[error("the receiver answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("could not reach the receiver: {0}")]
    Transport(String),
}

impl SendError {
    /// Whether trying again later may succeed (5xx, 429, 408, or the network).
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Encode(_) => false,
            SendError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            SendError::Transport(_) => true,
        }
    }
}

/// `event` in HTTP binary mode: every attribute and extension as a `ce-`
/// header (`datacontenttype` as `Content-Type`), the data as the body. The
/// same bytes the SDK's binding writes, without its per-attribute string
/// formatting and header-name parsing: this runs once per case on the
/// ingest path.
pub fn encode_binary(event: &Event) -> Result<(HeaderMap, Bytes), SendError> {
    let mut headers = HeaderMap::with_capacity(12);
    for (name, value) in event.iter_attributes() {
        let header = match name {
            "specversion" => HeaderName::from_static("ce-specversion"),
            "id" => HeaderName::from_static("ce-id"),
            "type" => HeaderName::from_static("ce-type"),
            "source" => HeaderName::from_static("ce-source"),
            "datacontenttype" => http::header::CONTENT_TYPE,
            "dataschema" => HeaderName::from_static("ce-dataschema"),
            "subject" => HeaderName::from_static("ce-subject"),
            "time" => HeaderName::from_static("ce-time"),
            other => extension_header(other)?,
        };
        headers.insert(header, header_value(&value)?);
    }
    for (name, value) in event.iter_extensions() {
        headers.insert(extension_header(name)?, header_value(&value.into())?);
    }
    let body = match event.data() {
        None => Bytes::new(),
        Some(Data::Binary(b)) => Bytes::copy_from_slice(b),
        Some(Data::String(s)) => Bytes::copy_from_slice(s.as_bytes()),
        Some(Data::Json(v)) => serde_json::to_vec(v)
            .map_err(|e| SendError::Encode(e.to_string()))?
            .into(),
    };
    Ok((headers, body))
}

fn extension_header(name: &str) -> Result<HeaderName, SendError> {
    HeaderName::try_from(format!("ce-{name}"))
        .map_err(|e| SendError::Encode(format!("attribute {name:?}: {e}")))
}

fn header_value(value: &AttributeValue) -> Result<HeaderValue, SendError> {
    let v = match value {
        AttributeValue::String(s) => HeaderValue::from_str(s),
        AttributeValue::URIRef(s) => HeaderValue::from_str(s),
        AttributeValue::SpecVersion(v) => HeaderValue::from_str(v.as_str()),
        other => HeaderValue::from_str(&other.to_string()),
    };
    v.map_err(|e| SendError::Encode(format!("attribute value {value}: {e}")))
}

/// Builds a binary-mode HTTP POST of `event` to `url`.
pub fn binary_request(
    client: &reqwest::Client,
    url: &str,
    event: Event,
    extra_headers: &[(&str, &str)],
) -> Result<reqwest::RequestBuilder, SendError> {
    let (headers, body) = encode_binary(&event)?;
    let mut rb = client.post(url).headers(headers);
    for (k, v) in extra_headers {
        rb = rb.header(*k, *v);
    }
    Ok(rb.body(body))
}
