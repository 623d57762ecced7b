//! Netlink messages built by hand, laid out as the kernel sends them, for tests that dispatch
//! constructed datagrams (`Handle::dispatch_for_fuzzing`, feature `fuzzing`).

use libnfq::{nfqa, sys};

/// One netlink attribute: length, type, `payload`, zero padding to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().div_ceil(4) * 4, 0);
    out
}

/// A nested attribute (`NLA_F_NESTED` set) holding `inner`.
pub fn nested(kind: u16, inner: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | libc::NLA_F_NESTED as u16, &inner.concat())
}

/// A packet message as the kernel lays it out: nlmsghdr, nfgenmsg (`family`, `queue`), the
/// packet header (`id`, hw protocol 0x0800, `hook`), then `attrs`.
pub fn packet_message(family: u8, queue: u16, hook: u8, id: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut hdr = id.to_be_bytes().to_vec();
    hdr.extend_from_slice(&0x0800u16.to_be_bytes());
    hdr.push(hook);
    let mut body = attr(nfqa::PACKET_HDR, &hdr);
    body.extend(attrs.concat());
    let len = 16 + 4 + body.len();
    let msg_type = ((sys::NFNL_SUBSYS_QUEUE << 8) | sys::NFQNL_MSG_PACKET) as u16;
    let mut bytes = (len as u32).to_ne_bytes().to_vec();
    bytes.extend_from_slice(&msg_type.to_ne_bytes());
    bytes.extend_from_slice(&[0; 10]);
    bytes.extend_from_slice(&[family, 0]);
    bytes.extend_from_slice(&queue.to_be_bytes());
    bytes.extend(body);
    bytes
}
