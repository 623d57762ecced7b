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
//!     // Receives packets and sends verdicts. Overload does not end it: buffer overruns and the
//!     // kernel's late answers about single verdicts are counted (`handle.counters()`); it
//!     // returns only on a fatal error.
//!     handle.run()
//! }
//! ```
//!
//! A queue of bulk TCP that is only inspected and accepted should be bound with
//! [`QueueFlags::GSO`] (the kernel then hands over whole 64 KiB super-packets instead of
//! segmenting them first: about 5x the throughput), and, if only the headers are read, with a
//! copy range of the headers (`CopyMode::Packet(128)`). Queues that rewrite packets leave it off.
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
//!   [`Handle::process`]; [`Handle::run`] counts the transient ones and goes on.
//! - [`Counters`] ([`Handle::counters`]): packets, verdicts and range verdicts, fallback verdicts
//!   and why, buffer overruns, the kernel's late errors by kind; lock-free.
//! - [`Receiver`]: the blocking pull API, `recv()` → decide → `verdict()`, for programs (and
//!   C ports) built around a receive loop instead of callbacks.
//! - Deferred verdicts: [`Handle::queue_deferrable`] lets a callback turn a [`Pending`] packet
//!   into an owned [`DeferredPacket`] decided later on any thread (alone, in a
//!   [`VerdictBatch`], or with [`VerdictSender::range_verdict`]); [`Shutdown`] stops
//!   [`Handle::run_until`] from another thread or a signal handler.
//! - [`pkt`]: header views and a checked `pkt_buff` wrapper for rewriting packets
//!   ([`Verdict::accept_rewritten`] for the common rewrite-and-accept case).
//! - [`conntrack`]: the packet's connection, decoded ([`Packet::conntrack`]).
//! - Other network namespaces: [`Handle::open_in_netns`], or adopt a socket with
//!   [`Handle::from_fd`].
//! - [`QueueStats`]: the kernel's per-queue counters.
//! - `tokio` (feature `tokio`): `AsyncHandle`, whose `recv().await` yields [`DeferredPacket`]s.
//!
//! Each `process` call takes what is waiting (up to [`DEFAULT_BATCH_LIMIT`] packets) and sends
//! the verdicts in few system calls, with consecutive identical verdicts merged into range
//! verdicts when that is safe, while never holding a decided verdict much longer than
//! [`DEFAULT_BATCH_TIME_LIMIT`] (the first verdict of a burst goes at once; 8 times that while
//! a backlog is drained); see [Batching](Handle#batching).
//!
//! Callbacks run on the thread that calls `run`/`process`. A panic in a callback is caught:
//! the packet gets the queue's fallback verdict (drop by default) and the panic is resumed on
//! the caller's thread once the verdicts of that receive were sent.
//!
//! # Callbacks must be `Send`
//!
//! [`Handle::queue`] and [`Handle::queue_deferrable`] take callbacks that are `Send`: a
//! [`Handle`] is `Send` (a program may move it, callbacks included, to the thread that runs it),
//! so whatever a callback owns or borrows must be `Send` too, even in a program that never
//! starts a thread. A callback capturing an `Rc`, a reference to a `RefCell` or `Cell`, a
//! `Box<dyn Trait>` without `+ Send`, or a library object that is not `Send` does not compile:
//!
//! ```compile_fail,E0277
//! use std::{cell::RefCell, rc::Rc};
//! use libnfq::{Handle, QueueConfig, Verdict};
//!
//! # fn main() -> libnfq::Result<()> {
//! let handle = Handle::open()?;
//! let seen = Rc::new(RefCell::new(0u64));
//! let counter = Rc::clone(&seen);
//! let _queue = handle.queue(0, QueueConfig::new(), move |_packet| {
//!     *counter.borrow_mut() += 1;
//!     Verdict::accept()
//! })?;
//! # Ok(()) }
//! ```
//!
//! rustc then points at the closure and at the `Send` bound of `Handle::queue`:
//!
//! ```text
//! error[E0277]: `Rc<RefCell<u64>>` cannot be sent between threads safely
//!    |     let _queue = handle.queue(0, QueueConfig::new(), move |_packet| {
//!    |                         -----                        ------------- within this `{closure@src/main.rs:..}`
//!    |                         required by a bound introduced by this call
//!    = help: within `{closure@src/main.rs:..}`, the trait `Send` is not implemented for `Rc<RefCell<u64>>`
//! note: required by a bound in `Handle::<'cb>::queue`
//!    |         F: FnMut(&Packet<'_>) -> Verdict + Send + 'cb,
//!    |                                            ^^^^ required by this bound in `Handle::<'cb>::queue`
//! ```
//!
//! (for a boxed trait object: "`` `dyn Policy` cannot be sent between threads safely ``"). The
//! usual fixes:
//!
//! - **Let the closure own its state** (`move`): a struct, `Vec` or `HashMap` used only by the
//!   callback needs no `Rc<RefCell<_>>`.
//! - **Borrow `Sync` state**: a callback may borrow locals declared before the handle (the
//!   `'cb` lifetime), so share counters and tables with the code around it as `&AtomicU64` or
//!   `&Mutex<T>` instead of `&Cell`/`&RefCell`; with `'static` callbacks or other threads,
//!   `Arc<AtomicU64>` / `Arc<Mutex<T>>` instead of `Rc<RefCell<T>>`.
//! - **Trait objects**: `Box<dyn Policy + Send>`, or declare `trait Policy: Send`.
//! - **State that cannot be `Send`** (a library handle that is `!Send`, `Rc`-based data): keep
//!   it in a `thread_local!`, which the callback reads on the thread that calls
//!   [`Handle::run`]/[`Handle::process`] (callbacks always run there); or drop callbacks
//!   altogether and pull packets in your own loop ([`Receiver::recv`], or `AsyncHandle::recv`
//!   with the `tokio` feature), where the code that decides is not stored in the handle and need
//!   not be `Send`.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use libnfq::{Handle, Packet, QueueConfig, Verdict};
//!
//! trait Policy: Send {
//!     fn decide(&mut self, packet: &Packet<'_>) -> Verdict;
//! }
//! struct AcceptAll;
//! impl Policy for AcceptAll {
//!     fn decide(&mut self, _: &Packet<'_>) -> Verdict {
//!         Verdict::accept()
//!     }
//! }
//!
//! # fn main() -> libnfq::Result<()> {
//! let seen = AtomicU64::new(0); // declared before the handle: callbacks may borrow it
//! let handle = Handle::open()?;
//! let mut policy: Box<dyn Policy> = Box::new(AcceptAll); // `Policy: Send`
//! let mut per_mark: HashMap<u32, u64> = HashMap::new(); // moved into the callback
//! let seen_ref = &seen; // the callback moves the reference, `seen` stays here
//! let _queue = handle.queue(0, QueueConfig::new(), move |packet| {
//!     seen_ref.fetch_add(1, Ordering::Relaxed);
//!     *per_mark.entry(packet.mark()).or_default() += 1;
//!     policy.decide(packet)
//! })?;
//! handle.run()
//! # }
//! ```
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

mod attrs;
mod batching;
mod config;
pub mod conntrack;
mod counters;
mod deferred;
mod error;
mod handle;
mod netlink;
mod netns;
mod owned;
mod packet;
pub mod pkt;
mod pull;
mod queue;
mod socket;
mod stats;
mod stop;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod verdict;

pub use attrs::{nfqa, Family, Vlan};
pub use batching::{DEFAULT_BATCH_LIMIT, DEFAULT_BATCH_TIME_LIMIT};
pub use config::{CopyMode, QueueConfig, QueueFlags, MAX_PAYLOAD_LEN};
pub use counters::Counters;
pub use deferred::{DeferredPacket, Handled, Pending, VerdictBatch, VerdictSender};
pub use error::{Error, Result};
pub use handle::{Handle, DEFAULT_BUFFER_SIZE, DEFAULT_RECV_BUFFER};
pub use owned::DeferCopy;
pub use packet::{Hook, Packet, SkbInfo};
pub use pull::Receiver;
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

// The migration guide's Rust snippets are compiled as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../docs/MIGRATING.md")]
struct MigratingDoctests;
