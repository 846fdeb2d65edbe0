//! The lab's TCP proxy against a real server: queries pass through it, a
//! cut closes open connections only, a stall holds bytes until resumed, a
//! byte limit cuts in the middle of a large result, refused connections fail.

use std::time::Duration;

use pgmig_testkit::{Cluster, Proxy, skip_unless_available};
use tokio_postgres::{Client, NoTls};

async fn connect(proxy: &Proxy) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&proxy.conninfo("postgres"), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn one(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cuts_stalls_and_refuses() {
    skip_unless_available!(15);
    let server = Cluster::primary(15).await.unwrap();
    let proxy = Proxy::start(&server).await.unwrap();

    let client = connect(&proxy).await.unwrap();
    assert_eq!(one(&client).await.unwrap(), 1);
    assert_eq!(proxy.open_connections(), 1);
    assert!(proxy.bytes_forwarded() > 0);

    // A cut closes the open connection; a new one works.
    proxy.cut();
    let err = one(&client).await.unwrap_err();
    assert!(
        err.is_closed() || err.to_string().contains("closed"),
        "{err}"
    );
    let client = connect(&proxy).await.unwrap();
    assert_eq!(one(&client).await.unwrap(), 1);

    // A stall holds the query until resumed; the connection survives.
    proxy.stall();
    let held = tokio::time::timeout(Duration::from_millis(500), one(&client)).await;
    assert!(held.is_err(), "a query passed a stalled proxy");
    proxy.resume();
    assert_eq!(one(&client).await.unwrap(), 1);

    // A byte limit cuts in the middle of a large result.
    proxy.cut_after_bytes(proxy.bytes_forwarded() + 100_000);
    let big = client
        .query(
            "SELECT repeat('x', 1000) FROM generate_series(1, 10000)",
            &[],
        )
        .await;
    assert!(big.is_err(), "a 10 MB result passed a 100 kB limit");
    assert!(!proxy.cut_pending());
    assert_eq!(proxy.cuts(), 2);

    // Refused while set.
    proxy.refuse(true);
    assert!(connect(&proxy).await.is_err());
    proxy.refuse(false);
    let client = connect(&proxy).await.unwrap();
    assert_eq!(one(&client).await.unwrap(), 1);
}
