//! Where the servers are and what the migration looks like, from flags, then
//! `PGMIG_*` environment variables (both handled by clap), then the config
//! file (`--config FILE`, else `./pgmig.toml` when present).
//!
//! Connection strings are taken as plain strings and parsed here, never by
//! clap: clap would quote a rejected value — password included — in its
//! error.

use std::path::{Path, PathBuf};

use pgmig_core::ServerRole;
use pgmig_core::config::{ConnConfig, redact_dsn};
use pgmig_core::plan::Plan;
use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::exit::UsageError;

/// The default config file, read when present and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "pgmig.toml";

/// One server's section of the config file. No `Debug`: it holds a raw DSN.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    dsn: String,
}

/// The config file as written by `plan --write` or by hand.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    source: Option<ServerSection>,
    replica: Option<ServerSection>,
    target: Option<ServerSection>,
    /// The slot plan.
    pub plan: Option<Plan>,
}

/// The resolved settings of one invocation. No `Debug`: it holds raw DSNs.
pub struct Settings {
    source: Option<(String, Origin)>,
    replica: Option<(String, Origin)>,
    target: Option<(String, Origin)>,
    /// The plan from the config file, if it has one.
    pub plan: Option<Plan>,
    /// The config file that was read.
    pub config_file: Option<PathBuf>,
}

/// Where a setting came from, for messages.
#[derive(Debug, Clone, Copy)]
enum Origin {
    FlagOrEnv,
    File,
}

impl Settings {
    /// Reads the config file (if any) and merges it under flags and environment.
    pub fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let (file, config_file) = match &global.config {
            Some(path) => (read_config(path)?, Some(path.clone())),
            None if Path::new(DEFAULT_CONFIG).is_file() => (
                read_config(Path::new(DEFAULT_CONFIG))?,
                Some(PathBuf::from(DEFAULT_CONFIG)),
            ),
            None => (FileConfig::default(), None),
        };
        let pick = |flag: &Option<String>, section: Option<ServerSection>| {
            flag.clone()
                .map(|dsn| (dsn, Origin::FlagOrEnv))
                .or(section.map(|s| (s.dsn, Origin::File)))
        };
        Ok(Settings {
            source: pick(&global.source, file.source),
            replica: pick(&global.replica, file.replica),
            target: pick(&global.target, file.target),
            plan: file.plan,
            config_file,
        })
    }

    /// Whether a server is configured at all.
    pub fn has(&self, role: ServerRole) -> bool {
        self.raw(role).is_some()
    }

    fn raw(&self, role: ServerRole) -> Option<&(String, Origin)> {
        match role {
            ServerRole::Source => self.source.as_ref(),
            ServerRole::Replica => self.replica.as_ref(),
            ServerRole::Target => self.target.as_ref(),
        }
    }

    /// The connection of `role` as the user wrote it (not completed from
    /// the environment or the passfile): what is stored where other machines
    /// read it, such as pglogical's node DSN.
    pub fn written_conn(&self, role: ServerRole) -> anyhow::Result<ConnConfig> {
        // conn() reports a missing or malformed string with its origin.
        let resolved = self.conn(role)?;
        Ok(self
            .raw(role)
            .and_then(|(dsn, _)| ConnConfig::parse(dsn).ok())
            .unwrap_or(resolved))
    }

    /// The connection of `role`, parsed and completed from the `PG*`
    /// variables and the passfile. A missing or malformed one is a usage
    /// error that says how to give it, never quoting a password.
    pub fn conn(&self, role: ServerRole) -> anyhow::Result<ConnConfig> {
        let Some((dsn, origin)) = self.raw(role) else {
            return Err(UsageError(format!(
                "no {role} connection: pass --{role}, set PGMIG_{upper}, or add\n  [{role}]\n  dsn = \"host=… dbname=…\"\nto {DEFAULT_CONFIG}",
                upper = role.as_str().to_uppercase()
            ))
            .into());
        };
        let from = match origin {
            Origin::FlagOrEnv => format!("--{role} / PGMIG_{}", role.as_str().to_uppercase()),
            Origin::File => format!(
                "[{role}] in {}",
                self.config_file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_CONFIG))
                    .display()
            ),
        };
        let parsed = ConnConfig::parse(dsn)
            .and_then(|c| c.resolve())
            .map_err(|e| {
                UsageError(format!(
                    "{role} connection from {from} ({}): {e}",
                    redact_dsn(dsn)
                ))
            })?;
        Ok(parsed.with_application_name(format!("pgmig {role}")))
    }
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read config file {}: {e}", path.display())))?;
    // toml's own message quotes the offending line, which may hold a
    // password: report the line number and the reason only.
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1))
            .map(|n| format!(" line {n}:"))
            .unwrap_or_default();
        UsageError(format!(
            "invalid config file {}:{line} {}",
            path.display(),
            e.message().trim()
        ))
        .into()
    })
}
