//! The `postgres://` / `postgresql://` URL form of a connection string.
//!
//! `postgresql://[user[:password]@][host[:port][,host[:port]...]][/dbname][?key=value&...]`
//!
//! Every part is percent-decoded (strictly: a `%` must be followed by two
//! hex digits, `%00` is refused and the result must be UTF-8). IPv6 hosts
//! go in brackets, `[::1]:5432`; a Unix-socket directory goes
//! percent-encoded (`%2Fvar%2Frun%2Fpostgresql`) or as a `host` query
//! parameter. Query parameters take the same keywords as the `key=value`
//! form, and override the parts before them; libpq's `ssl=true` is
//! `sslmode=require`.
//!
//! The user part ends at the last `@` before the first `/`, so an
//! unencoded `@` or `:` in the password works. What cannot be told apart
//! is refused, with a message quoting nothing of the URL, rather than
//! guessed (a wrong guess would show part of the password as a host, port
//! or database name): an `@` anywhere after the first `/` (an unencoded
//! `/` in the password, or an `@` in the database name or query), and a
//! `?` in the user name (`postgres://h?password=a@b`). After a `password`
//! query parameter, an invalid parameter (maybe the rest of a password
//! with an unencoded `&`) is refused without being quoted.

use super::conn_config::ConnConfig;
use super::redact::{embedded_password, is_password_key};
use super::{ConfigError, DEFAULT_PORT};

/// Why a URL is refused when its user name and password cannot be told
/// apart from the rest. Quotes nothing of the URL.
pub(crate) const AMBIGUOUS_USER_PART: &str = "a character in the URL's user name or password \
     must be percent-encoded (a '/' as %2F, an '@' as %40, a ':' in the user name as %3A, a '?' \
     in the user name as %3F), and so must an '@' in the database name or a query parameter (%40)";

/// Why a query parameter after a password parameter is refused. Quotes
/// nothing: the parameter may be the rest of the password.
pub(crate) const INVALID_AFTER_PASSWORD: &str =
    "invalid URL query parameter after the password; percent-encode any '&' in the password as %26";

/// Parses a URL (with its scheme) into `cfg`. Never panics.
pub(crate) fn parse_into(s: &str, cfg: &mut ConnConfig) -> Result<(), ConfigError> {
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .ok_or_else(|| invalid("a URL must start with postgresql:// or postgres://".into()))?;

    // User and password: up to the last '@' before the first '/', if no
    // '@' comes later.
    let first_slash = rest.find('/').unwrap_or(rest.len());
    if rest[first_slash..].contains('@') {
        return Err(invalid(AMBIGUOUS_USER_PART.into()));
    }
    let rest = match rest[..first_slash].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if user.contains('?') {
                return Err(invalid(AMBIGUOUS_USER_PART.into()));
            }
            let user = decode(user).map_err(|why| {
                invalid(format!(
                    "invalid percent-encoding in the user name {user:?}: {why}"
                ))
            })?;
            refuse_embedded_password(&user, "the URL's user name")?;
            cfg.set("user", &user)?;
            if let Some(p) = password {
                let p = decode(p).map_err(|why| {
                    invalid(format!("invalid percent-encoding in the password: {why}"))
                })?;
                cfg.set("password", &p)?;
            }
            &rest[at + 1..]
        }
        None => rest,
    };

    // Hosts and ports: up to the first '/' or '?'.
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    parse_hosts(&rest[..end], cfg)?;
    let mut rest = &rest[end..];

    // Database: from '/' up to '?'.
    if let Some(path) = rest.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        let raw = &path[..end];
        let dbname = decode(raw).map_err(|why| {
            invalid(format!(
                "invalid percent-encoding in the database name {raw:?}: {why}"
            ))
        })?;
        refuse_embedded_password(&dbname, "the URL's database name")?;
        cfg.set("dbname", &dbname)?;
        rest = &path[end..];
    }

    // Query parameters.
    if let Some(query) = rest.strip_prefix('?') {
        let mut after_password = false;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let is_password = set_query_param(param, cfg).map_err(|e| {
                if after_password {
                    invalid(INVALID_AFTER_PASSWORD.into())
                } else {
                    e
                }
            })?;
            after_password |= is_password;
        }
    }
    Ok(())
}

/// Sets one `key=value` query parameter; tells whether it is a password.
fn set_query_param(param: &str, cfg: &mut ConnConfig) -> Result<bool, ConfigError> {
    let Some((raw_key, raw_value)) = param.split_once('=') else {
        let key = decode(param).unwrap_or_default();
        let shown = if key == "password" { "password" } else { param };
        return Err(invalid(format!(
            "URL query parameter {shown:?} has no \"=\" and value"
        )));
    };
    let key = decode(raw_key).map_err(|why| {
        invalid(format!(
            "invalid percent-encoding in the URL query parameter {raw_key:?}: {why}"
        ))
    })?;
    let value = decode(raw_value).map_err(|why| {
        if key == "password" {
            invalid(format!("invalid percent-encoding in the password: {why}"))
        } else if is_password_key(&key) {
            invalid(format!(
                "invalid percent-encoding in the value of URL query parameter {key:?}: {why}"
            ))
        } else {
            invalid(format!(
                "invalid percent-encoding in the value {raw_value:?} of URL query parameter {key:?}: {why}"
            ))
        }
    })?;
    if !is_password_key(&key) && embedded_password(&value).is_some() {
        // `?sslmode=requirepassword=pw`: a missing '&' made the password
        // part of another value.
        return Err(invalid(format!(
            "the value of URL query parameter {key:?} holds \"password=\": is an '&' missing before it?"
        )));
    }
    match (key.as_str(), value.as_str()) {
        ("ssl", "true") => cfg.set("sslmode", "require")?,
        _ => cfg.set(&key, &value)?,
    }
    Ok(is_password_key(&key))
}

/// Parses `host[:port][,host[:port]...]`, IPv6 hosts in brackets.
fn parse_hosts(list: &str, cfg: &mut ConnConfig) -> Result<(), ConfigError> {
    if list.is_empty() {
        return Ok(());
    }
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in list.split(',') {
        let (raw_host, port) = if let Some(inner) = entry.strip_prefix('[') {
            let close = inner.find(']').ok_or_else(|| {
                invalid(format!(
                    "missing \"]\" after the IPv6 address in URL host {entry:?}"
                ))
            })?;
            let after = &inner[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => {
                    return Err(invalid(format!(
                        "unexpected {after:?} after the IPv6 address in URL host {entry:?}"
                    )));
                }
            };
            (&inner[..close], port)
        } else {
            match entry.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (entry, None),
            }
        };
        let host = decode(raw_host).map_err(|why| {
            invalid(format!(
                "invalid percent-encoding in URL host {raw_host:?}: {why}"
            ))
        })?;
        refuse_embedded_password(&host, "a URL host")?;
        if host.contains(',') {
            // Written back as `host=a,b`, it would be two hosts.
            return Err(invalid(format!(
                "URL host {raw_host:?} holds an encoded \",\": separate hosts with a plain \",\""
            )));
        }
        let port = match port.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| {
                ConfigError::InvalidValue {
                    key: "port".into(),
                    value: p.to_owned(),
                    expected: "a port number (1-65535)".into(),
                }
            })?),
        };
        hosts.push(host);
        ports.push(port);
    }
    if hosts.len() > 1 && hosts.iter().any(String::is_empty) {
        return Err(invalid(format!(
            "empty host in the URL's host list {list:?}"
        )));
    }
    if !hosts[0].is_empty() {
        cfg.hosts = hosts;
    }
    if ports.iter().any(Option::is_some) {
        cfg.ports = ports
            .into_iter()
            .map(|p| p.unwrap_or(DEFAULT_PORT))
            .collect();
    }
    Ok(())
}

/// Refuses a decoded URL part holding `password=`: a mistyped separator
/// made a password part of it (`postgres://u@h@password=pw`), and the part
/// would be shown. Quotes nothing.
fn refuse_embedded_password(part: &str, what: &str) -> Result<(), ConfigError> {
    match embedded_password(part) {
        Some(_) => Err(invalid(format!(
            "{what} holds \"password=\": is a '?' or '&' missing or mistyped before it?"
        ))),
        None => Ok(()),
    }
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid { reason }
}

/// Strict percent-decoding.
pub(crate) fn decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err("\"%\" must be followed by two hex digits");
            };
            let byte = (hi * 16 + lo) as u8;
            if byte == 0 {
                return Err("%00 is not allowed");
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded text is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        assert_eq!(decode("a%20b%2Fc%40").as_deref(), Ok("a b/c@"));
        assert_eq!(decode("%e2%82%ac").as_deref(), Ok("\u{20ac}"));
        assert_eq!(decode("plain+plus").as_deref(), Ok("plain+plus"));
        assert!(decode("%").is_err());
        assert!(decode("%4").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%00").is_err());
        assert!(decode("%ff").is_err());
        assert!(decode("%e2%82").is_err());
    }
}
