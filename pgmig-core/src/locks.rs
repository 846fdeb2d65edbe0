//! Who holds locks on a table: named when pgmig gives up waiting for a lock
//! (`lock_timeout`), so the operator sees which session blocks the step.

use std::fmt;

use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::ident::QualifiedTable;

/// The granted locks of other sessions on one table, oldest transaction
/// first. `to_regclass(text)` and `pg_stat_activity.backend_type`-free
/// columns keep it valid from 9.6 on.
const HOLDERS_SQL: &str = "SELECT a.pid, a.usename::text, a.application_name, host(a.client_addr), \
        a.state, l.mode, extract(epoch FROM now() - a.xact_start)::float8, left(a.query, 160) \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'relation' AND l.granted \
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
       AND l.relation = to_regclass($1) AND l.pid <> pg_backend_pid() \
     ORDER BY a.xact_start NULLS LAST, a.pid";

/// A session holding a lock on a table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockHolder {
    /// Its backend pid (for `pg_terminate_backend`).
    pub pid: i32,
    /// Its role, when visible to the connected role.
    pub user: Option<String>,
    /// Its `application_name` (empty when unset).
    pub application_name: String,
    /// Its client address (`None` for a Unix socket or when hidden).
    pub client_addr: Option<String>,
    /// `active`, `idle in transaction`, …; `None` when hidden.
    pub state: Option<String>,
    /// The lock mode, e.g. `AccessShareLock`.
    pub mode: String,
    /// Seconds since its transaction began.
    pub transaction_seconds: Option<f64>,
    /// The start of its current or last statement (160 characters).
    pub query: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} holds {}", self.pid, self.mode)?;
        if let Some(user) = &self.user {
            write!(f, " (user {user}")?;
        } else {
            write!(f, " (user hidden")?;
        }
        if !self.application_name.is_empty() {
            write!(f, ", application {:?}", self.application_name)?;
        }
        if let Some(addr) = &self.client_addr {
            write!(f, ", from {addr}")?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
        }
        if let Some(secs) = self.transaction_seconds {
            write!(f, ", transaction open {secs:.0} s")?;
        }
        write!(f, ")")?;
        if let Some(query) = self.query.as_deref().filter(|q| !q.is_empty()) {
            write!(
                f,
                ": {}",
                query.split_whitespace().collect::<Vec<_>>().join(" ")
            )?;
        }
        Ok(())
    }
}

/// The sessions other than this one holding a granted lock on `table`.
pub async fn lock_holders(
    client: &impl GenericClient,
    table: &QualifiedTable,
) -> Result<Vec<LockHolder>> {
    let rows = client
        .query(HOLDERS_SQL, &[&table.quoted()])
        .await
        .map_err(Error::query(format!("list the sessions locking {table}")))?;
    Ok(rows
        .iter()
        .map(|r| LockHolder {
            pid: r.get(0),
            user: r.get(1),
            application_name: r.get::<_, Option<String>>(2).unwrap_or_default(),
            client_addr: r.get(3),
            state: r.get(4),
            mode: r.get(5),
            transaction_seconds: r.get(6),
            query: r.get(7),
        })
        .collect())
}

/// One line naming the holders, for an error message: `"pid 12 holds
/// AccessExclusiveLock (…); pid 40 holds …"`, or a note that none was seen
/// (the lock was released in between).
pub fn describe_holders(holders: &[LockHolder]) -> String {
    if holders.is_empty() {
        return "no session holds a lock on it any more".into();
    }
    holders
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_reads_as_one_line() {
        let h = LockHolder {
            pid: 42,
            user: Some("app".into()),
            application_name: "psql".into(),
            client_addr: Some("10.0.0.5".into()),
            state: Some("idle in transaction".into()),
            mode: "AccessExclusiveLock".into(),
            transaction_seconds: Some(12.4),
            query: Some("LOCK TABLE\n   public.t".into()),
        };
        assert_eq!(
            h.to_string(),
            "pid 42 holds AccessExclusiveLock (user app, application \"psql\", from 10.0.0.5, \
             idle in transaction, transaction open 12 s): LOCK TABLE public.t"
        );
        assert_eq!(
            describe_holders(&[]),
            "no session holds a lock on it any more"
        );
    }
}
