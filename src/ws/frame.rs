//! WebSocket framing (RFC 6455 section 5): the incremental decoder of
//! client frames (masking, fragmentation, control frames, UTF-8, size
//! limits, permessage-deflate inflation) and the encoder of server frames.

use super::deflate::{DeflateParams, Deflater, Inflater};
use super::WsError;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Messages shorter than this are sent uncompressed even when deflate is on.
pub const COMPRESS_THRESHOLD: usize = 64;

/// One complete thing received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `code` is `None` for an empty close payload.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// XORs `data` with `mask`, as if `data` started `offset` bytes into the
/// masked payload. Eight bytes at a time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let m = [
        mask[offset % 4],
        mask[(offset + 1) % 4],
        mask[(offset + 2) % 4],
        mask[(offset + 3) % 4],
    ];
    let m64 = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m64).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// The data frame whose payload is being received.
struct FrameState {
    fin: bool,
    remaining: u64,
    mask: [u8; 4],
    offset: usize,
}

/// The data message being assembled.
struct MsgState {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (text only).
    checked: usize,
}

/// Incremental decoder of client frames. Feed it socket bytes, then take
/// events until `Ok(None)`. After an error it keeps returning that error.
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    max_message_size: usize,
    inflater: Option<Inflater>,
    frame: Option<FrameState>,
    msg: Option<MsgState>,
    failed: Option<WsError>,
}

impl Decoder {
    /// `deflate`: the negotiated extension, if any. `max_message_size`
    /// bounds every message after decompression (and control payloads).
    pub fn new(max_message_size: usize, deflate: Option<&DeflateParams>) -> Self {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            max_message_size,
            inflater: deflate.map(Inflater::new),
            frame: None,
            msg: None,
            failed: None,
        }
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes fed but not consumed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, WsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn step(&mut self) -> Result<Option<Event>, WsError> {
        loop {
            if self.frame.is_none() {
                match self.header()? {
                    Header::Incomplete => return Ok(None),
                    Header::Control(ev) => return Ok(Some(ev)),
                    Header::Data => {}
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let Some(msg) = self.msg.as_mut() else {
                return Err(WsError::Protocol("internal: frame without message"));
            };
            let avail = (self.buf.len() - self.pos) as u64;
            let n = avail.min(frame.remaining) as usize;
            let chunk = &mut self.buf[self.pos..self.pos + n];
            apply_mask(chunk, frame.mask, frame.offset);
            frame.offset = frame.offset.wrapping_add(n);
            frame.remaining -= n as u64;
            self.pos += n;
            if msg.compressed {
                let inf = self
                    .inflater
                    .as_mut()
                    .ok_or(WsError::Protocol("internal: no inflater"))?;
                inf.inflate(chunk, &mut msg.data, self.max_message_size)?;
            } else {
                msg.data.extend_from_slice(chunk);
            }
            let done = frame.remaining == 0;
            let fin = frame.fin;
            if done {
                self.frame = None;
            }
            if done && fin && msg.compressed {
                if let Some(inf) = self.inflater.as_mut() {
                    inf.finish(&mut msg.data, self.max_message_size)?;
                }
            }
            if msg.text {
                check_utf8(msg, done && fin)?;
            }
            if done && fin {
                let Some(msg) = self.msg.take() else {
                    return Err(WsError::Protocol("internal: no message"));
                };
                let ev = if msg.text {
                    Event::Text(String::from_utf8(msg.data).map_err(|_| WsError::InvalidUtf8)?)
                } else {
                    Event::Binary(msg.data)
                };
                return Ok(Some(ev));
            }
            if !done {
                return Ok(None);
            }
        }
    }

    /// Parses the next frame header; control frames are returned whole.
    fn header(&mut self) -> Result<Header, WsError> {
        let b = &self.buf[self.pos..];
        if b.len() < 2 {
            return Ok(Header::Incomplete);
        }
        let (b0, b1) = (b[0], b[1]);
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let opcode = b0 & 0x0f;
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frame not masked"));
        }
        let control = opcode >= 8;
        match opcode {
            OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        let len7 = b1 & 0x7f;
        if control && (!fin || len7 > 125) {
            return Err(WsError::Protocol("fragmented or long control frame"));
        }
        let (len, hlen) = match len7 {
            126 => match b.get(2..4) {
                Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
                None => return Ok(Header::Incomplete),
            },
            127 => match b.get(2..10) {
                Some(l) => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(l);
                    let len = u64::from_be_bytes(w);
                    if len >> 63 != 0 {
                        return Err(WsError::Protocol("64-bit length with MSB set"));
                    }
                    (len, 10)
                }
                None => return Ok(Header::Incomplete),
            },
            n => (u64::from(n), 2),
        };
        let Some(m) = b.get(hlen..hlen + 4) else {
            return Ok(Header::Incomplete);
        };
        let mask = [m[0], m[1], m[2], m[3]];
        let hlen = hlen + 4;
        if control {
            if rsv1 {
                return Err(WsError::Protocol("RSV1 on a control frame"));
            }
            let len = len as usize;
            let Some(p) = self.buf.get_mut(self.pos + hlen..self.pos + hlen + len) else {
                return Ok(Header::Incomplete);
            };
            apply_mask(p, mask, 0);
            let payload = p.to_vec();
            self.pos += hlen + len;
            return control_event(opcode, payload).map(Header::Control);
        }
        match (opcode, &self.msg) {
            (OP_CONT, None) => return Err(WsError::Protocol("continuation without a start")),
            (OP_CONT, Some(_)) if rsv1 => {
                return Err(WsError::Protocol("RSV1 on a continuation frame"))
            }
            (OP_TEXT | OP_BINARY, Some(_)) => {
                return Err(WsError::Protocol("new message inside a fragmented one"))
            }
            (OP_TEXT | OP_BINARY, None) if rsv1 && self.inflater.is_none() => {
                return Err(WsError::Protocol("RSV1 without permessage-deflate"))
            }
            _ => {}
        }
        if opcode != OP_CONT {
            self.msg = Some(MsgState {
                text: opcode == OP_TEXT,
                compressed: rsv1,
                data: Vec::new(),
                checked: 0,
            });
        }
        let Some(msg) = self.msg.as_mut() else {
            return Err(WsError::Protocol("internal: no message"));
        };
        if !msg.compressed {
            let total = (msg.data.len() as u64).saturating_add(len);
            if total > self.max_message_size as u64 {
                return Err(WsError::TooBig(self.max_message_size));
            }
            if msg.data.capacity() == 0 {
                msg.data.reserve_exact(len as usize);
            }
        }
        self.pos += hlen;
        self.frame = Some(FrameState {
            fin,
            remaining: len,
            mask,
            offset: 0,
        });
        Ok(Header::Data)
    }
}

enum Header {
    Incomplete,
    Control(Event),
    Data,
}

fn control_event(opcode: u8, payload: Vec<u8>) -> Result<Event, WsError> {
    Ok(match opcode {
        OP_PING => Event::Ping(payload),
        OP_PONG => Event::Pong(payload),
        _ => match payload.len() {
            0 => Event::Close {
                code: None,
                reason: String::new(),
            },
            1 => return Err(WsError::Protocol("one-byte close payload")),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !valid_close_code(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                let reason = std::str::from_utf8(&payload[2..])
                    .map_err(|_| WsError::InvalidUtf8)?
                    .to_owned();
                Event::Close {
                    code: Some(code),
                    reason,
                }
            }
        },
    })
}

/// Close codes a peer may send (RFC 6455 7.4).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Validates the unchecked part of a text message; an incomplete sequence
/// at the end is fine unless the message is complete.
fn check_utf8(msg: &mut MsgState, complete: bool) -> Result<(), WsError> {
    let rest = &msg.data[msg.checked..];
    match std::str::from_utf8(rest) {
        Ok(_) => msg.checked = msg.data.len(),
        Err(e) => {
            if e.error_len().is_some() || complete {
                return Err(WsError::InvalidUtf8);
            }
            msg.checked += e.valid_up_to();
        }
    }
    Ok(())
}

/// Encoder of server frames (never masked), appending to a caller buffer.
pub struct Encoder {
    deflater: Option<Deflater>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(deflate: Option<&DeflateParams>) -> Self {
        Encoder {
            deflater: deflate.map(Deflater::new),
            scratch: Vec::new(),
        }
    }

    pub fn text(&mut self, s: &str, out: &mut Vec<u8>) {
        self.data(OP_TEXT, s.as_bytes(), out);
    }

    pub fn binary(&mut self, b: &[u8], out: &mut Vec<u8>) {
        self.data(OP_BINARY, b, out);
    }

    /// `payload` is cut to 125 bytes.
    pub fn ping(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        write_frame(OP_PING, false, &payload[..payload.len().min(125)], out);
    }

    /// `payload` is cut to 125 bytes.
    pub fn pong(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        write_frame(OP_PONG, false, &payload[..payload.len().min(125)], out);
    }

    /// A close frame; the reason is cut at a UTF-8 boundary to fit 123 bytes.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut p = Vec::with_capacity(2 + end);
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(&reason.as_bytes()[..end]);
        write_frame(OP_CLOSE, false, &p, out);
    }

    fn data(&mut self, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
        match self.deflater.as_mut() {
            Some(d) if payload.len() >= COMPRESS_THRESHOLD => {
                self.scratch.clear();
                d.compress(payload, &mut self.scratch);
                write_frame(opcode, true, &self.scratch, out);
            }
            _ => write_frame(opcode, false, payload, out),
        }
    }
}

fn write_frame(opcode: u8, rsv1: bool, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    out.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn cframe(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        write_frame(0, false, payload, &mut f);
        f[0] = b0;
        f[1] |= 0x80;
        let mut p = payload.to_vec();
        apply_mask(&mut p, MASK, 0);
        f.truncate(f.len() - payload.len());
        f.extend_from_slice(&MASK);
        f.extend_from_slice(&p);
        f
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, WsError> {
        d.feed(bytes);
        let mut v = Vec::new();
        while let Some(e) = d.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    fn err_code(bytes: &[u8], deflate: bool) -> u16 {
        let p = DeflateParams::default();
        let mut d = Decoder::new(1000, deflate.then_some(&p));
        decode_all(&mut d, bytes).unwrap_err().close_code()
    }

    #[test]
    fn rfc_masked_hello() {
        let f = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut d = Decoder::new(100, None);
        assert_eq!(
            decode_all(&mut d, &f).unwrap(),
            vec![Event::Text("Hello".into())]
        );
        assert_eq!(cframe(0x81, b"Hello"), f);
    }

    #[test]
    fn rfc_unmasked_examples_encode() {
        let mut out = Vec::new();
        let mut e = Encoder::new(None);
        e.text("Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        e.ping(b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        e.binary(&[0u8; 256], &mut out);
        assert_eq!(&out[..4], &[0x82, 0x7e, 0x01, 0x00]);
        out.clear();
        e.binary(&vec![0u8; 65536], &mut out);
        assert_eq!(&out[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn fragmented_with_ping_between() {
        let mut bytes = cframe(0x01, b"Hel");
        bytes.extend(cframe(0x89, b"hi"));
        bytes.extend(cframe(0x80, b"lo"));
        bytes.extend(cframe(0x8A, b"pong"));
        bytes.extend(cframe(0x88, &[0x03, 0xe8, b'o', b'k']));
        let want = vec![
            Event::Ping(b"hi".to_vec()),
            Event::Text("Hello".into()),
            Event::Pong(b"pong".to_vec()),
            Event::Close {
                code: Some(1000),
                reason: "ok".into(),
            },
        ];
        let mut d = Decoder::new(100, None);
        assert_eq!(decode_all(&mut d, &bytes).unwrap(), want);
        // Byte-by-byte gives the same.
        let mut d = Decoder::new(100, None);
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(decode_all(&mut d, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn split_everywhere_with_deflate() {
        let p = DeflateParams::default();
        let mut enc = Encoder::new(Some(&p));
        let mut msgs = Vec::new();
        for i in 0..20 {
            msgs.push(format!("é message {i} {}", "xyz".repeat(i * 10)));
        }
        let mut bytes = Vec::new();
        for m in &msgs {
            let mut out = Vec::new();
            enc.text(m, &mut out);
            // Re-encode as a masked client frame.
            let hl = match out[1] {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            bytes.extend(cframe(out[0], &out[hl..]));
        }
        let want: Vec<Event> = msgs.iter().map(|m| Event::Text(m.clone())).collect();
        let mut d = Decoder::new(1 << 20, Some(&p));
        assert_eq!(decode_all(&mut d, &bytes).unwrap(), want);
        for step in [1, 3, 7] {
            let mut d = Decoder::new(1 << 20, Some(&p));
            let mut got = Vec::new();
            for c in bytes.chunks(step) {
                got.extend(decode_all(&mut d, c).unwrap());
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn rfc7692_compressed_frames() {
        let p = DeflateParams::default();
        let z = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut bytes = cframe(0xc1, &z);
        bytes.extend(cframe(0xc1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
        // Fragmented compressed message (RFC 7692 7.2.3.1).
        bytes.extend(cframe(0x41, &[0xf2, 0x48, 0xcd]));
        bytes.extend(cframe(0x80, &[0xc9, 0xc9, 0x07, 0x00]));
        let mut d = Decoder::new(100, Some(&p));
        assert_eq!(
            decode_all(&mut d, &bytes).unwrap(),
            vec![Event::Text("Hello".into()); 3]
        );
    }

    #[test]
    fn errors() {
        // Unmasked client frame.
        assert_eq!(err_code(&[0x81, 0x00], false), 1002);
        // RSV bits.
        assert_eq!(err_code(&cframe(0xc1, b"x"), false), 1002);
        assert_eq!(err_code(&cframe(0xa1, b"x"), true), 1002);
        // RSV1 on continuation.
        let mut b = cframe(0x41, &[0xf2]);
        b.extend(cframe(0xc0, &[0x48]));
        assert_eq!(err_code(&b, true), 1002);
        // RSV1 on control frame.
        assert_eq!(err_code(&cframe(0xc9, b""), true), 1002);
        // Unknown opcodes.
        for op in [3u8, 7, 0xb, 0xf] {
            assert_eq!(err_code(&cframe(0x80 | op, b""), false), 1002);
        }
        // Long / fragmented control frames.
        assert_eq!(err_code(&cframe(0x89, &[0; 126]), false), 1002);
        assert_eq!(err_code(&cframe(0x09, b""), false), 1002);
        // Continuation without start, new data frame mid-message.
        assert_eq!(err_code(&cframe(0x80, b"x"), false), 1002);
        let mut b = cframe(0x01, b"x");
        b.extend(cframe(0x82, b"y"));
        assert_eq!(err_code(&b, false), 1002);
        // Invalid UTF-8, early in a fragmented message.
        assert_eq!(err_code(&cframe(0x01, &[b'a', 0xff]), false), 1007);
        assert_eq!(err_code(&cframe(0x81, &[0xe2, 0x82]), false), 1007);
        // Too big, single and fragmented.
        assert_eq!(err_code(&cframe(0x82, &[0; 1001]), false), 1009);
        let mut b = cframe(0x02, &[0; 600]);
        b.extend(cframe(0x80, &[0; 600]));
        assert_eq!(err_code(&b, false), 1009);
        // Too big is detected from the header alone.
        let mut d = Decoder::new(1000, None);
        d.feed(&[0x82, 0xfe, 0x10, 0x00, 1, 2, 3, 4]);
        assert_eq!(d.next_event().unwrap_err().close_code(), 1009);
        // 64-bit length with MSB set.
        assert_eq!(
            err_code(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], false),
            1002
        );
        // Close payloads.
        assert_eq!(err_code(&cframe(0x88, &[0x03]), false), 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000] {
            let c = code.to_be_bytes();
            assert_eq!(err_code(&cframe(0x88, &c), false), 1002, "{code}");
        }
        assert_eq!(err_code(&cframe(0x88, &[0x03, 0xe8, 0xff]), false), 1007);
        // Bad compressed data.
        assert_eq!(err_code(&cframe(0xc2, &[0xff, 0xff, 0xff]), true), 1002);
        // Errors stick.
        let mut d = Decoder::new(10, None);
        d.feed(&[0x81, 0x00]);
        assert!(d.next_event().is_err());
        assert!(d.next_event().is_err());
    }

    #[test]
    fn valid_close_codes() {
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 3000, 4999] {
            let c = code.to_be_bytes();
            let mut d = Decoder::new(10, None);
            assert_eq!(
                decode_all(&mut d, &cframe(0x88, &c)).unwrap(),
                vec![Event::Close {
                    code: Some(code),
                    reason: String::new()
                }]
            );
        }
        let mut d = Decoder::new(10, None);
        assert_eq!(
            decode_all(&mut d, &cframe(0x88, b"")).unwrap(),
            vec![Event::Close {
                code: None,
                reason: String::new()
            }]
        );
    }

    #[test]
    fn compressed_bomb_limited() {
        let p = DeflateParams::default();
        let mut enc = Encoder::new(Some(&p));
        let mut out = Vec::new();
        enc.binary(&vec![0u8; 10 << 20], &mut out);
        let hl = if out[1] == 126 { 4 } else { 10 };
        let bytes = cframe(out[0], &out[hl..]);
        assert_eq!(err_code(&bytes, true), 1009);
    }

    #[test]
    fn close_reason_truncated() {
        let mut out = Vec::new();
        Encoder::new(None).close(1000, &"é".repeat(100), &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn mask_offsets() {
        let data: Vec<u8> = (0..37).collect();
        let mut a = data.clone();
        apply_mask(&mut a, MASK, 0);
        let mut b = data.clone();
        let (x, y) = b.split_at_mut(5);
        apply_mask(x, MASK, 0);
        apply_mask(y, MASK, 5);
        assert_eq!(a, b);
        for (i, v) in a.iter().enumerate() {
            assert_eq!(*v, data[i] ^ MASK[i % 4]);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let p = DeflateParams::default();
        let mut good = cframe(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        good.extend(cframe(0x01, b"ab"));
        good.extend(cframe(0x89, b"p"));
        good.extend(cframe(0x80, b"cd"));
        for round in 0..3000 {
            let mut bytes = good.clone();
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % bytes.len();
                bytes[i] = rnd() as u8;
            }
            if round % 3 == 0 {
                bytes = (0..rnd() % 64).map(|_| rnd() as u8 | 0x80).collect();
            }
            let mut d = Decoder::new(64, (round % 2 == 0).then_some(&p));
            let step = 1 + (rnd() as usize) % 5;
            for c in bytes.chunks(step) {
                if decode_all(&mut d, c).is_err() {
                    break;
                }
            }
        }
    }
}
