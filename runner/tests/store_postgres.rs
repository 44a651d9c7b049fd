//! The store on a PostgreSQL server of the test's own, as several runners
//! use it: two stores (two runners' pools) on one database claiming runs
//! and appending to the audit log at once; a schema newer than the binary.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use runner::service::store::audit::verify;
use runner::service::store::{NewAuditEntry, NewRun, Store, StoreError, Submitted};
use test_support::postgres::postgres_or_skip;

#[test]
fn runs_are_claimed_once_by_runners_claiming_at_once() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let runners: Vec<Store> = (0..2)
        .map(|_| Store::open(Path::new(&pg.url())).unwrap())
        .collect();
    let tenant = runners[0].create_tenant("school").unwrap().id;
    let mut ids = Vec::new();
    for i in 0..60 {
        let id = format!("r{i}");
        let run = NewRun {
            id: &id,
            key_id: "k",
            language: "python",
            version: "3",
            request: b"{}",
        };
        assert!(matches!(
            runners[i % 2]
                .runs(&tenant)
                .submit(&run, 1000, None)
                .unwrap(),
            Submitted::Queued(_)
        ));
        ids.push(id);
    }
    let claimed = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..6 {
            let (store, tenant, claimed) = (&runners[t % 2], &tenant, Arc::clone(&claimed));
            s.spawn(move || {
                while let Some((id, _)) = store.queue().claim(tenant, usize::MAX).unwrap() {
                    claimed.lock().unwrap().push(id);
                }
            });
        }
    });
    let claimed = claimed.lock().unwrap().clone();
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 60, "each run claimed once");
    assert_eq!(unique.len(), 60);
}

#[test]
fn the_tenant_bound_holds_across_runners() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let runners: Vec<Store> = (0..2)
        .map(|_| Store::open(Path::new(&pg.url())).unwrap())
        .collect();
    let tenant = runners[0].create_tenant("school").unwrap().id;
    for i in 0..20 {
        let id = format!("r{i}");
        let run = NewRun {
            id: &id,
            key_id: "k",
            language: "python",
            version: "3",
            request: b"{}",
        };
        runners[0].runs(&tenant).submit(&run, 1000, None).unwrap();
    }
    let claimed = Arc::new(Mutex::new(0));
    std::thread::scope(|s| {
        for t in 0..6 {
            let (store, tenant, claimed) = (&runners[t % 2], &tenant, Arc::clone(&claimed));
            s.spawn(move || {
                while store.queue().claim(tenant, 3).unwrap().is_some() {
                    *claimed.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(
        *claimed.lock().unwrap(),
        3,
        "three running at most, on all runners"
    );
}

#[test]
fn concurrent_audit_appends_stay_one_chain() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let runners: Vec<Store> = (0..2)
        .map(|_| Store::open(Path::new(&pg.url())).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..6 {
            let store = &runners[t % 2];
            s.spawn(move || {
                for i in 0..25 {
                    store
                        .audit()
                        .append(&NewAuditEntry {
                            actor: format!("writer-{t}"),
                            action: "test.append".into(),
                            detail: Some(i.to_string()),
                            ..NewAuditEntry::default()
                        })
                        .unwrap();
                }
            });
        }
    });
    let all = runners[1].audit().all().unwrap();
    assert_eq!(all.len(), 150);
    assert_eq!(verify(&all), vec![], "one unbroken chain");
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    drop(Store::open(Path::new(&pg.url())).unwrap());
    pg.psql("UPDATE schema_version SET version = version + 1")
        .unwrap();
    let e = Store::open(Path::new(&pg.url())).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
    assert!(e.to_string().contains("upgrade this runner"), "{e}");
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let e = Store::open(Path::new("postgres://runner:hunter2@127.0.0.1:1/runner")).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
