//! Turning a column value as pglogical sent it (JSON, see
//! [`pgmig_pglogical::message`]) back into PostgreSQL's text input syntax,
//! so that every statement binds text and casts it to the target column's
//! type (`$n::text::numeric(12,2)`): every type the load supports then
//! round-trips through its own input function.
//!
//! Most values are already their text form (numbers keep their digits,
//! `bytea` is `\x…` hex, timestamps are ISO). Three shapes need work:
//! `json`/`jsonb` columns take the JSON back as JSON (a scalar string stays
//! quoted), arrays arrive as JSON arrays and become `{…}` literals, and
//! composite values arrive as JSON objects and become `(…)` literals.
//!
//! Two ambiguities are pglogical's, not ours: a `json`/`jsonb` value that is
//! the JSON scalar `null` (a column's or an element of a `jsonb[]`) arrives
//! exactly like SQL NULL, and is applied as SQL NULL; and an array's lower
//! bounds (`'[0:1]={1,2}'`) are not sent, so such an array starts at 1 on
//! the target.

use std::fmt;

use pgmig_pglogical::Datum;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// How a column's values are written in text, from the target's catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueShape {
    /// Any type whose JSON is its text output (numbers, text, bytea,
    /// timestamps, enums…).
    Scalar,
    /// `json` or `jsonb`: the JSON itself.
    Json,
    /// A composite (row) type: a JSON object becomes `(…)`.
    Composite,
    /// An array: a JSON array becomes `{…}`; the elements have this shape.
    Array(ElementShape),
}

/// The shape of an array's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementShape {
    /// Text output, as [`ValueShape::Scalar`].
    Scalar,
    /// `json`/`jsonb` elements.
    Json,
    /// Composite elements.
    Composite,
}

/// A value pgmig cannot turn into text input for its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {found} as {expected}")]
pub struct ValueError {
    /// What the column's shape needs.
    pub expected: &'static str,
    /// An excerpt of what was sent.
    pub found: String,
}

impl ValueError {
    fn new(expected: &'static str, found: &str) -> ValueError {
        let mut excerpt: String = found.chars().take(80).collect();
        if excerpt.len() < found.len() {
            excerpt.push('…');
        }
        ValueError {
            expected,
            found: excerpt,
        }
    }
}

/// The text input form of `datum` for a column of `shape`.
pub fn text_value(datum: &Datum, shape: ValueShape) -> Result<String, ValueError> {
    match shape {
        ValueShape::Scalar => Ok(datum.as_str().to_owned()),
        ValueShape::Json => Ok(datum.to_json().into_owned()),
        ValueShape::Composite => match datum {
            Datum::Json(raw) if raw.trim_start().starts_with('{') => composite_literal(raw),
            // A value already in row syntax (never sent by pglogical 2.4.2).
            Datum::Text(s) => Ok(s.clone()),
            other => Err(ValueError::new("a composite (JSON object)", other.as_str())),
        },
        ValueShape::Array(element) => match datum {
            Datum::Json(raw) if raw.trim_start().starts_with('[') => {
                let mut out = String::new();
                array_literal(raw, element, &mut out)?;
                Ok(out)
            }
            Datum::Text(s) if s.starts_with('{') => Ok(s.clone()),
            other => Err(ValueError::new("an array (JSON array)", other.as_str())),
        },
    }
}

/// One JSON value classified: `None` for `null`.
fn classify(raw: &str) -> Result<Option<Datum>, ValueError> {
    let raw = raw.trim();
    Ok(match raw.as_bytes().first() {
        Some(b'n') if raw == "null" => None,
        Some(b't') if raw == "true" => Some(Datum::Bool(true)),
        Some(b'f') if raw == "false" => Some(Datum::Bool(false)),
        Some(b'"') => Some(Datum::Text(
            serde_json::from_str(raw).map_err(|_| ValueError::new("a JSON string", raw))?,
        )),
        Some(b'[' | b'{') => Some(Datum::Json(raw.to_owned())),
        Some(b'-' | b'0'..=b'9') => Some(Datum::Number(raw.to_owned())),
        _ => return Err(ValueError::new("a JSON value", raw)),
    })
}

/// Appends `text` double-quoted with backslash escapes, as array and row
/// literals want.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn array_literal(raw: &str, element: ElementShape, out: &mut String) -> Result<(), ValueError> {
    let items: Vec<Box<RawValue>> =
        serde_json::from_str(raw).map_err(|_| ValueError::new("a JSON array", raw))?;
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match classify(item.get())? {
            None => out.push_str("NULL"),
            // A nested array is another dimension, except in an array of
            // json, where it is more likely a JSON array value.
            Some(Datum::Json(inner)) if inner.starts_with('[') && element != ElementShape::Json => {
                array_literal(&inner, element, out)?;
            }
            Some(d) => {
                let text = match element {
                    ElementShape::Scalar => d.as_str().to_owned(),
                    ElementShape::Json => d.to_json().into_owned(),
                    ElementShape::Composite => text_value(&d, ValueShape::Composite)?,
                };
                push_quoted(out, &text);
            }
        }
    }
    out.push('}');
    Ok(())
}

/// The fields of a JSON object in the order sent.
struct OrderedObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push((k, v));
                }
                Ok(OrderedObject(fields))
            }
        }
        deserializer.deserialize_map(V)
    }
}

fn composite_literal(raw: &str) -> Result<String, ValueError> {
    let OrderedObject(fields) =
        serde_json::from_str(raw).map_err(|_| ValueError::new("a JSON object", raw))?;
    let mut out = String::from("(");
    for (i, (_, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match classify(value.get())? {
            None => {}
            Some(Datum::Json(inner)) if inner.starts_with('[') => {
                let mut text = String::new();
                array_literal(&inner, ElementShape::Scalar, &mut text)?;
                push_quoted(&mut out, &text);
            }
            Some(Datum::Json(inner)) => push_quoted(&mut out, &composite_literal(&inner)?),
            Some(d) => push_quoted(&mut out, d.as_str()),
        }
    }
    out.push(')');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Datum {
        Datum::Json(s.into())
    }

    #[test]
    fn values_become_text_input() {
        use ElementShape as E;
        use ValueShape as S;
        let cases: Vec<(Datum, ValueShape, &str)> = vec![
            (Datum::Number("0.10".into()), S::Scalar, "0.10"),
            (Datum::Bool(false), S::Scalar, "false"),
            (
                Datum::Text("\\xdeadbeef00".into()),
                S::Scalar,
                "\\xdeadbeef00",
            ),
            (Datum::Text("NaN".into()), S::Scalar, "NaN"),
            (Datum::Text("a \"b\"".into()), S::Json, "\"a \\\"b\\\"\""),
            (Datum::Number("1".into()), S::Json, "1"),
            (json(r#"{"a": [1, null]}"#), S::Json, r#"{"a": [1, null]}"#),
            (json("[1,2,null]"), S::Array(E::Scalar), r#"{"1","2",NULL}"#),
            (
                json("[[1,2],[3,4]]"),
                S::Array(E::Scalar),
                r#"{{"1","2"},{"3","4"}}"#,
            ),
            (json("[]"), S::Array(E::Scalar), "{}"),
            (
                json(r#"["a,b","x\"y\\z",""]"#),
                S::Array(E::Scalar),
                r#"{"a,b","x\"y\\z",""}"#,
            ),
            (
                json(r#"[{"k":"v"},[1],"s",null]"#),
                S::Array(E::Json),
                r#"{"{\"k\":\"v\"}","[1]","\"s\"",NULL}"#,
            ),
            (
                json(r#"{"n":1,"t":"a\"b","z":null,"arr":[1,2]}"#),
                S::Composite,
                r#"("1","a\"b",,"{\"1\",\"2\"}")"#,
            ),
            (
                json(r#"[{"a":1,"b":"x"},{"a":null,"b":"y"}]"#),
                S::Array(E::Composite),
                r#"{"(\"1\",\"x\")","(,\"y\")"}"#,
            ),
        ];
        for (datum, shape, want) in cases {
            assert_eq!(
                text_value(&datum, shape).as_deref(),
                Ok(want),
                "{datum:?} {shape:?}"
            );
        }
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert_eq!(
            text_value(
                &Datum::Number("1".into()),
                ValueShape::Array(ElementShape::Scalar)
            ),
            Err(ValueError {
                expected: "an array (JSON array)",
                found: "1".into()
            })
        );
        assert!(text_value(&Datum::Bool(true), ValueShape::Composite).is_err());
        assert!(text_value(&json("[1,"), ValueShape::Array(ElementShape::Scalar)).is_err());
    }
}
