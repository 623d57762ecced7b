//! When a pass sends the verdicts it has gathered: the batching policy.
//!
//! A pass ([`Handle::process`](crate::Handle::process)) receives what is waiting, up to the
//! batch limit, and sends the verdicts it decided
//! - at once after its first packet (the head of a burst never waits for the rest);
//! - when the oldest unsent verdict has waited the *budget*;
//! - at its end.
//!
//! The budget is the batch time limit for the first [`HEAD_OF_PASS`] packets of a pass. Past
//! them the pass is draining a backlog (the socket kept yielding packets without waiting), and
//! the budget grows to [`BACKLOG_FACTOR`] times the limit: each send costs a system call and a
//! wake-up of whoever receives the accepted packets, which a backlog pays in throughput, while
//! its packets have already waited in the queue behind the ones before them. A pass that
//! stopped at the batch limit leaves the backlog to the next one: if that one finds a packet
//! without waiting, it continues the backlog (no verdict sent at once, the larger budget from
//! its start); otherwise it waits as usual and starts a new head. docs/DESIGN.md ("The callback
//! path") has the measurements behind these numbers.

use std::time::Duration;

/// Default for [`Handle::set_batch_limit`](crate::Handle::set_batch_limit): a quarter of the
/// kernel's default queue length (1024), so that the packets held for one batch never fill a
/// default queue.
pub const DEFAULT_BATCH_LIMIT: usize = 256;

/// Default for [`Handle::set_batch_time_limit`](crate::Handle::set_batch_time_limit).
pub const DEFAULT_BATCH_TIME_LIMIT: Duration = Duration::from_micros(50);

/// Packets at the head of a pass whose verdicts wait at most the batch time limit.
pub(crate) const HEAD_OF_PASS: usize = 64;

/// How many times the batch time limit a verdict may wait once a pass is past its head.
pub(crate) const BACKLOG_FACTOR: u32 = 8;

/// How long the oldest unsent verdict of a pass may wait, the pass having dispatched
/// `packets` packets so far; `continued`: the pass goes on with the backlog of the pass
/// before it, which stopped at the batch limit.
pub(crate) fn budget(limit: Duration, packets: usize, continued: bool) -> Duration {
    if continued || packets > HEAD_OF_PASS {
        limit.saturating_mul(BACKLOG_FACTOR)
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_of_a_pass_gets_the_limit_a_backlog_eight_times_it() {
        let limit = Duration::from_micros(50);
        assert_eq!(budget(limit, 1, false), limit);
        assert_eq!(budget(limit, HEAD_OF_PASS, false), limit);
        assert_eq!(budget(limit, HEAD_OF_PASS + 1, false), limit * 8);
        assert_eq!(budget(limit, 1, true), limit * 8);
        assert_eq!(budget(Duration::ZERO, 1000, false), Duration::ZERO);
        assert_eq!(budget(Duration::MAX, 1000, true), Duration::MAX);
    }
}
