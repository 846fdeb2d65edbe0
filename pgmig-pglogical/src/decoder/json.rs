//! JSON plumbing for the decoder: an object read as its keys and the raw
//! text of each value, and typed reads of one field with precise errors.

use std::collections::HashSet;
use std::fmt;

use pgmig_core::Lsn;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::error::DecodeErrorKind;
use crate::message::{Datum, Timestamp, Tuple, datum_from_json};

/// The JSON type of a value's text, as an English noun phrase.
pub(crate) fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    }
}

/// An object's members in order, each value kept as its raw JSON text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A parsed JSON object: its members, and the path of the object for
/// error messages (`""` at the top, `"newtuple."` inside a tuple).
pub(crate) struct Object {
    members: Vec<(String, Box<RawValue>)>,
    path: String,
}

impl Object {
    /// Parses `text` as one JSON object; `path` prefixes field names in
    /// errors. Duplicate keys are an error.
    pub(crate) fn parse(text: &str, path: &str) -> Result<Object, DecodeErrorKind> {
        if text.trim_start().as_bytes().first() != Some(&b'{') {
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) if path.is_empty() => DecodeErrorKind::NotAnObject {
                    found: json_kind(text),
                },
                Ok(_) => DecodeErrorKind::WrongType {
                    field: path.trim_end_matches('.').to_owned(),
                    expected: "an object",
                    found: json_kind(text),
                },
                Err(e) => DecodeErrorKind::Syntax {
                    detail: e.to_string(),
                },
            });
        }
        let Members(members) = serde_json::from_str(text).map_err(|e| DecodeErrorKind::Syntax {
            detail: e.to_string(),
        })?;
        let mut seen = HashSet::with_capacity(members.len());
        for (key, _) in &members {
            if !seen.insert(key.as_str()) {
                return Err(DecodeErrorKind::DuplicateField {
                    field: format!("{path}{key}"),
                });
            }
        }
        Ok(Object {
            members,
            path: path.to_owned(),
        })
    }

    /// The full name of a field, for errors.
    pub(crate) fn field(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    /// The raw JSON text of a member.
    pub(crate) fn raw(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get())
    }

    /// A member that must be there.
    fn required(&self, key: &str, action: &str) -> Result<&str, DecodeErrorKind> {
        self.raw(key).ok_or_else(|| DecodeErrorKind::MissingField {
            action: action.to_owned(),
            field: self.field(key),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, raw: &str) -> DecodeErrorKind {
        DecodeErrorKind::WrongType {
            field: self.field(key),
            expected,
            found: json_kind(raw),
        }
    }

    /// The text of a JSON string.
    fn string_of(&self, key: &str, raw: &str) -> Result<String, DecodeErrorKind> {
        if json_kind(raw) != "a string" {
            return Err(self.wrong_type(key, "a string", raw));
        }
        serde_json::from_str(raw).map_err(|e| DecodeErrorKind::Syntax {
            detail: format!("field {:?}: {e}", self.field(key)),
        })
    }

    /// A string member, `None` when absent.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>, DecodeErrorKind> {
        self.raw(key)
            .map(|raw| self.string_of(key, raw))
            .transpose()
    }

    /// A string member that must be there.
    pub(crate) fn req_str(&self, key: &str, action: &str) -> Result<String, DecodeErrorKind> {
        let raw = self.required(key, action)?;
        self.string_of(key, raw)
    }

    fn lsn_of(&self, key: &str, text: &str) -> Result<Lsn, DecodeErrorKind> {
        text.parse().map_err(|source| DecodeErrorKind::BadLsn {
            field: self.field(key),
            source,
        })
    }

    /// An LSN (`X/Y` string) that must be there.
    pub(crate) fn req_lsn(&self, key: &str, action: &str) -> Result<Lsn, DecodeErrorKind> {
        let text = self.req_str(key, action)?;
        self.lsn_of(key, &text)
    }

    /// An LSN, `None` when absent.
    pub(crate) fn opt_lsn(&self, key: &str) -> Result<Option<Lsn>, DecodeErrorKind> {
        self.opt_str(key)?
            .map(|text| self.lsn_of(key, &text))
            .transpose()
    }

    /// A `u32` sent as a decimal string, `None` when absent.
    pub(crate) fn opt_u32(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<u32>, DecodeErrorKind> {
        self.opt_str(key)?
            .map(|text| {
                parse_decimal(&text).ok_or_else(|| DecodeErrorKind::BadValue {
                    field: self.field(key),
                    value: text,
                    expected,
                })
            })
            .transpose()
    }

    /// A timestamp string, `None` when absent.
    pub(crate) fn opt_timestamp(&self, key: &str) -> Result<Option<Timestamp>, DecodeErrorKind> {
        self.opt_str(key)?
            .map(|text| {
                text.parse()
                    .map_err(|source| DecodeErrorKind::BadTimestamp {
                        field: self.field(key),
                        source,
                    })
            })
            .transpose()
    }

    /// A `"t"`/`"f"` flag, `false` when absent.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, DecodeErrorKind> {
        match self.opt_str(key)?.as_deref() {
            None | Some("f") => Ok(false),
            Some("t") => Ok(true),
            Some(other) => Err(DecodeErrorKind::BadValue {
                field: self.field(key),
                value: other.to_owned(),
                expected: "\"t\" or \"f\"",
            }),
        }
    }

    /// A member that must be an object.
    pub(crate) fn req_object(&self, key: &str, action: &str) -> Result<Object, DecodeErrorKind> {
        let raw = self.required(key, action)?;
        self.object_of(key, raw)
    }

    /// A member that must be an object, `None` when absent.
    pub(crate) fn opt_object(&self, key: &str) -> Result<Option<Object>, DecodeErrorKind> {
        self.raw(key)
            .map(|raw| self.object_of(key, raw))
            .transpose()
    }

    fn object_of(&self, key: &str, raw: &str) -> Result<Object, DecodeErrorKind> {
        if json_kind(raw) != "an object" {
            return Err(self.wrong_type(key, "an object", raw));
        }
        Object::parse(raw, &format!("{}.", self.field(key)))
    }

    /// Every member as a string: the startup parameters.
    pub(crate) fn string_map(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, DecodeErrorKind> {
        self.members
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.string_of(k, v.get())?)))
            .collect()
    }

    /// The object as a tuple: every member a column.
    pub(crate) fn into_tuple(self) -> Result<Tuple, DecodeErrorKind> {
        let path = self.path;
        self.members
            .into_iter()
            .map(|(name, raw)| {
                let value: Option<Datum> =
                    datum_from_json(raw.get()).map_err(|detail| DecodeErrorKind::Syntax {
                        detail: format!("column {:?}: {detail}", format!("{path}{name}")),
                    })?;
                Ok((name, value))
            })
            .collect()
    }
}

/// A JSON array whose elements are all strings.
pub(crate) fn strings_of(raw: &str) -> Option<Vec<String>> {
    if json_kind(raw) != "an array" {
        return None;
    }
    serde_json::from_str(raw).ok()
}

/// A plain decimal `u32`: digits only, no sign, no spaces.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
