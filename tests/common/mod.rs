//! Shared harness for ferrocorn's integration tests: start and stop a real
//! server process, a small raw HTTP/1.1 client, and a few helpers (SHA-256,
//! a JSON reader, deterministic pseudo-random bytes) so the tests need
//! nothing outside the standard library and `libc`.
//!
//! Every wait in here has a deadline, and `Server`'s `Drop` kills the master
//! and all of its workers, so a failing test leaves no process behind.
//!
//! Everything is re-exported here, so a test needs only `use common::*;`:
//! - `server`: `Server` (the real binary, its log, workers and signals)
//!   and `run_cli`;
//! - `client`: `Conn`, `Reader`, `Response` and raw-send helpers;
//! - `procs`: /proc, `kill`, `wait_until`;
//! - `json`: the JSON reader; `data`: pseudo-random bytes, chunked bodies,
//!   SHA-256; `notify`: the sd_notify receiver; `load`: the load generator;
//! - this file: paths of the repository and of the test apps, `TempDir`.

#![allow(dead_code)]

mod client;
mod data;
mod json;
mod load;
mod notify;
mod procs;
mod server;

// Every test binary compiles this harness and uses only part of it, hence
// `dead_code` above and `unused_imports` here.
#[allow(unused_imports)]
pub use self::{client::*, data::*, json::*, load::*, notify::*, procs::*, server::*};

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps`, where the test WSGI apps live.
pub fn apps_dir() -> PathBuf {
    repo_dir().join("tests").join("apps")
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop unless the
/// test is failing (then it is kept for inspection and its path printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "ferrocorn-test-{}-{}-{}",
            std::process::id(),
            n,
            tag
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(temp dir kept: {})", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
