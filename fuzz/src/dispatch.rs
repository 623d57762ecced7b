//! `dispatch`: the receive path (netlink message walk, attribute parsing, `Packet` accessors,
//! callbacks, deferral, verdict bookkeeping) through `Handle::dispatch_for_fuzzing`, on queues
//! registered with `Handle::register_for_fuzzing` (feature `fuzzing`; nothing is bound in the
//! kernel, no privilege needed).
//!
//! Input: an options byte, then [`Chunk`]s: netlink messages with plausible headers (packet
//! messages with attributes, error answers) and raw bytes, grouped into datagrams; and
//! "settle" steps that decide or drop the packets deferred so far.
//!
//! Checked, against a model of the datagram walked here independently ([`walk`]):
//! - no panic (accessors included, on any attribute content);
//! - every packet message of a registered queue is shown to its callback exactly once, in
//!   order, and nothing else is; `dispatch_for_fuzzing` returns that count;
//! - the counters agree: `packets` counts every packet message, `dispatched` those shown,
//!   `fallback_unknown_queue` those of other queues, `malformed` the malformed messages;
//! - the errors returned are the malformed messages, the error answers, and refused verdicts;
//! - from inside a callback, `dispatch_for_fuzzing` and `try_process` fail with
//!   `Error::Reentrant` and change nothing;
//! - nothing reaches the kernel: no verdict is counted as sent, every deferred packet's
//!   verdict is refused as stale (`Error::StaleBinding`), and the socket receives no answer
//!   (a verdict for a queue this socket has not bound would be answered with an error).

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use libnfq::pkt::{IpPacket, PacketBuf};
use libnfq::{
    CopyMode, DeferredPacket, Error, Handle, Packet, Pending, QueueConfig, QueueFlags, Verdict,
};

use crate::input::{Input, Output};

const NLMSG_HDRLEN: usize = 16;
/// `(NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET`.
const PACKET_MSG: u16 = 3 << 8;
const NLMSG_ERROR: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;

/// Queue numbers a message can name: 0..=3 are registered, 7 is not.
pub const QUEUES: [u16; 8] = [0, 1, 2, 3, 7, 0, 1, 7];
const MAX_CHUNKS: usize = 96;

/// One attribute of a packet message.
#[derive(Clone, Debug)]
pub struct Attr {
    pub kind: u8,
    pub payload: Vec<u8>,
    /// Bit 0: set NLA_F_NESTED; bit 1: `nla_len` lies (+4 bytes); bit 2: `nla_len` lies (0);
    /// bit 3: no padding after it.
    pub flags: u8,
}

/// A piece of the input.
#[derive(Clone, Debug)]
pub enum Chunk {
    /// Bytes appended to the datagram as they are.
    Raw(Vec<u8>),
    /// A packet message: queue (index into [`QUEUES`]), `NFQA_PACKET_HDR` fields (unless
    /// `no_header`), then attributes; `cut` (if not 0) cuts `nlmsg_len` to that many bytes.
    Packet {
        queue: u8,
        id: u32,
        hw_protocol: u16,
        hook: u8,
        no_header: bool,
        cut: u8,
        attrs: Vec<Attr>,
    },
    /// An `NLMSG_ERROR` answer with this error code and sequence number, echoing bytes.
    Error { code: i32, seq: u32, echo: Vec<u8> },
    /// Ends the datagram: dispatch it.
    End,
    /// Decides the packets deferred so far: bits select per packet (verdict, verdict with a
    /// payload, batch, range verdict, drop undecided).
    Settle(u8),
}

impl Attr {
    fn decode(input: &mut Input<'_>) -> Attr {
        Attr {
            kind: input.u8(),
            flags: input.u8(),
            payload: input.short_bytes().to_vec(),
        }
    }

    fn encode(&self, out: &mut Output) {
        out.u8(self.kind).u8(self.flags).short_bytes(&self.payload);
    }

    /// Appends the attribute to a message body.
    fn put(&self, body: &mut Vec<u8>) {
        let real = 4 + self.payload.len();
        let nla_len = if self.flags & 4 != 0 {
            0
        } else if self.flags & 2 != 0 {
            real + 4
        } else {
            real
        };
        let kind = u16::from(self.kind) | if self.flags & 1 != 0 { 0x8000 } else { 0 };
        body.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(&self.payload);
        if self.flags & 8 == 0 {
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
        }
    }
}

impl Chunk {
    fn decode(input: &mut Input<'_>) -> Chunk {
        match input.u8() % 8 {
            0 => Chunk::Raw(input.short_bytes().to_vec()),
            1..=3 => {
                let queue = input.u8();
                let id = input.u32();
                let hw_protocol = input.u16();
                let hook = input.u8();
                let flags = input.u8();
                let cut = input.u8();
                let n = input.u8() % 12;
                let attrs = (0..n).map(|_| Attr::decode(input)).collect();
                Chunk::Packet {
                    queue,
                    id,
                    hw_protocol,
                    hook,
                    no_header: flags & 1 != 0,
                    cut,
                    attrs,
                }
            }
            4 => Chunk::Error {
                code: input.u32() as i32,
                seq: if input.u8() & 1 != 0 { input.u32() } else { 0 },
                echo: input.short_bytes().to_vec(),
            },
            5 | 6 => Chunk::End,
            _ => Chunk::Settle(input.u8()),
        }
    }

    pub fn encode(&self, out: &mut Output) {
        match self {
            Chunk::Raw(bytes) => {
                out.u8(0).short_bytes(bytes);
            }
            Chunk::Packet {
                queue,
                id,
                hw_protocol,
                hook,
                no_header,
                cut,
                attrs,
            } => {
                out.u8(1).u8(*queue).u32(*id).u16(*hw_protocol).u8(*hook);
                out.u8(u8::from(*no_header)).u8(*cut).u8(attrs.len() as u8);
                for a in attrs {
                    a.encode(out);
                }
            }
            Chunk::Error { code, seq, echo } => {
                out.u8(4).u32(*code as u32);
                if *seq != 0 {
                    out.u8(1).u32(*seq);
                } else {
                    out.u8(0);
                }
                out.short_bytes(echo);
            }
            Chunk::End => {
                out.u8(5);
            }
            Chunk::Settle(bits) => {
                out.u8(7).u8(*bits);
            }
        }
    }

    /// Appends the chunk's bytes to a datagram (messages start 4-byte aligned).
    fn put(&self, datagram: &mut Vec<u8>) {
        match self {
            Chunk::Raw(bytes) => datagram.extend_from_slice(bytes),
            Chunk::Packet {
                queue,
                id,
                hw_protocol,
                hook,
                no_header,
                cut,
                attrs,
            } => {
                let mut body = Vec::new();
                if !no_header {
                    let mut hdr = id.to_be_bytes().to_vec();
                    hdr.extend_from_slice(&hw_protocol.to_be_bytes());
                    hdr.push(*hook);
                    let attr = Attr {
                        kind: NFQA_PACKET_HDR as u8,
                        payload: hdr,
                        flags: 0,
                    };
                    attr.put(&mut body);
                }
                for a in attrs {
                    a.put(&mut body);
                }
                let num = QUEUES[usize::from(*queue) % QUEUES.len()];
                let full = NLMSG_HDRLEN + 4 + body.len();
                let len = if *cut != 0 {
                    usize::from(*cut).min(full)
                } else {
                    full
                };
                let mut msg = Vec::with_capacity(full + 3);
                msg.extend_from_slice(&(len as u32).to_ne_bytes());
                msg.extend_from_slice(&PACKET_MSG.to_ne_bytes());
                msg.extend_from_slice(&[0; 10]); // flags, seq, portid
                msg.extend_from_slice(&[2, 0]); // nfgenmsg: AF_INET, version 0
                msg.extend_from_slice(&num.to_be_bytes());
                msg.extend_from_slice(&body);
                msg.truncate(len.max(NLMSG_HDRLEN));
                while !msg.len().is_multiple_of(4) {
                    msg.push(0);
                }
                datagram.extend_from_slice(&msg);
            }
            Chunk::Error { code, seq, echo } => {
                let len = NLMSG_HDRLEN + 4 + echo.len();
                datagram.extend_from_slice(&(len as u32).to_ne_bytes());
                datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
                datagram.extend_from_slice(&[0; 2]);
                datagram.extend_from_slice(&seq.to_ne_bytes());
                datagram.extend_from_slice(&[0; 4]);
                datagram.extend_from_slice(&code.to_ne_bytes());
                datagram.extend_from_slice(echo);
                while !datagram.len().is_multiple_of(4) {
                    datagram.push(0);
                }
            }
            Chunk::End | Chunk::Settle(_) => {}
        }
    }
}

/// Encodes a seed input.
pub fn encode(options: u8, chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Output::default();
    out.u8(options);
    for c in chunks {
        c.encode(&mut out);
    }
    out.0
}

/// What a datagram holds, as the kernel's format defines it (walked here, independently of the
/// library's parser).
#[derive(Debug, Default, PartialEq)]
pub struct Walk {
    /// `(queue, id)` of every packet message with a valid `NFQA_PACKET_HDR`.
    pub packets: Vec<(u16, u32)>,
    /// Packet messages without one (or too short for their nfgenmsg), and error messages too
    /// short for their error code.
    pub malformed: usize,
    /// Error answers about our own messages sent without an acknowledgement request (sequence
    /// 0) with a nonzero error: reported as errors.
    pub errors: usize,
}

fn ne16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// Walks `datagram`'s messages: each starts 4-byte aligned, with a length of at least the
/// header that fits in what is left; the walk stops at the first that does not.
pub fn walk(datagram: &[u8]) -> Walk {
    let mut w = Walk::default();
    let mut pos = 0;
    while datagram.len() - pos >= NLMSG_HDRLEN {
        let rest = &datagram[pos..];
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let msg = &rest[..len];
        match ne16(msg, 4) {
            NLMSG_ERROR => {
                if len < NLMSG_HDRLEN + 4 {
                    w.malformed += 1;
                } else {
                    let code = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                    let seq = u32::from_ne_bytes(msg[8..12].try_into().unwrap());
                    if code < 0 && code != i32::MIN && seq == 0 {
                        w.errors += 1;
                    }
                }
            }
            PACKET_MSG => match packet_of(msg) {
                Some(p) => w.packets.push(p),
                None => w.malformed += 1,
            },
            _ => {}
        }
        pos += ((len + 3) & !3).min(rest.len());
    }
    w
}

/// `(queue, id)` of a packet message, if it has an `NFQA_PACKET_HDR` of at least 7 bytes
/// (the last one counts).
fn packet_of(msg: &[u8]) -> Option<(u16, u32)> {
    if msg.len() < NLMSG_HDRLEN + 4 {
        return None;
    }
    let queue = u16::from_be_bytes([msg[18], msg[19]]);
    let mut id = None;
    let mut at = NLMSG_HDRLEN + 4;
    while at + 4 <= msg.len() {
        let nla_len = usize::from(ne16(msg, at));
        let kind = ne16(msg, at + 2) & 0x3fff;
        if nla_len < 4 || at + nla_len > msg.len() {
            break;
        }
        if kind == NFQA_PACKET_HDR && nla_len - 4 >= 7 {
            id = Some(u32::from_be_bytes(msg[at + 4..at + 8].try_into().unwrap()));
        }
        at += (nla_len + 3) & !3;
    }
    id.map(|id| (queue, id))
}

/// What the callbacks saw and kept.
#[derive(Default)]
struct Seen {
    shown: Vec<(u16, u32)>,
    deferred: Vec<DeferredPacket>,
    /// Verdicts returned that the library may refuse (payload, connection mark).
    refusable: usize,
}

/// Reads every accessor of a packet, and the pkt views of its payload.
fn read_everything(p: &Packet<'_>) -> usize {
    let mut sum = p.id() as usize + usize::from(p.hw_protocol()) + p.mark() as usize;
    sum += usize::from(p.hook().raw()) + usize::from(p.queue_num());
    for dev in [p.indev(), p.outdev(), p.physindev(), p.physoutdev()] {
        sum += dev.unwrap_or(0) as usize;
    }
    for bytes in [
        p.payload(),
        p.hw_addr().unwrap_or(&[]),
        p.secctx().unwrap_or(&[]),
        p.exp().unwrap_or(&[]),
        p.l2_header().unwrap_or(&[]),
    ] {
        sum += bytes.iter().map(|&b| usize::from(b)).sum::<usize>();
    }
    sum += p.original_len() as usize + usize::from(p.is_truncated());
    sum += p.skb_info().bits() as usize + p.priority().unwrap_or(0) as usize;
    sum += p.uid().unwrap_or(0) as usize + p.gid().unwrap_or(0) as usize;
    black_box((p.conntrack_info(), p.family(), p.vlan()));
    if let Some(ct) = p.conntrack() {
        // Its Debug output reads every decoded field.
        sum += format!("{ct:?}").len() + ct.as_bytes().len();
        for tuple in [ct.orig(), ct.reply(), ct.master()].into_iter().flatten() {
            black_box((
                tuple.src(),
                tuple.dst(),
                tuple.src_port(),
                tuple.icmp_type(),
            ));
        }
        sum += ct.labels().map_or(0, |l| l.iter().count());
    }
    black_box(format!("{p:?}"));
    sum += p.timestamp().map_or(0, |t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as usize)
    });
    for n in 0..40 {
        sum += p.raw_attr(n).map_or(0, <[u8]>::len);
    }
    if let Ok(view) = IpPacket::parse(p.payload()) {
        sum += view.payload().map_or(0, <[u8]>::len) + view.total_len();
        sum += view.transport_checksum_ok().map_or(0, usize::from);
    }
    if let Ok(buf) = PacketBuf::from_packet(p) {
        sum += buf.len() + buf.view().map_or(0, |v| v.total_len());
    }
    black_box(format!("{:?}", p.hook()));
    sum
}

/// The verdict a callback returns for a packet, chosen by its id.
fn verdict_for(p: &Packet<'_>, seen: &mut Seen) -> Verdict {
    let id = p.id();
    match (id >> 4) % 8 {
        0 => Verdict::accept(),
        1 => Verdict::drop(),
        2 => Verdict::accept().with_mark(id),
        3 => Verdict::repeat(),
        4 => Verdict::queue(id as u16),
        5 => {
            seen.refusable += 1;
            Verdict::accept().with_conntrack_mark(id)
        }
        _ => {
            seen.refusable += 1;
            // The payload as it is, or cut to some length (maybe shorter than its headers).
            let payload = p.payload();
            let keep = if id & 0x100 != 0 {
                payload.len()
            } else {
                (id as usize >> 9) % 64
            };
            Verdict::accept()
                .with_payload(&payload[..keep.min(payload.len())])
                .unwrap_or_else(|_| Verdict::drop())
        }
    }
}

/// From inside a callback (packets with the hook's high bit set): the handle refuses to
/// dispatch or receive again, and touches nothing (the model checks after the pass see to it).
fn reenter(datagram: &[u8]) {
    FIXTURE.with(|f| {
        match f.handle.dispatch_for_fuzzing(datagram) {
            Err(Error::Reentrant) => {}
            other => panic!("dispatch_for_fuzzing inside a callback: {other:?}"),
        }
        match f.handle.try_process() {
            Err(Error::Reentrant) => {}
            other => panic!("try_process inside a callback: {other:?}"),
        }
    });
}

fn plain(seen: &Arc<Mutex<Seen>>) -> impl FnMut(&Packet<'_>) -> Verdict + Send + 'static {
    let seen = Arc::clone(seen);
    move |p| {
        black_box(read_everything(p));
        if p.hook().raw() & 0x80 != 0 {
            reenter(p.payload());
        }
        let mut seen = seen.lock().unwrap();
        seen.shown.push((p.queue_num(), p.id()));
        verdict_for(p, &mut seen)
    }
}

fn deferrable(
    seen: &Arc<Mutex<Seen>>,
) -> impl for<'a> FnMut(Pending<'a>) -> libnfq::Handled<'a> + Send + 'static {
    let seen = Arc::clone(seen);
    move |pending| {
        black_box(read_everything(&pending));
        let mut seen = seen.lock().unwrap();
        seen.shown.push((pending.queue_num(), pending.id()));
        match pending.id() % 4 {
            0 => {
                let verdict = verdict_for(&pending, &mut seen);
                pending.verdict(verdict)
            }
            1 | 2 => {
                let (packet, handled) = pending.defer();
                assert_eq!(packet.payload(), packet.payload());
                seen.deferred.push(packet);
                handled
            }
            _ => {
                let (packet, handled) = pending.defer_metadata();
                assert!(packet.payload().is_empty());
                seen.deferred.push(packet);
                handled
            }
        }
    }
}

/// Decides or drops every deferred packet: each is refused as stale (never sent).
fn settle(handle: &Handle<'_>, seen: &Arc<Mutex<Seen>>, bits: u8) -> usize {
    let deferred = std::mem::take(&mut seen.lock().unwrap().deferred);
    let n = deferred.len();
    let mut batch = handle.verdict_sender().batch(1 + usize::from(bits >> 5));
    for (i, packet) in deferred.into_iter().enumerate() {
        let (queue, id) = (packet.queue_num(), packet.id());
        black_box((
            packet.hook(),
            packet.mark(),
            packet.timestamp(),
            packet.hw_addr(),
        ));
        black_box((
            packet.original_len(),
            packet.is_truncated(),
            packet.skb_info(),
        ));
        let payload = || Verdict::drop().with_payload(vec![0x45; 40]).unwrap();
        let mode = (bits >> (i % 6)) & 7;
        let result = match mode {
            0 | 6 => packet.verdict(Verdict::accept()),
            1 => packet.verdict(payload()),
            2 => batch.push(packet, Verdict::accept()),
            4 => packet.verdict_range(&Verdict::accept().with_mark(7)),
            5 => packet.verdict_range(&payload()),
            _ => {
                drop(packet);
                continue;
            }
        };
        match result {
            Err(Error::StaleBinding { queue: q, id: i }) if (q, i) == (queue, id) => {}
            // A range verdict with a payload is refused as such before its binding is looked
            // at (its fallback, stale, is not sent either).
            Err(Error::InvalidVerdict { .. }) if mode == 5 => {}
            other => panic!("deferred packet {queue}/{id} of a fuzzing queue: {other:?}"),
        }
    }
    assert!(batch.is_empty());
    batch.flush().expect("an empty batch flushes");
    n
}

/// The handle and its fuzzing queues, made once per thread (opening a handle for every input
/// would halve the executions per second). Every input starts with no packet deferred and
/// sets the options it chooses; the checks use counter differences.
struct Fixture {
    handle: Handle<'static>,
    seen: Arc<Mutex<Seen>>,
}

impl Fixture {
    fn new() -> Fixture {
        let handle = Handle::open().expect("a netlink socket");
        handle.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let meta = QueueConfig::new().copy_mode(CopyMode::Meta);
        handle
            .register_for_fuzzing(0, QueueConfig::new(), plain(&seen))
            .unwrap();
        handle
            .register_deferrable_for_fuzzing(1, QueueConfig::new(), deferrable(&seen))
            .unwrap();
        let conntrack = QueueConfig::new()
            .flags(QueueFlags::CONNTRACK)
            .fallback(Verdict::accept());
        handle
            .register_for_fuzzing(2, conntrack, plain(&seen))
            .unwrap();
        handle
            .register_deferrable_for_fuzzing(3, meta.fallback(Verdict::drop()), deferrable(&seen))
            .unwrap();
        assert!(matches!(
            handle.register_for_fuzzing(3, QueueConfig::new(), plain(&seen)),
            Err(Error::QueueAlreadyBound { queue: 3 })
        ));
        Fixture { handle, seen }
    }
}

thread_local! {
    static FIXTURE: Fixture = Fixture::new();
}

pub fn run(data: &[u8]) {
    run_counted(data);
}

/// What one input did (for the corpus test): packets shown to callbacks, packets deferred,
/// errors returned by `dispatch_for_fuzzing`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub shown: usize,
    pub deferred: usize,
    pub errors: usize,
}

/// [`run`], returning what happened.
pub fn run_counted(data: &[u8]) -> Stats {
    FIXTURE.with(|f| run_on(&f.handle, &f.seen, data))
}

fn run_on(handle: &Handle<'static>, seen: &Arc<Mutex<Seen>>, data: &[u8]) -> Stats {
    let mut stats = Stats::default();
    let mut input = Input::new(data);
    let options = input.u8();
    handle.set_batch_limit(match options & 3 {
        1 => 1,
        2 => 2,
        _ => libnfq::DEFAULT_BATCH_LIMIT,
    });
    handle.set_range_verdicts(options & 4 == 0);
    let registered = |q: u16| q <= 3;

    let mut datagram = Vec::new();
    let mut deferred_total = 0;
    let start = handle.counters();
    let mut chunks = 0;
    loop {
        let chunk = if input.is_empty() || chunks == MAX_CHUNKS {
            None
        } else {
            chunks += 1;
            Some(Chunk::decode(&mut input))
        };
        match &chunk {
            Some(Chunk::End) | None => {
                if !datagram.is_empty() {
                    let (shown, errors) = check_dispatch(handle, seen, &datagram, registered);
                    stats.shown += shown;
                    stats.errors += errors;
                    datagram.clear();
                }
            }
            Some(Chunk::Settle(bits)) => deferred_total += settle(handle, seen, *bits),
            Some(c) => c.put(&mut datagram),
        }
        if chunk.is_none() {
            break;
        }
    }
    deferred_total += settle(handle, seen, 0xff);

    let end = handle.counters();
    // Nothing was sent, and every deferred packet's verdict was discarded as stale.
    assert_eq!(end.verdicts, start.verdicts, "verdicts counted as sent");
    assert_eq!(end.range_verdicts, start.range_verdicts);
    assert_eq!(end.send_errors, start.send_errors);
    assert_eq!(end.fallback_undecided, start.fallback_undecided);
    assert_eq!(
        end.stale_discarded - start.stale_discarded,
        deferred_total as u64
    );
    // And the kernel has nothing to say: it answers any message for a queue this socket has
    // not bound with an error.
    match handle.try_process() {
        Ok(None) => {}
        other => panic!("the kernel answered something: {other:?}"),
    }
    stats.deferred = deferred_total;
    stats
}

fn check_dispatch(
    handle: &Handle<'_>,
    seen: &Arc<Mutex<Seen>>,
    datagram: &[u8],
    registered: impl Fn(u16) -> bool,
) -> (usize, usize) {
    let model = walk(datagram);
    let before = handle.counters();
    let (shown_before, refusable_before) = {
        let s = seen.lock().unwrap();
        (s.shown.len(), s.refusable)
    };
    let (count, errors) = handle
        .dispatch_for_fuzzing(datagram)
        .expect("not re-entrant");
    let after = handle.counters();
    let s = seen.lock().unwrap();
    let shown = &s.shown[shown_before..];
    let expected: Vec<(u16, u32)> = model
        .packets
        .iter()
        .copied()
        .filter(|&(q, _)| registered(q))
        .collect();
    assert_eq!(shown, expected, "packets shown, model {model:?}");
    assert_eq!(count, shown.len(), "dispatch count");
    assert_eq!(after.dispatched - before.dispatched, count as u64);
    assert_eq!(after.packets - before.packets, model.packets.len() as u64);
    assert_eq!(
        after.fallback_unknown_queue - before.fallback_unknown_queue,
        (model.packets.len() - expected.len()) as u64
    );
    assert_eq!(after.malformed - before.malformed, model.malformed as u64);
    let malformed = errors
        .iter()
        .filter(|e| matches!(e, Error::Malformed { .. }))
        .count();
    let refused = errors
        .iter()
        .filter(|e| {
            matches!(
                e,
                Error::PayloadTooShort { .. }
                    | Error::TruncatedPayload { .. }
                    | Error::InvalidVerdict { .. }
            )
        })
        .count();
    assert_eq!(malformed, model.malformed, "{errors:?}");
    assert!(refused <= s.refusable - refusable_before, "{errors:?}");
    assert_eq!(
        errors.len() - malformed - refused,
        model.errors,
        "errors returned: {errors:?}"
    );
    for e in &errors {
        black_box(e.to_string());
    }
    (count, errors.len())
}
