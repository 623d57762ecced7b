//! The benchmark program: `cargo run --release -p nfqbench -- [--smoke] [--reps N] ...` (or
//! `cargo bench -p nfqbench -- ...`): libnfq side by side with C baselines and peer libraries,
//! in one run, as ratios. See docs/BENCHMARKS.md. Started without any argument (as
//! `cargo test --benches` does), it runs `--smoke`.
//!
//! The process first moves itself into a private network namespace (never touching the host's
//! firewall), then sets up rules, sender, sink and consumers there. Consumers are this program
//! re-executed with a hidden subcommand (Python's is `python3`); they inherit the namespace.

use std::io::{self, ErrorKind};
use std::process::ExitCode;

use super::{consumer, report, Options, CONSUMER_SUBCOMMAND};

/// Exit status when no private network namespace can be made (the smoke test skips then).
pub const EXIT_NO_NAMESPACE: u8 = 77;

/// The program's `main`.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CONSUMER_SUBCOMMAND) {
        std::process::exit(consumer::consumer_main(&args[1..]));
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) passes
    // nothing: then check correctness quickly instead of starting a full run.
    let args = if args.is_empty() {
        vec!["--smoke".to_owned()]
    } else {
        args
    };
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // First, while the process is still single-threaded (a user namespace requires it).
    if let Err(e) = enter_private_netns() {
        eprintln!("nfqbench: {e}");
        return ExitCode::from(EXIT_NO_NAMESPACE);
    }
    match run(&opts, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nfqbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options, args: &[String]) -> Result<(), String> {
    let launcher = consumer::Launcher::subcommand(CONSUMER_SUBCOMMAND)?;
    let results = super::run_all(opts, launcher)?;
    let scenarios = opts.scenarios();

    let summaries = report::summarize(&results, &scenarios, &opts.kinds);
    print!(
        "{}",
        report::table(&summaries, &scenarios, |s| opts.reps_for(s))
    );
    if opts.smoke {
        println!(
            "\nsmoke OK: {} runs; every packet accounted for, none lost under drain, every \
             latency measured, TCP went through the queue",
            results.len()
        );
        return Ok(());
    }
    let targets = report::targets(&summaries, &scenarios);
    print!("{}", report::targets_table(&targets));
    let machine = report::machine();
    let user: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let command = match user.is_empty() {
        true => "cargo run --release -p nfqbench".to_owned(),
        false => format!("cargo run --release -p nfqbench -- {}", user.join(" ")),
    };
    let json = report::json(&machine, &command, &results, &summaries, &targets);
    let subtitle = machine
        .iter()
        .filter(|(k, _)| matches!(*k, "cores" | "cpu" | "kernel" | "libnetfilter_queue"))
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let svg = report::svg(&summaries, &scenarios, &opts.kinds, &subtitle);
    let (json_path, svg_path) = (
        opts.out_dir.join("results.json"),
        opts.out_dir.join("nfqbench.svg"),
    );
    report::write(&json_path, &json)?;
    report::write(&svg_path, &svg)?;
    println!("\nmachine: {machine:?}");
    println!(
        "results: {}\nplot:    {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

/// Moves the process into a new network namespace: as root directly, otherwise inside a new
/// user namespace where our uid is mapped to root (CAP_NET_ADMIN over the new namespace only).
fn enter_private_netns() -> Result<(), String> {
    let before = super::net::netns_id()?;
    // SAFETY: geteuid/getegid take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let as_root = if uid == 0 {
        unshare(libc::CLONE_NEWNET)
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    };
    if let Err(root_err) = as_root {
        // The user namespace first, with its mappings, then the network namespace: a network
        // namespace created before uid 0 is mapped gets /proc/net files nobody may read.
        unshare(libc::CLONE_NEWUSER).map_err(|e| {
            format!(
                "cannot create a private network namespace (as root: {root_err}; \
                 in a user namespace: {e}); run as root, or allow unprivileged user namespaces"
            )
        })?;
        match std::fs::write("/proc/self/setgroups", "deny") {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(format!("write /proc/self/setgroups: {e}"))
            }
            _ => {}
        }
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .map_err(|e| format!("write /proc/self/uid_map: {e}"))?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .map_err(|e| format!("write /proc/self/gid_map: {e}"))?;
        unshare(libc::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        eprintln!(
            "nfqbench: not root: running in a user namespace; socket buffers are capped by \
             net.core.rmem_max/wmem_max, so large backlogs may not fit"
        );
    }
    if super::net::netns_id()? == before {
        return Err("the network namespace did not change; not touching any rule".into());
    }
    Ok(())
}

fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare(2) takes only flags. CLONE_NEWUSER needs a single-threaded process: this
    // runs first in `main`, before any thread is spawned.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
