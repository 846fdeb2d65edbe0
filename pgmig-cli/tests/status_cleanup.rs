//! `pgmig status` and `pgmig cleanup` through the real binary.
//!
//! status works with no server reachable, and follows a migration through
//! setup, snapshot, load and CDC (step, P, slots with retained WAL over a
//! threshold, load progress per table, CDC progress, the paused replica).
//! cleanup then drops exactly pgmig's slots, sets, node and `pgmig` schema —
//! an unrelated slot, set and schema survive, and so does the node while
//! another set or a `pgl_` slot (which `pglogical.drop_node` would take
//! along) needs it — and a second cleanup finds nothing.

use std::process::{Command, Output};

mod common;

use common::{Lab3, WAIT, assert_exit as assert_code};
use pgmig_testkit::skip_unless_available;

const PASSWORD: &str = "Sup3rSecretPw";

const DATA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigint PRIMARY KEY, sku text NOT NULL, qty int);
INSERT INTO "Sales"."Order Items" SELECT g, 's' || g, g FROM generate_series(1, 500) g;
CREATE INDEX order_items_sku ON "Sales"."Order Items" (sku);
CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO public.users SELECT g, 'u' || g || '@x' FROM generate_series(1, 200) g;
CREATE TABLE public.audit_log (ts timestamptz, msg text);
INSERT INTO public.audit_log SELECT now(), 'm' FROM generate_series(1, 100);
"#;

/// The source's slots, nodes, sets and memberships as one string.
async fn source_state(lab: &Lab3) -> String {
    lab.source_sql(
        "SELECT concat_ws(' | ',
           'slots=' || coalesce((SELECT string_agg(slot_name || ':' || plugin, ',' ORDER BY slot_name)
              FROM pg_replication_slots), ''),
           'nodes=' || coalesce((SELECT string_agg(node_name, ',' ORDER BY node_name) FROM pglogical.node), ''),
           'sets=' || coalesce((SELECT string_agg(set_name, ',' ORDER BY set_name) FROM pglogical.replication_set), ''),
           'members=' || coalesce((SELECT string_agg(s.set_name || '=' || t.set_reloid::regclass::text, ','
              ORDER BY s.set_name, t.set_reloid::regclass::text)
              FROM pglogical.replication_set_table t JOIN pglogical.replication_set s USING (set_id)), ''))",
    )
    .await
}

/// The target's non-system schemas.
async fn target_schemas(lab: &Lab3) -> String {
    lab.target_sql(
        "SELECT coalesce(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace \
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')",
    )
    .await
}

async fn pgmig_replica(lab: &Lab3, args: &[&str], replica: &str) -> Output {
    lab.command_with(
        args,
        &lab.source.conninfo(&lab.db),
        replica,
        &lab.target.conninfo(&lab.target_db),
    )
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

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&out(o)).unwrap_or_else(|e| panic!("{e}: {}", out(o)))
}

fn warnings(report: &serde_json::Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
    // dropped here: the port is closed again
}

#[test]
fn status_with_no_server_reachable_reports_each_and_exits_0() {
    let port = closed_port();
    let source = format!("host=127.0.0.1 port={port} dbname=app user=me password={PASSWORD}");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pgmig"))
            .args(args)
            .env("PGMIG_SOURCE", &source)
            .env_remove("PGMIG_REPLICA")
            .env_remove("PGMIG_TARGET")
            .env_remove("RUST_LOG")
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let text = run(&["status"]);
    assert_code(&text, 0, "status, nothing reachable");
    let t = out(&text);
    assert!(t.contains("step: unknown"), "{t}");
    assert!(
        t.contains("source UNREACHABLE, replica not configured, target not configured"),
        "{t}"
    );
    assert!(t.contains("the source is unreachable"), "{t}");

    let j = run(&["--json", "status"]);
    assert_code(&j, 0, "status --json, nothing reachable");
    let report = json(&j);
    assert_eq!(report["step"], "unknown");
    assert_eq!(report["servers"][0]["role"], "source");
    assert_eq!(report["servers"][0]["configured"], true);
    assert_eq!(report["servers"][0]["reachable"], false);
    assert_eq!(report["servers"][1]["configured"], false);
    assert_eq!(report["slots"].as_array().unwrap().len(), 0);
    for o in [&text, &j] {
        assert!(
            !out(o).contains(PASSWORD) && !err(o).contains(PASSWORD),
            "password printed:\n{}\n{}",
            out(o),
            err(o)
        );
    }

    // --watch is for people: not with --json, not with 0 seconds.
    assert_code(
        &run(&["--json", "status", "--watch", "2"]),
        2,
        "--watch --json",
    );
    assert_code(&run(&["status", "--watch", "0"]), 2, "--watch 0");
    assert_code(
        &run(&["status", "--warn-retained", "lots"]),
        2,
        "bad --warn-retained",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_follows_the_migration_and_cleanup_drops_only_pgmigs_objects() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;

    // Before anything: status works and says so.
    let st = lab.pgmig(&["--json", "status"]).await;
    assert_code(&st, 0, "status before setup");
    let report = json(&st);
    assert_eq!(report["step"], "not_set_up", "{report}");
    assert_eq!(report["pause_lsn"], serde_json::Value::Null);
    assert!(report["next"].as_str().unwrap().contains("pgmig setup"));
    assert_eq!(report["slots"].as_array().unwrap().len(), 0);
    // Nothing to clean up yet, and saying so changes nothing.
    let nothing = lab.pgmig(&["cleanup"]).await;
    assert_code(&nothing, 0, "cleanup before setup");
    assert!(
        out(&nothing).contains("nothing to clean up"),
        "{}",
        out(&nothing)
    );

    assert_code(
        &lab.pgmig(&["setup", "--slots", "2", "--yes"]).await,
        0,
        "setup",
    );
    // Objects pgmig did not create: a slot, a slot pglogical.drop_node
    // would drop (its name contains pgl_), a set holding a table.
    lab.source
        .execute(
            &lab.db,
            "SELECT pg_create_logical_replication_slot('keep_slot', 'pglogical');
             SELECT pg_create_logical_replication_slot('keep_pgl_trap', 'pglogical');
             SELECT pglogical.create_replication_set('keep_set');
             SELECT pglogical.replication_set_add_table('keep_set', 'public.users');
             INSERT INTO public.users SELECT g, 'w' || g || '@x' FROM generate_series(1001, 1100) g;",
        )
        .await
        .unwrap();

    // After setup: pgmig's two slots, retaining WAL over a 1-byte threshold.
    let st = lab
        .pgmig(&["--json", "status", "--warn-retained", "1"])
        .await;
    assert_code(&st, 0, "status after setup");
    let report = json(&st);
    assert_eq!(report["step"], "set_up", "{report}");
    let slots = report["slots"].as_array().unwrap();
    let names: Vec<&str> = slots.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dms_slot_01", "dms_slot_02"], "{report}");
    for s in slots {
        assert_eq!(s["created_by_pgmig"], true, "{s}");
        assert_eq!(s["exists"], true, "{s}");
        assert_eq!(s["active"], false, "{s}");
        assert!(s["retained_wal_bytes"].as_u64().unwrap() > 0, "{s}");
        assert!(s["lag_bytes"].as_u64().is_some(), "{s}");
    }
    assert_eq!(report["thresholds"]["warn_retained_bytes"], 1);
    let w = warnings(&report);
    for slot in ["dms_slot_01", "dms_slot_02"] {
        assert!(
            w.iter()
                .any(|w| w.contains(&format!("slot {slot} retains")) && w.contains("pgmig cleanup")),
            "{w:?}"
        );
    }
    // The default threshold (10GB) is far away: no slot warning.
    let quiet = json(&lab.pgmig(&["--json", "status"]).await);
    assert!(
        !warnings(&quiet).iter().any(|w| w.contains("retains")),
        "{quiet}"
    );

    // Snapshot: P, and the paused replica is a warning that says how to resume.
    let head = lab.source.current_wal_lsn().await.unwrap();
    lab.replica.wait_for_replay(head, WAIT).await.unwrap();
    assert_code(&lab.pgmig(&["snapshot"]).await, 0, "snapshot");
    let st = lab.pgmig(&["status"]).await;
    assert_code(&st, 0, "status after snapshot");
    let text = out(&st);
    assert!(text.contains("step: snapshot taken"), "{text}");
    assert!(text.contains("replica: PAUSED at"), "{text}");
    assert!(
        text.contains("the replica is PAUSED at") && text.contains("pgmig resume-replica"),
        "{text}"
    );
    let report = json(&lab.pgmig(&["--json", "status"]).await);
    let p = report["pause_lsn"].as_str().unwrap().to_owned();
    assert_eq!(
        p,
        lab.target_sql("SELECT pause_lsn::text FROM pgmig.migration")
            .await
    );
    assert_eq!(report["replica"]["paused"], true);
    assert_eq!(report["replica"]["at_pause_lsn"], true);

    // The load: progress per table.
    assert_code(&lab.pgmig(&["schema", "--no-owner"]).await, 0, "schema");
    assert_code(&lab.pgmig(&["load", "--jobs", "2"]).await, 0, "load");
    let report = json(&lab.pgmig(&["--json", "status"]).await);
    assert_eq!(report["step"], "loaded", "{report}");
    let load = &report["load"];
    assert_eq!(load["finished"], true, "{load}");
    assert_eq!(load["pause_lsn"].as_str().unwrap(), p);
    assert_eq!(load["tasks"], load["tasks_done"], "{load}");
    assert_eq!(load["chunks"], load["chunks_done"], "{load}");
    assert_eq!(load["rows"], 500 + 300 + 100, "{load}");
    let tables: Vec<(String, i64, bool)> = load["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["rows"].as_i64().unwrap(),
                t["finished"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tables,
        [
            ("\"Sales\".\"Order Items\"".to_owned(), 500, true),
            ("public.audit_log".to_owned(), 100, true),
            ("public.users".to_owned(), 300, true),
        ]
    );
    let text = out(&lab.pgmig(&["status"]).await);
    assert!(text.contains("load (at P = "), "{text}");
    assert!(text.contains("\"Sales\".\"Order Items\""), "{text}");

    // CDC: progress per slot once it runs; 50 changes after P.
    lab.source
        .execute(
            &lab.db,
            "INSERT INTO public.users SELECT g, 'c' || g || '@x' FROM generate_series(2001, 2050) g;",
        )
        .await
        .unwrap();
    assert_code(&lab.pgmig(&["cdc", "--until-caught-up"]).await, 0, "cdc");
    let report = json(&lab.pgmig(&["--json", "status"]).await);
    assert_eq!(report["step"], "cdc", "{report}");
    let cdc = report["cdc"].as_array().unwrap();
    assert_eq!(cdc.len(), 2, "{report}");
    let changes: i64 = cdc.iter().map(|c| c["changes"].as_i64().unwrap()).sum();
    assert_eq!(changes, 50, "{report}");
    for c in cdc {
        assert!(c["lag_bytes"].as_u64().is_some(), "{c}");
    }
    assert!(
        report["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["cdc_applied_end_lsn"].is_string()),
        "{report}"
    );

    // The replica unreachable: status says which, and still reports the rest.
    let gone = format!("host=127.0.0.1 port={} dbname=app", closed_port());
    let st = pgmig_replica(&lab, &["--json", "status"], &gone).await;
    assert_code(&st, 0, "status without the replica");
    let report = json(&st);
    assert_eq!(report["servers"][1]["reachable"], false);
    assert_eq!(report["servers"][0]["reachable"], true);
    assert_eq!(report["step"], "cdc");
    assert!(
        warnings(&report)
            .iter()
            .any(|w| w.starts_with("the replica is unreachable")),
        "{report}"
    );

    // ---- cleanup ----
    // A schema in the target that pgmig did not create.
    lab.target
        .execute(
            &lab.target_db,
            "CREATE SCHEMA keep_schema; CREATE TABLE keep_schema.t (id int);",
        )
        .await
        .unwrap();
    let before = source_state(&lab).await;
    assert!(
        before.starts_with(
            "slots=dms_slot_01:pglogical,dms_slot_02:pglogical,keep_pgl_trap:pglogical,keep_slot:pglogical \
             | nodes=pgmig_provider \
             | sets=ddl_sql,default,default_insert_only,dms_slot_01,dms_slot_02,idms_slot_01,idms_slot_02,keep_set \
             | members="
        ) && before.contains("idms_slot_0")
            && before.ends_with(",keep_set=users"),
        "the lab's starting point changed: {before}"
    );
    assert_eq!(target_schemas(&lab).await, "Sales,keep_schema,pgmig");

    // Dry run: every statement per server, the node kept with its reasons,
    // nothing changed.
    let dry = lab.pgmig(&["cleanup", "--dry-run"]).await;
    assert_code(&dry, 0, "cleanup --dry-run");
    let sql = out(&dry);
    for needle in [
        "-- on the source:",
        "SELECT pg_drop_replication_slot('dms_slot_01');",
        "SELECT pg_drop_replication_slot('dms_slot_02');",
        "SELECT pglogical.drop_replication_set(set_name := 'idms_slot_02', ifexists := true);",
        "-- on the target:",
        "DROP SCHEMA IF EXISTS pgmig CASCADE;",
        "-- kept: pglogical node pgmig_provider",
        "keep_set",
        "keep_pgl_trap",
    ] {
        assert!(sql.contains(needle), "dry run lacks {needle}:\n{sql}");
    }
    assert!(!sql.contains("SELECT pglogical.drop_node"), "{sql}");
    assert!(!sql.contains("'keep_slot'"), "{sql}");
    assert!(err(&dry).contains("pgmig resume-replica"), "{}", err(&dry));
    let dry_json = json(&lab.pgmig(&["--json", "cleanup", "--dry-run"]).await);
    assert_eq!(dry_json["dry_run"], true);
    assert_eq!(
        dry_json["statements"].as_array().unwrap().len(),
        7,
        "{dry_json}"
    );
    assert_eq!(source_state(&lab).await, before);
    assert_eq!(target_schemas(&lab).await, "Sales,keep_schema,pgmig");

    // A view outside pgmig over its state would go with CASCADE: refused.
    lab.target
        .execute(
            &lab.target_db,
            "CREATE VIEW keep_schema.v AS SELECT pause_lsn FROM pgmig.migration",
        )
        .await
        .unwrap();
    let blocked = lab.pgmig(&["cleanup", "--yes"]).await;
    assert_code(&blocked, 1, "cleanup with a dependent view");
    assert!(
        err(&blocked).contains("view keep_schema.v")
            && err(&blocked).contains("nothing was dropped"),
        "{}",
        err(&blocked)
    );
    assert_eq!(source_state(&lab).await, before);
    lab.target
        .execute(&lab.target_db, "DROP VIEW keep_schema.v")
        .await
        .unwrap();

    // Without a terminal and without --yes: refused, nothing changed.
    let refused = lab.pgmig(&["cleanup"]).await;
    assert_code(&refused, 2, "cleanup without --yes");
    assert!(err(&refused).contains("pass --yes"), "{}", err(&refused));
    assert_eq!(source_state(&lab).await, before);

    // The cleanup: pgmig's slots, sets and schema are gone; the unrelated
    // slot, set (with its table) and schema stay, and so does the node
    // they still need.
    let done = lab.pgmig(&["cleanup", "--yes"]).await;
    assert_code(&done, 0, "cleanup");
    let text = out(&done);
    assert!(
        text.contains("replication slot dms_slot_01: dropped"),
        "{text}"
    );
    assert!(
        text.contains("pglogical node pgmig_provider: kept"),
        "{text}"
    );
    assert!(text.contains("schema pgmig: dropped"), "{text}");
    assert!(text.contains("keep_slot"), "{text}");
    assert!(
        err(&done).contains("pgmig resume-replica"),
        "{}",
        err(&done)
    );
    assert_eq!(
        source_state(&lab).await,
        "slots=keep_pgl_trap:pglogical,keep_slot:pglogical | nodes=pgmig_provider \
         | sets=ddl_sql,default,default_insert_only,keep_set | members=keep_set=users"
    );
    assert_eq!(target_schemas(&lab).await, "Sales,keep_schema");

    // Once nothing else needs the node, cleanup drops it — and only it:
    // keep_slot (no pgl_ in its name) survives pglogical.drop_node.
    lab.source
        .execute(
            &lab.db,
            "SELECT pglogical.drop_replication_set('keep_set');
             SELECT pg_drop_replication_slot('keep_pgl_trap');",
        )
        .await
        .unwrap();
    let node = lab.pgmig(&["--json", "cleanup", "--yes"]).await;
    assert_code(&node, 0, "cleanup of the node");
    let report = json(&node);
    assert_eq!(report["dropped"], 1, "{report}");
    assert_eq!(
        source_state(&lab).await,
        "slots=keep_slot:pglogical | nodes= | sets= | members="
    );
    assert_eq!(target_schemas(&lab).await, "Sales,keep_schema");

    // A second cleanup finds nothing and says so.
    let again = lab.pgmig(&["cleanup", "--yes"]).await;
    assert_code(&again, 0, "cleanup again");
    assert!(
        out(&again).contains("nothing to clean up"),
        "{}",
        out(&again)
    );
    let again = json(&lab.pgmig(&["--json", "cleanup", "--yes"]).await);
    assert_eq!(again["dropped"], 0, "{again}");
    assert_eq!(again["statements"].as_array().unwrap().len(), 0);
    assert_eq!(
        source_state(&lab).await,
        "slots=keep_slot:pglogical | nodes= | sets= | members="
    );

    // And status is back to the start.
    let report = json(&lab.pgmig(&["--json", "status"]).await);
    assert_eq!(report["step"], "not_set_up", "{report}");
}
