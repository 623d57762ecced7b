//! The committed seed corpora: exactly what the generator (`libnfq_fuzz::seeds`) makes, and
//! every file of `corpus/` (seeds and minimized inputs of fixed bugs) passes its target. Runs
//! on the stable toolchain: `cargo test` from `fuzz/`.

use std::collections::BTreeMap;
use std::path::Path;

fn corpus() -> BTreeMap<(String, String), Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut files = BTreeMap::new();
    for target in std::fs::read_dir(&root).expect("corpus/") {
        let target = target.unwrap();
        for file in std::fs::read_dir(target.path()).unwrap() {
            let file = file.unwrap();
            files.insert(
                (
                    target.file_name().into_string().unwrap(),
                    file.file_name().into_string().unwrap(),
                ),
                std::fs::read(file.path()).unwrap(),
            );
        }
    }
    files
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let files = corpus();
    for (target, name, input) in libnfq_fuzz::seeds::all() {
        let committed = files.get(&(target.to_string(), name.clone()));
        assert!(
            committed == Some(&input),
            "corpus/{target}/{name} differs from the generator: run `cargo run --example seeds`"
        );
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    let files = corpus();
    assert!(files.len() >= 20, "{} corpus files", files.len());
    for ((target, name), input) in &files {
        eprintln!("{target}/{name}");
        match target.as_str() {
            "pkt_views" => libnfq_fuzz::views::run(input),
            "packetbuf_edits" => libnfq_fuzz::edits::run(input),
            "dispatch" => libnfq_fuzz::dispatch::run(input),
            other => panic!("corpus for an unknown target {other}"),
        }
    }
}

/// The packet builders are right: whole TCP/UDP packets have valid checksums (as the views
/// compute them), IPv4 headers too.
#[test]
fn catalogue_packets_are_well_formed() {
    use libnfq::pkt::IpPacket;
    for (name, packet) in libnfq_fuzz::packets::catalogue() {
        let view = IpPacket::parse(&packet).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(h) = view.ipv4() {
            assert!(h.checksum_ok(), "{name}");
        }
        let whole = !name.contains("fragment")
            && !name.contains("routing-pending")
            && !name.contains("truncated")
            && !name.contains("icmp");
        if whole {
            assert_eq!(view.transport_checksum_ok(), Some(true), "{name}");
        }
    }
}

/// The edit seeds reach the operations they are meant for: `(accepted, refused)` per seed.
#[test]
fn edit_seeds_are_accepted_and_refused_as_designed() {
    let expected: &[(&str, (usize, usize))] = &[
        ("v4-udp-replace-grow", (2, 0)),
        ("v4-tcp-same-length", (2, 0)),
        ("v4-tcp-options-shrink", (3, 0)),
        ("v6-udp-grow-shrink", (2, 0)),
        ("v6-ext-replace", (2, 0)),
        ("v4-no-tailroom", (2, 1)),
        ("v6-routing-refused", (0, 2)),
        ("wrong-family", (1, 1)),
        ("v4-fragment-refused", (1, 2)),
        ("v4-raw-mangle", (3, 0)),
        ("v6-auth-tcp", (2, 0)),
        ("v4-trailing-refused", (2, 1)),
    ];
    let seeds = libnfq_fuzz::seeds::all();
    for (name, counts) in expected {
        let input = &seeds
            .iter()
            .find(|(t, n, _)| *t == "packetbuf_edits" && n == name)
            .unwrap()
            .2;
        assert_eq!(libnfq_fuzz::edits::run_counted(input), *counts, "{name}");
    }
}

/// The dispatch seeds reach what they are meant for: packets shown, deferred, errors returned.
#[test]
fn dispatch_seeds_show_defer_and_report_as_designed() {
    use libnfq_fuzz::dispatch::{run_counted, Stats};
    let expected: &[(&str, (usize, usize, usize))] = &[
        // Queues 1 and 3 defer id 1.
        ("every-queue", (4, 2, 0)),
        // Refused: a connection mark without CONNTRACK, payloads shorter than the headers.
        ("plain-verdicts", (16, 0, 5)),
        ("deferred-settled", (6, 5, 0)),
        // Refused: a payload for a truncated copy, a connection mark without CONNTRACK.
        ("payload-refusals", (5, 0, 2)),
        // Two error answers with sequence 0; an acknowledgement; an answer to a request.
        ("error-answers", (1, 0, 2)),
        // Two packet messages without a usable header, an error answer.
        ("malformed", (2, 0, 3)),
        ("every-attribute", (1, 0, 0)),
        // A payload for a copy truncated at u32::MAX bytes is refused.
        ("extreme-values", (2, 0, 1)),
        ("garbage-ends-the-walk", (1, 0, 0)),
        ("conntrack", (2, 0, 0)),
        ("reentrant", (3, 1, 0)),
        ("no-batching", (4, 1, 0)),
        ("no-range-verdicts", (12, 6, 0)),
    ];
    let seeds = libnfq_fuzz::seeds::all();
    for (name, (shown, deferred, errors)) in expected {
        let input = &seeds
            .iter()
            .find(|(t, n, _)| *t == "dispatch" && n == name)
            .unwrap()
            .2;
        let want = Stats {
            shown: *shown,
            deferred: *deferred,
            errors: *errors,
        };
        assert_eq!(run_counted(input), want, "{name}");
    }
}

/// The conntrack entry of the `conntrack` dispatch seed is what ctnetlink would send.
#[test]
fn conntrack_seed_decodes() {
    let bytes = libnfq_fuzz::seeds::conntrack_entry();
    let ct = libnfq::conntrack::Conntrack::parse(&bytes);
    let orig = ct.orig().expect("original tuple");
    assert_eq!(orig.src(), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(
        (orig.protocol(), orig.src_port(), orig.dst_port()),
        (Some(6), Some(12345), Some(8080))
    );
    assert_eq!(ct.reply().unwrap().dst(), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(
        (ct.mark(), ct.id(), ct.timeout()),
        (Some(7), Some(0xdead), Some(300))
    );
    assert_eq!(ct.tcp().and_then(|t| t.state()), Some(3));
}
