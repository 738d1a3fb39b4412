//! permessage-deflate (RFC 7692): the negotiated parameters and the
//! per-connection compressor / decompressor (raw deflate via flate2, sync
//! flush, the `00 00 ff ff` tail stripped on send and appended on receive,
//! context reset per message when no_context_takeover applies).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::WsError;

/// The deflate tail every sync-flushed message ends with (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Negotiated permessage-deflate parameters, as they appear in the
/// server's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message (so our
    /// decompressor may reset too).
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` echoed in the response (only ever 15: the
    /// miniz_oxide backend cannot compress with a smaller window).
    pub server_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` response value.
    pub fn response_value(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        s
    }
}

/// Compresses server messages.
pub(crate) struct Deflater {
    c: Compress,
    reset: bool,
}

impl Deflater {
    pub(crate) fn new(params: &DeflateParams) -> Self {
        Deflater {
            c: Compress::new(Compression::fast(), false),
            reset: params.server_no_context_takeover,
        }
    }

    /// Appends the compressed form of `data` (tail stripped) to `out`.
    pub(crate) fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let base_in = self.c.total_in();
        loop {
            out.reserve(data.len() / 2 + 64);
            let done = (self.c.total_in() - base_in) as usize;
            let rest = data.get(done..).unwrap_or(&[]);
            if self.c.compress_vec(rest, out, FlushCompress::Sync).is_err() {
                // Cannot happen with a valid stream; leave what we have.
                break;
            }
            let consumed = (self.c.total_in() - base_in) as usize;
            if consumed >= data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() >= start + 4 && out[out.len() - 4..] == TAIL {
            out.truncate(out.len() - 4);
        }
        if self.reset {
            self.c.reset();
        }
    }
}

/// Decompresses client messages with a bound on the output size.
pub(crate) struct Inflater {
    d: Decompress,
    reset: bool,
    ended: bool,
}

impl Inflater {
    pub(crate) fn new(params: &DeflateParams) -> Self {
        Inflater {
            d: Decompress::new(false),
            reset: params.client_no_context_takeover,
            ended: false,
        }
    }

    /// Inflates one piece of a message's compressed payload into `out`,
    /// failing once `out` would grow past `limit` bytes.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), WsError> {
        let mut consumed = 0usize;
        while !self.ended {
            let room = limit.saturating_sub(out.len()).saturating_add(1);
            out.reserve(room.clamp(1, 64 * 1024));
            let (in0, out0) = (self.d.total_in(), out.len());
            let rest = input.get(consumed..).unwrap_or(&[]);
            let status = self
                .d
                .decompress_vec(rest, out, FlushDecompress::Sync)
                .map_err(|_| WsError::Protocol("invalid compressed data"))?;
            consumed += (self.d.total_in() - in0) as usize;
            if out.len() > limit {
                return Err(WsError::TooBig(limit));
            }
            match status {
                Status::StreamEnd => self.ended = true,
                Status::BufError => break,
                Status::Ok => {}
            }
            let progress = consumed > 0 && self.d.total_in() != in0 || out.len() != out0;
            if consumed >= input.len() && out.len() < out.capacity() || !progress {
                break;
            }
        }
        Ok(())
    }

    /// Ends a message: inflates the implicit tail and resets if needed.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), WsError> {
        self.inflate(&TAIL, out, limit)?;
        if self.reset || self.ended {
            self.d.reset(false);
            self.ended = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: bool, c: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: s,
            client_no_context_takeover: c,
            server_max_window_bits: None,
        }
    }

    #[test]
    fn rfc7692_hello() {
        let mut inf = Inflater::new(&params(false, false));
        let mut out = Vec::new();
        inf.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        inf.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // Second message with context takeover (RFC 7692 7.2.3.2).
        let mut out = Vec::new();
        inf.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        inf.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn roundtrip_many() {
        for &(s, c) in &[(false, false), (true, true), (true, false)] {
            let p = params(s, c);
            let mut def = Deflater::new(&p);
            let mut inf = Inflater::new(&DeflateParams {
                client_no_context_takeover: s,
                ..p
            });
            for i in 0..200 {
                let msg = format!("message number {i} {}", "abc".repeat(i % 50));
                let mut z = Vec::new();
                def.compress(msg.as_bytes(), &mut z);
                let mut out = Vec::new();
                inf.inflate(&z, &mut out, 1 << 20).unwrap();
                inf.finish(&mut out, 1 << 20).unwrap();
                assert_eq!(out, msg.as_bytes());
            }
        }
    }

    #[test]
    fn bomb_guard() {
        let mut def = Deflater::new(&params(false, false));
        let mut z = Vec::new();
        def.compress(&vec![0u8; 50 << 20], &mut z);
        assert!(z.len() < 1 << 20);
        let mut inf = Inflater::new(&params(false, false));
        let mut out = Vec::new();
        assert_eq!(
            inf.inflate(&z, &mut out, 1 << 20),
            Err(WsError::TooBig(1 << 20))
        );
        assert!(out.capacity() < 4 << 20);
    }
}
