//! Owned packets have the full view: a `DeferredPacket` (and, with feature `tokio`, what
//! `AsyncHandle::recv` returns) answers every accessor exactly as the borrowed `Packet` did in
//! its callback, with all, none or a prefix of the payload as the queue's `DeferCopy` says.

#[allow(unused_imports)]
mod support;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use libnfq::{
    nfqa, DeferCopy, DeferredPacket, Error, Family, Handle, Hook, Packet, Pending, QueueConfig,
    QueueFlags, SkbInfo, Verdict, Vlan,
};
use support::UdpSink;

const DEADLINE: Duration = Duration::from_secs(10);

/// Every accessor of a packet, as values; `raw` holds `raw_attr(n)` for every number up to 63
/// except the payload (compared on its own).
#[derive(Debug, Clone, PartialEq)]
struct View {
    id: u32,
    queue: u16,
    family: Family,
    hw_protocol: u16,
    hook: Hook,
    mark: u32,
    devs: [Option<u32>; 4],
    uid: Option<u32>,
    gid: Option<u32>,
    secctx: Option<Vec<u8>>,
    skb_info: SkbInfo,
    timestamp: Option<SystemTime>,
    hw_addr: Option<Vec<u8>>,
    conntrack: Option<Vec<u8>>,
    conntrack_info: Option<u32>,
    exp: Option<Vec<u8>>,
    vlan: Option<Vlan>,
    l2: Option<Vec<u8>>,
    priority: Option<u32>,
    raw: Vec<(u16, Vec<u8>)>,
}

fn raw_attrs(get: impl Fn(u16) -> Option<Vec<u8>>) -> Vec<(u16, Vec<u8>)> {
    (0..64)
        .filter(|&n| n != nfqa::PAYLOAD && n != nfqa::CAP_LEN)
        .filter_map(|n| Some((n, get(n)?)))
        .collect()
}

fn view_of_packet(p: &Packet<'_>) -> View {
    View {
        id: p.id(),
        queue: p.queue_num(),
        family: p.family(),
        hw_protocol: p.hw_protocol(),
        hook: p.hook(),
        mark: p.mark(),
        devs: [p.indev(), p.outdev(), p.physindev(), p.physoutdev()],
        uid: p.uid(),
        gid: p.gid(),
        secctx: p.secctx().map(<[u8]>::to_vec),
        skb_info: p.skb_info(),
        timestamp: p.timestamp(),
        hw_addr: p.hw_addr().map(<[u8]>::to_vec),
        conntrack: p.conntrack().map(|c| c.as_bytes().to_vec()),
        conntrack_info: p.conntrack_info().map(|i| i.raw()),
        exp: p.exp().map(<[u8]>::to_vec),
        vlan: p.vlan(),
        l2: p.l2_header().map(<[u8]>::to_vec),
        priority: p.priority(),
        raw: raw_attrs(|n| p.raw_attr(n).map(<[u8]>::to_vec)),
    }
}

/// The same, read through `DeferredPacket`'s own accessors (not its `packet()` view).
fn view_of_deferred(d: &DeferredPacket) -> View {
    View {
        id: d.id(),
        queue: d.queue_num(),
        family: d.family(),
        hw_protocol: d.hw_protocol(),
        hook: d.hook(),
        mark: d.mark(),
        devs: [d.indev(), d.outdev(), d.physindev(), d.physoutdev()],
        uid: d.uid(),
        gid: d.gid(),
        secctx: d.secctx().map(<[u8]>::to_vec),
        skb_info: d.skb_info(),
        timestamp: d.timestamp(),
        hw_addr: d.hw_addr().map(<[u8]>::to_vec),
        conntrack: d.conntrack().map(|c| c.as_bytes().to_vec()),
        conntrack_info: d.conntrack_info().map(|i| i.raw()),
        exp: d.exp().map(<[u8]>::to_vec),
        vlan: d.vlan(),
        l2: d.l2_header().map(<[u8]>::to_vec),
        priority: d.priority(),
        raw: raw_attrs(|n| d.raw_attr(n).map(<[u8]>::to_vec)),
    }
}

/// What the callback saw of one packet, and the payload-related values.
#[derive(Debug, Clone)]
struct Borrowed {
    view: View,
    payload: Vec<u8>,
    raw_payload: Option<Vec<u8>>,
    original_len: u32,
    truncated: bool,
}

/// Checks `d` against what its callback saw, given what `copy` keeps.
fn check(d: &DeferredPacket, seen: &Borrowed, copy: DeferCopy) {
    assert_eq!(view_of_deferred(d), seen.view, "{copy:?}");
    assert_eq!(view_of_packet(&d.packet()), seen.view, "{copy:?}");
    let full = seen.payload.as_slice();
    let kept = match copy {
        DeferCopy::All => full,
        DeferCopy::Metadata => &full[..0],
        DeferCopy::Prefix(n) => &full[..n.min(full.len())],
        _ => unreachable!(),
    };
    // The payload attribute is there as far as it was copied (absent when it was not sent).
    let raw_payload = match copy {
        DeferCopy::Metadata => None,
        _ => seen.raw_payload.as_ref().map(|_| kept),
    };
    assert_eq!(d.payload(), kept, "{copy:?}");
    assert_eq!(d.packet().payload(), kept, "{copy:?}");
    assert_eq!(d.raw_attr(nfqa::PAYLOAD), raw_payload, "{copy:?}");
    assert_eq!(d.original_len(), seen.original_len, "{copy:?}");
    assert_eq!(
        d.is_truncated(),
        seen.truncated || kept.len() < full.len(),
        "{copy:?}"
    );
}

fn set_sockopt(sock: &UdpSocket, name: i32, value: i32) {
    // SAFETY: `value` is a live c_int of the size passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// A socket with a priority and a mark, sending `payload` to `to`.
fn send_marked(to: std::net::SocketAddr, payload: &[u8]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_sockopt(&sock, libc::SO_PRIORITY, 3);
    set_sockopt(&sock, libc::SO_MARK, 0x55);
    sock.send_to(payload, to).unwrap();
}

/// From the kernel: a packet with a mark, a priority, uid/gid, out device, deferred with each
/// `DeferCopy`, answers every accessor as its borrowed packet did; then the owned packets are
/// decided, and only the verdicts that could be sent arrive.
#[test]
fn deferred_packets_have_the_full_view() {
    let Some(ns) = support::enter!() else { return };
    let payload = vec![0xab; 1000];
    let copies = [
        (11u16, DeferCopy::All),
        (12, DeferCopy::Metadata),
        (13, DeferCopy::Prefix(28)),
        (14, DeferCopy::Prefix(5000)),
    ];
    for (num, copy) in copies {
        // Different ports per queue, so each datagram goes to one queue.
        let sink = UdpSink::bind("127.0.0.1:0");
        ns.queue_udp_port(sink.port(), num);
        let seen: Mutex<Vec<Borrowed>> = Mutex::new(Vec::new());
        let owned: Mutex<Vec<DeferredPacket>> = Mutex::new(Vec::new());
        let handle = Handle::open().unwrap();
        handle
            .set_recv_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let config = QueueConfig::new()
            .flags(QueueFlags::UID_GID)
            .defer_copy(copy);
        let _queue = handle
            .queue_deferrable(num, config, |pending: Pending<'_>| {
                seen.lock().unwrap().push(Borrowed {
                    view: view_of_packet(&pending),
                    payload: pending.payload().to_vec(),
                    raw_payload: pending.raw_attr(nfqa::PAYLOAD).map(<[u8]>::to_vec),
                    original_len: pending.original_len(),
                    truncated: pending.is_truncated(),
                });
                let (d, handled) = pending.defer();
                owned.lock().unwrap().push(d);
                handled
            })
            .unwrap();
        send_marked(sink.addr(), &payload);
        let deadline = Instant::now() + DEADLINE;
        while owned.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no packet queued");
            handle.process().unwrap();
        }
        let d = owned.lock().unwrap().pop().unwrap();
        let s = seen.lock().unwrap()[0].clone();
        // The packet really carries what is compared.
        assert_eq!(s.view.priority, Some(3));
        assert_eq!(s.view.mark, 0x55);
        // (As the initial user namespace sees it: not this process's uid when it runs in a
        // user namespace.)
        assert!(s.view.uid.is_some() && s.view.gid.is_some());
        assert_eq!(s.view.family, Family::Ipv4);
        assert_eq!(s.payload.len(), 28 + payload.len());
        check(&d, &s, copy);
        std::thread::scope(|t| {
            t.spawn(move || {
                // A replacement payload on a prefix copy that left bytes out would cut the
                // packet: refused, the fallback (drop) applies. Otherwise it is sent.
                let cut = matches!(copy, DeferCopy::Prefix(n) if n < s.payload.len());
                let result = if cut {
                    d.verdict(Verdict::accept().with_payload(s.payload.clone()).unwrap())
                } else {
                    d.accept()
                };
                match (cut, result) {
                    (
                        true,
                        Err(Error::TruncatedPayload {
                            copied, original, ..
                        }),
                    ) => {
                        assert_eq!((copied, original as usize), (28, s.payload.len()))
                    }
                    (false, Ok(())) => {}
                    (cut, other) => panic!("{copy:?}: cut {cut}: {other:?}"),
                }
            });
        });
        let arrived = sink.recv_one(Duration::from_millis(500));
        let expected = !matches!(copy, DeferCopy::Prefix(28));
        assert_eq!(arrived.is_some(), expected, "{copy:?}");
        if let Some(bytes) = arrived {
            assert_eq!(bytes, payload);
        }
    }
}

/// The blocking pull API (`Receiver`) hands out the same owned packets, copied as its queues'
/// `DeferCopy` says: here only the IPv4 and UDP headers.
#[test]
fn receiver_packets_have_the_full_view() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 18);
    let mut rx = libnfq::Receiver::open().unwrap();
    rx.bind(18, QueueConfig::new().defer_copy(DeferCopy::Prefix(28)))
        .unwrap();
    send_marked(sink.addr(), b"headers only");
    let p = rx.recv().unwrap();
    assert_eq!(
        (p.priority(), p.mark(), p.family(), p.hook(), p.outdev()),
        (Some(3), 0x55, Family::Ipv4, Hook::LocalOut, Some(1))
    );
    assert_eq!(view_of_deferred(&p), view_of_packet(&p.packet()));
    assert_eq!(p.payload().len(), 28);
    assert_eq!(p.payload()[9], 17, "the IPv4 header's protocol: UDP");
    assert_eq!(p.original_len(), 28 + 12);
    assert!(p.is_truncated());
    p.accept().unwrap();
    assert_eq!(
        sink.recv_one(DEADLINE).as_deref(),
        Some(&b"headers only"[..])
    );
}

/// The same through the tokio `AsyncHandle`: its queues' `DeferCopy` decides what `recv`
/// returns, and the returned packets have the full view.
#[cfg(feature = "tokio")]
#[test]
fn async_handle_packets_have_the_full_view() {
    use libnfq::tokio::AsyncHandle;
    let Some(ns) = support::enter!() else { return };
    let sink_all = UdpSink::bind("127.0.0.1:0");
    let sink_meta = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink_all.port(), 16);
    ns.queue_udp_port(sink_meta.port(), 17);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut handle = AsyncHandle::open().unwrap();
        handle.bind(16, QueueConfig::new()).unwrap();
        handle
            .bind(17, QueueConfig::new().defer_copy(DeferCopy::Metadata))
            .unwrap();
        send_marked(sink_all.addr(), b"all of it");
        send_marked(sink_meta.addr(), b"metadata only");
        let mut got = Vec::new();
        while got.len() < 2 {
            let p = tokio::time::timeout(DEADLINE, handle.recv())
                .await
                .expect("a packet")
                .expect("recv");
            got.push(p);
        }
        got.sort_by_key(DeferredPacket::queue_num);
        let (all, meta) = (&got[0], &got[1]);
        for p in [all, meta] {
            assert_eq!(
                (p.priority(), p.mark(), p.family(), p.hook()),
                (Some(3), 0x55, Family::Ipv4, Hook::LocalOut)
            );
            assert_eq!(p.outdev(), Some(1));
            assert_eq!(view_of_deferred(p), view_of_packet(&p.packet()));
        }
        assert_eq!(&all.payload()[28..], b"all of it");
        assert!(!all.is_truncated());
        assert_eq!(meta.payload(), b"");
        assert_eq!(meta.raw_attr(nfqa::PAYLOAD), None);
        assert_eq!(meta.original_len(), 28 + 13);
        assert!(meta.is_truncated());
        for p in got {
            p.accept().unwrap();
        }
    });
    assert_eq!(
        sink_all.recv_one(DEADLINE).as_deref(),
        Some(&b"all of it"[..])
    );
    assert_eq!(
        sink_meta.recv_one(DEADLINE).as_deref(),
        Some(&b"metadata only"[..])
    );
}

// ---------------------------------------------------------------------------------------------
// Constructed messages: attributes this kernel does not send here (security context, VLAN,
// layer-2 header, conntrack, expectation, attributes newer than the crate).
// Needs the `fuzzing` feature (`Handle::register_deferrable_for_fuzzing`,
// `dispatch_for_fuzzing`): no kernel, no privilege.

#[cfg(feature = "fuzzing")]
mod constructed {
    use super::*;
    use libnfq::sys;

    const QUEUE: u16 = 15;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    fn packet_message(family: u8, id: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(2);
        let mut body = attr(nfqa::PACKET_HDR, &hdr);
        body.extend(attrs.concat());
        let len = 16 + 4 + body.len();
        let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
        let mut bytes = (len as u32).to_ne_bytes().to_vec();
        bytes.extend_from_slice(&msg_type.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&[family, 0]);
        bytes.extend_from_slice(&QUEUE.to_be_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn owned_copies_keep_every_attribute() {
        let nested = |kind: u16, inner: &[Vec<u8>]| attr(kind | 0x8000, &inner.concat());
        let mut hw = 6u16.to_be_bytes().to_vec();
        hw.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 9, 0, 0]);
        let mut ts = 1_700_000_000u64.to_be_bytes().to_vec();
        ts.extend_from_slice(&250_000u64.to_be_bytes());
        let payload: Vec<u8> = (0..200u8).collect();
        let attrs = [
            attr(nfqa::MARK, &9u32.to_be_bytes()),
            attr(nfqa::TIMESTAMP, &ts),
            attr(nfqa::IFINDEX_INDEV, &3u32.to_be_bytes()),
            attr(nfqa::IFINDEX_PHYSINDEV, &4u32.to_be_bytes()),
            attr(nfqa::HWADDR, &hw),
            nested(nfqa::CT, &[attr(8, &0x77u32.to_be_bytes())]),
            attr(nfqa::CT_INFO, &2u32.to_be_bytes()),
            attr(nfqa::SKB_INFO, &5u32.to_be_bytes()),
            nested(nfqa::EXP, &[attr(1, b"exp")]),
            attr(nfqa::UID, &1000u32.to_be_bytes()),
            attr(nfqa::GID, &100u32.to_be_bytes()),
            attr(nfqa::SECCTX, b"system_u:object_r:ssh_t:s0\0"),
            nested(
                nfqa::VLAN,
                &[
                    attr(nfqa::VLAN_PROTO, &0x8100u16.to_be_bytes()),
                    attr(nfqa::VLAN_TCI, &0x2064u16.to_be_bytes()),
                ],
            ),
            attr(nfqa::L2HDR, &[0xee; 14]),
            attr(nfqa::PRIORITY, &4u32.to_be_bytes()),
            attr(nfqa::PAYLOAD, &payload),
            attr(33, b"from the future"),
        ];
        let mut datagram = Vec::new();
        let copies = [
            DeferCopy::All,
            DeferCopy::Metadata,
            DeferCopy::Prefix(20),
            DeferCopy::Prefix(0),
            DeferCopy::Prefix(200),
        ];
        for id in 1..=copies.len() as u32 {
            datagram.extend(packet_message(libc::NFPROTO_BRIDGE as u8, id, &attrs));
        }
        let seen: Mutex<Vec<Borrowed>> = Mutex::new(Vec::new());
        let owned: Mutex<Vec<DeferredPacket>> = Mutex::new(Vec::new());
        let handle = Handle::open().unwrap();
        handle
            .register_deferrable_for_fuzzing(QUEUE, QueueConfig::new(), |pending: Pending<'_>| {
                seen.lock().unwrap().push(Borrowed {
                    view: view_of_packet(&pending),
                    payload: pending.payload().to_vec(),
                    raw_payload: pending.raw_attr(nfqa::PAYLOAD).map(<[u8]>::to_vec),
                    original_len: pending.original_len(),
                    truncated: pending.is_truncated(),
                });
                let copy = copies[pending.id() as usize - 1];
                let (d, handled) = pending.defer_copying(copy);
                owned.lock().unwrap().push(d);
                handled
            })
            .unwrap();
        let (n, errors) = handle.dispatch_for_fuzzing(&datagram).unwrap();
        assert_eq!((n, errors.len()), (copies.len(), 0), "{errors:?}");
        let owned = std::mem::take(&mut *owned.lock().unwrap());
        let seen = seen.lock().unwrap().clone();
        for ((d, s), copy) in owned.iter().zip(&seen).zip(copies) {
            // What the borrowed packet showed is what was constructed.
            assert_eq!(
                s.view.secctx.as_deref(),
                Some(&b"system_u:object_r:ssh_t:s0"[..])
            );
            assert_eq!(s.view.vlan.map(|v| v.id()), Some(100));
            assert_eq!(s.view.priority, Some(4));
            assert_eq!(s.view.family, Family::Bridge);
            assert_eq!(s.view.hw_addr.as_deref(), Some(&[2, 0, 0, 0, 0, 9][..]));
            assert!(s.view.raw.contains(&(33, b"from the future".to_vec())));
            assert_eq!((s.original_len, s.truncated), (200, false));
            check(d, s, copy);
            // The owned packet can go to another thread and still has it all.
            let (d, s) = (d, s.clone());
            std::thread::scope(|t| {
                t.spawn(|| check(d, &s, copy));
            });
        }
        // Dropped, they send nothing (their queue is registered for fuzzing only).
        drop(owned);
    }

    /// xorshift64*: a seeded generator for the randomized test below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random attribute sets (known and unknown numbers, any lengths, nested flags, repeats, a
    /// missing final padding) deferred with random `DeferCopy`s: the owned packet always answers
    /// like the borrowed one. (`NFQA_CAP_LEN`, when sent, is never below the payload's length, as
    /// from the kernel.) `NFQ_FUZZ_ITERATIONS` sets the number of datagrams.
    #[test]
    fn owned_view_equals_borrowed_view_on_random_messages() {
        let iterations: usize = std::env::var("NFQ_FUZZ_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let mut rng = Rng(0x5eed_0f0b_1ec7);
        let seen: Mutex<Vec<(Borrowed, DeferCopy, DeferredPacket)>> = Mutex::new(Vec::new());
        let copies: Mutex<Vec<DeferCopy>> = Mutex::new(Vec::new());
        let handle = Handle::open().unwrap();
        handle
            .register_deferrable_for_fuzzing(QUEUE, QueueConfig::new(), |pending: Pending<'_>| {
                let borrowed = Borrowed {
                    view: view_of_packet(&pending),
                    payload: pending.payload().to_vec(),
                    raw_payload: pending.raw_attr(nfqa::PAYLOAD).map(<[u8]>::to_vec),
                    original_len: pending.original_len(),
                    truncated: pending.is_truncated(),
                };
                let copy = copies.lock().unwrap().pop().unwrap_or_default();
                let (d, handled) = pending.defer_copying(copy);
                seen.lock().unwrap().push((borrowed, copy, d));
                handled
            })
            .unwrap();
        for i in 0..iterations {
            let mut attrs = Vec::new();
            let mut payload_len = None;
            for _ in 0..rng.below(12) {
                let kind = match rng.below(4) {
                    0 => rng.below(64) as u16,
                    1 => nfqa::PAYLOAD,
                    _ => rng.below(usize::from(nfqa::MAX) + 1) as u16,
                };
                let len = [0, 1, 2, 4, 4, 8, 16, 20, 33, 300][rng.below(10)];
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if kind == nfqa::PAYLOAD {
                    payload_len = Some(len);
                }
                let flag = [0u16, 0, 0, 0x8000, 0x4000][rng.below(5)];
                attrs.push(attr(kind | flag, &bytes));
            }
            if rng.below(3) == 0 {
                let cap = payload_len.unwrap_or(0) + rng.below(2000);
                attrs.push(attr(nfqa::CAP_LEN, &(cap as u32).to_be_bytes()));
            }
            let mut message = packet_message(rng.below(12) as u8, i as u32 + 1, &attrs);
            if rng.below(4) == 0 {
                // Leave out the last attribute's padding (nlmsg_len shrinks with it).
                let pad = (4 - attrs
                    .last()
                    .map_or(0, |a| usize::from(u16::from_ne_bytes([a[0], a[1]])) % 4))
                    % 4;
                if pad != 0 && !attrs.is_empty() {
                    message.truncate(message.len() - pad);
                    let len = message.len() as u32;
                    message[..4].copy_from_slice(&len.to_ne_bytes());
                }
            }
            let copy = match rng.below(4) {
                0 => DeferCopy::All,
                1 => DeferCopy::Metadata,
                _ => DeferCopy::Prefix(rng.below(40)),
            };
            copies.lock().unwrap().push(copy);
            let mut datagram = message;
            datagram.resize(datagram.len().div_ceil(4) * 4, 0);
            let (n, errors) = handle.dispatch_for_fuzzing(&datagram).unwrap();
            assert_eq!((n, errors.len()), (1, 0), "iteration {i}: {errors:?}");
            let (borrowed, copy, d) = seen.lock().unwrap().pop().unwrap();
            check(&d, &borrowed, copy);
            // Dropped: nothing is sent (the queue is registered for fuzzing only).
            drop(d);
            copies.lock().unwrap().clear();
        }
    }
}
