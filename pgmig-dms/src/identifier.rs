//! [`DmsIdentifier`]: the names DMS gives its tasks and endpoints.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The longest identifier DMS accepts for a replication task or endpoint.
pub const MAX_IDENTIFIER_LEN: usize = 255;

/// A replication task or endpoint identifier as DMS accepts it: 1 to 255
/// ASCII letters, digits and hyphens, starting with a letter, never ending
/// with a hyphen nor containing two hyphens in a row.
///
/// Underscores are refused, so slot names such as `dms_slot_01` are spelled
/// with hyphens ([`DmsIdentifier::from_parts`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmsIdentifier(String);

/// Why a string is not a DMS identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DMS identifier {input:?}: {reason}")]
pub struct IdentifierError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DmsIdentifier {
    /// Checks `input` against the DMS rules and keeps it as it is.
    pub fn parse(input: &str) -> Result<DmsIdentifier, IdentifierError> {
        let fail = |reason| IdentifierError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("empty"));
        }
        if input.len() > MAX_IDENTIFIER_LEN {
            return Err(fail("longer than 255 characters"));
        }
        if !input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(fail("only ASCII letters, digits and hyphens are allowed"));
        }
        if !input.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(fail("must start with a letter"));
        }
        if input.ends_with('-') {
            return Err(fail("must not end with a hyphen"));
        }
        if input.contains("--") {
            return Err(fail("must not contain two hyphens in a row"));
        }
        Ok(DmsIdentifier(input.to_owned()))
    }

    /// Joins `parts` with hyphens after spelling each `_` as `-`, then checks
    /// the result: `from_parts(&["pgmig", "dms_slot_01"])` is
    /// `pgmig-dms_slot_01` spelled `pgmig-dms-slot-01`. Nothing else is
    /// rewritten, so a part that DMS would refuse (a capital is fine, a dot
    /// or `__` is not) is an error rather than a silently different name.
    pub fn from_parts(parts: &[&str]) -> Result<DmsIdentifier, IdentifierError> {
        let joined = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.replace('_', "-"))
            .collect::<Vec<_>>()
            .join("-");
        DmsIdentifier::parse(&joined)
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DmsIdentifier {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DmsIdentifier::parse(s)
    }
}

impl fmt::Display for DmsIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DmsIdentifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_dms_accepts() {
        let longest = format!("a{}", "b".repeat(254));
        for ok in ["a", "pgmig-dms-slot-01", "Task9", "A-b-C", longest.as_str()] {
            assert_eq!(DmsIdentifier::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_what_dms_refuses() {
        let too_long = "a".repeat(256);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("dms_slot_01", "only ASCII"),
            ("1task", "start with a letter"),
            ("-task", "start with a letter"),
            ("task-", "end with a hyphen"),
            ("a--b", "two hyphens"),
            ("tâche", "only ASCII"),
            ("a.b", "only ASCII"),
            ("a b", "only ASCII"),
            (too_long.as_str(), "longer than 255"),
        ];
        for (input, reason) in cases {
            let err = DmsIdentifier::parse(input).unwrap_err();
            assert!(err.reason.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn slot_names_become_identifiers() {
        let id = DmsIdentifier::from_parts(&["pgmig", "dms_slot_01"]).unwrap();
        assert_eq!(id.as_str(), "pgmig-dms-slot-01");
        let id = DmsIdentifier::from_parts(&["pgmig", "src", "a_b"]).unwrap();
        assert_eq!(id.as_str(), "pgmig-src-a-b");
        // Empty parts are skipped rather than doubling a hyphen.
        let id = DmsIdentifier::from_parts(&["", "x", ""]).unwrap();
        assert_eq!(id.as_str(), "x");
        // `__` would become `--`; a trailing `_` a trailing hyphen.
        assert!(DmsIdentifier::from_parts(&["pgmig", "a__b"]).is_err());
        assert!(DmsIdentifier::from_parts(&["pgmig", "slot_"]).is_err());
        assert!(DmsIdentifier::from_parts(&["9pgmig", "slot"]).is_err());
        let long = "s".repeat(250);
        assert!(DmsIdentifier::from_parts(&["pgmig", &long]).is_err());
    }
}
