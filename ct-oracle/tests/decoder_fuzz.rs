//! The decoder on many seeded random inputs: no panic, every slice inside the input
//! (`ct_oracle::fuzz::exercise`). Reproducible: the seed is fixed; `NFQ_FUZZ_ITERATIONS` sets the
//! number of inputs (200,000 by default).

use std::time::Instant;

use ct_oracle::fuzz::{exercise, mutate, random_layout, Rng};
use ct_oracle::vectors;

#[test]
fn decoder_survives_random_inputs() {
    let kernel: Vec<Vec<u8>> = vectors::all().iter().map(|s| s.build()).collect();
    let mut rng = Rng::new(0xc0de_c0de_0000_0012);
    let n: usize = std::env::var("NFQ_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let started = Instant::now();
    let mut bytes_total = 0usize;
    for i in 0..n {
        let input = match i % 4 {
            0 | 1 => mutate(&kernel[rng.below(kernel.len())], &mut rng),
            2 => random_layout(&mut rng, 4),
            _ => {
                let len = rng.below(96);
                rng.bytes(len)
            }
        };
        bytes_total += input.len();
        exercise(&input);
    }
    for bytes in &kernel {
        // Every prefix of every kernel layout.
        for end in 0..=bytes.len() {
            exercise(&bytes[..end]);
        }
    }
    eprintln!(
        "{n} random inputs ({bytes_total} bytes) decoded in {:?}",
        started.elapsed()
    );
}
