#![no_main]
//! `parallax_tests::fuzz` target `hf_weights` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("hf_weights", data));
