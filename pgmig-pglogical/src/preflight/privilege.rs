//! The connected role and the privileges pgmig cares about, on a
//! self-managed server (superuser, `REPLICATION`) and on managed ones where
//! nobody is superuser (`rds_superuser`, `rds_replication`, Cloud SQL's
//! `cloudsqlsuperuser`, Azure's `azure_pg_admin`).

use pgmig_core::{Error, Result};
use tokio_postgres::GenericClient;

/// Roles that stand in for superuser on managed services, in the order
/// they are reported.
pub const MANAGED_SUPERUSER_ROLES: &[&str] =
    &["rds_superuser", "cloudsqlsuperuser", "azure_pg_admin"];

/// Roles that grant replication on managed services where the
/// `REPLICATION` attribute cannot be set (RDS).
pub const MANAGED_REPLICATION_ROLES: &[&str] = &["rds_replication"];

/// The connected role (`current_user`), its attributes, and which of the
/// managed roles above it belongs to. Identical on 9.6 to 18.
const ROLE_SQL: &str = "SELECT r.rolname::text, r.rolsuper, r.rolreplication, \
       COALESCE((SELECT array_agg(m.rolname::text ORDER BY m.rolname) FROM pg_roles m \
          WHERE m.rolname::text = ANY($1::text[]) AND pg_has_role(r.oid, m.oid, 'MEMBER')), \
          '{}'::text[]) \
     FROM pg_roles r WHERE r.rolname = current_user";

/// What the connected role may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleInfo {
    /// `current_user`.
    pub(crate) name: String,
    /// `rolsuper`.
    pub(crate) superuser: bool,
    /// `rolreplication`.
    pub(crate) replication: bool,
    /// The managed superuser and replication roles it is a member of.
    pub(crate) memberships: Vec<String>,
}

impl RoleInfo {
    /// Reads the connected role.
    pub(crate) async fn query(client: &impl GenericClient) -> Result<RoleInfo> {
        let wanted: Vec<&str> = MANAGED_SUPERUSER_ROLES
            .iter()
            .chain(MANAGED_REPLICATION_ROLES)
            .copied()
            .collect();
        let row = client
            .query_one(ROLE_SQL, &[&wanted])
            .await
            .map_err(Error::query("read the role's privileges"))?;
        Ok(RoleInfo {
            name: row.get(0),
            superuser: row.get(1),
            replication: row.get(2),
            memberships: row.get(3),
        })
    }

    /// The first managed superuser role it belongs to.
    pub(crate) fn managed_superuser(&self) -> Option<&'static str> {
        MANAGED_SUPERUSER_ROLES
            .iter()
            .copied()
            .find(|g| self.memberships.iter().any(|m| m == g))
    }

    /// `REPLICATION`, or membership of a managed replication role.
    pub(crate) fn can_replicate(&self) -> bool {
        self.superuser
            || self.replication
            || MANAGED_REPLICATION_ROLES
                .iter()
                .any(|g| self.memberships.iter().any(|m| m == g))
    }
}
