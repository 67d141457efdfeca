#![no_main]
//! `parallax_tests::fuzz` target `labelled` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("labelled", data));
