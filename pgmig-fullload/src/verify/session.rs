//! The fixed session every verification connection runs in, so that equal
//! data prints the same text on every major version and under any server or
//! role defaults.

use pgmig_core::config::ConnConfig;
use tokio_postgres::Client;

use super::VerifyError;

/// The settings that decide how values print, pinned on both sides.
///
/// - `DateStyle`, `IntervalStyle`, `TimeZone`: dates, times and intervals
///   print in one style, `timestamptz` and `timetz` in UTC;
/// - `bytea_output`: hex (the 9.0+ default, but a role may change it);
/// - `extra_float_digits`: 3, the most exact output on every version. Floats
///   are still compared by their binary form (see `columns`), because 12+
///   prints the shortest exact digits and 10–11 print 17 digits for the
///   same value;
/// - `lc_monetary`: `C`, for `money`;
/// - `search_path`: `pg_catalog` only, so `regclass` and friends print
///   schema-qualified names and every function verification calls is the
///   built-in one;
/// - `row_security`: off, so a table whose row-level security would hide
///   rows from the connected role fails to verify (permission denied)
///   instead of comparing the subset the role sees;
/// - no statement timeout, and read-only transactions.
pub const SESSION_SQL: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET TimeZone = 'UTC'; SET bytea_output = 'hex'; SET extra_float_digits = 3; \
     SET lc_monetary = 'C'; SET search_path = pg_catalog; SET row_security = off; \
     SET statement_timeout = 0; SET default_transaction_read_only = on";

/// Connects to one side and pins [`SESSION_SQL`].
pub(crate) async fn connect(conn: &ConnConfig, side: &str) -> Result<Client, VerifyError> {
    let client = conn.connect().await?;
    client
        .batch_execute(SESSION_SQL)
        .await
        .map_err(VerifyError::query(
            side,
            "pin the verification session settings",
        ))?;
    Ok(client)
}
