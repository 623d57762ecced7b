//! GSO super-packets against the real kernel: with `QueueFlags::GSO` a UDP GSO send arrives as
//! one packet flagged `SkbInfo::GSO` (and checksum-not-ready), which `PacketBuf` reads but
//! refuses to rewrite; accepted as is, its segments reach the receiver intact. Without the flag
//! the kernel segments first, and each segment can be rewritten.

#[allow(unused_imports)]
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libnfq::pkt::{PacketBuf, PktError};
use libnfq::{Handle, QueueConfig, QueueFlags, SkbInfo, Verdict};
use support::UdpSink;

/// `UDP_SEGMENT` (linux/udp.h): one send becomes one GSO packet of several segments.
const UDP_SEGMENT: libc::c_int = 103;
const SEGMENT: usize = 1000;
const SEGMENTS: usize = 3;

/// Sends `SEGMENTS` datagrams of `SEGMENT` bytes as one UDP GSO send.
fn send_gso(to: SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let value = SEGMENT as libc::c_int;
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let data = vec![b'g'; SEGMENT * SEGMENTS];
    assert_eq!(sock.send_to(&data, to).expect("send GSO"), data.len());
}

/// What the callback saw of a packet: payload length, GSO flag, what a rewrite returned.
type Sight = (usize, bool, Result<(), PktError>);
type Seen = Mutex<Vec<Sight>>;

/// Sends one UDP GSO send through a queue (with or without `QueueFlags::GSO`) whose callback
/// tries to rewrite each packet: what it saw, and what the receiver got.
fn run(gso: bool) -> (Vec<Sight>, Vec<Vec<u8>>) {
    let Some(ns) = support::enter!() else {
        return (Vec::new(), Vec::new());
    };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 0);
    let seen: Seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let flags = if gso {
        QueueFlags::GSO
    } else {
        QueueFlags::empty()
    };
    let _queue = handle
        .queue(0, QueueConfig::new().flags(flags), |packet| {
            // A same-length rewrite of the first payload byte.
            let rewrite = PacketBuf::from_packet(packet).and_then(|mut buf| {
                buf.mangle_payload(0..1, b"G")?;
                Ok(buf)
            });
            let is_gso = packet.skb_info().contains(SkbInfo::GSO);
            let verdict = match &rewrite {
                // Rewritten segments go out as rewritten (the receiver checks the checksum).
                Ok(buf) => Verdict::accept().with_payload(buf.data()).unwrap(),
                Err(_) => Verdict::accept(),
            };
            seen.lock()
                .unwrap()
                .push((packet.payload().len(), is_gso, rewrite.map(drop)));
            verdict
        })
        .unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    send_gso(sink.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < if gso { 1 } else { SEGMENTS } && Instant::now() < deadline {
        let _ = handle.process();
    }
    let received = sink.recv_until_quiet(Duration::from_millis(300), 10);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (seen, received)
}

#[test]
fn gso_super_packets_are_read_but_not_rewritten() {
    let (seen, received) = run(true);
    if seen.is_empty() && received.is_empty() && !support::kernel_required() {
        return; // no kernel access: skipped by support
    }
    assert_eq!(seen.len(), 1, "one super-packet: {seen:?}");
    let (len, is_gso, rewrite) = &seen[0];
    assert!(*is_gso, "flagged GSO: {seen:?}");
    assert_eq!(
        *len,
        20 + 8 + SEGMENT * SEGMENTS,
        "the whole send in one packet"
    );
    assert!(
        matches!(rewrite, Err(PktError::Unsupported { .. })),
        "a rewrite of a GSO packet is refused: {rewrite:?}"
    );
    // Accepted as is: the kernel segments it, with correct checksums.
    assert_eq!(received, vec![vec![b'g'; SEGMENT]; SEGMENTS]);
}

#[test]
fn without_gso_each_segment_is_rewritten() {
    let (seen, received) = run(false);
    if seen.is_empty() && received.is_empty() && !support::kernel_required() {
        return;
    }
    assert_eq!(seen.len(), SEGMENTS, "{seen:?}");
    for (len, is_gso, rewrite) in &seen {
        assert_eq!((*len, *is_gso), (20 + 8 + SEGMENT, false));
        assert!(rewrite.is_ok(), "{rewrite:?}");
    }
    let mut expected = vec![b'g'; SEGMENT];
    expected[0] = b'G';
    assert_eq!(received, vec![expected; SEGMENTS]);
}
