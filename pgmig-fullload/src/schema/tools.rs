//! The PostgreSQL client tools (`pg_dump`, `pg_restore`, `psql`,
//! `pg_dumpall`): finding a set new enough for the source, and running them
//! with the connection passed through the environment — never on the command
//! line, where `ps` would show a password.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use pgmig_core::Major;
use pgmig_core::config::{ConnConfig, redact_dsn};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::debug;

use super::SchemaError;

/// The environment variable naming the `pg_dump` to use; its directory must
/// also hold `pg_restore`, `psql` and `pg_dumpall`.
pub const PG_DUMP_ENV: &str = "PGMIG_PG_DUMP";

/// A set of client tools of one version, found beside one `pg_dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTools {
    bin_dir: PathBuf,
    version: ToolVersion,
}

/// A client tool's version as `--version` prints it (`15.18`, `9.6.24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToolVersion {
    /// `server_version_num`-style number: `150018`, `90624`.
    pub num: u32,
}

impl ToolVersion {
    /// Parses the output of `pg_dump --version`:
    /// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 150018.
    /// `None` for anything else.
    pub fn parse(output: &str) -> Option<ToolVersion> {
        let rest = output.split("(PostgreSQL)").nth(1)?.trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
        let first = parts.next()??;
        let second = parts.next().flatten().unwrap_or(0);
        let num = if first >= 10 {
            first.checked_mul(10_000)?.checked_add(second)?
        } else {
            let third = parts.next().flatten().unwrap_or(0);
            first * 10_000 + second * 100 + third
        };
        Some(ToolVersion { num })
    }

    /// The major, when pgmig knows it.
    pub fn major(self) -> Option<Major> {
        Major::from_version_num(self.num)
    }

    /// Whether this tool can dump a server of `major`: a `pg_dump` dumps
    /// servers of its own major and older, and it must be a minor that
    /// writes `\restrict` (CVE-2025-8714), see [`ToolVersion::minimum_for`].
    pub fn can_dump(self, major: Major) -> bool {
        self.num >= Self::minimum_for(major).num && self.writes_restrict()
    }

    /// The oldest tool version pgmig accepts for a source of `major`: the
    /// source's major (or 13 for older sources) at the first minor that
    /// writes `\restrict` against CVE-2025-8714 (17.6, 16.10, 15.14,
    /// 14.19, 13.22; any 18 or newer). Any newer major is accepted as well
    /// when it is at least its own fixed minor.
    pub fn minimum_for(major: Major) -> ToolVersion {
        let base = if major == Major::V9_6 {
            90_600
        } else {
            major.number() * 10_000
        };
        ToolVersion {
            num: Self::restrict_minimum(base).max(base),
        }
    }

    /// The first version of the major of `num` that writes `\restrict`
    /// (a major older than 13 never got the fix: the 13 one then).
    fn restrict_minimum(num: u32) -> u32 {
        match num / 10_000 {
            0..=13 => 130_022,
            14 => 140_019,
            15 => 150_014,
            16 => 160_010,
            17 => 170_006,
            _ => num / 10_000 * 10_000,
        }
    }

    /// Whether this version writes `\restrict` (CVE-2025-8714).
    pub fn writes_restrict(self) -> bool {
        self.num >= Self::restrict_minimum(self.num)
    }
}

impl fmt::Display for ToolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num >= 100_000 {
            write!(f, "{}.{}", self.num / 10_000, self.num % 10_000)
        } else {
            write!(
                f,
                "{}.{}.{}",
                self.num / 10_000,
                self.num / 100 % 100,
                self.num % 100
            )
        }
    }
}

impl ClientTools {
    /// Finds client tools that can dump a server of `source`: the `pg_dump`
    /// named by `PGMIG_PG_DUMP` when set (an error when it is too old),
    /// else the newest of those on `PATH` and in `/usr/lib/postgresql/*/bin`.
    pub async fn locate(source: Major) -> Result<ClientTools, SchemaError> {
        let explicit = std::env::var_os(PG_DUMP_ENV).filter(|v| !v.is_empty());
        Self::locate_from(source, explicit, std::env::var_os("PATH")).await
    }

    /// [`ClientTools::locate`] with the environment given.
    pub async fn locate_from(
        source: Major,
        explicit: Option<OsString>,
        path: Option<OsString>,
    ) -> Result<ClientTools, SchemaError> {
        if let Some(pg_dump) = explicit {
            let pg_dump = PathBuf::from(pg_dump);
            let version = tool_version(&pg_dump)
                .await
                .map_err(|e| SchemaError::ToolUnusable {
                    path: pg_dump.display().to_string(),
                    source: Box::new(e),
                })?;
            if !version.can_dump(source) {
                return Err(SchemaError::ToolTooOld {
                    path: pg_dump.display().to_string(),
                    found: version.to_string(),
                    source_major: source,
                    minimum: ToolVersion::minimum_for(source).to_string(),
                });
            }
            let bin_dir = pg_dump.parent().map(Path::to_path_buf).unwrap_or_default();
            return Ok(ClientTools { bin_dir, version });
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = path {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("pg_dump")));
        }
        if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join("pg_dump"))
                .collect();
            dirs.sort();
            candidates.extend(dirs);
        }
        let mut best: Option<ClientTools> = None;
        let mut looked = Vec::new();
        for pg_dump in candidates {
            // Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version
            // per call: use the real binaries (found in /usr/lib/postgresql).
            let is_real = std::fs::canonicalize(&pg_dump)
                .is_ok_and(|real| real.file_name().is_some_and(|n| n == "pg_dump"));
            if !pg_dump.is_file() || !is_real {
                continue;
            }
            let Ok(version) = tool_version(&pg_dump).await else {
                continue;
            };
            looked.push(format!("{} ({version})", pg_dump.display()));
            if best.as_ref().is_none_or(|b| version > b.version) {
                let bin_dir = pg_dump.parent().map(Path::to_path_buf).unwrap_or_default();
                best = Some(ClientTools { bin_dir, version });
            }
        }
        match best {
            Some(tools) if tools.version.can_dump(source) => Ok(tools),
            _ => Err(SchemaError::ToolNotFound {
                source_major: source,
                minimum: ToolVersion::minimum_for(source).to_string(),
                looked: if looked.is_empty() {
                    "none on PATH or in /usr/lib/postgresql/*/bin".into()
                } else {
                    looked.join(", ")
                },
            }),
        }
    }

    /// The directory holding the tools.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The tools' version.
    pub fn version(&self) -> ToolVersion {
        self.version
    }

    /// The path of one tool of this set.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Runs `tool` with `args`, against `conn` when given (passed as `PG*` variables;
    /// inherited `PG*` variables are removed first), feeding `stdin` when
    /// given; returns stdout. A failure carries the redacted stderr.
    pub async fn run(
        &self,
        tool: &str,
        args: &[&str],
        conn: Option<&ConnConfig>,
        stdin: Option<&str>,
    ) -> Result<String, SchemaError> {
        let path = self.tool(tool);
        debug!(tool = %path.display(), args = ?args, server = ?conn.map(ToString::to_string), "running client tool");
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in conn.map(conn_env).unwrap_or_default() {
            cmd.env(key, value);
        }
        let io_err = |source| SchemaError::Io {
            tool: tool.to_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(io_err)?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            let input = input.to_owned();
            // Written concurrently with reading the output, so a large input
            // cannot deadlock against a full stdout pipe.
            tokio::spawn(async move {
                let _ = pipe.write_all(input.as_bytes()).await;
                let _ = pipe.shutdown().await;
            });
        }
        let out = child.wait_with_output().await.map_err(io_err)?;
        if !out.status.success() {
            return Err(SchemaError::ToolFailed {
                tool: tool.to_owned(),
                status: out.status.to_string(),
                stderr: super::sections::mask_passwords_anywhere(&redact_dsn(
                    String::from_utf8_lossy(&out.stderr).trim(),
                )),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The `PG*` environment that points a client tool at `conn`.
pub fn conn_env(conn: &ConnConfig) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if !conn.hosts().is_empty() {
        env.push(("PGHOST", conn.hosts().join(",")));
    }
    if !conn.hostaddrs().is_empty() {
        let addrs: Vec<String> = conn.hostaddrs().iter().map(|a| a.to_string()).collect();
        env.push(("PGHOSTADDR", addrs.join(",")));
    }
    if !conn.ports().is_empty() {
        let ports: Vec<String> = conn.ports().iter().map(|p| p.to_string()).collect();
        env.push(("PGPORT", ports.join(",")));
    }
    if let Some(user) = conn.user() {
        env.push(("PGUSER", user.to_owned()));
    }
    if let Some(db) = conn.dbname() {
        env.push(("PGDATABASE", db.to_owned()));
    }
    if let Some(pw) = conn.password() {
        env.push(("PGPASSWORD", pw.expose().to_owned()));
    }
    if let Some(passfile) = conn.passfile() {
        env.push(("PGPASSFILE", passfile.display().to_string()));
    }
    env.push(("PGSSLMODE", conn.sslmode().as_str().to_owned()));
    env.push((
        "PGCHANNELBINDING",
        conn.channel_binding().as_str().to_owned(),
    ));
    env.push((
        "PGTARGETSESSIONATTRS",
        conn.target_session_attrs().as_str().to_owned(),
    ));
    env.push((
        "PGLOADBALANCEHOSTS",
        conn.load_balance_hosts().as_str().to_owned(),
    ));
    if let Some(root) = conn.sslrootcert() {
        env.push(("PGSSLROOTCERT", root.to_owned()));
    }
    if let Some((cert, key)) = conn.ssl_client_cert() {
        env.push(("PGSSLCERT", cert.display().to_string()));
        env.push(("PGSSLKEY", key.display().to_string()));
    }
    if let Some(timeout) = conn.connect_timeout() {
        env.push(("PGCONNECT_TIMEOUT", timeout.as_secs().max(2).to_string()));
    }
    if let Some(options) = conn.options() {
        env.push(("PGOPTIONS", options.to_owned()));
    }
    env.push((
        "PGAPPNAME",
        conn.application_name().unwrap_or("pgmig").to_owned(),
    ));
    env
}

async fn tool_version(path: &Path) -> Result<ToolVersion, SchemaError> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| SchemaError::Io {
            tool: path.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    ToolVersion::parse(&text).ok_or_else(|| SchemaError::ToolFailed {
        tool: path.display().to_string(),
        status: out.status.to_string(),
        stderr: format!("unexpected --version output {:?}", text.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tool_versions() {
        let cases = [
            (
                "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n",
                Some(150_018),
            ),
            ("pg_dump (PostgreSQL) 17.2\n", Some(170_002)),
            ("pg_dump (PostgreSQL) 18beta1\n", Some(180_000)),
            ("pg_dump (PostgreSQL) 9.6.24\n", Some(90_624)),
            ("pg_dump 15.1\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(ToolVersion::parse(text).map(|v| v.num), want, "{text:?}");
        }
    }

    #[test]
    fn a_pg_dump_dumps_its_major_and_older() {
        let v15 = ToolVersion { num: 150_018 };
        assert!(v15.can_dump(Major::V9_6));
        assert!(v15.can_dump(Major::V10));
        assert!(v15.can_dump(Major::V15));
        assert!(!v15.can_dump(Major::V16));
        // CVE-2025-8714: only minors that write \restrict.
        assert!(!ToolVersion { num: 150_013 }.can_dump(Major::V15));
        assert!(ToolVersion { num: 150_014 }.can_dump(Major::V15));
        assert!(!ToolVersion { num: 170_005 }.can_dump(Major::V15));
        assert!(ToolVersion { num: 170_006 }.can_dump(Major::V17));
        assert!(!ToolVersion { num: 130_021 }.can_dump(Major::V9_6));
        assert!(ToolVersion { num: 130_022 }.can_dump(Major::V9_6));
        assert!(ToolVersion { num: 180_000 }.can_dump(Major::V18));
        assert_eq!(ToolVersion::minimum_for(Major::V16).to_string(), "16.10");
        assert_eq!(ToolVersion::minimum_for(Major::V9_6).to_string(), "13.22");
        assert_eq!(ToolVersion::minimum_for(Major::V18).to_string(), "18.0");
        assert_eq!(v15.to_string(), "15.18");
        assert_eq!(ToolVersion { num: 90_624 }.to_string(), "9.6.24");
    }

    #[tokio::test]
    async fn explains_what_to_install() {
        let err = ClientTools::locate_from(Major::V18, None, Some("/nonexistent".into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("postgresql-client-18"), "{err}");
    }

    #[test]
    fn the_password_goes_to_the_environment() {
        let conn =
            ConnConfig::parse("host=db port=5433 user=u dbname=app password=s3cret").unwrap();
        let env = conn_env(&conn);
        assert!(env.contains(&("PGPASSWORD", "s3cret".into())));
        assert!(env.contains(&("PGHOST", "db".into())));
        assert!(env.contains(&("PGPORT", "5433".into())));
        assert!(env.contains(&("PGDATABASE", "app".into())));
        let conn = ConnConfig::parse(
            "host=db user=u channel_binding=require target_session_attrs=read-write",
        )
        .unwrap();
        let env = conn_env(&conn);
        assert!(
            env.contains(&("PGCHANNELBINDING", "require".into())),
            "{env:?}"
        );
        assert!(
            env.contains(&("PGTARGETSESSIONATTRS", "read-write".into())),
            "{env:?}"
        );
    }
}
