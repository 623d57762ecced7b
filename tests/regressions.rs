//! Regression tests of issue 10 against the real kernel, each observed as a user would: what
//! reaches the receiver, what `/proc/.../nfnetlink_queue` says, which typed error a call
//! returned, and that a call returned promptly.
//!
//! - defect 2: a packet message too large for `set_buffer_size` gets its queue's fallback;
//! - defect 3: a bind whose acknowledgement is lost leaves no orphaned queue;
//! - defect 4: dropping a `Queue` inside its own callback keeps the verdicts decided before, and
//!   a panic after the drop is resumed;
//! - defects 7 and 8: huge or tiny settings (`Duration::MAX`, `usize::MAX`, 500 ns);
//! - defect 10: `max_len(0)` and replacement payloads shorter than the transport header offset
//!   are refused with typed errors;
//! - defect 12: dropping a `Queue` of a flooded socket does not wait for the ack timeout;
//! - issue 11: the README quick start keeps running through an unpaced blast.
//!
//! Defect 1 is in `regressions_rebind.rs`, defect 5 in `regressions_tls.rs`, defect 9 and the
//! AsyncHandle routes of defect 1 in `regressions_tokio.rs`, defects 6 and 11 (dispatch path,
//! feature `fuzzing`) in `regressions_fuzzing.rs`.

mod regress;
#[allow(unused_imports)]
mod support;

use std::cell::RefCell;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{sys, Error, Handle, Queue, QueueConfig, Shutdown, Verdict};
use regress::{
    assert_drained, count, hold_all, open_handle, pump, queued, settle, take, text_of, Flow,
    DEADLINE,
};
use support::{set_socket_buffer, Buffer, Netns};

/// "Promptly": far below the default acknowledgement timeout (5 s), far above what the
/// operations take (milliseconds), so that a loaded machine does not fail the test.
const PROMPT: Duration = Duration::from_millis(1500);

/// A callback that records the UDP text of each packet in `log` and accepts it.
fn recorder(log: &Mutex<Vec<String>>) -> impl FnMut(&libnfq::Packet<'_>) -> Verdict + Send + '_ {
    move |p| {
        log.lock().unwrap().push(text_of(p.payload()));
        Verdict::accept()
    }
}

fn len_of(log: &Mutex<Vec<String>>) -> usize {
    log.lock().unwrap().len()
}

/// A UDP socket with a send buffer large enough for thousands of datagrams waiting in a queue
/// (a queued packet stays charged to its sending socket).
fn blaster() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    set_socket_buffer(&sock, Buffer::Send, 64 << 20);
    sock
}

/// Sends `n` datagrams `"<tag> <i>"` to `flow` as fast as possible.
fn blast(flow: &Flow, tag: &str, n: usize) {
    let sock = blaster();
    let to = flow.sink.addr();
    for i in 0..n {
        if let Err(e) = sock.send_to(format!("{tag} {i}").as_bytes(), to) {
            // A datagram dropped in OUTPUT (by a verdict, or lost to a full socket) can
            // surface as EPERM on a later send.
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "send: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 2: a packet message larger than the receive buffer.

/// `set_buffer_size(2048)`, a policy that drops payloads over 1000 bytes, a 5000-byte datagram
/// and three small ones: the big one cannot reach the callback (its message does not fit), so
/// it must get its queue's fallback (drop), at once, and be counted; never an automatic range
/// verdict (which accepted it), never left queued.
fn oversized_case(ns: &Netns, range_verdicts: bool) {
    const Q: u16 = 21;
    let what = format!("range verdicts {range_verdicts}");
    let flow = Flow::new(ns, Q);
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    handle.set_range_verdicts(range_verdicts);
    handle.set_buffer_size(2048).expect("set_buffer_size");
    let _queue = handle
        .queue(Q, QueueConfig::new(), |p| {
            seen.lock().unwrap().push(text_of(p.payload()));
            if p.payload().len() > 1000 {
                Verdict::drop()
            } else {
                Verdict::accept()
            }
        })
        .unwrap();
    let big = vec![b'B'; 5000];
    flow.send_bytes(&[
        big,
        b"small 1".to_vec(),
        b"small 2".to_vec(),
        b"small 3".to_vec(),
    ]);
    let _errors = pump(&handle, || len_of(&seen) >= 3);
    let start = Instant::now();
    // Keep the handle going a little: whatever it does with the big packet, it has done it.
    let _errors = settle(&handle, Duration::from_millis(100));
    assert!(
        support::wait_until(PROMPT, || queued(ns, Q) == 0),
        "{what}: the oversized packet is still queued after {:?}: {:?}",
        start.elapsed(),
        ns.queue_stat(Q)
    );
    flow.expect(&["small 1", "small 2", "small 3"], &what);
    assert_eq!(
        *seen.lock().unwrap(),
        ["small 1", "small 2", "small 3"],
        "{what}: the callback saw only the packets that fit"
    );
    let counters = handle.counters();
    assert_eq!(counters.fallback_truncated, 1, "{what}: {counters:?}");
}

#[test]
fn oversized_packet_gets_the_fallback_with_range_verdicts() {
    let Some(ns) = support::enter!() else { return };
    oversized_case(&ns, true);
}

#[test]
fn oversized_packet_gets_the_fallback_without_range_verdicts() {
    let Some(ns) = support::enter!() else { return };
    oversized_case(&ns, false);
}

// ---------------------------------------------------------------------------------------------
// Defect 3: a bind whose acknowledgement is lost.

/// Queue `FLOODED` fills the smallest receive buffer the kernel grants (no processing), so the
/// acknowledgement of the bind of `LATE` is lost (ENOBUFS). Afterwards `LATE` either works or is
/// not bound (and binding it again works): never bound without a callback.
#[test]
fn bind_whose_ack_is_lost_leaves_no_orphaned_queue() {
    let Some(ns) = support::enter!() else { return };
    const FLOODED: u16 = 30;
    const LATE: u16 = 31;
    let flooded = Flow::new(&ns, FLOODED);
    let late = Flow::new(&ns, LATE);
    let seen_late = Mutex::new(Vec::new());
    let seen_flooded = AtomicUsize::new(0);
    let handle = open_handle();
    let granted = handle
        .set_recv_buffer_size(1)
        .expect("shrink receive buffer");
    let _flooded_queue = handle
        .queue(FLOODED, QueueConfig::new(), |_| {
            seen_flooded.fetch_add(1, Ordering::Relaxed);
            Verdict::accept()
        })
        .unwrap();
    let texts: Vec<String> = (0..200).map(|i| format!("flood {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    flooded.send(&refs);
    let st = ns.queue_stat(FLOODED).unwrap();
    assert!(
        st.user_dropped > 0,
        "the receive buffer ({granted} bytes) must have overflowed: {st:?}"
    );

    handle.set_ack_timeout(Duration::from_millis(300));
    let first = handle.queue(LATE, QueueConfig::new(), recorder(&seen_late));
    let first_outcome = format!("{:?}", first.as_ref().map(|_| ()));
    eprintln!("bind with a lost acknowledgement returned {first_outcome}");
    let late_queue = match first {
        Ok(queue) => queue,
        Err(err) => {
            // Refused or rolled back: the number must be free again once the flood is handled.
            let _errors = pump(&handle, || queued(&ns, FLOODED) == 0);
            handle.set_ack_timeout(Duration::from_secs(5));
            handle
                .queue(LATE, QueueConfig::new(), recorder(&seen_late))
                .unwrap_or_else(|again| {
                    panic!(
                        "the first bind failed with {err:?}; binding again failed with {again:?} \
                         (queue {LATE} in /proc: {:?})",
                        ns.queue_stat(LATE)
                    )
                })
        }
    };
    // The binding that exists works: its packets reach its callback and get its verdict.
    late.send(&["late 1"]);
    let errors = pump(&handle, || len_of(&seen_late) >= 1);
    assert_eq!(
        *seen_late.lock().unwrap(),
        ["late 1"],
        "first bind: {first_outcome}; errors: {errors:?}"
    );
    late.expect(&["late 1"], "the late queue's packet");
    let st = ns.queue_stat(LATE).expect("the late queue is bound");
    assert_eq!((st.portid, st.queued), (handle.portid(), 0), "{st:?}");
    // Nothing of the flood is left undecided.
    let _errors = pump(&handle, || queued(&ns, FLOODED) == 0);
    drop(late_queue);
}

/// Binds `queue` on the handle's socket behind the library's back (one raw BIND + copy mode
/// message on its fd, without an acknowledgement), so that packets of a queue the handle has no
/// binding for reach it: the state an orphaned bind leaves.
fn bind_behind_the_back(handle: &Handle<'_>, queue: u16) {
    // 8-byte aligned room for the message (header 16 + nfgenmsg 4 + two attributes, 8 + 12).
    let mut buf = [0u64; 32];
    // SAFETY: `buf` is a zeroed, aligned 256-byte buffer; nfq_nlmsg_put writes the 20-byte
    // headers at its start and the two nfq_nlmsg_cfg_put_* calls append 8 and 12 bytes of
    // attributes, well within it. `nlh` points into `buf`, which outlives its uses.
    let len = unsafe {
        let nlh = sys::nfq_nlmsg_put(
            buf.as_mut_ptr().cast(),
            sys::NFQNL_MSG_CONFIG as i32,
            u32::from(queue),
        );
        sys::nfq_nlmsg_cfg_put_cmd(nlh, libc::AF_INET as u16, sys::NFQNL_CFG_CMD_BIND as u8);
        sys::nfq_nlmsg_cfg_put_params(nlh, sys::NFQNL_COPY_PACKET as u8, 0xffff);
        (*nlh).nlmsg_len as usize
    };
    assert!(len <= std::mem::size_of_val(&buf));
    // SAFETY: sends `len` initialized bytes of `buf` on the handle's open netlink socket; with
    // no address, netlink sends to the kernel.
    let sent = unsafe { libc::send(handle.as_raw_fd(), buf.as_ptr().cast(), len, 0) };
    assert_eq!(sent, len as isize, "{}", std::io::Error::last_os_error());
}

/// Defect 3, second half: packets of a queue bound on the handle's socket but unknown to the
/// handle (an orphaned bind) must get a decision (drop, counted) instead of waiting for ever,
/// and the handle's own queues go on.
#[test]
fn packets_of_a_queue_the_handle_does_not_know_are_dropped_and_counted() {
    let Some(ns) = support::enter!() else { return };
    const KNOWN: u16 = 32;
    const UNKNOWN: u16 = 33;
    let known = Flow::new(&ns, KNOWN);
    let unknown = Flow::new(&ns, UNKNOWN);
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    let _queue = handle
        .queue(KNOWN, QueueConfig::new(), recorder(&seen))
        .unwrap();
    bind_behind_the_back(&handle, UNKNOWN);
    assert!(
        support::wait_until(DEADLINE, || ns
            .queue_stat(UNKNOWN)
            .is_some_and(|s| s.portid == handle.portid() && s.copy_mode == 2)),
        "the raw bind took: {:?}",
        ns.queue_stats()
    );
    unknown.send(&["stray 1", "stray 2"]);
    known.send(&["known 1"]);
    assert_eq!(queued(&ns, UNKNOWN), 2);
    let _errors = pump(&handle, || len_of(&seen) >= 1);
    let _errors = settle(&handle, Duration::from_millis(100));
    assert_drained(
        &ns,
        UNKNOWN,
        PROMPT,
        "packets of a queue the handle has no binding for",
    );
    unknown.expect(&[], "packets of an unknown queue are dropped");
    known.expect(&["known 1"], "the handle's own queue");
    assert_eq!(*seen.lock().unwrap(), ["known 1"]);
    let counters = handle.counters();
    assert_eq!(counters.fallback_unknown_queue, 2, "{counters:?}");
}

// ---------------------------------------------------------------------------------------------
// Defect 4: a `Queue` dropped inside its own callback.

thread_local! {
    /// The `Queue` the callback of `drop_inside_case` drops (callbacks run on the thread that
    /// calls `process`, here the test thread).
    static OWN_QUEUE: RefCell<Option<Queue<'static, 'static>>> = const { RefCell::new(None) };
}

/// Five datagrams wait; one `process()` pass dispatches them; the callback accepts the first
/// three and drops its own `Queue` on the fourth (then panics, if `panic_after`). The three
/// accepted packets must reach the receiver, the panic must come out of `process()`.
fn drop_inside_case(ns: &Netns, range_verdicts: bool, panic_after: bool) {
    const Q: u16 = 40;
    const BOOM: &str = "boom after dropping the queue";
    let what = format!("range verdicts {range_verdicts}, panic {panic_after}");
    let flow = Flow::new(ns, Q);
    // Leaked, so that the callback can reach its own `Queue<'static, 'static>` through a
    // thread-local (a `Queue` is not `Send`, so the callback cannot capture it).
    let handle: &'static Handle<'static> = Box::leak(Box::new(open_handle()));
    handle.set_range_verdicts(range_verdicts);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    CALLS.store(0, Ordering::SeqCst);
    let queue = handle
        .queue(Q, QueueConfig::new(), move |_| {
            if CALLS.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                let own = OWN_QUEUE.with(|slot| slot.borrow_mut().take());
                assert!(own.is_some(), "the queue is in its slot");
                drop(own);
                if panic_after {
                    panic!("{BOOM}");
                }
            }
            Verdict::accept()
        })
        .unwrap();
    OWN_QUEUE.with(|slot| *slot.borrow_mut() = Some(queue));
    flow.send(&["d 1", "d 2", "d 3", "d 4", "d 5"]);
    assert_eq!(queued(ns, Q), 5);

    let outcome = catch_unwind(AssertUnwindSafe(|| handle.process()));
    match (outcome, panic_after) {
        (Ok(_), false) => {}
        (Err(payload), true) => assert_eq!(regress::panic_text(payload.as_ref()), BOOM),
        (Ok(result), true) => {
            panic!("{what}: the callback's panic was not resumed; process() returned {result:?}")
        }
        (Err(payload), false) => resume_unwind(payload),
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 4, "{what}: callback runs");
    regress::wait_unlisted(ns, Q);
    let _errors = settle(handle, Duration::from_millis(100));
    let got = flow.received();
    for want in ["d 1", "d 2", "d 3"] {
        assert!(
            got.iter().any(|g| g == want),
            "{what}: {want:?}, accepted before the queue was dropped, did not arrive; \
             arrived: {got:?}"
        );
    }
    assert!(
        !got.iter().any(|g| g == "d 5"),
        "{what}: d 5 came after the drop: {got:?}"
    );

    // The handle goes on: the number can be bound again.
    let again = handle
        .queue(Q, QueueConfig::new(), |_| Verdict::accept())
        .expect("bind the number again");
    flow.send(&["again"]);
    let _errors = pump(handle, || queued(ns, Q) == 0);
    flow.expect(&["again"], &format!("{what}: bound again"));
    drop(again);
}

#[test]
fn queue_dropped_in_its_callback_keeps_earlier_verdicts() {
    let Some(ns) = support::enter!() else { return };
    drop_inside_case(&ns, true, false);
}

#[test]
fn queue_dropped_in_its_callback_keeps_earlier_verdicts_without_range_verdicts() {
    let Some(ns) = support::enter!() else { return };
    drop_inside_case(&ns, false, false);
}

#[test]
fn panic_after_dropping_the_queue_in_its_callback_is_resumed() {
    let Some(ns) = support::enter!() else { return };
    drop_inside_case(&ns, true, true);
}

#[test]
fn panic_after_dropping_the_queue_in_its_callback_is_resumed_without_range_verdicts() {
    let Some(ns) = support::enter!() else { return };
    drop_inside_case(&ns, false, true);
}

// ---------------------------------------------------------------------------------------------
// Defects 7 and 8: huge and tiny settings.

#[test]
fn ack_timeout_duration_max_binds_and_unbinds() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 60;
    let flow = Flow::new(&ns, Q);
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    handle.set_ack_timeout(Duration::MAX);
    let queue = handle
        .queue(Q, QueueConfig::new(), recorder(&seen))
        .expect("bind with an ack timeout of Duration::MAX");
    assert_eq!(ns.queue_stat(Q).map(|s| s.portid), Some(handle.portid()));
    flow.send(&["max 1"]);
    let errors = pump(&handle, || len_of(&seen) == 1);
    assert!(errors.is_empty(), "{errors:?}");
    flow.expect(&["max 1"], "through a queue bound with Duration::MAX");
    queue
        .unbind()
        .expect("unbind with an ack timeout of Duration::MAX");
    assert_eq!(ns.queue_stat(Q), None);
}

#[test]
fn buffer_size_usize_max_does_not_panic() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 61;
    let flow = Flow::new(&ns, Q);
    let seen = Mutex::new(Vec::new());
    let handle = open_handle();
    // Saturated or refused with a typed error: either way no panic, and the handle works.
    let result = catch_unwind(AssertUnwindSafe(|| handle.set_buffer_size(usize::MAX)));
    let result = result.unwrap_or_else(|p| {
        panic!(
            "set_buffer_size(usize::MAX) panicked: {}",
            regress::panic_text(p.as_ref())
        )
    });
    let _queue = handle
        .queue(Q, QueueConfig::new(), recorder(&seen))
        .unwrap();
    flow.send(&["huge buffer"]);
    let errors = pump(&handle, || len_of(&seen) == 1);
    assert!(errors.is_empty(), "set_buffer_size: {result:?}; {errors:?}");
    flow.expect(&["huge buffer"], "after set_buffer_size(usize::MAX)");
}

#[test]
fn receive_timeout_below_a_microsecond_does_not_block() {
    let Some(_ns) = support::enter!() else { return };
    let handle = Handle::open().expect("open");
    handle
        .set_recv_timeout(Some(Duration::from_nanos(500)))
        .expect("set_recv_timeout(500 ns)");
    // In a thread: if process() blocks forever, the test still ends (and fails).
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let start = Instant::now();
        let result = handle.process().map_err(|e| format!("{e:?}"));
        let _ = tx.send((result, start.elapsed()));
    });
    match rx.recv_timeout(PROMPT) {
        Ok((result, took)) => {
            assert_eq!(result, Ok(0), "process() with no traffic");
            assert!(took < PROMPT, "took {took:?}");
        }
        Err(_) => panic!("process() with a 500 ns receive timeout still blocks after {PROMPT:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 10: inputs the kernel would silently turn into drops.

#[test]
fn max_len_zero_is_refused() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 62;
    let handle = open_handle();
    let err = handle
        .queue(Q, QueueConfig::new().max_len(0), |_| Verdict::accept())
        .expect_err("max_len(0) makes the kernel drop every packet");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    assert_eq!(ns.queue_stat(Q), None, "nothing was bound");
    // The number is free.
    let _queue = handle
        .queue(Q, QueueConfig::new().max_len(1), |_| Verdict::accept())
        .expect("max_len(1) is fine");
}

/// A replacement payload of `len` bytes (shorter than the 20-byte IPv4 header) for a UDP packet,
/// from the callback (`deferred == false`, the error comes out of `process()`) or from a
/// `DeferredPacket`. It must be refused with `PayloadTooShort`, and the packet must get its
/// queue's fallback (`accept` here: it arrives unchanged).
fn short_payload_case(ns: &Netns, len: usize, deferred: bool) {
    const Q: u16 = 63;
    let what = format!("{len}-byte payload, deferred {deferred}");
    let flow = Flow::new(ns, Q);
    let replacement = Verdict::accept()
        .with_payload(vec![0x45; len])
        .expect("with_payload");
    let config = QueueConfig::new().fallback(Verdict::accept());
    let seen = AtomicUsize::new(0);
    let held = Mutex::new(Vec::new());
    let handle = open_handle();
    let _queue = if deferred {
        hold_all(&handle, Q, config, &held)
    } else {
        let replacement = replacement.clone();
        let seen = &seen;
        handle
            .queue(Q, config, move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                replacement.clone()
            })
            .unwrap()
    };
    flow.send(&["short payload"]);
    let mut errors = if deferred {
        let errors = pump(&handle, || count(&held) == 1);
        let packet = take(&held).pop().unwrap();
        let id = packet.id();
        let result = packet.verdict(replacement);
        assert!(
            matches!(result, Err(Error::PayloadTooShort { queue: Q, id: i, len: l, min }) if i == id && l == len && min > len),
            "{what}: verdict returned {result:?}"
        );
        errors
    } else {
        pump(&handle, || seen.load(Ordering::SeqCst) == 1)
    };
    errors.extend(settle(&handle, Duration::from_millis(100)));
    flow.expect(
        &["short payload"],
        &format!("{what}: the fallback accepts it"),
    );
    assert_drained(ns, Q, PROMPT, &what);
    if !deferred {
        assert!(
            errors.iter().any(|e| matches!(e, Error::PayloadTooShort { queue: Q, id: 1, len: l, min } if *l == len && *min > len)),
            "{what}: process() must report the refusal: {errors:?}"
        );
    }
    let counters = handle.counters();
    assert_eq!(counters.fallback_refused, 1, "{what}: {counters:?}");
}

#[test]
fn empty_replacement_payload_is_refused_inline() {
    let Some(ns) = support::enter!() else { return };
    short_payload_case(&ns, 0, false);
}

#[test]
fn ten_byte_replacement_payload_is_refused_inline() {
    let Some(ns) = support::enter!() else { return };
    short_payload_case(&ns, 10, false);
}

#[test]
fn empty_replacement_payload_is_refused_deferred() {
    let Some(ns) = support::enter!() else { return };
    short_payload_case(&ns, 0, true);
}

#[test]
fn ten_byte_replacement_payload_is_refused_deferred() {
    let Some(ns) = support::enter!() else { return };
    short_payload_case(&ns, 10, true);
}

// ---------------------------------------------------------------------------------------------
// Defect 12: dropping a `Queue` of a flooded socket.

#[test]
fn dropping_a_queue_of_a_flooded_socket_returns_promptly() {
    let Some(ns) = support::enter!() else { return };
    const FLOODED: u16 = 50;
    const OTHER: u16 = 51;
    let flooded = Flow::new(&ns, FLOODED);
    let other = Flow::new(&ns, OTHER);
    let seen_other = Mutex::new(Vec::new());
    let handle = open_handle();
    let granted = handle.set_recv_buffer_size(256 << 10).unwrap();
    let flooded_queue = handle
        .queue(FLOODED, QueueConfig::new().max_len(65536), |_| {
            Verdict::accept()
        })
        .unwrap();
    let _other_queue = handle
        .queue(OTHER, QueueConfig::new(), recorder(&seen_other))
        .unwrap();
    blast(&flooded, "blast", 10_000);
    let st = ns.queue_stat(FLOODED).unwrap();
    assert!(
        st.user_dropped > 0 && st.queued > 0,
        "the socket ({granted} bytes) must be flooded: {st:?}"
    );

    let start = Instant::now();
    drop(flooded_queue);
    let took = start.elapsed();
    assert!(
        took < PROMPT,
        "dropping the Queue of a flooded socket took {took:?}"
    );
    regress::wait_unlisted(&ns, FLOODED);

    // The handle keeps serving the other queue, once it has read what the flood left in the
    // socket (a message arriving at a full socket is lost, whoever the consumer).
    let start = Instant::now();
    let mut drained = Vec::new();
    loop {
        match handle.process() {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => drained.push(e),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the flood's leftovers are never drained: {drained:?}"
        );
    }
    other.send(&["other 1"]);
    let errors = pump(&handle, || len_of(&seen_other) >= 1);
    assert_eq!(*seen_other.lock().unwrap(), ["other 1"], "{errors:?}");
    other.expect(&["other 1"], "the other queue after the drop");
    assert_drained(&ns, OTHER, PROMPT, "the other queue");
}

// ---------------------------------------------------------------------------------------------
// Issue 11: the README quick start under an unpaced blast.

/// The README's quick start callback.
fn quick_start_callback(packet: &libnfq::Packet<'_>) -> Verdict {
    println!(
        "packet {}: {} bytes, mark {}",
        packet.id(),
        packet.payload().len(),
        packet.mark()
    );
    if packet.payload().len() > 1000 {
        Verdict::drop()
    } else {
        Verdict::accept().with_mark(1)
    }
}

/// Waits until the blast's packets are decided (none waits in the kernel any more), then sends
/// `"after <i>"` one at a time and waits for each at the receiver (still deciding), then a
/// 2000-byte datagram that the policy drops. `runner` describes the consumer thread's state for
/// failure messages.
fn still_deciding(ns: &Netns, flow: &Flow, runner: &dyn Fn() -> String) {
    assert!(
        support::wait_until(DEADLINE, || queued(ns, 0) == 0),
        "the blast's packets are not all decided: {:?}; {}",
        ns.queue_stat(0),
        runner()
    );
    // Empty the receiver, which the accepted part of the blast may have filled (a datagram
    // arriving at a full UDP socket is lost).
    let blasted = flow
        .sink
        .recv_until_quiet(Duration::from_millis(100), usize::MAX);
    assert!(blasted.iter().all(|d| d.starts_with(b"blast ")));
    for i in 0..3 {
        let text = format!("after {i}");
        flow.send(&[&text]);
        let start = Instant::now();
        loop {
            let got = flow
                .sink
                .recv_one(DEADLINE.saturating_sub(start.elapsed()))
                .unwrap_or_else(|| {
                    panic!(
                        "{text:?} did not arrive after the blast; {:?}; {}",
                        ns.queue_stat(0),
                        runner()
                    )
                });
            if got == text.as_bytes() {
                break;
            }
            // A late datagram of the blast.
            assert!(got.starts_with(b"blast "), "unexpected {got:?}");
        }
    }
    flow.send_bytes(&[vec![b'B'; 2000]]);
    let late: Vec<Vec<u8>> = flow.sink.recv_until_quiet(regress::QUIET, 100_000);
    assert!(
        late.iter().all(|d| d.starts_with(b"blast ")),
        "the policy drops payloads over 1000 bytes"
    );
}

#[test]
fn quick_start_run_survives_an_unpaced_blast() {
    let Some(ns) = support::enter!() else { return };
    let flow = Flow::new(&ns, 0);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    // The README's `main`, with a small receive buffer to force overruns. Spawned from the test
    // thread: same network namespace. It never returns unless `run()` does.
    thread::spawn(move || {
        let result = (|| -> Result<(), libnfq::Error> {
            let handle = Handle::open()?;
            handle.set_recv_buffer_size(64 << 10)?;
            let _queue = handle.queue(0, QueueConfig::new(), quick_start_callback)?;
            ready_tx.send(()).unwrap();
            handle.run()
        })();
        let _ = done_tx.send(format!("{result:?}"));
    });
    ready_rx
        .recv_timeout(DEADLINE)
        .expect("the quick start bound its queue");
    blast(&flow, "blast", 20_000);
    if let Ok(returned) = done_rx.recv_timeout(Duration::from_millis(500)) {
        panic!("run() returned after the blast: {returned}");
    }
    let st = ns.queue_stat(0).expect("queue 0 bound");
    assert!(
        st.user_dropped > 0,
        "the blast must overrun the socket: {st:?}"
    );
    still_deciding(&ns, &flow, &|| match done_rx.try_recv() {
        Ok(returned) => format!("run() returned {returned}"),
        Err(_) => "run() is still running".to_string(),
    });
    assert!(
        done_rx.try_recv().is_err(),
        "run() returned while deciding later packets"
    );
    assert_drained(&ns, 0, PROMPT, "after the blast");
}

#[test]
fn quick_start_run_until_survives_an_unpaced_blast_and_counts_overruns() {
    let Some(ns) = support::enter!() else { return };
    let flow = Flow::new(&ns, 0);
    let shutdown = std::sync::Arc::new(Shutdown::new().expect("shutdown"));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let stop = std::sync::Arc::clone(&shutdown);
    thread::spawn(move || {
        let result = (|| -> Result<libnfq::Counters, libnfq::Error> {
            let handle = Handle::open()?;
            handle.set_recv_buffer_size(64 << 10)?;
            let _queue = handle.queue(0, QueueConfig::new(), quick_start_callback)?;
            ready_tx.send(()).unwrap();
            handle.run_until(&stop)?;
            Ok(handle.counters())
        })();
        let _ = done_tx.send(result.map_err(|e| format!("{e:?}")));
    });
    ready_rx.recv_timeout(DEADLINE).expect("bound");
    blast(&flow, "blast", 20_000);
    if let Ok(returned) = done_rx.recv_timeout(Duration::from_millis(500)) {
        panic!("run_until() returned before the shutdown: {returned:?}");
    }
    still_deciding(&ns, &flow, &|| match done_rx.try_recv() {
        Ok(returned) => format!("run_until() returned {returned:?}"),
        Err(_) => {
            // Stop it, to show its counters.
            shutdown.trigger();
            match done_rx.recv_timeout(DEADLINE) {
                Ok(counters) => format!("run_until() was still running; counters {counters:?}"),
                Err(_) => "run_until() was still running and ignored the shutdown".to_string(),
            }
        }
    });
    shutdown.trigger();
    let counters = done_rx
        .recv_timeout(DEADLINE)
        .expect("run_until() returns once the shutdown triggers")
        .expect("run_until() returns Ok");
    assert!(
        counters.enobufs > 0,
        "the blast overran the socket: {counters:?}"
    );
    assert!(counters.packets > 3, "{counters:?}");
    let st = ns.queue_stat(0);
    assert!(st.is_none() || st.unwrap().queued == 0, "{st:?}");
}
