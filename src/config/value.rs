//! Setting values: how each value type (switch, integer, seconds, string,
//! optional string, list) reads itself from a command-line string and from
//! TOML, and prints itself back as TOML. The settings table in
//! `settings.rs` picks the implementation by the field's type.

/// How a setting's value is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A switch: `--preload`.
    Flag,
    /// One value; the last one given wins.
    One,
    /// Repeatable: `-b A -b B`.
    Many,
}

/// A value a setting can hold. Each type knows how to read itself from a
/// command-line string and from TOML, and how to print itself as TOML.
pub trait SettingValue: Sized {
    const ARITY: Arity = Arity::One;
    fn parse_str(s: &str) -> Result<Self, String>;
    fn from_toml(v: &toml::Value) -> Result<Self, String>;
    fn to_toml(&self) -> Option<String>;
    /// Command-line values of one level (file, env or argv) for this setting.
    fn from_cli(values: Vec<String>) -> Result<Self, (String, String)> {
        let last = values.into_iter().last().unwrap_or_default();
        Self::parse_str(&last).map_err(|e| (last, e))
    }
}

impl SettingValue for bool {
    const ARITY: Arity = Arity::Flag;
    fn parse_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| "expected a boolean".into())
    }
    fn to_toml(&self) -> Option<String> {
        Some(self.to_string())
    }
}

macro_rules! int_setting {
    ($t:ty, $what:literal) => {
        impl SettingValue for $t {
            fn parse_str(s: &str) -> Result<Self, String> {
                s.trim()
                    .parse::<$t>()
                    .map_err(|_| concat!("expected ", $what).into())
            }
            fn from_toml(v: &toml::Value) -> Result<Self, String> {
                v.as_integer()
                    .and_then(|i| <$t>::try_from(i).ok())
                    .ok_or_else(|| concat!("expected ", $what).into())
            }
            fn to_toml(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    };
}
int_setting!(u32, "a non-negative integer");
int_setting!(u64, "a non-negative integer");
int_setting!(i32, "an integer");

impl SettingValue for f64 {
    fn parse_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err("expected a non-negative number of seconds".into()),
        }
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let f = v
            .as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .ok_or_else(|| "expected a number".to_string())?;
        if f.is_finite() && f >= 0.0 {
            Ok(f)
        } else {
            Err("expected a non-negative number".into())
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(if self.fract() == 0.0 {
            format!("{self:.0}")
        } else {
            self.to_string()
        })
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl SettingValue for String {
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| "expected a string".into())
    }
    fn to_toml(&self) -> Option<String> {
        Some(toml_str(self))
    }
}

impl SettingValue for Option<String> {
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(if s.is_empty() {
            None
        } else {
            Some(s.to_string())
        })
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        String::from_toml(v).map(|s| if s.is_empty() { None } else { Some(s) })
    }
    fn to_toml(&self) -> Option<String> {
        self.as_deref().map(toml_str)
    }
}

impl SettingValue for Vec<String> {
    const ARITY: Arity = Arity::Many;
    fn parse_str(s: &str) -> Result<Self, String> {
        Ok(s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => Ok(vec![s.clone()]),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "expected an array of strings".to_string())
                })
                .collect(),
            _ => Err("expected a string or an array of strings".into()),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(format!(
            "[{}]",
            self.iter()
                .map(|s| toml_str(s))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
    fn from_cli(values: Vec<String>) -> Result<Self, (String, String)> {
        Ok(values)
    }
}

/// A setting that is on by default and whose flag turns it off (gunicorn's
/// `--no-sendfile` is `sendfile = false` in a config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled(pub bool);

impl SettingValue for Enabled {
    const ARITY: Arity = Arity::Flag;
    fn parse_str(s: &str) -> Result<Self, String> {
        bool::parse_str(s).map(Enabled)
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        bool::from_toml(v).map(Enabled)
    }
    fn to_toml(&self) -> Option<String> {
        self.0.to_toml()
    }
    /// Giving the flag is what switches the setting off.
    fn from_cli(values: Vec<String>) -> Result<Self, (String, String)> {
        let last = values.into_iter().last().unwrap_or_default();
        match bool::parse_str(&last) {
            Ok(given) => Ok(Enabled(!given)),
            Err(e) => Err((last, e)),
        }
    }
}

/// File permission bits (`--control-socket-mode`): octal with a leading
/// `0` or `0o` on the command line or as a TOML string, as gunicorn reads
/// it (`0660`, `0o660`; `432` is decimal), or a TOML integer (`0o660`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl SettingValue for Mode {
    fn parse_str(s: &str) -> Result<Self, String> {
        super::validate::parse_umask(s)
            .map(Mode)
            .map_err(|_| "expected permission bits such as 0600, 0o660 or 384".into())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => Mode::parse_str(s),
            toml::Value::Integer(i) => match u32::try_from(*i) {
                Ok(m) if m <= 0o777 => Ok(Mode(m)),
                _ => Err("expected permission bits no larger than 0o777".into()),
            },
            _ => Err("expected permission bits such as 0o600".into()),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(format!("0o{:o}", self.0))
    }
}

/// A table of string to string, in the order given (gunicorn's dict
/// settings, e.g. `secure_scheme_headers`): a TOML inline table, or
/// `NAME=VALUE,NAME=VALUE` as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StrMap(pub Vec<(String, String)>);

impl StrMap {
    pub fn of(pairs: &[(&str, &str)]) -> StrMap {
        StrMap(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl SettingValue for StrMap {
    fn parse_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    out.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => return Err("expected NAME=VALUE pairs separated by commas".into()),
            }
        }
        Ok(StrMap(out))
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let t = v
            .as_table()
            .ok_or_else(|| "expected a table of strings, e.g. { NAME = \"value\" }".to_string())?;
        t.iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(format!("expected a string value for '{k}'")),
            })
            .collect::<Result<_, _>>()
            .map(StrMap)
    }
    fn to_toml(&self) -> Option<String> {
        // Sorted, as a TOML table reads back, so printing is stable.
        let mut items: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
            .collect();
        items.sort();
        if items.is_empty() {
            return Some("{}".into());
        }
        Some(format!("{{ {} }}", items.join(", ")))
    }
}

/// A nested dict setting (`logconfig_dict`): any JSON-like value, kept as
/// JSON; a TOML table in a TOML file, a dict in a Python one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonDict(pub serde_json::Map<String, serde_json::Value>);

impl JsonDict {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::from(*f),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// A JSON value as inline TOML (null, which TOML lacks, as "").
fn json_to_inline_toml(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "\"\"".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => toml_str(s),
        J::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(json_to_inline_toml)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        J::Object(m) => {
            if m.is_empty() {
                return "{}".into();
            }
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_str(k), json_to_inline_toml(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

impl SettingValue for JsonDict {
    fn parse_str(s: &str) -> Result<Self, String> {
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => Ok(JsonDict(m)),
            _ => Err("expected a JSON object".into()),
        }
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match toml_to_json(v) {
            serde_json::Value::Object(m) => Ok(JsonDict(m)),
            _ => Err("expected a table".into()),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(json_to_inline_toml(&serde_json::Value::Object(
            self.0.clone(),
        )))
    }
}

/// `proxy_protocol`: a mode name, or a boolean (gunicorn's older switch:
/// true is auto, false is off).
impl SettingValue for crate::proxy::Mode {
    fn parse_str(s: &str) -> Result<Self, String> {
        crate::proxy::Mode::parse(s).ok_or_else(|| "expected off, v1, v2 or auto".into())
    }
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Boolean(true) => Ok(crate::proxy::Mode::Auto),
            toml::Value::Boolean(false) => Ok(crate::proxy::Mode::Off),
            toml::Value::String(s) => Self::parse_str(s),
            _ => Err("expected off, v1, v2 or auto".into()),
        }
    }
    fn to_toml(&self) -> Option<String> {
        Some(toml_str(self.name()))
    }
}
