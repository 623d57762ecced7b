//! Rewriting packets with `libnfq::pkt` against the real kernel: UDP datagrams and a live TCP
//! connection rewritten in `OUTPUT` over loopback, received intact (so with right checksums: the
//! receiving stack drops anything else), header views on truncated copies, and malformed copies
//! of real packets handed to the views.
//!
//! Every test runs in its own network namespace (`support::enter!()`).

#[allow(unused_imports)]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use libnfq::pkt::{IpPacket, PacketBuf, PktError, TcpFlags, IPPROTO_UDP};
use libnfq::{CopyMode, Handle, Packet, QueueConfig, Verdict};
use support::{udp_send, Log, Netns, TcpEcho, UdpSink};

/// How long to wait for something that must happen.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long nothing must happen before concluding that nothing more will.
const QUIET: Duration = Duration::from_millis(300);
/// Receive timeout of the handle while driving it.
const POLL: Duration = Duration::from_millis(50);

fn loopback(v6: bool) -> &'static str {
    if v6 {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
}

/// Runs `traffic` on a scoped thread (in the test's namespace) while driving `handle` here,
/// then drives on until the queue stays quiet for [`QUIET`]. Asserts that `process` reported no
/// error; returns what `traffic` returned.
fn drive<T: Send>(handle: &Handle<'_>, traffic: impl FnOnce() -> T + Send) -> T {
    handle.set_recv_timeout(Some(POLL)).expect("recv timeout");
    let mut errors = Vec::new();
    let mut step = || match handle.process() {
        Ok(n) => n > 0,
        Err(e) => {
            errors.push(e);
            true
        }
    };
    let out = std::thread::scope(|s| {
        let sender = s.spawn(traffic);
        let deadline = Instant::now() + DEADLINE;
        while !sender.is_finished() && Instant::now() < deadline {
            step();
        }
        let mut last = Instant::now();
        while last.elapsed() < QUIET && Instant::now() < deadline + DEADLINE {
            if step() {
                last = Instant::now();
            }
        }
        sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    assert!(errors.is_empty(), "process failed: {errors:?}");
    out
}

/// Every datagram `sink` receives until it stays quiet (waiting up to [`DEADLINE`] for the
/// first `expected`).
fn received(sink: &UdpSink, expected: usize) -> Vec<Vec<u8>> {
    sink.recv_expected(expected, DEADLINE, QUIET)
}

/// UDP datagrams received with a bad checksum in this namespace (`InCsumErrors` of `Udp:` in
/// `snmp`, `Udp6InCsumErrors` in `snmp6`).
fn udp_checksum_errors(ns: &Netns, v6: bool) -> u64 {
    ns.assert_current();
    let file = if v6 { "snmp6" } else { "snmp" };
    let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let found = if v6 {
        lines
            .iter()
            .find(|l| l.first() == Some(&"Udp6InCsumErrors"))
            .and_then(|l| l.get(1).copied())
    } else {
        // "Udp:" names line, then "Udp:" values line.
        let mut udp = lines.iter().filter(|l| l.first() == Some(&"Udp:"));
        let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
        let at = names.iter().position(|n| *n == "InCsumErrors").unwrap();
        values.get(at).copied()
    };
    found
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no UDP checksum error counter in {file}"))
}

// ---------------------------------------------------------------------------------------------
// UDP rewrites.
// ---------------------------------------------------------------------------------------------

/// Sends `sent` to a sink whose datagrams are queued in `OUTPUT`; each packet is copied into a
/// `PacketBuf` and handed to `rewrite`: `Ok(true)` sends the buffer back as the payload,
/// `Ok(false)` accepts the packet unchanged, an error is recorded and the packet accepted
/// unchanged. Returns what the sink received and the errors. Checks that every queued packet
/// carried a right checksum, every rewritten one too, and that the receiving stack counted no
/// checksum error.
fn udp_rewrite(
    ns: &Netns,
    v6: bool,
    sent: &[&[u8]],
    rewrite: impl Fn(&mut PacketBuf) -> Result<bool, PktError> + Sync,
) -> (Vec<Vec<u8>>, Vec<PktError>) {
    let sink = UdpSink::bind(loopback(v6));
    ns.queue_port(v6, "OUTPUT", "udp", sink.port(), 0);
    let errors = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            let view = IpPacket::parse(p.payload()).expect("a UDP/IP packet");
            assert_eq!(view.protocol(), Some(IPPROTO_UDP));
            assert_eq!(view.transport_checksum_ok(), Some(true), "as queued");
            let mut buf = PacketBuf::from_packet(p).expect("copy");
            match rewrite(&mut buf) {
                Ok(true) => {
                    let view = buf.view().expect("rewritten packet parses");
                    assert_eq!(view.transport_checksum_ok(), Some(true), "as rewritten");
                    assert!(view.ipv4().map_or(true, |ip| ip.checksum_ok()));
                    Verdict::accept()
                        .with_payload(buf.data())
                        .expect("within MAX_PAYLOAD_LEN")
                }
                Ok(false) => Verdict::accept(),
                Err(e) => {
                    errors.push(e);
                    Verdict::accept()
                }
            }
        })
        .expect("bind queue 0");
    drive(&handle, || {
        udp_send(sink.addr(), sent);
    });
    let got = received(&sink, sent.len());
    assert_eq!(udp_checksum_errors(ns, v6), 0, "checksum errors");
    (got, errors.items())
}

fn to_vecs(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|i| i.to_vec()).collect()
}

/// Same-length rewrites: `replace_all` with a word of the same length, and an in-place edit
/// through `data_mut` followed by `fix_checksums`.
fn udp_same_length(ns: &Netns, v6: bool) {
    let sent: [&[u8]; 3] = [b"hello world", b"the cat sat on the cat", b"no match"];
    let (got, errors) = udp_rewrite(ns, v6, &sent, |buf| {
        if buf.udp().is_some_and(|u| u.payload().starts_with(b"hello")) {
            let start = buf.len() - buf.udp().unwrap().payload().len();
            buf.data_mut()[start..].make_ascii_uppercase();
            buf.fix_checksums()?;
            Ok(true)
        } else {
            Ok(buf.replace_all(b"cat", b"dog")? > 0)
        }
    });
    assert!(errors.is_empty(), "{errors:?}");
    let want: [&[u8]; 3] = [b"HELLO WORLD", b"the dog sat on the dog", b"no match"];
    assert_eq!(got, to_vecs(&want));
}

#[test]
fn udp_same_length_rewrite_arrives_v4() {
    let Some(ns) = support::enter!() else { return };
    udp_same_length(&ns, false);
}

#[test]
fn udp_same_length_rewrite_arrives_v6() {
    let Some(ns) = support::enter!() else { return };
    udp_same_length(&ns, true);
}

/// Growing ("cat" → "tiger") and shrinking ("elephant" → "ant") rewrites arrive with the new
/// lengths; a datagram that would grow by more than the tailroom is refused with `NoRoom` and
/// arrives unchanged.
fn udp_changing_length(ns: &Netns, v6: bool) {
    let too_many_cats = b"cat".repeat(libnfq::pkt::DEFAULT_TAILROOM / 2 + 1);
    let sent: [&[u8]; 5] = [
        b"a cat",
        b"cat, cat and cat",
        b"an elephant and a cat",
        b"no felines here",
        &too_many_cats,
    ];
    let (got, errors) = udp_rewrite(ns, v6, &sent, |buf| {
        let n = buf.replace_all(b"cat", b"tiger")? + buf.replace_all(b"elephant", b"ant")?;
        Ok(n > 0)
    });
    let want: [&[u8]; 5] = [
        b"a tiger",
        b"tiger, tiger and tiger",
        b"an ant and a tiger",
        b"no felines here",
        &too_many_cats,
    ];
    assert_eq!(got, to_vecs(&want));
    let growth = 2 * (too_many_cats.len() / 3);
    assert_eq!(
        errors,
        [PktError::NoRoom {
            needed: growth,
            available: libnfq::pkt::DEFAULT_TAILROOM
        }]
    );
}

#[test]
fn udp_length_changing_rewrite_arrives_v4() {
    let Some(ns) = support::enter!() else { return };
    udp_changing_length(&ns, false);
}

#[test]
fn udp_length_changing_rewrite_arrives_v6() {
    let Some(ns) = support::enter!() else { return };
    udp_changing_length(&ns, true);
}

// ---------------------------------------------------------------------------------------------
// TCP.
// ---------------------------------------------------------------------------------------------

/// Connects to `to`, then for each message: writes it and reads as many bytes back. Then shuts
/// down the write side and expects the end of the stream.
fn tcp_exchanges(to: SocketAddr, messages: &[&[u8]]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut s = TcpStream::connect_timeout(&to, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.set_write_timeout(Some(DEADLINE))?;
    let mut replies = Vec::new();
    for message in messages {
        s.write_all(message)?;
        let mut reply = vec![0; message.len()];
        s.read_exact(&mut reply)?;
        replies.push(reply);
    }
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "extra bytes"));
    }
    Ok(replies)
}

/// Same-length rewrites of a live TCP connection: the client's "hello" becomes "HELLO" in
/// `OUTPUT`, the echo server sends it back uppercased, and the connection keeps working for a
/// second exchange (sequence numbers untouched) and closes cleanly.
fn tcp_same_length(ns: &Netns, v6: bool) {
    let echo = TcpEcho::bind(loopback(v6));
    ns.queue_port(v6, "OUTPUT", "tcp", echo.addr().port(), 0);
    let port = echo.addr().port();
    let seen = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            let mut buf = PacketBuf::from_packet(p).expect("copy");
            let tcp = buf.tcp().expect("a TCP segment");
            let (flags, len) = (tcp.flags(), tcp.payload().len());
            assert_eq!(tcp.dst_port(), port);
            let n = buf.replace_all(b"hello", b"HELLO").expect("rewritable");
            seen.push((flags, len, n));
            if n == 0 {
                return Verdict::accept();
            }
            assert_eq!(buf.len(), p.payload().len(), "same length");
            assert_eq!(buf.view().unwrap().transport_checksum_ok(), Some(true));
            Verdict::accept().with_payload(buf.data()).expect("small")
        })
        .expect("bind queue 0");
    let messages: [&[u8]; 2] = [b"hello", b"hello again, and hello"];
    let replies = drive(&handle, || tcp_exchanges(echo.addr(), &messages));

    let want: [&[u8]; 2] = [b"HELLO", b"HELLO again, and HELLO"];
    assert_eq!(replies.expect("both exchanges"), to_vecs(&want));
    let seen = seen.items();
    assert!(
        seen.first()
            .is_some_and(|(flags, _, _)| flags.contains(TcpFlags::SYN)),
        "{seen:?}"
    );
    let data: Vec<(usize, usize)> = seen
        .iter()
        .filter(|(_, len, _)| *len > 0)
        .map(|(_, len, n)| (*len, *n))
        .collect();
    assert_eq!(data, [(5, 1), (22, 2)], "data segments and their rewrites");
    assert!(seen.iter().any(|(f, _, _)| f.contains(TcpFlags::FIN)));
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn tcp_same_length_rewrite_on_a_live_connection_v4() {
    let Some(ns) = support::enter!() else { return };
    tcp_same_length(&ns, false);
}

#[test]
fn tcp_same_length_rewrite_on_a_live_connection_v6() {
    let Some(ns) = support::enter!() else { return };
    tcp_same_length(&ns, true);
}

// ---------------------------------------------------------------------------------------------
// Truncated copies.
// ---------------------------------------------------------------------------------------------

/// What the callback learnt about a truncated copy.
#[derive(Clone, Debug)]
struct TruncatedView {
    copied: usize,
    original: usize,
    total_len: usize,
    dst_port: Option<u16>,
    payload: Vec<u8>,
    tcp_header_len: Option<usize>,
    checksum_ok: Option<bool>,
    refusals: Vec<Result<(), PktError>>,
}

/// Views and refusals on a packet copied with a short copy range.
fn truncated_view(p: &Packet<'_>) -> TruncatedView {
    let view = IpPacket::parse(p.payload()).expect("the IP header fits");
    let (udp, tcp) = (view.udp(), view.tcp());
    let mut buf = PacketBuf::from_packet(p).expect("copy");
    let refusals = vec![
        buf.mangle_payload(0..0, b"x"),
        buf.replace_all(b"0", b"1").map(|_| ()),
        buf.fix_checksums(),
        buf.mangle(0..0, b"x"),
        buf.mangle_ip_payload(0..0, b"x"),
    ];
    TruncatedView {
        copied: p.payload().len(),
        original: p.original_len() as usize,
        total_len: view.total_len(),
        dst_port: udp
            .map(|u| u.dst_port())
            .or_else(|| tcp.map(|t| t.dst_port())),
        payload: view.payload().unwrap_or_default().to_vec(),
        tcp_header_len: tcp.map(|t| t.header_len()),
        checksum_ok: view.transport_checksum_ok(),
        refusals,
    }
}

/// Binds queue 0 with copy range `range`, records [`truncated_view`] of each packet and accepts
/// it unchanged while `traffic` runs.
fn record_truncated<T: Send>(
    range: u16,
    traffic: impl FnOnce() -> T + Send,
) -> (T, Vec<TruncatedView>) {
    let log = Log::new();
    let handle = Handle::open().expect("open");
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(range));
    let _queue = handle
        .queue(0, config, |p| {
            if p.is_truncated() {
                log.push(truncated_view(p));
            }
            Verdict::accept()
        })
        .expect("bind queue 0");
    let out = drive(&handle, traffic);
    (out, log.items())
}

fn assert_refused(view: &TruncatedView) {
    let truncated = Err(PktError::Truncated {
        have: view.copied,
        declared: view.original,
    });
    for refusal in &view.refusals {
        assert_eq!(refusal, &truncated, "{view:?}");
    }
}

/// UDP with a copy range 4 bytes into the payload: the views give the headers and those 4 bytes,
/// every change is refused, and the datagram, accepted unchanged, arrives whole.
fn truncated_udp(ns: &Netns, v6: bool) {
    let sink = UdpSink::bind(loopback(v6));
    ns.queue_port(v6, "OUTPUT", "udp", sink.port(), 0);
    let ip_header = if v6 { 40 } else { 20 };
    let range = (ip_header + 8 + 4) as u16;
    let ((), views) = record_truncated(range, || {
        udp_send(sink.addr(), &[b"0123456789"]);
    });
    assert_eq!(received(&sink, 1), [b"0123456789".to_vec()]);
    let [view] = &views[..] else {
        panic!("one truncated packet expected: {views:?}")
    };
    assert_eq!(
        (view.copied, view.original, view.total_len),
        (usize::from(range), ip_header + 18, ip_header + 18)
    );
    assert_eq!(view.dst_port, Some(sink.port()));
    assert_eq!(view.payload, b"0123");
    assert_eq!(view.checksum_ok, None);
    assert_refused(view);
}

#[test]
fn truncated_udp_copies_give_views_v4() {
    let Some(ns) = support::enter!() else { return };
    truncated_udp(&ns, false);
}

#[test]
fn truncated_udp_copies_give_views_v6() {
    let Some(ns) = support::enter!() else { return };
    truncated_udp(&ns, true);
}

/// TCP with a copy range ending inside the TCP options (loopback segments carry timestamps): the
/// ports and the declared header length are there, the payload is empty, changes are refused,
/// and the connection works.
fn truncated_tcp(ns: &Netns, v6: bool) {
    let echo = TcpEcho::bind(loopback(v6));
    ns.queue_port(v6, "OUTPUT", "tcp", echo.addr().port(), 0);
    let ip_header = if v6 { 40 } else { 20 };
    let (reply, views) = record_truncated(ip_header + 24, || {
        support::tcp_roundtrip(echo.addr(), b"truncated copies", DEADLINE)
    });
    assert_eq!(reply.expect("echo"), b"truncated copies");
    assert!(!views.is_empty());
    for view in &views {
        assert_eq!(view.dst_port, Some(echo.addr().port()), "{view:?}");
        assert!(view.tcp_header_len.is_some_and(|l| l > 24), "{view:?}");
        assert!(view.payload.is_empty(), "{view:?}");
        assert_eq!(view.checksum_ok, None);
        assert_refused(view);
    }
}

#[test]
fn truncated_tcp_copies_give_views_v4() {
    let Some(ns) = support::enter!() else { return };
    truncated_tcp(&ns, false);
}

#[test]
fn truncated_tcp_copies_give_views_v6() {
    let Some(ns) = support::enter!() else { return };
    truncated_tcp(&ns, true);
}

// ---------------------------------------------------------------------------------------------
// Malformed copies of real packets.
// ---------------------------------------------------------------------------------------------

/// `packet` with `bytes` written at `at`.
fn patched(packet: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = packet.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

/// How each malformed variant of a real packet fared: `(what, parse error, transport view,
/// mangle error)`.
type Verdicts = Vec<(&'static str, Option<PktError>, bool, Option<PktError>)>;

/// Malformed variants of the real UDP packet `packet` through the views and `mangle_payload`.
fn malformed_variants(packet: &[u8]) -> Verdicts {
    let v6 = packet[0] >> 4 == 6;
    let len = packet.len();
    let (udp_at, length_at) = if v6 { (40, 4) } else { (20, 2) };
    let declared_too_long = (len - if v6 { 40 } else { 0 } + 100) as u16;
    let mut variants: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "version 5",
            patched(packet, 0, &[0x50 | (packet[0] & 0x0f)]),
        ),
        ("cut to 12 bytes", packet[..12].to_vec()),
        (
            "length beyond the bytes",
            patched(packet, length_at, &declared_too_long.to_be_bytes()),
        ),
        ("UDP length 3", patched(packet, udp_at + 4, &[0, 3])),
        (
            "UDP length beyond",
            patched(packet, udp_at + 4, &[0xff, 0xff]),
        ),
    ];
    if v6 {
        // The UDP header read as a hop-by-hop header of (255 + 1) * 8 bytes: past the end.
        let hop_by_hop = patched(&patched(packet, 6, &[0]), 41, &[255]);
        variants.push(("chain past the end", hop_by_hop));
    } else {
        variants.push(("IHL 4", patched(packet, 0, &[0x44])));
        variants.push(("IHL 15", patched(packet, 0, &[0x4f])));
        variants.push(("length below the header", patched(packet, 2, &[0, 16])));
    }
    variants
        .into_iter()
        .map(|(what, bytes)| {
            let parsed = IpPacket::parse(&bytes);
            let transport = parsed.as_ref().is_ok_and(|v| v.udp().is_some());
            let mangled = PacketBuf::new(&bytes).and_then(|mut b| b.mangle_payload(0..1, b"X"));
            (what, parsed.err(), transport, mangled.err())
        })
        .collect()
}

/// Malformed copies of real packets yield errors from the views and are never mangled; the real
/// packet, accepted unchanged, arrives.
fn malformed(ns: &Netns, v6: bool) {
    let sink = UdpSink::bind(loopback(v6));
    ns.queue_port(v6, "OUTPUT", "udp", sink.port(), 0);
    let log = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            log.push(malformed_variants(p.payload()));
            Verdict::accept()
        })
        .expect("bind queue 0");
    drive(&handle, || {
        udp_send(sink.addr(), &[b"well formed"]);
    });
    assert_eq!(received(&sink, 1), [b"well formed".to_vec()]);
    let items = log.items();
    let [variants] = &items[..] else {
        panic!("one packet expected")
    };
    for (what, parse_error, transport, mangle_error) in variants {
        // Only the truncated-looking copy has a UDP view: the bytes present are well formed.
        let truncated = *what == "length beyond the bytes";
        assert_eq!(*transport, truncated, "{what}: UDP view");
        assert!(mangle_error.is_some(), "{what}: mangling refused");
        match *what {
            "version 5" => assert_eq!(parse_error, &Some(PktError::NotIp { version: Some(5) })),
            "cut to 12 bytes" | "IHL 15" => {
                assert!(
                    matches!(parse_error, Some(PktError::TooShort { .. })),
                    "{what}"
                )
            }
            "IHL 4" | "length below the header" => {
                assert!(
                    matches!(parse_error, Some(PktError::Malformed { .. })),
                    "{what}"
                )
            }
            "length beyond the bytes" => {
                assert_eq!(parse_error, &None, "{what}: the IP header is usable");
                assert!(matches!(mangle_error, Some(PktError::Truncated { .. })));
            }
            _ => {
                assert_eq!(parse_error, &None, "{what}: the IP header is usable");
                assert!(
                    matches!(mangle_error, Some(PktError::Malformed { .. })),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn malformed_copies_yield_errors_v4() {
    let Some(ns) = support::enter!() else { return };
    malformed(&ns, false);
}

#[test]
fn malformed_copies_yield_errors_v6() {
    let Some(ns) = support::enter!() else { return };
    malformed(&ns, true);
}
