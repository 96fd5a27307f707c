//! redis-sub's tests, one binary: each module is one concern, and `common`
//! (the function and its stores, through `runtime::testing` and
//! `store::testing`) serves them all.

mod common;

mod consumer;
mod dead_letters;
mod event_evolution;
mod properties;
mod stream_source;
