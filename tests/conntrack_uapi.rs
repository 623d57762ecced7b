//! The numbers of `libnfq::conntrack::uapi` against the installed kernel headers
//! (`<linux/netfilter/nfnetlink_conntrack.h>` and `<linux/netfilter/nf_conntrack_common.h>`,
//! from linux-libc-dev; `$NFQ_LINUX_INCLUDE_DIR` overrides `/usr/include`). No kernel needed.

use std::collections::HashMap;
use std::path::PathBuf;

use libnfq::conntrack::{uapi::*, Status};

fn header(name: &str) -> String {
    let dir = std::env::var_os("NFQ_LINUX_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    let path = dir.join("linux/netfilter").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (install linux-libc-dev)", path.display()))
}

/// Comments and preprocessor lines removed.
fn strip(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("*/")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Evaluates an enumerator's value: a number, a known name, `a + b`, `a | b`, `(1 << a)`.
fn eval(expr: &str, known: &HashMap<String, i64>) -> Option<i64> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix('(').and_then(|e| e.strip_suffix(')')) {
        return eval(inner, known);
    }
    for (op, f) in [
        ("|", (|a, b| a | b) as fn(i64, i64) -> i64),
        ("+", |a, b| a + b),
        ("<<", |a, b| a << b),
    ] {
        if let Some((a, b)) = expr.split_once(op) {
            return Some(f(eval(a, known)?, eval(b, known)?));
        }
    }
    if let Some(hex) = expr.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    expr.parse().ok().or_else(|| known.get(expr).copied())
}

/// Every enumerator of every `enum` in `source`, with its value.
fn enumerators(source: &str) -> HashMap<String, i64> {
    let text = strip(source);
    let mut known = HashMap::new();
    let mut rest = &text[..];
    while let Some(at) = rest.find("enum ") {
        rest = &rest[at + 5..];
        let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) else {
            break;
        };
        if open > close {
            continue;
        }
        let mut next = 0i64;
        for entry in rest[open + 1..close].split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (name, value) = match entry.split_once('=') {
                Some((name, expr)) => (name.trim(), eval(expr, &known)),
                None => (entry, Some(next)),
            };
            if let Some(value) = value {
                known.insert(name.to_owned(), value);
                next = value + 1;
            }
        }
        rest = &rest[close..];
    }
    known
}

#[test]
fn attribute_numbers_match_the_installed_header() {
    let known = enumerators(&header("nfnetlink_conntrack.h"));
    let ours: &[(&str, u16)] = &[
        ("CTA_UNSPEC", CTA_UNSPEC),
        ("CTA_TUPLE_ORIG", CTA_TUPLE_ORIG),
        ("CTA_TUPLE_REPLY", CTA_TUPLE_REPLY),
        ("CTA_STATUS", CTA_STATUS),
        ("CTA_PROTOINFO", CTA_PROTOINFO),
        ("CTA_HELP", CTA_HELP),
        ("CTA_NAT_SRC", CTA_NAT_SRC),
        ("CTA_TIMEOUT", CTA_TIMEOUT),
        ("CTA_MARK", CTA_MARK),
        ("CTA_COUNTERS_ORIG", CTA_COUNTERS_ORIG),
        ("CTA_COUNTERS_REPLY", CTA_COUNTERS_REPLY),
        ("CTA_USE", CTA_USE),
        ("CTA_ID", CTA_ID),
        ("CTA_NAT_DST", CTA_NAT_DST),
        ("CTA_TUPLE_MASTER", CTA_TUPLE_MASTER),
        ("CTA_SEQ_ADJ_ORIG", CTA_SEQ_ADJ_ORIG),
        ("CTA_SEQ_ADJ_REPLY", CTA_SEQ_ADJ_REPLY),
        ("CTA_SECMARK", CTA_SECMARK),
        ("CTA_ZONE", CTA_ZONE),
        ("CTA_SECCTX", CTA_SECCTX),
        ("CTA_TIMESTAMP", CTA_TIMESTAMP),
        ("CTA_MARK_MASK", CTA_MARK_MASK),
        ("CTA_LABELS", CTA_LABELS),
        ("CTA_LABELS_MASK", CTA_LABELS_MASK),
        ("CTA_SYNPROXY", CTA_SYNPROXY),
        ("CTA_FILTER", CTA_FILTER),
        ("CTA_STATUS_MASK", CTA_STATUS_MASK),
        ("CTA_TUPLE_IP", CTA_TUPLE_IP),
        ("CTA_TUPLE_PROTO", CTA_TUPLE_PROTO),
        ("CTA_TUPLE_ZONE", CTA_TUPLE_ZONE),
        ("CTA_IP_V4_SRC", CTA_IP_V4_SRC),
        ("CTA_IP_V4_DST", CTA_IP_V4_DST),
        ("CTA_IP_V6_SRC", CTA_IP_V6_SRC),
        ("CTA_IP_V6_DST", CTA_IP_V6_DST),
        ("CTA_PROTO_NUM", CTA_PROTO_NUM),
        ("CTA_PROTO_SRC_PORT", CTA_PROTO_SRC_PORT),
        ("CTA_PROTO_DST_PORT", CTA_PROTO_DST_PORT),
        ("CTA_PROTO_ICMP_ID", CTA_PROTO_ICMP_ID),
        ("CTA_PROTO_ICMP_TYPE", CTA_PROTO_ICMP_TYPE),
        ("CTA_PROTO_ICMP_CODE", CTA_PROTO_ICMP_CODE),
        ("CTA_PROTO_ICMPV6_ID", CTA_PROTO_ICMPV6_ID),
        ("CTA_PROTO_ICMPV6_TYPE", CTA_PROTO_ICMPV6_TYPE),
        ("CTA_PROTO_ICMPV6_CODE", CTA_PROTO_ICMPV6_CODE),
        ("CTA_PROTOINFO_TCP", CTA_PROTOINFO_TCP),
        ("CTA_PROTOINFO_DCCP", CTA_PROTOINFO_DCCP),
        ("CTA_PROTOINFO_SCTP", CTA_PROTOINFO_SCTP),
        ("CTA_PROTOINFO_TCP_STATE", CTA_PROTOINFO_TCP_STATE),
        (
            "CTA_PROTOINFO_TCP_WSCALE_ORIGINAL",
            CTA_PROTOINFO_TCP_WSCALE_ORIGINAL,
        ),
        (
            "CTA_PROTOINFO_TCP_WSCALE_REPLY",
            CTA_PROTOINFO_TCP_WSCALE_REPLY,
        ),
        (
            "CTA_PROTOINFO_TCP_FLAGS_ORIGINAL",
            CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
        ),
        (
            "CTA_PROTOINFO_TCP_FLAGS_REPLY",
            CTA_PROTOINFO_TCP_FLAGS_REPLY,
        ),
        ("CTA_COUNTERS_PACKETS", CTA_COUNTERS_PACKETS),
        ("CTA_COUNTERS_BYTES", CTA_COUNTERS_BYTES),
        ("CTA_COUNTERS32_PACKETS", CTA_COUNTERS32_PACKETS),
        ("CTA_COUNTERS32_BYTES", CTA_COUNTERS32_BYTES),
        ("CTA_COUNTERS_PAD", CTA_COUNTERS_PAD),
        ("CTA_TIMESTAMP_START", CTA_TIMESTAMP_START),
        ("CTA_TIMESTAMP_STOP", CTA_TIMESTAMP_STOP),
        ("CTA_TIMESTAMP_PAD", CTA_TIMESTAMP_PAD),
        ("CTA_SEQADJ_CORRECTION_POS", CTA_SEQADJ_CORRECTION_POS),
        ("CTA_SEQADJ_OFFSET_BEFORE", CTA_SEQADJ_OFFSET_BEFORE),
        ("CTA_SEQADJ_OFFSET_AFTER", CTA_SEQADJ_OFFSET_AFTER),
        ("CTA_SYNPROXY_ISN", CTA_SYNPROXY_ISN),
        ("CTA_SYNPROXY_ITS", CTA_SYNPROXY_ITS),
        ("CTA_SYNPROXY_TSOFF", CTA_SYNPROXY_TSOFF),
        ("CTA_HELP_NAME", CTA_HELP_NAME),
        ("CTA_HELP_INFO", CTA_HELP_INFO),
        ("CTA_SECCTX_NAME", CTA_SECCTX_NAME),
    ];
    for &(name, value) in ours {
        assert_eq!(
            known.get(name).copied(),
            Some(i64::from(value)),
            "{name}: libnfq says {value}"
        );
    }
    // A newer header may add attributes (reachable with `Conntrack::attr`); never fewer.
    let header_max = known["__CTA_MAX"] - 1;
    assert!(header_max >= i64::from(CTA_MAX), "CTA_MAX {header_max}");
    assert_eq!(i64::from(NLA_F_NESTED), i64::from(libc::NLA_F_NESTED));
    assert_eq!(
        i64::from(NLA_F_NET_BYTEORDER),
        i64::from(libc::NLA_F_NET_BYTEORDER)
    );
}

#[test]
fn states_and_status_bits_match_the_installed_header() {
    let known = enumerators(&header("nf_conntrack_common.h"));
    for (name, value) in [
        ("IP_CT_ESTABLISHED", IP_CT_ESTABLISHED),
        ("IP_CT_RELATED", IP_CT_RELATED),
        ("IP_CT_NEW", IP_CT_NEW),
        ("IP_CT_IS_REPLY", IP_CT_IS_REPLY),
        ("IP_CT_ESTABLISHED_REPLY", IP_CT_ESTABLISHED_REPLY),
        ("IP_CT_RELATED_REPLY", IP_CT_RELATED_REPLY),
        ("IP_CT_NUMBER", IP_CT_NUMBER),
        ("IP_CT_NEW_REPLY", IP_CT_NEW_REPLY),
    ] {
        assert_eq!(known.get(name).copied(), Some(i64::from(value)), "{name}");
    }
    for (name, flag) in [
        ("IPS_EXPECTED", Status::EXPECTED),
        ("IPS_SEEN_REPLY", Status::SEEN_REPLY),
        ("IPS_ASSURED", Status::ASSURED),
        ("IPS_CONFIRMED", Status::CONFIRMED),
        ("IPS_SRC_NAT", Status::SRC_NAT),
        ("IPS_DST_NAT", Status::DST_NAT),
        ("IPS_SEQ_ADJUST", Status::SEQ_ADJUST),
        ("IPS_SRC_NAT_DONE", Status::SRC_NAT_DONE),
        ("IPS_DST_NAT_DONE", Status::DST_NAT_DONE),
        ("IPS_DYING", Status::DYING),
        ("IPS_FIXED_TIMEOUT", Status::FIXED_TIMEOUT),
        ("IPS_TEMPLATE", Status::TEMPLATE),
        ("IPS_UNTRACKED", Status::UNTRACKED),
        ("IPS_HELPER", Status::HELPER),
        ("IPS_OFFLOAD", Status::OFFLOAD),
        ("IPS_HW_OFFLOAD", Status::HW_OFFLOAD),
    ] {
        assert_eq!(
            known.get(name).copied(),
            Some(i64::from(flag.bits())),
            "{name}"
        );
        let bit = known[&format!("{name}_BIT")];
        assert_eq!(1i64 << bit, i64::from(flag.bits()), "{name}_BIT");
    }
    // Every named bit of this header has a flag.
    let named = known
        .iter()
        .filter(|(n, _)| n.starts_with("IPS_") && n.ends_with("_BIT") && !n.starts_with("__"))
        .count();
    assert_eq!(named, Status::all().iter().count());
}
