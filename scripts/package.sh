#!/usr/bin/env bash
# Checks what the published packages contain, then runs `cargo publish --dry-run` for the
# workspace: both crates are packaged and each is built from its package (libnfq against the
# packaged nfq-sys). Nothing is ever uploaded.
set -euo pipefail
cd "$(dirname "$0")/.."

# `package file...`: files each package must ship; `!file` must not be shipped.
check() {
    local pkg=$1
    shift
    local list
    list=$(cargo package --list --allow-dirty -p "$pkg" 2>/dev/null)
    local f bad=0
    for f in "$@"; do
        case $f in
        !*) if grep -qx -- "${f#!}" <<<"$list"; then echo "package: $pkg ships ${f#!}" >&2; bad=1; fi ;;
        *) if ! grep -qx -- "$f" <<<"$list"; then echo "package: $pkg lacks $f" >&2; bad=1; fi ;;
        esac
    done
    [ "$bad" = 0 ] && echo "package: $pkg: $(wc -l <<<"$list") files, contents as expected"
    return "$bad"
}

check nfq-sys LICENSE-MIT LICENSE-APACHE README.md build.rs wrapper.h src/bindings.rs src/lib.rs
# The docs (the README links to them) and every example ship with it.
check libnfq LICENSE-MIT LICENSE-APACHE README.md CHANGELOG.md build.rs src/lib.rs \
    $(git ls-files 'docs/*.md' examples) \
    '!.ci/run' '!scripts/test.sh' '!tests/bench_smoke.rs' '!benches/nfqbench.rs'

# --allow-dirty: the dry run checks the packages, not the VCS state; earlier CI steps or an
# uncommitted edit must not make it fail.
cargo publish --dry-run --workspace --allow-dirty
