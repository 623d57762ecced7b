//! Test-only crate: an independent oracle for libnfq's conntrack decoder
//! ([`libnfq::conntrack`]).
//!
//! - [`parse`]: libnetfilter_conntrack's own parser (`nfct_payload_parse`, then
//!   `nfct_get_attr*`) run on a byte layout, through a small C shim (`shim/ct_oracle.c`); the
//!   answer is a plain [`OracleCt`], or the fact that the library refused the bytes.
//! - [`vectors`]: `NFQA_CT` payloads laid out as the kernel's `ctnetlink_glue_build` writes
//!   them (TCP, UDP, ICMP, ICMPv6 over IPv4 and IPv6, with and without optional attributes),
//!   each with the values it encodes.
//! - [`compare`]: whether libnfq's view and the oracle's answer agree, field by field.
//! - [`fuzz`]: a seeded generator, mutations, and [`fuzz::exercise`], the body of a fuzz target
//!   (every accessor on arbitrary bytes; every slice must lie inside them).
//!
//! libnetfilter_conntrack 1.0.9 calls `exit(1)` when an attribute fails its validation, so each
//! [`parse`] runs the library in a forked child process.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod compare;
pub mod fuzz;
pub mod vectors;

mod ffi {
    //! Mirrors `shim/ct_oracle.h`.

    pub const T_PRESENT: u32 = 1 << 0;
    pub const T_SRC4: u32 = 1 << 1;
    pub const T_DST4: u32 = 1 << 2;
    pub const T_SRC6: u32 = 1 << 3;
    pub const T_DST6: u32 = 1 << 4;
    pub const T_L4PROTO: u32 = 1 << 5;
    pub const T_SPORT: u32 = 1 << 6;
    pub const T_DPORT: u32 = 1 << 7;
    pub const T_ICMP_ID: u32 = 1 << 8;
    pub const T_ICMP_TYPE: u32 = 1 << 9;
    pub const T_ICMP_CODE: u32 = 1 << 10;

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Tuple {
        pub set: u32,
        pub src4: [u8; 4],
        pub dst4: [u8; 4],
        pub src6: [u8; 16],
        pub dst6: [u8; 16],
        pub sport: u16,
        pub dport: u16,
        pub icmp_id: u16,
        pub l4proto: u8,
        pub icmp_type: u8,
        pub icmp_code: u8,
        pub pad: [u8; 3],
    }

    pub const STATUS: u64 = 1 << 0;
    pub const MARK: u64 = 1 << 1;
    pub const ID: u64 = 1 << 2;
    pub const TIMEOUT: u64 = 1 << 3;
    pub const USE: u64 = 1 << 4;
    pub const SECMARK: u64 = 1 << 5;
    pub const ZONE: u64 = 1 << 6;
    pub const TCP_STATE: u64 = 1 << 7;
    pub const TCP_WSCALE_ORIG: u64 = 1 << 8;
    pub const TCP_WSCALE_REPL: u64 = 1 << 9;
    pub const TCP_FLAGS_ORIG: u64 = 1 << 10;
    pub const TCP_FLAGS_REPL: u64 = 1 << 11;
    pub const PACKETS_ORIG: u64 = 1 << 12;
    pub const BYTES_ORIG: u64 = 1 << 13;
    pub const PACKETS_REPL: u64 = 1 << 14;
    pub const BYTES_REPL: u64 = 1 << 15;
    pub const TS_START: u64 = 1 << 16;
    pub const TS_STOP: u64 = 1 << 17;
    pub const HELPER: u64 = 1 << 18;
    pub const SECCTX: u64 = 1 << 19;
    pub const LABELS: u64 = 1 << 20;

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Result {
        pub set: u64,
        pub packets_orig: u64,
        pub bytes_orig: u64,
        pub packets_repl: u64,
        pub bytes_repl: u64,
        pub ts_start: u64,
        pub ts_stop: u64,
        pub status: u32,
        pub mark: u32,
        pub id: u32,
        pub timeout: u32,
        pub use_: u32,
        pub secmark: u32,
        pub labels_maxbit: u32,
        pub labels_count: u32,
        pub zone: u16,
        pub tcp_state: u8,
        pub tcp_wscale_orig: u8,
        pub tcp_wscale_repl: u8,
        pub tcp_flags_orig: u8,
        pub tcp_mask_orig: u8,
        pub tcp_flags_repl: u8,
        pub tcp_mask_repl: u8,
        pub helper_truncated: u8,
        pub secctx_truncated: u8,
        pub pad: [u8; 5],
        pub labels: [u8; 256],
        pub helper: [u8; 64],
        pub secctx: [u8; 256],
        pub orig: Tuple,
        pub reply: Tuple,
        pub master: Tuple,
    }

    pub const ACCEPTED: i32 = 0;
    pub const REJECTED: i32 = 1;
    pub const CRASHED: i32 = 2;

    extern "C" {
        pub fn cto_parse(data: *const u8, len: usize, l3num: u16, out: *mut Result) -> i32;
        pub fn cto_result_size() -> usize;
    }
}

/// What libnetfilter_conntrack made of a byte layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Oracle {
    /// `nfct_payload_parse` accepted the bytes; what `nfct_get_attr*` returned.
    Accepted(Box<OracleCt>),
    /// The library refused the bytes (its validation failed: `exit(1)`, or `-1`).
    Rejected,
    /// The library's process died of a signal while parsing.
    Crashed,
}

/// One tuple as libnetfilter_conntrack holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleTuple {
    /// Source address (`ATTR_ORIG_IPV6_SRC` if set, else `ATTR_ORIG_IPV4_SRC`: the library
    /// stores both in one union, the IPv6 one written last).
    pub src: Option<IpAddr>,
    /// Destination address (same rule).
    pub dst: Option<IpAddr>,
    /// `ATTR_ORIG_L4PROTO`.
    pub protocol: Option<u8>,
    /// `ATTR_ORIG_PORT_SRC`. `None` also when [`Self::src_port_shadowed`].
    pub src_port: Option<u16>,
    /// `ATTR_ORIG_PORT_DST`. `None` also when [`Self::dst_port_shadowed`].
    pub dst_port: Option<u16>,
    /// The library keeps the source port and the ICMP id in one union, written id last: when
    /// both were present, the port it returns is the id, and the port is unknown here.
    pub src_port_shadowed: bool,
    /// Same for the destination port and the ICMP type and code.
    pub dst_port_shadowed: bool,
    /// `ATTR_ICMP_ID` (ICMP or ICMPv6).
    pub icmp_id: Option<u16>,
    /// `ATTR_ICMP_TYPE`.
    pub icmp_type: Option<u8>,
    /// `ATTR_ICMP_CODE`.
    pub icmp_code: Option<u8>,
}

/// Everything read back from one `nfct_payload_parse`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleCt {
    /// `CTA_TUPLE_ORIG`, when present.
    pub orig: Option<OracleTuple>,
    /// `CTA_TUPLE_REPLY`, when present.
    pub reply: Option<OracleTuple>,
    /// `CTA_TUPLE_MASTER`, when present.
    pub master: Option<OracleTuple>,
    /// `ATTR_STATUS`.
    pub status: Option<u32>,
    /// `ATTR_MARK`.
    pub mark: Option<u32>,
    /// `ATTR_ID`.
    pub id: Option<u32>,
    /// `ATTR_TIMEOUT`.
    pub timeout: Option<u32>,
    /// `ATTR_USE`.
    pub use_count: Option<u32>,
    /// `ATTR_SECMARK`.
    pub secmark: Option<u32>,
    /// `ATTR_ZONE`.
    pub zone: Option<u16>,
    /// `ATTR_TCP_STATE`.
    pub tcp_state: Option<u8>,
    /// `ATTR_TCP_WSCALE_ORIG`.
    pub tcp_wscale_orig: Option<u8>,
    /// `ATTR_TCP_WSCALE_REPL`.
    pub tcp_wscale_reply: Option<u8>,
    /// `ATTR_TCP_FLAGS_ORIG`, `ATTR_TCP_MASK_ORIG`.
    pub tcp_flags_orig: Option<(u8, u8)>,
    /// `ATTR_TCP_FLAGS_REPL`, `ATTR_TCP_MASK_REPL`.
    pub tcp_flags_reply: Option<(u8, u8)>,
    /// `ATTR_ORIG_COUNTER_PACKETS`.
    pub packets_orig: Option<u64>,
    /// `ATTR_ORIG_COUNTER_BYTES`.
    pub bytes_orig: Option<u64>,
    /// `ATTR_REPL_COUNTER_PACKETS`.
    pub packets_reply: Option<u64>,
    /// `ATTR_REPL_COUNTER_BYTES`.
    pub bytes_reply: Option<u64>,
    /// `ATTR_TIMESTAMP_START`.
    pub timestamp_start: Option<u64>,
    /// `ATTR_TIMESTAMP_STOP`.
    pub timestamp_stop: Option<u64>,
    /// `ATTR_HELPER_NAME` (the library keeps at most 15 bytes), and whether this copy was cut.
    pub helper: Option<(Vec<u8>, bool)>,
    /// `ATTR_SECCTX`, and whether this copy was cut (at 255 bytes).
    pub secctx: Option<(Vec<u8>, bool)>,
    /// `ATTR_CONNLABELS`: the set labels below 2048, their total number, and the bitmask's
    /// highest bit number.
    pub labels: Option<OracleLabels>,
}

/// `ATTR_CONNLABELS` as libnetfilter_conntrack's bitmask holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleLabels {
    /// The set labels below 2048, in increasing order.
    pub set: Vec<u32>,
    /// How many labels are set in all.
    pub count: u32,
    /// `nfct_bitmask_maxbit`.
    pub max_bit: u32,
}

fn tuple(t: &ffi::Tuple) -> Option<OracleTuple> {
    use ffi::*;
    let has = |bit: u32| t.set & bit != 0;
    if !has(T_PRESENT) {
        return None;
    }
    let addr = |v6: u32, v4: u32, b6: [u8; 16], b4: [u8; 4]| {
        if has(v6) {
            Some(IpAddr::from(Ipv6Addr::from(b6)))
        } else if has(v4) {
            Some(IpAddr::from(Ipv4Addr::from(b4)))
        } else {
            None
        }
    };
    let src_port_shadowed = has(T_SPORT) && has(T_ICMP_ID);
    let dst_port_shadowed = has(T_DPORT) && (has(T_ICMP_TYPE) || has(T_ICMP_CODE));
    Some(OracleTuple {
        src: addr(T_SRC6, T_SRC4, t.src6, t.src4),
        dst: addr(T_DST6, T_DST4, t.dst6, t.dst4),
        protocol: has(T_L4PROTO).then_some(t.l4proto),
        src_port: (has(T_SPORT) && !src_port_shadowed).then_some(t.sport),
        dst_port: (has(T_DPORT) && !dst_port_shadowed).then_some(t.dport),
        src_port_shadowed,
        dst_port_shadowed,
        icmp_id: has(T_ICMP_ID).then_some(t.icmp_id),
        icmp_type: has(T_ICMP_TYPE).then_some(t.icmp_type),
        icmp_code: has(T_ICMP_CODE).then_some(t.icmp_code),
    })
}

fn c_string(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

fn convert(r: &ffi::Result) -> OracleCt {
    use ffi::*;
    let has = |bit: u64| r.set & bit != 0;
    OracleCt {
        orig: tuple(&r.orig),
        reply: tuple(&r.reply),
        master: tuple(&r.master),
        status: has(STATUS).then_some(r.status),
        mark: has(MARK).then_some(r.mark),
        id: has(ID).then_some(r.id),
        timeout: has(TIMEOUT).then_some(r.timeout),
        use_count: has(USE).then_some(r.use_),
        secmark: has(SECMARK).then_some(r.secmark),
        zone: has(ZONE).then_some(r.zone),
        tcp_state: has(TCP_STATE).then_some(r.tcp_state),
        tcp_wscale_orig: has(TCP_WSCALE_ORIG).then_some(r.tcp_wscale_orig),
        tcp_wscale_reply: has(TCP_WSCALE_REPL).then_some(r.tcp_wscale_repl),
        tcp_flags_orig: has(TCP_FLAGS_ORIG).then_some((r.tcp_flags_orig, r.tcp_mask_orig)),
        tcp_flags_reply: has(TCP_FLAGS_REPL).then_some((r.tcp_flags_repl, r.tcp_mask_repl)),
        packets_orig: has(PACKETS_ORIG).then_some(r.packets_orig),
        bytes_orig: has(BYTES_ORIG).then_some(r.bytes_orig),
        packets_reply: has(PACKETS_REPL).then_some(r.packets_repl),
        bytes_reply: has(BYTES_REPL).then_some(r.bytes_repl),
        timestamp_start: has(TS_START).then_some(r.ts_start),
        timestamp_stop: has(TS_STOP).then_some(r.ts_stop),
        helper: has(HELPER).then(|| (c_string(&r.helper), r.helper_truncated != 0)),
        secctx: has(SECCTX).then(|| (c_string(&r.secctx), r.secctx_truncated != 0)),
        labels: has(LABELS).then(|| OracleLabels {
            set: (0..2048u32)
                .filter(|&n| r.labels[n as usize / 8] & (1 << (n % 8)) != 0)
                .collect(),
            count: r.labels_count,
            max_bit: r.labels_maxbit,
        }),
    }
}

/// Runs libnetfilter_conntrack's `nfct_payload_parse(bytes, len, l3num, ct)` on `bytes` (the
/// payload of an `NFQA_CT` attribute) in a child process and reads back what it decoded.
///
/// `l3num` is the layer-3 family (`AF_INET`, `AF_INET6`). Each tuple is also parsed alone
/// (its bytes as the only `CTA_TUPLE_ORIG`), because the library reads the ICMP fields of
/// every tuple into the attributes of the original one.
///
/// # Panics
///
/// When the child process cannot be created or waited for, or ends in a way the shim does not
/// produce (a bug of this crate, not an answer of the library).
pub fn parse(bytes: &[u8], l3num: u16) -> Oracle {
    // SAFETY: no arguments; returns a constant.
    let size = unsafe { ffi::cto_result_size() };
    assert_eq!(
        size,
        std::mem::size_of::<ffi::Result>(),
        "shim/ct_oracle.h and ffi::Result differ"
    );
    let mut out = std::mem::MaybeUninit::<ffi::Result>::zeroed();
    // SAFETY: `bytes` is valid for `bytes.len()` bytes; `out` points to writable memory of the
    // struct's size (checked above); the shim only reads `bytes` and writes `out`.
    let ret = unsafe { ffi::cto_parse(bytes.as_ptr(), bytes.len(), l3num, out.as_mut_ptr()) };
    match ret {
        ffi::ACCEPTED => {
            // SAFETY: zero-initialised, then filled by the shim; every field is an integer or
            // an integer array, for which any bit pattern is valid.
            let result = unsafe { out.assume_init() };
            Oracle::Accepted(Box::new(convert(&result)))
        }
        ffi::REJECTED => Oracle::Rejected,
        ffi::CRASHED => Oracle::Crashed,
        other => panic!("ct-oracle: the oracle's child process failed ({other})"),
    }
}

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
