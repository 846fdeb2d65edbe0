//! A lab for load tests: a source primary with its streaming replica and a
//! target, a database on each, the replica paused at P and P recorded in the
//! target (without pglogical: the load needs only P and the plan), the
//! schema transferred.

#![allow(dead_code)]

use std::time::Duration;

use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Filters, Plan};
use pgmig_core::{Lsn, ServerVersion, admin, catalog, state};
use pgmig_fullload::load::{LoadOptions, LoadReport, load};
use pgmig_fullload::schema::{SchemaOptions, transfer_schema};
use pgmig_testkit::Cluster;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(60);

pub fn conn(cluster: &Cluster, db: &str) -> ConnConfig {
    ConnConfig::parse(&format!("{} sslmode=disable", cluster.conninfo(db))).expect("lab conninfo")
}

pub struct LoadLab {
    pub source: Cluster,
    pub replica: Cluster,
    pub target: Cluster,
    pub db: String,
    pub target_db: String,
    pub p: Lsn,
}

impl LoadLab {
    /// Starts the servers, runs `sql` on the source, pauses the replica once
    /// it has replayed it, records P and the plan, transfers the schema.
    pub async fn start(source_major: u32, target_major: u32, sql: &str) -> LoadLab {
        let source = Cluster::primary(source_major).await.expect("source");
        let (replica, target) =
            tokio::join!(source.create_replica(), Cluster::primary(target_major));
        let (replica, target) = (replica.expect("replica"), target.expect("target"));
        let db = source.create_database("load").await.unwrap();
        source.execute(&db, sql).await.unwrap();
        let target_db = target.create_database("target").await.unwrap();
        let mut lab = LoadLab {
            source,
            replica,
            target,
            db,
            target_db,
            p: Lsn::from(0),
        };
        lab.pause().await;
        lab.record().await;
        let opts = SchemaOptions {
            no_owner: true,
            ..SchemaOptions::default()
        };
        transfer_schema(&lab.source_conn(), &lab.target_conn(), &opts)
            .await
            .expect("schema transfer");
        lab
    }

    pub fn source_conn(&self) -> ConnConfig {
        conn(&self.source, &self.db)
    }

    pub fn replica_conn(&self) -> ConnConfig {
        conn(&self.replica, &self.db)
    }

    pub fn target_conn(&self) -> ConnConfig {
        conn(&self.target, &self.target_db)
    }

    /// Waits for the replica to replay the source's head, then pauses it.
    pub async fn pause(&mut self) {
        let head = self.source.current_wal_lsn().await.unwrap();
        self.replica.wait_for_replay(head, WAIT).await.unwrap();
        let client = self.replica.connect(&self.db).await.unwrap();
        let v = ServerVersion::query(&client).await.unwrap();
        self.p = admin::pause_replay(&client, v, WAIT, Duration::from_millis(500))
            .await
            .expect("pause");
    }

    pub async fn resume(&self) {
        let client = self.replica.connect(&self.db).await.unwrap();
        let v = ServerVersion::query(&client).await.unwrap();
        admin::resume_replay(&client, v, WAIT)
            .await
            .expect("resume");
    }

    /// Records the plan (every table) and P in the target.
    async fn record(&self) {
        let source = self.source.connect(&self.db).await.unwrap();
        let v = ServerVersion::query(&source).await.unwrap();
        let tables = catalog::list_tables(&source, v).await.unwrap();
        let plan = Plan::build(&tables, &Default::default(), 4, &Filters::default()).unwrap();
        let sysid = admin::system_identifier(&source).await.unwrap();
        let target = self.target.connect(&self.target_db).await.unwrap();
        state::init_migration(&target, sysid, &self.db, &plan)
            .await
            .unwrap();
        state::set_pause_lsn(&target, self.p).await.unwrap();
    }

    pub async fn load(
        &self,
        opts: &LoadOptions,
    ) -> Result<LoadReport, pgmig_fullload::load::LoadError> {
        load(
            &self.replica_conn(),
            &self.target_conn(),
            opts,
            None,
            CancellationToken::new(),
        )
        .await
    }

    /// Every table's rows as sorted text, on the replica and the target,
    /// with the same output settings.
    pub async fn rows(cluster: &Cluster, db: &str, table: &str) -> Vec<String> {
        let client = cluster.connect(db).await.unwrap();
        client
            .batch_execute(
                "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; \
                 SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'",
            )
            .await
            .unwrap();
        let sql = format!("SELECT t::text FROM ONLY {table} t");
        let mut out: Vec<String> = client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        out.sort();
        out
    }

    /// Asserts the table holds the same rows on the replica and the target.
    pub async fn assert_equal(&self, table: &str) -> usize {
        let on_replica = Self::rows(&self.replica, &self.db, table).await;
        let on_target = Self::rows(&self.target, &self.target_db, table).await;
        assert_eq!(
            on_replica.len(),
            on_target.len(),
            "{table}: row counts differ"
        );
        for (a, b) in on_replica.iter().zip(&on_target) {
            assert_eq!(a, b, "{table}: rows differ");
        }
        on_replica.len()
    }

    pub async fn target_one(&self, sql: &str) -> String {
        self.target
            .query_one_string(&self.target_db, sql)
            .await
            .unwrap()
    }
}
