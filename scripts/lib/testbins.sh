# Sourced by the scripts that run libnfq's test binaries one by one (asan.sh, valgrind.sh).
# A target is a test file's name (tests/NAME.rs) or "unit" (the library's unit tests).

# `cargo_test_selection TARGET...`: the `cargo test` arguments that build those targets
# (`--lib`, `--test NAME`), on one line.
cargo_test_selection() {
    selection=""
    for t in "$@"; do
        case "$t" in
            unit) selection="$selection --lib" ;;
            *) selection="$selection --test $t" ;;
        esac
    done
    printf '%s\n' "$selection"
}

# `test_binary BUILT TARGET`: the executable cargo built for TARGET, read from BUILT (the output
# of `cargo test --no-run ...`, whose lines name each one:
#   Executable unittests src/lib.rs (target/debug/deps/libnfq-...)
#   Executable tests/lifecycle.rs (target/debug/deps/lifecycle-...)
# ). Fails, with a message on stderr, when there is none (under `set -e`,
# `exe=$(test_binary ...)` then stops the script).
test_binary() {
    case "$2" in
        unit) source="src/lib.rs" ;;
        *) source="tests/$2.rs" ;;
    esac
    exe=$(printf '%s\n' "$1" | sed -n "s|^ *Executable .*$source (\(.*\))\$|\1|p" | tail -n 1)
    if [ -z "$exe" ]; then
        echo "${0##*/}: no test binary found for $2" >&2
        exit 1
    fi
    printf '%s\n' "$exe"
}
