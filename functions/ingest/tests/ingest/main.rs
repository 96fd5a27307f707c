//! ingest's tests, one binary: each module is one concern, and `helpers`
//! (the function and its stores, through `runtime::testing` and
//! `store::testing`) serves them all.

mod helpers;

mod api;
mod contract;
mod edge_answers;
mod end_to_end;
mod security;
