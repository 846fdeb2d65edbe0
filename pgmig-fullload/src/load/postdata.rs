//! Deferred post-data: per-table index work from the replica's catalog, and
//! the rest of the stored post-data script.
//!
//! The full load builds a table's indexes as soon as its data is in, while
//! other tables are still being copied, and runs the rest of post-data
//! (foreign keys, triggers, partition index attaches, comments, …) at the
//! end. [`index_work`] reads what to build from the replica (the source's
//! schema at P); [`split_post_data`] takes the matching entries out of the
//! script `pgmig schema` stored, so nothing is created twice and nothing is
//! created that `pg_dump` did not dump; [`missing_objects`] tells what is
//! still absent (or invalid) on the target.

use std::collections::{HashMap, HashSet};

use pgmig_core::ident::{display_ident, quote_literal};
use pgmig_core::{QualifiedTable, quote_ident};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, SimpleQueryMessage};

/// One index to build for a table: a plain index, or the unique index behind
/// a PRIMARY KEY / UNIQUE constraint (then attached by a [`ConstraintAttach`]
/// whose `index` names it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBuild {
    /// The index name, unqualified: an index lives in its table's schema.
    pub name: String,
    /// `CREATE [UNIQUE] INDEX …` exactly as the source defines it
    /// (`pg_get_indexdef` with every name qualified), with its tablespace
    /// when it is not the database's default.
    pub create_sql: String,
    /// `DROP INDEX IF EXISTS …`: undoes a build that did not finish.
    pub drop_sql: String,
    /// The index's tablespace on the source; `None` for the database's
    /// default.
    pub tablespace: Option<String>,
}

/// A PRIMARY KEY / UNIQUE / EXCLUDE constraint, added once its table's data
/// is in.
///
/// PRIMARY KEY and UNIQUE constraints take over their prebuilt index:
/// `ALTER TABLE ONLY s.t ADD CONSTRAINT c PRIMARY KEY USING INDEX c`
/// (keeping DEFERRABLE / INITIALLY DEFERRED). What `USING INDEX` cannot do
/// (exclusion constraints, constraints whose index is not a btree) is added
/// with its full definition, which builds the index itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintAttach {
    /// The constraint name.
    pub name: String,
    /// The `ALTER TABLE ONLY … ADD CONSTRAINT …` statement.
    pub sql: String,
    /// `ALTER TABLE ONLY … DROP CONSTRAINT IF EXISTS …` (which drops its
    /// index too).
    pub drop_sql: String,
    /// The [`IndexBuild`] this constraint takes over (`USING INDEX`), to be
    /// built first; `None` when `sql` is the full definition.
    pub index: Option<String>,
}

/// The index work of one table: build every index (in any order, in
/// parallel if wanted), then run the constraints in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexWork {
    /// The table (an ordinary table or a partition leaf).
    pub table: QualifiedTable,
    /// Its indexes: constraint indexes first (the primary key's first),
    /// then the others by name.
    pub builds: Vec<IndexBuild>,
    /// Its PRIMARY KEY / UNIQUE / EXCLUDE constraints, primary key first.
    pub constraints: Vec<ConstraintAttach>,
}

impl TableIndexWork {
    /// Whether there is nothing to do for the table.
    pub fn is_empty(&self) -> bool {
        self.builds.is_empty() && self.constraints.is_empty()
    }
}

/// Reads from the replica's catalog (the source's schema at P) the valid
/// indexes and PRIMARY KEY / UNIQUE / EXCLUDE constraints of `tables`.
///
/// Returns one [`TableIndexWork`] per distinct table of `tables`, in that
/// order (empty for a table without indexes, or that does not exist).
/// Only ordinary tables and partition leaves have work: a partitioned
/// table's own (partitioned) indexes and constraints are left to the rest
/// of the post-data script, which attaches the leaves' indexes to them.
///
/// Definitions come from `pg_get_indexdef` / `pg_get_constraintdef` with
/// `search_path` set to `''` for the statement only (so every name is
/// qualified, as in `pg_dump`'s output); the setting does not outlast the
/// call, even inside the caller's transaction. Works on 9.6 and newer.
///
/// Left out (so that they stay in the script): an index in a
/// non-default tablespace whose `TABLESPACE` clause cannot be placed
/// (it never happens with what PostgreSQL prints, but the text is
/// checked), and a full-definition constraint whose index is in a
/// non-default tablespace (`pg_get_constraintdef` does not say which).
pub async fn index_work(
    replica: &impl GenericClient,
    tables: &[QualifiedTable],
) -> Result<Vec<TableIndexWork>, pgmig_core::Error> {
    let mut seen = HashSet::new();
    let tables: Vec<&QualifiedTable> = tables.iter().filter(|t| seen.insert(*t)).collect();
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let what = "read the indexes and key constraints of the loaded tables";
    let old_path: String = replica
        .query_one("SELECT pg_catalog.current_setting('search_path')", &[])
        .await
        .map_err(pgmig_core::Error::query(what))?
        .get(0);
    let sql = format!(
        "SELECT pg_catalog.set_config('search_path', '', true);\n{};\n\
         SELECT pg_catalog.set_config('search_path', {}, true)",
        index_work_query(&tables),
        quote_literal(&old_path)
    );
    let messages = replica
        .simple_query(&sql)
        .await
        .map_err(pgmig_core::Error::query(what))?;
    let mut statement = 0;
    let mut rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::CommandComplete(_) => statement += 1,
            SimpleQueryMessage::Row(row) if statement == 1 => {
                let get = |i: usize| row.get(i).map(str::to_owned);
                rows.push(CatalogIndex {
                    schema: get(0).unwrap_or_default(),
                    table: get(1).unwrap_or_default(),
                    index: get(2).unwrap_or_default(),
                    indexdef: get(3),
                    predicate: get(4),
                    access_method: get(5).unwrap_or_default(),
                    tablespace: get(6),
                    constraint: get(7),
                    contype: get(8),
                    deferrable: get(9).as_deref() == Some("t"),
                    deferred: get(10).as_deref() == Some("t"),
                    constraintdef: get(11),
                });
            }
            _ => {}
        }
    }
    let mut work: Vec<TableIndexWork> = tables
        .iter()
        .map(|t| TableIndexWork {
            table: (*t).clone(),
            builds: Vec::new(),
            constraints: Vec::new(),
        })
        .collect();
    let position: HashMap<QualifiedTable, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).clone(), i))
        .collect();
    for row in rows {
        let table = QualifiedTable::new(row.schema.clone(), row.table.clone());
        let Some(&i) = position.get(&table) else {
            continue;
        };
        let (build, constraint) = plan_index(&table, row);
        let entry = &mut work[i];
        entry.builds.extend(build);
        entry.constraints.extend(constraint);
    }
    Ok(work)
}

/// The catalog query of [`index_work`] for `tables` (inlined as literals:
/// it runs through the simple protocol, next to the `search_path` change).
/// Rows come constraint indexes first, the primary key's first.
fn index_work_query(tables: &[&QualifiedTable]) -> String {
    let values: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "({}::text, {}::text)",
                quote_literal(&t.schema),
                quote_literal(&t.name)
            )
        })
        .collect();
    format!(
        "SELECT n.nspname::text, c.relname::text, i.relname::text, \
                pg_catalog.pg_get_indexdef(x.indexrelid), \
                pg_catalog.pg_get_expr(x.indpred, x.indrelid), \
                am.amname::text, ts.spcname::text, con.conname::text, con.contype::text, \
                con.condeferrable, con.condeferred, \
                CASE WHEN con.oid IS NULL THEN NULL ELSE pg_catalog.pg_get_constraintdef(con.oid) END \
           FROM pg_catalog.pg_index x \
           JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
           JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_am am ON am.oid = i.relam \
           JOIN (VALUES {}) AS wanted(s, r) \
             ON wanted.s = n.nspname::text AND wanted.r = c.relname::text \
           LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = i.reltablespace \
           LEFT JOIN pg_catalog.pg_constraint con \
             ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid \
            AND con.contype IN ('p', 'u', 'x') \
          WHERE c.relkind = 'r' AND x.indisvalid AND x.indislive \
          ORDER BY con.oid IS NULL, con.contype <> 'p', i.relname::text COLLATE pg_catalog.\"C\"",
        values.join(", ")
    )
}

/// One index of a loaded table as the catalog describes it.
#[derive(Debug, Clone)]
struct CatalogIndex {
    schema: String,
    table: String,
    index: String,
    /// NULL when the index was dropped meanwhile (not on a paused replica).
    indexdef: Option<String>,
    predicate: Option<String>,
    access_method: String,
    tablespace: Option<String>,
    constraint: Option<String>,
    contype: Option<String>,
    deferrable: bool,
    deferred: bool,
    constraintdef: Option<String>,
}

/// What to do for one index: its build, its constraint, either or both
/// (nothing when it must stay in the script).
fn plan_index(
    table: &QualifiedTable,
    row: CatalogIndex,
) -> (Option<IndexBuild>, Option<ConstraintAttach>) {
    let Some(indexdef) = row.indexdef else {
        return (None, None);
    };
    let qtable = table.quoted();
    let constraint = |name: &str, sql: String, index: Option<String>| ConstraintAttach {
        name: name.to_owned(),
        sql,
        drop_sql: format!(
            "ALTER TABLE ONLY {qtable} DROP CONSTRAINT IF EXISTS {}",
            quote_ident(name)
        ),
        index,
    };
    let using_index =
        matches!(row.contype.as_deref(), Some("p" | "u")) && row.access_method == "btree";
    if let (Some(name), Some(contype)) = (&row.constraint, &row.contype) {
        if !using_index {
            // Full definition: it builds its own index, in the default
            // tablespace; one elsewhere stays in the script.
            if row.tablespace.is_some() {
                return (None, None);
            }
            let Some(def) = &row.constraintdef else {
                return (None, None);
            };
            let sql = format!(
                "ALTER TABLE ONLY {qtable} ADD CONSTRAINT {} {def}",
                quote_ident(name)
            );
            return (None, Some(constraint(name, sql, None)));
        }
        let Some(create_sql) = with_tablespace(
            &indexdef,
            row.predicate.as_deref(),
            row.tablespace.as_deref(),
        ) else {
            return (None, None);
        };
        let kind = if contype == "p" {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        };
        let mut sql = format!(
            "ALTER TABLE ONLY {qtable} ADD CONSTRAINT {} {kind} USING INDEX {}",
            quote_ident(name),
            quote_ident(&row.index)
        );
        if row.deferrable {
            sql.push_str(" DEFERRABLE");
        }
        if row.deferred {
            sql.push_str(" INITIALLY DEFERRED");
        }
        let build = index_build(table, &row.index, create_sql, row.tablespace);
        return (
            Some(build),
            Some(constraint(name, sql, Some(row.index.clone()))),
        );
    }
    let Some(create_sql) = with_tablespace(
        &indexdef,
        row.predicate.as_deref(),
        row.tablespace.as_deref(),
    ) else {
        return (None, None);
    };
    (
        Some(index_build(table, &row.index, create_sql, row.tablespace)),
        None,
    )
}

fn index_build(
    table: &QualifiedTable,
    name: &str,
    create_sql: String,
    tablespace: Option<String>,
) -> IndexBuild {
    IndexBuild {
        name: name.to_owned(),
        create_sql,
        drop_sql: format!(
            "DROP INDEX IF EXISTS {}.{}",
            quote_ident(&table.schema),
            quote_ident(name)
        ),
        tablespace,
    }
}

/// `indexdef` with ` TABLESPACE ts` where `CREATE INDEX` wants it: before
/// the predicate of a partial index (`pg_get_indexdef` ends with
/// ` WHERE <pg_get_expr(indpred)>`), else at the end. `None` when the
/// predicate is not where it should be.
fn with_tablespace(
    indexdef: &str,
    predicate: Option<&str>,
    tablespace: Option<&str>,
) -> Option<String> {
    let Some(ts) = tablespace else {
        return Some(indexdef.to_owned());
    };
    let clause = format!(" TABLESPACE {}", quote_ident(ts));
    match predicate {
        None => Some(format!("{indexdef}{clause}")),
        Some(pred) => {
            let tail = format!(" WHERE {pred}");
            let head = indexdef.strip_suffix(&tail)?;
            Some(format!("{head}{clause}{tail}"))
        }
    }
}

/// The stored post-data script, split in two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDataSplit {
    /// The index work whose entries were found in the script. An index or
    /// constraint whose entry is not there (filtered out, never dumped, or
    /// dumped in another tablespace than the catalog says) is dropped, so
    /// nothing is created twice, or created that `pg_dump` did not dump.
    /// Tables keep their place, even when left with nothing to do.
    pub work: Vec<TableIndexWork>,
    /// The rest, still a valid psql script: the preamble, every other entry
    /// in its original order (comments on the moved indexes and constraints
    /// included, and whatever else a moved entry held, such as `CLUSTER ON`
    /// or `REPLICA IDENTITY USING INDEX`), the trailer.
    pub remaining_script: String,
    /// The entries moved out, in script order, described like the
    /// schema step's listing: `CONSTRAINT bench events events_pkey`,
    /// `INDEX bench events_user_id_idx`.
    pub moved: Vec<String>,
}

/// The `Type:` of the script entries that are moved.
const INDEX: &str = "INDEX";
const CONSTRAINT: &str = "CONSTRAINT";

/// One entry of a `pg_restore` script: its header comment block, then its
/// statements, up to the next entry's header.
#[derive(Debug)]
struct ScriptEntry<'a> {
    /// Where its header block starts.
    start: usize,
    /// Where its header block ends (the start of its body).
    body: usize,
    /// Where the next entry starts (or the end of the script).
    end: usize,
    /// The `-- Name: …` line.
    name_line: &'a str,
}

/// Finds the entries of a `pg_restore` script: each starts at a comment
/// block (lines starting with `--`, the first one exactly `--`) that holds
/// a `-- Name: ` line. Text before the first is the preamble; the trailer
/// belongs to the last entry's text.
fn script_entries(script: &str) -> Vec<ScriptEntry<'_>> {
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        lines.push((offset, line));
        offset += line.len();
    }
    let is_comment = |line: &str| line.starts_with("--");
    let mut entries: Vec<ScriptEntry<'_>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, line) = lines[i];
        let previous_is_comment = i > 0 && is_comment(lines[i - 1].1);
        if bare(line) == "--" && !previous_is_comment {
            let mut j = i;
            let mut name_line = None;
            while j < lines.len() && is_comment(lines[j].1) {
                let l = bare(lines[j].1);
                if name_line.is_none() && l.starts_with("-- Name: ") {
                    name_line = Some(l);
                }
                j += 1;
            }
            if let Some(name_line) = name_line {
                let body = lines.get(j).map_or(script.len(), |(o, _)| *o);
                if let Some(last) = entries.last_mut() {
                    last.end = start;
                }
                entries.push(ScriptEntry {
                    start,
                    body,
                    end: script.len(),
                    name_line,
                });
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    entries
}

/// A line without its line break.
fn bare(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// `pg_restore`'s rendering of a name in a header: line breaks become spaces.
fn sanitize(name: &str) -> String {
    name.replace(['\n', '\r'], " ")
}

/// The start of the header line `pg_restore` writes for an entry.
fn header_key(tag: &str, kind: &str, schema: &str) -> String {
    format!(
        "-- Name: {}; Type: {kind}; Schema: {}; Owner: ",
        sanitize(tag),
        sanitize(schema)
    )
}

/// The end of the first statement of `body` (after its `;` and the line
/// break that follows), if it starts with `prefix`. Quoted literals and
/// identifiers are skipped (`''`/`""` doubling, backslashes in `E''`).
fn first_statement(body: &str, prefix: &str) -> Option<(usize, usize)> {
    let start = body.len() - body.trim_start().len();
    if !body[start..].starts_with(prefix) {
        return None;
    }
    let bytes = body.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                let mut end = i + 1;
                if bytes.get(end) == Some(&b'\r') {
                    end += 1;
                }
                if bytes.get(end) == Some(&b'\n') {
                    end += 1;
                }
                return Some((start, end));
            }
            quote @ (b'\'' | b'"') => {
                let escapes = quote == b'\''
                    && i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && (i < 2 || !(bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'));
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// What the script must hold for one moved object.
struct Wanted {
    table: usize,
    kind: &'static str,
    /// The build's (or constraint's) name in its table's work.
    name: String,
    /// The tablespace the header must name.
    tablespace: Option<String>,
}

/// Splits the stored post-data script: the entries of `work`'s indexes and
/// constraints (matched exactly by their header, `-- Name: <tag>; Type:
/// INDEX|CONSTRAINT; Schema: <schema>; Owner: …`, an INDEX's tag being its
/// name and a CONSTRAINT's `<table> <constraint>`) are moved out; `work` is
/// cut down to what was found.
///
/// From a moved entry only its header and its first statement (the
/// `CREATE INDEX` or `ALTER TABLE … ADD CONSTRAINT`) leave the script;
/// anything else it holds stays where it was, as do `SET
/// default_tablespace` lines between entries. An entry is not moved (and
/// its work is dropped) when its header names another tablespace than the
/// catalog, when its statement is not the expected kind, or when two
/// objects of `work` would have the same header.
pub fn split_post_data(script: &str, work: Vec<TableIndexWork>) -> PostDataSplit {
    // The header each object of the work needs.
    let mut wanted: HashMap<String, Option<Wanted>> = HashMap::new();
    let mut want = |key: String, w: Wanted| {
        wanted
            .entry(key)
            .and_modify(|slot| *slot = None) // ambiguous: leave both
            .or_insert(Some(w));
    };
    for (t, table_work) in work.iter().enumerate() {
        let schema = &table_work.table.schema;
        let behind_constraint: HashMap<&str, &ConstraintAttach> = table_work
            .constraints
            .iter()
            .filter_map(|c| c.index.as_deref().map(|i| (i, c)))
            .collect();
        for build in &table_work.builds {
            if behind_constraint.contains_key(build.name.as_str()) {
                continue;
            }
            want(
                header_key(&build.name, INDEX, schema),
                Wanted {
                    table: t,
                    kind: INDEX,
                    name: build.name.clone(),
                    tablespace: build.tablespace.clone(),
                },
            );
        }
        for constraint in &table_work.constraints {
            let tablespace = constraint.index.as_deref().and_then(|i| {
                table_work
                    .builds
                    .iter()
                    .find(|b| b.name == i)
                    .and_then(|b| b.tablespace.clone())
            });
            want(
                header_key(
                    &format!("{} {}", table_work.table.name, constraint.name),
                    CONSTRAINT,
                    schema,
                ),
                Wanted {
                    table: t,
                    kind: CONSTRAINT,
                    name: constraint.name.clone(),
                    tablespace,
                },
            );
        }
    }

    // Match the script's entries.
    let entries = script_entries(script);
    let mut removed: Vec<(usize, usize, String)> = Vec::new();
    let mut found: HashSet<(usize, &'static str, String)> = HashSet::new();
    let mut moved = Vec::new();
    for entry in &entries {
        let line = entry.name_line;
        let matched = line.match_indices("; Owner: ").find_map(|(at, sep)| {
            let key = &line[..at + sep.len()];
            wanted
                .get_mut(key)
                .and_then(Option::take)
                .map(|w| (w, &line[at + sep.len()..]))
        });
        let Some((w, owner_part)) = matched else {
            continue;
        };
        let header_tablespace = owner_part
            .rsplit_once("; Tablespace: ")
            .map(|(_, ts)| ts.to_owned());
        if header_tablespace != w.tablespace.as_deref().map(sanitize) {
            continue;
        }
        let prefix = if w.kind == INDEX {
            "CREATE "
        } else {
            "ALTER TABLE "
        };
        let body = &script[entry.body..entry.end];
        let Some((_, stmt_end)) = first_statement(body, prefix) else {
            continue;
        };
        let cut_end = entry.body + stmt_end;
        let rest = &script[cut_end..entry.end];
        // What the entry held besides (CLUSTER ON, REPLICA IDENTITY, SET
        // STATISTICS) stays, under a note; `SET default_tablespace` lines
        // before the next entry belong to that one.
        let holds_more = rest
            .lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with("SET default_tablespace = "));
        if holds_more {
            let note = format!("--\n-- Moved to the load: {}\n--\n", &line["-- ".len()..]);
            removed.push((entry.start, cut_end, note));
        } else if rest.trim().is_empty() {
            removed.push((entry.start, entry.end, String::new()));
        } else {
            removed.push((entry.start, cut_end, String::new()));
        }
        let name = line["-- Name: ".len()..]
            .split_once("; Type: ")
            .map_or("", |(tag, _)| tag);
        moved.push(format!(
            "{} {} {name}",
            w.kind,
            sanitize(&work[w.table].table.schema)
        ));
        found.insert((w.table, w.kind, w.name));
    }

    let mut remaining_script = String::with_capacity(script.len());
    let mut at = 0;
    for (start, end, note) in removed {
        remaining_script.push_str(&script[at..start]);
        remaining_script.push_str(&note);
        at = end;
    }
    remaining_script.push_str(&script[at..]);

    let work = work
        .into_iter()
        .enumerate()
        .map(|(t, mut table_work)| {
            table_work
                .constraints
                .retain(|c| found.contains(&(t, CONSTRAINT, c.name.clone())));
            let kept_behind: HashSet<String> = table_work
                .constraints
                .iter()
                .filter_map(|c| c.index.clone())
                .collect();
            table_work.builds.retain(|b| {
                kept_behind.contains(&b.name) || found.contains(&(t, INDEX, b.name.clone()))
            });
            // A constraint whose index is not built any more cannot be attached.
            let built: HashSet<String> = table_work.builds.iter().map(|b| b.name.clone()).collect();
            table_work
                .constraints
                .retain(|c| c.index.as_ref().is_none_or(|i| built.contains(i)));
            table_work
        })
        .collect();

    PostDataSplit {
        work,
        remaining_script,
        moved,
    }
}

/// Which indexes and constraints (PRIMARY KEY, UNIQUE, EXCLUDE, FOREIGN
/// KEY, CHECK) of `tables` on the replica are missing on the target, or
/// invalid there.
///
/// Objects are compared by schema, table, name and kind; an index behind a
/// PRIMARY KEY / UNIQUE / EXCLUDE constraint is checked as part of its
/// constraint (present with the same kind, its index valid). Invalid
/// indexes of the replica are not expected (`pg_dump` leaves them out).
/// Each is described like `index bench.events_user_id_idx on bench.events`
/// or `primary key events_pkey on bench.events`, with ` (invalid)` when the
/// target has it but its index is not valid; sorted by table, then kind,
/// then name.
pub async fn missing_objects(
    replica: &impl GenericClient,
    target: &impl GenericClient,
    tables: &[QualifiedTable],
) -> Result<Vec<String>, pgmig_core::Error> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = table_objects(replica, tables, "the replica").await?;
    let have: HashMap<ObjectKey, bool> = table_objects(target, tables, "the target")
        .await?
        .into_iter()
        .collect();
    let mut missing: Vec<(ObjectKey, bool)> = wanted
        .into_iter()
        .filter(|(_, valid)| *valid)
        .filter_map(|(key, _)| match have.get(&key) {
            Some(true) => None,
            Some(false) => Some((key, true)),
            None => Some((key, false)),
        })
        .collect();
    missing.sort();
    missing.dedup();
    Ok(missing
        .into_iter()
        .map(|(key, invalid)| {
            let mut text = key.describe();
            if invalid {
                text.push_str(" (invalid)");
            }
            text
        })
        .collect())
}

/// One index or constraint of a table: table, kind (`index` or the
/// `contype` letter), name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ObjectKey {
    table: QualifiedTable,
    kind: String,
    name: String,
}

impl ObjectKey {
    fn describe(&self) -> String {
        let kind = match self.kind.as_str() {
            "index" => {
                return format!(
                    "index {}.{} on {}",
                    display_ident(&self.table.schema),
                    display_ident(&self.name),
                    self.table
                );
            }
            "p" => "primary key",
            "u" => "unique constraint",
            "x" => "exclusion constraint",
            "f" => "foreign key",
            "c" => "check constraint",
            other => other,
        };
        format!("{kind} {} on {}", display_ident(&self.name), self.table)
    }
}

/// The indexes not behind a constraint, and the constraints, of `tables`
/// on one server, each with whether it (or its index) is valid.
async fn table_objects(
    client: &impl GenericClient,
    tables: &[QualifiedTable],
    server: &str,
) -> Result<Vec<(ObjectKey, bool)>, pgmig_core::Error> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "WITH wanted(s, r) AS (SELECT * FROM unnest($1::text[], $2::text[])) \
             SELECT n.nspname::text, c.relname::text, 'index'::text, i.relname::text, x.indisvalid \
               FROM pg_catalog.pg_index x \
               JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid \
               JOIN pg_catalog.pg_class c ON c.oid = x.indrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN wanted ON wanted.s = n.nspname::text AND wanted.r = c.relname::text \
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con \
                                 WHERE con.conindid = x.indexrelid AND con.conrelid = x.indrelid \
                                   AND con.contype IN ('p', 'u', 'x')) \
             UNION ALL \
             SELECT n.nspname::text, c.relname::text, con.contype::text, con.conname::text, \
                    COALESCE(x.indisvalid, true) \
               FROM pg_catalog.pg_constraint con \
               JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN wanted ON wanted.s = n.nspname::text AND wanted.r = c.relname::text \
               LEFT JOIN pg_catalog.pg_index x \
                 ON x.indexrelid = con.conindid AND con.contype IN ('p', 'u', 'x') \
              WHERE con.contype IN ('p', 'u', 'x', 'f', 'c')",
            &[&schemas, &names],
        )
        .await
        .map_err(pgmig_core::Error::query(format!(
            "list the indexes and constraints of the loaded tables on {server}"
        )))?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                ObjectKey {
                    table: QualifiedTable::new(row.get::<_, String>(0), row.get::<_, String>(1)),
                    kind: row.get(2),
                    name: row.get(3),
                },
                row.get(4),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --section=post-data -f -` (15.18) of a PG15 schema with
    /// keys, a deferrable unique constraint, an exclusion constraint,
    /// expression / partial / INCLUDE / gin indexes, quoted names, a
    /// partitioned table, an index in tablespace `x`, CLUSTER ON, REPLICA
    /// IDENTITY, SET STATISTICS, a trigger, a foreign key and comments.
    const SCRIPT: &str = r#"--
-- PostgreSQL database dump
--

\restrict Je6TAWhkCCs2jbo51B9pbHM5XdyKTgqRPMXRCUdThKh3zeeFNvriwebnf44iM8J

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

--
-- Name: Tab "q" é Pk "x" é; Type: CONSTRAINT; Schema: Mixed Case; Owner: postgres
--

ALTER TABLE ONLY "Mixed Case"."Tab ""q"" é"
    ADD CONSTRAINT "Pk ""x"" é" PRIMARY KEY ("Id");


--
-- Name: events events_code_key; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.events
    ADD CONSTRAINT events_code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED;


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id) WITH (fillfactor='90');


--
-- Name: CONSTRAINT events_pkey ON events; Type: COMMENT; Schema: bench; Owner: postgres
--

COMMENT ON CONSTRAINT events_pkey ON bench.events IS 'the key';


--
-- Name: events events_r_excl; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.events
    ADD CONSTRAINT events_r_excl EXCLUDE USING gist (r WITH &&);


--
-- Name: parted parted_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.parted
    ADD CONSTRAINT parted_pkey PRIMARY KEY (id, at);


--
-- Name: parted_2025 parted_2025_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.parted_2025
    ADD CONSTRAINT parted_2025_pkey PRIMARY KEY (id, at);


--
-- Name: users users_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY bench.users REPLICA IDENTITY USING INDEX users_pkey;


--
-- Name: Ix é; Type: INDEX; Schema: Mixed Case; Owner: postgres
--

CREATE UNIQUE INDEX "Ix é" ON "Mixed Case"."Tab ""q"" é" USING btree ("Id") WHERE ("Id" > 0);


--
-- Name: events_doc_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX events_doc_idx ON bench.events USING gin (doc);


--
-- Name: events_lower_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX events_lower_idx ON bench.events USING btree (lower(code)) INCLUDE (n) WHERE (n > 5);


--
-- Name: events_user_id_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX events_user_id_idx ON bench.events USING btree (user_id);

ALTER TABLE bench.events CLUSTER ON events_user_id_idx;


--
-- Name: INDEX events_user_id_idx; Type: COMMENT; Schema: bench; Owner: postgres
--

COMMENT ON INDEX bench.events_user_id_idx IS 'by user';


--
-- Name: odd;idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX "odd;idx" ON bench.users USING btree ((((email || ';'::text) || '\n'::text))) WHERE (email <> 'a;b'::text);


--
-- Name: parted_at_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX parted_at_idx ON ONLY bench.parted USING btree (at);


--
-- Name: parted_2025_at_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE INDEX parted_2025_at_idx ON bench.parted_2025 USING btree (at);


SET default_tablespace = x;

--
-- Name: users_email_idx; Type: INDEX; Schema: bench; Owner: postgres; Tablespace: x
--

CREATE INDEX users_email_idx ON bench.users USING btree (email);


SET default_tablespace = '';

--
-- Name: users_email_lower_idx; Type: INDEX; Schema: bench; Owner: postgres
--

CREATE UNIQUE INDEX users_email_lower_idx ON bench.users USING btree (lower(email));
ALTER INDEX bench.users_email_lower_idx ALTER COLUMN 1 SET STATISTICS 500;


--
-- Name: parted_2025_at_idx; Type: INDEX ATTACH; Schema: bench; Owner: postgres
--

ALTER INDEX bench.parted_at_idx ATTACH PARTITION bench.parted_2025_at_idx;


--
-- Name: parted_2025_pkey; Type: INDEX ATTACH; Schema: bench; Owner: postgres
--

ALTER INDEX bench.parted_pkey ATTACH PARTITION bench.parted_2025_pkey;


--
-- Name: users tt; Type: TRIGGER; Schema: bench; Owner: postgres
--

CREATE TRIGGER tt BEFORE INSERT ON bench.users FOR EACH ROW EXECUTE FUNCTION bench.t();


--
-- Name: events events_user_id_fkey; Type: FK CONSTRAINT; Schema: bench; Owner: postgres
--

ALTER TABLE ONLY bench.events
    ADD CONSTRAINT events_user_id_fkey FOREIGN KEY (user_id) REFERENCES bench.users(id);


--
-- PostgreSQL database dump complete
--

\unrestrict Je6TAWhkCCs2jbo51B9pbHM5XdyKTgqRPMXRCUdThKh3zeeFNvriwebnf44iM8J

"#;

    fn build(schema: &str, name: &str, create: &str, tablespace: Option<&str>) -> IndexBuild {
        IndexBuild {
            name: name.into(),
            create_sql: create.into(),
            drop_sql: format!(
                "DROP INDEX IF EXISTS {}.{}",
                quote_ident(schema),
                quote_ident(name)
            ),
            tablespace: tablespace.map(str::to_owned),
        }
    }

    fn key(table: &QualifiedTable, name: &str, kind: &str) -> (IndexBuild, ConstraintAttach) {
        let qt = table.quoted();
        let q = quote_ident(name);
        (
            build(
                &table.schema,
                name,
                &format!("CREATE UNIQUE INDEX {q} ON {qt} (x)"),
                None,
            ),
            ConstraintAttach {
                name: name.into(),
                sql: format!("ALTER TABLE ONLY {qt} ADD CONSTRAINT {q} {kind} USING INDEX {q}"),
                drop_sql: format!("ALTER TABLE ONLY {qt} DROP CONSTRAINT IF EXISTS {q}"),
                index: Some(name.into()),
            },
        )
    }

    fn full_def(table: &QualifiedTable, name: &str, def: &str) -> ConstraintAttach {
        ConstraintAttach {
            name: name.into(),
            sql: format!(
                "ALTER TABLE ONLY {} ADD CONSTRAINT {} {def}",
                table.quoted(),
                quote_ident(name)
            ),
            drop_sql: String::new(),
            index: None,
        }
    }

    fn table_work(
        table: &QualifiedTable,
        keys: &[(&str, &str)],
        indexes: &[(&str, Option<&str>)],
    ) -> TableIndexWork {
        let mut work = TableIndexWork {
            table: table.clone(),
            builds: Vec::new(),
            constraints: Vec::new(),
        };
        for (name, kind) in keys {
            let (b, c) = key(table, name, kind);
            work.builds.push(b);
            work.constraints.push(c);
        }
        for (name, ts) in indexes {
            work.builds
                .push(build(&table.schema, name, "CREATE INDEX …", *ts));
        }
        work
    }

    fn names(work: &TableIndexWork) -> (Vec<&str>, Vec<&str>) {
        (
            work.builds.iter().map(|b| b.name.as_str()).collect(),
            work.constraints.iter().map(|c| c.name.as_str()).collect(),
        )
    }

    /// The work `index_work` gives for the fixture's tables, plus an index
    /// the dump does not have.
    fn fixture_work() -> Vec<TableIndexWork> {
        let events = QualifiedTable::new("bench", "events");
        let mut events_work = table_work(
            &events,
            &[
                ("events_pkey", "PRIMARY KEY"),
                ("events_code_key", "UNIQUE"),
            ],
            &[
                ("events_doc_idx", None),
                ("events_lower_idx", None),
                ("events_user_id_idx", None),
            ],
        );
        events_work.constraints.push(full_def(
            &events,
            "events_r_excl",
            "EXCLUDE USING gist (r WITH &&)",
        ));
        let users = QualifiedTable::new("bench", "users");
        let mixed = QualifiedTable::new("Mixed Case", "Tab \"q\" é");
        let leaf = QualifiedTable::new("bench", "parted_2025");
        vec![
            events_work,
            table_work(
                &users,
                &[("users_pkey", "PRIMARY KEY")],
                &[
                    ("users_email_idx", Some("x")),
                    ("users_email_lower_idx", None),
                    ("odd;idx", None),
                    ("users_gone_idx", None),
                ],
            ),
            table_work(&mixed, &[("Pk \"x\" é", "PRIMARY KEY")], &[("Ix é", None)]),
            table_work(
                &leaf,
                &[("parted_2025_pkey", "PRIMARY KEY")],
                &[("parted_2025_at_idx", None)],
            ),
            table_work(&QualifiedTable::new("bench", "empty"), &[], &[]),
        ]
    }

    fn headers(script: &str) -> Vec<&str> {
        script
            .lines()
            .filter(|l| l.starts_with("-- Name: "))
            .collect()
    }

    #[test]
    fn split_moves_the_entries_of_the_work_out_of_a_real_script() {
        let split = split_post_data(SCRIPT, fixture_work());
        assert_eq!(
            split.moved,
            [
                "CONSTRAINT Mixed Case Tab \"q\" é Pk \"x\" é",
                "CONSTRAINT bench events events_code_key",
                "CONSTRAINT bench events events_pkey",
                "CONSTRAINT bench events events_r_excl",
                "CONSTRAINT bench parted_2025 parted_2025_pkey",
                "CONSTRAINT bench users users_pkey",
                "INDEX Mixed Case Ix é",
                "INDEX bench events_doc_idx",
                "INDEX bench events_lower_idx",
                "INDEX bench events_user_id_idx",
                "INDEX bench odd;idx",
                "INDEX bench parted_2025_at_idx",
                "INDEX bench users_email_idx",
                "INDEX bench users_email_lower_idx",
            ]
        );
        // Everything found is kept; the index the dump lacks is dropped.
        let kept: Vec<_> = split.work.iter().map(names).collect();
        assert_eq!(
            kept,
            [
                (
                    vec![
                        "events_pkey",
                        "events_code_key",
                        "events_doc_idx",
                        "events_lower_idx",
                        "events_user_id_idx"
                    ],
                    vec!["events_pkey", "events_code_key", "events_r_excl"],
                ),
                (
                    vec![
                        "users_pkey",
                        "users_email_idx",
                        "users_email_lower_idx",
                        "odd;idx"
                    ],
                    vec!["users_pkey"],
                ),
                (vec!["Pk \"x\" é", "Ix é"], vec!["Pk \"x\" é"]),
                (
                    vec!["parted_2025_pkey", "parted_2025_at_idx"],
                    vec!["parted_2025_pkey"]
                ),
                (vec![], vec![]),
            ]
        );
        assert!(split.work[4].is_empty());

        let rest = &split.remaining_script;
        assert_eq!(
            headers(rest),
            [
                "-- Name: CONSTRAINT events_pkey ON events; Type: COMMENT; Schema: bench; Owner: postgres",
                "-- Name: parted parted_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres",
                "-- Name: INDEX events_user_id_idx; Type: COMMENT; Schema: bench; Owner: postgres",
                "-- Name: parted_at_idx; Type: INDEX; Schema: bench; Owner: postgres",
                "-- Name: parted_2025_at_idx; Type: INDEX ATTACH; Schema: bench; Owner: postgres",
                "-- Name: parted_2025_pkey; Type: INDEX ATTACH; Schema: bench; Owner: postgres",
                "-- Name: users tt; Type: TRIGGER; Schema: bench; Owner: postgres",
                "-- Name: events events_user_id_fkey; Type: FK CONSTRAINT; Schema: bench; Owner: postgres",
            ]
        );
        // Preamble and trailer stay whole.
        let preamble_end = SCRIPT.find("SET default_tablespace = '';\n\n--\n").unwrap();
        assert!(rest.starts_with(&SCRIPT[..preamble_end]), "{rest}");
        let trailer = SCRIPT
            .find("--\n-- PostgreSQL database dump complete")
            .unwrap();
        assert!(rest.ends_with(&SCRIPT[trailer..]), "{rest}");
        // No moved statement is left…
        assert!(!rest.contains("CREATE UNIQUE INDEX"), "{rest}");
        assert!(!rest.contains("events_pkey PRIMARY KEY"), "{rest}");
        assert!(!rest.contains("EXCLUDE USING"), "{rest}");
        assert_eq!(rest.matches("CREATE INDEX").count(), 1, "{rest}");
        assert!(
            rest.contains("CREATE INDEX parted_at_idx ON ONLY bench.parted USING btree (at);\n")
        );
        // …but what the moved entries held besides stays in place.
        for kept in [
            "--\n-- Moved to the load: Name: users users_pkey; Type: CONSTRAINT; Schema: bench; Owner: postgres\n--\n\n\
             ALTER TABLE ONLY bench.users REPLICA IDENTITY USING INDEX users_pkey;\n\n\n--\n",
            "--\n-- Moved to the load: Name: events_user_id_idx; Type: INDEX; Schema: bench; Owner: postgres\n--\n\n\
             ALTER TABLE bench.events CLUSTER ON events_user_id_idx;\n\n\n--\n",
            "--\n-- Moved to the load: Name: users_email_lower_idx; Type: INDEX; Schema: bench; Owner: postgres\n--\n\
             ALTER INDEX bench.users_email_lower_idx ALTER COLUMN 1 SET STATISTICS 500;\n\n\n--\n",
            "\nSET default_tablespace = x;\n",
            "\nCOMMENT ON INDEX bench.events_user_id_idx IS 'by user';\n",
        ] {
            assert!(rest.contains(kept), "{kept} not in {rest}");
        }
        let order = |needle: &str| rest.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(order("REPLICA IDENTITY") < order("CLUSTER ON"));
        assert!(order("CLUSTER ON") < order("COMMENT ON INDEX"));
        assert!(order("SET default_tablespace = x") < order("SET STATISTICS"));
        assert!(order("SET default_tablespace = ''") < order("SET STATISTICS"));

        // The rest holds nothing to move any more.
        let again = split_post_data(rest, fixture_work());
        assert!(again.moved.is_empty());
        assert!(again.work.iter().all(TableIndexWork::is_empty));
        assert_eq!(&again.remaining_script, rest);
    }

    #[test]
    fn split_of_a_script_without_the_work_changes_nothing() {
        let split = split_post_data(SCRIPT, Vec::new());
        assert_eq!(split.remaining_script, SCRIPT);
        assert!(split.moved.is_empty());
        let split = split_post_data("", fixture_work());
        assert_eq!(split.remaining_script, "");
        assert!(split.work.iter().all(TableIndexWork::is_empty));
        assert_eq!(split.work.len(), 5);
    }

    #[test]
    fn an_entry_in_another_tablespace_stays_in_the_script() {
        let users = QualifiedTable::new("bench", "users");
        // The catalog says default tablespace, the dump says x (or the
        // reverse, as after `pg_dump --no-tablespaces`): leave it to pg_dump.
        for (name, ts) in [("users_email_idx", None), ("events_doc_idx", Some("x"))] {
            let work = vec![table_work(&users, &[], &[(name, ts)])];
            let split = split_post_data(SCRIPT, work);
            assert!(split.moved.is_empty(), "{name}");
            assert!(split.work[0].is_empty(), "{name}");
            assert_eq!(split.remaining_script, SCRIPT);
        }
    }

    #[test]
    fn a_constraint_not_in_the_script_drops_its_index_too() {
        let users = QualifiedTable::new("bench", "users");
        let work = vec![table_work(&users, &[("users_email_key", "UNIQUE")], &[])];
        let split = split_post_data(SCRIPT, work);
        assert!(split.work[0].is_empty());
        assert_eq!(split.remaining_script, SCRIPT);
    }

    #[test]
    fn ambiguous_headers_and_unexpected_statements_stay() {
        let script = "SET x = 1;\n\n\
            --\n-- Name: a b c; Type: CONSTRAINT; Schema: s; Owner: o\n--\n\n\
            ALTER TABLE ONLY s.\"a b\"\n    ADD CONSTRAINT c PRIMARY KEY (id);\n\n\n\
            --\n-- Name: i; Type: INDEX; Schema: s; Owner: o\n--\n\n\
            SELECT 1;\n\n\n\
            --\n-- Name: j; Type: INDEX; Schema: s; Owner: o\n--\n\n\
            CREATE INDEX j ON s.a USING btree (x);\n";
        let a_b = QualifiedTable::new("s", "a b");
        let a = QualifiedTable::new("s", "a");
        let work = vec![
            table_work(&a_b, &[("c", "PRIMARY KEY")], &[]),
            table_work(&a, &[("b c", "PRIMARY KEY")], &[("i", None), ("j", None)]),
        ];
        let split = split_post_data(script, work);
        assert_eq!(split.moved, ["INDEX s j"]);
        assert!(split.work[0].is_empty());
        assert_eq!(names(&split.work[1]), (vec!["j"], vec![]));
        assert_eq!(
            split.remaining_script,
            script.replace(
                "\n\n\n--\n-- Name: j; Type: INDEX; Schema: s; Owner: o\n--\n\nCREATE INDEX j ON s.a USING btree (x);\n",
                "\n\n\n"
            )
        );
    }

    #[test]
    fn names_with_line_breaks_match_as_pg_restore_prints_them() {
        let script = "--\n-- Name: a b; Type: INDEX; Schema: s x; Owner: o\n--\n\nCREATE INDEX \"a\nb\" ON \"s\nx\".t USING btree (x);\n";
        let t = QualifiedTable::new("s\nx", "t");
        let split = split_post_data(script, vec![table_work(&t, &[], &[("a\nb", None)])]);
        assert_eq!(split.moved, ["INDEX s x a b"]);
        assert_eq!(split.remaining_script, "");
    }

    #[test]
    fn statements_end_at_the_first_unquoted_semicolon() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "\nCREATE INDEX a ON t (x);\nALTER …;\n",
                "CREATE ",
                Some("CREATE INDEX a ON t (x);\n"),
            ),
            (
                "CREATE INDEX \"a;\"\"b\" ON t ((x || ';'));\r\nX",
                "CREATE ",
                Some("CREATE INDEX \"a;\"\"b\" ON t ((x || ';'));\r\n"),
            ),
            (
                "CREATE INDEX a ON t (x) WHERE (y <> 'it''s;');",
                "CREATE ",
                Some("CREATE INDEX a ON t (x) WHERE (y <> 'it''s;');"),
            ),
            (
                "CREATE INDEX a ON t (x) WHERE (y <> E'\\';');\n",
                "CREATE ",
                Some("CREATE INDEX a ON t (x) WHERE (y <> E'\\';');\n"),
            ),
            (
                "CREATE INDEX a ON t (x) WHERE (y <> 'a\\');\n",
                "CREATE ",
                Some("CREATE INDEX a ON t (x) WHERE (y <> 'a\\');\n"),
            ),
            (
                "ALTER TABLE ONLY t\n    ADD CONSTRAINT c UNIQUE (x);\n",
                "ALTER TABLE ",
                Some("ALTER TABLE ONLY t\n    ADD CONSTRAINT c UNIQUE (x);\n"),
            ),
            ("SELECT 1;", "CREATE ", None),
            ("CREATE INDEX a ON t ('x;", "CREATE ", None),
        ];
        for (body, prefix, want) in cases {
            let got = first_statement(body, prefix).map(|(s, e)| &body[s..e]);
            assert_eq!(got, *want, "{body:?}");
        }
    }

    #[test]
    fn tablespaces_go_before_the_predicate() {
        /// Definition, predicate, tablespace, wanted.
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "CREATE INDEX a ON s.t USING btree (x)",
                None,
                None,
                Some("CREATE INDEX a ON s.t USING btree (x)"),
            ),
            (
                "CREATE INDEX a ON s.t USING btree (x)",
                None,
                Some("Fast \"ts\""),
                Some("CREATE INDEX a ON s.t USING btree (x) TABLESPACE \"Fast \"\"ts\"\"\""),
            ),
            (
                "CREATE INDEX a ON s.t USING btree (x) INCLUDE (y) WITH (fillfactor='70') WHERE (x > 5)",
                Some("(x > 5)"),
                Some("x"),
                Some(
                    "CREATE INDEX a ON s.t USING btree (x) INCLUDE (y) WITH (fillfactor='70') TABLESPACE \"x\" WHERE (x > 5)",
                ),
            ),
            (
                "CREATE INDEX a ON s.t USING btree (x) WHERE (x > 5)",
                Some("(x > 6)"),
                Some("x"),
                None,
            ),
            (
                "CREATE INDEX a ON s.t USING btree (x) WHERE (x > 5)",
                Some("(x > 6)"),
                None,
                Some("CREATE INDEX a ON s.t USING btree (x) WHERE (x > 5)"),
            ),
        ];
        for (def, pred, ts, want) in cases {
            assert_eq!(with_tablespace(def, *pred, *ts).as_deref(), *want, "{def}");
        }
    }

    fn catalog(index: &str, contype: Option<&str>, am: &str) -> CatalogIndex {
        CatalogIndex {
            schema: "Bench".into(),
            table: "My T".into(),
            index: index.into(),
            indexdef: Some(format!(
                "CREATE UNIQUE INDEX \"{index}\" ON \"Bench\".\"My T\" USING {am} (id)"
            )),
            predicate: None,
            access_method: am.into(),
            tablespace: None,
            constraint: contype.map(|_| index.to_owned()),
            contype: contype.map(str::to_owned),
            deferrable: false,
            deferred: false,
            constraintdef: contype.map(|c| match c {
                "x" => "EXCLUDE USING gist (r WITH &&) DEFERRABLE".to_owned(),
                "p" => "PRIMARY KEY (id, p WITHOUT OVERLAPS)".to_owned(),
                _ => "UNIQUE (id)".to_owned(),
            }),
        }
    }

    #[test]
    fn keys_take_over_their_index_and_the_rest_use_their_definition() {
        let t = QualifiedTable::new("Bench", "My T");
        let (b, c) = plan_index(&t, catalog("t_pkey", Some("p"), "btree"));
        assert_eq!(
            b.unwrap(),
            IndexBuild {
                name: "t_pkey".into(),
                create_sql: "CREATE UNIQUE INDEX \"t_pkey\" ON \"Bench\".\"My T\" USING btree (id)"
                    .into(),
                drop_sql: "DROP INDEX IF EXISTS \"Bench\".\"t_pkey\"".into(),
                tablespace: None,
            }
        );
        assert_eq!(
            c.unwrap(),
            ConstraintAttach {
                name: "t_pkey".into(),
                sql: "ALTER TABLE ONLY \"Bench\".\"My T\" ADD CONSTRAINT \"t_pkey\" PRIMARY KEY USING INDEX \"t_pkey\"".into(),
                drop_sql: "ALTER TABLE ONLY \"Bench\".\"My T\" DROP CONSTRAINT IF EXISTS \"t_pkey\"".into(),
                index: Some("t_pkey".into()),
            }
        );

        let mut deferred = catalog("Code Key", Some("u"), "btree");
        deferred.deferrable = true;
        deferred.deferred = true;
        deferred.tablespace = Some("fast".into());
        let (b, c) = plan_index(&t, deferred);
        assert_eq!(
            b.unwrap().create_sql,
            "CREATE UNIQUE INDEX \"Code Key\" ON \"Bench\".\"My T\" USING btree (id) TABLESPACE \"fast\""
        );
        assert_eq!(
            c.unwrap().sql,
            "ALTER TABLE ONLY \"Bench\".\"My T\" ADD CONSTRAINT \"Code Key\" UNIQUE USING INDEX \"Code Key\" DEFERRABLE INITIALLY DEFERRED"
        );

        // Exclusion constraints, and keys over another access method
        // (PG18's WITHOUT OVERLAPS), are added whole.
        for (contype, def) in [
            ("x", "EXCLUDE USING gist (r WITH &&) DEFERRABLE"),
            ("p", "PRIMARY KEY (id, p WITHOUT OVERLAPS)"),
        ] {
            let (b, c) = plan_index(&t, catalog("t_excl", Some(contype), "gist"));
            assert_eq!(b, None);
            let c = c.unwrap();
            assert_eq!(
                c.sql,
                format!("ALTER TABLE ONLY \"Bench\".\"My T\" ADD CONSTRAINT \"t_excl\" {def}")
            );
            assert_eq!(c.index, None);
        }
        // …but not when their index has its own tablespace.
        let mut elsewhere = catalog("t_excl", Some("x"), "gist");
        elsewhere.tablespace = Some("fast".into());
        assert_eq!(plan_index(&t, elsewhere), (None, None));

        // A plain index.
        let (b, c) = plan_index(&t, catalog("t_idx", None, "gin"));
        assert_eq!(
            b.unwrap().create_sql,
            "CREATE UNIQUE INDEX \"t_idx\" ON \"Bench\".\"My T\" USING gin (id)"
        );
        assert_eq!(c, None);
        // Dropped meanwhile.
        let mut gone = catalog("t_idx", None, "btree");
        gone.indexdef = None;
        assert_eq!(plan_index(&t, gone), (None, None));
    }

    #[test]
    fn the_catalog_query_inlines_names_as_literals() {
        let a = QualifiedTable::new("Sales", "it's");
        let b = QualifiedTable::new("s", "back\\slash");
        let sql = index_work_query(&[&a, &b]);
        assert!(
            sql.contains(
                "(VALUES ('Sales'::text, 'it''s'::text), ('s'::text, E'back\\\\slash'::text))"
            ),
            "{sql}"
        );
    }

    #[test]
    fn missing_objects_read_like_the_catalog() {
        let t = QualifiedTable::new("bench", "Events");
        let key = |kind: &str, name: &str| ObjectKey {
            table: t.clone(),
            kind: kind.into(),
            name: name.into(),
        };
        assert_eq!(
            key("index", "ev_idx").describe(),
            "index bench.ev_idx on bench.\"Events\""
        );
        assert_eq!(
            key("p", "Events_pkey").describe(),
            "primary key \"Events_pkey\" on bench.\"Events\""
        );
        assert_eq!(
            key("u", "u").describe(),
            "unique constraint u on bench.\"Events\""
        );
        assert_eq!(
            key("x", "x").describe(),
            "exclusion constraint x on bench.\"Events\""
        );
        assert_eq!(
            key("f", "f").describe(),
            "foreign key f on bench.\"Events\""
        );
        assert_eq!(
            key("c", "c").describe(),
            "check constraint c on bench.\"Events\""
        );
    }
}
