//! The full-load benchmark (issue 5, item 8): `pgmig load` against the other
//! ways of copying the same frozen data, side by side, in one run.
//!
//! ```text
//! cargo bench -p pgmig-tests --bench load -- --scale 4 [--jobs 2] [--only pgmig,pgcopydb] [--keep] [--json]
//! bench/run --scale 4          # the same
//! ```
//!
//! It starts a lab (PG15 source with pglogical, its streaming replica, a PG15
//! target), builds `bench/dataset.sql` at the given scale on the source,
//! waits for the replica, runs `pgmig setup`, `snapshot` (the replica stays
//! paused at P from then on, so every method reads the same frozen data) and
//! `schema`, then times, each into a fresh target database that is checked
//! (row counts, and index and constraint counts for the full methods) and
//! dropped afterwards: `pgmig load`, `pgcopydb clone --not-consistent`,
//! `pg_dump | psql`, the runbook as written, raw `COPY | COPY` pipes (binary
//! and text, no indexes) and the read side alone (`COPY … TO STDOUT` into
//! /dev/null). It prints one table, the verdicts of issue 5 and the machine.
//! `bench/README.md` explains each row.
//!
//! Exit status: 0 when every selected method ran and checked out and (from
//! scale 4 on) no verdict failed; 1 otherwise (the table is printed either
//! way); 2 for bad arguments; 3 when the lab itself could not be set up.

use std::io::BufRead;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pgmig_testkit::{Cluster, LAB_HOST, LAB_SUPERUSER, lab_base_dir, workspace_root};
use serde_json::{Value, json};

mod support;

use support::{lab_err, loadavg, locate_pgmig, say};

const USAGE: &str = "usage: cargo bench -p pgmig-tests --bench load -- [--scale N] [--jobs N] [--only M,M] [--keep] [--json] [--pgmig PATH] [--dataset FILE]
  --scale N      millions of rows in bench.events (default 1; fractions such as 0.05 work)
  --jobs N       pgmig load --jobs, pgcopydb --table-jobs/--index-jobs (default 2)
  --only M,M     run only these methods: pgmig, runbook, pg_dump, pgcopydb,
                 copy-binary, copy-text, read-binary, read-text
  --keep         keep each method's target database, and the servers until Enter
  --json         print the figures as one JSON document on stdout
  --pgmig PATH   use this pgmig binary (default: cargo build --release -p pgmig-cli)
  --dataset FILE the workload script (default: bench/dataset.sql)";

/// Every method, in the order they run.
const METHODS: [&str; 8] = [
    "read-binary",
    "read-text",
    "copy-binary",
    "copy-text",
    "pgmig",
    "pgcopydb",
    "pg_dump",
    "runbook",
];

/// The targets of issue 5 (at scale 4 on the 2-core machine).
const LIMIT_PGCOPYDB: f64 = 0.8;
const LIMIT_RUNBOOK: f64 = 0.5;
const LIMIT_RAW_PIPE: f64 = 1.2;

/// From this scale on, a failed verdict fails the run (exit status 1).
const BINDING_SCALE: f64 = 4.0;

/// How many `pg_dump -t | psql` the runbook runs at once.
const RUNBOOK_PARALLEL: usize = 3;

// ---------------------------------------------------------------- arguments

fn main() -> ExitCode {
    support::main("load", USAGE, parse_args, bench)
}

struct Args {
    /// As given, passed to `psql -v scale=`.
    scale: String,
    scale_f: f64,
    jobs: usize,
    only: Option<Vec<String>>,
    keep: bool,
    json: bool,
    pgmig: Option<PathBuf>,
    dataset: PathBuf,
}

impl Args {
    fn wants(&self, method: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|m| m == method))
    }
}

/// `Ok(None)` when not run by `cargo bench` (which passes `--bench`): under
/// `cargo test --benches` the bench does nothing.
fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut args = Args {
        scale: "1".into(),
        scale_f: 1.0,
        jobs: 2,
        only: None,
        keep: false,
        json: false,
        pgmig: std::env::var_os("PGMIG_BIN").map(PathBuf::from),
        dataset: workspace_root().join("bench").join("dataset.sql"),
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--bench" => {}
            "--keep" => args.keep = true,
            "--json" => args.json = true,
            "--scale" => {
                let v = value()?;
                let f: f64 = v
                    .parse()
                    .map_err(|_| format!("--scale {v}: not a number"))?;
                if !(f > 0.0 && f <= 1000.0 && v.chars().all(|c| c.is_ascii_digit() || c == '.')) {
                    return Err(format!("--scale {v}: must be a positive number"));
                }
                args.scale = v;
                args.scale_f = f;
            }
            "--jobs" => {
                let v = value()?;
                args.jobs = v
                    .parse()
                    .ok()
                    .filter(|j| *j >= 1)
                    .ok_or_else(|| format!("--jobs {v}: must be a positive integer"))?;
            }
            "--only" => {
                let v = value()?;
                let only: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = only.iter().find(|m| !METHODS.contains(&m.as_str())) {
                    return Err(format!(
                        "--only: unknown method {bad:?} (one of {})",
                        METHODS.join(", ")
                    ));
                }
                args.only = Some(only);
            }
            "--pgmig" => args.pgmig = Some(PathBuf::from(value()?)),
            "--dataset" => args.dataset = PathBuf::from(value()?),
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

// ---------------------------------------------------------------- processes

/// Where the client tools are, and the environment every child gets.
struct Tools {
    client_bin: PathBuf,
    path: String,
    time: Option<PathBuf>,
    pgcopydb: Option<PathBuf>,
    scratch: PathBuf,
    logs: PathBuf,
}

impl Tools {
    fn locate() -> Result<Tools, String> {
        let client_bin = pgmig_testkit::client_bin_dir();
        for tool in ["psql", "pg_dump"] {
            if !client_bin.join(tool).is_file() {
                return Err(format!(
                    "{} not found (set PGMIG_CLIENT_BIN or apt-get install postgresql-client-15)",
                    client_bin.join(tool).display()
                ));
            }
        }
        let path = match std::env::var("PATH") {
            Ok(p) if !p.is_empty() => format!("{}:{p}", client_bin.display()),
            _ => format!("{}:/usr/local/bin:/usr/bin:/bin", client_bin.display()),
        };
        let time = Some(PathBuf::from("/usr/bin/time")).filter(|p| p.is_file());
        let pgcopydb = Some(PathBuf::from("/usr/bin/pgcopydb")).filter(|p| p.is_file());
        let scratch = std::env::temp_dir().join(format!("pgmig-bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .map_err(|e| format!("creating {}: {e}", scratch.display()))?;
        let logs = std::env::temp_dir().join(format!("pgmig-bench-logs-{}", std::process::id()));
        Ok(Tools {
            client_bin,
            path,
            time,
            pgcopydb,
            scratch,
            logs,
        })
    }

    /// Gives a command the bench's environment: PG15 client tools first on
    /// PATH, no pgmig or libpq settings inherited, run from the scratch dir
    /// (so no `./pgmig.toml` is picked up).
    fn prepare(&self, cmd: &mut Command) {
        cmd.env("PATH", &self.path).current_dir(&self.scratch);
        for var in [
            "RUST_LOG",
            "PGMIG_SOURCE",
            "PGMIG_REPLICA",
            "PGMIG_TARGET",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
    }

    /// Runs `program args` to completion under `/usr/bin/time -f %M` (when
    /// there), capturing its output: wall time and peak RSS.
    ///
    /// The child gets its own process group: pgcopydb signals its whole
    /// group when it stops, which would otherwise take the bench with it.
    fn timed(&self, program: &Path, args: &[String], env: &[(&str, &str)]) -> Outcome {
        let rss_file = self.scratch.join("rss");
        let _ = std::fs::remove_file(&rss_file);
        let mut cmd = match &self.time {
            Some(time) => {
                let mut cmd = Command::new(time);
                cmd.args(["-f", "%M", "-o"]).arg(&rss_file).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        self.prepare(&mut cmd);
        cmd.args(args).stdin(Stdio::null()).process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let output = cmd.output();
        let wall = started.elapsed().as_secs_f64();
        let mut outcome = match output {
            Ok(out) => Outcome {
                wall,
                rss_kb: std::fs::read_to_string(&rss_file)
                    .ok()
                    .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok())),
                ok: out.status.success(),
                status: out.status.to_string(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                log: None,
            },
            Err(e) => Outcome {
                wall,
                rss_kb: None,
                ok: false,
                status: "not started".into(),
                stdout: String::new(),
                stderr: format!("cannot run {}: {e}", program.display()),
                log: None,
            },
        };
        if !outcome.ok {
            outcome.log = self.save_log(program, args, &outcome);
        }
        outcome
    }

    /// Keeps a failed command's output in the log directory (which, unlike
    /// the scratch directory, is not removed at the end).
    fn save_log(&self, program: &Path, args: &[String], out: &Outcome) -> Option<PathBuf> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(&self.logs).ok()?;
        let name = program.file_name()?.to_string_lossy().into_owned();
        let path = self.logs.join(format!("{n:02}-{name}.log"));
        let text = format!(
            "$ {} {}\n{}\n--- stdout\n{}\n--- stderr\n{}\n",
            program.display(),
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        std::fs::write(&path, text).ok()?;
        Some(path)
    }

    /// Runs a bash script (`set -euo pipefail`) with `SRC`, `DST`, ... in
    /// its environment and `q` defined as `psql -X -q -v ON_ERROR_STOP=1`.
    fn script(&self, body: &str, env: &[(&str, &str)]) -> Outcome {
        let full =
            format!("set -euo pipefail\nq() {{ psql -X -q -v ON_ERROR_STOP=1 \"$@\"; }}\n{body}");
        self.timed(Path::new("bash"), &["-c".into(), full], env)
    }
}

/// How one child process went.
struct Outcome {
    wall: f64,
    rss_kb: Option<u64>,
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
    /// Where the output of a failed command was saved.
    log: Option<PathBuf>,
}

impl Outcome {
    /// The tail of stderr (or the exit status), on one line, for a report row.
    fn error(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // The first line that says what went wrong, and the last line.
        let first_error = lines.iter().position(|l| {
            l.contains("ERROR") || l.contains("FATAL") || l.to_lowercase().starts_with("error")
        });
        let picked: Vec<&str> = match first_error {
            Some(i) if i + 1 == lines.len() => vec![lines[i]],
            Some(i) => vec![lines[i], lines[lines.len() - 1]],
            None => lines[lines.len().saturating_sub(3)..].to_vec(),
        };
        let mut msg = picked.join(" | ");
        if msg.chars().count() > 400 {
            msg = format!("{}…", msg.chars().take(400).collect::<String>());
        }
        if msg.is_empty() {
            msg = self.status.clone();
        }
        if let Some(log) = &self.log {
            msg.push_str(&format!(" (full output: {})", log.display()));
        }
        msg
    }

    fn into_result(self, what: &str) -> Result<Outcome, String> {
        if self.ok {
            Ok(self)
        } else {
            Err(format!("{what}: failed: {}", self.error()))
        }
    }
}

// ---------------------------------------------------------------- the lab

/// What the workload looks like on the paused replica.
struct Dataset {
    db: String,
    tables: Vec<TableInfo>,
    indexes: i64,
    constraints: i64,
    build_s: f64,
}

struct TableInfo {
    name: String,
    rows: i64,
    heap_bytes: i64,
    total_bytes: i64,
}

impl Dataset {
    fn names(&self) -> String {
        self.tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn total_bytes(&self) -> i64 {
        self.tables.iter().map(|t| t.total_bytes).sum()
    }
}

async fn query_i64(cluster: &Cluster, db: &str, sql: &str) -> Result<i64, String> {
    let text = cluster
        .query_one_string(db, sql)
        .await
        .map_err(|e| e.to_string())?;
    text.trim()
        .parse()
        .map_err(|_| format!("{sql}: not a number: {text}"))
}

const INDEX_COUNT_SQL: &str = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'bench'";
const CONSTRAINT_COUNT_SQL: &str = "SELECT count(*) FROM pg_constraint c \
     JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'bench'";

async fn inspect(replica: &Cluster, db: &str, build_s: f64) -> Result<Dataset, String> {
    let names = replica
        .query_opt_string(
            db,
            "SELECT string_agg(c.relname, ' ' ORDER BY pg_total_relation_size(c.oid) DESC) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'bench' AND c.relkind = 'r'",
        )
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let mut tables = Vec::new();
    for name in names.split_whitespace() {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "table bench.{name}: the bench scripts only handle plain lower-case names"
            ));
        }
        tables.push(TableInfo {
            name: name.to_owned(),
            rows: query_i64(replica, db, &format!("SELECT count(*) FROM bench.{name}")).await?,
            heap_bytes: query_i64(
                replica,
                db,
                &format!("SELECT pg_relation_size('bench.{name}')"),
            )
            .await?,
            total_bytes: query_i64(
                replica,
                db,
                &format!("SELECT pg_total_relation_size('bench.{name}')"),
            )
            .await?,
        });
    }
    if tables.is_empty() {
        return Err("the dataset made no table in schema bench".into());
    }
    Ok(Dataset {
        db: db.to_owned(),
        tables,
        indexes: query_i64(replica, db, INDEX_COUNT_SQL).await?,
        constraints: query_i64(replica, db, CONSTRAINT_COUNT_SQL).await?,
        build_s,
    })
}

/// Checks a method's result in `db` on the target: every table's row
/// count, and for the full methods the number of indexes and constraints.
async fn check_target(target: &Cluster, db: &str, ds: &Dataset, full: bool) -> Result<(), String> {
    let mut wrong = Vec::new();
    for t in &ds.tables {
        match query_i64(
            target,
            db,
            &format!("SELECT count(*) FROM bench.{}", t.name),
        )
        .await
        {
            Ok(n) if n == t.rows => {}
            Ok(n) => wrong.push(format!("bench.{} has {n} rows, not {}", t.name, t.rows)),
            Err(e) => wrong.push(format!("bench.{}: {e}", t.name)),
        }
    }
    if full {
        let indexes = query_i64(target, db, INDEX_COUNT_SQL).await?;
        if indexes != ds.indexes {
            wrong.push(format!("{indexes} indexes, not {}", ds.indexes));
        }
        let constraints = query_i64(target, db, CONSTRAINT_COUNT_SQL).await?;
        if constraints != ds.constraints {
            wrong.push(format!("{constraints} constraints, not {}", ds.constraints));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Free space (bytes) on the filesystem holding `dir`, from `df -Pk`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A `postgres://` URI for pgcopydb.
fn uri(cluster: &Cluster, db: &str) -> String {
    format!(
        "postgres://{LAB_SUPERUSER}@{LAB_HOST}:{}/{db}",
        cluster.port()
    )
}

// ---------------------------------------------------------------- pgmig

/// What `pgmig load` needs once `setup`, `snapshot` and `schema` have run.
struct Pgmig {
    bin: PathBuf,
    globals: Vec<String>,
    target_db: String,
    schema_s: f64,
    version: String,
}

async fn prepare_pgmig(
    tools: &Tools,
    bin: PathBuf,
    source: &Cluster,
    replica: &Cluster,
    target: &Cluster,
    db: &str,
) -> Result<Pgmig, String> {
    let target_db = target
        .create_database("bench_pgmig")
        .await
        .map_err(lab_err("creating pgmig's target database"))?;
    let globals = vec![
        "--source".to_owned(),
        source.conninfo(db),
        "--replica".to_owned(),
        replica.conninfo(db),
        "--target".to_owned(),
        target.conninfo(&target_db),
    ];
    let version = tools
        .timed(&bin, &["--version".into()], &[])
        .stdout
        .trim()
        .to_owned();
    let run = |cmd: &[&str]| {
        let mut argv = globals.clone();
        argv.extend(cmd.iter().map(|s| (*s).to_owned()));
        tools
            .timed(&bin, &argv, &[])
            .into_result(&format!("pgmig {}", cmd.join(" ")))
    };
    say("pgmig setup --slots 2 --yes");
    run(&["setup", "--slots", "2", "--yes"])?;
    say("pgmig snapshot (pauses the replica at P)");
    let snap = run(&["snapshot"])?;
    if let Some(p) = snap.stdout.lines().find(|l| l.contains("P =")) {
        say(format!("  {}", p.trim()));
    }
    say("pgmig schema");
    let schema = run(&["schema"])?;
    Ok(Pgmig {
        bin,
        globals,
        target_db,
        schema_s: schema.wall,
        version,
    })
}

/// What `pgmig load --json` reported.
#[derive(Default)]
struct LoadFigures {
    elapsed_ms: Option<f64>,
    data_elapsed_ms: Option<f64>,
    rows: Option<i64>,
    bytes: Option<i64>,
}

fn parse_load_json(stdout: &str) -> Result<LoadFigures, String> {
    // `pgmig --json load` prints JSON lines (progress events), the last one
    // `{"event":"result", ...}` with the report; a single document works too.
    let docs: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .chain(serde_json::from_str::<Value>(stdout.trim()).ok())
        .collect();
    let doc = docs
        .iter()
        .rev()
        .find(|d| d["event"] == "result")
        .or_else(|| {
            docs.iter()
                .rev()
                .find(|d| d.get("data_elapsed_ms").is_some())
        })
        .ok_or_else(|| {
            format!(
                "pgmig load --json printed no result: {}",
                stdout.chars().take(200).collect::<String>()
            )
        })?;
    let figures = LoadFigures {
        elapsed_ms: doc["elapsed_ms"].as_f64(),
        data_elapsed_ms: doc["data_elapsed_ms"].as_f64(),
        rows: doc["rows"].as_i64(),
        bytes: doc["bytes"].as_i64(),
    };
    if figures.data_elapsed_ms.is_none() {
        return Err(format!(
            "pgmig load --json result lacks data_elapsed_ms: {}",
            doc.to_string().chars().take(300).collect::<String>()
        ));
    }
    if doc["already_done"] == true {
        return Err("pgmig load found the load already done: nothing was timed".into());
    }
    Ok(figures)
}

// ---------------------------------------------------------------- rows

/// One line of the report.
struct Row {
    key: &'static str,
    label: String,
    /// Compared with pgmig's data phase rather than its whole load.
    data_only: bool,
    wall: Option<f64>,
    rss_kb: Option<u64>,
    /// `Some(Ok)` checked and right, `Some(Err)` wrong, `None` not checked.
    check: Option<Result<(), String>>,
    failure: Option<String>,
}

impl Row {
    fn new(key: &'static str, label: impl Into<String>, data_only: bool) -> Row {
        Row {
            key,
            label: label.into(),
            data_only,
            wall: None,
            rss_kb: None,
            check: None,
            failure: None,
        }
    }

    fn measured(mut self, outcome: &Outcome) -> Row {
        self.wall = Some(outcome.wall);
        self.rss_kb = outcome.rss_kb;
        self
    }

    fn failed(mut self, msg: impl Into<String>) -> Row {
        self.failure = Some(msg.into());
        self
    }

    /// The wall time, when the method ran and its result checked out.
    fn good_wall(&self) -> Option<f64> {
        match (&self.failure, &self.check) {
            (None, Some(Err(_))) | (Some(_), _) => None,
            _ => self.wall,
        }
    }

    fn is_good(&self) -> bool {
        self.failure.is_none() && !matches!(self.check, Some(Err(_)))
    }
}

/// The bench's state while the methods run.
struct Bench<'a> {
    args: &'a Args,
    tools: &'a Tools,
    replica: &'a Cluster,
    target: &'a Cluster,
    ds: &'a Dataset,
    src: String,
    kept: Vec<String>,
}

impl Bench<'_> {
    async fn fresh_db(&self, prefix: &str) -> Result<String, String> {
        self.target
            .create_database(prefix)
            .await
            .map_err(lab_err("creating a target database"))
    }

    /// Drops a method's database (unless --keep), then checkpoints the
    /// target and syncs, so the next method starts from a quiet machine.
    async fn done_with(&mut self, db: &str) {
        if self.args.keep {
            self.kept.push(db.to_owned());
        } else {
            match self
                .target
                .execute("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
                .await
            {
                Ok(()) => {}
                Err(e) => say(format!("  could not drop {db}: {e}")),
            }
        }
        self.settle().await;
    }

    async fn settle(&self) {
        if let Err(e) = self.target.execute("postgres", "CHECKPOINT").await {
            say(format!("  CHECKPOINT on the target: {e}"));
        }
        let _ = Command::new("sync").status();
    }

    fn dst(&self, db: &str) -> String {
        self.target.conninfo(db)
    }

    /// Reads every table into /dev/null with `COPY … TO STDOUT`.
    fn read(&self, format: &str) -> Outcome {
        let tables = self.ds.names();
        self.tools.script(
            "for t in $TABLES; do q -d \"$SRC\" -c \"COPY bench.$t TO STDOUT (FORMAT $FMT)\" > /dev/null; done",
            &[("SRC", &self.src), ("TABLES", &tables), ("FMT", format)],
        )
    }

    fn read_row(&self, format: &'static str) -> Row {
        let key = if format == "binary" {
            "read-binary"
        } else {
            "read-text"
        };
        let row = Row::new(
            key,
            format!("COPY {format} TO STDOUT > /dev/null (read side)"),
            true,
        );
        say(format!(
            "{key}: COPY … TO STDOUT (FORMAT {format}) > /dev/null"
        ));
        let out = self.read(format);
        if out.ok {
            row.measured(&out)
        } else {
            row.measured(&out)
                .failed(format!("failed: {}", out.error()))
        }
    }

    /// Pre-data only (no indexes), then one `COPY | COPY` pipe per table,
    /// one table after the other.
    async fn copy_row(&mut self, format: &'static str) -> Row {
        let key = if format == "binary" {
            "copy-binary"
        } else {
            "copy-text"
        };
        let row = Row::new(
            key,
            format!("COPY {format} | COPY, no indexes, table by table"),
            true,
        );
        say(format!(
            "{key}: COPY (FORMAT {format}) pipes into tables without indexes"
        ));
        let db = match self
            .fresh_db(&format!("bench_{}", key.replace('-', "_")))
            .await
        {
            Ok(db) => db,
            Err(e) => return row.failed(format!("failed: {e}")),
        };
        let row = match self.copy_pipes(&db, format) {
            Err(e) => row.failed(format!("failed: {e}")),
            Ok(out) if !out.ok => row
                .measured(&out)
                .failed(format!("failed: {}", out.error())),
            Ok(out) => {
                let mut row = row.measured(&out);
                row.check = Some(check_target(self.target, &db, self.ds, false).await);
                row
            }
        };
        self.done_with(&db).await;
        row
    }

    /// Restores pre-data (tables, no indexes) into `db`, then times one
    /// `COPY | COPY` pipe per table, one table after the other.
    fn copy_pipes(&self, db: &str, format: &str) -> Result<Outcome, String> {
        let dst = self.dst(db);
        let tables = self.ds.names();
        let env = [
            ("SRC", self.src.as_str()),
            ("DST", dst.as_str()),
            ("TABLES", tables.as_str()),
            ("FMT", format),
        ];
        let schema = self.tools.script(
            "pg_dump -s --section=pre-data -n bench -d \"$SRC\" | q -d \"$DST\"",
            &env,
        );
        if !schema.ok {
            return Err(format!("pre-data schema: {}", schema.error()));
        }
        Ok(self.tools.script(
            "for t in $TABLES; do\n  q -d \"$SRC\" -c \"COPY bench.$t TO STDOUT (FORMAT $FMT)\" \
             | q -d \"$DST\" -c \"COPY bench.$t FROM STDIN (FORMAT $FMT)\"\ndone",
            &env,
        ))
    }

    /// One untimed binary `COPY | COPY` of everything into a scratch
    /// database, dropped at once: the fresh target's first bulk load also
    /// creates its WAL segment files, which later loads recycle; without
    /// this, whichever method runs first pays for it.
    async fn warm_target(&self) -> Result<f64, String> {
        let db = self.fresh_db("bench_warmup").await?;
        let out = self.copy_pipes(&db, "binary");
        self.target
            .execute("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
            .await
            .map_err(|e| e.to_string())?;
        self.settle().await;
        let out = out?;
        if out.ok {
            Ok(out.wall)
        } else {
            Err(out.error())
        }
    }

    /// `pg_dump -n bench | psql` into an empty database.
    async fn dump_row(&mut self) -> Row {
        let row = Row::new("pg_dump", "pg_dump -n bench | psql", false);
        say("pg_dump: pg_dump -n bench | psql");
        let db = match self.fresh_db("bench_pg_dump").await {
            Ok(db) => db,
            Err(e) => return row.failed(format!("failed: {e}")),
        };
        let dst = self.dst(&db);
        let out = self.tools.script(
            "pg_dump -n bench -d \"$SRC\" | q -d \"$DST\"",
            &[("SRC", &self.src), ("DST", &dst)],
        );
        let row = self.finish_full(row, &out, &db).await;
        self.done_with(&db).await;
        row
    }

    /// The runbook as written: the whole schema with its indexes first, then
    /// `pg_dump --data-only -t T | psql` per table, 3 at a time.
    async fn runbook_row(&mut self) -> Row {
        let row = Row::new(
            "runbook",
            format!("runbook: schema+indexes, pg_dump -t | psql ×{RUNBOOK_PARALLEL}"),
            false,
        );
        say(format!(
            "runbook: pg_dump -s | psql, then pg_dump --data-only -t T | psql, {RUNBOOK_PARALLEL} at a time"
        ));
        let db = match self.fresh_db("bench_runbook").await {
            Ok(db) => db,
            Err(e) => return row.failed(format!("failed: {e}")),
        };
        let dst = self.dst(&db);
        let tables = self.ds.names();
        let parallel = RUNBOOK_PARALLEL.to_string();
        let out = self.tools.script(
            r#"pg_dump -s -n bench -d "$SRC" | q -d "$DST"
pids=()
for t in $TABLES; do
  ( pg_dump --data-only -t "bench.$t" -d "$SRC" | q -d "$DST" ) &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$PARALLEL" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done"#,
            &[
                ("SRC", &self.src),
                ("DST", &dst),
                ("TABLES", &tables),
                ("PARALLEL", &parallel),
            ],
        );
        let row = self.finish_full(row, &out, &db).await;
        self.done_with(&db).await;
        row
    }

    /// `pgcopydb clone --not-consistent`, restricted to the bench tables.
    async fn pgcopydb_row(&mut self) -> Row {
        let jobs = self.args.jobs;
        let row = Row::new(
            "pgcopydb",
            format!("pgcopydb clone --not-consistent ({jobs}+{jobs} jobs)"),
            false,
        );
        let Some(pgcopydb) = self.tools.pgcopydb.clone() else {
            return row.failed("not installed (apt-get install pgcopydb)");
        };
        say(format!(
            "pgcopydb: clone --not-consistent --table-jobs {jobs} --index-jobs {jobs}"
        ));
        let db = match self.fresh_db("bench_pgcopydb").await {
            Ok(db) => db,
            Err(e) => return row.failed(format!("failed: {e}")),
        };
        let dir = self.tools.scratch.join("pgcopydb");
        let _ = std::fs::remove_dir_all(&dir);
        let args: Vec<String> = vec![
            "clone".into(),
            "--not-consistent".into(),
            "--table-jobs".into(),
            jobs.to_string(),
            "--index-jobs".into(),
            jobs.to_string(),
            "--skip-extensions".into(),
            "--no-owner".into(),
            "--no-acl".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--source".into(),
            uri(self.replica, &self.ds.db),
            "--target".into(),
            uri(self.target, &db),
        ];
        let out = self.tools.timed(&pgcopydb, &args, &[]);
        let row = self.finish_full(row, &out, &db).await;
        let _ = std::fs::remove_dir_all(&dir);
        self.done_with(&db).await;
        row
    }

    /// Records a full method's outcome and checks its database.
    async fn finish_full(&self, row: Row, out: &Outcome, db: &str) -> Row {
        if out.ok {
            let mut row = row.measured(out);
            row.check = Some(check_target(self.target, db, self.ds, true).await);
            row
        } else {
            row.measured(out).failed(format!("failed: {}", out.error()))
        }
    }

    /// `pgmig load --jobs N`, timed, with its JSON figures.
    async fn pgmig_row(&mut self, pgmig: &Pgmig) -> (Row, LoadFigures) {
        let jobs = self.args.jobs;
        let row = Row::new(
            "pgmig",
            format!("pgmig load --jobs {jobs} (data+indexes+constraints)"),
            false,
        );
        say(format!("pgmig: pgmig load --jobs {jobs}"));
        let mut argv = vec!["--json".to_owned()];
        argv.extend(pgmig.globals.iter().cloned());
        argv.extend(["load".to_owned(), "--jobs".to_owned(), jobs.to_string()]);
        let out = self.tools.timed(&pgmig.bin, &argv, &[]);
        let (row, figures) = if !out.ok {
            (
                row.measured(&out)
                    .failed(format!("failed: {}", out.error())),
                LoadFigures::default(),
            )
        } else {
            match parse_load_json(&out.stdout) {
                Ok(figures) => {
                    let mut row = row.measured(&out);
                    row.check =
                        Some(check_target(self.target, &pgmig.target_db, self.ds, true).await);
                    (row, figures)
                }
                Err(e) => (
                    row.measured(&out).failed(format!("failed: {e}")),
                    LoadFigures::default(),
                ),
            }
        };
        self.done_with(&pgmig.target_db).await;
        (row, figures)
    }
}

// ---------------------------------------------------------------- the run

async fn bench(args: Args) -> Result<bool, String> {
    support::start_clock();
    let tools = Tools::locate()?;
    if !args.dataset.is_file() {
        return Err(format!(
            "the workload {} is missing",
            args.dataset.display()
        ));
    }

    // Space: source, replica and one target copy (~0.31 GB per scale unit
    // each), WAL on all three (capped by max_wal_size), with a margin.
    let lab_dir = lab_base_dir().map_err(|e| e.to_string())?;
    let need = (args.scale_f * 1.2e9) as u64 + 4_000_000_000;
    if let Some(free) = free_bytes(&lab_dir)
        && free < need
    {
        return Err(format!(
            "{} has {:.1} GB free; scale {} needs about {:.1} GB (set PGMIG_LAB_DIR elsewhere)",
            lab_dir.display(),
            free as f64 / 1e9,
            args.scale,
            need as f64 / 1e9
        ));
    }

    let pgmig_bin = if args.wants("pgmig") {
        Some(locate_pgmig(args.pgmig.as_deref()))
    } else {
        None
    };

    let load_at_start = loadavg();
    let (source, replica, target, db) = support::start_lab().await?;

    say(format!(
        "building the workload at scale {} ({})",
        args.scale,
        args.dataset.display()
    ));
    let build = tools
        .timed(
            &tools.client_bin.join("psql"),
            &[
                "-X".into(),
                "-q".into(),
                "-v".into(),
                format!("scale={}", args.scale),
                "-f".into(),
                args.dataset.display().to_string(),
                "-d".into(),
                source.conninfo(&db),
            ],
            &[],
        )
        .into_result("building the dataset")?;
    say(format!(
        "  built in {:.1} s; waiting for the replica",
        build.wall
    ));
    let head = source
        .current_wal_lsn()
        .await
        .map_err(lab_err("reading the source's WAL position"))?;
    let timeout = Duration::from_secs_f64(300.0 + 120.0 * args.scale_f);
    replica
        .wait_for_replay(head, timeout)
        .await
        .map_err(lab_err("waiting for the replica"))?;

    // pgmig's preparation pauses the replica at P; every method then reads
    // the same frozen data.
    let mut pgmig_row = None;
    let pgmig = match pgmig_bin {
        None => None,
        Some(Err(e)) => {
            pgmig_row = Some(Row::new("pgmig", "pgmig load", false).failed(format!("failed: {e}")));
            None
        }
        Some(Ok(bin)) => match prepare_pgmig(&tools, bin, &source, &replica, &target, &db).await {
            Ok(p) => Some(p),
            Err(e) => {
                pgmig_row = Some(Row::new("pgmig", "pgmig load", false).failed(e));
                None
            }
        },
    };
    ensure_paused(&replica).await?;
    let ds = inspect(&replica, &db, build.wall).await?;
    for t in &ds.tables {
        say(format!(
            "  bench.{}: {} rows, {} heap, {} with indexes",
            t.name,
            t.rows,
            mb(t.heap_bytes),
            mb(t.total_bytes)
        ));
    }

    let mut bench = Bench {
        args: &args,
        tools: &tools,
        replica: &replica,
        target: &target,
        ds: &ds,
        src: replica.conninfo(&db),
        kept: Vec::new(),
    };
    say("warming the replica's cache: COPY binary TO STDOUT > /dev/null, untimed");
    let warm = bench.read("binary");
    if !warm.ok {
        return Err(format!("warm-up read failed: {}", warm.error()));
    }
    say(format!("  warm-up read took {:.1} s", warm.wall));
    say("warming the target: COPY binary | COPY into a scratch database, untimed");
    let warm = bench
        .warm_target()
        .await
        .map_err(|e| format!("warm-up copy failed: {e}"))?;
    say(format!("  warm-up copy took {warm:.1} s"));

    let mut rows: Vec<Row> = Vec::new();
    let mut figures = LoadFigures::default();
    for method in METHODS {
        if !args.wants(method) {
            continue;
        }
        let row = match method {
            "read-binary" => bench.read_row("binary"),
            "read-text" => bench.read_row("text"),
            "copy-binary" => bench.copy_row("binary").await,
            "copy-text" => bench.copy_row("text").await,
            "pgmig" => match &pgmig {
                Some(p) => {
                    let (row, f) = Box::pin(bench.pgmig_row(p)).await;
                    figures = f;
                    row
                }
                None => pgmig_row.take().unwrap_or_else(|| {
                    Row::new("pgmig", "pgmig load", false).failed("failed: not prepared")
                }),
            },
            "pgcopydb" => Box::pin(bench.pgcopydb_row()).await,
            "pg_dump" => Box::pin(bench.dump_row()).await,
            "runbook" => Box::pin(bench.runbook_row()).await,
            _ => unreachable!("{method}"),
        };
        match (&row.failure, &row.check, row.wall) {
            (Some(f), _, _) => say(format!("  {}: {f}", row.key)),
            (None, Some(Err(e)), Some(w)) => say(format!("  {:.1} s but WRONG: {e}", w)),
            (None, _, Some(w)) => say(format!("  {w:.1} s")),
            _ => {}
        }
        rows.push(row);
    }

    let machine = machine_info(&source, &target, &tools, pgmig.as_ref(), load_at_start).await;
    let report = Report {
        args: &args,
        ds: &ds,
        rows: &rows,
        figures: &figures,
        pgmig: pgmig.as_ref(),
        machine,
    };
    let verdicts = report.verdicts();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json(&verdicts)).unwrap_or_default()
        );
    } else {
        print!("{}", report.text(&verdicts));
    }
    // The targets are set for scale 4: below it, start-up costs weigh more
    // and a FAIL is reported but does not fail the run.
    let binding = args.scale_f >= BINDING_SCALE;
    let all_good = rows.iter().all(Row::is_good)
        && (!binding || verdicts.iter().all(|v| v.pass != Some(false)));

    if args.keep {
        eprintln!("\n--keep: the lab is up until you press Enter");
        eprintln!("  source  {}", source.conninfo(&db));
        eprintln!("  replica {} (paused)", replica.conninfo(&db));
        for kept in &bench.kept {
            eprintln!("  target  {}", target.conninfo(kept));
        }
        let _ = std::io::stdin().lock().read_line(&mut String::new());
    }
    let _ = std::fs::remove_dir_all(&tools.scratch);
    Ok(all_good)
}

/// Makes sure WAL replay on the replica is paused (pgmig snapshot does it;
/// without pgmig, or when it failed, the bench does it itself).
async fn ensure_paused(replica: &Cluster) -> Result<(), String> {
    let state = async || {
        replica
            .query_one_string("postgres", "SELECT pg_get_wal_replay_pause_state()")
            .await
            .map_err(|e| e.to_string())
    };
    if state().await? == "paused" {
        return Ok(());
    }
    say("pausing the replica (pgmig did not)");
    replica
        .execute("postgres", "SELECT pg_wal_replay_pause()")
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..200 {
        if state().await? == "paused" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the replica did not pause".into())
}

// ---------------------------------------------------------------- report

fn mb(bytes: i64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    ram_gib: f64,
    load_start: String,
    load_end: String,
    source_version: String,
    target_version: String,
    pg_dump: String,
    pgcopydb: String,
    pgmig: String,
    git: String,
}

async fn machine_info(
    source: &Cluster,
    target: &Cluster,
    tools: &Tools,
    pgmig: Option<&Pgmig>,
    load_start: String,
) -> Machine {
    let first_line = |program: &Path, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text.lines()
                    .find(|l| !l.trim().is_empty() && !l.contains(" INFO "))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let version = async |c: &Cluster| {
        c.query_one_string("postgres", "SHOW server_version")
            .await
            .unwrap_or_else(|e| e.to_string())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default(),
        ram_gib: support::ram_gib(),
        load_start,
        load_end: loadavg(),
        source_version: version(source).await,
        target_version: version(target).await,
        pg_dump: first_line(&tools.client_bin.join("pg_dump"), &["--version"]),
        pgcopydb: tools
            .pgcopydb
            .as_ref()
            .map(|p| first_line(p, &["--version"]))
            .unwrap_or_else(|| "not installed".into()),
        pgmig: pgmig.map(|p| p.version.clone()).unwrap_or_default(),
        git,
    }
}

struct Verdict {
    name: String,
    pgmig_s: Option<f64>,
    other_s: Option<f64>,
    limit: f64,
    /// `None` when either side is missing.
    pass: Option<bool>,
}

struct Report<'a> {
    args: &'a Args,
    ds: &'a Dataset,
    rows: &'a [Row],
    figures: &'a LoadFigures,
    pgmig: Option<&'a Pgmig>,
    machine: Machine,
}

impl Report<'_> {
    fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    fn pgmig_wall(&self) -> Option<f64> {
        self.row("pgmig").and_then(Row::good_wall)
    }

    fn pgmig_data(&self) -> Option<f64> {
        self.pgmig_wall()
            .and(self.figures.data_elapsed_ms.map(|ms| ms / 1000.0))
    }

    /// pgmig's time over this method's: the whole load for the full
    /// methods, the data phase for the data-only ones.
    fn ratio(&self, row: &Row) -> Option<f64> {
        let mine = if row.data_only {
            self.pgmig_data()
        } else {
            self.pgmig_wall()
        }?;
        let theirs = row.good_wall()?;
        (theirs > 0.0).then(|| mine / theirs)
    }

    fn verdicts(&self) -> Vec<Verdict> {
        let verdict = |name: &str, pgmig_s: Option<f64>, other: &str, limit: f64| {
            let other_s = self.row(other).and_then(Row::good_wall);
            Verdict {
                name: name.to_owned(),
                pgmig_s,
                other_s,
                limit,
                pass: pgmig_s
                    .zip(other_s)
                    .map(|(mine, theirs)| mine <= limit * theirs),
            }
        };
        vec![
            verdict(
                &format!("pgmig load ≤ {LIMIT_PGCOPYDB} × pgcopydb clone"),
                self.pgmig_wall(),
                "pgcopydb",
                LIMIT_PGCOPYDB,
            ),
            verdict(
                &format!("pgmig load ≤ {LIMIT_RUNBOOK} × runbook"),
                self.pgmig_wall(),
                "runbook",
                LIMIT_RUNBOOK,
            ),
            verdict(
                &format!("pgmig data phase ≤ {LIMIT_RAW_PIPE} × raw binary COPY pipe"),
                self.pgmig_data(),
                "copy-binary",
                LIMIT_RAW_PIPE,
            ),
        ]
    }

    fn text(&self, verdicts: &[Verdict]) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let events = self.ds.tables.first();
        s.push_str(&format!(
            "\npgmig full-load benchmark — scale {} ({} rows in bench.{}), --jobs {}\n",
            self.args.scale,
            events.map_or(0, |t| t.rows),
            events.map_or("?", |t| t.name.as_str()),
            self.args.jobs
        ));
        s.push_str(&format!(
            "machine: {} CPUs ({}), {:.1} GiB RAM; load average {} at start, {} at end\n",
            m.cpus, m.cpu_model, m.ram_gib, m.load_start, m.load_end
        ));
        s.push_str(&format!(
            "servers: source PG {} + pglogical, paused streaming replica, target PG {}; all on loopback\n",
            m.source_version, m.target_version
        ));
        s.push_str(&format!(
            "tools: {}; {}; {} (git {})\n",
            m.pg_dump,
            m.pgcopydb,
            if m.pgmig.is_empty() {
                "pgmig ?"
            } else {
                &m.pgmig
            },
            m.git
        ));
        let tables: Vec<String> = self
            .ds
            .tables
            .iter()
            .map(|t| format!("{} {} rows", t.name, t.rows))
            .collect();
        s.push_str(&format!(
            "dataset: {}; {} with indexes; {} indexes, {} constraints; built in {:.1} s\n\n",
            tables.join(", "),
            mb(self.ds.total_bytes()),
            self.ds.indexes,
            self.ds.constraints,
            self.ds.build_s
        ));
        s.push_str(&format!(
            "{:<52} {:>8} {:>8} {:>10}  {}\n",
            "method (paused replica → target)", "wall s", "pgmig ÷", "peak RSS", "check"
        ));
        s.push_str(&format!("{}\n", "-".repeat(90)));
        for row in self.rows {
            if let Some(f) = &row.failure {
                let label = if row.key == "pgmig" {
                    "pgmig load"
                } else {
                    row.key
                };
                s.push_str(&format!("{label}: {f}\n"));
                continue;
            }
            let check = match &row.check {
                None => "-".to_owned(),
                Some(Ok(())) => "ok".to_owned(),
                Some(Err(e)) => format!("WRONG: {e}"),
            };
            s.push_str(&format!(
                "{:<52} {:>8} {:>8} {:>10}  {}\n",
                row.label,
                row.wall.map_or("-".into(), |w| format!("{w:.2}")),
                self.ratio(row).map_or("-".into(), |r| format!("{r:.2}")),
                row.rss_kb
                    .map_or("-".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
                check
            ));
            if row.key == "pgmig" {
                let f = self.figures;
                let data = f.data_elapsed_ms.map(|ms| ms / 1000.0);
                s.push_str(&format!(
                    "{:<52} {:>8}\n",
                    "  of which the data phase (data_elapsed_ms)",
                    data.map_or("-".into(), |d| format!("{d:.2}"))
                ));
                if let Some(e) = f.elapsed_ms {
                    s.push_str(&format!(
                        "{:<52} {:>8}\n",
                        "  load as pgmig reports it (elapsed_ms)",
                        format!("{:.2}", e / 1000.0)
                    ));
                }
                if let (Some(rows), Some(bytes)) = (f.rows, f.bytes) {
                    let rate = data.filter(|d| *d > 0.0).map_or(String::new(), |d| {
                        format!(", {:.0} MB/s", bytes as f64 / 1e6 / d)
                    });
                    s.push_str(&format!(
                        "  pgmig copied {rows} rows, {}{rate}\n",
                        mb(bytes)
                    ));
                }
                if let Some(kb) = row.rss_kb {
                    s.push_str(&format!("  pgmig peak RSS: {:.1} MB\n", kb as f64 / 1024.0));
                }
                if let Some(p) = self.pgmig {
                    s.push_str(&format!(
                        "{:<52} {:>8}\n",
                        "  before it: pgmig schema (pre-data, untimed)",
                        format!("{:.2}", p.schema_s)
                    ));
                }
            }
        }
        s.push_str(
            "\npgmig ÷ = pgmig's time over the method's: its whole load for full methods, its data phase\n\
             for the COPY pipes and reads. peak RSS = the largest client process (/usr/bin/time %M),\n\
             not the servers. check = row counts (and index/constraint counts for full methods).\n",
        );
        s.push_str(&format!(
            "\nverdicts (issue 5 sets them for scale 4 on the 2-core machine; this is scale {}{}):\n",
            self.args.scale,
            if self.args.scale_f < BINDING_SCALE {
                ", so they do not fail the run"
            } else {
                ""
            }
        ));
        for v in verdicts {
            let figures = match (v.pgmig_s, v.other_s) {
                (Some(a), Some(b)) => format!("{a:.2} s vs {b:.2} s → {:.2}×", a / b),
                (a, b) => format!(
                    "{} vs {}",
                    a.map_or("pgmig missing".into(), |a| format!("{a:.2} s")),
                    b.map_or("other missing".into(), |b| format!("{b:.2} s"))
                ),
            };
            let result = match v.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "n/a",
            };
            s.push_str(&format!("  {:<56} {:<34} {result}\n", v.name, figures));
        }
        s
    }

    fn json(&self, verdicts: &[Verdict]) -> Value {
        let m = &self.machine;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "method": r.key,
                    "label": r.label,
                    "wall_s": r.wall,
                    "pgmig_ratio": self.ratio(r),
                    "peak_rss_kb": r.rss_kb,
                    "check": match &r.check {
                        None => Value::Null,
                        Some(Ok(())) => json!("ok"),
                        Some(Err(e)) => json!(e),
                    },
                    "failure": r.failure,
                })
            })
            .collect();
        json!({
            "scale": self.args.scale_f,
            "jobs": self.args.jobs,
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "ram_gib": m.ram_gib,
                "load_average_start": m.load_start,
                "load_average_end": m.load_end,
                "source_version": m.source_version,
                "target_version": m.target_version,
                "pg_dump": m.pg_dump,
                "pgcopydb": m.pgcopydb,
                "pgmig": m.pgmig,
                "git": m.git,
            },
            "dataset": {
                "tables": self.ds.tables.iter().map(|t| json!({
                    "table": format!("bench.{}", t.name),
                    "rows": t.rows,
                    "heap_bytes": t.heap_bytes,
                    "total_bytes": t.total_bytes,
                })).collect::<Vec<_>>(),
                "indexes": self.ds.indexes,
                "constraints": self.ds.constraints,
                "build_s": self.ds.build_s,
            },
            "pgmig": {
                "load_s": self.row("pgmig").and_then(|r| r.wall),
                "data_s": self.figures.data_elapsed_ms.map(|ms| ms / 1000.0),
                "elapsed_ms": self.figures.elapsed_ms,
                "data_elapsed_ms": self.figures.data_elapsed_ms,
                "rows": self.figures.rows,
                "bytes": self.figures.bytes,
                "peak_rss_kb": self.row("pgmig").and_then(|r| r.rss_kb),
                "schema_s": self.pgmig.map(|p| p.schema_s),
            },
            "methods": rows,
            "verdicts": verdicts.iter().map(|v| json!({
                "verdict": v.name,
                "pgmig_s": v.pgmig_s,
                "other_s": v.other_s,
                "limit": v.limit,
                "pass": v.pass,
            })).collect::<Vec<_>>(),
        })
    }
}
