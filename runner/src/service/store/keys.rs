//! API key records. The secret itself is never stored: only its slow hash.

use super::sql::{Row, p};

use super::{Store, StoreError, TenantId, now_ms};

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: TenantId,
    pub tenant_name: String,
    pub role: String,
    pub secret_hash: String,
    pub label: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The release environments an approver key may approve for; `None`:
    /// every environment its role may approve.
    pub environments: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub secret_hash: &'a str,
    pub label: &'a str,
    pub created_by: &'a str,
    /// See [`KeyRecord::environments`].
    pub environments: Option<&'a [String]>,
}

const SELECT: &str = "SELECT k.id, k.tenant_id, t.name, k.role, k.secret_hash, k.label, k.created_by, k.created_at, k.revoked_at, k.environments
     FROM api_keys k JOIN tenants t ON t.id = k.tenant_id";

fn row(r: &Row) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        id: r.get(0)?,
        tenant: TenantId(r.get(1)?),
        tenant_name: r.get(2)?,
        role: r.get(3)?,
        secret_hash: r.get(4)?,
        label: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        revoked_at: r.get(8)?,
        // An unreadable scope reads as an empty one: the key approves
        // nothing rather than everything.
        environments: r
            .get::<Option<String>>(9)?
            .map(|text| serde_json::from_str(&text).unwrap_or_default()),
    })
}

impl Store {
    pub fn insert_key(&self, tenant: &TenantId, key: &NewKey<'_>) -> Result<KeyRecord, StoreError> {
        let at = now_ms();
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, tenant_id, role, secret_hash, label, created_by, created_at, environments)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                p![
                    key.id,
                    tenant.as_str(),
                    key.role,
                    key.secret_hash,
                    key.label,
                    key.created_by,
                    at,
                    key.environments.map(|e| serde_json::json!(e).to_string())
                ],
            )?;
            c.query_row(&format!("{SELECT} WHERE k.id = ?1"), p![key.id], row)
        })
    }

    /// Looks a key up by its public id, whatever its tenant: this is how a
    /// request's tenant is found in the first place.
    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.with(|c| c.query_opt(&format!("{SELECT} WHERE k.id = ?1"), p![id], row))
    }

    pub fn keys(&self, tenant: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "{SELECT} WHERE k.tenant_id = ?1 ORDER BY k.created_at, k.id"
            ))?;
            let rows = st.query_map(p![tenant.as_str()], row)?;
            rows.collect::<Result<_, _>>()
        })
    }

    /// Revokes a key of `tenant` (`None`: of any tenant, for the operator's
    /// CLI). Returns the key, or `None` when no such key exists there.
    /// Refuses to revoke a tenant's last active admin key: nobody could
    /// manage the tenant's keys any more (create another admin key first).
    pub fn revoke_key(
        &self,
        tenant: Option<&TenantId>,
        id: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let at = now_ms();
        self.with(|c| {
            let tx = c.transaction()?;
            let Some(key) = tx
                .query_opt(&format!("{SELECT} WHERE k.id = ?1"), p![id], row)?
                .filter(|k| tenant.is_none_or(|t| *t == k.tenant))
            else {
                return Ok(None);
            };
            if key.role == "admin" && key.revoked_at.is_none() {
                let admins: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?1 AND role = 'admin' AND revoked_at IS NULL",
                    p![key.tenant.as_str()],
                    |r| r.get(0),
                )?;
                if admins <= 1 {
                    return Err(StoreError::LastAdmin {
                        tenant: key.tenant_name,
                        key: key.id,
                    });
                }
            }
            tx.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2",
                p![at, id],
            )?;
            let rec = tx.query_row(&format!("{SELECT} WHERE k.id = ?1"), p![id], row)?;
            tx.commit()?;
            Ok(Some(rec))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_belong_to_one_tenant() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap();
        let b = s.create_tenant("b").unwrap();
        let k = s
            .insert_key(
                &a.id,
                &NewKey {
                    id: "0123456789abcdef",
                    role: "learner",
                    secret_hash: "$argon2id$x",
                    label: "lab",
                    created_by: "cli",
                    environments: None,
                },
            )
            .unwrap();
        assert_eq!(k.tenant, a.id);
        assert_eq!(s.keys(&a.id).unwrap().len(), 1);
        assert!(s.keys(&b.id).unwrap().is_empty());
        // Another tenant cannot revoke it.
        assert!(s.revoke_key(Some(&b.id), &k.id).unwrap().is_none());
        let revoked = s.revoke_key(Some(&a.id), &k.id).unwrap().unwrap();
        assert!(revoked.revoked_at.is_some());
        // Revoking twice keeps the first time.
        let again = s.revoke_key(None, &k.id).unwrap().unwrap();
        assert_eq!(again.revoked_at, revoked.revoked_at);
    }

    fn key(s: &Store, t: &TenantId, id: &str, role: &str) {
        s.insert_key(
            t,
            &NewKey {
                id,
                role,
                secret_hash: "$argon2id$x",
                label: "",
                created_by: "cli",
                environments: None,
            },
        )
        .unwrap();
    }

    #[test]
    fn the_last_admin_key_of_a_tenant_stays() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        key(&s, &a, "a-admin-1", "admin");
        key(&s, &a, "a-admin-2", "admin");
        key(&s, &a, "a-dev", "developer");
        key(&s, &b, "b-admin", "admin");
        assert!(s.revoke_key(Some(&a), "a-admin-1").unwrap().is_some());
        let e = s.revoke_key(Some(&a), "a-admin-2").unwrap_err();
        assert!(matches!(e, StoreError::LastAdmin { .. }), "{e}");
        assert!(e.to_string().contains("last admin key"), "{e}");
        let e = s.revoke_key(None, "b-admin").unwrap_err();
        assert!(
            matches!(e, StoreError::LastAdmin { .. }),
            "the CLI too: {e}"
        );
        assert!(s.revoke_key(Some(&a), "a-dev").unwrap().is_some());
        // Another admin first, then the old one can go.
        key(&s, &a, "a-admin-3", "admin");
        assert!(s.revoke_key(Some(&a), "a-admin-2").unwrap().is_some());
    }
}
