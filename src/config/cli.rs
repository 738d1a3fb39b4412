//! The command line: the clap command built from the settings table (and
//! so the `--help` text), parsing one level of arguments (argv,
//! `FERROCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS`) into per-setting values,
//! and the shell-like splitting of those variables.

use std::ffi::OsString;

use super::value::Arity;
use super::{ConfigError, SETTINGS};

/// A clap error as the first line of its message, without clap's
/// `error: ` prefix.
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
             ferrocorn upgrade --pidfile FILE (see ferrocorn upgrade --help).\n\
             Control a running master: ferrocorn ctl [--control-socket PATH] COMMAND \
             (see ferrocorn ctl --help).",
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
    // Settings gunicorn has no flag for are TOML keys only.
    for def in SETTINGS.iter().filter(|d| !d.long.is_empty()) {
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
            Arity::One => {
                let arg = arg
                    .action(ArgAction::Append)
                    .value_name(def.value_name)
                    .allow_hyphen_values(true);
                match def.missing {
                    // The next word is its value only if it is not a
                    // flag (`--proxy-protocol --bind ...`), as in argparse.
                    Some(v) => arg
                        .allow_hyphen_values(false)
                        .num_args(0..=1)
                        .default_missing_value(v),
                    None => arg,
                }
            }
            Arity::Many => arg
                .action(ArgAction::Append)
                .value_name(def.value_name)
                .allow_hyphen_values(true),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The `--help` text.
pub fn help_text() -> String {
    build_command().render_help().to_string()
}

/// The values one command-line level (FERROCORN_CMD_ARGS or argv) sets.
pub(super) struct CliLevel {
    pub(super) app: Option<String>,
    pub(super) help: bool,
    pub(super) version: bool,
    pub(super) values: Vec<(&'static str, Vec<String>)>,
}

pub(super) fn parse_level(args: Vec<OsString>) -> Result<CliLevel, ConfigError> {
    let m = build_command()
        .try_get_matches_from(args)
        .map_err(one_line)?;
    let mut values = Vec::new();
    for def in SETTINGS.iter().filter(|d| !d.long.is_empty()) {
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

/// Split `FERROCORN_CMD_ARGS` or `GUNICORN_CMD_ARGS` like a POSIX shell would (quotes and
/// backslashes; no expansion).
pub(super) fn shell_split(s: &str) -> Result<Vec<OsString>, String> {
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
                        None => return Err("unterminated ' quote".to_string()),
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
                            None => return Err("unterminated \" quote".to_string()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_split_quotes() {
        let v = shell_split(r#"-w 3 --env "A=b c" -e 'X=y z' \--x"#).unwrap();
        let v: Vec<_> = v.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(v, ["-w", "3", "--env", "A=b c", "-e", "X=y z", "--x"]);
        assert!(shell_split("'open").is_err());
    }
}
