//! Issue 10 through the dispatch path (feature `fuzzing`: `Handle::dispatch_for_fuzzing`, which
//! dispatches to queues registered with `Handle::register_for_fuzzing`):
//! - defect 6: a malformed `NFQA_TIMESTAMP` must not panic (`Packet::timestamp`, `defer`), and
//!   a deferral leaves the queue's bookkeeping whole;
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

/// Dispatches `msg`, failing with the panic's text if dispatching panics.
fn dispatch_without_panic(handle: &Handle<'_>, msg: &[u8], what: &str) -> (usize, Vec<Error>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle.dispatch_for_fuzzing(msg)
    }));
    let result = outcome.unwrap_or_else(|p| {
        panic!(
            "{what}: dispatching a malformed timestamp panicked: {}",
            regress::panic_text(p.as_ref())
        )
    });
    result.unwrap_or_else(|e| panic!("{what}: dispatch_for_fuzzing: {e:?}"))
}

#[test]
fn malformed_timestamp_does_not_panic_a_callback() {
    const Q: u16 = 90;
    let seen = Mutex::new(Vec::new());
    let handle = Handle::open().expect("open");
    handle
        .register_for_fuzzing(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push(format!("{:?}", p.timestamp()));
            Verdict::accept()
        })
        .expect("register");
    let msg = packet_message(Q, 7, Some(BAD_TIMESTAMP), b"bad timestamp");
    let (dispatched, _errors) = dispatch_without_panic(&handle, &msg, "plain callback");
    assert_eq!(dispatched, 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "the callback ran to its end");
}

/// A deferrable callback defers a packet with a malformed timestamp: no panic, the
/// `DeferredPacket` is readable, and the queue's bookkeeping is whole (the next packet of the
/// same queue is dispatched and deferred too; a fuzzing queue's deferred packets send nothing:
/// their verdicts are refused).
#[test]
fn malformed_timestamp_does_not_panic_a_deferral() {
    const Q: u16 = 91;
    let deferred: Mutex<Vec<DeferredPacket>> = Mutex::new(Vec::new());
    let handle = Handle::open().expect("open");
    handle
        .register_deferrable_for_fuzzing(Q, QueueConfig::new(), |p: Pending<'_>| {
            let (packet, handled) = p.defer();
            deferred.lock().unwrap().push(packet);
            handled
        })
        .expect("register");
    let msg = packet_message(Q, 777, Some(BAD_TIMESTAMP), b"defer me");
    let (dispatched, _errors) = dispatch_without_panic(&handle, &msg, "deferral");
    assert_eq!(dispatched, 1);
    let msg = packet_message(Q, 778, None, b"defer me too");
    let (dispatched, _errors) = dispatch_without_panic(&handle, &msg, "the next deferral");
    assert_eq!(dispatched, 1);
    let packets = regress::take(&deferred);
    assert_eq!(
        packets.iter().map(|p| p.id()).collect::<Vec<_>>(),
        [777, 778]
    );
    for packet in packets {
        let _ = format!("{:?} {:?}", packet.timestamp(), packet);
        let id = packet.id();
        let result = packet.accept();
        assert!(
            matches!(result, Err(Error::StaleBinding { queue: Q, id: i }) if i == id),
            "a fuzzing queue's deferred packet sends nothing: {result:?}"
        );
    }
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

/// With a batch limit of 1, a forged packet message for an id that really waits in a bound
/// queue, next to one for a queue registered for fuzzing whose callback accepts it: neither may
/// send a verdict (the real packet stays queued until the real message is processed, and no
/// answer about a verdict for the fuzzing queue comes back).
#[test]
fn dispatch_for_fuzzing_never_sends_a_verdict_with_batch_limit_one() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 93;
    const FUZZ: u16 = 94;
    let flow = Flow::new(&ns, Q);
    let seen = Mutex::new(Vec::new());
    let fuzz_seen = Mutex::new(Vec::new());
    let handle = open_handle();
    handle.set_batch_limit(1);
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push((p.id(), text_of(p.payload())));
            Verdict::accept()
        })
        .unwrap();
    handle
        .register_for_fuzzing(FUZZ, QueueConfig::new(), |p| {
            fuzz_seen
                .lock()
                .unwrap()
                .push((p.id(), text_of(p.payload())));
            Verdict::accept()
        })
        .expect("register");
    flow.send(&["real"]);
    let st = ns.queue_stat(Q).unwrap();
    assert_eq!((st.queued, st.id_sequence), (1, 1), "{st:?}");

    let before = handle.counters();
    let mut datagram = packet_message(Q, 1, None, b"forged");
    datagram.extend(packet_message(FUZZ, 1, None, b"fuzz"));
    let (dispatched, errors) = handle
        .dispatch_for_fuzzing(&datagram)
        .expect("dispatch_for_fuzzing");
    assert_eq!(
        (dispatched, errors.len()),
        (1, 0),
        "only the fuzzing queue's packet is dispatched: {errors:?}"
    );
    assert_eq!(*fuzz_seen.lock().unwrap(), [(1, "fuzz".to_string())]);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the bound queue's callback saw a forged packet"
    );
    flow.expect(&[], "the forged message must not release the real packet");
    assert_eq!(queued(&ns, Q), 1, "the real packet still waits");
    let after = handle.counters();
    assert_eq!(
        (after.verdicts, after.range_verdicts),
        (before.verdicts, before.range_verdicts),
        "no verdict sent: {before:?} -> {after:?}"
    );

    let errors = pump(&handle, || seen.lock().unwrap().len() == 1);
    assert_eq!(*seen.lock().unwrap(), [(1, "real".to_string())]);
    flow.expect(&["real"], "the real packet, by its own verdict");
    regress::assert_drained(&ns, Q, Duration::from_secs(2), "the real packet");
    // A verdict for the unbound fuzzing queue would come back as QueueNotBound.
    let mut errors = errors;
    errors.extend(regress::settle(&handle, Duration::from_millis(200)));
    assert!(errors.is_empty(), "late errors: {errors:?}");
}
