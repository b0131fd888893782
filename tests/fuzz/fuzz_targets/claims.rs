//! Fuzz target: see `tokenward::fuzzing::claim_mapping`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenward::fuzzing::claim_mapping(data));
