//! No heap allocation per packet on the accept path: a counting global allocator counts the
//! allocations the dispatching thread makes inside `Handle::process`, after a warm-up.

#[allow(unused_imports)]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libnfq::{Handle, QueueConfig, Verdict};
use support::{Netns, UdpSink};

/// Counts the allocations (and frees) of the threads that armed it; every thread has its own
/// counters, so tests running in parallel do not see each other's allocations.
struct CountingAllocator;

thread_local! {
    // `const` initializers without destructors: accessing them never allocates.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNTS: Cell<Counts> = const { Cell::new(Counts { allocs: 0, frees: 0 }) };
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// alloc, alloc_zeroed and realloc calls.
    allocs: usize,
    /// dealloc calls.
    frees: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.allocs += other.allocs;
        self.frees += other.frees;
    }
}

fn record(update: fn(&mut Counts)) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNTS.try_with(|c| {
            let mut counts = c.get();
            update(&mut counts);
            c.set(counts);
        });
    }
}

// SAFETY: every method forwards to `System` unchanged; the bookkeeping only touches
// thread-locals that never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(|c| c.allocs += 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(|c| c.allocs += 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(|c| c.allocs += 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(|c| c.frees += 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the allocations this thread made meanwhile.
fn counting<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    COUNTS.set(Counts::default());
    ARMED.set(true);
    let result = f();
    ARMED.set(false);
    (result, COUNTS.get())
}

/// Upper bound for the whole exchange; normally well under a second.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long one `process()` call may block.
const POLL: Duration = Duration::from_millis(50);
/// Packets processed before counting starts (buffers reach their working size).
const WARMUP: usize = 10;
/// Packets processed while counting.
const MEASURED: usize = 200;
/// Most datagrams the sender lets wait for a verdict, so no buffer overflows.
const WINDOW: usize = 16;
const QUEUE: u16 = 1;

/// Sends `count` datagrams to `to` from one socket, never more than [`WINDOW`] ahead of
/// `seen` (the packets the callback has handled).
fn paced_sender(to: SocketAddr, range: std::ops::Range<usize>, seen: &AtomicUsize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sock.connect(to).expect("connect sender");
    let deadline = Instant::now() + DEADLINE;
    for i in range {
        while i >= seen.load(Ordering::SeqCst) + WINDOW {
            assert!(Instant::now() < deadline, "receiver stalled at {i}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let data = (i as u32).to_be_bytes();
        sock.send(&data).expect("send");
    }
}

/// Queues UDP datagrams to a sink and answers them with `verdict()` from a callback that also
/// runs `extra`; returns how many packets the callback saw and the allocations made by the
/// dispatching thread inside `process()` while the last [`MEASURED`] packets were handled.
/// Also checks that every packet reached `INPUT` with the verdict's mark (0 without one).
fn allocations_while_accepting(
    ns: &Netns,
    verdict: fn() -> Verdict,
    extra: fn(u32),
) -> (usize, Counts) {
    let sink = UdpSink::bind("127.0.0.1:0");
    let (port, queue) = (sink.port().to_string(), QUEUE.to_string());
    let mark = verdict().mark().unwrap_or(0).to_string();
    ns.queue_udp_port(&port, &queue);
    ns.iptables(&[
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        &port,
        "-m",
        "mark",
        "--mark",
        &mark,
        "-m",
        "comment",
        "--comment",
        "arrived",
    ]);
    let total = WARMUP + MEASURED;
    let seen = AtomicUsize::new(0);
    let handle = Handle::open().expect("open handle");
    handle.set_recv_timeout(Some(POLL)).expect("recv timeout");
    let _queue = handle
        .queue(QUEUE, QueueConfig::new(), |p| {
            seen.fetch_add(1, Ordering::SeqCst);
            extra(p.id());
            verdict()
        })
        .expect("bind");
    let to = sink.addr();
    let mut counts = Counts::default();
    let deadline = Instant::now() + DEADLINE;
    let seen_now = || seen.load(Ordering::SeqCst);
    // Two phases, so that no `process` call (which drains what keeps arriving, up to the batch
    // limit) straddles the warm-up: first the warm-up packets, unmeasured; then the measured
    // ones, every `process` call counted.
    for (range, armed) in [(0..WARMUP, false), (WARMUP..total, true)] {
        let end = range.end;
        std::thread::scope(|s| {
            s.spawn(|| paced_sender(to, range, &seen));
            while seen_now() < end {
                assert!(
                    Instant::now() < deadline,
                    "only {} packets seen",
                    seen_now()
                );
                let (result, during) = counting(|| handle.process());
                result.expect("process");
                if armed {
                    counts += during;
                }
            }
        });
    }
    assert!(
        support::wait_until(DEADLINE, || ns
            .rule_packets(false, "filter", "INPUT", "arrived")
            == total as u64),
        "not every packet arrived with mark {mark}: {}",
        ns.list_rules(false, "filter", "INPUT")
    );
    (seen_now(), counts)
}

fn no_extra(_id: u32) {}

#[test]
fn accept_path_does_not_allocate() {
    let Some(ns) = support::enter!() else { return };
    let (seen, counts) = allocations_while_accepting(&ns, Verdict::accept, no_extra);
    assert_eq!(seen, WARMUP + MEASURED);
    assert_eq!(counts, Counts::default(), "allocations in process()");
}

#[test]
fn accept_with_mark_does_not_allocate() {
    let Some(ns) = support::enter!() else { return };
    let (seen, counts) =
        allocations_while_accepting(&ns, || Verdict::accept().with_mark(0x2a), no_extra);
    assert_eq!(seen, WARMUP + MEASURED);
    assert_eq!(counts, Counts::default(), "allocations in process()");
}

/// The counter sees allocations made inside `process()` (here, by the callback): the two
/// tests above can fail.
#[test]
fn allocation_in_the_callback_is_counted() {
    let Some(ns) = support::enter!() else { return };
    fn allocate(id: u32) {
        std::hint::black_box(Box::new(id));
    }
    let (_, counts) = allocations_while_accepting(&ns, Verdict::accept, allocate);
    assert!(counts.allocs >= MEASURED, "{counts:?}");
    assert!(counts.frees >= MEASURED, "{counts:?}");
}

#[test]
fn counting_is_per_thread() {
    let ((), counts) = counting(|| {
        std::hint::black_box(vec![1u8; 64]);
    });
    assert_eq!(
        counts,
        Counts {
            allocs: 1,
            frees: 1
        }
    );

    // Another thread allocates while this one counts: not counted here.
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for i in 0..1000 {
                std::hint::black_box(Box::new(i));
            }
            barrier.wait();
        });
        let ((), counts) = counting(|| {
            barrier.wait();
            barrier.wait();
        });
        assert_eq!(counts, Counts::default());
    });
}
