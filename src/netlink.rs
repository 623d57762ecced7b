//! The only place that builds or walks netlink messages: safe wrappers over nfq-sys.
//!
//! Messages are built by libnetfilter_queue's `nfq_nlmsg_*` functions (and libmnl's
//! `mnl_attr_put_*`) straight into the spare capacity of an [`AlignedBuf`], after reserving the
//! exact number of bytes they write. Received datagrams and their attributes are walked here,
//! in Rust, with bounds checks (see [`parse_packet`] for why not with `nfq_nlmsg_parse`); every
//! slice handed out lies inside the message it came from.

use std::ffi::c_char;
use std::mem::size_of;
use std::ptr;

use nfq_sys as sys;

use crate::attrs::{align4, Attrs, NLA_HDRLEN, NLA_TYPE_MASK};

/// Length of `struct nlmsghdr` (already 4-byte aligned).
const NLMSG_HDRLEN: usize = size_of::<libc::nlmsghdr>();
/// Length of `struct nfgenmsg`.
const NFGENMSG_LEN: usize = size_of::<sys::nfgenmsg>();

/// `nlmsg_type` of a queue message of this `NFQNL_MSG_*` kind.
const fn queue_msg_type(msg: u32) -> u16 {
    sys::nfqnl_msg_type(msg)
}

/// A byte buffer whose start is 8-byte aligned, as netlink headers need.
pub(crate) struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of at least `capacity` bytes, with length 0.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        AlignedBuf {
            words: vec![0; capacity.div_ceil(8)],
            len: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.words.len() * 8
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `additional` more bytes after the current length (allocates only when the
    /// capacity is too small; new room is zeroed).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len + additional;
        if needed > self.capacity() {
            self.words.resize(needed.div_ceil(8), 0);
        }
    }

    /// Sets the capacity to at least `capacity` bytes; the contents are kept.
    pub(crate) fn resize_capacity(&mut self, capacity: usize) {
        self.words
            .resize(capacity.div_ceil(8).max(self.len.div_ceil(8)), 0);
        self.words.shrink_to_fit();
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `words` owns `capacity()` initialized bytes (zeroed at allocation, written
        // since) and `len <= capacity()`; u8 has no alignment or validity requirements.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The whole capacity as bytes, for receiving into.
    pub(crate) fn whole_mut(&mut self) -> &mut [u8] {
        let cap = self.capacity();
        // SAFETY: as in `as_slice`, over the whole initialized capacity; `&mut self` makes
        // the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), cap) }
    }

    /// Sets the length after bytes were written into the capacity.
    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity());
        self.len = len;
    }

    /// Gives memory back after a large payload verdict grew the buffer past 64 KiB.
    pub(crate) fn shrink_if_large(&mut self) {
        const KEEP: usize = 64 * 1024;
        if self.len == 0 && self.capacity() > KEEP {
            self.resize_capacity(KEEP);
        }
    }

    /// Copies `bytes` into a new buffer of exactly that size.
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        let mut buf = AlignedBuf::with_capacity(bytes.len());
        buf.whole_mut()[..bytes.len()].copy_from_slice(bytes);
        buf.len = bytes.len();
        buf
    }

    /// Runs `build` on a fresh `nlmsghdr` written at the end of the buffer by
    /// `nfq_nlmsg_put(type, queue)`, after reserving `max_len` bytes, then extends the length by
    /// the message's final `nlmsg_len`.
    ///
    /// # Safety
    /// `build` must not write more than `max_len` bytes in total (header included) from the
    /// message start.
    unsafe fn put_message(
        &mut self,
        max_len: usize,
        msg_type: u32,
        queue: u16,
        build: impl FnOnce(*mut libc::nlmsghdr),
    ) {
        debug_assert_eq!(self.len % 4, 0);
        self.reserve(max_len);
        let start = self.len;
        // SAFETY: `reserve` made `max_len` bytes available at offset `start` of the allocation,
        // which is 4-byte aligned since every message length is a multiple of 4.
        let at = unsafe { self.words.as_mut_ptr().cast::<u8>().add(start) };
        // SAFETY: `nfq_nlmsg_put` writes a zeroed nlmsghdr and nfgenmsg (20 bytes <= max_len,
        // the callers' sizes all include them) at `at` and returns `at` as the header.
        let nlh =
            unsafe { sys::nfq_nlmsg_put(at.cast::<c_char>(), msg_type as i32, u32::from(queue)) };
        build(nlh);
        // SAFETY: `nlh` points at the header just written inside our buffer.
        let msg_len = unsafe { (*nlh).nlmsg_len } as usize;
        assert!(
            msg_len <= max_len,
            "netlink message overran its reservation"
        );
        self.len = start + align4(msg_len);
    }
}

/// What a configuration message carries.
pub(crate) struct ConfigMsg {
    pub(crate) queue: u16,
    pub(crate) seq: u32,
    pub(crate) ack: bool,
    pub(crate) cmd: Option<u8>,
    pub(crate) params: Option<(u8, u32)>,
    pub(crate) max_len: Option<u32>,
    pub(crate) flags: Option<u32>,
}

pub(crate) const CMD_BIND: u8 = sys::NFQNL_CFG_CMD_BIND as u8;
pub(crate) const CMD_UNBIND: u8 = sys::NFQNL_CFG_CMD_UNBIND as u8;

/// Appends an `NFQNL_MSG_CONFIG` message.
pub(crate) fn put_config(buf: &mut AlignedBuf, msg: &ConfigMsg) {
    // header + nfgenmsg + cmd (4+4) + params (4+5 -> 12) + maxlen (4+4) + mask + flags (2 x 8)
    const MAX: usize = NLMSG_HDRLEN + NFGENMSG_LEN + 8 + 12 + 8 + 16;
    // SAFETY: the attributes written below take at most MAX bytes in total.
    unsafe {
        buf.put_message(MAX, sys::NFQNL_MSG_CONFIG, msg.queue, |nlh| {
            // SAFETY (all calls): `nlh` is a valid message header with room for MAX bytes.
            (*nlh).nlmsg_seq = msg.seq;
            if msg.ack {
                (*nlh).nlmsg_flags |= libc::NLM_F_ACK as u16;
            }
            if let Some(cmd) = msg.cmd {
                sys::nfq_nlmsg_cfg_put_cmd(nlh, libc::AF_UNSPEC as u16, cmd);
            }
            if let Some((mode, range)) = msg.params {
                sys::nfq_nlmsg_cfg_put_params(nlh, mode, range as i32);
            }
            if let Some(len) = msg.max_len {
                sys::nfq_nlmsg_cfg_put_qmaxlen(nlh, len);
            }
            if let Some(flags) = msg.flags {
                sys::mnl_attr_put_u32(nlh, sys::NFQA_CFG_FLAGS as u16, flags.to_be());
                sys::mnl_attr_put_u32(nlh, sys::NFQA_CFG_MASK as u16, flags.to_be());
            }
        });
    }
}

/// `CTA_MARK` of `enum ctattr_type` (linux/netfilter/nfnetlink_conntrack.h), nested in
/// `NFQA_CT`.
const CTA_MARK: u16 = 8;

/// What one verdict message carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VerdictMsg<'a> {
    /// The `NF_*` verdict value.
    pub(crate) verdict: u32,
    pub(crate) mark: Option<u32>,
    /// The connection's mark, as `NFQA_CT { CTA_MARK }`.
    pub(crate) ct_mark: Option<u32>,
    pub(crate) payload: Option<&'a [u8]>,
}

impl VerdictMsg<'_> {
    /// Bytes the message takes.
    pub(crate) fn len(&self) -> usize {
        NLMSG_HDRLEN
            + NFGENMSG_LEN
            + NLA_HDRLEN
            + size_of::<sys::nfqnl_msg_verdict_hdr>()
            + if self.mark.is_some() {
                NLA_HDRLEN + 4
            } else {
                0
            }
            + if self.ct_mark.is_some() {
                2 * NLA_HDRLEN + 4
            } else {
                0
            }
            + self.payload.map_or(0, |p| NLA_HDRLEN + align4(p.len()))
    }
}

/// Appends an `NFQNL_MSG_VERDICT` message (sequence number 0: the kernel reports a failure
/// with an error message of sequence 0).
pub(crate) fn put_verdict(buf: &mut AlignedBuf, queue: u16, id: u32, msg: &VerdictMsg<'_>) {
    let max = msg.len();
    // SAFETY: `max` is exactly what the attributes below take.
    unsafe {
        buf.put_message(max, sys::NFQNL_MSG_VERDICT, queue, |nlh| {
            // SAFETY (all calls): `nlh` is a valid header with room for `max` bytes; the payload
            // pointer and length describe a live slice; the nest is opened and closed on the
            // same message.
            sys::nfq_nlmsg_verdict_put(nlh, id as i32, msg.verdict as i32);
            if let Some(mark) = msg.mark {
                sys::nfq_nlmsg_verdict_put_mark(nlh, mark);
            }
            if let Some(ct_mark) = msg.ct_mark {
                let nest = sys::mnl_attr_nest_start(nlh, sys::NFQA_CT as u16);
                sys::mnl_attr_put_u32(nlh, CTA_MARK, ct_mark.to_be());
                sys::mnl_attr_nest_end(nlh, nest);
            }
            if let Some(p) = msg.payload {
                sys::nfq_nlmsg_verdict_put_pkt(nlh, p.as_ptr().cast(), p.len() as u32);
            }
        });
    }
}

/// Appends an `NFQNL_MSG_VERDICT_BATCH` message: the verdict for every queued packet with an
/// id up to `id`.
pub(crate) fn put_batch_verdict(
    buf: &mut AlignedBuf,
    queue: u16,
    id: u32,
    verdict: u32,
    mark: Option<u32>,
) {
    let max = VerdictMsg {
        verdict,
        mark,
        ct_mark: None,
        payload: None,
    }
    .len();
    // SAFETY: `max` is exactly what the attributes below take.
    unsafe {
        buf.put_message(max, sys::NFQNL_MSG_VERDICT_BATCH, queue, |nlh| {
            // SAFETY: `nlh` is a valid header with room for `max` bytes.
            sys::nfq_nlmsg_verdict_put(nlh, id as i32, verdict as i32);
            if let Some(mark) = mark {
                sys::nfq_nlmsg_verdict_put_mark(nlh, mark);
            }
        });
    }
}

/// One netlink message of a received datagram.
// The packet variant is large (its attribute table), but it lives on the stack for one
// dispatch; boxing it would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message<'a> {
    /// A queued packet: its queue number and attributes (with the message's address family).
    Packet { queue: u16, attrs: Attrs<'a> },
    /// An acknowledgement (`errno == 0`) or error answer to a message we sent.
    Answer(Answer),
    /// A packet message that could not be parsed.
    Malformed(&'static str),
    /// Anything else (NLMSG_NOOP, NLMSG_DONE, other subsystems): skipped.
    Other,
}

/// The kernel's answer to one of our messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer {
    /// The sequence number of the message answered.
    pub(crate) seq: u32,
    /// 0 for an acknowledgement, else a positive errno.
    pub(crate) errno: i32,
    /// The `NFQNL_MSG_*` kind of the message answered, when the kernel echoed its header.
    pub(crate) msg: Option<u32>,
    /// The queue number the answered message named, when echoed.
    pub(crate) queue: Option<u16>,
    /// The packet id of an answered verdict, when echoed.
    pub(crate) packet_id: Option<u32>,
    /// The configuration command of an answered config message, when echoed.
    pub(crate) cmd: Option<u8>,
}

impl Answer {
    /// `true` for an answer about a verdict (single or range).
    pub(crate) fn is_verdict(&self) -> bool {
        matches!(self.msg, Some(m) if m == sys::NFQNL_MSG_VERDICT || m == sys::NFQNL_MSG_VERDICT_BATCH)
    }
}

/// The queue number and packet id of a packet message cut short by the receive buffer:
/// the kernel writes `NFQA_PACKET_HDR` first, so the first bytes name the packet. `None` when
/// `partial` does not start with a packet message or its header attribute is cut off too.
pub(crate) fn truncated_packet(partial: &[u8]) -> Option<(u16, u32)> {
    // SAFETY: `read_unaligned` of a plain-old-data header from a slice at least that long.
    let hdr = (partial.len() >= NLMSG_HDRLEN)
        .then(|| unsafe { ptr::read_unaligned(partial.as_ptr().cast::<libc::nlmsghdr>()) })?;
    if hdr.nlmsg_type != queue_msg_type(sys::NFQNL_MSG_PACKET) {
        return None;
    }
    let queue = be16(partial, NLMSG_HDRLEN + 2)?;
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    loop {
        let nla_len = usize::from(u16::from_ne_bytes(
            partial.get(at..at + 2)?.try_into().ok()?,
        ));
        let nla_type = u16::from_ne_bytes(partial.get(at + 2..at + 4)?.try_into().ok()?);
        if nla_len < NLA_HDRLEN {
            return None;
        }
        if u32::from(nla_type & NLA_TYPE_MASK) == sys::NFQA_PACKET_HDR {
            let payload = partial.get(at + NLA_HDRLEN..at + nla_len)?;
            return Some((queue, be32(payload, 0)?));
        }
        at += align4(nla_len);
    }
}

/// Walks the netlink messages of a received datagram.
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
    /// Offset of the next message.
    pos: usize,
}

/// Iterates over the messages in `datagram`. The slice must start 4-byte aligned.
pub(crate) fn messages(datagram: &[u8]) -> Messages<'_> {
    debug_assert_eq!(datagram.as_ptr() as usize % 4, 0);
    Messages {
        buf: datagram,
        pos: 0,
    }
}

impl<'a> Iterator for Messages<'a> {
    /// The message's bytes and its parsed form.
    type Item = (&'a [u8], Message<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..)?;
        // The header and the message length are checked here rather than with libmnl's
        // `mnl_nlmsg_ok`, which compares `(int)nlmsg_len` and so accepts lengths above 2 GiB.
        if rest.len() < NLMSG_HDRLEN {
            self.pos = self.buf.len();
            return None;
        }
        // SAFETY: `rest` holds at least a header's bytes; `read_unaligned` needs no alignment.
        let hdr = unsafe { ptr::read_unaligned(rest.as_ptr().cast::<libc::nlmsghdr>()) };
        let msg_len = hdr.nlmsg_len as usize;
        if msg_len < NLMSG_HDRLEN || msg_len > rest.len() {
            self.pos = self.buf.len();
            return None;
        }
        let msg_bytes = &rest[..hdr.nlmsg_len as usize];
        self.pos += align4(hdr.nlmsg_len as usize).min(rest.len());
        Some((msg_bytes, parse_message(msg_bytes, &hdr)))
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn ne32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_message<'a>(msg: &'a [u8], hdr: &libc::nlmsghdr) -> Message<'a> {
    match i32::from(hdr.nlmsg_type) {
        libc::NLMSG_ERROR => parse_answer(msg, hdr.nlmsg_seq),
        _ if hdr.nlmsg_type == queue_msg_type(sys::NFQNL_MSG_PACKET) => parse_packet(msg),
        _ => Message::Other,
    }
}

/// Parses a packet message's attributes (see [`Attrs`]).
///
/// This is done here rather than with `nfq_nlmsg_parse` for two reasons found in
/// libnetfilter_queue 1.0.5: it validates `NFQA_SECCTX` as a `u32`, so a real security context
/// makes it fail the whole message (and the packet would never be decided), and it fills table
/// slots up to the *linked* library's `NFQA_MAX`, which a newer library makes larger than a
/// table sized from these bindings. Here the table follows the kernel's uapi numbering, an
/// attribute too short for its type is left out of the table (but stays reachable by number,
/// like attributes newer than the table), a truncated tail ends the walk, and every slice lies
/// inside `msg`.
fn parse_packet(msg: &[u8]) -> Message<'_> {
    let (Some(&family), Some(queue)) = (msg.get(NLMSG_HDRLEN), be16(msg, NLMSG_HDRLEN + 2)) else {
        return Message::Malformed("packet message shorter than its nfgenmsg header");
    };
    let region = msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or(&[]);
    let attrs = Attrs::parse(family, region);
    if attrs.get(crate::attrs::nfqa::PACKET_HDR).is_none() {
        return Message::Malformed("packet message without a valid NFQA_PACKET_HDR");
    }
    Message::Packet { queue, attrs }
}

fn parse_answer(msg: &[u8], seq: u32) -> Message<'_> {
    // struct nlmsgerr { int error; struct nlmsghdr msg; } then the echoed payload.
    let Some(error) = ne32(msg, NLMSG_HDRLEN) else {
        return Message::Malformed("error message too short");
    };
    let errno = (error as i32).checked_neg().unwrap_or(0).max(0);
    let echo_at = NLMSG_HDRLEN + 4;
    let echoed_type = msg
        .get(echo_at + 4..echo_at + 6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let msg_kind = echoed_type
        .filter(|t| (u32::from(*t) >> 8) == sys::NFNL_SUBSYS_QUEUE)
        .map(|t| u32::from(t) & 0xff);
    let payload_at = echo_at + NLMSG_HDRLEN;
    let queue = msg_kind.and_then(|_| be16(msg, payload_at + 2));
    let mut packet_id = None;
    let mut cmd = None;
    // The echoed message's attributes (present unless NETLINK_CAP_ACK is set).
    let mut at = payload_at + NFGENMSG_LEN;
    while let (Some(nla_len), Some(nla_type)) = (
        msg.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize),
        msg.get(at + 2..at + 4)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) & NLA_TYPE_MASK),
    ) {
        if nla_len < NLA_HDRLEN || at + nla_len > msg.len() {
            break;
        }
        let kind = msg_kind.unwrap_or(u32::MAX);
        let is_verdict = kind == sys::NFQNL_MSG_VERDICT || kind == sys::NFQNL_MSG_VERDICT_BATCH;
        if is_verdict && u32::from(nla_type) == sys::NFQA_VERDICT_HDR {
            packet_id = be32(msg, at + NLA_HDRLEN + 4);
        }
        if kind == sys::NFQNL_MSG_CONFIG && u32::from(nla_type) == sys::NFQA_CFG_CMD {
            cmd = msg.get(at + NLA_HDRLEN).copied();
        }
        at += align4(nla_len);
    }
    Message::Answer(Answer {
        seq,
        errno,
        msg: msg_kind,
        queue,
        packet_id,
        cmd,
    })
}

/// Reads a big-endian u32 attribute.
pub(crate) fn attr_be32(attr: Option<&[u8]>) -> Option<u32> {
    attr.and_then(|a| be32(a, 0))
}

/// Reads the packet header attribute: (id, hw protocol, hook).
pub(crate) fn packet_header(attr: &[u8]) -> (u32, u16, u8) {
    (
        be32(attr, 0).unwrap_or(0),
        be16(attr, 4).unwrap_or(0),
        attr.get(6).copied().unwrap_or(0),
    )
}

/// Reads a `nfqnl_msg_packet_timestamp` attribute: (seconds, microseconds).
pub(crate) fn timestamp(attr: &[u8]) -> Option<(u64, u64)> {
    let sec = u64::from_be_bytes(attr.get(0..8)?.try_into().ok()?);
    let usec = u64::from_be_bytes(attr.get(8..16)?.try_into().ok()?);
    Some((sec, usec))
}

/// Reads a `nfqnl_msg_packet_hw` attribute: the address bytes.
pub(crate) fn hw_addr(attr: &[u8]) -> Option<&[u8]> {
    let len = usize::from(be16(attr, 0)?);
    attr.get(4..4 + len.min(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_message_layout() {
        let mut buf = AlignedBuf::with_capacity(16);
        let msg = VerdictMsg {
            verdict: 1,
            mark: Some(5),
            ct_mark: Some(9),
            payload: Some(b"abcde"),
        };
        put_verdict(&mut buf, 7, 42, &msg);
        let bytes = buf.as_slice();
        assert_eq!(bytes.len(), msg.len());
        assert_eq!(ne32(bytes, 0), Some(bytes.len() as u32));
        let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
        assert_eq!(ty, queue_msg_type(sys::NFQNL_MSG_VERDICT));
        assert_eq!(be16(bytes, NLMSG_HDRLEN + 2), Some(7));
        // verdict header attribute: verdict then id, big-endian
        assert_eq!(be32(bytes, 24), Some(1));
        assert_eq!(be32(bytes, 28), Some(42));
        // mark, then the nested conntrack attribute with CTA_MARK, then the payload
        assert_eq!(be32(bytes, 36), Some(5));
        assert_eq!(ne32(bytes, 40).map(|v| v as u16), Some(12)); // nest length
        let nest_type = u16::from_ne_bytes([bytes[42], bytes[43]]);
        assert_eq!(nest_type, sys::NFQA_CT as u16 | libc::NLA_F_NESTED as u16);
        assert_eq!(u16::from_ne_bytes([bytes[46], bytes[47]]), CTA_MARK);
        assert_eq!(be32(bytes, 48), Some(9));
        assert_eq!(&bytes[56..61], b"abcde");
        // a second message is appended 4-byte aligned
        put_batch_verdict(&mut buf, 7, 50, 0, Some(3));
        assert_eq!(buf.len() % 4, 0);
        let msgs: Vec<_> = messages(buf.as_slice()).collect();
        assert_eq!(msgs.len(), 2);
    }

    #[test]
    fn walking_garbage_never_reads_out_of_bounds() {
        let mut state = 0x1234_5678u32;
        for len in 0..512usize {
            let mut buf = AlignedBuf::with_capacity(len);
            for b in buf.whole_mut().iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            buf.set_len(len);
            // make some of them look like packet messages
            if len >= 24 && len % 3 == 0 {
                let ty = queue_msg_type(sys::NFQNL_MSG_PACKET).to_ne_bytes();
                let bytes = buf.whole_mut();
                bytes[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
                bytes[4..6].copy_from_slice(&ty);
            }
            for (raw, msg) in messages(buf.as_slice()) {
                assert!(raw.len() <= len);
                if let Message::Packet { attrs, .. } = msg {
                    let r = attrs.region();
                    let table = (0..crate::attrs::TABLE_LEN as u16).filter_map(|n| attrs.get(n));
                    for a in table.chain(attrs.iter().map(|a| a.payload)).chain([r]) {
                        let a0 = a.as_ptr() as usize;
                        let r0 = raw.as_ptr() as usize;
                        assert!(a0 >= r0 && a0 + a.len() <= r0 + raw.len());
                    }
                }
            }
        }
    }
}
