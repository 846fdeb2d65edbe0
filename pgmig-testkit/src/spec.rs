//! What to start: [`ClusterSpec`], the builder of a [`Cluster`].
//!
//! [`ClusterSpec::start`] creates the lab directory, runs `initdb` (or
//! `pg_basebackup` for a standby), writes the settings, starts the server on
//! a free loopback port and, for a standby, waits until it streams.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tracing::info;

use crate::cluster::{Cluster, ClusterRole, lab_base_dir, sanitize_label, write_file};
use crate::error::LabError;
use crate::install::PgInstall;
use crate::lab_user::{check_reachable, give_to_lab_user};
use crate::reaper::{self, DIR_PREFIX, OWNER_FILE};

/// What a standby is made from.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) label: String,
    pub(crate) port: u16,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) pglogical: bool,
}

/// What to start: a builder for [`Cluster`].
///
/// ```no_run
/// # async fn demo() -> Result<(), pgmig_testkit::LabError> {
/// use pgmig_testkit::ClusterSpec;
/// let target = ClusterSpec::new(16)
///     .label("target")
///     .setting("max_connections", "50")
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a spec does nothing until started"]
pub struct ClusterSpec {
    major: u32,
    label: Option<String>,
    upstream: Option<Upstream>,
    settings: Vec<(String, String)>,
    pglogical: bool,
    tls: bool,
    streaming_timeout: Duration,
}

impl ClusterSpec {
    /// A primary of `major` with the lab's base settings (see
    /// [`ClusterSpec::setting`]); no pglogical.
    pub fn new(major: u32) -> Self {
        ClusterSpec {
            major,
            label: None,
            upstream: None,
            settings: Vec::new(),
            pglogical: false,
            tls: false,
            streaming_timeout: Duration::from_secs(60),
        }
    }

    /// The pgmig source preset: PostgreSQL 15 with pglogical preloaded,
    /// `wal_level=logical`, 20 slots, senders and workers,
    /// `track_commit_timestamp=on` and `wal_sender_timeout=0`.
    pub fn source_pg15() -> Self {
        ClusterSpec::new(15)
            .label("source")
            .preload_pglogical(true)
            .setting("wal_sender_timeout", "0")
    }

    /// A streaming standby of `upstream`: same major, same settings (a hot
    /// standby needs at least its primary's limits), plus `hot_standby=on`.
    ///
    /// It is made with `pg_basebackup -R --checkpoint=fast -X stream` and
    /// owns its own directory and port: it outlives its upstream if dropped
    /// later (it then just retries to connect).
    pub fn standby_of(upstream: &Cluster) -> Self {
        ClusterSpec {
            upstream: Some(Upstream {
                label: upstream.label.clone(),
                port: upstream.port,
                settings: upstream.settings.clone(),
                pglogical: upstream.pglogical,
            }),
            label: Some(format!("{}-standby", upstream.label)),
            ..ClusterSpec::new(upstream.major)
        }
    }

    /// A short name used in directory names, logs and errors.
    ///
    /// Default: `pg<major>` for a primary, `<upstream label>-standby` for a standby.
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_owned());
        self
    }

    /// Adds a `postgresql.conf` setting; the value is written quoted, so
    /// pass it bare (`"64MB"`, `"on"`, `"pglogical"`).
    ///
    /// Later settings win. The lab's base settings, which this can
    /// override: `fsync=off`, `wal_level=logical`, `max_wal_senders=20`,
    /// `max_replication_slots=20`, `hot_standby=on`, `shared_buffers=32MB`,
    /// `wal_keep_size=256MB` (`wal_keep_segments=16` before 13). Listening
    /// (`listen_addresses`, `port`, `unix_socket_directories`) is the lab's.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Preloads pglogical: `shared_preload_libraries=pglogical`,
    /// `max_worker_processes=20`, `track_commit_timestamp=on`.
    ///
    /// Default: off. Starting fails with [`LabError::Unavailable`] when the
    /// build has no pglogical (a panic under `CI=true`).
    pub fn preload_pglogical(mut self, yes: bool) -> Self {
        self.pglogical = yes;
        self
    }

    /// Serves TLS with the lab's own certificate authority: `ssl=on` with
    /// a server certificate for `DNS:localhost` only, signed by a CA made
    /// for this cluster; a second, unrelated CA is made too (see
    /// [`Cluster::tls_files`] and [`crate::TlsFiles`]). Plaintext
    /// connections are still accepted.
    ///
    /// Default: off (the server offers no TLS). Starting fails with
    /// [`LabError::Unavailable`] when the `openssl` command is missing.
    pub fn tls(mut self, yes: bool) -> Self {
        self.tls = yes;
        self
    }

    /// How long a standby may take to report `streaming` after its start.
    ///
    /// Default: 60 seconds.
    pub fn streaming_timeout(mut self, timeout: Duration) -> Self {
        self.streaming_timeout = timeout;
        self
    }

    /// The role the started cluster will have.
    pub fn role(&self) -> ClusterRole {
        if self.upstream.is_some() {
            ClusterRole::Standby
        } else {
            ClusterRole::Primary
        }
    }

    /// The settings written for this spec, in order (later ones win).
    fn effective_settings(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = match &self.upstream {
            Some(up) => {
                let mut s = up.settings.clone();
                s.push(("hot_standby".into(), "on".into()));
                s
            }
            None => {
                let mut s = base_settings(self.major);
                if self.pglogical {
                    s.extend(pglogical_settings());
                }
                s
            }
        };
        if self.upstream.is_some() && self.pglogical {
            all.extend(pglogical_settings());
        }
        all.extend(self.settings.iter().cloned());
        all
    }

    /// Creates, configures and starts the cluster; for a standby, also waits
    /// until it streams from its upstream.
    pub async fn start(self) -> Result<Cluster, LabError> {
        let started = Instant::now();
        let pglogical = self.pglogical || self.upstream.as_ref().is_some_and(|u| u.pglogical);
        let install = if pglogical {
            PgInstall::locate_with_pglogical(self.major)?
        } else {
            PgInstall::locate(self.major)?
        };
        check_reachable(&install.binary("postgres"))?;
        let label = sanitize_label(
            self.label
                .as_deref()
                .unwrap_or(&format!("pg{}", self.major)),
        );
        let base = lab_base_dir()?;
        reaper::reap_stale_labs_once(&base);

        let root = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{label}-"))
            .tempdir_in(&base)
            .map_err(|e| {
                LabError::io(format!("creating a lab directory in {}", base.display()), e)
            })?;
        write_file(
            &root.path().join(OWNER_FILE),
            &format!("{}\n", std::process::id()),
        )?;
        give_to_lab_user(root.path())?;
        check_reachable(root.path())?;
        let socket_dir = root.path().join("sock");
        std::fs::create_dir(&socket_dir)
            .map_err(|e| LabError::io(format!("creating {}", socket_dir.display()), e))?;
        give_to_lab_user(&socket_dir)?;
        if socket_dir.as_os_str().len() > 90 {
            return Err(LabError::Setup(format!(
                "unix socket directory {} is too long for a socket path; set PGMIG_LAB_DIR to a shorter directory",
                socket_dir.display()
            )));
        }

        let mut cluster = Cluster {
            label,
            major: self.major,
            role: self.role(),
            install,
            port: 0,
            data_dir: root.path().join("data"),
            log_file: root.path().join("server.log"),
            socket_dir,
            settings: self.effective_settings(),
            pglogical,
            tls: None,
            running: AtomicBool::new(false),
            root,
        };
        // From here on, Drop stops whatever got started.
        match &self.upstream {
            None => cluster.init_primary().await?,
            Some(up) => cluster.clone_upstream(up).await?,
        }
        if self.tls {
            cluster.tls = Some(crate::tls::generate(cluster.root.path(), &cluster.log_file).await?);
        }
        cluster.first_start(self.upstream.as_ref()).await?;
        if self.upstream.is_some() {
            cluster.wait_for_streaming(self.streaming_timeout).await?;
        }
        info!(
            cluster = %cluster.label,
            major = cluster.major,
            port = cluster.port,
            role = ?cluster.role,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "lab cluster up"
        );
        Ok(cluster)
    }
}

/// The settings every lab cluster starts with.
fn base_settings(major: u32) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = [
        ("fsync", "off"),
        ("wal_level", "logical"),
        ("max_wal_senders", "20"),
        ("max_replication_slots", "20"),
        ("hot_standby", "on"),
        ("shared_buffers", "32MB"),
        ("max_connections", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if major >= 13 {
        s.push(("wal_keep_size".into(), "256MB".into()));
    } else {
        s.push(("wal_keep_segments".into(), "16".into()));
    }
    s
}

fn pglogical_settings() -> Vec<(String, String)> {
    [
        ("shared_preload_libraries", "pglogical"),
        ("max_worker_processes", "20"),
        ("track_commit_timestamp", "on"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_inherits_settings() {
        let spec = ClusterSpec::new(15)
            .preload_pglogical(true)
            .setting("work_mem", "8MB");
        let settings = spec.effective_settings();
        assert!(settings.contains(&("shared_preload_libraries".into(), "pglogical".into())));
        assert_eq!(settings.last(), Some(&("work_mem".into(), "8MB".into())));
        assert_eq!(spec.role(), ClusterRole::Primary);
    }
}
