//! The Knative function runtime: the container contract of DESIGN.md,
//! implemented once. A function's `main` is
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     runtime::main::<ingest::Function>()
//! }
//! ```
//!
//! and its own code declares itself once ([`settings::Function`]): its name,
//! its variables ([`settings::Settings`]) and its routes, handlers and wiring.

pub mod app;
pub mod auth;
pub mod batch;
pub mod config;
pub mod contract;
pub mod error;
pub mod metrics;
pub mod ratelimit;
pub mod redis;
pub mod retry;
pub mod settings;
pub mod sink;
pub mod telemetry;
pub mod testing;
pub mod trace;
pub mod workers;

/// Every function allocates per request (bodies, headers, events); mimalloc
/// keeps that off glibc's arena locks and measurably cheaper (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::{App, Context, REVISION_HEADER, Routes, install_crypto_provider, main};
pub use auth::{Secret, Verifier};
pub use config::Config;
pub use error::ApiError;
pub use retry::Backoff;
pub use settings::{Env, Function, Settings, Var};
pub use sink::Sink;
pub use trace::TraceContext;
