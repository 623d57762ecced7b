//! A port of libnetfilter_queue's test utility `utils/nfqnl_test.c` (1.0.5) to libnfq.
//!
//! ```text
//! nfqnl_test [<0-65535>]        # queue number, default 0
//! iptables -A OUTPUT -p udp --dport 9999 -j NFQUEUE --queue-num 0
//! cargo run --example nfqnl_test -- 0
//! ```
//!
//! Same command line, defaults, set-up steps and standard output as the C program, so scripts
//! that read its output keep working. For each received datagram it prints `pkt received`, then
//! for each packet one line with the packet header and the attributes the kernel sent (only the
//! ones present, each followed by a space), then `entering callback`; every packet is accepted.
//!
//! ```text
//! opening library handle
//! unbinding existing nf_queue handler for AF_INET (if any)
//! binding nfnetlink_queue as nf_queue handler for AF_INET
//! binding this socket to queue '0'
//! setting copy_packet mode
//! setting flags to request UID and GID
//! setting flags to request security context
//! Waiting for packets...
//! pkt received
//! hw_protocol=0x0800 hook=3 id=1 outdev=1 uid=0 gid=0 payload_len=33
//! entering callback
//! ```
//!
//! (The packet line ends with a space, as in the C program.)
//!
//! Differences from the C program, all deliberate:
//!
//! - **Bug fixed: large packets.** The C program receives into a 4096-byte buffer, so a packet
//!   message of more than 4 KiB arrives cut: `pkt received` is printed, the packet is never
//!   parsed and never gets a verdict, and it stays queued until the program exits. The port uses
//!   libnfq's default receive buffer ([`libnfq::DEFAULT_BUFFER_SIZE`], room for the largest
//!   message the kernel sends), so every packet up to the 65531-byte copy range is printed and
//!   accepted.
//! - `nfq_unbind_pf`/`nfq_bind_pf` are no-ops since Linux 3.8: their lines are printed, nothing
//!   is sent. Without `CAP_NET_ADMIN` the C program fails at the first of them (the kernel checks
//!   the capability on every NFQUEUE message); the port then prints the same
//!   `error during nfq_unbind_pf()`, having learnt it from the bind, which it does at that point.
//! - The bind, the copy mode and the flags go to the kernel in one message (the C program sends
//!   three, and between the first two the queue runs with copy mode `NONE`). Their progress lines
//!   are printed in the C program's order once the bind succeeded. When the kernel refuses a flag
//!   (`EOPNOTSUPP`), the bind is retried without it and the C program's warning is printed on
//!   standard error, so the outcome is the C program's: bound, with the flags the kernel
//!   supports.
//! - Standard output is flushed at every line (the C program's is block-buffered when it is not
//!   a terminal), so a reader sees each line at once.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::exit;

use libnfq::{sys, CopyMode, Error, Handle, Packet, QueueConfig, QueueFlags, Verdict};

#[path = "c_compat/mod.rs"]
mod c_compat;
use c_compat::*;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut queue: u32 = 0;
    if args.len() == 2 {
        // `queue = atoi(argv[1])` into a uint32_t: a negative number becomes a huge one.
        queue = atoi(args[1].as_bytes()) as u32;
        if queue > 65535 {
            let mut err = io::stderr().lock();
            let _ = err.write_all(b"Usage: ");
            let _ = err.write_all(args[0].as_bytes());
            let _ = err.write_all(b" [<0-65535>]\n");
            exit(1);
        }
    }
    let queue = queue as u16;

    println!("opening library handle");
    let handle = match Handle::open() {
        Ok(handle) => handle,
        Err(_) => {
            eprintln!("error during nfq_open()");
            exit(1);
        }
    };

    // nfq_unbind_pf(h, AF_INET) and nfq_bind_pf(h, AF_INET) told pre-3.8 kernels which queue
    // handler serves a protocol family. Since Linux 3.8 the kernel accepts both commands and
    // does nothing, so the port sends nothing; the lines stay for the scripts that expect them.
    // The kernel does check CAP_NET_ADMIN on them, as on every NFQUEUE message, so without the
    // capability the C program stops at nfq_unbind_pf. The port binds the queue here, before
    // printing the next lines, and reports a bind refused for want of the capability
    // (`Error::PermissionDenied`) as the C program's nfq_unbind_pf failure: same output.
    println!("unbinding existing nf_queue handler for AF_INET (if any)");
    let bound = bind(&handle, queue);
    if let Err(Error::PermissionDenied { .. }) = bound {
        eprintln!("error during nfq_unbind_pf()");
        exit(1);
    }
    println!("binding nfnetlink_queue as nf_queue handler for AF_INET");

    println!("binding this socket to queue '{queue}'");
    let (queue_handle, granted) = bound.unwrap_or_else(|_| {
        eprintln!("error during nfq_create_queue()");
        exit(1);
    });

    // nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff): already part of the bind message.
    println!("setting copy_packet mode");
    // nfq_set_queue_flags(qh, NFQA_CFG_F_UID_GID, NFQA_CFG_F_UID_GID): likewise.
    println!("setting flags to request UID and GID");
    if !granted.contains(QueueFlags::UID_GID) {
        eprintln!("This kernel version does not allow to retrieve process UID/GID.");
    }
    // nfq_set_queue_flags(qh, NFQA_CFG_F_SECCTX, NFQA_CFG_F_SECCTX): likewise.
    println!("setting flags to request security context");
    if !granted.contains(QueueFlags::SECCTX) {
        eprintln!("This kernel version does not allow to retrieve security context.");
    }

    println!("Waiting for packets...");

    // One datagram per `process` call, its verdict sent before the next receive, as in the C
    // loop (libnfq would otherwise take up to 64 waiting packets per call and send their
    // verdicts together).
    handle.set_batch_limit(1);

    // The C loop: `recv(fd, buf, sizeof(buf), 0)`, print `pkt received`, `nfq_handle_packet`.
    // `Handle::process` does one receive and dispatches it; the callback prints `pkt received`
    // first (the kernel sends every packet in a datagram of its own), and a datagram without a
    // packet (the kernel's answer about a verdict, say) gets its line here.
    loop {
        match handle.process() {
            Ok(0) => println!("pkt received"),
            Ok(_) => {}
            // The socket buffer overflowed: the kernel dropped packets (ENOBUFS).
            Err(Error::NoBufs) => println!("losing packets!"),
            // The C program ignores the result of nfq_set_verdict.
            Err(Error::Io {
                op: "send verdicts",
                ..
            }) => {}
            Err(Error::Io { source, .. }) => {
                eprintln!(
                    "recv failed: {}",
                    source
                        .raw_os_error()
                        .map_or_else(|| source.to_string(), strerror)
                );
                break;
            }
            // An error message from the kernel (about a verdict): a datagram without a packet.
            Err(_) => println!("pkt received"),
        }
    }

    // (sic: the C program says queue 0 whatever queue it bound)
    println!("unbinding from queue 0");
    let _ = queue_handle.unbind();

    println!("closing library handle");
    drop(handle);

    exit(0);
}

/// Binds `queue` with the C program's settings: copy whole packets (range 0xffff, which the
/// kernel clamps to 65531 like libnfq) and the flags UID_GID and SECCTX, leaving out those the
/// kernel refuses. Returns the queue and the flags it was bound with.
fn bind<'h>(
    handle: &'h Handle<'static>,
    queue: u16,
) -> Result<(libnfq::Queue<'h, 'static>, QueueFlags), Error> {
    let attempts = [
        QueueFlags::UID_GID | QueueFlags::SECCTX,
        QueueFlags::UID_GID,
        QueueFlags::SECCTX,
        QueueFlags::empty(),
    ];
    let mut last = None;
    for flags in attempts {
        let config = QueueConfig::new()
            .copy_mode(CopyMode::Packet(0xffff))
            .flags(flags);
        match handle.queue(queue, config, callback) {
            Ok(q) => return Ok((q, flags)),
            // The kernel checks the flags before binding: nothing is bound, try fewer.
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// The C program's `cb`: prints the packet and accepts it.
fn callback(packet: &Packet<'_>) -> Verdict {
    println!("pkt received");
    print_pkt(packet);
    println!("entering callback");
    // nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL)
    Verdict::accept()
}

/// The C program's `print_pkt`: one line, each present attribute followed by a space.
fn print_pkt(packet: &Packet<'_>) {
    // Bytes, not a String: the security context is printed as the kernel sent it.
    let mut line: Vec<u8> = Vec::with_capacity(160);
    // `ntohl(ph->packet_id)`, `ntohs(ph->hw_protocol)`, `ph->hook`: libnfq decodes the header.
    let _ = write!(
        line,
        "hw_protocol=0x{:04x} hook={} id={} ",
        packet.hw_protocol(),
        packet.hook().raw(),
        packet.id()
    );

    if let Some(addr) = packet.hw_addr() {
        // The kernel sends the attribute only for an address of at least one byte.
        let hex: Vec<String> = addr.iter().map(|b| format!("{b:02x}")).collect();
        let _ = write!(line, "hw_src_addr={} ", hex.join(":"));
    }

    let mark = packet.mark();
    if mark != 0 {
        let _ = write!(line, "mark={mark} ");
    }

    // nfq_get_*dev return 0 when the attribute is absent; 0 is not printed either way.
    let devices = [
        ("indev", packet.indev()),
        ("outdev", packet.outdev()),
        ("physindev", packet.physindev()),
        ("physoutdev", packet.physoutdev()),
    ];
    for (name, index) in devices {
        if let Some(index) = index.filter(|&i| i != 0) {
            let _ = write!(line, "{name}={index} ");
        }
    }

    if let Some(uid) = packet.uid() {
        let _ = write!(line, "uid={uid} ");
    }
    if let Some(gid) = packet.gid() {
        let _ = write!(line, "gid={gid} ");
    }

    // nfq_get_secctx returns the attribute's whole length (with the kernel's trailing NUL, which
    // `Packet::secctx` strips), and the line is printed when that length is positive; `%.*s`
    // stops at the first NUL.
    if let Some(raw) = packet.raw_attr(sys::NFQA_SECCTX as u16) {
        if !raw.is_empty() {
            let text = raw.split(|&b| b == 0).next().unwrap_or(&[]);
            line.extend_from_slice(b"secctx=\"");
            line.extend_from_slice(text);
            line.extend_from_slice(b"\" ");
        }
    }

    // nfq_get_payload returns -1 when the attribute is absent (copy mode META), which is not
    // printed, unlike an empty payload: `Packet::payload` cannot tell the two apart.
    if let Some(payload) = packet.raw_attr(sys::NFQA_PAYLOAD as u16) {
        let _ = write!(line, "payload_len={} ", payload.len());
    }

    line.push(b'\n');
    let _ = io::stdout().lock().write_all(&line);
}
