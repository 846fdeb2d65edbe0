//! The native applier through its library API, on real servers: a PG15
//! source with pglogical set up by pgmig, its streaming replica paused at P,
//! a PG15 target with the same (empty at P) tables.
//!
//! - `run` with `until_caught_up` applies exactly the changes after P, with
//!   events that add up to its report; a second run applies nothing; the
//!   slot is advanced to the progress row; lag is reported;
//! - a second applier on a slot already being applied is refused;
//! - an UPDATE that finds no row on the target stops the applier with the
//!   table and key, and nothing of its batch is committed;
//! - a slot consumed by another client is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgmig_cdc::progress::{read_progress, slot_lags};
use pgmig_cdc::{CdcError, CdcEvent, CdcOptions, EventFn, LOCK_SQL, run};
use pgmig_core::catalog::list_tables;
use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Filters, Plan, WriteRates};
use pgmig_core::{Lsn, ServerVersion};
use pgmig_pglogical::setup::{SetupOptions, run_setup};
use pgmig_pglogical::snapshot::take_snapshot;
use pgmig_testkit::{Cluster, Lab, skip_unless_available};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

const SCHEMA: &str = r#"
CREATE TABLE public.items (id int PRIMARY KEY, qty int NOT NULL, doc text);
ALTER TABLE public.items ALTER COLUMN doc SET STORAGE EXTERNAL;
CREATE TABLE public.log (at timestamptz NOT NULL DEFAULT now(), msg text);
"#;

const AFTER_P: &[&str] = &[
    // 3 inserts with a TOASTed doc, 1 insert into the table without a key.
    "INSERT INTO public.items SELECT g, g, repeat(md5(g::text), 100) FROM generate_series(1, 3) g; \
     INSERT INTO public.log (msg) VALUES ('one')",
    // 1 update leaving doc alone.
    "UPDATE public.items SET qty = qty + 10 WHERE id = 2",
    // 1 key change, 1 delete.
    "UPDATE public.items SET id = 30 WHERE id = 3; DELETE FROM public.items WHERE id = 1",
    // 1 truncate.
    "TRUNCATE public.log",
    // One large transaction: 5,000 inserts and 5,000 updates, streamed to
    // the target in chunks.
    "BEGIN; INSERT INTO public.items SELECT g, g, NULL FROM generate_series(100, 5099) g; \
     UPDATE public.items SET qty = -qty, doc = 'd' || id WHERE id >= 100; COMMIT",
];
const AFTER_P_CHANGES: u64 = 10_008;

async fn digest(cluster: &Cluster, db: &str, table: &str) -> String {
    cluster
        .query_one_string(
            db,
            &format!(
                "SELECT count(*) || ':' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') \
                 FROM {table} r"
            ),
        )
        .await
        .unwrap()
}

fn collector() -> (EventFn, Arc<Mutex<Vec<CdcEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let f: EventFn = Arc::new(move |e: &CdcEvent| sink.lock().unwrap().push(e.clone()));
    (f, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_applies_exactly_once_refuses_a_second_applier_and_stops_on_a_missing_row() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.expect("source");
    let (replica, target) = tokio::join!(source.create_replica(), Cluster::primary(15));
    let (replica, target) = (replica.expect("replica"), target.expect("target"));
    let db = source.create_database("cdc").await.unwrap();
    let tdb = target.create_database("cdc_target").await.unwrap();
    source.execute(&db, SCHEMA).await.unwrap();
    target.execute(&tdb, SCHEMA).await.unwrap();

    // setup and snapshot through the libraries, the tables empty at P.
    let sc = source.connect(&db).await.unwrap();
    let tc = target.connect(&tdb).await.unwrap();
    let sv = ServerVersion::query(&sc).await.unwrap();
    let tables = list_tables(&sc, sv).await.unwrap();
    let plan = Plan::build(&tables, &WriteRates::new(), 1, &Filters::default()).unwrap();
    let source_conn = ConnConfig::parse(&source.conninfo(&db)).unwrap();
    let target_conn = ConnConfig::parse(&target.conninfo(&tdb)).unwrap();
    run_setup(&sc, &tc, &plan, &SetupOptions::for_source(&source_conn))
        .await
        .expect("setup");
    replica
        .wait_for_replay(source.current_wal_lsn().await.unwrap(), WAIT)
        .await
        .unwrap();
    let rc = replica.connect(&db).await.unwrap();
    let snap = take_snapshot(&sc, &rc, &tc).await.expect("snapshot");
    let slot = plan.slots[0].slot.clone();

    for sql in AFTER_P {
        sc.batch_execute(sql).await.unwrap();
    }
    let head = pgmig_core::admin::current_wal_lsn(&sc, sv).await.unwrap();

    // Exactly the changes after P, once.
    let opts = CdcOptions {
        until_caught_up: true,
        require_load: false,
        lock_wait: Duration::from_secs(1),
        ..CdcOptions::default()
    };
    let (events, seen) = collector();
    let report = run(
        &source_conn,
        &target_conn,
        &opts,
        Some(events),
        CancellationToken::new(),
    )
    .await
    .expect("cdc");
    assert_eq!(report.pause_lsn, snap.pause_lsn);
    assert_eq!(report.slots.len(), 1);
    let s = &report.slots[0];
    assert_eq!(
        (s.slot.as_str(), s.start_lsn),
        (slot.as_str(), snap.pause_lsn)
    );
    assert_eq!(s.changes, AFTER_P_CHANGES);
    assert!(s.caught_up);
    assert!(s.until_lsn.is_some_and(|u| u >= head), "{:?}", s.until_lsn);
    assert!(s.applied_end_lsn <= head, "{} > {head}", s.applied_end_lsn);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first(),
        Some(&CdcEvent::Started {
            slot: slot.clone(),
            applied_end_lsn: snap.pause_lsn
        })
    );
    assert_eq!(
        seen.last(),
        Some(&CdcEvent::CaughtUp {
            slot: slot.clone(),
            applied_end_lsn: s.applied_end_lsn
        })
    );
    let applied_changes: u64 = seen
        .iter()
        .map(|e| match e {
            CdcEvent::Applied { changes, .. } => *changes,
            _ => 0,
        })
        .sum();
    assert_eq!(applied_changes, AFTER_P_CHANGES);
    for table in ["public.items", "public.log"] {
        assert_eq!(
            digest(&source, &db, table).await,
            digest(&target, &tdb, table).await,
            "{table}"
        );
    }
    assert_eq!(digest(&target, &tdb, "public.log").await, "0:");
    let progress = read_progress(&tc, &slot).await.unwrap().unwrap();
    assert_eq!(progress.applied_end_lsn, s.applied_end_lsn);
    assert_eq!(progress.changes, AFTER_P_CHANGES as i64);
    let confirmed: String = sc
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(confirmed.parse::<Lsn>().unwrap(), s.applied_end_lsn);
    let lags = slot_lags(&sc, sv, &tc).await.unwrap();
    assert_eq!(lags.len(), 1);
    assert_eq!(lags[0].applied_end_lsn, s.applied_end_lsn);

    // Again: nothing more to apply.
    let again = run(
        &source_conn,
        &target_conn,
        &opts,
        None,
        CancellationToken::new(),
    )
    .await
    .expect("cdc again");
    assert_eq!(again.slots[0].changes, 0);
    assert_eq!(again.slots[0].start_lsn, s.applied_end_lsn);

    // A second applier: the slot's lock is taken on the target.
    let holder = target.connect(&tdb).await.unwrap();
    let got: bool = holder.query_one(LOCK_SQL, &[&slot]).await.unwrap().get(0);
    assert!(got);
    let busy = run(
        &source_conn,
        &target_conn,
        &opts,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        busy.to_string(),
        format!("another pgmig applier is applying slot {slot} to this target")
    );
    assert!(busy.is_refusal());
    drop(holder);

    // The target lost a row the source then updates: stop, name it, commit
    // nothing of the batch.
    target
        .execute(&tdb, "DELETE FROM public.items WHERE id = 2")
        .await
        .unwrap();
    sc.batch_execute(
        "INSERT INTO public.items VALUES (4, 4, 'four'); UPDATE public.items SET qty = 0 WHERE id = 2",
    )
    .await
    .unwrap();
    let before = read_progress(&tc, &slot).await.unwrap().unwrap();
    let err = run(
        &source_conn,
        &target_conn,
        &opts,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let CdcError::RowMismatch(m) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!(
            "slot {slot}: update on public.items with key {{\"id\":2}} matched 0 rows on the target, not 1 \
             (the change at {}); the target differs from the source",
            m.lsn
        )
    );
    assert_eq!(read_progress(&tc, &slot).await.unwrap().unwrap(), before);
    assert_eq!(
        target
            .query_one_string(&tdb, "SELECT count(*)::text FROM public.items WHERE id = 4")
            .await
            .unwrap(),
        "0"
    );

    // Another client consumes the slot: the changes are gone, CDC refuses.
    let name = pgmig_pglogical::SlotName::new(slot.clone()).unwrap();
    let sets = [
        pgmig_pglogical::replication_set::update_delete_set_name(&name),
        pgmig_pglogical::replication_set::insert_truncate_set_name(&name),
    ];
    let consumed = pgmig_pglogical::get_changes(&sc, &slot, &[&sets[0], &sets[1]], None, None)
        .await
        .unwrap();
    assert!(!consumed.is_empty());
    let confirmed: String = sc
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    let refused = run(
        &source_conn,
        &target_conn,
        &opts,
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(refused.is_refusal());
    assert_eq!(
        refused.to_string(),
        format!(
            "slot {slot} is ahead of the target: its confirmed_flush_lsn {confirmed} is after {} (the last \
             applied commit: another client consumed the slot); the changes in between are not in the slot \
             any more, so CDC from it would lose them",
            before.applied_end_lsn
        )
    );
}
