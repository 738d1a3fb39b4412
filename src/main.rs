//! The `ferrocorn` command.

use std::process::ExitCode;

use ferrocorn::config::{self, Action, Settings};
use ferrocorn::log::{self, Level};
use ferrocorn::master::Arbiter;
use ferrocorn::{error, wsgi};

/// Exit code for usage and configuration errors.
const USAGE: u8 = 2;

fn fail(msg: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("ferrocorn: error: {msg}");
    ExitCode::from(code)
}

/// Process-wide preparation shared by serving and --check-config: the
/// error log, the working directory, and the app's environment variables.
fn prepare(s: &mut Settings) -> Result<(), String> {
    let level = Level::parse(&s.loglevel).unwrap_or(Level::Info);
    log::init(&s.errorlog, level)
        .map_err(|e| format!("cannot open error log {}: {e}", s.errorlog))?;
    if s.syslog {
        log::init_syslog(
            &s.syslog_addr,
            s.syslog_prefix.as_deref(),
            &s.syslog_facility,
        )?;
    }
    // A relative --virtualenv means relative to where ferrocorn started,
    // not to --chdir.
    if let Some(venv) = &s.virtualenv {
        if let Ok(abs) = std::path::absolute(venv) {
            s.virtualenv = Some(abs.display().to_string());
        }
    }
    if let Some(dir) = &s.chdir {
        std::env::set_current_dir(dir).map_err(|e| format!("--chdir {dir}: {e}"))?;
    }
    for kv in &s.raw_env {
        if let Some((k, v)) = kv.split_once('=') {
            // The master is still single-threaded here.
            std::env::set_var(k, v);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
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

    let argv0 = std::env::args_os().next();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "upgrade") {
        return match ferrocorn::upgrade::run(&args[1..]) {
            Ok(Some(done)) => {
                println!("ferrocorn: {done}");
                ExitCode::SUCCESS
            }
            Ok(None) => {
                print!("{}", ferrocorn::upgrade::HELP);
                ExitCode::SUCCESS
            }
            Err(e @ ferrocorn::upgrade::UpgradeError::Usage(_)) => fail(e, USAGE),
            Err(e) => fail(e, 1),
        };
    }
    let env = |k: &str| std::env::var(k).ok();
    let action = match config::load(args.clone(), &env) {
        Ok(a) => a,
        Err(e) => return fail(e, USAGE),
    };
    match action {
        Action::Help(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Action::Version => {
            println!("ferrocorn (version {})", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Action::PrintConfig(s) => {
            print!("{}", s.to_toml_string());
            ExitCode::SUCCESS
        }
        Action::CheckConfig(mut s) => {
            if let Err(e) = prepare(&mut s) {
                return fail(e, 1);
            }
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let setup = wsgi::PySetup {
                cwd,
                pythonpath: s.pythonpath.as_deref().unwrap_or(""),
                virtualenv: s.virtualenv.as_deref(),
                app: s.app(),
            };
            match wsgi::load_app(&setup) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}", e.to_string().trim_end());
                    ExitCode::from(1)
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
            let exe = ferrocorn::master::started_from(argv0.as_deref(), &start_dir);
            if let Err(e) = prepare(&mut s) {
                return fail(e, 1);
            }
            let arbiter = match Arbiter::new(*s, args, start_dir, exe) {
                Ok(a) => a,
                Err(e) => {
                    error!("{e}");
                    return fail(e, 1);
                }
            };
            ExitCode::from(arbiter.run().clamp(0, 255) as u8)
        }
    }
}
