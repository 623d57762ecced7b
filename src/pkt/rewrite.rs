//! "Rewrite and accept" in one call: [`Verdict::accept_rewritten`].

use super::{PacketBuf, PktError};
use crate::packet::Packet;
use crate::verdict::{Refusal, Verdict};

impl Verdict {
    /// Copies `packet` into a [`PacketBuf`], lets `edit` change it, and accepts the packet with
    /// the result: the common "rewrite and accept" case, as one expression that a callback can
    /// return.
    ///
    /// - `edit` returns `Ok(())` and the bytes changed: the verdict accepts the packet with the
    ///   new bytes as its payload ([`Verdict::accept_with`]).
    /// - `edit` returns `Ok(())` and the bytes are unchanged: a plain [`Verdict::accept`], with
    ///   no payload to send (so it can join a range verdict).
    /// - The copy fails (no IP payload: [`CopyMode::Meta`](crate::CopyMode::Meta), or not IPv4
    ///   or IPv6) or `edit` returns an error (its `?` on the [`PacketBuf`] methods, say
    ///   [`PktError::NoRoom`] or, for a copy cut by the copy range, [`PktError::Truncated`]):
    ///   the verdict is refused when sent, and the packet gets its **queue's fallback verdict**
    ///   ([`QueueConfig::fallback`](crate::QueueConfig::fallback), drop by default), with the
    ///   error (`Error::Packet`) reported as for every refused verdict (see
    ///   [`Verdict::accept_with`]). [`Verdict::refusal`] tells it at once.
    ///
    /// The mangling methods ([`PacketBuf::mangle_payload`], [`PacketBuf::replace_all`], ...)
    /// keep lengths and checksums right; after edits through [`PacketBuf::data_mut`], call
    /// [`PacketBuf::fix_checksums`] in `edit`, since the kernel does not recompute them. Add a
    /// mark with [`Verdict::with_mark`] as usual.
    ///
    /// ```no_run
    /// use libnfq::{Handle, QueueConfig, Verdict};
    ///
    /// # fn main() -> Result<(), libnfq::Error> {
    /// let handle = Handle::open()?;
    /// // A packet whose rewrite fails is accepted unchanged (the default would drop it).
    /// let config = QueueConfig::new().fallback(Verdict::accept());
    /// let _queue = handle.queue(0, config, |packet| {
    ///     Verdict::accept_rewritten(packet, |buf| {
    ///         buf.replace_all(b"cat", b"tiger")?; // UDP payloads: lengths and checksums fixed
    ///         Ok(())
    ///     })
    ///     .with_mark(1)
    /// })?;
    /// handle.run()
    /// # }
    /// ```
    pub fn accept_rewritten<F>(packet: &Packet<'_>, edit: F) -> Verdict
    where
        F: FnOnce(&mut PacketBuf) -> Result<(), PktError>,
    {
        let mut buf = match PacketBuf::from_packet(packet) {
            Ok(buf) => buf,
            Err(e) => return Verdict::refused(Refusal::Packet(e)),
        };
        if let Err(e) = edit(&mut buf) {
            return Verdict::refused(Refusal::Packet(e));
        }
        if buf.data() == packet.payload() {
            Verdict::accept()
        } else {
            Verdict::accept_with(buf.data())
        }
    }
}
