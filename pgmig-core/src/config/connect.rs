//! Connecting: the driver's config, a single client, a pool.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode as DriverSslMode;
use tracing::{Instrument, debug, info_span, warn};

use super::ConfigError;
use super::conn_config::ConnConfig;
use super::sslmode::SslMode;
use crate::Error;

/// TCP keepalive idle time when the connection string sets none: 60 s
/// (the operating system's default is two hours).
pub(crate) const DEFAULT_KEEPALIVES_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// Seconds between keepalive probes when unset: 10 s.
pub(crate) const DEFAULT_KEEPALIVES_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(10);
/// Unanswered probes before the connection is dropped when unset: 6.
pub(crate) const DEFAULT_KEEPALIVES_COUNT: u32 = 6;
/// How long sent data may stay unacknowledged before the connection is
/// dropped (`TCP_USER_TIMEOUT`, Linux) when unset: 2 minutes.
pub(crate) const DEFAULT_TCP_USER_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(120);

impl ConnConfig {
    /// The driver's config for exactly these parameters (no environment,
    /// no defaults: call [`ConnConfig::resolve`] first for those).
    ///
    /// Two adjustments follow libpq: a config whose hosts are all Unix
    /// sockets gets `sslmode=disable` (the server offers no TLS there), and
    /// a config with `hostaddr` but no `host` uses the addresses as host
    /// names, so TLS has a name to send. `allow` becomes the driver's
    /// `prefer`, the `verify-*` modes its `require` (the verification
    /// itself is in [`ConnConfig::tls_connector`]).
    pub fn to_tokio_config(&self) -> tokio_postgres::Config {
        let mut pg = tokio_postgres::Config::new();
        if self.hosts.is_empty() {
            for addr in &self.hostaddrs {
                pg.host(addr.to_string());
            }
        } else {
            for host in &self.hosts {
                pg.host(host.as_str());
            }
        }
        for addr in &self.hostaddrs {
            pg.hostaddr(*addr);
        }
        for port in &self.ports {
            pg.port(*port);
        }
        if let Some(v) = &self.dbname {
            pg.dbname(v);
        }
        if let Some(v) = &self.user {
            pg.user(v);
        }
        if let Some(v) = &self.password {
            pg.password(v.expose());
        }
        if let Some(v) = &self.application_name {
            pg.application_name(v);
        }
        if let Some(v) = &self.options {
            pg.options(v);
        }
        pg.ssl_mode(if self.is_unix_socket_only() {
            DriverSslMode::Disable
        } else {
            match self.sslmode() {
                SslMode::Disable => DriverSslMode::Disable,
                SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    DriverSslMode::Require
                }
            }
        });
        if let Some(t) = self.connect_timeout() {
            pg.connect_timeout(t);
        }
        pg.target_session_attrs(self.target_session_attrs().to_driver());
        pg.channel_binding(self.channel_binding().to_driver());
        pg.load_balance_hosts(self.load_balance_hosts().to_driver());
        if let Some(k) = self.keepalives {
            pg.keepalives(k);
        }
        // Unless the connection string says otherwise, a dead peer (a
        // partition, a crashed host) is noticed in about two minutes, not
        // the operating system's two hours: see DEFAULT_KEEPALIVES_IDLE. An
        // explicit 0 keeps its libpq meaning, "the system's default".
        let secs = std::time::Duration::from_secs;
        match self.keepalives_idle {
            Some(0) => {}
            idle => {
                pg.keepalives_idle(idle.map_or(DEFAULT_KEEPALIVES_IDLE, secs));
            }
        }
        match self.keepalives_interval {
            Some(0) => {}
            interval => {
                pg.keepalives_interval(interval.map_or(DEFAULT_KEEPALIVES_INTERVAL, secs));
            }
        }
        match self.keepalives_count {
            Some(0) => {}
            count => {
                pg.keepalives_retries(count.unwrap_or(DEFAULT_KEEPALIVES_COUNT));
            }
        }
        match self.tcp_user_timeout {
            Some(0) => {}
            ms => {
                pg.tcp_user_timeout(
                    ms.map_or(DEFAULT_TCP_USER_TIMEOUT, std::time::Duration::from_millis),
                );
            }
        }
        pg
    }

    /// Connects to the first host that accepts, after
    /// [`resolving`](ConnConfig::resolve) the config from the process
    /// environment.
    ///
    /// The connection runs on a spawned tokio task that ends when the
    /// client is dropped; an error there is logged (without the password).
    /// Errors: [`Error::Config`] for a config that cannot be completed or
    /// certificate files that cannot be read, [`Error::Connect`] naming the
    /// redacted target for everything the server or network refuses.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        let cfg = self.resolve()?;
        let target = cfg.redacted();
        let tls = cfg.tls_connector()?;
        let pg = cfg.to_tokio_config();
        let span = info_span!("connect", target = %target);
        async move {
            let (client, connection) =
                Box::pin(pg.connect(tls))
                    .await
                    .map_err(|source| Error::Connect {
                        target: target.clone(),
                        source,
                    })?;
            debug!("connected");
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(target = %target, error = %e, "connection ended with an error");
                } else {
                    debug!(target = %target, "connection closed");
                }
            });
            Ok(client)
        }
        .instrument(span)
        .await
    }

    /// A pool of at most `max_size` connections, after
    /// [`resolving`](ConnConfig::resolve) the config from the process
    /// environment.
    ///
    /// Connections are opened lazily, on the first `get()`; connection
    /// errors surface there. Returned connections are checked with the
    /// `Fast` recycling method (the driver's "is closed" flag, no query).
    pub fn pool(&self, max_size: usize) -> Result<Pool, Error> {
        let cfg = self.resolve()?;
        let tls = cfg.tls_connector()?;
        let manager = Manager::from_config(
            cfg.to_tokio_config(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .build()
            .map_err(|e| {
                Error::Config(ConfigError::Invalid {
                    reason: format!("cannot build a connection pool: {e}"),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keepalives_default_to_about_two_minutes_and_the_string_wins() {
        let default = ConnConfig::parse("host=db").unwrap().to_tokio_config();
        assert!(default.get_keepalives());
        assert_eq!(default.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            default.get_keepalives_interval(),
            Some(DEFAULT_KEEPALIVES_INTERVAL)
        );
        assert_eq!(
            default.get_keepalives_retries(),
            Some(DEFAULT_KEEPALIVES_COUNT)
        );
        assert_eq!(
            default.get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        let set = ConnConfig::parse(
            "host=db keepalives_idle=5 keepalives_interval=2 keepalives_count=3 tcp_user_timeout=9000",
        )
        .unwrap()
        .to_tokio_config();
        assert_eq!(set.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(set.get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(set.get_keepalives_retries(), Some(3));
        assert_eq!(
            set.get_tcp_user_timeout(),
            Some(&Duration::from_millis(9000))
        );
        let off = ConnConfig::parse("host=db keepalives=0")
            .unwrap()
            .to_tokio_config();
        assert!(!off.get_keepalives());
        // 0 keeps libpq's meaning: not pgmig's default, the driver's/system's.
        let zero = ConnConfig::parse("host=db keepalives_idle=0 tcp_user_timeout=0")
            .unwrap()
            .to_tokio_config();
        assert_ne!(zero.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(zero.get_tcp_user_timeout(), None);
    }
}
