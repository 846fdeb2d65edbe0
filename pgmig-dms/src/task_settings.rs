//! `ReplicationTaskSettings` for a CDC-only task into tables pgmig loaded:
//! nothing prepared on the target, LOBs sized from the source, every error
//! policy written out rather than left to defaults that differ between the
//! guide and the service.

use serde::Serialize;

use crate::lob::LobMode;

/// The task settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskSettings {
    /// Target tables and LOBs.
    pub target_metadata: TargetMetadata,
    /// Full-load settings; only `TargetTablePrepMode` matters to CDC.
    pub full_load_settings: FullLoadSettings,
    /// CloudWatch logging.
    pub logging: Logging,
    /// What source DDL does to the target.
    pub change_processing_ddl_handling_policy: DdlHandlingPolicy,
    /// Apply tuning.
    pub change_processing_tuning: ChangeProcessingTuning,
    /// Error policies.
    pub error_behavior: ErrorBehavior,
    /// DMS's own validation.
    pub validation_settings: ValidationSettings,
}

/// `TargetMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetMetadata {
    /// `""`: the source's schema names.
    pub target_schema: String,
    /// LOB columns are replicated.
    pub support_lobs: bool,
    /// Full LOB mode.
    pub full_lob_mode: bool,
    /// Chunk size in full LOB mode, KB.
    pub lob_chunk_size: u64,
    /// Limited LOB mode.
    pub limited_size_lob_mode: bool,
    /// The largest LOB in limited mode, KB (absent in full LOB mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lob_max_size: Option<u64>,
    /// `0`: no inline LOBs.
    pub inline_lob_max_size: u64,
    /// `false`: transactional apply, in commit order. Batch apply fails on
    /// tables with both a primary key and unique constraints, which the
    /// runbook keeps.
    pub batch_apply_enabled: bool,
    /// `false`: no recovery table on the target.
    pub task_recovery_table_enabled: bool,
}

/// `FullLoadSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FullLoadSettings {
    /// `DO_NOTHING`: the tables pgmig loaded are left as they are.
    pub target_table_prep_mode: &'static str,
    /// `false`.
    pub create_pk_after_full_load: bool,
    /// `false`.
    pub stop_task_cached_changes_applied: bool,
    /// `false`.
    pub stop_task_cached_changes_not_applied: bool,
}

/// `Logging`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Logging {
    /// CloudWatch logging on.
    pub enable_logging: bool,
    /// Per-component severities.
    pub log_components: Vec<LogComponent>,
}

/// One `LogComponents` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogComponent {
    /// E.g. `SOURCE_CAPTURE`.
    pub id: &'static str,
    /// E.g. `LOGGER_SEVERITY_DEFAULT`.
    pub severity: &'static str,
}

/// `ChangeProcessingDdlHandlingPolicy`: all off. pgmig moves the schema
/// itself, DDL capture is off on the source endpoint, and a table dropped
/// or truncated on the source must not silently take the target's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DdlHandlingPolicy {
    /// `false`.
    pub handle_source_table_dropped: bool,
    /// `false`.
    pub handle_source_table_truncated: bool,
    /// `false`.
    pub handle_source_table_altered: bool,
}

/// `ChangeProcessingTuning`, the documented defaults written out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ChangeProcessingTuning {
    pub batch_apply_preserve_transaction: bool,
    pub batch_apply_timeout_min: u32,
    pub batch_apply_timeout_max: u32,
    pub batch_apply_memory_limit: u32,
    pub batch_split_size: u32,
    pub min_transaction_size: u32,
    pub commit_timeout: u32,
    pub memory_limit_total: u32,
    pub memory_keep_time: u32,
    pub statement_cache_size: u32,
}

/// What happens on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorAction {
    /// Skip the record.
    IgnoreRecord,
    /// Log it to the control table and go on.
    LogError,
    /// Stop applying to the table.
    SuspendTable,
    /// Stop the task.
    StopTask,
}

/// `ErrorBehavior`. pgmig's default is strict: CDC starts exactly after the
/// load's snapshot, so any data, truncation, table or apply error means the
/// copies have diverged; the task stops and says so rather than logging
/// and going on (a CDC-only task cannot reload a suspended table).
/// Connection-level (recoverable) errors are retried without limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ErrorBehavior {
    pub data_error_policy: ErrorAction,
    pub data_truncation_error_policy: ErrorAction,
    pub data_error_escalation_policy: ErrorAction,
    pub data_error_escalation_count: u32,
    pub table_error_policy: ErrorAction,
    pub table_error_escalation_policy: ErrorAction,
    pub table_error_escalation_count: u32,
    /// -1: retry recoverable errors forever.
    pub recoverable_error_count: i32,
    pub recoverable_error_interval: u32,
    pub recoverable_error_throttling: bool,
    pub recoverable_error_throttling_max: u32,
    pub apply_error_delete_policy: ErrorAction,
    pub apply_error_insert_policy: ErrorAction,
    pub apply_error_update_policy: ErrorAction,
    pub apply_error_escalation_policy: ErrorAction,
    pub apply_error_escalation_count: u32,
    pub apply_error_fail_on_truncation_ddl: bool,
    /// `true`: a task whose mappings select nothing fails instead of idling.
    pub fail_on_no_tables_captured: bool,
    pub full_load_ignore_conflicts: bool,
}

impl ErrorBehavior {
    /// Every divergence stops the task; see the type's documentation.
    pub fn strict() -> ErrorBehavior {
        use ErrorAction::*;
        ErrorBehavior {
            data_error_policy: StopTask,
            data_truncation_error_policy: StopTask,
            data_error_escalation_policy: StopTask,
            data_error_escalation_count: 0,
            table_error_policy: StopTask,
            table_error_escalation_policy: StopTask,
            table_error_escalation_count: 0,
            recoverable_error_count: -1,
            recoverable_error_interval: 5,
            recoverable_error_throttling: true,
            recoverable_error_throttling_max: 1800,
            apply_error_delete_policy: StopTask,
            apply_error_insert_policy: StopTask,
            apply_error_update_policy: StopTask,
            apply_error_escalation_policy: StopTask,
            apply_error_escalation_count: 0,
            apply_error_fail_on_truncation_ddl: false,
            fail_on_no_tables_captured: true,
            full_load_ignore_conflicts: false,
        }
    }

    /// Apply conflicts (a row missing or already there) are logged to the
    /// target's `awsdms_apply_exceptions` table and the task goes on; data,
    /// truncation and table errors still stop it.
    pub fn log_apply_conflicts() -> ErrorBehavior {
        ErrorBehavior {
            apply_error_delete_policy: ErrorAction::LogError,
            apply_error_insert_policy: ErrorAction::LogError,
            apply_error_update_policy: ErrorAction::LogError,
            apply_error_escalation_policy: ErrorAction::LogError,
            ..ErrorBehavior::strict()
        }
    }
}

/// `ValidationSettings`: DMS validation off (`pgmig verify` compares the
/// data; DMS validation adds load on both servers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidationSettings {
    /// `false`.
    pub enable_validation: bool,
}

impl TaskSettings {
    /// The settings of a CDC task with `lob` mode and `errors` policies.
    pub fn cdc(lob: LobMode, errors: ErrorBehavior) -> TaskSettings {
        let (full, chunk, max) = match lob {
            LobMode::Limited { max_kb } => (false, 64, Some(max_kb)),
            LobMode::Full { chunk_kb } => (true, chunk_kb, None),
        };
        let component = |id| LogComponent {
            id,
            severity: "LOGGER_SEVERITY_DEFAULT",
        };
        TaskSettings {
            target_metadata: TargetMetadata {
                target_schema: String::new(),
                support_lobs: true,
                full_lob_mode: full,
                lob_chunk_size: chunk,
                limited_size_lob_mode: !full,
                lob_max_size: max,
                inline_lob_max_size: 0,
                batch_apply_enabled: false,
                task_recovery_table_enabled: false,
            },
            full_load_settings: FullLoadSettings {
                target_table_prep_mode: "DO_NOTHING",
                create_pk_after_full_load: false,
                stop_task_cached_changes_applied: false,
                stop_task_cached_changes_not_applied: false,
            },
            logging: Logging {
                enable_logging: true,
                log_components: [
                    "SOURCE_CAPTURE",
                    "SOURCE_UNLOAD",
                    "SORTER",
                    "TARGET_APPLY",
                    "TASK_MANAGER",
                ]
                .into_iter()
                .map(component)
                .collect(),
            },
            change_processing_ddl_handling_policy: DdlHandlingPolicy {
                handle_source_table_dropped: false,
                handle_source_table_truncated: false,
                handle_source_table_altered: false,
            },
            change_processing_tuning: ChangeProcessingTuning {
                batch_apply_preserve_transaction: true,
                batch_apply_timeout_min: 1,
                batch_apply_timeout_max: 30,
                batch_apply_memory_limit: 500,
                batch_split_size: 0,
                min_transaction_size: 1000,
                commit_timeout: 1,
                memory_limit_total: 1024,
                memory_keep_time: 60,
                statement_cache_size: 50,
            },
            error_behavior: errors,
            validation_settings: ValidationSettings {
                enable_validation: false,
            },
        }
    }

    /// The document as the compact JSON string the API takes.
    pub fn to_json(&self) -> String {
        // Plain structs of numbers, booleans and strings: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdc_settings_spell_out_lobs_and_policies() {
        let s = TaskSettings::cdc(LobMode::Limited { max_kb: 1536 }, ErrorBehavior::strict());
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["FullLoadSettings"]["TargetTablePrepMode"], "DO_NOTHING");
        assert_eq!(v["TargetMetadata"]["LimitedSizeLobMode"], true);
        assert_eq!(v["TargetMetadata"]["FullLobMode"], false);
        assert_eq!(v["TargetMetadata"]["LobMaxSize"], 1536);
        assert_eq!(v["ErrorBehavior"]["DataTruncationErrorPolicy"], "STOP_TASK");
        assert_eq!(v["ErrorBehavior"]["ApplyErrorInsertPolicy"], "STOP_TASK");
        assert_eq!(v["ErrorBehavior"]["RecoverableErrorCount"], -1);
        assert_eq!(v["ErrorBehavior"]["FailOnNoTablesCaptured"], true);

        let s = TaskSettings::cdc(
            LobMode::Full { chunk_kb: 64 },
            ErrorBehavior::log_apply_conflicts(),
        );
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["TargetMetadata"]["FullLobMode"], true);
        assert_eq!(v["TargetMetadata"]["LimitedSizeLobMode"], false);
        assert!(v["TargetMetadata"].get("LobMaxSize").is_none());
        assert_eq!(v["ErrorBehavior"]["ApplyErrorUpdatePolicy"], "LOG_ERROR");
        assert_eq!(v["ErrorBehavior"]["DataErrorPolicy"], "STOP_TASK");
    }
}
