#!/bin/sh
# Runs libnfq test binaries under valgrind's memcheck: invalid reads and writes, uses of
# uninitialized memory, and definite leaks fail the run.
#
#   scripts/valgrind.sh                 # the default set, see TARGETS below
#   scripts/valgrind.sh lifecycle fuzz  # some of them ("unit" is the library's unit tests)
#
# Extra arguments for every test binary (a name filter, --include-ignored, ...) go in
# VALGRIND_TEST_ARGS. Kernel tests run in network namespaces they create, as in
# scripts/test.sh. Child processes (ip, iptables, the consumer processes of the fault tests) are
# not traced.
#
# Valgrind is about 20 times slower, so: the soak sends 20,000 packets and the fuzz tests run
# 5,000 iterations (NFQ_SOAK_PACKETS and NFQ_FUZZ_ITERATIONS override that); deferred.rs's
# 100,000-packet pipeline test is skipped (its 20 s liveness bound is too short; the soak runs
# the same pipeline). The resource and soak tests skip their resident-memory check under
# valgrind, which quarantines freed blocks; valgrind checks the leaks itself.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh valgrind

TARGETS="${*:-unit lifecycle deferred faults resources fuzz stats soak}"
export NFQ_SOAK_PACKETS="${NFQ_SOAK_PACKETS:-20000}"
export NFQ_FUZZ_ITERATIONS="${NFQ_FUZZ_ITERATIONS:-5000}"

# Build only what is needed (with the features scripts/test.sh uses, so that its build is
# reused), and run the executables cargo reports (scripts/lib/testbins.sh).
. scripts/lib/testbins.sh
# shellcheck disable=SC2086 # word splitting of $TARGETS is intended
args=$(cargo_test_selection $TARGETS)
# shellcheck disable=SC2086 # word splitting of $args is intended
built=$(cargo test --no-run --features tokio,fuzzing $args 2>&1) || {
    printf '%s\n' "$built" >&2
    exit 1
}

status=0
for t in $TARGETS; do
    case "$t" in
        deferred) skip="--skip threaded_pipeline_accounts_for_every_packet" ;;
        *) skip="" ;;
    esac
    exe=$(test_binary "$built" "$t")
    echo "== valgrind $t ($exe)"
    start=$(date +%s)
    # shellcheck disable=SC2086 # $skip and VALGRIND_TEST_ARGS are split into arguments on purpose
    if valgrind --quiet --leak-check=full --show-possibly-lost=no \
        --errors-for-leak-kinds=definite --error-exitcode=1 \
        "$exe" $skip ${VALGRIND_TEST_ARGS:-}; then
        echo "== $t: clean ($(($(date +%s) - start)) s)"
    else
        echo "== $t: FAILED ($(($(date +%s) - start)) s)"
        status=1
    fi
done
exit $status
