//! The pre-data and post-data sections: dumped once (custom format,
//! `--schema-only`) and split with `pg_restore --section`; the script that
//! restores pre-data and records both sections in the target's
//! `pgmig.schema_section` in the same transaction; reading that record back.

use pgmig_core::config::ConnConfig;
use pgmig_core::{QualifiedTable, ServerVersion, quote_ident};
use tokio_postgres::GenericClient;

use super::filter::dump_pattern;
use super::toc::{TocEntry, parse_list};
use super::tools::ClientTools;
use super::{SchemaError, SchemaOptions};

/// Both sections of one dump of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedSchema {
    /// Pre-data SQL as recorded (without psql's per-dump `\restrict` lines,
    /// so the same schema always gives the same text).
    pub pre_sql: String,
    /// Pre-data SQL exactly as `pg_restore` wrote it, for psql.
    pub pre_raw: String,
    /// The pre-data objects.
    pub pre_objects: Vec<TocEntry>,
    /// Post-data SQL as recorded, plus the materialized view refreshes.
    pub post_sql: String,
    /// The post-data objects: what is deferred.
    pub deferred: Vec<TocEntry>,
    /// Objects left out on purpose (pglogical).
    pub left_out: Vec<TocEntry>,
}

/// One recorded section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRecord {
    /// Its SQL.
    pub sql: String,
    /// Its objects.
    pub objects: Vec<TocEntry>,
    /// When it was dumped, as the target prints a `timestamptz`.
    pub dumped_at: String,
    /// The source's `server_version_num`.
    pub source_version: i32,
}

/// What the target's `pgmig.schema_section` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSections {
    /// The restored pre-data.
    pub pre_data: Option<SectionRecord>,
    /// The post-data kept for after the load.
    pub post_data: Option<SectionRecord>,
}

/// The name of the pre-data row.
pub const PRE_DATA: &str = "pre-data";
/// The name of the post-data row.
pub const POST_DATA: &str = "post-data";

/// What a masked password option value reads.
pub(super) const MASKED: &str = "********";

/// The SQL as stored, compared and printed: without psql's per-dump
/// `\restrict` lines and the version header lines (so the same schema
/// always gives the same text, whatever the minor of the source or of
/// `pg_dump`), and with user mapping passwords masked.
pub(super) fn normalize(sql: &str) -> String {
    let sql = mask_user_mapping_passwords(sql);
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        if line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict")
            || line.starts_with("-- Dumped from database version")
            || line.starts_with("-- Dumped by pg_dump version")
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Masks the value of every `password '…'` option inside `CREATE USER
/// MAPPING` and `ALTER USER MAPPING` statements.
pub fn mask_user_mapping_passwords(sql: &str) -> String {
    mask_passwords(sql, false)
}

/// Masks the value of every `password '…'` in `text` (a tool's stderr may
/// quote part of a statement only).
pub(super) fn mask_passwords_anywhere(text: &str) -> String {
    mask_passwords(text, true)
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// `anywhere`: mask outside user mapping statements too.
fn mask_passwords(sql: &str, anywhere: bool) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_mapping = false;
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        let c = rest.chars().next().expect("not at the end");
        let at_word_start = prev.is_none_or(|p| !is_word_char(p) && p != '"');
        if c == '\'' && (in_mapping || anywhere) {
            // A string literal outside a password option: copy it whole.
            // (Outside user mapping statements literals are not followed:
            // function bodies and comments may hold lone quotes.)
            let end = literal_end(rest);
            out.push_str(&rest[..end]);
            prev = Some('\'');
            i += end;
            continue;
        }
        if prev.is_none_or(|p| p == '\n')
            && !in_mapping
            && (starts_with_ci(rest, "CREATE USER MAPPING")
                || starts_with_ci(rest, "ALTER USER MAPPING"))
        {
            in_mapping = true;
        }
        if c == ';' {
            in_mapping = false;
        }
        if at_word_start && (in_mapping || anywhere) {
            let (word_len, quoted) = if starts_with_ci(rest, "password") {
                (8, false)
            } else if starts_with_ci(rest, "\"password\"") {
                (10, true)
            } else {
                (0, false)
            };
            if word_len > 0 && (quoted || !rest[word_len..].starts_with(is_word_char)) {
                let after = &rest[word_len..];
                let ws = after.len() - after.trim_start().len();
                if after[ws..].starts_with('\'') {
                    let lit_end = literal_end(&after[ws..]);
                    out.push_str(&rest[..word_len + ws]);
                    out.push('\'');
                    out.push_str(MASKED);
                    out.push('\'');
                    prev = Some('\'');
                    i += word_len + ws + lit_end;
                    continue;
                }
            }
        }
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// The length of the string literal at the start of `s` (which starts with
/// a quote), `''` escapes included; all of `s` when it is not closed.
fn literal_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut j = 1;
    while j < bytes.len() {
        if bytes[j] == b'\'' {
            if bytes.get(j + 1) == Some(&b'\'') {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    s.len()
}

/// Dumps the source's schema and splits it into sections.
pub(super) async fn dump(
    tools: &ClientTools,
    source: &ConnConfig,
    client: &impl GenericClient,
    opts: &SchemaOptions,
    excluded: &[QualifiedTable],
) -> Result<DumpedSchema, SchemaError> {
    let dir = tempfile::tempdir().map_err(SchemaError::TempFile)?;
    let file = dir.path().join("schema.dump");
    let file_arg = file.display().to_string();
    let mut args = vec![
        "--format=custom",
        "--schema-only",
        "--no-publications",
        "--no-subscriptions",
        "--exclude-schema=pgmig",
    ];
    if !opts.with_pglogical {
        args.push("--exclude-schema=pglogical");
    }
    let exclusions: Vec<String> = excluded
        .iter()
        .map(|t| format!("--exclude-table={}", dump_pattern(t)))
        .collect();
    args.extend(exclusions.iter().map(String::as_str));
    let out = format!("--file={file_arg}");
    args.push(&out);
    tools.run("pg_dump", &args, Some(source), None).await?;

    let listing = tools
        .run("pg_restore", &["--list", &file_arg], None, None)
        .await?;
    let mut kept_list = String::new();
    let mut left_out = Vec::new();
    for line in listing.lines() {
        match TocEntry::parse(line) {
            Some(entry) if !opts.with_pglogical && entry.is_pglogical() => left_out.push(entry),
            Some(entry) if entry.is_builtin_acl() => left_out.push(entry),
            _ => {
                kept_list.push_str(line);
                kept_list.push('\n');
            }
        }
    }
    let list_file = dir.path().join("kept.list");
    std::fs::write(&list_file, kept_list).map_err(SchemaError::TempFile)?;
    let list_arg = format!("--use-list={}", list_file.display());
    let left_ids: Vec<u32> = left_out.iter().map(|e| e.dump_id).collect();

    let section = |name: &'static str| {
        let list_arg = list_arg.clone();
        let file_arg = file_arg.clone();
        let left_ids = left_ids.clone();
        async move {
            let section_arg = format!("--section={name}");
            let mut sql_args = vec![section_arg.as_str(), list_arg.as_str()];
            if opts.no_owner {
                sql_args.push("--no-owner");
            }
            sql_args.push("--file=-");
            sql_args.push(file_arg.as_str());
            let sql = tools.run("pg_restore", &sql_args, None, None).await?;
            let objects: Vec<TocEntry> = parse_list(
                &tools
                    .run(
                        "pg_restore",
                        &["--list", &section_arg, &file_arg],
                        None,
                        None,
                    )
                    .await?,
            )
            .into_iter()
            .filter(|e| !left_ids.contains(&e.dump_id))
            .collect();
            Ok::<_, SchemaError>((sql, objects))
        }
    };
    let (pre_raw, pre_objects) = section("pre-data").await?;
    let (post_raw, mut deferred) = section("post-data").await?;

    // `--schema-only` leaves out materialized view contents (their REFRESH
    // is data to pg_dump); a refresh belongs after the load, with the rest.
    let mut post_sql = normalize(&post_raw);
    if !deferred.iter().any(|e| e.kind == "MATERIALIZED VIEW DATA") {
        for (schema, name) in matviews(client, opts.with_pglogical).await? {
            post_sql.push_str(&format!(
                "REFRESH MATERIALIZED VIEW {}.{};\n",
                quote_ident(&schema),
                quote_ident(&name)
            ));
            deferred.push(TocEntry {
                dump_id: 0,
                kind: "MATERIALIZED VIEW DATA".into(),
                schema: Some(schema),
                name,
            });
        }
    }
    Ok(DumpedSchema {
        pre_sql: normalize(&pre_raw),
        pre_raw,
        pre_objects,
        post_sql,
        deferred,
        left_out,
    })
}

async fn matviews(
    client: &impl GenericClient,
    with_pglogical: bool,
) -> Result<Vec<(String, String)>, SchemaError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind = 'm' AND n.nspname <> 'pgmig' AND (n.nspname <> 'pglogical' OR $1) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                   AND d.objid = c.oid AND d.deptype = 'e') \
              ORDER BY c.oid",
            &[&with_pglogical],
        )
        .await
        .map_err(pgmig_core::Error::query("list materialized views"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A dollar-quoted literal of `text` whose tag does not occur in it.
fn dollar_quote(text: &str) -> String {
    let tag = dollar_tag(text);
    format!("{tag}{text}{tag}")
}

/// A dollar-quote tag (`$pgmig$`, `$pgmig1$`, …) that does not occur in `text`.
pub(super) fn dollar_tag(text: &str) -> String {
    let mut n = 0u32;
    loop {
        let tag = if n == 0 {
            "$pgmig$".to_owned()
        } else {
            format!("$pgmig{n}$")
        };
        if !text.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

/// The psql script that restores the pre-data and records both sections,
/// to be run with `--single-transaction` so that the restore and its record
/// commit together.
pub(super) fn restore_script(dumped: &DumpedSchema, source_version: ServerVersion) -> String {
    let objects = |list: &[TocEntry]| {
        dollar_quote(&serde_json::to_string(list).expect("TOC entries serialize"))
    };
    let version = source_version.num();
    format!(
        "{pre}\n\
         CREATE SCHEMA IF NOT EXISTS pgmig;\n\
         CREATE TABLE IF NOT EXISTS pgmig.schema_section (\n  \
           name text PRIMARY KEY,\n  \
           sql text NOT NULL,\n  \
           objects jsonb NOT NULL DEFAULT '[]',\n  \
           dumped_at timestamptz NOT NULL DEFAULT now(),\n  \
           source_version int NOT NULL\n\
         );\n\
         INSERT INTO pgmig.schema_section (name, sql, objects, dumped_at, source_version) VALUES\n  \
           ('{PRE_DATA}', {pre_sql}, {pre_objects}::jsonb, now(), {version}),\n  \
           ('{POST_DATA}', {post_sql}, {post_objects}::jsonb, now(), {version})\n\
         ON CONFLICT (name) DO UPDATE SET sql = EXCLUDED.sql, objects = EXCLUDED.objects,\n  \
           dumped_at = EXCLUDED.dumped_at, source_version = EXCLUDED.source_version;\n",
        pre = dumped.pre_raw,
        pre_sql = dollar_quote(&dumped.pre_sql),
        pre_objects = objects(&dumped.pre_objects),
        post_sql = dollar_quote(&dumped.post_sql),
        post_objects = objects(&dumped.deferred),
    )
}

/// Replaces the recorded post-data (SQL and objects) with today's dump, so
/// the load builds what the source has now.
pub(super) async fn update_post_data(
    client: &impl GenericClient,
    dumped: &DumpedSchema,
    source_version: ServerVersion,
) -> Result<(), pgmig_core::Error> {
    let objects = serde_json::to_string(&dumped.deferred).expect("TOC entries serialize");
    let version = i32::try_from(source_version.num()).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO pgmig.schema_section (name, sql, objects, dumped_at, source_version) \
             VALUES ($1, $2, $3::text::jsonb, now(), $4) \
             ON CONFLICT (name) DO UPDATE SET sql = EXCLUDED.sql, objects = EXCLUDED.objects, \
               dumped_at = EXCLUDED.dumped_at, source_version = EXCLUDED.source_version",
            &[&POST_DATA, &dumped.post_sql, &objects, &version],
        )
        .await
        .map_err(pgmig_core::Error::query("update the recorded post-data"))?;
    Ok(())
}

/// Reads the recorded sections; empty when pgmig never restored a schema
/// into this target.
pub async fn stored_sections(
    client: &impl GenericClient,
) -> Result<StoredSections, pgmig_core::Error> {
    if !pgmig_core::state::table_exists(client, "pgmig.schema_section").await? {
        return Ok(StoredSections::default());
    }
    let rows = client
        .query(
            "SELECT name, sql, objects::text, dumped_at::text, source_version \
               FROM pgmig.schema_section",
            &[],
        )
        .await
        .map_err(pgmig_core::Error::query("read pgmig.schema_section"))?;
    let mut stored = StoredSections::default();
    let shape = || {
        pgmig_core::Error::query(
            "read pgmig.schema_section: the table does not have the columns pgmig writes \
             (name text, sql text, objects jsonb, dumped_at timestamptz, source_version int); \
             was it created by another program or another pgmig version?",
        )
    };
    for row in rows {
        let name: String = row.try_get(0).map_err(shape())?;
        let objects: String = row.try_get(2).map_err(shape())?;
        let record = SectionRecord {
            sql: row.try_get(1).map_err(shape())?,
            objects: serde_json::from_str(&objects).unwrap_or_default(),
            dumped_at: row.try_get(3).map_err(shape())?,
            source_version: row.try_get(4).map_err(shape())?,
        };
        match name.as_str() {
            PRE_DATA => stored.pre_data = Some(record),
            POST_DATA => stored.post_data = Some(record),
            _ => {}
        }
    }
    Ok(stored)
}

/// User relations of the target (tables, views, sequences, foreign tables,
/// not extension members, not pgmig's), qualified; at most 10.
pub async fn user_relations(client: &impl GenericClient) -> Result<Vec<String>, pgmig_core::Error> {
    let rows = client
        .query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgmig') \
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass \
                                   AND d.objid = c.oid AND d.deptype = 'e') \
              ORDER BY 1 LIMIT 10",
            &[],
        )
        .await
        .map_err(pgmig_core::Error::query("list the target's user relations"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_quotes_never_collide() {
        assert_eq!(dollar_quote("a"), "$pgmig$a$pgmig$");
        assert_eq!(dollar_quote("x $pgmig$ y"), "$pgmig1$x $pgmig$ y$pgmig1$");
    }

    #[test]
    fn normalizing_drops_restrict_keys() {
        let sql = "\\restrict k1\nCREATE TABLE t ();\n\\unrestrict k1\n";
        assert_eq!(normalize(sql), "CREATE TABLE t ();\n");
        let sql = "--\n-- Dumped from database version 15.4\n-- Dumped by pg_dump version 17.6\n\nCREATE TABLE t ();\n";
        assert_eq!(normalize(sql), "--\n\nCREATE TABLE t ();\n");
    }

    #[test]
    fn user_mapping_passwords_are_masked() {
        let sql = "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    \"user\" 'password ''x''',\n    password 'it''s; secret'\n);\n\
                   ALTER USER MAPPING FOR \"Bob\" SERVER remote OPTIONS (SET password 'two');\n\
                   COMMENT ON TABLE t IS 'password ''keep''';\n\
                   CREATE FUNCTION f() RETURNS text AS $$ SELECT 'password' $$ LANGUAGE sql;\n";
        let masked = mask_user_mapping_passwords(sql);
        assert!(!masked.contains("secret"), "{masked}");
        assert!(!masked.contains("two"), "{masked}");
        assert!(masked.contains("password '********'\n);"), "{masked}");
        assert!(masked.contains("SET password '********');"), "{masked}");
        assert!(masked.contains("\"user\" 'password ''x'''"), "{masked}");
        assert!(masked.contains("IS 'password ''keep'''"), "{masked}");
        assert!(masked.contains("SELECT 'password' $$"), "{masked}");
        // Stored, compared and printed copies are masked; idempotent.
        assert_eq!(normalize(&masked), normalize(sql));
        assert!(!normalize(sql).contains("secret"));
        // stderr: anywhere.
        let err = "LINE 3:     password 'hunter2'";
        assert_eq!(
            mask_passwords_anywhere(err),
            "LINE 3:     password '********'"
        );
    }
}
