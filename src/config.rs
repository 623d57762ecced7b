//! Queue configuration: plain, validated values.

use crate::error::{Error, Result};
use crate::owned::DeferCopy;
use crate::verdict::Verdict;

/// The largest copy range and replacement payload the kernel accepts: a netlink attribute's
/// length is a `u16` that includes its 4-byte header, so 65535 - 4 bytes.
#[doc(alias = "NFQNL_MAX_COPY_RANGE")]
pub const MAX_PAYLOAD_LEN: usize = 0xFFFF - 4;

/// How much of each packet the kernel copies to user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "nfqnl_config_mode")]
pub enum CopyMode {
    /// Copy nothing. With this mode the kernel **drops every packet** it queues: it exists for
    /// completeness, not for use.
    #[doc(alias = "NFQNL_COPY_NONE")]
    None,
    /// Copy only the metadata (id, hook, mark, interfaces, ...), no payload.
    #[doc(alias = "NFQNL_COPY_META")]
    Meta,
    /// Copy the metadata and up to `range` bytes of the packet, starting at its network header.
    ///
    /// The kernel clamps a range of 0 or above [`MAX_PAYLOAD_LEN`] to `MAX_PAYLOAD_LEN`. When a
    /// packet is longer than the range, [`Packet::is_truncated`](crate::Packet::is_truncated) is
    /// `true` and [`Packet::original_len`](crate::Packet::original_len) gives its real length.
    #[doc(alias = "NFQNL_COPY_PACKET")]
    Packet(u16),
}

impl CopyMode {
    /// Copy whole packets (the largest range the kernel supports).
    pub const FULL: CopyMode = CopyMode::Packet(MAX_PAYLOAD_LEN as u16);

    pub(crate) fn raw(self) -> (u8, u32) {
        match self {
            CopyMode::None => (nfq_sys::NFQNL_COPY_NONE as u8, 0),
            CopyMode::Meta => (nfq_sys::NFQNL_COPY_META as u8, 0),
            CopyMode::Packet(range) => {
                let range = match usize::from(range) {
                    0 => MAX_PAYLOAD_LEN,
                    r => r.min(MAX_PAYLOAD_LEN),
                };
                (nfq_sys::NFQNL_COPY_PACKET as u8, range as u32)
            }
        }
    }
}

impl Default for CopyMode {
    /// [`CopyMode::FULL`].
    fn default() -> Self {
        CopyMode::FULL
    }
}

bitflags::bitflags! {
    /// Queue flags (`NFQA_CFG_F_*`), set when the queue is bound.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct QueueFlags: u32 {
        /// When the queue is full (or the socket buffer overflows), accept packets instead of
        /// dropping them.
        #[doc(alias = "NFQA_CFG_F_FAIL_OPEN")]
        const FAIL_OPEN = nfq_sys::NFQA_CFG_F_FAIL_OPEN;
        /// Attach conntrack information (`NFQA_CT`) to queued packets. Needs a kernel built with
        /// `CONFIG_NETFILTER_NETLINK_GLUE_CT`; binding fails with `EOPNOTSUPP` otherwise.
        #[doc(alias = "NFQA_CFG_F_CONNTRACK")]
        const CONNTRACK = nfq_sys::NFQA_CFG_F_CONNTRACK;
        /// Deliver GSO super-packets whole instead of segmenting them first (they may be up to
        /// ~64 KiB and carry [`SkbInfo::GSO`](crate::SkbInfo::GSO), with partial checksums:
        /// [`SkbInfo::CSUM_NOT_READY`](crate::SkbInfo::CSUM_NOT_READY)).
        ///
        /// Off by default. Turn it on for queues that only inspect and accept bulk TCP: the
        /// kernel then skips segmenting every super-packet before queueing it (about 5x the
        /// throughput through a FORWARD queue, docs/BENCHMARKS.md); if they read only the
        /// headers, copy only those too ([`CopyMode::Packet`]`(128)`), not up to 64 KiB of each
        /// super-packet. Leave it off for queues that
        /// rewrite packets: a replaced payload cannot stand for a GSO super-packet, and
        /// [`PacketBuf`](crate::pkt::PacketBuf) refuses to rewrite one.
        #[doc(alias = "NFQA_CFG_F_GSO")]
        const GSO = nfq_sys::NFQA_CFG_F_GSO;
        /// Attach the uid and gid of the local socket that sent or receives the packet.
        #[doc(alias = "NFQA_CFG_F_UID_GID")]
        const UID_GID = nfq_sys::NFQA_CFG_F_UID_GID;
        /// Attach the packet's security context (needs `CONFIG_NETWORK_SECMARK`).
        #[doc(alias = "NFQA_CFG_F_SECCTX")]
        const SECCTX = nfq_sys::NFQA_CFG_F_SECCTX;
    }
}

/// How a queue is set up when it is bound: copy mode, maximum length, flags, and the verdict
/// it falls back to when its callback cannot give one.
///
/// # Fixed at bind time
///
/// The configuration is sent in the bind message itself
/// ([`Handle::queue`](crate::Handle::queue),
/// [`Handle::queue_deferrable`](crate::Handle::queue_deferrable)) and is then fixed for the
/// life of the [`Queue`](crate::Queue): no call changes a bound queue's copy mode, maximum
/// length, flags or fallback (the C calls `nfq_set_mode`, `nfq_set_queue_maxlen` and
/// `nfq_set_queue_flags` on a bound queue have no equivalent). To apply a new configuration,
/// drop the `Queue` (or [`Queue::unbind`](crate::Queue::unbind) it) and bind the number again.
/// Unbinding makes the kernel drop the packets still waiting in the queue, and until the new
/// bind the rule's packets are dropped (accepted with `--queue-bypass`). To switch without
/// losing packets, bind the new configuration on another queue number, then point the rule at
/// it. [`QueueStats`](crate::QueueStats) shows what the kernel applied.
///
/// ```
/// use libnfq::{CopyMode, QueueConfig, QueueFlags, Verdict};
/// let config = QueueConfig::new()
///     .copy_mode(CopyMode::Packet(128))
///     .max_len(4096)
///     .flags(QueueFlags::FAIL_OPEN | QueueFlags::UID_GID)
///     .fallback(Verdict::accept());
/// assert_eq!(config.get_max_len(), Some(4096));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub(crate) copy_mode: CopyMode,
    pub(crate) max_len: Option<u32>,
    pub(crate) flags: QueueFlags,
    pub(crate) fallback: Verdict,
    pub(crate) defer_copy: DeferCopy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::new()
    }
}

impl QueueConfig {
    /// Whole packets, the kernel's default maximum length (1024), no flags, fallback
    /// [`Verdict::drop`].
    pub fn new() -> Self {
        QueueConfig {
            copy_mode: CopyMode::FULL,
            max_len: None,
            flags: QueueFlags::empty(),
            fallback: Verdict::drop(),
            defer_copy: DeferCopy::All,
        }
    }

    /// Sets the copy mode (default [`CopyMode::FULL`]). It is sent in the same message as the
    /// bind, so the queue never runs with the kernel's after-bind default (`NONE`, which drops
    /// every packet).
    #[doc(alias = "nfq_set_mode")]
    #[doc(alias = "nfq_nlmsg_cfg_put_params")]
    pub fn copy_mode(mut self, mode: CopyMode) -> Self {
        self.copy_mode = mode;
        self
    }

    /// Sets how many packets may wait for a verdict before the kernel drops (or, with
    /// [`QueueFlags::FAIL_OPEN`], accepts) new ones. Kernel default: 1024.
    #[doc(alias = "nfq_set_queue_maxlen")]
    #[doc(alias = "nfq_nlmsg_cfg_put_qmaxlen")]
    pub fn max_len(mut self, len: u32) -> Self {
        self.max_len = Some(len);
        self
    }

    /// Sets the queue flags (default none).
    #[doc(alias = "nfq_set_queue_flags")]
    pub fn flags(mut self, flags: QueueFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the verdict a packet gets when the callback panics (and the packets after it in the
    /// same receive, see [`Handle::process`](crate::Handle::process)), or when its verdict was
    /// refused ([`Error::TruncatedPayload`](crate::Error::TruncatedPayload)). Default
    /// [`Verdict::drop`]: fail closed. Only the action and the mark are used; a payload or a
    /// connection mark is ignored.
    pub fn fallback(mut self, verdict: Verdict) -> Self {
        self.fallback = verdict.into_fallback();
        self
    }

    /// Sets what [`Pending::defer`](crate::Pending::defer) copies into a
    /// [`DeferredPacket`](crate::DeferredPacket) (default [`DeferCopy::All`]); with the tokio
    /// `AsyncHandle`, what every packet it returns holds. [`DeferCopy::Metadata`] spares
    /// consumers that decide on metadata the payload copy; unlike [`CopyMode::Meta`] the kernel
    /// still sends the payload, so a callback can read it before deferring.
    pub fn defer_copy(mut self, copy: DeferCopy) -> Self {
        self.defer_copy = copy;
        self
    }

    /// Refuses what the kernel would take but turn into dropped packets.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_len == Some(0) {
            return Err(Error::InvalidConfig {
                what: "a maximum queue length of 0 makes the kernel drop every packet",
            });
        }
        Ok(())
    }

    /// About what one packet message of this queue costs in the socket's receive buffer (the
    /// kernel's `truesize`: the copied bytes, the metadata and the buffer's own bookkeeping),
    /// counting packets of an ordinary MTU.
    pub(crate) fn message_cost(&self) -> usize {
        const OVERHEAD: usize = 1280;
        match self.copy_mode {
            CopyMode::None | CopyMode::Meta => OVERHEAD,
            CopyMode::Packet(range) => OVERHEAD + usize::from(range).clamp(1, 2048),
        }
    }

    /// The copy mode.
    pub fn get_copy_mode(&self) -> CopyMode {
        self.copy_mode
    }
    /// The maximum queue length, if set.
    pub fn get_max_len(&self) -> Option<u32> {
        self.max_len
    }
    /// The flags.
    pub fn get_flags(&self) -> QueueFlags {
        self.flags
    }
    /// The fallback verdict.
    pub fn get_fallback(&self) -> &Verdict {
        &self.fallback
    }
    /// What a deferred packet copies.
    pub fn get_defer_copy(&self) -> DeferCopy {
        self.defer_copy
    }
}
