//! `PacketBuf` edit sequences checked against a model: see `libnfq_fuzz::edits`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| libnfq_fuzz::edits::run(data));
