#![no_main]
//! `parallax_tests::fuzz` target `hf_config` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("hf_config", data));
