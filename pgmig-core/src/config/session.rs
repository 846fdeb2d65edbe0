//! Per-session connection policies: which server to accept
//! ([`TargetSessionAttrs`]), channel binding ([`ChannelBinding`]) and the
//! order hosts are tried in ([`LoadBalanceHosts`]).

use std::fmt;

/// Which kind of session is acceptable, as libpq's `target_session_attrs`.
///
/// libpq's `primary`, `standby` and `prefer-standby` are not supported by
/// the driver and are rejected when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetSessionAttrs {
    /// Any server. The default.
    #[default]
    Any,
    /// A server that accepts writes (`transaction_read_only` is `off`).
    ReadWrite,
    /// A server in read-only mode (`transaction_read_only` is `on`).
    ReadOnly,
}

impl TargetSessionAttrs {
    /// The libpq spelling, e.g. `read-write`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        }
    }

    pub(crate) fn from_keyword(s: &str) -> Option<Self> {
        [Self::Any, Self::ReadWrite, Self::ReadOnly]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub(crate) fn to_driver(self) -> tokio_postgres::config::TargetSessionAttrs {
        use tokio_postgres::config::TargetSessionAttrs as T;
        match self {
            TargetSessionAttrs::Any => T::Any,
            TargetSessionAttrs::ReadWrite => T::ReadWrite,
            TargetSessionAttrs::ReadOnly => T::ReadOnly,
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether SCRAM channel binding is used, as libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChannelBinding {
    /// Never.
    Disable,
    /// When the server and the TLS connection allow it. The default.
    #[default]
    Prefer,
    /// Always; authentication without it fails.
    Require,
}

impl ChannelBinding {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }

    pub(crate) fn from_keyword(s: &str) -> Option<Self> {
        [Self::Disable, Self::Prefer, Self::Require]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub(crate) fn to_driver(self) -> tokio_postgres::config::ChannelBinding {
        use tokio_postgres::config::ChannelBinding as C;
        match self {
            ChannelBinding::Disable => C::Disable,
            ChannelBinding::Prefer => C::Prefer,
            ChannelBinding::Require => C::Require,
        }
    }
}

impl fmt::Display for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order in which several hosts are tried, as libpq's `load_balance_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalanceHosts {
    /// In the order given. The default.
    #[default]
    Disable,
    /// In random order.
    Random,
}

impl LoadBalanceHosts {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalanceHosts::Disable => "disable",
            LoadBalanceHosts::Random => "random",
        }
    }

    pub(crate) fn from_keyword(s: &str) -> Option<Self> {
        [Self::Disable, Self::Random]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub(crate) fn to_driver(self) -> tokio_postgres::config::LoadBalanceHosts {
        use tokio_postgres::config::LoadBalanceHosts as L;
        match self {
            LoadBalanceHosts::Disable => L::Disable,
            LoadBalanceHosts::Random => L::Random,
        }
    }
}

impl fmt::Display for LoadBalanceHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
