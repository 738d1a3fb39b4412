//! Generated documentation: the `ferrocorn(1)` man page and the bash and zsh
//! completions. Everything about a setting (flags, value name, default,
//! TOML key, help) comes from [`SETTINGS`], the same table that drives
//! `--help`, `--print-config` and the config file, so the three cannot drift.
//!
//! `cargo run --example ferrocorn_docs -- OUTDIR` writes `ferrocorn.1`,
//! `ferrocorn.bash` and `_ferrocorn` into OUTDIR (the Debian build does this).

use std::fmt::Write as _;

use crate::config::{Arity, SettingDef, SETTINGS};

/// Options handled by the command line itself, not by a setting.
const BUILTIN_FLAGS: &[(Option<char>, &str, &str)] = &[
    (Some('h'), "help", "Show the help and exit."),
    (Some('v'), "version", "Show the version and exit."),
];

/// The `upgrade` subcommand's options: (flag, value name, help).
const UPGRADE_FLAGS: &[(&str, &str, &str)] = &[
    (
        "pidfile",
        "FILE",
        "PID file of the running master (the file given to --pid; -p and --pid are accepted too).",
    ),
    (
        "timeout",
        "SECS",
        "How long to wait for each step, such as the new master serving, before giving up (default 90).",
    ),
];

/// Sections in table order, each with its settings.
fn sections() -> Vec<(&'static str, Vec<&'static SettingDef>)> {
    let mut out: Vec<(&'static str, Vec<&'static SettingDef>)> = Vec::new();
    for def in SETTINGS {
        match out.iter_mut().find(|(s, _)| *s == def.section) {
            Some((_, defs)) => defs.push(def),
            None => out.push((def.section, vec![def])),
        }
    }
    out
}

/// Escape text for a roff paragraph: backslashes, dashes that must stay
/// ASCII hyphen-minus (flags, paths), and control characters at line start.
fn roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

fn flag_synopsis(def: &SettingDef) -> String {
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = def.short {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    for l in def.long {
        names.push(format!("\\fB\\-\\-{}\\fR", roff(l)));
    }
    if names.is_empty() {
        // No flag in gunicorn either: a config-file key only.
        return format!("\\fB{}\\fR (config file only)", roff(def.name));
    }
    let mut line = names.join(", ");
    if def.arity != Arity::Flag {
        let _ = write!(line, " \\fI{}\\fR", roff(def.value_name));
    }
    line
}

/// The `ferrocorn(1)` man page in roff (man macros). `date` is the page's
/// date as YYYY-MM-DD.
pub fn man_page(version: &str, date: &str) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        ".\\\" Generated from ferrocorn's settings table (src/config/docs.rs); do not edit."
    );
    let _ = writeln!(
        m,
        ".TH FERROCORN 1 \"{date}\" \"ferrocorn {}\" \"User Commands\"",
        roff(version)
    );
    m.push_str(
        r#".SH NAME
ferrocorn \- pre\-fork HTTP server for Python WSGI applications, compatible with gunicorn
.SH SYNOPSIS
.B ferrocorn
[\fIOPTIONS\fR] [\fIAPP_MODULE\fR]
.br
.B ferrocorn upgrade
\fB\-\-pidfile\fR \fIFILE\fR [\fB\-\-timeout\fR \fISECS\fR]
.br
.B ferrocorn ctl
[\fB\-\-control\-socket\fR \fIPATH\fR] [\fB\-\-json\fR] \fICOMMAND\fR
.SH DESCRIPTION
.B ferrocorn
serves a Python WSGI application (PEP 3333) over HTTP/1.1. A master process,
which runs no Python, binds the listening sockets, forks the worker processes
and supervises them; each worker embeds CPython, imports the application and
serves requests from an event loop. Command\-line flags, configuration setting
names, signals and the access\-log format are those of gunicorn.
.PP
.I APP_MODULE
is \fIMODULE\fR[:\fIATTR\fR] (\fIATTR\fR defaults to \fBapplication\fR), or
\fIMODULE\fR:\fIFACTORY\fR(\fIARGS\fR) to call a factory with literal arguments,
for example \fBmyproject.wsgi\fR or \fBmyapp:create_app("production")\fR.
.SH OPTIONS
Every option below except those marked \fIcommand line only\fR can also be
set in the configuration file under its \fITOML key\fR.
Options that take a value accept both \fB\-\-name value\fR and \fB\-\-name=value\fR.
.TP
\fB\-h\fR, \fB\-\-help\fR
Show the help and exit.
.TP
\fB\-v\fR, \fB\-\-version\fR
Show the version and exit.
"#,
    );
    for (section, defs) in sections() {
        let _ = writeln!(m, ".SS {}", roff(section));
        for def in defs {
            let _ = writeln!(m, ".TP\n{}", flag_synopsis(def));
            let _ = writeln!(m, "{}", roff(def.help));
            let mut facts = Vec::new();
            if def.cli_only {
                facts.push("Command line only.".to_string());
            } else {
                facts.push(format!("TOML key: \\fB{}\\fR.", roff(def.name)));
            }
            if def.arity == Arity::Many && !def.help.contains("Repeatable") {
                facts.push("Repeatable.".to_string());
            }
            facts.push(format!("Default: {}.", roff(def.default_doc)));
            let _ = writeln!(m, ".br\n{}", facts.join(" "));
            if let Some(why) = def.unsupported {
                let _ = writeln!(
                    m,
                    ".br\nAccepted only at its default in this version: {}.",
                    roff(why)
                );
            }
        }
    }
    m.push_str(
        r#".SH COMMANDS
.TP
\fBupgrade\fR \fB\-\-pidfile\fR \fIFILE\fR [\fB\-\-timeout\fR \fISECS\fR]
Replace a running master with the installed binary without dropping a
connection: send USR2 to the master whose PID is in \fIFILE\fR, wait until the
new master's workers serve (it writes \fIFILE\fR.2), then stop the old master
gracefully. Under systemd the old master hands the service over to the new one
before it exits. Exits 0 once \fIFILE\fR holds the new master's PID; otherwise
prints one line and exits non\-zero, and the old master keeps serving.
"#,
    );
    for (flag, value, help) in UPGRADE_FLAGS {
        let _ = writeln!(
            m,
            ".TP\n\\fB\\-\\-{}\\fR \\fI{}\\fR\n{}",
            roff(flag),
            roff(value),
            roff(help)
        );
    }
    m.push_str(
        r#".TP
\fBctl\fR [\fB\-\-control\-socket\fR \fIPATH\fR | \fB\-\-instance\fR \fINAME\fR] [\fB\-\-json\fR] \fICOMMAND\fR
Send one command to a running master over its control socket (the wire format
of gunicorn's \fBgunicornc\fR, which works too) and print the answer:
\fBshow all\fR|\fBworkers\fR|\fBstats\fR|\fBconfig\fR|\fBlisteners\fR,
\fBworker add\fR [\fIN\fR], \fBworker remove\fR [\fIN\fR], \fBworker kill\fR \fIPID\fR,
\fBreload\fR, \fBreopen\fR, \fBshutdown\fR [\fBgraceful\fR|\fBquick\fR], \fBhelp\fR,
and \fBstacks\fR [\fIPID\fR]: the Python stack of every thread and asyncio task in
each worker, taken without stopping it. The default socket is
\fI$XDG_RUNTIME_DIR/gunicorn.ctl\fR, else \fI$HOME/.gunicorn/gunicorn.ctl\fR; the
packaged units use \fI/run/ferrocorn/NAME/control.sock\fR, which
\fB\-\-instance\fR \fINAME\fR names.
"#,
    );
    m.push_str(
        r#".SH CONFIGURATION FILE
A TOML file given with \fB\-c\fR (or \fI./ferrocorn.toml\fR when it exists) whose keys
are the setting names listed above, for example:
.PP
.RS
.nf
wsgi_app = "myapp:app"
bind = ["127.0.0.1:8000", "unix:/run/myapp.sock"]
workers = 4
chdir = "/srv/myapp"
accesslog = "\-"
.fi
.RE
.PP
Settings are applied, lowest precedence first, from the defaults, the
configuration file, the \fBGUNICORN_CMD_ARGS\fR and then the
\fBFERROCORN_CMD_ARGS\fR environment variables, and the command line. An unknown key is an error.
\fBferrocorn \-\-print\-config\fR prints the resolved settings in this format.
.SH SIGNALS
The master handles:
.TP
.B HUP
Re\-read the configuration, start new workers and retire the old ones once the
new ones serve.
.TP
.B TERM
Graceful stop: workers finish their in\-flight requests within the graceful
timeout.
.TP
.BR INT ", " QUIT
Quick stop.
.TP
.BR TTIN ", " TTOU
Add or remove one worker.
.TP
.B USR1
Reopen the log files.
.TP
.B USR2
Start a new master from the binary on disk, sharing the listening sockets
(see \fBupgrade\fR).
.TP
.B WINCH
When daemonized, stop the workers gracefully and keep the master.
.SH ENVIRONMENT
.TP
.B GUNICORN_CMD_ARGS
Extra command\-line arguments, split as a shell would, applied over the
configuration file and before the real ones (as in gunicorn).
.TP
.B FERROCORN_CMD_ARGS
The same, applied after \fBGUNICORN_CMD_ARGS\fR, so it wins when both set a
setting.
.TP
.BR PORT ", " WEB_CONCURRENCY ", " FORWARDED_ALLOW_IPS ", " VIRTUAL_ENV
Defaults for \fB\-\-bind\fR, \fB\-\-workers\fR, \fB\-\-forwarded\-allow\-ips\fR
and \fB\-\-virtualenv\fR.
.TP
.BR LISTEN_FDS ", " LISTEN_PID
Listening sockets passed by systemd socket activation are used instead of
binding new ones.
.TP
.B NOTIFY_SOCKET
When set by systemd, the master reports readiness (once its workers serve),
reloads, stops and its status.
.SH FILES
.TP
.I /etc/ferrocorn/NAME.toml
Configuration of the instance \fBferrocorn@NAME.service\fR.
.TP
.I /run/ferrocorn/NAME/master.pid
PID file of that instance's master.
.TP
.I /var/log/ferrocorn/
Directory for log files, writable by the \fBferrocorn\fR group.
.SH SYSTEMD
The Debian package ships \fBferrocorn.service\fR (configuration
\fI/etc/ferrocorn/ferrocorn.toml\fR), the template \fBferrocorn@.service\fR
(one instance per \fI/etc/ferrocorn/NAME.toml\fR) and matching \fB.socket\fR
units for socket activation. \fBsystemctl reload\fR sends HUP. Installing a
newer package upgrades every running instance in place with
\fBferrocorn upgrade\fR instead of restarting it.
.SH EXIT STATUS
0 on a clean stop; 1 on a runtime error; 2 on a usage or configuration error;
3 when a worker fails to boot; 4 when the application cannot be loaded.
.SH SEE ALSO
.BR systemctl (1),
.BR systemd.service (5),
.BR systemd.socket (5)
"#,
    );
    m
}

/// The default value of every setting as TOML, from the same code path as
/// `--print-config` (with an empty environment and an empty config file).
fn default_values() -> Vec<(&'static str, Option<String>)> {
    // With no environment, so the docs show the built-in defaults.
    super::Settings::defaults(&|_| None).rendered()
}

/// Wrap `text` at about 76 columns, each line starting with `prefix`.
fn wrap(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(prefix);
    for word in text.split_whitespace() {
        if line.len() > prefix.len() && line.len() + 1 + word.len() > 76 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(prefix);
        }
        if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The commented example instance configuration installed as
/// /etc/ferrocorn/example.toml: the few keys every app sets, then every
/// other setting commented out at its default, with its help text.
pub fn example_config() -> String {
    let mut s = String::from(
        r#"# Example ferrocorn instance configuration.
#
# Copy it to /etc/ferrocorn/NAME.toml, edit it, then start the app with
#     systemctl enable --now ferrocorn@NAME
# Keys are gunicorn's setting names (see ferrocorn(1)); an unknown key is an
# error. Check a file with
#     ferrocorn --config /etc/ferrocorn/NAME.toml --check-config
# (run it as the user the app runs as). Under systemd the master runs as the
# ferrocorn user; the unit passes --config and --pid, and logs go to the
# journal unless errorlog/accesslog name a file (e.g. in /var/log/ferrocorn).

# The WSGI app: MODULE[:ATTR], imported from chdir (or pythonpath).
#wsgi_app = "myapp:app"
#chdir = "/srv/myapp"
#virtualenv = "/srv/myapp/venv"

# Where to listen. With socket activation (ferrocorn@NAME.socket) the
# sockets systemd passes are used instead.
#bind = ["127.0.0.1:8000"]

#workers = 2
"#,
    );
    let defaults = default_values();
    let shown = ["wsgi_app", "chdir", "virtualenv", "bind", "workers"];
    for (section, defs) in sections() {
        let defs: Vec<_> = defs
            .into_iter()
            .filter(|d| !d.cli_only && !shown.contains(&d.name) && d.unsupported.is_none())
            .collect();
        if defs.is_empty() {
            continue;
        }
        let _ = write!(s, "\n# --- {section} ---\n");
        for def in defs {
            s.push('\n');
            s.push_str(&wrap(def.help, "#"));
            let value = defaults
                .iter()
                .find(|(n, _)| *n == def.name)
                .and_then(|(_, v)| v.clone());
            // The control socket's built-in default depends on the user's
            // environment; the packaged units pass this path instead.
            let value = match def.name {
                "control_socket" => Some("\"/run/ferrocorn/NAME/control.sock\"".to_string()),
                _ => value,
            };
            match value {
                Some(v) => {
                    let _ = writeln!(s, "#{} = {v}", def.name);
                }
                None => {
                    let _ = writeln!(s, "# (default: {})", def.default_doc);
                    let _ = writeln!(s, "#{} = \"\"", def.name);
                }
            }
        }
    }
    s
}

/// Long flags taking a value, by the kind of value for completion.
fn value_kind(def: &SettingDef) -> &'static str {
    match def.value_name {
        "FILE" => "file",
        "DIR" => "dir",
        "USER" => "user",
        "GROUP" => "group",
        "LEVEL" => "level",
        _ if def.name == "worker_class" => "class",
        _ => "any",
    }
}

/// The bash completion script (for /usr/share/bash-completion/completions/).
pub fn bash_completion() -> String {
    let mut all = Vec::new();
    let mut by_kind: Vec<(&str, Vec<String>)> = Vec::new();
    let mut push_kind =
        |kind: &'static str, flag: String| match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(flag),
            None => by_kind.push((kind, vec![flag])),
        };
    for (short, long, _) in BUILTIN_FLAGS {
        all.push(format!("--{long}"));
        if let Some(s) = short {
            all.push(format!("-{s}"));
        }
    }
    for def in SETTINGS {
        let mut names: Vec<String> = def.long.iter().map(|l| format!("--{l}")).collect();
        if let Some(s) = def.short {
            names.push(format!("-{s}"));
        }
        if def.arity != Arity::Flag {
            for n in &names {
                push_kind(value_kind(def), n.clone());
            }
        }
        all.extend(names);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# bash completion for ferrocorn -*- shell-script -*-\n\
         # Generated from ferrocorn's settings table (src/config/docs.rs); do not edit.\n"
    );
    s.push_str(
        "_ferrocorn()\n{\n    local cur prev words cword\n    _init_completion -s || return\n\n",
    );
    s.push_str(
        "    if [[ ${words[1]-} == ctl ]]; then\n        case $prev in\n            --control-socket|-s)\n                _filedir\n                return\n                ;;\n        esac\n        COMPREPLY=($(compgen -W '--control-socket --instance --json show worker reload reopen shutdown stacks help' -- \"$cur\"))\n        return\n    fi\n",
    );
    s.push_str(
        "    if [[ ${words[1]-} == upgrade ]]; then\n        case $prev in\n            --pidfile)\n                _filedir pid\n                return\n                ;;\n            --timeout)\n                return\n                ;;\n        esac\n",
    );
    let upgrade: Vec<String> = UPGRADE_FLAGS
        .iter()
        .map(|(f, _, _)| format!("--{f}"))
        .collect();
    let _ = writeln!(
        s,
        "        COMPREPLY=($(compgen -W '{}' -- \"$cur\"))\n        return\n    fi\n",
        upgrade.join(" ")
    );
    s.push_str("    case $prev in\n");
    for (kind, flags) in &by_kind {
        let action = match *kind {
            "file" => "_filedir",
            "dir" => "_filedir -d",
            "user" => "COMPREPLY=($(compgen -u -- \"$cur\"))",
            "group" => "COMPREPLY=($(compgen -g -- \"$cur\"))",
            "level" => "COMPREPLY=($(compgen -W 'debug info warning error critical' -- \"$cur\"))",
            "class" => "COMPREPLY=($(compgen -W 'sync' -- \"$cur\"))",
            _ => "",
        };
        let _ = writeln!(s, "        {})", flags.join(" | "));
        if !action.is_empty() {
            let _ = writeln!(s, "            {action}");
        }
        s.push_str("            return\n            ;;\n");
    }
    s.push_str("    esac\n\n");
    s.push_str("    $split && return\n\n");
    let _ = writeln!(
        s,
        "    if [[ $cur == -* ]]; then\n        COMPREPLY=($(compgen -W '{}' -- \"$cur\"))\n        [[ ${{COMPREPLY-}} == *= ]] && compopt -o nospace\n        return\n    fi",
        all.join(" ")
    );
    s.push_str(
        "    if ((cword == 1)); then\n        COMPREPLY=($(compgen -W 'upgrade ctl' -- \"$cur\"))\n    fi\n} &&\n    complete -F _ferrocorn ferrocorn\n",
    );
    s
}

/// Text safe inside a single-quoted zsh `_arguments` description.
fn zsh_desc(text: &str) -> String {
    // The first sentence is enough for a completion menu.
    let first = match text.find(". ") {
        Some(i) => &text[..i],
        None => text.trim_end_matches('.'),
    };
    let mut out = String::new();
    for c in first.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '[' | ']' | ':' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The zsh completion function (installed as `_ferrocorn` in a directory of
/// `$fpath`, e.g. /usr/share/zsh/vendor-completions/).
pub fn zsh_completion() -> String {
    let mut s = String::new();
    s.push_str("#compdef ferrocorn\n# Generated from ferrocorn's settings table (src/config/docs.rs); do not edit.\n\n");
    s.push_str(
        "_ferrocorn() {\n    if [[ ${words[2]-} == upgrade ]]; then\n        _arguments \\\n",
    );
    for (flag, value, help) in UPGRADE_FLAGS {
        let action = if *flag == "pidfile" { "_files" } else { " " };
        let _ = writeln!(
            s,
            "            '--{flag}=[{}]:{}:{action}' \\",
            zsh_desc(help),
            value.to_lowercase()
        );
    }
    s.push_str(
        "            '1:command:(upgrade)'\n        return\n    fi\n    _arguments -s -S \\\n",
    );
    for (short, long, help) in BUILTIN_FLAGS {
        let short = short.expect("built-in flags have a short form");
        let _ = writeln!(
            s,
            "        '(- *)'{{-{short},--{long}}}'[{}]' \\",
            zsh_desc(help)
        );
    }
    for def in SETTINGS.iter().filter(|d| !d.long.is_empty()) {
        let mut names: Vec<String> = Vec::new();
        if let Some(c) = def.short {
            names.push(if def.arity == Arity::Flag {
                format!("-{c}")
            } else {
                format!("-{c}+")
            });
        }
        for l in def.long {
            names.push(if def.arity == Arity::Flag {
                format!("--{l}")
            } else {
                format!("--{l}=")
            });
        }
        let plain: Vec<String> = names
            .iter()
            .map(|n| n.trim_end_matches(['=', '+']).to_string())
            .collect();
        let prefix = if def.arity == Arity::Many {
            "'*'".to_string()
        } else {
            format!("'({})'", plain.join(" "))
        };
        let names = if names.len() == 1 {
            names[0].clone()
        } else {
            format!("{{{}}}", names.join(","))
        };
        let mut spec = format!("{prefix}{names}'[{}]", zsh_desc(def.help));
        if def.arity != Arity::Flag {
            let action = match value_kind(def) {
                "file" => "_files",
                "dir" => "_files -/",
                "user" => "_users",
                "group" => "_groups",
                "level" => "(debug info warning error critical)",
                "class" => "(sync)",
                _ => " ",
            };
            let _ = write!(
                spec,
                ":{}:{action}",
                zsh_desc(&def.value_name.to_lowercase())
            );
        }
        spec.push('\'');
        let _ = writeln!(s, "        {spec} \\");
    }
    s.push_str(
        "        '1:WSGI app (MODULE\\:ATTR) or command:(upgrade ctl)'\n}\n\n_ferrocorn \"$@\"\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_flag_is_documented_and_completed() {
        let man = man_page("9.9.9", "2026-01-01");
        let bash = bash_completion();
        let zsh = zsh_completion();
        let bash_words: Vec<&str> = bash
            .split(|c: char| c.is_whitespace() || matches!(c, '\'' | '|' | ')'))
            .collect();
        for def in SETTINGS {
            for long in def.long {
                let roffed = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                assert!(man.contains(&roffed), "man page lacks --{long}");
                let flag = format!("--{long}");
                assert!(
                    bash_words.contains(&flag.as_str()),
                    "bash completion lacks {flag}"
                );
                assert!(zsh.contains(&flag), "zsh completion lacks {flag}");
            }
            if let Some(c) = def.short {
                assert!(
                    man.contains(&format!("\\fB\\-{c}\\fR")),
                    "man page lacks -{c}"
                );
                assert!(zsh.contains(&format!("-{c}")), "zsh completion lacks -{c}");
            }
            if !def.cli_only {
                assert!(
                    man.contains(&format!(
                        "TOML key: \\fB{}\\fR",
                        def.name.replace('-', "\\-")
                    )),
                    "man page lacks the TOML key {}",
                    def.name
                );
            }
        }
        assert!(man.contains(".TH FERROCORN 1 \"2026-01-01\" \"ferrocorn 9.9.9\""));
    }

    #[test]
    fn man_page_lines_are_valid_roff() {
        for line in man_page("1.0.0", "2026-01-01").lines() {
            // A line starting with ' or a stray . that is no macro would be
            // swallowed by troff.
            assert!(!line.starts_with('\''), "{line}");
            if let Some(rest) = line.strip_prefix('.') {
                let mac: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                assert!(
                    [
                        "\\\"", "TH", "SH", "SS", "TP", "PP", "B", "BR", "I", "br", "RS", "RE",
                        "nf", "fi"
                    ]
                    .contains(&mac.as_str()),
                    "unexpected macro in {line}"
                );
            }
        }
    }

    #[test]
    fn example_config_parses_once_uncommented() {
        let text = example_config();
        let mut keys = Vec::new();
        let mut uncommented = String::new();
        for line in text.lines() {
            if let Some(kv) = line.strip_prefix('#') {
                if let Some((k, _)) = kv.split_once(" = ") {
                    if !k.contains(' ') {
                        keys.push(k.to_string());
                        uncommented.push_str(kv);
                        uncommented.push('\n');
                    }
                }
            }
        }
        let table: toml::Table = uncommented.parse().expect("valid TOML");
        for def in SETTINGS
            .iter()
            .filter(|d| !d.cli_only && d.unsupported.is_none())
        {
            assert!(
                keys.iter().any(|k| k == def.name),
                "example lacks {}",
                def.name
            );
            assert!(table.contains_key(def.name));
        }
        // Every key is one ferrocorn accepts.
        let dir = std::env::temp_dir().join(format!("ferrocorn-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("all.toml");
        std::fs::write(&path, &uncommented).unwrap();
        let args = ["--print-config", "--config", path.to_str().unwrap()]
            .iter()
            .map(std::ffi::OsString::from)
            .collect();
        let loaded = crate::config::load(args, &|_| None);
        std::fs::remove_dir_all(&dir).ok();
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    #[test]
    fn zsh_descriptions_are_escaped() {
        assert_eq!(zsh_desc("a [b]: c. More."), "a \\[b\\]\\: c");
        assert_eq!(zsh_desc("it's"), "it'\\''s");
    }
}
