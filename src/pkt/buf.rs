//! `PacketBuf`: an owned libnetfilter_queue `pkt_buff`, and the C helpers that change it.
//!
//! Every method that calls C first parses the current bytes in Rust ([`Layout`]) and checks what
//! the helper relies on without checking (see the module documentation); the `SAFETY` comments
//! say which check covers which read or write of the helper.

use std::ffi::{c_char, c_uint, c_void};
use std::fmt;
use std::ops::Range;
use std::ptr::NonNull;

use nfq_sys as sys;

use super::view::{
    be16, IpPacket, Ipv4Header, Ipv6Header, Layout, TcpSegment, UdpDatagram, L4,
    TCP_MIN_HEADER_LEN, UDP_HEADER_LEN,
};
use super::{Family, PktError, IPPROTO_TCP, IPPROTO_UDP};
use crate::config::MAX_PAYLOAD_LEN;
use crate::packet::Packet;

/// The tailroom [`PacketBuf::new`] and [`PacketBuf::from_packet`] allocate: how many bytes the
/// packet can grow by.
pub const DEFAULT_TAILROOM: usize = 4096;

/// A non-dangling source for zero-length copies (C's `memcpy` wants a valid pointer even then).
static EMPTY: [u8; 1] = [0];

/// An owned, mutable copy of a packet in a libnetfilter_queue `pkt_buff`, with tailroom to grow.
///
/// Created from a queued [`Packet`] or from any bytes that start with an IP header; freed (with
/// `pktb_free`) when dropped. Its [`data`](PacketBuf::data) is the packet as it is now, ready to
/// be a verdict's replacement payload. See the [module documentation](super) for what it checks
/// and for the TCP caveat.
///
/// ```
/// use libnfq::pkt::PacketBuf;
/// // 127.0.0.1:1000 -> 127.0.0.1:2000, "a cat" (checksums not filled in yet).
/// let mut bytes = vec![
///     0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
///     0x03, 0xe8, 0x07, 0xd0, 0, 13, 0, 0,
/// ];
/// bytes.extend_from_slice(b"a cat");
/// let mut buf = PacketBuf::new(&bytes)?;
/// assert_eq!(buf.replace_all(b"cat", b"tiger")?, 1);
/// assert_eq!(buf.udp().unwrap().payload(), b"a tiger");
/// assert_eq!(buf.len(), bytes.len() + 2);
/// let view = buf.view()?;
/// assert!(view.ipv4().unwrap().checksum_ok());
/// assert_eq!(view.transport_checksum_ok(), Some(true));
/// # Ok::<(), libnfq::pkt::PktError>(())
/// ```
pub struct PacketBuf {
    raw: NonNull<sys::pkt_buff>,
    family: Family,
    /// Set when made from a [`Packet`] whose copy was truncated.
    truncated_copy: Option<PktError>,
}

// SAFETY: a `pkt_buff` is one heap block (header and data) owned exclusively by this value; the
// library keeps no global or thread-local state about it, so it may be used and freed from any
// thread. `&PacketBuf` only reads it (`pktb_data`, `pktb_len`, `pktb_tailroom`, `pktb_mangled`
// read fields), so sharing references between threads is sound too.
unsafe impl Send for PacketBuf {}
// SAFETY: see above: every `&self` method only reads.
unsafe impl Sync for PacketBuf {}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `pktb_alloc`, is owned by this value only, and is freed
        // exactly once, here.
        unsafe { sys::pktb_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("family", &self.family)
            .field("len", &self.len())
            .field("tailroom", &self.tailroom())
            .field("mangled", &self.is_mangled())
            .finish_non_exhaustive()
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

/// A TCP or UDP packet that checksums and payload mangling can work on.
#[derive(Clone, Copy, Debug)]
struct Transport {
    family: Family,
    protocol: u8,
    /// Offset of the TCP/UDP header.
    offset: usize,
    /// Its length (8, or the TCP data offset × 4).
    header_len: usize,
    /// The packet's length (all of it is present).
    len: usize,
    ext_headers: bool,
}

impl Transport {
    fn payload_start(&self) -> usize {
        self.offset + self.header_len
    }
}

/// `range` checked against a region of `len` bytes: `(start, length)`.
fn check_range(range: &Range<usize>, len: usize) -> Result<(usize, usize), PktError> {
    if range.start > range.end || range.end > len {
        return Err(PktError::OutOfRange {
            start: range.start,
            end: range.end,
            len,
        });
    }
    Ok((range.start, range.end - range.start))
}

/// Converts a length already checked to be at most [`MAX_PAYLOAD_LEN`].
fn uint(n: usize) -> c_uint {
    c_uint::try_from(n).unwrap_or(c_uint::MAX)
}

impl PacketBuf {
    /// Copies `bytes`, an IPv4 or IPv6 packet from its network header on, into a new buffer
    /// with [`DEFAULT_TAILROOM`]. The family comes from the version field.
    ///
    /// Errors: [`PktError::NotIp`] when the version is neither 4 nor 6,
    /// [`PktError::TooLarge`] beyond [`MAX_PAYLOAD_LEN`], [`PktError::Alloc`].
    pub fn new(bytes: &[u8]) -> Result<PacketBuf, PktError> {
        let family = Family::of_bytes(bytes).ok_or(PktError::NotIp {
            version: bytes.first().map(|b| b >> 4),
        })?;
        PacketBuf::alloc(family, bytes, DEFAULT_TAILROOM)
    }

    /// Copies any `bytes` into a new buffer of `family` that can grow by `tailroom` bytes
    /// (capped so that the packet never exceeds [`MAX_PAYLOAD_LEN`]). The bytes are not checked
    /// here: every view and operation checks them when used.
    #[doc(alias = "pktb_alloc")]
    pub fn alloc(family: Family, bytes: &[u8], tailroom: usize) -> Result<PacketBuf, PktError> {
        if bytes.len() > MAX_PAYLOAD_LEN {
            return Err(PktError::TooLarge {
                len: bytes.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let tailroom = tailroom.min(MAX_PAYLOAD_LEN - bytes.len());
        let src = if bytes.is_empty() {
            EMPTY.as_ptr()
        } else {
            bytes.as_ptr()
        };
        // SAFETY: `pktb_alloc` callocs a block for its header plus `len + extra` bytes and
        // copies `len` bytes from `data`, which `src` holds (it only reads them, despite the
        // `*mut`). For AF_INET and AF_INET6 it reads nothing else (only AF_BRIDGE would parse
        // an Ethernet header). `len + extra` is at most MAX_PAYLOAD_LEN, so its 32-bit length
        // fields cannot overflow.
        let raw = unsafe {
            sys::pktb_alloc(
                family.af(),
                src.cast_mut().cast::<c_void>(),
                bytes.len(),
                tailroom,
            )
        };
        let raw = NonNull::new(raw).ok_or(PktError::Alloc)?;
        Ok(PacketBuf {
            raw,
            family,
            truncated_copy: None,
        })
    }

    /// Copies a queued packet's payload, with [`DEFAULT_TAILROOM`]. The family comes from the
    /// packet's link-layer protocol, or else from the version field. When the copy was
    /// truncated by the copy range, views work but checksums and mangling are refused
    /// ([`PktError::Truncated`]); so they are for a GSO super-packet
    /// ([`SkbInfo::GSO`](crate::SkbInfo::GSO), only on queues bound with
    /// [`QueueFlags::GSO`](crate::QueueFlags::GSO)): [`PktError::Unsupported`].
    pub fn from_packet(packet: &Packet<'_>) -> Result<PacketBuf, PktError> {
        PacketBuf::from_packet_with_tailroom(packet, DEFAULT_TAILROOM)
    }

    /// [`PacketBuf::from_packet`] with room to grow by `tailroom` bytes.
    pub fn from_packet_with_tailroom(
        packet: &Packet<'_>,
        tailroom: usize,
    ) -> Result<PacketBuf, PktError> {
        let payload = packet.payload();
        let family = Family::from_ethertype(packet.hw_protocol())
            .or_else(|| Family::of_bytes(payload))
            .ok_or(PktError::NotIp {
                version: payload.first().map(|b| b >> 4),
            })?;
        let mut buf = PacketBuf::alloc(family, payload, tailroom)?;
        if packet.skb_info().contains(crate::SkbInfo::GSO) {
            // Only with QueueFlags::GSO: one packet standing for many segments, with a partial
            // checksum that the kernel completes when it segments it. A replaced payload loses
            // that state (the kernel marks it "checksum none"), so it is not rewritten.
            buf.truncated_copy = Some(PktError::Unsupported {
                what: "a GSO super-packet (queue bound with QueueFlags::GSO) cannot be \
                       rewritten; bind rewriting queues without QueueFlags::GSO",
            });
        } else if packet.is_truncated() {
            buf.truncated_copy = Some(PktError::Truncated {
                have: payload.len(),
                declared: packet.original_len() as usize,
            });
        }
        Ok(buf)
    }

    /// The family given at creation.
    pub fn family(&self) -> Family {
        self.family
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: `raw` is a live pkt_buff; pktb_data only reads its `data` field.
        unsafe { sys::pktb_data(self.raw.as_ptr()) }
    }

    /// The packet's bytes, from the network header on.
    #[doc(alias = "pktb_data")]
    #[doc(alias = "pktb_network_header")]
    pub fn data(&self) -> &[u8] {
        // SAFETY: `data` points into the block pktb_alloc allocated, at `len` initialised bytes
        // (copied at creation, or moved and written by pktb_mangle, which keeps `len` within the
        // allocation because growth beyond the tailroom is refused before calling it). The
        // pointer is non-null and valid until the buffer is freed or changed, which needs
        // `&mut self`, so not while this borrow lives.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    /// The packet's bytes, for same-length edits in place. Call
    /// [`PacketBuf::fix_checksums`] afterwards.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `data`; `&mut self` makes this the only access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    /// A copy of the bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }

    /// The packet's length.
    #[doc(alias = "pktb_len")]
    pub fn len(&self) -> usize {
        // SAFETY: `raw` is a live pkt_buff; pktb_len only reads its `len` field.
        unsafe { sys::pktb_len(self.raw.as_ptr()) as usize }
    }

    /// `true` for an empty buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes the packet can still grow by.
    #[doc(alias = "pktb_tailroom")]
    pub fn tailroom(&self) -> usize {
        // SAFETY: `raw` is a live pkt_buff; pktb_tailroom only reads two fields.
        unsafe { sys::pktb_tailroom(self.raw.as_ptr()) as usize }
    }

    /// `true` once a mangling method changed the packet (edits through
    /// [`PacketBuf::data_mut`] do not count).
    #[doc(alias = "pktb_mangled")]
    pub fn is_mangled(&self) -> bool {
        // SAFETY: `raw` is a live pkt_buff; pktb_mangled only reads a field.
        unsafe { sys::pktb_mangled(self.raw.as_ptr()) }
    }

    /// The parsed packet as it is now. Fails like [`IpPacket::parse`], and with
    /// [`PktError::WrongFamily`] when the version field no longer matches
    /// [`PacketBuf::family`].
    pub fn view(&self) -> Result<IpPacket<'_>, PktError> {
        let view = IpPacket::parse(self.data())?;
        if view.family() != self.family {
            return Err(PktError::WrongFamily {
                buffer: self.family,
                packet: view.family(),
            });
        }
        Ok(view)
    }

    /// The IPv4 header, if the packet is IPv4 with a usable header.
    #[doc(alias = "nfq_ip_get_hdr")]
    pub fn ipv4(&self) -> Option<Ipv4Header<'_>> {
        self.view().ok()?.ipv4()
    }

    /// The IPv6 header, if the packet is IPv6 with a usable header.
    #[doc(alias = "nfq_ip6_get_hdr")]
    pub fn ipv6(&self) -> Option<Ipv6Header<'_>> {
        self.view().ok()?.ipv6()
    }

    /// The TCP header and payload ([`IpPacket::tcp`]).
    #[doc(alias = "nfq_tcp_get_hdr")]
    pub fn tcp(&self) -> Option<TcpSegment<'_>> {
        self.view().ok()?.tcp()
    }

    /// The UDP header and payload ([`IpPacket::udp`]).
    #[doc(alias = "nfq_udp_get_hdr")]
    pub fn udp(&self) -> Option<UdpDatagram<'_>> {
        self.view().ok()?.udp()
    }

    /// The layout of a packet that is wholly present: not a truncated copy, no bytes after its
    /// declared end.
    fn complete_layout(&self) -> Result<Layout, PktError> {
        if let Some(truncated) = &self.truncated_copy {
            return Err(truncated.clone());
        }
        let layout = self.view()?.layout();
        let len = self.len();
        if layout.declared_len > len {
            return Err(PktError::Truncated {
                have: len,
                declared: layout.declared_len,
            });
        }
        if layout.declared_len < len {
            return Err(PktError::Malformed {
                what: "bytes after the end of the packet its IP header declares",
            });
        }
        Ok(layout)
    }

    /// A complete, unfragmented TCP or UDP packet whose transport header is wholly present and
    /// whose length fields agree.
    fn transport(&self) -> Result<Transport, PktError> {
        let layout = self.complete_layout()?;
        if layout.fragment {
            return Err(PktError::Fragment);
        }
        if layout.routing_pending {
            return Err(PktError::Unsupported {
                what: "IPv6 routing header with segments left (the checksum needs the final \
                       destination)",
            });
        }
        let (protocol, offset) = match layout.l4 {
            L4::At { protocol, offset } => (protocol, offset),
            L4::LaterFragment { .. } => return Err(PktError::Fragment),
            L4::Broken(what) => return Err(PktError::Malformed { what }),
            L4::Cut => return Err(PktError::NotTcpUdp { protocol: None }),
        };
        let l4 = self.data().get(offset..).unwrap_or(&[]);
        let header_len = match protocol {
            IPPROTO_TCP => {
                if l4.len() < TCP_MIN_HEADER_LEN {
                    return Err(PktError::TooShort {
                        what: "TCP header",
                        need: TCP_MIN_HEADER_LEN,
                        have: l4.len(),
                    });
                }
                let header_len = usize::from(l4[12] >> 4) * 4;
                if header_len < TCP_MIN_HEADER_LEN {
                    return Err(PktError::Malformed {
                        what: "TCP data offset below 5",
                    });
                }
                if header_len > l4.len() {
                    return Err(PktError::Malformed {
                        what: "TCP data offset past the end of the packet",
                    });
                }
                header_len
            }
            IPPROTO_UDP => {
                if l4.len() < UDP_HEADER_LEN {
                    return Err(PktError::TooShort {
                        what: "UDP header",
                        need: UDP_HEADER_LEN,
                        have: l4.len(),
                    });
                }
                if usize::from(be16(l4, 4)) != l4.len() {
                    return Err(PktError::Malformed {
                        what: "UDP length differs from the IP payload length",
                    });
                }
                UDP_HEADER_LEN
            }
            other => {
                return Err(PktError::NotTcpUdp {
                    protocol: Some(other),
                })
            }
        };
        Ok(Transport {
            family: layout.family,
            protocol,
            offset,
            header_len,
            len: layout.declared_len,
            ext_headers: layout.ext_headers,
        })
    }

    /// Recomputes the IPv4 header checksum. [`PktError::Unsupported`] for IPv6, which has none.
    #[doc(alias = "nfq_ip_set_checksum")]
    pub fn set_ipv4_checksum(&mut self) -> Result<(), PktError> {
        let layout = self.view()?.layout();
        if layout.family != Family::Ipv4 {
            return Err(PktError::Unsupported {
                what: "IPv6 has no header checksum",
            });
        }
        // SAFETY: the layout guarantees an IPv4 header with IHL >= 5 whose IHL * 4 bytes are
        // all present: nfq_ip_set_checksum reads and writes exactly those.
        unsafe { sys::nfq_ip_set_checksum(self.data_ptr().cast::<sys::iphdr>()) };
        Ok(())
    }

    /// Recomputes the TCP or UDP checksum (pseudo-header included), over IPv4 or IPv6.
    ///
    /// Refused for truncated copies, fragments, malformed or inconsistent headers, and IPv6
    /// routing headers with segments left; [`PktError::NotTcpUdp`] for other protocols.
    #[doc(alias = "nfq_tcp_compute_checksum_ipv4")]
    #[doc(alias = "nfq_tcp_compute_checksum_ipv6")]
    #[doc(alias = "nfq_udp_compute_checksum_ipv4")]
    #[doc(alias = "nfq_udp_compute_checksum_ipv6")]
    pub fn set_transport_checksum(&mut self) -> Result<(), PktError> {
        let t = self.transport()?;
        let ip = self.data_ptr();
        // SAFETY: `transport` checked that the packet is wholly present (its IP length field
        // equals the buffer length), that the transport header starts at `t.offset` with
        // its checksum field (at +16 for TCP, +6 for UDP) inside the packet, and for IPv4 that
        // `t.offset` is IHL * 4 <= total length. The IPv4 helpers checksum total length - IHL * 4
        // bytes from IHL * 4; the IPv6 ones checksum payload length - (offset - 40) bytes from
        // `offset`: both end exactly at the end of the packet.
        unsafe {
            let l4 = ip.add(t.offset);
            match (t.family, t.protocol) {
                (Family::Ipv4, IPPROTO_TCP) => sys::nfq_tcp_compute_checksum_ipv4(
                    l4.cast::<sys::tcphdr>(),
                    ip.cast::<sys::iphdr>(),
                ),
                (Family::Ipv4, _) => sys::nfq_udp_compute_checksum_ipv4(
                    l4.cast::<sys::udphdr>(),
                    ip.cast::<sys::iphdr>(),
                ),
                (Family::Ipv6, IPPROTO_TCP) => sys::nfq_tcp_compute_checksum_ipv6(
                    l4.cast::<sys::tcphdr>(),
                    ip.cast::<sys::ip6_hdr>(),
                ),
                (Family::Ipv6, _) => sys::nfq_udp_compute_checksum_ipv6(
                    l4.cast::<sys::udphdr>(),
                    ip.cast::<sys::ip6_hdr>(),
                ),
            }
        }
        self.fix_zero_udp_checksum(&t);
        Ok(())
    }

    /// A computed UDP checksum of 0 is sent as `0xffff` (RFC 768): 0 means "no checksum" over
    /// IPv4 and is invalid over IPv6. The C helpers store 0.
    fn fix_zero_udp_checksum(&mut self, t: &Transport) {
        if t.protocol != IPPROTO_UDP {
            return;
        }
        let at = t.offset + 6;
        if let Some(field) = self.data_mut().get_mut(at..at + 2) {
            if field == [0, 0] {
                field.copy_from_slice(&[0xff, 0xff]);
            }
        }
    }

    /// Recomputes every checksum: the IPv4 header's, and the TCP or UDP one. For other
    /// transport protocols only the IPv4 header checksum is set. Fails, changing nothing, like
    /// [`PacketBuf::set_transport_checksum`] for TCP and UDP packets it cannot checksum.
    pub fn fix_checksums(&mut self) -> Result<(), PktError> {
        let view = self.view()?;
        let family = view.family();
        // Checked before anything changes; an unknown protocol is not skipped silently.
        let tcp_udp = matches!(view.protocol(), Some(IPPROTO_TCP | IPPROTO_UDP) | None);
        if tcp_udp {
            self.transport()?;
        }
        if family == Family::Ipv4 {
            self.set_ipv4_checksum()?;
        }
        if tcp_udp {
            self.set_transport_checksum()?;
        }
        Ok(())
    }

    /// Checks that replacing `match_len` bytes with `rep_len` keeps the packet within
    /// [`MAX_PAYLOAD_LEN`] and the tailroom. `match_len` is at most `len()`.
    fn check_growth(&self, match_len: usize, rep_len: usize) -> Result<(), PktError> {
        let new_len = (self.len() - match_len).saturating_add(rep_len);
        if new_len > MAX_PAYLOAD_LEN {
            return Err(PktError::TooLarge {
                len: new_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let (growth, available) = (rep_len.saturating_sub(match_len), self.tailroom());
        if growth > available {
            return Err(PktError::NoRoom {
                needed: growth,
                available,
            });
        }
        Ok(())
    }

    /// Refuses any change to a truncated copy.
    fn check_not_truncated_copy(&self) -> Result<(), PktError> {
        match &self.truncated_copy {
            Some(truncated) => Err(truncated.clone()),
            None => Ok(()),
        }
    }

    /// Replaces the bytes in `range` (offsets from the start of the packet) with `with`, moving
    /// what follows; fixes nothing (no length field, no checksum).
    ///
    /// Errors: [`PktError::OutOfRange`], [`PktError::NoRoom`], [`PktError::TooLarge`],
    /// [`PktError::Truncated`] for a truncated copy.
    #[doc(alias = "pktb_mangle")]
    pub fn mangle(&mut self, range: Range<usize>, with: &[u8]) -> Result<(), PktError> {
        self.check_not_truncated_copy()?;
        let (start, match_len) = check_range(&range, self.len())?;
        self.check_growth(match_len, with.len())?;
        let rep = rep_ptr(with);
        // SAFETY: start + match_len <= len, so pktb_mangle's move of the bytes after the match
        // (len - start - match_len of them) stays inside the packet, and its growth
        // (with.len() - match_len, if positive) fits the tailroom, so it never takes its
        // broken "enlarge" path and every write stays inside the allocation. `rep` holds
        // `with.len()` readable bytes. All values are below MAX_PAYLOAD_LEN, so the C int and
        // unsigned int conversions are exact.
        let ok = unsafe {
            sys::pktb_mangle(
                self.raw.as_ptr(),
                0,
                uint(start),
                uint(match_len),
                rep,
                uint(with.len()),
            )
        };
        mangled(ok)
    }

    /// Replaces the bytes in `range` of the IP payload (offsets from the end of the IPv4 header
    /// with its options, or of the fixed 40-byte IPv6 header) with `with`, then fixes the IP
    /// length field and the IPv4 header checksum. Transport headers and checksums are left as
    /// they are (use [`PacketBuf::mangle_payload`] for TCP and UDP).
    ///
    /// Errors: as [`PacketBuf::mangle`], and for packets not wholly present.
    #[doc(alias = "nfq_ip_mangle")]
    #[doc(alias = "nfq_ip6_mangle")]
    pub fn mangle_ip_payload(&mut self, range: Range<usize>, with: &[u8]) -> Result<(), PktError> {
        let layout = self.complete_layout()?;
        let (start, match_len) = check_range(&range, layout.declared_len - layout.header_len)?;
        self.check_growth(match_len, with.len())?;
        self.ip_mangle(&layout, layout.header_len, start, match_len, with)
    }

    /// `nfq_ip_mangle` or `nfq_ip6_mangle` at `dataoff + start`, after the caller checked
    /// `layout` (a complete packet), the range (`dataoff + start + match_len <= len`, `dataoff`
    /// at or after the IP header) and the growth.
    fn ip_mangle(
        &mut self,
        layout: &Layout,
        dataoff: usize,
        start: usize,
        match_len: usize,
        with: &[u8],
    ) -> Result<(), PktError> {
        let (raw, rep) = (self.raw.as_ptr(), rep_ptr(with));
        let args = (
            uint(dataoff),
            uint(start),
            uint(match_len),
            uint(with.len()),
        );
        // SAFETY: as in `mangle` for the pktb_mangle these call (dataoff + start + match_len is
        // within the packet, the growth within the tailroom). Afterwards nfq_ip_mangle writes
        // the total length and recomputes the header checksum over IHL * 4 bytes, a header
        // left untouched since `dataoff` is at or after it, and nfq_ip6_mangle writes the
        // payload length: all inside the 20 or 40 bytes the layout guarantees.
        let ok = unsafe {
            match layout.family {
                Family::Ipv4 => sys::nfq_ip_mangle(raw, args.0, args.1, args.2, rep, args.3),
                Family::Ipv6 => sys::nfq_ip6_mangle(raw, args.0, args.1, args.2, rep, args.3),
            }
        };
        mangled(ok)
    }

    /// Replaces the bytes in `range` of the TCP or UDP payload with `with`, then fixes the IP
    /// length field, the IPv4 header checksum, the UDP length and the TCP or UDP checksum.
    ///
    /// For TCP, a replacement of another length than the range breaks the connection unless you
    /// handle the sequence numbers: see the [module documentation](super).
    ///
    /// Errors: [`PktError::OutOfRange`], [`PktError::NoRoom`], [`PktError::TooLarge`], and
    /// whatever [`PacketBuf::set_transport_checksum`] refuses.
    #[doc(alias = "nfq_tcp_mangle_ipv4")]
    #[doc(alias = "nfq_tcp_mangle_ipv6")]
    #[doc(alias = "nfq_udp_mangle_ipv4")]
    #[doc(alias = "nfq_udp_mangle_ipv6")]
    pub fn mangle_payload(&mut self, range: Range<usize>, with: &[u8]) -> Result<(), PktError> {
        let t = self.transport()?;
        let (start, match_len) = check_range(&range, t.len - t.payload_start())?;
        self.check_growth(match_len, with.len())?;
        if t.family == Family::Ipv6 && t.ext_headers {
            return self.mangle_payload_after_ext_headers(&t, start, match_len, with);
        }
        let (raw, rep) = (self.raw.as_ptr(), rep_ptr(with));
        let args = (uint(start), uint(match_len), uint(with.len()));
        // SAFETY: `transport` checked a complete, unfragmented TCP/UDP packet whose transport
        // header is wholly present at `t.offset` (IHL * 4 for IPv4, 40 for IPv6 without
        // extension headers), a TCP data offset >= 5 within the packet, and a UDP length equal
        // to the IP payload length (so the helpers' UDP length update stays exact). The range
        // lies within the payload after that header, where these helpers put it, and the
        // growth fits the tailroom: the pktb_mangle they call stays in bounds (see `mangle`),
        // and their length and checksum fixes cover exactly the (new) packet. For IPv6,
        // nfq_ip6_set_transport_header with a target equal to the header's next header field
        // reads only that byte and sets the transport header to 40 bytes in, the offset checked.
        let ok = unsafe {
            match (t.family, t.protocol) {
                (Family::Ipv4, IPPROTO_TCP) => {
                    sys::nfq_tcp_mangle_ipv4(raw, args.0, args.1, rep, args.2)
                }
                (Family::Ipv4, _) => sys::nfq_udp_mangle_ipv4(raw, args.0, args.1, rep, args.2),
                (Family::Ipv6, protocol) => {
                    let ip6 = self.data_ptr().cast::<sys::ip6_hdr>();
                    if sys::nfq_ip6_set_transport_header(raw, ip6, protocol) != 1 {
                        0
                    } else if protocol == IPPROTO_TCP {
                        sys::nfq_tcp_mangle_ipv6(raw, args.0, args.1, rep, args.2)
                    } else {
                        sys::nfq_udp_mangle_ipv6(raw, args.0, args.1, rep, args.2)
                    }
                }
            }
        };
        mangled(ok)?;
        self.fix_zero_udp_checksum(&t);
        Ok(())
    }

    /// `mangle_payload` for IPv6 with extension headers, where `nfq_ip6_set_transport_header`
    /// would find the wrong transport header: the IPv6 mangle at the offset found in Rust, then
    /// the UDP length, then the checksum.
    fn mangle_payload_after_ext_headers(
        &mut self,
        t: &Transport,
        start: usize,
        match_len: usize,
        with: &[u8],
    ) -> Result<(), PktError> {
        let layout = self.complete_layout()?;
        self.ip_mangle(&layout, t.payload_start(), start, match_len, with)?;
        if t.protocol == IPPROTO_UDP {
            let udp_len = u16::try_from(self.len() - t.offset).unwrap_or(u16::MAX);
            let at = t.offset + 4;
            if let Some(field) = self.data_mut().get_mut(at..at + 2) {
                field.copy_from_slice(&udp_len.to_be_bytes());
            }
        }
        self.set_transport_checksum()
    }

    /// Replaces every occurrence of `needle` in the TCP or UDP payload (left to right, not
    /// overlapping) with `with`, fixing lengths and checksums as [`PacketBuf::mangle_payload`]
    /// does, and returns how many were replaced. All or nothing: when the packet would not have
    /// room for every replacement, nothing is changed. An empty `needle` matches nothing.
    ///
    /// For TCP, `with` must be as long as `needle` unless you handle the sequence numbers: see
    /// the [module documentation](super).
    pub fn replace_all(&mut self, needle: &[u8], with: &[u8]) -> Result<usize, PktError> {
        let t = self.transport()?;
        if needle.is_empty() {
            return Ok(0);
        }
        let payload = self.data().get(t.payload_start()..).unwrap_or(&[]);
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(pos) = payload
            .get(at..)
            .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
        {
            found.push(at + pos);
            at += pos + needle.len();
        }
        let n = found.len();
        // The whole change at once: as if `n` needles were replaced by `n` copies of `with`.
        let (matched, replaced) = (n.saturating_mul(needle.len()), n.saturating_mul(with.len()));
        self.check_growth(matched.min(self.len()), replaced)?;
        // Last first, so that the offsets still to do do not move.
        for &pos in found.iter().rev() {
            self.mangle_payload(pos..pos + needle.len(), with)?;
        }
        Ok(n)
    }
}

/// A pointer to the replacement bytes that is valid even when there are none.
fn rep_ptr(with: &[u8]) -> *const c_char {
    let bytes = if with.is_empty() { &EMPTY[..] } else { with };
    bytes.as_ptr().cast::<c_char>()
}

/// The result of a libnetfilter_queue mangling function (1: done, 0: refused). The checks made
/// before calling leave it no reason to refuse; if it does anyway, report it instead of
/// panicking.
fn mangled(ok: i32) -> Result<(), PktError> {
    if ok == 1 {
        Ok(())
    } else {
        Err(PktError::Malformed {
            what: "libnetfilter_queue refused the change",
        })
    }
}
