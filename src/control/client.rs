//! `ferrocorn ctl [--control-socket PATH] [--json] COMMAND...`: send one
//! command to a running master's control socket, in gunicorn's wire
//! format, and print the answer (tables for the `show` commands and
//! `help`, the Python stacks as tracebacks, JSON otherwise or with
//! `--json`). Exit status 0 on success, 1 when the server answers with an
//! error or cannot be reached, 2 on a usage error.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::protocol::{self, MAX_ANSWER};

#[derive(Debug, Error)]
pub enum CtlError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("cannot connect to the control socket {0}: {1} (is ferrocorn running? see --control-socket)")]
    Connect(String, std::io::Error),
    #[error("control socket {0}: {1}")]
    Io(String, std::io::Error),
    #[error("control socket {0}: {1}")]
    Protocol(String, String),
    /// The server answered `status: error`.
    #[error("{0}")]
    Server(String),
}

const USAGE: &str =
    "usage: ferrocorn ctl [--control-socket PATH | --instance NAME] [--json] COMMAND [ARGS...]";

pub const HELP: &str =
    "usage: ferrocorn ctl [--control-socket PATH | --instance NAME] [--json] COMMAND [ARGS...]

Send one command to a running ferrocorn (or gunicorn) master over its
control socket and print the answer.

  -s, --control-socket PATH  the socket (default: $XDG_RUNTIME_DIR/gunicorn.ctl,
                             or $HOME/.gunicorn/gunicorn.ctl; under the packaged
                             units /run/ferrocorn/NAME/control.sock)
  -i, --instance NAME        the packaged unit ferrocorn@NAME's socket,
                             /run/ferrocorn/NAME/control.sock
  -j, --json                 print the answer's data as JSON
  -h, --help                 this help

Commands:
  show all | workers | stats | config | listeners
  worker add [N] | worker remove [N] | worker kill PID
  reload | reopen | shutdown [graceful|quick]
  stacks [PID]               the Python stack of every thread and asyncio task
                             in each worker (or in worker PID), without
                             stopping it
  help                       the commands the server knows
";

struct Opts {
    socket: PathBuf,
    json: bool,
    words: Vec<String>,
}

fn parse(args: &[OsString]) -> Result<Option<Opts>, CtlError> {
    let mut socket = None;
    let mut json = false;
    let mut words = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        if !words.is_empty() {
            words.push(a);
            continue;
        }
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-j" | "--json" => json = true,
            "-s" | "--control-socket" => match it.next() {
                Some(p) => socket = Some(PathBuf::from(p)),
                None => return Err(CtlError::Usage(format!("{a} needs a PATH"))),
            },
            "-i" | "--instance" => match it.next() {
                Some(n) if !n.is_empty() && !n.contains('/') && n != "." && n != ".." => {
                    socket = Some(instance_socket(&n));
                }
                _ => return Err(CtlError::Usage(format!("{a} needs an instance NAME"))),
            },
            _ if a.starts_with("--control-socket=") => {
                socket = Some(PathBuf::from(&a["--control-socket=".len()..]));
            }
            "--" => words.extend(it.by_ref()),
            _ if a.starts_with('-') && a.len() > 1 => {
                return Err(CtlError::Usage(format!("unknown option {a}")))
            }
            _ => words.push(a),
        }
    }
    if words.is_empty() {
        return Err(CtlError::Usage("no command given".into()));
    }
    Ok(Some(Opts {
        socket: socket.unwrap_or_else(super::default_path),
        json,
        words,
    }))
}

/// The control socket of the packaged unit `ferrocorn@NAME` (the single
/// unit `ferrocorn.service` is instance `ferrocorn`).
pub fn instance_socket(name: &str) -> PathBuf {
    PathBuf::from("/run/ferrocorn")
        .join(name)
        .join("control.sock")
}

/// Run `ferrocorn ctl ARGS`; `Ok(None)` means help was asked for.
pub fn run(args: &[OsString]) -> Result<Option<String>, CtlError> {
    let Some(o) = parse(args)? else {
        return Ok(None);
    };
    let data = send(&o.socket, &o.words)?;
    Ok(Some(if o.json {
        serde_json::to_string_pretty(&data).unwrap_or_default()
    } else {
        format(&o.words, &data)
    }))
}

/// Send `words` as one command and return the answer's data.
pub fn send(path: &std::path::Path, words: &[String]) -> Result<Value, CtlError> {
    let shown = path.display().to_string();
    let mut s = UnixStream::connect(path).map_err(|e| CtlError::Connect(shown.clone(), e))?;
    let io = |e| CtlError::Io(shown.clone(), e);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    // As gunicornc sends it: the whole command as one string.
    let command = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    let request = serde_json::json!({"id": 1, "command": command, "args": []});
    s.write_all(&protocol::encode(protocol::Framing::Frames, &request))
        .map_err(io)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_ANSWER {
        return Err(CtlError::Protocol(
            shown,
            format!("answer too large ({len} bytes)"),
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(io)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| CtlError::Protocol(shown.clone(), format!("invalid JSON answer: {e}")))?;
    if v.get("status").and_then(Value::as_str) == Some("error") {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(CtlError::Server(msg.to_string()));
    }
    Ok(v.get("data").cloned().unwrap_or(Value::Null))
}

/// A word as the server's shell-like split gives it back.
fn quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn worker_rows(list: &[Value], out: &mut Vec<String>, indent: &str) {
    out.push(format!(
        "{indent}{:<10} {:<6} {:<8} {:<10} {:<10} STATE",
        "PID", "AGE", "BOOTED", "LAST_BEAT", "REQUESTS"
    ));
    for w in list {
        let beat = match w["last_heartbeat"].as_f64() {
            Some(b) => format!("{b:.2}s ago"),
            None => "n/a".into(),
        };
        let state = if w["aborted"].as_bool() == Some(true) {
            "timed out"
        } else if w["retiring"].as_bool() == Some(true) {
            "retiring"
        } else {
            "serving"
        };
        out.push(format!(
            "{indent}{:<10} {:<6} {:<8} {:<10} {:<10} {state}",
            s(&w["pid"]),
            s(&w["age"]),
            if w["booted"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            beat,
            s(&w["requests"]),
        ));
    }
}

fn frames(list: &Value, out: &mut Vec<String>) {
    for f in list.as_array().into_iter().flatten() {
        out.push(format!(
            "    File \"{}\", line {}, in {}",
            s(&f["file"]),
            s(&f["line"]),
            s(&f["function"])
        ));
        if let Some(code) = f["code"].as_str().filter(|c| !c.is_empty()) {
            out.push(format!("      {code}"));
        }
    }
}

/// The answer as a person reads it.
fn format(words: &[String], data: &Value) -> String {
    let cmd: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    match cmd.as_slice() {
        ["show", "workers", ..] => {
            let list = data["workers"].as_array().cloned().unwrap_or_default();
            worker_rows(&list, &mut out, "");
            out.push(format!("Total: {} workers", list.len()));
        }
        ["show", "all", ..] => {
            out.push(format!("MASTER pid {}", s(&data["arbiter"]["pid"])));
            let list = data["web_workers"].as_array().cloned().unwrap_or_default();
            out.push(format!("WORKERS ({})", list.len()));
            worker_rows(&list, &mut out, "  ");
        }
        ["show", "stats", ..] => {
            for (k, label) in [
                ("pid", "PID"),
                ("uptime", "Uptime (s)"),
                ("phase", "Phase"),
                ("workers_current", "Workers current"),
                ("workers_target", "Workers target"),
                ("workers_spawned", "Workers spawned"),
                ("workers_killed", "Workers killed"),
                ("reloads", "Reloads"),
                ("requests", "Requests"),
            ] {
                out.push(format!("{:<17} {}", format!("{label}:"), s(&data[k])));
            }
        }
        ["show", "listeners", ..] => {
            out.push(format!("{:<40} {:<6} FD", "ADDRESS", "TYPE"));
            for l in data["listeners"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{:<40} {:<6} {}",
                    s(&l["address"]),
                    s(&l["type"]),
                    s(&l["fd"])
                ));
            }
        }
        ["show", "config", ..] => {
            if let Value::Object(m) = data {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    out.push(format!("{k} = {}", m[k]));
                }
            }
        }
        ["help", ..] => {
            out.push("Commands:".into());
            if let Value::Object(m) = &data["commands"] {
                let width = m.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in m {
                    out.push(format!("  {k:<width$}  {}", s(v)));
                }
            }
        }
        ["stacks", ..] => {
            for w in data["workers"].as_array().into_iter().flatten() {
                out.push(format!("Worker {} (age {})", s(&w["pid"]), s(&w["age"])));
                if let Some(e) = w["error"].as_str() {
                    out.push(format!("  error: {e}"));
                }
                let quiet = ["threads", "tasks", "greenlets"]
                    .iter()
                    .all(|k| w[*k].as_array().is_none_or(Vec::is_empty));
                if quiet && w["error"].is_null() {
                    out.push("  (idle: no Python code running)".into());
                }
                for t in w["threads"].as_array().into_iter().flatten() {
                    let main = if t["main"].as_bool() == Some(true) {
                        ", main"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "  Thread {} ({}{main}):",
                        s(&t["name"]),
                        s(&t["id"])
                    ));
                    frames(&t["frames"], &mut out);
                }
                for t in w["tasks"].as_array().into_iter().flatten() {
                    out.push(format!("  Task {} ({}):", s(&t["name"]), s(&t["coro"])));
                    frames(&t["frames"], &mut out);
                }
                for g in w["greenlets"].as_array().into_iter().flatten() {
                    out.push(format!("  Greenlet {}:", s(&g["name"])));
                    frames(&g["frames"], &mut out);
                }
                for e in w["errors"].as_array().into_iter().flatten() {
                    out.push(format!("  error: {}", s(e)));
                }
                out.push(String::new());
            }
            while out.last().is_some_and(String::is_empty) {
                out.pop();
            }
        }
        _ => out.push(serde_json::to_string_pretty(data).unwrap_or_default()),
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn options() {
        let o = parse(&args(&["-i", "shop", "show", "workers"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.socket, PathBuf::from("/run/ferrocorn/shop/control.sock"));
        assert_eq!(o.words, ["show", "workers"]);
        let o = parse(&args(&["--control-socket=/x.ctl", "-j", "stacks", "-1"]))
            .unwrap()
            .unwrap();
        assert_eq!(o.socket, PathBuf::from("/x.ctl"));
        assert!(o.json);
        assert_eq!(o.words, ["stacks", "-1"], "options end at the command");
        assert!(parse(&args(&["-i", "../etc", "help"])).is_err());
        assert!(parse(&args(&["--json"])).is_err());
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("add"), "add");
    }
}
