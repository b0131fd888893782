//! Fuzz target: see `tokenward::fuzzing::memcached_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenward::fuzzing::memcached_reply(data));
