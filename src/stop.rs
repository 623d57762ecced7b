//! `Shutdown`: stops `Handle::run_until` from another thread or a signal handler.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

struct Inner {
    triggered: AtomicBool,
    /// An eventfd that becomes (and stays) readable when triggered, waking every thread that
    /// polls it.
    event: OwnedFd,
}

/// A shutdown switch shared by any number of handles and threads.
///
/// [`Handle::run_until`](crate::Handle::run_until) returns `Ok(())` promptly once
/// [`Shutdown::trigger`] was called, after sending the verdicts of every packet it dispatched.
/// `trigger` is async-signal-safe (an atomic store and a `write` to an eventfd), so it may be
/// called from a signal handler. `Clone + Send + Sync`: give a clone to each thread of a
/// multi-queue program.
///
/// ```no_run
/// use libnfq::{Handle, QueueConfig, Shutdown, Verdict};
/// # fn main() -> libnfq::Result<()> {
/// let shutdown = Shutdown::new()?;
/// let stopper = shutdown.clone();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(10));
///     stopper.trigger();
/// });
/// let handle = Handle::open()?;
/// let _queue = handle.queue(0, QueueConfig::new(), |_| Verdict::accept())?;
/// handle.run_until(&shutdown)?; // returns after about ten seconds
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Shutdown>();
};

impl Shutdown {
    /// A new switch, not triggered.
    pub fn new() -> Result<Shutdown> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::last_os("eventfd"));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Shutdown {
            inner: Arc::new(Inner {
                triggered: AtomicBool::new(false),
                event,
            }),
        })
    }

    /// Triggers the shutdown: every `run_until` using this switch returns promptly.
    /// Async-signal-safe; calling it again does nothing more.
    pub fn trigger(&self) {
        if !self.inner.triggered.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; async-signal-safe. It
            // cannot fail for a non-overflowing counter; a failure would only delay wake-up
            // until the next packet, as the flag is already set.
            let _ = unsafe {
                libc::write(self.inner.event.as_raw_fd(), (&one as *const u64).cast(), 8)
            };
        }
    }

    /// `true` once triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.inner.event.as_raw_fd()
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}
