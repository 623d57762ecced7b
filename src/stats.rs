//! Queue statistics: the kernel's `/proc/net/netfilter/nfnetlink_queue`, typed.

use std::io;
use std::str::FromStr;

use crate::config::CopyMode;
use crate::error::{Error, Result};

/// Where [`QueueStats::read_all`] reads: the calling **thread's** view of
/// `/proc/net/netfilter/nfnetlink_queue`.
const PATH: &str = "/proc/thread-self/net/netfilter/nfnetlink_queue";
const OP_READ: &str = "read /proc/thread-self/net/netfilter/nfnetlink_queue";

/// The kernel's counters and settings of one bound queue: one line of
/// `/proc/net/netfilter/nfnetlink_queue`.
///
/// The counters are the kernel's own `u32`s: they wrap around, and they are reset only when the
/// queue is unbound (a queue bound again starts from zero).
///
/// ```no_run
/// # fn main() -> libnfq::Result<()> {
/// if let Some(stats) = libnfq::QueueStats::for_queue(0)? {
///     println!(
///         "queue 0: {} waiting, {} dropped (queue full), {} dropped (socket buffer full)",
///         stats.queued, stats.queue_dropped, stats.user_dropped
///     );
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[doc(alias = "nfnetlink_queue")]
#[doc(alias = "nfqnl_instance")]
pub struct QueueStats {
    /// The queue number.
    #[doc(alias = "queue_num")]
    pub queue: u16,
    /// The netlink port id of the socket that bound the queue (its owner):
    /// [`Handle::portid`](crate::Handle::portid) of the handle that bound it.
    #[doc(alias = "peer_portid")]
    pub portid: u32,
    /// Packets waiting for a verdict right now (sent to user space, or about to be, and not
    /// decided yet).
    #[doc(alias = "queue_total")]
    pub queued: u32,
    /// The copy mode as the kernel numbers it: 0 `NFQNL_COPY_NONE`, 1 `NFQNL_COPY_META`, 2
    /// `NFQNL_COPY_PACKET`. [`QueueStats::mode`] gives it, with the range, as a [`CopyMode`].
    pub copy_mode: u8,
    /// How many bytes of each packet are copied in `NFQNL_COPY_PACKET` mode (0 in the others).
    pub copy_range: u32,
    /// Packets the kernel dropped because the queue already held its maximum length
    /// ([`QueueConfig::max_len`](crate::QueueConfig::max_len)). With
    /// [`QueueFlags::FAIL_OPEN`](crate::QueueFlags::FAIL_OPEN) they are accepted instead and not
    /// counted. `--queue-bypass` on the rule does not help here: it only applies while no socket
    /// is bound to the queue.
    pub queue_dropped: u32,
    /// Packets the kernel dropped because their message could not be delivered to the bound
    /// socket, in practice because its receive buffer was full (the socket then reports
    /// [`Error::NoBufs`], unless [`Handle::set_no_enobufs`](crate::Handle::set_no_enobufs)).
    /// With [`QueueFlags::FAIL_OPEN`](crate::QueueFlags::FAIL_OPEN) they are accepted instead and
    /// not counted (the overrun is still reported).
    #[doc(alias = "queue_user_dropped")]
    pub user_dropped: u32,
    /// The id of the last packet the queue handed out (ids start at 1, +1 per packet, wrapping).
    /// It also counts packets lost to [`user_dropped`](Self::user_dropped), which get an id
    /// before delivery fails, but not those refused because the queue was full.
    pub id_sequence: u32,
}

impl QueueStats {
    /// Every queue bound in the calling **thread's** network namespace.
    ///
    /// It reads `/proc/thread-self/net/netfilter/nfnetlink_queue`, not
    /// `/proc/net/netfilter/nfnetlink_queue`: `/proc/net` is a link to `/proc/self/net`, which
    /// shows the network namespace of the process's main thread (the thread-group leader),
    /// while a queue belongs to the namespace its socket was opened in, that of the thread that
    /// opened it. A thread can have a namespace of its own (`unshare(CLONE_NEWNET)` or `setns`
    /// in that thread), and then `/proc/net` lists another namespace's queues. Read from the
    /// thread (or a thread in the same namespace) that opened the [`Handle`](crate::Handle).
    ///
    /// An empty list when the file does not exist (the `nfnetlink_queue` module is not loaded,
    /// so no queue is bound anywhere).
    ///
    /// Errors: [`Error::Io`] when the file cannot be read, in particular `EACCES` for anyone
    /// but root: the file has mode 0440 and belongs to the root user of the user namespace that
    /// owns the network namespace (CAP_NET_ADMIN is not needed). A namespace made by `unshare --user --map-root-user --net` in a single step
    /// has it owned by the real root, because it was created before the user namespace's uid
    /// map was written: there, create the network namespace in a second step
    /// (`unshare --user --map-root-user sh -c 'unshare --net ...'`). [`Error::Malformed`] when a
    /// line does not have the expected form.
    #[doc(alias = "/proc/net/netfilter/nfnetlink_queue")]
    pub fn read_all() -> Result<Vec<QueueStats>> {
        match std::fs::read_to_string(PATH) {
            Ok(text) => QueueStats::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(OP_READ, e)),
        }
    }

    /// The statistics of queue `num` in the calling thread's network namespace, `None` when no
    /// socket has bound it there. See [`QueueStats::read_all`].
    pub fn for_queue(num: u16) -> Result<Option<QueueStats>> {
        Ok(QueueStats::read_all()?.into_iter().find(|s| s.queue == num))
    }

    /// Parses the whole file's text: one [`QueueStats`] per non-blank line, in order.
    ///
    /// ```
    /// let text = "    0  12345     3 2 65531     7     0       10  1\n";
    /// let stats = libnfq::QueueStats::parse(text)?;
    /// assert_eq!((stats[0].queue, stats[0].queued, stats[0].queue_dropped), (0, 3, 7));
    /// # Ok::<(), libnfq::Error>(())
    /// ```
    ///
    /// Errors: [`Error::Malformed`] for the first line that is not valid (see
    /// [`QueueStats::from_str`]).
    pub fn parse(text: &str) -> Result<Vec<QueueStats>> {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    /// The copy mode as a [`CopyMode`]: `Ok(CopyMode::None)`, `Ok(CopyMode::Meta)` or
    /// `Ok(CopyMode::Packet(range))`.
    ///
    /// ```
    /// use libnfq::{CopyMode, QueueStats};
    /// let stats: QueueStats = "0 12345 0 2 128 0 0 0 1".parse()?;
    /// assert_eq!(stats.mode()?, CopyMode::Packet(128));
    /// let stats: QueueStats = "0 12345 0 0 0 0 0 0 1".parse()?;
    /// assert_eq!(stats.mode()?, CopyMode::None);
    /// # Ok::<(), libnfq::Error>(())
    /// ```
    ///
    /// Errors: [`Error::Malformed`] for a mode number other than the kernel's three (the
    /// kernel refuses any other when a queue is configured, so only a future kernel could
    /// print one), or a packet copy range above 65535 (the kernel keeps it at most
    /// [`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN)). [`copy_mode`](Self::copy_mode) and
    /// [`copy_range`](Self::copy_range) keep the raw numbers either way.
    pub fn mode(&self) -> Result<CopyMode> {
        match u32::from(self.copy_mode) {
            nfq_sys::NFQNL_COPY_NONE => Ok(CopyMode::None),
            nfq_sys::NFQNL_COPY_META => Ok(CopyMode::Meta),
            nfq_sys::NFQNL_COPY_PACKET => u16::try_from(self.copy_range)
                .map(CopyMode::Packet)
                .map_err(|_| Error::Malformed {
                    what: "nfnetlink_queue: packet copy range above 65535",
                }),
            _ => Err(Error::Malformed {
                what: "nfnetlink_queue: unknown copy mode",
            }),
        }
    }
}

/// Parses one line: `queue portid queued copy_mode copy_range queue_dropped user_dropped
/// id_sequence 1`, numbers in decimal separated by blanks, as the kernel prints them (the last
/// field is always 1 and, like any further field, is ignored).
impl FromStr for QueueStats {
    type Err = Error;

    fn from_str(line: &str) -> Result<QueueStats> {
        let mut fields = line.split_ascii_whitespace();
        let mut next = || {
            fields.next().ok_or(Error::Malformed {
                what: "nfnetlink_queue line with fewer than 8 fields",
            })
        };
        Ok(QueueStats {
            queue: number(next()?, "nfnetlink_queue: queue number is not a u16")?,
            portid: number(next()?, "nfnetlink_queue: portid is not a u32")?,
            queued: number(next()?, "nfnetlink_queue: waiting count is not a u32")?,
            copy_mode: number(next()?, "nfnetlink_queue: copy mode is not a u8")?,
            copy_range: number(next()?, "nfnetlink_queue: copy range is not a u32")?,
            queue_dropped: number(next()?, "nfnetlink_queue: queue_dropped is not a u32")?,
            user_dropped: number(next()?, "nfnetlink_queue: user_dropped is not a u32")?,
            id_sequence: number(next()?, "nfnetlink_queue: id_sequence is not a u32")?,
        })
    }
}

/// A decimal field; only ASCII digits (the kernel prints `%u`), so no sign is accepted.
fn number<T: FromStr>(field: &str, what: &'static str) -> Result<T> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed { what });
    }
    field.parse().map_err(|_| Error::Malformed { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(line: &str) -> &'static str {
        match line.parse::<QueueStats>() {
            Err(Error::Malformed { what }) => what,
            other => panic!("{line:?}: expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_kernel_format() {
        // As printed by the kernel: "%5u %6u %5u %1u %5u %5u %5u %8u %2d\n".
        let text = "    7 123456     2 2 65531     4     5        9  1\n\
                    65535 4294967295 4294967295 1     0 4294967295     0 4294967295  1\n";
        let stats = QueueStats::parse(text).unwrap();
        assert_eq!(
            stats,
            vec![
                QueueStats {
                    queue: 7,
                    portid: 123_456,
                    queued: 2,
                    copy_mode: 2,
                    copy_range: 65531,
                    queue_dropped: 4,
                    user_dropped: 5,
                    id_sequence: 9,
                },
                QueueStats {
                    queue: u16::MAX,
                    portid: u32::MAX,
                    queued: u32::MAX,
                    copy_mode: 1,
                    copy_range: 0,
                    queue_dropped: u32::MAX,
                    user_dropped: 0,
                    id_sequence: u32::MAX,
                },
            ]
        );
        assert_eq!(stats[0].mode().unwrap(), CopyMode::Packet(65531));
        assert_eq!(stats[1].mode().unwrap(), CopyMode::Meta);
    }

    #[test]
    fn blank_lines_and_extra_fields_are_tolerated() {
        assert_eq!(QueueStats::parse("").unwrap(), vec![]);
        assert_eq!(QueueStats::parse("\n  \n\t\n").unwrap(), vec![]);
        // Without the trailing 1, with more fields, with tabs and CRLF.
        let a: QueueStats = "1 2 3 0 0 0 0 4".parse().unwrap();
        let b: QueueStats = "1\t2 3 0 0 0 0 4 1 99 extra\r".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.mode().unwrap(), CopyMode::None);
        assert_eq!(
            QueueStats::parse("\n1 2 3 0 0 0 0 4 1\n\n").unwrap(),
            vec![a]
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        let short = "nfnetlink_queue line with fewer than 8 fields";
        assert_eq!(malformed(""), short);
        assert_eq!(malformed("1 2 3 4 5 6 7"), short);
        assert_eq!(
            malformed("65536 1 0 2 0 0 0 0 1"),
            "nfnetlink_queue: queue number is not a u16"
        );
        assert_eq!(
            malformed("-1 1 0 2 0 0 0 0 1"),
            "nfnetlink_queue: queue number is not a u16"
        );
        assert_eq!(
            malformed("+1 1 0 2 0 0 0 0 1"),
            "nfnetlink_queue: queue number is not a u16"
        );
        assert_eq!(
            malformed("1 4294967296 0 2 0 0 0 0 1"),
            "nfnetlink_queue: portid is not a u32"
        );
        assert_eq!(
            malformed("1 1 x 2 0 0 0 0 1"),
            "nfnetlink_queue: waiting count is not a u32"
        );
        assert_eq!(
            malformed("1 1 0 256 0 0 0 0 1"),
            "nfnetlink_queue: copy mode is not a u8"
        );
        assert_eq!(
            malformed("1 1 0 2 0x10 0 0 0 1"),
            "nfnetlink_queue: copy range is not a u32"
        );
        assert_eq!(
            malformed("1 1 0 2 0 1.5 0 0 1"),
            "nfnetlink_queue: queue_dropped is not a u32"
        );
        assert_eq!(
            malformed("1 1 0 2 0 0 ٣ 0 1"),
            "nfnetlink_queue: user_dropped is not a u32"
        );
        assert_eq!(
            malformed("1 1 0 2 0 0 0 99999999999 1"),
            "nfnetlink_queue: id_sequence is not a u32"
        );
        // One bad line spoils the whole file, wherever it is.
        assert!(QueueStats::parse("1 2 3 0 0 0 0 4 1\ngarbage\n").is_err());
        let err = QueueStats::parse("1 2 3 0 0 0 0 4 1\n1 2 3\n").unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn unknown_copy_modes_are_errors_not_copy_modes() {
        let unknown: QueueStats = "1 1 0 3 0 0 0 0 1".parse().unwrap();
        assert_eq!(unknown.copy_mode, 3);
        assert!(
            matches!(
                unknown.mode(),
                Err(Error::Malformed {
                    what: "nfnetlink_queue: unknown copy mode"
                })
            ),
            "{:?}",
            unknown.mode()
        );
        let huge_range: QueueStats = "1 1 0 2 70000 0 0 0 1".parse().unwrap();
        assert!(
            matches!(
                huge_range.mode(),
                Err(Error::Malformed {
                    what: "nfnetlink_queue: packet copy range above 65535"
                })
            ),
            "{:?}",
            huge_range.mode()
        );
        // The largest range that still fits is a copy mode.
        let max: QueueStats = "1 1 0 2 65535 0 0 0 1".parse().unwrap();
        assert_eq!(max.mode().unwrap(), CopyMode::Packet(65535));
    }
}
