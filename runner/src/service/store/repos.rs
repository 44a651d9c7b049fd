//! Repositories a tenant's admins register for workflows, and their jobs'
//! secrets. Tenant-scoped like runs: [`TenantRepos`] is the only way in.
//! Webhook secrets and secret values are stored sealed; only names and
//! metadata ever leave this module unsealed, and only to the runner itself
//! (never to a response).

use super::sql::{Row, p};

use super::{Store, StoreError, TenantId, now_ms};
use crate::service::secrets::SecretBox;

/// A registered repository (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub id: String,
    pub tenant: TenantId,
    /// `owner/name`, as pushes name it.
    pub name: String,
    /// Clone URL (`https://…`, `ssh://…`) or local path (`file://…`).
    pub url: String,
    /// Branch patterns whose pushes trigger runs; empty: every branch
    /// (the workflows' own `on.push` filters still apply).
    pub branches: Vec<String>,
    /// Secret names its jobs may use.
    pub secrets_allowed: Vec<String>,
    /// The server-side egress grant its jobs get, if any.
    pub egress: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// What registering a repository needs.
#[derive(Debug, Clone)]
pub struct NewRepo<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub branches: &'a [String],
    pub secrets_allowed: &'a [String],
    pub egress: Option<&'a str>,
    pub created_by: &'a str,
}

const SELECT: &str = "SELECT id, tenant_id, name, url, branches, secrets_allowed, egress, created_by, created_at FROM repositories";

fn row(r: &Row) -> Result<(Repo, String, String), StoreError> {
    Ok((
        Repo {
            id: r.get(0)?,
            tenant: TenantId(r.get(1)?),
            name: r.get(2)?,
            url: r.get(3)?,
            branches: Vec::new(),
            secrets_allowed: Vec::new(),
            egress: r.get(6)?,
            created_by: r.get(7)?,
            created_at: r.get(8)?,
        },
        r.get(4)?,
        r.get(5)?,
    ))
}

fn finish((mut repo, branches, secrets): (Repo, String, String)) -> Result<Repo, StoreError> {
    let list = |text: &str, what: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("{what} of repository {}: {e}", repo.id)))
    };
    repo.branches = list(&branches, "branches")?;
    repo.secrets_allowed = list(&secrets, "allowed secrets")?;
    Ok(repo)
}

/// A tenant's repositories.
#[derive(Debug)]
pub struct TenantRepos<'a> {
    store: &'a Store,
    tenant: &'a TenantId,
}

impl Store {
    pub fn repos<'a>(&'a self, tenant: &'a TenantId) -> TenantRepos<'a> {
        TenantRepos {
            store: self,
            tenant,
        }
    }

    /// A repository by id, whatever its tenant: for webhooks, which name
    /// their repository and prove themselves with its secret, not a key.
    pub fn repo_for_webhook(&self, id: &str) -> Result<Option<(Repo, Vec<u8>)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, tenant_id, name, url, branches, secrets_allowed, egress, created_by, created_at, webhook_secret FROM repositories WHERE id = ?1",
            )?;
            let mut rows = st.query(p![id])?;
            match rows.next()? {
                Some(r) => {
                    let sealed: Vec<u8> = r.get(9)?;
                    Ok(Some((finish(row(&r)?)?, sealed)))
                }
                None => Ok(None),
            }
        })
    }

    /// A repository by id for the workflow dispatcher.
    pub fn repo_by_id(&self, id: &str) -> Result<Option<Repo>, StoreError> {
        self.with(|c| {
            c.query_opt(&format!("{SELECT} WHERE id = ?1"), p![id], row)?
                .map(finish)
                .transpose()
        })
    }

    /// Every secret a repository's jobs may read, opened: what is stored
    /// for it and allowed by its registration.
    pub fn repo_secret_values(
        &self,
        repo: &Repo,
        secrets: &SecretBox,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sealed: Vec<(String, Vec<u8>)> = self.with(|c| {
            let mut st =
                c.prepare("SELECT name, value FROM repo_secrets WHERE repo_id = ?1 ORDER BY name")?;
            let rows = st.query_map(p![&repo.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()
        })?;
        sealed
            .into_iter()
            .filter(|(name, _)| repo.secrets_allowed.contains(name))
            .map(|(name, value)| {
                let plain = secrets.open(&value)?;
                Ok((name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect()
    }
}

impl TenantRepos<'_> {
    /// Registers a repository with a sealed webhook secret.
    pub fn create(
        &self,
        repo: &NewRepo<'_>,
        webhook_secret: &[u8],
        secrets: &SecretBox,
        audit: &super::NewAuditEntry,
    ) -> Result<Repo, StoreError> {
        let id = format!("r_{}", &crate::sandbox::new_job_id()[..16]);
        let at = now_ms();
        let sealed = secrets.seal(webhook_secret);
        let branches = serde_json::to_string(repo.branches).expect("strings serialize");
        let allowed = serde_json::to_string(repo.secrets_allowed).expect("strings serialize");
        self.store.with(|c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT INTO repositories (id, tenant_id, name, url, branches, secrets_allowed, egress, webhook_secret, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                p![id, self.tenant.as_str(), repo.name, repo.url, branches, allowed, repo.egress, sealed, repo.created_by, at],
            );
            match inserted {
                Err(e) if e.is_constraint() => {
                    return Err(StoreError::RepoExists(repo.name.to_owned()));
                }
                other => other?,
            };
            super::audit::append_in(&tx, audit)?;
            let created = tx.query_row(&format!("{SELECT} WHERE id = ?1"), p![&id], row)?;
            tx.commit()?;
            finish(created)
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Repo>, StoreError> {
        self.store.with(|c| {
            c.query_opt(
                &format!("{SELECT} WHERE tenant_id = ?1 AND id = ?2"),
                p![self.tenant.as_str(), id],
                row,
            )?
            .map(finish)
            .transpose()
        })
    }

    pub fn list(&self) -> Result<Vec<Repo>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(&format!("{SELECT} WHERE tenant_id = ?1 ORDER BY name"))?;
            let rows = st.query_map(p![self.tenant.as_str()], row)?;
            rows.map(|r| finish(r?)).collect()
        })
    }

    /// Removes a repository, its secrets and its runs' records.
    pub fn delete(&self, id: &str, audit: &super::NewAuditEntry) -> Result<bool, StoreError> {
        self.store.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM repositories WHERE tenant_id = ?1 AND id = ?2",
                p![self.tenant.as_str(), id],
            )?;
            if n == 1 {
                super::audit::append_in(&tx, audit)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Sets (or replaces) a secret of a repository of this tenant.
    pub fn set_secret(
        &self,
        repo_id: &str,
        name: &str,
        value: &[u8],
        secrets: &SecretBox,
        audit: &super::NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let sealed = secrets.seal(value);
        let at = now_ms();
        self.store.with(|c| {
            let tx = c.transaction()?;
            let owned: Option<String> = tx
                .query_opt(
                    "SELECT id FROM repositories WHERE tenant_id = ?1 AND id = ?2",
                    p![self.tenant.as_str(), repo_id],
                    |r| r.get(0),
                )?;
            if owned.is_none() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO repo_secrets (repo_id, name, value, updated_by, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (repo_id, name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                p![repo_id, name, sealed, audit.actor, at],
            )?;
            super::audit::append_in(&tx, audit)?;
            tx.commit()?;
            Ok(true)
        })
    }

    pub fn delete_secret(
        &self,
        repo_id: &str,
        name: &str,
        audit: &super::NewAuditEntry,
    ) -> Result<bool, StoreError> {
        self.store.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM repo_secrets WHERE name = ?2 AND repo_id IN
                   (SELECT id FROM repositories WHERE tenant_id = ?1 AND id = ?3)",
                p![self.tenant.as_str(), name, repo_id],
            )?;
            if n == 1 {
                super::audit::append_in(&tx, audit)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Names of a repository's secrets, with who set them when (no values).
    pub fn secret_names(&self, repo_id: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT s.name, s.updated_by, s.updated_at FROM repo_secrets s
                 JOIN repositories r ON r.id = s.repo_id
                 WHERE r.tenant_id = ?1 AND r.id = ?2 ORDER BY s.name",
            )?;
            let rows = st.query_map(p![self.tenant.as_str(), repo_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<Result<_, _>>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::store::NewAuditEntry;

    fn entry() -> NewAuditEntry {
        NewAuditEntry {
            actor: "key:k".into(),
            tenant: Some("a".into()),
            action: "test".into(),
            target: None,
            detail: None,
        }
    }

    #[test]
    fn secrets_are_sealed_scoped_and_replaced() {
        let s = Store::in_memory().unwrap();
        let a = s.create_tenant("a").unwrap().id;
        let b = s.create_tenant("b").unwrap().id;
        let sb = SecretBox::from_key(&[1; 32]);
        let allowed = ["TOKEN".to_string()];
        let repo = s
            .repos(&a)
            .create(
                &NewRepo {
                    name: "o/r",
                    url: "file:///x",
                    branches: &[],
                    secrets_allowed: &allowed,
                    egress: None,
                    created_by: "key:k",
                },
                b"hook",
                &sb,
                &entry(),
            )
            .unwrap();
        assert!(
            s.repos(&a)
                .set_secret(&repo.id, "TOKEN", b"one", &sb, &entry())
                .unwrap()
        );
        assert!(
            s.repos(&a)
                .set_secret(&repo.id, "TOKEN", b"two", &sb, &entry())
                .unwrap()
        );
        assert!(
            !s.repos(&b)
                .set_secret(&repo.id, "TOKEN", b"x", &sb, &entry())
                .unwrap(),
            "another tenant's repository"
        );
        assert_eq!(
            s.repo_secret_values(&repo, &sb).unwrap(),
            [("TOKEN".to_string(), "two".to_string())]
        );
        assert_eq!(s.repos(&a).secret_names(&repo.id).unwrap().len(), 1);
        let (_, sealed) = s.repo_for_webhook(&repo.id).unwrap().unwrap();
        assert_eq!(sb.open(&sealed).unwrap(), b"hook");
        assert!(s.repos(&b).get(&repo.id).unwrap().is_none());
        assert!(
            s.repos(&a)
                .delete_secret(&repo.id, "TOKEN", &entry())
                .unwrap()
        );
    }
}
