//! The chunked request-body decoder.
//!
//! Input: byte 0 seeds the random split sizes, the rest is the body as sent.
//! Properties checked (beyond "no panic"): decoded in one piece, byte by
//! byte, and in random-sized pieces (the worker's reads), the body gives the
//! same decoded bytes, the same number of bytes consumed (nothing after the
//! final CRLF: a pipelined request stays in the buffer), the same finished
//! flag and the same error; the decoded body is never longer than the input
//! consumed; an empty piece changes nothing.
#![no_main]

use ferrocorn::http::{ChunkedDecoder, HttpError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    out: Vec<u8>,
    consumed: usize,
    finished: bool,
    error: Option<HttpError>,
}

/// Feed `input` in pieces whose sizes come from `next_len`, as the worker
/// does: consumed bytes are dropped, the rest is offered again with more.
fn decode_in_pieces(input: &[u8], mut next_len: impl FnMut() -> usize) -> Decoded {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut avail = 0;
    loop {
        avail = (avail + next_len()).min(input.len());
        let before = out.len();
        match d.decode(&input[consumed..avail], &mut out) {
            Ok((used, finished)) => {
                assert!(out.len() - before <= used, "more body out than bytes in");
                assert_eq!(finished, d.is_finished());
                consumed += used;
                assert!(consumed <= avail);
                if finished || avail == input.len() {
                    return Decoded {
                        out,
                        consumed,
                        finished,
                        error: None,
                    };
                }
            }
            Err(e) => {
                // Bytes consumed before a refusal mean nothing: the
                // connection is closed.
                return Decoded {
                    out,
                    consumed: 0,
                    finished: false,
                    error: Some(e),
                };
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode_in_pieces(input, || usize::MAX / 2);
    if whole.finished {
        // The decoder stops at the end of the body.
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (used, fin) = d.decode(&input[..whole.consumed], &mut out).unwrap();
        assert!(fin && used == whole.consumed && out == whole.out);
        assert_eq!(
            d.decode(b"GET / HTTP/1.1\r\n", &mut out).unwrap(),
            (0, true)
        );
    }
    // An empty piece first: no effect.
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    assert_eq!(d.decode(b"", &mut out).unwrap(), (0, false));
    assert!(out.is_empty());

    let by_byte = decode_in_pieces(input, || 1);
    assert_eq!(whole, by_byte, "byte-by-byte decode differs from one piece");

    // xorshift over the seed: piece sizes 0..=16, including empty reads.
    let mut s = u32::from(seed) | 0x100;
    let random = decode_in_pieces(input, || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s % 17) as usize
    });
    assert_eq!(whole, random, "random-split decode differs from one piece");
});
