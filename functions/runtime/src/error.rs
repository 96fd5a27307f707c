//! The JSON error every function answers with: `{"error": "...", ...}`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A client-facing error: status, message, and where it applies.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The ids of the request's cases, when the outcome is unknown (504).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Box<[String]>>,
    /// Where a malformed body stops parsing (1-based), when no field is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            index: None,
            ids: None,
            line: None,
            column: None,
            retry_after: None,
        }
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    /// 503 with `Retry-After`: the next hop is down or overloaded; nothing was kept.
    pub fn unavailable(error: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
        }
    }

    /// 504 with `Retry-After` and the cases' ids: the next hop had the cases
    /// and did not answer in time, so they may be stored. A retry with the
    /// same `Idempotency-Key` gets the same ids and stores nothing twice.
    pub fn outcome_unknown(
        error: impl Into<String>,
        ids: Vec<String>,
        retry_after: Duration,
    ) -> ApiError {
        ApiError {
            ids: Some(ids.into_boxed_slice()),
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::GATEWAY_TIMEOUT, error)
        }
    }

    pub fn with_field(mut self, field: Option<String>, index: Option<usize>) -> ApiError {
        self.field = field;
        self.index = index;
        self
    }

    pub fn at(mut self, line: Option<usize>, column: Option<usize>) -> ApiError {
        self.line = line.and_then(|l| u32::try_from(l).ok());
        self.column = column.and_then(|c| u32::try_from(c).ok());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(&self)).into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs().max(1).to_string();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).expect("digits"),
            );
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.error)
    }
}
