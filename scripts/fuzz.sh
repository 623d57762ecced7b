#!/bin/sh
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, nightly toolchain) of the targets in
# fuzz/: each runs for a bounded time from its committed seed corpus, then the executions are
# printed. Fails when a target crashes (the input is kept under fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                     # every target, NFQ_FUZZ_TIME seconds each (default 60)
#   scripts/fuzz.sh pkt_views           # some of them
#   NFQ_FUZZ_TIME=600 scripts/fuzz.sh   # longer
#
# New inputs found go to a scratch directory, not into the committed corpus (fuzz/README.md
# says how to add one). Before fuzzing: rustfmt and clippy on the fuzz crate (not part of the
# root workspace), and its corpus test, which checks that the committed seeds are what
# fuzz/examples/seeds.rs generates and that every corpus file passes its target.
set -eu
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TARGETS="${*:-dispatch pkt_views packetbuf_edits}"
SECS="${NFQ_FUZZ_TIME:-60}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

echo "== fuzz crate: fmt, clippy, corpus test (stable)"
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings
cargo test --manifest-path fuzz/Cargo.toml --locked

echo "== cargo fuzz build"
cargo +nightly fuzz build --fuzz-dir fuzz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
summary=""
for t in $TARGETS; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    log="$scratch/$t.log"
    echo "== fuzz $t (${SECS} s)"
    # The scratch directory comes first: libFuzzer writes what it finds into the first one.
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
        grep -E "^(==[0-9]+==|thread '|SUMMARY|artifact_prefix|Test unit written)" "$log" >&2 || true
        tail -n 40 "$log" >&2
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p')
    line="$t: $result, ${execs:-?} executions in ${SECS} s (${cov:-no coverage line})"
    echo "== $line"
    summary="$summary$line
"
done
printf '== fuzz summary\n%s' "$summary"
exit $status
