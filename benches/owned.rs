//! `cargo bench --bench owned`: what taking a packet out of its callback costs, by what the
//! owned copy holds ([`DeferCopy`]): the whole payload, metadata only, or a 64-byte prefix;
//! against deciding in the callback (no copy). See docs/BENCHMARKS.md ("Owned packets").
//!
//! Packets go through the receive path's dispatch (`Handle::dispatch_for_fuzzing`, feature
//! `fuzzing`: the datagram is parsed, every packet is shown to the callback of a queue
//! registered for fuzzing, nothing is sent) as datagrams of 64 packet messages, each a
//! 1400-byte UDP payload with the metadata an `OUTPUT` packet has. The callback defers each
//! packet into a vector; the owned packets are dropped outside the timed part (they send
//! nothing). A counting allocator reports the bytes allocated per packet. No kernel queue, no
//! privilege, no traffic.
//!
//! `cargo bench --features fuzzing --bench owned`. Started without arguments (as
//! `cargo test --benches` does), it runs a few rounds only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use libnfq::{nfqa, sys, DeferCopy, DeferredPacket, Handle, Pending, QueueConfig, Verdict};

// (`required-features = ["fuzzing"]` in Cargo.toml: the entry points below need it.)

/// Counts the bytes and blocks allocated.
struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static BLOCKS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const QUEUE: u16 = 1;
const PER_DATAGRAM: u32 = 64;
const PAYLOAD: usize = 1400;
const PASSES: usize = 7;

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

/// 64 packet messages as the kernel sends a locally generated UDP datagram on `OUTPUT`:
/// header, out device, skb info, uid, gid, priority, payload.
fn datagram() -> Vec<u8> {
    let mut out = Vec::new();
    for id in 1..=PER_DATAGRAM {
        let mut body = Vec::new();
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(3);
        attr(&mut body, nfqa::PACKET_HDR, &hdr);
        attr(&mut body, nfqa::IFINDEX_OUTDEV, &1u32.to_be_bytes());
        attr(&mut body, nfqa::SKB_INFO, &0u32.to_be_bytes());
        attr(&mut body, nfqa::UID, &1000u32.to_be_bytes());
        attr(&mut body, nfqa::GID, &1000u32.to_be_bytes());
        attr(&mut body, nfqa::PRIORITY, &6u32.to_be_bytes());
        attr(&mut body, nfqa::PAYLOAD, &[0x45; PAYLOAD]);
        let len = 16 + 4 + body.len();
        let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&msg_type.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&[libc::AF_INET as u8, 0]);
        out.extend_from_slice(&QUEUE.to_be_bytes());
        out.extend(body);
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Decided in the callback: nothing copied.
    Verdict,
    Defer(DeferCopy),
}

struct Sample {
    ns_per_packet: f64,
    bytes_per_packet: f64,
    blocks_per_packet: f64,
}

/// Runs `rounds` dispatches of the datagram in `mode`; returns the median time per packet and
/// the allocations per packet.
fn measure(mode: Mode, rounds: usize, datagram: &[u8]) -> Sample {
    let kept: Rc<RefCell<Vec<DeferredPacket>>> = Rc::new(RefCell::new(Vec::with_capacity(64)));
    let handle = Handle::open().expect("open");
    let sink = Rc::clone(&kept);
    // The callback must be Send; the Rc never leaves this thread: wrap it.
    struct Local(Rc<RefCell<Vec<DeferredPacket>>>);
    // SAFETY: the handle and the callback stay on this thread for the whole run.
    unsafe impl Send for Local {}
    let local = Local(sink);
    handle
        .register_deferrable_for_fuzzing(QUEUE, QueueConfig::new(), move |pending: Pending<'_>| {
            let local = &local;
            match mode {
                Mode::Verdict => pending.verdict(Verdict::accept()),
                Mode::Defer(copy) => {
                    let (packet, handled) = pending.defer_copying(copy);
                    local.0.borrow_mut().push(packet);
                    handled
                }
            }
        })
        .expect("register for fuzzing");
    let mut times = Vec::with_capacity(rounds);
    let (mut bytes, mut blocks) = (0, 0);
    for _ in 0..rounds {
        let (b0, k0) = (
            BYTES.load(Ordering::Relaxed),
            BLOCKS.load(Ordering::Relaxed),
        );
        let start = Instant::now();
        let (n, _errors) = handle.dispatch_for_fuzzing(datagram).expect("dispatch");
        let elapsed = start.elapsed();
        bytes += BYTES.load(Ordering::Relaxed) - b0;
        blocks += BLOCKS.load(Ordering::Relaxed) - k0;
        assert_eq!(n, PER_DATAGRAM as usize);
        times.push(elapsed.as_nanos() as f64 / f64::from(PER_DATAGRAM));
        // Untimed: drop the owned packets (a queue registered for fuzzing sends nothing).
        kept.borrow_mut().clear();
    }
    times.sort_by(f64::total_cmp);
    let total = (rounds * PER_DATAGRAM as usize) as f64;
    Sample {
        ns_per_packet: times[times.len() / 2],
        bytes_per_packet: bytes as f64 / total,
        blocks_per_packet: blocks as f64 / total,
    }
}

fn main() {
    let full = std::env::args().skip(1).any(|a| a == "--bench");
    let rounds = if full { 5_000 } else { 50 };
    let datagram = datagram();
    let modes = [
        ("verdict in the callback (no copy)", Mode::Verdict),
        ("defer, DeferCopy::All", Mode::Defer(DeferCopy::All)),
        (
            "defer, DeferCopy::Prefix(64)",
            Mode::Defer(DeferCopy::Prefix(64)),
        ),
        (
            "defer, DeferCopy::Metadata",
            Mode::Defer(DeferCopy::Metadata),
        ),
    ];
    // Warm-up, then three passes in alternating order; the median of each mode's passes.
    for (_, mode) in modes {
        measure(mode, rounds / 10 + 1, &datagram);
    }
    let mut results: Vec<Vec<Sample>> = modes.iter().map(|_| Vec::new()).collect();
    for pass in 0..PASSES {
        for i in 0..modes.len() {
            let i = if pass % 2 == 0 {
                i
            } else {
                modes.len() - 1 - i
            };
            results[i].push(measure(modes[i].1, rounds, &datagram));
        }
    }
    println!(
        "{PER_DATAGRAM} packet messages of {PAYLOAD}-byte payloads per datagram, {rounds} \
         datagrams per pass, {PASSES} passes; median ns per packet of each pass"
    );
    println!(
        "(the dispatch entry point copies each datagram once: that allocation is in every row; \
         the extra columns subtract the first row, for time the fastest passes)"
    );
    println!(
        "| mode | ns/packet (each pass) | bytes allocated/packet | extra ns/packet | \
         extra bytes/packet | extra allocations/packet |"
    );
    println!("|---|---|---|---|---|---|");
    // The fastest pass: on a shared machine, slower passes measure the other load.
    let best = |samples: &[Sample]| {
        samples
            .iter()
            .map(|s| s.ns_per_packet)
            .fold(f64::INFINITY, f64::min)
    };
    let base = &results[0];
    for ((name, _), samples) in modes.iter().zip(&results) {
        let times: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.0}", s.ns_per_packet))
            .collect();
        println!(
            "| {name} | {} | {:.0} | {:+.0} | {:+.0} | {:+.1} |",
            times.join(" / "),
            samples[0].bytes_per_packet,
            best(samples) - best(base),
            samples[0].bytes_per_packet - base[0].bytes_per_packet,
            samples[0].blocks_per_packet - base[0].blocks_per_packet,
        );
    }
}
