//! `libnfq::pkt` without the kernel: exact results on built packets (checksums computed here
//! independently of both the module's Rust and libnetfilter_queue's C), every edge the C helpers
//! do not check, and a seeded fuzz run of random and mutated packets through every view and every
//! mangling function (no panic, no out-of-bounds access, no partial change on error).
//!
//! The fuzz run is bounded by time (`NFQ_FUZZ_SECS`, default 3 s) and seeded (`NFQ_FUZZ_SEED`);
//! a failure prints the seed and iteration that reproduce it. Run the binary under
//! `valgrind --error-exitcode=1` to check the C side's memory accesses too.

use std::ops::Range;
use std::time::{Duration, Instant};

use libnfq::pkt::{Family, IpPacket, PacketBuf, PktError, TcpFlags, IPPROTO_TCP, IPPROTO_UDP};
use libnfq::MAX_PAYLOAD_LEN;

// ---------------------------------------------------------------------------------------------
// Building packets, with checksums computed here.
// ---------------------------------------------------------------------------------------------

/// RFC 1071: the one's complement of the one's complement sum of 16-bit big-endian words.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn put16(bytes: &mut [u8], at: usize, value: usize) {
    bytes[at..at + 2].copy_from_slice(&u16::try_from(value).unwrap().to_be_bytes());
}

fn get16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug)]
enum Ext {
    /// Hop-by-hop options of `(units + 1) * 8` bytes.
    HopByHop(u8),
    /// Destination options of `(units + 1) * 8` bytes.
    DestOpts(u8),
    /// A routing header of `(units + 1) * 8` bytes.
    Routing { units: u8, segments_left: u8 },
    /// A fragment header.
    Fragment { offset: u16, more: bool },
    /// An authentication header of `(units + 2) * 4` bytes.
    Auth(u8),
}

impl Ext {
    fn kind(self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing { .. } => 43,
            Ext::Fragment { .. } => 44,
            Ext::Auth(_) => 51,
            Ext::DestOpts(_) => 60,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        let (len, units) = match self {
            Ext::HopByHop(u) | Ext::DestOpts(u) | Ext::Routing { units: u, .. } => {
                ((usize::from(u) + 1) * 8, u)
            }
            Ext::Fragment { .. } => (8, 0),
            Ext::Auth(u) => ((usize::from(u) + 2) * 4, u),
        };
        let mut out = vec![0x5a; len];
        out[0] = next;
        out[1] = units;
        match self {
            Ext::Routing { segments_left, .. } => {
                out[2] = 0;
                out[3] = segments_left;
            }
            Ext::Fragment { offset, more } => {
                put16(&mut out, 2, usize::from(offset << 3 | u16::from(more)));
                // Identification bits that libnetfilter_queue mistakes for the offset.
                out[4..8].copy_from_slice(&[0xff, 0xff, 0xff, 0xf8]);
            }
            _ => {}
        }
        out
    }
}

/// What to build.
#[derive(Clone, Debug)]
struct Spec {
    family: Family,
    protocol: u8,
    /// IPv4 option words (0..=10).
    v4_option_words: usize,
    /// IPv4 "more fragments" and fragment offset (8-byte units).
    v4_fragment: (bool, u16),
    ext: Vec<Ext>,
    /// TCP option words (0..=10).
    tcp_option_words: usize,
    payload: Vec<u8>,
}

impl Spec {
    fn new(family: Family, protocol: u8, payload: &[u8]) -> Spec {
        Spec {
            family,
            protocol,
            v4_option_words: 0,
            v4_fragment: (false, 0),
            ext: Vec::new(),
            tcp_option_words: 0,
            payload: payload.to_vec(),
        }
    }

    fn udp(family: Family, payload: &[u8]) -> Spec {
        Spec::new(family, IPPROTO_UDP, payload)
    }

    fn tcp(family: Family, payload: &[u8]) -> Spec {
        Spec::new(family, IPPROTO_TCP, payload)
    }

    fn is_fragment(&self) -> bool {
        let v6 = self
            .ext
            .iter()
            .any(|e| matches!(e, Ext::Fragment { offset, more } if *offset != 0 || *more));
        match self.family {
            Family::Ipv4 => self.v4_fragment != (false, 0),
            Family::Ipv6 => v6,
        }
    }

    /// The transport header and payload, checksum field 0.
    fn l4(&self) -> Vec<u8> {
        let mut l4 = match self.protocol {
            IPPROTO_TCP => {
                let mut h = vec![0; 20 + 4 * self.tcp_option_words];
                h[..12].copy_from_slice(&[0x30, 0x39, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 2]);
                h[12] = ((5 + self.tcp_option_words) << 4) as u8;
                h[13] = (TcpFlags::PSH | TcpFlags::ACK).bits();
                put16(&mut h, 14, 65535);
                h[20..].fill(1); // NOP options
                h
            }
            IPPROTO_UDP => {
                let mut h = vec![0x30, 0x39, 0x1f, 0x90, 0, 0, 0, 0];
                put16(&mut h, 4, 8 + self.payload.len());
                h
            }
            _ => Vec::new(),
        };
        l4.extend_from_slice(&self.payload);
        l4
    }

    /// The packet, with every length and checksum right.
    fn build(&self) -> Vec<u8> {
        let mut l4 = self.l4();
        let (mut packet, l4_at, pseudo_addrs) = match self.family {
            Family::Ipv4 => {
                let header_len = 20 + 4 * self.v4_option_words;
                let mut ip = vec![0; header_len];
                ip[0] = 0x40 | (header_len / 4) as u8;
                put16(&mut ip, 2, header_len + l4.len());
                put16(&mut ip, 4, 0x1234);
                let (more, offset) = self.v4_fragment;
                put16(&mut ip, 6, usize::from(u16::from(more) << 13 | offset));
                ip[8] = 64;
                ip[9] = self.protocol;
                ip[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
                ip[20..].fill(1); // NOP options
                let sum = internet_checksum(&[&ip]);
                put16(&mut ip, 10, usize::from(sum));
                let addrs = ip[12..20].to_vec();
                (ip, header_len, addrs)
            }
            Family::Ipv6 => {
                let mut ip = vec![0; 40];
                ip[0] = 0x60;
                ip[7] = 64;
                ip[8..24]
                    .copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                ip[24..40]
                    .copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
                let kinds: Vec<u8> = self.ext.iter().map(|e| e.kind()).collect();
                ip[6] = kinds.first().copied().unwrap_or(self.protocol);
                for (i, ext) in self.ext.iter().enumerate() {
                    let next = kinds.get(i + 1).copied().unwrap_or(self.protocol);
                    ip.extend_from_slice(&ext.bytes(next));
                }
                let at = ip.len();
                put16(&mut ip, 4, at - 40 + l4.len());
                let addrs = ip[8..40].to_vec();
                (ip, at, addrs)
            }
        };
        if matches!(self.protocol, IPPROTO_TCP | IPPROTO_UDP) && !self.is_fragment() {
            let len = l4.len();
            let pseudo_len = match self.family {
                Family::Ipv4 => u16::try_from(len).unwrap().to_be_bytes().to_vec(),
                Family::Ipv6 => u32::try_from(len).unwrap().to_be_bytes().to_vec(),
            };
            let sum = internet_checksum(&[&pseudo_addrs, &[0, self.protocol], &pseudo_len, &l4]);
            let sum = if self.protocol == IPPROTO_UDP && sum == 0 {
                0xffff
            } else {
                sum
            };
            put16(
                &mut l4,
                if self.protocol == IPPROTO_TCP { 16 } else { 6 },
                usize::from(sum),
            );
        }
        assert_eq!(packet.len(), l4_at);
        packet.extend_from_slice(&l4);
        packet
    }
}

/// `bytes` with the checksum fields (IPv4 header and transport) set to `value`.
fn with_checksums(spec: &Spec, mut bytes: Vec<u8>, value: u16) -> Vec<u8> {
    let view = IpPacket::parse(&bytes).unwrap();
    let at = view.transport_offset().unwrap() + if spec.protocol == IPPROTO_TCP { 16 } else { 6 };
    put16(&mut bytes, at, usize::from(value));
    if spec.family == Family::Ipv4 {
        put16(&mut bytes, 10, usize::from(value));
    }
    bytes
}

fn both() -> [Family; 2] {
    [Family::Ipv4, Family::Ipv6]
}

/// Asserts that `buf` holds a consistent, correctly checksummed TCP/UDP packet whose payload is
/// `payload`.
fn assert_valid(buf: &PacketBuf, payload: &[u8]) {
    let view = buf.view().expect("parses");
    assert!(!view.is_truncated());
    assert_eq!(view.total_len(), buf.len(), "IP length field");
    if let Some(ip) = view.ipv4() {
        assert!(ip.checksum_ok(), "IPv4 header checksum");
    }
    if let Some(udp) = view.udp() {
        assert_eq!(
            usize::from(udp.length()),
            buf.len() - view.transport_offset().unwrap(),
            "UDP length"
        );
    }
    assert_eq!(view.payload(), Some(payload));
    assert_eq!(
        view.transport_checksum_ok(),
        Some(true),
        "transport checksum"
    );
}

// ---------------------------------------------------------------------------------------------
// Exact results.
// ---------------------------------------------------------------------------------------------

#[test]
fn packet_buf_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PacketBuf>();
    send_sync::<IpPacket<'static>>();
}

#[test]
fn the_test_checksum_is_rfc_1071() {
    let rfc = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(internet_checksum(&[&rfc]), !0xddf2);
}

#[test]
fn views_of_built_packets() {
    for family in both() {
        let bytes = Spec::udp(family, b"hello").build();
        let view = IpPacket::parse(&bytes).unwrap();
        assert_eq!(view.family(), family);
        assert_eq!(view.protocol(), Some(IPPROTO_UDP));
        assert_eq!(view.total_len(), bytes.len());
        assert!(!view.is_truncated() && !view.is_fragment());
        let udp = view.udp().unwrap();
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.length()),
            (12345, 8080, 13)
        );
        assert_eq!(udp.payload(), b"hello");
        assert!(view.tcp().is_none());
        assert_eq!(view.transport_checksum_ok(), Some(true));

        let mut spec = Spec::tcp(family, b"GET / HTTP/1.0\r\n\r\n");
        spec.tcp_option_words = 3;
        spec.v4_option_words = 2;
        let bytes = spec.build();
        let view = IpPacket::parse(&bytes).unwrap();
        let tcp = view.tcp().unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (12345, 8080));
        assert_eq!((tcp.seq(), tcp.ack(), tcp.window()), (1, 2, 65535));
        assert_eq!(tcp.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!((tcp.header_len(), tcp.options().len()), (32, 12));
        assert_eq!(tcp.payload(), b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(view.transport_checksum_ok(), Some(true));
        match family {
            Family::Ipv4 => {
                let ip = view.ipv4().unwrap();
                assert_eq!(ip.src().octets(), [10, 0, 0, 1]);
                assert_eq!(ip.dst().octets(), [10, 0, 0, 2]);
                assert_eq!((ip.header_len(), ip.options().len(), ip.ttl()), (28, 8, 64));
                assert_eq!((ip.protocol(), ip.identification()), (IPPROTO_TCP, 0x1234));
                assert!(ip.checksum_ok());
                assert!(view.ipv6().is_none());
            }
            Family::Ipv6 => {
                let ip = view.ipv6().unwrap();
                assert_eq!(ip.src().to_string(), "2001:db8::1");
                assert_eq!(ip.dst().to_string(), "2001:db8::2");
                assert_eq!(usize::from(ip.payload_len()), bytes.len() - 40);
                assert_eq!((ip.next_header(), ip.hop_limit()), (IPPROTO_TCP, 64));
                assert!(view.ipv4().is_none());
            }
        }
    }
}

/// libnetfilter_queue's checksum helpers, called through `PacketBuf`, give the checksums
/// computed here, byte for byte.
#[test]
fn c_checksums_equal_independent_ones() {
    for family in both() {
        for mut spec in [
            Spec::udp(family, b"odd length!"),
            Spec::tcp(family, b"even"),
        ] {
            spec.v4_option_words = 1;
            spec.ext = vec![Ext::HopByHop(0), Ext::DestOpts(1)];
            if family == Family::Ipv4 {
                spec.ext.clear();
            }
            let good = spec.build();
            let mut buf = PacketBuf::new(&with_checksums(&spec, good.clone(), 0xbeef)).unwrap();
            assert_eq!(buf.view().unwrap().transport_checksum_ok(), Some(false));
            buf.fix_checksums().unwrap();
            assert_eq!(buf.data(), &good[..], "{spec:?}");
        }
    }
}

/// A UDP checksum that computes to 0 is sent as 0xffff (the C helpers leave 0: "no checksum"
/// over IPv4, invalid over IPv6).
#[test]
fn udp_checksum_zero_is_sent_as_ffff() {
    for family in both() {
        // With the checksum of a payload of two zero bytes as the payload, the sum is 0xffff
        // and the checksum 0 (which the builder sends as 0xffff).
        let zeros = Spec::udp(family, &[0, 0]).build();
        let zero = Spec::udp(family, &get16(&zeros, zeros.len() - 4).to_be_bytes());
        let good = zero.build();
        assert_eq!(get16(&good, good.len() - 4), 0xffff);
        let mut buf = PacketBuf::new(&with_checksums(&zero, good.clone(), 0x1111)).unwrap();
        buf.fix_checksums().unwrap();
        assert_eq!(get16(buf.data(), buf.len() - 4), 0xffff);
        assert_valid(&buf, &good[good.len() - 2..]);
        // The same through a mangle that changes nothing.
        let mut buf = PacketBuf::new(&good).unwrap();
        buf.mangle_payload(0..1, &good[good.len() - 2..good.len() - 1])
            .unwrap();
        assert_eq!(buf.data(), &good[..]);
    }
}

/// IPv6 extension headers are walked in Rust (libnetfilter_queue 1.0.5 reads their length in the
/// wrong unit and the fragment offset from the wrong field): the payload is found and mangled
/// behind any chain, and the lengths and checksum come out right.
#[test]
fn ipv6_extension_header_chains() {
    let chains = [
        vec![Ext::HopByHop(0)],
        vec![Ext::HopByHop(2), Ext::DestOpts(0), Ext::Auth(1)],
        vec![Ext::Routing {
            units: 2,
            segments_left: 0,
        }],
        vec![Ext::Fragment {
            offset: 0,
            more: false,
        }],
        vec![
            Ext::DestOpts(3),
            Ext::Fragment {
                offset: 0,
                more: false,
            },
            Ext::Auth(0),
        ],
    ];
    for chain in chains {
        for protocol in [IPPROTO_UDP, IPPROTO_TCP] {
            let mut spec = Spec::new(Family::Ipv6, protocol, b"a cat and a cat");
            spec.ext = chain.clone();
            let bytes = spec.build();
            let ext_len: usize = bytes.len() - 40 - spec.l4().len();
            let view = IpPacket::parse(&bytes).unwrap();
            assert_eq!(view.transport_offset(), Some(40 + ext_len), "{chain:?}");
            assert_eq!(view.protocol(), Some(protocol));
            assert_eq!(view.payload(), Some(&b"a cat and a cat"[..]));
            assert_eq!(view.transport_checksum_ok(), Some(true));

            let mut buf = PacketBuf::new(&bytes).unwrap();
            assert_eq!(buf.replace_all(b"cat", b"tiger").unwrap(), 2);
            assert_valid(&buf, b"a tiger and a tiger");
            buf.mangle_payload(0..8, b"").unwrap();
            assert_valid(&buf, b"and a tiger");
            // The extension headers are untouched.
            assert_eq!(&buf.data()[40..40 + ext_len], &bytes[40..40 + ext_len]);
        }
    }
}

#[test]
fn growth_is_bounded_by_the_tailroom_and_the_maximum() {
    for family in both() {
        let bytes = Spec::udp(family, b"0123456789").build();
        let mut buf = PacketBuf::alloc(family, &bytes, 10).unwrap();
        assert_eq!(buf.tailroom(), 10);
        let (eleven, twelve) = ([b'x'; 11], [b'x'; 12]);
        let no_room = Err(PktError::NoRoom {
            needed: 11,
            available: 10,
        });
        assert_eq!(buf.mangle_payload(0..0, &eleven), no_room);
        assert_eq!(buf.mangle(0..0, &eleven), no_room);
        assert_eq!(buf.mangle_ip_payload(0..0, &eleven), no_room);
        // Replacing one byte with twelve grows by eleven.
        assert_eq!(buf.replace_all(b"5", &twelve).map(|_| ()), no_room);
        assert_eq!(buf.data(), &bytes[..], "nothing changed");
        assert!(!buf.is_mangled());
        // Two replacements of 1 by 6 bytes need 10: all or nothing.
        assert_eq!(buf.replace_all(b"5", b"......").unwrap(), 1);
        assert_eq!(buf.tailroom(), 5);
        assert_eq!(
            buf.replace_all(b".", b"::"),
            Err(PktError::NoRoom {
                needed: 6,
                available: 5
            })
        );
        buf.mangle_payload(0..0, b"12345").unwrap();
        assert_eq!(buf.tailroom(), 0);
        assert_valid(&buf, b"1234501234......6789");
        assert!(buf.is_mangled());

        // The tailroom is capped so that the packet never exceeds MAX_PAYLOAD_LEN.
        let buf = PacketBuf::alloc(family, &bytes, usize::MAX).unwrap();
        assert_eq!(buf.len() + buf.tailroom(), MAX_PAYLOAD_LEN);
        let mut buf = PacketBuf::alloc(family, &bytes, MAX_PAYLOAD_LEN).unwrap();
        let fill = vec![b'f'; MAX_PAYLOAD_LEN - bytes.len()];
        assert_eq!(
            buf.mangle_payload(0..0, &[&fill[..], b"!"].concat()),
            Err(PktError::TooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        buf.mangle_payload(0..0, &fill).unwrap();
        assert_eq!(buf.len(), MAX_PAYLOAD_LEN);
        assert_valid(&buf, &[&fill[..], b"0123456789"].concat());
        assert!(PacketBuf::new(&vec![0x45; MAX_PAYLOAD_LEN + 1]).is_err());
    }
}

#[test]
fn truncated_copies_give_views_but_refuse_changes() {
    for family in both() {
        for protocol in [IPPROTO_UDP, IPPROTO_TCP] {
            let mut spec = Spec::new(family, protocol, b"0123456789");
            spec.tcp_option_words = 3;
            let bytes = spec.build();
            let l4_at = bytes.len() - spec.l4().len();
            let header = if protocol == IPPROTO_TCP { 32 } else { 8 };
            // Cut inside the payload, inside the transport header, right after the IP header.
            for cut in [l4_at + header + 4, l4_at + header - 3, l4_at] {
                let copy = &bytes[..cut];
                let view = IpPacket::parse(copy).unwrap();
                assert!(view.is_truncated());
                assert_eq!(view.total_len(), bytes.len());
                assert_eq!(view.protocol(), Some(protocol));
                assert_eq!(view.transport_checksum_ok(), None);
                let fits = cut.saturating_sub(l4_at + header);
                match protocol {
                    IPPROTO_TCP if cut >= l4_at + 20 => {
                        let tcp = view.tcp().unwrap();
                        assert_eq!((tcp.dst_port(), tcp.header_len()), (8080, 32));
                        assert_eq!(tcp.options().len(), (cut - l4_at - 20).min(12));
                        assert_eq!(tcp.payload(), &b"0123456789"[..fits]);
                    }
                    IPPROTO_UDP if cut >= l4_at + 8 => {
                        let udp = view.udp().unwrap();
                        assert_eq!((udp.dst_port(), udp.length()), (8080, 18));
                        assert_eq!(udp.payload(), &b"0123456789"[..fits]);
                    }
                    _ => assert!(view.tcp().is_none() && view.udp().is_none()),
                }
                let mut buf = PacketBuf::new(copy).unwrap();
                let truncated = Err(PktError::Truncated {
                    have: cut,
                    declared: bytes.len(),
                });
                assert_eq!(buf.mangle_payload(0..0, b"x"), truncated);
                assert_eq!(buf.mangle_ip_payload(0..0, b"x"), truncated);
                assert_eq!(buf.set_transport_checksum(), truncated);
                assert_eq!(buf.replace_all(b"1", b"2").map(|_| ()), truncated);
                assert_eq!(buf.data(), copy);
            }
        }
    }
}

#[test]
fn fragments_refuse_transport_changes() {
    let v4 = |more, offset| {
        let mut spec = Spec::udp(Family::Ipv4, b"fragment data");
        spec.v4_fragment = (more, offset);
        spec
    };
    let v6 = |more, offset| {
        let mut spec = Spec::udp(Family::Ipv6, b"fragment data");
        spec.ext = vec![Ext::HopByHop(0), Ext::Fragment { offset, more }];
        spec
    };
    for (spec, first) in [
        (v4(true, 0), true),
        (v4(false, 3), false),
        (v6(true, 0), true),
        (v6(false, 3), false),
    ] {
        let bytes = spec.build();
        let view = IpPacket::parse(&bytes).unwrap();
        assert!(view.is_fragment());
        assert_eq!(view.protocol(), Some(IPPROTO_UDP));
        assert_eq!(view.transport_offset().is_some(), first, "{spec:?}");
        assert_eq!(view.udp().is_some(), first);
        assert_eq!(view.transport_checksum_ok(), None);
        let mut buf = PacketBuf::new(&bytes).unwrap();
        assert_eq!(buf.mangle_payload(0..1, b"F"), Err(PktError::Fragment));
        assert_eq!(buf.set_transport_checksum(), Err(PktError::Fragment));
        // IP-level changes are fine: the fragment's own length and header checksum follow.
        let end = bytes.len() - if spec.family == Family::Ipv4 { 20 } else { 40 };
        buf.mangle_ip_payload(end..end, b"12345678").unwrap();
        let view = buf.view().unwrap();
        assert_eq!(view.total_len(), bytes.len() + 8);
        assert!(view.ipv4().map_or(true, |ip| ip.checksum_ok()));
    }
}

#[test]
fn ipv6_routing_header_with_segments_left_is_refused() {
    let mut spec = Spec::udp(Family::Ipv6, b"routed");
    spec.ext = vec![Ext::Routing {
        units: 2,
        segments_left: 1,
    }];
    let bytes = spec.build();
    let view = IpPacket::parse(&bytes).unwrap();
    assert_eq!(view.udp().unwrap().payload(), b"routed");
    assert_eq!(view.transport_checksum_ok(), None);
    let mut buf = PacketBuf::new(&bytes).unwrap();
    assert!(matches!(
        buf.mangle_payload(0..1, b"R"),
        Err(PktError::Unsupported { .. })
    ));
    assert_eq!(buf.data(), &bytes[..]);
}

#[test]
fn other_protocols_get_ip_level_mangling_only() {
    for family in both() {
        let bytes = Spec::new(family, 253, b"experimental").build();
        let mut buf = PacketBuf::new(&bytes).unwrap();
        assert_eq!(
            buf.mangle_payload(0..1, b"E"),
            Err(PktError::NotTcpUdp {
                protocol: Some(253)
            })
        );
        buf.fix_checksums().unwrap();
        buf.mangle_ip_payload(0..12, b"EXPERIMENTAL!").unwrap();
        let view = buf.view().unwrap();
        assert_eq!(view.total_len(), bytes.len() + 1);
        assert!(view.ipv4().map_or(true, |ip| ip.checksum_ok()));
        assert_eq!(&buf.data()[buf.len() - 13..], b"EXPERIMENTAL!");
    }
}

/// Header fields that libnetfilter_queue's helpers trust: each is an error or `None` here, and
/// no change is made.
#[test]
fn malformed_headers() {
    let v4 = Spec::udp(Family::Ipv4, b"payload!").build();
    let v6 = Spec::tcp(Family::Ipv6, b"payload!").build();
    let edit = |base: &[u8], at: usize, value: &[u8]| {
        let mut bytes = base.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    // IP header errors: parse fails.
    let unparsable: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (edit(&v4, 0, &[0x55]), "version 5"),
        (edit(&v4, 0, &[0x40]), "IHL 0"),
        (edit(&v4, 0, &[0x44]), "IHL 4"),
        (v4[..19].to_vec(), "19 bytes"),
        (edit(&v4, 0, &[0x4f]), "IHL 15 in a 36-byte packet"),
        (edit(&v4, 2, &[0, 19]), "total length below the header"),
        (v6[..39].to_vec(), "39 bytes of IPv6"),
    ];
    for (bytes, what) in unparsable {
        assert!(IpPacket::parse(&bytes).is_err(), "{what}");
        if let Ok(mut buf) = PacketBuf::alloc(Family::Ipv4, &bytes, 64) {
            assert!(buf.view().is_err(), "{what}");
            assert!(buf.udp().is_none() && buf.ipv4().is_none(), "{what}");
            assert!(buf.set_ipv4_checksum().is_err(), "{what}");
            assert!(buf.fix_checksums().is_err(), "{what}");
            assert!(buf.mangle_payload(0..0, b"x").is_err(), "{what}");
            assert!(buf.mangle_ip_payload(0..0, b"x").is_err(), "{what}");
            assert_eq!(buf.data(), &bytes[..], "{what}");
        }
    }
    // Transport header errors: the IP header is usable, the transport view is not.
    let udp_len = v4.len() - 20 + 1;
    let broken_transport: Vec<(Vec<u8>, &str)> = vec![
        (edit(&v4, 24, &[0, 7]), "UDP length 7"),
        (
            edit(&v4, 24, &(udp_len as u16).to_be_bytes()),
            "UDP length past the packet",
        ),
        (edit(&v6, 52, &[0x40]), "TCP data offset 4"),
        (edit(&v6, 52, &[0xf0]), "TCP data offset past the end"),
        (
            edit(&v6, 6, &[0]),
            "hop-by-hop header running past the packet",
        ),
        (
            edit(&v6, 4, &[0, 8]),
            "IPv6 payload length inside the TCP header",
        ),
    ];
    for (bytes, what) in broken_transport {
        let view = IpPacket::parse(&bytes).expect(what);
        assert!(view.tcp().is_none() && view.udp().is_none(), "{what}");
        assert_eq!(view.payload(), None, "{what}");
        assert_eq!(view.transport_checksum_ok(), None, "{what}");
        let mut buf = PacketBuf::new(&bytes).unwrap();
        assert!(buf.mangle_payload(0..0, b"x").is_err(), "{what}");
        assert!(buf.set_transport_checksum().is_err(), "{what}");
        assert!(buf.replace_all(b"pay", b"PAY").is_err(), "{what}");
        assert_eq!(buf.data(), &bytes[..], "{what}");
    }
    // Bytes beyond the declared length: views ignore them, changes are refused.
    let padded = [&v4[..], &[0xee; 6]].concat();
    let view = IpPacket::parse(&padded).unwrap();
    assert_eq!(view.udp().unwrap().payload(), b"payload!");
    assert_eq!(view.transport_checksum_ok(), Some(true));
    let mut buf = PacketBuf::new(&padded).unwrap();
    assert!(matches!(
        buf.mangle_payload(0..1, b"P"),
        Err(PktError::Malformed { .. })
    ));
    // A buffer created for one family holding the other.
    let buf = PacketBuf::alloc(Family::Ipv6, &v4, 0).unwrap();
    assert_eq!(
        buf.view().map(|_| ()),
        Err(PktError::WrongFamily {
            buffer: Family::Ipv6,
            packet: Family::Ipv4
        })
    );
}

#[test]
fn ranges_outside_their_region_are_refused() {
    let bytes = Spec::udp(Family::Ipv4, b"0123456789").build();
    let mut buf = PacketBuf::new(&bytes).unwrap();
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 5..4;
    for range in [0..11, 11..11, reversed, usize::MAX - 1..usize::MAX] {
        assert!(matches!(
            buf.mangle_payload(range.clone(), b"x"),
            Err(PktError::OutOfRange { .. })
        ));
        assert!(matches!(
            buf.mangle(
                range.start.saturating_add(28)..range.end.saturating_add(28),
                b"x"
            ),
            Err(PktError::OutOfRange { .. })
        ));
    }
    assert_eq!(buf.data(), &bytes[..]);
    buf.mangle_payload(10..10, b"!").unwrap();
    assert_valid(&buf, b"0123456789!");
}

// ---------------------------------------------------------------------------------------------
// Fuzzing.
// ---------------------------------------------------------------------------------------------

/// xorshift64*: small, fast, good enough to explore.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that nearby seeds start far apart (and never at 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Mostly small lengths, sometimes large ones.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0 => self.below(4000),
            1 => self.below(8),
            _ => self.below(80),
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn random_ext(rng: &mut Rng) -> Ext {
    match rng.below(5) {
        0 => Ext::HopByHop(rng.below(4) as u8),
        1 => Ext::DestOpts(rng.below(4) as u8),
        2 => Ext::Routing {
            units: rng.below(3) as u8,
            segments_left: rng.pick(&[0, 0, 1]),
        },
        3 => Ext::Fragment {
            offset: rng.pick(&[0, 0, 0, 1, 100]),
            more: rng.chance(3),
        },
        _ => Ext::Auth(rng.below(4) as u8),
    }
}

fn random_spec(rng: &mut Rng) -> Spec {
    let family = rng.pick(&[Family::Ipv4, Family::Ipv6]);
    let protocol = rng.pick(&[IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDP, IPPROTO_TCP, 1, 59]);
    let mut spec = Spec::new(family, protocol, &[]);
    spec.payload = match rng.below(3) {
        0 => {
            let n = rng.len();
            rng.bytes(n)
        }
        // Text with words to replace.
        _ => (0..rng.below(12))
            .flat_map(|_| {
                rng.pick(&[&b"cat "[..], b"dog ", b"c", b"at", b"catcat", b" "])
                    .to_vec()
            })
            .collect(),
    };
    if rng.chance(4) {
        spec.v4_option_words = rng.below(11);
    }
    if rng.chance(6) {
        spec.v4_fragment = (rng.chance(2), rng.pick(&[0, 0, 5]));
    }
    if family == Family::Ipv6 && rng.chance(2) {
        spec.ext = (0..1 + rng.below(4)).map(|_| random_ext(rng)).collect();
    }
    spec.tcp_option_words = rng.below(11);
    spec
}

/// Breaks one header field of a built packet, or its bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match rng.below(9) {
        // IHL, and the version with it.
        0 => bytes[0] = (bytes[0] & 0xf0) | rng.below(16) as u8,
        1 => bytes[0] = rng.byte(),
        // IPv4 total length / IPv6 payload length.
        2 if len >= 6 => {
            let at = if bytes[0] >> 4 == 6 { 4 } else { 2 };
            let any = rng.below(0x10000);
            let value = rng.pick(&[0, 1, len - 1, len, len + 1, any]);
            bytes[at..at + 2].copy_from_slice(&(value as u16).to_be_bytes());
        }
        // Any 16-bit field in the first 80 bytes (UDP length, TCP data offset, ext lengths).
        3 => {
            let at = rng.below(len.min(80));
            bytes[at] = rng.byte();
            if at + 1 < len {
                bytes[at + 1] = rng.byte();
            }
        }
        // Random byte flips.
        4 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        // Truncated copies (any cut).
        5 | 6 => bytes.truncate(rng.below(len + 1)),
        // Junk after the packet.
        7 => {
            let n = 1 + rng.below(16);
            let junk = rng.bytes(n);
            bytes.extend_from_slice(&junk);
        }
        // Left intact.
        _ => {}
    }
}

fn random_range(rng: &mut Rng, len: usize) -> Range<usize> {
    match rng.below(8) {
        // Out of range, reversed or absurd.
        0 => rng.below(len + 8)..rng.below(len + 8),
        1 => rng.pick(&[usize::MAX - 3, len + 1, len])..usize::MAX,
        _ => {
            let start = rng.below(len + 1);
            start..start + rng.below(len - start + 1)
        }
    }
}

fn random_replacement(rng: &mut Rng) -> Vec<u8> {
    let n = match rng.below(12) {
        0 => 0,
        1 => rng.below(70_000),
        _ => rng.below(40),
    };
    rng.bytes(n)
}

/// Every view accessor; checks that every slice lies inside `bytes` and is consistent.
fn exercise_views(bytes: &[u8]) {
    let inside = |s: &[u8]| {
        let (start, end) = (
            bytes.as_ptr() as usize,
            bytes.as_ptr() as usize + bytes.len(),
        );
        let (p, q) = (s.as_ptr() as usize, s.as_ptr() as usize + s.len());
        s.is_empty() || (start <= p && q <= end)
    };
    let Ok(view) = IpPacket::parse(bytes) else {
        return;
    };
    let _ = format!("{view:?} {:?}", view.ip());
    let (_, _, _) = (view.src(), view.dst(), view.total_len());
    let (_, _) = (view.is_truncated(), view.is_fragment());
    if let Some(ip) = view.ipv4() {
        assert!(inside(ip.as_bytes()) && inside(ip.options()));
        assert!(ip.header_len() >= 20 && ip.header_len() <= bytes.len());
        let _ = (
            ip.tos(),
            ip.total_len(),
            ip.identification(),
            ip.ttl(),
            ip.protocol(),
        );
        let _ = (
            ip.dont_fragment(),
            ip.more_fragments(),
            ip.fragment_offset(),
        );
        let _ = (
            ip.checksum(),
            ip.checksum_ok(),
            ip.src(),
            ip.dst(),
            format!("{ip:?}"),
        );
    }
    if let Some(ip) = view.ipv6() {
        assert_eq!(ip.as_bytes().len(), 40);
        let _ = (
            ip.traffic_class(),
            ip.flow_label(),
            ip.payload_len(),
            ip.next_header(),
        );
        let _ = (ip.hop_limit(), ip.src(), ip.dst(), format!("{ip:?}"));
    }
    if let Some(offset) = view.transport_offset() {
        assert!(offset <= bytes.len() && offset <= view.total_len());
        assert!(view.protocol().is_some());
    }
    if let Some(tcp) = view.tcp() {
        assert!(inside(tcp.header_bytes()) && inside(tcp.options()) && inside(tcp.payload()));
        assert!(tcp.header_bytes().len() >= 20 && tcp.header_len() >= 20);
        let _ = (
            tcp.src_port(),
            tcp.dst_port(),
            tcp.seq(),
            tcp.ack(),
            tcp.flags(),
        );
        let _ = (
            tcp.window(),
            tcp.checksum(),
            tcp.urgent_ptr(),
            format!("{tcp:?}"),
        );
    }
    if let Some(udp) = view.udp() {
        assert!(inside(udp.header_bytes()) && inside(udp.payload()));
        assert_eq!(udp.header_bytes().len(), 8);
        let _ = (udp.src_port(), udp.dst_port(), udp.length(), udp.checksum());
        let _ = format!("{udp:?}");
    }
    if let Some(payload) = view.payload() {
        assert!(inside(payload));
    }
    let _ = view.transport_checksum_ok();
}

/// The operations [`exercise_op`] picks from (`mangle_payload` twice as often).
const OPS: [&str; 9] = [
    "set_ipv4_checksum",
    "set_transport_checksum",
    "fix_checksums",
    "mangle",
    "mangle_ip_payload",
    "mangle_payload",
    "mangle_payload",
    "replace_all",
    "data_mut",
];

/// Successes and failures per operation name.
type Tally = std::collections::BTreeMap<&'static str, [u64; 2]>;

/// One random operation on `buf`; checks its effect, or that an error changed nothing.
fn exercise_op(rng: &mut Rng, buf: &mut PacketBuf, capacity: usize, tally: &mut Tally) {
    let before = buf.to_vec();
    let payload_before = buf
        .view()
        .ok()
        .and_then(|v| v.payload())
        .map(<[u8]>::to_vec);
    let len = before.len();
    let op = rng.below(OPS.len());
    let rep = random_replacement(rng);
    let result = match op {
        0 => buf.set_ipv4_checksum().inspect(|()| {
            assert!(buf.ipv4().expect("IPv4").checksum_ok());
        }),
        1 => buf.set_transport_checksum().inspect(|()| {
            assert_eq!(buf.view().unwrap().transport_checksum_ok(), Some(true));
        }),
        2 => buf.fix_checksums().inspect(|()| {
            let view = buf.view().unwrap();
            assert!(view.ipv4().map_or(true, |ip| ip.checksum_ok()));
            if matches!(view.protocol(), Some(IPPROTO_TCP | IPPROTO_UDP)) {
                assert_eq!(view.transport_checksum_ok(), Some(true));
            }
        }),
        3 => {
            let range = random_range(rng, len);
            buf.mangle(range.clone(), &rep).inspect(|()| {
                let want = [&before[..range.start], &rep[..], &before[range.end..]].concat();
                assert_eq!(buf.data(), &want[..]);
            })
        }
        4 => {
            let range = random_range(rng, len);
            buf.mangle_ip_payload(range.clone(), &rep).inspect(|()| {
                assert_eq!(buf.len(), len - range.len() + rep.len());
                let view = buf.view().expect("still parses");
                assert_eq!(view.total_len(), buf.len());
                assert!(view.ipv4().map_or(true, |ip| ip.checksum_ok()));
            })
        }
        5 | 6 => {
            let payload_len = payload_before.as_ref().map_or(len, Vec::len);
            let range = random_range(rng, payload_len);
            buf.mangle_payload(range.clone(), &rep).inspect(|()| {
                let old = payload_before.as_deref().expect("mangled a payload");
                let want = [&old[..range.start], &rep[..], &old[range.end..]].concat();
                assert_valid(buf, &want);
            })
        }
        7 => {
            let needle = match (&payload_before, rng.below(3)) {
                (Some(p), 0) if !p.is_empty() => {
                    let at = rng.below(p.len());
                    p[at..(at + 1 + rng.below(4)).min(p.len())].to_vec()
                }
                (_, 1) => Vec::new(),
                _ => rng.pick(&[&b"cat"[..], b"c", b"catcat", b" "]).to_vec(),
            };
            let with = &rep[..rep.len().min(20)];
            buf.replace_all(&needle, with).map(|n| {
                let old = payload_before.as_deref().expect("replaced in a payload");
                assert_eq!(n, count_naive(old, &needle));
                if n == 0 {
                    assert_eq!(buf.data(), &before[..], "nothing to replace");
                } else {
                    assert_valid(buf, &replace_all_naive(old, &needle, with));
                }
            })
        }
        _ => {
            if !buf.is_empty() {
                let at = rng.below(buf.len());
                buf.data_mut()[at] ^= 1 << rng.below(8);
            }
            return;
        }
    };
    tally.entry(OPS[op]).or_default()[usize::from(result.is_err())] += 1;
    match result {
        Ok(()) => {}
        Err(e) => {
            assert_eq!(
                buf.data(),
                &before[..],
                "op {op} failed ({e}) but changed the bytes"
            );
            let _ = e.to_string();
        }
    }
    assert!(buf.len() <= MAX_PAYLOAD_LEN);
    assert_eq!(buf.len() + buf.tailroom(), capacity, "capacity is fixed");
}

fn count_naive(haystack: &[u8], needle: &[u8]) -> usize {
    replace_positions(haystack, needle).len()
}

fn replace_positions(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    if needle.is_empty() {
        return found;
    }
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            found.push(at);
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

fn replace_all_naive(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0;
    for at in replace_positions(haystack, needle) {
        out.extend_from_slice(&haystack[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

fn one_iteration(rng: &mut Rng, tally: &mut Tally) {
    let mut bytes = match rng.below(4) {
        0 => {
            let n = rng.len();
            let mut b = rng.bytes(n);
            if let Some(first) = b.first_mut() {
                *first = (*first & 0x0f) | rng.pick(&[0x40, 0x60, 0x40, 0x60, 0x00]);
            }
            b
        }
        _ => random_spec(rng).build(),
    };
    if rng.below(3) != 0 {
        for _ in 0..1 + rng.below(2) {
            mutate(rng, &mut bytes);
        }
    }
    exercise_views(&bytes);
    let family = match rng.below(5) {
        0 => rng.pick(&[Family::Ipv4, Family::Ipv6]),
        _ => Family::of_bytes(&bytes).unwrap_or(Family::Ipv4),
    };
    let tailroom = rng.pick(&[0, 1, 8, 64, 4096, usize::MAX]);
    let Ok(mut buf) = PacketBuf::alloc(family, &bytes, tailroom) else {
        assert!(bytes.len() > MAX_PAYLOAD_LEN);
        return;
    };
    assert_eq!(buf.data(), &bytes[..]);
    let capacity = buf.len() + buf.tailroom();
    assert_eq!(
        capacity,
        (bytes.len().saturating_add(tailroom)).min(MAX_PAYLOAD_LEN)
    );
    for _ in 0..1 + rng.below(5) {
        exercise_op(rng, &mut buf, capacity, tally);
        exercise_views(buf.data());
        let (_, _, _, _) = (buf.ipv4(), buf.ipv6(), buf.tcp(), buf.udp());
    }
}

#[test]
fn fuzz_every_view_and_mangler() {
    let seed: u64 = std::env::var("NFQ_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e66_7121);
    let secs: f64 = std::env::var("NFQ_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut iterations: u64 = 0;
    let mut tally = Tally::new();
    while start.elapsed() < budget || iterations < 100 {
        let mut rng = Rng::new(seed ^ iterations.wrapping_mul(0x1000_0000_01b3));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            one_iteration(&mut rng, &mut tally)
        }));
        if let Err(panic) = outcome {
            eprintln!(
                "pkt fuzz failed: NFQ_FUZZ_SEED={seed} iteration {iterations} (rerun with that \
                 seed; iterations are independent)"
            );
            std::panic::resume_unwind(panic);
        }
        iterations += 1;
    }
    eprintln!(
        "pkt fuzz: {iterations} iterations in {:?} (seed {seed}); [ok, refused] per operation: \
         {tally:?}",
        start.elapsed()
    );
    // Every operation must have been both exercised to success and refused, or the generator
    // has stopped reaching it.
    if iterations >= 2000 {
        for name in &OPS[..OPS.len() - 1] {
            let [ok, refused] = tally.get(name).copied().unwrap_or_default();
            assert!(ok > 0 && refused > 0, "{name}: {ok} ok, {refused} refused");
        }
    }
}
