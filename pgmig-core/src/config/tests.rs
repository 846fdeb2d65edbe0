//! Tests of the whole module: parsing both forms, environment precedence,
//! resolving, the driver config, redaction, and properties.

use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::env::default_host;
use super::*;

fn parse(s: &str) -> ConnConfig {
    ConnConfig::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn password(cfg: &ConnConfig) -> Option<&str> {
    cfg.password().map(Secret::expose)
}

#[test]
fn parses_key_value_strings() {
    // (input, canonical Display, password)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("", "", None),
        ("  \t ", "", None),
        (
            "host=localhost port=5432 dbname=app user=alice",
            "host=localhost port=5432 dbname=app user=alice",
            None,
        ),
        (
            "  dbname = app   user= alice host =h ",
            "host=h dbname=app user=alice",
            None,
        ),
        ("password='a b' host=h", "host=h", Some("a b")),
        (r"password='it\'s \\ here'", "", Some(r"it's \ here")),
        ("password=plain", "", Some("plain")),
        (
            "host=h1,h2 port=5432,5433",
            "host=h1,h2 port=5432,5433",
            None,
        ),
        ("host=a,b port=,5433", "host=a,b port=5432,5433", None),
        ("host=/var/run/postgresql", "host=/var/run/postgresql", None),
        (
            "hostaddr=127.0.0.1 host=db",
            "host=db hostaddr=127.0.0.1",
            None,
        ),
        ("hostaddr=::1,10.0.0.1", "hostaddr=::1,10.0.0.1", None),
        (
            "sslmode=verify-full sslrootcert=/etc/ca.pem",
            "sslmode=verify-full sslrootcert=/etc/ca.pem",
            None,
        ),
        (
            "connect_timeout=10 application_name='my app' options='-c statement_timeout=0'",
            "connect_timeout=10 application_name='my app' options='-c statement_timeout=0'",
            None,
        ),
        ("connect_timeout=-5", "connect_timeout=0", None),
        (
            "target_session_attrs=read-write",
            "target_session_attrs=read-write",
            None,
        ),
        (
            "channel_binding=require load_balance_hosts=random",
            "channel_binding=require load_balance_hosts=random",
            None,
        ),
        (
            "keepalives=0 keepalives_idle=30 keepalives_interval=5 keepalives_retries=3 tcp_user_timeout=1500",
            "keepalives=0 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=1500",
            None,
        ),
        ("host=a host=b", "host=b", None),
        ("host=a host=", "", None),
        ("password=x password=''", "", None),
        (r"dbname='it\'s'", r"dbname='it\'s'", None),
        ("passfile=/home/u/.pgpass", "passfile=/home/u/.pgpass", None),
        (
            "sslcert=/c.pem sslkey=/k.pem",
            "sslcert=/c.pem sslkey=/k.pem",
            None,
        ),
    ];
    for (input, display, pw) in cases {
        let cfg = parse(input);
        assert_eq!(cfg.to_string(), *display, "{input:?}");
        assert_eq!(password(&cfg), *pw, "{input:?}");
    }
}

#[test]
fn parses_urls() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("postgres://", "", None),
        ("postgresql://localhost", "host=localhost", None),
        (
            "postgresql://alice:s%40cret@db.example.com:6543/my%20db?sslmode=require&application_name=pgmig",
            "host=db.example.com port=6543 dbname='my db' user=alice sslmode=require application_name=pgmig",
            Some("s@cret"),
        ),
        (
            "postgres://u@[::1]:5433/db",
            "host=::1 port=5433 dbname=db user=u",
            None,
        ),
        (
            "postgres://[2001:db8::1]/db",
            "host=2001:db8::1 dbname=db",
            None,
        ),
        (
            "postgres://h1:5432,h2:5433/db",
            "host=h1,h2 port=5432,5433 dbname=db",
            None,
        ),
        (
            "postgres://h1,h2:5433/db",
            "host=h1,h2 port=5432,5433 dbname=db",
            None,
        ),
        (
            "postgres://h1,[::1]:6000",
            "host=h1,::1 port=5432,6000",
            None,
        ),
        (
            "postgres://%2Fvar%2Frun%2Fpostgresql/db",
            "host=/var/run/postgresql dbname=db",
            None,
        ),
        (
            "postgresql:///mydb?host=/tmp&port=5433",
            "host=/tmp port=5433 dbname=mydb",
            None,
        ),
        ("postgres://:5433", "port=5433", None),
        ("postgres://h:", "host=h", None),
        (
            "postgres://u:p@w@h/db",
            "host=h dbname=db user=u",
            Some("p@w"),
        ),
        ("postgres://u:p:w@h", "host=h user=u", Some("p:w")),
        ("postgres://u:@h", "host=h user=u", None),
        ("postgres://@h", "host=h", None),
        (
            "postgres://h/db?ssl=true",
            "host=h dbname=db sslmode=require",
            None,
        ),
        ("postgres://h?dbname=x&dbname=y", "host=h dbname=y", None),
        ("postgres://h/db?", "host=h dbname=db", None),
        (
            "postgres://h/db?&&sslmode=disable&",
            "host=h dbname=db sslmode=disable",
            None,
        ),
        ("postgres://h/db?host=other", "host=other dbname=db", None),
        (
            "postgres://h/db?password=p%20w",
            "host=h dbname=db",
            Some("p w"),
        ),
        (
            "postgres://h/db?options=-c%20search_path%3Dx",
            "host=h dbname=db options='-c search_path=x'",
            None,
        ),
        (
            "postgres://h/d%C3%A9j%C3%A0",
            "host=h dbname=d\u{e9}j\u{e0}",
            None,
        ),
        ("  postgres://h/db  ", "host=h dbname=db", None),
    ];
    for (input, display, pw) in cases {
        let cfg = parse(input);
        assert_eq!(cfg.to_string(), *display, "{input:?}");
        assert_eq!(password(&cfg), *pw, "{input:?}");
    }
}

#[test]
fn rejects_malformed_strings() {
    let cases: &[(&str, &str)] = &[
        (
            "host",
            r#"invalid connection string: missing "=" after "host""#,
        ),
        ("foo=bar", r#"invalid connection option "foo""#),
        ("Host=h", r#"invalid connection option "Host""#),
        (
            "port=abc",
            r#"invalid value "abc" for connection option "port": expected a comma-separated list of port numbers (1-65535)"#,
        ),
        (
            "port=0",
            r#"invalid value "0" for connection option "port": expected a comma-separated list of port numbers (1-65535)"#,
        ),
        (
            "port=65536",
            r#"invalid value "65536" for connection option "port": expected a comma-separated list of port numbers (1-65535)"#,
        ),
        (
            "sslmode=bogus",
            r#"invalid value "bogus" for connection option "sslmode": expected disable, allow, prefer, require, verify-ca or verify-full"#,
        ),
        (
            "hostaddr=db.example.com",
            r#"invalid value "db.example.com" for connection option "hostaddr": expected a comma-separated list of numeric IP addresses"#,
        ),
        (
            "host=a,,b",
            r#"invalid value "a,,b" for connection option "host": expected a comma-separated list of non-empty host names or socket directories"#,
        ),
        (
            "connect_timeout=soon",
            r#"invalid value "soon" for connection option "connect_timeout": expected a whole number of seconds"#,
        ),
        (
            "target_session_attrs=primary",
            r#"connection option "target_session_attrs=primary" is not supported: the driver supports only any, read-write and read-only"#,
        ),
        (
            "target_session_attrs=whatever",
            r#"invalid value "whatever" for connection option "target_session_attrs": expected any, read-write or read-only"#,
        ),
        (
            "service=foo",
            r#"connection option "service" is not supported: connection service files are not read; give the parameters directly"#,
        ),
        (
            "gssencmode=disable",
            r#"connection option "gssencmode" is not supported: GSSAPI is not supported"#,
        ),
        (
            "host=a,b,c port=1,2",
            "invalid connection string: 2 ports for 3 hosts: give one port for all hosts, or one per host",
        ),
        (
            "host=a,b hostaddr=127.0.0.1",
            "invalid connection string: 2 hosts but 1 hostaddrs: give one hostaddr per host, or none",
        ),
        (
            "password=my secret",
            "invalid connection string: text without \"=\" after the password; quote a password that holds spaces: password='...'",
        ),
        (
            "password=my secret=x",
            "invalid connection string: unknown keyword after the password; quote a password that holds spaces: password='...'",
        ),
        (
            // The "key" after an unquoted password is part of it: not named.
            "password=ab cd=efpassword=gh",
            "invalid connection string: a value after the password holds \"password=\"; quote a password that holds spaces: password='...'",
        ),
        (
            "postgres://h:abc/db",
            r#"invalid value "abc" for connection option "port": expected a port number (1-65535)"#,
        ),
        (
            "postgres://[::1/db",
            r#"invalid connection string: missing "]" after the IPv6 address in URL host "[::1""#,
        ),
        (
            "postgres://[::1]x/db",
            r#"invalid connection string: unexpected "x" after the IPv6 address in URL host "[::1]x""#,
        ),
        (
            "postgres://u:p%zz@h",
            r#"invalid connection string: invalid percent-encoding in the password: "%" must be followed by two hex digits"#,
        ),
        (
            "postgres://u%ff@h",
            r#"invalid connection string: invalid percent-encoding in the user name "u%ff": the decoded text is not UTF-8"#,
        ),
        (
            "postgres://h/d%zzb",
            r#"invalid connection string: invalid percent-encoding in the database name "d%zzb": "%" must be followed by two hex digits"#,
        ),
        (
            "postgres://h%00/db",
            r#"invalid connection string: invalid percent-encoding in URL host "h%00": %00 is not allowed"#,
        ),
        ("postgres://h?foo=bar", r#"invalid connection option "foo""#),
        (
            "postgres://h?sslmode",
            r#"invalid connection string: URL query parameter "sslmode" has no "=" and value"#,
        ),
        (
            "postgres://h?password=%zz",
            r#"invalid connection string: invalid percent-encoding in the password: "%" must be followed by two hex digits"#,
        ),
        (
            "postgres://h?port=%zz",
            r#"invalid connection string: invalid percent-encoding in the value "%zz" of URL query parameter "port": "%" must be followed by two hex digits"#,
        ),
        (
            "postgres://a,,b/db",
            r#"invalid connection string: empty host in the URL's host list "a,,b""#,
        ),
        (
            "postgres://a:1,b:2,c:3/db?port=5432,5433",
            "invalid connection string: 2 ports for 3 hosts: give one port for all hosts, or one per host",
        ),
        (
            "http://h/db",
            r#"invalid connection string: missing "=" after "http://h/db""#,
        ),
    ];
    for (input, want) in cases {
        let err = ConnConfig::parse(input).expect_err(input);
        assert_eq!(err.to_string(), *want, "{input:?}");
    }
}

#[test]
fn deserializes_from_a_string() {
    #[derive(serde::Deserialize)]
    struct Section {
        dsn: ConnConfig,
    }
    let s: Section = serde_json::from_str(r#"{"dsn":"postgres://u:pw@h/db"}"#).unwrap();
    assert_eq!(s.dsn.to_string(), "host=h dbname=db user=u");
    assert_eq!(password(&s.dsn), Some("pw"));
    let err = serde_json::from_str::<Section>(r#"{"dsn":"host=h password=pw nope=1"}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("invalid connection string: unknown keyword after the password"),
        "{err}"
    );
    assert!(!err.contains("pw "), "{err}");
}

#[test]
fn from_str_and_set() {
    let cfg: ConnConfig = "host=h".parse().unwrap();
    assert_eq!(cfg.host(), Some("h"));
    let mut cfg = cfg;
    cfg.set("port", "6000").unwrap();
    cfg.set("host", "").unwrap();
    assert_eq!(cfg.to_string(), "port=6000");
    assert!(cfg.set("nope", "1").is_err());
}

#[test]
fn accessors_and_builders() {
    let cfg = parse(
        "host=a,b port=5433,5434 dbname=d user=u password=pw sslmode=require \
         application_name=app connect_timeout=7 options='-c x=y'",
    );
    assert_eq!(cfg.hosts(), ["a", "b"]);
    assert_eq!(cfg.host(), Some("a"));
    assert_eq!(cfg.ports(), [5433, 5434]);
    assert_eq!(cfg.port(), 5433);
    assert_eq!(cfg.port_for(1), 5434);
    assert_eq!(cfg.dbname(), Some("d"));
    assert_eq!(cfg.user(), Some("u"));
    assert!(cfg.has_password());
    assert_eq!(cfg.sslmode(), SslMode::Require);
    assert_eq!(cfg.application_name(), Some("app"));
    assert_eq!(
        cfg.connect_timeout(),
        Some(std::time::Duration::from_secs(7))
    );
    assert_eq!(cfg.options(), Some("-c x=y"));
    assert_eq!(cfg.target_session_attrs(), TargetSessionAttrs::Any);

    let other = cfg
        .clone()
        .with_dbname("postgres")
        .with_application_name("pgmig check");
    assert_eq!(other.dbname(), Some("postgres"));
    assert_eq!(other.application_name(), Some("pgmig check"));
    assert_eq!(other.hosts(), cfg.hosts());
    assert!(other.has_password());
    assert_ne!(other, cfg);

    let moved = cfg.clone().with_host("c", 6000);
    assert_eq!(moved.to_string().split(' ').next(), Some("host=c"));
    assert_eq!(moved.ports(), [6000]);

    let defaults = ConnConfig::default();
    assert_eq!(defaults.port(), 5432);
    assert_eq!(defaults.sslmode(), SslMode::Prefer);
    assert_eq!(defaults.connect_timeout(), None);
    assert!(!defaults.has_password());
    assert_eq!(parse("connect_timeout=0").connect_timeout(), None);
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

#[test]
fn environment_fills_what_the_string_leaves_out() {
    let env = env_of(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGAPPNAME", "envapp"),
        ("PGOPTIONS", "-c a=b"),
        ("PGCONNECT_TIMEOUT", "9"),
        ("PGSSLMODE", "disable"),
        ("PGTARGETSESSIONATTRS", "read-only"),
        ("USER", "osuser"),
    ]);
    let cfg = parse("host=explicit dbname=mine")
        .resolve_with(&env)
        .unwrap();
    assert_eq!(
        cfg.to_string(),
        "host=explicit port=6000 dbname=mine user=envuser sslmode=disable connect_timeout=9 \
         application_name=envapp options='-c a=b' target_session_attrs=read-only"
    );

    // Explicit values win over every variable.
    let cfg = parse("host=h port=1 user=u dbname=d sslmode=require application_name=a")
        .resolve_with(&env)
        .unwrap();
    assert_eq!(cfg.hosts(), ["h"]);
    assert_eq!(cfg.ports(), [1]);
    assert_eq!(cfg.user(), Some("u"));
    assert_eq!(cfg.dbname(), Some("d"));
    assert_eq!(cfg.sslmode(), SslMode::Require);
    assert_eq!(cfg.application_name(), Some("a"));

    // Resolving twice changes nothing.
    assert_eq!(cfg.resolve_with(&env).unwrap(), cfg);
}

#[test]
fn libpq_defaults() {
    let cfg = ConnConfig::default()
        .resolve_with(&env_of(&[("USER", "osuser")]))
        .unwrap();
    assert_eq!(cfg.hosts(), [default_host()]);
    assert_eq!(cfg.ports(), [5432]);
    assert_eq!(cfg.user(), Some("osuser"));
    assert_eq!(cfg.dbname(), Some("osuser"));
    assert_eq!(cfg.sslmode(), SslMode::Prefer);
    assert!(!cfg.has_password());

    let cfg = parse("user=me")
        .resolve_with(&env_of(&[("USER", "osuser")]))
        .unwrap();
    assert_eq!(cfg.dbname(), Some("me"));

    let cfg = ConnConfig::default()
        .resolve_with(&env_of(&[("LOGNAME", "logname")]))
        .unwrap();
    assert_eq!(cfg.user(), Some("logname"));

    let err = ConnConfig::default()
        .resolve_with(&env_of(&[]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no user name to connect as: set user= in the connection string, PGUSER or USER"
    );

    // Empty variables count as unset.
    let cfg = ConnConfig::default()
        .resolve_with(&env_of(&[("USER", "u"), ("PGHOST", ""), ("PGPORT", "")]))
        .unwrap();
    assert_eq!(cfg.ports(), [5432]);

    // hostaddr alone: no default host is added.
    let cfg = parse("hostaddr=127.0.0.1 user=u")
        .resolve_with(&env_of(&[]))
        .unwrap();
    assert!(cfg.hosts().is_empty());
    assert_eq!(cfg.hostaddrs(), ["127.0.0.1".parse::<IpAddr>().unwrap()]);
}

#[test]
fn environment_errors_name_the_variable() {
    let err = ConnConfig::default()
        .resolve_with(&env_of(&[("USER", "u"), ("PGPORT", "fifty")]))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid environment variable PGPORT");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(
        source,
        r#"invalid value "fifty" for connection option "port": expected a comma-separated list of port numbers (1-65535)"#
    );

    let err = ConnConfig::default()
        .resolve_with(&env_of(&[
            ("USER", "u"),
            ("PGHOST", "a,b,c"),
            ("PGPORT", "1,2"),
        ]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: 2 ports for 3 hosts: give one port for all hosts, or one per host"
    );
}

#[test]
fn root_certificate_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_string_lossy().into_owned();
    let root = format!("{home}/.postgresql/root.crt");
    let env = env_of(&[("USER", "u"), ("HOME", &home)]);

    let cfg = parse("sslmode=verify-full").resolve_with(&env).unwrap();
    assert_eq!(cfg.sslrootcert(), Some(root.as_str()));
    let cfg = parse("sslmode=verify-ca sslrootcert=/ca.pem")
        .resolve_with(&env)
        .unwrap();
    assert_eq!(cfg.sslrootcert(), Some("/ca.pem"));

    // require verifies only when the default file exists.
    let cfg = parse("sslmode=require").resolve_with(&env).unwrap();
    assert_eq!(cfg.sslrootcert(), None);
    std::fs::create_dir(dir.path().join(".postgresql")).unwrap();
    std::fs::write(&root, "").unwrap();
    let cfg = parse("sslmode=require").resolve_with(&env).unwrap();
    assert_eq!(cfg.sslrootcert(), Some(root.as_str()));
    let cfg = parse("sslmode=prefer").resolve_with(&env).unwrap();
    assert_eq!(cfg.sslrootcert(), None);

    // sslrootcert=system implies verify-full and refuses weaker modes.
    let cfg = parse("sslrootcert=system").resolve_with(&env).unwrap();
    assert_eq!(cfg.sslmode(), SslMode::VerifyFull);
    let cfg = parse("sslrootcert=system sslmode=verify-ca")
        .resolve_with(&env)
        .unwrap();
    assert_eq!(cfg.sslmode(), SslMode::VerifyCa);
    assert_eq!(
        parse("sslrootcert=system sslmode=require")
            .resolve_with(&env)
            .unwrap_err()
            .to_string(),
        "invalid connection string: sslmode=require may not be used with sslrootcert=system (use verify-full or verify-ca)"
    );

    let err = parse("sslmode=verify-ca")
        .resolve_with(&env_of(&[("USER", "u")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: sslmode=verify-ca needs a root certificate: set sslrootcert \
         (HOME is not set, so ~/.postgresql/root.crt cannot be used)"
    );
}

#[cfg(unix)]
fn write_passfile(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[cfg(unix)]
#[test]
fn password_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_string_lossy().into_owned();
    write_passfile(&dir.path().join(".pgpass"), "*:*:*:*:from-home-pgpass\n");
    let other = dir.path().join("other.pgpass");
    write_passfile(&other, "b:5433:d:u:from-other-b\n*:*:*:*:from-other-any\n");
    let other = other.to_string_lossy().into_owned();
    let keyword = dir.path().join("keyword.pgpass");
    write_passfile(&keyword, "*:*:*:*:from-keyword\n");
    let keyword = keyword.to_string_lossy().into_owned();

    let pw = |dsn: &str, vars: &[(&str, &str)]| {
        let mut all = vec![("USER", "u"), ("HOME", home.as_str())];
        all.extend_from_slice(vars);
        parse(dsn)
            .resolve_with(&env_of(&all))
            .unwrap()
            .password()
            .map(|s| s.expose().to_owned())
    };
    // ~/.pgpass, then PGPASSFILE, then the passfile keyword.
    assert_eq!(pw("host=a", &[]).as_deref(), Some("from-home-pgpass"));
    assert_eq!(
        pw("host=a", &[("PGPASSFILE", &other)]).as_deref(),
        Some("from-other-any")
    );
    assert_eq!(
        pw(
            &format!("host=a passfile={keyword}"),
            &[("PGPASSFILE", &other)]
        )
        .as_deref(),
        Some("from-keyword")
    );
    // PGPASSWORD and the string's password both beat any passfile; the string beats PGPASSWORD.
    assert_eq!(
        pw("host=a", &[("PGPASSWORD", "from-env")]).as_deref(),
        Some("from-env")
    );
    assert_eq!(
        pw("host=a password=from-string", &[("PGPASSWORD", "from-env")]).as_deref(),
        Some("from-string")
    );
    // With several hosts, the first host that matches gives the password.
    let only_b = dir.path().join("only-b.pgpass");
    write_passfile(&only_b, "b:5433:d:u:pw-b\n");
    let only_b = only_b.to_string_lossy().into_owned();
    assert_eq!(
        pw(
            &format!("host=a,b port=5432,5433 dbname=d passfile={only_b}"),
            &[]
        )
        .as_deref(),
        Some("pw-b")
    );
    assert_eq!(
        pw(
            &format!("host=a,c port=5432,5433 dbname=d passfile={only_b}"),
            &[]
        ),
        None
    );
    // No HOME and no passfile: no password, no error.
    let cfg = parse("host=a")
        .resolve_with(&env_of(&[("USER", "u")]))
        .unwrap();
    assert!(!cfg.has_password());
}

#[test]
fn driver_config() {
    use tokio_postgres::config::{Host, SslMode as D};
    let cfg = parse(
        "host=h1,h2 port=5433 dbname=d user=u password=pw sslmode=verify-full \
         connect_timeout=3 application_name=a options=-cx=y keepalives=0 target_session_attrs=read-write",
    );
    let pg = cfg.to_tokio_config();
    assert_eq!(
        pg.get_hosts(),
        [Host::Tcp("h1".into()), Host::Tcp("h2".into())]
    );
    assert_eq!(pg.get_ports(), [5433]);
    assert_eq!(pg.get_dbname(), Some("d"));
    assert_eq!(pg.get_user(), Some("u"));
    assert_eq!(pg.get_password(), Some(&b"pw"[..]));
    assert_eq!(pg.get_ssl_mode(), D::Require);
    assert_eq!(
        pg.get_connect_timeout(),
        Some(&std::time::Duration::from_secs(3))
    );
    assert_eq!(pg.get_application_name(), Some("a"));
    assert_eq!(pg.get_options(), Some("-cx=y"));
    assert!(!pg.get_keepalives());
    assert_eq!(
        pg.get_target_session_attrs(),
        tokio_postgres::config::TargetSessionAttrs::ReadWrite
    );

    let mode = |s: &str| parse(s).to_tokio_config().get_ssl_mode();
    assert_eq!(mode("host=h"), D::Prefer);
    assert_eq!(mode("host=h sslmode=allow"), D::Prefer);
    assert_eq!(mode("host=h sslmode=disable"), D::Disable);
    assert_eq!(mode("host=h sslmode=require"), D::Require);
    assert_eq!(mode("host=h sslmode=verify-ca"), D::Require);
    // Unix sockets never use TLS.
    assert_eq!(mode("host=/var/run/postgresql sslmode=require"), D::Disable);
    assert_eq!(mode("host=/tmp,h sslmode=require"), D::Require);
    let pg = parse("host=/tmp").to_tokio_config();
    assert_eq!(pg.get_hosts(), [Host::Unix("/tmp".into())]);

    // hostaddr alone: the addresses double as host names for TLS.
    let pg = parse("hostaddr=127.0.0.1,::1").to_tokio_config();
    assert_eq!(
        pg.get_hosts(),
        [Host::Tcp("127.0.0.1".into()), Host::Tcp("::1".into())]
    );
    assert_eq!(pg.get_hostaddrs().len(), 2);
}

const PW: &str = "Sup3r-S3cret-Pw";

/// Connection strings holding [`PW`], valid and not.
fn strings_with_password() -> Vec<String> {
    [
        "host=h password={PW}",
        "host=h password='{PW} with space' user=u",
        "password={PW} extra",
        "password={PW} extra=x",
        "password={PW} extra=x host=h",
        "password='{PW}",
        "password = '{PW}' port=abc",
        "password={PW} sslmode=bogus",
        "host=h,,b password={PW}",
        "password={PW} service=x",
        "postgres://u:{PW}@h/db",
        "postgresql://u:{PW}@h:5432/db?sslmode=require",
        "postgres://u:{PW}@h:bad/db",
        "postgres://u:{PW}%zz@h",
        "postgres://u:{PW}@[::1/db",
        "postgres://u:{PW}@a,,b/db",
        "postgres://u:{PW}@h/d%zz",
        "postgres://h/db?password={PW}",
        "postgres://h/db?password={PW}&foo=1",
        "postgres://h/db?password={PW}%zz",
        "postgres://h/db?foo=1&password={PW}",
        "jdbc:postgresql://u:{PW}@h/db",
        "u:{PW}@h",
        "host=h u:{PW}@h",
    ]
    .iter()
    .map(|t| t.replace("{PW}", PW))
    .collect()
}

#[test]
fn passwords_never_shown() {
    let env = env_of(&[("USER", "u"), ("PGPASSWORD", PW)]);
    for s in strings_with_password() {
        let redacted = redact_dsn(&s);
        assert!(!redacted.contains(PW), "redact_dsn({s:?}) = {redacted:?}");
        let shown = match ConnConfig::parse(&s) {
            Ok(cfg) => {
                assert!(cfg.has_password(), "{s:?}");
                let resolved = cfg.resolve_with(&env).unwrap();
                format!(
                    "{cfg} {cfg:?} {cfg:#?} {} {resolved} {resolved:?}",
                    cfg.redacted()
                )
            }
            Err(e) => format!("{e} {e:?}"),
        };
        assert!(!shown.contains(PW), "{s:?} shown as {shown:?}");
    }

    // From the environment too.
    let cfg = ConnConfig::default().resolve_with(&env).unwrap();
    assert_eq!(password(&cfg), Some(PW));
    assert!(!format!("{cfg} {cfg:?}").contains(PW));
    let err = ConnConfig::default()
        .resolve_with(&env_of(&[("PGPASSWORD", PW), ("PGPORT", "x")]))
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(PW));
}

#[test]
fn connection_error_target_is_redacted() {
    let cfg = parse(&format!("host=h port=1 user=u password={PW}"));
    assert_eq!(cfg.redacted(), "host=h port=1 user=u");
    let debug = format!("{cfg:?}");
    assert_eq!(
        debug,
        r#"ConnConfig { host: "h", port: "1", user: "u", password: ******** }"#
    );
}

fn host_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9.-]{0,15}",
        "/[a-zA-Z0-9_./ -]{0,15}",
        any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
    ]
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(any::<String>().prop_filter("non-empty", |s| !s.is_empty()))
}

prop_compose! {
    fn hosts_and_ports()(hosts in proptest::collection::vec(host_strategy(), 0..4))
        (ports in match hosts.len() {
            0 | 1 => proptest::collection::vec(1..=u16::MAX, 0..=1).boxed(),
            n => prop_oneof![
                proptest::collection::vec(1..=u16::MAX, 0..=1),
                proptest::collection::vec(1..=u16::MAX, n..=n),
            ].boxed(),
        }, hosts in Just(hosts))
        -> (Vec<String>, Vec<u16>) {
        (hosts, ports)
    }
}

prop_compose! {
    fn configs()(
        (hosts, ports) in hosts_and_ports(),
        (dbname, user, password) in (text(), text(), text()),
        (application_name, options, passfile, sslrootcert) in (text(), text(), text(), text()),
        sslmode in proptest::option::of(proptest::sample::select(SslMode::ALL.to_vec())),
        connect_timeout in proptest::option::of(0..100_000u64),
        tsa in proptest::option::of(proptest::sample::select(vec![
            TargetSessionAttrs::Any, TargetSessionAttrs::ReadWrite, TargetSessionAttrs::ReadOnly,
        ])),
        keepalives in proptest::option::of(any::<bool>()),
        keepalives_count in proptest::option::of(any::<u32>()),
    ) -> ConnConfig {
        ConnConfig {
            hosts,
            ports,
            dbname,
            user,
            password: password.map(Secret::new),
            application_name,
            options,
            passfile,
            sslrootcert,
            sslmode,
            connect_timeout,
            target_session_attrs: tsa,
            keepalives,
            keepalives_count,
            ..ConnConfig::default()
        }
    }
}

proptest! {
    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = ConnConfig::parse(&s);
        let _ = redact_dsn(&s);
    }

    #[test]
    fn url_parse_never_panics(s in "[a-z0-9:@/?&=%,\\[\\]._ -]{0,40}") {
        for scheme in ["postgres://", "postgresql://"] {
            let s = format!("{scheme}{s}");
            let _ = ConnConfig::parse(&s);
            let _ = redact_dsn(&s);
        }
    }

    #[test]
    fn display_round_trips(cfg in configs()) {
        let shown = cfg.to_string();
        let back = ConnConfig::parse(&shown)
            .map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
        let mut want = cfg.clone();
        want.password = None;
        prop_assert_eq!(back, want, "{}", shown);
    }

    #[test]
    fn passwords_stay_hidden(pw in "ZqX[A-Za-z0-9 !#%&()*+,./:;<>?@^_{|}~'\\\\=-]{4,20}") {
        let quoted = format!("'{}'", pw.replace('\\', "\\\\").replace('\'', "\\'"));
        let kv = format!("host=h password={quoted} user=u");
        let cfg = ConnConfig::parse(&kv).unwrap();
        prop_assert_eq!(password(&cfg), Some(pw.as_str()));
        let shown = format!("{cfg} {cfg:?} {}", redact_dsn(&kv));
        prop_assert!(!shown.contains("ZqX"), "{}", shown);

        // Unquoted and broken: still masked in redact_dsn and errors.
        let broken = format!("host=h password={pw} user=u");
        let shown = match ConnConfig::parse(&broken) {
            Ok(cfg) => format!("{cfg} {cfg:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains("ZqX"), "{}", shown);
        prop_assert!(!redact_dsn(&broken).contains("ZqX"));

        let encoded: String = percent_encoding::utf8_percent_encode(&pw, percent_encoding::NON_ALPHANUMERIC).to_string();
        let url = format!("postgres://u:{encoded}@h/db");
        let cfg = ConnConfig::parse(&url).unwrap();
        prop_assert_eq!(password(&cfg), Some(pw.as_str()));
        let shown = format!("{cfg} {cfg:?} {}", redact_dsn(&url));
        prop_assert!(!shown.contains("ZqX"), "{}", shown);
        let query = format!("postgres://h/db?password={encoded}");
        prop_assert!(!redact_dsn(&query).contains("ZqX"));
    }
}

/// Every error in `err`'s source chain, in `Display` and `Debug` form.
fn error_chain_text(err: &ConfigError) -> String {
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        shown.push_str(&format!(" | {e} {e:?}"));
        source = e.source();
    }
    shown
}

/// The message for a URL whose user name and password cannot be delimited.
const AMBIGUOUS_URL: &str = "invalid connection string: a character in the URL's user name or \
     password must be percent-encoded (a '/' as %2F, an '@' as %40, a ':' in the user name as \
     %3A, a '?' in the user name as %3F), and so must an '@' in the database name or a query \
     parameter (%40)";

#[test]
fn url_with_unencoded_slash_or_at_is_refused() {
    for url in [
        "postgres://u:abc/Secret1@host/db",
        "postgresql://u:123/Secret2@h:5432/db",
        "postgres://u:Secret3/@h",
        "postgres://u:/Secret4@h1:5432,h2:5433/db?sslmode=require",
        "postgres://u:pw@h/db?application_name=Secret5@x",
        "postgres://h/db?password=Secret6@x",
        "postgres://h/Secret7@db",
        // No '/': a '?' in the user part means the '@' may be in the query.
        "postgres://h?password=Secret8@x",
        "postgres://h?user=x&password=Secret9:y@z",
    ] {
        let err = ConnConfig::parse(url).expect_err(url);
        assert_eq!(err.to_string(), AMBIGUOUS_URL, "{url:?}");
        let shown = error_chain_text(&err);
        assert!(!shown.contains("Secret"), "{url:?}: {shown}");
        let redacted = redact_dsn(url);
        assert!(!redacted.contains("Secret"), "{url:?}: {redacted}");
    }
    // Encoded, the same URLs work.
    let cfg = parse("postgres://u:abc%2FSecret1@host/db");
    assert_eq!(password(&cfg), Some("abc/Secret1"));
    assert_eq!(cfg.to_string(), "host=host dbname=db user=u");
    let cfg = parse("postgres://h/db?application_name=a%40b&password=p%40w");
    assert_eq!(password(&cfg), Some("p@w"));
    assert_eq!(cfg.to_string(), "host=h dbname=db application_name=a@b");
}

#[test]
fn url_query_errors_after_the_password_quote_nothing() {
    let want = "invalid connection string: invalid URL query parameter after the password; \
                percent-encode any '&' in the password as %26";
    for url in [
        "postgres://h/db?password=abc&Secret1",
        "postgres://h/db?password=abc&Secret1=x",
        "postgres://h/db?password=abc&Secret1%zz=x",
    ] {
        let err = ConnConfig::parse(url).expect_err(url);
        assert_eq!(err.to_string(), want, "{url:?}");
        assert!(!error_chain_text(&err).contains("Secret1"), "{url:?}");
        assert!(!redact_dsn(url).contains("Secret1"), "{url:?}");
    }
    // redact_dsn takes a libpq keyword after the password for one
    // (`?password=pw&sslmode=disable`); parse errors quote nothing anyway.
    for url in [
        "postgres://h/db?password=abc&port=Secret1",
        "postgres://h/db?password=abc&sslmode=require&Secret1",
    ] {
        let err = ConnConfig::parse(url).expect_err(url);
        assert_eq!(err.to_string(), want, "{url:?}");
    }
    // A secret-looking keyword's value is not quoted either.
    let err = ConnConfig::parse("postgres://h?sslpassword=Secret1%zz").unwrap_err();
    assert!(!error_chain_text(&err).contains("Secret1"), "{err}");
}

/// Passwords built as `Alpha7{tricky}Omega9`: neither end may ever be shown.
const URL_TRICKY_PARTS: &[&str] = &[
    "",
    "/",
    "//",
    "?",
    "#",
    "@",
    ":",
    "%",
    "%zz",
    "%41",
    "%2F",
    "/x@y",
    "@h/db?x=",
    "?x=",
    "?password=",
    "&",
    "&x=",
    "=",
    " ",
    "'",
    "\\",
    "/?#@:%",
    "a/b?c#d@e:f%g",
    ":/@",
    "@:",
    "[::1]",
    ",",
    ",h2:5433/",
    "%00",
];

const URL_TEMPLATES: &[&str] = &[
    "postgres://u:{pw}@h/db",
    "postgresql://u:{pw}@h:5432/db",
    "postgres://u:{pw}@h1:5432,h2:5433/db?sslmode=require",
    "postgres://u:{pw}@[::1]:5432/db",
    "postgres://u:{pw}@h",
    "postgres://u:{pw}@h?sslmode=require",
    "postgres://u:{pw}@/db?host=/tmp",
    "postgres://u%40x:{pw}@h/db",
    "postgres://u:{pw}@h1,h2",
    "postgres://h/db?password={pw}",
    "postgres://h/db?password={pw}&sslmode=require",
    "postgres://h1,h2/db?sslmode=require&password={pw}",
    "postgres://u@h/db?password={pw}&application_name=x",
    "postgres://h?password={pw}",
    "  postgresql://u:{pw}@h:5432/db  ",
];

#[test]
fn tricky_url_passwords_never_shown() {
    let env = env_of(&[("USER", "u")]);
    let leaks = |text: &str| text.contains("Alpha7") || text.contains("Omega9");
    for template in URL_TEMPLATES {
        for part in URL_TRICKY_PARTS {
            let url = template.replace("{pw}", &format!("Alpha7{part}Omega9"));
            let redacted = redact_dsn(&url);
            assert!(!leaks(&redacted), "redact_dsn({url:?}) = {redacted:?}");
            let shown = match ConnConfig::parse(&url) {
                Ok(cfg) => {
                    let resolved = match cfg.resolve_with(&env) {
                        Ok(r) => format!("{r} {r:?}"),
                        Err(e) => error_chain_text(&e),
                    };
                    format!("{cfg} {cfg:?} {cfg:#?} {} {resolved}", cfg.redacted())
                }
                Err(e) => error_chain_text(&e),
            };
            assert!(!leaks(&shown), "{url:?} shown as {shown:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Fuzzing (issue 9, item 8): hostile and near-valid connection strings and
// passfiles. Every call returns a value or a typed error, and a password in
// the input never shows in the error, the parsed config or the redaction.

/// A secret that cannot occur by chance in the rest of a string.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%()*+,.:;<>?@^_{|}~/=-]{6,16}".prop_map(|s| format!("Qz7{s}"))
}

/// Where a password goes in a connection string: `{pw}` is replaced by the
/// secret as written there (quoted, percent-encoded or bare).
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `password='...'` with `\'` and `\\` escapes.
    Quoted,
    /// A URL's user part or query, percent-encoded.
    Encoded,
}

const SECRET_TEMPLATES: &[(&str, Slot)] = &[
    (
        "host=h port=5432 password={pw} user=u dbname=d",
        Slot::Quoted,
    ),
    ("password={pw}", Slot::Quoted),
    (
        "host=db1,db2 port=5432,5433 password = {pw} sslmode=verify-full sslrootcert=/x/ca.crt",
        Slot::Quoted,
    ),
    (
        "user=u password={pw} application_name=app options='-c a=b'",
        Slot::Quoted,
    ),
    ("postgres://u:{pw}@h/db", Slot::Encoded),
    (
        "postgresql://u:{pw}@h1:5432,h2:5433/db?sslmode=require&connect_timeout=5",
        Slot::Encoded,
    ),
    (
        "postgres://u:{pw}@[::1]:5432/db?sslmode=verify-full&sslrootcert=%2Fx%2Fca.crt",
        Slot::Encoded,
    ),
    (
        "postgres://h/db?sslmode=require&password={pw}&application_name=x",
        Slot::Encoded,
    ),
    ("postgres://u@h:5432?password={pw}", Slot::Encoded),
];

/// The template with the secret in, and the byte range (from the start of
/// the password's keyword or user part to the end of the secret) that
/// mutations leave alone, so that the secret stays recognisably a password.
fn with_secret(template: &str, slot: Slot, pw: &str) -> (String, std::ops::Range<usize>) {
    let written = match slot {
        Slot::Quoted => format!("'{}'", pw.replace('\\', "\\\\").replace('\'', "\\'")),
        Slot::Encoded => {
            percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        }
    };
    let at = template.find("{pw}").unwrap_or(0);
    let start = template[..at]
        .rfind("password")
        .or_else(|| template[..at].find("://").map(|p| p + 3))
        .unwrap_or(0);
    let s = template.replace("{pw}", &written);
    // Up to the end of the secret, and the `@` closing a URL's user part.
    let mut end = at + written.len();
    if s[end..].starts_with('@') {
        end += 1;
    }
    (s, start..end)
}

/// One edit a user's typo (or an attacker) could make.
#[derive(Debug, Clone)]
enum Edit {
    Insert(proptest::sample::Index, String),
    Delete(proptest::sample::Index, usize),
    Replace(proptest::sample::Index, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    // No quote or backslash: those re-tokenize the whole string, so that the
    // password may legitimately become part of another value.
    let text = "[^'\\\\]{1,6}|[ =,:/@?&%\\[\\]]{1,3}|(host|port|user|sslmode|password|dbname|foo)=[a-z0-9%]{0,5}";
    prop_oneof![
        (any::<proptest::sample::Index>(), text).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<proptest::sample::Index>(), 1_usize..6).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<proptest::sample::Index>(), 1_usize..4, text)
            .prop_map(|(i, n, t)| Edit::Replace(i, n, t)),
    ]
}

/// The largest char boundary of `s` at or before `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Applies `edits` outside `keep` (which moves along with the edits).
fn mutate(s: &str, keep: std::ops::Range<usize>, edits: &[Edit]) -> String {
    let mut s = s.to_owned();
    let mut keep = keep;
    for e in edits {
        // Candidate positions: before the kept range, or after it.
        let pick = |i: &proptest::sample::Index, s: &str, keep: &std::ops::Range<usize>| {
            let outside = keep.start + (s.len() - keep.end) + 1;
            let n = i.index(outside);
            if n <= keep.start {
                floor_boundary(s, n)
            } else {
                let at = keep.end + (n - keep.start - 1);
                let at = floor_boundary(s, at);
                at.max(keep.end)
            }
        };
        match e {
            Edit::Insert(i, t) => {
                let at = pick(i, &s, &keep);
                s.insert_str(at, t);
                if at <= keep.start {
                    keep = keep.start + t.len()..keep.end + t.len();
                }
            }
            Edit::Delete(i, n) | Edit::Replace(i, n, _) => {
                let at = pick(i, &s, &keep);
                let limit = if at <= keep.start {
                    keep.start
                } else {
                    s.len()
                };
                let end = floor_boundary(&s, (at + n).min(limit)).max(at);
                let with = match e {
                    Edit::Replace(_, _, t) => t.as_str(),
                    _ => "",
                };
                s.replace_range(at..end, with);
                if at <= keep.start {
                    let shift = with.len() as isize - (end - at) as isize;
                    keep = (keep.start as isize + shift) as usize
                        ..(keep.end as isize + shift) as usize;
                }
            }
        }
    }
    s
}

/// Everything pgmig could show about `s`: the parse error's chain or the
/// parsed config in every form, resolved too, and `redact_dsn(s)`.
fn everything_shown(s: &str) -> String {
    let env = env_of(&[("USER", "u"), ("HOME", "/nonexistent-home")]);
    let mut shown = redact_dsn(s);
    match ConnConfig::parse(s) {
        Ok(cfg) => {
            shown.push_str(&format!(" {cfg} {cfg:?} {cfg:#?} {}", cfg.redacted()));
            match cfg.resolve_with(&env) {
                Ok(r) => shown.push_str(&format!(" {r} {r:?}")),
                Err(e) => shown.push_str(&error_chain_text(&e)),
            }
            if let Err(e) = cfg.tls_client_config() {
                shown.push_str(&error_chain_text(&e));
            }
        }
        Err(e) => shown.push_str(&error_chain_text(&e)),
    }
    shown
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Near-valid strings holding a password: whatever the typos around it,
    /// the password is never shown, and parsing never panics.
    #[test]
    fn fuzz_password_never_shown_in_mutated_strings(
        pick in any::<proptest::sample::Index>(),
        pw in secret(),
        edits in proptest::collection::vec(edit(), 0..4),
    ) {
        let (template, slot) = *pick.get(SECRET_TEMPLATES);
        let (valid, keep) = with_secret(template, slot, &pw);
        // Unmutated, it parses and holds the password.
        let cfg = ConnConfig::parse(&valid)
            .map_err(|e| TestCaseError::fail(format!("{valid:?}: {e}")))?;
        prop_assert_eq!(password(&cfg), Some(pw.as_str()));
        let mutated = mutate(&valid, keep, &edits);
        let shown = everything_shown(&mutated);
        prop_assert!(!shown.contains(&pw), "{:?} shows the password: {}", mutated, shown);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A bare password with spaces or other syntax in it (a classic
    /// mistake) is refused or read, never shown.
    #[test]
    fn fuzz_unquoted_password_never_shown(
        head in "Qz7[A-Za-z0-9]{4,8}",
        tail in "[ \t=,:/@?&%A-Za-z0-9]{0,12}",
        after in proptest::sample::select(vec!["", " user=u", " host=h port=x", " sslmode=bogus", " x y z"]),
    ) {
        let pw = format!("{head}{tail}");
        let s = format!("host=h password={pw}{after}");
        let shown = everything_shown(&s);
        prop_assert!(!shown.contains(&head), "{:?} shows the password: {}", s, shown);
    }

    /// Mutations of valid strings of both forms: no panic, and a rejection
    /// is a typed error with a message.
    #[test]
    fn fuzz_mutated_valid_strings_never_panic(
        cfg in configs(),
        url in any::<bool>(),
        edits in proptest::collection::vec(edit(), 1..5),
        quote in proptest::option::of((any::<proptest::sample::Index>(), "['\\\\]")),
    ) {
        let valid = if url { to_url(&cfg) } else { cfg.to_string() };
        let mut mutated = mutate(&valid, 0..0, &edits);
        if let Some((at, q)) = quote {
            let at = floor_boundary(&mutated, at.index(mutated.len() + 1));
            mutated.insert_str(at, &q);
        }
        match ConnConfig::parse(&mutated) {
            Ok(cfg) => {
                // What parsed prints back as something that parses the same.
                let back = ConnConfig::parse(&cfg.to_string())
                    .map_err(|e| TestCaseError::fail(format!("{cfg}: {e}")))?;
                let mut want = cfg.clone();
                want.password = None;
                prop_assert_eq!(back, want);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = redact_dsn(&mutated);
    }

    /// Arbitrary bytes, read as UTF-8 lossily (a connection string always
    /// arrives as text): no panic in any parser.
    #[test]
    fn fuzz_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = ConnConfig::parse(&s);
        let _ = ConnConfig::parse(&format!("postgres://{s}"));
        let _ = ConnConfig::parse(&format!("host=h password={s}"));
        let _ = redact_dsn(&s);
        let _ = super::url::decode(&s);
        let _ = super::passfile::find_password(&s, "h", 5432, "d", "u");
        let _ = s.parse::<SslMode>();
    }

    /// Long inputs are handled in time: no quadratic blow-up on a few
    /// kilobytes of repeated syntax (the case count is small; each case is
    /// a long string).
    #[test]
    fn fuzz_long_repetitive_inputs(
        unit in proptest::sample::select(vec![
            "a=b ", "'", "\\", "password=", "@", "://", "%", "?", "&", ",", "=", "[", "x:y@", "password=a&",
        ]),
        n in 500_usize..3000,
        prefix in proptest::sample::select(vec!["", "postgres://", "host=h password=", "postgres://u:p@h/db?"]),
    ) {
        let s = format!("{prefix}{}", unit.repeat(n));
        let _ = ConnConfig::parse(&s);
        let _ = redact_dsn(&s);
    }

    /// The passfile: arbitrary contents never panic; a line written with
    /// libpq's escaping gives back exactly its password.
    #[test]
    fn fuzz_passfile_lines(
        host in "[^\n\r#/*][^\n\r]{0,11}",
        port in proptest::sample::select(vec!["5432", "*"]),
        db in "[^\n\r]{0,12}",
        user in "[^\n\r]{0,12}",
        pw in "[^\n\r]{1,16}",
        junk in "[^\n]{0,80}",
    ) {
        let escape = |f: &str| f.replace('\\', "\\\\").replace(':', "\\:");
        let line = format!(
            "{}:{port}:{}:{}:{}",
            escape(&host), escape(&db), escape(&user), escape(&pw)
        );
        // The first matching line wins: the junk goes after it.
        let found = super::passfile::find_password(&format!("{line}\n{junk}"), &host, 5432, &db, &user);
        prop_assert_eq!(found.as_ref().map(Secret::expose), Some(pw.as_str()), "{:?}", line);
        let _ = super::passfile::find_password(&format!("{junk}\n{line}"), &host, 5432, &db, &user);
        let _ = super::passfile::find_password(&junk, &host, 5432, &db, &user);
    }
}

/// A config as a `postgres://` URL, every part percent-encoded.
fn to_url(cfg: &ConnConfig) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut url = String::from("postgres://");
    if let Some(u) = cfg.user() {
        url.push_str(&enc(u));
        if let Some(p) = cfg.password() {
            url.push(':');
            url.push_str(&enc(p.expose()));
        }
        url.push('@');
    }
    let hosts: Vec<String> = cfg
        .hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = if h.contains(':') {
                format!("[{h}]")
            } else {
                enc(h)
            };
            match cfg.ports() {
                [] => host,
                _ => format!("{host}:{}", cfg.port_for(i)),
            }
        })
        .collect();
    url.push_str(&hosts.join(","));
    url.push('/');
    if let Some(d) = cfg.dbname() {
        url.push_str(&enc(d));
    }
    url.push_str("?x_=1");
    url.replace("?x_=1", &format!("?sslmode={}", cfg.sslmode()))
}

/// Found by fuzzing: a missing separator before `password=` made the
/// password part of another value, which the error (or `Display`) quoted.
#[test]
fn a_password_swallowed_by_another_value_is_refused_unquoted() {
    let space = "invalid connection string: the value of {key} holds \"password=\": is a space \
                 missing before it? (quote the value if it is meant)";
    let cases = [
        (
            "host=h port=54password=Secret1 user=u",
            space.replace("{key}", "\"port\""),
        ),
        ("user=upassword=Secret1", space.replace("{key}", "\"user\"")),
        (
            "host=h sslmode=requirePASSWORD='Secret1'",
            space.replace("{key}", "\"sslmode\""),
        ),
        (
            "postgres://h/db?sslmode=requirepassword=Secret1",
            "invalid connection string: the value of URL query parameter \"sslmode\" holds \
             \"password=\": is an '&' missing before it?"
                .to_owned(),
        ),
        (
            "postgres://u@h@password=Secret1",
            "invalid connection string: a URL host holds \"password=\": is a '?' or '&' missing \
             or mistyped before it?"
                .to_owned(),
        ),
        (
            "postgres://h/dbpassword=Secret1",
            "invalid connection string: the URL's database name holds \"password=\": is a '?' \
             or '&' missing or mistyped before it?"
                .to_owned(),
        ),
    ];
    for (input, want) in cases {
        let err = ConnConfig::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want, "{input:?}");
        assert!(!error_chain_text(&err).contains("Secret1"), "{input:?}");
        assert!(
            !redact_dsn(input).contains("Secret1"),
            "{input:?}: {}",
            redact_dsn(input)
        );
    }
    // Quoted, such a value is meant, and round-trips quoted.
    let cfg = parse("dbname='x password=y' options='-c app.password=z'");
    assert_eq!(cfg.dbname(), Some("x password=y"));
    assert_eq!(
        cfg.to_string(),
        "dbname='x password=y' options='-c app.password=z'"
    );
    assert_eq!(ConnConfig::parse(&cfg.to_string()).unwrap(), cfg);
    let cfg = parse("dbname='a-password=b'");
    assert_eq!(cfg.to_string(), "dbname='a-password=b'");

    // Found by fuzzing: an encoded ',' in a URL host made one host that
    // `Display` wrote as two.
    let err = ConnConfig::parse("postgres://a%2Cb:5432/db").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: URL host \"a%2Cb\" holds an encoded \",\": separate hosts \
         with a plain \",\""
    );
}
