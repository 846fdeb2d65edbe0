//! Faults during `pgmig cdc` and `pgmig setup`, through the real binary on
//! real servers (issue 9, items 1, 2, 3, 5 and 7 as they apply to CDC):
//!
//! - the network to the target cut in the middle of applying a batch, the
//!   network to the source cut in the middle of reading one, and both
//!   stalled (bytes stop, sockets stay open) — bounded by `--stall-timeout`;
//! - slow but healthy work on both servers (a slot read built whole before
//!   its first row, an apply the target works on) outlasting
//!   `--stall-timeout`, which is waited for, not taken for a stall;
//! - the target restarted with a fast shutdown under a following `cdc`, the
//!   source restarted (fast, then immediate) under `cdc --until-caught-up`;
//! - a target table locked by another session: `cdc` waits, gives up after
//!   `--lock-timeout` naming the session, and finishes once it is gone;
//! - three `pgmig setup --yes` at once, and two `pgmig cdc` at once.
//!
//! Every scenario ends with source and target equal row for row. A source
//! transaction applied twice would show: each one inserts a row into a
//! table without a primary key (`public.ledger`), so a duplicate apply
//! leaves an extra row there.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Lab3, WAIT, assert_exit, assert_ok, text, wait_until};
use pgmig_testkit::{Proxy, StopMode, skip_unless_available};
use tokio::process::Child;

const DATA: &str = r#"
CREATE TABLE public.counters (id int PRIMARY KEY, n bigint NOT NULL, pad text);
INSERT INTO public.counters SELECT g, 0, repeat('x', 60) FROM generate_series(1, 5000) g;
CREATE TABLE public.ledger (k int, note text);
INSERT INTO public.ledger SELECT g, 'before' FROM generate_series(1, 100) g;
"#;

const TABLES: &[&str] = &["public.counters", "public.ledger"];

/// Source transactions `from..to`, each adding 1 to `n` of the first `rows`
/// counters and inserting one ledger row.
async fn bump(lab: &Lab3, from: i32, to: i32, rows: i32) {
    let client = lab.source.connect(&lab.db).await.unwrap();
    for i in from..to {
        client
            .batch_execute(&format!(
                "BEGIN; UPDATE public.counters SET n = n + 1 WHERE id <= {rows}; \
                 INSERT INTO public.ledger VALUES ({i}, 'bump'); COMMIT"
            ))
            .await
            .unwrap();
    }
}

/// Asserts every table is equal on source and target, and that the ledger
/// (no primary key) holds no transaction twice.
async fn assert_equal(lab: &Lab3, what: &str) {
    for table in TABLES {
        assert_eq!(
            Lab3::digest(&lab.source, &lab.db, table).await,
            Lab3::digest(&lab.target, &lab.target_db, table).await,
            "{table}: source and target differ {what}"
        );
    }
    assert_eq!(
        lab.target_sql("SELECT count(*) - count(DISTINCT (k, note)) FROM public.ledger")
            .await,
        "0",
        "a source transaction was applied twice {what}"
    );
}

/// The `result` document of `pgmig --json cdc`.
fn result(o: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn reconnects(o: &Output) -> u64 {
    result(o)["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reconnects"].as_u64().unwrap())
        .sum()
}

/// Spawns a command with both outputs captured.
fn spawn(mut c: tokio::process::Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgmig")
}

/// Waits for a child; one that does not end in time is killed and the test
/// fails with what it printed.
async fn finish(mut child: Child, what: &str) -> Output {
    use tokio::io::AsyncReadExt;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        buf
    });
    let status = match tokio::time::timeout(WAIT, child.wait()).await {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            child.kill().await.unwrap();
            None
        }
    };
    let output = Output {
        status: match status {
            Some(s) => s,
            None => child.wait().await.unwrap(),
        },
        stdout: stdout.await.unwrap(),
        stderr: stderr.await.unwrap(),
    };
    assert!(
        status.is_some(),
        "{what}: pgmig did not end in time (hung)\n{}",
        text(&output)
    );
    output
}

/// SIGTERM to a child we started.
fn terminate(child: &Child) {
    let pid = child.id().expect("still running");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
}

/// Transactions applied so far (0 before cdc first ran).
async fn applied(lab: &Lab3) -> i64 {
    if lab
        .target_sql("SELECT (to_regclass('pgmig.cdc_progress') IS NULL)::text")
        .await
        == "true"
    {
        return 0;
    }
    lab.applied().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cuts_and_stalls_during_cdc() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    lab.setup_to_load("1").await;
    let (sp, tp) = (
        Proxy::start(&lab.source).await.unwrap(),
        Proxy::start(&lab.target).await.unwrap(),
    );
    let replica = lab.replica.conninfo(&lab.db);
    let cdc = |args: &[&str]| {
        lab.command_with(
            args,
            &sp.conninfo(&lab.db),
            &replica,
            &tp.conninfo(&lab.target_db),
        )
    };
    // One batch per run: the whole backlog in one target transaction.
    let args = ["--json", "cdc", "--until-caught-up", "--batch", "1000000"];

    // The target's network cut in the middle of applying the batch: three
    // transactions of 5,000 updates each are well over 300 kB of statements.
    bump(&lab, 1, 4, 5000).await;
    tp.cut_after_bytes(tp.bytes_forwarded() + 300_000);
    let out = cdc(&args).output().await.unwrap();
    assert_ok(&out, "cdc through a target connection cut mid-batch");
    assert_eq!(tp.cuts(), 1, "{}", text(&out));
    assert!(reconnects(&out) >= 1, "{}", text(&out));
    assert_equal(&lab, "after the target's network was cut mid-batch").await;

    // The source's network cut in the middle of reading the batch (its
    // 15,000 changes are megabytes of JSON).
    bump(&lab, 4, 7, 5000).await;
    sp.cut_after_bytes(sp.bytes_forwarded() + 1_000_000);
    let out = cdc(&args).output().await.unwrap();
    assert_ok(&out, "cdc through a source connection cut mid-read");
    assert_eq!(sp.cuts(), 1, "{}", text(&out));
    assert!(reconnects(&out) >= 1, "{}", text(&out));
    assert_equal(&lab, "after the source's network was cut mid-read").await;

    // Stalls: bytes stop but the sockets stay open, which no TCP timeout
    // notices on a healthy link. The applier gives a connection up after
    // --stall-timeout (+ --lock-timeout) without an answer, and reconnects
    // once the network flows again; its abandoned server sessions (which
    // still hold the slot's lock) are ended.
    for (n, (proxy, server)) in [(&tp, "target"), (&sp, "source")].into_iter().enumerate() {
        let first = 100 + 10 * n as i32;
        bump(&lab, first, first + 3, 5000).await;
        let start = proxy.bytes_forwarded();
        let child = spawn(cdc(&[
            "cdc",
            "--until-caught-up",
            "--batch",
            "1000000",
            "--stall-timeout",
            "3",
            "--lock-timeout",
            "2",
        ]));
        wait_until("the batch flows", move || async move {
            proxy.bytes_forwarded() > start + 200_000
        })
        .await;
        proxy.stall();
        let accepted = proxy.accepted_connections();
        // The watchdog fires, its second connection (to look at the
        // session) gets no answer either, and the applier tries a new one.
        wait_until("cdc gives the stalled connection up", move || async move {
            proxy.accepted_connections() > accepted + 1
        })
        .await;
        proxy.resume();
        let out = finish(child, "cdc after a stall").await;
        assert_ok(&out, &format!("cdc through a stalled {server} connection"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("no answer from the {server}"))
                && stderr.contains("reconnecting"),
            "{}",
            text(&out)
        );
        assert_equal(&lab, &format!("after a stalled {server}")).await;
    }

    // A stall that never ends, before cdc starts and while it follows: it
    // gives up with a clear error instead of hanging — at once when its
    // start gets no answer, after --reconnect-timeout once it was applying.
    let bounded = [
        "-vv",
        "cdc",
        "--poll-ms",
        "50",
        "--stall-timeout",
        "2",
        "--lock-timeout",
        "1",
        "--reconnect-timeout",
        "5",
    ];
    tp.stall();
    let out = finish(spawn(cdc(&bounded)), "cdc starting under a stall").await;
    let said = assert_exit(&out, 3, "cdc starting under a stall");
    assert!(
        said.contains("no answer from the source or the target"),
        "{said}"
    );
    tp.resume();
    let child = spawn(cdc(&bounded));
    let before = applied(&lab).await;
    bump(&lab, 200, 201, 10).await;
    let l = &lab;
    wait_until(
        "cdc follows",
        move || async move { applied(l).await > before },
    )
    .await;
    tp.stall();
    let out = finish(child, "cdc following under an endless stall").await;
    let said = assert_exit(&out, 3, "cdc following under an endless stall");
    assert!(
        said.contains("no answer from the target") && said.contains("reconnecting"),
        "{said}"
    );
    tp.resume();
    let out = cdc(&args).output().await.unwrap();
    assert_ok(&out, "cdc once the network is back");
    assert_equal(&lab, "at the end").await;
}

/// Slow but healthy server work is not a stall: with a short
/// `--stall-timeout` (2 s, no `--lock-timeout`; with 1 s on a loaded
/// 2-core machine the watchdog sometimes looked just as the target finished
/// and took its "waiting for the client" for a stall), a slot read that the
/// source builds whole before its first row (one transaction of 3 million
/// rows, measured here to keep the source silent for 2 s or more) and an
/// apply the target works on for 3 s (a trigger that fires also under
/// `session_replication_role = replica`) are waited for, not cut off and
/// restarted: cdc ends caught up, without a reconnect, source equal to
/// target and nothing applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_work_is_not_taken_for_a_stall() {
    use pgmig_pglogical::SlotName;
    use pgmig_pglogical::decoder::decoding_options;
    use pgmig_pglogical::replication_set::{insert_truncate_set_name, update_delete_set_name};

    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    lab.setup_to_load("1").await;
    let slot = lab
        .source_sql("SELECT slot_name::text FROM pg_replication_slots WHERE plugin = 'pglogical'")
        .await;

    // The target sleeps 3 s on one row.
    lab.target
        .execute(
            &lab.target_db,
            "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS \
             $$BEGIN PERFORM pg_sleep(3); RETURN NEW; END$$; \
             CREATE TRIGGER slow BEFORE INSERT ON public.ledger FOR EACH ROW \
             WHEN (NEW.note = 'slow') EXECUTE FUNCTION public.slow(); \
             ALTER TABLE public.ledger ENABLE ALWAYS TRIGGER slow",
        )
        .await
        .unwrap();
    // The source: one transaction whose rows are mostly in a table outside
    // the migration. The slot's read decodes them all (and sends none)
    // before the transaction's first row.
    lab.source
        .execute(
            &lab.db,
            "CREATE TABLE public.scratch (k int); \
             BEGIN; \
             INSERT INTO public.ledger VALUES (1, 'slow'); \
             INSERT INTO public.scratch SELECT g FROM generate_series(1, 3000000) g; \
             INSERT INTO public.ledger SELECT g, 'big' FROM generate_series(2, 20001) g; \
             COMMIT",
        )
        .await
        .unwrap();

    // How long the source works on the read before it can send a row: the
    // same read, counted on the server (it does not consume the slot).
    let name = SlotName::new(slot.clone()).unwrap();
    let sets = [
        update_delete_set_name(&name),
        insert_truncate_set_name(&name),
    ];
    let options = decoding_options(&[sets[0].as_str(), sets[1].as_str()]);
    let client = lab.source.connect(&lab.db).await.unwrap();
    let began = Instant::now();
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_logical_slot_peek_changes($1::name, NULL, 10000, \
             VARIADIC $2::text[])",
            &[&slot, &options],
        )
        .await
        .unwrap()
        .get(0);
    let silent = began.elapsed();
    drop(client);
    eprintln!("the slot read of {rows} rows keeps the source silent for {silent:?}");
    assert!(rows > 20_000, "{rows}");
    assert!(
        silent >= Duration::from_secs(2),
        "the slot read took only {silent:?}: too fast to prove anything"
    );

    let out = lab
        .pgmig(&[
            "-v",
            "--json",
            "cdc",
            "--until-caught-up",
            "--stall-timeout",
            "2",
            "--lock-timeout",
            "0",
        ])
        .await;
    assert_ok(&out, "cdc with slow but healthy servers");
    assert_eq!(reconnects(&out), 0, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for server in ["source", "target"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("the server is working on it") && l.contains(server)),
            "the watchdog did not look at the busy {server}:\n{}",
            text(&out)
        );
    }
    assert!(!stderr.contains("no answer from"), "{}", text(&out));
    assert_equal(&lab, "after slow but healthy server work").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_target_and_source_during_cdc() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    lab.setup_to_load("1").await;
    let l = &lab;

    // The target restarted with a fast shutdown under a following cdc.
    let child = spawn(lab.command(&["cdc", "--batch", "500", "--poll-ms", "50"]));
    bump(&lab, 1, 21, 200).await;
    wait_until("cdc applies", move || async move { applied(l).await >= 20 }).await;
    lab.target.stop(StopMode::Fast).await.unwrap();
    bump(&lab, 21, 41, 200).await;
    lab.target.start().await.unwrap();
    wait_until("cdc applies after the restart", move || async move {
        applied(l).await >= 40
    })
    .await;
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdc ended after the target's fast restart"
    );
    terminate(&child);
    let out = finish(child, "cdc stopped by SIGTERM").await;
    assert_ok(&out, "cdc stopped by SIGTERM after a target restart");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reconnecting"),
        "{}",
        text(&out)
    );
    assert_equal(&lab, "after the target's fast restart").await;

    // The source restarted under `cdc --until-caught-up`, fast then
    // immediate: the slot's position survives, nothing is lost or repeated.
    let mut next = 41;
    for mode in [StopMode::Fast, StopMode::Immediate] {
        bump(&lab, next, next + 20, 5000).await;
        next += 20;
        let before = applied(&lab).await;
        let child = spawn(lab.command(&["--json", "cdc", "--until-caught-up", "--batch", "2000"]));
        wait_until(
            "cdc applies",
            move || async move { applied(l).await > before },
        )
        .await;
        lab.source.stop(mode).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.source.start().await.unwrap();
        let out = finish(child, "cdc through a source restart").await;
        assert_ok(&out, &format!("cdc through a source restart ({mode:?})"));
        assert!(reconnects(&out) >= 1, "{}", text(&out));
        assert_equal(&lab, &format!("after the source's {mode:?} restart")).await;
    }
    assert_eq!(
        lab.target_sql("SELECT count(*) FROM public.ledger WHERE note = 'bump'")
            .await,
        (next - 1).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_target_table_makes_cdc_wait_then_name_the_holder() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    lab.setup_to_load("1").await;
    bump(&lab, 1, 4, 100).await;

    let (blocker, conn) = tokio_postgres::connect(
        &format!(
            "{} application_name=blocker",
            lab.target.conninfo(&lab.target_db)
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    blocker
        .batch_execute("BEGIN; LOCK TABLE public.counters IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let pid = lab
        .target_sql("SELECT pid::text FROM pg_stat_activity WHERE application_name = 'blocker'")
        .await;

    // cdc gives up after --lock-timeout and names who blocks.
    let out = finish(
        spawn(lab.command(&["cdc", "--until-caught-up", "--lock-timeout", "2"])),
        "cdc against a locked table",
    )
    .await;
    let said = assert_exit(&out, 3, "cdc against a locked table");
    for part in [
        "--lock-timeout",
        "counters",
        &format!("pid {pid} holds AccessExclusiveLock"),
        "\"blocker\"",
        "idle in transaction",
    ] {
        assert!(said.contains(part), "{part:?} missing:\n{said}");
    }
    assert_eq!(applied(&lab).await, 0, "{said}");
    assert_eq!(
        lab.target_sql("SELECT count(*) FROM public.ledger").await,
        "100"
    );

    // cdc waits while the lock is held, and finishes once it goes away.
    let child = spawn(lab.command(&["cdc", "--until-caught-up", "--lock-timeout", "600"]));
    let l = &lab;
    wait_until("cdc waits for the lock", move || async move {
        l.target_sql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'public.counters'::regclass",
        )
        .await
            != "0"
    })
    .await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let out = finish(child, "cdc once the lock is gone").await;
    assert_ok(&out, "cdc once the lock is gone");
    assert_equal(&lab, "after the lock went away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_setups_and_two_cdc_runs_at_once() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;

    // Three setups at once: they take turns, the later ones find the work
    // done; never two nodes, a set or slot made twice, or a half-made state.
    // To line them up, pglogical's node table is locked until all three
    // wait on it (each reads it to plan), then released: they go on from
    // the same point, each having seen no node.
    lab.source
        .execute(&lab.db, "CREATE EXTENSION IF NOT EXISTS pglogical")
        .await
        .unwrap();
    let blocker = lab.source.connect(&lab.db).await.unwrap();
    blocker
        .batch_execute("BEGIN; LOCK TABLE pglogical.node IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let setup = ["setup", "--yes", "--slots", "2"];
    let setups = [
        spawn(lab.command(&setup)),
        spawn(lab.command(&setup)),
        spawn(lab.command(&setup)),
    ];
    let l = &lab;
    wait_until(
        "the three setups wait on the node table",
        move || async move {
            l.source_sql(
                "SELECT count(*) FROM pg_locks WHERE NOT granted \
             AND relation = 'pglogical.node'::regclass",
            )
            .await
            .parse::<i64>()
            .unwrap()
                >= 3
        },
    )
    .await;
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let [a, b, c] = setups;
    let (a, b, c) = (
        finish(a, "setup").await,
        finish(b, "setup").await,
        finish(c, "setup").await,
    );
    for (o, which) in [(&a, "first"), (&b, "second"), (&c, "third")] {
        assert_ok(o, &format!("the {which} of three setups at once"));
        eprintln!("setup {which}:\n{}", text(o));
    }
    for (sql, want) in [
        ("SELECT count(*) FROM pglogical.node", "1"),
        (
            "SELECT count(*) FROM pglogical.replication_set \
             WHERE set_name NOT IN ('default', 'default_insert_only', 'ddl_sql')",
            "4",
        ),
        (
            "SELECT count(*) FROM pg_replication_slots WHERE plugin = 'pglogical'",
            "2",
        ),
        (
            "SELECT count(DISTINCT set_reloid) FROM pglogical.replication_set_table",
            "2",
        ),
    ] {
        assert_eq!(
            lab.source_sql(sql).await,
            want,
            "{sql}\n{}\n{}\n{}",
            text(&a),
            text(&b),
            text(&c)
        );
    }
    assert_ok(&lab.pgmig(&["snapshot"]).await, "snapshot");
    assert_ok(&lab.pgmig(&["schema", "--no-owner"]).await, "schema");
    assert_ok(&lab.pgmig(&["load", "--jobs", "2"]).await, "load");

    // Two following cdc runs started at once: one applies every slot, the
    // other is refused (they never split the slots, never share one).
    bump(&lab, 1, 11, 500).await;
    let mut a = spawn(lab.command(&["cdc", "--poll-ms", "50"]));
    let mut b = spawn(lab.command(&["cdc", "--poll-ms", "50"]));
    let deadline = Instant::now() + WAIT;
    let (loser, mut winner) = loop {
        if a.try_wait().unwrap().is_some() {
            break (a, b);
        }
        if b.try_wait().unwrap().is_some() {
            break (b, a);
        }
        assert!(Instant::now() < deadline, "neither cdc was refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = finish(loser, "the refused cdc").await;
    let said = assert_exit(&lost, 1, "the second of two cdc runs");
    assert!(
        said.contains("another pgmig applier is applying slot")
            || said.contains("another `pgmig cdc` (or cutover) is starting"),
        "{said}"
    );
    bump(&lab, 11, 21, 500).await;
    let l = &lab;
    wait_until("the remaining cdc applies everything", move || async move {
        l.target_sql("SELECT count(*) FROM public.ledger").await == "120"
    })
    .await;
    assert!(
        winner.try_wait().unwrap().is_none(),
        "the remaining cdc ended"
    );

    // A third run while it follows: refused at once.
    let third = lab.pgmig(&["cdc", "--until-caught-up"]).await;
    let said = assert_exit(&third, 1, "cdc while another one follows");
    assert!(
        said.contains("another pgmig applier is applying slot"),
        "{said}"
    );

    terminate(&winner);
    let out = finish(winner, "cdc stopped by SIGTERM").await;
    assert_ok(&out, "cdc stopped by SIGTERM");
    assert_ok(
        &lab.pgmig(&["cdc", "--until-caught-up"]).await,
        "cdc --until-caught-up",
    );
    assert_equal(&lab, "after two cdc runs at once").await;
}
