//! A port of libnetfilter_queue's example `examples/nf-queue.c` (1.0.5) to libnfq.
//!
//! ```text
//! nf-queue [queue_num]
//! iptables -A OUTPUT -p udp --dport 9999 -j NFQUEUE --queue-num 0
//! cargo run --example nf-queue -- 0
//! ```
//!
//! Same usage and arguments, same queue settings (copy whole packets, range 0xffff; flag
//! `NFQA_CFG_F_GSO`; `NETLINK_NO_ENOBUFS` on the socket) and the same output: one line per
//! packet, every packet accepted with the connection mark 42.
//!
//! ```text
//! packet received (id=1 hw=0x0800 hook=3, payload len 33, checksum not ready)
//! truncated packet received (id=2 hw=0x0800 hook=3, payload len 65531, checksum not ready)
//! GSO packet received (id=3 hw=0x0800 hook=3, payload len 3028, checksum not ready)
//! ```
//!
//! `truncated ` prefixes a packet longer than the copy range (the kernel's largest, 65531
//! bytes), `GSO ` a GSO super-packet (delivered whole because of `NFQA_CFG_F_GSO`), and
//! `, checksum not ready` a packet whose checksums the hardware or the stack fills in later
//! (`NFQA_SKB_CSUMNOTREADY`).
//!
//! Errors end the program with exit status 1 and the `perror` line the C program prints:
//! `mnl_socket_open: ...`, `mnl_cb_run: ...` (the kernel refused the bind or a verdict, e.g.
//! `mnl_cb_run: Operation not permitted` when another program holds the queue),
//! `mnl_socket_recvfrom: ...`, `mnl_socket_send: ...`.
//!
//! Differences from the C program:
//!
//! - **Connection mark.** The C example attaches `NFQA_CT { CTA_MARK = 42 }` to each verdict,
//!   which sets the connection's mark to 42 on kernels built with
//!   `CONFIG_NETFILTER_NETLINK_GLUE_CT` (others ignore it). libnfq sends a connection mark
//!   ([`Verdict::with_conntrack_mark`]) only on a queue bound with `NFQA_CFG_F_CONNTRACK`, so the
//!   port binds with that flag as well where the kernel accepts it, and with `NFQA_CFG_F_GSO`
//!   alone (plain accepts) where it does not: the connection ends up with the C program's mark
//!   either way. With the flag, the kernel also attaches conntrack data to each packet, which
//!   changes nothing printed.
//! - The bind, the copy mode and the flags go to the kernel in one message, acknowledged before
//!   the loop starts (the C program sends two unacknowledged messages, and between them the
//!   queue runs with copy mode `NONE`). A refused bind gives the same `mnl_cb_run: ...` line
//!   and exit status.
//! - Each verdict is sent before the next receive, as in the C program (libnfq's batching is
//!   turned off with `set_batch_limit(1)`).
//! - A `NFQA_PAYLOAD`-less packet message (impossible in this copy mode) is printed with length
//!   0 instead of crashing.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::exit;

use libnfq::{sys, CopyMode, Error, Handle, Packet, QueueConfig, QueueFlags, SkbInfo, Verdict};

#[path = "c_compat/mod.rs"]
mod c_compat;
use c_compat::*;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() != 2 {
        // On standard output, as in the C program; `printf("%s", NULL)` prints `(null)`.
        let argv0 = args.first().map_or(&b"(null)"[..], |a| a.as_bytes());
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"Usage: ");
        let _ = out.write_all(argv0);
        let _ = out.write_all(b" [queue_num]\n");
        let _ = out.flush();
        exit(1);
    }
    // `queue_num = atoi(argv[1])` into an unsigned int, which `nfq_nlmsg_put` stores as
    // `htons(queue_num)`: only its low 16 bits count (65536 is queue 0).
    let queue_num = atoi(args[1].as_bytes()) as u32 as u16;

    // mnl_socket_open + mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID)
    let handle = Handle::open().unwrap_or_else(|e| die("mnl_socket_open", &e));

    // NFQNL_CFG_CMD_BIND, then nfq_nlmsg_cfg_put_params(NFQNL_COPY_PACKET, 0xffff) with
    // NFQA_CFG_FLAGS = NFQA_CFG_MASK = NFQA_CFG_F_GSO: one message here. libnfq sends a
    // connection mark only on a queue bound with NFQA_CFG_F_CONNTRACK, so the port asks for that
    // flag too; a kernel without conntrack glue (CONFIG_NETFILTER_NETLINK_GLUE_CT) refuses it,
    // and such a kernel also ignores the C program's NFQA_CT: the port then binds with GSO alone
    // and gives plain accepts, with the same result.
    let bind = |flags: QueueFlags, verdict: Verdict| {
        let config = QueueConfig::new()
            .copy_mode(CopyMode::Packet(0xffff))
            .flags(flags);
        handle.queue(queue_num, config, move |packet| queue_cb(packet, &verdict))
    };
    let with_ct = bind(
        QueueFlags::GSO | QueueFlags::CONNTRACK,
        // "example to set the connmark": NFQA_CT { CTA_MARK = 42 }
        Verdict::accept().with_conntrack_mark(42),
    );
    let bound = match with_ct {
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => bind(QueueFlags::GSO, Verdict::accept()),
        other => other,
    };
    // The C program learns of a refused bind from the error message its receive loop gets.
    let _queue = bound.unwrap_or_else(|e| die("mnl_cb_run", &e));

    // "ENOBUFS is signalled to userspace when packets were lost on kernel side. In most cases,
    // userspace isn't interested in this information, so turn it off." (The C program ignores
    // a failure here too.)
    let _ = handle.set_no_enobufs(true);

    // One datagram at a time, each verdict sent before the next receive, as in the C loop
    // (libnfq would otherwise dispatch up to 64 waiting packets per call and send their
    // verdicts together).
    handle.set_batch_limit(1);

    // mnl_socket_recvfrom + mnl_cb_run(queue_cb), forever.
    loop {
        match handle.process() {
            Ok(_) => {}
            Err(
                e @ Error::Io {
                    op: "send verdicts",
                    ..
                },
            ) => die("mnl_socket_send", &e),
            Err(e @ (Error::Io { .. } | Error::NoBufs)) => die("mnl_socket_recvfrom", &e),
            Err(e) => die("mnl_cb_run", &e),
        }
    }
}

/// The C program's `queue_cb`: prints one line and accepts the packet (`verdict`).
fn queue_cb(packet: &Packet<'_>, verdict: &Verdict) -> Verdict {
    // `plen = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD])`, a uint16_t.
    let plen = packet
        .raw_attr(sys::NFQA_PAYLOAD as u16)
        .map_or(0, |payload| payload.len() as u16);
    let skbinfo = packet.skb_info();

    let mut line = String::with_capacity(96);
    // NFQA_CAP_LEN (the packet's real length) is present when the copy was cut.
    if packet.raw_attr(sys::NFQA_CAP_LEN as u16).is_some()
        && packet.original_len() != u32::from(plen)
    {
        line.push_str("truncated ");
    }
    if skbinfo.contains(SkbInfo::GSO) {
        line.push_str("GSO ");
    }
    line.push_str(&format!(
        "packet received (id={} hw=0x{:04x} hook={}, payload len {}",
        packet.id(),
        packet.hw_protocol(),
        packet.hook().raw(),
        plen
    ));
    // "ip/tcp checksums are not yet valid, e.g. due to GRO/GSO. The application should behave
    // as if the checksums are correct."
    if skbinfo.contains(SkbInfo::CSUM_NOT_READY) {
        line.push_str(", checksum not ready");
    }
    line.push(')');
    println!("{line}");

    // nfq_send_verdict: NF_ACCEPT, with the connection mark 42 where the queue can carry it.
    verdict.clone()
}
