//! Schema transfer (`pgmig schema`): the source's schema dumped by a
//! `pg_dump` at least as new as the source, split into pre-data (schemas,
//! types, tables, sequences, functions, views — restored into the target
//! now, in one transaction) and post-data (indexes, constraints, foreign
//! keys, triggers, materialized view refreshes — kept in the target's
//! `pgmig.schema_section` for after the load, with the list of what was
//! deferred).
//!
//! One custom-format `--schema-only` dump gives both sections from the same
//! snapshot; `pg_restore --section` turns each into SQL, and its `-L` list
//! leaves out the `pglogical` extension unless asked for. The restore and the
//! record of it commit together, so a second run sees the record and changes
//! nothing.
//!
//! The migration's include/exclude filters apply here as everywhere: every
//! user table of the source they reject is left out of the dump with an
//! exact `--exclude-table` pattern. A rejected partitioned parent takes its
//! partitions with it (a partition cannot be restored without its parent);
//! a rejected partition of a kept parent is just left out.

mod filter;
mod globals;
mod sections;
mod toc;
mod tools;
mod unique_rebuild;

use std::path::PathBuf;

use pgmig_core::catalog::list_tables;
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::Filters;
use pgmig_core::{Major, QualifiedTable, ServerRole, ServerVersion};
use serde::Serialize;
use tracing::{Instrument, info, info_span};

pub use filter::{dump_pattern, excluded_tables};
pub use globals::{Globals, filter_globals, is_provider_role};
pub use sections::{DumpedSchema, SectionRecord, StoredSections, stored_sections, user_relations};
pub use toc::{TocEntry, parse_list};
pub use tools::{ClientTools, PG_DUMP_ENV, ToolVersion, conn_env};
pub use unique_rebuild::{UniqueRebuild, unique_rebuilds};

/// Errors of the schema transfer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// No usable `pg_dump` was found.
    #[error(
        "no pg_dump that can dump a PostgreSQL {source_major} source was found (found: {looked}); \
         install the client tools of version {minimum} or newer (an older minor lacks the \
         CVE-2025-8714 fix), e.g. \
         `apt-get install postgresql-client-{source_major}`, or point {PG_DUMP_ENV} at such a pg_dump"
    )]
    ToolNotFound {
        /// The source's major.
        source_major: Major,
        /// What was found, with versions.
        looked: String,
        /// The oldest acceptable version.
        minimum: String,
    },
    /// The `pg_dump` named by `PGMIG_PG_DUMP` is older than the source.
    #[error(
        "{path} is version {found} and cannot dump a PostgreSQL {source_major} source \
         (version {minimum} or newer is needed; older minors lack the CVE-2025-8714 fix); \
         install `postgresql-client-{source_major}` (or newer) and point {PG_DUMP_ENV} at its pg_dump"
    )]
    ToolTooOld {
        /// The tool.
        path: String,
        /// Its version.
        found: String,
        /// The source's major.
        source_major: Major,
        /// The oldest acceptable version.
        minimum: String,
    },
    /// The `pg_dump` named by `PGMIG_PG_DUMP` or `--pg-dump` cannot be run.
    #[error("{path} (named by {PG_DUMP_ENV} or --pg-dump) is not a runnable pg_dump")]
    ToolUnusable {
        /// The path given.
        path: String,
        /// Why it cannot be run.
        #[source]
        source: Box<SchemaError>,
    },
    /// A client tool could not be started or its output read.
    #[error("running {tool}")]
    Io {
        /// The tool.
        tool: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A client tool exited with an error; `stderr` has passwords redacted.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// The tool.
        tool: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, redacted.
        stderr: String,
    },
    /// A temporary file could not be written or read.
    #[error("temporary dump file")]
    TempFile(#[source] std::io::Error),
    /// The target holds user relations that pgmig did not restore.
    #[error(
        "the target already holds user relations that pgmig did not restore ({relations}); \
         restore the schema into an empty database, or drop them first"
    )]
    TargetNotEmpty {
        /// Some of them, qualified.
        relations: String,
    },
    /// The target holds a pre-data section from a different source schema.
    #[error(
        "the target holds a schema that pgmig restored (dumped at {dumped_at}) but today's dump of the source differs: \
         the source's schema changed since, or the options did (--no-owner, --with-pglogical, the table filters); \
         re-create the target database (or `pgmig cleanup` it) and run `pgmig schema` again"
    )]
    SourceChanged {
        /// When the recorded pre-data was dumped.
        dumped_at: String,
    },
    /// A connection or query failed.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
}

impl SchemaError {
    /// Whether the error is a refusal to act on a target in an unexpected
    /// state (rather than a failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SchemaError::TargetNotEmpty { .. } | SchemaError::SourceChanged { .. }
        )
    }

    /// Whether the error is about the environment or configuration (a missing
    /// or too old client tool).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SchemaError::ToolNotFound { .. }
                | SchemaError::ToolTooOld { .. }
                | SchemaError::ToolUnusable { .. }
        )
    }
}

/// How `pgmig schema` runs. `Default` is: keep owners, leave out pglogical,
/// no globals, apply for real, find `pg_dump` on its own, every table.
#[derive(Debug, Clone, Default)]
pub struct SchemaOptions {
    /// Leave out `ALTER … OWNER TO` (restore as the connecting role). Default: keep owners.
    pub no_owner: bool,
    /// Copy the `pglogical` extension and schema too. Default: leave them out.
    pub with_pglogical: bool,
    /// Restore roles (globals) into the target before the pre-data. Default: no.
    pub with_globals: bool,
    /// Change nothing; report what would be applied. Default: apply.
    pub dry_run: bool,
    /// The `pg_dump` to use. Default: `PGMIG_PG_DUMP`, else the newest found.
    pub pg_dump: Option<PathBuf>,
    /// Which tables to transfer (the migration's include/exclude filters).
    /// Default: every table.
    pub filters: Filters,
}

/// What happened to the pre-data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreDataAction {
    /// Restored now.
    Restored,
    /// The target already holds exactly this pre-data; nothing changed.
    AlreadyRestored,
    /// Dry run: would be restored.
    WouldRestore,
}

/// What `pgmig schema` did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReport {
    /// The directory of the client tools used.
    pub tools: String,
    /// Their version.
    pub pg_dump_version: String,
    /// The source's `server_version_num`.
    pub source_version: u32,
    /// The target's `server_version_num`.
    pub target_version: u32,
    /// What happened to the pre-data.
    pub pre_data: PreDataAction,
    /// The pre-data objects (restored, or to restore).
    pub pre_data_objects: Vec<TocEntry>,
    /// The pre-data SQL; only in dry runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_data_sql: Option<String>,
    /// The post-data objects kept for after the load.
    pub deferred: Vec<TocEntry>,
    /// Whether the recorded post-data was replaced by today's (the pre-data
    /// was already restored but the source's post-data changed since); in
    /// a dry run, whether it would be.
    pub post_data_updated: bool,
    /// The post-data SQL; only in dry runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_data_sql: Option<String>,
    /// Objects of the source left out on purpose (the pglogical extension).
    pub left_out: Vec<TocEntry>,
    /// Tables of the source left out of the dump by the filters (with the
    /// partitions of a rejected partitioned parent), sorted.
    pub excluded_tables: Vec<QualifiedTable>,
    /// Drop and recreate statements for extra unique indexes of tables with
    /// a primary key (for DBAs doing this by hand; pgmig defers them anyway).
    pub unique_rebuilds: Vec<UniqueRebuild>,
    /// The globals, when `with_globals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub globals: Option<GlobalsReport>,
}

/// The globals part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsReport {
    /// Whether they were applied (false in dry runs).
    pub applied: bool,
    /// The SQL (applied or to apply).
    pub sql: String,
    /// What was left out and why.
    pub left_out: Vec<String>,
}

/// Transfers the schema from `source` to `target` as described in the
/// module docs; with `opts.dry_run`, only reads both servers.
pub async fn transfer_schema(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &SchemaOptions,
) -> Result<SchemaReport, SchemaError> {
    let span = info_span!("transfer_schema", dry_run = opts.dry_run);
    async move {
        let src = source.connect().await?;
        let source_version = ServerVersion::query(&src).await?;
        let tgt = target.connect().await?;
        let target_version = ServerVersion::query(&tgt).await?;
        let tools = match &opts.pg_dump {
            Some(path) => {
                ClientTools::locate_from(
                    source_version.major(),
                    Some(path.clone().into_os_string()),
                    None,
                )
                .await?
            }
            None => ClientTools::locate(source_version.major()).await?,
        };
        info!(tools = %tools.bin_dir().display(), version = %tools.version(), "using client tools");

        let excluded = if opts.filters.is_empty() {
            Vec::new()
        } else {
            excluded_tables(&list_tables(&src, source_version).await?, &opts.filters)
        };
        if !excluded.is_empty() {
            info!(
                tables = excluded.len(),
                "leaving out the tables the filters reject"
            );
        }
        let dumped = sections::dump(&tools, source, &src, opts, &excluded).await?;
        let excluded_quoted: Vec<String> = excluded.iter().map(QualifiedTable::quoted).collect();
        let rebuilds: Vec<UniqueRebuild> = unique_rebuilds(&src, source_version)
            .await?
            .into_iter()
            .filter(|r| !excluded_quoted.contains(&r.table))
            .collect();

        let globals = if opts.with_globals {
            let database = format!("--database={}", source.dbname().unwrap_or("postgres"));
            let dump = tools
                .run(
                    "pg_dumpall",
                    &["--globals-only", "--no-role-passwords", &database],
                    Some(source),
                    None,
                )
                .await?;
            Some(filter_globals(&dump))
        } else {
            None
        };

        let stored = stored_sections(&tgt).await?;
        let already = match &stored.pre_data {
            // Normalized again: a record of an older pgmig may still hold
            // the header lines or an unmasked password.
            Some(rec) if sections::normalize(&rec.sql) == dumped.pre_sql => true,
            Some(rec) => {
                return Err(SchemaError::SourceChanged {
                    dumped_at: rec.dumped_at.clone(),
                });
            }
            None => false,
        };
        if !already {
            let existing = user_relations(&tgt).await?;
            if !existing.is_empty() {
                return Err(SchemaError::TargetNotEmpty {
                    relations: existing.join(", "),
                });
            }
        }

        // The pre-data is in place but the source's post-data changed (an
        // index or constraint added since): the load must build today's.
        let post_data_updated = already
            && stored
                .post_data
                .as_ref()
                .is_none_or(|rec| sections::normalize(&rec.sql) != dumped.post_sql);
        // A record of an older pgmig may hold an unmasked user mapping
        // password: rewrite it masked.
        if already
            && !opts.dry_run
            && stored
                .pre_data
                .as_ref()
                .is_some_and(|rec| rec.sql != dumped.pre_sql)
        {
            tgt.execute(
                "UPDATE pgmig.schema_section SET sql = $1 WHERE name = 'pre-data'",
                &[&dumped.pre_sql],
            )
            .await
            .map_err(pgmig_core::Error::query("rewrite the recorded pre-data"))?;
        }
        if post_data_updated && !opts.dry_run {
            sections::update_post_data(&tgt, &dumped, source_version).await?;
            info!(
                deferred = dumped.deferred.len(),
                "the source's post-data changed; updated the recorded post-data"
            );
        }

        let mut globals_applied = false;
        let pre_data = if opts.dry_run {
            if already {
                PreDataAction::AlreadyRestored
            } else {
                PreDataAction::WouldRestore
            }
        } else {
            if let Some(g) = &globals {
                run_script(&tools, target, &g.sql).await?;
                globals_applied = true;
                info!(role = %ServerRole::Target, "applied globals");
            }
            if already {
                info!("target already holds this pre-data; nothing to restore");
                PreDataAction::AlreadyRestored
            } else {
                let script = sections::restore_script(&dumped, source_version);
                run_script(&tools, target, &script).await?;
                info!(
                    objects = dumped.pre_objects.len(),
                    deferred = dumped.deferred.len(),
                    "restored pre-data and recorded post-data"
                );
                PreDataAction::Restored
            }
        };

        Ok(SchemaReport {
            tools: tools.bin_dir().display().to_string(),
            pg_dump_version: tools.version().to_string(),
            source_version: source_version.num(),
            target_version: target_version.num(),
            pre_data,
            post_data_updated,
            pre_data_sql: opts.dry_run.then(|| dumped.pre_sql.clone()),
            post_data_sql: opts.dry_run.then(|| dumped.post_sql.clone()),
            pre_data_objects: dumped.pre_objects,
            deferred: dumped.deferred,
            left_out: dumped.left_out,
            excluded_tables: excluded,
            unique_rebuilds: rebuilds,
            globals: globals.map(|g| GlobalsReport {
                applied: globals_applied,
                sql: g.sql,
                left_out: g.left_out,
            }),
        })
    }
    .instrument(span)
    .await
}

/// Runs an SQL script on `target` with psql: all of it in one transaction,
/// stopping at the first error, so a failure changes nothing.
async fn run_script(
    tools: &ClientTools,
    target: &ConnConfig,
    sql: &str,
) -> Result<(), SchemaError> {
    tools
        .run(
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                "-",
            ],
            Some(target),
            Some(sql),
        )
        .await?;
    Ok(())
}
