//! CI smoke of the benchmark (`nfqbench`, see docs/BENCHMARKS.md): the benchmark program runs
//! `--smoke`: every consumer (C baselines, libnfq, the peer libraries) once per shape (drain,
//! drain-isolated, blast, blast-long, paced, burst, tcp) on a few thousand packets or one second
//! of TCP, and only correctness is checked, never timing: every packet sent is accounted for
//! (sink + the kernel's drop counters; all verdicts accept), nothing arrives altered, nothing is
//! lost under drain (buffers hold the whole backlog), every latency run measured every packet
//! that arrived, and every queued TCP run went through the queue. The program exits non-zero
//! and names the failing runs otherwise.
//!
//! The program makes its own private network namespace (as root, or in a user namespace as a
//! plain user); when it cannot, it exits with status 77 and this test is skipped loudly, or
//! fails under `NFQ_REQUIRE_KERNEL=1`.

use std::process::Command;
use std::time::Instant;

/// `nfqbench::cli::EXIT_NO_NAMESPACE`.
const EXIT_NO_NAMESPACE: i32 = 77;

#[test]
fn bench_smoke() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_nfqbench"))
        .arg("--smoke")
        .output()
        .expect("run the nfqbench binary");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    if out.status.code() == Some(EXIT_NO_NAMESPACE) {
        let required = std::env::var("NFQ_REQUIRE_KERNEL").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "NFQ_REQUIRE_KERNEL=1 but nfqbench has no network namespace: {stderr}"
        );
        eprintln!("SKIPPED bench_smoke: no private network namespace here: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "nfqbench --smoke failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("smoke OK"),
        "nfqbench --smoke did not report success:\n{stdout}\n{stderr}"
    );
    eprintln!(
        "bench_smoke: correct in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
