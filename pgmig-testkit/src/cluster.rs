//! One PostgreSQL cluster in a temporary directory, listening on loopback.
//!
//! A [`Cluster`] is made by [`ClusterSpec::start`]; it stops its server and
//! removes its directory when dropped.
//!
//! Directory layout: `<PGMIG_LAB_DIR or $TMPDIR>/pgmig-lab-<label>-XXXXXX/`
//! holding `data/`, `sock/` (the unix socket), `server.log` and `owner.pid`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};
use tracing::{debug, info, warn};

use crate::command::Invocation;
use crate::error::LabError;
use crate::install::{PgInstall, client_binary};
use crate::lab_user::give_to_lab_user;
use crate::lsn::{self, LsnTarget};
use crate::port::{LAB_HOST, free_port};
use crate::reaper;
use crate::spec::{ClusterSpec, Upstream};
use crate::tls::TlsFiles;

/// The superuser every lab cluster is initialised with (trust authentication).
pub const LAB_SUPERUSER: &str = "postgres";

/// The file, inside the data directory, that holds the lab's settings.
/// `postgresql.conf` includes it; `ALTER SYSTEM` still overrides it.
const LAB_CONF: &str = "pgmig-lab.conf";

/// How long `pg_ctl` may wait for a start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// How many times a first start is retried when the port was taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

/// Whether a cluster is a primary or a streaming standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterRole {
    /// A read-write primary made by `initdb`.
    Primary,
    /// A hot standby made by `pg_basebackup`, streaming from its upstream.
    Standby,
}

/// How `pg_ctl stop` shuts a server down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Waits for every client to disconnect.
    Smart,
    /// Disconnects clients, checkpoints, exits cleanly.
    Fast,
    /// Exits at once, like a crash: the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A running (or stopped) PostgreSQL cluster owned by the test.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`, then SIGKILL if
/// needed) and removes its directory; Drop never panics. Clusters are
/// independent: a standby may be dropped before or after its primary.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) label: String,
    pub(crate) major: u32,
    pub(crate) role: ClusterRole,
    pub(crate) install: PgInstall,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) pglogical: bool,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) running: AtomicBool,
    // Last field: removed after Drop::drop has stopped the server.
    pub(crate) root: TempDir,
}

impl Cluster {
    /// Starts a primary of `major` with the lab's base settings.
    ///
    /// Shorthand for `ClusterSpec::new(major).start()`.
    pub async fn primary(major: u32) -> Result<Cluster, LabError> {
        ClusterSpec::new(major).start().await
    }

    /// Starts a streaming standby of this cluster on its own port and waits
    /// until it streams.
    ///
    /// Shorthand for `ClusterSpec::standby_of(self).start()`.
    pub async fn create_replica(&self) -> Result<Cluster, LabError> {
        ClusterSpec::standby_of(self).start().await
    }

    /// The label given at creation (used in logs and directory names).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The major version (10, 12, 15, ...).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Primary or standby, as created (a promoted standby still says standby).
    pub fn role(&self) -> ClusterRole {
        self.role
    }

    /// The server build in use.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// The host to connect to: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        LAB_HOST
    }

    /// The TCP port, fixed for the cluster's lifetime.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Whether pglogical is in `shared_preload_libraries`.
    pub fn has_pglogical(&self) -> bool {
        self.pglogical
    }

    /// Where the lab CA, the other CA and the server certificate are, when
    /// the cluster serves TLS ([`ClusterSpec::tls`]); `None` otherwise.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Whether the lab believes the server is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// The last `lines` lines of the server log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log_file, lines)
    }

    /// A libpq key=value connection string for `dbname`:
    /// `host=127.0.0.1 port=<port> user=postgres dbname=<dbname>`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={LAB_HOST} port={} user={LAB_SUPERUSER} dbname={}",
            self.port,
            conninfo_value(dbname)
        )
    }

    /// Connects to `dbname` as `postgres` without TLS; the connection task
    /// runs on the current tokio runtime until the client is dropped.
    pub async fn connect(&self, dbname: &str) -> Result<Client, LabError> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo(dbname), NoTls)
            .await
            .map_err(|e| {
                LabError::pg(
                    format!(
                        "connecting to {} ({}) database {dbname:?}",
                        self.label,
                        self.conninfo(dbname)
                    ),
                    e,
                )
            })?;
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(cluster = %label, error = %e, "lab connection ended");
            }
        });
        Ok(client)
    }

    /// Creates a fresh database named `<prefix>_<pid>_<counter>_<random>`
    /// (sanitised to `[a-z0-9_]`, at most 63 bytes) and returns its name.
    ///
    /// Lab databases are never dropped: with pglogical preloaded on PG15,
    /// `DROP DATABASE` can hang forever. They go away with the cluster.
    pub async fn create_database(&self, prefix: &str) -> Result<String, LabError> {
        let name = unique_database_name(prefix);
        let client = self.connect("postgres").await?;
        let sql = format!("CREATE DATABASE \"{name}\"");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match client.batch_execute(&sql).await {
                Ok(()) => break,
                // 55006: template1 briefly in use by another session.
                Err(e)
                    if attempt < 20
                        && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(LabError::pg(format!("{sql} on {}", self.label), e)),
            }
        }
        debug!(cluster = %self.label, database = %name, "created database");
        Ok(name)
    }

    /// Runs `sql` (one or more statements) in `db` on a new connection.
    pub async fn execute(&self, db: &str, sql: &str) -> Result<(), LabError> {
        let client = self.connect(db).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| LabError::pg(format!("running {sql:?} in {db} on {}", self.label), e))
    }

    /// The first column of the first row of `sql` in `db`, as text (any
    /// type; simple protocol); `None` for no row or NULL.
    pub async fn query_opt_string(&self, db: &str, sql: &str) -> Result<Option<String>, LabError> {
        let client = self.connect(db).await?;
        lsn::query_text(&client, sql).await
    }

    /// Like [`Cluster::query_opt_string`], but no row or NULL is an error.
    pub async fn query_one_string(&self, db: &str, sql: &str) -> Result<String, LabError> {
        self.query_opt_string(db, sql)
            .await?
            .ok_or_else(|| LabError::Unexpected {
                context: format!("{sql:?} in {db} on {}", self.label),
                detail: "no row, or NULL".into(),
            })
    }

    /// `SHOW server_version_num` as a number (e.g. `150014`).
    pub async fn server_version_num(&self) -> Result<u32, LabError> {
        let text = self
            .query_one_string("postgres", "SHOW server_version_num")
            .await?;
        text.parse().map_err(|_| LabError::Unexpected {
            context: "SHOW server_version_num".into(),
            detail: text,
        })
    }

    /// The current WAL write position of this primary.
    pub async fn current_wal_lsn(&self) -> Result<u64, LabError> {
        lsn::current_wal_lsn(&self.connect("postgres").await?).await
    }

    /// The last replayed position of this standby (`None` on a primary).
    pub async fn replay_lsn(&self) -> Result<Option<u64>, LabError> {
        lsn::replay_lsn(&self.connect("postgres").await?).await
    }

    /// Waits until this standby has replayed at least `target`; returns the
    /// replay LSN reached. The timeout error carries this server's log tail.
    pub async fn wait_for_replay(
        &self,
        target: impl LsnTarget,
        timeout: Duration,
    ) -> Result<u64, LabError> {
        let client = self.connect("postgres").await?;
        lsn::wait_for_replay(&client, target, timeout)
            .await
            .map_err(|e| self.with_log_tail(e))
    }

    /// Waits until this standby's WAL receiver reports `streaming`
    /// (`pg_stat_wal_receiver`).
    pub async fn wait_for_streaming(&self, timeout: Duration) -> Result<(), LabError> {
        let started = Instant::now();
        let client = self.connect("postgres").await?;
        loop {
            let last = lsn::query_text(&client, "SELECT status FROM pg_stat_wal_receiver").await?;
            if last.as_deref() == Some("streaming") {
                debug!(cluster = %self.label, elapsed_ms = started.elapsed().as_millis() as u64, "standby streaming");
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::Timeout {
                    what: format!(
                        "standby {} to stream (WAL receiver status: {})",
                        self.label,
                        last.as_deref().unwrap_or("none")
                    ),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (`pg_ctl stop -m <mode> -w`). The directory stays;
    /// [`Cluster::start`] brings the server back on the same port.
    pub async fn stop(&self, mode: StopMode) -> Result<(), LabError> {
        self.pg_ctl()
            .args(["stop", "-m", mode.as_arg(), "-w", "-t", PG_CTL_TIMEOUT_SECS])
            .run(&self.log_file)
            .await?;
        self.running.store(false, Ordering::SeqCst);
        info!(cluster = %self.label, mode = mode.as_arg(), "lab cluster stopped");
        Ok(())
    }

    /// Starts a stopped server again (`pg_ctl start -w`), on the same port.
    pub async fn start(&self) -> Result<(), LabError> {
        self.pg_ctl()
            .args(["-l"])
            .arg(&self.log_file)
            .args(["start", "-w", "-t", PG_CTL_TIMEOUT_SECS])
            .run(&self.log_file)
            .await?;
        self.running.store(true, Ordering::SeqCst);
        info!(cluster = %self.label, port = self.port, "lab cluster started");
        Ok(())
    }

    /// Stops the server with [`StopMode::Fast`] and starts it again.
    pub async fn restart(&self) -> Result<(), LabError> {
        self.stop(StopMode::Fast).await?;
        self.start().await
    }

    fn pg_ctl(&self) -> Invocation {
        Invocation::new(self.install.binary("pg_ctl"))
            .current_dir(self.root.path())
            .arg("-D")
            .arg(&self.data_dir)
    }

    fn with_log_tail(&self, err: LabError) -> LabError {
        match err {
            LabError::Timeout { what, waited, .. } => LabError::Timeout {
                what: format!("{what} on {}", self.label),
                waited,
                log_tail: self.log_tail(30),
            },
            other => other,
        }
    }

    pub(crate) async fn init_primary(&self) -> Result<(), LabError> {
        Invocation::new(self.install.binary("initdb"))
            .current_dir(self.root.path())
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                LAB_SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .run(&self.log_file)
            .await?;
        append_file(
            &self.data_dir.join("pg_hba.conf"),
            "\n# pgmig-testkit: loopback only, trust\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )?;
        self.include_lab_conf()
    }

    pub(crate) async fn clone_upstream(&self, up: &Upstream) -> Result<(), LabError> {
        let pg_basebackup = client_binary("pg_basebackup")?;
        Invocation::new(pg_basebackup)
            .current_dir(self.root.path())
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "-h",
                LAB_HOST,
                "-p",
                &up.port.to_string(),
                "-U",
                LAB_SUPERUSER,
            ])
            .args(["-R", "--checkpoint=fast", "-X", "stream", "--no-sync"])
            .run(&self.log_file)
            .await?;
        // Written by PG15's pg_basebackup, primary_conninfo carries options
        // (channel_binding, sslsni, ...) that older walreceivers reject:
        // replace it with a plain one.
        let conninfo = format!(
            "host={LAB_HOST} port={} user={LAB_SUPERUSER} application_name={}",
            up.port,
            self.label.replace('-', "_")
        );
        let conninfo_line = format!("primary_conninfo = {}\n", conf_value(&conninfo));
        if self.major < 12 {
            write_file(
                &self.data_dir.join("recovery.conf"),
                &format!("standby_mode = 'on'\n{conninfo_line}"),
            )?;
        } else {
            let auto = self.data_dir.join("postgresql.auto.conf");
            let old = std::fs::read_to_string(&auto).unwrap_or_default();
            let mut new: String = old
                .lines()
                .filter(|l| !l.trim_start().starts_with("primary_conninfo"))
                .map(|l| format!("{l}\n"))
                .collect();
            new.push_str(&conninfo_line);
            write_file(&auto, &new)?;
            let signal = self.data_dir.join("standby.signal");
            if !signal.exists() {
                write_file(&signal, "")?;
            }
        }
        debug!(cluster = %self.label, upstream = %up.label, "standby cloned");
        self.include_lab_conf()
    }

    /// Makes `postgresql.conf` include the lab's settings file (once).
    fn include_lab_conf(&self) -> Result<(), LabError> {
        let conf = self.data_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf)
            .map_err(|e| LabError::io(format!("reading {}", conf.display()), e))?;
        let include = format!("include '{LAB_CONF}'");
        if !text.lines().any(|l| l.trim() == include) {
            append_file(&conf, &format!("\n# pgmig-testkit settings\n{include}\n"))?;
        }
        Ok(())
    }

    fn write_lab_conf(&self) -> Result<(), LabError> {
        let mut text = String::from("# written by pgmig-testkit; rewritten on every lab start\n");
        let listen = [
            ("listen_addresses", LAB_HOST.to_owned()),
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.socket_dir.to_string_lossy().into_owned(),
            ),
        ];
        let tls = self
            .tls
            .as_ref()
            .map(TlsFiles::server_settings)
            .unwrap_or_default();
        for (name, value) in listen
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(self.settings.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .chain(tls.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            text.push_str(&format!("{name} = {}\n", conf_value(value)));
        }
        write_file(&self.data_dir.join(LAB_CONF), &text)
    }

    /// The first start: picks a port, retrying when it was taken meanwhile.
    pub(crate) async fn first_start(
        &mut self,
        upstream: Option<&Upstream>,
    ) -> Result<(), LabError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = loop {
                let port = free_port()?;
                if upstream.is_none_or(|up| up.port != port) {
                    break port;
                }
            };
            self.write_lab_conf()?;
            let log_offset = file_len(&self.log_file);
            match self.start().await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    let log = read_from(&self.log_file, log_offset);
                    if attempt < PORT_ATTEMPTS && log.contains("Address already in use") {
                        warn!(cluster = %self.label, port = self.port, "port taken meanwhile, retrying with another");
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Stops the server for Drop: pg_ctl immediate, then signals.
    fn stop_for_drop(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return;
        }
        let stopped = self
            .pg_ctl()
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .run_blocking(&self.log_file);
        if let Err(e) = stopped {
            warn!(cluster = %self.label, error = %e, "pg_ctl stop failed on drop; signalling the postmaster");
            if let Some(pid) = reaper::read_pid(&pid_file) {
                reaper::stop_postmaster(pid, self.root.path());
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never panic here: this runs while unwinding from failed tests.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop_for_drop()));
        debug!(cluster = %self.label, dir = %self.root.path().display(), "lab cluster removed");
        // `root` (TempDir) removes the directory after this.
    }
}

/// Where lab directories are created: `$PGMIG_LAB_DIR`, else the system temp dir.
pub fn lab_base_dir() -> Result<PathBuf, LabError> {
    match std::env::var_os("PGMIG_LAB_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).map_err(|e| {
                LabError::io(format!("creating PGMIG_LAB_DIR {}", dir.display()), e)
            })?;
            Ok(dir)
        }
        None => Ok(std::env::temp_dir()),
    }
}

/// A database name unique across processes and calls.
fn unique_database_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let suffix = hasher.finish() & 0xFF_FFFF;
    let mut prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        prefix.insert_str(0, "db_");
    }
    format!("{prefix}_{}_{n}_{suffix:06x}", std::process::id())
}

pub(crate) fn sanitize_label(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    if s.is_empty() { "pg".into() } else { s }
}

/// A `postgresql.conf` value: always single-quoted, quotes doubled.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A libpq conninfo value: bare when safe, else single-quoted with escapes.
pub(crate) fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    give_to_lab_user(path)
}

fn append_file(path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io(format!("appending to {}", path.display()), e))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(offset)).is_ok() && f.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// The last `lines` lines of a file (empty if unreadable); reads at most
/// the last 64 KiB.
pub(crate) fn read_tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, file_len(path).saturating_sub(64 * 1024));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_unique_and_valid() {
        let a = unique_database_name("My Test-DB");
        let b = unique_database_name("My Test-DB");
        assert_ne!(a, b);
        assert!(a.starts_with("my_test_db_"), "{a}");
        let long = unique_database_name(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_database_name("9lives").starts_with("db_9lives_"));
        for name in [a, b, long] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
    }

    #[test]
    fn values_are_quoted() {
        assert_eq!(conf_value("it's"), "'it''s'");
        assert_eq!(conninfo_value("plain_db"), "plain_db");
        assert_eq!(conninfo_value("a b'c"), "'a b\\'c'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn cluster_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Cluster>();
    }
}
