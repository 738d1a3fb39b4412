//! A request body as the protocol hands it to an app interface: complete in
//! memory, or partly read with the rest still on the socket (and how much
//! of it, by its framing).

use std::time::Duration;

use super::ChunkedDecoder;

/// Where the rest of a streamed request body comes from.
pub enum BodyRest {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyRest {
    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        match self {
            BodyRest::Length(n) => *n == 0,
            BodyRest::Chunked(d) => d.is_finished(),
        }
    }
}

/// The body of one request.
pub enum Body {
    /// Complete (possibly empty).
    Buffered(Vec<u8>),
    /// `decoded` has arrived; the rest is read from `wire`, starting with the
    /// undecoded bytes in `raw`, each wait for more lasting up to `timeout`.
    Streaming {
        decoded: Vec<u8>,
        raw: Vec<u8>,
        rest: BodyRest,
        wire: crate::tls::Wire,
        timeout: Duration,
    },
}
