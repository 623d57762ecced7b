//! Real packet layouts for the seed corpora, with every length and checksum right (computed by
//! [`crate::checksum`]).

use crate::checksum::{self, put16};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// A UDP header (ports 12345 → 8080) and payload; the checksum is set with the IP header.
pub fn udp(payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![0x30, 0x39, 0x1f, 0x90, 0, 0, 0, 0];
    put16(&mut l4, 4, (8 + payload.len()) as u16);
    l4.extend_from_slice(payload);
    l4
}

/// A TCP header (ports 12345 → 8080, PSH|ACK) with `option_words` words of options (MSS,
/// then NOPs) and a payload.
pub fn tcp(payload: &[u8], option_words: usize) -> Vec<u8> {
    let mut h = vec![0; 20 + 4 * option_words];
    h[..12].copy_from_slice(&[0x30, 0x39, 0x1f, 0x90, 0, 0, 0x10, 0, 0, 0, 0x20, 0]);
    h[12] = ((5 + option_words) << 4) as u8;
    h[13] = 0x18;
    put16(&mut h, 14, 65535);
    h[20..].fill(1);
    if option_words > 0 {
        h[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    }
    h.extend_from_slice(payload);
    h
}

/// An ICMP echo request.
pub fn icmp_echo(payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    l4.extend_from_slice(payload);
    let sum = !checksum::sum16(&[&l4]);
    put16(&mut l4, 2, sum);
    l4
}

/// An IPv4 packet 10.0.0.1 → 10.0.0.2 carrying `l4` of `protocol`, with `option_words` words
/// of IP options, "more fragments" and a fragment offset (8-byte units); checksums set (the
/// transport one only for a whole TCP/UDP datagram).
pub fn ipv4(protocol: u8, l4: &[u8], option_words: usize, more: bool, offset: u16) -> Vec<u8> {
    let header_len = 20 + 4 * option_words;
    let mut b = vec![0; header_len];
    b[0] = 0x40 | (header_len / 4) as u8;
    put16(&mut b, 2, (header_len + l4.len()) as u16);
    put16(&mut b, 4, 0x1234);
    put16(&mut b, 6, u16::from(more) << 13 | offset);
    b[8] = 64;
    b[9] = protocol;
    b[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    b[20..].fill(1);
    b.extend_from_slice(l4);
    if !more && offset == 0 && (protocol == TCP || protocol == UDP) {
        checksum::set_transport_checksum(&mut b, header_len, protocol);
    }
    checksum::set_ipv4_checksum(&mut b);
    b
}

/// An IPv6 extension header: `(kind, bytes without the next-header byte's value)`.
pub enum Ext {
    HopByHop,
    DestOpts,
    Routing { segments_left: u8 },
    Fragment { offset: u16, more: bool },
    Auth,
}

impl Ext {
    fn kind(&self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::Routing { .. } => 43,
            Ext::Fragment { .. } => 44,
            Ext::Auth => 51,
            Ext::DestOpts => 60,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        let mut b = match self {
            // 16 bytes: length field 1 (units of 8, minus one); PadN options.
            Ext::HopByHop | Ext::DestOpts => {
                vec![next, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            }
            Ext::Routing { segments_left } => {
                // Type 0 with one address: 24 bytes.
                let mut b = vec![next, 2, 0, *segments_left, 0, 0, 0, 0];
                b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
                b
            }
            Ext::Fragment { offset, more } => {
                let mut b = vec![next, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
                put16(&mut b, 2, offset << 3 | u16::from(*more));
                b
            }
            // 12 bytes: length field 1 (units of 4, minus two).
            Ext::Auth => vec![next, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7],
        };
        b[0] = next;
        b
    }
}

/// An IPv6 packet 2001:db8::1 → 2001:db8::2 with extension headers, carrying `l4` of
/// `protocol`; the transport checksum set for whole TCP/UDP datagrams.
pub fn ipv6(exts: &[Ext], protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut b = vec![0; 40];
    b[0] = 0x60;
    b[1] = 0x0a; // flow label bits
    b[7] = 64;
    b[8..24].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b[24..40].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b[6] = exts.first().map_or(protocol, Ext::kind);
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(protocol, Ext::kind);
        b.extend_from_slice(&ext.bytes(next));
    }
    let offset = b.len();
    b.extend_from_slice(l4);
    let payload_len = (b.len() - 40) as u16;
    put16(&mut b, 4, payload_len);
    let fragment = exts
        .iter()
        .any(|e| matches!(e, Ext::Fragment { offset, more } if *offset != 0 || *more));
    let routing = exts
        .iter()
        .any(|e| matches!(e, Ext::Routing { segments_left } if *segments_left != 0));
    if !fragment && !routing && (protocol == TCP || protocol == UDP) {
        checksum::set_transport_checksum(&mut b, offset, protocol);
    }
    b
}

/// Named real layouts: the pkt_views seeds, and the packets of the other seeds.
pub fn catalogue() -> Vec<(&'static str, Vec<u8>)> {
    let http = b"GET /cat HTTP/1.1\r\nHost: cat\r\n\r\n";
    vec![
        ("v4-udp", ipv4(UDP, &udp(b"a cat and a cat"), 0, false, 0)),
        ("v4-udp-empty", ipv4(UDP, &udp(b""), 0, false, 0)),
        ("v4-udp-no-checksum", {
            let mut b = ipv4(UDP, &udp(b"no sum"), 0, false, 0);
            put16(&mut b, 26, 0);
            b
        }),
        ("v4-tcp", ipv4(TCP, &tcp(http, 0), 0, false, 0)),
        ("v4-tcp-options", ipv4(TCP, &tcp(b"cat", 3), 2, false, 0)),
        ("v4-tcp-syn", {
            let mut l4 = tcp(b"", 1);
            l4[13] = 0x02;
            ipv4(TCP, &l4, 0, false, 0)
        }),
        ("v4-icmp", ipv4(ICMP, &icmp_echo(b"ping ping"), 0, false, 0)),
        (
            "v4-fragment-first",
            ipv4(UDP, &udp(b"first half"), 0, true, 0),
        ),
        (
            "v4-fragment-later",
            ipv4(UDP, b"second half....", 0, false, 3),
        ),
        (
            "v4-truncated-copy",
            ipv4(UDP, &udp(&[b'x'; 64]), 0, false, 0)[..48].to_vec(),
        ),
        ("v4-trailing-bytes", {
            let mut b = ipv4(UDP, &udp(b"cat"), 0, false, 0);
            b.extend_from_slice(&[0; 6]);
            b
        }),
        ("v6-udp", ipv6(&[], UDP, &udp(b"a cat and a cat"))),
        ("v6-tcp", ipv6(&[], TCP, &tcp(http, 2))),
        ("v6-icmp", ipv6(&[], 58, &[128, 0, 0, 0, 0, 1, 0, 1])),
        (
            "v6-hop-dest-udp",
            ipv6(&[Ext::HopByHop, Ext::DestOpts], UDP, &udp(b"cat")),
        ),
        (
            "v6-routing-pending-tcp",
            ipv6(&[Ext::Routing { segments_left: 1 }], TCP, &tcp(b"cat", 0)),
        ),
        (
            "v6-routing-done-udp",
            ipv6(&[Ext::Routing { segments_left: 0 }], UDP, &udp(b"cat")),
        ),
        (
            "v6-fragment-udp",
            ipv6(
                &[Ext::Fragment {
                    offset: 0,
                    more: true,
                }],
                UDP,
                &udp(b"cat"),
            ),
        ),
        (
            "v6-fragment-later",
            ipv6(
                &[Ext::Fragment {
                    offset: 2,
                    more: false,
                }],
                UDP,
                b"rest of it",
            ),
        ),
        ("v6-auth-tcp", ipv6(&[Ext::Auth], TCP, &tcp(b"cat", 1))),
    ]
}

/// A packet from [`catalogue`] by name.
pub fn named(name: &str) -> Vec<u8> {
    catalogue()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no packet {name}"))
        .1
}
