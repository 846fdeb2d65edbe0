//! `pgmig check` (the preflight library) against real servers.
//!
//! A well-configured PG15 source with its streaming replica and a PG16
//! target passes with every check Ok; the same servers then grow the data
//! findings, foreign replication slots (one held active by
//! `pg_recvlogical`) and a target that already holds data. A misconfigured
//! PG15 source (no pglogical, `wal_level=replica`), a replica of another
//! primary, a PG12 target and an unreachable target each give the blocker
//! that names them.

use std::collections::BTreeSet;
use std::time::Duration;

use pgmig_core::{ServerRole, ServerVersion};
use pgmig_pglogical::preflight::{self, CheckOptions, Endpoint, Finding, Report, Severity, ids};
use pgmig_testkit::{
    Cluster, ClusterSpec, LAB_HOST, LAB_SUPERUSER, Lab, free_port, skip_unless_available,
};
use tokio_postgres::{Client, NoTls};

const WAIT: Duration = Duration::from_secs(30);

fn ids_with(findings: &[Finding], severity: Severity) -> BTreeSet<&'static str> {
    findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.check)
        .collect()
}

fn one<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.check == check).collect();
    assert_eq!(matching.len(), 1, "{check}: {findings:#?}");
    matching[0]
}

/// Connects as `user` (trust authentication in the lab).
async fn connect_as(cluster: &Cluster, db: &str, user: &str) -> Client {
    let conninfo = format!(
        "host={LAB_HOST} port={} user={user} dbname={db}",
        cluster.port()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn well_configured_servers_pass_then_data_slots_and_a_full_target_are_reported() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16);
    let ((source, replica), target) = tokio::join!(
        async {
            let source = Lab::source_pg15().await.expect("source");
            let replica = source.create_replica().await.expect("replica");
            (source, replica)
        },
        async { Cluster::primary(16).await.expect("target") },
    );
    let (db, target_db) = tokio::join!(
        source.create_database("preflight"),
        target.create_database("preflight")
    );
    let (db, target_db) = (db.unwrap(), target_db.unwrap());
    source
        .execute(&db, "CREATE EXTENSION pglogical")
        .await
        .expect("create extension");
    let src = source.connect(&db).await.unwrap();
    let version = ServerVersion::query(&src).await.unwrap();
    let head = pgmig_core::admin::current_wal_lsn(&src, version)
        .await
        .unwrap();
    replica
        .wait_for_replay(head.0, WAIT)
        .await
        .expect("replica catches up");
    let rep = replica.connect(&db).await.unwrap();
    let tgt = target.connect(&target_db).await.unwrap();

    // 1. Everything in order: every check id is Ok, nothing else.
    let opts = CheckOptions::new(2).pgmig_slot_names(["dms_slot_01", "dms_slot_02"]);
    let report = preflight::run_checks(
        &src,
        Endpoint::Connected(&rep),
        Endpoint::Connected(&tgt),
        &opts,
    )
    .await
    .expect("run checks");
    assert!(!report.has_blockers(), "{}", report.render_text());
    let all: BTreeSet<&'static str> = ids::ALL.iter().copied().collect();
    assert_eq!(
        ids_with(&report.findings, Severity::Ok),
        all,
        "{}",
        report.render_text()
    );
    assert_eq!(report.worst(), Some(Severity::Ok));
    assert!(
        one(&report.findings, ids::SOURCE_PGLOGICAL_EXTENSION)
            .summary
            .contains("pglogical 2."),
        "{}",
        report.render_text()
    );
    assert!(
        one(&report.findings, ids::REPLICA_STREAMING)
            .summary
            .starts_with("streaming")
    );
    assert!(
        one(&report.findings, ids::REPLICA_LAG)
            .summary
            .contains("bytes")
    );
    assert!(
        one(&report.findings, ids::TARGET_TLS)
            .summary
            .contains("not encrypted")
    );

    let text = report.render_text();
    assert!(text.starts_with("SERVER"), "{text}");
    for id in ids::ALL {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
    assert!(
        text.contains(&format!("0 blockers, 0 warnings, {} ok", ids::ALL.len())),
        "{text}"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["findings"][0]["check"], "source.version");
    assert_eq!(value["findings"][0]["severity"], "ok");
    assert_eq!(value["findings"][0]["server"], "source");

    // 2. Data that logical replication cannot carry as is, each named.
    let data_db = source.create_database("preflight_data").await.unwrap();
    source
        .execute(
            &data_db,
            r#"
            CREATE TABLE public.audit (ts timestamptz, msg text);
            CREATE SCHEMA "Sales";
            CREATE TABLE "Sales"."Order Items" (sku text, qty int);
            CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);
            CREATE UNIQUE INDEX users_email_key ON public.users (email);
            CREATE UNLOGGED TABLE public.scratch (k int PRIMARY KEY);
            CREATE TABLE public.fine (id bigint PRIMARY KEY);
            SELECT lo_from_bytea(0, 'a large object');
            "#,
        )
        .await
        .unwrap();
    let data_client = source.connect(&data_db).await.unwrap();
    let data = preflight::check_data(&data_client).await.unwrap();
    let no_pk: Vec<&str> = data
        .iter()
        .filter(|f| f.check == ids::DATA_PRIMARY_KEY)
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(no_pk.len(), 2, "{data:#?}");
    assert!(
        no_pk[0].starts_with(r#""Sales"."Order Items" has no primary key"#),
        "{no_pk:?}"
    );
    assert!(
        no_pk[1].starts_with("public.audit has no primary key"),
        "{no_pk:?}"
    );
    assert_eq!(
        one(&data, ids::DATA_UNIQUE_INDEXES).summary,
        "public.users has a primary key (id) and unique index users_email_key (email)"
    );
    assert!(
        one(&data, ids::DATA_UNLOGGED)
            .summary
            .starts_with("public.scratch is unlogged")
    );
    let lo = one(&data, ids::DATA_LARGE_OBJECTS);
    assert!(lo.summary.starts_with("1 large object "), "{}", lo.summary);
    assert!(
        data.iter()
            .all(|f| f.severity == Severity::Warn && f.fix.is_some()),
        "{data:#?}"
    );

    // 3. Slots: pgmig's own is not listed; a stale one is; an active one is loud.
    for slot in ["dms_slot_01", "foreign_cdc", "stale_slot"] {
        src.execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&slot],
        )
        .await
        .expect("create slot");
    }
    let recvlogical = source
        .hold_slot_active(&db, "foreign_cdc", WAIT)
        .await
        .unwrap();
    let pid: i32 = src
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'foreign_cdc'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let slots = preflight::check_existing_slots(&src, &opts.pgmig_slot_names)
        .await
        .unwrap();
    assert_eq!(slots.len(), 2, "{slots:#?}");
    assert!(slots.iter().all(|f| f.severity == Severity::Warn));
    assert!(slots.iter().all(|f| !f.summary.contains("dms_slot_01")));
    assert!(
        slots[0].summary.starts_with(&format!(
            "ACTIVE: someone else may be using logical replication: slot foreign_cdc, pid {pid}, plugin test_decoding"
        )),
        "{}",
        slots[0].summary
    );
    assert!(
        slots[1]
            .summary
            .starts_with("slot stale_slot (logical, plugin test_decoding) exists and is inactive")
    );
    assert!(
        slots[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("pg_drop_replication_slot('stale_slot')")
    );
    // Capacity counts the two foreign slots on top of the plan, not pgmig's.
    let again = preflight::run_checks(
        &src,
        Endpoint::Connected(&rep),
        Endpoint::Connected(&tgt),
        &opts,
    )
    .await
    .unwrap()
    .findings;
    let capacity = one(&again, ids::SOURCE_MAX_REPLICATION_SLOTS);
    assert_eq!(capacity.severity, Severity::Ok);
    assert!(
        capacity
            .summary
            .contains("(2 planned + 2 other slots already there)"),
        "{}",
        capacity.summary
    );
    assert_eq!(
        ids_with(&again, Severity::Warn),
        BTreeSet::from([ids::SOURCE_EXISTING_SLOTS])
    );
    // check_source alone counts every existing slot as someone else's.
    let alone = preflight::check_source(&src, 2).await.unwrap();
    assert!(
        one(&alone, ids::SOURCE_MAX_REPLICATION_SLOTS)
            .summary
            .contains("(2 planned + 3 other slots already there)")
    );
    drop(recvlogical);

    // 4. The target: pgmig's own state is fine; anyone else's table is not.
    target
        .execute(
            &target_db,
            "CREATE SCHEMA pgmig; CREATE TABLE pgmig.step_log (id int PRIMARY KEY)",
        )
        .await
        .unwrap();
    let with_state = preflight::check_target(&tgt, version).await.unwrap();
    let empty = one(&with_state, ids::TARGET_EMPTY);
    assert_eq!(empty.severity, Severity::Ok);
    assert!(
        empty.summary.contains("pgmig's own state"),
        "{}",
        empty.summary
    );
    target
        .execute(&target_db, "CREATE TABLE public.leftover (id int)")
        .await
        .unwrap();
    let full = preflight::check_target(&tgt, version).await.unwrap();
    assert_eq!(
        ids_with(&full, Severity::Blocker),
        BTreeSet::from([ids::TARGET_EMPTY])
    );
    let blocker = one(&full, ids::TARGET_EMPTY);
    assert_eq!(
        blocker.summary,
        "target already holds data: 1 user table (public.leftover)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn misconfigured_source_foreign_replica_old_and_missing_targets_are_blockers() {
    skip_unless_available!(12, 15);
    let (source, (other, other_replica), old_target) = tokio::join!(
        async {
            ClusterSpec::new(15)
                .label("bare-source")
                .setting("wal_level", "replica")
                .start()
                .await
                .expect("misconfigured source")
        },
        async {
            let other = Cluster::primary(15).await.expect("other primary");
            let replica = other.create_replica().await.expect("other replica");
            (other, replica)
        },
        async { Cluster::primary(12).await.expect("PG12 target") },
    );
    let (db, target_db) = tokio::join!(
        source.create_database("preflight"),
        old_target.create_database("preflight")
    );
    let (db, target_db) = (db.unwrap(), target_db.unwrap());
    let src = source.connect(&db).await.unwrap();
    let version = ServerVersion::query(&src).await.unwrap();

    // The source alone: the exact blockers, with the postgresql.conf lines.
    let found = preflight::check_source(&src, 2).await.unwrap();
    assert_eq!(
        ids_with(&found, Severity::Blocker),
        BTreeSet::from([ids::SOURCE_SHARED_PRELOAD_LIBRARIES, ids::SOURCE_WAL_LEVEL,]),
        "{found:#?}"
    );
    let wal = one(&found, ids::SOURCE_WAL_LEVEL);
    assert!(
        wal.summary.starts_with("wal_level is replica"),
        "{}",
        wal.summary
    );
    let fix = wal.fix.as_deref().unwrap();
    assert!(
        fix.contains("wal_level = logical") && fix.contains("restart needed"),
        "{fix}"
    );
    let preload = one(&found, ids::SOURCE_SHARED_PRELOAD_LIBRARIES);
    let fix = preload.fix.as_deref().unwrap();
    assert!(
        fix.contains("shared_preload_libraries = 'pglogical'"),
        "{fix}"
    );
    assert!(fix.contains("restart needed"), "{fix}");
    // Installable: `pgmig setup` creates it, so only a warning.
    let extension = one(&found, ids::SOURCE_PGLOGICAL_EXTENSION);
    assert_eq!(extension.severity, Severity::Warn);
    assert!(
        extension
            .fix
            .as_deref()
            .unwrap()
            .contains("CREATE EXTENSION pglogical;")
    );
    // Defaults: wal_sender_timeout 60s and track_commit_timestamp off warn.
    assert_eq!(
        ids_with(&found, Severity::Warn),
        BTreeSet::from([
            ids::SOURCE_WAL_SENDER_TIMEOUT,
            ids::SOURCE_TRACK_COMMIT_TIMESTAMP,
            ids::SOURCE_PGLOGICAL_EXTENSION,
        ])
    );
    assert!(
        one(&found, ids::SOURCE_WAL_SENDER_TIMEOUT)
            .fix
            .as_deref()
            .unwrap()
            .contains("wal_sender_timeout = 0")
    );

    // A plain role: its privileges are named, and hidden settings do not panic.
    source
        .execute(&db, "CREATE ROLE plain LOGIN")
        .await
        .unwrap();
    let plain = connect_as(&source, &db, "plain").await;
    let as_plain = preflight::check_source(&plain, 2).await.unwrap();
    let privileges = one(&as_plain, ids::SOURCE_PRIVILEGES);
    assert_eq!(privileges.severity, Severity::Blocker);
    assert!(
        privileges.summary.contains("role plain is not a superuser")
            && privileges
                .summary
                .contains("lacks the REPLICATION privilege"),
        "{}",
        privileges.summary
    );
    assert!(
        privileges
            .fix
            .as_deref()
            .unwrap()
            .contains("GRANT rds_superuser TO \"plain\"")
    );
    let hidden = one(&as_plain, ids::SOURCE_SHARED_PRELOAD_LIBRARIES);
    assert_eq!(hidden.severity, Severity::Blocker);
    assert!(hidden.summary.contains("not visible"), "{}", hidden.summary);

    // A replica of another primary; and a primary given as the replica.
    let foreign_replica = other_replica.connect("postgres").await.unwrap();
    let found = preflight::check_replica(&foreign_replica, &src)
        .await
        .unwrap();
    assert_eq!(
        ids_with(&found, Severity::Blocker),
        BTreeSet::from([ids::REPLICA_SYSTEM_IDENTIFIER]),
        "{found:#?}"
    );
    let theirs = pgmig_core::admin::system_identifier(&foreign_replica)
        .await
        .unwrap();
    let ours = pgmig_core::admin::system_identifier(&src).await.unwrap();
    assert_ne!(theirs, ours);
    assert_eq!(
        one(&found, ids::REPLICA_SYSTEM_IDENTIFIER).summary,
        format!(
            "the replica streams from a different primary: system identifier {theirs} ≠ {ours} (source)"
        )
    );
    let other_primary = other.connect("postgres").await.unwrap();
    let found = preflight::check_replica(&other_primary, &src)
        .await
        .unwrap();
    assert_eq!(
        ids_with(&found, Severity::Blocker),
        BTreeSet::from([ids::REPLICA_IN_RECOVERY, ids::REPLICA_SYSTEM_IDENTIFIER]),
        "{found:#?}"
    );
    assert!(
        one(&found, ids::REPLICA_IN_RECOVERY)
            .summary
            .starts_with("not a standby")
    );

    // A target older than the source.
    let old = old_target.connect(&target_db).await.unwrap();
    let found = preflight::check_target(&old, version).await.unwrap();
    assert_eq!(
        ids_with(&found, Severity::Blocker),
        BTreeSet::from([ids::TARGET_VERSION]),
        "{found:#?}"
    );
    let blocker = one(&found, ids::TARGET_VERSION);
    assert!(
        blocker
            .summary
            .starts_with("the target runs PostgreSQL 12."),
        "{}",
        blocker.summary
    );
    assert_eq!(
        blocker.fix.as_deref(),
        Some("use a target of PostgreSQL 15 or newer")
    );

    // The whole run: the same blockers together; an unreachable target and
    // a missing replica are blockers too, not errors.
    let report = preflight::run_checks(
        &src,
        Endpoint::Connected(&foreign_replica),
        Endpoint::Connected(&old),
        &CheckOptions::new(2),
    )
    .await
    .unwrap();
    assert_eq!(
        ids_with(&report.findings, Severity::Blocker),
        BTreeSet::from([
            ids::SOURCE_SHARED_PRELOAD_LIBRARIES,
            ids::SOURCE_WAL_LEVEL,
            ids::REPLICA_SYSTEM_IDENTIFIER,
            ids::TARGET_VERSION,
        ]),
        "{}",
        report.render_text()
    );
    let text = report.render_text();
    assert!(
        text.contains("BLOCKER") && text.contains("fix: set in postgresql.conf:"),
        "{text}"
    );
    assert!(text.contains("4 blockers"), "{text}");

    let refused = tokio_postgres::connect(
        &format!(
            "host={LAB_HOST} port={} user={LAB_SUPERUSER} dbname=postgres connect_timeout=5",
            free_port().unwrap()
        ),
        NoTls,
    )
    .await
    .map(|(client, _connection)| client);
    let report = preflight::run_checks(
        &src,
        Endpoint::<Client>::NotConfigured,
        Endpoint::from_result(&refused),
        &CheckOptions::new(1),
    )
    .await
    .unwrap();
    let missing = one(&report.findings, ids::REPLICA_REACHABLE);
    assert_eq!(missing.severity, Severity::Blocker);
    assert!(missing.fix.as_deref().unwrap().contains("PGMIG_REPLICA"));
    let unreachable = one(&report.findings, ids::TARGET_REACHABLE);
    assert_eq!(unreachable.severity, Severity::Blocker);
    assert!(
        unreachable.summary.starts_with("cannot connect: "),
        "{}",
        unreachable.summary
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.server != ServerRole::Replica || f.check == ids::REPLICA_REACHABLE)
    );
}
