//! Command-line arguments, parsed by clap.

use clap::{Args, Parser, Subcommand};
use pgmig_core::Lsn;

/// Move a large, live PostgreSQL database onto a newer server with
/// near-zero downtime: pglogical slots on the source, a paused maintenance
/// replica as the frozen snapshot, a fast parallel full load, then change
/// data capture from the replica's pause LSN.
#[derive(Debug, Parser)]
#[command(name = "pgmig", version, propagate_version = true)]
pub struct Cli {
    /// Options that every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options that every command takes. `Debug` masks the connection strings.
#[derive(Args, Clone, Default)]
pub struct GlobalArgs {
    /// Log more on stderr: -v info, -vv debug, -vvv trace (RUST_LOG also works).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print one JSON document on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print the exact SQL the command would run, per server, and run nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Answer yes to the question asked before the first change to the source.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// The config file (default: ./pgmig.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The source (production primary): a libpq string or postgres:// URL.
    #[arg(
        long,
        global = true,
        env = "PGMIG_SOURCE",
        hide_env_values = true,
        value_name = "DSN"
    )]
    pub source: Option<String>,
    /// The maintenance replica (a physical standby of the source).
    #[arg(
        long,
        global = true,
        env = "PGMIG_REPLICA",
        hide_env_values = true,
        value_name = "DSN"
    )]
    pub replica: Option<String>,
    /// The target (the new primary).
    #[arg(
        long,
        global = true,
        env = "PGMIG_TARGET",
        hide_env_values = true,
        value_name = "DSN"
    )]
    pub target: Option<String>,
}

/// pgmig's commands. More arrive with each step of the runbook.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with log sequence numbers (LSNs).
    #[command(subcommand)]
    Lsn(LsnCommand),
    /// Preflight: source settings, pglogical, replica ↔ source, target, data.
    ///
    /// One report over the three servers; every problem comes with its fix.
    /// Exits 1 when any blocker is found.
    #[command(
        after_help = "Example:\n  pgmig --source 'host=prod dbname=app' --replica 'host=maint dbname=app' \\\n        --target 'postgres://admin@new:5432/app?sslmode=verify-full' check"
    )]
    Check {
        /// How many slots are planned (for the capacity checks); the plan's
        /// count when a plan is configured.
        #[arg(long, default_value_t = 6)]
        slots: usize,
    },
    /// "Get to know the data": group the tables into slots and list the
    /// indexes to defer.
    ///
    /// Builds a plan from the source's catalog and statistics, or validates
    /// the plan of the config file against it (exit 2 naming the problem)
    /// instead of replacing it. --write saves the connections (without
    /// passwords) and the plan as a config file that later commands read.
    #[command(
        after_help = "Example:\n  pgmig --source 'host=prod dbname=app' plan --slots 6 --exclude 'scratch.*' --write pgmig.toml\n  pgmig plan            # validate and print the plan in ./pgmig.toml"
    )]
    Plan(PlanArgs),
    /// Steps 1–4: pglogical extension, provider node, replication sets and
    /// logical slots on the source, recorded in the target.
    ///
    /// Asks before the first change to the source (--yes for automation);
    /// --dry-run prints the exact SQL. Safe to run again.
    #[command(
        after_help = "Example:\n  pgmig setup --slots 6 --dry-run\n  pgmig setup --slots 6 --yes"
    )]
    Setup(SetupArgs),
    /// Schema transfer: restore the source's pre-data (schemas, types,
    /// tables, functions, views) into the target now; keep post-data
    /// (indexes, constraints, foreign keys, triggers, materialized view
    /// refreshes) in the target's pgmig schema for after the load.
    ///
    /// Uses a pg_dump at least as new as the source (PGMIG_PG_DUMP, PATH,
    /// /usr/lib/postgresql/*/bin). The restore is one transaction. Safe to run
    /// again: a target that already holds this schema is left as it is.
    /// --dry-run prints the SQL it would apply and what it would defer.
    #[command(
        after_help = "Example:\n  pgmig schema --dry-run\n  pgmig schema --with-globals --no-owner"
    )]
    Schema(SchemaArgs),
    /// Steps 5–7: pause the replica, capture P, prove every slot and set
    /// existed before P, record P in the target.
    ///
    /// Refuses (exit 1) and resumes the replica when a slot is newer than P.
    #[command(after_help = "Example:\n  pgmig snapshot")]
    Snapshot,
    /// Steps 8–9: the full load from the paused replica at P into the
    /// target — parallel COPY, chunks committed exactly once with their
    /// record in the target, indexes built per table as soon as its data is
    /// in, then constraints, the rest of post-data, ANALYZE and sequences.
    ///
    /// Resumable: run it again after a crash or kill and it continues with
    /// the chunks not done. Several `pgmig load` processes (on one machine or
    /// several) share one load. Stops with an error when the replica's replay
    /// moves away from P.
    #[command(
        after_help = "Example:\n  pgmig load --jobs 4\n  pgmig load --chunk-size 256MB --format text\n  pgmig load --restart --yes   # start the data over"
    )]
    Load(LoadArgs),
    /// Step 10: prove the target holds the same data as the replica at P
    /// (after the load) or the source (at cutover).
    #[command(after_help = "Example:\n  pgmig verify --mode checksums --jobs 4")]
    Verify(crate::commands::verify::VerifyArgs),
    /// Phase II with AWS DMS: generate the inputs of one CDC task per slot,
    /// starting at P.
    #[command(subcommand)]
    Dms(crate::commands::dms::DmsCommand),
    /// Phase II natively: apply each slot's changes after P to the target,
    /// exactly once.
    #[command(
        after_help = "Example:\n  pgmig cdc --until-caught-up\n  pgmig cdc            # follow until interrupted"
    )]
    Cdc(crate::commands::cdc::CdcArgs),
    /// Cutover: wait for zero lag, set the sequences, verify, print GO or NO-GO.
    #[command(after_help = "Example:\n  pgmig cutover")]
    Cutover(crate::commands::cdc::CutoverArgs),
    /// Where the migration stands: step, P, slot lag and retained WAL, load
    /// and CDC progress.
    #[command(
        after_help = "Example:\n  pgmig status\n  pgmig status --watch 5\n  pgmig --json status"
    )]
    Status(crate::commands::status::StatusArgs),
    /// Drop exactly what pgmig created: slots, sets, node, the pgmig schema
    /// in the target. Asks first; --dry-run prints the SQL.
    #[command(after_help = "Example:\n  pgmig cleanup --dry-run\n  pgmig cleanup --yes")]
    Cleanup(crate::commands::cleanup::CleanupArgs),
    /// All of phase I in order — check, setup, schema, snapshot, load,
    /// verify, resume the replica — resumable: each step's status is kept in
    /// the target and a rerun continues where it stopped.
    ///
    /// Asks before the first change to the source (--yes for automation).
    /// --dry-run prints the runbook's statements, per server, in order.
    #[command(after_help = "Example:\n  pgmig run --dry-run\n  pgmig run --slots 6 --jobs 4 --yes")]
    Run(crate::commands::run::RunArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  pgmig completions bash > /etc/bash_completion.d/pgmig")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Step 11: resume WAL replay on the maintenance replica and confirm it.
    #[command(after_help = "Example:\n  pgmig resume-replica")]
    ResumeReplica,
    /// Start a local lab (source, maintenance replica, target) and run a whole
    /// migration under live writes.
    #[command(after_help = "Example:\n  pgmig demo")]
    Demo,
}

/// `pgmig lsn …`
#[derive(Debug, Subcommand)]
pub enum LsnCommand {
    /// Compare two LSNs: prints `<`, `=` or `>` and the distance in bytes.
    ///
    /// LSNs are compared as 64-bit positions, never as text (`9/0` < `10/0`).
    #[command(after_help = "Example:\n  $ pgmig lsn compare 35FE3/B63D4718 35FE3/B63D4717\n  > 1")]
    Compare {
        /// The first LSN, as PostgreSQL prints it (`X/Y` in hex).
        a: Lsn,
        /// The second LSN.
        b: Lsn,
    },
}

/// `pgmig plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// How many slots at most (the planner never uses more than it needs).
    #[arg(long, default_value_t = 6)]
    pub slots: usize,
    /// Migrate only tables matching this pattern (repeatable): `schema.*`,
    /// `schema.table`, `*.audit_*`; quoted parts match exactly.
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<pgmig_core::plan::TablePattern>,
    /// Leave out tables matching this pattern (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<pgmig_core::plan::TablePattern>,
    /// Write the connections (without passwords) and the plan to this
    /// config file.
    #[arg(long, value_name = "FILE")]
    pub write: Option<std::path::PathBuf>,
}

/// `pgmig setup` options.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// How many slots to spread the tables over when no plan is configured.
    #[arg(long, default_value_t = 6)]
    pub slots: usize,
    /// The pglogical node name (default: pgmig_provider).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The DSN stored in pglogical's node catalog (default: the source
    /// connection without password). Must not contain a password.
    #[arg(long, value_name = "DSN")]
    pub node_dsn: Option<String>,
    /// Drop and recreate a node whose DSN differs (only when no subscription uses it).
    #[arg(long)]
    pub recreate_node: bool,
}

/// `pgmig load` options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Parallel workers in this process (default: the number of CPUs, at
    /// least 2).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Split tables larger than this into chunks of about this size: bytes,
    /// or with a kB/MB/GB/TB suffix.
    #[arg(long, value_name = "SIZE", default_value = "1GB")]
    pub chunk_size: pgmig_fullload::load::ByteSize,
    /// COPY format: `auto` (binary where the column types are portable
    /// between the two servers, text otherwise), `text` or `binary`.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    pub format: pgmig_fullload::load::FormatChoice,
    /// Start over: empty the loaded tables, drop the indexes the load built
    /// and forget every chunk (asks first; --yes for automation).
    #[arg(long)]
    pub restart: bool,
    /// `maintenance_work_mem` for the index builds on the target.
    #[arg(long, value_name = "SIZE", default_value = "512MB")]
    pub maintenance_work_mem: String,
    /// How long an index build or constraint waits for a lock held by
    /// another session on the target before failing, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub lock_timeout: u64,
    /// Seconds a chunk's COPY may go without any answer from the replica or
    /// the target (plus --lock-timeout where a lock wait is possible) before
    /// the chunk fails as stalled: a hung server or a network that drops
    /// packets without closing the connection never hangs the load.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        env = "PGMIG_LOAD_STALL_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub stall_timeout: u64,
}

/// `pgmig schema` options.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Leave out ownership (`ALTER … OWNER TO`): objects belong to the
    /// target's connecting role. Default: keep the source's owners.
    #[arg(long)]
    pub no_owner: bool,
    /// Also copy roles from `pg_dumpall --globals-only --no-role-passwords`,
    /// without the attributes a managed target refuses (SUPERUSER,
    /// REPLICATION, BYPASSRLS) and the provider's roles.
    #[arg(long)]
    pub with_globals: bool,
    /// Also copy the pglogical extension and its schema (left out by default).
    #[arg(long)]
    pub with_pglogical: bool,
    /// The pg_dump to use (its directory must hold pg_restore and psql too);
    /// default: PGMIG_PG_DUMP, else the newest found.
    #[arg(long, value_name = "PATH")]
    pub pg_dump: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |dsn: &Option<String>| dsn.as_deref().map(pgmig_core::config::redact_dsn);
        f.debug_struct("GlobalArgs")
            .field("verbose", &self.verbose)
            .field("json", &self.json)
            .field("dry_run", &self.dry_run)
            .field("yes", &self.yes)
            .field("config", &self.config)
            .field("source", &masked(&self.source))
            .field("replica", &masked(&self.replica))
            .field("target", &masked(&self.target))
            .finish()
    }
}
