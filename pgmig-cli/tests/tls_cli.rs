//! TLS through the real binary (issue 9, item 11): `pgmig plan` and
//! `pgmig status` reach a lab server that serves TLS with its own CA when
//! given `sslmode=verify-full sslrootcert=<lab CA> host=localhost`; with
//! another CA they say it is a certificate problem, never showing the
//! password of the connection string.

use std::process::Output;

use pgmig_testkit::{Cluster, ClusterSpec, skip_unless_available};
use tokio::process::Command;

/// The password in every connection string (the lab trusts loopback, so
/// the server never asks for it); it must never be printed.
const SECRET: &str = "Cli-Tls-S3cret";

/// `pgmig <args>` with only the given server configured.
fn pgmig(args: &[&str], flag: &str, dsn: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgmig"));
    c.args(args)
        .arg(flag)
        .arg(dsn)
        .env_remove("PGMIG_SOURCE")
        .env_remove("PGMIG_REPLICA")
        .env_remove("PGMIG_TARGET")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    c
}

fn text(o: &Output) -> String {
    format!(
        "--- status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn dsn(server: &Cluster, db: &str, host: &str, root: &std::path::Path) -> String {
    format!(
        "host={host} port={} user=postgres password={SECRET} dbname={db} \
         sslmode=verify-full sslrootcert={}",
        server.port(),
        root.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_status_verify_the_server_certificate() {
    skip_unless_available!(15);
    let server = ClusterSpec::new(15)
        .label("tls-cli")
        .tls(true)
        .start()
        .await
        .expect("start a TLS lab server");
    let tls = server.tls_files().expect("TLS files");
    let db = server.create_database("tls_cli").await.unwrap();
    server
        .execute(&db, "CREATE TABLE accounts (id int PRIMARY KEY, note text)")
        .await
        .unwrap();

    // The lab CA and the certificate's host name: the plan is built.
    let good = dsn(&server, &db, "localhost", &tls.ca_cert);
    let out = pgmig(&["plan", "--json"], "--source", &good)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(
        doc["plan"]["slots"][0]["tables"][0]["table"],
        "public.accounts",
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // Another CA: exit 3 (a connection failure), naming the certificate.
    let wrong_ca = dsn(&server, &db, "localhost", &tls.other_ca_cert);
    let out = pgmig(&["plan"], "--source", &wrong_ca)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connecting to the source")
            && stderr.contains(&format!("host=localhost port={}", server.port()))
            && stderr.contains("invalid peer certificate: UnknownIssuer")
            && stderr
                .contains("hint: the server's certificate is not signed by a CA in `sslrootcert`"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // The right CA but an address the certificate does not name.
    let wrong_host = dsn(&server, &db, "127.0.0.1", &tls.ca_cert);
    let out = pgmig(&["plan"], "--source", &wrong_host)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
             certificate is only valid for DnsName(\"localhost\")"
        ) && String::from_utf8_lossy(&out.stderr)
            .contains("hint: the host name you connect to is not in the server's certificate"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // status reads the target over verified TLS, and names the certificate
    // problem as a warning (status exits 0 whatever it cannot read), with
    // the most verbose logging on.
    let out = pgmig(&["status", "--json", "-vvv"], "--target", &good)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(doc["step"], "not_set_up", "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    let out = pgmig(&["status", "--json", "-vvv"], "--target", &wrong_ca)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(SECRET), "{}", text(&out));
}
