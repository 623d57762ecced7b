//! The receive path through `Handle::dispatch_for_fuzzing`: see `libnfq_fuzz::dispatch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| libnfq_fuzz::dispatch::run(data));
