//! The gthread worker: requests run on a pool of Python threads while the
//! event loop keeps the connections. Overlap is asserted from evidence the
//! app collects (how many calls it saw inside at once), never from timings.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

/// A connection whose reads may wait `secs` (the app may sleep a while).
fn patient(port: u16, secs: u64) -> Conn {
    let c = Conn::connect(port);
    c.r.src
        .set_timeouts(Some(Duration::from_secs(secs)))
        .expect("set socket timeouts");
    c
}

/// `n` concurrent GETs of `path`, each on its own connection.
fn concurrent_gets(port: u16, path: &str, n: usize, secs: u64) -> Vec<Response> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_string();
            thread::spawn(move || patient(port, secs).request("GET", &path, &[], b""))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

fn seen(r: &Response) -> u64 {
    assert_eq!(r.status, 200, "body: {}", r.text());
    r.json()["seen"].as_u64().expect("seen")
}

#[test]
fn requests_overlap_on_threads() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "4", "threads:app"]);
    // Each call waits until four are inside the app together: only
    // possible if four threads run them at once.
    let rs = concurrent_gets(s.port, "/barrier?n=4&wait=10", 4, 20);
    for r in &rs {
        assert_eq!(seen(r), 4, "log:\n{}", s.log());
    }
    let threads: std::collections::HashSet<String> = rs
        .iter()
        .map(|r| format!("{:?}", r.json()["thread"].as_u64()))
        .collect();
    assert_eq!(threads.len(), 4, "four distinct Python threads");
}

#[test]
fn at_most_threads_run_at_once() {
    let s = Server::start(&["-w", "1", "--threads", "2", "threads:app"]);
    // Three calls wanting three inside at once: only two threads exist, so
    // none ever sees three (they give up waiting after 1 s).
    let rs = concurrent_gets(s.port, "/barrier?n=3&wait=1", 3, 20);
    let max = rs.iter().map(seen).max().unwrap_or(0);
    assert_eq!(max, 2, "log:\n{}", s.log());
}

#[test]
fn multithread_flag_and_sync_with_threads_means_gthread() {
    let s = Server::start(&["-w", "1", "-k", "sync", "--threads", "2", "threads:app"]);
    assert!(
        s.log().contains("Using worker: gthread"),
        "log:\n{}",
        s.log()
    );
    let env = get(s.port, "/env").json();
    assert_eq!(env["multithread"].as_bool(), Some(true));
    drop(s);
    let s = Server::start(&["-w", "1", "threads:app"]);
    assert!(s.log().contains("Using worker: sync"), "log:\n{}", s.log());
    assert_eq!(
        get(s.port, "/env").json()["multithread"].as_bool(),
        Some(false)
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "4", "threads:app"]);
    let mut c = patient(s.port, 20);
    // Earlier requests sleep longer: threads must not reorder them.
    let mut all = Vec::new();
    for (i, secs) in ["0.3", "0.2", "0.1", "0", "0"].iter().enumerate() {
        all.extend(build_request(
            "GET",
            &format!("/sleep?s={secs}&id={i}"),
            &[("Host", "x")],
            b"",
        ));
    }
    c.send(&all).expect("send pipelined requests");
    for i in 0..5 {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["id"].str(), Some(i.to_string().as_str()));
    }
    // The connection stays usable.
    let r = c.request("GET", "/sleep?id=last", &[], b"");
    assert_eq!(r.json()["id"].str(), Some("last"));
}

#[test]
fn graceful_stop_waits_for_busy_threads() {
    let mut s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "4",
        "--graceful-timeout",
        "20",
        "threads:app",
    ]);
    let port = s.port;
    let clients = thread::spawn(move || concurrent_gets(port, "/barrier?n=4&wait=5&then=2", 4, 30));
    // The four requests meet inside the app, then sleep 2 s: TERM lands
    // while all four threads are busy.
    thread::sleep(Duration::from_millis(1000));
    s.signal(libc::SIGTERM);
    let rs = clients.join().expect("clients");
    for r in &rs {
        assert_eq!(r.status, 200, "log:\n{}", s.log());
    }
    let st = s.wait_exit(Duration::from_secs(20));
    assert_eq!(st.and_then(|st| st.code()), Some(0), "log:\n{}", s.log());
}

#[test]
fn worker_connections_limit_holds_busy_connections() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "4",
        "--worker-connections",
        "2",
        "threads:app",
    ]);
    // Four threads, but only two connections at a time: the third call is
    // not accepted until one of the first two is done.
    let rs = concurrent_gets(s.port, "/barrier?n=3&wait=1.5", 3, 20);
    let max = rs.iter().map(seen).max().unwrap_or(0);
    assert_eq!(max, 2, "log:\n{}", s.log());
}

#[test]
fn max_requests_recycles_a_gthread_worker() {
    let s = Server::start(&[
        "-w",
        "1",
        "--threads",
        "2",
        "--max-requests",
        "3",
        "threads:app",
    ]);
    let first = s.wait_workers(1, Duration::from_secs(10));
    for _ in 0..8 {
        assert_eq!(get(s.port, "/env").status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now = s.worker_pids();
            now.len() == 1 && now != first
        }),
        "log:\n{}",
        s.log()
    );
    assert!(
        s.log().contains("Autorestarting worker"),
        "log:\n{}",
        s.log()
    );
}

#[test]
fn a_stuck_thread_trips_the_worker_timeout() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "2",
        "--timeout",
        "2",
        "threads:app",
    ]);
    let first = s.wait_workers(1, Duration::from_secs(10));
    let port = s.port;
    // The client gives up long before the app would answer.
    let _client = thread::spawn(move || {
        let mut c = patient(port, 20);
        let _ = c.send(&build_request("GET", "/sleep?s=60", &[("Host", "x")], b""));
        let _ = c.try_read_response();
    });
    // The other thread and the loop stay responsive meanwhile...
    thread::sleep(Duration::from_millis(300));
    assert_eq!(get(s.port, "/env").status, 200);
    // ...but the stuck thread stops the heartbeat.
    assert!(
        wait_until(Duration::from_secs(15), || s
            .log()
            .contains("WORKER TIMEOUT")),
        "log:\n{}",
        s.log()
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            let now = s.worker_pids();
            now.len() == 1 && now != first
        }),
        "log:\n{}",
        s.log()
    );
    assert_eq!(get(s.port, "/env").status, 200);
}

#[test]
fn short_requests_under_load_do_not_trip_the_timeout() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "2",
        "threads:app",
    ]);
    // 3+ s of back-to-back overlapping 0.2 s requests: always some thread
    // busy, none on one request for long.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let port = s.port;
            thread::spawn(move || {
                let mut c = patient(port, 20);
                for _ in 0..16 {
                    assert_eq!(c.request("GET", "/sleep?s=0.2", &[], b"").status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    assert!(!s.log().contains("WORKER TIMEOUT"), "log:\n{}", s.log());
}

#[test]
fn streamed_uploads_on_threads_with_access_log() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "3",
        "--access-logfile",
        "-",
        "echo:app",
    ]);
    // Bodies beyond the buffered limit are read by the threads from the
    // socket (GIL released), several at once.
    let handles: Vec<_> = (0..3u64)
        .map(|seed| {
            let port = s.port;
            thread::spawn(move || {
                let data = pseudo_random(3 * 1024 * 1024 + seed as usize, seed);
                let mut c = patient(port, 20);
                let chunked_body = chunked(&data, &[7000, 65536, 100_000]);
                let r = if seed == 0 {
                    c.request(
                        "POST",
                        "/upload",
                        &[("Transfer-Encoding", "chunked")],
                        &chunked_body,
                    )
                } else {
                    c.request("POST", "/upload", &[], &data)
                };
                assert_eq!(r.status, 200);
                let j = r.json();
                assert_eq!(j["body_length"].as_u64(), Some(data.len() as u64));
                assert_eq!(j["body_sha256"].str(), Some(sha256_hex(&data).as_str()));
                // The connection is reusable after a streamed body.
                assert_eq!(c.request("GET", "/after", &[], b"").status, 200);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("upload client");
    }
    assert!(
        wait_until(Duration::from_secs(5), || s
            .log()
            .matches("\"POST /upload HTTP/1.1\" 200")
            .count()
            == 3),
        "access log lines for the uploads; log:\n{}",
        s.log()
    );
}

#[test]
fn large_and_streamed_responses_on_threads() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "2", "stream:app"]);
    let mut c = patient(s.port, 20);
    for _ in 0..3 {
        let r = c.request("GET", "/", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
        assert!(r.text().starts_with("first chunk\nsecond chunk\nxxx"));
        assert!(r.text().ends_with("\nlast chunk\n"));
    }
}

/// How many bytes a loopback TCP connection whose reader never reads
/// takes before a non-blocking send would block (the kernel's buffers).
fn loopback_absorbs() -> usize {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let _client = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = l.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    let chunk = vec![b'x'; 64 * 1024];
    let mut total = 0;
    while total < 256 << 20 {
        match server.write(&chunk) {
            Ok(n) => total += n,
            Err(_) => break,
        }
    }
    total
}

#[test]
fn a_client_that_does_not_read_does_not_hold_the_thread() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "1", "threads:app"]);
    // Responses 512 KiB larger than the kernel buffers, never read: the
    // rest waits in the loop, not in the only thread.
    let n = loopback_absorbs() + 512 * 1024;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::connect(s.port);
        c.send(&build_request("GET", &format!("/big?n={n}"), &[], b""))
            .expect("send");
        stalled.push(c);
    }
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(get(s.port, "/env").status, 200, "log:\n{}", s.log());
    }
    drop(stalled);
}

#[test]
fn overlapping_long_requests_within_the_timeout_do_not_trip_it() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "3",
        "threads:app",
    ]);
    // Four clients, staggered, each making 2 s requests back to back: at
    // every moment some request is 1-2 s old, none ever near 3 s.
    let handles: Vec<_> = (0..4u64)
        .map(|i| {
            let port = s.port;
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(500 * i));
                let mut c = patient(port, 20);
                for _ in 0..3 {
                    assert_eq!(c.request("GET", "/sleep?s=2", &[], b"").status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    assert!(!s.log().contains("WORKER TIMEOUT"), "log:\n{}", s.log());
}

#[test]
fn a_request_that_blocks_the_loops_thread_hands_the_loop_over() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "2", "threads:app"]);
    let port = s.port;
    // Quick requests one at a time: the loop's own thread runs them.
    let mut c = patient(port, 20);
    for _ in 0..20 {
        assert_eq!(c.request("GET", "/env", &[], b"").status, 200);
    }
    // So does this one, which then waits for a second caller. That caller
    // is only accepted and run if another thread took the loop over.
    let first = thread::spawn(move || c.request("GET", "/barrier?n=2&wait=10", &[], b""));
    thread::sleep(Duration::from_millis(200));
    let second = patient(port, 20).request("GET", "/barrier?n=2&wait=10", &[], b"");
    let first = first.join().expect("first client");
    assert_eq!(seen(&first), 2, "log:\n{}", s.log());
    assert_eq!(seen(&second), 2, "log:\n{}", s.log());
}

/// Context switches of every thread of `pid` so far.
fn context_switches(pid: i32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let status =
            std::fs::read_to_string(task.expect("task").path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn an_idle_gthread_worker_sleeps() {
    let s = Server::start(&["-w", "1", "-k", "gthread", "--threads", "4", "threads:app"]);
    let worker = s.wait_workers(1, Duration::from_secs(10))[0];
    // A burst of requests run by the loop's thread wakes a standby thread
    // that watches it every millisecond...
    let mut c = patient(s.port, 20);
    for _ in 0..200 {
        assert_eq!(c.request("GET", "/env", &[], b"").status, 200);
    }
    drop(c);
    // ...which goes back to sleep once requests stop: over 2 s idle, the
    // worker wakes for its 1 s housekeeping, not 1000 times a second.
    thread::sleep(Duration::from_millis(300));
    let before = context_switches(worker);
    thread::sleep(Duration::from_secs(2));
    let woke = context_switches(worker) - before;
    assert!(woke < 50, "{woke} context switches in 2 s idle");
}

/// Every request a timed-out gthread worker was running, whose response
/// had not started, is answered 500 and its connection closed cleanly.
/// (gunicorn 27's gthread worker has no timeout for a stuck thread: its
/// main loop keeps the heartbeat; ferrocorn's times out, see README.)
#[test]
fn timed_out_requests_get_500_and_close() {
    let s = Server::start(&[
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "2",
        "--timeout",
        "2",
        "threads:app",
    ]);
    let first = s.wait_workers(1, Duration::from_secs(10));
    let port = s.port;
    let clients: Vec<_> = (0..2)
        .map(|i| {
            thread::spawn(move || {
                let mut c = patient(port, 30);
                let path = format!("/sleep?s=60&id={i}");
                c.send(&build_request("GET", &path, &[("Host", "x")], b""))
                    .expect("send");
                let r = c.try_read_response();
                let rest = c.read_to_end();
                (r, rest, c.r.eof)
            })
        })
        .collect();
    for h in clients {
        let (r, rest, eof) = h.join().unwrap();
        let r = r.unwrap_or_else(|e| panic!("no response: {e}; log:\n{}", s.log()));
        assert_eq!(r.status, 500, "{r:?}");
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.text(), "Internal Server Error\n");
        assert!(
            rest.is_empty() && eof,
            "not a clean close: {rest:?} eof={eof}"
        );
    }
    let log = s.log();
    assert!(
        log.contains(&format!("WORKER TIMEOUT (pid:{})", first[0])),
        "log:\n{log}"
    );
    assert!(log.contains("Fatal Python error: Aborted"), "log:\n{log}");
    assert!(log.contains("threads.py"), "log:\n{log}");
    assert_eq!(get(s.port, "/env").status, 200);
}

/// With two workers, one at its `--worker-connections` limit and the other
/// with room, a new connection is the roomy worker's to take: no idle
/// keep-alive client of the full worker is closed for it (at the limit a
/// worker evicts only for a connection that is still waiting).
#[test]
fn a_full_worker_leaves_new_connections_to_one_with_room() {
    let s = Server::start(&[
        "-k",
        "gthread",
        "--threads",
        "2",
        "-w",
        "2",
        "--worker-connections",
        "4",
        "--keep-alive",
        "60",
        "hello:app",
    ]);
    // Seven idle keep-alive clients: room for them all (2 x 4), whatever
    // the split, only if no worker evicts while its sibling has room.
    let mut conns = Vec::new();
    for _ in 0..7 {
        let mut c = Conn::connect(s.port);
        let r = c.request("GET", "/", &[], b"");
        assert_eq!(r.status, 200);
        conns.push(c);
        // Idle long enough to be evictable (0.5 s).
        std::thread::sleep(Duration::from_millis(600));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.send_request("GET", "/", &[], b"");
        match c.try_read_response() {
            Ok(r) => assert_eq!(r.status, 200, "client {i}"),
            Err(e) => panic!("idle client {i} was closed: {e}\n{}", s.log()),
        }
    }
}
