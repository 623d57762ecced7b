//! `packetbuf_edits`: a sequence of `PacketBuf` edits decoded from the input, each checked
//! against a model, a `Vec<u8>` edited the same way here (lengths and checksums fixed by the
//! code in [`crate::checksum`]): same result (accepted or refused), same bytes, same length and
//! tailroom; a refused edit leaves the buffer unchanged.
//!
//! Input: a mode byte (family, tailroom), the packet (`u16` length and bytes), then operations
//! ([`Op`]) until the input ends.

use std::hint::black_box;
use std::ops::Range;

use libnfq::pkt::{Family, IpPacket, PacketBuf, PktError, IPPROTO_TCP, IPPROTO_UDP};
use libnfq::MAX_PAYLOAD_LEN;

use crate::checksum::{self, ip_header};
use crate::input::{Input, Output};
use crate::within;

/// Tailrooms the mode byte chooses from.
pub const TAILROOMS: [usize; 8] = [0, 1, 3, 16, 64, 512, 4096, 65535];
/// At most this many operations per input.
const MAX_OPS: usize = 64;

/// How the buffer is created.
#[derive(Clone, Copy, Debug)]
pub enum Create {
    /// `PacketBuf::new`: family from the version field, default tailroom.
    New,
    /// `PacketBuf::alloc` with this family (maybe not the packet's) and a tailroom.
    Alloc(Family, usize),
}

/// One edit.
#[derive(Clone, Debug)]
pub enum Op {
    Mangle(Range<usize>, Vec<u8>),
    MangleIpPayload(Range<usize>, Vec<u8>),
    ManglePayload(Range<usize>, Vec<u8>),
    ReplaceAll(Vec<u8>, Vec<u8>),
    SetIpv4Checksum,
    SetTransportChecksum,
    FixChecksums,
    /// Same-length write through `data_mut` at an offset (clamped to the packet).
    Poke(usize, Vec<u8>),
    /// Reads every view of the buffer.
    Views,
}

const OPS: u8 = 9;

impl Op {
    fn decode(input: &mut Input<'_>, len: usize) -> Op {
        let range = |input: &mut Input<'_>| {
            let start = input.offset(len);
            let end = input.offset(len);
            start..end
        };
        match input.u8() % OPS {
            0 => Op::Mangle(range(input), input.short_bytes().to_vec()),
            1 => Op::MangleIpPayload(range(input), input.short_bytes().to_vec()),
            2 => Op::ManglePayload(range(input), input.short_bytes().to_vec()),
            3 => Op::ReplaceAll(input.short_bytes().to_vec(), input.short_bytes().to_vec()),
            4 => Op::SetIpv4Checksum,
            5 => Op::SetTransportChecksum,
            6 => Op::FixChecksums,
            7 => Op::Poke(input.offset(len), input.short_bytes().to_vec()),
            _ => Op::Views,
        }
    }

    fn encode(&self, out: &mut Output) {
        let range = |out: &mut Output, r: &Range<usize>| {
            out.offset(r.start).offset(r.end);
        };
        match self {
            Op::Mangle(r, with) => {
                range(out.u8(0), r);
                out.short_bytes(with);
            }
            Op::MangleIpPayload(r, with) => {
                range(out.u8(1), r);
                out.short_bytes(with);
            }
            Op::ManglePayload(r, with) => {
                range(out.u8(2), r);
                out.short_bytes(with);
            }
            Op::ReplaceAll(needle, with) => {
                out.u8(3).short_bytes(needle).short_bytes(with);
            }
            Op::SetIpv4Checksum => {
                out.u8(4);
            }
            Op::SetTransportChecksum => {
                out.u8(5);
            }
            Op::FixChecksums => {
                out.u8(6);
            }
            Op::Poke(at, bytes) => {
                out.u8(7).offset(*at).short_bytes(bytes);
            }
            Op::Views => {
                out.u8(8);
            }
        }
    }
}

/// Encodes a seed input: how to create the buffer, the packet, the operations.
pub fn encode(create: Create, packet: &[u8], ops: &[Op]) -> Vec<u8> {
    let mut out = Output::default();
    match create {
        Create::New => out.u8(0),
        Create::Alloc(family, tailroom) => {
            let t = TAILROOMS
                .iter()
                .position(|&t| t == tailroom)
                .expect("a tailroom from TAILROOMS") as u8;
            let f = match family {
                Family::Ipv4 => 1,
                Family::Ipv6 => 2,
            };
            out.u8(f | t << 2)
        }
    };
    out.long_bytes(packet);
    for op in ops {
        op.encode(&mut out);
    }
    out.0
}

/// The model: the bytes, the allocation's capacity, whether a mangling function succeeded.
struct Model {
    bytes: Vec<u8>,
    capacity: usize,
    family: Family,
    mangled: bool,
}

/// What the transport checks of the module accept: a complete, unfragmented TCP or UDP packet
/// whose lengths agree. `(offset, header length, protocol)`.
fn transport(m: &Model) -> Option<(usize, usize, u8)> {
    let (_, _, declared) = complete(m)?;
    let view = IpPacket::parse(&m.bytes).ok()?;
    // Some: not truncated, not a fragment, no pending routing header, a TCP/UDP view.
    view.transport_checksum_ok()?;
    let offset = view.transport_offset()?;
    match view.protocol()? {
        IPPROTO_TCP => Some((offset, view.tcp()?.header_len(), IPPROTO_TCP)),
        IPPROTO_UDP => {
            let udp = view.udp()?;
            (usize::from(udp.length()) == declared - offset).then_some((offset, 8, IPPROTO_UDP))
        }
        _ => None,
    }
}

/// The IP header when it is usable and of the buffer's family.
fn header(m: &Model) -> Option<(u8, usize, usize)> {
    let h = ip_header(&m.bytes)?;
    (h.0 == m.family.version()).then_some(h)
}

/// The IP header of a packet wholly present with nothing after it.
fn complete(m: &Model) -> Option<(u8, usize, usize)> {
    header(m).filter(|h| h.2 == m.bytes.len())
}

/// Whether replacing `match_len` bytes with `rep_len` fits (`MAX_PAYLOAD_LEN`, tailroom).
fn fits(m: &Model, match_len: usize, rep_len: usize) -> bool {
    let new_len = m.bytes.len() - match_len + rep_len;
    new_len <= MAX_PAYLOAD_LEN && new_len <= m.capacity
}

fn splice(bytes: &[u8], at: usize, match_len: usize, with: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(with);
    out.extend_from_slice(&bytes[at + match_len..]);
    out
}

/// Splices `with` into the TCP/UDP payload and fixes every length and checksum.
fn payload_edit(
    m: &Model,
    t: (usize, usize, u8),
    at: usize,
    match_len: usize,
    with: &[u8],
) -> Vec<u8> {
    let (offset, header_len, protocol) = t;
    let mut b = splice(&m.bytes, offset + header_len + at, match_len, with);
    checksum::set_ip_length(&mut b);
    if protocol == IPPROTO_UDP {
        let udp_len = (b.len() - offset) as u16;
        checksum::put16(&mut b, offset + 4, udp_len);
    }
    checksum::set_transport_checksum(&mut b, offset, protocol);
    b
}

/// The model's prediction for `op`: `None` when refused, else the new bytes and (for
/// `replace_all`) the count.
fn predict(m: &Model, op: &Op) -> Option<(Vec<u8>, usize)> {
    let len = m.bytes.len();
    let in_range = |r: &Range<usize>, region: usize| r.start <= r.end && r.end <= region;
    match op {
        Op::Mangle(r, with) => (in_range(r, len) && fits(m, r.len(), with.len()))
            .then(|| (splice(&m.bytes, r.start, r.len(), with), 0)),
        Op::MangleIpPayload(r, with) => {
            let (_, header_len, declared) = complete(m)?;
            (in_range(r, declared - header_len) && fits(m, r.len(), with.len())).then(|| {
                let mut b = splice(&m.bytes, header_len + r.start, r.len(), with);
                checksum::set_ip_length(&mut b);
                (b, 0)
            })
        }
        Op::ManglePayload(r, with) => {
            let t = transport(m)?;
            (in_range(r, len - t.0 - t.1) && fits(m, r.len(), with.len()))
                .then(|| (payload_edit(m, t, r.start, r.len(), with), 0))
        }
        Op::ReplaceAll(needle, with) => {
            let t = transport(m)?;
            if needle.is_empty() {
                return Some((m.bytes.clone(), 0));
            }
            let start = t.0 + t.1;
            let mut found = Vec::new();
            let mut at = start;
            while at + needle.len() <= len {
                if m.bytes[at..at + needle.len()] == needle[..] {
                    found.push(at);
                    at += needle.len();
                } else {
                    at += 1;
                }
            }
            let n = found.len();
            if n == 0 {
                return Some((m.bytes.clone(), 0));
            }
            if !fits(m, n * needle.len(), n * with.len()) {
                return None;
            }
            // Every occurrence replaced, then lengths and checksums fixed once: the
            // checksum depends only on the final bytes.
            let mut b = Vec::new();
            let mut prev = 0;
            for &f in &found {
                b.extend_from_slice(&m.bytes[prev..f]);
                b.extend_from_slice(with);
                prev = f + needle.len();
            }
            b.extend_from_slice(&m.bytes[prev..]);
            checksum::set_ip_length(&mut b);
            if t.2 == IPPROTO_UDP {
                let udp_len = (b.len() - t.0) as u16;
                checksum::put16(&mut b, t.0 + 4, udp_len);
            }
            checksum::set_transport_checksum(&mut b, t.0, t.2);
            Some((b, n))
        }
        Op::SetIpv4Checksum => {
            let (version, _, _) = header(m)?;
            (version == 4).then(|| {
                let mut b = m.bytes.clone();
                checksum::set_ipv4_checksum(&mut b);
                (b, 0)
            })
        }
        Op::SetTransportChecksum => {
            let (offset, _, protocol) = transport(m)?;
            let mut b = m.bytes.clone();
            checksum::set_transport_checksum(&mut b, offset, protocol);
            Some((b, 0))
        }
        Op::FixChecksums => {
            let (version, _, _) = header(m)?;
            let protocol = IpPacket::parse(&m.bytes).ok()?.protocol();
            let tcp_udp = matches!(protocol, Some(IPPROTO_TCP | IPPROTO_UDP) | None);
            let t = if tcp_udp { Some(transport(m)?) } else { None };
            let mut b = m.bytes.clone();
            if version == 4 {
                checksum::set_ipv4_checksum(&mut b);
            }
            if let Some((offset, _, protocol)) = t {
                checksum::set_transport_checksum(&mut b, offset, protocol);
            }
            Some((b, 0))
        }
        Op::Poke(..) | Op::Views => unreachable!("not predicted"),
    }
}

/// Every view of the buffer: no panic, slices inside its bytes.
fn views(buf: &PacketBuf) {
    let data = buf.data();
    black_box(format!("{buf:?}"));
    assert_eq!(buf.as_ref(), data);
    assert_eq!(buf.to_vec(), data);
    assert_eq!(buf.is_empty(), data.is_empty());
    match buf.view() {
        Ok(v) => {
            assert!(std::ptr::eq(v.as_bytes(), data));
            assert_eq!(v.family(), buf.family());
        }
        Err(e) => {
            black_box(e.to_string());
        }
    }
    if let Some(h) = buf.ipv4() {
        assert!(within(data, h.as_bytes()));
    }
    if let Some(h) = buf.ipv6() {
        assert!(within(data, h.as_bytes()));
    }
    if let Some(t) = buf.tcp() {
        assert!(within(data, t.header_bytes()) && within(data, t.payload()));
    }
    if let Some(u) = buf.udp() {
        assert!(within(data, u.header_bytes()) && within(data, u.payload()));
    }
}

pub fn run(data: &[u8]) {
    run_counted(data);
}

/// [`run`], returning how many checked operations the buffer accepted and refused.
pub fn run_counted(data: &[u8]) -> (usize, usize) {
    let mut counts = (0, 0);
    let mut input = Input::new(data);
    let mode = input.u8();
    let packet = input.long_bytes();
    if packet.len() > MAX_PAYLOAD_LEN {
        let refused = PacketBuf::alloc(Family::Ipv4, packet, 0);
        assert!(
            matches!(refused, Err(PktError::TooLarge { .. })),
            "{refused:?}"
        );
        return counts;
    }
    let create = match mode & 3 {
        1 => Create::Alloc(Family::Ipv4, TAILROOMS[usize::from(mode >> 2) & 7]),
        2 => Create::Alloc(Family::Ipv6, TAILROOMS[usize::from(mode >> 2) & 7]),
        _ => Create::New,
    };
    let (buf, family, tailroom) = match create {
        Create::New => {
            let family = Family::of_bytes(packet);
            match (PacketBuf::new(packet), family) {
                (Ok(buf), Some(f)) => (buf, f, libnfq::pkt::DEFAULT_TAILROOM),
                (Err(PktError::NotIp { .. }), None) => return counts,
                (result, family) => panic!("PacketBuf::new: {result:?} for {family:?}"),
            }
        }
        Create::Alloc(family, tailroom) => (
            PacketBuf::alloc(family, packet, tailroom).expect("alloc"),
            family,
            tailroom,
        ),
    };
    let mut buf = buf;
    let mut m = Model {
        bytes: packet.to_vec(),
        capacity: packet.len() + tailroom.min(MAX_PAYLOAD_LEN - packet.len()),
        family,
        mangled: false,
    };
    check(&buf, &m, &"created");
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = Op::decode(&mut input, m.bytes.len());
        match apply(&mut buf, &mut m, &op) {
            Some(true) => counts.0 += 1,
            Some(false) => counts.1 += 1,
            None => {}
        }
        check(&buf, &m, &op);
    }
    views(&buf);
    counts
}

fn check(buf: &PacketBuf, m: &Model, after: &dyn std::fmt::Debug) {
    assert_eq!(buf.family(), m.family);
    assert_eq!(buf.len(), m.bytes.len(), "length after {after:?}");
    assert!(
        buf.data() == m.bytes,
        "bytes after {after:?}:\n {:?}\n {:?}",
        buf.data(),
        m.bytes
    );
    assert_eq!(
        buf.tailroom(),
        m.capacity - m.bytes.len(),
        "tailroom after {after:?}"
    );
    assert_eq!(buf.is_mangled(), m.mangled, "mangled after {after:?}");
}

/// Applies `op` to both; `Some(accepted)` for the operations that can be refused.
fn apply(buf: &mut PacketBuf, m: &mut Model, op: &Op) -> Option<bool> {
    let result: Result<usize, PktError> = match op {
        Op::Poke(at, bytes) => {
            let data = buf.data_mut();
            let at = (*at).min(data.len());
            let n = bytes.len().min(data.len() - at);
            data[at..at + n].copy_from_slice(&bytes[..n]);
            m.bytes[at..at + n].copy_from_slice(&bytes[..n]);
            return None;
        }
        Op::Views => {
            views(buf);
            return None;
        }
        Op::Mangle(r, with) => buf.mangle(r.clone(), with).map(|()| 0),
        Op::MangleIpPayload(r, with) => buf.mangle_ip_payload(r.clone(), with).map(|()| 0),
        Op::ManglePayload(r, with) => buf.mangle_payload(r.clone(), with).map(|()| 0),
        Op::ReplaceAll(needle, with) => buf.replace_all(needle, with),
        Op::SetIpv4Checksum => buf.set_ipv4_checksum().map(|()| 0),
        Op::SetTransportChecksum => buf.set_transport_checksum().map(|()| 0),
        Op::FixChecksums => buf.fix_checksums().map(|()| 0),
    };
    let expected = predict(m, op);
    match (result, expected) {
        (Ok(n), Some((bytes, count))) => {
            assert_eq!(n, count, "{op:?}: count");
            let mangling = matches!(
                op,
                Op::Mangle(..) | Op::MangleIpPayload(..) | Op::ManglePayload(..)
            ) || (matches!(op, Op::ReplaceAll(..)) && n > 0);
            m.mangled |= mangling;
            m.bytes = bytes;
            Some(true)
        }
        (Err(e), None) => {
            black_box(e.to_string());
            Some(false)
        }
        (result, expected) => panic!(
            "{op:?} on {:?} ({:?}): {result:?}, the model says {}",
            m.bytes,
            m.family,
            if expected.is_some() {
                "accepted"
            } else {
                "refused"
            }
        ),
    }
}

/// For the seed generator: the model's view of a packet's transport header.
pub fn transport_of(packet: &[u8]) -> Option<(usize, usize, u8)> {
    let family = Family::of_bytes(packet)?;
    transport(&Model {
        bytes: packet.to_vec(),
        capacity: packet.len(),
        family,
        mangled: false,
    })
}
