//! Wrong wiring through the real binary: each case is refused with the exit
//! code of its kind (2 for a wiring or configuration mistake; `check`, and
//! `run` whose first step is `check`, report it as a blocker and exit 1), a
//! message naming the problem, and no change on any server — no slot,
//! replication set, pglogical node or extension on a source, no replica
//! paused, no `pgmig` schema or table on a target (catalog snapshots
//! compared before and after).
//!
//! The cases: source and target swapped; a replica that is a standby of
//! another primary; a "replica" that is a primary (the source itself); a
//! target database holding tables of the same names with rows; a target
//! holding pgmig's state of a migration from another source; a plan file
//! edited to name a missing table, a table twice, or an invalid slot name.
//! After a real `setup`, `snapshot`, `schema` and `load` wired wrong are
//! refused the same way; after the load, `cdc`, `cutover`, `verify`,
//! `dms generate` and `cleanup` against another source or with source and
//! target swapped too (and write no DMS file).

use std::process::Output;

mod common;

use common::{Lab3, assert_ok, text};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const DATA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Orders" (id bigserial PRIMARY KEY, sku text NOT NULL, qty int);
INSERT INTO "Sales"."Orders" (sku, qty) SELECT 'sku' || g, g FROM generate_series(1, 500) g;
CREATE TABLE public.accounts (id int PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO public.accounts SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 300) g;
"#;

/// The unrelated database on the target: the same table names, other rows.
const UNRELATED: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Orders" (id bigserial PRIMARY KEY, sku text NOT NULL, qty int);
INSERT INTO "Sales"."Orders" (sku, qty) SELECT 'old' || g, -g FROM generate_series(1, 50) g;
CREATE TABLE public.accounts (id int PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO public.accounts SELECT g, 'someone' || g || '@elsewhere.org' FROM generate_series(1, 30) g;
"#;

/// The servers and databases of the test.
struct Wiring {
    lab: Lab3,
    /// A second PG15 source with its own streaming replica.
    other: Cluster,
    other_replica: Cluster,
    other_db: String,
    /// Target databases: one with unrelated data, one with another
    /// migration's state.
    unrelated_db: String,
    foreign_db: String,
}

/// Connection strings for one invocation.
struct Conns {
    source: String,
    replica: String,
    target: String,
}

impl Wiring {
    fn right(&self) -> Conns {
        Conns {
            source: self.lab.source.conninfo(&self.lab.db),
            replica: self.lab.replica.conninfo(&self.lab.db),
            target: self.lab.target.conninfo(&self.lab.target_db),
        }
    }

    async fn pgmig(&self, args: &[&str], c: &Conns) -> Output {
        self.lab
            .command_with(args, &c.source, &c.replica, &c.target)
            .output()
            .await
            .expect("run pgmig")
    }

    /// What a wrongly wired command could change, on every server.
    async fn catalogs(&self) -> String {
        const SOURCE: &str = "SELECT concat_ws(' | ',
               (SELECT string_agg(slot_name || ':' || slot_type, ',' ORDER BY slot_name) FROM pg_replication_slots),
               (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension),
               (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
               (SELECT count(*) FROM pg_class)::text,
               (SELECT max(xmin::text::bigint) FROM pg_class)::text,
               (SELECT string_agg(t || '=' || (xpath('/row/c/text()', query_to_xml(format(
                   'SELECT coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), ''empty'') AS c FROM %s x', t),
                   false, true, '')))[1]::text, ',' ORDER BY t)
                  FROM unnest(ARRAY['pglogical.node', 'pglogical.node_interface', 'pglogical.local_node',
                                    'pglogical.replication_set', 'pglogical.replication_set_table',
                                    'pgmig.migration', 'pgmig.step_log']) t
                 WHERE to_regclass(t) IS NOT NULL))";
        const REPLICA: &str =
            "SELECT pg_is_wal_replay_paused()::text || ' ' || pg_get_wal_replay_pause_state()";
        const TARGET: &str = "SELECT concat_ws(' | ',
               (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
               (SELECT count(*) FROM pg_class)::text,
               (SELECT max(xmin::text::bigint) FROM pg_class)::text,
               (SELECT string_agg(t || '=' || (xpath('/row/c/text()', query_to_xml(format(
                   'SELECT coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), ''empty'') AS c FROM %s x', t),
                   false, true, '')))[1]::text, ',' ORDER BY t)
                  FROM unnest(ARRAY['pglogical.node', 'pglogical.node_interface', 'pglogical.local_node',
                                    'pglogical.replication_set', 'pglogical.replication_set_table',
                                    'pgmig.migration', 'pgmig.step_log']) t
                 WHERE to_regclass(t) IS NOT NULL))";
        let l = &self.lab;
        let mut out = Vec::new();
        out.push(format!("source: {}", one(&l.source, &l.db, SOURCE).await));
        out.push(format!(
            "source target db: {}",
            one(&l.source, &l.db, TARGET).await
        ));
        out.push(format!(
            "other: {}",
            one(&self.other, &self.other_db, SOURCE).await
        ));
        out.push(format!(
            "replica: {}",
            one(&l.replica, &l.db, REPLICA).await
        ));
        out.push(format!(
            "other replica: {}",
            one(&self.other_replica, &self.other_db, REPLICA).await
        ));
        for db in [&l.target_db, &self.unrelated_db, &self.foreign_db] {
            out.push(format!("target {db}: {}", one(&l.target, db, TARGET).await));
            out.push(format!(
                "target {db} as a source: {}",
                one(&l.target, db, SOURCE).await
            ));
        }
        out.join("\n")
    }

    /// Rows of the unrelated database, which nothing may touch.
    async fn unrelated_rows(&self) -> String {
        let mut out = String::new();
        for t in ["\"Sales\".\"Orders\"", "public.accounts"] {
            out.push_str(&Lab3::digest(&self.lab.target, &self.unrelated_db, t).await);
            out.push(' ');
        }
        out
    }
}

async fn one(c: &Cluster, db: &str, sql: &str) -> String {
    c.query_one_string(db, sql).await.unwrap()
}

/// Asserts `code`, that the output names the problem (every one of
/// `needles`, case-insensitively), and returns the output.
fn refused(o: &Output, code: i32, what: &str, needles: &[&str]) -> String {
    let out = text(o);
    assert_eq!(o.status.code(), Some(code), "{what}\n{out}");
    let lower = out.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "{what}: {n:?} missing\n{out}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_wiring_is_refused_and_changes_nothing() {
    skip_unless_available!(pglogical);
    let (lab, other) = tokio::join!(Lab3::start(DATA), Lab::source_pg15());
    let other = other.expect("other source");
    let other_replica = other.create_replica().await.expect("other replica");
    let other_db = other.create_database("other").await.unwrap();
    other.execute(&other_db, DATA).await.unwrap();
    let head = other.current_wal_lsn().await.unwrap();
    other_replica
        .wait_for_replay(head, common::WAIT)
        .await
        .unwrap();
    let unrelated_db = lab.target.create_database("unrelated").await.unwrap();
    lab.target.execute(&unrelated_db, UNRELATED).await.unwrap();
    let foreign_db = lab.target.create_database("foreign").await.unwrap();

    let w = Wiring {
        lab,
        other,
        other_replica,
        other_db,
        unrelated_db,
        foreign_db,
    };

    // The foreign target: pgmig's state of a migration from the other
    // source, with the very same plan (same table names).
    let o = w
        .pgmig(&["--json", "plan", "--slots", "2"], &w.right())
        .await;
    assert_ok(&o, "plan");
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan_json = plan["plan"].to_string();
    let other_sysid = w
        .other
        .query_one_string(
            &w.other_db,
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await
        .unwrap();
    let mut state_sql = pgmig_core::state::SCHEMA_SQL.join(";\n");
    state_sql.push_str(&format!(
        ";\nINSERT INTO pgmig.migration (id, source_system_identifier, source_database, plan) \
         VALUES (1, {other_sysid}, {}, {}::jsonb)",
        pgmig_core::ident::quote_literal(&w.other_db),
        pgmig_core::ident::quote_literal(&plan_json)
    ));
    w.lab
        .target
        .execute(&w.foreign_db, &state_sql)
        .await
        .unwrap();

    let before = w.catalogs().await;
    let rows = w.unrelated_rows().await;
    let l = &w.lab;
    let right = w.right();

    // 1. Source and target swapped.
    let swapped = Conns {
        source: right.target.clone(),
        replica: right.replica.clone(),
        target: right.source.clone(),
    };
    let o = w.pgmig(&["check"], &swapped).await;
    refused(
        &o,
        1,
        "check, swapped",
        &["different primary", "target already holds data"],
    );
    let o = w.pgmig(&["setup", "--yes"], &swapped).await;
    refused(&o, 2, "setup, swapped", &["swapped"]);
    let o = w.pgmig(&["run", "--yes"], &swapped).await;
    refused(&o, 1, "run, swapped", &["different primary"]);
    let o = w.pgmig(&["snapshot"], &swapped).await;
    refused(&o, 2, "snapshot, swapped", &["no migration state"]);
    let o = w.pgmig(&["schema", "--no-owner"], &swapped).await;
    refused(&o, 2, "schema, swapped", &["already holds data"]);
    let o = w.pgmig(&["load"], &swapped).await;
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "load, swapped\n{out}");
    assert_eq!(w.catalogs().await, before, "swapped: a server changed");

    // 2. The replica is a standby of another primary.
    let foreign_replica = Conns {
        replica: w.other_replica.conninfo(&w.other_db),
        ..w.right()
    };
    let o = w.pgmig(&["check"], &foreign_replica).await;
    refused(
        &o,
        1,
        "check, replica of another primary",
        &["replica.system_identifier", "different primary"],
    );
    let o = w.pgmig(&["setup", "--yes"], &foreign_replica).await;
    refused(
        &o,
        2,
        "setup, replica of another primary",
        &["not a standby of this source"],
    );
    let o = w.pgmig(&["run", "--yes"], &foreign_replica).await;
    refused(
        &o,
        1,
        "run, replica of another primary",
        &["different primary"],
    );
    assert_eq!(
        w.catalogs().await,
        before,
        "replica of another primary: a server changed"
    );

    // 3. The "replica" is a primary: the source itself, or another primary.
    for (name, replica) in [
        ("the source", l.source.conninfo(&l.db)),
        ("another primary", w.other.conninfo(&w.other_db)),
    ] {
        let primary = Conns {
            replica,
            ..w.right()
        };
        let o = w.pgmig(&["check"], &primary).await;
        refused(
            &o,
            1,
            &format!("check, replica = {name}"),
            &["replica.in_recovery", "not a standby"],
        );
        let o = w.pgmig(&["setup", "--yes"], &primary).await;
        refused(
            &o,
            2,
            &format!("setup, replica = {name}"),
            &["not a standby"],
        );
        let o = w.pgmig(&["run", "--yes"], &primary).await;
        refused(&o, 1, &format!("run, replica = {name}"), &["not a standby"]);
    }
    assert_eq!(
        w.catalogs().await,
        before,
        "replica is a primary: a server changed"
    );

    // 4. The target holds an unrelated database's tables, with rows.
    let unrelated = Conns {
        target: l.target.conninfo(&w.unrelated_db),
        ..w.right()
    };
    let o = w.pgmig(&["check"], &unrelated).await;
    refused(
        &o,
        1,
        "check, unrelated target",
        &[
            "target.empty",
            "target already holds data",
            "\"Sales\".\"Orders\"",
        ],
    );
    let o = w.pgmig(&["setup", "--yes"], &unrelated).await;
    refused(
        &o,
        2,
        "setup, unrelated target",
        &["already holds data", "public.accounts"],
    );
    let o = w.pgmig(&["run", "--yes"], &unrelated).await;
    refused(
        &o,
        1,
        "run, unrelated target",
        &["target already holds data"],
    );
    let o = w.pgmig(&["schema", "--no-owner"], &unrelated).await;
    refused(&o, 2, "schema, unrelated target", &["already holds data"]);
    let o = w.pgmig(&["snapshot"], &unrelated).await;
    refused(&o, 2, "snapshot, unrelated target", &["no migration state"]);
    let o = w.pgmig(&["load"], &unrelated).await;
    assert_ne!(o.status.code(), Some(0), "load, unrelated\n{}", text(&o));
    assert_eq!(
        w.catalogs().await,
        before,
        "unrelated target: a server changed"
    );
    assert_eq!(w.unrelated_rows().await, rows, "the unrelated rows changed");

    // 5. The target holds pgmig's state of a migration from another source.
    let foreign = Conns {
        target: l.target.conninfo(&w.foreign_db),
        ..w.right()
    };
    let o = w.pgmig(&["check"], &foreign).await;
    refused(
        &o,
        1,
        "check, foreign state",
        &["target.state", "another migration", &other_sysid],
    );
    let o = w.pgmig(&["setup", "--yes"], &foreign).await;
    refused(
        &o,
        2,
        "setup, foreign state",
        &["belongs to a migration from system", &other_sysid],
    );
    let o = w.pgmig(&["run", "--yes"], &foreign).await;
    refused(&o, 1, "run, foreign state", &["another migration"]);
    let o = w.pgmig(&["snapshot"], &foreign).await;
    refused(
        &o,
        2,
        "snapshot, foreign state",
        &["belongs to a migration from system"],
    );
    let o = w.pgmig(&["schema", "--no-owner"], &foreign).await;
    refused(
        &o,
        2,
        "schema, foreign state",
        &["belongs to a migration from system"],
    );
    let o = w.pgmig(&["load"], &foreign).await;
    assert_ne!(o.status.code(), Some(0), "load, foreign\n{}", text(&o));
    assert_eq!(
        w.catalogs().await,
        before,
        "foreign state: a server changed"
    );

    // 6. Plan files edited wrong.
    let dir = std::env::temp_dir().join(format!("pgmig-wiring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgmig.toml");
    let o = w
        .pgmig(
            &["plan", "--slots", "2", "--write", file.to_str().unwrap()],
            &right,
        )
        .await;
    assert_ok(&o, "plan --write");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("table = \"public.accounts\""), "{written}");
    // public.accounts listed again in the first slot.
    let block_start = written
        .find("[[plan.slots.tables]]\ntable = \"public.accounts\"")
        .unwrap();
    let block_end = block_start + written[block_start..].find("\n\n").unwrap() + 2;
    let block = &written[block_start..block_end];
    let second_slot = written
        .find("[[plan.slots]]\nslot = \"dms_slot_02\"")
        .unwrap();
    let twice = format!(
        "{}{block}{}",
        &written[..second_slot],
        &written[second_slot..]
    );
    let missing = written.replace(
        "table = \"public.accounts\"",
        "table = \"public.accounts_gone\"",
    );
    let bad_slot = written.replace("dms_slot_01", "dms-slot-01");
    for (what, content, needles) in [
        (
            "a missing table",
            missing,
            &["public.accounts_gone"] as &[&str],
        ),
        (
            "a table twice",
            twice,
            &["public.accounts is planned in both"],
        ),
        ("an invalid slot name", bad_slot, &["dms-slot-01"]),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, &content).unwrap();
        assert_ne!(content, written, "{what}: the edit did not apply");
        let config = bad.to_str().unwrap();
        for cmd in [
            &["check"] as &[&str],
            &["plan"],
            &["setup", "--yes"],
            &["run", "--yes"],
        ] {
            let mut args = vec!["--config", config];
            args.extend_from_slice(cmd);
            let o = w.pgmig(&args, &right).await;
            refused(&o, 2, &format!("{cmd:?} with {what}"), needles);
        }
    }
    assert_eq!(w.catalogs().await, before, "edited plans: a server changed");

    // 7. After a real setup: snapshot, schema and setup wired wrong.
    assert_ok(
        &w.pgmig(&["setup", "--yes", "--slots", "2"], &right).await,
        "setup",
    );
    let before = w.catalogs().await;
    for (name, conns, needles) in [
        (
            "replica of another primary",
            Conns {
                replica: w.other_replica.conninfo(&w.other_db),
                ..w.right()
            },
            &["not a standby of this source"] as &[&str],
        ),
        (
            "replica = the source",
            Conns {
                replica: l.source.conninfo(&l.db),
                ..w.right()
            },
            &["not a standby"],
        ),
        (
            "swapped",
            Conns {
                source: right.target.clone(),
                replica: right.replica.clone(),
                target: right.source.clone(),
            },
            &["swapped"],
        ),
        (
            "another source",
            Conns {
                source: w.other.conninfo(&w.other_db),
                replica: w.other_replica.conninfo(&w.other_db),
                ..w.right()
            },
            &["belongs to a migration from system"],
        ),
    ] {
        for cmd in [
            &["snapshot"] as &[&str],
            &["setup", "--yes"],
            &["schema", "--no-owner"],
        ] {
            if name.starts_with("replica") && cmd[0] == "schema" {
                // schema does not read the replica.
                continue;
            }
            let o = w.pgmig(cmd, &conns).await;
            refused(&o, 2, &format!("{cmd:?}, {name}"), needles);
        }
    }
    assert_eq!(w.catalogs().await, before, "after setup: a server changed");

    // 8. After snapshot and schema: load from a replica of another primary.
    assert_ok(&w.pgmig(&["snapshot"], &right).await, "snapshot");
    assert_ok(&w.pgmig(&["schema", "--no-owner"], &right).await, "schema");
    let before = w.catalogs().await;
    let o = w
        .pgmig(
            &["load"],
            &Conns {
                replica: w.other_replica.conninfo(&w.other_db),
                ..w.right()
            },
        )
        .await;
    refused(&o, 2, "load, replica of another primary", &["replica"]);
    assert_eq!(
        w.catalogs().await,
        before,
        "load, replica of another primary: a server changed"
    );
    // The right wiring still works to the end.
    assert_ok(&w.pgmig(&["load", "--jobs", "2"], &right).await, "load");

    // 9. cdc, cutover and cleanup against another source, or with source
    // and target swapped: refused before anything changes.
    let before = w.catalogs().await;
    let dms_out = dir.join("dms");
    let other_source = Conns {
        source: w.other.conninfo(&w.other_db),
        replica: w.other_replica.conninfo(&w.other_db),
        ..w.right()
    };
    let swapped = Conns {
        source: right.target.clone(),
        replica: right.replica.clone(),
        target: right.source.clone(),
    };
    for (name, conns) in [("another source", &other_source), ("swapped", &swapped)] {
        for cmd in [
            &["cdc", "--until-caught-up"] as &[&str],
            &["cutover"],
            &["verify", "--against", "replica"],
            &["verify", "--against", "source"],
            &[
                "dms",
                "generate",
                "--out",
                dms_out.to_str().unwrap(),
                "--replication-instance-arn",
                "arn:aws:dms:eu-west-1:123456789012:rep:W",
            ],
            &["cleanup", "--yes"],
        ] {
            let o = w.pgmig(cmd, conns).await;
            let out = text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?}, {name}\n{out}");
            let needles: &[&str] = match (name, cmd) {
                ("swapped", _) => &["swapped"],
                (_, ["verify", "--against", "replica"]) => &["not a standby of this source"],
                _ => &["migration from"],
            };
            assert!(
                needles.iter().any(|n| out.contains(n)),
                "{cmd:?}, {name}: {needles:?}\n{out}"
            );
        }
    }
    assert_eq!(
        w.catalogs().await,
        before,
        "cdc/cutover/cleanup wired wrong: a server changed"
    );
    assert!(
        !dms_out.exists(),
        "DMS files were written for the wrong source"
    );
    for t in ["\"Sales\".\"Orders\"", "public.accounts"] {
        l.assert_replica_equals_target(t).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
