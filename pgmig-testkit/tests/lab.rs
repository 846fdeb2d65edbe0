//! Smoke tests of the lab against real servers: every build the lab knows
//! starts, answers, streams to a standby, and leaves nothing behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgmig_testkit::{
    Cluster, ClusterRole, ClusterSpec, Lab, LabError, StopMode, format_lsn, skip_unless_available,
};

const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Inserts a row on `primary`, waits for `replica` to replay it, reads it back there.
async fn assert_streams(primary: &Cluster, replica: &Cluster, db: &str) {
    primary
        .execute(
            db,
            "CREATE TABLE lab_probe (id int PRIMARY KEY, note text);
             INSERT INTO lab_probe VALUES (1, 'streamed');",
        )
        .await
        .unwrap();
    let lsn = primary.current_wal_lsn().await.unwrap();
    let reached = replica.wait_for_replay(lsn, REPLAY_TIMEOUT).await.unwrap();
    assert!(
        reached >= lsn,
        "{} < {}",
        format_lsn(reached),
        format_lsn(lsn)
    );
    let note = replica
        .query_one_string(db, "SELECT note FROM lab_probe WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(note, "streamed");
    let in_recovery = replica
        .query_one_string("postgres", "SELECT pg_is_in_recovery()")
        .await
        .unwrap();
    assert_eq!(in_recovery, "t");
    // The text form is accepted too, and compared as a number.
    replica
        .wait_for_replay(format_lsn(lsn), REPLAY_TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pg15_source_with_pglogical_and_streaming_replica() {
    skip_unless_available!(pglogical);
    let started = Instant::now();
    let source = Lab::source_pg15().await.unwrap();
    let source_up = started.elapsed();
    let replica = source.create_replica().await.unwrap();
    eprintln!(
        "pg15 source up in {source_up:?}, source+replica streaming in {:?}",
        started.elapsed()
    );
    assert_eq!(source.role(), ClusterRole::Primary);
    assert_eq!(replica.role(), ClusterRole::Standby);
    assert_ne!(source.port(), replica.port());

    let db = source.create_database("pglogical_ext").await.unwrap();
    source
        .execute(&db, "CREATE EXTENSION pglogical")
        .await
        .unwrap();
    let preload = source
        .query_one_string(&db, "SHOW shared_preload_libraries")
        .await
        .unwrap();
    assert_eq!(preload, "pglogical");
    for (name, want) in [
        ("wal_level", "logical"),
        ("track_commit_timestamp", "on"),
        ("wal_sender_timeout", "0"),
        ("listen_addresses", "127.0.0.1"),
    ] {
        let got = source
            .query_one_string(&db, &format!("SHOW {name}"))
            .await
            .unwrap();
        assert_eq!(got, want, "{name}");
    }
    let ext = source
        .query_one_string(
            &db,
            "SELECT extversion FROM pg_extension WHERE extname = 'pglogical'",
        )
        .await
        .unwrap();
    assert!(ext.starts_with("2."), "pglogical {ext}");

    assert_streams(&source, &replica, &db).await;

    // A paused replica stays behind: the wait times out, naming the LSNs.
    replica
        .execute("postgres", "SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    source
        .execute(&db, "INSERT INTO lab_probe VALUES (2, 'held back')")
        .await
        .unwrap();
    let target = source.current_wal_lsn().await.unwrap();
    let err = replica
        .wait_for_replay(target, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format_lsn(target)), "{err}");
    replica
        .execute("postgres", "SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    replica
        .wait_for_replay(target, REPLAY_TIMEOUT)
        .await
        .unwrap();

    // Waiting for replay on a primary is a mistake, reported at once.
    let err = source
        .wait_for_replay(0u64, REPLAY_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::Unexpected { .. }), "{err:?}");

    // Drop order must not matter: the primary goes first here.
    drop(source);
    drop(replica);
}

#[tokio::test(flavor = "multi_thread")]
async fn pg10_primary_and_replica_stream() {
    skip_unless_available!(10);
    let started = Instant::now();
    let primary = Cluster::primary(10).await.unwrap();
    let replica = primary.create_replica().await.unwrap();
    eprintln!("pg10 primary+replica streaming in {:?}", started.elapsed());
    assert_eq!(
        replica
            .query_one_string("postgres", "SHOW server_version_num")
            .await
            .unwrap()[..2],
        *"10"
    );
    assert!(replica.data_dir().join("recovery.conf").is_file());
    let db = primary.create_database("pg10_stream").await.unwrap();
    assert_streams(&primary, &replica, &db).await;
    // The replica goes first here.
    drop(replica);
    drop(primary);
}

#[tokio::test(flavor = "multi_thread")]
async fn pg12_pg16_pg17_primaries_start_and_answer() {
    skip_unless_available!(12, 16, 17);
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        Cluster::primary(12),
        Cluster::primary(16),
        Cluster::primary(17)
    );
    eprintln!("pg12+pg16+pg17 up in {:?}", started.elapsed());
    for (cluster, major) in [(a.unwrap(), 12), (b.unwrap(), 16), (c.unwrap(), 17)] {
        let num = cluster.server_version_num().await.unwrap();
        assert_eq!(num / 10_000, major, "{}", cluster.label());
        assert_eq!(cluster.major(), major);
        let db = cluster.create_database("smoke").await.unwrap();
        let one = cluster.query_one_string(&db, "SELECT 1").await.unwrap();
        assert_eq!(one, "1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pg12_replica_streams() {
    skip_unless_available!(12);
    let primary = Cluster::primary(12).await.unwrap();
    let replica = primary.create_replica().await.unwrap();
    assert!(replica.data_dir().join("standby.signal").is_file());
    let db = primary.create_database("pg12_stream").await.unwrap();
    assert_streams(&primary, &replica, &db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_start_restart_keep_port_and_data() {
    skip_unless_available!(15);
    let cluster = ClusterSpec::new(15).label("faults").start().await.unwrap();
    let port = cluster.port();
    let db = cluster.create_database("faults").await.unwrap();
    cluster
        .execute(&db, "CREATE TABLE t (id int); INSERT INTO t VALUES (42);")
        .await
        .unwrap();
    cluster.stop(StopMode::Immediate).await.unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.connect(&db).await.is_err());
    cluster.start().await.unwrap();
    cluster.restart().await.unwrap();
    assert_eq!(cluster.port(), port);
    let id = cluster
        .query_one_string(&db, "SELECT id FROM t")
        .await
        .unwrap();
    assert_eq!(id, "42");
    assert!(cluster.log_tail(50).contains("database system is ready"));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_start_reports_the_server_log_and_cleans_up() {
    skip_unless_available!(15);
    let err = ClusterSpec::new(15)
        .label("broken")
        .setting("shared_buffers", "not-a-size")
        .start()
        .await
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(matches!(err, LabError::Command { .. }), "{text}");
    assert!(text.contains("pg_ctl"), "{text}");
    assert!(text.contains("shared_buffers"), "{text}");
}

/// Starts a cluster inside a task that panics; Drop must still stop the
/// server and remove its directory.
#[tokio::test(flavor = "multi_thread")]
async fn drop_on_panic_stops_server_and_removes_directory() {
    skip_unless_available!(15);
    let (tx, rx) = tokio::sync::oneshot::channel::<(PathBuf, u32)>();
    let task = tokio::spawn(async move {
        let cluster = Cluster::primary(15).await.unwrap();
        let pid: u32 = cluster
            .query_one_string("postgres", "SELECT pg_backend_pid()")
            .await
            .unwrap()
            .parse()
            .unwrap();
        let postmaster = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(pid, postmaster);
        tx.send((cluster.data_dir().to_path_buf(), postmaster))
            .unwrap();
        panic!("deliberate panic with a live cluster");
    });
    let joined = task.await;
    assert!(joined.unwrap_err().is_panic());
    let (data_dir, postmaster) = rx.await.unwrap();
    assert!(!data_dir.exists(), "{} left behind", data_dir.display());
    assert!(!alive(postmaster), "postmaster {postmaster} still running");
}

/// Whether a process runs (a zombie awaiting its reaper does not count).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}
