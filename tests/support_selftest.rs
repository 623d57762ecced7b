//! Self-test of `tests/support`: namespaces are isolated, rules and counters
//! are observable, traffic helpers work (and can observe failure).

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use support::{tcp_roundtrip, udp_send, QueueStats, RawQueue, TcpEcho, UdpSink};

const QUIET: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Run `f`, expect it to panic, return the panic message.
fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    }
}

#[test]
fn test_name_macro_matches_libtest_name() {
    let name = support::test_name!();
    assert_eq!(name, "test_name_macro_matches_libtest_name");
    let closure = || support::test_name!();
    let in_closure = closure();
    assert_eq!(in_closure, name);
    let thread = std::thread::current();
    if let Some(t) = thread.name().filter(|t| *t != "main") {
        assert_eq!(t, name, "libtest names the test thread after the test");
    }
}

mod nested {
    use super::support;

    #[test]
    fn name_includes_module_path() {
        assert_eq!(support::test_name!(), "nested::name_includes_module_path");
    }

    /// Exercises `--exact nested::...` in the user-namespace re-run.
    #[test]
    fn enter_works_in_module() {
        let Some(ns) = support::enter!() else { return };
        assert!(ns.queue_stats().is_empty());
    }
}

#[test]
fn test_name_from_probe_strips_crate_probe_and_closures() {
    assert_eq!(
        support::test_name_from_probe("krate::a::b::{{closure}}::__nfq_test_name_probe"),
        "a::b"
    );
    assert_eq!(
        support::test_name_from_probe("krate::t::__nfq_test_name_probe"),
        "t"
    );
    expect_panic(|| support::test_name_from_probe("krate::__nfq_test_name_probe"));
    expect_panic(|| support::test_name_from_probe("krate::t::other"));
}

#[test]
fn queue_stats_line_parses() {
    let q = QueueStats::parse_line("    7  123456     2 2 65535     0     1        9  1");
    assert_eq!(
        q,
        QueueStats {
            queue_num: 7,
            portid: 123456,
            queued: 2,
            copy_mode: 2,
            copy_range: 65535,
            queue_dropped: 0,
            user_dropped: 1,
            id_sequence: 9,
        }
    );
    expect_panic(|| QueueStats::parse_line("7 1 2"));
    expect_panic(|| QueueStats::parse_line("7 x 0 2 65535 0 0 0 1"));
}

#[test]
fn namespaces_in_two_threads_are_isolated() {
    let Some(a) = support::enter!() else { return };
    a.iptables(&[
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        "1111",
        "-m",
        "comment",
        "--comment",
        "only-in-a",
        "-j",
        "ACCEPT",
    ]);
    let name = support::test_name!();
    let a_id = a.id();
    let b_id = std::thread::spawn(move || {
        // Starts in A's namespace (inherited), then gets its own.
        let b = support::netns(&name).expect("second namespace");
        assert_ne!(b.id(), a_id);
        b.iptables(&[
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            "2222",
            "-m",
            "comment",
            "--comment",
            "only-in-b",
            "-j",
            "ACCEPT",
        ]);
        let listing = b.list_rules(false, "filter", "OUTPUT");
        assert!(listing.contains("only-in-b"), "{listing}");
        assert!(
            !listing.contains("only-in-a"),
            "A's rule leaked into B:\n{listing}"
        );
        assert_eq!(b.rule_packets(false, "filter", "OUTPUT", "only-in-b"), 0);
        b.id()
    })
    .join()
    .expect("thread B");
    assert_ne!(a_id, b_id);
    a.assert_current();
    let listing = a.list_rules(false, "filter", "OUTPUT");
    assert!(listing.contains("only-in-a"), "{listing}");
    assert!(
        !listing.contains("only-in-b"),
        "B's rule leaked into A:\n{listing}"
    );
}

fn drop_rule_blocks_only_its_port(ns: &support::Netns, v6: bool) {
    let bind = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
    let blocked = UdpSink::bind(bind);
    let open = UdpSink::bind(bind);
    let port = blocked.port().to_string();
    let rule = [
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-m",
        "comment",
        "--comment",
        "selftest drop",
        "-j",
        "DROP",
    ];
    if v6 {
        ns.ip6tables(&rule);
    } else {
        ns.iptables(&rule);
    }
    assert_eq!(ns.rule_packets(v6, "filter", "OUTPUT", "selftest drop"), 0);

    // A local OUTPUT DROP shows up as EPERM from send(2); udp_send tolerates it.
    let (_, results) = support::udp_send_each(blocked.addr(), &[b"one", b"two"]);
    for r in results {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }
    udp_send(blocked.addr(), &[b"three"]);
    let src = udp_send(open.addr(), &[b"hello", b"world"]);
    assert_eq!(src.is_ipv6(), v6);

    assert_eq!(
        open.recv_until_quiet(QUIET, 10),
        vec![b"hello".to_vec(), b"world".to_vec()]
    );
    assert_eq!(blocked.recv_until_quiet(QUIET, 10), Vec::<Vec<u8>>::new());
    assert_eq!(ns.rule_packets(v6, "filter", "OUTPUT", "selftest drop"), 3);

    // Removing the rule lets traffic through again.
    let mut del = rule;
    del[0] = "-D";
    if v6 {
        ns.ip6tables(&del);
    } else {
        ns.iptables(&del);
    }
    let src = udp_send(blocked.addr(), &[b"again"]);
    let (data, from) = blocked.recv_one_from(TIMEOUT).expect("datagram after -D");
    assert_eq!((data.as_slice(), from), (&b"again"[..], src));
}

#[test]
fn drop_rule_blocks_udp_and_is_counted_v4() {
    let Some(ns) = support::enter!() else { return };
    drop_rule_blocks_only_its_port(&ns, false);
}

#[test]
fn drop_rule_blocks_udp_and_is_counted_v6() {
    let Some(ns) = support::enter!() else { return };
    drop_rule_blocks_only_its_port(&ns, true);
}

#[test]
fn tcp_echo_roundtrip_v4_and_v6() {
    let Some(_ns) = support::enter!() else { return };
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let echo = TcpEcho::bind(bind);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let back = tcp_roundtrip(echo.addr(), &data, TIMEOUT).expect("roundtrip");
        assert!(
            back == data,
            "echo differs ({} vs {} bytes)",
            back.len(),
            data.len()
        );
        assert_eq!(
            tcp_roundtrip(echo.addr(), b"", TIMEOUT).expect("empty"),
            b""
        );
        assert_eq!(echo.accepted(), 2);
    }
}

#[test]
fn tcp_roundtrip_reports_refused_and_timeout() {
    let Some(ns) = support::enter!() else { return };
    // Refused: nothing listens in a fresh namespace. (Not "a port we just
    // freed": a process spawned concurrently by another test may still hold
    // the closed listener's fd, see the support module docs.)
    let port: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let err = tcp_roundtrip(port, b"x", TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    // Timeout: SYNs are dropped.
    let echo = TcpEcho::bind("127.0.0.1:0");
    let p = echo.addr().port().to_string();
    ns.iptables(&[
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &p,
        "-m",
        "comment",
        "--comment",
        "syn-drop",
        "-j",
        "DROP",
    ]);
    let t0 = std::time::Instant::now();
    let err = tcp_roundtrip(echo.addr(), b"x", Duration::from_millis(500)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(echo.accepted(), 0);
    assert!(ns.rule_packets(false, "filter", "INPUT", "syn-drop") >= 1);
}

#[test]
fn fresh_namespace_has_no_queues() {
    let Some(ns) = support::enter!() else { return };
    assert_eq!(ns.queue_stats(), Vec::new());
    assert_eq!(ns.queue_stat(0), None);
}

#[test]
fn raw_queue_binding_shows_in_queue_stats() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    let port = sink.port().to_string();
    ns.iptables(&[
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-m",
        "comment",
        "--comment",
        "to-q7",
        "-j",
        "NFQUEUE",
        "--queue-num",
        "7",
    ]);
    let q = RawQueue::bind(7, 1500);
    let st = ns.queue_stat(7).expect("queue 7 listed");
    assert_eq!(
        (st.portid, st.queued, st.copy_mode, st.copy_range),
        (q.portid(), 0, 2, 1500)
    );
    // A second socket cannot take the same queue.
    let err = RawQueue::try_bind(7, 1500).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");

    udp_send(sink.addr(), &[b"a", b"b", b"c"]);
    assert_eq!(
        sink.recv_until_quiet(QUIET, 10).len(),
        0,
        "queued, not delivered"
    );
    let st = ns.queue_stat(7).expect("queue 7 listed");
    assert_eq!((st.queued, st.id_sequence), (3, 3));
    assert_eq!(ns.rule_packets(false, "filter", "OUTPUT", "to-q7"), 3);

    drop(q);
    // Not necessarily immediate: see the support module docs on fd inheritance.
    assert!(
        support::wait_until(TIMEOUT, || ns.queue_stats().is_empty()),
        "{:?}",
        ns.queue_stats()
    );
}

#[test]
fn helpers_fail_loudly() {
    let Some(ns) = support::enter!() else { return };
    let msg = expect_panic(|| ns.iptables(&["-A", "NO_SUCH_CHAIN", "-j", "ACCEPT"]));
    assert!(msg.contains("iptables -w -A NO_SUCH_CHAIN"), "{msg}");
    let msg = expect_panic(|| ns.rule_packets(false, "filter", "OUTPUT", "absent"));
    assert!(msg.contains("found 0"), "{msg}");
    for _ in 0..2 {
        ns.iptables(&[
            "-A",
            "OUTPUT",
            "-m",
            "comment",
            "--comment",
            "twice",
            "-j",
            "ACCEPT",
        ]);
    }
    let msg = expect_panic(|| ns.rule_packets(false, "filter", "OUTPUT", "twice"));
    assert!(msg.contains("found 2"), "{msg}");

    // A second netns() on the same thread invalidates the first handle.
    let name = support::test_name!();
    let again = support::netns(&name).expect("second namespace");
    let msg = expect_panic(|| ns.iptables(&["-L"]));
    assert!(msg.contains("not in this namespace"), "{msg}");
    again.iptables(&["-L"]);
}
