#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshver_fuzz::version::check(data));
