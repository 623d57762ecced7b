//! The tokio integration under a burst, against the real kernel.
#![cfg(feature = "tokio")]

#[allow(unused_imports)]
mod support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use libnfq::tokio::AsyncHandle;
use libnfq::{QueueConfig, Verdict};
use support::{set_socket_buffer, Buffer, UdpSink};

fn seq_of(ip: &[u8]) -> u64 {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    std::str::from_utf8(&ip[ihl + 8..])
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn burst_through_async_handle_loses_nothing() {
    let Some(ns) = support::enter!() else { return };
    const N: u64 = 5000;
    let sink = UdpSink::bind("127.0.0.1:0");
    set_socket_buffer(sink.socket(), Buffer::Receive, 16 << 20);
    let to = sink.addr();
    ns.queue_udp_port(to.port(), "2");

    // A current-thread runtime on this thread: its IO driver, the handle and the tasks all
    // live in the test's network namespace.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let decided = rt.block_on(async {
        let mut handle = AsyncHandle::open().unwrap();
        handle.handle().set_recv_buffer_size(16 << 20).unwrap();
        handle.bind(2, QueueConfig::new().max_len(65536)).unwrap();
        // The burst, unpaced, from a blocking thread (spawned from this thread: same netns).
        let sender = std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            set_socket_buffer(&sock, Buffer::Send, 64 << 20);
            for seq in 0..N {
                sock.send_to(seq.to_string().as_bytes(), to).unwrap();
            }
        });
        let mut tasks = Vec::new();
        for _ in 0..N {
            let packet = tokio::time::timeout(Duration::from_secs(20), handle.recv())
                .await
                .expect("a packet within the deadline")
                .expect("recv");
            // Decide in another task, half of them after a yield, so verdicts interleave.
            tasks.push(tokio::spawn(async move {
                let seq = seq_of(packet.payload());
                if seq % 2 == 1 {
                    tokio::task::yield_now().await;
                }
                let verdict = if seq % 3 == 0 {
                    Verdict::drop()
                } else {
                    Verdict::accept()
                };
                packet.verdict(verdict).unwrap();
                seq
            }));
        }
        let mut decided = BTreeSet::new();
        for task in tasks {
            decided.insert(task.await.unwrap());
        }
        sender.join().unwrap();
        let stats = ns.queue_stat(2).expect("queue 2 bound");
        assert_eq!(
            (stats.queued, stats.queue_dropped, stats.user_dropped),
            (0, 0, 0),
            "{stats:?}"
        );
        decided
    });
    assert_eq!(
        decided,
        (0..N).collect(),
        "every packet came through recv once"
    );
    let received: BTreeSet<u64> = sink
        .recv_until_quiet(Duration::from_millis(500), N as usize)
        .iter()
        .map(|d| std::str::from_utf8(d).unwrap().parse().unwrap())
        .collect();
    assert_eq!(received, (0..N).filter(|s| s % 3 != 0).collect());
}
