//! `pgmig schema` against real servers: a tricky PG15 schema restored into
//! PG15, 16 and 17 targets (pre-data now, post-data deferred and listed),
//! idempotent on a second run, a dry run that changes nothing, a target that
//! holds other tables refused, a PG10 source dumped with PG15's pg_dump, and
//! the include/exclude filters leaving tables out.

use pgmig_core::config::ConnConfig;
use pgmig_fullload::schema::{
    PreDataAction, SchemaError, SchemaOptions, SchemaReport, stored_sections, transfer_schema,
};
use pgmig_testkit::{Cluster, Lab, skip_unless_available};

const TRICKY_PG15: &str = r#"
CREATE EXTENSION citext;
CREATE EXTENSION pglogical;
CREATE SCHEMA "Sales";
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a int, b text);
CREATE TABLE "Sales"."Order Items" (
    id bigserial PRIMARY KEY,
    "select" text,
    "Qty" app.posint,
    email citext UNIQUE,
    mood app.mood,
    p app.pair,
    total numeric GENERATED ALWAYS AS ("Qty" * 2) STORED
);
CREATE TABLE app."user" (id int PRIMARY KEY, name text);
CREATE TABLE app.orders (id int PRIMARY KEY, user_id int REFERENCES app."user" (id), created date NOT NULL);
CREATE INDEX orders_created_idx ON app.orders (created);
CREATE TABLE app.events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW app.user_names AS SELECT name FROM app."user";
CREATE MATERIALIZED VIEW app.order_counts AS SELECT user_id, count(*) AS n FROM app.orders GROUP BY user_id;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO app."user" VALUES (1, 'a');
INSERT INTO app.orders VALUES (1, 1, '2025-02-02');
REFRESH MATERIALIZED VIEW app.order_counts;
"#;

/// What a PG10 source can have (no generated columns, no keys on
/// partitioned tables).
const PG10_SCHEMA: &str = r#"
CREATE SCHEMA "Legacy";
CREATE TYPE "Legacy".state AS ENUM ('new', 'done');
CREATE DOMAIN "Legacy".code AS text CHECK (length(VALUE) < 10);
CREATE TABLE "Legacy"."Jobs" (id serial PRIMARY KEY, "order" int, code "Legacy".code, state "Legacy".state, ref text UNIQUE);
CREATE TABLE "Legacy".runs (id int PRIMARY KEY, job_id int REFERENCES "Legacy"."Jobs" (id));
CREATE INDEX runs_job_idx ON "Legacy".runs (job_id);
CREATE TABLE "Legacy".log (at date NOT NULL, msg text) PARTITION BY RANGE (at);
CREATE TABLE "Legacy".log_2025 PARTITION OF "Legacy".log FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE VIEW "Legacy".open_jobs AS SELECT id FROM "Legacy"."Jobs" WHERE state = 'new';
CREATE MATERIALIZED VIEW "Legacy".job_count AS SELECT count(*) AS n FROM "Legacy"."Jobs";
"#;

fn conn(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::parse(&format!("{} sslmode=disable", cluster.conninfo(db))).expect("lab conninfo")
}

async fn rows(cluster: &Cluster, db: &str, sql: &str) -> Vec<String> {
    let client = cluster.connect(db).await.unwrap();
    let mut out: Vec<String> = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    out.sort();
    out
}

const USER_SCHEMAS: &str = "NOT IN ('pg_catalog', 'information_schema', 'pgmig', 'pglogical')";

/// Tables, user types, views and materialized views, by name.
async fn shape(cluster: &Cluster, db: &str) -> Vec<String> {
    let sql = format!(
        "SELECT 'table ' || schemaname || '.' || tablename FROM pg_tables WHERE schemaname {USER_SCHEMAS} \
         UNION ALL SELECT 'view ' || schemaname || '.' || viewname FROM pg_views WHERE schemaname {USER_SCHEMAS} \
         UNION ALL SELECT 'matview ' || schemaname || '.' || matviewname FROM pg_matviews WHERE schemaname {USER_SCHEMAS} \
         UNION ALL SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text \
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
          WHERE n.nspname {USER_SCHEMAS} AND n.nspname NOT LIKE 'pg_toast%' \
            AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND \
                 (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')"
    );
    rows(cluster, db, &sql).await
}

/// Everything a second run could change, pgmig's record included.
async fn snapshot(cluster: &Cluster, db: &str) -> Vec<String> {
    let mut all = shape(cluster, db).await;
    all.extend(
        rows(
            cluster,
            db,
            "SELECT 'class ' || c.oid::text || ' ' || n.nspname || '.' || c.relname || ' ' || c.xmin::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             UNION ALL SELECT 'constraint ' || conname || ' ' || contype::text FROM pg_constraint \
              WHERE connamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema')) \
             UNION ALL SELECT 'role ' || rolname FROM pg_roles",
        )
        .await,
    );
    let client = cluster.connect(db).await.unwrap();
    let recorded: Option<String> = client
        .query_opt(
            "SELECT string_agg(name || ' ' || dumped_at::text || ' ' || md5(sql), ', ' ORDER BY name) \
               FROM pgmig.schema_section",
            &[],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.get(0));
    all.push(format!("record {recorded:?}"));
    all
}

fn deferred_names(report: &SchemaReport) -> Vec<String> {
    report.deferred.iter().map(|e| e.describe()).collect()
}

fn assert_deferred(report: &SchemaReport, wanted: &[&str]) {
    let names = deferred_names(report);
    for want in wanted {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:#?}");
    }
}

/// Restores into one target and checks everything there.
async fn restore_tricky_into(source: &Cluster, src_db: &str, target: &Cluster, with_globals: bool) {
    let db = target.create_database("schema_tricky").await.unwrap();
    let opts = SchemaOptions {
        with_globals,
        ..SchemaOptions::default()
    };
    let label = target.label().to_owned();

    // A dry run first: it prints everything and changes nothing.
    let before = snapshot(target, &db).await;
    let dry = transfer_schema(
        &conn(source, src_db),
        &conn(target, &db),
        &SchemaOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(dry.pre_data, PreDataAction::WouldRestore);
    let pre_sql = dry.pre_data_sql.as_deref().unwrap();
    assert!(
        pre_sql.contains(r#"CREATE TABLE "Sales"."Order Items""#),
        "{pre_sql}"
    );
    assert!(!pre_sql.contains("CREATE INDEX"), "{pre_sql}");
    assert!(!pre_sql.contains("pglogical"), "{pre_sql}");
    assert_eq!(
        snapshot(target, &db).await,
        before,
        "{label}: the dry run changed the target"
    );

    let report = transfer_schema(&conn(source, src_db), &conn(target, &db), &opts)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(report.pre_data, PreDataAction::Restored);

    // Tables (leaves too), types, views and materialized views are there…
    assert_eq!(
        shape(target, &db).await,
        shape(source, src_db).await,
        "{label}"
    );
    // …but no keys, indexes, foreign keys or triggers: those are deferred.
    let user_objects = format!(
        "SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname {USER_SCHEMAS} \
         UNION ALL SELECT 'constraint ' || conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
          WHERE n.nspname {USER_SCHEMAS} AND contype IN ('p', 'u', 'f') \
         UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal"
    );
    assert_eq!(
        rows(target, &db, &user_objects).await,
        Vec::<String>::new(),
        "{label}"
    );
    assert_eq!(
        rows(
            target,
            &db,
            "SELECT ispopulated::text FROM pg_matviews WHERE schemaname = 'app'"
        )
        .await,
        ["false"],
        "{label}: the materialized view is refreshed after the load"
    );
    assert_eq!(
        rows(
            target,
            &db,
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql'"
        )
        .await,
        ["citext"],
        "{label}: pglogical is left out"
    );
    assert!(
        report
            .left_out
            .iter()
            .any(|e| e.kind == "EXTENSION" && e.name == "pglogical")
    );
    assert!(
        report
            .left_out
            .iter()
            .any(|e| e.is_builtin_acl() && e.name.contains("pg_wal_replay_pause")),
        "{label}: the grant on pg_wal_replay_pause() is left out: {:?}",
        report.left_out
    );
    assert_deferred(
        &report,
        &[
            "INDEX app orders_created_idx",
            "FK CONSTRAINT app orders orders_user_id_fkey",
            "CONSTRAINT Sales Order Items Order Items_pkey",
            "CONSTRAINT Sales Order Items Order Items_email_key",
            "CONSTRAINT app events events_pkey",
            "TRIGGER app orders orders_touch",
            "MATERIALIZED VIEW DATA app order_counts",
        ],
    );
    // The record in the target names the same objects and keeps the SQL.
    let target_client = target.connect(&db).await.unwrap();
    let stored = stored_sections(&target_client).await.unwrap();
    let post = stored.post_data.expect("post-data recorded");
    assert_eq!(post.objects, report.deferred);
    assert!(post.sql.contains("orders_created_idx"), "{}", post.sql);
    assert!(
        post.sql
            .contains(r#"REFRESH MATERIALIZED VIEW "app"."order_counts""#),
        "{}",
        post.sql
    );
    // The runbook's special case, for DBAs.
    assert_eq!(
        report.unique_rebuilds.len(),
        1,
        "{:?}",
        report.unique_rebuilds
    );
    let rebuild = &report.unique_rebuilds[0];
    assert_eq!(
        rebuild.drop,
        r#"ALTER TABLE "Sales"."Order Items" DROP CONSTRAINT "Order Items_email_key";"#
    );
    assert_eq!(
        rebuild.recreate,
        r#"ALTER TABLE "Sales"."Order Items" ADD CONSTRAINT "Order Items_email_key" UNIQUE (email);"#
    );
    if with_globals {
        let globals = report.globals.as_ref().expect("globals");
        assert!(globals.applied);
        assert!(
            globals.left_out.iter().any(|n| n.contains("REPLICATION")),
            "{globals:?}"
        );
        assert_eq!(
            rows(
                target,
                &db,
                "SELECT rolreplication::text FROM pg_roles WHERE rolname = 'App Reader'"
            )
            .await,
            ["false"],
            "{label}: the role is copied without REPLICATION"
        );
    }

    // A second run changes nothing.
    let before = snapshot(target, &db).await;
    let again = transfer_schema(&conn(source, src_db), &conn(target, &db), &opts)
        .await
        .unwrap_or_else(|e| panic!("{label}: second run: {e}"));
    assert_eq!(again.pre_data, PreDataAction::AlreadyRestored);
    assert_eq!(
        snapshot(target, &db).await,
        before,
        "{label}: the second run changed the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tricky_pg15_schema_restores_into_pg15_16_17() {
    skip_unless_available!(pglogical);
    skip_unless_available!(16, 17);
    let (source, t15, t16, t17) = tokio::join!(
        Lab::source_pg15(),
        Cluster::primary(15),
        Cluster::primary(16),
        Cluster::primary(17)
    );
    let (source, t15, t16, t17) = (source.unwrap(), t15.unwrap(), t16.unwrap(), t17.unwrap());
    let src_db = source.create_database("schema_src").await.unwrap();
    source.execute(&src_db, TRICKY_PG15).await.unwrap();
    source
        .execute("postgres", r#"CREATE ROLE "App Reader" LOGIN REPLICATION"#)
        .await
        .unwrap();
    // The maintenance replica's role may pause replay: a grant on built-in
    // functions, which pg_dump dumps and the targets must not get (the role
    // does not exist on most of them).
    source
        .execute(
            &src_db,
            r#"GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(), pg_wal_replay_resume() TO "App Reader""#,
        )
        .await
        .unwrap();

    tokio::join!(
        restore_tricky_into(&source, &src_db, &t15, false),
        restore_tricky_into(&source, &src_db, &t16, false),
        restore_tricky_into(&source, &src_db, &t17, true),
    );

    // A target that holds other tables is refused, and left as it was.
    let busy = t16.create_database("schema_busy").await.unwrap();
    t16.execute(&busy, "CREATE TABLE public.unrelated (id int)")
        .await
        .unwrap();
    let before = snapshot(&t16, &busy).await;
    let err = transfer_schema(
        &conn(&source, &src_db),
        &conn(&t16, &busy),
        &SchemaOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SchemaError::TargetNotEmpty { .. }), "{err:?}");
    assert!(err.to_string().contains("public.unrelated"), "{err}");
    assert!(err.is_refusal());
    assert_eq!(snapshot(&t16, &busy).await, before);
    // A restore that fails half-way changes nothing (one transaction).
    let clash = t15.create_database("schema_clash").await.unwrap();
    t15.execute(&clash, "CREATE SCHEMA app").await.unwrap();
    let before = snapshot(&t15, &clash).await;
    let err = transfer_schema(
        &conn(&source, &src_db),
        &conn(&t15, &clash),
        &SchemaOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SchemaError::ToolFailed { tool, stderr, .. }
            if tool == "psql" && stderr.contains("already exists")),
        "{err:?}"
    );
    assert_eq!(snapshot(&t15, &clash).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn pg10_source_dumped_with_pg15_restores_into_pg15_and_16() {
    skip_unless_available!(10, 15, 16);
    let (source, t15, t16) = tokio::join!(
        Cluster::primary(10),
        Cluster::primary(15),
        Cluster::primary(16)
    );
    let (source, t15, t16) = (source.unwrap(), t15.unwrap(), t16.unwrap());
    let src_db = source.create_database("schema_pg10").await.unwrap();
    source.execute(&src_db, PG10_SCHEMA).await.unwrap();

    for target in [&t15, &t16] {
        let db = target.create_database("schema_from10").await.unwrap();
        let report = transfer_schema(
            &conn(&source, &src_db),
            &conn(target, &db),
            &SchemaOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", target.label()));
        assert_eq!(report.pre_data, PreDataAction::Restored);
        assert_eq!(report.source_version / 10_000, 10);
        assert_eq!(shape(target, &db).await, shape(&source, &src_db).await);
        assert_deferred(
            &report,
            &[
                "INDEX Legacy runs_job_idx",
                "FK CONSTRAINT Legacy runs runs_job_id_fkey",
                "CONSTRAINT Legacy Jobs Jobs_pkey",
                "CONSTRAINT Legacy Jobs Jobs_ref_key",
                "MATERIALIZED VIEW DATA Legacy job_count",
            ],
        );
        assert_eq!(
            report
                .unique_rebuilds
                .iter()
                .map(|r| r.drop.as_str())
                .collect::<Vec<_>>(),
            [r#"ALTER TABLE "Legacy"."Jobs" DROP CONSTRAINT "Jobs_ref_key";"#]
        );
        let before = snapshot(target, &db).await;
        let again = transfer_schema(
            &conn(&source, &src_db),
            &conn(target, &db),
            &SchemaOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.pre_data, PreDataAction::AlreadyRestored);
        assert_eq!(snapshot(target, &db).await, before);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_leave_tables_out_of_the_schema() {
    use pgmig_core::QualifiedTable;
    use pgmig_core::plan::Filters;
    skip_unless_available!(15);
    let cluster = Cluster::primary(15).await.unwrap();
    let src_db = cluster.create_database("schema_filtered").await.unwrap();
    cluster
        .execute(
            &src_db,
            "CREATE SCHEMA keep; CREATE SCHEMA skip; \
             CREATE TABLE keep.a (id int PRIMARY KEY); \
             CREATE TABLE keep.b (id int PRIMARY KEY, a_id int REFERENCES keep.a (id)); \
             CREATE TABLE skip.c (id int PRIMARY KEY, u text UNIQUE); \
             CREATE TABLE public.d (id int); \
             CREATE TABLE keep.parted (at date NOT NULL) PARTITION BY RANGE (at); \
             CREATE TABLE skip.parted_2025 PARTITION OF keep.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01'); \
             CREATE TABLE skip.events (at date NOT NULL) PARTITION BY RANGE (at); \
             CREATE TABLE keep.events_2025 PARTITION OF skip.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        )
        .await
        .unwrap();
    let tables = "SELECT schemaname || '.' || tablename FROM pg_tables \
                  WHERE schemaname IN ('keep', 'skip', 'public')";
    let filters = |include: &[&str], exclude: &[&str]| Filters {
        include: include.iter().map(|p| p.parse().unwrap()).collect(),
        exclude: exclude.iter().map(|p| p.parse().unwrap()).collect(),
    };
    let names = |report: &SchemaReport| {
        report
            .excluded_tables
            .iter()
            .map(QualifiedTable::to_string)
            .collect::<Vec<_>>()
    };

    // Exclusions: skip.* and public.d are left out. A partition follows its
    // root table: keep.events_2025 goes with skip.events, and
    // skip.parted_2025 stays with keep.parted.
    let db = cluster.create_database("schema_excluded").await.unwrap();
    let opts = SchemaOptions {
        filters: filters(&[], &["skip.*", "public.d"]),
        ..SchemaOptions::default()
    };
    let dry = transfer_schema(
        &conn(&cluster, &src_db),
        &conn(&cluster, &db),
        &SchemaOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    let want_excluded = ["keep.events_2025", "public.d", "skip.c", "skip.events"];
    assert_eq!(names(&dry), want_excluded);
    let report = transfer_schema(&conn(&cluster, &src_db), &conn(&cluster, &db), &opts)
        .await
        .unwrap();
    assert_eq!(report.pre_data, PreDataAction::Restored);
    assert_eq!(names(&report), want_excluded);
    assert_eq!(
        rows(&cluster, &db, tables).await,
        ["keep.a", "keep.b", "keep.parted", "skip.parted_2025"]
    );
    assert!(
        !deferred_names(&report).iter().any(|n| n.contains("skip")),
        "{:#?}",
        report.deferred
    );
    assert!(
        report.unique_rebuilds.is_empty(),
        "{:?}",
        report.unique_rebuilds
    );
    let again = transfer_schema(&conn(&cluster, &src_db), &conn(&cluster, &db), &opts)
        .await
        .unwrap();
    assert_eq!(again.pre_data, PreDataAction::AlreadyRestored);

    // An include filter: only keep.a.
    let db = cluster.create_database("schema_included").await.unwrap();
    let report = transfer_schema(
        &conn(&cluster, &src_db),
        &conn(&cluster, &db),
        &SchemaOptions {
            filters: filters(&["keep.a"], &[]),
            ..SchemaOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows(&cluster, &db, tables).await, ["keep.a"]);
    assert!(names(&report).contains(&"keep.b".to_owned()));
    assert!(!names(&report).contains(&"keep.a".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_mapping_passwords_are_masked_and_post_data_follows_the_source() {
    skip_unless_available!(15);
    let cluster = Cluster::primary(15).await.unwrap();
    let src_db = cluster.create_database("schema_mapping_src").await.unwrap();
    cluster
        .execute(
            &src_db,
            "CREATE EXTENSION postgres_fdw; \
             CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', dbname 'd'); \
             CREATE USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS (user 'u', password 'it''s s3cret'); \
             CREATE TABLE public.t (id int PRIMARY KEY, v int);",
        )
        .await
        .unwrap();
    let db = cluster.create_database("schema_mapping").await.unwrap();
    let opts = SchemaOptions::default();
    let dry = transfer_schema(
        &conn(&cluster, &src_db),
        &conn(&cluster, &db),
        &SchemaOptions {
            dry_run: true,
            ..SchemaOptions::default()
        },
    )
    .await
    .unwrap();
    let pre = dry.pre_data_sql.as_deref().expect("dry run SQL");
    assert!(!pre.contains("s3cret"), "{pre}");
    assert!(pre.contains("password '********'"), "{pre}");
    assert!(!serde_json::to_string(&dry).unwrap().contains("s3cret"));

    let report = transfer_schema(&conn(&cluster, &src_db), &conn(&cluster, &db), &opts)
        .await
        .unwrap();
    assert_eq!(report.pre_data, PreDataAction::Restored);
    assert!(!report.post_data_updated);
    // psql got the real password; the record holds the masked one.
    assert_eq!(
        rows(
            &cluster,
            &db,
            "SELECT unnest(umoptions) FROM pg_user_mappings WHERE srvname = 'remote'"
        )
        .await,
        ["password=it's s3cret", "user=u"]
    );
    let client = cluster.connect(&db).await.unwrap();
    let stored = stored_sections(&client).await.unwrap();
    let stored_pre = stored.pre_data.expect("pre-data recorded").sql;
    assert!(!stored_pre.contains("s3cret"), "{stored_pre}");

    // The source gains an index: the pre-data still matches, the recorded
    // post-data follows the source.
    cluster
        .execute(&src_db, "CREATE INDEX t_v_idx ON public.t (v);")
        .await
        .unwrap();
    let again = transfer_schema(&conn(&cluster, &src_db), &conn(&cluster, &db), &opts)
        .await
        .unwrap();
    assert_eq!(again.pre_data, PreDataAction::AlreadyRestored);
    assert!(again.post_data_updated);
    let stored = stored_sections(&client).await.unwrap();
    let post = stored.post_data.expect("post-data recorded");
    assert!(post.sql.contains("t_v_idx"), "{}", post.sql);
    assert!(
        post.objects.iter().any(|o| o.name.contains("t_v_idx")),
        "{:?}",
        post.objects
    );
    let third = transfer_schema(&conn(&cluster, &src_db), &conn(&cluster, &db), &opts)
        .await
        .unwrap();
    assert_eq!(third.pre_data, PreDataAction::AlreadyRestored);
    assert!(!third.post_data_updated);
}
