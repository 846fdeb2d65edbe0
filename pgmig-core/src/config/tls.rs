//! TLS for connections: a rustls client config (ring provider) built from
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, following libpq.
//!
//! - `disable`: the connector is never used (the driver is told not to).
//! - `allow`, `prefer`: TLS when the server offers it, certificate not
//!   verified (libpq verifies nothing here either).
//! - `require`: TLS mandatory; the certificate is not verified unless
//!   `sslrootcert` is set (resolving sets it when `~/.postgresql/root.crt`
//!   exists), then the chain is verified as with `verify-ca`.
//! - `verify-ca`: the chain is verified against `sslrootcert` (default
//!   `~/.postgresql/root.crt`; `system` means the bundled Mozilla roots),
//!   the host name is not.
//! - `verify-full`: the chain and the host name are verified.
//!
//! Even when the certificate is not verified, the handshake signatures are
//! (with the provider's algorithms), so the server must hold the key of the
//! certificate it shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::ConfigError;
use super::conn_config::ConnConfig;
use super::sslmode::SslMode;

/// How the server certificate is checked.
enum Verification {
    /// Not at all (handshake signatures still are).
    Nothing,
    /// The chain against these roots, not the host name.
    Chain(RootCertStore),
    /// The chain and the host name.
    Full(RootCertStore),
}

impl ConnConfig {
    /// The TLS connector to hand to `tokio_postgres::Config::connect` for
    /// this config (use it with [`ConnConfig::to_tokio_config`]).
    ///
    /// Reads the root and client certificate files now: a missing or
    /// unreadable file is a [`ConfigError::CertFile`] naming it.
    pub fn tls_connector(&self) -> Result<MakeRustlsConnect, ConfigError> {
        Ok(MakeRustlsConnect::new(self.tls_client_config()?))
    }

    /// The rustls client config for this config's TLS settings (see the
    /// module docs), with the ring provider.
    pub fn tls_client_config(&self) -> Result<ClientConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = match self.verification()? {
            Verification::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertificateCheck { provider })),
            Verification::Chain(roots) => {
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ConfigError::Tls {
                        reason: e.to_string(),
                    })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
            }
            Verification::Full(roots) => builder.with_root_certificates(roots),
        };
        match self.client_identity()? {
            Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(tls_error),
            None => Ok(builder.with_no_client_auth()),
        }
    }

    fn verification(&self) -> Result<Verification, ConfigError> {
        let roots = || -> Result<RootCertStore, ConfigError> {
            match self.sslrootcert.as_deref() {
                Some(root) => load_roots(root),
                None => {
                    let home = std::env::var_os("HOME")
                        .filter(|h| !h.is_empty())
                        .ok_or_else(|| ConfigError::Invalid {
                            reason: format!(
                                "sslmode={} needs a root certificate: set sslrootcert",
                                self.sslmode()
                            ),
                        })?;
                    let path = PathBuf::from(home).join(".postgresql").join("root.crt");
                    load_roots(&path.to_string_lossy())
                }
            }
        };
        Ok(match self.sslmode() {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Verification::Nothing,
            SslMode::Require if self.sslrootcert.is_none() => Verification::Nothing,
            SslMode::Require | SslMode::VerifyCa => Verification::Chain(roots()?),
            SslMode::VerifyFull => Verification::Full(roots()?),
        })
    }

    /// The client certificate chain and key, when `sslcert` is set.
    #[allow(clippy::type_complexity)]
    fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, ConfigError> {
        if self.sslmode() == SslMode::Disable {
            return Ok(None);
        }
        let (cert, key) = match (&self.sslcert, &self.sslkey) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (Path::new(c), Path::new(k)),
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    reason: "sslcert is given without sslkey".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    reason: "sslkey is given without sslcert".into(),
                });
            }
        };
        let certs = load_certs(cert, "client certificate file")?;
        check_key_permissions(key)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| cert_file_error("client key file", key, e))?;
        Ok(Some((certs, key)))
    }
}

/// The roots named by `sslrootcert`: a PEM file, or `system`.
fn load_roots(root: &str) -> Result<RootCertStore, ConfigError> {
    if root == "system" {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    }
    let path = Path::new(root);
    let mut store = RootCertStore::empty();
    for cert in load_certs(path, "root certificate file")? {
        store.add(cert).map_err(|e| ConfigError::CertFile {
            what: "root certificate file",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// All certificates of a PEM file; at least one.
fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(ConfigError::CertFile {
            what,
            path: path.to_owned(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn cert_file_error(
    what: &'static str,
    path: &Path,
    e: rustls::pki_types::pem::Error,
) -> ConfigError {
    let reason = match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind in it".into()
        }
        other => format!("not a valid PEM file ({other:?})"),
    };
    ConfigError::CertFile {
        what,
        path: path.to_owned(),
        reason,
    }
}

/// Like libpq: the key must not be accessible to group or others, unless
/// root owns it and only its group may read it.
fn check_key_permissions(path: &Path) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| ConfigError::CertFile {
            what: "client key file",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mode = meta.mode();
        let ok = if meta.uid() == 0 {
            mode & 0o037 == 0
        } else {
            mode & 0o077 == 0
        };
        if !ok {
            return Err(ConfigError::CertFile {
                what: "client key file",
                path: path.to_owned(),
                reason: format!(
                    "group or others may access it (mode {:04o}); permissions should be u=rw (0600) or less",
                    mode & 0o7777
                ),
            });
        }
    }
    Ok(())
}

fn tls_error(e: rustls::Error) -> ConfigError {
    ConfigError::Tls {
        reason: e.to_string(),
    }
}

/// Accepts any certificate, but still checks that the server signed the
/// handshake with the key of the certificate it sent.
#[derive(Debug)]
struct NoCertificateCheck {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies the chain, but accepts a certificate issued for another name
/// (`verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked only after the chain, so a name error means
        // the chain is good.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use rustls::{ClientConnection, ServerConfig, ServerConnection};

    use super::*;

    // Throwaway test PKI (P-256, valid until 2126), made with openssl for
    // these tests only: a CA, a server certificate for DNS:db.test and
    // IP:127.0.0.1 signed by it, and an unrelated CA.
    const CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUKc7BtrYfofB2Xf2f0yI3yF7MaYwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNcGdtaWcgdGVzdCBDQTAgFw0yNjExMjcwMjMyMjFaGA8yMTI2
MTEwMzAyMzIyMVowGDEWMBQGA1UEAwwNcGdtaWcgdGVzdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABDJ1HpAqlbfWrpuh6A5pP9PAZ/BMNNU2MKw+94XjzzqD
XOJ28IYWW6XVLzr+HWnftxPlCi2jeijSDZe8MGKP44+jYzBhMB0GA1UdDgQWBBQx
5HypSEwr1ojJSukt8GELV+q01DAfBgNVHSMEGDAWgBQx5HypSEwr1ojJSukt8GEL
V+q01DAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQD
AgNJADBGAiEAhnXWbtS1m2apOEdJEkfnp/Z3Q5JOs89eRc+C+UV28nMCIQCjoF8r
OyNRfKOl1TdZoMYK2pfWXkXr0YacEqVKvD6DLQ==
-----END CERTIFICATE-----
";
    const OTHER_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUOmf+2fJElIBy7yCnoEBQAb4myJswCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOcGdtaWcgb3RoZXIgQ0EwIBcNMjYxMTI3MDIzMjIxWhgPMjEy
NjExMDMwMjMyMjFaMBkxFzAVBgNVBAMMDnBnbWlnIG90aGVyIENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE7fABOhVKlXmK9GCYnA5FhdHj0bhVP+sNRSdCakO9
ooG1XwEyDMtFz4/oe9925+/tPM2qGpasUcuVjgnWrcppmqNjMGEwHQYDVR0OBBYE
FLjLYKXzPzxnKEqME3j2P5Ob+JhiMB8GA1UdIwQYMBaAFLjLYKXzPzxnKEqME3j2
P5Ob+JhiMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49
BAMCA0gAMEUCIQDYO8Fr2sqWQKfKdI4oiHk6eaYbmG0hHSkAu482/pc0DQIgHb5Q
iXBTN29y9fKO3Fu6yVE1OFrFxVA/MfFzQ5j/4tY=
-----END CERTIFICATE-----
";
    const SERVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBvjCCAWWgAwIBAgIUTJ7CbDwc5tUQ4TBRyyEBgEWf1ecwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNcGdtaWcgdGVzdCBDQTAgFw0yNjExMjcwMjMyMjFaGA8yMTI2
MTEwMzAyMzIyMVowEjEQMA4GA1UEAwwHZGIudGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABHmweE2tsMBbgAM63igeDtEDySF6bvIyTzsAhpKLN02lnK2GgblE
eFVh/sjZloD/pI0S9uT2XzwrR+ENWNgUqDmjgZAwgY0wDAYDVR0TAQH/BAIwADAO
BgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGAYDVR0RBBEwD4IH
ZGIudGVzdIcEfwAAATAdBgNVHQ4EFgQUiSI4QgWF09OAx11KakyYe0GrdxswHwYD
VR0jBBgwFoAUMeR8qUhMK9aIyUrpLfBhC1fqtNQwCgYIKoZIzj0EAwIDRwAwRAIg
aX8dS5F/mgNPNmtuhGplj8/FJznR++shthZnyTD1Ex8CIC0WOykMq/58a5AlyKxO
X3PwY1QOlKZ4pIPl7rbXNNML
-----END CERTIFICATE-----
";
    const SERVER_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYRIhO7H0rv7M1veI
psNUPdWZXxPkU1LYNRNEBDBMeTahRANCAAR5sHhNrbDAW4ADOt4oHg7RA8khem7y
Mk87AIaSizdNpZythoG5RHhVYf7I2ZaA/6SNEvbk9l88K0fhDVjYFKg5
-----END PRIVATE KEY-----
";

    fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> String {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        drop(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn server_config() -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
        Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }

    /// Runs a handshake in memory against the test server as `name`.
    fn handshake(cfg: &ConnConfig, name: &str) -> Result<(), rustls::Error> {
        let client_cfg = Arc::new(cfg.tls_client_config().unwrap());
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = ClientConnection::new(client_cfg, server_name)?;
        let mut server = ServerConnection::new(server_config())?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets()?;
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    fn cfg(s: &str) -> ConnConfig {
        ConnConfig::parse(s).unwrap()
    }

    #[test]
    fn verification_follows_sslmode() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.crt", CA, 0o644);
        let other = write(dir.path(), "other.crt", OTHER_CA, 0o644);
        let bad_name = |e: rustls::Error| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            )
        };
        let unknown_issuer = |e: rustls::Error| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            )
        };

        for mode in ["prefer", "allow", "require"] {
            let c = cfg(&format!("sslmode={mode}"));
            handshake(&c, "db.test").unwrap();
            handshake(&c, "elsewhere.test").unwrap();
        }

        // require with a root certificate verifies the chain, like verify-ca.
        handshake(
            &cfg(&format!("sslmode=require sslrootcert={ca}")),
            "elsewhere.test",
        )
        .unwrap();
        assert!(unknown_issuer(
            handshake(
                &cfg(&format!("sslmode=require sslrootcert={other}")),
                "db.test"
            )
            .unwrap_err()
        ));

        let verify_ca = cfg(&format!("sslmode=verify-ca sslrootcert={ca}"));
        handshake(&verify_ca, "db.test").unwrap();
        handshake(&verify_ca, "elsewhere.test").unwrap();
        handshake(&verify_ca, "127.0.0.2").unwrap();
        assert!(unknown_issuer(
            handshake(
                &cfg(&format!("sslmode=verify-ca sslrootcert={other}")),
                "db.test"
            )
            .unwrap_err()
        ));

        let verify_full = cfg(&format!("sslmode=verify-full sslrootcert={ca}"));
        handshake(&verify_full, "db.test").unwrap();
        handshake(&verify_full, "127.0.0.1").unwrap();
        assert!(bad_name(
            handshake(&verify_full, "elsewhere.test").unwrap_err()
        ));
        assert!(unknown_issuer(
            handshake(
                &cfg(&format!("sslmode=verify-full sslrootcert={other}")),
                "db.test"
            )
            .unwrap_err()
        ));

        // The bundled Mozilla roots do not know the test CA.
        let system = cfg("sslmode=verify-full sslrootcert=system");
        assert!(unknown_issuer(handshake(&system, "db.test").unwrap_err()));
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.crt", "", 0o644);
        let junk = write(
            dir.path(),
            "junk.crt",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n",
            0o644,
        );
        let ca = write(dir.path(), "ca.crt", CA, 0o644);
        let open_key = write(dir.path(), "open.key", SERVER_KEY, 0o644);
        let key = write(dir.path(), "client.key", SERVER_KEY, 0o600);
        let cert = write(dir.path(), "client.crt", SERVER_CERT, 0o644);
        let missing = dir
            .path()
            .join("missing.crt")
            .to_string_lossy()
            .into_owned();

        let err = |s: String| cfg(&s).tls_client_config().unwrap_err().to_string();
        assert_eq!(
            err(format!("sslmode=verify-full sslrootcert={missing}")),
            format!(
                "cannot use root certificate file {missing}: No such file or directory (os error 2)"
            )
        );
        assert_eq!(
            err(format!("sslmode=verify-ca sslrootcert={empty}")),
            format!("cannot use root certificate file {empty}: no PEM certificate in it")
        );
        assert!(
            err(format!("sslmode=verify-ca sslrootcert={junk}")).starts_with(&format!(
                "cannot use root certificate file {junk}: not a valid PEM file"
            )),
        );
        assert_eq!(
            err(format!("sslcert={ca}")),
            "invalid connection string: sslcert is given without sslkey"
        );
        assert_eq!(
            err(format!("sslcert={ca} sslkey={open_key}")),
            format!(
                "cannot use client key file {open_key}: group or others may access it (mode 0644); \
                 permissions should be u=rw (0600) or less"
            )
        );
        assert_eq!(
            err(format!("sslcert={ca} sslkey={missing}")),
            format!("cannot use client key file {missing}: No such file or directory (os error 2)")
        );

        // A client certificate is accepted when both files are usable, and
        // ignored when TLS is off.
        cfg(&format!("sslmode=require sslcert={cert} sslkey={key}"))
            .tls_client_config()
            .unwrap();
        cfg(&format!(
            "sslmode=disable sslcert={missing} sslkey={missing}"
        ))
        .tls_client_config()
        .unwrap();
        // Without verification, no root file is read.
        cfg(&format!("sslmode=prefer sslrootcert={missing}"))
            .tls_client_config()
            .unwrap();
        cfg("sslmode=verify-full sslrootcert=system")
            .tls_connector()
            .unwrap();
    }
}
