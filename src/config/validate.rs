//! The checks run once every level is applied: settings accepted only at
//! their default, values each setting's type cannot rule out alone (counts
//! of zero, unknown worker classes, log levels, syslog addresses, umask,
//! `--env`, trusted proxies and networks, header_map, http_parser,
//! secure_scheme_headers, APP_MODULE), the worker class implied by
//! `--threads`, the parsed `bind` list, and which [`Action`] the command
//! line asks for.

use super::{parse_bind, split_list, Action, ConfigError, IpNet, Settings, SETTINGS};

/// Check the settings once every level is applied, and say what to do.
pub(super) fn finish(
    mut s: Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Action, ConfigError> {
    for def in SETTINGS {
        if let Some(reason) = def.unsupported {
            if !s.is_default(def.name, env) {
                return Err(ConfigError::Unsupported {
                    setting: def.display_name(),
                    version: env!("CARGO_PKG_VERSION"),
                    reason,
                });
            }
        }
    }
    let invalid = |setting: &str, value: String, reason: &str| ConfigError::InvalidValue {
        setting: setting.to_string(),
        value,
        reason: reason.to_string(),
    };
    if s.workers == 0 {
        return Err(invalid(
            "--workers",
            "0".into(),
            "at least one worker is needed",
        ));
    }
    if s.cert_reqs > 2 {
        return Err(invalid(
            "--cert-reqs",
            s.cert_reqs.to_string(),
            "expected 0 (none), 1 (optional) or 2 (required)",
        ));
    }
    if let Some(reason) = logger_class_refusal(&s.logger_class) {
        return Err(invalid("--logger-class", s.logger_class.clone(), reason));
    }
    if !matches!(s.reload_engine.as_str(), "auto" | "poll" | "inotify") {
        return Err(invalid(
            "--reload-engine",
            s.reload_engine.clone(),
            "expected auto, poll or inotify",
        ));
    }
    if s.worker_class == "sync" && s.threads > 1 {
        // gunicorn's rule: the sync worker with threads is the threaded one.
        s.worker_class = "gthread".to_string();
    }
    if s.worker_class != "sync"
        && s.worker_class != "gthread"
        && !crate::asgi::runs_on_asyncio(&s.worker_class)
        && crate::worker::executor::green::Library::of(&s.worker_class).is_none()
    {
        return Err(invalid(
            "--worker-class",
            s.worker_class.clone(),
            "supported worker classes: sync, gthread, gevent, eventlet, asgi, tornado (gevent is also named gevent_wsgi, gevent_pywsgi, gunicorn.workers.ggevent.GeventWorker, gunicorn.workers.ggevent.GeventPyWSGIWorker, egg:gunicorn#gevent; eventlet gunicorn.workers.geventlet.EventletWorker, egg:gunicorn#eventlet; asgi uvicorn.workers.UvicornWorker, uvicorn.workers.UvicornH11Worker, uvicorn_worker.UvicornWorker, uvicorn_worker.UvicornH11Worker, gunicorn.workers.gasgi.ASGIWorker)",
        ));
    }
    if !matches!(s.asgi_loop.as_str(), "auto" | "asyncio" | "uvloop") {
        return Err(invalid(
            "--asgi-loop",
            s.asgi_loop.clone(),
            "expected auto, asyncio or uvloop",
        ));
    }
    if !matches!(s.asgi_lifespan.as_str(), "auto" | "on" | "off") {
        return Err(invalid(
            "--asgi-lifespan",
            s.asgi_lifespan.clone(),
            "expected auto, on or off",
        ));
    }
    if s.threads == 0 {
        return Err(invalid(
            "--threads",
            "0".into(),
            "at least one thread is needed",
        ));
    }
    if s.worker_connections == 0 {
        return Err(invalid(
            "--worker-connections",
            "0".into(),
            "at least one connection is needed",
        ));
    }
    for (flag, v) in [
        ("--header-timeout", s.header_timeout),
        ("--body-timeout", s.body_timeout),
    ] {
        if !(v > 0.0 && v < 1e9) {
            return Err(invalid(
                flag,
                v.to_string(),
                "must be a positive number of seconds",
            ));
        }
    }
    if s.limit_request_fields > 32768 {
        return Err(invalid(
            "--limit-request-fields",
            s.limit_request_fields.to_string(),
            "at most 32768",
        ));
    }
    if s.backlog <= 0 {
        return Err(invalid(
            "--backlog",
            s.backlog.to_string(),
            "must be positive",
        ));
    }
    if !matches!(
        s.loglevel.to_ascii_lowercase().as_str(),
        "debug" | "info" | "warning" | "error" | "critical"
    ) {
        return Err(invalid(
            "--log-level",
            s.loglevel.clone(),
            "expected debug, info, warning, error or critical",
        ));
    }
    for kv in &s.raw_env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(invalid("--env", kv.clone(), "expected KEY=VALUE"));
        }
    }
    if s.syslog_facility.parse::<syslog::Facility>().is_err() {
        return Err(invalid(
            "--log-syslog-facility",
            s.syslog_facility.clone(),
            "unknown facility (user, daemon, local0..local7, ...)",
        ));
    }
    if !["unix://", "udp://", "tcp://"]
        .iter()
        .any(|p| s.syslog_addr.starts_with(p))
    {
        return Err(invalid(
            "--log-syslog-to",
            s.syslog_addr.clone(),
            "expected unix://PATH, udp://HOST:PORT or tcp://HOST:PORT",
        ));
    }
    parse_umask(&s.umask).map_err(|r| invalid("--umask", s.umask.clone(), &r))?;
    if let Some(h) = &s.statsd_host {
        crate::metrics::statsd::parse_addr(h)
            .map_err(|r| invalid("--statsd-host", h.clone(), &r))?;
    }
    if let Some(a) = &s.metrics_bind {
        parse_bind(a).map_err(|e| match e {
            ConfigError::Bind { reason, .. } => invalid("--metrics-bind", a.clone(), &reason),
            e => e,
        })?;
    }
    crate::log::access::Format::parse(&s.access_log_format)
        .map_err(|r| invalid("--access-logformat", s.access_log_format.clone(), &r))?;
    if s.daemon && env("NOTIFY_SOCKET").is_some() {
        return Err(invalid(
            "--daemon",
            "true".into(),
            "cannot daemonize under systemd (NOTIFY_SOCKET is set): let systemd supervise the process",
        ));
    }
    // gunicorn's comma-separated lists, however they were given.
    s.forwarded_allow_ips = split_list(&s.forwarded_allow_ips);
    s.forwarder_headers = split_list(&s.forwarder_headers);
    s.proxy_allow_ips = split_list(&s.proxy_allow_ips);
    s.uwsgi_allow_ips = split_list(&s.uwsgi_allow_ips);
    for (flag, list) in [
        ("--forwarded-allow-ips", &s.forwarded_allow_ips),
        ("--proxy-allow-from", &s.proxy_allow_ips),
        ("--uwsgi-allow-from", &s.uwsgi_allow_ips),
    ] {
        for ip in list {
            if ip != "*" {
                IpNet::parse(ip).map_err(|r| invalid(flag, ip.clone(), &r))?;
            }
        }
    }
    s.protocol = s.protocol.trim().to_ascii_lowercase();
    if !matches!(s.protocol.as_str(), "http" | "uwsgi") {
        return Err(invalid(
            "--protocol",
            s.protocol.clone(),
            "expected http or uwsgi",
        ));
    }
    check_http2(&mut s)?;
    s.header_map = s.header_map.trim().to_ascii_lowercase();
    if !matches!(s.header_map.as_str(), "drop" | "refuse" | "dangerous") {
        return Err(invalid(
            "--header-map",
            s.header_map.clone(),
            "expected drop, refuse or dangerous",
        ));
    }
    s.http_parser = s.http_parser.trim().to_ascii_lowercase();
    if !matches!(s.http_parser.as_str(), "auto" | "fast" | "python") {
        return Err(invalid(
            "--http-parser",
            s.http_parser.clone(),
            "expected auto, fast or python",
        ));
    }
    for (name, _) in &s.secure_scheme_headers.0 {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(invalid(
                "secure_scheme_headers",
                name.clone(),
                "not a valid header name",
            ));
        }
    }
    if s.bind.is_empty() {
        return Err(invalid(
            "--bind",
            String::new(),
            "at least one address is needed",
        ));
    }
    s.binds = s
        .bind
        .iter()
        .map(|b| parse_bind(b))
        .collect::<Result<_, _>>()?;
    if let Some(app) = &s.wsgi_app {
        if !app.starts_with("paste:") {
            check_app_spec(app)?;
        }
    }
    if let Some(p) = &s.paste {
        // --paste names the app (gunicorn: the ini replaces APP_MODULE).
        let (file, section) = match p.split_once('#') {
            Some((f, name)) => (f, Some(name)),
            None => (p.as_str(), None),
        };
        let file = file.strip_prefix("config:").unwrap_or(file);
        let abs = std::path::absolute(file)
            .map(|a| a.display().to_string())
            .unwrap_or_else(|_| file.to_string());
        s.wsgi_app = Some(match section {
            Some(name) => format!("paste:{abs}#{name}"),
            None => format!("paste:{abs}"),
        });
    }
    for kv in &s.raw_paste_global_conf {
        if !kv.contains('=') {
            return Err(invalid("--paste-global", kv.clone(), "expected KEY=VALUE"));
        }
    }
    if s.print_config {
        return Ok(Action::PrintConfig(Box::new(s)));
    }
    if s.wsgi_app.is_none() {
        return Err(ConfigError::NoApp);
    }
    if s.check_config {
        return Ok(Action::CheckConfig(Box::new(s)));
    }
    Ok(Action::Run(Box::new(s)))
}

/// Why a `--logger-class` is refused (None: the default, accepted).
pub(super) fn logger_class_refusal(class: &str) -> Option<&'static str> {
    match class {
        // The statsd logger is gunicorn's default logger plus statsd,
        // which --statsd-host turns on.
        "gunicorn.glogging.Logger" | "glogging.Logger" | "gunicorn.instrument.statsd.Statsd" => {
            None
        }
        _ => Some(
            "a logger class is Python code around gunicorn's Logger, which ferrocorn does not run; \
             use --log-config-json or logconfig_dict for handlers and formatters, \
             --access-logformat for the line",
        ),
    }
}

/// `--umask`: octal with a leading 0 or 0o, else decimal (gunicorn's rule).
pub fn parse_umask(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let v = if let Some(o) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        u32::from_str_radix(o, 8)
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8)
    } else {
        t.parse::<u32>()
    };
    match v {
        Ok(v) if v <= 0o777 => Ok(v),
        _ => Err("expected a mask such as 0o22, 022 or 18".into()),
    }
}

/// A cheap syntactic check of APP_MODULE; the worker does the real parse.
/// The HTTP/2 settings: gunicorn 27's values, normalized, and what this
/// version cannot do refused with the reason.
fn check_http2(s: &mut Settings) -> Result<(), ConfigError> {
    let invalid = |setting: &str, value: String, reason: &str| ConfigError::InvalidValue {
        setting: setting.to_string(),
        value,
        reason: reason.to_string(),
    };
    let mut protocols: Vec<String> = Vec::new();
    for p in s.http_protocols.split(',') {
        let p = p.trim().to_ascii_lowercase();
        if p.is_empty() {
            continue;
        }
        match p.as_str() {
            "h1" | "h2" => {}
            "h3" => {
                return Err(invalid(
                    "--http-protocols",
                    s.http_protocols.clone(),
                    "h3 (HTTP/3) is not implemented",
                ))
            }
            _ => {
                return Err(invalid(
                    "--http-protocols",
                    s.http_protocols.clone(),
                    &format!("unknown protocol {p:?}: expected h1 or h2"),
                ))
            }
        }
        if protocols.contains(&p) {
            return Err(invalid(
                "--http-protocols",
                s.http_protocols.clone(),
                "a protocol is named twice",
            ));
        }
        protocols.push(p);
    }
    if protocols.is_empty() {
        protocols.push("h1".into());
    }
    s.http_protocols = protocols.join(",");
    let h2 = protocols.iter().any(|p| p == "h2");
    if !protocols.iter().any(|p| p == "h1") {
        return Err(invalid(
            "--http-protocols",
            s.http_protocols.clone(),
            "HTTP/2 alone is not supported (a client that does not offer h2 would get nothing): add h1",
        ));
    }
    let mode = s.http2_cleartext.trim().to_ascii_lowercase();
    s.http2_cleartext = match mode.as_str() {
        "true" => "prior-knowledge".into(),
        "false" | "" => "off".into(),
        _ => mode,
    };
    match s.http2_cleartext.as_str() {
        "off" => {
            if h2 && s.certfile.is_none() {
                return Err(invalid(
                    "--http-protocols",
                    s.http_protocols.clone(),
                    "h2 needs TLS (--certfile, for ALPN) or --http2-cleartext",
                ));
            }
        }
        "prior-knowledge" | "upgrade" | "both" => {
            if !h2 {
                return Err(invalid(
                    "--http2-cleartext",
                    s.http2_cleartext.clone(),
                    "needs h2 in --http-protocols",
                ));
            }
            if s.protocol == "uwsgi" {
                return Err(invalid(
                    "--http2-cleartext",
                    s.http2_cleartext.clone(),
                    "not with --protocol uwsgi",
                ));
            }
            if s.certfile.is_some() {
                return Err(invalid(
                    "--http2-cleartext",
                    s.http2_cleartext.clone(),
                    "cleartext HTTP/2 is for plain TCP; under TLS h2 is offered by ALPN",
                ));
            }
        }
        _ => {
            return Err(invalid(
                "--http2-cleartext",
                s.http2_cleartext.clone(),
                "expected off, prior-knowledge, upgrade or both",
            ))
        }
    }
    if !(16_384..=16_777_215).contains(&s.http2_max_frame_size) {
        return Err(invalid(
            "--http2-max-frame-size",
            s.http2_max_frame_size.to_string(),
            "must be between 16384 and 16777215",
        ));
    }
    if s.http2_initial_window_size > 0x7fff_ffff {
        return Err(invalid(
            "--http2-initial-window-size",
            s.http2_initial_window_size.to_string(),
            "at most 2147483647",
        ));
    }
    if s.http2_max_concurrent_streams == 0 {
        return Err(invalid(
            "--http2-max-concurrent-streams",
            "0".into(),
            "at least 1",
        ));
    }
    Ok(())
}

fn check_app_spec(app: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidValue {
        setting: "APP_MODULE".into(),
        value: app.to_string(),
        reason: reason.to_string(),
    };
    let (module, attr) = match app.split_once(':') {
        Some((m, a)) => (m, Some(a)),
        None => (app, None),
    };
    let is_ident = |s: &str| {
        let mut cs = s.chars();
        matches!(cs.next(), Some(c) if c.is_alphabetic() || c == '_')
            && cs.all(|c| c.is_alphanumeric() || c == '_')
    };
    if module.is_empty() || !module.split('.').all(is_ident) {
        return Err(bad(
            "expected MODULE[:ATTR], e.g. myproject.wsgi:application",
        ));
    }
    if let Some(attr) = attr {
        let name = attr.split('(').next().unwrap_or("").trim();
        if name.is_empty() || !name.split('.').all(is_ident) {
            return Err(bad(
                "the part after ':' must be a name or a call like factory()",
            ));
        }
        if attr.contains('(') && !attr.trim_end().ends_with(')') {
            return Err(bad("unbalanced parentheses in the factory call"));
        }
    }
    Ok(())
}
