//! [`ConnConfig`]: one validated set of libpq connection parameters.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::conninfo;
use super::redact::{embedded_password, is_password_key, mask_embedded_password};
use super::secret::{MASK, Secret};
use super::session::{ChannelBinding, LoadBalanceHosts, TargetSessionAttrs};
use super::sslmode::SslMode;
use super::url;
use super::{ConfigError, DEFAULT_PORT};

/// Where to connect and how: the parameters of a libpq connection string.
///
/// Parsed with [`ConnConfig::parse`] (or `str::parse`) from either form
/// libpq accepts:
///
/// - `key=value` pairs separated by whitespace, values single-quoted when
///   empty or holding spaces, with `\'` and `\\` escapes (`password='it\'s'`),
///   e.g. `host=db1 port=5432 dbname=app user=pgmig`;
/// - a URL, `postgres://user:password@host1:5432,host2:5433/dbname?sslmode=require`,
///   percent-encoded, IPv6 hosts in brackets (`[::1]`), any keyword as a
///   query parameter (`ssl=true` means `sslmode=require`).
///
/// Supported keywords: `host`, `hostaddr`, `port`, `dbname`, `user`,
/// `password`, `passfile`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
/// `connect_timeout`, `application_name`, `options`,
/// `target_session_attrs` (`any`, `read-write`, `read-only`),
/// `channel_binding`, `load_balance_hosts`, and the TCP settings
/// `keepalives`, `keepalives_idle`, `keepalives_interval`, `keepalives_count`
/// and `tcp_user_timeout` (milliseconds, as in libpq), which are handed to the
/// driver. Any other keyword is an error naming it. As with libpq, a later
/// occurrence of a keyword wins, and an empty value means "not set".
///
/// A parsed config holds only what the string said; [`ConnConfig::resolve`]
/// adds the `PG*` environment variables, libpq's defaults and a password
/// from the passfile. [`ConnConfig::connect`] and [`ConnConfig::pool`]
/// resolve by themselves.
///
/// `Display` writes a `key=value` string without the password (parsing it
/// back gives the same config, less the password); `Debug` shows the
/// password as `********`. It deserializes (serde) from a connection
/// string, and does not serialize.
#[derive(Clone, PartialEq, Default)]
pub struct ConnConfig {
    pub(crate) hosts: Vec<String>,
    pub(crate) hostaddrs: Vec<IpAddr>,
    pub(crate) ports: Vec<u16>,
    pub(crate) dbname: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) passfile: Option<String>,
    pub(crate) sslmode: Option<SslMode>,
    pub(crate) sslrootcert: Option<String>,
    pub(crate) sslcert: Option<String>,
    pub(crate) sslkey: Option<String>,
    pub(crate) connect_timeout: Option<u64>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) target_session_attrs: Option<TargetSessionAttrs>,
    pub(crate) channel_binding: Option<ChannelBinding>,
    pub(crate) load_balance_hosts: Option<LoadBalanceHosts>,
    pub(crate) keepalives: Option<bool>,
    pub(crate) keepalives_idle: Option<u64>,
    pub(crate) keepalives_interval: Option<u64>,
    pub(crate) keepalives_count: Option<u32>,
    pub(crate) tcp_user_timeout: Option<u64>,
}

/// The keywords [`ConnConfig::set`] accepts.
pub(crate) const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "keepalives_retries",
    "tcp_user_timeout",
];

/// libpq keywords pgmig knows but does not support, with the reason given
/// to the user.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "service",
        "connection service files are not read; give the parameters directly",
    ),
    (
        "servicefile",
        "connection service files are not read; give the parameters directly",
    ),
    (
        "sslpassword",
        "encrypted client keys are not supported; decrypt the key file",
    ),
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    ("sslsni", "SNI is always sent for host names"),
    ("sslcompression", "TLS compression is not supported"),
    ("sslcertmode", "use sslcert and sslkey"),
    (
        "ssl_min_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    (
        "ssl_max_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    (
        "sslnegotiation",
        "only the standard negotiation (an SSLRequest first) is supported",
    ),
    ("gssencmode", "GSSAPI is not supported"),
    ("gsslib", "GSSAPI is not supported"),
    ("gssdelegation", "GSSAPI is not supported"),
    ("krbsrvname", "Kerberos is not supported"),
    ("requirepeer", "peer credential checks are not supported"),
    (
        "require_auth",
        "authentication methods cannot be restricted",
    ),
    (
        "replication",
        "replication connections are not made through a connection string",
    ),
    ("client_encoding", "the client encoding is always UTF8"),
    ("fallback_application_name", "use application_name"),
    ("target_server_type", "use target_session_attrs"),
    (
        "max_protocol_version",
        "the protocol version is chosen by the driver",
    ),
    (
        "min_protocol_version",
        "the protocol version is chosen by the driver",
    ),
];

impl ConnConfig {
    /// Parses a libpq `key=value` string or a `postgres://` /
    /// `postgresql://` URL.
    ///
    /// Never panics; errors name the offending keyword or part and never
    /// quote a password. The empty string is a valid, empty config.
    pub fn parse(s: &str) -> Result<ConnConfig, ConfigError> {
        let trimmed = s.trim_start();
        let mut cfg = ConnConfig::default();
        if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            url::parse_into(trimmed.trim_end(), &mut cfg)?;
        } else {
            for pair in conninfo::tokenize(s)? {
                // `port=54password=pw`: a missing space made the password
                // part of another value, which errors and `Display` show.
                if !pair.quoted
                    && !is_password_key(&pair.key)
                    && embedded_password(&pair.value).is_some()
                {
                    // Right after an unquoted password the "key" may be the
                    // rest of that password: name no key then.
                    let reason = if pair.after_password {
                        "a value after the password holds \"password=\"; quote a password that \
                         holds spaces: password='...'"
                            .to_owned()
                    } else {
                        format!(
                            "the value of {:?} holds \"password=\": is a space missing before it? \
                             (quote the value if it is meant)",
                            conninfo::mask_credentials(&pair.key, "")
                        )
                    };
                    return Err(ConfigError::Invalid { reason });
                }
                cfg.set(&pair.key, &pair.value).map_err(|e| match e {
                    // The "keyword" may be the rest of an unquoted password.
                    ConfigError::UnknownOption { .. } if pair.after_password => {
                        ConfigError::Invalid {
                            reason: "unknown keyword after the password; quote a password \
                                     that holds spaces: password='...'"
                                .into(),
                        }
                    }
                    e => e,
                })?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets one libpq keyword, as if it came later in the connection string.
    ///
    /// An empty value unsets the keyword. Errors as for [`ConnConfig::parse`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if value.is_empty() {
            return self.unset(key);
        }
        let invalid = |expected: &str| ConfigError::InvalidValue {
            key: key.to_owned(),
            value: mask_embedded_password(value),
            expected: expected.to_owned(),
        };
        match key {
            "host" => {
                let mut hosts = Vec::new();
                for h in value.split(',') {
                    if h.is_empty() {
                        return Err(invalid(
                            "a comma-separated list of non-empty host names or socket directories",
                        ));
                    }
                    hosts.push(h.to_owned());
                }
                self.hosts = hosts;
            }
            "hostaddr" => {
                self.hostaddrs = value
                    .split(',')
                    .map(|a| a.parse::<IpAddr>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid("a comma-separated list of numeric IP addresses"))?;
            }
            "port" => {
                self.ports = value
                    .split(',')
                    .map(|p| {
                        if p.is_empty() {
                            Some(DEFAULT_PORT)
                        } else {
                            parse_port(p)
                        }
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| invalid("a comma-separated list of port numbers (1-65535)"))?;
            }
            "dbname" => self.dbname = Some(value.to_owned()),
            "user" => self.user = Some(value.to_owned()),
            "password" => self.password = Some(Secret::new(value)),
            "passfile" => self.passfile = Some(value.to_owned()),
            "sslmode" => {
                self.sslmode = Some(value.parse().map_err(|_| {
                    invalid("disable, allow, prefer, require, verify-ca or verify-full")
                })?)
            }
            "sslrootcert" => self.sslrootcert = Some(value.to_owned()),
            "sslcert" => self.sslcert = Some(value.to_owned()),
            "sslkey" => self.sslkey = Some(value.to_owned()),
            "connect_timeout" => {
                // libpq: zero or negative means wait forever.
                let secs = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| invalid("a whole number of seconds"))?;
                self.connect_timeout = Some(u64::try_from(secs).unwrap_or(0));
            }
            "application_name" => self.application_name = Some(value.to_owned()),
            "options" => self.options = Some(value.to_owned()),
            "target_session_attrs" => {
                self.target_session_attrs = Some(match TargetSessionAttrs::from_keyword(value) {
                    Some(v) => v,
                    None if matches!(value, "primary" | "standby" | "prefer-standby") => {
                        return Err(ConfigError::UnsupportedOption {
                            key: format!("target_session_attrs={value}"),
                            reason: "the driver supports only any, read-write and read-only".into(),
                        });
                    }
                    None => return Err(invalid("any, read-write or read-only")),
                })
            }
            "channel_binding" => {
                self.channel_binding = Some(
                    ChannelBinding::from_keyword(value)
                        .ok_or_else(|| invalid("disable, prefer or require"))?,
                )
            }
            "load_balance_hosts" => {
                self.load_balance_hosts = Some(
                    LoadBalanceHosts::from_keyword(value)
                        .ok_or_else(|| invalid("disable or random"))?,
                )
            }
            "keepalives" => {
                let n = value.trim().parse::<i64>().map_err(|_| invalid("0 or 1"))?;
                self.keepalives = Some(n != 0);
            }
            "keepalives_idle" => {
                self.keepalives_idle =
                    Some(parse_secs(value).ok_or_else(|| invalid("a whole number of seconds"))?)
            }
            "keepalives_interval" => {
                self.keepalives_interval =
                    Some(parse_secs(value).ok_or_else(|| invalid("a whole number of seconds"))?)
            }
            "keepalives_count" | "keepalives_retries" => {
                self.keepalives_count = Some(
                    value
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| invalid("a whole number"))?,
                )
            }
            "tcp_user_timeout" => {
                self.tcp_user_timeout = Some(
                    parse_secs(value).ok_or_else(|| invalid("a whole number of milliseconds"))?,
                )
            }
            _ => return Err(unknown_key(key)),
        }
        Ok(())
    }

    /// Unsets one keyword (an empty value in a connection string).
    fn unset(&mut self, key: &str) -> Result<(), ConfigError> {
        match key {
            "host" => self.hosts.clear(),
            "hostaddr" => self.hostaddrs.clear(),
            "port" => self.ports.clear(),
            "dbname" => self.dbname = None,
            "user" => self.user = None,
            "password" => self.password = None,
            "passfile" => self.passfile = None,
            "sslmode" => self.sslmode = None,
            "sslrootcert" => self.sslrootcert = None,
            "sslcert" => self.sslcert = None,
            "sslkey" => self.sslkey = None,
            "connect_timeout" => self.connect_timeout = None,
            "application_name" => self.application_name = None,
            "options" => self.options = None,
            "target_session_attrs" => self.target_session_attrs = None,
            "channel_binding" => self.channel_binding = None,
            "load_balance_hosts" => self.load_balance_hosts = None,
            "keepalives" => self.keepalives = None,
            "keepalives_idle" => self.keepalives_idle = None,
            "keepalives_interval" => self.keepalives_interval = None,
            "keepalives_count" | "keepalives_retries" => self.keepalives_count = None,
            "tcp_user_timeout" => self.tcp_user_timeout = None,
            _ => return Err(unknown_key(key)),
        }
        Ok(())
    }

    /// Checks that the numbers of hosts, hostaddrs and ports agree.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::Invalid { reason });
        let (h, a, p) = (self.hosts.len(), self.hostaddrs.len(), self.ports.len());
        if h > 0 && a > 0 && h != a {
            return invalid(format!(
                "{h} hosts but {a} hostaddrs: give one hostaddr per host, or none"
            ));
        }
        let n = h.max(a);
        if p > 1 && p != n {
            return invalid(format!(
                "{p} ports for {n} hosts: give one port for all hosts, or one per host"
            ));
        }
        Ok(())
    }

    /// The host names or Unix-socket directories (those start with `/`),
    /// in the order they are tried; empty when not set.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The first host, if any.
    pub fn host(&self) -> Option<&str> {
        self.hosts.first().map(String::as_str)
    }

    /// The numeric addresses (`hostaddr`), one per host when both are given.
    pub fn hostaddrs(&self) -> &[IpAddr] {
        &self.hostaddrs
    }

    /// The ports: none (5432), one for all hosts, or one per host.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The port of the first host; 5432 when not set.
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or(DEFAULT_PORT)
    }

    /// The port used for the `i`-th host: its own, the single port given, or 5432.
    pub fn port_for(&self, i: usize) -> u16 {
        match self.ports.as_slice() {
            [] => DEFAULT_PORT,
            [p] => *p,
            ps => ps.get(i).copied().unwrap_or(DEFAULT_PORT),
        }
    }

    /// The database name, if set (after [`ConnConfig::resolve`], the user name by default).
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The user name, if set (after [`ConnConfig::resolve`], the OS user by default).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, if one was given or found. Printing it prints `********`.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The passfile named by `passfile` (or `PGPASSFILE` after resolving).
    pub fn passfile(&self) -> Option<&Path> {
        self.passfile.as_deref().map(Path::new)
    }

    /// The TLS mode; `prefer` when not set.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode.unwrap_or_default()
    }

    /// The root certificate file for verifying the server, or `system` for
    /// the bundled Mozilla roots; `None` when not set.
    pub fn sslrootcert(&self) -> Option<&str> {
        self.sslrootcert.as_deref()
    }

    /// The client certificate and key files for TLS client authentication.
    pub fn ssl_client_cert(&self) -> Option<(&Path, &Path)> {
        match (&self.sslcert, &self.sslkey) {
            (Some(c), Some(k)) => Some((Path::new(c), Path::new(k))),
            _ => None,
        }
    }

    /// The time limit for each connection attempt; `None` (wait as long as
    /// the OS does) when not set or zero.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
    }

    /// The `application_name` reported to the server, if set.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The server `options` (e.g. `-c statement_timeout=0`), if set.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// Which sessions are acceptable; `any` when not set.
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs.unwrap_or_default()
    }

    /// Whether channel binding is used; `prefer` when not set.
    pub fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding.unwrap_or_default()
    }

    /// The order hosts are tried in; `disable` (as given) when not set.
    pub fn load_balance_hosts(&self) -> LoadBalanceHosts {
        self.load_balance_hosts.unwrap_or_default()
    }

    /// Whether the connections go through Unix sockets only.
    pub fn is_unix_socket_only(&self) -> bool {
        self.hostaddrs.is_empty()
            && !self.hosts.is_empty()
            && self.hosts.iter().all(|h| is_unix_socket(h))
    }

    /// This config with another database: how to reach a sibling database
    /// on the same server(s).
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> ConnConfig {
        self.dbname = Some(dbname.into()).filter(|d| !d.is_empty());
        self
    }

    /// This config with another user name.
    pub fn with_user(mut self, user: impl Into<String>) -> ConnConfig {
        self.user = Some(user.into()).filter(|u| !u.is_empty());
        self
    }

    /// This config with a password (replacing any other).
    pub fn with_password(mut self, password: Secret) -> ConnConfig {
        self.password = Some(password);
        self
    }

    /// This config with the `application_name` the server reports in
    /// `pg_stat_activity`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> ConnConfig {
        self.application_name = Some(name.into()).filter(|n| !n.is_empty());
        self
    }

    /// This config with another TLS mode.
    pub fn with_sslmode(mut self, mode: SslMode) -> ConnConfig {
        self.sslmode = Some(mode);
        self
    }

    /// This config with the server `options` (e.g. `-c statement_timeout=0`).
    pub fn with_options(mut self, options: impl Into<String>) -> ConnConfig {
        self.options = Some(options.into()).filter(|o| !o.is_empty());
        self
    }

    /// This config with one host and port instead of the ones it had
    /// (`hostaddr` is dropped).
    pub fn with_host(mut self, host: impl Into<String>, port: u16) -> ConnConfig {
        self.hosts = vec![host.into()];
        self.hostaddrs.clear();
        self.ports = vec![port];
        self
    }

    /// The connection string without the password, for logs and messages:
    /// the same as `Display`.
    pub fn redacted(&self) -> String {
        self.to_string()
    }

    /// The `(keyword, value)` pairs that are set, in a fixed order, without
    /// the password.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let join = |items: Vec<String>| items.join(",");
        if !self.hosts.is_empty() {
            out.push(("host", self.hosts.join(",")));
        }
        if !self.hostaddrs.is_empty() {
            out.push((
                "hostaddr",
                join(self.hostaddrs.iter().map(ToString::to_string).collect()),
            ));
        }
        if !self.ports.is_empty() {
            out.push((
                "port",
                join(self.ports.iter().map(ToString::to_string).collect()),
            ));
        }
        let mut opt = |key: &'static str, value: Option<String>| {
            if let Some(v) = value {
                out.push((key, v));
            }
        };
        opt("dbname", self.dbname.clone());
        opt("user", self.user.clone());
        opt("passfile", self.passfile.clone());
        opt("sslmode", self.sslmode.map(|m| m.as_str().to_owned()));
        opt("sslrootcert", self.sslrootcert.clone());
        opt("sslcert", self.sslcert.clone());
        opt("sslkey", self.sslkey.clone());
        opt(
            "connect_timeout",
            self.connect_timeout.map(|s| s.to_string()),
        );
        opt("application_name", self.application_name.clone());
        opt("options", self.options.clone());
        opt(
            "target_session_attrs",
            self.target_session_attrs.map(|v| v.as_str().to_owned()),
        );
        opt(
            "channel_binding",
            self.channel_binding.map(|v| v.as_str().to_owned()),
        );
        opt(
            "load_balance_hosts",
            self.load_balance_hosts.map(|v| v.as_str().to_owned()),
        );
        opt(
            "keepalives",
            self.keepalives.map(|k| u8::from(k).to_string()),
        );
        opt(
            "keepalives_idle",
            self.keepalives_idle.map(|s| s.to_string()),
        );
        opt(
            "keepalives_interval",
            self.keepalives_interval.map(|s| s.to_string()),
        );
        opt(
            "keepalives_count",
            self.keepalives_count.map(|s| s.to_string()),
        );
        opt(
            "tcp_user_timeout",
            self.tcp_user_timeout.map(|s| s.to_string()),
        );
        out
    }
}

/// Whether a host names a Unix-socket directory rather than a TCP host.
pub(crate) fn is_unix_socket(host: &str) -> bool {
    host.starts_with('/')
}

fn parse_port(s: &str) -> Option<u16> {
    s.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

fn parse_secs(s: &str) -> Option<u64> {
    // libpq: zero or negative means "system default".
    s.trim()
        .parse::<i64>()
        .ok()
        .map(|n| u64::try_from(n).unwrap_or(0))
}

fn unknown_key(key: &str) -> ConfigError {
    match UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        Some((k, reason)) => ConfigError::UnsupportedOption {
            key: (*k).to_owned(),
            reason: (*reason).to_owned(),
        },
        None => ConfigError::UnknownOption {
            key: conninfo::mask_credentials(key, ""),
        },
    }
}

impl FromStr for ConnConfig {
    type Err = ConfigError;

    /// Same as [`ConnConfig::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnConfig::parse(s)
    }
}

/// Deserializes from a connection string in either form (as
/// [`ConnConfig::parse`]). There is deliberately no `Serialize`: writing the
/// config back would either leak the password or silently drop it.
impl<'de> serde::Deserialize<'de> for ConnConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(deserializer)?;
        ConnConfig::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A libpq `key=value` string without the password; parsing it back gives
/// the same config less the password.
impl fmt::Display for ConnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.pairs().into_iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={}", conninfo::quote(&value))?;
        }
        Ok(())
    }
}

/// Shows every parameter; the password as `********`.
impl fmt::Debug for ConnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConnConfig");
        for (key, value) in self.pairs() {
            d.field(key, &value);
        }
        if self.password.is_some() {
            d.field("password", &format_args!("{MASK}"));
        }
        d.finish()
    }
}
