//! `pgmig demo` (for now: its prerequisites).

use std::path::Path;

use crate::exit::Outcome;

/// Checks the demo's prerequisites and says what the demo will do.
pub fn run() -> Outcome {
    let pg15 = Path::new("/usr/lib/postgresql/15/bin/postgres");
    let pglogical = Path::new("/usr/lib/postgresql/15/lib/pglogical.so");
    let mut missing = Vec::new();
    if !pg15.exists() {
        missing.push("postgresql-15");
    }
    if !pglogical.exists() {
        missing.push("postgresql-15-pglogical");
    }
    if !missing.is_empty() {
        eprintln!(
            "pgmig demo needs PostgreSQL 15 and pglogical; install them with:\n  apt-get install {}\n(or run `bash .ci/install` in the pgmig repository)",
            missing.join(" ")
        );
        return Outcome::Usage;
    }
    println!(
        "pgmig demo: PostgreSQL 15 and pglogical are installed.\n\
         The demo migration (a local source, maintenance replica and target under live writes,\n\
         taken through check, plan, setup, schema, snapshot, load, verify, CDC and cutover) is\n\
         being built step by step. Try:\n  pgmig lsn compare 35FE3/B63D4718 35FE3/B63D4717"
    );
    Outcome::Success
}
