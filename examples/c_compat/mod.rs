//! Helpers the ports of C programs share: C library behaviour their output depends on.
//! Included by the port examples with `#[path = "c_compat/mod.rs"] mod c_compat;`.
#![allow(dead_code)] // each port uses its own subset

use std::io;
use std::process::exit;

use libnfq::Error;

/// `perror(what); exit(EXIT_FAILURE);` for a libnfq error.
pub fn die(what: &str, err: &Error) -> ! {
    match err.errno() {
        Some(errno) => die_errno(what, errno),
        // Not a system error (a malformed message, say): libnfq's description.
        None => eprintln!("{what}: {err}"),
    }
    exit(1);
}

/// `errno = errno; perror(what); exit(EXIT_FAILURE);`
pub fn die_errno(what: &str, errno: i32) -> ! {
    eprintln!("{what}: {}", strerror(errno));
    exit(1);
}

/// `strerror(errno)`, without Rust's ` (os error N)` suffix.
pub fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// C's `atoi` as glibc implements it, `(int) strtol(s, NULL, 10)`: leading white space, an
/// optional sign, the digits up to the first non-digit (0 when there are none); `strtol`
/// saturates at the range of `long`, and the conversion to `int` keeps the low 32 bits.
pub fn atoi(s: &[u8]) -> i32 {
    let mut rest = s;
    while let [b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r', tail @ ..] = rest {
        rest = tail;
    }
    let negative = match rest {
        [b'-', tail @ ..] => {
            rest = tail;
            true
        }
        [b'+', tail @ ..] => {
            rest = tail;
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    let mut saturated = false;
    for &c in rest.iter().take_while(|c| c.is_ascii_digit()) {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(c - b'0')))
        {
            Some(v) => value = v,
            None => saturated = true,
        }
    }
    let long = match (saturated, negative) {
        (true, false) => i64::MAX,
        (true, true) => i64::MIN,
        (false, false) => value,
        (false, true) => -value,
    };
    long as i32
}
