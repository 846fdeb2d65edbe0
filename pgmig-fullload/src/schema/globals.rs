//! Roles and other cluster-wide objects from `pg_dumpall --globals-only
//! --no-role-passwords`, reshaped for a managed target: without the
//! attributes it refuses (SUPERUSER, REPLICATION, BYPASSRLS), without the
//! provider's own roles (`postgres`, `rds*`, …) and tablespaces, and safe to
//! apply twice (`CREATE ROLE` only when missing).

use pgmig_core::ident::quote_literal;
use serde::Serialize;

/// Globals ready to apply, and a note of everything left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Globals {
    /// The SQL to run on the target.
    pub sql: String,
    /// What was left out and why, one line each.
    pub left_out: Vec<String>,
}

/// Role attributes that a managed target refuses to grant.
const REFUSED_ATTRIBUTES: &[&str] = &["SUPERUSER", "REPLICATION", "BYPASSRLS"];

/// Whether a role belongs to the server or the provider rather than the
/// application: `postgres`, predefined `pg_*` roles, RDS, Azure and Cloud
/// SQL administration roles.
pub fn is_provider_role(name: &str) -> bool {
    name == "postgres"
        || name.starts_with("pg_")
        || name.starts_with("rds")
        || name.starts_with("azure")
        || name.starts_with("cloudsql")
}

/// Reads one identifier as `pg_dumpall` writes it (quoted when needed) at
/// the start of `s`; returns it unquoted and the rest.
fn take_ident(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s.find([' ', ';']).unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_owned(), &s[end..]))
    }
}

/// `ALTER ROLE <name> WITH <attributes>;` without the refused attributes:
/// the role name exactly as written, only the words after ` WITH `
/// filtered. The attributes dropped go to `dropped`.
fn filter_role_attributes<'a>(
    rest: &'a str,
    after: &'a str,
    dropped: &mut Vec<&'a str>,
) -> Option<String> {
    let attributes = after.strip_prefix(" WITH ")?;
    let name_text = &rest[..rest.len() - after.len()];
    let kept: Vec<&str> = attributes
        .trim_end_matches(';')
        .split(' ')
        .filter(|word| {
            let refused = REFUSED_ATTRIBUTES.contains(word);
            if refused {
                dropped.push(*word);
            }
            !refused
        })
        .collect();
    Some(format!("ALTER ROLE {name_text} WITH {};", kept.join(" ")))
}

/// Reshapes the output of `pg_dumpall --globals-only --no-role-passwords`.
/// A role's `ALTER ROLE … WITH …` runs only when pgmig creates the role
/// (in the same `IF NOT EXISTS` block): a role the target already has (its
/// admin user, say) is never altered. The `\restrict` lines are kept: the
/// SQL goes to psql as `pg_dumpall` wrote it.
pub fn filter_globals(dump: &str) -> Globals {
    let mut sql = String::new();
    let mut left_out = Vec::new();
    // The filtered `ALTER ROLE … WITH …` of each role, for its CREATE.
    let mut role_attributes: std::collections::HashMap<String, String> = Default::default();
    let mut created: std::collections::HashSet<String> = Default::default();
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("CREATE ROLE ")
            && let Some((name, _)) = take_ident(rest)
        {
            created.insert(name);
        } else if let Some(rest) = line.strip_prefix("ALTER ROLE ")
            && let Some((name, after)) = take_ident(rest)
            && !is_provider_role(&name)
        {
            let mut dropped = Vec::new();
            if let Some(alter) = filter_role_attributes(rest, after, &mut dropped) {
                if !dropped.is_empty() {
                    left_out.push(format!(
                        "role {name}: attribute(s) {} left out (a managed target refuses them)",
                        dropped.join(", ")
                    ));
                }
                role_attributes.insert(name, alter);
            }
        }
    }
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("CREATE ROLE ") {
            let Some((name, _)) = take_ident(rest) else {
                sql.push_str(line);
                sql.push('\n');
                continue;
            };
            if is_provider_role(&name) {
                left_out.push(format!(
                    "role {name}: belongs to the server or provider, not copied"
                ));
                continue;
            }
            let body = match role_attributes.get(&name) {
                Some(alter) => format!(
                    "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) THEN {line} {alter} END IF;",
                    quote_literal(&name)
                ),
                None => format!(
                    "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) THEN {line} END IF;",
                    quote_literal(&name)
                ),
            };
            let tag = super::sections::dollar_tag(&body);
            sql.push_str(&format!("DO {tag} BEGIN {body} END {tag};\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("ALTER ROLE ")
            && let Some((name, after)) = take_ident(rest)
        {
            if is_provider_role(&name) {
                continue;
            }
            if after.starts_with(" WITH ") {
                // Applied with the CREATE ROLE, when pgmig creates it.
                if !created.contains(&name) {
                    left_out.push(format!(
                        "role {name}: attributes not applied (pg_dumpall does not create it, \
                         so it is the dumping role; an existing target role is never altered)"
                    ));
                }
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("COMMENT ON ROLE ")
            && let Some((name, _)) = take_ident(rest)
            && is_provider_role(&name)
        {
            continue;
        }
        if let Some(rest) = line.strip_prefix("GRANT ")
            && let Some((granted, after)) = take_ident(rest)
            && let Some(after) = after.strip_prefix(" TO ")
            && let Some((member, after)) = take_ident(after)
        {
            if (is_provider_role(&member))
                || (is_provider_role(&granted) && !granted.starts_with("pg_"))
            {
                left_out.push(format!(
                    "{}: involves a provider role",
                    line.trim_end_matches(';')
                ));
                continue;
            }
            let mut kept = format!(
                "GRANT {} TO {}",
                pgmig_core::quote_ident(&granted),
                pgmig_core::quote_ident(&member)
            );
            let after = after.trim_end_matches(';');
            match after.split_once(" GRANTED BY ") {
                Some((options, grantor)) => {
                    kept.push_str(options);
                    let grantor_name = take_ident(grantor).map(|(n, _)| n).unwrap_or_default();
                    if !is_provider_role(&grantor_name) {
                        kept.push_str(" GRANTED BY ");
                        kept.push_str(grantor);
                    }
                }
                None => kept.push_str(after),
            }
            sql.push_str(&kept);
            sql.push_str(";\n");
            continue;
        }
        if line.starts_with("CREATE TABLESPACE ") || line.starts_with("ALTER TABLESPACE ") {
            left_out.push(format!(
                "{}: tablespaces are not copied (managed targets manage storage)",
                line.split(" OWNER ")
                    .next()
                    .unwrap_or(line)
                    .trim_end_matches(';')
            ));
            continue;
        }
        sql.push_str(line);
        sql.push('\n');
    }
    Globals { sql, left_out }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"--
-- PostgreSQL database cluster dump
--

\restrict abc123
SET default_transaction_read_only = off;

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE "Ops Admin";
ALTER ROLE "Ops Admin" WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE rds_superuser;
ALTER ROLE app SET search_path TO 'app', 'public';
GRANT pg_read_all_data TO app GRANTED BY postgres;
GRANT app TO "Ops Admin" WITH ADMIN OPTION GRANTED BY "Ops Admin";
GRANT app TO postgres;
CREATE TABLESPACE fast OWNER postgres LOCATION '/mnt/fast';

\unrestrict abc123
"#;

    #[test]
    fn strips_what_a_managed_target_refuses() {
        let g = filter_globals(DUMP);
        assert!(!g.sql.contains("WITH SUPERUSER"), "{}", g.sql);
        assert!(!g.sql.contains(" REPLICATION"), "{}", g.sql);
        assert!(!g.sql.contains(" BYPASSRLS"), "{}", g.sql);
        assert!(g.sql.contains("NOSUPERUSER"), "{}", g.sql);
        assert!(
            g.sql
                .contains("ALTER ROLE \"Ops Admin\" WITH INHERIT CREATEROLE CREATEDB LOGIN;"),
            "{}",
            g.sql
        );
        assert!(!g.sql.contains("postgres"), "{}", g.sql);
        assert!(!g.sql.contains("rds_superuser"), "{}", g.sql);
        assert!(!g.sql.contains("TABLESPACE"), "{}", g.sql);
        // psql gets the \restrict lines (CVE-2025-8714).
        assert!(g.sql.contains("\\restrict abc123\n"), "{}", g.sql);
        assert!(g.sql.contains("\\unrestrict abc123\n"), "{}", g.sql);
        assert!(
            g.sql.contains("GRANT \"pg_read_all_data\" TO \"app\";"),
            "{}",
            g.sql
        );
        assert!(
            g.sql.contains(
                "GRANT \"app\" TO \"Ops Admin\" WITH ADMIN OPTION GRANTED BY \"Ops Admin\";"
            ),
            "{}",
            g.sql
        );
        assert!(g.sql.contains("rolname = 'Ops Admin'"), "{}", g.sql);
        let note = g.left_out.join("\n");
        for word in [
            "SUPERUSER",
            "REPLICATION",
            "BYPASSRLS",
            "postgres",
            "rds_superuser",
            "fast",
        ] {
            assert!(note.contains(word), "{word}: {note}");
        }
    }

    #[test]
    fn role_attributes_only_for_created_roles() {
        let dump = "CREATE ROLE \"SUPERUSER x\";\n\
                    ALTER ROLE \"SUPERUSER x\" WITH SUPERUSER LOGIN VALID UNTIL 'infinity';\n\
                    CREATE ROLE \"a$pgmig$b\";\n\
                    ALTER ROLE \"a$pgmig$b\" WITH LOGIN;\n\
                    ALTER ROLE admin WITH SUPERUSER CREATEROLE LOGIN;\n";
        let g = filter_globals(dump);
        // The role name is kept exactly; the attributes after WITH filtered;
        // both inside the IF NOT EXISTS block.
        assert!(
            g.sql.contains(
                "DO $pgmig$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'SUPERUSER x') \
                 THEN CREATE ROLE \"SUPERUSER x\"; ALTER ROLE \"SUPERUSER x\" WITH LOGIN VALID UNTIL 'infinity'; \
                 END IF; END $pgmig$;\n"
            ),
            "{}",
            g.sql
        );
        // A tag that does not occur in the block.
        assert!(
            g.sql.contains("DO $pgmig1$ BEGIN IF NOT EXISTS")
                && g.sql
                    .contains("ALTER ROLE \"a$pgmig$b\" WITH LOGIN; END IF; END $pgmig1$;"),
            "{}",
            g.sql
        );
        // A role the dump does not create (the dumping admin) is never altered.
        assert!(!g.sql.contains("admin"), "{}", g.sql);
        assert!(
            g.left_out.iter().any(|l| l.contains("role admin")),
            "{:?}",
            g.left_out
        );
    }

    #[test]
    fn reads_quoted_identifiers() {
        assert_eq!(
            take_ident("\"a \"\"b\"\" c\";"),
            Some(("a \"b\" c".into(), ";"))
        );
        assert_eq!(take_ident("app WITH"), Some(("app".into(), " WITH")));
        assert_eq!(take_ident("\"open"), None);
        assert_eq!(take_ident(";"), None);
    }
}
