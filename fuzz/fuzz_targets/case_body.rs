//! POST /cases bodies: JSON (a case or a batch) and NDJSON.
//! The checks live in `events::fuzz::case_body`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| events::fuzz::case_body(data));
