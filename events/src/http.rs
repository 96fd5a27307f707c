//! CloudEvents over HTTP: an axum extractor that honours the body limit
//! (the SDK's own reads without one), and a sender over reqwest 0.13 (the
//! SDK's `reqwest` binding targets 0.12). Binary and structured mode both
//! work on receive; sending uses binary mode, the Knative default.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudevents::Event;
use cloudevents::binding::http::to_event;

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
    Transport(#[from] reqwest::Error),
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

/// Builds a binary-mode HTTP POST of `event` to `url`.
pub fn binary_request(
    client: &reqwest::Client,
    url: &str,
    event: Event,
    extra_headers: &[(&str, &str)],
) -> Result<reqwest::RequestBuilder, SendError> {
    let req = http::Request::<Option<Vec<u8>>>::try_from(event)
        .map_err(|e| SendError::Encode(e.to_string()))?;
    let (parts, body) = req.into_parts();
    let mut rb = client.post(url).headers(parts.headers);
    for (k, v) in extra_headers {
        rb = rb.header(*k, *v);
    }
    Ok(rb.body(body.unwrap_or_default()))
}

/// Sends `event` in binary mode; any 2xx is success.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    event: Event,
    extra_headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), SendError> {
    let resp = binary_request(client, url, event, extra_headers)?
        .timeout(timeout)
        .send()
        .await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(SendError::Status {
        status,
        body: body.chars().take(500).collect(),
    })
}
