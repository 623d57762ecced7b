//! `libnfq::pkt` views over arbitrary bytes: see `libnfq_fuzz::views`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| libnfq_fuzz::views::run(data));
