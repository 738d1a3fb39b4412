//! The command line: --version, --help, usage errors (exit 2, one line that
//! names the culprit), --print-config and setting precedence, and
//! --check-config.

mod common;

use std::fs;

use common::*;

fn apps() -> String {
    apps_dir().display().to_string()
}

/// Run in a fresh empty directory (so no ./ferrocorn.toml is picked up).
fn cli(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let dir = TempDir::new("cli");
    run_cli(args, env, dir.path())
}

/// Exit code 2, exactly one non-empty line on stderr that contains
/// `needle`, and no sign of a Rust panic.
fn assert_usage_error(out: &CliOutput, needle: &str) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        out.code(),
        Some(2),
        "exit status {:?}, stderr:\n{}",
        out.status,
        out.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{}",
        out.stderr
    );
    assert!(
        lines[0].contains(needle),
        "stderr does not name {needle:?}: {}",
        out.stderr
    );
    for bad in ["panicked", "RUST_BACKTRACE", "backtrace"] {
        assert!(!out.stderr.contains(bad), "{bad} on stderr: {}", out.stderr);
    }
}

#[test]
fn version() {
    let out = cli(&["--version"], &[]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "no version in {:?}",
        out.stdout
    );
    assert!(out.stdout.contains("ferrocorn"));
}

#[test]
fn help_mentions_the_flags() {
    let out = cli(&["--help"], &[]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for flag in ["--bind", "--limit-request-field_size", "--workers"] {
        assert!(out.stdout.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn unknown_option() {
    let out = cli(&["--no-such-option", "hello:app"], &[]);
    assert_usage_error(&out, "--no-such-option");
}

#[test]
fn workers_not_a_number() {
    let out = cli(&["--workers", "abc", "hello:app"], &[]);
    assert_usage_error(&out, "--workers");
    assert!(out.stderr.contains("abc"), "{}", out.stderr);
}

#[test]
fn bind_with_bad_port() {
    let out = cli(&["-b", "1.2.3.4:notaport", "hello:app"], &[]);
    assert_usage_error(&out, "1.2.3.4:notaport");
}

#[test]
fn config_file_with_unknown_key() {
    let dir = TempDir::new("conf");
    let conf = dir.join("bad.toml");
    fs::write(&conf, "workers = 2\nbogus_setting_name = 1\n").unwrap();
    let out = run_cli(
        &["-c", conf.to_str().unwrap(), "hello:app"],
        &[],
        dir.path(),
    );
    assert_usage_error(&out, "bogus_setting_name");
}

#[test]
fn no_app_module() {
    let out = cli(&["-w", "2"], &[]);
    assert_eq!(out.code(), Some(2), "stderr: {}", out.stderr);
    assert!(!out.stderr.trim().is_empty());
    assert!(!out.stderr.contains("panicked"));
}

fn setting(out: &CliOutput, name: &str) -> Option<String> {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")).map(str::to_string))
}

#[test]
fn print_config_shows_resolved_values() {
    let out = cli(
        &[
            "--print-config",
            "-w",
            "2",
            "-b",
            "127.0.0.1:9999",
            "--limit-request-line",
            "123",
            "--limit-request-field_size",
            "456",
            "hello:app",
        ],
        &[],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        setting(&out, "workers").as_deref(),
        Some("2"),
        "{}",
        out.stdout
    );
    assert_eq!(
        setting(&out, "bind").as_deref(),
        Some(r#"["127.0.0.1:9999"]"#),
        "{}",
        out.stdout
    );
    assert_eq!(setting(&out, "limit_request_line").as_deref(), Some("123"));
    assert_eq!(
        setting(&out, "limit_request_field_size").as_deref(),
        Some("456")
    );
    assert_eq!(
        setting(&out, "wsgi_app").as_deref(),
        Some(r#""hello:app""#),
        "{}",
        out.stdout
    );
    // Defaults are shown too.
    assert_eq!(
        setting(&out, "limit_request_fields").as_deref(),
        Some("100")
    );
}

#[test]
fn precedence_file_env_argv() {
    let dir = TempDir::new("prec");
    let conf = dir.join("ferro.toml");
    fs::write(&conf, "workers = 3\n").unwrap();
    let c = conf.to_str().unwrap();
    let env = [("FERROCORN_CMD_ARGS", "--workers 4")];

    let out = run_cli(
        &["-c", c, "--print-config", "-w", "5", "hello:app"],
        &env,
        dir.path(),
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(setting(&out, "workers").as_deref(), Some("5"), "argv wins");

    let out = run_cli(&["-c", c, "--print-config", "hello:app"], &env, dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        setting(&out, "workers").as_deref(),
        Some("4"),
        "FERROCORN_CMD_ARGS beats the file"
    );

    let out = run_cli(&["-c", c, "--print-config", "hello:app"], &[], dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(setting(&out, "workers").as_deref(), Some("3"), "the file");
}

#[test]
fn check_config_with_a_good_app() {
    let a = apps();
    let out = cli(&["--chdir", &a, "--check-config", "hello:app"], &[]);
    assert_eq!(
        out.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn check_config_with_an_import_error() {
    let a = apps();
    let out = cli(&["--chdir", &a, "--check-config", "importerr:app"], &[]);
    assert_eq!(
        out.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("deliberately broken"),
        "the import error is not shown: {}",
        out.stderr
    );
}
