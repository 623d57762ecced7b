//! Deferred and cross-thread verdicts, verdict batches, range verdicts (explicit and
//! automatic), and the shutdown switch, against the real kernel.

mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{DeferredPacket, Error, Handle, Pending, QueueConfig, Verdict};
use support::{set_socket_buffer, Buffer, Netns, UdpSink};

const DEADLINE: Duration = Duration::from_secs(20);

/// UDP payload offset in an IPv4 packet copied from the network header.
fn udp_data(ip: &[u8]) -> &[u8] {
    let ihl = ip.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    ip.get(ihl + 8..).unwrap_or(&[])
}

/// The sequence number a test datagram carries (`seq:<n>`).
fn seq_of(data: &[u8]) -> Option<u64> {
    std::str::from_utf8(data.strip_prefix(b"seq:")?)
        .ok()?
        .parse()
        .ok()
}

/// A sink with a large receive buffer, read on its own thread until `quiet`.
fn spawn_sink(sink: UdpSink, quiet: Duration) -> thread::JoinHandle<BTreeSet<u64>> {
    set_socket_buffer(sink.socket(), Buffer::Receive, 32 << 20);
    thread::spawn(move || {
        let mut got = BTreeSet::new();
        for d in sink.recv_until_quiet(quiet, usize::MAX) {
            got.insert(seq_of(&d).expect("test datagram"));
        }
        got
    })
}

/// A UDP socket to send from, with a send buffer large enough for thousands of datagrams
/// waiting in a queue (a queued packet stays charged to its sending socket).
fn sender() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    set_socket_buffer(&sock, Buffer::Send, 64 << 20);
    sock
}

fn send_seq(sock: &UdpSocket, to: SocketAddr, seq: u64) {
    let data = format!("seq:{seq}");
    match sock.send_to(data.as_bytes(), to) {
        Ok(_) => {}
        // A datagram dropped in OUTPUT by a verdict can surface as EPERM on a later send.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        Err(e) => panic!("send: {e}"),
    }
}

/// Drives `handle` until `done()` or the deadline; transient errors are collected.
fn drive(handle: &Handle<'_>, mut done: impl FnMut() -> bool) -> Vec<Error> {
    handle
        .set_recv_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let start = Instant::now();
    let mut errors = Vec::new();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out driving the handle; errors: {errors:?}"
        );
        match handle.process() {
            Ok(_) => {}
            Err(e) if e.is_transient() => errors.push(e),
            Err(e) => panic!("process: {e}"),
        }
    }
    errors
}

/// The verdict the pipeline tests give packet `seq`: drop 1 in 5, mark 1 in 5 with 1..=3,
/// accept the rest. Deterministic, spread like random.
fn policy(seq: u64) -> Verdict {
    let h = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59;
    match h % 5 {
        0 => Verdict::drop(),
        1 => Verdict::accept().with_mark(1 + (h as u32 / 5) % 3),
        _ => Verdict::accept(),
    }
}

/// Sends `seq:0` .. `seq:n-1` to `to` in bursts of `burst`, each burst only once `seen`
/// shows the previous one reached the queue's callback (so the kernel queue never overflows).
fn send_paced(to: SocketAddr, n: u64, burst: u64, seen: &AtomicU64) {
    let sock = sender();
    for seq in 0..n {
        if seq % burst == 0 {
            let start = Instant::now();
            while seen.load(Ordering::Acquire) + burst < seq {
                assert!(
                    start.elapsed() < DEADLINE,
                    "the consumer stalled at {}",
                    seen.load(Ordering::Acquire)
                );
                thread::sleep(Duration::from_micros(200));
            }
        }
        send_seq(&sock, to, seq);
    }
}

/// Worker threads that take deferred packets from `pool`, decide them with `policy`, and
/// send the verdicts in batches; each counts what it decided into `decided`.
fn spawn_workers(
    count: usize,
    pool: mpsc::Receiver<DeferredPacket>,
    sender: &libnfq::VerdictSender,
    decided: &Arc<AtomicU64>,
) -> Vec<thread::JoinHandle<()>> {
    let pool = Arc::new(Mutex::new(pool));
    (0..count)
        .map(|_| {
            let pool = Arc::clone(&pool);
            let decided = Arc::clone(decided);
            let mut batch = sender.batch(32);
            thread::spawn(move || loop {
                let next = pool.lock().unwrap().recv_timeout(Duration::from_millis(5));
                match next {
                    Ok(packet) => {
                        let seq = seq_of(udp_data(packet.payload())).expect("test datagram");
                        batch.push(packet, policy(seq)).unwrap();
                        if batch.is_empty() {
                            decided.fetch_add(32, Ordering::AcqRel); // a full batch was sent
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let n = batch.len() as u64;
                        batch.flush().unwrap();
                        decided.fetch_add(n, Ordering::AcqRel);
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            })
        })
        .collect()
}

#[test]
fn threaded_pipeline_accounts_for_every_packet() {
    let Some(ns) = support::enter!() else { return };
    const N: u64 = 100_000;
    let sink = UdpSink::bind("127.0.0.1:0");
    let to = sink.addr();
    ns.queue_udp_port(to.port(), 3);
    for mark in ["1", "2", "3"] {
        ns.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "mark",
            "--mark",
            mark,
            "-m",
            "comment",
            "--comment",
            mark,
        ]);
    }
    let sink = spawn_sink(sink, Duration::from_secs(2));

    let seen = AtomicU64::new(0);
    let decided = Arc::new(AtomicU64::new(0));
    let (pool_tx, pool_rx) = mpsc::sync_channel::<DeferredPacket>(4096);
    let handle = Handle::open().unwrap();
    handle.set_recv_buffer_size(16 << 20).unwrap();
    let seen_ref = &seen;
    let queue = handle
        .queue_deferrable(
            3,
            QueueConfig::new().max_len(65536),
            move |pending: Pending<'_>| {
                let seen = seen_ref;
                seen.fetch_add(1, Ordering::AcqRel);
                let (packet, handled) = pending.defer();
                pool_tx.send(packet).expect("workers alive");
                handled
            },
        )
        .unwrap();
    let workers = spawn_workers(3, pool_rx, &handle.verdict_sender(), &decided);
    thread::scope(|s| {
        s.spawn(|| send_paced(to, N, 1000, &seen));
        let errors = drive(&handle, || decided.load(Ordering::Acquire) == N);
        assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    });
    let stats = ns.queue_stat(3).expect("queue 3 bound");
    assert_eq!(
        (stats.queued, stats.queue_dropped, stats.user_dropped),
        (0, 0, 0),
        "{stats:?}"
    );
    drop(queue); // frees the callback and with it the pool's sender: the workers stop
    for w in workers {
        w.join().unwrap();
    }

    let received = sink.join().unwrap();
    let expected: BTreeSet<u64> = (0..N)
        .filter(|&s| policy(s).action() != libnfq::Action::Drop)
        .collect();
    let missing: Vec<_> = expected.difference(&received).take(10).collect();
    let extra: Vec<_> = received.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, dropped but received {extra:?}"
    );
    for mark in 1..=3u32 {
        let want = (0..N).filter(|&s| policy(s).mark() == Some(mark)).count() as u64;
        assert_eq!(
            ns.rule_packets(false, "filter", "INPUT", &mark.to_string()),
            want,
            "mark {mark}"
        );
    }
}

/// Binds `queue` on `handle` with a callback that defers every packet into `held`.
fn hold_all<'h, 'cb>(
    handle: &'h Handle<'cb>,
    queue: u16,
    config: QueueConfig,
    held: &'cb Mutex<Vec<DeferredPacket>>,
) -> libnfq::Queue<'h, 'cb> {
    handle
        .queue_deferrable(queue, config, move |pending: Pending<'_>| {
            let (packet, handled) = pending.defer();
            held.lock().unwrap().push(packet);
            handled
        })
        .unwrap()
}

/// Sends `seq:0..n` to `to` (unpaced) and drives `handle` until `held` has `n` packets.
fn send_and_hold(handle: &Handle<'_>, to: SocketAddr, n: u64, held: &Mutex<Vec<DeferredPacket>>) {
    let sock = sender();
    for seq in 0..n {
        send_seq(&sock, to, seq);
    }
    let errors = drive(handle, || held.lock().unwrap().len() as u64 == n);
    assert!(errors.is_empty(), "{errors:?}");
}

fn queued(ns: &Netns, queue: u16) -> u32 {
    ns.queue_stat(queue).map_or(0, |s| s.queued)
}

#[test]
fn batch_flushes_by_count_and_explicitly() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 4);
    let held = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let _queue = hold_all(&handle, 4, QueueConfig::new(), &held);
    send_and_hold(&handle, sink.addr(), 5, &held);
    assert_eq!(queued(&ns, 4), 5);

    let mut packets = std::mem::take(&mut *held.lock().unwrap()).into_iter();
    let mut batch = handle.verdict_sender().batch(4);
    for _ in 0..3 {
        batch
            .push(packets.next().unwrap(), Verdict::accept())
            .unwrap();
    }
    assert_eq!(batch.len(), 3);
    assert_eq!(queued(&ns, 4), 5, "a batch below its count sends nothing");
    batch
        .push(packets.next().unwrap(), Verdict::accept())
        .unwrap();
    assert!(
        batch.is_empty(),
        "the fourth verdict fills the batch, which is sent"
    );
    assert_eq!(queued(&ns, 4), 1);
    batch
        .push(packets.next().unwrap(), Verdict::accept())
        .unwrap();
    assert_eq!(queued(&ns, 4), 1);
    batch.flush().unwrap();
    assert_eq!(queued(&ns, 4), 0, "flush sends the rest");
    let got: BTreeSet<u64> = sink
        .recv_until_quiet(Duration::from_millis(300), 10)
        .iter()
        .map(|d| seq_of(d).unwrap())
        .collect();
    assert_eq!(got, (0..5).collect());
}

#[test]
fn range_verdict_decides_every_packet_up_to_its_id() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 5);
    let held = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let _queue = hold_all(&handle, 5, QueueConfig::new(), &held);
    send_and_hold(&handle, sink.addr(), 6, &held);
    let packets = std::mem::take(&mut *held.lock().unwrap());
    let ids: Vec<u32> = packets.iter().map(DeferredPacket::id).collect();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());

    // Decide packets 1..=4 with one message: they leave the queue, 5 and 6 stay.
    handle
        .verdict_sender()
        .range_verdict(5, 4, &Verdict::accept())
        .unwrap();
    assert_eq!(queued(&ns, 5), 2);
    let with_payload = Verdict::accept().with_payload(vec![0; 20]).unwrap();
    assert!(matches!(
        handle.verdict_sender().range_verdict(5, 6, &with_payload),
        Err(Error::InvalidVerdict { .. })
    ));

    // Their own verdicts now name packets the kernel no longer has: the answer arrives on the
    // receiving side as UnknownPacket, and the loop goes on.
    let mut packets = packets.into_iter();
    packets.next().unwrap().accept().unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    match handle.process() {
        Err(Error::UnknownPacket { queue: 5, id: 1 }) => {}
        other => panic!("expected UnknownPacket for id 1, got {other:?}"),
    }
    for packet in packets.by_ref().take(3) {
        drop(packet); // fallback verdicts for ids 2..=4: also unknown now
    }
    let mut unknown = 0;
    while let Err(e) = handle.process() {
        assert!(matches!(e, Error::UnknownPacket { queue: 5, .. }), "{e}");
        unknown += 1;
    }
    assert_eq!(unknown, 3);
    for packet in packets {
        packet.verdict(Verdict::drop()).unwrap(); // 5 and 6: still queued, dropped now
    }
    assert_eq!(queued(&ns, 5), 0);
    let got: BTreeSet<u64> = sink
        .recv_until_quiet(Duration::from_millis(300), 10)
        .iter()
        .map(|d| seq_of(d).unwrap())
        .collect();
    assert_eq!(
        got,
        (0..4).collect(),
        "the range accepted seq 0..=3, the last two were dropped"
    );
}

#[test]
fn late_verdict_after_close_is_an_error() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 6);
    let held = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let queue = hold_all(&handle, 6, QueueConfig::new(), &held);
    send_and_hold(&handle, sink.addr(), 2, &held);
    let sender = handle.verdict_sender();
    assert!(!sender.is_closed());
    drop(queue);
    drop(handle);
    assert!(sender.is_closed());
    let mut packets = std::mem::take(&mut *held.lock().unwrap()).into_iter();
    assert!(matches!(
        packets.next().unwrap().accept(),
        Err(Error::HandleClosed)
    ));
    assert!(matches!(
        sender.range_verdict(6, 10, &Verdict::accept()),
        Err(Error::HandleClosed)
    ));
    drop(packets); // a late fallback verdict is silently impossible too: no panic, no UB
    assert!(sink
        .recv_until_quiet(Duration::from_millis(200), 10)
        .is_empty());
}

#[test]
fn deferred_packet_dropped_without_verdict_gets_the_fallback() {
    let Some(ns) = support::enter!() else { return };
    for (queue, fallback, arrives) in [(7u16, None, false), (8, Some(Verdict::accept()), true)] {
        let sink = UdpSink::bind("127.0.0.1:0");
        ns.queue_udp_port(sink.port(), queue);
        let held = Mutex::new(Vec::new());
        let handle = Handle::open().unwrap();
        let config = match fallback {
            Some(v) => QueueConfig::new().fallback(v),
            None => QueueConfig::new(), // default: drop
        };
        let _queue = hold_all(&handle, queue, config, &held);
        send_and_hold(&handle, sink.addr(), 3, &held);
        assert_eq!(queued(&ns, queue), 3);
        drop(std::mem::take(&mut *held.lock().unwrap()));
        assert_eq!(
            queued(&ns, queue),
            0,
            "queue {queue}: dropped packets were decided"
        );
        let got = sink.recv_until_quiet(Duration::from_millis(300), 10).len();
        assert_eq!(got, if arrives { 3 } else { 0 }, "queue {queue}");
    }
}

#[test]
fn automatic_range_verdicts_never_cover_deferred_packets() {
    let Some(ns) = support::enter!() else { return };
    const N: u64 = 3000;
    let sink = UdpSink::bind("127.0.0.1:0");
    let to = sink.addr();
    ns.queue_udp_port(to.port(), 9);
    let sink = spawn_sink(sink, Duration::from_millis(800));
    // Every 7th packet is deferred to a worker that drops it a little later; the rest are
    // decided at once: seq % 3 == 0 dropped, others accepted, which makes runs of both. Were a
    // range verdict to cover a deferred packet, it would accept it and the sink would get it.
    let (tx, rx) = mpsc::channel::<DeferredPacket>();
    let worker = thread::spawn(move || {
        for packet in rx {
            thread::sleep(Duration::from_micros(300));
            packet.verdict(Verdict::drop()).unwrap();
        }
    });
    let dispatched = AtomicU64::new(0);
    let handle = Handle::open().unwrap();
    handle.set_recv_buffer_size(8 << 20).unwrap();
    let counter = &dispatched;
    // `move`: the callback owns `tx`, so unbinding the queue ends the worker's loop.
    let queue = handle
        .queue_deferrable(
            9,
            QueueConfig::new().max_len(65536),
            move |pending: Pending<'_>| {
                counter.fetch_add(1, Ordering::Relaxed);
                let seq = seq_of(udp_data(pending.payload())).expect("test datagram");
                if seq % 7 == 0 {
                    let (packet, handled) = pending.defer();
                    tx.send(packet).unwrap();
                    handled
                } else if seq % 3 == 0 {
                    pending.verdict(Verdict::drop())
                } else {
                    pending.accept()
                }
            },
        )
        .unwrap();
    // A backlog first, so that each process call handles a full batch.
    let sock = sender();
    for seq in 0..N {
        send_seq(&sock, to, seq);
    }
    assert_eq!(queued(&ns, 9), N as u32);
    let errors = drive(&handle, || dispatched.load(Ordering::Relaxed) == N);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        support::wait_until(DEADLINE, || queued(&ns, 9) == 0),
        "packets left undecided"
    );
    drop(queue);
    worker.join().unwrap();
    let received = sink.join().unwrap();
    let expected: BTreeSet<u64> = (0..N).filter(|s| s % 7 != 0 && s % 3 != 0).collect();
    assert_eq!(received, expected);
}

#[test]
fn shutdown_ends_run_until_and_leaves_no_dispatched_packet_undecided() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    let to = sink.addr();
    ns.queue_udp_port(to.port(), 10);
    let shutdown = libnfq::Shutdown::new().unwrap();
    let seen = AtomicU64::new(0);
    let handle = Handle::open().unwrap();
    let queue = handle
        .queue(10, QueueConfig::new(), |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Verdict::accept()
        })
        .unwrap();
    let started = Instant::now();
    thread::scope(|s| {
        let stopper = shutdown.clone();
        s.spawn(move || {
            let sock = sender();
            for seq in 0..50 {
                send_seq(&sock, to, seq);
            }
            thread::sleep(Duration::from_millis(300));
            stopper.trigger();
        });
        handle.run_until(&shutdown).unwrap();
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "run_until did not return after the trigger"
    );
    assert!(shutdown.is_triggered());
    drop(queue);
    assert_eq!(seen.load(Ordering::Relaxed), 50);
    assert_eq!(
        sink.recv_until_quiet(Duration::from_millis(300), 100).len(),
        50
    );
    // Triggered before running: returns at once.
    let handle = Handle::open().unwrap();
    handle.run_until(&shutdown).unwrap();
}

#[test]
fn batching_and_range_verdicts_keep_packet_order() {
    let Some(ns) = support::enter!() else { return };
    const N: u64 = 500;
    let sink = UdpSink::bind("127.0.0.1:0");
    let to = sink.addr();
    ns.queue_udp_port(to.port(), 11);
    set_socket_buffer(sink.socket(), Buffer::Receive, 8 << 20);
    let seen = AtomicU64::new(0);
    let handle = Handle::open().unwrap();
    handle.set_recv_buffer_size(8 << 20).unwrap();
    // Every third packet gets a verdict that cannot join a range (a payload: the same bytes);
    // the others join range runs. A backlog first, so that each call handles a full batch.
    let _queue = handle
        .queue(11, QueueConfig::new(), |p| {
            seen.fetch_add(1, Ordering::Relaxed);
            let seq = seq_of(udp_data(p.payload())).expect("test datagram");
            if seq % 3 == 0 {
                Verdict::accept().with_payload(p.payload()).unwrap()
            } else {
                Verdict::accept()
            }
        })
        .unwrap();
    let sock = sender();
    for seq in 0..N {
        send_seq(&sock, to, seq);
    }
    let errors = drive(&handle, || seen.load(Ordering::Relaxed) == N);
    assert!(errors.is_empty(), "{errors:?}");
    let order: Vec<u64> = sink
        .recv_until_quiet(Duration::from_millis(300), N as usize)
        .iter()
        .map(|d| seq_of(d).unwrap())
        .collect();
    assert_eq!(
        order,
        (0..N).collect::<Vec<_>>(),
        "datagrams arrived out of order"
    );
}

#[test]
fn queue_balance_with_one_handle_per_thread_and_a_shared_shutdown() {
    let Some(ns) = support::enter!() else { return };
    // Flows to 64 loopback addresses, hashed by the kernel over queues 20 and 21.
    let sink = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    ns.iptables(&[
        "-A",
        "OUTPUT",
        "-p",
        "udp",
        "--dport",
        &port.to_string(),
        "-j",
        "NFQUEUE",
        "--queue-balance",
        "20:21",
    ]);
    let shutdown = libnfq::Shutdown::new().unwrap();
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let bound = AtomicU64::new(0);
    thread::scope(|s| {
        for (i, count) in counts.iter().enumerate() {
            let (shutdown, bound) = (&shutdown, &bound);
            s.spawn(move || {
                let handle = Handle::open().unwrap();
                let _queue = handle
                    .queue(20 + i as u16, QueueConfig::new(), |_| {
                        count.fetch_add(1, Ordering::Relaxed);
                        Verdict::accept()
                    })
                    .unwrap();
                bound.fetch_add(1, Ordering::Release);
                handle.run_until(shutdown).unwrap();
            });
        }
        assert!(support::wait_until(DEADLINE, || bound
            .load(Ordering::Acquire)
            == 2));
        let sock = sender();
        for host in 2..66u8 {
            let to: SocketAddr = (std::net::Ipv4Addr::new(127, 0, 0, host), port).into();
            send_seq(&sock, to, u64::from(host));
        }
        let total = || {
            counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
        };
        assert!(
            support::wait_until(DEADLINE, || total() == 64),
            "only {} packets seen",
            total()
        );
        shutdown.trigger(); // both threads return from run_until
    });
    let per_queue: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "the kernel used both queues: {per_queue:?}"
    );
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut received = 0;
    while sink.recv(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 64);
}

#[test]
fn batches_are_kept_to_half_the_shortest_queue() {
    let Some(ns) = support::enter!() else { return };
    // Packets held for a batch count against their queue's length. With a queue of 8 and 8
    // packets waiting, one `process` call takes at most 4 of them (and sends their verdicts)
    // before the next call takes the rest; on a queue without a set length, all 8 at once.
    for (queue, config, per_call) in [
        (13u16, QueueConfig::new().max_len(8), [4usize, 4]),
        (14, QueueConfig::new(), [8, 0]),
    ] {
        let sink = UdpSink::bind("127.0.0.1:0");
        ns.queue_udp_port(sink.port(), queue);
        let handle = Handle::open().unwrap();
        let _queue = handle.queue(queue, config, |_| Verdict::accept()).unwrap();
        let sock = sender();
        for seq in 0..8 {
            send_seq(&sock, sink.addr(), seq);
        }
        assert!(support::wait_until(DEADLINE, || queued(&ns, queue) == 8));
        handle
            .set_recv_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let calls = [handle.process().unwrap(), handle.process().unwrap()];
        assert_eq!(calls, per_call, "queue {queue}: packets per process call");
        assert_eq!(
            sink.recv_until_quiet(Duration::from_millis(300), 10).len(),
            8
        );
    }
}

#[test]
fn verdict_range_decides_up_to_its_packet_and_never_a_later_binding() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 7);
    let held = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let queue = hold_all(&handle, 7, QueueConfig::new(), &held);
    send_and_hold(&handle, sink.addr(), 4, &held);
    let mut packets = std::mem::take(&mut *held.lock().unwrap()).into_iter();
    let (first, second, third, fourth) = (
        packets.next().unwrap(),
        packets.next().unwrap(),
        packets.next().unwrap(),
        packets.next().unwrap(),
    );
    // Anchored on the third packet: ids 1..=3 accepted in one message.
    third.verdict_range(&Verdict::accept()).unwrap();
    assert_eq!(queued(&ns, 7), 1);
    // Decided by the range: their own (fallback) verdicts come back as unknown packets.
    drop((first, second));
    // The fourth stays deferred while its queue is unbound and bound again: its range verdict
    // is refused and cannot decide the new binding's packet 1.
    drop(queue);
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&accepted);
    let _again = handle
        .queue(7, QueueConfig::new(), move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Verdict::accept()
        })
        .unwrap();
    let sock = sender();
    send_seq(&sock, sink.addr(), 100);
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(
        fourth.verdict_range(&Verdict::drop()),
        Err(Error::StaleBinding { queue: 7, id: 4 })
    ));
    let errors = drive(&handle, || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, Error::UnknownPacket { queue: 7, .. })),
        "{errors:?}"
    );
    let got: BTreeSet<u64> = sink
        .recv_until_quiet(Duration::from_millis(300), 10)
        .iter()
        .map(|d| seq_of(d).unwrap())
        .collect();
    assert_eq!(got, [0, 1, 2, 100].into_iter().collect());
    assert_eq!(handle.counters().stale_discarded, 1);
    assert!(handle.counters().range_verdicts >= 1);
}
