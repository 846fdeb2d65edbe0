//! `pgmig check`, `setup`, `snapshot` and `resume-replica` through the real
//! binary against a lab: a PG15 source with pglogical, its maintenance
//! replica, a PG16 target — and a second primary with its own replica for
//! the wrong-wiring cases.

use std::process::{Command, Output};
use std::time::Duration;

mod common;

use common::{Lab3, WAIT, pgmig_command};
use pgmig_testkit::{Lab, skip_unless_available};

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigserial PRIMARY KEY, sku text NOT NULL, qty int, price numeric(12,2),
    at timestamptz DEFAULT now(), tags text[], doc jsonb, raw bytea);
CREATE TABLE public."user" (id int PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE public."Select" (id int PRIMARY KEY, v text);
CREATE TABLE public.audit_log (ts timestamptz, msg text);
INSERT INTO "Sales"."Order Items" (sku, qty, price, tags, doc, raw)
    SELECT 's' || g, g, g * 1.25, ARRAY['a', 'b'], jsonb_build_object('g', g), '\x00ff'::bytea FROM generate_series(1, 50) g;
INSERT INTO public."user" SELECT g, 'u' || g || '@x' FROM generate_series(1, 20) g;
INSERT INTO public.audit_log SELECT now(), 'm' FROM generate_series(1, 10);
"#;

async fn target_opt(lab: &Lab3, sql: &str) -> Option<String> {
    lab.target
        .query_opt_string(&lab.target_db, sql)
        .await
        .unwrap()
}

async fn replica_sql(lab: &Lab3, sql: &str) -> String {
    lab.replica.query_one_string(&lab.db, sql).await.unwrap()
}

/// Everything setup creates on the source, as one comparable string.
async fn pglogical_state(lab: &Lab3) -> String {
    lab.source_sql(
        "SELECT concat_ws(' | ',
           (SELECT string_agg(slot_name || ':' || plugin, ',' ORDER BY slot_name) FROM pg_replication_slots),
           (SELECT string_agg(node_name, ',') FROM pglogical.node),
           (SELECT string_agg(set_name || ':' || replicate_insert || replicate_update || replicate_delete
                || replicate_truncate, ',' ORDER BY set_name) FROM pglogical.replication_set),
           (SELECT string_agg(s.set_name || '=' || t.set_reloid::text, ',' ORDER BY s.set_name, t.set_reloid::text)
              FROM pglogical.replication_set_table t JOIN pglogical.replication_set s USING (set_id)))",
    )
    .await
}

async fn pgmig_with(args: &[&str], source: &str, replica: &str, target: &str) -> Output {
    pgmig_command(args, source, replica, target)
        .output()
        .await
        .expect("run pgmig")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_code(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}\n--- stdout\n{}\n--- stderr\n{}",
        out(o),
        err(o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_snapshot_resume_end_to_end() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let lab = Lab3::start_with_target(SCHEMA, 16).await;

    // check: the source has no pglogical extension yet — a warning (setup
    // creates it) with its fix; nothing blocks.
    let check = lab.pgmig(&["check", "--slots", "2"]).await;
    assert_code(&check, 0, "check before setup");
    assert!(
        out(&check).contains("CREATE EXTENSION pglogical"),
        "{}",
        out(&check)
    );
    assert!(
        out(&check).contains("audit_log"),
        "no-PK table not listed: {}",
        out(&check)
    );

    // Dry run: the exact SQL, and nothing changes anywhere.
    let before = lab
        .source_sql("SELECT count(*)::text FROM pg_replication_slots")
        .await;
    let dry = lab.pgmig(&["setup", "--slots", "2", "--dry-run"]).await;
    assert_code(&dry, 0, "setup --dry-run");
    let sql = out(&dry);
    for needle in [
        "CREATE EXTENSION IF NOT EXISTS pglogical",
        "pglogical.create_node",
        "'dms_slot_01'",
        "'idms_slot_02'",
        "pglogical.replication_set_add_table",
        "'\"Sales\".\"Order Items\"'",
        "pg_create_logical_replication_slot",
        "CREATE SCHEMA IF NOT EXISTS pgmig",
    ] {
        assert!(sql.contains(needle), "dry run lacks {needle}:\n{sql}");
    }
    assert_eq!(
        lab.source_sql("SELECT count(*)::text FROM pg_replication_slots")
            .await,
        before
    );
    assert_eq!(
        lab.source_sql("SELECT count(*)::text FROM pg_extension WHERE extname = 'pglogical'")
            .await,
        "0"
    );
    assert_eq!(
        target_opt(&lab, "SELECT to_regclass('pgmig.migration')::text").await,
        None
    );

    // Without a terminal and without --yes, setup refuses and changes nothing.
    let refused = lab.pgmig(&["setup", "--slots", "2"]).await;
    assert_code(&refused, 2, "setup without --yes");
    assert!(err(&refused).contains("pass --yes"), "{}", err(&refused));
    assert_eq!(
        lab.source_sql("SELECT count(*)::text FROM pg_replication_slots")
            .await,
        before
    );

    // setup twice gives the same state.
    let first = lab.pgmig(&["setup", "--slots", "2", "--yes"]).await;
    assert_code(&first, 0, "setup");
    let state1 = pglogical_state(&lab).await;
    assert!(
        state1.contains("dms_slot_01:pglogical,dms_slot_02:pglogical"),
        "{state1}"
    );
    let second = lab
        .pgmig(&["setup", "--slots", "2", "--yes", "--json"])
        .await;
    assert_code(&second, 0, "setup again");
    let report: serde_json::Value = serde_json::from_str(&out(&second)).unwrap();
    assert!(
        report["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["created"] == false)
    );
    assert_eq!(pglogical_state(&lab).await, state1);
    // The no-PK table is only in an insert set.
    let audit_sets = lab
        .source_sql(
            "SELECT string_agg(s.set_name, ',') FROM pglogical.replication_set_table t \
             JOIN pglogical.replication_set s USING (set_id) WHERE t.set_reloid = 'public.audit_log'::regclass",
        )
        .await;
    assert!(
        audit_sets.starts_with("idms_slot_0") && !audit_sets.contains(','),
        "{audit_sets}"
    );
    // Nothing left to do: the dry run says so.
    let dry = lab.pgmig(&["setup", "--slots", "2", "--dry-run"]).await;
    assert!(!out(&dry).contains("-- on the source:"), "{}", out(&dry));

    // check now passes the pglogical items and knows pgmig's own slots.
    let check = lab.pgmig(&["check", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&out(&check)).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let severity = |id: &str| {
        findings
            .iter()
            .find(|f| f["check"] == id)
            .map(|f| f["severity"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        severity("source.pglogical_extension").as_deref(),
        Some("ok")
    );
    assert_eq!(severity("replica.system_identifier").as_deref(), Some("ok"));
    assert!(
        !findings
            .iter()
            .any(|f| f["check"] == "source.existing_slots"
                && f["summary"].as_str().unwrap().contains("dms_slot")),
        "pgmig's own slots listed as foreign: {report}"
    );

    // Live writes go on; the snapshot pins P.
    lab.source
        .execute(
            &lab.db,
            "INSERT INTO public.\"user\" SELECT g, 'v' || g FROM generate_series(100, 110) g",
        )
        .await
        .unwrap();
    lab.wait_replayed().await;
    let dry = lab.pgmig(&["snapshot", "--dry-run"]).await;
    assert_code(&dry, 0, "snapshot --dry-run");
    assert!(out(&dry).contains("pg_wal_replay_pause"), "{}", out(&dry));
    // The same statements the run executes.
    assert!(
        out(&dry).contains("FROM pg_catalog.pg_replication_slots"),
        "{}",
        out(&dry)
    );
    assert!(
        out(&dry).contains("pause_lsn IS NULL OR pause_lsn ="),
        "{}",
        out(&dry)
    );
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "false"
    );

    let snap = lab.pgmig(&["snapshot", "--json"]).await;
    assert_code(&snap, 0, "snapshot");
    let doc: serde_json::Value = serde_json::from_str(&out(&snap)).unwrap();
    let p = doc["pause_lsn"].as_str().unwrap().to_owned();
    assert_eq!(
        replica_sql(&lab, "SELECT pg_last_wal_replay_lsn()::text").await,
        p
    );
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "true"
    );
    assert_eq!(
        target_opt(&lab, "SELECT pause_lsn::text FROM pgmig.migration")
            .await
            .as_deref(),
        Some(p.as_str())
    );
    assert_eq!(doc["slots"].as_array().unwrap().len(), 2);
    // The replica stays frozen while the source writes.
    lab.source
        .execute(
            &lab.db,
            "INSERT INTO public.\"user\" SELECT g, 'w' || g FROM generate_series(200, 210) g",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica_sql(&lab, "SELECT count(*)::text FROM public.\"user\"").await,
        "31"
    );
    // Idempotent: a second snapshot reports the same P.
    let again = lab.pgmig(&["snapshot"]).await;
    assert_code(&again, 0, "snapshot again");
    assert!(out(&again).contains(&format!("P = {p}")), "{}", out(&again));

    // Setup after the snapshot: nothing to do is fine; a change is refused.
    let again = lab.pgmig(&["setup", "--yes"]).await;
    assert_code(&again, 0, "setup after snapshot, nothing to do");
    lab.source
        .execute(
            &lab.db,
            "SELECT pglogical.replication_set_remove_table(s.set_name, 'public.\"Select\"'::regclass) \
             FROM pglogical.replication_set s JOIN pglogical.replication_set_table t USING (set_id) \
             WHERE t.set_reloid = 'public.\"Select\"'::regclass",
        )
        .await
        .unwrap();
    let refused = lab.pgmig(&["setup", "--yes"]).await;
    assert_code(&refused, 1, "setup that would change the source after P");
    assert!(
        err(&refused).contains(&format!(
            "the migration is pinned at P = {p}; setup would now change the source"
        )),
        "{}",
        err(&refused)
    );
    assert_eq!(
        lab.source_sql("SELECT count(*)::text FROM pglogical.replication_set_table WHERE set_reloid = 'public.\"Select\"'::regclass")
            .await,
        "0",
        "setup changed the source after P"
    );

    // resume-replica resumes and confirms.
    let resumed = lab.pgmig(&["resume-replica"]).await;
    assert_code(&resumed, 0, "resume-replica");
    assert!(
        out(&resumed).contains(&format!("was paused at {p}")),
        "{}",
        out(&resumed)
    );
    lab.wait_replayed().await;
    assert_eq!(
        replica_sql(&lab, "SELECT count(*)::text FROM public.\"user\"").await,
        "42"
    );

    // A snapshot now would need a new P: refused, replica resumed as it was.
    let moved = lab.pgmig(&["snapshot"]).await;
    assert_code(&moved, 1, "snapshot after resume");
    assert!(
        err(&moved).contains(&format!("pinned at P = {p}")),
        "{}",
        err(&moved)
    );
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "false"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_refuses_a_slot_newer_than_p_and_a_foreign_replica() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let lab = Lab3::start_with_target(SCHEMA, 16).await;
    let other = Lab::source_pg15().await.expect("other primary");
    let other_replica = other.create_replica().await.expect("other replica");

    // The DBA paused the replica by hand, then set up the slots: they are newer than P.
    lab.replica
        .execute(&lab.db, "SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paused_at = replica_sql(&lab, "SELECT pg_last_wal_replay_lsn()::text").await;
    let setup = lab.pgmig(&["setup", "--slots", "1", "--yes"]).await;
    assert_code(&setup, 0, "setup");
    let confirmed = lab
        .source_sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'dms_slot_01'")
        .await;

    let snap = lab.pgmig(&["snapshot"]).await;
    assert_code(&snap, 1, "snapshot with a slot after P");
    let msg = err(&snap);
    assert!(
        msg.contains(&format!(
            "slot dms_slot_01 is newer than the snapshot: its confirmed_flush_lsn {confirmed} is after P = {paused_at}"
        )),
        "{msg}"
    );
    // Left as it was: still paused (it was paused before), no P recorded.
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "true"
    );
    assert_eq!(
        replica_sql(&lab, "SELECT pg_last_wal_replay_lsn()::text").await,
        paused_at
    );
    assert_eq!(
        target_opt(
            &lab,
            "SELECT coalesce(pause_lsn::text, 'none') FROM pgmig.migration"
        )
        .await
        .as_deref(),
        Some("none")
    );

    // Resume by hand; a table removed from its set is then caught on the
    // paused replica's catalogs, and the replica pgmig paused is resumed.
    lab.replica
        .execute(&lab.db, "SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    lab.source
        .execute(
            &lab.db,
            "SELECT pglogical.replication_set_remove_table('idms_slot_01', 'public.audit_log'::regclass)",
        )
        .await
        .unwrap();
    lab.wait_replayed().await;
    let snap = lab.pgmig(&["snapshot"]).await;
    assert_code(&snap, 1, "snapshot with a table missing from its set");
    assert!(
        err(&snap).contains("were not complete at P ="),
        "{}",
        err(&snap)
    );
    assert!(err(&snap).contains("audit_log"), "{}", err(&snap));
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "false"
    );

    // A replica of another primary: check and snapshot refuse, nothing paused.
    let foreign = pgmig_with(
        &["snapshot"],
        &lab.source.conninfo(&lab.db),
        &other_replica.conninfo("postgres"),
        &lab.target.conninfo(&lab.target_db),
    )
    .await;
    assert_code(&foreign, 2, "snapshot with a foreign replica");
    assert!(
        err(&foreign).contains("the replica is not a standby of this source"),
        "{}",
        err(&foreign)
    );
    assert_eq!(
        other_replica
            .query_one_string("postgres", "SELECT pg_is_wal_replay_paused()::text")
            .await
            .unwrap(),
        "false"
    );
    let check = pgmig_with(
        &["check", "--json"],
        &lab.source.conninfo(&lab.db),
        &other_replica.conninfo("postgres"),
        &lab.target.conninfo(&lab.target_db),
    )
    .await;
    assert_code(&check, 1, "check with a foreign replica");
    assert!(out(&check).contains("different primary"), "{}", out(&check));

    // Target and source swapped into one: refused before any change.
    let swapped = pgmig_with(
        &["setup", "--slots", "1", "--yes"],
        &other.conninfo("postgres"),
        &other_replica.conninfo("postgres"),
        &other.conninfo("postgres"),
    )
    .await;
    assert_code(&swapped, 2, "setup with target = source");
    assert!(
        err(&swapped).contains("the target is the source itself"),
        "{}",
        err(&swapped)
    );
    assert_eq!(
        other
            .query_one_string(
                "postgres",
                "SELECT count(*)::text FROM pg_replication_slots"
            )
            .await
            .unwrap(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_connection_strings_exit_2_without_echoing_the_password() {
    let o = pgmig_with(
        &["snapshot"],
        "host=127.0.0.1 bogus_key=1 password=hunter2-secret",
        "host=127.0.0.1",
        "host=127.0.0.1",
    )
    .await;
    assert_code(&o, 2, "bad source DSN");
    assert!(
        err(&o).contains("invalid connection option \"bogus_key\""),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("hunter2-secret"), "{}", err(&o));
    // An unquoted DSN splits into arguments; clap's complaint must not echo it.
    let o = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(["--source", "host=h", "password=hunter2-secret", "check"])
        .output()
        .unwrap();
    assert_code(&o, 2, "unquoted DSN");
    assert!(err(&o).contains("unrecognized subcommand"), "{}", err(&o));
    assert!(!err(&o).contains("hunter2-secret"), "{}", err(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(["snapshot"])
        .env_remove("PGMIG_SOURCE")
        .env_remove("PGMIG_REPLICA")
        .env_remove("PGMIG_TARGET")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_code(&o, 2, "no source");
    assert!(
        err(&o).contains("no source connection: pass --source, set PGMIG_SOURCE"),
        "{}",
        err(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_snapshot_resumes_the_replica_and_records_nothing() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let lab = Lab3::start_with_target(SCHEMA, 16).await;
    assert_code(
        &lab.pgmig(&["setup", "--slots", "1", "--yes"]).await,
        0,
        "setup",
    );
    lab.wait_replayed().await;

    // Hold the migration row: recording P will wait on it, after the pause.
    let blocker = lab.target.connect(&lab.target_db).await.unwrap();
    blocker
        .batch_execute("BEGIN; SELECT * FROM pgmig.migration FOR UPDATE")
        .await
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .arg("snapshot")
        .env("PGMIG_SOURCE", lab.source.conninfo(&lab.db))
        .env("PGMIG_REPLICA", lab.replica.conninfo(&lab.db))
        .env("PGMIG_TARGET", lab.target.conninfo(&lab.target_db))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until pgmig has paused the replica and waits on the row lock.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let waiting = target_opt(
            &lab,
            "SELECT count(*)::text FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .await;
        if waiting.as_deref() == Some("1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pgmig never reached the recording step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "true"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 3, "interrupted snapshot");
    assert!(err(&o).contains("interrupted by SIGTERM"), "{}", err(&o));
    assert!(err(&o).contains("replay was resumed"), "{}", err(&o));
    assert_eq!(
        replica_sql(&lab, "SELECT pg_is_wal_replay_paused()::text").await,
        "false"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        target_opt(
            &lab,
            "SELECT coalesce(pause_lsn::text, 'none') FROM pgmig.migration"
        )
        .await
        .as_deref(),
        Some("none")
    );
}

/// Right after `setup` the replica may not have replayed the slots'
/// creation yet (here: it applies commits 3 s late): `snapshot` waits for
/// it instead of pausing before the slots and refusing its own P.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_right_after_setup_waits_for_a_lagging_replica() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let lab = Lab3::start_with_target(SCHEMA, 16).await;
    for sql in [
        "ALTER SYSTEM SET recovery_min_apply_delay = '3s'",
        "SELECT pg_reload_conf()",
    ] {
        lab.replica.execute("postgres", sql).await.unwrap();
    }
    assert_code(
        &lab.pgmig(&["setup", "--slots", "2", "--yes"]).await,
        0,
        "setup",
    );
    let replayed = replica_sql(&lab, "SELECT pg_last_wal_replay_lsn()::text").await;
    let lagging = lab
        .source_sql(&format!(
            "SELECT (max(confirmed_flush_lsn) > '{replayed}'::pg_lsn)::text FROM pg_replication_slots"
        ))
        .await;
    assert_eq!(
        lagging, "true",
        "the replica had not replayed the slots yet"
    );
    let snap = lab.pgmig(&["snapshot", "--json"]).await;
    assert_code(&snap, 0, "snapshot right after setup");
    let p = target_opt(&lab, "SELECT pause_lsn::text FROM pgmig.migration")
        .await
        .unwrap();
    let behind = lab
        .source_sql(&format!(
            "SELECT count(*)::text FROM pg_replication_slots WHERE confirmed_flush_lsn > '{p}'"
        ))
        .await;
    assert_eq!(behind, "0", "every slot at or before P = {p}");
}
