//! The pidfile: written atomically at start (refusing one that names a live
//! process), removed at exit only if it still names this master. An
//! unpromoted successor writes `<pidfile>.2` instead and renames it over
//! the pidfile when it is promoted.

use std::path::{Path, PathBuf};

use super::{Arbiter, MasterError};
use crate::sys;

/// Refuse a pidfile naming a live process; write ours atomically.
pub(super) fn write_pidfile(path: &Path, pid: u32) -> Result<(), MasterError> {
    let err = |reason: String| MasterError::Pidfile {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(old) = text.trim().parse::<i32>() {
            if old > 0 && old as u32 != pid && sys::process_running(old) {
                return Err(err(format!("already running as pid {old}")));
            }
        }
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{pid}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    // 0644 whatever the umask (gunicorn's default umask is 0): only the
    // owner may change which process the pidfile names.
    std::fs::write(&tmp, format!("{pid}\n")).map_err(|e| err(e.to_string()))?;
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&tmp, perms).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

/// Where a successor master writes its pid until it is promoted.
pub(super) fn pidfile2(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".2");
    PathBuf::from(s)
}

/// Where a master names the new master of an upgrade that failed (it died
/// before it was ready), for `ferrocorn upgrade`.
pub fn pidfile_failed(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".failed");
    PathBuf::from(s)
}

/// Remove the pidfile only if it still holds our pid.
pub(super) fn remove_pidfile(path: &Path, pid: u32) {
    if let Ok(text) = std::fs::read_to_string(path) {
        if text.trim().parse::<u32>().ok() == Some(pid) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Arbiter {
    /// The pidfile this master currently holds: `<pidfile>.2` while it is
    /// an unpromoted successor.
    pub(super) fn own_pidfile(&self) -> Option<PathBuf> {
        let p = self.pidfile.as_ref()?;
        Some(if self.predecessor.is_some() {
            pidfile2(p)
        } else {
            p.clone()
        })
    }
}
