//! Async receiving on tokio (feature `tokio`): packets arrive as owned
//! [`DeferredPacket`]s from [`AsyncHandle::recv`], and are decided with the same deferred-verdict
//! types as in blocking code (from any task or thread).
//!
//! ```no_run
//! use libnfq::tokio::AsyncHandle;
//! use libnfq::{QueueConfig, Verdict};
//!
//! # async fn run() -> libnfq::Result<()> {
//! let mut handle = AsyncHandle::open()?;
//! handle.bind(0, QueueConfig::new())?;
//! loop {
//!     let packet = handle.recv().await?;
//!     let verdict = if packet.payload().len() > 1000 { Verdict::drop() } else { Verdict::accept() };
//!     packet.verdict(verdict)?;
//! }
//! # }
//! ```
//!
//! The async path shares the blocking core: an [`AsyncHandle`] is a [`Handle`] whose queues
//! defer every packet, driven by tokio's readiness events on the socket instead of a blocking
//! receive. Verdicts go to the kernel with a plain `send`, which for a netlink socket is
//! processed synchronously by the kernel; should it ever report `EAGAIN` or `ENOBUFS`, the send
//! is retried (waiting for the socket to become writable, for up to about a second) rather than
//! dropped.

use std::os::fd::{AsRawFd, RawFd};

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;

use crate::config::QueueConfig;
use crate::counters::Counters;
use crate::deferred::{DeferredPacket, VerdictSender};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::pull::Ready;

/// The handle's socket fd, as tokio registers it. It does not own the fd: the handle does, and
/// the `AsyncFd` is dropped (deregistered) before the handle closes it.
struct SocketFd(RawFd);

impl AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A [`Handle`] for tokio: bind queues, then `recv().await` their packets.
///
/// `Send`, so it can live in a spawned task. Needs a tokio runtime with IO enabled.
pub struct AsyncHandle {
    // Field order matters: `fd` is deregistered before `handle` closes the socket, and the
    // ready packets get their fallbacks before that.
    ready: Ready,
    fd: AsyncFd<SocketFd>,
    handle: Handle<'static>,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<AsyncHandle>();
};

impl AsyncHandle {
    /// Opens a handle and registers its socket with the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime with IO enabled (as `AsyncFd::new` does).
    pub fn open() -> Result<Self> {
        AsyncHandle::from_handle(Handle::open()?)
    }

    /// Wraps a handle opened another way, for instance in another network namespace
    /// ([`Handle::open_in_netns`], [`Handle::from_fd`]), and registers its socket with the
    /// current tokio runtime. Queues it already has keep their callbacks (run from
    /// [`AsyncHandle::recv`]); queues bound with [`AsyncHandle::bind`] return their packets.
    ///
    /// # Panics
    /// Outside a tokio runtime with IO enabled (as `AsyncFd::new` does).
    pub fn from_handle(handle: Handle<'static>) -> Result<Self> {
        // SAFETY: the fd is the handle's socket, open until the handle is dropped; `fd` is
        // declared before `handle` in `AsyncHandle`, so it is deregistered (dropped) first, and
        // `SocketFd::as_raw_fd` always returns that same fd.
        let fd = unsafe {
            AsyncFd::register_with_interest(SocketFd(handle.as_raw_fd()), Interest::READABLE)
        }
        .map_err(|e| Error::io("register with tokio", e.into()))?;
        Ok(AsyncHandle {
            fd,
            handle,
            ready: Ready::default(),
        })
    }

    /// Binds queue `num`: its packets are returned by [`AsyncHandle::recv`]. The queue stays
    /// bound until the handle is dropped (or [`AsyncHandle::unbind`]).
    #[doc(alias = "nfq_create_queue")]
    pub fn bind(&mut self, num: u16, config: QueueConfig) -> Result<()> {
        self.ready.bind(&self.handle, num, config)
    }

    /// Unbinds queue `num`. Its packets received but not returned by `recv` yet get their
    /// fallback verdict first, while the queue is still bound.
    #[doc(alias = "nfq_destroy_queue")]
    pub fn unbind(&mut self, num: u16) -> Result<()> {
        self.ready.unbind(&self.handle, num)
    }

    /// The next packet of any bound queue, waiting for it without blocking the runtime.
    ///
    /// Returns only fatal errors (the socket failed, a queue was taken away): overload
    /// (`ENOBUFS`) and the kernel's late answers about single verdicts are counted
    /// ([`AsyncHandle::counters`]) and skipped, as in [`Handle::run`].
    pub async fn recv(&mut self) -> Result<DeferredPacket> {
        loop {
            if let Some(packet) = self.ready.pop() {
                return Ok(packet);
            }
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|e| Error::io("wait for readiness", e))?;
            match self.handle.try_process() {
                // Nothing waiting: only now may tokio forget the readiness (edge-triggered).
                Ok(None) => guard.clear_ready(),
                Ok(Some(_)) => guard.retain_ready(),
                Err(e) if e.is_transient() => guard.retain_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    /// See [`Handle::counters`].
    pub fn counters(&self) -> Counters {
        self.handle.counters()
    }

    /// A sender for range verdicts and verdict batches on this handle.
    pub fn verdict_sender(&self) -> VerdictSender {
        self.handle.verdict_sender()
    }

    /// The underlying blocking handle, for its settings (buffer sizes, batch limit, ...).
    pub fn handle(&self) -> &Handle<'static> {
        &self.handle
    }
}

impl std::fmt::Debug for AsyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncHandle")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}
