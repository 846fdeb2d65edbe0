//! Logical slots held by another consumer, for tests of "slot in use".

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::cluster::{Cluster, LAB_SUPERUSER};
use crate::error::LabError;
use crate::install::client_bin_dir;
use crate::port::LAB_HOST;

impl Cluster {
    /// Makes the logical `slot` in `db` active by streaming it with
    /// `pg_recvlogical --start` into /dev/null, and returns once
    /// `pg_replication_slots.active` says so (within `timeout`). The slot
    /// stays active until the returned child is dropped (it is killed then).
    pub async fn hold_slot_active(
        &self,
        db: &str,
        slot: &str,
        timeout: Duration,
    ) -> Result<Child, LabError> {
        let child = Command::new(client_bin_dir().join("pg_recvlogical"))
            .args(["-h", LAB_HOST, "-p", &self.port().to_string()])
            .args(["-U", LAB_SUPERUSER, "-d", db, "--slot", slot])
            .args(["--start", "--no-loop", "-f", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LabError::io("starting pg_recvlogical", e))?;
        let client = self.connect(db).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let active: bool = client
                .query_one(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(|e| LabError::pg(format!("reading slot {slot}"), e))?
                .get(0);
            if active {
                return Ok(child);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LabError::Unexpected {
                    context: format!("holding slot {slot} active on {}", self.label()),
                    detail: format!("pg_recvlogical did not make it active within {timeout:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
