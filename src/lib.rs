//! Safe, fast Rust bindings to Linux NFQUEUE through libnetfilter_queue.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod config;
mod error;
mod handle;
mod netlink;
mod packet;
mod queue;
mod verdict;

pub use config::{CopyMode, QueueConfig, QueueFlags, MAX_PAYLOAD_LEN};
pub use error::{Error, Result};
pub use handle::{Handle, DEFAULT_BUFFER_SIZE};
pub use packet::{Hook, Packet, SkbInfo};
pub use queue::Queue;
pub use verdict::{Action, Verdict};

/// Raw bindings, re-exported for what the safe API does not cover.
pub use nfq_sys as sys;

/// The libnetfilter_queue version this crate was built against (from pkg-config).
pub const LIBRARY_VERSION: &str = env!("LIBNFQ_LIBRARY_VERSION");
