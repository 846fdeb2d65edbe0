//! `pgmig demo`: a whole migration on this machine, under live writes.
//!
//! Starts a local source (PostgreSQL 15 with pglogical), its maintenance
//! replica and a target (PostgreSQL 16 when its binaries are installed,
//! else 15) on free loopback ports with `pgmig-testkit`, builds a small
//! dataset, keeps a write load running on the source, and runs phase I
//! (`pgmig run`), phase II (`pgmig cdc --until-caught-up`) and the cutover
//! (`pgmig cutover`, once the write load stops) against them. Every
//! server it started is stopped and removed when it ends or is interrupted.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pgmig_testkit::{Cluster, Lab};
use tokio_util::sync::CancellationToken;

use super::run::RunArgs;
use super::snapshot::interrupted;
use crate::cli::GlobalArgs;
use crate::exit::{Outcome, UsageError};

/// The demo's data: a busy table with a bigint key, a table with a key and
/// a unique email, a table without a key, a sequence.
const DATA: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, user_id int NOT NULL,
    kind text NOT NULL, amount numeric(12,2), payload jsonb, note text);
INSERT INTO shop.events (created_at, user_id, kind, amount, payload, note)
SELECT timestamptz '2024-01-01' + make_interval(secs => g * 13), (g * 7919) % 1000,
       (ARRAY['click','view','buy','refund'])[1 + g % 4], (g % 10000) / 100.0,
       jsonb_build_object('a', g, 'tags', jsonb_build_array(g % 3, g % 5)), md5(g::text)
FROM generate_series(1, 200000) g;
CREATE INDEX events_user_id_idx ON shop.events (user_id);
CREATE TABLE shop.users (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text);
INSERT INTO shop.users SELECT g, 'user' || g || '@example.com', 'name ' || g FROM generate_series(1, 5000) g;
CREATE TABLE shop.audit_log (ts timestamptz NOT NULL DEFAULT now(), msg text);
INSERT INTO shop.audit_log SELECT timestamptz '2024-01-01' + make_interval(secs => g), 'boot ' || g FROM generate_series(1, 20000) g;
"#;

/// Runs the demo.
pub async fn run(global: &GlobalArgs) -> anyhow::Result<Outcome> {
    prerequisites()?;
    let cancel = CancellationToken::new();
    let demo = demo(global, cancel.clone());
    tokio::pin!(demo);
    tokio::select! {
        r = &mut demo => r,
        signal = interrupted() => {
            let signal = signal?;
            cancel.cancel();
            eprintln!("\ninterrupted by {signal}: stopping the demo servers and removing their data");
            // Dropping the demo stops and removes every server it started.
            Ok(Outcome::RuntimeFailure)
        }
    }
}

fn prerequisites() -> anyhow::Result<()> {
    let pg15 = Path::new("/usr/lib/postgresql/15/bin/postgres");
    let pglogical = Path::new("/usr/lib/postgresql/15/lib/pglogical.so");
    let mut missing = Vec::new();
    if !pg15.exists() && std::env::var_os("PGMIG_PG15_BIN").is_none() {
        missing.push("postgresql-15");
    }
    if !pglogical.exists() {
        missing.push("postgresql-15-pglogical");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "pgmig demo needs PostgreSQL 15 and pglogical; install them with:\n  apt-get install {}\n\
         (or run `bash .ci/install` in the pgmig repository)",
        missing.join(" ")
    ))
    .into())
}

async fn demo(global: &GlobalArgs, cancel: CancellationToken) -> anyhow::Result<Outcome> {
    println!(
        "pgmig demo: starting a source (PostgreSQL 15 + pglogical), its maintenance replica and a target"
    );
    let source = Lab::source_pg15().await?;
    let target_major = if pgmig_testkit::PgInstall::locate(16).is_ok() {
        16
    } else {
        15
    };
    let (replica, target) = tokio::join!(source.create_replica(), Cluster::primary(target_major));
    let (replica, target) = (replica?, target?);
    let db = source.create_database("demo").await?;
    let target_db = target.create_database("demo").await?;
    println!(
        "  source  PG{} on port {}\n  replica PG{} on port {} (streaming from the source)\n  target  PG{} on port {}",
        source.major(),
        source.port(),
        replica.major(),
        replica.port(),
        target.major(),
        target.port()
    );
    println!("building the demo data (225,000 rows) on the source");
    source.execute(&db, DATA).await?;
    let head = source.current_wal_lsn().await?;
    replica
        .wait_for_replay(head, Duration::from_secs(60))
        .await?;

    let writes = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_load(
        source.connect(&db).await?,
        cancel.child_token(),
        writes.clone(),
    ));
    println!(
        "a write load now runs on the source (inserts, updates, deletes) for the whole migration\n"
    );

    let g = GlobalArgs {
        yes: true,
        json: false,
        dry_run: false,
        verbose: global.verbose,
        config: None,
        source: Some(source.conninfo(&db)),
        replica: Some(replica.conninfo(&db)),
        target: Some(target.conninfo(&target_db)),
    };
    let args = RunArgs {
        slots: 2,
        jobs: None,
        chunk_size: "8MB".into(),
        no_owner: true,
        verify_mode: "checksums".into(),
        keep_paused: false,
    };
    let phase1 = Box::pin(super::run::run(&g, &args)).await;
    if !matches!(phase1, Ok(Outcome::Success)) {
        cancel.cancel();
        let _ = writer.await;
        eprintln!("the demo stopped in phase I; removing the servers");
        return phase1;
    }

    println!("\n== phase II: change data capture from P while the source keeps being written");
    let cdc = step(&g, &["cdc", "--until-caught-up"]).await;
    if !matches!(cdc, Ok(Outcome::Success)) {
        cancel.cancel();
        let _ = writer.await;
        eprintln!("the demo stopped in phase II; removing the servers");
        return cdc;
    }
    // The application stops writing: the cutover window opens.
    cancel.cancel();
    let _ = writer.await;
    println!(
        "\n== cutover: the write load stopped after {} changes on the source",
        writes.load(Ordering::Relaxed)
    );
    let cutover = step(&g, &["cutover"]).await;
    match cutover {
        Ok(Outcome::Success) => {
            println!(
                "\ndemo done: the target holds the source's data; stopping and removing the servers"
            );
            Ok(Outcome::Success)
        }
        other => {
            eprintln!("the cutover said NO-GO; removing the servers");
            other
        }
    }
}

/// Runs one pgmig command in this process, as if typed after `pgmig`.
async fn step(global: &GlobalArgs, args: &[&str]) -> anyhow::Result<Outcome> {
    let argv = std::iter::once("pgmig").chain(args.iter().copied());
    let cli = crate::cli::Cli {
        global: global.clone(),
        command: <crate::cli::Cli as clap::Parser>::try_parse_from(argv)?.command,
    };
    Box::pin(super::run(&cli)).await
}

/// Inserts, updates and deletes on the source until cancelled.
async fn write_load(
    client: tokio_postgres::Client,
    cancel: CancellationToken,
    writes: Arc<AtomicU64>,
) {
    let mut n: i64 = 0;
    while !cancel.is_cancelled() {
        n += 1;
        let sql = format!(
            "INSERT INTO shop.events (created_at, user_id, kind, amount, payload, note) \
               VALUES (now(), {u}, 'buy', {n} % 1000, '{{\"live\": {n}}}', 'live write'); \
             UPDATE shop.users SET name = 'renamed ' || {n} WHERE id = {u}; \
             INSERT INTO shop.audit_log (msg) VALUES ('live {n}'); \
             DELETE FROM shop.events WHERE id = {d}",
            u = 1 + n % 5000,
            d = 1 + (n * 37) % 200_000
        );
        if client.batch_execute(&sql).await.is_ok() {
            writes.fetch_add(4, Ordering::Relaxed);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
