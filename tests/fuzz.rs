//! Bad input, fuzz-style: a seeded xorshift generator, many iterations, no new dependency.
//!
//! What parses kernel input and is reachable from the public API:
//! - `QueueStats::parse` (the `/proc` text);
//! - `libnfq::sys::nfq_nlmsg_parse`, libnetfilter_queue's packet message parser, which the crate
//!   runs on every packet message before its own bounds checks: checked here to stay inside the
//!   message and inside the attribute table the crate gives it (`sys::__NFQA_MAX` slots);
//! - the receive path as a whole, fed by the kernel only: a test sends forged and garbage
//!   datagrams from another netlink socket to a handle and checks that they are ignored.
//!
//! The crate's own message walk (`src/netlink.rs`) is private: its unit test
//! `walking_garbage_never_reads_out_of_bounds` covers it. Also checked: `Verdict::with_payload`'s
//! length limit.
//!
//! `NFQ_FUZZ_SEED` and `NFQ_FUZZ_ITERATIONS` override the seed and the iteration count; a
//! failure names the seed and the iteration. Run it under valgrind too (`scripts/valgrind.sh`):
//! reads outside the exactly-sized message buffers are then reported.

#[allow(unused_imports)]
mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use libnfq::{sys, Error, Handle, QueueConfig, QueueStats, Verdict, MAX_PAYLOAD_LEN};
use support::UdpSink;

/// xorshift64* (Vigna): small, fast, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias does not matter here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `true` with probability `1 / n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: not a number: {v:?}"))
    })
}

/// Runs `case(rng, iteration)` for every iteration with one generator seeded from
/// `NFQ_FUZZ_SEED` (default `seed`); a panic is reported with the seed and iteration.
fn fuzz(seed: u64, mut case: impl FnMut(&mut Rng, u64)) {
    let seed = env_or("NFQ_FUZZ_SEED", seed);
    let iterations = env_or("NFQ_FUZZ_ITERATIONS", 20_000);
    let mut rng = Rng::new(seed);
    for i in 0..iterations {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng, i))) {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("NFQ_FUZZ_SEED={seed}, iteration {i}: {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `/proc/net/netfilter/nfnetlink_queue` text.

/// A line as the kernel prints it (`"%5u %6u %5u %1u %5u %5u %5u %8u %2d\n"`), with the
/// values it holds.
fn kernel_line(rng: &mut Rng) -> (String, [u64; 8]) {
    let v = [
        rng.next() % (1 << 16),
        rng.next() % (1 << 32),
        rng.next() % (1 << 32),
        rng.next() % 3,
        rng.next() % 65532,
        rng.next() % (1 << 32),
        rng.next() % (1 << 32),
        rng.next() % (1 << 32),
    ];
    let line = format!(
        "{:5} {:6} {:5} {:1} {:5} {:5} {:5} {:8} {:2}",
        v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], 1
    );
    (line, v)
}

fn values(s: &QueueStats) -> [u64; 8] {
    [
        s.queue.into(),
        s.portid.into(),
        s.queued.into(),
        s.copy_mode.into(),
        s.copy_range.into(),
        s.queue_dropped.into(),
        s.user_dropped.into(),
        s.id_sequence.into(),
    ]
}

#[test]
fn queue_stats_lines_round_trip() {
    fuzz(1, |rng, _| {
        let (line, v) = kernel_line(rng);
        let parsed: QueueStats = line.parse().expect(&line);
        assert_eq!(values(&parsed), v, "{line:?}");
    });
}

#[test]
fn queue_stats_reject_corrupted_fields() {
    const WIDTH: [u32; 8] = [16, 32, 32, 8, 32, 32, 32, 32];
    fuzz(2, |rng, _| {
        let (line, _) = kernel_line(rng);
        let mut fields: Vec<String> = line.split_whitespace().map(String::from).collect();
        let at = rng.below(8);
        match rng.below(4) {
            // A non-digit anywhere in the field.
            0 => {
                let bad = *rng.pick(&['-', '+', 'x', '.', '٣', '\u{0}', 'e']);
                let pos = rng.below(fields[at].len() + 1);
                fields[at].insert(pos, bad);
            }
            // A value one past the field's type.
            1 => fields[at] = (1u64 << WIDTH[at]).to_string(),
            // Far too large.
            2 => fields[at].insert_str(0, "99999999999999999999"),
            // Too few fields.
            _ => fields.truncate(at.max(1)),
        }
        let corrupted = fields.join(" ");
        match corrupted.parse::<QueueStats>() {
            Err(Error::Malformed { .. }) => {}
            other => panic!("{corrupted:?}: {other:?}"),
        }
        // One bad line fails the whole file, wherever it is.
        let (good, _) = kernel_line(rng);
        let text = if rng.one_in(2) {
            format!("{good}\n{corrupted}\n")
        } else {
            format!("{corrupted}\n{good}\n")
        };
        assert!(QueueStats::parse(&text).is_err(), "{text:?}");
    });
}

#[test]
fn queue_stats_parse_never_panics_on_garbage() {
    const ALPHABET: &[u8] = b"0123456789      \t\n\n\r-+x.";
    fuzz(3, |rng, _| {
        let len = rng.below(200);
        let text = if rng.one_in(2) {
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        } else {
            (0..len).map(|_| *rng.pick(ALPHABET) as char).collect()
        };
        if let Ok(stats) = QueueStats::parse(&text) {
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(stats.len(), lines, "{text:?}");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Replacement payloads.

#[test]
fn replacement_payloads_are_refused_exactly_above_the_limit() {
    fuzz(4, |rng, _| {
        let len = match rng.below(3) {
            0 => MAX_PAYLOAD_LEN - 8 + rng.below(17),
            1 => rng.below(MAX_PAYLOAD_LEN + 1),
            _ => MAX_PAYLOAD_LEN + 1 + rng.below(100_000),
        };
        let payload = vec![rng.next() as u8; len];
        match Verdict::accept().with_payload(payload.clone()) {
            Ok(v) => {
                assert!(len <= MAX_PAYLOAD_LEN, "{len} bytes accepted");
                assert_eq!(v.payload(), Some(payload.as_slice()));
            }
            Err(Error::PayloadTooLarge { len: l, max }) => {
                assert_eq!((l, max), (len, MAX_PAYLOAD_LEN));
                assert!(len > MAX_PAYLOAD_LEN, "{len} bytes refused");
            }
            Err(e) => panic!("{len} bytes: {e:?}"),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// libnetfilter_queue's packet message parser.

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// Slots the crate's attribute table has.
const TABLE: usize = sys::__NFQA_MAX as usize;
/// Slots we give the parser: the crate's, plus guard slots that must stay untouched.
const GUARDED: usize = 64;

/// A packet message of `len` bytes (`nlmsg_len`) in a buffer of exactly `round_up(len, 4)`
/// bytes, so that valgrind sees any read past it; made of a netlink header, an nfgenmsg and
/// `body`.
struct Message {
    words: Vec<u32>,
    len: usize,
}

impl Message {
    fn new(body: &[u8], cut: Option<usize>) -> Message {
        let full = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
        let len = cut.map_or(full, |c| c.clamp(NLMSG_HDRLEN, full));
        let mut bytes = vec![0u8; len.div_ceil(4) * 4];
        let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
        bytes[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        bytes[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        let mut rest = [0u8; NFGENMSG_LEN];
        rest[2..4].copy_from_slice(&7u16.to_be_bytes()); // res_id: the queue number
        let tail: Vec<u8> = rest.iter().chain(body).copied().collect();
        let room = len - NLMSG_HDRLEN;
        bytes[NLMSG_HDRLEN..len].copy_from_slice(&tail[..room]);
        let words = bytes
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        Message { words, len }
    }

    /// Where libmnl may look for attributes: up to `nlmsg_len` rounded up to 4 bytes
    /// (`mnl_nlmsg_get_payload_tail`), which is why the buffer has that size. Every buffer the
    /// crate parses has that room (it is 8-byte granular), and the crate re-checks each
    /// attribute against `nlmsg_len` itself.
    fn range(&self) -> std::ops::Range<usize> {
        let start = self.words.as_ptr() as usize;
        start..start + self.words.len() * 4
    }
}

/// Appends one attribute: usually well formed, sometimes with a lying length.
fn push_attribute(rng: &mut Rng, body: &mut Vec<u8>) {
    let ty = match rng.below(4) {
        0 => rng.below(0x4000) as u16,
        _ => rng.below(TABLE + 6) as u16,
    };
    let flags = if rng.one_in(8) {
        *rng.pick(&[0x8000u16, 0x4000, 0xc000])
    } else {
        0
    };
    let payload = match ty as u32 {
        // Mostly the sizes the parser validates, sometimes anything.
        sys::NFQA_PACKET_HDR if !rng.one_in(4) => 7,
        sys::NFQA_TIMESTAMP | sys::NFQA_HWADDR if !rng.one_in(4) => 16 - 4 * rng.below(2),
        _ => *rng.pick(&[0usize, 1, 3, 4, 4, 4, 8, 12, 33, 64]),
    };
    let mut nla_len = (4 + payload) as u16;
    if rng.one_in(10) {
        nla_len = *rng.pick(&[0u16, 1, 2, 3, 0xffff, nla_len + 4, nla_len.wrapping_sub(2)]);
    }
    body.extend_from_slice(&nla_len.to_ne_bytes());
    body.extend_from_slice(&(ty | flags).to_ne_bytes());
    body.extend(rng.bytes(payload));
    // Padding, except sometimes after the last attribute (the kernel may leave it out).
    while body.len() % 4 != 0 && !rng.one_in(4) {
        body.push(0);
    }
}

#[test]
fn packet_parser_stays_inside_the_message_and_the_crates_table() {
    fuzz(5, |rng, _| {
        let mut body = Vec::new();
        for _ in 0..rng.below(12) {
            push_attribute(rng, &mut body);
        }
        if rng.one_in(5) {
            let n = rng.below(16);
            body.extend(rng.bytes(n));
        }
        let cut = rng
            .one_in(4)
            .then(|| rng.below(NLMSG_HDRLEN + NFGENMSG_LEN + body.len() + 1));
        let msg = Message::new(&body, cut);
        let mut table = [std::ptr::null_mut::<libc::nlattr>(); GUARDED];
        // SAFETY: `msg.words` is a live, 4-byte aligned buffer holding a netlink header whose
        // nlmsg_len (`msg.len` >= 16) does not exceed the buffer; `table` has room for every
        // attribute type a library with a larger NFQA_MAX could store (up to 63).
        let rc =
            unsafe { sys::nfq_nlmsg_parse(msg.words.as_ptr().cast(), table.as_mut_ptr().cast()) };
        for (slot, &attr) in table.iter().enumerate() {
            if attr.is_null() {
                continue;
            }
            assert!(
                slot < TABLE,
                "nfq_nlmsg_parse wrote slot {slot}: the crate's table has {TABLE} slots (rc {rc})"
            );
            let at = attr as usize;
            let inside = msg.range();
            assert!(
                inside.contains(&at) && at + 4 <= inside.end,
                "slot {slot} outside"
            );
            // SAFETY: `attr` points at least 4 bytes inside the live message buffer (checked).
            let nla_len = usize::from(unsafe { (*attr).nla_len });
            assert!(
                nla_len >= 4 && at + nla_len <= inside.end,
                "slot {slot}: attribute of {nla_len} bytes at offset {} of a {}-byte message",
                at - inside.start,
                msg.len
            );
        }
    });
}

/// A packet message carrying a security context as the kernel sends it: the context string
/// (`system_u:object_r:...`), not a u32.
fn message_with_secctx(context: &[u8]) -> Message {
    let mut body = Vec::new();
    let mut put = |ty: u32, payload: &[u8]| {
        body.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&(ty as u16).to_ne_bytes());
        body.extend_from_slice(payload);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    };
    put(sys::NFQA_PACKET_HDR, &[0, 0, 0, 1, 0x08, 0, 3]);
    put(sys::NFQA_SECCTX, context);
    put(sys::NFQA_PAYLOAD, &[0x45; 28]);
    Message::new(&body, None)
}

/// libnetfilter_queue 1.0.5 (Debian 12, Ubuntu 22.04) validates NFQA_SECCTX as a u32 and fails
/// the whole message otherwise. The crate then reports `Error::Malformed` and gives the packet
/// neither a callback nor a verdict: it stays queued until the queue is unbound, so with
/// `QueueFlags::SECCTX` on an SELinux host every packet is lost (and the queue fills up).
#[test]
#[ignore = "libnfq bug: with libnetfilter_queue 1.0.5, a packet with a security context fails \
            nfq_nlmsg_parse; the crate then never decides it (Message::Malformed, no verdict)"]
fn packet_with_a_security_context_string_parses() {
    let context = b"system_u:object_r:unlabeled_t:s0";
    let msg = message_with_secctx(context);
    let mut table = [std::ptr::null_mut::<libc::nlattr>(); GUARDED];
    // SAFETY: as in `packet_parser_stays_inside_the_message_and_the_crates_table`.
    let rc = unsafe { sys::nfq_nlmsg_parse(msg.words.as_ptr().cast(), table.as_mut_ptr().cast()) };
    assert!(
        rc >= 0 && !table[sys::NFQA_SECCTX as usize].is_null(),
        "nfq_nlmsg_parse failed ({rc}) on a packet message with a {}-byte security context",
        context.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Forged input on the socket.

/// A netlink socket of the netfilter family, bound to its own port id: a peer that can send
/// datagrams to a handle's socket (allowed with CAP_NET_ADMIN).
struct Peer(OwnedFd);

impl Peer {
    fn open() -> Peer {
        // SAFETY: plain socket(2) call, no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = Peer::address(0);
        // SAFETY: `addr` is a valid sockaddr_nl of the size given (port 0: the kernel picks one).
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        Peer(fd)
    }

    fn address(portid: u32) -> libc::sockaddr_nl {
        // SAFETY: sockaddr_nl is plain old data; all zeros is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_pid = portid;
        addr
    }

    /// Sends `bytes` as one datagram to the socket with port id `portid`.
    fn send_to(&self, portid: u32, bytes: &[u8]) {
        let addr = Peer::address(portid);
        // SAFETY: `bytes` is a live slice; `addr` a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            bytes.len() as isize,
            "sendto ({} bytes): {}",
            bytes.len(),
            std::io::Error::last_os_error()
        );
    }
}

/// Only the kernel may feed the handle: well-formed packet messages, verdict errors and garbage
/// sent by another socket to the handle's port id are skipped before parsing, whatever they
/// hold; real packets keep flowing, with the kernel's ids.
#[test]
fn forged_and_garbage_datagrams_from_another_socket_are_ignored() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 7;
    let sink = UdpSink::bind("127.0.0.1:0");
    let port = sink.port().to_string();
    ns.iptables(&[
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-j",
        "NFQUEUE",
        "--queue-num",
        "7",
    ]);
    let seen = std::sync::Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push(p.id());
            Verdict::accept()
        })
        .unwrap();
    let peer = Peer::open();
    let forged = message_with_secctx(b"ctx!");
    let forged: Vec<u8> = forged
        .words
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(forged.len)
        .collect();
    let mut rng = Rng::new(env_or("NFQ_FUZZ_SEED", 6));
    for i in 0..500 {
        let datagram = match i % 3 {
            0 => forged.clone(),
            1 => {
                // Netlink refuses empty datagrams (ENODATA).
                let n = 1 + rng.below(300);
                rng.bytes(n)
            }
            _ => {
                // An error answer with sequence 0, as for a failed verdict.
                let mut error = vec![0u8; 36];
                error[0..4].copy_from_slice(&36u32.to_ne_bytes());
                error[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
                error[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
                error
            }
        };
        peer.send_to(handle.portid(), &datagram);
        if i % 50 == 49 {
            assert_eq!(handle.process().expect("nothing to report"), 0);
        }
    }
    while handle.process().expect("nothing to report") != 0 {}
    assert!(
        seen.lock().unwrap().is_empty(),
        "a forged packet was dispatched"
    );

    support::udp_send(sink.addr(), &[b"real"]);
    let start = std::time::Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "no real packet");
        handle.process().expect("process");
    }
    assert_eq!(*seen.lock().unwrap(), [1]);
    assert_eq!(
        sink.recv_one(Duration::from_secs(10)).as_deref(),
        Some(&b"real"[..])
    );
}
