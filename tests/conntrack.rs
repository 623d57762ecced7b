//! Connection marks in verdicts (`Verdict::with_conntrack_mark`), against the real kernel.

#[allow(unused_imports)]
mod support;

use std::sync::Mutex;
use std::time::Duration;

use libnfq::{Error, Handle, Pending, QueueConfig, Verdict};
use support::UdpSink;

/// Sends one datagram through queue `num` and decides it with `verdict`; returns what
/// `process` reported and whether the datagram arrived.
fn one_packet(
    ns: &support::Netns,
    num: u16,
    config: QueueConfig,
    verdict: Verdict,
) -> (Vec<Error>, bool) {
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), num);
    let handle = Handle::open().unwrap();
    let _queue = handle.queue(num, config, move |_| verdict.clone()).unwrap();
    support::udp_send(sink.addr(), &[b"ct"]);
    handle
        .set_recv_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..5 {
        if let Err(e) = handle.process() {
            errors.push(e);
        }
    }
    let arrived = sink.recv_one(Duration::from_millis(300)).is_some();
    (errors, arrived)
}

#[test]
fn connection_mark_on_a_queue_without_conntrack_is_refused() {
    let Some(ns) = support::enter!() else { return };
    let verdict = Verdict::accept().with_conntrack_mark(7);
    assert_eq!(verdict.conntrack_mark(), Some(7));

    // Default fallback (drop): refused, reported, and the packet does not pass.
    let (errors, arrived) = one_packet(&ns, 1, QueueConfig::new(), verdict.clone());
    assert!(
        matches!(errors[..], [Error::InvalidVerdict { .. }]),
        "{errors:?}"
    );
    assert!(errors[0].is_transient());
    assert!(errors[0].to_string().contains("CONNTRACK"), "{}", errors[0]);
    assert!(!arrived, "the refused verdict's fallback (drop) applied");

    // With an accepting fallback it passes, without the connection mark.
    let config = QueueConfig::new().fallback(Verdict::accept().with_conntrack_mark(9));
    assert_eq!(
        config.get_fallback().conntrack_mark(),
        None,
        "a fallback carries no connection mark"
    );
    let (errors, arrived) = one_packet(&ns, 2, config, verdict);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(arrived);
}

#[test]
fn connection_mark_from_a_deferred_packet_is_refused_too() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), "3");
    let held = Mutex::new(Vec::new());
    let handle = Handle::open().unwrap();
    let _queue = handle
        .queue_deferrable(
            3,
            QueueConfig::new().fallback(Verdict::accept()),
            |pending: Pending<'_>| {
                let (packet, handled) = pending.defer();
                held.lock().unwrap().push(packet);
                handled
            },
        )
        .unwrap();
    support::udp_send(sink.addr(), &[b"one", b"two"]);
    handle
        .set_recv_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(support::wait_until(Duration::from_secs(10), || {
        handle.process().unwrap();
        held.lock().unwrap().len() == 2
    }));
    let mut packets = std::mem::take(&mut *held.lock().unwrap()).into_iter();
    let refused = packets
        .next()
        .unwrap()
        .verdict(Verdict::drop().with_conntrack_mark(1));
    assert!(
        matches!(refused, Err(Error::InvalidVerdict { .. })),
        "{refused:?}"
    );
    let mut batch = handle.verdict_sender().batch(8);
    let refused = batch.push(
        packets.next().unwrap(),
        Verdict::drop().with_conntrack_mark(1),
    );
    assert!(
        matches!(refused, Err(Error::InvalidVerdict { .. })),
        "{refused:?}"
    );
    batch.flush().unwrap();
    // Both got the fallback (accept), not the refused drop.
    assert_eq!(
        sink.recv_until_quiet(Duration::from_millis(300), 10).len(),
        2
    );
}
