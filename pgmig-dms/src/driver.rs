//! The DMS API through the AWS SDK for Rust (feature `aws`): the same steps
//! as `dms.sh` — endpoints, tasks created at P, start (or resume), status,
//! stop, per-table statistics — for automation that would rather not shell
//! out to the AWS CLI.
//!
//! Idempotent like the script: an endpoint or task that exists (by
//! identifier) is reused, never recreated. The caller builds the
//! [`Client`]: region, credentials and HTTP client come with it. The
//! feature compiles the SDK without an HTTP client of its own (the heavy
//! part), so in production build the client from `aws-config`'s
//! `SdkConfig` (`Client::new(&aws_config::load_from_env().await)`), which
//! brings its default HTTPS client; the tests use the SDK's mock client.

use aws_sdk_databasemigration::Client;
use aws_sdk_databasemigration::error::DisplayErrorContext;
use aws_sdk_databasemigration::types::{
    self as sdk, DmsSslModeValue, Filter, MigrationTypeValue, PluginNameValue,
    ReplicationEndpointTypeValue, StartReplicationTaskTypeValue,
};
use pgmig_core::QualifiedTable;
use pgmig_core::config::Secret;
use serde::Serialize;
use tracing::info;

use crate::endpoint::{CreateEndpointInput, DmsSslMode, EndpointType};
use crate::error::{DmsError, Result};
use crate::identifier::DmsIdentifier;
use crate::task::{CreateReplicationTaskInput, Tag};

/// A replication task as DMS describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// Its identifier.
    pub identifier: String,
    /// Its ARN.
    pub arn: String,
    /// `creating`, `ready`, `starting`, `running`, `stopped`, `failed`…
    pub status: String,
    /// Why it stopped, if it did.
    pub stop_reason: Option<String>,
    /// The last failure, if any.
    pub last_failure_message: Option<String>,
    /// Where CDC started.
    pub cdc_start_position: Option<String>,
    /// Where it would resume.
    pub recovery_checkpoint: Option<String>,
}

/// What [`Driver::start_task`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOutcome {
    /// First start (`start-replication`) of a ready task.
    Started,
    /// A stopped or failed task resumed (`resume-processing`): a CDC task is
    /// never started over, which would lose its position.
    Resumed,
    /// It was already starting or running.
    AlreadyRunning,
}

/// One table's counters in a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// The table.
    pub table: QualifiedTable,
    /// E.g. `Table completed`, `Table error`.
    pub state: Option<String>,
    /// INSERTs captured.
    pub inserts: i64,
    /// UPDATEs captured.
    pub updates: i64,
    /// DELETEs captured.
    pub deletes: i64,
    /// DDLs captured.
    pub ddls: i64,
    /// INSERTs applied, when DMS reports it.
    pub applied_inserts: Option<i64>,
    /// UPDATEs applied.
    pub applied_updates: Option<i64>,
    /// DELETEs applied.
    pub applied_deletes: Option<i64>,
}

/// Drives DMS through an SDK client.
#[derive(Debug, Clone)]
pub struct Driver {
    client: Client,
}

fn api<E>(operation: &'static str) -> impl FnOnce(E) -> DmsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| DmsError::Api {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn filter(name: &str, value: &str) -> Result<Filter> {
    Filter::builder()
        .name(name)
        .values(value)
        .build()
        .map_err(api("build a filter"))
}

fn tags(tags: &[Tag]) -> Vec<sdk::Tag> {
    tags.iter()
        .map(|t| sdk::Tag::builder().key(&t.key).value(&t.value).build())
        .collect()
}

fn status_of(t: &sdk::ReplicationTask) -> TaskStatus {
    let s = |v: Option<&str>| v.map(str::to_owned);
    TaskStatus {
        identifier: t
            .replication_task_identifier()
            .unwrap_or_default()
            .to_owned(),
        arn: t.replication_task_arn().unwrap_or_default().to_owned(),
        status: t.status().unwrap_or_default().to_owned(),
        stop_reason: s(t.stop_reason()),
        last_failure_message: s(t.last_failure_message()),
        cdc_start_position: s(t.cdc_start_position()),
        recovery_checkpoint: s(t.recovery_checkpoint()),
    }
}

impl Driver {
    /// A driver over `client`.
    pub fn new(client: Client) -> Driver {
        Driver { client }
    }

    /// The ARN of the endpoint named `id`, if it exists.
    pub async fn endpoint_arn(&self, id: &DmsIdentifier) -> Result<Option<String>> {
        let out = Box::pin(
            self.client
                .describe_endpoints()
                .filters(filter("endpoint-id", id.as_str())?)
                .send(),
        )
        .await;
        match out {
            Ok(out) => Ok(out
                .endpoints()
                .first()
                .and_then(|e| e.endpoint_arn())
                .map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(e) => Err(api("DescribeEndpoints")(e)),
        }
    }

    /// Creates the endpoint of `input` unless one with its identifier
    /// exists, and returns its ARN. `password` is sent only to DMS, for an
    /// endpoint without Secrets Manager.
    pub async fn create_endpoint(
        &self,
        input: &CreateEndpointInput,
        password: Option<&Secret>,
    ) -> Result<String> {
        if let Some(arn) = self.endpoint_arn(&input.endpoint_identifier).await? {
            info!(endpoint = %input.endpoint_identifier, %arn, "endpoint exists");
            return Ok(arn);
        }
        let pg = &input.postgre_sql_settings;
        let settings = sdk::PostgreSqlSettings::builder()
            .set_slot_name(pg.slot_name.clone())
            .set_plugin_name(pg.plugin_name.map(|_| PluginNameValue::Pglogical))
            .set_capture_ddls(pg.capture_ddls)
            .set_fail_tasks_on_lob_truncation(pg.fail_tasks_on_lob_truncation)
            .set_heartbeat_enable(pg.heartbeat_enable)
            .set_heartbeat_frequency(pg.heartbeat_frequency.map(|m| m as i32))
            .set_secrets_manager_secret_id(pg.secrets_manager_secret_id.clone())
            .set_secrets_manager_access_role_arn(pg.secrets_manager_access_role_arn.clone())
            .build();
        let out = Box::pin(
            self.client
                .create_endpoint()
                .endpoint_identifier(input.endpoint_identifier.as_str())
                .endpoint_type(match input.endpoint_type {
                    EndpointType::Source => ReplicationEndpointTypeValue::Source,
                    EndpointType::Target => ReplicationEndpointTypeValue::Target,
                })
                .engine_name(&input.engine_name)
                .set_server_name(input.server_name.clone())
                .set_port(input.port.map(i32::from))
                .database_name(&input.database_name)
                .set_username(input.username.clone())
                .set_password(password.map(|p| p.expose().to_owned()))
                .ssl_mode(match input.ssl_mode {
                    DmsSslMode::Require => DmsSslModeValue::Require,
                    DmsSslMode::VerifyCa => DmsSslModeValue::VerifyCa,
                    DmsSslMode::VerifyFull => DmsSslModeValue::VerifyFull,
                })
                .set_certificate_arn(input.certificate_arn.clone())
                .postgre_sql_settings(settings)
                .set_tags(Some(tags(&input.tags)))
                .send(),
        )
        .await
        .map_err(api("CreateEndpoint"))?;
        let arn = out
            .endpoint()
            .and_then(|e| e.endpoint_arn())
            .ok_or_else(|| DmsError::Api {
                operation: "CreateEndpoint",
                message: "no endpoint ARN in the response".into(),
            })?;
        info!(endpoint = %input.endpoint_identifier, %arn, "endpoint created");
        Ok(arn.to_owned())
    }

    /// The task named `id`, if it exists.
    pub async fn task(&self, id: &DmsIdentifier) -> Result<Option<TaskStatus>> {
        let out = Box::pin(
            self.client
                .describe_replication_tasks()
                .filters(filter("replication-task-id", id.as_str())?)
                .without_settings(true)
                .send(),
        )
        .await;
        match out {
            Ok(out) => Ok(out.replication_tasks().first().map(status_of)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_fault()) =>
            {
                Ok(None)
            }
            Err(e) => Err(api("DescribeReplicationTasks")(e)),
        }
    }

    /// Creates the task of `input` with these endpoints unless one with its
    /// identifier exists (returned as it is: a task's start position is
    /// fixed at creation, so it is never recreated).
    pub async fn create_task(
        &self,
        input: &CreateReplicationTaskInput,
        source_endpoint_arn: &str,
        target_endpoint_arn: &str,
    ) -> Result<TaskStatus> {
        if let Some(task) = self.task(&input.replication_task_identifier).await? {
            info!(task = %task.identifier, status = %task.status, "task exists");
            return Ok(task);
        }
        let out = Box::pin(
            self.client
                .create_replication_task()
                .replication_task_identifier(input.replication_task_identifier.as_str())
                .source_endpoint_arn(source_endpoint_arn)
                .target_endpoint_arn(target_endpoint_arn)
                .replication_instance_arn(&input.replication_instance_arn)
                .migration_type(MigrationTypeValue::Cdc)
                .table_mappings(&input.table_mappings)
                .replication_task_settings(&input.replication_task_settings)
                .cdc_start_position(&input.cdc_start_position)
                .set_tags(Some(tags(&input.tags)))
                .send(),
        )
        .await
        .map_err(api("CreateReplicationTask"))?;
        let task = out
            .replication_task()
            .map(status_of)
            .ok_or_else(|| DmsError::Api {
                operation: "CreateReplicationTask",
                message: "no task in the response".into(),
            })?;
        info!(task = %task.identifier, start = %input.cdc_start_position, "task created");
        Ok(task)
    }

    /// Starts the task named `id`: `start-replication` when it is ready
    /// (its first start), `resume-processing` when stopped or failed,
    /// nothing when starting or running. Any other state is an error.
    pub async fn start_task(&self, id: &DmsIdentifier) -> Result<StartOutcome> {
        let task = self.existing(id).await?;
        let (kind, outcome) = match task.status.as_str() {
            "ready" => (
                StartReplicationTaskTypeValue::StartReplication,
                StartOutcome::Started,
            ),
            "stopped" | "failed" => (
                StartReplicationTaskTypeValue::ResumeProcessing,
                StartOutcome::Resumed,
            ),
            "starting" | "running" => return Ok(StartOutcome::AlreadyRunning),
            other => {
                return Err(DmsError::Api {
                    operation: "StartReplicationTask",
                    message: format!("task {id} is {other}: not started"),
                });
            }
        };
        self.client
            .start_replication_task()
            .replication_task_arn(&task.arn)
            .start_replication_task_type(kind)
            .send()
            .await
            .map_err(api("StartReplicationTask"))?;
        info!(task = %id, ?outcome, "task started");
        Ok(outcome)
    }

    /// Stops the task named `id` when it is running; returns its state.
    pub async fn stop_task(&self, id: &DmsIdentifier) -> Result<TaskStatus> {
        let task = self.existing(id).await?;
        if task.status != "running" {
            return Ok(task);
        }
        let out = Box::pin(
            self.client
                .stop_replication_task()
                .replication_task_arn(&task.arn)
                .send(),
        )
        .await
        .map_err(api("StopReplicationTask"))?;
        Ok(out.replication_task().map(status_of).unwrap_or(task))
    }

    /// Every table's counters in the task named `id`, all pages.
    pub async fn table_statistics(&self, id: &DmsIdentifier) -> Result<Vec<TableStats>> {
        let task = self.existing(id).await?;
        let mut stats = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = Box::pin(
                self.client
                    .describe_table_statistics()
                    .replication_task_arn(&task.arn)
                    .max_records(500)
                    .set_marker(marker.take())
                    .send(),
            )
            .await
            .map_err(api("DescribeTableStatistics"))?;
            stats.extend(out.table_statistics().iter().map(|t| TableStats {
                table: QualifiedTable::new(
                    t.schema_name().unwrap_or_default(),
                    t.table_name().unwrap_or_default(),
                ),
                state: t.table_state().map(str::to_owned),
                inserts: t.inserts(),
                updates: t.updates(),
                deletes: t.deletes(),
                ddls: t.ddls(),
                applied_inserts: t.applied_inserts(),
                applied_updates: t.applied_updates(),
                applied_deletes: t.applied_deletes(),
            }));
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(stats)
    }

    async fn existing(&self, id: &DmsIdentifier) -> Result<TaskStatus> {
        self.task(id).await?.ok_or_else(|| DmsError::Api {
            operation: "DescribeReplicationTasks",
            message: format!("task {id} does not exist"),
        })
    }
}
