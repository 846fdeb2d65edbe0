//! Writes the artifacts into a directory:
//!
//! ```text
//! DIR/README.md                     what is here and how to use it
//! DIR/manifest.json                 P, tasks, endpoints, LOB decisions, warnings
//! DIR/dms.sh                        create | start | status | watch | stats | stop
//! DIR/target-endpoint.json          CreateEndpoint input (unless --target-endpoint-arn)
//! DIR/<task-id>/source-endpoint.json          CreateEndpoint input for the slot
//! DIR/<task-id>/create-replication-task.json  CreateReplicationTask input
//! DIR/<task-id>/table-mappings.json           its TableMappings, readable
//! DIR/<task-id>/task-settings.json            its ReplicationTaskSettings, readable
//! ```
//!
//! Files are replaced whole (written beside, then renamed); nothing else in
//! the directory is touched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::artifacts::Artifacts;
use crate::error::{DmsError, Result};
use crate::lob::LobMode;
use crate::mapping::RuleAction;
use crate::script;

/// Writes every artifact into `dir` (created when missing) and returns the
/// files written, in order.
pub fn write_artifacts(dir: &Path, artifacts: &Artifacts) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut put = |rel: &str, content: &str, executable: bool| -> Result<()> {
        let path = dir.join(rel);
        write_file(&path, content.as_bytes(), executable)?;
        written.push(path);
        Ok(())
    };
    put("README.md", &readme(artifacts), false)?;
    put("manifest.json", &pretty(&Manifest::of(artifacts)), false)?;
    put("dms.sh", &script::render(artifacts), true)?;
    if let Some(target) = &artifacts.target_endpoint {
        put("target-endpoint.json", &pretty(target), false)?;
    }
    for slot in &artifacts.slots {
        let d = slot.task_id.as_str();
        put(
            &format!("{d}/source-endpoint.json"),
            &pretty(&slot.source_endpoint),
            false,
        )?;
        put(
            &format!("{d}/create-replication-task.json"),
            &pretty(&slot.create_task),
            false,
        )?;
        put(
            &format!("{d}/table-mappings.json"),
            &pretty(&slot.table_mappings),
            false,
        )?;
        put(
            &format!("{d}/task-settings.json"),
            &pretty(&slot.task_settings),
            false,
        )?;
    }
    Ok(written)
}

fn pretty(value: &impl Serialize) -> String {
    // Our own plain structs: serializing cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn write_file(path: &Path, content: &[u8], executable: bool) -> Result<()> {
    let io = |source| DmsError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).map_err(io)?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    std::fs::rename(&tmp, path).map_err(io)
}

/// `manifest.json`: what was generated, for people and scripts.
#[derive(Serialize)]
struct Manifest<'a> {
    pause_lsn: String,
    replication_instance_arn: &'a str,
    target_endpoint: Option<&'a str>,
    target_endpoint_arn: Option<&'a str>,
    tasks: Vec<ManifestTask<'a>>,
    password_env: Vec<(&'a str, &'a str)>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct ManifestTask<'a> {
    slot: &'a str,
    task_id: &'a str,
    source_endpoint: &'a str,
    tables: usize,
    lob: &'a crate::artifacts::LobDecision,
}

impl<'a> Manifest<'a> {
    fn of(a: &'a Artifacts) -> Manifest<'a> {
        Manifest {
            pause_lsn: a.pause_lsn.to_string(),
            replication_instance_arn: &a.replication_instance_arn,
            target_endpoint: a
                .target_endpoint
                .as_ref()
                .map(|t| t.endpoint_identifier.as_str()),
            target_endpoint_arn: a.target_endpoint_arn.as_deref(),
            tasks: a
                .slots
                .iter()
                .map(|s| ManifestTask {
                    slot: &s.slot,
                    task_id: s.task_id.as_str(),
                    source_endpoint: s.source_endpoint.endpoint_identifier.as_str(),
                    tables: s.tables.len(),
                    lob: &s.lob,
                })
                .collect(),
            password_env: a
                .password_env
                .iter()
                .map(|(id, var)| (id.as_str(), var.as_str()))
                .collect(),
            warnings: &a.warnings,
        }
    }
}

fn readme(a: &Artifacts) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# AWS DMS tasks for phase II\n\nGenerated by `pgmig dms generate`. One CDC-only task per pglogical slot, each \
         reading its slot from its native start point **P = {}** (the LSN at which the maintenance replica was \
         paused for the full load), so DMS applies exactly the transactions that committed after the load's \
         snapshot.\n",
        a.pause_lsn
    );
    s.push_str("| slot | task | tables | LOB mode |\n|---|---|---|---|\n");
    for slot in &a.slots {
        let lob = match slot.lob.mode {
            LobMode::Limited { max_kb } => format!("limited, LobMaxSize {max_kb} KB"),
            LobMode::Full { chunk_kb } => format!("full, LobChunkSize {chunk_kb} KB"),
        };
        let why = match &slot.lob.largest {
            Some(c) => format!(
                " (largest: {}.{} = {} bytes)",
                c.column.table, c.column.column, c.max_bytes
            ),
            None if slot.lob.measured => " (no LOB values)".into(),
            None => " (given, not measured)".into(),
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | {lob}{why} |",
            slot.slot,
            slot.task_id,
            slot.tables.len()
        );
    }
    s.push_str(
        "\n## Use\n\n```sh\n./dms.sh create   # endpoints (connection-tested), then tasks (ready)\n./dms.sh start    # start-replication\n./dms.sh watch    # status until interrupted; ./dms.sh stats for per-table counts\n```\n\n",
    );
    s.push_str("## Passwords\n\nNo file here holds a password. ");
    if a.password_env.is_empty() {
        s.push_str(
            "Every endpoint reads its credentials from AWS Secrets Manager \
             (`SecretsManagerSecretId` with `SecretsManagerAccessRoleArn`).\n",
        );
    } else {
        s.push_str(
            "`dms.sh create` reads each endpoint's password from an environment variable and passes it \
             to `aws dms create-endpoint` through a private temporary file (`--password file://…`), never \
             on a command line:\n\n",
        );
        let mut vars: Vec<&str> = a.password_env.iter().map(|(_, v)| v.as_str()).collect();
        vars.sort();
        vars.dedup();
        for v in vars {
            let _ = writeln!(s, "- `{v}`");
        }
        s.push_str(
            "\nTo keep passwords out of this machine entirely, regenerate with Secrets Manager \
             (`--source-secret-id`, `--target-secret-id`, `--secrets-role-arn`).\n",
        );
    }
    let explicit = a
        .slots
        .iter()
        .flat_map(|s| &s.table_mappings.rules)
        .any(|r| r.rule_action == RuleAction::Explicit);
    s.push_str(
        "\n## What the inputs say\n\n\
         - Source endpoints: `SlotName` (the slot), `PluginName` pglogical, `CaptureDdls` false (DMS creates no \
         event trigger or table on the source), `FailTasksOnLobTruncation` true (a LOB larger than `LobMaxSize` \
         stops the task instead of being truncated), `SslMode` at least `require`.\n",
    );
    s.push_str(if explicit {
        "- Table mappings: one `explicit` selection rule per table of the slot, with the exact catalog names.\n"
    } else {
        "- Table mappings: one selection rule per table of the slot, names escaped for DMS patterns \
         (`_` is written `[_]`, `%` `[%]`, `[` `[[]`), so each rule selects exactly its table.\n"
    });
    s.push_str(
        "- Task settings: `TargetTablePrepMode` DO_NOTHING (the tables were loaded by pgmig), DDL handling off, \
         transactional apply, the LOB mode in the table above, every error policy written out. \
         `Logging.EnableLogging` needs the `dms-cloudwatch-logs-role` IAM role.\n\
         - `CreateReplicationTask`: `MigrationType` cdc, `CdcStartPosition` P. The endpoint ARNs in these files \
         are placeholders that `dms.sh` replaces on the command line with the real ones.\n\
         - A task's start position is fixed when it is created: after a stop, `dms.sh start` resumes \
         (`resume-processing`); it never restarts a task from scratch.\n",
    );
    if !a.warnings.is_empty() {
        s.push_str("\n## Warnings\n\n");
        for w in &a.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}
