//! `Packet<'a>`: a zero-copy view of one queued packet.

use std::fmt;
use std::time::{Duration, SystemTime};

use nfq_sys as sys;

use crate::attrs::{nfqa, Attrs, Family, Vlan};
use crate::netlink;

/// The netfilter hook a packet was queued from. Displayed as iptables names its chain
/// (`PREROUTING`, `INPUT`, `FORWARD`, `OUTPUT`, `POSTROUTING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `PREROUTING` (`NF_INET_PRE_ROUTING`, 0).
    #[doc(alias = "NF_INET_PRE_ROUTING")]
    PreRouting,
    /// `INPUT` (`NF_INET_LOCAL_IN`, 1).
    #[doc(alias = "NF_INET_LOCAL_IN")]
    LocalIn,
    /// `FORWARD` (`NF_INET_FORWARD`, 2).
    #[doc(alias = "NF_INET_FORWARD")]
    Forward,
    /// `OUTPUT` (`NF_INET_LOCAL_OUT`, 3).
    #[doc(alias = "NF_INET_LOCAL_OUT")]
    LocalOut,
    /// `POSTROUTING` (`NF_INET_POST_ROUTING`, 4).
    #[doc(alias = "NF_INET_POST_ROUTING")]
    PostRouting,
    /// A hook number outside the five inet hooks (other families).
    Other(u8),
}

impl Hook {
    /// The hook for a raw hook number.
    pub fn from_raw(raw: u8) -> Hook {
        match raw {
            0 => Hook::PreRouting,
            1 => Hook::LocalIn,
            2 => Hook::Forward,
            3 => Hook::LocalOut,
            4 => Hook::PostRouting,
            other => Hook::Other(other),
        }
    }

    /// The raw hook number.
    pub fn raw(self) -> u8 {
        match self {
            Hook::PreRouting => 0,
            Hook::LocalIn => 1,
            Hook::Forward => 2,
            Hook::LocalOut => 3,
            Hook::PostRouting => 4,
            Hook::Other(raw) => raw,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::PreRouting => f.write_str("PREROUTING"),
            Hook::LocalIn => f.write_str("INPUT"),
            Hook::Forward => f.write_str("FORWARD"),
            Hook::LocalOut => f.write_str("OUTPUT"),
            Hook::PostRouting => f.write_str("POSTROUTING"),
            Hook::Other(raw) => write!(f, "hook {raw}"),
        }
    }
}

bitflags::bitflags! {
    /// Flags of `NFQA_SKB_INFO`: how the kernel holds the packet.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SkbInfo: u32 {
        /// Checksums look wrong but are fine: they will be filled in by the hardware or the
        /// stack later. Seen on locally generated packets when the kernel does not complete
        /// the checksum before copying: with [`QueueFlags::GSO`](crate::QueueFlags::GSO) or in
        /// [`CopyMode::Meta`](crate::CopyMode::Meta).
        #[doc(alias = "NFQA_SKB_CSUMNOTREADY")]
        const CSUM_NOT_READY = sys::NFQA_SKB_CSUMNOTREADY;
        /// A GSO super-packet, larger than the device MTU (only with
        /// [`QueueFlags::GSO`](crate::QueueFlags::GSO)).
        #[doc(alias = "NFQA_SKB_GSO")]
        const GSO = sys::NFQA_SKB_GSO;
        /// The checksum was not validated (for instance, the device does not check it).
        #[doc(alias = "NFQA_SKB_CSUM_NOTVERIFIED")]
        const CSUM_NOT_VERIFIED = sys::NFQA_SKB_CSUM_NOTVERIFIED;
    }
}

/// A queued packet, borrowed from the handle's receive buffer.
///
/// It lives only as long as the callback it is passed to: it cannot be stored or sent
/// elsewhere, because the buffer is reused for the next receive.
///
/// ```compile_fail
/// # use libnfq::{Handle, Packet, QueueConfig, Verdict};
/// let mut kept: Vec<&Packet<'_>> = Vec::new();
/// let handle = Handle::open().unwrap();
/// let _queue = handle.queue(0, QueueConfig::new(), |packet: &Packet<'_>| {
///     kept.push(packet); // error: the packet does not outlive the callback
///     Verdict::accept()
/// });
/// ```
///
/// ```compile_fail
/// # use libnfq::{Handle, Packet, QueueConfig, Verdict};
/// let mut payloads: Vec<&[u8]> = Vec::new();
/// let handle = Handle::open().unwrap();
/// let _queue = handle.queue(0, QueueConfig::new(), |packet: &Packet<'_>| {
///     payloads.push(packet.payload()); // error: nor do the bytes it borrows
///     Verdict::accept()
/// });
/// ```
#[derive(Clone)]
pub struct Packet<'a> {
    queue: u16,
    id: u32,
    hw_protocol: u16,
    hook: u8,
    attrs: Attrs<'a>,
}

impl<'a> Packet<'a> {
    pub(crate) fn new(queue: u16, attrs: Attrs<'a>) -> Self {
        let (id, hw_protocol, hook) =
            netlink::packet_header(attrs.get(nfqa::PACKET_HDR).unwrap_or(&[]));
        Packet {
            queue,
            id,
            hw_protocol,
            hook,
            attrs,
        }
    }

    fn attr(&self, kind: u32) -> Option<&'a [u8]> {
        u16::try_from(kind).ok().and_then(|k| self.attrs.get(k))
    }

    /// The parsed attributes (for owned copies).
    pub(crate) fn attrs(&self) -> &Attrs<'a> {
        &self.attrs
    }

    fn attr_u32(&self, kind: u32) -> Option<u32> {
        netlink::attr_be32(self.attr(kind))
    }

    /// The packet id: what the verdict names. Ids count up from 1 per queue.
    #[doc(alias = "nfq_get_msg_packet_hdr")]
    #[doc(alias = "packet_id")]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The queue number the packet came from.
    pub fn queue_num(&self) -> u16 {
        self.queue
    }

    /// The link-layer protocol (ethertype, host byte order): `0x0800` for IPv4, `0x86dd` for
    /// IPv6.
    #[doc(alias = "nfq_get_msg_packet_hdr")]
    pub fn hw_protocol(&self) -> u16 {
        self.hw_protocol
    }

    /// The hook the packet was queued from.
    #[doc(alias = "nfq_get_msg_packet_hdr")]
    pub fn hook(&self) -> Hook {
        Hook::from_raw(self.hook)
    }

    /// The packet mark (`skb->mark`); 0 when unset.
    #[doc(alias = "nfq_get_nfmark")]
    pub fn mark(&self) -> u32 {
        self.attr_u32(sys::NFQA_MARK).unwrap_or(0)
    }

    /// Index of the interface the packet came in on, if any.
    #[doc(alias = "nfq_get_indev")]
    pub fn indev(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_IFINDEX_INDEV)
    }

    /// Index of the interface the packet goes out on, if known.
    #[doc(alias = "nfq_get_outdev")]
    pub fn outdev(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_IFINDEX_OUTDEV)
    }

    /// Index of the physical (bridge port) interface the packet came in on, if any.
    #[doc(alias = "nfq_get_physindev")]
    pub fn physindev(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_IFINDEX_PHYSINDEV)
    }

    /// Index of the physical (bridge port) interface the packet goes out on, if any.
    #[doc(alias = "nfq_get_physoutdev")]
    pub fn physoutdev(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_IFINDEX_PHYSOUTDEV)
    }

    /// The source hardware address, when the packet has an input device and a MAC header
    /// (absent on `OUTPUT`).
    #[doc(alias = "nfq_get_packet_hw")]
    pub fn hw_addr(&self) -> Option<&'a [u8]> {
        self.attr(sys::NFQA_HWADDR).and_then(netlink::hw_addr)
    }

    /// When the packet was received, if the kernel stamped it (only on `PREROUTING`, `INPUT` and
    /// `FORWARD`, and only when receive timestamping is enabled on the host).
    #[doc(alias = "nfq_get_timestamp")]
    pub fn timestamp(&self) -> Option<SystemTime> {
        let (sec, usec) = netlink::timestamp(self.attr(sys::NFQA_TIMESTAMP)?)?;
        // Checked: the kernel's values are trusted for nothing, and a malformed stamp must not
        // panic (it reads as absent).
        let since_epoch = Duration::from_secs(sec).checked_add(Duration::from_micros(usec))?;
        SystemTime::UNIX_EPOCH.checked_add(since_epoch)
    }

    /// The packet bytes from the network header on, as far as the copy range allows; empty in
    /// [`CopyMode::Meta`](crate::CopyMode::Meta).
    #[doc(alias = "nfq_get_payload")]
    pub fn payload(&self) -> &'a [u8] {
        self.attr(sys::NFQA_PAYLOAD).unwrap_or(&[])
    }

    /// The packet's full length, which is more than `payload().len()` when the copy was
    /// truncated by the copy range. The kernel reports the full length only in packet copy
    /// mode: in [`CopyMode::Meta`](crate::CopyMode::Meta) this is 0.
    #[doc(alias = "NFQA_CAP_LEN")]
    pub fn original_len(&self) -> u32 {
        self.attr_u32(sys::NFQA_CAP_LEN)
            .unwrap_or(self.payload().len() as u32)
    }

    /// `true` when the payload is shorter than the packet (copy range smaller than the
    /// packet).
    pub fn is_truncated(&self) -> bool {
        self.attr_u32(sys::NFQA_CAP_LEN)
            .is_some_and(|len| len as usize > self.payload().len())
    }

    /// The uid of the local socket the packet belongs to (needs
    /// [`QueueFlags::UID_GID`](crate::QueueFlags::UID_GID) and a local socket).
    #[doc(alias = "nfq_get_uid")]
    pub fn uid(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_UID)
    }

    /// The gid of the local socket the packet belongs to (needs
    /// [`QueueFlags::UID_GID`](crate::QueueFlags::UID_GID) and a local socket).
    #[doc(alias = "nfq_get_gid")]
    pub fn gid(&self) -> Option<u32> {
        self.attr_u32(sys::NFQA_GID)
    }

    /// The security context (needs [`QueueFlags::SECCTX`](crate::QueueFlags::SECCTX) and a
    /// SECMARK); without the trailing NUL, if the kernel sent one.
    #[doc(alias = "nfq_get_secctx")]
    pub fn secctx(&self) -> Option<&'a [u8]> {
        let raw = self.attr(sys::NFQA_SECCTX)?;
        Some(raw.strip_suffix(&[0]).unwrap_or(raw))
    }

    /// How the kernel holds the packet (GSO, checksum state); empty when not reported.
    #[doc(alias = "nfq_get_skbinfo")]
    pub fn skb_info(&self) -> SkbInfo {
        SkbInfo::from_bits_retain(self.attr_u32(sys::NFQA_SKB_INFO).unwrap_or(0))
    }

    /// The packet's connection, decoded from the nested `NFQA_CT` attribute: tuples, status,
    /// mark, id, zone, ... (see [`Conntrack`](crate::conntrack::Conntrack); its
    /// [`as_bytes`](crate::conntrack::Conntrack::as_bytes) gives the raw attribute). Sent only
    /// for queues bound with [`QueueFlags::CONNTRACK`](crate::QueueFlags::CONNTRACK), on kernels
    /// built with `CONFIG_NETFILTER_NETLINK_GLUE_CT`.
    #[doc(alias = "NFQA_CT")]
    #[doc(alias = "nfq_get_ct")]
    pub fn conntrack(&self) -> Option<crate::conntrack::Conntrack<'a>> {
        self.attr(sys::NFQA_CT)
            .map(crate::conntrack::Conntrack::parse)
    }

    /// The packet's conntrack state (`NFQA_CT_INFO`, `enum ip_conntrack_info`: established,
    /// related, new, and their reply forms), sent with [`Packet::conntrack`].
    #[doc(alias = "NFQA_CT_INFO")]
    pub fn conntrack_info(&self) -> Option<crate::conntrack::CtInfo> {
        self.attr(sys::NFQA_CT_INFO)
            .and_then(crate::conntrack::CtInfo::parse)
    }

    /// The raw, nested `NFQA_EXP` attribute: the conntrack expectation the packet belongs to,
    /// as the kernel's ctnetlink writes it (nested `CTA_EXPECT_*`).
    #[doc(alias = "NFQA_EXP")]
    pub fn exp(&self) -> Option<&'a [u8]> {
        self.attrs.get(nfqa::EXP)
    }

    /// The address family of the hook that queued the packet (`nfgen_family`): IPv4 and IPv6
    /// for `iptables`/`ip6tables` rules, [`Family::Bridge`] for bridge-family queueing.
    #[doc(alias = "nfgen_family")]
    pub fn family(&self) -> Family {
        Family::from_raw(self.attrs.family())
    }

    /// The packet's VLAN tag, when the kernel holds it outside the packet data (`NFQA_VLAN`).
    #[doc(alias = "NFQA_VLAN")]
    pub fn vlan(&self) -> Option<Vlan> {
        self.attrs.get(nfqa::VLAN).and_then(Vlan::parse)
    }

    /// The packet's full layer-2 header (`NFQA_L2HDR`), which the kernel sends for packets
    /// queued from the bridge family.
    #[doc(alias = "NFQA_L2HDR")]
    pub fn l2_header(&self) -> Option<&'a [u8]> {
        self.attrs.get(nfqa::L2HDR)
    }

    /// The packet's priority (`skb->priority`, `NFQA_PRIORITY`), sent when it is not 0: for
    /// instance the `SO_PRIORITY` of the local socket that sent it.
    #[doc(alias = "NFQA_PRIORITY")]
    pub fn priority(&self) -> Option<u32> {
        netlink::attr_be32(self.attrs.get(nfqa::PRIORITY))
    }

    /// The payload of any attribute by its `NFQA_*` number (see [`nfqa`](crate::nfqa)), as
    /// sent: also for numbers newer than this crate (nothing the kernel sends is dropped) and
    /// for attributes too short for their type (which the typed accessors ignore). `None` when
    /// the message has no such attribute.
    #[doc(alias = "nfq_nlmsg_parse")]
    pub fn raw_attr(&self, nfqa: u16) -> Option<&'a [u8]> {
        self.attrs.raw(nfqa)
    }
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("hw_protocol", &format_args!("{:#06x}", self.hw_protocol))
            .field("family", &self.family())
            .field("hook", &self.hook())
            .field("mark", &self.mark())
            .field("indev", &self.indev())
            .field("outdev", &self.outdev())
            .field("payload_len", &self.payload().len())
            .field("original_len", &self.original_len())
            .field("priority", &self.priority())
            .finish_non_exhaustive()
    }
}
