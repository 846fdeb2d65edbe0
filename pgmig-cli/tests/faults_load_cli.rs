//! `pgmig load` under faults, through the real binary (issue 9): the
//! network to the replica or the target cut in the middle of a COPY chunk
//! or stalled; the target restarted (fast and immediate shutdown); the
//! maintenance replica restarted while paused (replay moves past P); a lock
//! held on a target table by another session; the target out of disk
//! space; two loads and two snapshots started at once.
//!
//! Each fault ends with `pgmig load` failing cleanly (a clear message, a
//! non-zero exit, no hang) and, where the migration can go on, a rerun that
//! leaves the target equal to the replica row for row with every chunk
//! loaded exactly once.
//!
//! Chunks are made small (`--chunk-size`) so a fault lands in the middle of
//! the copy; where a test needs the load held at a known point it installs
//! a *gate* on the target: a statement trigger on the loaded table that
//! waits for an advisory lock the test holds.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod common;

use common::{Lab3, WAIT, assert_exit, assert_ok, text, wait_until};
use pgmig_testkit::{Proxy, StopMode, skip_unless_available};
use tokio::process::{Child, Command};

/// ~7 MB in `public.items` (about 28 chunks of 256 kB) and a one-chunk
/// table.
const DATA: &str = r#"
CREATE TABLE public.items (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0, note text);
INSERT INTO public.items SELECT g, 0, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
CREATE INDEX items_note_idx ON public.items (note);
CREATE TABLE public.small (id int PRIMARY KEY, s text);
INSERT INTO public.small SELECT g, 's' || g FROM generate_series(1, 1000) g;
"#;

const TABLES: [&str; 2] = ["public.items", "public.small"];

/// Chunks of `public.items`: about 28.
const CHUNK: &str = "256kB";

/// The advisory lock key of the gate.
const GATE: i64 = 4242;

/// A statement trigger on the target's `table` that waits for the test's
/// advisory lock [`GATE`] (held exclusively by the test to stop every chunk
/// of the table at its start), then sleeps `sleep` seconds.
fn gate_on_sql(table: &str, sleep: f64) -> String {
    format!(
        "CREATE FUNCTION public.test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_advisory_lock_shared({GATE}); PERFORM pg_advisory_unlock_shared({GATE}); \
         PERFORM pg_sleep({sleep}); RETURN NULL; END $$; \
         CREATE TRIGGER test_gate BEFORE INSERT ON {table} \
         FOR EACH STATEMENT EXECUTE FUNCTION public.test_gate()"
    )
}

/// [`gate_on_sql`] on `public.items`.
fn gate_sql(sleep: f64) -> String {
    gate_on_sql("public.items", sleep)
}

const DROP_GATE: &str = "DROP TRIGGER IF EXISTS test_gate ON public.items; \
     DROP TRIGGER IF EXISTS test_gate ON public.big; DROP FUNCTION IF EXISTS public.test_gate()";

/// Runs `cmd` to the end, failing the test if it takes longer than
/// [`WAIT`] (a hang).
async fn finish(mut cmd: Command, what: &str) -> Output {
    match tokio::time::timeout(WAIT, cmd.output()).await {
        Ok(out) => out.expect("run pgmig"),
        Err(_) => panic!("{what}: pgmig did not end within {WAIT:?} (hang)"),
    }
}

/// Waits for a spawned pgmig, failing the test on a hang.
async fn wait_child(child: Child, what: &str) -> Output {
    match tokio::time::timeout(WAIT, child.wait_with_output()).await {
        Ok(out) => out.expect("wait for pgmig"),
        Err(_) => panic!("{what}: pgmig did not end within {WAIT:?} (hang)"),
    }
}

/// `pgmig load` with the replica and the target reached through proxies.
fn load_via(lab: &Lab3, replica: &Proxy, target: &Proxy, chunk: &str, extra: &[&str]) -> Command {
    let mut args = vec!["load", "--jobs", "1", "--chunk-size", chunk];
    args.extend_from_slice(extra);
    lab.command_with(
        &args,
        &lab.source.conninfo(&lab.db),
        &replica.conninfo(&lab.db),
        &target.conninfo(&lab.target_db),
    )
}

/// Copy tasks done so far (0 before the load planned).
async fn done_copies(lab: &Lab3) -> i64 {
    let exists = lab
        .target_sql("SELECT (to_regclass('pgmig.load_task') IS NOT NULL)::text")
        .await;
    if exists != "true" {
        return 0;
    }
    lab.target_sql(
        "SELECT count(*)::text FROM pgmig.load_task WHERE kind = 'copy' AND done_at IS NOT NULL",
    )
    .await
    .parse()
    .unwrap()
}

/// Copy tasks planned.
async fn copy_tasks(lab: &Lab3) -> i64 {
    lab.target_sql("SELECT count(*)::text FROM pgmig.load_task WHERE kind = 'copy'")
        .await
        .parse()
        .unwrap()
}

/// Sessions on the target waiting for the gate.
async fn gate_waiters(lab: &Lab3) -> i64 {
    lab.target_sql(&format!(
        "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND objid = {GATE}"
    ))
    .await
    .parse()
    .unwrap()
}

/// The load is complete and exact: every table equal on the replica and
/// the target, every copy task done once, and the rows each table's tasks
/// recorded add up to the rows on the target (no chunk loaded twice).
async fn assert_loaded_once(lab: &Lab3) {
    assert_tables_loaded_once(lab, &TABLES).await;
}

/// [`assert_loaded_once`] for the given tables.
async fn assert_tables_loaded_once(lab: &Lab3, tables: &[&str]) {
    for &table in tables {
        lab.assert_replica_equals_target(table).await;
        let (schema, name) = table.split_once('.').unwrap();
        let recorded = lab
            .target_sql(&format!(
                "SELECT coalesce(sum(rows), -1)::text || '/' || count(*) FILTER (WHERE done_at IS NULL) \
                 FROM pgmig.load_task WHERE kind = 'copy' AND table_schema = '{schema}' \
                 AND table_name = '{name}'"
            ))
            .await;
        let rows = lab
            .target_sql(&format!("SELECT count(*)::text FROM {table}"))
            .await;
        assert_eq!(
            recorded,
            format!("{rows}/0"),
            "{table}: rows recorded by its chunks / chunks not done"
        );
    }
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM pgmig.load_task WHERE done_at IS NULL")
            .await,
        "0",
        "every task done"
    );
}

/// A lab with the data, `setup`, `snapshot` and `schema` done (the
/// snapshot once the replica replayed the slot's creation: a snapshot
/// paused before it is refused, rightly).
async fn lab_at_schema() -> Lab3 {
    lab_with_at_schema(DATA).await
}

/// [`lab_at_schema`] with other data.
async fn lab_with_at_schema(data: &str) -> Lab3 {
    let lab = Lab3::start(data).await;
    assert_ok(
        &lab.pgmig(&["setup", "--yes", "--slots", "1"]).await,
        "setup",
    );
    lab.wait_replayed().await;
    assert_ok(&lab.pgmig(&["snapshot"]).await, "snapshot");
    assert_ok(&lab.pgmig(&["schema", "--no-owner"]).await, "schema");
    lab
}

/// 1. The network cut between pgmig and the replica, then between pgmig
///    and the target, in the middle of a COPY chunk; then each connection
///    stalled (open but silent): every time the load fails with a message
///    naming the chunk and the server and exit 3, within the stall bound
///    (no hang); the last rerun completes with every chunk loaded once.
#[tokio::test(flavor = "multi_thread")]
async fn network_cut_and_stall_mid_chunk_then_rerun_finishes_equal() {
    skip_unless_available!(pglogical);
    let lab = lab_at_schema().await;
    // Each chunk takes at least 0.1 s on the target, so the faults below
    // land while chunks remain.
    lab.target
        .execute(&lab.target_db, &gate_sql(0.1))
        .await
        .unwrap();
    let replica = Proxy::start(&lab.replica).await.unwrap();
    let target = Proxy::start(&lab.target).await.unwrap();

    // Replica cut ~1.5 MB into the COPY traffic: mid-chunk (chunks are
    // 256 kB, the table ~7 MB).
    replica.cut_after_bytes(replica.bytes_forwarded() + 1_500_000);
    let out = finish(load_via(&lab, &replica, &target, CHUNK, &[]), "replica cut").await;
    let msg = assert_exit(&out, 3, "load with the replica connection cut");
    eprintln!("{msg}");
    assert_eq!(replica.cuts(), 1, "the cut happened\n{msg}");
    assert!(msg.contains("copy chunk"), "{msg}");
    assert!(msg.contains("public.items"), "{msg}");
    assert!(msg.contains("on the replica"), "{msg}");
    let after_replica_cut = done_copies(&lab).await;
    assert!(
        after_replica_cut > 0 && after_replica_cut < copy_tasks(&lab).await,
        "cut mid-load: {after_replica_cut} chunks done"
    );

    // Target cut ~1.5 MB further into its traffic.
    target.cut_after_bytes(target.bytes_forwarded() + 1_500_000);
    let out = finish(load_via(&lab, &replica, &target, CHUNK, &[]), "target cut").await;
    let msg = assert_exit(&out, 3, "load with the target connection cut");
    eprintln!("{msg}");
    assert_eq!(target.cuts(), 1, "the cut happened\n{msg}");
    assert!(msg.contains("on the target"), "{msg}");
    let after_target_cut = done_copies(&lab).await;
    assert!(
        after_target_cut > after_replica_cut && after_target_cut < copy_tasks(&lab).await,
        "{after_replica_cut} then {after_target_cut} chunks done"
    );

    // Stalls: the watchdog (5 s here) gives up instead of waiting forever.
    for (proxy, role) in [(&replica, "replica"), (&target, "target")] {
        let before = done_copies(&lab).await;
        // Starting a chunk's COPY may also wait --lock-timeout for the
        // table's lock: the bound there is 5 + 1 s.
        let mut cmd = load_via(&lab, &replica, &target, CHUNK, &["--lock-timeout", "1"]);
        cmd.env("PGMIG_LOAD_STALL_TIMEOUT", "5")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn pgmig load");
        wait_until("a chunk committed before the stall", || async {
            done_copies(&lab).await > before
        })
        .await;
        proxy.stall();
        let out = wait_child(child, "stalled load").await;
        proxy.resume();
        let msg = assert_exit(&out, 3, &format!("load with the {role} stalled"));
        eprintln!("{msg}");
        assert!(
            msg.contains(&format!("no answer from the {role} for 5 s"))
                || msg.contains(&format!("no answer from the {role} for 6 s")),
            "{msg}"
        );
        assert!(msg.contains("run `pgmig load` again"), "{msg}");
        assert!(
            done_copies(&lab).await < copy_tasks(&lab).await,
            "the {role} stalled mid-load"
        );
    }

    // Rerun directly: the chunks the faults rolled back are loaded now.
    lab.target.execute(&lab.target_db, DROP_GATE).await.unwrap();
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load after the network faults");
    assert_loaded_once(&lab).await;
}

/// 1b. The replica connection cut while the replica is still sending a
///     chunk: the gate holds the target, so pgmig stops reading and the
///     replica blocks writing (`ClientWrite`) in the middle of the chunk's
///     COPY; then the cut. The load fails naming the chunk's COPY on the
///     replica, commits nothing of it, and a rerun finishes equal.
#[tokio::test(flavor = "multi_thread")]
async fn replica_cut_in_the_middle_of_a_copy_stream_then_rerun_finishes_equal() {
    skip_unless_available!(pglogical);
    // One 64 MB chunk: more than every buffer between the replica and
    // pgmig holds, so the replica is still sending when the cut comes.
    let data = format!(
        "{DATA} CREATE TABLE public.big (id bigint PRIMARY KEY, note text); \
         INSERT INTO public.big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 400000) g;"
    );
    let lab = lab_with_at_schema(&data).await;
    lab.target
        .execute(&lab.target_db, &gate_on_sql("public.big", 0.0))
        .await
        .unwrap();
    let replica = Proxy::start(&lab.replica).await.unwrap();
    let target = Proxy::start(&lab.target).await.unwrap();
    let gate = lab.target.connect(&lab.target_db).await.unwrap();
    gate.execute("SELECT pg_advisory_lock($1)", &[&GATE])
        .await
        .unwrap();
    let mut cmd = load_via(&lab, &replica, &target, "1GB", &[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn pgmig load");
    wait_until("the replica blocked sending a chunk", || async {
        lab.replica
            .query_one_string(
                &lab.db,
                "SELECT count(*)::text FROM pg_stat_activity WHERE state = 'active' \
                 AND wait_event = 'ClientWrite' AND query LIKE 'COPY %TO STDOUT%'",
            )
            .await
            .unwrap()
            == "1"
    })
    .await;
    replica.cut();
    gate.execute("SELECT pg_advisory_unlock($1)", &[&GATE])
        .await
        .unwrap();
    let out = wait_child(child, "load with the replica cut mid-stream").await;
    let msg = assert_exit(&out, 3, "load with the replica cut mid-stream");
    eprintln!("{msg}");
    assert!(
        msg.contains("copy chunk 1 of 1 of public.big failed on the replica"),
        "{msg}"
    );
    assert_eq!(done_copies(&lab).await, 0, "nothing of the chunk committed");
    lab.target.execute(&lab.target_db, DROP_GATE).await.unwrap();
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load after the cut");
    assert_tables_loaded_once(&lab, &["public.items", "public.small", "public.big"]).await;
}

/// 2. The target stopped with a fast shutdown, then with an immediate one
///    (a crash: commits with `synchronous_commit = off` may be lost, each
///    with its done mark), during the load: the load fails with exit 3 and
///    a rerun once it is back finishes equal, every chunk once.
#[tokio::test(flavor = "multi_thread")]
async fn target_restarted_fast_and_immediate_then_rerun_finishes_equal() {
    skip_unless_available!(pglogical);
    let lab = lab_at_schema().await;
    lab.target
        .execute(&lab.target_db, &gate_sql(0.1))
        .await
        .unwrap();
    for mode in [StopMode::Fast, StopMode::Immediate] {
        let before = done_copies(&lab).await;
        let mut cmd = lab.command(&["load", "--jobs", "2", "--chunk-size", CHUNK]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn pgmig load");
        wait_until("chunks committed before the shutdown", || async {
            done_copies(&lab).await >= before + 2
        })
        .await;
        lab.target.stop(mode).await.unwrap();
        let out = wait_child(child, "load with the target down").await;
        lab.target.start().await.unwrap();
        let msg = assert_exit(&out, 3, &format!("load with the target stopped ({mode:?})"));
        eprintln!("{msg}");
        assert!(msg.contains("target"), "{msg}");
        assert!(
            done_copies(&lab).await < copy_tasks(&lab).await,
            "stopped mid-load ({mode:?})\n{msg}"
        );
    }
    lab.target.execute(&lab.target_db, DROP_GATE).await.unwrap();
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load after the target restarts");
    assert_loaded_once(&lab).await;
}

/// 4. The maintenance replica restarted while paused during the load: a
///    restarted standby resumes replay, and the source's writes move it past
///    P. The load stops with exit 1 (replica moved), a rerun refuses too and says
///    what to do, no chunk commits after the move, and every row on the
///    target is the row as of P (a torn copy would show the updated value).
#[tokio::test(flavor = "multi_thread")]
async fn replica_restarted_during_load_is_noticed_and_nothing_torn_is_committed() {
    skip_unless_available!(pglogical);
    let lab = lab_at_schema().await;
    lab.target
        .execute(&lab.target_db, &gate_sql(0.1))
        .await
        .unwrap();
    let p = lab
        .target_sql("SELECT pause_lsn::text FROM pgmig.migration")
        .await;
    let mut cmd = lab.command(&["load", "--jobs", "2", "--chunk-size", CHUNK]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn pgmig load");
    wait_until("chunks committed before the replica restart", || async {
        done_copies(&lab).await >= 2
    })
    .await;
    lab.replica.restart().await.unwrap();
    // Every row changes on the source; the restarted standby replays it.
    lab.source
        .execute(&lab.db, "UPDATE public.items SET v = 1")
        .await
        .unwrap();
    lab.wait_replayed().await;
    assert_ne!(
        lab.replica
            .query_one_string(&lab.db, "SELECT pg_last_wal_replay_lsn()::text")
            .await
            .unwrap(),
        p,
        "replay moved past P"
    );
    let out = wait_child(child, "load with the replica restarted").await;
    eprintln!("{}", text(&out));
    // The workers lost their replica connections; reconnecting, they find
    // replay resumed.
    let msg = assert_exit(&out, 1, "load with the replica restarted");
    assert!(
        msg.contains(&format!("no longer frozen at P = {p}")),
        "{msg}"
    );
    let done = done_copies(&lab).await;
    assert!(
        done < copy_tasks(&lab).await,
        "stopped mid-load\n{}",
        text(&out)
    );

    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    let msg = assert_exit(&out, 1, "load on a replica that moved past P");
    eprintln!("{msg}");
    assert!(
        msg.contains(&format!("no longer frozen at P = {p}")),
        "{msg}"
    );
    assert!(msg.contains("recovery_target_lsn"), "{msg}");
    assert!(msg.contains("pgmig cleanup"), "{msg}");
    assert_eq!(
        done_copies(&lab).await,
        done,
        "no chunk committed after the move"
    );
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM public.items WHERE v <> 0")
            .await,
        "0",
        "every row on the target is as of P"
    );
    let rows = lab
        .target_sql("SELECT count(*)::text FROM public.items")
        .await;
    let recorded = lab
        .target_sql(
            "SELECT coalesce(sum(rows), 0)::text FROM pgmig.load_task \
             WHERE kind = 'copy' AND table_name = 'items' AND done_at IS NOT NULL",
        )
        .await;
    assert_eq!(rows, recorded, "only committed chunks' rows, each once");
}

/// 5. Another session holds a lock on a target table: first `ROW
///    EXCLUSIVE` (an application's open write transaction), which blocks
///    the index build; then `ACCESS SHARE` (an open read transaction),
///    which blocks attaching the primary key. Each time the load waits
///    `--lock-timeout`, then fails naming the blocking session; once it is
///    gone, a rerun finishes equal.
#[tokio::test(flavor = "multi_thread")]
async fn lock_held_on_a_target_table_fails_naming_the_blocker_then_rerun_finishes() {
    skip_unless_available!(pglogical);
    let lab = lab_at_schema().await;
    for (lock, mode, blocked) in [
        (
            "LOCK TABLE public.items IN ROW EXCLUSIVE MODE",
            "RowExclusiveLock",
            "INDEX",
        ),
        (
            "SELECT count(*) FROM public.items",
            "AccessShareLock",
            r#"attach the constraints of "public"."items""#,
        ),
    ] {
        let blocker = lab.target.connect(&lab.target_db).await.unwrap();
        blocker
            .batch_execute(&format!("SET application_name = 'blocker'; BEGIN; {lock}"))
            .await
            .unwrap();
        let pid: i32 = blocker
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let out = finish(
            lab.command(&[
                "load",
                "--jobs",
                "2",
                "--chunk-size",
                CHUNK,
                "--lock-timeout",
                "2",
            ]),
            mode,
        )
        .await;
        let msg = assert_exit(&out, 3, &format!("load blocked by {mode}"));
        eprintln!("{msg}");
        assert!(msg.contains(blocked), "{msg}");
        assert!(
            msg.contains("waited 2 s (--lock-timeout) for a lock on public.items"),
            "{msg}"
        );
        assert!(msg.contains(&format!("pid {pid} holds {mode}")), "{msg}");
        assert!(msg.contains("application \"blocker\""), "{msg}");
        assert!(msg.contains("idle in transaction"), "{msg}");
        blocker.batch_execute("ROLLBACK").await.unwrap();
    }
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load once the locks are released");
    assert_loaded_once(&lab).await;
}

/// 6a. The target runs out of disk space mid-load (forced: a trigger
///     raises SQLSTATE 53100 from row 20 001 on): the load fails with exit
///     3 and a message that says so, naming the chunk; once space is "freed"
///     (the trigger dropped) a rerun finishes equal.
#[tokio::test(flavor = "multi_thread")]
async fn target_out_of_disk_forced_then_rerun_after_freeing_finishes() {
    skip_unless_available!(pglogical);
    let lab = lab_at_schema().await;
    lab.target
        .execute(
            &lab.target_db,
            "CREATE FUNCTION public.test_full() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device' \
             USING ERRCODE = 'disk_full'; END $$; \
             CREATE TRIGGER test_full BEFORE INSERT ON public.items FOR EACH ROW \
             WHEN (NEW.id > 20000) EXECUTE FUNCTION public.test_full()",
        )
        .await
        .unwrap();
    let out = finish(
        lab.command(&["load", "--jobs", "1", "--chunk-size", CHUNK]),
        "disk full",
    )
    .await;
    let msg = assert_exit(&out, 3, "load into a full target");
    eprintln!("{msg}");
    assert!(msg.contains("the target is out of disk space"), "{msg}");
    assert!(msg.contains("copy chunk"), "{msg}");
    assert!(msg.contains("of public.items"), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    let done = done_copies(&lab).await;
    assert!(done > 0 && done < copy_tasks(&lab).await, "{done} chunks");
    lab.target
        .execute(
            &lab.target_db,
            "DROP TRIGGER test_full ON public.items; DROP FUNCTION public.test_full()",
        )
        .await
        .unwrap();
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load after space was freed");
    assert_loaded_once(&lab).await;
}

/// A tmpfs mounted for a test, unmounted (lazily) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on a new directory, owned by the lab's
    /// server user; `Err` says why not (not root, mount refused).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        if !pgmig_testkit::running_as_root() {
            return Err("not running as root".into());
        }
        let dir = std::env::temp_dir().join(format!("pgmig-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let fs = Tmpfs { dir };
        if let Some(user) = pgmig_testkit::lab_user().map_err(|e| e.to_string())? {
            let out = std::process::Command::new("chown")
                .arg(format!("{}:{}", user.uid, user.gid))
                .arg(&fs.dir)
                .output()
                .map_err(|e| format!("running chown: {e}"))?;
            if !out.status.success() {
                return Err("chown of the tmpfs failed".into());
            }
        }
        Ok(fs)
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Grows (or shrinks) the filesystem.
    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// 6b. The target really runs out of disk: `public.items` lives in a
///     tablespace on a 3 MB tmpfs. The load fails with exit 3 and "out of
///     disk space" naming the chunk; once the filesystem is grown a rerun
///     finishes equal. Needs root and a `mount` the machine allows;
///     elsewhere it says why it skips, and 6a covers the behaviour.
#[tokio::test(flavor = "multi_thread")]
async fn target_out_of_disk_on_a_small_tablespace_then_rerun_after_growing_finishes() {
    skip_unless_available!(pglogical);
    // Declared first: dropped (unmounted) after the lab's servers stopped.
    let fs = match Tmpfs::mount("3m") {
        Ok(fs) => fs,
        // Mounting needs CAP_SYS_ADMIN, which a container may not grant even
        // to root (CI included): the forced-error variant (6a) covers the
        // behaviour there, so this one says loudly that it did not run.
        Err(why) => {
            eprintln!(
                "SKIPPED target_out_of_disk_on_a_small_tablespace: cannot mount a small tmpfs here \
                 ({why}); the forced-error variant covers the behaviour"
            );
            return;
        }
    };
    let lab = lab_at_schema().await;
    lab.target
        .execute(
            "postgres",
            &format!("CREATE TABLESPACE small LOCATION '{}'", fs.path().display()),
        )
        .await
        .unwrap();
    lab.target
        .execute(
            &lab.target_db,
            "ALTER TABLE public.items SET TABLESPACE small",
        )
        .await
        .unwrap();
    let out = finish(
        lab.command(&["load", "--jobs", "1", "--chunk-size", CHUNK]),
        "disk full",
    )
    .await;
    let msg = assert_exit(&out, 3, "load into a full tablespace");
    eprintln!("{msg}");
    assert!(msg.contains("the target is out of disk space"), "{msg}");
    assert!(msg.contains("of public.items"), "{msg}");
    let done = done_copies(&lab).await;
    assert!(done < copy_tasks(&lab).await, "{done} chunks");
    fs.resize("64m");
    let out = finish(lab.command(&["load", "--jobs", "2"]), "rerun").await;
    assert_ok(&out, "load after the filesystem grew");
    assert_loaded_once(&lab).await;
    drop(lab);
}

/// 7. Two `pgmig snapshot` at once: one proceeds, the other refuses with
///    exit 1 (or, if they did not overlap, confirms the same P); one P is
///    recorded and the replica stays paused at it. Then two `pgmig load`
///    at once: both work on the same load (each commits chunks) and every
///    row is on the target exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn two_snapshots_and_two_loads_at_once() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    assert_ok(
        &lab.pgmig(&["setup", "--yes", "--slots", "1"]).await,
        "setup",
    );
    // The snapshot needs the replica past the slot's creation.
    lab.wait_replayed().await;
    let spawn = |args: &[&str]| {
        let mut cmd = lab.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn pgmig")
    };
    let (a, b) = (spawn(&["snapshot"]), spawn(&["snapshot"]));
    let (a, b) = tokio::join!(wait_child(a, "snapshot a"), wait_child(b, "snapshot b"));
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)),
        "one snapshot proceeds\n{}\n{}",
        text(&a),
        text(&b)
    );
    for o in [&a, &b] {
        match o.status.code() {
            Some(0) => {}
            Some(1) => assert!(
                text(o).contains("another `pgmig snapshot` is running on this migration"),
                "{}",
                text(o)
            ),
            _ => panic!("unexpected exit\n{}", text(o)),
        }
    }
    let p = lab
        .target_sql("SELECT pause_lsn::text FROM pgmig.migration")
        .await;
    assert_eq!(
        lab.replica
            .query_one_string(
                &lab.db,
                "SELECT pg_last_wal_replay_lsn()::text || ' ' || pg_get_wal_replay_pause_state()"
            )
            .await
            .unwrap(),
        format!("{p} paused"),
        "the replica stays paused at the one recorded P"
    );
    for o in [&a, &b] {
        if o.status.code() == Some(0) {
            assert!(text(o).contains(&format!("P = {p}")), "{}", text(o));
        }
    }
    assert_ok(&lab.pgmig(&["schema", "--no-owner"]).await, "schema");

    // Two loads; the gate holds every chunk of items until both loaders
    // have two chunks in flight each.
    lab.target
        .execute(&lab.target_db, &gate_sql(0.0))
        .await
        .unwrap();
    let gate = lab.target.connect(&lab.target_db).await.unwrap();
    gate.execute("SELECT pg_advisory_lock($1)", &[&GATE])
        .await
        .unwrap();
    let args = ["load", "--jobs", "2", "--chunk-size", CHUNK];
    let (a, b) = (spawn(&args), spawn(&args));
    wait_until("four chunks in flight at the gate", || async {
        gate_waiters(&lab).await >= 4
    })
    .await;
    gate.execute("SELECT pg_advisory_unlock($1)", &[&GATE])
        .await
        .unwrap();
    let (a, b) = tokio::join!(wait_child(a, "load a"), wait_child(b, "load b"));
    assert_ok(&a, "load a");
    assert_ok(&b, "load b");
    assert_eq!(
        lab.target_sql(
            "SELECT count(DISTINCT split_part(worker, '/', 1))::text FROM pgmig.load_task \
             WHERE kind = 'copy'"
        )
        .await,
        "2",
        "both loaders committed chunks"
    );
    lab.target.execute(&lab.target_db, DROP_GATE).await.unwrap();
    assert_loaded_once(&lab).await;
}
