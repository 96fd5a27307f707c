//! Entry points for fuzzing: each takes arbitrary bytes, runs one decoder
//! the pipeline exposes to the outside, and checks what must hold for any
//! input. They panic only when an invariant breaks, so a crash found by
//! `cargo fuzz` (targets in `fuzz/`) is a bug, and the same functions replay
//! the committed corpus in `cargo test` (`tests/fuzz_corpus.rs`).
//!
//! Invariants: decoding never panics; every refusal says why (a non-empty
//! message); whatever is accepted survives its own re-encoding.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message as _;

use crate::{Reported, StoredBatch, parse_json_body, parse_ndjson_body};

/// `POST /cases` bodies, as JSON (one case or a batch) and as NDJSON.
pub fn case_body(data: &[u8]) {
    for (format, parsed) in [
        ("JSON", parse_json_body(data)),
        ("NDJSON", parse_ndjson_body(data)),
    ] {
        match parsed {
            Ok(cases) => {
                assert!(!cases.is_empty(), "{format}: an accepted body has cases");
                let again = serde_json::to_vec(&cases).expect("cases serialize");
                assert_eq!(
                    parse_json_body(&again).as_ref(),
                    Ok(&cases),
                    "{format}: accepted cases round-trip"
                );
            }
            Err(e) => assert!(!e.message.trim().is_empty(), "{format}: a refusal says why"),
        }
    }
}

/// A CloudEvent over HTTP (binary or structured mode), decoded as the
/// pipeline's receivers do. The input is a request head and body: `name:
/// value` header lines, a blank line, then the body; lines that are not
/// valid headers are skipped.
pub fn http_event(data: &[u8]) {
    let (head, body) = split_head(data);
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(trim(&line[colon + 1..])),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    match crate::http::decode(&headers, body.to_vec()) {
        Ok(event) => accepted_event(&event),
        Err(e) => assert!(!e.0.trim().is_empty(), "a refusal says why"),
    }
}

/// A Redis Stream entry value (the CloudEvents JSON format).
pub fn redis_event(data: &[u8]) {
    match crate::redis::decode(data) {
        Ok(event) => accepted_event(&event),
        Err(e) => assert!(!e.0.trim().is_empty(), "a refusal says why"),
    }
}

/// A protobuf `io.cloudevents.v1.CloudEvent` message, as grpc-writer gets it.
pub fn proto_event(data: &[u8]) {
    let Ok(message) = crate::proto::ce::CloudEvent::decode(data) else {
        return;
    };
    match crate::proto::from_proto(message) {
        Ok(event) => accepted_event(&event),
        Err(e) => assert!(!e.0.trim().is_empty(), "a refusal says why"),
    }
}

/// What the pipeline does with an event it decoded: read it as its typed
/// events, and carry it over the other encodings.
fn accepted_event(event: &cloudevents::Event) {
    if let Err(e) = Reported::from_event(event) {
        assert!(!e.0.trim().is_empty(), "a refusal says why");
    }
    if let Err(e) = StoredBatch::from_event(event) {
        assert!(!e.0.trim().is_empty(), "a refusal says why");
    }
    if let Err(e) = crate::redis::SourcedEntry::from_event(event) {
        assert!(!e.0.trim().is_empty(), "a refusal says why");
    }
    let via_redis = crate::redis::decode(&crate::redis::encode(event));
    assert!(
        via_redis.is_ok(),
        "an accepted event survives the Redis encoding: {via_redis:?}"
    );
    let via_proto = crate::proto::from_proto(crate::proto::to_proto(event));
    assert!(
        via_proto.is_ok(),
        "an accepted event survives the protobuf encoding: {via_proto:?}"
    );
}

fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for sep in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(i) = data.windows(sep.len()).position(|w| w == sep) {
            return (&data[..i], &data[i + sep.len()..]);
        }
    }
    (data, &[])
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}
