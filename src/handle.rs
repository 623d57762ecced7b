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

use nfq_sys as sys;

use crate::config::{QueueConfig, QueueFlags};
use crate::deferred::{Handled, Pending, QueueState, VerdictSender};
use crate::error::{Error, Result, OP_BIND, OP_CONFIG, OP_UNBIND, OP_VERDICT};
use crate::netlink::{self, AlignedBuf, Answer, ConfigMsg, Message, VerdictMsg};
use crate::packet::Packet;
use crate::queue::Queue;
use crate::socket::{Shared, Socket, SocketGuard};
use crate::stop::Shutdown;
use crate::verdict::{Action, Verdict};

/// Default size of the receive buffer: the largest packet message (a 65531-byte payload plus
/// every metadata attribute) with room to spare.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024 + 8 * 1024;
/// Default for [`Handle::set_batch_limit`]: a quarter of the kernel's default queue length
/// (1024), so that the packets held for one batch never fill a default queue.
pub const DEFAULT_BATCH_LIMIT: usize = 256;
/// The receive buffer [`Handle::open`] asks for: 8 MiB absorb a burst of thousands of full-size
/// packet messages instead of losing them (`ENOBUFS`).
pub const DEFAULT_RECV_BUFFER: usize = 8 << 20;
const SEND_BUFFER_SIZE: usize = 8 * 1024;
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

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
    state: Arc<QueueState>,
    run: Option<Run>,
    /// The queue's maximum length, when the config set one.
    max_len: Option<u32>,
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
/// (default 256), dispatches it, then sends all the verdicts in one system call. Consecutive
/// packets of a queue decided with the same plain verdict (no payload) are decided by one
/// range verdict, but only while no deferred packet of that queue is outstanding, since a range
/// verdict decides every queued packet up to its id. [`Handle::set_range_verdicts`] turns that
/// off; a batch limit of 1 sends each verdict as soon as its callback returned.
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
    /// namespace.
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
            seq: Cell::new(0),
            generation: Cell::new(0),
            ack_timeout: Cell::new(DEFAULT_ACK_TIMEOUT),
            batch_limit: Cell::new(DEFAULT_BATCH_LIMIT),
            pass_limit: Cell::new(DEFAULT_BATCH_LIMIT),
            range_verdicts: Cell::new(true),
        };
        // Best effort: without CAP_NET_ADMIN the kernel caps it at `net.core.rmem_max`, and
        // binding (which needs the capability) fails later with a clear error anyway.
        let _ = handle.set_recv_buffer_size(DEFAULT_RECV_BUFFER);
        handle
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
    fn bind_detached(&self, num: u16, config: QueueConfig, callback: Callback<'cb>) -> Result<u64> {
        let flags = config.flags.bits();
        let answer = self.request(
            ConfigMsg {
                queue: num,
                seq: 0,
                ack: true,
                cmd: Some(netlink::CMD_BIND),
                params: Some(config.copy_mode.raw()),
                max_len: config.max_len,
                flags: (flags != 0).then_some(flags),
            },
            OP_BIND,
        )?;
        if answer.errno != 0 {
            return Err(config_error(OP_BIND, num, answer.errno));
        }
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.queues.borrow_mut().push(Slot {
            num,
            generation,
            callback: Some(callback),
            state: QueueState::new(
                config.fallback,
                config.flags.contains(QueueFlags::CONNTRACK),
                config.defer_copy,
            ),
            run: None,
            max_len: config.max_len,
        });
        Ok(generation)
    }

    /// [`Handle::queue_deferrable`] without a `Queue` guard, for owners of a handle that cannot
    /// also hold a guard borrowing it.
    #[cfg(feature = "tokio")]
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

    /// Unbinds queue `num` and forgets its slot. Called by `Queue`.
    pub(crate) fn unbind(&self, num: u16, generation: u64) -> Result<()> {
        let unbind = ConfigMsg {
            queue: num,
            seq: 0,
            ack: true,
            cmd: Some(netlink::CMD_UNBIND),
            params: None,
            max_len: None,
            flags: None,
        };
        let result = if self.recv.try_borrow_mut().is_ok() {
            self.request(unbind, OP_UNBIND).and_then(|a| {
                if a.errno == 0 {
                    Ok(())
                } else {
                    Err(config_error(OP_UNBIND, num, a.errno))
                }
            })
        } else {
            // Called from inside a callback: the receive path is busy, so send without waiting
            // for the acknowledgement; a failure arrives later as an error.
            let mut buf = AlignedBuf::with_capacity(128);
            netlink::put_config(
                &mut buf,
                &ConfigMsg {
                    ack: false,
                    ..unbind
                },
            );
            self.sock()
                .send(buf.as_slice())
                .map_err(|e| Error::io(OP_UNBIND, e))
        };
        // Packets of this queue already received are void: the kernel dropped them on unbind.
        self.backlog
            .borrow_mut()
            .retain(|m| queue_of(m.as_slice()) != Some(num));
        let removed = {
            let mut queues = self.queues.borrow_mut();
            let at = queues
                .iter()
                .position(|s| s.num == num && s.generation == generation);
            at.map(|i| queues.swap_remove(i))
        };
        drop(removed); // the callback is freed after the kernel was told to unbind
        result
    }

    /// Unbinds every queue numbered `num` on this handle (for owners without `Queue` guards).
    #[cfg(feature = "tokio")]
    pub(crate) fn unbind_any(&self, num: u16) -> Result<()> {
        let generation = self
            .queues
            .borrow()
            .iter()
            .find(|s| s.num == num)
            .map(|s| s.generation);
        match generation {
            Some(generation) => self.unbind(num, generation),
            None => Err(Error::Kernel {
                op: OP_UNBIND,
                queue: Some(num),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            }),
        }
    }

    /// Sends a configuration message and waits for the kernel's answer.
    fn request(&self, mut msg: ConfigMsg, op: &'static str) -> Result<Answer> {
        let seq = self.seq.get().wrapping_add(1).max(1);
        self.seq.set(seq);
        msg.seq = seq;
        let mut buf = AlignedBuf::with_capacity(128);
        netlink::put_config(&mut buf, &msg);
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        let sock = self.sock();
        sock.send(buf.as_slice()).map_err(|e| Error::io(op, e))?;
        let deadline = Instant::now() + self.ack_timeout.get();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let readable = !left.is_zero()
                && sock
                    .poll(libc::POLLIN, None, Some(left))
                    .map_err(|e| Error::io(op, e))?
                    .0;
            if !readable {
                return Err(Error::Timeout { op });
            }
            let n = match sock.recv(&mut recv, libc::MSG_DONTWAIT) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e @ (Error::NoBufs | Error::MessageTruncated { .. })) => {
                    self.errors.borrow_mut().push_back(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut answer = None;
            for (raw, message) in netlink::messages(&recv.as_slice()[..n]) {
                match message {
                    Message::Answer(a) if a.seq == seq => answer = Some(a),
                    Message::Other => {}
                    _ => self
                        .backlog
                        .borrow_mut()
                        .push_back(AlignedBuf::copy_of(raw)),
                }
            }
            if let Some(answer) = answer {
                return Ok(answer);
            }
        }
    }

    /// Receives what is waiting and dispatches it: calls the callbacks of the packets, sends
    /// their verdicts (all in one system call, see [Batching](Handle#batching)) and returns how
    /// many packets were handled.
    ///
    /// The first receive waits for data unless the socket is non-blocking
    /// ([`Handle::set_nonblocking`]) or has a receive timeout ([`Handle::set_recv_timeout`]);
    /// then it takes what else is already waiting, up to the batch limit, without waiting.
    /// Returns `Ok(0)` when nothing arrived.
    ///
    /// Errors the kernel reports about earlier verdicts arrive interleaved with packets; they are
    /// returned after the packets received with them were dispatched, one per call (the rest
    /// are kept for the following calls). [`Error::is_transient`] tells which ones the loop can
    /// simply continue past, such as [`Error::NoBufs`].
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
        if let Some(err) = self.errors.borrow_mut().pop_front() {
            return Err(err);
        }
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        self.pass_limit.set(self.batch_limit());
        let mut state = Dispatch::default();
        let mut idle = false;
        let backlog = mem::take(&mut *self.backlog.borrow_mut());
        if !backlog.is_empty() {
            for message in &backlog {
                self.dispatch(message.as_slice(), &mut state);
            }
        } else if self.receive_first(&mut recv, wait)? {
            let n = recv.len();
            self.dispatch(&recv.as_slice()[..n], &mut state);
            // Take what else is waiting, without waiting, up to the batch limit; one lock of the
            // shared socket for the whole drain.
            let limit = self.pass_limit.get();
            let sock = self.sock();
            while state.packets < limit && state.panic.is_none() {
                match sock.recv(&mut recv, libc::MSG_DONTWAIT) {
                    Ok(Some(n)) => self.dispatch(&recv.as_slice()[..n], &mut state),
                    Ok(None) => break,
                    Err(e) => {
                        self.errors.borrow_mut().push_back(e);
                        break;
                    }
                }
            }
        } else {
            idle = true;
        }
        drop(recv);
        self.flush_verdicts();
        if let Some(payload) = state.panic {
            panic::resume_unwind(payload);
        }
        match self.errors.borrow_mut().pop_front() {
            Some(err) => Err(err),
            None => Ok((state.packets, idle)),
        }
    }

    /// The first receive of a pass; `Ok(false)` when nothing arrived.
    fn receive_first(&self, recv: &mut AlignedBuf, wait: Wait<'_>) -> Result<bool> {
        let sock = self.sock();
        match wait {
            Wait::Socket => Ok(sock.recv(recv, 0)?.is_some()),
            Wait::Never => Ok(sock.recv(recv, libc::MSG_DONTWAIT)?.is_some()),
            Wait::Until(stop) => loop {
                if stop.is_triggered() {
                    return Ok(false);
                }
                if sock.recv(recv, libc::MSG_DONTWAIT)?.is_some() {
                    return Ok(true);
                }
                sock.poll(libc::POLLIN, Some(stop.fd()), None)
                    .map_err(|e| Error::io("poll", e))?;
            },
        }
    }

    /// Runs the receive loop: waits for packets and dispatches them, forever.
    ///
    /// Returns only with an error: a non-[transient](Error::is_transient) one ends the loop,
    /// and so does a transient one, so that the caller can count it; call `run` again to go on.
    /// [`Handle::run_until`] also returns when a [`Shutdown`] triggers.
    ///
    /// ```no_run
    /// # use libnfq::{Handle, QueueConfig, Verdict};
    /// # fn main() -> Result<(), libnfq::Error> {
    /// let handle = Handle::open()?;
    /// let _queue = handle.queue(0, QueueConfig::new(), |_| Verdict::accept())?;
    /// let mut lost = 0u64;
    /// loop {
    ///     match handle.run() {
    ///         Err(libnfq::Error::NoBufs) => lost += 1, // the kernel dropped messages: go on
    ///         Err(e) if e.is_transient() => eprintln!("{e}"),
    ///         Err(e) => return Err(e),
    ///         Ok(()) => return Ok(()),
    ///     }
    /// }
    /// # }
    /// ```
    #[doc(alias = "nfq_handle_packet")]
    pub fn run(&self) -> Result<()> {
        loop {
            let (_, idle) = self.process_inner(Wait::Socket)?;
            if idle {
                // Non-blocking socket (or a timeout/signal): wait instead of spinning.
                self.sock()
                    .poll(libc::POLLIN, None, None)
                    .map_err(|e| Error::io("poll", e))?;
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
            self.process_inner(Wait::Until(shutdown))?;
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
                    let packet = Packet::new(queue, attrs);
                    self.decide(packet, state);
                }
                Message::Answer(answer) if answer.errno != 0 && answer.seq == 0 => {
                    self.errors.borrow_mut().push_back(verdict_error(&answer));
                }
                Message::Answer(_) | Message::Other => {}
                Message::Malformed(what) => self
                    .errors
                    .borrow_mut()
                    .push_back(Error::Malformed { what }),
            }
        }
    }

    fn decide(&self, packet: Packet<'_>, state: &mut Dispatch) {
        let queue = packet.queue_num();
        let id = packet.id();
        // Take the callback out, so that no borrow of the registry is held while user code runs.
        // Only a deferrable callback needs the queue's shared state (for `Pending::defer`).
        let (generation, mut callback, shared_state) = {
            let mut queues = self.queues.borrow_mut();
            let Some(slot) = queues.iter_mut().find(|s| s.num == queue) else {
                // Not (or no longer) bound here: the kernel released the packet on unbind.
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
        let truncated = packet
            .is_truncated()
            .then(|| (packet.payload().len(), packet.original_len()));
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
        let mut queues = self.queues.borrow_mut();
        let Some(slot) = queues
            .iter_mut()
            .find(|s| s.num == queue && s.generation == generation)
        else {
            // The Queue was dropped from inside its own callback: the kernel released the
            // packet; the callback (if any) is freed here.
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
                slot.state.fallback.clone()
            }
            None => slot.state.fallback.clone(),
        };
        let verdict = match slot.state.refusal(&verdict, queue, id, truncated) {
            Some(err) => {
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
        } else {
            self.push_message(msg.len(), |buf| {
                netlink::put_batch_verdict(buf, queue, run.last, msg.verdict, msg.mark)
            });
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
    }

    fn send_now(&self, send: &mut AlignedBuf) {
        if let Err(e) = self.sock().send(send.as_slice()) {
            self.errors
                .borrow_mut()
                .push_back(Error::io("send verdicts", e));
        }
        send.clear();
    }

    /// Dispatches `datagram` as if the kernel had sent it (packets to their queues' callbacks,
    /// error answers to errors), then discards the verdicts instead of sending them. For fuzz
    /// tests of the receive path only: not part of the API.
    #[doc(hidden)]
    pub fn __dispatch_for_fuzzing(&self, datagram: &[u8]) -> (usize, Vec<Error>) {
        let buf = AlignedBuf::copy_of(datagram);
        self.pass_limit.set(self.batch_limit());
        let mut state = Dispatch::default();
        self.dispatch(buf.as_slice(), &mut state);
        for slot in self.queues.borrow_mut().iter_mut() {
            slot.run = None;
        }
        self.send.borrow_mut().clear();
        if let Some(payload) = state.panic {
            panic::resume_unwind(payload);
        }
        (state.packets, self.errors.borrow_mut().drain(..).collect())
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
    /// [`Error::NoBufs`].
    #[doc(alias = "nfnl_rcvbufsiz")]
    #[doc(alias = "SO_RCVBUFFORCE")]
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<usize> {
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
        let tv = libc::timeval {
            tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_usec: if timeout.is_some() && t.is_zero() {
                1
            } else {
                t.subsec_micros() as libc::suseconds_t
            },
        };
        self.sock()
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|e| Error::io("set SO_RCVTIMEO", e))
    }

    /// Sets the size of the buffer datagrams are received into (default
    /// [`DEFAULT_BUFFER_SIZE`], enough for the largest packet the kernel sends). A datagram
    /// larger than the buffer is reported as [`Error::MessageTruncated`].
    pub fn set_buffer_size(&self, bytes: usize) -> Result<()> {
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        recv.clear();
        recv.resize_capacity(bytes.max(4096));
        Ok(())
    }

    /// How long binding and unbinding wait for the kernel's acknowledgement (default 5 s).
    pub fn set_ack_timeout(&self, timeout: Duration) {
        self.ack_timeout.set(timeout);
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

fn config_error(op: &'static str, queue: u16, errno: i32) -> Error {
    match errno {
        libc::EPERM if !has_cap_net_admin() => Error::PermissionDenied { op },
        libc::EPERM => Error::QueueOwnedByOther { queue },
        libc::EBUSY => Error::QueueAlreadyBound { queue },
        _ => Error::Kernel {
            op,
            queue: Some(queue),
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

fn verdict_error(answer: &Answer) -> Error {
    let is_verdict = matches!(answer.msg, Some(m) if m == sys::NFQNL_MSG_VERDICT || m == sys::NFQNL_MSG_VERDICT_BATCH);
    match (answer.errno, is_verdict, answer.queue, answer.packet_id) {
        (libc::ENOENT, true, Some(queue), Some(id)) => Error::UnknownPacket { queue, id },
        (errno, true, queue, _) => Error::Kernel {
            op: OP_VERDICT,
            queue,
            source: io::Error::from_raw_os_error(errno),
        },
        (libc::EPERM, false, Some(queue), _) if answer.cmd.is_some() => {
            config_error(OP_CONFIG, queue, libc::EPERM)
        }
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
