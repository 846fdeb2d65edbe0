//! The `Migration` API step by step against a lab, as automation would call
//! it: check, plan, setup, schema, snapshot, load (with progress events),
//! verify, resume.

use std::sync::{Arc, Mutex};

use pgmig_cli::runbook::Migration;
use pgmig_core::config::ConnConfig;
use pgmig_fullload::load::{LoadEvent, LoadOptions, ProgressFn};
use pgmig_fullload::schema::SchemaOptions;
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

fn conn(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::parse(&cluster.conninfo(db)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_through_the_library() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    let (replica, target) = tokio::join!(source.create_replica(), Cluster::primary(15));
    let (replica, target) = (replica.unwrap(), target.unwrap());
    let db = source.create_database("api").await.unwrap();
    source
        .execute(
            &db,
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5000) g; \
             CREATE TABLE log (msg text); INSERT INTO log SELECT 'm' FROM generate_series(1, 100);",
        )
        .await
        .unwrap();
    let tdb = target.create_database("api").await.unwrap();
    let head = source.current_wal_lsn().await.unwrap();
    replica
        .wait_for_replay(head, std::time::Duration::from_secs(60))
        .await
        .unwrap();

    let m = Migration::new(conn(&source, &db), conn(&replica, &db), conn(&target, &tdb));
    let report = m.check(2).await.unwrap();
    assert!(!report.has_blockers(), "{}", report.render_text());
    let plan = m.plan(2).await.unwrap();
    assert_eq!(plan.tables().count(), 2);
    m.setup(&plan).await.unwrap();
    m.schema(&SchemaOptions {
        no_owner: true,
        ..SchemaOptions::default()
    })
    .await
    .unwrap();
    let snapshot = m.snapshot().await.unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = events.clone();
    let progress: ProgressFn = Arc::new(move |e: &LoadEvent| {
        if let LoadEvent::ChunkDone { table, rows, .. } = e {
            sink.lock().unwrap().push(format!("{table}:{rows}"));
        }
    });
    let load = m
        .load(&LoadOptions::default(), Some(progress))
        .await
        .unwrap();
    assert!(load.is_complete());
    assert_eq!(load.pause_lsn, snapshot.pause_lsn);
    let mut seen = events.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, vec!["public.log:100", "public.t:5000"]);
    let verified = m.verify(&Default::default()).await.unwrap();
    assert!(verified.passed);
    assert_eq!(verified.left_paused_at, Some(snapshot.pause_lsn));
    assert_eq!(verified.tables.len(), 2);
    let resumed = m.resume_replica().await.unwrap();
    assert!(resumed.was_paused);
}
