//! Handles in other network namespaces: `Handle::open_in_netns` (a namespace file, the calling
//! thread stays where it is) and `Handle::from_fd` (a socket the caller opened), against real
//! namespaces held by child processes, including a container-style one owned by its own user
//! namespace (`unshare --user --map-root-user --net`).

#[allow(unused_imports)]
mod support;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libnfq::{Error, Handle, QueueConfig, Verdict};
use support::UdpSink;

const DEADLINE: Duration = Duration::from_secs(10);

/// `(st_dev, st_ino)` of a namespace file.
fn ns_id(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.dev(), meta.ino())
}

fn thread_netns() -> (u64, u64) {
    ns_id(Path::new("/proc/thread-self/ns/net"))
}

/// A child process that holds a new network namespace (and, for `user`, a new user namespace
/// owning it, as a rootless container has). Killed when dropped.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(user: bool) -> Holder {
        let mut cmd = Command::new(program("unshare"));
        if user {
            cmd.args(["--user", "--map-root-user"]);
        }
        let child = cmd
            .args(["--net", "sleep", "30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start `unshare ... sleep 30`");
        let holder = Holder { child };
        let here = thread_netns();
        let user_here = ns_id(Path::new("/proc/thread-self/ns/user"));
        let ready = support::wait_until(DEADLINE, || {
            let net = std::fs::metadata(holder.netns()).map(|m| (m.dev(), m.ino()));
            let usr = std::fs::metadata(holder.path("user")).map(|m| (m.dev(), m.ino()));
            matches!((net, usr), (Ok(n), Ok(u)) if n != here && (u != user_here) == user)
        });
        assert!(ready, "the child did not enter its namespaces");
        holder
    }

    fn path(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{ns}", self.child.id()))
    }

    fn netns(&self) -> PathBuf {
        self.path("net")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run(prog: &str, args: &[&str]) {
    let out = Command::new(program(prog)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread that entered the network namespace `netns` (processes it spawns run
/// there too).
fn inside<R: Send>(netns: &Path, f: impl FnOnce() -> R + Send) -> R {
    let file = std::fs::File::open(netns).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) with an open namespace fd; moves only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

/// Inside `netns`: brings `lo` up, queues UDP to a new sink's port to `queue`, and returns the
/// sink (its socket stays in that namespace).
fn prepare(netns: &Path, queue: u16) -> UdpSink {
    inside(netns, || {
        run("ip", &["link", "set", "lo", "up"]);
        let sink = UdpSink::bind("127.0.0.1:0");
        let (port, queue) = (sink.port().to_string(), queue.to_string());
        run(
            "iptables",
            &[
                "-A",
                "OUTPUT",
                "-p",
                "udp",
                "--dport",
                &port,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
            ],
        );
        sink
    })
}

/// Binds `queue` on `handle`, sends `payload` to `sink` from inside `netns`, processes until
/// the packet was seen, and checks it was accepted through to the sink.
fn roundtrip(handle: &Handle<'_>, netns: &Path, queue: u16, sink: &UdpSink, payload: &[u8]) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    handle
        .set_recv_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log = Arc::clone(&seen);
    let q = handle
        .queue(queue, QueueConfig::new(), move |p| {
            log.lock().unwrap().push(p.payload()[28..].to_vec());
            Verdict::accept()
        })
        .unwrap();
    let to = sink.addr();
    inside(netns, || support::udp_send(to, &[payload]));
    let deadline = Instant::now() + DEADLINE;
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no packet reached the handle");
        handle.process().unwrap();
    }
    drop(q);
    assert_eq!(*seen.lock().unwrap(), vec![payload.to_vec()]);
    assert_eq!(sink.recv_one(DEADLINE).as_deref(), Some(payload));
}

/// A handle opened in another namespace (plain, and owned by a child user namespace) gets the
/// packets that namespace's rules queue; the calling thread stays in its own namespace, where
/// the same queue number is a different queue (bound at the same time by another handle).
#[test]
fn open_in_netns_receives_that_namespaces_packets() {
    let Some(ns) = support::enter!() else { return };
    for user in [false, true] {
        let holder = Holder::start(user);
        let path = holder.netns();
        let before = thread_netns();
        assert_eq!(before, ns.id());
        let handle = Handle::open_in_netns(&path).unwrap();
        assert_eq!(thread_netns(), before, "the calling thread moved");
        let here = Handle::open().unwrap();
        let _here_queue = here
            .queue(3, QueueConfig::new(), |_| Verdict::drop())
            .expect("queue 3 of this namespace is free");
        let sink = prepare(&path, 3);
        roundtrip(&handle, &path, 3, &sink, format!("user {user}").as_bytes());
        assert_eq!(thread_netns(), before);
        ns.assert_current();
    }
}

/// `from_fd` adopts a NETLINK_NETFILTER socket the caller opened in another namespace (not
/// bound yet), and one opened here and already bound.
#[test]
fn from_fd_adopts_sockets_opened_by_the_caller() {
    let Some(ns) = support::enter!() else { return };
    let open_netfilter = || {
        // SAFETY: plain socket(2) call; the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let holder = Holder::start(true);
    let path = holder.netns();
    let fd = inside(&path, open_netfilter);
    let handle = Handle::from_fd(fd).unwrap();
    let sink = prepare(&path, 4);
    roundtrip(&handle, &path, 4, &sink, b"adopted");

    // Bound before adoption (kernel-chosen port id), in this namespace.
    let fd = open_netfilter();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero sockaddr_nl with the family set binds to a kernel-chosen port.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `addr` is a valid sockaddr_nl of the size given; the fd is open.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    }
    let handle = Handle::from_fd(fd).unwrap();
    let sink = UdpSink::bind("127.0.0.1:0");
    ns.queue_udp_port(sink.port(), 5);
    roundtrip(
        &handle,
        Path::new("/proc/thread-self/ns/net"),
        5,
        &sink,
        b"bound",
    );
}

/// Anything but a NETLINK_NETFILTER socket is refused with an errno that says why (and
/// closed); a bad namespace file fails without moving the calling thread.
#[test]
fn wrong_sockets_and_namespace_files_are_refused() {
    let socket = |domain, ty, proto| {
        // SAFETY: plain socket(2) call; the result is checked and owned at once.
        let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let cases = [
        (
            socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
            libc::EAFNOSUPPORT,
        ),
        (
            socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
            libc::EPROTONOSUPPORT,
        ),
        (
            OwnedFd::from(std::fs::File::open("/proc/self/stat").unwrap()),
            libc::ENOTSOCK,
        ),
    ];
    for (fd, errno) in cases {
        match Handle::from_fd(fd) {
            Err(e @ Error::Io { .. }) => assert_eq!(e.errno(), Some(errno), "{e}"),
            other => panic!("expected errno {errno}: {other:?}"),
        }
    }

    let before = thread_netns();
    for (path, errno) in [
        ("/nonexistent/ns/net", libc::ENOENT),
        ("/proc/self/ns/uts", libc::EINVAL),
    ] {
        match Handle::open_in_netns(path) {
            Err(e @ Error::Io { .. }) => assert_eq!(e.errno(), Some(errno), "{path}: {e}"),
            other => panic!("{path}: {other:?}"),
        }
        assert_eq!(thread_netns(), before);
    }
}

/// With feature `tokio`: an `AsyncHandle` around a handle opened in a container-style
/// namespace returns that namespace's packets.
#[cfg(feature = "tokio")]
#[test]
fn async_handle_in_another_netns() {
    use libnfq::tokio::AsyncHandle;
    let Some(_ns) = support::enter!() else { return };
    let holder = Holder::start(true);
    let path = holder.netns();
    let sink = prepare(&path, 6);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut handle = AsyncHandle::from_handle(Handle::open_in_netns(&path).unwrap()).unwrap();
        handle.bind(6, QueueConfig::new()).unwrap();
        let to = sink.addr();
        inside(&path, || support::udp_send(to, &[b"async"]));
        let packet = tokio::time::timeout(DEADLINE, handle.recv())
            .await
            .expect("a packet")
            .unwrap();
        assert_eq!(&packet.payload()[28..], b"async");
        packet.accept().unwrap();
    });
    assert_eq!(sink.recv_one(DEADLINE).as_deref(), Some(&b"async"[..]));
}
