//! Issue 10 through the dispatch path (feature `fuzzing`: `Handle::dispatch_for_fuzzing`):
//! - defect 6: a malformed `NFQA_TIMESTAMP` must not panic (`Packet::timestamp`, `defer`), and
//!   a deferral leaves the queue's bookkeeping consistent (range verdicts go on);
//! - defect 11: `dispatch_for_fuzzing` called from inside a callback is refused
//!   (`Error::Reentrant`) and leaves the outer pass's verdicts alone; and it never sends a
//!   verdict, even with a batch limit of 1 (a forged message for a really queued packet id must
//!   not release the real packet).
//!
//! Run with `cargo test --features fuzzing --test regressions_fuzzing`.
#![cfg(feature = "fuzzing")]

mod regress;
#[allow(unused_imports)]
mod support;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use libnfq::{sys, DeferredPacket, Error, Handle, Pending, QueueConfig, Verdict};
use regress::{open_handle, pump, queued, text_of, Flow};

/// An IPv4/UDP packet (checksums zero) carrying `data`, as NFQA_PAYLOAD holds it.
fn ipv4_udp(data: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + data.len();
    let mut p = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&9u16.to_be_bytes());
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

fn push_attr(body: &mut Vec<u8>, ty: u32, payload: &[u8]) {
    body.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    body.extend_from_slice(&(ty as u16).to_ne_bytes());
    body.extend_from_slice(payload);
    while body.len() % 4 != 0 {
        body.push(0);
    }
}

/// A packet message as the kernel sends it: queue `queue`, packet `id` (IPv4, hook OUTPUT),
/// an optional raw NFQA_TIMESTAMP, and a UDP payload `data`.
fn packet_message(queue: u16, id: u32, timestamp: Option<[u8; 16]>, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut hdr = id.to_be_bytes().to_vec();
    hdr.extend_from_slice(&0x0800u16.to_be_bytes());
    hdr.push(3);
    push_attr(&mut body, sys::NFQA_PACKET_HDR, &hdr);
    if let Some(ts) = timestamp {
        push_attr(&mut body, sys::NFQA_TIMESTAMP, &ts);
    }
    push_attr(&mut body, sys::NFQA_PAYLOAD, &ipv4_udp(data));
    let len = 16 + 4 + body.len();
    let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&[0; 10]); // flags, seq, portid
    msg.extend_from_slice(&[libc::AF_INET as u8, 0]);
    msg.extend_from_slice(&queue.to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// A timestamp whose seconds and microseconds overflow a `Duration` sum.
const BAD_TIMESTAMP: [u8; 16] = [0xff; 16];

// ---------------------------------------------------------------------------------------------
// Defect 6.

#[test]
fn malformed_timestamp_does_not_panic_a_callback() {
    let Some(_ns) = support::enter!() else { return };
    const Q: u16 = 90;
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push(format!("{:?}", p.timestamp()));
            Verdict::accept()
        })
        .unwrap();
    let msg = packet_message(Q, 7, Some(BAD_TIMESTAMP), b"bad timestamp");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle.dispatch_for_fuzzing(&msg)
    }));
    let result = outcome.unwrap_or_else(|p| {
        panic!(
            "dispatching a malformed timestamp panicked: {}",
            regress::panic_text(p.as_ref())
        )
    });
    let (dispatched, _errors) = result.expect("dispatch_for_fuzzing");
    assert_eq!(dispatched, 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "the callback ran to its end");
}

/// A deferrable queue defers packets whose text starts with "defer" and accepts the others.
/// A forged packet with a malformed timestamp is deferred (no panic), its `DeferredPacket`
/// readable and dropped; then three real packets in one pass must still be decided by one
/// range verdict (the deferral's bookkeeping was completed and undone).
#[test]
fn malformed_timestamp_does_not_panic_a_deferral() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 91;
    let flow = Flow::new(&ns, Q);
    let deferred: Mutex<Vec<DeferredPacket>> = Mutex::new(Vec::new());
    let accepted = AtomicUsize::new(0);
    let handle = open_handle();
    let _queue = handle
        .queue_deferrable(Q, QueueConfig::new(), |p: Pending<'_>| {
            if text_of(p.payload()).starts_with("defer") {
                let (packet, handled) = p.defer();
                deferred.lock().unwrap().push(packet);
                handled
            } else {
                accepted.fetch_add(1, Ordering::SeqCst);
                p.accept()
            }
        })
        .unwrap();
    let msg = packet_message(Q, 777, Some(BAD_TIMESTAMP), b"defer me");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle.dispatch_for_fuzzing(&msg)
    }));
    let result = outcome.unwrap_or_else(|p| {
        panic!(
            "deferring a packet with a malformed timestamp panicked: {}",
            regress::panic_text(p.as_ref())
        )
    });
    let (dispatched, _errors) = result.expect("dispatch_for_fuzzing");
    assert_eq!(dispatched, 1);
    let packet = regress::take(&deferred)
        .pop()
        .expect("the packet was deferred");
    let _ = format!("{:?} {:?}", packet.timestamp(), packet);
    drop(packet);

    let before = handle.counters();
    flow.send(&["real 1", "real 2", "real 3"]);
    // One pass: the three messages wait in the socket before process() is called.
    let _errors = pump(&handle, || accepted.load(Ordering::SeqCst) == 3);
    flow.expect(&["real 1", "real 2", "real 3"], "after the deferral");
    regress::assert_drained(&ns, Q, regress::DEADLINE, "after the deferral");
    let after = handle.counters();
    assert!(
        after.range_verdicts > before.range_verdicts,
        "three packets accepted in one pass with no deferred packet outstanding are decided \
         by a range verdict: before {before:?}, after {after:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 11.

thread_local! {
    /// The handle a callback re-enters (a `&Handle` is not `Send`, so the callback cannot
    /// capture it; callbacks run on the thread that calls `process`).
    static HANDLE: Cell<Option<&'static Handle<'static>>> = const { Cell::new(None) };
}

/// Three packets wait and are dispatched in one pass; the callback of the second calls
/// `dispatch_for_fuzzing`, which must be refused with `Reentrant` and leave the pass's
/// verdicts alone: all three are accepted.
#[test]
fn dispatch_for_fuzzing_inside_a_callback_is_refused() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 92;
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static INNER: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let flow = Flow::new(&ns, Q);
    // Leaked: the callback reaches it through a thread-local.
    let handle: &'static Handle<'static> = Box::leak(Box::new(open_handle()));
    HANDLE.with(|h| h.set(Some(handle)));
    let _queue = handle
        .queue(Q, QueueConfig::new(), |_| {
            if CALLS.fetch_add(1, Ordering::SeqCst) == 1 {
                let forged = packet_message(Q, 99, None, b"forged");
                let inner = HANDLE.with(|h| h.get().unwrap().dispatch_for_fuzzing(&forged));
                INNER.lock().unwrap().push(format!("{inner:?}"));
            }
            Verdict::accept()
        })
        .unwrap();
    flow.send(&["outer 1", "outer 2", "outer 3"]);
    assert_eq!(queued(&ns, Q), 3);
    let result = handle.process();
    let inner = INNER.lock().unwrap().clone();
    assert_eq!(
        inner,
        [format!("{:?}", Err::<(), Error>(Error::Reentrant))],
        "dispatch_for_fuzzing from a callback (process() returned {result:?})"
    );
    let _errors = pump(handle, || CALLS.load(Ordering::SeqCst) >= 3);
    flow.expect(
        &["outer 1", "outer 2", "outer 3"],
        "the outer pass's verdicts reach the kernel",
    );
    regress::assert_drained(&ns, Q, Duration::from_secs(2), "the outer pass");
}

/// With a batch limit of 1, a forged packet message for an id that really waits in the queue
/// is dispatched to the callback, which accepts it: the verdict must be discarded (the real
/// packet stays queued) until the real message is processed.
#[test]
fn dispatch_for_fuzzing_never_sends_a_verdict_with_batch_limit_one() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 93;
    let flow = Flow::new(&ns, Q);
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    handle.set_batch_limit(1);
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push((p.id(), text_of(p.payload())));
            Verdict::accept()
        })
        .unwrap();
    flow.send(&["real"]);
    let st = ns.queue_stat(Q).unwrap();
    assert_eq!((st.queued, st.id_sequence), (1, 1), "{st:?}");

    let forged = packet_message(Q, 1, None, b"forged");
    let (dispatched, _errors) = handle
        .dispatch_for_fuzzing(&forged)
        .expect("dispatch_for_fuzzing");
    assert_eq!(dispatched, 1);
    assert_eq!(*seen.lock().unwrap(), [(1, "forged".to_string())]);
    flow.expect(
        &[],
        "the forged message's verdict must not release the real packet",
    );
    assert_eq!(queued(&ns, Q), 1, "the real packet still waits");

    let _errors = pump(&handle, || seen.lock().unwrap().len() == 2);
    assert_eq!(seen.lock().unwrap()[1], (1, "real".to_string()));
    flow.expect(&["real"], "the real packet, by its own verdict");
    regress::assert_drained(&ns, Q, Duration::from_secs(2), "the real packet");
}
