//! Reads the libnetfilter_queue version that nfq-sys found (`DEP_NETFILTER_QUEUE_VERSION`) and
//! turns it into cfgs for library features newer than the oldest supported release (1.0.5).

use std::env;

/// `(cfg name, minimum version)`: the cfg is set when the installed library is at least that
/// version. `nfq_1_0_6`: libnetfilter_queue 1.0.6 or newer.
const VERSION_CFGS: &[(&str, (u32, u32, u32))] = &[("nfq_1_0_6", (1, 0, 6))];

fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version
        .trim()
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_NETFILTER_QUEUE_VERSION");
    let version = env::var("DEP_NETFILTER_QUEUE_VERSION").unwrap_or_else(|_| "1.0.5".to_owned());
    println!("cargo:rustc-env=LIBNFQ_LIBRARY_VERSION={version}");
    let parsed = parse(&version);
    for (cfg, min) in VERSION_CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if parsed.is_some_and(|v| v >= *min) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}
