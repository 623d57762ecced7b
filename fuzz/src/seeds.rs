//! The committed seed corpora (`corpus/<target>/<name>`), built from real packet layouts
//! ([`crate::packets`]). `examples/seeds.rs` writes them; `tests/corpus.rs` checks that the
//! committed files are exactly these and replays them.

use libnfq::pkt::Family;

use crate::edits::{self, Create, Op};
use crate::packets::{catalogue, named};

/// `(target, file name, input)` for every seed.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, packet) in catalogue() {
        seeds.push(("pkt_views", name.to_string(), packet));
    }
    for (name, input) in packetbuf_edits() {
        seeds.push(("packetbuf_edits", name.to_string(), input));
    }
    seeds
}

fn packetbuf_edits() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let e = |create, packet: &str, ops: &[Op]| edits::encode(create, &named(packet), ops);
    let b = |s: &str| s.as_bytes().to_vec();
    vec![
        (
            "v4-udp-replace-grow",
            e(
                Create::New,
                "v4-udp",
                &[ReplaceAll(b("cat"), b("tiger")), Views, FixChecksums],
            ),
        ),
        (
            "v4-tcp-same-length",
            e(
                Create::New,
                "v4-tcp",
                &[
                    ManglePayload(5..8, b("dog")),
                    Poke(40, b("GET")),
                    FixChecksums,
                    Views,
                ],
            ),
        ),
        (
            "v4-tcp-options-shrink",
            e(
                Create::Alloc(Family::Ipv4, 64),
                "v4-tcp-options",
                &[
                    ReplaceAll(b("cat"), b("c")),
                    SetTransportChecksum,
                    SetIpv4Checksum,
                ],
            ),
        ),
        (
            "v6-udp-grow-shrink",
            e(
                Create::Alloc(Family::Ipv6, 512),
                "v6-udp",
                &[
                    ManglePayload(2..5, b("big big cat")),
                    MangleIpPayload(8..12, b("")),
                    Views,
                ],
            ),
        ),
        (
            "v6-ext-replace",
            e(
                Create::New,
                "v6-hop-dest-udp",
                &[ReplaceAll(b("cat"), b("lion")), FixChecksums],
            ),
        ),
        (
            "v4-no-tailroom",
            e(
                Create::Alloc(Family::Ipv4, 0),
                "v4-udp",
                &[
                    ManglePayload(0..1, b("xy")),
                    ManglePayload(0..2, b("z")),
                    Mangle(0..0, b("q")),
                ],
            ),
        ),
        (
            "v6-routing-refused",
            e(
                Create::New,
                "v6-routing-pending-tcp",
                &[SetTransportChecksum, FixChecksums, Views],
            ),
        ),
        (
            "wrong-family",
            e(
                Create::Alloc(Family::Ipv6, 16),
                "v4-udp",
                &[FixChecksums, Mangle(0..1, b("\x60"))],
            ),
        ),
        (
            "v4-fragment-refused",
            e(
                Create::New,
                "v4-fragment-first",
                &[FixChecksums, SetIpv4Checksum, ManglePayload(0..1, b("x"))],
            ),
        ),
        (
            "v4-raw-mangle",
            e(
                Create::Alloc(Family::Ipv4, 16),
                "v4-icmp",
                &[
                    Mangle(28..32, b("pong")),
                    MangleIpPayload(8..9, b("!!")),
                    FixChecksums,
                    Views,
                ],
            ),
        ),
        (
            "v6-auth-tcp",
            e(
                Create::New,
                "v6-auth-tcp",
                &[ManglePayload(0..3, b("dog")), FixChecksums],
            ),
        ),
        (
            "v4-trailing-refused",
            e(
                Create::New,
                "v4-trailing-bytes",
                &[FixChecksums, Mangle(31..37, b("")), FixChecksums],
            ),
        ),
    ]
}
