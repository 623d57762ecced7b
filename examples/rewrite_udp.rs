//! Rewrite a word inside UDP datagrams on their way out: every "cat" becomes "tiger", so the
//! datagrams grow, and the receiver still gets them.
//!
//! ```text
//! cargo run --example rewrite_udp     # as root, or as a plain user (user namespaces allowed)
//! ```
//!
//! 1. The program moves into a private network namespace (only a loopback interface, its own
//!    empty firewall; your real network and rules are never touched, and it all vanishes on
//!    exit).
//! 2. It sends every UDP datagram to port 9999 over loopback (IPv4 and IPv6) to NFQUEUE queue 3,
//!    from the `OUTPUT` chain.
//! 3. Its callback copies each packet into a [`PacketBuf`], replaces every "cat" with "tiger"
//!    ([`PacketBuf::replace_all`], which also fixes the IP length, the IPv4 header checksum, the
//!    UDP length and the UDP checksum), and accepts the packet with the rewritten bytes as its
//!    new payload.
//! 4. It checks what the receiving sockets got: each datagram exactly as rewritten. The kernel
//!    does not recompute checksums of a replaced payload, and the receiving stack silently drops
//!    a datagram with a wrong one (counting it in `InCsumErrors`): that every datagram arrived,
//!    and that those counters stayed at 0, shows the checksums were right. The program verifies
//!    them in user space too. It prints `rewrite_udp OK`, or exits with status 1.

use std::fs;
use std::io::{self, ErrorKind};
use std::net::UdpSocket;
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use libnfq::pkt::{Family, PacketBuf};
use libnfq::{Handle, QueueConfig, Verdict};

const QUEUE_NUM: u16 = 3;
const PORT: u16 = 9999;
const FROM: &[u8] = b"cat";
const TO: &[u8] = b"tiger";
const MESSAGES: [&str; 5] = [
    "the cat sat on the mat",
    "cat, cat and another cat",
    "no felines here",
    "concatenate",
    "a catalogue of cats",
];
/// Hard limit for the exchange, and how long the queue must stay quiet afterwards.
const DEADLINE: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(250);

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// What the callback did with one packet.
struct Rewrite {
    family: Family,
    before: Vec<u8>,
    after: Vec<u8>,
    /// Checksums of the rewritten packet verified in user space (transport, IPv4 header).
    checksums_ok: bool,
}

fn main() -> ExitCode {
    // First, while the process has a single thread (required to enter a user namespace).
    if let Err(e) = enter_private_netns() {
        eprintln!("rewrite_udp: {e}");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(true) => {
            println!("rewrite_udp OK");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("rewrite_udp FAILED: see the checks marked FAIL above");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rewrite_udp: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Moves the process into a new network namespace: directly as root, else inside a new user
/// namespace where our uid is root (which grants CAP_NET_ADMIN there, and only there).
fn enter_private_netns() -> Result<()> {
    let before = fs::read_link("/proc/self/ns/net")?;
    // SAFETY: geteuid and getegid take no arguments and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: unshare takes only flags; the process is still single-threaded.
    if uid != 0 || unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        // SAFETY: as above.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!(
                "cannot create a private network namespace ({e}): run as root, or allow \
                 unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
            )
            .into());
        }
        match fs::write("/proc/self/setgroups", "deny") {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
        fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    if fs::read_link("/proc/self/ns/net")? == before {
        return Err("the network namespace did not change; not touching any rule".into());
    }
    tool("ip", &["link", "set", "lo", "up"])
}

/// Runs `name args...` (found in $PATH or the sbin directories), failing with its stderr.
fn tool(name: &str, args: &[&str]) -> Result<()> {
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into());
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{name} {}` failed: {}", args.join(" "), stderr.trim()).into());
    }
    Ok(())
}

/// The UDP checksum errors the namespace's stack counted, IPv4 and IPv6.
fn udp_checksum_errors() -> Result<u64> {
    let snmp = fs::read_to_string("/proc/self/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    let v4 = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .and_then(|(_, value)| value.parse::<u64>().ok());
    let snmp6 = fs::read_to_string("/proc/self/net/snmp6")?;
    let v6 = snmp6
        .lines()
        .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
        .and_then(|value| value.trim().parse::<u64>().ok());
    match (v4, v6) {
        (Some(v4), Some(v6)) => Ok(v4 + v6),
        _ => Err("no UDP checksum error counters in /proc/self/net/snmp{,6}".into()),
    }
}

/// The callback's work: every [`FROM`] in the UDP payload replaced by [`TO`]; `None` when
/// nothing was replaced.
fn rewrite(buf: &mut PacketBuf) -> Option<Rewrite> {
    let before = buf.udp()?.payload().to_vec();
    match buf.replace_all(FROM, TO) {
        Ok(0) => None,
        Ok(_) => {
            let view = buf.view().ok()?;
            let ipv4_ok = view.ipv4().map_or(true, |ip| ip.checksum_ok());
            Some(Rewrite {
                family: view.family(),
                before,
                after: view.payload()?.to_vec(),
                checksums_ok: ipv4_ok && view.transport_checksum_ok() == Some(true),
            })
        }
        Err(e) => {
            eprintln!("  not rewritten ({} bytes): {e}", buf.len());
            None
        }
    }
}

fn run() -> Result<bool> {
    let port = PORT.to_string();
    let queue = QUEUE_NUM.to_string();
    for iptables in ["iptables", "ip6tables"] {
        #[rustfmt::skip]
        tool(iptables, &["-w", "-A", "OUTPUT", "-o", "lo", "-p", "udp", "--dport", &port,
                         "-j", "NFQUEUE", "--queue-num", &queue])?;
    }
    println!(
        "In a private network namespace, UDP datagrams to port {PORT} go to queue {QUEUE_NUM}."
    );
    let sinks = [
        UdpSocket::bind(("127.0.0.1", PORT))?,
        UdpSocket::bind(("::1", PORT))?,
    ];

    let rewrites = Mutex::new(Vec::new());
    let handle = Handle::open()?;
    let _queue = handle.queue(QUEUE_NUM, QueueConfig::new(), |packet| {
        let Ok(mut buf) = PacketBuf::from_packet(packet) else {
            return Verdict::accept();
        };
        let Some(done) = rewrite(&mut buf) else {
            return Verdict::accept();
        };
        rewrites.lock().unwrap().push(done);
        // `buf.data()` is the whole rewritten IP packet: the replacement payload.
        Verdict::accept()
            .with_payload(buf.data())
            .unwrap_or_else(|_| Verdict::accept())
    })?;

    let errors_before = udp_checksum_errors()?;
    let sender = thread::spawn(|| -> io::Result<()> {
        for to in [("127.0.0.1", PORT), ("::1", PORT)] {
            let socket = UdpSocket::bind((to.0, 0))?;
            for message in MESSAGES {
                socket.send_to(message.as_bytes(), to)?;
            }
        }
        Ok(())
    });
    handle.set_recv_timeout(Some(Duration::from_millis(50)))?;
    let (start, mut last) = (Instant::now(), Instant::now());
    while start.elapsed() < DEADLINE && (!sender.is_finished() || last.elapsed() < QUIET) {
        if handle.process()? > 0 {
            last = Instant::now();
        }
    }
    sender
        .join()
        .map_err(|_| "the sender panicked")?
        .map_err(|e| format!("sender: {e}"))?;

    let mut all_ok = true;
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        all_ok &= ok;
    };
    let rewrites = std::mem::take(&mut *rewrites.lock().unwrap());
    println!("\nRewritten by the callback:");
    for r in &rewrites {
        println!(
            "  {}: {:?} ({} bytes) -> {:?} ({} bytes)",
            r.family,
            String::from_utf8_lossy(&r.before),
            r.before.len(),
            String::from_utf8_lossy(&r.after),
            r.after.len()
        );
    }
    println!("\nChecks, from the receiving side:");
    for (sink, family) in sinks.iter().zip([Family::Ipv4, Family::Ipv6]) {
        let got = drain(sink)?;
        let want: Vec<String> = MESSAGES.iter().map(|m| m.replace("cat", "tiger")).collect();
        check(
            got == want,
            if got == want {
                format!(
                    "{family}: the receiver got all {} datagrams, rewritten",
                    want.len()
                )
            } else {
                format!("{family}: the receiver got {got:?}, expected {want:?}")
            },
        );
    }
    let rewritten = MESSAGES.iter().filter(|m| m.contains("cat")).count() * 2;
    check(
        rewrites.len() == rewritten && rewrites.iter().all(|r| r.checksums_ok),
        format!(
            "{} of {rewritten} rewritten packets had right checksums, verified in user space",
            rewrites.iter().filter(|r| r.checksums_ok).count()
        ),
    );
    let errors = udp_checksum_errors()? - errors_before;
    check(
        errors == 0,
        format!("the receiving stack counted {errors} UDP checksum errors"),
    );
    Ok(all_ok)
}

/// Every datagram waiting on `sink`, as text.
fn drain(sink: &UdpSocket) -> Result<Vec<String>> {
    sink.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match sink.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(got)
            }
            Err(e) => return Err(e.into()),
        }
    }
}
