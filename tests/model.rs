//! Model-based lifecycle test (issue 10): random sequences of bind / unbind / re-bind / defer /
//! decide / drop undecided / batch / range verdict / drop a queue inside its callback / panic in
//! a callback / drop a handle / send traffic, on three queue numbers (reused across bindings) and
//! two handles (re-opened when dropped), with two worker threads deciding deferred packets, checked
//! against a model of what the kernel must observe:
//!
//! - every datagram carries a token (`tok <n>`) whose planned fate the model knows; the
//!   receivers tell which were accepted: each packet is decided exactly once, by its own
//!   program's verdict or its binding's fallback, never by a verdict meant for another packet
//!   (packet ids restart at 1 on every binding, so a stale verdict would hit a new packet);
//! - a verdict for a packet of an earlier binding is refused (`StaleBinding`, or `HandleClosed`
//!   once its handle is gone); the only late kernel errors are those the model expects;
//! - at checkpoints and at the end, `/proc/.../nfnetlink_queue` shows exactly the packets the
//!   model holds undecided (nothing else left queued, no queue or user drops), and each
//!   handle's `Handle::counters()` agrees with the model.
//!
//! `NFQ_MODEL_STEPS` (default 20000) sets the number of steps, `NFQ_MODEL_SEED` the seed (default
//! fixed; `random` picks one from the clock). A failure prints the seed and the last steps.

#[allow(unused_imports)]
mod support;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use libnfq::{DeferredPacket, Error, Handle, Handled, Pending, Queue, QueueConfig, Verdict};
use support::{set_socket_buffer, Buffer, UdpSink};

const QUEUES: [u16; 3] = [110, 111, 112];
const HANDLES: usize = 2;
/// Worker threads deciding deferred packets.
const WORKERS: usize = 2;
const DEFAULT_STEPS: u64 = 20_000;
const DEFAULT_SEED: u64 = 0x1d_2024_5eed;
/// The payload of the panics the model plans (a `&'static str`, silenced in the panic hook).
const PLANNED_PANIC: &str = "model: planned panic in a callback";
const DEADLINE: Duration = Duration::from_secs(10);
/// Steps between two full consistency checks (`/proc`, counters).
const CHECKPOINT_EVERY: u64 = 50;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn coin(&mut self) -> bool {
        self.one_in(2)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    if v == "random" {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        return Some(t.as_nanos() as u64 | 1);
    }
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: not a number: {v:?}")),
    )
}

/// What the kernel must do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fate {
    Accept,
    Drop,
    /// Decided concurrently with the end of its binding: accepted or dropped, at most once.
    Either,
}

fn fate_of(accept: bool) -> Fate {
    if accept {
        Fate::Accept
    } else {
        Fate::Drop
    }
}

fn verdict(accept: bool) -> Verdict {
    if accept {
        Verdict::accept()
    } else {
        Verdict::drop()
    }
}

/// What the program does with a packet, chosen when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Decided in the callback.
    Inline(bool),
    /// Deferred to a worker thread, which decides it (`Some`) or drops it undecided (`None`).
    Worker(Option<bool>),
    /// Deferred and held; a later step decides it, drops it, batches it, or a range covers it.
    Hold,
    /// The callback drops its own `Queue`, then accepts the packet.
    DropQueue,
    /// The callback panics.
    Panic,
}

/// Where a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Sent to a bound queue, not dispatched yet.
    Queued,
    /// Deferred, in the held list.
    Held,
    /// Deferred, handed to the worker.
    InWorker,
    /// Decided (or dropped by the kernel): its fate is known.
    Done,
}

struct Token {
    queue: u16,
    plan: Plan,
    /// The binding that was current when it was sent.
    binding: Option<u64>,
    id: Option<u32>,
    state: State,
    fate: Option<Fate>,
    /// Decided by an explicit range verdict while deferred.
    range_covered: bool,
    /// Handed to the worker while its binding ended without waiting for the worker.
    ambiguous: bool,
}

struct Binding {
    queue: u16,
    /// Index of the handle slot.
    slot: usize,
    /// Which handle instance (slots are re-opened).
    instance: u64,
    fallback_accept: bool,
    alive: bool,
    max_id: u32,
}

/// The model's expectations of one handle instance's counters.
#[derive(Default, Debug)]
struct Expected {
    dispatched: u64,
    panics: u64,
    /// Deferred packets of a live binding dropped undecided.
    live_drops: u64,
    /// Deferred packets of an ended binding dropped undecided (their fallback is not sent).
    stale_drops: u64,
    /// Deferred packets dropped undecided by the worker while their binding ended: either.
    ambiguous_drops: u64,
}

struct HandleSlot {
    /// From `Box::into_raw`; freed only in `Model::drop_handle`.
    ptr: *mut Handle<'static>,
    instance: u64,
    expected: Expected,
}

/// What callbacks share with the model.
#[derive(Default)]
struct Shared {
    plans: Mutex<HashMap<u64, Plan>>,
    seen: Mutex<Vec<Seen>>,
    held: Mutex<Vec<Held>>,
    jobs_sent: AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    token: u64,
    binding: u64,
    id: u32,
}

struct Held {
    token: u64,
    binding: u64,
    packet: DeferredPacket,
}

struct Job {
    token: u64,
    packet: DeferredPacket,
    verdict: Option<bool>,
}

#[derive(Debug)]
struct JobResult {
    token: u64,
    /// `None`: dropped undecided.
    result: Option<Result<(), Error>>,
}

thread_local! {
    /// The bound `Queue`s by number, with their binding: the model thread runs every
    /// `process` call, so the callbacks (which run there) can drop their own `Queue`.
    static SLOTS: RefCell<HashMap<u16, (u64, Queue<'static, 'static>)>> =
        RefCell::new(HashMap::new());
}

fn token_of(ip: &[u8]) -> Option<u64> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let text = std::str::from_utf8(ip.get(ihl + 8..)?).ok()?;
    text.strip_prefix("tok ")?.parse().ok()
}

/// The callback of binding `binding` of `queue`: records the packet and follows its plan.
fn program(
    queue: u16,
    binding: u64,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
) -> impl for<'a> FnMut(Pending<'a>) -> Handled<'a> + Send + 'static {
    move |pending: Pending<'_>| {
        let token = token_of(pending.payload()).expect("a model datagram");
        let plan = shared.plans.lock().unwrap()[&token];
        let id = pending.id();
        shared
            .seen
            .lock()
            .unwrap()
            .push(Seen { token, binding, id });
        match plan {
            Plan::Inline(accept) => pending.verdict(verdict(accept)),
            Plan::Worker(decision) => {
                let (packet, handled) = pending.defer();
                shared.jobs_sent.fetch_add(1, Ordering::SeqCst);
                jobs.send(Job {
                    token,
                    packet,
                    verdict: decision,
                })
                .expect("the worker is alive");
                handled
            }
            Plan::Hold => {
                let (packet, handled) = pending.defer();
                shared.held.lock().unwrap().push(Held {
                    token,
                    binding,
                    packet,
                });
                handled
            }
            Plan::DropQueue => {
                let own = SLOTS.with(|slots| {
                    let mut slots = slots.borrow_mut();
                    match slots.get(&queue) {
                        Some((b, _)) if *b == binding => slots.remove(&queue),
                        _ => None,
                    }
                });
                assert!(own.is_some(), "binding {binding}: its Queue is in its slot");
                drop(own);
                pending.accept()
            }
            Plan::Panic => std::panic::panic_any(PLANNED_PANIC),
        }
    }
}

/// A worker: decides (or drops) the packets it takes from `jobs`, records each result.
fn spawn_worker(
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    results: Arc<Mutex<Vec<JobResult>>>,
    done: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || loop {
        let next = jobs.lock().unwrap().recv();
        let Ok(job) = next else { return };
        let result = job
            .verdict
            .map(|accept| job.packet.verdict(verdict(accept)));
        results.lock().unwrap().push(JobResult {
            token: job.token,
            result,
        });
        done.fetch_add(1, Ordering::SeqCst);
    })
}

/// Receives the tokens that reach one sink until `stop`.
fn spawn_reader(
    sink: UdpSink,
    received: Arc<Mutex<HashMap<u64, u32>>>,
    last: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Some(data) = sink.recv_one(Duration::from_millis(50)) {
                let text = String::from_utf8_lossy(&data).into_owned();
                let token: u64 = text
                    .strip_prefix("tok ")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected datagram {text:?}"));
                *received.lock().unwrap().entry(token).or_default() += 1;
                *last.lock().unwrap() = Instant::now();
            }
        }
    })
}

struct Model {
    rng: Rng,
    step: u64,
    trail: VecDeque<String>,
    shared: Arc<Shared>,
    slots: Vec<HandleSlot>,
    next_instance: u64,
    bindings: HashMap<u64, Binding>,
    current: HashMap<u16, u64>,
    next_binding: u64,
    tokens: Vec<Token>,
    /// The tokens sent to each binding, in order.
    by_binding: HashMap<u64, Vec<usize>>,
    seen_upto: usize,
    jobs: Option<mpsc::Sender<Job>>,
    results: Arc<Mutex<Vec<JobResult>>>,
    jobs_done: Arc<AtomicUsize>,
    /// `(queue, id)` pairs a late `UnknownPacket` may name (a deferred packet decided after a
    /// range verdict covered it).
    allowed_unknown: HashMap<(u16, u32), usize>,
    /// Late `ENODEV` verdict errors the model allows (verdicts racing with an unbind).
    allowed_enodev: usize,
    sender: UdpSocket,
    sinks: Vec<SocketAddr>,
    tally: HashMap<&'static str, u64>,
}

impl Model {
    fn note(&mut self, text: String) {
        if self.trail.len() == 200 {
            self.trail.pop_front();
        }
        self.trail.push_back(format!("step {}: {text}", self.step));
    }

    fn count(&mut self, what: &'static str) {
        *self.tally.entry(what).or_default() += 1;
    }

    fn handle(&self, slot: usize) -> &'static Handle<'static> {
        // SAFETY: `ptr` came from `Box::into_raw` and is freed only in `drop_handle`, which
        // replaces it with a new handle at once; no reference handed out here is kept across
        // that call (the `Queue`s borrowing the handle are removed from `SLOTS` before it).
        unsafe { &*self.slots[slot].ptr }
    }

    fn open_handle(&mut self) -> HandleSlot {
        let handle = Handle::open().expect("open handle");
        // Vary the batching: per-packet sends, small batches, the default, with and without
        // range verdicts.
        handle.set_batch_limit([1, 4, 256][self.rng.below(3)]);
        handle.set_range_verdicts(!self.rng.one_in(3));
        self.next_instance += 1;
        HandleSlot {
            ptr: Box::into_raw(Box::new(handle)),
            instance: self.next_instance,
            expected: Expected::default(),
        }
    }

    fn slot_of_instance(&self, instance: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.instance == instance)
    }

    /// Waits until the worker has handled every packet it was handed, then applies its results.
    fn quiesce(&mut self) {
        let start = Instant::now();
        while self.jobs_done.load(Ordering::SeqCst) < self.shared.jobs_sent.load(Ordering::SeqCst) {
            assert!(start.elapsed() < DEADLINE, "the worker is stuck");
            thread::sleep(Duration::from_micros(200));
        }
        let results = std::mem::take(&mut *self.results.lock().unwrap());
        for r in results {
            self.apply_job_result(r);
        }
    }

    fn apply_job_result(&mut self, r: JobResult) {
        let t = &self.tokens[r.token as usize];
        assert_eq!(t.state, State::InWorker, "token {}: {:?}", r.token, t.plan);
        let Plan::Worker(decision) = t.plan else {
            unreachable!()
        };
        let binding = t.binding.expect("dispatched");
        let (queue, id) = (t.queue, t.id.unwrap());
        if t.ambiguous {
            // Its binding ended while the worker had it: refused or sent, nothing else.
            if decision.is_none() {
                let instance = self.bindings[&binding].instance;
                if let Some(slot) = self.slot_of_instance(instance) {
                    self.slots[slot].expected.ambiguous_drops += 1;
                }
            }
            if let Some(Err(e)) = &r.result {
                assert!(
                    matches!(e, Error::StaleBinding { .. } | Error::HandleClosed),
                    "token {}: worker verdict racing with the end of its binding: {e:?}",
                    r.token
                );
            }
        } else {
            let b = &self.bindings[&binding];
            assert!(b.alive, "token {}: binding ended without waiting", r.token);
            let fallback = b.fallback_accept;
            let slot = self.slot_of_instance(b.instance).expect("live handle");
            match (decision, &r.result) {
                (Some(accept), Some(Ok(()))) => {
                    self.tokens[r.token as usize].fate = Some(fate_of(accept))
                }
                (None, None) => {
                    self.tokens[r.token as usize].fate = Some(fate_of(fallback));
                    self.slots[slot].expected.live_drops += 1;
                }
                _ => panic!(
                    "token {} (queue {queue}, id {id}, live binding {binding}): worker result {:?}",
                    r.token, r.result
                ),
            }
        }
        self.tokens[r.token as usize].state = State::Done;
    }

    /// Processes every handle until nothing is waiting, then applies what the callbacks saw.
    fn drain(&mut self) {
        for slot in 0..HANDLES {
            let handle = self.handle(slot);
            let start = Instant::now();
            loop {
                assert!(start.elapsed() < DEADLINE, "handle {slot} never ran dry");
                match catch_unwind(AssertUnwindSafe(|| handle.try_process())) {
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(_))) => {}
                    Ok(Err(e)) => self.check_error(slot, e),
                    Err(payload) => {
                        let planned = payload
                            .downcast_ref::<&str>()
                            .is_some_and(|s| *s == PLANNED_PANIC);
                        if !planned {
                            resume_unwind(payload);
                        }
                        self.count("panics resumed");
                    }
                }
            }
        }
        self.apply_seen();
    }

    fn check_error(&mut self, slot: usize, e: Error) {
        self.count("late errors");
        if let Error::UnknownPacket { queue, id } = e {
            if let Some(n) = self.allowed_unknown.get_mut(&(queue, id)) {
                *n -= 1;
                if *n == 0 {
                    self.allowed_unknown.remove(&(queue, id));
                }
                return;
            }
        }
        if e.errno() == Some(libc::ENODEV) && e.is_transient() && self.allowed_enodev > 0 {
            self.allowed_enodev -= 1;
            return;
        }
        panic!(
            "handle {slot}: unexpected error {e:?} (allowed UnknownPacket: {:?}, ENODEV: {})",
            self.allowed_unknown, self.allowed_enodev
        );
    }

    /// Applies the callbacks' records, in the order they ran.
    fn apply_seen(&mut self) {
        let seen: Vec<Seen> = self.shared.seen.lock().unwrap()[self.seen_upto..].to_vec();
        self.seen_upto += seen.len();
        for s in seen {
            let t = &self.tokens[s.token as usize];
            assert_eq!(t.state, State::Queued, "token {} dispatched twice", s.token);
            assert_eq!(
                t.binding,
                Some(s.binding),
                "token {} reached the callback of another binding",
                s.token
            );
            let b = self.bindings.get_mut(&s.binding).unwrap();
            assert!(b.alive, "token {}: callback of an ended binding", s.token);
            b.max_id = b.max_id.max(s.id);
            let (fallback, instance) = (b.fallback_accept, b.instance);
            let slot = self.slot_of_instance(instance).unwrap();
            self.slots[slot].expected.dispatched += 1;
            let plan = t.plan;
            let t = &mut self.tokens[s.token as usize];
            t.id = Some(s.id);
            match plan {
                Plan::Inline(accept) => {
                    t.fate = Some(fate_of(accept));
                    t.state = State::Done;
                }
                Plan::Worker(_) => t.state = State::InWorker,
                Plan::Hold => t.state = State::Held,
                Plan::DropQueue => {
                    // Its own verdict comes after the unbind it caused: accepted or dropped.
                    t.fate = Some(Fate::Either);
                    t.state = State::Done;
                    self.allowed_enodev += 1;
                    self.end_binding(s.binding, true);
                }
                Plan::Panic => {
                    t.fate = Some(fate_of(fallback));
                    t.state = State::Done;
                    self.slots[slot].expected.panics += 1;
                }
            }
        }
    }

    /// The binding ended (unbind, queue or handle dropped): the kernel dropped its waiting
    /// packets. With `quiesced`, the worker holds none of its packets.
    fn end_binding(&mut self, binding: u64, quiesced: bool) {
        let b = self.bindings.get_mut(&binding).unwrap();
        assert!(b.alive);
        b.alive = false;
        let queue = b.queue;
        if self.current.get(&queue) == Some(&binding) {
            self.current.remove(&queue);
        }
        for &i in self.by_binding.get(&binding).map_or(&[][..], Vec::as_slice) {
            let t = &mut self.tokens[i];
            match t.state {
                State::Queued => panic!("token {i} still queued when its binding ended"),
                State::Held => {
                    if !t.range_covered {
                        t.fate = Some(Fate::Drop);
                    }
                }
                State::InWorker => {
                    assert!(!quiesced, "token {i} in the worker");
                    t.ambiguous = true;
                    t.fate = Some(Fate::Either);
                    self.allowed_enodev += 1;
                }
                State::Done => {}
            }
        }
    }

    /// What deciding a held packet of `binding` must return.
    fn check_decision(&mut self, token: u64, result: &Result<(), Error>, accept: Option<bool>) {
        let t = &self.tokens[token as usize];
        let (queue, id, binding) = (t.queue, t.id.unwrap(), t.binding.unwrap());
        let b = &self.bindings[&binding];
        let handle_slot = self.slot_of_instance(b.instance);
        if b.alive {
            assert!(
                result.is_ok(),
                "token {token} (queue {queue}, id {id}, live binding {binding}): {result:?}"
            );
            let fallback = b.fallback_accept;
            let slot = handle_slot.unwrap();
            let t = &mut self.tokens[token as usize];
            if t.range_covered {
                // The kernel decided it already: this verdict names a packet it no longer has.
                *self.allowed_unknown.entry((queue, id)).or_default() += 1;
            } else {
                t.fate = Some(fate_of(accept.unwrap_or(fallback)));
            }
            if accept.is_none() {
                self.slots[slot].expected.live_drops += 1;
            }
        } else {
            match result {
                Err(Error::StaleBinding { queue: q, id: i }) if (*q, *i) == (queue, id) => {}
                Err(Error::HandleClosed) if handle_slot.is_none() => {}
                Ok(()) if accept.is_none() => {}
                other => panic!(
                    "token {token}: decision for a packet of ended binding {binding} \
                     (queue {queue}, id {id}) returned {other:?}, expected StaleBinding"
                ),
            }
            if accept.is_none() {
                if let Some(slot) = handle_slot {
                    self.slots[slot].expected.stale_drops += 1;
                }
            }
            self.count("stale decisions");
        }
        self.tokens[token as usize].state = State::Done;
    }

    fn take_held(&mut self) -> Option<Held> {
        let mut held = self.shared.held.lock().unwrap();
        if held.is_empty() {
            return None;
        }
        let i = self.rng.below(held.len());
        Some(held.swap_remove(i))
    }

    // --- steps -------------------------------------------------------------------------------

    fn send(&mut self) {
        // Mostly to bound queues (sometimes to an unbound one: the kernel drops those).
        let bound: Vec<usize> = (0..QUEUES.len())
            .filter(|i| self.current.contains_key(&QUEUES[*i]))
            .collect();
        let qi = if !bound.is_empty() && !self.rng.one_in(5) {
            bound[self.rng.below(bound.len())]
        } else {
            self.rng.below(QUEUES.len())
        };
        let queue = QUEUES[qi];
        let binding = self.current.get(&queue).copied();
        let n = 1 + self.rng.below(4);
        // A queue dropped inside its callback or a panic: only as the last packet, with the
        // worker idle and no worker packet in the same step (see the module docs).
        let special = binding.is_some() && self.rng.one_in(20);
        if special {
            self.quiesce();
        }
        let mut plans = Vec::new();
        for i in 0..n {
            let plan = if special && i == n - 1 {
                if self.rng.coin() {
                    Plan::DropQueue
                } else {
                    Plan::Panic
                }
            } else {
                match self.rng.below(20) {
                    0..=4 => Plan::Inline(true),
                    5..=6 => Plan::Inline(false),
                    7..=9 if !special => Plan::Worker(Some(true)),
                    10 if !special => Plan::Worker(Some(false)),
                    11 if !special => Plan::Worker(None),
                    _ => Plan::Hold,
                }
            };
            plans.push(plan);
        }
        let mut sent = Vec::new();
        for plan in plans {
            let token = self.tokens.len() as u64;
            self.shared.plans.lock().unwrap().insert(token, plan);
            if let Some(b) = binding {
                self.by_binding.entry(b).or_default().push(token as usize);
            }
            self.tokens.push(Token {
                queue,
                plan,
                binding,
                id: None,
                state: if binding.is_some() {
                    State::Queued
                } else {
                    State::Done
                },
                // Nobody bound: the kernel drops it (no --queue-bypass).
                fate: binding.is_none().then_some(Fate::Drop),
                range_covered: false,
                ambiguous: false,
            });
            if let Err(e) = self
                .sender
                .send_to(format!("tok {token}").as_bytes(), self.sinks[qi])
            {
                let errno = e.raw_os_error();
                assert!(
                    errno == Some(libc::EPERM) || errno == Some(libc::ESRCH),
                    "send: {e}"
                );
            }
            sent.push(token);
        }
        self.note(format!("send {sent:?} to {queue} (binding {binding:?})"));
        self.drain();
        for token in sent {
            let t = &self.tokens[token as usize];
            assert_ne!(
                t.state,
                State::Queued,
                "token {token} ({:?}) was not dispatched",
                t.plan
            );
        }
        self.count("send steps");
    }

    fn bind(&mut self) {
        let queue = QUEUES[self.rng.below(QUEUES.len())];
        let slot = self.rng.below(HANDLES);
        let handle = self.handle(slot);
        if let Some(&current) = self.current.get(&queue) {
            // Bound already: a typed error, and nothing changes.
            let owner = self.bindings[&current].instance;
            let err = handle
                .queue(queue, QueueConfig::new(), |_| Verdict::drop())
                .map(|_| ())
                .expect_err("the number is bound");
            let ours = owner == self.slots[slot].instance;
            assert!(
                (ours && matches!(err, Error::QueueAlreadyBound { queue: q } if q == queue))
                    || (!ours
                        && matches!(err, Error::QueueOwnedByOther { queue: q } if q == queue)),
                "bind {queue} on handle {slot} (bound by instance {owner}): {err:?}"
            );
            self.note(format!("bind {queue} on {slot}: bound already ({err:?})"));
            return;
        }
        self.quiesce();
        let binding = self.next_binding;
        self.next_binding += 1;
        let fallback_accept = self.rng.coin();
        let callback = program(
            queue,
            binding,
            Arc::clone(&self.shared),
            self.jobs.clone().unwrap(),
        );
        let bound = handle
            .queue_deferrable(
                queue,
                QueueConfig::new().fallback(verdict(fallback_accept)),
                callback,
            )
            .unwrap_or_else(|e| panic!("bind {queue} on handle {slot}: {e:?}"));
        SLOTS.with(|s| s.borrow_mut().insert(queue, (binding, bound)));
        self.bindings.insert(
            binding,
            Binding {
                queue,
                slot,
                instance: self.slots[slot].instance,
                fallback_accept,
                alive: true,
                max_id: 0,
            },
        );
        self.current.insert(queue, binding);
        self.note(format!(
            "bind {queue} on handle {slot}: binding {binding}, fallback accept {fallback_accept}"
        ));
        self.count("bindings");
    }

    fn unbind(&mut self) {
        let queue = QUEUES[self.rng.below(QUEUES.len())];
        let Some(&binding) = self.current.get(&queue) else {
            return;
        };
        let quiesced = !self.rng.one_in(4);
        if quiesced {
            self.quiesce();
        }
        let (_, bound) = SLOTS
            .with(|s| s.borrow_mut().remove(&queue))
            .expect("a bound queue has its Queue");
        let explicit = self.rng.coin();
        if explicit {
            bound
                .unbind()
                .unwrap_or_else(|e| panic!("unbind {queue}: {e:?}"));
        } else {
            drop(bound);
        }
        self.note(format!(
            "unbind {queue} (binding {binding}, explicit {explicit}, quiesced {quiesced})"
        ));
        self.end_binding(binding, quiesced);
        self.count("unbinds");
    }

    fn drop_handle(&mut self) {
        let slot = self.rng.below(HANDLES);
        let quiesced = !self.rng.one_in(4);
        if quiesced {
            self.quiesce();
        }
        let instance = self.slots[slot].instance;
        let ended: Vec<u64> = self
            .current
            .values()
            .copied()
            .filter(|b| self.bindings[b].instance == instance)
            .collect();
        let forget = self.rng.coin();
        for &binding in &ended {
            let queue = self.bindings[&binding].queue;
            let (_, bound) = SLOTS.with(|s| s.borrow_mut().remove(&queue)).unwrap();
            if forget {
                // Left bound until the socket closes.
                std::mem::forget(bound);
            } else {
                drop(bound);
            }
        }
        let fresh = self.open_handle();
        let old = std::mem::replace(&mut self.slots[slot], fresh);
        // SAFETY: `old.ptr` came from `Box::into_raw` and is freed once, here. No `Queue`
        // borrowing it is left: its queues were just removed from `SLOTS` (dropped, or
        // forgotten and never used again), and `handle()` references are not kept across
        // steps.
        drop(unsafe { Box::from_raw(old.ptr) });
        for binding in ended.iter().copied() {
            self.end_binding(binding, quiesced);
        }
        self.note(format!(
            "drop handle {slot} (instance {instance}, bindings {ended:?}, queues forgotten \
             {forget}, quiesced {quiesced})"
        ));
        self.count("handles dropped");
    }

    fn decide_held(&mut self) {
        let Some(held) = self.take_held() else { return };
        let accept = self.rng.coin();
        let result = held.packet.verdict(verdict(accept));
        self.note(format!(
            "decide token {} (binding {}) accept {accept}: {result:?}",
            held.token, held.binding
        ));
        self.check_decision(held.token, &result, Some(accept));
        self.count("held decided");
    }

    fn drop_held(&mut self) {
        let Some(held) = self.take_held() else { return };
        drop(held.packet);
        self.note(format!(
            "drop token {} (binding {}) undecided",
            held.token, held.binding
        ));
        self.check_decision(held.token, &Ok(()), None);
        self.count("held dropped");
    }

    fn batch(&mut self) {
        let n = 1 + self.rng.below(3);
        let mut taken = Vec::new();
        for _ in 0..n {
            if let Some(h) = self.take_held() {
                taken.push(h);
            }
        }
        let Some(first) = taken.first() else { return };
        let sender = first.packet.sender();
        let closed = sender.is_closed();
        let mut batch = sender.batch(8);
        let mut notes = Vec::new();
        let mut outcomes = Vec::new();
        for held in taken {
            let accept = self.rng.coin();
            let result = batch.push(held.packet, verdict(accept));
            notes.push(format!("{}:{accept}:{result:?}", held.token));
            outcomes.push((held.token, result, accept));
        }
        let flushed = batch.flush();
        self.note(format!("batch {notes:?}, flush {flushed:?}"));
        assert!(
            flushed.is_ok() || (closed && matches!(flushed, Err(Error::HandleClosed))),
            "flush: {flushed:?}"
        );
        for (token, result, accept) in outcomes {
            // The batch of a closed handle may take its entries and refuse them at the flush.
            let binding = self.tokens[token as usize].binding.unwrap();
            let gone = self
                .slot_of_instance(self.bindings[&binding].instance)
                .is_none();
            let result = match result {
                Ok(()) if closed && gone => Err(Error::HandleClosed),
                other => other,
            };
            self.check_decision(token, &result, Some(accept));
        }
        self.count("batches");
    }

    fn range(&mut self) {
        let queue = QUEUES[self.rng.below(QUEUES.len())];
        let Some(&binding) = self.current.get(&queue) else {
            return;
        };
        self.quiesce();
        let b = &self.bindings[&binding];
        let (up_to, slot) = (b.max_id, b.slot);
        if up_to == 0 {
            return;
        }
        let accept = self.rng.coin();
        self.handle(slot)
            .verdict_sender()
            .range_verdict(queue, up_to, &verdict(accept))
            .unwrap_or_else(|e| panic!("range verdict {queue} up to {up_to}: {e:?}"));
        let mut covered = Vec::new();
        for &i in self.by_binding.get(&binding).map_or(&[][..], Vec::as_slice) {
            let t = &mut self.tokens[i];
            if t.state == State::Held && !t.range_covered && t.id.is_some_and(|id| id <= up_to) {
                t.range_covered = true;
                t.fate = Some(fate_of(accept));
                covered.push(i);
            }
        }
        if covered.is_empty() {
            // A range verdict that matches no waiting packet is answered with ENOENT.
            *self.allowed_unknown.entry((queue, up_to)).or_default() += 1;
        }
        self.note(format!(
            "range verdict {queue} (binding {binding}) up to {up_to}, accept {accept}: {covered:?}"
        ));
        self.count("range verdicts");
    }

    /// Everything the model knows must match `/proc` and the handles' counters.
    fn checkpoint(&mut self, ns: &support::Netns) {
        self.quiesce();
        self.drain();
        self.quiesce();
        let stats = ns.queue_stats();
        for queue in QUEUES {
            let line = stats.iter().find(|s| s.queue_num == queue);
            match self.current.get(&queue) {
                None => assert!(line.is_none(), "queue {queue} is listed unbound: {line:?}"),
                Some(&binding) => {
                    let line = line.unwrap_or_else(|| panic!("queue {queue} is not listed"));
                    let b = &self.bindings[&binding];
                    let waiting = self
                        .by_binding
                        .get(&binding)
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .filter(|&&i| {
                            let t = &self.tokens[i];
                            t.state == State::Held && !t.range_covered
                        })
                        .count() as u32;
                    assert_eq!(
                        line.portid,
                        self.handle(b.slot).portid(),
                        "queue {queue}: {line:?}"
                    );
                    assert_eq!(
                        (line.queued, line.queue_dropped, line.user_dropped),
                        (waiting, 0, 0),
                        "queue {queue} (binding {binding}): waiting packets vs the {waiting} \
                         the model holds undecided: {line:?}"
                    );
                }
            }
        }
        for slot in 0..HANDLES {
            let c = self.handle(slot).counters();
            let e = &self.slots[slot].expected;
            let ok = c.dispatched == e.dispatched
                && c.fallback_panic == e.panics
                && c.fallback_undecided >= e.live_drops
                && c.fallback_undecided <= e.live_drops + e.stale_drops + e.ambiguous_drops
                && c.stale_discarded >= e.stale_drops
                && c.enobufs == 0
                && c.malformed == 0
                && c.send_errors == 0
                && c.fallback_truncated == 0;
            assert!(ok, "handle {slot}: counters {c:?}, model {e:?}");
        }
        self.note("checkpoint".to_string());
    }

    fn run_step(&mut self, ns: &support::Netns) {
        let held = self.shared.held.lock().unwrap().len();
        let r = self.rng.below(100);
        match r {
            0..=39 => self.send(),
            40..=51 => self.decide_held(),
            52..=57 => self.drop_held(),
            58..=62 => self.batch(),
            63..=65 => self.range(),
            66..=71 => self.unbind(),
            72..=87 => self.bind(),
            88..=89 => self.drop_handle(),
            _ if held > 40 => self.decide_held(),
            _ => self.send(),
        }
        if self.step % CHECKPOINT_EVERY == 0 {
            self.checkpoint(ns);
        }
    }

    /// Decides or drops what is held, checks, unbinds everything and closes the handles.
    fn finish(&mut self, ns: &support::Netns) {
        self.quiesce();
        self.drain();
        while !self.shared.held.lock().unwrap().is_empty() {
            if self.rng.coin() {
                self.decide_held();
            } else if self.rng.coin() {
                self.batch();
            } else {
                self.drop_held();
            }
        }
        self.checkpoint(ns);
        let bound: Vec<(u16, u64)> = self.current.iter().map(|(q, b)| (*q, *b)).collect();
        for (queue, binding) in bound {
            let (_, q) = SLOTS.with(|s| s.borrow_mut().remove(&queue)).unwrap();
            drop(q);
            self.end_binding(binding, true);
        }
        for slot in 0..HANDLES {
            // SAFETY: as in `drop_handle`; every `Queue` is gone and the pointer is not used
            // again (the slots are cleared below).
            drop(unsafe { Box::from_raw(self.slots[slot].ptr) });
        }
        self.slots.clear();
        self.jobs = None;
        let sample: Vec<&Token> = self
            .tokens
            .iter()
            .filter(|t| t.fate.is_none())
            .take(5)
            .collect();
        assert!(
            sample.is_empty(),
            "tokens without a known fate at the end: {:?}",
            sample
                .iter()
                .map(|t| (t.queue, t.plan, t.state))
                .collect::<Vec<_>>()
        );
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "queue {} plan {:?} binding {:?} id {:?} state {:?} fate {:?}{}{}",
            self.queue,
            self.plan,
            self.binding,
            self.id,
            self.state,
            self.fate,
            if self.range_covered { " range" } else { "" },
            if self.ambiguous { " ambiguous" } else { "" }
        )
    }
}

#[test]
fn lifecycle_model() {
    let Some(ns) = support::enter!() else { return };
    let seed = env_u64("NFQ_MODEL_SEED").unwrap_or(DEFAULT_SEED);
    let steps = env_u64("NFQ_MODEL_STEPS").unwrap_or(DEFAULT_STEPS);
    eprintln!("lifecycle model: NFQ_MODEL_SEED={seed} NFQ_MODEL_STEPS={steps}");

    // Planned panics are part of the run: do not print them.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
            default_hook(info);
        }
    }));

    let received = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let last = Arc::new(Mutex::new(Instant::now()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for queue in QUEUES {
        let sink = UdpSink::bind("127.0.0.1:0");
        set_socket_buffer(sink.socket(), Buffer::Receive, 8 << 20);
        ns.queue_udp_port(sink.port(), queue);
        sinks.push(sink.addr());
        readers.push(spawn_reader(
            sink,
            Arc::clone(&received),
            Arc::clone(&last),
            Arc::clone(&stop),
        ));
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_socket_buffer(&sender, Buffer::Send, 16 << 20);

    let (jobs_tx, jobs_rx) = mpsc::channel();
    let results = Arc::new(Mutex::new(Vec::new()));
    let jobs_done = Arc::new(AtomicUsize::new(0));
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            spawn_worker(
                Arc::clone(&jobs_rx),
                Arc::clone(&results),
                Arc::clone(&jobs_done),
            )
        })
        .collect();

    let mut model = Model {
        rng: Rng(seed.max(1)),
        step: 0,
        trail: VecDeque::new(),
        shared: Arc::new(Shared::default()),
        slots: Vec::new(),
        next_instance: 0,
        bindings: HashMap::new(),
        current: HashMap::new(),
        next_binding: 1,
        tokens: Vec::new(),
        by_binding: HashMap::new(),
        seen_upto: 0,
        jobs: Some(jobs_tx),
        results,
        jobs_done,
        allowed_unknown: HashMap::new(),
        allowed_enodev: 0,
        sender,
        sinks,
        tally: HashMap::new(),
    };
    for _ in 0..HANDLES {
        let slot = model.open_handle();
        model.slots.push(slot);
    }

    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for step in 1..=steps {
            model.step = step;
            model.run_step(&ns);
        }
        model.finish(&ns);
    }));
    if let Err(payload) = outcome {
        let _ = std::panic::take_hook();
        eprintln!(
            "lifecycle model FAILED at step {} with NFQ_MODEL_SEED={seed} \
             NFQ_MODEL_STEPS={steps}; last steps:\n  {}",
            model.step,
            model.trail.iter().cloned().collect::<Vec<_>>().join("\n  ")
        );
        resume_unwind(payload);
    }
    let _ = std::panic::take_hook();
    for worker in workers {
        worker.join().expect("worker");
    }

    // Wait for the last datagrams, then compare with the model.
    let quiet = Duration::from_millis(500);
    assert!(support::wait_until(DEADLINE, || last
        .lock()
        .unwrap()
        .elapsed()
        > quiet));
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().expect("reader");
    }
    let received = received.lock().unwrap();
    let mut wrong = Vec::new();
    let mut fates: HashMap<Fate, usize> = HashMap::new();
    for (i, t) in model.tokens.iter().enumerate() {
        let fate = t.fate.expect("checked in finish");
        *fates.entry(fate).or_default() += 1;
        let got = received.get(&(i as u64)).copied().unwrap_or(0);
        let fine = match fate {
            Fate::Accept => got == 1,
            Fate::Drop => got == 0,
            Fate::Either => got <= 1,
        };
        if !fine {
            wrong.push(format!("token {i}: {t:?}, received {got} time(s)"));
        }
    }
    let unknown: Vec<&u64> = received
        .keys()
        .filter(|k| **k as usize >= model.tokens.len())
        .collect();
    assert!(unknown.is_empty(), "unknown tokens received: {unknown:?}");
    assert!(
        wrong.is_empty(),
        "NFQ_MODEL_SEED={seed}: {} packet(s) not decided as the model says:\n  {}",
        wrong.len(),
        wrong
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    let mut tally: Vec<_> = model.tally.iter().collect();
    tally.sort();
    eprintln!(
        "lifecycle model: {steps} steps in {:?}, {} packets (fates {fates:?}), {tally:?}",
        start.elapsed(),
        model.tokens.len()
    );
}
