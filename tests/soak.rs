//! Soak: many packets through the threaded pipeline (`queue_deferrable`, a bounded pool, worker
//! threads deciding with `VerdictBatch`), with pseudo-random verdicts (accept or drop), marks
//! and same-length payload rewrites carrying a correct UDP checksum. Every packet must be
//! accounted for, and neither memory nor file descriptors may grow.
//!
//! 10^6 packets by default: 6 to 9 s in a debug build on 2 idle cores (15 s with both cores
//! busy with something else), mostly kernel time; 6 s in a release build.
//! `NFQ_SOAK_PACKETS=<n>` runs another number, e.g. a longer soak in a release build:
//!
//! ```text
//! NFQ_SOAK_PACKETS=10000000 cargo test --release --test soak -- --nocapture
//! ```

#[allow(unused_imports)]
mod support;
mod usage;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{DeferredPacket, Handle, Pending, QueueConfig, QueueStats, Verdict, VerdictSender};
use support::{set_socket_buffer, Buffer, Netns, UdpSink};
use usage::Usage;

const QUEUE: u16 = 7;
/// Liveness bound: no progress at all for this long fails the test.
const STALL: Duration = Duration::from_secs(30);
/// Packets the sender may be ahead of what is accounted for (received by the sink, or dropped
/// by a verdict): keeps the kernel queue, the netlink socket and the sink's buffer far from
/// full, so that nothing may be lost for lack of room.
const WINDOW: u64 = 2048;
/// Worker threads deciding packets.
const WORKERS: usize = 2;
/// Verdicts per batch.
const BATCH: usize = 64;
/// Resident memory growth allowed between the end of the warm-up (a tenth of the packets) and
/// the end: allocator noise (free lists, arenas, first-touched pages); measured growth is about
/// 0. A deliberate leak of one boxed `u64` per packet (a 32-byte allocation) grew it by 28 MiB
/// over 10^6 packets and failed the test.
const RSS_TOLERANCE_KIB: u64 = 4 * 1024;
/// Seed of the verdict policy.
const SEED: u64 = 0x5EED_0F50_A4A4;

/// What happens to packet `seq`: derived from `seq` alone, so that the sink can check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decision {
    drop: bool,
    /// Mark 1..=3 set with the verdict.
    mark: Option<u32>,
    /// The data `seq:<n>` is rewritten to `SEQ:<n>` (same length, checksum recomputed).
    rewrite: bool,
}

/// splitmix64 of `seed + seq`: a well-spread pseudo-random word per packet.
fn random(seq: u64) -> u64 {
    let mut z = SEED.wrapping_add(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Drop 1 in 5; mark 1 in 4 (with 1, 2 or 3); rewrite 1 in 4.
fn decision(seq: u64) -> Decision {
    let r = random(seq);
    Decision {
        drop: r % 5 == 0,
        mark: ((r >> 8) % 4 == 0).then(|| 1 + ((r >> 16) % 3) as u32),
        rewrite: (r >> 24) % 4 == 0,
    }
}

fn data_of(seq: u64, rewritten: bool) -> String {
    let prefix = if rewritten { "SEQ" } else { "seq" };
    format!("{prefix}:{seq}")
}

/// Parses `seq:<n>` or `SEQ:<n>`: the sequence number and whether it was rewritten.
fn parse_data(data: &[u8]) -> Option<(u64, bool)> {
    let text = std::str::from_utf8(data).ok()?;
    let (prefix, n) = text.split_once(':')?;
    let rewritten = match prefix {
        "seq" => false,
        "SEQ" => true,
        _ => return None,
    };
    Some((n.parse().ok()?, rewritten))
}

/// The one's complement sum of `bytes` as big-endian 16-bit words (odd length padded with 0).
fn sum16(bytes: &[u8], mut sum: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// `packet` (IPv4 + UDP, from the network header) with its UDP data upper-cased and the UDP
/// checksum recomputed over the pseudo-header, as a replacement payload must carry it (the
/// kernel does not fix checksums).
fn rewritten(packet: &[u8]) -> Vec<u8> {
    let mut out = packet.to_vec();
    let ihl = usize::from(out[0] & 0x0f) * 4;
    out[ihl + 8..].make_ascii_uppercase();
    let udp_len = out.len() - ihl;
    out[ihl + 6..ihl + 8].fill(0);
    // Pseudo-header: source and destination address, protocol, UDP length.
    let mut sum = sum16(&out[12..20], 0);
    sum += u32::from(out[9]) + udp_len as u32;
    let checksum = !fold(sum16(&out[ihl..], sum));
    // A computed 0 is sent as 0xffff (0 means "no checksum").
    let checksum = if checksum == 0 { 0xffff } else { checksum };
    out[ihl + 6..ihl + 8].copy_from_slice(&checksum.to_be_bytes());
    out
}

/// The verdict a worker gives a deferred packet.
fn verdict_for(packet: &DeferredPacket) -> (Verdict, bool) {
    let ip = packet.payload();
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let (seq, _) = parse_data(&ip[ihl + 8..]).expect("a soak datagram");
    let d = decision(seq);
    let mut verdict = if d.drop {
        Verdict::drop()
    } else {
        Verdict::accept()
    };
    if let Some(mark) = d.mark {
        verdict = verdict.with_mark(mark);
    }
    if d.rewrite && !d.drop {
        verdict = verdict
            .with_payload(rewritten(ip))
            .expect("same-length payload");
    }
    (verdict, d.drop)
}

/// Counters shared by the pipeline's threads.
#[derive(Default)]
struct Progress {
    /// Datagrams the sink received.
    received: AtomicU64,
    /// Packets dropped by a verdict (counted when the worker decides them).
    dropped: AtomicU64,
}

impl Progress {
    fn accounted(&self) -> u64 {
        self.received.load(Ordering::Acquire) + self.dropped.load(Ordering::Acquire)
    }

    /// Waits until `accounted() >= target`; fails after [`STALL`] without progress.
    fn wait_for(&self, target: u64) {
        let mut last = (self.accounted(), Instant::now());
        while self.accounted() < target {
            let now = self.accounted();
            if now != last.0 {
                last = (now, Instant::now());
            }
            assert!(
                last.1.elapsed() < STALL,
                "no progress for {STALL:?}: {now} accounted, waiting for {target}"
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Sends `seq:0` .. `seq:<n-1>` to `to`, never more than [`WINDOW`] ahead of what is accounted.
fn send_all(to: SocketAddr, n: u64, progress: &Progress) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    // A queued packet stays charged to its sending socket.
    set_socket_buffer(&sock, Buffer::Send, 16 << 20);
    for seq in 0..n {
        if seq % 256 == 0 {
            progress.wait_for((seq + 256).saturating_sub(WINDOW));
        }
        let data = data_of(seq, false);
        match sock.send_to(data.as_bytes(), to) {
            Ok(_) => {}
            // A drop verdict given to an earlier datagram can surface as EPERM on a send.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("send {seq}: {e}"),
        }
    }
}

/// Receives until every expected datagram arrived (or nothing came for a while); checks each
/// against its decision and counts it. Returns the problems found (empty: all good).
fn receive_all(sink: UdpSink, n: u64, expected: u64, progress: &Progress) -> Vec<String> {
    set_socket_buffer(sink.socket(), Buffer::Receive, 16 << 20);
    let mut seen = vec![false; n as usize];
    let mut problems = Vec::new();
    let mut got = 0;
    while got < expected {
        let Some(data) = sink.recv_one(Duration::from_secs(5)) else {
            problems.push(format!("only {got} of {expected} datagrams arrived"));
            break;
        };
        got += 1;
        progress.received.fetch_add(1, Ordering::AcqRel);
        let Some((seq, rewritten)) = parse_data(&data) else {
            problems.push(format!("foreign datagram {data:?}"));
            continue;
        };
        let d = decision(seq);
        let slot = seen.get_mut(seq as usize);
        match slot {
            None => problems.push(format!("seq {seq} out of range")),
            Some(true) => problems.push(format!("seq {seq} received twice")),
            Some(slot) => *slot = true,
        }
        if d.drop || rewritten != d.rewrite {
            problems.push(format!("seq {seq} arrived as {data:?}; decision {d:?}"));
        }
        problems.truncate(20);
    }
    problems
}

/// Decides deferred packets from `pool` in batches until the pool closes.
fn work(pool: &Mutex<mpsc::Receiver<DeferredPacket>>, sender: &VerdictSender, progress: &Progress) {
    let mut batch = sender.batch(BATCH);
    loop {
        // One packet (waiting briefly), then whatever else is there, up to a batch.
        let first = pool.lock().unwrap().recv_timeout(Duration::from_millis(5));
        let mut next = match first {
            Ok(packet) => Some(packet),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut dropped = 0;
        while let Some(packet) = next {
            let (verdict, drop) = verdict_for(&packet);
            batch.push(packet, verdict).expect("verdict");
            dropped += u64::from(drop);
            next = (batch.len() < BATCH)
                .then(|| pool.lock().unwrap().try_recv().ok())
                .flatten();
        }
        batch.flush().expect("flush verdicts");
        progress.dropped.fetch_add(dropped, Ordering::AcqRel);
    }
}

/// Adds an `INPUT` rule counting the datagrams that carry `mark`.
fn count_mark(ns: &Netns, mark: u32) {
    let (mark, comment) = (mark.to_string(), format!("mark {mark}"));
    ns.iptables(&[
        "-A",
        "INPUT",
        "-p",
        "udp",
        "-m",
        "mark",
        "--mark",
        &mark,
        "-m",
        "comment",
        "--comment",
        &comment,
    ]);
}

/// `InCsumErrors` of the `Udp` lines of this namespace's SNMP counters.
fn udp_checksum_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (
        udp.next().expect("Udp names"),
        udp.next().expect("Udp values"),
    );
    let at = names
        .split_whitespace()
        .position(|n| n == "InCsumErrors")
        .expect("InCsumErrors");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn soak(ns: &Netns, n: u64) {
    let start = Instant::now();
    let expected_received = (0..n).filter(|&s| !decision(s).drop).count() as u64;
    let mut expected_marks = [0u64; 4];
    for d in (0..n).map(decision).filter(|d| !d.drop) {
        expected_marks[d.mark.unwrap_or(0) as usize] += 1;
    }
    let before = Usage::now();
    let sink = UdpSink::bind("127.0.0.1:0");
    let to = sink.addr();
    ns.queue_udp_port(to.port(), QUEUE);
    for mark in 1..=3 {
        count_mark(ns, mark);
    }

    let progress = Progress::default();
    let handle = Handle::open().unwrap();
    handle.set_recv_buffer_size(8 << 20).unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (pool_tx, pool_rx) = mpsc::sync_channel::<DeferredPacket>(4096);
    let pool = Mutex::new(pool_rx);
    let queue = handle
        .queue_deferrable(
            QUEUE,
            QueueConfig::new().max_len(65536),
            move |pending: Pending<'_>| {
                let (packet, handled) = pending.defer();
                pool_tx.send(packet).expect("workers alive");
                handled
            },
        )
        .unwrap();
    let sender = handle.verdict_sender();
    let (warm, end, problems, stats) = thread::scope(|s| {
        let sink = s.spawn(|| receive_all(sink, n, expected_received, &progress));
        for _ in 0..WORKERS {
            s.spawn(|| work(&pool, &sender, &progress));
        }
        s.spawn(|| send_all(to, n, &progress));
        let mut warm = None;
        let mut last = (0, Instant::now());
        while progress.accounted() < n {
            if let Err(e) = handle.process() {
                panic!("process: {e}");
            }
            let accounted = progress.accounted();
            if warm.is_none() && accounted >= n / 10 {
                warm = Some(Usage::now());
            }
            if accounted != last.0 {
                last = (accounted, Instant::now());
            }
            assert!(
                last.1.elapsed() < STALL,
                "no progress for {STALL:?} at {accounted} of {n}"
            );
        }
        let end = Usage::now();
        let stats = QueueStats::for_queue(QUEUE).unwrap().expect("queue bound");
        drop(queue); // frees the callback, so its end of the pool: the workers stop
        (
            warm.expect("warm-up measured"),
            end,
            sink.join().unwrap(),
            stats,
        )
    });
    let elapsed = start.elapsed();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        (
            stats.queued,
            stats.queue_dropped,
            stats.user_dropped,
            stats.id_sequence
        ),
        (0, 0, 0, n as u32),
        "{stats:?}"
    );
    let received = progress.received.load(Ordering::Acquire);
    let dropped = progress.dropped.load(Ordering::Acquire);
    assert_eq!((received, received + dropped), (expected_received, n));
    for mark in 1..=3u32 {
        let counted = ns.rule_packets(false, "filter", "INPUT", &format!("mark {mark}"));
        assert_eq!(counted, expected_marks[mark as usize], "mark {mark}");
    }
    assert_eq!(
        udp_checksum_errors(),
        0,
        "rewritten datagrams with a bad checksum"
    );
    drop(handle);
    drop(sender);
    let after = Usage::now();
    eprintln!(
        "soak: {n} packets in {elapsed:.1?} ({:.0}/s); {received} delivered, {dropped} dropped; \
         RSS {} KiB after warm-up, {} KiB at the end; fds {} before, {} at the end, {} after",
        n as f64 / elapsed.as_secs_f64(),
        warm.rss_kib,
        end.rss_kib,
        before.fds,
        end.fds,
        after.fds,
    );
    warm.assert_rss_within(&end, RSS_TOLERANCE_KIB, "soak");
    before.assert_same_fds(&after, "soak, after teardown");
}

#[test]
fn soak_through_the_threaded_pipeline() {
    // First, before anything opens a descriptor: see `usage::exclusive`.
    let _exclusive = usage::exclusive();
    let Some(ns) = support::enter!() else { return };
    let n = match std::env::var("NFQ_SOAK_PACKETS") {
        Ok(n) => n.parse().expect("NFQ_SOAK_PACKETS: a number of packets"),
        Err(_) => 1_000_000,
    };
    soak(&ns, n);
}

#[test]
fn rewritten_payload_has_a_valid_checksum() {
    // 127.0.0.1:40000 -> 127.0.0.1:9 "seq:12"; the UDP checksum field is left 0 here.
    let mut packet = vec![
        0x45, 0, 0, 34, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40, 0, 9,
        0, 14, 0, 0,
    ];
    packet.extend_from_slice(b"seq:12");
    let out = rewritten(&packet);
    assert_eq!(&out[28..], b"SEQ:12");
    assert_eq!(out.len(), packet.len());
    // Verifying: the sum over pseudo-header and segment, checksum included, folds to 0xffff.
    let pseudo = sum16(&out[12..20], 0) + 17 + 14;
    assert_eq!(fold(sum16(&out[20..], pseudo)), 0xffff);
}
