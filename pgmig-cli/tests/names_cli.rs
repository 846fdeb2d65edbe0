//! Hostile identifiers through every command of the real binary: schemas,
//! tables, columns, an index, a unique constraint, a foreign key and
//! sequences whose names hold double and single quotes, spaces, capitals,
//! unicode, reserved words, a backslash, `%`, `_` and `[` (DMS wildcards),
//! a dot, and exactly 63 bytes (ASCII and multi-byte), plus a 62-byte slot
//! name (the longest pgmig allows) written into the plan file.
//!
//! check, plan (written, edited, read back; `--exclude` with quoted hostile
//! patterns), setup (with a hostile pglogical node name), snapshot, schema,
//! load (split into page and key chunks), verify in every mode (and
//! `--include` with quoted hostile patterns), cdc after inserts, updates
//! (keys too) and deletes, dms generate with both selection styles (every
//! JSON file valid, each selection rule matching exactly its table among
//! all the source's tables under DMS's wildcard rules), cutover (sequences
//! whose names PostgreSQL truncated), status and cleanup all succeed, and
//! every table is equal row for row on source and target. Hostile slot
//! names in the plan file or `--slot`, and an invalid DMS `--prefix`, are
//! refused before anything changes. A second test runs the migration
//! between databases whose own names are hostile.

mod common;

use common::{Lab3, assert_exit, assert_ok, files_under, text};
use pgmig_testkit::skip_unless_available;

/// `name` quoted as a PostgreSQL identifier.
fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, both quoted.
fn qt(schema: &str, table: &str) -> String {
    format!("{}.{}", qi(schema), qi(table))
}

/// `prefix` padded with `fill` to exactly 63 bytes.
fn bytes63(prefix: &str, fill: char) -> String {
    let mut s = prefix.to_owned();
    while s.len() + fill.len_utf8() <= 63 {
        s.push(fill);
    }
    while s.len() < 63 {
        s.push('x');
    }
    assert_eq!(s.len(), 63, "{s}");
    s
}

/// The hostile names used by the test.
struct Names {
    cafe: String,
    long_schema: String,
    long_table: String,
    long_column: String,
    mb_table: String,
    mb_column: String,
    mb_column2: String,
    /// A unique constraint, a check constraint and an index, 63 bytes each.
    unique63: String,
    check63: String,
    index63: String,
}

impl Names {
    fn new() -> Names {
        Names {
            cafe: "Café ☕ \"Q\" it's".to_owned(),
            long_schema: bytes63("Sch.em%a_[x\\", 'S'),
            long_table: bytes63("Tab \"le\" %_[.\\'", 't'),
            long_column: bytes63("Col'Umn\"%_", 'c'),
            // 21 × 3 bytes, 31 × 2 + 1 bytes.
            mb_table: bytes63("", '☕'),
            mb_column: bytes63("", 'é'),
            mb_column2: bytes63("Ü", 'ü'),
            unique63: bytes63("Uniq \"", 'é'),
            check63: bytes63("chk's ", '☕'),
            index63: bytes63("Idx.%_[", 'i'),
        }
    }

    /// Every table as (schema, name).
    fn tables(&self) -> Vec<(String, String)> {
        [
            (self.cafe.as_str(), "Order \"Items\" it's"),
            (self.cafe.as_str(), "user"),
            ("select", "order"),
            ("public", "a_b"),
            ("public", "axb"),
            ("public", "100%_off"),
            ("public", "[br]ack.et"),
            ("public", "back\\slash"),
            (self.long_schema.as_str(), self.long_table.as_str()),
            ("public", self.mb_table.as_str()),
        ]
        .into_iter()
        .map(|(s, t)| (s.to_owned(), t.to_owned()))
        .collect()
    }

    /// The source schema and its rows.
    fn data(&self) -> String {
        let n = self;
        let t1 = qt(&n.cafe, "Order \"Items\" it's");
        let t2 = qt(&n.cafe, "user");
        let t3 = qt("select", "order");
        let t9 = qt(&n.long_schema, &n.long_table);
        let t10 = qt("public", &n.mb_table);
        let lc = qi(&n.long_column);
        let mc = qi(&n.mb_column);
        let mc2 = qi(&n.mb_column2);
        format!(
            r#"
CREATE SCHEMA {cafe};
CREATE SCHEMA "select";
CREATE SCHEMA {long_schema};
CREATE TABLE {t1} (
    "Id" bigserial PRIMARY KEY,
    "select" text,
    "col""q" int,
    "it's col" text,
    "back\slash" text,
    "créé à" timestamptz NOT NULL,
    CONSTRAINT "uniq's ""c"" ☕" UNIQUE ("col""q"));
CREATE INDEX "idx ""q"" it's ☕" ON {t1} ("select", "it's col");
INSERT INTO {t1} ("select", "col""q", "it's col", "back\slash", "créé à")
  SELECT 'sel ' || g, g, 'it''s "' || g || '"', E'back\\slash ' || g,
         timestamptz '2021-01-01' + make_interval(days => g)
  FROM generate_series(1, 3000) g;
CREATE TABLE {t2} ("order" int PRIMARY KEY, "User" text NOT NULL, "Café ☕" text);
INSERT INTO {t2} SELECT g, 'U' || g, '☕ ' || g FROM generate_series(1, 200) g;
CREATE TABLE {t3} ("Ünï ☕" text, "user" int, "from" text, PRIMARY KEY ("Ünï ☕", "user"));
INSERT INTO {t3} SELECT 'k' || (g % 7), g, 'from ' || g FROM generate_series(1, 200) g;
CREATE TABLE public.a_b (id int PRIMARY KEY, v text);
INSERT INTO public.a_b SELECT g, 'ab' || g FROM generate_series(1, 100) g;
CREATE TABLE public.axb (id int PRIMARY KEY, a_b_id int CONSTRAINT "fk ""a_b"" ☕" REFERENCES public.a_b (id), v text);
INSERT INTO public.axb SELECT g, 1 + g % 100, 'axb' || g FROM generate_series(1, 100) g;
CREATE TABLE public."100%_off" ("%" int PRIMARY KEY, "_" text);
INSERT INTO public."100%_off" SELECT g, '_' || g FROM generate_series(1, 100) g;
CREATE TABLE public."[br]ack.et" (id int PRIMARY KEY, "[" text, "a.b" int);
INSERT INTO public."[br]ack.et" SELECT g, '[' || g, g FROM generate_series(1, 100) g;
CREATE TABLE public."back\slash" ("\" int PRIMARY KEY, v text);
INSERT INTO public."back\slash" SELECT g, E'\\' || g FROM generate_series(1, 100) g;
CREATE TABLE {t9} (id serial PRIMARY KEY, {lc} text, "user" text);
INSERT INTO {t9} ({lc}, "user") SELECT 'long ' || g, 'u' || g FROM generate_series(1, 150) g;
CREATE TABLE {t10} ({mc} int PRIMARY KEY, {mc2} text, n serial,
    CONSTRAINT {uq63} UNIQUE ({mc2}), CONSTRAINT {ck63} CHECK (n > 0));
CREATE INDEX {ix63} ON {t9} ("user", {lc});
INSERT INTO {t10} ({mc}, {mc2}) SELECT g, repeat('ü', 20) || g FROM generate_series(1, 3000) g;
ANALYZE;
"#,
            cafe = qi(&n.cafe),
            long_schema = qi(&n.long_schema),
            uq63 = qi(&n.unique63),
            ck63 = qi(&n.check63),
            ix63 = qi(&n.index63),
        )
    }

    /// Inserts, updates (keys included) and deletes on every table.
    fn writes(&self) -> String {
        let n = self;
        let t1 = qt(&n.cafe, "Order \"Items\" it's");
        let t2 = qt(&n.cafe, "user");
        let t3 = qt("select", "order");
        let t9 = qt(&n.long_schema, &n.long_table);
        let t10 = qt("public", &n.mb_table);
        let lc = qi(&n.long_column);
        let mc = qi(&n.mb_column);
        let mc2 = qi(&n.mb_column2);
        format!(
            r#"
INSERT INTO {t1} ("select", "col""q", "it's col", "back\slash", "créé à")
  SELECT 'new ' || g, 100000 + g, 'new''s', E'\\new', now() FROM generate_series(1, 20) g;
UPDATE {t1} SET "select" = 'upd "x" it''s', "col""q" = "col""q" + 5000 WHERE "Id" % 10 = 0;
UPDATE {t1} SET "Id" = "Id" + 100000 WHERE "Id" IN (3, 4);
DELETE FROM {t1} WHERE "Id" % 17 = 0;
INSERT INTO {t2} SELECT g, 'V' || g, NULL FROM generate_series(1000, 1010) g;
UPDATE {t2} SET "order" = "order" + 5000 WHERE "order" < 5;
UPDATE {t2} SET "Café ☕" = 'chaud' WHERE "order" BETWEEN 10 AND 20;
DELETE FROM {t2} WHERE "order" BETWEEN 30 AND 40;
INSERT INTO {t3} VALUES ('new ☕', 1, 'x'), ('new ☕', 2, 'y');
UPDATE {t3} SET "Ünï ☕" = 'moved' WHERE "user" = 7;
UPDATE {t3} SET "from" = 'to' WHERE "user" BETWEEN 50 AND 60;
DELETE FROM {t3} WHERE "user" > 190;
INSERT INTO public.a_b VALUES (1000, 'n');
UPDATE public.axb SET a_b_id = 1000, v = 'moved' WHERE id < 5;
DELETE FROM public.axb WHERE id > 95;
DELETE FROM public.a_b WHERE id > 99 AND id < 1000 AND id NOT IN (SELECT a_b_id FROM public.axb);
UPDATE public."100%_off" SET "_" = '%' WHERE "%" < 10;
DELETE FROM public."100%_off" WHERE "%" > 90;
INSERT INTO public."100%_off" VALUES (500, '__');
UPDATE public."[br]ack.et" SET id = id + 1000 WHERE id < 3;
UPDATE public."[br]ack.et" SET "[" = ']' WHERE id BETWEEN 10 AND 20;
DELETE FROM public."[br]ack.et" WHERE id > 95;
INSERT INTO public."back\slash" VALUES (1000, E'\\\\');
UPDATE public."back\slash" SET v = E'x\\y' WHERE "\" < 10;
DELETE FROM public."back\slash" WHERE "\" > 95;
INSERT INTO {t9} ({lc}, "user") SELECT 'more ' || g, 'w' FROM generate_series(1, 10) g;
UPDATE {t9} SET {lc} = 'changed' WHERE id % 9 = 0;
DELETE FROM {t9} WHERE id % 13 = 0;
INSERT INTO {t10} ({mc}, {mc2}) SELECT g, 'ÿ' || g FROM generate_series(200000, 200010) g;
UPDATE {t10} SET {mc} = {mc} + 100000 WHERE {mc} < 4;
UPDATE {t10} SET {mc2} = 'ü' || {mc} WHERE {mc} BETWEEN 20 AND 30;
DELETE FROM {t10} WHERE {mc} BETWEEN 40 AND 45;
"#
        )
    }
}

/// DMS's selection wildcards: `%` any run of characters, `_` one
/// character, `[…]` one character of the set (ranges `a-d`), anything else
/// itself.
fn dms_matches(pattern: &str, name: &str) -> bool {
    fn set_end(p: &[char], i: usize) -> Option<usize> {
        // `[` then at least one character, then `]`.
        (i + 2..p.len()).find(|&j| p[j] == ']')
    }
    fn in_set(set: &[char], c: char) -> bool {
        let mut i = 0;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == '-' {
                if set[i] <= c && c <= set[i + 2] {
                    return true;
                }
                i += 3;
            } else {
                if set[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('%') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('_') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') if set_end(p, 0).is_some() => {
                let end = set_end(p, 0).unwrap();
                !n.is_empty() && in_set(&p[1..end], n[0]) && go(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Every user table of the source, as (schema, name).
async fn source_tables(lab: &Lab3) -> Vec<(String, String)> {
    let client = lab.source.connect(&lab.db).await.unwrap();
    client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pglogical') \
               AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Asserts every table is equal on `cluster`/`db` and the target.
async fn assert_equal(lab: &Lab3, names: &Names, against_source: bool, when: &str) {
    for (schema, table) in names.tables() {
        let t = qt(&schema, &table);
        let (cluster, db) = if against_source {
            (&lab.source, &lab.db)
        } else {
            (&lab.replica, &lab.db)
        };
        let left = Lab3::digest(cluster, db, &t).await;
        let right = Lab3::digest(&lab.target, &lab.target_db, &t).await;
        assert_eq!(left, right, "{when}: {t} differs");
        assert!(!left.starts_with("0:"), "{when}: {t} is empty");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_identifiers_through_every_command() {
    skip_unless_available!(pglogical);
    let names = Names::new();
    assert_eq!(names.mb_table.len(), 63);
    assert_eq!(names.mb_column.len(), 63);
    let lab = Lab3::start(&names.data()).await;
    // The names arrived untruncated.
    let all = source_tables(&lab).await;
    for t in names.tables() {
        assert!(all.contains(&t), "{t:?} missing from {all:?}");
    }

    let dir = std::env::temp_dir().join(format!("pgmig-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("pgmig.toml");
    let config_s = config.to_str().unwrap().to_owned();

    let o = lab.pgmig(&["check"]).await;
    let out = assert_exit(&o, 0, "check");
    assert!(out.contains("all 10 tables have a primary key"), "{out}");

    // The plan, written, then edited to use the longest slot name allowed.
    assert_ok(
        &lab.pgmig(&["plan", "--slots", "2", "--write", &config_s])
            .await,
        "plan --write",
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("dms_slot_02"), "{written}");
    let long_slot = format!("s{}", "_0".repeat(30)) + "9";
    assert_eq!(long_slot.len(), 62);
    std::fs::write(&config, written.replace("dms_slot_02", &long_slot)).unwrap();
    let with = |args: &[&str]| {
        let mut v = vec!["--config", config_s.as_str()];
        v.extend_from_slice(args);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let lab = &lab;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab.pgmig(&args).await
        }
    };

    let o = run(with(&["--json", "plan"])).await;
    assert_ok(&o, "plan read back");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["origin"], "validated", "{report}");
    let planned: Vec<String> = report["plan"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tables"].as_array().unwrap().clone())
        .map(|t| t["table"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(planned.len(), names.tables().len(), "{planned:?}");
    for (schema, table) in names.tables() {
        let printed = format!(
            "{}.{}",
            pgmig_core::ident::display_ident(&schema),
            pgmig_core::ident::display_ident(&table)
        );
        assert!(planned.contains(&printed), "{printed} not in {planned:?}");
    }

    // A hostile slot name in the plan file: refused, nothing created.
    let bad = dir.join("bad.toml");
    for slot in [
        "dms\"slot",
        "dms slot",
        "Dms_slot",
        "dms'slot",
        "dms\\slot",
        "dms_slot_☕",
    ] {
        let toml_string = format!("\"{}\"", slot.replace('\\', "\\\\").replace('"', "\\\""));
        std::fs::write(&bad, written.replace("\"dms_slot_01\"", &toml_string)).unwrap();
        let o = lab
            .pgmig(&["--config", bad.to_str().unwrap(), "setup", "--yes"])
            .await;
        let out = assert_exit(&o, 2, &format!("setup with slot {slot:?}"));
        assert!(
            out.contains(slot) || out.contains(&format!("{slot:?}")),
            "{slot}: {out}"
        );
        assert!(out.contains("slot"), "{out}");
    }
    assert_eq!(
        lab.source_sql(
            "SELECT count(*)::text FROM pg_replication_slots WHERE slot_type = 'logical'"
        )
        .await,
        "0"
    );
    assert_eq!(
        lab.source_sql("SELECT count(*)::text FROM pg_extension WHERE extname = 'pglogical'")
            .await,
        "0"
    );

    // A node name with quotes, a space and unicode is bound, never spliced.
    let node = "pgmig \"nœud\" it's";
    assert_ok(
        &run(with(&["setup", "--yes", "--node-name", node])).await,
        "setup",
    );
    assert_eq!(
        lab.source_sql("SELECT node_name::text FROM pglogical.node")
            .await,
        node
    );
    let slots = lab
        .source_sql(
            "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE slot_type = 'logical'",
        )
        .await;
    assert_eq!(slots, format!("dms_slot_01,{long_slot}"));
    assert_ok(&run(with(&["snapshot"])).await, "snapshot");
    assert_ok(&run(with(&["schema", "--no-owner"])).await, "schema");
    // Small chunks: the larger tables are split (page ranges, key ranges).
    assert_ok(
        &run(with(&["load", "--jobs", "2", "--chunk-size", "16kB"])).await,
        "load",
    );
    let split = lab
        .target_sql(
            "SELECT count(DISTINCT (table_schema, table_name))::text FROM pgmig.load_task WHERE chunks > 1",
        )
        .await;
    assert!(split.parse::<i64>().unwrap() >= 2, "{split} table(s) split");
    assert_equal(&lab, &names, false, "after the load").await;
    // The index, constraint and foreign key kept their names.
    for name in [
        "idx \"q\" it's ☕",
        "uniq's \"c\" ☕",
        names.unique63.as_str(),
        names.index63.as_str(),
    ] {
        assert_eq!(
            lab.target
                .query_one_string(
                    &lab.target_db,
                    &format!(
                        "SELECT count(*)::text FROM pg_class WHERE relname = {}",
                        pgmig_core::ident::quote_literal(name)
                    )
                )
                .await
                .unwrap(),
            "1",
            "{name}"
        );
    }
    for name in [
        "fk \"a_b\" ☕",
        names.unique63.as_str(),
        names.check63.as_str(),
    ] {
        assert_eq!(
            lab.target_sql(&format!(
                "SELECT count(*)::text FROM pg_constraint WHERE conname = {}",
                pgmig_core::ident::quote_literal(name)
            ))
            .await,
            "1",
            "{name}"
        );
    }

    for mode in ["counts", "checksums", "buckets", "sample"] {
        let o = run(with(&["verify", "--mode", mode])).await;
        assert_ok(&o, &format!("verify --mode {mode}"));
    }
    let o = run(with(&["--json", "verify", "--mode", "checksums"])).await;
    assert_ok(&o, "verify --json");
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    serde_json::from_str::<serde_json::Value>(&report).expect("verify --json is JSON");
    // Filters spelled with the hostile names, quoted as in SQL: exactly
    // the named tables (a quoted `%`, `_` or `*` is no wildcard).
    let cafe_pattern = format!("{}.*", qi(&names.cafe));
    let long_pattern = qt(&names.long_schema, &names.long_table);
    for (pattern, expected) in [
        (cafe_pattern.as_str(), 2),
        ("public.\"100%_off\"", 1),
        ("public.\"a_b\"", 1),
        ("public.a?b", 2),
        (long_pattern.as_str(), 1),
        ("\"select\".\"order\"", 1),
    ] {
        let o = run(with(&[
            "--json",
            "verify",
            "--mode",
            "counts",
            "--include",
            pattern,
        ]))
        .await;
        assert_ok(&o, &format!("verify --include {pattern}"));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let tables = report["tables"].as_array().expect("tables");
        assert_eq!(tables.len(), expected, "{pattern}: {report}");
    }
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = lab
        .command(&[
            "--json",
            "plan",
            "--slots",
            "3",
            "--exclude",
            &cafe_pattern,
            "--exclude",
            "public.\"100%_off\"",
        ])
        .current_dir(&elsewhere)
        .output()
        .await
        .unwrap();
    assert_ok(&o, "plan --exclude");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kept: usize = report["plan"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tables"].as_array().unwrap().len())
        .sum();
    assert_eq!(kept, names.tables().len() - 3, "{report}");

    // DMS files: valid JSON, one rule per table matching exactly that table.
    // Both selection styles: `include` (escaped wildcards) and `explicit`.
    for selection in ["include", "explicit"] {
        let out_dir = dir.join(format!("dms-{selection}"));
        let o = run(with(&[
            "--json",
            "dms",
            "generate",
            "--out",
            out_dir.to_str().unwrap(),
            "--replication-instance-arn",
            "arn:aws:dms:eu-west-1:123456789012:rep:NAMES",
            "--selection",
            selection,
        ]))
        .await;
        assert_ok(&o, &format!("dms generate --selection {selection}"));
        let mut selected: Vec<(String, String)> = Vec::new();
        let files = files_under(&out_dir);
        assert!(!files.is_empty());
        for file in &files {
            let content = std::fs::read_to_string(file).unwrap();
            if file.extension().is_some_and(|e| e == "json") {
                let doc: serde_json::Value = serde_json::from_str(&content)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{content}", file.display()));
                let mappings = if file.ends_with("table-mappings.json") {
                    Some(doc.clone())
                } else {
                    None
                };
                if let Some(embedded) = doc.get("TableMappings") {
                    let embedded: serde_json::Value =
                        serde_json::from_str(embedded.as_str().unwrap()).unwrap();
                    let beside = file.with_file_name("table-mappings.json");
                    let beside: serde_json::Value =
                        serde_json::from_str(&std::fs::read_to_string(beside).unwrap()).unwrap();
                    assert_eq!(embedded, beside, "{}", file.display());
                }
                let Some(mappings) = mappings else { continue };
                for rule in mappings["rules"].as_array().unwrap() {
                    if rule["rule-type"] != "selection" {
                        continue;
                    }
                    let schema = rule["object-locator"]["schema-name"].as_str().unwrap();
                    let table = rule["object-locator"]["table-name"].as_str().unwrap();
                    assert_eq!(rule["rule-action"], selection, "{rule}");
                    let matched: Vec<&(String, String)> =
                        match rule["rule-action"].as_str().unwrap() {
                            "explicit" => all
                                .iter()
                                .filter(|(s, t)| s == schema && t == table)
                                .collect(),
                            "include" => all
                                .iter()
                                .filter(|(s, t)| dms_matches(schema, s) && dms_matches(table, t))
                                .collect(),
                            other => panic!("rule action {other} in {}", file.display()),
                        };
                    assert_eq!(
                        matched.len(),
                        1,
                        "{}: rule {rule} matches {matched:?}",
                        file.display()
                    );
                    selected.push(matched[0].clone());
                }
            }
        }
        selected.sort();
        let mut expected = names.tables();
        expected.sort();
        assert_eq!(selected, expected, "every table selected exactly once");
        let long_task = format!("pgmig-{}", long_slot.replace('_', "-"));
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains(&long_task)),
            "{files:?}"
        );
    }

    // Hostile names given on the command line are refused, changing nothing.
    let slots_before = lab
        .source_sql("SELECT string_agg(slot_name || confirmed_flush_lsn::text, ',') FROM pg_replication_slots")
        .await;
    for slot in ["dms\"slot", "dms_slot_01'; --", "Dms_slot_01"] {
        let o = run(with(&["cdc", "--until-caught-up", "--slot", slot])).await;
        let out = assert_exit(&o, 2, &format!("cdc --slot {slot:?}"));
        assert!(out.contains("slot"), "{out}");
    }
    for prefix in ["pg__mig", "pg mig", "pgmig\"x", "9lives"] {
        let o = run(with(&[
            "dms",
            "generate",
            "--out",
            dir.join("bad-dms").to_str().unwrap(),
            "--replication-instance-arn",
            "arn:aws:dms:eu-west-1:123456789012:rep:NAMES",
            "--prefix",
            prefix,
        ]))
        .await;
        let out = assert_exit(&o, 2, &format!("dms generate --prefix {prefix:?}"));
        assert!(out.contains(&format!("--prefix {prefix:?}")), "{out}");
    }
    assert!(!dir.join("bad-dms").exists());
    assert_eq!(
        lab.source_sql("SELECT string_agg(slot_name || confirmed_flush_lsn::text, ',') FROM pg_replication_slots")
            .await,
        slots_before
    );

    // CDC over the hostile names.
    lab.source.execute(&lab.db, &names.writes()).await.unwrap();
    let o = run(with(&["cdc", "--until-caught-up"])).await;
    assert_ok(&o, "cdc");
    assert_equal(&lab, &names, true, "after cdc").await;

    let o = run(with(&["cutover"])).await;
    let out = assert_exit(&o, 0, "cutover");
    assert!(out.contains("GO"), "{out}");
    // Sequences (the serial columns' names are truncated by PostgreSQL)
    // are at or ahead of the source's.
    let seqs = lab
        .source_sql(
            "SELECT string_agg(format('%I.%I', schemaname, sequencename), E'\\n' ORDER BY 1) FROM pg_sequences",
        )
        .await;
    assert_eq!(seqs.lines().count(), 3, "{seqs}");
    for seq in seqs.lines() {
        let q = format!("SELECT coalesce(last_value, 0)::text FROM {seq}");
        let source: i64 = lab.source_sql(&q).await.parse().unwrap();
        let target: i64 = lab.target_sql(&q).await.parse().unwrap();
        assert!(target >= source, "{seq}: target {target} < source {source}");
    }

    let o = run(with(&["--json", "status"])).await;
    assert_ok(&o, "status");
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(status.to_string().contains(&long_slot), "{status}");
    assert_ok(&run(with(&["status"])).await, "status text");

    let o = run(with(&["cleanup", "--yes"])).await;
    assert_ok(&o, "cleanup");
    assert_eq!(
        lab.source_sql(
            "SELECT count(*)::text FROM pg_replication_slots WHERE slot_type = 'logical'"
        )
        .await,
        "0",
        "{}",
        text(&o)
    );
    assert_eq!(
        lab.target_sql("SELECT count(*)::text FROM pg_namespace WHERE nspname = 'pgmig'")
            .await,
        "0"
    );
    assert_equal(&lab, &names, true, "at the end").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_wildcard_matcher_is_dms_s() {
    assert!(dms_matches("a_b", "axb"));
    assert!(dms_matches("a[_]b", "a_b"));
    assert!(!dms_matches("a[_]b", "axb"));
    assert!(dms_matches("100%_off", "100_off"));
    assert!(!dms_matches("100[%][_]off", "100_off"));
    assert!(dms_matches("[[]br]ack", "[br]ack"));
    assert!(dms_matches("[a-c]x", "bx"));
}

/// Databases whose names hold quotes, a backslash, spaces, `=` and unicode
/// (each part of a libpq connection string, a pglogical node DSN, pg_dump's
/// arguments and the DMS endpoint) through the whole migration.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_database_names_through_every_command() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start("SELECT 1").await;
    let source_db = "my app's \"db\" = \\ ☕";
    let target_db = "new 'target' \"db\" = ☕";
    lab.source
        .execute("postgres", &format!("CREATE DATABASE {}", qi(source_db)))
        .await
        .unwrap();
    lab.target
        .execute("postgres", &format!("CREATE DATABASE {}", qi(target_db)))
        .await
        .unwrap();
    lab.source
        .execute(
            source_db,
            "CREATE TABLE public.\"T\" (id int PRIMARY KEY, v text);
             INSERT INTO public.\"T\" SELECT g, 'v' || g FROM generate_series(1, 500) g;
             CREATE TABLE public.plain (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
             INSERT INTO public.plain (at) SELECT now() FROM generate_series(1, 100);",
        )
        .await
        .unwrap();
    lab.wait_replayed().await;
    let (s, r, t) = (
        lab.source.conninfo(source_db),
        lab.replica.conninfo(source_db),
        lab.target.conninfo(target_db),
    );
    let dir = std::env::temp_dir().join(format!("pgmig-names-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_dir = dir.join("dms");
    let run = |args: &'static [&'static str]| {
        let mut c = lab.command_with(args, &s, &r, &t);
        c.current_dir(&dir);
        async move { c.output().await.expect("run pgmig") }
    };
    assert_exit(&run(&["check"]).await, 0, "check");
    assert_ok(&run(&["setup", "--yes", "--slots", "2"]).await, "setup");
    assert_ok(&run(&["snapshot"]).await, "snapshot");
    assert_ok(&run(&["schema", "--no-owner"]).await, "schema");
    assert_ok(&run(&["load", "--jobs", "2"]).await, "load");
    for mode in ["counts", "checksums", "buckets", "sample"] {
        let o = lab
            .command_with(&["verify", "--mode", mode], &s, &r, &t)
            .output()
            .await
            .unwrap();
        assert_ok(&o, &format!("verify --mode {mode}"));
    }
    let o = lab
        .command_with(
            &[
                "--json",
                "dms",
                "generate",
                "--out",
                out_dir.to_str().unwrap(),
                "--replication-instance-arn",
                "arn:aws:dms:eu-west-1:123456789012:rep:DB",
            ],
            &s,
            &r,
            &t,
        )
        .output()
        .await
        .unwrap();
    assert_ok(&o, "dms generate");
    let mut databases = Vec::new();
    for file in files_under(&out_dir) {
        if file.extension().is_some_and(|e| e == "json") {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            if let Some(db) = doc.get("DatabaseName") {
                databases.push(db.as_str().unwrap().to_owned());
            }
        }
    }
    assert!(databases.iter().any(|d| d == source_db), "{databases:?}");
    assert!(databases.iter().any(|d| d == target_db), "{databases:?}");

    lab.source
        .execute(
            source_db,
            "UPDATE public.\"T\" SET v = 'changed' WHERE id % 7 = 0;
             DELETE FROM public.\"T\" WHERE id % 11 = 0;
             INSERT INTO public.plain (at) SELECT now() FROM generate_series(1, 10);",
        )
        .await
        .unwrap();
    assert_ok(&run(&["cdc", "--until-caught-up"]).await, "cdc");
    let o = run(&["cutover"]).await;
    assert_exit(&o, 0, "cutover");
    for table in ["public.\"T\"", "public.plain"] {
        assert_eq!(
            Lab3::digest(&lab.source, source_db, table).await,
            Lab3::digest(&lab.target, target_db, table).await,
            "{table}"
        );
    }
    assert_ok(&run(&["--json", "status"]).await, "status");
    assert_ok(&run(&["cleanup", "--yes"]).await, "cleanup");
    assert_eq!(
        lab.source
            .query_one_string(
                source_db,
                "SELECT count(*)::text FROM pg_replication_slots WHERE slot_type = 'logical'"
            )
            .await
            .unwrap(),
        "0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
