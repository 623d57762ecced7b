//! Reading and rewriting packets: header views, checksums and in-place mangling.
//!
//! Two layers:
//!
//! - [`IpPacket`]: a zero-copy, bounds-checked view of IP packet bytes, e.g. a
//!   [`Packet::payload`](crate::Packet::payload). It gives the IPv4 or IPv6 header
//!   ([`Ipv4Header`], [`Ipv6Header`]), the transport protocol found after any IPv6 extension
//!   headers, and the TCP or UDP header with its payload ([`TcpSegment`], [`UdpDatagram`]). No
//!   allocation: use it to classify packets.
//! - [`PacketBuf`]: an owned, mutable copy in a libnetfilter_queue `pkt_buff`, with tailroom to
//!   grow. It recomputes checksums ([`PacketBuf::fix_checksums`]) and replaces byte ranges,
//!   growing or shrinking the packet and fixing its length fields and checksums
//!   ([`PacketBuf::mangle_payload`], [`PacketBuf::replace_all`]). Its bytes are the replacement
//!   payload of a verdict: `Verdict::accept_with(buf.data())`.
//!
//! [`Verdict::accept_rewritten`](crate::Verdict::accept_rewritten) does the whole "copy, edit,
//! accept" round in one expression a callback can return; when the copy or the edit fails, the
//! packet gets its queue's fallback verdict:
//!
//! ```no_run
//! use libnfq::{Handle, QueueConfig, Verdict};
//!
//! # fn main() -> Result<(), libnfq::Error> {
//! let handle = Handle::open()?;
//! let _queue = handle.queue(0, QueueConfig::new(), |packet| {
//!     // Rewrite "cat" to "tiger" in UDP payloads; packets without one are accepted as they are.
//!     Verdict::accept_rewritten(packet, |buf| {
//!         buf.replace_all(b"cat", b"tiger")?;
//!         Ok(())
//!     })
//! })?;
//! handle.run()
//! # }
//! ```
//!
//! The same by hand, deciding what each error means:
//!
//! ```no_run
//! use libnfq::pkt::PacketBuf;
//! use libnfq::{Handle, QueueConfig, Verdict};
//!
//! # fn main() -> Result<(), libnfq::Error> {
//! let handle = Handle::open()?;
//! let _queue = handle.queue(0, QueueConfig::new(), |packet| {
//!     let Ok(mut buf) = PacketBuf::from_packet(packet) else {
//!         return Verdict::accept(); // not IP: leave it alone
//!     };
//!     match buf.replace_all(b"cat", b"tiger") {
//!         Ok(n) if n > 0 => Verdict::accept_with(buf.data()),
//!         Ok(_) => Verdict::accept(),
//!         Err(_) => Verdict::drop(),
//!     }
//! })?;
//! handle.run()
//! # }
//! ```
//!
//! # Malformed and truncated packets
//!
//! Every view is bounded by the bytes present *and* by the lengths the headers declare; a
//! malformed packet yields an error or `None`, never a panic. A copy cut short by the copy range
//! ([`CopyMode::Packet`](crate::CopyMode::Packet)) still has views: they give what fits
//! ([`IpPacket::is_truncated`] tells), but checksums and mangling refuse it with
//! [`PktError::Truncated`]: a rewrite of a partial copy would cut the packet.
//!
//! Each [`PacketBuf`] operation re-parses the current bytes first (so edits through
//! [`PacketBuf::data_mut`] are always seen), and checks in Rust everything the C helper it calls
//! does not. What libnetfilter_queue 1.0.5 leaves unchecked, and this module therefore checks or
//! avoids:
//!
//! - `nfq_ip_get_hdr` checks the version and that the total length fits, but not the header
//!   length (IHL) at all: IHL 0..4, or a header longer than the packet, passes.
//!   `nfq_ip_set_transport_header` ignores fragments (a later fragment has no transport header)
//!   and IHL below 5.
//! - `nfq_ip_set_checksum` reads IHL × 4 bytes whatever the buffer holds.
//! - `nfq_tcp_mangle_ipv4`, `nfq_udp_mangle_ipv4` and the checksum helpers trust IHL, the TCP
//!   data offset and the IP length fields; a total length below the header length makes them
//!   checksum about 4 GiB.
//! - `pktb_mangle` does not check that the replaced range lies inside the packet, and when the
//!   growth exceeds the tailroom it may "succeed" and write past the end of its allocation. This
//!   module refuses growth beyond the tailroom ([`PktError::NoRoom`]) before calling it.
//! - `nfq_ip6_set_transport_header` takes an extension header's length field as a byte count
//!   (it is in 8-byte units, minus one), and reads a fragment's offset from its identification
//!   field: with any extension header it finds the wrong transport header. It is only called
//!   here for packets without extension headers; the others are walked in Rust.
//! - The UDP checksum helpers may store a computed checksum of 0, which means "no checksum" over
//!   IPv4 and is invalid over IPv6; it is replaced by `0xffff` here, as RFC 768 asks.
//! - The IPv6 checksum helpers ignore routing headers (the pseudo-header needs the final
//!   destination): refused here while segments are left ([`PktError::Unsupported`]).
//!
//! # Checksums and the kernel
//!
//! The kernel does not recompute the checksums of a replaced payload: it marks the packet
//! "checksum none", so the receiving stack verifies them, and silently drops a datagram or
//! segment whose checksum is wrong. The mangling methods fix every checksum they affect; after
//! editing through [`PacketBuf::data_mut`], call [`PacketBuf::fix_checksums`].
//!
//! Locally generated packets copied in full arrive with their checksums complete. With
//! [`QueueFlags::GSO`](crate::QueueFlags::GSO) (or in meta copy mode) they may carry
//! [`SkbInfo::CSUM_NOT_READY`](crate::SkbInfo::CSUM_NOT_READY) and only a partial checksum:
//! [`IpPacket::transport_checksum_ok`] then reports `false`, and GSO super-packets are not meant
//! to be rewritten (do not set the GSO flag on a queue that rewrites).
//!
//! # TCP: only same-length rewrites, unless you own the connection
//!
//! Changing the length of a TCP segment shifts the sequence numbers of everything the sender
//! sends after it, and the receiver's acknowledgements no longer match what the sender sent: the
//! connection stalls or is reset. The kernel fixes sequence numbers only when the verdict also
//! carries conntrack data (`NFQA_CT`), which needs a kernel built with
//! `CONFIG_NETFILTER_NETLINK_GLUE_CT`; many kernels, including the one this crate is tested on,
//! lack it. Supported patterns:
//!
//! - same-length rewrites of TCP payloads (replacing bytes with as many bytes), on any
//!   connection: [`PacketBuf::mangle_payload`] with a range as long as the replacement, or
//!   edits through [`PacketBuf::data_mut`] followed by [`PacketBuf::fix_checksums`];
//! - length changes of UDP datagrams (and of other datagram protocols, through
//!   [`PacketBuf::mangle_ip_payload`] with your own checksum);
//! - length changes of TCP segments only on connections whose both ends you control, or when
//!   you track the accumulated offset per connection and rewrite the sequence and
//!   acknowledgement numbers of every later segment in both directions yourself.

mod buf;
mod rewrite;
mod view;

pub use buf::{PacketBuf, DEFAULT_TAILROOM};
pub use view::{IpHeader, IpPacket, Ipv4Header, Ipv6Header, TcpFlags, TcpSegment, UdpDatagram};

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// The IP version of a packet (the `family` libnetfilter_queue's `pktb_alloc` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`, ethertype `0x0800`).
    Ipv4,
    /// IPv6 (`AF_INET6`, ethertype `0x86dd`).
    Ipv6,
}

impl Family {
    /// The family for a link-layer protocol number ([`Packet::hw_protocol`](crate::Packet::hw_protocol)).
    pub fn from_ethertype(hw_protocol: u16) -> Option<Family> {
        match hw_protocol {
            0x0800 => Some(Family::Ipv4),
            0x86dd => Some(Family::Ipv6),
            _ => None,
        }
    }

    /// The family named by the version field (the high nibble of the first byte) of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Option<Family> {
        match bytes.first().map(|b| b >> 4) {
            Some(4) => Some(Family::Ipv4),
            Some(6) => Some(Family::Ipv6),
            _ => None,
        }
    }

    /// The IP version number: 4 or 6.
    pub fn version(self) -> u8 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        }
    }

    /// `AF_INET` or `AF_INET6`.
    pub fn af(self) -> i32 {
        match self {
            Family::Ipv4 => libc::AF_INET,
            Family::Ipv6 => libc::AF_INET6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IPv{}", self.version())
    }
}

/// Why a packet cannot be viewed or changed as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PktError {
    /// The bytes do not start with an IPv4 or IPv6 header (`None`: there are no bytes).
    #[error("not an IP packet (version field {version:?})")]
    NotIp {
        /// The version field found, if any.
        version: Option<u8>,
    },

    /// The packet's version differs from the family its buffer was created with.
    #[error("the buffer was created for {buffer} but holds an {packet} packet")]
    WrongFamily {
        /// The family given when the buffer was created.
        buffer: Family,
        /// The family of the bytes it now holds.
        packet: Family,
    },

    /// A header does not fit in the bytes present.
    #[error("{what} needs {need} bytes, only {have} present")]
    TooShort {
        /// The header.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes present.
        have: usize,
    },

    /// A header field contradicts the packet's structure.
    #[error("malformed packet: {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },

    /// The copy holds less than the packet (copy range shorter than the packet): views work
    /// on what is present, checksums and rewrites are refused.
    #[error("truncated copy: {have} of {declared} bytes")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// The packet's length.
        declared: usize,
    },

    /// The packet is a fragment: its transport checksum covers bytes it does not hold.
    #[error("the packet is a fragment")]
    Fragment,

    /// The packet carries another transport protocol than TCP or UDP (`None`: unknown).
    #[error("not a TCP or UDP packet (protocol {protocol:?})")]
    NotTcpUdp {
        /// The protocol found.
        protocol: Option<u8>,
    },

    /// A byte range outside the region it applies to.
    #[error("range {start}..{end} outside the {len} bytes it applies to")]
    OutOfRange {
        /// Start of the range.
        start: usize,
        /// End of the range.
        end: usize,
        /// Length of the region.
        len: usize,
    },

    /// Growing the packet needs more tailroom than the buffer was allocated with.
    #[error("growing by {needed} bytes needs more than the {available} bytes of tailroom")]
    NoRoom {
        /// Bytes the packet would grow by.
        needed: usize,
        /// Tailroom left.
        available: usize,
    },

    /// The packet would exceed [`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN), the largest
    /// replacement payload the kernel accepts.
    #[error("a packet of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The length it would have.
        len: usize,
        /// The maximum.
        max: usize,
    },

    /// Valid, but not something this module can do soundly.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is unsupported.
        what: &'static str,
    },

    /// libnetfilter_queue could not allocate the buffer.
    #[error("pktb_alloc: out of memory")]
    Alloc,
}
