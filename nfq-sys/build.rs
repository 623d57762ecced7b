//! Build script for nfq-sys: finds libnetfilter_queue and libmnl, emits the link lines and the
//! library version as metadata (`DEP_NETFILTER_QUEUE_VERSION` for dependents), and with the
//! `generate` feature regenerates the bindings with bindgen.
//!
//! Environment variables:
//! - `NFQ_LIB_DIR`: skip pkg-config; link `-lnetfilter_queue -lnfnetlink -lmnl` from this folder.
//!   `NFQ_INCLUDE_DIR` (headers, for `generate`) and `NFQ_VERSION` (version metadata) go with it.
//! - `NFQ_STATIC=1` (or the `static` feature): link the static archives.
//! - `NFQ_SYS_UPDATE_BINDINGS=1` with `generate`: also write the result over `src/bindings.rs`.
//! - `DOCS_RS`: set by docs.rs, where no library is installed: nothing is probed or linked.

use std::env;
use std::path::PathBuf;

/// The oldest libnetfilter_queue release nfq-sys supports (the committed bindings are
/// generated from its headers).
const MIN_NFQ_VERSION: &str = "1.0.5";
const MIN_MNL_VERSION: &str = "1.0.3";

fn main() {
    for var in [
        "NFQ_LIB_DIR",
        "NFQ_INCLUDE_DIR",
        "NFQ_VERSION",
        "NFQ_STATIC",
        "NFQ_SYS_UPDATE_BINDINGS",
        "DOCS_RS",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");

    if env::var_os("DOCS_RS").is_some() {
        println!("cargo:version={MIN_NFQ_VERSION}");
        return;
    }

    let statik = env::var_os("CARGO_FEATURE_STATIC").is_some()
        || env::var("NFQ_STATIC").map(|v| v != "0").unwrap_or(false);

    let (version, include_paths) = match env::var_os("NFQ_LIB_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let kind = if statik { "static" } else { "dylib" };
            println!("cargo:rustc-link-search=native={}", dir.display());
            for lib in ["netfilter_queue", "nfnetlink", "mnl"] {
                println!("cargo:rustc-link-lib={kind}={lib}");
            }
            let version = env::var("NFQ_VERSION").unwrap_or_else(|_| MIN_NFQ_VERSION.to_owned());
            let includes = env::var_os("NFQ_INCLUDE_DIR")
                .map(PathBuf::from)
                .into_iter()
                .collect();
            (version, includes)
        }
        None => probe_pkg_config(statik),
    };

    println!("cargo:version={version}");
    println!(
        "cargo:include={}",
        env::join_paths(&include_paths).unwrap().to_string_lossy()
    );

    #[cfg(feature = "generate")]
    generate::run(&include_paths);
    #[cfg(not(feature = "generate"))]
    let _ = include_paths;
}

fn probe_pkg_config(statik: bool) -> (String, Vec<PathBuf>) {
    let mut cfg = pkg_config::Config::new();
    cfg.statik(statik).cargo_metadata(true);
    let nfq = cfg
        .clone()
        .atleast_version(MIN_NFQ_VERSION)
        .probe("libnetfilter_queue")
        .unwrap_or_else(|e| missing_library("libnetfilter_queue", MIN_NFQ_VERSION, &e));
    let mnl = cfg
        .atleast_version(MIN_MNL_VERSION)
        .probe("libmnl")
        .unwrap_or_else(|e| missing_library("libmnl", MIN_MNL_VERSION, &e));
    let mut includes = nfq.include_paths;
    includes.extend(mnl.include_paths);
    (nfq.version, includes)
}

fn missing_library(name: &str, min: &str, err: &pkg_config::Error) -> ! {
    let pkg_config_missing = matches!(err, pkg_config::Error::Command { .. });
    let mut msg = String::new();
    msg.push_str("\n\nnfq-sys could not find ");
    if pkg_config_missing {
        msg.push_str("the `pkg-config` program, which it needs to locate ");
    }
    msg.push_str(&format!(
        "{name} (version {min} or newer) and its development files.\n\n"
    ));
    msg.push_str(
        "Install them with your distribution's packages:\n\
         \n  Debian / Ubuntu:  sudo apt-get install pkg-config libnetfilter-queue-dev libmnl-dev libnfnetlink-dev\
         \n  Fedora / RHEL:    sudo dnf install pkgconf-pkg-config libnetfilter_queue-devel libmnl-devel libnfnetlink-devel\
         \n  Arch Linux:       sudo pacman -S pkgconf libnetfilter_queue libmnl libnfnetlink\
         \n  Alpine:           sudo apk add pkgconf libnetfilter_queue-dev libmnl-dev libnfnetlink-dev\n\
         \nIf the library is installed in a non-standard place, set PKG_CONFIG_PATH to the folder\
         \nholding libnetfilter_queue.pc, or set NFQ_LIB_DIR to the folder holding the library\
         \n(with NFQ_INCLUDE_DIR for its headers).\n",
    );
    msg.push_str(&format!("\npkg-config said:\n{err}\n"));
    panic!("{msg}");
}

#[cfg(feature = "generate")]
mod generate {
    use std::env;
    use std::path::{Path, PathBuf};

    pub fn run(include_paths: &[PathBuf]) {
        let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("bindings.rs");
        let mut builder = bindgen::Builder::default()
            .header("wrapper.h")
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .clang_args(include_paths.iter().map(|p| format!("-I{}", p.display())))
            // Functions and constants of libnetfilter_queue and libmnl only: the rest of libc
            // comes from the `libc` crate.
            .allowlist_function("nfq_.*")
            .allowlist_function("pktb_.*")
            .allowlist_function("mnl_.*")
            .allowlist_var("nfq_errno")
            .allowlist_type("nfqnl_.*")
            .allowlist_type("nfgenmsg")
            .allowlist_type("mnl_.*")
            .allowlist_var("NFQA_.*")
            .allowlist_var("NFQNL_.*")
            .allowlist_var("NFQ_XML_.*")
            .allowlist_var("MNL_.*")
            .allowlist_var("NFNL_.*")
            .allowlist_var("NFNETLINK_V0")
            .allowlist_item("nfnetlink_groups")
            .allowlist_item("nfqnl_.*")
            // Types that differ between targets come from libc, so the committed file is
            // valid on 32- and 64-bit targets alike.
            .blocklist_type("timeval")
            .blocklist_type("nlmsghdr")
            .blocklist_type("nlattr")
            .blocklist_type("FILE")
            .blocklist_type("_IO_.*")
            .blocklist_type("pid_t")
            .blocklist_type("__pid_t")
            .blocklist_type("socklen_t")
            .blocklist_type("__socklen_t")
            .blocklist_type("ssize_t")
            .blocklist_type("__ssize_t")
            .raw_line("pub use libc::{nlattr, nlmsghdr, pid_t, socklen_t, timeval, FILE};")
            .default_enum_style(bindgen::EnumVariation::Consts)
            .prepend_enum_name(false)
            .size_t_is_usize(true)
            .layout_tests(false)
            .derive_default(true)
            .generate_comments(false)
            .use_core()
            .ctypes_prefix("::core::ffi")
            .formatter(bindgen::Formatter::Prettyplease);
        if let Ok(target) = env::var("TARGET") {
            builder = builder.clang_arg(format!("--target={target}"));
        }
        let bindings = builder
            .generate()
            .expect("bindgen failed to generate the libnetfilter_queue bindings");
        let text = format!(
            "// Generated by bindgen from nfq-sys/wrapper.h; do not edit.\n\
             // Regenerate: NFQ_SYS_UPDATE_BINDINGS=1 cargo build -p nfq-sys --features generate\n\n{}",
            bindings
        );
        std::fs::write(&out, &text).expect("writing bindings.rs");
        if env::var_os("NFQ_SYS_UPDATE_BINDINGS").is_some_and(|v| v != "0") {
            let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bindings.rs");
            std::fs::write(committed, &text).expect("writing src/bindings.rs");
        }
    }
}
