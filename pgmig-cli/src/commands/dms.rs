//! `pgmig dms …`: AWS DMS artifacts for phase II. All behaviour lives in
//! `pgmig_dms`; this reads the recorded plan and P, checks the slots,
//! measures the LOBs, writes the files and prints what it did.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::Plan;
use pgmig_core::{Lsn, QualifiedTable, ServerRole, state};
use pgmig_dms::lob::{
    LOB_COLUMNS_SQL, MEASURE_SESSION_SQL, MeasureProgress, lob_columns, measure_sql,
};
use pgmig_dms::slot::SLOTS_SQL;
use pgmig_dms::{
    ArtifactOptions, Artifacts, Credentials, DmsError, DmsSslMode, EndpointConn, ErrorBehavior,
    LobChoice, LobMode, LobPolicy, SOURCE_PASSWORD_ENV, SelectionStyle, TARGET_PASSWORD_ENV,
    TargetEndpoint, check_slots, generate, measure_lobs, write_artifacts,
};
use serde::Serialize;

use super::common::{connect, print_json};
use crate::cli::GlobalArgs;
use crate::exit::{CheckFailed, Outcome, UsageError};
use crate::settings::Settings;

/// `pgmig dms` subcommands.
#[derive(Debug, Subcommand)]
pub enum DmsCommand {
    /// Write the inputs of one DMS CDC task per slot, starting at P, and a
    /// script that creates, starts and watches them.
    ///
    /// Reads the plan and P recorded in the target, checks that every slot
    /// on the source can still start at P, measures the largest LOB values
    /// of each slot's tables (one scan per table with LOB columns; skip with
    /// --lob-max-size or --full-lob-mode) and writes, into DIR: per slot the
    /// source endpoint, table mappings, task settings and
    /// CreateReplicationTask input; the target endpoint; dms.sh; README.md
    /// and manifest.json. No password is written: endpoints take theirs
    /// from Secrets Manager (--source-secret-id …) or from
    /// PGMIG_DMS_SOURCE_PASSWORD / PGMIG_DMS_TARGET_PASSWORD when dms.sh
    /// creates them. --dry-run prints the SQL it would run on the source and
    /// writes nothing. No AWS call is made.
    #[command(
        after_help = "Example:\n  pgmig dms generate --out dms --replication-instance-arn arn:aws:dms:eu-west-1:123456789012:rep:ABC \\\n        --source-server prod.internal --region eu-west-1\n  cd dms && ./dms.sh create && ./dms.sh start && ./dms.sh watch"
    )]
    Generate(Box<GenerateArgs>),
}

/// TLS mode of the endpoints (`--ssl-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SslModeArg {
    /// TLS without certificate verification.
    Require,
    /// TLS, certificate chain verified (needs a certificate ARN).
    VerifyCa,
    /// TLS, chain and host name verified (needs a certificate ARN).
    VerifyFull,
}

impl From<SslModeArg> for DmsSslMode {
    fn from(m: SslModeArg) -> DmsSslMode {
        match m {
            SslModeArg::Require => DmsSslMode::Require,
            SslModeArg::VerifyCa => DmsSslMode::VerifyCa,
            SslModeArg::VerifyFull => DmsSslMode::VerifyFull,
        }
    }
}

/// How tables are selected (`--selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelectionArg {
    /// `include` rules with `_`, `%` and `[` escaped: exactly one table each.
    Include,
    /// `explicit` rules with the exact names.
    Explicit,
}

/// Where the LOB sizes are measured (`--measure-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MeasureOn {
    /// The source: its data as of now.
    Source,
    /// The maintenance replica, to keep the scans off production.
    Replica,
}

/// What an apply conflict does to a task (`--on-apply-conflict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Stop the task: a conflict means the copies diverged.
    Stop,
    /// Log it to awsdms_apply_exceptions and go on.
    Log,
}

/// The target's DMS engine (`--target-engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// PostgreSQL, self-managed or RDS.
    Postgres,
    /// Aurora PostgreSQL.
    AuroraPostgresql,
}

/// `pgmig dms generate` options.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The directory to write into (created when missing; the files pgmig
    /// writes are replaced, nothing else is touched).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The DMS replication instance the tasks run on.
    #[arg(long, value_name = "ARN")]
    pub replication_instance_arn: String,
    /// An existing target endpoint; without it a target endpoint input is
    /// generated from the target connection.
    #[arg(long, value_name = "ARN")]
    pub target_endpoint_arn: Option<String>,
    /// The first part of every task and endpoint identifier.
    #[arg(long, default_value = "pgmig")]
    pub prefix: String,
    /// The AWS region dms.sh uses unless AWS_REGION is set.
    #[arg(long)]
    pub region: Option<String>,
    /// The source host name as DMS reaches it (default: the source
    /// connection's host).
    #[arg(long, value_name = "HOST")]
    pub source_server: Option<String>,
    /// The target host name as DMS reaches it (default: the target
    /// connection's host).
    #[arg(long, value_name = "HOST")]
    pub target_server: Option<String>,
    /// TLS mode of both endpoints (default: each connection's sslmode,
    /// raised to at least require).
    #[arg(long, value_enum)]
    pub ssl_mode: Option<SslModeArg>,
    /// The DMS certificate that verifies the source (verify-ca/verify-full).
    #[arg(long, value_name = "ARN")]
    pub source_certificate_arn: Option<String>,
    /// The DMS certificate that verifies the target.
    #[arg(long, value_name = "ARN")]
    pub target_certificate_arn: Option<String>,
    /// A Secrets Manager secret with the source's connection details
    /// (instead of PGMIG_DMS_SOURCE_PASSWORD at creation).
    #[arg(long, value_name = "ID", requires = "secrets_role_arn")]
    pub source_secret_id: Option<String>,
    /// A Secrets Manager secret with the target's connection details.
    #[arg(long, value_name = "ID", requires = "secrets_role_arn")]
    pub target_secret_id: Option<String>,
    /// The IAM role DMS reads the secrets with.
    #[arg(long, value_name = "ARN")]
    pub secrets_role_arn: Option<String>,
    /// The target's DMS engine.
    #[arg(long, value_enum, default_value = "postgres")]
    pub target_engine: EngineArg,
    /// How each table's selection rule is written.
    #[arg(long, value_enum, default_value = "include")]
    pub selection: SelectionArg,
    /// Use limited LOB mode with this LobMaxSize (KB) for every task and
    /// measure nothing.
    #[arg(long, value_name = "KB", conflicts_with = "full_lob_mode",
          value_parser = clap::value_parser!(u64).range(1..=102_400))]
    pub lob_max_size: Option<u64>,
    /// Use full LOB mode for every task and measure nothing.
    #[arg(long)]
    pub full_lob_mode: bool,
    /// Where to measure the LOB sizes.
    #[arg(long, value_enum, default_value = "source")]
    pub measure_on: MeasureOn,
    /// Room above the largest LOB measured, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 50)]
    pub lob_growth: u64,
    /// What an apply conflict (row missing or already there) does.
    #[arg(long, value_enum, default_value = "stop")]
    pub on_apply_conflict: ConflictArg,
    /// Enable DMS's WAL heartbeat every MINUTES (it writes to the source).
    #[arg(long, value_name = "MINUTES")]
    pub heartbeat: Option<u32>,
}

/// Runs a `dms` subcommand.
pub async fn run(global: &GlobalArgs, cmd: &DmsCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DmsCommand::Generate(args) => generate_cmd(global, args).await,
    }
}

/// DMS errors as the CLI's exit codes: refusals of the source's state exit
/// 1, bad input 2, server errors as pgmig-core classifies them, the rest 3.
fn classify(err: DmsError) -> anyhow::Error {
    if let DmsError::Core(core) = err {
        // pgmig's own kinds (connection, SQL, bad input) decide the code.
        return core.into();
    }
    if err.is_refusal() {
        CheckFailed(err.to_string()).into()
    } else if err.is_usage() {
        UsageError(err.to_string()).into()
    } else {
        err.into()
    }
}

/// The slots and their tables, for comparing plans.
fn layout(plan: &Plan) -> BTreeSet<(&str, &QualifiedTable)> {
    plan.tables()
        .map(|(g, t)| (g.slot.as_str(), &t.table))
        .collect()
}

fn endpoint(
    conn: &ConnConfig,
    role: &'static str,
    server: Option<&str>,
    args: &GenerateArgs,
    certificate: Option<&str>,
) -> anyhow::Result<EndpointConn> {
    EndpointConn::from_conn(
        conn,
        role,
        server,
        args.ssl_mode.map(Into::into),
        certificate,
    )
    .map_err(|e| {
        UsageError(format!(
            "{e} (see --{role}-server, --ssl-mode, --{role}-certificate-arn{})",
            if role == "target" {
                ", or name an existing endpoint with --target-endpoint-arn"
            } else {
                ""
            }
        ))
        .into()
    })
}

fn credentials(secret: Option<&String>, role: Option<&String>, env_var: &str) -> Credentials {
    match (secret, role) {
        (Some(secret_id), Some(role)) => Credentials::SecretsManager {
            secret_id: secret_id.clone(),
            access_role_arn: role.clone(),
        },
        _ => Credentials::PasswordAtCreation {
            env_var: env_var.into(),
        },
    }
}

async fn generate_cmd(global: &GlobalArgs, args: &GenerateArgs) -> anyhow::Result<Outcome> {
    if let Some(region) = &args.region
        && (region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(UsageError(format!(
            "invalid region {region:?}: expected e.g. eu-west-1"
        ))
        .into());
    }
    // Every task and endpoint identifier starts with the prefix: refused
    // before anything is read or measured.
    if let Err(e) = pgmig_dms::DmsIdentifier::from_parts(&[&args.prefix]) {
        return Err(UsageError(format!(
            "invalid --prefix {:?}: {} (each _ is spelled - in DMS identifiers)",
            args.prefix, e.reason
        ))
        .into());
    }
    let settings = Settings::load(global)?;
    let target = connect(&settings, ServerRole::Target).await?;
    let Some(record) = state::load_migration(&target).await? else {
        // Source and target given the wrong way round say so.
        if let Ok(source) = connect(&settings, ServerRole::Source).await {
            super::setup::refuse_swapped(&source, &target).await?;
        }
        return Err(UsageError(
            "the target holds no migration state: run `pgmig setup` and `pgmig snapshot` first"
                .into(),
        )
        .into());
    };
    let p: Lsn = record.pause_lsn.ok_or_else(|| {
        UsageError("the target records no pause LSN P: run `pgmig snapshot` first".into())
    })?;
    let plan = record.plan;
    if let Some(file_plan) = &settings.plan
        && layout(file_plan) != layout(&plan)
    {
        return Err(UsageError(
            "the config file's plan differs from the one recorded in the target, which P was proven \
             against: DMS follows the recorded plan; fix or remove the config file's plan"
                .into(),
        )
        .into());
    }

    let source_conn = settings.conn(ServerRole::Source)?;
    let source = endpoint(
        &source_conn,
        "source",
        args.source_server.as_deref(),
        args,
        args.source_certificate_arn.as_deref(),
    )?;
    let target_endpoint = match &args.target_endpoint_arn {
        Some(arn) => TargetEndpoint::Existing { arn: arn.clone() },
        None => TargetEndpoint::Create {
            conn: endpoint(
                &settings.conn(ServerRole::Target)?,
                "target",
                args.target_server.as_deref(),
                args,
                args.target_certificate_arn.as_deref(),
            )?,
            credentials: credentials(
                args.target_secret_id.as_ref(),
                args.secrets_role_arn.as_ref(),
                TARGET_PASSWORD_ENV,
            ),
            engine_name: match args.target_engine {
                EngineArg::Postgres => "postgres",
                EngineArg::AuroraPostgresql => "aurora-postgresql",
            }
            .into(),
        },
    };

    // Tasks for another cluster's slots would start at a P that means
    // nothing there: the source must be the migration's.
    let source_client = connect(&settings, ServerRole::Source).await?;
    let source_id = pgmig_core::admin::system_identifier(&source_client).await?;
    if source_id != record.source_system_identifier {
        return Err(
            pgmig_pglogical::Error::from(pgmig_pglogical::Refusal::StateOfOtherSource {
                recorded: record.source_system_identifier,
                source_id,
            })
            .into(),
        );
    }
    let slots: Vec<&str> = plan.slots.iter().map(|g| g.slot.as_str()).collect();
    let tables: Vec<QualifiedTable> = plan.tables().map(|(_, t)| t.table.clone()).collect();
    let measure_role = match args.measure_on {
        MeasureOn::Source => ServerRole::Source,
        MeasureOn::Replica => ServerRole::Replica,
    };
    let measuring = args.lob_max_size.is_none() && !args.full_lob_mode;

    if global.dry_run {
        let mut statements = vec![DryStatement {
            role: ServerRole::Source,
            what: "check that every slot can still start at P".into(),
            sql: SLOTS_SQL.into(),
        }];
        if measuring {
            let client = connect(&settings, measure_role).await?;
            statements.push(DryStatement {
                role: measure_role,
                what: "in one read-only transaction: no statement timeout, a short lock timeout"
                    .into(),
                sql: MEASURE_SESSION_SQL.into(),
            });
            statements.push(DryStatement {
                role: measure_role,
                what: "list the LOB columns of the planned tables".into(),
                sql: LOB_COLUMNS_SQL.into(),
            });
            let columns = lob_columns(&client, &tables).await.map_err(classify)?;
            for table in &tables {
                let cols: Vec<_> = columns.iter().filter(|c| &c.table == table).collect();
                if !cols.is_empty() {
                    statements.push(DryStatement {
                        role: measure_role,
                        what: format!("measure the largest LOB values of {table} (a full scan)"),
                        sql: measure_sql(table, &cols),
                    });
                }
            }
        }
        if global.json {
            print_json(&serde_json::json!({
                "dry_run": true,
                "pause_lsn": p.to_string(),
                "out": args.out,
                "statements": statements,
            }))?;
        } else {
            println!("-- P = {p}; nothing is written to {}", args.out.display());
            for st in &statements {
                println!("\n-- on the {}: {}\n{};", st.role, st.what, st.sql);
            }
        }
        return Ok(Outcome::Success);
    }

    let slot_states = check_slots(&source_client, &slots, p)
        .await
        .map_err(classify)?;
    let lob = if let Some(kb) = args.lob_max_size {
        LobChoice::Limited(kb)
    } else if args.full_lob_mode {
        LobChoice::Full
    } else {
        let mut client = match args.measure_on {
            MeasureOn::Source => source_client,
            MeasureOn::Replica => connect(&settings, ServerRole::Replica).await?,
        };
        let cancel = client.cancel_token();
        let tls = settings.conn(measure_role)?.tls_connector()?;
        let quiet = global.json;
        let mut progress = |p: MeasureProgress<'_>| {
            if !quiet {
                eprintln!(
                    "[{}/{}] measuring the largest LOB values of {} ({} columns, a full scan on the {measure_role})",
                    p.done + 1,
                    p.total,
                    p.table,
                    p.columns
                );
            }
        };
        let measured = tokio::select! {
            biased;
            signal = super::snapshot::interrupted() => {
                let signal = signal?;
                // The scan would otherwise run on to its end on the server.
                let _ = cancel.cancel_query(tls).await;
                anyhow::bail!("interrupted by {signal}: the LOB scan was cancelled, nothing was written");
            }
            m = measure_lobs(&mut client, &tables, &mut progress) => m.map_err(classify)?,
        };
        LobChoice::Measured(
            measured,
            LobPolicy {
                growth_percent: args.lob_growth,
                ..LobPolicy::default()
            },
        )
    };

    let mut opts = ArtifactOptions::new(
        args.replication_instance_arn.clone(),
        source,
        credentials(
            args.source_secret_id.as_ref(),
            args.secrets_role_arn.as_ref(),
            SOURCE_PASSWORD_ENV,
        ),
        target_endpoint,
        lob,
    );
    opts.prefix = args.prefix.clone();
    opts.region = args.region.clone();
    opts.heartbeat_minutes = args.heartbeat;
    opts.selection = match args.selection {
        SelectionArg::Include => SelectionStyle::Include,
        SelectionArg::Explicit => SelectionStyle::Explicit,
    };
    opts.errors = match args.on_apply_conflict {
        ConflictArg::Stop => ErrorBehavior::strict(),
        ConflictArg::Log => ErrorBehavior::log_apply_conflicts(),
    };
    let mut artifacts = generate(&plan, p, &opts).map_err(classify)?;
    for s in slot_states.iter().filter(|s| s.active) {
        artifacts.warnings.push(format!(
            "slot {} has a consumer attached right now: a DMS task cannot read it until that stops",
            s.name
        ));
    }
    let files = write_artifacts(&args.out, &artifacts).map_err(classify)?;
    report(global, args, &artifacts, &files)?;
    Ok(Outcome::Success)
}

#[derive(Serialize)]
struct DryStatement {
    role: ServerRole,
    what: String,
    sql: String,
}

#[derive(Serialize)]
struct Report<'a> {
    out: &'a std::path::Path,
    pause_lsn: String,
    tasks: Vec<ReportTask<'a>>,
    files: &'a [PathBuf],
    warnings: &'a [String],
}

#[derive(Serialize)]
struct ReportTask<'a> {
    slot: &'a str,
    task_id: &'a str,
    tables: usize,
    lob: &'a pgmig_dms::LobDecision,
}

fn report(
    global: &GlobalArgs,
    args: &GenerateArgs,
    a: &Artifacts,
    files: &[PathBuf],
) -> anyhow::Result<()> {
    if global.json {
        return print_json(&Report {
            out: &args.out,
            pause_lsn: a.pause_lsn.to_string(),
            tasks: a
                .slots
                .iter()
                .map(|s| ReportTask {
                    slot: &s.slot,
                    task_id: s.task_id.as_str(),
                    tables: s.tables.len(),
                    lob: &s.lob,
                })
                .collect(),
            files,
            warnings: &a.warnings,
        });
    }
    println!(
        "{} DMS CDC tasks starting at P = {}, written to {} ({} files):",
        a.slots.len(),
        a.pause_lsn,
        args.out.display(),
        files.len()
    );
    for s in &a.slots {
        let lob = match s.lob.mode {
            LobMode::Limited { max_kb } => format!("limited LOB mode, LobMaxSize {max_kb} KB"),
            LobMode::Full { chunk_kb } => format!("full LOB mode, chunks of {chunk_kb} KB"),
        };
        let largest = s
            .lob
            .largest
            .as_ref()
            .map(|c| {
                format!(
                    " (largest: {}.{}, {} bytes)",
                    c.column.table, c.column.column, c.max_bytes
                )
            })
            .unwrap_or_default();
        println!(
            "  {:<24} {:<32} {:>4} tables  {lob}{largest}",
            s.slot,
            s.task_id,
            s.tables.len()
        );
    }
    for w in &a.warnings {
        println!("warning: {w}");
    }
    if !a.password_env.is_empty() {
        let mut vars: Vec<&str> = a.password_env.iter().map(|(_, v)| v.as_str()).collect();
        vars.sort();
        vars.dedup();
        println!(
            "no password was written: dms.sh create reads {}",
            vars.join(" and ")
        );
    }
    println!(
        "next: cd {} && ./dms.sh create && ./dms.sh start && ./dms.sh watch",
        args.out.display()
    );
    Ok(())
}
