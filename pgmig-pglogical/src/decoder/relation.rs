//! Reading `relation` names that pglogical wrote without JSON escaping.
//!
//! pglogical 2.4.2 prints a change's relation with `printf`:
//! `{"action":"I","relation":["<schema>","<table>"]…`, the names verbatim.
//! A name holding `"` makes the message invalid JSON
//! (`["bad"sch","back\slash"]` was seen for real); a name holding `\` may
//! even parse, as the wrong name, and one holding `","` may parse as more
//! than two strings. So whenever the strict parse fails, or the relation
//! text holds a backslash or more than two strings, the names are read
//! positionally instead, byte for byte: every split of the text after the fixed prefix into
//! schema `","` table `"]` rest is tried (names are at most 63 bytes), the
//! names are re-escaped, and the split is accepted only if it is the one
//! and only split that makes the whole message valid JSON.

use super::error::DecodeErrorKind;
use crate::message::json_string;

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
const MAX_NAME_BYTES: usize = 63;

/// The message with its relation names re-escaped: valid JSON that decodes
/// to the names as pglogical wrote them.
pub(crate) struct Repaired {
    /// The message as valid JSON.
    pub(crate) text: String,
}

/// Reads the relation of an `I`/`U`/`D` message positionally. `None` when
/// the message does not start the way pglogical writes changes, or when no
/// split makes it valid JSON; an error when more than one does.
pub(crate) fn repair(data: &str) -> Option<Result<Repaired, DecodeErrorKind>> {
    let rest = data.strip_prefix("{\"action\":\"")?;
    let action = ["I", "U", "D"]
        .into_iter()
        .find(|a| rest.starts_with(a) && rest[1..].starts_with("\",\"relation\":[\""))?;
    let names = &rest[1 + "\",\"relation\":[\"".len()..];
    let bytes = names.as_bytes();

    let mut found: Vec<Repaired> = Vec::new();
    let mut candidates = 0;
    for schema_end in positions(bytes, b"\",\"", MAX_NAME_BYTES) {
        let table_start = schema_end + 3;
        let Some(after_schema) = bytes.get(table_start..) else {
            continue;
        };
        for table_len in positions(after_schema, b"\"]", MAX_NAME_BYTES) {
            let table_end = table_start + table_len;
            let tail = &names[table_end + 2..];
            if tail != "}" && !tail.starts_with(",\"") {
                continue;
            }
            // The separators are ASCII, so these are char boundaries.
            let schema = &names[..schema_end];
            let table = &names[table_start..table_end];
            let text = format!(
                "{{\"action\":\"{action}\",\"relation\":[{},{}]{tail}",
                json_string(schema),
                json_string(table)
            );
            if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
                candidates += 1;
                found.push(Repaired { text });
            }
        }
    }
    match candidates {
        0 => None,
        1 => found.pop().map(Ok),
        n => Some(Err(DecodeErrorKind::AmbiguousRelation { candidates: n })),
    }
}

/// Offsets (at most `max`) where `needle` starts in `haystack`.
fn positions<'a>(
    haystack: &'a [u8],
    needle: &'a [u8],
    max: usize,
) -> impl Iterator<Item = usize> + 'a {
    (0..=max.min(haystack.len())).filter(move |&i| haystack[i..].starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(data: &str) -> Option<Result<(String, String), DecodeErrorKind>> {
        repair(data).map(|r| {
            r.map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.text).unwrap_or_default();
                let name = |i: usize| v["relation"][i].as_str().unwrap_or("?").to_owned();
                (name(0), name(1))
            })
        })
    }

    #[test]
    fn reads_names_verbatim() {
        let ok = |s: &str, t: &str| Some(Ok((s.to_owned(), t.to_owned())));
        assert_eq!(
            names(r#"{"action":"I","relation":["bad"sch","back\slash"],"newtuple":{"id":7}}"#),
            ok("bad\"sch", "back\\slash")
        );
        // Valid JSON, but `\n` is two characters of the name, not a newline.
        assert_eq!(
            names(r#"{"action":"D","relation":["s","a\n"],"oldtuple":{"id":1}}"#),
            ok("s", "a\\n")
        );
        assert_eq!(
            names(r#"{"action":"U","relation":["s","x\"],"newtuple":{"id":1}}"#),
            ok("s", "x\\")
        );
        assert_eq!(
            names(r#"{"action":"U","relation":["s","t"]}"#),
            ok("s", "t")
        );
    }

    #[test]
    fn ambiguous_or_foreign_text_is_not_guessed() {
        // Schema `a","b` + table `c`, or schema `a` + table `b","c`.
        assert_eq!(
            names(r#"{"action":"I","relation":["a","b","c"],"newtuple":{}}"#),
            Some(Err(DecodeErrorKind::AmbiguousRelation { candidates: 2 }))
        );
        assert_eq!(names(r#"{"action":"B","relation":["a","b"]}"#), None);
        assert_eq!(names(r#"{"action":"I", "relation":["a","b"]}"#), None);
        assert_eq!(
            names(r#"{"action":"I","relation":["a","b"],"newtuple":{"#),
            None
        );
        assert_eq!(names(""), None);
    }

    #[test]
    fn names_longer_than_postgres_allows_are_not_considered() {
        let long = "x".repeat(64);
        let data = format!(r#"{{"action":"I","relation":["{long}","t"],"newtuple":{{}}}}"#);
        assert_eq!(names(&data), None);
    }
}
