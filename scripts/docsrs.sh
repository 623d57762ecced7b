#!/usr/bin/env bash
# Builds the documentation of every published crate of the workspace the way docs.rs does, so a
# docs.rs failure shows up here first:
# - a nightly toolchain (`cargo +nightly`), each crate documented on its own (`--no-deps`),
#   for each target of its `[package.metadata.docs.rs]`;
# - `DOCS_RS=1` in the environment of build scripts, `--cfg docsrs` for rustdoc;
# - the features of `[package.metadata.docs.rs]` (`features`, `all-features`,
#   `no-default-features`) and its `rustdoc-args`;
# - no libnetfilter_queue to be found: docs.rs's build machines do not have it, so pkg-config
#   is given an empty search path (nfq-sys's build script must skip probing under DOCS_RS).
# Warnings are errors (`-D warnings`), which docs.rs does not require but we do.
# Needs: the nightly toolchain, jq. Output: target/docsrs/<target>/doc.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "docsrs: no nightly toolchain (\`rustup toolchain install nightly --profile minimal\`)" >&2
    exit 1
fi
command -v jq >/dev/null || { echo "docsrs: jq not found" >&2; exit 1; }

# The library must really be out of reach, or the docs.rs skip path is not what is tested.
export PKG_CONFIG_LIBDIR="" PKG_CONFIG_PATH="" PKG_CONFIG_SYSROOT_DIR=""
if pkg-config --exists libnetfilter_queue 2>/dev/null; then
    echo "docsrs: pkg-config still finds libnetfilter_queue with an empty search path" >&2
    exit 1
fi
unset NFQ_LIB_DIR NFQ_INCLUDE_DIR NFQ_VERSION NFQ_STATIC
export DOCS_RS=1
# A target dir of its own: these builds do not invalidate the ordinary ones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/docsrs"

# One line per publishable package: name, then its docs.rs metadata as compact JSON.
cargo metadata --no-deps --format-version 1 |
    jq -c '.packages[] | select(.publish != []) | [.name, (.metadata.docs.rs // {})]' |
    while read -r row; do
        name=$(jq -r '.[0]' <<<"$row")
        meta=$(jq -c '.[1]' <<<"$row")
        # Keys this script does not emulate must not be silently ignored.
        unknown=$(jq -r 'keys - ["features","all-features","no-default-features","targets",
            "default-target","rustdoc-args"] | join(" ")' <<<"$meta")
        if [ -n "$unknown" ]; then
            echo "docsrs: $name: [package.metadata.docs.rs] keys not emulated here: $unknown" >&2
            exit 1
        fi
        args=(-p "$name" --no-deps --locked)
        features=$(jq -r '(.features // []) | join(",")' <<<"$meta")
        [ -n "$features" ] && args+=(--features "$features")
        [ "$(jq -r '."all-features" // false' <<<"$meta")" = true ] && args+=(--all-features)
        [ "$(jq -r '."no-default-features" // false' <<<"$meta")" = true ] &&
            args+=(--no-default-features)
        # docs.rs builds `default-target` (or the first of `targets`, or x86_64 Linux) and the
        # other `targets`; only those installed for nightly can be checked here.
        mapfile -t targets < <(jq -r '[."default-target" // empty] + (.targets // [])
            | if length == 0 then ["x86_64-unknown-linux-gnu"] else unique end | .[]' <<<"$meta")
        rustdoc_args=$(jq -r '(."rustdoc-args" // []) | join(" ")' <<<"$meta")
        for target in "${targets[@]}"; do
            if ! rustup target list --installed --toolchain nightly 2>/dev/null | grep -qx "$target"; then
                echo "docsrs: $name: target $target not installed for nightly, skipped" >&2
                continue
            fi
            echo "docsrs: $name ($target) cargo +nightly doc ${args[*]}"
            RUSTDOCFLAGS="--cfg docsrs -D warnings $rustdoc_args" \
                cargo +nightly doc "${args[@]}" --target "$target"
        done
    done
