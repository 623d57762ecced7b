//! Conntrack decoded: typed, zero-copy views of the `NFQA_CT` and `NFQA_CT_INFO` attributes.
//!
//! A queue bound with [`QueueFlags::CONNTRACK`](crate::QueueFlags::CONNTRACK) receives, with
//! each packet that has a connection-tracking entry, that entry as the kernel's ctnetlink writes
//! it (`NFQA_CT`: nested `CTA_*` attributes) and the packet's state in it (`NFQA_CT_INFO`).
//! [`Conntrack::parse`] turns the `NFQA_CT` payload into a [`Conntrack`] view: the original and
//! reply [`Tuple`]s (addresses, layer-4 protocol, ports or ICMP/ICMPv6 id, type and code), the
//! [`Status`] bits, mark, id, zone, timeout, use count, [`Labels`], security mark and context,
//! helper name, TCP state ([`TcpInfo`]), [`Counters`] and timestamps, where present;
//! [`CtInfo::from_raw`] (or [`CtInfo::parse`] on the attribute's bytes) decodes `NFQA_CT_INFO`.
//!
//! Nothing is copied: the view borrows the attribute bytes and decodes a value when it is asked
//! for. Decoding never panics and never reads outside the given bytes, whatever they hold:
//!
//! - attribute types are read without the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` flags;
//! - the walk over a list of attributes stops at the first header that is shorter than 4
//!   bytes or longer than what remains (the rest is ignored), and the padding after the last
//!   attribute may be missing;
//! - unknown attribute types are skipped (they stay reachable with [`Conntrack::attr`] and
//!   [`Conntrack::attrs`]); when a type appears more than once, the last one counts (as in the
//!   kernel's and libnetfilter_conntrack's parsers);
//! - numbers are big-endian, as ctnetlink writes them; a value whose length is not exactly that
//!   of its type (4 bytes for a `u32`, 16 for an IPv6 address, ...) reads as absent (`None`).
//!
//! The numbers of `<linux/netfilter/nfnetlink_conntrack.h>` are in [`uapi`] (a test checks
//! them against the installed header). The decoding is checked against libnetfilter_conntrack's
//! own parser (`nfct_payload_parse`) on byte layouts written as the kernel's
//! `ctnetlink_glue_build` writes them, and on mutations of them (the `ct-oracle` crate of this
//! repository).
//!
//! # Example
//!
//! ```
//! use std::net::Ipv4Addr;
//! use libnfq::conntrack::{uapi::*, Conntrack, CtInfo, Status};
//!
//! // One netlink attribute: length and type in host order, then the payload, padded to 4.
//! fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
//!     let mut out = Vec::new();
//!     out.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
//!     out.extend_from_slice(&ty.to_ne_bytes());
//!     out.extend_from_slice(payload);
//!     out.resize(out.len().next_multiple_of(4), 0);
//!     out
//! }
//! fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
//!     attr(ty | NLA_F_NESTED, &parts.concat())
//! }
//!
//! // A UDP flow 10.0.0.1:5000 -> 10.0.0.2:53, laid out as ctnetlink writes it.
//! let tuple = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ty: u16| {
//!     nest(ty, &[
//!         nest(CTA_TUPLE_IP, &[attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)]),
//!         nest(CTA_TUPLE_PROTO, &[
//!             attr(CTA_PROTO_NUM, &[17]),
//!             attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
//!             attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
//!         ]),
//!     ])
//! };
//! let bytes = [
//!     tuple([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53, CTA_TUPLE_ORIG),
//!     tuple([10, 0, 0, 2], [10, 0, 0, 1], 53, 5000, CTA_TUPLE_REPLY),
//!     attr(CTA_ID, &0x1234_5678u32.to_be_bytes()),
//!     attr(CTA_STATUS, &0x18u32.to_be_bytes()), // CONFIRMED | SRC_NAT
//!     attr(CTA_TIMEOUT, &30u32.to_be_bytes()),
//!     attr(CTA_MARK, &7u32.to_be_bytes()),
//! ]
//! .concat();
//!
//! let ct = Conntrack::parse(&bytes);
//! let orig = ct.orig().unwrap();
//! assert_eq!(orig.src(), Some(Ipv4Addr::new(10, 0, 0, 1).into()));
//! assert_eq!(orig.protocol(), Some(17));
//! assert_eq!((orig.src_port(), orig.dst_port()), (Some(5000), Some(53)));
//! assert_eq!(ct.reply().unwrap().src_port(), Some(53));
//! assert_eq!(ct.status(), Some(Status::CONFIRMED | Status::SRC_NAT));
//! assert_eq!((ct.id(), ct.timeout(), ct.mark()), (Some(0x1234_5678), Some(30), Some(7)));
//! assert_eq!(ct.zone(), None); // the default zone is not sent
//!
//! // NFQA_CT_INFO: a big-endian u32.
//! assert_eq!(CtInfo::parse(&3u32.to_be_bytes()), Some(CtInfo::EstablishedReply));
//! assert!(CtInfo::EstablishedReply.is_reply());
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The attribute numbers of `<linux/netfilter/nfnetlink_conntrack.h>` (and the netlink flags)
/// that this module reads, under their C names.
#[allow(missing_docs)]
pub mod uapi {
    /// `NLA_F_NESTED`: set in the type of a nested attribute (masked off when reading).
    pub const NLA_F_NESTED: u16 = 1 << 15;
    /// `NLA_F_NET_BYTEORDER` (masked off when reading).
    pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
    /// `NLA_TYPE_MASK`: an attribute type without its flags.
    pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

    // enum ctattr_type
    pub const CTA_UNSPEC: u16 = 0;
    pub const CTA_TUPLE_ORIG: u16 = 1;
    pub const CTA_TUPLE_REPLY: u16 = 2;
    pub const CTA_STATUS: u16 = 3;
    pub const CTA_PROTOINFO: u16 = 4;
    pub const CTA_HELP: u16 = 5;
    pub const CTA_NAT_SRC: u16 = 6;
    pub const CTA_TIMEOUT: u16 = 7;
    pub const CTA_MARK: u16 = 8;
    pub const CTA_COUNTERS_ORIG: u16 = 9;
    pub const CTA_COUNTERS_REPLY: u16 = 10;
    pub const CTA_USE: u16 = 11;
    pub const CTA_ID: u16 = 12;
    pub const CTA_NAT_DST: u16 = 13;
    pub const CTA_TUPLE_MASTER: u16 = 14;
    pub const CTA_SEQ_ADJ_ORIG: u16 = 15;
    pub const CTA_SEQ_ADJ_REPLY: u16 = 16;
    pub const CTA_SECMARK: u16 = 17;
    pub const CTA_ZONE: u16 = 18;
    pub const CTA_SECCTX: u16 = 19;
    pub const CTA_TIMESTAMP: u16 = 20;
    pub const CTA_MARK_MASK: u16 = 21;
    pub const CTA_LABELS: u16 = 22;
    pub const CTA_LABELS_MASK: u16 = 23;
    pub const CTA_SYNPROXY: u16 = 24;
    pub const CTA_FILTER: u16 = 25;
    pub const CTA_STATUS_MASK: u16 = 26;
    /// `CTA_MAX` of the header this module was written against.
    pub const CTA_MAX: u16 = 26;

    // enum ctattr_tuple
    pub const CTA_TUPLE_IP: u16 = 1;
    pub const CTA_TUPLE_PROTO: u16 = 2;
    pub const CTA_TUPLE_ZONE: u16 = 3;

    // enum ctattr_ip
    pub const CTA_IP_V4_SRC: u16 = 1;
    pub const CTA_IP_V4_DST: u16 = 2;
    pub const CTA_IP_V6_SRC: u16 = 3;
    pub const CTA_IP_V6_DST: u16 = 4;

    // enum ctattr_l4proto
    pub const CTA_PROTO_NUM: u16 = 1;
    pub const CTA_PROTO_SRC_PORT: u16 = 2;
    pub const CTA_PROTO_DST_PORT: u16 = 3;
    pub const CTA_PROTO_ICMP_ID: u16 = 4;
    pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
    pub const CTA_PROTO_ICMP_CODE: u16 = 6;
    pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
    pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
    pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

    // enum ctattr_protoinfo
    pub const CTA_PROTOINFO_TCP: u16 = 1;
    pub const CTA_PROTOINFO_DCCP: u16 = 2;
    pub const CTA_PROTOINFO_SCTP: u16 = 3;

    // enum ctattr_protoinfo_tcp
    pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;
    pub const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: u16 = 2;
    pub const CTA_PROTOINFO_TCP_WSCALE_REPLY: u16 = 3;
    pub const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
    pub const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;

    // enum ctattr_counters
    pub const CTA_COUNTERS_PACKETS: u16 = 1;
    pub const CTA_COUNTERS_BYTES: u16 = 2;
    pub const CTA_COUNTERS32_PACKETS: u16 = 3;
    pub const CTA_COUNTERS32_BYTES: u16 = 4;
    pub const CTA_COUNTERS_PAD: u16 = 5;

    // enum ctattr_tstamp
    pub const CTA_TIMESTAMP_START: u16 = 1;
    pub const CTA_TIMESTAMP_STOP: u16 = 2;
    pub const CTA_TIMESTAMP_PAD: u16 = 3;

    // enum ctattr_seqadj
    pub const CTA_SEQADJ_CORRECTION_POS: u16 = 1;
    pub const CTA_SEQADJ_OFFSET_BEFORE: u16 = 2;
    pub const CTA_SEQADJ_OFFSET_AFTER: u16 = 3;

    // enum ctattr_synproxy
    pub const CTA_SYNPROXY_ISN: u16 = 1;
    pub const CTA_SYNPROXY_ITS: u16 = 2;
    pub const CTA_SYNPROXY_TSOFF: u16 = 3;

    // enum ctattr_help
    pub const CTA_HELP_NAME: u16 = 1;
    pub const CTA_HELP_INFO: u16 = 2;

    // enum ctattr_secctx
    pub const CTA_SECCTX_NAME: u16 = 1;

    // enum ip_conntrack_info (<linux/netfilter/nf_conntrack_common.h>)
    pub const IP_CT_ESTABLISHED: u32 = 0;
    pub const IP_CT_RELATED: u32 = 1;
    pub const IP_CT_NEW: u32 = 2;
    pub const IP_CT_IS_REPLY: u32 = 3;
    pub const IP_CT_ESTABLISHED_REPLY: u32 = 3;
    pub const IP_CT_RELATED_REPLY: u32 = 4;
    pub const IP_CT_NUMBER: u32 = 5;
    pub const IP_CT_NEW_REPLY: u32 = 5;
    /// Kernel-internal (not in the uapi header): a packet conntrack does not track.
    pub const IP_CT_UNTRACKED: u32 = 7;
}

use uapi::*;

/// The attributes of a list of netlink attributes, in order: `(type, payload)`, the type
/// without its flags.
///
/// The walk stops at the first header shorter than 4 bytes or longer than what remains; the
/// padding after an attribute may be missing. Every payload lies inside the walked bytes.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Walks `bytes` as a list of netlink attributes (the payload of a nested attribute).
    pub fn new(bytes: &'a [u8]) -> Self {
        Attrs { rest: bytes }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        let (Some(&[l0, l1]), Some(&[t0, t1])) = (rest.get(0..2), rest.get(2..4)) else {
            self.rest = &[];
            return None;
        };
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let ty = u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK;
        let Some(payload) = rest.get(4..len) else {
            // Shorter than a header, or longer than what remains.
            self.rest = &[];
            return None;
        };
        let next = (len + 3) & !3;
        self.rest = rest.get(next..).unwrap_or(&[]);
        Some((ty, payload))
    }
}

/// The payload of the last attribute of type `ty` in `nest`.
fn find(nest: &[u8], ty: u16) -> Option<&[u8]> {
    Attrs::new(nest)
        .filter(|&(t, _)| t == ty)
        .last()
        .map(|(_, payload)| payload)
}

fn be_u8(bytes: &[u8]) -> Option<u8> {
    match *bytes {
        [b] => Some(b),
        _ => None,
    }
}

fn be_u16(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A string attribute: its bytes up to the first NUL (all of them when there is none).
fn c_str(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(nul) => &bytes[..nul],
        None => bytes,
    }
}

/// How many top-level attribute types [`Conntrack`] indexes (`CTA_UNSPEC` ..= `CTA_MAX`).
const TABLE_LEN: usize = CTA_MAX as usize + 1;

/// A decoded view of an `NFQA_CT` attribute: a conntrack entry as ctnetlink writes it.
///
/// Built by [`Conntrack::parse`] from the attribute's payload; each accessor decodes its value
/// when called and returns `None` when the attribute is absent or malformed. See the
/// [module documentation](self) for the rules and an example.
#[derive(Clone, Copy)]
pub struct Conntrack<'a> {
    bytes: &'a [u8],
    table: [Option<&'a [u8]>; TABLE_LEN],
}

impl<'a> Conntrack<'a> {
    /// Views the payload of an `NFQA_CT` attribute (the `CTA_*` attributes inside it).
    ///
    /// Never fails: malformed parts read as absent (see the [module documentation](self)).
    pub fn parse(bytes: &'a [u8]) -> Conntrack<'a> {
        let mut table = [None; TABLE_LEN];
        for (ty, payload) in Attrs::new(bytes) {
            if let Some(slot) = table.get_mut(usize::from(ty)) {
                *slot = Some(payload);
            }
        }
        Conntrack { bytes, table }
    }

    /// The bytes this view was made from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Every top-level attribute, in order, including those this module does not decode.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.bytes)
    }

    /// The payload of the top-level attribute of type `cta` (a `CTA_*` number, any value; the
    /// last one when it appears more than once).
    pub fn attr(&self, cta: u16) -> Option<&'a [u8]> {
        match self.table.get(usize::from(cta)) {
            Some(slot) => *slot,
            None => find(self.bytes, cta),
        }
    }

    fn get(&self, cta: u16) -> Option<&'a [u8]> {
        self.table[usize::from(cta)]
    }

    /// The tuple of the original direction (`CTA_TUPLE_ORIG`).
    #[doc(alias = "CTA_TUPLE_ORIG")]
    pub fn orig(&self) -> Option<Tuple<'a>> {
        self.get(CTA_TUPLE_ORIG).map(Tuple::new)
    }

    /// The tuple of the reply direction (`CTA_TUPLE_REPLY`).
    #[doc(alias = "CTA_TUPLE_REPLY")]
    pub fn reply(&self) -> Option<Tuple<'a>> {
        self.get(CTA_TUPLE_REPLY).map(Tuple::new)
    }

    /// For an expected connection, the original tuple of its master (`CTA_TUPLE_MASTER`).
    #[doc(alias = "CTA_TUPLE_MASTER")]
    pub fn master(&self) -> Option<Tuple<'a>> {
        self.get(CTA_TUPLE_MASTER).map(Tuple::new)
    }

    /// The status bits (`CTA_STATUS`); bits without a name are kept.
    #[doc(alias = "CTA_STATUS")]
    pub fn status(&self) -> Option<Status> {
        self.get(CTA_STATUS)
            .and_then(be_u32)
            .map(Status::from_bits_retain)
    }

    /// The connection mark (`CTA_MARK`). The kernel sends it only when it is not 0.
    #[doc(alias = "CTA_MARK")]
    pub fn mark(&self) -> Option<u32> {
        self.get(CTA_MARK).and_then(be_u32)
    }

    /// The entry's id (`CTA_ID`).
    #[doc(alias = "CTA_ID")]
    pub fn id(&self) -> Option<u32> {
        self.get(CTA_ID).and_then(be_u32)
    }

    /// The conntrack zone (`CTA_ZONE`), sent only for a zone other than the default one that
    /// applies to both directions (see [`Tuple::zone`] for a zone of one direction).
    #[doc(alias = "CTA_ZONE")]
    pub fn zone(&self) -> Option<u16> {
        self.get(CTA_ZONE).and_then(be_u16)
    }

    /// Seconds until the entry expires (`CTA_TIMEOUT`).
    #[doc(alias = "CTA_TIMEOUT")]
    pub fn timeout(&self) -> Option<u32> {
        self.get(CTA_TIMEOUT).and_then(be_u32)
    }

    /// The entry's reference count (`CTA_USE`; ctnetlink's dumps have it, its `NFQA_CT` does
    /// not).
    #[doc(alias = "CTA_USE")]
    pub fn use_count(&self) -> Option<u32> {
        self.get(CTA_USE).and_then(be_u32)
    }

    /// The security mark as a number (`CTA_SECMARK`, obsolete: kernels send
    /// [`secctx`](Self::secctx) instead).
    #[doc(alias = "CTA_SECMARK")]
    pub fn secmark(&self) -> Option<u32> {
        self.get(CTA_SECMARK).and_then(be_u32)
    }

    /// The security context of the entry's security mark (`CTA_SECCTX` / `CTA_SECCTX_NAME`),
    /// without its terminating NUL.
    #[doc(alias = "CTA_SECCTX")]
    pub fn secctx(&self) -> Option<&'a [u8]> {
        let nest = self.get(CTA_SECCTX)?;
        find(nest, CTA_SECCTX_NAME).map(c_str)
    }

    /// The connection labels (`CTA_LABELS`).
    #[doc(alias = "CTA_LABELS")]
    pub fn labels(&self) -> Option<Labels<'a>> {
        self.get(CTA_LABELS).map(Labels)
    }

    /// The name of the helper attached to the connection (`CTA_HELP` / `CTA_HELP_NAME`, for
    /// instance `ftp`), without its terminating NUL.
    #[doc(alias = "CTA_HELP")]
    pub fn helper_name(&self) -> Option<&'a [u8]> {
        let nest = self.get(CTA_HELP)?;
        find(nest, CTA_HELP_NAME).map(c_str)
    }

    /// TCP state (`CTA_PROTOINFO` / `CTA_PROTOINFO_TCP`), for TCP connections.
    #[doc(alias = "CTA_PROTOINFO")]
    pub fn tcp(&self) -> Option<TcpInfo<'a>> {
        let nest = self.get(CTA_PROTOINFO)?;
        find(nest, CTA_PROTOINFO_TCP).map(|nest| TcpInfo { nest })
    }

    /// Packet and byte counters of the original direction (`CTA_COUNTERS_ORIG`, when
    /// accounting is on: `net.netfilter.nf_conntrack_acct`).
    #[doc(alias = "CTA_COUNTERS_ORIG")]
    pub fn counters_orig(&self) -> Option<Counters> {
        self.get(CTA_COUNTERS_ORIG).map(Counters::decode)
    }

    /// Packet and byte counters of the reply direction (`CTA_COUNTERS_REPLY`).
    #[doc(alias = "CTA_COUNTERS_REPLY")]
    pub fn counters_reply(&self) -> Option<Counters> {
        self.get(CTA_COUNTERS_REPLY).map(Counters::decode)
    }

    /// When the entry was created, in nanoseconds since the epoch (`CTA_TIMESTAMP` /
    /// `CTA_TIMESTAMP_START`, when `net.netfilter.nf_conntrack_timestamp` is on).
    #[doc(alias = "CTA_TIMESTAMP")]
    pub fn timestamp_start(&self) -> Option<u64> {
        find(self.get(CTA_TIMESTAMP)?, CTA_TIMESTAMP_START).and_then(be_u64)
    }

    /// When the entry was destroyed, in nanoseconds since the epoch (`CTA_TIMESTAMP_STOP`).
    pub fn timestamp_stop(&self) -> Option<u64> {
        find(self.get(CTA_TIMESTAMP)?, CTA_TIMESTAMP_STOP).and_then(be_u64)
    }
}

impl fmt::Debug for Conntrack<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conntrack")
            .field("orig", &self.orig())
            .field("reply", &self.reply())
            .field("status", &self.status())
            .field("mark", &self.mark())
            .field("id", &self.id())
            .field("zone", &self.zone())
            .field("timeout", &self.timeout())
            .field("labels", &self.labels())
            .finish_non_exhaustive()
    }
}

/// One direction of a connection (`CTA_TUPLE_*`): addresses, layer-4 protocol, and ports or
/// ICMP id, type and code.
#[derive(Clone, Copy)]
pub struct Tuple<'a> {
    ip: Option<&'a [u8]>,
    proto: Option<&'a [u8]>,
    zone: Option<&'a [u8]>,
}

impl<'a> Tuple<'a> {
    fn new(nest: &'a [u8]) -> Self {
        let mut tuple = Tuple {
            ip: None,
            proto: None,
            zone: None,
        };
        for (ty, payload) in Attrs::new(nest) {
            match ty {
                CTA_TUPLE_IP => tuple.ip = Some(payload),
                CTA_TUPLE_PROTO => tuple.proto = Some(payload),
                CTA_TUPLE_ZONE => tuple.zone = Some(payload),
                _ => {}
            }
        }
        tuple
    }

    fn ip_attr(&self, ty: u16) -> Option<&'a [u8]> {
        find(self.ip?, ty)
    }

    fn proto_attr(&self, ty: u16) -> Option<&'a [u8]> {
        find(self.proto?, ty)
    }

    fn addr(&self, v4: u16, v6: u16) -> Option<IpAddr> {
        if let Some(bytes) = self.ip_attr(v6) {
            if let Ok(octets) = <[u8; 16]>::try_from(bytes) {
                return Some(Ipv6Addr::from(octets).into());
            }
        }
        let octets = <[u8; 4]>::try_from(self.ip_attr(v4)?).ok()?;
        Some(Ipv4Addr::from(octets).into())
    }

    /// The source address (`CTA_IP_V4_SRC` or `CTA_IP_V6_SRC`; the IPv6 one if a malformed
    /// tuple has both).
    pub fn src(&self) -> Option<IpAddr> {
        self.addr(CTA_IP_V4_SRC, CTA_IP_V6_SRC)
    }

    /// The destination address (`CTA_IP_V4_DST` or `CTA_IP_V6_DST`).
    pub fn dst(&self) -> Option<IpAddr> {
        self.addr(CTA_IP_V4_DST, CTA_IP_V6_DST)
    }

    /// The layer-4 protocol number (`CTA_PROTO_NUM`: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    #[doc(alias = "CTA_PROTO_NUM")]
    pub fn protocol(&self) -> Option<u8> {
        self.proto_attr(CTA_PROTO_NUM).and_then(be_u8)
    }

    /// The source port (`CTA_PROTO_SRC_PORT`: TCP, UDP, UDP-Lite, SCTP, DCCP; the key for GRE).
    pub fn src_port(&self) -> Option<u16> {
        self.proto_attr(CTA_PROTO_SRC_PORT).and_then(be_u16)
    }

    /// The destination port (`CTA_PROTO_DST_PORT`).
    pub fn dst_port(&self) -> Option<u16> {
        self.proto_attr(CTA_PROTO_DST_PORT).and_then(be_u16)
    }

    /// The first of the attributes `v6` and `v4` that decodes.
    fn icmp_attr<T>(&self, v4: u16, v6: u16, decode: fn(&[u8]) -> Option<T>) -> Option<T> {
        self.proto_attr(v6)
            .and_then(decode)
            .or_else(|| self.proto_attr(v4).and_then(decode))
    }

    /// The ICMP or ICMPv6 identifier (`CTA_PROTO_ICMP_ID` or `CTA_PROTO_ICMPV6_ID`; the ICMPv6
    /// one if a malformed tuple has both).
    pub fn icmp_id(&self) -> Option<u16> {
        self.icmp_attr(CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID, be_u16)
    }

    /// The ICMP or ICMPv6 type (`CTA_PROTO_ICMP_TYPE` or `CTA_PROTO_ICMPV6_TYPE`).
    pub fn icmp_type(&self) -> Option<u8> {
        self.icmp_attr(CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_TYPE, be_u8)
    }

    /// The ICMP or ICMPv6 code (`CTA_PROTO_ICMP_CODE` or `CTA_PROTO_ICMPV6_CODE`).
    pub fn icmp_code(&self) -> Option<u8> {
        self.icmp_attr(CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMPV6_CODE, be_u8)
    }

    /// The zone of this direction (`CTA_TUPLE_ZONE`), sent when the entry's zone applies to
    /// one direction only.
    #[doc(alias = "CTA_TUPLE_ZONE")]
    pub fn zone(&self) -> Option<u16> {
        self.zone.and_then(be_u16)
    }

    /// The payload of `CTA_TUPLE_IP` (the address attributes), as received.
    pub fn ip_attrs(&self) -> Option<&'a [u8]> {
        self.ip
    }

    /// The payload of `CTA_TUPLE_PROTO` (the layer-4 attributes), as received.
    pub fn proto_attrs(&self) -> Option<&'a [u8]> {
        self.proto
    }
}

impl fmt::Debug for Tuple<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Tuple");
        s.field("src", &self.src())
            .field("dst", &self.dst())
            .field("protocol", &self.protocol());
        if self.icmp_type().is_some() {
            s.field("icmp_id", &self.icmp_id())
                .field("icmp_type", &self.icmp_type())
                .field("icmp_code", &self.icmp_code());
        } else {
            s.field("src_port", &self.src_port())
                .field("dst_port", &self.dst_port());
        }
        if let Some(zone) = self.zone() {
            s.field("zone", &zone);
        }
        s.finish()
    }
}

bitflags::bitflags! {
    /// The status bits of a conntrack entry (`enum ip_conntrack_status`, `CTA_STATUS`).
    /// Bits without a name here are kept ([`Status::bits`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Status: u32 {
        /// An expected connection (`IPS_EXPECTED`).
        const EXPECTED = 1 << 0;
        /// Packets were seen in both directions (`IPS_SEEN_REPLY`).
        const SEEN_REPLY = 1 << 1;
        /// Never early-expired (`IPS_ASSURED`).
        const ASSURED = 1 << 2;
        /// The originating packet left the box (`IPS_CONFIRMED`).
        const CONFIRMED = 1 << 3;
        /// Source NAT in the original direction (`IPS_SRC_NAT`).
        const SRC_NAT = 1 << 4;
        /// Destination NAT in the original direction (`IPS_DST_NAT`).
        const DST_NAT = 1 << 5;
        /// TCP sequence numbers are adjusted (`IPS_SEQ_ADJUST`).
        const SEQ_ADJUST = 1 << 6;
        /// Source NAT set up (`IPS_SRC_NAT_DONE`).
        const SRC_NAT_DONE = 1 << 7;
        /// Destination NAT set up (`IPS_DST_NAT_DONE`).
        const DST_NAT_DONE = 1 << 8;
        /// Being removed (`IPS_DYING`).
        const DYING = 1 << 9;
        /// Fixed timeout (`IPS_FIXED_TIMEOUT`).
        const FIXED_TIMEOUT = 1 << 10;
        /// A template (`IPS_TEMPLATE`).
        const TEMPLATE = 1 << 11;
        /// The obsolete fake untracked entry (`IPS_UNTRACKED`).
        const UNTRACKED = 1 << 12;
        /// A helper was attached explicitly (`IPS_HELPER`).
        const HELPER = 1 << 13;
        /// Offloaded to a flow table (`IPS_OFFLOAD`).
        const OFFLOAD = 1 << 14;
        /// Offloaded to hardware (`IPS_HW_OFFLOAD`).
        const HW_OFFLOAD = 1 << 15;
    }
}

/// The connection labels (`CTA_LABELS`): a bit set, numbered as `connlabel.conf` numbers them.
///
/// Label `n` is bit `n % 32` of the `n / 32`-th 32-bit word in host byte order (as the kernel
/// and libnetfilter_conntrack store them; on little-endian machines, bit `n % 8` of byte
/// `n / 8`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Labels<'a>(&'a [u8]);

impl<'a> Labels<'a> {
    /// The attribute's bytes, as received (the kernel sends 16: 128 labels).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether label `n` is set.
    pub fn contains(&self, n: u32) -> bool {
        let Ok(word) = usize::try_from(n / 32) else {
            return false;
        };
        let Some(start) = word.checked_mul(4) else {
            return false;
        };
        let Some(bytes) = self.0.get(start..) else {
            return false;
        };
        let mut four = [0u8; 4];
        for (dst, src) in four.iter_mut().zip(bytes) {
            *dst = *src;
        }
        u32::from_ne_bytes(four) & (1 << (n % 32)) != 0
    }

    /// The numbers of the labels that are set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let labels = *self;
        let bits = u32::try_from(self.0.len().div_ceil(4).saturating_mul(32)).unwrap_or(u32::MAX);
        (0..bits).filter(move |&n| labels.contains(n))
    }

    /// Whether no label is set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Debug for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// TCP state of a connection (`CTA_PROTOINFO_TCP`).
#[derive(Clone, Copy)]
pub struct TcpInfo<'a> {
    nest: &'a [u8],
}

/// TCP flags and their mask, as ctnetlink sends them (`struct nf_ct_tcp_flags`):
/// `IP_CT_TCP_FLAG_*` bits (window scale, SACK permitted, close init, be liberal, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// The flags.
    pub flags: u8,
    /// Which flags are meaningful.
    pub mask: u8,
}

impl TcpInfo<'_> {
    /// The state (`enum tcp_conntrack` of `<linux/netfilter/nf_conntrack_tcp.h>`:
    /// 1 SYN_SENT, 2 SYN_RECV, 3 ESTABLISHED, 4 FIN_WAIT, 5 CLOSE_WAIT, 6 LAST_ACK,
    /// 7 TIME_WAIT, 8 CLOSE, 9 SYN_SENT2).
    #[doc(alias = "CTA_PROTOINFO_TCP_STATE")]
    pub fn state(&self) -> Option<u8> {
        find(self.nest, CTA_PROTOINFO_TCP_STATE).and_then(be_u8)
    }

    /// The window scale of the original direction.
    pub fn wscale_orig(&self) -> Option<u8> {
        find(self.nest, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL).and_then(be_u8)
    }

    /// The window scale of the reply direction.
    pub fn wscale_reply(&self) -> Option<u8> {
        find(self.nest, CTA_PROTOINFO_TCP_WSCALE_REPLY).and_then(be_u8)
    }

    fn flags(&self, ty: u16) -> Option<TcpFlags> {
        match *find(self.nest, ty)? {
            [flags, mask] => Some(TcpFlags { flags, mask }),
            _ => None,
        }
    }

    /// The flags of the original direction.
    pub fn flags_orig(&self) -> Option<TcpFlags> {
        self.flags(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL)
    }

    /// The flags of the reply direction.
    pub fn flags_reply(&self) -> Option<TcpFlags> {
        self.flags(CTA_PROTOINFO_TCP_FLAGS_REPLY)
    }
}

impl fmt::Debug for TcpInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpInfo")
            .field("state", &self.state())
            .field("wscale_orig", &self.wscale_orig())
            .field("wscale_reply", &self.wscale_reply())
            .field("flags_orig", &self.flags_orig())
            .field("flags_reply", &self.flags_reply())
            .finish()
    }
}

/// Packet and byte counters of one direction (`CTA_COUNTERS_ORIG` / `CTA_COUNTERS_REPLY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Packets (`CTA_COUNTERS_PACKETS`, or the old 32-bit `CTA_COUNTERS32_PACKETS`).
    pub packets: Option<u64>,
    /// Bytes (`CTA_COUNTERS_BYTES`, or the old 32-bit `CTA_COUNTERS32_BYTES`).
    pub bytes: Option<u64>,
}

impl Counters {
    fn decode(nest: &[u8]) -> Counters {
        let value = |wide: u16, narrow: u16| {
            find(nest, wide)
                .and_then(be_u64)
                .or_else(|| find(nest, narrow).and_then(be_u32).map(u64::from))
        };
        Counters {
            packets: value(CTA_COUNTERS_PACKETS, CTA_COUNTERS32_PACKETS),
            bytes: value(CTA_COUNTERS_BYTES, CTA_COUNTERS32_BYTES),
        }
    }
}

/// A packet's state in its connection (`enum ip_conntrack_info`, the `NFQA_CT_INFO` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "ip_conntrack_info")]
pub enum CtInfo {
    /// Part of an established connection, original direction (`IP_CT_ESTABLISHED`, 0).
    Established,
    /// Related to an existing connection, or an ICMP error about one, original direction
    /// (`IP_CT_RELATED`, 1).
    Related,
    /// Starts a new connection (`IP_CT_NEW`, 2).
    New,
    /// Part of an established connection, reply direction (`IP_CT_ESTABLISHED_REPLY`, 3).
    EstablishedReply,
    /// Related, reply direction (`IP_CT_RELATED_REPLY`, 4).
    RelatedReply,
    /// `IP_CT_NEW_REPLY` (5, `IP_CT_NUMBER`): named by the uapi header for user space, never a
    /// state of a packet.
    NewReply,
    /// Not tracked (`IP_CT_UNTRACKED`, 7, kernel-internal; such a packet has no entry, so no
    /// `NFQA_CT`).
    Untracked,
    /// Any other value.
    Other(u32),
}

impl CtInfo {
    /// The state for a raw `enum ip_conntrack_info` value.
    pub const fn from_raw(raw: u32) -> CtInfo {
        match raw {
            IP_CT_ESTABLISHED => CtInfo::Established,
            IP_CT_RELATED => CtInfo::Related,
            IP_CT_NEW => CtInfo::New,
            IP_CT_ESTABLISHED_REPLY => CtInfo::EstablishedReply,
            IP_CT_RELATED_REPLY => CtInfo::RelatedReply,
            IP_CT_NEW_REPLY => CtInfo::NewReply,
            IP_CT_UNTRACKED => CtInfo::Untracked,
            other => CtInfo::Other(other),
        }
    }

    /// Decodes the payload of an `NFQA_CT_INFO` attribute (a big-endian `u32`); `None` when it
    /// is not 4 bytes long.
    pub fn parse(bytes: &[u8]) -> Option<CtInfo> {
        be_u32(bytes).map(CtInfo::from_raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        match self {
            CtInfo::Established => IP_CT_ESTABLISHED,
            CtInfo::Related => IP_CT_RELATED,
            CtInfo::New => IP_CT_NEW,
            CtInfo::EstablishedReply => IP_CT_ESTABLISHED_REPLY,
            CtInfo::RelatedReply => IP_CT_RELATED_REPLY,
            CtInfo::NewReply => IP_CT_NEW_REPLY,
            CtInfo::Untracked => IP_CT_UNTRACKED,
            CtInfo::Other(raw) => raw,
        }
    }

    /// Whether the packet travels in the reply direction (`EstablishedReply`, `RelatedReply`,
    /// `NewReply`).
    pub const fn is_reply(self) -> bool {
        matches!(
            self,
            CtInfo::EstablishedReply | CtInfo::RelatedReply | CtInfo::NewReply
        )
    }
}

impl From<u32> for CtInfo {
    fn from(raw: u32) -> Self {
        CtInfo::from_raw(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    #[test]
    fn ct_info_round_trips() {
        for raw in 0..10 {
            assert_eq!(CtInfo::from_raw(raw).raw(), raw);
        }
        assert_eq!(CtInfo::from_raw(6), CtInfo::Other(6));
        assert_eq!(CtInfo::parse(&[0, 0, 0, 2]), Some(CtInfo::New));
        assert_eq!(CtInfo::parse(&[0, 0, 2]), None);
        assert!(!CtInfo::New.is_reply() && CtInfo::RelatedReply.is_reply());
    }

    #[test]
    fn walk_stops_at_bad_headers_and_tolerates_missing_padding() {
        let mut bytes = attr(CTA_MARK, &9u32.to_be_bytes());
        bytes.extend_from_slice(&attr(CTA_ZONE, &3u16.to_be_bytes())[..6]); // no padding
        let ct = Conntrack::parse(&bytes);
        assert_eq!((ct.mark(), ct.zone()), (Some(9), Some(3)));

        // A header claiming more than remains ends the walk; what came before stays.
        let mut bad = attr(CTA_MARK, &9u32.to_be_bytes());
        bad.extend_from_slice(&[200, 0, 12, 0, 1, 2, 3, 4]);
        let ct = Conntrack::parse(&bad);
        assert_eq!((ct.mark(), ct.id()), (Some(9), None));
        assert_eq!(ct.attrs().count(), 1);

        // Length 0 or 1..3: no attribute.
        for len in 0u16..4 {
            let mut b = len.to_ne_bytes().to_vec();
            b.extend_from_slice(&CTA_MARK.to_ne_bytes());
            b.extend_from_slice(&[0; 8]);
            assert_eq!(Conntrack::parse(&b).attrs().count(), 0);
        }
    }

    #[test]
    fn flags_are_masked_last_duplicate_wins_wrong_sizes_are_absent() {
        let bytes = [
            attr(CTA_MARK | NLA_F_NET_BYTEORDER, &1u32.to_be_bytes()),
            attr(CTA_MARK, &2u32.to_be_bytes()),
            attr(CTA_ID, &[1, 2, 3]),
            attr(CTA_TIMEOUT, &[0, 0, 0, 0, 5]),
            attr(999, &[1]),
        ]
        .concat();
        let ct = Conntrack::parse(&bytes);
        assert_eq!(ct.mark(), Some(2));
        assert_eq!((ct.id(), ct.timeout()), (None, None));
        assert_eq!(ct.attr(999), Some(&[1u8][..]));
        assert_eq!(ct.attr(CTA_ID), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn labels_bits() {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&(1u32 << 3 | 1 << 31).to_ne_bytes());
        bytes[12..16].copy_from_slice(&(1u32 << 31).to_ne_bytes());
        let labels = Labels(&bytes);
        assert_eq!(labels.iter().collect::<Vec<_>>(), [3, 31, 127]);
        assert!(labels.contains(127) && !labels.contains(128) && !labels.contains(u32::MAX));
        let odd = Labels(&[0, 0, 0, 0, 0xff]);
        assert_eq!(odd.iter().count(), 8);
        assert!(Labels(&[]).is_empty());
    }
}
