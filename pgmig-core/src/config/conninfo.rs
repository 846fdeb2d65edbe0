//! The libpq `key=value` syntax: splitting a string into pairs, and quoting
//! values when writing one.
//!
//! As in libpq: pairs are separated by whitespace, spaces around `=` are
//! allowed, a value is either bare (up to the next whitespace) or wrapped in
//! single quotes, and a backslash escapes the next character in both (so
//! `\'` and `\\` inside quotes).

use super::ConfigError;
pub(crate) use super::redact::mask_credentials;
use super::redact::{embedded_password, is_password_key};

/// One `key=value` pair as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub key: String,
    pub value: String,
    /// The pair came right after a `password=` pair: text here may be the
    /// rest of an unquoted password with spaces, so errors must not quote it.
    pub after_password: bool,
    /// The value was written in single quotes.
    pub quoted: bool,
}

/// libpq's `isspace` in the C locale.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Splits a `key=value` string into pairs, in order. Never panics.
pub(crate) fn tokenize(s: &str) -> Result<Vec<Pair>, ConfigError> {
    let mut pairs: Vec<Pair> = Vec::new();
    let mut it = s.chars().peekable();
    let skip_space = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while it.next_if(|c| is_space(*c)).is_some() {}
    };
    loop {
        skip_space(&mut it);
        if it.peek().is_none() {
            break;
        }
        let after_password = pairs.last().is_some_and(|p| is_password_key(&p.key));
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !is_space(*c)) {
            key.push(c);
        }
        skip_space(&mut it);
        if it.next_if_eq(&'=').is_none() {
            let reason = if after_password {
                "text without \"=\" after the password; quote a password that holds spaces: password='...'"
                    .to_owned()
            } else {
                let following: String = it.clone().collect();
                format!(
                    "missing \"=\" after {:?}",
                    mask_credentials(&key, &following)
                )
            };
            return Err(ConfigError::Invalid { reason });
        }
        if key.is_empty() {
            return Err(ConfigError::Invalid {
                reason: "\"=\" without a keyword before it".into(),
            });
        }
        skip_space(&mut it);
        let mut value = String::new();
        let quoted = it.next_if_eq(&'\'').is_some();
        if quoted {
            loop {
                match it.next() {
                    None => {
                        return Err(ConfigError::Invalid {
                            reason: format!(
                                "unterminated quoted value for {:?}",
                                mask_credentials(&key, "")
                            ),
                        });
                    }
                    Some('\'') => break,
                    Some('\\') => {
                        if let Some(c) = it.next() {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !is_space(*c)) {
                if c == '\\' {
                    if let Some(c) = it.next() {
                        value.push(c);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push(Pair {
            key,
            value,
            after_password,
            quoted,
        });
    }
    Ok(pairs)
}

/// A value as written in a `key=value` string: bare when it can be, else
/// single-quoted with `\'` and `\\` escapes.
pub(crate) fn quote(value: &str) -> String {
    // A bare value holding `password=` would be refused as a typo.
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || is_space(c) || c == '\'' || c == '\\')
        && embedded_password(value).is_none();
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        tokenize(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn splits_pairs() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("   \t\n", &[]),
            ("host=h", &[("host", "h")]),
            ("host = h   port =5432", &[("host", "h"), ("port", "5432")]),
            ("  host=\th\n", &[("host", "h")]),
            ("password='a b'", &[("password", "a b")]),
            (r"password='it\'s'", &[("password", "it's")]),
            (r"password='back\\slash'", &[("password", r"back\slash")]),
            (r"password=bare\ space", &[("password", "bare space")]),
            ("dbname=''", &[("dbname", "")]),
            ("dbname=", &[("dbname", "")]),
            ("dbname= user=u", &[("dbname", "user=u")]),
            (
                "options='-c a=b' user=u",
                &[("options", "-c a=b"), ("user", "u")],
            ),
            ("a='x'b=y", &[("a", "x"), ("b", "y")]),
            ("dbname=a=b", &[("dbname", "a=b")]),
            (
                "application_name='tr\u{e9}s \u{1F418}'",
                &[("application_name", "tr\u{e9}s \u{1F418}")],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(pairs(input), kv(want), "{input:?}");
        }
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            (
                "host",
                r#"invalid connection string: missing "=" after "host""#,
            ),
            (
                "host=h port",
                r#"invalid connection string: missing "=" after "port""#,
            ),
            (
                "=h",
                r#"invalid connection string: "=" without a keyword before it"#,
            ),
            (
                "dbname='abc",
                r#"invalid connection string: unterminated quoted value for "dbname""#,
            ),
            (
                r"dbname='abc\'",
                r#"invalid connection string: unterminated quoted value for "dbname""#,
            ),
            (
                "password=my secret",
                "invalid connection string: text without \"=\" after the password; quote a password that holds spaces: password='...'",
            ),
            (
                "password='unterminated secret",
                r#"invalid connection string: unterminated quoted value for "password""#,
            ),
            (
                "jdbc:postgresql://u:secret@h/db",
                r#"invalid connection string: missing "=" after "jdbc:postgresql://u:********@h/db""#,
            ),
            (
                "jdbc:postgresql://u:abc/secret@h/db",
                r#"invalid connection string: missing "=" after "jdbc:postgresql://u:********@h/db""#,
            ),
            (
                "jdbc:postgresql://u:my secret@h/db",
                r#"invalid connection string: missing "=" after "jdbc:postgresql://********""#,
            ),
            (
                "PASSWORD=my secret",
                "invalid connection string: text without \"=\" after the password; quote a password that holds spaces: password='...'",
            ),
        ];
        for (input, want) in cases {
            let err = tokenize(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn quoting_round_trips() {
        for v in [
            "",
            "a",
            "a b",
            "it's",
            r"back\slash",
            "tab\there",
            "x=y",
            "'",
            "\\",
            "\u{a0}nbsp",
        ] {
            let s = format!("k={}", quote(v));
            assert_eq!(pairs(&s), kv(&[("k", v)]), "{v:?} as {s:?}");
        }
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote("dbpassword=x"), "'dbpassword=x'");
    }

    #[test]
    fn masks_credentials_in_tokens() {
        let cases = [
            ("u:pw@h", "", "u:********@h"),
            ("x://u:p:w@h/db", "", "x://u:********@h/db"),
            ("x://u:pa/ss@h", "", "x://u:********@h"),
            ("x://u/ss:pw@h", "", "x://********@h"),
            ("x://h/db?password=a@b", "", "x://********@********"),
            ("x://h/db?password=pw", "", "x://h/db?password=********"),
            // The password may go on after a space, up to an '@'.
            ("x://u:my", " secret@h", "x://********"),
            ("x://h:5432", " user@example.com", "x://********"),
            ("x://h:5432", " next\nu@h", "x://h:5432"),
            ("u@h", "", "u@h"),
            ("plain", "", "plain"),
            ("a:b", "", "a:b"),
        ];
        for (token, following, want) in cases {
            assert_eq!(mask_credentials(token, following), want, "{token:?}");
        }
    }
}
