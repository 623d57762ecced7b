//! The classic two-stage NFQUEUE design, in Rust: one thread receives packets and puts them in
//! a bounded pool without deciding them; worker threads take packets from the pool, decide, and
//! send the verdicts (in batches), while the receiver keeps receiving.
//!
//! C programs do this with a mutex around the library handle and hand-made packet copies; here
//! the receiver defers each packet ([`Pending::defer`]) into an owned, `Send` value that carries
//! what its verdict needs, and the workers decide with [`VerdictBatch`]. A packet cannot be
//! decided twice (the verdict consumes it) nor forgotten (dropped undecided, it gets the queue's
//! fallback verdict).
//!
//! ```text
//! iptables -A OUTPUT -p udp --dport 9999 -j NFQUEUE --queue-num 0
//! cargo run --example threaded -- [queue] [workers] [seconds]
//! ```
//!
//! Workers drop datagrams whose payload starts with `drop`, mark those starting with `mark`
//! (mark 1), and accept the rest. The program stops after `seconds` (default: never) or on
//! Ctrl-C, and prints what each worker decided.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::Duration;

use libnfq::{DeferredPacket, Handle, Pending, QueueConfig, Shutdown, Verdict};

/// How many packets may wait in the pool between the receiver and the workers. When it is
/// full, the receiver blocks and packets wait in the kernel's queue instead.
const POOL_SIZE: usize = 4096;

static SHUTDOWN: OnceLock<Shutdown> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(shutdown) = SHUTDOWN.get() {
        shutdown.trigger(); // async-signal-safe
    }
}

fn decide(packet: &DeferredPacket) -> Verdict {
    // The UDP payload starts after the IPv4 header (IHL words) and the 8-byte UDP header.
    let payload = packet.payload();
    let ihl = payload.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    let data = payload.get(ihl + 8..).unwrap_or(&[]);
    if data.starts_with(b"drop") {
        Verdict::drop()
    } else if data.starts_with(b"mark") {
        Verdict::accept().with_mark(1)
    } else {
        Verdict::accept()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let queue: u16 = args.next().map_or(Ok(0), |a| a.parse())?;
    let workers: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let seconds: Option<u64> = args.next().map(|a| a.parse()).transpose()?;

    let shutdown = SHUTDOWN.get_or_init(|| Shutdown::new().expect("eventfd"));
    // SAFETY: `on_signal` only calls the async-signal-safe `Shutdown::trigger`.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    if let Some(s) = seconds {
        let shutdown = shutdown.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(s));
            shutdown.trigger();
        });
    }

    let handle = Handle::open()?;
    let (pool, taken) = mpsc::sync_channel::<DeferredPacket>(POOL_SIZE);
    let taken = Arc::new(std::sync::Mutex::new(taken));
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..workers).map(|_| AtomicU64::new(0)).collect());

    // Verdict workers: take packets from the pool, decide, send verdicts in batches.
    let sender = handle.verdict_sender();
    let mut threads = Vec::new();
    for w in 0..workers {
        let taken = Arc::clone(&taken);
        let counts = Arc::clone(&counts);
        let mut batch = sender.batch(64);
        let shutdown = shutdown.clone();
        threads.push(thread::spawn(move || loop {
            // Take one packet (waiting a little), then whatever else is already there.
            let first = taken
                .lock()
                .expect("pool lock")
                .recv_timeout(Duration::from_millis(50));
            let packet = match first {
                Ok(packet) => packet,
                // Stopped and the pool is drained: every deferred packet got its verdict.
                Err(mpsc::RecvTimeoutError::Timeout) if shutdown.is_triggered() => break,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut next = Some(packet);
            while let Some(packet) = next {
                let verdict = decide(&packet);
                if let Err(e) = batch.push(packet, verdict) {
                    eprintln!("worker {w}: {e}");
                }
                counts[w].fetch_add(1, Ordering::Relaxed);
                next = taken.lock().expect("pool lock").try_recv().ok();
            }
            if let Err(e) = batch.flush() {
                eprintln!("worker {w}: {e}");
            }
        }));
    }

    // The receiver: defer every packet into the pool.
    let queue_handle =
        handle.queue_deferrable(queue, QueueConfig::new(), move |pending: Pending<'_>| {
            let (packet, handled) = pending.defer();
            // A full pool blocks here: back-pressure into the kernel's queue.
            if let Err(mpsc::SendError(packet)) = pool.send(packet) {
                drop(packet); // workers gone: the packet gets the fallback verdict
            }
            handled
        })?;
    eprintln!("threaded: queue {queue}, {workers} workers; Ctrl-C to stop");
    while let Err(e) = handle.run_until(shutdown) {
        if !e.is_transient() {
            return Err(e.into());
        }
        eprintln!("threaded: {e}");
    }
    // The receiver has stopped adding to the pool: the workers decide what is left in it, see
    // the shutdown, and stop. Then the queue is unbound.
    for t in threads {
        let _ = t.join();
    }
    queue_handle.unbind()?;
    for (w, c) in counts.iter().enumerate() {
        println!("worker {w}: {} packets", c.load(Ordering::Relaxed));
    }
    Ok(())
}
