//! Bad input, fuzz-style: a seeded xorshift generator, many iterations, no new dependency.
//!
//! What parses kernel input and is reachable from the public API:
//! - `QueueStats::parse` (the `/proc` text);
//! - the receive path's message walk and attribute parsing (`src/netlink.rs`), through the
//!   `Handle::dispatch_for_fuzzing` (feature `fuzzing`): random datagrams of packet messages, error answers
//!   and garbage, with callbacks that read every `Packet` accessor;
//! - the receive path as a whole, fed by the kernel only: a test sends forged and garbage
//!   datagrams from another netlink socket to a handle and checks that they are ignored.
//!
//! Also checked: `Verdict::with_payload`'s length limit.
//!
//! `NFQ_FUZZ_SEED` and `NFQ_FUZZ_ITERATIONS` override the seed and the iteration count; a
//! failure names the seed and the iteration. Run it under valgrind too (`scripts/valgrind.sh`):
//! reads outside the exactly-sized message buffers are then reported.

#[allow(unused_imports)]
mod support;

use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use libnfq::{sys, Error, Handle, QueueConfig, QueueStats, Verdict, MAX_PAYLOAD_LEN};
use support::{Rng, UdpSink};

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
// The receive path's parser.

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// The queue the forged packet messages name.
const QUEUE: u16 = 7;

/// A packet message of `len` bytes (`nlmsg_len`, maybe cut short of its body), padded to 4
/// bytes: a netlink header, an nfgenmsg naming `QUEUE`, then `body`.
fn packet_message(body: &[u8], cut: Option<usize>) -> Vec<u8> {
    let full = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
    let len = cut.map_or(full, |c| c.clamp(NLMSG_HDRLEN, full));
    let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
    let mut bytes = Vec::with_capacity(len.div_ceil(4) * 4);
    bytes.extend_from_slice(&(len as u32).to_ne_bytes());
    bytes.extend_from_slice(&msg_type.to_ne_bytes());
    bytes.extend_from_slice(&[0; 10]); // flags, seq, portid
    bytes.extend_from_slice(&[0, 0]); // nfgenmsg family, version
    bytes.extend_from_slice(&QUEUE.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes.truncate(len);
    bytes.resize(len.div_ceil(4) * 4, 0);
    bytes
}

/// An NLMSG_ERROR answer with sequence 0 (about a verdict), echoing a verdict header.
fn error_message(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    let echoed = rng.below(40);
    let len = NLMSG_HDRLEN + 4 + echoed;
    bytes.extend_from_slice(&(len as u32).to_ne_bytes());
    bytes.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
    bytes.extend_from_slice(&[0; 10]);
    bytes.extend_from_slice(&(-(rng.below(130) as i32)).to_ne_bytes());
    bytes.extend(rng.bytes(echoed));
    bytes.resize(len.div_ceil(4) * 4, 0);
    bytes
}

/// Appends one attribute: usually well formed, sometimes with a lying length.
fn push_attribute(rng: &mut Rng, body: &mut Vec<u8>) {
    let table = sys::__NFQA_MAX as usize;
    let ty = match rng.below(4) {
        0 => rng.below(0x4000) as u16,
        _ => rng.below(table + 6) as u16,
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

/// Reads every accessor of `packet`, so that a bad slice would be touched (valgrind, bounds).
fn read_everything(packet: &libnfq::Packet<'_>) -> usize {
    let mut sum = packet.id() as usize + usize::from(packet.hw_protocol()) + packet.mark() as usize;
    sum += usize::from(packet.hook().raw()) + usize::from(packet.queue_num());
    for dev in [
        packet.indev(),
        packet.outdev(),
        packet.physindev(),
        packet.physoutdev(),
    ] {
        sum += dev.unwrap_or(0) as usize;
    }
    for bytes in [
        packet.payload(),
        packet.hw_addr().unwrap_or(&[]),
        packet.secctx().unwrap_or(&[]),
    ] {
        sum += bytes.iter().map(|&b| usize::from(b)).sum::<usize>();
    }
    sum += packet.conntrack().map_or(0, |c| c.as_bytes().len()) + packet.original_len() as usize;
    sum += usize::from(packet.is_truncated()) + packet.skb_info().bits() as usize;
    sum += packet.uid().unwrap_or(0) as usize + packet.gid().unwrap_or(0) as usize;
    sum += packet.conntrack_info().map_or(0, |i| i.raw()) as usize;
    sum += packet
        .timestamp()
        .map_or(0, |t| t.elapsed().map_or(1, |d| d.as_secs() as usize));
    sum + (0..40)
        .filter_map(|n| packet.raw_attr(n))
        .map(<[u8]>::len)
        .sum::<usize>()
}

/// Registers `QUEUE` with `callback` on `handle` for fuzzing (not bound in the kernel).
fn with_queue<'cb>(
    handle: &Handle<'cb>,
    callback: impl FnMut(&libnfq::Packet<'_>) -> Verdict + Send + 'cb,
) {
    handle
        .register_for_fuzzing(QUEUE, QueueConfig::new(), callback)
        .expect("register the fuzz queue")
}

#[test]
fn receive_path_survives_arbitrary_datagrams() {
    let Some(_ns) = support::enter!() else { return };
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let handle = Handle::open().unwrap();
    with_queue(&handle, |packet| {
        std::hint::black_box(read_everything(packet));
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Verdict::accept()
    });
    fuzz(5, |rng, _| {
        let mut datagram = Vec::new();
        let mut packet_messages = 0;
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 => datagram.extend(error_message(rng)),
                1 => {
                    let n = rng.below(64);
                    datagram.extend(rng.bytes(n));
                }
                _ => {
                    let mut body = Vec::new();
                    for _ in 0..rng.below(12) {
                        push_attribute(rng, &mut body);
                    }
                    let cut = rng
                        .one_in(4)
                        .then(|| rng.below(NLMSG_HDRLEN + NFGENMSG_LEN + body.len() + 1));
                    datagram.extend(packet_message(&body, cut));
                    packet_messages += 1;
                }
            }
        }
        let before = seen.load(std::sync::atomic::Ordering::Relaxed);
        let (dispatched, _errors) = handle.dispatch_for_fuzzing(&datagram).unwrap();
        let called = seen.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert_eq!(
            dispatched, called,
            "every dispatched packet reached the callback"
        );
        // Garbage can look like a packet message too, but most packets come from ours.
        assert!(
            called <= packet_messages + datagram.len() / 20,
            "{called} callbacks for {packet_messages} packet messages"
        );
    });
}

/// A packet message carrying a security context as the kernel sends it: the context string
/// (`system_u:object_r:...`), not a u32.
fn message_with_secctx(context: &[u8]) -> Vec<u8> {
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
    packet_message(&body, None)
}

/// libnetfilter_queue 1.0.5's `nfq_nlmsg_parse` validates NFQA_SECCTX as a u32 and fails the
/// whole message on a real context string; the crate parses attributes itself, so such a packet
/// reaches its callback (and gets a verdict) with its context readable.
#[test]
fn packet_with_a_security_context_string_reaches_the_callback() {
    let Some(_ns) = support::enter!() else { return };
    let context = b"system_u:object_r:unlabeled_t:s0";
    let seen = std::sync::Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    with_queue(&handle, |packet| {
        seen.lock()
            .unwrap()
            .push((packet.id(), packet.secctx().map(<[u8]>::to_vec)));
        Verdict::accept()
    });
    let (dispatched, errors) = handle
        .dispatch_for_fuzzing(&message_with_secctx(context))
        .unwrap();
    assert_eq!((dispatched, errors.len()), (1, 0), "{errors:?}");
    assert_eq!(*seen.lock().unwrap(), vec![(1, Some(context.to_vec()))]);
}

// ---------------------------------------------------------------------------------------------
// Forged input on the socket.

/// A netlink socket of the netfilter family, bound to its own port id: a peer that can send
/// datagrams to a handle's socket (allowed with CAP_NET_ADMIN).
struct Peer(OwnedFd);

impl Peer {
    fn open() -> Peer {
        let fd = support::netfilter_socket();
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

    /// Sends `bytes` as one datagram to the socket with port id `portid`; the error the
    /// kernel answered, if any.
    fn send_to(&self, portid: u32, bytes: &[u8]) -> Option<i32> {
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
        if rc < 0 {
            return std::io::Error::last_os_error().raw_os_error();
        }
        assert_eq!(rc, bytes.len() as isize, "short send");
        None
    }
}

/// Only the kernel may feed the handle: its socket is connected to the kernel, so the kernel
/// refuses (`ECONNREFUSED`) well-formed packet messages, verdict errors and garbage that
/// another socket addresses to the handle's port id, whatever they hold; nothing forged is
/// dispatched, and real packets keep flowing, with the kernel's ids. The same holds for a
/// socket adopted with `Handle::from_fd`.
#[test]
fn forged_and_garbage_datagrams_from_another_socket_are_refused() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 7;
    let sink = UdpSink::bind("127.0.0.1:0");
    let port = sink.port().to_string();
    ns.queue_udp_port(&port, "7");
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
        assert_eq!(
            peer.send_to(handle.portid(), &datagram),
            Some(libc::ECONNREFUSED),
            "datagram {i} was not refused"
        );
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

    // The refusal is the connection's doing: an unconnected socket of the same family takes
    // the very same datagram from the peer...
    let unconnected = Peer::open();
    let mut bound: libc::sockaddr_nl = Peer::address(0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `bound`/`len` describe a writable sockaddr_nl.
    let rc = unsafe {
        libc::getsockname(
            unconnected.0.as_raw_fd(),
            (&mut bound as *mut libc::sockaddr_nl).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    assert_eq!(peer.send_to(bound.nl_pid, &forged), None);
    // ...and a socket adopted with `from_fd` is connected as well.
    let adopted = Handle::from_fd(support::netfilter_socket()).unwrap();
    assert_eq!(
        peer.send_to(adopted.portid(), &forged),
        Some(libc::ECONNREFUSED)
    );
}
