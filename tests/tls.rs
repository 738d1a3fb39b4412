//! TLS (`--certfile` and friends) as clients see it: real clients (curl,
//! Python's ssl module through tests/apps/tls_client.py) against every
//! worker class the standard library can run (sync, gthread, asgi); mTLS
//! accepted and refused; cipher lists; the PROXY header before the
//! handshake; handshakes that stall held by the engine, not by Python;
//! certificates re-read on HUP; bad files as one-line errors at start.
//! Certificates: tests/apps/tls/ (a test CA, a server certificate for
//! localhost and 127.0.0.1, client certificates from that CA and from
//! another one).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn tls_dir() -> PathBuf {
    apps_dir().join("tls")
}

fn pem(name: &str) -> String {
    tls_dir().join(name).display().to_string()
}

/// `--certfile server.pem --keyfile server-key.pem` plus `extra`.
fn start(extra: &[&str]) -> Server {
    let (cert, key) = (pem("server.pem"), pem("server-key.pem"));
    let mut args = vec!["--certfile", &cert, "--keyfile", &key];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    assert!(s.tls, "the Listening line says https; log:\n{}", s.log());
    s
}

/// Run tests/apps/tls_client.py; its JSON output.
fn py_client(port: u16, args: &[&str]) -> Json {
    let out = Command::new("python3")
        .arg(apps_dir().join("tls_client.py"))
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Json::parse(text.trim()).unwrap_or_else(|e| {
        panic!(
            "tls_client.py printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn responses(j: &Json) -> Vec<Json> {
    match j.get("responses") {
        Some(Json::Arr(v)) => v.clone(),
        _ => panic!("no responses: {j:?}"),
    }
}

/// curl with the test CA; (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &pem("ca.pem")])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn curl_gets_https_with_a_verified_certificate_for_each_worker_class() {
    for class in [&["-k", "sync"][..], &["-k", "gthread", "--threads", "4"]] {
        let s = start(&[class, &["echo:app"]].concat());
        let url = format!("https://127.0.0.1:{}/path?q=1", s.port);
        let (code, out) = curl(&[&url]);
        assert_eq!(code, 0, "{class:?}: {out}\n{}", s.log());
        let j = Json::parse(out.trim()).expect("the echo app's JSON");
        assert_eq!(j.get("wsgi.url_scheme").and_then(Json::str), Some("https"));
        assert_eq!(j.get("PATH_INFO").and_then(Json::str), Some("/path"));
        // curl by name, checking the certificate's DNS name too.
        let url = format!("https://localhost:{}/", s.port);
        let (code, out) = curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert_eq!((code, out.as_str()), (0, "200"), "{class:?}");
        // Keep-alive: three requests, one connection.
        let u = format!("https://127.0.0.1:{}/", s.port);
        let (code, out) = curl(&[
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} ",
            &u,
            &u,
            &u,
        ]);
        assert_eq!(code, 0);
        assert_eq!(out.trim(), "1 0 0", "{class:?}: connections per request");
    }
}

#[test]
fn python_ssl_keep_alive_pipelining_and_large_bodies() {
    let s = start(&["echo:app"]);
    let ca = pem("ca.pem");
    // Pipelined: three requests in one write, answered in order, with a
    // 1 MB body streamed to the app in the middle.
    let j = py_client(
        s.port,
        &[
            "--ca",
            &ca,
            "--pipeline",
            "GET:/a",
            "POST:/b:1000000",
            "GET:/c",
        ],
    );
    assert_eq!(
        j.get("version").and_then(Json::str),
        Some("TLSv1.3"),
        "{j:?}"
    );
    let r = responses(&j);
    assert_eq!(r.len(), 3, "{j:?}");
    let paths: Vec<String> = r
        .iter()
        .map(|x| {
            let body = Json::parse(x.get("body").and_then(Json::str).unwrap()).unwrap();
            body.get("PATH_INFO")
                .and_then(Json::str)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    let b = Json::parse(r[1].get("body").and_then(Json::str).unwrap()).unwrap();
    assert_eq!(b.get("body_length").and_then(Json::as_u64), Some(1_000_000));
    // TLS 1.2 works too.
    let j = py_client(s.port, &["--ca", &ca, "--max", "1.2", "GET:/"]);
    assert_eq!(
        j.get("version").and_then(Json::str),
        Some("TLSv1.2"),
        "{j:?}"
    );
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200)
    );
}

#[test]
fn a_large_download_arrives_whole_through_the_session() {
    // wsgi.file_wrapper: sendfile(2) cannot encrypt, so the file is read
    // and written in blocks under TLS.
    let s = start(&["filewrap:app"]);
    let j = py_client(
        s.port,
        &["--digest", "GET:/", "GET:/offset", "GET:/bytesio"],
    );
    let r = responses(&j);
    let lens: Vec<u64> = r
        .iter()
        .map(|x| x.get("len").and_then(Json::as_u64).unwrap())
        .collect();
    assert_eq!(lens, [300_000, 299_000, 300_000], "{j:?}");
    let plain: Vec<u8> = (0..300_000u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
    assert_eq!(
        r[0].get("sha256").and_then(Json::str),
        Some(sha256_hex(&plain).as_str())
    );
}

#[test]
fn client_certificates_required_accepted_and_refused() {
    let ca = pem("ca.pem");
    let s = start(&["--ca-certs", &ca, "--cert-reqs", "2", "echo:app"]);
    let (cert, key) = (pem("client.pem"), pem("client-key.pem"));
    let j = py_client(
        s.port,
        &["--ca", &ca, "--cert", &cert, "--key", &key, "GET:/"],
    );
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200),
        "{j:?}"
    );
    // No certificate, or one from a CA the server does not trust: no
    // request gets through.
    let j = py_client(s.port, &["--ca", &ca, "GET:/"]);
    assert!(
        j.get("error").is_some(),
        "served without a client certificate: {j:?}"
    );
    let (rc, rk) = (pem("rogue.pem"), pem("rogue-key.pem"));
    let j = py_client(s.port, &["--ca", &ca, "--cert", &rc, "--key", &rk, "GET:/"]);
    assert!(
        j.get("error").is_some(),
        "served a client from another CA: {j:?}"
    );
    let url = format!("https://127.0.0.1:{}/", s.port);
    let (code, out) = curl(&["--cert", &cert, "--key", &key, &url]);
    assert_eq!(code, 0, "{out}");
    let (code, _) = curl(&[&url]);
    assert_ne!(code, 0, "curl without a client certificate was served");
}

#[test]
fn client_certificates_optional() {
    let ca = pem("ca.pem");
    let s = start(&["--ca-certs", &ca, "--cert-reqs", "1", "echo:app"]);
    let j = py_client(s.port, &["--ca", &ca, "GET:/"]);
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200),
        "{j:?}"
    );
    let (rc, rk) = (pem("rogue.pem"), pem("rogue-key.pem"));
    let j = py_client(s.port, &["--ca", &ca, "--cert", &rc, "--key", &rk, "GET:/"]);
    assert!(
        j.get("error").is_some(),
        "a bad certificate is still refused: {j:?}"
    );
}

#[test]
fn the_cipher_list_decides_tls12_suites() {
    let s = start(&["--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305", "echo:app"]);
    let j = py_client(s.port, &["--max", "1.2", "GET:/"]);
    assert_eq!(
        j.get("cipher").and_then(Json::str),
        Some("ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{j:?}"
    );
    // A TLS 1.2 client that offers only other suites gets no session.
    let j = py_client(
        s.port,
        &[
            "--max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "GET:/",
        ],
    );
    assert!(j.get("error").is_some(), "{j:?}");
    // TLS 1.3 stays on, as with OpenSSL's cipher lists.
    let j = py_client(s.port, &["GET:/"]);
    assert_eq!(
        j.get("version").and_then(Json::str),
        Some("TLSv1.3"),
        "{j:?}"
    );
}

#[test]
fn bad_tls_settings_are_one_line_errors_at_start() {
    let dir = TempDir::new("tls-bad");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--certfile".into(), "/nonexistent/cert.pem".into()],
            "/nonexistent/cert.pem",
        ),
        (
            vec![
                "--certfile".into(),
                pem("server.pem"),
                "--keyfile".into(),
                pem("stray-key.pem"),
            ],
            "do not belong together",
        ),
        (
            vec![
                "--certfile".into(),
                pem("server.pem"),
                "--keyfile".into(),
                pem("encrypted-key.pem"),
            ],
            "encrypted",
        ),
        (
            vec!["--keyfile".into(), pem("server-key.pem")],
            "without --certfile",
        ),
        (
            vec![
                "--certfile".into(),
                pem("server-combined.pem"),
                "--cert-reqs".into(),
                "2".into(),
            ],
            "--ca-certs",
        ),
        (
            vec![
                "--certfile".into(),
                pem("server-combined.pem"),
                "--ciphers".into(),
                "RC4-SHA:DHE-RSA-AES128-SHA".into(),
            ],
            "RC4-SHA:DHE-RSA-AES128-SHA",
        ),
        (
            vec!["--certfile".into(), pem("server-key.pem")],
            "no PEM certificate",
        ),
    ];
    let apps = apps_dir().display().to_string();
    for (args, culprit) in cases {
        let mut a: Vec<&str> = vec!["-b", "127.0.0.1:0"];
        a.extend(args.iter().map(String::as_str));
        a.extend(["--chdir", apps.as_str(), "hello:app"]);
        let out = run_cli(&a, &[], dir.path());
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.stderr);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("[ERROR]") || l.starts_with("Error"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line\n{}", out.stderr);
        assert!(errors[0].contains(culprit), "{args:?}: {}", errors[0]);
        assert!(!out.stderr.contains("Booting worker"), "{}", out.stderr);
    }
}

#[test]
fn a_combined_certificate_and_key_file_serves() {
    let cert = pem("server-combined.pem");
    let s = Server::start(&["--certfile", &cert, "hello:app"]);
    let j = py_client(s.port, &["--ca", &pem("ca.pem"), "GET:/"]);
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200),
        "{j:?}"
    );
}

#[test]
fn a_stalled_handshake_holds_a_slot_not_the_worker_and_times_out() {
    // One sync worker: a client that connects and never finishes its
    // handshake must not keep anyone else waiting, and is cut off by the
    // header timeout.
    let s = start(&["-w", "1", "--header-timeout", "1", "echo:app"]);
    let mut stalled = Conn::connect(s.port);
    // The first bytes of a ClientHello record, and nothing more.
    stalled.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let t = Instant::now();
    let j = py_client(s.port, &["GET:/"]);
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200),
        "{j:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "served after {:?}",
        t.elapsed()
    );
    assert!(
        stalled.is_closed(Duration::from_secs(4)),
        "the stalled handshake was not closed by --header-timeout"
    );
}

#[test]
fn garbage_instead_of_a_handshake_closes_the_connection() {
    let s = start(&["echo:app"]);
    let mut c = Conn::connect(s.port);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // A TLS alert, then the end: never an HTTP answer in the clear.
    let got = c.read_to_end();
    assert!(!got.starts_with(b"HTTP/"), "{got:?}");
    assert!(
        c.is_closed(Duration::from_secs(3)),
        "plain HTTP to a TLS port"
    );
    // The worker is fine.
    let j = py_client(s.port, &["GET:/"]);
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200)
    );
}

#[test]
fn a_proxy_header_comes_before_the_handshake() {
    let s = start(&[
        "--proxy-protocol",
        "v1",
        "--proxy-allow-from",
        "127.0.0.1",
        "echo:app",
    ]);
    let j = py_client(
        s.port,
        &[
            "--proxy",
            "PROXY TCP4 203.0.113.9 192.0.2.1 4321 443",
            "GET:/",
        ],
    );
    let r = responses(&j);
    let body = Json::parse(r[0].get("body").and_then(Json::str).unwrap()).unwrap();
    assert_eq!(
        body.get("REMOTE_ADDR").and_then(Json::str),
        Some("203.0.113.9")
    );
    assert_eq!(
        body.get("wsgi.url_scheme").and_then(Json::str),
        Some("https")
    );
}

#[test]
fn asgi_http_streams_and_websockets_over_tls() {
    let s = start(&["-k", "asgi", "asgi_app:app"]);
    let j = py_client(s.port, &["GET:/hello", "GET:/scope"]);
    let r = responses(&j);
    assert_eq!(
        r[0].get("body").and_then(Json::str),
        Some("hello asgi"),
        "{j:?}"
    );
    let scope = Json::parse(r[1].get("body").and_then(Json::str).unwrap()).unwrap();
    assert_eq!(scope.get("scheme").and_then(Json::str), Some("https"));
    let j = py_client(s.port, &["--ws", "/ws-echo"]);
    let ws = j.get("ws").expect("a websocket result");
    assert_eq!(ws.get("status").and_then(Json::as_u64), Some(101), "{j:?}");
    assert_eq!(ws.get("echo").and_then(Json::str), Some("hello over wss"));
}

#[test]
fn a_streamed_response_arrives_as_it_is_produced() {
    // tests/apps/fidelity.py /stream: a tick every 0.3 s; under TLS each must
    // arrive when produced, not at the end.
    let s = start(&["-k", "gthread", "--threads", "2", "fidelity:app"]);
    let url = format!("https://127.0.0.1:{}/stream?n=4&gap=0.3", s.port);
    let t = Instant::now();
    let mut child = Command::new("curl")
        .args(["-sN", "--cacert", &pem("ca.pem"), &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Read;
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    let first_at = t.elapsed();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let _ = child.wait();
    let total = t.elapsed();
    assert!(
        first_at < Duration::from_millis(700),
        "first byte after {first_at:?}"
    );
    assert!(
        total >= Duration::from_millis(850),
        "all at once after {total:?}"
    );
}

#[test]
fn hup_rereads_renewed_certificates() {
    let dir = TempDir::new("tls-hup");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(tls_dir().join("server.pem"), &cert).unwrap();
    std::fs::copy(tls_dir().join("server-key.pem"), &key).unwrap();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let s = Server::start(&["--certfile", &c, "--keyfile", &k, "hello:app"]);
    let before = py_client(s.port, &["GET:/"]);
    let before = before
        .get("cert_sha256")
        .and_then(Json::str)
        .unwrap()
        .to_string();
    // Renewed: another certificate and key in the same files.
    std::fs::copy(tls_dir().join("client.pem"), &cert).unwrap();
    std::fs::copy(tls_dir().join("client-key.pem"), &key).unwrap();
    let old = s.worker_pids();
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let now = s.worker_pids();
            !now.is_empty() && now.iter().all(|p| !old.contains(p))
        }),
        "no new workers after HUP; log:\n{}",
        s.log()
    );
    let after = py_client(s.port, &["GET:/"]);
    let after = after
        .get("cert_sha256")
        .and_then(Json::str)
        .unwrap()
        .to_string();
    assert_ne!(before, after, "the renewed certificate is served");
    // A broken renewal is refused, and the old generation keeps serving.
    std::fs::copy(tls_dir().join("stray-key.pem"), &key).unwrap();
    let workers = s.worker_pids();
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || s.log().contains("Reload failed")),
        "{}",
        s.log()
    );
    assert_eq!(s.worker_pids(), workers);
    let j = py_client(s.port, &["GET:/"]);
    assert_eq!(
        responses(&j)[0].get("status").and_then(Json::as_u64),
        Some(200)
    );
}

#[test]
fn an_ssl_context_hook_sets_what_rustls_can_do() {
    let dir = TempDir::new("tls-ctx");
    let conf = dir.join("gunicorn.conf.py");
    std::fs::write(
        &conf,
        "import ssl\n\
         def ssl_context(conf, default_ssl_context_factory):\n\
         \x20   ctx = default_ssl_context_factory()\n\
         \x20   ctx.minimum_version = ssl.TLSVersion.TLSv1_3\n\
         \x20   return ctx\n",
    )
    .unwrap();
    let c = conf.display().to_string();
    let s = start(&["-c", &c, "echo:app"]);
    let j = py_client(s.port, &["GET:/"]);
    assert_eq!(
        j.get("version").and_then(Json::str),
        Some("TLSv1.3"),
        "{j:?}"
    );
    let j = py_client(s.port, &["--max", "1.2", "GET:/"]);
    assert!(
        j.get("error").is_some(),
        "TLS 1.2 after minimum_version 1.3: {j:?}"
    );

    // What rustls cannot do stops the boot with the reason.
    std::fs::write(
        &conf,
        "def ssl_context(conf, factory):\n\
         \x20   ctx = factory()\n\
         \x20   ctx.set_servername_callback(lambda *a: None)\n\
         \x20   return ctx\n",
    )
    .unwrap();
    let (cert, key) = (pem("server.pem"), pem("server-key.pem"));
    let mut s = Server::spawn(
        &["--certfile", &cert, "--keyfile", &key, "-c", &c, "echo:app"],
        &[],
    );
    let st = s
        .wait_exit(Duration::from_secs(20))
        .expect("the master stops");
    assert_eq!(st.code(), Some(3), "{}", s.log());
    assert!(s.log().contains("SNI callbacks"), "{}", s.log());
}
