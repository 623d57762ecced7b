//! Typed verdicts.

use std::hash::{Hash, Hasher};

use crate::config::MAX_PAYLOAD_LEN;
use crate::error::{Error, Result};
use crate::pkt::PktError;

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
    /// Set by the infallible payload constructors ([`Verdict::accept_with`],
    /// [`Verdict::accept_rewritten`]) when the payload could not be made: the verdict is then
    /// refused when sent and the packet gets its queue's fallback.
    refused: Option<Refusal>,
}

/// Why a verdict built by an infallible payload constructor cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The payload was longer than [`MAX_PAYLOAD_LEN`].
    TooLarge { len: usize },
    /// Copying or editing the packet failed.
    Packet(PktError),
}

impl Hash for Refusal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal refusals hash equally; `PktError` has no `Hash`, and two refused verdicts
        // seldom need telling apart by hash.
        std::mem::discriminant(self).hash(state);
    }
}

impl Refusal {
    fn to_error(&self) -> Error {
        match self {
            Refusal::TooLarge { len } => Error::PayloadTooLarge {
                len: *len,
                max: MAX_PAYLOAD_LEN,
            },
            Refusal::Packet(e) => Error::Packet(e.clone()),
        }
    }
}

impl Verdict {
    /// A verdict with this action, no mark and no payload.
    pub const fn new(action: Action) -> Self {
        Verdict {
            action,
            mark: None,
            ct_mark: None,
            payload: None,
            refused: None,
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

    /// Accepts the packet with `payload` as its new bytes (from the network header on): the
    /// infallible form of `Verdict::accept().with_payload(payload)`, for callbacks, which must
    /// return a `Verdict`.
    ///
    /// When the payload cannot be sent, the packet gets its **queue's fallback verdict**
    /// ([`QueueConfig::fallback`](crate::QueueConfig::fallback), drop by default) instead, as for
    /// any refused verdict, and the reason is reported like the kernel's late errors: returned
    /// by [`Handle::process`](crate::Handle::process) /
    /// [`try_process`](crate::Handle::try_process) or by
    /// [`DeferredPacket::verdict`](crate::DeferredPacket::verdict), and counted by the handle
    /// (`Handle::run` counts it and goes on). A payload is refused when it is longer than
    /// [`MAX_PAYLOAD_LEN`] ([`Error::PayloadTooLarge`], known at once: see
    /// [`Verdict::refusal`]), or, when sent, for a packet whose copy was truncated
    /// ([`Error::TruncatedPayload`]) and when it is shorter than the packet's headers.
    ///
    /// The payload must carry correct checksums (the kernel does not recompute them);
    /// [`Verdict::accept_rewritten`] edits a copy of the packet with
    /// [`PacketBuf`](crate::pkt::PacketBuf), which keeps them right.
    ///
    /// ```
    /// use libnfq::{Action, Error, Verdict};
    /// let v = Verdict::accept_with(vec![0x45; 40]);
    /// assert_eq!(v.payload().map(<[u8]>::len), Some(40));
    /// assert!(v.refusal().is_none());
    ///
    /// let too_big = Verdict::accept_with(vec![0; 70_000]);
    /// assert!(matches!(too_big.refusal(), Some(Error::PayloadTooLarge { len: 70_000, .. })));
    /// assert_eq!((too_big.action(), too_big.payload()), (Action::Drop, None));
    /// ```
    #[doc(alias = "nfq_nlmsg_verdict_put_pkt")]
    pub fn accept_with(payload: impl Into<Vec<u8>>) -> Self {
        let payload = payload.into();
        if payload.len() > MAX_PAYLOAD_LEN {
            return Verdict::refused(Refusal::TooLarge { len: payload.len() });
        }
        let mut verdict = Verdict::accept();
        verdict.payload = Some(payload);
        verdict
    }

    /// A verdict that is refused when sent, so that the packet gets its queue's fallback. Its
    /// own action is drop: wherever it might be sent as it is (a range verdict), it fails
    /// closed.
    pub(crate) fn refused(why: Refusal) -> Self {
        let mut verdict = Verdict::drop();
        verdict.refused = Some(why);
        verdict
    }

    /// Why this verdict will be refused when sent, if it was built by
    /// [`Verdict::accept_with`] or [`Verdict::accept_rewritten`] from a payload or an edit that
    /// failed: [`Error::PayloadTooLarge`], or [`Error::Packet`] with the
    /// [`PktError`](crate::pkt::PktError) of the copy or the edit. The packet then gets its
    /// queue's fallback verdict, with this error reported. Such a verdict carries no payload,
    /// and its own action is [`Action::Drop`] (a range verdict built from it drops).
    /// `None` for every other verdict (refusals that depend on the packet, such as
    /// [`Error::TruncatedPayload`], are only known when the verdict is sent).
    pub fn refusal(&self) -> Option<Error> {
        self.refused.as_ref().map(Refusal::to_error)
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
        self.refused = None;
        self
    }

    /// `true` for a verdict that may join a range verdict: no payload, no connection mark, not
    /// refused.
    pub(crate) fn is_plain(&self) -> bool {
        self.payload.is_none() && self.ct_mark.is_none() && self.refused.is_none()
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
