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
use pgmig_core::plan::{Filters, Plan, TablePattern};
use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;
use crate::exit::UsageError;

/// The default config file, read when present and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "pgmig.toml";

/// One server's section of the config file. No `Debug`: it holds a raw DSN.
#[derive(Deserialize, Serialize)]
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
    /// Which tables to migrate, before a plan exists (a plan carries its own).
    filters: Option<Filters>,
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
    /// The top-level `[filters]` of the config file (empty when absent).
    pub file_filters: Filters,
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
            file_filters: file.filters.unwrap_or_default(),
            config_file,
        })
    }

    /// The filters in force, the same way for every command: those of
    /// `plan` (the config file's plan, or the one recorded in the target;
    /// none before there is a plan), plus the config file's `[filters]`,
    /// plus the `--include`/`--exclude` flags given.
    pub fn filters(
        &self,
        plan: Option<&Plan>,
        include: &[TablePattern],
        exclude: &[TablePattern],
    ) -> Filters {
        plan.map(|p| p.filters.clone())
            .unwrap_or_default()
            .extended(
                self.file_filters.include.iter().cloned(),
                self.file_filters.exclude.iter().cloned(),
            )
            .extended(include.iter().cloned(), exclude.iter().cloned())
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

/// What `plan --write` writes: the connection sections without any
/// password, then the plan.
#[derive(Serialize)]
struct WrittenConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<ServerSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<ServerSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<ServerSection>,
    plan: Plan,
}

impl Settings {
    /// The connection of `role` as the user gave it, re-spelled without a
    /// password (a libpq key=value string); `None` when not configured.
    fn dsn_without_password(&self, role: ServerRole) -> anyhow::Result<Option<String>> {
        let Some((dsn, _)) = self.raw(role) else {
            return Ok(None);
        };
        let parsed = ConnConfig::parse(dsn)
            .map_err(|e| UsageError(format!("{role} connection ({}): {e}", redact_dsn(dsn))))?;
        Ok(Some(parsed.to_string()))
    }

    /// Writes the config file `path`: `[source]`, `[replica]` and `[target]`
    /// as given (never with a password) and `[plan]`, which a later
    /// [`Settings::load`] reads back.
    pub fn write_config(&self, path: &Path, plan: &Plan) -> anyhow::Result<()> {
        let section = |role| -> anyhow::Result<Option<ServerSection>> {
            Ok(self
                .dsn_without_password(role)?
                .map(|dsn| ServerSection { dsn }))
        };
        let config = WrittenConfig {
            source: section(ServerRole::Source)?,
            replica: section(ServerRole::Replica)?,
            target: section(ServerRole::Target)?,
            plan: plan.clone(),
        };
        let text = format!(
            "# pgmig configuration, written by `pgmig plan --write`.\n\
             # Passwords are never written here: use a passfile or PGPASSWORD.\n\
             # Edit the slots freely; `pgmig plan` validates the edited plan.\n\n{}",
            toml::to_string(&config)?
        );
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write config file {}: {e}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgmig_core::QualifiedTable;
    use pgmig_core::catalog::{ReplicaIdentity, TableInfo, TableKind};
    use pgmig_core::plan::WriteRates;

    fn global(config: Option<PathBuf>, source: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            verbose: 0,
            json: false,
            dry_run: false,
            yes: false,
            config,
            source: source.map(Into::into),
            replica: Some("postgres://rep:Pw0rd2@replica:5433/app".into()),
            target: None,
        }
    }

    #[test]
    fn written_config_reads_back_without_passwords() {
        let table = TableInfo {
            oid: 1,
            table: QualifiedTable::new("Sales", "Order Items"),
            kind: TableKind::Table,
            parent: None,
            table_bytes: 10,
            total_bytes: 10,
            estimated_rows: Some(3),
            primary_key: vec!["id".into()],
            unique_indexes: vec![],
            replica_identity: ReplicaIdentity::Default,
            unlogged: false,
            columns: vec![],
            dropped_columns: 0,
        };
        let filters = Filters {
            include: vec![],
            exclude: vec!["scratch.*".parse().unwrap()],
        };
        let plan = Plan::build(&[table], &WriteRates::new(), 6, &filters).unwrap();
        let dir = std::env::temp_dir().join(format!("pgmig-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgmig.toml");
        let given = global(None, Some("host=src dbname=app user=me password=Secr3t1"));
        Settings::load(&given)
            .unwrap()
            .write_config(&path, &plan)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("Secr3t1") && !text.contains("Pw0rd2"),
            "{text}"
        );
        assert!(!text.contains("[target]"), "{text}");

        let mut again = global(Some(path.clone()), None);
        again.replica = None;
        let settings = Settings::load(&again).unwrap();
        assert_eq!(settings.plan.as_ref(), Some(&plan));
        let source = settings
            .written_conn(ServerRole::Source)
            .unwrap()
            .to_string();
        assert!(
            source.contains("host=src") && source.contains("user=me"),
            "{source}"
        );
        assert!(settings.has(ServerRole::Replica));
        assert!(!settings.has(ServerRole::Target));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
