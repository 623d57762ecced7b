//! Latency of the latency shapes (paced, burst): per packet, from the monotonic stamp the
//! sender wrote into the payload right before `send` to the kernel's receive timestamp at the
//! sink (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`, turned into monotonic time with an offset taken
//! at the start of the run and checked at its end), summarized as percentiles.

use super::net::{Result, Stamp};

/// The first packets of each burst whose latency makes the head-of-burst figure.
pub const HEAD_PACKETS: u64 = 10;

/// Largest change of `CLOCK_REALTIME - CLOCK_MONOTONIC` during a run that is still accepted (a
/// step of the realtime clock would shift every latency).
pub const MAX_OFFSET_DRIFT_NS: i128 = 20_000;

/// One run's latencies, in ns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Packets measured.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Median over the first [`HEAD_PACKETS`] packets of every burst (burst shape only).
    pub head_p50: Option<f64>,
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The latencies of `stamps`, the kernel's realtime receive stamps turned into monotonic time
/// with `offset_ns` (`CLOCK_REALTIME - CLOCK_MONOTONIC`). `burst`: packets per burst (the
/// sequence numbers start at 0 with each burst's first packet at a multiple of it).
pub fn summarize(stamps: &[Stamp], offset_ns: i128, burst: Option<u64>) -> Result<Latency> {
    let mut all = Vec::with_capacity(stamps.len());
    let mut head = Vec::new();
    for s in stamps {
        let ns = (s.received_rt_ns - offset_ns - i128::from(s.sent_mono_ns)) as f64;
        if ns < 0.0 {
            return Err(format!(
                "packet {} arrived {ns:.0} ns before it was sent: clocks disagree",
                s.seq
            ));
        }
        all.push(ns);
        if burst.is_some_and(|b| s.seq % b < HEAD_PACKETS) {
            head.push(ns);
        }
    }
    if all.is_empty() {
        return Err("no packet arrived".into());
    }
    all.sort_by(f64::total_cmp);
    head.sort_by(f64::total_cmp);
    Ok(Latency {
        samples: all.len() as u64,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        p999: percentile(&all, 0.999),
        max: *all.last().expect("not empty"),
        head_p50: burst.map(|_| percentile(&head, 0.5)),
    })
}
