//! The committed seed corpora (`corpus/<target>/<name>`), built from real packet layouts
//! ([`crate::packets`]). `examples/seeds.rs` writes them; `tests/corpus.rs` checks that the
//! committed files are exactly these and replays them.

use libnfq::pkt::Family;

use crate::dispatch::{Attr, Chunk};
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
    for (name, input) in dispatch() {
        seeds.push(("dispatch", name.to_string(), input));
    }
    seeds
}

/// `NFQA_*` attribute types.
mod nfqa {
    pub const MARK: u8 = 3;
    pub const TIMESTAMP: u8 = 4;
    pub const INDEV: u8 = 5;
    pub const OUTDEV: u8 = 6;
    pub const PHYSINDEV: u8 = 7;
    pub const PHYSOUTDEV: u8 = 8;
    pub const HWADDR: u8 = 9;
    pub const PAYLOAD: u8 = 10;
    pub const CT: u8 = 11;
    pub const CT_INFO: u8 = 12;
    pub const CAP_LEN: u8 = 13;
    pub const SKB_INFO: u8 = 14;
    pub const UID: u8 = 16;
    pub const GID: u8 = 17;
    pub const SECCTX: u8 = 18;
}

fn attr(kind: u8, payload: &[u8]) -> Attr {
    Attr {
        kind,
        payload: payload.to_vec(),
        flags: 0,
    }
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// A packet message as the kernel sends one for a locally generated packet: payload and
/// outgoing interface (queue index into `dispatch::QUEUES`).
fn packet(queue: u8, id: u32, payload: &[u8], extra: Vec<Attr>) -> Chunk {
    let mut attrs = vec![attr(nfqa::OUTDEV, &be32(1)), attr(nfqa::PAYLOAD, payload)];
    attrs.extend(extra);
    Chunk::Packet {
        queue,
        id,
        hw_protocol: if payload.first().is_some_and(|b| b >> 4 == 6) {
            0x86dd
        } else {
            0x0800
        },
        hook: 3,
        no_header: false,
        cut: 0,
        attrs,
    }
}

/// An error answer to a verdict for packet `id` of queue `queue` (header echoed).
fn verdict_error(errno: i32, queue: u16, id: u32) -> Chunk {
    let mut echo = Vec::new();
    echo.extend_from_slice(&32u32.to_ne_bytes());
    echo.extend_from_slice(&((3u16 << 8) | 1).to_ne_bytes()); // NFQNL_MSG_VERDICT
    echo.extend_from_slice(&[0; 10]);
    echo.extend_from_slice(&[0, 0]);
    echo.extend_from_slice(&queue.to_be_bytes());
    echo.extend_from_slice(&12u16.to_ne_bytes());
    echo.extend_from_slice(&2u16.to_ne_bytes()); // NFQA_VERDICT_HDR
    echo.extend_from_slice(&1u32.to_be_bytes());
    echo.extend_from_slice(&id.to_be_bytes());
    Chunk::Error {
        code: -errno,
        seq: 0,
        echo,
    }
}

/// A netlink attribute (padded), `nested` setting NLA_F_NESTED.
fn nla(kind: u16, nested: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
    b.extend_from_slice(&(kind | if nested { 0x8000 } else { 0 }).to_ne_bytes());
    b.extend_from_slice(payload);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b
}

/// An `NFQA_CT` payload as ctnetlink writes it: both tuples (10.0.0.1:12345 -> 10.0.0.2:8080,
/// TCP), status, mark, id, TCP protocol info.
pub fn conntrack_entry() -> Vec<u8> {
    let tuple = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
        let ip = [nla(1, false, &src), nla(2, false, &dst)].concat();
        let proto = [
            nla(1, false, &[6]),
            nla(2, false, &sport.to_be_bytes()),
            nla(3, false, &dport.to_be_bytes()),
        ]
        .concat();
        [nla(1, true, &ip), nla(2, true, &proto)].concat()
    };
    let tcp = [
        nla(1, false, &[3]),
        nla(2, false, &[7]),
        nla(3, false, &[7]),
    ]
    .concat();
    [
        nla(1, true, &tuple([10, 0, 0, 1], [10, 0, 0, 2], 12345, 8080)),
        nla(2, true, &tuple([10, 0, 0, 2], [10, 0, 0, 1], 8080, 12345)),
        nla(3, false, &0x18eu32.to_be_bytes()),
        nla(8, false, &7u32.to_be_bytes()),
        nla(12, false, &0xdeadu32.to_be_bytes()),
        nla(7, false, &300u32.to_be_bytes()),
        nla(4, true, &nla(1, true, &tcp)),
    ]
    .concat()
}

fn dispatch() -> Vec<(&'static str, Vec<u8>)> {
    use crate::dispatch::encode;
    let udp = named("v4-udp");
    let tcp = named("v4-tcp");
    let v6 = named("v6-udp");
    // (id >> 4) % 8 chooses a plain callback's verdict, id % 4 a deferrable one's action.
    let verdict_ids = |base: u32| (0..8u32).map(move |k| base + (k << 4));
    vec![
        (
            "every-queue",
            encode(
                0,
                &[
                    packet(0, 1, &udp, vec![attr(nfqa::MARK, &be32(7))]),
                    packet(1, 1, &tcp, vec![]),
                    packet(2, 1, &v6, vec![]),
                    packet(3, 1, &[], vec![]),
                    packet(4, 1, &udp, vec![]),
                    Chunk::End,
                    Chunk::Settle(0),
                ],
            ),
        ),
        (
            "plain-verdicts",
            encode(
                0,
                &verdict_ids(0x1000)
                    .map(|id| packet(0, id, &udp, vec![]))
                    .chain(verdict_ids(0x2001).map(|id| packet(2, id, &tcp, vec![])))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "deferred-settled",
            encode(
                0,
                &[
                    packet(1, 1, &udp, vec![]),
                    packet(1, 2, &udp, vec![]),
                    packet(3, 3, &udp, vec![]),
                    packet(1, 4, &udp, vec![]),
                    Chunk::End,
                    Chunk::Settle(0b0110_0100),
                    packet(1, 5, &tcp, vec![]),
                    packet(1, 6, &tcp, vec![]),
                    Chunk::End,
                    Chunk::Settle(0b1110_0100),
                ],
            ),
        ),
        (
            "payload-refusals",
            encode(
                0,
                &[
                    // Replacement payloads: whole, cut short of the headers, for a truncated copy.
                    packet(0, 0x160, &udp, vec![]),
                    packet(0, 0x1160, &udp, vec![]),
                    packet(
                        0,
                        0x170,
                        &udp[..20],
                        vec![attr(nfqa::CAP_LEN, &be32(udp.len() as u32))],
                    ),
                    // A connection mark with and without CONNTRACK.
                    packet(0, 0x50, &udp, vec![]),
                    packet(2, 0x50, &udp, vec![attr(nfqa::CT, &[0; 8])]),
                ],
            ),
        ),
        (
            "error-answers",
            encode(
                0,
                &[
                    verdict_error(2, 0, 9),
                    verdict_error(19, 1, 3),
                    Chunk::Error {
                        code: 0,
                        seq: 0,
                        echo: vec![],
                    },
                    Chunk::Error {
                        code: -1,
                        seq: 77,
                        echo: vec![0; 8],
                    },
                    packet(0, 1, &udp, vec![]),
                ],
            ),
        ),
        (
            "malformed",
            encode(
                2,
                &[
                    Chunk::Packet {
                        queue: 0,
                        id: 1,
                        hw_protocol: 0x0800,
                        hook: 1,
                        no_header: true,
                        cut: 0,
                        attrs: vec![attr(nfqa::PAYLOAD, &udp)],
                    },
                    Chunk::Packet {
                        queue: 1,
                        id: 2,
                        hw_protocol: 0x0800,
                        hook: 1,
                        no_header: false,
                        cut: 30,
                        attrs: vec![attr(nfqa::PAYLOAD, &udp)],
                    },
                    Chunk::Packet {
                        queue: 0,
                        id: 3,
                        hw_protocol: 0x0800,
                        hook: 1,
                        no_header: false,
                        cut: 0,
                        attrs: vec![
                            Attr {
                                kind: nfqa::MARK,
                                payload: be32(1),
                                flags: 1,
                            },
                            Attr {
                                kind: nfqa::PAYLOAD,
                                payload: udp.clone(),
                                flags: 8,
                            },
                            Attr {
                                kind: nfqa::UID,
                                payload: be32(0),
                                flags: 2,
                            },
                        ],
                    },
                    Chunk::Error {
                        code: -2,
                        seq: 0,
                        echo: vec![],
                    },
                    packet(0, 4, &udp, vec![]),
                ],
            ),
        ),
        (
            "every-attribute",
            encode(
                0,
                &[packet(
                    0,
                    42,
                    &tcp,
                    vec![
                        attr(
                            nfqa::TIMESTAMP,
                            &[0, 0, 0, 0, 0x65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0],
                        ),
                        attr(nfqa::INDEV, &be32(2)),
                        attr(nfqa::PHYSINDEV, &be32(3)),
                        attr(nfqa::PHYSOUTDEV, &be32(4)),
                        attr(nfqa::HWADDR, &[0, 6, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0]),
                        attr(nfqa::CT, &[0; 16]),
                        attr(nfqa::CT_INFO, &be32(2)),
                        attr(nfqa::CAP_LEN, &be32(tcp.len() as u32)),
                        attr(nfqa::SKB_INFO, &be32(3)),
                        attr(nfqa::UID, &be32(1000)),
                        attr(nfqa::GID, &be32(1000)),
                        attr(nfqa::SECCTX, b"system_u:object_r:unlabeled_t:s0\0"),
                    ],
                )],
            ),
        ),
        (
            "extreme-values",
            encode(
                0,
                &[
                    packet(
                        0,
                        u32::MAX,
                        &udp,
                        vec![
                            attr(nfqa::TIMESTAMP, &[0xff; 16]),
                            attr(nfqa::HWADDR, &[0xff, 0xff, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
                            attr(nfqa::CAP_LEN, &be32(u32::MAX)),
                        ],
                    ),
                    packet(1, 0, &[], vec![attr(nfqa::TIMESTAMP, &[0x7f; 16])]),
                ],
            ),
        ),
        (
            "garbage-ends-the-walk",
            encode(
                0,
                &[
                    packet(0, 1, &udp, vec![]),
                    Chunk::Raw(vec![
                        0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ]),
                    packet(0, 2, &udp, vec![]),
                ],
            ),
        ),
        (
            "conntrack",
            encode(
                0,
                &[
                    packet(
                        2,
                        0x51,
                        &tcp,
                        vec![
                            attr(nfqa::CT, &conntrack_entry()),
                            attr(nfqa::CT_INFO, &be32(0)),
                        ],
                    ),
                    packet(
                        2,
                        0x52,
                        &tcp,
                        vec![attr(nfqa::CT, &conntrack_entry()[..40])],
                    ),
                ],
            ),
        ),
        (
            "reentrant",
            encode(
                0,
                &[
                    packet(0, 1, &udp, vec![]),
                    Chunk::Packet {
                        queue: 0,
                        id: 2,
                        hw_protocol: 0x0800,
                        hook: 0x81,
                        no_header: false,
                        cut: 0,
                        attrs: vec![attr(nfqa::PAYLOAD, &udp)],
                    },
                    packet(1, 3, &udp, vec![]),
                ],
            ),
        ),
        (
            "no-batching",
            encode(
                1,
                &[
                    packet(0, 1, &udp, vec![]),
                    packet(0, 2, &udp, vec![]),
                    packet(1, 3, &udp, vec![]),
                    packet(0, 0x13, &udp, vec![]),
                    Chunk::End,
                    Chunk::Settle(0b0000_0101),
                ],
            ),
        ),
        (
            "no-range-verdicts",
            encode(
                4,
                &(1..=12)
                    .map(|id| packet((id % 2) as u8, id, &v6, vec![]))
                    .collect::<Vec<_>>(),
            ),
        ),
    ]
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
