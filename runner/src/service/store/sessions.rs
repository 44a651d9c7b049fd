//! Sign-in sessions of people using the web pages. The cookie carries a
//! random token; the table holds its SHA-256 only, with the person's tenant,
//! role and the session's CSRF token.

use super::sql::p;

use super::{Store, StoreError, TenantId};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The identity provider's `sub`.
    pub subject: String,
    /// What the pages show (name, email or subject).
    pub name: String,
    pub role: String,
    /// A release manager's approval scope (`None`: every environment).
    pub environments: Option<Vec<String>>,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub tenant: &'a TenantId,
    pub subject: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub environments: Option<&'a [String]>,
    pub csrf: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

impl Store {
    /// Records a new session, and ends every other session of the same
    /// person that the browser presented (rotation at sign-in).
    pub fn insert_session(
        &self,
        s: &NewSession<'_>,
        replaces: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(old) = replaces {
                tx.execute("DELETE FROM web_sessions WHERE token_hash = ?1", p![old])?;
            }
            tx.execute(
                "INSERT INTO web_sessions (token_hash, tenant_id, subject, name, role, csrf, created_at, last_seen, expires_at, environments)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
                p![
                    s.token_hash,
                    s.tenant.as_str(),
                    s.subject,
                    s.name,
                    s.role,
                    s.csrf,
                    s.now,
                    s.expires_at,
                    s.environments.map(|e| serde_json::to_string(e).unwrap_or_default())
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The live session of a token hash, its idle clock restarted; `None`
    /// (and the row removed) when it expired, idle longer than `idle_ms` or
    /// past its absolute end.
    pub fn touch_session(
        &self,
        token_hash: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.with(|c| {
            let rec = c
                .query_opt(
                    "SELECT s.tenant_id, t.name, s.subject, s.name, s.role, s.csrf, s.created_at, s.last_seen, s.expires_at, s.environments
                     FROM web_sessions s JOIN tenants t ON t.id = s.tenant_id WHERE s.token_hash = ?1",
                    p![token_hash],
                    |r| {
                        Ok(SessionRecord {
                            tenant: TenantId(r.get(0)?),
                            tenant_name: r.get(1)?,
                            subject: r.get(2)?,
                            name: r.get(3)?,
                            role: r.get(4)?,
                            csrf: r.get(5)?,
                            created_at: r.get(6)?,
                            last_seen: r.get(7)?,
                            expires_at: r.get(8)?,
                            // Unreadable reads as empty: approves nothing.
                            environments: r
                                .get::<Option<String>>(9)?
                                .map(|t| serde_json::from_str(&t).unwrap_or_default()),
                        })
                    },
                )?;
            let Some(rec) = rec else { return Ok(None) };
            if now >= rec.expires_at || now - rec.last_seen >= idle_ms {
                c.execute("DELETE FROM web_sessions WHERE token_hash = ?1", p![token_hash])?;
                return Ok(None);
            }
            // Written at most once a minute: pages poll, the disk need not.
            if now - rec.last_seen >= 60_000 {
                c.execute(
                    "UPDATE web_sessions SET last_seen = ?2 WHERE token_hash = ?1",
                    p![token_hash, now],
                )?;
            }
            Ok(Some(SessionRecord {
                last_seen: now,
                ..rec
            }))
        })
    }

    pub fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM web_sessions WHERE token_hash = ?1",
                p![token_hash],
            )? > 0)
        })
    }

    /// Removes sessions past their absolute end or idle longer than
    /// `idle_ms`; returns how many.
    pub fn sweep_sessions(&self, now: i64, idle_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM web_sessions WHERE expires_at <= ?1 OR last_seen <= ?1 - ?2",
                p![now, idle_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_idle_and_absolute() {
        let store = Store::in_memory().unwrap();
        let t = store.create_tenant("alpha").unwrap();
        let new = |hash: &'static str, now, end| NewSession {
            token_hash: hash,
            tenant: &t.id,
            subject: "u1",
            name: "U One",
            role: "developer",
            environments: None,
            csrf: "c",
            now,
            expires_at: end,
        };
        store
            .insert_session(&new("a", 0, 10_000_000), None)
            .unwrap();
        let s = store.touch_session("a", 61_000, 120_000).unwrap().unwrap();
        assert_eq!(
            (s.tenant_name.as_str(), s.role.as_str()),
            ("alpha", "developer")
        );
        assert!(
            store
                .touch_session("a", 61_000 + 120_000, 120_000)
                .unwrap()
                .is_none(),
            "idle"
        );
        store.insert_session(&new("b", 0, 100_000), None).unwrap();
        assert!(
            store
                .touch_session("b", 100_000, 1_000_000)
                .unwrap()
                .is_none(),
            "absolute"
        );
        store.insert_session(&new("c", 0, 100_000), None).unwrap();
        store
            .insert_session(&new("d", 0, 100_000), Some("c"))
            .unwrap();
        assert!(
            store.touch_session("c", 1, 1_000_000).unwrap().is_none(),
            "rotated"
        );
        assert!(store.touch_session("d", 1, 1_000_000).unwrap().is_some());
        let scope = ["demo".to_owned()];
        store
            .insert_session(
                &NewSession {
                    role: "release-manager",
                    environments: Some(&scope),
                    ..new("e", 0, 100_000)
                },
                None,
            )
            .unwrap();
        let e = store.touch_session("e", 1, 1_000_000).unwrap().unwrap();
        assert_eq!(e.environments.as_deref(), Some(&scope[..]));
        assert!(store.delete_session("d").unwrap());
        assert!(
            store.touch_session("d", 1, 1_000_000).unwrap().is_none(),
            "signed out"
        );
    }
}
