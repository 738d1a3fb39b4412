//! Settings: one table defines every setting's name (the TOML key, which is
//! gunicorn's setting name), its command-line flags, default, value type and
//! help text. `--help`, `--print-config`, the config file and the man page are
//! all generated from [`SETTINGS`], so they cannot drift apart.
//!
//! Precedence, lowest first: defaults (some read from the environment, as
//! gunicorn does: `PORT`, `WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`,
//! `VIRTUAL_ENV`) < config file < `GUNICORN_CMD_ARGS` < `FERROCORN_CMD_ARGS`
//! < command line. Both variables are split like a shell would split them.
//!
//! This module owns the public API ([`load`], [`Action`], [`ConfigError`],
//! [`seconds`] and the re-exports below) and the order in which the levels
//! are applied. By concern:
//! - `settings.rs`: the settings table, one definition per setting.
//! - `table.rs`: the `settings!` macro that makes the [`Settings`] struct
//!   and [`SETTINGS`] from it, and [`SettingDef`].
//! - `value.rs`: how each value type is parsed and printed.
//! - `cli.rs`: command-line, `GUNICORN_CMD_ARGS` and `FERROCORN_CMD_ARGS`
//!   parsing, `--help`.
//! - `file.rs`: the TOML config file and `--print-config`.
//! - `validate.rs`: checks across the resolved settings; the [`Action`].
//! - `bind.rs`: `bind` addresses.
//! - `net.rs`: addresses and networks of trusted peers ([`IpNet`]).
//! - [`docs`]: the man page, completions and example config.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod bind;
mod cli;
pub mod docs;
mod file;
mod net;
mod settings;
mod table;
mod validate;
mod value;

pub use bind::{parse_bind, BindAddr};
pub use cli::help_text;
pub use net::{split_list, AllowList, IpNet};
pub use settings::{SettingDef, Settings, SETTINGS};
pub use validate::parse_umask;
pub use value::{Arity, Enabled, JsonDict, Mode, SettingValue, StrMap};

use cli::{parse_level, shell_split, CliLevel};
use file::load_file;
use validate::finish;

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
    #[error("{setting} cannot be changed in ferrocorn {version}: {reason}")]
    Unsupported {
        setting: String,
        version: &'static str,
        reason: &'static str,
    },
    /// The Python config file failed (exit code 1, as gunicorn).
    #[error("config file {0}")]
    Python(String),
    /// A problem in `FERROCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS` (named).
    #[error("{var}: {reason}")]
    EnvArgs { var: &'static str, reason: String },
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

/// A setting in seconds as a `Duration`: negative or NaN is 0, and absurdly
/// large values (which `Duration` cannot hold) are capped at ten years.
pub fn seconds(v: f64) -> std::time::Duration {
    const CAP: f64 = 10.0 * 365.0 * 86_400.0;
    if v.is_nan() || v <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(v.min(CAP))
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
    // The environment's argument levels, lowest first: gunicorn's, then
    // ferrocorn's own (which wins when both set the same setting).
    let mut env_levels = Vec::new();
    for var in ["GUNICORN_CMD_ARGS", "FERROCORN_CMD_ARGS"] {
        if let Some(s) = env(var).filter(|s| !s.trim().is_empty()) {
            let in_var = |reason: String| ConfigError::EnvArgs { var, reason };
            let args = shell_split(&s).map_err(in_var)?;
            env_levels.push((var, parse_level(args).map_err(|e| in_var(e.to_string()))?));
        }
    }

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
    let config_path = named(&argv).or_else(|| env_levels.iter().rev().find_map(|(_, l)| named(l)));
    // Where a Python config file imports from: the command line's (or
    // the environment's) --virtualenv and --pythonpath, as gunicorn runs
    // the file inside the venv it was started from.
    let mut hint = settings.clone();
    for level in env_levels
        .iter()
        .map(|(_, l)| l)
        .chain(std::iter::once(&argv))
    {
        for (name, vals) in &level.values {
            if matches!(*name, "virtualenv" | "pythonpath") {
                let _ = hint.apply_cli(name, vals.clone());
            }
        }
    }
    let paths = PyPaths {
        virtualenv: hint.virtualenv.as_deref(),
        pythonpath: hint.pythonpath.as_deref(),
    };
    match &config_path {
        Some(p) if is_python_config(p) => load_python(&mut settings, p, &paths)?,
        Some(p) => load_file(&mut settings, Path::new(p))?,
        None => {
            let toml = Path::new("ferrocorn.toml");
            let py = Path::new(PY_DEFAULT);
            if toml.is_file() {
                if py.is_file() {
                    crate::warning!(
                        "./{PY_DEFAULT} was not read: ./ferrocorn.toml takes precedence (name one with -c)"
                    );
                }
                load_file(&mut settings, toml)?;
                settings.config = Some("ferrocorn.toml".into());
            } else if py.is_file() {
                load_python(&mut settings, PY_DEFAULT, &paths)?;
                settings.config = Some(PY_DEFAULT.into());
            }
        }
    }

    let levels = env_levels
        .iter()
        .map(|(var, level)| (Some(*var), level))
        .chain(std::iter::once((None, &argv)));
    for (var, level) in levels {
        for (name, vals) in &level.values {
            settings
                .apply_cli(name, vals.clone())
                .map_err(|e| match var {
                    Some(var) => ConfigError::EnvArgs {
                        var,
                        reason: e.to_string(),
                    },
                    None => e,
                })?;
        }
        if let Some(app) = &level.app {
            settings.wsgi_app = Some(app.clone());
            // As gunicorn: the positional APP_MODULE names the processes
            // unless proc_name says otherwise.
            settings.default_proc_name = app.clone();
        }
    }
    finish(settings, env)
}

/// The config file gunicorn reads by default.
const PY_DEFAULT: &str = "gunicorn.conf.py";

/// `-c python:module`, or a file that is not TOML: a Python config file,
/// as gunicorn reads any `-c FILE`.
fn is_python_config(spec: &str) -> bool {
    spec.starts_with("python:") || !spec.ends_with(".toml")
}

/// Where the config host imports from.
struct PyPaths<'a> {
    virtualenv: Option<&'a str>,
    pythonpath: Option<&'a str>,
}

/// Run a Python config file in the config host and apply its settings.
fn load_python(settings: &mut Settings, spec: &str, py: &PyPaths<'_>) -> Result<(), ConfigError> {
    if !spec.starts_with("python:") && !Path::new(spec).exists() {
        return Err(ConfigError::File {
            path: spec.into(),
            reason: "no such file".into(),
        });
    }
    let known: Vec<&str> = SETTINGS
        .iter()
        .filter(|d| !d.cli_only)
        .map(|d| d.name)
        .collect();
    // Absolute, so that workers (after --chdir) and HUP find the same file.
    let full = if spec.starts_with("python:") {
        spec.to_string()
    } else {
        std::path::absolute(spec)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| spec.to_string())
    };
    let loaded = crate::hooks::load(&full, &known, py.virtualenv, py.pythonpath)
        .map_err(|e| ConfigError::Python(e.to_string()))?;
    if loaded.objects.iter().any(|n| n == "logger_class") {
        return Err(ConfigError::InvalidValue {
            setting: "logger_class".into(),
            value: "a Python class".into(),
            reason: validate::logger_class_refusal("custom")
                .unwrap_or_default()
                .to_string(),
        });
    }
    if let Some(name) = loaded.objects.first() {
        // A hook this version refuses (the dirty-arbiter ones): say why.
        let def = SETTINGS.iter().find(|d| d.name == name.as_str());
        if let Some((def, reason)) = def.and_then(|d| d.unsupported.map(|r| (d, r))) {
            return Err(ConfigError::Unsupported {
                setting: def.display_name(),
                version: env!("CARGO_PKG_VERSION"),
                reason,
            });
        }
        return Err(ConfigError::File {
            path: spec.into(),
            reason: format!("'{name}' is set to a Python object; ferrocorn takes only str, int, float, bool, list and dict values"),
        });
    }
    for (key, value) in &loaded.settings {
        file::apply_python(settings, spec, key, value)?;
    }
    crate::hooks::apply_env(&loaded.env);
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The settings `args` resolve to (no environment).
    pub(crate) fn run(args: &[&str]) -> Result<Settings, ConfigError> {
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
        let e = run(&["-k", "gevent2", "m"]).unwrap_err().to_string();
        assert!(e.contains("gevent2"), "{e}");
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
}
