//! Python's `%`-formatting of one value, as `str % mapping` does it for the
//! access log: the conversion spec (`%(key)-8s`, `%(B)05d`, `%(r)r`), the
//! values the log's atoms can hold, and `repr()`/`ascii()` of a string.
//! gunicorn formats its access-log line this way, so widths, flags and
//! conversions behave as they do there.

use std::borrow::Cow;
use std::fmt::Write;

/// A value an access-log atom holds (what the Python object would be in
/// gunicorn's atoms dict).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A `str`.
    Str(Cow<'a, str>),
    /// An `int`.
    Int(i64),
    /// A `float`, with Python's `str()` of it.
    Float(f64, String),
    /// Any other object (from the WSGI environ): its `str()`, its `repr()`,
    /// and its value when it is an integral number (`bool`, a big `int`).
    Obj {
        text: String,
        repr: String,
        int: Option<i64>,
    },
}

impl<'a> Value<'a> {
    /// Python's `None`.
    pub fn none() -> Value<'a> {
        Value::Obj {
            text: "None".into(),
            repr: "None".into(),
            int: None,
        }
    }

    /// `str()` of the value.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Float(_, t) => Cow::Borrowed(t),
            Value::Obj { text, .. } => Cow::Borrowed(text),
        }
    }

    fn repr(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Owned(repr_str(s, false)),
            Value::Obj { repr, .. } => Cow::Borrowed(repr),
            _ => self.text(),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f, _) => Some(*f),
            Value::Obj { int: Some(i), .. } => Some(*i as f64),
            _ => None,
        }
    }

    fn integer(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Obj { int: Some(i), .. } => Some(*i),
            _ => None,
        }
    }
}

/// One conversion: `%` flags, width, precision and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spec {
    pub left: bool,
    pub zero: bool,
    pub plus: bool,
    pub space: bool,
    pub alt: bool,
    pub width: usize,
    pub precision: Option<usize>,
    pub conv: u8,
}

impl Spec {
    /// Whether the conversion wants a number (`d`, `x`, `f`, ...).
    pub fn numeric(&self) -> bool {
        b"diouxXeEfFgGc".contains(&self.conv)
    }

    /// Parse what follows `%(key)` in `s` (flags, width, precision, an
    /// ignored length modifier and the type). Returns the spec and the
    /// bytes it used.
    pub fn parse(s: &str) -> Result<(Spec, usize), String> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut spec = Spec::default();
        while i < b.len() {
            match b[i] {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alt = true,
                _ => break,
            }
            i += 1;
        }
        let digits = |i: &mut usize| {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            s[start..*i].parse::<usize>().ok()
        };
        if b.get(i) == Some(&b'*') {
            return Err("'*' widths need positional arguments; give a number".into());
        }
        spec.width = digits(&mut i).unwrap_or(0);
        if b.get(i) == Some(&b'.') {
            i += 1;
            if b.get(i) == Some(&b'*') {
                return Err("'*' precisions need positional arguments; give a number".into());
            }
            spec.precision = Some(digits(&mut i).unwrap_or(0));
        }
        if spec.width > 4096 || spec.precision.is_some_and(|p| p > 4096) {
            return Err("width or precision over 4096".into());
        }
        while matches!(b.get(i), Some(b'h' | b'l' | b'L')) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Err("incomplete format".into());
        };
        if !b"diouxXeEfFgGcrsa".contains(&c) {
            let ch = s[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "unsupported format character '{ch}' (0x{:x})",
                ch as u32
            ));
        }
        spec.conv = c;
        Ok((spec, i + 1))
    }

    /// Append `v` formatted by this spec to `out`.
    pub fn format(&self, v: &Value<'_>, out: &mut String) {
        if self.conv == b's' && self.width == 0 && self.precision.is_none() {
            match v {
                Value::Str(s) => out.push_str(s),
                Value::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                _ => out.push_str(&v.text()),
            }
            return;
        }
        let body: Cow<'_, str> = match self.conv {
            b's' | b'r' | b'a' => {
                let t = match self.conv {
                    b's' => v.text(),
                    b'r' => v.repr(),
                    _ => Cow::Owned(ascii_of(&v.repr())),
                };
                match self.precision {
                    Some(p) if t.chars().count() > p => Cow::Owned(t.chars().take(p).collect()),
                    _ => t,
                }
            }
            // A number that is not one (a header, the status, `-`) is
            // printed as text: gunicorn would fail to log the line.
            b'd' | b'i' | b'u' => match v.number() {
                Some(n) => {
                    return self.pad_number(int_digits(n.trunc() as i64, self), n < 0.0, out)
                }
                None => self.text_fallback(v),
            },
            b'o' | b'x' | b'X' => match v.integer() {
                Some(n) => return self.pad_number(int_digits(n, self), n < 0, out),
                None => self.text_fallback(v),
            },
            b'c' => match (v.integer(), v) {
                (Some(n), _) => Cow::Owned(
                    char::from_u32(n as u32)
                        .map(String::from)
                        .unwrap_or_default(),
                ),
                (None, Value::Str(s)) if s.chars().count() == 1 => Cow::Borrowed(s.as_ref()),
                _ => self.text_fallback(v),
            },
            _ => match v.number() {
                Some(n) => {
                    let digits = float_digits(n.abs(), self);
                    return self.pad_number(digits, n.is_sign_negative() && n != 0.0, out);
                }
                None => self.text_fallback(v),
            },
        };
        self.pad_text(&body, out);
    }

    fn text_fallback<'v>(&self, v: &'v Value<'_>) -> Cow<'v, str> {
        v.text()
    }

    fn pad_text(&self, text: &str, out: &mut String) {
        let n = text.chars().count();
        let fill = self.width.saturating_sub(n);
        if !self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
        out.push_str(text);
        if self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
    }

    /// `digits` is the magnitude, with any `0x`/`0o` prefix.
    fn pad_number(&self, digits: String, negative: bool, out: &mut String) {
        let sign = if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        let (prefix, digits) = if self.alt && matches!(self.conv, b'o' | b'x' | b'X') {
            digits.split_at(2)
        } else {
            ("", digits.as_str())
        };
        let len = sign.len() + prefix.len() + digits.len();
        let fill = self.width.saturating_sub(len);
        // Python pads with zeros after the sign for every number, "nan" and
        // "inf" included.
        if self.left {
            out.push_str(sign);
            out.push_str(prefix);
            out.push_str(digits);
            out.extend(std::iter::repeat_n(' ', fill));
        } else if self.zero {
            out.push_str(sign);
            out.push_str(prefix);
            out.extend(std::iter::repeat_n('0', fill));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', fill));
            out.push_str(sign);
            out.push_str(prefix);
            out.push_str(digits);
        }
    }
}

/// The magnitude of an integer in the spec's base, zero-extended to its
/// precision, with the `#` prefix.
fn int_digits(n: i64, spec: &Spec) -> String {
    let m = n.unsigned_abs();
    let mut d = match spec.conv {
        b'o' => format!("{m:o}"),
        b'x' => format!("{m:x}"),
        b'X' => format!("{m:X}"),
        _ => m.to_string(),
    };
    if let Some(p) = spec.precision {
        if d.len() < p {
            d = "0".repeat(p - d.len()) + &d;
        }
    }
    if spec.alt {
        let prefix = match spec.conv {
            b'o' => "0o",
            b'x' => "0x",
            b'X' => "0X",
            _ => "",
        };
        d.insert_str(0, prefix);
    }
    d
}

/// `%e`, `%f` and `%g` of a non-negative number, as Python writes them.
fn float_digits(x: f64, spec: &Spec) -> String {
    let upper = spec.conv.is_ascii_uppercase();
    if x.is_nan() || x.is_infinite() {
        let s = if x.is_nan() { "nan" } else { "inf" };
        return if upper { s.to_uppercase() } else { s.into() };
    }
    let p = spec.precision.unwrap_or(6);
    let s = match spec.conv.to_ascii_lowercase() {
        b'f' => {
            let mut s = format!("{x:.p$}");
            if spec.alt && p == 0 {
                s.push('.');
            }
            s
        }
        b'e' => exp_form(x, p, spec.alt),
        _ => {
            let p = p.max(1);
            let e = exponent_of(x, p);
            let mut s = if (-4..p as i32).contains(&e) {
                format!("{x:.*}", (p as i32 - 1 - e) as usize)
            } else {
                exp_form(x, p - 1, spec.alt)
            };
            if !spec.alt {
                s = strip_zeros(&s);
            } else if !s.contains('.') && !s.contains('e') {
                s.push('.');
            }
            s
        }
    };
    if upper {
        s.to_uppercase()
    } else {
        s
    }
}

/// The decimal exponent `x` has when written with `p` significant digits.
fn exponent_of(x: f64, p: usize) -> i32 {
    if x == 0.0 {
        return 0;
    }
    let s = format!("{:.*e}", p - 1, x);
    s.rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0)
}

/// `1.500000e+03`: Rust's `{:e}` with Python's exponent (sign, two digits).
fn exp_form(x: f64, p: usize, alt: bool) -> String {
    let s = format!("{x:.p$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = exp.parse().unwrap_or(0);
    let dot = if alt && p == 0 { "." } else { "" };
    format!(
        "{mant}{dot}e{}{:02}",
        if e < 0 { '-' } else { '+' },
        e.unsigned_abs()
    )
}

/// `%g` without `#`: no trailing zeros after the point, nor a bare point.
fn strip_zeros(s: &str) -> String {
    let (mant, exp) = match s.find('e') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    format!("{mant}{exp}")
}

/// Whether Python's `str.isprintable()` holds for `c` (exact for Latin-1,
/// which is all a request can carry; close for the rest).
fn printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x100 {
        return (0x20..0x7f).contains(&u) || (0xa1..=0xff).contains(&u) && u != 0xad;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(u, 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
            | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
            | 0xe000..=0xf8ff | 0xf0000..)
        || (0xd800..=0xdfff).contains(&u))
}

/// Python's `repr()` of a `str` (`ascii()` when `ascii_only`).
pub fn repr_str(s: &str, ascii_only: bool) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if printable(c) && (!ascii_only || c.is_ascii()) => out.push(c),
            c => {
                let u = c as u32;
                let _ = if u < 0x100 {
                    write!(out, "\\x{u:02x}")
                } else if u < 0x10000 {
                    write!(out, "\\u{u:04x}")
                } else {
                    write!(out, "\\U{u:08x}")
                };
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `ascii()` from a `repr()`: what is not ASCII escaped.
fn ascii_of(repr: &str) -> String {
    let mut out = String::with_capacity(repr.len());
    for c in repr.chars() {
        let u = c as u32;
        let _ = match u {
            0..=0x7f => {
                out.push(c);
                Ok(())
            }
            0x80..=0xff => write!(out, "\\x{u:02x}"),
            0x100..=0xffff => write!(out, "\\u{u:04x}"),
            _ => write!(out, "\\U{u:08x}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(spec: &str, v: Value<'_>) -> String {
        let (s, used) = Spec::parse(spec).unwrap();
        assert_eq!(used, spec.len(), "{spec}");
        let mut out = String::new();
        s.format(&v, &mut out);
        out
    }

    fn st(s: &str) -> Value<'_> {
        Value::Str(Cow::Borrowed(s))
    }

    // Expected values are what CPython 3.11 prints for the same spec.
    #[test]
    fn strings() {
        assert_eq!(fmt("5s", st("200")), "  200");
        assert_eq!(fmt("-5s", st("200")), "200  ");
        assert_eq!(fmt(".2s", st("200")), "20");
        assert_eq!(fmt("r", st("a\tb")), "'a\\tb'");
        assert_eq!(fmt("r", st("it's")), "\"it's\"");
        assert_eq!(fmt("r", st("\\ 'q' \"d\"")), "'\\\\ \\'q\\' \"d\"'");
        assert_eq!(
            fmt("r", st("caf\u{e9} \u{ff}\u{80}")),
            "'caf\u{e9} \u{ff}\\x80'"
        );
        assert_eq!(fmt("a", st("caf\u{e9}\u{2603}")), "'caf\\xe9\\u2603'");
        assert_eq!(fmt("r", Value::Int(5)), "5");
        assert_eq!(fmt("8r", st("x")), "     'x'");
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt("d", Value::Int(42)), "42");
        assert_eq!(fmt("05d", Value::Int(-42)), "-0042");
        assert_eq!(fmt("+d", Value::Int(42)), "+42");
        assert_eq!(fmt("-6d", Value::Int(42)), "42    ");
        assert_eq!(fmt(".4d", Value::Int(42)), "0042");
        assert_eq!(fmt("#x", Value::Int(255)), "0xff");
        assert_eq!(fmt("#06X", Value::Int(255)), "0X00FF");
        assert_eq!(fmt("o", Value::Int(8)), "10");
        assert_eq!(fmt("ld", Value::Int(7)), "7");
        assert_eq!(fmt("f", Value::Int(1)), "1.000000");
        assert_eq!(fmt(".2f", Value::Int(0)), "0.00");
        assert_eq!(fmt("e", Value::Int(1500)), "1.500000e+03");
        assert_eq!(
            fmt(".1E", Value::Float(0.00012, "0.00012".into())),
            "1.2E-04"
        );
        assert_eq!(fmt("g", Value::Int(1500)), "1500");
        assert_eq!(fmt("g", Value::Int(12345678)), "1.23457e+07");
        assert_eq!(fmt("g", Value::Float(0.0001, "0.0001".into())), "0.0001");
        assert_eq!(fmt("g", Value::Float(0.00001, "1e-05".into())), "1e-05");
        assert_eq!(fmt("#g", Value::Int(1)), "1.00000");
        assert_eq!(fmt("d", Value::Float(2.9, "2.9".into())), "2");
        assert_eq!(fmt("c", Value::Int(65)), "A");
        let t = Value::Obj {
            text: "True".into(),
            repr: "True".into(),
            int: Some(1),
        };
        assert_eq!(fmt("d", t.clone()), "1");
        assert_eq!(fmt("s", t), "True");
    }

    #[test]
    fn text_where_a_number_is_wanted_prints_the_text() {
        assert_eq!(fmt("5d", st("200")), "  200");
        assert_eq!(fmt("x", st("-")), "-");
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(Spec::parse("").unwrap_err().contains("incomplete"));
        assert!(Spec::parse("y").unwrap_err().contains("'y' (0x79)"));
        assert!(Spec::parse("*d").is_err());
        assert!(Spec::parse("99999d").is_err());
    }
}
