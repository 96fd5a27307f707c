//! dashboard-api's tests, one binary: each module is one concern, and `helpers`
//! (the function and its stores, through `runtime::testing` and
//! `store::testing`) serves them all.

mod helpers;

mod api;
mod bounded_lists;
mod query_properties;
mod read_only;
mod sse_cap;
