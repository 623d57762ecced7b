//! What a handle did and lost, counted: cheap, lock-free counters and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// A snapshot of a handle's counters, from [`Handle::counters`](crate::Handle::counters) (or
/// [`VerdictSender::counters`](crate::VerdictSender::counters)).
///
/// Every packet the kernel hands to the handle ends in exactly one verdict: its program's, or
/// its queue's fallback. These counters say which, and what went wrong on the way. They count
/// from the handle's opening and never reset; they are shared by the handle and everything that
/// sends verdicts on its socket from other threads (deferred packets, batches), and reading
/// them takes a few relaxed atomic loads, without a lock or a system call.
///
/// [`Handle::run`](crate::Handle::run) goes on after transient errors (buffer overruns, late
/// kernel answers about single verdicts); these counters are where they show.
///
/// ```no_run
/// # fn main() -> libnfq::Result<()> {
/// let handle = libnfq::Handle::open()?;
/// // ... bind queues, run ...
/// let c = handle.counters();
/// println!(
///     "{} packets, {} verdicts + {} range verdicts, {} overruns, {} fallbacks",
///     c.packets, c.verdicts, c.range_verdicts, c.enobufs, c.fallbacks()
/// );
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Counters {
    /// Packet messages received from the kernel (including those that could not be shown to
    /// a callback).
    pub packets: u64,
    /// Packets shown to a callback.
    pub dispatched: u64,
    /// Single verdict messages sent (for packets decided in callbacks, deferred packets and
    /// fallbacks).
    pub verdicts: u64,
    /// Range verdict messages sent (each deciding one or more packets).
    pub range_verdicts: u64,
    /// Packets that got their queue's fallback verdict because their callback panicked (or a
    /// callback before them in the same pass did).
    pub fallback_panic: u64,
    /// Deferred packets dropped without a verdict: they got their queue's fallback verdict.
    pub fallback_undecided: u64,
    /// Verdicts refused before sending (a payload for a truncated copy or too short, a
    /// connection mark on a queue without conntrack): the packet got its queue's fallback.
    pub fallback_refused: u64,
    /// Packets of a queue this handle has no binding for: dropped.
    pub fallback_unknown_queue: u64,
    /// Packet messages larger than the receive buffer
    /// ([`Handle::set_buffer_size`](crate::Handle::set_buffer_size)): the packet got its queue's
    /// fallback verdict without being shown to a callback.
    pub fallback_truncated: u64,
    /// Verdicts (or fallbacks of dropped deferred packets) for packets of an earlier binding of
    /// their queue number, not sent ([`Error::StaleBinding`]).
    pub stale_discarded: u64,
    /// Receive buffer overruns reported by the kernel (`ENOBUFS`): packets were lost (see
    /// [`QueueStats::user_dropped`](crate::QueueStats::user_dropped)).
    pub enobufs: u64,
    /// Messages from the kernel that could not be parsed.
    pub malformed: u64,
    /// Kernel answers that a verdict named no queued packet ([`Error::UnknownPacket`]).
    pub unknown_packet_errors: u64,
    /// Other kernel errors about verdicts.
    pub verdict_errors: u64,
    /// Kernel errors about configuration messages that arrived with the packets.
    pub config_errors: u64,
    /// Verdict sends that failed in the system call.
    pub send_errors: u64,
}

impl Counters {
    /// Packets decided by a fallback verdict, for any reason.
    pub fn fallbacks(&self) -> u64 {
        self.fallback_panic
            + self.fallback_undecided
            + self.fallback_refused
            + self.fallback_unknown_queue
            + self.fallback_truncated
    }
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Count {
    Packets,
    Dispatched,
    Verdicts,
    RangeVerdicts,
    FallbackPanic,
    FallbackUndecided,
    FallbackRefused,
    FallbackUnknownQueue,
    FallbackTruncated,
    StaleDiscarded,
    Enobufs,
    Malformed,
    UnknownPacketErrors,
    VerdictErrors,
    ConfigErrors,
    SendErrors,
}

const N: usize = Count::SendErrors as usize + 1;

/// The live counters, shared through the handle's socket cell.
#[derive(Default)]
pub(crate) struct CounterCells([AtomicU64; N]);

impl CounterCells {
    /// Adds `n` to one counter (relaxed: counters order nothing).
    #[inline]
    pub(crate) fn add(&self, which: Count, n: u64) {
        self.0[which as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn bump(&self, which: Count) {
        self.add(which, 1);
    }

    /// Bumps a counter that only the handle's receive path writes (`Packets`, `Dispatched`):
    /// a plain load and store instead of a locked read-modify-write, twice per packet. Sound
    /// because the `Handle` is not `Sync` (one thread at a time receives on it, and moving it to
    /// another thread synchronizes), and no other path writes these two; readers
    /// ([`CounterCells::snapshot`]) see the old or the new value, as with `fetch_add`.
    #[inline]
    pub(crate) fn bump_by_receiver(&self, which: Count) {
        debug_assert!(matches!(which, Count::Packets | Count::Dispatched));
        let cell = &self.0[which as usize];
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Counts an error found on the receive path or in a send by its kind (the kernel's
    /// answers are counted where they are told apart, see `Handle::dispatch`).
    pub(crate) fn error(&self, err: &Error) {
        let which = match err {
            Error::NoBufs => Count::Enobufs,
            Error::Malformed { .. } => Count::Malformed,
            Error::Io { .. } => Count::SendErrors,
            _ => return,
        };
        self.bump(which);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let get = |which: Count| self.0[which as usize].load(Ordering::Relaxed);
        Counters {
            packets: get(Count::Packets),
            dispatched: get(Count::Dispatched),
            verdicts: get(Count::Verdicts),
            range_verdicts: get(Count::RangeVerdicts),
            fallback_panic: get(Count::FallbackPanic),
            fallback_undecided: get(Count::FallbackUndecided),
            fallback_refused: get(Count::FallbackRefused),
            fallback_unknown_queue: get(Count::FallbackUnknownQueue),
            fallback_truncated: get(Count::FallbackTruncated),
            stale_discarded: get(Count::StaleDiscarded),
            enobufs: get(Count::Enobufs),
            malformed: get(Count::Malformed),
            unknown_packet_errors: get(Count::UnknownPacketErrors),
            verdict_errors: get(Count::VerdictErrors),
            config_errors: get(Count::ConfigErrors),
            send_errors: get(Count::SendErrors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_lands_in_its_own_field() {
        let cells = CounterCells::default();
        let all = [
            Count::Packets,
            Count::Dispatched,
            Count::Verdicts,
            Count::RangeVerdicts,
            Count::FallbackPanic,
            Count::FallbackUndecided,
            Count::FallbackRefused,
            Count::FallbackUnknownQueue,
            Count::FallbackTruncated,
            Count::StaleDiscarded,
            Count::Enobufs,
            Count::Malformed,
            Count::UnknownPacketErrors,
            Count::VerdictErrors,
            Count::ConfigErrors,
            Count::SendErrors,
        ];
        for (i, which) in all.iter().enumerate() {
            cells.add(*which, i as u64 + 1);
        }
        let c = cells.snapshot();
        let got = [
            c.packets,
            c.dispatched,
            c.verdicts,
            c.range_verdicts,
            c.fallback_panic,
            c.fallback_undecided,
            c.fallback_refused,
            c.fallback_unknown_queue,
            c.fallback_truncated,
            c.stale_discarded,
            c.enobufs,
            c.malformed,
            c.unknown_packet_errors,
            c.verdict_errors,
            c.config_errors,
            c.send_errors,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(c.fallbacks(), 5 + 6 + 7 + 8 + 9);
    }
}
