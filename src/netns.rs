//! Handles whose socket lives in another network namespace: opened there by a short-lived
//! thread ([`Handle::open_in_netns`]), or adopted from the caller ([`Handle::from_fd`]).
//!
//! A netlink socket belongs to the network namespace it was created in, for its whole life,
//! whichever thread later uses it. So a thread that enters the namespace, opens the socket and
//! exits is enough: the calling thread never changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::socket::Socket;

impl<'cb> Handle<'cb> {
    /// Opens a handle whose socket lives in the network namespace named by `netns`, a namespace
    /// file such as `/run/netns/NAME` (`ip netns add`) or `/proc/PID/ns/net` (a container's
    /// process), without moving the calling thread: a short-lived thread enters the
    /// namespace, opens the socket and exits. Queues bound on the handle are that namespace's
    /// queues: they receive what its `NFQUEUE` rules send.
    ///
    /// Entering the namespace needs `CAP_SYS_ADMIN` in the user namespace that owns it (root,
    /// or the owner of a rootless container's user namespace); binding queues then needs
    /// `CAP_NET_ADMIN` there, as usual.
    ///
    /// ```no_run
    /// # fn main() -> libnfq::Result<()> {
    /// use libnfq::{Handle, QueueConfig, Verdict};
    /// let handle = Handle::open_in_netns("/run/netns/blue")?;
    /// let _queue = handle.queue(0, QueueConfig::new(), |_| Verdict::accept())?;
    /// handle.run()
    /// # }
    /// ```
    #[doc(alias = "setns")]
    pub fn open_in_netns(netns: impl AsRef<Path>) -> Result<Self> {
        let file =
            File::open(netns.as_ref()).map_err(|e| Error::io("open network namespace", e))?;
        Self::open_in_netns_fd(file.as_fd())
    }

    /// Like [`Handle::open_in_netns`], with the namespace given as an open namespace file
    /// descriptor (for instance a pidfd's `/proc/PID/ns/net` opened earlier).
    pub fn open_in_netns_fd(netns: BorrowedFd<'_>) -> Result<Self> {
        let raw = netns.as_raw_fd();
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns(2) takes an fd (kept open by the caller's borrow for the
                    // whole scope) and a flag; with CLONE_NEWNET it moves only this thread,
                    // which exits right after opening the socket.
                    if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } != 0 {
                        return Err(Error::last_os("enter network namespace"));
                    }
                    Socket::open()
                })
                .join()
        });
        match opened {
            Ok(sock) => Ok(Handle::with_socket(sock?)),
            Err(_) => Err(Error::io(
                "enter network namespace",
                io::Error::other("the thread opening the socket panicked"),
            )),
        }
    }

    /// Adopts a netlink socket the caller opened (for instance in another network namespace,
    /// or received from a privileged helper over a Unix socket): it must be an `AF_NETLINK`
    /// socket of protocol `NETLINK_NETFILTER` (else [`Error::Io`] with `EAFNOSUPPORT`,
    /// `EPROTONOSUPPORT`, or the `ENOTSOCK` of a file that is no socket). It is bound (with a
    /// port id the kernel picks) if it was not, is connected to the kernel (so that the kernel
    /// refuses datagrams other sockets address to it, as for [`Handle::open`]'s socket), gets
    /// the receive buffer [`Handle::open`] asks for where allowed, and is closed when the handle
    /// is dropped, like one the handle opened.
    /// Its file status flags are kept: leave it blocking for [`Handle::run`].
    #[doc(alias = "mnl_socket_fdopen")]
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        Ok(Handle::with_socket(Socket::from_fd(fd)?))
    }
}
