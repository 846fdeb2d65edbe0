//! `pgmig dms generate` through the real binary against a PG15 source with
//! pglogical slots, the migration state (plan and P) recorded in a target
//! database: the files written, validated against the DMS service model
//! with botocore (offline), no password anywhere, and the refusals — a slot
//! moved past P (exit 1), no P recorded (exit 2).

#[path = "../../pgmig-dms/tests/support/botocore.rs"]
mod botocore;

mod common;

use common::files_under;
use std::path::Path;
use std::process::{Command, Output};

use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::{Lsn, QualifiedTable, state};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const PASSWORD: &str = "never-in-a-file_9f3b";

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE public.order_items (id int PRIMARY KEY, note text, raw bytea, tags text[]);
CREATE TABLE public."orderXitems" (id int PRIMARY KEY, n int);
CREATE TABLE "Sales"."Order Items" (id int PRIMARY KEY, doc jsonb, code varchar(10));
CREATE TABLE public.audit_log (ts timestamptz, msg text);
INSERT INTO public.order_items
    SELECT g, repeat('n', 300000 * (g % 2)), decode(repeat('ab', 1000), 'hex'), ARRAY['a', 'b']
    FROM generate_series(1, 4) g;
INSERT INTO "Sales"."Order Items"
    SELECT g, jsonb_build_object('k', repeat('v', 1000)), 'c' FROM generate_series(1, 3) g;
INSERT INTO public.audit_log VALUES (now(), 'm');
"#;

fn plan() -> Plan {
    let t = |schema: &str, name: &str, pk| {
        PlannedTable::new(QualifiedTable::new(schema, name), pk, 8192)
    };
    Plan::from_slots(vec![
        SlotGroup::new(
            "dms_slot_01",
            vec![
                t("public", "order_items", true),
                t("public", "orderXitems", true),
            ],
        ),
        SlotGroup::new(
            "dms_slot_02",
            vec![
                t("Sales", "Order Items", true),
                t("public", "audit_log", false),
            ],
        ),
    ])
}

fn pgmig(args: &[&str], source: &str, target: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(args)
        .env("PGMIG_SOURCE", source)
        .env("PGMIG_TARGET", target)
        .env_remove("PGMIG_REPLICA")
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run pgmig")
}

fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(dir: &Path, rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(rel)).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dms_generate_writes_valid_inputs_and_refuses_a_slot_past_p() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.expect("source");
    let db = source.create_database("app").await.unwrap();
    source.execute(&db, SCHEMA).await.unwrap();
    for slot in ["dms_slot_01", "dms_slot_02"] {
        let sql = format!("SELECT pg_create_logical_replication_slot('{slot}', 'pglogical')");
        source.execute(&db, &sql).await.unwrap();
    }
    let target_db = source.create_database("target").await.unwrap();
    let target = source.connect(&target_db).await.unwrap();
    let p: Lsn = source
        .query_one_string(&db, "SELECT pg_current_wal_lsn()::text")
        .await
        .unwrap()
        .parse()
        .unwrap();
    // The source's own system identifier: dms generate refuses a source
    // that is not the recorded one.
    let sysid: u64 = source
        .query_one_string(
            &db,
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await
        .unwrap()
        .parse()
        .unwrap();
    state::init_migration(&target, sysid, &db, &plan())
        .await
        .unwrap();
    state::set_pause_lsn(&target, p).await.unwrap();

    let with_password = |conninfo: String| format!("{conninfo} password={PASSWORD}");
    let source_dsn = with_password(source.conninfo(&db));
    let target_dsn = with_password(source.conninfo(&target_db));
    let instance = "arn:aws:dms:eu-west-1:123456789012:rep:PGMIGTEST";
    let work = std::env::temp_dir().join(format!("pgmig-dms-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out_dir = work.join("dms");
    let out = out_dir.to_str().unwrap();

    // --dry-run: the statements, nothing written.
    let o = pgmig(
        &[
            "dms",
            "generate",
            "--dry-run",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
        ],
        &source_dsn,
        &target_dsn,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let printed = text(&o);
    assert!(
        printed.contains("FROM ONLY \"public\".\"order_items\""),
        "{printed}"
    );
    assert!(
        !printed.contains("orderXitems\"\n"),
        "no LOB column there: {printed}"
    );
    assert!(!out_dir.exists(), "a dry run wrote files");

    let o = pgmig(
        &[
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
            "--region",
            "eu-west-1",
            "--source-server",
            "prod.internal",
        ],
        &source_dsn,
        &target_dsn,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let printed = text(&o);
    eprintln!("{printed}");
    if let Ok(keep) = std::env::var("PGMIG_KEEP_DMS_OUT") {
        let _ = std::process::Command::new("cp")
            .args(["-r", out, &keep])
            .status();
    }
    assert!(printed.contains(&format!("P = {p}")), "{printed}");
    assert!(!printed.contains(PASSWORD), "{printed}");

    let task = json(&out_dir, "pgmig-dms-slot-01/create-replication-task.json");
    assert_eq!(task["CdcStartPosition"], p.to_string());
    assert_eq!(task["MigrationType"], "cdc");
    let mappings = json(&out_dir, "pgmig-dms-slot-01/table-mappings.json");
    assert_eq!(
        mappings["rules"][0]["object-locator"]["table-name"],
        "order[_]items"
    );
    assert_eq!(
        mappings["rules"][1]["object-locator"]["table-name"],
        "orderXitems"
    );
    // 300 000 bytes of text, counted as UTF-16 (600 000 = 586 KB) + 50 %.
    let settings = json(&out_dir, "pgmig-dms-slot-01/task-settings.json");
    assert_eq!(settings["TargetMetadata"]["LobMaxSize"], 879, "{settings}");
    // Slot 2: 1 KB JSON values → the 32 KB floor.
    let settings = json(&out_dir, "pgmig-dms-slot-02/task-settings.json");
    assert_eq!(settings["TargetMetadata"]["LobMaxSize"], 32, "{settings}");
    let src = json(&out_dir, "pgmig-dms-slot-02/source-endpoint.json");
    assert_eq!(src["ServerName"], "prod.internal");
    assert_eq!(src["PostgreSQLSettings"]["SlotName"], "dms_slot_02");
    assert_eq!(src["SslMode"], "require");
    let target_endpoint = json(&out_dir, "target-endpoint.json");
    assert_eq!(target_endpoint["DatabaseName"], target_db.as_str());
    let manifest = json(&out_dir, "manifest.json");
    assert_eq!(
        manifest["tasks"][0]["lob"]["largest"]["column"], "note",
        "{manifest}"
    );
    for entry in files_under(&out_dir) {
        let content = std::fs::read_to_string(&entry).unwrap();
        assert!(
            !content.contains(PASSWORD),
            "{} holds the password",
            entry.display()
        );
    }
    botocore::validate(&out_dir, &[PASSWORD]);

    // Given sizes: nothing measured; JSON output for scripts.
    let o = pgmig(
        &[
            "--json",
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
            "--lob-max-size",
            "4096",
            "--target-endpoint-arn",
            "arn:aws:dms:eu-west-1:1:endpoint:T",
        ],
        &source_dsn,
        &target_dsn,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["tasks"][1]["lob"]["max_kb"], 4096, "{report}");
    assert_eq!(report["tasks"][1]["lob"]["measured"], false, "{report}");
    let task = json(&out_dir, "pgmig-dms-slot-02/create-replication-task.json");
    assert_eq!(
        task["TargetEndpointArn"],
        "arn:aws:dms:eu-west-1:1:endpoint:T"
    );

    // A Unix-socket host cannot be a DMS endpoint: exit 2, saying why.
    let o = pgmig(
        &[
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
        ],
        &format!("{source_dsn} host=/tmp"),
        &target_dsn,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Unix socket"), "{}", text(&o));

    // SIGTERM during a scan (here: waiting behind a lock the application
    // holds) cancels it on the server too, and writes nothing.
    let _ = std::fs::remove_dir_all(&out_dir);
    let locker = source.connect(&db).await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE public.order_items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args([
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
        ])
        .env("PGMIG_SOURCE", &source_dsn)
        .env("PGMIG_TARGET", &target_dsn)
        .env_remove("PGMIG_REPLICA")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = "SELECT count(*)::text FROM pg_stat_activity \
                   WHERE query LIKE 'SELECT max(%' AND wait_event_type = 'Lock'";
    let mut seen = false;
    for _ in 0..50 {
        if source.query_one_string(&db, waiting).await.unwrap() == "1" {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the scan never waited on the lock");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("interrupted by SIGTERM"), "{}", text(&o));
    let gone = "SELECT count(*)::text FROM pg_stat_activity WHERE query LIKE 'SELECT max(%'";
    let mut cancelled = false;
    for _ in 0..50 {
        if source.query_one_string(&db, gone).await.unwrap() == "0" {
            cancelled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(cancelled, "the scan still runs on the server");
    assert!(!out_dir.exists(), "an interrupted run wrote files");
    locker.batch_execute("ROLLBACK").await.unwrap();

    // A slot that confirmed changes past P: DMS cannot start at P any more.
    source
        .execute(
            &db,
            "INSERT INTO public.audit_log VALUES (now(), 'after P')",
        )
        .await
        .unwrap();
    source
        .execute(
            &db,
            "SELECT pg_replication_slot_advance('dms_slot_02', pg_current_wal_lsn())",
        )
        .await
        .unwrap();
    let o = pgmig(
        &[
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
        ],
        &source_dsn,
        &target_dsn,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("dms_slot_02 has moved past P"),
        "{}",
        text(&o)
    );

    // No P recorded: exit 2.
    let unpaused_db = source.create_database("unpaused").await.unwrap();
    let unpaused = source.connect(&unpaused_db).await.unwrap();
    state::init_migration(&unpaused, 42, &db, &plan())
        .await
        .unwrap();
    let o = pgmig(
        &[
            "dms",
            "generate",
            "--out",
            out,
            "--replication-instance-arn",
            instance,
        ],
        &source_dsn,
        &source.conninfo(&unpaused_db),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pgmig snapshot"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&work);
}

/// The whole of phase I as an operator runs it — setup, snapshot — then
/// `dms generate` with the LOBs measured on the paused replica: the tasks
/// start at the P the snapshot recorded, from the slots setup created.
#[tokio::test(flavor = "multi_thread")]
async fn dms_generate_after_setup_and_snapshot_measures_on_the_replica() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let source = Lab::source_pg15().await.expect("source");
    let (replica, target) = tokio::join!(source.create_replica(), Cluster::primary(16));
    let (replica, target) = (replica.expect("replica"), target.expect("target"));
    let db = source.create_database("app").await.unwrap();
    source.execute(&db, SCHEMA).await.unwrap();
    let target_db = target.create_database("target").await.unwrap();
    let head = source.current_wal_lsn().await.unwrap();
    replica
        .wait_for_replay(head, std::time::Duration::from_secs(30))
        .await
        .unwrap();

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgmig"))
            .args(args)
            .env("PGMIG_SOURCE", source.conninfo(&db))
            .env("PGMIG_REPLICA", replica.conninfo(&db))
            .env("PGMIG_TARGET", target.conninfo(&target_db))
            .env_remove("RUST_LOG")
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run pgmig")
    };
    let o = run(&["setup", "--slots", "2", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "setup {}", text(&o));
    let o = run(&["--json", "snapshot"]);
    assert_eq!(o.status.code(), Some(0), "snapshot {}", text(&o));
    let snap: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = snap["pause_lsn"].as_str().unwrap().to_owned();

    let work = std::env::temp_dir().join(format!("pgmig-dms-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out = work.to_str().unwrap();
    let o = run(&[
        "--json",
        "dms",
        "generate",
        "--out",
        out,
        "--replication-instance-arn",
        "arn:aws:dms:eu-west-1:123456789012:rep:E2E",
        "--measure-on",
        "replica",
    ]);
    assert_eq!(o.status.code(), Some(0), "dms generate {}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["pause_lsn"], p.as_str());
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{report}");
    let mut tables = 0;
    for task in tasks {
        let id = task["task_id"].as_str().unwrap();
        let create = json(&work, &format!("{id}/create-replication-task.json"));
        assert_eq!(create["CdcStartPosition"], p.as_str());
        tables += task["tables"].as_u64().unwrap();
    }
    // Every planned table has its rule: the four of SCHEMA.
    assert_eq!(tables, 4, "{report}");
    // The 300 000-byte text was measured on the replica.
    assert!(
        tasks
            .iter()
            .any(|t| t["lob"]["largest"]["max_bytes"] == 300_000),
        "{report}"
    );
    botocore::validate(&work, &[]);
    let _ = std::fs::remove_dir_all(&work);
}
