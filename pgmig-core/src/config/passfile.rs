//! The password file (`~/.pgpass`), read as libpq reads it.
//!
//! Each line is `hostname:port:database:username:password`; a field that
//! is exactly `*` matches anything; `\:` and `\\` stand for `:` and `\`;
//! lines starting with `#` and empty lines are skipped; the first matching
//! line wins. A connection through the default Unix-socket directory
//! matches the host name `localhost`. Like libpq, the file is ignored (with
//! a warning) when it is not a plain file or when its group or others may
//! read it.

use std::io;
use std::path::Path;

use tracing::{debug, warn};

use super::DEFAULT_SOCKET_DIR;
use super::secret::Secret;

/// The password for `user` on `dbname` at `host:port` from the passfile at
/// `path`, if the file is usable and a line matches.
///
/// `host` is a host name, an IP address or a Unix-socket directory. A
/// missing file gives `None` silently; an unusable one (unreadable, not a
/// plain file, group- or world-accessible) gives `None` with a warning.
pub fn lookup_password(
    path: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<Secret> {
    let contents = match read_private(path) {
        Ok(Some(contents)) => contents,
        Ok(None) => return None,
        Err(reason) => {
            warn!(passfile = %path.display(), %reason, "ignoring the password file");
            return None;
        }
    };
    let found = find_password(&contents, host, port, dbname, user);
    if found.is_some() {
        debug!(passfile = %path.display(), host, port, dbname, user, "password found in the password file");
    }
    found
}

/// Reads the file if it exists and only its owner may access it.
fn read_private(path: &Path) -> Result<Option<String>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            debug!(passfile = %path.display(), "no password file");
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() {
        return Err("it is not a plain file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "its group or others may access it (mode {:04o}); permissions should be u=rw (0600) or less",
                mode & 0o7777
            ));
        }
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The first matching password in passfile `contents`.
pub(crate) fn find_password(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<Secret> {
    let host = if host.is_empty() || host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    contents
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.wildcard || field.text == want);
            matches.then(|| fields[4].text.clone())
        })
        .filter(|password| !password.is_empty())
        .map(Secret::new)
}

struct Field {
    text: String,
    /// Written as a bare `*`.
    wildcard: bool,
}

/// Splits a line at unescaped `:`, removing the escapes.
fn split_fields(line: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut text = String::new();
    let mut raw_len = 0;
    let mut chars = line.chars();
    let mut push = |text: &mut String, raw_len: &mut usize| {
        let wildcard = *raw_len == 1 && text == "*";
        fields.push(Field {
            text: std::mem::take(text),
            wildcard,
        });
        *raw_len = 0;
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw_len += 2;
                // A trailing backslash stands for itself.
                text.push(chars.next().unwrap_or('\\'));
            }
            ':' => push(&mut text, &mut raw_len),
            c => {
                raw_len += 1;
                text.push(c);
            }
        }
    }
    push(&mut text, &mut raw_len);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment line: ignored
db1.example.com:5432:app:alice:pw-app
db1.example.com:*:*:alice:pw-any-db
*:5433:*:*:pw-port-5433
localhost:5432:*:bob:pw-local
/tmp:5432:*:bob:pw-tmp-socket
::1:5432:*:carol:wrong-ipv6-unescaped
\\:\\:1:5432:*:carol:pw-ipv6
esc.example.com:5432:db\\:colon:dave:pa\\:ss\\\\word:ignored-extra
\\*:5432:*:erin:pw-literal-star
star.example.com:5432:*:erin:pw-star-host
short:5432:app:alice
empty.example.com:5432:*:*:
";

    fn find(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
        find_password(FILE, host, port, db, user).map(|s| s.expose().to_owned())
    }

    #[test]
    fn matches_like_libpq() {
        let cases: &[(&str, u16, &str, &str, Option<&str>)] = &[
            ("db1.example.com", 5432, "app", "alice", Some("pw-app")),
            ("db1.example.com", 5432, "other", "alice", Some("pw-any-db")),
            ("db1.example.com", 6000, "app", "alice", Some("pw-any-db")),
            ("db1.example.com", 5432, "app", "mallory", None),
            ("anywhere", 5433, "x", "y", Some("pw-port-5433")),
            ("localhost", 5432, "x", "bob", Some("pw-local")),
            // The default socket directory counts as localhost, another one as itself.
            (DEFAULT_SOCKET_DIR, 5432, "x", "bob", Some("pw-local")),
            ("", 5432, "x", "bob", Some("pw-local")),
            ("/tmp", 5432, "x", "bob", Some("pw-tmp-socket")),
            ("127.0.0.1", 5432, "x", "bob", None),
            ("::1", 5432, "x", "carol", Some("pw-ipv6")),
            (
                "esc.example.com",
                5432,
                "db:colon",
                "dave",
                Some("pa:ss\\word"),
            ),
            ("esc.example.com", 5432, "db", "dave", None),
            // `\*` is a literal star, not a wildcard.
            ("*", 5432, "x", "erin", Some("pw-literal-star")),
            ("star.example.com", 5432, "x", "erin", Some("pw-star-host")),
            // Too few fields never match; an empty password is no password.
            ("short", 5432, "app", "alice", None),
            ("empty.example.com", 5432, "x", "y", None),
        ];
        for (host, port, db, user, want) in cases {
            assert_eq!(
                find(host, *port, db, user).as_deref(),
                *want,
                "{host}:{port}:{db}:{user}"
            );
        }
    }

    #[test]
    fn crlf_lines_and_trailing_backslash() {
        let file = "h:5432:d:u:pw\r\nh2:5432:d:u:pw2\\";
        assert_eq!(
            find_password(file, "h", 5432, "d", "u").map(|s| s.expose().to_owned()),
            Some("pw".to_owned())
        );
        assert_eq!(
            find_password(file, "h2", 5432, "d", "u").map(|s| s.expose().to_owned()),
            Some("pw2\\".to_owned())
        );
    }

    /// libpq's `passwordFromFile` de-escapes the rest of the line "for
    /// (p1 = p2 = ret; *p1 != ':' && *p1 != '\\0'; ...)": the password ends
    /// at the next unescaped `:`, whatever follows is ignored.
    #[test]
    fn unescaped_colon_ends_the_password_as_in_libpq() {
        let cases = [
            ("h:5432:d:u:pa:ss", Some("pa")),
            ("h:5432:d:u:pa\\:ss", Some("pa:ss")),
            ("h:5432:d:u:pa\\:ss:more:fields", Some("pa:ss")),
            ("h:5432:d:u:a\\\\:b", Some("a\\")),
            ("h:5432:d:u:a\\\\\\:b", Some("a\\:b")),
            ("h:5432:d:u:\\x\\y", Some("xy")),
            ("h:5432:d:u::pw", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                find_password(line, "h", 5432, "d", "u")
                    .as_ref()
                    .map(Secret::expose),
                want,
                "{line:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn reads_private_files_only() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "h:5432:d:u:secret-pw").unwrap();
        drop(f);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let got = lookup_password(&path, "h", 5432, "d", "u");
        assert_eq!(got.as_ref().map(Secret::expose), Some("secret-pw"));

        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                lookup_password(&path, "h", 5432, "d", "u"),
                None,
                "{mode:o}"
            );
        }

        assert_eq!(
            lookup_password(&dir.path().join("missing"), "h", 5432, "d", "u"),
            None
        );
        assert_eq!(lookup_password(dir.path(), "h", 5432, "d", "u"), None);
    }
}
