//! The planner against a real PG15 source: the shared bench workload at a
//! tiny scale plus tricky names (quoted mixed case, reserved words, several
//! schemas, a partitioned table, an unlogged table).

use std::process::Command;
use std::time::{Duration, Instant};

use pgmig_core::catalog::{self, TableInfo};
use pgmig_core::plan::{Filters, Plan, PlanError, PlannedTable, SlotRole, WriteRates, write_rates};
use pgmig_core::{QualifiedTable, ServerVersion};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";
const DATASET: &str = "/work/shared/bench/dataset.sql";

const TRICKY: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigserial PRIMARY KEY, sku text NOT NULL);
CREATE TABLE public."select" (id int PRIMARY KEY, "from" text);
CREATE SCHEMA other;
CREATE TABLE other."MixedCase" (v int);
CREATE TABLE public.measure (city int, day date, v int, PRIMARY KEY (day, city)) PARTITION BY RANGE (day);
CREATE TABLE public.measure_2024 PARTITION OF public.measure FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measure_2025 PARTITION OF public.measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE UNLOGGED TABLE public.scratch (k int PRIMARY KEY);
INSERT INTO "Sales"."Order Items" (sku) SELECT 's' || g FROM generate_series(1, 100) g;
ANALYZE;
"#;

fn t(schema: &str, name: &str) -> QualifiedTable {
    QualifiedTable::new(schema, name)
}

/// A fresh database with the bench workload (scale 0.01) and the tricky names.
async fn load(source: &Cluster) -> String {
    let db = source.create_database("plan").await.unwrap();
    let status = Command::new(PSQL)
        .args(["-X", "-q", "-v", "scale=0.01", "-f", DATASET])
        .arg(source.conninfo(&db))
        .status()
        .expect("run psql");
    assert!(status.success(), "loading {DATASET}");
    source.execute(&db, TRICKY).await.unwrap();
    db
}

async fn catalog(source: &Cluster, db: &str) -> (Vec<TableInfo>, WriteRates) {
    let client = source.connect(db).await.unwrap();
    let version = ServerVersion::query(&client).await.unwrap();
    let tables = catalog::list_tables(&client, version).await.unwrap();
    // The statistics arrive shortly after the writing sessions end.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rates = write_rates(&client).await.unwrap();
        if rates.get(&t("bench", "events")).copied().unwrap_or(0) > 0 || Instant::now() > deadline {
            return (tables, rates);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn slot_of<'a>(plan: &'a Plan, table: &QualifiedTable) -> &'a pgmig_core::plan::SlotGroup {
    plan.tables()
        .find(|(_, t)| &t.table == table)
        .map(|(g, _)| g)
        .unwrap_or_else(|| panic!("{table} is not planned"))
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_the_bench_workload_and_tricky_names() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    let db = load(&source).await;
    let (tables, rates) = catalog(&source, &db).await;
    assert!(
        rates.get(&t("bench", "events")).copied().unwrap_or(0) >= 10_000,
        "write rate counts the inserts: {rates:?}"
    );

    let plan = Plan::build(&tables, &rates, 6, &Filters::default()).unwrap();
    plan.validate_against(&tables).unwrap();
    assert_eq!(
        plan,
        Plan::build(&tables, &rates, 6, &Filters::default()).unwrap(),
        "deterministic"
    );
    assert!(plan.slots.len() <= 6);

    // users: primary key + unique email → the special group, email deferred.
    let users = slot_of(&plan, &t("bench", "users"));
    assert_eq!(users.role, SlotRole::PrimaryKeyAndUnique);
    let users_facts = &users.tables[0].facts;
    assert_eq!(users_facts.primary_key, vec!["id".to_owned()]);
    assert_eq!(
        users_facts.unique_indexes,
        vec!["users_email_key".to_owned()]
    );
    assert!(
        plan.deferred.iter().any(|d| d.table == t("bench", "users")
            && d.name == "users_email_key"
            && d.is_constraint)
    );

    // Tables without a primary key share one slot, insert set only.
    let audit = slot_of(&plan, &t("bench", "audit_log"));
    assert_eq!(audit.role, SlotRole::NoPrimaryKey);
    assert_eq!(
        audit.slot,
        slot_of(&plan, &t("other", "MixedCase")).slot,
        "no-PK tables together"
    );
    assert!(
        audit
            .tables
            .iter()
            .all(|t| !t.has_identity_index && t.facts.no_primary_key)
    );

    // The largest and busiest table has a slot of its own.
    let events = slot_of(&plan, &t("bench", "events"));
    assert_eq!(events.role, SlotRole::Dedicated);
    assert_eq!(events.tables.len(), 1);

    // Partition leaves planned, the parent and the unlogged table not.
    slot_of(&plan, &t("public", "measure_2024"));
    slot_of(&plan, &t("public", "measure_2025"));
    slot_of(&plan, &t("Sales", "Order Items"));
    slot_of(&plan, &t("public", "select"));
    assert!(
        plan.tables()
            .all(|(_, p)| p.table != t("public", "measure"))
    );
    assert!(
        plan.tables()
            .all(|(_, p)| p.table != t("public", "scratch"))
    );
    assert_eq!(plan.tables().count(), 8);

    // A stored plan reads back the same.
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);

    // An edited plan naming a missing table is refused, naming it.
    let mut edited = plan.clone();
    edited.slots[0].tables.push(PlannedTable {
        table: t("bench", "gone"),
        has_identity_index: true,
        bytes: 0,
        facts: Default::default(),
    });
    let err = edited.validate_against(&tables).unwrap_err();
    assert!(matches!(err, PlanError::UnknownTable { .. }));
    assert!(err.to_string().contains("bench.gone"), "{err}");

    // One left out is refused too, naming it.
    let mut edited = plan.clone();
    let group = edited
        .slots
        .iter_mut()
        .find(|g| {
            g.tables
                .iter()
                .any(|p| p.table == t("Sales", "Order Items"))
        })
        .unwrap();
    group
        .tables
        .retain(|p| p.table != t("Sales", "Order Items"));
    let err = edited.validate_against(&tables).unwrap_err();
    assert!(
        err.to_string().contains("\"Sales\".\"Order Items\""),
        "{err}"
    );

    // Moving a table between slots is fine.
    let mut moved = plan.clone();
    let table = moved.slots[0].tables.remove(0);
    moved.slots[1].tables.push(table);
    moved.validate_against(&tables).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_exclude_what_they_say() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    let db = load(&source).await;
    let (tables, rates) = catalog(&source, &db).await;

    let planned = |filters: &Filters| -> Vec<QualifiedTable> {
        let plan = Plan::build(&tables, &rates, 6, filters).unwrap();
        plan.validate_against(&tables).unwrap();
        let mut names: Vec<QualifiedTable> = plan.tables().map(|(_, t)| t.table.clone()).collect();
        names.sort();
        names
    };
    let only_bench = Filters {
        include: vec!["bench.*".parse().unwrap()],
        exclude: vec![],
    };
    assert_eq!(
        planned(&only_bench),
        vec![
            t("bench", "audit_log"),
            t("bench", "events"),
            t("bench", "users")
        ]
    );
    let no_bench = Filters {
        include: vec![],
        exclude: vec![
            "bench.*".parse().unwrap(),
            // Partitions follow their root table: excluding it excludes them.
            "public.measure".parse().unwrap(),
        ],
    };
    assert_eq!(
        planned(&no_bench),
        vec![
            t("Sales", "Order Items"),
            t("other", "MixedCase"),
            t("public", "select")
        ]
    );
    let quoted = Filters {
        include: vec![
            r#""Sales".*"#.parse().unwrap(),
            r#"other."MixedCase""#.parse().unwrap(),
        ],
        exclude: vec![],
    };
    assert_eq!(
        planned(&quoted),
        vec![t("Sales", "Order Items"), t("other", "MixedCase")]
    );

    // A plan whose filters exclude a table it carries is refused.
    let mut plan = Plan::build(&tables, &rates, 6, &Filters::default()).unwrap();
    plan.filters = no_bench;
    let err = plan.validate_against(&tables).unwrap_err();
    assert!(err.to_string().contains("bench."), "{err}");
}
