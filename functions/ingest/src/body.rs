//! Reads a request body up to the limit. Past it, the rest is read and
//! discarded (at most [`LINGER_BYTES`], for at most [`LINGER_TIME`]) before
//! the `413` goes out, as nginx's lingering close does: a client that sends
//! its whole body before reading (Python's `urllib`) would otherwise have
//! its unread bytes answered by a TCP reset, which discards the `413`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;

/// Most bytes discarded after the limit before the connection is left to close.
pub const LINGER_BYTES: usize = 8 << 20;
/// Longest time spent discarding them.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum BodyError {
    /// Over `limit`; the rest was drained as far as the linger allows.
    TooLarge,
    /// The body could not be read (the client went away, a protocol error).
    Read(String),
}

/// The whole body, or [`BodyError::TooLarge`] past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            drop(buf);
            let _ = tokio::time::timeout(LINGER_TIME, drain(body, data.len())).await;
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

async fn drain(mut body: Body, mut discarded: usize) {
    while discarded < LINGER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => discarded += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}
