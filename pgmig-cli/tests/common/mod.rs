//! Shared scaffolding of the CLI tests: a source (PG15 + pglogical), its
//! streaming replica and a target, one fresh database on each, and the
//! `pgmig` binary run against them through `PGMIG_*` variables.
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::process::Output;
use std::time::Duration;

use pgmig_testkit::{Cluster, Lab};
use tokio::process::Command;

/// How long a test waits for replay or progress before failing.
pub const WAIT: Duration = Duration::from_secs(120);

/// Source, replica, target and their databases.
pub struct Lab3 {
    /// PG15 with pglogical.
    pub source: Cluster,
    /// A streaming standby of `source`.
    pub replica: Cluster,
    /// The target server.
    pub target: Cluster,
    /// The database on source and replica.
    pub db: String,
    /// The database on the target.
    pub target_db: String,
}

impl Lab3 {
    /// A lab whose source database holds `data`, target PG15.
    pub async fn start(data: &str) -> Lab3 {
        Lab3::start_with_target(data, 15).await
    }

    /// A lab whose source database holds `data`, target of `target_major`;
    /// returns once the replica replayed `data`.
    pub async fn start_with_target(data: &str, target_major: u32) -> Lab3 {
        let source = Lab::source_pg15().await.expect("source");
        let (replica, target) =
            tokio::join!(source.create_replica(), Cluster::primary(target_major));
        let (replica, target) = (replica.expect("replica"), target.expect("target"));
        let db = source.create_database("app").await.unwrap();
        source.execute(&db, data).await.unwrap();
        let target_db = target.create_database("target").await.unwrap();
        let lab = Lab3 {
            source,
            replica,
            target,
            db,
            target_db,
        };
        lab.wait_replayed().await;
        lab
    }

    /// Adds the bench workload (`bench/dataset.sql`) at `scale` to the
    /// source database and waits for the replica.
    pub async fn add_bench_dataset(&self, scale: &str) {
        let dataset = pgmig_testkit::workspace_root()
            .join("bench")
            .join("dataset.sql");
        let status = Command::new(pgmig_testkit::client_bin_dir().join("psql"))
            .args(["-X", "-q", "-v", &format!("scale={scale}"), "-f"])
            .arg(&dataset)
            .args(["-d", &self.source.conninfo(&self.db)])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .expect("run psql");
        assert!(status.success(), "{}", dataset.display());
        self.wait_replayed().await;
    }

    /// Waits until the replica replayed everything the source wrote so far.
    pub async fn wait_replayed(&self) {
        let head = self.source.current_wal_lsn().await.unwrap();
        self.replica.wait_for_replay(head, WAIT).await.unwrap();
    }

    /// `pgmig <args>` with `PGMIG_SOURCE`, `PGMIG_REPLICA` and
    /// `PGMIG_TARGET` set to the lab's servers.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(
            args,
            &self.source.conninfo(&self.db),
            &self.replica.conninfo(&self.db),
            &self.target.conninfo(&self.target_db),
        )
    }

    /// `pgmig <args>` against the given connection strings.
    pub fn command_with(
        &self,
        args: &[&str],
        source: &str,
        replica: &str,
        target: &str,
    ) -> Command {
        pgmig_command(args, source, replica, target)
    }

    /// Runs `pgmig <args>` to the end.
    pub async fn pgmig(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("run pgmig")
    }

    /// The first column of the first row of `sql` on the target, as text.
    pub async fn target_sql(&self, sql: &str) -> String {
        self.target
            .query_one_string(&self.target_db, sql)
            .await
            .unwrap()
    }

    /// The first column of the first row of `sql` on the source, as text.
    pub async fn source_sql(&self, sql: &str) -> String {
        self.source.query_one_string(&self.db, sql).await.unwrap()
    }

    /// `rows:md5` of a table's rows in text form, order-independent.
    pub async fn digest(cluster: &Cluster, db: &str, table: &str) -> String {
        cluster
            .query_one_string(
                db,
                &format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
                     FROM {table} t"
                ),
            )
            .await
            .unwrap()
    }

    /// Asserts `table` holds the same rows on the source and the target.
    pub async fn assert_source_equals_target(&self, table: &str) {
        assert_eq!(
            Lab3::digest(&self.source, &self.db, table).await,
            Lab3::digest(&self.target, &self.target_db, table).await,
            "{table}: source and target differ"
        );
    }

    /// Asserts `table` holds the same rows on the replica and the target.
    pub async fn assert_replica_equals_target(&self, table: &str) {
        assert_eq!(
            Lab3::digest(&self.replica, &self.db, table).await,
            Lab3::digest(&self.target, &self.target_db, table).await,
            "{table}: replica and target differ"
        );
    }

    /// Transactions applied by `pgmig cdc` so far, over every slot.
    pub async fn applied(&self) -> i64 {
        self.target_sql("SELECT coalesce(sum(transactions), 0)::text FROM pgmig.cdc_progress")
            .await
            .parse()
            .unwrap()
    }

    /// `setup --yes --slots <slots>`, `snapshot`, `schema --no-owner`,
    /// `load --jobs 2`, each asserted to succeed.
    pub async fn setup_to_load(&self, slots: &str) {
        self.setup_to_schema(slots).await;
        assert_ok(&self.pgmig(&["load", "--jobs", "2"]).await, "load");
    }

    /// `setup --yes --slots <slots>`, `snapshot`, `schema --no-owner`.
    pub async fn setup_to_schema(&self, slots: &str) {
        assert_ok(
            &self.pgmig(&["setup", "--yes", "--slots", slots]).await,
            "setup",
        );
        assert_ok(&self.pgmig(&["snapshot"]).await, "snapshot");
        assert_ok(&self.pgmig(&["schema", "--no-owner"]).await, "schema");
    }
}

/// `pgmig <args>` with `PGMIG_SOURCE`, `PGMIG_REPLICA` and `PGMIG_TARGET`
/// set to the given connection strings, stdin closed, `RUST_LOG` unset.
pub fn pgmig_command(args: &[&str], source: &str, replica: &str, target: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgmig"));
    c.args(args)
        .env("PGMIG_SOURCE", source)
        .env("PGMIG_REPLICA", replica)
        .env("PGMIG_TARGET", target)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    c
}

/// Every file below `dir`, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Polls `cond` every 20 ms until it holds, failing after [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts exit code 0.
pub fn assert_ok(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}\n{}", text(o));
}

/// Asserts exit `code` and returns stdout + stderr.
pub fn assert_exit(o: &Output, code: i32, what: &str) -> String {
    assert_eq!(o.status.code(), Some(code), "{what}\n{}", text(o));
    text(o)
}
