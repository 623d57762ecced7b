#!/bin/sh
# Runs libnfq's tests built with AddressSanitizer (nightly toolchain, `-Zsanitizer=address`):
# out-of-bounds accesses, uses after free and double frees in the crate, in the C libraries'
# calls through it (libnetfilter_queue and libmnl are not instrumented, but ASan checks the
# heap blocks they get from malloc and their memcpy/memmove/memset), and leaks (LeakSanitizer)
# fail the run.
#
#   scripts/asan.sh                  # the default set, see TARGETS below
#   scripts/asan.sh lifecycle fuzz   # some of them ("unit" is the library's unit tests)
#
# Extra arguments for every test binary (a name filter, --include-ignored, ...) go in
# ASAN_TEST_ARGS. Kernel tests run in the network namespaces they create, as in scripts/test.sh;
# the processes they start from the test binary (fault-injection consumers, the rootless
# re-execution under `unshare --user --map-root-user`) inherit ASAN_OPTIONS and are checked
# too. Not in the default set: resources (its 512 KiB resident-memory bounds do not hold with
# ASan's allocator and shadow memory; LeakSanitizer checks leaks instead), ports (it runs the
# examples from target/debug, which this build does not make), bench_smoke (a timing check)
# and porting_table (a documentation check).
#
# The std library is not rebuilt with ASan (no rust-src in this toolchain, so no -Zbuild-std):
# the crate, its tests and their dependencies are instrumented, std's own code is not (its
# heap blocks still are checked, since ASan replaces malloc). Doctests are not run here.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh

TARGETS="${*:-unit lifecycle deferred verdicts faults fuzz tokio stats packet pkt_fuzz rewrite conntrack conntrack_uapi attributes owned accept_rewritten netns gso alloc regressions regressions_fuzzing regressions_rebind regressions_tls regressions_tokio model soak support_selftest batching}"
# The explicit target keeps build scripts and proc macros uninstrumented and puts this build
# in target/x86_64-unknown-linux-gnu/, away from the normal one.
TARGET=x86_64-unknown-linux-gnu
export RUSTFLAGS="${RUSTFLAGS:-} -Zsanitizer=address"
# LeakSanitizer works here, as root and in the user namespace of a rootless run; a leak fails
# the binary's exit status. scripts/lsan.supp lists the few tests that leak on purpose.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}"
# A shorter soak than the test's default (1,000,000 packets): about 10 s here.
export NFQ_SOAK_PACKETS="${NFQ_SOAK_PACKETS:-200000}"

. scripts/lib/testbins.sh
# shellcheck disable=SC2086 # word splitting of $TARGETS is intended
args=$(cargo_test_selection $TARGETS)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "asan.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 1
fi

echo "== build (nightly, -Zsanitizer=address, --target $TARGET)"
start=$(date +%s)
# shellcheck disable=SC2086 # word splitting of $args is intended
built=$(cargo +nightly test --target "$TARGET" --features tokio,fuzzing --no-run $args 2>&1) || {
    printf '%s\n' "$built" >&2
    exit 1
}
echo "== built in $(($(date +%s) - start)) s"

status=0
for t in $TARGETS; do
    exe=$(test_binary "$built" "$t")
    echo "== asan $t ($exe)"
    start=$(date +%s)
    options="$ASAN_OPTIONS"
    case "$t" in
        # The soak's resident-memory bound (4 MiB) holds only without the quarantine of freed
        # blocks (256 MiB by default, filled during the soak): there, a use after free is
        # caught only while the block is not yet reused; leaks are still checked.
        soak) options="$options:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" ;;
    esac
    # shellcheck disable=SC2086 # ASAN_TEST_ARGS is split into arguments on purpose
    if ASAN_OPTIONS="$options" "$exe" ${ASAN_TEST_ARGS:-}; then
        echo "== $t: clean ($(($(date +%s) - start)) s)"
    else
        echo "== $t: FAILED ($(($(date +%s) - start)) s)"
        status=1
    fi
done
exit $status
