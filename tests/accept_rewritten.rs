//! `Verdict::accept_rewritten` and `Verdict::accept_with` against the real kernel: UDP
//! datagrams queued in `OUTPUT` over loopback are rewritten by one expression in the callback
//! and arrive rewritten (so with right checksums: the receiving stack drops anything else);
//! unchanged ones go out as plain accepts; a rewrite that fails gives the packet its queue's
//! fallback verdict.
//!
//! Every test runs in its own network namespace (`support::enter!()`).

#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use libnfq::pkt::PktError;
use libnfq::{CopyMode, Error, Handle, QueueConfig, Verdict};
use support::{udp_send, Log, Netns, UdpSink};

const DEADLINE: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(50);

/// `iptables -A OUTPUT -p udp --dport <port> -j NFQUEUE --queue-num 0`.
fn queue_output(ns: &Netns, port: u16) {
    let port = port.to_string();
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
        "0",
    ]);
}

/// Sends `sent` while driving `handle` until `expected` callbacks ran and the queue stayed quiet
/// for [`QUIET`]; returns the errors `process` reported.
fn drive(handle: &Handle<'_>, sink: &UdpSink, sent: &[&[u8]], calls: &Log<()>) -> Vec<Error> {
    handle.set_recv_timeout(Some(POLL)).expect("recv timeout");
    let mut errors = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| udp_send(sink.addr(), sent));
        let deadline = Instant::now() + DEADLINE;
        let mut last = Instant::now();
        while Instant::now() < deadline
            && (calls.items().len() < sent.len() || last.elapsed() < QUIET)
        {
            match handle.process() {
                Ok(0) => {}
                Ok(_) => last = Instant::now(),
                Err(e) => {
                    errors.push(e);
                    last = Instant::now();
                }
            }
        }
    });
    assert_eq!(calls.items().len(), sent.len(), "callbacks run");
    errors
}

fn received(sink: &UdpSink, expected: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < expected {
        match sink.recv_one(DEADLINE) {
            Some(datagram) => got.push(datagram),
            None => break,
        }
    }
    got.extend(sink.recv_until_quiet(QUIET, 64));
    got
}

/// "cat" → "tiger" in one expression: the rewritten datagram arrives with its new length (so
/// with right checksums and lengths), the one without a match arrives as sent, and only the
/// rewritten one carried a payload in its verdict.
#[test]
fn rewrite_and_accept_in_one_expression() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    queue_output(&ns, sink.port());
    let calls = Log::new();
    let payloads = Log::new();
    let handle = Handle::open().expect("open");
    let _queue = handle
        .queue(0, QueueConfig::new(), |packet| {
            let verdict = Verdict::accept_rewritten(packet, |buf| {
                buf.replace_all(b"cat", b"tiger")?;
                Ok(())
            })
            .with_mark(7);
            calls.push(());
            payloads.push((
                verdict.payload().map(<[u8]>::len),
                verdict.refusal().is_some(),
            ));
            verdict
        })
        .expect("bind queue 0");
    let sent: [&[u8]; 3] = [b"a cat and a cat", b"no felines here", b"cat"];
    let errors = drive(&handle, &sink, &sent, &calls);
    assert!(errors.is_empty(), "{errors:?}");
    let got = received(&sink, sent.len());
    let want: [&[u8]; 3] = [b"a tiger and a tiger", b"no felines here", b"tiger"];
    assert_eq!(got, want.map(<[u8]>::to_vec));
    // IPv4 (20) + UDP (8) + the new datagram; the unchanged one is a plain accept.
    assert_eq!(
        payloads.items(),
        vec![(Some(28 + 19), false), (None, false), (Some(28 + 5), false)]
    );
}

/// A copy cut short by the copy range cannot be rewritten (`PktError::Truncated`): the verdict
/// says so at once, and the packet gets the queue's default fallback, drop: nothing arrives.
#[test]
fn a_failed_rewrite_is_dropped_by_the_default_fallback() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    queue_output(&ns, sink.port());
    let calls = Log::new();
    let refusals = Log::new();
    let handle = Handle::open().expect("open");
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(40));
    let _queue = handle
        .queue(0, config, |packet| {
            let verdict = Verdict::accept_rewritten(packet, |buf| {
                buf.replace_all(b"cat", b"tiger")?;
                Ok(())
            });
            calls.push(());
            // The refusal as text (`Error` is not `Clone`), checked below.
            refusals.push(verdict.refusal().map(|e| {
                let truncated = matches!(e, Error::Packet(PktError::Truncated { .. }));
                (truncated, e.to_string())
            }));
            verdict
        })
        .expect("bind queue 0");
    let long = b"a long datagram whose cat is past the copy range";
    let sent: [&[u8]; 2] = [long, b"0123456789abcdefghij"];
    drive(&handle, &sink, &sent, &calls);
    assert_eq!(received(&sink, 0), Vec::<Vec<u8>>::new());
    let refusals = refusals.items();
    assert_eq!(refusals.len(), 2);
    assert!(
        refusals.iter().all(|r| matches!(r, Some((true, _)))),
        "{refusals:?}"
    );
}

/// With `fallback(Verdict::accept())`, a rewrite that fails lets the packet through unchanged,
/// `process` reports why, and the handle counts a refused verdict.
#[test]
fn a_failed_rewrite_gets_the_queues_fallback() {
    let Some(ns) = support::enter!() else { return };
    let sink = UdpSink::bind("127.0.0.1:0");
    queue_output(&ns, sink.port());
    let calls = Log::new();
    let handle = Handle::open().expect("open");
    let config = QueueConfig::new()
        .copy_mode(CopyMode::Packet(40))
        .fallback(Verdict::accept());
    let _queue = handle
        .queue(0, config, |packet| {
            calls.push(());
            Verdict::accept_rewritten(packet, |buf| {
                buf.replace_all(b"cat", b"tiger")?;
                Ok(())
            })
        })
        .expect("bind queue 0");
    let long: &[u8] = b"a long datagram whose cat is past the copy range";
    let errors = drive(&handle, &sink, &[long], &calls);
    assert_eq!(received(&sink, 1), vec![long.to_vec()]);
    assert_eq!(handle.counters().fallback_refused, 1);
    assert!(
        matches!(
            errors.as_slice(),
            [Error::Packet(PktError::Truncated { .. })]
        ),
        "{errors:?}"
    );
}
