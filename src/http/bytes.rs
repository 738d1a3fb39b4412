//! Byte classes and scanning helpers shared by the head parser and the
//! chunked decoder (RFC 9110 tokens and field values, OWS, latin-1).

pub(super) const fn build_tchar_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = matches!(
            b,
            b'0'..=b'9'
                | b'a'..=b'z'
                | b'A'..=b'Z'
                | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        );
        i += 1;
    }
    table
}

pub(super) static TCHAR: [bool; 256] = build_tchar_table();

/// RFC 9110 `tchar`.
#[inline]
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Allowed in a field value: HTAB, SP, VCHAR, obs-text.
#[inline]
pub(super) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

pub(super) const LO_BYTES: u64 = 0x0101_0101_0101_0101;
pub(super) const HI_BITS: u64 = 0x8080_8080_8080_8080;

/// Index of the first `needle` in `hay`, eight bytes at a time.
#[inline]
pub(super) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO_BYTES * u64::from(needle);
    let mut base = 0usize;
    for chunk in hay.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word) ^ pattern;
        // High bit set in the bytes of `x` that are zero; the lowest one is
        // exact (borrows only propagate upwards from a zero byte).
        let hits = x.wrapping_sub(LO_BYTES) & !x & HI_BITS;
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    hay.get(base..)?
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}

/// Check that every byte is `>= lowest` and not DEL, or HTAB when
/// `allow_htab`. Returns `Some(is_ascii)` when valid. Eight bytes at a time
/// on the common all-printable-ASCII path.
#[inline]
pub(super) fn check_text(v: &[u8], lowest: u8, allow_htab: bool) -> Option<bool> {
    let byte_ok = |b: u8| (b >= lowest && b != 0x7f) || (allow_htab && b == b'\t');
    let below = LO_BYTES * u64::from(lowest);
    let mut ascii = true;
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(chunk) {
            let w = u64::from_le_bytes(word);
            // Some byte < lowest (lowest <= 128)?
            let low = w.wrapping_sub(below) & !w & HI_BITS;
            // Some byte >= 0x7f? (A carry only comes out of a 0xff byte,
            // which is itself flagged.)
            let high = (w.wrapping_add(LO_BYTES) | w) & HI_BITS;
            if low | high == 0 {
                continue;
            }
        }
        for &b in chunk {
            if !byte_ok(b) {
                return None;
            }
            ascii &= b < 0x80;
        }
    }
    for &b in chunks.remainder() {
        if !byte_ok(b) {
            return None;
        }
        ascii &= b < 0x80;
    }
    Some(ascii)
}

#[inline]
pub(super) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Latin-1 decode: byte `b` becomes `char::from(b)`. `ascii` tells whether
/// the caller already knows that `bytes` is all ASCII.
pub(super) fn latin1(bytes: &[u8], ascii: bool) -> String {
    let widen = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
    if ascii {
        std::str::from_utf8(bytes).map_or_else(|_| widen(bytes), str::to_owned)
    } else {
        widen(bytes)
    }
}

/// Iterate over the non-empty, OWS-trimmed elements of a comma list.
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}
