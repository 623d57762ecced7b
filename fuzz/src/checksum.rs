//! Checksums and IP header facts computed here, independently of `libnfq::pkt` (its Rust) and of
//! libnetfilter_queue (its C): the reference the targets compare against.

/// RFC 1071 one's complement sum of big-endian 16-bit words (odd last byte padded), folded.
pub fn sum16(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => {
                    sum += u32::from(u16::from_be_bytes([hi, b]));
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(hi) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header after the addresses, as RFC 8200 lays it out (32-bit length, three zero
/// bytes, protocol); its sum equals RFC 768's IPv4 layout for lengths below 65536.
fn pseudo_tail(len: u32, protocol: u8) -> [u8; 8] {
    let l = len.to_be_bytes();
    [l[0], l[1], l[2], l[3], 0, 0, 0, protocol]
}

pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The IP header as far as the module must accept it (`IpPacket::parse` succeeds exactly then):
/// `(version, header length, declared length)`.
pub fn ip_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    match b.first()? >> 4 {
        4 => {
            if b.len() < 20 {
                return None;
            }
            let header_len = usize::from(b[0] & 0x0f) * 4;
            let total = usize::from(get16(b, 2));
            (header_len >= 20 && header_len <= b.len() && total >= header_len)
                .then_some((4, header_len, total))
        }
        6 => (b.len() >= 40).then(|| (6, 40, 40 + usize::from(get16(b, 4)))),
        _ => None,
    }
}

/// Sets the IPv4 header checksum of `b` (IHL × 4 bytes, present).
pub fn set_ipv4_checksum(b: &mut [u8]) {
    let header_len = usize::from(b[0] & 0x0f) * 4;
    put16(b, 10, 0);
    let sum = !sum16(&[&b[..header_len]]);
    put16(b, 10, sum);
}

/// Writes the packet's length into its IP header (and for IPv4 recomputes the header checksum):
/// what the mangling functions do after changing the length.
pub fn set_ip_length(b: &mut [u8]) {
    let len = b.len();
    if b[0] >> 4 == 4 {
        put16(b, 2, len as u16);
        set_ipv4_checksum(b);
    } else {
        put16(b, 4, (len - 40) as u16);
    }
}

/// Sets the TCP or UDP checksum of the transport header at `offset`, which runs to the end of
/// `b` (pseudo-header from the IPv4 or fixed IPv6 header). A UDP checksum of 0 becomes `0xffff`.
pub fn set_transport_checksum(b: &mut [u8], offset: usize, protocol: u8) {
    let field = offset + if protocol == 6 { 16 } else { 6 };
    put16(b, field, 0);
    let l4_len = (b.len() - offset) as u32;
    let addrs = if b[0] >> 4 == 4 {
        &b[12..20]
    } else {
        &b[8..40]
    };
    let pseudo = pseudo_tail(l4_len, protocol);
    let mut sum = !sum16(&[addrs, &pseudo, &b[offset..]]);
    if protocol == 17 && sum == 0 {
        sum = 0xffff;
    }
    put16(b, field, sum);
}

/// Whether the transport checksum at `offset` over `l4_len` bytes is right.
pub fn transport_checksum_ok(b: &[u8], offset: usize, l4_len: usize, protocol: u8) -> bool {
    let addrs = if b[0] >> 4 == 4 {
        &b[12..20]
    } else {
        &b[8..40]
    };
    let len = l4_len as u32;
    let pseudo = pseudo_tail(len, protocol);
    sum16(&[addrs, &pseudo, &b[offset..offset + l4_len]]) == 0xffff
}
