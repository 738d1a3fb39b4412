//! Constant load: `Load` runs `bench/loadgen.py` against a port until the
//! test calls `finish`, and returns the generator's JSON summary.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::json::Json;
use super::procs::wait_until;
use super::{repo_dir, TempDir};

/// `bench/loadgen.py` running against a port until `finish`.
pub struct Load {
    child: Child,
    stop_file: PathBuf,
    _dir: TempDir,
}

impl Load {
    /// Start `clients` clients (half keep-alive, half a new connection per
    /// request) on `path`, plus `slow` clients on `slow_path`; returns once
    /// the load runs.
    pub fn start(port: u16, clients: usize, slow: usize, slow_path: &str) -> Load {
        let dir = TempDir::new("load");
        let stop_file = dir.join("stop");
        let started = dir.join("started");
        let child = Command::new("python3")
            .arg(repo_dir().join("bench/loadgen.py"))
            .args(["--url", &format!("http://127.0.0.1:{port}/")])
            .args(["--clients", &clients.to_string()])
            .args(["--slow-clients", &slow.to_string()])
            .args(["--slow-path", slow_path])
            .args(["--timeout", "20"])
            .arg("--until-file")
            .arg(&stop_file)
            .arg("--started-file")
            .arg(&started)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bench/loadgen.py");
        assert!(
            wait_until(Duration::from_secs(10), || started.exists()),
            "loadgen did not start"
        );
        Load {
            child,
            stop_file,
            _dir: dir,
        }
    }

    /// Stop the load, let requests in flight finish, and return the summary.
    pub fn finish(mut self) -> Json {
        fs::write(&self.stop_file, b"").expect("write the stop file");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("loadgen did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        Json::parse(out.trim()).unwrap_or_else(|e| panic!("loadgen output {out:?}: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
