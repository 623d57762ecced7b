//! Resource usage of this process, for leak checks: resident memory (`VmRSS`) and open file
//! descriptors. Used by `tests/soak.rs` and `tests/resources.rs` with `mod usage;`.
//!
//! Both are process-wide, so the tests that measure them must not run alongside other tests of
//! the same binary that open descriptors or allocate: each takes [`exclusive`] as its very
//! first step, before `support::enter!()` (which runs `ip`, through pipes) and any setup.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

/// Held by each measuring test of a binary, so that they run one at a time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Serializes the measuring tests of this binary (a failed one does not poison the others).
pub fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A snapshot of the process's resource usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// `VmRSS` of `/proc/self/status`, in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/self/fd` (not counting the one that lists them).
    pub fds: usize,
}

impl Usage {
    /// Measures now.
    pub fn now() -> Usage {
        Usage {
            rss_kib: rss_kib(),
            fds: open_fds(),
        }
    }

    /// Asserts that `later` has as many open file descriptors as `self`.
    pub fn assert_same_fds(&self, later: &Usage, what: &str) {
        assert_eq!(
            later.fds, self.fds,
            "{what}: open file descriptors changed from {} to {}",
            self.fds, later.fds
        );
    }

    /// Asserts that resident memory grew by at most `tolerance_kib` from `self` to `later`
    /// (allocator noise: free lists, arenas, pages touched for the first time). Not under
    /// valgrind, which keeps freed blocks in quarantine and so grows by design (and checks
    /// leaks itself).
    pub fn assert_rss_within(&self, later: &Usage, tolerance_kib: u64, what: &str) {
        if under_valgrind() {
            return;
        }
        let grown = later.rss_kib.saturating_sub(self.rss_kib);
        assert!(
            grown <= tolerance_kib,
            "{what}: resident memory grew by {grown} KiB (from {} to {} KiB), more than the \
             {tolerance_kib} KiB allowed",
            self.rss_kib,
            later.rss_kib
        );
    }
}

/// `VmRSS` of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("cannot parse {line:?}"))
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    // The directory listing itself holds one descriptor while it runs.
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
        - 1
}

/// `true` when this process runs under valgrind (which preloads its own libraries).
pub fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("vgpreload"))
}
