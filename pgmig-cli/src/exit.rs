//! Exit codes of the CLI contract, and the errors that choose them.

use std::process::ExitCode;

use pgmig_core::ErrorKind;

/// How a command ended; each maps to one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed or data differ.
    CheckFailed,
    /// Exit 2: bad usage or configuration.
    Usage,
    /// Exit 3: connection, SQL or I/O failure.
    RuntimeFailure,
}

impl Outcome {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::CheckFailed => 1,
            Outcome::Usage => 2,
            Outcome::RuntimeFailure => 3,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}

/// Bad usage or configuration found by the CLI itself (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A check that failed on purpose (exit 1): the message says what and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The exit outcome of an error: usage errors and pgmig's own usage kinds
/// (malformed input, a call on the wrong kind of server, a wiring mistake)
/// exit 2, refused checks exit 1, everything else 3.
pub fn classify(err: &anyhow::Error) -> Outcome {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return Outcome::Usage;
        }
        if cause.is::<CheckFailed>() {
            return Outcome::CheckFailed;
        }
        if let Some(core) = cause.downcast_ref::<pgmig_core::Error>() {
            return match core.kind() {
                ErrorKind::Usage => Outcome::Usage,
                _ => Outcome::RuntimeFailure,
            };
        }
        if let Some(pgl) = cause.downcast_ref::<pgmig_pglogical::Error>() {
            return if pgl.is_refusal() {
                Outcome::CheckFailed
            } else if pgl.kind() == ErrorKind::Usage {
                Outcome::Usage
            } else {
                Outcome::RuntimeFailure
            };
        }
        if let Some(load) = cause.downcast_ref::<pgmig_fullload::load::LoadError>() {
            use pgmig_fullload::load::LoadError;
            match load {
                LoadError::WrongReplica { .. } => return Outcome::Usage,
                e if e.is_refusal() => return Outcome::CheckFailed,
                LoadError::Core(core) if core.kind() == ErrorKind::Usage => return Outcome::Usage,
                _ => return Outcome::RuntimeFailure,
            }
        }
        if cause.is::<pgmig_core::plan::PlanError>() {
            return Outcome::Usage;
        }
    }
    Outcome::RuntimeFailure
}

/// What the CLI prints under an error that a missing privilege caused:
/// which server, which privilege, and the statement that grants it — the
/// same words as `pgmig check` and `docs/privileges.md`. `None` when the
/// error is not about a privilege.
///
/// The privilege is recognised from the server's message (SQLSTATE 42501
/// and the messages of `pg_dump` and `psql` that carry it), the server from
/// the message when it names one object only one server holds, else from
/// pgmig's context (`… on the replica`, `pg_dump` on the source, the
/// restore's `psql` on the target), else `reads_from` — the server the
/// command reads tables from (the replica for `load`, the source for
/// `cutover`). `role_of` gives the role pgmig connects to a server as, for
/// the statements; `<role>` when unknown.
pub fn privilege_hint(
    err: &anyhow::Error,
    reads_from: Option<pgmig_core::ServerRole>,
    role_of: &dyn Fn(pgmig_core::ServerRole) -> Option<String>,
) -> Option<String> {
    use pgmig_core::ServerRole::{Replica, Source, Target};

    let mut denied = false;
    let mut message: Option<String> = None;
    for cause in err.chain() {
        let db = cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error());
        if let Some(db) = db {
            denied |= db.code().code() == "42501";
            message.get_or_insert_with(|| db.message().to_owned());
        }
    }
    let text = format!("{err:#}");
    let message = message.unwrap_or_else(|| text.clone());
    let lower = message.to_lowercase();
    const MARKERS: &[&str] = &[
        "permission denied",
        "must be superuser",
        "must be owner",
        "must be member of role",
        "must be able to set role",
        "row-level security policy",
        "replication role to use replication slots",
    ];
    if !denied && !MARKERS.iter().any(|m| lower.contains(m)) {
        return None;
    }

    let role = |server| {
        role_of(server).map_or_else(|| "<role>".to_owned(), |r| pgmig_core::quote_ident(&r))
    };
    let context = context_server(&text).or(reads_from);
    let quoted_after = |prefix: &str| -> Option<String> {
        let rest = &message[lower.find(prefix)? + prefix.len()..];
        let rest = rest.trim_start();
        let name = rest.trim_start_matches('"');
        let end = name.find(['"', '\n', ' ']).unwrap_or(name.len());
        Some(name[..end].to_owned())
    };
    const PGLOGICAL_TABLES: &[&str] = &[
        "depend",
        "local_node",
        "local_sync_status",
        "node",
        "node_interface",
        "queue",
        "replication_set",
        "replication_set_seq",
        "replication_set_table",
        "sequence_state",
        "subscription",
        "tables",
    ];
    let read_fix = |server, what: &str| {
        let r = role(server);
        let where_ = if server == Replica {
            "on the source primary as a superuser (the standby is read-only; the grant replicates to it)"
        } else {
            "on the source as a superuser"
        };
        format!(
            "run {where_}:\n  GRANT pg_read_all_data TO {r};  -- 14+; before 14: \
             GRANT USAGE ON SCHEMA <schema> TO {r}; GRANT SELECT ON {what} TO {r};"
        )
    };

    let (server, privilege, fix) = if lower.contains("pg_wal_replay_")
        || lower.contains("pg_xlog_replay_")
    {
        if context == Some(Target) {
            // The schema restore replays the source's GRANTs on these
            // functions; the target role may not repeat them.
            (
                Target,
                "GRANT on a pg_catalog function (the source's dump grants EXECUTE on the replay \
                 functions to the replica's role)"
                    .to_owned(),
                "leave that GRANT out of the restore (it is the replica's setting, not the \
                 application's), or run pgmig schema as a superuser on the target"
                    .to_owned(),
            )
        } else {
            let r = role(Replica);
            (
                Replica,
                "EXECUTE on pg_wal_replay_pause() and pg_wal_replay_resume()".to_owned(),
                format!(
                    "run on the source primary as a superuser (the standby is read-only; the grant \
                     replicates to it):\n  GRANT EXECUTE ON FUNCTION pg_catalog.pg_wal_replay_pause(), \
                     pg_catalog.pg_wal_replay_resume() TO {r};"
                ),
            )
        }
    } else if lower.contains("replication slots") {
        let r = role(Source);
        (
            Source,
            "the REPLICATION privilege".to_owned(),
            format!(
                "run on the source as a superuser:\n  ALTER ROLE {r} WITH REPLICATION;\non RDS instead:\n  \
                 GRANT rds_replication TO {r};"
            ),
        )
    } else if lower.contains("session_replication_role") {
        let r = role(Target);
        (
            Target,
            "SET on parameter session_replication_role".to_owned(),
            format!(
                "run on the target as a superuser (PostgreSQL 15+):\n  GRANT SET ON PARAMETER \
                 session_replication_role TO {r};\nbefore 15 only a superuser (on RDS a member of \
                 rds_superuser) may set it"
            ),
        )
    } else if lower.contains("row-level security policy") {
        let server = context.filter(|s| *s != Target).unwrap_or(Replica);
        let table = quoted_after("policy for table").unwrap_or_default();
        let r = role(server);
        (
            server,
            format!("BYPASSRLS (row-level security applies to the role on table {table})"),
            format!(
                "run on the source{} as a superuser:\n  ALTER ROLE {r} WITH BYPASSRLS;\n\
                 (pgmig reads with row_security = off and refuses rather than copy or compare a \
                 subset of the rows; or connect as the table's owner)",
                if server == Replica {
                    " primary (it replicates to the standby)"
                } else {
                    ""
                }
            ),
        )
    } else if lower.contains("permission denied for schema pglogical") {
        let r = role(Source);
        (
            Source,
            "USAGE on schema pglogical".to_owned(),
            format!("run on the source as a superuser:\n  GRANT USAGE ON SCHEMA pglogical TO {r};"),
        )
    } else if let Some(table) = quoted_after("permission denied for table").filter(|t| {
        PGLOGICAL_TABLES.contains(&t.as_str()) && !matches!(context, Some(Replica | Target))
    }) {
        let r = role(Source);
        (
            Source,
            format!("SELECT on pglogical's tables (pglogical.{table})"),
            format!(
                "run on the source as a superuser:\n  GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO {r};"
            ),
        )
    } else if lower.contains("permission denied to create role") {
        let r = role(Target);
        (
            Target,
            "CREATEROLE (schema --with-globals copies roles)".to_owned(),
            format!(
                "run on the target as a superuser:\n  ALTER ROLE {r} WITH CREATEROLE;\nor leave out --with-globals"
            ),
        )
    } else if lower.contains("must be member of role") || lower.contains("must be able to set role")
    {
        let owner = quoted_after("role").unwrap_or_default();
        let r = role(Target);
        (
            Target,
            format!("membership of role {owner} (the restore gives objects their source owner)"),
            format!(
                "run pgmig schema --no-owner (objects then belong to {r}), or on the target as a \
                 superuser:\n  GRANT {} TO {r};",
                pgmig_core::quote_ident(&owner)
            ),
        )
    } else if let Some(db) = quoted_after("permission denied for database") {
        let r = role(Target);
        (
            Target,
            format!("CREATE on database {db}"),
            format!(
                "run on the target as the database owner or a superuser:\n  GRANT CREATE ON DATABASE {} TO {r};",
                pgmig_core::quote_ident(&db)
            ),
        )
    } else if let Some(schema) = quoted_after("permission denied for schema") {
        let server = context.unwrap_or(Target);
        let r = role(server);
        let q = pgmig_core::quote_ident(&schema);
        if server == Target {
            (
                Target,
                format!("CREATE on schema {schema}"),
                format!(
                    "run on the target as the database owner or a superuser:\n  GRANT CREATE ON SCHEMA {q} TO {r};\n\
                     or make the role own the target database (ALTER DATABASE … OWNER TO {r})"
                ),
            )
        } else {
            (
                server,
                format!("USAGE on schema {schema}"),
                read_fix(server, &format!("ALL TABLES IN SCHEMA {q}")),
            )
        }
    } else if let Some(rel) = quoted_after("permission denied for table")
        .or_else(|| quoted_after("permission denied for sequence"))
        .or_else(|| quoted_after("permission denied for relation"))
    {
        let server = context.unwrap_or(Source);
        if server == Target {
            let r = role(Target);
            (
                Target,
                format!("access to {rel} on the target"),
                format!(
                    "the target role should own the restored objects: run pgmig schema with \
                     --no-owner, or on the target as a superuser: ALTER TABLE … {rel} OWNER TO {r};"
                ),
            )
        } else {
            (server, format!("SELECT on {rel}"), read_fix(server, &rel))
        }
    } else if lower.contains("must be owner of") {
        let server = context.unwrap_or(Target);
        let r = role(server);
        (
            server,
            "ownership of the object".to_owned(),
            format!("make {r} the owner (ALTER … OWNER TO {r}), or run this step as the owner"),
        )
    } else {
        let server = context.unwrap_or(Source);
        (
            server,
            "a privilege the server names above".to_owned(),
            "run `pgmig check` for the exact grants".to_owned(),
        )
    };
    Some(format!(
        "missing privilege on the {server}: {privilege}\nfix: {fix}\n\
         every privilege pgmig needs, per server and command: docs/privileges.md \
         (`pgmig check` lists what is missing)"
    ))
}

/// The server pgmig's context names first: `… on the replica`, the
/// source's `pg_dump`, the target's restore (`psql`, `pg_restore`).
fn context_server(text: &str) -> Option<pgmig_core::ServerRole> {
    use pgmig_core::ServerRole::{Replica, Source, Target};
    let lower = text.to_lowercase();
    [
        ("the replica", Replica),
        ("the target", Target),
        ("the source", Source),
        ("pg_dump", Source),
        ("psql", Target),
        ("pg_restore", Target),
    ]
    .iter()
    .filter_map(|(word, server)| lower.find(word).map(|at| (at, *server)))
    .min_by_key(|(at, _)| *at)
    .map(|(_, server)| server)
}

/// What to do about a failed TLS handshake, from the error chain: rustls's
/// terse reasons (`UnknownIssuer`, `NotValidForName`, …) in words, with the
/// connection option that decides. `None` for any other error.
pub fn tls_hint(err: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{err:#}");
    if !text.contains("TLS") && !text.contains("certificate") {
        return None;
    }
    const HINTS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "hint: the server's certificate is not signed by a CA in `sslrootcert` — point \
             `sslrootcert` at the CA that issued it (for RDS, the region's bundle)",
        ),
        (
            "not valid for name",
            "hint: the host name you connect to is not in the server's certificate — connect \
             with a name the certificate lists, or use `sslmode=verify-ca` to check the chain only",
        ),
        (
            "Expired",
            "hint: the server's certificate has expired (or the clock here is wrong)",
        ),
        (
            "server does not support TLS",
            "hint: the server does not offer TLS; `sslmode=require` and stricter never fall back to \
             plaintext — enable `ssl` on the server, or (only on a trusted network) use `sslmode=prefer`",
        ),
    ];
    HINTS
        .iter()
        .find(|(marker, _)| text.contains(marker))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmig_core::ServerRole;

    fn hint(text: &str) -> Option<String> {
        let err = anyhow::anyhow!("{text}");
        privilege_hint(&err, None, &|role| Some(format!("mig_{role}")))
    }

    #[test]
    fn privilege_errors_name_server_privilege_and_grant() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "snapshot failed: pause WAL replay failed: db error: ERROR: permission denied for function pg_wal_replay_pause",
                "on the replica: EXECUTE on pg_wal_replay_pause()",
                "GRANT EXECUTE ON FUNCTION pg_catalog.pg_wal_replay_pause(), pg_catalog.pg_wal_replay_resume() TO \"mig_replica\";",
            ),
            (
                "create replication slot dms_slot_01 failed: db error: ERROR: must be superuser or replication role to use replication slots",
                "on the source: the REPLICATION privilege",
                "ALTER ROLE \"mig_source\" WITH REPLICATION;",
            ),
            (
                "slot dms_slot_01: set session_replication_role = replica on the target failed: db error: ERROR: permission denied to set parameter \"session_replication_role\"",
                "on the target: SET on parameter session_replication_role",
                "GRANT SET ON PARAMETER session_replication_role TO \"mig_target\";",
            ),
            (
                "copy chunk 1 of 1 of public.secret failed on the replica: db error: ERROR: query would be affected by row-level security policy for table \"secret\"",
                "on the replica: BYPASSRLS (row-level security applies to the role on table secret)",
                "ALTER ROLE \"mig_replica\" WITH BYPASSRLS;",
            ),
            (
                "read the local pglogical node failed: db error: ERROR: permission denied for table local_node",
                "on the source: SELECT on pglogical's tables",
                "GRANT SELECT ON ALL TABLES IN SCHEMA pglogical TO \"mig_source\";",
            ),
            (
                "create pglogical node pgmig_provider failed: db error: ERROR: permission denied for schema pglogical",
                "on the source: USAGE on schema pglogical",
                "GRANT USAGE ON SCHEMA pglogical TO \"mig_source\";",
            ),
            (
                "pg_dump failed (exit status: 1): pg_dump: error: query failed: ERROR:  permission denied for table t1",
                "on the source: SELECT on t1",
                "GRANT pg_read_all_data TO \"mig_source\";",
            ),
            (
                "psql failed (exit status: 3): psql:<stdin>:32: ERROR:  permission denied for schema public",
                "on the target: CREATE on schema public",
                "GRANT CREATE ON SCHEMA \"public\" TO \"mig_target\";",
            ),
            (
                "psql failed (exit status: 3): psql:<stdin>:59: ERROR:  permission denied for function pg_wal_replay_pause",
                "on the target: GRANT on a pg_catalog function",
                "leave that GRANT out of the restore",
            ),
            (
                "psql failed: ERROR:  must be member of role \"app_owner\"",
                "on the target: membership of role app_owner",
                "GRANT \"app_owner\" TO \"mig_target\";",
            ),
        ];
        for (error, names, grant) in cases {
            let h = hint(error).unwrap_or_else(|| panic!("no hint for {error}"));
            assert!(h.contains(names), "{error}\n{h}");
            assert!(h.contains(grant), "{error}\n{h}");
            assert!(h.contains("docs/privileges.md"), "{h}");
        }
        let load = privilege_hint(
            &anyhow::anyhow!(
                "read sequence public.s failed: db error: ERROR: permission denied for sequence s"
            ),
            Some(ServerRole::Replica),
            &|role| Some(format!("mig_{role}")),
        )
        .unwrap();
        assert!(
            load.starts_with("missing privilege on the replica: SELECT on s"),
            "{load}"
        );
        assert!(
            load.contains("GRANT pg_read_all_data TO \"mig_replica\";"),
            "{load}"
        );
        assert_eq!(hint("connection refused"), None);
        assert_eq!(hint("relation \"t\" does not exist"), None);
        let unknown = privilege_hint(
            &anyhow::anyhow!("ERROR: permission denied for function pg_wal_replay_pause"),
            None,
            &|_: ServerRole| None,
        )
        .unwrap();
        assert!(unknown.contains("TO <role>;"), "{unknown}");
    }

    #[test]
    fn tls_failures_get_a_hint_in_words() {
        let err = |text: &str| anyhow::anyhow!(text.to_owned()).context("connecting to the source");
        assert!(
            tls_hint(&err(
                "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
            ))
            .unwrap()
            .contains("sslrootcert")
        );
        assert!(
            tls_hint(&err(
                "invalid peer certificate: certificate not valid for name \"127.0.0.1\""
            ))
            .unwrap()
            .contains("verify-ca")
        );
        assert!(
            tls_hint(&err(
                "error performing TLS handshake: server does not support TLS"
            ))
            .unwrap()
            .contains("never fall back")
        );
        assert_eq!(tls_hint(&err("password authentication failed")), None);
    }
}
