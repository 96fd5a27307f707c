//! grpc-writer's tests, one binary: each module is one concern, and `helpers`
//! (the function and its stores, through `runtime::testing` and
//! `store::testing`) serves them all.

mod helpers;

mod event_cap;
mod receivers_property;
mod refusals;
mod revisions;
