//! `access_log_format`: parsing gunicorn's `%(atom)s` format (Python
//! `%`-formatting over a mapping) and rendering one line from a finished
//! request. The atoms hold what gunicorn's atoms dict holds: most come
//! from the WSGI environ as the app left it (so a `ProxyFix` that rewrites
//! `REMOTE_ADDR` shows in `%(h)s`), `"` in text atoms is written `\"`,
//! `{name}i`/`{name}o`/`{name}e` keys are case-insensitive, and an atom
//! gunicorn does not know renders `-`. One atom is ferrocorn's own:
//! `%(Q)s`, the queue time in microseconds (from accept, or on a reused
//! connection from the request's first byte, until the app was called);
//! gunicorn renders it `-`.
//!
//! `--access-log-json` ([`Format::json`]) writes one JSON object per line
//! instead: a named field for each atom (see `JSON_FIELDS`), plus the
//! request and response headers and environ keys the format names.

use std::borrow::Cow;
use std::time::Duration;

use super::super::pyfmt::{Spec, Value};
use super::super::timefmt;

/// gunicorn's default `access_log_format`.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// A WSGI environ key the format reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvKey {
    /// Looked up as it is (the standard atoms: `REMOTE_ADDR`, ...).
    Exact(&'static str),
    /// A `%({name}e)s` atom: the environ key whose lower case is this (the
    /// last such key in the environ's order, as in gunicorn).
    Folded(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Remote(usize),
    Dash,
    User(usize),
    Time,
    Request(usize, usize, usize),
    Status,
    Method(usize),
    Path(usize),
    Query(usize),
    Protocol(usize),
    BytesClf,
    Bytes,
    Referer(usize),
    Agent(usize),
    Secs,
    Millis,
    Micros,
    DecimalSecs,
    Queue,
    Pid,
    ReqHeader(String),
    RespHeader(String),
    Env(usize),
    Unknown,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Atom(Atom, Spec),
}

/// A parsed `access_log_format`.
#[derive(Debug, Clone)]
pub struct Format {
    parts: Vec<Part>,
    keys: Vec<EnvKey>,
    unknown: Vec<String>,
    /// `--access-log-json`: the line is a JSON object instead.
    json: Option<Json>,
}

/// What a JSON line holds.
#[derive(Debug, Clone)]
struct Json {
    fields: Vec<(&'static str, Atom)>,
    req_headers: Vec<String>,
    resp_headers: Vec<String>,
    /// `{name}e` keys as written (lower-cased) and their environ index.
    environ: Vec<(String, usize)>,
}

/// The JSON line's fields: its key, and the atom whose value it holds.
/// `l` (always `-`) has none; `T` and `M` are `duration` in other units.
pub const JSON_FIELDS: &[(&str, &str)] = &[
    ("time", "t"),
    ("remote_addr", "h"),
    ("user", "u"),
    ("request", "r"),
    ("method", "m"),
    ("path", "U"),
    ("query", "q"),
    ("protocol", "H"),
    ("status", "s"),
    ("bytes", "B"),
    ("referer", "f"),
    ("user_agent", "a"),
    ("duration", "L"),
    ("duration_us", "D"),
    ("queue_us", "Q"),
    ("pid", "p"),
];

/// What one access-log line describes.
pub struct Record<'a> {
    /// The values of [`Format::environ_keys`], in order (`None`: the
    /// environ has no such key).
    pub environ: &'a [Option<Value<'a>>],
    pub req_headers: &'a [(String, String)],
    pub status: u16,
    pub resp_headers: &'a [(String, String)],
    pub body_bytes: u64,
    pub duration: Duration,
    /// How long the request waited before the app was called (`%(Q)s`).
    pub queue: Duration,
}

impl Format {
    /// Parse a format as Python's `fmt % mapping` reads it. What Python
    /// would refuse (`%(h`, `%(h)y`, a lone `%` at the end) and a
    /// placeholder without an atom name (`%s`) are errors.
    pub fn parse(fmt: &str) -> Result<Format, String> {
        let mut f = Format {
            parts: Vec::new(),
            keys: Vec::new(),
            unknown: Vec::new(),
            json: None,
        };
        let mut lit = String::new();
        let mut rest = fmt;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let here = &rest[i..];
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            if after.is_empty() {
                return Err("incomplete format: a lone % at the end (a literal % is %%)".into());
            }
            let Some(inner) = after.strip_prefix('(') else {
                let shown: String = here.chars().take(2).collect();
                return Err(format!(
                    "'{shown}' has no atom name: write %(NAME)s (a literal % is %%)"
                ));
            };
            // The key runs to the parenthesis that closes the first one,
            // as in Python.
            let mut depth = 1;
            let mut end = None;
            for (j, c) in inner.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| format!("incomplete format key at '{here}'"))?;
            let name = &inner[..end];
            let (spec, used) = Spec::parse(&inner[end + 1..]).map_err(|e| {
                let shown: String = here.chars().take(end + 4).collect();
                format!("{e} in '{shown}'")
            })?;
            let atom = f.atom(name);
            if !lit.is_empty() {
                f.parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            f.parts.push(Part::Atom(atom, spec));
            rest = &inner[end + 1 + used..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            f.parts.push(Part::Lit(lit));
        }
        Ok(f)
    }

    /// `--access-log-json`: every atom as a named field (`JSON_FIELDS`),
    /// and the headers and environ keys that `fmt` names
    /// (`%({x-request-id}i)s`, `%({x-cache}o)s`, `%({remote_user}e)s`).
    pub fn json(fmt: &str) -> Result<Format, String> {
        let parsed = Format::parse(fmt)?;
        let mut f = Format {
            parts: Vec::new(),
            keys: Vec::new(),
            unknown: Vec::new(),
            json: None,
        };
        let fields = JSON_FIELDS
            .iter()
            .map(|(key, atom)| (*key, f.atom(atom)))
            .collect();
        let mut json = Json {
            fields,
            req_headers: Vec::new(),
            resp_headers: Vec::new(),
            environ: Vec::new(),
        };
        for part in &parsed.parts {
            match part {
                Part::Atom(Atom::ReqHeader(h), _) if !json.req_headers.contains(h) => {
                    json.req_headers.push(h.clone())
                }
                Part::Atom(Atom::RespHeader(h), _) if !json.resp_headers.contains(h) => {
                    json.resp_headers.push(h.clone())
                }
                Part::Atom(Atom::Env(i), _) => {
                    if let Some(EnvKey::Folded(name)) = parsed.keys.get(*i) {
                        if !json.environ.iter().any(|(n, _)| n == name) {
                            let idx = f.key(EnvKey::Folded(name.clone()));
                            json.environ.push((name.clone(), idx));
                        }
                    }
                }
                _ => {}
            }
        }
        f.json = Some(json);
        Ok(f)
    }

    fn key(&mut self, k: EnvKey) -> usize {
        match self.keys.iter().position(|x| *x == k) {
            Some(i) => i,
            None => {
                self.keys.push(k);
                self.keys.len() - 1
            }
        }
    }

    fn atom(&mut self, name: &str) -> Atom {
        let mut exact = |k| self.key(EnvKey::Exact(k));
        let atom = match name {
            "h" => Atom::Remote(exact("REMOTE_ADDR")),
            "l" => Atom::Dash,
            "u" => Atom::User(exact("HTTP_AUTHORIZATION")),
            "t" => Atom::Time,
            "r" => Atom::Request(
                exact("REQUEST_METHOD"),
                exact("RAW_URI"),
                exact("SERVER_PROTOCOL"),
            ),
            "s" => Atom::Status,
            "m" => Atom::Method(exact("REQUEST_METHOD")),
            "U" => Atom::Path(exact("PATH_INFO")),
            "q" => Atom::Query(exact("QUERY_STRING")),
            "H" => Atom::Protocol(exact("SERVER_PROTOCOL")),
            "b" => Atom::BytesClf,
            "B" => Atom::Bytes,
            "f" => Atom::Referer(exact("HTTP_REFERER")),
            "a" => Atom::Agent(exact("HTTP_USER_AGENT")),
            "T" => Atom::Secs,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSecs,
            "Q" => Atom::Queue,
            "p" => Atom::Pid,
            _ => {
                // gunicorn lower-cases both its keys and the one asked for.
                let lower = name.to_lowercase();
                let inner = |suffix| {
                    lower
                        .strip_prefix('{')
                        .and_then(|s| s.strip_suffix(suffix))
                        .map(str::to_string)
                };
                if let Some(h) = inner("}i") {
                    Atom::ReqHeader(h)
                } else if let Some(h) = inner("}o") {
                    Atom::RespHeader(h)
                } else if let Some(k) = inner("}e") {
                    Atom::Env(self.key(EnvKey::Folded(k)))
                } else {
                    Atom::Unknown
                }
            }
        };
        if atom == Atom::Unknown && !self.unknown.iter().any(|u| u == name) {
            self.unknown.push(name.to_string());
        }
        atom
    }

    /// The environ keys whose values a [`Record`] carries, in order.
    pub fn environ_keys(&self) -> &[EnvKey] {
        &self.keys
    }

    /// The atoms that are not gunicorn's (each renders `-`), for the
    /// warning at start: `%(x)s` gives `x`.
    pub fn unknown_atoms(&self) -> &[String] {
        &self.unknown
    }

    pub fn render(&self, r: &Record<'_>) -> String {
        let mut out = String::with_capacity(160);
        self.render_into(r, &mut out);
        out
    }

    /// Append the line for `r` (with its newline) to `out`.
    pub fn render_into(&self, r: &Record<'_>, out: &mut String) {
        if let Some(json) = &self.json {
            render_json(json, r, out);
            out.push('\n');
            return;
        }
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Atom(atom, spec) => {
                    let v = value(atom, r);
                    match v {
                        // gunicorn's SafeAtoms: `"` in a text atom is `\"`.
                        Value::Str(s) if s.contains('"') => {
                            spec.format(&Value::Str(Cow::Owned(s.replace('"', "\\\""))), out)
                        }
                        v => spec.format(&v, out),
                    }
                }
            }
        }
        out.push('\n');
    }
}

fn text(s: impl Into<Cow<'static, str>>) -> Value<'static> {
    Value::Str(s.into())
}

fn env<'a>(r: &'a Record<'_>, i: usize) -> Option<Value<'a>> {
    r.environ.get(i).and_then(|v| v.as_ref()).map(|v| match v {
        Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    })
}

/// The last header named `lname` (gunicorn builds a dict of them).
fn header<'a>(headers: &'a [(String, String)], lname: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(lname))
        .map(|(_, v)| v.as_str())
}

fn value<'a>(atom: &'a Atom, r: &'a Record<'_>) -> Value<'a> {
    let dash = || text("-");
    let d = r.duration;
    match atom {
        Atom::Remote(i) | Atom::Referer(i) | Atom::Agent(i) | Atom::Env(i) => {
            env(r, *i).unwrap_or_else(dash)
        }
        Atom::Method(i) | Atom::Path(i) | Atom::Query(i) | Atom::Protocol(i) => {
            env(r, *i).unwrap_or_else(Value::none)
        }
        Atom::Dash | Atom::Unknown => dash(),
        Atom::User(i) => match env(r, *i) {
            Some(Value::Str(auth)) => basic_user(&auth).map(text).unwrap_or_else(dash),
            _ => dash(),
        },
        Atom::Time => text(timefmt::clf_timestamp(timefmt::unix_now())),
        Atom::Request(m, u, p) => {
            let mut line = String::with_capacity(64);
            for (n, i) in [*m, *u, *p].into_iter().enumerate() {
                if n > 0 {
                    line.push(' ');
                }
                match env(r, i) {
                    Some(v) => line.push_str(&v.text()),
                    None => line.push('-'),
                }
            }
            text(line)
        }
        Atom::Status => text(r.status.to_string()),
        // gunicorn writes the count for both, 0 included (an empty body,
        // HEAD, 304), never CLF's "-".
        Atom::BytesClf => text(r.body_bytes.to_string()),
        Atom::Bytes => Value::Int(r.body_bytes as i64),
        Atom::Secs => Value::Int(d.as_secs() as i64),
        Atom::Millis => Value::Int(d.as_millis() as i64),
        Atom::Micros => Value::Int(d.as_micros() as i64),
        Atom::DecimalSecs => text(format!("{}.{:06}", d.as_secs(), d.subsec_micros())),
        Atom::Queue => Value::Int(r.queue.as_micros().min(i64::MAX as u128) as i64),
        Atom::Pid => text(format!("<{}>", std::process::id())),
        Atom::ReqHeader(h) => header(r.req_headers, h)
            .map(|v| Value::Str(Cow::Borrowed(v)))
            .unwrap_or_else(dash),
        Atom::RespHeader(h) => header(r.resp_headers, h)
            .map(|v| Value::Str(Cow::Borrowed(v)))
            .unwrap_or_else(dash),
    }
}

/// A JSON string.
fn json_str(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An atom's value as JSON: strings as strings, numbers as numbers,
/// absent values (`-`, None) as null.
fn json_value(v: &Value<'_>, out: &mut String) {
    match v {
        Value::Str(s) => json_str(s, out),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f, _) if f.is_finite() => out.push_str(&format!("{f:?}")),
        Value::Float(_, t) => json_str(t, out),
        Value::Obj { text, .. } if text == "None" => out.push_str("null"),
        Value::Obj { text, .. } => json_str(text, out),
    }
}

fn render_json(json: &Json, r: &Record<'_>, out: &mut String) {
    out.push('{');
    let mut first = true;
    let mut key = |k: &str, out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push_str(", ");
        }
        json_str(k, out);
        out.push_str(": ");
    };
    for (k, atom) in &json.fields {
        key(k, out);
        match atom {
            Atom::Time => json_str(&timefmt::iso_timestamp(std::time::SystemTime::now()), out),
            Atom::Status => out.push_str(&r.status.to_string()),
            Atom::DecimalSecs => out.push_str(&format!(
                "{}.{:06}",
                r.duration.as_secs(),
                r.duration.subsec_micros()
            )),
            Atom::Pid => out.push_str(&std::process::id().to_string()),
            // Absent: null, where the line writes `-`.
            Atom::Remote(i) | Atom::Referer(i) | Atom::Agent(i) => match env(r, *i) {
                Some(v) => json_value(&v, out),
                None => out.push_str("null"),
            },
            Atom::User(i) => match env(r, *i) {
                Some(Value::Str(auth)) => match basic_user(&auth) {
                    Some(u) => json_str(&u, out),
                    None => out.push_str("null"),
                },
                _ => out.push_str("null"),
            },
            a => json_value(&value(a, r), out),
        }
    }
    let headers = |names: &[String], from: &[(String, String)], out: &mut String| {
        out.push('{');
        for (i, h) in names.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_str(h, out);
            out.push_str(": ");
            match header(from, h) {
                Some(v) => json_str(v, out),
                None => out.push_str("null"),
            }
        }
        out.push('}');
    };
    if !json.req_headers.is_empty() {
        key("request_headers", out);
        headers(&json.req_headers, r.req_headers, out);
    }
    if !json.resp_headers.is_empty() {
        key("response_headers", out);
        headers(&json.resp_headers, r.resp_headers, out);
    }
    if !json.environ.is_empty() {
        key("environ", out);
        out.push('{');
        for (i, (name, idx)) in json.environ.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_str(name, out);
            out.push_str(": ");
            match env(r, *idx) {
                Some(v) => json_value(&v, out),
                None => out.push_str("null"),
            }
        }
        out.push('}');
    }
    out.push('}');
}

/// The user of a `Basic` Authorization value, as gunicorn finds it: the
/// value starts with "basic" (any case), the token after the first space
/// is base64 (characters outside the alphabet skipped, padding required),
/// and the name before the first `:` is UTF-8. Anything else: none.
fn basic_user(auth: &str) -> Option<String> {
    if !auth
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
    {
        return None;
    }
    let (_, token) = auth.split_once(' ')?;
    let decoded = base64_decode(token.trim())?;
    let user = decoded.split(|&b| b == b':').next().unwrap_or(&[]);
    String::from_utf8(user.to_vec())
        .ok()
        .filter(|u| !u.is_empty())
}

/// Python's `base64.b64decode` without `validate`.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut quad = 0;
    let mut pads = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' if quad >= 2 => {
                pads += 1;
                if quad + pads >= 4 {
                    // the last 1 or 2 bytes, from 2 or 3 characters
                    if quad == 2 {
                        out.push((acc >> 4) as u8);
                    } else {
                        out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
                    }
                    return Some(out);
                }
                continue;
            }
            _ => continue,
        } as u32;
        if pads > 0 {
            // data after a short padding: Python carries on past it
            pads = 0;
        }
        acc = acc << 6 | v;
        quad += 1;
        if quad == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            quad = 0;
        }
    }
    (quad == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> Option<Value<'_>> {
        Some(Value::Str(Cow::Borrowed(s)))
    }

    /// The environ values for `f`'s keys from a small fixed environ.
    fn environ(f: &Format) -> Vec<Option<Value<'static>>> {
        f.environ_keys()
            .iter()
            .map(|k| match k {
                EnvKey::Exact("REMOTE_ADDR") => st("10.1.2.3"),
                EnvKey::Exact("REQUEST_METHOD") => st("GET"),
                EnvKey::Exact("RAW_URI") => st("/p%20q?x=\"1\""),
                EnvKey::Exact("PATH_INFO") => st("/p q"),
                EnvKey::Exact("QUERY_STRING") => st("x=\"1\""),
                EnvKey::Exact("SERVER_PROTOCOL") => st("HTTP/1.1"),
                EnvKey::Exact("HTTP_USER_AGENT") => st("say \"hi\"\t"),
                EnvKey::Exact("HTTP_AUTHORIZATION") => st("Basic dXNlcjpwYXNz"),
                EnvKey::Folded(k) if k == "remote_user" => st("bob"),
                EnvKey::Folded(k) if k == "n" => Some(Value::Int(7)),
                _ => None,
            })
            .collect()
    }

    fn line(fmt: &str) -> String {
        let f = Format::parse(fmt).unwrap();
        let env = environ(&f);
        let req = vec![
            ("X-Dup".to_string(), "1".to_string()),
            ("x-dup".to_string(), "2".to_string()),
        ];
        let resp = vec![("X-Resp".to_string(), "a \"q\"".to_string())];
        let r = Record {
            environ: &env,
            req_headers: &req,
            status: 200,
            resp_headers: &resp,
            body_bytes: 42,
            duration: Duration::from_micros(1_500),
            queue: Duration::from_micros(250),
        };
        f.render(&r).trim_end_matches('\n').to_string()
    }

    #[test]
    fn queue_atom() {
        assert_eq!(line("%(Q)s|%(Q)06d"), "250|000250");
    }

    #[test]
    fn json_lines() {
        let f = Format::json("%(h)s %({X-Dup}i)s %({x-resp}o)s %({missing}i)s %({REMOTE_USER}e)s %({n}e)s %({nope}e)s").unwrap();
        let env = environ(&f);
        let req = vec![("X-Dup".to_string(), "1".to_string())];
        let resp = vec![("X-Resp".to_string(), "a \"q\"\u{1}".to_string())];
        let r = Record {
            environ: &env,
            req_headers: &req,
            status: 201,
            resp_headers: &resp,
            body_bytes: 42,
            duration: Duration::from_micros(1_500),
            queue: Duration::from_micros(250),
        };
        let text = f.render(&r);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["remote_addr"], "10.1.2.3");
        assert_eq!(v["user"], "user");
        assert_eq!(v["request"], "GET /p%20q?x=\"1\" HTTP/1.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/p q");
        assert_eq!(v["query"], "x=\"1\"");
        assert_eq!(v["status"], 201);
        assert_eq!(v["bytes"], 42);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], "say \"hi\"\t");
        assert_eq!(v["duration"], 0.0015);
        assert_eq!(v["duration_us"], 1500);
        assert_eq!(v["queue_us"], 250);
        assert_eq!(v["pid"], std::process::id());
        assert!(v["time"].as_str().unwrap().contains('T'));
        assert_eq!(v["request_headers"]["x-dup"], "1");
        assert_eq!(v["request_headers"]["missing"], serde_json::Value::Null);
        assert_eq!(v["response_headers"]["x-resp"], "a \"q\"\u{1}");
        assert_eq!(v["environ"]["remote_user"], "bob");
        assert_eq!(v["environ"]["n"], 7);
        assert_eq!(v["environ"]["nope"], serde_json::Value::Null);
        // Without header or environ atoms, only the fixed fields.
        let f = Format::json(DEFAULT_FORMAT).unwrap();
        let env = environ(&f);
        let r = Record { environ: &env, ..r };
        let v: serde_json::Value = serde_json::from_str(&f.render(&r)).unwrap();
        assert_eq!(v.as_object().unwrap().len(), JSON_FIELDS.len());
    }

    #[test]
    fn atoms_as_gunicorn_renders_them() {
        assert_eq!(
            line("%(h)s|%(l)s|%(u)s|%(r)s|%(s)s|%(m)s|%(U)s|%(q)s|%(H)s|%(b)s|%(B)s|%(f)s|%(a)s"),
            r#"10.1.2.3|-|user|GET /p%20q?x=\"1\" HTTP/1.1|200|GET|/p q|x=\"1\"|HTTP/1.1|42|42|-|say \"hi\"	"#
        );
        assert_eq!(line("%(T)s|%(M)s|%(D)s|%(L)s"), "0|1|1500|0.001500");
        assert_eq!(
            line("%({X-DUP}i)s|%({x-resp}O)s|%({missing}i)s|%({REMOTE_USER}e)s|%({n}e)03d"),
            r#"2|a \"q\"|-|bob|007"#
        );
        assert_eq!(line("%(p)s"), format!("<{}>", std::process::id()));
        assert!(line("%(t)s").starts_with('['));
    }

    #[test]
    fn python_conversions() {
        assert_eq!(
            line("%(B)d %(B)05d %(B)x %(s)5s|%(s)-5s|"),
            "42 00042 2a   200|200  |"
        );
        assert_eq!(line("%(r)r"), r#"'GET /p%20q?x=\\"1\\" HTTP/1.1'"#);
        assert_eq!(line("%(a)r"), r#"'say \\"hi\\"\t'"#);
        assert_eq!(line("100%% %(T).2f"), "100% 0.00");
        assert_eq!(line("%(s)d"), "200");
    }

    #[test]
    fn unknown_atoms_render_a_dash_and_are_listed() {
        let f = Format::parse("%(zz)s %(zz)s %({x}q)s %(H)s").unwrap();
        assert_eq!(f.unknown_atoms(), ["zz", "{x}q"]);
        assert_eq!(line("%(zz)s|%(Z)5s"), "-|    -");
    }

    #[test]
    fn bad_formats_are_one_line_errors() {
        for (fmt, want) in [
            ("%(h", "incomplete format key"),
            ("%(h)y", "unsupported format character 'y'"),
            ("%(h)", "incomplete format"),
            ("%s", "has no atom name"),
            ("50%", "incomplete format"),
            ("50% off", "has no atom name"),
        ] {
            let e = Format::parse(fmt).unwrap_err();
            assert!(e.contains(want), "{fmt}: {e}");
            assert!(!e.contains('\n'));
        }
        // Nested parentheses belong to the key, as in Python.
        assert_eq!(line("%((x))s"), "-");
    }

    #[test]
    fn basic_user_as_gunicorn_decodes_it() {
        assert_eq!(basic_user("Basic dXNlcjpwYXNz").as_deref(), Some("user"));
        assert_eq!(basic_user("basic dXNlcjpwYXNz").as_deref(), Some("user"));
        assert_eq!(basic_user("Basic dXNlcg"), None); // padding missing
        assert_eq!(basic_user("Basic dXNlcg=="), Some("user".into()));
        assert_eq!(basic_user("Basic !!!"), None); // empty
        assert_eq!(basic_user("Basic 6Q=="), None); // not UTF-8
        assert_eq!(basic_user("Bearer x"), None);
    }
}
