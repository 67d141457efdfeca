#![no_main]
//! `parallax_tests::fuzz` target `image_text` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| parallax_tests::fuzz::libfuzzer("image_text", data));
