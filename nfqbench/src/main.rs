//! `cargo run --release -p nfqbench -- [options]`: see docs/BENCHMARKS.md and `nfqbench::cli`.

fn main() -> std::process::ExitCode {
    nfqbench::cli::main()
}
