//! `QueueStats` against the kernel: what it reads for a bound queue (checked against the test
//! support's own, independent parser of the same file), and that it reads the calling
//! thread's network namespace, where `/proc/net` would show another one.

#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use libnfq::{CopyMode, Handle, QueueConfig, QueueStats, Verdict};
use support::UdpSink;

const DEADLINE: Duration = Duration::from_secs(10);

/// The support module's reading of the same line, field by field.
fn fields(s: &QueueStats) -> [u64; 8] {
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

fn support_fields(s: &support::QueueStats) -> [u64; 8] {
    [
        s.queue_num.into(),
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
fn reads_what_the_kernel_reports_for_a_bound_queue() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 12;
    assert_eq!(QueueStats::read_all().unwrap(), vec![]);
    let sink = UdpSink::bind("127.0.0.1:0");
    let port = sink.port().to_string();
    ns.queue_udp_port(&port, "12");
    let handle = Handle::open().unwrap();
    handle
        .set_recv_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(128));
    let queue = handle.queue(Q, config, |_| Verdict::accept()).unwrap();
    let _meta = handle
        .queue(Q + 1, QueueConfig::new().copy_mode(CopyMode::Meta), |_| {
            Verdict::accept()
        })
        .unwrap();

    let st = QueueStats::for_queue(Q).unwrap().expect("queue listed");
    assert_eq!(
        (st.queue, st.portid, st.queued, st.copy_mode, st.copy_range),
        (Q, handle.portid(), 0, 2, 128),
        "{st:?}"
    );
    assert_eq!(st.mode().unwrap(), CopyMode::Packet(128));
    assert_eq!(
        (st.queue_dropped, st.user_dropped, st.id_sequence),
        (0, 0, 0)
    );
    let meta = QueueStats::for_queue(Q + 1).unwrap().expect("queue listed");
    assert_eq!((meta.mode().unwrap(), meta.copy_range), (CopyMode::Meta, 0));
    // Copy mode none reads back as a plain `CopyMode::None`, not as "no mode".
    let none = handle
        .queue(Q + 3, QueueConfig::new().copy_mode(CopyMode::None), |_| {
            Verdict::accept()
        })
        .unwrap();
    let st_none = QueueStats::for_queue(Q + 3).unwrap().expect("queue listed");
    assert_eq!(
        (st_none.copy_mode, st_none.mode().unwrap()),
        (0, CopyMode::None)
    );
    drop(none);

    support::udp_send(sink.addr(), &[b"one", b"two", b"three"]);
    let st = QueueStats::for_queue(Q).unwrap().unwrap();
    assert_eq!((st.queued, st.id_sequence), (3, 3), "{st:?}");
    // Both parsers read the same file the same way.
    let ours: Vec<_> = QueueStats::read_all().unwrap().iter().map(fields).collect();
    let theirs: Vec<_> = ns.queue_stats().iter().map(support_fields).collect();
    assert_eq!(ours, theirs);

    let start = Instant::now();
    let mut handled = 0;
    while handled < 3 {
        assert!(start.elapsed() < DEADLINE, "{handled} of 3 packets handled");
        handled += handle.process().unwrap();
    }
    let st = QueueStats::for_queue(Q).unwrap().unwrap();
    assert_eq!((st.queued, st.id_sequence), (0, 3), "{st:?}");

    assert_eq!(QueueStats::for_queue(Q + 2).unwrap(), None);
    drop(queue); // the unbind is acknowledged before drop returns
    assert_eq!(QueueStats::for_queue(Q).unwrap(), None);
    assert!(QueueStats::for_queue(Q + 1).unwrap().is_some());
}

/// A thread with a network namespace of its own sees its own queues, and `/proc/net` (the
/// main thread's namespace) does not show them: why `read_all` reads `/proc/thread-self/net`.
#[test]
fn reads_the_calling_threads_namespace_not_the_processs() {
    let Some(_ns) = support::enter!() else { return };
    const Q: u16 = 5;
    let handle = Handle::open().unwrap();
    let _queue = handle
        .queue(Q, QueueConfig::new(), |_| Verdict::accept())
        .unwrap();
    let name = support::test_name!();
    let outer = handle.portid();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inner_ns = support::netns(&name).expect("a second namespace");
            assert_eq!(QueueStats::read_all().unwrap(), vec![], "a fresh namespace");
            let handle = Handle::open().unwrap();
            // The same number is free here: queues are per namespace.
            let _queue = handle
                .queue(Q, QueueConfig::new(), |_| Verdict::accept())
                .unwrap();
            let inner = handle.portid();
            assert_eq!(QueueStats::for_queue(Q).unwrap().unwrap().portid, inner);
            // `/proc/self/net` follows the main thread, which never is in this namespace. It
            // may be unreadable there (a namespace of another user namespace's root).
            if let Ok(text) = std::fs::read_to_string("/proc/self/net/netfilter/nfnetlink_queue") {
                let process_view = QueueStats::parse(&text).unwrap();
                assert!(
                    !process_view
                        .iter()
                        .any(|st| st.queue == Q && st.portid == inner),
                    "{process_view:?}"
                );
            }
        });
    });
    assert_eq!(QueueStats::for_queue(Q).unwrap().unwrap().portid, outer);
}
