//! Owned copies of a packet's attributes, for packets that outlive their callback
//! ([`DeferredPacket`](crate::DeferredPacket)): the message's attribute region copied as is
//! (every attribute, known or not), from which a [`Packet`] view is rebuilt, so that an owned
//! packet has exactly the accessors of a borrowed one. How much of the payload is copied is
//! the queue's choice ([`DeferCopy`]).

use crate::attrs::{align4, nfqa, Attrs, NLA_HDRLEN};
use crate::packet::Packet;

/// What an owned packet ([`DeferredPacket`](crate::DeferredPacket)) copies of its packet: every
/// attribute (the metadata) always, and all, none or the first bytes of the payload. Set per
/// queue with [`QueueConfig::defer_copy`](crate::QueueConfig::defer_copy), used by
/// [`Pending::defer`](crate::Pending::defer).
///
/// When the payload is not copied whole, the owned packet still knows the packet's length:
/// [`DeferredPacket::original_len`](crate::DeferredPacket::original_len) is the length of the
/// packet as queued, and [`DeferredPacket::is_truncated`](crate::DeferredPacket::is_truncated)
/// is `true`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeferCopy {
    /// The whole payload (as far as the queue's copy mode had the kernel copy it).
    #[default]
    All,
    /// No payload: only the metadata attributes (id, hook, mark, interfaces, priority, ...).
    /// For consumers that decide on metadata alone, which then pay for no payload copy.
    Metadata,
    /// The first `n` bytes of the payload (all of it when shorter), for instance the headers.
    /// A verdict with a replacement payload is then refused like for a truncated copy
    /// ([`Error::TruncatedPayload`](crate::Error::TruncatedPayload)) when bytes were left out:
    /// writing the prefix back would cut the packet.
    Prefix(usize),
}

/// The attributes of a packet message, owned: the attribute region with the payload attribute
/// left out (the payload is kept apart, as much of it as [`DeferCopy`] says), plus an
/// `NFQA_CAP_LEN` with the queued length when the payload was cut here and the kernel did not
/// send one.
#[derive(Clone, Debug)]
pub(crate) struct OwnedAttrs {
    family: u8,
    region: Box<[u8]>,
    /// The message had a payload attribute (possibly empty).
    has_payload: bool,
}

impl OwnedAttrs {
    /// Copies `packet`'s attributes and `copy`'s share of its payload.
    pub(crate) fn copy(packet: &Packet<'_>, copy: DeferCopy) -> (OwnedAttrs, Vec<u8>) {
        let attrs = packet.attrs();
        let payload = attrs.get(nfqa::PAYLOAD);
        let full = payload.unwrap_or(&[]);
        let kept = match copy {
            DeferCopy::All => full,
            DeferCopy::Metadata => &[],
            DeferCopy::Prefix(n) => &full[..n.min(full.len())],
        };
        let cap_len = (kept.len() < full.len() && attrs.get(nfqa::CAP_LEN).is_none())
            .then_some(full.len() as u32);
        let size = attrs
            .iter()
            .filter(|a| a.kind != nfqa::PAYLOAD)
            .map(|a| align4(a.whole.len()))
            .sum::<usize>()
            + cap_len.map_or(0, |_| NLA_HDRLEN + 4);
        let mut region = Vec::with_capacity(size);
        for a in attrs.iter().filter(|a| a.kind != nfqa::PAYLOAD) {
            region.extend_from_slice(a.whole);
            region.resize(align4(region.len()), 0);
        }
        if let Some(len) = cap_len {
            region.extend_from_slice(&((NLA_HDRLEN + 4) as u16).to_ne_bytes());
            region.extend_from_slice(&nfqa::CAP_LEN.to_ne_bytes());
            region.extend_from_slice(&len.to_be_bytes());
        }
        let owned = OwnedAttrs {
            family: attrs.family(),
            region: region.into_boxed_slice(),
            has_payload: payload.is_some() && !matches!(copy, DeferCopy::Metadata),
        };
        (owned, kept.to_vec())
    }

    /// A borrowed view of the owned packet, with `payload` as its payload.
    pub(crate) fn view<'a>(&'a self, queue: u16, payload: &'a [u8]) -> Packet<'a> {
        let mut attrs = Attrs::parse(self.family, &self.region);
        attrs.set_payload(self.has_payload.then_some(payload));
        Packet::new(queue, attrs)
    }
}
