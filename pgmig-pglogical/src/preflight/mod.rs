//! `pgmig check`: the preflight over the three servers, as typed
//! [`Finding`]s gathered in a [`Report`].
//!
//! Each finding names its server, a stable check id (see [`ids`]), a
//! [`Severity`] and, for every problem, the fix — the exact
//! `postgresql.conf` lines or SQL, and whether a restart is needed. A
//! report with any blocker makes `pgmig check` exit 1.
//!
//! The checks are one function per area — [`check_source`],
//! [`check_existing_slots`], [`check_replica`], [`check_target`],
//! [`check_data`] — and [`run_checks`] runs them all in that order. The
//! least privilege of each server ([`check_source_privileges`],
//! [`check_replica_privileges`], [`check_target_privileges`]) is checked
//! by name: each missing privilege, the commands that need it, and the
//! `GRANT` / `ALTER ROLE` that gives it (`docs/privileges.md`). A
//! query that fails (a missing privilege, an unexpected catalog) becomes a
//! blocker naming the error, so one bad check never hides the others; only
//! a lost connection ends the run with the error. Nothing here writes to
//! any server.
//!
//! Catalog SQL that differs across 9.6–18 is chosen with a version
//! comparison beside it (`pg_stat_wal_receiver`'s LSN column,
//! `pg_replication_slots`' newer columns); the choice is unit-tested per
//! major, since no 9.6 server can be started here.

mod data;
mod finding;
mod grants;
mod privilege;
mod replica;
mod report;
mod slots;
mod source;
mod target;

use pgmig_core::{Result, ServerRole, ServerVersion};
use tokio_postgres::GenericClient;
use tracing::info;

pub use data::check_data;
pub use finding::{Finding, Severity, ids};
pub use privilege::{MANAGED_REPLICATION_ROLES, MANAGED_SUPERUSER_ROLES};
pub use replica::check_replica;
pub use report::Report;
pub use slots::check_existing_slots;
pub use source::{PGLOGICAL_WORKER_MARGIN, WalLevel, check_source};
pub use target::{check_target, name_some_tables};

/// The `source.privileges` finding alone: a superuser, or a role with each
/// grant pgmig needs on the source — `REPLICATION`, `USAGE` on schema
/// `pglogical` and `SELECT` on its tables, `SELECT` on every table and
/// sequence, `BYPASSRLS` where row-level security applies — each missing
/// one named with the statement that grants it. Reads catalogs only; a
/// command can call it before its first change and refuse on a blocker.
pub async fn check_source_privileges(source: &impl GenericClient) -> Result<Finding> {
    grants::source_finding(source).await
}

/// Refuses (with [`Refusal::MissingPrivileges`](crate::error::Refusal))
/// when the source role lacks a privilege `pgmig setup` needs —
/// `REPLICATION`, `USAGE` on schema `pglogical`, `SELECT` on its tables —
/// so setup stops before its first change instead of after creating the
/// node and sets. Privileges only later commands need are left to them and
/// to `pgmig check`.
pub async fn require_privileges_for_setup(
    source: &impl GenericClient,
) -> std::result::Result<(), crate::Error> {
    grants::require_for_setup(source).await
}

/// The `replica.privileges` finding alone: `EXECUTE` on the replay pause
/// and resume functions, `SELECT` on every table and sequence, `BYPASSRLS`
/// where row-level security applies (the grants run on the primary).
pub async fn check_replica_privileges(replica: &impl GenericClient) -> Result<Finding> {
    grants::replica_finding(replica).await
}

/// The extra `target.privileges` findings: `CREATE` on the source's
/// schemas that already exist on the target (blocker) and the right to set
/// `session_replication_role` for `pgmig cdc` (warning).
pub async fn check_target_privileges(
    target: &impl GenericClient,
    source: &impl GenericClient,
) -> Result<Vec<Finding>> {
    grants::target_findings(target, source).await
}

/// What [`run_checks`] needs to know about the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// How many logical slots the plan uses (created or still to create).
    pub planned_slots: usize,
    /// The names of pgmig's slots (the plan's, or those recorded in the
    /// target's state). They are neither listed as foreign slots nor
    /// counted on top of `planned_slots`.
    pub pgmig_slot_names: Vec<String>,
}

impl CheckOptions {
    /// Options for a plan of `planned_slots` slots, none of them named yet.
    pub fn new(planned_slots: usize) -> CheckOptions {
        CheckOptions {
            planned_slots,
            pgmig_slot_names: Vec::new(),
        }
    }

    /// Names pgmig's slots.
    ///
    /// Default: none, so every existing slot counts as someone else's.
    #[must_use]
    pub fn pgmig_slot_names<I, S>(mut self, names: I) -> CheckOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pgmig_slot_names = names.into_iter().map(Into::into).collect();
        self
    }
}

/// The replica or the target as [`run_checks`] receives it: connected, or
/// why not.
pub enum Endpoint<'a, C> {
    /// A live connection.
    Connected(&'a C),
    /// Connecting failed with this error (shown with its sources; pgmig's
    /// connection errors never contain a password).
    Unreachable(&'a (dyn std::error::Error + 'static)),
    /// No connection string was configured for this server.
    NotConfigured,
}

impl<'a, C> Endpoint<'a, C> {
    /// The endpoint for the outcome of a connection attempt.
    pub fn from_result<E: std::error::Error + 'static>(
        result: &'a std::result::Result<C, E>,
    ) -> Endpoint<'a, C> {
        match result {
            Ok(client) => Endpoint::Connected(client),
            Err(e) => Endpoint::Unreachable(e),
        }
    }

    /// The client, when connected.
    fn reach(self, server: ServerRole, check: &'static str) -> std::result::Result<&'a C, Finding> {
        match self {
            Endpoint::Connected(c) => Ok(c),
            Endpoint::Unreachable(e) => Err(Finding::unreachable(server, check, e)),
            Endpoint::NotConfigured => Err(Finding::blocker(
                server,
                check,
                format!("no {server} connection was given, so it was not checked"),
            )
            .with_fix(format!(
                "pass --{server}, set PGMIG_{}, or add [{server}] dsn = \"…\" to pgmig.toml",
                server.as_str().to_uppercase()
            ))),
        }
    }
}

/// Runs every check — source, its existing slots, replica, target, data —
/// and gathers the findings in that order.
///
/// The replica and the target may be unreachable or not configured: that
/// is a blocker finding (`replica.reachable`, `target.reachable`), not an
/// error. When the source's version cannot be used (a major pgmig does not
/// support), only the source findings are returned. Fails only when a
/// connection is lost during the checks.
#[tracing::instrument(name = "run_checks", skip_all, fields(planned_slots = opts.planned_slots))]
pub async fn run_checks<S, R, T>(
    source: &S,
    replica: Endpoint<'_, R>,
    target: Endpoint<'_, T>,
    opts: &CheckOptions,
) -> Result<Report>
where
    S: GenericClient,
    R: GenericClient,
    T: GenericClient,
{
    let mut report = Report::default();
    report
        .extend(source::source_findings(source, opts.planned_slots, &opts.pgmig_slot_names).await?);
    let source_version = match ServerVersion::query(source).await {
        Ok(v) => v,
        Err(e) if e.kind() == pgmig_core::ErrorKind::Connection => return Err(e),
        // source.version already carries the blocker.
        Err(_) => return Ok(report),
    };
    report.extend(check_existing_slots(source, &opts.pgmig_slot_names).await?);

    match replica.reach(ServerRole::Replica, ids::REPLICA_REACHABLE) {
        Ok(client) => {
            report.push(Finding::ok(
                ServerRole::Replica,
                ids::REPLICA_REACHABLE,
                "connected",
            ));
            report.extend(check_replica(client, source).await?);
            report.push(grants::replica_finding(client).await?);
        }
        Err(finding) => report.push(finding),
    }
    match target.reach(ServerRole::Target, ids::TARGET_REACHABLE) {
        Ok(client) => {
            report.push(Finding::ok(
                ServerRole::Target,
                ids::TARGET_REACHABLE,
                "connected",
            ));
            let mut found = check_target(client, source_version).await?;
            grants::merge_into(&mut found, grants::target_findings(client, source).await?);
            report.extend(found);
        }
        Err(finding) => report.push(finding),
    }
    report.extend(check_data(source).await?);

    info!(
        blockers = report.count(Severity::Blocker),
        warnings = report.count(Severity::Warn),
        ok = report.count(Severity::Ok),
        "preflight finished"
    );
    Ok(report)
}
