//! The unprivileged OS user that runs the servers when the tests run as root.
//!
//! PostgreSQL refuses to run as root. When the test process is root, every
//! server command (`initdb`, `pg_ctl`, `pg_basebackup`) runs through
//! `runuser -u <user> --`, and the lab's directories are chowned to that user.
//! The user is `$PGMIG_LAB_USER`, else `postgres` when it exists, else
//! `pgmiglab`, created with `useradd` on first use.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use tracing::{debug, info};

use crate::error::LabError;

/// The user the lab creates when neither `$PGMIG_LAB_USER` nor `postgres` exists.
pub const FALLBACK_USER: &str = "pgmiglab";

/// An OS account with its numeric ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabUser {
    /// The login name.
    pub name: String,
    /// The numeric user id.
    pub uid: u32,
    /// The numeric primary group id.
    pub gid: u32,
}

/// Whether this process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective uid.
    match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0"),
    }
}

/// The user that server commands must run as: `None` when the process is not
/// root (commands then run directly as the current user).
///
/// Resolved (and if needed created) once per process.
pub fn lab_user() -> Result<Option<&'static LabUser>, LabError> {
    static USER: OnceLock<Result<Option<LabUser>, String>> = OnceLock::new();
    USER.get_or_init(|| {
        if !running_as_root() {
            return Ok(None);
        }
        resolve_user().map(Some)
    })
    .as_ref()
    .map(Option::as_ref)
    .map_err(|e| LabError::Setup(e.clone()))
}

fn resolve_user() -> Result<LabUser, String> {
    if let Ok(name) = std::env::var("PGMIG_LAB_USER") {
        return lookup_user(&name)
            .ok_or_else(|| format!("PGMIG_LAB_USER={name} names no user on this machine"));
    }
    if let Some(user) = lookup_user("postgres") {
        return Ok(user);
    }
    if let Some(user) = lookup_user(FALLBACK_USER) {
        return Ok(user);
    }
    info!(user = FALLBACK_USER, "creating the lab user");
    let out = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--shell", "/usr/sbin/nologin", FALLBACK_USER])
        .output()
        .map_err(|e| format!("running useradd: {e}"))?;
    // Another test process may have created it in the meantime: look again.
    lookup_user(FALLBACK_USER).ok_or_else(|| {
        format!(
            "useradd {FALLBACK_USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// Looks a user up in `/etc/passwd`, then through `id` (other NSS sources).
fn lookup_user(name: &str) -> Option<LabUser> {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4
                && fields[0] == name
                && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
            {
                return Some(LabUser {
                    name: name.to_owned(),
                    uid,
                    gid,
                });
            }
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id")
            .args([flag, name])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(LabUser {
        name: name.to_owned(),
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

/// Gives `path` to the lab user (no-op when not root).
pub(crate) fn give_to_lab_user(path: &Path) -> Result<(), LabError> {
    if let Some(user) = lab_user()? {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| LabError::io(format!("chown {} to {}", path.display(), user.name), e))?;
    }
    Ok(())
}

/// Checks that the lab user can reach `path`: every ancestor directory must
/// be searchable by it. A no-op when not root.
pub(crate) fn check_reachable(path: &Path) -> Result<(), LabError> {
    let Some(user) = lab_user()? else {
        return Ok(());
    };
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(LabError::Setup(format!(
                "user {} cannot traverse {} (mode {:o}) to reach {}; make it searchable \
                 (chmod o+x) or point PGMIG_LAB_DIR / the PGMIG_PG<N>_BIN variables elsewhere",
                user.name,
                dir.display(),
                mode & 0o7777,
                path.display()
            )));
        }
    }
    debug!(path = %path.display(), user = %user.name, "path reachable by the lab user");
    Ok(())
}
