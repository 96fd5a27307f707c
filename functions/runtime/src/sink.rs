//! Sending output CloudEvents to `K_SINK` the way Knative expects: binary
//! mode, `K_CE_OVERRIDES` applied, trace context attached, retried with
//! back-off while the receiver is down; with `INTERNAL_TOKEN` set, the
//! token goes along as a bearer credential.

use std::sync::Arc;
use std::time::Duration;

use events::Event;
use events::http::SendError;

use crate::auth::Secret;
use crate::retry::Backoff;

/// Where a function's output events go (its `K_SINK`).
#[derive(Clone)]
pub struct Sink {
    url: Arc<str>,
    client: reqwest::Client,
    overrides: Arc<[(String, String)]>,
    timeout: Duration,
    bearer: Option<Secret>,
}

impl Sink {
    pub fn new(url: &str, client: reqwest::Client, overrides: &[(String, String)]) -> Sink {
        Sink {
            url: url.into(),
            client,
            overrides: overrides.into(),
            timeout: Duration::from_secs(10),
            bearer: None,
        }
    }

    /// Sends `token` as `Authorization: Bearer` with every event.
    pub fn with_bearer(mut self, token: Option<Secret>) -> Sink {
        self.bearer = token;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds `K_CE_OVERRIDES` extensions and the trace context to `event`.
    pub fn prepare(&self, mut event: Event, traceparent: Option<&str>) -> Event {
        for (k, v) in self.overrides.iter() {
            event.set_extension(k, v.clone());
        }
        if let Some(t) = traceparent {
            event.set_extension(events::EXT_TRACEPARENT, t.to_owned());
        }
        event
    }

    /// One attempt.
    pub async fn send(&self, event: Event, traceparent: Option<&str>) -> Result<(), SendError> {
        let event = self.prepare(event, traceparent);
        let auth = self
            .bearer
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        let headers: Vec<(&str, &str)> = traceparent
            .map(|t| ("traceparent", t))
            .into_iter()
            .chain(auth.as_deref().map(|a| ("authorization", a)))
            .collect();
        events::http::send(&self.client, &self.url, event, &headers, self.timeout).await
    }

    /// Retries retryable failures with back-off until `deadline` has passed.
    pub async fn send_with_retry(
        &self,
        event: Event,
        traceparent: Option<&str>,
        deadline: Duration,
    ) -> Result<(), SendError> {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));
        let start = tokio::time::Instant::now();
        loop {
            match self.send(event.clone(), traceparent).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && start.elapsed() < deadline => {
                    tracing::warn!(error = %e, sink = %self.url, "sink send failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
