//! The access log, with gunicorn's format atoms. Each line is written at
//! the end of its request in one write(2), so a worker that dies (SIGKILL,
//! WORKER TIMEOUT) has logged every request it answered, and lines of
//! different workers never interleave mid-line.

use std::fs::{File, OpenOptions};
use std::io;
use std::time::Duration;

use thiserror::Error;

use super::timefmt;

/// gunicorn's default `access_log_format`.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Lit(String),
    Remote,
    Dash,
    User,
    Time,
    RequestLine,
    Status,
    Method,
    Path,
    Query,
    Protocol,
    BytesClf,
    Bytes,
    Referer,
    Agent,
    Secs,
    Millis,
    Micros,
    DecimalSecs,
    Pid,
    ReqHeader(String),
    RespHeader(String),
    Env(String),
}

/// A parsed `access_log_format`.
#[derive(Debug, Clone)]
pub struct Format(Vec<Atom>);

impl Format {
    /// Parse `%(NAME)s` placeholders; anything else is literal text.
    pub fn parse(fmt: &str) -> Result<Format, String> {
        let mut atoms = Vec::new();
        let mut lit = String::new();
        let mut rest = fmt;
        while let Some(i) = rest.find("%(") {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after
                .find(")s")
                .ok_or_else(|| format!("unterminated placeholder at '{}'", &rest[i..]))?;
            let name = &after[..end];
            let atom = match name {
                "h" => Atom::Remote,
                "l" => Atom::Dash,
                "u" => Atom::User,
                "t" => Atom::Time,
                "r" => Atom::RequestLine,
                "s" => Atom::Status,
                "m" => Atom::Method,
                "U" => Atom::Path,
                "q" => Atom::Query,
                "H" => Atom::Protocol,
                "b" => Atom::BytesClf,
                "B" => Atom::Bytes,
                "f" => Atom::Referer,
                "a" => Atom::Agent,
                "T" => Atom::Secs,
                "M" => Atom::Millis,
                "D" => Atom::Micros,
                "L" => Atom::DecimalSecs,
                "p" => Atom::Pid,
                n if n.starts_with('{') && n.ends_with("}i") => {
                    Atom::ReqHeader(n[1..n.len() - 2].to_ascii_lowercase())
                }
                n if n.starts_with('{') && n.ends_with("}o") => {
                    Atom::RespHeader(n[1..n.len() - 2].to_ascii_lowercase())
                }
                n if n.starts_with('{') && n.ends_with("}e") => {
                    Atom::Env(n[1..n.len() - 2].to_string())
                }
                other => return Err(format!("unknown atom '%({other})s'")),
            };
            if !lit.is_empty() {
                atoms.push(Atom::Lit(std::mem::take(&mut lit)));
            }
            atoms.push(atom);
            rest = &after[end + 2..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            atoms.push(Atom::Lit(lit));
        }
        Ok(Format(atoms))
    }
}

/// What one access-log line describes.
pub struct Record<'a> {
    pub remote: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub minor_version: u8,
    pub req_headers: &'a [(String, String)],
    pub status: u16,
    pub resp_headers: &'a [(String, String)],
    pub body_bytes: u64,
    pub duration: Duration,
}

fn header<'a>(headers: &'a [(String, String)], lname: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(lname))
        .map(|(_, v)| v.as_str())
}

fn basic_user(headers: &[(String, String)]) -> Option<String> {
    let v = header(headers, "authorization")?;
    let (scheme, token) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(token.trim())?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    Some(
        text.split_once(':')
            .map(|(u, _)| u.to_string())
            .unwrap_or(text),
    )
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl Format {
    pub fn render(&self, r: &Record<'_>) -> String {
        let mut out = String::with_capacity(160);
        self.render_into(r, &mut out);
        out
    }

    /// Append the line for `r` (with its newline) to `out`.
    pub fn render_into(&self, r: &Record<'_>, out: &mut String) {
        let or_dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_string();
        let proto = if r.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        for atom in &self.0 {
            match atom {
                Atom::Lit(s) => out.push_str(s),
                Atom::Remote => out.push_str(if r.remote.is_empty() { "-" } else { r.remote }),
                Atom::Dash => out.push('-'),
                Atom::User => {
                    out.push_str(&basic_user(r.req_headers).unwrap_or_else(|| "-".into()))
                }
                Atom::Time => out.push_str(&timefmt::clf_timestamp(timefmt::unix_now())),
                Atom::RequestLine => {
                    out.push_str(r.method);
                    out.push(' ');
                    out.push_str(r.target);
                    out.push(' ');
                    out.push_str(proto);
                }
                Atom::Status => out.push_str(&r.status.to_string()),
                Atom::Method => out.push_str(r.method),
                Atom::Path => out.push_str(r.path),
                Atom::Query => out.push_str(r.query),
                Atom::Protocol => out.push_str(proto),
                // gunicorn writes the count for both, 0 included (an empty
                // body, HEAD, 304), never CLF's "-".
                Atom::BytesClf | Atom::Bytes => out.push_str(&r.body_bytes.to_string()),
                Atom::Referer => out.push_str(&or_dash(header(r.req_headers, "referer"))),
                Atom::Agent => out.push_str(&or_dash(header(r.req_headers, "user-agent"))),
                Atom::Secs => out.push_str(&r.duration.as_secs().to_string()),
                Atom::Millis => out.push_str(&r.duration.as_millis().to_string()),
                Atom::Micros => out.push_str(&r.duration.as_micros().to_string()),
                Atom::DecimalSecs => out.push_str(&format!("{:.6}", r.duration.as_secs_f64())),
                Atom::Pid => out.push_str(&format!("<{}>", std::process::id())),
                Atom::ReqHeader(h) => out.push_str(&or_dash(header(r.req_headers, h))),
                Atom::RespHeader(h) => out.push_str(&or_dash(header(r.resp_headers, h))),
                Atom::Env(k) => out.push_str(&or_dash(std::env::var(k).ok().as_deref())),
            }
        }
        out.push('\n');
    }
}

enum Sink {
    Stdout,
    File(File),
}

#[derive(Debug, Error)]
pub enum AccessLogError {
    #[error("cannot open the access log {path}: {source}")]
    Open { path: String, source: io::Error },
}

/// Open the access log once (append, creating it) and close it again: the
/// master's check before forking, so that a path the workers could not
/// open stops ferrocorn at once, naming the path.
pub fn check(path: &str) -> Result<(), AccessLogError> {
    AccessLog::open_sink(path)
        .map(drop)
        .map_err(|source| AccessLogError::Open {
            path: path.to_string(),
            source,
        })
}

/// A worker's access log.
pub struct AccessLog {
    path: String,
    sink: Sink,
    format: Format,
    /// The line being written (kept to reuse its allocation).
    line: String,
}

impl AccessLog {
    pub fn open(path: &str, format: Format) -> io::Result<AccessLog> {
        let sink = Self::open_sink(path).map_err(|source| {
            let kind = source.kind();
            io::Error::new(
                kind,
                AccessLogError::Open {
                    path: path.to_string(),
                    source,
                },
            )
        })?;
        Ok(AccessLog {
            path: path.to_string(),
            sink,
            format,
            line: String::with_capacity(256),
        })
    }

    fn open_sink(path: &str) -> io::Result<Sink> {
        Ok(if path == "-" {
            Sink::Stdout
        } else {
            Sink::File(OpenOptions::new().create(true).append(true).open(path)?)
        })
    }

    /// Write one line now.
    pub fn log(&mut self, r: &Record<'_>) {
        self.line.clear();
        self.format.render_into(r, &mut self.line);
        let _ = match &self.sink {
            // Straight to descriptor 1, past Rust's stdout buffer: the line
            // must be out before anything else can happen to the worker.
            Sink::Stdout => write_fd(std::os::fd::AsFd::as_fd(&io::stdout()), &self.line),
            Sink::File(f) => write_fd(std::os::fd::AsFd::as_fd(f), &self.line),
        };
    }

    /// USR1: continue in a fresh file at the same path.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.sink = Self::open_sink(&self.path)?;
        Ok(())
    }
}

/// Write `text` with as few write(2) calls as the kernel allows (one, for
/// a line to a file or a pipe).
fn write_fd(fd: std::os::fd::BorrowedFd<'_>, text: &str) -> io::Result<()> {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(req: &'a [(String, String)], resp: &'a [(String, String)]) -> Record<'a> {
        Record {
            remote: "10.1.2.3",
            method: "GET",
            target: "/p?x=1",
            path: "/p",
            query: "x=1",
            minor_version: 1,
            req_headers: req,
            status: 200,
            resp_headers: resp,
            body_bytes: 42,
            duration: Duration::from_micros(1500),
        }
    }

    #[test]
    fn default_format_matches_gunicorn_shape() {
        let req = vec![("User-Agent".to_string(), "curl/8".to_string())];
        let line = Format::parse(DEFAULT_FORMAT)
            .unwrap()
            .render(&rec(&req, &[]));
        assert!(line.starts_with("10.1.2.3 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /p?x=1 HTTP/1.1\" 200 42 \"-\" \"curl/8\"\n"),
            "{line}"
        );
    }

    #[test]
    fn every_atom() {
        let req = vec![
            (
                "Authorization".to_string(),
                "Basic dXNlcjpwYXNz".to_string(),
            ),
            ("X-Req".to_string(), "rq".to_string()),
            ("Referer".to_string(), "http://r/".to_string()),
        ];
        let resp = vec![("X-Resp".to_string(), "rs".to_string())];
        std::env::set_var("FERROCORN_TEST_ATOM", "ev");
        let f = Format::parse("%(u)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(f)s|%(T)s|%(M)s|%(D)s|%(L)s|%({x-req}i)s|%({x-resp}o)s|%({FERROCORN_TEST_ATOM}e)s|%({missing}i)s").unwrap();
        let line = f.render(&rec(&req, &resp));
        assert_eq!(
            line,
            "user|GET|/p|x=1|HTTP/1.1|200|42|http://r/|0|1|1500|0.001500|rq|rs|ev|-\n"
        );
        assert!(Format::parse("%(zz)s").is_err());
        assert!(Format::parse("%(h").is_err());
    }
}
