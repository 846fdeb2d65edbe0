//! Catalog introspection against real servers: keys, unique indexes,
//! generated and dropped columns, partitions, unlogged tables, quoted names,
//! sequences — on PG15 (the source major) and PG10 (no generated columns).

use pgmig_core::catalog::{self, ReplicaIdentity, TableKind};
use pgmig_core::{QualifiedTable, ServerVersion};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigserial PRIMARY KEY, sku text NOT NULL, qty int);
CREATE TABLE public."user" (id int PRIMARY KEY, email text NOT NULL UNIQUE, nick text);
CREATE UNIQUE INDEX user_nick_lower ON public."user" (lower(nick));
CREATE TABLE public.audit (ts timestamptz, msg text);
CREATE UNLOGGED TABLE public.scratch (k int PRIMARY KEY);
CREATE TABLE public.dropped (id int PRIMARY KEY, gone text, kept text);
ALTER TABLE public.dropped DROP COLUMN gone;
CREATE SEQUENCE public.free_seq;
SELECT setval('public.free_seq', 42);
INSERT INTO "Sales"."Order Items" (sku, qty) SELECT 's' || g, g FROM generate_series(1, 5) g;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
ANALYZE;
"#;

/// `modern`: 12 or newer (generated columns, primary keys on partitioned tables).
async fn check(cluster: &Cluster, modern: bool) {
    let generated = modern;
    let db = cluster.create_database("catalog").await.unwrap();
    cluster.execute(&db, SCHEMA).await.unwrap();
    let key = if modern {
        ", PRIMARY KEY (day, city)"
    } else {
        ""
    };
    cluster
        .execute(
            &db,
            &format!(
                "CREATE TABLE public.measure (city int, day date, v int{key}) PARTITION BY RANGE (day); \
                 CREATE TABLE public.measure_2024 PARTITION OF public.measure \
                 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
            ),
        )
        .await
        .unwrap();
    if generated {
        cluster
            .execute(
                &db,
                "CREATE TABLE public.gen (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)",
            )
            .await
            .unwrap();
    }
    let client = cluster.connect(&db).await.unwrap();
    let version = ServerVersion::query(&client).await.unwrap();
    let tables = catalog::list_tables(&client, version).await.unwrap();
    let find = |schema: &str, name: &str| {
        tables
            .iter()
            .find(|t| t.table == QualifiedTable::new(schema, name))
            .unwrap_or_else(|| panic!("{schema}.{name} not listed in {tables:#?}"))
    };

    let mut names: Vec<String> = tables.iter().map(|t| t.table.to_string()).collect();
    names.sort();
    let mut want = vec![
        "\"Sales\".\"Order Items\"",
        "public.audit",
        "public.dropped",
        "public.measure",
        "public.measure_2024",
        "public.scratch",
        "public.\"user\"",
    ];
    if generated {
        want.push("public.gen");
    }
    want.sort();
    assert_eq!(names, want);

    let items = find("Sales", "Order Items");
    assert_eq!(items.kind, TableKind::Table);
    assert_eq!(items.primary_key, vec!["id"]);
    assert_eq!(items.estimated_rows, Some(5));
    assert!(items.table_bytes > 0 && items.total_bytes > items.table_bytes);
    assert_eq!(items.replica_identity, ReplicaIdentity::Default);
    let cols: Vec<_> = items
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.not_null))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("id", "bigint", true),
            ("sku", "text", true),
            ("qty", "integer", false)
        ]
    );

    let user = find("public", "user");
    assert_eq!(user.primary_key, vec!["id"]);
    let uniques: Vec<_> = user
        .unique_indexes
        .iter()
        .map(|u| (u.name.as_str(), u.columns.clone(), u.is_constraint))
        .collect();
    assert_eq!(
        uniques,
        vec![
            ("user_email_key", vec!["email".to_owned()], true),
            ("user_nick_lower", vec![], false),
        ]
    );

    let audit = find("public", "audit");
    assert!(!audit.has_primary_key());
    assert!(audit.unique_indexes.is_empty());
    assert!(find("public", "scratch").unlogged);
    assert!(!audit.unlogged);

    let dropped = find("public", "dropped");
    assert_eq!(dropped.dropped_columns, 1);
    let attnums: Vec<_> = dropped
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.attnum))
        .collect();
    assert_eq!(attnums, vec![("id", 1), ("kept", 3)]);

    let parent = find("public", "measure");
    assert_eq!(parent.kind, TableKind::PartitionedParent);
    let want_key: Vec<&str> = if modern { vec!["day", "city"] } else { vec![] };
    assert_eq!(parent.primary_key, want_key);
    let leaf = find("public", "measure_2024");
    assert_eq!(leaf.kind, TableKind::PartitionLeaf);
    assert_eq!(leaf.parent, Some(QualifiedTable::new("public", "measure")));

    if generated {
        let generated_table = find("public", "gen");
        let copy: Vec<_> = generated_table
            .copy_columns()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(copy, vec!["id", "a"]);
        assert!(
            generated_table
                .columns
                .iter()
                .any(|c| c.name == "b" && c.generated)
        );
    }

    let sequences = catalog::list_sequences(&client).await.unwrap();
    let seqs: Vec<_> = sequences
        .iter()
        .map(|s| {
            (
                s.sequence.to_string(),
                s.owned_by.clone(),
                s.last_value,
                s.is_called,
            )
        })
        .collect();
    assert_eq!(
        seqs,
        vec![
            (
                "\"Sales\".\"Order Items_id_seq\"".to_owned(),
                Some((QualifiedTable::new("Sales", "Order Items"), "id".to_owned())),
                5,
                true
            ),
            ("public.free_seq".to_owned(), None, 42, true),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pg15_catalog() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    check(&source, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg10_catalog() {
    skip_unless_available!(10);
    let source = Cluster::primary(10).await.unwrap();
    check(&source, false).await;
}
