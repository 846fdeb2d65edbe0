//! `pgmig verify` through the real binary: a PG15 primary with its paused
//! replica, a PG16 target holding the same data and pgmig's state (plan and
//! P). Exit 0 when equal, 1 on a difference (named in text and JSON), 2
//! without a recorded P; only the plan's tables are compared; `--against
//! source` compares the source.

use std::process::{Command, Output};
use std::time::Duration;

use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::{QualifiedTable, ServerVersion, admin, state};
use pgmig_testkit::{Cluster, skip_unless_available};

const WAIT: Duration = Duration::from_secs(60);

const DATA: &str = "
CREATE TABLE items (id bigint PRIMARY KEY, name text, price float8, created_at timestamptz NOT NULL);
INSERT INTO items SELECT g, 'item ' || g, g / 10.0, timestamptz '2024-01-01 00:00+00' + g * interval '1 hour'
  FROM generate_series(1, 2000) g;
CREATE TABLE log (ts timestamptz, msg text);
INSERT INTO log SELECT timestamptz '2024-03-01' + g * interval '1 min', 'm' || g FROM generate_series(1, 500) g;
ANALYZE;
";

fn plan(tables: &[&str]) -> Plan {
    Plan::from_slots(vec![SlotGroup::new(
        "dms_slot_01",
        tables
            .iter()
            .map(|t| PlannedTable::new(QualifiedTable::new("public", *t), true, 8192))
            .collect(),
    )])
}

fn pgmig(args: &[&str], source: &str, replica: &str, target: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(args)
        .env("PGMIG_SOURCE", source)
        .env("PGMIG_REPLICA", replica)
        .env("PGMIG_TARGET", target)
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run pgmig")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_exits_by_result_and_names_differences() {
    skip_unless_available!(15, 16);
    let (primary, target) = tokio::join!(Cluster::primary(15), Cluster::primary(16));
    let (primary, target) = (primary.unwrap(), target.unwrap());
    let replica = primary.create_replica().await.unwrap();
    let db = primary.create_database("app").await.unwrap();
    let tdb = target.create_database("app").await.unwrap();
    let bare_tdb = target.create_database("bare").await.unwrap();
    // `scratch` differs but is not in the plan.
    let scratch_left = "CREATE TABLE scratch (id int PRIMARY KEY); INSERT INTO scratch VALUES (1);";
    primary
        .execute(&db, &format!("{DATA}{scratch_left}"))
        .await
        .unwrap();
    target
        .execute(
            &tdb,
            &format!("{DATA}CREATE TABLE scratch (id int PRIMARY KEY);"),
        )
        .await
        .unwrap();
    target.execute(&bare_tdb, DATA).await.unwrap();

    let pc = primary.connect(&db).await.unwrap();
    let pv = ServerVersion::query(&pc).await.unwrap();
    let head = admin::current_wal_lsn(&pc, pv).await.unwrap();
    replica.wait_for_replay(head.0, WAIT).await.unwrap();
    let rc = replica.connect(&db).await.unwrap();
    let rv = ServerVersion::query(&rc).await.unwrap();
    let p = admin::pause_replay(&rc, rv, WAIT, Duration::from_millis(300))
        .await
        .unwrap();
    let tc = target.connect(&tdb).await.unwrap();
    let sysid = admin::system_identifier(&pc).await.unwrap();
    state::init_migration(&tc, sysid, &db, &plan(&["items", "log"]))
        .await
        .unwrap();
    state::set_pause_lsn(&tc, p).await.unwrap();

    let (s, r, t) = (
        primary.conninfo(&db),
        replica.conninfo(&db),
        target.conninfo(&tdb),
    );
    let run = |args: &[&str]| pgmig(args, &s, &r, &t);

    // Equal: exit 0, both plan tables pass, scratch is not compared.
    let o = run(&["verify"]);
    assert_code(&o, 0);
    let text = out(&o);
    assert!(text.contains(&format!("paused at P = {p}")), "{text}");
    assert!(text.contains("public.items"), "{text}");
    assert!(text.contains("public.log"), "{text}");
    assert!(!text.contains("scratch"), "{text}");
    assert!(text.contains("2 table(s): 2 passed, 0 failed"), "{text}");

    // Sampled keys, and a dry run that only says what it would read.
    let o = run(&["verify", "--mode", "sample", "--sample", "50"]);
    assert_code(&o, 0);
    assert!(out(&o).contains("50 random keys"), "{}", out(&o));
    let o = run(&["verify", "--dry-run"]);
    assert_code(&o, 0);
    let text = out(&o);
    assert!(text.contains("SET TimeZone = 'UTC';"), "{text}");
    assert!(
        text.contains("tables (the plan's): public.items, public.log"),
        "{text}"
    );
    assert!(
        text.contains(&format!("must be paused at P = {p}")),
        "{text}"
    );

    // The source at cutover: the same, no P involved.
    let o = run(&["verify", "--against", "source", "--mode", "counts"]);
    assert_code(&o, 0);
    assert!(out(&o).contains("verify counts: source"), "{}", out(&o));

    // A changed row: exit 1, table and key named.
    tc.batch_execute("UPDATE items SET name = 'other' WHERE id = 1234")
        .await
        .unwrap();
    let o = run(&["verify", "--jobs", "2"]);
    assert_code(&o, 1);
    let text = out(&o);
    assert!(text.contains("1 row(s) changed: 1234"), "{text}");
    assert!(text.contains("2 table(s): 1 passed, 1 failed"), "{text}");

    let o = run(&["--json", "verify"]);
    assert_code(&o, 1);
    let json: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["mode"], "checksums");
    assert_eq!(json["left"]["name"], "replica");
    assert_eq!(json["left_paused_at"], p.to_string());
    let items = &json["tables"][0];
    assert_eq!(items["table"], "public.items");
    assert_eq!(items["passed"], false);
    assert_eq!(items["rows_left"], 2000);
    assert_eq!(items["differences"][0]["kind"], "chunk");
    assert_eq!(items["differences"][0]["changed"]["first"][0], "1234");
    assert_eq!(json["tables"][1]["passed"], true);

    // Buckets side by side; --include narrows further.
    tc.batch_execute("DELETE FROM items WHERE id = 2")
        .await
        .unwrap();
    let o = run(&["verify", "--mode", "buckets", "--include", "items"]);
    assert_code(&o, 1);
    let text = out(&o);
    assert!(text.contains("rows per month of created_at"), "{text}");
    assert!(
        text.contains("created_at month 2024-01: replica 743, target 742"),
        "{text}"
    );
    assert!(text.contains("<- differs"), "{text}");
    assert!(!text.contains("public.log"), "{text}");

    // No P recorded in the target: exit 2.
    let o = pgmig(&["verify"], &s, &r, &target.conninfo(&bare_tdb));
    assert_code(&o, 2);
    assert!(err(&o).contains("records no pause LSN P"), "{}", err(&o));

    // The replica moved off P: exit 1, and it says so.
    admin::resume_replay(&rc, rv, WAIT).await.unwrap();
    pc.batch_execute("INSERT INTO log VALUES (now(), 'after P')")
        .await
        .unwrap();
    let head = admin::current_wal_lsn(&pc, pv).await.unwrap();
    replica.wait_for_replay(head.0, WAIT).await.unwrap();
    let o = run(&["verify", "--mode", "counts"]);
    assert_code(&o, 1);
    assert!(
        err(&o).contains(&format!("not frozen at P = {p}")),
        "{}",
        err(&o)
    );
}
