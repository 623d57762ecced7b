//! Traffic helpers: UDP sink/sender and a TCP echo server. All sockets are
//! created by the calling thread, i.e. in its current network namespace.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// UDP receiver bound in the current netns.
#[derive(Debug)]
pub struct UdpSink {
    sock: UdpSocket,
}

impl UdpSink {
    /// Bind to `addr`, e.g. `"127.0.0.1:0"` or `"[::1]:0"`; panics on failure.
    pub fn bind(addr: &str) -> UdpSink {
        let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("UdpSink::bind({addr}): {e}"));
        UdpSink { sock }
    }

    /// The bound address (with the real port).
    pub fn addr(&self) -> SocketAddr {
        self.sock
            .local_addr()
            .unwrap_or_else(|e| panic!("UdpSink local_addr: {e}"))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The underlying socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    fn set_timeout(&self, t: Duration) {
        assert!(!t.is_zero(), "UdpSink: timeout must be > 0");
        self.sock
            .set_read_timeout(Some(t))
            .unwrap_or_else(|e| panic!("UdpSink set_read_timeout: {e}"));
    }

    /// Receive datagrams until `quiet` passes with nothing arriving (or `max`
    /// have been received).
    pub fn recv_until_quiet(&self, quiet: Duration, max: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < max {
            match self.recv_one_from(quiet) {
                Some((data, _)) => got.push(data),
                None => break,
            }
        }
        got
    }

    /// What arrives: waits up to `wait` for each of the `expected` datagrams, then for `quiet`
    /// for any extra one (at most 64 extra).
    pub fn recv_expected(&self, expected: usize, wait: Duration, quiet: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < expected {
            match self.recv_one(wait) {
                Some(datagram) => got.push(datagram),
                None => break,
            }
        }
        got.extend(self.recv_until_quiet(quiet, 64));
        got
    }

    /// One datagram, or `None` if nothing arrives within `timeout`.
    pub fn recv_one(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.recv_one_from(timeout).map(|(d, _)| d)
    }

    /// One datagram and its source address, or `None` after `timeout`.
    /// (`EINTR` is retried with the remaining time.)
    pub fn recv_one_from(&self, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.set_timeout(left);
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    buf.truncate(n);
                    return Some((buf, from));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return None,
                Err(e) => panic!("UdpSink recv on {}: {e}", self.addr()),
            }
        }
    }
}

/// Send each payload as one datagram from a fresh socket bound to an
/// ephemeral port (same family as `to`); returns the source address.
///
/// A send failing with `EPERM` is tolerated: that is how the kernel reports a
/// datagram dropped by a local `OUTPUT` rule (`-j DROP`, or an NF_DROP verdict
/// given synchronously). Any other error panics. Use [`udp_send_each`] to see
/// the per-datagram results.
pub fn udp_send(to: SocketAddr, payloads: &[&[u8]]) -> SocketAddr {
    let (src, results) = udp_send_each(to, payloads);
    for (p, r) in payloads.iter().zip(results) {
        match r {
            Ok(n) => assert_eq!(n, p.len(), "udp_send to {to}: short send"),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("udp_send to {to} ({} bytes): {e}", p.len()),
        }
    }
    src
}

/// Sends each payload as one datagram to `to` (as [`udp_send_each`]), for datagrams an
/// NFQUEUE rule in `OUTPUT` takes: each is queued (or dropped) within `send`, and the kernel's
/// reasons for dropping one there (`EPERM`, or `ESRCH` for a queue nobody bound) are fine, since
/// what arrives is checked on the receiving side. Any other error panics.
pub fn udp_send_queued<P: AsRef<[u8]>>(to: SocketAddr, payloads: &[P]) {
    let refs: Vec<&[u8]> = payloads.iter().map(AsRef::as_ref).collect();
    let (_, results) = udp_send_each(to, &refs);
    for result in results {
        if let Err(e) = result {
            let errno = e.raw_os_error();
            assert!(
                errno == Some(libc::EPERM) || errno == Some(libc::ESRCH),
                "send: {e}"
            );
        }
    }
}

/// Like [`udp_send`], but returns each `send(2)` result instead of judging it
/// (e.g. `Err(EPERM)` for a datagram dropped in `OUTPUT`). Panics only if the
/// socket cannot be set up.
pub fn udp_send_each(
    to: SocketAddr,
    payloads: &[&[u8]],
) -> (SocketAddr, Vec<std::io::Result<usize>>) {
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("udp_send bind {bind}: {e}"));
    sock.connect(to)
        .unwrap_or_else(|e| panic!("udp_send connect {to}: {e}"));
    let results = payloads.iter().map(|p| sock.send(p)).collect();
    let src = sock
        .local_addr()
        .unwrap_or_else(|e| panic!("udp_send local_addr: {e}"));
    (src, results)
}

/// A TCP echo server on a background thread (spawned from the calling thread,
/// so it lives in the same netns). Each connection is echoed back until the
/// peer shuts down its write side; then the server closes it. Stops (and
/// joins the accept thread) on drop.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Per-connection idle limit of the echo server, so a test that blackholes a
/// connection does not leave a thread behind forever.
const ECHO_IDLE: Duration = Duration::from_secs(30);

fn echo(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(ECHO_IDLE));
    let _ = s.set_write_timeout(Some(ECHO_IDLE));
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}

impl TcpEcho {
    /// Listen on `addr` (e.g. `"127.0.0.1:0"`, `"[::1]:0"`); panics on failure.
    pub fn bind(addr: &str) -> TcpEcho {
        let listener = Arc::new(
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("TcpEcho::bind({addr}): {e}")),
        );
        let local = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("TcpEcho local_addr: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (listener, stop, accepted) = (listener.clone(), stop.clone(), accepted.clone());
            std::thread::Builder::new()
                .name(format!("tcp-echo-{local}"))
                .spawn(move || loop {
                    match listener.accept() {
                        Ok((s, _)) => {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            accepted.fetch_add(1, Ordering::SeqCst);
                            std::thread::spawn(move || echo(s));
                        }
                        Err(_) if stop.load(Ordering::SeqCst) => break,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                })
                .unwrap_or_else(|e| panic!("TcpEcho: spawn accept thread: {e}"))
        };
        TcpEcho {
            addr: local,
            listener,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// The listening address (with the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: the fd belongs to `self.listener`, which is still alive (we
        // hold an Arc). On Linux, shutdown(2) on a listening socket wakes a
        // thread blocked in accept(2) (it fails with EINVAL); it does not
        // close the fd, so there is no use-after-close.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connect, write `data`, shut down the write side and read the echo back,
/// all within `timeout`; `Err` on timeout (`TimedOut`), refusal, reset, ...
pub fn tcp_roundtrip(to: SocketAddr, data: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!("tcp_roundtrip to {to}: timed out after {timeout:?}"),
            ))
        } else {
            Ok(left)
        }
    };
    let to_timeout = |e: std::io::Error| {
        if is_timeout(&e) {
            std::io::Error::new(
                ErrorKind::TimedOut,
                format!("tcp_roundtrip to {to}: timed out after {timeout:?}: {e}"),
            )
        } else {
            e
        }
    };
    let mut s = TcpStream::connect_timeout(&to, remaining()?).map_err(to_timeout)?;
    s.set_write_timeout(Some(remaining()?))?;
    s.write_all(data).map_err(to_timeout)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        s.set_read_timeout(Some(remaining()?))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(to_timeout(e)),
        }
    }
}

/// Which socket buffer [`set_socket_buffer`] sizes.
#[derive(Clone, Copy, Debug)]
pub enum Buffer {
    /// `SO_RCVBUF(FORCE)`: room for datagrams waiting to be read.
    Receive,
    /// `SO_SNDBUF(FORCE)`: room for datagrams sent and not yet freed. A packet waiting in an
    /// NFQUEUE queue stays charged to its sending socket, so a sender that queues thousands
    /// needs a large one.
    Send,
}

/// Sets a socket buffer to `bytes`: with the `*FORCE` option where allowed (CAP_NET_ADMIN,
/// which the tests have in their namespace), else the plain one (capped by the system).
pub fn set_socket_buffer(sock: &UdpSocket, which: Buffer, bytes: i32) {
    use std::os::fd::AsRawFd;
    let options = match which {
        Buffer::Receive => [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF],
        Buffer::Send => [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF],
    };
    for option in options {
        // SAFETY: setsockopt on a live socket, with a pointer to a live c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
    panic!(
        "setsockopt({which:?} buffer): {}",
        std::io::Error::last_os_error()
    );
}
