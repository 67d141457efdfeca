#![no_main]
//! `parallax_tests::fuzz` target `recipe_set` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("recipe_set", data));
