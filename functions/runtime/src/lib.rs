//! The Knative function runtime: the container contract every function
//! keeps, implemented once. It listens on `$PORT` (HTTP and gRPC on one
//! port), reads Knative's variables (`K_SINK`, `K_REVISION`, ...), serves
//! `/healthz`, `/readyz` and `/metrics`, names the serving revision on every
//! answer, logs JSON carrying the trace context, drains in-flight work on
//! SIGTERM, and serves through the Lambda runtime when
//! `AWS_LAMBDA_RUNTIME_API` is set. A function's `main` is
//!
//! ```ignore
//! runtime::use_mimalloc!();
//!
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

/// Makes mimalloc the global allocator of the binary that calls it: every
/// function allocates per request (bodies, headers, events), and mimalloc
/// keeps that off glibc's arena locks and measurably cheaper (BENCHMARKS.md).
/// Each function's `main.rs` calls it; a tool that links the runtime keeps
/// the system allocator unless it calls it too.
#[macro_export]
macro_rules! use_mimalloc {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::mimalloc::MiMalloc = $crate::mimalloc::MiMalloc;
    };
}

#[doc(hidden)]
pub use mimalloc;

pub use app::{App, Context, Routes, install_crypto_provider, main};
pub use auth::{Secret, Verifier};
pub use config::Config;
pub use error::ApiError;
pub use retry::Backoff;
pub use settings::{Env, Function, Settings, Var};
pub use sink::Sink;
pub use trace::TraceContext;
