//! Helpers shared by the regression tests of issue 10 (`tests/regressions*.rs`): a queued UDP
//! flow whose datagrams are tagged with text, a `process()` pump that keeps every error, and a
//! callback that holds every packet as a `DeferredPacket`.
//!
//! Use it from a test file that also has `mod support;`.

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use libnfq::{DeferredPacket, Error, Handle, Pending, Queue, QueueConfig};

use crate::support::{self, Netns, UdpSink};

/// Upper bound for anything we wait for; normally reached in milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a sink must stay silent to conclude that nothing more arrives.
pub const QUIET: Duration = Duration::from_millis(300);
/// How long one blocking `process()` call of [`open_handle`]'s handles may wait.
pub const POLL: Duration = Duration::from_millis(20);

/// A handle whose blocking `process()` gives up after [`POLL`].
pub fn open_handle<'cb>() -> Handle<'cb> {
    let handle = Handle::open().expect("open handle");
    handle
        .set_recv_timeout(Some(POLL))
        .expect("receive timeout");
    handle
}

/// The UDP data of an IPv4 packet copied from its network header (empty if cut).
pub fn udp_data(ip: &[u8]) -> &[u8] {
    let ihl = ip.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    ip.get(ihl + 8..).unwrap_or(&[])
}

/// The UDP data of an IPv4 packet as text (lossy).
pub fn text_of(ip: &[u8]) -> String {
    String::from_utf8_lossy(udp_data(ip)).into_owned()
}

/// Datagrams to a sink on 127.0.0.1, queued to `queue` by a rule in `OUTPUT`.
pub struct Flow {
    pub sink: UdpSink,
    pub queue: u16,
}

impl Flow {
    pub fn new(ns: &Netns, queue: u16) -> Flow {
        let sink = UdpSink::bind("127.0.0.1:0");
        support::set_socket_buffer(sink.socket(), support::Buffer::Receive, 4 << 20);
        ns.queue_udp_port(sink.port(), queue);
        Flow { sink, queue }
    }

    /// Sends one datagram per payload. On `OUTPUT` a datagram is queued (or dropped) within
    /// `send`; the kernel's reasons for dropping one there (`EPERM`, `ESRCH` for a queue nobody
    /// bound) are fine: what arrives is checked on the sink.
    pub fn send_bytes(&self, payloads: &[Vec<u8>]) {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let (_, results) = support::udp_send_each(self.sink.addr(), &refs);
        for result in results {
            if let Err(e) = result {
                let errno = e.raw_os_error();
                assert!(
                    errno == Some(libc::EPERM) || errno == Some(libc::ESRCH),
                    "send: {e}"
                );
            }
        }
    }

    /// Sends one datagram per text.
    pub fn send(&self, texts: &[&str]) {
        let payloads: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
        self.send_bytes(&payloads);
    }

    /// Everything that arrives until the sink stays quiet for [`QUIET`], as text (see
    /// [`shown`]), sorted.
    pub fn received(&self) -> Vec<String> {
        let mut got: Vec<String> = self
            .sink
            .recv_until_quiet(QUIET, 100_000)
            .iter()
            .map(|d| shown(d))
            .collect();
        got.sort();
        got
    }

    /// Asserts that exactly `expected` arrives (in any order), then nothing more.
    pub fn expect(&self, expected: &[&str], what: &str) {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got = Vec::new();
        // Wait for the expected ones (each within the deadline), then for silence.
        while got.len() < want.len() {
            match self.sink.recv_one(DEADLINE) {
                Some(d) => got.push(shown(&d)),
                None => break,
            }
        }
        got.extend(self.received());
        got.sort();
        assert_eq!(got, want, "{what}: datagrams that reached the receiver");
    }
}

/// A datagram as text; a long one (the tests' big datagrams) as `<N bytes "start...">`.
pub fn shown(data: &[u8]) -> String {
    if data.len() <= 100 {
        String::from_utf8_lossy(data).into_owned()
    } else {
        format!(
            "<{} bytes {:?}...>",
            data.len(),
            String::from_utf8_lossy(&data[..16])
        )
    }
}

/// Calls `handle.process()` until `done()` (or fails after [`DEADLINE`]); returns every error
/// `process()` reported on the way.
pub fn pump(handle: &Handle<'_>, mut done: impl FnMut() -> bool) -> Vec<Error> {
    let start = Instant::now();
    let mut errors = Vec::new();
    while !done() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out driving the handle; errors so far: {errors:?}"
        );
        if let Err(e) = handle.process() {
            errors.push(e);
        }
    }
    errors
}

/// Calls `handle.process()` for `time`; returns every error it reported.
pub fn settle(handle: &Handle<'_>, time: Duration) -> Vec<Error> {
    let start = Instant::now();
    let mut errors = Vec::new();
    while start.elapsed() < time {
        if let Err(e) = handle.process() {
            errors.push(e);
        }
    }
    errors
}

/// Binds `queue` on `handle` with a callback that defers every packet into `held`.
pub fn hold_all<'h, 'cb>(
    handle: &'h Handle<'cb>,
    queue: u16,
    config: QueueConfig,
    held: &'cb Mutex<Vec<DeferredPacket>>,
) -> Queue<'h, 'cb> {
    handle
        .queue_deferrable(queue, config, move |pending: Pending<'_>| {
            let (packet, handled) = pending.defer();
            held.lock().unwrap().push(packet);
            handled
        })
        .unwrap_or_else(|e| panic!("bind queue {queue}: {e:?}"))
}

/// Number of packets in `held`.
pub fn count(held: &Mutex<Vec<DeferredPacket>>) -> usize {
    held.lock().unwrap().len()
}

/// Takes every packet out of `held`.
pub fn take(held: &Mutex<Vec<DeferredPacket>>) -> Vec<DeferredPacket> {
    std::mem::take(&mut *held.lock().unwrap())
}

/// Packets waiting for a verdict in `queue` (0 when it is not bound).
pub fn queued(ns: &Netns, queue: u16) -> u32 {
    ns.queue_stat(queue).map_or(0, |s| s.queued)
}

/// Waits until no packet waits in `queue`; panics with its `/proc` line after `within`.
pub fn assert_drained(ns: &Netns, queue: u16, within: Duration, what: &str) {
    assert!(
        support::wait_until(within, || queued(ns, queue) == 0),
        "{what}: packets still waiting for a verdict: {:?}",
        ns.queue_stat(queue)
    );
}

/// Waits until `queue` is no longer listed in `/proc` (a closed socket may linger in a process
/// forked meanwhile by another test, see the support module docs).
pub fn wait_unlisted(ns: &Netns, queue: u16) {
    assert!(
        support::wait_until(DEADLINE, || ns.queue_stat(queue).is_none()),
        "queue {queue} still listed: {:?}",
        ns.queue_stats()
    );
}

/// The text of a panic payload (`&str` or `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_string())
}
