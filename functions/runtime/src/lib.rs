//! The Knative function runtime: the container contract of DESIGN.md,
//! implemented once. A function's `main` is
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     runtime::main("ingest", ingest::routes)
//! }
//! ```
//!
//! and its own code is `async fn routes(Context) -> anyhow::Result<Routes>`:
//! handlers and wiring.

pub mod app;
pub mod auth;
pub mod config;
pub mod contract;
pub mod error;
pub mod metrics;
pub mod ratelimit;
pub mod redis;
pub mod retry;
pub mod sink;
pub mod telemetry;
pub mod trace;
pub mod workers;

/// Every function allocates per request (bodies, headers, events); mimalloc
/// keeps that off glibc's arena locks and measurably cheaper (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::{App, Context, Routes, install_crypto_provider, main};
pub use auth::{Secret, Verifier};
pub use config::Config;
pub use error::ApiError;
pub use retry::Backoff;
pub use sink::Sink;
pub use trace::TraceContext;
