//! Decoding pglogical's JSON protocol: [`decode`] turns one message into a
//! typed [`Message`]; [`peek_changes`] and [`get_changes`] read a slot through
//! the SQL interface; [`group_transactions`] assembles the rows into
//! [`Transaction`]s.
//!
//! [`decode`] is pure and never panics: anything it cannot read is a
//! [`DecodeError`] naming the field, and a well-formed message with an action
//! it does not know is [`Message::Unknown`]. Fields it does not know are
//! ignored.

mod error;
mod json;
mod reader;
mod relation;
mod transaction;

pub use error::{DecodeError, DecodeErrorKind, EXCERPT_CHARS};
pub use reader::{
    GET_CHANGES_SQL, PEEK_CHANGES_SQL, decoding_options, get_changes, get_raw_changes,
    peek_changes, peek_raw_changes,
};
pub use transaction::{
    Batch, PartialTransaction, Transaction, TransactionError, group_transactions,
};

use pgmig_core::QualifiedTable;

use self::json::{Object, json_kind, strings_of};
use crate::message::{
    Begin, Change, Commit, Datum, Delete, Insert, Message, QueueEntry, QueuedMessage, QueuedSql,
    RawChange, SequenceSync, Startup, Truncate, Update,
};

/// Decodes one pglogical JSON message (the `data` column of
/// `pg_logical_slot_peek_changes`).
pub fn decode(data: &str) -> Result<Message, DecodeError> {
    decode_kind(data).map_err(|kind| DecodeError::new(kind, data))
}

impl RawChange {
    /// Decodes the row's `data`, keeping its `lsn` and `xid`.
    pub fn decode(&self) -> Result<Change, DecodeError> {
        Ok(Change {
            lsn: self.lsn,
            xid: self.xid,
            message: decode(&self.data)?,
        })
    }
}

fn decode_kind(data: &str) -> Result<Message, DecodeErrorKind> {
    match Object::parse(data, "") {
        Ok(object) => {
            // A backslash in the relation is part of a name, not an escape;
            // a `","` in a name makes more than two strings.
            if object.raw("relation").is_some_and(|r| {
                r.contains('\\') || strings_of(r).is_some_and(|parts| parts.len() > 2)
            }) && let Some(repaired) = relation::repair(data)
            {
                let repaired = repaired?;
                return decode_object(&repaired.text, Object::parse(&repaired.text, "")?);
            }
            decode_object(data, object)
        }
        Err(err @ DecodeErrorKind::Syntax { .. }) => match relation::repair(data) {
            Some(Ok(repaired)) => decode_object(&repaired.text, Object::parse(&repaired.text, "")?),
            Some(Err(ambiguous)) => Err(ambiguous),
            None => Err(err),
        },
        Err(err) => Err(err),
    }
}

fn decode_object(data: &str, object: Object) -> Result<Message, DecodeErrorKind> {
    let action = match object.raw("action") {
        None => return Err(DecodeErrorKind::MissingAction),
        Some(_) => object.req_str("action", "")?,
    };
    let a = action.as_str();
    Ok(match a {
        "S" => Message::Startup(Startup {
            params: object.req_object("params", a)?.string_map()?,
        }),
        "B" => {
            let xid = object.req_str("xid", a)?;
            Message::Begin(Begin {
                xid: xid
                    .parse()
                    .ok()
                    .filter(|_| is_decimal(&xid))
                    .ok_or_else(|| DecodeErrorKind::BadValue {
                        field: "xid".into(),
                        value: xid.clone(),
                        expected: "a transaction id",
                    })?,
                first_lsn: object.req_lsn("first_lsn", a)?,
                commit_time: object.opt_timestamp("commit_time")?,
                has_catalog_changes: object.flag("has_catalog_changes")?,
                origin_id: object.opt_u32("origin_id", "a replication origin id")?,
                origin_lsn: object.opt_lsn("origin_lsn")?,
            })
        }
        "C" => Message::Commit(Commit {
            final_lsn: object.req_lsn("final_lsn", a)?,
            end_lsn: object.req_lsn("end_lsn", a)?,
        }),
        "I" => {
            let relation = relation_of(&object, a)?;
            let new_tuple = object.req_object("newtuple", a)?.into_tuple()?;
            if relation.schema == "pglogical" && relation.name == "queue" {
                decode_queue(&new_tuple)?
            } else {
                Message::Insert(Insert {
                    relation,
                    new_tuple,
                })
            }
        }
        "U" => Message::Update(Update {
            relation: relation_of(&object, a)?,
            old_tuple: object
                .opt_object("oldtuple")?
                .map(Object::into_tuple)
                .transpose()?,
            new_tuple: object.req_object("newtuple", a)?.into_tuple()?,
        }),
        "D" => Message::Delete(Delete {
            relation: relation_of(&object, a)?,
            old_tuple: object.req_object("oldtuple", a)?.into_tuple()?,
        }),
        _ => Message::Unknown {
            action,
            raw: data.to_owned(),
        },
    })
}

fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `relation`: exactly two strings.
fn relation_of(object: &Object, action: &str) -> Result<QualifiedTable, DecodeErrorKind> {
    let raw = object
        .raw("relation")
        .ok_or_else(|| DecodeErrorKind::MissingField {
            action: action.to_owned(),
            field: "relation".into(),
        })?;
    let parts = strings_of(raw).ok_or_else(|| DecodeErrorKind::BadRelation {
        found: match json_kind(raw) {
            "an array" => "an array of other than strings".to_owned(),
            kind => kind.to_owned(),
        },
    })?;
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(QualifiedTable::new(schema, name)),
        Err(parts) => Err(DecodeErrorKind::BadRelation {
            found: format!("an array of {} strings", parts.len()),
        }),
    }
}

/// An INSERT into `pglogical.queue`: TRUNCATE, queued SQL, sequence
/// positions and anything else pglogical queues.
fn decode_queue(tuple: &crate::message::Tuple) -> Result<Message, DecodeErrorKind> {
    use crate::message::ColumnValue;

    const ACTION: &str = "I";
    let text = |column: &str| -> Result<Option<&str>, DecodeErrorKind> {
        match tuple.get(column) {
            ColumnValue::Absent | ColumnValue::Null => Ok(None),
            ColumnValue::Value(Datum::Text(s)) => Ok(Some(s)),
            ColumnValue::Value(other) => Err(DecodeErrorKind::WrongType {
                field: format!("newtuple.{column}"),
                expected: "a string",
                found: json_kind(&other.to_json()),
            }),
        }
    };
    let message_type = match tuple.get("message_type") {
        ColumnValue::Absent => {
            return Err(DecodeErrorKind::MissingField {
                action: ACTION.into(),
                field: "newtuple.message_type".into(),
            });
        }
        _ => text("message_type")?.unwrap_or_default().to_owned(),
    };
    let queue = QueueEntry {
        queued_at: text("queued_at")?
            .map(|t| {
                t.parse().map_err(|source| DecodeErrorKind::BadTimestamp {
                    field: "newtuple.queued_at".into(),
                    source,
                })
            })
            .transpose()?,
        role: text("role")?.map(str::to_owned),
        replication_sets: match tuple.get("replication_sets") {
            ColumnValue::Absent | ColumnValue::Null => Vec::new(),
            ColumnValue::Value(d) => {
                strings_of(&d.to_json()).ok_or_else(|| DecodeErrorKind::WrongType {
                    field: "newtuple.replication_sets".into(),
                    expected: "an array of strings",
                    found: json_kind(&d.to_json()),
                })?
            }
        },
    };
    let message_object = || -> Result<Object, DecodeErrorKind> {
        match tuple.get("message") {
            ColumnValue::Value(Datum::Json(raw)) if raw.starts_with('{') => {
                Object::parse(raw, "newtuple.message.")
            }
            ColumnValue::Absent => Err(DecodeErrorKind::MissingField {
                action: ACTION.into(),
                field: "newtuple.message".into(),
            }),
            ColumnValue::Null => Err(DecodeErrorKind::WrongType {
                field: "newtuple.message".into(),
                expected: "an object",
                found: "null",
            }),
            ColumnValue::Value(d) => Err(DecodeErrorKind::WrongType {
                field: "newtuple.message".into(),
                expected: "an object",
                found: json_kind(&d.to_json()),
            }),
        }
    };
    Ok(match message_type.as_str() {
        "T" => {
            let m = message_object()?;
            Message::Truncate(Truncate {
                relation: QualifiedTable::new(
                    m.req_str("schema_name", ACTION)?,
                    m.req_str("table_name", ACTION)?,
                ),
                queue,
            })
        }
        "S" => {
            let m = message_object()?;
            let sequence = QualifiedTable::new(
                m.req_str("schema_name", ACTION)?,
                m.req_str("sequence_name", ACTION)?,
            );
            let field = "newtuple.message.last_value";
            let value = match m.raw("last_value") {
                None => {
                    return Err(DecodeErrorKind::MissingField {
                        action: ACTION.into(),
                        field: field.into(),
                    });
                }
                // Sent as a string; a number is read the same way.
                Some(raw) if json_kind(raw) == "a number" => raw.trim().to_owned(),
                Some(_) => m.req_str("last_value", ACTION)?,
            };
            let last_value = value.parse().map_err(|_| DecodeErrorKind::BadValue {
                field: field.into(),
                value: value.clone(),
                expected: "a 64-bit integer",
            })?;
            Message::SequenceSync(SequenceSync {
                sequence,
                last_value,
                queue,
            })
        }
        "Q" => match tuple.get("message") {
            ColumnValue::Value(Datum::Text(sql)) => Message::QueuedSql(QueuedSql {
                sql: sql.clone(),
                queue,
            }),
            ColumnValue::Absent => {
                return Err(DecodeErrorKind::MissingField {
                    action: ACTION.into(),
                    field: "newtuple.message".into(),
                });
            }
            ColumnValue::Null => {
                return Err(DecodeErrorKind::WrongType {
                    field: "newtuple.message".into(),
                    expected: "a string",
                    found: "null",
                });
            }
            ColumnValue::Value(d) => {
                return Err(DecodeErrorKind::WrongType {
                    field: "newtuple.message".into(),
                    expected: "a string",
                    found: json_kind(&d.to_json()),
                });
            }
        },
        _ => Message::Queued(QueuedMessage {
            message_type,
            message: tuple.get("message").datum().cloned(),
            queue,
        }),
    })
}

#[cfg(test)]
mod tests;
