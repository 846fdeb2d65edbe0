//! Resolving a parsed [`ConnConfig`]: the `PG*` environment variables,
//! libpq's defaults and the passfile, behind an injectable [`Env`].

use std::path::{Path, PathBuf};

use tracing::debug;

use super::conn_config::ConnConfig;
use super::passfile::lookup_password;
use super::sslmode::SslMode;
use super::{ConfigError, DEFAULT_PORT, DEFAULT_SOCKET_DIR};

/// Where environment variables come from.
///
/// [`ProcessEnv`] reads the process environment; any
/// `Fn(&str) -> Option<String>` also works, so tests can pass a map:
/// `cfg.resolve_with(&|name: &str| vars.get(name).cloned())`.
pub trait Env {
    /// The value of variable `name`, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The environment of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The environment variables read by [`ConnConfig::resolve`] and the
/// keyword each one provides a default for.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGAPPNAME", "application_name"),
    ("PGOPTIONS", "options"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
];

impl ConnConfig {
    /// The parameters given by the `PG*` variables of `env` alone (see
    /// [`ENV_VARS`]); empty variables count as unset.
    pub fn from_env(env: &dyn Env) -> Result<ConnConfig, ConfigError> {
        let mut cfg = ConnConfig::default();
        for (var, key) in ENV_VARS {
            if let Some(value) = env.var(var).filter(|v| !v.is_empty()) {
                cfg.set(key, &value).map_err(|source| ConfigError::Env {
                    var: (*var).to_owned(),
                    source: Box::new(source),
                })?;
            }
        }
        Ok(cfg)
    }

    /// This config completed as libpq would complete it, from the process
    /// environment. See [`ConnConfig::resolve_with`].
    pub fn resolve(&self) -> Result<ConnConfig, ConfigError> {
        self.resolve_with(&ProcessEnv)
    }

    /// This config completed as libpq would complete it, reading variables
    /// from `env`:
    ///
    /// 1. each keyword not given takes its `PG*` variable ([`ENV_VARS`]);
    ///    given keywords win, `host` and `hostaddr` are taken separately;
    /// 2. then the defaults: host = the Unix-socket directory
    ///    `/var/run/postgresql` when it exists on this machine, else
    ///    `localhost` (only when neither host nor hostaddr is given);
    ///    port = 5432; user = `$USER` (else `$LOGNAME`, else an error);
    ///    dbname = the user name;
    /// 3. TLS roots: `sslrootcert=system` makes the default sslmode
    ///    `verify-full` and refuses weaker modes (as libpq 16 does);
    ///    `verify-ca`/`verify-full` without `sslrootcert` use
    ///    `~/.postgresql/root.crt`; `require` uses that file too when it
    ///    exists (then the chain is verified, as libpq does);
    /// 4. without a password, the passfile (`passfile`, else `PGPASSFILE`,
    ///    else `~/.pgpass`) is searched for each host in turn, and the first
    ///    match is used for all hosts.
    ///
    /// Resolving twice gives the same result.
    pub fn resolve_with(&self, env: &dyn Env) -> Result<ConnConfig, ConfigError> {
        let mut cfg = self.clone();
        cfg.fill_missing(ConnConfig::from_env(env)?);

        if cfg.hosts.is_empty() && cfg.hostaddrs.is_empty() {
            cfg.hosts = vec![default_host().to_owned()];
        }
        if cfg.ports.is_empty() {
            cfg.ports = vec![DEFAULT_PORT];
        }
        if cfg.user.is_none() {
            cfg.user = ["USER", "LOGNAME"]
                .into_iter()
                .find_map(|v| env.var(v).filter(|u| !u.is_empty()));
        }
        let Some(user) = cfg.user.clone() else {
            return Err(ConfigError::MissingUser);
        };
        if cfg.dbname.is_none() {
            cfg.dbname = Some(user.clone());
        }

        let home = env.var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        cfg.resolve_root_cert(home.as_deref())?;
        cfg.validate()?;

        if cfg.password.is_none() {
            let passfile = match (&cfg.passfile, &home) {
                (Some(p), _) => Some(PathBuf::from(p)),
                (None, Some(home)) => Some(home.join(".pgpass")),
                (None, None) => None,
            };
            if let Some(passfile) = passfile {
                cfg.password = cfg.lookup_passfile(&passfile, &user);
            }
        }
        Ok(cfg)
    }

    /// Fills every keyword not set here from `env`.
    fn fill_missing(&mut self, env: ConnConfig) {
        let ConnConfig {
            hosts,
            hostaddrs,
            ports,
            dbname,
            user,
            password,
            passfile,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            connect_timeout,
            application_name,
            options,
            target_session_attrs,
            channel_binding,
            load_balance_hosts,
            keepalives,
            keepalives_idle,
            keepalives_interval,
            keepalives_count,
            tcp_user_timeout,
        } = env;
        fn fill<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        if self.hosts.is_empty() {
            self.hosts = hosts;
        }
        if self.hostaddrs.is_empty() {
            self.hostaddrs = hostaddrs;
        }
        if self.ports.is_empty() {
            self.ports = ports;
        }
        fill(&mut self.dbname, dbname);
        fill(&mut self.user, user);
        fill(&mut self.password, password);
        fill(&mut self.passfile, passfile);
        fill(&mut self.sslmode, sslmode);
        fill(&mut self.sslrootcert, sslrootcert);
        fill(&mut self.sslcert, sslcert);
        fill(&mut self.sslkey, sslkey);
        fill(&mut self.connect_timeout, connect_timeout);
        fill(&mut self.application_name, application_name);
        fill(&mut self.options, options);
        fill(&mut self.target_session_attrs, target_session_attrs);
        fill(&mut self.channel_binding, channel_binding);
        fill(&mut self.load_balance_hosts, load_balance_hosts);
        fill(&mut self.keepalives, keepalives);
        fill(&mut self.keepalives_idle, keepalives_idle);
        fill(&mut self.keepalives_interval, keepalives_interval);
        fill(&mut self.keepalives_count, keepalives_count);
        fill(&mut self.tcp_user_timeout, tcp_user_timeout);
    }

    /// Applies the `sslrootcert` rules of [`ConnConfig::resolve_with`], step 3.
    fn resolve_root_cert(&mut self, home: Option<&Path>) -> Result<(), ConfigError> {
        if self.sslrootcert.as_deref() == Some("system") {
            match self.sslmode {
                None => self.sslmode = Some(SslMode::VerifyFull),
                Some(mode) if mode >= SslMode::VerifyCa => {}
                Some(mode) => {
                    return Err(ConfigError::Invalid {
                        reason: format!(
                            "sslmode={mode} may not be used with sslrootcert=system \
                             (use verify-full or verify-ca)"
                        ),
                    });
                }
            }
            return Ok(());
        }
        if self.sslrootcert.is_some() {
            return Ok(());
        }
        let default = home.map(|h| h.join(".postgresql").join("root.crt"));
        match self.sslmode() {
            SslMode::VerifyCa | SslMode::VerifyFull => match default {
                Some(path) => self.sslrootcert = Some(path.to_string_lossy().into_owned()),
                None => {
                    return Err(ConfigError::Invalid {
                        reason: format!(
                            "sslmode={} needs a root certificate: set sslrootcert \
                             (HOME is not set, so ~/.postgresql/root.crt cannot be used)",
                            self.sslmode()
                        ),
                    });
                }
            },
            SslMode::Require => {
                if let Some(path) = default.filter(|p| p.is_file()) {
                    debug!(sslrootcert = %path.display(), "sslmode=require verifies the chain against the default root certificate");
                    self.sslrootcert = Some(path.to_string_lossy().into_owned());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The first password the passfile gives for one of the hosts.
    fn lookup_passfile(&self, passfile: &Path, user: &str) -> Option<super::Secret> {
        let dbname = self.dbname.as_deref().unwrap_or(user);
        let n = self.hosts.len().max(self.hostaddrs.len());
        (0..n).find_map(|i| {
            let host = match (self.hosts.get(i), self.hostaddrs.get(i)) {
                (Some(h), _) => h.clone(),
                (None, Some(a)) => a.to_string(),
                (None, None) => String::new(),
            };
            lookup_password(passfile, &host, self.port_for(i), dbname, user)
        })
    }
}

/// libpq's default host: the Unix-socket directory when this machine has
/// it, else `localhost`.
pub(crate) fn default_host() -> &'static str {
    if Path::new(DEFAULT_SOCKET_DIR).is_dir() {
        DEFAULT_SOCKET_DIR
    } else {
        "localhost"
    }
}
