//! TLS against real servers (issue 9, item 11): a lab server with its own
//! CA, reached through pgmig-core's `ConnConfig` in both connection-string
//! forms. `verify-full` with the lab CA and the certificate's host name
//! connects over TLS; another CA, another host name, and `require` against
//! a server without TLS all fail with an error saying so — and the password
//! in the connection string is never shown.

use pgmig_core::ErrorKind;
use pgmig_core::config::ConnConfig;
use pgmig_testkit::{Cluster, ClusterSpec, TLS_HOST, TlsFiles, skip_unless_available};

/// A password given in every connection string (the lab trusts loopback,
/// so the server never asks for it); it must never be shown.
const SECRET: &str = "Tls-S3cret-Pw";

async fn tls_server() -> Cluster {
    ClusterSpec::new(15)
        .label("tls")
        .tls(true)
        .start()
        .await
        .expect("start a TLS lab server")
}

fn files(server: &Cluster) -> &TlsFiles {
    server.tls_files().expect("a TLS lab server has TLS files")
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("lab paths are UTF-8").to_owned()
}

/// A key=value string for `host` on the server's port with these TLS options.
fn dsn(server: &Cluster, host: &str, tls: &str) -> String {
    format!(
        "host={host} port={} user=postgres password={SECRET} dbname=postgres connect_timeout=20 {tls}",
        server.port()
    )
}

/// Whether the session is encrypted, as the server sees it.
async fn session_is_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query pg_stat_ssl")
        .get(0)
}

/// Connects with `dsn`; whether the session is TLS.
async fn connect_ok(dsn: &str) -> bool {
    let cfg = ConnConfig::parse(dsn).expect("parse");
    let client = cfg
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}: {}", cfg, chain(&e)));
    session_is_tls(&client).await
}

/// The error's whole chain as the CLI prints it: `a: b: c`.
fn chain(err: &pgmig_core::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Connecting with `dsn` fails; the error's chain (checked to hold no
/// password, in `Display` and `Debug`).
async fn connect_err(dsn: &str) -> String {
    let cfg = ConnConfig::parse(dsn).expect("parse");
    let err = cfg
        .connect()
        .await
        .err()
        .unwrap_or_else(|| panic!("{cfg}: connected, but should have failed"));
    assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
    let text = chain(&err);
    assert!(
        !text.contains(SECRET) && !format!("{err:?}").contains(SECRET),
        "password shown: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_with_the_lab_ca_connects_and_mismatches_are_refused() {
    skip_unless_available!(15);
    let server = tls_server().await;
    let tls = files(&server);
    let ca = path(&tls.ca_cert);
    let other = path(&tls.other_ca_cert);
    assert_eq!(TLS_HOST, "localhost");

    // The certificate's name and the CA that signed it: encrypted.
    assert!(
        connect_ok(&dsn(
            &server,
            "localhost",
            &format!("sslmode=verify-full sslrootcert={ca}")
        ))
        .await
    );

    // Another CA: the chain does not verify.
    let err = connect_err(&dsn(
        &server,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={other}"),
    ))
    .await;
    assert_eq!(
        err,
        format!(
            "could not connect to host=localhost port={} dbname=postgres user=postgres \
             sslmode=verify-full sslrootcert={other} connect_timeout=20: \
             error performing TLS handshake: invalid peer certificate: UnknownIssuer",
            server.port()
        )
    );
    // verify-ca checks the chain too.
    let err = connect_err(&dsn(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={other}"),
    ))
    .await;
    assert!(
        err.ends_with("error performing TLS handshake: invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    // So does require once a root certificate is given (as libpq).
    let err = connect_err(&dsn(
        &server,
        "localhost",
        &format!("sslmode=require sslrootcert={other}"),
    ))
    .await;
    assert!(
        err.ends_with("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );

    // The right CA, but the certificate names localhost, not 127.0.0.1.
    let err = connect_err(&dsn(
        &server,
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .await;
    assert!(
        err.starts_with(&format!(
            "could not connect to host=127.0.0.1 port={} ",
            server.port()
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "error performing TLS handshake: invalid peer certificate: certificate not valid \
             for name \"127.0.0.1\"; certificate is only valid for DnsName(\"localhost\")"
        ),
        "{err}"
    );
    // verify-ca does not check the name.
    assert!(
        connect_ok(&dsn(
            &server,
            "127.0.0.1",
            &format!("sslmode=verify-ca sslrootcert={ca}")
        ))
        .await
    );

    // Without verification the session is still encrypted; disable is not.
    assert!(connect_ok(&dsn(&server, "127.0.0.1", "sslmode=require")).await);
    assert!(connect_ok(&dsn(&server, "127.0.0.1", "sslmode=prefer")).await);
    assert!(connect_ok(&dsn(&server, "127.0.0.1", "")).await);
    assert!(!connect_ok(&dsn(&server, "127.0.0.1", "sslmode=disable")).await);

    // A root certificate file that is not there is named before connecting.
    let missing = format!("{ca}.missing");
    let cfg = ConnConfig::parse(&dsn(
        &server,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={missing}"),
    ))
    .unwrap();
    let err = cfg.connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err:?}");
    assert_eq!(
        chain(&err),
        format!(
            "cannot use root certificate file {missing}: No such file or directory (os error 2)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_carry_sslmode_and_sslrootcert() {
    skip_unless_available!(15);
    let server = tls_server().await;
    let tls = files(&server);
    let url = |host: &str, root: &std::path::Path, mode: &str| {
        let root: String = percent_encode(&path(root));
        format!(
            "postgres://postgres:{SECRET}@{host}:{}/postgres?sslmode={mode}&sslrootcert={root}&connect_timeout=20",
            server.port()
        )
    };

    assert!(connect_ok(&url("localhost", &tls.ca_cert, "verify-full")).await);

    // Pools (the load's connections) verify the same way.
    let pooled = ConnConfig::parse(&url("localhost", &tls.ca_cert, "verify-full")).unwrap();
    let conn = pooled
        .pool(2)
        .unwrap()
        .get()
        .await
        .expect("pooled TLS connection");
    assert!(session_is_tls(&conn).await);
    let wrong = ConnConfig::parse(&url("localhost", &tls.other_ca_cert, "verify-full")).unwrap();
    let Err(err) = wrong.pool(2).unwrap().get().await else {
        panic!("the other CA is refused");
    };
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("UnknownIssuer"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(connect_ok(&url("127.0.0.1", &tls.ca_cert, "verify-ca")).await);

    let err = connect_err(&url("localhost", &tls.other_ca_cert, "verify-full")).await;
    assert!(
        err.ends_with("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    let err = connect_err(&url("127.0.0.1", &tls.ca_cert, "verify-full")).await;
    assert!(
        err.contains("invalid peer certificate: certificate not valid for name \"127.0.0.1\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_fails_against_a_server_without_tls() {
    skip_unless_available!(15);
    let server = ClusterSpec::new(15)
        .label("plain")
        .start()
        .await
        .expect("start a lab server without TLS");
    assert!(server.tls_files().is_none());

    // `system`: the bundled roots, so that no file is needed.
    for tls in [
        "sslmode=require",
        "sslmode=verify-ca sslrootcert=system",
        "sslmode=verify-full sslrootcert=system",
    ] {
        let err = connect_err(&dsn(&server, "localhost", tls)).await;
        assert!(
            err.ends_with("error performing TLS handshake: server does not support TLS"),
            "{tls}: {err}"
        );
    }
    let url = format!(
        "postgresql://postgres:{SECRET}@127.0.0.1:{}/postgres?sslmode=require",
        server.port()
    );
    let err = connect_err(&url).await;
    assert_eq!(
        err,
        format!(
            "could not connect to host=127.0.0.1 port={} dbname=postgres user=postgres \
             sslmode=require: error performing TLS handshake: server does not support TLS",
            server.port()
        )
    );
    // prefer (the default) falls back to plaintext, as libpq does.
    assert!(!connect_ok(&dsn(&server, "127.0.0.1", "sslmode=prefer")).await);
    assert!(!connect_ok(&dsn(&server, "127.0.0.1", "")).await);
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
