//! Checks of the source server: its version and role, the settings
//! pglogical needs, the `pglogical` extension and the role's privileges.
//!
//! Every query here reads views that have the same columns on 9.6 to 18
//! (`pg_settings.pending_restart` and `pg_replication_slots.active_pid`
//! date from 9.5), so none needs a version gate; the unit tests pin that.

use std::collections::HashMap;
use std::fmt;

use pgmig_core::{Result, ServerRole, ServerVersion, admin, quote_ident};
use tokio_postgres::GenericClient;
use tracing::{debug, warn};

use super::finding::{Finding, error_text, ids, query_failed};

const SOURCE: ServerRole = ServerRole::Source;

/// How many background workers pglogical and PostgreSQL need on the source
/// beside one per planned slot: pglogical's supervisor, its manager for
/// this database, PostgreSQL's logical replication launcher (10+) and one
/// spare. The check warns when
/// `max_worker_processes < planned slots + PGLOGICAL_WORKER_MARGIN`; the
/// per-slot share is headroom for pglogical subscriptions and parallel
/// query, which draw from the same pool.
pub const PGLOGICAL_WORKER_MARGIN: usize = 4;

/// The settings the source checks read from `pg_settings`.
const SETTINGS: &[&str] = &[
    "shared_preload_libraries",
    "wal_level",
    "max_replication_slots",
    "max_wal_senders",
    "wal_sender_timeout",
    "max_worker_processes",
    "track_commit_timestamp",
];

/// Settings and whether a changed value waits for a restart; identical on
/// 9.6 to 18 (`pending_restart` exists from 9.5).
const SETTINGS_SQL: &str = "SELECT name, setting, pending_restart \
     FROM pg_settings WHERE name = ANY($1::text[])";

/// Whether pglogical's own settings are defined in this backend, which
/// means the library is loaded. `shared_preload_libraries` is hidden from
/// roles that are neither superuser nor `pg_read_all_settings`; this is
/// the fallback then.
const PGLOGICAL_GUCS_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'pglogical.%')";

/// Slots that are not pgmig's, and WAL senders that do not serve one of
/// pgmig's slots ($1: pgmig's slot names). Identical on 9.6 to 18.
const SLOT_USAGE_SQL: &str = "SELECT \
       (SELECT count(*) FROM pg_replication_slots \
          WHERE NOT (slot_name::text = ANY($1::text[]))), \
       (SELECT count(*) FROM pg_stat_replication r WHERE NOT EXISTS ( \
          SELECT 1 FROM pg_replication_slots s \
          WHERE s.active_pid = r.pid AND s.slot_name::text = ANY($1::text[])))";

/// The extension in this database and the version the server could install.
const EXTENSION_SQL: &str = "SELECT current_database()::text, \
       (SELECT extversion::text FROM pg_extension WHERE extname = 'pglogical'), \
       (SELECT default_version::text FROM pg_available_extensions WHERE name = 'pglogical')";

/// `wal_level`, ordered so `level >= WalLevel::Logical` reads naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalLevel {
    /// `minimal`: no archiving, no standbys.
    Minimal,
    /// `replica` (before 9.6 also spelled `archive` and `hot_standby`).
    Replica,
    /// `logical`: what logical decoding and pglogical need.
    Logical,
}

impl WalLevel {
    /// Parses the value of `wal_level`; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<WalLevel> {
        match value.trim().to_ascii_lowercase().as_str() {
            "minimal" => Some(WalLevel::Minimal),
            "replica" | "archive" | "hot_standby" => Some(WalLevel::Replica),
            "logical" => Some(WalLevel::Logical),
            _ => None,
        }
    }
}

impl fmt::Display for WalLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WalLevel::Minimal => "minimal",
            WalLevel::Replica => "replica",
            WalLevel::Logical => "logical",
        })
    }
}

/// One row of `pg_settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) value: String,
    pub(crate) pending_restart: bool,
}

impl Setting {
    fn pending_note(&self) -> &'static str {
        if self.pending_restart {
            " (a changed value in the configuration waits for a restart)"
        } else {
            ""
        }
    }

    fn int(&self) -> Option<i64> {
        self.value.trim().parse().ok()
    }
}

type Settings = HashMap<String, Setting>;

/// How the replication capacity of the source is used by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotUsage {
    /// Replication slots that are not pgmig's.
    pub(crate) foreign_slots: usize,
    /// WAL senders in use that do not serve one of pgmig's slots.
    pub(crate) foreign_senders: usize,
}

/// Checks the source: version, primary, `shared_preload_libraries`,
/// `wal_level`, `max_replication_slots`, `max_wal_senders`,
/// `wal_sender_timeout`, `max_worker_processes`, `track_commit_timestamp`,
/// the `pglogical` extension and the role's privileges.
///
/// `planned_slots` is the number of logical slots of the plan. Every slot
/// that already exists counts on top of it; [`super::run_checks`] instead
/// excludes pgmig's own slots, which are part of the plan.
///
/// A query that fails becomes a blocker naming the error; a lost
/// connection is returned as the error.
#[tracing::instrument(name = "check_source", skip_all, fields(planned_slots = planned_slots))]
pub async fn check_source(
    client: &impl GenericClient,
    planned_slots: usize,
) -> Result<Vec<Finding>> {
    source_findings(client, planned_slots, &[]).await
}

/// [`check_source`], not counting the slots named in `pgmig_slot_names`
/// (and the WAL senders serving them) as taken by others.
pub(crate) async fn source_findings(
    client: &impl GenericClient,
    planned_slots: usize,
    pgmig_slot_names: &[String],
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    match ServerVersion::query(client).await {
        Ok(v) => out.push(Finding::ok(
            SOURCE,
            ids::SOURCE_VERSION,
            format!("PostgreSQL {v}"),
        )),
        Err(e) => {
            // Nothing else can be judged on a server pgmig does not support.
            out.push(query_failed(SOURCE, ids::SOURCE_VERSION, e)?);
            return Ok(out);
        }
    }
    out.push(match admin::is_in_recovery(client).await {
        Ok(false) => Finding::ok(SOURCE, ids::SOURCE_PRIMARY, "a primary (not in recovery)"),
        Ok(true) => Finding::blocker(
            SOURCE,
            ids::SOURCE_PRIMARY,
            "the source is a standby (in recovery): pglogical's slots, node and sets need the primary",
        )
        .with_fix("point --source (PGMIG_SOURCE, [source] dsn) at the production primary"),
        Err(e) => query_failed(SOURCE, ids::SOURCE_PRIMARY, e)?,
    });

    let settings_ids = [
        ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
        ids::SOURCE_WAL_LEVEL,
        ids::SOURCE_MAX_REPLICATION_SLOTS,
        ids::SOURCE_MAX_WAL_SENDERS,
        ids::SOURCE_WAL_SENDER_TIMEOUT,
        ids::SOURCE_MAX_WORKER_PROCESSES,
        ids::SOURCE_TRACK_COMMIT_TIMESTAMP,
    ];
    match read_settings(client).await {
        Ok((settings, gucs)) => match slot_usage(client, pgmig_slot_names).await {
            Ok(usage) => out.extend(judge_settings(&settings, gucs, planned_slots, usage)),
            Err(e) => {
                let text = failure_text(e)?;
                let mut judged = judge_settings(
                    &settings,
                    gucs,
                    planned_slots,
                    SlotUsage {
                        foreign_slots: 0,
                        foreign_senders: 0,
                    },
                );
                for f in &mut judged {
                    if f.check == ids::SOURCE_MAX_REPLICATION_SLOTS
                        || f.check == ids::SOURCE_MAX_WAL_SENDERS
                    {
                        *f = Finding::blocker(SOURCE, f.check, format!("could not check: {text}"));
                    }
                }
                out.extend(judged);
            }
        },
        Err(e) => {
            let text = failure_text(e)?;
            out.extend(
                settings_ids
                    .iter()
                    .map(|id| Finding::blocker(SOURCE, id, format!("could not check: {text}"))),
            );
        }
    }

    out.push(match extension(client).await {
        Ok((db, installed, available)) => {
            extension_finding(&db, installed.as_deref(), available.as_deref())
        }
        Err(e) => query_failed(SOURCE, ids::SOURCE_PGLOGICAL_EXTENSION, e)?,
    });
    out.push(super::grants::source_finding(client).await?);
    debug!(findings = out.len(), "source checked");
    Ok(out)
}

/// The error's text for a blocker, or the error itself when the connection
/// is gone.
fn failure_text(e: pgmig_core::Error) -> Result<String> {
    if e.kind() == pgmig_core::ErrorKind::Connection {
        return Err(e);
    }
    let text = error_text(&e);
    warn!(server = %SOURCE, error = %text, "check query failed");
    Ok(text)
}

async fn read_settings(client: &impl GenericClient) -> Result<(Settings, bool)> {
    let rows = client
        .query(SETTINGS_SQL, &[&SETTINGS])
        .await
        .map_err(pgmig_core::Error::query("read the source's settings"))?;
    let settings = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Setting {
                    value: r.get(1),
                    pending_restart: r.get::<_, Option<bool>>(2).unwrap_or(false),
                },
            )
        })
        .collect();
    let gucs: bool = client
        .query_one(PGLOGICAL_GUCS_SQL, &[])
        .await
        .map_err(pgmig_core::Error::query("look for pglogical's settings"))?
        .get(0);
    Ok((settings, gucs))
}

async fn slot_usage(client: &impl GenericClient, pgmig_slot_names: &[String]) -> Result<SlotUsage> {
    let row = client
        .query_one(SLOT_USAGE_SQL, &[&pgmig_slot_names])
        .await
        .map_err(pgmig_core::Error::query(
            "count replication slots and WAL senders",
        ))?;
    let count = |i: usize| usize::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    Ok(SlotUsage {
        foreign_slots: count(0),
        foreign_senders: count(1),
    })
}

async fn extension(
    client: &impl GenericClient,
) -> Result<(String, Option<String>, Option<String>)> {
    let row = client
        .query_one(EXTENSION_SQL, &[])
        .await
        .map_err(pgmig_core::Error::query("look up the pglogical extension"))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Splits a library list such as `shared_preload_libraries` the way the
/// server does: comma-separated, blanks around items ignored, items may be
/// double-quoted (`""` inside quotes is one `"`). Surrounding single quotes
/// (pasted from `postgresql.conf`) are ignored too.
pub(crate) fn parse_library_list(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    let value = trimmed
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(trimmed);
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let mut item = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.next_if_eq(&'"').is_some() => item.push('"'),
                    '"' => break,
                    c => item.push(c),
                }
            }
            // Anything between the closing quote and the comma is ignored.
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
                item.push(c);
            }
            item = item.trim().to_owned();
        }
        if !item.is_empty() {
            items.push(item);
        }
    }
    items
}

/// Whether a library list item names pglogical: `pglogical`,
/// `$libdir/pglogical`, or a path to `pglogical.so`.
pub(crate) fn is_pglogical_library(item: &str) -> bool {
    let base = item.rsplit('/').next().unwrap_or(item);
    base.strip_suffix(".so").unwrap_or(base) == "pglogical"
}

/// The library list as a `postgresql.conf` value, quoting items that need it.
fn render_library_list(items: &[String]) -> String {
    let rendered: Vec<String> = items
        .iter()
        .map(|item| {
            if item.contains([',', '"', ' ', '\'']) {
                format!("\"{}\"", item.replace('"', "\"\"").replace('\'', "''"))
            } else {
                item.clone()
            }
        })
        .collect();
    format!("'{}'", rendered.join(", "))
}

fn restart_fix(lines: &str, also: &str) -> String {
    format!("set in postgresql.conf:\n  {lines}\nthen restart the server (restart needed){also}")
}

/// Judges the settings; pure, so every rule is unit-tested.
pub(crate) fn judge_settings(
    settings: &Settings,
    pglogical_gucs_loaded: bool,
    planned_slots: usize,
    usage: SlotUsage,
) -> Vec<Finding> {
    let missing = |id: &'static str, name: &str| {
        Finding::blocker(
            SOURCE,
            id,
            format!("{name} is not visible to this role in pg_settings"),
        )
        .with_fix("run pgmig check as a superuser, or GRANT pg_read_all_settings to the role (10+)")
    };
    let mut out = Vec::new();

    // shared_preload_libraries
    out.push(match settings.get("shared_preload_libraries") {
        Some(s) => {
            let items = parse_library_list(&s.value);
            if items.iter().any(|i| is_pglogical_library(i)) {
                Finding::ok(
                    SOURCE,
                    ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
                    format!("contains pglogical ({})", s.value),
                )
            } else {
                let mut wanted = items.clone();
                wanted.push("pglogical".into());
                let shown = if s.value.trim().is_empty() {
                    "is empty".to_owned()
                } else {
                    format!("is {}", s.value)
                };
                Finding::blocker(
                    SOURCE,
                    ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
                    format!(
                        "shared_preload_libraries {shown}: pglogical is not loaded{}",
                        s.pending_note()
                    ),
                )
                .with_fix(restart_fix(
                    &format!("shared_preload_libraries = {}", render_library_list(&wanted)),
                    "; on RDS: add pglogical to shared_preload_libraries in the DB parameter group and reboot",
                ))
            }
        }
        // Hidden from this role: pglogical's own settings tell whether it is loaded.
        None if pglogical_gucs_loaded => Finding::ok(
            SOURCE,
            ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
            "pglogical is loaded (its settings exist; shared_preload_libraries itself is hidden from this role)",
        ),
        None => missing(
            ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
            "shared_preload_libraries",
        ),
    });

    // wal_level
    out.push(match settings.get("wal_level") {
        Some(s) => match WalLevel::parse(&s.value) {
            Some(level) if level >= WalLevel::Logical => {
                Finding::ok(SOURCE, ids::SOURCE_WAL_LEVEL, "wal_level = logical")
            }
            _ => Finding::blocker(
                SOURCE,
                ids::SOURCE_WAL_LEVEL,
                format!(
                    "wal_level is {}; logical decoding needs logical{}",
                    s.value,
                    s.pending_note()
                ),
            )
            .with_fix(restart_fix(
                "wal_level = logical",
                "; on RDS: rds.logical_replication = 1 in the DB parameter group, then reboot",
            )),
        },
        None => missing(ids::SOURCE_WAL_LEVEL, "wal_level"),
    });

    // max_replication_slots and max_wal_senders
    let capacity = |id: &'static str,
                    name: &str,
                    others: usize,
                    (one, many): (&str, &str),
                    also: &str| {
        let needed = planned_slots + others;
        let others_what = if others == 1 { one } else { many };
        match settings.get(name) {
            Some(s) => match s.int() {
                Some(have) if have >= needed as i64 => Finding::ok(
                    SOURCE,
                    id,
                    format!(
                        "{name} = {have} ≥ {needed} needed ({planned_slots} planned + {others} {others_what})"
                    ),
                ),
                _ => Finding::blocker(
                    SOURCE,
                    id,
                    format!(
                        "{name} = {} < {needed} needed ({planned_slots} planned + {others} {others_what}){}",
                        s.value,
                        s.pending_note()
                    ),
                )
                .with_fix(restart_fix(&format!("{name} = {needed}"), also)),
            },
            None => missing(id, name),
        }
    };
    out.push(capacity(
        ids::SOURCE_MAX_REPLICATION_SLOTS,
        "max_replication_slots",
        usage.foreign_slots,
        ("other slot already there", "other slots already there"),
        "",
    ));
    out.push(capacity(
        ids::SOURCE_MAX_WAL_SENDERS,
        "max_wal_senders",
        usage.foreign_senders,
        (
            "WAL sender in use by others",
            "WAL senders in use by others",
        ),
        "; raise it on the standbys first: from 12 on a hot standby refuses to start \
         with a lower value than its primary's",
    ));

    // wal_sender_timeout
    out.push(match settings.get("wal_sender_timeout") {
        Some(s) if s.int() == Some(0) => Finding::ok(
            SOURCE,
            ids::SOURCE_WAL_SENDER_TIMEOUT,
            "wal_sender_timeout = 0",
        ),
        Some(s) => Finding::warn(
            SOURCE,
            ids::SOURCE_WAL_SENDER_TIMEOUT,
            format!(
                "wal_sender_timeout = {} ms: a CDC consumer that pauses longer (a long load, \
                 a big transaction) is disconnected",
                s.value
            ),
        )
        .with_fix(
            "set in postgresql.conf:\n  wal_sender_timeout = 0\nthen reload \
             (SELECT pg_reload_conf(); no restart needed); on RDS: the DB parameter group",
        ),
        None => missing(ids::SOURCE_WAL_SENDER_TIMEOUT, "wal_sender_timeout"),
    });

    // max_worker_processes
    let workers_needed = planned_slots + PGLOGICAL_WORKER_MARGIN;
    out.push(match settings.get("max_worker_processes") {
        Some(s) => match s.int() {
            Some(have) if have >= workers_needed as i64 => Finding::ok(
                SOURCE,
                ids::SOURCE_MAX_WORKER_PROCESSES,
                format!(
                    "max_worker_processes = {have} ≥ {workers_needed} \
                     ({planned_slots} planned slots + {PGLOGICAL_WORKER_MARGIN} for pglogical and PostgreSQL)"
                ),
            ),
            _ => Finding::warn(
                SOURCE,
                ids::SOURCE_MAX_WORKER_PROCESSES,
                format!(
                    "max_worker_processes = {} < {workers_needed} \
                     ({planned_slots} planned slots + {PGLOGICAL_WORKER_MARGIN} for pglogical's \
                     supervisor and manager, the launcher and a spare){}",
                    s.value,
                    s.pending_note()
                ),
            )
            .with_fix(restart_fix(
                &format!("max_worker_processes = {workers_needed}"),
                "; raise it on the standbys first: a hot standby refuses to start with a \
                 lower value than its primary's",
            )),
        },
        None => missing(ids::SOURCE_MAX_WORKER_PROCESSES, "max_worker_processes"),
    });

    // track_commit_timestamp
    out.push(match settings.get("track_commit_timestamp") {
        Some(s) if s.value.trim().eq_ignore_ascii_case("on") => Finding::ok(
            SOURCE,
            ids::SOURCE_TRACK_COMMIT_TIMESTAMP,
            "track_commit_timestamp = on",
        ),
        Some(s) => Finding::warn(
            SOURCE,
            ids::SOURCE_TRACK_COMMIT_TIMESTAMP,
            format!(
                "track_commit_timestamp is {}: pglogical cannot resolve conflicts by commit \
                 time and commit times are not reported{}",
                s.value,
                s.pending_note()
            ),
        )
        .with_fix(restart_fix("track_commit_timestamp = on", "")),
        None => missing(ids::SOURCE_TRACK_COMMIT_TIMESTAMP, "track_commit_timestamp"),
    });
    out
}

/// Judges the extension lookup: installed (with its version), installable,
/// or absent from the server.
pub(crate) fn extension_finding(
    database: &str,
    installed: Option<&str>,
    available: Option<&str>,
) -> Finding {
    let id = ids::SOURCE_PGLOGICAL_EXTENSION;
    match (installed, available) {
        (Some(v), _) => Finding::ok(
            SOURCE,
            id,
            format!("pglogical {v} installed in database {database}"),
        ),
        // `pgmig setup` creates it; the privilege check says whether it may.
        (None, Some(v)) => Finding::warn(
            SOURCE,
            id,
            format!(
                "pglogical is not installed in database {database} yet (version {v} is available); \
                 `pgmig setup` creates it"
            ),
        )
        .with_fix(format!(
            "nothing to do when pgmig setup runs as a superuser (or rds_superuser); otherwise, connected to \
             database {} as one, run:\n  CREATE EXTENSION pglogical;",
            quote_ident(database)
        )),
        (None, None) => Finding::blocker(
            SOURCE,
            id,
            format!(
                "pglogical is not available on this server (not in pg_available_extensions), \
                 so it cannot be installed in database {database}"
            ),
        )
        .with_fix(
            "install the pglogical package of the server's major version (Debian/Ubuntu: \
             postgresql-<major>-pglogical; RDS ships it), load it through \
             shared_preload_libraries, restart, then run:\n  CREATE EXTENSION pglogical;",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::finding::Severity;

    #[test]
    fn library_lists_parse_like_the_server() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("pglogical", &["pglogical"]),
            (
                "pg_stat_statements,pglogical",
                &["pg_stat_statements", "pglogical"],
            ),
            (
                "  pg_stat_statements ,  pglogical  ",
                &["pg_stat_statements", "pglogical"],
            ),
            ("'pglogical, auto_explain'", &["pglogical", "auto_explain"]),
            ("\"pglogical\", \"my,lib\"", &["pglogical", "my,lib"]),
            ("\"a\"\"b\"", &["a\"b"]),
            ("a,,b,", &["a", "b"]),
            ("$libdir/pglogical", &["$libdir/pglogical"]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_library_list(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn pglogical_is_recognised_by_name_or_path() {
        for yes in [
            "pglogical",
            "$libdir/pglogical",
            "/usr/lib/postgresql/15/lib/pglogical.so",
        ] {
            assert!(is_pglogical_library(yes), "{yes}");
        }
        for no in ["pglogical_output", "pg_stat_statements", "xpglogical", ""] {
            assert!(!is_pglogical_library(no), "{no}");
        }
    }

    #[test]
    fn wal_levels_are_ordered() {
        assert_eq!(WalLevel::parse("logical"), Some(WalLevel::Logical));
        assert_eq!(WalLevel::parse("hot_standby"), Some(WalLevel::Replica));
        assert_eq!(WalLevel::parse("bogus"), None);
        assert!(WalLevel::Replica < WalLevel::Logical);
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    Setting {
                        value: (*v).to_owned(),
                        pending_restart: false,
                    },
                )
            })
            .collect()
    }

    const GOOD: &[(&str, &str)] = &[
        ("shared_preload_libraries", "pg_stat_statements, pglogical"),
        ("wal_level", "logical"),
        ("max_replication_slots", "10"),
        ("max_wal_senders", "10"),
        ("wal_sender_timeout", "0"),
        ("max_worker_processes", "8"),
        ("track_commit_timestamp", "on"),
    ];

    fn severity_of(findings: &[Finding], id: &str) -> Severity {
        findings.iter().find(|f| f.check == id).unwrap().severity
    }

    #[test]
    fn good_settings_are_all_ok() {
        let usage = SlotUsage {
            foreign_slots: 2,
            foreign_senders: 1,
        };
        let found = judge_settings(&settings(GOOD), true, 4, usage);
        assert_eq!(found.len(), 7);
        assert!(
            found.iter().all(|f| f.severity == Severity::Ok),
            "{found:#?}"
        );
    }

    #[test]
    fn each_bad_setting_has_its_severity_and_fix() {
        let usage = SlotUsage {
            foreign_slots: 3,
            foreign_senders: 2,
        };
        let bad: &[(&str, &str, &str, Severity, &str)] = &[
            (
                "shared_preload_libraries",
                "pg_stat_statements",
                ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
                Severity::Blocker,
                "shared_preload_libraries = 'pg_stat_statements, pglogical'",
            ),
            (
                "shared_preload_libraries",
                "",
                ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
                Severity::Blocker,
                "shared_preload_libraries = 'pglogical'",
            ),
            (
                "wal_level",
                "replica",
                ids::SOURCE_WAL_LEVEL,
                Severity::Blocker,
                "wal_level = logical",
            ),
            (
                "max_replication_slots",
                "9",
                ids::SOURCE_MAX_REPLICATION_SLOTS,
                Severity::Blocker,
                "max_replication_slots = 10",
            ),
            (
                "max_wal_senders",
                "8",
                ids::SOURCE_MAX_WAL_SENDERS,
                Severity::Blocker,
                "max_wal_senders = 9",
            ),
            (
                "wal_sender_timeout",
                "60000",
                ids::SOURCE_WAL_SENDER_TIMEOUT,
                Severity::Warn,
                "wal_sender_timeout = 0",
            ),
            (
                "max_worker_processes",
                "8",
                ids::SOURCE_MAX_WORKER_PROCESSES,
                Severity::Warn,
                "max_worker_processes = 11",
            ),
            (
                "track_commit_timestamp",
                "off",
                ids::SOURCE_TRACK_COMMIT_TIMESTAMP,
                Severity::Warn,
                "track_commit_timestamp = on",
            ),
        ];
        for (name, value, id, severity, fix) in bad {
            let mut s = settings(GOOD);
            s.get_mut(*name).unwrap().value = (*value).to_owned();
            let found = judge_settings(&s, false, 7, usage);
            let f = found.iter().find(|f| f.check == *id).unwrap();
            assert_eq!(f.severity, *severity, "{name}={value}: {f:?}");
            let text = f.fix.as_deref().unwrap_or_default();
            assert!(text.contains(fix), "{name}={value}: {text}");
            let others = found.iter().filter(|f| f.check != *id);
            if ![
                "max_replication_slots",
                "max_wal_senders",
                "max_worker_processes",
            ]
            .contains(name)
            {
                // 7 planned + 3 others = 10 slots, + 2 = 9 senders: exactly enough.
                assert!(
                    others.clone().all(|f| f.severity == Severity::Ok
                        || f.check == ids::SOURCE_MAX_WORKER_PROCESSES),
                    "{name}: {found:#?}"
                );
            }
        }
    }

    #[test]
    fn restart_is_named_and_hidden_settings_fall_back() {
        let mut s = settings(GOOD);
        s.insert(
            "wal_level".into(),
            Setting {
                value: "replica".into(),
                pending_restart: true,
            },
        );
        let found = judge_settings(
            &s,
            true,
            1,
            SlotUsage {
                foreign_slots: 0,
                foreign_senders: 0,
            },
        );
        let wal = found
            .iter()
            .find(|f| f.check == ids::SOURCE_WAL_LEVEL)
            .unwrap();
        assert!(
            wal.summary.contains("waits for a restart"),
            "{}",
            wal.summary
        );
        assert!(wal.fix.as_deref().unwrap().contains("restart needed"));

        s.remove("shared_preload_libraries");
        let loaded = judge_settings(
            &s,
            true,
            1,
            SlotUsage {
                foreign_slots: 0,
                foreign_senders: 0,
            },
        );
        assert_eq!(
            severity_of(&loaded, ids::SOURCE_SHARED_PRELOAD_LIBRARIES),
            Severity::Ok
        );
        let unknown = judge_settings(
            &s,
            false,
            1,
            SlotUsage {
                foreign_slots: 0,
                foreign_senders: 0,
            },
        );
        assert_eq!(
            severity_of(&unknown, ids::SOURCE_SHARED_PRELOAD_LIBRARIES),
            Severity::Blocker
        );
    }

    #[test]
    fn extension_states() {
        let ok = extension_finding("app", Some("2.4.2"), Some("2.4.2"));
        assert_eq!(ok.severity, Severity::Ok);
        assert!(ok.summary.contains("2.4.2"));
        let installable = extension_finding("app", None, Some("2.4.2"));
        assert_eq!(installable.severity, Severity::Warn);
        assert!(
            installable
                .fix
                .unwrap()
                .contains("CREATE EXTENSION pglogical;")
        );
        let absent = extension_finding("app", None, None);
        assert_eq!(absent.severity, Severity::Blocker);
        assert!(absent.fix.unwrap().contains("postgresql-<major>-pglogical"));
    }
}
