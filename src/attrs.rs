//! Packet attributes by the kernel's numbering: the `NFQA_*` numbers of the kernel's uapi header
//! (`<linux/netfilter/nfnetlink_queue.h>`), the parsed attribute table of one packet message,
//! and the typed values of the newer attributes (VLAN, address family).
//!
//! nfq-sys is generated from libnetfilter_queue's own, older copy of that header, which stops at
//! `NFQA_SECCTX` (18). The numbers here follow the kernel's header instead (a test checks them
//! against the installed `linux-libc-dev` copy), and attributes beyond them stay reachable by
//! number: the table is a fast path, the message's attribute region is kept for the rest.

use std::fmt;
use std::mem::size_of;

use nfq_sys as sys;

/// `NFQA_*` attribute numbers of packet messages, as the kernel's uapi header
/// `<linux/netfilter/nfnetlink_queue.h>` defines them (including the ones newer than
/// libnetfilter_queue's copy in [`sys`](crate::sys)). For [`Packet::raw_attr`](crate::Packet::raw_attr).
pub mod nfqa {
    /// `NFQA_UNSPEC`.
    pub const UNSPEC: u16 = 0;
    /// `NFQA_PACKET_HDR`: id, hw protocol, hook.
    pub const PACKET_HDR: u16 = 1;
    /// `NFQA_VERDICT_HDR` (verdict messages only).
    pub const VERDICT_HDR: u16 = 2;
    /// `NFQA_MARK`: `skb->mark`.
    pub const MARK: u16 = 3;
    /// `NFQA_TIMESTAMP`.
    pub const TIMESTAMP: u16 = 4;
    /// `NFQA_IFINDEX_INDEV`.
    pub const IFINDEX_INDEV: u16 = 5;
    /// `NFQA_IFINDEX_OUTDEV`.
    pub const IFINDEX_OUTDEV: u16 = 6;
    /// `NFQA_IFINDEX_PHYSINDEV`.
    pub const IFINDEX_PHYSINDEV: u16 = 7;
    /// `NFQA_IFINDEX_PHYSOUTDEV`.
    pub const IFINDEX_PHYSOUTDEV: u16 = 8;
    /// `NFQA_HWADDR`.
    pub const HWADDR: u16 = 9;
    /// `NFQA_PAYLOAD`.
    pub const PAYLOAD: u16 = 10;
    /// `NFQA_CT`: nested `CTA_*` conntrack attributes.
    pub const CT: u16 = 11;
    /// `NFQA_CT_INFO`: `enum ip_conntrack_info`.
    pub const CT_INFO: u16 = 12;
    /// `NFQA_CAP_LEN`: the packet's length when the copy was truncated.
    pub const CAP_LEN: u16 = 13;
    /// `NFQA_SKB_INFO`: `NFQA_SKB_*` flags.
    pub const SKB_INFO: u16 = 14;
    /// `NFQA_EXP`: nested conntrack expectation attributes.
    pub const EXP: u16 = 15;
    /// `NFQA_UID`.
    pub const UID: u16 = 16;
    /// `NFQA_GID`.
    pub const GID: u16 = 17;
    /// `NFQA_SECCTX`: the security context string.
    pub const SECCTX: u16 = 18;
    /// `NFQA_VLAN`: nested [`VLAN_PROTO`] and [`VLAN_TCI`].
    pub const VLAN: u16 = 19;
    /// `NFQA_L2HDR`: the full layer-2 header (bridge family).
    pub const L2HDR: u16 = 20;
    /// `NFQA_PRIORITY`: `skb->priority`.
    pub const PRIORITY: u16 = 21;
    /// `NFQA_MAX`: the highest number of the header this crate was written against.
    pub const MAX: u16 = PRIORITY;

    /// `NFQA_VLAN_PROTO`, nested in [`VLAN`]: the VLAN protocol (`__be16`).
    pub const VLAN_PROTO: u16 = 1;
    /// `NFQA_VLAN_TCI`, nested in [`VLAN`]: the tag control information (`__be16`).
    pub const VLAN_TCI: u16 = 2;
}

/// Slots of the attribute table: every number up to [`nfqa::MAX`].
pub(crate) const TABLE_LEN: usize = nfqa::MAX as usize + 1;

/// Length of `struct nlattr`.
pub(crate) const NLA_HDRLEN: usize = size_of::<libc::nlattr>();
/// `NLA_TYPE_MASK`: an attribute type without the nested / byte-order flags.
pub(crate) const NLA_TYPE_MASK: u16 =
    !(libc::NLA_F_NESTED as u16 | libc::NLA_F_NET_BYTEORDER as u16);

pub(crate) const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// The smallest payload an attribute of this type must have to be used by the typed accessors;
/// shorter ones are left out of the table (as `nfq_nlmsg_parse` would reject them) but stay
/// reachable through [`Attrs::raw`].
fn min_len(kind: u16) -> usize {
    match kind {
        nfqa::PACKET_HDR => size_of::<sys::nfqnl_msg_packet_hdr>(),
        nfqa::TIMESTAMP => size_of::<sys::nfqnl_msg_packet_timestamp>(),
        nfqa::HWADDR => size_of::<sys::nfqnl_msg_packet_hw>(),
        nfqa::MARK
        | nfqa::IFINDEX_INDEV
        | nfqa::IFINDEX_OUTDEV
        | nfqa::IFINDEX_PHYSINDEV
        | nfqa::IFINDEX_PHYSOUTDEV
        | nfqa::CAP_LEN
        | nfqa::SKB_INFO
        | nfqa::UID
        | nfqa::GID
        | nfqa::CT_INFO
        | nfqa::PRIORITY => 4,
        // PAYLOAD, CT, EXP, SECCTX, VLAN (nested), L2HDR: any length.
        _ => 0,
    }
}

/// One attribute of a region: its type (flags masked off), its bytes from the header to the
/// end of the payload (unpadded), and its payload.
#[derive(Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) whole: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// Walks the attributes of a region (netlink attributes, 4-byte aligned one after the other).
/// A length shorter than the header or past the region ends the walk: nothing after it can be
/// trusted. The kernel may omit the padding after the last attribute.
#[derive(Clone)]
pub(crate) struct AttrIter<'a> {
    region: &'a [u8],
    at: usize,
}

pub(crate) fn walk(region: &[u8]) -> AttrIter<'_> {
    AttrIter { region, at: 0 }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let at = self.at;
        let header = self.region.get(at..at + NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let whole = match self.region.get(at..at + len) {
            Some(whole) if len >= NLA_HDRLEN => whole,
            _ => {
                self.at = self.region.len();
                return None;
            }
        };
        self.at = (at + align4(len)).min(self.region.len());
        Some(Attr {
            kind,
            whole,
            payload: &whole[NLA_HDRLEN..],
        })
    }
}

/// The attributes of one packet message: a table of the known ones (checked against their
/// type's minimum length) plus the whole attribute region, so that any attribute, known or not,
/// can still be found by number. Also the message's address family (`nfgen_family`).
///
/// The table holds offsets into the region rather than slices, which keeps the value small
/// (about 130 bytes instead of about 400): it is moved a few times per packet on the dispatch
/// path, from the parser into the [`Packet`](crate::Packet) a callback sees.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a> {
    family: u8,
    /// Per known type: where its attribute (header included) starts in `region`, plus one;
    /// 0 when absent. The payload attribute is kept in `payload` instead.
    at: [u32; TABLE_LEN],
    /// `NFQA_PAYLOAD`, as a slice: an owned packet's payload lives outside its region.
    payload: Option<&'a [u8]>,
    region: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Parses an attribute region. When a type appears twice, the last one wins (as with
    /// `mnl_attr_parse`).
    pub(crate) fn parse(family: u8, region: &'a [u8]) -> Attrs<'a> {
        let mut at = [0u32; TABLE_LEN];
        let mut payload = None;
        let base = region.as_ptr() as usize;
        for attr in walk(region) {
            if let Some(slot) = at.get_mut(usize::from(attr.kind)) {
                if attr.kind == nfqa::PAYLOAD {
                    payload = Some(attr.payload);
                } else if attr.kind != nfqa::UNSPEC && attr.payload.len() >= min_len(attr.kind) {
                    // `whole` lies inside `region` (the walk only hands out its sub-slices),
                    // which is far shorter than 4 GiB (one datagram).
                    *slot = (attr.whole.as_ptr() as usize - base + 1) as u32;
                }
            }
        }
        Attrs {
            family,
            at,
            payload,
            region,
        }
    }

    /// The attribute of a known type, if present and long enough for its type.
    #[inline]
    pub(crate) fn get(&self, kind: u16) -> Option<&'a [u8]> {
        if kind == nfqa::PAYLOAD {
            return self.payload;
        }
        let start = (*self.at.get(usize::from(kind))? as usize).checked_sub(1)?;
        let header = self.region.get(start..start + NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        self.region.get(start + NLA_HDRLEN..start + len)
    }

    /// Any attribute by number, as sent: from the table, else found in the region (numbers
    /// beyond the table, or attributes too short for their type).
    pub(crate) fn raw(&self, kind: u16) -> Option<&'a [u8]> {
        self.get(kind).or_else(|| {
            walk(self.region)
                .filter(|a| a.kind == kind)
                .last()
                .map(|a| a.payload)
        })
    }

    /// Replaces the payload (an owned packet's payload lives outside its region).
    pub(crate) fn set_payload(&mut self, value: Option<&'a [u8]>) {
        self.payload = value;
    }

    pub(crate) fn family(&self) -> u8 {
        self.family
    }

    /// The attribute region the table was parsed from.
    #[cfg(test)]
    pub(crate) fn region(&self) -> &'a [u8] {
        self.region
    }

    /// Every attribute of the region, in order.
    pub(crate) fn iter(&self) -> AttrIter<'a> {
        walk(self.region)
    }
}

/// The address family of a queued packet's message (`nfgen_family`: the netfilter protocol
/// family whose hook queued it). Tells packets queued by bridge-family rules (ebtables, nft
/// `bridge` tables) from IPv4 and IPv6 ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[doc(alias = "nfgen_family")]
pub enum Family {
    /// `NFPROTO_IPV4` (`AF_INET`, 2).
    Ipv4,
    /// `NFPROTO_IPV6` (`AF_INET6`, 10).
    Ipv6,
    /// `NFPROTO_BRIDGE` (`AF_BRIDGE`, 7).
    Bridge,
    /// Any other family number.
    Other(u8),
}

impl Family {
    /// The family for a raw `nfgen_family` number.
    pub fn from_raw(raw: u8) -> Family {
        match i32::from(raw) {
            libc::NFPROTO_IPV4 => Family::Ipv4,
            libc::NFPROTO_IPV6 => Family::Ipv6,
            libc::NFPROTO_BRIDGE => Family::Bridge,
            _ => Family::Other(raw),
        }
    }

    /// The raw `nfgen_family` number.
    pub fn raw(self) -> u8 {
        match self {
            Family::Ipv4 => libc::NFPROTO_IPV4 as u8,
            Family::Ipv6 => libc::NFPROTO_IPV6 as u8,
            Family::Bridge => libc::NFPROTO_BRIDGE as u8,
            Family::Other(raw) => raw,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::Ipv4 => f.write_str("ipv4"),
            Family::Ipv6 => f.write_str("ipv6"),
            Family::Bridge => f.write_str("bridge"),
            Family::Other(raw) => write!(f, "family {raw}"),
        }
    }
}

/// A packet's VLAN tag (`NFQA_VLAN`): sent when the kernel holds the tag outside the packet
/// data (hardware-accelerated or bridge-handled VLANs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "NFQA_VLAN")]
pub struct Vlan {
    protocol: u16,
    tci: u16,
}

impl Vlan {
    /// A tag from its protocol and TCI (host byte order).
    pub fn new(protocol: u16, tci: u16) -> Vlan {
        Vlan { protocol, tci }
    }

    /// Parses the nested attribute: both `NFQA_VLAN_PROTO` and `NFQA_VLAN_TCI` must be there.
    pub(crate) fn parse(nested: &[u8]) -> Option<Vlan> {
        let (mut protocol, mut tci) = (None, None);
        for attr in walk(nested) {
            let value = attr
                .payload
                .get(..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            match attr.kind {
                nfqa::VLAN_PROTO => protocol = value.or(protocol),
                nfqa::VLAN_TCI => tci = value.or(tci),
                _ => {}
            }
        }
        Some(Vlan {
            protocol: protocol?,
            tci: tci?,
        })
    }

    /// The tag protocol identifier (host byte order): `0x8100` (802.1Q) or `0x88a8` (802.1ad).
    #[doc(alias = "NFQA_VLAN_PROTO")]
    pub fn protocol(&self) -> u16 {
        self.protocol
    }

    /// The whole tag control information (host byte order).
    #[doc(alias = "NFQA_VLAN_TCI")]
    pub fn tci(&self) -> u16 {
        self.tci
    }

    /// The VLAN id (VID): the TCI's low 12 bits.
    pub fn id(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// The priority code point (PCP, 802.1p): the TCI's top 3 bits.
    pub fn priority(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// The drop eligible indicator (DEI, formerly CFI): bit 12 of the TCI.
    pub fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers libnetfilter_queue's header has agree with ours.
    #[test]
    fn agrees_with_the_bindings() {
        let pairs = [
            (nfqa::PACKET_HDR, sys::NFQA_PACKET_HDR),
            (nfqa::VERDICT_HDR, sys::NFQA_VERDICT_HDR),
            (nfqa::MARK, sys::NFQA_MARK),
            (nfqa::TIMESTAMP, sys::NFQA_TIMESTAMP),
            (nfqa::IFINDEX_INDEV, sys::NFQA_IFINDEX_INDEV),
            (nfqa::IFINDEX_OUTDEV, sys::NFQA_IFINDEX_OUTDEV),
            (nfqa::IFINDEX_PHYSINDEV, sys::NFQA_IFINDEX_PHYSINDEV),
            (nfqa::IFINDEX_PHYSOUTDEV, sys::NFQA_IFINDEX_PHYSOUTDEV),
            (nfqa::HWADDR, sys::NFQA_HWADDR),
            (nfqa::PAYLOAD, sys::NFQA_PAYLOAD),
            (nfqa::CT, sys::NFQA_CT),
            (nfqa::CT_INFO, sys::NFQA_CT_INFO),
            (nfqa::CAP_LEN, sys::NFQA_CAP_LEN),
            (nfqa::SKB_INFO, sys::NFQA_SKB_INFO),
            (nfqa::EXP, sys::NFQA_EXP),
            (nfqa::UID, sys::NFQA_UID),
            (nfqa::GID, sys::NFQA_GID),
            (nfqa::SECCTX, sys::NFQA_SECCTX),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(u32::from(ours), theirs);
        }
    }

    #[test]
    fn vlan_bits() {
        let v = Vlan::new(0x8100, 0b1011_0000_0010_1010);
        assert_eq!((v.id(), v.priority(), v.dei()), (42, 5, true));
        let v = Vlan::new(0x88a8, 0x0fff);
        assert_eq!((v.id(), v.priority(), v.dei()), (4095, 0, false));
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
        out
    }

    #[test]
    fn raw_reaches_every_number() {
        let mut region = attr(nfqa::MARK, &7u32.to_be_bytes());
        region.extend(attr(nfqa::PRIORITY, &[0, 0])); // too short for its type
        region.extend(attr(40, b"future"));
        region.extend(attr(0x3fff | libc::NLA_F_NESTED as u16, b"x"));
        let attrs = Attrs::parse(2, &region);
        assert_eq!(attrs.get(nfqa::MARK), Some(&7u32.to_be_bytes()[..]));
        assert_eq!(attrs.get(nfqa::PRIORITY), None);
        assert_eq!(attrs.raw(nfqa::PRIORITY), Some(&[0u8, 0][..]));
        assert_eq!(attrs.raw(40), Some(&b"future"[..]));
        assert_eq!(attrs.raw(0x3fff), Some(&b"x"[..]));
        assert_eq!(attrs.raw(41), None);
    }
}
