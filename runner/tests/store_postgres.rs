//! The store on a PostgreSQL server of the test's own, as several runners
//! use it: two stores (two runners' pools) on one database claiming runs
//! and appending to the audit log at once; rate limits and lockouts
//! shared; a schema newer than the binary.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use runner::service::abuse::{
    Abuse, Limit, LockoutPolicy, Outcome, PENDING_TTL_MS, Policies, Refused,
};
use runner::service::store::audit::verify;
use runner::service::store::{NewAuditEntry, NewRun, Store, StoreError, Submitted};
use test_support::postgres::{Postgres, postgres_or_skip};

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

fn policies(per_key: u32, failures: u32) -> Policies {
    Policies {
        per_ip: Limit {
            limit: 1000,
            window_ms: 60_000,
        },
        per_key: Limit {
            limit: per_key,
            window_ms: 60_000,
        },
        lockout: LockoutPolicy {
            failures,
            window_ms: 300_000,
            duration_ms: 600_000,
        },
    }
}

/// Two runners' limiters on one database, reading one (test) clock.
fn two_limiters(pg: &Postgres, p: Policies) -> (Abuse, Abuse, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(1_700_000_000_000));
    let limiter = || {
        let now = Arc::clone(&now);
        let store = Store::open(Path::new(&pg.url())).unwrap();
        assert!(store.is_shared());
        let a = Abuse::for_store(p, &store);
        assert!(a.is_shared(), "on PostgreSQL the state is in the database");
        a.with_clock(Arc::new(move || now.load(Ordering::SeqCst)))
    };
    (limiter(), limiter(), now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_share_one_rate_window_and_one_lockout() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let (a, b, _) = two_limiters(&pg, policies(5, 3));
    for _ in 0..3 {
        a.hit_key("k1").await.unwrap();
    }
    for _ in 0..2 {
        b.hit_key("k1").await.unwrap();
    }
    assert!(matches!(a.hit_key("k1").await, Err(Refused::Limited(_))));
    assert!(matches!(b.hit_key("k1").await, Err(Refused::Limited(_))));
    assert!(b.hit_key("k2").await.is_ok(), "keys are independent");

    // Three failures, through either runner, lock the address out on both.
    assert!(!a.fail("198.51.100.7").await.unwrap());
    let t = b.begin("198.51.100.7").await.unwrap();
    assert!(!b.end("198.51.100.7", t, Outcome::Invalid).await.unwrap());
    assert!(a.admit("198.51.100.7").await.is_ok());
    assert!(b.fail("198.51.100.7").await.unwrap(), "the third locks");
    for l in [&a, &b] {
        assert!(matches!(
            l.admit("198.51.100.7").await,
            Err(Refused::Locked(left)) if left.as_secs() > 500
        ));
        assert!(matches!(
            l.begin("198.51.100.7").await,
            Err(Refused::Locked(_))
        ));
    }
    assert!(b.admit("198.51.100.8").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_on_two_runners_never_pass_the_limit() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let (a, b, _) = two_limiters(&pg, policies(25, 5));
    let limiters = Arc::new([a, b]);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let limiters = Arc::clone(&limiters);
        tasks.push(tokio::spawn(async move {
            let l = &limiters[t % 2];
            let (mut hits, mut begun) = (0, 0);
            for _ in 0..10 {
                match l.hit_key("shared").await {
                    Ok(()) => hits += 1,
                    Err(Refused::Limited(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
                // Verifications begun and never ended (all at once).
                match l.begin("203.0.113.5").await {
                    Ok(_) => begun += 1,
                    Err(Refused::Busy) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            (hits, begun)
        }));
    }
    let (mut hits, mut begun) = (0, 0);
    for t in tasks {
        let (h, b) = t.await.unwrap();
        hits += h;
        begun += b;
    }
    assert_eq!(hits, 25, "160 hits, the limit admitted");
    assert_eq!(begun, 5, "as many verifications as failures would lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_runners_verifications_stop_counting_and_rows_are_swept() {
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let (a, b, now) = two_limiters(&pg, policies(5, 3));
    // Runner A begins three verifications and dies before ending them.
    for _ in 0..3 {
        a.begin("192.0.2.1").await.unwrap();
    }
    drop(a);
    assert_eq!(b.begin("192.0.2.1").await, Err(Refused::Busy));
    now.fetch_add(PENDING_TTL_MS - 1, Ordering::SeqCst);
    assert_eq!(b.begin("192.0.2.1").await, Err(Refused::Busy));
    now.fetch_add(1, Ordering::SeqCst);
    let t = b.begin("192.0.2.1").await.expect("expired: room again");
    assert!(b.end("192.0.2.1", t, Outcome::Valid).await.is_ok());

    // Rows expire with what they count: a window after its last hit, a
    // lockout when it lifts.
    let store = Store::open(Path::new(&pg.url())).unwrap();
    for i in 0..50 {
        b.admit(&format!("10.1.0.{i}")).await.unwrap();
    }
    for _ in 0..3 {
        b.fail("10.2.0.1").await.unwrap();
    }
    let at = now.load(Ordering::SeqCst);
    let rows = store.abuse_rows().unwrap();
    assert_eq!(rows, 51, "50 windows and one lockout");
    assert_eq!(store.sweep_abuse(at + 59_999).unwrap(), 0);
    assert_eq!(store.sweep_abuse(at + 60_000).unwrap(), 50, "the windows");
    assert_eq!(store.sweep_abuse(at + 599_999).unwrap(), 0, "still locked");
    assert_eq!(store.sweep_abuse(at + 600_000).unwrap(), 1);
    assert_eq!(store.abuse_rows().unwrap(), 0);
}

/// A finished run of `tenant` keeping about `bytes` of output.
fn finished_run(s: &Store, tenant: &runner::service::store::TenantId, id: &str, bytes: usize) {
    use runner::verdict::{RunResult, StageResult, Status};
    let run = NewRun {
        id,
        key_id: "k",
        language: "python",
        version: "3",
        request: b"spec",
    };
    s.runs(tenant).submit(&run, 1000, None).unwrap();
    s.queue().claim_next(tenant).unwrap().unwrap();
    let result = RunResult {
        status: Status::Ok,
        language: "python".into(),
        version: "3".into(),
        compile: None,
        run: Some(StageResult {
            stdout: "x".repeat(bytes),
            ..StageResult::default()
        }),
        message: None,
    };
    assert!(s.queue().finish(id, &result).unwrap());
}

/// The retention sweep on PostgreSQL (its per-tenant budget query once
/// failed there: `SUM` of a BIGINT is a NUMERIC, found by the partition
/// test's log).
#[test]
fn retention_sweeps_by_age_and_by_tenant_budget() {
    use runner::service::store::{Retention, now_ms};
    let Some(pg) = postgres_or_skip(module_path!()) else {
        return;
    };
    let s = Store::open(Path::new(&pg.url())).unwrap();
    let a = s.create_tenant("a").unwrap().id;
    let b = s.create_tenant("b").unwrap().id;
    for i in 0..4 {
        finished_run(&s, &a, &format!("a{i}"), 10_000);
    }
    finished_run(&s, &b, "b0", 10_000);
    let budget = Retention {
        max_age: None,
        tenant_max_bytes: Some(25_000),
    };
    let swept = s.sweep(&budget, now_ms()).unwrap();
    assert_eq!(swept.by_size, 2, "{swept:?}");
    let left = |t| {
        let mut ids: Vec<String> = s
            .runs(t)
            .list(None, 100, None)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(left(&a), ["a2", "a3"], "the oldest went");
    assert_eq!(left(&b), ["b0"], "another tenant's runs stay");
    let by_age = Retention {
        max_age: Some(std::time::Duration::from_secs(60)),
        tenant_max_bytes: None,
    };
    assert_eq!(s.sweep(&by_age, now_ms()).unwrap().by_age, 0);
    assert_eq!(s.sweep(&by_age, now_ms() + 61_000).unwrap().by_age, 3);
    assert!(left(&a).is_empty() && left(&b).is_empty());
}
