//! The CDC apply benchmark (issue 8, item 4): `pgmig cdc` throughput on a
//! backlog and its lag under a steady write load.
//!
//! ```text
//! cargo bench -p pgmig-tests --bench cdc -- [--rows N] [--rate R] [--seconds S] [--json]
//! ```
//!
//! It starts a lab (PG15 source with pglogical, its replica, a PG15 target),
//! builds `bench/dataset.sql` at a small scale plus `bench_cdc.docs` (a
//! TOASTed column), runs `pgmig setup`, `snapshot`, `schema`, `load`, then:
//!
//! 1. backlog: writes N changes on the source (transactions of 1000 rows:
//!    inserts into `bench.events` (PK) and `bench.audit_log` (no PK),
//!    updates of `bench.events`, updates of `bench_cdc.docs` that leave the
//!    TOASTed column alone, deletes) and times
//!    `pgmig --json cdc --until-caught-up` (peak RSS by `/usr/bin/time`);
//! 2. steady state: `pgmig --json cdc` in follow mode while a writer commits
//!    R changes/s (transactions of 10 changes touching every table, so every
//!    slot sees every transaction) for S seconds; the lag is sampled every
//!    second (bytes: the source's `pg_current_wal_lsn()` minus the lowest
//!    `applied_end_lsn` in the target's `pgmig.cdc_progress`; ms: the
//!    target's `now()` minus the lowest `applied_commit_time`, same clock);
//!    then the writes stop, the time until every slot has applied the last
//!    write transaction is the catch-up time, and the applier gets SIGTERM;
//! 3. checks every table (row count and a hash sum of the rows) equal on
//!    source and target, after each phase: a wrong run prints no figures.
//!
//! Exit status: 0 when everything ran and checked out; 1 when a check
//! failed; 2 for bad arguments; 3 when the lab or a step failed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgmig_testkit::{Cluster, workspace_root};
use serde_json::{Value, json};

mod support;

use support::{lab_err, loadavg, locate_pgmig, say};

const USAGE: &str = "usage: cargo bench -p pgmig-tests --bench cdc -- [--rows N] [--rate R] [--seconds S] [--scale X] [--poll-ms MS] [--json] [--pgmig PATH]
  --rows N      changes in the backlog (default 200000; rounded up to 5000)
  --rate R      changes per second of the steady write load (default 2000)
  --seconds S   how long the steady write load runs (default 30)
  --scale X     bench/dataset.sql scale (default 0.1: 100,000 events)
  --poll-ms MS  pgmig cdc --poll-ms in follow mode (default 500, pgmig's default)
  --json        print the figures as one JSON document on stdout
  --pgmig PATH  use this pgmig binary (default: cargo build --release -p pgmig-cli)";

const TABLES: [&str; 4] = [
    "bench.events",
    "bench.users",
    "bench.audit_log",
    "bench_cdc.docs",
];

/// The table whose TOASTed `doc` the updates leave alone.
const DOCS_SQL: &str = "CREATE SCHEMA bench_cdc;
CREATE TABLE bench_cdc.docs (id int PRIMARY KEY, counter int NOT NULL DEFAULT 0, doc text NOT NULL);
ALTER TABLE bench_cdc.docs ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO bench_cdc.docs SELECT g, 0, repeat(md5(g::text), 80) FROM generate_series(1, 2000) g;";

/// Changes per backlog round: five transactions of 1000 rows.
const ROUND: u64 = 5000;

/// Changes per steady-state transaction.
const STEADY_TX: u64 = 10;

// ---------------------------------------------------------------- arguments

fn main() -> ExitCode {
    support::main("cdc", USAGE, parse_args, bench)
}

struct Args {
    rows: u64,
    rate: u64,
    seconds: u64,
    scale: String,
    poll_ms: u64,
    json: bool,
    pgmig: Option<PathBuf>,
}

/// `Ok(None)` when not run by `cargo bench` (which passes `--bench`).
fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    if !argv.iter().any(|a| a == "--bench") {
        return Ok(None);
    }
    let mut args = Args {
        rows: 200_000,
        rate: 2000,
        seconds: 30,
        scale: "0.1".into(),
        poll_ms: 500,
        json: false,
        pgmig: std::env::var_os("PGMIG_BIN").map(PathBuf::from),
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
        let positive = |flag: &str, v: String| -> Result<u64, String> {
            v.parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{flag} {v}: must be a positive integer"))
        };
        match flag {
            "--bench" => {}
            "--json" => args.json = true,
            "--rows" => args.rows = positive(flag, value()?)?,
            "--rate" => args.rate = positive(flag, value()?)?,
            "--seconds" => args.seconds = positive(flag, value()?)?,
            "--poll-ms" => args.poll_ms = positive(flag, value()?)?,
            "--scale" => {
                let v = value()?;
                let ok = v.parse::<f64>().is_ok_and(|f| f > 0.0 && f <= 100.0)
                    && v.chars().all(|c| c.is_ascii_digit() || c == '.');
                if !ok {
                    return Err(format!("--scale {v}: must be a positive number"));
                }
                args.scale = v;
            }
            "--pgmig" => args.pgmig = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

// ---------------------------------------------------------------- helpers

/// Runs pgmig and the client tools with the lab's settings only.
struct Runner {
    bin: PathBuf,
    globals: Vec<String>,
    scratch: PathBuf,
    path: String,
}

impl Runner {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", &self.path)
            .current_dir(&self.scratch)
            .stdin(Stdio::null());
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
        cmd
    }

    /// `pgmig <globals> args`, under `/usr/bin/time -f %M` when there:
    /// (stdout, wall seconds, peak RSS in kB).
    fn pgmig(&self, args: &[&str]) -> Result<(String, f64, Option<u64>), String> {
        let rss_file = self.scratch.join("rss");
        let _ = std::fs::remove_file(&rss_file);
        let time = Path::new("/usr/bin/time");
        let mut cmd = if time.is_file() {
            let mut c = self.command(time);
            c.args(["-f", "%M", "-o"]).arg(&rss_file).arg(&self.bin);
            c
        } else {
            self.command(&self.bin)
        };
        cmd.args(&self.globals).args(args);
        let started = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        let wall = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "pgmig {} failed ({}):\n{}\n{}",
                args.join(" "),
                out.status,
                stdout
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let rss = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()));
        Ok((stdout, wall, rss))
    }
}

async fn one(cluster: &Cluster, db: &str, sql: &str) -> Result<String, String> {
    cluster
        .query_one_string(db, sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Row count and a hash sum of the rows, per table, equal on both sides.
async fn check(source: &Cluster, sdb: &str, target: &Cluster, tdb: &str) -> Result<(), String> {
    let mut wrong = Vec::new();
    for table in TABLES {
        let sql = format!(
            "SELECT count(*) || ':' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM {table} t"
        );
        let (s, t) = (one(source, sdb, &sql).await?, one(target, tdb, &sql).await?);
        if s != t {
            wrong.push(format!("{table}: source {s}, target {t} (count:hash)"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Sums `changes` over the slots of the `result` event of `pgmig --json cdc`.
fn result_changes(stdout: &str) -> Option<(u64, u64)> {
    let doc = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .rfind(|d| d["event"] == "result")?;
    let slots = doc["slots"].as_array()?;
    let sum = |k: &str| slots.iter().filter_map(|s| s[k].as_u64()).sum::<u64>();
    Some((sum("changes"), sum("transactions")))
}

/// read_ms and apply_ms summed over the `applied` events.
fn batch_times(stdout: &str) -> (u64, u64, u64) {
    let mut out = (0, 0, 0);
    for d in stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|d| d["event"] == "applied")
    {
        out.0 += 1;
        out.1 += d["read_ms"].as_u64().unwrap_or(0);
        out.2 += d["apply_ms"].as_u64().unwrap_or(0);
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

// ---------------------------------------------------------------- backlog

/// One backlog round: five transactions of 1000 rows each.
fn round_sql(r: u64, events: u64) -> [String; 5] {
    let base = 10_000_000 + r * 1000;
    // Deletes and updates walk the loaded rows, never the same twice.
    let del = 1 + (r * 1000) % (events / 2).max(1000);
    let upd = 1 + events / 2 + (r * 1000) % (events / 2).max(1000);
    let doc = 1 + (r * 1000) % 2000;
    [
        format!(
            "INSERT INTO bench.events SELECT g, now(), g % 1000, 'buy', (g % 1000) / 10.0, \
             jsonb_build_object('r', {r}, 'g', g), 'backlog ' || g FROM generate_series({base}, {base} + 999) g"
        ),
        "INSERT INTO bench.audit_log SELECT now(), 'backlog ' || g FROM generate_series(1, 1000) g"
            .into(),
        format!(
            "UPDATE bench.events SET amount = coalesce(amount, 0) + 1, note = 'u{r}' \
             WHERE id BETWEEN {upd} AND {upd} + 999"
        ),
        format!(
            "UPDATE bench_cdc.docs SET counter = counter + 1 WHERE id BETWEEN {doc} AND {doc} + 999"
        ),
        format!("DELETE FROM bench.events WHERE id BETWEEN {del} AND {del} + 999"),
    ]
}

// ---------------------------------------------------------------- steady load

/// One steady-state transaction of [`STEADY_TX`] changes, touching every
/// table; `i` its number.
fn steady_sql(i: u64, events: u64) -> String {
    let id = 20_000_000 + i * 4;
    // The upper half: the backlog deletes in the lower one.
    let half = (events / 2).max(1);
    let upd = 1 + half + (i * 7919) % half;
    let upd2 = 1 + half + (i * 104_729) % half;
    let user = 1 + (i * 13) % 2000;
    let doc = 1 + (i * 31) % 2000;
    format!(
        "BEGIN;\
         INSERT INTO bench.events SELECT g, now(), g % 1000, 'view', 1.5, '{{\"s\": 1}}', 'steady' \
           FROM generate_series({id}, {id} + 3) g;\
         UPDATE bench.events SET amount = coalesce(amount, 0) + 1 WHERE id IN ({upd}, {upd2});\
         DELETE FROM bench.events WHERE id = {id} - 2;\
         INSERT INTO bench.audit_log VALUES (now(), 'steady {i}');\
         UPDATE bench.users SET name = 'steady {i}' WHERE id = {user};\
         UPDATE bench_cdc.docs SET counter = counter + 1 WHERE id = {doc};"
    )
}

struct Writer {
    stop: Arc<AtomicBool>,
    transactions: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<String, String>>,
}

/// Commits `rate` changes per second (in transactions of [`STEADY_TX`])
/// until stopped; returns the source's WAL insert position read inside the
/// last transaction, before its commit.
fn start_writer(conninfo: String, rate: u64, events: u64) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let transactions = Arc::new(AtomicU64::new(0));
    let (s, n) = (stop.clone(), transactions.clone());
    let task = tokio::spawn(async move {
        let client = connect(&conninfo).await?;
        let tx_per_s = rate as f64 / STEADY_TX as f64;
        let started = Instant::now();
        let mut i: u64 = 0;
        loop {
            let stopping = s.load(Ordering::Relaxed);
            let due = (started.elapsed().as_secs_f64() * tx_per_s) as u64;
            if !stopping && i >= due {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            let mut sql = steady_sql(i, events);
            if stopping {
                // The last transaction: where its commit will come after.
                sql.push_str("SELECT pg_current_wal_insert_lsn()::text; COMMIT;");
                let rows = client
                    .simple_query(&sql)
                    .await
                    .map_err(|e| format!("write load: {e}"))?;
                n.fetch_add(1, Ordering::Relaxed);
                return rows
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .ok_or_else(|| "write load: no LSN".to_owned());
            }
            sql.push_str("COMMIT;");
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("write load: {e}"))?;
            i += 1;
            n.fetch_add(1, Ordering::Relaxed);
        }
    });
    Writer {
        stop,
        transactions,
        task,
    }
}

/// (lag bytes, lag ms) from the source's head and the target's progress.
async fn sample_lag(
    source: &tokio_postgres::Client,
    target: &tokio_postgres::Client,
) -> Result<(f64, Option<f64>), String> {
    let row = target
        .query_one(
            "SELECT min(applied_end_lsn)::text, \
             (extract(epoch FROM now() - min(applied_commit_time)) * 1000)::float8 FROM pgmig.cdc_progress",
            &[],
        )
        .await
        .map_err(|e| format!("reading pgmig.cdc_progress: {e}"))?;
    let applied: Option<String> = row.get(0);
    let ms: Option<f64> = row.get(1);
    let Some(applied) = applied else {
        return Ok((0.0, None));
    };
    let bytes: f64 = source
        .query_one(
            "SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn), 0)::float8",
            &[&applied],
        )
        .await
        .map_err(|e| format!("reading the source's WAL position: {e}"))?
        .get(0);
    Ok((bytes, ms.map(|m| m.max(0.0))))
}

// ---------------------------------------------------------------- the bench

#[derive(Default)]
struct Figures {
    backlog_generated: u64,
    backlog_gen_s: f64,
    backlog_changes: u64,
    backlog_transactions: u64,
    backlog_wall_s: f64,
    backlog_rss_kb: Option<u64>,
    backlog_batches: u64,
    backlog_read_ms: u64,
    backlog_apply_ms: u64,
    steady_target_rate: u64,
    poll_ms: u64,
    steady_seconds: f64,
    steady_changes: u64,
    lag_bytes: Vec<f64>,
    lag_ms: Vec<f64>,
    catch_up_s: f64,
    steady_applied_changes: u64,
    steady_rss_kb: Option<u64>,
}

async fn bench(args: Args) -> Result<bool, String> {
    support::start_clock();
    let bin = locate_pgmig(args.pgmig.as_deref())?;
    let client_bin = pgmig_testkit::client_bin_dir();
    let psql = client_bin.join("psql");
    if !psql.is_file() {
        return Err(format!("{} not found", psql.display()));
    }
    let load_start = loadavg();
    let (source, replica, target, db) = support::start_lab().await?;
    let tdb = target
        .create_database("bench_pgmig")
        .await
        .map_err(lab_err("creating the target database"))?;
    let scratch = std::env::temp_dir().join(format!("pgmig-bench-cdc-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let path = match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", client_bin.display()),
        _ => format!("{}:/usr/local/bin:/usr/bin:/bin", client_bin.display()),
    };
    let runner = Runner {
        bin,
        globals: vec![
            "--source".into(),
            source.conninfo(&db),
            "--replica".into(),
            replica.conninfo(&db),
            "--target".into(),
            target.conninfo(&tdb),
        ],
        scratch: scratch.clone(),
        path,
    };
    let result = Box::pin(run(&args, &runner, &source, &replica, &target, &db, &tdb)).await;
    let machine = machine(&runner, &source, load_start).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (figures, checked) = result?;
    if args.json {
        let doc = report_json(&args, &figures, &machine, &checked);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", report_text(&figures, &machine, &checked));
    }
    Ok(checked.is_ok())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    args: &Args,
    runner: &Runner,
    source: &Cluster,
    replica: &Cluster,
    target: &Cluster,
    db: &str,
    tdb: &str,
) -> Result<(Figures, Result<(), String>), String> {
    say(format!(
        "building bench/dataset.sql at scale {} and bench_cdc.docs",
        args.scale
    ));
    let dataset = workspace_root().join("bench").join("dataset.sql");
    let out = runner
        .command(&pgmig_testkit::client_bin_dir().join("psql"))
        .args(["-X", "-q", "-v", &format!("scale={}", args.scale), "-f"])
        .arg(&dataset)
        .args(["-d", &source.conninfo(db)])
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the dataset: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    source
        .execute(db, DOCS_SQL)
        .await
        .map_err(lab_err("creating bench_cdc.docs"))?;
    let events: u64 = one(source, db, "SELECT max(id) FROM bench.events")
        .await?
        .parse()
        .map_err(|_| "bench.events is empty".to_owned())?;
    let head = source
        .current_wal_lsn()
        .await
        .map_err(lab_err("reading the source's WAL position"))?;
    replica
        .wait_for_replay(head, Duration::from_secs(300))
        .await
        .map_err(lab_err("waiting for the replica"))?;

    for step in [
        &["setup", "--slots", "2", "--yes"][..],
        &["snapshot"],
        &["schema"],
        &["load", "--jobs", "2"],
    ] {
        say(format!("pgmig {}", step.join(" ")));
        runner.pgmig(step)?;
    }
    let mut f = Figures::default();

    // ------------------------------------------------ backlog
    let rounds = args.rows.div_ceil(ROUND);
    say(format!(
        "backlog: {} changes on the source ({rounds} rounds of 5 transactions x 1000 rows)",
        rounds * ROUND
    ));
    let writer = connect(&source.conninfo(db)).await?;
    let started = Instant::now();
    for r in 0..rounds {
        for sql in round_sql(r, events) {
            writer
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("backlog round {r}: {e}"))?;
        }
    }
    f.backlog_generated = rounds * ROUND;
    f.backlog_gen_s = started.elapsed().as_secs_f64();
    say(format!(
        "  written in {:.1} s; pgmig --json cdc --until-caught-up",
        f.backlog_gen_s
    ));
    let (stdout, wall, rss) = runner.pgmig(&["--json", "cdc", "--until-caught-up"])?;
    let (changes, transactions) =
        result_changes(&stdout).ok_or("pgmig cdc --json printed no result")?;
    (f.backlog_changes, f.backlog_transactions) = (changes, transactions);
    (f.backlog_wall_s, f.backlog_rss_kb) = (wall, rss);
    (f.backlog_batches, f.backlog_read_ms, f.backlog_apply_ms) = batch_times(&stdout);
    say(format!(
        "  {changes} changes, {transactions} transactions in {wall:.1} s ({:.0} changes/s)",
        changes as f64 / wall
    ));
    if changes < f.backlog_generated {
        return Err(format!(
            "pgmig applied {changes} changes, fewer than the {} written",
            f.backlog_generated
        ));
    }
    if let Err(e) = check(source, db, target, tdb).await {
        return Ok((f, Err(format!("after the backlog: {e}"))));
    }

    // ------------------------------------------------ steady state
    say(format!(
        "steady state: pgmig --json cdc (follow) under {} changes/s for {} s",
        args.rate, args.seconds
    ));
    let (_, _, applied_before) = progress(target, tdb).await?;
    let events_file = runner.scratch.join("cdc-follow.jsonl");
    let mut child = runner
        .command(&runner.bin)
        .args(&runner.globals)
        .args(["--json", "cdc", "--poll-ms", &args.poll_ms.to_string()])
        .stdout(
            std::fs::File::create(&events_file)
                .map_err(|e| format!("{}: {e}", events_file.display()))?,
        )
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting pgmig cdc: {e}"))?;
    let src = connect(&source.conninfo(db)).await?;
    let tgt = connect(&target.conninfo(tdb)).await?;
    let w = start_writer(source.conninfo(db), args.rate, events);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tick = started;
    let mut failure = None;
    while Instant::now() < deadline {
        tick += Duration::from_secs(1);
        tokio::time::sleep_until(tick.into()).await;
        if let Ok(Some(status)) = child.try_wait() {
            failure = Some(format!("pgmig cdc ended early: {status}"));
            break;
        }
        if w.task.is_finished() {
            failure = Some("the write load stopped".into());
            break;
        }
        let (bytes, ms) = sample_lag(&src, &tgt).await?;
        f.lag_bytes.push(bytes);
        f.lag_ms.extend(ms);
    }
    w.stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    f.steady_seconds = stopped.duration_since(started).as_secs_f64();
    let last = match w.task.await {
        Ok(Ok(lsn)) => Some(lsn),
        Ok(Err(e)) => {
            failure.get_or_insert(e);
            None
        }
        Err(e) => {
            failure.get_or_insert(format!("write load: {e}"));
            None
        }
    };
    f.steady_changes = w.transactions.load(Ordering::Relaxed) * STEADY_TX;
    f.steady_target_rate = args.rate;
    f.poll_ms = args.poll_ms;
    if let (None, Some(last)) = (&failure, last) {
        say(format!(
            "  {} changes written; waiting until every slot has applied the last one",
            f.steady_changes
        ));
        let wait_until = Instant::now() + Duration::from_secs(300);
        loop {
            let behind: bool = tgt
                .query_one(
                    "SELECT coalesce(bool_or(applied_end_lsn <= $1::text::pg_lsn), true) FROM pgmig.cdc_progress",
                    &[&last],
                )
                .await
                .map_err(|e| format!("reading pgmig.cdc_progress: {e}"))?
                .get(0);
            if !behind {
                f.catch_up_s = stopped.elapsed().as_secs_f64();
                break;
            }
            if Instant::now() > wait_until || child.try_wait().ok().flatten().is_some() {
                failure = Some("pgmig cdc did not catch up within 300 s".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    f.steady_rss_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !status.is_some_and(|s| s.success()) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        failure.get_or_insert(format!("pgmig cdc (follow) ended with {status:?}: {err}"));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let (_, _, applied_after) = progress(target, tdb).await?;
    f.steady_applied_changes = applied_after.saturating_sub(applied_before);
    say(format!(
        "  caught up {:.2} s after the writes stopped; checking the tables",
        f.catch_up_s
    ));
    let checked = check(source, db, target, tdb).await;
    Ok((f, checked))
}

/// (transactions, -, changes) summed over pgmig.cdc_progress.
async fn progress(target: &Cluster, tdb: &str) -> Result<(u64, u64, u64), String> {
    let t = one(
        target,
        tdb,
        "SELECT coalesce(sum(transactions), 0) || ' ' || coalesce(sum(changes), 0) FROM pgmig.cdc_progress",
    )
    .await?;
    let mut it = t.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let tx = it.next().unwrap_or(0);
    Ok((tx, 0, it.next().unwrap_or(0)))
}

// ---------------------------------------------------------------- report

struct Machine {
    cpus: usize,
    ram_gib: f64,
    load_start: String,
    load_end: String,
    postgres: String,
    pgmig: String,
    git: String,
}

async fn machine(runner: &Runner, source: &Cluster, load_start: String) -> Machine {
    let stdout = |mut c: Command| {
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut git = Command::new("git");
    git.args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root());
    let mut version = runner.command(&runner.bin);
    version.arg("--version");
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        ram_gib: support::ram_gib(),
        load_start,
        load_end: loadavg(),
        postgres: source
            .query_one_string("postgres", "SHOW server_version")
            .await
            .unwrap_or_default(),
        pgmig: stdout(version),
        git: stdout(git),
    }
}

struct Derived {
    backlog_rate: f64,
    achieved_rate: f64,
    bytes: [Option<f64>; 3],
    ms: [Option<f64>; 3],
}

fn derive(f: &Figures) -> Derived {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        [
            percentile(&s, 50.0),
            percentile(&s, 95.0),
            s.last().copied(),
        ]
    };
    Derived {
        backlog_rate: f.backlog_changes as f64 / f.backlog_wall_s.max(1e-9),
        achieved_rate: f.steady_changes as f64 / f.steady_seconds.max(1e-9),
        bytes: stats(&f.lag_bytes),
        ms: stats(&f.lag_ms),
    }
}

fn report_text(f: &Figures, m: &Machine, checked: &Result<(), String>) -> String {
    let d = derive(f);
    let kb = |b: Option<f64>| b.map_or("-".into(), |b| format!("{:.0} kB", b / 1024.0));
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
    let rss = |r: Option<u64>| r.map_or("-".into(), |r| format!("{:.0} MB", r as f64 / 1024.0));
    let mut s = String::new();
    s.push_str("\nCDC apply benchmark\n");
    s.push_str(&format!(
        "machine: {} CPUs, {:.1} GiB RAM, load average {} at start, {} at end\n",
        m.cpus, m.ram_gib, m.load_start, m.load_end
    ));
    s.push_str(&format!(
        "versions: PostgreSQL {} (source and target), {} (git {})\n\n",
        m.postgres, m.pgmig, m.git
    ));
    if let Err(e) = checked {
        s.push_str(&format!(
            "WRONG: the target differs from the source: {e}\nno figures.\n"
        ));
        return s;
    }
    s.push_str(&format!(
        "backlog      {} row changes ({} transactions, counted per slot) applied in {:.1} s (whole command): {:.0} rows/s; \
         peak RSS {}\n",
        f.backlog_changes,
        f.backlog_transactions,
        f.backlog_wall_s,
        d.backlog_rate,
        rss(f.backlog_rss_kb)
    ));
    s.push_str(&format!(
        "             {} batches: read+decode {:.1} s, apply+commit {:.1} s (summed over the slots); \
         written on the source in {:.1} s\n",
        f.backlog_batches,
        f.backlog_read_ms as f64 / 1000.0,
        f.backlog_apply_ms as f64 / 1000.0,
        f.backlog_gen_s
    ));
    s.push_str(&format!(
        "steady       pgmig cdc --poll-ms {}; asked {} changes/s, achieved {:.0} changes/s over {:.1} s ({} changes; {} applied)\n",
        f.poll_ms, f.steady_target_rate, d.achieved_rate, f.steady_seconds, f.steady_changes, f.steady_applied_changes
    ));
    s.push_str(&format!(
        "lag          p50 {} / p95 {} / max {} (bytes of WAL, {} samples)\n",
        kb(d.bytes[0]),
        kb(d.bytes[1]),
        kb(d.bytes[2]),
        f.lag_bytes.len()
    ));
    s.push_str(&format!(
        "             p50 {} / p95 {} / max {} (age of the last applied commit)\n",
        ms(d.ms[0]),
        ms(d.ms[1]),
        ms(d.ms[2])
    ));
    s.push_str(&format!(
        "catch-up     {:.2} s after the writes stopped; follow-mode peak RSS {}\n",
        f.catch_up_s,
        rss(f.steady_rss_kb)
    ));
    s.push_str("check        row counts and row hashes equal on source and target\n");
    s
}

fn report_json(args: &Args, f: &Figures, m: &Machine, checked: &Result<(), String>) -> Value {
    let d = derive(f);
    let machine = json!({
        "cpus": m.cpus, "ram_gib": m.ram_gib, "load_start": m.load_start, "load_end": m.load_end,
        "postgres": m.postgres, "pgmig": m.pgmig, "git": m.git,
    });
    if let Err(e) = checked {
        return json!({"ok": false, "error": e, "machine": machine});
    }
    json!({
        "ok": true,
        "settings": {
            "rows": args.rows, "rate": args.rate, "seconds": args.seconds,
            "scale": args.scale, "poll_ms": args.poll_ms,
        },
        "machine": machine,
        "backlog": {
            "changes": f.backlog_changes, "transactions": f.backlog_transactions,
            "wall_s": f.backlog_wall_s, "changes_per_s": d.backlog_rate,
            "peak_rss_kb": f.backlog_rss_kb, "batches": f.backlog_batches,
            "read_ms": f.backlog_read_ms, "apply_ms": f.backlog_apply_ms,
            "generate_s": f.backlog_gen_s,
        },
        "steady": {
            "rate_asked": f.steady_target_rate, "rate_achieved": d.achieved_rate,
            "seconds": f.steady_seconds, "changes": f.steady_changes,
            "applied_changes": f.steady_applied_changes,
            "lag_bytes": {"p50": d.bytes[0], "p95": d.bytes[1], "max": d.bytes[2], "samples": f.lag_bytes},
            "lag_ms": {"p50": d.ms[0], "p95": d.ms[1], "max": d.ms[2]},
            "catch_up_s": f.catch_up_s, "peak_rss_kb": f.steady_rss_kb,
        },
    })
}
