//! Everything DMS needs for phase II, computed from the plan, P, the
//! endpoints and the LOB measurement — pure, no I/O.

use std::collections::BTreeMap;

use pgmig_core::plan::Plan;
use pgmig_core::{Lsn, QualifiedTable};
use serde::Serialize;

use crate::endpoint::{
    CreateEndpointInput, Credentials, EndpointConn, EndpointType, PostgreSqlSettings,
};
use crate::error::{DmsError, Result};
use crate::identifier::DmsIdentifier;
use crate::lob::{LobMeasurement, LobMode, LobPolicy, MeasuredColumn};
use crate::mapping::{SelectionStyle, TableMappings};
use crate::task::{
    CreateReplicationTaskInput, MigrationType, Tag, cdc_start_position, endpoint_arn_placeholder,
};
use crate::task_settings::{ErrorBehavior, TaskSettings};

/// The environment variable the script reads the source password from.
pub const SOURCE_PASSWORD_ENV: &str = "PGMIG_DMS_SOURCE_PASSWORD";
/// The environment variable the script reads the target password from.
pub const TARGET_PASSWORD_ENV: &str = "PGMIG_DMS_TARGET_PASSWORD";

/// How each task's LOB mode is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LobChoice {
    /// From the largest values measured per slot, with this policy.
    Measured(LobMeasurement, LobPolicy),
    /// Limited LOB mode with this `LobMaxSize` (KB) for every task,
    /// nothing measured.
    Limited(u64),
    /// Full LOB mode for every task, nothing measured.
    Full,
}

/// The target endpoint of every task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetEndpoint {
    /// An endpoint that exists already (e.g. made by Terraform).
    Existing {
        /// Its ARN.
        arn: String,
    },
    /// One the script creates.
    Create {
        /// Where the target is.
        conn: EndpointConn,
        /// Where its password is.
        credentials: Credentials,
        /// `postgres` or `aurora-postgresql`.
        engine_name: String,
    },
}

/// What the artifacts are made of besides the plan and P.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactOptions {
    /// The first part of every identifier; default `pgmig`.
    pub prefix: String,
    /// The replication instance the tasks run on.
    pub replication_instance_arn: String,
    /// Where the source is, as DMS reaches it.
    pub source: EndpointConn,
    /// Where the source password is.
    pub source_credentials: Credentials,
    /// The source engine; default `postgres`.
    pub source_engine: String,
    /// The target endpoint.
    pub target: TargetEndpoint,
    /// How tables are selected; default [`SelectionStyle::Include`].
    pub selection: SelectionStyle,
    /// How LOBs are sized.
    pub lob: LobChoice,
    /// Error policies; default [`ErrorBehavior::strict`].
    pub errors: ErrorBehavior,
    /// WAL heartbeat every this many minutes (writes to the source);
    /// default off.
    pub heartbeat_minutes: Option<u32>,
    /// The AWS region baked into the script as its default (`AWS_REGION`
    /// still wins); default none (the AWS CLI's own configuration).
    pub region: Option<String>,
}

impl ArtifactOptions {
    /// Options with the defaults above.
    pub fn new(
        replication_instance_arn: impl Into<String>,
        source: EndpointConn,
        source_credentials: Credentials,
        target: TargetEndpoint,
        lob: LobChoice,
    ) -> ArtifactOptions {
        ArtifactOptions {
            prefix: "pgmig".into(),
            replication_instance_arn: replication_instance_arn.into(),
            source,
            source_credentials,
            source_engine: "postgres".into(),
            target,
            selection: SelectionStyle::default(),
            lob,
            errors: ErrorBehavior::strict(),
            heartbeat_minutes: None,
            region: None,
        }
    }
}

/// How one task's LOB mode was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LobDecision {
    /// The mode.
    #[serde(flatten)]
    pub mode: LobMode,
    /// The largest value measured in the slot's tables, when measured and
    /// the slot has LOB columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub largest: Option<MeasuredColumn>,
    /// Whether the sizes were measured (`false`: given by hand).
    pub measured: bool,
}

/// The artifacts of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotArtifacts {
    /// The slot.
    pub slot: String,
    /// The task identifier, also the slot's directory name.
    pub task_id: DmsIdentifier,
    /// Its tables.
    pub tables: Vec<QualifiedTable>,
    /// The source endpoint reading the slot.
    pub source_endpoint: CreateEndpointInput,
    /// The table mappings.
    pub table_mappings: TableMappings,
    /// The task settings.
    pub task_settings: TaskSettings,
    /// The `CreateReplicationTask` input.
    pub create_task: CreateReplicationTaskInput,
    /// How its LOB mode was chosen.
    pub lob: LobDecision,
}

/// Everything `pgmig dms generate` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifacts {
    /// P: every task starts there.
    pub pause_lsn: Lsn,
    /// The replication instance.
    pub replication_instance_arn: String,
    /// The target endpoint to create, if one is created.
    pub target_endpoint: Option<CreateEndpointInput>,
    /// The target endpoint's ARN, if it exists already.
    pub target_endpoint_arn: Option<String>,
    /// Where the passwords come from: `(endpoint, environment variable)`
    /// for each endpoint the script creates with a password.
    pub password_env: Vec<(DmsIdentifier, String)>,
    /// The region baked into the script, if any.
    pub region: Option<String>,
    /// One entry per slot, in plan order.
    pub slots: Vec<SlotArtifacts>,
    /// Things the operator should know (tables DMS handles partially).
    pub warnings: Vec<String>,
}

/// Computes the artifacts of every slot of `plan`, starting at `p`.
///
/// Each slot gets its source endpoint (`SlotName`, pglogical, no DDL
/// capture, TLS, LOB truncation failing the task), one selection rule per
/// table, CDC task settings with its LOB mode, and a `CreateReplicationTask`
/// input with `CdcStartPosition` P. Fails on an empty slot or an identifier
/// DMS would refuse.
pub fn generate(plan: &Plan, p: Lsn, opts: &ArtifactOptions) -> Result<Artifacts> {
    if plan.slots.is_empty() {
        return Err(DmsError::NoSlots);
    }
    let mut warnings = Vec::new();
    let mut password_env = Vec::new();
    let (target_endpoint, target_endpoint_arn, target_arn) = match &opts.target {
        TargetEndpoint::Existing { arn } => (None, Some(arn.clone()), arn.clone()),
        TargetEndpoint::Create {
            conn,
            credentials,
            engine_name,
        } => {
            let id = DmsIdentifier::from_parts(&[&opts.prefix, "target"])?;
            if let Credentials::PasswordAtCreation { env_var } = credentials {
                password_env.push((id.clone(), env_var.clone()));
            }
            let input = CreateEndpointInput::new(
                id.clone(),
                EndpointType::Target,
                engine_name,
                conn,
                credentials,
                PostgreSqlSettings::default(),
                vec![Tag::new("pgmig:role", "target")],
            );
            (Some(input), None, endpoint_arn_placeholder(&id))
        }
    };
    let start = cdc_start_position(p);
    let mut slots = Vec::with_capacity(plan.slots.len());
    for group in &plan.slots {
        if group.tables.is_empty() {
            return Err(DmsError::EmptySlot {
                slot: group.slot.clone(),
            });
        }
        let task_id = DmsIdentifier::from_parts(&[&opts.prefix, &group.slot])?;
        let endpoint_id = DmsIdentifier::from_parts(&[&opts.prefix, "src", &group.slot])?;
        let tables: Vec<QualifiedTable> = group.tables.iter().map(|t| t.table.clone()).collect();

        let lob = match &opts.lob {
            LobChoice::Measured(measurement, policy) => {
                let largest = measurement.largest_in(&tables).cloned();
                let bytes = largest
                    .as_ref()
                    .map_or(0, |c| c.column.kind.dms_bytes(c.max_bytes));
                LobDecision {
                    mode: policy.mode_for(bytes),
                    largest,
                    measured: true,
                }
            }
            LobChoice::Limited(kb) => LobDecision {
                mode: LobMode::Limited { max_kb: *kb },
                largest: None,
                measured: false,
            },
            LobChoice::Full => LobDecision {
                mode: LobMode::Full {
                    chunk_kb: LobPolicy::default().chunk_kb,
                },
                largest: None,
                measured: false,
            },
        };
        if matches!(lob.mode, LobMode::Full { .. }) {
            for t in group.tables.iter().filter(|t| !t.has_identity_index) {
                warnings.push(format!(
                    "{}: {} has no primary key; DMS cannot look its LOBs up in full LOB mode",
                    group.slot, t.table
                ));
            }
        }
        for t in group.tables.iter().filter(|t| !t.has_identity_index) {
            warnings.push(format!(
                "{}: {} has no replica-identity index: only its INSERTs are replicated",
                group.slot, t.table
            ));
            if let LobChoice::Measured(m, _) = &opts.lob {
                for c in m
                    .columns
                    .iter()
                    .filter(|c| c.column.table == t.table && c.column.type_name.ends_with("[]"))
                {
                    warnings.push(format!(
                        "{}: {} has an array column ({}) and no primary key: DMS suspends such \
                         tables, which stops the task under the strict error policy",
                        group.slot, t.table, c.column.column
                    ));
                }
            }
        }

        if let Credentials::PasswordAtCreation { env_var } = &opts.source_credentials {
            password_env.push((endpoint_id.clone(), env_var.clone()));
        }
        let source_endpoint = CreateEndpointInput::new(
            endpoint_id.clone(),
            EndpointType::Source,
            &opts.source_engine,
            &opts.source,
            &opts.source_credentials,
            CreateEndpointInput::source_settings(&group.slot, opts.heartbeat_minutes),
            vec![
                Tag::new("pgmig:role", "source"),
                Tag::new("pgmig:slot", &group.slot),
            ],
        );
        let table_mappings = TableMappings::for_tables(&tables, opts.selection);
        let task_settings = TaskSettings::cdc(lob.mode, opts.errors.clone());
        let create_task = CreateReplicationTaskInput {
            replication_task_identifier: task_id.clone(),
            source_endpoint_arn: endpoint_arn_placeholder(&endpoint_id),
            target_endpoint_arn: target_arn.clone(),
            replication_instance_arn: opts.replication_instance_arn.clone(),
            migration_type: MigrationType::Cdc,
            table_mappings: table_mappings.to_json(),
            replication_task_settings: task_settings.to_json(),
            cdc_start_position: start.clone(),
            tags: vec![
                Tag::new("pgmig:slot", &group.slot),
                Tag::new("pgmig:pause-lsn", &start),
            ],
        };
        slots.push(SlotArtifacts {
            slot: group.slot.clone(),
            task_id,
            tables,
            source_endpoint,
            table_mappings,
            task_settings,
            create_task,
            lob,
        });
    }
    let mut by_folded: BTreeMap<(String, String), Vec<&QualifiedTable>> = BTreeMap::new();
    for (_, t) in plan.tables() {
        by_folded
            .entry((t.table.schema.to_lowercase(), t.table.name.to_lowercase()))
            .or_default()
            .push(&t.table);
    }
    for same in by_folded.values().filter(|v| v.len() > 1) {
        let names: Vec<String> = same.iter().map(ToString::to_string).collect();
        warnings.push(format!(
            "{} differ only in case, which DMS does not support",
            names.join(" and ")
        ));
    }
    warnings.push(
        "DMS does not replicate TRUNCATE from PostgreSQL, nor sequence values: \
         set the target's sequences at cutover"
            .into(),
    );
    Ok(Artifacts {
        pause_lsn: p,
        replication_instance_arn: opts.replication_instance_arn.clone(),
        target_endpoint,
        target_endpoint_arn,
        password_env,
        region: opts.region.clone(),
        slots,
        warnings,
    })
}
