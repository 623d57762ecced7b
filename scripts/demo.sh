#!/bin/sh
# Runs the libnfq demo: installs missing system packages, then runs examples/demo.rs, which
# creates its own private network namespace and leaves nothing behind.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
exec cargo run --quiet --example demo
