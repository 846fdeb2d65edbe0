//! pgmig's pglogical decoder on real traffic: a PG15 source with pglogical
//! 2.4.2, set up by pgmig (one slot, a PG16 target holding the state), then
//! INSERT, UPDATE (TOASTed column untouched, primary key changed), DELETE,
//! TRUNCATE and writes to a table without a primary key, each in its own
//! transaction. The slot is read through `pg_logical_slot_peek_changes` /
//! `_get_changes` with its two replication sets, and every value is compared
//! with exactly what pglogical renders: numbers keep their digits, NaN and
//! infinity are strings, `bytea` is hex text, arrays and `jsonb` are raw
//! JSON, an untouched TOASTed column is absent (not NULL), a DELETE's old
//! tuple is the key plus NULLs, TRUNCATE arrives through `pglogical.queue`,
//! and an UPDATE of the no-PK table (in the insert set only) never arrives.
//!
//! Transactions come out whole, in commit order, with commit end LSNs that
//! increase and agree with `pg_current_wal_lsn()` read on the source after
//! each commit. Peeking is repeatable; getting consumes.

use std::collections::BTreeSet;

use pgmig_core::catalog::list_tables;
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Filters, Plan, WriteRates};
use pgmig_core::{Lsn, QualifiedTable, ServerVersion};
use pgmig_pglogical::replication_set::{insert_truncate_set_name, update_delete_set_name};
use pgmig_pglogical::setup::{SetupOptions, run_setup};
use pgmig_pglogical::{
    Change, ColumnValue, Datum, Message, SlotName, Transaction, Tuple, get_changes,
    group_transactions, peek_changes,
};
use pgmig_testkit::{Cluster, Lab, current_wal_lsn, skip_unless_available};
use tokio_postgres::Client;

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE public.items (
    id bigint PRIMARY KEY,
    qty int,
    price numeric,
    note text,
    raw bytea,
    at timestamptz,
    doc jsonb,
    nums int[],
    tags text[],
    flag boolean,
    uid uuid,
    big text
);
CREATE TABLE "Sales"."Order Items" ("Id" int PRIMARY KEY, "Qty" int, "note text" text);
CREATE TABLE public."user" (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE public.audit_log (ts timestamptz, msg text);
"#;

/// 300 distinct md5s: 9600 hex characters that pglz cannot shrink below
/// the TOAST threshold, so the value is stored out of line.
const BIG_SQL: &str =
    "(SELECT string_agg(md5(g::text), '' ORDER BY g) FROM generate_series(1, 300) g)";

const NOTE: &str = "tab\there\nline two \\ back\\slash ünïcödé ☃ \"q\" '";

/// `s` escaped for the inside of an `E'…'` literal.
fn e_string_body(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

/// One committed transaction on the source: its xid and the source's WAL
/// write position read right after the commit.
#[derive(Debug, Clone, Copy)]
struct Step {
    what: &'static str,
    xid: u32,
    wal_after: u64,
}

/// Runs `sql` in one transaction on the source and records its xid and the
/// WAL position after the commit.
async fn commit(client: &mut Client, what: &'static str, sql: &str) -> Step {
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .expect("xid")
        .get(0);
    tx.commit().await.expect("commit");
    let wal_after = current_wal_lsn(client).await.expect("pg_current_wal_lsn");
    let xid: u64 = xid.parse().expect("xid is a number");
    Step {
        what,
        // The epoch is 0 on a fresh cluster: the 32-bit xid decoding reports.
        xid: u32::try_from(xid).expect("xid fits in 32 bits"),
        wal_after,
    }
}

fn num(s: &str) -> Option<Datum> {
    Some(Datum::Number(s.into()))
}

fn text(s: &str) -> Option<Datum> {
    Some(Datum::Text(s.into()))
}

fn json(s: &str) -> Option<Datum> {
    Some(Datum::Json(s.into()))
}

fn tuple(columns: &[(&str, Option<Datum>)]) -> Tuple {
    columns
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn items() -> QualifiedTable {
    QualifiedTable::new("public", "items")
}

fn order_items() -> QualifiedTable {
    QualifiedTable::new("Sales", "Order Items")
}

fn users() -> QualifiedTable {
    QualifiedTable::new("public", "user")
}

fn audit_log() -> QualifiedTable {
    QualifiedTable::new("public", "audit_log")
}

/// Row 1 of `items` as pglogical renders it (session TimeZone UTC), without
/// `big` and with `qty` as given.
fn item1(qty: &str) -> Vec<(&'static str, Option<Datum>)> {
    vec![
        ("id", num("1")),
        ("qty", num(qty)),
        ("price", num("0.10")),
        ("note", text(NOTE)),
        ("raw", text("\\x00ff41")),
        ("at", text("2024-03-01T10:34:56.789+00:00")),
        ("doc", json(r#"{"a": [1, 2], "b": "x"}"#)),
        ("nums", json("[1,null,3]")),
        ("tags", json(r#"["x",null,"y z","q\"t"]"#)),
        ("flag", Some(Datum::Bool(true))),
        ("uid", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ]
}

fn item2() -> Tuple {
    tuple(&[
        ("id", num("2")),
        ("qty", None),
        ("price", text("NaN")),
        ("note", text("")),
        ("raw", None),
        ("at", text("infinity")),
        ("doc", num("123.450")),
        ("nums", json("[]")),
        ("tags", None),
        ("flag", Some(Datum::Bool(false))),
        ("uid", None),
        ("big", text("short")),
    ])
}

/// The changes of a transaction, without their LSNs.
fn messages(tx: &Transaction) -> Vec<&Message> {
    tx.changes.iter().map(|c| &c.message).collect()
}

/// Checks the shape every peek must have and returns the transactions:
/// a startup message first, commit rows at their own end LSN, commit end
/// LSNs strictly increasing, every change inside its transaction's range.
fn check_batch(changes: &[Change]) -> Vec<Transaction> {
    if let Some(first) = changes.first() {
        let Message::Startup(startup) = &first.message else {
            panic!("a batch starts with a startup message, got {first:?}");
        };
        assert_eq!(startup.pglogical_version(), Some("2.4.2"), "{startup:?}");
        assert!(
            startup.pg_version_num().is_some_and(|v| v / 10000 == 15),
            "{startup:?}"
        );
    }
    for change in changes {
        if let Message::Commit(c) = &change.message {
            assert_eq!(change.lsn, c.end_lsn, "a C row's lsn is its end_lsn");
            assert!(c.final_lsn < c.end_lsn, "{c:?}");
        }
    }
    let batch = group_transactions(changes.to_vec()).expect("whole B…C transactions");
    assert!(batch.is_complete());
    let txs = batch.into_complete().expect("complete");
    for pair in txs.windows(2) {
        assert!(
            pair[0].commit_end_lsn < pair[1].commit_end_lsn,
            "commit order: {} then {}",
            pair[0].commit_end_lsn,
            pair[1].commit_end_lsn
        );
    }
    for tx in &txs {
        assert_eq!(tx.begin.xid, tx.xid);
        assert!(tx.begin.commit_time.is_some(), "{:?}", tx.begin);
        assert!(tx.begin.first_lsn <= tx.commit_lsn);
        for c in &tx.changes {
            assert_eq!(c.xid, tx.xid);
            assert!(
                tx.begin.first_lsn <= c.lsn && c.lsn <= tx.commit_lsn,
                "change at {} outside {}..{}",
                c.lsn,
                tx.begin.first_lsn,
                tx.commit_lsn
            );
        }
    }
    txs
}

/// Our transactions, in batch order; every other one (autovacuum's
/// catalog writes, pglogical's workers) must have carried no change.
fn ours<'a>(txs: &'a [Transaction], steps: &[Step]) -> Vec<&'a Transaction> {
    let xids: BTreeSet<u32> = steps.iter().map(|s| s.xid).collect();
    for tx in txs.iter().filter(|t| !xids.contains(&t.xid)) {
        assert!(
            tx.changes.is_empty(),
            "a foreign transaction carried changes: {tx:?}"
        );
    }
    txs.iter().filter(|t| xids.contains(&t.xid)).collect()
}

/// `later` (read after `earlier`, with no write of ours in between) holds
/// exactly `earlier`'s rows, possibly followed by transactions that
/// background workers committed in between, which carry no change.
fn same_rows(earlier: &[Change], later: &[Change], steps: &[Step], what: &str) {
    assert!(
        later.len() >= earlier.len() && later[..earlier.len()] == *earlier,
        "{what}: the second read differs\n first: {earlier:?}\nsecond: {later:?}"
    );
    let tail = group_transactions(later[earlier.len()..].to_vec())
        .expect("whole transactions")
        .into_complete()
        .expect("complete");
    assert!(
        ours(&tail, steps).is_empty(),
        "{what}: ours reappeared: {tail:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decodes_real_dml_truncate_and_toast_in_commit_order() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let (source, target) = tokio::join!(Lab::source_pg15(), Cluster::primary(16));
    let (source, target) = (source.expect("PG15 source"), target.expect("PG16 target"));
    let (db, target_db) = tokio::join!(
        source.create_database("decoder"),
        target.create_database("decoder_target")
    );
    let (db, target_db) = (db.expect("source db"), target_db.expect("target db"));
    source.execute(&db, SCHEMA).await.expect("schema");

    // pgmig's setup: one slot, its two sets, the no-PK table in the insert set only.
    let mut writer = source.connect(&db).await.expect("connect source");
    let target_client = target.connect(&target_db).await.expect("connect target");
    let version = ServerVersion::query(&writer).await.expect("version");
    let tables = list_tables(&writer, version).await.expect("list tables");
    let plan = Plan::build(&tables, &WriteRates::new(), 1, &Filters::default()).expect("plan");
    assert_eq!(plan.slots.len(), 1);
    assert_eq!(plan.slots[0].tables.len(), 4);
    let opts = SetupOptions::for_source(
        &ConnConfig::parse(&source.conninfo(&db)).expect("source conninfo"),
    );
    let report = run_setup(&writer, &target_client, &plan, &opts)
        .await
        .expect("setup");
    assert!(report.slots[0].created);
    let slot = SlotName::new(&plan.slots[0].slot).expect("slot name");
    let (ud_set, it_set) = (
        update_delete_set_name(&slot),
        insert_truncate_set_name(&slot),
    );
    let sets = [ud_set.as_str(), it_set.as_str()];

    let reader = source.connect(&db).await.expect("connect reader");
    // The decoding session renders the values: pin its time zone so that
    // timestamptz text is known exactly.
    reader
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("set TimeZone");
    let before = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("peek after setup");
    assert!(
        check_batch(&before).iter().all(|t| t.changes.is_empty()),
        "changes before any write: {before:?}"
    );

    // The traffic, one transaction each.
    let wal_start = current_wal_lsn(&writer).await.expect("wal start");
    let mut steps = Vec::new();
    steps.push(
        commit(
            &mut writer,
            "insert",
            &format!(
                "INSERT INTO public.items VALUES
                   (1, 5, 0.10, E'{note}', '\\x00ff41', '2024-03-01 10:34:56.789+00',
                    '{{\"b\": \"x\", \"a\": [1, 2]}}', '{{1,NULL,3}}', ARRAY['x', NULL, 'y z', 'q\"t'],
                    true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', {BIG_SQL}),
                   (2, NULL, 'NaN', '', NULL, 'infinity', '123.450', '{{}}', NULL, false, NULL, 'short');
                 INSERT INTO \"Sales\".\"Order Items\" VALUES (10, 3, E'a\\tb');
                 INSERT INTO public.\"user\" VALUES (1, 'a@x'), (2, 'b@x');",
                note = e_string_body(NOTE),
            ),
        )
        .await,
    );
    steps.push(
        commit(
            &mut writer,
            "update without touching the TOASTed column",
            "UPDATE public.items SET qty = 6 WHERE id = 1",
        )
        .await,
    );
    steps.push(
        commit(
            &mut writer,
            "update of the primary key",
            "UPDATE \"Sales\".\"Order Items\" SET \"Id\" = 11 WHERE \"Id\" = 10",
        )
        .await,
    );
    steps.push(
        commit(
            &mut writer,
            "delete",
            "DELETE FROM public.items WHERE id = 2",
        )
        .await,
    );
    steps.push(commit(&mut writer, "truncate", "TRUNCATE public.\"user\"").await);
    steps.push(
        commit(
            &mut writer,
            "insert into the no-PK table",
            "INSERT INTO public.audit_log VALUES ('2024-01-02 03:04:05+00', 'm1')",
        )
        .await,
    );
    steps.push(
        commit(
            &mut writer,
            "update of the no-PK table",
            "UPDATE public.audit_log SET msg = 'changed'",
        )
        .await,
    );

    // The big value really went out of line, and this is it.
    let big: String = writer
        .query_one("SELECT big FROM public.items WHERE id = 1", &[])
        .await
        .expect("big")
        .get(0);
    assert_eq!(big.len(), 9600);
    let toast_pages: i64 = writer
        .query_one(
            "SELECT pg_relation_size(reltoastrelid) / 8192 FROM pg_class WHERE oid = 'public.items'::regclass",
            &[],
        )
        .await
        .expect("toast size")
        .get(0);
    assert!(toast_pages > 0, "the big value was not TOASTed out of line");

    // Peek: twice the same.
    let changes = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("peek");
    let again = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("peek again");
    same_rows(&changes, &again, &steps, "peeking twice");
    let txs = check_batch(&changes);
    let mine = ours(&txs, &steps);
    assert_eq!(
        mine.iter().map(|t| t.xid).collect::<Vec<_>>(),
        steps.iter().map(|s| s.xid).collect::<Vec<_>>(),
        "our transactions, in commit order: {steps:?}"
    );

    // Commit end LSNs against the source's WAL position around each commit.
    let mut previous = wal_start;
    for (tx, step) in mine.iter().zip(&steps) {
        let end = tx.commit_end_lsn.0;
        assert!(
            previous < end && end <= step.wal_after,
            "{}: commit end {} not in ({}, {}]",
            step.what,
            tx.commit_end_lsn,
            Lsn(previous),
            Lsn(step.wal_after)
        );
        previous = step.wal_after;
    }

    // 1. The inserts, every type exactly as rendered.
    let mut full_item1 = item1("5");
    full_item1.push(("big", text(&big)));
    let insert = |relation: QualifiedTable, new_tuple: Tuple| {
        Message::Insert(pgmig_pglogical::Insert {
            relation,
            new_tuple,
        })
    };
    assert!(!mine[0].begin.has_catalog_changes);
    assert_eq!(
        messages(mine[0]),
        [
            &insert(items(), tuple(&full_item1)),
            &insert(items(), item2()),
            &insert(
                order_items(),
                tuple(&[
                    ("Id", num("10")),
                    ("Qty", num("3")),
                    ("note text", text("a\tb"))
                ])
            ),
            &insert(users(), tuple(&[("id", num("1")), ("email", text("a@x"))])),
            &insert(users(), tuple(&[("id", num("2")), ("email", text("b@x"))])),
        ]
    );
    let Message::Insert(first) = &mine[0].changes[0].message else {
        unreachable!()
    };
    assert_eq!(
        first
            .new_tuple
            .get("nums")
            .datum()
            .and_then(Datum::array_elements),
        Some(vec![num("1"), None, num("3")])
    );
    assert_eq!(
        first
            .new_tuple
            .get("tags")
            .datum()
            .and_then(Datum::array_elements),
        Some(vec![text("x"), None, text("y z"), text("q\"t")])
    );
    assert_eq!(
        first.new_tuple.get("qty"),
        ColumnValue::Value(&Datum::Number("5".into()))
    );
    let Message::Insert(second) = &mine[0].changes[1].message else {
        unreachable!()
    };
    assert_eq!(second.new_tuple.get("qty"), ColumnValue::Null);
    assert_eq!(
        second.new_tuple.get("price").datum().map(Datum::as_str),
        Some("NaN")
    );

    // 2. UPDATE without touching `big`: absent, not NULL; no old tuple.
    assert_eq!(mine[1].changes.len(), 1);
    let Message::Update(update) = &mine[1].changes[0].message else {
        panic!("expected an update: {:?}", mine[1].changes);
    };
    assert_eq!(update.relation, items());
    assert_eq!(update.old_tuple, None);
    assert_eq!(update.new_tuple, tuple(&item1("6")));
    assert_eq!(update.new_tuple.get("big"), ColumnValue::Absent);
    assert_eq!(
        update.new_tuple.absent_columns(["id", "qty", "big"]),
        vec!["big"]
    );
    assert_eq!(
        update
            .identifying_tuple()
            .get("id")
            .datum()
            .map(Datum::as_str),
        Some("1")
    );

    // 3. Primary key change: the old tuple carries the old key, NULLs elsewhere.
    assert_eq!(
        messages(mine[2]),
        [&Message::Update(pgmig_pglogical::Update {
            relation: order_items(),
            old_tuple: Some(tuple(&[
                ("Id", num("10")),
                ("Qty", None),
                ("note text", None)
            ])),
            new_tuple: tuple(&[
                ("Id", num("11")),
                ("Qty", num("3")),
                ("note text", text("a\tb"))
            ]),
        })]
    );

    // 4. DELETE: key plus NULL for every other column, `big` included.
    let mut deleted = vec![("id", num("2"))];
    deleted.extend(
        [
            "qty", "price", "note", "raw", "at", "doc", "nums", "tags", "flag", "uid", "big",
        ]
        .map(|c| (c, None)),
    );
    assert_eq!(
        messages(mine[3]),
        [&Message::Delete(pgmig_pglogical::Delete {
            relation: items(),
            old_tuple: tuple(&deleted),
        })]
    );

    // 5. TRUNCATE, through pglogical.queue, for both sets of the table.
    assert_eq!(mine[4].changes.len(), 1, "{:?}", mine[4].changes);
    let Message::Truncate(truncate) = &mine[4].changes[0].message else {
        panic!("expected a truncate: {:?}", mine[4].changes);
    };
    assert_eq!(truncate.relation, users());
    assert_eq!(
        truncate
            .queue
            .replication_sets
            .iter()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([&ud_set, &it_set])
    );
    assert_eq!(truncate.queue.role.as_deref(), Some("postgres"));
    assert!(truncate.queue.queued_at.is_some());

    // 6. The no-PK insert arrives; 7. its update does not (insert set only).
    assert!(!mine[5].begin.has_catalog_changes);
    assert_eq!(
        messages(mine[5]),
        [&insert(
            audit_log(),
            tuple(&[
                ("ts", text("2024-01-02T03:04:05+00:00")),
                ("msg", text("m1"))
            ])
        )]
    );
    assert!(
        mine[6].changes.is_empty(),
        "the no-PK update leaked: {:?}",
        mine[6].changes
    );

    // Getting consumes: up to the PK change's commit, then the rest.
    let upto = mine[2].commit_end_lsn;
    let got = get_changes(&reader, slot.as_str(), &sets, Some(upto), None)
        .await
        .expect("get up to the third commit");
    let got_txs = check_batch(&got);
    assert_eq!(got_txs.last().map(|t| t.commit_end_lsn), Some(upto));
    assert_eq!(
        ours(&got_txs, &steps)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>(),
        mine[..3].iter().map(|t| (*t).clone()).collect::<Vec<_>>()
    );
    let rest = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("peek the rest");
    let rest_txs = check_batch(&rest);
    assert!(rest_txs.iter().all(|t| t.commit_end_lsn > upto));
    assert_eq!(
        ours(&rest_txs, &steps)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>(),
        mine[3..].iter().map(|t| (*t).clone()).collect::<Vec<_>>()
    );
    let got_rest = get_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("get the rest");
    same_rows(&rest, &got_rest, &steps, "get after peek");
    let empty = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("peek after get");
    assert!(
        ours(&check_batch(&empty), &steps).is_empty(),
        "consumed changes came back: {empty:?}"
    );

    // A later write is all a later peek sees.
    let last = commit(
        &mut writer,
        "late insert",
        "INSERT INTO public.\"user\" VALUES (3, 'c@x')",
    )
    .await;
    let late = peek_changes(&reader, slot.as_str(), &sets, None, None)
        .await
        .expect("late peek");
    let late_txs = check_batch(&late);
    let late_mine = ours(&late_txs, &[last]);
    assert_eq!(late_mine.len(), 1);
    assert!(late_txs.iter().all(|t| t.commit_end_lsn.0 > previous));
    assert!(late_mine[0].commit_end_lsn.0 <= last.wal_after);
    assert_eq!(
        messages(late_mine[0]),
        [&insert(
            users(),
            tuple(&[("id", num("3")), ("email", text("c@x"))])
        )]
    );
}
