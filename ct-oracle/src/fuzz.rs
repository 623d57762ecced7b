//! Randomized inputs for the decoder, and the body of a fuzz target.
//!
//! [`exercise`] is what a cargo-fuzz target calls on each input
//! (`fuzz_target!(|data: &[u8]| ct_oracle::fuzz::exercise(data))`): it decodes the bytes with
//! every accessor of [`libnfq::conntrack`] and panics if any returned slice lies outside them
//! (a panic inside the decoder itself fails the same way). [`differential`] is the body of a
//! slower, differential target: it also runs the oracle (one child process per input) and
//! panics when the oracle accepts the bytes and decodes them differently. [`Rng`], [`mutate`]
//! and [`random_layout`] make seeded, reproducible inputs for the in-tree randomized tests.

use libnfq::conntrack::{uapi::*, Attrs, Conntrack, CtInfo, Tuple};

use crate::vectors::attr;
use crate::{compare, parse, Oracle, AF_INET};

/// A small seeded generator (SplitMix64): reproducible, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// `bytes` with one to four random changes: bit flips, byte writes, attribute length or type
/// rewrites (at 4-byte-aligned offsets, where headers are), truncation, insertion, deletion or
/// duplication of a range.
pub fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            2 if len >= 4 => {
                // A header's length: small changes, or anything.
                let i = rng.below(len / 4) * 4;
                let old = u16::from_ne_bytes([out[i], out[i + 1]]);
                let new = match rng.below(3) {
                    0 => old.wrapping_add(1 + rng.below(8) as u16),
                    1 => old.wrapping_sub(1 + rng.below(8) as u16),
                    _ => rng.next_u64() as u16,
                };
                out[i..i + 2].copy_from_slice(&new.to_ne_bytes());
            }
            3 if len >= 4 => {
                // A header's type: another known number, with or without flags.
                let i = rng.below(len / 4) * 4 + 2;
                let ty = (rng.below(30) as u16) | if rng.one_in(2) { NLA_F_NESTED } else { 0 };
                out[i..i + 2].copy_from_slice(&ty.to_ne_bytes());
            }
            4 => out.truncate(rng.below(len + 1)),
            5 => {
                let at = rng.below(len + 1);
                let extra = if rng.one_in(2) {
                    let ty = rng.below(40) as u16;
                    let n = rng.below(20);
                    attr(ty, &rng.bytes(n))
                } else {
                    let n = rng.below(12);
                    rng.bytes(n)
                };
                out.splice(at..at, extra);
            }
            6 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(24)).min(len);
                out.drain(a..b);
            }
            7 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let copy = out[a..b].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, 0);
            }
        }
    }
    out
}

/// A random list of attributes shaped like `NFQA_CT` (known and unknown types, nests of
/// random depth, payloads of the right and wrong sizes), `depth` levels deep at most.
pub fn random_layout(rng: &mut Rng, depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(8) {
        let ty = match rng.below(4) {
            0 => rng.below(64) as u16,
            _ => 1 + rng.below(CTA_MAX as usize) as u16,
        };
        let payload = if depth > 0 && rng.one_in(2) {
            random_layout(rng, depth - 1)
        } else {
            let len = match rng.below(4) {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => rng.below(20),
            };
            rng.bytes(len)
        };
        let flags = if rng.one_in(2) { NLA_F_NESTED } else { 0 };
        out.extend_from_slice(&attr(ty | flags, &payload));
    }
    if rng.one_in(4) {
        let keep = rng.below(out.len() + 1);
        out.truncate(keep);
    }
    out
}

/// Panics unless `part` lies inside `whole`.
fn inside(whole: &[u8], part: &[u8], what: &str) {
    let start = whole.as_ptr() as usize;
    let end = start + whole.len();
    let p = part.as_ptr() as usize;
    assert!(
        part.is_empty() || (p >= start && p + part.len() <= end),
        "{what}: a slice outside the input"
    );
}

fn exercise_tuple(data: &[u8], tuple: Option<Tuple<'_>>) {
    let Some(t) = tuple else { return };
    let _ = (t.src(), t.dst(), t.protocol(), t.src_port(), t.dst_port());
    let _ = (t.icmp_id(), t.icmp_type(), t.icmp_code(), t.zone());
    for part in [t.ip_attrs(), t.proto_attrs()].into_iter().flatten() {
        inside(data, part, "tuple attributes");
        for (_, payload) in Attrs::new(part) {
            inside(data, payload, "tuple attribute");
        }
    }
    let _ = format!("{t:?}");
}

/// Decodes `data` as an `NFQA_CT` payload (and as `NFQA_CT_INFO`) with every accessor;
/// panics if a returned slice lies outside `data`. The body of a fuzz target.
pub fn exercise(data: &[u8]) {
    let _ = CtInfo::parse(data);
    let ct = Conntrack::parse(data);
    inside(data, ct.as_bytes(), "as_bytes");
    for (ty, payload) in ct.attrs() {
        inside(data, payload, "attribute");
        let found = ct.attr(ty).expect("an attribute that was walked is found");
        inside(data, found, "attr()");
        // Every attribute also as a nest, one level down.
        for (_, inner) in Attrs::new(payload) {
            inside(data, inner, "nested attribute");
        }
    }
    for cta in [0, CTA_MAX + 1, 500, u16::MAX] {
        if let Some(p) = ct.attr(cta) {
            inside(data, p, "attr(unknown)");
        }
    }
    exercise_tuple(data, ct.orig());
    exercise_tuple(data, ct.reply());
    exercise_tuple(data, ct.master());
    let _ = (ct.status(), ct.mark(), ct.id(), ct.zone(), ct.timeout());
    let _ = (
        ct.use_count(),
        ct.secmark(),
        ct.timestamp_start(),
        ct.timestamp_stop(),
    );
    let _ = (ct.counters_orig(), ct.counters_reply());
    for s in [ct.secctx(), ct.helper_name()].into_iter().flatten() {
        inside(data, s, "string");
    }
    if let Some(labels) = ct.labels() {
        inside(data, labels.as_bytes(), "labels");
        let set: Vec<u32> = labels.iter().take(4096).collect();
        assert!(set.iter().all(|&n| labels.contains(n)));
        let _ = labels.is_empty();
    }
    if let Some(tcp) = ct.tcp() {
        let _ = (tcp.state(), tcp.wscale_orig(), tcp.wscale_reply());
        let _ = (tcp.flags_orig(), tcp.flags_reply());
        let _ = format!("{tcp:?}");
    }
    if data.len() % 8 == 0 {
        let _ = format!("{ct:?}");
    }
}

/// [`exercise`], then the oracle on the same bytes: panics when libnetfilter_conntrack accepts
/// them and libnfq decodes a field differently. The body of a differential fuzz target.
pub fn differential(data: &[u8]) {
    exercise(data);
    if let Oracle::Accepted(oracle) = parse(data, AF_INET) {
        let diffs = compare::against_oracle(&Conntrack::parse(data), &oracle);
        assert!(
            diffs.is_empty(),
            "libnfq and libnetfilter_conntrack disagree: {diffs:#?}"
        );
    }
}
