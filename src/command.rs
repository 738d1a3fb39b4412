//! The `ferrocorn` command line, shared by the standalone binary
//! (src/main.rs) and the wheel's console script (src/python.rs): serving,
//! `--check-config`, `ctl` and `upgrade`, with the exit codes gunicorn's
//! users expect.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::config::{self, Action, Settings};
use crate::log::access as accesslog;
use crate::log::{self, Level};
use crate::master::{upgrade_cmd, Arbiter};
use crate::{error, hooks, wsgi};

/// Exit code for usage and configuration errors.
const USAGE: u8 = 2;

fn fail(msg: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("ferrocorn: error: {msg}");
    code
}

/// The current directory as gunicorn names it: `$PWD` when that is this
/// directory (so a symlinked path stays as the user typed it), else the
/// resolved path.
fn current_dir_named() -> std::path::PathBuf {
    let real = std::env::current_dir().unwrap_or_else(|_| "/".into());
    match std::env::var_os("PWD") {
        Some(pwd) if same_dir(pwd.as_ref(), &real) => pwd.into(),
        _ => real,
    }
}

/// Both paths name the same existing directory.
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `dir` joined to `base` with `.` and `..` folded away without looking
/// at the file system (what Python's `os.path.normpath` does).
fn join_normalized(base: &std::path::Path, dir: &str) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in base.join(dir).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Process-wide preparation shared by serving and --check-config: the
/// working directory, the log files, and the app's environment variables.
/// Returns what the interpreters of this start share.
fn prepare(s: &mut Settings) -> Result<wsgi::PyBase, String> {
    // Where ferrocorn was launched: second on sys.path, like gunicorn.
    let launch_dir = current_dir_named();
    // A relative --virtualenv means relative to where ferrocorn started,
    // not to --chdir.
    if let Some(venv) = &s.virtualenv {
        if let Ok(abs) = std::path::absolute(venv) {
            s.virtualenv = Some(abs.display().to_string());
        }
    }
    let chdir = match &s.chdir {
        Some(dir) => {
            std::env::set_current_dir(dir).map_err(|e| format!("--chdir {dir}: {e}"))?;
            // As gunicorn names it, when that still is where we are.
            let named = join_normalized(&launch_dir, dir);
            let real = std::env::current_dir().unwrap_or_else(|_| named.clone());
            if same_dir(&named, &real) {
                named
            } else {
                real
            }
        }
        None => launch_dir.clone(),
    };
    // Like gunicorn, relative log paths are relative to --chdir; both are
    // opened (the access log only to check it) before any worker starts,
    // so a path that cannot be written stops ferrocorn here, named.
    s.errorlog = log::resolve_path(&s.errorlog);
    let level = Level::parse(&s.loglevel).unwrap_or(Level::Info);
    log::init(&s.errorlog, level)
        .map_err(|e| format!("cannot open the error log {}: {e}", s.errorlog))?;
    if s.syslog {
        log::init_syslog(
            &s.syslog_addr,
            s.syslog_prefix.as_deref(),
            &s.syslog_facility,
        )?;
    }
    if let Some(path) = &mut s.accesslog {
        *path = log::resolve_path(path);
        accesslog::check(path).map_err(|e| e.to_string())?;
    }
    for path in [&mut s.logconfig, &mut s.logconfig_json]
        .into_iter()
        .flatten()
    {
        *path = log::resolve_path(path);
        if !std::path::Path::new(path).is_file() {
            return Err(format!("log config '{path}' not found"));
        }
    }
    // A JSON line takes only headers and environ keys from the format.
    if !s.access_log_json
        && (s.accesslog.is_some()
            || (s.syslog && !s.disable_redirect_access_to_syslog)
            || s.logconfig.is_some()
            || s.logconfig_json.is_some())
    {
        warn_unknown_atoms(&s.access_log_format);
    }
    if (s.logconfig.is_some() || s.logconfig_json.is_some()) && s.accesslog.is_some() {
        crate::warning!(
            "--access-logfile is not written with a logging config: access lines go to the gunicorn.access logger"
        );
    }
    for kv in &s.raw_env {
        if let Some((k, v)) = kv.split_once('=') {
            // The master is still single-threaded here.
            std::env::set_var(k, v);
        }
    }
    Ok(wsgi::PyBase {
        chdir: chdir.display().to_string(),
        launch_dir: launch_dir.display().to_string(),
        // One seed per master start (kept across HUP).
        hash_seed: wsgi::new_hash_seed(),
    })
}

/// How this process was started, for a USR2 successor to be started the
/// same way.
pub struct Entry {
    /// The program to exec: the binary, or the Python interpreter running
    /// the wheel's command.
    pub exe: std::path::PathBuf,
    /// What comes before the ferrocorn arguments (the interpreter's options
    /// and `-m ferrocorn` or the console script), empty for the binary.
    pub prefix: Vec<OsString>,
}

/// The standalone binary: `ferrocorn ARGS...` as the process was started.
pub fn main() -> ExitCode {
    let argv0 = std::env::args_os().next();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let start_dir = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let exe = crate::master::started_from(argv0.as_deref(), &start_dir);
    ExitCode::from(run(
        args,
        Entry {
            exe,
            prefix: Vec::new(),
        },
        false,
    ))
}

/// Run the command with `args` (without the program name); returns the
/// exit code. `entry` is how
/// a USR2 successor is started; `embedded` is true in the wheel's command,
/// whose interpreter already is the app's environment, so `$VIRTUAL_ENV`
/// (set by an activated, possibly different venv) is no default for
/// `--virtualenv` there.
pub fn run(args: Vec<OsString>, entry: Entry, embedded: bool) -> u8 {
    // Never let a Rust panic message or backtrace reach the user as such.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown error".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        error!("internal error{at}: {msg}");
    }));

    if args.first().is_some_and(|a| a == "ctl") {
        return match crate::control::client::run(&args[1..]) {
            Ok(Some(out)) => {
                if !out.is_empty() {
                    println!("{out}");
                }
                0
            }
            Ok(None) => {
                print!("{}", crate::control::client::HELP);
                0
            }
            Err(e @ crate::control::client::CtlError::Usage(_)) => fail(e, USAGE),
            Err(e) => fail(e, 1),
        };
    }
    if args.first().is_some_and(|a| a == "upgrade") {
        return match upgrade_cmd::run(&args[1..]) {
            Ok(Some(done)) => {
                println!("ferrocorn: {done}");
                0
            }
            Ok(None) => {
                print!("{}", upgrade_cmd::HELP);
                0
            }
            Err(e @ upgrade_cmd::UpgradeError::Usage(_)) => fail(e, USAGE),
            Err(e) => fail(e, 1),
        };
    }
    let env = |k: &str| {
        if embedded && k == "VIRTUAL_ENV" {
            return None;
        }
        std::env::var(k).ok()
    };
    let action = match config::load(args.clone(), &env) {
        Ok(a) => a,
        // An exception in a Python config file exits 1, as in gunicorn.
        Err(e @ config::ConfigError::Python(_)) => return fail(e, 1),
        Err(e) => return fail(e, USAGE),
    };
    match action {
        Action::Help(text) => {
            print!("{text}");
            0
        }
        Action::Version => {
            println!("ferrocorn (version {})", env!("CARGO_PKG_VERSION"));
            0
        }
        Action::PrintConfig(s) => {
            print!("{}", s.print_config_string());
            0
        }
        Action::CheckConfig(mut s) => {
            let base = match prepare(&mut s) {
                Ok(base) => base,
                Err(e) => return fail(e, 1),
            };
            let logconfig = wsgi::LogConfig::from_settings(
                s.logconfig.as_deref(),
                s.logconfig_json.as_deref(),
                (!s.logconfig_dict.is_empty())
                    .then(|| serde_json::Value::Object(s.logconfig_dict.0.clone()).to_string()),
            );
            let setup = wsgi::PySetup {
                base: &base,
                pythonpath: s.pythonpath.as_deref().unwrap_or(""),
                virtualenv: s.virtualenv.as_deref(),
                app: s.app(),
                paste_global: &s.raw_paste_global_conf,
            };
            // The logging config is checked too, as the workers set it up.
            let logging = match &logconfig {
                Some(conf) => {
                    wsgi::init_python(&setup).and_then(|()| wsgi::configure_logging(conf))
                }
                None => Ok(()),
            };
            match logging.and_then(|()| wsgi::load_app(&setup)) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("{}", e.to_string().trim_end());
                    1
                }
            }
        }
        Action::Run(mut s) => {
            if s.daemon && std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty()) {
                return fail(
                    "--daemon cannot be used under systemd (NOTIFY_SOCKET is set): systemd \
                     already runs ferrocorn in the background and tracks its pid; remove \
                     --daemon / daemon = true",
                    USAGE,
                );
            }
            let start_dir = std::env::current_dir().unwrap_or_else(|_| "/".into());
            let base = match prepare(&mut s) {
                Ok(base) => base,
                Err(e) => return fail(e, 1),
            };
            // The config host learns the final settings (`server.cfg`),
            // then `on_starting` runs, before the sockets are bound.
            hooks::setup(&s.to_toml_string(), &s.errorlog, &s.loglevel, &s.raw_env);
            let server = hooks::ServerState {
                pid: std::process::id(),
                num_workers: s.workers,
                proc_name: s.proc_name.as_deref().unwrap_or(s.app()),
            };
            let bound = crate::master::hook_bound(&s);
            // gunicorn reports the first worker count too, before on_starting.
            let first = [s.workers.into(), serde_json::Value::Null];
            hooks::call("nworkers_changed", &server, None, &first, bound);
            if !hooks::call("on_starting", &server, None, &[], bound) {
                // As gunicorn, which stops when a start-up hook raises.
                hooks::shutdown();
                return fail("the on_starting hook raised (traceback above)", 1);
            }
            let arbiter = match Arbiter::new(*s, args, start_dir, entry.exe, base) {
                Ok(a) => a,
                Err(e @ crate::master::MasterError::Boot(_)) => {
                    // As a worker that cannot boot: one line, exit 3.
                    error!("{e}");
                    return wsgi::WORKER_BOOT_ERROR as u8;
                }
                Err(e) => {
                    error!("{e}");
                    return fail(e, 1);
                }
            };
            arbiter.with_exec_prefix(entry.prefix).run().clamp(0, 255) as u8
        }
    }
}

/// One warning at start naming the atoms of `access_log_format` that are
/// not gunicorn's: they are written as `-`, as gunicorn writes them.
fn warn_unknown_atoms(format: &str) {
    let Ok(f) = accesslog::Format::parse(format) else {
        return;
    };
    let unknown: Vec<String> = f
        .unknown_atoms()
        .iter()
        .map(|a| format!("%({a})"))
        .collect();
    if !unknown.is_empty() {
        crate::warning!(
            "access_log_format: unknown atom{} {}, written as '-'",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        );
    }
}
