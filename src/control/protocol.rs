//! The control socket's wire format, as gunicorn's `gunicornc` speaks it:
//! each message is a 4-byte big-endian length and that many bytes of JSON.
//! A request is `{"id": N, "command": "worker add", "args": ["2"]}`, an
//! answer `{"id": N, "status": "ok", "data": {...}}` or
//! `{"id": N, "status": "error", "error": "..."}`.
//!
//! ferrocorn also takes a plain text line (`echo "show workers" | socat -
//! UNIX-CONNECT:PATH`): a frame's first byte is always 0 (frames are
//! smaller than 16 MiB), so any other first byte starts a line, answered
//! by one line of JSON. This file owns the framing (an incremental
//! decoder that never needs more than [`MAX_REQUEST`] bytes), the command
//! words (shell-like splitting, as gunicorn's), and the parsed [`Command`].

use serde_json::{json, Value};
use thiserror::Error;

/// The largest request the master reads; a command is a few words.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The largest answer a client accepts (gunicorn's limit, 16 MiB).
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// What is wrong with a request, as the client is told (`status: error`).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Message too large: {0} bytes (at most {MAX_REQUEST})")]
    TooLarge(usize),
    #[error("Invalid JSON: {0}")]
    Json(String),
    #[error("Invalid request: {0}")]
    Request(&'static str),
    #[error("Empty command")]
    Empty,
    #[error("Invalid argument: {0}")]
    Argument(String),
}

/// How a client talks: gunicorn's frames, or text lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Frames,
    Lines,
}

/// One request as read from the socket.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub id: Value,
    /// The command's words: the command string split as a shell would,
    /// then the `args`.
    pub words: Vec<String>,
}

/// One step of reading a client's input buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// More bytes are needed.
    Incomplete,
    /// A request; `used` bytes of the buffer are consumed.
    Request {
        framing: Framing,
        used: usize,
        request: Result<Request, ProtocolError>,
    },
    /// The input cannot be read on (framing lost): answer and close.
    Fatal(Framing, ProtocolError),
}

/// Read one request off the front of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(&first) = buf.first() else {
        return Decoded::Incomplete;
    };
    if first != 0 {
        // A text line.
        return match buf.iter().position(|&b| b == b'\n') {
            Some(end) => Decoded::Request {
                framing: Framing::Lines,
                used: end + 1,
                request: line_request(&buf[..end]),
            },
            None if buf.len() > MAX_REQUEST => {
                Decoded::Fatal(Framing::Lines, ProtocolError::TooLarge(buf.len()))
            }
            None => Decoded::Incomplete,
        };
    }
    if buf.len() < 4 {
        return Decoded::Incomplete;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_REQUEST {
        return Decoded::Fatal(Framing::Frames, ProtocolError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Decoded::Incomplete;
    }
    Decoded::Request {
        framing: Framing::Frames,
        used: 4 + len,
        request: json_request(&buf[4..4 + len]),
    }
}

fn line_request(line: &[u8]) -> Result<Request, ProtocolError> {
    let text = std::str::from_utf8(line)
        .map_err(|_| ProtocolError::Request("the command is not UTF-8"))?
        .trim();
    // A JSON request on one line is taken too.
    if text.starts_with('{') {
        return json_request(text.as_bytes());
    }
    Ok(Request {
        id: Value::from(0),
        words: split_words(text)?,
    })
}

fn json_request(payload: &[u8]) -> Result<Request, ProtocolError> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let Value::Object(map) = v else {
        return Err(ProtocolError::Request("expected a JSON object"));
    };
    let id = map.get("id").cloned().unwrap_or(Value::from(0));
    let command = match map.get("command") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ProtocolError::Request("command must be a string")),
    };
    let mut words = split_words(command)?;
    match map.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(args)) => {
            for a in args {
                words.push(match a {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                    _ => return Err(ProtocolError::Request("args must be strings or numbers")),
                });
            }
        }
        Some(_) => return Err(ProtocolError::Request("args must be a list")),
    }
    Ok(Request { id, words })
}

/// Split a command as a POSIX shell would: blanks separate words, single
/// quotes keep everything, double quotes keep all but `\"` and `\\`, and a
/// backslash outside quotes escapes the next character.
pub fn split_words(s: &str) -> Result<Vec<String>, ProtocolError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(ProtocolError::Argument("No closing quotation".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => {
                                return Err(ProtocolError::Argument("No closing quotation".into()))
                            }
                        },
                        Some(c) => cur.push(c),
                        None => return Err(ProtocolError::Argument("No closing quotation".into())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(ProtocolError::Argument("No escaped character".into())),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// How a `shutdown` stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// TERM: in-flight requests finish, within --graceful-timeout.
    Graceful,
    /// INT: workers exit now.
    Quick,
}

/// A command the control socket understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowAll,
    ShowWorkers,
    ShowDirty,
    ShowConfig,
    ShowStats,
    ShowListeners,
    WorkerAdd(u32),
    WorkerRemove(u32),
    WorkerKill(i32),
    DirtyAdd,
    DirtyRemove,
    Reload,
    Reopen,
    Shutdown(StopMode),
    Help,
    /// ferrocorn's own: the Python stacks of every worker, or of one.
    Stacks(Option<i32>),
}

fn count(arg: Option<&String>) -> Result<u32, ProtocolError> {
    match arg {
        None => Ok(1),
        Some(a) => a
            .trim()
            .parse::<i64>()
            .map(|n| n.clamp(1, u32::MAX as i64) as u32)
            .map_err(|_| ProtocolError::Argument(format!("not a number: '{a}'"))),
    }
}

fn pid(arg: &str) -> Result<i32, ProtocolError> {
    arg.trim()
        .parse::<i32>()
        .map_err(|_| ProtocolError::Argument(format!("not a process id: '{arg}'")))
}

/// The command named by `words` (case-insensitive, as in gunicorn).
pub fn parse_command(words: &[String]) -> Result<Command, ProtocolError> {
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let Some((cmd, rest)) = lower.split_first() else {
        return Err(ProtocolError::Empty);
    };
    let arg = |i: usize| words.get(i + 1);
    let bad = |m: &str| Err(ProtocolError::Argument(m.to_string()));
    match cmd.as_str() {
        "show" => match rest.first().map(String::as_str) {
            None => bad("Missing show target (all|workers|dirty|config|stats|listeners)"),
            Some("all") => Ok(Command::ShowAll),
            Some("workers") => Ok(Command::ShowWorkers),
            Some("dirty") => Ok(Command::ShowDirty),
            Some("config") => Ok(Command::ShowConfig),
            Some("stats") => Ok(Command::ShowStats),
            Some("listeners") => Ok(Command::ShowListeners),
            Some(t) => bad(&format!("Unknown show target: {t}")),
        },
        "worker" => match rest.first().map(String::as_str) {
            None => bad("Missing worker action (add|remove|kill)"),
            Some("add") => Ok(Command::WorkerAdd(count(arg(1))?)),
            Some("remove") => Ok(Command::WorkerRemove(count(arg(1))?)),
            Some("kill") => match arg(1) {
                None => bad("Missing PID for worker kill"),
                Some(p) => Ok(Command::WorkerKill(pid(p)?)),
            },
            Some(a) => bad(&format!("Unknown worker action: {a}")),
        },
        "dirty" => match rest.first().map(String::as_str) {
            None => bad("Missing dirty action (add|remove)"),
            Some("add") => Ok(Command::DirtyAdd),
            Some("remove") => Ok(Command::DirtyRemove),
            Some(a) => bad(&format!("Unknown dirty action: {a}")),
        },
        "reload" => Ok(Command::Reload),
        "reopen" => Ok(Command::Reopen),
        "shutdown" => match rest.first().map(String::as_str) {
            None | Some("graceful") => Ok(Command::Shutdown(StopMode::Graceful)),
            Some("quick") => Ok(Command::Shutdown(StopMode::Quick)),
            Some(m) => bad(&format!("Unknown shutdown mode: {m} (graceful|quick)")),
        },
        "help" => Ok(Command::Help),
        "stacks" => match arg(0) {
            None => Ok(Command::Stacks(None)),
            Some(p) => Ok(Command::Stacks(Some(pid(p)?))),
        },
        c => bad(&format!("Unknown command: {c}")),
    }
}

/// The commands and what they do, as `help` answers.
pub fn help() -> Value {
    let mut commands = serde_json::Map::new();
    for (c, d) in [
        ("show all", "Show all processes (master and workers)"),
        ("show workers", "List the workers with their status"),
        (
            "show dirty",
            "Dirty workers (this server has no dirty arbiter)",
        ),
        ("show config", "Show the current effective configuration"),
        ("show stats", "Show server statistics"),
        ("show listeners", "Show the bound sockets"),
        ("worker add [N]", "Spawn N more workers (default 1)"),
        (
            "worker remove [N]",
            "Retire N workers (default 1, at least 1 stays)",
        ),
        (
            "worker kill <PID>",
            "Gracefully stop one worker (it is replaced)",
        ),
        ("reload", "Graceful reload (HUP)"),
        ("reopen", "Reopen log files (USR1)"),
        (
            "shutdown [graceful|quick]",
            "Shut the server down (TERM/INT)",
        ),
        (
            "stacks [PID]",
            "Python stacks of every thread and asyncio task in each worker (or one)",
        ),
        ("help", "Show this help message"),
    ] {
        commands.insert(c.into(), Value::from(d));
    }
    json!({ "commands": commands })
}

/// An answer, framed as the request was.
pub fn encode(framing: Framing, answer: &Value) -> Vec<u8> {
    let payload = answer.to_string().into_bytes();
    match framing {
        Framing::Frames => {
            let mut out = Vec::with_capacity(4 + payload.len());
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&payload);
            out
        }
        Framing::Lines => {
            let mut out = payload;
            out.push(b'\n');
            out
        }
    }
}

pub fn ok(id: &Value, data: Value) -> Value {
    json!({ "id": id, "status": "ok", "data": data })
}

pub fn error(id: &Value, message: impl std::fmt::Display) -> Value {
    json!({ "id": id, "status": "error", "error": message.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: &str) -> Vec<u8> {
        let mut b = (v.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(v.as_bytes());
        b
    }

    #[test]
    fn frames_and_lines() {
        let b = frame(r#"{"id": 3, "command": "worker add", "args": [2]}"#);
        assert_eq!(decode(&b[..5]), Decoded::Incomplete);
        let Decoded::Request { used, request, .. } = decode(&b) else {
            panic!()
        };
        assert_eq!(used, b.len());
        let r = request.unwrap();
        assert_eq!(r.id, Value::from(3));
        assert_eq!(r.words, ["worker", "add", "2"]);
        let Decoded::Request {
            framing, request, ..
        } = decode(b"show 'work ers'\nrest")
        else {
            panic!()
        };
        assert_eq!(framing, Framing::Lines);
        assert_eq!(request.unwrap().words, ["show", "work ers"]);
        assert!(matches!(
            decode(&[0, 0x10, 0, 0]),
            Decoded::Fatal(Framing::Frames, ProtocolError::TooLarge(_))
        ));
        let Decoded::Request { request, .. } = decode(&frame("{nope")) else {
            panic!()
        };
        assert!(matches!(request, Err(ProtocolError::Json(_))));
    }

    #[test]
    fn commands() {
        let w = |s: &str| parse_command(&split_words(s).unwrap());
        assert_eq!(w("SHOW workers"), Ok(Command::ShowWorkers));
        assert_eq!(w("worker add"), Ok(Command::WorkerAdd(1)));
        assert_eq!(w("worker remove 3"), Ok(Command::WorkerRemove(3)));
        assert_eq!(w("worker kill 42"), Ok(Command::WorkerKill(42)));
        assert_eq!(w("stacks"), Ok(Command::Stacks(None)));
        assert_eq!(w("shutdown quick"), Ok(Command::Shutdown(StopMode::Quick)));
        assert_eq!(w(""), Err(ProtocolError::Empty));
        assert!(w("worker add x").is_err());
        assert!(w("frobnicate").is_err());
        assert!(split_words("a 'b").is_err());
        assert_eq!(
            split_words(r#"a "b \" c" d\ e"#).unwrap(),
            ["a", "b \" c", "d e"]
        );
    }
}
