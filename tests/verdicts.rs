//! Verdicts against the real kernel: what each action, a mark and a replacement payload do to
//! a datagram, as a user observes it (what the receiving socket gets, iptables counters,
//! `/proc` counters).
//!
//! Every kernel test runs in its own network namespace (`support::enter!()`), queues UDP
//! datagrams sent to 127.0.0.1 or ::1 from the `OUTPUT` hook, drives the handle on the test
//! thread while a scoped thread sends ([`drive`]), then checks the outcome.

// This file uses only part of what the support module re-exports.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libnfq::{
    Action, CopyMode, Error, Handle, Hook, Packet, QueueConfig, Verdict, MAX_PAYLOAD_LEN,
};
use support::{udp_send, Log, Netns, UdpSink};

/// How long to wait for something that must happen.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long nothing must happen before concluding that nothing more will.
const QUIET: Duration = Duration::from_millis(300);
/// Receive timeout of the handle while driving it.
const POLL: Duration = Duration::from_millis(50);

const IPPROTO_UDP: u8 = 17;
const UDP_HEADER_LEN: usize = 8;
const IPV6_HEADER_LEN: usize = 40;

// ---------------------------------------------------------------------------------------------
// Checksums (RFC 1071) and UDP/IP packet surgery.
// ---------------------------------------------------------------------------------------------

/// The 16-bit one's complement sum of `bytes` (big-endian words, an odd last byte padded with
/// zero), folded.
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `bytes`: the one's complement of their one's complement sum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    !ones_complement_sum(bytes)
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn put_be16(bytes: &mut [u8], at: usize, value: usize) {
    let value = u16::try_from(value).expect("16-bit field overflows");
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// An IPv4 or IPv6 UDP packet (as NFQUEUE hands it over: from the network header on), split
/// into its headers and data. Our traffic carries no IPv6 extension headers.
struct UdpPacket<'a> {
    ip: &'a [u8],
    udp: &'a [u8],
    data: &'a [u8],
}

impl<'a> UdpPacket<'a> {
    /// Parses `packet`, checking the protocol and every length field against its size.
    fn parse(packet: &'a [u8]) -> UdpPacket<'a> {
        let ip_len = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                assert_eq!(packet[9], IPPROTO_UDP, "IPv4 packet is not UDP");
                assert_eq!(
                    usize::from(be16(packet, 2)),
                    packet.len(),
                    "IPv4 total length"
                );
                usize::from(packet[0] & 0x0f) * 4
            }
            Some(6) => {
                assert_eq!(packet[6], IPPROTO_UDP, "IPv6 packet is not (plain) UDP");
                assert_eq!(
                    usize::from(be16(packet, 4)) + IPV6_HEADER_LEN,
                    packet.len(),
                    "IPv6 payload length"
                );
                IPV6_HEADER_LEN
            }
            version => panic!("not an IP packet (version {version:?}): {packet:02x?}"),
        };
        let (ip, rest) = packet.split_at(ip_len);
        let (udp, data) = rest.split_at(UDP_HEADER_LEN);
        assert_eq!(usize::from(be16(udp, 4)), rest.len(), "UDP length");
        UdpPacket { ip, udp, data }
    }

    fn is_v6(&self) -> bool {
        self.ip[0] >> 4 == 6
    }

    fn dst_port(&self) -> u16 {
        be16(self.udp, 2)
    }
}

/// The UDP datagram's data (what the receiving socket gets) of an IP packet.
fn udp_data(packet: &[u8]) -> &[u8] {
    UdpPacket::parse(packet).data
}

/// The pseudo-header the UDP checksum covers (RFC 768, RFC 8200 section 8.1).
fn pseudo_header(ip: &[u8], udp_len: usize) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(40);
    if ip[0] >> 4 == 6 {
        pseudo.extend_from_slice(&ip[8..40]); // source and destination
        pseudo.extend_from_slice(&u32::try_from(udp_len).unwrap().to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
    } else {
        pseudo.extend_from_slice(&ip[12..20]); // source and destination
        pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
        pseudo.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    }
    pseudo
}

/// The one's complement sum over the UDP pseudo-header, header and data of `packet`, as a
/// receiver computes it: `0xffff` when the UDP checksum is right.
fn udp_checksum_sum(packet: &[u8]) -> u16 {
    let p = UdpPacket::parse(packet);
    let mut covered = pseudo_header(p.ip, p.udp.len() + p.data.len());
    covered.extend_from_slice(p.udp);
    covered.extend_from_slice(p.data);
    ones_complement_sum(&covered)
}

/// `packet` with its UDP data replaced by `data`: the IP length field, the IPv4 header checksum,
/// the UDP length and the UDP checksum are all recomputed, as a replacement payload needs (the
/// kernel recomputes nothing).
fn with_udp_data(packet: &[u8], data: &[u8]) -> Vec<u8> {
    let p = UdpPacket::parse(packet);
    let (ip_len, v6) = (p.ip.len(), p.is_v6());
    let udp_len = UDP_HEADER_LEN + data.len();
    let mut out = [p.ip, p.udp, data].concat();
    if v6 {
        put_be16(&mut out, 4, udp_len);
    } else {
        let total_len = out.len();
        put_be16(&mut out, 2, total_len);
        put_be16(&mut out, 10, 0);
        let header_checksum = internet_checksum(&out[..ip_len]);
        put_be16(&mut out, 10, header_checksum.into());
    }
    put_be16(&mut out, ip_len + 4, udp_len);
    put_be16(&mut out, ip_len + 6, 0);
    let mut covered = pseudo_header(&out[..ip_len], udp_len);
    covered.extend_from_slice(&out[ip_len..]);
    // A computed 0 is sent as 0xffff: 0 means "no checksum" (IPv4) or is invalid (IPv6).
    let checksum = match internet_checksum(&covered) {
        0 => 0xffff,
        c => c,
    };
    put_be16(&mut out, ip_len + 6, checksum.into());
    out
}

/// `packet` with a wrong UDP checksum (never 0, which IPv4 reads as "no checksum").
fn with_wrong_udp_checksum(mut packet: Vec<u8>) -> Vec<u8> {
    let at = UdpPacket::parse(&packet).ip.len() + 6;
    let wrong = match be16(&packet, at) ^ 0x5a5a {
        0 | 0xffff => 0x1234,
        c => c,
    };
    put_be16(&mut packet, at, wrong.into());
    packet
}

// ---------------------------------------------------------------------------------------------
// Driving a handle, sending and receiving.
// ---------------------------------------------------------------------------------------------

/// Runs `traffic` on a scoped thread (in the test's namespace) while driving `handle` on this
/// thread, until `done(dispatched, errors)` holds or [`DEADLINE`] passed; then keeps receiving
/// until the socket stays quiet, so that unexpected extra packets and errors are seen too.
/// Returns the packets dispatched (as `process` counts them: a call that returns an error
/// reports no count) and the errors `process` returned.
fn drive_until(
    handle: &Handle<'_>,
    traffic: impl FnOnce() + Send,
    mut done: impl FnMut(usize, &[Error]) -> bool,
) -> (usize, Vec<Error>) {
    handle
        .set_recv_timeout(Some(POLL))
        .expect("set_recv_timeout");
    let (mut dispatched, mut errors) = (0, Vec::new());
    // One `process`; `false` when nothing happened.
    let step = |dispatched: &mut usize, errors: &mut Vec<Error>| match handle.process() {
        Ok(n) => {
            *dispatched += n;
            n > 0
        }
        Err(e) => {
            errors.push(e);
            true
        }
    };
    std::thread::scope(|s| {
        let sender = s.spawn(traffic);
        let deadline = Instant::now() + DEADLINE;
        while !done(dispatched, &errors) && Instant::now() < deadline {
            step(&mut dispatched, &mut errors);
        }
        if let Err(panic) = sender.join() {
            std::panic::resume_unwind(panic);
        }
        // Bounded too: a broken socket would report an error on every call.
        let deadline = Instant::now() + DEADLINE;
        while step(&mut dispatched, &mut errors) && Instant::now() < deadline {}
    });
    (dispatched, errors)
}

/// [`drive_until`] the callbacks ran `expected` times; asserts that exactly that many ran and
/// that `process` reported no error.
fn drive(handle: &Handle<'_>, expected: usize, traffic: impl FnOnce() + Send) {
    let (dispatched, errors) = drive_until(handle, traffic, |n, errors| {
        n >= expected || !errors.is_empty()
    });
    assert!(errors.is_empty(), "process failed: {errors:?}");
    assert_eq!(dispatched, expected, "callbacks run (packets dispatched)");
}

/// [`drive`] with `payloads` sent to `to` (one datagram each, in order) as the traffic.
fn drive_send(handle: &Handle<'_>, expected: usize, to: SocketAddr, payloads: &[&[u8]]) {
    drive(handle, expected, || {
        udp_send(to, payloads);
    });
}

/// What `sink` receives: waits up to [`DEADLINE`] for each of the `expected` datagrams, then
/// for [`QUIET`] for any extra one.
fn received(sink: &UdpSink, expected: usize) -> Vec<Vec<u8>> {
    sink.recv_expected(expected, DEADLINE, QUIET)
}

fn to_vecs(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
    payloads.iter().map(|p| p.to_vec()).collect()
}

/// The loopback address to bind a sink on.
fn loopback(v6: bool) -> &'static str {
    if v6 {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
}

/// iptables rules (ip6tables for an IPv6 sink) for the UDP datagrams to one sink's port.
struct PortRules<'a> {
    ns: &'a Netns,
    v6: bool,
    port: String,
}

impl<'a> PortRules<'a> {
    fn new(ns: &'a Netns, sink: &UdpSink) -> Self {
        let addr = sink.addr();
        let (v6, port) = (addr.is_ipv6(), addr.port().to_string());
        PortRules { ns, v6, port }
    }

    /// Appends `-p udp --dport <port> <matches> -m comment --comment <comment> [-j <target>]`
    /// to the chain `at`.
    fn append(&self, at: (&str, &str), matches: &[&str], comment: &str, target: &[&str]) {
        let (table, chain) = at;
        let mut args = vec!["-t", table, "-A", chain, "-p", "udp", "--dport", &self.port];
        args.extend_from_slice(matches);
        args.extend_from_slice(&["-m", "comment", "--comment", comment]);
        if !target.is_empty() {
            args.push("-j");
            args.extend_from_slice(target);
        }
        if self.v6 {
            self.ns.ip6tables(&args);
        } else {
            self.ns.iptables(&args);
        }
    }

    /// A rule without target, that only counts.
    fn count(&self, at: (&str, &str), matches: &[&str], comment: &str) {
        self.append(at, matches, comment, &[]);
    }

    /// A rule sending the datagrams to queue `queue`.
    fn queue(&self, at: (&str, &str), matches: &[&str], queue: u16, comment: &str) {
        let queue = queue.to_string();
        self.append(at, matches, comment, &["NFQUEUE", "--queue-num", &queue]);
    }

    /// The packet counter of the rule in `at` with the comment `comment`.
    fn packets(&self, at: (&str, &str), comment: &str) -> u64 {
        self.ns.rule_packets(self.v6, at.0, at.1, comment)
    }
}

/// A sink on the family's loopback address, and the rule `filter OUTPUT` "to-queue" sending
/// every datagram for it to queue `queue`.
fn sink_queued_to(ns: &Netns, v6: bool, queue: u16) -> UdpSink {
    let sink = UdpSink::bind(loopback(v6));
    PortRules::new(ns, &sink).queue(FILTER_OUTPUT, &[], queue, "to-queue");
    sink
}

const FILTER_OUTPUT: (&str, &str) = ("filter", "OUTPUT");
const FILTER_INPUT: (&str, &str) = ("filter", "INPUT");
const MANGLE_OUTPUT: (&str, &str) = ("mangle", "OUTPUT");

/// The namespace's count of UDP datagrams received with a bad checksum (`InCsumErrors` of `Udp`
/// in `/proc/thread-self/net/snmp`, `Udp6InCsumErrors` in `snmp6` when `v6`).
fn udp_csum_errors(ns: &Netns, v6: bool) -> u64 {
    ns.assert_current();
    let path = if v6 { "snmp6" } else { "snmp" };
    let text = std::fs::read_to_string(format!("/proc/thread-self/net/{path}"))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    let value = if v6 {
        text.lines()
            .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
            .map(str::trim)
    } else {
        // Two lines starting with "Udp: ": the field names, then the values.
        let mut udp = text.lines().filter_map(|l| l.strip_prefix("Udp: "));
        let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
        let at = names.split_whitespace().position(|n| n == "InCsumErrors");
        at.and_then(|at| values.split_whitespace().nth(at))
    };
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no UDP InCsumErrors in {path}:\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// Accept and drop (IPv4 and IPv6).
// ---------------------------------------------------------------------------------------------

const FIVE: [&[u8]; 5] = [b"zero", b"one", b"two", b"three", b"four"];

/// Accept: every datagram arrives intact and in order; the callback saw ids 1..=n from
/// `OUTPUT`, with the datagrams' bytes.
fn accept_delivers_in_order(v6: bool, ns: &Netns) {
    let sink = sink_queued_to(ns, v6, 0);
    let seen = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            seen.push((p.id(), p.hook(), udp_data(p.payload()).to_vec()));
            Verdict::accept()
        })
        .expect("bind queue 0");
    drive_send(&handle, FIVE.len(), sink.addr(), &FIVE);

    assert_eq!(received(&sink, FIVE.len()), to_vecs(&FIVE));
    let expected: Vec<_> = (1..)
        .zip(FIVE)
        .map(|(id, data)| (id, Hook::LocalOut, data.to_vec()))
        .collect();
    assert_eq!(seen.items(), expected);
    let queued = PortRules::new(ns, &sink).packets(FILTER_OUTPUT, "to-queue");
    assert_eq!(queued, FIVE.len() as u64);
}

/// Drop: nothing arrives, and nothing is left waiting in the queue.
fn drop_discards(v6: bool, ns: &Netns) {
    let sink = sink_queued_to(ns, v6, 0);
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |_| Verdict::drop())
        .expect("bind queue 0");
    drive_send(&handle, FIVE.len(), sink.addr(), &FIVE);

    assert_eq!(received(&sink, 0), Vec::<Vec<u8>>::new());
    let stats = ns.queue_stat(0).expect("queue 0 listed");
    assert_eq!(
        (stats.queued, stats.id_sequence, stats.queue_dropped),
        (0, FIVE.len() as u32, 0),
        "(waiting, packets queued so far, dropped for lack of room): {stats:?}"
    );
    let queued = PortRules::new(ns, &sink).packets(FILTER_OUTPUT, "to-queue");
    assert_eq!(queued, FIVE.len() as u64);
}

#[test]
fn accept_delivers_datagrams_intact_and_in_order_v4() {
    let Some(ns) = support::enter!() else { return };
    accept_delivers_in_order(false, &ns);
}

#[test]
fn accept_delivers_datagrams_intact_and_in_order_v6() {
    let Some(ns) = support::enter!() else { return };
    accept_delivers_in_order(true, &ns);
}

#[test]
fn drop_discards_datagrams_and_leaves_none_waiting_v4() {
    let Some(ns) = support::enter!() else { return };
    drop_discards(false, &ns);
}

#[test]
fn drop_discards_datagrams_and_leaves_none_waiting_v6() {
    let Some(ns) = support::enter!() else { return };
    drop_discards(true, &ns);
}

#[test]
fn mixed_policy_delivers_exactly_the_accepted_datagrams() {
    let Some(ns) = support::enter!() else { return };
    let sink = sink_queued_to(&ns, false, 0);
    let sent: [&[u8]; 7] = [
        b"keep 1",
        b"BLOCK 2",
        b"keep 3",
        b"keep 4",
        b"xx BLOCK 5",
        b"BLOCK 6",
        b"keep 7",
    ];
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            if udp_data(p.payload()).windows(5).any(|w| w == b"BLOCK") {
                Verdict::drop()
            } else {
                Verdict::accept()
            }
        })
        .expect("bind queue 0");
    drive_send(&handle, sent.len(), sink.addr(), &sent);

    let kept: Vec<&[u8]> = vec![b"keep 1", b"keep 3", b"keep 4", b"keep 7"];
    assert_eq!(received(&sink, kept.len()), to_vecs(&kept));
    assert_eq!(ns.queue_stat(0).expect("queue 0 listed").queued, 0);
}

// ---------------------------------------------------------------------------------------------
// Repeat, queue, stop.
// ---------------------------------------------------------------------------------------------

/// `filter OUTPUT`: [count marked] [queue unmarked] [count marked]. A packet given
/// `accept` + mark 1 leaves the chain (ACCEPT ends the table's traversal of the hook): neither
/// counting rule sees it. One given `repeat` + mark 1 traverses the chain again from its start:
/// both counting rules see it and the queueing rule skips it. All arrive; the callback runs once
/// per datagram. Only the queueing table's chain is run again: a counting rule in `mangle
/// OUTPUT`, an earlier table at the same hook, sees each datagram once.
#[test]
fn repeat_reruns_the_hook_and_accept_does_not() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind(loopback(false));
    let rules = PortRules::new(&ns, &sink);
    let marked = ["-m", "mark", "--mark", "1"];
    let unmarked = ["-m", "mark", "!", "--mark", "1"];
    rules.count(FILTER_OUTPUT, &marked, "before");
    rules.queue(FILTER_OUTPUT, &unmarked, 0, "to-queue");
    rules.count(FILTER_OUTPUT, &marked, "after");
    rules.count(MANGLE_OUTPUT, &[], "mangle");

    let sent: [&[u8]; 5] = [
        b"repeat a",
        b"accept b",
        b"repeat c",
        b"accept d",
        b"repeat e",
    ];
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            if udp_data(p.payload()).starts_with(b"repeat") {
                Verdict::repeat().with_mark(1)
            } else {
                Verdict::accept().with_mark(1)
            }
        })
        .expect("bind queue 0");
    drive_send(&handle, sent.len(), sink.addr(), &sent);

    assert_eq!(received(&sink, sent.len()), to_vecs(&sent));
    let count = |comment| rules.packets(FILTER_OUTPUT, comment);
    assert_eq!(
        (count("before"), count("to-queue"), count("after")),
        (3, 5, 3),
        "(seen marked before the queue rule, queued, seen marked after it)"
    );
    assert_eq!(rules.packets(MANGLE_OUTPUT, "mangle"), 5);
}

/// Without a rule that skips it, a repeated packet meets the queueing rule again: the callback
/// sees it a second time, with a new id and the mark given with `repeat`, and accepts it then.
#[test]
fn repeat_queues_the_packet_again_when_the_rule_still_matches() {
    let Some(ns) = support::enter!() else { return };
    let sink = sink_queued_to(&ns, false, 0);
    let sent: [&[u8]; 3] = [b"one", b"two", b"three"];
    let log = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            log.push((p.id(), p.mark(), udp_data(p.payload()).to_vec()));
            match p.mark() {
                0 => Verdict::repeat().with_mark(1),
                _ => Verdict::accept(),
            }
        })
        .expect("bind queue 0");
    drive_send(&handle, 2 * sent.len(), sink.addr(), &sent);

    // The second sightings interleave with later first ones, depending on timing.
    let log = log.items();
    let ids: Vec<u32> = log.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>(), "{log:?}");
    for data in sent {
        let sightings: Vec<(u32, u32)> = log
            .iter()
            .filter(|(_, _, d)| d == data)
            .map(|(id, mark, _)| (*id, *mark))
            .collect();
        assert!(
            matches!(sightings[..], [(_, 0), (_, 1)]),
            "{data:?} seen as (id, mark) {sightings:?}"
        );
    }
    assert_eq!(received(&sink, sent.len()), to_vecs(&sent));
    let queued = PortRules::new(&ns, &sink).packets(FILTER_OUTPUT, "to-queue");
    assert_eq!(queued, 6);
}

/// What a callback saw of a packet: queue number, mark, bytes.
type Seen = (u16, u32, Vec<u8>);

fn seen(p: &Packet<'_>) -> Seen {
    (p.queue_num(), p.mark(), p.payload().to_vec())
}

/// Two queues on one handle: queue 1 (where a rule sends `sent`) logs each packet and answers
/// `to_queue_2(packet)`; queue 2 logs and accepts. Returns both logs and what the receiver got.
fn hand_off(
    ns: &Netns,
    sent: &[&[u8]],
    mut to_queue_2: impl FnMut(&Packet<'_>) -> Verdict + Send,
) -> (Vec<Seen>, Vec<Seen>, Vec<Vec<u8>>) {
    let sink = sink_queued_to(ns, false, 1);
    let (first, second) = (Log::new(), Log::new());
    let handle = Handle::open().expect("open");
    let _q1 = handle
        .queue(1, QueueConfig::new(), |p| {
            first.push(seen(p));
            to_queue_2(p)
        })
        .expect("bind queue 1");
    let _q2 = handle
        .queue(2, QueueConfig::new(), |p| {
            second.push(seen(p));
            Verdict::accept()
        })
        .expect("bind queue 2");
    drive_send(&handle, 2 * sent.len(), sink.addr(), sent);

    let id_sequences = [1, 2].map(|q| ns.queue_stat(q).expect("queue listed").id_sequence);
    assert_eq!(
        id_sequences,
        [sent.len() as u32; 2],
        "packets each queue got"
    );
    (first.items(), second.items(), received(&sink, sent.len()))
}

/// `queue(2)` from queue 1 hands the packet to queue 2 of the same handle, which sees the same
/// bytes and accepts; the receiver gets everything. The bypass flag changes nothing when queue 2
/// is bound.
#[test]
fn queue_verdict_hands_packet_to_another_queue_of_the_same_handle() {
    let Some(ns) = support::enter!() else { return };
    let sent: [&[u8]; 4] = [b"first", b"second (bypass)", b"third", b"fourth (bypass)"];
    let (first, second, got) = hand_off(&ns, &sent, |p| {
        if udp_data(p.payload()).ends_with(b"(bypass)") {
            Verdict::queue_bypass(2)
        } else {
            Verdict::queue(2)
        }
    });

    assert_eq!(got, to_vecs(&sent));
    let data: Vec<&[u8]> = first.iter().map(|(_, _, b)| udp_data(b)).collect();
    assert_eq!(data, sent, "queue 1 saw the datagrams in order");
    let moved: Vec<Seen> = first.into_iter().map(|(_, m, b)| (2, m, b)).collect();
    assert_eq!(second, moved, "queue 2 saw the same packets, from queue 2");
}

/// A mark and a replacement payload given with a `queue` verdict are applied before the packet
/// reaches the next queue: queue 2 sees them, and so does the receiver.
#[test]
fn queue_verdict_carries_mark_and_payload_to_the_next_queue() {
    let Some(ns) = support::enter!() else { return };
    let sent: [&[u8]; 3] = [b"one", b"two", b"three"];
    let shout = |packet: &[u8]| with_udp_data(packet, &udp_data(packet).to_ascii_uppercase());
    let (first, second, got) = hand_off(&ns, &sent, |p| {
        Verdict::queue(2)
            .with_mark(7)
            .with_payload(shout(p.payload()))
            .expect("small payload")
    });

    let shouted: Vec<Vec<u8>> = sent.iter().map(|s| s.to_ascii_uppercase()).collect();
    assert_eq!(got, shouted);
    assert!(first.iter().all(|(_, mark, _)| *mark == 0), "{first:?}");
    let expected: Vec<Seen> = first.iter().map(|(_, _, b)| (2, 7, shout(b))).collect();
    assert_eq!(second, expected, "queue 2 saw the mark and the new payload");
}

/// `queue(5)` with nobody bound on queue 5 drops the packet; `queue_bypass(5)` accepts it.
#[test]
fn queue_verdict_to_an_unbound_queue_drops_unless_bypass() {
    let Some(ns) = support::enter!() else { return };
    let sink = sink_queued_to(&ns, false, 1);
    let sent: [&[u8]; 4] = [b"to 5", b"to 5 bypass", b"to 5 again", b"to 5 bypass again"];
    let handle = Handle::open().expect("open");
    let _q1 = handle
        .queue(1, QueueConfig::new(), |p| {
            if udp_data(p.payload()).windows(6).any(|w| w == b"bypass") {
                Verdict::queue_bypass(5)
            } else {
                Verdict::queue(5)
            }
        })
        .expect("bind queue 1");
    drive_send(&handle, sent.len(), sink.addr(), &sent);

    let bypassed: Vec<&[u8]> = vec![b"to 5 bypass", b"to 5 bypass again"];
    assert_eq!(received(&sink, bypassed.len()), to_vecs(&bypassed));
    assert_eq!(ns.queue_stat(5), None, "nobody bound queue 5");
    assert_eq!(ns.queue_stat(1).expect("queue 1 listed").queued, 0);
}

/// `mangle OUTPUT` queues, `filter OUTPUT` (a later table at the same hook) drops. ACCEPT goes on
/// to the filter table and the datagram is dropped there; STOP skips the rest of the hook and
/// the datagram arrives.
#[test]
fn stop_skips_the_rest_of_the_hook_and_accept_does_not() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind(loopback(false));
    let rules = PortRules::new(&ns, &sink);
    rules.queue(MANGLE_OUTPUT, &[], 0, "to-queue");
    rules.append(FILTER_OUTPUT, &[], "filter-drop", &["DROP"]);

    let sent: [&[u8]; 5] = [b"stop 1", b"accept 2", b"stop 3", b"accept 4", b"accept 5"];
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            if udp_data(p.payload()).starts_with(b"stop") {
                Verdict::stop()
            } else {
                Verdict::accept()
            }
        })
        .expect("bind queue 0");
    drive_send(&handle, sent.len(), sink.addr(), &sent);

    let stopped: Vec<&[u8]> = vec![b"stop 1", b"stop 3"];
    assert_eq!(received(&sink, stopped.len()), to_vecs(&stopped));
    assert_eq!(rules.packets(MANGLE_OUTPUT, "to-queue"), 5);
    assert_eq!(rules.packets(FILTER_OUTPUT, "filter-drop"), 3);
}

// ---------------------------------------------------------------------------------------------
// Marks.
// ---------------------------------------------------------------------------------------------

/// A mark given with the verdict in `OUTPUT` is what the packet carries afterwards: `INPUT`
/// rules matching it count exactly the marked datagrams.
#[test]
fn verdict_mark_is_seen_by_later_rules() {
    let Some(ns) = support::enter!() else { return };
    let sink = sink_queued_to(&ns, false, 0);
    let rules = PortRules::new(&ns, &sink);
    rules.count(FILTER_INPUT, &["-m", "mark", "--mark", "0x2a"], "in-marked");
    rules.count(FILTER_INPUT, &["-m", "mark", "--mark", "0"], "in-unmarked");

    let sent: [&[u8]; 5] = [b"mark", b"plain", b"mark", b"mark", b"plain"];
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            if udp_data(p.payload()) == b"mark" {
                Verdict::accept().with_mark(0x2a)
            } else {
                Verdict::accept()
            }
        })
        .expect("bind queue 0");
    drive_send(&handle, sent.len(), sink.addr(), &sent);

    assert_eq!(received(&sink, sent.len()), to_vecs(&sent));
    let count = |comment| rules.packets(FILTER_INPUT, comment);
    assert_eq!((count("in-marked"), count("in-unmarked")), (3, 2));
}

/// `Packet::mark` reads the mark an earlier rule (`mangle OUTPUT -j MARK`) set, and 0 on an
/// unmarked packet.
#[test]
fn packet_mark_reads_the_mark_set_by_an_earlier_rule() {
    let Some(ns) = support::enter!() else { return };
    let marked_sink = sink_queued_to(&ns, false, 0);
    let plain_sink = UdpSink::bind(loopback(false));
    PortRules::new(&ns, &plain_sink).queue(FILTER_OUTPUT, &[], 0, "to-queue too");
    let set_mark = ["MARK", "--set-mark", "0x17"];
    PortRules::new(&ns, &marked_sink).append(MANGLE_OUTPUT, &[], "set mark", &set_mark);

    let seen = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |p| {
            seen.push((UdpPacket::parse(p.payload()).dst_port(), p.mark()));
            Verdict::accept()
        })
        .expect("bind queue 0");
    let (to_marked, to_plain) = (marked_sink.addr(), plain_sink.addr());
    drive(&handle, 4, || {
        for _ in 0..2 {
            udp_send(to_marked, &[b"m"]);
            udp_send(to_plain, &[b"p"]);
        }
    });

    let (m, p) = (marked_sink.port(), plain_sink.port());
    assert_eq!(seen.items(), [(m, 0x17), (p, 0), (m, 0x17), (p, 0)]);
    assert_eq!(received(&marked_sink, 2).len(), 2);
    assert_eq!(received(&plain_sink, 2).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Replacement payloads (IPv4 and IPv6).
// ---------------------------------------------------------------------------------------------

/// Queues `sent` to a sink, answers each packet with `accept` and the payload `rewrite` returns
/// for it, and returns what the sink received.
fn rewritten(
    ns: &Netns,
    v6: bool,
    sent: &[&[u8]],
    expect_received: usize,
    mut rewrite: impl FnMut(&Packet<'_>) -> Vec<u8> + Send,
) -> Vec<Vec<u8>> {
    let sink = sink_queued_to(ns, v6, 0);
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), move |p| {
            Verdict::accept()
                .with_payload(rewrite(p))
                .expect("payload within MAX_PAYLOAD_LEN")
        })
        .expect("bind queue 0");
    drive_send(&handle, sent.len(), sink.addr(), sent);
    received(&sink, expect_received)
}

/// Same-length rewrite (upper case) with correct checksums: the receiver gets the new bytes.
fn rewrite_same_length(v6: bool, ns: &Netns) {
    let sent: [&[u8]; 3] = [b"hello, world", b"second datagram", b"x"];
    let got = rewritten(ns, v6, &sent, sent.len(), |p| {
        with_udp_data(p.payload(), &udp_data(p.payload()).to_ascii_uppercase())
    });
    let want: Vec<Vec<u8>> = sent.iter().map(|s| s.to_ascii_uppercase()).collect();
    assert_eq!(got, want);
}

/// Longer (and, for one, shorter) rewrites with the lengths and checksums fixed: the receiver
/// gets datagrams of the new sizes.
fn rewrite_changing_length(v6: bool, ns: &Netns) {
    let sent: [&[u8]; 3] = [b"short", b"a", b"this one will shrink"];
    let new = |data: &[u8]| -> Vec<u8> {
        if data.starts_with(b"this one") {
            b"shrunk".to_vec()
        } else {
            [data, &b" -- grown by a rewrite "[..], &[b'!'; 1000][..]].concat()
        }
    };
    let got = rewritten(ns, v6, &sent, sent.len(), |p| {
        with_udp_data(p.payload(), &new(udp_data(p.payload())))
    });
    let want: Vec<Vec<u8>> = sent.iter().map(|s| new(s)).collect();
    assert_eq!(got, want);
}

/// A rewrite with a wrong UDP checksum never reaches the socket (the receiving stack counts a
/// checksum error); the same rewrite with the right checksum does. Proves the checksum matters.
fn rewrite_with_wrong_checksum(v6: bool, ns: &Netns) {
    let sent: [&[u8]; 4] = [b"good 1", b"bad 2", b"good 3", b"bad 4"];
    let errors_before = udp_csum_errors(ns, v6);
    let got = rewritten(ns, v6, &sent, 2, |p| {
        let data = udp_data(p.payload());
        let packet = with_udp_data(p.payload(), &data.to_ascii_uppercase());
        assert_eq!(udp_checksum_sum(&packet), 0xffff);
        if data.starts_with(b"bad") {
            with_wrong_udp_checksum(packet)
        } else {
            packet
        }
    });
    assert_eq!(got, to_vecs(&[b"GOOD 1", b"GOOD 3"]));
    let errors = || udp_csum_errors(ns, v6) - errors_before;
    support::wait_until(DEADLINE, || errors() >= 2);
    assert_eq!(
        errors(),
        2,
        "UDP checksum errors counted by the receiving stack"
    );
}

/// A tiny datagram rewritten into a packet of exactly `MAX_PAYLOAD_LEN` bytes arrives whole: the
/// library's limit is one the kernel really accepts.
fn rewrite_to_max_payload_len(v6: bool, ns: &Netns) {
    let headers = UDP_HEADER_LEN + if v6 { IPV6_HEADER_LEN } else { 20 };
    let data: Vec<u8> = (0..MAX_PAYLOAD_LEN - headers)
        .map(|i| (i % 251) as u8)
        .collect();
    let got = rewritten(ns, v6, &[b"grow me"], 1, |p| {
        let packet = with_udp_data(p.payload(), &data);
        assert_eq!(packet.len(), MAX_PAYLOAD_LEN);
        packet
    });
    assert_eq!(got.len(), 1, "one datagram");
    assert!(got[0] == data, "received {} bytes", got[0].len());
}

#[test]
fn rewrite_same_length_payload_v4() {
    let Some(ns) = support::enter!() else { return };
    rewrite_same_length(false, &ns);
}

#[test]
fn rewrite_same_length_payload_v6() {
    let Some(ns) = support::enter!() else { return };
    rewrite_same_length(true, &ns);
}

#[test]
fn rewrite_payload_changing_length_v4() {
    let Some(ns) = support::enter!() else { return };
    rewrite_changing_length(false, &ns);
}

#[test]
fn rewrite_payload_changing_length_v6() {
    let Some(ns) = support::enter!() else { return };
    rewrite_changing_length(true, &ns);
}

#[test]
fn rewrite_with_wrong_udp_checksum_is_discarded_by_receiver_v4() {
    let Some(ns) = support::enter!() else { return };
    rewrite_with_wrong_checksum(false, &ns);
}

#[test]
fn rewrite_with_wrong_udp_checksum_is_discarded_by_receiver_v6() {
    let Some(ns) = support::enter!() else { return };
    rewrite_with_wrong_checksum(true, &ns);
}

#[test]
fn rewrite_to_max_payload_len_arrives_v4() {
    let Some(ns) = support::enter!() else { return };
    rewrite_to_max_payload_len(false, &ns);
}

#[test]
fn rewrite_to_max_payload_len_arrives_v6() {
    let Some(ns) = support::enter!() else { return };
    rewrite_to_max_payload_len(true, &ns);
}

/// With a copy range shorter than a packet, a replacement payload (here the truncated copy
/// itself, which would cut the packet) is refused: `process` reports `TruncatedPayload` and the
/// packet gets the queue's fallback verdict instead (`fallback`, with its mark, or drop by
/// default). Packets that fit the range are rewritten normally.
fn payload_for_truncated_copy(ns: &Netns, fallback: Option<Verdict>) {
    const RANGE: u16 = 40;
    let sink = sink_queued_to(ns, false, 0);
    let rules = PortRules::new(ns, &sink);
    rules.count(FILTER_INPUT, &["-m", "mark", "--mark", "0x33"], "in-marked");
    let long: &[u8] = b"this datagram does not fit a 40-byte copy range";
    let sent: [&[u8]; 3] = [b"short", long, b"fits"];
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(RANGE));
    let config = match &fallback {
        Some(fallback) => config.fallback(fallback.clone()),
        None => config,
    };
    // Counted in the callback: a `process` call that returns an error (here the refusal)
    // does not report how many packets it dispatched.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, config, |p| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let payload = if p.is_truncated() {
                p.payload().to_vec()
            } else {
                with_udp_data(p.payload(), &udp_data(p.payload()).to_ascii_uppercase())
            };
            Verdict::accept().with_payload(payload).expect("small")
        })
        .expect("bind queue 0");
    let calls = || calls.load(std::sync::atomic::Ordering::Relaxed);
    let (_, errors) = drive_until(
        &handle,
        || {
            udp_send(sink.addr(), &sent);
        },
        |_, errors| calls() >= 3 && !errors.is_empty(),
    );

    assert_eq!(calls(), 3, "every packet reached the callback");
    let original = (20 + UDP_HEADER_LEN + long.len()) as u32;
    assert!(
        matches!(
            errors[..],
            [Error::TruncatedPayload { queue: 0, id: 2, copied, original: o }]
                if copied == usize::from(RANGE) && o == original
        ),
        "{errors:?}"
    );
    assert!(errors[0].is_transient());
    let mut expected = vec![b"SHORT".to_vec(), b"FITS".to_vec()];
    if fallback.is_some() {
        expected.insert(1, long.to_vec()); // accepted as it was
    }
    assert_eq!(received(&sink, expected.len()), expected);
    let marked = u64::from(fallback.is_some());
    assert_eq!(
        rules.packets(FILTER_INPUT, "in-marked"),
        marked,
        "fallback mark"
    );
    assert_eq!(ns.queue_stat(0).expect("queue 0 listed").queued, 0);
}

#[test]
fn payload_for_a_truncated_copy_is_refused_and_the_packet_dropped() {
    let Some(ns) = support::enter!() else { return };
    payload_for_truncated_copy(&ns, None);
}

#[test]
fn payload_for_a_truncated_copy_is_refused_and_the_fallback_applies() {
    let Some(ns) = support::enter!() else { return };
    payload_for_truncated_copy(&ns, Some(Verdict::accept().with_mark(0x33)));
}

// ---------------------------------------------------------------------------------------------
// Several queues on one handle.
// ---------------------------------------------------------------------------------------------

/// A callback that logs each packet's queue number and UDP data, and accepts it.
fn recorder(log: &Log<(u16, String)>) -> impl FnMut(&Packet<'_>) -> Verdict + Send + '_ {
    |p| {
        let data = String::from_utf8_lossy(udp_data(p.payload())).into_owned();
        log.push((p.queue_num(), data));
        Verdict::accept()
    }
}

/// Two queues bound on one handle, each with its own rule and callback, interleaved traffic:
/// each callback sees exactly its own queue's packets, in order, and everything arrives.
#[test]
fn two_queues_on_one_handle_each_see_only_their_own_packets() {
    let Some(ns) = support::enter!() else { return };
    let sink_a = UdpSink::bind(loopback(false));
    let sink_b = UdpSink::bind(loopback(false));
    PortRules::new(&ns, &sink_a).queue(FILTER_OUTPUT, &[], 3, "to-3");
    PortRules::new(&ns, &sink_b).queue(FILTER_OUTPUT, &[], 4, "to-4");

    const N: usize = 6;
    let a: Vec<String> = (0..N).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    let log_3 = Log::new();
    let log_4 = Log::new();
    let handle = Handle::open().expect("open");
    let _q3 = handle
        .queue(3, QueueConfig::new(), recorder(&log_3))
        .expect("bind queue 3");
    let _q4 = handle
        .queue(4, QueueConfig::new(), recorder(&log_4))
        .expect("bind queue 4");
    let (to_a, to_b) = (sink_a.addr(), sink_b.addr());
    drive(&handle, 2 * N, || {
        for (a, b) in a.iter().zip(&b) {
            udp_send(to_a, &[a.as_bytes()]);
            udp_send(to_b, &[b.as_bytes()]);
        }
    });

    let tagged = |q: u16, data: &[String]| -> Vec<(u16, String)> {
        data.iter().map(|d| (q, d.clone())).collect()
    };
    assert_eq!(log_3.items(), tagged(3, &a));
    assert_eq!(log_4.items(), tagged(4, &b));
    let bytes =
        |data: &[String]| -> Vec<Vec<u8>> { data.iter().map(|d| d.clone().into_bytes()).collect() };
    assert_eq!(received(&sink_a, N), bytes(&a));
    assert_eq!(received(&sink_b, N), bytes(&b));
}

/// Packets that arrive while the handle waits for the acknowledgement of another bind are kept
/// and decided by the next `process`, their verdicts (of different kinds and sizes, one larger
/// than the send buffer) sent together: every verdict takes effect.
#[test]
fn verdicts_for_packets_received_during_a_bind_all_take_effect() {
    let Some(ns) = support::enter!() else { return };
    let sink = sink_queued_to(&ns, false, 1);
    let rules = PortRules::new(&ns, &sink);
    rules.count(FILTER_INPUT, &["-m", "mark", "--mark", "0x2a"], "in-marked");
    let big = vec![b'R'; 20_001]; // odd: the verdict after it starts after padding
    let handle = Handle::open().expect("open");
    let _q1 = handle
        .queue(1, QueueConfig::new(), |p| match udp_data(p.payload()) {
            b"drop" => Verdict::drop(),
            b"rewrite" => Verdict::accept()
                .with_payload(with_udp_data(p.payload(), &big))
                .expect("small enough"),
            b"mark" => Verdict::accept().with_mark(0x2a),
            _ => Verdict::accept(),
        })
        .expect("bind queue 1");
    let sent: [&[u8]; 5] = [b"accept", b"drop", b"rewrite", b"mark", b"accept again"];
    udp_send(sink.addr(), &sent);
    let waiting = || ns.queue_stat(1).map(|s| s.queued);
    assert!(support::wait_until(DEADLINE, || waiting() == Some(5)));
    // Waiting for this bind's acknowledgement, the handle receives the five packet messages.
    let _q2 = handle
        .queue(2, QueueConfig::new(), |_| Verdict::drop())
        .expect("bind queue 2");
    assert_eq!(waiting(), Some(5), "nothing decided yet");
    drive(&handle, sent.len(), || {});

    let expected = [&b"accept"[..], &big, b"mark", b"accept again"];
    assert_eq!(received(&sink, expected.len()), to_vecs(&expected));
    assert_eq!(waiting(), Some(0));
    assert_eq!(rules.packets(FILTER_INPUT, "in-marked"), 1);
}

// ---------------------------------------------------------------------------------------------
// No kernel needed.
// ---------------------------------------------------------------------------------------------

#[test]
fn with_payload_refuses_more_than_max_payload_len() {
    assert_eq!(MAX_PAYLOAD_LEN, 65531);
    let err = Verdict::accept()
        .with_payload(vec![0; 65532])
        .expect_err("65532 bytes must be refused");
    assert!(
        matches!(
            err,
            Error::PayloadTooLarge {
                len: 65532,
                max: 65531
            }
        ),
        "{err:?}"
    );
    let ok = Verdict::accept()
        .with_payload(vec![0; 65531])
        .expect("65531 bytes fit");
    assert_eq!(ok.payload().map(<[u8]>::len), Some(65531));
    assert_eq!((ok.action(), ok.mark()), (Action::Accept, None));

    // A fallback verdict keeps its action and mark, never a payload.
    let config = QueueConfig::new().fallback(ok.with_mark(3));
    assert_eq!(config.get_fallback(), &Verdict::accept().with_mark(3));
    assert_eq!(QueueConfig::new().get_fallback(), &Verdict::drop());
}

/// The verdict values sent to the kernel (`NF_*` from `linux/netfilter.h`; the queue number in
/// the upper 16 bits, `NF_VERDICT_FLAG_QUEUE_BYPASS` 0x8000) and how they display.
#[test]
fn actions_have_the_kernel_values_and_iptables_names() {
    let cases = [
        (Verdict::drop(), 0, "DROP"),
        (Verdict::accept(), 1, "ACCEPT"),
        (Verdict::queue(0), 3, "QUEUE 0"),
        (Verdict::queue(2), 0x0002_0003, "QUEUE 2"),
        (Verdict::queue(65535), 0xffff_0003, "QUEUE 65535"),
        (Verdict::queue_bypass(5), 0x0005_8003, "QUEUE 5 bypass"),
        (Verdict::repeat(), 4, "REPEAT"),
        (Verdict::stop(), 5, "STOP"),
    ];
    for (verdict, raw, name) in cases {
        let action = verdict.action();
        assert_eq!((action.raw(), action.to_string()), (raw, name.to_string()));
        assert_eq!(Verdict::from(action), verdict);
        assert_eq!((verdict.mark(), verdict.payload()), (None, None));
    }
    let v = Verdict::repeat().with_mark(1).with_mark(0x2a);
    assert_eq!((v.action(), v.mark()), (Action::Repeat, Some(0x2a)));
}

/// The test's own checksum helpers: the RFC 1071 example, and a packet rebuilt by
/// `with_udp_data` verifies (IPv4 header and UDP) while a broken one does not.
#[test]
fn checksum_helpers_are_right() {
    // RFC 1071, section 3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
    let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(ones_complement_sum(&rfc), 0xddf2);
    assert_eq!(internet_checksum(&rfc), !0xddf2);
    assert_eq!(
        ones_complement_sum(&[0xab]),
        0xab00,
        "odd length pads with 0"
    );

    // A UDP packet 127.0.0.1:1000 -> 127.0.0.1:2000 carrying "hi" (checksums left at 0).
    let mut v4 = vec![0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0];
    v4.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    v4.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 10, 0, 0, b'h', b'i']);
    let mut v6 = vec![0x60, 0, 0, 0, 0, 10, IPPROTO_UDP, 64];
    v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 10, 0, 0, b'h', b'i']);
    for packet in [v4, v6] {
        for data in [&b"hello"[..], b"", b"odd", &[0xff; 1500]] {
            let rebuilt = with_udp_data(&packet, data);
            assert_eq!(udp_data(&rebuilt), data); // parse checks every length field
            assert_eq!(udp_checksum_sum(&rebuilt), 0xffff);
            if rebuilt[0] >> 4 == 4 {
                assert_eq!(ones_complement_sum(&rebuilt[..20]), 0xffff, "IPv4 header");
            }
            assert_ne!(udp_checksum_sum(&with_wrong_udp_checksum(rebuilt)), 0xffff);
        }
    }
}
