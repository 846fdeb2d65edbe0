//! Deferred post-data against real servers: the index work read from a
//! source's catalog (10, 12, 15, 16, 17) rebuilds, on an empty copy of the
//! tables, exactly the source's index and constraint definitions (keys,
//! a deferrable unique constraint, an exclusion constraint, expression,
//! partial, INCLUDE and gin indexes, quoted mixed-case names, partition
//! leaves); `missing_objects` reports exactly what is absent or invalid;
//! and on 15 and 10 (dumped with PG15's `pg_dump`) the stored post-data,
//! split, gives back the whole schema once its remaining script has run.

use pgmig_core::QualifiedTable;
use pgmig_core::config::ConnConfig;
use pgmig_fullload::load::postdata::{
    TableIndexWork, index_work, missing_objects, split_post_data,
};
use pgmig_fullload::schema::{PreDataAction, SchemaOptions, stored_sections, transfer_schema};
use pgmig_testkit::{Cluster, skip_unless_available};
use tokio_postgres::Client;

/// The tables: what pre-data gives (NOT NULL key columns included).
fn tables_ddl(major: u32) -> String {
    let mut sql = String::from(
        r#"
CREATE SCHEMA bench;
CREATE SCHEMA "Mixed Case";
CREATE TABLE bench.users (id int NOT NULL, email text);
CREATE TABLE bench.events (id bigint NOT NULL, user_id int, doc jsonb, r int4range, code text, n int,
    CONSTRAINT events_n_check CHECK (n > 0));
CREATE TABLE "Mixed Case"."Tab ""q"" é" ("Id" int NOT NULL, "Val" text);
CREATE TABLE bench.parted (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE bench.parted_2025 PARTITION OF bench.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
"#,
    );
    if major >= 15 {
        sql.push_str("CREATE TABLE bench.tags (tag text);\n");
    }
    sql
}

/// Indexes and constraints: post-data.
fn keys_ddl(major: u32) -> String {
    let include = if major >= 11 { " INCLUDE (n)" } else { "" };
    let mut sql = format!(
        r#"
ALTER TABLE bench.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE bench.users ADD CONSTRAINT users_id_check CHECK (id > 0) NOT VALID;
ALTER TABLE bench.events ADD CONSTRAINT events_pkey PRIMARY KEY (id) WITH (fillfactor = 90);
ALTER TABLE bench.events ADD CONSTRAINT events_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE bench.events ADD CONSTRAINT events_r_excl EXCLUDE USING gist (r WITH &&) WHERE (n > 0);
ALTER TABLE bench.events ADD CONSTRAINT events_user_id_fkey FOREIGN KEY (user_id) REFERENCES bench.users (id);
CREATE INDEX events_user_id_idx ON bench.events (user_id);
CREATE INDEX events_lower_idx ON bench.events (lower(code)){include} WHERE n > 5;
CREATE INDEX events_doc_idx ON bench.events USING gin (doc jsonb_path_ops);
CREATE INDEX "Events Desc" ON bench.events (n DESC NULLS LAST, code COLLATE "C") WITH (fillfactor = 70);
ALTER TABLE "Mixed Case"."Tab ""q"" é" ADD CONSTRAINT "Pk ""x"" é" PRIMARY KEY ("Id");
CREATE UNIQUE INDEX "Ix é" ON "Mixed Case"."Tab ""q"" é" ("Val") WHERE "Id" > 0;
"#
    );
    if major >= 11 {
        sql.push_str(
            "ALTER TABLE bench.parted ADD CONSTRAINT parted_pkey PRIMARY KEY (id, at);\n\
             CREATE INDEX parted_at_idx ON bench.parted (at);\n",
        );
    } else {
        sql.push_str(
            "ALTER TABLE bench.parted_2025 ADD CONSTRAINT parted_2025_pkey PRIMARY KEY (id, at);\n\
             CREATE INDEX parted_2025_at_idx ON bench.parted_2025 (at);\n",
        );
    }
    if major >= 15 {
        sql.push_str(&format!(
            "ALTER TABLE bench.tags ADD CONSTRAINT tags_tag_key UNIQUE NULLS NOT DISTINCT (tag) \
               USING INDEX TABLESPACE {TABLESPACE};\n\
             CREATE INDEX users_email_idx ON bench.users (email) TABLESPACE {TABLESPACE} \
               WHERE email <> '';\n"
        ));
    }
    sql
}

/// A tablespace of the 15+ clusters (in place: the lab needs no directory).
const TABLESPACE: &str = r#""Fast ts""#;

/// What `pg_dump` keeps inside index and constraint entries, and comments.
const EXTRAS: &str = r#"
COMMENT ON INDEX bench.events_user_id_idx IS 'by user';
COMMENT ON CONSTRAINT events_pkey ON bench.events IS 'the key';
ALTER TABLE bench.events CLUSTER ON events_user_id_idx;
ALTER TABLE bench.users REPLICA IDENTITY USING INDEX users_pkey;
"#;

const DATA: &str = r#"
INSERT INTO bench.users VALUES (1, 'a'), (2, NULL);
INSERT INTO bench.events VALUES
    (1, 1, '{"a": 1}', '[1,5)', 'x', 7),
    (2, 2, '{"b": 2}', '[5,9)', 'y', 3),
    (3, NULL, NULL, NULL, NULL, NULL);
INSERT INTO "Mixed Case"."Tab ""q"" é" VALUES (1, 'one'), (2, 'two');
INSERT INTO bench.parted VALUES (1, '2025-03-01'), (2, '2025-04-01');
"#;

/// The tables the load copies (the partitioned parent too: it gets no work).
fn loaded_tables(major: u32) -> Vec<QualifiedTable> {
    let mut tables = vec![
        QualifiedTable::new("bench", "users"),
        QualifiedTable::new("bench", "events"),
        QualifiedTable::new("Mixed Case", "Tab \"q\" é"),
        QualifiedTable::new("bench", "parted"),
        QualifiedTable::new("bench", "parted_2025"),
    ];
    if major >= 15 {
        tables.push(QualifiedTable::new("bench", "tags"));
    }
    tables
}

/// Everything `missing_objects` reports on a target that has only the tables.
fn all_missing(major: u32) -> Vec<String> {
    let mut all: Vec<String> = [
        "primary key users_pkey on bench.users",
        "check constraint users_id_check on bench.users",
        "primary key events_pkey on bench.events",
        "unique constraint events_code_key on bench.events",
        "exclusion constraint events_r_excl on bench.events",
        "foreign key events_user_id_fkey on bench.events",
        "index bench.events_user_id_idx on bench.events",
        "index bench.events_lower_idx on bench.events",
        "index bench.events_doc_idx on bench.events",
        "index bench.\"Events Desc\" on bench.events",
        "primary key \"Pk \"\"x\"\" é\" on \"Mixed Case\".\"Tab \"\"q\"\" é\"",
        "index \"Mixed Case\".\"Ix é\" on \"Mixed Case\".\"Tab \"\"q\"\" é\"",
        "primary key parted_2025_pkey on bench.parted_2025",
        "index bench.parted_2025_at_idx on bench.parted_2025",
    ]
    .map(String::from)
    .into();
    if major >= 11 {
        all.push("primary key parted_pkey on bench.parted".into());
        all.push("index bench.parted_at_idx on bench.parted".into());
    }
    if major >= 15 {
        all.push("unique constraint tags_tag_key on bench.tags".into());
        all.push("index bench.users_email_idx on bench.users".into());
    }
    all.sort();
    all
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The index and constraint definitions of `tables` as the catalog prints
/// them; `keys_only`: PRIMARY KEY / UNIQUE / EXCLUDE constraints only, and
/// no clustering, replica identity or comments.
async fn definitions(client: &Client, tables: &[QualifiedTable], keys_only: bool) -> Vec<String> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "WITH wanted(s, r) AS (SELECT * FROM unnest($1::text[], $2::text[])) \
             SELECT format('%I.%I index %s valid=%s tablespace=%s', n.nspname, c.relname, \
                           pg_get_indexdef(x.indexrelid), x.indisvalid, \
                           (SELECT t.spcname FROM pg_class i JOIN pg_tablespace t ON t.oid = i.reltablespace \
                             WHERE i.oid = x.indexrelid)) \
                    || CASE WHEN $3 THEN '' ELSE format(' clustered=%s replident=%s comment=%s', \
                           x.indisclustered, x.indisreplident, obj_description(x.indexrelid, 'pg_class')) END \
               FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN wanted ON wanted.s = n.nspname::text AND wanted.r = c.relname::text \
             UNION ALL \
             SELECT format('%I.%I constraint %I %s %s deferrable=%s deferred=%s', n.nspname, c.relname, \
                           con.conname, con.contype, pg_get_constraintdef(con.oid), \
                           con.condeferrable, con.condeferred) \
                    || CASE WHEN $3 THEN '' ELSE format(' comment=%s', obj_description(con.oid, 'pg_constraint')) END \
               FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               JOIN wanted ON wanted.s = n.nspname::text AND wanted.r = c.relname::text \
              WHERE con.contype IN ('p', 'u', 'x') OR NOT $3",
            &[&schemas, &names, &keys_only],
        )
        .await
        .unwrap();
    sorted(rows.iter().map(|r| r.get(0)).collect())
}

/// Runs every build, then every constraint, of `work` on `target`.
async fn run_work(target: &Client, work: &[TableIndexWork]) {
    for w in work {
        for b in &w.builds {
            target
                .batch_execute(&b.create_sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", b.create_sql));
        }
        for c in &w.constraints {
            target
                .batch_execute(&c.sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", c.sql));
        }
    }
}

/// The index work, run on a copy of the tables made by hand, gives the
/// source's definitions; `missing_objects` follows each step.
async fn by_hand(cluster: &Cluster) {
    let major = cluster.major();
    let label = cluster.label().to_owned();
    if major >= 15 {
        let admin = cluster.connect("postgres").await.unwrap();
        admin
            .batch_execute("SET allow_in_place_tablespaces = on")
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE TABLESPACE {TABLESPACE} LOCATION ''"))
            .await
            .unwrap();
    }
    let src = cluster.create_database("postdata_src").await.unwrap();
    let dst = cluster.create_database("postdata_dst").await.unwrap();
    let source_sql = format!("{}{}{DATA}", tables_ddl(major), keys_ddl(major));
    cluster.execute(&src, &source_sql).await.unwrap();
    cluster
        .execute(&dst, &format!("{}{DATA}", tables_ddl(major)))
        .await
        .unwrap();
    let source = cluster.connect(&src).await.unwrap();
    let target = cluster.connect(&dst).await.unwrap();
    let tables = loaded_tables(major);
    let leaves: Vec<QualifiedTable> = tables
        .iter()
        .filter(|t| t.name != "parted")
        .cloned()
        .collect();

    let before_path: String = source
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    let work = index_work(&source, &tables)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let after_path: String = source
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before_path, after_path, "{label}: search_path leaked");
    let mut in_tx = cluster.connect(&src).await.unwrap();
    let tx = in_tx.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL search_path = bench, public")
        .await
        .unwrap();
    assert_eq!(index_work(&tx, &tables).await.unwrap(), work, "{label}");
    let tx_path: String = tx
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tx_path, "bench, public", "{label}: search_path leaked");
    tx.rollback().await.unwrap();

    assert_eq!(
        work.iter().map(|w| w.table.clone()).collect::<Vec<_>>(),
        tables,
        "{label}"
    );
    let of = |name: &str| work.iter().find(|w| w.table.name == name).unwrap();
    assert!(of("parted").is_empty(), "{label}: {:?}", of("parted"));
    let events = of("events");
    assert_eq!(
        events
            .builds
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        [
            "events_pkey",
            "events_code_key",
            "Events Desc",
            "events_doc_idx",
            "events_lower_idx",
            "events_user_id_idx"
        ],
        "{label}"
    );
    let constraints: Vec<(&str, &str, Option<&str>)> = events
        .constraints
        .iter()
        .map(|c| (c.name.as_str(), c.sql.as_str(), c.index.as_deref()))
        .collect();
    assert_eq!(
        constraints,
        [
            (
                "events_pkey",
                r#"ALTER TABLE ONLY "bench"."events" ADD CONSTRAINT "events_pkey" PRIMARY KEY USING INDEX "events_pkey""#,
                Some("events_pkey")
            ),
            (
                "events_code_key",
                r#"ALTER TABLE ONLY "bench"."events" ADD CONSTRAINT "events_code_key" UNIQUE USING INDEX "events_code_key" DEFERRABLE INITIALLY DEFERRED"#,
                Some("events_code_key")
            ),
            (
                "events_r_excl",
                r#"ALTER TABLE ONLY "bench"."events" ADD CONSTRAINT "events_r_excl" EXCLUDE USING gist (r WITH &&) WHERE ((n > 0))"#,
                None
            ),
        ],
        "{label}"
    );
    let doc = &events.builds[3];
    assert_eq!(
        doc.create_sql,
        "CREATE INDEX events_doc_idx ON bench.events USING gin (doc jsonb_path_ops)",
        "{label}: qualified as with search_path ''"
    );
    assert_eq!(
        doc.drop_sql,
        r#"DROP INDEX IF EXISTS "bench"."events_doc_idx""#
    );

    if major >= 15 {
        let email = of("users")
            .builds
            .iter()
            .find(|b| b.name == "users_email_idx")
            .unwrap();
        assert_eq!(
            email.create_sql,
            r#"CREATE INDEX users_email_idx ON bench.users USING btree (email) TABLESPACE "Fast ts" WHERE (email <> ''::text)"#
        );
        assert_eq!(email.tablespace.as_deref(), Some("Fast ts"));
    }

    // Nothing is there yet.
    assert_eq!(
        sorted(missing_objects(&source, &target, &tables).await.unwrap()),
        all_missing(major),
        "{label}"
    );

    // An index left invalid by a failed concurrent build is reported as such.
    let mixed = of("Tab \"q\" é");
    let ix = mixed.builds.iter().find(|b| b.name == "Ix é").unwrap();
    assert_eq!(
        ix.create_sql,
        r#"CREATE UNIQUE INDEX "Ix é" ON "Mixed Case"."Tab ""q"" é" USING btree ("Val") WHERE ("Id" > 0)"#
    );
    target
        .batch_execute(r#"INSERT INTO "Mixed Case"."Tab ""q"" é" VALUES (3, 'one')"#)
        .await
        .unwrap();
    let concurrently =
        ix.create_sql
            .replacen("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1);
    target.batch_execute(&concurrently).await.unwrap_err();
    let missing = missing_objects(&source, &target, &tables).await.unwrap();
    assert!(
        missing.contains(
            &r#"index "Mixed Case"."Ix é" on "Mixed Case"."Tab ""q"" é" (invalid)"#.to_owned()
        ),
        "{label}: {missing:#?}"
    );
    target.batch_execute(&ix.drop_sql).await.unwrap();
    target
        .batch_execute(r#"DELETE FROM "Mixed Case"."Tab ""q"" é" WHERE "Id" = 3"#)
        .await
        .unwrap();

    run_work(&target, &work).await;
    // Only what post-data does after the index work is left: the foreign
    // key, the NOT VALID check, and the partitioned parent's own keys and
    // indexes.
    let mut left = vec![
        "foreign key events_user_id_fkey on bench.events".to_owned(),
        "check constraint users_id_check on bench.users".to_owned(),
    ];
    if major >= 11 {
        left.push("index bench.parted_at_idx on bench.parted".into());
        left.push("primary key parted_pkey on bench.parted".into());
    }
    assert_eq!(
        sorted(missing_objects(&source, &target, &tables).await.unwrap()),
        sorted(left.clone()),
        "{label}"
    );
    assert_eq!(
        definitions(&target, &leaves, true).await,
        definitions(&source, &leaves, true).await,
        "{label}"
    );

    // The drop statements undo the work, and it runs again.
    for w in &work {
        for c in w.constraints.iter().rev() {
            target.batch_execute(&c.drop_sql).await.unwrap();
        }
        for b in &w.builds {
            target.batch_execute(&b.drop_sql).await.unwrap();
        }
    }
    assert_eq!(
        sorted(missing_objects(&source, &target, &tables).await.unwrap()),
        all_missing(major),
        "{label}"
    );
    run_work(&target, &work).await;
    assert_eq!(
        sorted(missing_objects(&source, &target, &tables).await.unwrap()),
        sorted(left),
        "{label}"
    );
}

fn conn(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::parse(&format!("{} sslmode=disable", cluster.conninfo(db))).expect("lab conninfo")
}

/// `pgmig schema`, then the split post-data: the index work, then the
/// remaining script, give back the source's whole schema.
async fn through_pg_dump(source: &Cluster, target: &Cluster) {
    let major = source.major();
    let label = format!("{} -> {}", source.label(), target.label());
    let src = source.create_database("postdata_dump_src").await.unwrap();
    let dst = target.create_database("postdata_dump_dst").await.unwrap();
    let source_sql = format!("{}{}{EXTRAS}{DATA}", tables_ddl(major), keys_ddl(major));
    source.execute(&src, &source_sql).await.unwrap();
    let report = transfer_schema(
        &conn(source, &src),
        &conn(target, &dst),
        &SchemaOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(report.pre_data, PreDataAction::Restored, "{label}");
    target.execute(&dst, DATA).await.unwrap();

    let source_client = source.connect(&src).await.unwrap();
    let target_client = target.connect(&dst).await.unwrap();
    let tables = loaded_tables(major);
    let post = stored_sections(&target_client)
        .await
        .unwrap()
        .post_data
        .expect("post-data recorded");
    let work = index_work(&source_client, &tables).await.unwrap();
    let before: Vec<usize> = work
        .iter()
        .map(|w| w.builds.len() + w.constraints.len())
        .collect();
    let split = split_post_data(&post.sql, work);
    let after: Vec<usize> = split
        .work
        .iter()
        .map(|w| w.builds.len() + w.constraints.len())
        .collect();
    assert_eq!(before, after, "{label}: all of the work is in the dump");
    let mut moved = vec![
        "CONSTRAINT bench users users_pkey",
        "CONSTRAINT bench events events_pkey",
        "CONSTRAINT bench events events_code_key",
        "CONSTRAINT bench events events_r_excl",
        "CONSTRAINT Mixed Case Tab \"q\" é Pk \"x\" é",
        "CONSTRAINT bench parted_2025 parted_2025_pkey",
        "INDEX bench events_user_id_idx",
        "INDEX bench events_lower_idx",
        "INDEX bench events_doc_idx",
        "INDEX bench Events Desc",
        "INDEX Mixed Case Ix é",
        "INDEX bench parted_2025_at_idx",
    ];
    if major >= 15 {
        moved.push("CONSTRAINT bench tags tags_tag_key");
        moved.push("INDEX bench users_email_idx");
    }
    let mut got = split.moved.clone();
    got.sort();
    moved.sort();
    assert_eq!(got, moved, "{label}");
    let rest = &split.remaining_script;
    for stays in [
        "FOREIGN KEY (user_id) REFERENCES bench.users(id);",
        "COMMENT ON INDEX bench.events_user_id_idx IS 'by user';",
        "COMMENT ON CONSTRAINT events_pkey ON bench.events IS 'the key';",
        "ALTER TABLE bench.events CLUSTER ON events_user_id_idx;",
        "ALTER TABLE ONLY bench.users REPLICA IDENTITY USING INDEX users_pkey;",
    ] {
        assert!(rest.contains(stays), "{label}: {stays} not in {rest}");
    }
    if major >= 11 {
        assert!(
            rest.contains("ALTER INDEX bench.parted_pkey ATTACH PARTITION bench.parted_2025_pkey;"),
            "{label}: {rest}"
        );
    }
    assert!(!rest.contains("ADD CONSTRAINT events_pkey"), "{rest}");
    assert!(!rest.contains("CREATE INDEX events_doc_idx"), "{rest}");

    assert_eq!(
        sorted(
            missing_objects(&source_client, &target_client, &tables)
                .await
                .unwrap()
        ),
        all_missing(major),
        "{label}"
    );
    run_work(&target_client, &split.work).await;
    // The remaining script: what `pgmig load` runs last, through psql.
    target_client.batch_execute(rest).await.unwrap_or_else(|e| {
        panic!("{label}: remaining post-data: {e}\n{rest}");
    });
    let target_client = target.connect(&dst).await.unwrap();
    assert_eq!(
        missing_objects(&source_client, &target_client, &tables)
            .await
            .unwrap(),
        Vec::<String>::new(),
        "{label}"
    );
    assert_eq!(
        definitions(&target_client, &tables, false).await,
        definitions(&source_client, &tables, false).await,
        "{label}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn index_work_on_pg15_by_hand_and_through_pg_dump() {
    skip_unless_available!(15);
    let cluster = Cluster::primary(15).await.unwrap();
    by_hand(&cluster).await;
    through_pg_dump(&cluster, &cluster).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn index_work_on_pg10_by_hand_and_through_pg_dump_into_pg15() {
    skip_unless_available!(10, 15);
    let (source, target) = tokio::join!(Cluster::primary(10), Cluster::primary(15));
    let (source, target) = (source.unwrap(), target.unwrap());
    by_hand(&source).await;
    through_pg_dump(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn index_work_on_pg12_16_17_by_hand() {
    skip_unless_available!(12, 16, 17);
    for major in [12, 16, 17] {
        let cluster = Cluster::primary(major).await.unwrap();
        by_hand(&cluster).await;
    }
}
