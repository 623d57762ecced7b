//! Results: medians and ranges, ratios against the baselines and the targets, the table on
//! stdout, the JSON file and the SVG plot (all written by hand: no dependency).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::consumer::Kind;
use super::{RunResult, Scenario, Shape};

/// What a ratio compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Packets/s at the sink (higher is better).
    Pps,
    /// Median latency (lower is better).
    P50,
    /// 99th percentile latency.
    P99,
    /// 99.9th percentile latency.
    P999,
    /// Median latency of the first packets of each burst.
    Head,
    /// TCP bits/s (higher is better).
    Bps,
}

impl Metric {
    /// The value of one run.
    pub fn of(self, r: &RunResult) -> Option<f64> {
        let lat = r.latency.as_ref();
        match self {
            Metric::Pps => Some(r.pps),
            Metric::P50 => lat.map(|l| l.p50),
            Metric::P99 => lat.map(|l| l.p99),
            Metric::P999 => lat.map(|l| l.p999),
            Metric::Head => lat.and_then(|l| l.head_p50),
            Metric::Bps => Some(r.bps),
        }
        .filter(|v| v.is_finite())
    }
}

/// `12.3us`, `5.20ms` (from ns).
pub fn micros(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns >= 1e6 {
        format!("{:.2}ms", ns / 1e6)
    } else if ns >= 1e5 {
        format!("{:.0}us", ns / 1e3)
    } else {
        format!("{:.1}us", ns / 1e3)
    }
}

/// `18.5G` (bits/s).
pub fn gbit(bps: f64) -> String {
    if bps.is_finite() {
        format!("{:.2}", bps / 1e9)
    } else {
        "-".into()
    }
}

/// Median of a non-empty sample (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `352.1k`, `1.20M`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// One line of progress for a finished run.
pub fn progress_line(r: &RunResult) -> String {
    if let Some(e) = &r.error {
        return format!("{:<15} FAILED: {e}", r.kind.name());
    }
    if r.scenario.shape == Shape::Tcp {
        return format!(
            "{:<17} {:>6} Gbit/s  queued {}  qdrop {} udrop {}  retransmits {}  other load {:.0}%",
            r.kind.name(),
            gbit(r.bps),
            r.queued,
            r.queue_dropped,
            r.user_dropped,
            r.retransmits,
            r.other_load * 100.0
        );
    }
    if let Some(l) = &r.latency {
        return format!(
            "{:<17} p50 {:>7} p99 {:>7} p99.9 {:>7} head {:>7}  received {}/{}  qdrop {} udrop {}  other load {:.0}%",
            r.kind.name(),
            micros(l.p50),
            micros(l.p99),
            micros(l.p999),
            l.head_p50.map_or("-".into(), micros),
            r.received,
            r.sent,
            r.queue_dropped,
            r.user_dropped,
            r.other_load * 100.0
        );
    }
    format!(
        "{:<17} {:>8} pkt/s  cpu {:>6} ns/pkt (softirq {:>4})  received {}/{}  qdrop {} udrop {} sinkdrop {}  other load {:.0}%",
        r.kind.name(),
        si(r.pps),
        r.cpu_per_packet_ns()
            .map_or("-".into(), |c| format!("{c:.0}")),
        r.softirq_per_packet_ns()
            .map_or("-".into(), |c| format!("{c:.0}")),
        r.received,
        r.sent,
        r.queue_dropped,
        r.user_dropped,
        r.sink_dropped,
        r.other_load * 100.0
    )
}

/// The runs of one consumer in one scenario, summarized.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The scenario.
    pub scenario: Scenario,
    /// The consumer.
    pub kind: Kind,
    /// Successful runs.
    pub runs: usize,
    /// Failed runs.
    pub failed: usize,
    /// Median, min and max packets/s.
    pub pps: (f64, f64, f64),
    /// Median CPU ns per packet.
    pub cpu_ns: Option<f64>,
    /// Median and max fraction of packets lost.
    pub lost: (f64, f64),
    /// Median kernel drop counts per run.
    pub queue_dropped: f64,
    /// See `queue_dropped`.
    pub user_dropped: f64,
    /// Sink drops over all runs (should be 0).
    pub sink_dropped: u64,
    /// Packets unaccounted for over all runs (should be 0).
    pub unaccounted: i64,
    /// Share of the first queue (multi-queue), median.
    pub first_queue_share: Option<f64>,
    /// Median share of the machine used by other processes during the runs.
    pub other_load: f64,
    /// Packets/s of each successful run, by repetition.
    pub by_rep: Vec<(usize, f64)>,
    /// The successful runs.
    pub ok: Vec<RunResult>,
}

impl Summary {
    /// `(repetition, value)` of every successful run that has `metric`.
    pub fn values(&self, metric: Metric) -> Vec<(usize, f64)> {
        self.ok
            .iter()
            .filter_map(|r| metric.of(r).map(|v| (r.rep, v)))
            .collect()
    }

    /// Median, min and max of `metric` over the successful runs.
    pub fn stat(&self, metric: Metric) -> (f64, f64, f64) {
        let v: Vec<f64> = self.values(metric).into_iter().map(|(_, v)| v).collect();
        let (lo, hi) = min_max(&v);
        (median(&v), lo, hi)
    }
}

/// Summaries in scenario order, then consumer order.
pub fn summarize(results: &[RunResult], scenarios: &[Scenario], kinds: &[Kind]) -> Vec<Summary> {
    let mut out = Vec::new();
    for scenario in scenarios {
        for &kind in kinds {
            let all: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.scenario == *scenario && r.kind == kind)
                .collect();
            if all.is_empty() {
                continue;
            }
            let ok: Vec<&RunResult> = all.iter().copied().filter(|r| r.error.is_none()).collect();
            let of = |f: &dyn Fn(&RunResult) -> f64| ok.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let pps = of(&|r| r.pps);
            let (lo, hi) = min_max(&pps);
            let cpu: Vec<f64> = ok.iter().filter_map(|r| r.cpu_per_packet_ns()).collect();
            let lost = of(&|r| r.lost() as f64 / r.sent.max(1) as f64);
            let share: Vec<f64> = ok
                .iter()
                .filter(|r| r.per_queue.len() > 1)
                .map(|r| r.per_queue[0] as f64 / r.per_queue.iter().sum::<u64>().max(1) as f64)
                .collect();
            out.push(Summary {
                scenario: *scenario,
                kind,
                runs: ok.len(),
                failed: all.len() - ok.len(),
                pps: (median(&pps), lo, hi),
                cpu_ns: (!cpu.is_empty()).then(|| median(&cpu)),
                lost: (median(&lost), min_max(&lost).1),
                queue_dropped: median(&of(&|r| r.queue_dropped as f64)),
                user_dropped: median(&of(&|r| r.user_dropped as f64)),
                sink_dropped: ok.iter().map(|r| r.sink_dropped).sum(),
                unaccounted: ok.iter().map(|r| r.unaccounted()).sum(),
                first_queue_share: (!share.is_empty()).then(|| median(&share)),
                other_load: median(&of(&|r| r.other_load)),
                by_rep: ok.iter().map(|r| (r.rep, r.pps)).collect(),
                ok: ok.iter().map(|r| (*r).clone()).collect(),
            });
        }
    }
    out
}

/// A ratio of two consumers' throughput in one scenario: of the medians, and the range of the
/// ratios of runs of the same repetition (paired, so slow drifts of the machine cancel).
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    /// median(a) / median(b).
    pub of_medians: f64,
    /// Min and max of a/b over repetitions.
    pub paired: (f64, f64),
    /// CPU efficiency: median CPU per packet of b / of a (> 1: a needs less CPU per packet).
    /// Unlike throughput, it does not depend on how much CPU other processes left free.
    pub cpu: Option<f64>,
}

fn find<'a>(summaries: &'a [Summary], scenario: &Scenario, kind: Kind) -> Option<&'a Summary> {
    summaries
        .iter()
        .find(|s| s.scenario == *scenario && s.kind == kind && s.runs > 0)
}

/// Throughput of `a` relative to `b` in `scenario`.
pub fn ratio(summaries: &[Summary], scenario: &Scenario, a: Kind, b: Kind) -> Option<Ratio> {
    ratio_of(summaries, scenario, a, b, Metric::Pps)
}

/// `metric` of `a` relative to `b` in `scenario`: ratio of medians, and the range of the
/// ratios of runs of the same repetition.
pub fn ratio_of(
    summaries: &[Summary],
    scenario: &Scenario,
    a: Kind,
    b: Kind,
    metric: Metric,
) -> Option<Ratio> {
    let (sa, sb) = (find(summaries, scenario, a)?, find(summaries, scenario, b)?);
    let (va, vb) = (sa.values(metric), sb.values(metric));
    if va.is_empty() || vb.is_empty() {
        return None;
    }
    let paired: Vec<f64> = va
        .iter()
        .filter_map(|(rep, x)| {
            let y = vb.iter().find(|(r, _)| r == rep)?.1;
            Some(x / y)
        })
        .collect();
    Some(Ratio {
        of_medians: sa.stat(metric).0 / sb.stat(metric).0,
        paired: min_max(&paired),
        cpu: match metric {
            Metric::Pps => sa.cpu_ns.zip(sb.cpu_ns).map(|(ca, cb)| cb / ca),
            _ => None,
        },
    })
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}x [{:.2}-{:.2}]",
            self.of_medians, self.paired.0, self.paired.1
        )?;
        match self.cpu {
            Some(cpu) => write!(f, ", CPU/pkt {cpu:.2}x"),
            None => Ok(()),
        }
    }
}

/// One target of issue 13, checked in one scenario.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// Where.
    pub scenario: String,
    /// Measured value (a ratio, or the fraction lost).
    pub value: f64,
    /// Text of the measurement.
    pub shown: String,
    /// The goal, as text.
    pub goal: String,
    /// Whether it was met.
    pub met: bool,
}

fn ratio_target(
    summaries: &[Summary],
    scenario: &Scenario,
    (a, b): (Kind, Kind),
    metric: Metric,
    goal: f64,
    name: &str,
) -> Option<Target> {
    let r = ratio_of(summaries, scenario, a, b, metric)?;
    let higher_better = matches!(metric, Metric::Pps | Metric::Bps);
    let shown = match metric {
        Metric::Pps => r.to_string(),
        Metric::Bps => format!(
            "{r} ({} vs {} Gbit/s)",
            gbit(find(summaries, scenario, a)?.stat(metric).0),
            gbit(find(summaries, scenario, b)?.stat(metric).0)
        ),
        _ => format!(
            "{r} ({} vs {})",
            micros(find(summaries, scenario, a)?.stat(metric).0),
            micros(find(summaries, scenario, b)?.stat(metric).0)
        ),
    };
    Some(Target {
        name: name.to_owned(),
        scenario: scenario.label(),
        value: r.of_medians,
        shown,
        goal: format!("{} {goal:.2}x", if higher_better { ">=" } else { "<=" }),
        met: if higher_better {
            r.of_medians >= goal
        } else {
            r.of_medians <= goal
        },
    })
}

/// The targets of issue 13 (item 5), each a ratio of medians in the same run.
pub fn targets(summaries: &[Summary], scenarios: &[Scenario]) -> Vec<Target> {
    let mut out = Vec::new();
    let (def, classic, best) = (Kind::RsDefault, Kind::CClassic, Kind::CBest);
    // Latency: bursts of 100 with 5 and 50 us callbacks; paced near capacity, 50 us.
    for sc in scenarios {
        if sc.shape == Shape::Burst && sc.burst == 100 && matches!(sc.spin_us, 5 | 50) {
            let name = "nfq-default vs c-classic, head-of-burst p50";
            out.extend(ratio_target(
                summaries,
                sc,
                (def, classic),
                Metric::Head,
                1.25,
                name,
            ));
            let name = "nfq-default vs c-classic, p99";
            out.extend(ratio_target(
                summaries,
                sc,
                (def, classic),
                Metric::P99,
                1.0,
                name,
            ));
        }
    }
    let near_capacity = scenarios
        .iter()
        .filter(|sc| sc.shape == Shape::Paced && sc.spin_us == 50)
        .max_by_key(|sc| sc.load_pct);
    if let Some(sc) = near_capacity {
        let name = "nfq-default vs c-classic, p99, paced near capacity";
        out.extend(ratio_target(
            summaries,
            sc,
            (def, classic),
            Metric::P99,
            1.1,
            name,
        ));
    }
    // Throughput under drain.
    for sc in scenarios.iter().filter(|s| s.shape.is_drain()) {
        let name = "nfq-default vs c-best, drain";
        out.extend(ratio_target(
            summaries,
            sc,
            (def, best),
            Metric::Pps,
            1.0,
            name,
        ));
        for peer in [Kind::PeerNfq, Kind::PeerNfqueue, Kind::PeerPython] {
            let name = format!("nfq-default vs {}, drain", peer.name());
            out.extend(ratio_target(
                summaries,
                sc,
                (def, peer),
                Metric::Pps,
                1.0,
                &name,
            ));
        }
        let name = "nfq-nobatch vs c-classic, drain";
        out.extend(ratio_target(
            summaries,
            sc,
            (Kind::RsNoBatch, classic),
            Metric::Pps,
            1.0,
            name,
        ));
    }
    // Loss under blast, where c-best loses none.
    for sc in scenarios.iter().filter(|s| s.shape.is_blast()) {
        let Some(s) = find(summaries, sc, def) else {
            continue;
        };
        let best_lost = find(summaries, sc, best).map(|b| b.lost.1);
        let others: Vec<String> = [best, classic, Kind::RsNoBatch]
            .into_iter()
            .filter_map(|k| find(summaries, sc, k))
            .map(|o| format!("{} worst {:.2}%", o.kind.name(), o.lost.1 * 100.0))
            .collect();
        let lost = s.lost.1;
        out.push(Target {
            name: "nfq-default loses no packet under blast".into(),
            scenario: sc.label(),
            value: lost,
            shown: format!(
                "worst run lost {:.2}%, {:.0} packets ({})",
                lost * 100.0,
                s.ok.iter().map(|r| r.lost()).max().unwrap_or(0),
                others.join(", ")
            ),
            goal: match best_lost {
                Some(b) if b > 0.0 => "0 lost (c-best lost some: not applicable)".into(),
                _ => "0 lost".into(),
            },
            met: lost == 0.0 || best_lost.is_some_and(|b| b > 0.0),
        });
    }
    // TCP through the queue.
    for sc in scenarios.iter().filter(|s| s.shape == Shape::Tcp) {
        for (kind, name) in [
            (def, "nfq-default vs no rule, TCP forward"),
            (Kind::RsGso, "nfq-gso vs no rule, TCP forward"),
            (
                Kind::RsGsoHeaders,
                "nfq-gso-headers vs no rule, TCP forward",
            ),
        ] {
            out.extend(ratio_target(
                summaries,
                sc,
                (kind, Kind::NoRule),
                Metric::Bps,
                0.75,
                name,
            ));
        }
    }
    out
}

/// The table printed on stdout.
pub fn table(
    summaries: &[Summary],
    scenarios: &[Scenario],
    reps_for: impl Fn(&Scenario) -> usize,
) -> String {
    let mut t = String::new();
    for scenario in scenarios {
        let reps = reps_for(scenario);
        let rows: Vec<&Summary> = summaries
            .iter()
            .filter(|s| s.scenario == *scenario)
            .collect();
        if rows.is_empty() {
            continue;
        }
        match scenario.shape {
            Shape::Paced | Shape::Burst => latency_table(&mut t, summaries, scenario, &rows, reps),
            Shape::Tcp => tcp_table(&mut t, summaries, scenario, &rows, reps),
            _ => throughput_table(&mut t, summaries, scenario, &rows, reps),
        }
    }
    t
}

fn notes(s: &Summary) -> String {
    let mut notes = Vec::new();
    if let Some(share) = s.first_queue_share {
        notes.push(format!(
            "queue split {:.0}/{:.0}",
            share * 100.0,
            (1.0 - share) * 100.0
        ));
    }
    if s.failed > 0 {
        notes.push(format!("{} runs FAILED", s.failed));
    }
    if s.sink_dropped > 0 || s.unaccounted != 0 {
        notes.push(format!(
            "sink dropped {}, unaccounted {}",
            s.sink_dropped, s.unaccounted
        ));
    }
    notes.join("; ")
}

fn latency_table(
    t: &mut String,
    summaries: &[Summary],
    scenario: &Scenario,
    rows: &[&Summary],
    reps: usize,
) {
    let what = match scenario.shape {
        Shape::Paced => format!(
            "{} packets at {}/s, {}-byte datagrams",
            scenario.packets,
            si(scenario.rate as f64),
            scenario.payload
        ),
        _ => format!(
            "{} bursts of {}, {}-byte datagrams",
            scenario.packets / scenario.burst.max(1),
            scenario.burst,
            scenario.payload
        ),
    };
    let _ = writeln!(
        t,
        "\n### {} ({what}, callbacks spin {} us, {reps} reps)\n",
        scenario.label(),
        scenario.spin_us
    );
    let _ = writeln!(
        t,
        "| consumer | p50 | p99 [min-max] | p99.9 | head p50 | p50 vs (1) | p99 vs (1) | head vs (1) | lost | CPU ns/pkt | other load | notes |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in rows {
        let vs = |m: Metric| {
            ratio_of(summaries, scenario, s.kind, Kind::CClassic, m)
                .map_or("-".into(), |r| format!("{:.2}x", r.of_medians))
        };
        let p99 = s.stat(Metric::P99);
        let _ = writeln!(
            t,
            "| {} | {} | {} [{}-{}] | {} | {} | {} | {} | {} | {:.2}% | {} | {:.0}% | {} |",
            s.kind.name(),
            micros(s.stat(Metric::P50).0),
            micros(p99.0),
            micros(p99.1),
            micros(p99.2),
            micros(s.stat(Metric::P999).0),
            micros(s.stat(Metric::Head).0),
            vs(Metric::P50),
            vs(Metric::P99),
            vs(Metric::Head),
            s.lost.1 * 100.0,
            s.cpu_ns.map_or("-".into(), |c| format!("{c:.0}")),
            s.other_load * 100.0,
            notes(s)
        );
    }
}

fn tcp_table(
    t: &mut String,
    summaries: &[Summary],
    scenario: &Scenario,
    rows: &[&Summary],
    reps: usize,
) {
    let _ = writeln!(
        t,
        "\n### {} (iperf3, client -> router -> server namespaces over veth, -j NFQUEUE on \
         FORWARD, {reps} reps)\n",
        scenario.label()
    );
    let _ = writeln!(
        t,
        "| consumer | Gbit/s median [min-max] | vs no-rule | packets queued | queue_dropped | user_dropped | retransmits | CPU ns/pkt | other load | notes |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
    for s in rows {
        let bps = s.stat(Metric::Bps);
        let queued = median(&s.ok.iter().map(|r| r.queued as f64).collect::<Vec<_>>());
        let retrans = median(
            &s.ok
                .iter()
                .map(|r| r.retransmits as f64)
                .collect::<Vec<_>>(),
        );
        let cpu: Vec<f64> =
            s.ok.iter()
                .filter(|r| r.cpu_ns > 0 && r.queued > 0)
                .map(|r| (r.cpu_ns + r.softirq_ns) as f64 / r.queued as f64)
                .collect();
        let failed = match s.failed {
            0 => String::new(),
            n => format!("{n} runs FAILED"),
        };
        let _ = writeln!(
            t,
            "| {} | {} [{}-{}] | {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.0}% | {} |",
            s.kind.name(),
            gbit(bps.0),
            gbit(bps.1),
            gbit(bps.2),
            ratio_of(summaries, scenario, s.kind, Kind::NoRule, Metric::Bps)
                .map_or("-".into(), |r| format!("{:.2}x", r.of_medians)),
            if s.kind == Kind::NoRule {
                "-".into()
            } else {
                si(queued)
            },
            s.queue_dropped,
            s.user_dropped,
            retrans,
            if cpu.is_empty() {
                "-".into()
            } else {
                format!("{:.0}", median(&cpu))
            },
            s.other_load * 100.0,
            failed
        );
    }
}

fn throughput_table(
    t: &mut String,
    summaries: &[Summary],
    scenario: &Scenario,
    rows: &[&Summary],
    reps: usize,
) {
    let what = match scenario.shape {
        Shape::Drain => format!("{}-packet backlog, live sink", scenario.packets),
        Shape::Isolated => format!("{}-packet backlog, sink reads after", scenario.packets),
        _ => format!("{} packets, unpaced sender, live sink", scenario.packets),
    };
    let _ = writeln!(t, "\n### {} ({what}, {reps} reps)\n", scenario.label());
    let _ = writeln!(
        t,
        "| consumer | pkt/s median [min-max] | vs (1) | vs (2) | vs no-rule | CPU ns/pkt | lost | queue_dropped | user_dropped | other load | notes |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|");
    for s in rows {
        let vs = |b: Kind| {
            ratio(summaries, scenario, s.kind, b)
                .map_or("-".into(), |r| format!("{:.2}x", r.of_medians))
        };
        let _ = writeln!(
            t,
            "| {} | {} [{}-{}] | {} | {} | {} | {} | {:.1}% (max {:.1}%) | {:.0} | {:.0} | {:.0}% | {} |",
            s.kind.name(),
            si(s.pps.0),
            si(s.pps.1),
            si(s.pps.2),
            vs(Kind::CClassic),
            vs(Kind::CBest),
            vs(Kind::NoRule),
            s.cpu_ns.map_or("-".into(), |c| format!("{c:.0}")),
            s.lost.0 * 100.0,
            s.lost.1 * 100.0,
            s.queue_dropped,
            s.user_dropped,
            s.other_load * 100.0,
            notes(s)
        );
    }
}

/// The targets as a table.
pub fn targets_table(targets: &[Target]) -> String {
    let mut t = String::from(
        "\n### Targets of issue 13 (ratio of medians [per-repetition min-max])\n\n\
         | target | scenario | measured | goal | |\n|---|---|---|---|---|\n",
    );
    for x in targets {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            x.name,
            x.scenario,
            x.shown,
            x.goal,
            if x.met { "met" } else { "MISSED" }
        );
    }
    t
}

/// Facts about the machine, for the report.
pub fn machine() -> Vec<(&'static str, String)> {
    let first_line = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    vec![
        ("date", first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        (
            "cores",
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu", cpu),
        (
            "kernel",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        ("libnetfilter_queue", libnfq::LIBRARY_VERSION.to_owned()),
        (
            "libmnl",
            first_line("pkg-config", &["--modversion", "libmnl"]),
        ),
        ("rustc", first_line("rustc", &["--version"])),
        ("cc", first_line("cc", &["--version"])),
    ]
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn json_scenario(s: &Scenario) -> String {
    format!(
        "\"shape\": {}, \"label\": {}, \"payload\": {}, \"copy\": {}, \"packets\": {}, \
         \"spin_us\": {}, \"load_pct\": {}, \"rate\": {}, \"burst\": {}, \"seconds\": {}",
        json_str(s.shape.name()),
        json_str(&s.label()),
        s.payload,
        json_str(&s.copy.name()),
        s.packets,
        s.spin_us,
        s.load_pct,
        s.rate,
        s.burst,
        s.seconds
    )
}

fn json_latency(l: Option<&super::latency::Latency>) -> String {
    match l {
        None => "null".into(),
        Some(l) => format!(
            "{{\"samples\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \
             \"max_ns\": {}, \"head_p50_ns\": {}}}",
            l.samples,
            json_num(l.p50),
            json_num(l.p99),
            json_num(l.p999),
            json_num(l.max),
            l.head_p50.map_or("null".into(), json_num)
        ),
    }
}

/// The results file: machine, every run, the summaries and the targets.
pub fn json(
    machine: &[(&str, String)],
    command: &str,
    results: &[RunResult],
    summaries: &[Summary],
    targets: &[Target],
) -> String {
    let mut j = String::from("{\n  \"machine\": {");
    let fields: Vec<String> = machine
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    let _ = write!(
        j,
        "{}}},\n  \"command\": {},\n  \"runs\": [",
        fields.join(", "),
        json_str(command)
    );
    for (i, r) in results.iter().enumerate() {
        let _ = write!(
            j,
            "{}\n    {{{}, \"consumer\": {}, \"rep\": {}, \"sent\": {}, \"received\": {}, \
             \"queue_dropped\": {}, \"user_dropped\": {}, \"sink_dropped\": {}, \"bad_len\": {}, \
             \"seconds\": {}, \"pps\": {}, \"send_pps\": {}, \"cpu_ns\": {}, \"softirq_ns\": {}, \
             \"other_load\": {}, \"rcvbuf\": {}, \
             \"per_queue\": [{}], \"latency\": {}, \"bps\": {}, \"retransmits\": {}, \
             \"queued\": {}, \"error\": {}}}",
            if i == 0 { "" } else { "," },
            json_scenario(&r.scenario),
            json_str(r.kind.name()),
            r.rep,
            r.sent,
            r.received,
            r.queue_dropped,
            r.user_dropped,
            r.sink_dropped,
            r.bad_len,
            json_num(r.seconds),
            json_num(r.pps),
            json_num(r.send_pps),
            r.cpu_ns,
            r.softirq_ns,
            json_num(r.other_load),
            r.rcvbuf,
            r.per_queue
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            json_latency(r.latency.as_ref()),
            json_num(r.bps),
            r.retransmits,
            r.queued,
            r.error.as_deref().map_or("null".into(), json_str)
        );
    }
    j.push_str("\n  ],\n  \"summary\": [");
    for (i, s) in summaries.iter().enumerate() {
        let _ = write!(
            j,
            "{}\n    {{{}, \"consumer\": {}, \"runs\": {}, \"failed\": {}, \"pps_median\": {}, \
             \"pps_min\": {}, \"pps_max\": {}, \"cpu_ns_per_packet\": {}, \"lost_median\": {}, \
             \"lost_max\": {}, \"queue_dropped_median\": {}, \"user_dropped_median\": {}, \
             \"other_load_median\": {}}}",
            if i == 0 { "" } else { "," },
            json_scenario(&s.scenario),
            json_str(s.kind.name()),
            s.runs,
            s.failed,
            json_num(s.pps.0),
            json_num(s.pps.1),
            json_num(s.pps.2),
            s.cpu_ns.map_or("null".into(), json_num),
            json_num(s.lost.0),
            json_num(s.lost.1),
            json_num(s.queue_dropped),
            json_num(s.user_dropped),
            json_num(s.other_load)
        );
    }
    j.push_str("\n  ],\n  \"targets\": [");
    for (i, t) in targets.iter().enumerate() {
        let _ = write!(
            j,
            "{}\n    {{\"target\": {}, \"scenario\": {}, \"value\": {}, \"measured\": {}, \
             \"goal\": {}, \"met\": {}}}",
            if i == 0 { "" } else { "," },
            json_str(&t.name),
            json_str(&t.scenario),
            json_num(t.value),
            json_str(&t.shown),
            json_str(&t.goal),
            t.met
        );
    }
    j.push_str("\n  ]\n}\n");
    j
}

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::NoRule => "#9e9e9e",
        Kind::CClassic => "#d62728",
        Kind::CBest => "#ff7f0e",
        Kind::RsNoBatch => "#9467bd",
        Kind::RsDefault => "#1f77b4",
        Kind::RsGso => "#17becf",
        Kind::RsNoGso => "#aec7e8",
        Kind::RsGsoHeaders => "#9edae5",
        Kind::RsBigBuf => "#17becf",
        Kind::RsThreaded => "#2ca02c",
        Kind::RsMultiQueue => "#8c564b",
        Kind::CBest64 => "#ffbb78",
        Kind::RsBatch1024 => "#aec7e8",
        Kind::RsUntimed => "#393b79",
        Kind::PeerNfq => "#bcbd22",
        Kind::PeerNfqueue => "#e377c2",
        Kind::PeerPython => "#7f7f7f",
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A step of 1, 2 or 5 times a power of ten giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(pow * 10.0)
}

/// A bar: consumer, median, min, max, text above it.
type Bar = (Kind, f64, f64, f64, String);

/// One panel of the plot: groups of bars on a shared axis.
struct Panel {
    title: String,
    groups: Vec<(String, Vec<Bar>)>,
    /// Logarithmic axis (latencies span 10 us to 10 ms).
    log: bool,
    format: fn(f64) -> String,
}

fn panels(summaries: &[Summary], scenarios: &[Scenario], kinds: &[Kind]) -> Vec<Panel> {
    let bars = |sc: &Scenario, metric: Metric, note: &dyn Fn(&Summary) -> String| -> Vec<Bar> {
        kinds
            .iter()
            .filter_map(|&k| find(summaries, sc, k))
            .filter(|s| !s.values(metric).is_empty())
            .map(|s| {
                let (m, lo, hi) = s.stat(metric);
                (s.kind, m, lo, hi, note(s))
            })
            .collect()
    };
    let loss = |s: &Summary| {
        if s.lost.0 >= 0.005 {
            format!("-{:.0}%", s.lost.0 * 100.0)
        } else {
            String::new()
        }
    };
    let none = |_: &Summary| String::new();
    let mut out = Vec::new();
    for shape in [
        Shape::Drain,
        Shape::Isolated,
        Shape::Blast,
        Shape::LongBlast,
    ] {
        let groups: Vec<(String, Vec<Bar>)> = scenarios
            .iter()
            .filter(|sc| sc.shape == shape)
            .map(|sc| {
                (
                    format!("{}B payload, copy {}", sc.payload, sc.copy.name()),
                    bars(sc, Metric::Pps, &loss),
                )
            })
            .filter(|(_, b)| !b.is_empty())
            .collect();
        if groups.is_empty() {
            continue;
        }
        let title = match shape {
            Shape::Drain => "drain: packets/s, backlog drained by a resumed consumer, live sink",
            Shape::Isolated => "drain-isolated: packets/s, the sink reads after the run",
            Shape::Blast => "blast: packets/s, unpaced sender, default settings (loss above)",
            _ => "blast-long: packets/s, 500k packets, default settings (loss above)",
        };
        out.push(Panel {
            title: title.into(),
            groups,
            log: false,
            format: si,
        });
    }
    for (shape, metric, title) in [
        (
            Shape::Paced,
            Metric::P99,
            "paced: p99 latency (log scale), callback spin / load",
        ),
        (
            Shape::Burst,
            Metric::P99,
            "burst: p99 latency (log scale), burst size / callback spin",
        ),
        (
            Shape::Burst,
            Metric::Head,
            "burst: head-of-burst latency (median of the first 10 packets, log scale)",
        ),
    ] {
        let groups: Vec<(String, Vec<Bar>)> = scenarios
            .iter()
            .filter(|sc| sc.shape == shape)
            .map(|sc| {
                let label = match shape {
                    Shape::Paced => format!("{}us {}%", sc.spin_us, sc.load_pct),
                    _ => format!("{} x {}us", sc.burst, sc.spin_us),
                };
                (label, bars(sc, metric, &none))
            })
            .filter(|(_, b)| !b.is_empty())
            .collect();
        if !groups.is_empty() {
            out.push(Panel {
                title: title.into(),
                groups,
                log: true,
                format: micros,
            });
        }
    }
    let groups: Vec<(String, Vec<Bar>)> = scenarios
        .iter()
        .filter(|sc| sc.shape == Shape::Tcp)
        .map(|sc| {
            (
                format!("{} s iperf3", sc.seconds),
                bars(sc, Metric::Bps, &none),
            )
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    if !groups.is_empty() {
        out.push(Panel {
            title: "tcp: bits/s through a FORWARD queue (iperf3 over veth)".into(),
            groups,
            log: false,
            format: si,
        });
    }
    out
}

/// The plot: one panel per shape (packets/s; latency on a log axis; TCP bits/s), bars of
/// medians with min-max whiskers, one group per scenario.
pub fn svg(
    summaries: &[Summary],
    scenarios: &[Scenario],
    kinds: &[Kind],
    subtitle: &str,
) -> String {
    const WIDTH: f64 = 1100.0;
    const PANEL_H: f64 = 240.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 84.0;
    const GAP: f64 = 80.0;
    let panels = panels(summaries, scenarios, kinds);
    let shown: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|&k| {
            panels
                .iter()
                .any(|p| p.groups.iter().any(|(_, b)| b.iter().any(|x| x.0 == k)))
        })
        .collect();
    let legend_h = 18.0 * shown.len() as f64 + 10.0;
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">NFQUEUE consumers \
         side by side (medians, whiskers min-max)</text>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"44\" fill=\"#555\">{}</text>",
        xml(subtitle)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (p, panel) in panels.iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL_H + GAP);
        let all = panel.groups.iter().flat_map(|(_, b)| b.iter());
        let max = all
            .clone()
            .map(|b| b.3)
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max);
        let min = all
            .map(|b| b.2)
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        // Axis: linear from 0, or log from the decade below the smallest value.
        let (lo_exp, hi_exp) = (
            min.min(max).log10().floor(),
            max.log10().ceil().max(min.log10().floor() + 1.0),
        );
        let step = tick_step(max);
        let top_value = (max / step).ceil() * step;
        let y = |v: f64| -> f64 {
            let frac = if panel.log {
                ((v.max(10f64.powf(lo_exp)).log10() - lo_exp) / (hi_exp - lo_exp)).clamp(0.0, 1.0)
            } else {
                v / top_value
            };
            y0 + PANEL_H - frac * PANEL_H
        };
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            y0 - 8.0,
            xml(&panel.title)
        );
        let ticks: Vec<f64> = if panel.log {
            (lo_exp as i32..=hi_exp as i32)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            (0..)
                .map(|i| i as f64 * step)
                .take_while(|v| *v <= top_value + step / 2.0)
                .collect()
        };
        for v in ticks {
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                (panel.format)(v),
                yy = y(v)
            );
        }
        let group_w = plot_w / panel.groups.len() as f64;
        for (g, (label, bars)) in panel.groups.iter().enumerate() {
            let gx = LEFT + g as f64 * group_w + group_w * 0.075;
            let bar_w = group_w * 0.85 / bars.len().max(1) as f64;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
                gx + group_w * 0.425,
                y0 + PANEL_H + 16.0,
                xml(label)
            );
            for (k, (kind, med, lo, hi, note)) in bars.iter().enumerate() {
                let x = gx + k as f64 * bar_w;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                     <title>{} {}: {} [{}-{}]</title></rect>",
                    y(*med),
                    bar_w * 0.9,
                    y0 + PANEL_H - y(*med),
                    color(*kind),
                    xml(label),
                    kind.name(),
                    (panel.format)(*med),
                    (panel.format)(*lo),
                    (panel.format)(*hi)
                );
                let cx = x + bar_w * 0.45;
                let _ = writeln!(
                    s,
                    "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                    y(*lo),
                    y(*hi)
                );
                if !note.is_empty() {
                    let _ = writeln!(
                        s,
                        "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>",
                        y(*hi) - 4.0,
                        xml(note)
                    );
                }
            }
        }
    }
    let ly = TOP + panels.len() as f64 * (PANEL_H + GAP) - 20.0;
    for (k, &kind) in shown.iter().enumerate() {
        let yy = ly + k as f64 * 18.0;
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{yy:.1}\">{}: {}</text>",
            yy - 10.0,
            color(kind),
            LEFT + 18.0,
            kind.name(),
            xml(kind.describe())
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `text` to `path`, creating the directory.
pub fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}
