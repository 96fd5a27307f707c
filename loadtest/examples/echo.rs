//! A trivial endpoint to measure loadtest itself against:
//! `POST /cases` answers 202 `{"accepted":1,"ids":["x"]}` with an
//! `x-revision: echo` header, without reading the case.
//!
//!     cargo run --release -p loadtest --example echo -- 127.0.0.1:9090 [THREADS]

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::routing::post;

#[derive(Clone, Copy)]
struct Accepted;

impl axum::response::IntoResponse for Accepted {
    fn into_response(self) -> axum::response::Response {
        (
            StatusCode::ACCEPTED,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    HeaderName::from_static(events::REVISION_HEADER),
                    HeaderValue::from_static("echo"),
                ),
            ],
            r#"{"accepted":1,"ids":["x"]}"#,
        )
            .into_response()
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9090".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!(
            "echo listening on http://{} with {threads} thread(s)",
            listener.local_addr()?
        );
        let app = Router::new().route("/cases", post(|| async { Accepted }));
        axum::serve(listener, app).await
    })
}
