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

fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for line in sql.lines() {
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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
    let mut n = 0u32;
    loop {
        let tag = if n == 0 {
            "$pgmig$".to_owned()
        } else {
            format!("$pgmig{n}$")
        };
        if !text.contains(&tag) {
            return format!("{tag}{text}{tag}");
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
    for row in rows {
        let name: String = row.get(0);
        let objects: String = row.get(2);
        let record = SectionRecord {
            sql: row.get(1),
            objects: serde_json::from_str(&objects).unwrap_or_default(),
            dumped_at: row.get(3),
            source_version: row.get(4),
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
    }
}
