//! A port of `nf_queue`, the small NFQUEUE consumer that the Linux kernel's netfilter selftests
//! (`tools/testing/selftests/net/netfilter/`) drive, to libnfq. The scripts that run the C
//! program can run this one unchanged.
//!
//! ```text
//! nf_queue [-c|-v [-vv] ] [-o] [-t timeout] [-q queue_num] [-Qdst_queue ] [ -d ms_delay ] [-G]
//! cargo run --example selftest_nf_queue -- -c -q 0 -t 3
//! ```
//!
//! - `-q N`: the queue to bind (default 0; a number above 65535 means 0).
//! - `-Q N`: give each packet the verdict `NF_QUEUE` to queue N instead of `NF_ACCEPT`
//!   (`Expected destination queue number` and exit 1 above 65535; N equal to the source queue:
//!   `Cannot use same destination and source queue`, exit 1).
//! - `-d MS`: wait MS milliseconds before each verdict (`-d 0`: `Expected nonzero delay (in
//!   milliseconds)`, exit 1).
//! - `-t S`: end normally (exit 0) when no packet arrived for S seconds; without it, run until
//!   killed.
//! - `-c`: count the packets of each hook and print at the end
//!   `hook 0 packets 00000000` ... `hook 4 packets 00000000` and `N packets total`.
//! - `-v` (`-vv` is the same): one line per packet, `packet hook=2048, hwproto 0x3`, then
//!   ` csumnotready`, ` gso`, ` csumnotverified` as the kernel flags it. (Sic: the first number
//!   is the hardware protocol in decimal and the second the hook in hex; the C program swaps
//!   the labels, and scripts depend on the format.)
//! - `-o`: fail open (`NFQA_CFG_F_FAIL_OPEN`: the kernel accepts packets the queue has no room
//!   for); `-G`: no `NFQA_CFG_F_GSO` (the kernel segments GSO packets before queueing them);
//!   `-h`: the usage line on standard output, exit 0. Other options are reported by getopt's
//!   message and ignored.
//!
//! The queue copies whole packets (range 0xFFFF) and always asks for the socket's uid and gid
//! (`NFQA_CFG_F_UID_GID`). A lost-messages error (`ENOBUFS`) and an interrupted wait (`EINTR`)
//! are ignored; any other error prints the C program's `perror` line (`mnl_socket_open: ...`,
//! `mnl_cb_run: ...`, `mnl_socket_recvfrom: ...`, `mnl_socket_sendto: ...`) and exits 1. A
//! packet from a hook numbered 5 or more prints `Unknown hook N` and exits 1.
//!
//! Differences from the C program:
//!
//! - The bind, the copy mode and the flags go to the kernel in one acknowledged message (the C
//!   program sends two without waiting); a refused bind gives the same `mnl_cb_run: ...` line
//!   and exit status.
//! - The C program sends one verdict per received datagram (the last packet's); the kernel puts
//!   each packet in a datagram of its own, so both decide every packet.
//! - On an unknown hook the C program also prints `mnl_cb_run: ` with whatever `errno` held;
//!   the port prints only `Unknown hook N`.
//! - Standard output is flushed at every line.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::exit;
use std::ptr;
use std::time::Duration;

use libnfq::{CopyMode, Error, Handle, Packet, QueueConfig, QueueFlags, SkbInfo, Verdict};

#[path = "c_compat/mod.rs"]
mod c_compat;
use c_compat::*;

/// The hooks counted by `-c` (`NF_INET_PRE_ROUTING` .. `NF_INET_POST_ROUTING`).
const HOOKS: usize = 5;

/// The command line, as the C program's `struct options`.
#[derive(Debug)]
struct Options {
    count_packets: bool,
    gso_enabled: bool,
    failopen: bool,
    verbose: u32,
    queue_num: u16,
    /// Seconds; 0: wait forever.
    timeout: u32,
    /// `None`: `NF_ACCEPT`; `Some(n)`: `NF_QUEUE` to queue n.
    dst_queue: Option<u16>,
    /// Milliseconds; 0: none.
    delay_ms: u32,
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let opts = parse_opts(&args);

    let mut stats = [0u32; HOOKS];
    mainloop(&opts, &mut stats);
    if opts.count_packets {
        print_stats(&stats);
    }
    exit(0);
}

fn usage(argv0: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(b"Usage: ");
    let _ = out.write_all(argv0);
    let _ = out.write_all(
        b" [-c|-v [-vv] ] [-o] [-t timeout] [-q queue_num] [-Qdst_queue ] [ -d ms_delay ] [-G]\n",
    );
    let _ = out.flush();
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    exit(1);
}

/// The C program's `parse_opts`, over glibc's `getopt(argc, argv, "chvot:q:Q:d:G")`.
fn parse_opts(args: &[OsString]) -> Options {
    let mut opts = Options {
        count_packets: false,
        gso_enabled: true,
        failopen: false,
        verbose: 0,
        queue_num: 0,
        timeout: 0,
        dst_queue: None,
        delay_ms: 0,
    };
    let argv0 = args.first().map_or(&b"(null)"[..], |a| a.as_bytes());
    getopt(args, b"chvot:q:Q:d:G", |option, optarg| {
        // The C program reads each number with atoi() into an unsigned variable.
        let number = || atoi(optarg.unwrap_or_default()) as u32;
        match option {
            b'c' => opts.count_packets = true,
            b'h' => {
                usage(argv0);
                exit(0);
            }
            b'q' => opts.queue_num = u16::try_from(number()).unwrap_or(0),
            b'Q' => match u16::try_from(number()) {
                Ok(dst) => opts.dst_queue = Some(dst),
                Err(_) => fail("Expected destination queue number"),
            },
            b'd' => {
                opts.delay_ms = number();
                if opts.delay_ms == 0 {
                    fail("Expected nonzero delay (in milliseconds)");
                }
            }
            b't' => opts.timeout = number(),
            b'G' => opts.gso_enabled = false,
            b'o' => opts.failopen = true,
            b'v' => opts.verbose += 1,
            _ => {} // '?': getopt has printed its message
        }
    });
    if opts.dst_queue == Some(opts.queue_num) {
        fail("Cannot use same destination and source queue");
    }
    opts
}

/// glibc's `getopt` for an option string without long options: options may be grouped (`-cv`),
/// an argument may be attached (`-q1`) or be the next word (`-q 1`), words that are not options
/// are skipped (glibc permutes them to the end) unless `POSIXLY_CORRECT` is set, and `--` ends
/// the options. Calls `handle(option, argument)`, with `b'?'` after printing getopt's message
/// for an unknown option or a missing argument.
fn getopt(args: &[OsString], optstring: &[u8], mut handle: impl FnMut(u8, Option<&[u8]>)) {
    let argv0 = args.first().map_or(&b"(null)"[..], |a| a.as_bytes());
    let posixly_correct = std::env::var_os("POSIXLY_CORRECT").is_some();
    let complain = |what: &str, option: u8| {
        let mut err = io::stderr().lock();
        let _ = err.write_all(argv0);
        let _ = write!(err, ": {what} -- '");
        let _ = err.write_all(&[option]);
        let _ = err.write_all(b"'\n");
    };
    let mut index = 1;
    while index < args.len() {
        let word = args[index].as_bytes();
        if word == b"--" {
            break;
        }
        if word.len() < 2 || word[0] != b'-' {
            if posixly_correct {
                break;
            }
            index += 1;
            continue;
        }
        let mut at = 1;
        while at < word.len() {
            let option = word[at];
            at += 1;
            let spec = optstring.iter().position(|&c| c == option && c != b':');
            let Some(spec) = spec else {
                complain("invalid option", option);
                handle(b'?', None);
                continue;
            };
            if optstring.get(spec + 1) != Some(&b':') {
                handle(option, None);
                continue;
            }
            if at < word.len() {
                handle(option, Some(&word[at..]));
                at = word.len();
            } else if index + 1 < args.len() {
                index += 1;
                handle(option, Some(args[index].as_bytes()));
            } else {
                complain("option requires an argument", option);
                handle(b'?', None);
            }
        }
        index += 1;
    }
}

/// The C program's `open_queue` and `mainloop`: bind, then decide packets until the timeout.
fn mainloop(opts: &Options, stats: &mut [u32; HOOKS]) {
    let handle = Handle::open().unwrap_or_else(|e| die("mnl_socket_open", &e));

    let mut flags = QueueFlags::UID_GID;
    if opts.gso_enabled {
        flags |= QueueFlags::GSO;
    }
    if opts.failopen {
        flags |= QueueFlags::FAIL_OPEN;
    }
    let config = QueueConfig::new()
        .copy_mode(CopyMode::Packet(0xFFFF))
        .flags(flags);
    let verdict = match opts.dst_queue {
        None => Verdict::accept(),
        Some(dst) => Verdict::queue(dst),
    };
    let queue = handle
        .queue(opts.queue_num, config, move |packet| {
            queue_cb(packet, opts, stats);
            if opts.delay_ms != 0 {
                std::thread::sleep(Duration::from_millis(u64::from(opts.delay_ms)));
            }
            verdict.clone()
        })
        // The C program learns of a refused bind from the error message its loop receives.
        .unwrap_or_else(|e| die("mnl_cb_run", &e));

    // One datagram, one verdict, as in the C loop: the verdict of a packet leaves as soon as
    // its callback returned (after the -d delay), not with those of packets received with it.
    handle.set_batch_limit(1);

    // The C program sets SO_RCVTIMEO and ends when a receive fails with EAGAIN; a receive that
    // a signal interrupts (EINTR) starts over. `Handle::process` reports a timeout and an
    // interruption alike (`Ok(0)`), so the port waits for the socket itself: it dispatches what
    // is waiting with `try_process` until nothing is (`Ok(None)`), then waits up to the timeout
    // for more.
    let timeout = (opts.timeout != 0).then(|| Duration::from_secs(u64::from(opts.timeout)));
    loop {
        loop {
            match handle.try_process() {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(Error::NoBufs) => {}
                Err(
                    e @ Error::Io {
                        op: "send verdicts",
                        ..
                    },
                ) => die("mnl_socket_sendto", &e),
                Err(e @ Error::Io { .. }) => die("mnl_socket_recvfrom", &e),
                Err(e) => die("mnl_cb_run", &e),
            }
        }
        match wait_readable(handle.as_fd(), timeout) {
            Ok(Wait::Readable | Wait::Interrupted) => {}
            Ok(Wait::TimedOut) => break,
            Err(e) => die_errno("mnl_socket_recvfrom", e.raw_os_error().unwrap_or(0)),
        }
    }
    drop(queue);
    drop(handle);
}

/// The C program's `queue_cb`: `-v` line, hook check, `-c` count.
fn queue_cb(packet: &Packet<'_>, opts: &Options, stats: &mut [u32; HOOKS]) {
    let hook = packet.hook().raw();
    let mut line = String::new();
    if opts.verbose > 0 {
        // (sic) hw_protocol under "hook=", in decimal; the hook under "hwproto", in hex.
        line = format!("packet hook={}, hwproto 0x{:x}", packet.hw_protocol(), hook);
    }
    if usize::from(hook) >= HOOKS {
        // The C program has printed the start of the -v line, without its newline.
        let mut out = io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
        eprintln!("Unknown hook {hook}");
        exit(1);
    }
    if opts.verbose > 0 {
        let skbinfo = packet.skb_info();
        if skbinfo.contains(SkbInfo::CSUM_NOT_READY) {
            line.push_str(" csumnotready");
        }
        if skbinfo.contains(SkbInfo::GSO) {
            line.push_str(" gso");
        }
        if skbinfo.contains(SkbInfo::CSUM_NOT_VERIFIED) {
            line.push_str(" csumnotverified");
        }
        println!("{line}");
    }
    if opts.count_packets {
        stats[usize::from(hook)] += 1;
    }
}

fn print_stats(stats: &[u32; HOOKS]) {
    let mut total: u32 = 0;
    for (hook, count) in stats.iter().enumerate() {
        println!("hook {hook} packets {count:08}");
        total = total.wrapping_add(*count);
    }
    println!("{total} packets total");
}

enum Wait {
    Readable,
    TimedOut,
    Interrupted,
}

/// Waits until `fd` is readable, for at most `timeout` (`None`: no limit).
fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<Wait> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // ppoll rather than poll: its timespec takes the C program's whole range of seconds.
    let limit = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: 0,
    });
    let limit_ptr = limit
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfd` is one valid pollfd for a descriptor that `fd` keeps open; `limit_ptr` is
    // null or points at `limit`, which outlives the call; a null signal mask leaves the mask
    // unchanged.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, limit_ptr, ptr::null()) };
    match rc {
        0 => Ok(Wait::TimedOut),
        n if n > 0 => Ok(Wait::Readable),
        _ => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(Wait::Interrupted)
            } else {
                Err(err)
            }
        }
    }
}
