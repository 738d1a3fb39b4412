//! Settings: one table defines every setting's name (the TOML key, which is
//! gunicorn's setting name), its command-line flags, default, value type and
//! help text. `--help`, `--print-config`, the config file and the man page are
//! all generated from [`SETTINGS`], so they cannot drift apart.
//!
//! Precedence, lowest first: defaults (some read from the environment, as
//! gunicorn does: `PORT`, `WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`,
//! `VIRTUAL_ENV`) < config file < `FERROCORN_CMD_ARGS` < command line.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub mod docs;

/// Errors while assembling the configuration. Every variant renders as one
/// line that names the culprit; the binary exits with code 2 on any of them.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Usage(String),
    #[error("invalid value '{value}' for {setting}: {reason}")]
    InvalidValue {
        setting: String,
        value: String,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config file {path}: unknown setting '{key}'")]
    UnknownKey { path: PathBuf, key: String },
    #[error("invalid bind address '{addr}': {reason}")]
    Bind { addr: String, reason: String },
    #[error("{setting} is not supported yet by ferrocorn {version}: {reason}")]
    Unsupported {
        setting: String,
        version: &'static str,
        reason: &'static str,
    },
    #[error("FERROCORN_CMD_ARGS: {0}")]
    EnvArgs(String),
    #[error("No application module specified.")]
    NoApp,
}

/// What `ferrocorn` was asked to do, once the arguments are understood.
#[derive(Debug)]
pub enum Action {
    Run(Box<Settings>),
    PrintConfig(Box<Settings>),
    CheckConfig(Box<Settings>),
    Help(String),
    Version,
}

/// How a setting's value is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A switch: `--preload`.
    Flag,
    /// One value; the last one given wins.
    One,
    /// Repeatable: `-b A -b B`.
    Many,
}

/// A value a setting can hold. Each type knows how to read itself from a
/// command-line string and from TOML, and how to print itself as TOML.
pub trait SettingValue: Sized {
    const ARITY: Arity = Arity::One;
    fn parse_str(s: &str) -> Result<Self, String>;
    fn from_toml(v: &toml::Value) -> Result<Self, String>;
    fn to_toml(&self) -> Option<String>;
    /// Command-line values of one level (file, env or argv) for this setting.
    fn from_cli(values: Vec<String>) -> Result<Self, (String, String)> {
        let last = values.into_iter().last().unwrap_or_default();
        Self::parse_str(&last).map_err(|e| (last, e))
    }
}

impl SettingValue for bool {
    const ARITY: Arity = Arity::Flag;
    fn parse_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| "expected a boolean".into())
    }
    fn to_toml(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! int_setting {
    ($t:ty, $what:literal) => {
        impl SettingValue for $t {
            fn parse_str(s: &str) -> Result<Self, String> {
                s.trim()
                    .parse::<$t>()
                    .map_err(|_| concat!("expected ", $what).into())
            }
            fn from_toml(v: &toml::Value) -> Result<Self, String> {
                v.as_integer()
                    .and_then(|i| <$t>::try_from(i).ok())
                    .ok_or_else(|| concat!("expected ", $what).into())
            }
            fn to_toml(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    };
}
int_setting!(u32, "a non-negative integer");
int_setting!(u64, "a non-negative integer");
int_setting!(i32, "an integer");

impl SettingValue for f64 {
    fn parse_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err("expected a non-negative number of seconds".into()),
        }
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let f = v
            .as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .ok_or_else(|| "expected a number".to_string())?;
        if f.is_finite() && f >= 0.0 {
            Ok(f)
        } else {
            Err("expected a non-negative number".into())
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(if self.fract() == 0.0 {
            format!("{self:.0}")
        } else {
            self.to_string()
        })
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl SettingValue for String {
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| "expected a string".into())
    }
    fn to_toml(&self) -> Option<String> {
        Some(toml_str(self))
    }
}

impl SettingValue for Option<String> {
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(if s.is_empty() {
            None
        } else {
            Some(s.to_string())
        })
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        String::from_toml(v).map(|s| if s.is_empty() { None } else { Some(s) })
    }
    fn to_toml(&self) -> Option<String> {
        self.as_deref().map(toml_str)
    }
}

impl SettingValue for Vec<String> {
    const ARITY: Arity = Arity::Many;
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => Ok(vec![s.clone()]),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "expected an array of strings".to_string())
                })
                .collect(),
            _ => Err("expected a string or an array of strings".into()),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(format!(
            "[{}]",
            self.iter()
                .map(|s| toml_str(s))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
    fn from_cli(values: Vec<String>) -> Result<Self, (String, String)> {
        Ok(values)
    }
}

/// The documentation of one setting, as shown by `--help`, the man page and
/// `--print-config`.
#[derive(Debug)]
pub struct SettingDef {
    /// TOML key (gunicorn's setting name).
    pub name: &'static str,
    pub section: &'static str,
    /// Long flags, first is canonical (without the leading dashes).
    pub long: &'static [&'static str],
    pub short: Option<char>,
    pub value_name: &'static str,
    pub default_doc: &'static str,
    pub help: &'static str,
    pub arity: Arity,
    /// `Some(reason)` while the setting is accepted only at its default.
    pub unsupported: Option<&'static str>,
    /// Only meaningful on the command line (not a TOML key).
    pub cli_only: bool,
}

macro_rules! settings {
    ($envid:ident; $(
        $field:ident : $ty:ty = $default:expr ;
            section $section:literal,
            flags [$($long:literal),*] $(short $short:literal)?,
            meta $meta:literal,
            default_doc $ddoc:literal,
            $(unsupported $unsup:literal,)?
            $(cli_only $cli_only:literal,)?
            help $help:literal ;
    )*) => {
        /// Every setting, resolved.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(pub $field: $ty,)*
            /// `bind`, parsed.
            pub binds: Vec<BindAddr>,
        }

        /// The single definition of every setting.
        pub static SETTINGS: &[SettingDef] = &[$(
            SettingDef {
                name: stringify!($field),
                section: $section,
                long: &[$($long),*],
                short: settings!(@short $($short)?),
                value_name: $meta,
                default_doc: $ddoc,
                help: $help,
                arity: <$ty as SettingValue>::ARITY,
                unsupported: settings!(@opt $($unsup)?),
                cli_only: settings!(@bool $($cli_only)?),
            },
        )*];

        impl Settings {
            fn defaults($envid: &dyn Fn(&str) -> Option<String>) -> Settings {
                Settings { $($field: $default,)* binds: Vec::new() }
            }

            /// Apply one TOML key; `Ok(false)` if the key is unknown.
            fn apply_toml(&mut self, key: &str, v: &toml::Value) -> Result<bool, String> {
                match key {
                    $(stringify!($field) if !settings!(@bool $($cli_only)?) => {
                        self.$field = <$ty as SettingValue>::from_toml(v)?;
                        Ok(true)
                    })*
                    _ => Ok(false),
                }
            }

            /// Apply the values given for one setting at one command-line level.
            fn apply_cli(&mut self, name: &str, values: Vec<String>) -> Result<(), ConfigError> {
                match name {
                    $(stringify!($field) => {
                        self.$field = <$ty as SettingValue>::from_cli(values).map_err(|(value, reason)| {
                            ConfigError::InvalidValue { setting: format!("--{}", [$($long),*][0]), value, reason }
                        })?;
                        Ok(())
                    })*
                    _ => Ok(()),
                }
            }

            /// `(name, TOML value)` of every setting, in table order.
            pub fn rendered(&self) -> Vec<(&'static str, Option<String>)> {
                vec![$((stringify!($field), <$ty as SettingValue>::to_toml(&self.$field)),)*]
            }

            fn is_default(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> bool {
                let d = Settings::defaults(env);
                match name {
                    $(stringify!($field) => <$ty as SettingValue>::to_toml(&self.$field) == <$ty as SettingValue>::to_toml(&d.$field),)*
                    _ => true,
                }
            }
        }
    };
    (@short $s:literal) => { Some($s) };
    (@short) => { None };
    (@opt $s:literal) => { Some($s) };
    (@opt) => { None };
    (@bool $b:literal) => { $b };
    (@bool) => { false };
}

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
        help "The worker type: sync (one request at a time per worker) or gthread (a pool of --threads Python threads per worker). sync with --threads above 1 means gthread.";
    threads: u32 = 1;
        section "Worker Processes", flags ["threads"], meta "INT", default_doc "1",
        help "Python threads per worker running requests (gthread worker); with -k sync, a value above 1 selects gthread.";
    worker_connections: u32 = 1000;
        section "Worker Processes", flags ["worker-connections"], meta "INT", default_doc "1000",
        help "Maximum number of open client connections per worker; at the limit, idle keep-alive connections and stalled partial request heads are closed to make room, otherwise accepting pauses.";
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
    limit_request_line: u32 = 4094;
        section "Security", flags ["limit-request-line"], meta "INT", default_doc "4094",
        help "Maximum size of the HTTP request line in bytes (0 = unlimited).";
    limit_request_fields: u32 = 100;
        section "Security", flags ["limit-request-fields"], meta "INT", default_doc "100",
        help "Maximum number of header fields in a request (at most 32768).";
    limit_request_field_size: u32 = 8190;
        section "Security", flags ["limit-request-field_size", "limit-request-field-size"], meta "INT", default_doc "8190",
        help "Maximum size of one request header field in bytes (0 = unlimited).";
    forwarded_allow_ips: Vec<String> = env_default(env, "FORWARDED_ALLOW_IPS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_else(|| vec!["127.0.0.1".to_string(), "::1".to_string()]);
        section "Server Mechanics", flags ["forwarded-allow-ips"], meta "STRING",
        default_doc "127.0.0.1,::1, or $FORWARDED_ALLOW_IPS",
        help "Comma-separated client addresses trusted to set X-Forwarded-Proto ('*' trusts all).";
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
    errorlog: String = "-".to_string();
        section "Logging", flags ["error-logfile", "log-file"], meta "FILE", default_doc "- (stderr)",
        help "Error log file; '-' is stderr. A relative path is relative to chdir.";
    loglevel: String = "info".to_string();
        section "Logging", flags ["log-level"], meta "LEVEL", default_doc "info",
        help "Error log level: debug, info, warning, error or critical.";
    accesslog: Option<String> = None;
        section "Logging", flags ["access-logfile"], meta "FILE", default_doc "none",
        help "Access log file; '-' is stdout. A relative path is relative to chdir.";
    access_log_format: String = crate::accesslog::DEFAULT_FORMAT.to_string();
        section "Logging", flags ["access-logformat"], meta "STRING", default_doc "gunicorn's common log format",
        help "Access log line format, with gunicorn's %(atom)s placeholders.";
    capture_output: bool = false;
        section "Logging", flags ["capture-output"], meta "", default_doc "false",
        help "Send the app's stdout and stderr to the error log file.";
    syslog: bool = false;
        section "Logging", flags ["log-syslog"], meta "", default_doc "false",
        help "Send the error log to syslog.";
    syslog_addr: String = "unix:///dev/log".to_string();
        section "Logging", flags ["log-syslog-to"], meta "ADDRESS", default_doc "unix:///dev/log",
        help "Syslog address: unix://PATH, udp://HOST:PORT or tcp://HOST:PORT.";
    syslog_prefix: Option<String> = None;
        section "Logging", flags ["log-syslog-prefix"], meta "STRING", default_doc "none",
        help "Program name in syslog lines.";
    syslog_facility: String = "user".to_string();
        section "Logging", flags ["log-syslog-facility"], meta "STRING", default_doc "user",
        help "Syslog facility name.";
}

/// A parsed `bind` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Fd(i32),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "http://{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Fd(n) => write!(f, "fd://{n}"),
        }
    }
}

/// Parse one `bind` value.
pub fn parse_bind(addr: &str) -> Result<BindAddr, ConfigError> {
    let err = |reason: &str| ConfigError::Bind {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(err("empty socket path"));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }
    if let Some(fd) = addr.strip_prefix("fd://") {
        return match fd.parse::<i32>() {
            Ok(n) if n >= 0 => Ok(BindAddr::Fd(n)),
            _ => Err(err("expected fd://N with N a file descriptor number")),
        };
    }
    let addr_s = addr.strip_prefix("tcp://").unwrap_or(addr);
    let (host, port) = if let Some(rest) = addr_s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| err("missing ']' after IPv6 address"))?;
        let port = match tail {
            "" => "8000",
            t => t
                .strip_prefix(':')
                .ok_or_else(|| err("expected ':PORT' after ']'"))?,
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err("not an IPv6 address"));
        }
        (h, port)
    } else {
        match addr_s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(err(
                    "IPv6 addresses must be written in brackets: [::1]:8000",
                ))
            }
            Some((h, p)) => (h, p),
            None => (addr_s, "8000"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| err("the port must be a number from 0 to 65535"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')))
    {
        return Err(err("invalid host name"));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| err(&format!("cannot resolve host: {e}")))?;
    let first = addrs
        .next()
        .ok_or_else(|| err("host resolves to no address"))?;
    Ok(BindAddr::Tcp(first))
}

/// The current `Settings` and where they came from (for `--print-config`
/// and for HUP, which reloads them).
fn one_line(e: clap::Error) -> ConfigError {
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    ConfigError::Usage(line)
}

fn build_command() -> clap::Command {
    use clap::{Arg, ArgAction};
    let mut cmd = clap::Command::new("ferrocorn")
        .about("A pre-fork HTTP server for Python WSGI apps, compatible with gunicorn")
        .after_help(
            "Zero-downtime binary upgrade of a running master: \
             ferrocorn upgrade --pidfile FILE (see ferrocorn upgrade --help).",
        )
        .disable_version_flag(true)
        .disable_help_flag(true)
        .no_binary_name(true)
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::SetTrue)
                .help("Show this help and exit."),
        )
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Show the version and exit."),
        )
        .arg(Arg::new("APP_MODULE").index(1).help(
            "The WSGI app: MODULE[:ATTR] (ATTR defaults to 'application') or MODULE:FACTORY(ARGS)",
        ));
    for def in SETTINGS {
        let mut arg = Arg::new(def.name)
            .long(def.long[0])
            .help_heading(def.section)
            .help(format!("{} [default: {}]", def.help, def.default_doc));
        for alias in &def.long[1..] {
            arg = arg.visible_alias(*alias);
        }
        if let Some(s) = def.short {
            arg = arg.short(s);
        }
        arg = match def.arity {
            Arity::Flag => arg.action(ArgAction::SetTrue),
            Arity::One => arg
                .action(ArgAction::Append)
                .value_name(def.value_name)
                .allow_hyphen_values(true),
            Arity::Many => arg
                .action(ArgAction::Append)
                .value_name(def.value_name)
                .allow_hyphen_values(true),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// A setting in seconds as a `Duration`: negative or NaN is 0, and absurdly
/// large values (which `Duration` cannot hold) are capped at ten years.
pub fn seconds(v: f64) -> std::time::Duration {
    const CAP: f64 = 10.0 * 365.0 * 86_400.0;
    if v.is_nan() || v <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(v.min(CAP))
}

/// The `--help` text.
pub fn help_text() -> String {
    build_command().render_help().to_string()
}

/// The values one command-line level (FERROCORN_CMD_ARGS or argv) sets.
struct CliLevel {
    app: Option<String>,
    help: bool,
    version: bool,
    values: Vec<(&'static str, Vec<String>)>,
}

fn parse_level(args: Vec<OsString>) -> Result<CliLevel, ConfigError> {
    let m = build_command()
        .try_get_matches_from(args)
        .map_err(one_line)?;
    let mut values = Vec::new();
    for def in SETTINGS {
        match def.arity {
            Arity::Flag => {
                if m.get_flag(def.name) {
                    values.push((def.name, vec!["true".to_string()]));
                }
            }
            _ => {
                if let Some(vals) = m.get_many::<String>(def.name) {
                    values.push((def.name, vals.cloned().collect()));
                }
            }
        }
    }
    Ok(CliLevel {
        app: m.get_one::<String>("APP_MODULE").cloned(),
        help: m.get_flag("help"),
        version: m.get_flag("version"),
        values,
    })
}

/// Split `FERROCORN_CMD_ARGS` like a POSIX shell would (quotes and
/// backslashes; no expansion).
fn shell_split(s: &str) -> Result<Vec<OsString>, ConfigError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(ConfigError::EnvArgs("unterminated ' quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => {
                                return Err(ConfigError::EnvArgs("unterminated \" quote".into()))
                            }
                        },
                        Some(c) => cur.push(c),
                        None => return Err(ConfigError::EnvArgs("unterminated \" quote".into())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(OsString::from(std::mem::take(&mut cur)));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(OsString::from(cur));
    }
    Ok(out)
}

fn load_file(settings: &mut Settings, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
    for (key, value) in &table {
        match settings.apply_toml(key, value) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key: key.clone(),
                })
            }
            Err(reason) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    reason: format!("invalid value for '{key}': {reason}"),
                })
            }
        }
    }
    Ok(())
}

/// Resolve the configuration from the command line and the environment.
/// `args` excludes the program name.
pub fn load(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Action, ConfigError> {
    let argv = parse_level(args)?;
    if argv.help {
        return Ok(Action::Help(help_text()));
    }
    if argv.version {
        return Ok(Action::Version);
    }
    let env_level = match env("FERROCORN_CMD_ARGS") {
        Some(s) if !s.trim().is_empty() => {
            Some(parse_level(shell_split(&s)?).map_err(|e| ConfigError::EnvArgs(e.to_string()))?)
        }
        _ => None,
    };

    let mut settings = Settings::defaults(env);

    // The config file: named on the command line (argv wins over env), or
    // ./ferrocorn.toml when present, as gunicorn reads ./gunicorn.conf.py.
    let named = |level: &CliLevel| {
        level
            .values
            .iter()
            .find(|(n, _)| *n == "config")
            .and_then(|(_, v)| v.last().cloned())
    };
    let config_path = named(&argv).or_else(|| env_level.as_ref().and_then(named));
    match &config_path {
        Some(p) => load_file(&mut settings, Path::new(p))?,
        None => {
            let default = Path::new("ferrocorn.toml");
            if default.is_file() {
                load_file(&mut settings, default)?;
                settings.config = Some("ferrocorn.toml".into());
            }
        }
    }

    for level in env_level.iter().chain(std::iter::once(&argv)) {
        for (name, vals) in &level.values {
            settings.apply_cli(name, vals.clone())?;
        }
        if let Some(app) = &level.app {
            settings.wsgi_app = Some(app.clone());
        }
    }
    finish(settings, env)
}

fn finish(mut s: Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<Action, ConfigError> {
    for def in SETTINGS {
        if let Some(reason) = def.unsupported {
            if !s.is_default(def.name, env) {
                return Err(ConfigError::Unsupported {
                    setting: format!("--{}", def.long[0]),
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
    if s.worker_class == "sync" && s.threads > 1 {
        // gunicorn's rule: the sync worker with threads is the threaded one.
        s.worker_class = "gthread".to_string();
    }
    if s.worker_class != "sync" && s.worker_class != "gthread" {
        return Err(invalid(
            "--worker-class",
            s.worker_class.clone(),
            "supported worker classes: sync, gthread",
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
    crate::accesslog::Format::parse(&s.access_log_format)
        .map_err(|r| invalid("--access-logformat", s.access_log_format.clone(), &r))?;
    if s.daemon && env("NOTIFY_SOCKET").is_some() {
        return Err(invalid(
            "--daemon",
            "true".into(),
            "cannot daemonize under systemd (NOTIFY_SOCKET is set): let systemd supervise the process",
        ));
    }
    for ip in &s.forwarded_allow_ips {
        if ip != "*" && ip.trim().parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "--forwarded-allow-ips",
                ip.clone(),
                "expected IP addresses separated by commas, or '*'",
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
        check_app_spec(app)?;
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

impl Settings {
    /// The configuration as a TOML document, for `--print-config`.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        for (def, (name, value)) in SETTINGS.iter().zip(self.rendered()) {
            if def.cli_only {
                continue;
            }
            match value {
                Some(v) => {
                    let _ = writeln!(out, "{name} = {v}");
                }
                None => {
                    let _ = writeln!(out, "# {name} is not set");
                }
            }
        }
        out
    }

    /// The app spec; present whenever `load` returned `Run`/`CheckConfig`.
    pub fn app(&self) -> &str {
        self.wsgi_app.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn run(args: &[&str]) -> Result<Settings, ConfigError> {
        match load(args.iter().map(OsString::from).collect(), &no_env)? {
            Action::Run(s) | Action::PrintConfig(s) | Action::CheckConfig(s) => Ok(*s),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn threads_select_gthread() {
        assert_eq!(run(&["m"]).unwrap().worker_class, "sync");
        assert_eq!(
            run(&["--threads", "2", "m"]).unwrap().worker_class,
            "gthread"
        );
        assert_eq!(
            run(&["-k", "sync", "--threads", "1", "m"])
                .unwrap()
                .worker_class,
            "sync"
        );
        let s = run(&["-k", "gthread", "m"]).unwrap();
        assert_eq!((s.worker_class.as_str(), s.threads), ("gthread", 1));
        let s = run(&["--header-timeout", "2.5", "--body-timeout", "7", "m"]).unwrap();
        assert_eq!((s.header_timeout, s.body_timeout), (2.5, 7.0));
    }

    #[test]
    fn defaults_and_flags() {
        let s = run(&["app:app"]).unwrap();
        assert_eq!(s.workers, 1);
        assert_eq!(s.binds, vec![parse_bind("127.0.0.1:8000").unwrap()]);
        let s = run(&[
            "-w",
            "4",
            "-b",
            "0.0.0.0:9000",
            "-b",
            "unix:/tmp/x.sock",
            "m",
        ])
        .unwrap();
        assert_eq!(s.workers, 4);
        assert_eq!(s.bind.len(), 2);
        assert_eq!(s.binds[1], BindAddr::Unix("/tmp/x.sock".into()));
        let s = run(&["--limit-request-field_size", "100", "m"]).unwrap();
        assert_eq!(s.limit_request_field_size, 100);
        let s = run(&["--limit-request-field-size", "200", "m"]).unwrap();
        assert_eq!(s.limit_request_field_size, 200);
    }

    #[test]
    fn env_defaults() {
        let env = |k: &str| match k {
            "PORT" => Some("5000".to_string()),
            "WEB_CONCURRENCY" => Some("3".to_string()),
            _ => None,
        };
        let Action::Run(s) = load(vec!["m".into()], &env).unwrap() else {
            panic!()
        };
        assert_eq!(s.workers, 3);
        assert_eq!(s.bind, vec!["0.0.0.0:5000".to_string()]);
    }

    #[test]
    fn bind_forms() {
        assert!(
            matches!(parse_bind("[::1]:8080"), Ok(BindAddr::Tcp(a)) if a.port() == 8080 && a.is_ipv6())
        );
        assert_eq!(parse_bind("fd://3").unwrap(), BindAddr::Fd(3));
        assert!(matches!(parse_bind("127.0.0.1"), Ok(BindAddr::Tcp(a)) if a.port() == 8000));
        for bad in [
            "127.0.0.1:99999",
            "::1:80",
            "[::1",
            "fd://x",
            "unix:",
            "host:port",
            "a b:1",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn errors_name_the_culprit() {
        let e = run(&["--workers", "many", "m"]).unwrap_err().to_string();
        assert!(e.contains("--workers") && e.contains("many"), "{e}");
        let e = run(&["--bogus", "m"]).unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
        assert!(!e.contains('\n'));
        let e = run(&["-b", "1.2.3.4:x", "m"]).unwrap_err().to_string();
        assert!(e.contains("1.2.3.4:x"), "{e}");
        let e = run(&["--threads", "0", "m"]).unwrap_err().to_string();
        assert!(e.contains("--threads"), "{e}");
        let e = run(&["-k", "eventlet", "m"]).unwrap_err().to_string();
        assert!(e.contains("eventlet"), "{e}");
        let e = run(&["--header-timeout", "0", "m"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--header-timeout"), "{e}");
        let e = run(&["--forwarded-allow-ips", "10.0.0.1,nope", "m"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = run(&["--umask", "0o999", "m"]).unwrap_err().to_string();
        assert!(e.contains("--umask"), "{e}");
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert_eq!(parse_umask("0o27"), Ok(0o27));
        assert_eq!(parse_umask("18"), Ok(18));
        assert!(matches!(run(&[]), Err(ConfigError::NoApp)));
        assert!(run(&["bad module"]).is_err());
        assert!(run(&["m:factory("]).is_err());
    }

    #[test]
    fn shell_split_quotes() {
        let v = shell_split(r#"-w 3 --env "A=b c" -e 'X=y z' \--x"#).unwrap();
        let v: Vec<_> = v.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(v, ["-w", "3", "--env", "A=b c", "-e", "X=y z", "--x"]);
        assert!(shell_split("'open").is_err());
    }

    #[test]
    fn print_config_is_valid_toml_with_known_keys() {
        let s = run(&["-w", "2", "m:app"]).unwrap();
        let text = s.to_toml_string();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["workers"].as_integer(), Some(2));
        let mut back = Settings::defaults(&no_env);
        for (k, v) in &table {
            assert!(back.apply_toml(k, v).unwrap(), "{k} round-trips");
        }
        assert_eq!(back.workers, 2);
    }
}
