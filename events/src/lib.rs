//! The one crate that knows the covid-realtime event and data model.
//!
//! - [`Case`]: a reported case, valid by construction.
//! - [`Reported`], [`StoredBatch`], [`StatsUpdated`]: the events between stages,
//!   with their CloudEvent `type` names in [`types`].
//! - [`http`], [`redis`], [`proto`]: the three wire encodings of those events.

pub mod case;
pub mod event;
pub mod fuzz;
pub mod http;
pub mod proto;
pub mod redis;

pub use case::{
    AGE_BUCKETS, Age, Case, CaseError, Text, parse_case, parse_json_body, parse_ndjson_body,
};
pub use cloudevents::{self, Event};
pub use event::{
    EXT_REVISION, EXT_TRACEPARENT, EventError, MAX_EXTENSION_CHARS, MAX_ID_CHARS,
    MAX_REVISION_CHARS, Reported, StatsUpdated, StoredBatch, StoredCase, WritePath,
    check_extension_name, check_received, check_revision, json_data, string_extension, types,
};
pub use http::REVISION_HEADER;
