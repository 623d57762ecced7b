//! CI smoke of the benchmark harness (`benches/nfqbench`, see docs/BENCHMARKS.md): every
//! consumer (C baselines and libnfq) runs once on a few thousand packets, in every load shape,
//! and only correctness is asserted, never timing: every packet sent is accounted for (sink +
//! the kernel's drop counters; all verdicts accept), nothing arrives altered, and under drain,
//! where buffers hold the whole backlog, nothing is lost.
//!
//! It is `cargo bench --bench nfqbench -- --smoke` without nesting cargo: this file includes the
//! harness as a module, and the libnfq consumer processes are this test binary re-executed to
//! run the ignored test `consumer_process` alone.
//!
//! Runs in its own network namespace (tests/support); skipped loudly when none can be created,
//! or fails under `NFQ_REQUIRE_KERNEL=1`.

mod support;

#[path = "../benches/nfqbench/mod.rs"]
mod nfqbench;

use std::time::Instant;

use nfqbench::{consumer, report, Options};

/// Carries a consumer's arguments to `consumer_process` (libtest owns the command line).
const CONSUMER_ENV: &str = "NFQBENCH_CONSUMER";

#[test]
fn bench_smoke() {
    let Some(_ns) = support::enter!() else {
        return;
    };
    let started = Instant::now();
    let launcher = consumer::Launcher::libtest("consumer_process", CONSUMER_ENV)
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = Options::parse(&["--smoke".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let results = nfqbench::run_all(&opts, launcher).unwrap_or_else(|e| panic!("{e}"));
    let scenarios = opts.scenarios();
    let summaries = report::summarize(&results, &scenarios, &opts.kinds);
    println!("{}", report::table(&summaries, &scenarios, 1));
    assert_eq!(
        results.len(),
        scenarios.len() * opts.kinds.len(),
        "every consumer ran in every scenario"
    );
    eprintln!(
        "bench_smoke: {} runs correct in {:.1}s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Not a test: the body of a libnfq consumer process started by `bench_smoke` (which sets
/// `NFQBENCH_CONSUMER`); returns at once otherwise.
#[test]
#[ignore = "a consumer process of bench_smoke, started by it"]
fn consumer_process() {
    let Ok(args) = std::env::var(CONSUMER_ENV) else {
        return;
    };
    let args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    std::process::exit(consumer::consumer_main(&args));
}
