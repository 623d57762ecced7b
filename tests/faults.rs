//! Faults, against the real kernel, each in its own network namespace: a consumer process killed
//! mid-stream, a second process binding an owned queue, a full queue, a socket receive buffer
//! overrun (ENOBUFS), a handle dropped with packets waiting, a process without CAP_NET_ADMIN.
//! Outcomes are observed on the traffic (what reaches a UDP sink) and in the kernel's counters
//! (`QueueStats`).
//!
//! Consumer processes are this test binary run again as the `child_process` "test" (ignored,
//! and a no-op unless `NFQ_FAULTS_CHILD` says what to do), so the tests need no other binary.

#[allow(unused_imports)]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use libnfq::{
    DeferredPacket, Error, Handle, Pending, QueueConfig, QueueFlags, QueueStats, Verdict,
};
use support::{Netns, UdpSink};

/// Upper bound for anything we wait for; normally reached in milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a sink must stay silent to conclude that nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);
/// The queue number the child consumers use by default (that of the classic C example).
const QUEUE: u16 = 80;
/// Tells a run of this binary that it is a child consumer, and what to do.
const CHILD_ENV: &str = "NFQ_FAULTS_CHILD";

// ---------------------------------------------------------------------------------------------
// Traffic and observation helpers.

/// UDP datagrams to a sink on 127.0.0.1, queued to `queue` by a rule in `OUTPUT`.
struct Flow {
    sink: UdpSink,
}

impl Flow {
    /// Adds the rule (`--queue-bypass` when `bypass`) and binds the sink.
    fn new(ns: &Netns, queue: u16, bypass: bool) -> Flow {
        let sink = UdpSink::bind("127.0.0.1:0");
        let mut rule = support::nfqueue_rule("filter", "OUTPUT", "udp", sink.port(), queue);
        if bypass {
            rule.push("--queue-bypass".to_owned());
        }
        ns.iptables(&rule);
        Flow { sink }
    }

    /// Sends `count` datagrams `"<tag> <i>"` and returns their payloads. On `OUTPUT` a
    /// datagram is queued (or dropped, or accepted) within `send`. A send the kernel answers
    /// with the reason it dropped the datagram in `OUTPUT` (`EPERM`, or `ESRCH` for a queue
    /// nobody bound) is fine: what arrives is checked on the sink.
    fn send(&self, tag: &str, count: usize) -> Vec<Vec<u8>> {
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("{tag} {i}").into_bytes())
            .collect();
        support::udp_send_queued(self.sink.addr(), &payloads);
        payloads
    }

    /// Receives exactly `expected`, in order, then nothing more.
    fn expect(&self, expected: &[Vec<u8>]) {
        for (i, want) in expected.iter().enumerate() {
            let got = self.sink.recv_one(DEADLINE).unwrap_or_else(|| {
                panic!(
                    "datagram {i} of {} ({want:?}) did not arrive",
                    expected.len()
                )
            });
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "datagram {i}"
            );
        }
        self.expect_nothing();
    }

    /// Asserts that nothing (more) arrives.
    fn expect_nothing(&self) {
        let got = self.sink.recv_until_quiet(QUIET, 100);
        let got: Vec<_> = got.iter().map(|d| String::from_utf8_lossy(d)).collect();
        assert!(got.is_empty(), "unexpected datagrams: {got:?}");
    }
}

/// The statistics of `queue`, which must be bound in this thread's namespace.
fn stats(queue: u16) -> QueueStats {
    QueueStats::for_queue(queue)
        .expect("read queue statistics")
        .unwrap_or_else(|| panic!("queue {queue} not listed: {:?}", QueueStats::read_all()))
}

fn is_listed(queue: u16) -> bool {
    QueueStats::for_queue(queue)
        .expect("read queue statistics")
        .is_some()
}

/// A handle whose blocking `process()` gives up after 50 ms.
fn open_handle<'cb>() -> Handle<'cb> {
    let handle = Handle::open().expect("open handle");
    handle
        .set_recv_timeout(Some(Duration::from_millis(50)))
        .expect("receive timeout");
    handle
}

/// What an in-test consumer's callback saw: `(id, UDP data)` per packet.
#[derive(Default)]
struct Seen(Mutex<Vec<(u32, Vec<u8>)>>);

impl Seen {
    /// A callback that records each packet and accepts it.
    fn accepting(&self) -> impl FnMut(&libnfq::Packet<'_>) -> Verdict + Send + '_ {
        move |packet| {
            // The UDP data, after the 20-byte IPv4 header and the 8-byte UDP header.
            let data = packet.payload().get(28..).unwrap_or_default().to_vec();
            self.0.lock().unwrap().push((packet.id(), data));
            Verdict::accept()
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn ids(&self) -> Vec<u32> {
        self.0.lock().unwrap().iter().map(|(id, _)| *id).collect()
    }

    fn data(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// Calls `process()` until `seen` holds `count` packets; returns the (transient) errors it
/// reported on the way, and fails on any other error or after the deadline.
fn pump(handle: &Handle<'_>, seen: &Seen, count: usize) -> Vec<Error> {
    let start = Instant::now();
    let mut errors = Vec::new();
    while seen.len() < count {
        assert!(
            start.elapsed() < DEADLINE,
            "{} of {count} packets dispatched; errors: {errors:?}",
            seen.len()
        );
        match handle.process() {
            Ok(_) => {}
            Err(e) if e.is_transient() => errors.push(e),
            Err(e) => panic!("process: {e}"),
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Child consumer processes.

/// Not a test: what a child process started by [`Child::start`] runs. Without `NFQ_FAULTS_CHILD`
/// (that is, in a normal `--include-ignored` run) it does nothing.
///
/// - `serve <queue> <n>`: binds `queue`, prints `bound <portid>`, accepts the first `n` packets
///   and holds every later one (deferred, never decided), until killed.
/// - `bind <queue>`: tries to bind `queue`, prints `bound <portid>` or `error <Debug>: <Display>`,
///   and exits.
#[test]
#[ignore = "not a test: the consumer process that the fault tests start"]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    // Never outlive the test that started us, even if it dies without killing us.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number, no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let words: Vec<&str> = spec.split(' ').collect();
    let queue: u16 = words[1].parse().expect("queue number");
    let handle = Handle::open().expect("open handle");
    match words[0] {
        "serve" => {
            let accept_first: usize = words[2].parse().expect("packet count");
            let mut held: Vec<DeferredPacket> = Vec::new();
            let _queue = handle
                .queue_deferrable(queue, QueueConfig::new(), move |pending: Pending<'_>| {
                    if pending.id() as usize <= accept_first {
                        return pending.accept();
                    }
                    let (packet, handled) = pending.defer();
                    held.push(packet);
                    handled
                })
                .expect("bind");
            println!("bound {}", handle.portid());
            loop {
                if let Err(e) = handle.run() {
                    assert!(e.is_transient(), "run: {e}");
                }
            }
        }
        "bind" => match handle.queue(queue, QueueConfig::new(), |_| Verdict::accept()) {
            Ok(_queue) => println!("bound {}", handle.portid()),
            Err(e) => println!("error {e:?}: {e}"),
        },
        other => panic!("unknown child mode {other:?}"),
    }
}

/// A child consumer process (this binary, running [`child_process`]) in the calling thread's
/// network namespace. Killed when dropped.
struct Child {
    process: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Child {
    /// Starts `child_process` with `spec`, through `wrapper` (a command and its arguments that
    /// runs the rest, e.g. `setpriv ... --`) if not empty.
    fn start(spec: &str, wrapper: &[&str]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        command
            .args(["child_process", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "--quiet"])
            .env(CHILD_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut process = command
            .spawn()
            .unwrap_or_else(|e| panic!("start child {spec:?}: {e}"));
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child { process, lines }
    }

    /// The rest of the first output line that starts with `bound ` or `error `.
    fn outcome(&self) -> Result<String, String> {
        let start = Instant::now();
        let mut other = Vec::new();
        while let Some(left) = DEADLINE.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("bound ") {
                        return Ok(rest.to_string());
                    }
                    if let Some(rest) = line.strip_prefix("error ") {
                        return Err(rest.to_string());
                    }
                    other.push(line);
                }
                Err(_) => break,
            }
        }
        panic!("the child said neither `bound` nor `error`; its output: {other:?}");
    }

    /// Waits until the child has bound its queue; returns its netlink port id.
    fn bound(&self) -> u32 {
        let portid = self.outcome().expect("the child binds its queue");
        portid.parse().expect("port id")
    }

    /// SIGKILL (unless it has exited), then reaps the child.
    fn kill(&mut self) -> ExitStatus {
        let _ = self.process.kill();
        self.process.wait().expect("wait for child")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// A consumer process killed mid-stream.

/// A child consumer accepts 4 datagrams and holds 3 more when it is killed. Checks that the
/// kernel unbinds the queue at once and drops the held packets (even with `--queue-bypass`);
/// that later traffic is dropped without a consumer, or accepted with `bypass`; and that a new
/// consumer binds the queue at once, its packet ids starting again at 1.
fn killed_consumer_case(ns: &Netns, bypass: bool) {
    let flow = Flow::new(ns, QUEUE, bypass);
    let mut child = Child::start(&format!("serve {QUEUE} 4"), &[]);
    let portid = child.bound();
    assert_eq!(stats(QUEUE).portid, portid);

    let live = flow.send("live", 4);
    flow.expect(&live);
    flow.send("held", 3);
    assert!(
        support::wait_until(DEADLINE, || stats(QUEUE).queued == 3),
        "{:?}",
        stats(QUEUE)
    );

    let status = child.kill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    // The socket closed with the process: the queue is gone by the time the process is reaped.
    assert!(!is_listed(QUEUE), "{:?}", QueueStats::read_all());
    let after = flow.send("after", 3);
    if bypass {
        flow.expect(&after);
    } else {
        flow.expect_nothing();
    }

    let seen = Seen::default();
    let handle = open_handle();
    let _queue = handle
        .queue(QUEUE, QueueConfig::new(), seen.accepting())
        .expect("a new consumer binds the queue at once");
    let new = flow.send("new", 2);
    assert!(pump(&handle, &seen, 2).is_empty());
    assert_eq!(seen.ids(), [1, 2]);
    assert_eq!(seen.data(), new);
    // Only now: the held packets were dropped, not delivered late.
    flow.expect(&new);
}

#[test]
fn killed_consumer_process_stops_the_traffic() {
    let Some(ns) = support::enter!() else { return };
    killed_consumer_case(&ns, false);
}

#[test]
fn killed_consumer_process_with_queue_bypass_lets_traffic_through() {
    let Some(ns) = support::enter!() else { return };
    killed_consumer_case(&ns, true);
}

// ---------------------------------------------------------------------------------------------
// A queue owned by another process.

#[test]
fn queue_owned_by_another_process_is_a_typed_error_both_ways() {
    let Some(_ns) = support::enter!() else { return };
    // The child owns QUEUE: binding it here fails.
    let child = Child::start(&format!("serve {QUEUE} 0"), &[]);
    let portid = child.bound();
    let handle = open_handle();
    let err = handle
        .queue(QUEUE, QueueConfig::new(), |_| Verdict::accept())
        .expect_err("the child owns the queue");
    assert!(
        matches!(err, Error::QueueOwnedByOther { queue: QUEUE }),
        "{err:?}"
    );
    assert_eq!(stats(QUEUE).portid, portid, "the owner is unchanged");

    // This process owns QUEUE + 1: binding it in another process fails the same way.
    let _ours = handle
        .queue(QUEUE + 1, QueueConfig::new(), |_| Verdict::accept())
        .expect("bind");
    let other = Child::start(&format!("bind {}", QUEUE + 1), &[]);
    let err = other.outcome().expect_err("this process owns the queue");
    assert!(err.starts_with("QueueOwnedByOther { queue: 81 }"), "{err}");
    assert_eq!(stats(QUEUE + 1).portid, handle.portid());
}

// ---------------------------------------------------------------------------------------------
// A full queue.

/// A queue of maximum length 2, a consumer that does not process, 10 datagrams: the kernel
/// drops (`queue_dropped`) or, with `FAIL_OPEN`, accepts the 8 that do not fit; a
/// `--queue-bypass` rule changes nothing (it applies only while nobody is bound). The counters
/// stay after the 2 waiting packets are decided.
fn full_queue_case(ns: &Netns, fail_open: bool, bypass: bool) {
    const Q: u16 = 10;
    let flow = Flow::new(ns, Q, bypass);
    let seen = Seen::default();
    let handle = open_handle();
    let flags = if fail_open {
        QueueFlags::FAIL_OPEN
    } else {
        QueueFlags::empty()
    };
    let config = QueueConfig::new().max_len(2).flags(flags);
    let _queue = handle.queue(Q, config, seen.accepting()).expect("bind");
    let sent = flow.send("burst", 10);

    let dropped = if fail_open { 0 } else { 8 };
    let st = stats(Q);
    assert_eq!(
        (st.queued, st.queue_dropped, st.user_dropped, st.id_sequence),
        (2, dropped, 0, 2),
        "{st:?}"
    );
    if fail_open {
        flow.expect(&sent[2..]);
    } else {
        flow.expect_nothing();
    }
    assert!(pump(&handle, &seen, 2).is_empty());
    assert_eq!(seen.data(), sent[..2]);
    flow.expect(&sent[..2]);
    let st = stats(Q);
    assert_eq!((st.queued, st.queue_dropped), (0, dropped), "{st:?}");
}

#[test]
fn full_queue_drops_the_excess_and_counts_it() {
    let Some(ns) = support::enter!() else { return };
    full_queue_case(&ns, false, false);
}

#[test]
fn full_queue_drops_the_excess_even_with_queue_bypass() {
    let Some(ns) = support::enter!() else { return };
    full_queue_case(&ns, false, true);
}

#[test]
fn full_queue_with_fail_open_accepts_the_excess_uncounted() {
    let Some(ns) = support::enter!() else { return };
    full_queue_case(&ns, true, false);
}

// ---------------------------------------------------------------------------------------------
// Socket receive buffer overrun.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Overrun {
    /// The default: the kernel reports ENOBUFS.
    Reported,
    /// `set_no_enobufs(true)`.
    Silenced,
    /// `QueueFlags::FAIL_OPEN`.
    FailOpen,
}

/// A handle with the smallest receive buffer the kernel grants, 64 datagrams without
/// processing: the first few messages fit, the rest are lost (`user_dropped`, or accepted with
/// `FAIL_OPEN`). Then processing: `Error::NoBufs` once (not when silenced), the packets whose
/// messages fit, in order; and later packets go through normally.
fn overrun_case(ns: &Netns, mode: Overrun) {
    const Q: u16 = 20;
    const BURST: usize = 64;
    let flow = Flow::new(ns, Q, false);
    let seen = Seen::default();
    let handle = open_handle();
    let granted = handle
        .set_recv_buffer_size(1)
        .expect("shrink receive buffer");
    assert!(granted < 16 * 1024, "granted {granted} bytes");
    if mode == Overrun::Silenced {
        handle.set_no_enobufs(true).expect("NETLINK_NO_ENOBUFS");
    }
    let flags = if mode == Overrun::FailOpen {
        QueueFlags::FAIL_OPEN
    } else {
        QueueFlags::empty()
    };
    let config = QueueConfig::new().flags(flags);
    let _queue = handle.queue(Q, config, seen.accepting()).expect("bind");
    let sent = flow.send("burst", BURST);

    let st = stats(Q);
    let fit = st.queued as usize;
    assert!((1..BURST).contains(&fit), "{st:?} (buffer {granted} bytes)");
    let lost = if mode == Overrun::FailOpen {
        0
    } else {
        BURST - fit
    };
    assert_eq!(
        (
            st.user_dropped as usize,
            st.queue_dropped,
            st.id_sequence as usize
        ),
        (lost, 0, BURST),
        "{st:?}"
    );
    if mode == Overrun::FailOpen {
        // Those whose message was lost were accepted without a verdict.
        flow.expect(&sent[fit..]);
    } else {
        flow.expect_nothing();
    }

    let errors = pump(&handle, &seen, fit);
    if mode == Overrun::Silenced {
        assert!(errors.is_empty(), "{errors:?}");
    } else {
        assert!(
            matches!(errors[..], [Error::NoBufs]),
            "expected one NoBufs: {errors:?}"
        );
    }
    // The messages that fit were the first ones, and their packets keep their ids.
    assert_eq!(seen.data(), sent[..fit]);
    assert_eq!(seen.ids(), (1..=fit as u32).collect::<Vec<_>>());
    flow.expect(&sent[..fit]);

    // The loop goes on: later packets are dispatched normally (one at a time: the buffer
    // holds only `fit` messages).
    for i in 1..=3 {
        let later = flow.send(&format!("later {i}"), 1);
        assert!(pump(&handle, &seen, fit + i).is_empty());
        assert_eq!(seen.data()[fit + i - 1..], later);
        flow.expect(&later);
    }
    eprintln!("{mode:?}: receive buffer {granted} bytes, {fit} of {BURST} messages fit");
    let st = stats(Q);
    assert_eq!((st.queued, st.user_dropped as usize), (0, lost), "{st:?}");
}

#[test]
fn receive_buffer_overrun_reports_nobufs_and_counts_user_drops() {
    let Some(ns) = support::enter!() else { return };
    overrun_case(&ns, Overrun::Reported);
}

#[test]
fn receive_buffer_overrun_with_no_enobufs_is_silent_but_counted() {
    let Some(ns) = support::enter!() else { return };
    overrun_case(&ns, Overrun::Silenced);
}

#[test]
fn receive_buffer_overrun_with_fail_open_accepts_and_still_reports() {
    let Some(ns) = support::enter!() else { return };
    overrun_case(&ns, Overrun::FailOpen);
}

// ---------------------------------------------------------------------------------------------
// A handle dropped with packets waiting.

/// `lifecycle.rs` checks that dropping the handle drops its waiting packets; this checks that
/// neither `--queue-bypass` nor `FAIL_OPEN` saves them (the kernel flushes a destroyed queue
/// with `NF_DROP`), while the traffic that follows is accepted by the bypass.
#[test]
fn dropped_handle_drops_waiting_packets_even_with_bypass_and_fail_open() {
    let Some(ns) = support::enter!() else { return };
    const Q: u16 = 30;
    let flow = Flow::new(&ns, Q, true);
    let seen = Seen::default();
    let handle = open_handle();
    let config = QueueConfig::new().flags(QueueFlags::FAIL_OPEN);
    let queue = handle.queue(Q, config, seen.accepting()).expect("bind");
    flow.send("waiting", 3);
    assert_eq!(stats(Q).queued, 3);
    // Keep the queue bound until the socket closes.
    std::mem::forget(queue);
    drop(handle);
    // Not necessarily at once: a process forked meanwhile by another test may hold the socket
    // for a moment (see the support module docs).
    assert!(
        support::wait_until(DEADLINE, || !is_listed(Q)),
        "{:?}",
        QueueStats::read_all()
    );
    let after = flow.send("after", 2);
    flow.expect(&after);
    assert_eq!(seen.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Privileges.

/// A whole process without CAP_NET_ADMIN (started through `setpriv`, which removes it from the
/// bounding set, so not even root has it) is told what is missing and each way to get it.
#[test]
fn process_without_cap_net_admin_is_told_what_is_missing_and_how_to_run() {
    let Some(_ns) = support::enter!() else { return };
    let wrapper = ["setpriv", "--bounding-set", "-net_admin", "--"];
    if Command::new(wrapper[0]).arg("--version").output().is_err() {
        support::skip(&support::test_name!(), "setpriv (util-linux) not found");
        return;
    }
    let child = Child::start(&format!("bind {QUEUE}"), &wrapper);
    let err = child.outcome().expect_err("binding needs CAP_NET_ADMIN");
    assert!(err.starts_with("PermissionDenied"), "{err}");
    for needed in [
        "bind queue",
        "CAP_NET_ADMIN",
        "run as root",
        "setcap cap_net_admin+ep",
        "unshare --user --map-root-user --net",
    ] {
        assert!(err.contains(needed), "{needed:?} missing from: {err}");
    }
    assert!(!is_listed(QUEUE));
}
