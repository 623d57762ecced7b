//! Pull-style receiving: `Receiver::recv()` returns owned packets, decided by consuming them.
//! The blocking counterpart of `tokio::AsyncHandle`, sharing its plumbing.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::config::QueueConfig;
use crate::counters::Counters;
use crate::deferred::{DeferredPacket, Pending, VerdictSender};
use crate::error::Result;
use crate::handle::Handle;

/// Packets received and not handed out yet.
#[derive(Clone, Default)]
pub(crate) struct Ready(Arc<Mutex<VecDeque<DeferredPacket>>>);

impl Ready {
    /// Binds `num` on `handle` with a callback that defers every packet into this list.
    pub(crate) fn bind(
        &self,
        handle: &Handle<'static>,
        num: u16,
        config: QueueConfig,
    ) -> Result<()> {
        let ready = self.clone();
        handle.bind_deferrable_detached(num, config, move |pending: Pending<'_>| {
            let (packet, handled) = pending.defer();
            ready.lock().push_back(packet);
            handled
        })?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeferredPacket>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn pop(&self) -> Option<DeferredPacket> {
        self.lock().pop_front()
    }

    /// Unbinds `num` after settling its packets still in the list: each gets its queue's
    /// fallback verdict while the queue is still bound (after the unbind the kernel would have
    /// released them, and their verdicts would only come back as errors).
    pub(crate) fn unbind(&self, handle: &Handle<'static>, num: u16) -> Result<()> {
        let settled: VecDeque<DeferredPacket> = {
            let mut ready = self.lock();
            let (ours, rest) = ready.drain(..).partition(|p| p.queue_num() == num);
            *ready = rest;
            ours
        };
        drop(settled); // fallback verdicts, sent now
        handle.unbind_any(num)
    }
}

/// A handle for programs written around a blocking `recv()` → decide → `verdict()` loop (as
/// with many C programs, and the `nfq` crate): bind queues, then `recv()` their packets one by
/// one as owned [`DeferredPacket`]s, which can be decided at once or later, on any thread.
///
/// ```no_run
/// use libnfq::{QueueConfig, Receiver, Verdict};
///
/// # fn main() -> libnfq::Result<()> {
/// let mut rx = Receiver::open()?;
/// rx.bind(0, QueueConfig::new())?;
/// loop {
///     let packet = rx.recv()?;
///     let verdict = if packet.payload().len() > 1000 { Verdict::drop() } else { Verdict::accept() };
///     packet.verdict(verdict)?;
/// }
/// # }
/// ```
///
/// It keeps the guarantees of the callback API: a packet dropped without a verdict gets its
/// queue's fallback; a verdict for a packet of an earlier binding of its queue number is refused
/// ([`Error::StaleBinding`](crate::Error::StaleBinding)); overload (`ENOBUFS`) and the kernel's
/// late answers about single verdicts are counted ([`Receiver::counters`]), not returned.
/// Packets are received in batches ([`Handle::set_batch_limit`]); while any packet handed out
/// is undecided, verdicts are sent one by one (no range verdicts), and verdicts of different
/// packets may be sent in any order.
pub struct Receiver {
    // Field order: the ready packets get their fallbacks before the handle closes the socket.
    ready: Ready,
    handle: Handle<'static>,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Receiver>();
};

impl Receiver {
    /// Opens a handle (see [`Handle::open`]).
    pub fn open() -> Result<Self> {
        Ok(Receiver::with_handle(Handle::open()?))
    }

    /// Wraps a handle opened some other way (it must have no queues bound yet).
    pub fn with_handle(handle: Handle<'static>) -> Self {
        Receiver {
            ready: Ready::default(),
            handle,
        }
    }

    /// Binds queue `num`; its packets are returned by [`Receiver::recv`]. It stays bound until
    /// [`Receiver::unbind`] or the receiver is dropped.
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

    /// The next packet of any bound queue, waiting for it (or until the handle's receive
    /// timeout, [`Handle::set_recv_timeout`], after which it waits again: use
    /// [`Receiver::try_recv`] for a bounded wait).
    ///
    /// Returns only fatal errors (the socket failed, a queue was taken away); transient ones
    /// are counted and skipped.
    pub fn recv(&mut self) -> Result<DeferredPacket> {
        loop {
            if let Some(packet) = self.try_recv()? {
                return Ok(packet);
            }
        }
    }

    /// The next packet if one is waiting (already received, or arriving within the handle's
    /// receive timeout when it is blocking with one), else `None`.
    pub fn try_recv(&mut self) -> Result<Option<DeferredPacket>> {
        if let Some(packet) = self.ready.pop() {
            return Ok(Some(packet));
        }
        match self.handle.process() {
            Ok(_) => {}
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e),
        }
        Ok(self.ready.pop())
    }

    /// A sender for range verdicts and verdict batches on this receiver's socket.
    pub fn verdict_sender(&self) -> VerdictSender {
        self.handle.verdict_sender()
    }

    /// See [`Handle::counters`].
    pub fn counters(&self) -> Counters {
        self.handle.counters()
    }

    /// The underlying handle, for its settings (buffer sizes, batch limit, timeouts, ...).
    pub fn handle(&self) -> &Handle<'static> {
        &self.handle
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}
