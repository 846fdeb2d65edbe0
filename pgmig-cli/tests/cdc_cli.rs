//! `pgmig cdc` and `pgmig cutover` through the real binary, on real servers.
//!
//! The bench workload (`bench/dataset.sql`, small scale) and a write load
//! (inserts, updates that leave a TOASTed column alone and updates that
//! change it, deletes, primary-key changes, truncates, tables with and
//! without primary keys, a unique constraint besides the key, many types)
//! run on the source from before `setup` until the cutover; `cdc --until-caught-up`, a follow-mode `cdc`
//! killed with SIGKILL mid-stream and a restarted one apply it, `cutover`
//! says GO, and afterwards every table is identical on source and target by
//! checksum and every sequence is at or ahead of the source's. A slot
//! created after P makes `cdc` refuse to start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Lab3, WAIT, assert_ok, text};
use pgmig_testkit::{Cluster, StopMode, skip_unless_available};

const DATA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE public.accounts (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    balance numeric(14,2),
    tags text[],
    meta jsonb,
    blob bytea,
    doc text,
    counter int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE public.accounts ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO public.accounts (name, balance, tags, meta, blob, doc)
  SELECT 'n' || g, g * 1.25, ARRAY['a' || g, 'b,"c"', NULL], jsonb_build_object('g', g, 's', 'x"y'),
         decode(md5(g::text), 'hex'), repeat(md5(g::text), 80)
  FROM generate_series(1, 5000) g;
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Order Items" (
    order_id int, line int, qty int NOT NULL, note text,
    total int GENERATED ALWAYS AS (qty * 2) STORED,
    PRIMARY KEY (order_id, line));
INSERT INTO "Shop"."Order Items" (order_id, line, qty, note)
  SELECT g / 3, g % 3, g, E'tab\there ünï' FROM generate_series(0, 2999) g;
CREATE TABLE public.events (ts timestamptz NOT NULL DEFAULT now(), kind text, payload json);
INSERT INTO public.events (kind, payload) SELECT 'k' || g, '{"b": 2, "a": [1, 2]}' FROM generate_series(1, 2000) g;
CREATE TABLE public.scratch (id int, v text);
CREATE TABLE public.types (
    id int PRIMARY KEY,
    big numeric(40,10), f8 float8, f4 float4, m money, iv interval, ip inet, u uuid, d date,
    ts timestamp, md mood, pr pair, grid int[], moods mood[], js jsonb, jsons jsonb[], bits bit varying(16),
    flag boolean, t text);
"#;

/// One iteration of the write load, `$1` the iteration number.
const WRITES: &[&str] = &[
    "INSERT INTO public.accounts (name, balance, tags, meta, blob, doc) \
     VALUES ('w' || $1, $1 * 0.5, ARRAY['t' || $1, NULL, 'q\"u,o'], jsonb_build_object('i', $1, 'n', null), \
             decode(md5($1::text), 'hex'), repeat(md5($1::text), 70))",
    // Leaves the TOASTed doc alone: pglogical omits it from the new tuple.
    "UPDATE public.accounts SET counter = counter + 1, balance = balance + 1, updated_at = now() \
     WHERE id = 1 + ($1 * 7919) % (SELECT max(id) FROM public.accounts)",
    "INSERT INTO public.events (kind, payload) VALUES ('w' || $1, json_build_object('i', $1, 'x', 'y'))",
    "INSERT INTO \"Shop\".\"Order Items\" (order_id, line, qty, note) VALUES (100000 + $1, 1, $1, 'new')",
    "UPDATE \"Shop\".\"Order Items\" SET qty = qty + 1 WHERE order_id = ($1 * 31) % 1000 AND line = 1",
    "INSERT INTO public.scratch VALUES ($1, 'v' || $1)",
    // The bench workload's tables.
    "INSERT INTO bench.events VALUES (10000000 + $1, now(), $1 % 1000, 'buy', $1 / 100.0, \
       jsonb_build_object('w', $1), 'new ' || $1)",
    "UPDATE bench.events SET amount = amount + 1, payload = payload || '{\"u\": true}' \
     WHERE id = 1 + ($1 * 7919) % 20000",
    "UPDATE bench.users SET email = 'w' || $1 || '@example.com', name = NULL WHERE id = 1 + ($1 * 13) % 500",
    "INSERT INTO bench.audit_log VALUES (now(), 'w' || $1)",
];

/// Every third iteration.
const WRITES_3: &[&str] = &[
    "DELETE FROM bench.events WHERE id = 1 + ($1 * 104729) % 20000",
    "INSERT INTO bench.users VALUES (100000 + $1, 'new' || $1 || '@example.com', 'n', now())",
    // Changes the TOASTed doc.
    "UPDATE public.accounts SET doc = repeat(md5(($1 * 3)::text), 90) \
     WHERE id = 1 + ($1 * 104729) % (SELECT max(id) FROM public.accounts)",
    "DELETE FROM public.accounts WHERE id = (SELECT min(id) FROM public.accounts WHERE id > ($1 * 13) % 5000)",
    // A primary-key change: the old key arrives in oldtuple.
    "UPDATE \"Shop\".\"Order Items\" SET line = line + 10 WHERE order_id = 100000 + $1 - 3 AND line = 1",
    "INSERT INTO public.types VALUES ($1, 12345678901234567890.0123456789 + $1, 1.0 / ($1 + 3), 'NaN', \
       $1 * 1.5, make_interval(days => $1, secs => 1.5), '10.0.0.1/24', md5($1::text)::uuid, \
       date '2024-02-29' + $1, timestamp '2024-01-01 10:00:00.123456' + make_interval(mins => $1), \
       'happy', ROW($1, 'p,\"q\"')::pair, ARRAY[[$1, 2], [3, NULL]], ARRAY['sad', 'ok']::mood[], \
       to_jsonb('s' || $1), ARRAY['{\"a\": 1}'::jsonb, '[1, 2]', '\"x\"'], B'1011', $1 % 2 = 0, E'line\\nbreak')",
    "UPDATE public.types SET f8 = f8 * 2, js = '{\"deep\": {\"k\": [true, null]}}', pr = ROW(NULL, 'z')::pair \
     WHERE id = $1 - 3",
];

/// Every 25th iteration.
const WRITES_25: &[&str] = &[
    "TRUNCATE public.scratch",
    "DELETE FROM public.types WHERE id = $1 - 12",
    "DELETE FROM \"Shop\".\"Order Items\" WHERE order_id = ($1 * 17) % 1000",
];

/// [`DATA`] plus the bench workload (`bench/dataset.sql`) at a small scale:
/// 20,000 events, 500 users, 1,500 audit rows.
async fn start_bench() -> Lab3 {
    let lab = Lab3::start(DATA).await;
    lab.add_bench_dataset("0.02").await;
    lab
}

/// The write load: one source transaction per iteration, several changes
/// each, until `stop`.
struct WriteLoad {
    stop: Arc<AtomicBool>,
    iterations: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl WriteLoad {
    /// Starts the load. A lost connection (a restarted source) is
    /// re-established; the interrupted iteration is abandoned.
    fn start(lab: &Lab3) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let iterations = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), iterations.clone());
        let source = lab.source.conninfo(&lab.db);
        let task = tokio::spawn(async move {
            let mut i: i32 = 10;
            let mut client: Option<tokio_postgres::Client> = None;
            while !s.load(Ordering::Relaxed) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    match tokio_postgres::connect(&source, tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
                let c = client.as_ref().unwrap();
                match iteration(c, i).await {
                    Ok(()) => {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if e.is_closed() || e.code().is_none_or(|c| c.code().starts_with("57")) =>
                    {
                        client = None;
                    }
                    Err(e) => panic!("write load iteration {i}: {e:?}"),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        WriteLoad {
            stop,
            iterations,
            task,
        }
    }

    async fn wait_for(&self, more: u64) {
        let start = self.iterations.load(Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        while self.iterations.load(Ordering::Relaxed) < start + more {
            assert!(!self.task.is_finished(), "the write load failed");
            assert!(Instant::now() < deadline, "the write load is stuck");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the write load failed");
        self.iterations.load(Ordering::Relaxed)
    }
}

/// One source transaction of the write load.
async fn iteration(client: &tokio_postgres::Client, i: i32) -> Result<(), tokio_postgres::Error> {
    let mut statements: Vec<&str> = WRITES.to_vec();
    if i % 3 == 0 {
        statements.extend(WRITES_3);
    }
    if i % 25 == 0 {
        statements.extend(WRITES_25);
    }
    let mut sql = String::from("BEGIN;");
    for st in statements {
        sql.push_str(&st.replace("$1", &format!("({i})")));
        sql.push(';');
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await
}

const TABLES: &[&str] = &[
    "bench.events",
    "bench.users",
    "bench.audit_log",
    "public.accounts",
    r#""Shop"."Order Items""#,
    "public.events",
    "public.scratch",
    "public.types",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_under_write_load_killed_and_restarted_then_cutover_is_identical() {
    skip_unless_available!(pglogical);
    let lab = start_bench().await;
    let writes = WriteLoad::start(&lab);
    writes.wait_for(20).await;
    lab.setup_to_load("2").await;
    writes.wait_for(100).await;

    // Catch up once, under the write load.
    let started = Instant::now();
    let first = lab.pgmig(&["--json", "cdc", "--until-caught-up"]).await;
    assert_ok(&first, "cdc --until-caught-up");
    let stdout = String::from_utf8_lossy(&first.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["event"], "result");
    let slots = result["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{result}");
    let changes: u64 = slots.iter().map(|s| s["changes"].as_u64().unwrap()).sum();
    assert!(slots.iter().all(|s| s["caught_up"] == true), "{result}");
    assert!(changes > 0, "{result}");
    eprintln!(
        "first catch-up: {changes} changes in {:.1} s ({:.0} changes/s, whole command)",
        started.elapsed().as_secs_f64(),
        changes as f64 / started.elapsed().as_secs_f64()
    );

    // Follow mode, killed with SIGKILL while applying small batches.
    let mut child = lab
        .command(&["cdc", "--batch", "50", "--poll-ms", "50"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pgmig cdc");
    let before = lab.applied().await;
    let deadline = Instant::now() + WAIT;
    while lab.applied().await < before + 30 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "cdc ended before it was killed"
        );
        assert!(Instant::now() < deadline, "cdc applied nothing in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();

    // Restarted, it continues where the target stands, exactly once.
    let mut child = lab
        .command(&["cdc", "--batch", "500", "--poll-ms", "50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pgmig cdc again");
    let before = lab.applied().await;
    writes.wait_for(50).await;
    let deadline = Instant::now() + WAIT;
    while lab.applied().await < before + 20 {
        assert!(child.try_wait().unwrap().is_none(), "restarted cdc ended");
        assert!(
            Instant::now() < deadline,
            "restarted cdc applied nothing in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let iterations = writes.stop().await;
    // SIGTERM stops it cleanly.
    let pid = child.id().unwrap();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("cdc stops on SIGTERM")
        .unwrap();
    assert_ok(&stopped, "cdc stopped by SIGTERM");

    // Cutover: catches up the rest, sets sequences, verifies: GO.
    let cut = lab.pgmig(&["cutover"]).await;
    assert_ok(&cut, "cutover");
    let out = String::from_utf8_lossy(&cut.stdout);
    assert!(out.contains("\nGO: "), "{}", text(&cut));
    eprintln!("{iterations} write iterations; cutover said:\n{out}");

    for table in TABLES {
        assert_eq!(
            Lab3::digest(&lab.source, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table}"
        );
    }
    // The load really ran: rows written after P arrived through CDC.
    assert_ne!(
        lab.source_sql("SELECT count(*)::text FROM public.types")
            .await,
        "0"
    );
    let seq = "public.accounts_id_seq";
    let source_seq: i64 = lab
        .source_sql(&format!("SELECT last_value::text FROM {seq}"))
        .await
        .parse()
        .unwrap();
    let target_seq: i64 = lab
        .target_sql(&format!("SELECT last_value::text FROM {seq}"))
        .await
        .parse()
        .unwrap();
    assert!(target_seq >= source_seq, "{target_seq} < {source_seq}");
    // Every slot is advanced to what the target holds.
    let progress = lab
        .target_sql(
            "SELECT string_agg(slot || '=' || applied_end_lsn, ',' ORDER BY slot) FROM pgmig.cdc_progress",
        )
        .await;
    let confirmed = lab
        .source_sql(
            "SELECT string_agg(slot_name || '=' || confirmed_flush_lsn, ',' ORDER BY slot_name) \
             FROM pg_replication_slots WHERE slot_name LIKE 'dms_slot_%'",
        )
        .await;
    assert_eq!(progress, confirmed);

    // A second cutover has nothing to do and still says GO.
    let again = lab.pgmig(&["cutover"]).await;
    assert_ok(&again, "second cutover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_before_the_load_and_a_slot_created_after_p_are_refused() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g;",
    )
    .await;
    // Before the load: no P, then P but no finished load.
    let early = lab.pgmig(&["cdc"]).await;
    assert_eq!(early.status.code(), Some(2), "{}", text(&early));
    assert_eq!(
        String::from_utf8_lossy(&early.stderr).trim(),
        "error: the target holds no migration: run `pgmig setup` first"
    );
    assert_ok(
        &lab.pgmig(&["setup", "--yes", "--slots", "1"]).await,
        "setup",
    );
    assert_ok(&lab.pgmig(&["snapshot"]).await, "snapshot");
    let p = lab
        .target_sql("SELECT pause_lsn::text FROM pgmig.migration")
        .await;
    let early = lab.pgmig(&["cdc", "--until-caught-up"]).await;
    assert_eq!(early.status.code(), Some(2), "{}", text(&early));
    assert_eq!(
        String::from_utf8_lossy(&early.stderr).trim(),
        format!(
            "error: the full load at P = {p} has not finished: run `pgmig load` until it completes first"
        )
    );
    assert_ok(&lab.pgmig(&["schema", "--no-owner"]).await, "schema");
    assert_ok(&lab.pgmig(&["load", "--jobs", "2"]).await, "load");

    // --dry-run: the statements of a batch, nothing created.
    let dry = lab.pgmig(&["--dry-run", "cdc", "--batch", "77"]).await;
    assert_ok(&dry, "cdc --dry-run");
    let printed = String::from_utf8_lossy(&dry.stdout);
    for needle in [
        "pg_catalog.pg_logical_slot_peek_changes('dms_slot_01'::name, NULL::pg_lsn, '77'::int4, \
         VARIADIC E'{\"min_proto_version\",\"1\",",
        r#""pglogical.replication_set_names","\\"dms_slot_01\\",\\"idms_slot_01\\""}'::text[])"#,
        "SET session_replication_role = replica",
        "pg_catalog.pg_replication_slot_advance(s.slot_name, $2::pg_lsn)",
        "UPDATE pgmig.cdc_progress SET applied_end_lsn = $3",
    ] {
        assert!(printed.contains(needle), "{needle}\n{printed}");
    }
    assert_eq!(
        lab.target_sql("SELECT (to_regclass('pgmig.cdc_progress') IS NULL)::text")
            .await,
        "true"
    );
    // The printed read runs as printed.
    let peek = printed
        .lines()
        .find(|l| l.starts_with("SELECT c.lsn"))
        .unwrap();
    lab.source.execute(&lab.db, peek).await.unwrap();

    for sql in [
        "SELECT pg_drop_replication_slot('dms_slot_01')",
        "INSERT INTO t VALUES (1000, 'lost')",
        "SELECT pg_create_logical_replication_slot('dms_slot_01', 'pglogical')",
    ] {
        lab.source.execute(&lab.db, sql).await.unwrap();
    }
    let confirmed = lab
        .source_sql(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'dms_slot_01'",
        )
        .await;
    let refused = lab.pgmig(&["cdc", "--until-caught-up"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "error: slot dms_slot_01 is ahead of the target: its confirmed_flush_lsn {confirmed} is after {p} \
             (P = {p}: the slot was created after P, or another client consumed it); the changes in between \
             are not in the slot any more, so CDC from it would lose them"
        )
    );
    assert_eq!(
        lab.target_sql("SELECT (to_regclass('pgmig.cdc_progress') IS NULL)::text")
            .await,
        "true",
        "nothing was applied"
    );
    assert_eq!(lab.target_sql("SELECT count(*)::text FROM t").await, "100");
}

/// Changes in the bulk backlog of [`bulk_backlog_then_crashes_of_target_and_source`].
const BULK: &[(&str, u64)] = &[
    (
        "INSERT INTO public.accounts (name, balance, tags, meta, blob, doc) \
         SELECT 'bulk' || g, g, ARRAY['x'], jsonb_build_object('g', g), '\\x00ff', 'short' \
         FROM generate_series(($1 - 1) * 500 + 1, $1 * 500) g",
        500,
    ),
    (
        "UPDATE public.accounts SET counter = counter + 1 WHERE id BETWEEN ($1 - 1) * 200 + 1 AND $1 * 200",
        200,
    ),
    (
        "DELETE FROM \"Shop\".\"Order Items\" WHERE order_id * 3 + line BETWEEN ($1 - 1) * 20 AND $1 * 20 - 1",
        20,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_backlog_then_crashes_of_target_and_source() {
    skip_unless_available!(pglogical);
    let lab = start_bench().await;
    lab.setup_to_load("2").await;

    // A backlog after P: 100 transactions of each kind.
    let client = lab.source.connect(&lab.db).await.unwrap();
    let mut expected = 0;
    for n in 1..=100 {
        for (sql, changes) in BULK {
            client
                .batch_execute(&sql.replace("$1", &n.to_string()))
                .await
                .unwrap();
            expected += changes;
        }
    }
    drop(client);
    let caught = lab.pgmig(&["--json", "cdc", "--until-caught-up"]).await;
    assert_ok(&caught, "cdc --until-caught-up");
    let stdout = String::from_utf8_lossy(&caught.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let changes: u64 = result["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["changes"].as_u64().unwrap())
        .sum();
    assert_eq!(changes, expected, "{result}");
    let ms = result["elapsed_ms"].as_u64().unwrap().max(1);
    let (mut read_ms, mut apply_ms) = (0, 0);
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["event"] == "applied" {
            read_ms += event["read_ms"].as_u64().unwrap();
            apply_ms += event["apply_ms"].as_u64().unwrap();
        }
    }
    eprintln!(
        "bulk backlog: {changes} changes applied in {:.2} s: {:.0} changes/s \
         (over both slots: {read_ms} ms reading the slots, {apply_ms} ms applying)",
        ms as f64 / 1000.0,
        changes as f64 * 1000.0 / ms as f64
    );
    for table in TABLES {
        assert_eq!(
            Lab3::digest(&lab.source, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table} after the backlog"
        );
    }

    // Follow mode under the write load, through a crash of the target and
    // then of the source.
    let writes = WriteLoad::start(&lab);
    let mut child = lab
        .command(&["cdc", "--batch", "200", "--poll-ms", "50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pgmig cdc");
    let wait_applied = |more: i64| {
        let lab = &lab;
        async move {
            let before = lab.applied().await;
            let deadline = Instant::now() + WAIT;
            while lab.applied().await < before + more {
                assert!(Instant::now() < deadline, "cdc applied nothing in time");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_applied(20).await;
    lab.target.stop(StopMode::Immediate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.target.start().await.unwrap();
    wait_applied(20).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdc ended after the target crash"
    );
    lab.source.stop(StopMode::Immediate).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.source.start().await.unwrap();
    writes.wait_for(30).await;
    wait_applied(20).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdc ended after the source crash"
    );
    writes.stop().await;
    let pid = child.id().unwrap();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("cdc stops on SIGTERM")
        .unwrap();
    assert_ok(&stopped, "cdc stopped by SIGTERM");
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(stderr.contains("reconnecting"), "{}", text(&stopped));

    let cut = lab.pgmig(&["cutover"]).await;
    assert_ok(&cut, "cutover");
    assert!(
        String::from_utf8_lossy(&cut.stdout).contains("\nGO: "),
        "{}",
        text(&cut)
    );
    for table in TABLES {
        assert_eq!(
            Lab3::digest(&lab.source, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table}"
        );
    }
}

const TYPES: &str = r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
CREATE TYPE address AS (street text, no int, tags text[]);
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE DOMAIN labels AS text[];
CREATE TABLE public.alltypes (
    id int PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, num numeric, num_s numeric(12,3), f4 real, f8 double precision,
    m money, c char(5), vc varchar(10), t text, b bytea, bool boolean,
    ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz, iv interval,
    pt point, ls lseg, bx box, pth path, pg polygon, ci circle, ln line,
    cidr_ cidr, inet_ inet, mac macaddr, mac8 macaddr8, bt bit(4), vb bit varying(8),
    tsv tsvector, tsq tsquery, u uuid, x xml, j json, jb jsonb,
    r4 int4range, rn numrange, rts tstzrange, rd daterange, mr int4multirange,
    e colour, addr address, pos positive, lbl labels,
    a_i4 int[], a_t text[], a_2d text[][], a_n numeric[], a_b bool[], a_ts timestamptz[], a_bytea bytea[],
    a_jb jsonb[], a_e colour[], a_addr address[], a_u uuid[], a_d date[], a_iv interval[]);
"#;

/// A row with a value in every column, `$1` the id. Not here, because
/// pglogical's JSON cannot tell it from SQL NULL: the jsonb value `null`
/// (alone or as an element of a jsonb array), which CDC applies as NULL.
const TYPES_ROW: &str = r#"INSERT INTO public.alltypes VALUES ($1,
    -32768 + $1, 2147483647 - $1, -9223372036854775808 + $1, 123456789012345678901234567890.123456789 * $1, 1.5 * $1,
    3.4028235e38, 1.7976931348623157e308, 12.34 * $1, 'ab', 'ü"\x', E'multi\nline \\ ''quoted'' \t tab', '\x00ff10'::bytea, true,
    '2024-02-29 23:59:59.999999', '1999-12-31 23:59:59.5+05:30', '0044-03-15 BC', '24:00:00', '12:34:56.789-11', '1 year -2 mons 3 days 04:05:06.7',
    '(1.5,-2)', '[(0,0),(1,1)]', '((3,4),(1,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(1,1),2.5>', '{1,-1,0}',
    '10.1.0.0/16', '::1/128', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', B'1010', B'101',
    'a fat cat sat on a mat', 'fat & (rat | cat)', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '<a x="1">b &amp; c</a>',
    '{"dup": 1, "dup": 2,  "sp" : [1 , 2]}', '{"a": {"b": [1, "two", null, true, 1.50]}, "s": "q\"uote"}',
    '[1,10)', '(0.5,1.5]', '[2024-01-01 00:00+00,infinity)', 'empty', '{[1,3), [5,7)}',
    'green', ROW('Main "St", \ 1', 42, ARRAY['x', NULL, 'y,z'])::address, 7, ARRAY['l1', 'NULL', ''],
    ARRAY[1, NULL, -3], ARRAY['a', 'b"c', 'd\e', '{f}', 'NULL', '', ' sp '], ARRAY[['a', 'b'], ['c', NULL]],
    ARRAY[1.10, NULL, 'NaN'::numeric, '-Infinity'], ARRAY[true, false, NULL], ARRAY['2024-01-01 00:00:00+00'::timestamptz, NULL],
    ARRAY['\x00'::bytea, '\xdeadbeef'], ARRAY['{"k": [1]}'::jsonb, '"s"', '3', NULL, '[1, 2]'], ARRAY['red', 'blue']::colour[],
    ARRAY[ROW('a', 1, ARRAY['q'])::address, NULL], ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid],
    ARRAY['infinity'::date, '2000-01-01'], ARRAY['1 day'::interval, '-00:00:01'])"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_cdc() {
    skip_unless_available!(pglogical);
    every_type_round_trips_into(15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_cdc_into_pg16() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    every_type_round_trips_into(16).await;
}

async fn every_type_round_trips_into(target_major: u32) {
    let data = format!(
        "{TYPES}; {}; INSERT INTO public.alltypes (id) VALUES (2);",
        TYPES_ROW.replace("$1", "1")
    );
    let lab = Lab3::start_with_target(&data, target_major).await;
    lab.setup_to_load("1").await;
    let after_p = [
        TYPES_ROW.replace("$1", "3"),
        TYPES_ROW.replace("$1", "4"),
        "INSERT INTO public.alltypes (id) VALUES (5)".into(),
        // Every column from NULL to a value, and from a value to NULL.
        format!(
            "UPDATE public.alltypes AS t SET ({cols}) = (SELECT {cols} FROM public.alltypes WHERE id = 3) WHERE t.id = 2",
            cols = ALL_COLUMNS
        ),
        format!(
            "UPDATE public.alltypes SET ({ALL_COLUMNS}) = (SELECT {ALL_COLUMNS} FROM public.alltypes WHERE id = 5) \
             WHERE id = 1"
        ),
        "UPDATE public.alltypes SET f4 = 'NaN', f8 = '-Infinity', num = 'Infinity', d = '-infinity', \
           ts = 'infinity', jb = '\"just a string\"', j = '[]', a_i4 = '{}', r4 = '(,)' WHERE id = 4"
            .into(),
        "UPDATE public.alltypes SET id = 40 WHERE id = 4".into(),
        "DELETE FROM public.alltypes WHERE id = 3".into(),
        TYPES_ROW.replace("$1", "6"),
    ];
    for sql in &after_p {
        lab.source
            .execute(&lab.db, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let caught = lab.pgmig(&["cdc", "--until-caught-up"]).await;
    assert_ok(&caught, "cdc --until-caught-up");
    let source_rows = rows(&lab.source, &lab.db).await;
    let target_rows = rows(&lab.target, &lab.target_db).await;
    assert_eq!(source_rows.len(), 5);
    for (s, t) in source_rows.iter().zip(&target_rows) {
        assert_eq!(s, t);
    }
    assert_eq!(source_rows, target_rows);
}

async fn rows(cluster: &Cluster, db: &str) -> Vec<String> {
    let client = cluster.connect(db).await.unwrap();
    client
        .query(
            "SELECT row_of::text FROM public.alltypes row_of ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .unwrap_or_else(|e| panic!("{e:?}"))
        })
        .collect()
}

const ALL_COLUMNS: &str = "i2, i4, i8, num, num_s, f4, f8, m, c, vc, t, b, bool, ts, tstz, d, tm, tmtz, iv, \
    pt, ls, bx, pth, pg, ci, ln, cidr_, inet_, mac, mac8, bt, vb, tsv, tsq, u, x, j, jb, r4, rn, rts, rd, mr, \
    e, addr, pos, lbl, a_i4, a_t, a_2d, a_n, a_b, a_ts, a_bytea, a_jb, a_e, a_addr, a_u, a_d, a_iv";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_while_cdc_runs_or_the_source_is_still_written_is_refused() {
    skip_unless_available!(pglogical);
    let lab = start_bench().await;
    lab.setup_to_load("1").await;
    let writes = WriteLoad::start(&lab);
    writes.wait_for(20).await;

    // While `pgmig cdc` runs, the cutover refuses to race it.
    let mut follow = lab
        .command(&["cdc"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let started = lab
            .target_sql("SELECT (to_regclass('pgmig.cdc_progress') IS NOT NULL)::text")
            .await
            == "true";
        if started && lab.applied().await > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "cdc applied nothing in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = lab.pgmig(&["cutover"]).await;
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    assert_eq!(
        String::from_utf8_lossy(&busy.stderr).trim(),
        "error: another pgmig applier is applying slot dms_slot_01 to this target: stop the running \
         `pgmig cdc` (SIGTERM lets it finish its batch) and run the cutover again; the cutover applies the \
         rest itself"
    );
    follow.start_kill().unwrap();
    follow.wait().await.unwrap();

    let cut = lab.pgmig(&["--json", "cutover", "--mode", "counts"]).await;
    writes.stop().await;
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut));
    let verdict: serde_json::Value = serde_json::from_slice(&cut.stdout).unwrap();
    assert_eq!(verdict["go"], false);
    let reasons: Vec<&str> = verdict["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("slot dms_slot_01: ")
            && r.ends_with("committed on the source after the catch-up: writes have not stopped")),
        "{reasons:?}"
    );
    // Once the writes stopped, the same cutover says GO.
    let again = lab.pgmig(&["cutover"]).await;
    assert_ok(&again, "cutover after the writes stopped");
    assert!(String::from_utf8_lossy(&again.stdout).contains("\nGO: "));
}
