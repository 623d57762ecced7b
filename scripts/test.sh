#!/bin/sh
# Runs the whole libnfq test suite: installs missing system packages, then runs unit,
# real-kernel integration and doc tests. Kernel tests run in network namespaces they create
# themselves (as root, or re-executed under `unshare --user --map-root-user` otherwise); with
# NFQ_REQUIRE_KERNEL=1 a test that cannot reach the kernel fails instead of being skipped.
set -eu
cd "$(dirname "$0")/.."
# libnetfilter-conntrack-dev: the conntrack decoder is checked against its parser (ct-oracle/).
sh scripts/install-deps.sh libnetfilter-conntrack-dev
exec cargo test --workspace --features libnfq/tokio,libnfq/fuzzing "$@"
