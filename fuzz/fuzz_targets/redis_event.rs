//! Redis Stream entry values: CloudEvents in the JSON format.
//! The checks live in `events::fuzz::redis_event`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| events::fuzz::redis_event(data));
