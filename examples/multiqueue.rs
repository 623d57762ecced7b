//! Scaling across cores with `--queue-balance`: the kernel spreads flows over a range of
//! queues (by a hash of the flow, or by CPU with `--queue-cpu-fanout`), and this program runs
//! one thread per queue, each with its own handle, all stopped by one shared [`Shutdown`].
//!
//! ```text
//! iptables -A INPUT -p udp --dport 9999 -j NFQUEUE --queue-balance 0:1 [--queue-cpu-fanout]
//! cargo run --example multiqueue -- 0:1 [seconds]
//! ```
//!
//! A handle is not `Sync` and its queues borrow it, so each thread opens its own: nothing is
//! shared between the threads but the shutdown switch and the counters. Every queue of the
//! range must be bound, or the packets hashed to an unbound queue are dropped (add
//! `--queue-bypass` to the rule to accept them instead).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use libnfq::{Handle, QueueConfig, Shutdown, Verdict};

static SHUTDOWN: OnceLock<Shutdown> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(shutdown) = SHUTDOWN.get() {
        shutdown.trigger(); // async-signal-safe
    }
}

/// Binds `queue` and accepts its packets until `shutdown` triggers.
fn serve(queue: u16, shutdown: &Shutdown, count: &AtomicU64) -> libnfq::Result<()> {
    let handle = Handle::open()?;
    handle.set_recv_buffer_size(8 << 20)?;
    let _queue = handle.queue(queue, QueueConfig::new(), |_| {
        count.fetch_add(1, Ordering::Relaxed);
        Verdict::accept()
    })?;
    loop {
        match handle.run_until(shutdown) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => eprintln!("queue {queue}: {e}"),
            Err(e) => return Err(e),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let range = args.next().unwrap_or_else(|| "0:1".to_owned());
    let (first, last) = range
        .split_once(':')
        .ok_or("expected a queue range like 0:1")?;
    let (first, last): (u16, u16) = (first.parse()?, last.parse()?);
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

    let counts: Arc<Vec<AtomicU64>> = Arc::new((first..=last).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (first..=last)
        .enumerate()
        .map(|(i, queue)| {
            let (shutdown, counts) = (shutdown.clone(), Arc::clone(&counts));
            thread::spawn(move || serve(queue, &shutdown, &counts[i]))
        })
        .collect();
    eprintln!("multiqueue: queues {first}..={last}, one thread each; Ctrl-C to stop");
    let mut failed = false;
    for (i, t) in threads.into_iter().enumerate() {
        if let Err(e) = t.join().expect("queue thread panicked") {
            eprintln!("queue {}: {e}", first + i as u16);
            failed = true;
            shutdown.trigger(); // one queue failed: stop the others
        }
    }
    for (i, c) in counts.iter().enumerate() {
        println!(
            "queue {}: {} packets",
            first + i as u16,
            c.load(Ordering::Relaxed)
        );
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
