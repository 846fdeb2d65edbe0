//! `pgmig load` through the real binary, after `setup`, `snapshot` and
//! `schema`: `--dry-run` prints every statement and changes nothing; a load
//! killed with SIGKILL mid-way and run again leaves the target equal to the
//! replica; `--json` prints one JSON line per event and the result last.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::{Lab3, WAIT, assert_ok, text};
use pgmig_testkit::skip_unless_available;

const DATA: &str = r#"
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Orders" (id bigint PRIMARY KEY, note text, amount numeric(12,2));
INSERT INTO "Shop"."Orders" SELECT g, repeat(md5(g::text), 3), g / 100.0 FROM generate_series(1, 300000) g;
CREATE INDEX orders_note_idx ON "Shop"."Orders" (note);
CREATE TABLE public.audit (ts timestamptz, msg text);
INSERT INTO public.audit SELECT now(), 'm' || g FROM generate_series(1, 50000) g;
"#;

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_then_killed_load_resumes_to_equal() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    assert_ok(
        &lab.pgmig(&["setup", "--yes", "--slots", "2"]).await,
        "setup",
    );
    assert_ok(&lab.pgmig(&["snapshot"]).await, "snapshot");
    assert_ok(&lab.pgmig(&["schema", "--no-owner"]).await, "schema");

    // --dry-run: the statements, nothing changed.
    let dry = lab
        .pgmig(&["--dry-run", "load", "--chunk-size", "4MB"])
        .await;
    assert_ok(&dry, "load --dry-run");
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.contains(
            r#"COPY (SELECT "id", "note", "amount" FROM ONLY "Shop"."Orders" WHERE ctid >= '(0,0)'::tid AND ctid < '("#
        ),
        "{printed}"
    );
    assert!(
        printed.contains(
            r#"COPY "Shop"."Orders" ("id", "note", "amount") FROM STDIN (FORMAT binary)"#
        )
    );
    assert!(
        printed.contains("CREATE INDEX orders_note_idx ON \"Shop\".\"Orders\""),
        "{printed}"
    );
    assert!(
        printed.contains("ADD CONSTRAINT \"Orders_pkey\" PRIMARY KEY USING INDEX"),
        "{printed}"
    );
    assert_eq!(
        lab.target_sql("SELECT (to_regclass('pgmig.load_task') IS NULL)::text")
            .await,
        "true",
        "dry run created no state"
    );

    // Kill -9 once a few chunks are committed.
    let mut child = lab
        .command(&["load", "--jobs", "2", "--chunk-size", "4MB"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgmig load");
    let deadline = Instant::now() + WAIT;
    loop {
        let exists = lab
            .target_sql("SELECT (to_regclass('pgmig.load_task') IS NOT NULL)::text")
            .await;
        let done = if exists == "true" {
            lab.target_sql("SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NOT NULL")
                .await
        } else {
            "0".into()
        };
        if done.parse::<i64>().unwrap() >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no chunk committed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.expect("SIGKILL");
    let left = lab
        .target_sql("SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NULL")
        .await;
    assert_ne!(left, "0", "killed before the end");

    // Run again with --json: events as JSON lines, the result last.
    let again = lab.pgmig(&["--json", "load", "--jobs", "2"]).await;
    assert_ok(&again, "resumed load");
    let stdout = String::from_utf8_lossy(&again.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(lines[0]["event"], "planned");
    assert_eq!(lines[0]["planned_now"], false);
    let result = lines.last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["rows"], 350_000);
    assert_eq!(result["missing_objects"], serde_json::json!([]));

    for table in [r#""Shop"."Orders""#, "public.audit"] {
        assert_eq!(
            Lab3::digest(&lab.replica, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table}"
        );
    }
    // A third run has nothing to do.
    let third = lab.pgmig(&["load"]).await;
    assert_ok(&third, "third load");
    assert!(
        String::from_utf8_lossy(&third.stdout).contains("already complete"),
        "{}",
        text(&third)
    );
}
