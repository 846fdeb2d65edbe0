//! [`Secret`]: a password that is never printed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What [`Secret`] prints instead of its value.
pub const MASK: &str = "********";

/// A password: readable with [`Secret::expose`], never printed.
///
/// `Debug` and `Display` print `********`. It deserializes from a plain
/// string (so a config file may carry one), but serializing writes the mask
/// `********`, never the value: structs holding a `Secret` should mark the
/// field `#[serde(skip_serializing)]` so that the mask is not written either.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The password itself. Call this only to hand it to the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Writes the mask `********`, never the password.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(format!("{s:#?}"), MASK);
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn deserializes_but_serializes_only_the_mask() {
        #[derive(Deserialize, Serialize)]
        struct Holder {
            user: String,
            #[serde(skip_serializing)]
            password: Option<Secret>,
        }
        let h: Holder = serde_json::from_str(r#"{"user":"u","password":"hunter2"}"#).unwrap();
        assert_eq!(h.password.as_ref().map(Secret::expose), Some("hunter2"));
        let out = serde_json::to_string(&h).unwrap();
        assert_eq!(out, r#"{"user":"u"}"#);

        let bare = serde_json::to_string(&Secret::new("hunter2")).unwrap();
        assert_eq!(bare, format!("\"{MASK}\""));
    }
}
