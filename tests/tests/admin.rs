//! pgmig-core's version-aware admin calls against real primaries and
//! streaming replicas: PG15 (the Debian build, `pg_get_wal_replay_pause_state`),
//! PG10 and PG12 (before 14: pause settles on a stable replay LSN). Replicas
//! of 16 and 17 need a `pg_basebackup` of that major, which this machine does
//! not have (the lab's client tools are PostgreSQL 15's).
//!
//! The scenario each time: pause the replica, keep writing on the primary
//! until the replica has *received* WAL past the pause point, and prove that
//! the replay LSN and the visible data stayed frozen at exactly P; then
//! resume and catch up. Calls on the wrong kind of server fail with the
//! error that says so.

use std::time::Duration;

use pgmig_core::admin::{self, ReplayPauseState};
use pgmig_core::{Error, Lsn, Major, ServerVersion};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_millis(200);

async fn count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count rows")
        .get(0)
}

async fn write_rows(primary: &Client, rows: i32) {
    primary
        .execute(
            "INSERT INTO t (payload) SELECT repeat('x', 500) FROM generate_series(1, $1)",
            &[&rows],
        )
        .await
        .expect("insert on the primary");
}

/// The whole pause/freeze/resume scenario on one primary + replica pair.
async fn pause_freezes_replay(primary_cluster: &Cluster, replica_cluster: &Cluster, major: Major) {
    let db = primary_cluster
        .create_database("admin")
        .await
        .expect("create database");
    let primary = primary_cluster
        .connect(&db)
        .await
        .expect("connect to primary");
    primary
        .batch_execute("CREATE TABLE t (id bigserial PRIMARY KEY, payload text)")
        .await
        .expect("create table");
    write_rows(&primary, 100).await;

    let pv = ServerVersion::query(&primary)
        .await
        .expect("primary version");
    assert_eq!(pv.major(), major);
    let start = admin::current_wal_lsn(&primary, pv)
        .await
        .expect("current LSN");
    replica_cluster
        .wait_for_replay(start.0, WAIT)
        .await
        .expect("replica catches up");
    let replica = replica_cluster
        .connect(&db)
        .await
        .expect("connect to replica");
    let rv = ServerVersion::query(&replica)
        .await
        .expect("replica version");
    assert_eq!(rv.major(), major);

    // Roles and identity.
    assert!(!admin::is_in_recovery(&primary).await.unwrap());
    assert!(admin::is_in_recovery(&replica).await.unwrap());
    let sysid = admin::system_identifier(&primary).await.unwrap();
    assert_ne!(sysid, 0);
    assert_eq!(admin::system_identifier(&replica).await.unwrap(), sysid);
    let controldata = primary_cluster
        .query_one_string(
            &db,
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await
        .unwrap();
    assert_eq!(controldata.parse::<i64>().unwrap() as u64, sysid);

    // Pause: returns the replay LSN it stopped at, and the state says so.
    assert_eq!(
        admin::replay_pause_state(&replica, rv).await.unwrap(),
        ReplayPauseState::NotPaused
    );
    let p = admin::pause_replay(&replica, rv, WAIT, SETTLE)
        .await
        .expect("pause");
    assert!(
        p >= start,
        "paused at {p}, before {start} which it had replayed"
    );
    assert!(admin::is_replay_paused(&replica, rv).await.unwrap());
    assert_eq!(
        admin::replay_pause_state(&replica, rv).await.unwrap(),
        ReplayPauseState::Paused
    );
    let frozen_rows = count(&replica).await;
    assert_eq!(frozen_rows, 100);

    // The primary keeps writing; the replica receives WAL beyond P but does
    // not replay it.
    for _ in 0..5 {
        write_rows(&primary, 200).await;
    }
    let head = admin::current_wal_lsn(&primary, pv).await.unwrap();
    assert!(head > p);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let received = admin::last_receive_lsn(&replica, rv).await.unwrap();
        if received.is_some_and(|r| r >= head) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica never received {head} (got {received:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admin::last_replay_lsn(&replica, rv).await.unwrap(),
        p,
        "replay moved while paused"
    );
    assert_eq!(
        count(&replica).await,
        frozen_rows,
        "rows appeared while paused"
    );

    // Pausing again is harmless and reports the same point.
    assert_eq!(
        admin::pause_replay(&replica, rv, WAIT, SETTLE)
            .await
            .unwrap(),
        p
    );

    // Server-side distance agrees with ours, in both directions.
    let d = admin::lsn_distance_on_server(&primary, pv, head, p)
        .await
        .unwrap();
    assert_eq!(d, head.signed_distance(p));
    assert!(d > 0);
    let d = admin::lsn_distance_on_server(&replica, rv, p, head)
        .await
        .unwrap();
    assert_eq!(d, -head.signed_distance(p));

    // Resume: replay catches up with everything written meanwhile.
    admin::resume_replay(&replica, rv, WAIT)
        .await
        .expect("resume");
    assert!(!admin::is_replay_paused(&replica, rv).await.unwrap());
    let reached = admin::wait_for_replay(&replica, rv, head, WAIT)
        .await
        .expect("catch up");
    assert!(reached >= head);
    assert_eq!(count(&replica).await, 1100);
    // Resuming a running standby is not an error.
    admin::resume_replay(&replica, rv, WAIT)
        .await
        .expect("resume again");

    // Wrong roles: each call names what it needed.
    let err = admin::pause_replay(&primary, pv, WAIT, SETTLE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAStandby { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "pause WAL replay needs a standby, but this server is a primary (not in recovery)"
    );
    assert_eq!(err.kind(), pgmig_core::ErrorKind::Usage);
    let err = admin::resume_replay(&primary, pv, WAIT).await.unwrap_err();
    assert!(matches!(err, Error::NotAStandby { .. }), "{err:?}");
    let err = admin::last_replay_lsn(&primary, pv).await.unwrap_err();
    assert!(matches!(err, Error::NotAStandby { .. }), "{err:?}");
    let err = admin::last_receive_lsn(&primary, pv).await.unwrap_err();
    assert!(matches!(err, Error::NotAStandby { .. }), "{err:?}");
    let err = admin::replay_pause_state(&primary, pv).await.unwrap_err();
    assert!(matches!(err, Error::NotAStandby { .. }), "{err:?}");
    let err = admin::current_wal_lsn(&replica, rv).await.unwrap_err();
    assert!(matches!(err, Error::NotAPrimary { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "read the current WAL LSN needs a primary, but this server is a standby (in recovery)"
    );
}

async fn pair(major: u32) -> (Cluster, Cluster) {
    let primary = if major == 15 {
        Lab::source_pg15().await.expect("start PG15 source")
    } else {
        Cluster::primary(major).await.expect("start primary")
    };
    let replica = primary.create_replica().await.expect("start replica");
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread")]
async fn pg15_pause_freezes_replay_and_resume_catches_up() {
    skip_unless_available!(pglogical);
    let (primary, replica) = pair(15).await;
    pause_freezes_replay(&primary, &replica, Major::V15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg10_pause_freezes_replay_and_resume_catches_up() {
    skip_unless_available!(10);
    let (primary, replica) = pair(10).await;
    pause_freezes_replay(&primary, &replica, Major::V10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg12_pause_freezes_replay_and_resume_catches_up() {
    skip_unless_available!(12);
    let (primary, replica) = pair(12).await;
    pause_freezes_replay(&primary, &replica, Major::V12).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_read_from_each_server() {
    skip_unless_available!(10, 16);
    let (pg10, pg16) = tokio::join!(Cluster::primary(10), Cluster::primary(16));
    let (pg10, pg16) = (pg10.expect("PG10"), pg16.expect("PG16"));
    let c10 = pg10.connect("postgres").await.unwrap();
    let c16 = pg16.connect("postgres").await.unwrap();
    let v10 = ServerVersion::query(&c10).await.unwrap();
    let v16 = ServerVersion::query(&c16).await.unwrap();
    assert_eq!(v10.major(), Major::V10);
    assert_eq!(v16.major(), Major::V16);
    assert!(v10 < v16);
    assert_eq!(v10.num(), pg10.server_version_num().await.unwrap());
    // Two unrelated clusters never share a system identifier.
    assert_ne!(
        admin::system_identifier(&c10).await.unwrap(),
        admin::system_identifier(&c16).await.unwrap()
    );
    // The 10+ names exist on a real server; 14+'s pause state does not on 10.
    let lsn: Lsn = admin::current_wal_lsn(&c10, v10).await.unwrap();
    assert!(!lsn.is_invalid());
    let missing = c10
        .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION)
    );
}
