//! `CreateEndpoint` inputs: one source endpoint per slot (the slot is an
//! endpoint setting) and, unless an existing one is named, the target's.
//!
//! No password is ever written. Either the endpoint's credentials live in
//! AWS Secrets Manager ([`Credentials::SecretsManager`], the recommended
//! way), or the input carries no `Password` and the generated script adds
//! it when it creates the endpoint, from an environment variable, through a
//! private temporary file ([`Credentials::PasswordAtCreation`]).

use pgmig_core::config::{ConnConfig, SslMode};
use serde::Serialize;

use crate::error::{DmsError, Result};
use crate::identifier::DmsIdentifier;
use crate::task::Tag;

/// An endpoint's `SslMode`. Never `none`: RDS for PostgreSQL 15+ refuses
/// plaintext, and change data should not cross the network in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DmsSslMode {
    /// TLS, certificate not verified.
    Require,
    /// TLS, certificate chain verified against the endpoint's certificate.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl DmsSslMode {
    /// The mode matching libpq's `sslmode`, raised to at least `require`.
    pub fn at_least_require(mode: SslMode) -> DmsSslMode {
        match mode {
            SslMode::VerifyFull => DmsSslMode::VerifyFull,
            SslMode::VerifyCa => DmsSslMode::VerifyCa,
            _ => DmsSslMode::Require,
        }
    }

    /// Whether DMS verifies the server certificate (which needs a
    /// `CertificateArn`).
    pub fn verifies(self) -> bool {
        self >= DmsSslMode::VerifyCa
    }

    /// The API spelling, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            DmsSslMode::Require => "require",
            DmsSslMode::VerifyCa => "verify-ca",
            DmsSslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where a server is, as DMS must reach it: never a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointConn {
    /// The host name DMS connects to.
    pub server_name: String,
    /// The port.
    pub port: u16,
    /// The database.
    pub database_name: String,
    /// The user.
    pub username: String,
    /// The TLS mode.
    pub ssl_mode: DmsSslMode,
    /// The certificate DMS verifies the server with (`verify-ca`/`-full`).
    pub certificate_arn: Option<String>,
}

impl EndpointConn {
    /// The endpoint of a pgmig connection (its first host), with the host
    /// name DMS should use instead when given (the servers often have
    /// another name inside the VPC). The password is never read.
    ///
    /// `role` (`source`, `target`) names the endpoint in errors: a Unix
    /// socket, a missing database or user, or a verifying mode without a
    /// certificate cannot be described to DMS.
    pub fn from_conn(
        conn: &ConnConfig,
        role: &'static str,
        server_name: Option<&str>,
        ssl_mode: Option<DmsSslMode>,
        certificate_arn: Option<&str>,
    ) -> Result<EndpointConn> {
        let fail = |reason: String| DmsError::Endpoint { role, reason };
        let server_name = match server_name.or(conn.host()) {
            None => {
                return Err(fail(
                    "no host: give the server name DMS should connect to".into(),
                ));
            }
            Some(h) if h.starts_with('/') || h.starts_with('@') => {
                return Err(fail(format!(
                    "host {h} is a Unix socket, which DMS cannot reach: give the server's network name"
                )));
            }
            Some(h) => h.to_owned(),
        };
        let database_name = conn
            .dbname()
            .ok_or_else(|| fail("no database name".into()))?
            .to_owned();
        let username = conn
            .user()
            .ok_or_else(|| fail("no user name".into()))?
            .to_owned();
        let ssl_mode = ssl_mode.unwrap_or(DmsSslMode::at_least_require(conn.sslmode()));
        if ssl_mode.verifies() && certificate_arn.is_none() {
            return Err(fail(format!(
                "ssl mode {} needs the ARN of a DMS certificate to verify the server with",
                ssl_mode.as_str()
            )));
        }
        Ok(EndpointConn {
            server_name,
            port: conn.port(),
            database_name,
            username,
            ssl_mode,
            certificate_arn: certificate_arn.map(str::to_owned),
        })
    }
}

/// Where DMS finds an endpoint's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    /// Not in any file: the script passes it when creating the endpoint,
    /// from the environment variable named here.
    PasswordAtCreation {
        /// The environment variable, e.g. `PGMIG_DMS_SOURCE_PASSWORD`.
        env_var: String,
    },
    /// An AWS Secrets Manager secret holding the connection details (host,
    /// port, user and password), read by DMS through an IAM role.
    SecretsManager {
        /// The secret's ARN or name.
        secret_id: String,
        /// The role DMS assumes to read it.
        access_role_arn: String,
    },
}

/// `source` or `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointType {
    /// The database DMS reads changes from.
    Source,
    /// The database DMS applies them to.
    Target,
}

/// The `PostgreSQLSettings` of an endpoint; unset fields keep DMS defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PostgreSqlSettings {
    /// The pglogical slot the task reads (source only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_name: Option<String>,
    /// `pglogical` (source only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<&'static str>,
    /// `false`: DMS then creates no DDL-capture table, function or event
    /// trigger on the source (DDL is pgmig's business, not replicated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_ddls: Option<bool>,
    /// `true`: a LOB larger than `LobMaxSize` fails the task instead of
    /// being truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_tasks_on_lob_truncation: Option<bool>,
    /// The WAL heartbeat: a dummy transaction every
    /// [`PostgreSqlSettings::heartbeat_frequency`] minutes keeps an idle
    /// slot's `restart_lsn` moving. It writes to the source (a table in
    /// `HeartbeatSchema`), so it is off unless asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_enable: Option<bool>,
    /// Minutes between heartbeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_frequency: Option<u32>,
    /// The Secrets Manager secret with the connection details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_manager_secret_id: Option<String>,
    /// The IAM role DMS reads the secret with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_manager_access_role_arn: Option<String>,
}

/// The input of `CreateEndpoint` (`aws dms create-endpoint
/// --cli-input-json`), without any password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointInput {
    /// The endpoint identifier.
    pub endpoint_identifier: DmsIdentifier,
    /// Source or target.
    pub endpoint_type: EndpointType,
    /// `postgres` (or `aurora-postgresql`).
    pub engine_name: String,
    /// The host (absent with Secrets Manager, which holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The port (absent with Secrets Manager).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The database.
    pub database_name: String,
    /// The user (absent with Secrets Manager).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TLS mode, at least `require`.
    pub ssl_mode: DmsSslMode,
    /// The certificate for `verify-ca`/`verify-full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// The PostgreSQL settings.
    #[serde(rename = "PostgreSQLSettings")]
    pub postgre_sql_settings: PostgreSqlSettings,
    /// Tags naming pgmig and the slot.
    pub tags: Vec<Tag>,
}

impl CreateEndpointInput {
    /// An endpoint for `conn` with `credentials`; the settings specific to
    /// a source or target are the caller's.
    pub fn new(
        identifier: DmsIdentifier,
        endpoint_type: EndpointType,
        engine_name: &str,
        conn: &EndpointConn,
        credentials: &Credentials,
        mut settings: PostgreSqlSettings,
        tags: Vec<Tag>,
    ) -> CreateEndpointInput {
        let in_secret = match credentials {
            Credentials::PasswordAtCreation { .. } => false,
            Credentials::SecretsManager {
                secret_id,
                access_role_arn,
            } => {
                settings.secrets_manager_secret_id = Some(secret_id.clone());
                settings.secrets_manager_access_role_arn = Some(access_role_arn.clone());
                true
            }
        };
        CreateEndpointInput {
            endpoint_identifier: identifier,
            endpoint_type,
            engine_name: engine_name.to_owned(),
            server_name: (!in_secret).then(|| conn.server_name.clone()),
            port: (!in_secret).then_some(conn.port),
            database_name: conn.database_name.clone(),
            username: (!in_secret).then(|| conn.username.clone()),
            ssl_mode: conn.ssl_mode,
            certificate_arn: conn.certificate_arn.clone(),
            postgre_sql_settings: settings,
            tags,
        }
    }

    /// The settings of a source endpoint reading `slot` with pglogical:
    /// no DDL capture, LOB truncation fails the task, heartbeat as asked.
    pub fn source_settings(slot: &str, heartbeat_minutes: Option<u32>) -> PostgreSqlSettings {
        PostgreSqlSettings {
            slot_name: Some(slot.to_owned()),
            plugin_name: Some("pglogical"),
            capture_ddls: Some(false),
            fail_tasks_on_lob_truncation: Some(true),
            heartbeat_enable: Some(heartbeat_minutes.is_some()),
            heartbeat_frequency: heartbeat_minutes,
            ..PostgreSqlSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(s: &str) -> ConnConfig {
        ConnConfig::parse(s).unwrap()
    }

    #[test]
    fn ssl_mode_is_at_least_require() {
        for (libpq, dms) in [
            (SslMode::Disable, DmsSslMode::Require),
            (SslMode::Prefer, DmsSslMode::Require),
            (SslMode::Require, DmsSslMode::Require),
            (SslMode::VerifyCa, DmsSslMode::VerifyCa),
            (SslMode::VerifyFull, DmsSslMode::VerifyFull),
        ] {
            assert_eq!(DmsSslMode::at_least_require(libpq), dms);
        }
    }

    #[test]
    fn endpoint_from_a_connection_never_reads_the_password() {
        let c =
            conn("host=db.internal port=6432 dbname=app user=mig password=s3cret sslmode=disable");
        let e = EndpointConn::from_conn(&c, "source", None, None, None).unwrap();
        assert_eq!(e.server_name, "db.internal");
        assert_eq!(e.port, 6432);
        assert_eq!(e.ssl_mode, DmsSslMode::Require);
        let input = CreateEndpointInput::new(
            DmsIdentifier::parse("pgmig-src-s").unwrap(),
            EndpointType::Source,
            "postgres",
            &e,
            &Credentials::PasswordAtCreation {
                env_var: "PGMIG_DMS_SOURCE_PASSWORD".into(),
            },
            CreateEndpointInput::source_settings("s", None),
            vec![],
        );
        let json = serde_json::to_string(&input).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!json.contains("Password\""), "{json}");
        assert!(json.contains(r#""PostgreSQLSettings":{"SlotName":"s","PluginName":"pglogical","CaptureDdls":false"#), "{json}");
    }

    #[test]
    fn endpoints_dms_cannot_use_are_refused() {
        let socket = conn("host=/var/run/postgresql dbname=app user=mig");
        let err = EndpointConn::from_conn(&socket, "source", None, None, None).unwrap_err();
        assert!(err.to_string().contains("Unix socket"), "{err}");
        // A name for DMS fixes it.
        let e = EndpointConn::from_conn(&socket, "source", Some("db.vpc"), None, None).unwrap();
        assert_eq!(e.server_name, "db.vpc");
        let full = conn("host=h dbname=app user=mig sslmode=verify-full");
        let err = EndpointConn::from_conn(&full, "target", None, None, None).unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        assert!(EndpointConn::from_conn(&full, "target", None, None, Some("arn:c")).is_ok());
    }

    #[test]
    fn secrets_manager_keeps_connection_details_out() {
        let c = conn("host=h dbname=app user=mig");
        let e = EndpointConn::from_conn(&c, "target", None, None, None).unwrap();
        let input = CreateEndpointInput::new(
            DmsIdentifier::parse("t").unwrap(),
            EndpointType::Target,
            "postgres",
            &e,
            &Credentials::SecretsManager {
                secret_id: "pgmig/target".into(),
                access_role_arn: "arn:aws:iam::1:role/dms".into(),
            },
            PostgreSqlSettings::default(),
            vec![],
        );
        let v = serde_json::to_value(&input).unwrap();
        assert!(v.get("ServerName").is_none() && v.get("Username").is_none());
        assert_eq!(v["DatabaseName"], "app");
        assert_eq!(
            v["PostgreSQLSettings"]["SecretsManagerSecretId"],
            "pgmig/target"
        );
    }
}
