//! The batching policy against the real kernel: when the verdicts of one `process` pass reach
//! the receiver of the accepted packets.
//!
//! Each test queues a numbered backlog of UDP datagrams (sent to 127.0.0.1, queued in `OUTPUT`)
//! before the handle runs, so that one pass dispatches them all; the callbacks busy-wait to
//! stand for a consumer's work and look at the receiving socket while they run. A datagram
//! that arrives while a later packet's callback is still running proves its verdict was sent
//! before that callback began; one that has not arrived proves it was not (a verdict's packet
//! reaches the socket within the sending system call, or soon after it, from the softirq).

// This file uses only part of what the support module re-exports.
#[allow(unused_imports)]
mod support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libnfq::{Handle, QueueConfig, Verdict};
use support::{udp_send_queued, UdpSink};

/// How long an expected datagram may take to arrive.
const DEADLINE: Duration = Duration::from_secs(5);

fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The sequence number of a datagram (its first 4 bytes), from a packet's IPv4+UDP bytes.
fn seq_of_packet(payload: &[u8]) -> u32 {
    let ihl = usize::from(payload[0] & 0x0f) * 4;
    let data = &payload[ihl + 8..];
    u32::from_be_bytes(data[..4].try_into().unwrap())
}

/// What arrived at the sink so far.
struct Arrivals {
    sock: UdpSocket,
    seen: BTreeSet<u32>,
}

impl Arrivals {
    fn new(sink: &UdpSink) -> Arrivals {
        let sock = sink.socket().try_clone().unwrap();
        sock.set_nonblocking(true).unwrap();
        Arrivals {
            sock,
            seen: BTreeSet::new(),
        }
    }

    /// Reads what is waiting, without waiting.
    fn poll(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    assert!(n >= 4);
                    self.seen
                        .insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("sink: {e}"),
            }
        }
    }

    fn has(&mut self, seq: u32) -> bool {
        self.poll();
        self.seen.contains(&seq)
    }

    /// Whether `seq` arrives within [`DEADLINE`] (called from a callback: the pass that would
    /// send its verdict later is blocked meanwhile).
    fn arrives(&mut self, seq: u32) -> bool {
        let start = Instant::now();
        while !self.has(seq) {
            if start.elapsed() > DEADLINE {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }
}

/// A sink whose datagrams the `OUTPUT` hook queues to `queue`.
fn sink(ns: &support::Netns, queue: u16) -> UdpSink {
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), queue);
    sink
}

/// Sends `count` datagrams numbered 0.. to `sink`: once the queue is bound, they wait for the
/// handle, in its socket.
fn backlog(sink: &UdpSink, count: u32) {
    let payloads: Vec<[u8; 4]> = (0..count).map(u32::to_be_bytes).collect();
    udp_send_queued(sink.addr(), &payloads);
}

/// Within the head of a pass: the first verdict leaves at once (packet 0 reaches the receiver
/// while packet 1's callback runs), and a later one is held, but not longer than the time limit.
#[test]
fn the_first_verdict_leaves_at_once_and_later_ones_within_the_time_limit() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 3;
    let sink = sink(&ns, Q);
    let arrivals = Mutex::new(Arrivals::new(&sink));
    // What the callbacks saw: (packet, datagram looked for, arrived).
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    // With 1 ms callbacks, packet 1's verdict is due once packet 3 has been decided.
    handle.set_batch_time_limit(Duration::from_millis(2));
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            let seq = seq_of_packet(p.payload());
            let mut arrivals = arrivals.lock().unwrap();
            match seq {
                1 => seen.lock().unwrap().push((1, 0, arrivals.arrives(0))),
                2 => seen.lock().unwrap().push((2, 1, arrivals.has(1))),
                5 => seen.lock().unwrap().push((5, 1, arrivals.arrives(1))),
                _ => {}
            }
            drop(arrivals);
            spin(Duration::from_millis(1));
            Verdict::accept()
        })
        .unwrap();
    backlog(&sink, 20);
    assert_eq!(handle.process().unwrap(), 20, "one pass takes the backlog");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, 0, true),  // the first verdict was sent at once
            (2, 1, false), // packet 1's verdict was held (1 ms < the 2 ms limit)...
            (5, 1, true),  // ...and sent once it had waited the limit
        ]
    );
    let mut arrivals = arrivals.lock().unwrap();
    assert!(
        arrivals.arrives(19),
        "the pass ends by sending every verdict"
    );
    assert_eq!(arrivals.seen, (0..20).collect());
}

/// Past the first 64 packets of a pass (a backlog), a verdict may wait 8 times the time limit
/// before it is sent, and no longer.
#[test]
fn past_the_head_of_a_pass_verdicts_wait_eight_times_the_limit() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 4;
    const LIMIT: Duration = Duration::from_millis(10);
    let sink = sink(&ns, Q);
    let arrivals = Mutex::new(Arrivals::new(&sink));
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    handle.set_batch_time_limit(LIMIT);
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            let seq = seq_of_packet(p.payload());
            let mut arrivals = arrivals.lock().unwrap();
            match seq {
                // 3 ms callbacks from packet 64 on: by packet 70, packet 65's verdict has waited
                // at least 12 ms, beyond the limit (10 ms) but well within 8 times it (80 ms).
                70 => seen.lock().unwrap().push((70, 65, arrivals.has(65))),
                // By packet 99 it has waited about 100 ms: it was sent.
                99 => seen.lock().unwrap().push((99, 65, arrivals.arrives(65))),
                _ => {}
            }
            drop(arrivals);
            if seq >= 64 {
                spin(Duration::from_millis(3));
            }
            Verdict::accept()
        })
        .unwrap();
    backlog(&sink, 100);
    assert_eq!(handle.process().unwrap(), 100, "one pass takes the backlog");
    assert_eq!(*seen.lock().unwrap(), [(70, 65, false), (99, 65, true)]);
    let mut arrivals = arrivals.lock().unwrap();
    assert!(arrivals.arrives(99));
    assert_eq!(arrivals.seen, (0..100).collect());
}

/// A pass stopped by the batch limit leaves its backlog to the next one, which sends no verdict
/// at once and holds verdicts up to 8 times the limit from its start; once a pass found the
/// socket empty, the next packet starts a new head (its verdict leaves at once).
#[test]
fn a_pass_stopped_by_the_batch_limit_leaves_the_backlog_to_the_next() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 5;
    let sink = sink(&ns, Q);
    let arrivals = Mutex::new(Arrivals::new(&sink));
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    handle.set_batch_limit(20);
    handle.set_batch_time_limit(Duration::from_millis(10));
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            let seq = seq_of_packet(p.payload());
            let mut arrivals = arrivals.lock().unwrap();
            let mut seen = seen.lock().unwrap();
            match seq {
                // Second pass: packet 20 is not a head; with 3 ms callbacks, by packet 25 its
                // verdict has waited 15 ms, beyond the limit (10 ms), within the backlog budget
                // (80 ms).
                21 => seen.push((21, 20, arrivals.has(20))),
                25 => seen.push((25, 20, arrivals.has(20))),
                // Third pass: the second one ended by sending every verdict.
                40 => seen.push((40, 39, arrivals.arrives(39))),
                // Fourth pass, after the socket was found empty: a new head.
                51 => seen.push((51, 50, arrivals.arrives(50))),
                _ => {}
            }
            drop((arrivals, seen));
            spin(Duration::from_millis(3));
            Verdict::accept()
        })
        .unwrap();
    backlog(&sink, 50);
    assert_eq!(handle.process().unwrap(), 20);
    assert_eq!(handle.process().unwrap(), 20);
    assert_eq!(
        handle.process().unwrap(),
        10,
        "the third pass empties the socket"
    );
    let payloads: Vec<[u8; 4]> = (50..53u32).map(u32::to_be_bytes).collect();
    udp_send_queued(sink.addr(), &payloads);
    assert_eq!(handle.process().unwrap(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (21, 20, false),
            (25, 20, false),
            (40, 39, true),
            (51, 50, true)
        ]
    );
    let mut arrivals = arrivals.lock().unwrap();
    assert!(arrivals.arrives(52));
    assert_eq!(arrivals.seen, (0..53).collect());
}

/// A time limit of zero sends each verdict right after its callback, while the pass still
/// receives up to the batch limit: packet k reaches the receiver while packet k+1's callback
/// runs.
#[test]
fn a_zero_time_limit_sends_each_verdict_after_its_callback() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 6;
    let sink = sink(&ns, Q);
    let arrivals = Mutex::new(Arrivals::new(&sink));
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    handle.set_batch_time_limit(Duration::ZERO);
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            let seq = seq_of_packet(p.payload());
            if seq > 0 {
                let mut arrivals = arrivals.lock().unwrap();
                seen.lock().unwrap().push(arrivals.arrives(seq - 1));
            }
            Verdict::accept()
        })
        .unwrap();
    backlog(&sink, 10);
    assert_eq!(handle.process().unwrap(), 10, "one pass takes the backlog");
    assert_eq!(*seen.lock().unwrap(), [true; 9]);
}
