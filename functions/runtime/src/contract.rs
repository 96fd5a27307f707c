//! What every request and response of a function gets, in one layer: the
//! caller's trace continued (or a new one started) and handed to handlers
//! as an extension, the request run inside a span with the trace id,
//! per-route HTTP metrics, and `traceparent` plus the serving revision on
//! the response. One hand-written layer instead of a middleware per concern:
//! this wraps every request of every function.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::RequestMetrics;
use crate::trace::{self, TraceContext};

#[derive(Clone)]
pub struct ContractLayer {
    /// The serving revision, for the [`events::REVISION_HEADER`] of every response.
    revision: HeaderValue,
}

impl ContractLayer {
    pub fn new(revision: HeaderValue) -> ContractLayer {
        ContractLayer { revision }
    }
}

impl<S> Layer<S> for ContractLayer {
    type Service = Contract<S>;

    fn layer(&self, inner: S) -> Contract<S> {
        Contract {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Contract<S> {
    inner: S,
    layer: ContractLayer,
}

impl<S> Service<Request> for Contract<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let parent = req
            .headers()
            .get(trace::HEADER)
            .and_then(|v| v.to_str().ok());
        let ctx = TraceContext::continue_from(parent);
        req.extensions_mut().insert(ctx);
        let span = tracing::info_span!("request", trace_id = %ctx.trace_id_hex(), method = %req.method(), path = %req.uri().path());
        let metrics = RequestMetrics::start(&req);
        let response = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(
            async move {
                let Ok(mut resp) = response.await;
                metrics.finish(resp.status());
                let headers = resp.headers_mut();
                headers.insert(trace::HEADER, ctx.header_value());
                headers.insert(
                    HeaderName::from_static(events::REVISION_HEADER),
                    layer.revision,
                );
                Ok(resp)
            }
            .instrument(span),
        )
    }
}
