#![no_main]
//! `parallax_tests::fuzz` target `triples` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("triples", data));
