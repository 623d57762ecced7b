//! A minimal NFQUEUE binding over a raw netlink socket (libc only),
//! independent of the library under test: used to check what the kernel
//! reports in `/proc/.../nfnetlink_queue`, or to occupy a queue number.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
/// `NFQNL_COPY_PACKET`.
pub const COPY_PACKET: u8 = 2;

/// A queue bound through a raw `NETLINK_NETFILTER` socket in the calling
/// thread's namespace. The kernel unbinds it when this is dropped (socket
/// closed). No packets are read: queued packets just wait (or get dropped when
/// the queue is full).
#[derive(Debug)]
pub struct RawQueue {
    fd: OwnedFd,
    portid: u32,
    queue_num: u16,
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

impl RawQueue {
    /// Bind queue `queue_num` with copy mode "packet" and `copy_range`;
    /// panics on failure.
    pub fn bind(queue_num: u16, copy_range: u32) -> RawQueue {
        Self::try_bind(queue_num, copy_range)
            .unwrap_or_else(|e| panic!("RawQueue::bind({queue_num}): {e}"))
    }

    /// Like [`RawQueue::bind`] but returns the kernel's error (e.g. `EBUSY`
    /// when another socket holds the queue, `EPERM` without CAP_NET_ADMIN).
    pub fn try_bind(queue_num: u16, copy_range: u32) -> io::Result<RawQueue> {
        // SAFETY: plain socket(2) call, no pointers.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let sa_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `sa` is a valid sockaddr_nl of `sa_len` bytes.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                sa_len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = sa_len;
        // SAFETY: `sa`/`len` describe a writable sockaddr_nl buffer.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                &mut sa as *mut libc::sockaddr_nl as *mut libc::sockaddr,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let q = RawQueue {
            fd,
            portid: sa.nl_pid,
            queue_num,
        };
        q.config(1, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])?;
        let mut params = copy_range.to_be_bytes().to_vec();
        params.push(COPY_PACKET);
        q.config(2, NFQA_CFG_PARAMS, &params)?;
        Ok(q)
    }

    /// Send one NFQNL_MSG_CONFIG request with a single attribute, wait for the ack.
    fn config(&self, seq: u32, attr: u16, payload: &[u8]) -> io::Result<()> {
        let mut msg = Vec::with_capacity(64);
        msg.extend_from_slice(&[0u8; 4]); // nlmsg_len, patched below
        msg.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG).to_ne_bytes());
        msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        msg.push(libc::AF_UNSPEC as u8); // nfgen_family
        msg.push(0); // NFNETLINK_V0
        msg.extend_from_slice(&self.queue_num.to_be_bytes()); // res_id
        push_attr(&mut msg, attr, payload);
        let total = msg.len() as u32;
        msg[..4].copy_from_slice(&total.to_ne_bytes());

        // SAFETY: sockaddr_nl is plain old data; all-zero (pid 0 = kernel) is valid.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` is a valid buffer of `msg.len()` bytes; `kernel` is a
        // valid sockaddr_nl of the given size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }

        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let data = &buf[..n as usize];
            let mut off = 0;
            while off + 16 <= data.len() {
                let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap());
                let rseq = u32::from_ne_bytes(data[off + 8..off + 12].try_into().unwrap());
                if len < 16 || off + len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed netlink reply",
                    ));
                }
                if ty == libc::NLMSG_ERROR as u16 && rseq == seq && len >= 20 {
                    let err = i32::from_ne_bytes(data[off + 16..off + 20].try_into().unwrap());
                    return if err == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Netlink port id of the socket (as shown in `nfnetlink_queue`).
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// The bound queue number.
    pub fn queue_num(&self) -> u16 {
        self.queue_num
    }
}
