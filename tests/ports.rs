//! Runs the ports of the C programs (examples `nfqnl_test`, `nf-queue`, `selftest_nf_queue`) in
//! network namespaces, against known traffic, and checks their output line by line against what
//! the C originals print for that traffic (byte for byte; the expected lines were also
//! cross-checked by running the C programs on the same traffic on Linux 6.18).
//!
//! The example binaries are looked up next to the test binary, in `target/<profile>/examples/`.
//! Plain `cargo test` builds them; `cargo test --test ports` does not, so run
//! `cargo build --examples` first in that case: the tests fail (rather than test a stale
//! binary) when an example binary is missing or older than its sources.
//!
//! Timeouts here only keep a broken port from hanging the suite; nothing asserts on time.

// Not every helper of the shared support module is used here.
#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use support::{udp_send, Netns, RawQueue, UdpSink};

/// How long to wait for a line or an exit before declaring the port stuck.
const HANG: Duration = Duration::from_secs(30);
/// Quiet time after which a sink is considered to have received everything.
const QUIET: Duration = Duration::from_millis(300);
/// UDP port nobody listens on; INPUT rules queue datagrams to it.
const INPUT_PORT: u16 = 9;
/// `SO_NO_CHECK` (asm-generic/socket.h): send UDP over IPv4 without a checksum, so the packet is
/// `CHECKSUM_NONE` instead of `CHECKSUM_PARTIAL` (no `NFQA_SKB_CSUMNOTREADY`).
const SO_NO_CHECK: libc::c_int = 11;
/// `UDP_SEGMENT` (linux/udp.h): UDP GSO, one send becomes one GSO packet of several segments.
const UDP_SEGMENT: libc::c_int = 103;

// ---------------------------------------------------------------------------------------------
// Running a port

/// The example binary `name`, built by cargo next to this test's `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps/");
    let bin = profile_dir.join("examples").join(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "example binary {} not found ({e}): plain `cargo test` builds the examples, \
                 `cargo test --test ports` does not (run `cargo build --examples` first)",
                bin.display()
            )
        });
    // Stale when its source, or a library source, changed after it was built. Library sources
    // changed after this test binary was built are left out: the test binary does not reflect
    // them either (and another edit may be under way).
    let tested = std::fs::metadata(&exe)
        .and_then(|m| m.modified())
        .expect("test binary's mtime");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mtime = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let stale = |source: &Path| {
        panic!(
            "example binary {} is older than {}: rebuild it (`cargo build --examples`, or plain \
             `cargo test`, which builds the examples; `cargo test --test ports` does not)",
            bin.display(),
            source.display()
        )
    };
    let own = root.join("examples").join(format!("{name}.rs"));
    if mtime(&own) > built {
        stale(&own);
    }
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("src/ entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if mtime(&path) > built && mtime(&path) <= tested {
                stale(&path);
            }
        }
    }
    bin
}

/// A running port: its stdout arrives line by line, its stderr is collected.
struct Port {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    seen: Vec<String>,
}

impl Port {
    /// Starts example `name` with `args`. Called on the test thread after `enter!()`, so the
    /// child runs in the test's network namespace (`_ns` proves it).
    fn spawn(_ns: &Netns, name: &str, args: &[&str]) -> Port {
        Port::spawn_cmd(name, Command::new(example(name)).args(args))
    }

    fn spawn_cmd(name: &str, cmd: &mut Command) -> Port {
        Port::try_spawn_cmd(name, cmd).unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    fn try_spawn_cmd(name: &str, cmd: &mut Command) -> std::io::Result<Port> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut raw = Vec::new();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if raw.last() == Some(&b'\n') {
                            raw.pop();
                        }
                        if tx.send(String::from_utf8_lossy(&raw).into_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Port {
            name: name.to_string(),
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        })
    }

    /// The next line of standard output (without its newline).
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(HANG) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!(
                "{}: no further line on stdout ({e:?}); lines so far:\n{}",
                self.name,
                self.seen.join("\n")
            ),
        }
    }

    /// Asserts that the next lines are exactly `expected`.
    fn expect_lines(&mut self, expected: &[String]) {
        for want in expected {
            let got = self.line();
            assert_eq!(
                &got,
                want,
                "{}: unexpected stdout line; lines so far:\n{}",
                self.name,
                self.seen.join("\n")
            );
        }
    }

    /// Kills the port; returns the stdout lines not read yet and its stderr.
    fn kill(mut self) -> (Vec<String>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let rest = self.rest();
        let stderr = self.stderr();
        (rest, stderr)
    }

    /// Waits for the port to exit by itself; returns its status, the stdout lines not read yet
    /// and its stderr.
    fn wait(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit; stdout so far:\n{}",
                self.name,
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = self.rest();
        let stderr = self.stderr();
        (status, rest, stderr)
    }

    fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(HANG) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("{}: stdout stays open", self.name),
            }
        }
    }

    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().expect("stderr reader"))
            .unwrap_or_default()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Our own child, by its handle; a no-op when it has exited and been waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs example `name` to completion (for argument errors, which exit before opening a
/// socket): exit status, stdout, stderr. In the test's namespace all the same, so that a broken
/// port that goes on to bind a queue does it there; killed if it does not exit.
fn run_to_exit(_ns: &Netns, name: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader"),
    )
}

// ---------------------------------------------------------------------------------------------
// The namespace and its traffic

/// Waits until queue `num` is bound in the namespace (by the port: the namespace is fresh).
fn wait_bound(ns: &Netns, num: u16) -> support::QueueStats {
    assert!(
        support::wait_until(HANG, || ns.queue_stat(num).is_some()),
        "queue {num} never got bound; queues: {:?}",
        ns.queue_stats()
    );
    ns.queue_stat(num).expect("bound")
}

/// The loopback interface's index in the namespace (`ip -o link show lo`: `1: lo: ...`).
fn lo_index(ns: &Netns) -> u32 {
    let out = ns.ip_output(&["-o", "link", "show", "lo"]);
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse `ip -o link show lo`: {out:?}"))
}

/// The kernel reports a socket owner's uid and gid as seen from the initial user namespace
/// (`from_kuid_munged(&init_user_ns, ...)`): map this process's effective ids through
/// `/proc/self/{uid,gid}_map` (identity when running as root on the host, the real ids in the
/// user namespace the support code re-runs a plain user's test in).
fn kernel_ids() -> (u32, u32) {
    fn map(file: &str, id: u32) -> u32 {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        for line in text.lines() {
            let f: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().expect("number in id map"))
                .collect();
            let (inside, outside, count) = (f[0], f[1], f[2]);
            let id = u64::from(id);
            if id >= inside && id < inside + count {
                return (outside + (id - inside)) as u32;
            }
        }
        panic!("id {id} not mapped in {file}: {text:?}")
    }
    // SAFETY: geteuid/getegid take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    (
        map("/proc/self/uid_map", uid),
        map("/proc/self/gid_map", gid),
    )
}

/// A connected UDP socket with one integer socket option set.
fn udp_with_option(to: SocketAddr, level: libc::c_int, name: libc::c_int, value: i32) -> UdpSocket {
    let bind = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(bind).expect("bind sender");
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
    sock.connect(to).expect("connect sender");
    sock
}

/// Sends `len` bytes as one datagram without a UDP checksum (IPv4).
fn send_no_checksum(to: SocketAddr, len: usize) {
    let sock = udp_with_option(to, libc::SOL_SOCKET, SO_NO_CHECK, 1);
    assert_eq!(sock.send(&vec![b'n'; len]).expect("send"), len);
}

/// Sends `len` bytes as one UDP GSO packet of `segment`-byte datagrams.
fn send_gso(to: SocketAddr, len: usize, segment: u16) {
    let sock = udp_with_option(to, libc::SOL_UDP, UDP_SEGMENT, i32::from(segment));
    assert_eq!(sock.send(&vec![b'g'; len]).expect("send GSO"), len);
}

fn send(to: SocketAddr, len: usize) {
    udp_send(to, &[&vec![b'x'; len]]);
}

/// The lengths of the datagrams `sink` received.
fn received(sink: &UdpSink) -> Vec<usize> {
    sink.recv_until_quiet(QUIET, 10_000)
        .iter()
        .map(Vec::len)
        .collect()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// nfqnl_test

const NFQNL_SETUP: [&str; 8] = [
    "opening library handle",
    "unbinding existing nf_queue handler for AF_INET (if any)",
    "binding nfnetlink_queue as nf_queue handler for AF_INET",
    "binding this socket to queue '3'",
    "setting copy_packet mode",
    "setting flags to request UID and GID",
    "setting flags to request security context",
    "Waiting for packets...",
];

#[test]
fn nfqnl_test_prints_what_the_c_program_prints() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    let sink6 = UdpSink::bind("[::1]:0");
    ns.queue_udp_port(sink.port(), 3);
    ns.queue_port(true, "OUTPUT", "udp", sink6.port(), 3);
    ns.queue_port(false, "INPUT", "udp", INPUT_PORT, 3);
    let lo = lo_index(&ns);
    let (uid, gid) = kernel_ids();
    let input: SocketAddr = ([127, 0, 0, 1], INPUT_PORT).into();

    let mut port = Port::spawn(&ns, "nfqnl_test", &["3"]);
    port.expect_lines(&lines(&NFQNL_SETUP));
    // NFQNL_COPY_PACKET with range 0xffff, which the kernel clamps to 65531.
    let st = wait_bound(&ns, 3);
    assert_eq!((st.copy_mode, st.copy_range), (2, 65531), "{st:?}");

    // One datagram per receive: `pkt received`, the packet line (ending with a space), then
    // `entering callback`. OUTPUT packets from a local socket carry outdev, uid and gid.
    let out = |id: u32, len: usize| {
        lines(&[
            "pkt received",
            &format!(
                "hw_protocol=0x0800 hook=3 id={id} outdev={lo} uid={uid} gid={gid} payload_len={len} "
            ),
            "entering callback",
        ])
    };
    send(sink.addr(), 5);
    port.expect_lines(&out(1, 20 + 8 + 5));
    // Over 4 KiB: the C program's 4096-byte buffer stalls here; the port prints it.
    send(sink.addr(), 5000);
    port.expect_lines(&out(2, 5028));
    // The largest UDP datagram: 65535 bytes, copied up to the 65531-byte range.
    send(sink.addr(), 65507);
    port.expect_lines(&out(3, 65531));
    // IPv6: hw_protocol 0x86dd, 40-byte header.
    send(sink6.addr(), 10);
    port.expect_lines(&lines(&[
        "pkt received",
        &format!(
            "hw_protocol=0x86dd hook=3 id=4 outdev={lo} uid={uid} gid={gid} payload_len={} ",
            40 + 8 + 10
        ),
        "entering callback",
    ]));
    // INPUT (hook 1) on lo: the (all-zero) source MAC and indev, no socket hence no uid/gid.
    send(input, 7);
    port.expect_lines(&lines(&[
        "pkt received",
        &format!("hw_protocol=0x0800 hook=1 id=5 hw_src_addr=00:00:00:00:00:00 indev={lo} payload_len=35 "),
        "entering callback",
    ]));
    // A UDP GSO send: without NFQA_CFG_F_GSO the kernel queues its three segments one by one.
    send_gso(sink.addr(), 3000, 1000);
    for id in 6..=8 {
        port.expect_lines(&out(id, 1028));
    }

    // Every packet was accepted.
    assert_eq!(received(&sink), vec![5, 5000, 65507, 1000, 1000, 1000]);
    assert_eq!(received(&sink6), vec![10]);

    let (rest, stderr) = port.kill();
    assert_eq!(rest, Vec::<String>::new(), "unexpected further output");
    // A kernel without CONFIG_NETWORK_SECMARK refuses the flag; the C program warns then.
    assert!(
        stderr.is_empty()
            || stderr == "This kernel version does not allow to retrieve security context.\n",
        "stderr: {stderr:?}"
    );
}

#[test]
fn nfqnl_test_rejects_a_queue_number_above_65535() {
    let Some(ns) = support::enter!() else { return };
    let path = example("nfqnl_test");
    // atoi("99999999999") keeps the low 32 bits of the long: 1215752191.
    for arg in ["65536", "-1", "99999999999"] {
        let (status, stdout, stderr) = run_to_exit(&ns, "nfqnl_test", &[arg]);
        assert_eq!(status.code(), Some(1), "argument {arg}");
        assert_eq!(stdout, "", "argument {arg}");
        assert_eq!(
            stderr,
            format!("Usage: {} [<0-65535>]\n", path.display()),
            "argument {arg}"
        );
    }
}

#[test]
fn nfqnl_test_reports_a_queue_held_by_another_socket() {
    let Some(ns) = support::enter!() else { return };
    let create_failed = |queue: u16| {
        (
            lines(&[
                "opening library handle",
                "unbinding existing nf_queue handler for AF_INET (if any)",
                "binding nfnetlink_queue as nf_queue handler for AF_INET",
                &format!("binding this socket to queue '{queue}'"),
            ]),
            "error during nfq_create_queue()\n".to_string(),
        )
    };
    // atoi(" 6x") is 6.
    let _q6 = RawQueue::bind(6, 0xffff);
    let (status, rest, stderr) = Port::spawn(&ns, "nfqnl_test", &[" 6x"]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!((rest, stderr), create_failed(6));
    // Any number of arguments but one: queue 0.
    let _q0 = RawQueue::bind(0, 0xffff);
    let (status, rest, stderr) = Port::spawn(&ns, "nfqnl_test", &["7", "8"]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!((rest, stderr), create_failed(0));
}

#[test]
fn nfqnl_test_without_cap_net_admin_fails_at_unbind_pf() {
    let Some(ns) = support::enter!() else { return };
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root_on_host = unsafe { libc::geteuid() } == 0
        && std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    if !root_on_host {
        // In the support code's user namespace there is no other uid to switch to. (Straight to
        // stderr, past libtest's capture, like the support code's SKIPPED lines.)
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {}: needs root on the host to run the port as another uid",
            support::test_name!()
        );
        return;
    }
    // `nobody`: no CAP_NET_ADMIN, so the kernel refuses every NFQUEUE message.
    let mut cmd = Command::new(example("nfqnl_test"));
    cmd.uid(65534).gid(65534);
    let port = match Port::try_spawn_cmd("nfqnl_test", &mut cmd) {
        Ok(port) => port,
        // A checkout nobody may read (under /root, say).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {}: uid 65534 cannot run the example binary: {e}",
                support::test_name!()
            );
            return;
        }
        Err(e) => panic!("cannot start nfqnl_test as uid 65534: {e}"),
    };
    let (status, rest, stderr) = port.wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        rest,
        lines(&[
            "opening library handle",
            "unbinding existing nf_queue handler for AF_INET (if any)",
        ])
    );
    assert_eq!(stderr, "error during nfq_unbind_pf()\n");
    assert_eq!(ns.queue_stat(0), None);
}

// ---------------------------------------------------------------------------------------------
// nf-queue

#[test]
fn nf_queue_prints_what_the_c_program_prints() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    let sink6 = UdpSink::bind("[::1]:0");
    ns.queue_udp_port(sink.port(), 2);
    ns.queue_port(true, "OUTPUT", "udp", sink6.port(), 2);
    ns.queue_port(false, "INPUT", "udp", INPUT_PORT, 2);
    let input: SocketAddr = ([127, 0, 0, 1], INPUT_PORT).into();

    let mut port = Port::spawn(&ns, "nf-queue", &["2"]);
    let st = wait_bound(&ns, 2);
    assert_eq!((st.copy_mode, st.copy_range), (2, 65531), "{st:?}");

    // Sent from a local socket through lo (which offloads checksums): CHECKSUM_PARTIAL, so
    // ", checksum not ready" (NFQA_SKB_CSUMNOTREADY), kept because the queue has the GSO flag.
    send(sink.addr(), 5);
    port.expect_lines(&lines(&[
        "packet received (id=1 hw=0x0800 hook=3, payload len 33, checksum not ready)",
    ]));
    // Without a UDP checksum the packet is CHECKSUM_NONE: no suffix.
    send_no_checksum(sink.addr(), 6);
    port.expect_lines(&lines(&[
        "packet received (id=2 hw=0x0800 hook=3, payload len 34)",
    ]));
    // 65535 bytes, longer than the copy range: NFQA_CAP_LEN differs from the payload length.
    send(sink.addr(), 65507);
    port.expect_lines(&lines(&[
        "truncated packet received (id=3 hw=0x0800 hook=3, payload len 65531, checksum not ready)",
    ]));
    // With NFQA_CFG_F_GSO the GSO packet comes whole: 20 + 8 + 3000 bytes.
    send_gso(sink.addr(), 3000, 1000);
    port.expect_lines(&lines(&[
        "GSO packet received (id=4 hw=0x0800 hook=3, payload len 3028, checksum not ready)",
    ]));
    send(sink6.addr(), 10);
    port.expect_lines(&lines(&[
        "packet received (id=5 hw=0x86dd hook=3, payload len 58, checksum not ready)",
    ]));
    send(input, 7);
    port.expect_lines(&lines(&[
        "packet received (id=6 hw=0x0800 hook=1, payload len 35, checksum not ready)",
    ]));

    // Every packet was accepted, the truncated one whole.
    assert_eq!(received(&sink), vec![5, 6, 65507, 1000, 1000, 1000]);
    assert_eq!(received(&sink6), vec![10]);

    let (rest, stderr) = port.kill();
    assert_eq!(rest, Vec::<String>::new(), "unexpected further output");
    assert_eq!(stderr, "");
}

#[test]
fn nf_queue_usage_needs_exactly_one_argument() {
    let Some(ns) = support::enter!() else { return };
    let path = example("nf-queue");
    for args in [&[][..], &["1", "2"][..]] {
        let (status, stdout, stderr) = run_to_exit(&ns, "nf-queue", args);
        assert_eq!(status.code(), Some(1), "{args:?}");
        // On standard output, as the C program prints it.
        assert_eq!(
            stdout,
            format!("Usage: {} [queue_num]\n", path.display()),
            "{args:?}"
        );
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn nf_queue_reports_a_refused_bind_and_keeps_the_low_16_bits() {
    let Some(ns) = support::enter!() else { return };
    let _held = RawQueue::bind(4, 0xffff);
    let (status, rest, stderr) = Port::spawn(&ns, "nf-queue", &["4"]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(rest, Vec::<String>::new());
    assert_eq!(stderr, "mnl_cb_run: Operation not permitted\n");

    // 65538 = 0x10002: nfq_nlmsg_put keeps htons(queue_num), queue 2.
    let port = Port::spawn(&ns, "nf-queue", &["65538"]);
    wait_bound(&ns, 2);
    assert_eq!(ns.queue_stats().len(), 2, "{:?}", ns.queue_stats());
    let (rest, stderr) = port.kill();
    assert_eq!((rest, stderr), (Vec::new(), String::new()));
}

// ---------------------------------------------------------------------------------------------
// selftest_nf_queue

#[test]
fn selftest_nf_queue_argument_errors() {
    let Some(ns) = support::enter!() else { return };
    let cases: [(&[&str], &str); 10] = [
        (&["-d", "0"], "Expected nonzero delay (in milliseconds)\n"),
        (&["-d0"], "Expected nonzero delay (in milliseconds)\n"),
        (&["-Q", "65536"], "Expected destination queue number\n"),
        (&["-Q", "-1"], "Expected destination queue number\n"),
        (
            &["-Q", "0"],
            "Cannot use same destination and source queue\n",
        ),
        (
            &["-q", "3", "-Q3"],
            "Cannot use same destination and source queue\n",
        ),
        (
            &["-Q", "5", "-q", "5"],
            "Cannot use same destination and source queue\n",
        ),
        // -q above 65535 means queue 0.
        (
            &["-q", "70000", "-Q", "0"],
            "Cannot use same destination and source queue\n",
        ),
        // Options act in order: the first error wins.
        (
            &["-d", "0", "-Q", "70000"],
            "Expected nonzero delay (in milliseconds)\n",
        ),
        (
            &["-Q", "70000", "-d", "0"],
            "Expected destination queue number\n",
        ),
    ];
    for (args, message) in cases {
        let (status, stdout, stderr) = run_to_exit(&ns, "selftest_nf_queue", args);
        assert_eq!(status.code(), Some(1), "{args:?}");
        assert_eq!(stdout, "", "{args:?}");
        assert_eq!(stderr, message, "{args:?}");
    }

    let usage = format!(
        "Usage: {} [-c|-v [-vv] ] [-o] [-t timeout] [-q queue_num] [-Qdst_queue ] [ -d ms_delay ] [-G]\n",
        example("selftest_nf_queue").display()
    );
    for args in [&["-h"][..], &["-ch"][..]] {
        let (status, stdout, stderr) = run_to_exit(&ns, "selftest_nf_queue", args);
        assert_eq!(status.code(), Some(0), "{args:?}");
        assert_eq!(
            (stdout.as_str(), stderr.as_str()),
            (usage.as_str(), ""),
            "{args:?}"
        );
    }
}

#[test]
fn selftest_nf_queue_verbose_lines_and_counts() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    let sink6 = UdpSink::bind("[::1]:0");
    ns.queue_udp_port(sink.port(), 5);
    ns.queue_port(true, "OUTPUT", "udp", sink6.port(), 5);
    ns.queue_port(false, "INPUT", "udp", INPUT_PORT, 5);
    let input: SocketAddr = ([127, 0, 0, 1], INPUT_PORT).into();

    // Grouped options and an attached argument, as getopt allows.
    let mut port = Port::spawn(&ns, "selftest_nf_queue", &["-cv", "-t4", "-q", "5"]);
    let st = wait_bound(&ns, 5);
    assert_eq!((st.copy_mode, st.copy_range), (2, 65531), "{st:?}");

    // (sic) "hook=" shows the hw protocol in decimal (2048 = 0x0800), "hwproto" the hook.
    send(sink.addr(), 5);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3 csumnotready"]));
    send_no_checksum(sink.addr(), 6);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3"]));
    // Received without a checksum the stack has checked: NFQA_SKB_CSUM_NOTVERIFIED.
    send_no_checksum(input, 7);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x1 csumnotverified"]));
    // GSO is on by default: one GSO packet.
    send_gso(sink.addr(), 3000, 1000);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3 csumnotready gso"]));
    send(sink6.addr(), 10);
    port.expect_lines(&lines(&["packet hook=34525, hwproto 0x3 csumnotready"]));
    send(input, 7);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x1 csumnotready"]));

    assert_eq!(received(&sink), vec![5, 6, 1000, 1000, 1000]);
    assert_eq!(received(&sink6), vec![10]);

    // No packet for 4 seconds: the program ends normally and prints the counts.
    let (status, rest, stderr) = port.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(
        rest,
        lines(&[
            "hook 0 packets 00000000",
            "hook 1 packets 00000002",
            "hook 2 packets 00000000",
            "hook 3 packets 00000004",
            "hook 4 packets 00000000",
            "6 packets total",
        ])
    );
    assert_eq!(stderr, "");
}

#[test]
fn selftest_nf_queue_without_gso_gets_segments() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 6);

    let mut port = Port::spawn(
        &ns,
        "selftest_nf_queue",
        &["-vv", "-G", "-t", "4", "-q", "6"],
    );
    wait_bound(&ns, 6);
    // Without NFQA_CFG_F_GSO the kernel segments the GSO packet (and completes checksums)
    // before queueing: three plain packets.
    send_gso(sink.addr(), 3000, 1000);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3"; 3]));
    send(sink.addr(), 5);
    port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3"]));
    assert_eq!(received(&sink), vec![1000, 1000, 1000, 5]);

    // No -c: nothing more at exit.
    let (status, rest, stderr) = port.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!((rest, stderr), (Vec::new(), String::new()));
}

#[test]
fn selftest_nf_queue_requeues_with_dst_queue() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 7);
    // Queue 8 is held by a socket that never reads: re-queued packets wait there.
    let _dst = RawQueue::bind(8, 0xffff);

    let mut port = Port::spawn(
        &ns,
        "selftest_nf_queue",
        &["-q", "7", "-Q", "8", "-d", "1", "-v", "-t", "4"],
    );
    wait_bound(&ns, 7);
    for _ in 0..3 {
        send(sink.addr(), 5);
        port.expect_lines(&lines(&["packet hook=2048, hwproto 0x3 csumnotready"]));
    }
    // The verdict NF_QUEUE to 8 moved them there; none reached the receiver.
    assert!(
        support::wait_until(HANG, || ns.queue_stat(8).is_some_and(|q| q.queued == 3)),
        "{:?}",
        ns.queue_stats()
    );
    assert_eq!(received(&sink), Vec::<usize>::new());

    let (status, rest, stderr) = port.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!((rest, stderr), (Vec::new(), String::new()));
}

#[test]
fn selftest_nf_queue_fail_open_accepts_what_does_not_fit() {
    let Some(ns) = support::enter!() else { return };
    // Two runs: -o, and the same without it. The port holds the first packet for a minute
    // (-d 60000), so the queue (1024 packets) and the socket buffer fill up; then the kernel
    // accepts the packets that do not fit with FAIL_OPEN, and drops them without it.
    let mut got = Vec::new();
    for (queue, fail_open) in [(9u16, true), (10, false)] {
        let sink = UdpSink::bind("127.0.0.1:0");
        ns.queue_udp_port(sink.port(), queue);
        let q = queue.to_string();
        let mut args = vec!["-q", q.as_str(), "-d", "60000"];
        if fail_open {
            args.push("-o");
        }
        let port = Port::spawn(&ns, "selftest_nf_queue", &args);
        wait_bound(&ns, queue);
        // One socket per datagram: a queued packet counts against its socket's send buffer,
        // which would otherwise fill up (and block) before the queue does. Send results are
        // ignored: a packet the kernel could not queue may fail its send.
        for _ in 0..1100 {
            let _ = support::udp_send_each(sink.addr(), &[b"fail-open?"]);
        }
        let st = ns.queue_stat(queue).expect("bound");
        got.push((fail_open, received(&sink).len(), st));
        drop(port); // killed
    }
    let (_, accepted, st) = got[0];
    assert!(accepted > 0, "-o: nothing got through ({st:?})");
    let (_, accepted, st) = got[1];
    assert_eq!(accepted, 0, "without -o: {st:?}");
    assert!(st.queue_dropped + st.user_dropped > 0, "without -o: {st:?}");
}

#[test]
fn selftest_nf_queue_reports_a_refused_bind() {
    let Some(ns) = support::enter!() else { return };
    let _held = RawQueue::bind(11, 0xffff);
    let (status, rest, stderr) =
        Port::spawn(&ns, "selftest_nf_queue", &["-q", "11", "-t", "1"]).wait();
    assert_eq!(status.code(), Some(1));
    assert_eq!(rest, Vec::<String>::new());
    assert_eq!(stderr, "mnl_cb_run: Operation not permitted\n");
}

#[test]
fn selftest_nf_queue_queue_above_65535_is_queue_0() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 0);
    // Also: an unknown option is reported by getopt and ignored.
    let port = Port::spawn(
        &ns,
        "selftest_nf_queue",
        &["-c", "-x", "-t", "3", "-q", "70000"],
    );
    wait_bound(&ns, 0);
    send(sink.addr(), 5);
    assert_eq!(received(&sink), vec![5]);
    let (status, rest, stderr) = port.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(
        rest,
        lines(&[
            "hook 0 packets 00000000",
            "hook 1 packets 00000000",
            "hook 2 packets 00000000",
            "hook 3 packets 00000001",
            "hook 4 packets 00000000",
            "1 packets total",
        ])
    );
    assert_eq!(
        stderr,
        format!(
            "{}: invalid option -- 'x'\n",
            example("selftest_nf_queue").display()
        )
    );
}
