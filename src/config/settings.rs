//! The settings table: the one definition of every setting (its field and
//! type, TOML key, command-line flags, section, default and help text),
//! gunicorn's settings by gunicorn's names plus ferrocorn's own. The
//! `settings!` macro (`table.rs`) turns it into the [`Settings`] struct, the
//! [`SETTINGS`] documentation table that `--help`, `--print-config`, the
//! config file and the generated docs read, and the per-key appliers used
//! by `cli.rs` and `file.rs`.

use super::table::settings;
pub use super::table::SettingDef;
use super::value::{Enabled, JsonDict, Mode, SettingValue, StrMap};
use super::{BindAddr, ConfigError};

fn env_default(env: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    env(key).filter(|v| !v.is_empty())
}

settings! {
    env;
    config: Option<String> = None;
        section "Config File", flags ["config"] short 'c', meta "FILE",
        default_doc "./ferrocorn.toml if it exists",
        cli_only true,
        help "TOML config file whose keys are the setting names below.";
    wsgi_app: Option<String> = None;
        section "Config File", flags ["wsgi-app"], meta "APP_MODULE",
        default_doc "none",
        help "The WSGI application, as MODULE[:ATTR] or MODULE:FACTORY(ARGS); the positional APP_MODULE overrides it.";
    check_config: bool = false;
        section "Config File", flags ["check-config"], meta "",
        default_doc "false", cli_only true,
        help "Load the configuration and import the app, then exit 0 (ok) or 1.";
    print_config: bool = false;
        section "Config File", flags ["print-config"], meta "",
        default_doc "false", cli_only true,
        help "Print the resolved configuration as TOML and exit.";
    reload: bool = false;
        section "Debugging", flags ["reload"], meta "", default_doc "false",
        help "Restart the workers when a Python module they imported, or a --reload-extra-file, changes (for development).";
    reload_engine: String = "auto".to_string();
        section "Debugging", flags ["reload-engine"], meta "STRING", default_doc "auto",
        help "How --reload notices changes: inotify (at once), poll (looks once a second) or auto (inotify).";
    reload_extra_files: Vec<String> = Vec::new();
        section "Debugging", flags ["reload-extra-file"], meta "FILES", default_doc "none",
        help "More files for --reload to watch (templates, config); glob patterns like templates/**/*.html are expanded at each look. Repeatable.";
    spew: bool = false;
        section "Debugging", flags ["spew"], meta "", default_doc "false",
        help "Print every line of Python the workers execute, as it runs (module:line: source), to stdout. Slow; for chasing a hang.";
    paste: Option<String> = None;
        section "Server Mechanics", flags ["paste", "paster"], meta "STRING", default_doc "none",
        help "Load the app from a PasteDeploy config file (FILE.ini, or FILE.ini#name for another app section) instead of APP_MODULE; its logging sections, if any, configure Python's logging in the workers.";
    raw_paste_global_conf: Vec<String> = Vec::new();
        section "Server Mechanics", flags ["paste-global"], meta "CONF", default_doc "none",
        help "A KEY=VALUE global for the PasteDeploy config (as %(KEY)s in it). Repeatable.";
    bind: Vec<String> = match env_default(env, "PORT") {
            Some(port) => vec![format!("0.0.0.0:{port}")],
            None => vec!["127.0.0.1:8000".to_string()],
        };
        section "Server Socket", flags ["bind"] short 'b', meta "ADDRESS",
        default_doc "127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set",
        help "Socket to bind: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://FD. Repeatable.";
    backlog: i32 = 2048;
        section "Server Socket", flags ["backlog"], meta "INT", default_doc "2048",
        help "Maximum number of pending connections.";
    reuse_port: bool = false;
        section "Server Socket", flags ["reuse-port"], meta "", default_doc "false",
        help "Set SO_REUSEPORT on the listening sockets.";
    workers: u32 = env_default(env, "WEB_CONCURRENCY").and_then(|v| v.parse().ok()).unwrap_or(1);
        section "Worker Processes", flags ["workers"] short 'w', meta "INT",
        default_doc "$WEB_CONCURRENCY or 1",
        help "Number of worker processes.";
    worker_class: String = "sync".to_string();
        section "Worker Processes", flags ["worker-class"] short 'k', meta "STRING", default_doc "sync",
        help "The worker type: sync (one request at a time per worker), gthread (a pool of --threads Python threads per worker), gevent or eventlet (a greenlet per request, up to --worker-connections, with the standard library monkey-patched; gevent_wsgi, gevent_pywsgi, gunicorn.workers.ggevent.GeventWorker, gunicorn.workers.ggevent.GeventPyWSGIWorker and egg:gunicorn#gevent name gevent, gunicorn.workers.geventlet.EventletWorker and egg:gunicorn#eventlet name eventlet), asgi (an asyncio event loop running an ASGI app; uvicorn.workers.UvicornWorker, uvicorn.workers.UvicornH11Worker, uvicorn_worker.UvicornWorker, uvicorn_worker.UvicornH11Worker and gunicorn.workers.gasgi.ASGIWorker are names for it) or tornado (a tornado.web.Application, on the same event loop). sync with --threads above 1 means gthread.";
    threads: u32 = 1;
        section "Worker Processes", flags ["threads"], meta "INT", default_doc "1",
        help "Python threads per worker running requests (gthread worker); with -k sync, a value above 1 selects gthread.";
    worker_connections: u32 = 1000;
        section "Worker Processes", flags ["worker-connections"], meta "INT", default_doc "1000",
        help "Maximum number of open client connections per worker (for gevent and eventlet also the most requests running at once); at the limit, idle keep-alive connections and stalled partial request heads are closed to make room, otherwise accepting pauses.";
    max_requests: u64 = 0;
        section "Worker Processes", flags ["max-requests"], meta "INT", default_doc "0",
        help "Restart a worker after it has served this many requests (0 disables).";
    max_worker_memory: u64 = 0;
        section "Worker Processes", flags ["max-worker-memory"], meta "MIB", default_doc "0",
        help "Restart a worker, after its current request, once its RSS exceeds this many MiB (0 disables).";
    max_requests_jitter: u64 = 0;
        section "Worker Processes", flags ["max-requests-jitter"], meta "INT", default_doc "0",
        help "Add a random 0..N to each worker's max_requests.";
    timeout: f64 = 30.0;
        section "Worker Processes", flags ["timeout"] short 't', meta "INT", default_doc "30",
        help "Kill and replace a worker silent for more than this many seconds (0 disables).";
    graceful_timeout: f64 = 30.0;
        section "Worker Processes", flags ["graceful-timeout"], meta "INT", default_doc "30",
        help "Seconds workers get to finish in-flight requests on a graceful stop.";
    keepalive: f64 = 2.0;
        section "Worker Processes", flags ["keep-alive"], meta "INT", default_doc "2",
        help "Seconds to wait for the next request on a keep-alive connection (0 disables keep-alive).";
    header_timeout: f64 = 30.0;
        section "Worker Processes", flags ["header-timeout"], meta "SECONDS", default_doc "30",
        help "Seconds a client gets to send a complete request head, however slowly it trickles in (timed from accept for a connection's first request, from the first byte for later keep-alive requests); then the connection is closed.";
    body_timeout: f64 = 30.0;
        section "Worker Processes", flags ["body-timeout"], meta "SECONDS", default_doc "30",
        help "Seconds without progress allowed while reading a request body or writing a response (also bounds a thread blocked on a slow reader); then the connection is closed.";
    asgi_loop: String = "auto".to_string();
        section "Worker Processes", flags ["asgi-loop"], meta "STRING", default_doc "auto",
        help "Event loop of the ASGI worker: asyncio, uvloop, or auto (uvloop when the app's environment has it, else asyncio).";
    asgi_lifespan: String = "auto".to_string();
        section "Worker Processes", flags ["asgi-lifespan"], meta "STRING", default_doc "auto",
        help "ASGI lifespan events: on (the app must support them; a failed startup stops the worker), off (never sent), auto (sent; an app that does not support them is served anyway).";
    asgi_disconnect_grace_period: u64 = 3;
        section "Worker Processes", flags ["asgi-disconnect-grace-period"], meta "INT", default_doc "3",
        help "Seconds an ASGI request's task may run on after its client disconnected; then it is cancelled.";
    websocket_max_message_size: u64 = 16_777_216;
        section "Worker Processes", flags ["websocket-max-message-size"], meta "INT", default_doc "16777216",
        help "Largest WebSocket message an ASGI app is handed, in bytes (after decompression); a larger one closes the connection with code 1009.";
    http_parser: String = "auto".to_string();
        section "Worker Processes", flags ["http-parser"], meta "STRING", default_doc "auto",
        help "gunicorn's choice of HTTP parser (auto, fast or python). Accepted; ferrocorn always parses HTTP with its own Rust parser, and says so at start when this is not auto.";
    limit_request_line: u32 = 4094;
        section "Security", flags ["limit-request-line"], meta "INT", default_doc "4094",
        help "Maximum size of the HTTP request line in bytes, at most 8190 as in gunicorn; 0 means unlimited; a longer line gets 414.";
    limit_request_fields: u32 = 100;
        section "Security", flags ["limit-request-fields"], meta "INT", default_doc "100",
        help "Maximum number of header fields in a request (at most 32768).";
    limit_request_field_size: u32 = 8190;
        section "Security", flags ["limit-request-field_size", "limit-request-field-size"], meta "INT", default_doc "8190",
        help "Maximum size of one request header field line in bytes, counted as gunicorn counts it: name, colon, value and CRLF; 0 means the default, 8190; a longer line gets 431.";
    forwarded_allow_ips: Vec<String> = env_default(env, "FORWARDED_ALLOW_IPS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_else(|| vec!["127.0.0.1".to_string(), "::1".to_string()]);
        section "Server Mechanics", flags ["forwarded-allow-ips"], meta "STRING",
        default_doc "127.0.0.1,::1, or $FORWARDED_ALLOW_IPS",
        help "Comma-separated addresses or networks (10.0.0.0/8, fd00::/8) of the proxies trusted to set the secure_scheme_headers and forwarder_headers ('*' trusts all; a unix-socket peer is always trusted).";
    secure_scheme_headers: StrMap = StrMap::of(&[
            ("X-FORWARDED-PROTOCOL", "ssl"),
            ("X-FORWARDED-PROTO", "https"),
            ("X-FORWARDED-SSL", "on"),
        ]);
        section "Server Mechanics", flags [], meta "TABLE",
        default_doc "{ X-FORWARDED-PROTO = \"https\", X-FORWARDED-PROTOCOL = \"ssl\", X-FORWARDED-SSL = \"on\" }",
        help "Headers a trusted proxy (see forwarded_allow_ips) uses to say the client spoke HTTPS, with the exact value that means HTTPS: the request's wsgi.url_scheme is https when such a header carries that value, http when it carries another. Names are case-insensitive, values are not.";
    forwarder_headers: Vec<String> = vec!["SCRIPT_NAME".to_string(), "PATH_INFO".to_string()];
        section "Server Mechanics", flags ["forwarder-headers"], meta "STRING", default_doc "SCRIPT_NAME,PATH_INFO",
        help "Comma-separated header names with underscores that a trusted proxy (see forwarded_allow_ips) may send and the app receives as HTTP_* keys ('*' for any); a SCRIPT_NAME header also sets the environ's SCRIPT_NAME. From other peers, header_map decides.";
    header_map: String = "drop".to_string();
        section "Server Mechanics", flags ["header-map"], meta "STRING", default_doc "drop",
        help "What to do with a header whose name contains an underscore (it would collide with a dashed one in the environ) and that forwarder_headers does not allow: drop it, refuse the request with 400, or pass it on (dangerous).";
    permit_obsolete_folding: bool = false;
        section "Server Mechanics", flags ["permit-obsolete-folding"], meta "", default_doc "false",
        help "Accept header values continued on lines starting with a space or tab (obsolete line folding), joining them with one space; by default such a request gets 400.";
    strip_header_spaces: bool = false;
        section "Server Mechanics", flags ["strip-header-spaces"], meta "", default_doc "false",
        help "Accept spaces and tabs between a header name and its colon, dropping them; by default such a request gets 400. Unsafe behind a proxy that reads such headers differently.";
    permit_unconventional_http_method: bool = false;
        section "Server Mechanics", flags ["permit-unconventional-http-method"], meta "", default_doc "false",
        help "Accept any token as the request method (lowercase letters, '#', fewer than 3 or more than 20 characters); by default such a request gets 400.";
    permit_unconventional_http_version: bool = false;
        section "Server Mechanics", flags ["permit-unconventional-http-version"], meta "", default_doc "false",
        help "Accept any HTTP/D.D in the request line, not only HTTP/1.0 and HTTP/1.1; the request is served as HTTP/1.1 and SERVER_PROTOCOL shows the version as sent. By default such a request gets 400.";
    casefold_http_method: bool = false;
        section "Server Mechanics", flags ["casefold-http-method"], meta "", default_doc "false",
        help "Upper-case the request method before the app sees it (with permit_unconventional_http_method, 'get' arrives as GET).";
    root_path: String = String::new();
        section "Server Mechanics", flags ["root-path"], meta "STRING", default_doc "empty",
        help "The ASGI root_path: the path prefix the app is mounted at behind a proxy; it is put in each scope's root_path and in front of its path.";
    proxy_protocol: crate::proxy::Mode = crate::proxy::Mode::Off;
        section "Server Mechanics", flags ["proxy-protocol"], meta "MODE", default_doc "off",
        missing "auto",
        help "Read a PROXY protocol header (HAProxy's send-proxy / send-proxy-v2, stunnel, cloud load balancers) at the start of each connection: off, v1, v2 or auto (either); the flag alone means auto, and true/false are accepted as auto/off. REMOTE_ADDR and REMOTE_PORT (the ASGI client) then come from the header. A connection without a header is served as usual; a header from a peer not in proxy_allow_ips gets 403; a malformed one 400; both close the connection.";
    proxy_allow_ips: Vec<String> = vec!["127.0.0.1".to_string(), "::1".to_string()];
        section "Server Mechanics", flags ["proxy-allow-from"], meta "STRING", default_doc "127.0.0.1,::1",
        help "Comma-separated addresses or networks (10.0.0.0/8, fd00::/8) allowed to send PROXY protocol headers ('*' for any; a unix-socket peer always may).";
    protocol: String = "http".to_string();
        section "Server Mechanics", flags ["protocol"], meta "STRING", default_doc "http",
        help "The protocol spoken on the listening sockets: http, or uwsgi (the uwsgi binary protocol of nginx's uwsgi_pass: the environ is built from the proxy's uwsgi vars, one request per connection).";
    uwsgi_allow_ips: Vec<String> = vec!["127.0.0.1".to_string(), "::1".to_string()];
        section "Server Mechanics", flags ["uwsgi-allow-from"], meta "STRING", default_doc "127.0.0.1,::1",
        help "Comma-separated addresses or networks allowed to send uwsgi requests ('*' for any; a unix-socket peer always may); others get 403.";
    chdir: Option<String> = None;
        section "Server Mechanics", flags ["chdir"], meta "DIR", default_doc "the current directory",
        help "Change to this directory before loading the app.";
    pythonpath: Option<String> = None;
        section "Server Mechanics", flags ["pythonpath"], meta "STRING", default_doc "none",
        help "Comma-separated directories to prepend to sys.path (relative ones from chdir).";
    virtualenv: Option<String> = env_default(env, "VIRTUAL_ENV");
        section "Server Mechanics", flags ["virtualenv"], meta "DIR", default_doc "$VIRTUAL_ENV",
        help "Virtualenv whose site-packages the app imports from.";
    raw_env: Vec<String> = Vec::new();
        section "Server Mechanics", flags ["env"] short 'e', meta "KEY=VALUE", default_doc "none",
        help "Set an environment variable for the app. Repeatable.";
    preload_app: bool = false;
        section "Server Mechanics", flags ["preload"], meta "", default_doc "false",
        help "Import the app in the master before forking workers.";
    sendfile: Enabled = Enabled(true);
        section "Server Mechanics", flags ["no-sendfile"], meta "", default_doc "sendfile on",
        help "Do not send regular files from wsgi.file_wrapper with sendfile(2); read and write them in blocks instead (config file: sendfile = false).";
    daemon: bool = false;
        section "Server Mechanics", flags ["daemon"] short 'D', meta "", default_doc "false",
        help "Detach from the terminal and run in the background.";
    pidfile: Option<String> = None;
        section "Server Mechanics", flags ["pid"] short 'p', meta "FILE", default_doc "none",
        help "Write the master's PID to this file.";
    user: Option<String> = None;
        section "Server Mechanics", flags ["user"] short 'u', meta "USER", default_doc "the current user",
        help "Switch worker processes to this user (name or uid).";
    group: Option<String> = None;
        section "Server Mechanics", flags ["group"] short 'g', meta "GROUP", default_doc "the current group",
        help "Switch worker processes to this group (name or gid).";
    initgroups: bool = false;
        section "Server Mechanics", flags ["initgroups"], meta "", default_doc "false",
        help "Give workers the supplementary groups of --user.";
    tmp_upload_dir: Option<String> = None;
        section "Server Mechanics", flags [], meta "DIR", default_doc "none",
        help "Accepted for gunicorn compatibility. gunicorn 27 defines it but never reads it, and ferrocorn does the same: request bodies are kept in memory or read from the socket on demand, never spooled to disk. A warning at start says so when it is set.";
    umask: String = "0".to_string();
        section "Server Mechanics", flags ["umask"] short 'm', meta "INT", default_doc "0",
        help "File mode creation mask of the server processes (octal like 0o22 or 022, or decimal).";
    worker_tmp_dir: Option<String> = None;
        section "Server Mechanics", flags ["worker-tmp-dir"], meta "DIR", default_doc "none",
        unsupported "ferrocorn's heartbeat uses shared memory, not temporary files, so there is nothing to place",
        help "Accepted for gunicorn compatibility; the heartbeat needs no files.";
    proc_name: Option<String> = None;
        section "Server Mechanics", flags ["name"] short 'n', meta "STRING", default_doc "the app module",
        help "Name shown in process titles.";
    default_proc_name: String = "ferrocorn".to_string();
        section "Server Mechanics", flags [], meta "STRING", default_doc "the APP_MODULE given on the command line, else ferrocorn",
        help "The name in process titles when proc_name is not set. As in gunicorn, an APP_MODULE given on the command line replaces it.";
    errorlog: String = "-".to_string();
        section "Logging", flags ["error-logfile", "log-file"], meta "FILE", default_doc "- (stderr)",
        help "Error log file; '-' is stderr. A relative path is relative to chdir.";
    loglevel: String = "info".to_string();
        section "Logging", flags ["log-level"], meta "LEVEL", default_doc "info",
        help "Error log level: debug, info, warning, error or critical.";
    accesslog: Option<String> = None;
        section "Logging", flags ["access-logfile"], meta "FILE", default_doc "none",
        help "Access log file; '-' is stdout. A relative path is relative to chdir.";
    access_log_format: String = crate::log::access::DEFAULT_FORMAT.to_string();
        section "Logging", flags ["access-logformat"], meta "STRING", default_doc "gunicorn's common log format",
        help "Access log line format, with gunicorn's %(atom)s placeholders, plus %(Q)s: the time the request waited before the app was called, in microseconds.";
    access_log_json: bool = false;
        section "Logging", flags ["access-log-json"], meta "", default_doc "false",
        help "Write the access log as one JSON object per line, with a named field for each access-log atom; request and response headers and environ keys are included when --access-logformat names them (%({x-request-id}i)s ...).";
    capture_output: bool = false;
        section "Logging", flags ["capture-output"], meta "", default_doc "false",
        help "Send the app's stdout and stderr to the error log file.";
    syslog: bool = false;
        section "Logging", flags ["log-syslog"], meta "", default_doc "false",
        help "Send the error log, and the access log, to syslog.";
    syslog_addr: String = "unix:///dev/log".to_string();
        section "Logging", flags ["log-syslog-to"], meta "ADDRESS", default_doc "unix:///dev/log",
        help "Syslog address: unix://PATH, udp://HOST:PORT or tcp://HOST:PORT.";
    syslog_prefix: Option<String> = None;
        section "Logging", flags ["log-syslog-prefix"], meta "STRING", default_doc "none",
        help "Program name in syslog lines.";
    syslog_facility: String = "user".to_string();
        section "Logging", flags ["log-syslog-facility"], meta "STRING", default_doc "user",
        help "Syslog facility name.";
    disable_redirect_access_to_syslog: bool = false;
        section "Logging", flags ["disable-redirect-access-to-syslog"], meta "", default_doc "false",
        help "With --log-syslog, keep access-log lines out of syslog (gunicorn sends them there too).";
    logconfig: Option<String> = None;
        section "Logging", flags ["log-config"], meta "FILE", default_doc "none",
        help "Python logging config (ini, logging.config.fileConfig): the workers' access lines go to logger gunicorn.access.";
    logconfig_json: Option<String> = None;
        section "Logging", flags ["log-config-json"], meta "FILE", default_doc "none",
        help "Python logging config as JSON (logging.config.dictConfig over gunicorn's defaults); wins over --log-config.";
    logconfig_dict: JsonDict = JsonDict::default();
        section "Logging", flags [], meta "TABLE", default_doc "{}",
        help "Python logging config as a dict (a table in TOML) for logging.config.dictConfig over gunicorn's defaults, as --log-config-json takes from a file; wins over both files.";
    logger_class: String = "gunicorn.glogging.Logger".to_string();
        section "Logging", flags ["logger-class"], meta "STRING", default_doc "gunicorn.glogging.Logger",
        help "gunicorn's logger class. Only the default is accepted: a subclass is Python code around gunicorn's Logger, which ferrocorn does not run (use --log-config-json or logconfig_dict for handlers and formatters, --access-logformat for the line).";
    enable_stdio_inheritance: bool = false;
        section "Logging", flags ["enable-stdio-inheritance"] short 'R', meta "", default_doc "false",
        help "With --daemon, keep stdout and stderr as they were (e.g. a shell redirection) instead of sending them to /dev/null; stdin goes to /dev/null either way.";
    statsd_host: Option<String> = None;
        section "Logging", flags ["statsd-host"], meta "STATSD_ADDR", default_doc "none",
        help "Send statsd metrics, as gunicorn does, to HOST:PORT (UDP; the port defaults to 8125) or unix://PATH (a datagram socket): gunicorn.requests, gunicorn.request.duration, gunicorn.request.status.NNN, gunicorn.workers, gunicorn.log.* and, with --enable-backlog-metric, gunicorn.backlog. Sending never waits: a datagram the kernel cannot take is dropped, and an unreachable server is ignored.";
    dogstatsd_tags: String = String::new();
        section "Logging", flags ["dogstatsd-tags"], meta "DOGSTATSD_TAGS", default_doc "empty",
        help "Comma-separated DogStatsD tags (tag1:value1,tag2:value2) appended to every statsd metric as |#TAGS.";
    statsd_prefix: String = String::new();
        section "Logging", flags ["statsd-prefix"], meta "STATSD_PREFIX", default_doc "empty",
        help "Prefix of the statsd metric names (a trailing '.' is added if missing, as in gunicorn).";
    enable_backlog_metric: bool = false;
        section "Logging", flags ["enable-backlog-metric"], meta "", default_doc "false",
        help "Also send gunicorn.backlog, a statsd histogram of the connections waiting in the listen queues, once a second from the master.";
    metrics_bind: Option<String> = None;
        section "Logging", flags ["metrics-bind"], meta "ADDRESS", default_doc "none (off)",
        help "Serve Prometheus metrics at http://ADDRESS/metrics, from the master (one scrape target for all workers, counts of past workers included). ADDRESS as for --bind: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://FD.";
    keyfile: Option<String> = None;
        section "SSL", flags ["keyfile"], meta "FILE", default_doc "none",
        help "TLS private key file (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted). Without it the key is read from --certfile.";
    certfile: Option<String> = None;
        section "SSL", flags ["certfile"], meta "FILE", default_doc "none",
        help "TLS certificate file (PEM, the server certificate first, then its chain). Setting it serves HTTPS on every listener; wsgi.url_scheme is https.";
    ssl_version: String = "TLS".to_string();
        section "SSL", flags ["ssl-version"], meta "STRING", default_doc "TLS",
        help "Deprecated in gunicorn and ignored, with a warning: TLS 1.2 and 1.3 are offered (use an ssl_context hook to set minimum_version).";
    cert_reqs: u32 = 0;
        section "SSL", flags ["cert-reqs"], meta "INT", default_doc "0",
        help "Whether a client certificate is required: 0 none, 1 optional, 2 required.";
    ca_certs: Option<String> = None;
        section "SSL", flags ["ca-certs"], meta "FILE", default_doc "none",
        help "CA certificates file for checking client certificates.";
    suppress_ragged_eofs: bool = true;
        section "SSL", flags ["suppress-ragged-eofs"], meta "", default_doc "true",
        help "Treat a TLS connection closed without close_notify as a normal end of stream.";
    do_handshake_on_connect: bool = false;
        section "SSL", flags ["do-handshake-on-connect"], meta "", default_doc "false",
        help "Accepted for gunicorn compatibility; handshakes always complete in the engine as the client's bytes arrive, under --header-timeout, before any request reaches Python.";
    ciphers: Option<String> = None;
        section "SSL", flags ["ciphers"], meta "CIPHERS", default_doc "the TLS library's default",
        help "Allowed TLS 1.2 cipher suites, in OpenSSL cipher-list syntax, in the server's order of preference (TLS 1.3 suites stay on unless named). A list that selects nothing rustls has is an error.";
    http_protocols: String = "h1".to_string();
        section "HTTP/2", flags ["http-protocols"], meta "STRING", default_doc "h1",
        help "Comma-separated protocols to offer, most preferred first: h1 (HTTP/1.1), h2 (HTTP/2). Under TLS they are offered by ALPN in this order; without TLS, h2 needs --http2-cleartext. h2 needs h1 beside it; h3 is refused (not implemented).";
    http2_cleartext: String = "off".to_string();
        section "HTTP/2", flags ["http2-cleartext"], meta "STRING", default_doc "off",
        help "HTTP/2 without TLS (h2c), for a trusted proxy in front (--forwarded-allow-ips; a unix-socket peer is always trusted): off; prior-knowledge (connections that open with the HTTP/2 preface; anything else from a trusted peer gets 400); upgrade (an HTTP/1.1 request with Upgrade: h2c gets 101 and is answered as stream 1; other HTTP/1.1 is served as usual); both (either). true/false mean prior-knowledge/off. Needs h2 in --http-protocols. Other peers are served HTTP/1.1 as if it were off.";
    http2_max_concurrent_streams: u32 = 100;
        section "HTTP/2", flags ["http2-max-concurrent-streams"], meta "INT", default_doc "100",
        help "Most streams open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS); a client opening more has them refused.";
    http2_initial_window_size: u32 = 65_535;
        section "HTTP/2", flags ["http2-initial-window-size"], meta "INT", default_doc "65535",
        help "Initial HTTP/2 flow-control window of each stream, in bytes (at most 2147483647): how much of a request body a client may send before the app reads it.";
    http2_max_frame_size: u32 = 16_384;
        section "HTTP/2", flags ["http2-max-frame-size"], meta "INT", default_doc "16384",
        help "Largest HTTP/2 frame payload accepted, in bytes (16384 to 16777215).";
    http2_max_header_list_size: u32 = 65_536;
        section "HTTP/2", flags ["http2-max-header-list-size"], meta "INT", default_doc "65536",
        help "Largest HTTP/2 header list accepted after HPACK decoding, in bytes (the defence against HPACK bombs and CONTINUATION floods); 0 means the h2 library's own bound (16 MiB).";
    dirty_apps: Vec<String> = Vec::new();
        section "Dirty Arbiters", flags ["dirty-app"], meta "STRING", default_doc "none",
        unsupported "this version has no dirty-arbiter pool",
        help "An app to run in the dirty-arbiter pool. Repeatable.";
    dirty_workers: u32 = 0;
        section "Dirty Arbiters", flags ["dirty-workers"], meta "INT", default_doc "0",
        unsupported "this version has no dirty-arbiter pool",
        help "Number of dirty-arbiter worker processes.";
    dirty_timeout: u64 = 300;
        section "Dirty Arbiters", flags ["dirty-timeout"], meta "INT", default_doc "300",
        unsupported "this version has no dirty-arbiter pool",
        help "Seconds a dirty-arbiter task may run.";
    dirty_threads: u32 = 1;
        section "Dirty Arbiters", flags ["dirty-threads"], meta "INT", default_doc "1",
        unsupported "this version has no dirty-arbiter pool",
        help "Threads per dirty-arbiter worker.";
    dirty_graceful_timeout: u64 = 30;
        section "Dirty Arbiters", flags ["dirty-graceful-timeout"], meta "INT", default_doc "30",
        unsupported "this version has no dirty-arbiter pool",
        help "Seconds dirty-arbiter workers get to finish on a graceful stop.";
    on_dirty_starting: Option<String> = None;
        section "Dirty Arbiter Hooks", flags [], meta "CALLABLE", default_doc "none",
        unsupported "this version has no dirty-arbiter pool",
        help "Hook called when the dirty arbiter starts.";
    dirty_post_fork: Option<String> = None;
        section "Dirty Arbiter Hooks", flags [], meta "CALLABLE", default_doc "none",
        unsupported "this version has no dirty-arbiter pool",
        help "Hook called in a dirty-arbiter worker after fork.";
    dirty_worker_init: Option<String> = None;
        section "Dirty Arbiter Hooks", flags [], meta "CALLABLE", default_doc "none",
        unsupported "this version has no dirty-arbiter pool",
        help "Hook called once a dirty-arbiter worker has loaded its apps.";
    dirty_worker_exit: Option<String> = None;
        section "Dirty Arbiter Hooks", flags [], meta "CALLABLE", default_doc "none",
        unsupported "this version has no dirty-arbiter pool",
        help "Hook called when a dirty-arbiter worker exits.";
    control_socket: String = match env_default(env, "XDG_RUNTIME_DIR").filter(|d| std::path::Path::new(d).is_dir()) {
            Some(dir) => format!("{dir}/gunicorn.ctl"),
            None => format!("{}/.gunicorn/gunicorn.ctl", env_default(env, "HOME").unwrap_or_default()),
        };
        section "Control", flags ["control-socket"], meta "PATH",
        default_doc "$XDG_RUNTIME_DIR/gunicorn.ctl, or $HOME/.gunicorn/gunicorn.ctl without XDG_RUNTIME_DIR",
        help "Unix socket of the control interface (ferrocorn ctl, and gunicorn's gunicornc); a relative path is taken from --chdir, and a missing directory is created with mode 0700. The packaged systemd units put it in the instance's runtime directory.";
    control_socket_mode: Mode = Mode(0o600);
        section "Control", flags ["control-socket-mode"], meta "INT", default_doc "0600",
        help "Permissions of the control socket, set as it is created (0600: its owner only; 0660: its group too). Connections are also checked against the peer's user: the socket's owner, root, and the users the mode admits.";
    control_socket_disable: bool = false;
        section "Control", flags ["no-control-socket"], meta "", default_doc "false",
        help "Do not open a control socket.";
}

impl Settings {
    /// The app spec; present whenever `load` returned `Run`/`CheckConfig`.
    /// With `--paste` (and no APP_MODULE) it is `paste:FILE[#name]`.
    pub fn app(&self) -> &str {
        self.wsgi_app.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::SETTINGS;

    /// gunicorn 27.0.1's settings (`gunicorn.config.KNOWN_SETTINGS`), in its order.
    const GUNICORN_27: &str = "config wsgi_app bind backlog workers worker_class threads \
        worker_connections max_requests max_requests_jitter timeout graceful_timeout keepalive \
        limit_request_line limit_request_fields limit_request_field_size reload reload_engine \
        reload_extra_files spew check_config print_config preload_app sendfile reuse_port chdir \
        daemon raw_env pidfile worker_tmp_dir user group umask initgroups tmp_upload_dir \
        secure_scheme_headers forwarded_allow_ips accesslog disable_redirect_access_to_syslog \
        access_log_format errorlog loglevel capture_output logger_class logconfig logconfig_dict \
        logconfig_json syslog_addr syslog syslog_prefix syslog_facility enable_stdio_inheritance \
        statsd_host dogstatsd_tags statsd_prefix enable_backlog_metric proc_name default_proc_name \
        pythonpath paste on_starting on_reload when_ready pre_fork post_fork post_worker_init \
        worker_int worker_abort pre_exec pre_request post_request child_exit worker_exit \
        nworkers_changed on_exit ssl_context proxy_protocol proxy_allow_ips protocol \
        uwsgi_allow_ips keyfile certfile ssl_version cert_reqs ca_certs suppress_ragged_eofs \
        do_handshake_on_connect ciphers http_protocols http2_cleartext \
        http2_max_concurrent_streams http2_initial_window_size http2_max_frame_size \
        http2_max_header_list_size raw_paste_global_conf permit_obsolete_folding \
        strip_header_spaces permit_unconventional_http_method permit_unconventional_http_version \
        casefold_http_method forwarder_headers header_map asgi_loop asgi_lifespan \
        asgi_disconnect_grace_period websocket_max_message_size http_parser root_path dirty_apps \
        dirty_workers dirty_timeout dirty_threads dirty_graceful_timeout on_dirty_starting \
        dirty_post_fork dirty_worker_init dirty_worker_exit control_socket control_socket_mode \
        control_socket_disable";

    /// Settings whose table entries come with other changes under way
    /// (logging through Python). Whichever lands removes its names here.
    const COMING_ELSEWHERE: &str = "";

    #[test]
    fn every_gunicorn_setting_is_in_the_table() {
        let names: Vec<&str> = GUNICORN_27.split_whitespace().collect();
        assert_eq!(names.len(), 120);
        let elsewhere: Vec<&str> = COMING_ELSEWHERE.split_whitespace().collect();
        for name in &names {
            // The server hooks are Python callables, known to the config
            // host rather than to this table.
            let known = SETTINGS.iter().any(|d| d.name == *name)
                || crate::hooks::HOOKS.iter().any(|(h, _)| h == name);
            assert!(
                known || elsewhere.contains(name),
                "gunicorn's {name} is not in the settings table"
            );
        }
        for name in &elsewhere {
            assert!(names.contains(name), "{name} is not a gunicorn 27 setting");
        }
    }

    #[test]
    fn names_and_flags_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in SETTINGS {
            assert!(seen.insert(d.name.to_string()), "{} twice", d.name);
            for l in d.long {
                assert!(seen.insert(format!("--{l}")), "--{l} twice");
            }
            if let Some(c) = d.short {
                assert!(seen.insert(format!("-{c}")), "-{c} twice");
            }
        }
    }
}
