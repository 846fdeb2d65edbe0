//! The DMS driver (feature `aws`) against the AWS SDK's mock client: what
//! it sends for each step, and that it reuses what exists, resumes rather
//! than restarts, reads every page of statistics and names the failing
//! operation. No AWS call. Run with `cargo test -p pgmig-dms --features aws-mock`.

#![cfg(feature = "aws-mock")]

use aws_sdk_databasemigration::Client;
use aws_sdk_databasemigration::operation::create_endpoint::CreateEndpointOutput;
use aws_sdk_databasemigration::operation::create_replication_task::CreateReplicationTaskOutput;
use aws_sdk_databasemigration::operation::describe_endpoints::{
    DescribeEndpointsError, DescribeEndpointsOutput,
};
use aws_sdk_databasemigration::operation::describe_replication_tasks::{
    DescribeReplicationTasksError, DescribeReplicationTasksOutput,
};
use aws_sdk_databasemigration::operation::describe_table_statistics::{
    DescribeTableStatisticsError, DescribeTableStatisticsOutput,
};
use aws_sdk_databasemigration::operation::start_replication_task::StartReplicationTaskOutput;
use aws_sdk_databasemigration::operation::stop_replication_task::StopReplicationTaskOutput;
use aws_sdk_databasemigration::types::error::{AccessDeniedFault, ResourceNotFoundFault};
use aws_sdk_databasemigration::types::{
    DmsSslModeValue, Endpoint, MigrationTypeValue, PluginNameValue, ReplicationTask,
    StartReplicationTaskTypeValue, TableStatistics,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use pgmig_core::config::{ConnConfig, Secret};
use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::{Lsn, QualifiedTable};
use pgmig_dms::driver::{Driver, StartOutcome};
use pgmig_dms::{
    ArtifactOptions, Artifacts, Credentials, DmsError, DmsIdentifier, EndpointConn, LobChoice,
    SOURCE_PASSWORD_ENV, TargetEndpoint, generate,
};

const TASK_ARN: &str = "arn:aws:dms:eu-west-1:1:task:T1";

fn artifacts() -> Artifacts {
    let plan = Plan {
        slots: vec![SlotGroup {
            slot: "dms_slot_01".into(),
            tables: vec![PlannedTable {
                table: QualifiedTable::new("public", "order_items"),
                has_identity_index: true,
                bytes: 1,
                facts: Default::default(),
            }],
            role: Default::default(),
        }],
        ..Plan::default()
    };
    let conn = ConnConfig::parse("host=db dbname=app user=mig").unwrap();
    let source = EndpointConn::from_conn(&conn, "source", None, None, None).unwrap();
    let opts = ArtifactOptions::new(
        "arn:aws:dms:eu-west-1:1:rep:I",
        source,
        Credentials::PasswordAtCreation {
            env_var: SOURCE_PASSWORD_ENV.into(),
        },
        TargetEndpoint::Existing {
            arn: "arn:aws:dms:eu-west-1:1:endpoint:T".into(),
        },
        LobChoice::Limited(64),
    );
    generate(&plan, "35FE3/B63D4718".parse::<Lsn>().unwrap(), &opts).unwrap()
}

fn task(status: &str) -> ReplicationTask {
    ReplicationTask::builder()
        .replication_task_identifier("pgmig-dms-slot-01")
        .replication_task_arn(TASK_ARN)
        .status(status)
        .cdc_start_position("35FE3/B63D4718")
        .build()
}

fn id(s: &str) -> DmsIdentifier {
    DmsIdentifier::parse(s).unwrap()
}

#[tokio::test]
async fn endpoint_created_once_with_the_password_sent_only_to_dms() {
    let a = artifacts();
    let input = &a.slots[0].source_endpoint;
    let missing = mock!(Client::describe_endpoints).then_error(|| {
        DescribeEndpointsError::ResourceNotFoundFault(ResourceNotFoundFault::builder().build())
    });
    let create = mock!(Client::create_endpoint)
        .match_requests(|r| {
            r.endpoint_identifier() == Some("pgmig-src-dms-slot-01")
                && r.password() == Some("pw")
                && r.ssl_mode() == Some(&DmsSslModeValue::Require)
                && r.postgre_sql_settings().is_some_and(|s| {
                    s.slot_name() == Some("dms_slot_01")
                        && s.plugin_name() == Some(&PluginNameValue::Pglogical)
                        && s.capture_ddls() == Some(false)
                        && s.fail_tasks_on_lob_truncation() == Some(true)
                })
        })
        .then_output(|| {
            CreateEndpointOutput::builder()
                .endpoint(Endpoint::builder().endpoint_arn("arn:src").build())
                .build()
        });
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&missing, &create]
    );
    let driver = Driver::new(client);
    let arn = driver
        .create_endpoint(input, Some(&Secret::new("pw")))
        .await
        .unwrap();
    assert_eq!(arn, "arn:src");
    assert_eq!(create.num_calls(), 1);

    // It exists: reused, nothing created.
    let exists = mock!(Client::describe_endpoints).then_output(|| {
        DescribeEndpointsOutput::builder()
            .endpoints(Endpoint::builder().endpoint_arn("arn:old").build())
            .build()
    });
    let never =
        mock!(Client::create_endpoint).then_output(|| CreateEndpointOutput::builder().build());
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&exists, &never]
    );
    let arn = Driver::new(client)
        .create_endpoint(input, None)
        .await
        .unwrap();
    assert_eq!(arn, "arn:old");
    assert_eq!(never.num_calls(), 0);
}

#[tokio::test]
async fn task_created_at_p_with_the_generated_documents() {
    let a = artifacts();
    let input = a.slots[0].create_task.clone();
    let expected = input.clone();
    let missing = mock!(Client::describe_replication_tasks).then_error(|| {
        DescribeReplicationTasksError::ResourceNotFoundFault(
            ResourceNotFoundFault::builder().build(),
        )
    });
    let create = mock!(Client::create_replication_task)
        .match_requests(move |r| {
            r.replication_task_identifier() == Some("pgmig-dms-slot-01")
                && r.migration_type() == Some(&MigrationTypeValue::Cdc)
                && r.cdc_start_position() == Some("35FE3/B63D4718")
                && r.cdc_start_time().is_none()
                && r.source_endpoint_arn() == Some("arn:src")
                && r.target_endpoint_arn() == Some("arn:tgt")
                && r.table_mappings() == Some(expected.table_mappings.as_str())
                && r.replication_task_settings()
                    == Some(expected.replication_task_settings.as_str())
        })
        .then_output(|| {
            CreateReplicationTaskOutput::builder()
                .replication_task(task("creating"))
                .build()
        });
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&missing, &create]
    );
    let status = Driver::new(client)
        .create_task(&input, "arn:src", "arn:tgt")
        .await
        .unwrap();
    assert_eq!(status.status, "creating");
    assert_eq!(status.arn, TASK_ARN);
    assert_eq!(create.num_calls(), 1);

    // Exists: never recreated (its start position is fixed).
    let exists = mock!(Client::describe_replication_tasks).then_output(|| {
        DescribeReplicationTasksOutput::builder()
            .replication_tasks(task("stopped"))
            .build()
    });
    let never = mock!(Client::create_replication_task)
        .then_output(|| CreateReplicationTaskOutput::builder().build());
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&exists, &never]
    );
    let status = Driver::new(client)
        .create_task(&input, "arn:src", "arn:tgt")
        .await
        .unwrap();
    assert_eq!(status.status, "stopped");
    assert_eq!(never.num_calls(), 0);
}

#[tokio::test]
async fn start_once_then_resume_never_restart() {
    for (status, expected_type, outcome) in [
        (
            "ready",
            Some(StartReplicationTaskTypeValue::StartReplication),
            StartOutcome::Started,
        ),
        (
            "stopped",
            Some(StartReplicationTaskTypeValue::ResumeProcessing),
            StartOutcome::Resumed,
        ),
        (
            "failed",
            Some(StartReplicationTaskTypeValue::ResumeProcessing),
            StartOutcome::Resumed,
        ),
        ("running", None, StartOutcome::AlreadyRunning),
    ] {
        let describe = mock!(Client::describe_replication_tasks).then_output(move || {
            DescribeReplicationTasksOutput::builder()
                .replication_tasks(task(status))
                .build()
        });
        let wanted = expected_type.clone();
        let start = mock!(Client::start_replication_task)
            .match_requests(move |r| {
                r.replication_task_arn() == Some(TASK_ARN)
                    && r.start_replication_task_type() == wanted.as_ref()
            })
            .then_output(|| StartReplicationTaskOutput::builder().build());
        let client = mock_client!(
            aws_sdk_databasemigration,
            RuleMode::MatchAny,
            [&describe, &start]
        );
        let got = Driver::new(client)
            .start_task(&id("pgmig-dms-slot-01"))
            .await
            .unwrap();
        assert_eq!(got, outcome, "{status}");
        assert_eq!(
            start.num_calls(),
            usize::from(expected_type.is_some()),
            "{status}"
        );
    }

    // A task being deleted is not started.
    let describe = mock!(Client::describe_replication_tasks).then_output(|| {
        DescribeReplicationTasksOutput::builder()
            .replication_tasks(task("deleting"))
            .build()
    });
    let client = mock_client!(aws_sdk_databasemigration, [&describe]);
    let err = Driver::new(client)
        .start_task(&id("pgmig-dms-slot-01"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is deleting"), "{err}");
}

#[tokio::test]
async fn stop_a_running_task_only() {
    let describe = mock!(Client::describe_replication_tasks).then_output(|| {
        DescribeReplicationTasksOutput::builder()
            .replication_tasks(task("running"))
            .build()
    });
    let stop = mock!(Client::stop_replication_task)
        .match_requests(|r| r.replication_task_arn() == Some(TASK_ARN))
        .then_output(|| {
            StopReplicationTaskOutput::builder()
                .replication_task(task("stopping"))
                .build()
        });
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&describe, &stop]
    );
    let status = Driver::new(client)
        .stop_task(&id("pgmig-dms-slot-01"))
        .await
        .unwrap();
    assert_eq!(status.status, "stopping");
    assert_eq!(stop.num_calls(), 1);
}

#[tokio::test]
async fn table_statistics_read_every_page() {
    let describe = mock!(Client::describe_replication_tasks).then_output(|| {
        DescribeReplicationTasksOutput::builder()
            .replication_tasks(task("running"))
            .build()
    });
    let stats = |name: &str, inserts| {
        TableStatistics::builder()
            .schema_name("public")
            .table_name(name)
            .table_state("Table completed")
            .inserts(inserts)
            .updates(2)
            .deletes(1)
            .build()
    };
    let first = mock!(Client::describe_table_statistics)
        .match_requests(|r| r.marker().is_none() && r.replication_task_arn() == Some(TASK_ARN))
        .then_output(move || {
            DescribeTableStatisticsOutput::builder()
                .table_statistics(stats("order_items", 10))
                .marker("page-2")
                .build()
        });
    let second = mock!(Client::describe_table_statistics)
        .match_requests(|r| r.marker() == Some("page-2"))
        .then_output(move || {
            DescribeTableStatisticsOutput::builder()
                .table_statistics(stats("users", 3))
                .build()
        });
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&describe, &first, &second]
    );
    let all = Driver::new(client)
        .table_statistics(&id("pgmig-dms-slot-01"))
        .await
        .unwrap();
    let names: Vec<(String, i64)> = all
        .iter()
        .map(|t| (t.table.to_string(), t.inserts))
        .collect();
    assert_eq!(
        names,
        [
            ("public.order_items".into(), 10),
            ("public.users".into(), 3)
        ]
    );
    assert_eq!(all[0].state.as_deref(), Some("Table completed"));
}

#[tokio::test]
async fn api_errors_name_the_operation() {
    let describe = mock!(Client::describe_replication_tasks).then_output(|| {
        DescribeReplicationTasksOutput::builder()
            .replication_tasks(task("running"))
            .build()
    });
    let denied = mock!(Client::describe_table_statistics).then_error(|| {
        DescribeTableStatisticsError::AccessDeniedFault(
            AccessDeniedFault::builder().message("not allowed").build(),
        )
    });
    let client = mock_client!(
        aws_sdk_databasemigration,
        RuleMode::MatchAny,
        [&describe, &denied]
    );
    let err = Driver::new(client)
        .table_statistics(&id("pgmig-dms-slot-01"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DmsError::Api {
                operation: "DescribeTableStatistics",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not allowed"), "{err}");
}
