//! wsload: WebSocket echo load generator.
//!
//! Opens `--connections` WebSocket connections spread over `--threads` OS
//! threads. Each thread drives its connections round-robin in lock step:
//! it writes `--window` messages on every connection (one flush per
//! connection), then reads that many echoes from every connection, and
//! repeats. With the default window of 1 each connection has exactly one
//! message in flight (send, wait for the echo, repeat), while a thread
//! overlaps the round trips of all its connections.
//! Echoes are checked against what was sent (length and first byte).
//!
//! Output: one JSON line on stdout:
//! {"msgs":N,"duration_s":D,"msgs_per_s":R,"errors":E,"connect_errors":C,...}

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::client::client;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

struct Args {
    url: String,
    connections: usize,
    duration: f64,
    warmup: f64,
    size: usize,
    threads: usize,
    window: usize,
    binary: bool,
    serve: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: wsload --url ws://127.0.0.1:PORT/ [--connections 50] [--duration 10] \
         [--warmup 0] [--size 32] [--threads 1] [--window 1] [--binary]\n       \
         wsload --serve 127.0.0.1:PORT   (a thread-per-connection echo server, for \
         checking the client's own ceiling)"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        connections: 50,
        duration: 10.0,
        warmup: 0.0,
        size: 32,
        threads: 1,
        window: 1,
        binary: false,
        serve: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--url" | "-u" => a.url = val(),
            "--connections" | "-c" => a.connections = val().parse().unwrap_or_else(|_| usage()),
            "--duration" | "-d" => a.duration = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--size" | "-s" => a.size = val().parse().unwrap_or_else(|_| usage()),
            "--threads" | "-t" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--window" | "-w" => a.window = val().parse().unwrap_or_else(|_| usage()),
            "--binary" => a.binary = true,
            "--serve" => a.serve = Some(val()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if a.serve.is_some() {
        return a;
    }
    if a.url.is_empty() || a.connections == 0 || a.threads == 0 || a.window == 0 {
        usage();
    }
    a.threads = a.threads.min(a.connections);
    a
}

/// host:port of a ws:// URL (no TLS).
fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("ws://").unwrap_or_else(|| {
        eprintln!("wsload: only ws:// URLs are supported");
        std::process::exit(2)
    });
    let hp = rest.split('/').next().unwrap_or("");
    if hp.contains(':') {
        hp.to_string()
    } else {
        format!("{hp}:80")
    }
}

type Ws = WebSocket<TcpStream>;

fn connect(url: &str, addr: &str) -> Result<Ws, String> {
    let sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).ok();
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    sock.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let (ws, _resp) = client(url, sock).map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

#[derive(Default)]
struct Counts {
    msgs: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
}

fn serve(addr: &str) -> ! {
    let l = std::net::TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("wsload: bind {addr}: {e}");
        std::process::exit(1)
    });
    eprintln!("wsload: echo server on {}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            s.set_nodelay(true).ok();
            let Ok(mut ws) = tungstenite::accept(s) else { return };
            loop {
                match ws.read() {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(m).is_err() {
                            return;
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
    std::process::exit(0)
}

fn main() {
    let args = parse_args();
    if let Some(addr) = &args.serve {
        serve(addr);
    }
    let addr = host_port(&args.url);
    let counts = Arc::new(Counts::default());
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let first_err: Arc<std::sync::Mutex<Option<String>>> = Arc::default();

    let payload: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let n = args.connections / args.threads + usize::from(t < args.connections % args.threads);
        let (url, addr, payload) = (args.url.clone(), addr.clone(), payload.clone());
        let (counts, counting, stop, first_err) =
            (counts.clone(), counting.clone(), stop.clone(), first_err.clone());
        let binary = args.binary;
        let window = args.window;
        handles.push(std::thread::spawn(move || {
            let note = |e: String| {
                let mut g = first_err.lock().unwrap();
                if g.is_none() {
                    *g = Some(e);
                }
            };
            let mut conns: Vec<Ws> = Vec::with_capacity(n);
            for _ in 0..n {
                match connect(&url, &addr) {
                    Ok(ws) => conns.push(ws),
                    Err(e) => {
                        counts.connect_errors.fetch_add(1, Ordering::Relaxed);
                        note(e);
                    }
                }
            }
            let text = String::from_utf8(payload.clone()).unwrap();
            let mut local: u64 = 0;
            while !stop.load(Ordering::Relaxed) && !conns.is_empty() {
                let mut dead: Vec<usize> = Vec::new();
                for (i, ws) in conns.iter_mut().enumerate() {
                    let mut r = Ok(());
                    for _ in 0..window {
                        let m = if binary {
                            Message::Binary(payload.clone())
                        } else {
                            Message::Text(text.clone())
                        };
                        r = ws.write(m);
                        if r.is_err() {
                            break;
                        }
                    }
                    if let Err(e) = r.and_then(|_| ws.flush()) {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        note(format!("send: {e}"));
                        dead.push(i);
                    }
                }
                for (i, ws) in conns.iter_mut().enumerate() {
                    if dead.contains(&i) {
                        continue;
                    }
                    let mut got = 0;
                    while got < window {
                        match ws.read() {
                            Ok(Message::Text(s)) if !binary => {
                                if s.len() != payload.len() || s.as_bytes()[..1] != payload[..1] {
                                    counts.errors.fetch_add(1, Ordering::Relaxed);
                                    note("echo mismatch".into());
                                }
                                local += 1;
                                got += 1;
                            }
                            Ok(Message::Binary(b)) if binary => {
                                if b.len() != payload.len() {
                                    counts.errors.fetch_add(1, Ordering::Relaxed);
                                    note("echo mismatch".into());
                                }
                                local += 1;
                                got += 1;
                            }
                            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                            Ok(other) => {
                                counts.errors.fetch_add(1, Ordering::Relaxed);
                                note(format!("unexpected frame: {:?}", other));
                                dead.push(i);
                                break;
                            }
                            Err(tungstenite::Error::Io(e))
                                if e.kind() == ErrorKind::Interrupted =>
                            {
                                continue
                            }
                            Err(e) => {
                                counts.errors.fetch_add(1, Ordering::Relaxed);
                                note(format!("read: {e}"));
                                dead.push(i);
                                break;
                            }
                        }
                    }
                }
                if counting.load(Ordering::Relaxed) {
                    counts.msgs.fetch_add(local, Ordering::Relaxed);
                }
                local = 0;
                if !dead.is_empty() {
                    dead.sort_unstable();
                    dead.dedup();
                    for i in dead.into_iter().rev() {
                        conns.swap_remove(i);
                    }
                }
            }
            for mut ws in conns {
                let _ = ws.close(None);
                let _ = ws.flush();
            }
        }));
    }

    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    counting.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let start_cpu = cpu_seconds();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    counting.store(false, Ordering::SeqCst);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - start_cpu;
    stop.store(true, Ordering::SeqCst);
    let msgs = counts.msgs.load(Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    let err = first_err.lock().unwrap().clone().unwrap_or_default();
    println!(
        "{{\"msgs\":{},\"duration_s\":{:.3},\"msgs_per_s\":{:.1},\"errors\":{},\"connect_errors\":{},\
         \"connections\":{},\"threads\":{},\"size\":{},\"window\":{},\"client_cpu_s\":{:.3},\"first_error\":{:?}}}",
        msgs,
        elapsed,
        msgs as f64 / elapsed,
        counts.errors.load(Ordering::SeqCst),
        counts.connect_errors.load(Ordering::SeqCst),
        args.connections,
        args.threads,
        args.size,
        args.window,
        cpu,
        err
    );
}

/// This process's user+system CPU seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after ')' start at field 3 (state); utime=14, stime=15
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / 100.0
}
