//! gunicorn's settings, all known: every setting round-trips through
//! `--print-config`, every flag is accepted at its default (or refused with
//! one line naming it, never clap's unknown-argument error), and the
//! levels apply in order (default < file < GUNICORN_CMD_ARGS <
//! FERROCORN_CMD_ARGS < command line).

mod common;

use std::fs;

use common::*;
use ferrocorn::config::{Arity, SETTINGS};

fn cli_in(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    run_cli(args, env, dir.path())
}

fn ok(out: &CliOutput) -> &str {
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    &out.stdout
}

/// Exit 2 and exactly one line on stderr, which names `needle`.
fn one_line_refusal(out: &CliOutput, needle: &str) {
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(out.code(), Some(2), "{needle}: stderr: {}", out.stderr);
    assert_eq!(lines.len(), 1, "{needle}: stderr: {}", out.stderr);
    assert!(lines[0].contains(needle), "{needle}: {}", lines[0]);
    for bad in ["unexpected argument", "unknown setting", "panicked"] {
        assert!(!lines[0].contains(bad), "{needle}: {}", lines[0]);
    }
}

#[test]
fn every_setting_round_trips_through_print_config() {
    let dir = TempDir::new("roundtrip");
    // Some values away from their defaults too, of each kind.
    let first = cli_in(
        &dir,
        &[
            "--print-config",
            "-w",
            "3",
            "-b",
            "127.0.0.1:9001",
            "-b",
            "unix:/tmp/x.sock",
            "--no-sendfile",
            "--header-map",
            "refuse",
            "--forwarded-allow-ips",
            "10.0.0.0/8,::1",
            "--forwarder-headers",
            "SCRIPT_NAME,X_CUSTOM",
            "-e",
            "A=b c",
            "--http-parser",
            "python",
            "hello:app",
        ],
        &[],
    );
    let text = ok(&first).to_string();
    let table: toml::Table = text.parse().expect("--print-config prints TOML");
    for def in SETTINGS.iter().filter(|d| !d.cli_only) {
        let listed =
            table.contains_key(def.name) || text.contains(&format!("# {} is not set\n", def.name));
        assert!(listed, "--print-config does not list {}", def.name);
    }
    assert_eq!(table["sendfile"].as_bool(), Some(false));
    assert_eq!(table["header_map"].as_str(), Some("refuse"));
    let conf = dir.join("printed.toml");
    fs::write(&conf, &text).unwrap();
    let second = cli_in(&dir, &["--print-config", "-c", conf.to_str().unwrap()], &[]);
    assert_eq!(
        ok(&second),
        text,
        "printing what was printed changes nothing"
    );
}

/// The value to give `def`'s flag so that it means the default, from the
/// default configuration as printed; `None` when no command-line value can
/// say "empty list".
fn default_args(def: &ferrocorn::config::SettingDef, printed: &toml::Table) -> Option<Vec<String>> {
    let flag = format!("--{}", def.long[0]);
    if def.arity == Arity::Flag {
        return Some(vec![flag]);
    }
    let Some(v) = printed.get(def.name) else {
        // Not set: an empty value is "not set".
        return Some(vec![flag, String::new()]);
    };
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        toml::Value::Array(items) if items.is_empty() => None,
        toml::Value::Array(items) => {
            Some(items.iter().flat_map(|i| [flag.clone(), one(i)]).collect())
        }
        other => Some(vec![flag, one(other)]),
    }
}

#[test]
fn every_flag_is_accepted_at_its_default_or_refused_in_one_line() {
    let dir = TempDir::new("flags");
    let baseline = cli_in(&dir, &["--print-config"], &[]);
    let base_text = ok(&baseline).to_string();
    let printed: toml::Table = base_text.parse().unwrap();
    let mut checked = 0;
    for def in SETTINGS
        .iter()
        .filter(|d| !d.long.is_empty() && !d.cli_only)
    {
        let Some(args) = default_args(def, &printed) else {
            continue;
        };
        let mut all: Vec<&str> = vec!["--print-config"];
        all.extend(args.iter().map(String::as_str));
        let out = cli_in(&dir, &all, &[]);
        let flag = format!("--{}", def.long[0]);
        if def.arity == Arity::Flag {
            // A switch may change the value: then it either works or is
            // refused with one line naming it.
            if out.code() == Some(0) {
                let t: toml::Table = out.stdout.parse().unwrap();
                assert!(t.contains_key(def.name), "{flag}");
            } else {
                one_line_refusal(&out, &flag);
                assert!(def.unsupported.is_some(), "{flag} refused: {}", out.stderr);
            }
        } else {
            assert_eq!(ok(&out), base_text, "{flag} at its default changes nothing");
        }
        // Every alias and the short form are flags too.
        for alias in def
            .long
            .iter()
            .skip(1)
            .map(|l| format!("--{l}"))
            .chain(def.short.map(|c| format!("-{c}")))
        {
            let mut a = args.clone();
            a[0] = alias.clone();
            let mut all: Vec<&str> = vec!["--print-config"];
            all.extend(a.iter().map(String::as_str));
            let out = cli_in(&dir, &all, &[]);
            assert!(
                !out.stderr.contains("unexpected argument"),
                "{alias}: {}",
                out.stderr
            );
        }
        checked += 1;
    }
    assert!(checked > 80, "only {checked} flags checked");
}

#[test]
fn refused_settings_name_themselves_and_say_why() {
    let dir = TempDir::new("refused");
    for (args, needle, why) in [
        (
            &["--cert-reqs", "5"][..],
            "--cert-reqs",
            "expected 0 (none), 1 (optional) or 2",
        ),
        (
            &["--http-protocols", "h2"],
            "--http-protocols",
            "HTTP/2 alone is not supported",
        ),
        (
            &["--http-protocols", "h1,h2"],
            "--http-protocols",
            "h2 needs TLS (--certfile, for ALPN) or --http2-cleartext",
        ),
        (
            &["--http-protocols", "h1,h3"],
            "--http-protocols",
            "h3 (HTTP/3) is not implemented",
        ),
        (
            &["--http2-cleartext", "upgrade"],
            "--http2-cleartext",
            "needs h2 in --http-protocols",
        ),
        (
            &["--http2-cleartext", "prior-knowledge"],
            "--http2-cleartext",
            "needs h2 in --http-protocols",
        ),
        (
            &["--http2-max-frame-size", "1000"],
            "--http2-max-frame-size",
            "must be between 16384 and 16777215",
        ),
        (
            &["--proxy-protocol", "v3"],
            "--proxy-protocol",
            "expected off, v1, v2 or auto",
        ),
        (
            &["--protocol", "fastcgi"],
            "--protocol",
            "expected http or uwsgi",
        ),
        (
            &["--proxy-allow-from", "10.0.0.1/8"],
            "--proxy-allow-from",
            "host bits",
        ),
        (
            &["--uwsgi-allow-from", "nginx"],
            "--uwsgi-allow-from",
            "expected an IP address",
        ),
        (
            &["--statsd-host", "localhost:port"],
            "--statsd-host",
            "not a valid port number",
        ),
        (
            &["--control-socket-mode", "0999"],
            "--control-socket-mode",
            "permission bits",
        ),
        (
            &["--asgi-loop", "tokio"],
            "--asgi-loop",
            "expected auto, asyncio or uvloop",
        ),
        (
            &["--dirty-workers", "2"],
            "--dirty-workers",
            "no dirty-arbiter pool",
        ),
        (
            &["--worker-tmp-dir", "/dev/shm"],
            "--worker-tmp-dir",
            "heartbeat",
        ),
    ] {
        let mut all = vec!["--print-config"];
        all.extend_from_slice(args);
        let out = cli_in(&dir, &all, &[]);
        one_line_refusal(&out, needle);
        assert!(out.stderr.contains(why), "{needle}: {}", out.stderr);
    }
    // A config-file-only setting is named by its key.
    let conf = dir.join("hooks.toml");
    fs::write(&conf, "dirty_post_fork = \"mod.fn\"\n").unwrap();
    let out = cli_in(&dir, &["--print-config", "-c", conf.to_str().unwrap()], &[]);
    one_line_refusal(&out, "dirty_post_fork");
    assert!(out.stderr.contains("dirty-arbiter"), "{}", out.stderr);
}

fn value(out: &CliOutput, name: &str) -> Option<String> {
    let t: toml::Table = ok(out).parse().unwrap();
    t.get(name).map(|v| v.to_string())
}

#[test]
fn gunicorn_cmd_args_sits_between_the_file_and_ferrocorn_cmd_args() {
    let dir = TempDir::new("gcmd");
    let conf = dir.join("f.toml");
    fs::write(&conf, "workers = 2\nbacklog = 100\ntimeout = 7\n").unwrap();
    let c = conf.to_str().unwrap();
    let both = [
        (
            "GUNICORN_CMD_ARGS",
            "--workers 3 --backlog 300 --max-requests 9",
        ),
        ("FERROCORN_CMD_ARGS", "--workers 4"),
    ];
    let out = cli_in(&dir, &["--print-config", "-c", c], &both);
    // file < GUNICORN_CMD_ARGS < FERROCORN_CMD_ARGS
    assert_eq!(value(&out, "workers").as_deref(), Some("4"));
    assert_eq!(value(&out, "backlog").as_deref(), Some("300"));
    assert_eq!(value(&out, "timeout").as_deref(), Some("7"));
    assert_eq!(value(&out, "max_requests").as_deref(), Some("9"));
    // ... < command line
    let out = cli_in(
        &dir,
        &["--print-config", "-c", c, "-w", "5", "--backlog", "500"],
        &both,
    );
    assert_eq!(value(&out, "workers").as_deref(), Some("5"));
    assert_eq!(value(&out, "backlog").as_deref(), Some("500"));
    // default < GUNICORN_CMD_ARGS alone, split as a shell would.
    let out = cli_in(
        &dir,
        &["--print-config"],
        &[(
            "GUNICORN_CMD_ARGS",
            "-e 'A=b c' --bind=127.0.0.1:9123 --log-level warning",
        )],
    );
    assert_eq!(value(&out, "raw_env").as_deref(), Some(r#"["A=b c"]"#));
    assert_eq!(
        value(&out, "bind").as_deref(),
        Some(r#"["127.0.0.1:9123"]"#)
    );
    assert_eq!(value(&out, "loglevel").as_deref(), Some(r#""warning""#));
    // GUNICORN_CMD_ARGS can name the config file, as in gunicorn.
    let out = cli_in(
        &dir,
        &["--print-config"],
        &[("GUNICORN_CMD_ARGS", &format!("-c {c}"))],
    );
    assert_eq!(value(&out, "timeout").as_deref(), Some("7"));
}

#[test]
fn bad_gunicorn_cmd_args_are_one_line_naming_the_variable() {
    let dir = TempDir::new("gbad");
    let out = cli_in(
        &dir,
        &["--print-config"],
        &[("GUNICORN_CMD_ARGS", "--no-such-flag")],
    );
    // A flag gunicorn does not have either is still a usage error.
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("GUNICORN_CMD_ARGS: "), "{}", out.stderr);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
    let out = cli_in(
        &dir,
        &["--print-config"],
        &[("GUNICORN_CMD_ARGS", "-e 'open")],
    );
    one_line_refusal(&out, "GUNICORN_CMD_ARGS");
    let out = cli_in(
        &dir,
        &["--print-config"],
        &[("GUNICORN_CMD_ARGS", "--workers x")],
    );
    one_line_refusal(&out, "GUNICORN_CMD_ARGS: invalid value 'x' for --workers");
}

/// `-D` with and without `-R`: whether what the daemon writes to stderr
/// (the error log, `-` by default) still reaches the file the shell
/// redirected stderr to.
fn daemon_stderr(inherit: bool) -> String {
    use std::process::Stdio;
    use std::time::Duration;
    let dir = TempDir::new(if inherit { "stdio-r" } else { "stdio" });
    let pidf = dir.join("d.pid");
    let errf = dir.join("stderr.txt");
    let apps = apps_dir();
    let mut cmd = ferrocorn_command();
    cmd.args(["-D", "-p", pidf.to_str().unwrap(), "-b", "127.0.0.1:0"])
        .args(["--chdir", apps.to_str().unwrap(), "-w", "1"]);
    if inherit {
        cmd.arg("-R");
    }
    cmd.arg("hello:app")
        .current_dir(dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&errf).unwrap()));
    let status = cmd.status().unwrap();
    assert!(status.success(), "ferrocorn -D: {status:?}");
    let mut master = 0;
    wait_until(Duration::from_secs(20), || {
        master = fs::read_to_string(&pidf)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        master > 0
    });
    assert!(master > 0, "no pidfile");
    // The worker's boot line is written after the daemon detached.
    wait_until(Duration::from_secs(if inherit { 20 } else { 2 }), || {
        fs::read_to_string(&errf)
            .unwrap_or_default()
            .contains("Booting worker")
    });
    kill(master, libc::SIGTERM);
    wait_until(Duration::from_secs(20), || !alive(master));
    fs::read_to_string(&errf).unwrap_or_default()
}

#[test]
fn enable_stdio_inheritance_keeps_a_daemons_stderr() {
    assert!(
        daemon_stderr(true).contains("Booting worker"),
        "-R: the daemon's stderr did not reach the redirected file"
    );
    assert!(
        !daemon_stderr(false).contains("Booting worker"),
        "without -R a daemon's stderr goes to /dev/null"
    );
}

fn title(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_string()
}

#[test]
fn default_proc_name_names_processes_unless_the_app_is_positional() {
    let dir = TempDir::new("pname");
    let conf = dir.join("c.toml");
    fs::write(
        &conf,
        "wsgi_app = \"hello:app\"\ndefault_proc_name = \"shop\"\n",
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    // The app from the config file: default_proc_name is the name.
    let s = Server::start(&["-c", c]);
    assert_eq!(title(s.pid), "ferrocorn: master [shop]");
    drop(s);
    // A positional APP_MODULE replaces it, as in gunicorn; -n beats both.
    let s = Server::start(&["-c", c, "hello:app"]);
    assert_eq!(title(s.pid), "ferrocorn: master [hello:app]");
    drop(s);
    let s = Server::start(&["-c", c, "-n", "front", "hello:app"]);
    assert_eq!(title(s.pid), "ferrocorn: master [front]");
}

#[test]
fn http_parser_and_tmp_upload_dir_say_once_what_they_do() {
    let dir = TempDir::new("parser");
    let conf = dir.join("c.toml");
    fs::write(
        &conf,
        "http_parser = \"python\"\ntmp_upload_dir = \"/tmp\"\n",
    )
    .unwrap();
    let s = Server::start(&["-c", conf.to_str().unwrap(), "hello:app"]);
    let log = s.log();
    let info: Vec<&str> = log.lines().filter(|l| l.contains("http_parser")).collect();
    assert_eq!(info.len(), 1, "{log}");
    assert!(
        info[0].contains("[INFO]") && info[0].contains("its own HTTP parser"),
        "{log}"
    );
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tmp_upload_dir"))
        .collect();
    assert_eq!(warn.len(), 1, "{log}");
    assert!(
        warn[0].contains("[WARNING]") && warn[0].contains("no effect"),
        "{log}"
    );
    drop(s);
    // At their defaults, nothing is said.
    let s = Server::start(&["hello:app"]);
    assert!(!s.log().contains("http_parser") && !s.log().contains("tmp_upload_dir"));
}
