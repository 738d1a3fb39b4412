//! The settings table: the one definition of every setting (its field and
//! type, TOML key, command-line flags, section, default and help text).
//! The `settings!` macro turns it into the [`Settings`] struct, the
//! [`SETTINGS`] documentation table that `--help`, `--print-config`, the
//! config file and the generated docs read, and the per-key appliers used
//! by `cli.rs` and `file.rs`.

use super::value::{Arity, SettingValue};
use super::{BindAddr, ConfigError};

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
            pub(super) fn defaults($envid: &dyn Fn(&str) -> Option<String>) -> Settings {
                Settings { $($field: $default,)* binds: Vec::new() }
            }

            /// Apply one TOML key; `Ok(false)` if the key is unknown.
            pub(super) fn apply_toml(&mut self, key: &str, v: &toml::Value) -> Result<bool, String> {
                match key {
                    $(stringify!($field) if !settings!(@bool $($cli_only)?) => {
                        self.$field = <$ty as SettingValue>::from_toml(v)?;
                        Ok(true)
                    })*
                    _ => Ok(false),
                }
            }

            /// Apply the values given for one setting at one command-line level.
            pub(super) fn apply_cli(&mut self, name: &str, values: Vec<String>) -> Result<(), ConfigError> {
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

            pub(super) fn is_default(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> bool {
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
    paste_global: Vec<String> = Vec::new();
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
    access_log_format: String = crate::log::access::DEFAULT_FORMAT.to_string();
        section "Logging", flags ["access-logformat"], meta "STRING", default_doc "gunicorn's common log format",
        help "Access log line format, with gunicorn's %(atom)s placeholders.";
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
}

impl Settings {
    /// The app spec; present whenever `load` returned `Run`/`CheckConfig`.
    /// With `--paste` (and no APP_MODULE) it is `paste:FILE[#name]`.
    pub fn app(&self) -> &str {
        self.wsgi_app.as_deref().unwrap_or("")
    }
}
