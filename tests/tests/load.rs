//! `pgmig load` against real servers: every common type round-trips
//! exactly (binary and text), chunked tables, generated and dropped
//! columns, partitions, quoted names; indexes and constraints rebuilt;
//! sequences set; resumable and exactly once; a replica that moves stops the
//! load.

mod load_lab;

use load_lab::LoadLab;
use pgmig_fullload::load::{ByteSize, FormatChoice, LoadError, LoadOptions};
use pgmig_testkit::skip_unless_available;

/// Every common type, nasty values, TOAST, generated and dropped columns,
/// partitions, quoted mixed-case names.
const TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case" (
    id bigint PRIMARY KEY,
    "Select" text,
    n numeric,
    f8 double precision,
    f4 real,
    ts timestamp,
    tstz timestamptz,
    d date,
    iv interval,
    b bytea,
    arr int[],
    tarr text[],
    j jsonb,
    js json,
    m mood,
    marr mood[],
    pi posint,
    pr pair,
    r int4range,
    tr tstzrange,
    u uuid,
    big text,
    dropme int,
    gen bigint GENERATED ALWAYS AS (id * 2) STORED
);
ALTER TABLE "Odd Schema"."Mixed Case" DROP COLUMN dropme;
CREATE UNIQUE INDEX mixed_select_idx ON "Odd Schema"."Mixed Case" ("Select") WHERE "Select" IS NOT NULL;
CREATE INDEX mixed_j_idx ON "Odd Schema"."Mixed Case" USING gin (j);
INSERT INTO "Odd Schema"."Mixed Case" (id, "Select", n, f8, f4, ts, tstz, d, iv, b, arr, tarr, j, js, m, marr, pi, pr, r, tr, u, big)
VALUES
 (1, E'tab\there\nnewline \\ backslash', 'NaN', 'NaN', 'Infinity', 'infinity', '-infinity', 'infinity', '1 year 2 mons 3 days 04:05:06.789',
  '\x00ff00'::bytea, '{1,NULL,3}', '{"a b","c,d","e\"f",NULL}', '{"k": [1, 2.50, null], "ü": "\u00e9"}', '{"x":  1}', 'happy', '{sad,happy}', 7, ROW(1, 'x,y'),
  '[1,10)', '[2020-01-01 00:00+00,2021-01-01 00:00+00)', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', repeat('toast ', 100000)),
 (2, 'ünïcödé ✓ 日本', 0.1, 0.1, 1.5, '2020-02-29 12:34:56.123456', '1999-12-31 23:59:59.999999+05:30', '0001-01-01 BC', '-1 day', '', '{}', '{}', 'null', 'null', 'sad', '{}', 1, ROW(NULL, NULL),
  'empty', '(,)', NULL, ''),
 (3, NULL, -123456789012345678901234567890.123456789, -0.0, -1e-30, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, '', 1e-20, 1e300, 3.4e38, '-infinity', 'infinity', '-infinity', '0', '\x5c'::bytea, '{{1,2},{3,4}}', '{"\\\\"}', '"str"', '[]', 'ok', '{ok,NULL}', 2147483647, ROW(-1, ''), '(,5]', 'empty', '00000000-0000-0000-0000-000000000000', E'\\x41');
INSERT INTO "Odd Schema"."Mixed Case" (id, "Select", n, big)
SELECT g, 's' || g, g / 7.0, md5(g::text) FROM generate_series(10, 3000) g;

CREATE TABLE parts (id int, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE parts_2025 PARTITION OF parts FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE parts_2026 PARTITION OF parts FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO parts SELECT g, date '2025-01-01' + g % 700, 'v' || g FROM generate_series(1, 2000) g;

CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text);
INSERT INTO users (email, name) SELECT 'u' || g || '@x', 'n' || g FROM generate_series(1, 5000) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), note text);
CREATE INDEX orders_user_idx ON orders (user_id);
INSERT INTO orders (user_id, note) SELECT 1 + g % 5000, repeat('n', g % 50) FROM generate_series(1, 20000) g;
CREATE TABLE nokey (ts timestamptz, msg text);
INSERT INTO nokey SELECT timestamptz '2021-01-01' + g * interval '1 min', repeat('m', 100) FROM generate_series(1, 20000) g;
CREATE TABLE empty_one (id int PRIMARY KEY);
"#;

const TABLES: &[&str] = &[
    r#""Odd Schema"."Mixed Case""#,
    "public.parts_2025",
    "public.parts_2026",
    "public.users",
    "public.orders",
    "public.nokey",
    "public.empty_one",
];

async fn assert_all_equal(lab: &LoadLab) {
    for t in TABLES {
        lab.assert_equal(t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg15_to_pg15_every_type_round_trips_chunked_and_whole() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, TYPES).await;
    let opts = LoadOptions {
        jobs: 3,
        // Small chunks: orders, nokey and the mixed table split.
        chunk_bytes: ByteSize(256 << 10),
        ..LoadOptions::default()
    };
    let report = lab.load(&opts).await.expect("load");
    assert_eq!(report.missing_objects, Some(vec![]), "{report:#?}");
    assert!(
        report.chunks > TABLES.len(),
        "some tables were split: {report:#?}"
    );
    assert_all_equal(&lab).await;
    // Indexes, constraints, the foreign key and the sequences are there.
    assert_eq!(
        lab.target_one("SELECT count(*)::text FROM pg_constraint WHERE conname IN ('orders_user_id_fkey', 'users_email_key', 'users_pkey', 'orders_pkey')").await,
        "4"
    );
    // A standby shows a sequence's WAL-logged value (up to 32 ahead): the
    // target gets exactly that, never less than what was handed out.
    let on_replica = lab
        .replica
        .query_one_string(&lab.db, "SELECT last_value::text FROM orders_id_seq")
        .await
        .unwrap();
    assert_eq!(
        lab.target_one("SELECT last_value::text FROM orders_id_seq")
            .await,
        on_replica
    );
    assert!(on_replica.parse::<i64>().unwrap() >= 20000);
    assert_eq!(
        lab.target_one("SELECT count(*)::text FROM pg_stats WHERE tablename = 'orders'")
            .await,
        "3",
        "ANALYZE ran"
    );
    // Run again: nothing to do.
    let again = lab.load(&opts).await.expect("second load");
    assert!(again.already_done);
    assert_eq!(again.rows, report.rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg15_to_pg15_text_format_round_trips() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, TYPES).await;
    let opts = LoadOptions {
        jobs: 2,
        format: FormatChoice::Text,
        ..LoadOptions::default()
    };
    let report = lab.load(&opts).await.expect("load");
    assert!(report.is_complete(), "{report:#?}");
    assert_all_equal(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumed_mid_load_stops_the_load() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, TYPES).await;
    lab.resume().await;
    lab.source
        .execute(&lab.db, "INSERT INTO users (email) VALUES ('late@x')")
        .await
        .unwrap();
    let head = lab.source.current_wal_lsn().await.unwrap();
    lab.replica
        .wait_for_replay(head, load_lab::WAIT)
        .await
        .unwrap();
    let err = lab.load(&LoadOptions::default()).await.unwrap_err();
    match &err {
        LoadError::ReplicaMoved { p, state } => {
            assert_eq!(*p, lab.p);
            assert!(state.contains("replay resumed"), "{state}");
        }
        other => panic!("expected ReplicaMoved, got {other:?}"),
    }
    assert!(err.is_refusal());
    // Nothing was loaded.
    assert_eq!(
        lab.target_one("SELECT count(*)::text FROM users").await,
        "0"
    );
}

/// A bigger table split into many chunks, for interruption tests.
const MANY_CHUNKS: &str = r#"
CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric);
INSERT INTO big SELECT g, md5(g::text) || repeat('x', g % 200), g / 3.0 FROM generate_series(1, 200000) g;
CREATE INDEX big_v_idx ON big (v);
CREATE TABLE heap_only (ts timestamptz, msg text);
INSERT INTO heap_only SELECT timestamptz '2021-01-01' + g * interval '1 s', md5(g::text) FROM generate_series(1, 100000) g;
"#;

async fn done_tasks(lab: &LoadLab) -> i64 {
    lab.target_one("SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NOT NULL")
        .await
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_load_resumes_without_loss_or_duplicates() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, MANY_CHUNKS).await;
    let opts = LoadOptions {
        jobs: 2,
        chunk_bytes: ByteSize(512 << 10),
        ..LoadOptions::default()
    };
    // Drop the load (its connections close, as when the process is killed)
    // once a few chunks are committed.
    let mut run = Box::pin(lab.load(&opts));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            r = run.as_mut() => panic!("the load finished before it could be interrupted: {r:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        let table_exists = lab
            .target_one("SELECT (to_regclass('pgmig.load_task') IS NOT NULL)::text")
            .await;
        if table_exists == "true" && done_tasks(&lab).await >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no chunk committed");
    }
    drop(run);
    let total: i64 = lab
        .target_one("SELECT count(*)::text FROM pgmig.load_task")
        .await
        .parse()
        .unwrap();
    let done_before = done_tasks(&lab).await;
    assert!(done_before < total, "interrupted before the end");
    // The rows on the target are exactly those of the done chunks (read in
    // one snapshot: a transaction in flight when the load was dropped may
    // still commit, data and record together).
    let (recorded, present) = {
        let client = lab.target.connect(&lab.target_db).await.unwrap();
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(sum(rows), 0) FROM pgmig.load_task \
                         WHERE kind = 'copy' AND done_at IS NOT NULL)::int8, \
                        ((SELECT count(*) FROM big) + (SELECT count(*) FROM heap_only))::int8",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    assert_eq!(present, recorded);

    let report = lab.load(&opts).await.expect("resumed load");
    assert!(report.is_complete(), "{report:#?}");
    assert_eq!(done_tasks(&lab).await, total);
    assert_eq!(lab.assert_equal("public.big").await, 200_000);
    assert_eq!(lab.assert_equal("public.heap_only").await, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loaders_share_one_load() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, MANY_CHUNKS).await;
    let opts = LoadOptions {
        jobs: 2,
        chunk_bytes: ByteSize(1 << 20),
        ..LoadOptions::default()
    };
    let (a, b) = tokio::join!(lab.load(&opts), lab.load(&opts));
    let (a, b) = (a.expect("first loader"), b.expect("second loader"));
    assert!(a.is_complete() && b.is_complete());
    assert_eq!(a.rows, 300_000);
    assert_eq!(b.rows, 300_000);
    // Both workers' sets claimed tasks, each exactly once.
    assert_eq!(
        lab.target_one("SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NULL")
            .await,
        "0"
    );
    assert_eq!(lab.assert_equal("public.big").await, 200_000);
    assert_eq!(lab.assert_equal("public.heap_only").await, 100_000);
    assert_eq!(
        lab.target_one("SELECT count(*)::text FROM pg_indexes WHERE tablename = 'big'")
            .await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_empties_and_loads_again_and_refuses_after_post_data() {
    skip_unless_available!(15);
    let lab = LoadLab::start(15, 15, MANY_CHUNKS).await;
    // A target table that already holds rows is refused.
    lab.target
        .execute(
            &lab.target_db,
            "INSERT INTO heap_only VALUES (now(), 'stray')",
        )
        .await
        .unwrap();
    let err = lab.load(&LoadOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, LoadError::TargetNotEmpty { table } if table.to_string() == "public.heap_only"),
        "{err:?}"
    );
    lab.target
        .execute(&lab.target_db, "TRUNCATE heap_only")
        .await
        .unwrap();
    let report = lab.load(&LoadOptions::default()).await.expect("load");
    assert!(report.is_complete());
    // The load is complete, post-data included: --restart is refused.
    let err = lab
        .load(&LoadOptions {
            restart: true,
            ..LoadOptions::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::RestartAfterPostData), "{err:?}");
    assert_eq!(lab.assert_equal("public.big").await, 200_000);
}

/// What a PG10 source can hold (no generated columns, no keys on
/// partitioned tables); floats exactly representable so that their text
/// compares equal across versions in the assertions.
const PG10_TYPES: &str = r#"
CREATE TYPE "Mood" AS ENUM ('sad', 'ok');
CREATE DOMAIN code AS text CHECK (length(VALUE) < 10);
CREATE TABLE "Legacy Jobs" (
    id serial PRIMARY KEY, "order" int, c code, m "Mood", ma "Mood"[], n numeric, f float8, b bytea,
    j jsonb, ts timestamptz, a text[], r numrange, t text, dropme int);
ALTER TABLE "Legacy Jobs" DROP COLUMN dropme;
INSERT INTO "Legacy Jobs" ("order", c, m, ma, n, f, b, j, ts, a, r, t)
SELECT g, 'c' || g % 100, CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'ok' END::"Mood", '{ok,sad}', g / 8.0,
       CASE g % 4 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity'::float8 ELSE (g / 4.0)::float8 END,
       decode(lpad(to_hex(g), 8, '0'), 'hex'), jsonb_build_object('g', g, 's', E'a\tb'),
       CASE WHEN g = 1 THEN 'infinity' ELSE timestamptz '2020-01-01 00:00+00' + g * interval '1 min' END,
       ARRAY['x', NULL, E'back\\slash'], numrange(g, g + 1), repeat(E'ü\n', g % 30)
FROM generate_series(1, 30000) g;
CREATE TABLE log (at date NOT NULL, msg text) PARTITION BY RANGE (at);
CREATE TABLE log_2025 PARTITION OF log FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO log SELECT date '2025-01-01' + g % 300, 'm' || g FROM generate_series(1, 5000) g;
CREATE TABLE nokey (v text);
INSERT INTO nokey SELECT 'v' || g FROM generate_series(1, 10000) g;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg10_replica_into_pg15() {
    skip_unless_available!(10, 15);
    let lab = LoadLab::start(10, 15, PG10_TYPES).await;
    let opts = LoadOptions {
        jobs: 2,
        chunk_bytes: ByteSize(512 << 10),
        ..LoadOptions::default()
    };
    let report = lab.load(&opts).await.expect("load");
    assert!(report.is_complete(), "{report:#?}");
    // An enum array carries its type's OID in binary: that table goes as text.
    let jobs = report
        .tables
        .iter()
        .find(|t| t.table.name == "Legacy Jobs")
        .unwrap();
    assert_eq!(jobs.format, pgmig_fullload::load::CopyFormat::Text);
    assert!(jobs.chunks > 1, "split on the key before 14: {jobs:?}");
    let nokey = report
        .tables
        .iter()
        .find(|t| t.table.name == "nokey")
        .unwrap();
    assert_eq!(nokey.format, pgmig_fullload::load::CopyFormat::Binary);
    assert_eq!(lab.assert_equal(r#"public."Legacy Jobs""#).await, 30000);
    assert_eq!(lab.assert_equal("public.log_2025").await, 5000);
    assert_eq!(lab.assert_equal("public.nokey").await, 10000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg15_replica_into_pg16_and_pg17() {
    skip_unless_available!(15, 16, 17);
    for target in [16, 17] {
        let lab = LoadLab::start(15, target, TYPES).await;
        let opts = LoadOptions {
            jobs: 2,
            chunk_bytes: ByteSize(256 << 10),
            ..LoadOptions::default()
        };
        let report = lab.load(&opts).await.expect("load");
        assert!(report.is_complete(), "PG{target}: {report:#?}");
        assert_all_equal(&lab).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_retyped_on_the_target_travels_as_text() {
    skip_unless_available!(15);
    let lab = LoadLab::start(
        15,
        15,
        "CREATE TABLE t (id int PRIMARY KEY, v bigint, f float8); \
         INSERT INTO t SELECT g, g * 1000, g / 4.0 FROM generate_series(1, 1000) g;",
    )
    .await;
    // Same size, other type: binary would reinterpret the bytes.
    lab.target
        .execute(
            &lab.target_db,
            "ALTER TABLE t ALTER v TYPE float8, ALTER f TYPE numeric",
        )
        .await
        .unwrap();
    let report = lab.load(&LoadOptions::default()).await.expect("load");
    let t = report.tables.iter().find(|t| t.table.name == "t").unwrap();
    assert_eq!(t.format, pgmig_fullload::load::CopyFormat::Text);
    assert_eq!(
        lab.target_one("SELECT sum(v)::text || ' ' || sum(f)::text FROM t")
            .await,
        "500500000 125125.00"
    );
}
