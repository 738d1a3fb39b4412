//! HTTP/2 with prior knowledge (h2c, `--http2-cleartext`), as a client
//! sees it, for the sync and gthread workers (asgi and gevent in
//! tests/asgi.rs and compat): what the app sees of a stream, several
//! streams at once on one connection, streaming, uploads, flow control
//! both ways (a client that stops reading holds the app back), the
//! refusals (an HTTP/1.1 request from a peer expected to speak HTTP/2,
//! untrusted peers served HTTP/1.1), a graceful stop that finishes open
//! streams after GOAWAY, and the defences against hostile clients (rapid
//! reset, CONTINUATION floods, HPACK bombs, too many streams, ping
//! floods), the attacks written frame by frame here. The client is the
//! `h2` crate on a tokio runtime. App: tests/apps/h2app.py.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

const H2C: &[&str] = &[
    "--http-protocols",
    "h1,h2",
    "--http2-cleartext",
    "prior-knowledge",
];

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["h2app:app"];
    args.extend_from_slice(H2C);
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Client = h2::client::SendRequest<Bytes>;

async fn connect(port: u16, window: Option<u32>) -> Client {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut b = h2::client::Builder::new();
    if let Some(w) = window {
        b.initial_window_size(w);
    }
    let (send, conn) = b.handshake::<_, Bytes>(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap()
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Json {
        Json::parse(std::str::from_utf8(&self.body).unwrap()).unwrap()
    }
}

async fn fetch(
    c: &mut Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://example.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    let mut c = c.clone().ready().await.unwrap();
    let (resp, mut tx) = c.send_request(req, body.is_none()).unwrap();
    if let Some(b) = body {
        if b.is_empty() {
            tx.send_data(Bytes::new(), true).unwrap();
        }
        let mut b = Bytes::from(b);
        while !b.is_empty() {
            tx.reserve_capacity(b.len());
            let cap = std::future::poll_fn(|cx| tx.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let chunk = b.split_to(cap.min(b.len()));
            tx.send_data(chunk, b.is_empty()).unwrap();
        }
    }
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut body = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d.unwrap();
        let _ = recv.flow_control().release_capacity(d.len());
        body.extend_from_slice(&d);
    }
    Reply {
        status,
        headers,
        body,
    }
}

#[test]
fn a_stream_is_a_request_as_gunicorn_shows_it() {
    for worker in [&["-k", "sync"][..], &["-k", "gthread", "--threads", "4"]] {
        let s = start(worker);
        rt().block_on(async {
            let mut c = connect(s.port, None).await;
            let r = fetch(
                &mut c,
                "GET",
                "/info?a=1",
                &[("cookie", "a=1"), ("cookie", "b=2"), ("x-test", "t")],
                None,
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["x-reply"], "yes");
            assert!(r.headers.get("connection").is_none());
            let j = r.json();
            assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/2.0"), "{worker:?}");
            assert_eq!(j["REMOTE_ADDR"].str(), Some("127.0.0.1"));
            assert_eq!(j["wsgi.url_scheme"].str(), Some("http"));
            assert_eq!(j["HTTP_HOST"].str(), Some("example.test"));
            assert_eq!(j["HTTP_COOKIE"].str(), Some("a=1; b=2"));
            assert_eq!(j["QUERY_STRING"].str(), Some("a=1"));
            assert_eq!(j["HTTP_X_TEST"].str(), Some("t"));
            // HEAD: the head only.
            let r = fetch(&mut c, "HEAD", "/info", &[], None).await;
            assert_eq!(r.status, 200);
            assert!(r.body.is_empty());
            assert_eq!(fetch(&mut c, "GET", "/nope", &[], None).await.status, 404);
        });
        // HTTP/1.1 from a peer trusted to speak HTTP/2 is refused.
        let mut plain = s.connect();
        let r = plain.request("GET", "/info", &[("Host", "t")], b"");
        assert_eq!(r.status, 400, "{worker:?}");
    }
}

#[test]
fn untrusted_peers_and_both_are_served_http1() {
    // 127.0.0.1 not trusted: h2c is off for it, HTTP/1.1 as usual.
    let s = start(&["--forwarded-allow-ips", "10.0.0.1"]);
    let mut c = s.connect();
    let r = c.request("GET", "/info", &[("Host", "t")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/1.1"));
    // `both`: the preface or HTTP/1.1.
    let mut args = vec!["h2app:app", "--http-protocols", "h1,h2"];
    args.extend_from_slice(&["--http2-cleartext", "both"]);
    let s = Server::start(&args);
    let mut c = s.connect();
    let r = c.request("GET", "/info", &[("Host", "t")], b"");
    assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/1.1"));
    rt().block_on(async {
        let mut c = connect(s.port, None).await;
        let r = fetch(&mut c, "GET", "/info", &[], None).await;
        assert_eq!(r.json()["SERVER_PROTOCOL"].str(), Some("HTTP/2.0"));
    });
}

/// Ten slow requests on one connection run together on gthread (ten
/// threads): the lot takes about one request's time, not ten.
#[test]
fn concurrent_streams_on_one_connection() {
    let s = start(&["-k", "gthread", "--threads", "10"]);
    let took = rt().block_on(async {
        let c = connect(s.port, None).await;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                fetch(&mut c, "GET", "/sleep?0.5", &[], None).await
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"slept");
        }
        t0.elapsed()
    });
    assert!(took < Duration::from_secs(3), "10 x 0.5 s took {took:?}");
    // sync serves them one after another, all of them.
    let s = start(&["-k", "sync"]);
    rt().block_on(async {
        let c = connect(s.port, None).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                fetch(&mut c, "GET", &format!("/info?{i}"), &[], None).await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            assert_eq!(r.json()["QUERY_STRING"].str(), Some(i.to_string().as_str()));
        }
    });
}

/// Each block a generator yields reaches the client when it is yielded.
#[test]
fn a_stream_of_blocks_arrives_as_it_is_made() {
    for worker in ["sync", "gthread"] {
        let s = start(&["-k", worker]);
        rt().block_on(async {
            let c = connect(s.port, None).await;
            let req = http::Request::get("http://t/stream").body(()).unwrap();
            let mut c = c.ready().await.unwrap();
            let (resp, _) = c.send_request(req, true).unwrap();
            let t0 = Instant::now();
            let resp = resp.await.unwrap();
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let mut body = resp.into_body();
            let mut times = Vec::new();
            let mut got = Vec::new();
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                let _ = body.flow_control().release_capacity(d.len());
                if !d.is_empty() {
                    times.push(t0.elapsed());
                    got.extend_from_slice(&d);
                }
            }
            assert_eq!(got, b"data: 0\n\ndata: 1\n\ndata: 2\n\n");
            // The first block long before the end (the app sleeps 0.6 s
            // between blocks).
            assert!(times.len() >= 2, "{worker}: {times:?}");
            assert!(
                times[0] + Duration::from_millis(700) < *times.last().unwrap(),
                "{worker}: {times:?}"
            );
        });
    }
}

#[test]
fn uploads_of_known_and_unknown_length() {
    for worker in ["sync", "gthread"] {
        let s = start(&["-k", worker]);
        rt().block_on(async {
            let mut c = connect(s.port, None).await;
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let sha = python_sha256(&data);
            // No content-length: chunked on the internal connection.
            let r = fetch(&mut c, "POST", "/echo", &[], Some(data.clone())).await;
            let j = r.json();
            assert_eq!(j["len"].as_u64(), Some(3_000_000), "{worker}");
            assert_eq!(j["sha"].str(), Some(sha.as_str()));
            let len = data.len().to_string();
            let r = fetch(
                &mut c,
                "POST",
                "/echo",
                &[("content-length", &len)],
                Some(data),
            )
            .await;
            let j = r.json();
            assert_eq!(j["len"].as_u64(), Some(3_000_000));
            assert_eq!(j["cl"].str(), Some("3000000"));
            let r = fetch(&mut c, "POST", "/echo", &[], Some(Vec::new())).await;
            assert_eq!(r.json()["len"].as_u64(), Some(0));
        });
    }
}

fn python_sha256(data: &[u8]) -> String {
    let dir = TempDir::new("sha");
    let p = dir.join("d");
    std::fs::write(&p, data).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(&p)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A large download arrives whole; a client that stops reading (its
/// window closed) holds the app back instead of the server buffering the
/// response, and the app carries on once it reads again.
#[test]
fn flow_control_holds_the_app_back() {
    for worker in ["sync", "gthread"] {
        let s = start(&["-k", worker]);
        let progress = s.dir.join("progress");
        rt().block_on(async {
            let mut c = connect(s.port, None).await;
            let r = fetch(&mut c, "GET", "/big?20000000", &[], None).await;
            assert_eq!(r.body.len(), 20_000_000, "{worker}");
            assert!(r.body.iter().all(|b| *b == b'y'));

            let total = 50_000_000usize;
            let req = http::Request::get(format!("http://t/big?{total}&{}", progress.display()))
                .body(())
                .unwrap();
            let mut c2 = c.clone().ready().await.unwrap();
            let (resp, _) = c2.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let mut body = resp.into_body();
            // Take nothing for a while: only the window and the buffers
            // on the way can hold what the app made.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let made: usize = std::fs::read_to_string(&progress)
                .unwrap_or_default()
                .trim()
                .parse()
                .unwrap_or(0);
            assert!(
                made < 8_000_000,
                "{worker}: the app made {made} bytes for a client that read none"
            );
            let mut got = 0usize;
            while let Some(d) = body.data().await {
                let d = d.unwrap();
                got += d.len();
                let _ = body.flow_control().release_capacity(d.len());
            }
            assert_eq!(got, total, "{worker}");
        });
    }
}

/// TERM while a stream runs: the client gets GOAWAY, and the stream still
/// completes; the worker then exits.
#[test]
fn graceful_stop_finishes_open_streams() {
    let mut s = start(&["-k", "gthread", "--graceful-timeout", "10"]);
    rt().block_on(async {
        let c = connect(s.port, None).await;
        let mut c1 = c.clone();
        let slow =
            tokio::spawn(async move { fetch(&mut c1, "GET", "/sleep?1.5", &[], None).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.signal(libc::SIGTERM);
        let r = slow.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"slept");
    });
    assert!(
        s.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        s.log()
    );
}

// --- attacks, frame by frame ---

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    let n = payload.len() as u32;
    f.extend_from_slice(&n.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// An HPACK literal field, not indexed (names and values under 127 bytes,
/// or a longer value with the multi-byte length).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    int7(out, name.len());
    out.extend_from_slice(name);
    int7(out, value.len());
    out.extend_from_slice(value);
}

fn int7(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// A GET's header block: indexed :method GET, :scheme http, :path /.
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    if path == "/" {
        b.push(0x84);
    } else {
        literal(&mut b, b":path", path.as_bytes());
    }
    literal(&mut b, b":authority", b"t");
    b
}

struct Raw {
    s: TcpStream,
    seen: Vec<u8>,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
        Raw {
            s,
            seen: Vec::new(),
        }
    }
    fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }
    /// Read for `d`; true when the server closed the connection.
    fn read_for(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut buf = [0u8; 65536];
        while Instant::now() < end {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
    /// The frames the server sent: (type, flags, stream, payload).
    fn frames(&self) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut b = &self.seen[..];
        while b.len() >= 9 {
            let n = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
            if b.len() < 9 + n {
                break;
            }
            let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
            out.push((b[3], b[4], sid, b[9..9 + n].to_vec()));
            b = &b[9 + n..];
        }
        out
    }
    fn goaway(&self) -> Option<u32> {
        self.frames()
            .iter()
            .find(|f| f.0 == GOAWAY)
            .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
    }
}

const ENHANCE_YOUR_CALM: u32 = 0xb;
const PROTOCOL_ERROR: u32 = 1;
const COMPRESSION_ERROR: u32 = 9;

/// The server still answers a fresh client after an attack.
fn still_serves(s: &Server) {
    rt().block_on(async {
        let mut c = connect(s.port, None).await;
        assert_eq!(fetch(&mut c, "GET", "/info", &[], None).await.status, 200);
    });
}

/// CVE-2023-44487: streams opened and reset at once, thousands of them.
/// The connection is closed with ENHANCE_YOUR_CALM, and only a handful of
/// those requests ever reach the app.
#[test]
fn rapid_reset_is_cut_off() {
    let s = start(&["-k", "gthread", "--access-logfile", "-"]);
    let mut r = Raw::open(s.port);
    let mut batch = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        batch.extend_from_slice(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &get_block("/sleep?0.2"),
        ));
        batch.extend_from_slice(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = r.send(&batch);
    let closed = r.read_for(Duration::from_secs(3));
    assert!(closed, "still open after 5000 rapid resets");
    assert_eq!(r.goaway(), Some(ENHANCE_YOUR_CALM));
    std::thread::sleep(Duration::from_millis(500));
    let served = s.log().matches("GET /sleep").count();
    assert!(served < 200, "{served} reset requests reached the app");
    still_serves(&s);
}

/// CONTINUATION frames without end, each adding to one header block: the
/// connection is closed once the block passes the header list limit,
/// long before the flood ends.
#[test]
fn continuation_flood_is_cut_off() {
    let s = start(&["--http2-max-header-list-size", "16384"]);
    let mut r = Raw::open(s.port);
    let _ = r.send(&frame(HEADERS, END_STREAM, 1, &get_block("/")));
    let mut sent = 0usize;
    let mut field = Vec::new();
    literal(&mut field, b"x-flood", &[b'a'; 100]);
    let cont = frame(CONTINUATION, 0, 1, &field.repeat(100));
    let mut closed = false;
    for _ in 0..20_000 {
        if !r.send(&cont) {
            closed = true;
            break;
        }
        sent += cont.len();
    }
    closed = closed || r.read_for(Duration::from_secs(3));
    assert!(closed, "still open after {sent} bytes of CONTINUATION");
    // The limit is 16 KiB; what the kernel buffers comes on top.
    assert!(sent < 8_000_000, "{sent} bytes of CONTINUATION taken");
    still_serves(&s);
}

/// A header list that decodes far larger than it is sent (one big field
/// put in the HPACK table, then referenced many times): refused, the
/// app never called.
#[test]
fn hpack_bomb_is_refused() {
    let s = start(&[
        "--access-logfile",
        "-",
        "--http2-max-header-list-size",
        "65536",
    ]);
    let mut r = Raw::open(s.port);
    // Literal with incremental indexing: x-bomb = 4000 bytes, entry 62.
    let mut block = get_block("/info");
    block.push(0x40);
    int7(&mut block, 6);
    block.extend_from_slice(b"x-bomb");
    int7(&mut block, 4000);
    block.extend_from_slice(&[b'b'; 4000]);
    // Then the entry by index (0xbe: 62), 1000 times: 4 MB decoded.
    block.extend(std::iter::repeat_n(0xbe, 1000));
    let _ = r.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    r.read_for(Duration::from_secs(2));
    let frames = r.frames();
    let refused = frames.iter().any(|f| f.0 == RST_STREAM && f.2 == 1)
        || r.goaway().is_some_and(|c| {
            c == COMPRESSION_ERROR || c == PROTOCOL_ERROR || c == ENHANCE_YOUR_CALM
        })
        || frames.iter().any(
            |f| f.0 == HEADERS && f.2 == 1 && f.3.first() == Some(&0x8d), /* :status 431? */
        );
    let answered_ok = frames
        .iter()
        .any(|f| f.0 == HEADERS && f.2 == 1 && f.3.first() == Some(&0x88));
    assert!(!answered_ok, "the bomb was served: {frames:?}");
    assert!(
        refused || frames.iter().any(|f| f.0 == HEADERS && f.2 == 1),
        "{frames:?}"
    );
    assert!(!s.log().contains("GET /info"), "the app saw the bomb");
    still_serves(&s);
}

/// More streams at once than --http2-max-concurrent-streams: the excess
/// are refused (REFUSED_STREAM) and never reach the app, and the server
/// said the limit in its SETTINGS.
#[test]
fn stream_count_is_capped() {
    let s = start(&[
        "-k",
        "gthread",
        "--http2-max-concurrent-streams",
        "5",
        "--access-logfile",
        "-",
    ]);
    let mut r = Raw::open(s.port);
    let mut batch = Vec::new();
    for i in 0..50u32 {
        batch.extend_from_slice(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            2 * i + 1,
            &get_block("/sleep?0.3"),
        ));
    }
    let _ = r.send(&batch);
    r.read_for(Duration::from_secs(3));
    let frames = r.frames();
    let settings = frames
        .iter()
        .find(|f| f.0 == SETTINGS && f.1 == 0)
        .expect("SETTINGS");
    let max = settings
        .3
        .chunks(6)
        .find(|c| c[..2] == [0, 3])
        .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]));
    assert_eq!(max, Some(5));
    let refused = frames
        .iter()
        .filter(|f| f.0 == RST_STREAM && u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]) == 7)
        .count();
    assert!(refused >= 40 || r.goaway().is_some(), "{refused} refused");
    std::thread::sleep(Duration::from_millis(500));
    let served = s.log().matches("GET /sleep").count();
    assert!(served <= 10, "{served} streams reached the app");
    still_serves(&s);
}

/// A flood of PINGs whose answers are never read: the server does not
/// queue answers without bound (it stops reading, or closes), and other
/// clients are served meanwhile.
#[test]
fn ping_flood_does_not_grow_the_server() {
    let s = start(&[]);
    let pids = s.worker_pids();
    let rss_before = rss_kb(pids[0]);
    let mut r = Raw::open(s.port);
    r.s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ping = frame(PING, 0, 0, &[7u8; 8]);
    let batch = ping.repeat(10_000);
    let t0 = Instant::now();
    let mut sent = 0usize;
    while t0.elapsed() < Duration::from_secs(3) {
        if r.s.write_all(&batch).is_err() {
            break;
        }
        sent += batch.len();
    }
    still_serves(&s);
    let grown = rss_kb(pids[0]).saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "the worker grew by {grown} KiB for {sent} bytes of PINGs"
    );
    let _ = DATA;
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The ASGI worker through the same gateway: the scope says HTTP/2, a
/// body arrives, and a streamed response comes block by block.
#[test]
fn asgi_streams_over_http2() {
    let mut args = vec!["-k", "asgi", "asgi_app:app"];
    args.extend_from_slice(H2C);
    let s = Server::start(&args);
    rt().block_on(async {
        let mut c = connect(s.port, None).await;
        let r = fetch(&mut c, "POST", "/scope", &[], Some(b"hello".to_vec())).await;
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["http_version"].str(), Some("2"));
        assert_eq!(j["scheme"].str(), Some("http"));
        assert_eq!(j["body_len"].as_u64(), Some(5));
        let req = http::Request::get("http://t/stream?n=3&gap=0.6")
            .body(())
            .unwrap();
        let mut c = c.ready().await.unwrap();
        let (resp, _) = c.send_request(req, true).unwrap();
        let t0 = Instant::now();
        let mut body = resp.await.unwrap().into_body();
        let mut times = Vec::new();
        let mut got = Vec::new();
        while let Some(d) = body.data().await {
            let d = d.unwrap();
            let _ = body.flow_control().release_capacity(d.len());
            if !d.is_empty() {
                times.push(t0.elapsed());
                got.extend_from_slice(&d);
            }
        }
        assert_eq!(got, b"chunk-0;chunk-1;chunk-2;");
        assert!(
            times[0] + Duration::from_millis(700) < *times.last().unwrap(),
            "{times:?}"
        );
    });
}

// --- HTTP/2 over TLS, negotiated by ALPN ---

fn tls_client(alpn: &[&[u8]]) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let cert = repo_dir().join("tests/data/h2-cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(cfg)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(port: u16, alpn: &[&[u8]]) -> Option<TlsStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_client(alpn), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            eprintln!("handshake: {e}");
            return None;
        }
    }
    Some(s)
}

/// GET `path` as stream 1 of a new HTTP/2 connection over `s`; the
/// response's first header byte (0x88 is `:status 200`) and its body.
fn tls_h2_get(s: &mut TlsStream, path: &str) -> (u8, Vec<u8>) {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&frame(SETTINGS, 0, 0, &[]));
    out.extend_from_slice(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_block(path),
    ));
    s.write_all(&out).unwrap();
    s.flush().unwrap();
    let mut seen = Vec::new();
    let (mut status, mut body) = (0u8, Vec::new());
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "the connection ended before the response");
        seen.extend_from_slice(&buf[..n]);
        while seen.len() >= 9 {
            let len = u32::from_be_bytes([0, seen[0], seen[1], seen[2]]) as usize;
            if seen.len() < 9 + len {
                break;
            }
            let (kind, flags) = (seen[3], seen[4]);
            let sid = u32::from_be_bytes([seen[5], seen[6], seen[7], seen[8]]);
            let payload = seen[9..9 + len].to_vec();
            seen.drain(..9 + len);
            if sid == 1 && kind == HEADERS {
                status = payload[0];
            }
            if sid == 1 && kind == DATA {
                body.extend_from_slice(&payload);
            }
            if sid == 1 && flags & END_STREAM != 0 {
                return (status, body);
            }
        }
    }
}

/// With TLS, ALPN offers h2 (preferred here) and http/1.1: a client that
/// picks h2 is served HTTP/2 (https in the environ), one that offers only
/// http/1.1 or nothing is served HTTP/1.1 on the same port.
#[test]
fn alpn_h2_over_tls() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bind = format!("127.0.0.1:{port}");
    let cert = repo_dir().join("tests/data/h2-cert.pem");
    let key = repo_dir().join("tests/data/h2-key.pem");
    let s = Server::spawn(
        &[
            "h2app:app",
            "-k",
            "gthread",
            "-b",
            &bind,
            "--certfile",
            cert.to_str().unwrap(),
            "--keyfile",
            key.to_str().unwrap(),
            "--http-protocols",
            "h2,h1",
        ],
        &[],
    );
    let mut tls = None;
    wait_until(Duration::from_secs(20), || {
        tls = tls_connect(port, &[b"h2", b"http/1.1"]);
        tls.is_some()
    });
    let mut tls = tls.unwrap_or_else(|| panic!("no TLS handshake; log:\n{}", s.log()));
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = tls_h2_get(&mut tls, "/info");
    assert_eq!(status, 0x88, "not :status 200; log:\n{}", s.log());
    let j = Json::parse(std::str::from_utf8(&body).unwrap()).unwrap();
    assert_eq!(j["SERVER_PROTOCOL"].str(), Some("HTTP/2.0"));
    assert_eq!(j["wsgi.url_scheme"].str(), Some("https"));

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut c = tls_connect(port, alpn).unwrap();
        assert_ne!(c.conn.alpn_protocol(), Some(&b"h2"[..]));
        c.write_all(b"GET /info HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"SERVER_PROTOCOL\": \"HTTP/1.1\""), "{text}");
    }
}
