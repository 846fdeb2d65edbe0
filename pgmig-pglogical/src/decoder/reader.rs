//! Reading a slot through PostgreSQL's SQL interface to logical decoding.
//!
//! `pg_logical_slot_peek_changes` reads without consuming;
//! `pg_logical_slot_get_changes` consumes what it returns (the slot's
//! `confirmed_flush_lsn` moves) when the statement finishes, before pgmig has
//! decoded, let alone applied, anything. Exactly-once appliers should peek,
//! apply, record their progress, and only then advance the slot
//! (`pg_replication_slot_advance`) to the last applied commit's end LSN.
//!
//! Both return whole transactions (pglogical 2.4.2 does not stream
//! in-progress ones), each call starting with a startup message; the row
//! limit is checked only between transactions, so a batch may hold more rows
//! than asked for.

use pgmig_core::{Lsn, quote_ident};
use tokio_postgres::GenericClient;
use tokio_postgres::types::PgLsn;
use tracing::debug;

use crate::error::Error;
use crate::message::{Change, RawChange};

/// The peek statement: slot name, `upto_lsn`, `upto_nchanges` and the
/// options are all bound parameters (`$4` is [`decoding_options`]).
///
/// The function's output columns are `(location, xid, data)` on 9.6 and
/// `(lsn, xid, data)` from 10 on; the column alias list names them by
/// position, so the one statement runs on every version.
pub const PEEK_CHANGES_SQL: &str = "SELECT c.lsn, c.xid::text, c.data \
     FROM pg_catalog.pg_logical_slot_peek_changes($1::name, $2::pg_lsn, $3::int4, VARIADIC $4::text[]) \
     AS c(lsn, xid, data)";

/// The consuming statement, parameters and column aliases as for
/// [`PEEK_CHANGES_SQL`].
pub const GET_CHANGES_SQL: &str = "SELECT c.lsn, c.xid::text, c.data \
     FROM pg_catalog.pg_logical_slot_get_changes($1::name, $2::pg_lsn, $3::int4, VARIADIC $4::text[]) \
     AS c(lsn, xid, data)";

/// The output plugin options pgmig gives pglogical: protocol version 1 in
/// JSON, and the replication sets to decode.
///
/// pglogical requires `min_proto_version`, `max_proto_version` and
/// `startup_params_format`, and sends its binary protocol (which the SQL
/// interface refuses) unless `proto_format` is `json`. Without
/// `pglogical.replication_set_names` it decodes the node's default sets, so
/// pgmig always names them. pglogical splits that list like SQL identifiers
/// (unquoted names fold to lower case), so each name is double-quoted here.
///
/// The result alternates names and values, as the `VARIADIC options`
/// argument wants.
pub fn decoding_options(sets: &[&str]) -> Vec<String> {
    let set_list = sets
        .iter()
        .map(|s| quote_ident(s))
        .collect::<Vec<_>>()
        .join(",");
    [
        ("min_proto_version", "1".to_owned()),
        ("max_proto_version", "1".to_owned()),
        ("startup_params_format", "1".to_owned()),
        ("proto_format", "json".to_owned()),
        ("pglogical.replication_set_names", set_list),
    ]
    .into_iter()
    .flat_map(|(name, value)| [name.to_owned(), value])
    .collect()
}

/// Reads the changes waiting in `slot` for the replication `sets`, without
/// consuming them, and decodes them.
///
/// `upto_lsn` stops after the transaction whose commit reaches that LSN;
/// `upto_nchanges` after the transaction in which that many rows were
/// reached (values above `i32::MAX` mean no more than `i32::MAX`). `None`
/// means no limit.
pub async fn peek_changes(
    client: &impl GenericClient,
    slot: &str,
    sets: &[&str],
    upto_lsn: Option<Lsn>,
    upto_nchanges: Option<i64>,
) -> Result<Vec<Change>, Error> {
    let raw = read(client, false, slot, sets, upto_lsn, upto_nchanges).await?;
    decode_all(slot, raw, false)
}

/// Like [`peek_changes`], but *consumes* what it returns: the slot moves
/// past these changes when the statement finishes, before they are decoded.
/// If one of them cannot be decoded, the error
/// ([`Error::Decode`]) carries every row read, so nothing is lost.
pub async fn get_changes(
    client: &impl GenericClient,
    slot: &str,
    sets: &[&str],
    upto_lsn: Option<Lsn>,
    upto_nchanges: Option<i64>,
) -> Result<Vec<Change>, Error> {
    let raw = read(client, true, slot, sets, upto_lsn, upto_nchanges).await?;
    decode_all(slot, raw, true)
}

/// Like [`peek_changes`], without decoding: the rows as the server sent them.
pub async fn peek_raw_changes(
    client: &impl GenericClient,
    slot: &str,
    sets: &[&str],
    upto_lsn: Option<Lsn>,
    upto_nchanges: Option<i64>,
) -> Result<Vec<RawChange>, Error> {
    read(client, false, slot, sets, upto_lsn, upto_nchanges).await
}

/// Like [`get_changes`] (consuming), without decoding.
pub async fn get_raw_changes(
    client: &impl GenericClient,
    slot: &str,
    sets: &[&str],
    upto_lsn: Option<Lsn>,
    upto_nchanges: Option<i64>,
) -> Result<Vec<RawChange>, Error> {
    read(client, true, slot, sets, upto_lsn, upto_nchanges).await
}

fn decode_all(slot: &str, raw: Vec<RawChange>, consumed: bool) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::with_capacity(raw.len());
    for row in &raw {
        match row.decode() {
            Ok(change) => changes.push(change),
            Err(source) => {
                return Err(Error::Decode {
                    slot: slot.to_owned(),
                    lsn: row.lsn,
                    xid: row.xid,
                    source,
                    consumed: if consumed { raw.clone() } else { Vec::new() },
                });
            }
        }
    }
    Ok(changes)
}

#[tracing::instrument(level = "debug", skip_all, fields(slot = %slot, consume))]
async fn read(
    client: &impl GenericClient,
    consume: bool,
    slot: &str,
    sets: &[&str],
    upto_lsn: Option<Lsn>,
    upto_nchanges: Option<i64>,
) -> Result<Vec<RawChange>, Error> {
    let what = if consume {
        "pg_logical_slot_get_changes"
    } else {
        "pg_logical_slot_peek_changes"
    };
    if sets.is_empty() {
        return Err(Error::InvalidArgument {
            slot: slot.to_owned(),
            detail: "no replication set given; pglogical would decode its default sets".into(),
        });
    }
    let limit = match upto_nchanges {
        Some(n) if n < 0 => {
            return Err(Error::InvalidArgument {
                slot: slot.to_owned(),
                detail: format!("upto_nchanges must not be negative, got {n}"),
            });
        }
        Some(n) => Some(i32::try_from(n).unwrap_or(i32::MAX)),
        None => None,
    };
    let options = decoding_options(sets);
    let upto = upto_lsn.map(PgLsn::from);
    let sql = if consume {
        GET_CHANGES_SQL
    } else {
        PEEK_CHANGES_SQL
    };
    let rows = client
        .query(sql, &[&slot, &upto, &limit, &options])
        .await
        .map_err(|source| Error::Postgres {
            slot: slot.to_owned(),
            what,
            source,
        })?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let lsn: PgLsn = row.try_get(0).map_err(|source| Error::Postgres {
            slot: slot.to_owned(),
            what,
            source,
        })?;
        let xid: String = row.try_get(1).map_err(|source| Error::Postgres {
            slot: slot.to_owned(),
            what,
            source,
        })?;
        let data: String = row.try_get(2).map_err(|source| Error::Postgres {
            slot: slot.to_owned(),
            what,
            source,
        })?;
        let xid = xid.parse().map_err(|_| Error::Protocol {
            slot: slot.to_owned(),
            detail: format!("{what} returned xid {xid:?}, not a transaction id"),
        })?;
        out.push(RawChange {
            lsn: lsn.into(),
            xid,
            data,
        });
    }
    debug!(
        slot,
        consume,
        rows = out.len(),
        "read logical decoding rows"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_quoted_sets() {
        assert_eq!(
            decoding_options(&["dms_slot_01", "idms_slot_01"]),
            [
                "min_proto_version",
                "1",
                "max_proto_version",
                "1",
                "startup_params_format",
                "1",
                "proto_format",
                "json",
                "pglogical.replication_set_names",
                "\"dms_slot_01\",\"idms_slot_01\"",
            ]
        );
        assert_eq!(
            decoding_options(&["Mixed", "a\"b"])[9],
            "\"Mixed\",\"a\"\"b\""
        );
    }

    #[test]
    fn statements_alias_the_columns_that_9_6_names_location() {
        assert_eq!(
            PEEK_CHANGES_SQL,
            "SELECT c.lsn, c.xid::text, c.data \
             FROM pg_catalog.pg_logical_slot_peek_changes($1::name, $2::pg_lsn, $3::int4, VARIADIC $4::text[]) \
             AS c(lsn, xid, data)"
        );
        assert_eq!(
            GET_CHANGES_SQL,
            PEEK_CHANGES_SQL.replace("slot_peek_changes", "slot_get_changes")
        );
        for sql in [PEEK_CHANGES_SQL, GET_CHANGES_SQL] {
            // Every column is read through the alias `c`, never by the
            // function's own (version-dependent) names.
            let select = &sql[..sql.find(" FROM ").unwrap()];
            assert_eq!(select, "SELECT c.lsn, c.xid::text, c.data", "{sql}");
            assert!(sql.ends_with(") AS c(lsn, xid, data)"), "{sql}");
            assert!(!sql.contains("location"), "{sql}");
        }
    }
}
