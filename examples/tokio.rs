//! NFQUEUE on tokio: packets arrive as owned values from `AsyncHandle::recv().await`; each is
//! decided in its own task, so a slow decision (here, a simulated lookup for some packets)
//! never holds up the others.
//!
//! ```text
//! iptables -A OUTPUT -p udp --dport 9999 -j NFQUEUE --queue-num 0
//! cargo run --features tokio --example tokio -- [queue]
//! ```

use std::time::Duration;

use libnfq::tokio::AsyncHandle;
use libnfq::{DeferredPacket, QueueConfig, Verdict};

/// UDP data of an IPv4 packet copied from its network header.
fn udp_data(packet: &DeferredPacket) -> &[u8] {
    let ip = packet.payload();
    let ihl = ip.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    ip.get(ihl + 8..).unwrap_or(&[])
}

async fn decide(packet: DeferredPacket) {
    let data = udp_data(&packet);
    let verdict = if data.starts_with(b"slow") {
        // Pretend to ask a remote policy service.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Verdict::accept().with_mark(1)
    } else if data.starts_with(b"drop") {
        Verdict::drop()
    } else {
        Verdict::accept()
    };
    let id = packet.id();
    println!("packet {id}: {}", verdict.action());
    if let Err(e) = packet.verdict(verdict) {
        eprintln!("packet {id}: {e}");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> libnfq::Result<()> {
    let queue: u16 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mut handle = AsyncHandle::open()?;
    handle.bind(queue, QueueConfig::new())?;
    eprintln!("tokio: waiting for packets on queue {queue}; Ctrl-C to stop");
    loop {
        tokio::select! {
            packet = handle.recv() => match packet {
                Ok(packet) => {
                    tokio::spawn(decide(packet));
                }
                Err(e) if e.is_transient() => eprintln!("tokio: {e}"),
                Err(e) => return Err(e),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
