//! The replica side of a comparison must be the frozen snapshot: paused, at
//! exactly P, before and after everything is read.

use pgmig_core::{Lsn, ServerVersion, admin};
use tokio_postgres::Client;

use super::VerifyError;

/// Fails unless the server is a standby whose replay is paused at `p`.
pub(crate) async fn check_paused_at(
    client: &Client,
    version: ServerVersion,
    p: Lsn,
    side: &str,
    when: &'static str,
) -> Result<(), VerifyError> {
    let paused = admin::is_replay_paused(client, version).await?;
    let replay = admin::last_replay_lsn(client, version).await?;
    if paused && replay == p {
        Ok(())
    } else {
        Err(VerifyError::NotFrozen {
            side: side.to_string(),
            when,
            expected: p,
            replay,
            paused,
        })
    }
}
