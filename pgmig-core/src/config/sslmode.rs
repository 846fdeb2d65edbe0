//! [`SslMode`]: libpq's `sslmode`, and what each mode means for pgmig.

use std::fmt;
use std::str::FromStr;

/// How much TLS a connection demands, as libpq's `sslmode`.
///
/// Ordered from weakest to strongest, so `mode >= SslMode::VerifyCa` reads
/// as "the server certificate is verified".
///
/// | mode | TLS | certificate chain | host name |
/// |---|---|---|---|
/// | `disable` | never | – | – |
/// | `allow` | if the server offers it | not checked | not checked |
/// | `prefer` (default) | if the server offers it | not checked | not checked |
/// | `require` | mandatory | not checked, unless a root certificate is given (then as `verify-ca`) | not checked |
/// | `verify-ca` | mandatory | checked against `sslrootcert` | not checked |
/// | `verify-full` | mandatory | checked against `sslrootcert` | checked |
///
/// `allow` behaves as `prefer` (TLS first, then plaintext): the driver has
/// no "plaintext first" mode. Unix-socket connections never use TLS, as
/// with libpq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it (tried first, unlike libpq), no verification.
    Allow,
    /// TLS if the server offers it, no verification. The default.
    #[default]
    Prefer,
    /// TLS mandatory; the certificate is not verified unless a root
    /// certificate is configured.
    Require,
    /// TLS mandatory; the chain is verified, the host name is not.
    VerifyCa,
    /// TLS mandatory; the chain and the host name are verified.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection in this mode fails rather than fall back to plaintext.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }

    /// Whether the server certificate chain is always verified in this mode.
    pub fn verifies_chain(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an [`SslMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid sslmode {0:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
)]
pub struct ParseSslModeError(pub String);

impl FromStr for SslMode {
    type Err = ParseSslModeError;

    /// Parses the libpq spelling exactly (lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseSslModeError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        for m in SslMode::ALL {
            assert_eq!(m.as_str().parse::<SslMode>(), Ok(m));
        }
        assert!(SslMode::VerifyFull > SslMode::VerifyCa);
        assert!(SslMode::Require.requires_tls());
        assert!(!SslMode::Prefer.requires_tls());
        assert!(SslMode::VerifyCa.verifies_chain());
        assert!(!SslMode::Require.verifies_chain());
        assert_eq!(SslMode::default(), SslMode::Prefer);
        assert_eq!(
            "Require".parse::<SslMode>().unwrap_err().to_string(),
            "invalid sslmode \"Require\": expected disable, allow, prefer, require, verify-ca or verify-full"
        );
    }
}
