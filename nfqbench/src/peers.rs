//! The peer consumers built on the other Rust NFQUEUE crates (the child side), each accepting
//! every packet the way the crate's README or example does. The harness gives every consumer
//! the same queue length and receive buffer where a shape asks for them (drain): through the
//! crate's API where it has one, else with `setsockopt` on the crate's netlink socket.

use std::os::fd::RawFd;

use super::consumer::{ready, spin, Spec};
use super::net::Result;

/// `nfq` 0.2 (pure Rust netlink): `Queue::open`, `bind`, then `recv`, `set_verdict(Accept)`,
/// `verdict` per packet, as its README shows.
pub fn nfq_crate(spec: &Spec) -> Result<()> {
    use nfq::{Queue, Verdict};
    let mut queue = Queue::open().map_err(|e| format!("nfq: open: {e}"))?;
    queue
        .bind(spec.queue)
        .map_err(|e| format!("nfq: bind: {e}"))?;
    if spec.copy_range != 0 {
        queue
            .set_copy_range(spec.queue, spec.copy_range)
            .map_err(|e| format!("nfq: set_copy_range: {e}"))?;
    }
    if let Some(len) = spec.max_len {
        queue
            .set_queue_max_len(spec.queue, len)
            .map_err(|e| format!("nfq: set_queue_max_len: {e}"))?;
    }
    // The crate does not expose its socket: it is this process' only netlink socket.
    let fd = netlink_fd().ok_or("nfq: cannot find the crate's netlink socket")?;
    if let Some(bytes) = spec.rcvbuf {
        set_rcvbuf(fd, bytes)?;
    }
    ready(rcvbuf(fd)?);
    loop {
        let mut msg = queue.recv().map_err(|e| format!("nfq: recv: {e}"))?;
        spin(spec.spin_ns);
        msg.set_verdict(Verdict::Accept);
        queue
            .verdict(msg)
            .map_err(|e| format!("nfq: verdict: {e}"))?;
    }
}

fn accept_nfqueue(msg: &nfqueue::Message, spin_ns: &mut u64) {
    spin(*spin_ns);
    msg.set_verdict(nfqueue::Verdict::Accept);
}

/// `nfqueue` 0.9 (libnetfilter_queue): `open`, `bind(AF_INET)`, `create_queue` with a callback
/// that calls `set_verdict(Accept)`, `set_mode`, `run_loop`, as its example shows. `run_loop`
/// panics when `recv` fails (ENOBUFS after the kernel dropped messages for a full receive
/// buffer): it is started again, as a user would have to.
pub fn nfqueue_crate(spec: &Spec) -> Result<()> {
    let mut queue = nfqueue::Queue::new(spec.spin_ns);
    queue.open();
    queue.unbind(libc::AF_INET); // as the example: ignore the result
    if queue.bind(libc::AF_INET) != 0 {
        return Err("nfqueue: bind(AF_INET) failed".into());
    }
    queue.create_queue(spec.queue, accept_nfqueue);
    let range = match spec.copy_range {
        0 => 0xffff,
        n => u32::from(n),
    };
    queue.set_mode(nfqueue::CopyMode::CopyPacket, range);
    let fd = queue.fd();
    if let Some(len) = spec.max_len {
        // Not `queue.set_queuelen(len)`: nfqueue 0.9.1 declares it over `nfq_set_queuelen`, a
        // symbol libnetfilter_queue does not have (the program would not link). The same
        // configuration message, sent on the crate's socket (which owns the queue).
        set_queue_maxlen(fd, spec.queue, len)?;
    }
    if let Some(bytes) = spec.rcvbuf {
        set_rcvbuf(fd, bytes)?;
    }
    ready(rcvbuf(fd)?);
    // Quiet: one restart per overrun would otherwise print a panic message each time.
    std::panic::set_hook(Box::new(|_| {}));
    loop {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| queue.run_loop()));
    }
}

/// Sends NFQNL_MSG_CONFIG with NFQA_CFG_QUEUE_MAXLEN for `queue` on `fd` (no ACK asked: the
/// kernel answers only an error, which the consumer's receive loop then reads and ignores).
fn set_queue_maxlen(fd: RawFd, queue: u16, len: u32) -> Result<()> {
    const NFNL_SUBSYS_QUEUE: u16 = 3;
    const NFQNL_MSG_CONFIG: u16 = 2;
    const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
    let mut msg = Vec::with_capacity(28);
    msg.extend_from_slice(&28u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]); // nfgenmsg: family, version
    msg.extend_from_slice(&queue.to_be_bytes()); // res_id: the queue
    msg.extend_from_slice(&8u16.to_ne_bytes()); // nla_len
    msg.extend_from_slice(&NFQA_CFG_QUEUE_MAXLEN.to_ne_bytes());
    msg.extend_from_slice(&len.to_be_bytes());
    // SAFETY: sends `msg.len()` bytes from a live buffer on a socket the crate owns.
    let rc = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
    if rc < 0 {
        return Err(format!(
            "nfqueue: set the queue length: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The first netlink socket among this process' file descriptors.
fn netlink_fd() -> Option<RawFd> {
    (3..1024).find(|&fd| {
        let mut domain: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into a live c_int; an fd that is not a
        // socket (or not open) makes it fail with ENOTSOCK/EBADF, nothing else.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut domain as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        rc == 0 && domain == libc::AF_NETLINK
    })
}

/// As `c/common.h`'s `bench_set_rcvbuf`: SO_RCVBUFFORCE, falling back to SO_RCVBUF.
fn set_rcvbuf(fd: RawFd, bytes: usize) -> Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads one live c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(format!(
        "setsockopt(SO_RCVBUF): {}",
        std::io::Error::last_os_error()
    ))
}

fn rcvbuf(fd: RawFd) -> Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(format!(
            "getsockopt(SO_RCVBUF): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(value as usize)
}
