//! `Queue`: one bound queue number, unbound on drop.

use std::fmt;

use crate::error::Result;
use crate::handle::Handle;

/// A queue bound on a [`Handle`], created by [`Handle::queue`].
///
/// Dropping it unbinds the queue (the kernel drops the packets still waiting in it) and then
/// frees its callback. It borrows its handle, so it cannot outlive it.
#[doc(alias = "nfq_q_handle")]
#[must_use = "dropping the Queue unbinds it at once"]
pub struct Queue<'h, 'cb> {
    handle: &'h Handle<'cb>,
    num: u16,
    generation: u64,
    unbound: bool,
}

impl<'h, 'cb> Queue<'h, 'cb> {
    pub(crate) fn new(handle: &'h Handle<'cb>, num: u16, generation: u64) -> Self {
        Queue {
            handle,
            num,
            generation,
            unbound: false,
        }
    }

    /// The queue number.
    pub fn num(&self) -> u16 {
        self.num
    }

    /// The handle the queue is bound on.
    pub fn handle(&self) -> &'h Handle<'cb> {
        self.handle
    }

    /// Unbinds the queue now and reports the kernel's answer (dropping does the same and
    /// ignores it).
    #[doc(alias = "nfq_destroy_queue")]
    #[doc(alias = "NFQNL_CFG_CMD_UNBIND")]
    #[doc(alias = "nfq_nlmsg_cfg_put_cmd")]
    ///
    /// Verdicts already decided for its packets are sent first. This waits for the kernel's
    /// answer (at most [`Handle::set_ack_timeout`]), except when called from inside a
    /// callback of the same handle: the answer is then checked by a later receive pass.
    pub fn unbind(mut self) -> Result<()> {
        self.unbound = true;
        self.handle.unbind(self.num, self.generation, true)
    }
}

impl Drop for Queue<'_, '_> {
    /// Unbinds without waiting for the kernel's answer, so that dropping a queue never stalls
    /// (a flooded socket can bury the answer): the kernel acts on the unbind as it receives
    /// it, and the handle skips the packets of the old binding still on their way.
    fn drop(&mut self) {
        if !self.unbound {
            // Nothing to report to from a destructor; `unbind` gives the answer to who wants it.
            let _ = self.handle.unbind(self.num, self.generation, false);
        }
    }
}

impl fmt::Debug for Queue<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("num", &self.num)
            .finish_non_exhaustive()
    }
}
