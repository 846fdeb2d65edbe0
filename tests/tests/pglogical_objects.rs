//! pglogical objects on a real PG15 source with pglogical 2.4.2: logical
//! slots (created once, reused, refused when another plugin, database or
//! type holds the name, listed with lag and retained WAL, dropped only when
//! pgmig's), the provider node (created, reused, a password DSN refused
//! without echoing the password, recreated only when nothing uses it), the
//! two replication sets per slot with their exact flags and tables (tables
//! without a primary key only in the insert set), and the whole setup run
//! twice giving the same catalog state, with a dry run that changes nothing
//! and prints SQL that does the same as a real run.

use std::time::Duration;

use pgmig_core::catalog::list_tables;
use pgmig_core::{QualifiedTable, ServerVersion};
use pgmig_pglogical::node::{self, NodeError, NodeOutcome};
use pgmig_pglogical::replication_set::{
    self, MembershipProblem, SetError, SetFlags, SetTable, insert_truncate_set_name,
    update_delete_set_name,
};
use pgmig_pglogical::slot::{self, SlotError, SlotName, SlotNameError, SlotType};
use pgmig_pglogical::statement::Statement;
use pgmig_testkit::{Cluster, LAB_HOST, LAB_SUPERUSER, Lab, skip_unless_available};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(30);

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigserial PRIMARY KEY, sku text NOT NULL, qty int);
CREATE TABLE public."user" (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE public.audit_log (ts timestamptz DEFAULT now(), msg text);
CREATE TABLE public."Events" (id int, payload text);
INSERT INTO "Sales"."Order Items" (sku, qty) SELECT 's' || g, g FROM generate_series(1, 50) g;
"#;

async fn source() -> Cluster {
    Lab::source_pg15().await.expect("start the PG15 source")
}

async fn fresh_db(cluster: &Cluster, prefix: &str, schema: &str) -> (String, Client) {
    let db = cluster
        .create_database(prefix)
        .await
        .expect("create database");
    if !schema.is_empty() {
        cluster.execute(&db, schema).await.expect("create schema");
    }
    let client = cluster.connect(&db).await.expect("connect");
    (db, client)
}

fn slot_name(s: &str) -> SlotName {
    SlotName::new(s).expect("valid slot name")
}

fn set_table(schema: &str, name: &str, has_identity_index: bool) -> SetTable {
    SetTable {
        table: QualifiedTable::new(schema, name),
        has_identity_index,
    }
}

/// Every row of a query, each row's columns as text joined by `|`.
async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let messages = client.simple_query(sql).await.expect(sql);
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

/// Everything the setup may change: slots, the extension and pglogical's
/// node and set catalogs.
async fn catalog_state(client: &Client) -> Vec<String> {
    let mut state = rows(
        client,
        "SELECT 'slot', slot_name, plugin, slot_type, database, restart_lsn, confirmed_flush_lsn \
         FROM pg_replication_slots ORDER BY slot_name",
    )
    .await;
    state.extend(
        rows(
            client,
            "SELECT 'ext', extname, extversion FROM pg_extension ORDER BY extname",
        )
        .await,
    );
    let has_pglogical = !rows(
        client,
        "SELECT 1 FROM pg_extension WHERE extname = 'pglogical'",
    )
    .await
    .is_empty();
    if has_pglogical {
        for sql in [
            "SELECT 'node', * FROM pglogical.node ORDER BY node_id",
            "SELECT 'if', * FROM pglogical.node_interface ORDER BY if_id",
            "SELECT 'local', * FROM pglogical.local_node",
            "SELECT 'set', * FROM pglogical.replication_set ORDER BY set_name",
            "SELECT 'member', s.set_name, r.set_reloid::regclass::text, r.set_att_list, r.set_row_filter \
             FROM pglogical.replication_set_table r JOIN pglogical.replication_set s USING (set_id) \
             ORDER BY 2, 3",
            "SELECT 'sub', sub_name FROM pglogical.subscription ORDER BY 2",
        ] {
            state.extend(rows(client, sql).await);
        }
    }
    state
}

#[test]
fn slot_names_follow_postgres_and_pglogical_rules() {
    let cases: &[(&str, Result<(), &str>)] = &[
        ("dms_slot_01", Ok(())),
        ("a", Ok(())),
        ("slot_2024_x", Ok(())),
        ("", Err("cannot be empty")),
        ("DMS_slot", Err("lower-case letters")),
        ("dms-slot", Err("lower-case letters")),
        ("dms.slot", Err("lower-case letters")),
        ("dms slot", Err("lower-case letters")),
        ("slot_é", Err("lower-case letters")),
        ("pgl_slot", Err("pgl_")),
        ("my_pgl_slot", Err("pgl_")),
        // 62 bytes is the most: "i" + name must fit PostgreSQL's 63.
        (&"s".repeat(62), Ok(())),
        (&"s".repeat(63), Err("at most 62")),
    ];
    for (name, expected) in cases {
        match (SlotName::new(*name), expected) {
            (Ok(slot), Ok(())) => assert_eq!(slot.as_str(), *name),
            (Err(err), Err(rule)) => {
                let msg = err.to_string();
                assert!(msg.contains(rule), "{name:?}: {msg}");
            }
            (got, want) => panic!("{name:?}: got {got:?}, want {want:?}"),
        }
    }
    assert!(matches!(
        SlotName::new("x".repeat(100)),
        Err(SlotNameError::TooLong { bytes: 100, .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_are_created_once_reused_refused_listed_and_dropped_only_when_ours() {
    skip_unless_available!(pglogical);
    let cluster = source().await;
    let (db, client) = fresh_db(
        &cluster,
        "slots",
        "CREATE TABLE t (id bigserial PRIMARY KEY, payload text)",
    )
    .await;
    let version = ServerVersion::query(&client).await.unwrap();
    let slot = slot_name("dms_slot_01");

    // Created once, then reused with the same LSNs.
    let first = slot::create_logical_slot(&client, &slot).await.unwrap();
    assert!(first.created);
    assert!(first.restart_lsn <= first.confirmed_flush_lsn);
    assert!(!first.confirmed_flush_lsn.is_invalid());
    let second = slot::create_logical_slot(&client, &slot).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.restart_lsn, first.restart_lsn);
    assert_eq!(second.confirmed_flush_lsn, first.confirmed_flush_lsn);
    let plan = slot::plan_create_logical_slot(&client, &slot)
        .await
        .unwrap();
    assert!(plan.statements.is_empty());
    assert!(plan.existing.is_some());

    // The same name held by another plugin, a physical slot, another database.
    client
        .batch_execute(
            "SELECT pg_create_logical_replication_slot('td_slot', 'test_decoding'); \
             SELECT pg_create_physical_replication_slot('phys_slot')",
        )
        .await
        .unwrap();
    let err = slot::create_logical_slot(&client, &slot_name("td_slot"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlotError::OtherPlugin { slot, plugin } if slot == "td_slot" && plugin == "test_decoding"),
        "{err}"
    );
    assert!(err.to_string().contains("td_slot") && err.to_string().contains("test_decoding"));
    let err = slot::create_logical_slot(&client, &slot_name("phys_slot"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SlotError::Physical { slot } if slot == "phys_slot"),
        "{err}"
    );
    let (other_db, other) = fresh_db(&cluster, "slots_other", "").await;
    other
        .batch_execute("SELECT pg_create_logical_replication_slot('elsewhere_slot', 'pglogical')")
        .await
        .unwrap();
    let err = slot::create_logical_slot(&client, &slot_name("elsewhere_slot"))
        .await
        .unwrap_err();
    match &err {
        SlotError::OtherDatabase {
            slot,
            database,
            current,
        } => {
            assert_eq!(slot, "elsewhere_slot");
            assert_eq!(database, &other_db);
            assert_eq!(current, &db);
        }
        other => panic!("{other}"),
    }

    // Lag and retained WAL grow with writes, computed as LSN distances.
    client
        .execute(
            "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 2000)",
            &[],
        )
        .await
        .unwrap();
    let slots = slot::list_slots(&client, version).await.unwrap();
    let ours = slots.iter().find(|s| s.name == "dms_slot_01").unwrap();
    assert_eq!(ours.plugin.as_deref(), Some("pglogical"));
    assert_eq!(ours.slot_type, SlotType::Logical);
    assert_eq!(ours.database.as_deref(), Some(db.as_str()));
    assert!(ours.in_current_database && !ours.active && !ours.temporary);
    assert_eq!(ours.restart_lsn, Some(first.restart_lsn));
    assert_eq!(ours.confirmed_flush_lsn, Some(first.confirmed_flush_lsn));
    assert_eq!(ours.wal_status.as_deref(), Some("reserved"));
    let lag = ours.lag_bytes.unwrap();
    let retained = ours.retained_wal_bytes.unwrap();
    assert!(lag > 400_000, "lag {lag}");
    assert!(retained >= lag, "retained {retained} < lag {lag}");
    let server_lag: String = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text \
             FROM pg_replication_slots WHERE slot_name = 'dms_slot_01'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(server_lag.parse::<u64>().unwrap() >= lag);
    let phys = slots.iter().find(|s| s.name == "phys_slot").unwrap();
    assert_eq!(phys.slot_type, SlotType::Physical);
    assert_eq!((phys.plugin.clone(), phys.lag_bytes), (None, None));
    let elsewhere = slots.iter().find(|s| s.name == "elsewhere_slot").unwrap();
    assert!(!elsewhere.in_current_database);

    // Dropping: never someone else's slot without force, never an active one.
    let td = slot_name("td_slot");
    let err = slot::drop_slot_if_exists(&client, &td, false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, SlotError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("not created by pgmig"), "{err}");
    let err = slot::drop_slot_if_exists(&client, &td, false, true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("plugin test_decoding"), "{err}");
    let busy = slot_name("busy_slot");
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('busy_slot', 'test_decoding')")
        .await
        .unwrap();
    let holder = cluster
        .hold_slot_active(&db, "busy_slot", WAIT)
        .await
        .unwrap();
    let pid: i32 = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'busy_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let err = slot::drop_slot_if_exists(&client, &busy, true, true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SlotError::Active { pid: Some(p), .. } if p == pid),
        "{err}"
    );
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
    drop(holder);

    let before = catalog_state(&client).await;
    assert_eq!(
        slot::plan_drop_slot(&client, &slot, false, true)
            .await
            .unwrap()
            .statements,
        slot::drop_slot_sql(&slot)
    );
    assert_eq!(
        catalog_state(&client).await,
        before,
        "planning changed nothing"
    );
    assert!(
        slot::drop_slot_if_exists(&client, &td, true, false)
            .await
            .unwrap()
            .dropped
    );
    assert!(
        slot::drop_slot_if_exists(&client, &slot, false, true)
            .await
            .unwrap()
            .dropped
    );
    assert!(
        !slot::drop_slot_if_exists(&client, &slot, false, true)
            .await
            .unwrap()
            .dropped
    );
    let names: Vec<String> = slot::list_slots(&client, version)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(!names.contains(&"dms_slot_01".to_owned()) && !names.contains(&"td_slot".to_owned()));
    assert!(names.contains(&"phys_slot".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn node_is_created_reused_guarded_and_never_stores_a_password() {
    skip_unless_available!(pglogical);
    let cluster = source().await;
    let (db, client) = fresh_db(&cluster, "node", "").await;
    let dsn = cluster.conninfo(&db);

    // Without the extension: a clear error; ensure_extension creates it once.
    let err = node::create_provider_node(&client, "pgmig_provider", &dsn, false)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::ExtensionMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("CREATE EXTENSION pglogical"),
        "{err}"
    );
    let plan = node::plan_ensure_extension(&client).await.unwrap();
    assert_eq!(plan.statements, node::ensure_extension_sql());
    let ext = node::ensure_extension(&client).await.unwrap();
    assert!(ext.created);
    assert_eq!(ext.version, "2.4.2");
    assert!(!node::ensure_extension(&client).await.unwrap().created);

    // A password DSN is refused, the password never shown, nothing stored.
    let secret = "Tr0ub4dor&3-secret";
    for bad in [
        format!("{dsn} password={secret}"),
        format!(
            "postgresql://{LAB_SUPERUSER}:{secret}@{LAB_HOST}:{}/{db}",
            cluster.port()
        ),
    ] {
        let err = node::create_provider_node(&client, "pgmig_provider", &bad, false)
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::DsnHasPassword { .. }), "{err}");
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains(secret), "{msg}");
        assert!(
            msg.contains("passfile") && msg.contains("PGPASSFILE"),
            "{msg}"
        );
        assert!(node::create_provider_node_sql("pgmig_provider", &bad).is_err());
    }
    assert!(
        rows(&client, "SELECT 1 FROM pglogical.node")
            .await
            .is_empty(),
        "nothing stored"
    );

    // Created, then reused.
    let created = node::create_provider_node(&client, "pgmig_provider", &dsn, false)
        .await
        .unwrap();
    assert_eq!(created.outcome, NodeOutcome::Created);
    assert_eq!(created.dsn, dsn);
    let stored = rows(
        &client,
        "SELECT n.node_name, i.if_dsn FROM pglogical.local_node l JOIN pglogical.node n USING (node_id) \
         JOIN pglogical.node_interface i ON i.if_id = l.node_local_interface",
    )
    .await;
    assert_eq!(stored, [format!("pgmig_provider|{dsn}")]);
    let again = node::create_provider_node(&client, "pgmig_provider", &dsn, false)
        .await
        .unwrap();
    assert_eq!(again.outcome, NodeOutcome::Existing);
    assert_eq!(again.node_id, created.node_id);

    // One node per database; another DSN needs recreate.
    let err = node::create_provider_node(&client, "another_node", &dsn, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::OtherLocalNode { existing, .. } if existing == "pgmig_provider"),
        "{err}"
    );
    let new_dsn = format!("{dsn} application_name=pgmig");
    let err = node::create_provider_node(&client, "pgmig_provider", &new_dsn, false)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::DsnDiffers { .. }), "{err}");
    let recreated = node::create_provider_node(&client, "pgmig_provider", &new_dsn, true)
        .await
        .unwrap();
    assert_eq!(recreated.outcome, NodeOutcome::Recreated);
    assert_eq!(recreated.dsn, new_dsn);

    // Not recreated or dropped while it holds sets or a subscription uses it.
    let slot = slot_name("node_slot");
    replication_set::ensure_sets(&client, &slot).await.unwrap();
    let err = node::create_provider_node(&client, "pgmig_provider", &dsn, true)
        .await
        .unwrap_err();
    match &err {
        NodeError::HasSets { sets, .. } => {
            assert_eq!(sets, &["inode_slot".to_owned(), "node_slot".to_owned()])
        }
        other => panic!("{other}"),
    }
    let err = node::drop_node_if_exists(&client, "pgmig_provider")
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::HasSets { .. }), "{err}");
    replication_set::remove_sets_if_exist(&client, &slot)
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO pglogical.subscription (sub_id, sub_name, sub_origin, sub_target, \
               sub_origin_if, sub_target_if, sub_enabled, sub_slot_name) \
             SELECT 4242, 'fake_sub', node_id, node_id, node_local_interface, node_local_interface, \
               false, 'fake_sub_slot' FROM pglogical.local_node",
        )
        .await
        .unwrap();
    let err = node::create_provider_node(&client, "pgmig_provider", &dsn, true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NodeError::InUse { users, .. } if users == &["subscription fake_sub".to_owned()]),
        "{err}"
    );
    let err = node::drop_node_if_exists(&client, "pgmig_provider")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("subscription fake_sub"), "{err}");
    client
        .batch_execute("DELETE FROM pglogical.subscription WHERE sub_name = 'fake_sub'")
        .await
        .unwrap();

    // Dropped once.
    let before = catalog_state(&client).await;
    let plan = node::plan_drop_node(&client, "pgmig_provider")
        .await
        .unwrap();
    assert_eq!(plan.statements, node::drop_node_sql("pgmig_provider"));
    assert_eq!(catalog_state(&client).await, before);
    assert!(
        node::drop_node_if_exists(&client, "pgmig_provider")
            .await
            .unwrap()
            .dropped
    );
    assert!(
        !node::drop_node_if_exists(&client, "pgmig_provider")
            .await
            .unwrap()
            .dropped
    );
    assert!(
        rows(&client, "SELECT 1 FROM pglogical.node")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sets_have_exact_flags_and_tables_without_key_go_to_the_insert_set_only() {
    skip_unless_available!(pglogical);
    let cluster = source().await;
    let (db, client) = fresh_db(&cluster, "sets", SCHEMA).await;
    let slot = slot_name("dms_slot_07");

    // Before the node exists: planned, but refused when run.
    let plan = replication_set::plan_ensure_sets(&client, &slot)
        .await
        .unwrap();
    assert!(plan.node_missing);
    assert_eq!(plan.statements, replication_set::ensure_sets_sql(&slot));
    node::ensure_extension(&client).await.unwrap();
    let err = replication_set::ensure_sets(&client, &slot)
        .await
        .unwrap_err();
    assert!(matches!(err, SetError::NoNode), "{err}");
    node::create_provider_node(&client, "provider", &cluster.conninfo(&db), false)
        .await
        .unwrap();

    // Created with exactly the flags, read back from pglogical.replication_set.
    let made = replication_set::ensure_sets(&client, &slot).await.unwrap();
    assert_eq!(made.created, ["dms_slot_07", "idms_slot_07"]);
    assert!(made.existing.is_empty());
    let flags = rows(
        &client,
        "SELECT set_name, replicate_insert, replicate_update, replicate_delete, replicate_truncate \
         FROM pglogical.replication_set WHERE set_name IN ('dms_slot_07', 'idms_slot_07') ORDER BY 1",
    )
    .await;
    assert_eq!(flags, ["dms_slot_07|f|t|t|f", "idms_slot_07|t|f|f|t"]);
    let again = replication_set::ensure_sets(&client, &slot).await.unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.existing, ["dms_slot_07", "idms_slot_07"]);

    // A set of that name with other flags is an error naming it and its flags.
    client
        .batch_execute("SELECT pglogical.create_replication_set('wrong_slot')")
        .await
        .unwrap();
    let err = replication_set::ensure_sets(&client, &slot_name("wrong_slot"))
        .await
        .unwrap_err();
    match &err {
        SetError::WrongFlags {
            set,
            expected,
            found,
        } => {
            assert_eq!(set, "wrong_slot");
            assert_eq!(*expected, SetFlags::UPDATE_DELETE);
            assert_eq!(found.to_string(), "insert, update, delete, truncate");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("wrong_slot"));

    // Tables: quoted, mixed-case, reserved words; no key → insert set only.
    let tables = [
        set_table("Sales", "Order Items", true),
        set_table("public", "user", true),
        set_table("public", "audit_log", false),
        set_table("public", "Events", false),
    ];
    let added = replication_set::add_tables(&client, &slot, &tables)
        .await
        .unwrap();
    assert_eq!(added.added.len(), 6);
    assert!(added.already.is_empty());
    let mut members = rows(
        &client,
        "SELECT s.set_name, r.set_reloid::regclass::text FROM pglogical.replication_set_table r \
         JOIN pglogical.replication_set s USING (set_id)",
    )
    .await;
    members.sort();
    assert_eq!(
        members,
        [
            "dms_slot_07|\"Sales\".\"Order Items\"",
            "dms_slot_07|\"user\"",
            "idms_slot_07|\"Events\"",
            "idms_slot_07|\"Sales\".\"Order Items\"",
            "idms_slot_07|\"user\"",
            "idms_slot_07|audit_log",
        ]
    );
    assert!(
        !cluster
            .log_tail(400)
            .contains("cannot be added to replication set"),
        "pgmig tried a table without a key in the update/delete set"
    );
    assert!(
        replication_set::verify_membership(&client, &slot, &tables)
            .await
            .unwrap()
            .is_empty()
    );
    let again = replication_set::add_tables(&client, &slot, &tables)
        .await
        .unwrap();
    assert!(again.added.is_empty());
    assert_eq!(again.already.len(), 6);

    // Verification finds what differs from the plan.
    client
        .batch_execute(
            "SELECT pglogical.replication_set_remove_table('idms_slot_07', 'public.\"user\"'); \
             CREATE TABLE public.stray (id int PRIMARY KEY); \
             SELECT pglogical.replication_set_add_table('dms_slot_07', 'public.stray')",
        )
        .await
        .unwrap();
    let mut planned = tables.to_vec();
    planned.push(set_table("public", "missing table", true));
    let problems = replication_set::verify_membership(&client, &slot, &planned)
        .await
        .unwrap();
    assert_eq!(
        problems,
        [
            MembershipProblem::TableNotFound {
                table: QualifiedTable::new("public", "missing table")
            },
            MembershipProblem::NotMember {
                set: "idms_slot_07".into(),
                table: QualifiedTable::new("public", "user")
            },
            MembershipProblem::Unexpected {
                set: "dms_slot_07".into(),
                table: QualifiedTable::new("public", "stray")
            },
        ]
    );
    assert_eq!(
        problems[1].to_string(),
        "table public.\"user\" is not in replication set idms_slot_07"
    );

    // A missing table stops add_tables before anything runs.
    let before = catalog_state(&client).await;
    let err = replication_set::add_tables(&client, &slot, &planned)
        .await
        .unwrap_err();
    assert!(matches!(err, SetError::TableNotFound { .. }), "{err}");
    assert_eq!(catalog_state(&client).await, before);

    // Removed, with their memberships; the tables stay.
    let removed = replication_set::remove_sets_if_exist(&client, &slot)
        .await
        .unwrap();
    assert_eq!(removed.dropped, ["dms_slot_07", "idms_slot_07"]);
    assert!(
        replication_set::remove_sets_if_exist(&client, &slot)
            .await
            .unwrap()
            .dropped
            .is_empty()
    );
    assert!(
        rows(&client, "SELECT 1 FROM pglogical.replication_set_table")
            .await
            .is_empty()
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM \"Sales\".\"Order Items\"").await,
        ["50"]
    );
}

/// The statements a dry run of the whole setup would print for `slot`.
async fn plan_setup(
    client: &Client,
    slot: &SlotName,
    dsn: &str,
    tables: &[SetTable],
) -> Vec<Statement> {
    let mut out = node::plan_ensure_extension(client)
        .await
        .unwrap()
        .statements;
    out.extend(
        slot::plan_create_logical_slot(client, slot)
            .await
            .unwrap()
            .statements,
    );
    out.extend(
        node::plan_create_provider_node(client, "pgmig_provider", dsn, false)
            .await
            .unwrap()
            .statements,
    );
    out.extend(
        replication_set::plan_ensure_sets(client, slot)
            .await
            .unwrap()
            .statements,
    );
    out.extend(
        replication_set::plan_add_tables(client, slot, tables)
            .await
            .unwrap()
            .statements,
    );
    out
}

/// The whole setup: extension, slot, node, sets, tables. Returns whether
/// anything was created.
async fn run_setup(client: &Client, slot: &SlotName, dsn: &str, tables: &[SetTable]) -> bool {
    let ext = node::ensure_extension(client).await.unwrap();
    let created = slot::create_logical_slot(client, slot).await.unwrap();
    let node = node::create_provider_node(client, "pgmig_provider", dsn, false)
        .await
        .unwrap();
    let sets = replication_set::ensure_sets(client, slot).await.unwrap();
    let added = replication_set::add_tables(client, slot, tables)
        .await
        .unwrap();
    assert!(
        replication_set::verify_membership(client, slot, tables)
            .await
            .unwrap()
            .is_empty()
    );
    ext.created
        || created.created
        || node.outcome != NodeOutcome::Existing
        || !sets.created.is_empty()
        || !added.added.is_empty()
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_setup_is_idempotent_and_its_dry_run_changes_nothing() {
    skip_unless_available!(pglogical);
    let cluster = source().await;
    let (db, client) = fresh_db(&cluster, "setup", SCHEMA).await;
    let dsn = cluster.conninfo(&db);
    let slot = slot_name("dms_slot_01");
    let version = ServerVersion::query(&client).await.unwrap();
    let tables: Vec<SetTable> = list_tables(&client, version)
        .await
        .unwrap()
        .iter()
        .map(SetTable::from)
        .collect();
    assert_eq!(tables.len(), 4);
    assert_eq!(tables.iter().filter(|t| t.has_identity_index).count(), 2);

    // The dry run on a fresh database: exactly the `_sql` statements, in
    // order, and nothing changes.
    let before = catalog_state(&client).await;
    let planned = plan_setup(&client, &slot, &dsn, &tables).await;
    let mut expected = node::ensure_extension_sql();
    expected.extend(slot::create_logical_slot_sql(&slot));
    expected.extend(node::create_provider_node_sql("pgmig_provider", &dsn).unwrap());
    expected.extend(replication_set::ensure_sets_sql(&slot));
    expected.extend(replication_set::add_tables_sql(&slot, &tables));
    assert_eq!(planned, expected);
    assert_eq!(planned.len(), 1 + 1 + 1 + 2 + 6);
    assert_eq!(
        catalog_state(&client).await,
        before,
        "the dry run changed something"
    );
    let printed: Vec<String> = planned.iter().map(ToString::to_string).collect();
    assert!(printed.contains(&format!(
        "SELECT pglogical.replication_set_add_table(set_name := '{}', relation := '\"Sales\".\"Order Items\"'::text::regclass, synchronize_data := false)",
        update_delete_set_name(&slot)
    )));
    // A table without a key is only ever added to the insert/truncate set.
    let audit: Vec<&String> = printed.iter().filter(|s| s.contains("audit_log")).collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains(&format!(
        "set_name := '{}'",
        insert_truncate_set_name(&slot)
    )));

    // The printed SQL, pasted into psql, does what a real run does: after
    // running it as text, the library finds everything in place.
    for sql in &printed {
        client.simple_query(sql).await.expect(sql);
    }
    let after_printed = catalog_state(&client).await;
    assert!(
        !run_setup(&client, &slot, &dsn, &tables).await,
        "the printed SQL left something to do"
    );
    assert_eq!(catalog_state(&client).await, after_printed);

    // Idempotent: another run changes nothing, and plans nothing.
    assert!(!run_setup(&client, &slot, &dsn, &tables).await);
    assert_eq!(catalog_state(&client).await, after_printed);
    assert!(plan_setup(&client, &slot, &dsn, &tables).await.is_empty());

    // The same from scratch through the library, in a second database with
    // its own slot: same shape of state.
    let (db2, client2) = fresh_db(&cluster, "setup_lib", SCHEMA).await;
    let slot2 = slot_name("dms_slot_02");
    let dsn2 = cluster.conninfo(&db2);
    assert!(run_setup(&client2, &slot2, &dsn2, &tables).await);
    let first = catalog_state(&client2).await;
    assert!(!run_setup(&client2, &slot2, &dsn2, &tables).await);
    assert_eq!(catalog_state(&client2).await, first);
    let members = |state: &[String]| -> Vec<String> {
        state
            .iter()
            .filter(|r| r.starts_with("member|"))
            .map(|r| r.replace("dms_slot_02", "dms_slot_01"))
            .collect()
    };
    assert_eq!(members(&first), members(&after_printed));
}
