//! Entry points for fuzzing the receive path (feature `fuzzing`: unstable, off by default, not
//! covered by semver). They never send anything to the kernel and never touch a live pass.

use super::{Callback, Dispatch, Handle, Slot};
use crate::config::{QueueConfig, QueueFlags};
use crate::deferred::{Handled, Pending, QueueState};
use crate::error::{Error, Result};
use crate::netlink::AlignedBuf;
use crate::packet::Packet;
use crate::verdict::Verdict;

impl<'cb> Handle<'cb> {
    /// Dispatches `datagram` as if the kernel had sent it: packet messages of queues registered
    /// with [`Handle::register_for_fuzzing`] go to their callbacks, error answers become errors
    /// (returned), and every verdict is discarded, never sent (deferred packets of such queues
    /// are refused with [`Error::StaleBinding`]). Packets of queues bound in the kernel are not
    /// dispatched. Returns the packets shown to callbacks and the errors found.
    ///
    /// From inside a callback of this handle it returns [`Error::Reentrant`] and does nothing.
    /// A callback's panic is resumed after the pass.
    pub fn dispatch_for_fuzzing(&self, datagram: &[u8]) -> Result<(usize, Vec<Error>)> {
        let _pass = self.recv.try_borrow_mut().map_err(|_| Error::Reentrant)?;
        if !self.errors.borrow().is_empty() {
            // The live receive path's errors are the caller's, not the fuzzer's.
            return Err(Error::Reentrant);
        }
        let buf = AlignedBuf::copy_of(datagram);
        self.discard.set(true);
        self.fuzzing.set(true);
        self.pass_limit.set(self.batch_limit());
        let mut state = Dispatch::default();
        self.dispatch(buf.as_slice(), &mut state);
        self.flush_verdicts();
        self.discard.set(false);
        self.fuzzing.set(false);
        if let Some(payload) = state.panic {
            std::panic::resume_unwind(payload);
        }
        Ok((state.packets, self.errors.borrow_mut().drain(..).collect()))
    }

    /// Registers `callback` for queue `num` **without binding it in the kernel** (no privilege
    /// needed), for [`Handle::dispatch_for_fuzzing`] only. Fails with
    /// [`Error::QueueAlreadyBound`] if `num` has a binding or registration on this handle.
    pub fn register_for_fuzzing<F>(&self, num: u16, config: QueueConfig, callback: F) -> Result<()>
    where
        F: FnMut(&Packet<'_>) -> Verdict + Send + 'cb,
    {
        self.register(num, config, Callback::Verdict(Box::new(callback)))
    }

    /// [`Handle::register_for_fuzzing`] with a callback that may defer packets.
    pub fn register_deferrable_for_fuzzing<F>(
        &self,
        num: u16,
        config: QueueConfig,
        callback: F,
    ) -> Result<()>
    where
        F: for<'a> FnMut(Pending<'a>) -> Handled<'a> + Send + 'cb,
    {
        self.register(num, config, Callback::Deferrable(Box::new(callback)))
    }

    fn register(&self, num: u16, config: QueueConfig, callback: Callback<'cb>) -> Result<()> {
        config.validate()?;
        let mut queues = self.queues.borrow_mut();
        if queues.iter().any(|s| s.num == num) {
            return Err(Error::QueueAlreadyBound { queue: num });
        }
        let state = QueueState::new(
            num,
            config.fallback.clone(),
            config.flags.contains(QueueFlags::CONNTRACK),
            config.defer_copy,
        );
        // Never bound: its deferred packets must send nothing.
        state.retire();
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        queues.push(Slot {
            num,
            generation,
            callback: Some(callback),
            state,
            run: None,
            max_len: config.max_len,
            message_cost: config.message_cost(),
            fuzzing: true,
        });
        Ok(())
    }
}
