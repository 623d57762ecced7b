//! `Handle`: the netlink socket, its buffers, the queue registry and the receive loop.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use nfq_sys as sys;

use crate::config::QueueConfig;
use crate::error::{Error, Result, OP_BIND, OP_CONFIG, OP_UNBIND, OP_VERDICT};
use crate::netlink::{self, AlignedBuf, Answer, ConfigMsg, Message};
use crate::packet::Packet;
use crate::queue::Queue;
use crate::verdict::Verdict;

/// Default size of the receive buffer: the largest packet message (a 65531-byte payload plus
/// every metadata attribute) with room to spare.
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024 + 8 * 1024;
const SEND_BUFFER_SIZE: usize = 8 * 1024;
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The callback type a [`Queue`] stores.
pub(crate) type Callback<'cb> = Box<dyn FnMut(&Packet<'_>) -> Verdict + Send + 'cb>;

struct Slot<'cb> {
    num: u16,
    /// Tells a re-bound queue number from the queue a `Queue` value was created for.
    generation: u64,
    /// `None` while the callback runs (it is taken out so that the registry is not borrowed
    /// during the call).
    callback: Option<Callback<'cb>>,
    fallback: Verdict,
}

/// The netlink socket, owned: opened by libmnl, closed exactly once on drop.
struct Socket {
    nl: NonNull<sys::mnl_socket>,
    fd: RawFd,
    portid: u32,
}

// SAFETY: `struct mnl_socket` is a plain fd plus the socket address, owned by this value alone;
// libmnl keeps no thread-local or global state for it, so it may be used and closed from any
// thread.
unsafe impl Send for Socket {}
// SAFETY: after `open`, the `mnl_socket` is only read (`fd`, `portid` are copied out) and every
// `&self` method is a system call on the fd (sendto, recvfrom, setsockopt), which the kernel
// serializes; nothing is mutated through a shared reference.
unsafe impl Sync for Socket {}

impl Socket {
    fn open() -> Result<Socket> {
        // SAFETY: plain constructor call; a null return is handled below.
        let nl = unsafe { sys::mnl_socket_open2(libc::NETLINK_NETFILTER, libc::SOCK_CLOEXEC) };
        let nl = NonNull::new(nl).ok_or_else(|| Error::last_os("open netlink socket"))?;
        // SAFETY: `nl` is live; fd and portid are plain reads (portid is 0 until bound).
        let fd = unsafe { sys::mnl_socket_get_fd(nl.as_ptr()) };
        // From here on `sock` owns `nl` and closes it on every path.
        let mut sock = Socket { nl, fd, portid: 0 };
        // SAFETY: `nl` is live; binding with AUTOPID lets the kernel pick the port id.
        if unsafe { sys::mnl_socket_bind(nl.as_ptr(), 0, sys::MNL_SOCKET_AUTOPID as libc::pid_t) }
            < 0
        {
            return Err(Error::last_os("bind netlink socket"));
        }
        // SAFETY: `nl` is live and bound.
        sock.portid = unsafe { sys::mnl_socket_get_portid(nl.as_ptr()) };
        Ok(sock)
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is the kernel's address (nl_pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `bytes` is a live slice; the address points at a sockaddr_nl of the given size.
        let rc = unsafe {
            libc::sendto(
                self.fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram into `buf` (its whole capacity). `Ok(None)`: nothing to read
    /// (non-blocking, timeout, signal) or a datagram not from the kernel (ignored).
    fn recv(&self, buf: &mut AlignedBuf, flags: i32) -> Result<Option<usize>> {
        buf.clear();
        let space = buf.whole_mut();
        // SAFETY: zeroed sockaddr_nl is a valid out-parameter.
        let mut from: libc::sockaddr_nl = unsafe { mem::zeroed() };
        let mut from_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `space` is a live, writable buffer of `space.len()` bytes; `from`/`from_len`
        // describe a writable sockaddr_nl.
        let rc = unsafe {
            libc::recvfrom(
                self.fd,
                space.as_mut_ptr().cast(),
                space.len(),
                flags | libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                Some(libc::ENOBUFS) => Err(Error::NoBufs),
                _ => Err(Error::io("receive", err)),
            };
        }
        let len = rc as usize;
        if len > space.len() {
            return Err(Error::MessageTruncated {
                len,
                capacity: space.len(),
            });
        }
        if from.nl_pid != 0 {
            return Ok(None);
        }
        buf.set_len(len);
        Ok(Some(len))
    }

    fn setsockopt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points at a live `T` of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn getsockopt_int(&self, level: i32, name: i32) -> io::Result<i32> {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value`/`len` describe a writable c_int.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(value)
        }
    }

    /// Waits until the socket is readable or `timeout` passes; `Ok(false)` on timeout.
    fn poll_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 => Ok(false),
            n if n > 0 => Ok(true),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    Ok(true)
                } else {
                    Err(err)
                }
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `nl` was returned by mnl_socket_open2 and is closed only here, once.
        unsafe { sys::mnl_socket_close(self.nl.as_ptr()) };
    }
}

/// State of one dispatch pass.
#[derive(Default)]
struct Dispatch {
    packets: usize,
    panic: Option<Box<dyn Any + Send + 'static>>,
}

/// A netlink socket connected to the kernel's NFQUEUE subsystem, holding the queues bound on it.
///
/// Bind queues with [`Handle::queue`], then drive the handle with [`Handle::run`] (blocking) or
/// [`Handle::process`] (one receive, for event loops). Dropping the handle closes the socket; the
/// kernel then unbinds its queues and **drops** every packet still waiting for a verdict.
///
/// `'cb` is the lifetime of the callbacks: they may borrow local state that outlives the
/// handle. A handle stored in a struct is usually `Handle<'static>`.
///
/// The handle is `Send` (it can be moved to another thread with its callbacks, which must
/// therefore be `Send`) but not `Sync`: receiving and dispatching use buffers it owns. Its
/// [`Queue`]s borrow it, so move the handle before binding queues (or bind them in the thread
/// that runs it).
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
pub struct Handle<'cb> {
    sock: Socket,
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
}

// Compile-time proof of the thread-safety claims above.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Handle<'static>>();
};

impl<'cb> Handle<'cb> {
    /// Opens a netlink socket to the NFQUEUE subsystem.
    ///
    /// Opening needs no privilege; binding a queue needs `CAP_NET_ADMIN` in the network
    /// namespace.
    #[doc(alias = "nfq_open")]
    #[doc(alias = "mnl_socket_open")]
    pub fn open() -> Result<Self> {
        Ok(Handle {
            sock: Socket::open()?,
            recv: RefCell::new(AlignedBuf::with_capacity(DEFAULT_BUFFER_SIZE)),
            send: RefCell::new(AlignedBuf::with_capacity(SEND_BUFFER_SIZE)),
            backlog: RefCell::new(VecDeque::new()),
            errors: RefCell::new(VecDeque::new()),
            queues: RefCell::new(Vec::new()),
            seq: Cell::new(0),
            generation: Cell::new(0),
            ack_timeout: Cell::new(DEFAULT_ACK_TIMEOUT),
        })
    }

    /// Binds queue `num` with `config`, dispatching its packets to `callback`.
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
    pub fn queue<F>(&self, num: u16, config: QueueConfig, callback: F) -> Result<Queue<'_, 'cb>>
    where
        F: FnMut(&Packet<'_>) -> Verdict + Send + 'cb,
    {
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
            callback: Some(Box::new(callback)),
            fallback: config.fallback,
        });
        Ok(Queue::new(self, num, generation))
    }

    /// Unbinds queue `num` and forgets its slot. Called by `Queue`.
    pub(crate) fn unbind(&self, num: u16, generation: u64) -> Result<()> {
        let can_wait = self.recv.try_borrow_mut().is_ok();
        let result = if can_wait {
            self.request(
                ConfigMsg {
                    queue: num,
                    seq: 0,
                    ack: true,
                    cmd: Some(netlink::CMD_UNBIND),
                    params: None,
                    max_len: None,
                    flags: None,
                },
                OP_UNBIND,
            )
            .and_then(|a| {
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
                    queue: num,
                    seq: 0,
                    ack: false,
                    cmd: Some(netlink::CMD_UNBIND),
                    params: None,
                    max_len: None,
                    flags: None,
                },
            );
            self.sock
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

    /// Sends a configuration message and waits for the kernel's answer.
    fn request(&self, mut msg: ConfigMsg, op: &'static str) -> Result<Answer> {
        let seq = self.seq.get().wrapping_add(1).max(1);
        self.seq.set(seq);
        msg.seq = seq;
        let mut buf = AlignedBuf::with_capacity(128);
        netlink::put_config(&mut buf, &msg);
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        self.sock
            .send(buf.as_slice())
            .map_err(|e| Error::io(op, e))?;
        let deadline = Instant::now() + self.ack_timeout.get();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !self
                    .sock
                    .poll_readable(Some(left))
                    .map_err(|e| Error::io(op, e))?
            {
                return Err(Error::Timeout { op });
            }
            let n = match self.sock.recv(&mut recv, libc::MSG_DONTWAIT) {
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

    /// Receives once and dispatches what arrived: calls the callbacks of the packets, sends
    /// their verdicts (all verdicts of one receive in one `sendmsg`) and returns how many
    /// packets were handled.
    ///
    /// Waits for data unless the socket is non-blocking ([`Handle::set_nonblocking`]) or has a
    /// receive timeout ([`Handle::set_recv_timeout`]); returns `Ok(0)` when nothing arrived.
    ///
    /// Errors the kernel reports about earlier verdicts arrive interleaved with packets; they are
    /// returned after the packets of the same receive were dispatched, one per call (the rest
    /// are kept for the following calls). [`Error::is_transient`] tells which ones the loop can
    /// simply continue past, such as [`Error::NoBufs`].
    ///
    /// # Panics
    /// When a callback panics, its packet gets the queue's fallback verdict
    /// ([`QueueConfig::fallback`], default drop), no further callback runs for the packets of
    /// the same receive (they get their fallback verdicts too), and the panic is resumed here,
    /// on the caller's thread, after the verdicts were sent.
    #[doc(alias = "nfq_handle_packet")]
    #[doc(alias = "mnl_cb_run")]
    pub fn process(&self) -> Result<usize> {
        self.process_once(0).map(|(n, _)| n)
    }

    /// Like [`Handle::process`]; also tells whether the receive found nothing to read.
    fn process_once(&self, recv_flags: i32) -> Result<(usize, bool)> {
        if let Some(err) = self.errors.borrow_mut().pop_front() {
            return Err(err);
        }
        let mut recv = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        let mut state = Dispatch::default();
        let mut idle = false;
        let backlog = mem::take(&mut *self.backlog.borrow_mut());
        if backlog.is_empty() {
            match self.sock.recv(&mut recv, recv_flags)? {
                Some(n) => self.dispatch(&recv.as_slice()[..n], &mut state),
                None => idle = true,
            }
        } else {
            for message in &backlog {
                self.dispatch(message.as_slice(), &mut state);
            }
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

    /// Runs the receive loop: waits for packets and dispatches them, forever.
    ///
    /// Returns only with an error: a non-[transient](Error::is_transient) one ends the loop,
    /// and so does a transient one, so that the caller can count it; call `run` again to go on.
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
    pub fn run(&self) -> Result<()> {
        loop {
            let (_, idle) = self.process_once(0)?;
            if idle {
                // Non-blocking socket (or a timeout/signal): wait instead of spinning.
                self.sock
                    .poll_readable(None)
                    .map_err(|e| Error::io("poll", e))?;
            }
        }
    }

    fn dispatch(&self, datagram: &[u8], state: &mut Dispatch) {
        for (_, message) in netlink::messages(datagram) {
            match message {
                Message::Packet { queue, attrs } => {
                    let packet = Packet::new(queue, attrs);
                    self.decide(&packet, state);
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

    fn decide(&self, packet: &Packet<'_>, state: &mut Dispatch) {
        let queue = packet.queue_num();
        let (generation, mut callback, fallback) = {
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
            (slot.generation, callback, slot.fallback.clone())
        };
        let verdict = match callback.as_mut() {
            Some(cb) => match panic::catch_unwind(AssertUnwindSafe(|| cb(packet))) {
                Ok(verdict) => verdict,
                Err(payload) => {
                    state.panic = Some(payload);
                    fallback.clone()
                }
            },
            None => fallback.clone(),
        };
        if let Some(cb) = callback {
            let mut queues = self.queues.borrow_mut();
            if let Some(slot) = queues
                .iter_mut()
                .find(|s| s.num == queue && s.generation == generation)
            {
                slot.callback = Some(cb);
            }
            // else: the Queue was dropped from inside its own callback; `cb` is freed here.
        }
        state.packets += 1;
        let verdict = if verdict.payload().is_some() && packet.is_truncated() {
            self.errors.borrow_mut().push_back(Error::TruncatedPayload {
                queue,
                id: packet.id(),
                copied: packet.payload().len(),
                original: packet.original_len(),
            });
            &fallback
        } else {
            &verdict
        };
        self.push_verdict(queue, packet.id(), verdict);
    }

    fn push_verdict(&self, queue: u16, id: u32, verdict: &Verdict) {
        let needed =
            netlink::verdict_len(verdict.mark().is_some(), verdict.payload().map(<[u8]>::len));
        let mut send = self.send.borrow_mut();
        if send.len() + needed > send.capacity() && !send.is_empty() {
            self.send_now(&mut send);
        }
        netlink::put_verdict(
            &mut send,
            queue,
            id,
            verdict.action().raw(),
            verdict.mark(),
            verdict.payload(),
        );
    }

    fn flush_verdicts(&self) {
        let mut send = self.send.borrow_mut();
        if !send.is_empty() {
            self.send_now(&mut send);
        }
        if send.capacity() > 4 * SEND_BUFFER_SIZE {
            // A payload verdict grew the buffer; give the memory back.
            send.resize_capacity(SEND_BUFFER_SIZE);
        }
    }

    fn send_now(&self, send: &mut AlignedBuf) {
        if let Err(e) = self.sock.send(send.as_slice()) {
            self.errors
                .borrow_mut()
                .push_back(Error::io("send verdicts", e));
        }
        send.clear();
    }

    /// The socket's netlink port id (what `/proc/net/netfilter/nfnetlink_queue` lists as the
    /// queue's owner).
    #[doc(alias = "mnl_socket_get_portid")]
    pub fn portid(&self) -> u32 {
        self.sock.portid
    }

    /// Sets the socket's receive buffer size (`SO_RCVBUFFORCE` when privileged, else
    /// `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`) and returns the size the kernel
    /// granted (as `SO_RCVBUF` reports it: twice the request, for bookkeeping overhead).
    ///
    /// A larger buffer absorbs bursts: when it overflows the kernel drops packets and reports
    /// [`Error::NoBufs`].
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<usize> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let forced = self
            .sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &value);
        if forced.is_err() {
            self.sock
                .setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &value)
                .map_err(|e| Error::io("set SO_RCVBUF", e))?;
        }
        self.recv_buffer_size()
    }

    /// The socket's receive buffer size as the kernel reports it (`SO_RCVBUF`).
    pub fn recv_buffer_size(&self) -> Result<usize> {
        self.sock
            .getsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|v| v as usize)
            .map_err(|e| Error::io("get SO_RCVBUF", e))
    }

    /// With `true`, the kernel no longer reports receive-buffer overflows
    /// ([`Error::NoBufs`]); dropped packets are still counted in the queue statistics.
    pub fn set_no_enobufs(&self, on: bool) -> Result<()> {
        self.sock
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
        let flags = unsafe { libc::fcntl(self.sock.fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(Error::last_os("fcntl(F_GETFL)"));
        }
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(self.sock.fd, libc::F_SETFL, flags) } < 0 {
            return Err(Error::last_os("fcntl(F_SETFL)"));
        }
        Ok(())
    }

    /// Makes a blocking [`Handle::process`] give up after `timeout` with `Ok(0)` (`None`: wait
    /// forever, the default).
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
        self.sock
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
        unsafe { BorrowedFd::borrow_raw(self.sock.fd) }
    }
}

impl AsRawFd for Handle<'_> {
    #[doc(alias = "nfq_fd")]
    #[doc(alias = "mnl_socket_get_fd")]
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd
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
            .field("fd", &self.sock.fd)
            .field("portid", &self.sock.portid)
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
