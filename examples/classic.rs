//! The classic NFQUEUE program most tutorials show, in Rust: bind queue 80, copy whole
//! packets, print `packet: <id>` for each and accept it.
//!
//! ```text
//! iptables -A OUTPUT -p udp --dport 9999 -j NFQUEUE --queue-num 80
//! cargo run --example classic
//! ```
//!
//! The C original opens a handle, binds the queue with a callback, sets the copy mode, then
//! loops on `recv` + `nfq_handle_packet`; the callback prints the id and calls
//! `nfq_set_verdict(NF_ACCEPT)`. Here the callback returns the verdict instead.

use libnfq::{CopyMode, Handle, QueueConfig, Verdict};

fn main() -> Result<(), libnfq::Error> {
    // nfq_open()
    let handle = Handle::open()?;
    // nfq_create_queue(h, 80, &cb, NULL) + nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff)
    let _queue = handle.queue(80, QueueConfig::new().copy_mode(CopyMode::FULL), |packet| {
        println!("packet: {}", packet.id());
        Verdict::accept()
    })?;
    // for (;;) { rv = recv(fd, buf, sizeof(buf), 0); nfq_handle_packet(h, buf, rv); }
    loop {
        match handle.run() {
            Err(e) if e.is_transient() => eprintln!("classic: {e}"),
            other => return other,
        }
    }
}
