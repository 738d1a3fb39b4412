//! The machinery behind the settings table: [`SettingDef`] (one setting's
//! documentation, read by `--help`, `--print-config`, the config file and
//! the generated docs) and the `settings!` macro, which turns the table in
//! `settings.rs` into the [`Settings`] struct, [`SETTINGS`] and the
//! per-key appliers used by `cli.rs` and `file.rs`. The table itself (one
//! definition per setting) lives in `settings.rs`.

use super::value::Arity;

/// The documentation of one setting, as shown by `--help`, the man page and
/// `--print-config`.
#[derive(Debug)]
pub struct SettingDef {
    /// TOML key (gunicorn's setting name).
    pub name: &'static str,
    pub section: &'static str,
    /// Long flags, first is canonical (without the leading dashes).
    pub long: &'static [&'static str],
    pub short: Option<char>,
    pub value_name: &'static str,
    pub default_doc: &'static str,
    pub help: &'static str,
    pub arity: Arity,
    /// `Some(reason)` while the setting is accepted only at its default.
    pub unsupported: Option<&'static str>,
    /// Only meaningful on the command line (not a TOML key).
    pub cli_only: bool,
    /// The value of a flag given without one (gunicorn's `nargs="?"`
    /// settings, e.g. `--proxy-protocol` alone means `auto`).
    pub missing: Option<&'static str>,
}

impl SettingDef {
    /// How errors name the setting: its canonical flag, or its TOML key
    /// for the settings gunicorn has no flag for.
    pub fn display_name(&self) -> String {
        display_name(self.long, self.name)
    }
}

/// `--flag`, or `name` when a setting has no flag.
pub(super) fn display_name(long: &[&str], name: &str) -> String {
    match long.first() {
        Some(l) => format!("--{l}"),
        None => name.to_string(),
    }
}

macro_rules! settings {
    ($envid:ident; $(
        $field:ident : $ty:ty = $default:expr ;
            section $section:literal,
            flags [$($long:literal),*] $(short $short:literal)?,
            meta $meta:literal,
            default_doc $ddoc:literal,
            $(unsupported $unsup:literal,)?
            $(cli_only $cli_only:literal,)?
            $(missing $missing:literal,)?
            help $help:literal ;
    )*) => {
        /// Every setting, resolved.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(pub $field: $ty,)*
            /// `bind`, parsed.
            pub binds: Vec<BindAddr>,
        }

        /// The single definition of every setting.
        pub static SETTINGS: &[SettingDef] = &[$(
            SettingDef {
                name: stringify!($field),
                section: $section,
                long: &[$($long),*],
                short: settings!(@short $($short)?),
                value_name: $meta,
                default_doc: $ddoc,
                help: $help,
                arity: <$ty as SettingValue>::ARITY,
                unsupported: settings!(@opt $($unsup)?),
                cli_only: settings!(@bool $($cli_only)?),
                missing: settings!(@opt $($missing)?),
            },
        )*];

        impl Settings {
            pub(super) fn defaults($envid: &dyn Fn(&str) -> Option<String>) -> Settings {
                Settings { $($field: $default,)* binds: Vec::new() }
            }

            /// Apply one TOML key; `Ok(false)` if the key is unknown.
            pub(super) fn apply_toml(&mut self, key: &str, v: &toml::Value) -> Result<bool, String> {
                match key {
                    $(stringify!($field) if !settings!(@bool $($cli_only)?) => {
                        self.$field = <$ty as SettingValue>::from_toml(v)?;
                        Ok(true)
                    })*
                    _ => Ok(false),
                }
            }

            /// Apply the values given for one setting at one command-line level.
            pub(super) fn apply_cli(&mut self, name: &str, values: Vec<String>) -> Result<(), ConfigError> {
                match name {
                    $(stringify!($field) => {
                        self.$field = <$ty as SettingValue>::from_cli(values).map_err(|(value, reason)| {
                            ConfigError::InvalidValue { setting: $crate::config::table::display_name(&[$($long),*], stringify!($field)), value, reason }
                        })?;
                        Ok(())
                    })*
                    _ => Ok(()),
                }
            }

            /// `(name, TOML value)` of every setting, in table order.
            pub fn rendered(&self) -> Vec<(&'static str, Option<String>)> {
                vec![$((stringify!($field), <$ty as SettingValue>::to_toml(&self.$field)),)*]
            }

            pub(super) fn is_default(&self, name: &str, env: &dyn Fn(&str) -> Option<String>) -> bool {
                let d = Settings::defaults(env);
                match name {
                    $(stringify!($field) => <$ty as SettingValue>::to_toml(&self.$field) == <$ty as SettingValue>::to_toml(&d.$field),)*
                    _ => true,
                }
            }
        }
    };
    (@short $s:literal) => { Some($s) };
    (@short) => { None };
    (@opt $s:literal) => { Some($s) };
    (@opt) => { None };
    (@bool $b:literal) => { $b };
    (@bool) => { false };
}

pub(super) use settings;
