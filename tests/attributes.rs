//! Packet attributes by the kernel's numbering: the `nfqa` numbers against the installed uapi
//! header, `NFQA_PRIORITY` and the address family from the real kernel, and constructed
//! messages for what this kernel cannot produce here (VLAN, layer-2 header, attributes newer
//! than the crate).

#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libnfq::{nfqa, sys, Family, Handle, Hook, Packet, QueueConfig, Verdict, Vlan};
use support::UdpSink;

const UAPI_HEADER: &str = "/usr/include/linux/netfilter/nfnetlink_queue.h";

/// The enumerators of `enum <name> { ... }` in a C header, with their values (implicit
/// numbering only, as in this header).
fn c_enum(source: &str, name: &str) -> BTreeMap<String, u16> {
    let start = source
        .find(&format!("enum {name} {{"))
        .unwrap_or_else(|| panic!("enum {name} not found in {UAPI_HEADER}"));
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    let mut out = BTreeMap::new();
    let mut next = 0u16;
    for line in body.lines() {
        let line = line.split("/*").next().unwrap().trim();
        let Some(item) = line
            .strip_suffix(',')
            .or(Some(line))
            .filter(|l| !l.is_empty())
        else {
            continue;
        };
        assert!(!item.contains('='), "explicit value in {name}: {item}");
        out.insert(item.to_string(), next);
        next += 1;
    }
    out
}

/// Every `NFQA_*` attribute number of the installed kernel uapi header has a constant in
/// `libnfq::nfqa` with the same value, and every constant is in the header: a newer header
/// (new attributes) fails this test until the crate knows them.
#[test]
fn nfqa_numbers_match_the_kernel_uapi_header() {
    let source = std::fs::read_to_string(UAPI_HEADER)
        .unwrap_or_else(|e| panic!("{UAPI_HEADER}: {e} (install linux-libc-dev)"));
    let ours: BTreeMap<&str, u16> = [
        ("NFQA_UNSPEC", nfqa::UNSPEC),
        ("NFQA_PACKET_HDR", nfqa::PACKET_HDR),
        ("NFQA_VERDICT_HDR", nfqa::VERDICT_HDR),
        ("NFQA_MARK", nfqa::MARK),
        ("NFQA_TIMESTAMP", nfqa::TIMESTAMP),
        ("NFQA_IFINDEX_INDEV", nfqa::IFINDEX_INDEV),
        ("NFQA_IFINDEX_OUTDEV", nfqa::IFINDEX_OUTDEV),
        ("NFQA_IFINDEX_PHYSINDEV", nfqa::IFINDEX_PHYSINDEV),
        ("NFQA_IFINDEX_PHYSOUTDEV", nfqa::IFINDEX_PHYSOUTDEV),
        ("NFQA_HWADDR", nfqa::HWADDR),
        ("NFQA_PAYLOAD", nfqa::PAYLOAD),
        ("NFQA_CT", nfqa::CT),
        ("NFQA_CT_INFO", nfqa::CT_INFO),
        ("NFQA_CAP_LEN", nfqa::CAP_LEN),
        ("NFQA_SKB_INFO", nfqa::SKB_INFO),
        ("NFQA_EXP", nfqa::EXP),
        ("NFQA_UID", nfqa::UID),
        ("NFQA_GID", nfqa::GID),
        ("NFQA_SECCTX", nfqa::SECCTX),
        ("NFQA_VLAN", nfqa::VLAN),
        ("NFQA_L2HDR", nfqa::L2HDR),
        ("NFQA_PRIORITY", nfqa::PRIORITY),
        ("__NFQA_MAX", nfqa::MAX + 1),
    ]
    .into_iter()
    .collect();
    let header = c_enum(&source, "nfqnl_attr_type");
    let header: BTreeMap<&str, u16> = header.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(header, ours, "libnfq::nfqa differs from {UAPI_HEADER}");

    let vlan = c_enum(&source, "nfqnl_vlan_attr");
    assert_eq!(vlan["NFQA_VLAN_PROTO"], nfqa::VLAN_PROTO);
    assert_eq!(vlan["NFQA_VLAN_TCI"], nfqa::VLAN_TCI);
    assert_eq!(vlan.len(), 4, "{vlan:?}: new VLAN attributes");

    // The table covers more than the linked library's header does.
    assert!(u32::from(nfqa::MAX) + 1 >= sys::__NFQA_MAX);
}

// ---------------------------------------------------------------------------------------------
// From the kernel.

const DEADLINE: Duration = Duration::from_secs(10);

/// What a callback saw of one packet.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    family: Family,
    hw_protocol: u16,
    hook: Hook,
    priority: Option<u32>,
    raw_priority: Option<Vec<u8>>,
    raw_21: Option<Vec<u8>>,
    vlan: Option<Vlan>,
    l2: Option<Vec<u8>>,
}

impl Seen {
    fn of(p: &Packet<'_>) -> Seen {
        Seen {
            family: p.family(),
            hw_protocol: p.hw_protocol(),
            hook: p.hook(),
            priority: p.priority(),
            raw_priority: p.raw_attr(nfqa::PRIORITY).map(<[u8]>::to_vec),
            raw_21: p.raw_attr(21).map(<[u8]>::to_vec),
            vlan: p.vlan(),
            l2: p.l2_header().map(<[u8]>::to_vec),
        }
    }
}

/// Binds `queue`, runs `send`, and processes until one packet was seen.
fn capture_one(queue: u16, send: impl FnOnce()) -> Seen {
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _queue = handle
        .queue(queue, QueueConfig::new(), |p| {
            seen.lock().unwrap().push(Seen::of(p));
            Verdict::accept()
        })
        .unwrap();
    send();
    let deadline = Instant::now() + DEADLINE;
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no packet queued");
        handle.process().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    seen.into_iter().next().unwrap()
}

fn set_priority(sock: &UdpSocket, priority: i32) {
    // SAFETY: `priority` is a live c_int of the size passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PRIORITY,
            (&priority as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_PRIORITY: {}", std::io::Error::last_os_error());
}

/// A UDP socket with `SO_PRIORITY` 6 sends on `OUTPUT`: the kernel attaches `NFQA_PRIORITY`
/// (21, newer than libnetfilter_queue 1.0.5's header), and both `priority()` and `raw_attr(21)`
/// show it. Without the option, neither does.
#[test]
fn priority_from_so_priority_on_output() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 21);
    let with = capture_one(21, || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_priority(&sock, 6);
        sock.send_to(b"prio", sink.addr()).unwrap();
    });
    assert_eq!(with.hook, Hook::LocalOut);
    assert_eq!(with.priority, Some(6));
    assert_eq!(with.raw_priority.as_deref(), Some(&6u32.to_be_bytes()[..]));
    assert_eq!(with.raw_21, with.raw_priority);
    assert_eq!(sink.recv_one(DEADLINE).as_deref(), Some(&b"prio"[..]));

    let without = capture_one(21, || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(b"none", sink.addr()).unwrap();
    });
    assert_eq!((without.priority, without.raw_21), (None, None));
}

/// `family()` is the family of the rule's hook: IPv4 for iptables, IPv6 for ip6tables (with the
/// matching hw protocol); nothing on loopback carries a VLAN tag or a layer-2 header.
#[test]
fn family_for_ipv4_and_ipv6() {
    let Some(ns) = support::enter!() else { return };
    let sink4 = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink4.port(), 4);
    let v4 = capture_one(4, || {
        support::udp_send(sink4.addr(), &[b"v4"]);
    });
    assert_eq!((v4.family, v4.hw_protocol), (Family::Ipv4, 0x0800));
    assert_eq!(v4.family.raw(), libc::AF_INET as u8);

    let sink6 = UdpSink::bind("[::1]:0");
    let port = sink6.port().to_string();
    ns.ip6tables(&[
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-j",
        "NFQUEUE",
        "--queue-num",
        "6",
    ]);
    let v6 = capture_one(6, || {
        support::udp_send(sink6.addr(), &[b"v6"]);
    });
    assert_eq!((v6.family, v6.hw_protocol), (Family::Ipv6, 0x86dd));
    assert_eq!(v6.family.raw(), libc::AF_INET6 as u8);
    assert_eq!(sink6.recv_one(DEADLINE).as_deref(), Some(&b"v6"[..]));
    for seen in [&v4, &v6] {
        assert_eq!((seen.vlan, &seen.l2), (None, &None));
    }
}

// ---------------------------------------------------------------------------------------------
// Constructed messages, dispatched through the receive path.
// Needs the `fuzzing` feature (`Handle::register_for_fuzzing`, `dispatch_for_fuzzing`): no
// kernel, no privilege.

#[cfg(feature = "fuzzing")]
mod constructed {
    use super::*;

    const QUEUE: u16 = 9;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    fn nested(kind: u16, inner: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | libc::NLA_F_NESTED as u16, &inner.concat())
    }

    /// A packet message as the kernel lays it out: nlmsghdr, nfgenmsg (`family`, `QUEUE`), the
    /// packet header (id, hw protocol, hook), then `attrs`.
    fn packet_message(family: u8, id: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&id.to_be_bytes());
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(0);
        let mut body = attr(nfqa::PACKET_HDR, &hdr);
        body.extend(attrs.concat());
        let len = 16 + 4 + body.len();
        let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(len as u32).to_ne_bytes());
        bytes.extend_from_slice(&msg_type.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(&[family, 0]);
        bytes.extend_from_slice(&QUEUE.to_be_bytes());
        bytes.extend(body);
        bytes
    }

    /// Everything a callback reads of a constructed packet.
    #[derive(Debug, PartialEq)]
    struct Read {
        family: Family,
        vlan: Option<Vlan>,
        l2: Option<Vec<u8>>,
        priority: Option<u32>,
        exp: Option<Vec<u8>>,
        raw: Vec<(u16, Vec<u8>)>,
        mark: u32,
        payload: Vec<u8>,
    }

    /// Dispatches `datagram` to a queue whose callback records what it reads; returns one `Read`
    /// per packet. `raw_numbers` are the attribute numbers read with `raw_attr`.
    fn dispatch(datagram: &[u8], raw_numbers: &[u16]) -> Vec<Read> {
        let reads = Mutex::new(Vec::new());
        let handle = Handle::open().unwrap();
        handle
            .register_for_fuzzing(QUEUE, QueueConfig::new(), |p| {
                reads.lock().unwrap().push(Read {
                    family: p.family(),
                    vlan: p.vlan(),
                    l2: p.l2_header().map(<[u8]>::to_vec),
                    priority: p.priority(),
                    exp: p.exp().map(<[u8]>::to_vec),
                    raw: raw_numbers
                        .iter()
                        .filter_map(|&n| Some((n, p.raw_attr(n)?.to_vec())))
                        .collect(),
                    mark: p.mark(),
                    payload: p.payload().to_vec(),
                });
                Verdict::accept()
            })
            .unwrap();
        let (dispatched, errors) = handle.dispatch_for_fuzzing(datagram).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        drop(handle);
        let reads = reads.into_inner().unwrap();
        assert_eq!(dispatched, reads.len());
        reads
    }

    /// `NFQA_VLAN` (nested protocol and TCI) and `NFQA_L2HDR`, laid out as the kernel's
    /// `nfqnl_put_bridge` writes them for a bridged 802.1Q frame.
    #[test]
    fn vlan_and_l2_header_of_a_bridged_frame() {
        let l2: Vec<u8> = [
            [0x02, 0, 0, 0, 0, 1].as_slice(),      // destination
            &[0x02, 0, 0, 0, 0, 2],                // source
            &[0x81, 0x00, 0xa0, 0x2a, 0x08, 0x00], // 802.1Q tag (PCP 5, VID 42), IPv4
        ]
        .concat();
        let tci = 0xa02au16; // PCP 5, DEI 0, VID 42
        let msg = packet_message(
            libc::NFPROTO_BRIDGE as u8,
            1,
            &[
                nested(
                    nfqa::VLAN,
                    &[
                        attr(nfqa::VLAN_PROTO, &0x8100u16.to_be_bytes()),
                        attr(nfqa::VLAN_TCI, &tci.to_be_bytes()),
                    ],
                ),
                attr(nfqa::L2HDR, &l2),
                attr(nfqa::PAYLOAD, &[0x45; 20]),
            ],
        );
        let reads = dispatch(&msg, &[nfqa::L2HDR]);
        assert_eq!(reads.len(), 1);
        let r = &reads[0];
        assert_eq!(r.family, Family::Bridge);
        let vlan = r.vlan.expect("vlan");
        assert_eq!((vlan.protocol(), vlan.tci()), (0x8100, tci));
        assert_eq!((vlan.id(), vlan.priority(), vlan.dei()), (42, 5, false));
        assert_eq!(r.l2.as_deref(), Some(l2.as_slice()));
        assert_eq!(r.raw, vec![(nfqa::L2HDR, l2.clone())]);
        assert_eq!(r.payload, vec![0x45; 20]);

        // 802.1ad with DEI set; a VLAN attribute missing its TCI is no tag at all.
        let msg = [
            packet_message(
                libc::NFPROTO_BRIDGE as u8,
                2,
                &[nested(
                    nfqa::VLAN,
                    &[
                        attr(nfqa::VLAN_PROTO, &0x88a8u16.to_be_bytes()),
                        attr(nfqa::VLAN_TCI, &0x1fffu16.to_be_bytes()),
                    ],
                )],
            ),
            packet_message(
                libc::NFPROTO_BRIDGE as u8,
                3,
                &[nested(
                    nfqa::VLAN,
                    &[attr(nfqa::VLAN_PROTO, &0x8100u16.to_be_bytes())],
                )],
            ),
        ]
        .concat();
        let reads = dispatch(&msg, &[]);
        let vlan = reads[0].vlan.expect("vlan");
        assert_eq!(
            (vlan.protocol(), vlan.id(), vlan.priority(), vlan.dei()),
            (0x88a8, 4095, 0, true)
        );
        assert_eq!(reads[1].vlan, None);
    }

    /// Attributes beyond the crate's table (as a future kernel would send) are reachable by number
    /// with `raw_attr`, whatever their number, and do not disturb the known ones around them; an
    /// attribute too short for its type is ignored by the typed accessor but still reachable raw.
    #[test]
    fn future_attributes_stay_reachable() {
        let msg = packet_message(
            libc::NFPROTO_IPV4 as u8,
            1,
            &[
                attr(nfqa::MARK, &5u32.to_be_bytes()),
                attr(22, b"twenty-two"),
                attr(nfqa::PRIORITY, &7u32.to_be_bytes()),
                nested(200, &[attr(1, &[1, 2, 3, 4])]),
                attr(0x3fff, &[]),
                attr(nfqa::EXP, b"expectation"),
                attr(nfqa::PAYLOAD, b"data"),
            ],
        );
        let numbers = [21, 22, 23, 200, 0x3fff];
        let r = dispatch(&msg, &numbers).remove(0);
        assert_eq!(r.mark, 5);
        assert_eq!(r.priority, Some(7));
        assert_eq!(r.exp.as_deref(), Some(&b"expectation"[..]));
        assert_eq!(r.payload, b"data");
        assert_eq!(
            r.raw,
            vec![
                (21, 7u32.to_be_bytes().to_vec()),
                (22, b"twenty-two".to_vec()),
                (200, attr(1, &[1, 2, 3, 4])),
                (0x3fff, vec![]),
            ]
        );
        assert_eq!(r.family, Family::Ipv4);

        // A priority of 2 bytes is not a priority, but is still there as sent; unknown families
        // stay numbers.
        let msg = packet_message(99, 2, &[attr(nfqa::PRIORITY, &[0, 6])]);
        let r = dispatch(&msg, &[nfqa::PRIORITY]).remove(0);
        assert_eq!(r.priority, None);
        assert_eq!(r.raw, vec![(nfqa::PRIORITY, vec![0, 6])]);
        assert_eq!(r.family, Family::Other(99));
    }
}
