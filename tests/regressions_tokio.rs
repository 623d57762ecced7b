//! Issue 10 through `AsyncHandle` (feature `tokio`), against the real kernel:
//! - defect 1: packets returned by `recv()` on an earlier binding of a queue number must not
//!   decide the packets of a later binding (same ids), whatever the route to the re-bind;
//! - defect 9: `unbind` gives the packets received but not yet returned by `recv()` their
//!   fallback while the queue is still bound, and later `recv()` calls report no errors.
#![cfg(feature = "tokio")]

mod regress;
#[allow(unused_imports)]
mod support;

use std::future::Future;
use std::time::Duration;

use libnfq::tokio::AsyncHandle;
use libnfq::{DeferredPacket, Error, QueueConfig, Verdict};
use regress::{Flow, DEADLINE};
use support::Netns;

const Q: u16 = 12;

/// Runs `f` on a current-thread runtime on the test thread (its IO driver, the handles and the
/// tasks all live in the test's network namespace).
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn recv(handle: &mut AsyncHandle) -> DeferredPacket {
    tokio::time::timeout(DEADLINE, handle.recv())
        .await
        .expect("a packet within the deadline")
        .expect("recv")
}

/// `recv()` for `time`: what it returned (packets or errors) before timing out.
async fn recv_for(handle: &mut AsyncHandle, time: Duration) -> Vec<Result<DeferredPacket, Error>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + time;
    while let Ok(result) = tokio::time::timeout_at(deadline, handle.recv()).await {
        got.push(result);
    }
    got
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    SameHandle,
    OtherHandle,
    HandleDropped,
}

/// Like `regressions_rebind.rs`: "old 1"/"old 2" returned by `recv()`, the number bound again,
/// "new 1"/"new 2" returned, the old ones decided (accept, drop) or dropped undecided (fallback
/// accept), then the new ones (drop, accept): exactly "new 2" must arrive.
fn stale_case(ns: &Netns, route: Route, drop_undecided: bool) {
    let what = format!("{route:?}, dropped undecided {drop_undecided}");
    let flow = Flow::new(ns, Q);
    block_on(async {
        let old_config = if drop_undecided {
            QueueConfig::new().fallback(Verdict::accept())
        } else {
            QueueConfig::new()
        };
        let mut first = Some(AsyncHandle::open().unwrap());
        let mut second = AsyncHandle::open().unwrap();
        first.as_mut().unwrap().bind(Q, old_config).unwrap();
        flow.send(&["old 1", "old 2"]);
        let o1 = recv(first.as_mut().unwrap()).await;
        let o2 = recv(first.as_mut().unwrap()).await;
        assert_eq!((o1.id(), o2.id()), (1, 2));

        let new_handle = match route {
            Route::SameHandle => {
                let h = first.as_mut().unwrap();
                h.unbind(Q).expect("unbind");
                h.bind(Q, QueueConfig::new()).expect("bind again");
                h
            }
            Route::OtherHandle => {
                first.as_mut().unwrap().unbind(Q).expect("unbind");
                regress::wait_unlisted(ns, Q);
                second
                    .bind(Q, QueueConfig::new())
                    .expect("bind on the other handle");
                &mut second
            }
            Route::HandleDropped => {
                first = None;
                regress::wait_unlisted(ns, Q);
                second
                    .bind(Q, QueueConfig::new())
                    .expect("bind on the other handle");
                &mut second
            }
        };
        flow.send(&["new 1", "new 2"]);
        let n1 = recv(new_handle).await;
        let n2 = recv(new_handle).await;
        assert_eq!((n1.id(), n2.id()), (1, 2), "{what}: ids restart at 1");
        assert_eq!(regress::queued(ns, Q), 2);

        if drop_undecided {
            drop((o1, o2));
        } else {
            for (packet, verdict) in [(o1, Verdict::accept()), (o2, Verdict::drop())] {
                let id = packet.id();
                let result = packet.verdict(verdict);
                let refused = match &result {
                    Err(Error::StaleBinding { queue, id: got }) => *queue == Q && *got == id,
                    Err(Error::HandleClosed) => route == Route::HandleDropped,
                    _ => false,
                };
                assert!(
                    refused,
                    "{what}: verdict for old packet {id} returned {result:?}, expected \
                     Err(StaleBinding {{ queue: {Q}, id: {id} }})"
                );
            }
        }
        assert_eq!(
            regress::queued(ns, Q),
            2,
            "{what}: a stale verdict decided a packet of the new binding"
        );
        n1.verdict(Verdict::drop()).expect("new 1");
        n2.verdict(Verdict::accept()).expect("new 2");
        flow.expect(&["new 2"], &what);
        regress::assert_drained(ns, Q, DEADLINE, &what);
        let late: Vec<String> = recv_for(new_handle, Duration::from_millis(200))
            .await
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        assert!(late.is_empty(), "{what}: late recv() results: {late:?}");
        if let (Some(first), Route::OtherHandle) = (first.as_mut(), route) {
            let late: Vec<String> = recv_for(first, Duration::from_millis(200))
                .await
                .iter()
                .map(|r| format!("{r:?}"))
                .collect();
            assert!(
                late.is_empty(),
                "{what}: late results on the first handle: {late:?}"
            );
        }
    });
}

#[test]
fn async_stale_verdict_same_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::SameHandle, false);
}

#[test]
fn async_stale_drop_same_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::SameHandle, true);
}

#[test]
fn async_stale_verdict_other_handle() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::OtherHandle, false);
}

#[test]
fn async_stale_verdict_handle_dropped() {
    let Some(ns) = support::enter!() else { return };
    stale_case(&ns, Route::HandleDropped, false);
}

/// Defect 9: three packets wait; the first `recv()` dispatches all three and returns the first
/// (accepted); `unbind` must give the two still in the ready list their fallback (accept) while
/// the queue is bound: all three arrive, and later `recv()` calls report nothing (no ENODEV).
#[test]
fn async_unbind_settles_ready_packets_first() {
    let Some(ns) = support::enter!() else { return };
    let flow = Flow::new(&ns, Q);
    block_on(async {
        let mut handle = AsyncHandle::open().unwrap();
        handle
            .bind(Q, QueueConfig::new().fallback(Verdict::accept()))
            .unwrap();
        flow.send(&["ready 1", "ready 2", "ready 3"]);
        let first = recv(&mut handle).await;
        assert_eq!(regress::text_of(first.payload()), "ready 1");
        assert_eq!(
            regress::queued(&ns, Q),
            3,
            "all three still wait for a verdict"
        );
        first.accept().expect("ready 1");
        handle.unbind(Q).expect("unbind");
        flow.expect(
            &["ready 1", "ready 2", "ready 3"],
            "the ready packets get their fallback (accept) before the unbind",
        );
        let late: Vec<String> = recv_for(&mut handle, Duration::from_millis(300))
            .await
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        assert!(late.is_empty(), "recv() after unbind: {late:?}");
        assert_eq!(ns.queue_stat(Q), None);
    });
}
