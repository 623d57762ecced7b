//! The network side of a measurement: the namespace guard, iptables, the UDP sender, the UDP
//! sink (kernel receive timestamps mark the end of a run), and the kernel's counters
//! (`nfnetlink_queue`, UDP SNMP, `/proc/stat`, `ksoftirqd`), all in the calling thread's
//! network namespace.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Result type of the harness: errors are explanations for a human.
pub type Result<T> = std::result::Result<T, String>;

/// `(st_dev, st_ino)` of the calling thread's network namespace.
pub fn netns_id() -> Result<(u64, u64)> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| format!("stat /proc/thread-self/ns/net: {e}"))?;
    Ok((meta.dev(), meta.ino()))
}

/// The private network namespace the harness was started in. Every command that changes the
/// firewall first checks that the calling thread is still in it, so a mistake can never reach
/// the host's rules.
pub struct Netns {
    id: (u64, u64),
}

impl Netns {
    /// Claims the calling thread's namespace, which the caller created (`unshare`) for the
    /// harness alone.
    pub fn claim_current() -> Result<Netns> {
        let ns = Netns { id: netns_id()? };
        ns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn check(&self) -> Result<()> {
        if netns_id()? == self.id {
            Ok(())
        } else {
            Err("refusing to run a network command outside the harness' namespace".into())
        }
    }

    /// Runs `tool args...` in the namespace; returns its stdout.
    pub fn run(&self, tool: &str, args: &[&str]) -> Result<String> {
        self.check()?;
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        command_output(tool, &args)
    }

    /// Writes `value` to `/proc/sys/<key>` for this namespace (`net/...` keys are the calling
    /// thread's namespace's).
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.check()?;
        let path = format!("/proc/sys/{key}");
        std::fs::write(&path, value).map_err(|e| format!("write {path}: {e}"))
    }

    /// `iptables -w <args>`.
    pub fn iptables(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-w"];
        full.extend_from_slice(args);
        self.run("iptables", &full).map(drop)
    }
}

/// Runs `tool args` (found in PATH or sbin) and returns its stdout, or an error with stderr.
pub fn command_output(tool: &str, args: &[String]) -> Result<String> {
    let path = find_program(tool).ok_or_else(|| format!("`{tool}` not found"))?;
    let out = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{tool} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Finds `name` in `$PATH` or the sbin directories (often missing from a user's `$PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn errno_result(rc: libc::c_int, what: &str) -> Result<()> {
    if rc < 0 {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

fn set_int_opt(sock: &UdpSocket, level: i32, name: i32, value: i32, what: &str) -> Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int; `sock` owns its fd.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    errno_result(rc, what)
}

/// Sets a socket buffer as a privileged program does (`*FORCE`, falling back to the plain
/// option, which `net.core.[rw]mem_max` caps).
fn set_buffer(sock: &UdpSocket, force: i32, plain: i32, bytes: usize) -> Result<()> {
    let value = i32::try_from(bytes).unwrap_or(i32::MAX);
    set_int_opt(
        sock,
        libc::SOL_SOCKET,
        force,
        value,
        "setsockopt(*BUFFORCE)",
    )
    .or_else(|_| set_int_opt(sock, libc::SOL_SOCKET, plain, value, "setsockopt(*BUF)"))
}

/// The UDP sender: one connected socket per source address, used round-robin (the kernel's
/// `--queue-balance` hashes flows by address, so several sources spread over several queues).
pub struct Sender {
    socks: Vec<UdpSocket>,
    payload: Vec<u8>,
}

/// How a [`Sender`] sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendMode {
    /// Blocking sends, with the socket's default send buffer unless `sndbuf` says otherwise: a
    /// queued packet stays charged to the sender's buffer until its verdict, so a full buffer
    /// makes the sender wait for the consumer.
    Blocking {
        /// Send buffer to request.
        sndbuf: Option<usize>,
    },
    /// Non-blocking sends with a send buffer large enough for a whole backlog; stops at the
    /// first `EAGAIN` (a backlog larger than the buffer the kernel granted).
    Backlog,
}

/// Send buffer requested for a backlog (the kernel doubles it, capped at `INT_MAX`).
const BACKLOG_SNDBUF: usize = 1 << 30;

impl Sender {
    /// A sender of `payload_len`-byte datagrams from each of `sources` to `127.0.0.1:port`.
    pub fn new(
        sources: &[Ipv4Addr],
        port: u16,
        payload_len: usize,
        mode: SendMode,
    ) -> Result<Self> {
        let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let socks = sources
            .iter()
            .map(|&src| {
                let sock = UdpSocket::bind(SocketAddrV4::new(src, 0))
                    .map_err(|e| format!("bind sender to {src}: {e}"))?;
                sock.connect(dst)
                    .map_err(|e| format!("connect sender to {dst}: {e}"))?;
                match mode {
                    SendMode::Backlog => {
                        set_buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, BACKLOG_SNDBUF)?;
                        sock.set_nonblocking(true)
                    }
                    SendMode::Blocking { sndbuf } => {
                        if let Some(bytes) = sndbuf {
                            set_buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes)?;
                        }
                        sock.set_write_timeout(Some(Duration::from_secs(10)))
                    }
                }
                .map_err(|e| format!("sender socket options: {e}"))?;
                Ok(sock)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sender {
            socks,
            payload: vec![0x5a; payload_len],
        })
    }

    /// Sends `count` datagrams round-robin over the sources; returns how many were sent (fewer
    /// only in [`SendMode::Backlog`], when a send buffer filled up).
    pub fn send(&self, count: u64) -> Result<u64> {
        for i in 0..count {
            let sock = &self.socks[(i % self.socks.len() as u64) as usize];
            match sock.send(&self.payload) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(i),
                Err(e) => return Err(format!("send datagram {i}: {e}")),
            }
        }
        Ok(count)
    }

    /// Sends one datagram from source `index`.
    pub fn send_from(&self, index: usize) -> Result<()> {
        self.socks[index]
            .send(&self.payload)
            .map(drop)
            .map_err(|e| format!("send probe: {e}"))
    }
}

/// What the sink found when it read its socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collected {
    /// Datagrams read.
    pub count: u64,
    /// Datagrams whose length was not the payload length sent.
    pub bad_len: u64,
    /// Latest kernel receive timestamp (`SO_TIMESTAMPNS`, realtime clock), in ns since the
    /// epoch: when the last datagram reached the sink.
    pub last_ns: i128,
}

/// One datagram of a [`StampedSender`] as the sink saw it.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// Its sequence number in the run.
    pub seq: u64,
    /// `CLOCK_MONOTONIC` right before the sender's `send`, in ns.
    pub sent_mono_ns: u64,
    /// The kernel's receive timestamp at the sink (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`), in ns
    /// since the epoch.
    pub received_rt_ns: i128,
}

/// Receive buffer requested for the sink (it must hold a whole run: it reads only after).
const SINK_RCVBUF: usize = 1 << 30;
const SINK_BATCH: usize = 64;
const SINK_SLOT: usize = 2048;

/// A UDP socket bound to `127.0.0.1:port` whose datagrams the kernel stamps on arrival, so the
/// end of a run is known to the nanosecond whenever [`Sink::collect`] reads them: on a thread
/// of its own during the run (a live receiver), or only after it, the datagrams waiting in the
/// (large) receive buffer meanwhile, so that the sink costs the measured consumer nothing.
pub struct Sink {
    sock: UdpSocket,
    rcvbuf: usize,
}

impl Sink {
    /// Binds the sink.
    pub fn bind(port: u16) -> Result<Sink> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let sock = UdpSocket::bind(addr).map_err(|e| format!("bind sink {addr}: {e}"))?;
        set_buffer(&sock, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, SINK_RCVBUF)?;
        set_int_opt(
            &sock,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            1,
            "setsockopt(SO_TIMESTAMPNS)",
        )?;
        let mut rcvbuf: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into a live c_int.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut rcvbuf as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        errno_result(rc, "getsockopt(SO_RCVBUF)")?;
        Ok(Sink {
            sock,
            rcvbuf: rcvbuf as usize,
        })
    }

    /// The receive buffer the kernel granted.
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    /// Reads what is waiting, then waits for more until `expect` datagrams were read, or nothing
    /// arrived for `quiet` after the first datagram (for `first_wait` before it).
    pub fn collect(
        &self,
        expect: u64,
        payload_len: usize,
        first_wait: Duration,
        quiet: Duration,
    ) -> Result<Collected> {
        let mut got = Collected::default();
        let mut data = vec![[0u8; SINK_SLOT]; SINK_BATCH];
        // u64 keeps the control buffers aligned for `cmsghdr`.
        let mut ctrl = vec![[0u64; 8]; SINK_BATCH];
        let mut last_arrival = Instant::now();
        loop {
            let n = self.recv_batch(&mut data, &mut ctrl, payload_len, &mut got, None)?;
            if n > 0 {
                last_arrival = Instant::now();
                continue;
            }
            let patience = if got.count == 0 { first_wait } else { quiet };
            if got.count >= expect || last_arrival.elapsed() >= patience {
                return Ok(got);
            }
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd; the timeout is a few milliseconds.
            unsafe { libc::poll(&mut pfd, 1, 5) };
        }
    }

    /// Reads the datagrams of a [`StampedSender`]'s run (after it), keeping each one's stamps,
    /// until `expect` were read or none arrived for `quiet`.
    pub fn collect_stamped(
        &self,
        expect: u64,
        payload_len: usize,
        quiet: Duration,
    ) -> Result<(Collected, Vec<Stamp>)> {
        let mut got = Collected::default();
        let mut stamps = Vec::new();
        let mut data = vec![[0u8; SINK_SLOT]; SINK_BATCH];
        let mut ctrl = vec![[0u64; 8]; SINK_BATCH];
        let mut last_arrival = Instant::now();
        loop {
            let n = self.recv_batch(
                &mut data,
                &mut ctrl,
                payload_len,
                &mut got,
                Some(&mut stamps),
            )?;
            if n > 0 {
                last_arrival = Instant::now();
                continue;
            }
            if got.count >= expect || last_arrival.elapsed() >= quiet {
                return Ok((got, stamps));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// One `recvmmsg(MSG_DONTWAIT)`; returns the number of datagrams read.
    fn recv_batch(
        &self,
        data: &mut [[u8; SINK_SLOT]],
        ctrl: &mut [[u64; 8]],
        payload_len: usize,
        got: &mut Collected,
        mut stamps: Option<&mut Vec<Stamp>>,
    ) -> Result<usize> {
        let mut iov: Vec<libc::iovec> = data
            .iter_mut()
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: SINK_SLOT,
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .zip(ctrl.iter_mut())
            .map(|(iov, ctrl)| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) value.
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = mem::size_of_val(ctrl);
                h
            })
            .collect();
        // SAFETY: every header points at a live iovec (one live SINK_SLOT-byte buffer) and a
        // live control buffer of the size given; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(format!("sink recvmmsg: {e}")),
            };
        }
        for (h, slot) in hdrs[..n as usize].iter().zip(data.iter()) {
            got.count += 1;
            if h.msg_len as usize != payload_len || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                got.bad_len += 1;
            }
            let received = receive_timestamp(&h.msg_hdr);
            if let Some(ns) = received {
                got.last_ns = got.last_ns.max(ns);
            }
            if let (Some(stamps), Some(received_rt_ns)) = (stamps.as_deref_mut(), received) {
                let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().unwrap());
                if h.msg_len as usize >= STAMP_LEN {
                    stamps.push(Stamp {
                        seq: word(0),
                        sent_mono_ns: word(8),
                        received_rt_ns,
                    });
                }
            }
        }
        Ok(n as usize)
    }
}

/// The `SCM_TIMESTAMPNS` control message of a received datagram, in ns since the epoch.
fn receive_timestamp(msg: &libc::msghdr) -> Option<i128> {
    // SAFETY: `msg` was filled by recvmmsg: msg_control/msg_controllen describe a live buffer
    // the kernel wrote control messages into; CMSG_* walk it within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Bytes of a [`StampedSender`]'s stamp at the start of each payload: sequence number and
/// monotonic send time, both little-endian u64.
pub const STAMP_LEN: usize = 16;

/// `CLOCK_MONOTONIC` now, in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one live timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one live timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in ns: what turns a kernel receive timestamp
/// (realtime) into the monotonic clock of the send stamps. Taken as the middle of the
/// tightest of 20 realtime/monotonic/realtime triples, so it is off by at most half that
/// window (returned second, typically tens of ns).
pub fn realtime_offset_ns() -> (i128, i128) {
    (0..20)
        .map(|_| {
            let r1 = clock_ns(libc::CLOCK_REALTIME);
            let m = clock_ns(libc::CLOCK_MONOTONIC);
            let r2 = clock_ns(libc::CLOCK_REALTIME);
            ((r1 + r2) / 2 - m, (r2 - r1) / 2)
        })
        .min_by_key(|&(_, err)| err)
        .expect("20 samples")
}

/// A UDP sender whose datagrams carry a sequence number and the monotonic time of their
/// `send` (latency shapes). Its send buffer is large, so that a burst enters the queue at
/// once instead of waiting for verdicts (a queued packet stays charged to the sender).
pub struct StampedSender {
    sock: UdpSocket,
    payload: Vec<u8>,
}

/// Send buffer of a [`StampedSender`].
const STAMPED_SNDBUF: usize = 64 << 20;

impl StampedSender {
    /// A sender of `payload_len`-byte datagrams to `127.0.0.1:port`.
    pub fn new(port: u16, payload_len: usize) -> Result<Self> {
        let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("bind sender: {e}"))?;
        sock.connect(dst)
            .map_err(|e| format!("connect sender to {dst}: {e}"))?;
        set_buffer(&sock, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, STAMPED_SNDBUF)?;
        Ok(StampedSender {
            sock,
            payload: vec![0x5a; payload_len.max(STAMP_LEN)],
        })
    }

    /// Sends datagram `seq`, stamped with the monotonic clock right before `send`.
    pub fn send(&mut self, seq: u64) -> Result<()> {
        self.payload[0..8].copy_from_slice(&seq.to_le_bytes());
        self.payload[8..16].copy_from_slice(&monotonic_ns().to_le_bytes());
        self.sock
            .send(&self.payload)
            .map(drop)
            .map_err(|e| format!("send datagram {seq}: {e}"))
    }
}

/// Waits until the monotonic clock reaches `deadline_ns`: sleeps while it is more than 15 us
/// away (see [`precise_sleeps`]), then spins. Sleeping keeps the sender from taking a whole core
/// from the consumer on a 2-core machine at low rates; above ~60k packets/s it spins anyway.
pub fn wait_until_mono(deadline_ns: u64) {
    const SPIN_NS: u64 = 15_000;
    loop {
        let now = monotonic_ns();
        if now >= deadline_ns {
            return;
        }
        let left = deadline_ns - now;
        if left > SPIN_NS {
            std::thread::sleep(Duration::from_nanos(left - SPIN_NS));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Makes the calling thread's sleeps precise (the default timer slack is 50 us).
pub fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes a number of ns; it affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}

/// Now, on the clock of the kernel's receive timestamps, in ns since the epoch.
pub fn realtime_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// One line of `/proc/thread-self/net/netfilter/nfnetlink_queue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStat {
    /// Queue number.
    pub queue: u16,
    /// Packets waiting for a verdict.
    pub waiting: u64,
    /// Dropped because the queue was full.
    pub queue_dropped: u64,
    /// Dropped because the consumer's socket buffer was full.
    pub user_dropped: u64,
    /// Last packet id handed out.
    pub id_sequence: u64,
}

/// The bound queues of the calling thread's namespace.
pub fn queue_stats() -> Result<Vec<QueueStat>> {
    let path = "/proc/thread-self/net/netfilter/nfnetlink_queue";
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {path}: {e}")),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| format!("{path}: cannot parse {line:?}"))?;
            match f[..] {
                [queue, _portid, waiting, _mode, _range, qd, ud, seq, ..] => Ok(QueueStat {
                    queue: queue as u16,
                    waiting,
                    queue_dropped: qd,
                    user_dropped: ud,
                    id_sequence: seq,
                }),
                _ => Err(format!("{path}: too few fields in {line:?}")),
            }
        })
        .collect()
}

/// Sums the counters of `queues` (absent queues count as zero).
pub fn sum_stats(stats: &[QueueStat], queues: &[u16]) -> QueueStat {
    stats
        .iter()
        .filter(|s| queues.contains(&s.queue))
        .fold(QueueStat::default(), |a, s| QueueStat {
            queue: a.queue,
            waiting: a.waiting + s.waiting,
            queue_dropped: a.queue_dropped + s.queue_dropped,
            user_dropped: a.user_dropped + s.user_dropped,
            id_sequence: a.id_sequence + s.id_sequence,
        })
}

/// UDP datagrams the kernel dropped at a receiving socket in this namespace (`RcvbufErrors`
/// plus `MemErrors` of `/proc/thread-self/net/snmp`).
pub fn udp_receive_drops() -> Result<u64> {
    let path = "/proc/thread-self/net/snmp";
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Err(format!("{path}: no Udp lines"));
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| matches!(*name, "RcvbufErrors" | "MemErrors"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum())
}

/// CPU time the kernel's softirq threads (`ksoftirqd/N`) have used, in ns: network receive
/// work the kernel defers to them is not charged to the process that caused it.
pub fn ksoftirqd_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .filter_map(|e| {
            // schedstat: time on CPU (ns), time waiting, timeslices.
            let s = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Busy CPU time of the whole machine so far (every CPU's user, nice, system, irq, softirq
/// and steal time from `/proc/stat`), in ns; its resolution is the kernel's tick (10 ms).
pub fn machine_busy_ns() -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?;
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some(
                [0, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|&i| f.get(i))
                    .sum::<u64>(),
            )
        })
        .map_or(0, |ticks| ticks * 1_000_000_000 / hz)
}

/// CPU time (user + system) of this process so far, in ns.
pub fn own_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data; getrusage fills the live value we pass and cannot fail
    // with RUSAGE_SELF and a valid pointer.
    let ru = unsafe {
        let mut ru: libc::rusage = mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    rusage_cpu_ns(&ru)
}

/// User + system CPU time of a `rusage`, in ns.
pub fn rusage_cpu_ns(ru: &libc::rusage) -> u64 {
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}
