//! Least privilege, through the real binary on real servers (issue 9,
//! item 13; `docs/privileges.md`).
//!
//! One role per server with only the grants `docs/privileges.md` lists —
//! no superuser anywhere — runs the whole migration: check, setup,
//! snapshot, schema, load, verify, resume-replica, cdc, cutover, status,
//! cleanup; source and target end equal. Before each step, the role
//! lacking just one privilege that step needs is refused: `pgmig check`
//! names the privilege with its `GRANT`, the command exits non-zero
//! naming the server, the privilege and the statement, and nothing
//! changed (no node or slot on the source, no pause of the replica, no
//! object or row on the target).
//!
//! Grants on the source replicate to the replica, which stops seeing them
//! once paused at P: the replica's "lacking" roles are separate roles
//! made before the snapshot; the source's and target's lacking role is the
//! same role with one grant revoked for the moment.

mod common;

use std::process::Output;

use common::{Lab3, assert_exit, assert_ok, text};
use pgmig_testkit::skip_unless_available;

const DATA: &str = r#"
CREATE EXTENSION pglogical;
CREATE TABLE public.accounts (id bigserial PRIMARY KEY, name text NOT NULL, balance numeric(12,2));
INSERT INTO public.accounts (name, balance) SELECT 'n' || g, g * 1.5 FROM generate_series(1, 3000) g;
CREATE TABLE public.events (at timestamptz NOT NULL, what text);
INSERT INTO public.events SELECT now() - g * interval '1 minute', 'e' || g FROM generate_series(1, 500) g;
CREATE TABLE public.secrets (id int PRIMARY KEY, owner text NOT NULL, body text);
INSERT INTO public.secrets SELECT g, CASE WHEN g % 2 = 0 THEN 'alice' ELSE 'bob' END, md5(g::text)
  FROM generate_series(1, 400) g;
ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_alice ON public.secrets USING (owner = 'alice');

-- The source role: REPLICATION, pglogical's schema, read everything, bypass RLS.
CREATE ROLE mig_src LOGIN REPLICATION BYPASSRLS;
GRANT USAGE ON SCHEMA pglogical TO mig_src;
GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO mig_src;
GRANT pg_read_all_data TO mig_src;

-- The replica role (made on the primary: the standby is read-only). The
-- replay functions are granted to a group role here; `pgmig schema` leaves
-- that grant (an ACL on pg_catalog objects) out of the target, where the
-- role does not exist.
CREATE ROLE pgmig_replay NOLOGIN;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_wal_replay_pause(), pg_catalog.pg_wal_replay_resume() TO pgmig_replay;
CREATE ROLE mig_rep LOGIN BYPASSRLS IN ROLE pgmig_replay;
GRANT pg_read_all_data TO mig_rep;
-- The replica role lacking one privilege each.
CREATE ROLE rep_noexec LOGIN BYPASSRLS;
GRANT pg_read_all_data TO rep_noexec;
CREATE ROLE rep_noread LOGIN BYPASSRLS IN ROLE pgmig_replay;
CREATE ROLE rep_nobypass LOGIN IN ROLE pgmig_replay;
GRANT pg_read_all_data TO rep_nobypass;
"#;

/// The target role: owns the target database (so it may create in it and
/// in its `public` schema) and may set `session_replication_role`.
fn target_roles(db: &str) -> String {
    format!(
        "CREATE ROLE mig_tgt LOGIN;
         ALTER DATABASE \"{db}\" OWNER TO mig_tgt;
         GRANT SET ON PARAMETER session_replication_role TO mig_tgt;"
    )
}

/// `conninfo` with `user=postgres` replaced by `role`.
fn as_role(conninfo: &str, role: &str) -> String {
    assert!(conninfo.contains("user=postgres"), "{conninfo}");
    conninfo.replace("user=postgres", &format!("user={role}"))
}

/// The three connection strings, each as the given role.
struct Roles<'a> {
    source: &'a str,
    replica: &'a str,
    target: &'a str,
}

const LEAST: Roles<'static> = Roles {
    source: "mig_src",
    replica: "mig_rep",
    target: "mig_tgt",
};

async fn pgmig_as(lab: &Lab3, roles: &Roles<'_>, args: &[&str]) -> Output {
    lab.command_with(
        args,
        &as_role(&lab.source.conninfo(&lab.db), roles.source),
        &as_role(&lab.replica.conninfo(&lab.db), roles.replica),
        &as_role(&lab.target.conninfo(&lab.target_db), roles.target),
    )
    .output()
    .await
    .expect("run pgmig")
}

/// Asserts a refusal with `code` whose output contains every one of `names`.
fn assert_refused(o: &Output, code: i32, what: &str, names: &[&str]) {
    let out = assert_exit(o, code, what);
    for name in names {
        assert!(out.contains(name), "{what}: {name:?} missing from\n{out}");
    }
}

/// `pgmig check` as `roles`: exit 1, and the blocker names each of `names`.
async fn check_refuses(lab: &Lab3, roles: &Roles<'_>, what: &str, names: &[&str]) {
    let o = pgmig_as(lab, roles, &["check", "--slots", "1"]).await;
    assert_refused(&o, 1, &format!("check {what}"), names);
}

/// How many pglogical nodes and replication slots the source holds.
async fn source_objects(lab: &Lab3) -> String {
    lab.source_sql(
        "SELECT (SELECT count(*) FROM pglogical.node) || ' nodes, ' || \
                (SELECT count(*) FROM pg_replication_slots) || ' slots'",
    )
    .await
}

/// User tables on the target outside pgmig's schema.
async fn target_tables(lab: &Lab3) -> String {
    lab.target_sql(
        "SELECT count(*)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgmig')",
    )
    .await
}

async fn replica_paused(lab: &Lab3) -> String {
    lab.replica
        .query_one_string(&lab.db, "SELECT pg_is_wal_replay_paused()::text")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privileged_roles_migrate_and_each_missing_privilege_is_named() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    lab.target
        .execute(&lab.target_db, &target_roles(&lab.target_db))
        .await
        .unwrap();

    // 1. check: the least-privileged roles pass every privilege check.
    let o = pgmig_as(&lab, &LEAST, &["check", "--slots", "1"]).await;
    let out = text(&o);
    assert!(
        !out.lines()
            .any(|l| l.contains("privileges") && l.contains("BLOCKER")),
        "{out}"
    );
    for id in [
        "source.privileges",
        "replica.privileges",
        "target.privileges",
    ] {
        assert!(out.contains(id), "{id}\n{out}");
    }
    assert!(
        out.contains("role mig_src is not a superuser, with every grant pgmig needs"),
        "{out}"
    );
    assert!(
        out.contains("role mig_rep is not a superuser, it may pause and resume replay"),
        "{out}"
    );

    // ... and each role lacking one privilege is a blocker naming it.
    let replica_lacking = |replica| Roles { replica, ..LEAST };
    check_refuses(
        &lab,
        &replica_lacking("rep_noexec"),
        "without EXECUTE on the replay functions",
        &[
            "replica.privileges",
            "EXECUTE on pg_catalog.pg_wal_replay_pause()",
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_wal_replay_pause(), pg_catalog.pg_wal_replay_resume() TO \"rep_noexec\";",
        ],
    )
    .await;
    check_refuses(
        &lab,
        &replica_lacking("rep_noread"),
        "without SELECT on the replica",
        &[
            "SELECT on 3 table(s)",
            "GRANT pg_read_all_data TO \"rep_noread\";",
        ],
    )
    .await;
    check_refuses(
        &lab,
        &replica_lacking("rep_nobypass"),
        "without BYPASSRLS on the replica",
        &[
            "BYPASSRLS: row-level security applies to it on 1 table(s): \"public\".\"secrets\"",
            "ALTER ROLE \"rep_nobypass\" WITH BYPASSRLS;",
        ],
    )
    .await;

    // 2. setup: without REPLICATION, `pgmig run` stops at its check, and
    //    nothing changed on any server.
    lab.source
        .execute(&lab.db, "ALTER ROLE mig_src NOREPLICATION")
        .await
        .unwrap();
    let o = pgmig_as(&lab, &LEAST, &["run", "--yes", "--slots", "1"]).await;
    assert_refused(
        &o,
        1,
        "run without REPLICATION",
        &[
            "the REPLICATION privilege",
            "ALTER ROLE \"mig_src\" WITH REPLICATION;",
            "GRANT rds_replication TO \"mig_src\";",
        ],
    );
    assert_eq!(source_objects(&lab).await, "0 nodes, 0 slots");
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM pg_namespace WHERE nspname = 'pgmig'")
            .await,
        "0"
    );
    assert_eq!(replica_paused(&lab).await, "false");
    //    `pgmig setup` on its own refuses before its first change too.
    let o = pgmig_as(&lab, &LEAST, &["setup", "--yes", "--slots", "1"]).await;
    assert_refused(
        &o,
        1,
        "setup without REPLICATION",
        &[
            "the source role lacks what `pgmig setup` needs, so nothing was changed",
            "the REPLICATION privilege",
            "ALTER ROLE \"mig_src\" WITH REPLICATION;",
        ],
    );
    assert_eq!(source_objects(&lab).await, "0 nodes, 0 slots");
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM pg_namespace WHERE nspname = 'pgmig'")
            .await,
        "0"
    );
    lab.source
        .execute(&lab.db, "ALTER ROLE mig_src REPLICATION")
        .await
        .unwrap();

    //    Without USAGE on schema pglogical (and without pg_read_all_data,
    //    which implies it): setup is refused before any change.
    lab.source
        .execute(
            &lab.db,
            "REVOKE pg_read_all_data FROM mig_src; REVOKE USAGE ON SCHEMA pglogical FROM mig_src;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO mig_src;",
        )
        .await
        .unwrap();
    check_refuses(
        &lab,
        &LEAST,
        "without USAGE on pglogical",
        &[
            "USAGE on schema pglogical",
            "GRANT USAGE ON SCHEMA pglogical TO \"mig_src\";",
        ],
    )
    .await;
    let o = pgmig_as(&lab, &LEAST, &["setup", "--yes", "--slots", "1"]).await;
    assert_refused(
        &o,
        3,
        "setup without USAGE on pglogical",
        &[
            "missing privilege on the source: USAGE on schema pglogical",
            "GRANT USAGE ON SCHEMA pglogical TO \"mig_src\";",
        ],
    );
    assert_eq!(source_objects(&lab).await, "0 nodes, 0 slots");

    //    Without SELECT on pglogical's tables: the same.
    lab.source
        .execute(
            &lab.db,
            "GRANT USAGE ON SCHEMA pglogical TO mig_src;
             REVOKE SELECT ON ALL TABLES IN SCHEMA pglogical FROM mig_src;",
        )
        .await
        .unwrap();
    check_refuses(
        &lab,
        &LEAST,
        "without SELECT on pglogical's tables",
        &[
            "SELECT on pglogical's tables",
            "GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO \"mig_src\";",
        ],
    )
    .await;
    let o = pgmig_as(&lab, &LEAST, &["setup", "--yes", "--slots", "1"]).await;
    assert_refused(
        &o,
        3,
        "setup without SELECT on pglogical's tables",
        &[
            "missing privilege on the source: SELECT on pglogical's tables",
            "GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO \"mig_src\";",
        ],
    );
    assert_eq!(source_objects(&lab).await, "0 nodes, 0 slots");
    lab.source
        .execute(
            &lab.db,
            "GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO mig_src;
             REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM mig_src;
             GRANT pg_read_all_data TO mig_src;",
        )
        .await
        .unwrap();

    //    With every grant: setup runs as the least-privileged source role.
    let o = pgmig_as(&lab, &LEAST, &["setup", "--yes", "--slots", "1"]).await;
    assert_ok(&o, "setup as mig_src");
    assert_eq!(source_objects(&lab).await, "1 nodes, 1 slots");
    lab.wait_replayed().await;

    // 3. snapshot: without EXECUTE on the replay functions, refused and the
    //    replica not paused, no P recorded.
    let o = pgmig_as(&lab, &replica_lacking("rep_noexec"), &["snapshot"]).await;
    assert_refused(
        &o,
        3,
        "snapshot without EXECUTE",
        &[
            "missing privilege on the replica: EXECUTE on pg_wal_replay_pause()",
            "run on the source primary",
            "TO \"rep_noexec\";",
        ],
    );
    assert_eq!(replica_paused(&lab).await, "false");
    assert_eq!(
        lab.target_sql("SELECT coalesce(pause_lsn::text, 'none') FROM pgmig.migration")
            .await,
        "none"
    );
    assert_ok(&pgmig_as(&lab, &LEAST, &["snapshot"]).await, "snapshot");
    assert_eq!(replica_paused(&lab).await, "true");

    // 4. schema: a target role that may not create in the database or its
    //    public schema, and a source role that may not read the tables
    //    (pg_dump locks them), are refused with the target unchanged.
    lab.target
        .execute(
            &lab.target_db,
            &format!("ALTER DATABASE \"{}\" OWNER TO postgres", lab.target_db),
        )
        .await
        .unwrap();
    check_refuses(
        &lab,
        &LEAST,
        "without CREATE on the target",
        &[
            "may not create schemas in database",
            &format!(
                "GRANT CREATE ON DATABASE \"{}\" TO \"mig_tgt\";",
                lab.target_db
            ),
            "GRANT CREATE ON SCHEMA \"public\" TO \"mig_tgt\";",
        ],
    )
    .await;
    let o = pgmig_as(&lab, &LEAST, &["schema", "--no-owner"]).await;
    assert_refused(
        &o,
        3,
        "schema without CREATE",
        &[
            "missing privilege on the target: CREATE on",
            "TO \"mig_tgt\";",
        ],
    );
    assert_eq!(target_tables(&lab).await, "0");
    lab.target
        .execute(
            &lab.target_db,
            &format!("ALTER DATABASE \"{}\" OWNER TO mig_tgt", lab.target_db),
        )
        .await
        .unwrap();

    lab.source
        .execute(&lab.db, "REVOKE pg_read_all_data FROM mig_src")
        .await
        .unwrap();
    let o = pgmig_as(&lab, &LEAST, &["schema", "--no-owner"]).await;
    assert_refused(
        &o,
        3,
        "schema without SELECT on the source",
        &[
            "missing privilege on the source: SELECT on",
            "GRANT pg_read_all_data TO \"mig_src\";",
        ],
    );
    assert_eq!(target_tables(&lab).await, "0");
    lab.source
        .execute(&lab.db, "GRANT pg_read_all_data TO mig_src")
        .await
        .unwrap();
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["schema", "--no-owner"]).await,
        "schema as mig_tgt",
    );

    // 5. load: a replica role that may not read, or that row-level
    //    security applies to, is refused — never a subset of the rows.
    let o = pgmig_as(
        &lab,
        &replica_lacking("rep_noread"),
        &["load", "--jobs", "1"],
    )
    .await;
    assert_refused(
        &o,
        3,
        "load without SELECT on the replica",
        &[
            "missing privilege on the replica: SELECT on",
            "GRANT pg_read_all_data TO \"rep_noread\";",
        ],
    );
    assert_eq!(
        lab.target_sql(
            "SELECT ((SELECT count(*) FROM public.accounts) + (SELECT count(*) FROM public.events) \
             + (SELECT count(*) FROM public.secrets))::text"
        )
        .await,
        "0"
    );
    let o = pgmig_as(
        &lab,
        &replica_lacking("rep_nobypass"),
        &["load", "--jobs", "1"],
    )
    .await;
    assert_refused(
        &o,
        3,
        "load without BYPASSRLS",
        &[
            "missing privilege on the replica: BYPASSRLS",
            "secrets",
            "ALTER ROLE \"rep_nobypass\" WITH BYPASSRLS;",
        ],
    );
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM public.secrets")
            .await,
        "0",
        "no subset of an RLS table may be copied"
    );
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["load", "--jobs", "2"]).await,
        "load as mig_rep",
    );
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["verify", "--mode", "checksums"]).await,
        "verify as mig_rep",
    );
    for table in ["public.accounts", "public.events", "public.secrets"] {
        lab.assert_replica_equals_target(table).await;
    }
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["resume-replica"]).await,
        "resume-replica as mig_rep",
    );

    // 6. cdc: without SET on session_replication_role the applier is
    //    refused before it applies anything.
    lab.source
        .execute(
            &lab.db,
            "INSERT INTO public.accounts (name, balance) SELECT 'late' || g, g FROM generate_series(1, 50) g;
             UPDATE public.accounts SET balance = balance + 1 WHERE id <= 100;
             DELETE FROM public.accounts WHERE id BETWEEN 200 AND 260;
             INSERT INTO public.events VALUES (now(), 'late');
             INSERT INTO public.secrets VALUES (1000, 'bob', 'new');",
        )
        .await
        .unwrap();
    lab.target
        .execute(
            &lab.target_db,
            "REVOKE SET ON PARAMETER session_replication_role FROM mig_tgt",
        )
        .await
        .unwrap();
    let o = pgmig_as(&lab, &LEAST, &["check", "--slots", "1"]).await;
    let out = text(&o);
    assert!(
        out.contains("role mig_tgt lacks SET on parameter session_replication_role")
            && out.contains("GRANT SET ON PARAMETER session_replication_role TO \"mig_tgt\";"),
        "{out}"
    );
    let o = pgmig_as(&lab, &LEAST, &["cdc", "--until-caught-up"]).await;
    assert_refused(
        &o,
        3,
        "cdc without SET on session_replication_role",
        &[
            "missing privilege on the target: SET on parameter session_replication_role",
            "GRANT SET ON PARAMETER session_replication_role TO \"mig_tgt\";",
        ],
    );
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM public.accounts")
            .await,
        "3000",
        "nothing applied"
    );
    lab.target
        .execute(
            &lab.target_db,
            "GRANT SET ON PARAMETER session_replication_role TO mig_tgt",
        )
        .await
        .unwrap();
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["cdc", "--until-caught-up"]).await,
        "cdc as mig_src / mig_tgt",
    );
    assert!(lab.applied().await > 0);

    // 7. cutover, status, cleanup as the least-privileged roles.
    let o = pgmig_as(&lab, &LEAST, &["cutover"]).await;
    assert_ok(&o, "cutover");
    assert!(text(&o).contains("GO: "), "{}", text(&o));
    for table in ["public.accounts", "public.events", "public.secrets"] {
        lab.assert_source_equals_target(table).await;
    }
    assert_ok(&pgmig_as(&lab, &LEAST, &["status"]).await, "status");
    assert_ok(
        &pgmig_as(&lab, &LEAST, &["cleanup", "--yes"]).await,
        "cleanup",
    );
    assert_eq!(source_objects(&lab).await, "0 nodes, 0 slots");
}
