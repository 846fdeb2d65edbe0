//! The two questions pgmig-dms asks a real source: the largest value of
//! every LOB column (each kind of LOB type, domains, TOASTed and compressed
//! values, on PG15 and on PG10), and whether each slot can still start at P.

use pgmig_core::{Lsn, QualifiedTable};
use pgmig_dms::lob::LobKind;
use pgmig_dms::{DmsError, check_slots, measure_lobs};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const SCHEMA: &str = r#"
CREATE DOMAIN note AS text;
CREATE TABLE public.docs (
    id int PRIMARY KEY,
    body text, data bytea, j json, jb jsonb, x xml, tags text[], nums int[],
    free varchar, short varchar(10), n note, at timestamptz, c char(3));
-- 2 000 000 bytes that compress to almost nothing: the size read must be the raw one.
INSERT INTO public.docs VALUES
    (1, repeat('x', 2000000), decode(repeat('00', 5000), 'hex'), '{"a": "bb"}', '{"k": [1, 2, 3]}',
     '<a>é</a>', ARRAY['a', 'bc'], ARRAY[1, 22, 333], repeat('é', 10), 'short', repeat('n', 7000), now(), 'abc'),
    (2, 'small', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE public.no_lobs (id int PRIMARY KEY, v varchar(20));
CREATE TABLE public.empty_lobs (id int PRIMARY KEY, t text);
"#;

async fn measure_on(cluster: &Cluster) {
    let db = cluster.create_database("lobs").await.unwrap();
    cluster.execute(&db, SCHEMA).await.unwrap();
    let mut client = cluster.connect(&db).await.unwrap();
    let tables = [
        QualifiedTable::new("public", "docs"),
        QualifiedTable::new("public", "no_lobs"),
        QualifiedTable::new("public", "empty_lobs"),
    ];
    let mut seen = Vec::new();
    let m = measure_lobs(&mut client, &tables, &mut |p| {
        seen.push((p.table.name.clone(), p.columns, p.done, p.total));
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        [("docs".into(), 9, 0, 2), ("empty_lobs".into(), 1, 1, 2)],
        "one scan per table with LOB columns"
    );
    let got: Vec<(&str, &str, LobKind, u64)> = m
        .columns
        .iter()
        .map(|c| {
            (
                c.column.table.name.as_str(),
                c.column.column.as_str(),
                c.column.kind,
                c.max_bytes,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("docs", "body", LobKind::Text, 2_000_000),
            ("docs", "data", LobKind::Binary, 5000),
            ("docs", "j", LobKind::Rendered, 11),
            ("docs", "jb", LobKind::Rendered, 16),
            ("docs", "x", LobKind::Rendered, 9),
            ("docs", "tags", LobKind::Rendered, 6),
            ("docs", "nums", LobKind::Rendered, 10),
            ("docs", "free", LobKind::Text, 20),
            ("docs", "n", LobKind::Text, 7000),
            ("empty_lobs", "t", LobKind::Text, 0),
        ],
        "{}",
        cluster.label()
    );
    let largest = m.largest_in(&tables[..1]).unwrap();
    assert_eq!(largest.column.column, "body");
    assert!(m.largest_in(&tables[1..2]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn lob_sizes_measured_on_pg15() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    measure_on(&source).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lob_sizes_measured_on_pg10() {
    skip_unless_available!(10);
    let source = Cluster::primary(10).await.unwrap();
    measure_on(&source).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_are_checked_against_p() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    let db = source.create_database("slots").await.unwrap();
    for (slot, plugin) in [("dms_slot_01", "pglogical"), ("td_slot", "test_decoding")] {
        let sql = format!("SELECT pg_create_logical_replication_slot('{slot}', '{plugin}')");
        source.execute(&db, &sql).await.unwrap();
    }
    let client = source.connect(&db).await.unwrap();
    let lsn = |sql: &str| {
        let source = &source;
        let db = &db;
        let sql = sql.to_owned();
        async move {
            source
                .query_one_string(db, &sql)
                .await
                .unwrap()
                .parse::<Lsn>()
                .unwrap()
        }
    };
    let p = lsn("SELECT pg_current_wal_lsn()::text").await;
    let states = check_slots(&client, &["dms_slot_01"], p).await.unwrap();
    assert_eq!(states.len(), 1);
    assert!(states[0].confirmed_flush_lsn.unwrap() <= p);
    assert!(!states[0].active);

    let err = check_slots(&client, &["dms_slot_01", "nope"], p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DmsError::SlotMissing { ref slot } if slot == "nope"),
        "{err}"
    );
    let err = check_slots(&client, &["td_slot"], p).await.unwrap_err();
    assert!(matches!(err, DmsError::SlotPlugin { .. }), "{err}");

    // An earlier P than the slot's confirmed position: DMS could not start there.
    let err = check_slots(&client, &["dms_slot_01"], Lsn(p.0 - 1)).await;
    let confirmed = states[0].confirmed_flush_lsn.unwrap();
    if confirmed.0 > p.0 - 1 {
        assert!(
            matches!(err, Err(DmsError::SlotPastStart { .. })),
            "{err:?}"
        );
    }
    source
        .execute(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    source
        .execute(
            &db,
            "SELECT pg_replication_slot_advance('dms_slot_01', pg_current_wal_lsn())",
        )
        .await
        .unwrap();
    let err = check_slots(&client, &["dms_slot_01"], p).await.unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("moved past P"),
        "{err}"
    );
}
