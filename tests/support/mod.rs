//! Shared support code for the kernel-level integration tests.
//!
//! Use it from an integration test file with `mod support;` at the crate root
//! of that file (the macros refer to `$crate::support::...`).
//!
//! Every test that touches netfilter starts with
//!
//! ```ignore
//! let Some(ns) = support::enter!() else { return };
//! ```
//!
//! which moves the *calling test thread* into a fresh network namespace with
//! `lo` up, so tests can run in parallel and never see (or modify) the host's
//! firewall rules. See [`netns`] for what happens when the test is not run as
//! root (re-run inside a user namespace) or when namespaces are unavailable
//! (loud `SKIPPED` line, or a panic under `NFQ_REQUIRE_KERNEL=1`).
//!
//! Threads spawned by the test thread *after* `enter!()` and processes spawned
//! from such threads live in the same namespace. Threads spawned earlier, and
//! other libtest threads, do not.
//!
//! Beware: tests run in parallel threads of one process, and every process
//! spawned by any of them (`iptables`, `ip`, ...) briefly inherits *all* file
//! descriptors of the process between fork and exec (even `CLOEXEC` ones). So
//! closing a socket (dropping a queue handle, a listener, ...) may take effect
//! a little later than the `close()`: a dropped NFQUEUE binding can still be
//! listed for a moment, a dropped listener can still complete a handshake.
//! Poll with [`wait_until`] instead of asserting right after a drop.

#![allow(dead_code)]

mod rawq;
mod rng;
mod traffic;
pub mod wire;

#[allow(unused_imports)]
pub use rawq::RawQueue;
#[allow(unused_imports)]
pub use rng::Rng;
#[allow(unused_imports)]
pub use traffic::{
    set_socket_buffer, tcp_roundtrip, udp_send, udp_send_each, udp_send_queued, Buffer, TcpEcho,
    UdpSink,
};

use std::ffi::OsStr;
use std::io::{ErrorKind, Write};
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Environment variable set for the child process that re-runs a single test
/// inside `unshare --user --map-root-user`.
pub const IN_USERNS_ENV: &str = "NFQ_TEST_IN_USERNS";

/// Environment variable that turns every "cannot create a namespace here" skip
/// into a test failure (set it in CI, where the kernel tests must really run).
pub const REQUIRE_KERNEL_ENV: &str = "NFQ_REQUIRE_KERNEL";

/// Name of the probe fn the [`test_name!`] macro defines; stripped again by
/// [`test_name_from_probe`].
#[doc(hidden)]
pub const PROBE_FN: &str = "__nfq_test_name_probe";

/// The libtest name of the enclosing test function, as a `String`.
///
/// Expands to a nested `fn __nfq_test_name_probe() {}` whose
/// `std::any::type_name` is `<crate>::<module path>::<test fn>::__nfq_test_name_probe`
/// (plus `{{closure}}` segments when used inside closures). The crate name,
/// the probe segment and any `{{closure}}` segments are removed, leaving the
/// path libtest prints and accepts with `--exact`, e.g. `accept_reaches_receiver`
/// or `v6::accept_reaches_receiver`.
///
/// Only meaningful directly inside a `#[test]` fn (or closures in it): used in
/// a helper fn it yields the helper's path instead.
#[allow(unused_macros)]
macro_rules! test_name {
    () => {{
        fn __nfq_test_name_probe() {}
        $crate::support::test_name_from_probe(::std::any::type_name_of_val(&__nfq_test_name_probe))
    }};
}
#[allow(unused_imports)]
pub(crate) use test_name;

/// Enter a fresh network namespace for the calling test thread:
/// `support::netns(&support::test_name!())`.
///
/// `let Some(ns) = support::enter!() else { return };`
#[allow(unused_macros)]
macro_rules! enter {
    () => {
        $crate::support::netns(&$crate::support::test_name!())
    };
}
#[allow(unused_imports)]
pub(crate) use enter;

/// Turn the `type_name` of the [`test_name!`] probe fn into a libtest test name.
#[doc(hidden)]
pub fn test_name_from_probe(probe_type_name: &str) -> String {
    let mut segments: Vec<&str> = probe_type_name.split("::").collect();
    assert!(
        segments.len() >= 3 && segments.last() == Some(&PROBE_FN),
        "test_name!(): unexpected probe type name {probe_type_name:?}"
    );
    segments.pop(); // the probe fn
    segments.remove(0); // the test crate's name
    segments.retain(|s| !(s.starts_with("{{") && s.ends_with("}}")));
    assert!(
        !segments.is_empty(),
        "test_name!(): no test fn in probe type name {probe_type_name:?}"
    );
    segments.join("::")
}

/// Proof that the current thread is in a fresh network namespace (with `lo` up)
/// created by [`netns`].
///
/// Not `Send`/`Sync`: its helpers spawn `iptables`/`ip` from the *calling*
/// thread, so they must only run on the thread (namespace) it was created for;
/// every helper additionally checks that the calling thread is still in that
/// namespace and panics otherwise, so a mistake can never reach the host's
/// rules.
///
/// Dropping it does nothing: the namespace is not torn down explicitly. The
/// kernel destroys it (rules, queues and all) when its last user goes away,
/// i.e. when the test thread, the threads it spawned and the processes started
/// from them have all exited.
#[derive(Debug)]
pub struct Netns {
    id: (u64, u64),
    _not_send: PhantomData<*const ()>,
}

/// One line of `/proc/thread-self/net/netfilter/nfnetlink_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue number.
    pub queue_num: u16,
    /// Netlink port id of the bound socket.
    pub portid: u32,
    /// Packets currently waiting for a verdict (`queue_total`).
    pub queued: u32,
    /// Copy mode: 0 none, 1 meta, 2 packet.
    pub copy_mode: u8,
    /// Copy range in bytes.
    pub copy_range: u32,
    /// Packets dropped by the kernel because the queue was full.
    pub queue_dropped: u32,
    /// Packets dropped because netlink could not deliver them to userspace.
    pub user_dropped: u32,
    /// Last packet id handed out.
    pub id_sequence: u32,
}

impl QueueStats {
    /// Parse one line (`queue_num portid queue_total copy_mode copy_range
    /// queue_dropped user_dropped id_sequence 1`); panics on malformed input.
    pub fn parse_line(line: &str) -> QueueStats {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() >= 8,
            "nfnetlink_queue: expected at least 8 fields, got {line:?}"
        );
        fn num<T: std::str::FromStr>(line: &str, field: &str, what: &str) -> T {
            field
                .parse()
                .unwrap_or_else(|_| panic!("nfnetlink_queue: bad {what} {field:?} in {line:?}"))
        }
        QueueStats {
            queue_num: num(line, fields[0], "queue_num"),
            portid: num(line, fields[1], "portid"),
            queued: num(line, fields[2], "queue_total"),
            copy_mode: num(line, fields[3], "copy_mode"),
            copy_range: num(line, fields[4], "copy_range"),
            queue_dropped: num(line, fields[5], "queue_dropped"),
            user_dropped: num(line, fields[6], "user_dropped"),
            id_sequence: num(line, fields[7], "id_sequence"),
        }
    }
}

/// Poll `cond` every 10 ms until it returns `true` (-> `true`) or `timeout`
/// passes (-> `false`, after one last check).
pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return cond();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `(st_dev, st_ino)` of the calling thread's network namespace.
pub fn current_netns_id() -> (u64, u64) {
    let meta = std::fs::metadata("/proc/thread-self/ns/net")
        .unwrap_or_else(|e| panic!("stat /proc/thread-self/ns/net: {e}"));
    (meta.dev(), meta.ino())
}

fn env_is_one(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// `true` when `NFQ_REQUIRE_KERNEL=1`: skips become failures.
pub fn kernel_required() -> bool {
    env_is_one(REQUIRE_KERNEL_ENV)
}

/// `true` inside the child process started by [`netns`] under
/// `unshare --user --map-root-user`.
pub fn in_test_userns() -> bool {
    env_is_one(IN_USERNS_ENV)
}

/// Report that `test_name` cannot run here: panic under `NFQ_REQUIRE_KERNEL=1`,
/// otherwise write `SKIPPED <test>: <why>` straight to stderr (bypassing
/// libtest's output capture, so it is visible even for passing tests).
pub fn skip(test_name: &str, why: &str) {
    if kernel_required() {
        panic!("{test_name}: cannot run kernel test and {REQUIRE_KERNEL_ENV}=1: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test_name}: {why}");
}

/// Locate `name` in `$PATH`, falling back to the sbin directories (a plain
/// user's `$PATH` often lacks them, but the tools work inside our user
/// namespace).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn program(name: &str) -> PathBuf {
    find_program(name)
        .unwrap_or_else(|| panic!("`{name}` not found in $PATH or /usr/sbin, /sbin: install it"))
}

fn describe(cmd: &str, args: &[&str]) -> String {
    let mut s = cmd.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(a);
        }
    }
    s
}

/// Enter a fresh network namespace for the calling test thread.
///
/// - If `unshare(CLONE_NEWNET)` works (root, or inside the user namespace of
///   the child described next): the calling thread gets a new network
///   namespace, `ip link set lo up` is run in it, and `Some(Netns)` is returned.
/// - Otherwise, unless already inside such a child: re-run *this test alone* in
///   a child process `unshare --user --map-root-user -- <current_exe> <test_name>
///   --exact --nocapture --test-threads=1 --include-ignored` with
///   `NFQ_TEST_IN_USERNS=1`. The child must have run exactly one test and
///   passed (its output is forwarded; a test failure in the child panics
///   here). Returns `None`: the caller returns early, the child did the work.
/// - When neither works (`unshare(1)` missing or refused, no permission, `ip`
///   missing): prints `SKIPPED <test>: <why>` to stderr and returns `None`,
///   or panics with the reason under `NFQ_REQUIRE_KERNEL=1`.
///
/// `test_name` is the libtest name (`name` or `module::name`); use
/// [`enter!`] to derive it automatically.
///
/// May be called again on another thread (e.g. one spawned by the test after
/// `enter!()`) to give that thread its own, separate namespace. Only do that
/// after the test thread's own `enter!()` returned `Some`: in an unprivileged
/// parent process, every call that cannot unshare re-runs the whole test.
/// Calling it again on the *same* thread replaces that thread's namespace and
/// invalidates the earlier [`Netns`] (its helpers then panic).
pub fn netns(test_name: &str) -> Option<Netns> {
    let before = current_netns_id();
    // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET only changes the
    // calling thread's network namespace (allowed in multi-threaded processes).
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if in_test_userns() {
            skip(
                test_name,
                &format!("unshare(CLONE_NEWNET) failed inside the user namespace: {err}"),
            );
            return None;
        }
        rerun_in_userns(test_name, &err);
        return None;
    }
    let id = current_netns_id();
    assert_ne!(
        id, before,
        "unshare(CLONE_NEWNET) succeeded but the thread's netns did not change"
    );
    let ns = Netns {
        id,
        _not_send: PhantomData,
    };
    if find_program("ip").is_none() {
        skip(test_name, "`ip` (iproute2) not found");
        return None;
    }
    ns.ip(&["link", "set", "lo", "up"]);
    Some(ns)
}

/// The user-namespace re-run of [`netns`].
fn rerun_in_userns(test_name: &str, unshare_err: &std::io::Error) {
    let why_direct = format!("unshare(CLONE_NEWNET): {unshare_err}");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe(): {e}"));
    let Some(unshare) = find_program("unshare") else {
        skip(
            test_name,
            &format!("{why_direct}, and unshare(1) (util-linux) not found"),
        );
        return;
    };
    let out = Command::new(&unshare)
        .args(["--user", "--map-root-user", "--"])
        .arg(&exe)
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(IN_USERNS_ENV, "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            skip(
                test_name,
                &format!(
                    "{why_direct}, and running {} failed: {e}",
                    unshare.display()
                ),
            );
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let harness_ran = stdout.contains("running 1 test");
    let report = || {
        format!(
            "child `unshare --user --map-root-user -- {} {test_name} --exact ...` {}\n\
             --- child stdout ---\n{stdout}--- child stderr ---\n{stderr}--- end child ---",
            exe.display(),
            out.status
        )
    };
    if out.status.success() {
        if stdout.contains("running 0 tests") {
            panic!(
                "test name {test_name:?} matched no test in the user-namespace child \
                 (enter!() used outside the #[test] fn?)\n{}",
                report()
            );
        }
        assert!(
            harness_ran && stdout.contains(" 1 passed;"),
            "user-namespace child did not report exactly one passed test\n{}",
            report()
        );
        // Forward the child's output (captured by libtest unless --nocapture) ...
        print!("{stdout}");
        eprint!("{stderr}");
        // ... but SKIPPED lines must stay loud.
        for line in stderr.lines().filter(|l| l.starts_with("SKIPPED ")) {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    } else if harness_ran {
        panic!("test failed in the user-namespace child\n{}", report());
    } else {
        skip(
            test_name,
            &format!(
                "{why_direct}, and `unshare --user --map-root-user` failed ({}): {}",
                out.status,
                stderr.trim()
            ),
        );
    }
}

impl Netns {
    /// `(st_dev, st_ino)` identifying this namespace.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// Panic unless the calling thread is (still) in this namespace.
    pub fn assert_current(&self) {
        let now = current_netns_id();
        assert_eq!(
            now, self.id,
            "Netns helper called from a thread that is not in this namespace \
             (other thread, or netns() called again on this thread)"
        );
    }

    /// Run `program args...` in this namespace; returns its output whatever the
    /// exit status (panics only if it cannot be started).
    pub fn run_raw<S: AsRef<OsStr>>(&self, prog: &str, args: &[S]) -> Output {
        self.assert_current();
        let path = program(prog);
        Command::new(&path)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    /// Run `prog args...` in this namespace, panic with the command line, exit
    /// status and output unless it succeeds; returns stdout.
    pub fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = self.run_raw(prog, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            panic!(
                "`{}` failed ({}):\nstderr: {}\nstdout: {}",
                describe(prog, args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout.trim()
            );
        }
        stdout
    }

    fn xtables<S: AsRef<str>>(&self, v6: bool, args: &[S]) -> String {
        let mut full = Vec::with_capacity(args.len() + 1);
        full.push("-w");
        full.extend(args.iter().map(AsRef::as_ref));
        self.run(if v6 { "ip6tables" } else { "iptables" }, &full)
    }

    /// `iptables -w <args>` in this namespace; panics with stderr and args on failure.
    pub fn iptables<S: AsRef<str>>(&self, args: &[S]) {
        self.xtables(false, args);
    }

    /// `ip6tables -w <args>` in this namespace; panics with stderr and args on failure.
    pub fn ip6tables<S: AsRef<str>>(&self, args: &[S]) {
        self.xtables(true, args);
    }

    /// `iptables -w <args>` (or `ip6tables` when `v6`), returning stdout.
    pub fn xtables_output(&self, v6: bool, args: &[&str]) -> String {
        self.xtables(v6, args)
    }

    /// `ip <args>` in this namespace; panics with stderr and args on failure.
    pub fn ip(&self, args: &[&str]) {
        self.run("ip", args);
    }

    /// `ip <args>` in this namespace, returning stdout.
    pub fn ip_output(&self, args: &[&str]) -> String {
        self.run("ip", args)
    }

    /// `iptables -w -t <table> -L <chain> -v -x -n` (ip6tables when `v6`).
    pub fn list_rules(&self, v6: bool, table: &str, chain: &str) -> String {
        self.xtables(v6, &["-t", table, "-L", chain, "-v", "-x", "-n"])
    }

    /// Sends every UDP datagram to `port` leaving through OUTPUT to NFQUEUE queue `queue`
    /// (`iptables -A OUTPUT -p udp --dport PORT -j NFQUEUE --queue-num QUEUE`).
    pub fn queue_udp_port(&self, port: impl std::fmt::Display, queue: impl std::fmt::Display) {
        self.queue_port(false, "OUTPUT", "udp", port, queue);
    }

    /// Sends every `proto` datagram to `port` passing `chain` (table `filter`) to NFQUEUE queue
    /// `queue`: `iptables -A CHAIN -p PROTO --dport PORT -j NFQUEUE --queue-num QUEUE`
    /// (`ip6tables` when `v6`).
    pub fn queue_port(
        &self,
        v6: bool,
        chain: &str,
        proto: &str,
        port: impl std::fmt::Display,
        queue: impl std::fmt::Display,
    ) {
        self.xtables(v6, &nfqueue_rule("filter", chain, proto, port, queue));
    }

    /// Packet counter of the rule in `table`/`chain` carrying
    /// `-m comment --comment <comment>` (parsed from
    /// `iptables -w -t table -L chain -v -x -n`; ip6tables when `v6`).
    /// Panics unless exactly one rule carries that comment.
    pub fn rule_packets(&self, v6: bool, table: &str, chain: &str, comment: &str) -> u64 {
        let listing = self.list_rules(v6, table, chain);
        let needle = format!("/* {comment} */");
        let hits: Vec<&str> = listing.lines().filter(|l| l.contains(&needle)).collect();
        assert!(
            hits.len() == 1,
            "expected exactly one rule with comment {comment:?} in {table}/{chain} (v6={v6}), \
             found {}:\n{listing}",
            hits.len()
        );
        let first = hits[0].split_whitespace().next().unwrap_or("");
        first
            .parse()
            .unwrap_or_else(|_| panic!("cannot parse packet count {first:?} of rule {:?}", hits[0]))
    }

    /// Parsed lines of `/proc/thread-self/net/netfilter/nfnetlink_queue`
    /// (empty if the file is absent, e.g. module not loaded, or empty).
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        self.assert_current();
        let path = "/proc/thread-self/net/netfilter/nfnetlink_queue";
        match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(QueueStats::parse_line)
                .collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {path}: {e}"),
        }
    }

    /// The [`QueueStats`] of queue `queue_num`, if it is bound in this namespace.
    pub fn queue_stat(&self, queue_num: u16) -> Option<QueueStats> {
        self.queue_stats()
            .into_iter()
            .find(|q| q.queue_num == queue_num)
    }
}

/// The iptables/ip6tables arguments
/// `-t TABLE -A CHAIN -p PROTO --dport PORT -j NFQUEUE --queue-num QUEUE`: a rule sending every
/// `proto` datagram to `port` passing `table`/`chain` to NFQUEUE queue `queue`. Target options
/// (`--queue-bypass`) can be pushed onto the end.
pub fn nfqueue_rule(
    table: &str,
    chain: &str,
    proto: &str,
    port: impl std::fmt::Display,
    queue: impl std::fmt::Display,
) -> Vec<String> {
    let (port, queue) = (port.to_string(), queue.to_string());
    [
        "-t",
        table,
        "-A",
        chain,
        "-p",
        proto,
        "--dport",
        &port,
        "-j",
        "NFQUEUE",
        "--queue-num",
        &queue,
    ]
    .map(String::from)
    .to_vec()
}

/// A new, unbound `NETLINK_NETFILTER` socket (close-on-exec) in the calling thread's network
/// namespace; panics if it cannot be opened.
pub fn netfilter_socket() -> std::os::fd::OwnedFd {
    // SAFETY: plain socket(2) call, no pointers; the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just opened and is owned by nobody else.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// What callbacks record, readable while the handle (which borrows it) is alive.
pub struct Log<T>(std::sync::Mutex<Vec<T>>);

impl<T: Clone> Log<T> {
    pub fn new() -> Self {
        Log(std::sync::Mutex::new(Vec::new()))
    }
    pub fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }
    pub fn items(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}
