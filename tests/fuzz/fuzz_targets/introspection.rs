//! Fuzz target: see `tokenward::fuzzing::introspection_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenward::fuzzing::introspection_answer(data));
