//! One HTTP/2 stream as one HTTP/1.1 request on an internal connection:
//! the request head and body go in (the body only as fast as the app
//! reads it, with WINDOW_UPDATEs for what it took), the response comes
//! back as HEADERS and DATA, read from the internal connection only while
//! the stream's send window is open, so a slow client blocks the app's
//! writes as it would on HTTP/1.1. A client that resets the stream closes
//! the internal connection, which the app sees as a client gone.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::response::{self, Framing, ResponseError};
use super::serve::Link;
use crate::debug;

/// Largest read from an internal connection (and so DATA chunk handed to
/// the crate at once).
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("internal connection: {0}")]
    Io(#[from] io::Error),
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("{0}")]
    Response(#[from] ResponseError),
    #[error("the app interface closed the connection before the response was complete")]
    Truncated,
    #[error("the client reset the stream")]
    Reset,
}

pub(super) async fn handle(
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    link: Arc<Link>,
) {
    link.active.fetch_add(1, Ordering::SeqCst);
    serve_stream(req, &mut respond, &link).await;
    link.active.fetch_sub(1, Ordering::SeqCst);
}

async fn serve_stream(
    req: http::Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    link: &Link,
) {
    if req.method() == http::Method::CONNECT {
        let _ = respond.send_response(status_only(501), true);
        return;
    }
    let Ok(_slot) = link.slots.clone().acquire_owned().await else {
        return;
    };
    let https = link.tls || req.uri().scheme_str() == Some("https");
    let internal = match link.internal(https) {
        Ok(s) => s,
        Err(e) => {
            debug!("No internal connection for an HTTP/2 stream: {e}");
            let _ = respond.send_response(status_only(503), true);
            return;
        }
    };
    // Stream 1 of an upgraded connection is the HTTP/1.1 request that
    // asked for the upgrade: its body was read before the switch.
    let first = if u32::from(respond.stream_id()) == 1 {
        link.first_body.lock().ok().and_then(|mut b| b.take())
    } else {
        None
    };
    match exchange(req, respond, internal, first).await {
        Ok(Some(s)) => link.give_back(https, s),
        Ok(None) => {}
        Err(StreamError::Reset) => {}
        Err(e) => {
            debug!("HTTP/2 stream: {e}");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

fn status_only(code: u16) -> http::Response<()> {
    let mut r = http::Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}

/// Run the exchange; Some(connection) when it can carry another request.
async fn exchange(
    req: http::Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
    internal: UnixStream,
    first: Option<Bytes>,
) -> Result<Option<UnixStream>, StreamError> {
    let (mut parts, body) = req.into_parts();
    let is_head = parts.method == http::Method::HEAD;
    let has_body = !body.is_end_stream();
    let chunked = has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let head = response::request_head(&parts, chunked);
    if !has_body {
        // Request and response one after the other on the whole
        // connection (no split, no second task).
        drop(body);
        let mut internal = internal;
        match first.filter(|b| !b.is_empty()) {
            Some(b) => {
                parts.headers.insert(
                    http::header::CONTENT_LENGTH,
                    http::HeaderValue::from(b.len()),
                );
                internal
                    .write_all(&response::request_head(&parts, false))
                    .await?;
                internal.write_all(&b).await?;
            }
            None => internal.write_all(&head).await?,
        }
        let (reusable, _tx) = relay_response(&mut internal, respond, is_head).await?;
        return Ok(reusable.then_some(internal));
    }
    // The body goes in beside the response coming back.
    let (mut rd, mut wr) = internal.into_split();
    wr.write_all(&head).await?;
    let pump = tokio::spawn(pump_body(body, wr, chunked));
    let (reusable, tx) = relay_response(&mut rd, respond, is_head).await?;
    // What the app did not read of the body decides whether the internal
    // connection can be reused.
    if !reusable || !pump.is_finished() {
        pump.abort();
        if !pump.is_finished() {
            // The app answered without reading the whole body: the client
            // may stop sending it (RFC 9113 8.1).
            if let Some(mut tx) = tx {
                tx.send_reset(h2::Reason::NO_ERROR);
            }
        }
        return Ok(None);
    }
    match pump.await {
        Ok(Ok(wr)) => Ok(rd.reunite(wr).ok()),
        _ => Ok(None),
    }
}

/// Read the response from the internal connection and send it on the
/// stream. Returns whether the connection can carry another request, and
/// the stream's sending half (None when the response had no body).
async fn relay_response<R: AsyncRead + Unpin>(
    rd: &mut R,
    respond: &mut SendResponse<Bytes>,
    is_head: bool,
) -> Result<(bool, Option<SendStream<Bytes>>), StreamError> {
    // The response head (interim ones skipped).
    let mut buf: Vec<u8> = Vec::with_capacity(4 * 1024);
    let head = loop {
        if let Some(h) = response::parse_head(&buf, is_head)? {
            if h.status < 200 {
                buf.drain(..h.len);
                continue;
            }
            break h;
        }
        if read_more(rd, &mut buf, respond).await? == 0 {
            return Err(StreamError::Truncated);
        }
    };
    buf.drain(..head.len);
    let mut resp = http::Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(head.status)
        .map_err(|_| ResponseError::Head("status".into()))?;
    *resp.headers_mut() = head.headers;
    let mut framing = head.framing;
    let empty = matches!(framing, Framing::None);
    let mut tx = respond.send_response(resp, empty)?;
    if empty {
        return Ok((head.reusable && buf.is_empty(), None));
    }
    forward_body(&mut framing, rd, &mut buf, &mut tx).await?;
    Ok((head.reusable && buf.is_empty(), Some(tx)))
}

/// Read more of the response, unless the client resets the stream first.
async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    respond: &mut SendResponse<Bytes>,
) -> Result<usize, StreamError> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(READ_CHUNK.min(buf.capacity().max(8 * 1024)));
    }
    tokio::select! {
        n = rd.read_buf(buf) => Ok(n?),
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => Err(StreamError::Reset),
    }
}

/// Send the response body: decode what the internal connection carries,
/// and read more only once the client's window took what was read.
async fn forward_body<R: AsyncRead + Unpin>(
    framing: &mut Framing,
    rd: &mut R,
    buf: &mut Vec<u8>,
    tx: &mut SendStream<Bytes>,
) -> Result<(), StreamError> {
    let mut out = Vec::new();
    loop {
        let (used, done) = response::take_body(framing, buf, &mut out)?;
        buf.drain(..used);
        if !out.is_empty() || done {
            send(tx, Bytes::from(std::mem::take(&mut out)), done).await?;
        }
        if done {
            return Ok(());
        }
        buf.reserve(READ_CHUNK);
        let n = tokio::select! {
            n = rd.read_buf(buf) => n?,
            r = std::future::poll_fn(|cx| tx.poll_reset(cx)) => {
                let _ = r;
                return Err(StreamError::Reset);
            }
        };
        if n == 0 {
            if matches!(framing, Framing::Eof) {
                send(tx, Bytes::new(), true).await?;
                return Ok(());
            }
            return Err(StreamError::Truncated);
        }
    }
}

/// Send `data` as the client's window allows (waiting for WINDOW_UPDATE).
async fn send(tx: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> Result<(), StreamError> {
    if data.is_empty() {
        if end {
            tx.send_data(data, true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let mut cap = tx.capacity();
        while cap == 0 {
            match std::future::poll_fn(|cx| tx.poll_capacity(cx)).await {
                Some(Ok(n)) => cap = n,
                Some(Err(e)) => return Err(reset_or(e)),
                None => return Err(StreamError::Reset),
            }
        }
        let chunk = data.split_to(cap.min(data.len()));
        tx.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

fn reset_or(e: h2::Error) -> StreamError {
    if e.is_reset() {
        StreamError::Reset
    } else {
        StreamError::H2(e)
    }
}

/// Write the request body into the internal connection as the app reads
/// it, releasing the client's window for what was written.
async fn pump_body(
    mut body: RecvStream,
    mut wr: OwnedWriteHalf,
    chunked: bool,
) -> Result<OwnedWriteHalf, StreamError> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(reset_or)?;
        let n = chunk.len();
        if n == 0 {
            continue;
        }
        if chunked {
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        } else {
            wr.write_all(&chunk).await?;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if chunked {
        wr.write_all(b"0\r\n\r\n").await?;
    }
    Ok(wr)
}
