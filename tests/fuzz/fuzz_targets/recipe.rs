#![no_main]
//! `parallax_tests::fuzz` target `recipe` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("recipe", data));
