//! Fuzz target: see `tokenward::fuzzing::certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenward::fuzzing::certificate(data));
