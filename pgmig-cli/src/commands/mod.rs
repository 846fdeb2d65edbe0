//! Runs the parsed command and turns its result into an exit code.

use std::cmp::Ordering;
use std::process::ExitCode;

use pgmig_core::Lsn;
use serde::Serialize;

use crate::cli::{Cli, Command, LsnCommand};

/// How a command ended; each maps to one exit code of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed or data differ.
    #[allow(dead_code)]
    CheckFailed,
    /// Exit 2: bad usage or configuration.
    Usage,
    /// Exit 3: connection, SQL or I/O failure.
    RuntimeFailure,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(match outcome {
            Outcome::Success => 0,
            Outcome::CheckFailed => 1,
            Outcome::Usage => 2,
            Outcome::RuntimeFailure => 3,
        })
    }
}

/// Runs one command.
pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Lsn(LsnCommand::Compare { a, b }) => {
            lsn_compare(*a, *b, cli.global.json)?;
            Ok(Outcome::Success)
        }
        Command::Demo => Ok(demo()),
    }
}

#[derive(Serialize)]
struct LsnComparison {
    a: Lsn,
    b: Lsn,
    order: &'static str,
    distance_bytes: u64,
}

fn lsn_compare(a: Lsn, b: Lsn, json: bool) -> anyhow::Result<()> {
    let (order, distance) = match a.cmp(&b) {
        Ordering::Less => ("<", b.0 - a.0),
        Ordering::Equal => ("=", 0),
        Ordering::Greater => (">", a.0 - b.0),
    };
    if json {
        let doc = LsnComparison {
            a,
            b,
            order,
            distance_bytes: distance,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{order} {distance}");
    }
    Ok(())
}

fn demo() -> Outcome {
    let pg15 = std::path::Path::new("/usr/lib/postgresql/15/bin/postgres");
    let pglogical = std::path::Path::new("/usr/lib/postgresql/15/lib/pglogical.so");
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
         being built step by step; today pgmig provides the core types, the version-aware\n\
         admin calls and `pgmig lsn compare`. Try:\n  pgmig lsn compare 35FE3/B63D4718 35FE3/B63D4717"
    );
    Outcome::Success
}
