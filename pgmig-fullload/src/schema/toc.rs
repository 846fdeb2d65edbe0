//! The table of contents of a custom-format dump, as `pg_restore -l` prints
//! it: one entry per object, used to name what is deferred and to leave out
//! objects (the `pglogical` extension) through `pg_restore -L`.

use serde::{Deserialize, Serialize};

/// One object of a dump: `215; 1259 16390 TABLE public orders app`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocEntry {
    /// The dump's id of the entry (what `pg_restore -L` matches).
    pub dump_id: u32,
    /// What kind of object: `INDEX`, `FK CONSTRAINT`, `TRIGGER`, …
    pub kind: String,
    /// Its schema, when it has one.
    pub schema: Option<String>,
    /// Its name as `pg_dump` tags it (a constraint's is `table name`).
    pub name: String,
}

/// The object kinds `pg_dump` writes, longest first so that a kind that is a
/// prefix of another (`MATERIALIZED VIEW` / `MATERIALIZED VIEW DATA`) is
/// recognised whole.
const KINDS: &[&str] = &[
    "MATERIALIZED VIEW DATA",
    "FOREIGN DATA WRAPPER",
    "EXTENDED STATISTICS",
    "PUBLICATION TABLES IN SCHEMA",
    "PUBLICATION TABLE",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "MATERIALIZED VIEW",
    "DEFAULT ACL",
    "FK CONSTRAINT",
    "CHECK CONSTRAINT",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "TABLE ATTACH",
    "INDEX ATTACH",
    "EVENT TRIGGER",
    "FOREIGN TABLE",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "USER MAPPING",
    "ROW SECURITY",
    "LARGE OBJECT",
    "BLOB METADATA",
    "TABLE DATA",
    "ACCESS METHOD",
    "CONSTRAINT",
    "CONVERSION",
    "COLLATION",
    "EXTENSION",
    "PROCEDURE",
    "AGGREGATE",
    "TRANSFORM",
    "SEQUENCE",
    "FUNCTION",
    "OPERATOR",
    "TRIGGER",
    "COMMENT",
    "DEFAULT",
    "DATABASE",
    "ENCODING",
    "STDSTRINGS",
    "SEARCHPATH",
    "SCHEMA",
    "SERVER",
    "DOMAIN",
    "POLICY",
    "INDEX",
    "TABLE",
    "TYPE",
    "VIEW",
    "RULE",
    "CAST",
    "ACL",
    "BLOBS",
    "PUBLICATION",
    "SUBSCRIPTION",
    "STATISTICS DATA",
];

impl TocEntry {
    /// Parses one line of `pg_restore -l`; `None` for comments, blank lines
    /// and lines of an unknown shape.
    pub fn parse(line: &str) -> Option<TocEntry> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.starts_with(';') || line.trim().is_empty() {
            return None;
        }
        let (id, rest) = line.split_once("; ")?;
        let dump_id = id.trim().parse().ok()?;
        // `<catalog oid> <object oid> `
        let mut rest = rest;
        for _ in 0..2 {
            let (num, after) = rest.split_once(' ')?;
            num.parse::<u32>().ok()?;
            rest = after;
        }
        let kind = KINDS.iter().find(|k| {
            rest.strip_prefix(**k)
                .is_some_and(|after| after.starts_with(' '))
        })?;
        let rest = &rest[kind.len() + 1..];
        // `<schema or -> <name …> <owner, maybe empty>`
        let (schema, rest) = rest.split_once(' ')?;
        let name = match rest.rsplit_once(' ') {
            Some((name, _owner)) => name,
            None => rest,
        };
        Some(TocEntry {
            dump_id,
            kind: (*kind).to_owned(),
            schema: (schema != "-").then(|| schema.to_owned()),
            name: name.to_owned(),
        })
    }

    /// Whether the entry belongs to the `pglogical` extension's own setup
    /// (the extension, its comment, its schema).
    pub fn is_pglogical(&self) -> bool {
        match self.kind.as_str() {
            "EXTENSION" | "SCHEMA" => self.name == "pglogical",
            "COMMENT" => self.name == "EXTENSION pglogical" || self.name == "SCHEMA pglogical",
            _ => self.schema.as_deref() == Some("pglogical"),
        }
    }

    /// Whether the entry grants or revokes privileges on a built-in object
    /// (`ACL pg_catalog FUNCTION pg_wal_replay_pause() …`): that is the
    /// source server's administration — e.g. the maintenance replica's
    /// role allowed to pause replay — not the database's schema, and on the
    /// target it would fail (a managed target's admin is no superuser, and
    /// the grantee may not exist there).
    pub fn is_builtin_acl(&self) -> bool {
        self.kind == "ACL" && self.schema.as_deref() == Some("pg_catalog")
    }

    /// `INDEX public orders_pkey`, for notes and listings.
    pub fn describe(&self) -> String {
        match &self.schema {
            Some(s) => format!("{} {s} {}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// Parses the whole output of `pg_restore -l`.
pub fn parse_list(text: &str) -> Vec<TocEntry> {
    text.lines().filter_map(TocEntry::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kind, schema and name of a parsed entry.
    type Parsed<'a> = (&'a str, Option<&'a str>, &'a str);

    #[test]
    fn parses_restore_list_lines() {
        let cases: &[(&str, Option<Parsed>)] = &[
            (
                "215; 1259 16390 TABLE public orders app",
                Some(("TABLE", Some("public"), "orders")),
            ),
            (
                "3301; 2606 16400 CONSTRAINT public orders orders_pkey postgres",
                Some(("CONSTRAINT", Some("public"), "orders orders_pkey")),
            ),
            (
                "3302; 2606 16401 FK CONSTRAINT s1 Mixed Case fk_x postgres",
                Some(("FK CONSTRAINT", Some("s1"), "Mixed Case fk_x")),
            ),
            (
                "3400; 0 16500 MATERIALIZED VIEW DATA public mv postgres",
                Some(("MATERIALIZED VIEW DATA", Some("public"), "mv")),
            ),
            (
                "220; 1259 16501 MATERIALIZED VIEW public mv postgres",
                Some(("MATERIALIZED VIEW", Some("public"), "mv")),
            ),
            (
                "2; 3079 16384 EXTENSION - citext ",
                Some(("EXTENSION", None, "citext")),
            ),
            (
                "3500; 0 0 INDEX ATTACH public p_1_pkey postgres",
                Some(("INDEX ATTACH", Some("public"), "p_1_pkey")),
            ),
            (";", None),
            ("; Archive created at 2026-11-27", None),
            ("", None),
            ("garbage", None),
            ("12; x y TABLE public t o", None),
        ];
        for (line, want) in cases {
            let got = TocEntry::parse(line);
            let got = got
                .as_ref()
                .map(|e| (e.kind.as_str(), e.schema.as_deref(), e.name.as_str()));
            assert_eq!(got, *want, "{line:?}");
        }
    }

    #[test]
    fn recognises_grants_on_builtin_objects() {
        let acl = |line: &str| TocEntry::parse(line).unwrap().is_builtin_acl();
        assert!(acl(
            "4012; 0 0 ACL pg_catalog FUNCTION pg_wal_replay_pause() postgres"
        ));
        assert!(!acl("4013; 0 0 ACL public TABLE orders app"));
        assert!(!acl("4014; 0 0 ACL - SCHEMA public pg_database_owner"));
        assert!(!acl("3301; 2606 16400 CONSTRAINT pg_catalog x y postgres"));
    }

    #[test]
    fn recognises_pglogical_entries() {
        let ext = TocEntry::parse("2; 3079 16384 EXTENSION - pglogical ").unwrap();
        let comment = TocEntry::parse("3; 0 0 COMMENT - EXTENSION pglogical ").unwrap();
        let other = TocEntry::parse("4; 3079 16385 EXTENSION - citext ").unwrap();
        assert!(ext.is_pglogical());
        assert!(comment.is_pglogical());
        assert!(!other.is_pglogical());
    }
}
