//! The netlink socket, and the shared cell through which other threads send verdicts on it.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use nfq_sys as sys;

use crate::counters::CounterCells;
use crate::error::{Error, Result};
use crate::netlink::AlignedBuf;

/// The netlink socket, owned: opened by libmnl, closed exactly once on drop.
pub(crate) struct Socket {
    nl: NonNull<sys::mnl_socket>,
    pub(crate) fd: RawFd,
    pub(crate) portid: u32,
}

// SAFETY: `struct mnl_socket` is a plain fd plus the socket address, owned by this value alone;
// libmnl keeps no thread-local or global state for it, so it may be used and closed from any
// thread.
unsafe impl Send for Socket {}
// SAFETY: after `open`, the `mnl_socket` is only read (`fd`, `portid` are copied out) and every
// `&self` method is a system call on the fd (send, recv, setsockopt, poll), which the
// kernel serializes; nothing is mutated through a shared reference.
unsafe impl Sync for Socket {}

impl Socket {
    pub(crate) fn open() -> Result<Socket> {
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
        sock.connect_kernel("connect netlink socket")?;
        Ok(sock)
    }

    /// Connects the socket to the kernel (port id 0). From then on the kernel itself refuses
    /// datagrams that another socket addresses to this one (`ECONNREFUSED` for the sender:
    /// `netlink_getsockbyportid` admits only the connected peer), so everything received
    /// comes from the kernel, and receives and sends need no address (no `sockaddr_nl` copied
    /// in or out per call: 2.3% of a drain's consumer samples under `perf`).
    fn connect_kernel(&self, op: &'static str) -> Result<()> {
        // SAFETY: an all-zero sockaddr_nl is the kernel's address (nl_pid 0, no groups).
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `kernel` is a valid sockaddr_nl of the size given; `fd` is open.
        let rc = unsafe {
            libc::connect(
                self.fd,
                (&kernel as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(Error::last_os(op));
        }
        Ok(())
    }

    /// Sends one datagram to the kernel (see [`send_on`]).
    pub(crate) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        send_on(self.fd, bytes)
    }

    /// Receives one datagram from the kernel into `buf` (see [`recv_on`]).
    pub(crate) fn recv(&self, buf: &mut AlignedBuf, flags: i32) -> Result<Option<usize>> {
        recv_on(self.fd, buf, flags)
    }

    pub(crate) fn setsockopt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
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

    pub(crate) fn getsockopt_int(&self, level: i32, name: i32) -> io::Result<i32> {
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

    /// Waits until the socket is ready for `events` (see [`poll_on`]).
    pub(crate) fn poll(
        &self,
        events: libc::c_short,
        other: Option<RawFd>,
        timeout: Option<Duration>,
    ) -> io::Result<(bool, bool)> {
        poll_on(self.fd, events, other, timeout)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `nl` was returned by mnl_socket_open2 and is closed only here, once.
        unsafe { sys::mnl_socket_close(self.nl.as_ptr()) };
    }
}

/// The socket as shared with verdict senders on other threads.
///
/// The `Handle` closes it with [`Shared::close`] when dropped; senders that come later find it
/// closed and get [`Error::HandleClosed`]. The read lock held during each send means the fd
/// is never closed — and its number never reused by another file — while a send is under way.
pub(crate) struct Shared {
    sock: RwLock<Option<Socket>>,
    pub(crate) fd: RawFd,
    pub(crate) portid: u32,
    /// What the handle and every sender on its socket counted.
    pub(crate) counters: CounterCells,
}

impl Shared {
    pub(crate) fn new(sock: Socket) -> Shared {
        Shared {
            fd: sock.fd,
            portid: sock.portid,
            sock: RwLock::new(Some(sock)),
            counters: CounterCells::default(),
        }
    }

    /// The open socket, or `HandleClosed`.
    pub(crate) fn get(&self) -> Result<SocketGuard<'_>> {
        let guard = self
            .sock
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_some() {
            Ok(SocketGuard(guard))
        } else {
            Err(Error::HandleClosed)
        }
    }

    /// Closes the socket (waiting for sends under way to finish).
    pub(crate) fn close(&self) {
        let sock = self
            .sock
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(sock);
    }
}

/// A read-locked, open socket.
pub(crate) struct SocketGuard<'a>(RwLockReadGuard<'a, Option<Socket>>);

impl std::ops::Deref for SocketGuard<'_> {
    type Target = Socket;
    fn deref(&self) -> &Socket {
        // `Shared::get` checked that the socket is there, and the read lock keeps it there.
        self.0.as_ref().expect("checked by Shared::get")
    }
}

impl Socket {
    /// Adopts a netlink socket opened by someone else (`socket(AF_NETLINK, SOCK_RAW or
    /// SOCK_DGRAM, NETLINK_NETFILTER)`, in whatever network namespace): checked to be one,
    /// wrapped by libmnl (`mnl_socket_fdopen`), and bound with a kernel-chosen port id when it
    /// is not bound yet. On error the fd is closed (dropped).
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Socket> {
        use std::os::fd::{AsRawFd, IntoRawFd};
        const OP: &str = "adopt netlink socket";
        let raw = fd.as_raw_fd();
        let opt = |name| {
            let mut value: libc::c_int = 0;
            let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `value`/`len` describe a writable c_int; `raw` is open (owned by `fd`).
            let rc = unsafe {
                libc::getsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    name,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if rc < 0 {
                Err(Error::last_os(OP))
            } else {
                Ok(value)
            }
        };
        let refuse = |errno| Err(Error::io(OP, io::Error::from_raw_os_error(errno)));
        if opt(libc::SO_DOMAIN)? != libc::AF_NETLINK {
            return refuse(libc::EAFNOSUPPORT);
        }
        if opt(libc::SO_PROTOCOL)? != libc::NETLINK_NETFILTER {
            return refuse(libc::EPROTONOSUPPORT);
        }
        if !matches!(opt(libc::SO_TYPE)?, libc::SOCK_RAW | libc::SOCK_DGRAM) {
            return refuse(libc::ESOCKTNOSUPPORT);
        }
        // SAFETY: `raw` is an open netlink socket; on failure libmnl neither closes nor keeps
        // it (and `fd` still owns it), on success the returned `mnl_socket` holds it.
        let nl = unsafe { sys::mnl_socket_fdopen(raw) };
        let nl = NonNull::new(nl).ok_or_else(|| Error::last_os(OP))?;
        // From here on `sock` owns the fd (closed by `mnl_socket_close` in `Socket::drop`).
        let fd = fd.into_raw_fd();
        // SAFETY: `nl` is live; the port id is 0 when the socket is not bound yet.
        let portid = unsafe { sys::mnl_socket_get_portid(nl.as_ptr()) };
        let mut sock = Socket { nl, fd, portid };
        if portid == 0 {
            // SAFETY: `nl` is live and not bound; AUTOPID lets the kernel pick the port id.
            if unsafe {
                sys::mnl_socket_bind(nl.as_ptr(), 0, sys::MNL_SOCKET_AUTOPID as libc::pid_t)
            } < 0
            {
                return Err(Error::last_os(OP));
            }
            // SAFETY: `nl` is live and bound.
            sock.portid = unsafe { sys::mnl_socket_get_portid(nl.as_ptr()) };
        }
        sock.connect_kernel(OP)?;
        Ok(sock)
    }
}

// The system calls on the socket, by fd: `Socket`'s methods (under the shared cell's read
// lock, for other threads) and the handle's own receive path use them. The handle may call them
// on its fd without the lock: only the handle's drop closes the socket (`Owner`), so the fd is
// open, and names this socket, for as long as the handle can call them.

/// Sends one datagram to the kernel. A send that would block or finds the kernel short of
/// memory (`EAGAIN`, `ENOBUFS`, `ENOMEM`) is retried, waiting for the socket to become
/// writable, for up to about a second: a verdict is never dropped silently.
pub(crate) fn send_on(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    let mut retries = 0;
    loop {
        // SAFETY: `bytes` is a live slice of the length given. The socket is connected to
        // the kernel (`connect_kernel`), which is where a send without address goes.
        let rc = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM) if retries < 100 => {
                retries += 1;
                poll_on(fd, libc::POLLOUT, None, Some(Duration::from_millis(10)))?;
            }
            _ => return Err(err),
        }
    }
}

/// Receives one datagram from the kernel into `buf` (its whole capacity). `Ok(None)`:
/// nothing to read (`EAGAIN`: non-blocking or timed out) or interrupted by a signal.
/// Only the kernel can have sent it: the socket is connected to the kernel
/// (`connect_kernel`), which refuses datagrams from other sockets.
pub(crate) fn recv_on(fd: RawFd, buf: &mut AlignedBuf, flags: i32) -> Result<Option<usize>> {
    buf.clear();
    let space = buf.whole_mut();
    // SAFETY: `space` is a live, writable buffer of `space.len()` bytes.
    let rc = unsafe {
        libc::recv(
            fd,
            space.as_mut_ptr().cast(),
            space.len(),
            flags | libc::MSG_TRUNC,
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
        // The datagram was cut (MSG_TRUNC gave its real length): what fits is in `buf`,
        // for the caller to read the packet's id from.
        let capacity = space.len();
        buf.set_len(capacity);
        return Err(Error::MessageTruncated { len, capacity });
    }
    buf.set_len(len);
    Ok(Some(len))
}

/// Waits until the socket is ready for `events`, or `other` (another fd) is readable, or
/// `timeout` passes. Returns `(socket ready, other readable)`; both `false` on timeout. A
/// signal counts as the socket being ready (the caller then retries its operation).
pub(crate) fn poll_on(
    fd: RawFd,
    events: libc::c_short,
    other: Option<RawFd>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: other.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: `fds` is a valid array of two pollfds (a negative fd is ignored by poll).
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok((true, false))
        } else {
            Err(err)
        };
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}
