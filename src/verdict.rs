//! Typed verdicts.

use crate::config::MAX_PAYLOAD_LEN;
use crate::error::{Error, Result};

/// What happens to the packet. Displayed as iptables would (`ACCEPT`, `DROP`, `REPEAT`,
/// `QUEUE 3`, `QUEUE 3 bypass`, `STOP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Let the packet go on. Like iptables' `ACCEPT`, it ends the traversal of the chain
    /// (and table) whose rule queued the packet; the tables that come later at the same hook
    /// (say, `filter` after `mangle`) still see it.
    #[doc(alias = "NF_ACCEPT")]
    Accept,
    /// Drop the packet.
    #[doc(alias = "NF_DROP")]
    Drop,
    /// Re-inject the packet into the table that queued it, from the start of its chain at
    /// the same hook: the queueing rule sees it again, so combine it with a mark that the rule
    /// skips (`-m mark ! --mark N`).
    #[doc(alias = "NF_REPEAT")]
    Repeat,
    /// Send the packet to another queue.
    #[doc(alias = "NF_QUEUE")]
    Queue {
        /// The queue number.
        num: u16,
        /// If no program is bound to that queue, accept the packet instead of dropping it.
        bypass: bool,
    },
    /// Accept the packet and skip everything else at this hook, including the tables that
    /// would come after the one that queued it.
    #[doc(alias = "NF_STOP")]
    Stop,
}

impl Action {
    /// The `verdict` value the kernel expects (`NF_*`, with the queue number in the upper 16
    /// bits for [`Action::Queue`]).
    pub fn raw(self) -> u32 {
        const NF_VERDICT_FLAG_QUEUE_BYPASS: u32 = 0x8000;
        match self {
            Action::Accept => libc::NF_ACCEPT as u32,
            Action::Drop => libc::NF_DROP as u32,
            Action::Repeat => libc::NF_REPEAT as u32,
            Action::Stop => libc::NF_STOP as u32,
            Action::Queue { num, bypass } => {
                let flag = if bypass {
                    NF_VERDICT_FLAG_QUEUE_BYPASS
                } else {
                    0
                };
                libc::NF_QUEUE as u32 | (u32::from(num) << 16) | flag
            }
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Accept => f.write_str("ACCEPT"),
            Action::Drop => f.write_str("DROP"),
            Action::Repeat => f.write_str("REPEAT"),
            Action::Stop => f.write_str("STOP"),
            Action::Queue { num, bypass: false } => write!(f, "QUEUE {num}"),
            Action::Queue { num, bypass: true } => write!(f, "QUEUE {num} bypass"),
        }
    }
}

/// A verdict: an [`Action`], optionally a new packet mark and a replacement payload.
///
/// ```
/// use libnfq::{Action, Verdict};
/// let v = Verdict::accept().with_mark(7);
/// assert_eq!(v.action(), Action::Accept);
/// assert_eq!(v.mark(), Some(7));
/// assert!(Verdict::drop().with_payload(vec![0; 70_000]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "nfq_set_verdict")]
#[doc(alias = "nfq_set_verdict2")]
#[doc(alias = "nfq_nlmsg_verdict_put")]
pub struct Verdict {
    action: Action,
    mark: Option<u32>,
    ct_mark: Option<u32>,
    payload: Option<Vec<u8>>,
}

impl Verdict {
    /// A verdict with this action, no mark and no payload.
    pub const fn new(action: Action) -> Self {
        Verdict {
            action,
            mark: None,
            ct_mark: None,
            payload: None,
        }
    }
    /// [`Action::Accept`].
    #[doc(alias = "NF_ACCEPT")]
    pub const fn accept() -> Self {
        Verdict::new(Action::Accept)
    }
    /// [`Action::Drop`].
    #[doc(alias = "NF_DROP")]
    pub const fn drop() -> Self {
        Verdict::new(Action::Drop)
    }
    /// [`Action::Repeat`].
    #[doc(alias = "NF_REPEAT")]
    pub const fn repeat() -> Self {
        Verdict::new(Action::Repeat)
    }
    /// [`Action::Stop`].
    #[doc(alias = "NF_STOP")]
    pub const fn stop() -> Self {
        Verdict::new(Action::Stop)
    }
    /// [`Action::Queue`] to queue `num`; the packet is dropped if nobody is bound to it.
    #[doc(alias = "NF_QUEUE")]
    pub const fn queue(num: u16) -> Self {
        Verdict::new(Action::Queue { num, bypass: false })
    }
    /// [`Action::Queue`] to queue `num`; the packet is accepted if nobody is bound to it.
    #[doc(alias = "NF_VERDICT_FLAG_QUEUE_BYPASS")]
    pub const fn queue_bypass(num: u16) -> Self {
        Verdict::new(Action::Queue { num, bypass: true })
    }

    /// Sets the packet's mark (`skb->mark`) along with the verdict.
    #[doc(alias = "nfq_nlmsg_verdict_put_mark")]
    #[doc(alias = "nfq_set_verdict2")]
    #[doc(alias = "nfq_set_verdict_mark")]
    pub const fn with_mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }

    /// Sets the mark of the packet's **connection** (conntrack's `ctmark`, what `-m connmark`
    /// matches) along with the verdict, as a nested `NFQA_CT { CTA_MARK }` attribute.
    ///
    /// Only kernels built with `CONFIG_NETFILTER_NETLINK_GLUE_CT` apply it, and only for queues
    /// bound with [`QueueFlags::CONNTRACK`](crate::QueueFlags::CONNTRACK) (binding with that
    /// flag fails with `EOPNOTSUPP` elsewhere). For a queue bound without it, such a verdict is
    /// refused ([`Error::InvalidVerdict`]) and the packet gets the queue's fallback verdict,
    /// rather than being accepted with the connection mark silently ignored.
    #[doc(alias = "NFQA_CT")]
    #[doc(alias = "CTA_MARK")]
    pub const fn with_conntrack_mark(mut self, mark: u32) -> Self {
        self.ct_mark = Some(mark);
        self
    }

    /// Replaces the packet's bytes (from the network header on) with `payload`.
    ///
    /// The kernel does not recompute checksums of a replaced payload: the payload must carry
    /// correct ones. A payload longer than [`MAX_PAYLOAD_LEN`] is refused here, since the kernel
    /// would silently drop the packet instead. A payload for a packet whose copy was truncated is
    /// refused when the verdict is sent ([`Error::TruncatedPayload`]).
    #[doc(alias = "nfq_nlmsg_verdict_put_pkt")]
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Result<Self> {
        let payload = payload.into();
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        self.payload = Some(payload);
        Ok(self)
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The new mark, if any.
    pub fn mark(&self) -> Option<u32> {
        self.mark
    }
    /// The new connection mark, if any.
    pub fn conntrack_mark(&self) -> Option<u32> {
        self.ct_mark
    }
    /// The replacement payload, if any.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The verdict as a queue's fallback: action and mark only.
    pub(crate) fn into_fallback(mut self) -> Self {
        self.payload = None;
        self.ct_mark = None;
        self
    }

    /// `true` for a verdict that may join a range verdict: no payload, no connection mark.
    pub(crate) fn is_plain(&self) -> bool {
        self.payload.is_none() && self.ct_mark.is_none()
    }

    /// The message form of this verdict.
    pub(crate) fn msg(&self) -> crate::netlink::VerdictMsg<'_> {
        crate::netlink::VerdictMsg {
            verdict: self.action.raw(),
            mark: self.mark,
            ct_mark: self.ct_mark,
            payload: self.payload.as_deref(),
        }
    }
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Self {
        Verdict::new(action)
    }
}
