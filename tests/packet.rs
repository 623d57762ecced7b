//! Every `Packet` accessor against known traffic: UDP datagrams sent over loopback in a private
//! network namespace and queued by iptables rules at each hook.

#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use libnfq::{
    sys, CopyMode, Handle, Hook, Packet, Queue, QueueConfig, QueueFlags, SkbInfo, Verdict,
};
use support::{Netns, UdpSink};

/// Upper bound for anything we wait for; normally reached in milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long one `process()` call may block.
const POLL: Duration = Duration::from_millis(50);
/// `lo` in a fresh network namespace.
const LO_IFINDEX: u32 = 1;
/// UDP header length.
const UDP_HDR: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1:0",
            Family::V6 => "[::1]:0",
        }
    }

    fn ethertype(self) -> u16 {
        match self {
            Family::V4 => 0x0800,
            Family::V6 => 0x86dd,
        }
    }

    /// Length of the IP header the kernel builds for a plain UDP datagram (no options).
    fn ip_header_len(self) -> usize {
        match self {
            Family::V4 => 20,
            Family::V6 => 40,
        }
    }

    fn xtables(self, ns: &Netns, args: &[&str]) {
        match self {
            Family::V4 => ns.iptables(args),
            Family::V6 => ns.ip6tables(args),
        }
    }
}

/// What a callback saw of one packet, copied out of the callback.
#[derive(Clone, Debug)]
struct Seen {
    id: u32,
    queue: u16,
    hw_protocol: u16,
    hook: Hook,
    mark: u32,
    raw_mark: Option<Vec<u8>>,
    indev: Option<u32>,
    outdev: Option<u32>,
    physindev: Option<u32>,
    physoutdev: Option<u32>,
    hw_addr: Option<Vec<u8>>,
    timestamp: Option<SystemTime>,
    payload: Vec<u8>,
    raw_payload: Option<Vec<u8>>,
    raw_cap_len: Option<Vec<u8>>,
    original_len: u32,
    truncated: bool,
    uid: Option<u32>,
    gid: Option<u32>,
    skb_info: SkbInfo,
    secctx: Option<Vec<u8>>,
    conntrack: Option<Vec<u8>>,
    conntrack_info: Option<u32>,
    debug: String,
}

impl Seen {
    fn of(p: &Packet<'_>) -> Seen {
        let raw = |nfqa: u32| p.raw_attr(nfqa as u16).map(<[u8]>::to_vec);
        Seen {
            id: p.id(),
            queue: p.queue_num(),
            hw_protocol: p.hw_protocol(),
            hook: p.hook(),
            mark: p.mark(),
            raw_mark: raw(sys::NFQA_MARK),
            indev: p.indev(),
            outdev: p.outdev(),
            physindev: p.physindev(),
            physoutdev: p.physoutdev(),
            hw_addr: p.hw_addr().map(<[u8]>::to_vec),
            timestamp: p.timestamp(),
            payload: p.payload().to_vec(),
            raw_payload: raw(sys::NFQA_PAYLOAD),
            raw_cap_len: raw(sys::NFQA_CAP_LEN),
            original_len: p.original_len(),
            truncated: p.is_truncated(),
            uid: p.uid(),
            gid: p.gid(),
            skb_info: p.skb_info(),
            secctx: p.secctx().map(<[u8]>::to_vec),
            conntrack: p.conntrack().map(|c| c.as_bytes().to_vec()),
            conntrack_info: p.conntrack_info().map(|i| i.raw()),
            debug: format!("{p:?}"),
        }
    }

    /// The UDP destination port, read from the payload.
    fn dport(&self, family: Family) -> u16 {
        let at = family.ip_header_len() + 2;
        u16::from_be_bytes([self.payload[at], self.payload[at + 1]])
    }
}

/// Appends `-t <table> -A <chain> -p udp --dport <port> -j NFQUEUE --queue-num <queue>`.
fn queue_rule(ns: &Netns, family: Family, table: &str, chain: &str, port: u16, queue: u16) {
    let (port, queue) = (port.to_string(), queue.to_string());
    family.xtables(
        ns,
        &[
            "-t",
            table,
            "-A",
            chain,
            "-p",
            "udp",
            "--dport",
            &port,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
        ],
    );
}

/// Calls `handle.process()` until `done()` or the deadline (which fails the test).
fn pump(handle: &Handle<'_>, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for queued packets"
        );
        handle.process().expect("process");
    }
}

/// Binds `queues` on a fresh handle with callbacks that record every packet and accept it,
/// runs `send` on a thread (in this namespace), and dispatches until `expected` packets were
/// seen. Returns them in arrival order, with `send`'s result.
fn capture<R: Send>(
    queues: &[(u16, QueueConfig)],
    expected: usize,
    send: impl FnOnce() -> R + Send,
) -> (Vec<Seen>, R) {
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().expect("open handle");
    handle.set_recv_timeout(Some(POLL)).expect("recv timeout");
    let bound: Vec<Queue<'_, '_>> = queues
        .iter()
        .map(|(num, config)| {
            let seen = &seen;
            handle
                .queue(*num, config.clone(), move |p| {
                    seen.lock().unwrap().push(Seen::of(p));
                    Verdict::accept()
                })
                .unwrap_or_else(|e| panic!("bind queue {num}: {e}"))
        })
        .collect();
    let sent = std::thread::scope(|s| {
        let sender = s.spawn(send);
        pump(&handle, || seen.lock().unwrap().len() >= expected);
        sender.join().expect("sender thread")
    });
    drop(bound);
    drop(handle);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), expected, "unexpected extra packets: {seen:#?}");
    (seen, sent)
}

/// Receives `n` datagrams on `sink` (each within the deadline) and returns them.
fn receive(sink: &UdpSink, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            sink.recv_one(DEADLINE)
                .unwrap_or_else(|| panic!("datagram {i} of {n} not received on {}", sink.addr()))
        })
        .collect()
}

/// Asks the kernel to timestamp received packets for this socket, which makes the kernel
/// stamp incoming packets (so `Packet::timestamp` is usually present on input hooks).
fn enable_rx_timestamps(sink: &UdpSink) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a live socket fd with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sink.socket().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
}

/// One's complement sum of `bytes` (big-endian 16-bit words, odd byte padded).
fn ones_sum(bytes: &[u8], mut sum: u32) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Checks that `ip` is (a prefix, when `truncated`, of) the IP packet of a UDP datagram
/// `src` → `dst` carrying `data`. With `checksum`, also verifies the UDP checksum (only
/// meaningful for a whole packet whose checksum the kernel already filled in).
fn assert_udp_packet(
    ip: &[u8],
    family: Family,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
    checksum: bool,
) {
    let hlen = family.ip_header_len();
    let total = hlen + UDP_HDR + data.len();
    assert!(
        ip.len() >= hlen + UDP_HDR && ip.len() <= total,
        "{} payload bytes, expected {}..={total}",
        ip.len(),
        hlen + UDP_HDR
    );
    let be16 = |at: usize| u16::from_be_bytes([ip[at], ip[at + 1]]);
    let (src_ip, dst_ip) = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) if family == Family::V4 => {
            (s.ip().octets().to_vec(), d.ip().octets().to_vec())
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) if family == Family::V6 => {
            (s.ip().octets().to_vec(), d.ip().octets().to_vec())
        }
        other => panic!("addresses {other:?} are not {family:?}"),
    };
    let pseudo_addrs = match family {
        Family::V4 => {
            assert_eq!(ip[0], 0x45, "IPv4, 20-byte header");
            assert_eq!(usize::from(be16(2)), total, "IPv4 total length");
            assert_eq!(ip[9], libc::IPPROTO_UDP as u8, "IPv4 protocol");
            assert_eq!(ones_sum(&ip[..20], 0), 0xffff, "IPv4 header checksum");
            assert_eq!((&ip[12..16], &ip[16..20]), (&src_ip[..], &dst_ip[..]));
            &ip[12..20]
        }
        Family::V6 => {
            assert_eq!(ip[0] >> 4, 6, "IPv6 version");
            assert_eq!(
                usize::from(be16(4)),
                UDP_HDR + data.len(),
                "IPv6 payload length"
            );
            assert_eq!(ip[6], libc::IPPROTO_UDP as u8, "IPv6 next header");
            assert_eq!((&ip[8..24], &ip[24..40]), (&src_ip[..], &dst_ip[..]));
            &ip[8..40]
        }
    };
    let udp = &ip[hlen..];
    assert_eq!(
        (be16(hlen), be16(hlen + 2), usize::from(be16(hlen + 4))),
        (src.port(), dst.port(), UDP_HDR + data.len()),
        "UDP source port, destination port, length"
    );
    assert_eq!(&udp[UDP_HDR..], &data[..udp.len() - UDP_HDR], "UDP data");
    if checksum {
        assert_eq!(ip.len(), total, "checksum of a truncated packet");
        let pseudo = ones_sum(pseudo_addrs, 0) + u32::from(libc::IPPROTO_UDP as u8);
        let sum = ones_sum(udp, pseudo + udp.len() as u32);
        assert_eq!(ones_sum(&[], sum), 0xffff, "UDP checksum");
    }
}

/// Whether `hook` is one where the packet has an input device (and no output device yet).
fn is_input_hook(hook: Hook) -> bool {
    matches!(hook, Hook::PreRouting | Hook::LocalIn)
}

/// Queues a UDP datagram at `table`/`chain` for each family, checks every accessor of the
/// packet (default configuration: whole packet, no flags) and that the accepted datagram
/// arrives.
fn hook_case(ns: &Netns, table: &str, chain: &str, hook: Hook) {
    assert_eq!(hook.to_string(), chain, "Hook Display");
    let data: Vec<u8> = (0..100u8).collect();
    for (i, family) in Family::BOTH.into_iter().enumerate() {
        let queue = 10 + i as u16;
        let sink = UdpSink::bind(family.loopback());
        enable_rx_timestamps(&sink);
        queue_rule(ns, family, table, chain, sink.port(), queue);
        let dst = sink.addr();
        let before = SystemTime::now();
        let (seen, src) = capture(&[(queue, QueueConfig::new())], 1, || {
            support::udp_send(dst, &[&data])
        });
        let p = &seen[0];
        let ctx = format!("{family:?} {table}/{chain}: {p:#?}");
        assert_eq!((p.id, p.queue, p.hook), (1, queue, hook), "{ctx}");
        assert_eq!(p.hw_protocol, family.ethertype(), "{ctx}");
        assert_udp_packet(&p.payload, family, src, dst, &data, true);
        assert_eq!(p.original_len as usize, p.payload.len(), "{ctx}");
        assert!(!p.truncated && p.raw_cap_len.is_none(), "{ctx}");
        // Copy mode PACKET without QueueFlags::GSO: the kernel completes the checksum before
        // copying, so the packet no longer reports CSUM_NOT_READY (and its checksum is valid,
        // checked above).
        assert_eq!(p.skb_info, SkbInfo::empty(), "{ctx}");
        assert_eq!((p.mark, &p.raw_mark), (0, &None), "{ctx}");
        assert_eq!((p.physindev, p.physoutdev), (None, None), "{ctx}");
        assert_eq!((p.uid, p.gid), (None, None), "{ctx}");
        assert_eq!(p.secctx, None, "{ctx}");
        assert_eq!((&p.conntrack, p.conntrack_info), (&None, None), "{ctx}");
        if is_input_hook(hook) {
            assert_eq!((p.indev, p.outdev), (Some(LO_IFINDEX), None), "{ctx}");
            // lo has an all-zero MAC address.
            assert_eq!(p.hw_addr.as_deref(), Some(&[0u8; 6][..]), "{ctx}");
            if let Some(ts) = p.timestamp {
                let slack = Duration::from_secs(60);
                assert!(
                    ts + slack >= before && ts <= SystemTime::now() + slack,
                    "timestamp {ts:?} not within a minute of now; {ctx}"
                );
            }
        } else {
            assert_eq!((p.indev, p.outdev), (None, Some(LO_IFINDEX)), "{ctx}");
            assert_eq!((&p.hw_addr, p.timestamp), (&None, None), "{ctx}");
        }
        for field in [
            "Packet {".to_string(),
            format!("queue: {queue}"),
            "id: 1".to_string(),
            format!("hw_protocol: {:#06x}", family.ethertype()),
            format!("hook: {hook:?}"),
            "mark: 0".to_string(),
            format!("indev: {:?}", p.indev),
            format!("outdev: {:?}", p.outdev),
            format!("payload_len: {}", p.payload.len()),
            format!("original_len: {}", p.original_len),
        ] {
            assert!(p.debug.contains(&field), "{field:?} missing in {}", p.debug);
        }
        assert_eq!(receive(&sink, 1), vec![data.clone()], "{ctx}");
    }
}

#[test]
fn output_hook_in_filter_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "filter", "OUTPUT", Hook::LocalOut);
}

#[test]
fn output_hook_in_mangle_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "mangle", "OUTPUT", Hook::LocalOut);
}

#[test]
fn postrouting_hook_in_mangle_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "mangle", "POSTROUTING", Hook::PostRouting);
}

#[test]
fn prerouting_hook_in_raw_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "raw", "PREROUTING", Hook::PreRouting);
}

#[test]
fn prerouting_hook_in_mangle_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "mangle", "PREROUTING", Hook::PreRouting);
}

#[test]
fn input_hook_in_filter_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "filter", "INPUT", Hook::LocalIn);
}

#[test]
fn input_hook_in_mangle_table() {
    let Some(ns) = support::enter!() else { return };
    hook_case(&ns, "mangle", "INPUT", Hook::LocalIn);
}

#[test]
fn hook_names_and_numbers() {
    for (raw, hook, name) in [
        (0, Hook::PreRouting, "PREROUTING"),
        (1, Hook::LocalIn, "INPUT"),
        (2, Hook::Forward, "FORWARD"),
        (3, Hook::LocalOut, "OUTPUT"),
        (4, Hook::PostRouting, "POSTROUTING"),
        (7, Hook::Other(7), "hook 7"),
    ] {
        assert_eq!(Hook::from_raw(raw), hook);
        assert_eq!(hook.raw(), raw);
        assert_eq!(hook.to_string(), name);
    }
}

#[test]
fn ids_count_from_one_per_queue() {
    let Some(ns) = support::enter!() else { return };
    let sinks = [UdpSink::bind("127.0.0.1:0"), UdpSink::bind("127.0.0.1:0")];
    for (queue, sink) in [1, 2].into_iter().zip(&sinks) {
        queue_rule(&ns, Family::V4, "filter", "OUTPUT", sink.port(), queue);
    }
    let (a, b) = (sinks[0].addr(), sinks[1].addr());
    let (seen, ()) = capture(
        &[(1, QueueConfig::new()), (2, QueueConfig::new())],
        5,
        || {
            for (i, dst) in [a, b, a, b, a].into_iter().enumerate() {
                support::udp_send(dst, &[format!("datagram {i}").as_bytes()]);
            }
        },
    );
    for (queue, dst, ids) in [(1, a, vec![1, 2, 3]), (2, b, vec![1, 2])] {
        let of_queue: Vec<&Seen> = seen.iter().filter(|p| p.queue == queue).collect();
        assert_eq!(
            of_queue.iter().map(|p| p.id).collect::<Vec<_>>(),
            ids,
            "queue {queue}: {seen:#?}"
        );
        assert!(of_queue.iter().all(|p| p.dport(Family::V4) == dst.port()));
    }
    assert_eq!(receive(&sinks[0], 3).len(), 3);
    assert_eq!(receive(&sinks[1], 2).len(), 2);
}

#[test]
fn small_copy_range_truncates_long_packets_only() {
    let Some(ns) = support::enter!() else { return };
    let long: Vec<u8> = (0..200u8).collect();
    let short = b"short";
    for (i, family) in Family::BOTH.into_iter().enumerate() {
        let queue = 20 + i as u16;
        // The IP and UDP headers and the first 12 data bytes (40 bytes for IPv4).
        let range = family.ip_header_len() + UDP_HDR + 12;
        let sink = UdpSink::bind(family.loopback());
        queue_rule(&ns, family, "filter", "OUTPUT", sink.port(), queue);
        let dst = sink.addr();
        let config = QueueConfig::new().copy_mode(CopyMode::Packet(range as u16));
        let (seen, src) = capture(&[(queue, config)], 2, || {
            support::udp_send(dst, &[&long, short])
        });
        let (l, s) = (&seen[0], &seen[1]);
        let ctx = format!("{family:?}: {seen:#?}");
        assert_eq!(l.payload.len(), range, "{ctx}");
        assert!(l.truncated, "{ctx}");
        let long_len = family.ip_header_len() + UDP_HDR + long.len();
        assert_eq!(l.original_len as usize, long_len, "{ctx}");
        assert_udp_packet(&l.payload, family, src, dst, &long, false);

        let short_len = family.ip_header_len() + UDP_HDR + short.len();
        assert_eq!(
            (s.payload.len(), s.original_len as usize),
            (short_len, short_len)
        );
        assert!(!s.truncated && s.raw_cap_len.is_none(), "{ctx}");
        assert_udp_packet(&s.payload, family, src, dst, short, true);
        // Only the copy was truncated: the accepted packets arrive whole.
        assert_eq!(receive(&sink, 2), vec![long.clone(), short.to_vec()]);
    }
}

#[test]
fn full_copy_delivers_large_packets_whole() {
    let Some(ns) = support::enter!() else { return };
    let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    for (i, family) in Family::BOTH.into_iter().enumerate() {
        let queue = 30 + i as u16;
        let sink = UdpSink::bind(family.loopback());
        queue_rule(&ns, family, "filter", "OUTPUT", sink.port(), queue);
        let dst = sink.addr();
        let (seen, src) = capture(&[(queue, QueueConfig::new())], 1, || {
            support::udp_send(dst, &[&data])
        });
        let p = &seen[0];
        let len = family.ip_header_len() + UDP_HDR + data.len();
        assert_eq!((p.payload.len(), p.original_len as usize), (len, len));
        assert!(!p.truncated);
        assert_udp_packet(&p.payload, family, src, dst, &data, true);
        assert_eq!(receive(&sink, 1), vec![data.clone()]);
    }
}

#[test]
fn packets_beyond_the_kernel_copy_limit_are_truncated() {
    let Some(ns) = support::enter!() else { return };
    let max = libnfq::MAX_PAYLOAD_LEN;
    // The largest IPv4 UDP datagram (65535-byte packet), and the largest IPv6 one that still
    // fits lo's 65536-byte MTU unfragmented: both exceed what one netlink attribute carries.
    for (i, (family, data_len)) in [(Family::V4, 65_507), (Family::V6, 65_488)]
        .into_iter()
        .enumerate()
    {
        let queue = 35 + i as u16;
        let data: Vec<u8> = (0..data_len).map(|i| (i % 253) as u8).collect();
        let sink = UdpSink::bind(family.loopback());
        queue_rule(&ns, family, "filter", "OUTPUT", sink.port(), queue);
        let dst = sink.addr();
        let (seen, src) = capture(&[(queue, QueueConfig::new())], 1, || {
            support::udp_send(dst, &[&data])
        });
        let p = &seen[0];
        let len = family.ip_header_len() + UDP_HDR + data.len();
        assert!(len > max);
        assert_eq!((p.payload.len(), p.original_len as usize), (max, len));
        assert!(p.truncated);
        assert_udp_packet(&p.payload, family, src, dst, &data, false);
        assert_eq!(receive(&sink, 1), vec![data.clone()]);
    }
}

#[test]
fn meta_mode_copies_no_payload_and_no_length() {
    let Some(ns) = support::enter!() else { return };
    let data = [7u8; 100];
    for (i, family) in Family::BOTH.into_iter().enumerate() {
        let queue = 40 + i as u16;
        let sink = UdpSink::bind(family.loopback());
        queue_rule(&ns, family, "filter", "OUTPUT", sink.port(), queue);
        let dst = sink.addr();
        let config = QueueConfig::new().copy_mode(CopyMode::Meta);
        let (seen, _) = capture(&[(queue, config)], 1, || support::udp_send(dst, &[&data]));
        let p = &seen[0];
        let ctx = format!("{family:?}: {p:#?}");
        assert_eq!(
            (p.id, p.hook, p.outdev),
            (1, Hook::LocalOut, Some(LO_IFINDEX)),
            "{ctx}"
        );
        assert_eq!(p.hw_protocol, family.ethertype(), "{ctx}");
        assert!(p.payload.is_empty() && p.raw_payload.is_none(), "{ctx}");
        // The kernel sends NFQA_CAP_LEN only in copy mode PACKET, so in META mode the packet's
        // length is unknown: original_len() falls back to the (empty) payload's length.
        assert_eq!(
            (p.raw_cap_len.as_deref(), p.original_len),
            (None, 0),
            "{ctx}"
        );
        assert!(!p.truncated, "{ctx}");
        // Nothing was copied, so the kernel did not complete the checksum either.
        assert_eq!(p.skb_info, SkbInfo::CSUM_NOT_READY, "{ctx}");
        assert_eq!(receive(&sink, 1), vec![data.to_vec()], "{ctx}");
    }
}

#[test]
fn gso_flag_leaves_checksum_not_ready() {
    let Some(ns) = support::enter!() else { return };
    let data = b"checksum completed later";
    for (i, family) in Family::BOTH.into_iter().enumerate() {
        let queue = 50 + i as u16;
        let sink = UdpSink::bind(family.loopback());
        queue_rule(&ns, family, "filter", "OUTPUT", sink.port(), queue);
        let dst = sink.addr();
        let config = QueueConfig::new().flags(QueueFlags::GSO);
        let (seen, src) = capture(&[(queue, config)], 1, || support::udp_send(dst, &[data]));
        let p = &seen[0];
        // Locally generated UDP is CHECKSUM_PARTIAL; with GSO the kernel copies it as is.
        assert_eq!(p.skb_info, SkbInfo::CSUM_NOT_READY, "{family:?}: {p:#?}");
        assert_udp_packet(&p.payload, family, src, dst, data, false);
        assert_eq!(receive(&sink, 1), vec![data.to_vec()]);
    }
}

#[test]
fn mark_set_by_earlier_rule_is_reported() {
    let Some(ns) = support::enter!() else { return };
    const MARK: u32 = 0x1234;
    let marked = UdpSink::bind("127.0.0.1:0");
    let plain = UdpSink::bind("127.0.0.1:0");
    let mark = format!("{MARK:#x}");
    let port = marked.port().to_string();
    ns.iptables(&[
        "-t",
        "mangle",
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-j",
        "MARK",
        "--set-mark",
        &mark,
    ]);
    for sink in [&marked, &plain] {
        queue_rule(&ns, Family::V4, "filter", "OUTPUT", sink.port(), 1);
    }
    let (to_marked, to_plain) = (marked.addr(), plain.addr());
    let (seen, ()) = capture(&[(1, QueueConfig::new())], 2, || {
        support::udp_send(to_marked, &[b"marked"]);
        support::udp_send(to_plain, &[b"plain"]);
    });
    let (m, p) = (&seen[0], &seen[1]);
    assert_eq!(m.dport(Family::V4), marked.port());
    assert_eq!(m.mark, MARK, "{m:#?}");
    assert_eq!(m.raw_mark.as_deref(), Some(&MARK.to_be_bytes()[..]));
    assert!(m.debug.contains(&format!("mark: {MARK}")), "{}", m.debug);
    // No mark: the kernel sends no NFQA_MARK and mark() is 0.
    assert_eq!((p.mark, &p.raw_mark), (0, &None), "{p:#?}");
    receive(&marked, 1);
    receive(&plain, 1);
}

/// `(fsuid, fsgid)` of the calling thread.
fn thread_fsids() -> (u32, u32) {
    // SAFETY: setfsuid/setfsgid with an invalid id (-1) change nothing and return the current
    // value; raw syscalls, so only the calling thread is concerned.
    unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long) as u32,
            libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long) as u32,
        )
    }
}

/// Sets the calling thread's fsuid and fsgid (raw syscalls: this thread only); returns the
/// ids now in effect.
fn set_thread_fsids(uid: u32, gid: u32) -> (u32, u32) {
    // SAFETY: raw setfsgid/setfsuid syscalls with integer arguments; they change only the
    // credentials of the calling thread, which exits after sending its datagram.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid as libc::c_long);
        libc::syscall(libc::SYS_setfsuid, uid as libc::c_long);
    }
    thread_fsids()
}

/// Inode of the initial user namespace (`PROC_USER_INIT_INO`).
const INITIAL_USERNS_INO: u64 = 0xEFFF_FFFD;

fn in_initial_userns() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/user")
        .expect("stat /proc/self/ns/user")
        .ino()
        == INITIAL_USERNS_INO
}

/// Maps an id of this process's user namespace to the parent namespace through
/// `/proc/self/{uid,gid}_map` (`kind` = "uid" or "gid"). The kernel reports `NFQA_UID`/`NFQA_GID`
/// in the initial user namespace: this is right in it (identity map) and one level below it,
/// which is where the support module re-runs the test for a plain user.
fn to_initial_ns(kind: &str, id: u32) -> u32 {
    let path = format!("/proc/self/{kind}_map");
    let map = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    map.lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (inside, outside, count) = (f[0], f[1], f[2]);
            let id = u64::from(id);
            (inside..inside + count)
                .contains(&id)
                .then(|| (outside + id - inside) as u32)
        })
        .next()
        .unwrap_or_else(|| panic!("{kind} {id} not mapped in {path}: {map}"))
}

#[test]
fn uid_and_gid_only_with_the_flag() {
    let Some(ns) = support::enter!() else { return };
    let with_flag = UdpSink::bind("127.0.0.1:0");
    let without = UdpSink::bind("127.0.0.1:0");
    queue_rule(&ns, Family::V4, "filter", "OUTPUT", with_flag.port(), 1);
    queue_rule(&ns, Family::V4, "filter", "OUTPUT", without.port(), 2);
    // As real root, a thread can also switch to another fsuid/fsgid for its next socket.
    // SAFETY: geteuid takes no arguments and cannot fail.
    let switch_ids = in_initial_userns() && unsafe { libc::geteuid() } == 0;
    const OTHER: (u32, u32) = (1234, 4321);
    let (to_flag, to_plain) = (with_flag.addr(), without.addr());
    let queues = [
        (1, QueueConfig::new().flags(QueueFlags::UID_GID)),
        (2, QueueConfig::new()),
    ];
    let (seen, ids) = capture(&queues, 2 + usize::from(switch_ids), || {
        let ids = thread_fsids();
        support::udp_send(to_flag, &[b"uid"]);
        support::udp_send(to_plain, &[b"no uid"]);
        if switch_ids {
            assert_eq!(
                set_thread_fsids(OTHER.0, OTHER.1),
                OTHER,
                "setfsuid/setfsgid"
            );
            support::udp_send(to_flag, &[b"other uid"]);
        }
        ids
    });
    let expected = (to_initial_ns("uid", ids.0), to_initial_ns("gid", ids.1));
    let (flagged, plain) = (&seen[0], &seen[1]);
    assert_eq!(flagged.queue, 1);
    assert_eq!(
        (flagged.uid, flagged.gid),
        (Some(expected.0), Some(expected.1))
    );
    assert_eq!(plain.queue, 2);
    assert_eq!((plain.uid, plain.gid), (None, None));
    if switch_ids {
        let other = &seen[2];
        assert_eq!(
            (other.uid, other.gid),
            (Some(OTHER.0), Some(OTHER.1)),
            "{other:#?}"
        );
    }
    receive(&with_flag, 1 + usize::from(switch_ids));
    receive(&without, 1);
}
