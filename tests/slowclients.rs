//! Slow clients must not starve a worker: hundreds of slowloris
//! connections (a header byte per second) and slow request bodies, more
//! than the workers have connection slots, while a normal client keeps
//! getting every answer. Against both worker classes.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const SLOWLORIS: usize = 300;
const SLOW_BODIES: usize = 20;
const NORMAL_REQUESTS: usize = 30;

/// One attacking connection: what it sends, a byte per round.
struct Slow {
    stream: Option<TcpStream>,
    sent: usize,
}

fn payload(body: bool) -> &'static [u8] {
    if body {
        // A complete head announcing a body that then trickles in.
        b"POST /sleep HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    } else {
        // A head that never ends.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    }
}

/// Keep `SLOWLORIS + SLOW_BODIES` slow connections open (reconnecting any
/// the server closes, as slowhttptest does) until `stop`; each round
/// sends one more byte on each. Returns how many connections were made.
fn attack(port: u16, stop: Arc<AtomicBool>, rounds: Arc<AtomicUsize>) -> usize {
    let mut conns: Vec<Slow> = (0..SLOWLORIS + SLOW_BODIES)
        .map(|_| Slow {
            stream: None,
            sent: 0,
        })
        .collect();
    let mut made = 0;
    while !stop.load(Ordering::SeqCst) {
        let round = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            let body = i >= SLOWLORIS;
            if c.stream.is_none() {
                let addr = ("127.0.0.1", port);
                let Ok(s) = TcpStream::connect(addr) else {
                    continue;
                };
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                made += 1;
                c.stream = Some(s);
                c.sent = 0;
                // The slow-body clients send their head at once.
                if body {
                    c.sent = payload(true).iter().position(|&b| b == b'a').unwrap_or(0);
                    let head = &payload(true)[..c.sent];
                    if c.stream
                        .as_mut()
                        .is_some_and(|s| s.write_all(head).is_err())
                    {
                        c.stream = None;
                        continue;
                    }
                }
            }
            let p = payload(body);
            let byte = [p[c.sent % p.len()]];
            let ok = c
                .stream
                .as_mut()
                .is_some_and(|s| s.write_all(&byte).is_ok());
            if ok {
                c.sent += 1;
            } else {
                c.stream = None;
            }
        }
        rounds.fetch_add(1, Ordering::SeqCst);
        while round.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
    }
    made
}

fn slow_clients_do_not_starve(worker_args: &[&str]) {
    let mut args = vec![
        "-w",
        "2",
        "--worker-connections",
        "100",
        "--header-timeout",
        "10",
        "--body-timeout",
        "10",
    ];
    args.extend_from_slice(worker_args);
    args.push("threads:app");
    let s = Server::start(&args);
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        thread::spawn(move || attack(port, stop, rounds))
    };
    // Let the attack fill every slot (300 + 20 connections for 2 x 100).
    assert!(
        wait_until(Duration::from_secs(20), || rounds.load(Ordering::SeqCst)
            >= 2),
        "the attack did not get going"
    );
    let mut failures = Vec::new();
    for i in 0..NORMAL_REQUESTS {
        // Each request on a new connection, so it has to be accepted
        // while the slots are contested. 3 s is far beyond the time a
        // tiny response takes, and much shorter than the time slow clients
        // would hold the slots if they could (10 s per head, renewed on
        // reconnect).
        let started = Instant::now();
        let res = (|| -> std::io::Result<Response> {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            stream.set_write_timeout(Some(Duration::from_secs(3)))?;
            let mut r = Reader::new(common::Stream::Tcp(stream));
            r.src
                .write_all(&build_request("GET", &format!("/sleep?id={i}"), &[], b""))?;
            r.response(false)
        })();
        if std::env::var_os("SLOWCLIENTS_VERBOSE").is_some() {
            eprintln!(
                "request {i}: {:?} {:?}",
                started.elapsed(),
                res.as_ref().map(|r| r.status)
            );
        }
        match res {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("request {i}: status {}", r.status)),
            Err(e) => failures.push(format!("request {i}: {e}")),
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let made = attacker.join().expect("attacker");
    assert!(
        made >= SLOWLORIS + SLOW_BODIES,
        "the attack made only {made} connections"
    );
    assert!(
        failures.is_empty(),
        "{} of {NORMAL_REQUESTS} normal requests failed under a slowloris attack: {failures:?}\nlog:\n{}",
        failures.len(),
        s.log()
    );
}

#[test]
fn slowloris_does_not_starve_sync() {
    slow_clients_do_not_starve(&["-k", "sync"]);
}

#[test]
fn slowloris_does_not_starve_gthread() {
    slow_clients_do_not_starve(&["-k", "gthread", "--threads", "4"]);
}

/// Whether the server closes `c` within `within` (reading what it sends).
fn closed_within(c: &mut TcpStream, within: Duration, trickle: Option<&[u8]>) -> bool {
    use std::io::Read;
    let end = Instant::now() + within;
    let mut buf = [0u8; 4096];
    let mut i = 0;
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    while Instant::now() < end {
        if let Some(bytes) = trickle {
            if c.write_all(&bytes[i % bytes.len()..][..1]).is_err() {
                return true;
            }
            i += 1;
        }
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn header_and_body_timeouts_close_slow_clients() {
    for worker in [
        &["-k", "sync"][..],
        &["-k", "gthread", "--threads", "2"][..],
    ] {
        let mut args = vec!["-w", "1", "--header-timeout", "1", "--body-timeout", "1"];
        args.extend_from_slice(worker);
        args.push("threads:app");
        let s = Server::start(&args);
        // A head trickling in a byte every 200 ms is cut off at the header
        // timeout, although it never stalls.
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        assert!(
            closed_within(
                &mut c,
                Duration::from_secs(6),
                Some(b"GET / HTTP/1.1\r\nX-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
            ),
            "a trickling head was not closed ({worker:?})"
        );
        // A connection that never sends anything, likewise.
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        assert!(
            closed_within(&mut c, Duration::from_secs(6), None),
            "silent connection ({worker:?})"
        );
        // A body that stops arriving is cut off at the body timeout.
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        c.write_all(b"POST /env HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .expect("send");
        assert!(
            closed_within(&mut c, Duration::from_secs(6), None),
            "stalled body ({worker:?})"
        );
        // The worker still serves.
        assert_eq!(get(s.port, "/env").status, 200);
    }
}
