//! Deferred verdicts: packets taken out of the callback as owned values and decided later, on
//! any thread; verdict batches for the threads that decide them.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use crate::attrs::{Family, Vlan};
use crate::counters::Count;
use crate::error::{Error, Result};
use crate::netlink::{self, AlignedBuf};
use crate::owned::{DeferCopy, OwnedAttrs};
use crate::packet::{Hook, Packet, SkbInfo};
use crate::socket::Shared;
use crate::verdict::Verdict;

/// Per-binding state shared by the handle and the binding's deferred packets.
///
/// One is made for every bind, so it names a *binding*, not a queue number: packet ids restart
/// at 1 when a number is bound again, and a deferred packet must never decide a packet of a later
/// binding. Its `live` flag is cleared (under the write lock) before the unbind is sent, and
/// every deferred verdict is sent under the read lock after checking it, so a verdict either
/// reaches the kernel while its binding exists or is not sent at all.
pub(crate) struct QueueState {
    /// The queue number.
    pub(crate) num: u16,
    /// The verdict for packets whose callback panicked, whose verdict was refused, or which
    /// were dropped without a verdict.
    pub(crate) fallback: Verdict,
    /// Deferred packets of this binding not decided yet. Only the receiving thread increments it
    /// (in [`Pending::defer`]); it is decremented once a deferred packet's verdict was sent (or
    /// will never be), so 0 means every deferred packet has left the kernel's queue.
    pub(crate) outstanding: AtomicUsize,
    /// Bound with `QueueFlags::CONNTRACK`: verdicts may carry a connection mark.
    conntrack: bool,
    /// `true` until the binding is retired (unbind, or a bind rolled back).
    live: RwLock<bool>,
    /// What [`Pending::defer`] copies.
    defer_copy: DeferCopy,
}

impl QueueState {
    pub(crate) fn new(
        num: u16,
        fallback: Verdict,
        conntrack: bool,
        defer_copy: DeferCopy,
    ) -> Arc<Self> {
        Arc::new(QueueState {
            num,
            fallback,
            outstanding: AtomicUsize::new(0),
            conntrack,
            live: RwLock::new(true),
            defer_copy,
        })
    }

    /// A read guard proving the binding is live while it is held (senders hold it across the
    /// send); `None` once it was retired.
    pub(crate) fn live(&self) -> Option<RwLockReadGuard<'_, bool>> {
        let guard = self.live.read().unwrap_or_else(|p| p.into_inner());
        (*guard).then_some(guard)
    }

    /// Marks the binding as gone, waiting for verdicts being sent under it to finish. From now
    /// on its deferred packets' verdicts are refused with [`Error::StaleBinding`].
    pub(crate) fn retire(&self) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = false;
    }

    /// Why `verdict` must not be sent for packet `id`, if it must not: a payload for a
    /// truncated copy (`Some((copied, original))`) would cut the packet, and one shorter than
    /// `min_payload` would make the kernel drop it; a connection mark needs a queue bound with
    /// `QueueFlags::CONNTRACK`. The packet then gets the fallback.
    pub(crate) fn refusal(
        &self,
        verdict: &Verdict,
        id: u32,
        truncated: Option<(usize, u32)>,
        min_payload: usize,
    ) -> Option<Error> {
        let queue = self.num;
        // A verdict that already knows it failed (a rewrite that could not be made).
        if let Some(err) = verdict.refusal() {
            return Some(err);
        }
        if let Some(payload) = verdict.payload() {
            if let Some((copied, original)) = truncated {
                return Some(Error::TruncatedPayload {
                    queue,
                    id,
                    copied,
                    original,
                });
            }
            if payload.len() < min_payload {
                return Some(Error::PayloadTooShort {
                    queue,
                    id,
                    len: payload.len(),
                    min: min_payload,
                });
            }
        }
        if verdict.conntrack_mark().is_some() && !self.conntrack {
            return Some(Error::InvalidVerdict {
                what: "a connection mark needs a queue bound with QueueFlags::CONNTRACK",
            });
        }
        None
    }

    pub(crate) fn has_outstanding(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) != 0
    }
}

/// The shortest replacement payload the kernel accepts for a packet: its headers up to the
/// transport header (`skb_transport_offset`), as far as the copied bytes or the protocol tell.
/// Anything shorter the kernel turns into a drop without telling anyone.
pub(crate) fn min_payload_len(packet: &Packet<'_>) -> usize {
    match packet.payload().first().map(|b| b >> 4) {
        Some(4) => usize::from(packet.payload()[0] & 0x0f).max(5) * 4,
        Some(6) => 40,
        _ => match packet.hw_protocol() {
            0x0800 => 20,
            0x86dd => 40,
            _ => 1,
        },
    }
}

/// A packet handed to a callback bound with
/// [`Handle::queue_deferrable`](crate::Handle::queue_deferrable): decide it now
/// ([`Pending::verdict`]) or take it out as a [`DeferredPacket`] to decide later
/// ([`Pending::defer`]). Either way the callback gets the [`Handled`] token it must return, so
/// every packet is accounted for exactly once.
///
/// It dereferences to [`Packet`] for reading.
pub struct Pending<'a> {
    packet: Packet<'a>,
    queue: &'a Arc<QueueState>,
    shared: &'a Arc<Shared>,
    deferred: &'a Cell<bool>,
}

/// Proof that a [`Pending`] packet was decided or deferred: the only value a deferrable
/// callback can return. It is tied to the packet's lifetime, so a token cannot be kept from one
/// call and returned for another packet:
///
/// ```compile_fail
/// use libnfq::{Handle, Handled, Pending, QueueConfig, Verdict};
/// let handle = Handle::open().unwrap();
/// let mut saved: Option<Handled<'_>> = None;
/// let _queue = handle.queue_deferrable(0, QueueConfig::new(), |pending: Pending<'_>| {
///     match saved.take() {
///         Some(token) => token, // error: the token belongs to another packet's lifetime
///         None => pending.verdict(Verdict::accept()),
///     }
/// });
/// ```
#[must_use = "return it from the callback"]
pub struct Handled<'a> {
    pub(crate) verdict: Option<Verdict>,
    _invariant: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(
        packet: Packet<'a>,
        queue: &'a Arc<QueueState>,
        shared: &'a Arc<Shared>,
        deferred: &'a Cell<bool>,
    ) -> Self {
        Pending {
            packet,
            queue,
            shared,
            deferred,
        }
    }

    /// Decides the packet now (sent with the other verdicts of this receive).
    #[doc(alias = "nfq_set_verdict")]
    pub fn verdict(self, verdict: Verdict) -> Handled<'a> {
        Handled {
            verdict: Some(verdict),
            _invariant: PhantomData,
        }
    }

    /// Accepts the packet now.
    pub fn accept(self) -> Handled<'a> {
        self.verdict(Verdict::accept())
    }

    /// Takes the packet out as an owned, `Send` value carrying its attributes and a copy of its
    /// payload (all of it, none or a prefix, as the queue's
    /// [`QueueConfig::defer_copy`](crate::QueueConfig::defer_copy) says), to decide later from
    /// any thread.
    pub fn defer(self) -> (DeferredPacket, Handled<'a>) {
        let copy = self.queue.defer_copy;
        self.defer_inner(copy)
    }

    /// Like [`Pending::defer`] without copying the payload (only the metadata), whatever the
    /// queue's setting: [`DeferCopy::Metadata`].
    pub fn defer_metadata(self) -> (DeferredPacket, Handled<'a>) {
        self.defer_inner(DeferCopy::Metadata)
    }

    /// Like [`Pending::defer`] with `copy` instead of the queue's setting, for this packet.
    pub fn defer_copying(self, copy: DeferCopy) -> (DeferredPacket, Handled<'a>) {
        self.defer_inner(copy)
    }

    fn defer_inner(self, copy: DeferCopy) -> (DeferredPacket, Handled<'a>) {
        let p = &self.packet;
        // Everything that may fail (allocate, read attributes) is done before the bookkeeping
        // below, so that a failure leaves the packet to its callback's caller (fallback).
        let (attrs, payload) = OwnedAttrs::copy(p, copy);
        // A prefix that left bytes out would cut the packet if written back, like a copy the
        // kernel truncated: a replacement payload is then refused.
        let cut_here = matches!(copy, DeferCopy::Prefix(_)) && payload.len() < p.payload().len();
        let truncation = if cut_here {
            Some((payload.len(), p.original_len()))
        } else {
            p.is_truncated()
                .then(|| (p.payload().len(), p.original_len()))
        };
        let mut owned = DeferredPacket {
            meta: Meta {
                queue: p.queue_num(),
                id: p.id(),
                attrs,
            },
            payload,
            ticket: None,
        };
        let min_payload = min_payload_len(p);
        self.queue.outstanding.fetch_add(1, Ordering::AcqRel);
        self.deferred.set(true);
        owned.ticket = Some(Ticket {
            shared: Arc::clone(self.shared),
            queue: Arc::clone(self.queue),
            truncation,
            min_payload,
        });
        (
            owned,
            Handled {
                verdict: None,
                _invariant: PhantomData,
            },
        )
    }
}

impl<'a> Deref for Pending<'a> {
    type Target = Packet<'a>;
    fn deref(&self) -> &Packet<'a> {
        &self.packet
    }
}

impl fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pending").field(&self.packet).finish()
    }
}

/// What it takes to send a deferred packet's verdict: the socket, the binding, and what the
/// checks of a verdict need to know about the packet.
struct Ticket {
    shared: Arc<Shared>,
    queue: Arc<QueueState>,
    /// `(copied, original)` lengths when the copy was truncated.
    truncation: Option<(usize, u32)>,
    /// See [`min_payload_len`].
    min_payload: usize,
}

impl Ticket {
    /// The verdict to send for packet `id`: `verdict`, or the fallback with the reason it was
    /// refused.
    fn checked<'v>(&'v self, verdict: &'v Verdict, id: u32) -> (&'v Verdict, Option<Error>) {
        match self
            .queue
            .refusal(verdict, id, self.truncation, self.min_payload)
        {
            Some(err) => {
                self.shared.counters.bump(Count::FallbackRefused);
                (&self.queue.fallback, Some(err))
            }
            None => (verdict, None),
        }
    }

    /// Sends `verdict` for packet `id` while the binding is live. `Ok(false)`: the binding is
    /// gone and nothing was sent (counted as stale).
    fn send(&self, id: u32, verdict: &Verdict) -> Result<bool> {
        // Lock order: the socket, then the binding (as in `VerdictBatch::flush`).
        let sock = self.shared.get()?;
        let Some(_live) = self.queue.live() else {
            self.shared.counters.bump(Count::StaleDiscarded);
            return Ok(false);
        };
        let msg = verdict.msg();
        let sent = with_scratch(msg.len(), |buf| {
            netlink::put_verdict(buf, self.queue.num, id, &msg);
            sock.send(buf.as_slice())
        });
        match sent {
            Ok(()) => {
                self.shared.counters.bump(Count::Verdicts);
                Ok(true)
            }
            Err(e) => {
                self.shared.counters.bump(Count::SendErrors);
                Err(Error::io("send verdict", e))
            }
        }
    }

    /// The packet left the books: decided, or never to be.
    fn settle(self) {
        self.queue.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone, Debug)]
struct Meta {
    queue: u16,
    id: u32,
    /// Every attribute but the payload (see [`OwnedAttrs`]).
    attrs: OwnedAttrs,
}

/// A packet taken out of its callback ([`Pending::defer`]): owned, `Send`, and carrying what it
/// takes to send its verdict from any thread.
///
/// [`DeferredPacket::verdict`] consumes it, so a packet cannot be decided twice. Dropped
/// without a verdict, it gets its queue's fallback verdict ([`QueueConfig::fallback`], drop by
/// default), so no packet is forgotten. After its [`Handle`](crate::Handle) was dropped (the
/// kernel then released the packet), a verdict returns [`Error::HandleClosed`].
///
/// [`QueueConfig::fallback`]: crate::QueueConfig::fallback
pub struct DeferredPacket {
    meta: Meta,
    payload: Vec<u8>,
    ticket: Option<Ticket>,
}

// Compile-time proof that deferred packets can cross threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<DeferredPacket>();
};

impl DeferredPacket {
    /// A borrowed [`Packet`] view of the owned copy, with every accessor a packet has in its
    /// callback (the payload being what [`DeferCopy`] kept). Each call walks the copied
    /// attributes once: keep the view to read several of them.
    pub fn packet(&self) -> Packet<'_> {
        self.meta.attrs.view(self.meta.queue, &self.payload)
    }

    /// The packet id.
    pub fn id(&self) -> u32 {
        self.meta.id
    }
    /// The queue number.
    pub fn queue_num(&self) -> u16 {
        self.meta.queue
    }
    /// See [`Packet::family`].
    pub fn family(&self) -> Family {
        self.packet().family()
    }
    /// See [`Packet::hw_protocol`].
    pub fn hw_protocol(&self) -> u16 {
        self.packet().hw_protocol()
    }
    /// See [`Packet::hook`].
    pub fn hook(&self) -> Hook {
        self.packet().hook()
    }
    /// See [`Packet::mark`].
    pub fn mark(&self) -> u32 {
        self.packet().mark()
    }
    /// See [`Packet::indev`].
    pub fn indev(&self) -> Option<u32> {
        self.packet().indev()
    }
    /// See [`Packet::outdev`].
    pub fn outdev(&self) -> Option<u32> {
        self.packet().outdev()
    }
    /// See [`Packet::physindev`].
    pub fn physindev(&self) -> Option<u32> {
        self.packet().physindev()
    }
    /// See [`Packet::physoutdev`].
    pub fn physoutdev(&self) -> Option<u32> {
        self.packet().physoutdev()
    }
    /// See [`Packet::uid`].
    pub fn uid(&self) -> Option<u32> {
        self.packet().uid()
    }
    /// See [`Packet::gid`].
    pub fn gid(&self) -> Option<u32> {
        self.packet().gid()
    }
    /// See [`Packet::secctx`].
    pub fn secctx(&self) -> Option<&[u8]> {
        self.packet().secctx()
    }
    /// See [`Packet::skb_info`].
    pub fn skb_info(&self) -> SkbInfo {
        self.packet().skb_info()
    }
    /// See [`Packet::timestamp`].
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.packet().timestamp()
    }
    /// See [`Packet::hw_addr`].
    pub fn hw_addr(&self) -> Option<&[u8]> {
        self.packet().hw_addr()
    }
    /// The copied payload: all of it, none ([`Pending::defer_metadata`], [`DeferCopy::Metadata`],
    /// or meta copy mode) or its first bytes ([`DeferCopy::Prefix`]).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The packet's length as queued (see [`Packet::original_len`]), also when the owned copy
    /// left payload bytes out.
    pub fn original_len(&self) -> u32 {
        self.packet().original_len()
    }
    /// `true` when [`DeferredPacket::payload`] is shorter than the packet: the kernel's copy
    /// range cut it, or the owned copy left bytes out ([`DeferCopy`]).
    pub fn is_truncated(&self) -> bool {
        self.packet().is_truncated()
    }
    /// See [`Packet::conntrack`].
    pub fn conntrack(&self) -> Option<crate::conntrack::Conntrack<'_>> {
        self.packet().conntrack()
    }
    /// See [`Packet::conntrack_info`].
    pub fn conntrack_info(&self) -> Option<crate::conntrack::CtInfo> {
        self.packet().conntrack_info()
    }
    /// See [`Packet::exp`].
    pub fn exp(&self) -> Option<&[u8]> {
        self.packet().exp()
    }
    /// See [`Packet::vlan`].
    pub fn vlan(&self) -> Option<Vlan> {
        self.packet().vlan()
    }
    /// See [`Packet::l2_header`].
    pub fn l2_header(&self) -> Option<&[u8]> {
        self.packet().l2_header()
    }
    /// See [`Packet::priority`].
    pub fn priority(&self) -> Option<u32> {
        self.packet().priority()
    }
    /// See [`Packet::raw_attr`]: every attribute the kernel sent is in the owned copy (the
    /// payload as far as it was copied).
    pub fn raw_attr(&self, nfqa: u16) -> Option<&[u8]> {
        self.packet().raw_attr(nfqa)
    }

    /// A sender for range verdicts and batches on the same handle.
    pub fn sender(&self) -> VerdictSender {
        let ticket = self
            .ticket
            .as_ref()
            .expect("a live DeferredPacket has its ticket");
        VerdictSender {
            shared: Arc::clone(&ticket.shared),
        }
    }

    /// Sends the verdict for this packet, now, from the calling thread.
    ///
    /// A verdict with a replacement payload for a packet whose copy was truncated is refused
    /// ([`Error::TruncatedPayload`]), and so is a connection mark for a queue bound without
    /// [`QueueFlags::CONNTRACK`](crate::QueueFlags::CONNTRACK) ([`Error::InvalidVerdict`]); the
    /// packet then gets its queue's fallback verdict. The
    /// kernel's answer to a failed verdict (e.g. [`Error::UnknownPacket`]) arrives on the
    /// receiving thread, from [`Handle::process`](crate::Handle::process).
    #[doc(alias = "nfq_set_verdict")]
    pub fn verdict(mut self, verdict: Verdict) -> Result<()> {
        let ticket = self
            .ticket
            .take()
            .expect("a live DeferredPacket has its ticket");
        let id = self.meta.id;
        let (verdict, refused) = ticket.checked(&verdict, id);
        let sent = ticket.send(id, verdict);
        ticket.settle();
        match sent {
            Ok(true) => refused.map_or(Ok(()), Err),
            Ok(false) => Err(Error::StaleBinding {
                queue: self.meta.queue,
                id,
            }),
            Err(e) => Err(e),
        }
    }

    /// Accepts the packet.
    pub fn accept(self) -> Result<()> {
        self.verdict(Verdict::accept())
    }
}

impl Drop for DeferredPacket {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Nothing to report to from a destructor. A binding that is gone gets nothing (its
            // packet was released, and the id may name a packet of a later binding); after the
            // handle closed, the kernel has released the packet anyway.
            if let Ok(true) = ticket.send(self.meta.id, &ticket.queue.fallback) {
                ticket.shared.counters.bump(Count::FallbackUndecided);
            }
            ticket.settle();
        }
    }
}

impl fmt::Debug for DeferredPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredPacket")
            .field("queue", &self.meta.queue)
            .field("id", &self.meta.id)
            .field("hook", &self.hook())
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Reused buffer for single deferred verdicts, so that deciding a packet does not allocate.
    static SCRATCH: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::with_capacity(256));
}

/// Runs `build` on an empty buffer: this thread's reused one when it is there, else a fresh
/// one. Verdicts are sent from destructors too, including those of thread-locals, where the
/// scratch buffer may already be gone (or be in use, one frame up): never panic for that.
fn with_scratch<R>(len: usize, build: impl FnOnce(&mut AlignedBuf) -> R) -> R {
    let mut build = Some(build);
    let reused = SCRATCH.try_with(|scratch| {
        let mut buf = scratch.try_borrow_mut().ok()?;
        buf.clear();
        let result = (build.take().expect("called once"))(&mut buf);
        buf.clear();
        buf.shrink_if_large();
        Some(result)
    });
    match reused {
        Ok(Some(result)) => result,
        _ => (build.take().expect("not called yet"))(&mut AlignedBuf::with_capacity(len)),
    }
}

fn send(shared: &Shared, buf: &AlignedBuf) -> Result<()> {
    shared
        .get()?
        .send(buf.as_slice())
        .map_err(|e| Error::io("send verdict", e))
}

/// Sends verdicts on a handle's socket from any thread: range verdicts, and batches of
/// deferred verdicts. `Clone + Send + Sync`; get one from
/// [`Handle::verdict_sender`](crate::Handle::verdict_sender) or [`DeferredPacket::sender`].
///
/// The kernel accepts verdicts only from the socket that bound the queue, so this shares the
/// handle's socket rather than opening another. After the handle was dropped, every send
/// returns [`Error::HandleClosed`].
#[derive(Clone)]
pub struct VerdictSender {
    pub(crate) shared: Arc<Shared>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VerdictSender>();
};

impl VerdictSender {
    /// Decides **every** packet still queued in `queue` with an id up to `up_to_id` (in the
    /// kernel's wrap-around order) with `verdict`'s action and mark, in one message
    /// (`NFQNL_MSG_VERDICT_BATCH`).
    ///
    /// This also decides deferred packets of that queue that are still held somewhere: their
    /// own verdicts later fail with [`Error::UnknownPacket`]. A verdict with a payload is
    /// refused ([`Error::InvalidVerdict`]): the kernel's range verdict carries none.
    #[doc(alias = "nfq_set_verdict_batch")]
    #[doc(alias = "nfq_set_verdict_batch2")]
    pub fn range_verdict(&self, queue: u16, up_to_id: u32, verdict: &Verdict) -> Result<()> {
        if verdict.payload().is_some() {
            return Err(Error::InvalidVerdict {
                what: "a range verdict cannot carry a payload",
            });
        }
        let mut buf = AlignedBuf::with_capacity(64);
        netlink::put_batch_verdict(
            &mut buf,
            queue,
            up_to_id,
            verdict.action().raw(),
            verdict.mark(),
        );
        send(&self.shared, &buf)?;
        self.shared.counters.bump(Count::RangeVerdicts);
        Ok(())
    }

    /// A snapshot of the counters of the handle this sender belongs to (see
    /// [`Handle::counters`](crate::Handle::counters)).
    pub fn counters(&self) -> crate::Counters {
        self.shared.counters.snapshot()
    }

    /// `true` once the handle was dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.get().is_err()
    }

    /// A batch that collects verdicts and sends up to `max_packets` of them in one system call.
    pub fn batch(&self, max_packets: usize) -> VerdictBatch {
        VerdictBatch {
            shared: Arc::clone(&self.shared),
            buf: AlignedBuf::with_capacity(4096),
            entries: Vec::with_capacity(max_packets.clamp(1, 1024)),
            max_packets: max_packets.max(1),
        }
    }
}

impl fmt::Debug for VerdictSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictSender")
            .field("portid", &self.shared.portid)
            .finish_non_exhaustive()
    }
}

/// Verdicts for deferred packets, collected and sent several at a time in one `sendmsg`:
/// flushed when `max_packets` are collected, when they would exceed 64 KiB, on
/// [`VerdictBatch::flush`], and on drop.
///
/// ```no_run
/// # use libnfq::{DeferredPacket, Verdict};
/// # fn worker(packets: std::sync::mpsc::Receiver<DeferredPacket>, sender: libnfq::VerdictSender) -> libnfq::Result<()> {
/// let mut batch = sender.batch(64);
/// while let Ok(packet) = packets.try_recv() {
///     batch.push(packet, Verdict::accept())?;
/// }
/// batch.flush()?; // the channel is empty: send what was collected
/// # Ok(()) }
/// ```
pub struct VerdictBatch {
    shared: Arc<Shared>,
    buf: AlignedBuf,
    /// One per message in `buf`: the packet's binding and where its message ends.
    entries: Vec<(Arc<QueueState>, usize)>,
    max_packets: usize,
}

const FLUSH_BYTES: usize = 64 * 1024;

impl VerdictBatch {
    /// Adds a packet's verdict; sends the batch when it is full. A packet of another handle is
    /// decided on its own, at once. A refused verdict ([`Error::TruncatedPayload`],
    /// [`Error::PayloadTooShort`], [`Error::InvalidVerdict`]) is replaced by the queue's
    /// fallback and reported. A packet of an earlier binding of its queue is not added
    /// ([`Error::StaleBinding`]); one whose binding goes away before the batch is sent is left
    /// out then (and counted in [`Counters::stale_discarded`](crate::Counters::stale_discarded)).
    #[doc(alias = "nfq_set_verdict")]
    pub fn push(&mut self, mut packet: DeferredPacket, verdict: Verdict) -> Result<()> {
        if !Arc::ptr_eq(
            &packet.ticket.as_ref().expect("live ticket").shared,
            &self.shared,
        ) {
            return packet.verdict(verdict);
        }
        let ticket = packet.ticket.take().expect("live ticket");
        let id = packet.meta.id;
        if ticket.queue.live().is_none() {
            self.shared.counters.bump(Count::StaleDiscarded);
            ticket.settle();
            return Err(Error::StaleBinding {
                queue: packet.meta.queue,
                id,
            });
        }
        let (verdict, refused) = ticket.checked(&verdict, id);
        let msg = verdict.msg();
        let mut result = Ok(());
        if !self.buf.is_empty() && self.buf.len() + msg.len() > FLUSH_BYTES {
            result = self.flush();
        }
        netlink::put_verdict(&mut self.buf, packet.meta.queue, id, &msg);
        // The batch now holds the packet's place in the books: `flush` settles it.
        self.entries.push((ticket.queue, self.buf.len()));
        if self.entries.len() >= self.max_packets {
            result = result.and(self.flush());
        }
        result.and(refused.map_or(Ok(()), Err))
    }

    /// Sends the collected verdicts now, leaving out those whose binding went away since they
    /// were added.
    pub fn flush(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let sock = match self.shared.get() {
            Ok(sock) => sock,
            Err(e) => {
                // The handle is gone, and with it every packet: nothing to send.
                self.buf.clear();
                for (queue, _) in self.entries.drain(..) {
                    queue.outstanding.fetch_sub(1, Ordering::AcqRel);
                }
                return Err(e);
            }
        };
        // Hold every binding's read lock across the send (each lock once: a second read lock of
        // the same lock could wait behind a writer), so none can be unbound meanwhile.
        let mut bindings: Vec<&Arc<QueueState>> = Vec::new();
        for (queue, _) in &self.entries {
            if !bindings.iter().any(|b| Arc::ptr_eq(b, queue)) {
                bindings.push(queue);
            }
        }
        let guards: Vec<_> = bindings.iter().map(|b| (*b, b.live())).collect();
        let is_live = |queue: &Arc<QueueState>| {
            guards
                .iter()
                .any(|(b, guard)| Arc::ptr_eq(b, queue) && guard.is_some())
        };
        let stale = self.entries.iter().filter(|(q, _)| !is_live(q)).count();
        let sent = self.entries.len() - stale;
        let send = |buf: &AlignedBuf| {
            sock.send(buf.as_slice())
                .map_err(|e| Error::io("send verdicts", e))
        };
        let result = if stale == 0 {
            send(&self.buf)
        } else {
            let mut live = AlignedBuf::with_capacity(self.buf.len());
            let mut start = 0;
            for (queue, end) in &self.entries {
                if is_live(queue) {
                    let bytes = &self.buf.as_slice()[start..*end];
                    let at = live.len();
                    live.reserve(bytes.len());
                    live.whole_mut()[at..at + bytes.len()].copy_from_slice(bytes);
                    live.set_len(at + bytes.len());
                }
                start = *end;
            }
            self.shared
                .counters
                .add(Count::StaleDiscarded, stale as u64);
            if live.is_empty() {
                Ok(())
            } else {
                send(&live)
            }
        };
        drop(guards);
        drop(sock);
        match &result {
            Ok(()) => self.shared.counters.add(Count::Verdicts, sent as u64),
            Err(_) => self.shared.counters.bump(Count::SendErrors),
        }
        self.buf.clear();
        self.buf.shrink_if_large();
        for (queue, _) in self.entries.drain(..) {
            queue.outstanding.fetch_sub(1, Ordering::AcqRel);
        }
        result
    }

    /// Number of verdicts collected and not sent yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when no verdict waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Drop for VerdictBatch {
    fn drop(&mut self) {
        // Nothing to report to from a destructor; `flush` gives the result to who wants it.
        let _ = self.flush();
    }
}

impl fmt::Debug for VerdictBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictBatch")
            .field("pending", &self.entries.len())
            .finish_non_exhaustive()
    }
}
