//! The consumers: what each one is, how it is started (every consumer but the Python one is the
//! harness' own binary re-executed with a hidden subcommand: the C baselines are compiled into
//! it by `build.rs`), the libnfq consumers themselves (the child side), and the parent's handle
//! on a running consumer process (ready handshake, SIGSTOP/SIGCONT, CPU time from `wait4`).

use std::ffi::{c_char, c_int, CString, OsString};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{CopyMode, DeferredPacket, Handle, Pending, QueueConfig, QueueFlags, Verdict};

use super::net::{own_cpu_ns, rusage_cpu_ns, Result};
use super::{peers, Shape};

/// Every consumer the harness measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No NFQUEUE rule at all: the ceiling of the sender and sink.
    NoRule,
    /// `c/classic.c`: legacy API, one recv and one verdict per packet.
    CClassic,
    /// `c/best.c`: libmnl, NO_ENOBUFS, large buffer, range verdicts.
    CBest,
    /// `best.c` with at most 64 packets per range verdict (analysis only).
    CBest64,
    /// libnfq, simplest callback, `set_batch_limit(1)`: one verdict per packet.
    RsNoBatch,
    /// libnfq as a user gets it: batching and automatic range verdicts.
    RsDefault,
    /// libnfq defaults with `QueueFlags::GSO` added (TCP shape).
    RsGso,
    /// libnfq defaults with `QueueFlags::GSO` removed (TCP shape).
    RsNoGso,
    /// libnfq defaults with `QueueFlags::GSO` and a copy range of [`HEADERS_COPY_RANGE`]
    /// bytes: an inspect-and-accept consumer that reads the headers only (TCP shape).
    RsGsoHeaders,
    /// libnfq defaults plus a large receive buffer (analysis only).
    RsBigBuf,
    /// libnfq defaults with `set_batch_limit(1024)`, c-best's batch (analysis only).
    RsBatch1024,
    /// libnfq defaults with the batch time limit out of the way (`set_batch_time_limit(1 s)`):
    /// what the time limit costs or buys (analysis only).
    RsUntimed,
    /// libnfq receiver thread deferring every packet to a verdict worker (`VerdictBatch`).
    RsThreaded,
    /// libnfq defaults, one handle per thread on two queues (`--queue-balance`).
    RsMultiQueue,
    /// The `nfq` crate (crates.io), as its README shows: `recv`, `set_verdict`, `verdict`.
    PeerNfq,
    /// The `nfqueue` crate (crates.io), as its example shows: a callback and `run_loop`.
    PeerNfqueue,
    /// Python's NetfilterQueue (PyPI), as its README shows: `bind`, `pkt.accept()`, `run`.
    PeerPython,
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 17] = [
        Kind::NoRule,
        Kind::CClassic,
        Kind::CBest,
        Kind::CBest64,
        Kind::RsNoBatch,
        Kind::RsDefault,
        Kind::RsNoGso,
        Kind::RsGso,
        Kind::RsGsoHeaders,
        Kind::RsBigBuf,
        Kind::RsBatch1024,
        Kind::RsUntimed,
        Kind::RsThreaded,
        Kind::RsMultiQueue,
        Kind::PeerNfq,
        Kind::PeerNfqueue,
        Kind::PeerPython,
    ];

    /// The kinds a default run measures (the others are for analysing a gap); each shape
    /// measures those of them that [`Kind::measured_in`] it.
    pub const DEFAULT: [Kind; 11] = [
        Kind::NoRule,
        Kind::CClassic,
        Kind::CBest,
        Kind::RsNoBatch,
        Kind::RsDefault,
        Kind::RsNoGso,
        Kind::RsGso,
        Kind::RsGsoHeaders,
        Kind::PeerNfq,
        Kind::PeerNfqueue,
        Kind::PeerPython,
    ];

    /// Short name (command line, table, JSON).
    pub fn name(self) -> &'static str {
        match self {
            Kind::NoRule => "no-rule",
            Kind::CClassic => "c-classic",
            Kind::CBest => "c-best",
            Kind::CBest64 => "c-best-64",
            Kind::RsNoBatch => "nfq-nobatch",
            Kind::RsDefault => "nfq-default",
            Kind::RsGso => "nfq-gso",
            Kind::RsGsoHeaders => "nfq-gso-headers",
            Kind::RsNoGso => "nfq-nogso",
            Kind::RsBigBuf => "nfq-bigbuf",
            Kind::RsBatch1024 => "nfq-batch1024",
            Kind::RsUntimed => "nfq-untimed",
            Kind::RsThreaded => "nfq-threaded",
            Kind::RsMultiQueue => "nfq-multiqueue",
            Kind::PeerNfq => "rs-nfq",
            Kind::PeerNfqueue => "rs-nfqueue",
            Kind::PeerPython => "py-netfilterqueue",
        }
    }

    /// One line for the documentation and the table's legend.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::NoRule => "same sender and sink, no NFQUEUE rule (the ceiling)",
            Kind::CClassic => "(1) C, legacy API, one recv + one nfq_set_verdict per packet",
            Kind::CBest => {
                "(2) C, libmnl, NO_ENOBUFS, large rcvbuf, range verdict per drained batch"
            }
            Kind::RsNoBatch => "(3) libnfq, accept callback, set_batch_limit(1)",
            Kind::RsDefault => "(4) libnfq defaults (Handle::open, QueueConfig::new)",
            Kind::RsGso => "(4g) libnfq defaults + QueueFlags::GSO",
            Kind::RsGsoHeaders => {
                "(4h) libnfq defaults + QueueFlags::GSO + CopyMode::Packet(128): headers only"
            }
            Kind::RsNoGso => "(4n) libnfq defaults without QueueFlags::GSO",
            Kind::RsBigBuf => "(4b) libnfq defaults + set_recv_buffer_size(16 MiB)",
            Kind::CBest64 => "(2') c-best, at most 64 packets per range verdict",
            Kind::RsBatch1024 => "(4') libnfq defaults + set_batch_limit(1024) (c-best's batch)",
            Kind::RsUntimed => "(4t) libnfq defaults + set_batch_time_limit(1 s): no time limit",
            Kind::RsThreaded => {
                "(5a) libnfq receiver + 1 verdict worker (queue_deferrable, VerdictBatch)"
            }
            Kind::RsMultiQueue => {
                "(5b) libnfq defaults, 2 queues (--queue-balance), a handle per thread"
            }
            Kind::PeerNfq => "peer: Rust crate nfq 0.2 (pure netlink), one verdict per packet",
            Kind::PeerNfqueue => {
                "peer: Rust crate nfqueue 0.9 (libnetfilter_queue), one verdict per packet"
            }
            Kind::PeerPython => "peer: Python NetfilterQueue 1.1, one verdict per packet",
        }
    }

    /// Parses [`Kind::name`].
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How many queues it binds (0: no rule).
    pub fn queues(self) -> u16 {
        match self {
            Kind::NoRule => 0,
            Kind::RsMultiQueue => 2,
            _ => 1,
        }
    }

    /// Whether this consumer is measured in `shape` (when asked for).
    pub fn measured_in(self, shape: Shape) -> bool {
        match self {
            Kind::NoRule | Kind::CBest | Kind::RsDefault => true,
            Kind::CClassic | Kind::RsNoBatch | Kind::RsUntimed => shape != Shape::Tcp,
            Kind::RsGso | Kind::RsNoGso | Kind::RsGsoHeaders => shape == Shape::Tcp,
            Kind::CBest64
            | Kind::RsBigBuf
            | Kind::RsBatch1024
            | Kind::RsThreaded
            | Kind::RsMultiQueue
            | Kind::PeerNfq
            | Kind::PeerNfqueue
            | Kind::PeerPython => shape.is_throughput(),
        }
    }

    /// The symbol of its C `main`, if it is a C consumer (`build.rs`).
    pub fn c_main(self) -> Option<CMain> {
        // SAFETY (of the declarations): `build.rs` compiles `c/<source>.c` with `main` renamed to
        // these symbols; each has C's `int main(int, char **)` signature.
        extern "C" {
            fn nfqbench_c_classic_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
            fn nfqbench_c_best_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
            fn nfqbench_c_best64_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
        }
        match self {
            Kind::CClassic => Some(nfqbench_c_classic_main),
            Kind::CBest => Some(nfqbench_c_best_main),
            Kind::CBest64 => Some(nfqbench_c_best64_main),
            _ => None,
        }
    }

    /// Whether it gets a large receive buffer even where consumers keep their defaults.
    pub fn large_buffer_by_design(self) -> bool {
        matches!(self, Kind::CBest | Kind::CBest64 | Kind::RsBigBuf)
    }

    /// Whether it is a libnfq consumer.
    pub fn is_libnfq(self) -> bool {
        matches!(
            self,
            Kind::RsNoBatch
                | Kind::RsDefault
                | Kind::RsGso
                | Kind::RsGsoHeaders
                | Kind::RsNoGso
                | Kind::RsBigBuf
                | Kind::RsBatch1024
                | Kind::RsUntimed
                | Kind::RsThreaded
                | Kind::RsMultiQueue
        )
    }
}

/// A C consumer's `main`.
pub type CMain = unsafe extern "C" fn(c_int, *mut *mut c_char) -> c_int;

/// What a consumer process is told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Which consumer.
    pub kind: Kind,
    /// First queue number.
    pub queue: u16,
    /// Copy range in bytes; 0: the consumer's default (the whole packet for every consumer).
    pub copy_range: u16,
    /// Maximum queue length; `None`: the kernel's default (1024).
    pub max_len: Option<u32>,
    /// Receive buffer to request; `None`: the consumer's default.
    pub rcvbuf: Option<usize>,
    /// Busy-wait in each packet's callback, in ns.
    pub spin_ns: u64,
}

impl Spec {
    /// The positional arguments every consumer takes: `QUEUE COPY_RANGE MAX_LEN RCVBUF SPIN_NS`
    /// (0: default), see `c/common.h`.
    pub fn positional(&self) -> Vec<String> {
        vec![
            self.queue.to_string(),
            self.copy_range.to_string(),
            self.max_len.unwrap_or(0).to_string(),
            self.rcvbuf.unwrap_or(0).to_string(),
            self.spin_ns.to_string(),
        ]
    }

    /// The arguments of a libnfq consumer: its kind, then [`Spec::positional`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![self.kind.name().to_owned()];
        args.extend(self.positional());
        args
    }

    /// Parses [`Spec::to_args`].
    pub fn parse(args: &[String]) -> Result<Spec> {
        let [kind, queue, copy, max_len, rcvbuf, spin] = args else {
            return Err(format!(
                "expected KIND QUEUE COPY MAX_LEN RCVBUF SPIN_NS, got {args:?}"
            ));
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| format!("not a number: {s:?}"));
        let nonzero = |v: u64| (v != 0).then_some(v);
        Ok(Spec {
            kind: Kind::parse(kind).ok_or_else(|| format!("unknown consumer {kind:?}"))?,
            queue: num(queue)? as u16,
            copy_range: num(copy)? as u16,
            max_len: nonzero(num(max_len)?).map(|v| v as u32),
            rcvbuf: nonzero(num(rcvbuf)?).map(|v| v as usize),
            spin_ns: num(spin)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Child side: the libnfq consumers
// ---------------------------------------------------------------------------------------------

/// Entry point of a consumer process (libnfq, a peer crate or a C baseline). Returns only on
/// error.
pub fn consumer_main(args: &[String]) -> i32 {
    let spec = match Spec::parse(args) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("nfqbench consumer: {e}");
            return 2;
        }
    };
    // A name of its own, to tell consumers from the harness in `perf report --comm`.
    let name: &std::ffi::CStr = match spec.kind {
        k if k.c_main().is_some() => c"c-consumer",
        Kind::PeerNfq | Kind::PeerNfqueue => c"peer-consumer",
        _ => c"nfq-consumer",
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    if let Some(main) = spec.kind.c_main() {
        return run_c(main, &spec);
    }
    let result = match spec.kind {
        Kind::PeerNfq => peers::nfq_crate(&spec),
        Kind::PeerNfqueue => peers::nfqueue_crate(&spec),
        _ => run_consumer(&spec),
    };
    if let Err(e) = result {
        eprintln!("nfqbench consumer: {e}");
    }
    1
}

/// Runs a C baseline's `main` with the positional arguments of `spec` (it exits the process).
fn run_c(main: CMain, spec: &Spec) -> i32 {
    let args: Vec<CString> = std::iter::once(spec.kind.name().to_owned())
        .chain(spec.positional())
        .map(|a| CString::new(a).expect("numbers and names have no NUL"))
        .collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: `argv` is a NULL-terminated array of `args.len()` valid NUL-terminated strings
    // that outlive the call (the C code only reads them); `main` is a C main (see `c_main`).
    unsafe { main(args.len() as c_int, argv.as_mut_ptr()) }
}

/// Busy-waits `ns` nanoseconds: the work of a callback in the latency shapes.
#[inline]
pub fn spin(ns: u64) {
    if ns == 0 {
        return;
    }
    let end = Instant::now() + Duration::from_nanos(ns);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Copy range of `nfq-gso-headers`: room for the largest IPv4 and TCP headers (60 bytes each).
pub const HEADERS_COPY_RANGE: u16 = 128;

fn config(spec: &Spec) -> QueueConfig {
    let mut config = QueueConfig::new();
    if spec.copy_range != 0 {
        config = config.copy_mode(CopyMode::Packet(spec.copy_range));
    }
    if let Some(len) = spec.max_len {
        config = config.max_len(len);
    }
    let flags = config.get_flags();
    match spec.kind {
        Kind::RsGso => config.flags(flags | QueueFlags::GSO),
        Kind::RsGsoHeaders => config
            .copy_mode(CopyMode::Packet(HEADERS_COPY_RANGE))
            .flags(flags | QueueFlags::GSO),
        Kind::RsNoGso => config.flags(flags - QueueFlags::GSO),
        _ => config,
    }
}

fn open(spec: &Spec) -> Result<Handle<'static>> {
    let handle = Handle::open().map_err(|e| e.to_string())?;
    if let Some(bytes) = spec.rcvbuf {
        handle
            .set_recv_buffer_size(bytes)
            .map_err(|e| e.to_string())?;
    }
    Ok(handle)
}

/// Runs the receive loop forever (the harness kills the process), going on after the
/// transient errors an overloaded consumer sees (`ENOBUFS`).
fn serve(handle: &Handle<'_>) -> Result<()> {
    loop {
        match handle.run() {
            Err(e) if e.is_transient() => continue,
            Err(e) => return Err(e.to_string()),
            Ok(()) => return Ok(()),
        }
    }
}

/// The handshake line (see `c/common.h`).
pub fn ready(rcvbuf: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "nfqbench-ready cpu_ns={} rcvbuf={rcvbuf}",
        own_cpu_ns()
    );
    let _ = out.flush();
}

fn run_consumer(spec: &Spec) -> Result<()> {
    match spec.kind {
        Kind::RsThreaded => threaded(spec),
        Kind::RsMultiQueue => multiqueue(spec),
        // Every other libnfq consumer: one handle, one queue, an accept callback.
        kind if kind.is_libnfq() => {
            let handle = open(spec)?;
            match spec.kind {
                Kind::RsNoBatch => handle.set_batch_limit(1),
                Kind::RsBatch1024 => handle.set_batch_limit(1024),
                Kind::RsUntimed => handle.set_batch_time_limit(Duration::from_secs(1)),
                _ => {}
            }
            let spin_ns = spec.spin_ns;
            let _queue = handle
                .queue(spec.queue, config(spec), move |_| {
                    spin(spin_ns);
                    Verdict::accept()
                })
                .map_err(|e| e.to_string())?;
            ready(handle.recv_buffer_size().map_err(|e| e.to_string())?);
            serve(&handle)
        }
        other => Err(format!("{} is not a libnfq consumer", other.name())),
    }
}

/// Packets the receiver may hand to the worker before it blocks (back-pressure into the
/// kernel's queue), as in `examples/threaded.rs`.
const POOL_SIZE: usize = 4096;

/// The receiver thread + verdict worker design of `examples/threaded.rs`, with one worker (the
/// machine has two cores: one for each thread).
fn threaded(spec: &Spec) -> Result<()> {
    let handle = open(spec)?;
    let spin_ns = spec.spin_ns;
    let (pool, taken) = mpsc::sync_channel::<DeferredPacket>(POOL_SIZE);
    let mut batch = handle.verdict_sender().batch(64);
    thread::spawn(move || {
        // Take one packet (waiting), then whatever else is already there; then send the batch.
        while let Ok(first) = taken.recv() {
            let mut next = Some(first);
            while let Some(packet) = next {
                if let Err(e) = batch.push(packet, Verdict::accept()) {
                    eprintln!("nfqbench worker: {e}");
                }
                next = taken.try_recv().ok();
            }
            if let Err(e) = batch.flush() {
                eprintln!("nfqbench worker: {e}");
            }
        }
    });
    let _queue = handle
        .queue_deferrable(spec.queue, config(spec), move |pending: Pending<'_>| {
            spin(spin_ns);
            let (packet, handled) = pending.defer();
            if let Err(mpsc::SendError(packet)) = pool.send(packet) {
                drop(packet); // the worker is gone: the fallback verdict
            }
            handled
        })
        .map_err(|e| e.to_string())?;
    ready(handle.recv_buffer_size().map_err(|e| e.to_string())?);
    serve(&handle)
}

/// `examples/multiqueue.rs`: one thread and one handle per queue of the balanced range.
fn multiqueue(spec: &Spec) -> Result<()> {
    let (bound, bound_rx) = mpsc::channel::<Result<usize>>();
    for queue in spec.queue..spec.queue + Kind::RsMultiQueue.queues() {
        let spec = Spec {
            queue,
            ..spec.clone()
        };
        let bound = bound.clone();
        thread::spawn(move || {
            let result = (|| {
                let handle = open(&spec)?;
                let spin_ns = spec.spin_ns;
                let _queue = handle
                    .queue(spec.queue, config(&spec), move |_| {
                        spin(spin_ns);
                        Verdict::accept()
                    })
                    .map_err(|e| e.to_string())?;
                let _ = bound.send(handle.recv_buffer_size().map_err(|e| e.to_string()));
                serve(&handle)
            })();
            if let Err(e) = result {
                let _ = bound.send(Err(format!("queue {queue}: {e}")));
            }
        });
    }
    drop(bound);
    let mut rcvbuf = usize::MAX;
    for _ in 0..Kind::RsMultiQueue.queues() {
        rcvbuf = rcvbuf.min(
            bound_rx
                .recv()
                .map_err(|_| "queue thread died".to_owned())??,
        );
    }
    ready(rcvbuf);
    // Serve until killed; report a queue thread's error.
    match bound_rx.recv() {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------------------------

/// How to start a consumer: the program that embeds the harness, re-executed with a hidden
/// subcommand (libnfq, the peer crates and the C baselines), or Python for NetfilterQueue.
#[derive(Clone, Debug)]
pub struct Launcher {
    exe: PathBuf,
    args: Vec<OsString>,
}

/// The Python consumer (NetfilterQueue), run with `python3`.
pub const PYTHON_CONSUMER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/consumer.py");

impl Launcher {
    /// The running program: `<exe> <subcommand> KIND QUEUE ...`.
    pub fn subcommand(subcommand: &str) -> Result<Launcher> {
        Ok(Launcher {
            exe: std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?,
            args: vec![subcommand.into()],
        })
    }

    fn command(&self, spec: &Spec) -> Command {
        if spec.kind == Kind::PeerPython {
            let mut cmd = Command::new("python3");
            cmd.arg(PYTHON_CONSUMER).args(spec.positional());
            return cmd;
        }
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args).args(spec.to_args());
        cmd
    }
}

/// Whether Python's NetfilterQueue can be imported (`pip install NetfilterQueue`); the reason
/// if not.
pub fn python_available() -> std::result::Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import netfilterqueue"])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import netfilterqueue (pip install NetfilterQueue): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A running consumer process.
pub struct Running {
    child: Child,
    /// CPU time it had used when it reported ready (setup, not measured).
    pub cpu_at_ready_ns: u64,
    /// Receive buffer the kernel granted it (`SO_RCVBUF`).
    pub rcvbuf: usize,
    waited: bool,
}

/// How long a consumer may take to bind its queue and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Running {
    /// Starts the consumer described by `spec` and waits for its ready line.
    pub fn start(spec: &Spec, launcher: &Launcher) -> Result<Running> {
        let mut child = launcher
            .command(spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start consumer {}: {e}", spec.kind.name()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the child's stdout until the ready line (a libtest child prints other lines
        // first), then keeps draining it so the child never blocks on a full pipe.
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Not necessarily at the start: libtest prints `test name ... ` before it.
                if let Some((_, rest)) = line.split_once("nfqbench-ready ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.to_owned());
                    }
                }
            }
        });
        let mut running = Running {
            child,
            cpu_at_ready_ns: 0,
            rcvbuf: 0,
            waited: false,
        };
        let line = rx.recv_timeout(READY_TIMEOUT).map_err(|_| {
            format!(
                "consumer {} did not report ready (it printed its error above, if any)",
                spec.kind.name()
            )
        })?;
        for field in line.split_whitespace() {
            match field.split_once('=') {
                Some(("cpu_ns", v)) => running.cpu_at_ready_ns = v.parse().unwrap_or(0),
                Some(("rcvbuf", v)) => running.rcvbuf = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        Ok(running)
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn signal(&self, sig: libc::c_int) -> Result<()> {
        if self.waited {
            return Err("the consumer process has exited".into());
        }
        // SAFETY: kill(2) with the pid of our own child, which we have not reaped yet (so the
        // pid cannot have been reused).
        if unsafe { libc::kill(self.pid(), sig) } < 0 {
            return Err(format!("kill: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Stops the process (SIGSTOP) and waits until every thread of it is stopped.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let tasks = format!("/proc/{}/task", self.pid());
        while Instant::now() < deadline {
            let all_stopped = std::fs::read_dir(&tasks)
                .map_err(|e| format!("read {tasks}: {e}"))?
                .filter_map(|t| t.ok())
                .all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the command name, which is in parentheses.
                        stat.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
                    })
                });
            if all_stopped {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(1));
        }
        Err("consumer did not stop".into())
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Whether it has exited (crashed: consumers run until killed).
    pub fn exited(&mut self) -> bool {
        let exited = !matches!(self.child.try_wait(), Ok(None));
        self.waited |= exited; // reaped (or gone): nothing left to wait for
        exited
    }

    /// Kills the process and returns the CPU time (user + system, all threads) it used after
    /// reporting ready.
    pub fn finish(mut self) -> Result<u64> {
        self.signal(libc::SIGKILL)?;
        self.reap()
            .map(|total| total.saturating_sub(self.cpu_at_ready_ns))
    }

    fn reap(&mut self) -> Result<u64> {
        // SAFETY: plain data, filled by wait4.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child, writing into live locals.
            let rc = unsafe { libc::wait4(self.pid(), &mut status, 0, &mut ru) };
            if rc == self.pid() {
                self.waited = true;
                return Ok(rusage_cpu_ns(&ru));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("wait4: {e}"));
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.signal(libc::SIGKILL);
            let _ = self.reap();
        }
    }
}
