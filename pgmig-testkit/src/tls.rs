//! TLS for lab servers: a certificate authority of the lab's own, a server
//! certificate it signs, and a second, unrelated authority.
//!
//! [`ClusterSpec::tls`](crate::ClusterSpec::tls) makes a cluster serve TLS
//! with these files; [`Cluster::tls_files`](crate::Cluster::tls_files) says
//! where they are, so a test can hand `sslrootcert` to a client.
//!
//! The server certificate names `DNS:localhost` only — not `127.0.0.1` — so
//! that one server answers the three questions a TLS client must get right:
//! `host=localhost` with the lab CA verifies fully, `host=127.0.0.1` with
//! `sslmode=verify-full` is a host-name mismatch (while `verify-ca`
//! accepts it), and the other CA does not vouch for the server at all.
//!
//! The files are made with the `openssl` command line (ECDSA P-256 keys,
//! valid for ten years from now) in the cluster's directory; the server key
//! belongs to the user the server runs as, mode 0600, as PostgreSQL demands.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tracing::debug;

use crate::error::LabError;
use crate::install::INSTALL_COMMAND;
use crate::lab_user::give_to_lab_user;

/// The host name the lab's server certificate is issued for (its only
/// subject alternative name).
pub const TLS_HOST: &str = "localhost";

/// Where the TLS files of a lab cluster are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The lab CA's certificate (PEM), which signed the server certificate:
    /// the `sslrootcert` that verifies the server.
    pub ca_cert: PathBuf,
    /// Another CA's certificate (PEM), unrelated to the server: the
    /// `sslrootcert` that must fail to verify it.
    pub other_ca_cert: PathBuf,
    /// The server's certificate (PEM), for `DNS:localhost` only.
    pub server_cert: PathBuf,
    /// The server's private key (PEM, mode 0600, owned by the server user).
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// The `postgresql.conf` settings that make a server use these files.
    pub(crate) fn server_settings(&self) -> Vec<(String, String)> {
        vec![
            ("ssl".into(), "on".into()),
            (
                "ssl_cert_file".into(),
                self.server_cert.to_string_lossy().into_owned(),
            ),
            (
                "ssl_key_file".into(),
                self.server_key.to_string_lossy().into_owned(),
            ),
        ]
    }
}

/// Makes the CA, the other CA and the server certificate in `dir/tls/`.
pub(crate) async fn generate(dir: &Path, log: &Path) -> Result<TlsFiles, LabError> {
    let tls = dir.join("tls");
    std::fs::create_dir(&tls)
        .map_err(|e| LabError::io(format!("creating {}", tls.display()), e))?;
    give_to_lab_user(&tls)?;
    let files = TlsFiles {
        ca_cert: tls.join("ca.crt"),
        other_ca_cert: tls.join("other-ca.crt"),
        server_cert: tls.join("server.crt"),
        server_key: tls.join("server.key"),
    };
    let ca_key = tls.join("ca.key");
    let other_key = tls.join("other-ca.key");
    let csr = tls.join("server.csr");
    let ext = tls.join("server.ext");

    self_signed_ca(&ca_key, &files.ca_cert, "pgmig lab CA", log).await?;
    self_signed_ca(&other_key, &files.other_ca_cert, "pgmig other CA", log).await?;
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path_str(&files.server_key)?,
            "-out",
            path_str(&csr)?,
        ],
        log,
    )
    .await?;
    std::fs::write(
        &ext,
        format!(
            "subjectAltName = DNS:{TLS_HOST}\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n"
        ),
    )
    .map_err(|e| LabError::io(format!("writing {}", ext.display()), e))?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            path_str(&csr)?,
            "-CA",
            path_str(&files.ca_cert)?,
            "-CAkey",
            path_str(&ca_key)?,
            "-set_serial",
            &serial(),
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            path_str(&ext)?,
            "-out",
            path_str(&files.server_cert)?,
        ],
        log,
    )
    .await?;
    for key in [&ca_key, &other_key, &files.server_key] {
        private(key)?;
    }
    for path in [&files.ca_cert, &files.other_ca_cert, &files.server_cert] {
        give_to_lab_user(path)?;
    }
    debug!(dir = %tls.display(), "lab TLS files made");
    Ok(files)
}

/// A self-signed CA certificate and its key.
async fn self_signed_ca(key: &Path, cert: &Path, name: &str, log: &Path) -> Result<(), LabError> {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
            "-sha256",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints = critical, CA:TRUE",
            "-addext",
            "keyUsage = critical, keyCertSign, cRLSign",
            "-keyout",
            path_str(key)?,
            "-out",
            path_str(cert)?,
        ],
        log,
    )
    .await
}

/// A key file: mode 0600, owned by the user the server runs as.
fn private(key: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    give_to_lab_user(key)?;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LabError::io(format!("chmod 0600 {}", key.display()), e))
}

/// A positive serial number, different for every certificate made.
fn serial() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    format!("0x{:x}", (nanos & 0x7FFF_FFFF_FFFF_FFFF).max(1))
}

fn path_str(path: &Path) -> Result<&str, LabError> {
    path.to_str().ok_or_else(|| {
        LabError::Setup(format!(
            "lab path {} is not UTF-8; set PGMIG_LAB_DIR to a plain directory",
            path.display()
        ))
    })
}

/// Runs `openssl args…`; a missing `openssl` is [`LabError::Unavailable`].
async fn openssl(args: &[&str], log: &Path) -> Result<(), LabError> {
    let program = ["/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| LabError::Unavailable {
            what: "the openssl command line (to make the lab's TLS certificates)".into(),
            path: PathBuf::from("/usr/bin/openssl"),
            env_var: "PATH".into(),
            install: format!("apt-get install openssl (or {INSTALL_COMMAND})"),
        })?;
    let line = format!("{} {}", program.display(), args.join(" "));
    let out = tokio::process::Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(LabError::Command {
            command: line,
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
            log: log.to_path_buf(),
            log_tail: String::new(),
        }),
        Err(e) => Err(LabError::Command {
            command: line,
            status: format!("could not run: {e}"),
            output: String::new(),
            log: log.to_path_buf(),
            log_tail: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn makes_a_ca_a_server_certificate_for_localhost_and_another_ca() {
        if !Path::new("/usr/bin/openssl").is_file() && !crate::install::is_ci() {
            eprintln!("skipped: no openssl");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path(), &dir.path().join("log")).await.unwrap();
        let text = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let server = path_str(&files.server_cert).unwrap();
        let shown = text(&["x509", "-in", server, "-noout", "-text"]);
        assert!(shown.contains("DNS:localhost"), "{shown}");
        assert!(!shown.contains("IP Address"), "{shown}");
        let ok = text(&[
            "verify",
            "-CAfile",
            path_str(&files.ca_cert).unwrap(),
            server,
        ]);
        assert!(ok.contains("OK"), "{ok}");
        let wrong = std::process::Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                path_str(&files.other_ca_cert).unwrap(),
                server,
            ])
            .output()
            .unwrap();
        assert!(!wrong.status.success());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let settings = files.server_settings();
        assert_eq!(settings[0], ("ssl".into(), "on".into()));
    }
}
