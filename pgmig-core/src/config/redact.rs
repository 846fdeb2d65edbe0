//! [`redact_dsn`]: masking the password in a connection string that may not
//! even parse, for error messages and logs.

use super::conn_config::KEYWORDS;
use super::conninfo::{is_space, mask_credentials};
use super::secret::MASK;
use super::url::decode;

/// The connection string `raw` with any password replaced by `********`,
/// the rest kept as written.
///
/// Works on malformed strings too, and errs on the side of masking: in the
/// `key=value` form, the value of `password` (to its closing quote, or to
/// the end of the string if the quote is never closed) and any text after
/// it that is not a `keyword=value` pair (the rest of an unquoted password
/// with spaces); in the URL form, what follows the `:` of the user part and
/// the value of a `password` query parameter; and in any stray token the
/// part between `user:` and `@`.
pub fn redact_dsn(raw: &str) -> String {
    let trimmed = raw.trim_start();
    let lead = &raw[..raw.len() - trimmed.len()];
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(scheme) {
            return format!("{lead}{scheme}{}", redact_url_rest(rest));
        }
    }
    redact_key_value(raw)
}

/// Redacts a URL after its scheme.
fn redact_url_rest(rest: &str) -> String {
    let first_slash = rest.find('/').unwrap_or(rest.len());
    let (userinfo, after) = match rest[..first_slash].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = String::with_capacity(rest.len());
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    match after.split_once('?') {
        None => out.push_str(after),
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if decode(key).is_ok_and(|k| k == "password") => {
                        format!("{key}={MASK}")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

/// The index just past the character starting at `i` (or `s.len()`).
fn step(s: &str, i: usize) -> usize {
    match s.get(i..).and_then(|r| r.chars().next()) {
        Some(c) => i + c.len_utf8(),
        None => s.len(),
    }
}

/// Redacts a `key=value` string, tolerating any syntax error.
fn redact_key_value(s: &str) -> String {
    let b = s.as_bytes();
    let space = |i: usize| b.get(i).is_some_and(|c| is_space(char::from(*c)));
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // Inside text that follows a password value and is not a known pair.
    let mut after_password = false;
    while i < b.len() {
        if space(i) {
            out.push(char::from(b[i]));
            i += 1;
            continue;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !space(i) {
            i = step(s, i);
        }
        let key = &s[key_start..i];
        let mut j = i;
        while space(j) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            // A word without "=": maybe part of a password.
            out.push_str(&if after_password {
                MASK.to_owned()
            } else {
                mask_credentials(key)
            });
            continue;
        }
        j += 1;
        while space(j) {
            j += 1;
        }
        let value_start = j;
        if b.get(j) == Some(&b'\'') {
            j += 1;
            while j < b.len() {
                match b[j] {
                    b'\\' => j = step(s, j + 1),
                    b'\'' => {
                        j += 1;
                        break;
                    }
                    _ => j = step(s, j),
                }
            }
        } else {
            while j < b.len() && !space(j) {
                j = if b[j] == b'\\' {
                    step(s, j + 1)
                } else {
                    step(s, j)
                };
            }
        }
        let j = j.min(b.len());
        if key == "password" {
            out.push_str(&s[key_start..value_start]);
            out.push_str(MASK);
            after_password = true;
        } else if after_password && !KEYWORDS.contains(&key) {
            out.push_str(MASK);
        } else {
            out.push_str(&mask_credentials(&s[key_start..j]));
            after_password = false;
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let cases = [
            (
                "host=h password=pw user=u",
                "host=h password=******** user=u",
            ),
            (
                "host=h password = 'p w' user=u",
                "host=h password = ******** user=u",
            ),
            (r"password='it\'s' dbname=d", "password=******** dbname=d"),
            ("password='never closed dbname=d", "password=********"),
            (
                "password=my secret dbname=d",
                "password=******** ******** dbname=d",
            ),
            (
                "password=my secret=x dbname=d",
                "password=******** ******** dbname=d",
            ),
            ("password=", "password=********"),
            ("password", "password"),
            ("host=h", "host=h"),
            ("", ""),
            ("postgres://u:pw@h/db", "postgres://u:********@h/db"),
            (
                "postgresql://u:p@w@h:5432/db?sslmode=require",
                "postgresql://u:********@h:5432/db?sslmode=require",
            ),
            (
                "postgres://u@h/db?password=pw&sslmode=disable",
                "postgres://u@h/db?password=********&sslmode=disable",
            ),
            (
                "postgres://h/db?pass%77ord=pw",
                "postgres://h/db?pass%77ord=********",
            ),
            ("postgres://u:pw@", "postgres://u:********@"),
            ("  postgres://u:pw@h", "  postgres://u:********@h"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            (
                "jdbc:postgresql://u:pw@h/db",
                "jdbc:postgresql://u:********@h/db",
            ),
            ("u:pw@h", "u:********@h"),
            (
                "host=h\tpassword=\u{e9}\u{e9}\\\u{e9} x",
                "host=h\tpassword=******** ********",
            ),
            ("password='\\", "password=********"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_dsn(raw), want, "{raw:?}");
        }
    }
}
