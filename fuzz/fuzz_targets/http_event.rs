//! CloudEvents over HTTP (binary and structured mode): header lines, a blank line, the body.
//! The checks live in `events::fuzz::http_event`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| events::fuzz::http_event(data));
