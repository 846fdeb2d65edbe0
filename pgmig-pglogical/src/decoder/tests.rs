//! Decoder tests on real pglogical 2.4.2 output (PostgreSQL 15) saved under
//! `tests/fixtures/`, one JSON object per line: `{"lsn", "xid", "data"}` as
//! returned by `pg_logical_slot_peek_changes`.

use pgmig_core::{Lsn, ParseLsnError, QualifiedTable};
use proptest::prelude::*;

use super::*;
use crate::message::{ColumnValue, ParseTimestampError, Timestamp, Tuple};

const PEEK_BASIC: &str = include_str!("../../tests/fixtures/peek_basic.jsonl");
const PEEK_TOAST: &str = include_str!("../../tests/fixtures/peek_toast.jsonl");
const PEEK_TYPES: &str = include_str!("../../tests/fixtures/peek_types.jsonl");

fn rows(fixture: &str) -> Vec<RawChange> {
    fixture
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
            RawChange {
                lsn: v["lsn"].as_str().expect("lsn").parse().expect("lsn parses"),
                xid: u32::try_from(v["xid"].as_u64().expect("xid")).expect("xid fits"),
                data: v["data"].as_str().expect("data").to_owned(),
            }
        })
        .collect()
}

fn changes(fixture: &str) -> Vec<Change> {
    rows(fixture)
        .iter()
        .map(|r| r.decode().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn transactions(fixture: &str) -> Vec<Transaction> {
    group_transactions(changes(fixture))
        .expect("whole transactions")
        .into_complete()
        .expect("complete")
}

fn lsn(s: &str) -> Lsn {
    s.parse().expect("test LSN")
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn num(s: &str) -> Datum {
    Datum::Number(s.into())
}

fn text(s: &str) -> Datum {
    Datum::Text(s.into())
}

fn json(s: &str) -> Datum {
    Datum::Json(s.into())
}

fn tuple(columns: &[(&str, Option<Datum>)]) -> Tuple {
    columns
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

fn only<T: std::fmt::Debug>(items: &[T]) -> &T {
    assert_eq!(items.len(), 1, "{items:#?}");
    &items[0]
}

const ACCOUNT_COLUMNS: [&str; 19] = [
    "id", "name", "balance", "created", "born", "ts", "flag", "blob", "meta", "tags", "nums",
    "ratio", "real4", "small", "uid", "doc", "iv", "ip", "js",
];

#[test]
fn startup_message() {
    let first = &changes(PEEK_BASIC)[0];
    assert_eq!((first.lsn, first.xid), (lsn("0/15D2FE8"), 741));
    let Message::Startup(startup) = &first.message else {
        panic!("{first:?}")
    };
    assert_eq!(startup.pglogical_version(), Some("2.4.2"));
    assert_eq!(startup.pg_version_num(), Some(150_002));
    assert_eq!(startup.param("proto_format"), None);
    assert_eq!(startup.param("database_encoding"), Some("UTF8"));
    assert_eq!(startup.param("no_txinfo"), Some("f"));
    assert_eq!(startup.params.len(), 25);
}

#[test]
fn begin_and_commit_of_the_first_transaction() {
    let c = changes(PEEK_BASIC);
    assert_eq!(
        c[1],
        Change {
            lsn: lsn("0/15D2FE8"),
            xid: 741,
            message: Message::Begin(Begin {
                xid: 741,
                first_lsn: lsn("0/15D2FE8"),
                commit_time: Some(ts("2026-11-27 02:42:31.212583+00")),
                has_catalog_changes: false,
                origin_id: None,
                origin_lsn: None,
            }),
        }
    );
    assert_eq!(
        c[3],
        Change {
            lsn: lsn("0/15D47A8"),
            xid: 741,
            message: Message::Commit(Commit {
                final_lsn: lsn("0/15D4778"),
                end_lsn: lsn("0/15D47A8"),
            }),
        }
    );
    let txs = transactions(PEEK_BASIC);
    assert_eq!(
        txs.iter().map(|t| t.xid).collect::<Vec<_>>(),
        (741..=752).collect::<Vec<_>>()
    );
    assert_eq!(txs[0].commit_lsn, lsn("0/15D4778"));
    assert_eq!(txs[0].commit_end_lsn, lsn("0/15D47A8"));
    assert_eq!(
        txs[0].begin.commit_time.map(|t| t.to_string()).as_deref(),
        Some("2026-11-27T02:42:31.212583Z")
    );
    // The SQL interface's row LSN of a commit is the commit's end LSN.
    for row in c.iter() {
        if let Message::Commit(commit) = &row.message {
            assert_eq!(row.lsn, commit.end_lsn);
        }
    }
}

#[test]
fn insert_renders_every_type_as_sent() {
    let txs = transactions(PEEK_BASIC);
    let change = only(&txs[0].changes);
    assert_eq!(change.lsn, lsn("0/15D4578"));
    let Message::Insert(insert) = &change.message else {
        panic!("{change:?}")
    };
    assert_eq!(insert.relation, QualifiedTable::new("public", "accounts"));
    let row = &insert.new_tuple;
    assert_eq!(row.names().collect::<Vec<_>>(), ACCOUNT_COLUMNS);
    let want = [
        ("id", num("1")),
        ("name", text("Ann \"the\" O'Neil\\n")),
        ("balance", num("1234567.89")),
        ("created", text("2024-03-01T10:34:56.789+00:00")),
        ("born", text("2024-03-01")),
        ("ts", text("2024-03-01T01:02:03")),
        ("flag", Datum::Bool(true)),
        ("blob", text("\\xdeadbeef00")),
        ("meta", json(r#"{"a": [1, 2], "b": "x"}"#)),
        ("tags", json(r#"["x","y z",null,"q\"t"]"#)),
        ("nums", json("[1,2,null]")),
        ("ratio", num("1.5e+300")),
        ("real4", text("NaN")),
        ("small", num("-7")),
        ("uid", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("doc", text(&"D".repeat(5000))),
        ("iv", text("1 day 02:03:04")),
        ("ip", text("10.0.0.1/8")),
        ("js", json(r#"{"k": 1}"#)),
    ];
    for (column, value) in &want {
        assert_eq!(row.get(column), ColumnValue::Value(value), "{column}");
    }
    assert_eq!(
        row.get("tags").datum().and_then(Datum::array_elements),
        Some(vec![
            Some(text("x")),
            Some(text("y z")),
            None,
            Some(text("q\"t"))
        ])
    );
}

#[test]
fn nulls_are_null_not_absent() {
    let txs = transactions(PEEK_BASIC);
    let Message::Insert(insert) = &only(&txs[1].changes).message else {
        panic!()
    };
    assert_eq!(insert.new_tuple.get("id"), ColumnValue::Value(&num("2")));
    for column in &ACCOUNT_COLUMNS[1..] {
        assert_eq!(insert.new_tuple.get(column), ColumnValue::Null, "{column}");
    }
    // A table without a primary key, two rows in one transaction.
    assert_eq!(txs[2].changes.len(), 2);
    assert_eq!(
        txs[2].changes[1].message,
        Message::Insert(Insert {
            relation: QualifiedTable::new("public", "nopk"),
            new_tuple: tuple(&[("a", None), ("b", None)]),
        })
    );
}

#[test]
fn quoted_mixed_case_names_and_unicode() {
    let txs = transactions(PEEK_BASIC);
    assert_eq!(
        only(&txs[3].changes).message,
        Message::Insert(Insert {
            relation: QualifiedTable::new("Weird", "Order Items"),
            new_tuple: tuple(&[
                ("Id", Some(num("10"))),
                ("Qty", Some(num("3"))),
                ("note text", Some(text("ünïcödé ☃ tab\tend"))),
            ]),
        })
    );
}

#[test]
fn update_keeps_numeric_scale() {
    let txs = transactions(PEEK_BASIC);
    let Message::Update(update) = &only(&txs[6].changes).message else {
        panic!()
    };
    assert_eq!(update.old_tuple, None);
    assert_eq!(
        update.new_tuple.get("balance"),
        ColumnValue::Value(&num("0.10"))
    );
    assert_eq!(
        update.new_tuple.get("doc"),
        ColumnValue::Value(&text(&"E".repeat(3000)))
    );
    assert!(std::ptr::eq(update.identifying_tuple(), &update.new_tuple));
}

#[test]
fn update_of_the_primary_key_sends_the_old_key() {
    let txs = transactions(PEEK_BASIC);
    let Message::Update(update) = &only(&txs[7].changes).message else {
        panic!()
    };
    assert_eq!(update.relation, QualifiedTable::new("Weird", "Order Items"));
    let old = tuple(&[("Id", Some(num("10"))), ("Qty", None), ("note text", None)]);
    assert_eq!(update.old_tuple.as_ref(), Some(&old));
    assert_eq!(update.identifying_tuple(), &old);
    assert_eq!(update.new_tuple.get("Id"), ColumnValue::Value(&num("11")));
}

#[test]
fn update_omits_the_unchanged_toasted_column() {
    let txs = transactions(PEEK_BASIC);
    let tx = &txs[11];
    assert_eq!(tx.xid, 752);
    let Message::Update(update) = &only(&tx.changes).message else {
        panic!()
    };
    let new = &update.new_tuple;
    assert_eq!(new.len(), 18);
    assert_eq!(new.get("doc"), ColumnValue::Absent);
    assert_eq!(new.absent_columns(ACCOUNT_COLUMNS), ["doc"]);
    assert_eq!(new.get("flag"), ColumnValue::Null);
    assert_eq!(new.get("meta"), ColumnValue::Null);
    assert_eq!(new.get("ratio"), ColumnValue::Value(&text("Infinity")));

    // The case of DESIGN.md: incompressible default-storage text.
    let txs = transactions(PEEK_TOAST);
    assert_eq!(txs.len(), 4);
    assert_eq!(
        only(&txs[1].changes).message,
        Message::Update(Update {
            relation: QualifiedTable::new("public", "counters"),
            old_tuple: None,
            new_tuple: tuple(&[("id", Some(num("1"))), ("counter", Some(num("1")))]),
        })
    );
    let Message::Update(changed) = &only(&txs[2].changes).message else {
        panic!()
    };
    assert_eq!(
        changed.new_tuple.get("doc"),
        ColumnValue::Value(&text("short now"))
    );
}

#[test]
fn delete_sends_the_key_and_nulls() {
    let txs = transactions(PEEK_BASIC);
    let tx = &txs[8];
    assert_eq!(tx.changes.len(), 2);
    let Message::Delete(accounts) = &tx.changes[0].message else {
        panic!()
    };
    assert_eq!(accounts.relation, QualifiedTable::new("public", "accounts"));
    assert_eq!(accounts.old_tuple.get("id"), ColumnValue::Value(&num("2")));
    assert_eq!(accounts.old_tuple.len(), ACCOUNT_COLUMNS.len());
    for column in &ACCOUNT_COLUMNS[1..] {
        assert_eq!(
            accounts.old_tuple.get(column),
            ColumnValue::Null,
            "{column}"
        );
    }
    assert_eq!(
        tx.changes[1].message,
        Message::Delete(Delete {
            relation: QualifiedTable::new("public", "counters"),
            old_tuple: tuple(&[("id", Some(num("1"))), ("counter", None), ("doc", None)]),
        })
    );
}

#[test]
fn truncate_comes_typed_one_table_per_queue_row() {
    let txs = transactions(PEEK_BASIC);
    assert!(txs[9].begin.has_catalog_changes);
    assert_eq!(
        only(&txs[9].changes).message,
        Message::Truncate(Truncate {
            relation: QualifiedTable::new("public", "nopk"),
            queue: QueueEntry {
                queued_at: Some(ts("2026-11-27T02:42:31.218782+00:00")),
                role: Some("postgres".into()),
                replication_sets: vec!["idms_slot_01".into()],
            },
        })
    );
    let both: Vec<_> = txs[10]
        .changes
        .iter()
        .map(|c| match &c.message {
            Message::Truncate(t) => (t.relation.clone(), t.queue.replication_sets.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        both,
        [
            (
                QualifiedTable::new("public", "nopk"),
                vec!["idms_slot_01".to_owned()]
            ),
            (
                QualifiedTable::new("Weird", "Order Items"),
                vec!["dms_slot_01".to_owned(), "idms_slot_01".to_owned()]
            ),
        ]
    );
}

#[test]
fn empty_transactions_sequences_ddl_and_exotic_types() {
    let txs = transactions(PEEK_TYPES);
    assert_eq!(txs.len(), 19);
    // DDL and filtered-out writes still come as empty B/C pairs.
    assert_eq!(txs.iter().filter(|t| t.changes.is_empty()).count(), 15);

    let sequence = txs.iter().find(|t| t.xid == 774).expect("xid 774");
    assert_eq!(
        only(&sequence.changes).message,
        Message::SequenceSync(SequenceSync {
            sequence: QualifiedTable::new("public", "order_seq"),
            last_value: 1005,
            queue: QueueEntry {
                queued_at: Some(ts("2026-11-27T02:44:07.260449+00:00")),
                role: Some("postgres".into()),
                replication_sets: vec!["dms_slot_01".into()],
            },
        })
    );

    let ddl = txs.iter().find(|t| t.xid == 775).expect("xid 775");
    let Message::QueuedSql(sql) = &only(&ddl.changes).message else {
        panic!()
    };
    assert_eq!(
        sql.sql,
        "CREATE TABLE public.ddl_made (id int primary key, \"Note\" text)"
    );

    let insert = txs.iter().find(|t| t.xid == 778).expect("xid 778");
    let Message::Insert(insert) = &only(&insert.changes).message else {
        panic!()
    };
    let row = &insert.new_tuple;
    let want = [
        ("m", text("happy")),
        ("p", json(r#"{"x":1,"y":"a b"}"#)),
        ("grid", json("[[1,2],[3,null]]")),
        (
            "n",
            num("123456789012345678901234567890.000000000000000000001"),
        ),
        ("f", text("NaN")),
        ("money", text("$1,234.50")),
        ("bits", text("1011")),
        // `json` keeps duplicate keys, spacing and the line break.
        ("j", json("{\"dup\":1, \"dup\":2,\n  \"ws\":  true}")),
    ];
    for (column, value) in &want {
        assert_eq!(row.get(column), ColumnValue::Value(value), "{column}");
    }
    assert_eq!(
        row.get("grid").datum().and_then(Datum::array_elements),
        Some(vec![Some(json("[1,2]")), Some(json("[3,null]"))])
    );
}

#[test]
fn unescaped_relation_names_are_read_verbatim() {
    // pglogical printed `"relation":["bad"sch","back\slash"]`: not JSON.
    let raw = rows(PEEK_TYPES);
    let bad = raw
        .iter()
        .find(|r| r.xid == 784 && r.data.contains("relation"))
        .expect("row");
    assert!(serde_json::from_str::<serde_json::Value>(&bad.data).is_err());
    assert_eq!(
        decode(&bad.data),
        Ok(Message::Insert(Insert {
            relation: QualifiedTable::new("bad\"sch", "back\\slash"),
            new_tuple: tuple(&[("id", Some(num("7")))]),
        }))
    );
    // A backslash alone leaves valid JSON that would decode to another name.
    assert_eq!(
        decode(r#"{"action":"D","relation":["s","t\u0041"],"oldtuple":{"id":1}}"#)
            .map(|m| m.relation().cloned()),
        Ok(Some(QualifiedTable::new("s", "t\\u0041")))
    );
}

#[test]
fn unknown_actions_and_fields_are_tolerated() {
    let raw = r#"{"action":"O","origin_name":"n1"}"#;
    assert_eq!(
        decode(raw),
        Ok(Message::Unknown {
            action: "O".into(),
            raw: raw.into(),
        })
    );
    assert_eq!(
        decode(r#"{"action":"C","final_lsn":"0/1","end_lsn":"0/2","new_field":[1,{"x":null}]}"#),
        Ok(Message::Commit(Commit {
            final_lsn: Lsn(1),
            end_lsn: Lsn(2),
        }))
    );
    // Origins and their LSN, which 2.4.2 builds may send.
    let Ok(Message::Begin(begin)) = decode(
        r#"{"action":"B", "has_catalog_changes":"t", "origin_id":"3", "xid":"9", "first_lsn":"1/0", "origin_lsn":"A/B"}"#,
    ) else {
        panic!()
    };
    assert_eq!(
        (begin.origin_id, begin.origin_lsn, begin.commit_time),
        (Some(3), Some(lsn("A/B")), None)
    );
    // Other queue message types stay generic.
    let Ok(Message::Queued(queued)) = decode(
        r#"{"action":"I","relation":["pglogical","queue"],"newtuple":{"queued_at":"2026-11-27T02:42:31+00:00","role":"r","replication_sets":null,"message_type":"A","message":{"k":1}}}"#,
    ) else {
        panic!()
    };
    assert_eq!(queued.message_type, "A");
    assert_eq!(queued.message, Some(json(r#"{"k":1}"#)));
    assert!(queued.queue.replication_sets.is_empty());
}

fn lsn_error(input: &str, reason: &'static str) -> ParseLsnError {
    ParseLsnError {
        input: input.into(),
        reason,
    }
}

#[test]
fn malformed_messages_give_exact_errors() {
    use DecodeErrorKind as K;
    let missing = |action: &str, field: &str| K::MissingField {
        action: action.into(),
        field: field.into(),
    };
    let wrong = |field: &str, expected, found| K::WrongType {
        field: field.into(),
        expected,
        found,
    };
    let syntax = |detail: &str| K::Syntax {
        detail: detail.into(),
    };
    let queue = |message_type: &str, message: &str| {
        format!(
            r#"{{"action":"I","relation":["pglogical","queue"],"newtuple":{{"message_type":"{message_type}","message":{message}}}}}"#
        )
    };
    let cases: Vec<(String, DecodeErrorKind)> = vec![
        ("".into(), syntax("EOF while parsing a value at line 1 column 0")),
        (
            r#"{"action":"C","final_lsn":"0/1""#.into(),
            syntax("EOF while parsing an object at line 1 column 31"),
        ),
        (
            r#"{"action":"C"} trailing"#.into(),
            syntax("trailing characters at line 1 column 16"),
        ),
        ("[1]".into(), K::NotAnObject { found: "an array" }),
        ("\"B\"".into(), K::NotAnObject { found: "a string" }),
        ("null".into(), K::NotAnObject { found: "null" }),
        ("{}".into(), K::MissingAction),
        (r#"{"xid":"1"}"#.into(), K::MissingAction),
        (r#"{"action":1}"#.into(), wrong("action", "a string", "a number")),
        (
            r#"{"action":"B","action":"C"}"#.into(),
            K::DuplicateField {
                field: "action".into(),
            },
        ),
        (r#"{"action":"C","final_lsn":"0/1"}"#.into(), missing("C", "end_lsn")),
        (
            r#"{"action":"C","final_lsn":"0/1","end_lsn":"0/ZZ"}"#.into(),
            K::BadLsn {
                field: "end_lsn".into(),
                source: lsn_error("0/ZZ", "not a hexadecimal number"),
            },
        ),
        (
            r#"{"action":"C","final_lsn":"15D4778","end_lsn":"0/1"}"#.into(),
            K::BadLsn {
                field: "final_lsn".into(),
                source: lsn_error("15D4778", "missing '/'; expected X/Y, e.g. 16/B374D848"),
            },
        ),
        (
            r#"{"action":"C","final_lsn":"1/FFFFFFFFF","end_lsn":"0/1"}"#.into(),
            K::BadLsn {
                field: "final_lsn".into(),
                source: lsn_error("1/FFFFFFFFF", "a half is larger than 32 bits"),
            },
        ),
        (
            r#"{"action":"C","final_lsn":22,"end_lsn":"0/1"}"#.into(),
            wrong("final_lsn", "a string", "a number"),
        ),
        (r#"{"action":"B","first_lsn":"0/1"}"#.into(), missing("B", "xid")),
        (r#"{"action":"B","xid":"741"}"#.into(), missing("B", "first_lsn")),
        (
            r#"{"action":"B","xid":741,"first_lsn":"0/1"}"#.into(),
            wrong("xid", "a string", "a number"),
        ),
        (
            r#"{"action":"B","xid":"-1","first_lsn":"0/1"}"#.into(),
            K::BadValue {
                field: "xid".into(),
                value: "-1".into(),
                expected: "a transaction id",
            },
        ),
        (
            r#"{"action":"B","xid":"4294967296","first_lsn":"0/1"}"#.into(),
            K::BadValue {
                field: "xid".into(),
                value: "4294967296".into(),
                expected: "a transaction id",
            },
        ),
        (
            r#"{"action":"B","xid":"1","first_lsn":"0/1","commit_time":"27/11/2026"}"#.into(),
            K::BadTimestamp {
                field: "commit_time".into(),
                source: ParseTimestampError {
                    input: "27/11/2026".into(),
                    reason: "expected a date as YYYY-MM-DD",
                },
            },
        ),
        (
            r#"{"action":"B","xid":"1","first_lsn":"0/1","has_catalog_changes":true}"#.into(),
            wrong("has_catalog_changes", "a string", "a boolean"),
        ),
        (
            r#"{"action":"B","xid":"1","first_lsn":"0/1","origin_id":"x"}"#.into(),
            K::BadValue {
                field: "origin_id".into(),
                value: "x".into(),
                expected: "a replication origin id",
            },
        ),
        (r#"{"action":"S"}"#.into(), missing("S", "params")),
        (
            r#"{"action":"S","params":{"pg_version_num":150002}}"#.into(),
            wrong("params.pg_version_num", "a string", "a number"),
        ),
        (
            r#"{"action":"S","params":["a"]}"#.into(),
            wrong("params", "an object", "an array"),
        ),
        (r#"{"action":"I","newtuple":{}}"#.into(), missing("I", "relation")),
        (
            r#"{"action":"I","relation":"public.t","newtuple":{}}"#.into(),
            K::BadRelation {
                found: "a string".into(),
            },
        ),
        (
            r#"{"action":"I","relation":["public"],"newtuple":{}}"#.into(),
            K::BadRelation {
                found: "an array of 1 strings".into(),
            },
        ),
        (
            r#"{"action":"I","relation":["public",1],"newtuple":{}}"#.into(),
            K::BadRelation {
                found: "an array of other than strings".into(),
            },
        ),
        (r#"{"action":"I","relation":["a","b"]}"#.into(), missing("I", "newtuple")),
        (
            r#"{"action":"I","relation":["a","b"],"newtuple":[1]}"#.into(),
            wrong("newtuple", "an object", "an array"),
        ),
        (
            r#"{"action":"I","relation":["a","b"],"newtuple":{"x":1,"x":2}}"#.into(),
            K::DuplicateField {
                field: "newtuple.x".into(),
            },
        ),
        (
            r#"{"action":"U","relation":["a","b"],"oldtuple":{"x":1}}"#.into(),
            missing("U", "newtuple"),
        ),
        (
            r#"{"action":"U","relation":["a","b"],"oldtuple":"x","newtuple":{}}"#.into(),
            wrong("oldtuple", "an object", "a string"),
        ),
        (
            r#"{"action":"D","relation":["a","b"],"newtuple":{"x":1}}"#.into(),
            missing("D", "oldtuple"),
        ),
        (
            r#"{"action":"I","relation":["a","b"],"newtuple":{"x":"\ud800"}}"#.into(),
            syntax("column \"newtuple.x\": unexpected end of hex escape at line 1 column 8"),
        ),
        (
            queue("T", r#"{"schema_name":"public"}"#),
            missing("I", "newtuple.message.table_name"),
        ),
        (
            queue("T", r#""public.t""#),
            wrong("newtuple.message", "an object", "a string"),
        ),
        (
            queue("S", r#"{"schema_name":"public","sequence_name":"s","last_value":"1e3"}"#),
            K::BadValue {
                field: "newtuple.message.last_value".into(),
                value: "1e3".into(),
                expected: "a 64-bit integer",
            },
        ),
        (
            queue("S", r#"{"schema_name":"public","sequence_name":"s"}"#),
            missing("I", "newtuple.message.last_value"),
        ),
        (queue("Q", "null"), wrong("newtuple.message", "a string", "null")),
        (
            r#"{"action":"I","relation":["pglogical","queue"],"newtuple":{"message":"x"}}"#.into(),
            missing("I", "newtuple.message_type"),
        ),
        (
            r#"{"action":"I","relation":["pglogical","queue"],"newtuple":{"message_type":"T","message":{"schema_name":"s","table_name":"t"},"queued_at":"now"}}"#.into(),
            K::BadTimestamp {
                field: "newtuple.queued_at".into(),
                source: ParseTimestampError {
                    input: "now".into(),
                    reason: "expected a date as YYYY-MM-DD",
                },
            },
        ),
        // Valid JSON, but pglogical does not escape: a `","` in a name.
        (
            r#"{"action":"I","relation":["a","b","c"],"newtuple":{}}"#.into(),
            K::AmbiguousRelation { candidates: 2 },
        ),
        (
            r#"{"action":"I","relation":["a","b","c"],"newtuple":{"#.into(),
            syntax("EOF while parsing an object at line 1 column 51"),
        ),
        (
            r#"{"action":"I","relation":["a"b","c","d"],"newtuple":{}}"#.into(),
            K::AmbiguousRelation { candidates: 2 },
        ),
        (
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
            K::NotAnObject { found: "an array" },
        ),
    ];
    for (input, want) in cases {
        let got = decode(&input).map_err(|e| e.kind().clone());
        assert_eq!(got, Err(want), "{input}");
    }
}

#[test]
fn deep_values_are_kept_raw_without_recursion() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let data = format!(r#"{{"action":"I","relation":["a","b"],"newtuple":{{"x":{deep}}}}}"#);
    let Ok(Message::Insert(insert)) = decode(&data) else {
        panic!("deep array")
    };
    assert_eq!(insert.new_tuple.get("x"), ColumnValue::Value(&json(&deep)));
    let unbalanced = format!(
        r#"{{"action":"I","relation":["a","b"],"newtuple":{{"x":{}}}}}"#,
        "[".repeat(100_000)
    );
    assert!(decode(&unbalanced).is_err());
}

#[test]
fn errors_quote_a_bounded_excerpt() {
    let long = format!(
        r#"{{"action":"C","final_lsn":"0/1","end_lsn":"x","pad":"{}"}}"#,
        "é".repeat(500)
    );
    let err = decode(&long).expect_err("bad end_lsn");
    assert_eq!(err.excerpt().chars().count(), EXCERPT_CHARS + 1);
    assert!(err.excerpt().ends_with('…'));
    assert!(err.to_string().starts_with(
        "field \"end_lsn\" holds an invalid LSN in pglogical message \"{\\\"action\\\":\\\"C\\\""
    ));
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("invalid LSN \"x\": missing '/'; expected X/Y, e.g. 16/B374D848")
    );
    let short = decode("{}").expect_err("no action");
    assert_eq!(
        short.to_string(),
        "no \"action\" field in pglogical message \"{}\""
    );
}

#[test]
fn grouping_keeps_a_trailing_partial_transaction() {
    let mut c = changes(PEEK_BASIC);
    let commit = c.pop().expect("rows");
    assert!(matches!(commit.message, Message::Commit(_)));
    let batch = group_transactions(c).expect("well formed");
    assert!(!batch.is_complete());
    assert_eq!(batch.transactions().len(), 11);
    assert_eq!(batch.last_commit_end_lsn(), Some(lsn("0/15D8C00")));
    assert_eq!(
        batch.startup().and_then(Startup::pglogical_version),
        Some("2.4.2")
    );
    let partial = batch.incomplete().expect("partial").clone();
    assert_eq!((partial.xid, partial.changes.len()), (752, 1));
    assert_eq!(
        batch.clone().into_complete(),
        Err(TransactionError::Incomplete {
            xid: 752,
            first_lsn: lsn("0/15D8C00"),
            changes: 1,
        })
    );
    let (complete, incomplete) = batch.into_parts();
    assert_eq!((complete.len(), incomplete), (11, Some(partial)));
}

#[test]
fn grouping_rejects_broken_sequences() {
    let c = changes(PEEK_BASIC);
    let is_commit = |ch: &Change| matches!(ch.message, Message::Commit(_));

    // The commit of 741 is missing: 742's begin follows.
    let mut missing_commit = c.clone();
    missing_commit.remove(3);
    assert_eq!(
        group_transactions(missing_commit),
        Err(TransactionError::BeginWithoutCommit {
            xid: 741,
            first_lsn: lsn("0/15D2FE8"),
            next: "begin",
            at: lsn("0/15D47A8"),
        })
    );

    // A batch cut before 741's begin.
    let no_begin: Vec<Change> = c[2..].to_vec();
    assert_eq!(
        group_transactions(no_begin),
        Err(TransactionError::OutsideTransaction {
            kind: "insert",
            at: lsn("0/15D4578"),
            xid: 741,
        })
    );
    let commit_first: Vec<Change> = c.iter().skip_while(|ch| !is_commit(ch)).cloned().collect();
    assert_eq!(
        group_transactions(commit_first),
        Err(TransactionError::CommitWithoutBegin {
            at: lsn("0/15D47A8"),
            xid: 741,
        })
    );

    let mut other_xid = c.clone();
    other_xid[2].xid = 9;
    assert_eq!(
        group_transactions(other_xid),
        Err(TransactionError::XidMismatch {
            expected: 741,
            found: 9,
            at: lsn("0/15D4578"),
        })
    );

    let mut startup_inside = c.clone();
    startup_inside.insert(2, c[0].clone());
    assert!(matches!(
        group_transactions(startup_inside),
        Err(TransactionError::BeginWithoutCommit {
            next: "startup",
            ..
        })
    ));
}

fn fixture_lines() -> Vec<String> {
    [PEEK_BASIC, PEEK_TOAST, PEEK_TYPES]
        .iter()
        .flat_map(|f| rows(f))
        .map(|r| r.data)
        .collect()
}

/// Cuts `s` at the char boundary at or before `at`.
fn floor(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn datum() -> impl Strategy<Value = Option<Datum>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some(Datum::Bool(b))),
        any::<i64>().prop_map(|n| Some(num(&n.to_string()))),
        "-?(0|[1-9][0-9]{0,39})\\.[0-9]{1,30}(e[+-][0-9]{1,3})?".prop_map(|n| Some(num(&n))),
        any::<String>().prop_map(|s| Some(Datum::Text(s))),
        prop::collection::vec(any::<i32>(), 0..5)
            .prop_map(|v| Some(json(&serde_json::to_string(&v).unwrap_or_default()))),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics(s in any::<String>()) {
        let _ = decode(&s);
    }

    #[test]
    fn decode_never_panics_on_json_like_text(s in r#"[{}\[\]",:a-zA-Z0-9\\. ]{0,80}"#) {
        let _ = decode(&s);
        let _ = decode(&format!(r#"{{"action":"I","relation":["{s}"#));
    }

    #[test]
    fn decode_never_panics_on_mutated_fixtures(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        len in 0_usize..40,
        insert in "\\PC{0,8}|[\\[\\]{}\",:\\\\]{1,3}",
        mode in 0_u8..3,
    ) {
        let lines = fixture_lines();
        let line = pick.get(&lines);
        let start = floor(line, at.index(line.len() + 1));
        let mutated = match mode {
            0 => line[..start].to_owned(),
            1 => {
                let end = floor(line, start + len);
                format!("{}{insert}{}", &line[..start], &line[end..])
            }
            _ => format!("{}{insert}{}", &line[..start], &line[start..]),
        };
        let _ = decode(&mutated);
    }

    #[test]
    fn tuples_round_trip(
        columns in prop::collection::btree_map(any::<String>(), datum(), 0..8),
        schema in r#"[^"\\\x00-\x1f]{1,20}"#,
        table in any::<String>().prop_filter("a PostgreSQL name", |t| !t.is_empty() && t.len() <= 63),
    ) {
        let new_tuple: Tuple = columns.into_iter().collect();
        let data = format!(
            r#"{{"action":"I","relation":[{},{}],"newtuple":{}}}"#,
            crate::message::json_string(&schema),
            crate::message::json_string(&table),
            new_tuple.to_json()
        );
        let expected = Message::Insert(Insert {
            relation: QualifiedTable::new(schema.clone(), table.clone()),
            new_tuple,
        });
        if table.contains(['"', '\\']) || table.chars().any(|c| c < ' ') {
            // Escaped names are read verbatim, as pglogical never escapes.
            let _ = decode(&data);
        } else {
            prop_assert_eq!(decode(&data), Ok(expected));
        }
    }

    #[test]
    fn unescaped_names_read_back_or_fail(
        schema in r#"[a-c"\\, \]\[]{1,12}"#,
        table in r#"[a-c"\\, \]\[]{1,12}"#,
    ) {
        // As pglogical writes them: no escaping at all.
        let data = format!(r#"{{"action":"I","relation":["{schema}","{table}"],"newtuple":{{"id":1}}}}"#);
        match decode(&data) {
            Ok(message) => prop_assert_eq!(
                message.relation(),
                Some(&QualifiedTable::new(schema, table))
            ),
            Err(e) => prop_assert!(
                matches!(
                    e.kind(),
                    DecodeErrorKind::AmbiguousRelation { .. } | DecodeErrorKind::BadRelation { .. }
                ),
                "{}",
                e
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Fuzzing (issue 9, item 8): arbitrary bytes, near-valid messages of every
// action with fields of the wrong type or form, and rows in any order.
// `decode` returns a message or a typed error whose text stays bounded.

/// A JSON value of any type, some of them valid for some field.
fn any_json() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"t\"".to_owned()),
        Just("\"f\"".to_owned()),
        Just("\"0/0\"".to_owned()),
        Just("\"FFFFFFFF/FFFFFFFF\"".to_owned()),
        Just("\"100000000/0\"".to_owned()),
        Just("\"4294967296\"".to_owned()),
        Just("\"-1\"".to_owned()),
        Just("\"2024-02-29 23:59:59.999999+14\"".to_owned()),
        Just("\"99999-12-31 24:00:00+00\"".to_owned()),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[\"a\",\"b\",\"c\"]".to_owned()),
        Just("{\"schema_name\":\"s\",\"table_name\":\"t\"}".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("\"{n}\"")),
        any::<String>().prop_map(|s| crate::message::json_string(&s)),
        "[0-9A-Fa-f]{1,10}/[0-9A-Fa-f]{1,10}".prop_map(|s| format!("\"{s}\"")),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([+-][0-9]{2}(:[0-9]{2})?)?"
            .prop_map(|s| format!("\"{s}\"")),
    ]
}

/// The fields each action reads.
const FIELDS: &[(&str, &[&str])] = &[
    ("S", &["params"]),
    (
        "B",
        &[
            "xid",
            "first_lsn",
            "commit_time",
            "has_catalog_changes",
            "origin_id",
            "origin_lsn",
        ],
    ),
    ("C", &["final_lsn", "end_lsn"]),
    ("I", &["relation", "newtuple"]),
    ("U", &["relation", "oldtuple", "newtuple"]),
    ("D", &["relation", "oldtuple"]),
];

/// Queue rows (TRUNCATE, sequences, queued SQL) with any column values.
fn queue_message() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(vec!["\"T\"", "\"S\"", "\"Q\"", "\"X\"", "null", "1"]),
        proptest::option::of(any_json()),
        proptest::option::of(any_json()),
        proptest::option::of(any_json()),
        proptest::option::of(prop_oneof![
            any_json(),
            Just(
                "{\"schema_name\":\"s\",\"sequence_name\":\"q\",\"last_value\":\"42\"}".to_owned()
            ),
            Just("{\"schema_name\":\"s\",\"sequence_name\":\"q\",\"last_value\":4.2}".to_owned()),
            Just("{\"schema_name\":\"s\"}".to_owned()),
        ]),
    )
        .prop_map(|(kind, queued_at, role, sets, message)| {
            let mut cols = vec![format!("\"message_type\":{kind}")];
            for (name, v) in [
                ("queued_at", queued_at),
                ("role", role),
                ("replication_sets", sets),
                ("message", message),
            ] {
                if let Some(v) = v {
                    cols.push(format!("\"{name}\":{v}"));
                }
            }
            format!(
                r#"{{"action":"I","relation":["pglogical","queue"],"newtuple":{{{}}}}}"#,
                cols.join(",")
            )
        })
}

/// A message of some action with each field present or not, of any type.
fn near_valid_message() -> impl Strategy<Value = String> {
    let fields = (
        any::<proptest::sample::Index>(),
        proptest::collection::vec((any::<bool>(), any_json()), 6),
        any::<bool>(),
        proptest::option::of("\"[a-z_]{1,8}\":[0-9]{1,3}"),
    )
        .prop_map(|(pick, values, duplicate, extra)| {
            let (action, names) = *pick.get(FIELDS);
            let mut members = vec![format!("\"action\":\"{action}\"")];
            for (name, (present, value)) in names.iter().zip(values) {
                if present {
                    members.push(format!("\"{name}\":{value}"));
                }
            }
            if duplicate && members.len() > 1 {
                members.push(members[members.len() - 1].clone());
            }
            members.extend(extra);
            format!("{{{}}}", members.join(","))
        });
    prop_oneof![fields, queue_message()]
}

/// How long an error's text may be: the excerpt, plus field names and
/// values that are short in anything pglogical sends.
fn check_error_text(data: &str, err: &DecodeError) -> Result<(), TestCaseError> {
    let text = err.to_string();
    prop_assert!(!text.is_empty());
    prop_assert!(err.excerpt().chars().count() <= EXCERPT_CHARS + 1);
    let mut chain = text.clone();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    // Bounded by the input (quoted at most a few times, escapes doubling
    // it), never growing with it beyond that.
    prop_assert!(
        chain.len() <= 6 * data.len() + 2000,
        "{} bytes of error for {} bytes of input",
        chain.len(),
        data.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary bytes, as the text column they arrive in.
    #[test]
    fn fuzz_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let data = String::from_utf8_lossy(&bytes);
        if let Err(e) = decode(&data) {
            check_error_text(&data, &e)?;
        }
        let row = RawChange { lsn: Lsn(7), xid: 3, data: data.into_owned() };
        let _ = row.decode();
    }

    /// Messages of every action with fields missing, repeated, or of any
    /// type and form: a message or a typed error, never a panic.
    #[test]
    fn fuzz_near_valid_messages(data in near_valid_message()) {
        match decode(&data) {
            Ok(message) => {
                let _ = message.kind();
                let _ = message.relation();
                if let Message::Startup(s) = &message {
                    let _ = (s.pglogical_version(), s.pg_version_num());
                }
            }
            Err(e) => check_error_text(&data, &e)?,
        }
    }

    /// Any datum's text as an array, any text as a timestamp.
    #[test]
    fn fuzz_datums_and_timestamps(raw in any_json(), ts in "\\PC{0,40}") {
        if let Ok(Some(d)) = crate::message::datum_from_json(&raw) {
            let _ = d.array_elements();
            let _ = d.to_json();
        }
        if let Ok(t) = ts.parse::<Timestamp>() {
            let _ = (t.to_string(), t.to_system_time());
        }
    }

    /// Rows in any order (begins, commits, changes, startup) are grouped or
    /// refused with a typed error.
    #[test]
    fn fuzz_rows_in_any_order(picks in prop::collection::vec(any::<prop::sample::Index>(), 0..30)) {
        let all = changes(PEEK_BASIC);
        let rows: Vec<Change> = picks.iter().map(|i| i.get(&all).clone()).collect();
        match group_transactions(rows) {
            Ok(batch) => {
                let _ = batch.last_commit_end_lsn();
                let _ = batch.into_complete();
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Relation names that split many ways, before a long message: the
    /// positional reading tries a bounded number of splits (names are at
    /// most 63 bytes), so a large row costs a bounded number of passes.
    #[test]
    fn fuzz_ambiguous_relations_before_large_rows(
        unit in proptest::sample::select(vec!["\",\"", "\"],\"", "\"]}", "\\", "\""]),
        n in 1_usize..40,
        pad in 1_000_usize..200_000,
    ) {
        let names = unit.repeat(n);
        let data = format!(
            r#"{{"action":"I","relation":["a{names}","b{names}"],"newtuple":{{"x":"{}"}}}}"#,
            "y".repeat(pad)
        );
        match decode(&data) {
            Ok(m) => prop_assert!(m.relation().is_some()),
            Err(e) => check_error_text(&data, &e)?,
        }
    }
}

/// Found by fuzzing: a name holding `","` made valid JSON of more than two
/// strings, refused although only one split fits PostgreSQL's 63-byte names.
#[test]
fn a_quote_comma_quote_in_a_name_is_read_when_only_one_split_fits() {
    let schema = "s".repeat(63);
    let data = format!(r#"{{"action":"I","relation":["{schema}","b","c"],"newtuple":{{"id":1}}}}"#);
    let message = decode(&data).expect("one split fits");
    assert_eq!(
        message.relation(),
        Some(&QualifiedTable::new(schema, "b\",\"c"))
    );
    let more = format!(
        r#"{{"action":"D","relation":["{}","x","y","z"],"oldtuple":{{"id":1}}}}"#,
        "s".repeat(63)
    );
    assert_eq!(
        decode(&more).expect("one split fits").relation(),
        Some(&QualifiedTable::new("s".repeat(63), "x\",\"y\",\"z"))
    );
    let short = r#"{"action":"D","relation":["s","x","y","z"],"oldtuple":{"id":1}}"#;
    assert_eq!(
        decode(short).map_err(|e| e.kind().clone()),
        Err(DecodeErrorKind::AmbiguousRelation { candidates: 3 })
    );
}
