//! The crate's one error type.

use std::io;

/// What went wrong, with the errno kept where the kernel or a system call gave one.
///
/// Errors the kernel reports about verdicts arrive later than the verdict itself, interleaved
/// with packets; [`Handle::process`](crate::Handle::process) and [`Handle::run`](crate::Handle::run)
/// return them after dispatching the packets that arrived with them. [`Error::is_transient`]
/// tells the ones after which the loop can simply go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused a configuration request because the caller lacks `CAP_NET_ADMIN` in
    /// the user namespace that owns the network namespace.
    #[error(
        "{op}: permission denied (EPERM): NFQUEUE needs CAP_NET_ADMIN in the network namespace; \
         run as root, grant the capability (`setcap cap_net_admin+ep <binary>`), or run inside \
         `unshare --user --map-root-user --net`"
    )]
    PermissionDenied {
        /// The operation that failed.
        op: &'static str,
    },

    /// Another netlink socket (usually another process) has bound this queue number.
    #[error(
        "queue {queue} is already bound by another socket (EPERM); stop the other consumer or \
         pick another --queue-num"
    )]
    QueueOwnedByOther {
        /// The queue number.
        queue: u16,
    },

    /// A message named a queue that no socket has bound (ENODEV): for a verdict, the queue was
    /// unbound after the packet arrived and the kernel released the packet.
    #[error("queue {queue} is not bound (ENODEV); its packets were released when it was unbound")]
    QueueNotBound {
        /// The queue number.
        queue: u16,
    },

    /// This handle has already bound this queue number.
    #[error("queue {queue} is already bound on this handle (EBUSY)")]
    QueueAlreadyBound {
        /// The queue number.
        queue: u16,
    },

    /// The kernel knows no queued packet with this id: it was already decided, or was dropped
    /// when its queue was unbound.
    #[error(
        "queue {queue}: no queued packet with id {id} (ENOENT): it was already decided or released"
    )]
    UnknownPacket {
        /// The queue number.
        queue: u16,
        /// The packet id the verdict named.
        id: u32,
    },

    /// The socket's receive buffer overflowed and the kernel dropped messages (ENOBUFS).
    ///
    /// Packets whose messages were lost are counted in the queue's `user_dropped` counter (or
    /// accepted, with [`QueueFlags::FAIL_OPEN`](crate::QueueFlags::FAIL_OPEN)). Processing can go
    /// on; a larger buffer ([`Handle::set_recv_buffer_size`](crate::Handle::set_recv_buffer_size)) or
    /// a faster consumer avoids it, and
    /// [`Handle::set_no_enobufs`](crate::Handle::set_no_enobufs) silences the report.
    #[error("the socket receive buffer overflowed and the kernel dropped messages (ENOBUFS)")]
    NoBufs,

    /// A replacement payload is larger than a netlink attribute can carry; the kernel would
    /// silently drop the packet, so it is refused before sending.
    #[error("replacement payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload the kernel accepts ([`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN)).
        max: usize,
    },

    /// A verdict carried a replacement payload for a packet whose copy was truncated by the
    /// copy range; writing it back would truncate the packet, so the payload was refused and the
    /// packet got its queue's fallback verdict.
    #[error(
        "queue {queue}: packet {id} was copied truncated ({copied} of {original} bytes); a replacement \
         payload for it was refused (raise the copy range to rewrite packets)"
    )]
    TruncatedPayload {
        /// The queue number.
        queue: u16,
        /// The packet id.
        id: u32,
        /// Bytes copied to user space.
        copied: usize,
        /// The packet's original length.
        original: u32,
    },

    /// The kernel answered a request with an error not covered by a more specific variant.
    #[error("{op}: the kernel answered {source}")]
    Kernel {
        /// What the failed message asked for.
        op: &'static str,
        /// The queue the message was about, when known.
        queue: Option<u16>,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
    },

    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The underlying error, with its errno.
        #[source]
        source: io::Error,
    },

    /// No acknowledgement arrived for a configuration request in time.
    #[error("{op}: the kernel did not acknowledge the request in time")]
    Timeout {
        /// The operation that timed out.
        op: &'static str,
    },

    /// A message received from the kernel could not be parsed.
    #[error("malformed message from the kernel: {what}")]
    Malformed {
        /// What was wrong with it.
        what: &'static str,
    },

    /// A datagram did not fit the receive buffer and was cut; its packets were lost.
    #[error(
        "a message of {len} bytes did not fit the {capacity}-byte receive buffer; \
         raise it with Handle::set_buffer_size"
    )]
    MessageTruncated {
        /// The message's real length.
        len: usize,
        /// The buffer's size.
        capacity: usize,
    },

    /// The [`Handle`](crate::Handle) this verdict was for was dropped: its socket is closed
    /// and the kernel released its packets.
    #[error("the handle was closed; the kernel released its packets")]
    HandleClosed,

    /// A verdict that cannot be sent in this form.
    #[error("invalid verdict: {what}")]
    InvalidVerdict {
        /// What is wrong with it.
        what: &'static str,
    },

    /// A verdict for a packet of an earlier binding of its queue number: the queue was
    /// unbound (and perhaps bound again, where packet ids restart at 1) since the packet
    /// arrived, so the kernel released the packet and the id may now name another one. Nothing
    /// was sent.
    #[error(
        "queue {queue}: packet {id} belongs to an earlier binding of the queue (unbound since); \
         its verdict was not sent"
    )]
    StaleBinding {
        /// The queue number.
        queue: u16,
        /// The packet id the verdict named.
        id: u32,
    },

    /// A replacement payload shorter than the packet's headers up to its transport header:
    /// the kernel would silently drop the packet, so the payload was refused and the packet got
    /// its queue's fallback verdict.
    #[error(
        "queue {queue}: a replacement payload of {len} bytes for packet {id} is shorter than its \
         network headers ({min} bytes); the kernel would drop the packet"
    )]
    PayloadTooShort {
        /// The queue number.
        queue: u16,
        /// The packet id.
        id: u32,
        /// The payload's length.
        len: usize,
        /// The smallest length the kernel accepts for this packet.
        min: usize,
    },

    /// The kernel does not support something the request asked for (`EOPNOTSUPP`), with the
    /// kernel option it needs.
    #[error("{op}: queue {queue}: not supported by this kernel (EOPNOTSUPP): {what}")]
    Unsupported {
        /// The operation that failed.
        op: &'static str,
        /// The queue number.
        queue: u16,
        /// What is missing, and the kernel build option that provides it.
        what: &'static str,
    },

    /// A configuration value that the kernel would accept but silently turn into dropped
    /// packets (or that cannot work at all).
    #[error("invalid configuration: {what}")]
    InvalidConfig {
        /// What is wrong with it.
        what: &'static str,
    },

    /// A packet could not be parsed or rewritten ([`crate::pkt`]).
    #[error(transparent)]
    Packet(#[from] crate::pkt::PktError),

    /// The handle was used from inside one of its own callbacks in a way that needs the
    /// receive path (processing, binding or waiting for the kernel), which is busy dispatching.
    #[error("the handle is busy dispatching packets; it cannot be re-entered from a callback")]
    Reentrant,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno behind this error, when there is one.
    #[doc(alias = "nfq_errno")]
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::PermissionDenied { .. } | Error::QueueOwnedByOther { .. } => Some(libc::EPERM),
            Error::QueueAlreadyBound { .. } => Some(libc::EBUSY),
            Error::UnknownPacket { .. } => Some(libc::ENOENT),
            Error::QueueNotBound { .. } => Some(libc::ENODEV),
            Error::Unsupported { .. } => Some(libc::EOPNOTSUPP),
            Error::NoBufs => Some(libc::ENOBUFS),
            Error::Kernel { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            Error::Timeout { .. } => Some(libc::ETIMEDOUT),
            _ => None,
        }
    }

    /// `true` for errors after which processing can simply continue: lost messages
    /// ([`Error::NoBufs`]) and the kernel's late answers about single verdicts
    /// ([`Error::UnknownPacket`], a refused [`Error::TruncatedPayload`] or
    /// [`Error::InvalidVerdict`], other verdict errors).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::NoBufs
            | Error::UnknownPacket { .. }
            | Error::TruncatedPayload { .. }
            | Error::PayloadTooShort { .. }
            | Error::StaleBinding { .. }
            | Error::QueueNotBound { .. }
            | Error::InvalidVerdict { .. } => true,
            Error::Kernel { op, .. } => *op == OP_VERDICT,
            Error::MessageTruncated { .. } | Error::Malformed { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, source: io::Error) -> Error {
        Error::Io { op, source }
    }

    pub(crate) fn last_os(op: &'static str) -> Error {
        Error::io(op, io::Error::last_os_error())
    }
}

pub(crate) const OP_VERDICT: &str = "verdict";
pub(crate) const OP_CONFIG: &str = "queue configuration";
pub(crate) const OP_BIND: &str = "bind queue";
pub(crate) const OP_UNBIND: &str = "unbind queue";
