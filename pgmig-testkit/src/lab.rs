//! Presets and availability checks for tests.

use std::io::Write;

use crate::cluster::Cluster;
use crate::error::LabError;
use crate::install::{NATIVE_MAJOR, PgInstall};
use crate::spec::ClusterSpec;

/// Entry points for tests: presets and "is this build here?" checks.
#[derive(Clone, Copy, Debug)]
pub struct Lab;

impl Lab {
    /// Starts the pgmig source preset: PostgreSQL 15 with pglogical
    /// preloaded (see [`ClusterSpec::source_pg15`]).
    pub async fn source_pg15() -> Result<Cluster, LabError> {
        ClusterSpec::source_pg15().start().await
    }

    /// The server binaries of `major`, or `None` after printing a skip notice.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when they are missing (CI never skips silently), and
    /// always when they are there but broken (e.g. report another version).
    pub fn require_major(major: u32) -> Option<PgInstall> {
        skip_if_unavailable(PgInstall::locate(major))
    }

    /// PostgreSQL 15 with pglogical, or `None` after printing a skip notice.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when either is missing.
    pub fn require_pglogical() -> Option<PgInstall> {
        skip_if_unavailable(PgInstall::locate_with_pglogical(NATIVE_MAJOR))
    }

    /// Whether this run is under CI (`CI=true`), where nothing may be skipped.
    pub fn is_ci() -> bool {
        crate::install::is_ci()
    }
}

/// `Some` for a found build, `None` (after a notice) for a missing one;
/// panics on anything else (a misconfigured build must fail the test).
fn skip_if_unavailable(found: Result<PgInstall, LabError>) -> Option<PgInstall> {
    match found {
        Ok(install) => Some(install),
        Err(err) if err.is_unavailable() => {
            skip_notice(&err);
            None
        }
        Err(err) => panic!("{err}"),
    }
}

/// Prints why a test is skipped straight to stderr, past the test
/// harness's output capture, so the notice is seen in a normal run.
fn skip_notice(err: &LabError) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {err}");
}

/// Returns from the enclosing test (which must return `()`) unless the
/// named PostgreSQL builds are installed; panics instead under `CI=true`.
///
/// ```no_run
/// # async fn demo() {
/// pgmig_testkit::skip_unless_available!(10, 16);
/// pgmig_testkit::skip_unless_available!(pglogical);
/// # }
/// ```
#[macro_export]
macro_rules! skip_unless_available {
    (pglogical) => {
        if $crate::Lab::require_pglogical().is_none() {
            return;
        }
    };
    ($($major:expr),+ $(,)?) => {
        $(
            if $crate::Lab::require_major($major).is_none() {
                return;
            }
        )+
    };
}
