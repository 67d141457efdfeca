#![no_main]
//! `parallax_tests::fuzz` target `tokenizer` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("tokenizer", data));
