//! Binding, configuring and releasing queues, as the kernel sees it (`/proc`) and as the traffic
//! shows it; bind errors; panics in callbacks; late verdict errors.

#[allow(unused_imports)]
mod support;

use std::any::Any;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libnfq::{sys, CopyMode, Error, Handle, QueueConfig, QueueFlags, Verdict, MAX_PAYLOAD_LEN};
use support::{Netns, QueueStats, RawQueue, UdpSink};

/// Upper bound for anything we wait for; normally reached in milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long one `process()` call may block.
const POLL: Duration = Duration::from_millis(50);
/// How long a sink must stay silent to conclude that nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);

/// A handle whose `process()` gives up after [`POLL`].
fn open_handle<'cb>() -> Handle<'cb> {
    let handle = Handle::open().expect("open handle");
    handle.set_recv_timeout(Some(POLL)).expect("recv timeout");
    handle
}

/// A UDP sink on 127.0.0.1 whose datagrams are queued to `queue` in `OUTPUT`.
fn queued_sink(ns: &Netns, queue: u16) -> UdpSink {
    let sink = UdpSink::bind("127.0.0.1:0");
    let (port, queue) = (sink.port().to_string(), queue.to_string());
    ns.queue_udp_port(&port, &queue);
    sink
}

/// `count` distinct payloads: `"<tag> 0"`, `"<tag> 1"`, ...
fn payloads(tag: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("{tag} {i}").into_bytes())
        .collect()
}

/// Sends each payload as one datagram to `sink`. Sending does not wait for verdicts: on
/// `OUTPUT` the packet is queued (and its message is in the handle's socket) by the time
/// `send` returns.
fn send(sink: &UdpSink, payloads: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    support::udp_send(sink.addr(), &refs);
}

/// Calls `handle.process()` until `done()` or the deadline (which fails the test).
fn pump(handle: &Handle<'_>, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for packets");
        handle.process().expect("process");
    }
}

/// Receives `n` datagrams on `sink` (each within the deadline).
fn receive(sink: &UdpSink, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            sink.recv_one(DEADLINE)
                .unwrap_or_else(|| panic!("datagram {i} of {n} not received"))
        })
        .collect()
}

/// Asserts that nothing (more) arrives on `sink`.
fn assert_silent(sink: &UdpSink) {
    let got = sink.recv_until_quiet(QUIET, 100);
    assert!(got.is_empty(), "unexpected datagrams: {got:?}");
}

/// The `/proc` line of `queue`, which must be listed.
fn stat(ns: &Netns, queue: u16) -> QueueStats {
    ns.queue_stat(queue)
        .unwrap_or_else(|| panic!("queue {queue} not listed: {:?}", ns.queue_stats()))
}

/// Waits until `queue` is no longer listed (a closed socket may linger in a process forked
/// meanwhile by another test, see the support module docs).
fn wait_unlisted(ns: &Netns, queue: u16) {
    assert!(
        support::wait_until(DEADLINE, || ns.queue_stat(queue).is_none()),
        "queue {queue} still listed: {:?}",
        ns.queue_stats()
    );
}

/// A callback's record of the packets it saw: `(id, payload)`.
type Log = Mutex<Vec<(u32, Vec<u8>)>>;

fn logged(log: &Log) -> Vec<(u32, Vec<u8>)> {
    log.lock().unwrap().clone()
}

/// A callback that records each packet in `log` and accepts it.
fn recorder(log: &Log) -> impl FnMut(&libnfq::Packet<'_>) -> Verdict + Send + '_ {
    move |p| {
        let payload = p.payload();
        // The UDP data after the 20-byte IPv4 and 8-byte UDP headers.
        log.lock()
            .unwrap()
            .push((p.id(), payload.get(28..).unwrap_or_default().to_vec()));
        Verdict::accept()
    }
}

/// Binds `queue` on `handle` with a recorder into the empty `log`, sends one datagram and
/// checks that it is the first (id 1) and only packet the recorder sees, and that it is
/// delivered.
fn fresh_queue_sees_ids_from_one<'cb>(
    handle: &Handle<'cb>,
    log: &'cb Log,
    sink: &UdpSink,
    queue: u16,
) {
    let bound = handle
        .queue(queue, QueueConfig::new(), recorder(log))
        .expect("bind again");
    let data = payloads("after", 1);
    send(sink, &data);
    pump(handle, || !logged(log).is_empty());
    assert_eq!(logged(log), vec![(1, data[0].clone())]);
    assert_eq!(receive(sink, 1), data);
    drop(bound);
}

/// The type (`"&str"` or `"String"`) and text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> (&'static str, String) {
    if let Some(s) = payload.downcast_ref::<&str>() {
        ("&str", s.to_string())
    } else if let Some(s) = payload.downcast_ref::<String>() {
        ("String", s.clone())
    } else {
        panic!("panic payload is neither &str nor String")
    }
}

#[test]
fn copy_mode_and_range_are_in_proc_right_after_bind() {
    let Some(ns) = support::enter!() else { return };
    assert_eq!(MAX_PAYLOAD_LEN, 65531);
    let max = MAX_PAYLOAD_LEN as u32;
    let handle = open_handle();
    let mut bound = Vec::new();
    for (queue, mode, expected) in [
        (1, CopyMode::Packet(100), (2, 100)),
        (2, CopyMode::Meta, (1, 0)),
        (3, CopyMode::FULL, (2, max)),
        (4, CopyMode::Packet(0), (2, max)),
        (5, CopyMode::Packet(u16::MAX), (2, max)),
        (6, CopyMode::None, (0, 0)),
    ] {
        let config = QueueConfig::new().copy_mode(mode);
        bound.push(handle.queue(queue, config, |_| Verdict::accept()).unwrap());
        // No polling: the bind and its parameters are one acknowledged message.
        let st = stat(&ns, queue);
        assert_eq!(
            (st.copy_mode, st.copy_range),
            expected,
            "queue {queue} {mode:?}: {st:?}"
        );
        assert_eq!((st.portid, st.queued), (handle.portid(), 0), "{st:?}");
    }
}

#[test]
fn copy_mode_none_drops_every_packet() {
    let Some(ns) = support::enter!() else { return };
    let sink = queued_sink(&ns, 1);
    let log = Log::default();
    let handle = open_handle();
    let _queue = handle
        .queue(
            1,
            QueueConfig::new().copy_mode(CopyMode::None),
            recorder(&log),
        )
        .unwrap();
    send(&sink, &payloads("none", 2));
    // Queueing happens within send(): the kernel refused both packets without an id.
    let st = stat(&ns, 1);
    assert_eq!((st.queued, st.id_sequence), (0, 0), "{st:?}");
    assert_eq!(handle.process().expect("process"), 0);
    assert!(logged(&log).is_empty());
    assert_silent(&sink);
}

/// Binds a queue with `max_len(2)` (and `FAIL_OPEN` if asked), sends 10 datagrams without
/// processing, checks what the kernel did with the 8 that did not fit, then lets the callback
/// accept the 2 waiting ones.
fn short_queue_case(ns: &Netns, fail_open: bool) {
    let sink = queued_sink(ns, 1);
    let log = Log::default();
    let handle = open_handle();
    let flags = if fail_open {
        QueueFlags::FAIL_OPEN
    } else {
        QueueFlags::empty()
    };
    let config = QueueConfig::new().max_len(2).flags(flags);
    let _queue = handle.queue(1, config, recorder(&log)).unwrap();
    let data = payloads("burst", 10);
    send(&sink, &data);

    let st = stat(ns, 1);
    let dropped = if fail_open { 0 } else { 8 };
    assert_eq!(
        (st.queued, st.id_sequence, st.queue_dropped),
        (2, 2, dropped),
        "{st:?}"
    );
    if fail_open {
        // The excess was accepted without a verdict.
        assert_eq!(receive(&sink, 8), data[2..]);
    }
    assert_silent(&sink);

    pump(&handle, || logged(&log).len() >= 2);
    assert_eq!(
        logged(&log),
        vec![(1, data[0].clone()), (2, data[1].clone())]
    );
    assert_eq!(receive(&sink, 2), data[..2]);
    assert_silent(&sink);
    assert_eq!(stat(ns, 1).queued, 0);
}

#[test]
fn max_len_drops_the_excess() {
    let Some(ns) = support::enter!() else { return };
    short_queue_case(&ns, false);
}

#[test]
fn max_len_with_fail_open_accepts_the_excess() {
    let Some(ns) = support::enter!() else { return };
    short_queue_case(&ns, true);
}

#[test]
fn queue_owned_by_another_socket() {
    let Some(ns) = support::enter!() else { return };
    let other = RawQueue::bind(5, 1500);
    let calls = AtomicUsize::new(0);
    let handle = open_handle();
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(100));
    let err = handle
        .queue(5, config.clone(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            Verdict::accept()
        })
        .expect_err("queue 5 belongs to another socket");
    assert!(
        matches!(err, Error::QueueOwnedByOther { queue: 5 }),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::EPERM));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("queue 5"), "{err}");
    // The other socket's binding is untouched (our copy range was not applied).
    let st = stat(&ns, 5);
    assert_eq!((st.portid, st.copy_range), (other.portid(), 1500), "{st:?}");

    drop(other);
    wait_unlisted(&ns, 5);
    let _queue = handle
        .queue(5, config, |_| Verdict::accept())
        .expect("bind once the other socket is gone");
    assert_eq!(stat(&ns, 5).portid, handle.portid());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn queue_bound_twice_on_one_handle() {
    let Some(ns) = support::enter!() else { return };
    let sink = queued_sink(&ns, 6);
    let log = Log::default();
    let second_calls = AtomicUsize::new(0);
    let handle = open_handle();
    let first = handle.queue(6, QueueConfig::new(), recorder(&log)).unwrap();
    let config = QueueConfig::new().copy_mode(CopyMode::Packet(100));
    let err = handle
        .queue(6, config, |_| {
            second_calls.fetch_add(1, Ordering::SeqCst);
            Verdict::drop()
        })
        .expect_err("queue 6 is already bound on this handle");
    assert!(
        matches!(err, Error::QueueAlreadyBound { queue: 6 }),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::EBUSY));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("queue 6"), "{err}");
    // The failed bind changed nothing: same owner, same copy range.
    let st = stat(&ns, 6);
    assert_eq!(
        (st.portid, st.copy_range),
        (handle.portid(), MAX_PAYLOAD_LEN as u32),
        "{st:?}"
    );
    // Packets still go to the first callback.
    let data = payloads("first", 1);
    send(&sink, &data);
    pump(&handle, || !logged(&log).is_empty());
    assert_eq!(logged(&log), vec![(1, data[0].clone())]);
    assert_eq!(receive(&sink, 1), data);
    assert_eq!(second_calls.load(Ordering::SeqCst), 0);
    drop(first);
}

#[test]
fn unsupported_flags_fail_the_bind_and_leave_the_queue_unbound() {
    let Some(ns) = support::enter!() else { return };
    let handle = open_handle();
    let config = QueueConfig::new().flags(QueueFlags::CONNTRACK);
    match handle.queue(7, config, |_| Verdict::accept()) {
        Err(err) => {
            assert!(
                matches!(&err, Error::Unsupported { queue: 7, .. }),
                "{err:?}"
            );
            assert_eq!(err.errno(), Some(libc::EOPNOTSUPP), "{err:?}");
            assert!(!err.is_transient());
            assert!(err.to_string().contains("bind"), "{err}");
            // The message names the kernel option that is missing.
            assert!(
                err.to_string().contains("CONFIG_NETFILTER_NETLINK_GLUE_CT"),
                "{err}"
            );
            // Flags are checked before the bind: no half-configured queue was left behind.
            assert_eq!(ns.queue_stat(7), None);
        }
        Ok(_queue) => {
            // A kernel with CONFIG_NETFILTER_NETLINK_GLUE_CT supports the flag.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"note: this kernel supports QueueFlags::CONNTRACK; EOPNOTSUPP path not tested\n",
            );
            assert_eq!(stat(&ns, 7).portid, handle.portid());
            return;
        }
    }
    let _queue = handle
        .queue(7, QueueConfig::new(), |_| Verdict::accept())
        .expect("bind without the flag");
    assert_eq!(stat(&ns, 7).portid, handle.portid());
}

/// How a queue with waiting packets is released.
#[derive(Clone, Copy, Debug)]
enum Release {
    DropQueue,
    Unbind,
    DropHandle,
}

/// Queues 3 datagrams without processing them, releases the queue `how`, and checks that the
/// kernel dropped them, that the queue is gone, and that the number can be bound again with
/// ids restarting at 1 (on the same handle, or on a new one after `DropHandle`).
fn release_case(ns: &Netns, how: Release) {
    const QUEUE: u16 = 3;
    let sink = queued_sink(ns, QUEUE);
    let (log, log_after) = (Log::default(), Log::default());
    let handle = open_handle();
    let queue = handle
        .queue(QUEUE, QueueConfig::new(), recorder(&log))
        .unwrap();
    send(&sink, &payloads("before", 3));
    assert_eq!(stat(ns, QUEUE).queued, 3);
    let handle = match how {
        Release::DropQueue => {
            drop(queue);
            // UNBIND is acknowledged before drop returns: no polling needed.
            assert_eq!(ns.queue_stat(QUEUE), None);
            Some(handle)
        }
        Release::Unbind => {
            queue.unbind().expect("unbind");
            assert_eq!(ns.queue_stat(QUEUE), None);
            Some(handle)
        }
        Release::DropHandle => {
            // The queue stays bound until the socket closes.
            std::mem::forget(queue);
            drop(handle);
            wait_unlisted(ns, QUEUE);
            None
        }
    };
    assert_silent(&sink);
    assert!(logged(&log).is_empty(), "{how:?}: {:?}", logged(&log));
    let handle = handle.unwrap_or_else(open_handle);
    fresh_queue_sees_ids_from_one(&handle, &log_after, &sink, QUEUE);
    assert!(logged(&log).is_empty(), "{how:?}: {:?}", logged(&log));
}

#[test]
fn dropping_a_queue_drops_its_waiting_packets() {
    let Some(ns) = support::enter!() else { return };
    release_case(&ns, Release::DropQueue);
}

#[test]
fn unbinding_a_queue_drops_its_waiting_packets() {
    let Some(ns) = support::enter!() else { return };
    release_case(&ns, Release::Unbind);
}

#[test]
fn dropping_the_handle_drops_waiting_packets() {
    let Some(ns) = support::enter!() else { return };
    release_case(&ns, Release::DropHandle);
}

fn panic_with_static_str(_id: u32) {
    panic!("static boom");
}

fn panic_with_string(id: u32) {
    panic!("boom on packet {id}");
}

/// A callback panics (through `panic_with`) on the 2nd packet, which arrives together with two
/// more in one `process()` call. Checks the resumed panic (payload type and text `message`),
/// that the three packets got the fallback verdict (`None`: the default) without further
/// callback runs, and that the handle keeps working.
fn panic_case(ns: &Netns, fallback: Option<Verdict>, panic_with: fn(u32), message: (&str, &str)) {
    const QUEUE: u16 = 4;
    let accepted = fallback.as_ref().is_some_and(|v| v == &Verdict::accept());
    let sink = queued_sink(ns, QUEUE);
    let ids = Mutex::new(Vec::new());
    let handle = open_handle();
    let mut config = QueueConfig::new();
    if let Some(fallback) = fallback {
        config = config.fallback(fallback);
    }
    let _queue = handle
        .queue(QUEUE, config, |p| {
            let mut ids = ids.lock().unwrap();
            ids.push(p.id());
            if ids.len() == 2 {
                drop(ids); // do not poison the mutex
                panic_with(p.id());
            }
            Verdict::accept()
        })
        .unwrap();
    let calls = || ids.lock().unwrap().clone();

    let first = payloads("first", 1);
    send(&sink, &first);
    pump(&handle, || calls().len() == 1);
    assert_eq!(receive(&sink, 1), first);

    // Three packets wait; binding another queue makes the handle read their messages while it
    // waits for the acknowledgement, so the next process() dispatches all three at once.
    let batch = payloads("batch", 3);
    send(&sink, &batch);
    assert_eq!(stat(ns, QUEUE).queued, 3);
    let _other = handle
        .queue(QUEUE + 1, QueueConfig::new(), |_| Verdict::accept())
        .unwrap();
    let payload = catch_unwind(AssertUnwindSafe(|| handle.process()))
        .expect_err("process() resumes the callback's panic");
    let (kind, text) = panic_message(payload.as_ref());
    assert_eq!((kind, text.as_str()), message);
    // The callback ran for the 2nd packet only; the other two got the fallback directly, and
    // all verdicts were sent before the panic was resumed.
    assert_eq!(calls(), vec![1, 2]);
    assert_eq!(stat(ns, QUEUE).queued, 0);
    if accepted {
        assert_eq!(receive(&sink, 3), batch);
    }
    assert_silent(&sink);

    // The handle keeps dispatching to the same callback.
    let last = payloads("last", 1);
    send(&sink, &last);
    pump(&handle, || calls().len() == 3);
    assert_eq!(calls(), vec![1, 2, 5]);
    assert_eq!(receive(&sink, 1), last);
}

#[test]
fn panic_in_callback_is_resumed_and_packets_get_the_default_fallback() {
    let Some(ns) = support::enter!() else { return };
    panic_case(&ns, None, panic_with_string, ("String", "boom on packet 2"));
}

#[test]
fn panic_in_callback_with_accept_fallback() {
    let Some(ns) = support::enter!() else { return };
    panic_case(
        &ns,
        Some(Verdict::accept()),
        panic_with_static_str,
        ("&str", "static boom"),
    );
}

/// Sends a verdict for packet `id` of `queue` on the handle's socket, bypassing the handle.
fn send_raw_verdict(handle: &Handle<'_>, queue: u16, id: u32, verdict: u32) {
    // 8-byte aligned room for the message (header 16 + nfgenmsg 4 + verdict attribute 12).
    let mut buf = [0u64; 32];
    // SAFETY: `buf` is a zeroed, aligned 256-byte buffer; nfq_nlmsg_put writes the 20-byte
    // header at its start and nfq_nlmsg_verdict_put appends a 12-byte attribute, both well
    // within it. `nlh` points into `buf`, which outlives its uses.
    let len = unsafe {
        let nlh = sys::nfq_nlmsg_put(
            buf.as_mut_ptr().cast(),
            sys::NFQNL_MSG_VERDICT as i32,
            u32::from(queue),
        );
        sys::nfq_nlmsg_verdict_put(nlh, id as i32, verdict as i32);
        (*nlh).nlmsg_len as usize
    };
    assert!(len <= std::mem::size_of_val(&buf));
    // SAFETY: sends `len` initialized bytes of `buf` on the handle's open netlink socket; with
    // no address, netlink sends to the kernel.
    let sent = unsafe { libc::send(handle.as_raw_fd(), buf.as_ptr().cast(), len, 0) };
    assert_eq!(sent, len as isize, "{}", std::io::Error::last_os_error());
}

#[test]
fn verdict_for_unknown_packet_is_reported_later() {
    let Some(ns) = support::enter!() else { return };
    const QUEUE: u16 = 8;
    let sink = queued_sink(&ns, QUEUE);
    let log = Log::default();
    let handle = open_handle();
    let _queue = handle
        .queue(QUEUE, QueueConfig::new(), recorder(&log))
        .unwrap();
    send_raw_verdict(&handle, QUEUE, 999, libc::NF_ACCEPT as u32);
    let deadline = Instant::now() + DEADLINE;
    let err = loop {
        assert!(Instant::now() < deadline, "no error reported");
        match handle.process() {
            Ok(n) => assert_eq!(n, 0, "no packet was sent"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(
            err,
            Error::UnknownPacket {
                queue: QUEUE,
                id: 999
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains("queue 8") && text.contains("999"), "{text}");

    // The handle keeps working.
    let data = payloads("after error", 1);
    send(&sink, &data);
    pump(&handle, || !logged(&log).is_empty());
    assert_eq!(logged(&log), vec![(1, data[0].clone())]);
    assert_eq!(receive(&sink, 1), data);
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_ADMIN: u32 = 12;

/// Removes CAP_NET_ADMIN from the calling thread's effective set (raw capget/capset: this
/// thread only).
fn drop_cap_net_admin_in_this_thread() {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a valid v3 header and room for the two data structs v3 uses.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    // SAFETY: capset with the same header and the two data structs; lowering the effective
    // set is always allowed and affects only the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn binding_without_cap_net_admin_is_permission_denied() {
    let Some(ns) = support::enter!() else { return };
    std::thread::scope(|s| {
        s.spawn(|| {
            drop_cap_net_admin_in_this_thread();
            let handle = Handle::open().expect("opening needs no privilege");
            let err = handle
                .queue(9, QueueConfig::new(), |_| Verdict::accept())
                .expect_err("bind without CAP_NET_ADMIN");
            assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
            assert_eq!(err.errno(), Some(libc::EPERM));
            assert!(!err.is_transient());
            assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
        });
    });
    assert_eq!(ns.queue_stat(9), None);
}
