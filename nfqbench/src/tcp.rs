//! The TCP shape's network: a client and a server namespace, each joined to the harness'
//! namespace (the router) by a veth pair, with forwarding on in the router; iperf3 servers in
//! the server namespace (port 5201 queued by `-j NFQUEUE` on FORWARD, port 5202 not) and an
//! iperf3 client run per measurement. Traffic flows only between these namespaces' veth
//! addresses. The client and server namespaces belong to two threads of the harness (a thread
//! that `unshare`s CLONE_NEWNET moves alone); every command run there is spawned from that
//! thread, so it inherits that namespace.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::net::{command_output, find_program, netns_id, Netns, Result};

/// iperf3 port whose traffic is queued (both directions), and one without a rule.
pub const QUEUED_PORT: u16 = 5201;
/// See [`QUEUED_PORT`].
pub const NO_RULE_PORT: u16 = 5202;
/// The server's address.
pub const SERVER: &str = "10.213.2.2";

type Job = Box<dyn FnOnce() + Send>;

/// A thread living in a network namespace of its own; runs jobs there.
pub struct NsThread {
    jobs: Option<mpsc::Sender<Job>>,
    tid: libc::pid_t,
    id: (u64, u64),
    handle: Option<thread::JoinHandle<()>>,
}

impl NsThread {
    /// Starts a thread and moves it into a new network namespace, with `lo` up.
    pub fn new(name: &str) -> Result<NsThread> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // SAFETY: unshare(2) with CLONE_NEWNET moves only the calling thread.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                let started = if rc < 0 {
                    Err(format!(
                        "unshare(CLONE_NEWNET): {}",
                        std::io::Error::last_os_error()
                    ))
                } else {
                    // SAFETY: gettid has no arguments.
                    netns_id().map(|id| (unsafe { libc::gettid() }, id))
                };
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let (tid, id) = ready_rx
            .recv()
            .map_err(|_| format!("{name} thread died"))??;
        let t = NsThread {
            jobs: Some(jobs),
            tid,
            id,
            handle: Some(handle),
        };
        t.ip(&["link", "set", "lo", "up"])?;
        Ok(t)
    }

    /// Runs `f` on the thread (in its namespace) and returns its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = mpsc::channel();
        let id = self.id;
        let job: Job = Box::new(move || {
            let result = match netns_id() {
                Ok(now) if now == id => Ok(f()),
                _ => Err("namespace thread is not in its namespace".to_owned()),
            };
            let _ = tx.send(result);
        });
        self.jobs
            .as_ref()
            .ok_or("namespace thread stopped")?
            .send(job)
            .map_err(|_| "namespace thread died".to_owned())?;
        rx.recv().map_err(|_| "namespace thread died".to_owned())?
    }

    /// `ip args...` in the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.run(move || command_output("ip", &args).map(drop))?
    }

    /// Starts `program args...` in the namespace.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Child> {
        let (program, args) = (
            program.to_owned(),
            args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        self.run(move || {
            let path = find_program(&program).ok_or_else(|| format!("`{program}` not found"))?;
            Command::new(path)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start {program}: {e}"))
        })?
    }

    /// Whether something listens on TCP `port` in the namespace.
    pub fn listening(&self, port: u16) -> Result<bool> {
        self.run(move || {
            std::fs::read_to_string("/proc/thread-self/net/tcp").is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3
                        && f[3] == "0A"
                        && f[1].rsplit(':').next() == Some(&format!("{port:04X}"))
                })
            })
        })
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        self.jobs.take(); // ends the thread's loop
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The client-router-server topology with iperf3 servers running.
pub struct Forward {
    client: NsThread,
    // Kept for the servers' lifetime (they live in its namespace).
    _server: NsThread,
    servers: Vec<Child>,
}

/// Result of one iperf3 run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Iperf {
    /// Bits per second the receiver got.
    pub bits_per_second: f64,
    /// TCP retransmissions of the sender.
    pub retransmits: u64,
    /// Seconds measured.
    pub seconds: f64,
}

impl Forward {
    /// Builds the topology around the harness' namespace `router` and installs the FORWARD
    /// rules for `queue` there.
    pub fn new(router: &Netns, queue: u16) -> Result<Forward> {
        if find_program("iperf3").is_none() {
            return Err("`iperf3` not found (scripts/install-deps.sh iperf3)".into());
        }
        let client = NsThread::new("nfqbench-client")?;
        let server = NsThread::new("nfqbench-server")?;
        for (ns, router_if, peer_if, net) in [
            (&client, "nfqb-rc", "nfqb-cr", 1),
            (&server, "nfqb-rs", "nfqb-sr", 2),
        ] {
            let tid = ns.tid.to_string();
            #[rustfmt::skip]
            router.run("ip", &["link", "add", router_if, "type", "veth",
                               "peer", "name", peer_if, "netns", &tid])?;
            router.run(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("10.213.{net}.1/24"),
                    "dev",
                    router_if,
                ],
            )?;
            router.run("ip", &["link", "set", router_if, "up"])?;
            ns.ip(&["addr", "add", &format!("10.213.{net}.2/24"), "dev", peer_if])?;
            ns.ip(&["link", "set", peer_if, "up"])?;
            #[rustfmt::skip]
            ns.ip(&["route", "add", "default", "via", &format!("10.213.{net}.1")])?;
        }
        router.write_sysctl("net/ipv4/ip_forward", "1")?;
        let (q, port) = (queue.to_string(), QUEUED_PORT.to_string());
        for dir in ["--dport", "--sport"] {
            #[rustfmt::skip]
            router.iptables(&["-A", "FORWARD", "-p", "tcp", dir, &port,
                              "-j", "NFQUEUE", "--queue-num", &q])?;
        }
        let mut servers = Vec::new();
        for port in [QUEUED_PORT, NO_RULE_PORT] {
            #[rustfmt::skip]
            servers.push(server.spawn("iperf3", &["-s", "-B", SERVER, "-p", &port.to_string()])?);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for port in [QUEUED_PORT, NO_RULE_PORT] {
            while !server.listening(port)? {
                if Instant::now() > deadline {
                    return Err(format!("iperf3 server on port {port} did not start"));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Forward {
            client,
            _server: server,
            servers,
        })
    }

    /// Runs an iperf3 client for `seconds` to `port` of the server.
    pub fn iperf(&self, port: u16, seconds: u32) -> Result<Iperf> {
        #[rustfmt::skip]
        let args: Vec<String> = ["-c", SERVER, "-p", &port.to_string(), "-t", &seconds.to_string(),
                                 "-J", "--connect-timeout", "3000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let json = self.client.run(move || command_output("iperf3", &args))??;
        parse_iperf(&json)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The number after `"key":` at or after `from` in `json`.
fn number_after(json: &str, from: usize, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let at = json[from..].find(&pat)? + from + pat.len();
    let rest = json[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The receiver's rate and the sender's retransmissions from iperf3's `-J` output.
pub fn parse_iperf(json: &str) -> Result<Iperf> {
    let field = |section: &str, key: &str| {
        let at = json.find(&format!("\"{section}\""))?;
        number_after(json, at, key)
    };
    let bits_per_second = field("sum_received", "bits_per_second")
        .ok_or_else(|| format!("no sum_received in iperf3's output: {json:.300}"))?;
    Ok(Iperf {
        bits_per_second,
        retransmits: field("sum_sent", "retransmits").unwrap_or(0.0) as u64,
        seconds: field("sum_received", "seconds").unwrap_or(0.0),
    })
}
