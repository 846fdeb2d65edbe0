//! `pgmig verify` against real servers: every kind of difference is detected
//! and named (table, key range, key); equal data from a PG10 replica and a
//! PG16 target compares equal in every mode, whatever the target's settings;
//! a table without a primary key is verified by count and an
//! order-independent checksum; a replica that moved off P is refused.

use std::time::Duration;

use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, QualifiedTable, ServerVersion, admin};
use pgmig_fullload::verify::{
    BucketRow, Difference, KeyRange, Keys, Mode, TableReport, VerifyError, VerifyOptions,
    VerifyReport, verify,
};
use pgmig_testkit::{Cluster, skip_unless_available};

const WAIT: Duration = Duration::from_secs(60);

fn conn(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::parse(&cluster.conninfo(db)).expect("lab conninfo parses")
}

fn opts(mode: Mode) -> VerifyOptions {
    VerifyOptions {
        mode,
        jobs: 2,
        left_name: "replica".into(),
        right_name: "target".into(),
        ..VerifyOptions::default()
    }
}

fn table<'a>(report: &'a VerifyReport, name: &str) -> &'a TableReport {
    let want = QualifiedTable::new("public", name);
    report
        .tables
        .iter()
        .find(|t| t.table == want)
        .unwrap_or_else(|| panic!("{name} not in report: {report:#?}"))
}

fn keys(total: u64, first: &[&str]) -> Keys {
    Keys {
        total,
        first: first.iter().map(|s| s.to_string()).collect(),
    }
}

fn range(lo: Option<i64>, hi: Option<i64>) -> KeyRange {
    KeyRange {
        column: Some("id".into()),
        lo,
        hi,
    }
}

/// The same tables on both sides; `RIGHT_CHANGES` then makes each differ in
/// one way.
const COMMON: &str = "
CREATE TABLE t_null (id int PRIMARY KEY, s text);
INSERT INTO t_null SELECT g, 'v' || g FROM generate_series(1, 50) g;
CREATE TABLE t_byte (id int PRIMARY KEY, b bytea);
INSERT INTO t_byte SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 1000) g;
CREATE TABLE t_missing (id bigint PRIMARY KEY, v text);
INSERT INTO t_missing SELECT g, 'v' || g FROM generate_series(1, 1000) g;
CREATE TABLE t_extra (id bigint PRIMARY KEY, v text);
INSERT INTO t_extra SELECT g, 'v' || g FROM generate_series(1, 1000) g;
CREATE TABLE t_numeric (id int PRIMARY KEY, n numeric);
INSERT INTO t_numeric VALUES (1, 1.0), (2, 2.5);
CREATE TABLE t_composite (a int, b text, v text, PRIMARY KEY (a, b));
INSERT INTO t_composite SELECT g % 5, 'k' || g, 'v' || g FROM generate_series(1, 100) g;
CREATE TABLE t_nopk (ts timestamptz, msg text);
CREATE TABLE t_nopk_equal (ts timestamptz, msg text);
CREATE TABLE t_same (id int PRIMARY KEY, f float8, created_at timestamptz);
INSERT INTO t_same SELECT g, g / 3.0, timestamptz '2020-01-01 00:00+00' + g * interval '1 day'
  FROM generate_series(1, 100) g;
CREATE TABLE t_months (id int PRIMARY KEY, created_at timestamptz NOT NULL, other_ts timestamptz);
INSERT INTO t_months SELECT g, timestamptz '2020-01-01 00:00+00' + g * interval '1 day', timestamptz '2019-06-01'
  FROM generate_series(0, 89) g;
";

/// Left side only: rows whose order differs from the right's.
const LEFT_ONLY: &str = "
INSERT INTO t_nopk SELECT timestamptz '2021-01-01' + g * interval '1 s', 'm' || (g % 10)
  FROM generate_series(1, 300) g;
INSERT INTO t_nopk_equal SELECT timestamptz '2021-01-01' + g * interval '1 s', 'm' || (g % 10)
  FROM generate_series(1, 300) g;
ANALYZE;
";

/// Right side: the same data with one difference per table.
const RIGHT_ONLY: &str = "
INSERT INTO t_nopk SELECT timestamptz '2021-01-01' + g * interval '1 s', 'm' || (g % 10)
  FROM generate_series(300, 1, -1) g;
INSERT INTO t_nopk_equal SELECT timestamptz '2021-01-01' + g * interval '1 s', 'm' || (g % 10)
  FROM generate_series(300, 1, -1) g;
-- a duplicate row counts: the right has one row twice
INSERT INTO t_nopk SELECT ts, msg FROM t_nopk WHERE msg = 'm3' LIMIT 1;
UPDATE t_null SET s = '' WHERE id = 7;
UPDATE t_byte SET b = set_byte(b, 3, get_byte(b, 3) # 1) WHERE id = 500;
DELETE FROM t_missing WHERE id = 7;
INSERT INTO t_extra VALUES (1001, 'new'), (5000, 'far');
UPDATE t_numeric SET n = 1.00 WHERE id = 1;
UPDATE t_composite SET v = 'changed' WHERE a = 2 AND b = 'k12';
DELETE FROM t_months WHERE id = 40;
-- the load's chunks of t_byte, as pgmig load records them
CREATE SCHEMA pgmig;
CREATE TABLE pgmig.load_task (kind text, table_schema text, table_name text, chunk int, chunks int,
  split text, key_column text, lo bigint, hi bigint);
INSERT INTO pgmig.load_task VALUES
  ('copy', 'public', 't_byte', 1, 3, 'key', 'id', NULL, 250),
  ('copy', 'public', 't_byte', 2, 3, 'key', 'id', 250, 600),
  ('copy', 'public', 't_byte', 3, 3, 'key', 'id', 600, NULL);
ANALYZE;
";

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_difference_is_detected_and_named() {
    skip_unless_available!(16);
    let cluster = Cluster::primary(16).await.unwrap();
    let left_db = cluster.create_database("verify_left").await.unwrap();
    let right_db = cluster.create_database("verify_right").await.unwrap();
    cluster
        .execute(&left_db, &format!("{COMMON}{LEFT_ONLY}"))
        .await
        .unwrap();
    cluster
        .execute(&right_db, &format!("{COMMON}{RIGHT_ONLY}"))
        .await
        .unwrap();
    let (left, right) = (conn(&cluster, &left_db), conn(&cluster, &right_db));

    // checksums, with small own chunks so the key range is precise.
    let report = verify(
        &left,
        &right,
        &VerifyOptions {
            chunk_rows: 100,
            ..opts(Mode::Checksums)
        },
    )
    .await
    .unwrap();
    assert!(!report.passed);
    let failed: Vec<String> = report.failed().map(|t| t.table.to_string()).collect();
    assert_eq!(
        failed,
        [
            "public.t_byte",
            "public.t_composite",
            "public.t_extra",
            "public.t_missing",
            "public.t_months",
            "public.t_nopk",
            "public.t_null",
            "public.t_numeric"
        ]
    );
    for passed in ["t_same", "t_nopk_equal"] {
        let t = table(&report, passed);
        assert!(t.passed, "{t:#?}");
    }
    // A NULL against an empty string.
    let t = table(&report, "t_null");
    assert_eq!(
        t.differences,
        vec![Difference::Chunk {
            range: range(None, None),
            rows_left: 50,
            rows_right: 50,
            missing: keys(0, &[]),
            extra: keys(0, &[]),
            changed: keys(1, &["7"]),
            note: None,
        }]
    );
    // One changed byte, named in the load's chunk 250 <= id < 600.
    let t = table(&report, "t_byte");
    assert_eq!(t.method, "checksums of 3 key range(s) of id");
    assert_eq!(
        t.differences,
        vec![Difference::Chunk {
            range: range(Some(250), Some(600)),
            rows_left: 350,
            rows_right: 350,
            missing: keys(0, &[]),
            extra: keys(0, &[]),
            changed: keys(1, &["500"]),
            note: None,
        }]
    );
    // A missing row: the count and the first own chunk (id < 101).
    let t = table(&report, "t_missing");
    assert_eq!((t.rows_left, t.rows_right), (Some(1000), Some(999)));
    assert_eq!(
        t.differences,
        vec![
            Difference::RowCount {
                left: 1000,
                right: 999
            },
            Difference::Chunk {
                range: range(None, Some(101)),
                rows_left: 100,
                rows_right: 99,
                missing: keys(1, &["7"]),
                extra: keys(0, &[]),
                changed: keys(0, &[]),
                note: None,
            }
        ]
    );
    // Extra rows beyond the left's largest key fall into the open last chunk.
    let t = table(&report, "t_extra");
    assert_eq!(
        t.differences[1],
        Difference::Chunk {
            range: range(Some(901), None),
            rows_left: 100,
            rows_right: 102,
            missing: keys(0, &[]),
            extra: keys(2, &["1001", "5000"]),
            changed: keys(0, &[]),
            note: None,
        }
    );
    // numeric scale is part of the value.
    let t = table(&report, "t_numeric");
    assert!(
        matches!(&t.differences[..], [Difference::Chunk { changed, .. }] if changed == &keys(1, &["1"])),
        "{t:#?}"
    );
    // A composite key is named as a tuple; chunks are ranges of its
    // leading integer column.
    let t = table(&report, "t_composite");
    assert_eq!(
        t.method,
        "checksums of 1 range(s) of a, rows named by (a, b)"
    );
    let by_a = KeyRange {
        column: Some("a".into()),
        lo: None,
        hi: None,
    };
    assert!(
        matches!(&t.differences[..], [Difference::Chunk { changed, range, .. }]
            if changed == &keys(1, &["(2, k12)"]) && range == &by_a),
        "{t:#?}"
    );
    // No primary key: an order-independent whole-table checksum; the row the
    // right has twice is one extra row.
    let t = table(&report, "t_nopk");
    assert_eq!(t.method, "order-independent checksum of the whole table");
    assert_eq!(
        t.differences,
        vec![
            Difference::RowCount {
                left: 300,
                right: 301
            },
            Difference::Chunk {
                range: KeyRange::whole(),
                rows_left: 300,
                rows_right: 301,
                missing: keys(0, &[]),
                extra: keys(1, &[]),
                changed: keys(0, &[]),
                note: None,
            }
        ]
    );
    assert_eq!(
        t.differences[1].describe("replica", "target"),
        "chunk whole table differs (replica 300 rows, target 301); 1 row(s) extra on the target"
    );
    assert_eq!(
        table(&report, "t_missing").differences[1].describe("replica", "target"),
        "chunk id < 101 differs (replica 100 rows, target 99); 1 row(s) missing on the target: 7"
    );

    // Chunks larger than the drill-down limit are narrowed by key first and
    // name the same keys; without an integer key they say why they cannot.
    let before: Vec<Vec<Difference>> = ["t_byte", "t_extra", "t_missing"]
        .iter()
        .map(|n| table(&report, n).differences.clone())
        .collect();
    let narrowed = verify(
        &left,
        &right,
        &VerifyOptions {
            chunk_rows: 100,
            drill_down_rows: 7,
            jobs: 1,
            ..opts(Mode::Checksums)
        },
    )
    .await
    .unwrap();
    let after: Vec<Vec<Difference>> = ["t_byte", "t_extra", "t_missing"]
        .iter()
        .map(|n| table(&narrowed, n).differences.clone())
        .collect();
    assert_eq!(after, before);
    assert_eq!(
        table(&narrowed, "t_composite").differences,
        vec![Difference::Chunk {
            range: by_a,
            rows_left: 100,
            rows_right: 100,
            missing: keys(0, &[]),
            extra: keys(0, &[]),
            changed: keys(0, &[]),
            note: Some("not drilled down: more than 7 rows with a = 2".into()),
        }]
    );
    assert_eq!(
        table(&narrowed, "t_nopk").differences[1],
        Difference::Chunk {
            range: KeyRange::whole(),
            rows_left: 300,
            rows_right: 301,
            missing: keys(0, &[]),
            extra: keys(0, &[]),
            changed: keys(0, &[]),
            note: Some("not drilled down: more than 7 rows and no integer key to narrow by".into()),
        }
    );

    // counts: only the tables whose row count differs.
    let report = verify(&left, &right, &opts(Mode::Counts)).await.unwrap();
    let failed: Vec<String> = report.failed().map(|t| t.table.to_string()).collect();
    assert_eq!(
        failed,
        [
            "public.t_extra",
            "public.t_missing",
            "public.t_months",
            "public.t_nopk"
        ]
    );
    assert_eq!(
        table(&report, "t_nopk").differences,
        vec![Difference::RowCount {
            left: 300,
            right: 301
        }]
    );

    // buckets: created_at chosen; the month that lost a row is named.
    let report = verify(&left, &right, &opts(Mode::Buckets)).await.unwrap();
    let t = table(&report, "t_months");
    assert_eq!(t.method, "rows per month of created_at");
    assert_eq!(
        t.buckets,
        vec![
            BucketRow {
                bucket: "2020-01".into(),
                left: 31,
                right: 31
            },
            BucketRow {
                bucket: "2020-02".into(),
                left: 29,
                right: 28
            },
            BucketRow {
                bucket: "2020-03".into(),
                left: 30,
                right: 30
            },
        ]
    );
    assert_eq!(
        t.differences,
        vec![Difference::Bucket {
            column: "created_at".into(),
            bucket: "2020-02".into(),
            left: 29,
            right: 28
        }]
    );
    assert!(table(&report, "t_same").passed);
    // a table without a timestamp column falls back to its count
    assert_eq!(
        table(&report, "t_missing").method,
        "count(*) (no timestamp column)"
    );
    assert!(!table(&report, "t_missing").passed);

    // sample: every key of the small tables is drawn.
    let report = verify(
        &left,
        &right,
        &VerifyOptions {
            sample_size: 5000,
            tables: Some(vec![
                QualifiedTable::new("public", "t_null"),
                QualifiedTable::new("public", "t_missing"),
                QualifiedTable::new("public", "t_same"),
            ]),
            ..opts(Mode::Sample)
        },
    )
    .await
    .unwrap();
    assert_eq!(report.tables.len(), 3);
    assert_eq!(
        table(&report, "t_null").differences,
        vec![Difference::Sample {
            missing: keys(0, &[]),
            changed: keys(1, &["7"])
        }]
    );
    assert_eq!(
        table(&report, "t_missing").differences,
        vec![Difference::Sample {
            missing: keys(1, &["7"]),
            changed: keys(0, &[])
        }]
    );
    assert!(table(&report, "t_same").passed);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tables_and_columns_are_named() {
    skip_unless_available!(16);
    let cluster = Cluster::primary(16).await.unwrap();
    let left_db = cluster.create_database("verify_left").await.unwrap();
    let right_db = cluster.create_database("verify_right").await.unwrap();
    let both = "CREATE TABLE a (id int PRIMARY KEY, x int); INSERT INTO a VALUES (1, 1);";
    cluster
        .execute(
            &left_db,
            &format!(
                "{both} CREATE TABLE only_left (id int); ALTER TABLE a ADD COLUMN y int; \
                 CREATE TABLE widened (id int PRIMARY KEY, n int, f float4); \
                 INSERT INTO widened SELECT g, g * 1000, g / 4.0 FROM generate_series(1, 300) g;"
            ),
        )
        .await
        .unwrap();
    // The target widened the integers: equal values still compare equal.
    cluster
        .execute(
            &right_db,
            &format!(
                "{both} CREATE TABLE widened (id bigint PRIMARY KEY, n bigint, f float4); \
                 INSERT INTO widened SELECT g, g * 1000, g / 4.0 FROM generate_series(1, 300) g;"
            ),
        )
        .await
        .unwrap();
    let report = verify(
        &conn(&cluster, &left_db),
        &conn(&cluster, &right_db),
        &opts(Mode::Checksums),
    )
    .await
    .unwrap();
    assert_eq!(
        table(&report, "only_left").differences,
        vec![Difference::TableMissing {
            side: "target".into()
        }]
    );
    assert_eq!(
        table(&report, "a").differences,
        vec![Difference::Columns {
            only_left: vec!["y".into()],
            only_right: vec![]
        }]
    );
    let widened = table(&report, "widened");
    assert!(widened.passed, "{widened:#?}");
    assert_eq!(widened.rows_right, Some(300));
    cluster
        .execute(&right_db, "UPDATE widened SET n = 7 WHERE id = 42")
        .await
        .unwrap();
    let report = verify(
        &conn(&cluster, &left_db),
        &conn(&cluster, &right_db),
        &VerifyOptions {
            tables: Some(vec![QualifiedTable::new("public", "widened")]),
            ..opts(Mode::Checksums)
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(&table(&report, "widened").differences[..],
            [Difference::Chunk { changed, .. }] if changed == &keys(1, &["42"])),
        "{report:#?}"
    );

    // A cancelled verification stops with Cancelled; the caller's token is
    // the only thing that cancels it.
    let cancelled = opts(Mode::Checksums);
    cancelled.cancel.cancel();
    let err = verify(
        &conn(&cluster, &left_db),
        &conn(&cluster, &right_db),
        &cancelled,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::Cancelled), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_compared_by_leaf_and_unlogged_tables_left_out() {
    skip_unless_available!(16);
    let cluster = Cluster::primary(16).await.unwrap();
    let left_db = cluster.create_database("verify_left").await.unwrap();
    let right_db = cluster.create_database("verify_right").await.unwrap();
    let both = "
        CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
        CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
        CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200)
          PARTITION BY RANGE (id);
        CREATE TABLE parted_2a PARTITION OF parted_2 FOR VALUES FROM (100) TO (200);
        INSERT INTO parted SELECT g, 'v' || g FROM generate_series(0, 199) g;
        CREATE UNLOGGED TABLE scratch (id int);
        CREATE TABLE other (id int PRIMARY KEY);";
    cluster
        .execute(&left_db, &format!("{both} INSERT INTO scratch VALUES (1);"))
        .await
        .unwrap();
    cluster
        .execute(
            &right_db,
            &format!("{both} UPDATE parted SET v = 'x' WHERE id = 150;"),
        )
        .await
        .unwrap();
    let (left, right) = (conn(&cluster, &left_db), conn(&cluster, &right_db));
    let report = verify(&left, &right, &opts(Mode::Checksums)).await.unwrap();
    let names: Vec<String> = report.tables.iter().map(|t| t.table.to_string()).collect();
    assert_eq!(
        names,
        ["public.other", "public.parted_1", "public.parted_2a"]
    );
    let failed: Vec<String> = report.failed().map(|t| t.table.to_string()).collect();
    assert_eq!(failed, ["public.parted_2a"]);
    // The plan names the root: its leaves at any depth are compared.
    let report = verify(
        &left,
        &right,
        &VerifyOptions {
            tables: Some(vec![QualifiedTable::new("public", "parted")]),
            ..opts(Mode::Counts)
        },
    )
    .await
    .unwrap();
    let names: Vec<String> = report.tables.iter().map(|t| t.table.to_string()).collect();
    assert_eq!(names, ["public.parted_1", "public.parted_2a"]);
    assert!(report.passed);
}

/// Values whose text differs between 10 and 16 or under other settings,
/// and values easy to confuse.
const TYPED: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE DOMAIN price AS float8;
CREATE TABLE typed (
  id int PRIMARY KEY, f8 float8, f4 float4, f8a float8[], pt point, dom price, n numeric,
  n2 numeric(12,2), tz timestamptz, ts timestamp, d date, t time, ttz timetz, iv interval,
  b bytea, s text, j json, jb jsonb, u uuid, ip inet, m money, bo bool, ia int[], ta text[],
  e mood, vc varchar(10), c char(4), bits varbit, created_at timestamptz NOT NULL);
INSERT INTO typed VALUES
  (1, 0.1, 0.1, '{0.1,0.2,NULL}', '(0.1,0.3)', 1.1, 1.10, 3.14, '2020-01-01 12:00:00.123456+05',
   '2020-01-01 12:00', '2020-02-29', '23:59:59.5', '10:00+03', '1 day 02:03:04.5', '\\x00ff10',
   E'tab\\there\\nline\\\\back', '{\"a\": 0.1}', '{\"b\": [1, 0.1, null]}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1/8', 12.34, true, '{1,NULL,3}', '{a,NULL,\"\"}',
   'ok', 'varchar', 'ab', B'1011', '2020-01-15 00:00+00'),
  (2, 1/3::float8, 1/3::float4, '{}', '(1e-300,-0)', -0.0, 'NaN', -0.01, 'infinity', '-infinity',
   '1999-12-31', '00:00', '00:00+00', '-1 mons', '', '', 'null', '[]', NULL, '::1', 0, false, '{}',
   '{}', 'sad', '', '', B'', '2020-02-01 00:00+00'),
  (3, 'NaN', 'Infinity', '{1e308,-1e-300}', NULL, NULL, 123456789012345678901234567890.123456789,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, '2020-03-31 23:59:59.999999+00'),
  (4, 1e-300, 3.4e38, NULL, '(1.5,2.5)', 2.5e-5, 0.000001, 0, '2038-01-19 03:14:08+00',
   '0001-01-01 00:00', '4713-01-01 BC', '12:00', '12:00-11:30', '100 years 1 sec', '\\x', '\\N',
   '{}', '{}', NULL, '192.168.0.0/16', -1, NULL, '{{1,2},{3,4}}', '{\"\\\\N\"}', NULL, NULL, NULL,
   NULL, '2020-03-01 00:00+00');
CREATE TABLE nopk (v float8, s text);
INSERT INTO nopk SELECT g / 7.0, CASE WHEN g % 3 = 0 THEN NULL ELSE 'x' || g END
  FROM generate_series(1, 2000) g;
INSERT INTO nopk SELECT * FROM nopk WHERE v < 10;
CREATE TABLE big (id bigint PRIMARY KEY, f float8, created_at timestamptz NOT NULL);
INSERT INTO big SELECT g, g * 0.001, timestamptz '2020-01-01' + g * interval '1 min'
  FROM generate_series(1, 20000) g;
ANALYZE;
";

/// Types read as text, and arrays whose storage differs for equal values.
const ARRAYS: &str = "
CREATE TYPE pair AS (a int, b text);
CREATE TABLE arrays (id int PRIMARY KEY, ia int[], fa float8[], ea mood[], r int4range,
  tsv tsvector, comp pair, rc regclass, ts_arr timestamptz[]);
";

/// The primary reaches its values through element updates: its arrays keep
/// a NULL bitmap without NULLs.
const ARRAYS_PRIMARY: &str = "
INSERT INTO arrays VALUES (1, '{1,NULL,3}', '{0.1,NULL,0.3}', '{ok,NULL}', '[1,5)', 'a fat cat',
  ROW(1, 'x'), 'typed', '{2020-01-01 00:00+00,NULL}');
UPDATE arrays SET ia[2] = 2, fa[2] = 0.2, ea[2] = 'sad', ts_arr[2] = '2020-06-01 00:00+00' WHERE id = 1;
";

/// The target gets the same values directly.
const ARRAYS_TARGET: &str = "
INSERT INTO arrays VALUES (1, '{1,2,3}', '{0.1,0.2,0.3}', '{ok,sad}', '[1,5)', 'a fat cat',
  ROW(1, 'x'), 'typed', '{2020-01-01 00:00+00,2020-06-01 00:00+00}');
";

#[tokio::test(flavor = "multi_thread")]
async fn equal_data_from_a_pg10_replica_and_a_pg16_target_compares_equal() {
    skip_unless_available!(10, 16);
    let (primary, target) = tokio::join!(Cluster::primary(10), Cluster::primary(16));
    let (primary, target) = (primary.unwrap(), target.unwrap());
    let replica = primary.create_replica().await.unwrap();
    let db = primary.create_database("verify_pg10").await.unwrap();
    let tdb = target.create_database("verify_pg16").await.unwrap();
    primary
        .execute(&db, &format!("{TYPED}{ARRAYS}{ARRAYS_PRIMARY}"))
        .await
        .unwrap();
    target
        .execute(&tdb, &format!("{TYPED}{ARRAYS}{ARRAYS_TARGET}"))
        .await
        .unwrap();
    // The target's defaults print everything differently; the comparison
    // must not care.
    target
        .execute(
            &tdb,
            &format!(
                "ALTER DATABASE {tdb} SET extra_float_digits = 0; \
                 ALTER DATABASE {tdb} SET DateStyle = 'SQL, DMY'; \
                 ALTER DATABASE {tdb} SET TimeZone = 'Asia/Kolkata'; \
                 ALTER DATABASE {tdb} SET IntervalStyle = 'sql_standard'; \
                 ALTER DATABASE {tdb} SET bytea_output = 'escape'; \
                 ALTER DATABASE {tdb} SET lc_monetary = 'C'"
            ),
        )
        .await
        .unwrap();

    // So do the replica's, the other way (set on its primary, replayed).
    primary
        .execute(
            &db,
            &format!(
                "ALTER DATABASE {db} SET extra_float_digits = -15; \
                 ALTER DATABASE {db} SET DateStyle = 'German, MDY'; \
                 ALTER DATABASE {db} SET TimeZone = 'America/St_Johns'; \
                 ALTER DATABASE {db} SET IntervalStyle = 'iso_8601'; \
                 ALTER DATABASE {db} SET bytea_output = 'escape'"
            ),
        )
        .await
        .unwrap();

    // Freeze the replica at P.
    let pc = primary.connect(&db).await.unwrap();
    let pv = ServerVersion::query(&pc).await.unwrap();
    let head = admin::current_wal_lsn(&pc, pv).await.unwrap();
    replica.wait_for_replay(head.0, WAIT).await.unwrap();
    let rc = replica.connect(&db).await.unwrap();
    let rv = ServerVersion::query(&rc).await.unwrap();
    let p: Lsn = admin::pause_replay(&rc, rv, WAIT, Duration::from_millis(300))
        .await
        .unwrap();

    let (left, right) = (conn(&replica, &db), conn(&target, &tdb));
    for mode in [Mode::Counts, Mode::Checksums, Mode::Buckets, Mode::Sample] {
        let report = verify(
            &left,
            &right,
            &VerifyOptions {
                left_paused_at: Some(p),
                chunk_rows: 5000,
                ..opts(mode)
            },
        )
        .await
        .unwrap();
        assert!(report.passed, "{mode}: {report:#?}");
        assert_eq!(report.tables.len(), 4, "{mode}");
        assert!(
            report.left.version.starts_with("10."),
            "{}",
            report.left.version
        );
        assert!(
            report.right.version.starts_with("16."),
            "{}",
            report.right.version
        );
        assert_eq!(report.left_paused_at, Some(p));
        let big = table(&report, "big");
        if mode == Mode::Checksums {
            assert_eq!(big.method, "checksums of 4 key range(s) of id");
            assert_eq!((big.rows_left, big.rows_right), (Some(20000), Some(20000)));
            let nopk = table(&report, "nopk");
            assert_eq!(nopk.method, "order-independent checksum of the whole table");
            assert_eq!(nopk.rows_left, Some(2069));
        }
        if mode == Mode::Counts {
            assert_eq!(table(&report, "nopk").rows_right, Some(2069));
        }
    }

    // Different data still differs across the versions: one float's last bit.
    target
        .execute(&tdb, "UPDATE typed SET f8 = 0.1 + 1e-17 * 2 WHERE id = 1")
        .await
        .unwrap();
    let report = verify(
        &left,
        &right,
        &VerifyOptions {
            left_paused_at: Some(p),
            ..opts(Mode::Checksums)
        },
    )
    .await
    .unwrap();
    let failed: Vec<String> = report.failed().map(|t| t.table.to_string()).collect();
    assert_eq!(failed, ["public.typed"]);
    assert!(
        matches!(&table(&report, "typed").differences[..], [Difference::Chunk { changed, .. }] if changed == &keys(1, &["1"])),
        "{report:#?}"
    );

    // A replica that moved off P is refused, before anything is compared.
    pc.batch_execute("CREATE TABLE moved (id int)")
        .await
        .unwrap();
    let head = admin::current_wal_lsn(&pc, pv).await.unwrap();
    admin::resume_replay(&rc, rv, WAIT).await.unwrap();
    replica.wait_for_replay(head.0, WAIT).await.unwrap();
    let err = verify(
        &left,
        &right,
        &VerifyOptions {
            left_paused_at: Some(p),
            ..opts(Mode::Counts)
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, VerifyError::NotFrozen { expected, paused: false, when: "before", .. } if *expected == p),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("not frozen at P = {p}")),
        "{err}"
    );
}

/// Runs `psql -c <sql>` against `conninfo`, its output into /dev/null.
async fn psql_to_null(conninfo: &str, sql: &str) {
    let psql = pgmig_testkit::client_bin_dir().join("psql");
    let status = tokio::process::Command::new(psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("run psql");
    assert!(status.success(), "psql {sql}");
}

/// CPU seconds used so far by `pid` and its reaped children (utime, stime,
/// cutime, cstime of /proc/PID/stat).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // rest[0] is field 3 (state): utime..cstime are fields 14..17.
    f.get(11..15).map_or(0.0, |t| t.iter().sum::<f64>()) / 100.0
}

/// CPU seconds of the servers (postmasters with their exited backends:
/// connections must be closed for their backends to count) and of this
/// process (with its psql children).
fn cpu_now(clusters: &[&Cluster]) -> (f64, f64) {
    let servers: f64 = clusters
        .iter()
        .map(|c| {
            let pid =
                std::fs::read_to_string(c.data_dir().join("postmaster.pid")).unwrap_or_default();
            cpu_seconds(pid.lines().next().unwrap_or("0").trim())
        })
        .sum();
    (servers, cpu_seconds("self"))
}

/// Reads every bench table with `COPY … TO STDOUT` into /dev/null, one
/// after the other; the wall time.
async fn copy_to_null(conninfo: &str) -> Duration {
    let start = std::time::Instant::now();
    for t in ["bench.events", "bench.users", "bench.audit_log"] {
        psql_to_null(conninfo, &format!("COPY {t} TO STDOUT")).await;
    }
    start.elapsed()
}

/// The cost figure of the issue: `checksums` over the shared bench dataset
/// (scale `PGMIG_BENCH_SCALE`, default 4) from a paused PG15 replica against
/// a PG16 target, against reading the same tables with `COPY … TO STDOUT`
/// into /dev/null. Slow (it builds the dataset twice) and only meaningful
/// in release:
/// `cargo test --release -p pgmig-tests --test verify -- --ignored --nocapture checksum_cost`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: builds the bench dataset; run in release with --ignored --nocapture"]
async fn checksum_cost_against_copy_to_dev_null() {
    skip_unless_available!(15, 16);
    let scale = std::env::var("PGMIG_BENCH_SCALE").unwrap_or_else(|_| "4".into());
    let dataset = std::env::var("PGMIG_BENCH_DATASET").unwrap_or_else(|_| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/bench/dataset.sql")
            .to_string_lossy()
            .into_owned()
    });
    let (primary, target) = tokio::join!(Cluster::primary(15), Cluster::primary(16));
    let (primary, target) = (primary.unwrap(), target.unwrap());
    let replica = primary.create_replica().await.unwrap();
    let db = primary.create_database("bench").await.unwrap();
    let tdb = target.create_database("bench").await.unwrap();
    let psql = pgmig_testkit::client_bin_dir().join("psql");
    let build = |conninfo: String| {
        let (psql, dataset, scale) = (psql.clone(), dataset.clone(), scale.clone());
        async move {
            let status = tokio::process::Command::new(psql)
                .args([
                    "-X",
                    "-q",
                    "-v",
                    &format!("scale={scale}"),
                    "-f",
                    &dataset,
                    "-d",
                    &conninfo,
                ])
                .stdout(std::process::Stdio::null())
                .status()
                .await
                .expect("run psql");
            assert!(status.success(), "dataset.sql");
        }
    };
    let t0 = std::time::Instant::now();
    tokio::join!(build(primary.conninfo(&db)), build(target.conninfo(&tdb)));
    eprintln!(
        "dataset scale {scale} built on both sides in {:.1?}",
        t0.elapsed()
    );
    let pc = primary.connect(&db).await.unwrap();
    let pv = ServerVersion::query(&pc).await.unwrap();
    let head = admin::current_wal_lsn(&pc, pv).await.unwrap();
    replica
        .wait_for_replay(head.0, Duration::from_secs(600))
        .await
        .unwrap();
    let rc = replica.connect(&db).await.unwrap();
    let rv = ServerVersion::query(&rc).await.unwrap();
    let p = admin::pause_replay(&rc, rv, WAIT, Duration::from_millis(300))
        .await
        .unwrap();
    let (left, right) = (conn(&replica, &db), conn(&target, &tdb));
    let (rinfo, tinfo) = (replica.conninfo(&db), target.conninfo(&tdb));
    // Warm both caches the same way for every measurement.
    copy_to_null(&rinfo).await;
    copy_to_null(&tinfo).await;

    // Each verification right after its own baseline, three rounds: the
    // machine is shared, so only ratios measured side by side mean much.
    let mut figures = Vec::new();
    for round in 0..3 {
        let (both_l, both_r) = tokio::join!(copy_to_null(&rinfo), copy_to_null(&tinfo));
        let both = both_l.max(both_r);
        for jobs in [1, 2, 4] {
            let cpu0 = cpu_now(&[&replica, &target]);
            let one = copy_to_null(&rinfo).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cpu1 = cpu_now(&[&replica, &target]);
            let start = std::time::Instant::now();
            let report = verify(
                &left,
                &right,
                &VerifyOptions {
                    jobs,
                    left_paused_at: Some(p),
                    ..opts(Mode::Checksums)
                },
            )
            .await
            .unwrap();
            let took = start.elapsed();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cpu2 = cpu_now(&[&replica, &target]);
            assert!(report.passed, "{report:#?}");
            assert_eq!(report.tables.len(), 3);
            eprintln!(
                "round {round}: COPY to /dev/null replica {one:.2?} (both sides at once {both:.2?}); \
                 checksums --jobs {jobs} {took:.2?} = {:.2}x one side, {:.2}x both sides; \
                 CPU {:.1}s (servers {:.1}s, pgmig {:.1}s) against {:.1}s = {:.2}x",
                took.as_secs_f64() / one.as_secs_f64(),
                took.as_secs_f64() / both.as_secs_f64(),
                (cpu2.0 + cpu2.1) - (cpu1.0 + cpu1.1),
                cpu2.0 - cpu1.0,
                cpu2.1 - cpu1.1,
                (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1),
                ((cpu2.0 + cpu2.1) - (cpu1.0 + cpu1.1)) / ((cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1))
            );
            if jobs > 1 {
                figures.push(took.as_secs_f64() / one.as_secs_f64());
            }
        }
    }
    figures.sort_by(f64::total_cmp);
    eprintln!(
        "checksums --jobs 2/4 against COPY to /dev/null of one side: median {:.2}x",
        figures[figures.len() / 2]
    );
    if !cfg!(debug_assertions) {
        let median = figures[figures.len() / 2];
        assert!(
            median <= 2.0,
            "checksums cost {median:.2}x COPY to /dev/null"
        );
    }
}

/// A role that row-level security filters sees a subset of the rows:
/// verification refuses to compare that subset (it would say "equal" about
/// part of a table), naming the table, while a role allowed to bypass it
/// verifies the whole table.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_filtered_by_row_level_security_is_refused_not_compared_on_a_subset() {
    skip_unless_available!(16);
    let cluster = Cluster::primary(16).await.unwrap();
    let left_db = cluster.create_database("verify_rls_left").await.unwrap();
    let right_db = cluster.create_database("verify_rls_right").await.unwrap();
    let both = "CREATE TABLE secret (id int PRIMARY KEY, v text); \
                INSERT INTO secret SELECT g, 'v' || g FROM generate_series(1, 100) g; \
                ALTER TABLE secret ENABLE ROW LEVEL SECURITY; \
                CREATE POLICY low ON secret FOR SELECT USING (id <= 50);";
    cluster.execute(&left_db, both).await.unwrap();
    cluster.execute(&right_db, both).await.unwrap();
    // The right side holds an extra row the filtered role could not see.
    cluster
        .execute(&right_db, "INSERT INTO secret VALUES (101, 'extra')")
        .await
        .unwrap();
    cluster
        .execute(
            "postgres",
            "DO $$ BEGIN CREATE ROLE rls_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             DO $$ BEGIN CREATE ROLE rls_bypass LOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        )
        .await
        .unwrap();
    for db in [&left_db, &right_db] {
        cluster
            .execute(db, "GRANT SELECT ON secret TO rls_reader, rls_bypass")
            .await
            .unwrap();
    }
    let as_role = |db: &str, role: &str| {
        ConnConfig::parse(
            &cluster
                .conninfo(db)
                .replace("user=postgres", &format!("user={role}")),
        )
        .unwrap()
    };
    let err = verify(
        &as_role(&left_db, "rls_reader"),
        &as_role(&right_db, "rls_reader"),
        &opts(Mode::Checksums),
    )
    .await;
    let text = match err {
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
        Ok(report) => {
            // Reported per table instead of failing the run: it must not pass.
            let t = table(&report, "secret");
            assert!(!t.passed, "a filtered subset compared equal: {t:#?}");
            format!("{t:?}")
        }
    };
    assert!(
        text.contains("row-level security") || text.contains("row level security"),
        "{text}"
    );
    let report = verify(
        &as_role(&left_db, "rls_bypass"),
        &as_role(&right_db, "rls_bypass"),
        &opts(Mode::Checksums),
    )
    .await
    .unwrap();
    let t = table(&report, "secret");
    assert!(!t.passed, "{t:#?}");
    assert_eq!((t.rows_left, t.rows_right), (Some(100), Some(101)));
}
