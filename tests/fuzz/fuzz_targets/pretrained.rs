#![no_main]
//! `parallax_tests::fuzz` target `pretrained` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("pretrained", data));
