//! Typed messages of pglogical's JSON output protocol (`proto_format json`,
//! protocol version 1), as read through `pg_logical_slot_peek_changes` and
//! `pg_logical_slot_get_changes`.
//!
//! What pglogical 2.4.2 sends, seen on PostgreSQL 15 (the fixtures under
//! `tests/fixtures/` are real output):
//!
//! - each call starts with a startup message `S` carrying the server's
//!   parameters, then every transaction is a `B` … `C` pair, *including*
//!   transactions that touched no replicated table (they arrive empty);
//! - `B` carries `xid`, `first_lsn` and `commit_time`; `C` carries
//!   `final_lsn` (where the commit record starts) and `end_lsn` (where it
//!   ends: compare this one with the pause point P);
//! - `I`/`U`/`D` carry `relation` as `[schema, table]` and the tuples as JSON
//!   objects, one key per column in table order. Values are JSON as
//!   PostgreSQL's `to_json` renders them: numbers (`int`, `float`, `numeric`)
//!   as bare JSON numbers with their exact digits, `NaN`/`Infinity` as strings,
//!   booleans as `true`/`false`, timestamps in ISO form
//!   (`2024-03-01T10:34:56.789+00:00`), `bytea` as its hex text
//!   (`\xdeadbeef00`), arrays as (nested) JSON arrays, composites as objects,
//!   `json`/`jsonb` embedded verbatim, everything else as the type's text
//!   output in a JSON string;
//! - an UPDATE's new tuple *omits* columns whose value is an unchanged TOASTed
//!   datum, and carries an old tuple only when the replica identity key
//!   changed; a DELETE's old tuple carries the key and `null` for every
//!   other column;
//! - TRUNCATE (and `replicate_ddl_command`, sequence synchronisation) arrive
//!   as INSERTs into `pglogical.queue`: decoded here into [`Truncate`],
//!   [`QueuedSql`] and [`SequenceSync`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgmig_core::{Lsn, QualifiedTable};
use serde_json::value::RawValue;

/// One row of `pg_logical_slot_{peek,get}_changes`, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChange {
    /// The row's `lsn` column: where the change was written (for a commit,
    /// the end of the commit record).
    pub lsn: Lsn,
    /// The row's `xid` column: the top-level transaction.
    pub xid: u32,
    /// The row's `data` column: one pglogical JSON message.
    pub data: String,
}

/// One decoded row of `pg_logical_slot_{peek,get}_changes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The row's `lsn` column.
    pub lsn: Lsn,
    /// The row's `xid` column.
    pub xid: u32,
    /// The decoded `data` column.
    pub message: Message,
}

/// One pglogical JSON message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `S`: the first message of every call, with the server's parameters.
    Startup(Startup),
    /// `B`: a transaction begins.
    Begin(Begin),
    /// `C`: the transaction commits.
    Commit(Commit),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// A table was truncated (an `I` into `pglogical.queue`, type `T`).
    Truncate(Truncate),
    /// A sequence position was queued by `pglogical.synchronize_sequence`
    /// (an `I` into `pglogical.queue`, type `S`).
    SequenceSync(SequenceSync),
    /// SQL queued by `pglogical.replicate_ddl_command` (an `I` into
    /// `pglogical.queue`, type `Q`).
    QueuedSql(QueuedSql),
    /// Any other row queued in `pglogical.queue`.
    Queued(QueuedMessage),
    /// A message with an action pgmig does not know. The applier must not
    /// skip it silently.
    Unknown {
        /// The `action` field as sent.
        action: String,
        /// The whole message, as sent.
        raw: String,
    },
}

impl Message {
    /// The table (or sequence) the message is about, if any.
    pub fn relation(&self) -> Option<&QualifiedTable> {
        match self {
            Message::Insert(m) => Some(&m.relation),
            Message::Update(m) => Some(&m.relation),
            Message::Delete(m) => Some(&m.relation),
            Message::Truncate(m) => Some(&m.relation),
            Message::SequenceSync(m) => Some(&m.sequence),
            _ => None,
        }
    }

    /// A short lower-case name of the message kind, for logs: `insert`,
    /// `truncate`, `unknown`….
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Startup(_) => "startup",
            Message::Begin(_) => "begin",
            Message::Commit(_) => "commit",
            Message::Insert(_) => "insert",
            Message::Update(_) => "update",
            Message::Delete(_) => "delete",
            Message::Truncate(_) => "truncate",
            Message::SequenceSync(_) => "sequence sync",
            Message::QueuedSql(_) => "queued sql",
            Message::Queued(_) => "queued message",
            Message::Unknown { .. } => "unknown",
        }
    }
}

/// The startup message: the parameters pglogical reports about itself and
/// the server (`pglogical_version`, `pg_version_num`, `database_encoding`…),
/// every value a string as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup {
    /// The parameters by name.
    pub params: BTreeMap<String, String>,
}

impl Startup {
    /// One parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `pglogical_version`, e.g. `2.4.2`.
    pub fn pglogical_version(&self) -> Option<&str> {
        self.param("pglogical_version")
    }

    /// `pg_version_num`, e.g. `150002`, when present and numeric.
    pub fn pg_version_num(&self) -> Option<u32> {
        self.param("pg_version_num")?.parse().ok()
    }
}

/// The start of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// The transaction id (`xid`).
    pub xid: u32,
    /// Where the transaction's first WAL record starts (`first_lsn`).
    pub first_lsn: Lsn,
    /// When it committed (`commit_time`), as reported by pglogical.
    pub commit_time: Option<Timestamp>,
    /// Whether it changed the catalogs (DDL, pglogical's own tables).
    pub has_catalog_changes: bool,
    /// The replication origin the transaction was replayed from, when it
    /// came from another node (`origin_id`, absent for local writes).
    pub origin_id: Option<u32>,
    /// The LSN at that origin (`origin_lsn`), when sent.
    pub origin_lsn: Option<Lsn>,
}

/// The commit of a transaction. pglogical's JSON commit has no time: it is
/// in the [`Begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Where the commit record starts (`final_lsn`).
    pub final_lsn: Lsn,
    /// Where the commit record ends (`end_lsn`). A transaction is in the
    /// snapshot taken at P exactly when `end_lsn` ≤ P.
    pub end_lsn: Lsn,
}

/// An inserted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// The table.
    pub relation: QualifiedTable,
    /// The new row: every column.
    pub new_tuple: Tuple,
}

/// An updated row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The table.
    pub relation: QualifiedTable,
    /// The old key, sent only when the replica identity key changed: its key
    /// columns hold the old values, the other columns `null`.
    pub old_tuple: Option<Tuple>,
    /// The new row. Columns holding an unchanged TOASTed value are absent
    /// (not `null`): the target must leave them as they are.
    pub new_tuple: Tuple,
}

impl Update {
    /// The tuple that finds the row on the target: the old key when
    /// pglogical sent one, otherwise the new row (whose key did not change).
    pub fn identifying_tuple(&self) -> &Tuple {
        self.old_tuple.as_ref().unwrap_or(&self.new_tuple)
    }
}

/// A deleted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The table.
    pub relation: QualifiedTable,
    /// The old row's replica identity: the key columns with their values;
    /// every other column is `null` whatever it held, so only the key (known
    /// from the catalog) may be used to find the row.
    pub old_tuple: Tuple,
}

/// Where a `pglogical.queue` row came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueEntry {
    /// When it was queued (`queued_at`).
    pub queued_at: Option<Timestamp>,
    /// The role that queued it (`role`).
    pub role: Option<String>,
    /// The replication sets it was queued for (`replication_sets`).
    pub replication_sets: Vec<String>,
}

/// A truncated table.
///
/// pglogical queues one row per table, so `TRUNCATE a, b` (or a `CASCADE`)
/// arrives as consecutive `Truncate`s in one transaction; an applier should
/// truncate such a run in one statement, or foreign keys between the tables
/// make it fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// The table.
    pub relation: QualifiedTable,
    /// The queue row.
    pub queue: QueueEntry,
}

/// A sequence position queued by pglogical's sequence synchronisation.
/// pglogical adds headroom: `last_value` is ahead of the sequence's actual
/// value (1000 ahead after `synchronize_sequence`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSync {
    /// The sequence.
    pub sequence: QualifiedTable,
    /// The value to set it to.
    pub last_value: i64,
    /// The queue row.
    pub queue: QueueEntry,
}

/// SQL queued by `pglogical.replicate_ddl_command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSql {
    /// The SQL text, as given to `replicate_ddl_command`.
    pub sql: String,
    /// The queue row.
    pub queue: QueueEntry,
}

/// A `pglogical.queue` row of a type pgmig does not decode further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// `message_type` as sent (`T`, `Q` and `S` are decoded elsewhere).
    pub message_type: String,
    /// The `message` column (`None` for SQL NULL or when absent).
    pub message: Option<Datum>,
    /// The queue row.
    pub queue: QueueEntry,
}

/// A column value as pglogical sent it. SQL NULL is not a `Datum`: see
/// [`ColumnValue`].
///
/// Nothing is converted, so nothing is lost: numbers keep their exact digits
/// (`0.10` stays `0.10`; a 40-digit `numeric` stays exact), and arrays,
/// composites and `json` keep the JSON text byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Datum {
    /// A JSON boolean: a `boolean` column.
    Bool(bool),
    /// A JSON number, as its exact text: `int2/4/8`, `float4/8` and
    /// `numeric` (except `NaN` and infinities, which come as [`Datum::Text`]).
    Number(String),
    /// A JSON string, unescaped: the type's text output (`text`, `bytea` as
    /// `\x…` hex, `uuid`, `date`, timestamps in ISO form, `interval`,
    /// enums…) or `"NaN"`/`"Infinity"` for floats and numerics.
    Text(String),
    /// A JSON array or object, as the exact text sent: arrays (nested for
    /// more dimensions, SQL NULL elements as `null`), composite types, and
    /// `json`/`jsonb` values (which may themselves be scalars, in which case
    /// they arrive as one of the other variants).
    Json(String),
}

impl Datum {
    /// The value's text: `true`/`false`, the number's digits, the string, or
    /// the raw JSON of an array or object. This is PostgreSQL's input syntax
    /// for every type except arrays and composites, whose JSON the applier
    /// must turn into `{…}` / `(…)` literals (see [`Datum::array_elements`]).
    pub fn as_str(&self) -> &str {
        match self {
            Datum::Bool(true) => "true",
            Datum::Bool(false) => "false",
            Datum::Number(s) | Datum::Text(s) | Datum::Json(s) => s,
        }
    }

    /// The value as JSON text, as pglogical would send it.
    pub fn to_json(&self) -> Cow<'_, str> {
        match self {
            Datum::Text(s) => Cow::Owned(json_string(s)),
            other => Cow::Borrowed(other.as_str()),
        }
    }

    /// The elements of a JSON array value (one dimension: inner arrays of a
    /// multi-dimensional array come as [`Datum::Json`]), `None` for SQL NULL
    /// elements. `None` when the value is not an array.
    pub fn array_elements(&self) -> Option<Vec<Option<Datum>>> {
        let Datum::Json(text) = self else {
            return None;
        };
        if !text.trim_start().starts_with('[') {
            return None;
        }
        let items: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
        items
            .iter()
            .map(|raw| datum_from_json(raw.get()).ok())
            .collect()
    }
}

/// Classifies the text of one JSON value (already validated as JSON) into
/// `None` (JSON null) or a [`Datum`]; the parser's message when a string
/// cannot be unescaped or the text is not a JSON value.
pub(crate) fn datum_from_json(raw: &str) -> Result<Option<Datum>, String> {
    let raw = raw.trim();
    Ok(match raw.as_bytes().first() {
        Some(b'n') if raw == "null" => None,
        Some(b't') if raw == "true" => Some(Datum::Bool(true)),
        Some(b'f') if raw == "false" => Some(Datum::Bool(false)),
        Some(b'"') => Some(Datum::Text(
            serde_json::from_str(raw).map_err(|e| e.to_string())?,
        )),
        Some(b'[' | b'{') => Some(Datum::Json(raw.to_owned())),
        Some(b'-' | b'0'..=b'9') => Some(Datum::Number(raw.to_owned())),
        _ => return Err(format!("not a JSON value: {raw:?}")),
    })
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a tuple holds for one column: the three cases an applier must tell
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// The column is not in the tuple. In an UPDATE's new tuple: an
    /// unchanged TOASTed value; leave the target's value as it is.
    Absent,
    /// SQL NULL.
    Null,
    /// A value.
    Value(&'a Datum),
}

impl<'a> ColumnValue<'a> {
    /// Whether the column was sent at all.
    pub fn is_present(self) -> bool {
        !matches!(self, ColumnValue::Absent)
    }

    /// The value, `None` for NULL and absent.
    pub fn datum(self) -> Option<&'a Datum> {
        match self {
            ColumnValue::Value(d) => Some(d),
            _ => None,
        }
    }
}

/// A row as pglogical sent it: the columns it carries, in table order, each
/// SQL NULL (`None`) or a [`Datum`]. Columns it does not carry are absent,
/// which is not the same as NULL; see [`Tuple::get`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple {
    columns: Vec<(String, Option<Datum>)>,
}

impl Tuple {
    /// An empty tuple.
    pub fn new() -> Self {
        Tuple::default()
    }

    /// Appends a column. Names are not checked for duplicates here (the
    /// decoder rejects them).
    pub fn push(&mut self, name: impl Into<String>, value: Option<Datum>) {
        self.columns.push((name.into(), value));
    }

    /// What the tuple holds for `column` (exact, case-sensitive name).
    pub fn get(&self, column: &str) -> ColumnValue<'_> {
        match self.columns.iter().find(|(name, _)| name == column) {
            None => ColumnValue::Absent,
            Some((_, None)) => ColumnValue::Null,
            Some((_, Some(d))) => ColumnValue::Value(d),
        }
    }

    /// Whether the tuple carries `column` (NULL or not).
    pub fn contains(&self, column: &str) -> bool {
        self.get(column).is_present()
    }

    /// The columns carried, in order: name and value (`None` for NULL).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, Option<&Datum>)> {
        self.columns.iter().map(|(n, v)| (n.as_str(), v.as_ref()))
    }

    /// The names of the columns carried, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.columns.iter().map(|(n, _)| n.as_str())
    }

    /// How many columns the tuple carries.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the tuple carries no column.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Of the table's columns, those this tuple does not carry, in the order
    /// given. For an UPDATE's new tuple these are the unchanged TOASTed
    /// columns, which the applier must not overwrite.
    pub fn absent_columns<'c>(
        &self,
        table_columns: impl IntoIterator<Item = &'c str>,
    ) -> Vec<&'c str> {
        table_columns
            .into_iter()
            .filter(|c| !self.contains(c))
            .collect()
    }

    /// The tuple as a JSON object, as pglogical would send it.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, value)) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(name));
            out.push(':');
            match value {
                None => out.push_str("null"),
                Some(d) => out.push_str(&d.to_json()),
            }
        }
        out.push('}');
        out
    }
}

impl FromIterator<(String, Option<Datum>)> for Tuple {
    fn from_iter<I: IntoIterator<Item = (String, Option<Datum>)>>(iter: I) -> Self {
        Tuple {
            columns: iter.into_iter().collect(),
        }
    }
}

impl<'t> IntoIterator for &'t Tuple {
    type Item = (&'t str, Option<&'t Datum>);
    type IntoIter = Box<dyn ExactSizeIterator<Item = Self::Item> + 't>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// A point in time with microsecond precision, as PostgreSQL's
/// `timestamptz`: pglogical's `commit_time` and a queue row's `queued_at`.
///
/// Parsed from PostgreSQL's ISO output in any session time zone
/// (`2026-11-27 02:42:31.212583+00`, `2026-11-27 08:14:07.25+05:30`,
/// `2026-11-27T02:42:31.218782+00:00`); printed as RFC 3339 in UTC
/// (`2026-11-27T02:42:31.212583Z`). Ordered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_micros: i64,
}

/// Why a string is not a timestamp pgmig understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct ParseTimestampError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Timestamp {
    /// The instant `micros` microseconds after 1970-01-01 00:00:00 UTC.
    pub fn from_unix_micros(micros: i64) -> Self {
        Timestamp {
            unix_micros: micros,
        }
    }

    /// Microseconds since 1970-01-01 00:00:00 UTC (negative before).
    pub fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// The same instant as a [`SystemTime`], `None` if the platform cannot
    /// represent it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let magnitude = Duration::from_micros(self.unix_micros.unsigned_abs());
        if self.unix_micros >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// A cursor over ASCII digits and separators.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<i64> {
        let part = self.bytes.get(self.pos..self.pos + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(part.iter().fold(0, |acc, b| acc * 10 + i64::from(b - b'0')))
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`) followed by a UTC
    /// offset `Z`, `±HH`, `±HH:MM` or `±HH:MM:SS`; at most six fraction
    /// digits; years 1 to 9999.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseTimestampError {
            input: s.to_owned(),
            reason,
        };
        let mut c = Cursor {
            bytes: s.trim().as_bytes(),
            pos: 0,
        };
        let bad_date = "expected a date as YYYY-MM-DD";
        let year = c.digits(4).ok_or_else(|| fail(bad_date))?;
        let month = (c.eat(b'-').then(|| c.digits(2)))
            .flatten()
            .ok_or_else(|| fail(bad_date))?;
        let day = (c.eat(b'-').then(|| c.digits(2)))
            .flatten()
            .ok_or_else(|| fail(bad_date))?;
        if year == 0 || !(1..=12).contains(&month) {
            return Err(fail("date out of range"));
        }
        let month_days = [
            31,
            if is_leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let max_day = usize::try_from(month - 1)
            .ok()
            .and_then(|m| month_days.get(m))
            .copied()
            .unwrap_or(0);
        if day < 1 || day > max_day {
            return Err(fail("date out of range"));
        }
        if !(c.eat(b' ') || c.eat(b'T')) {
            return Err(fail("expected a space or 'T' between date and time"));
        }
        let bad_time = "expected a time as HH:MM:SS";
        let hour = c.digits(2).ok_or_else(|| fail(bad_time))?;
        let minute = (c.eat(b':').then(|| c.digits(2)))
            .flatten()
            .ok_or_else(|| fail(bad_time))?;
        let second = (c.eat(b':').then(|| c.digits(2)))
            .flatten()
            .ok_or_else(|| fail(bad_time))?;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(fail("time out of range"));
        }
        let mut micros = 0;
        if c.eat(b'.') {
            let mut n = 0;
            while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                if n == 6 {
                    return Err(fail("more than six fraction digits"));
                }
                micros = micros * 10 + i64::from(d - b'0');
                n += 1;
                c.pos += 1;
            }
            if n == 0 {
                return Err(fail("no digits after '.'"));
            }
            micros *= 10_i64.pow(6 - n);
        }
        let offset_secs = if c.eat(b'Z') {
            0
        } else {
            let sign = if c.eat(b'+') {
                1
            } else if c.eat(b'-') {
                -1
            } else {
                return Err(fail("expected a UTC offset (Z, +HH, +HH:MM)"));
            };
            let bad_offset = "expected a UTC offset as ±HH[:MM[:SS]]";
            let h = c.digits(2).ok_or_else(|| fail(bad_offset))?;
            let m = if c.eat(b':') {
                c.digits(2).ok_or_else(|| fail(bad_offset))?
            } else {
                0
            };
            let sec = if c.eat(b':') {
                c.digits(2).ok_or_else(|| fail(bad_offset))?
            } else {
                0
            };
            if h > 15 || m > 59 || sec > 59 {
                return Err(fail("UTC offset out of range"));
            }
            sign * (h * 3600 + m * 60 + sec)
        };
        if !c.done() {
            return Err(fail("unexpected text after the timestamp"));
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset_secs;
        Ok(Timestamp {
            unix_micros: secs * 1_000_000 + micros,
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_micros.div_euclid(1_000_000);
        let micros = self.unix_micros.rem_euclid(1_000_000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let tod = secs.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            tod / 3600,
            tod % 3600 / 60,
            tod % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_in_postgres_iso_forms() {
        let utc = |s: &str| s.parse::<Timestamp>().map(|t| t.to_string());
        let cases = [
            (
                "2026-11-27 02:42:31.212583+00",
                "2026-11-27T02:42:31.212583Z",
            ),
            (
                "2026-11-26 21:44:07.253237-05",
                "2026-11-27T02:44:07.253237Z",
            ),
            (
                "2026-11-27 08:14:07.253237+05:30",
                "2026-11-27T02:44:07.253237Z",
            ),
            (
                "2026-11-27T02:42:31.218782+00:00",
                "2026-11-27T02:42:31.218782Z",
            ),
            ("2026-11-27 02:44:07.2605+00", "2026-11-27T02:44:07.260500Z"),
            ("2000-02-29 00:00:00Z", "2000-02-29T00:00:00.000000Z"),
            (
                "1969-12-31 23:59:59.999999+00",
                "1969-12-31T23:59:59.999999Z",
            ),
            (
                "1883-11-18 12:00:00-04:56:02",
                "1883-11-18T16:56:02.000000Z",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(utc(input).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(
            "1970-01-01 00:00:00+00"
                .parse::<Timestamp>()
                .map(Timestamp::unix_micros),
            Ok(0)
        );
    }

    #[test]
    fn bad_timestamps_say_why() {
        let cases = [
            ("", "expected a date as YYYY-MM-DD"),
            ("2026-13-01 00:00:00+00", "date out of range"),
            ("2026-02-29 00:00:00+00", "date out of range"),
            (
                "2026-01-01",
                "expected a space or 'T' between date and time",
            ),
            ("2026-01-01 24:00:00+00", "time out of range"),
            (
                "2026-01-01 00:00:00",
                "expected a UTC offset (Z, +HH, +HH:MM)",
            ),
            ("2026-01-01 00:00:00.+00", "no digits after '.'"),
            (
                "2026-01-01 00:00:00.1234567+00",
                "more than six fraction digits",
            ),
            (
                "2026-01-01 00:00:00+00 BC",
                "unexpected text after the timestamp",
            ),
            ("27/11/2026 02:42:31 UTC", "expected a date as YYYY-MM-DD"),
            ("2026-01-01 00:00:00+16", "UTC offset out of range"),
        ];
        for (input, reason) in cases {
            assert_eq!(
                input.parse::<Timestamp>().map_err(|e| e.reason),
                Err(reason),
                "{input}"
            );
        }
    }

    #[test]
    fn tuple_tells_absent_from_null() {
        let tuple: Tuple = [
            ("id".to_owned(), Some(Datum::Number("1".into()))),
            ("note".to_owned(), None),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            tuple.get("id"),
            ColumnValue::Value(&Datum::Number("1".into()))
        );
        assert_eq!(tuple.get("note"), ColumnValue::Null);
        assert_eq!(tuple.get("doc"), ColumnValue::Absent);
        assert_eq!(tuple.get("ID"), ColumnValue::Absent);
        assert_eq!(tuple.absent_columns(["id", "note", "doc"]), vec!["doc"]);
        assert_eq!(tuple.to_json(), r#"{"id":1,"note":null}"#);
    }

    #[test]
    fn array_elements_keep_digits() {
        let d = Datum::Json(r#"[1.10,null,"x",[2]]"#.into());
        assert_eq!(
            d.array_elements(),
            Some(vec![
                Some(Datum::Number("1.10".into())),
                None,
                Some(Datum::Text("x".into())),
                Some(Datum::Json("[2]".into())),
            ])
        );
        assert_eq!(Datum::Json("{}".into()).array_elements(), None);
        assert_eq!(Datum::Text("[1]".into()).array_elements(), None);
    }

    proptest! {
        #[test]
        fn timestamp_display_parses_back(micros in -62_135_596_800_000_000_i64..253_402_300_799_999_999) {
            let t = Timestamp::from_unix_micros(micros);
            prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        }

        #[test]
        fn timestamp_parse_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Timestamp>();
        }

        #[test]
        fn json_string_round_trips(s in "\\PC*|[\\x00-\\x1f\"\\\\]*") {
            let back: String = serde_json::from_str(&json_string(&s)).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
