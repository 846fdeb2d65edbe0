//! [`DecodeError`]: why one pglogical message could not be decoded.

use std::fmt;

use pgmig_core::ParseLsnError;

use crate::message::ParseTimestampError;

/// How many characters of the message a [`DecodeError`] quotes.
pub const EXCERPT_CHARS: usize = 200;

/// Why one pglogical JSON message could not be decoded: the [`kind`] of
/// problem and the start of the message (at most [`EXCERPT_CHARS`]
/// characters).
///
/// [`kind`]: DecodeError::kind
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: Box<DecodeErrorKind>,
    excerpt: String,
}

impl DecodeError {
    /// An error about `input`, quoting its start.
    pub fn new(kind: DecodeErrorKind, input: &str) -> Self {
        let mut excerpt: String = input.chars().take(EXCERPT_CHARS).collect();
        if excerpt.len() < input.len() {
            excerpt.push('…');
        }
        DecodeError {
            kind: Box::new(kind),
            excerpt,
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// The start of the message, with `…` appended when it was cut.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in pglogical message {:?}", self.kind, self.excerpt)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

/// The kinds of [`DecodeError`]. Field names are the protocol's, with nested
/// ones joined by dots (`newtuple.message.table_name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The message is not valid JSON.
    #[error("not valid JSON ({detail})")]
    Syntax {
        /// The JSON parser's message, with line and column.
        detail: String,
    },

    /// The message is JSON, but not an object.
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found: `array`, `string`, `number`, `boolean`, `null`.
        found: &'static str,
    },

    /// The object has no `action`.
    #[error("no \"action\" field")]
    MissingAction,

    /// A field the action needs is missing.
    #[error("{action:?} message without field {field:?}")]
    MissingField {
        /// The message's action (`B`, `C`, `I`…).
        action: String,
        /// The missing field.
        field: String,
    },

    /// A field has the wrong JSON type.
    #[error("field {field:?} should be {expected}, found {found}")]
    WrongType {
        /// The field.
        field: String,
        /// The JSON type wanted, e.g. `a string`.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },

    /// A key appears twice in one object.
    #[error("field {field:?} appears twice")]
    DuplicateField {
        /// The repeated key (for a tuple: `newtuple.<column>`).
        field: String,
    },

    /// A field does not hold an LSN.
    #[error("field {field:?} holds an invalid LSN")]
    BadLsn {
        /// The field.
        field: String,
        /// The parser's complaint, quoting the value.
        #[source]
        source: ParseLsnError,
    },

    /// A field holds a value of the right JSON type but the wrong form.
    #[error("field {field:?} holds {value:?}, expected {expected}")]
    BadValue {
        /// The field.
        field: String,
        /// The value as sent.
        value: String,
        /// What was expected, e.g. `a transaction id`.
        expected: &'static str,
    },

    /// A field does not hold a timestamp pgmig understands.
    #[error("field {field:?} holds an invalid timestamp")]
    BadTimestamp {
        /// The field.
        field: String,
        /// The parser's complaint, quoting the value.
        #[source]
        source: ParseTimestampError,
    },

    /// `relation` is not a `[schema, table]` pair of strings.
    #[error("field \"relation\" should be [schema, table], found {found}")]
    BadRelation {
        /// What was found instead.
        found: String,
    },

    /// pglogical writes `relation` names without JSON escaping; a name with
    /// a `"` or `\` can still be read back unless the split between schema
    /// and table is ambiguous, as here.
    #[error(
        "field \"relation\" holds unescaped names that split {candidates} ways into schema and table"
    )]
    AmbiguousRelation {
        /// How many readings fit.
        candidates: usize,
    },
}
