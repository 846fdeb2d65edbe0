//! [`redact_dsn`]: masking passwords in a connection string that may not
//! even parse, or in any text that may quote one (a usage error, a log line).

use super::conn_config::KEYWORDS;
use super::conninfo::is_space;
use super::secret::MASK;
use super::url::decode;

/// `raw` — a connection string in either form, or any text quoting one —
/// with every password replaced by `********`, the rest kept as written.
///
/// Works on malformed strings and free text too, and errs on the side of
/// masking:
///
/// - the value of any `key=value` pair whose key ends with `password` in
///   any case (`password`, `sslpassword`, `PGPASSWORD`, `'--password`),
///   spaces around `=` allowed, to its closing quote (or the end of the
///   string if the quote is never closed) or to the next whitespace;
/// - after such a value, up to the end of the line, any word or pair that
///   is not a libpq `keyword=value` (maybe the rest of a password with
///   spaces);
/// - in a URL anywhere (`scheme://...`), everything up to the last `@` on
///   its line except a user name that is clearly one (before the first
///   `:`, holding no `/`, `?`, `#`, `&`, `=` or space): an unencoded `/`,
///   `?`, `@` or space in the password can make the user part end at any
///   of them;
/// - in a token like `user:password@host`, what lies between the first
///   `:` and the last `@`;
/// - in URL query parameters, the value of a password parameter (its key
///   percent-decoded), and the parameters after it that are not libpq
///   keywords.
pub fn redact_dsn(raw: &str) -> String {
    redact_text(raw, 0)
}

/// Whether a key names a password: it ends with `password`, in any case,
/// as written or percent-decoded.
pub(crate) fn is_password_key(key: &str) -> bool {
    fn ends(k: &str) -> bool {
        k.len() >= 8
            && k.is_char_boundary(k.len() - 8)
            && k[k.len() - 8..].eq_ignore_ascii_case("password")
    }
    ends(key) || decode(key).is_ok_and(|k| ends(&k))
}

/// Where a password starts inside another bare value that swallowed a
/// `password=` pair for want of a separator (`port=54password=pw`, or
/// `?sslmode=requirepassword=pw` in a URL): just past that `=`.
pub(crate) fn embedded_password(value: &str) -> Option<usize> {
    // ASCII lower-casing keeps byte offsets.
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let after = from + i + "password".len();
        if lower[after..].starts_with('=') {
            return Some(after + 1);
        }
        from = after;
    }
    None
}

/// `value` with any password it swallowed ([`embedded_password`]) masked.
pub(crate) fn mask_embedded_password(value: &str) -> String {
    match embedded_password(value) {
        Some(at) => format!("{}{MASK}", &value[..at]),
        None => value.to_owned(),
    }
}

/// A token that may hold a password in `user:password@host` or URL query
/// form, masked for quoting in an error message; `following` is the text
/// after it, where an unencoded space may have split a URL's password.
pub(crate) fn mask_credentials(token: &str, following: &str) -> String {
    if let Some(p) = token.find("://") {
        let user_part_continues = !token[p..].contains('@')
            && following
                .split('\n')
                .next()
                .is_some_and(|line| line.contains('@'));
        if user_part_continues {
            return format!("{}{MASK}", &token[..p + 3]);
        }
    }
    redact_text(token, 0)
}

/// How deep quoted values are searched for pairs (`dsn='... password=...'`);
/// deeper ones are masked whole.
const MAX_DEPTH: u8 = 3;

/// Redacts a `key=value` string or free text, tolerating any syntax.
fn redact_text(s: &str, depth: u8) -> String {
    let b = s.as_bytes();
    let space = |i: usize| b.get(i).is_some_and(|c| is_space(char::from(*c)));
    let token_end = |mut i: usize| {
        while i < b.len() && !space(i) {
            i = step(s, i);
        }
        i
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // Inside text that follows a password value and is not a known pair.
    let mut after_password = false;
    // The last word or value ended with `password` (`port=54password = pw`
    // with a space missing before `password`).
    let mut prev_password = false;
    while i < b.len() {
        if space(i) {
            // An unquoted password holds no line break.
            if b[i] == b'\n' {
                after_password = false;
            }
            out.push(char::from(b[i]));
            i += 1;
            continue;
        }
        let prev_ends_password = std::mem::take(&mut prev_password);
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !space(i) {
            i = step(s, i);
        }
        let key = &s[key_start..i];
        // `&password = pw`: a pair, not a URL.
        let password_pair = is_password_key(key) && !key.contains(['@', '?', '/']);
        if is_url_like(key) && !password_pair {
            // A URL or `user:password@host`, whatever its `=`s.
            let end = token_end(i);
            if after_password {
                out.push_str(MASK);
                i = end;
            } else {
                let (masked, next, password) = mask_token(s, key_start, end);
                out.push_str(&masked);
                i = next;
                after_password = password;
                prev_password = is_password_key(&s[key_start..end]);
            }
            continue;
        }
        let mut j = i;
        while space(j) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            // A word without "=": maybe part of a password.
            out.push_str(if after_password { MASK } else { key });
            prev_password = is_password_key(key);
            continue;
        }
        j += 1;
        while space(j) {
            j += 1;
        }
        let value_start = j;
        let quoted = b.get(j) == Some(&b'\'');
        if quoted {
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
        let value = &s[value_start..j];
        i = j;
        if is_password_key(key) || (key.is_empty() && prev_ends_password) {
            out.push_str(&s[key_start..value_start]);
            out.push_str(MASK);
            after_password = true;
        } else if after_password && !KEYWORDS.contains(&key) {
            out.push_str(MASK);
        } else {
            out.push_str(&s[key_start..value_start]);
            after_password = false;
            if quoted {
                // May be a whole connection string.
                if depth < MAX_DEPTH {
                    out.push_str(&redact_text(value, depth + 1));
                } else {
                    out.push_str(MASK);
                }
            } else if is_url_like(value) {
                let (masked, next, password) = mask_token(s, value_start, j);
                out.push_str(&masked);
                i = next;
                after_password = password;
                prev_password = is_password_key(value);
            } else if let Some(at) = embedded_password(value) {
                // `port=54password=pw`: a space was missing.
                out.push_str(&value[..at]);
                out.push_str(MASK);
                after_password = true;
            } else {
                out.push_str(value);
                prev_password = is_password_key(value);
            }
        }
    }
    out
}

/// Whether a token may hold a URL, `user:password@host` or query
/// parameters.
fn is_url_like(token: &str) -> bool {
    token.contains("://") || token.contains(['@', '?', '&'])
}

/// Masks the URL-like token `s[start..end]` (no whitespace in it).
///
/// Returns the masked text, where to go on (past the `@` ending a user
/// part, which for a URL may lie beyond `end`), and whether the text just
/// masked ends inside a password (so that what follows may be its rest).
fn mask_token(s: &str, start: usize, end: usize) -> (String, usize, bool) {
    let token = &s[start..end];
    let line_end = s[start..].find('\n').map_or(s.len(), |n| start + n);
    let (head, at) = match token.find("://") {
        // A URL: the user part ends at the last '@' on its line, since the
        // password may hold an unencoded '/', '?', '@' or space.
        Some(p) => {
            let head = start + p + 3;
            (head, s[head..line_end].rfind('@').map(|a| head + a))
        }
        None => (start, token.rfind('@').map(|a| start + a)),
    };
    match at {
        Some(at) => {
            let userinfo = &s[head..at];
            let masked = format!("{}{}@", &s[start..head], mask_userinfo(userinfo));
            // "...?password=a@b": the '@' may be inside a password.
            (masked, at + 1, mask_query(userinfo).1)
        }
        None => {
            let (rest, password) = mask_query(&s[head..end]);
            (format!("{}{rest}", &s[start..head]), end, password)
        }
    }
}

/// The user part of a URL (before its last `@`), the password masked: the
/// user name is kept only when it clearly is one.
fn mask_userinfo(userinfo: &str) -> String {
    let plain = |user: &str| {
        !user.contains(['/', '?', '#', '&', '=']) && !user.chars().any(char::is_whitespace)
    };
    match userinfo.split_once(':') {
        Some((user, _)) if plain(user) => format!("{user}:{MASK}"),
        None if plain(userinfo) => userinfo.to_owned(),
        _ => MASK.to_owned(),
    }
}

/// Masks the password parameters in URL text split at `?` and `&`, and the
/// parameters after one that are not libpq keywords; also tells whether
/// the text ends inside a password.
fn mask_query(s: &str) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut after_password = false;
    for piece in s.split_inclusive(['?', '&']) {
        let (body, sep) = match piece.char_indices().last() {
            Some((k, '?' | '&')) => piece.split_at(k),
            _ => (piece, ""),
        };
        match body.split_once('=') {
            Some((key, _)) if is_password_key(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
                after_password = true;
            }
            // `sslmode=requirepassword=pw`: a missing '&'.
            Some((key, value)) if let Some(at) = embedded_password(value) => {
                out.push_str(key);
                out.push('=');
                out.push_str(&value[..at]);
                out.push_str(MASK);
                after_password = true;
            }
            Some((key, _)) if decode(key).is_ok_and(|k| KEYWORDS.contains(&k.as_str())) => {
                out.push_str(body);
                after_password = false;
            }
            _ if after_password && !body.is_empty() => out.push_str(MASK),
            _ => out.push_str(body),
        }
        out.push_str(sep);
    }
    (out, after_password)
}

/// The index just past the character starting at `i` (or `s.len()`).
fn step(s: &str, i: usize) -> usize {
    match s.get(i..).and_then(|r| r.chars().next()) {
        Some(c) => i + c.len_utf8(),
        None => s.len(),
    }
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
            // Unencoded '/' (or '?', '@') in a URL password: everything up
            // to the last '@' is the user part.
            (
                "postgres://u:abc/Secret1@host/db",
                "postgres://u:********@host/db",
            ),
            (
                "postgresql://u:123/Secret2@h:5432/db",
                "postgresql://u:********@h:5432/db",
            ),
            (
                "postgres://u:a/b?c#d@e@h1:5432,h2/db?sslmode=require",
                "postgres://u:********@h1:5432,h2/db?sslmode=require",
            ),
            ("postgres://u/x:pw@h/db", "postgres://********@h/db"),
            (
                "postgres://h/db?password=a@b",
                "postgres://********@********",
            ),
            ("postgres://h?password=a@b", "postgres://********@********"),
            (
                "postgres://u:pw@h/db?application_name=a@b",
                "postgres://u:********@b",
            ),
            ("postgres://u:my secret@h/db", "postgres://u:********@h/db"),
            (
                "postgres://h/db?password=a&b&c=d&sslmode=require",
                "postgres://h/db?password=********&********&********&sslmode=require",
            ),
            (
                "postgres://h/db?password=a?b#c",
                "postgres://h/db?password=********?********",
            ),
            (
                "postgres://h/db?sslpassword=k&x=1",
                "postgres://h/db?sslpassword=********&********",
            ),
            ("u:p/w@h", "u:********@h"),
            (
                "postgres://h/db?sslmode=requirepassword=pw&port=1",
                "postgres://h/db?sslmode=requirepassword=********&port=1",
            ),
            ("&ost=password='pw'", "&ost=password=********"),
            ("&Apassword = 'pw'", "&Apassword = ********"),
            (
                "port=5432,543&password = 'p w' sslmode=require",
                "port=5432,543&password = ******** sslmode=require",
            ),
            (
                "port=5432,54apassword = 'p w' sslmode=require",
                "port=5432,54apassword = ******** sslmode=require",
            ),
            (
                "host=h port=54password=pw user=u",
                "host=h port=54password=******** user=u",
            ),
            (
                "user=uPassword='pw x' dbname=d",
                "user=uPassword=******** ******** dbname=d",
            ),
            ("me@example.com", "me@example.com"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_dsn(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn masks_passwords_in_free_text() {
        let cases = [
            (
                "error: unrecognized subcommand 'password=Secret3'",
                "error: unrecognized subcommand 'password=********",
            ),
            (
                "error: unexpected argument 'password=Secret3' found\n\n\
                 Usage: pgmig [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n",
                "error: unexpected argument 'password=******** ********\n\n\
                 Usage: pgmig [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n",
            ),
            (
                "error: invalid value 'host=h password=Secret3 port=x' for '--source <DSN>'",
                "error: invalid value 'host=h password=******** port=x' for '--source <DSN>'",
            ),
            (
                "bad: host=h password = 'Secret3 with spaces' port=5432",
                "bad: host=h password = ******** port=5432",
            ),
            (
                "bad: password='it\\'s Secret3' user=u",
                "bad: password=******** user=u",
            ),
            (
                "cannot connect to \"postgres://u:Secret3@h/db\": timed out",
                "cannot connect to \"postgres://u:********@h/db\": timed out",
            ),
            (
                "(see postgresql://u:abc/Secret3@h:5432/db) and more",
                "(see postgresql://u:********@h:5432/db) and more",
            ),
            (
                "invalid value 'jdbc:postgresql://u:Secret3@h/db' for '--source <DSN>'",
                "invalid value 'jdbc:postgresql://u:********@h/db' for '--source <DSN>'",
            ),
            (
                "--source=postgres://u:Secret3@h --target x",
                "--source=postgres://u:********@h --target x",
            ),
            (
                "dsn='host=h password=Secret3' next",
                "dsn='host=h password=******** next",
            ),
            (
                "x postgres://u:Secret 3@h/db y",
                "x postgres://u:********@h/db y",
            ),
            (
                "at postgres://h/db?sslmode=require&password=Secret3 then\nnext line",
                "at postgres://h/db?sslmode=require&password=******** ********\nnext line",
            ),
            (
                "PGPASSWORD=Secret3 pgmig check\nok",
                "PGPASSWORD=******** ******** ********\nok",
            ),
            ("'--password=Secret3'", "'--password=********"),
            ("user alice@example.com: 1:2", "user alice@example.com: 1:2"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_dsn(raw), want, "{raw:?}");
            assert!(!redact_dsn(raw).contains("Secret"), "{raw:?}");
        }
    }
}
