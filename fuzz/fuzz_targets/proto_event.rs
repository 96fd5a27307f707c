//! Protobuf CloudEvent messages, as grpc-writer receives them.
//! The checks live in `events::fuzz::proto_event`, shared with the corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| events::fuzz::proto_event(data));
