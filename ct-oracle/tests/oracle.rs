//! libnfq's conntrack decoder against libnetfilter_conntrack's parser (`nfct_payload_parse`),
//! on kernel-shaped `NFQA_CT` layouts and on seeded mutations of them.

use ct_oracle::fuzz::{differential as differential_body, mutate, random_layout, Rng};
use ct_oracle::{compare, parse, vectors, Oracle, AF_INET};
use libnfq::conntrack::Conntrack;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_vector_decodes_to_its_values_and_agrees_with_the_oracle() {
    let specs = vectors::all();
    assert!(specs.len() >= 12);
    for spec in &specs {
        for (how, bytes) in [
            ("padded", spec.build()),
            ("unpadded", spec.build_unpadded()),
        ] {
            let ct = Conntrack::parse(&bytes);
            let diffs = compare::against_spec(&ct, spec);
            assert!(
                diffs.is_empty(),
                "{} ({how}): {diffs:#?}\n{}",
                spec.name,
                hex(&bytes)
            );
            let Oracle::Accepted(oracle) = parse(&bytes, spec.l3num) else {
                panic!("{} ({how}): the oracle refused a kernel layout", spec.name);
            };
            // The oracle read the entry too (the comparison below is not between two Nones).
            assert!(
                oracle.orig.is_some() && oracle.reply.is_some(),
                "{}",
                spec.name
            );
            assert_eq!(oracle.status, Some(spec.status), "{}", spec.name);
            assert_eq!(oracle.id, Some(spec.id), "{}", spec.name);
            let diffs = compare::against_oracle(&ct, &oracle);
            assert!(
                diffs.is_empty(),
                "{} ({how}): {diffs:#?}\n{}",
                spec.name,
                hex(&bytes)
            );
        }
    }
}

#[test]
fn the_oracle_refuses_what_it_should() {
    // A status of 3 bytes: libnetfilter_conntrack refuses it (libnfq reads it as absent).
    let bytes = vectors::attr(libnfq::conntrack::uapi::CTA_STATUS, &[0, 0, 8]);
    assert_eq!(parse(&bytes, AF_INET), Oracle::Rejected);
    assert_eq!(Conntrack::parse(&bytes).status(), None);
}

/// Runs the oracle on each input; every accepted one must decode the same in libnfq.
/// Returns (accepted, rejected, crashed).
fn differential(inputs: impl Iterator<Item = (Vec<u8>, u16)>) -> (usize, usize, usize) {
    let (mut accepted, mut rejected, mut crashed) = (0, 0, 0);
    let mut failures = Vec::new();
    for (bytes, l3num) in inputs {
        match parse(&bytes, l3num) {
            Oracle::Accepted(oracle) => {
                accepted += 1;
                let diffs = compare::against_oracle(&Conntrack::parse(&bytes), &oracle);
                if !diffs.is_empty() && failures.len() < 5 {
                    failures.push(format!("{diffs:#?}\n{}", hex(&bytes)));
                }
            }
            Oracle::Rejected => rejected += 1,
            Oracle::Crashed => crashed += 1,
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
    (accepted, rejected, crashed)
}

#[test]
fn mutated_vectors_agree_wherever_the_oracle_accepts() {
    let specs = vectors::all();
    let mut rng = Rng::new(0x5eed_c0ff_ee00_0001);
    let n = 4000;
    let inputs = (0..n).map(|i| {
        let spec = &specs[i % specs.len()];
        (mutate(&spec.build(), &mut rng), spec.l3num)
    });
    let (accepted, rejected, crashed) = differential(inputs);
    eprintln!("mutations: {accepted} accepted, {rejected} refused, {crashed} crashed the oracle");
    // Both outcomes are well represented, so the comparison is not vacuous.
    assert!(accepted >= n / 5, "only {accepted} of {n} accepted");
    assert!(rejected >= n / 20, "only {rejected} of {n} refused");
}

#[test]
fn random_layouts_agree_wherever_the_oracle_accepts() {
    let mut rng = Rng::new(0x5eed_c0ff_ee00_0002);
    let n = 2000;
    let inputs = (0..n).map(|_| (random_layout(&mut rng, 3), AF_INET));
    let (accepted, rejected, crashed) = differential(inputs);
    eprintln!(
        "random layouts: {accepted} accepted, {rejected} refused, {crashed} crashed the oracle"
    );
    assert!(accepted >= n / 10, "only {accepted} of {n} accepted");
}

#[test]
fn the_comparison_sees_one_changed_value() {
    let spec = vectors::all()
        .into_iter()
        .find(|s| s.mark != 0 && s.tcp.is_some())
        .expect("a vector with a mark");
    let Oracle::Accepted(oracle) = parse(&spec.build(), spec.l3num) else {
        panic!("refused");
    };
    let mut changed = spec.clone();
    changed.mark += 1;
    let bytes = changed.build();
    let diffs = compare::against_oracle(&Conntrack::parse(&bytes), &oracle);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].starts_with("mark:"), "{diffs:?}");
    // And a whole other entry differs in many fields.
    let other = vectors::all()[1].build();
    assert!(compare::against_oracle(&Conntrack::parse(&other), &oracle).len() > 3);
}

#[test]
fn the_differential_fuzz_body_runs_on_kernel_layouts_and_prefixes() {
    for spec in vectors::all() {
        let bytes = spec.build();
        for end in (0..=bytes.len()).step_by(7) {
            differential_body(&bytes[..end]);
        }
    }
}
