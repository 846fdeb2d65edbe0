//! What `pgmig cdc --dry-run` prints: the statements one batch of one slot
//! runs, with the values known before any change is read.

use pgmig_core::config::ConnConfig;
use pgmig_core::{Lsn, ServerRole, ServerVersion};
use pgmig_pglogical::Statement;
use pgmig_pglogical::decoder::decoding_options;

use crate::advance::advance_sql;
use crate::error::CdcError;
use crate::progress::{INIT_PROGRESS_SQL, PROGRESS_TABLE_SQL, RECORD_PROGRESS_SQL};
use crate::worker::{GATE_SQL, LOCK_SQL, session_sql};
use crate::{CdcOptions, preflight};

/// The peek as a DBA would type it: `$1` slot, `$2` rows, `$3` the options
/// as an array literal.
const PEEK_SQL: &str = "SELECT c.lsn, c.xid::text, c.data \
     FROM pg_catalog.pg_logical_slot_peek_changes($1::name, NULL::pg_lsn, $2::int4, VARIADIC $3::text[]) \
     AS c(lsn, xid, data)";

/// `items` as a PostgreSQL array literal, every element quoted.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Checks that CDC may start (as [`crate::run`] does, reading only) and
/// returns P and the statements of one batch of each slot.
pub async fn statements(
    source: &ConnConfig,
    target: &ConnConfig,
    opts: &CdcOptions,
) -> Result<(Lsn, Vec<Statement>), CdcError> {
    let (p, slots) = preflight(source, target, opts).await?;
    let sv = ServerVersion::query(&source.connect().await?).await?;
    let mut out = vec![Statement::new(
        ServerRole::Target,
        "create the CDC progress table",
        PROGRESS_TABLE_SQL,
    )];
    out.push(Statement::new(
        ServerRole::Target,
        "one run at a time takes its slots' locks (released once they are taken)",
        GATE_SQL,
    ));
    for (slot, sets) in &slots {
        let sets = [sets[0].as_str(), sets[1].as_str()];
        out.push(Statement::new(
            ServerRole::Target,
            format!(
                "session of slot {slot}: apply as a replica (no triggers, no foreign key checks), \
                 waiting at most the lock timeout for a lock"
            ),
            session_sql(opts.lock_timeout),
        ));
        out.push(
            Statement::new(
                ServerRole::Target,
                format!("lock slot {slot} for this applier"),
                LOCK_SQL,
            )
            .bind(slot.clone()),
        );
        out.push(
            Statement::new(
                ServerRole::Target,
                format!("start the progress of slot {slot} at P unless recorded"),
                INIT_PROGRESS_SQL,
            )
            .bind(slot.clone())
            .bind(p.to_string()),
        );
        out.push(
            Statement::new(
                ServerRole::Source,
                format!(
                    "read up to {} rows of slot {slot} without consuming them",
                    opts.batch_changes
                ),
                PEEK_SQL,
            )
            .bind(slot.clone())
            .bind(opts.batch_changes.to_string())
            .bind(array_literal(&decoding_options(&sets))),
        );
        out.push(Statement::new(
            ServerRole::Target,
            "apply the transactions committed after the applied position, one statement per change \
             ($n::text::<column type>), then record the position ($3) in the same transaction: \
             BEGIN; …; this; COMMIT",
            RECORD_PROGRESS_SQL,
        ).bind(slot.clone()));
        out.push(
            Statement::new(
                ServerRole::Source,
                format!("advance slot {slot} to the applied position ($2) once committed"),
                advance_sql(sv),
            )
            .bind(slot.clone()),
        );
    }
    Ok((p, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_an_array_literal() {
        assert_eq!(
            array_literal(&["a".into(), "\"s\",\"i\\s\"".into()]),
            r#"{"a","\"s\",\"i\\s\""}"#
        );
    }
}
