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
