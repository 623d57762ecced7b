//! Your first NFQUEUE program: a tiny firewall that runs in user space.
//!
//! ```text
//! cargo run --example demo        # as root, or as a plain user (see below)
//! ```
//!
//! What it does, step by step:
//!
//! 1. It moves itself into a **private network namespace**: a fresh, empty copy of the
//!    network stack with only a loopback interface. Your real interfaces and firewall rules are
//!    never touched, and the namespace (with every rule the demo adds) disappears when the demo
//!    exits. As root it simply calls `unshare(CLONE_NEWNET)`; as a plain user it first creates a
//!    user namespace in which it is "root" (this needs unprivileged user namespaces, which most
//!    distributions allow; the demo tells you what to do if yours does not).
//! 2. Inside, it adds iptables rules that send ("queue") every packet going to UDP port 9999 or
//!    TCP port 9998 to NFQUEUE queue 7, plus one rule that only counts packets carrying the
//!    mark `0x2a` when they arrive.
//! 3. It binds queue 7 with libnfq. From then on the kernel pauses each of those packets and
//!    asks our callback what to do with it; the callback answers with a [`Verdict`]:
//!    - text containing `drop` is dropped,
//!    - text containing `mark` is accepted with the mark `0x2a`,
//!    - everything else is accepted.
//! 4. It sends ten UDP datagrams (`hello 0` ... `hello 9`) and makes one TCP echo round trip, all
//!    over `127.0.0.1`, and prints one table row per packet the callback saw.
//! 5. It then checks, from the receiving side, that the verdicts really took effect: the dropped
//!    datagrams never arrived, the others did, the TCP echo came back, and the iptables counter
//!    of marked packets equals the number of packets the callback marked. It prints `demo OK`
//!    only when every check passed, and exits with status 1 otherwise.
//!
//! Requirements: Linux, the `iptables` and `ip` (iproute2) commands, libnetfilter_queue.

use std::error::Error;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{Action, Handle, Hook, Packet, QueueConfig, Verdict};

/// The NFQUEUE queue number the demo binds.
const QUEUE_NUM: u16 = 7;
/// Destination ports whose packets are queued.
const UDP_PORT: u16 = 9999;
const TCP_PORT: u16 = 9998;
/// The mark our verdicts put on packets whose text contains "mark".
const DEMO_MARK: u32 = 0x2a;
/// Comment of the iptables rule that counts marked packets arriving in INPUT.
const MARK_COMMENT: &str = "libnfq-demo: arrived with the mark set by a verdict";

const UDP_MESSAGES: [&str; 10] = [
    "hello 0",
    "hello 1",
    "hello 2 (drop me)",
    "hello 3 (mark me)",
    "hello 4",
    "hello 5",
    "hello 6 (drop me)",
    "hello 7",
    "hello 8 (mark me)",
    "hello 9",
];
const TCP_MESSAGE: &str = "hello over TCP (mark me)";

/// Hard limit for the whole packet exchange (it normally takes well under a second).
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(5);
/// How long the queue must stay quiet after the traffic ended before we stop listening.
const QUIET_PERIOD: Duration = Duration::from_millis(250);
/// Timeout of every blocking socket operation of the traffic, so nothing can hang.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

type DemoResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn main() -> ExitCode {
    // Must come first, while the process is still single-threaded: the kernel refuses to move
    // a multi-threaded process into a new user namespace.
    let mode = match enter_private_netns() {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&mode) {
        Ok(true) => {
            println!("demo OK");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("demo FAILED: see the checks marked FAIL above");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: the private network namespace
// ---------------------------------------------------------------------------------------------

/// How the demo got its private network namespace.
enum Mode {
    /// As root: a new network namespace only.
    Root,
    /// As a plain user: a new user namespace (where `uid` is mapped to root) and a network
    /// namespace owned by it.
    UserNamespace { uid: u32 },
}

fn enter_private_netns() -> DemoResult<Mode> {
    let before = netns_id()?;
    // SAFETY: geteuid(2) and getegid(2) take no arguments and always succeed.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };

    // Root simply gets a new network namespace (root without CAP_SYS_ADMIN, e.g. in a
    // container, falls through to the user-namespace way below).
    let as_root = if uid == 0 {
        unshare(libc::CLONE_NEWNET)
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    };
    let mode = if as_root.is_ok() {
        Mode::Root
    } else {
        if let Err(e) = unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) {
            let root_err = as_root.err().filter(|_| uid == 0);
            return Err(no_namespace_help(&e, root_err.as_ref()).into());
        }
        // Map our own uid/gid to root inside the new user namespace; this gives us
        // CAP_NET_ADMIN over the new network namespace (and nothing outside it).
        // `setgroups` must be denied before an unprivileged process may write `gid_map`; the
        // file does not exist on kernels older than 3.19.
        match fs::write("/proc/self/setgroups", "deny") {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(format!("demo: error: write /proc/self/setgroups: {e}").into())
            }
            _ => {}
        }
        fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .map_err(|e| format!("demo: error: write /proc/self/uid_map: {e}"))?;
        fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .map_err(|e| format!("demo: error: write /proc/self/gid_map: {e}"))?;
        Mode::UserNamespace { uid }
    };

    // Belt and braces: never run a single iptables command in the host's namespace.
    if netns_id()? == before {
        let msg = "demo: error: the network namespace did not change; not touching any rule";
        return Err(msg.into());
    }
    if !has_cap_net_admin() {
        return Err(format!(
            "demo: the new namespace was created, but without the CAP_NET_ADMIN capability in it.\n\
             A security module may restrict user namespaces; on Ubuntu 23.10 and later:\n\
             \x20   sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0\n\
             or run the demo as root:  sudo {}",
            exe_name()
        )
        .into());
    }
    // A new network namespace starts with its loopback interface down.
    run_tool("ip", &["link", "set", "lo", "up"]).map_err(|e| format!("demo: error: {e}"))?;
    Ok(mode)
}

fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare(2) takes only an integer flag set and reads or writes no memory of ours.
    // CLONE_NEWUSER also requires a single-threaded process: this runs first thing in `main`,
    // before any thread is spawned.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Identifies the current network namespace (e.g. `net:[4026531840]`).
fn netns_id() -> DemoResult<PathBuf> {
    fs::read_link("/proc/self/ns/net").map_err(|e| {
        format!("demo: error: cannot read /proc/self/ns/net (is /proc mounted?): {e}").into()
    })
}

/// Whether we hold CAP_NET_ADMIN (bit 12 of the effective capability set).
fn has_cap_net_admin() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(caps.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

fn exe_name() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "target/debug/examples/demo".to_owned())
}

fn no_namespace_help(err: &io::Error, root_err: Option<&io::Error>) -> String {
    let root_note = root_err.map_or(String::new(), |e| {
        format!(
            "Even as root, unshare(CLONE_NEWNET) failed ({e}): \
             a container without CAP_SYS_ADMIN?\n"
        )
    });
    format!(
        "demo: cannot create a private network namespace to play in.\n\
         \n\
         The demo never touches your real network: it runs inside its own network namespace.\n\
         {root_note}\
         As a plain user that needs an unprivileged user namespace, which this system refuses\n\
         (unshare(CLONE_NEWUSER | CLONE_NEWNET): {err}).\n\
         \n\
         Either run it as root:\n\
         \x20   sudo {exe}\n\
         or allow unprivileged user namespaces, then run it again:\n\
         \x20   sudo sysctl kernel.unprivileged_userns_clone=1               # Debian, Ubuntu\n\
         \x20   sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0   # Ubuntu 23.10+\n\
         \x20   sudo sysctl user.max_user_namespaces=10000                   # if it is 0",
        exe = exe_name()
    )
}

// ---------------------------------------------------------------------------------------------
// External tools (iptables, ip); they run in our namespace since children inherit it.
// ---------------------------------------------------------------------------------------------

/// Finds `name` in `$PATH` or in the sbin directories (often missing from a user's `$PATH`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn install_hint(tool: &str) -> &'static str {
    match tool {
        "iptables" => "install iptables (Debian/Ubuntu: apt install iptables)",
        "ip" => "install iproute2 (Debian/Ubuntu: apt install iproute2)",
        _ => "install it",
    }
}

/// Runs `tool args...`, returning its stdout, or an error with its stderr.
fn run_tool(tool: &str, args: &[&str]) -> DemoResult<String> {
    let path =
        find_program(tool).ok_or_else(|| format!("`{tool}` not found: {}", install_hint(tool)))?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if !out.status.success() {
        let mut msg = format!(
            "`{tool} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if tool == "iptables" {
            msg.push_str(
                "\n(the kernel needs NFQUEUE, mark and comment support: \
                 CONFIG_NETFILTER_NETLINK_QUEUE, CONFIG_NETFILTER_XT_TARGET_NFQUEUE, \
                 CONFIG_NETFILTER_XT_MATCH_MARK, CONFIG_NETFILTER_XT_MATCH_COMMENT)",
            );
        }
        return Err(msg.into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables -w <args>` (`-w`: wait for the xtables lock instead of failing).
fn iptables(args: &[&str]) -> DemoResult<String> {
    let mut full = vec!["-w"];
    full.extend_from_slice(args);
    run_tool("iptables", &full)
}

fn install_rules() -> DemoResult<Vec<String>> {
    let queue = QUEUE_NUM.to_string();
    let udp = UDP_PORT.to_string();
    let tcp = TCP_PORT.to_string();
    let mark = format!("{DEMO_MARK:#x}");
    #[rustfmt::skip]
    let rules: [&[&str]; 3] = [
        &["-A", "OUTPUT", "-o", "lo", "-p", "udp", "--dport", &udp,
          "-j", "NFQUEUE", "--queue-num", &queue],
        &["-A", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", &tcp,
          "-j", "NFQUEUE", "--queue-num", &queue],
        // No target: this rule only counts the packets that match.
        &["-A", "INPUT", "-i", "lo", "-m", "mark", "--mark", &mark,
          "-m", "comment", "--comment", MARK_COMMENT],
    ];
    for rule in rules {
        iptables(rule)?;
    }
    let mut listing = Vec::new();
    for chain in ["OUTPUT", "INPUT"] {
        let text = iptables(&["-S", chain])?;
        listing.extend(
            text.lines()
                .filter(|l| l.starts_with("-A"))
                .map(str::to_owned),
        );
    }
    Ok(listing)
}

/// The packet counter of the rule that counts marked packets in INPUT.
fn marked_packets_counted() -> DemoResult<u64> {
    let listing = iptables(&["-L", "INPUT", "-v", "-x", "-n"])?;
    let needle = format!("/* {MARK_COMMENT} */");
    let mut hits = listing.lines().filter(|l| l.contains(&needle));
    let (Some(line), None) = (hits.next(), hits.next()) else {
        return Err(format!("expected exactly one rule {needle} in INPUT:\n{listing}").into());
    };
    let first = line.split_whitespace().next().unwrap_or_default();
    first
        .parse()
        .map_err(|_| format!("cannot read the packet counter in {line:?}").into())
}

// ---------------------------------------------------------------------------------------------
// Steps 2-5: queue, traffic, table, checks
// ---------------------------------------------------------------------------------------------

/// What the callback saw and decided for one packet.
struct Row {
    id: u32,
    hook: Hook,
    proto: &'static str,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    len: usize,
    tcp_flags: Option<u8>,
    /// The application bytes (after the UDP or TCP header).
    data: Vec<u8>,
    action: Action,
    mark: Option<u32>,
}

/// What the traffic threads report back.
struct Traffic {
    udp_sent: usize,
    tcp_reply: Vec<u8>,
}

fn run(mode: &Mode) -> DemoResult<bool> {
    println!("libnfq demo: a tiny firewall in user space");
    println!();
    match mode {
        Mode::Root => println!("Running as root in a private network namespace."),
        Mode::UserNamespace { uid } => println!(
            "Running as user {uid}, in a private user + network namespace (root only inside it)."
        ),
    }
    println!("Your real network and firewall are untouched; all of this vanishes on exit.");
    let rules = install_rules()?;
    println!("iptables rules in the private namespace:");
    for rule in &rules {
        println!("    iptables {rule}");
    }
    println!(
        "  The NFQUEUE rules pause matching packets and hand them to this program (queue \
         {QUEUE_NUM});"
    );
    println!("  the last rule only counts packets that arrive carrying the mark {DEMO_MARK:#x}.");
    println!(
        "Our callback's policy: text containing \"drop\" -> DROP, containing \"mark\" -> \
         ACCEPT + mark {DEMO_MARK:#x}, anything else -> ACCEPT."
    );
    println!();

    // Listen before any packet is sent.
    let udp_rx = UdpSocket::bind(("127.0.0.1", UDP_PORT))
        .map_err(|e| format!("bind UDP 127.0.0.1:{UDP_PORT}: {e}"))?;
    let listener = TcpListener::bind(("127.0.0.1", TCP_PORT))
        .map_err(|e| format!("bind TCP 127.0.0.1:{TCP_PORT}: {e}"))?;

    // The callback records every packet here. It borrows `rows` (the handle's lifetime
    // parameter allows that), so `rows` is declared before the handle and read after it is gone.
    let mut rows: Vec<Row> = Vec::new();
    let handle = Handle::open()?;
    let queue = handle.queue(QUEUE_NUM, QueueConfig::new(), |packet| {
        let (row, verdict) = decide(packet);
        rows.push(row);
        verdict
    })?;
    // `process()` waits at most this long, so the loop below can watch the traffic threads.
    handle.set_recv_timeout(Some(Duration::from_millis(50)))?;

    let traffic = thread::scope(|s| -> DemoResult<(Traffic, DemoResult<()>)> {
        let echo = s.spawn(move || tcp_echo_server(listener));
        let sender = s.spawn(send_traffic);
        pump(&handle, || sender.is_finished())?;
        let traffic = sender.join().map_err(|_| "the traffic thread panicked")??;
        let echo = echo.join().map_err(|_| "the echo server thread panicked")?;
        Ok((traffic, echo))
    });
    queue.unbind()?;
    drop(handle);
    let (traffic, echo_server) = traffic?;
    let received = drain_udp(&udp_rx)?;
    let counted = marked_packets_counted()?;

    print_table(&rows);
    check(&rows, &traffic, echo_server, &received, counted)
}

/// The policy: what the callback answers for one packet.
fn decide(packet: &Packet<'_>) -> (Row, Verdict) {
    let parsed = parse_ipv4(packet.payload());
    let data = parsed.as_ref().map_or(&[][..], |p| p.data);
    let verdict = if contains(data, b"drop") {
        Verdict::drop()
    } else if contains(data, b"mark") {
        Verdict::accept().with_mark(DEMO_MARK)
    } else {
        Verdict::accept()
    };
    let row = Row {
        id: packet.id(),
        hook: packet.hook(),
        proto: parsed.as_ref().map_or("?", |p| p.proto),
        src_port: parsed.as_ref().map(|p| p.src_port),
        dst_port: parsed.as_ref().map(|p| p.dst_port),
        len: packet.payload().len(),
        tcp_flags: parsed.as_ref().and_then(|p| p.tcp_flags),
        data: data.to_vec(),
        action: verdict.action(),
        mark: verdict.mark(),
    };
    (row, verdict)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Drives the queue until `done()` says the traffic is over and the queue has been quiet for a
/// moment (so the last packets, such as TCP's closing handshake, get their verdicts too).
fn pump(handle: &Handle<'_>, done: impl Fn() -> bool) -> DemoResult<()> {
    let start = Instant::now();
    let mut last_packet = Instant::now();
    loop {
        match handle.process() {
            Ok(0) => {}
            Ok(_) => last_packet = Instant::now(),
            // E.g. the kernel dropped messages because we were too slow: not fatal here.
            Err(e) if e.is_transient() => eprintln!("note: {e}"),
            Err(e) => return Err(e.into()),
        }
        if done() && last_packet.elapsed() >= QUIET_PERIOD {
            return Ok(());
        }
        if start.elapsed() > EXCHANGE_DEADLINE {
            return Err("the packet exchange did not finish in time".into());
        }
    }
}

/// Sends the UDP datagrams, then does one TCP round trip through the echo server.
fn send_traffic() -> DemoResult<Traffic> {
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("UDP sender: bind: {e}"))?;
    for msg in UDP_MESSAGES {
        udp.send_to(msg.as_bytes(), ("127.0.0.1", UDP_PORT))
            .map_err(|e| format!("UDP sender: send {msg:?}: {e}"))?;
    }

    let server = SocketAddr::from(([127, 0, 0, 1], TCP_PORT));
    let mut tcp = TcpStream::connect_timeout(&server, IO_TIMEOUT)
        .map_err(|e| format!("TCP client: connect to {server}: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.write_all(TCP_MESSAGE.as_bytes())
        .map_err(|e| format!("TCP client: send: {e}"))?;
    tcp.shutdown(Shutdown::Write)?; // "that's all": the server answers and closes
    let mut tcp_reply = Vec::new();
    tcp.read_to_end(&mut tcp_reply)
        .map_err(|e| format!("TCP client: receive the echo: {e}"))?;
    Ok(Traffic {
        udp_sent: UDP_MESSAGES.len(),
        tcp_reply,
    })
}

/// Accepts one connection, sends back everything it reads, then closes it.
fn tcp_echo_server(listener: TcpListener) -> DemoResult<()> {
    // A non-blocking accept with a deadline, so that this thread cannot hang forever if the
    // client never arrives.
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("TCP echo server: accept: {e}").into()),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut data = Vec::new();
    conn.read_to_end(&mut data)
        .map_err(|e| format!("TCP echo server: receive: {e}"))?;
    conn.write_all(&data)
        .map_err(|e| format!("TCP echo server: send: {e}"))?;
    Ok(())
}

/// Everything the UDP receiver got (the exchange is over, so it is all in the socket buffer).
fn drain_udp(sock: &UdpSocket) -> DemoResult<Vec<String>> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(got)
            }
            Err(e) => return Err(format!("UDP receiver: {e}").into()),
        }
    }
}

fn print_table(rows: &[Row]) {
    println!("Packets the kernel handed to our callback (one row each), and its verdicts:");
    println!(
        "  {:>3}  {:<6}  {:<5}  {:<13}  {:>5}  {:<38}  {:<7}  {:<4}",
        "id", "hook", "proto", "src -> dst", "bytes", "what's inside", "verdict", "mark"
    );
    for row in rows {
        let port = |p: Option<u16>| p.map_or("?".to_owned(), |p| p.to_string());
        let ports = format!("{} -> {}", port(row.src_port), port(row.dst_port));
        let mut inside = row.tcp_flags.map(tcp_flags).unwrap_or_default();
        if !row.data.is_empty() {
            if !inside.is_empty() {
                inside.push(' ');
            }
            inside.push_str(&format!("{:?}", String::from_utf8_lossy(&row.data)));
        }
        let mark = row.mark.map_or("-".to_owned(), |m| format!("{m:#x}"));
        println!(
            "  {:>3}  {:<6}  {:<5}  {:<13}  {:>5}  {:<38}  {:<7}  {}",
            row.id,
            row.hook.to_string(),
            row.proto,
            ports,
            row.len,
            inside,
            row.action.to_string(),
            mark
        );
    }
    println!(
        "  (hook OUTPUT: packets were stopped on their way out; bytes: size of the IP packet;"
    );
    println!("   TCP also shows its handshake: [SYN] opens, [FIN] closes, [ACK] acknowledges)");
    println!();
}

fn tcp_flags(flags: u8) -> String {
    const NAMES: [(u8, &str); 5] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
    ];
    let set: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    format!("[{}]", set.join(","))
}

/// Compares what happened with what the verdicts asked for; prints one line per check.
fn check(
    rows: &[Row],
    traffic: &Traffic,
    echo_server: DemoResult<()>,
    received: &[String],
    counted: u64,
) -> DemoResult<bool> {
    println!("Did the verdicts take effect? Checked from the receiving side:");
    let mut all_ok = true;
    let mut report = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        all_ok &= ok;
    };

    // Every datagram went through the callback exactly once.
    let queued_udp: Vec<String> = rows
        .iter()
        .filter(|r| r.proto == "UDP")
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    let unseen: Vec<&str> = UDP_MESSAGES
        .iter()
        .copied()
        .filter(|m| queued_udp.iter().filter(|q| q == m).count() != 1)
        .collect();
    report(
        unseen.is_empty() && queued_udp.len() == traffic.udp_sent,
        if unseen.is_empty() {
            format!(
                "the callback saw each of the {} UDP datagrams once",
                traffic.udp_sent
            )
        } else {
            format!(
                "the callback saw {} UDP packets; not exactly once: {unseen:?}",
                queued_udp.len()
            )
        },
    );

    // The receiver got exactly the datagrams that were not dropped, and none that was.
    let (dropped, kept): (Vec<&str>, Vec<&str>) =
        UDP_MESSAGES.iter().partition(|m| m.contains("drop"));
    let mut got: Vec<&str> = received.iter().map(String::as_str).collect();
    got.sort_unstable();
    let mut expected = kept.clone();
    expected.sort_unstable();
    report(
        got == expected,
        if got == expected {
            format!(
                "the UDP receiver got the {} accepted datagrams: {}",
                kept.len(),
                short_list(&kept)
            )
        } else {
            format!("the UDP receiver got {got:?}, expected {expected:?}")
        },
    );
    let leaked: Vec<&str> = dropped
        .iter()
        .copied()
        .filter(|d| got.contains(d))
        .collect();
    report(
        leaked.is_empty(),
        if leaked.is_empty() {
            format!(
                "the dropped datagrams never arrived: {}",
                short_list(&dropped)
            )
        } else {
            format!("dropped datagrams arrived anyway: {leaked:?}")
        },
    );

    // The TCP exchange went through the queue and came back intact.
    let tcp_seen = rows
        .iter()
        .any(|r| r.proto == "TCP" && r.data == TCP_MESSAGE.as_bytes());
    let echo_ok = traffic.tcp_reply == TCP_MESSAGE.as_bytes();
    report(
        tcp_seen && echo_ok && echo_server.is_ok(),
        match (&echo_server, tcp_seen, echo_ok) {
            (Err(e), _, _) => format!("TCP echo server failed: {e}"),
            (Ok(()), false, _) => "the TCP message never went through the callback".to_owned(),
            (Ok(()), true, false) => format!(
                "TCP echo: sent {TCP_MESSAGE:?}, got back {:?}",
                String::from_utf8_lossy(&traffic.tcp_reply)
            ),
            (Ok(()), true, true) => {
                format!("TCP echo: sent {TCP_MESSAGE:?} through the queue, got it back")
            }
        },
    );

    // The marks set by verdicts stayed on the packets: iptables counted them in INPUT.
    let marked = rows.iter().filter(|r| r.mark == Some(DEMO_MARK)).count() as u64;
    report(
        marked > 0 && counted == marked,
        format!(
            "iptables counted {counted} packet(s) arriving with mark {DEMO_MARK:#x}; \
             our verdicts marked {marked}"
        ),
    );
    Ok(all_ok)
}

fn short_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Reading IPv4 / UDP / TCP headers from the packet bytes
// ---------------------------------------------------------------------------------------------

struct Parsed<'a> {
    proto: &'static str,
    src_port: u16,
    dst_port: u16,
    tcp_flags: Option<u8>,
    /// The bytes after the UDP or TCP header.
    data: &'a [u8],
}

/// `packet.payload()` starts at the IP header. Returns `None` for anything but well-formed
/// IPv4 carrying UDP or TCP.
fn parse_ipv4(ip: &[u8]) -> Option<Parsed<'_>> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let l4 = ip.get(header_len..total_len)?;
    let port = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    let (src_port, dst_port) = (port(0)?, port(2)?);
    match ip[9] {
        17 => Some(Parsed {
            proto: "UDP",
            src_port,
            dst_port,
            tcp_flags: None,
            data: l4.get(8..)?,
        }),
        6 => {
            let data_offset = usize::from(*l4.get(12)? >> 4) * 4;
            Some(Parsed {
                proto: "TCP",
                src_port,
                dst_port,
                tcp_flags: Some(*l4.get(13)?),
                data: l4.get(data_offset.max(20)..)?,
            })
        }
        _ => None,
    }
}
