//! The scheduler and the service over a scripted job backend: queue to
//! verdict, every verdict the backend can give, cancellation removing the
//! job, recovery after a crash, fairness between tenants, and what the
//! backend was asked, in order. No engine needed: these run anywhere; the
//! same paths on real Docker are in service_e2e.rs.

mod common;

use std::time::{Duration, Instant};

use common::service::{Service, config, python};
use runner::backend::OutputStream;
use runner::backend::fake::{Call, Reply, When};
use runner::service::auth::Role;
use serde_json::{Value, json};

fn started(
    extra: &str,
) -> (
    Service,
    std::sync::Arc<runner::backend::fake::ScriptedBackend>,
) {
    Service::fake(config(extra), true)
}

async fn wait_for_state(s: &Service, key: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, r, _) = s
            .call("GET", &format!("/v1/runs/{id}"), Some(key), None)
            .await;
        if r["state"] == state {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never became {state}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_run_goes_through_the_backend_to_its_verdict() {
    let (s, fake) = started("");
    fake.on(When::input(b"print(42)"), Reply::ok("42\n"));
    let key = s.key("alpha", Role::Learner);
    let (status, b, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(key),
            Some(python("print(42)")),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["result"]["status"], "ok", "{b}");
    assert_eq!(b["result"]["run"]["stdout"], "42\n");
    let id = b["id"].as_str().unwrap().to_owned();
    let journal = fake.journal();
    assert_eq!(
        journal,
        [
            Call::Open { job: id.clone() },
            Call::Start {
                job: id.clone(),
                role: "run".into(),
                image: journal_image(&journal),
            },
            Call::Step {
                job: id.clone(),
                role: "run".into(),
                argv: vec!["python3".into(), "--".into(), "main.py".into()],
            },
            Call::Stop {
                job: id.clone(),
                role: "run".into()
            },
            Call::Close { job: id },
        ]
    );
    assert!(fake.open_jobs().is_empty(), "nothing of the job is left");
}

fn journal_image(journal: &[Call]) -> String {
    journal
        .iter()
        .find_map(|c| match c {
            Call::Start { image, .. } => Some(image.clone()),
            _ => None,
        })
        .expect("a sandbox started")
}

#[tokio::test]
async fn each_verdict_the_backend_reports_reaches_the_client() {
    let (s, fake) = started("");
    fake.on(
        When::input(b"exit(3)"),
        Reply::Exit {
            output: vec![(OutputStream::Stderr, "bye\n".into())],
            exit_code: 3,
            archive: None,
        },
    )
    .on(When::input(b"eat_memory()"), Reply::OutOfMemory)
    .on(
        When::input(b"loop_forever()"),
        Reply::Hang { output: vec![] },
    );
    let key = s.key("alpha", Role::Learner);
    for (code, status) in [
        ("exit(3)", "runtime_error"),
        ("eat_memory()", "memory_limit"),
        ("loop_forever()", "time_limit"),
    ] {
        let mut body = python(code);
        body["limits"] = json!({"run_wall_time_ms": 300});
        let (_, b, _) = s
            .call("POST", "/v1/runs?wait=true", Some(key), Some(body))
            .await;
        assert_eq!(b["result"]["status"], status, "{code}: {b}");
    }
}

#[tokio::test]
async fn a_compile_error_ends_the_run_before_its_run_stage() {
    let (s, fake) = started("");
    fake.on(
        When::program("gcc"),
        Reply::Exit {
            output: vec![(
                OutputStream::Stderr,
                "main.c:1: error: expected ';'\n".into(),
            )],
            exit_code: 1,
            archive: None,
        },
    );
    let key = s.key("alpha", Role::Learner);
    let body = json!({"language": "c", "files": [{"name": "main.c", "content": "int main() { return 0 }"}]});
    let (_, b, _) = s
        .call("POST", "/v1/runs?wait=true", Some(key), Some(body))
        .await;
    assert_eq!(b["result"]["status"], "compile_error", "{b}");
    assert!(
        b["result"]["compile"]["stderr"]
            .as_str()
            .unwrap()
            .contains("expected ';'"),
        "{b}"
    );
    assert!(
        !fake
            .journal()
            .iter()
            .any(|c| matches!(c, Call::Start { role, .. } if role == "run")),
        "no run stage after a failed compile"
    );
}

#[tokio::test]
async fn a_backend_failure_is_an_internal_error_that_leaks_nothing() {
    let (s, fake) = started("");
    fake.on(
        When::default(),
        Reply::Fail("engine socket /var/run/secret.sock refused".into()),
    );
    let key = s.key("alpha", Role::Learner);
    let (_, b, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(key),
            Some(python("print(1)")),
        )
        .await;
    assert_eq!(b["result"]["status"], "internal_error", "{b}");
    let text = b.to_string();
    assert!(!text.contains("secret.sock"), "internals leaked: {text}");
    assert!(fake.open_jobs().is_empty(), "the failed job was closed");
}

#[tokio::test]
async fn cancelling_a_running_run_removes_its_job() {
    let (s, fake) = started("");
    fake.on(
        When::default(),
        Reply::Hang {
            output: vec![(OutputStream::Stdout, "working\n".into())],
        },
    );
    let key = s.key("alpha", Role::Learner);
    let mut body = python("while True: pass");
    body["limits"] = json!({"run_wall_time_ms": 20000});
    let (_, b, _) = s.call("POST", "/v1/runs", Some(key), Some(body)).await;
    let id = b["id"].as_str().unwrap().to_owned();
    fake.until_steps_started(1).await;
    let (status, b, _) = s
        .call("DELETE", &format!("/v1/runs/{id}"), Some(key), None)
        .await;
    assert!(status == 200 || status == 202, "{status}: {b}");
    let r = wait_for_state(&s, key, &id, "cancelled").await;
    assert_eq!(r["state"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.open_jobs().is_empty() {
        assert!(Instant::now() < deadline, "the cancelled job is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fake.journal().contains(&Call::Remove { job: id }),
        "the backend was asked to remove the job"
    );
}

#[tokio::test]
async fn runs_interrupted_by_a_crash_are_finished_and_their_jobs_removed() {
    let (s, _) = Service::fake(config(""), false);
    let key = s.key("alpha", Role::Learner).to_owned();
    let (_, b, _) = s
        .call("POST", "/v1/runs", Some(&key), Some(python("print(1)")))
        .await;
    let id = b["id"].as_str().unwrap().to_owned();
    // The previous process claimed it, then died.
    let tenant = s.store.tenant_by_name("alpha").unwrap().unwrap().id;
    let claimed = s
        .store
        .call(move |st| st.queue().claim_next(&tenant))
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(claimed.0, id);
    // Its lease ran out (on PostgreSQL a claim renews the claimer's lease,
    // and only the runs of runners whose lease lapsed are reaped): dropped
    // here rather than waited for.
    s.store.drop_lease().unwrap();
    let (next, fake) = Service::fake_on(s.store.clone(), config(""));
    let recovered = next.scheduler.recover().await.unwrap();
    assert_eq!(recovered, 1);
    assert!(fake.journal().contains(&Call::Remove { job: id.clone() }));
    assert!(fake.journal().contains(&Call::Collect));
    let (_, r, _) = next
        .call("GET", &format!("/v1/runs/{id}"), Some(&key), None)
        .await;
    assert_eq!(r["state"], "finished");
    assert_eq!(r["result"]["status"], "internal_error");
    assert!(
        r["result"]["message"]
            .as_str()
            .unwrap()
            .contains("not retried"),
        "{r}"
    );
}

/// Issue 9, finding 6: one tenant at its quota with hundreds queued does
/// not hold back another tenant's run while a global slot is free.
#[tokio::test]
async fn a_long_queue_of_one_tenant_does_not_starve_another() {
    let (s, fake) = started(
        "tenant_concurrency = 1\nglobal_concurrency = 2\nqueue_capacity = 1000\n\
         [rate_limit]\nper_key = 100000\nper_ip = 100000",
    );
    fake.on(When::input(b"sleep_long()"), Reply::Hang { output: vec![] })
        .on(When::input(b"beta()"), Reply::ok("beta\n"));
    let alpha = s.key("alpha", Role::Learner);
    let mut sleeper = python("sleep_long()");
    sleeper["limits"] = json!({"run_wall_time_ms": 20000});
    let mut ids = Vec::new();
    for _ in 0..301 {
        let (status, b, _) = s
            .call("POST", "/v1/runs", Some(alpha), Some(sleeper.clone()))
            .await;
        assert_eq!(status, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    wait_for_state(&s, alpha, &ids[0], "running").await;
    let (_, beta, _) = s
        .call(
            "POST",
            "/v1/runs?wait=true",
            Some(s.key("beta", Role::Learner)),
            Some(python("beta()")),
        )
        .await;
    assert_eq!(
        beta["state"], "finished",
        "beta's run waited behind alpha's queue: {beta}"
    );
    assert_eq!(beta["result"]["run"]["stdout"], "beta\n", "{beta}");
    for id in ids.iter().rev() {
        s.call("DELETE", &format!("/v1/runs/{id}"), Some(alpha), None)
            .await;
    }
}
