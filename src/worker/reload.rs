//! `--reload`: a thread of the worker watches the files of the Python
//! modules the worker imported, and the `--reload-extra-file` patterns;
//! when one changes, the worker logs it and stops gracefully (SIGTERM to
//! itself: requests in flight finish), and the master starts a fresh one
//! that imports the new code. The list of files is taken again once a
//! second (modules imported later, new files matching a pattern), with the
//! GIL held only for that. `inotify` sees a change at once; `poll`
//! compares modification times once a second.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use pyo3::prelude::*;

use crate::{info, warning};

/// Which files to watch: every module's source and the patterns' matches.
const FILES: &str = r#"
def reload_files(patterns):
    import sys, glob, os
    out = set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if isinstance(f, str):
            if f.endswith((".pyc", ".pyo")):
                f = f[:-1]
            out.add(os.path.abspath(f))
    for p in patterns:
        out.update(os.path.abspath(x) for x in glob.glob(p, recursive=True))
    return sorted(f for f in out if os.path.isfile(f))
"#;

const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Start the watcher thread (in the worker, after the app is imported).
pub fn start(engine: &str, patterns: Vec<String>) {
    // gunicorn's workers say it at boot too.
    warning!("Reloader is on. Use in development only!");
    let inotify = engine != "poll";
    let spawned = std::thread::Builder::new()
        .name("ferrocorn-reload".into())
        .spawn(move || {
            let Some(func) = Python::attach(|py| -> Option<Py<PyAny>> {
                let code = CString::new(FILES).ok()?;
                let m = PyModule::from_code(py, &code, c"<ferrocorn-reload>", c"_ferrocorn_reload")
                    .ok()?;
                m.getattr("reload_files").ok().map(Bound::unbind)
            }) else {
                warning!("--reload: cannot list the app's files; not watching");
                return;
            };
            let files = || -> Vec<PathBuf> {
                Python::attach(|py| {
                    func.bind(py)
                        .call1((patterns.clone(),))
                        .and_then(|v| v.extract::<Vec<String>>())
                        .unwrap_or_default()
                        .into_iter()
                        .map(PathBuf::from)
                        .collect()
                })
            };
            let changed = if inotify {
                match Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK) {
                    Ok(ino) => watch_inotify(&ino, files),
                    Err(e) => {
                        warning!("--reload: inotify unavailable ({e}); polling instead");
                        watch_poll(files)
                    }
                }
            } else {
                watch_poll(files)
            };
            info!("Worker reloading: {} modified", changed.display());
            crate::metrics::exiting(crate::metrics::ExitReason::CodeReload);
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
        });
    if let Err(e) = spawned {
        warning!("--reload: cannot start the watcher: {e}");
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Compare modification times once a second; returns the changed file.
fn watch_poll(files: impl Fn() -> Vec<PathBuf>) -> PathBuf {
    let mut seen: HashMap<PathBuf, Option<SystemTime>> = HashMap::new();
    loop {
        for f in files() {
            let now = mtime(&f);
            match seen.get(&f) {
                Some(before) if *before != now => return f,
                Some(_) => {}
                None => {
                    seen.insert(f, now);
                }
            }
        }
        // A watched file that disappeared counts as changed.
        if let Some(gone) = seen.keys().find(|f| !f.exists()) {
            return gone.clone();
        }
        std::thread::sleep(LOOK_EVERY);
    }
}

/// Watch the files' directories with inotify; returns the changed file.
fn watch_inotify(ino: &Inotify, files: impl Fn() -> Vec<PathBuf>) -> PathBuf {
    let mask = AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_ATTRIB;
    let mut dirs: HashMap<nix::sys::inotify::WatchDescriptor, PathBuf> = HashMap::new();
    let mut watched_dirs: Vec<PathBuf> = Vec::new();
    let mut wanted: Vec<PathBuf> = Vec::new();
    loop {
        wanted = {
            let now = files();
            if now.is_empty() {
                wanted
            } else {
                now
            }
        };
        for f in &wanted {
            let Some(dir) = f.parent() else { continue };
            if watched_dirs.iter().any(|d| d == dir) {
                continue;
            }
            match ino.add_watch(dir, mask) {
                Ok(wd) => {
                    dirs.insert(wd, dir.to_path_buf());
                    watched_dirs.push(dir.to_path_buf());
                }
                Err(e) => warning!("--reload: cannot watch {}: {e}", dir.display()),
            }
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(ino),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::from(LOOK_EVERY.as_millis() as u16),
        );
        let Ok(events) = ino.read_events() else {
            continue;
        };
        for ev in events {
            let (Some(dir), Some(name)) = (dirs.get(&ev.wd), ev.name.as_ref()) else {
                continue;
            };
            let path = dir.join(name);
            if wanted.contains(&path) {
                return path;
            }
        }
    }
}
