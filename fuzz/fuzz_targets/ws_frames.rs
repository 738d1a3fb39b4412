//! The WebSocket frame decoder (client frames, with and without
//! permessage-deflate), as the ASGI worker feeds it.
//!
//! Input: byte 0 picks the configuration (bit 0: deflate negotiated, bit
//! 1: client_no_context_takeover, bits 2-3: the message size limit) and
//! seeds the random split sizes; the rest is what the client sends.
//! Properties checked (beyond "no panic"): the events and the first error
//! are the same whether the input arrives in one piece, byte by byte, or in
//! random-sized pieces; after an error the decoder keeps returning it; a
//! text message is valid UTF-8 (it is a `String`), no message is larger
//! than the limit, control payloads are at most 125 bytes, and an error's
//! close code is one a server may send (1002, 1007 or 1009).
#![no_main]

use ferrocorn::ws::{Decoder, DeflateParams, Event, WsError};
use libfuzzer_sys::fuzz_target;

fn limit(cfg: u8) -> usize {
    [16, 1000, 70_000, 1 << 20][((cfg >> 2) & 3) as usize]
}

fn decoder(cfg: u8) -> Decoder {
    let deflate = (cfg & 1 == 1).then(|| DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: cfg & 2 == 2,
        server_max_window_bits: None,
    });
    Decoder::new(limit(cfg), deflate.as_ref())
}

/// Every event, then the error (if any), feeding `input` in pieces.
fn run(cfg: u8, input: &[u8], mut next_len: impl FnMut() -> usize) -> (Vec<Event>, Option<WsError>) {
    let mut d = decoder(cfg);
    let mut events = Vec::new();
    let mut at = 0;
    loop {
        let n = next_len().min(input.len() - at);
        d.feed(&input[at..at + n]);
        at += n;
        loop {
            match d.next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.next_event(), Err(e.clone()), "an error must stay");
                    return (events, Some(e));
                }
            }
        }
        if at == input.len() {
            return (events, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, input)) = data.split_first() else {
        return;
    };
    let whole = run(cfg, input, || usize::MAX);
    let bytes = run(cfg, input, || 1);
    assert_eq!(whole, bytes, "byte-by-byte differs from one piece");
    let mut seed = u32::from(cfg) | 1;
    let random = run(cfg, input, || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 23) as usize
    });
    assert_eq!(whole, random, "random pieces differ from one piece");
    for ev in &whole.0 {
        match ev {
            Event::Text(t) => assert!(t.len() <= limit(cfg)),
            Event::Binary(b) => assert!(b.len() <= limit(cfg)),
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close { reason, .. } => assert!(reason.len() <= 123),
        }
    }
    if let Some(e) = &whole.1 {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
    }
});
