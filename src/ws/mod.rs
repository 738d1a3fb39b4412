//! WebSocket protocol (RFC 6455) with permessage-deflate (RFC 7692), pure
//! Rust and socket-free, for the ASGI worker. This module owns the public
//! API and the error type; [`handshake`] validates an upgrade request and
//! builds the `101` response, [`frame`] decodes client frames incrementally
//! and encodes server frames, `deflate` wraps flate2 for the extension.
//!
//! Worker flow: `handshake::parse_upgrade(&head, allow_deflate)` →
//! `handshake::response_101(..)` written to the socket → a
//! [`Decoder`] fed with every socket read (`feed` then `next_event` until
//! `Ok(None)`) and an [`Encoder`] for the app's sends. On `Err(e)` send
//! `Encoder::close(e.close_code(), ..)` and close the connection.

mod deflate;
pub mod frame;
pub mod handshake;

pub use deflate::DeflateParams;
pub use frame::{Decoder, Encoder, Event};
pub use handshake::{parse_upgrade, response_101, HandshakeError, Upgrade};

/// Why a WebSocket connection must be failed; [`WsError::close_code`] is
/// the status code to put in the close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A violation of the framing rules (close code 1002).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason that is not UTF-8 (close code 1007).
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A message larger than the configured maximum (close code 1009).
    #[error("message larger than {0} bytes")]
    TooBig(usize),
}

impl WsError {
    /// The close code to send to the peer for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig(_) => 1009,
        }
    }
}
