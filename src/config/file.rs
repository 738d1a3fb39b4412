//! The TOML side of the configuration: loading a config file (its keys are
//! the setting names; an unknown key is an error) and `--print-config`,
//! which writes the resolved settings back in the same format.

use std::fmt::Write as _;
use std::path::Path;

use super::{ConfigError, Settings, SETTINGS};

/// Apply the keys of the TOML file at `path` over `settings`.
pub(super) fn load_file(settings: &mut Settings, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
    for (key, value) in &table {
        match settings.apply_toml(key, value) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key: key.clone(),
                })
            }
            Err(reason) => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    reason: format!("invalid value for '{key}': {reason}"),
                })
            }
        }
    }
    Ok(())
}

/// Apply one setting a Python config file set (`value` as Python gave it,
/// through JSON). As in gunicorn, a string or number is also taken where
/// it parses as the setting's type (`workers = "4"`).
pub(super) fn apply_python(
    settings: &mut Settings,
    spec: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::File {
        path: spec.into(),
        reason: format!("invalid value for '{key}': {reason}"),
    };
    let Some(v) = json_to_toml(value) else {
        return Ok(());
    };
    match settings.apply_toml(key, &v) {
        Ok(_) => Ok(()),
        Err(reason) => {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(invalid(reason)),
            };
            settings
                .apply_cli(key, vec![text])
                .map_err(|_| invalid(reason))
        }
    }
}

/// A JSON value as TOML (None for null, which TOML cannot hold).
fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        J::Object(m) => toml::Value::Table(
            m.iter()
                .filter_map(|(k, v)| json_to_toml(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
    })
}

impl Settings {
    /// The configuration as a TOML document, for `--print-config`.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        for (def, (name, value)) in SETTINGS.iter().zip(self.rendered()) {
            if def.cli_only {
                continue;
            }
            match value {
                Some(v) => {
                    let _ = writeln!(out, "{name} = {v}");
                }
                None => {
                    let _ = writeln!(out, "# {name} is not set");
                }
            }
        }
        out
    }

    /// `--print-config`: the settings, then the server hooks (Python
    /// callables, which only a Python config file sets), as comments.
    pub fn print_config_string(&self) -> String {
        let mut out = self.to_toml_string();
        out.push_str("# Server hooks (set in a Python config file):\n");
        for (hook, _) in crate::hooks::HOOKS {
            if crate::hooks::defines(hook) {
                let _ = writeln!(
                    out,
                    "# {hook} = defined in {}",
                    self.config.as_deref().unwrap_or("the config file")
                );
            } else {
                let _ = writeln!(out, "# {hook} is not set");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{no_env, run};

    #[test]
    fn print_config_is_valid_toml_with_known_keys() {
        let s = run(&["-w", "2", "m:app"]).unwrap();
        let text = s.to_toml_string();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["workers"].as_integer(), Some(2));
        let mut back = Settings::defaults(&no_env);
        for (k, v) in &table {
            assert!(back.apply_toml(k, v).unwrap(), "{k} round-trips");
        }
        assert_eq!(back.workers, 2);
    }
}
