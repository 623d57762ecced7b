//! `NFQA_CT` payloads laid out as the kernel writes them, with the values they encode.
//!
//! The layout follows `ctnetlink_glue_build` (`net/netfilter/nf_conntrack_netlink.c`), which
//! fills `NFQA_CT` for nfnetlink_queue: `CTA_TUPLE_ORIG` { `CTA_TUPLE_IP` { source,
//! destination }, `CTA_TUPLE_PROTO` { `CTA_PROTO_NUM`, ports or ICMP id/type/code },
//! `CTA_TUPLE_ZONE` }, `CTA_TUPLE_REPLY` { the same }, `CTA_ZONE`, `CTA_ID`, `CTA_STATUS`,
//! `CTA_TIMEOUT`, `CTA_PROTOINFO`, the accounting counters and `CTA_TIMESTAMP` (newer
//! kernels), `CTA_HELP`, `CTA_SECCTX`, `CTA_TUPLE_MASTER`, `CTA_SEQ_ADJ_*`, `CTA_SYNPROXY`,
//! `CTA_MARK` (only when not 0), `CTA_LABELS` (only when a label is set). Every number is
//! big-endian (`nla_put_be*`, `nla_put_in_addr`); nests are written with `NLA_F_NESTED`
//! (`nla_nest_start`); every attribute is padded to 4 bytes, the padding counted in the
//! enclosing nest's length.

use std::net::IpAddr;

use libnfq::conntrack::uapi::*;

use crate::{AF_INET, AF_INET6};

/// One netlink attribute: length and type in host order, the payload, zero padding to 4.
pub fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).expect("attribute too long");
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// A nested attribute (`nla_nest_start`: the type carries `NLA_F_NESTED`).
pub fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(ty | NLA_F_NESTED, &parts.concat())
}

/// A NUL-terminated string attribute (`nla_put_string`).
pub fn string(ty: u16, s: &str) -> Vec<u8> {
    let mut payload = s.as_bytes().to_vec();
    payload.push(0);
    attr(ty, &payload)
}

/// The layer-4 part of a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// `CTA_PROTO_SRC_PORT`, `CTA_PROTO_DST_PORT` (TCP, UDP, SCTP, DCCP, UDP-Lite, GRE keys).
    Ports(u16, u16),
    /// `CTA_PROTO_ICMP_ID`, `_TYPE`, `_CODE`.
    Icmp {
        /// Identifier.
        id: u16,
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
    },
    /// `CTA_PROTO_ICMPV6_ID`, `_TYPE`, `_CODE`.
    Icmpv6 {
        /// Identifier.
        id: u16,
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
    },
    /// Only `CTA_PROTO_NUM` (a protocol without `tuple_to_nlattr`).
    None,
}

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleSpec {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// `CTA_PROTO_NUM`.
    pub protocol: u8,
    /// Ports or ICMP fields.
    pub l4: L4,
}

impl TupleSpec {
    /// The same flow seen from the other end (ICMP echo request 8 → reply 0, ICMPv6 128 → 129).
    pub fn reversed(&self) -> TupleSpec {
        let l4 = match self.l4 {
            L4::Ports(s, d) => L4::Ports(d, s),
            L4::Icmp { id, ty, code } => L4::Icmp {
                id,
                ty: if ty == 8 { 0 } else { ty },
                code,
            },
            L4::Icmpv6 { id, ty, code } => L4::Icmpv6 {
                id,
                ty: if ty == 128 { 129 } else { ty },
                code,
            },
            L4::None => L4::None,
        };
        TupleSpec {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            l4,
        }
    }

    /// `ctnetlink_dump_tuples`: `CTA_TUPLE_IP`, `CTA_TUPLE_PROTO` (the caller adds the zone).
    fn attrs(&self) -> Vec<Vec<u8>> {
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![
                attr(CTA_IP_V4_SRC, &s.octets()),
                attr(CTA_IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![
                attr(CTA_IP_V6_SRC, &s.octets()),
                attr(CTA_IP_V6_DST, &d.octets()),
            ],
            _ => panic!("a tuple has one address family"),
        };
        let mut proto = vec![attr(CTA_PROTO_NUM, &[self.protocol])];
        match self.l4 {
            L4::Ports(s, d) => {
                proto.push(attr(CTA_PROTO_SRC_PORT, &s.to_be_bytes()));
                proto.push(attr(CTA_PROTO_DST_PORT, &d.to_be_bytes()));
            }
            L4::Icmp { id, ty, code } => {
                proto.push(attr(CTA_PROTO_ICMP_ID, &id.to_be_bytes()));
                proto.push(attr(CTA_PROTO_ICMP_TYPE, &[ty]));
                proto.push(attr(CTA_PROTO_ICMP_CODE, &[code]));
            }
            L4::Icmpv6 { id, ty, code } => {
                proto.push(attr(CTA_PROTO_ICMPV6_ID, &id.to_be_bytes()));
                proto.push(attr(CTA_PROTO_ICMPV6_TYPE, &[ty]));
                proto.push(attr(CTA_PROTO_ICMPV6_CODE, &[code]));
            }
            L4::None => {}
        }
        vec![nest(CTA_TUPLE_IP, &ip), nest(CTA_TUPLE_PROTO, &proto)]
    }
}

/// Which directions a conntrack zone applies to (`NF_CT_ZONE_DIR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneDir {
    /// Both: sent as `CTA_ZONE`.
    Both,
    /// Original only: `CTA_TUPLE_ZONE` in the original tuple.
    Orig,
    /// Reply only: `CTA_TUPLE_ZONE` in the reply tuple.
    Reply,
}

/// TCP state (`tcp_to_nlattr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSpec {
    /// `CTA_PROTOINFO_TCP_STATE`.
    pub state: u8,
    /// `CTA_PROTOINFO_TCP_WSCALE_ORIGINAL`.
    pub wscale_orig: u8,
    /// `CTA_PROTOINFO_TCP_WSCALE_REPLY`.
    pub wscale_reply: u8,
    /// `CTA_PROTOINFO_TCP_FLAGS_ORIGINAL` (flags, mask).
    pub flags_orig: (u8, u8),
    /// `CTA_PROTOINFO_TCP_FLAGS_REPLY`.
    pub flags_reply: (u8, u8),
}

/// A conntrack entry and how the kernel would write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// A name for test messages.
    pub name: &'static str,
    /// `AF_INET` or `AF_INET6`.
    pub l3num: u16,
    /// Original direction.
    pub orig: TupleSpec,
    /// Reply direction.
    pub reply: TupleSpec,
    /// A zone other than the default, and its direction.
    pub zone: Option<(u16, ZoneDir)>,
    /// `CTA_ID`.
    pub id: u32,
    /// `CTA_STATUS`.
    pub status: u32,
    /// `CTA_TIMEOUT`.
    pub timeout: u32,
    /// `CTA_PROTOINFO` (TCP).
    pub tcp: Option<TcpSpec>,
    /// Accounting: (packets, bytes) of the original and reply directions.
    pub counters: Option<[(u64, u64); 2]>,
    /// Write a `CTA_COUNTERS_PAD` before each 64-bit counter (architectures without efficient
    /// unaligned access align 64-bit payloads so).
    pub pad_counters: bool,
    /// `CTA_TIMESTAMP`: start, stop (stop only when not 0).
    pub timestamp: Option<(u64, u64)>,
    /// `CTA_HELP` / `CTA_HELP_NAME`.
    pub helper: Option<&'static str>,
    /// `CTA_SECCTX` / `CTA_SECCTX_NAME`.
    pub secctx: Option<&'static str>,
    /// `CTA_TUPLE_MASTER` (expected connections).
    pub master: Option<TupleSpec>,
    /// `CTA_SEQ_ADJ_ORIG` / `_REPLY`: correction position, offset before, offset after.
    pub seq_adj: Option<[[u32; 3]; 2]>,
    /// `CTA_SYNPROXY`: isn, its, tsoff.
    pub synproxy: Option<[u32; 3]>,
    /// `CTA_MARK` (not sent when 0).
    pub mark: u32,
    /// `CTA_LABELS` (not sent when no bit is set): the label numbers.
    pub labels: Vec<u32>,
    /// `CTA_USE` (in ctnetlink's dumps, after `CTA_ID`; not in `NFQA_CT`).
    pub use_count: Option<u32>,
    /// `CTA_SECMARK` (obsolete; old kernels' dumps).
    pub secmark: Option<u32>,
    /// Attributes of a future kernel, appended: (type, payload).
    pub unknown: Vec<(u16, Vec<u8>)>,
}

/// The 16 bytes of `CTA_LABELS` for these label numbers (host-order 32-bit words; see
/// [`libnfq::conntrack::Labels`]).
pub fn label_bytes(labels: &[u32]) -> [u8; 16] {
    let mut words = [0u32; 4];
    for &n in labels {
        words[n as usize / 32] |= 1 << (n % 32);
    }
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    out
}

impl Spec {
    /// The `NFQA_CT` payload, in the kernel's order.
    pub fn build(&self) -> Vec<u8> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let zone_attr = |dir: ZoneDir, ty: u16| match self.zone {
            Some((id, d)) if d == dir => vec![attr(ty, &id.to_be_bytes())],
            _ => vec![],
        };
        let mut orig = self.orig.attrs();
        orig.extend(zone_attr(ZoneDir::Orig, CTA_TUPLE_ZONE));
        out.push(nest(CTA_TUPLE_ORIG, &orig));
        let mut reply = self.reply.attrs();
        reply.extend(zone_attr(ZoneDir::Reply, CTA_TUPLE_ZONE));
        out.push(nest(CTA_TUPLE_REPLY, &reply));
        out.extend(zone_attr(ZoneDir::Both, CTA_ZONE));
        out.push(attr(CTA_ID, &self.id.to_be_bytes()));
        if let Some(use_count) = self.use_count {
            out.push(attr(CTA_USE, &use_count.to_be_bytes()));
        }
        out.push(attr(CTA_STATUS, &self.status.to_be_bytes()));
        out.push(attr(CTA_TIMEOUT, &self.timeout.to_be_bytes()));
        if let Some(tcp) = self.tcp {
            out.push(nest(
                CTA_PROTOINFO,
                &[nest(
                    CTA_PROTOINFO_TCP,
                    &[
                        attr(CTA_PROTOINFO_TCP_STATE, &[tcp.state]),
                        attr(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, &[tcp.wscale_orig]),
                        attr(CTA_PROTOINFO_TCP_WSCALE_REPLY, &[tcp.wscale_reply]),
                        attr(
                            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
                            &[tcp.flags_orig.0, tcp.flags_orig.1],
                        ),
                        attr(
                            CTA_PROTOINFO_TCP_FLAGS_REPLY,
                            &[tcp.flags_reply.0, tcp.flags_reply.1],
                        ),
                    ],
                )],
            ));
        }
        if let Some(counters) = self.counters {
            for (ty, (packets, bytes)) in [CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY]
                .into_iter()
                .zip(counters)
            {
                let mut parts = Vec::new();
                for (cty, value) in [(CTA_COUNTERS_PACKETS, packets), (CTA_COUNTERS_BYTES, bytes)] {
                    if self.pad_counters {
                        parts.push(attr(CTA_COUNTERS_PAD, &[]));
                    }
                    parts.push(attr(cty, &value.to_be_bytes()));
                }
                out.push(nest(ty, &parts));
            }
        }
        if let Some((start, stop)) = self.timestamp {
            let mut parts = vec![attr(CTA_TIMESTAMP_START, &start.to_be_bytes())];
            if stop != 0 {
                parts.push(attr(CTA_TIMESTAMP_STOP, &stop.to_be_bytes()));
            }
            out.push(nest(CTA_TIMESTAMP, &parts));
        }
        if let Some(helper) = self.helper {
            out.push(nest(CTA_HELP, &[string(CTA_HELP_NAME, helper)]));
        }
        if let Some(secctx) = self.secctx {
            out.push(nest(CTA_SECCTX, &[string(CTA_SECCTX_NAME, secctx)]));
        }
        if let Some(master) = self.master {
            out.push(nest(CTA_TUPLE_MASTER, &master.attrs()));
        }
        if let Some(seq_adj) = self.seq_adj {
            for (ty, [pos, before, after]) in [CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY]
                .into_iter()
                .zip(seq_adj)
            {
                out.push(nest(
                    ty,
                    &[
                        attr(CTA_SEQADJ_CORRECTION_POS, &pos.to_be_bytes()),
                        attr(CTA_SEQADJ_OFFSET_BEFORE, &before.to_be_bytes()),
                        attr(CTA_SEQADJ_OFFSET_AFTER, &after.to_be_bytes()),
                    ],
                ));
            }
        }
        if let Some([isn, its, tsoff]) = self.synproxy {
            out.push(nest(
                CTA_SYNPROXY,
                &[
                    attr(CTA_SYNPROXY_ISN, &isn.to_be_bytes()),
                    attr(CTA_SYNPROXY_ITS, &its.to_be_bytes()),
                    attr(CTA_SYNPROXY_TSOFF, &tsoff.to_be_bytes()),
                ],
            ));
        }
        if self.mark != 0 {
            out.push(attr(CTA_MARK, &self.mark.to_be_bytes()));
        }
        if !self.labels.is_empty() {
            out.push(attr(CTA_LABELS, &label_bytes(&self.labels)));
        }
        if let Some(secmark) = self.secmark {
            out.push(attr(CTA_SECMARK, &secmark.to_be_bytes()));
        }
        for (ty, payload) in &self.unknown {
            out.push(attr(*ty, payload));
        }
        out.concat()
    }

    /// [`Self::build`] without the padding of the last attribute (as at the end of a message,
    /// where the kernel may omit it).
    pub fn build_unpadded(&self) -> Vec<u8> {
        let mut bytes = self.build();
        let mut start = 0;
        let mut last_end = 0;
        while start + 4 <= bytes.len() {
            let len = usize::from(u16::from_ne_bytes([bytes[start], bytes[start + 1]]));
            last_end = start + len;
            start += len.next_multiple_of(4);
        }
        bytes.truncate(last_end);
        bytes
    }

    /// A minimal entry: no zone, no optional attribute.
    pub fn minimal(name: &'static str, orig: TupleSpec) -> Spec {
        Spec {
            name,
            l3num: if orig.src.is_ipv4() {
                AF_INET
            } else {
                AF_INET6
            },
            orig,
            reply: orig.reversed(),
            zone: None,
            id: 0x8f3a_1c40,
            status: 0x8, // CONFIRMED
            timeout: 120,
            tcp: None,
            counters: None,
            pad_counters: false,
            timestamp: None,
            helper: None,
            secctx: None,
            master: None,
            seq_adj: None,
            synproxy: None,
            mark: 0,
            labels: Vec::new(),
            use_count: None,
            secmark: None,
            unknown: Vec::new(),
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// The test vectors: TCP, UDP, ICMP and ICMPv6 over IPv4 and IPv6, each with the optional
/// attributes the kernel can add.
pub fn all() -> Vec<Spec> {
    let tcp4 = TupleSpec {
        src: ip("192.0.2.1"),
        dst: ip("198.51.100.7"),
        protocol: 6,
        l4: L4::Ports(40312, 443),
    };
    let udp4 = TupleSpec {
        src: ip("10.0.0.1"),
        dst: ip("10.0.0.2"),
        protocol: 17,
        l4: L4::Ports(5353, 53),
    };
    let icmp4 = TupleSpec {
        src: ip("10.1.2.3"),
        dst: ip("10.3.2.1"),
        protocol: 1,
        l4: L4::Icmp {
            id: 0x1d2c,
            ty: 8,
            code: 0,
        },
    };
    let tcp6 = TupleSpec {
        src: ip("2001:db8::1"),
        dst: ip("2001:db8:ffff::2"),
        protocol: 6,
        l4: L4::Ports(51000, 21),
    };
    let udp6 = TupleSpec {
        src: ip("fe80::1"),
        dst: ip("ff02::fb"),
        protocol: 17,
        l4: L4::Ports(5353, 5353),
    };
    let icmp6 = TupleSpec {
        src: ip("2001:db8::a"),
        dst: ip("2001:db8::b"),
        protocol: 58,
        l4: L4::Icmpv6 {
            id: 0xbeef,
            ty: 128,
            code: 0,
        },
    };
    let tcp_info = TcpSpec {
        state: 3, // ESTABLISHED
        wscale_orig: 7,
        wscale_reply: 9,
        flags_orig: (0x0b, 0x0b),
        flags_reply: (0x03, 0x03),
    };

    let mut out = vec![
        Spec::minimal("udp4 minimal", udp4),
        Spec::minimal("icmp4 echo", icmp4),
        Spec::minimal("icmpv6 echo", icmp6),
        Spec::minimal("udp6 minimal", udp6),
    ];

    let mut s = Spec::minimal("tcp4 established, mark, labels", tcp4);
    s.status = 0xe; // SEEN_REPLY | ASSURED | CONFIRMED
    s.timeout = 431_999;
    s.tcp = Some(tcp_info);
    s.mark = 0xdead_beef;
    s.labels = vec![0, 5, 31, 32, 100, 127];
    out.push(s);

    let mut s = Spec::minimal("tcp6 ftp data: helper, master, secctx, zone", tcp6);
    s.orig.l4 = L4::Ports(20, 51001);
    s.reply = s.orig.reversed();
    s.status = 0x1 | 0x8 | 0x2000; // EXPECTED | CONFIRMED | HELPER
    s.tcp = Some(TcpSpec {
        state: 1, // SYN_SENT
        flags_reply: (0, 0),
        wscale_reply: 0,
        ..tcp_info
    });
    s.helper = Some("ftp");
    s.secctx = Some("system_u:object_r:ftp_packet_t:s0");
    s.master = Some(tcp6);
    s.zone = Some((7, ZoneDir::Both));
    out.push(s);

    let mut s = Spec::minimal("udp4 accounting, timestamps, zone orig", udp4);
    s.counters = Some([(12, 3400), (11, 88_000_000_000)]);
    s.timestamp = Some((1_764_490_000_123_456_789, 0));
    s.zone = Some((42, ZoneDir::Orig));
    s.status = 0x6 | 0x8; // SEEN_REPLY | ASSURED | CONFIRMED
    out.push(s);

    let mut s = Spec::minimal("udp6 padded counters, stopped timestamp, zone reply", udp6);
    s.counters = Some([(1, 76), (0, 0)]);
    s.pad_counters = true;
    s.timestamp = Some((1_700_000_000_000_000_000, 1_700_000_030_000_000_000));
    s.zone = Some((65535, ZoneDir::Reply));
    s.status = 0x208; // CONFIRMED | DYING
    out.push(s);

    let mut s = Spec::minimal("tcp4 NAT with sequence adjustment and synproxy", tcp4);
    s.reply = TupleSpec {
        src: ip("198.51.100.7"),
        dst: ip("203.0.113.9"),
        protocol: 6,
        l4: L4::Ports(443, 61000),
    };
    s.status = 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x2 | 0x4; // ... SRC_NAT, SEQ_ADJUST, *_NAT_DONE
    s.tcp = Some(tcp_info);
    s.seq_adj = Some([[1000, 0, 12], [2000, 0, (-12i32) as u32]]);
    s.synproxy = Some([0x1111_2222, 0x3333_4444, 0x5555_6666]);
    s.mark = 1;
    out.push(s);

    let mut s = Spec::minimal(
        "icmp4 related (error) with unknown future attributes",
        icmp4,
    );
    s.orig.l4 = L4::Icmp {
        id: 0,
        ty: 3,
        code: 3,
    };
    s.reply = s.orig.reversed();
    s.unknown = vec![(27, vec![1, 2, 3, 4]), (4000, vec![]), (300, vec![9; 7])];
    out.push(s);

    let mut s = Spec::minimal("icmpv6 echo with dump attributes (use, secmark)", icmp6);
    s.use_count = Some(2);
    s.secmark = Some(0x4000_0001);
    s.mark = 0x10;
    s.labels = vec![64];
    out.push(s);

    let mut s = Spec::minimal("sctp4 ports", udp4);
    s.orig.protocol = 132;
    s.orig.l4 = L4::Ports(2905, 2905);
    s.reply = s.orig.reversed();
    out.push(s);

    let mut s = Spec::minimal("esp4: protocol number only", udp4);
    s.orig.protocol = 50; // ESP: no tuple_to_nlattr
    s.orig.l4 = L4::None;
    s.reply = s.orig.reversed();
    out.push(s);

    out
}
