//! Cleanup of lab directories left behind by test processes that died
//! without running `Drop` (killed by a signal, aborted).
//!
//! Every lab directory holds `owner.pid`, the pid of the test process that
//! made it. Once per process, before its first cluster, the lab looks for
//! lab directories whose owner is gone, stops their server (SIGQUIT, the
//! immediate shutdown; SIGKILL if that does not work) and removes them.
//! Directories of live processes are never touched.

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// The prefix of every lab directory's name.
pub(crate) const DIR_PREFIX: &str = "pgmig-lab-";

/// The file in a lab directory that names the owning test process.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// Reaps stale lab directories under `base`, at most once per process.
pub(crate) fn reap_stale_labs_once(base: &Path) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| reap_stale_labs(base));
}

fn reap_stale_labs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else {
            continue; // being created right now, or not ours
        };
        if owner == me || process_alive(owner) {
            continue;
        }
        warn!(dir = %dir.display(), owner, "removing lab directory of a dead test process");
        if let Some(postmaster) = read_pid(&dir.join("data/postmaster.pid")) {
            stop_postmaster(postmaster, &dir);
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            debug!(dir = %dir.display(), error = %e, "could not remove stale lab directory");
        }
    }
}

/// The pid on the first line of a pid file.
pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` runs (a zombie waiting to be reaped counts as gone).
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "<pid> (<comm>) <state> ...": comm may contain spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// Whether `pid` is a postgres process whose command line names `dir`.
fn is_postmaster_of(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline.contains("postgres") && cmdline.contains(&*dir.to_string_lossy())
}

/// Stops a postmaster that belongs to `dir`: SIGQUIT, then SIGKILL.
pub(crate) fn stop_postmaster(pid: u32, dir: &Path) {
    if !is_postmaster_of(pid, dir) {
        return;
    }
    for signal in ["-QUIT", "-KILL"] {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !process_alive(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
