//! `Handle`: the netlink socket, its buffers, the queue registry and the receive loop.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batching::{self, DEFAULT_BATCH_LIMIT, DEFAULT_BATCH_TIME_LIMIT};
use crate::config::{QueueConfig, QueueFlags};
use crate::counters::{Count, Counters};
use crate::deferred::{min_payload_len, Handled, Pending, QueueState, VerdictSender};
use crate::error::{Error, Result, OP_BIND, OP_CONFIG, OP_UNBIND, OP_VERDICT};
use crate::netlink::{self, AlignedBuf, Answer, ConfigMsg, Message, VerdictMsg};
use crate::packet::Packet;
use crate::queue::Queue;
use crate::socket::{self, Shared, Socket, SocketGuard};
use crate::stop::Shutdown;
use crate::verdict::{Action, Verdict};

/// Default size of the receive buffer: the largest packet message (a 65531-byte payload plus
/// every metadata attribute) with room to spare.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024 + 8 * 1024;
/// The receive buffer [`Handle::open`] asks for: 8 MiB absorb a burst of thousands of full-size
/// packet messages instead of losing them (`ENOBUFS`).
pub const DEFAULT_RECV_BUFFER: usize = 8 << 20;
#[cfg(feature = "fuzzing")]
mod fuzzing;

const SEND_BUFFER_SIZE: usize = 8 * 1024;
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The kernel's queue length when the config sets none.
const KERNEL_DEFAULT_MAX_LEN: u32 = 1024;
/// The most [`Handle::fit_recv_buffer`] asks for on its own: 64 MiB.
const MAX_AUTO_RECV_BUFFER: usize = 64 << 20;
/// The largest receive buffer [`Handle::set_buffer_size`] sets: far above the largest message
/// the kernel sends (one packet of at most 65531 bytes with its metadata).
const MAX_BUFFER_SIZE: usize = 4 << 20;

/// The callback a [`Queue`] stores.
enum Callback<'cb> {
    /// [`Handle::queue`]: decides every packet at once.
    Verdict(Box<dyn FnMut(&Packet<'_>) -> Verdict + Send + 'cb>),
    /// [`Handle::queue_deferrable`]: decides or defers.
    Deferrable(Box<dyn for<'a> FnMut(Pending<'a>) -> Handled<'a> + Send + 'cb>),
}

/// Consecutive packets of one queue decided with the same plain verdict, not sent yet: they
/// go to the kernel as one range verdict (`NFQNL_MSG_VERDICT_BATCH`) up to `last`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Run {
    action: Action,
    mark: Option<u32>,
    last: u32,
    count: u32,
}

struct Slot<'cb> {
    num: u16,
    /// Tells a re-bound queue number from the queue a `Queue` value was created for.
    generation: u64,
    /// `None` while the callback runs (it is taken out so that the registry is not borrowed
    /// during the call).
    callback: Option<Callback<'cb>>,
    /// The binding, shared with its deferred packets; retired when the slot is removed.
    state: Arc<QueueState>,
    run: Option<Run>,
    /// The queue's maximum length, when the config set one.
    max_len: Option<u32>,
    /// What one packet message of this queue costs in the socket's receive buffer.
    message_cost: usize,
    /// Registered for fuzzing, not bound in the kernel.
    fuzzing: bool,
}

/// Owns the shared socket: closes it when the handle is dropped, even while verdict senders
/// on other threads still hold the shared cell.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// State of one dispatch pass.
#[derive(Default)]
struct Dispatch {
    packets: usize,
    panic: Option<Box<dyn Any + Send + 'static>>,
    /// The verdicts were sent once after the pass's first packet.
    flushed_first: bool,
    /// The pass continues the backlog of the pass before it (see [`batching`]).
    continued: bool,
}

/// How the first receive of a `process` call waits.
#[derive(Clone, Copy)]
enum Wait<'a> {
    /// As the socket is set up: blocking unless non-blocking or with a receive timeout.
    Socket,
    /// Not at all.
    Never,
    /// Until a packet arrives or the shutdown triggers.
    Until(&'a Shutdown),
}

/// A netlink socket connected to the kernel's NFQUEUE subsystem, holding the queues bound on it.
///
/// Bind queues with [`Handle::queue`] (or [`Handle::queue_deferrable`]), then drive the handle
/// with [`Handle::run`] / [`Handle::run_until`] (blocking) or [`Handle::process`] (for event
/// loops). Dropping the handle closes the socket; the kernel then unbinds its queues and
/// **drops** every packet still waiting for a verdict.
///
/// `'cb` is the lifetime of the callbacks: they may borrow local state that outlives the
/// handle. A handle stored in a struct is usually `Handle<'static>`.
///
/// The handle is `Send` (it can be moved to another thread with its callbacks, which must
/// therefore be `Send`) but not `Sync`: receiving and dispatching use buffers it owns. Its
/// [`Queue`]s borrow it, so move the handle before binding queues (or bind them in the thread
/// that runs it). Other threads send verdicts through a [`VerdictSender`] or
/// [`DeferredPacket`](crate::DeferredPacket)s.
///
/// # Batching
///
/// Each `process` call receives what is waiting, up to [`Handle::set_batch_limit`] packets
/// (default 256), and dispatches it. The verdict of the pass's first packet is sent at once (the
/// head of a burst never waits for the packets behind it); later verdicts are gathered and sent
/// together when the oldest has waited [`Handle::set_batch_time_limit`] (default 50 µs), and
/// at the end of the pass: cheap callbacks share few system calls, slow ones get their verdicts
/// out about as soon as they are decided. Past the first 64 packets of a pass (a backlog: the
/// socket kept yielding packets without waiting) a verdict may wait 8 times the limit (400 µs
/// by default), so that draining a backlog does not pay a system call, and a wake-up of the
/// packets' receiver, every 50 µs. Consecutive
/// packets of a queue decided with the same plain verdict (no payload) are decided by one
/// range verdict, but only while no deferred packet of that queue is outstanding, since a range
/// verdict decides every queued packet up to its id. [`Handle::set_range_verdicts`] turns that
/// off; a batch limit of 1 sends each verdict as soon as its callback returned.
///
/// # Callbacks are `Send`
///
/// The handle can be moved to another thread with its callbacks, so they must be `Send`, even
/// in a single-threaded program: an `Rc` or a `RefCell` captured by reference fails with
/// `E0277` ("cannot be sent between threads safely"). Use `Arc` and `Mutex` or atomics, or
/// [`Receiver`](crate::Receiver) and decide in your own loop; see the crate documentation,
/// "Callbacks must be `Send`".
///
/// ```compile_fail
/// fn shared<T: Sync>(_: &T) {}
/// let handle = libnfq::Handle::open().unwrap();
/// shared(&handle); // error: `Handle` is not `Sync`
/// ```
///
/// ```compile_fail
/// use libnfq::{Handle, QueueConfig, Verdict};
/// let queue;
/// {
///     let handle = Handle::open().unwrap();
///     queue = handle.queue(0, QueueConfig::new(), |_| Verdict::accept()).unwrap();
/// } // error: `handle` dropped here while still borrowed by `queue`
/// drop(queue);
/// ```
#[doc(alias = "nfq_handle")]
#[doc(alias = "mnl_socket")]
#[doc(alias = "nfq_close")]
#[doc(alias = "mnl_socket_close")]
pub struct Handle<'cb> {
    owner: Owner,
    recv: RefCell<AlignedBuf>,
    send: RefCell<AlignedBuf>,
    /// Single messages received while waiting for an acknowledgement, dispatched next.
    backlog: RefCell<VecDeque<AlignedBuf>>,
    /// Errors found while dispatching, returned one per call.
    errors: RefCell<VecDeque<Error>>,
    queues: RefCell<Vec<Slot<'cb>>>,
    /// Queue numbers unbound without waiting for the kernel's answer, with the sequence number
    /// of that unbind: packet messages of these queues that arrive before the answer were sent
    /// before the unbind, and the kernel released their packets.
    released: RefCell<Vec<(u16, u32)>>,
    /// A decided verdict waits in the send buffer or a range run.
    holding: Cell<bool>,
    /// Since when (the first flush check after it was decided; `None`: not checked yet).
    held_since: Cell<Option<Instant>>,
    batch_time: Cell<Duration>,
    /// The last pass stopped at its limit with packets possibly still waiting (a backlog).
    draining: Cell<bool>,
    /// The receive buffer grows with the bound queues (until the user sets its size).
    auto_recv_buffer: Cell<bool>,
    /// Fuzzing only: verdicts are discarded instead of sent.
    discard: Cell<bool>,
    /// Fuzzing only: a fuzzing pass, which dispatches to fuzzing registrations only.
    fuzzing: Cell<bool>,
    seq: Cell<u32>,
    generation: Cell<u64>,
    ack_timeout: Cell<Duration>,
    batch_limit: Cell<usize>,
    /// The batch limit in force for the current pass (see `Handle::batch_limit`).
    pass_limit: Cell<usize>,
    range_verdicts: Cell<bool>,
}

// Compile-time proof of the thread-safety claims above.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Handle<'static>>();
};

impl<'cb> Handle<'cb> {
    /// Opens a netlink socket to the NFQUEUE subsystem, with a receive buffer of
    /// [`DEFAULT_RECV_BUFFER`] where the kernel allows it (see
    /// [`Handle::set_recv_buffer_size`]).
    ///
    /// Opening needs no privilege; binding a queue needs `CAP_NET_ADMIN` in the network
    /// namespace. The socket is connected to the kernel: the kernel refuses datagrams that
    /// another socket addresses to it, so only the kernel can feed the handle.
    #[doc(alias = "nfq_open")]
    #[doc(alias = "mnl_socket_open")]
    pub fn open() -> Result<Self> {
        Ok(Handle::with_socket(Socket::open()?))
    }

    /// A handle around an open, bound netlink socket (see [`Handle::open`]).
    pub(crate) fn with_socket(sock: Socket) -> Self {
        let handle = Handle {
            owner: Owner(Arc::new(Shared::new(sock))),
            recv: RefCell::new(AlignedBuf::with_capacity(DEFAULT_BUFFER_SIZE)),
            send: RefCell::new(AlignedBuf::with_capacity(SEND_BUFFER_SIZE)),
            backlog: RefCell::new(VecDeque::new()),
            errors: RefCell::new(VecDeque::new()),
            queues: RefCell::new(Vec::new()),
            released: RefCell::new(Vec::new()),
            holding: Cell::new(false),
            held_since: Cell::new(None),
            batch_time: Cell::new(DEFAULT_BATCH_TIME_LIMIT),
            draining: Cell::new(false),
            auto_recv_buffer: Cell::new(true),
            discard: Cell::new(false),
            fuzzing: Cell::new(false),
            seq: Cell::new(0),
            generation: Cell::new(0),
            ack_timeout: Cell::new(DEFAULT_ACK_TIMEOUT),
            batch_limit: Cell::new(DEFAULT_BATCH_LIMIT),
            pass_limit: Cell::new(DEFAULT_BATCH_LIMIT),
            range_verdicts: Cell::new(true),
        };
        // Best effort: without CAP_NET_ADMIN the kernel caps it at `net.core.rmem_max`, and
        // binding (which needs the capability) fails later with a clear error anyway.
        let _ = handle.apply_recv_buffer_size(DEFAULT_RECV_BUFFER);
        handle
    }

    /// The socket's fd, for the receive path's system calls ([`socket::recv_on`] and co.),
    /// which need not lock the shared cell: only the handle's drop closes the socket, so the
    /// fd is open as long as `self` is.
    fn fd(&self) -> RawFd {
        self.owner.0.fd
    }

    /// The open socket. Only the handle closes it (when dropped), so from `&self` it is open.
    fn sock(&self) -> SocketGuard<'_> {
        self.owner
            .0
            .get()
            .expect("the handle's socket is open while the handle lives")
    }

    /// Binds queue `num` with `config`, dispatching its packets to `callback`, which decides
    /// each packet at once.
    ///
    /// The bind, the copy mode, the maximum length and the flags go to the kernel in one
    /// message, so the queue never runs with the kernel's after-bind copy mode `NONE` (which
    /// drops every packet). The returned [`Queue`] unbinds the queue when dropped, before the
    /// callback is freed.
    ///
    /// Errors: [`Error::PermissionDenied`] without `CAP_NET_ADMIN`, [`Error::QueueOwnedByOther`]
    /// when another socket has bound `num`, [`Error::QueueAlreadyBound`] when this handle has,
    /// [`Error::Kernel`] with `EOPNOTSUPP` for flags the kernel does not support.
    #[doc(alias = "nfq_create_queue")]
    #[doc(alias = "NFQNL_CFG_CMD_BIND")]
    #[doc(alias = "nfq_nlmsg_cfg_put_cmd")]
    pub fn queue<F>(&self, num: u16, config: QueueConfig, callback: F) -> Result<Queue<'_, 'cb>>
    where
        F: FnMut(&Packet<'_>) -> Verdict + Send + 'cb,
    {
        self.bind(num, config, Callback::Verdict(Box::new(callback)))
    }

    /// Binds queue `num` like [`Handle::queue`], with a callback that may also **defer** a
    /// packet: take it out as an owned [`DeferredPacket`](crate::DeferredPacket) and decide it
    /// later, from any thread, while this handle goes on receiving.
    ///
    /// ```no_run
    /// use libnfq::{Handle, Pending, QueueConfig};
    /// # fn main() -> libnfq::Result<()> {
    /// let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    /// std::thread::spawn(move || {
    ///     for packet in rx {
    ///         let packet: libnfq::DeferredPacket = packet;
    ///         let _ = packet.accept(); // decided on another thread
    ///     }
    /// });
    /// let handle = Handle::open()?;
    /// let _queue = handle.queue_deferrable(0, QueueConfig::new(), move |pending: Pending<'_>| {
    ///     if pending.payload().len() < 64 {
    ///         return pending.accept(); // small packets: decide now
    ///     }
    ///     let (packet, handled) = pending.defer();
    ///     tx.send(packet).expect("worker alive");
    ///     handled
    /// })?;
    /// handle.run()
    /// # }
    /// ```
    #[doc(alias = "nfq_create_queue")]
    #[doc(alias = "nfq_nlmsg_cfg_put_cmd")]
    pub fn queue_deferrable<F>(
        &self,
        num: u16,
        config: QueueConfig,
        callback: F,
    ) -> Result<Queue<'_, 'cb>>
    where
        F: for<'a> FnMut(Pending<'a>) -> Handled<'a> + Send + 'cb,
    {
        self.bind(num, config, Callback::Deferrable(Box::new(callback)))
    }

    fn bind(
        &self,
        num: u16,
        config: QueueConfig,
        callback: Callback<'cb>,
    ) -> Result<Queue<'_, 'cb>> {
        let generation = self.bind_detached(num, config, callback)?;
        Ok(Queue::new(self, num, generation))
    }

    /// Binds a queue without a `Queue` guard and returns its generation (for `unbind`). The
    /// queue stays bound until unbound or the handle is dropped.
    ///
    /// A bind either registers a usable binding or leaves none: an answer lost to a receive
    /// buffer overrun is asked for again, and a bind that times out is rolled back.
    fn bind_detached(&self, num: u16, config: QueueConfig, callback: Callback<'cb>) -> Result<u64> {
        config.validate()?;
        if self.queues.borrow().iter().any(|s| s.num == num) {
            return Err(Error::QueueAlreadyBound { queue: num });
        }
        if self.released.borrow().iter().any(|&(n, _)| n == num) {
            // Messages of the previous binding may still be on their way: an unbind answered
            // after them marks where they end, so none is taken for the new binding's.
            self.request(unbind_msg(num), OP_UNBIND)?;
            self.forget_released(num);
        }
        let flags = config.flags.bits();
        let bind = ConfigMsg {
            queue: num,
            seq: 0,
            ack: true,
            cmd: Some(netlink::CMD_BIND),
            params: Some(config.copy_mode.raw()),
            max_len: config.max_len,
            flags: (flags != 0).then_some(flags),
        };
        let (answer, resent) = match self.request(bind, OP_BIND) {
            Ok(answered) => answered,
            Err(e) => {
                // The kernel may have bound the queue before the answer went missing: undo it,
                // so that no binding without a callback is left behind.
                if matches!(e, Error::Timeout { .. } | Error::Io { .. }) {
                    self.unbind_unwaited(num);
                }
                return Err(e);
            }
        };
        // Asked twice because the first answer was lost: EBUSY says the first one bound it
        // (this handle had no binding of `num` before).
        if answer.errno != 0 && !(resent && answer.errno == libc::EBUSY) {
            return Err(config_error(OP_BIND, num, answer.errno, config.flags));
        }
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let message_cost = config.message_cost();
        self.queues.borrow_mut().push(Slot {
            num,
            generation,
            callback: Some(callback),
            state: QueueState::new(
                num,
                config.fallback,
                config.flags.contains(QueueFlags::CONNTRACK),
                config.defer_copy,
            ),
            run: None,
            max_len: config.max_len,
            message_cost,
            fuzzing: false,
        });
        self.fit_recv_buffer();
        Ok(generation)
    }

    /// [`Handle::queue_deferrable`] without a `Queue` guard, for owners of a handle that cannot
    /// also hold a guard borrowing it.
    pub(crate) fn bind_deferrable_detached<F>(
        &self,
        num: u16,
        config: QueueConfig,
        callback: F,
    ) -> Result<u64>
    where
        F: for<'a> FnMut(Pending<'a>) -> Handled<'a> + Send + 'cb,
    {
        self.bind_detached(num, config, Callback::Deferrable(Box::new(callback)))
    }

    /// A sender for verdicts from other threads on this handle's socket (range verdicts,
    /// batches). It stays valid after the handle is dropped, but then every send fails with
    /// [`Error::HandleClosed`].
    pub fn verdict_sender(&self) -> VerdictSender {
        VerdictSender {
            shared: Arc::clone(&self.owner.0),
        }
    }

    /// A snapshot of what this handle (and every sender on its socket) counted: packets,
    /// verdicts, fallbacks and why, overruns, the kernel's late errors. Cheap and lock-free;
    /// see [`Counters`].
    pub fn counters(&self) -> Counters {
        self.owner.0.counters.snapshot()
    }

    /// Unbinds queue `num` and forgets its slot. Called by `Queue`.
    ///
    /// Verdicts already decided are sent first; the binding is retired (its deferred packets'
    /// verdicts are refused from now on) before the unbind is sent. With `wait`, and when not
    /// called from inside a callback, the kernel's answer is waited for (bounded); otherwise
    /// the unbind is sent without waiting, and its answer is picked up by a later pass.
    pub(crate) fn unbind(&self, num: u16, generation: u64, wait: bool) -> Result<()> {
        let removed = {
            let mut queues = self.queues.borrow_mut();
            let at = queues
                .iter()
                .position(|s| s.num == num && s.generation == generation);
            at.map(|i| queues.swap_remove(i))
        };
        let Some(mut slot) = removed else {
            return Ok(()); // already unbound
        };
        // Verdicts decided before the unbind go before it: the pending run of this queue and
        // the send buffer (the range run must not be lost with the slot).
        if let Some(run) = slot.run.take() {
            self.push_run(num, run);
        }
        self.flush_verdicts();
        slot.state.retire();
        let result = if wait && self.recv.try_borrow_mut().is_ok() {
            let result = self
                .request(unbind_msg(num), OP_UNBIND)
                .and_then(|(a, resent)| {
                    match a.errno {
                        0 => Ok(()),
                        // Asked again after a lost answer: already unbound by the first request.
                        libc::ENODEV if resent => Ok(()),
                        errno => Err(config_error(OP_UNBIND, num, errno, QueueFlags::empty())),
                    }
                });
            if result.is_err() {
                // Unknown whether the kernel unbound it: ask again without waiting, so that
                // messages of the old binding are told apart from a later one's.
                self.unbind_unwaited(num);
            }
            result
        } else {
            self.unbind_unwaited(num);
            Ok(())
        };
        // Packets of this queue already received are void: the kernel dropped them on unbind.
        self.backlog
            .borrow_mut()
            .retain(|m| queue_of(m.as_slice()) != Some(num));
        drop(slot); // the callback is freed after the kernel was told to unbind
        result
    }

    /// Sends an unbind of `num` without waiting for the answer; until the answer arrives,
    /// packet messages of `num` are known to be of the old binding and are skipped.
    fn unbind_unwaited(&self, num: u16) {
        let seq = self.next_seq();
        let mut buf = AlignedBuf::with_capacity(128);
        netlink::put_config(
            &mut buf,
            &ConfigMsg {
                seq,
                ..unbind_msg(num)
            },
        );
        match self.sock().send(buf.as_slice()) {
            Ok(()) => self.released.borrow_mut().push((num, seq)),
            Err(e) => self.errors.borrow_mut().push_back(Error::io(OP_UNBIND, e)),
        }
    }

    fn forget_released(&self, num: u16) {
        self.released.borrow_mut().retain(|&(n, _)| n != num);
        self.backlog
            .borrow_mut()
            .retain(|m| queue_of(m.as_slice()) != Some(num));
    }

    fn is_released(&self, num: u16) -> bool {
        let released = self.released.borrow();
        !released.is_empty() && released.iter().any(|&(n, _)| n == num)
    }

    /// Unbinds every queue numbered `num` on this handle (for owners without `Queue` guards).
    pub(crate) fn unbind_any(&self, num: u16) -> Result<()> {
        let generation = self
            .queues
            .borrow()
            .iter()
            .find(|s| s.num == num)
            .map(|s| s.generation);
        match generation {
            Some(generation) => self.unbind(num, generation, true),
            None => Err(Error::QueueNotBound { queue: num }),
        }
    }

    fn next_seq(&self) -> u32 {
        let seq = self.seq.get().wrapping_add(1).max(1);
        self.seq.set(seq);
        seq
    }

    /// Sends a configuration message and waits for the kernel's answer, at most the ack
    /// timeout. Messages that arrive meanwhile are kept, in order, for the next pass. When the
    /// receive buffer overflowed and the socket ran dry without the answer, the answer was lost
    /// with the overflow: the request is sent again (bind and unbind are idempotent, answering
    /// `EBUSY` / `ENODEV` the second time), which the second value of the result tells.
    fn request(&self, mut msg: ConfigMsg, op: &'static str) -> Result<(Answer, bool)> {
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        // `None`: wait forever (a timeout too large to add to the clock).
        let deadline = Instant::now().checked_add(self.ack_timeout.get());
        let sock = self.sock();
        let mut resent = false;
        let mut maybe_lost = false;
        let send = |msg: &mut ConfigMsg| -> Result<u32> {
            msg.seq = self.next_seq();
            let mut buf = AlignedBuf::with_capacity(128);
            netlink::put_config(&mut buf, msg);
            sock.send(buf.as_slice()).map_err(|e| Error::io(op, e))?;
            Ok(msg.seq)
        };
        let mut seq = send(&mut msg)?;
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(Error::Timeout { op });
            }
            let n = match sock.recv(&mut recv, libc::MSG_DONTWAIT) {
                Ok(Some(n)) => n,
                Ok(None) if maybe_lost => {
                    maybe_lost = false;
                    resent = true;
                    seq = send(&mut msg)?;
                    continue;
                }
                Ok(None) => {
                    sock.poll(libc::POLLIN, None, left)
                        .map_err(|e| Error::io(op, e))?;
                    continue;
                }
                Err(e @ Error::NoBufs) => {
                    maybe_lost = true;
                    self.note_error(e);
                    continue;
                }
                Err(e @ Error::MessageTruncated { .. }) => {
                    self.truncated(recv.as_slice());
                    self.note_error(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut answer = None;
            for (raw, message) in netlink::messages(&recv.as_slice()[..n]) {
                match message {
                    Message::Answer(a) if a.seq == seq => answer = Some(a),
                    // Of a queue unbound without waiting, sent before that unbind: void.
                    Message::Packet { queue, .. } if self.is_released(queue) => {}
                    Message::Answer(a) if self.released.borrow().iter().any(|r| r.1 == a.seq) => {
                        self.answer(&a);
                    }
                    Message::Other => {}
                    _ => self
                        .backlog
                        .borrow_mut()
                        .push_back(AlignedBuf::copy_of(raw)),
                }
            }
            if let Some(answer) = answer {
                drop(recv);
                // Fallbacks of truncated messages found while waiting.
                self.flush_verdicts();
                return Ok((answer, resent));
            }
        }
    }

    /// Receives what is waiting and dispatches it: calls the callbacks of the packets, sends
    /// their verdicts (see [Batching](Handle#batching)) and returns how many packets were
    /// handled.
    ///
    /// The first receive waits for data unless the socket is non-blocking
    /// ([`Handle::set_nonblocking`]) or has a receive timeout ([`Handle::set_recv_timeout`]);
    /// then it takes what else is already waiting, up to the batch limit, without waiting.
    /// Returns `Ok(0)` when nothing arrived.
    ///
    /// Errors the kernel reports about earlier verdicts arrive interleaved with packets; they are
    /// returned one per call, after the packets received with them were dispatched: a call that
    /// dispatched packets returns their count, and the next call returns the error at once
    /// (without waiting). [`Error::is_transient`] tells which ones the loop can simply continue
    /// past, such as [`Error::NoBufs`]. Every error is also counted ([`Handle::counters`]).
    ///
    /// # Panics
    /// When a callback panics, its packet gets the queue's fallback verdict
    /// ([`QueueConfig::fallback`], default drop), no further callback runs for the packets of
    /// the same call (they get their fallback verdicts too), and the panic is resumed here, on
    /// the caller's thread, after the verdicts were sent.
    #[doc(alias = "nfq_handle_packet")]
    #[doc(alias = "mnl_cb_run")]
    #[doc(alias = "mnl_socket_recvfrom")]
    pub fn process(&self) -> Result<usize> {
        self.process_inner(Wait::Socket).map(|(n, _)| n)
    }

    /// One receive-dispatch-send pass. Returns the packets handled and whether the first
    /// receive found nothing.
    fn process_inner(&self, wait: Wait<'_>) -> Result<(usize, bool)> {
        // Re-entered from a callback: refused before anything is taken, so that an error noted
        // earlier in the running pass stays the outer call's to report.
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        if let Some(err) = self.errors.borrow_mut().pop_front() {
            return Err(err);
        }
        self.pass_limit.set(self.batch_limit());
        let mut state = Dispatch::default();
        let mut idle = false;
        let backlog = mem::take(&mut *self.backlog.borrow_mut());
        if !backlog.is_empty() {
            for message in &backlog {
                self.dispatch(message.as_slice(), &mut state);
                self.flush_if_due(&mut state);
            }
        } else if self.receive_first(&mut recv, wait, &mut state)? {
            let n = recv.len();
            self.dispatch(&recv.as_slice()[..n], &mut state);
            self.flush_if_due(&mut state);
            // Take what else is waiting, without waiting, up to the batch limit.
            let limit = self.pass_limit.get();
            while state.packets < limit && state.panic.is_none() {
                match socket::recv_on(self.fd(), &mut recv, libc::MSG_DONTWAIT) {
                    Ok(Some(n)) => {
                        self.dispatch(&recv.as_slice()[..n], &mut state);
                        self.flush_if_due(&mut state);
                    }
                    Ok(None) => break,
                    Err(e @ Error::MessageTruncated { .. }) => {
                        self.truncated(recv.as_slice());
                        self.note_error(e);
                    }
                    Err(e @ Error::NoBufs) => self.note_error(e),
                    Err(e) => {
                        self.note_error(e);
                        break;
                    }
                }
            }
            // Stopped by the limit, not by an empty socket: the next pass goes on with the
            // backlog (without batching, a limit of 1, there is nothing to carry over).
            self.draining
                .set(limit > 1 && state.packets >= limit && state.panic.is_none());
        } else {
            idle = true;
        }
        drop(recv);
        self.flush_verdicts();
        if let Some(payload) = state.panic {
            panic::resume_unwind(payload);
        }
        if state.packets > 0 {
            // The count now, the errors from the next call on.
            return Ok((state.packets, false));
        }
        match self.errors.borrow_mut().pop_front() {
            Some(err) => Err(err),
            None => Ok((state.packets, idle)),
        }
    }

    /// Sends the verdicts decided so far when the pass's first packet was just decided (the
    /// head of a burst never waits for the rest), or when a decided verdict has waited the
    /// pass's budget ([`batching::budget`]).
    ///
    /// Called after each received datagram is dispatched, it reads the clock only while
    /// verdicts wait: the first check after one was decided starts its wait (at most one
    /// `clock_gettime` per packet, none without batching).
    fn flush_if_due(&self, state: &mut Dispatch) {
        if !state.flushed_first && state.packets > 0 {
            state.flushed_first = true;
            self.flush_verdicts();
            return;
        }
        if !self.holding.get() {
            return;
        }
        let now = Instant::now();
        let since = self.held_since.get().unwrap_or_else(|| {
            self.held_since.set(Some(now));
            now
        });
        let budget = batching::budget(self.batch_time.get(), state.packets, state.continued);
        if now.saturating_duration_since(since) >= budget {
            self.flush_verdicts();
        }
    }

    /// Queues an error for the caller and counts it.
    fn note_error(&self, err: Error) {
        self.owner.0.counters.error(&err);
        self.errors.borrow_mut().push_back(err);
    }

    /// The first receive of a pass; `Ok(false)` when nothing arrived. A message cut by the
    /// buffer is decided by its queue's fallback here, and counts as something received.
    ///
    /// After a pass that stopped at its limit, it first looks without waiting: a packet found
    /// that way continues the backlog (`state.continued`; its verdict is no head of a burst).
    fn receive_first(
        &self,
        recv: &mut AlignedBuf,
        wait: Wait<'_>,
        state: &mut Dispatch,
    ) -> Result<bool> {
        let fd = self.fd();
        let got = |r: Result<Option<usize>>, recv: &mut AlignedBuf| match r {
            Ok(got) => Ok(got.is_some()),
            Err(e @ Error::MessageTruncated { .. }) => {
                self.truncated(recv.as_slice());
                self.note_error(e);
                recv.clear();
                Ok(true)
            }
            Err(e @ Error::NoBufs) => {
                self.owner.0.counters.error(&e);
                Err(e)
            }
            Err(e) => Err(e),
        };
        if self.draining.replace(false) && got(socket::recv_on(fd, recv, libc::MSG_DONTWAIT), recv)?
        {
            state.continued = true;
            state.flushed_first = true;
            return Ok(true);
        }
        match wait {
            Wait::Socket => got(socket::recv_on(fd, recv, 0), recv),
            Wait::Never => got(socket::recv_on(fd, recv, libc::MSG_DONTWAIT), recv),
            Wait::Until(stop) => loop {
                if stop.is_triggered() {
                    return Ok(false);
                }
                if got(socket::recv_on(fd, recv, libc::MSG_DONTWAIT), recv)? {
                    return Ok(true);
                }
                socket::poll_on(fd, libc::POLLIN, Some(stop.fd()), None)
                    .map_err(|e| Error::io("poll", e))?;
            },
        }
    }

    /// Runs the receive loop: waits for packets and dispatches them, forever.
    ///
    /// Overload does not end it: after a [transient](Error::is_transient) error (a receive
    /// buffer overrun, the kernel's late answer about one verdict, a message that did not fit
    /// the buffer) it goes on; those errors are counted in [`Handle::counters`]. It returns only
    /// with an error that needs the caller (the socket failed, a queue was taken away), or
    /// resumes a callback's panic. [`Handle::run_until`] also returns when a [`Shutdown`]
    /// triggers. To see every error as it happens, loop over [`Handle::process`] instead.
    ///
    /// ```no_run
    /// # use libnfq::{Handle, QueueConfig, Verdict};
    /// # fn main() -> Result<(), libnfq::Error> {
    /// let handle = Handle::open()?;
    /// let _queue = handle.queue(0, QueueConfig::new(), |_| Verdict::accept())?;
    /// let result = handle.run(); // returns only on a fatal error
    /// eprintln!("lost to overruns: {} times", handle.counters().enobufs);
    /// result
    /// # }
    /// ```
    #[doc(alias = "nfq_handle_packet")]
    pub fn run(&self) -> Result<()> {
        loop {
            match self.process_inner(Wait::Socket) {
                Ok((_, true)) => {
                    // Non-blocking socket (or a timeout/signal): wait instead of spinning.
                    self.sock()
                        .poll(libc::POLLIN, None, None)
                        .map_err(|e| Error::io("poll", e))?;
                }
                Ok(_) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`Handle::run`], and returns `Ok(())` promptly once `shutdown` is triggered (from
    /// another thread or a signal handler), after sending the verdicts of every packet it
    /// dispatched. Packets still waiting in the kernel stay queued: run again, or drop the
    /// handle (the kernel then drops them).
    #[doc(alias = "nfq_handle_packet")]
    pub fn run_until(&self, shutdown: &Shutdown) -> Result<()> {
        while !shutdown.is_triggered() {
            match self.process_inner(Wait::Until(shutdown)) {
                Ok(_) => {}
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Like [`Handle::process`] but never waits, whatever the socket's mode, and tells an
    /// empty socket apart: `Ok(None)` when nothing was waiting (the receive would block),
    /// `Ok(Some(n))` when something was received and `n` packets were dispatched (0 if it held
    /// no packet). For edge-triggered event loops: call it until it returns `Ok(None)`.
    #[doc(alias = "nfq_handle_packet")]
    #[doc(alias = "mnl_socket_recvfrom")]
    pub fn try_process(&self) -> Result<Option<usize>> {
        self.process_inner(Wait::Never)
            .map(|(n, idle)| (!idle).then_some(n))
    }

    fn dispatch(&self, datagram: &[u8], state: &mut Dispatch) {
        for (_, message) in netlink::messages(datagram) {
            match message {
                Message::Packet { queue, attrs } => {
                    self.owner.0.counters.bump_by_receiver(Count::Packets);
                    if self.is_released(queue) {
                        // Sent before this handle unbound the queue: the kernel released it.
                        continue;
                    }
                    let packet = Packet::new(queue, attrs);
                    self.decide(packet, state);
                }
                Message::Answer(answer) => self.answer(&answer),
                Message::Other => {}
                Message::Malformed(what) => self.note_error(Error::Malformed { what }),
            }
        }
    }

    /// The kernel's answer to a message sent without waiting for it.
    fn answer(&self, answer: &Answer) {
        let counters = &self.owner.0.counters;
        {
            let mut released = self.released.borrow_mut();
            if let Some(at) = released
                .iter()
                .position(|&(_, seq)| seq != 0 && seq == answer.seq)
            {
                // An unbind sent without waiting: its packets are over. ENODEV means the queue
                // was not bound (a rolled-back bind): nothing to report.
                released.swap_remove(at);
                if answer.errno != 0 && answer.errno != libc::ENODEV {
                    counters.bump(Count::ConfigErrors);
                }
                return;
            }
        }
        if answer.errno == 0 || answer.seq != 0 {
            return;
        }
        let err = verdict_error(answer);
        counters.bump(match &err {
            Error::UnknownPacket { .. } => Count::UnknownPacketErrors,
            _ if answer.is_verdict() => Count::VerdictErrors,
            _ => Count::ConfigErrors,
        });
        self.errors.borrow_mut().push_back(err);
    }

    /// A packet message cut by the receive buffer: its id is in its first bytes, so the packet
    /// gets its queue's fallback verdict rather than waiting (or being covered by a range
    /// verdict it was never shown to).
    fn truncated(&self, partial: &[u8]) {
        let Some((queue, id)) = netlink::truncated_packet(partial) else {
            return;
        };
        let counters = &self.owner.0.counters;
        counters.bump_by_receiver(Count::Packets);
        if self.is_released(queue) {
            return;
        }
        let mut queues = self.queues.borrow_mut();
        match queues.iter_mut().find(|s| s.num == queue) {
            Some(slot) => {
                counters.bump(Count::FallbackTruncated);
                let fallback = slot.state.fallback.clone();
                self.push_verdict(slot, id, &fallback);
            }
            None => {
                drop(queues);
                self.unknown_queue(queue, id);
            }
        }
    }

    /// A packet of a queue this handle has no binding for (it cannot be shown to anyone):
    /// dropped, rather than left waiting.
    fn unknown_queue(&self, queue: u16, id: u32) {
        self.owner.0.counters.bump(Count::FallbackUnknownQueue);
        let msg = Verdict::drop();
        let msg = msg.msg();
        self.push_message(msg.len(), |buf| netlink::put_verdict(buf, queue, id, &msg));
        self.count_sent(Count::Verdicts);
    }

    fn decide(&self, packet: Packet<'_>, state: &mut Dispatch) {
        let queue = packet.queue_num();
        let id = packet.id();
        // Take the callback out, so that no borrow of the registry is held while user code runs.
        // Only a deferrable callback needs the queue's shared state (for `Pending::defer`).
        let (generation, mut callback, shared_state) = {
            let mut queues = self.queues.borrow_mut();
            let fuzzing = self.fuzzing.get();
            let Some(slot) = queues
                .iter_mut()
                .find(|s| s.num == queue && s.fuzzing == fuzzing)
            else {
                drop(queues);
                self.unknown_queue(queue, id);
                return;
            };
            let callback = if state.panic.is_none() {
                slot.callback.take()
            } else {
                None
            };
            let shared =
                matches!(callback, Some(Callback::Deferrable(_))).then(|| Arc::clone(&slot.state));
            (slot.generation, callback, shared)
        };
        state.packets += 1;
        let counters = &self.owner.0.counters;
        let truncated = packet
            .is_truncated()
            .then(|| (packet.payload().len(), packet.original_len()));
        let min_payload = min_payload_len(&packet);
        let deferred = Cell::new(false);
        // `Some(Ok(None))`: the callback deferred the packet. `None`: no callback ran.
        let outcome = match (callback.as_mut(), &shared_state) {
            (Some(Callback::Verdict(cb)), _) => {
                Some(panic::catch_unwind(AssertUnwindSafe(|| Some(cb(&packet)))))
            }
            (Some(Callback::Deferrable(cb)), Some(queue_state)) => {
                let pending = Pending::new(packet, queue_state, &self.owner.0, &deferred);
                Some(panic::catch_unwind(AssertUnwindSafe(|| {
                    cb(pending).verdict
                })))
            }
            _ => None,
        };
        if outcome.is_some() {
            counters.bump_by_receiver(Count::Dispatched);
        }
        let mut queues = self.queues.borrow_mut();
        let Some(slot) = queues
            .iter_mut()
            .find(|s| s.num == queue && s.generation == generation)
        else {
            // The Queue was dropped from inside its own callback: the kernel released the
            // packet; the callback (if any) is freed here, and a panic is still resumed.
            if let Some(Err(payload)) = outcome {
                state.panic.get_or_insert(payload);
            }
            return;
        };
        if callback.is_some() {
            slot.callback = callback;
        }
        let verdict = match outcome {
            Some(Ok(None)) => return, // its DeferredPacket decides it
            Some(Ok(Some(verdict))) => verdict,
            Some(Err(payload)) => {
                state.panic = Some(payload);
                if deferred.get() {
                    // The DeferredPacket was dropped while unwinding (and sent the fallback
                    // verdict) or escaped to be decided elsewhere.
                    return;
                }
                counters.bump(Count::FallbackPanic);
                slot.state.fallback.clone()
            }
            None => {
                counters.bump(Count::FallbackPanic);
                slot.state.fallback.clone()
            }
        };
        let verdict = match slot.state.refusal(&verdict, id, truncated, min_payload) {
            Some(err) => {
                counters.bump(Count::FallbackRefused);
                self.errors.borrow_mut().push_back(err);
                slot.state.fallback.clone()
            }
            None => verdict,
        };
        self.push_verdict(slot, id, &verdict);
    }

    /// Queues a verdict for sending: into the queue's range run when it can join one, else as
    /// an individual message. Verdicts leave in the order the packets came: a pending run is
    /// sent before an individual verdict of the same queue, so batching never reorders packets.
    fn push_verdict(&self, slot: &mut Slot<'cb>, id: u32, verdict: &Verdict) {
        // No deferred packet of this queue outstanding means every packet with a lower id has
        // been decided: a range verdict up to `id` covers only packets decided here.
        let coalesce = verdict.is_plain()
            && self.range_verdicts.get()
            && self.pass_limit.get() > 1
            && !slot.state.has_outstanding();
        let next = Run {
            action: verdict.action(),
            mark: verdict.mark(),
            last: id,
            count: 1,
        };
        self.holding.set(true);
        let pending = match &mut slot.run {
            Some(run) if coalesce && run.action == next.action && run.mark == next.mark => {
                run.last = id;
                run.count += 1;
                return;
            }
            run if coalesce => run.replace(next),
            run => run.take(),
        };
        if let Some(run) = pending {
            self.push_run(slot.num, run);
        }
        if !coalesce {
            let msg = verdict.msg();
            self.push_message(msg.len(), |buf| {
                netlink::put_verdict(buf, slot.num, id, &msg)
            });
            self.count_sent(Count::Verdicts);
        }
    }

    fn push_run(&self, queue: u16, run: Run) {
        let msg = VerdictMsg {
            verdict: run.action.raw(),
            mark: run.mark,
            ct_mark: None,
            payload: None,
        };
        if run.count == 1 {
            self.push_message(msg.len(), |buf| {
                netlink::put_verdict(buf, queue, run.last, &msg)
            });
            self.count_sent(Count::Verdicts);
        } else {
            self.push_message(msg.len(), |buf| {
                netlink::put_batch_verdict(buf, queue, run.last, msg.verdict, msg.mark)
            });
            self.count_sent(Count::RangeVerdicts);
        }
    }

    fn count_sent(&self, which: Count) {
        if !self.discard.get() {
            self.owner.0.counters.bump(which);
        }
    }

    /// Appends a message to the send buffer, sending what it holds first if it would not fit.
    fn push_message(&self, len: usize, put: impl FnOnce(&mut AlignedBuf)) {
        let mut send = self.send.borrow_mut();
        if !send.is_empty() && send.len() + len > send.capacity() {
            self.send_now(&mut send);
        }
        put(&mut send);
        if self.pass_limit.get() <= 1 {
            self.send_now(&mut send);
        } else {
            self.holding.set(true);
        }
    }

    /// Sends every verdict not sent yet: the range runs, then the send buffer.
    fn flush_verdicts(&self) {
        loop {
            let next = {
                let mut queues = self.queues.borrow_mut();
                queues
                    .iter_mut()
                    .find_map(|s| s.run.take().map(|r| (s.num, r)))
            };
            match next {
                Some((queue, run)) => self.push_run(queue, run),
                None => break,
            }
        }
        let mut send = self.send.borrow_mut();
        if !send.is_empty() {
            self.send_now(&mut send);
        }
        send.shrink_if_large();
        self.holding.set(false);
        self.held_since.set(None);
    }

    fn send_now(&self, send: &mut AlignedBuf) {
        if !self.discard.get() {
            if let Err(e) = socket::send_on(self.fd(), send.as_slice()) {
                self.note_error(Error::io("send verdicts", e));
            }
        }
        send.clear();
    }

    /// Sets how many packets one [`Handle::process`] call may receive before it sends their
    /// verdicts (default [`DEFAULT_BATCH_LIMIT`]); it also stops earlier when nothing more is
    /// waiting, so a packet never waits for others to arrive. `1` turns batching off: each
    /// verdict is sent as soon as its callback returned, one message per packet.
    ///
    /// Packets held for a batch still count against their queue's length, so the batch is also
    /// kept to half the smallest [`QueueConfig::max_len`] set on this handle's queues: a batch
    /// never fills a queue by itself.
    pub fn set_batch_limit(&self, packets: usize) {
        self.batch_limit.set(packets.max(1));
    }

    /// Grows the socket's receive buffer (never shrinks it) to hold what the bound queues can
    /// have waiting: each queue's maximum length (1024 by default) times the kernel's cost of
    /// one of its packet messages, within [`MAX_AUTO_RECV_BUFFER`]. Overruns of the socket
    /// buffer (`ENOBUFS`, lost packets) then do not happen while the queues are within their
    /// lengths: what does not fit is the queue's to drop (or accept, with `FAIL_OPEN`).
    fn fit_recv_buffer(&self) {
        let wanted: usize = self
            .queues
            .borrow()
            .iter()
            .map(|s| s.max_len.unwrap_or(KERNEL_DEFAULT_MAX_LEN) as usize * s.message_cost)
            .sum();
        let wanted = wanted.min(MAX_AUTO_RECV_BUFFER);
        // SO_RCVBUF reports twice what was asked (the kernel's bookkeeping share).
        let have = self.recv_buffer_size().unwrap_or(0) / 2;
        if self.auto_recv_buffer.get() && wanted > have {
            let _ = self.apply_recv_buffer_size(wanted);
        }
    }

    /// The batch limit in force: the one set, within half the smallest queue length set.
    fn batch_limit(&self) -> usize {
        let room = self.queues.borrow().iter().filter_map(|s| s.max_len).min();
        let room = room.map_or(usize::MAX, |len| (len as usize / 2).max(1));
        self.batch_limit.get().min(room)
    }

    /// Turns the automatic range verdicts on (the default) or off. Off, every packet gets its
    /// own verdict message (still sent together with the others of the same call).
    pub fn set_range_verdicts(&self, on: bool) {
        self.range_verdicts.set(on);
    }

    /// The socket's netlink port id (what `/proc/net/netfilter/nfnetlink_queue` lists as the
    /// queue's owner).
    #[doc(alias = "mnl_socket_get_portid")]
    pub fn portid(&self) -> u32 {
        self.owner.0.portid
    }

    /// Sets the socket's receive buffer size (`SO_RCVBUFFORCE` when privileged, else
    /// `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`) and returns the size the kernel
    /// granted (as `SO_RCVBUF` reports it: twice the request, for bookkeeping overhead).
    ///
    /// A larger buffer absorbs bursts: when it overflows the kernel drops packets and reports
    /// [`Error::NoBufs`]. By default the handle sizes it itself: [`DEFAULT_RECV_BUFFER`] at
    /// opening, grown at each bind to hold as many packet messages as the bound queues' maximum
    /// lengths allow (up to 64 MiB), so that a queue within its length never overruns the
    /// socket. Setting a size here turns that off.
    #[doc(alias = "nfnl_rcvbufsiz")]
    #[doc(alias = "SO_RCVBUFFORCE")]
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<usize> {
        self.auto_recv_buffer.set(false);
        self.apply_recv_buffer_size(bytes)
    }

    fn apply_recv_buffer_size(&self, bytes: usize) -> Result<usize> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let forced = self
            .sock()
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &value);
        if forced.is_err() {
            self.sock()
                .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &value)
                .map_err(|e| Error::io("set SO_RCVBUF", e))?;
        }
        self.recv_buffer_size()
    }

    /// The socket's receive buffer size as the kernel reports it (`SO_RCVBUF`).
    pub fn recv_buffer_size(&self) -> Result<usize> {
        self.sock()
            .getsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|v| v as usize)
            .map_err(|e| Error::io("get SO_RCVBUF", e))
    }

    /// With `true`, the kernel no longer reports receive-buffer overflows
    /// ([`Error::NoBufs`]); dropped packets are still counted in the queue statistics.
    #[doc(alias = "NETLINK_NO_ENOBUFS")]
    pub fn set_no_enobufs(&self, on: bool) -> Result<()> {
        self.sock()
            .setsockopt(
                libc::SOL_NETLINK,
                libc::NETLINK_NO_ENOBUFS,
                &libc::c_int::from(on),
            )
            .map_err(|e| Error::io("set NETLINK_NO_ENOBUFS", e))
    }

    /// Puts the socket in non-blocking mode: [`Handle::process`] then returns `Ok(0)` at once
    /// when nothing is waiting. For event loops: wait for the fd ([`AsFd`]) to be readable,
    /// then call `process` until it returns `Ok(0)`.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        // SAFETY: fcntl on our own fd with integer arguments.
        let flags = unsafe { libc::fcntl(self.owner.0.fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(Error::last_os("fcntl(F_GETFL)"));
        }
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(self.owner.0.fd, libc::F_SETFL, flags) } < 0 {
            return Err(Error::last_os("fcntl(F_SETFL)"));
        }
        Ok(())
    }

    /// Makes a blocking [`Handle::process`] give up after `timeout` with `Ok(0)` (`None`: wait
    /// forever, the default).
    #[doc(alias = "SO_RCVTIMEO")]
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let t = timeout.unwrap_or_default();
        // Rounded up to whole microseconds: a zero `timeval` would mean "no timeout".
        let mut secs = t.as_secs();
        let mut micros = u64::from(t.subsec_nanos().div_ceil(1000));
        if micros == 1_000_000 {
            secs = secs.saturating_add(1);
            micros = 0;
        }
        if timeout.is_some() && secs == 0 && micros == 0 {
            micros = 1;
        }
        let tv = libc::timeval {
            tv_sec: secs.min(libc::time_t::MAX as u64) as libc::time_t,
            tv_usec: micros as libc::suseconds_t,
        };
        self.sock()
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|e| Error::io("set SO_RCVTIMEO", e))
    }

    /// Sets the size of the buffer datagrams are received into (default
    /// [`DEFAULT_BUFFER_SIZE`], enough for the largest packet the kernel sends), kept between
    /// 4 KiB and 4 MiB. A packet message larger than the buffer cannot be shown to its callback:
    /// the packet gets its queue's fallback verdict (counted in
    /// [`Counters::fallback_truncated`]) and [`Handle::process`] reports
    /// [`Error::MessageTruncated`].
    pub fn set_buffer_size(&self, bytes: usize) -> Result<()> {
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        recv.clear();
        recv.resize_capacity(bytes.clamp(4096, MAX_BUFFER_SIZE));
        Ok(())
    }

    /// How long binding and [`Queue::unbind`] wait for the kernel's acknowledgement (default
    /// 5 s; [`Duration::MAX`] waits for ever). An acknowledgement lost because the receive
    /// buffer overflowed is asked for again rather than waited for; a bind that times out is
    /// undone. Dropping a [`Queue`] never waits.
    pub fn set_ack_timeout(&self, timeout: Duration) {
        self.ack_timeout.set(timeout);
    }

    /// Sets how long a decided verdict may wait to be sent together with later ones (default
    /// [`DEFAULT_BATCH_TIME_LIMIT`]): a pass flushes its verdicts once the oldest unsent one
    /// has waited this long (checked after each packet, so the wait can exceed it by one
    /// callback's run time); past the first 64 packets of a pass, once it has waited 8 times
    /// this long (see [Batching](Handle#batching)). The first verdict of every pass is sent at
    /// once. `Duration::ZERO`
    /// sends each verdict right after its callback, like a batch limit of 1 but still
    /// receiving up to the batch limit per pass.
    pub fn set_batch_time_limit(&self, limit: Duration) {
        self.batch_time.set(limit);
    }
}

impl AsFd for Handle<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd stays open for as long as `self` (closed only in Socket's Drop).
        unsafe { BorrowedFd::borrow_raw(self.owner.0.fd) }
    }
}

impl AsRawFd for Handle<'_> {
    #[doc(alias = "nfq_fd")]
    #[doc(alias = "mnl_socket_get_fd")]
    fn as_raw_fd(&self) -> RawFd {
        self.owner.0.fd
    }
}

impl std::fmt::Debug for Handle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues: Vec<u16> = self
            .queues
            .try_borrow()
            .map(|q| q.iter().map(|s| s.num).collect())
            .unwrap_or_default();
        f.debug_struct("Handle")
            .field("fd", &self.owner.0.fd)
            .field("portid", &self.owner.0.portid)
            .field("queues", &queues)
            .finish()
    }
}

/// The queue number a single stored packet message belongs to.
fn queue_of(message: &[u8]) -> Option<u16> {
    match netlink::messages(message).next()? {
        (_, Message::Packet { queue, .. }) => Some(queue),
        _ => None,
    }
}

fn unbind_msg(num: u16) -> ConfigMsg {
    ConfigMsg {
        queue: num,
        seq: 0,
        ack: true,
        cmd: Some(netlink::CMD_UNBIND),
        params: None,
        max_len: None,
        flags: None,
    }
}

/// The error for the kernel's answer `errno` to a configuration message about `queue` (bound
/// with `flags`, for binds).
fn config_error(op: &'static str, queue: u16, errno: i32, flags: QueueFlags) -> Error {
    match errno {
        libc::EPERM if !has_cap_net_admin() => Error::PermissionDenied { op },
        libc::EPERM => Error::QueueOwnedByOther { queue },
        libc::EBUSY => Error::QueueAlreadyBound { queue },
        libc::ENODEV => Error::QueueNotBound { queue },
        libc::EOPNOTSUPP if flags.intersects(QueueFlags::CONNTRACK | QueueFlags::SECCTX) => {
            Error::Unsupported {
                op,
                queue,
                what: if flags.contains(QueueFlags::CONNTRACK) {
                    "QueueFlags::CONNTRACK needs a kernel built with \
                     CONFIG_NETFILTER_NETLINK_GLUE_CT (conntrack data in queued packets)"
                } else {
                    "QueueFlags::SECCTX needs a kernel built with CONFIG_NETWORK_SECMARK"
                },
            }
        }
        _ => Error::Kernel {
            op,
            queue: Some(queue),
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

/// The error for the kernel's late answer about a message sent without waiting (a verdict,
/// usually): as typed as a bind's errors.
fn verdict_error(answer: &Answer) -> Error {
    match (
        answer.errno,
        answer.is_verdict(),
        answer.queue,
        answer.packet_id,
    ) {
        (libc::ENOENT, true, Some(queue), Some(id)) => Error::UnknownPacket { queue, id },
        (libc::ENODEV, _, Some(queue), _) => Error::QueueNotBound { queue },
        (libc::EPERM, _, Some(queue), _) => Error::QueueOwnedByOther { queue },
        (errno, true, queue, _) => Error::Kernel {
            op: OP_VERDICT,
            queue,
            source: io::Error::from_raw_os_error(errno),
        },
        (errno, false, queue, _) => {
            let op = if answer.cmd == Some(netlink::CMD_UNBIND) {
                OP_UNBIND
            } else {
                OP_CONFIG
            };
            Error::Kernel {
                op,
                queue,
                source: io::Error::from_raw_os_error(errno),
            }
        }
    }
}

/// Whether this thread holds CAP_NET_ADMIN in its user namespace (to tell a missing capability
/// from a queue owned by someone else: the kernel answers EPERM to both).
fn has_cap_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}
