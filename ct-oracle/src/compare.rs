//! Field-by-field comparisons: libnfq's view against the oracle, and against a [`Spec`].

use std::fmt::Debug;

use libnfq::conntrack::{uapi::*, Attrs, Conntrack, Tuple};

use crate::vectors::{label_bytes, Spec, TupleSpec, ZoneDir, L4};
use crate::{OracleCt, OracleTuple};

struct Diffs(Vec<String>);

impl Diffs {
    fn eq<T: PartialEq + Debug>(&mut self, what: &str, ours: T, theirs: T) {
        if ours != theirs {
            self.0
                .push(format!("{what}: libnfq {ours:?}, expected {theirs:?}"));
        }
    }
}

fn tuple_vs_oracle(
    d: &mut Diffs,
    what: &str,
    ours: Option<Tuple<'_>>,
    theirs: &Option<OracleTuple>,
) {
    let (ours, theirs) = match (ours, theirs) {
        (None, None) => return,
        (Some(o), Some(t)) => (o, t),
        (o, t) => {
            d.eq(what, o.is_some(), t.is_some());
            return;
        }
    };
    d.eq(&format!("{what}.src"), ours.src(), theirs.src);
    d.eq(&format!("{what}.dst"), ours.dst(), theirs.dst);
    d.eq(
        &format!("{what}.protocol"),
        ours.protocol(),
        theirs.protocol,
    );
    // The oracle stores a port and the ICMP field(s) that share its union in one place.
    if !theirs.src_port_shadowed {
        d.eq(
            &format!("{what}.src_port"),
            ours.src_port(),
            theirs.src_port,
        );
    }
    if !theirs.dst_port_shadowed {
        d.eq(
            &format!("{what}.dst_port"),
            ours.dst_port(),
            theirs.dst_port,
        );
    }
    d.eq(&format!("{what}.icmp_id"), ours.icmp_id(), theirs.icmp_id);
    d.eq(
        &format!("{what}.icmp_type"),
        ours.icmp_type(),
        theirs.icmp_type,
    );
    d.eq(
        &format!("{what}.icmp_code"),
        ours.icmp_code(),
        theirs.icmp_code,
    );
}

/// The raw payload of the last `inner` attribute inside the last top-level `outer` one.
fn raw_inner<'a>(ct: &Conntrack<'a>, outer: u16, inner: u16) -> Option<&'a [u8]> {
    Attrs::new(ct.attr(outer)?)
        .filter(|&(t, _)| t == inner)
        .last()
        .map(|(_, p)| p)
}

/// A string attribute against the oracle's copy. The library reads strings up to a NUL (past
/// the attribute when it has none; the shim keeps zeros after the input) and keeps at most
/// `cap` bytes of a helper name.
fn string_vs_oracle(
    d: &mut Diffs,
    what: &str,
    ours: Option<&[u8]>,
    raw: Option<&[u8]>,
    theirs: &Option<(Vec<u8>, bool)>,
    cap: usize,
) {
    match (ours, theirs) {
        (None, None) => {}
        (Some(ours), Some((theirs, cut))) => {
            let terminated = raw.is_some_and(|r| r.contains(&0));
            let ours = &ours[..ours.len().min(cap)];
            let consistent = if terminated && !cut {
                ours == &theirs[..]
            } else {
                theirs.starts_with(ours) || ours.starts_with(theirs)
            };
            if !consistent {
                d.0.push(format!("{what}: libnfq {ours:?}, oracle {theirs:?}"));
            }
        }
        (o, t) => d.eq(what, o.is_some(), t.is_some()),
    }
}

/// Where libnfq's view `ct` and the oracle's answer for the same bytes disagree (empty when
/// they agree on every field both decode).
pub fn against_oracle(ct: &Conntrack<'_>, oracle: &OracleCt) -> Vec<String> {
    let mut d = Diffs(Vec::new());
    tuple_vs_oracle(&mut d, "orig", ct.orig(), &oracle.orig);
    tuple_vs_oracle(&mut d, "reply", ct.reply(), &oracle.reply);
    tuple_vs_oracle(&mut d, "master", ct.master(), &oracle.master);
    d.eq("status", ct.status().map(|s| s.bits()), oracle.status);
    d.eq("mark", ct.mark(), oracle.mark);
    d.eq("id", ct.id(), oracle.id);
    d.eq("timeout", ct.timeout(), oracle.timeout);
    d.eq("use", ct.use_count(), oracle.use_count);
    d.eq("secmark", ct.secmark(), oracle.secmark);
    d.eq("zone", ct.zone(), oracle.zone);
    let tcp = ct.tcp();
    d.eq("tcp.state", tcp.and_then(|t| t.state()), oracle.tcp_state);
    d.eq(
        "tcp.wscale_orig",
        tcp.and_then(|t| t.wscale_orig()),
        oracle.tcp_wscale_orig,
    );
    d.eq(
        "tcp.wscale_reply",
        tcp.and_then(|t| t.wscale_reply()),
        oracle.tcp_wscale_reply,
    );
    d.eq(
        "tcp.flags_orig",
        tcp.and_then(|t| t.flags_orig()).map(|f| (f.flags, f.mask)),
        oracle.tcp_flags_orig,
    );
    d.eq(
        "tcp.flags_reply",
        tcp.and_then(|t| t.flags_reply()).map(|f| (f.flags, f.mask)),
        oracle.tcp_flags_reply,
    );
    let orig = ct.counters_orig();
    let reply = ct.counters_reply();
    d.eq(
        "packets_orig",
        orig.and_then(|c| c.packets),
        oracle.packets_orig,
    );
    d.eq("bytes_orig", orig.and_then(|c| c.bytes), oracle.bytes_orig);
    d.eq(
        "packets_reply",
        reply.and_then(|c| c.packets),
        oracle.packets_reply,
    );
    d.eq(
        "bytes_reply",
        reply.and_then(|c| c.bytes),
        oracle.bytes_reply,
    );
    d.eq(
        "timestamp_start",
        ct.timestamp_start(),
        oracle.timestamp_start,
    );
    d.eq("timestamp_stop", ct.timestamp_stop(), oracle.timestamp_stop);
    string_vs_oracle(
        &mut d,
        "helper",
        ct.helper_name(),
        raw_inner(ct, CTA_HELP, CTA_HELP_NAME),
        &oracle.helper,
        15,
    );
    string_vs_oracle(
        &mut d,
        "secctx",
        ct.secctx(),
        raw_inner(ct, CTA_SECCTX, CTA_SECCTX_NAME),
        &oracle.secctx,
        usize::MAX,
    );
    // Labels: the same set of label numbers (the library keeps no bitmask for an empty
    // attribute, which sets no label).
    let ours: Vec<u32> = ct.labels().map(|l| l.iter().collect()).unwrap_or_default();
    let (theirs, count) = oracle
        .labels
        .as_ref()
        .map(|l| (l.set.clone(), l.count as usize))
        .unwrap_or_default();
    d.eq(
        "labels",
        ours.iter()
            .copied()
            .filter(|&n| n < 2048)
            .collect::<Vec<_>>(),
        theirs,
    );
    d.eq("labels.count", ours.len(), count);
    d.eq(
        "labels present",
        ct.labels().is_some_and(|l| !l.as_bytes().is_empty()),
        oracle.labels.is_some(),
    );
    d.0
}

fn tuple_vs_spec(d: &mut Diffs, what: &str, ours: Option<Tuple<'_>>, spec: &TupleSpec) {
    let Some(ours) = ours else {
        d.0.push(format!("{what}: missing"));
        return;
    };
    d.eq(&format!("{what}.src"), ours.src(), Some(spec.src));
    d.eq(&format!("{what}.dst"), ours.dst(), Some(spec.dst));
    d.eq(
        &format!("{what}.protocol"),
        ours.protocol(),
        Some(spec.protocol),
    );
    let (ports, icmp) = match spec.l4 {
        L4::Ports(s, dp) => (Some((s, dp)), None),
        L4::Icmp { id, ty, code } | L4::Icmpv6 { id, ty, code } => (None, Some((id, ty, code))),
        L4::None => (None, None),
    };
    d.eq(
        &format!("{what}.ports"),
        ours.src_port().zip(ours.dst_port()),
        ports,
    );
    let icmp_ours = match (ours.icmp_id(), ours.icmp_type(), ours.icmp_code()) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => None,
    };
    d.eq(&format!("{what}.icmp"), icmp_ours, icmp);
}

/// Where libnfq's view differs from the values the spec encodes (empty when it matches).
pub fn against_spec(ct: &Conntrack<'_>, spec: &Spec) -> Vec<String> {
    let mut d = Diffs(Vec::new());
    tuple_vs_spec(&mut d, "orig", ct.orig(), &spec.orig);
    tuple_vs_spec(&mut d, "reply", ct.reply(), &spec.reply);
    match &spec.master {
        Some(m) => tuple_vs_spec(&mut d, "master", ct.master(), m),
        None => d.eq("master", ct.master().is_some(), false),
    }
    let zone = |dir| spec.zone.filter(|z| z.1 == dir).map(|z| z.0);
    d.eq("zone", ct.zone(), zone(ZoneDir::Both));
    d.eq(
        "orig.zone",
        ct.orig().and_then(|t| t.zone()),
        zone(ZoneDir::Orig),
    );
    d.eq(
        "reply.zone",
        ct.reply().and_then(|t| t.zone()),
        zone(ZoneDir::Reply),
    );
    d.eq("id", ct.id(), Some(spec.id));
    d.eq("status", ct.status().map(|s| s.bits()), Some(spec.status));
    d.eq("timeout", ct.timeout(), Some(spec.timeout));
    d.eq("mark", ct.mark(), (spec.mark != 0).then_some(spec.mark));
    d.eq("use", ct.use_count(), spec.use_count);
    d.eq("secmark", ct.secmark(), spec.secmark);
    let tcp = ct.tcp().map(|t| {
        (
            t.state(),
            t.wscale_orig(),
            t.wscale_reply(),
            t.flags_orig().map(|f| (f.flags, f.mask)),
            t.flags_reply().map(|f| (f.flags, f.mask)),
        )
    });
    d.eq(
        "tcp",
        tcp,
        spec.tcp.map(|t| {
            (
                Some(t.state),
                Some(t.wscale_orig),
                Some(t.wscale_reply),
                Some(t.flags_orig),
                Some(t.flags_reply),
            )
        }),
    );
    let counters = |c: Option<libnfq::conntrack::Counters>| c.map(|c| (c.packets, c.bytes));
    d.eq(
        "counters",
        (counters(ct.counters_orig()), counters(ct.counters_reply())),
        match spec.counters {
            Some([(p0, b0), (p1, b1)]) => (Some((Some(p0), Some(b0))), Some((Some(p1), Some(b1)))),
            None => (None, None),
        },
    );
    d.eq(
        "timestamps",
        (ct.timestamp_start(), ct.timestamp_stop()),
        match spec.timestamp {
            Some((start, stop)) => (Some(start), (stop != 0).then_some(stop)),
            None => (None, None),
        },
    );
    d.eq("helper", ct.helper_name(), spec.helper.map(str::as_bytes));
    d.eq("secctx", ct.secctx(), spec.secctx.map(str::as_bytes));
    d.eq(
        "labels",
        ct.labels().map(|l| l.iter().collect::<Vec<_>>()),
        (!spec.labels.is_empty()).then(|| spec.labels.clone()),
    );
    if !spec.labels.is_empty() {
        d.eq(
            "labels bytes",
            ct.labels().map(|l| l.as_bytes().to_vec()),
            Some(label_bytes(&spec.labels).to_vec()),
        );
    }
    for (ty, payload) in &spec.unknown {
        d.eq(&format!("attr({ty})"), ct.attr(*ty), Some(&payload[..]));
    }
    d.0
}
