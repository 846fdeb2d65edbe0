//! [`Statement`]: one change pgmig would make on a server, known before it
//! runs, so `--dry-run` can print exactly what a real run executes.
//!
//! Every change in this crate is planned first (a read-only look at the
//! server's catalogs decides which statements are still needed), then
//! executed statement by statement. The statement keeps its SQL with `$n`
//! placeholders and the values bound to them; [`Statement::literal_sql`]
//! (and `Display`) shows the values inline with SQL literal quoting, which
//! is the same statement a DBA could paste into `psql`.

use std::fmt;

use pgmig_core::ServerRole;
use pgmig_core::ident::quote_literal;
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

/// One SQL statement for one server, with its parameters.
///
/// Parameters are all text values bound to `$1`, `$2`…; the SQL casts them
/// where another type is needed (`$2::text::regclass`). The template uses `$`
/// only for placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The server it runs on.
    pub role: ServerRole,
    /// What it does, for people: `create replication slot dms_slot_01`.
    pub what: String,
    /// The SQL, with `$n` placeholders.
    pub sql: String,
    /// The values bound to `$1`, `$2`…, in order.
    pub params: Vec<String>,
}

impl Statement {
    /// A statement for the source without parameters.
    pub fn source(what: impl Into<String>, sql: impl Into<String>) -> Statement {
        Statement {
            role: ServerRole::Source,
            what: what.into(),
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// A statement for any server without parameters.
    pub fn new(role: ServerRole, what: impl Into<String>, sql: impl Into<String>) -> Statement {
        Statement {
            role,
            what: what.into(),
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// This statement with one more parameter (bound to the next `$n`).
    pub fn bind(mut self, value: impl Into<String>) -> Statement {
        self.params.push(value.into());
        self
    }

    /// The SQL with every `$n` replaced by its value as an SQL literal
    /// (`'dms_slot_01'`, `'it''s'`): what a DBA would type to run the same
    /// statement. A placeholder without a value is left as written.
    pub fn literal_sql(&self) -> String {
        let mut out = String::with_capacity(self.sql.len() + 16 * self.params.len());
        let mut rest = self.sql.as_str();
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let value = after[..digits]
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.params.get(i));
            match value {
                Some(value) => out.push_str(&quote_literal(value)),
                None => out.push_str(&rest[dollar..dollar + 1 + digits]),
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        out
    }

    /// Runs the statement, binding its parameters; returns the number of
    /// rows the server reports.
    pub async fn execute(&self, client: &impl GenericClient) -> Result<u64, pgmig_core::Error> {
        let params: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p as &(dyn ToSql + Sync))
            .collect();
        client
            .execute(self.sql.as_str(), &params)
            .await
            .map_err(pgmig_core::Error::query(self.what.clone()))
    }
}

impl fmt::Display for Statement {
    /// The statement as [`Statement::literal_sql`], without a trailing `;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.literal_sql())
    }
}

/// Runs `statements` in order on `client`, stopping at the first failure.
pub async fn execute_all(
    client: &impl GenericClient,
    statements: &[Statement],
) -> Result<(), pgmig_core::Error> {
    for statement in statements {
        tracing::debug!(role = %statement.role, what = %statement.what, "running statement");
        statement.execute(client).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sql_inlines_parameters() {
        let s = Statement::source("t", "SELECT f(a := $1, b := $2::text::regclass, c := $1)")
            .bind("it's")
            .bind("\"Sales\".\"Order Items\"");
        assert_eq!(
            s.literal_sql(),
            "SELECT f(a := 'it''s', b := '\"Sales\".\"Order Items\"'::text::regclass, c := 'it''s')"
        );
        assert_eq!(s.to_string(), s.literal_sql());
    }

    #[test]
    fn literal_sql_keeps_unbound_and_bare_dollars() {
        let s = Statement::source("t", "SELECT $1, $2, $, $0").bind("x");
        assert_eq!(s.literal_sql(), "SELECT 'x', $2, $, $0");
        let s = Statement::source("t", "SELECT $10").bind("a");
        assert_eq!(s.literal_sql(), "SELECT $10");
        let s = Statement::source("t", "SELECT 1");
        assert_eq!(s.literal_sql(), "SELECT 1");
    }

    #[test]
    fn backslashes_use_the_escape_form() {
        let s = Statement::source("t", "SELECT $1").bind("a\\b");
        assert_eq!(s.literal_sql(), "SELECT E'a\\\\b'");
    }
}
