//! Fuzz target: see `tokenward::fuzzing::config_map`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenward::fuzzing::config_map(data));
