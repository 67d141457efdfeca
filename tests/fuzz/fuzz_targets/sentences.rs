#![no_main]
//! `parallax_tests::fuzz` target `sentences` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("sentences", data));
