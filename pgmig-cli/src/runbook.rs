//! The runbook as a step-by-step API.
//!
//! ```no_run
//! use pgmig_cli::runbook::Migration;
//! use pgmig_core::config::ConnConfig;
//! use pgmig_fullload::load::LoadOptions;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let m = Migration::new(
//!     ConnConfig::parse("host=prod dbname=app user=migrator")?,
//!     ConnConfig::parse("host=maint dbname=app user=migrator")?,
//!     ConnConfig::parse("postgres://admin@new/app?sslmode=verify-full")?,
//! );
//! let report = m.check(6).await?;
//! assert!(!report.has_blockers(), "{}", report.render_text());
//! let plan = m.plan(6).await?;
//! m.setup(&plan).await?;
//! m.schema(&Default::default()).await?;
//! let snapshot = m.snapshot().await?;
//! println!("P = {}", snapshot.pause_lsn);
//! let load = m.load(&LoadOptions::default(), None).await?;
//! assert!(load.is_complete());
//! let verified = m.verify(&Default::default()).await?;
//! assert!(verified.passed);
//! m.resume_replica().await?;
//! # Ok(()) }
//! ```
//!
//! Every step is idempotent and keeps its state in the target's `pgmig`
//! schema, like the commands of the same names.

use pgmig_core::catalog::list_tables;
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Filters, Plan, write_rates};
use pgmig_core::{ServerVersion, state};
use pgmig_fullload::load::{LoadOptions, LoadReport, ProgressFn};
use pgmig_fullload::schema::{SchemaOptions, SchemaReport, transfer_schema};
use pgmig_fullload::verify::{VerifyOptions, VerifyReport};
use pgmig_pglogical::preflight::{CheckOptions, Endpoint, Report};
use pgmig_pglogical::setup::{SetupOptions, SetupReport, run_setup};
use pgmig_pglogical::snapshot::{Resumed, Snapshot, resume_replica, take_snapshot};
use tokio_util::sync::CancellationToken;

/// Why a step failed: the error of the crate that ran it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// Connections, catalog, state.
    #[error(transparent)]
    Core(#[from] pgmig_core::Error),
    /// Preflight, setup, snapshot, resume.
    #[error(transparent)]
    Pglogical(#[from] pgmig_pglogical::Error),
    /// The plan.
    #[error(transparent)]
    Plan(#[from] pgmig_core::plan::PlanError),
    /// The schema transfer.
    #[error(transparent)]
    Schema(#[from] pgmig_fullload::schema::SchemaError),
    /// The load.
    #[error(transparent)]
    Load(#[from] pgmig_fullload::load::LoadError),
    /// The verification.
    #[error(transparent)]
    Verify(#[from] pgmig_fullload::verify::VerifyError),
}

/// One migration: the source, its maintenance replica and the target.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The production primary.
    pub source: ConnConfig,
    /// The maintenance replica (a physical standby of the source).
    pub replica: ConnConfig,
    /// The new primary.
    pub target: ConnConfig,
    /// Which tables migrate. Default: all.
    pub filters: Filters,
}

impl Migration {
    /// A migration between these servers, of every table.
    pub fn new(source: ConnConfig, replica: ConnConfig, target: ConnConfig) -> Migration {
        Migration {
            source,
            replica,
            target,
            filters: Filters::default(),
        }
    }

    /// Preflight over the three servers for a plan of `slots` slots.
    pub async fn check(&self, slots: usize) -> Result<Report, StepError> {
        let source = self.source.connect().await?;
        let replica = self.replica.connect().await;
        let target = self.target.connect().await;
        Ok(pgmig_pglogical::preflight::run_checks(
            &source,
            endpoint(&replica),
            endpoint(&target),
            &CheckOptions::new(slots),
        )
        .await?)
    }

    /// The plan recorded in the target, else one built from the source's
    /// tables and statistics over at most `slots` slots.
    pub async fn plan(&self, slots: usize) -> Result<Plan, StepError> {
        let target = self.target.connect().await?;
        if let Some(m) = state::load_migration(&target).await? {
            return Ok(m.plan);
        }
        let source = self.source.connect().await?;
        let version = ServerVersion::query(&source).await?;
        let tables = list_tables(&source, version).await?;
        let rates = write_rates(&source).await?;
        Ok(Plan::build(&tables, &rates, slots, &self.filters)?)
    }

    /// Steps 1–4: extension, node, sets and slots on the source, recorded
    /// in the target.
    pub async fn setup(&self, plan: &Plan) -> Result<SetupReport, StepError> {
        let source = self.source.connect().await?;
        let target = self.target.connect().await?;
        let opts = SetupOptions::for_source(&self.source);
        Ok(run_setup(&source, &target, plan, &opts).await?)
    }

    /// The schema: pre-data now, post-data kept for after the load.
    pub async fn schema(&self, opts: &SchemaOptions) -> Result<SchemaReport, StepError> {
        let mut opts = opts.clone();
        opts.filters = self.filters.clone();
        Ok(transfer_schema(&self.source, &self.target, &opts).await?)
    }

    /// Steps 5–7: pause the replica, prove and record P.
    pub async fn snapshot(&self) -> Result<Snapshot, StepError> {
        let source = self.source.connect().await?;
        let replica = self.replica.connect().await?;
        let target = self.target.connect().await?;
        Ok(take_snapshot(&source, &replica, &target).await?)
    }

    /// Steps 8–9: the full load (resumable; shareable with other loaders).
    pub async fn load(
        &self,
        opts: &LoadOptions,
        progress: Option<ProgressFn>,
    ) -> Result<LoadReport, StepError> {
        Ok(pgmig_fullload::load::load(
            &self.replica,
            &self.target,
            opts,
            progress,
            CancellationToken::new(),
        )
        .await?)
    }

    /// Step 10: the replica against the target. Unless `opts` says
    /// otherwise, the replica must be paused at the recorded P (checked
    /// before and after reading) and the plan's tables are compared.
    pub async fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport, StepError> {
        let mut opts = opts.clone();
        let target = self.target.connect().await?;
        if let Some(m) = state::load_migration(&target).await? {
            if opts.left_paused_at.is_none() {
                opts.left_paused_at = m.pause_lsn;
            }
            if opts.tables.is_none() {
                opts.tables = Some(m.plan.tables().map(|(_, t)| t.table.clone()).collect());
            }
        }
        opts.left_name = "replica".into();
        opts.right_name = "target".into();
        Ok(pgmig_fullload::verify::verify(&self.replica, &self.target, &opts).await?)
    }

    /// Step 11: resume the replica's replay.
    pub async fn resume_replica(&self) -> Result<Resumed, StepError> {
        let replica = self.replica.connect().await?;
        Ok(resume_replica(&replica).await?)
    }
}

/// A connection attempt as a preflight endpoint.
fn endpoint(
    c: &Result<tokio_postgres::Client, pgmig_core::Error>,
) -> Endpoint<'_, tokio_postgres::Client> {
    match c {
        Ok(client) => Endpoint::Connected(client),
        Err(e) => Endpoint::Unreachable(e),
    }
}
