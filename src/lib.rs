//! Safe, fast Rust bindings to Linux NFQUEUE through libnetfilter_queue.
//!
//! An iptables rule with the `NFQUEUE` target hands packets to a user-space program, which
//! returns a verdict for each: accept, drop, repeat, send to another queue, or stop, optionally
//! with a new mark or a rewritten payload.
//!
//! ```text
//! iptables -A INPUT -p udp --dport 5353 -j NFQUEUE --queue-num 0
//! ```
//!
//! # Quick start
//!
//! ```no_run
//! use libnfq::{Handle, QueueConfig, Verdict};
//!
//! fn main() -> Result<(), libnfq::Error> {
//!     let handle = Handle::open()?;
//!     let _queue = handle.queue(0, QueueConfig::new(), |packet| {
//!         println!("packet {} from hook {:?}, {} bytes", packet.id(), packet.hook(), packet.payload().len());
//!         if packet.payload().len() > 1000 {
//!             Verdict::drop()
//!         } else {
//!             Verdict::accept().with_mark(1)
//!         }
//!     })?;
//!     handle.run() // receives packets and sends verdicts until an error
//! }
//! ```
//!
//! # The pieces
//!
//! - [`Handle`]: one netlink socket. Dropping it closes the socket (the kernel then unbinds its
//!   queues and drops the packets still waiting in them).
//! - [`Queue`]: a queue number bound on a handle with a callback
//!   `FnMut(&Packet<'_>) -> Verdict`. Configured at creation with a [`QueueConfig`]
//!   ([`CopyMode`], maximum length, [`QueueFlags`]). Dropping it unbinds the queue.
//! - [`Packet`]: a zero-copy view of a queued packet, valid only inside the callback.
//! - [`Verdict`]: an [`Action`], optionally with a mark and a replacement payload.
//! - [`Error`]: one error type; the kernel's late answers about verdicts arrive through
//!   [`Handle::process`] and [`Handle::run`].
//! - Deferred verdicts: [`Handle::queue_deferrable`] lets a callback turn a [`Pending`] packet
//!   into an owned [`DeferredPacket`] decided later on any thread (alone, in a
//!   [`VerdictBatch`], or with [`VerdictSender::range_verdict`]); [`Shutdown`] stops
//!   [`Handle::run_until`] from another thread or a signal handler.
//! - [`pkt`]: header views and a checked `pkt_buff` wrapper for rewriting packets.
//! - [`QueueStats`]: the kernel's per-queue counters.
//! - `tokio` (feature `tokio`): `AsyncHandle`, whose `recv().await` yields [`DeferredPacket`]s.
//!
//! Each `process` call takes what is waiting (up to [`DEFAULT_BATCH_LIMIT`] packets), then sends
//! every verdict in one system call, with consecutive identical verdicts merged into range
//! verdicts when that is safe; see [Batching](Handle#batching).
//!
//! Callbacks run on the thread that calls `run`/`process`. A panic in a callback is caught:
//! the packet gets the queue's fallback verdict (drop by default) and the panic is resumed on
//! the caller's thread once the verdicts of that receive were sent.
//!
//! # Privileges
//!
//! Binding a queue needs `CAP_NET_ADMIN` in the network namespace: run as root, give the binary
//! the capability, or run inside `unshare --user --map-root-user --net`.
//!
//! # Licence
//!
//! This crate is `MIT OR Apache-2.0`, but it links libnetfilter_queue, which is
//! GPL-2.0-or-later: a program using it is bound by the GPL.
// docs.rs builds with a nightly rustdoc and `--cfg docsrs`: label feature-gated items there.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod config;
mod deferred;
mod error;
mod handle;
mod netlink;
mod packet;
pub mod pkt;
mod queue;
mod socket;
mod stats;
mod stop;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod verdict;

pub use config::{CopyMode, QueueConfig, QueueFlags, MAX_PAYLOAD_LEN};
pub use deferred::{DeferredPacket, Handled, Pending, VerdictBatch, VerdictSender};
pub use error::{Error, Result};
pub use handle::{Handle, DEFAULT_BATCH_LIMIT, DEFAULT_BUFFER_SIZE, DEFAULT_RECV_BUFFER};
pub use packet::{Hook, Packet, SkbInfo};
pub use queue::Queue;
pub use stats::QueueStats;
pub use stop::Shutdown;
pub use verdict::{Action, Verdict};

/// Raw bindings, re-exported for what the safe API does not cover (and for ports of C code
/// that uses the legacy `nfq_*` API).
pub use nfq_sys as sys;

/// The libnetfilter_queue version this crate was built against (found by pkg-config).
pub const LIBRARY_VERSION: &str = env!("LIBNFQ_LIBRARY_VERSION");

// The README's code blocks are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
