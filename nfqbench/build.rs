//! Compiles the C baselines (`c/classic.c`, `c/best.c`, and `best.c` with 64-packet batches)
//! into the benchmark with the `cc` crate. Each file's `main` is renamed
//! (`nfqbench_c_<name>_main`) so all three live in one program; the harness runs one of them as
//! a consumer process by re-executing itself (`src/consumer.rs`, `run_c_consumer`).

use std::path::PathBuf;

/// A `-DNAME=VALUE` definition.
type Define = (&'static str, &'static str);

/// `(source, symbol for its main, extra defines)`.
const BASELINES: &[(&str, &str, &[Define])] = &[
    ("classic", "nfqbench_c_classic_main", &[]),
    ("best", "nfqbench_c_best_main", &[]),
    ("best", "nfqbench_c_best64_main", &[("MAX_BATCH", "64")]),
];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=c/common.h");
    for (source, symbol, defines) in BASELINES {
        let path = format!("c/{source}.c");
        println!("cargo:rerun-if-changed={path}");
        let mut build = cc::Build::new();
        build
            .file(&path)
            .include("c")
            .define("main", *symbol)
            .warnings(true)
            .extra_warnings(true)
            // One object directory per variant: two variants of best.c must not share objects.
            .out_dir(out.join(symbol));
        for (name, value) in *defines {
            build.define(name, *value);
        }
        build.compile(symbol);
    }
    // The libraries the baselines use (installed by scripts/install-deps.sh); libnfq itself
    // links libnetfilter_queue through nfq-sys.
    for lib in ["netfilter_queue", "nfnetlink", "mnl"] {
        println!("cargo:rustc-link-lib={lib}");
    }
}
