//! Issue 10, defect 1: a verdict for a packet of an earlier binding of a queue number must never
//! reach the kernel. Packet ids restart at 1 whenever a queue number is bound again, so a stale
//! `DeferredPacket` (decided, or dropped undecided) or `VerdictBatch` entry would otherwise
//! decide the *new* packet that has the same id.
//!
//! Every case: two packets ("old 1", "old 2", ids 1 and 2) are deferred on a first binding;
//! the queue number is bound again (on the same handle, on another handle, or after the first
//! handle was dropped); two new packets ("new 1", "new 2", ids 1 and 2 again) are held on the
//! new binding; then the old packets are decided with the opposite of what the new ones get
//! (old 1 accept / old 2 drop, or their fallback `accept` when dropped undecided), and only then
//! the new ones (new 1 drop, new 2 accept). The receiver must get exactly "new 2"; the stale
//! verdicts must be refused with `Error::StaleBinding` and no `UnknownPacket` may come back.
//! The AsyncHandle variants are in `regressions_tokio.rs`.

mod regress;
#[allow(unused_imports)]
mod support;

use std::sync::Mutex;
use std::time::Duration;

use libnfq::{DeferredPacket, Error, Handle, QueueConfig, Verdict};
use regress::{count, hold_all, open_handle, pump, settle, take, Flow};
use support::Netns;

const Q: u16 = 11;

/// How the queue number gets bound again while old packets are still held.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    /// The `Queue` is dropped and the number bound again on the same handle.
    SameHandle,
    /// The `Queue` is dropped and the number bound on a second handle (second socket).
    OtherHandle,
    /// The first handle is dropped (socket closed) and the number bound on a second handle.
    HandleDropped,
}

/// How the old packets are decided once the number is bound again.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// `DeferredPacket::verdict`.
    Verdict,
    /// Dropped undecided (their queue's fallback, `accept` here, must not be sent).
    DroppedUndecided,
    /// Entries of a `VerdictBatch` of the first handle.
    Batch,
}

/// `true` for the refusal a stale verdict must get. After the first handle was dropped,
/// `HandleClosed` is as good: nothing can be sent on a closed socket.
fn is_stale(result: &Result<(), Error>, route: Route, id: u32) -> bool {
    match result {
        Err(Error::StaleBinding { queue, id: got }) => *queue == Q && *got == id,
        Err(Error::HandleClosed) => route == Route::HandleDropped,
        _ => false,
    }
}

fn stale_case(ns: &Netns, route: Route, kind: Kind) {
    let what = format!("{route:?}/{kind:?}");
    let flow = Flow::new(ns, Q);
    let held_old = Mutex::new(Vec::new());
    let held_new = Mutex::new(Vec::new());
    let old_config = match kind {
        // The fallback of the old binding is the opposite of what new 1 must get.
        Kind::DroppedUndecided => QueueConfig::new().fallback(Verdict::accept()),
        _ => QueueConfig::new(),
    };

    let mut first = Some(open_handle());
    let second = open_handle();
    let first_sender = first.as_ref().unwrap().verdict_sender();
    let queue = hold_all(first.as_ref().unwrap(), Q, old_config, &held_old);
    flow.send(&["old 1", "old 2"]);
    let errors = pump(first.as_ref().unwrap(), || count(&held_old) == 2);
    assert!(errors.is_empty(), "{what}: {errors:?}");
    let old: Vec<DeferredPacket> = take(&held_old);
    assert_eq!(old.iter().map(|p| p.id()).collect::<Vec<_>>(), [1, 2]);

    // Bind the number again.
    let new_handle: &Handle<'_> = match route {
        Route::SameHandle => {
            drop(queue);
            first.as_ref().unwrap()
        }
        Route::OtherHandle => {
            drop(queue);
            &second
        }
        Route::HandleDropped => {
            // The queue stays bound until the socket closes.
            std::mem::forget(queue);
            drop(first.take());
            regress::wait_unlisted(ns, Q);
            &second
        }
    };
    // Dropping a `Queue` does not wait for the kernel's acknowledgement: let the unbind land
    // before another socket binds the number.
    regress::wait_unlisted(ns, Q);
    let new_queue = hold_all(new_handle, Q, QueueConfig::new(), &held_new);
    flow.send(&["new 1", "new 2"]);
    let errors = pump(new_handle, || count(&held_new) == 2);
    assert!(errors.is_empty(), "{what}: {errors:?}");
    let new = take(&held_new);
    assert_eq!(
        new.iter().map(|p| p.id()).collect::<Vec<_>>(),
        [1, 2],
        "{what}: ids restart at 1 on the new binding"
    );
    assert_eq!(regress::queued(ns, Q), 2);

    // The stale decisions, while the new packets with the same ids wait.
    match kind {
        Kind::Verdict => {
            for (packet, verdict) in old.into_iter().zip([Verdict::accept(), Verdict::drop()]) {
                let id = packet.id();
                let result = packet.verdict(verdict);
                assert!(
                    is_stale(&result, route, id),
                    "{what}: verdict for old packet {id} returned {result:?}, expected \
                     Err(StaleBinding {{ queue: {Q}, id: {id} }})"
                );
            }
        }
        Kind::DroppedUndecided => drop(old),
        Kind::Batch => {
            let mut batch = first_sender.batch(8);
            for (packet, verdict) in old.into_iter().zip([Verdict::accept(), Verdict::drop()]) {
                let id = packet.id();
                let result = batch.push(packet, verdict);
                let refused = is_stale(&result, route, id)
                    // After the socket closed, the entries may also be dropped at flush.
                    || (route == Route::HandleDropped && result.is_ok());
                assert!(
                    refused,
                    "{what}: batch entry for old packet {id} returned {result:?}, expected \
                     Err(StaleBinding {{ queue: {Q}, id: {id} }})"
                );
            }
            let flushed = batch.flush();
            assert!(
                flushed.is_ok() || route == Route::HandleDropped,
                "{what}: flush: {flushed:?}"
            );
        }
    }
    // Whatever the stale decisions did, they are in the kernel by now (netlink sends are
    // synchronous): both new packets must still be waiting.
    assert_eq!(
        regress::queued(ns, Q),
        2,
        "{what}: a stale verdict decided a packet of the new binding"
    );

    // The new packets' own verdicts.
    let mut new = new.into_iter();
    new.next()
        .unwrap()
        .verdict(Verdict::drop())
        .expect("verdict for new 1");
    new.next()
        .unwrap()
        .verdict(Verdict::accept())
        .expect("verdict for new 2");

    flow.expect(&["new 2"], &what);
    regress::assert_drained(ns, Q, regress::DEADLINE, &what);
    // No late error: neither the new verdicts nor the stale ones named a packet the kernel did
    // not have.
    let errors = settle(new_handle, Duration::from_millis(200));
    assert!(
        errors.is_empty(),
        "{what}: errors on the new binding's handle: {errors:?}"
    );
    if let Some(first) = &first {
        if route == Route::OtherHandle {
            let errors = settle(first, Duration::from_millis(200));
            assert!(
                errors.is_empty(),
                "{what}: errors on the first handle: {errors:?}"
            );
        }
        if kind == Kind::DroppedUndecided {
            let counters = first.counters();
            assert!(
                counters.stale_discarded >= 2,
                "{what}: two stale fallbacks discarded: {counters:?}"
            );
        }
    }
    drop(new_queue);
}

#[test]
fn stale_verdict_same_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::SameHandle, Kind::Verdict);
}

#[test]
fn stale_drop_same_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::SameHandle, Kind::DroppedUndecided);
}

#[test]
fn stale_batch_same_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::SameHandle, Kind::Batch);
}

#[test]
fn stale_verdict_other_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::OtherHandle, Kind::Verdict);
}

#[test]
fn stale_drop_other_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::OtherHandle, Kind::DroppedUndecided);
}

#[test]
fn stale_batch_other_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::OtherHandle, Kind::Batch);
}

#[test]
fn stale_verdict_handle_dropped() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::HandleDropped, Kind::Verdict);
}

#[test]
fn stale_drop_handle_dropped() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::HandleDropped, Kind::DroppedUndecided);
}

#[test]
fn stale_batch_handle_dropped() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::HandleDropped, Kind::Batch);
}

/// The first binding is unbound, a second handle binds and unbinds the number (its own packet
/// goes through), then the first handle binds it again: the stale verdict is still refused
/// although the first handle is bound to the number again.
#[test]
fn stale_verdict_after_a_binding_on_another_handle_in_between() {
    let Some(ns) = support::enter!() else { return };
    let flow = Flow::new(&ns, Q);
    let (held_old, held_mid, held_new) = (
        Mutex::new(Vec::new()),
        Mutex::new(Vec::new()),
        Mutex::new(Vec::new()),
    );
    let first = open_handle();
    let second = open_handle();
    let queue = hold_all(&first, Q, QueueConfig::new(), &held_old);
    flow.send(&["old 1"]);
    assert!(pump(&first, || count(&held_old) == 1).is_empty());
    let old = take(&held_old).pop().unwrap();
    drop(queue);
    regress::wait_unlisted(&ns, Q);

    let mid = hold_all(&second, Q, QueueConfig::new(), &held_mid);
    flow.send(&["mid 1"]);
    assert!(pump(&second, || count(&held_mid) == 1).is_empty());
    take(&held_mid).pop().unwrap().accept().expect("mid 1");
    flow.expect(&["mid 1"], "the binding in between");
    mid.unbind().expect("unbind the binding in between");

    let _again = hold_all(&first, Q, QueueConfig::new(), &held_new);
    flow.send(&["new 1"]);
    assert!(pump(&first, || count(&held_new) == 1).is_empty());
    let new = take(&held_new).pop().unwrap();
    assert_eq!((old.id(), new.id()), (1, 1));

    let result = old.verdict(Verdict::accept());
    assert!(
        matches!(result, Err(Error::StaleBinding { queue: Q, id: 1 })),
        "stale verdict returned {result:?}"
    );
    assert_eq!(
        regress::queued(&ns, Q),
        1,
        "the stale verdict decided new 1"
    );
    new.verdict(Verdict::drop()).expect("new 1");
    flow.expect(&[], "new 1 is dropped by its own verdict");
    regress::assert_drained(&ns, Q, regress::DEADLINE, "new 1");
    let errors = settle(&first, Duration::from_millis(200));
    assert!(errors.is_empty(), "{errors:?}");
}
