//! Bounds-checked views over IP packet bytes (safe code only).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Family, PktError, IPPROTO_TCP, IPPROTO_UDP};

pub(super) const IPV4_MIN_HEADER_LEN: usize = 20;
pub(super) const IPV6_HEADER_LEN: usize = 40;
pub(super) const TCP_MIN_HEADER_LEN: usize = 20;
pub(super) const UDP_HEADER_LEN: usize = 8;

/// IPv6 extension headers the kernel skips to find the transport header (`ipv6_ext_hdr`), except
/// "no next header", which ends the chain.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

/// The big-endian `u16` at `at`; 0 when out of bounds (callers check bounds first, this only
/// keeps a mistake from becoming a panic).
pub(super) fn be16(bytes: &[u8], at: usize) -> u16 {
    match bytes.get(at..at.wrapping_add(2)) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = bytes.get(at..at.wrapping_add(N)) {
        out.copy_from_slice(src);
    }
    out
}

/// Where the transport header is, as far as the headers tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum L4 {
    /// The header of `protocol` starts at `offset` (at most the end of the bytes present).
    At { protocol: u8, offset: usize },
    /// A fragment other than the first: it holds no transport header.
    LaterFragment { protocol: u8 },
    /// The IPv6 extension header chain continues past the bytes copied.
    Cut,
    /// The IPv6 extension header chain runs past the packet's end.
    Broken(&'static str),
}

/// What the IP header and the IPv6 extension headers say about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub family: Family,
    /// Length of the IP header: IHL × 4, or 40 (without extension headers).
    pub header_len: usize,
    /// The packet's length according to its header.
    pub declared_len: usize,
    /// Part of a fragmented datagram (first fragment included).
    pub fragment: bool,
    pub l4: L4,
    /// IPv6 extension headers present.
    pub ext_headers: bool,
    /// An IPv6 routing header with segments left: the destination field is not the final one.
    pub routing_pending: bool,
}

impl Layout {
    pub fn parse(bytes: &[u8]) -> Result<Layout, PktError> {
        match Family::of_bytes(bytes) {
            Some(Family::Ipv4) => Layout::ipv4(bytes),
            Some(Family::Ipv6) => Layout::ipv6(bytes),
            None => Err(PktError::NotIp {
                version: bytes.first().map(|b| b >> 4),
            }),
        }
    }

    fn ipv4(bytes: &[u8]) -> Result<Layout, PktError> {
        if bytes.len() < IPV4_MIN_HEADER_LEN {
            return Err(PktError::TooShort {
                what: "IPv4 header",
                need: IPV4_MIN_HEADER_LEN,
                have: bytes.len(),
            });
        }
        let header_len = usize::from(byte(bytes, 0) & 0x0f) * 4;
        if header_len < IPV4_MIN_HEADER_LEN {
            return Err(PktError::Malformed {
                what: "IPv4 header length (IHL) below 5",
            });
        }
        if header_len > bytes.len() {
            return Err(PktError::TooShort {
                what: "IPv4 header with options",
                need: header_len,
                have: bytes.len(),
            });
        }
        let declared_len = usize::from(be16(bytes, 2));
        if declared_len < header_len {
            return Err(PktError::Malformed {
                what: "IPv4 total length below the header length",
            });
        }
        let frag = be16(bytes, 6);
        let (more_fragments, offset) = (frag & 0x2000 != 0, frag & 0x1fff);
        let protocol = byte(bytes, 9);
        Ok(Layout {
            family: Family::Ipv4,
            header_len,
            declared_len,
            fragment: more_fragments || offset != 0,
            l4: if offset != 0 {
                L4::LaterFragment { protocol }
            } else {
                L4::At {
                    protocol,
                    offset: header_len,
                }
            },
            ext_headers: false,
            routing_pending: false,
        })
    }

    fn ipv6(bytes: &[u8]) -> Result<Layout, PktError> {
        if bytes.len() < IPV6_HEADER_LEN {
            return Err(PktError::TooShort {
                what: "IPv6 header",
                need: IPV6_HEADER_LEN,
                have: bytes.len(),
            });
        }
        let declared_len = IPV6_HEADER_LEN + usize::from(be16(bytes, 4));
        let end = declared_len.min(bytes.len());
        let mut layout = Layout {
            family: Family::Ipv6,
            header_len: IPV6_HEADER_LEN,
            declared_len,
            fragment: false,
            l4: L4::Cut,
            ext_headers: false,
            routing_pending: false,
        };
        // Past the bytes present: cut by the copy range if the packet goes on, else broken.
        let beyond = |needed_end: usize| {
            if needed_end <= declared_len {
                L4::Cut
            } else {
                L4::Broken("IPv6 extension header runs past the packet")
            }
        };
        let (mut next, mut at) = (byte(bytes, 6), IPV6_HEADER_LEN);
        // Every extension header is at least 8 bytes long, so this ends within 8192 rounds.
        layout.l4 = loop {
            if at > end {
                break beyond(at);
            }
            if !matches!(
                next,
                NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_FRAGMENT | NEXTHDR_AUTH | NEXTHDR_DEST
            ) {
                break L4::At {
                    protocol: next,
                    offset: at,
                };
            }
            layout.ext_headers = true;
            // Bytes of this header read below.
            let needed = match next {
                NEXTHDR_FRAGMENT => 8,
                NEXTHDR_ROUTING => 4,
                _ => 2,
            };
            if at + needed > end {
                break beyond(at + needed);
            }
            let this = next;
            next = byte(bytes, at);
            at += match this {
                NEXTHDR_FRAGMENT => {
                    let offset_flags = be16(bytes, at + 2);
                    let (offset, more) = (offset_flags >> 3, offset_flags & 1 != 0);
                    layout.fragment |= more || offset != 0;
                    if offset != 0 {
                        break L4::LaterFragment { protocol: next };
                    }
                    8
                }
                NEXTHDR_AUTH => (usize::from(byte(bytes, at + 1)) + 2) * 4,
                _ => {
                    if this == NEXTHDR_ROUTING && byte(bytes, at + 3) != 0 {
                        layout.routing_pending = true;
                    }
                    (usize::from(byte(bytes, at + 1)) + 1) * 8
                }
            };
        };
        Ok(layout)
    }
}

/// A parsed IPv4 or IPv6 packet: zero-copy views of its headers and payload.
///
/// ```
/// use libnfq::pkt::{IpPacket, IPPROTO_UDP};
/// // 127.0.0.1:1000 -> 127.0.0.1:2000, "hi" (checksums not filled in).
/// let bytes = [
///     0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
///     0x03, 0xe8, 0x07, 0xd0, 0, 10, 0, 0, b'h', b'i',
/// ];
/// let packet = IpPacket::parse(&bytes).unwrap();
/// assert_eq!(packet.protocol(), Some(IPPROTO_UDP));
/// let udp = packet.udp().unwrap();
/// assert_eq!((udp.src_port(), udp.dst_port(), udp.payload()), (1000, 2000, &b"hi"[..]));
/// assert!(IpPacket::parse(&bytes[..15]).is_err());
/// ```
#[derive(Clone, Copy)]
pub struct IpPacket<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> IpPacket<'a> {
    /// Parses the IP header (and the IPv6 extension headers) of `bytes`, which start at the
    /// network header as a [`Packet::payload`](crate::Packet::payload) does.
    ///
    /// Fails when the IP header itself is unusable: no IP version, too short, a header length
    /// below the minimum or beyond the bytes, a total length below the header length. Problems
    /// further in (a truncated copy, a broken extension header chain, a bad TCP data offset)
    /// leave the IP header view usable and make the transport views `None`.
    pub fn parse(bytes: &'a [u8]) -> Result<IpPacket<'a>, PktError> {
        Ok(IpPacket {
            bytes,
            layout: Layout::parse(bytes)?,
        })
    }

    pub(super) fn layout(&self) -> Layout {
        self.layout
    }

    /// The bytes parsed, including any beyond the packet's declared length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// IPv4 or IPv6.
    pub fn family(&self) -> Family {
        self.layout.family
    }

    /// The IP header.
    pub fn ip(&self) -> IpHeader<'a> {
        let header = self.bytes.get(..self.layout.header_len).unwrap_or(&[]);
        match self.layout.family {
            Family::Ipv4 => IpHeader::V4(Ipv4Header { bytes: header }),
            Family::Ipv6 => IpHeader::V6(Ipv6Header { bytes: header }),
        }
    }

    /// The IPv4 header, if this is IPv4.
    #[doc(alias = "nfq_ip_get_hdr")]
    pub fn ipv4(&self) -> Option<Ipv4Header<'a>> {
        match self.ip() {
            IpHeader::V4(h) => Some(h),
            IpHeader::V6(_) => None,
        }
    }

    /// The IPv6 header (the fixed 40 bytes), if this is IPv6.
    #[doc(alias = "nfq_ip6_get_hdr")]
    pub fn ipv6(&self) -> Option<Ipv6Header<'a>> {
        match self.ip() {
            IpHeader::V6(h) => Some(h),
            IpHeader::V4(_) => None,
        }
    }

    /// The source address.
    pub fn src(&self) -> IpAddr {
        self.ip().src()
    }

    /// The destination address (for IPv6 with a routing header, the next hop's).
    pub fn dst(&self) -> IpAddr {
        self.ip().dst()
    }

    /// The packet's length according to its IP header.
    pub fn total_len(&self) -> usize {
        self.layout.declared_len
    }

    /// `true` when fewer bytes are present than the IP header declares (a copy cut by the copy
    /// range).
    pub fn is_truncated(&self) -> bool {
        self.layout.declared_len > self.bytes.len()
    }

    /// `true` for a fragment of a larger datagram, including its first fragment.
    pub fn is_fragment(&self) -> bool {
        self.layout.fragment
    }

    /// The transport protocol (`IPPROTO_*`), after any IPv6 extension headers; `None` when the
    /// extension header chain is cut by the copy range or broken.
    pub fn protocol(&self) -> Option<u8> {
        match self.layout.l4 {
            L4::At { protocol, .. } | L4::LaterFragment { protocol } => Some(protocol),
            L4::Cut | L4::Broken(_) => None,
        }
    }

    /// Where the transport header starts, from the start of the packet; `None` for a fragment
    /// other than the first, or when the extension header chain is cut or broken.
    #[doc(alias = "nfq_ip_set_transport_header")]
    #[doc(alias = "nfq_ip6_set_transport_header")]
    #[doc(alias = "pktb_transport_header")]
    pub fn transport_offset(&self) -> Option<usize> {
        match self.layout.l4 {
            L4::At { offset, .. } => Some(offset),
            _ => None,
        }
    }

    /// The bytes present from `offset` to the packet's declared end.
    fn present_from(&self, offset: usize) -> Option<&'a [u8]> {
        let end = self.layout.declared_len.min(self.bytes.len());
        self.bytes.get(offset..end)
    }

    /// The bytes present from the transport header on, if it is of `protocol`.
    fn transport_bytes(&self, protocol: u8) -> Option<&'a [u8]> {
        match self.layout.l4 {
            L4::At {
                protocol: p,
                offset,
            } if p == protocol => self.present_from(offset),
            _ => None,
        }
    }

    /// The TCP header and payload, if this is TCP and at least the 20-byte header is present.
    /// On a truncated copy, the options and payload hold what was copied. `None` also for a
    /// data offset below 5 or past the end of a complete packet.
    #[doc(alias = "nfq_tcp_get_hdr")]
    pub fn tcp(&self) -> Option<TcpSegment<'a>> {
        let l4 = self.transport_bytes(IPPROTO_TCP)?;
        if l4.len() < TCP_MIN_HEADER_LEN {
            return None;
        }
        let header_len = usize::from(byte(l4, 12) >> 4) * 4;
        if header_len < TCP_MIN_HEADER_LEN || (header_len > l4.len() && !self.is_truncated()) {
            return None;
        }
        let (header, payload) = l4.split_at(header_len.min(l4.len()));
        Some(TcpSegment {
            header,
            header_len,
            payload,
        })
    }

    /// The UDP header and payload, if this is UDP and the 8-byte header is present. The payload
    /// ends where the UDP length says (or where the copy ends). `None` also when the UDP length
    /// is below 8 or beyond the IP packet (fragments excepted).
    #[doc(alias = "nfq_udp_get_hdr")]
    pub fn udp(&self) -> Option<UdpDatagram<'a>> {
        let l4 = self.transport_bytes(IPPROTO_UDP)?;
        if l4.len() < UDP_HEADER_LEN {
            return None;
        }
        let udp_len = usize::from(be16(l4, 4));
        let end = if self.layout.fragment {
            l4.len()
        } else {
            let offset = self.transport_offset()?;
            if udp_len < UDP_HEADER_LEN || udp_len > self.layout.declared_len.saturating_sub(offset)
            {
                return None;
            }
            udp_len.min(l4.len())
        };
        let (header, payload) = l4.get(..end)?.split_at(UDP_HEADER_LEN);
        Some(UdpDatagram { header, payload })
    }

    /// The TCP or UDP payload (what the socket reads), when [`IpPacket::tcp`] or
    /// [`IpPacket::udp`] gives one.
    pub fn payload(&self) -> Option<&'a [u8]> {
        match self.protocol()? {
            IPPROTO_TCP => self.tcp().map(|t| t.payload()),
            IPPROTO_UDP => self.udp().map(|u| u.payload()),
            _ => None,
        }
    }

    /// Whether the TCP or UDP checksum is right, computed in Rust as the receiver does (a UDP
    /// checksum of 0 over IPv4 means "none" and counts as right). `None` when it cannot be
    /// told: not TCP or UDP, a truncated copy, a fragment, an IPv6 routing header with segments
    /// left, or a malformed transport header.
    ///
    /// Packets queued with [`SkbInfo::CSUM_NOT_READY`](crate::SkbInfo::CSUM_NOT_READY) carry a
    /// partial checksum and report `false`.
    pub fn transport_checksum_ok(&self) -> Option<bool> {
        let layout = self.layout;
        if self.is_truncated() || layout.fragment || layout.routing_pending {
            return None;
        }
        let L4::At { protocol, offset } = layout.l4 else {
            return None;
        };
        let l4 = self.present_from(offset)?;
        let covered = match protocol {
            IPPROTO_TCP => self.tcp().map(|_| l4)?,
            IPPROTO_UDP => {
                let udp = self.udp()?;
                if udp.checksum() == 0 && layout.family == Family::Ipv4 {
                    return Some(true);
                }
                l4.get(..usize::from(udp.length()))?
            }
            _ => return None,
        };
        let sum = pseudo_header_sum(&self.ip(), protocol, covered.len()) + ones_sum(covered);
        Some(fold(sum) == 0xffff)
    }
}

impl fmt::Debug for IpPacket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpPacket")
            .field("family", &self.family())
            .field("src", &self.src())
            .field("dst", &self.dst())
            .field("protocol", &self.protocol())
            .field("total_len", &self.total_len())
            .field("present", &self.bytes.len())
            .field("fragment", &self.is_fragment())
            .finish()
    }
}

/// The sum of big-endian 16-bit words of `bytes` (an odd last byte padded with zero), unfolded.
pub(super) fn ones_sum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    let mut sum: u64 = words
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a one's complement sum to 16 bits.
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The one's complement sum of the TCP/UDP pseudo-header (RFC 793, RFC 768, RFC 8200 8.1).
fn pseudo_header_sum(ip: &IpHeader<'_>, protocol: u8, len: usize) -> u64 {
    let addresses = match ip {
        IpHeader::V4(h) => h.bytes.get(12..20),
        IpHeader::V6(h) => h.bytes.get(8..40),
    };
    ones_sum(addresses.unwrap_or(&[])) + u64::from(protocol) + len as u64
}

/// An IPv4 or IPv6 header.
#[derive(Clone, Copy, Debug)]
pub enum IpHeader<'a> {
    /// IPv4.
    V4(Ipv4Header<'a>),
    /// IPv6.
    V6(Ipv6Header<'a>),
}

impl IpHeader<'_> {
    /// The source address.
    pub fn src(&self) -> IpAddr {
        match self {
            IpHeader::V4(h) => h.src().into(),
            IpHeader::V6(h) => h.src().into(),
        }
    }

    /// The destination address.
    pub fn dst(&self) -> IpAddr {
        match self {
            IpHeader::V4(h) => h.dst().into(),
            IpHeader::V6(h) => h.dst().into(),
        }
    }
}

/// A view of an IPv4 header, options included (at least 20 bytes, all present).
#[derive(Clone, Copy)]
pub struct Ipv4Header<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv4Header<'a> {
    /// The header's bytes (IHL × 4 of them).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        self.bytes.len()
    }
    /// The type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        byte(self.bytes, 1)
    }
    /// The total length field.
    pub fn total_len(&self) -> u16 {
        be16(self.bytes, 2)
    }
    /// The identification field.
    pub fn identification(&self) -> u16 {
        be16(self.bytes, 4)
    }
    /// The "don't fragment" flag.
    pub fn dont_fragment(&self) -> bool {
        byte(self.bytes, 6) & 0x40 != 0
    }
    /// The "more fragments" flag.
    pub fn more_fragments(&self) -> bool {
        byte(self.bytes, 6) & 0x20 != 0
    }
    /// The fragment offset, in bytes.
    pub fn fragment_offset(&self) -> usize {
        usize::from(be16(self.bytes, 6) & 0x1fff) * 8
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        byte(self.bytes, 8)
    }
    /// The protocol field (`IPPROTO_*`).
    pub fn protocol(&self) -> u8 {
        byte(self.bytes, 9)
    }
    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.bytes, 10)
    }
    /// Whether the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        fold(ones_sum(self.bytes)) == 0xffff
    }
    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        array::<4>(self.bytes, 12).into()
    }
    /// The destination address.
    pub fn dst(&self) -> Ipv4Addr {
        array::<4>(self.bytes, 16).into()
    }
    /// The options (empty for a 20-byte header).
    pub fn options(&self) -> &'a [u8] {
        self.bytes.get(IPV4_MIN_HEADER_LEN..).unwrap_or(&[])
    }
}

impl fmt::Debug for Ipv4Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv4Header")
            .field("src", &self.src())
            .field("dst", &self.dst())
            .field("total_len", &self.total_len())
            .field("protocol", &self.protocol())
            .field("ttl", &self.ttl())
            .field("header_len", &self.header_len())
            .finish_non_exhaustive()
    }
}

/// A view of the fixed 40-byte IPv6 header.
#[derive(Clone, Copy)]
pub struct Ipv6Header<'a> {
    bytes: &'a [u8],
}

impl<'a> Ipv6Header<'a> {
    /// The header's 40 bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The traffic class.
    pub fn traffic_class(&self) -> u8 {
        (be16(self.bytes, 0) >> 4) as u8
    }
    /// The flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.bytes, 0) & 0x000f_ffff
    }
    /// The payload length field (everything after these 40 bytes).
    pub fn payload_len(&self) -> u16 {
        be16(self.bytes, 4)
    }
    /// The next header field: the first extension header, or the transport protocol.
    pub fn next_header(&self) -> u8 {
        byte(self.bytes, 6)
    }
    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        byte(self.bytes, 7)
    }
    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        array::<16>(self.bytes, 8).into()
    }
    /// The destination address.
    pub fn dst(&self) -> Ipv6Addr {
        array::<16>(self.bytes, 24).into()
    }
}

impl fmt::Debug for Ipv6Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6Header")
            .field("src", &self.src())
            .field("dst", &self.dst())
            .field("payload_len", &self.payload_len())
            .field("next_header", &self.next_header())
            .field("hop_limit", &self.hop_limit())
            .finish_non_exhaustive()
    }
}

bitflags::bitflags! {
    /// TCP header flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TcpFlags: u8 {
        /// No more data from the sender.
        const FIN = 0x01;
        /// Synchronize sequence numbers.
        const SYN = 0x02;
        /// Reset the connection.
        const RST = 0x04;
        /// Push.
        const PSH = 0x08;
        /// The acknowledgement number is valid.
        const ACK = 0x10;
        /// The urgent pointer is valid.
        const URG = 0x20;
        /// ECN echo.
        const ECE = 0x40;
        /// Congestion window reduced.
        const CWR = 0x80;
    }
}

/// A view of a TCP header (at least its 20 fixed bytes) and payload.
#[derive(Clone, Copy)]
pub struct TcpSegment<'a> {
    /// The header bytes present: `header_len` of them, fewer on a truncated copy.
    header: &'a [u8],
    header_len: usize,
    payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    /// The source port.
    pub fn src_port(&self) -> u16 {
        be16(self.header, 0)
    }
    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.header, 2)
    }
    /// The sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.header, 4)
    }
    /// The acknowledgement number.
    pub fn ack(&self) -> u32 {
        be32(self.header, 8)
    }
    /// The header length the data offset field declares, in bytes.
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// The flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits_retain(byte(self.header, 13))
    }
    /// The receive window.
    pub fn window(&self) -> u16 {
        be16(self.header, 14)
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.header, 16)
    }
    /// The urgent pointer.
    pub fn urgent_ptr(&self) -> u16 {
        be16(self.header, 18)
    }
    /// The options present.
    pub fn options(&self) -> &'a [u8] {
        self.header.get(TCP_MIN_HEADER_LEN..).unwrap_or(&[])
    }
    /// The header bytes present.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header
    }
    /// The payload present.
    #[doc(alias = "nfq_tcp_get_payload")]
    #[doc(alias = "nfq_tcp_get_payload_len")]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

impl fmt::Debug for TcpSegment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSegment")
            .field("src_port", &self.src_port())
            .field("dst_port", &self.dst_port())
            .field("seq", &self.seq())
            .field("ack", &self.ack())
            .field("flags", &self.flags())
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A view of a UDP header and payload.
#[derive(Clone, Copy)]
pub struct UdpDatagram<'a> {
    header: &'a [u8],
    payload: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    /// The source port.
    pub fn src_port(&self) -> u16 {
        be16(self.header, 0)
    }
    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.header, 2)
    }
    /// The length field (header and payload).
    pub fn length(&self) -> u16 {
        be16(self.header, 4)
    }
    /// The checksum field (0: none, allowed over IPv4 only).
    pub fn checksum(&self) -> u16 {
        be16(self.header, 6)
    }
    /// The 8 header bytes.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header
    }
    /// The payload present.
    #[doc(alias = "nfq_udp_get_payload")]
    #[doc(alias = "nfq_udp_get_payload_len")]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

impl fmt::Debug for UdpDatagram<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpDatagram")
            .field("src_port", &self.src_port())
            .field("dst_port", &self.dst_port())
            .field("length", &self.length())
            .field("checksum", &self.checksum())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}
