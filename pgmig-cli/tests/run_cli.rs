//! `pgmig run` and `pgmig demo` through the real binary: `--dry-run` prints
//! the runbook and leaves every server unchanged; a run killed during the
//! load and started again skips the steps done, finishes and verifies
//! equal; the demo runs to the end: phase I, CDC under writes, cutover GO.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Lab3, WAIT, text};
use pgmig_testkit::{Cluster, skip_unless_available};

const DATA: &str = r#"
CREATE SCHEMA bench;
CREATE TABLE bench.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, user_id int NOT NULL,
    kind text NOT NULL, amount numeric(12,2), payload jsonb, note text);
INSERT INTO bench.events SELECT g, timestamptz '2020-01-01' + make_interval(secs => g * 13), (g * 7919) % 100000,
    (ARRAY['click','view','buy','refund'])[1 + g % 4], (g % 10000) / 100.0,
    jsonb_build_object('a', g, 'b', 'x' || g % 97), md5(g::text) || repeat(' lorem ipsum', 4)
FROM generate_series(1, 150000) g;
CREATE INDEX events_user_id_idx ON bench.events (user_id);
CREATE TABLE bench.users (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text);
INSERT INTO bench.users SELECT g, 'user' || g || '@example.com', 'name ' || g FROM generate_series(1, 4000) g;
CREATE TABLE bench.audit_log (ts timestamptz NOT NULL, msg text);
INSERT INTO bench.audit_log SELECT timestamptz '2021-01-01' + make_interval(secs => g), repeat('m', 200)
FROM generate_series(1, 12000) g;
"#;

async fn one(cluster: &Cluster, db: &str, sql: &str) -> String {
    cluster.query_one_string(db, sql).await.unwrap()
}

/// What a run could change, on each server, as one string.
async fn catalogs(lab: &Lab3) -> String {
    let source = one(
        &lab.source,
        &lab.db,
        "SELECT concat_ws(' | ',
           (SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots),
           (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension),
           (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
           (SELECT count(*) FROM pg_class)::text)",
    )
    .await;
    let replica = one(
        &lab.replica,
        &lab.db,
        "SELECT pg_is_wal_replay_paused()::text || ' ' || pg_get_wal_replay_pause_state()",
    )
    .await;
    let target = one(
        &lab.target,
        &lab.target_db,
        "SELECT concat_ws(' | ', (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
           (SELECT count(*) FROM pg_class)::text)",
    )
    .await;
    format!("source: {source}\nreplica: {replica}\ntarget: {target}")
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_changes_nothing_then_a_killed_run_resumes_to_verified() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;

    let before = catalogs(&lab).await;
    let dry = lab.pgmig(&["--dry-run", "run", "--slots", "2"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let printed = String::from_utf8_lossy(&dry.stdout);
    for expected in [
        "step check",
        "CREATE EXTENSION IF NOT EXISTS pglogical",
        "pg_create_logical_replication_slot",
        "step schema",
        "CREATE TABLE bench.events",
        "step snapshot",
        "pg_wal_replay_pause()",
        "step load",
        "COPY (SELECT <columns> FROM ONLY <table>",
        "step resume-replica",
        "pg_wal_replay_resume()",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing:\n{printed}"
        );
    }
    assert_eq!(catalogs(&lab).await, before, "the dry run changed a server");

    // The run, killed during the load.
    let mut child = lab
        .command(&[
            "run",
            "--yes",
            "--slots",
            "2",
            "--chunk-size",
            "1MB",
            "--jobs",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgmig run");
    let deadline = Instant::now() + WAIT;
    loop {
        let exists = one(
            &lab.target,
            &lab.target_db,
            "SELECT (to_regclass('pgmig.load_task') IS NOT NULL)::text",
        )
        .await;
        if exists == "true" {
            let done = one(
                &lab.target,
                &lab.target_db,
                "SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NOT NULL",
            )
            .await;
            if done.parse::<i64>().unwrap() >= 2 {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        assert!(Instant::now() < deadline, "the load did not start in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.expect("SIGKILL");

    let again = lab
        .pgmig(&[
            "run",
            "--yes",
            "--slots",
            "2",
            "--chunk-size",
            "1MB",
            "--jobs",
            "2",
        ])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let out = String::from_utf8_lossy(&again.stdout);
    for skipped in [
        "setup: done earlier",
        "schema: done earlier",
        "snapshot: done earlier",
    ] {
        assert!(out.contains(skipped), "{skipped:?} missing:\n{out}");
    }
    assert!(out.contains("3 table(s): 3 passed, 0 failed"), "{out}");
    assert!(out.contains("phase I complete"), "{out}");
    // The replica was resumed; with no writes since, source and target agree.
    assert_eq!(
        one(
            &lab.replica,
            &lab.db,
            "SELECT pg_is_wal_replay_paused()::text"
        )
        .await,
        "false"
    );
    for table in ["bench.events", "bench.users", "bench.audit_log"] {
        assert_eq!(
            Lab3::digest(&lab.source, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table}"
        );
    }
    // A third run has nothing left to do.
    let third = lab.pgmig(&["run", "--yes", "--slots", "2"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert!(String::from_utf8_lossy(&third.stdout).contains("load: done earlier"));
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_to_the_end() {
    skip_unless_available!(pglogical);
    let out = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run pgmig demo");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phase I complete"), "{stdout}");
    assert!(
        stdout.contains("3 table(s): 3 passed, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("phase II"), "{stdout}");
    assert!(
        stdout.contains("GO: the target holds everything the source committed"),
        "{stdout}"
    );
    assert!(stdout.contains("demo done"), "{stdout}");
}

#[test]
fn completions_and_help_for_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8_lossy(&out.stdout);
    for command in [
        "load", "verify", "run", "status", "cleanup", "demo", "snapshot",
    ] {
        assert!(
            script.contains(command),
            "{command} missing from the completions"
        );
        let help = Command::new(env!("CARGO_BIN_EXE_pgmig"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(help.status.code(), Some(0), "{command} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Example:"),
            "{command} --help has no example"
        );
    }
}
