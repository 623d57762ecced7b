//! Resource safety: opening and closing handles, and binding and unbinding queues, 10^4 times
//! each, leave no file descriptor open and no memory behind (`VmRSS`, with a small tolerance
//! for allocator noise), and no queue bound in the kernel.

#[allow(unused_imports)]
mod support;
mod usage;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libnfq::{Handle, Pending, QueueConfig, QueueStats, Shutdown, Verdict};
use support::UdpSink;
use usage::Usage;

/// Measured cycles (after the warm-up).
const CYCLES: usize = 10_000;
/// Cycles before the first measurement: buffers, allocator arenas and caches reach their
/// steady state.
const WARM_UP: usize = 200;
/// Resident memory growth allowed over the measured cycles: allocator noise, measured at 0 to
/// 32 KiB. A deliberate leak of 200 bytes every other cycle (1 MiB in all) grew it by 992 KiB
/// and failed; a leaked file descriptor (a `Shutdown` forgotten every 16th cycle) failed the
/// descriptor count.
const RSS_TOLERANCE_KIB: u64 = 512;
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `cycle` [`WARM_UP`] times, measures, runs it [`CYCLES`] more times, measures again, and
/// asserts that neither file descriptors nor (beyond [`RSS_TOLERANCE_KIB`], about 50 bytes
/// per cycle) resident memory grew.
fn measure(what: &str, mut cycle: impl FnMut(usize)) {
    for i in 0..WARM_UP {
        cycle(i);
    }
    let before = Usage::now();
    let start = Instant::now();
    for i in WARM_UP..WARM_UP + CYCLES {
        cycle(i);
    }
    let after = Usage::now();
    eprintln!(
        "{what}: {CYCLES} cycles in {:.1?}; RSS {} -> {} KiB, fds {} -> {}",
        start.elapsed(),
        before.rss_kib,
        after.rss_kib,
        before.fds,
        after.fds
    );
    before.assert_same_fds(&after, what);
    before.assert_rss_within(&after, RSS_TOLERANCE_KIB, what);
}

/// Waits until no queue is bound in this thread's namespace (a socket closed here may live a
/// moment longer in a process forked meanwhile by another test, see the support module docs).
fn assert_no_queue_left() {
    assert!(
        support::wait_until(DEADLINE, || QueueStats::read_all().unwrap().is_empty()),
        "{:?}",
        QueueStats::read_all()
    );
}

/// Each cycle: a handle with two queues (one deferrable) whose callbacks own some state, a
/// verdict sender and a shutdown switch; the queues are released in turn by drop, by
/// `unbind`, and by leaking the `Queue` guard (the handle's close unbinds it then).
#[test]
fn handles_open_and_close_without_leaking() {
    // First, before anything opens a descriptor: see `usage::exclusive`.
    let _exclusive = usage::exclusive();
    let Some(_ns) = support::enter!() else { return };
    measure("open/close handles", |i| {
        let num = (i % 8) as u16;
        let handle = Handle::open().expect("open");
        let state = vec![i as u8; 256];
        let queue = handle
            .queue(num, QueueConfig::new(), move |_| {
                let _owned = &state;
                Verdict::accept()
            })
            .expect("bind");
        let deferrable = handle
            .queue_deferrable(num + 100, QueueConfig::new(), |p: Pending<'_>| p.accept())
            .expect("bind deferrable");
        let sender = handle.verdict_sender();
        let shutdown = Shutdown::new().expect("shutdown switch");
        match i % 3 {
            0 => drop(queue),
            1 => queue.unbind().expect("unbind"),
            _ => std::mem::forget(queue),
        }
        drop(deferrable);
        drop(handle);
        assert!(sender.is_closed());
        shutdown.trigger();
    });
    assert_no_queue_left();
}

/// Each cycle binds and unbinds a queue on one handle; every 16th cycle a packet goes through
/// the queue, and every 16th (another) one is left waiting when the queue is unbound.
#[test]
fn queues_bind_and_unbind_without_leaking() {
    // First, before anything opens a descriptor: see `usage::exclusive`.
    let _exclusive = usage::exclusive();
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 40;
    let sink = UdpSink::bind("127.0.0.1:0");
    let port = sink.port().to_string();
    ns.queue_udp_port(&port, "40");
    let seen = AtomicUsize::new(0);
    let handle = Handle::open().expect("open");
    handle
        .set_recv_timeout(Some(Duration::from_millis(50)))
        .expect("receive timeout");
    let mut delivered = 0;
    measure("bind/unbind queues", |i| {
        let queue = handle
            .queue(Q, QueueConfig::new(), |_| {
                seen.fetch_add(1, Ordering::Relaxed);
                Verdict::accept()
            })
            .expect("bind");
        match i % 16 {
            0 => {
                support::udp_send(sink.addr(), &[b"through"]);
                let start = Instant::now();
                let target = delivered + 1;
                while seen.load(Ordering::Relaxed) < target {
                    assert!(start.elapsed() < DEADLINE, "cycle {i}: no packet");
                    handle.process().expect("process");
                }
                delivered = target;
                assert_eq!(sink.recv_one(DEADLINE).as_deref(), Some(&b"through"[..]));
            }
            // Left waiting: the unbind drops it.
            1 => {
                support::udp_send(sink.addr(), &[b"waiting"]);
            }
            _ => {}
        }
        drop(queue);
    });
    assert_eq!(seen.load(Ordering::Relaxed), delivered);
    assert!(sink
        .recv_until_quiet(Duration::from_millis(300), 10)
        .is_empty());
    drop(handle);
    assert_no_queue_left();
}
