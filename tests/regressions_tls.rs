//! Issue 10, defect 5: a `DeferredPacket` decided from a thread-local destructor (a holder
//! whose `Drop` calls `verdict`, run when its thread exits) must not abort the process, and the
//! verdict must reach the kernel.
//!
//! In its own test binary: the failure mode is an abort, which takes down every test of the
//! binary.

mod regress;
#[allow(unused_imports)]
mod support;

use std::cell::RefCell;
use std::sync::Mutex;
use std::thread;

use libnfq::{DeferredPacket, QueueConfig, Verdict};
use regress::{count, hold_all, open_handle, pump, take, Flow};

/// Decides its packet (accept) when dropped, and records the result.
struct DecideOnDrop {
    packet: Option<DeferredPacket>,
    results: Option<&'static Mutex<Vec<String>>>,
}

impl Drop for DecideOnDrop {
    fn drop(&mut self) {
        if let (Some(packet), Some(results)) = (self.packet.take(), self.results) {
            let result = packet.verdict(Verdict::accept());
            results.lock().unwrap().push(format!("{result:?}"));
        }
    }
}

thread_local! {
    static HOLDER: RefCell<DecideOnDrop> = const {
        RefCell::new(DecideOnDrop { packet: None, results: None })
    };
}

/// Two packets are deferred. A thread first touches its thread-local holder (so its destructor
/// is registered first and runs last), then, if `decide_first`, decides the first packet
/// normally (so whatever thread-local state `verdict` uses is set up after the holder, and torn
/// down before it), then puts the second packet in the holder and exits: the holder's
/// destructor decides it. Both must reach the receiver.
fn destructor_case(ns: &support::Netns, decide_first: bool) {
    const Q: u16 = 70;
    let flow = Flow::new(ns, Q);
    let results: &'static Mutex<Vec<String>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    let held = Mutex::new(Vec::new());
    let handle = open_handle();
    let _queue = hold_all(&handle, Q, QueueConfig::new(), &held);
    flow.send(&["first", "from a destructor"]);
    let errors = pump(&handle, || count(&held) == 2);
    assert!(errors.is_empty(), "{errors:?}");
    let mut packets = take(&held).into_iter();
    let (first, second) = (packets.next().unwrap(), packets.next().unwrap());

    let first = if decide_first {
        Some(first)
    } else {
        first.accept().expect("first verdict, on the test thread");
        None
    };
    let worker = thread::spawn(move || {
        HOLDER.with(|h| h.borrow_mut().results = Some(results));
        if let Some(first) = first {
            first.accept().expect("first verdict, on the worker");
        }
        HOLDER.with(|h| h.borrow_mut().packet = Some(second));
        // The thread exits: the holder's destructor decides the second packet.
    });
    worker.join().expect("the worker thread ended normally");
    assert_eq!(*results.lock().unwrap(), ["Ok(())"]);
    flow.expect(
        &["first", "from a destructor"],
        "decided in a thread-local destructor",
    );
    regress::assert_drained(ns, Q, regress::DEADLINE, "after the thread exited");
}

#[test]
fn deferred_verdict_from_a_thread_local_destructor_after_other_verdicts() {
    let Some(ns) = support::enter!() else { return };
    destructor_case(&ns, true);
}

#[test]
fn deferred_verdict_from_a_thread_local_destructor() {
    let Some(ns) = support::enter!() else { return };
    destructor_case(&ns, false);
}
