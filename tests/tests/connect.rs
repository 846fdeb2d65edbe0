//! Connecting through pgmig-core's `ConnConfig` to a real server: libpq
//! strings and URLs, pools, and errors that never show the password.

use std::str::FromStr;

use pgmig_core::config::ConnConfig;
use pgmig_core::{ErrorKind, ServerVersion};
use pgmig_testkit::{Cluster, skip_unless_available};

#[tokio::test(flavor = "multi_thread")]
async fn connects_with_key_value_url_and_pool() {
    skip_unless_available!(16);
    let server = Cluster::primary(16).await.expect("start PG16");
    let db = server.create_database("connect").await.unwrap();

    let kv = ConnConfig::parse(&format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} sslmode=disable application_name=pgmig-test",
        server.port()
    ))
    .unwrap();
    let client = kv.connect().await.expect("connect with key=value");
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db);
    assert_eq!(row.get::<_, String>(1), "pgmig-test");
    let version = ServerVersion::query(&client).await.unwrap();
    assert_eq!(version.num(), server.server_version_num().await.unwrap());

    let url = ConnConfig::from_str(&format!(
        "postgres://postgres@127.0.0.1:{}/{db}?sslmode=prefer",
        server.port()
    ))
    .unwrap();
    assert_eq!(url.dbname(), Some(db.as_str()));
    let client = url.connect().await.expect("connect with a URL");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    let pool = kv.pool(4).unwrap();
    let mut handles = Vec::new();
    for i in 0..8i32 {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let conn = pool.get().await.expect("pooled connection");
            let v: i32 = conn
                .query_one("SELECT $1::int4 * 2", &[&i])
                .await
                .unwrap()
                .get(0);
            v
        }));
    }
    let mut got = Vec::new();
    for h in handles {
        got.push(h.await.unwrap());
    }
    assert_eq!(got, (0..8).map(|i| i * 2).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_errors_name_the_server_but_never_the_password() {
    // A port nobody listens on: the lab hands out free ports.
    let port = pgmig_testkit::free_port().unwrap();
    let secret = "s3cr3t-Pa55word";
    for dsn in [
        format!("host=127.0.0.1 port={port} user=app password={secret} dbname=x connect_timeout=5"),
        format!("postgresql://app:{secret}@127.0.0.1:{port}/x?connect_timeout=5"),
    ] {
        let cfg = ConnConfig::parse(&dsn).unwrap();
        assert!(!cfg.to_string().contains(secret));
        assert!(!format!("{cfg:?}").contains(secret));
        let err = cfg.connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection, "{err:?}");
        let mut chain = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&format!(" {s}"));
            source = s.source();
        }
        assert!(!chain.contains(secret), "password leaked: {chain}");
        assert!(
            chain.contains(&port.to_string()),
            "server not named: {chain}"
        );
    }
}
