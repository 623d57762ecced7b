//! `cargo bench -p nfqbench -- [options]`: the same program as `cargo run --release -p nfqbench`
//! (see docs/BENCHMARKS.md). Without arguments other than cargo's `--bench` it makes a full
//! run; started with none (`cargo test --benches`) it runs the smoke.

fn main() -> std::process::ExitCode {
    nfqbench::cli::main()
}
