//! A packet classifier in user space: it reads each packet's headers and payload and answers
//! with a mark; later iptables rules act on the mark (here, they count).
//!
//! ```text
//! cargo run --example mark_classifier     # as root, or as a plain user (user namespaces allowed)
//! ```
//!
//! The program re-runs itself under `unshare(1)` in a private network namespace (your real
//! network and rules are never touched), then:
//!
//! 1. queues, in `OUTPUT`, UDP datagrams to ports 5353 and 6000 and TCP segments to port 8080
//!    to NFQUEUE queue 5;
//! 2. classifies each packet with zero-copy header views ([`IpPacket`]), no allocation:
//!    - UDP whose payload starts with `PRIO` gets mark `0x2` (whatever its port),
//!    - other UDP to port 5353 gets mark `0x1`,
//!    - TCP to port 8080 gets mark `0x3`,
//!    - anything else is accepted unmarked;
//! 3. sends datagrams and makes one TCP exchange over loopback;
//! 4. reads the counters of iptables rules in `INPUT` that match each mark (`-m mark`), and
//!    checks that they equal what the classifier decided, and that all traffic arrived. It
//!    prints `mark_classifier OK`, or exits with status 1.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use libnfq::pkt::IpPacket;
use libnfq::{Handle, QueueConfig, Verdict};

const QUEUE_NUM: u16 = 5;
const DNS_PORT: u16 = 5353;
const OTHER_UDP_PORT: u16 = 6000;
const WEB_PORT: u16 = 8080;

/// The marks, what earns them (also the comment of the iptables rule that counts them in
/// `INPUT`), and the traffic that rule looks at.
const CLASSES: [(u32, &str, &[&str]); 4] = [
    (0x1, "UDP to port 5353", &["-p", "udp"]),
    (0x2, "UDP payload starting with PRIO", &["-p", "udp"]),
    (0x3, "TCP to port 8080", &["-p", "tcp", "--dport", "8080"]),
    (0x0, "unmarked UDP", &["-p", "udp"]),
];

/// The datagrams sent: destination port, payload, and the mark the policy should give.
const UDP_TRAFFIC: [(u16, &[u8], u32); 7] = [
    (DNS_PORT, b"query example.org", 0x1),
    (DNS_PORT, b"query example.net", 0x1),
    (DNS_PORT, b"PRIO query, urgent", 0x2),
    (OTHER_UDP_PORT, b"PRIO telemetry", 0x2),
    (OTHER_UDP_PORT, b"PRIO alarm", 0x2),
    (OTHER_UDP_PORT, b"bulk data", 0x0),
    (OTHER_UDP_PORT, b"more bulk data", 0x0),
];

/// Set in the re-run child, inside the private namespace.
const IN_NETNS: &str = "LIBNFQ_EXAMPLE_IN_PRIVATE_NETNS";
const DEADLINE: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(250);

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// The policy: a mark for the packet, or 0 for none.
fn classify(packet: &IpPacket<'_>) -> u32 {
    if let Some(udp) = packet.udp() {
        if udp.payload().starts_with(b"PRIO") {
            return 0x2;
        }
        if udp.dst_port() == DNS_PORT {
            return 0x1;
        }
    }
    match packet.tcp() {
        Some(tcp) if tcp.dst_port() == WEB_PORT => 0x3,
        _ => 0,
    }
}

fn main() -> ExitCode {
    if std::env::var_os(IN_NETNS).is_none() {
        return rerun_in_private_netns();
    }
    match run() {
        Ok(true) => {
            println!("mark_classifier OK");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("mark_classifier FAILED: see the checks marked FAIL above");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mark_classifier: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs this program again under `unshare --net` (as root) or `unshare --user --map-root-user
/// --net` (as a plain user: root inside a user namespace of its own, with CAP_NET_ADMIN over the
/// new network namespace only), and exits with its status.
fn rerun_in_private_netns() -> ExitCode {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let namespaces: &[&str] = if root {
        &["--net"]
    } else {
        &["--user", "--map-root-user", "--net"]
    };
    let status = std::env::current_exe().and_then(|exe| {
        Command::new("unshare")
            .args(namespaces)
            .arg("--")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(IN_NETNS, "1")
            .status()
    });
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mark_classifier: cannot run unshare(1) from util-linux: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `name args...` (also looked up in the sbin directories), returning its stdout.
fn tool(name: &str, args: &[&str]) -> Result<String> {
    let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into());
    let out = Command::new(&path).args(args).output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`{name} {}` failed: {}", args.join(" "), stderr.trim()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses to touch any rule unless this namespace is a fresh one: nothing but `lo`.
fn check_private() -> Result<()> {
    let links = tool("ip", &["-o", "link", "show"])?;
    if links.lines().any(|l| !l.contains(" lo:")) {
        return Err("not in a private network namespace (interfaces besides lo)".into());
    }
    tool("ip", &["link", "set", "lo", "up"]).map(drop)
}

fn install_rules() -> Result<()> {
    let queue = QUEUE_NUM.to_string();
    let udp_ports = format!("{DNS_PORT},{OTHER_UDP_PORT}");
    let web = WEB_PORT.to_string();
    #[rustfmt::skip]
    let queue_rules: [&[&str]; 2] = [
        &["-p", "udp", "-m", "multiport", "--dports", &udp_ports],
        &["-p", "tcp", "--dport", &web],
    ];
    for matches in queue_rules {
        let target = ["-j", "NFQUEUE", "--queue-num", &queue];
        tool(
            "iptables",
            &[&["-w", "-A", "OUTPUT", "-o", "lo"], matches, &target].concat(),
        )?;
    }
    // Counting rules (no target) in INPUT, one per mark.
    for (mark, comment, matches) in CLASSES {
        let mark = format!("{mark:#x}");
        let mark_match = [
            "-m",
            "mark",
            "--mark",
            &mark,
            "-m",
            "comment",
            "--comment",
            comment,
        ];
        tool(
            "iptables",
            &[&["-w", "-A", "INPUT", "-i", "lo"], matches, &mark_match].concat(),
        )?;
    }
    Ok(())
}

/// The packet counter of each class's counting rule, in [`CLASSES`] order.
fn counted() -> Result<Vec<u64>> {
    let listing = tool("iptables", &["-w", "-L", "INPUT", "-v", "-x", "-n"])?;
    CLASSES
        .iter()
        .map(|(_, comment, _)| {
            let needle = format!("/* {comment} */");
            let line = listing
                .lines()
                .find(|l| l.contains(&needle))
                .ok_or_else(|| format!("no rule {needle} in INPUT"))?;
            let packets = line.split_whitespace().next().unwrap_or_default();
            Ok(packets.parse()?)
        })
        .collect()
}

/// The traffic: [`UDP_TRAFFIC`], then one TCP echo exchange. Returns the echo.
fn send_traffic(listener: TcpListener) -> Result<Vec<u8>> {
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    for (port, payload, _) in UDP_TRAFFIC {
        udp.send_to(payload, ("127.0.0.1", port))?;
    }
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(DEADLINE))?;
        let mut data = Vec::new();
        conn.read_to_end(&mut data)?;
        conn.write_all(&data)
    });
    let mut client = TcpStream::connect(("127.0.0.1", WEB_PORT))?;
    client.set_read_timeout(Some(DEADLINE))?;
    client.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    client.shutdown(Shutdown::Write)?;
    let mut echo = Vec::new();
    client.read_to_end(&mut echo)?;
    server.join().map_err(|_| "the echo server panicked")??;
    Ok(echo)
}

fn run() -> Result<bool> {
    check_private()?;
    install_rules()?;
    let receivers = [
        UdpSocket::bind(("127.0.0.1", DNS_PORT))?,
        UdpSocket::bind(("127.0.0.1", OTHER_UDP_PORT))?,
    ];
    let listener = TcpListener::bind(("127.0.0.1", WEB_PORT))?;
    println!(
        "Classifying UDP to ports {DNS_PORT} and {OTHER_UDP_PORT} and TCP to port {WEB_PORT}:"
    );

    // (mark, what the packet was) for each packet, as decided.
    let decisions = Mutex::new(Vec::new());
    let handle = Handle::open()?;
    let _queue = handle.queue(QUEUE_NUM, QueueConfig::new(), |packet| {
        let Ok(view) = IpPacket::parse(packet.payload()) else {
            return Verdict::accept();
        };
        let mark = classify(&view);
        let (proto, port, payload) = match (view.udp(), view.tcp()) {
            (Some(u), _) => ("UDP", u.dst_port(), u.payload()),
            (_, Some(t)) => ("TCP", t.dst_port(), t.payload()),
            _ => ("?", 0, &[][..]),
        };
        println!(
            "  {proto} to port {port:<5} {:<22} -> mark {mark:#x}",
            format!("{:?}", String::from_utf8_lossy(payload))
        );
        decisions.lock().unwrap().push(mark);
        if mark == 0 {
            Verdict::accept()
        } else {
            Verdict::accept().with_mark(mark)
        }
    })?;

    let traffic = thread::spawn(move || send_traffic(listener).map_err(|e| e.to_string()));
    handle.set_recv_timeout(Some(Duration::from_millis(50)))?;
    let (start, mut last) = (Instant::now(), Instant::now());
    while start.elapsed() < DEADLINE && (!traffic.is_finished() || last.elapsed() < QUIET) {
        if handle.process()? > 0 {
            last = Instant::now();
        }
    }
    let echo = traffic
        .join()
        .map_err(|_| "the traffic thread panicked")??;

    let mut all_ok = true;
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        all_ok &= ok;
    };
    println!("\nChecks:");
    let decided = std::mem::take(&mut *decisions.lock().unwrap());
    let counts = counted()?;
    for ((mark, comment, _), counted) in CLASSES.iter().zip(counts) {
        let marked = decided.iter().filter(|m| *m == mark).count() as u64;
        // TCP segments are as many as the stack sends; the datagrams are known.
        let expected = UDP_TRAFFIC.iter().filter(|(_, _, m)| m == mark).count() as u64;
        let plausible = if *mark == 0x3 {
            marked > 0
        } else {
            marked == expected
        };
        check(
            plausible && counted == marked,
            format!(
                "mark {mark:#x} ({comment}): the classifier marked {marked}, iptables counted \
                 {counted} arriving"
            ),
        );
    }
    let received: usize = receivers.iter().map(|r| drain(r).unwrap_or(0)).sum();
    check(
        received == UDP_TRAFFIC.len(),
        format!("{received} of {} datagrams arrived", UDP_TRAFFIC.len()),
    );
    check(
        echo == b"GET / HTTP/1.0\r\n\r\n",
        format!(
            "the TCP echo came back: {:?}",
            String::from_utf8_lossy(&echo)
        ),
    );
    Ok(all_ok)
}

/// How many datagrams are waiting on `socket`.
fn drain(socket: &UdpSocket) -> Result<usize> {
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    loop {
        match socket.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(n)
            }
            Err(e) => return Err(e.into()),
        }
    }
}
