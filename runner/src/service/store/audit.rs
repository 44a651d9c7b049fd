//! The audit log: an append-only hash chain of security-relevant events.
//!
//! Each entry's hash covers its content and the previous entry's hash, so a
//! modified, deleted, inserted or reordered entry breaks the chain where it
//! happened. The chain proves integrity relative to its head: keep the head
//! (`runner audit head`) somewhere else to also detect a rewritten tail.

use std::collections::{HashMap, HashSet};

use super::sql::{Conn, Lock, Row, p};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, StoreError, now_ms};

/// Hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Who: `key:<id>`, `cli`, `anonymous`, `ip:<addr>`, `system`.
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// The hash of an entry: SHA-256 over the previous hash and the content.
/// The sequence number is not hashed: order is what the chain itself proves.
pub fn entry_hash(
    prev_hash: &str,
    at: i64,
    actor: &str,
    tenant: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> String {
    // serde_json gives an unambiguous encoding of the fields.
    let content = serde_json::json!([prev_hash, at, actor, tenant, action, target, detail]);
    let digest = Sha256::digest(content.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn recompute(e: &AuditEntry) -> String {
    entry_hash(
        &e.prev_hash,
        e.at,
        &e.actor,
        e.tenant.as_deref(),
        &e.action,
        e.target.as_deref(),
        e.detail.as_deref(),
    )
}

/// A break in the chain, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tampering {
    /// The entry's content no longer matches its hash.
    Modified { seq: i64 },
    /// Entries between `after` and `before` are missing.
    Deleted { after: i64, before: i64 },
    /// This entry was not part of the chain as written.
    Inserted { seq: i64 },
    /// This entry was moved: it was written right after entry `follows`.
    Reordered { seq: i64, follows: i64 },
    /// The head differs from the anchor the caller kept.
    HeadMismatch { expected: String, found: String },
}

impl std::fmt::Display for Tampering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tampering::Modified { seq } => write!(
                f,
                "entry {seq} was modified: its content does not match its hash"
            ),
            Tampering::Deleted { after, before } if *after == 0 => {
                write!(
                    f,
                    "entries before {before} were deleted: the chain does not start at its beginning"
                )
            }
            Tampering::Deleted { after, before } => {
                write!(f, "entries between {after} and {before} were deleted")
            }
            Tampering::Inserted { seq } => write!(
                f,
                "entry {seq} was inserted: it is not part of the chain as written"
            ),
            Tampering::Reordered { seq, follows } => {
                write!(
                    f,
                    "entry {seq} was moved: it was written right after entry {follows}"
                )
            }
            Tampering::HeadMismatch { expected, found } => {
                write!(
                    f,
                    "the head is {found}, not the anchored {expected}: entries after the anchor were removed or rewritten"
                )
            }
        }
    }
}

/// Checks a whole chain (entries in `seq` order); returns every break found.
///
/// The chain is walked by its links (each entry names its predecessor's
/// hash) from the genesis; what the walk cannot reach, or reaches out of
/// order, is where the log was tampered with.
pub fn verify(entries: &[AuditEntry]) -> Vec<Tampering> {
    let mut chain = Chain::new(entries);
    chain.walk(GENESIS, None);
    for (i, e) in entries.iter().enumerate() {
        if !chain.visited.contains(&e.seq) {
            chain.unreached(i, e);
        }
    }
    chain.found
}

/// The links of a chain, and what a walk along them found.
struct Chain<'a> {
    entries: &'a [AuditEntry],
    /// Hashes some entry names as its predecessor.
    referenced: HashSet<&'a str>,
    by_hash: HashMap<&'a str, i64>,
    successors: HashMap<&'a str, Vec<&'a AuditEntry>>,
    visited: HashSet<i64>,
    found: Vec<Tampering>,
}

impl<'a> Chain<'a> {
    fn new(entries: &'a [AuditEntry]) -> Self {
        let mut successors: HashMap<&str, Vec<&AuditEntry>> = HashMap::new();
        for e in entries {
            successors.entry(e.prev_hash.as_str()).or_default().push(e);
        }
        Chain {
            entries,
            referenced: entries.iter().map(|e| e.prev_hash.as_str()).collect(),
            by_hash: entries.iter().map(|e| (e.hash.as_str(), e.seq)).collect(),
            successors,
            visited: HashSet::new(),
            found: entries
                .iter()
                .filter(|e| recompute(e) != e.hash)
                .map(|e| Tampering::Modified { seq: e.seq })
                .collect(),
        }
    }

    /// The next entry after the one hashed `cur`: at a fork, the one
    /// something else still links to (the forged branch of an insertion is
    /// a dead end).
    fn next(&self, cur: &str) -> Option<&'a AuditEntry> {
        let candidates: Vec<&AuditEntry> = self
            .successors
            .get(cur)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|e| !self.visited.contains(&e.seq))
                    .collect()
            })
            .unwrap_or_default();
        candidates
            .iter()
            .find(|e| self.referenced.contains(e.hash.as_str()))
            .or_else(|| candidates.iter().min_by_key(|e| e.seq))
            .copied()
    }

    /// Follows links from `from`; an entry reached after a later one was
    /// moved.
    fn walk(&mut self, from: &str, mut last: Option<i64>) {
        let mut cur = from.to_owned();
        while let Some(next) = self.next(&cur) {
            self.visited.insert(next.seq);
            if let Some(prev) = last.filter(|p| next.seq < *p) {
                self.found.push(Tampering::Reordered {
                    seq: next.seq,
                    follows: prev,
                });
            }
            last = Some(next.seq);
            cur = next.hash.clone();
        }
    }

    /// Names why the walk did not reach entry `i`, then walks on from it.
    fn unreached(&mut self, i: usize, e: &'a AuditEntry) {
        let physical_prev = i.checked_sub(1).map(|p| &self.entries[p]);
        self.visited.insert(e.seq);
        if e.prev_hash == GENESIS || self.by_hash.contains_key(e.prev_hash.as_str()) {
            // It links into the chain, but the chain goes on without it.
            self.found.push(Tampering::Inserted { seq: e.seq });
            return;
        }
        // It links to an entry that is no longer there.
        match physical_prev {
            Some(p) if p.seq + 1 == e.seq => {
                // No gap in numbering: its predecessor was rewritten, hash and all.
                if !self.found.contains(&Tampering::Modified { seq: p.seq }) {
                    self.found.push(Tampering::Modified { seq: p.seq });
                }
            }
            _ => self.found.push(Tampering::Deleted {
                after: physical_prev.map_or(0, |p| p.seq),
                before: e.seq,
            }),
        }
        self.walk(&e.hash, Some(e.seq));
    }
}

/// Checks that the chain still holds an anchored head (`seq`, `hash`), as
/// printed by `runner audit head` earlier.
pub fn verify_anchor(entries: &[AuditEntry], seq: i64, hash: &str) -> Option<Tampering> {
    match entries.iter().find(|e| e.seq == seq) {
        Some(e) if e.hash == hash => None,
        Some(e) => Some(Tampering::HeadMismatch {
            expected: format!("{seq}:{hash}"),
            found: format!("{}:{}", e.seq, e.hash),
        }),
        None => Some(Tampering::HeadMismatch {
            expected: format!("{seq}:{hash}"),
            found: entries.last().map_or("an empty log".to_owned(), |e| {
                format!("{}:{}", e.seq, e.hash)
            }),
        }),
    }
}

/// The audit log of a store.
#[derive(Debug)]
pub struct AuditLog<'a> {
    store: &'a Store,
}

fn row(r: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        tenant: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        detail: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

impl<'a> AuditLog<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        AuditLog { store }
    }

    /// Appends an entry, chained to the current head, in one transaction.
    pub fn append(&self, e: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
        self.store.with(|c| {
            let tx = c.transaction()?;
            let entry = append_in(&tx, e)?;
            tx.commit()?;
            Ok(entry)
        })
    }

    /// Every entry, in `seq` order.
    pub fn all(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.with(|c| {
            let mut st = c.prepare(
                "SELECT seq, at, actor, tenant, action, target, detail, prev_hash, hash FROM audit ORDER BY seq",
            )?;
            let rows = st.query_map(p![], row)?;
            rows.collect::<Result<_, _>>()
        })
    }
}

/// Appends an entry inside the caller's transaction, so an action and its
/// audit entry commit together, or not at all.
pub fn append_in(tx: &Conn<'_>, e: &NewAuditEntry) -> Result<AuditEntry, StoreError> {
    let at = now_ms();
    // Writers on a shared database take turns at the head, so the log
    // stays one chain (SQLite's write lock does the same for one runner).
    tx.serialize(Lock::AuditChain)?;
    let (seq, prev): (i64, String) = tx
        .query_opt(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            p![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .unwrap_or_else(|| (0, GENESIS.to_owned()));
    let hash = entry_hash(
        &prev,
        at,
        &e.actor,
        e.tenant.as_deref(),
        &e.action,
        e.target.as_deref(),
        e.detail.as_deref(),
    );
    let entry = AuditEntry {
        seq: seq + 1,
        at,
        actor: e.actor.clone(),
        tenant: e.tenant.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        detail: e.detail.clone(),
        prev_hash: prev,
        hash,
    };
    tx.execute(
        "INSERT INTO audit (seq, at, actor, tenant, action, target, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        p![
            entry.seq,
            entry.at,
            entry.actor,
            entry.tenant,
            entry.action,
            entry.target,
            entry.detail,
            entry.prev_hash,
            entry.hash
        ],
    )?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: usize) -> (Store, Vec<AuditEntry>) {
        let s = Store::in_memory().unwrap();
        for i in 0..n {
            s.audit()
                .append(&NewAuditEntry {
                    actor: "cli".into(),
                    tenant: Some("t".into()),
                    action: format!("action-{i}"),
                    target: Some(format!("target-{i}")),
                    detail: None,
                })
                .unwrap();
        }
        let all = s.audit().all().unwrap();
        (s, all)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (_, all) = log_of(5);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].prev_hash, GENESIS);
        assert!(verify(&all).is_empty());
    }

    #[test]
    fn a_modified_entry_is_named() {
        let (_, mut all) = log_of(5);
        all[2].action = "key.revoke".into();
        assert_eq!(verify(&all), vec![Tampering::Modified { seq: 3 }]);
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let (_, mut all) = log_of(5);
        all.remove(2);
        assert_eq!(
            verify(&all),
            vec![Tampering::Deleted {
                after: 2,
                before: 4
            }]
        );
        let (_, mut all) = log_of(3);
        all.remove(0);
        assert_eq!(
            verify(&all),
            vec![Tampering::Deleted {
                after: 0,
                before: 2
            }]
        );
    }

    #[test]
    fn an_inserted_entry_is_named() {
        // A forger with write access re-numbers the tail to make room and
        // hashes the new entry correctly; the next entry still points past it.
        let (_, all) = log_of(4);
        let forged_hash = entry_hash(&all[1].hash, 1, "cli", None, "key.create", None, None);
        let forged = AuditEntry {
            seq: 3,
            at: 1,
            actor: "cli".into(),
            tenant: None,
            action: "key.create".into(),
            target: None,
            detail: None,
            prev_hash: all[1].hash.clone(),
            hash: forged_hash,
        };
        let mut tampered = vec![all[0].clone(), all[1].clone(), forged];
        for e in &all[2..] {
            let mut e = e.clone();
            e.seq += 1;
            tampered.push(e);
        }
        assert_eq!(verify(&tampered), vec![Tampering::Inserted { seq: 3 }]);
    }

    #[test]
    fn reordered_entries_are_named() {
        let (_, all) = log_of(4);
        let mut swapped = all.clone();
        swapped[1].seq = 3;
        swapped[2].seq = 2;
        swapped.swap(1, 2);
        assert_eq!(
            verify(&swapped),
            vec![Tampering::Reordered { seq: 2, follows: 3 }]
        );
    }

    #[test]
    fn a_rewritten_entry_with_a_recomputed_hash_is_named() {
        let (_, mut all) = log_of(4);
        all[1].action = "forged".into();
        all[1].hash = recompute(&all[1]);
        assert_eq!(verify(&all), vec![Tampering::Modified { seq: 2 }]);
    }

    #[test]
    fn the_anchor_catches_a_truncated_tail() {
        let (_, mut all) = log_of(4);
        let head = all.last().unwrap().clone();
        assert_eq!(verify_anchor(&all, head.seq, &head.hash), None);
        all.pop();
        assert!(
            verify(&all).is_empty(),
            "a truncated tail looks intact by itself"
        );
        assert!(matches!(
            verify_anchor(&all, head.seq, &head.hash),
            Some(Tampering::HeadMismatch { .. })
        ));
    }

    #[test]
    fn messages_say_which_entry() {
        assert_eq!(
            Tampering::Deleted {
                after: 2,
                before: 4
            }
            .to_string(),
            "entries between 2 and 4 were deleted"
        );
        assert!(
            Tampering::Modified { seq: 7 }
                .to_string()
                .contains("entry 7")
        );
    }
}
