#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| observer_fuzz::compressed_sections(data));
