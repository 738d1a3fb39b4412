//! Metrics: statsd as gunicorn sends it (a UDP receiver checks names,
//! types and values after known traffic, for sync, gthread and asgi; an
//! unreachable or stuck statsd server neither slows nor breaks requests),
//! the master's Prometheus endpoint (counts after known traffic, kept
//! across workers killed with SIGKILL, restarts by reason, a slow scraper
//! that cannot lock a real one out), the JSON access log (lines parsed by
//! Python's json) and the queue-time atom `%(Q)s`.
//! Apps: tests/apps/accesslog.py (status from ?status=), slow.py,
//! asgi_app.py.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WSGI_APP: &str = "accesslog:app";

// ---------------------------------------------------------------------------
// statsd

/// A statsd server: every datagram it received, one metric each.
struct Statsd {
    sock: UdpSocket,
    got: Vec<String>,
}

impl Statsd {
    fn new() -> Statsd {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Statsd {
            sock,
            got: Vec::new(),
        }
    }

    fn addr(&self) -> String {
        self.sock.local_addr().unwrap().to_string()
    }

    /// Receive for `d`.
    fn listen(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.got
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Receive until `cond` holds on what arrived (at most 10 s).
    fn until(&mut self, mut cond: impl FnMut(&[String]) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if cond(&self.got) {
                return true;
            }
            self.listen(Duration::from_millis(50));
        }
        cond(&self.got)
    }

    fn count(got: &[String], exact: &str) -> usize {
        got.iter().filter(|m| *m == exact).count()
    }
}

/// Known traffic through a server of `class` sending statsd, then every
/// metric gunicorn sends, with gunicorn's names, types and values.
fn statsd_after_known_traffic(class: &[&str], app: &str, ok: (&str, u16), missing: &str) {
    let mut st = Statsd::new();
    let addr = st.addr();
    let mut args = vec![
        "-w",
        "2",
        "--statsd-host",
        &addr,
        "--statsd-prefix",
        "app",
        "--dogstatsd-tags",
        "env:test,team:web",
        "--enable-backlog-metric",
    ];
    args.extend_from_slice(class);
    args.push(app);
    let s = Server::start(&args);
    // The master's gauge of workers, and the backlog once a second.
    assert!(
        st.until(|g| g
            .iter()
            .any(|m| m == "app.gunicorn.workers:2|g|#env:test,team:web")),
        "no workers gauge: {:?}",
        st.got
    );
    assert!(
        st.until(|g| g.iter().any(
            |m| m.starts_with("app.gunicorn.backlog:") && m.ends_with("|h|#env:test,team:web")
        )),
        "no backlog histogram: {:?}",
        st.got
    );
    // What the start-up probe sent is set aside.
    st.listen(Duration::from_millis(300));
    st.got.clear();
    let (ok_path, ok_status) = ok;
    for _ in 0..5 {
        assert_eq!(get(s.port, ok_path).status, ok_status);
    }
    for _ in 0..2 {
        assert_eq!(get(s.port, missing).status, 404);
    }
    let tags = "|#env:test,team:web";
    let requests = format!("app.gunicorn.requests:1|c|@1.0{tags}");
    assert!(
        st.until(|g| Statsd::count(g, &requests) >= 7),
        "{:?}",
        st.got
    );
    st.listen(Duration::from_millis(300));
    let g = &st.got;
    assert_eq!(Statsd::count(g, &requests), 7, "{g:?}");
    assert_eq!(
        Statsd::count(
            g,
            &format!("app.gunicorn.request.status.{ok_status}:1|c|@1.0{tags}")
        ),
        5,
        "{g:?}"
    );
    assert_eq!(
        Statsd::count(
            g,
            &format!("app.gunicorn.request.status.404:1|c|@1.0{tags}")
        ),
        2,
        "{g:?}"
    );
    let durations: Vec<f64> = g
        .iter()
        .filter_map(|m| m.strip_prefix("app.gunicorn.request.duration:"))
        .map(|rest| {
            let v = rest
                .strip_suffix(&format!("|ms{tags}"))
                .unwrap_or_else(|| panic!("a timer: {rest}"));
            // Python's str() of a float: always a decimal point.
            assert!(v.contains('.'), "{v}");
            v.parse::<f64>().unwrap()
        })
        .collect();
    assert_eq!(durations.len(), 7, "{g:?}");
    assert!(
        durations.iter().all(|d| *d >= 0.0 && *d < 5000.0),
        "{durations:?}"
    );
    // Nothing but these besides the master's (no datagram holds two).
    let per_request: Vec<&String> = g
        .iter()
        .filter(|m| {
            !m.starts_with("app.gunicorn.backlog:") && !m.starts_with("app.gunicorn.workers:")
        })
        .collect();
    assert_eq!(per_request.len(), 7 * 3, "{g:?}");

    // The master's error-log line for a worker killed with SIGKILL is a
    // gunicorn.log.error, and the gauge follows the workers.
    st.got.clear();
    let victim = s.worker_pids()[0];
    assert!(kill(victim, libc::SIGKILL));
    let err = format!("app.gunicorn.log.error:1|c|@1.0{tags}");
    assert!(st.until(|g| g.contains(&err)), "{:?}", st.got);
    // TTOU: one worker fewer.
    s.signal(libc::SIGTTOU);
    assert!(
        st.until(|g| g
            .iter()
            .any(|m| *m == format!("app.gunicorn.workers:1|g{tags}"))),
        "{:?}",
        st.got
    );
}

#[test]
fn statsd_sync() {
    statsd_after_known_traffic(&[], WSGI_APP, ("/?status=201", 201), "/?status=404");
}

#[test]
fn statsd_gthread() {
    statsd_after_known_traffic(
        &["-k", "gthread", "--threads", "4"],
        WSGI_APP,
        ("/?status=201", 201),
        "/?status=404",
    );
}

#[test]
fn statsd_asgi() {
    statsd_after_known_traffic(&["-k", "asgi"], "asgi_app:app", ("/hello", 200), "/nope");
}

#[test]
fn statsd_unix_socket_and_an_app_exception() {
    let dir = TempDir::new("statsd-unix");
    let path = dir.join("statsd.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let host = format!("unix://{}", path.display());
    let s = Server::start(&["--statsd-host", &host, "raiser:app"]);
    let _ = get(s.port, "/");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    wait_until(Duration::from_secs(5), || {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.iter()
            .any(|m| m == "gunicorn.request.status.500:1|c|@1.0")
            && got.iter().any(|m| m == "gunicorn.log.exception:1|c|@1.0")
    });
    // No prefix, no tags: the bare names; the app's exception is counted
    // as gunicorn counts its log.exception.
    assert!(
        got.iter().any(|m| m == "gunicorn.requests:1|c|@1.0"),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m == "gunicorn.request.status.500:1|c|@1.0"),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| m == "gunicorn.log.exception:1|c|@1.0"),
        "{got:?}"
    );
}

/// `n` requests on one keep-alive connection; the longest one.
fn timed_requests(port: u16, n: usize) -> Duration {
    let mut c = Conn::connect(port);
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let r = c.request("GET", "/", &[("Host", "x")], b"");
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
    }
    worst
}

#[test]
fn an_unreachable_or_stuck_statsd_server_costs_nothing() {
    // Nothing listens on this port: every send after the first fails with
    // ECONNREFUSED.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&["--statsd-host", &addr, "hello:app"]);
    let started = Instant::now();
    let worst = timed_requests(s.port, 300);
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A socket path nobody serves, and one whose reader never reads: its
    // queue fills, and every later datagram is dropped (a blocking send
    // would hang the worker here).
    let dir = TempDir::new("statsd-stuck");
    let stuck = dir.join("stuck.sock");
    let _reader = UnixDatagram::bind(&stuck).unwrap();
    for host in [
        format!("unix://{}", dir.join("nobody.sock").display()),
        format!("unix://{}", stuck.display()),
    ] {
        let s = Server::start(&["--statsd-host", &host, "hello:app"]);
        let worst = timed_requests(s.port, 1500);
        assert!(worst < Duration::from_secs(1), "{host}: {worst:?}");
        let log = s.log();
        assert!(!log.contains("statsd"), "{log}");
    }
    let log = s.log();
    assert!(!log.contains("WARNING") && !log.contains("ERROR"), "{log}");
}

#[test]
fn statsd_settings_are_checked() {
    let dir = TempDir::new("statsd-cli");
    let out = run_cli(
        &["--statsd-host", "localhost:port", "hello:app"],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--statsd-host"), "{}", out.stderr);
    let out = run_cli(
        &[
            "--statsd-host",
            "localhost",
            "--statsd-prefix",
            "p",
            "--dogstatsd-tags",
            "a:b",
            "--enable-backlog-metric",
            "--metrics-bind",
            "127.0.0.1:9100",
            "--access-log-json",
            "--logger-class",
            "gunicorn.instrument.statsd.Statsd",
            "--print-config",
            "hello:app",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for line in [
        "statsd_host = \"localhost\"",
        "statsd_prefix = \"p\"",
        "dogstatsd_tags = \"a:b\"",
        "enable_backlog_metric = true",
        "metrics_bind = \"127.0.0.1:9100\"",
        "access_log_json = true",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line}: {}",
            out.stdout
        );
    }
    let out = run_cli(&["--metrics-bind", "[::1", "hello:app"], &[], dir.path());
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--metrics-bind"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Prometheus

/// The metrics address from the master's "Metrics at" line.
fn metrics_port(s: &Server) -> u16 {
    let mut port = None;
    wait_until(Duration::from_secs(5), || {
        port = s
            .log()
            .split("Metrics at: http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok());
        port.is_some()
    });
    port.unwrap_or_else(|| panic!("no 'Metrics at' line:\n{}", s.log()))
}

/// One scrape: the raw answer.
fn scrape_raw(port: u16, path: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// One scrape, as `series -> value` (`name{labels}` as written).
fn scrape(port: u16) -> HashMap<String, f64> {
    let raw = scrape_raw(port, "/metrics");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut m = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (k, v) = line.rsplit_once(' ').expect("series value");
        m.insert(k.to_string(), v.parse::<f64>().expect(line));
    }
    m
}

fn val(m: &HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(0.0)
}

fn delta(after: &HashMap<String, f64>, before: &HashMap<String, f64>, k: &str) -> f64 {
    val(after, k) - val(before, k)
}

const DUR_COUNT: &str = "ferrocorn_request_duration_seconds_count";

/// A scrape once the start-up probe's request is counted (its answer may
/// reach the client a moment before the worker counts it).
fn settled(port: u16) -> HashMap<String, f64> {
    wait_until(Duration::from_secs(5), || {
        val(&scrape(port), DUR_COUNT) >= 1.0
    });
    std::thread::sleep(Duration::from_millis(100));
    scrape(port)
}

/// Counts after known traffic, then every worker killed with SIGKILL: the
/// counts are still there, and the restarts are counted as crashes.
fn scrape_across_a_crash(class: &[&str], app: &str, ok: (&str, u16), missing: &str) {
    let mut args = vec!["-w", "2", "--metrics-bind", "127.0.0.1:0"];
    args.extend_from_slice(class);
    args.push(app);
    let s = Server::start(&args);
    let m = metrics_port(&s);
    let (ok_path, ok_status) = ok;
    let ok_series = format!("ferrocorn_requests_total{{status=\"{ok_status}\"}}");
    let nf_series = "ferrocorn_requests_total{status=\"404\"}";
    let base = settled(m);
    assert_eq!(
        val(
            &base,
            &format!(
                "ferrocorn_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    for _ in 0..6 {
        assert_eq!(get(s.port, ok_path).status, ok_status);
    }
    for _ in 0..3 {
        assert_eq!(get(s.port, missing).status, 404);
    }
    // Every worker booted (the server answered when one had) and every
    // request handed back to its engine.
    let mut mid = scrape(m);
    wait_until(Duration::from_secs(20), || {
        mid = scrape(m);
        delta(&mid, &base, DUR_COUNT) >= 9.0
            && val(&mid, "ferrocorn_workers{state=\"idle\"}") == 2.0
            && val(&mid, "ferrocorn_requests_in_flight") == 0.0
    });
    assert_eq!(delta(&mid, &base, &ok_series), 6.0, "{mid:?}");
    assert_eq!(delta(&mid, &base, nf_series), 3.0, "{mid:?}");
    assert_eq!(delta(&mid, &base, DUR_COUNT), 9.0);
    assert_eq!(
        delta(&mid, &base, "ferrocorn_request_queue_seconds_count"),
        9.0
    );
    assert_eq!(
        val(
            &mid,
            "ferrocorn_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        val(&mid, DUR_COUNT)
    );
    assert_eq!(
        val(&mid, "ferrocorn_workers{state=\"idle\"}"),
        2.0,
        "{mid:?}"
    );
    assert_eq!(val(&mid, "ferrocorn_requests_in_flight"), 0.0);
    let old = s.worker_pids();
    assert_eq!(old.len(), 2);
    for p in &old {
        assert!(
            mid.get(&format!("ferrocorn_worker_rss_bytes{{pid=\"{p}\"}}"))
                .is_some_and(|v| *v > 1e6),
            "rss of {p}: {mid:?}"
        );
    }
    let listener = format!(
        "ferrocorn_listen_backlog{{listener=\"http://127.0.0.1:{}\"}}",
        s.port
    );
    assert_eq!(mid.get(&listener), Some(&0.0), "{mid:?}");
    assert_eq!(
        mid.get(&format!(
            "ferrocorn_listen_backlog_limit{{listener=\"http://127.0.0.1:{}\"}}",
            s.port
        )),
        Some(&2048.0)
    );

    for p in &old {
        assert!(kill(*p, libc::SIGKILL));
    }
    let mut after = scrape(m);
    let replaced = wait_until(Duration::from_secs(20), || {
        // The new workers first, then a scrape that shows them: a scrape
        // answered before the master reaped the old ones shows those as idle.
        let now = s.worker_pids();
        after = scrape(m);
        now.len() == 2
            && now.iter().all(|p| {
                !old.contains(p)
                    && after.contains_key(&format!("ferrocorn_worker_rss_bytes{{pid=\"{p}\"}}"))
            })
            && val(&after, "ferrocorn_workers{state=\"idle\"}") == 2.0
    });
    assert!(replaced, "{after:?}\n{}", s.log());
    assert_eq!(val(&after, &ok_series), val(&mid, &ok_series), "{after:?}");
    assert_eq!(val(&after, nf_series), val(&mid, nf_series));
    assert_eq!(val(&after, DUR_COUNT), val(&mid, DUR_COUNT));
    assert_eq!(
        delta(
            &after,
            &base,
            "ferrocorn_worker_restarts_total{reason=\"crash\"}"
        ),
        2.0,
        "{after:?}"
    );
    for r in ["timeout", "max_requests", "memory", "reload"] {
        assert_eq!(
            val(
                &after,
                &format!("ferrocorn_worker_restarts_total{{reason=\"{r}\"}}")
            ),
            0.0
        );
    }
    for p in &old {
        assert!(!after.contains_key(&format!("ferrocorn_worker_rss_bytes{{pid=\"{p}\"}}")));
    }
    // The new workers add to what the old ones counted.
    for _ in 0..2 {
        assert_eq!(get(s.port, ok_path).status, ok_status);
    }
    let mut last = scrape(m);
    wait_until(Duration::from_secs(5), || {
        last = scrape(m);
        delta(&last, &after, DUR_COUNT) >= 2.0
    });
    assert_eq!(delta(&last, &mid, &ok_series), 2.0, "{last:?}");
}

#[test]
fn scrape_sync() {
    scrape_across_a_crash(&[], WSGI_APP, ("/?status=201", 201), "/?status=404");
}

#[test]
fn scrape_gthread() {
    scrape_across_a_crash(
        &["-k", "gthread", "--threads", "3"],
        WSGI_APP,
        ("/?status=201", 201),
        "/?status=404",
    );
}

#[test]
fn scrape_asgi() {
    scrape_across_a_crash(&["-k", "asgi"], "asgi_app:app", ("/hello", 200), "/nope");
}

fn restarts(m: &HashMap<String, f64>, reason: &str) -> f64 {
    val(
        m,
        &format!("ferrocorn_worker_restarts_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn restarts_by_reason_max_requests_timeout_and_reload() {
    // --max-requests 3 with one worker: a restart every third request.
    let s = Server::start(&[
        "-w",
        "1",
        "--max-requests",
        "3",
        "--metrics-bind",
        "127.0.0.1:0",
        "hello:app",
    ]);
    let m = metrics_port(&s);
    for _ in 0..6 {
        assert_eq!(get(s.port, "/").status, 200);
    }
    let mut now = scrape(m);
    let ok = wait_until(Duration::from_secs(10), || {
        now = scrape(m);
        let served = val(&now, "ferrocorn_requests_total{status=\"200\"}");
        served >= 6.0 && restarts(&now, "max_requests") == (served / 3.0).floor()
    });
    assert!(ok, "{now:?}");
    assert!(restarts(&now, "max_requests") >= 2.0);
    assert_eq!(restarts(&now, "crash"), 0.0, "{now:?}");

    // A request that outlives --timeout: the worker is aborted.
    let s = Server::start(&[
        "-w",
        "2",
        "-t",
        "1",
        "--metrics-bind",
        "127.0.0.1:0",
        "slow:app",
    ]);
    let m = metrics_port(&s);
    let _ = send_raw(s.port, b"GET /?sleep=6 HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut now = scrape(m);
    assert!(
        wait_until(Duration::from_secs(10), || {
            now = scrape(m);
            restarts(&now, "timeout") == 1.0
        }),
        "{now:?}"
    );
    assert_eq!(restarts(&now, "crash"), 0.0, "{now:?}");

    // HUP: a new generation replaces both workers.
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = scrape(m);
            restarts(&now, "reload") == 2.0
        }),
        "{now:?}\n{}",
        s.log()
    );
    assert_eq!(restarts(&now, "crash"), 0.0, "{now:?}");
    assert_eq!(
        val(&now, "ferrocorn_workers{state=\"idle\"}"),
        2.0,
        "{now:?}"
    );
}

#[test]
fn a_slow_scraper_cannot_stall_the_master_or_lock_a_scrape_out() {
    let s = Server::start(&["-w", "1", "--metrics-bind", "127.0.0.1:0", "hello:app"]);
    let m = metrics_port(&s);
    // Twelve connections that send nothing, one that sends half a head.
    let mut idle: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(("127.0.0.1", m)).unwrap())
        .collect();
    let mut half = TcpStream::connect(("127.0.0.1", m)).unwrap();
    half.write_all(b"GET /metr").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A real scrape is answered at once, and the master still does its
    // work (TTIN: one more worker).
    let t = Instant::now();
    let got = scrape(m);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(got.contains_key("ferrocorn_requests_in_flight"));
    s.signal(libc::SIGTTIN);
    s.wait_workers(2, Duration::from_secs(10));
    // Every silent connection is closed within its 2 s.
    for c in idle.iter_mut().chain(std::iter::once(&mut half)) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let t = Instant::now();
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        assert!(t.elapsed() < Duration::from_secs(4));
    }
    // Other paths and methods.
    assert!(scrape_raw(m, "/").starts_with("HTTP/1.1 404"));
    let mut c = TcpStream::connect(("127.0.0.1", m)).unwrap();
    c.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.contains("Allow: GET, HEAD"), "{out}");
}

#[test]
fn metrics_on_a_unix_socket_and_the_address_in_use() {
    let dir = TempDir::new("metrics-unix");
    let path = dir.join("metrics.sock");
    let bind = format!("unix:{}", path.display());
    let mut s = Server::start(&["--metrics-bind", &bind, "hello:app"]);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("ferrocorn_workers{state=\"idle\"} 1"), "{out}");
    // A second server cannot take the address: it says so and stops.
    let mut second = Server::spawn(&["--metrics-bind", &bind, "hello:app"], &[]);
    let st = second.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!st.success());
    assert!(second.log().contains("--metrics-bind"), "{}", second.log());
    // A graceful stop removes the socket file.
    s.signal(libc::SIGTERM);
    s.wait_exit(Duration::from_secs(20)).expect("stops");
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------
// The JSON access log and the queue time

/// Run `code` with `/usr/bin/python3 -c`, with `path` as argv[1]; its
/// stdout, failing the test on a non-zero exit.
fn python(code: &str, path: &Path) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(code)
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_access_log_lines_parse_with_python() {
    let dir = TempDir::new("json-access");
    let log = dir.join("access.log");
    let s = Server::start(&[
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-log-json",
        "--access-logformat",
        "%(h)s %({x-request-id}i)s %({x-resp}o)s %({custom.key}e)s %({an_int}e)s",
        WSGI_APP,
    ]);
    let probes = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    let r = request(
        s.port,
        "GET",
        "/a%20b?q=\"x\"&status=404",
        &[
            ("Host", "h"),
            ("X-Request-Id", "req-1\\\"q"),
            ("User-Agent", "caf\u{e9} \"ua\""),
            ("Authorization", "Basic dXNlcjpwYXNz"),
        ],
        b"",
    );
    assert_eq!(r.status, 404);
    let _ = send_raw(s.port, b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= probes + 2
    });
    let code = format!(
        r#"
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[{probes}:]
assert len(lines) == 2, lines
a, b = [json.loads(l) for l in lines]
exp = {{
    "remote_addr": "127.0.0.1", "user": "user",
    "request": 'GET /a%20b?q="x"&status=404 HTTP/1.1', "method": "GET",
    "path": "/a b", "query": 'q="x"&status=404', "protocol": "HTTP/1.1",
    "status": 404, "bytes": 5, "referer": None,
    # Header bytes are read as Latin-1, as gunicorn reads them.
    "user_agent": 'caf\u00c3\u00a9 "ua"',
    "request_headers": {{"x-request-id": 'req-1\\"q'}},
    "response_headers": {{"x-resp": 'a "q" b'}},
    "environ": {{"custom.key": 'set "by" app', "an_int": 7}},
}}
for k, v in exp.items():
    assert a[k] == v, (k, a[k], v)
assert isinstance(a["duration"], float) and 0 <= a["duration"] < 5, a
assert isinstance(a["duration_us"], int) and abs(a["duration_us"] / 1e6 - a["duration"]) < 1e-5, a
assert isinstance(a["queue_us"], int) and 0 <= a["queue_us"] < 5e6, a
assert isinstance(a["pid"], int) and a["pid"] > 1, a
assert "T" in a["time"] and a["time"][19] == "." and a["time"][-3] == ":", a["time"]
assert b["method"] == "POST" and b["status"] == 200 and b["protocol"] == "HTTP/1.0", b
assert b["user"] is None and b["user_agent"] is None, b
assert b["request_headers"] == {{"x-request-id": None}}, b
print("ok", sorted(a))
"#
    );
    let out = python(&code, &log);
    assert!(out.starts_with("ok"), "{out}");
}

#[test]
fn queue_time_atom_and_metric() {
    let dir = TempDir::new("queue");
    let log = dir.join("access.log");
    let s = Server::start(&[
        "--access-logfile",
        log.to_str().unwrap(),
        "--access-logformat",
        "%(r)s %(Q)s %(D)s",
        "--metrics-bind",
        "127.0.0.1:0",
        "hello:app",
    ]);
    let m = metrics_port(&s);
    let base = settled(m);
    // The head arrives in two parts 400 ms apart: the request waited that
    // long after accept before the app was called.
    let mut c = Conn::connect(s.port);
    c.send(b"GET /queued HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    c.send(b"\r\n").unwrap();
    assert_eq!(c.read_response().status, 200);
    // The next request on the connection waits only for itself.
    assert_eq!(
        c.request("GET", "/again", &[("Host", "x")], b"").status,
        200
    );
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/queued") || l.contains("/again"))
            .map(str::to_string)
            .collect();
        lines.len() == 2
    });
    let q = |l: &str| -> u64 { l.split(' ').nth(3).unwrap().parse().unwrap() };
    assert!(
        // From accept, which may come a little after the client's
        // connect returned.
        q(&lines[0]) >= 350_000 && q(&lines[0]) < 5_000_000,
        "{lines:?}"
    );
    assert!(q(&lines[1]) < 200_000, "{lines:?}");
    let mut now = scrape(m);
    wait_until(Duration::from_secs(5), || {
        now = scrape(m);
        delta(&now, &base, "ferrocorn_request_queue_seconds_count") >= 2.0
    });
    let bucket = |le: &str| {
        delta(
            &now,
            &base,
            &format!("ferrocorn_request_queue_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    // The quick one under 0.25 s; the queued one (0.4 s or more, as the
    // log said) above it, within 5 s however loaded the machine is.
    assert_eq!(bucket("0.25"), 1.0, "{now:?}");
    assert_eq!(bucket("5"), 2.0, "{now:?}");
    assert!(delta(&now, &base, "ferrocorn_request_queue_seconds_sum") >= 0.4);
}

#[test]
fn the_metrics_address_passes_to_the_new_master_on_usr2() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = TempDir::new("metrics-usr2");
    let pidfile = dir.join("m.pid");
    let bind = format!("127.0.0.1:{port}");
    let mut s = Server::start(&[
        "-p",
        pidfile.to_str().unwrap(),
        "--metrics-bind",
        &bind,
        "hello:app",
    ]);
    let old = s.pid;
    assert!(scrape(port).contains_key("ferrocorn_requests_in_flight"));
    s.signal(libc::SIGUSR2);
    let p2 = std::path::PathBuf::from(format!("{}.2", pidfile.display()));
    let t = Duration::from_secs(30);
    assert!(wait_until(t, || p2.exists()), "{}", s.log());
    // The new master waits for the address rather than failing.
    assert!(
        wait_until(t, || s
            .log()
            .contains("still served by the previous master")),
        "{}",
        s.log()
    );
    let new: i32 = std::fs::read_to_string(&p2)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(t).is_some());
    // Once the old master is gone, the new one serves the scrapes.
    let mut served_by_new = false;
    wait_until(Duration::from_secs(10), || {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        served_by_new = out.starts_with("HTTP/1.1 200") && alive(new) && !alive(old);
        served_by_new
    });
    assert!(served_by_new, "{}", s.log());
    kill(new, libc::SIGTERM);
    assert!(wait_until(t, || !alive(new)));
}
