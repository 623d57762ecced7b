//! `pkt_views`: every `libnfq::pkt` view over arbitrary bytes. No panic; every slice returned
//! lies inside the input; the views agree with the header fields read here independently, and
//! with each other.

use std::hint::black_box;
use std::net::IpAddr;

use libnfq::pkt::{Family, IpHeader, IpPacket, IPPROTO_TCP, IPPROTO_UDP};

use crate::checksum::{get16, ip_header, transport_checksum_ok};
use crate::within;

pub fn run(data: &[u8]) {
    // The family helpers.
    let family = Family::of_bytes(data);
    match data.first().map(|b| b >> 4) {
        Some(4) => assert_eq!(family, Some(Family::Ipv4)),
        Some(6) => assert_eq!(family, Some(Family::Ipv6)),
        _ => assert_eq!(family, None),
    }
    if data.len() >= 2 {
        let ethertype = get16(data, 0);
        let f = Family::from_ethertype(ethertype);
        assert_eq!(f.is_some(), ethertype == 0x0800 || ethertype == 0x86dd);
        if let Some(f) = f {
            black_box((f.af(), f.version(), f.to_string()));
        }
    }

    let parsed = IpPacket::parse(data);
    let expected = ip_header(data);
    let packet = match (parsed, expected) {
        (Ok(p), Some(_)) => p,
        (Err(e), None) => {
            black_box(e.to_string());
            return;
        }
        (parsed, expected) => {
            panic!(
                "IpPacket::parse: {:?}, expected {expected:?}",
                parsed.map(|_| ())
            )
        }
    };
    let (version, header_len, declared) = expected.unwrap();
    check_packet(data, &packet, version, header_len, declared);
}

fn check_packet(data: &[u8], p: &IpPacket<'_>, version: u8, header_len: usize, declared: usize) {
    black_box(format!("{p:?}"));
    assert!(std::ptr::eq(p.as_bytes(), data));
    assert_eq!(p.family().version(), version);
    assert_eq!(p.total_len(), declared);
    assert_eq!(p.is_truncated(), declared > data.len());
    let end = declared.min(data.len());

    // The IP header.
    let ip = p.ip();
    black_box(format!("{ip:?}"));
    match ip {
        IpHeader::V4(h) => {
            assert_eq!(version, 4);
            assert!(p.ipv6().is_none() && p.ipv4().is_some());
            assert!(within(data, h.as_bytes()) && within(data, h.options()));
            assert_eq!(h.as_bytes(), &data[..header_len]);
            assert_eq!(h.header_len(), header_len);
            assert_eq!(h.options(), &data[20..header_len]);
            assert_eq!(usize::from(h.total_len()), declared);
            assert_eq!(h.tos(), data[1]);
            assert_eq!(h.identification(), get16(data, 4));
            assert_eq!(h.dont_fragment(), data[6] & 0x40 != 0);
            assert_eq!(h.more_fragments(), data[6] & 0x20 != 0);
            assert_eq!(
                h.fragment_offset(),
                usize::from(get16(data, 6) & 0x1fff) * 8
            );
            assert_eq!((h.ttl(), h.protocol()), (data[8], data[9]));
            assert_eq!(h.checksum(), get16(data, 10));
            assert_eq!(
                h.checksum_ok(),
                crate::checksum::sum16(&[&data[..header_len]]) == 0xffff
            );
            assert_eq!(h.src().octets(), data[12..16]);
            assert_eq!(h.dst().octets(), data[16..20]);
            assert_eq!(p.src(), IpAddr::from(h.src()));
            assert_eq!(p.dst(), IpAddr::from(h.dst()));
            black_box(format!("{h:?}"));
            // A fragment is one with MF set or an offset.
            let fragment = h.more_fragments() || h.fragment_offset() != 0;
            assert_eq!(p.is_fragment(), fragment);
            if h.fragment_offset() != 0 {
                assert_eq!(p.transport_offset(), None);
            } else {
                assert_eq!(p.transport_offset(), Some(header_len));
            }
            assert_eq!(p.protocol(), Some(h.protocol()));
        }
        IpHeader::V6(h) => {
            assert_eq!(version, 6);
            assert!(p.ipv4().is_none() && p.ipv6().is_some());
            assert!(within(data, h.as_bytes()));
            assert_eq!(h.as_bytes(), &data[..40]);
            assert_eq!(h.traffic_class(), (get16(data, 0) >> 4) as u8);
            let flow = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) & 0xfffff;
            assert_eq!(h.flow_label(), flow);
            assert_eq!(usize::from(h.payload_len()) + 40, declared);
            assert_eq!((h.next_header(), h.hop_limit()), (data[6], data[7]));
            assert_eq!(h.src().octets(), data[8..24]);
            assert_eq!(h.dst().octets(), data[24..40]);
            assert_eq!(p.src(), IpAddr::from(h.src()));
            assert_eq!(p.dst(), IpAddr::from(h.dst()));
            black_box(format!("{h:?}"));
            if let Some(offset) = p.transport_offset() {
                assert!(offset >= 40);
                // Without extension headers the transport header follows at once.
                if !matches!(h.next_header(), 0 | 43 | 44 | 51 | 60) {
                    assert_eq!(offset, 40);
                    assert_eq!(p.protocol(), Some(h.next_header()));
                }
            }
        }
    }

    // The transport header.
    if let Some(offset) = p.transport_offset() {
        assert!(
            offset >= header_len && offset <= end,
            "offset {offset} of {end}"
        );
        assert!(p.protocol().is_some());
    }
    let tcp = p.tcp();
    let udp = p.udp();
    if let Some(t) = tcp {
        black_box(format!("{t:?}"));
        let offset = p
            .transport_offset()
            .expect("a TCP view has a transport offset");
        assert_eq!(p.protocol(), Some(IPPROTO_TCP));
        let (header, options, payload) = (t.header_bytes(), t.options(), t.payload());
        assert!(within(data, header) && within(data, options) && within(data, payload));
        assert_eq!(header.as_ptr(), data[offset..].as_ptr());
        assert!(header.len() >= 20 && t.header_len() >= 20);
        assert_eq!(t.header_len(), usize::from(data[offset + 12] >> 4) * 4);
        assert_eq!(header.len(), t.header_len().min(end - offset));
        if !p.is_truncated() {
            assert_eq!(header.len(), t.header_len());
        }
        assert_eq!(options, &header[20..]);
        // The payload follows the header and runs to the end of what is present.
        assert_eq!(
            payload.as_ptr() as usize,
            header.as_ptr() as usize + header.len()
        );
        assert_eq!(offset + header.len() + payload.len(), end);
        assert_eq!(
            (t.src_port(), t.dst_port()),
            (get16(data, offset), get16(data, offset + 2))
        );
        let seq = u32::from_be_bytes(data[offset + 4..offset + 8].try_into().unwrap());
        let ack = u32::from_be_bytes(data[offset + 8..offset + 12].try_into().unwrap());
        assert_eq!((t.seq(), t.ack()), (seq, ack));
        assert_eq!(t.flags().bits(), data[offset + 13]);
        assert_eq!(t.window(), get16(data, offset + 14));
        assert_eq!(t.checksum(), get16(data, offset + 16));
        assert_eq!(t.urgent_ptr(), get16(data, offset + 18));
        assert_eq!(p.payload(), Some(payload));
    }
    if let Some(u) = udp {
        black_box(format!("{u:?}"));
        let offset = p
            .transport_offset()
            .expect("a UDP view has a transport offset");
        assert_eq!(p.protocol(), Some(IPPROTO_UDP));
        let (header, payload) = (u.header_bytes(), u.payload());
        assert!(within(data, header) && within(data, payload));
        assert_eq!(header, &data[offset..offset + 8]);
        assert_eq!(header.as_ptr(), data[offset..].as_ptr());
        assert_eq!(payload.as_ptr() as usize, header.as_ptr() as usize + 8);
        assert_eq!(
            (u.src_port(), u.dst_port(), u.length(), u.checksum()),
            (
                get16(data, offset),
                get16(data, offset + 2),
                get16(data, offset + 4),
                get16(data, offset + 6)
            )
        );
        let length = usize::from(u.length());
        if p.is_fragment() {
            assert_eq!(offset + 8 + payload.len(), end);
        } else {
            assert!(length >= 8 && offset + length <= declared);
            assert_eq!(8 + payload.len(), length.min(end - offset));
        }
        assert_eq!(p.payload(), Some(payload));
    }
    assert!(tcp.is_none() || udp.is_none());
    if tcp.is_none() && udp.is_none() {
        assert_eq!(p.payload(), None);
    }
    if let Some(payload) = p.payload() {
        assert!(within(data, payload));
    }

    // The checksum, recomputed here.
    let ok = p.transport_checksum_ok();
    if let Some(ok) = ok {
        assert!(!p.is_truncated() && !p.is_fragment());
        let offset = p
            .transport_offset()
            .expect("a checked packet has a transport header");
        let protocol = p.protocol().unwrap();
        let l4_len = match protocol {
            IPPROTO_TCP => {
                assert!(tcp.is_some());
                declared - offset
            }
            IPPROTO_UDP => usize::from(udp.expect("a checked UDP packet has a view").length()),
            other => panic!("checksum verdict for protocol {other}"),
        };
        let zero_udp_v4 = protocol == IPPROTO_UDP && version == 4 && get16(data, offset + 6) == 0;
        let expected = zero_udp_v4 || transport_checksum_ok(data, offset, l4_len, protocol);
        assert_eq!(ok, expected, "transport checksum");
    } else if !p.is_truncated() && !p.is_fragment() && version == 4 {
        // IPv4 has no routing header: only a missing TCP/UDP view leaves it unknown.
        assert!(tcp.is_none() && udp.is_none());
    }
}
