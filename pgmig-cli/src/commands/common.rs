//! What the server commands share: connecting per role, printing the SQL of
//! a dry run, asking before the first change to the source, JSON output.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use pgmig_core::ServerRole;
use pgmig_pglogical::Statement;
use serde::Serialize;
use tokio_postgres::Client;

use crate::cli::GlobalArgs;
use crate::exit::UsageError;
use crate::settings::Settings;

/// Connects to the server of `role`, naming it in the error.
pub async fn connect(settings: &Settings, role: ServerRole) -> anyhow::Result<Client> {
    let conn = settings.conn(role)?;
    conn.connect()
        .await
        .with_context(|| format!("connecting to the {role}"))
}

/// Prints one JSON document.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[derive(Serialize)]
struct DryRun<'a> {
    dry_run: bool,
    statements: &'a [Statement],
}

/// Prints the statements a command would run — as SQL a DBA could paste,
/// grouped by server in order — or as JSON.
pub fn print_dry_run(statements: &[Statement], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&DryRun {
            dry_run: true,
            statements,
        });
    }
    if statements.is_empty() {
        println!("-- nothing to do: every object already exists as wanted");
        return Ok(());
    }
    let mut current: Option<ServerRole> = None;
    for st in statements {
        if current != Some(st.role) {
            println!("\n-- on the {}:", st.role);
            current = Some(st.role);
        }
        println!(
            "-- {}\n{};",
            st.what,
            st.literal_sql().trim_end_matches(';')
        );
    }
    Ok(())
}

/// Before the first change to the source: shows what will be done and asks.
/// `--yes` answers for automation; without a terminal and without `--yes`,
/// refuses (exit 2).
pub fn confirm(global: &GlobalArgs, summary: &str) -> anyhow::Result<()> {
    confirm_change(global, summary, "the source")
}

/// Like [`confirm`], for a change to `server` (e.g. "the target").
pub fn confirm_change(global: &GlobalArgs, summary: &str, server: &str) -> anyhow::Result<()> {
    if global.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UsageError(format!(
            "{summary}\nrefusing to change {server} without confirmation: no terminal to ask on; \
             pass --yes (or run with --dry-run to see the SQL)"
        ))
        .into());
    }
    eprint!("{summary}\nProceed? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(UsageError("cancelled: nothing was changed".into()).into())
    }
}
