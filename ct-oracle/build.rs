//! Compiles the C shim around libnetfilter_conntrack's parser and links the library
//! (Debian: `libnetfilter-conntrack-dev`, found with pkg-config).

const LIBS: [&str; 2] = ["libnetfilter_conntrack", "libmnl"];

fn probe(name: &str, link: bool) -> pkg_config::Library {
    pkg_config::Config::new()
        .cargo_metadata(link)
        .probe(name)
        .unwrap_or_else(|e| {
            panic!(
                "ct-oracle needs {name} (Debian/Ubuntu: apt-get install \
                 libnetfilter-conntrack-dev libmnl-dev): {e}"
            )
        })
}

fn main() {
    println!("cargo:rerun-if-changed=shim/ct_oracle.c");
    println!("cargo:rerun-if-changed=shim/ct_oracle.h");
    println!("cargo:rerun-if-changed=build.rs");
    let mut build = cc::Build::new();
    build
        .file("shim/ct_oracle.c")
        .include("shim")
        .warnings(true);
    for name in LIBS {
        for path in &probe(name, false).include_paths {
            build.include(path);
        }
    }
    build.compile("ct_oracle");
    // The link lines after the shim's archive, which needs them.
    for name in LIBS {
        probe(name, true);
    }
}
