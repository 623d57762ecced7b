//! Results: medians and ranges, ratios against the baselines and the targets, the table on
//! stdout, the JSON file and the SVG plot (all written by hand: no dependency).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::consumer::Kind;
use super::{RunResult, Scenario, Shape};

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
    format!(
        "{:<15} {:>8} pkt/s  cpu {:>6} ns/pkt (softirq {:>4})  received {}/{}  qdrop {} udrop {} sinkdrop {}  other load {:.0}%",
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
    let (sa, sb) = (find(summaries, scenario, a)?, find(summaries, scenario, b)?);
    let paired: Vec<f64> = sa
        .by_rep
        .iter()
        .filter_map(|(rep, pa)| {
            let pb = sb.by_rep.iter().find(|(r, _)| r == rep)?.1;
            Some(pa / pb)
        })
        .collect();
    Some(Ratio {
        of_medians: sa.pps.0 / sb.pps.0,
        paired: min_max(&paired),
        cpu: sa.cpu_ns.zip(sb.cpu_ns).map(|(ca, cb)| cb / ca),
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

/// One target of issue 6, checked in one scenario.
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

/// The targets: throughput ratios under drain, loss under blast.
pub fn targets(summaries: &[Summary], scenarios: &[Scenario]) -> Vec<Target> {
    let mut out = Vec::new();
    let throughput: [(&str, Kind, Kind, f64); 4] = [
        (
            "(3) nfq-nobatch vs (1) c-classic",
            Kind::RsNoBatch,
            Kind::CClassic,
            1.0,
        ),
        (
            "(4) nfq-default vs (2) c-best",
            Kind::RsDefault,
            Kind::CBest,
            1.0,
        ),
        (
            "(4) nfq-default vs (1) c-classic",
            Kind::RsDefault,
            Kind::CClassic,
            1.8,
        ),
        (
            "(4) nfq-default vs no rule",
            Kind::RsDefault,
            Kind::NoRule,
            0.9,
        ),
    ];
    for scenario in scenarios.iter().filter(|s| s.shape.is_drain()) {
        for (name, a, b, goal) in throughput {
            if let Some(r) = ratio(summaries, scenario, a, b) {
                out.push(Target {
                    name: name.into(),
                    scenario: scenario.label(),
                    value: r.of_medians,
                    shown: r.to_string(),
                    goal: format!(">= {goal:.1}x"),
                    met: r.of_medians >= goal,
                });
            }
        }
    }
    for scenario in scenarios.iter().filter(|s| s.shape == Shape::Blast) {
        let Some(s) = find(summaries, scenario, Kind::RsDefault) else {
            continue;
        };
        let others: Vec<String> = [Kind::CClassic, Kind::RsNoBatch]
            .into_iter()
            .filter_map(|k| find(summaries, scenario, k))
            .map(|o| format!("{} loses {:.0}%", o.kind.name(), o.lost.0 * 100.0))
            .collect();
        out.push(Target {
            name: "(4) nfq-default loses no packet under blast".into(),
            scenario: scenario.label(),
            value: s.lost.1,
            shown: format!(
                "worst run lost {:.2}% ({})",
                s.lost.1 * 100.0,
                others.join(", ")
            ),
            goal: "0 lost".into(),
            met: s.lost.1 == 0.0,
        });
    }
    out
}

/// The table printed on stdout.
pub fn table(summaries: &[Summary], scenarios: &[Scenario], reps: usize) -> String {
    let mut t = String::new();
    for scenario in scenarios {
        let rows: Vec<&Summary> = summaries
            .iter()
            .filter(|s| s.scenario == *scenario)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let what = match scenario.shape {
            Shape::Drain => format!("{}-packet backlog, live sink", scenario.packets),
            Shape::Isolated => format!("{}-packet backlog, sink reads after", scenario.packets),
            Shape::Blast => format!("{} packets, unpaced sender, live sink", scenario.packets),
        };
        let _ = writeln!(t, "\n## {} ({what}, {reps} reps)\n", scenario.label());
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
                notes.join("; ")
            );
        }
    }
    t
}

/// The targets as a table.
pub fn targets_table(targets: &[Target]) -> String {
    let mut t = String::from(
        "\n## Targets (ratio of medians [per-repetition min-max])\n\n\
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
        "\"shape\": {}, \"payload\": {}, \"copy\": {}, \"packets\": {}",
        json_str(s.shape.name()),
        s.payload,
        json_str(&s.copy.name()),
        s.packets
    )
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
             \"per_queue\": [{}], \"error\": {}}}",
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
        Kind::RsBigBuf => "#17becf",
        Kind::RsThreaded => "#2ca02c",
        Kind::RsMultiQueue => "#8c564b",
        Kind::CBest64 => "#ffbb78",
        Kind::RsBatch1024 => "#aec7e8",
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

/// The plot: packets/s by consumer (median bars, min-max whiskers), one panel per shape, one
/// group per payload size and copy range; loss above blast bars.
pub fn svg(
    summaries: &[Summary],
    scenarios: &[Scenario],
    kinds: &[Kind],
    subtitle: &str,
) -> String {
    const WIDTH: f64 = 1000.0;
    const PANEL_H: f64 = 300.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 84.0;
    const GAP: f64 = 80.0;
    let shapes: Vec<Shape> = Shape::ALL
        .into_iter()
        .filter(|sh| scenarios.iter().any(|s| s.shape == *sh))
        .collect();
    let max = summaries
        .iter()
        .map(|s| s.pps.2)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let step = tick_step(max);
    let top_value = (max / step).ceil() * step;
    let legend_h = 18.0 * kinds.len() as f64 + 10.0;
    let height = TOP + shapes.len() as f64 * (PANEL_H + GAP) + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">NFQUEUE consumers: \
         packets/s (median, whiskers min-max)</text>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"44\" fill=\"#555\">{}</text>",
        xml(subtitle)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (p, shape) in shapes.iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL_H + GAP);
        let y = |v: f64| y0 + PANEL_H - v / top_value * PANEL_H;
        let title = match shape {
            Shape::Drain => {
                "drain: paused consumer, backlog queued, resumed; the sink reads as packets arrive"
            }
            Shape::Isolated => {
                "drain-isolated: the same, the sink reads after the run (consumer cost alone)"
            }
            Shape::Blast => {
                "blast: unpaced sender, consumers' default settings (loss above the bars)"
            }
        };
        let _ = writeln!(
            s,
            "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{title}</text>",
            y0 - 8.0
        );
        let mut v = 0.0;
        while v <= top_value + step / 2.0 {
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                si(v),
                yy = y(v)
            );
            v += step;
        }
        let group: Vec<&Scenario> = scenarios.iter().filter(|sc| sc.shape == *shape).collect();
        let group_w = plot_w / group.len() as f64;
        let bar_w = group_w * 0.85 / kinds.len() as f64;
        for (g, scenario) in group.iter().enumerate() {
            let gx = LEFT + g as f64 * group_w + group_w * 0.075;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}B payload, copy {}</text>",
                gx + group_w * 0.425,
                y0 + PANEL_H + 18.0,
                scenario.payload,
                scenario.copy.name()
            );
            for (k, &kind) in kinds.iter().enumerate() {
                let Some(sum) = find(summaries, scenario, kind) else {
                    continue;
                };
                let x = gx + k as f64 * bar_w;
                let (med, lo, hi) = sum.pps;
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\">\
                     <title>{}: {} pkt/s [{}-{}]</title></rect>",
                    y(med),
                    bar_w * 0.9,
                    y0 + PANEL_H - y(med),
                    color(kind),
                    kind.name(),
                    si(med),
                    si(lo),
                    si(hi)
                );
                let cx = x + bar_w * 0.45;
                let _ = writeln!(
                    s,
                    "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                    y(lo),
                    y(hi)
                );
                if *shape == Shape::Blast && sum.lost.0 >= 0.005 {
                    let _ = writeln!(
                        s,
                        "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">-{:.0}%</text>",
                        y(hi) - 4.0,
                        sum.lost.0 * 100.0
                    );
                }
            }
        }
    }
    let ly = TOP + shapes.len() as f64 * (PANEL_H + GAP) - 20.0;
    for (k, &kind) in kinds.iter().enumerate() {
        let x = LEFT;
        let yy = ly + k as f64 * 18.0;
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{yy:.1}\">{}: {}</text>",
            yy - 10.0,
            color(kind),
            x + 18.0,
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
