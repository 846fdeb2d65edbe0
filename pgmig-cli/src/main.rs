//! The `pgmig` binary: parses arguments, sets up logging, runs one command
//! and maps the outcome to the exit codes of the CLI contract (0 success,
//! 1 a check failed or data differ, 2 bad usage or config, 3 runtime failure).
//! All behaviour lives in the library crates; this stays thin.

mod cli;
mod commands;
mod exit;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind as ClapErrorKind;
use pgmig_core::config::redact_dsn;

use crate::cli::Cli;
use crate::exit::Outcome;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return Outcome::RuntimeFailure.into();
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            let role_of = |role| {
                let settings = settings::Settings::load(&cli.global).ok()?;
                Some(settings.conn(role).ok()?.user()?.to_owned())
            };
            if let Some(hint) = exit::privilege_hint(&err, reads_from(&cli.command), &role_of) {
                eprintln!("{hint}");
            }
            if let Some(hint) = exit::tls_hint(&err) {
                eprintln!("{hint}");
            }
            exit::classify(&err).into()
        }
    }
}

/// The server a command reads the migrated tables from, for naming the
/// server of a privilege error that does not say.
fn reads_from(command: &cli::Command) -> Option<pgmig_core::ServerRole> {
    use crate::commands::verify::Against;
    use pgmig_core::ServerRole;
    match command {
        cli::Command::Load(_) => Some(ServerRole::Replica),
        cli::Command::Verify(args) if args.against == Against::Replica => Some(ServerRole::Replica),
        cli::Command::Verify(_) | cli::Command::Cutover(_) | cli::Command::Schema(_) => {
            Some(ServerRole::Source)
        }
        _ => None,
    }
}

/// Logs go to stderr: `-v` info, `-vv` debug, `-vvv` trace; `RUST_LOG` wins
/// when set.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Prints clap's help, version or usage error. An error may quote an
/// argument — a connection string with a password, given unquoted — so its
/// text goes through the redactor first.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion => {
            // clap colours help only on a terminal.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{}", redact_dsn(&err.render().to_string()));
            Outcome::Usage.into()
        }
    }
}
