//! nfqbench: libnfq measured side by side with C baselines and peer libraries, in one run, as
//! ratios.
//!
//! The benchmark program (`src/main.rs`, `cargo run --release -p nfqbench -- ...`, or
//! `cargo bench -p nfqbench -- ...`) calls [`cli::main`], which first moves the process into a
//! private network namespace; everything here (rules, sockets, consumer processes, counters)
//! lives in that namespace. See docs/BENCHMARKS.md.
//!
//! One measurement ("run"): start the consumer as its own process and wait until it has bound
//! its queue; then
//! - *drain*: SIGSTOP it, queue a backlog of packets, SIGCONT it and time until the last packet
//!   reached the sink, which reads on its own thread as packets arrive (a real receiver);
//! - *drain-isolated*: the same, but the sink reads only afterwards: the consumer's cost alone;
//! - *blast*, *blast-long*: send unpaced while it runs, with each consumer's default settings:
//!   shows loss (blast-long: 500,000 packets);
//! - *paced*, *burst*: stamped datagrams at a fixed rate, or in bursts, to a consumer whose
//!   callback busy-waits a while: per-packet latency (`latency.rs`);
//! - *tcp*: an iperf3 stream forwarded through the harness' namespace, queued on FORWARD
//!   (`tcp.rs`).
//!
//! The end of a run is the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the last datagram
//! at the sink, so it is exact whenever the sink reads. The consumer's CPU time comes from
//! `wait4`'s rusage, minus what it had used when it reported ready, plus the softirq threads'
//! time during the run. Drops come from the kernel's counters, and every run checks that they
//! account for every packet sent.

pub mod cli;
pub mod consumer;
pub mod latency;
pub mod net;
pub mod peers;
pub mod report;
pub mod tcp;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use consumer::{Kind, Launcher, Running, Spec};
use latency::Latency;
use net::{Netns, Result, SendMode, Sender, Sink, StampedSender};

/// The hidden subcommand that turns the bench binary into a libnfq consumer.
pub const CONSUMER_SUBCOMMAND: &str = "__nfqbench-consumer";

/// Queue and port of the single-queue consumers; queues and port of the multi-queue one; port
/// without any rule (the ceiling).
const SINGLE_QUEUE: u16 = 1;
const SINGLE_PORT: u16 = 9001;
const MULTI_QUEUE: u16 = 2;
const MULTI_PORT: u16 = 9002;
const NO_RULE_PORT: u16 = 9003;

/// Queue length and receive buffer every consumer gets under *drain*, so that the whole backlog
/// fits ("adequate buffers": no packet may be lost).
const DRAIN_MAX_LEN: u32 = 65536;
const DRAIN_RCVBUF: usize = 512 << 20;
/// The "large receive buffer" of `c-best` and `nfq-bigbuf` under *blast*.
const LARGE_RCVBUF: usize = 16 << 20;
/// Flows per queue of the multi-queue consumer (chosen so that both queues get the same share).
const FLOWS_PER_QUEUE: usize = 4;

/// Queue length every consumer gets in the latency shapes, so that a 2000-packet burst fits.
const LATENCY_MAX_LEN: u32 = 4096;
/// Receive buffer the C consumers get in the latency shapes (the size of libnfq's
/// `DEFAULT_RECV_BUFFER`; libnfq consumers keep their own default).
const LATENCY_C_RCVBUF: usize = 8 << 20;
/// Payload of the latency shapes' datagrams.
const LATENCY_PAYLOAD: usize = 64;
/// Queue of the TCP shape (FORWARD).
const TCP_QUEUE: u16 = 5;
/// Model of a consumer's own cost per packet, to turn a load into a rate in the paced shape:
/// rate = load / (callback spin + this). The classic C consumer costs 3-5 us of CPU per packet
/// on a quiet 2-core machine and 7-15 us on the shared one (docs/BENCHMARKS.md): 10 us keeps
/// "83%" near, not beyond, what a consumer gets there.
const PACED_BASE_COST_NS: u64 = 10_000;
/// How long the sink waits for the last datagrams of a latency run.
const LATENCY_QUIET: Duration = Duration::from_millis(200);

/// How long a run may take to finish before it is declared failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the sink waits for stragglers once every packet left the queue.
const SINK_QUIET: Duration = Duration::from_millis(300);

/// The load shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Paused consumer, backlog queued, then resumed; the sink reads as packets arrive (on the
    /// other core): the consumer's cost, including waking a real receiver.
    Drain,
    /// Like `Drain`, but the sink reads only after the run: the consumer's cost alone.
    Isolated,
    /// Unpaced sender against a running consumer with its defaults, live sink: shows loss.
    Blast,
    /// `Blast` with many more packets (500,000 by default).
    LongBlast,
    /// Stamped datagrams at a fixed rate; callbacks spin: latency percentiles.
    Paced,
    /// Stamped datagrams in bursts, each sent once the previous one was decided: latency,
    /// including the head of each burst.
    Burst,
    /// An iperf3 TCP stream forwarded between two namespaces, queued on FORWARD.
    Tcp,
}

impl Shape {
    /// Every shape, in run order.
    pub const ALL: [Shape; 7] = [
        Shape::Drain,
        Shape::Isolated,
        Shape::Blast,
        Shape::LongBlast,
        Shape::Paced,
        Shape::Burst,
        Shape::Tcp,
    ];

    /// Name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Drain => "drain",
            Shape::Isolated => "drain-isolated",
            Shape::Blast => "blast",
            Shape::LongBlast => "blast-long",
            Shape::Paced => "paced",
            Shape::Burst => "burst",
            Shape::Tcp => "tcp",
        }
    }

    /// A backlog drained by a resumed consumer (drain or isolated).
    pub fn is_drain(self) -> bool {
        matches!(self, Shape::Drain | Shape::Isolated)
    }

    /// An unpaced sender against a running consumer (blast or blast-long).
    pub fn is_blast(self) -> bool {
        matches!(self, Shape::Blast | Shape::LongBlast)
    }

    /// A shape measured in packets/s (drain, blast).
    pub fn is_throughput(self) -> bool {
        self.is_drain() || self.is_blast()
    }

    /// A shape measured in per-packet latency (paced, burst).
    pub fn is_latency(self) -> bool {
        matches!(self, Shape::Paced | Shape::Burst)
    }

    /// Whether the sink reads during the run (else only after it).
    pub fn live_sink(self) -> bool {
        matches!(self, Shape::Drain | Shape::Blast | Shape::LongBlast)
    }
}

/// How much of each packet the kernel copies to the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyRange {
    /// The whole packet.
    Full,
    /// The first N bytes.
    Range(u16),
}

impl CopyRange {
    fn range(self) -> u16 {
        match self {
            CopyRange::Full => libnfq::MAX_PAYLOAD_LEN as u16,
            CopyRange::Range(n) => n,
        }
    }

    /// Name in tables and JSON.
    pub fn name(self) -> String {
        match self {
            CopyRange::Full => "full".into(),
            CopyRange::Range(n) => n.to_string(),
        }
    }
}

/// A traffic shape and its parameters: what a group of runs shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Load shape.
    pub shape: Shape,
    /// UDP payload bytes.
    pub payload: usize,
    /// Copy range.
    pub copy: CopyRange,
    /// Packets sent per run (paced, burst: the total over the run).
    pub packets: u64,
    /// Busy-wait of each callback, in us (latency shapes).
    pub spin_us: u64,
    /// Load in percent of the modelled capacity (paced).
    pub load_pct: u64,
    /// Packets per second (paced).
    pub rate: u64,
    /// Packets per burst (burst).
    pub burst: u64,
    /// Seconds of traffic (tcp).
    pub seconds: u32,
}

impl Scenario {
    /// A drain or blast scenario.
    pub fn throughput(shape: Shape, payload: usize, copy: CopyRange, packets: u64) -> Scenario {
        Scenario {
            shape,
            payload,
            copy,
            packets,
            spin_us: 0,
            load_pct: 0,
            rate: 0,
            burst: 0,
            seconds: 0,
        }
    }

    /// A paced scenario: `load_pct` percent of the modelled capacity for `spin_us` callbacks
    /// (see `PACED_BASE_COST_NS`), for `seconds` (at least `min_packets`).
    pub fn paced(spin_us: u64, load_pct: u64, seconds: f64, min_packets: u64) -> Scenario {
        let rate = load_pct * 10_000_000 / (spin_us * 1000 + PACED_BASE_COST_NS);
        Scenario {
            shape: Shape::Paced,
            payload: LATENCY_PAYLOAD,
            copy: CopyRange::Full,
            packets: ((rate as f64 * seconds) as u64).max(min_packets),
            spin_us,
            load_pct,
            rate,
            burst: 0,
            seconds: 0,
        }
    }

    /// A burst scenario: `bursts` bursts of `burst` packets.
    pub fn bursts(spin_us: u64, burst: u64, bursts: u64) -> Scenario {
        Scenario {
            shape: Shape::Burst,
            payload: LATENCY_PAYLOAD,
            copy: CopyRange::Full,
            packets: burst * bursts,
            spin_us,
            load_pct: 0,
            rate: 0,
            burst,
            seconds: 0,
        }
    }

    /// A TCP scenario of `seconds`.
    pub fn tcp(seconds: u32) -> Scenario {
        Scenario {
            shape: Shape::Tcp,
            payload: 0,
            copy: CopyRange::Full,
            packets: 0,
            spin_us: 0,
            load_pct: 0,
            rate: 0,
            burst: 0,
            seconds,
        }
    }

    /// `drain 64B copy=full`, `paced 50us 83% (15.1k/s)`, `burst 100 5us`, `tcp 3s`.
    pub fn label(&self) -> String {
        match self.shape {
            Shape::Paced => format!(
                "paced {}us {}% ({}/s)",
                self.spin_us,
                self.load_pct,
                report::si(self.rate as f64)
            ),
            Shape::Burst => format!("burst {} {}us", self.burst, self.spin_us),
            Shape::Tcp => format!("tcp forward {}s", self.seconds),
            shape => format!(
                "{} {}B copy={}",
                shape.name(),
                self.payload,
                self.copy.name()
            ),
        }
    }
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Its scenario.
    pub scenario: Scenario,
    /// The consumer.
    pub kind: Kind,
    /// Repetition index.
    pub rep: usize,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the sink received.
    pub received: u64,
    /// Kernel drops: queue full.
    pub queue_dropped: u64,
    /// Kernel drops: consumer socket buffer full.
    pub user_dropped: u64,
    /// Kernel drops at the sink socket (should stay 0).
    pub sink_dropped: u64,
    /// Datagrams with a wrong length at the sink.
    pub bad_len: u64,
    /// From SIGCONT (drain) or the first send (blast) to the last arrival.
    pub seconds: f64,
    /// Packets the sink received per second.
    pub pps: f64,
    /// The sender's own rate (blast).
    pub send_pps: f64,
    /// The consumer's CPU time (user + system) for the run, 0 without consumer.
    pub cpu_ns: u64,
    /// CPU time of the kernel's softirq threads during the run (deferred network work).
    pub softirq_ns: u64,
    /// Share of the machine's CPU time used by other processes during the run (co-tenant load,
    /// from `/proc/stat`; ±10 ms of resolution).
    pub other_load: f64,
    /// Receive buffer the consumer got.
    pub rcvbuf: usize,
    /// Packets each queue handed to the consumer.
    pub per_queue: Vec<u64>,
    /// Latencies (paced, burst).
    pub latency: Option<Latency>,
    /// TCP: bits per second the iperf3 receiver got.
    pub bps: f64,
    /// TCP: the iperf3 sender's retransmissions.
    pub retransmits: u64,
    /// Packets the consumer's queue handed out (tcp: how many went through the queue).
    pub queued: u64,
    /// What went wrong, if the run failed.
    pub error: Option<String>,
}

impl RunResult {
    fn new(scenario: Scenario, kind: Kind, rep: usize) -> RunResult {
        RunResult {
            scenario,
            kind,
            rep,
            sent: 0,
            received: 0,
            queue_dropped: 0,
            user_dropped: 0,
            sink_dropped: 0,
            bad_len: 0,
            seconds: 0.0,
            pps: 0.0,
            send_pps: 0.0,
            cpu_ns: 0,
            softirq_ns: 0,
            other_load: 0.0,
            rcvbuf: 0,
            per_queue: Vec::new(),
            latency: None,
            bps: 0.0,
            retransmits: 0,
            queued: 0,
            error: None,
        }
    }

    /// Sent datagrams neither received nor counted by a kernel drop counter (must be 0).
    pub fn unaccounted(&self) -> i64 {
        self.sent as i64
            - (self.received + self.queue_dropped + self.user_dropped + self.sink_dropped) as i64
    }

    /// Sent datagrams that did not arrive.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// CPU time per packet received, in ns: the consumer's, plus the softirq threads' (the
    /// kernel's deferred share of the work its verdicts caused).
    pub fn cpu_per_packet_ns(&self) -> Option<f64> {
        (self.cpu_ns > 0 && self.received > 0)
            .then(|| (self.cpu_ns + self.softirq_ns) as f64 / self.received as f64)
    }

    /// The softirq threads' part of [`RunResult::cpu_per_packet_ns`].
    pub fn softirq_per_packet_ns(&self) -> Option<f64> {
        (self.cpu_ns > 0 && self.received > 0)
            .then(|| self.softirq_ns as f64 / self.received as f64)
    }
}

/// Command-line options.
#[derive(Clone, Debug)]
pub struct Options {
    /// CI mode: every consumer once per shape on a few thousand packets, correctness only.
    pub smoke: bool,
    /// Repetitions of each scenario.
    pub reps: usize,
    /// Repetitions of the drain shapes, at least `reps` (they are short, and their medians
    /// need more samples than the others to resolve a few percent).
    pub drain_reps: usize,
    /// Backlog of a drain run.
    pub drain_packets: u64,
    /// Packets of a blast run.
    pub blast_packets: u64,
    /// Packets of a blast-long run.
    pub long_blast_packets: u64,
    /// UDP payload sizes (drain, blast).
    pub payloads: Vec<usize>,
    /// UDP payload sizes (drain-isolated).
    pub isolated_payloads: Vec<usize>,
    /// UDP payload sizes (blast-long).
    pub long_payloads: Vec<usize>,
    /// Copy ranges (drain, blast).
    pub copies: Vec<CopyRange>,
    /// Callback busy-waits, in us (paced, burst).
    pub spins: Vec<u64>,
    /// Loads in percent of the modelled capacity (paced).
    pub loads: Vec<u64>,
    /// Seconds of a paced run.
    pub paced_seconds: f64,
    /// Burst sizes (burst).
    pub bursts: Vec<u64>,
    /// Packets per burst run (rounded up to whole bursts, at least 5 bursts).
    pub burst_packets: u64,
    /// Seconds of an iperf3 run (tcp).
    pub tcp_seconds: u32,
    /// Load shapes.
    pub shapes: Vec<Shape>,
    /// Consumers, in table order (each shape measures those it supports).
    pub kinds: Vec<Kind>,
    /// Send buffer of the blast sender; `None`: the socket's default.
    pub blast_sndbuf: Option<usize>,
    /// Run each consumer once, unrecorded, before measuring.
    pub warmup: bool,
    /// Where results go.
    pub out_dir: PathBuf,
}

/// The usage text.
pub const USAGE: &str = "\
usage: cargo run --release -p nfqbench -- [options]   (or: cargo bench -p nfqbench -- [options])
  --smoke                 every consumer once per shape on a few packets; correctness only
  --reps N                repetitions of every scenario (default 5)
  --drain-reps N          repetitions of drain and drain-isolated, at least --reps (default 25)
  --shapes X,Y            drain, drain-isolated, blast, blast-long, paced, burst, tcp (default all)
  --consumers X,Y         subset of: no-rule c-classic c-best nfq-nobatch nfq-default nfq-nogso
                          nfq-gso nfq-gso-headers rs-nfq rs-nfqueue py-netfilterqueue (default:
                          these; each shape
                          measures those it supports), and for analysis c-best-64, nfq-bigbuf,
                          nfq-batch1024, nfq-threaded, nfq-multiqueue (drain and blast shapes),
                          nfq-untimed (every shape but tcp)
 drain and blast:
  --packets N             backlog of a drain run (default 60000; the kernel holds at most 65536)
  --blast-packets N       packets of a blast run (default 100000)
  --long-blast-packets N  packets of a blast-long run (default 500000)
  --blast-sndbuf BYTES    send buffer of the blast sender (default: the socket's default, which
                          paces the sender; a large one makes it a flood nothing paces)
  --payloads A,B          UDP payload sizes of drain and blast (default 64,1400)
  --isolated-payloads A,B UDP payload sizes of drain-isolated (default 64)
  --long-payloads A,B     UDP payload sizes of blast-long (default 64)
  --copy X,Y              copy ranges: full or a byte count (default full)
 latency (paced, burst; 64-byte datagrams, whole copies):
  --spins A,B             callback busy-wait in us (default 0,5,50)
  --loads A,B             paced load, percent of 1/(spin + 10 us) packets/s (default 25,50,83)
  --paced-seconds S       length of a paced run (default 0.3)
  --bursts A,B            burst sizes (default 100,2000)
  --burst-packets N       packets per burst run, whole bursts, at least 5 (default 3000)
 tcp:
  --tcp-seconds N         length of an iperf3 run (default 3)
  --no-warmup             skip the unrecorded warm-up run of each consumer
  --out DIR               results directory (default target/nfqbench)";

impl Options {
    /// Repetitions of `scenario`: 1 in the smoke, `drain_reps` (at least `reps`) for the drain
    /// shapes, else `reps`.
    pub fn reps_for(&self, scenario: &Scenario) -> usize {
        if self.smoke {
            1
        } else if scenario.shape.is_drain() {
            self.reps.max(self.drain_reps)
        } else {
            self.reps
        }
    }

    /// Parses the command line (without the program name). Ignores `--bench`, which cargo
    /// passes to every bench binary.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            smoke: false,
            reps: 5,
            drain_reps: 25,
            drain_packets: 60_000,
            blast_packets: 100_000,
            long_blast_packets: 500_000,
            payloads: vec![64, 1400],
            isolated_payloads: vec![64],
            long_payloads: vec![64],
            copies: vec![CopyRange::Full],
            spins: vec![0, 5, 50],
            loads: vec![25, 50, 83],
            paced_seconds: 0.3,
            bursts: vec![100, 2000],
            burst_packets: 3000,
            tcp_seconds: 3,
            shapes: Shape::ALL.to_vec(),
            kinds: Kind::DEFAULT.to_vec(),
            blast_sndbuf: None,
            warmup: true,
            out_dir: target_dir().join("nfqbench"),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
            };
            let number = |v: String| {
                v.parse::<u64>()
                    .map_err(|_| format!("{arg}: not a number: {v}"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--smoke" => o.smoke = true,
                "--reps" => o.reps = number(value()?)?.max(1) as usize,
                "--drain-reps" => o.drain_reps = number(value()?)? as usize,
                "--packets" => o.drain_packets = number(value()?)?,
                "--blast-packets" => o.blast_packets = number(value()?)?,
                "--long-blast-packets" => o.long_blast_packets = number(value()?)?,
                "--blast-sndbuf" => o.blast_sndbuf = Some(number(value()?)? as usize),
                "--no-warmup" => o.warmup = false,
                "--payloads" => o.payloads = list(&value()?, |s| s.parse().ok())?,
                "--long-payloads" => o.long_payloads = list(&value()?, |s| s.parse().ok())?,
                "--isolated-payloads" => o.isolated_payloads = list(&value()?, |s| s.parse().ok())?,
                "--copy" => {
                    o.copies = list(&value()?, |s| match s {
                        "full" => Some(CopyRange::Full),
                        n => n.parse().ok().map(CopyRange::Range),
                    })?
                }
                "--spins" => o.spins = list(&value()?, |s| s.parse().ok())?,
                "--loads" => o.loads = list(&value()?, |s| s.parse().ok())?,
                "--paced-seconds" => {
                    let v = value()?;
                    o.paced_seconds = v
                        .parse()
                        .map_err(|_| format!("--paced-seconds: not a number: {v}"))?
                }
                "--bursts" => o.bursts = list(&value()?, |s| s.parse().ok())?,
                "--burst-packets" => o.burst_packets = number(value()?)?,
                "--tcp-seconds" => o.tcp_seconds = number(value()?)?.max(1) as u32,
                "--shapes" => {
                    o.shapes = list(&value()?, |s| {
                        Shape::ALL.into_iter().find(|x| x.name() == s)
                    })?
                }
                "--consumers" => o.kinds = list(&value()?, Kind::parse)?,
                "--out" => o.out_dir = PathBuf::from(value()?),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        let sizes = o
            .payloads
            .iter()
            .chain(&o.isolated_payloads)
            .chain(&o.long_payloads);
        if sizes.into_iter().any(|&p| !(16..=1472).contains(&p)) {
            return Err("--payloads: sizes must be 16..=1472 (one loopback datagram)".into());
        }
        if o.bursts.contains(&0) || o.loads.contains(&0) {
            return Err("--bursts and --loads must be positive".into());
        }
        Ok(o)
    }

    /// The scenarios, in run order.
    pub fn scenarios(&self) -> Vec<Scenario> {
        if self.smoke {
            return smoke_scenarios()
                .into_iter()
                .filter(|s| self.shapes.contains(&s.shape))
                .collect();
        }
        let mut out = Vec::new();
        for &shape in &self.shapes {
            match shape {
                Shape::Drain | Shape::Isolated | Shape::Blast => {
                    let payloads = match shape {
                        Shape::Isolated => &self.isolated_payloads,
                        _ => &self.payloads,
                    };
                    for &payload in payloads {
                        for &copy in &self.copies {
                            let packets = match shape {
                                Shape::Blast => self.blast_packets,
                                _ => self.drain_packets,
                            };
                            out.push(Scenario::throughput(shape, payload, copy, packets));
                        }
                    }
                }
                Shape::LongBlast => {
                    for &payload in &self.long_payloads {
                        for &copy in &self.copies {
                            out.push(Scenario::throughput(
                                shape,
                                payload,
                                copy,
                                self.long_blast_packets,
                            ));
                        }
                    }
                }
                Shape::Paced => {
                    for &spin in &self.spins {
                        for &load in &self.loads {
                            out.push(Scenario::paced(spin, load, self.paced_seconds, 1000));
                        }
                    }
                }
                Shape::Burst => {
                    for &spin in &self.spins {
                        for &burst in &self.bursts {
                            let n = self.burst_packets.div_ceil(burst).max(5);
                            out.push(Scenario::bursts(spin, burst, n));
                        }
                    }
                }
                Shape::Tcp => out.push(Scenario::tcp(self.tcp_seconds)),
            }
        }
        out
    }

    /// The consumers measured in `scenario`, in table order.
    pub fn kinds_for(&self, scenario: &Scenario) -> Vec<Kind> {
        self.kinds
            .iter()
            .copied()
            .filter(|k| k.measured_in(scenario.shape))
            .collect()
    }
}

fn list<T>(value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    value
        .split(',')
        .map(|s| parse(s.trim()).ok_or_else(|| format!("cannot parse {s:?}\n{USAGE}")))
        .collect()
}

/// The smoke runs: every shape, both copy modes, both sizes, a few thousand packets each.
fn smoke_scenarios() -> Vec<Scenario> {
    vec![
        Scenario::throughput(Shape::Drain, 1400, CopyRange::Full, 2000),
        Scenario::throughput(Shape::Isolated, 64, CopyRange::Full, 2000),
        Scenario::throughput(Shape::Blast, 64, CopyRange::Range(64), 4000),
        Scenario::throughput(Shape::LongBlast, 64, CopyRange::Full, 6000),
        Scenario::paced(5, 25, 0.05, 500),
        Scenario::bursts(5, 100, 5),
        Scenario::tcp(1),
    ]
}

/// The workspace's `target/` (found above the running binary), for outputs.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").exists())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The harness, set up in the calling thread's (private) network namespace.
pub struct Bench {
    ns: Netns,
    launcher: Launcher,
    single: Sink,
    multi: Sink,
    no_rule: Sink,
    /// Source addresses that spread evenly over the multi-queue range (found once).
    balanced: Option<Vec<Ipv4Addr>>,
    blast_sndbuf: Option<usize>,
    /// The TCP shape's namespaces and iperf3 servers.
    forward: Option<tcp::Forward>,
}

impl Bench {
    /// Installs the rules and sinks (and the TCP topology if `tcp`).
    pub fn new(launcher: Launcher, opts: &Options, tcp: bool) -> Result<Bench> {
        let ns = Netns::claim_current()?;
        let single = SINGLE_QUEUE.to_string();
        let multi = format!("{MULTI_QUEUE}:{}", MULTI_QUEUE + 1);
        let (single_port, multi_port) = (SINGLE_PORT.to_string(), MULTI_PORT.to_string());
        #[rustfmt::skip]
        let rules: [&[&str]; 2] = [
            &["-A", "OUTPUT", "-p", "udp", "--dport", &single_port,
              "-j", "NFQUEUE", "--queue-num", &single],
            &["-A", "OUTPUT", "-p", "udp", "--dport", &multi_port,
              "-j", "NFQUEUE", "--queue-balance", &multi],
        ];
        for rule in rules {
            ns.iptables(rule)?;
        }
        let forward = match tcp {
            true => Some(tcp::Forward::new(&ns, TCP_QUEUE)?),
            false => None,
        };
        Ok(Bench {
            ns,
            launcher,
            single: Sink::bind(SINGLE_PORT)?,
            multi: Sink::bind(MULTI_PORT)?,
            no_rule: Sink::bind(NO_RULE_PORT)?,
            balanced: None,
            blast_sndbuf: opts.blast_sndbuf,
            forward,
        })
    }

    fn sink(&self, kind: Kind) -> (&Sink, u16) {
        match kind.queues() {
            0 => (&self.no_rule, NO_RULE_PORT),
            1 => (&self.single, SINGLE_PORT),
            _ => (&self.multi, MULTI_PORT),
        }
    }

    fn queues(kind: Kind, shape: Shape) -> Vec<u16> {
        let first = match (kind.queues(), shape) {
            (0, _) => return Vec::new(),
            (_, Shape::Tcp) => TCP_QUEUE,
            (1, _) => SINGLE_QUEUE,
            _ => MULTI_QUEUE,
        };
        (first..first + kind.queues()).collect()
    }

    /// What the consumer is told: under drain, room for the whole backlog; under blast, its
    /// own defaults (a large receive buffer only for those designed with one); in the latency
    /// shapes, a queue that holds a burst, the same receive buffer for the C consumers as
    /// libnfq's, and the callback's spin; under tcp, its defaults.
    fn spec(kind: Kind, scenario: &Scenario) -> Spec {
        let shape = scenario.shape;
        let by_design = kind.large_buffer_by_design().then_some(LARGE_RCVBUF);
        let (copy_range, max_len, rcvbuf) = match shape {
            Shape::Drain | Shape::Isolated => (
                scenario.copy.range(),
                Some(DRAIN_MAX_LEN),
                Some(DRAIN_RCVBUF),
            ),
            Shape::Blast | Shape::LongBlast => (scenario.copy.range(), None, by_design),
            Shape::Paced | Shape::Burst => (
                scenario.copy.range(),
                Some(LATENCY_MAX_LEN),
                match kind.c_main() {
                    Some(_) => by_design.or(Some(LATENCY_C_RCVBUF)),
                    None => by_design,
                },
            ),
            Shape::Tcp => (0, None, by_design),
        };
        Spec {
            kind,
            queue: Self::queues(kind, shape).first().copied().unwrap_or(0),
            copy_range,
            max_len,
            rcvbuf,
            spin_ns: scenario.spin_us * 1000,
        }
    }

    /// One measurement; a failure is recorded in the result, not returned.
    pub fn run(&mut self, scenario: Scenario, kind: Kind, rep: usize) -> RunResult {
        let mut result = RunResult::new(scenario, kind, rep);
        if let Err(e) = self.measure(&mut result) {
            result.error = Some(e);
        }
        result
    }

    fn start(&self, kind: Kind, scenario: &Scenario) -> Result<Option<Running>> {
        match kind {
            Kind::NoRule => Ok(None),
            _ => Running::start(&Self::spec(kind, scenario), &self.launcher).map(Some),
        }
    }

    fn measure(&mut self, r: &mut RunResult) -> Result<()> {
        match r.scenario.shape {
            shape if shape.is_latency() => return self.measure_latency(r),
            Shape::Tcp => return self.measure_tcp(r),
            _ => {}
        }
        let (scenario, kind) = (r.scenario, r.kind);
        let queues = Self::queues(kind, scenario.shape);
        // Leftovers of an earlier (failed) run must not count.
        self.sink(kind)
            .0
            .collect(u64::MAX, 0, Duration::ZERO, Duration::ZERO)?;
        let mut consumer = self.start(kind, &scenario)?;
        let sources = match kind {
            Kind::RsMultiQueue => self.balanced_sources()?,
            _ => vec![Ipv4Addr::LOCALHOST],
        };
        let mode = match scenario.shape {
            Shape::Blast | Shape::LongBlast => SendMode::Blocking {
                sndbuf: self.blast_sndbuf,
            },
            _ => SendMode::Backlog,
        };
        let (sink, port) = self.sink(kind);
        let sender = Sender::new(&sources, port, scenario.payload, mode)?;
        let before = net::queue_stats()?;
        let sink_drops_before = net::udp_receive_drops()?;

        let live = scenario.shape.live_sink();
        let (got, start_ns, window) = std::thread::scope(|scope| -> Result<_> {
            // A live sink reads during the run, on the other core, as a real receiver would;
            // by default the sink reads only afterwards.
            let reader = live.then(|| {
                scope.spawn(|| {
                    let first_wait = Duration::from_secs(10);
                    sink.collect(scenario.packets, scenario.payload, first_wait, SINK_QUIET)
                })
            });
            let (start_ns, window);
            match (&consumer, scenario.shape) {
                (Some(c), shape) if shape.is_drain() => {
                    c.pause()?;
                    r.sent = sender.send(scenario.packets)?;
                    window = Window::open();
                    start_ns = net::realtime_ns();
                    c.resume()?;
                }
                _ => {
                    window = Window::open();
                    start_ns = net::realtime_ns();
                    let t = Instant::now();
                    r.sent = sender.send(scenario.packets)?;
                    r.send_pps = r.sent as f64 / t.elapsed().as_secs_f64();
                }
            }
            if let Some(c) = consumer.as_mut() {
                wait_until_decided(c, &queues, &before, r.sent)?;
            }
            let window = window.close();
            let after = net::queue_stats()?;
            let total = |stats: &[net::QueueStat]| net::sum_stats(stats, &queues);
            let (b, a) = (total(&before), total(&after));
            r.queue_dropped = a.queue_dropped - b.queue_dropped;
            r.user_dropped = a.user_dropped - b.user_dropped;
            r.per_queue = queues
                .iter()
                .map(|q| {
                    let (b, a) = (total_of(&before, *q), total_of(&after, *q));
                    (a.id_sequence - b.id_sequence) - (a.user_dropped - b.user_dropped)
                })
                .collect();
            let got = match reader {
                Some(reader) => reader.join().map_err(|_| "the sink thread panicked")??,
                None => {
                    let expect = r.sent - r.queue_dropped - r.user_dropped;
                    sink.collect(expect, scenario.payload, SINK_QUIET, SINK_QUIET)?
                }
            };
            Ok((got, start_ns, window))
        })?;
        r.received = got.count;
        r.bad_len = got.bad_len;
        r.sink_dropped = net::udp_receive_drops()? - sink_drops_before;
        if consumer.is_some() {
            r.softirq_ns = window.softirq_ns;
        }
        r.seconds = (got.last_ns - start_ns) as f64 / 1e9;
        if r.received > 0 && r.seconds > 0.0 {
            r.pps = r.received as f64 / r.seconds;
        }
        if let Some(c) = consumer.take() {
            r.rcvbuf = c.rcvbuf;
            r.cpu_ns = c.finish()?;
        }
        r.other_load = window.other_load(r.cpu_ns);
        Ok(())
    }

    /// A latency run (paced or burst): stamped datagrams, the sink read after the run.
    fn measure_latency(&mut self, r: &mut RunResult) -> Result<()> {
        let (scenario, kind) = (r.scenario, r.kind);
        let queues = Self::queues(kind, scenario.shape);
        let mut consumer = self.start(kind, &scenario)?;
        let (sink, port) = self.sink(kind);
        // Leftovers of an earlier (failed) run must not count.
        sink.collect(u64::MAX, 0, Duration::ZERO, Duration::ZERO)?;
        let mut sender = StampedSender::new(port, scenario.payload)?;
        let before = net::queue_stats()?;
        let sink_drops_before = net::udp_receive_drops()?;
        net::precise_sleeps();
        let (offset, _) = net::realtime_offset_ns();
        let window = Window::open();
        let start_ns = net::realtime_ns();
        match scenario.shape {
            Shape::Paced => {
                let interval = 1e9 / scenario.rate.max(1) as f64;
                let t0 = net::monotonic_ns() + 1_000_000;
                for i in 0..scenario.packets {
                    net::wait_until_mono(t0 + (i as f64 * interval) as u64);
                    sender.send(i)?;
                    r.sent += 1;
                }
                r.send_pps = scenario.rate as f64;
            }
            _ => {
                // Each burst leaves at once; the next one once every packet was decided.
                let burst = scenario.burst.max(1);
                for b in 0..scenario.packets / burst {
                    for j in 0..burst {
                        sender.send(b * burst + j)?;
                    }
                    r.sent += burst;
                    if let Some(c) = consumer.as_mut() {
                        wait_until_decided(c, &queues, &before, r.sent)?;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if let Some(c) = consumer.as_mut() {
            wait_until_decided(c, &queues, &before, r.sent)?;
        }
        let window = window.close();
        let after = net::queue_stats()?;
        let (b, a) = (
            net::sum_stats(&before, &queues),
            net::sum_stats(&after, &queues),
        );
        r.queue_dropped = a.queue_dropped - b.queue_dropped;
        r.user_dropped = a.user_dropped - b.user_dropped;
        r.queued = a.id_sequence - b.id_sequence;
        let expect = r.sent - r.queue_dropped - r.user_dropped;
        let (got, stamps) = sink.collect_stamped(expect, scenario.payload, LATENCY_QUIET)?;
        let (offset_end, _) = net::realtime_offset_ns();
        if (offset_end - offset).abs() > latency::MAX_OFFSET_DRIFT_NS {
            return Err(format!(
                "CLOCK_REALTIME moved by {} ns against CLOCK_MONOTONIC during the run",
                offset_end - offset
            ));
        }
        r.received = got.count;
        r.bad_len = got.bad_len;
        r.sink_dropped = net::udp_receive_drops()? - sink_drops_before;
        let burst = (scenario.shape == Shape::Burst).then_some(scenario.burst);
        r.latency = Some(latency::summarize(&stamps, offset, burst)?);
        r.seconds = (got.last_ns - start_ns) as f64 / 1e9;
        if r.received > 0 && r.seconds > 0.0 {
            r.pps = r.received as f64 / r.seconds;
        }
        if let Some(c) = consumer.take() {
            r.softirq_ns = window.softirq_ns;
            r.rcvbuf = c.rcvbuf;
            r.cpu_ns = c.finish()?;
        }
        r.other_load = window.other_load(r.cpu_ns);
        Ok(())
    }

    /// A TCP run: one iperf3 stream through the router namespace, queued unless `no-rule`.
    fn measure_tcp(&mut self, r: &mut RunResult) -> Result<()> {
        let (scenario, kind) = (r.scenario, r.kind);
        let forward = self
            .forward
            .as_ref()
            .ok_or("the TCP topology is not set up")?;
        let queues = Self::queues(kind, Shape::Tcp);
        let mut consumer = self.start(kind, &scenario)?;
        let port = match kind {
            Kind::NoRule => tcp::NO_RULE_PORT,
            _ => tcp::QUEUED_PORT,
        };
        let before = net::queue_stats()?;
        let window = Window::open();
        let result = forward.iperf(port, scenario.seconds)?;
        let window = window.close();
        if let Some(c) = consumer.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while net::sum_stats(&net::queue_stats()?, &queues).waiting > 0 {
                if c.exited() || Instant::now() > deadline {
                    return Err("packets still waiting in the queue after the run".into());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let after = net::queue_stats()?;
        let (b, a) = (
            net::sum_stats(&before, &queues),
            net::sum_stats(&after, &queues),
        );
        r.queue_dropped = a.queue_dropped - b.queue_dropped;
        r.user_dropped = a.user_dropped - b.user_dropped;
        r.queued = a.id_sequence - b.id_sequence;
        r.bps = result.bits_per_second;
        r.retransmits = result.retransmits;
        r.seconds = result.seconds;
        if let Some(c) = consumer.take() {
            r.softirq_ns = window.softirq_ns;
            r.rcvbuf = c.rcvbuf;
            r.cpu_ns = c.finish()?;
        }
        r.other_load = window.other_load(r.cpu_ns);
        Ok(())
    }

    /// Source addresses whose flows the kernel hashes evenly onto the multi-queue range:
    /// probed once (one datagram per candidate, seeing which queue's id moved) while a
    /// multi-queue consumer is bound.
    fn balanced_sources(&mut self) -> Result<Vec<Ipv4Addr>> {
        if let Some(sources) = &self.balanced {
            return Ok(sources.clone());
        }
        let queues = Self::queues(Kind::RsMultiQueue, Shape::Drain);
        let mut chosen: Vec<Vec<Ipv4Addr>> = vec![Vec::new(); queues.len()];
        for host in 1..=254u8 {
            if chosen.iter().all(|c| c.len() >= FLOWS_PER_QUEUE) {
                break;
            }
            let source = Ipv4Addr::new(127, 0, 1, host);
            let before = net::queue_stats()?;
            Sender::new(
                &[source],
                MULTI_PORT,
                16,
                SendMode::Blocking { sndbuf: None },
            )?
            .send_from(0)?;
            let after = net::queue_stats()?;
            let hit = queues
                .iter()
                .position(|&q| total_of(&after, q).id_sequence != total_of(&before, q).id_sequence);
            if let Some(i) = hit.filter(|&i| chosen[i].len() < FLOWS_PER_QUEUE) {
                chosen[i].push(source);
            }
        }
        if chosen.iter().any(|c| c.len() < FLOWS_PER_QUEUE) {
            return Err(format!("could not find balanced flows: {chosen:?}"));
        }
        // Let the probes through and throw them away.
        let deadline = Instant::now() + Duration::from_secs(5);
        while net::sum_stats(&net::queue_stats()?, &queues).waiting > 0 && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let quiet = Duration::from_millis(100);
        self.multi.collect(u64::MAX, 0, quiet, quiet)?;
        // Interleave the queues' flows, so that round-robin sending alternates queues.
        let sources: Vec<Ipv4Addr> = (0..FLOWS_PER_QUEUE)
            .flat_map(|i| chosen.iter().map(move |c| c[i]))
            .collect();
        self.balanced = Some(sources.clone());
        Ok(sources)
    }

    /// The namespace the harness runs in.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }
}

/// CPU accounting over the measured part of a run.
struct Window {
    at: Instant,
    busy_ns: u64,
    own_ns: u64,
    softirq_ns: u64,
}

impl Window {
    fn open() -> Window {
        Window {
            at: Instant::now(),
            busy_ns: net::machine_busy_ns(),
            own_ns: net::own_cpu_ns(),
            softirq_ns: net::ksoftirqd_ns(),
        }
    }

    /// The differences since `open`.
    fn close(self) -> Window {
        Window {
            at: self.at,
            busy_ns: net::machine_busy_ns().saturating_sub(self.busy_ns),
            own_ns: net::own_cpu_ns().saturating_sub(self.own_ns),
            softirq_ns: net::ksoftirqd_ns().saturating_sub(self.softirq_ns),
        }
    }

    /// The share of the machine other processes used: busy time not spent by the harness,
    /// the consumer (`consumer_ns`) or the softirq threads.
    fn other_load(&self, consumer_ns: u64) -> f64 {
        let ours = self.own_ns + consumer_ns + self.softirq_ns;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let capacity = self.at.elapsed().as_nanos() as f64 * cores;
        (self.busy_ns.saturating_sub(ours) as f64 / capacity).clamp(0.0, 1.0)
    }
}

fn total_of(stats: &[net::QueueStat], queue: u16) -> net::QueueStat {
    net::sum_stats(stats, &[queue])
}

/// Waits until every packet sent was either dropped or queued and decided: nothing waits in
/// the consumer's queues any more.
fn wait_until_decided(
    consumer: &mut Running,
    queues: &[u16],
    before: &[net::QueueStat],
    sent: u64,
) -> Result<()> {
    let b = net::sum_stats(before, queues);
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let now = net::sum_stats(&net::queue_stats()?, queues);
        let handed_out = (now.id_sequence - b.id_sequence) + (now.queue_dropped - b.queue_dropped);
        if now.waiting == 0 && handed_out >= sent {
            return Ok(());
        }
        if consumer.exited() {
            return Err("the consumer process died".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timeout: {} packets still waiting, {handed_out} of {sent} handed out",
                now.waiting
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The consumer order of repetition `rep`: rotated by one each repetition and reversed every
/// other one, so no consumer always runs first or right after the same one.
pub fn order(kinds: &[Kind], rep: usize) -> Vec<Kind> {
    let mut order = kinds.to_vec();
    if !kinds.is_empty() {
        order.rotate_left(rep % kinds.len());
    }
    if rep % 2 == 1 {
        order.reverse();
    }
    order
}

/// Runs everything `opts` asks for; prints progress on stderr. In smoke mode, returns an
/// error listing every correctness failure.
pub fn run_all(opts: &Options, launcher: Launcher) -> Result<Vec<RunResult>> {
    let mut opts = opts.clone();
    if opts.kinds.contains(&Kind::PeerPython) {
        if let Err(why) = consumer::python_available() {
            eprintln!("nfqbench: NOT measuring py-netfilterqueue: {why}");
            opts.kinds.retain(|&k| k != Kind::PeerPython);
        }
    }
    let scenarios = opts.scenarios();
    let tcp = scenarios
        .iter()
        .any(|s| s.shape == Shape::Tcp && !opts.kinds_for(s).is_empty());
    let mut bench = Bench::new(launcher, &opts, tcp)?;
    if opts.warmup && !opts.smoke {
        // Unrecorded: loads every binary and library, grows the kernel's caches, probes the
        // multi-queue flows, so the first recorded runs are not the slow ones.
        for &kind in &opts.kinds {
            let first = scenarios
                .iter()
                .find(|s| s.shape.is_throughput() && kind.measured_in(s.shape));
            if let Some(first) = first {
                let warm = Scenario {
                    packets: first.packets.min(20_000),
                    ..*first
                };
                if let Some(e) = bench.run(warm, kind, 0).error {
                    eprintln!("warm-up {}: {e}", kind.name());
                }
            }
        }
    }
    let reps = scenarios
        .iter()
        .map(|s| opts.reps_for(s))
        .max()
        .unwrap_or(1);
    let total: usize = scenarios
        .iter()
        .map(|s| opts.reps_for(s) * opts.kinds_for(s).len())
        .sum();
    let mut results = Vec::with_capacity(total);
    let started = Instant::now();
    for rep in 0..reps {
        for scenario in scenarios.iter().filter(|s| rep < opts.reps_for(s)) {
            for kind in order(&opts.kinds_for(scenario), rep) {
                let r = bench.run(*scenario, kind, rep);
                eprintln!(
                    "[{:>4}/{total} {:>5.0}s] rep {rep} {:<26} {}",
                    results.len() + 1,
                    started.elapsed().as_secs_f64(),
                    scenario.label(),
                    report::progress_line(&r)
                );
                results.push(r);
            }
        }
    }
    if opts.smoke {
        let failures = smoke_failures(&results);
        if !failures.is_empty() {
            return Err(format!("smoke failed:\n  {}", failures.join("\n  ")));
        }
    }
    Ok(results)
}

/// Correctness checks of the smoke: every run finished; every packet is accounted for (sink +
/// kernel drop counters == sent; all verdicts accept); nothing arrived altered; under drain
/// (buffers sized for the backlog) nothing was lost; every latency run measured every packet
/// that arrived; every queued TCP run moved data through the queue and left nothing waiting.
pub fn smoke_failures(results: &[RunResult]) -> Vec<String> {
    let mut failures = Vec::new();
    for r in results {
        let what = format!("{} {}", r.scenario.label(), r.kind.name());
        if let Some(e) = &r.error {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        if r.scenario.shape == Shape::Tcp {
            if r.bps <= 0.0 {
                failures.push(format!("{what}: iperf3 moved no data"));
            }
            if r.kind != Kind::NoRule && r.queued == 0 {
                failures.push(format!("{what}: no packet went through the queue"));
            }
            continue;
        }
        if r.sent == 0 || r.received == 0 {
            failures.push(format!("{what}: sent {} received {}", r.sent, r.received));
        }
        if r.unaccounted() != 0 {
            failures.push(format!(
                "{what}: {} packets unaccounted for (sent {} = received {} + queue_dropped {} \
                 + user_dropped {} + sink_dropped {} does not hold)",
                r.unaccounted(),
                r.sent,
                r.received,
                r.queue_dropped,
                r.user_dropped,
                r.sink_dropped
            ));
        }
        if r.bad_len != 0 {
            failures.push(format!("{what}: {} datagrams arrived altered", r.bad_len));
        }
        if r.scenario.shape.is_drain() && r.lost() != 0 {
            failures.push(format!(
                "{what}: lost {} of {} packets under drain with adequate buffers",
                r.lost(),
                r.sent
            ));
        }
        if r.scenario.shape.is_latency() {
            match &r.latency {
                Some(l) if l.samples == r.received && l.p50 > 0.0 && l.p50 <= l.p999 => {}
                other => failures.push(format!(
                    "{what}: latency not measured for every packet received ({} received): \
                     {other:?}",
                    r.received
                )),
            }
        }
    }
    failures
}
