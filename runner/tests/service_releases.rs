//! Promotions and environments in the service, over the scripted release
//! engine (`FakeEngine`: no registry, Docker or cluster) and the scripted
//! job backend: who may request and approve, each refusal with its rule
//! named, deploys once approved, rollbacks and rejections, the audit chain,
//! reconciling after a crash, and green workflow runs built into dev. The
//! real engine is exercised end to end in `release_e2e.rs`.

mod common;

use common::git;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::service::{Service, config};
use runner::service::auth::Role;
use runner::service::releases::Releases;
use runner::service::releases::fake::FakeEngine;
use runner::service::store::NewAuditEntry;
use runner::service::store::promotions::NewPromotion;
use serde_json::{Value, json};

const IMG: &str =
    "registry.test/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const UNSIGNED: &str =
    "registry.test/bad@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const BROKEN: &str =
    "registry.test/broken@sha256:3333333333333333333333333333333333333333333333333333333333333333";

struct World {
    svc: Service,
    engine: Arc<FakeEngine>,
    releases: Arc<Releases>,
    /// A second release manager, and one scoped to `demo`.
    rm2: String,
    rm_demo: String,
}

fn world() -> World {
    let (svc, _jobs) = Service::fake(config(""), false);
    let engine = Arc::new(FakeEngine::standard().unsigned("/bad@").broken("/broken@"));
    engine.set_live("dev", IMG);
    let releases = svc
        .inner
        .enable_releases(Arc::clone(&engine) as _, "alpha", None, 50)
        .unwrap();
    releases.start();
    let rm2 = svc.new_key("alpha", Role::ReleaseManager);
    let rm_demo = svc.new_scoped_key("alpha", Role::ReleaseManager, Some(&["demo".into()]));
    World {
        svc,
        engine,
        releases,
        rm2,
        rm_demo,
    }
}

impl World {
    fn key(&self, role: Role) -> String {
        self.svc.key("alpha", role).to_owned()
    }

    async fn request(&self, key: &str, image: &str, env: &str) -> (u16, Value) {
        let (s, v, _) = self
            .svc
            .call(
                "POST",
                "/v1/promotions",
                Some(key),
                Some(json!({ "image": image, "environment": env })),
            )
            .await;
        (s, v)
    }

    async fn decide(&self, key: &str, id: &str, decision: &str, reason: &str) -> (u16, Value) {
        let (s, v, _) = self
            .svc
            .call(
                "POST",
                &format!("/v1/promotions/{id}/approvals"),
                Some(key),
                Some(json!({ "decision": decision, "reason": reason })),
            )
            .await;
        (s, v)
    }

    async fn get(&self, id: &str) -> Value {
        let (s, v, _) = self
            .svc
            .call(
                "GET",
                &format!("/v1/promotions/{id}"),
                Some(&self.key(Role::Developer)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Waits for the worker to end a promotion.
    async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(id).await;
            if !matches!(
                v["state"].as_str(),
                Some("approved" | "deploying" | "building")
            ) {
                return v;
            }
            assert!(Instant::now() < deadline, "still {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn audit_actions(&self) -> Vec<(String, String, String)> {
        let entries = self.svc.store.audit().all().unwrap();
        assert!(
            runner::service::store::audit::verify(&entries).is_empty(),
            "the audit chain verifies"
        );
        entries
            .into_iter()
            .filter(|e| e.action.starts_with("promotion."))
            .map(|e| (e.action, e.actor, e.detail.unwrap_or_default()))
            .collect()
    }
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{body}"
    );
}

#[tokio::test]
async fn approved_promotions_deploy_with_distinct_approvers_and_every_step_audited() {
    let w = world();
    let dev = w.key(Role::Developer);
    let rm1 = w.key(Role::ReleaseManager);

    let (s, p) = w.request(&dev, IMG, "demo").await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["state"], "pending");
    assert_eq!(p["required_approvals"], 1);
    assert_eq!(p["digest"], IMG.split_once('@').unwrap().1);
    assert_eq!(p["verification"][0]["check"], "signature");
    assert_eq!(p["verification"][0]["ok"], true);
    let id = p["id"].as_str().unwrap().to_owned();

    // Pending promotions are listed for approvers.
    let (s, list, _) = w
        .svc
        .call("GET", "/v1/promotions?state=pending", Some(&rm1), None)
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["promotions"][0]["id"], id.as_str());

    let (s, after) = w.decide(&w.rm_demo, &id, "approve", "looks good").await;
    assert_eq!(s, 200, "{after}");
    let done = w.settled(&id).await;
    assert_eq!(done["state"], "deployed", "{done}");
    assert_eq!(done["approvals"][0]["reason"], "looks good");
    assert_eq!(w.engine.live("demo").as_deref(), Some(IMG));

    // prod needs two distinct approvers.
    let (s, p) = w.request(&dev, IMG, "prod").await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, one) = w.decide(&rm1, &id, "approve", "").await;
    assert_eq!((s, one["state"].as_str()), (200, Some("pending")), "{one}");
    let (s, again) = w.decide(&rm1, &id, "approve", "").await;
    assert_error(s, &again, 409, "already_decided");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        w.engine.live("prod"),
        None,
        "one approval of two deploys nothing"
    );
    let (s, two) = w
        .decide(&w.rm2, &id, "approve", "second pair of eyes")
        .await;
    assert_eq!((s, two["state"].as_str()), (200, Some("approved")), "{two}");
    assert_eq!(w.settled(&id).await["state"], "deployed");
    assert_eq!(w.engine.live("prod").as_deref(), Some(IMG));
    assert!(
        w.engine
            .calls()
            .iter()
            .any(|c| c.starts_with("promote prod") && c.matches("key:").count() == 2),
        "the engine got both approvers: {:?}",
        w.engine.calls()
    );

    // What runs where.
    let (s, envs, _) = w
        .svc
        .call("GET", "/v1/environments", Some(&dev), None)
        .await;
    assert_eq!(s, 200, "{envs}");
    let names: Vec<_> = envs["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["image"].as_str()))
        .collect();
    assert_eq!(
        names,
        [("dev", Some(IMG)), ("demo", Some(IMG)), ("prod", Some(IMG))]
    );
    assert!(envs["environments"][0]["commit"].is_string());
    let (s, prod, _) = w
        .svc
        .call("GET", "/v1/environments/prod", Some(&dev), None)
        .await;
    assert_eq!(s, 200, "{prod}");
    assert_eq!(prod["history"][0]["kind"], "deployed");

    // Every step, in one verified chain, with who, where, what and why.
    let actions = w.audit_actions();
    let kinds: Vec<&str> = actions.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "promotion.requested",
            "promotion.approved",
            "promotion.deployed",
            "promotion.requested",
            "promotion.approved",
            "promotion.approved",
            "promotion.deployed",
        ]
    );
    let approval = &actions[5];
    assert!(approval.1.starts_with("key:"));
    assert!(
        approval.2.contains("prod")
            && approval.2.contains(IMG)
            && approval.2.contains("second pair of eyes"),
        "{approval:?}"
    );
}

#[tokio::test]
async fn self_approval_wrong_roles_scopes_and_tenants_are_refused() {
    let w = world();
    let rm1 = w.key(Role::ReleaseManager);
    // A release manager may request; then never approve their own.
    let (s, p) = w.request(&rm1, IMG, "demo").await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, v) = w.decide(&rm1, &id, "approve", "mine").await;
    assert_error(s, &v, 403, "self_approval");
    for role in [Role::Developer, Role::Admin, Role::Learner] {
        let (s, v) = w.decide(&w.key(role), &id, "approve", "").await;
        assert_error(s, &v, 403, "not_an_approver");
    }
    let (s, v) = w
        .decide(w.svc.key("beta", Role::ReleaseManager), &id, "approve", "")
        .await;
    assert_error(s, &v, 404, "releases_not_enabled");

    // Scoped to demo: not an approver for prod.
    w.engine.set_live("demo", IMG);
    let (s, p) = w.request(&w.key(Role::Developer), IMG, "prod").await;
    assert_eq!(s, 201, "{p}");
    let prod = p["id"].as_str().unwrap().to_owned();
    let (s, v) = w.decide(&w.rm_demo, &prod, "approve", "").await;
    assert_error(s, &v, 403, "not_an_approver");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("demo only")
    );

    // Learners cannot request; nobody sees another tenant's promotions.
    let (s, v) = w.request(&w.key(Role::Learner), IMG, "demo").await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v, _) = w
        .svc
        .call(
            "GET",
            &format!("/v1/promotions/{id}"),
            Some(w.svc.key("beta", Role::Admin)),
            None,
        )
        .await;
    assert_error(s, &v, 404, "releases_not_enabled");
    // Nothing was decided by any of the refused.
    assert_eq!(w.get(&id).await["approvals"], json!([]));
    assert_eq!(w.get(&id).await["state"], "pending");

    // A scope naming an environment the policy lacks is refused.
    let (s, v, _) = w
        .svc
        .call(
            "POST",
            "/v1/keys",
            Some(&w.key(Role::Admin)),
            Some(json!({ "role": "release-manager", "environments": ["staging"] })),
        )
        .await;
    assert_error(s, &v, 400, "invalid_scope");
    let (s, v, _) = w
        .svc
        .call(
            "POST",
            "/v1/keys",
            Some(&w.key(Role::Admin)),
            Some(json!({ "role": "developer", "environments": ["prod"] })),
        )
        .await;
    assert_error(s, &v, 400, "invalid_scope");
    let (s, v, _) = w
        .svc
        .call(
            "POST",
            "/v1/keys",
            Some(&w.key(Role::Admin)),
            Some(json!({ "role": "release-manager", "environments": ["prod"] })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["environments"], json!(["prod"]));
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_rule_named_and_refusals_recorded() {
    let w = world();
    let dev = w.key(Role::Developer);
    let tag = "registry.test/app:latest";
    let (s, v) = w.request(&dev, tag, "demo").await;
    assert_error(s, &v, 400, "not_pinned");
    let (s, v) = w.request(&dev, IMG, "staging").await;
    assert_error(s, &v, 400, "unknown_environment");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dev, demo, prod")
    );
    let (s, v) = w.request(&dev, IMG, "dev").await;
    assert_error(s, &v, 400, "automatic_environment");
    let (s, v, _) = w
        .svc
        .call(
            "POST",
            "/v1/promotions",
            Some(&dev),
            Some(json!({ "image": IMG, "environment": "demo", "force": true })),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // Never deployed in demo: prod refuses it, and says so.
    let (s, v) = w.request(&dev, IMG, "prod").await;
    assert_error(s, &v, 422, "not_live_in_previous");
    let refused = v["error"]["details"]["promotion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(w.get(&refused).await["state"], "refused");

    // Unsigned: verification failed, each check reported.
    w.engine.set_live("dev", UNSIGNED);
    let (s, v) = w.request(&dev, UNSIGNED, "demo").await;
    assert_error(s, &v, 422, "verification_failed");
    let checks = &v["error"]["details"]["verification"];
    assert_eq!(checks[0]["check"], "signature");
    assert_eq!(checks[0]["ok"], false);
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no signature")
    );

    // One open promotion per digest and environment.
    w.engine.set_live("dev", IMG);
    let (s, p) = w.request(&dev, IMG, "demo").await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, v) = w.request(&dev, IMG, "demo").await;
    assert_error(s, &v, 409, "already_requested");

    let rm = w.key(Role::ReleaseManager);
    let (s, v) = w.decide(&rm, &id, "reject", "  ").await;
    assert_error(s, &v, 400, "reason_required");
    let (s, v) = w.decide(&rm, &id, "maybe", "x").await;
    assert_error(s, &v, 400, "invalid_decision");
    let (s, v) = w.decide(&rm, &id, "approve", &"x".repeat(2000)).await;
    assert_error(s, &v, 400, "invalid_reason");
    let (s, v, _) = w
        .svc
        .call("GET", "/v1/promotions?state=nope", Some(&dev), None)
        .await;
    assert_error(s, &v, 400, "invalid_query");
    let (s, v, _) = w
        .svc
        .call("GET", "/v1/promotions/pr_missing", Some(&dev), None)
        .await;
    assert_error(s, &v, 404, "not_found");

    let kinds: Vec<String> = w.audit_actions().into_iter().map(|a| a.0).collect();
    assert_eq!(
        kinds,
        [
            "promotion.refused",
            "promotion.refused",
            "promotion.requested"
        ]
    );
}

#[tokio::test]
async fn a_rejection_ends_it_a_broken_image_rolls_back_and_withdrawals_are_the_requesters() {
    let w = world();
    let dev = w.key(Role::Developer);
    let rm = w.key(Role::ReleaseManager);
    let (_, p) = w.request(&dev, IMG, "demo").await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, v) = w
        .decide(&rm, &id, "reject", "CVE-2026-1 must be fixed first")
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("rejected")), "{v}");
    let (s, v) = w.decide(&w.rm2, &id, "approve", "").await;
    assert_error(s, &v, 409, "not_pending");
    assert_eq!(w.engine.live("demo"), None);

    // Broken: deployed, failed its health check, rolled back.
    w.engine.set_live("dev", BROKEN);
    let (_, p) = w.request(&dev, BROKEN, "demo").await;
    let id = p["id"].as_str().unwrap().to_owned();
    w.decide(&rm, &id, "approve", "").await;
    let done = w.settled(&id).await;
    assert_eq!(done["state"], "rolled_back", "{done}");
    assert!(done["message"].as_str().unwrap().contains("health check"));
    assert_eq!(w.engine.live("demo"), None);

    // Withdrawn by its requester; not by another developer's key.
    w.engine.set_live("dev", IMG);
    let (_, p) = w.request(&dev, IMG, "demo").await;
    let id = p["id"].as_str().unwrap().to_owned();
    let other_dev = w.svc.new_key("alpha", Role::Developer);
    let (s, v, _) = w
        .svc
        .call(
            "DELETE",
            &format!("/v1/promotions/{id}"),
            Some(&other_dev),
            None,
        )
        .await;
    assert_error(s, &v, 403, "forbidden");
    let (s, v, _) = w
        .svc
        .call("DELETE", &format!("/v1/promotions/{id}"), Some(&dev), None)
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("withdrawn")), "{v}");

    let kinds: Vec<String> = w.audit_actions().into_iter().map(|a| a.0).collect();
    assert_eq!(
        kinds,
        [
            "promotion.requested",
            "promotion.rejected",
            "promotion.requested",
            "promotion.approved",
            "promotion.rolled_back",
            "promotion.requested",
            "promotion.withdrawn",
        ]
    );
}

#[tokio::test]
async fn deploys_a_dead_process_left_are_reconciled_with_what_the_target_runs() {
    let w = world();
    let alpha = w.svc.store.tenant_by_name("alpha").unwrap().unwrap();
    let insert = |image: &str, env: &str| {
        let p = w
            .svc
            .store
            .promotions(&alpha.id)
            .insert(
                &NewPromotion {
                    environment: env,
                    image,
                    digest: Some(image.split_once('@').unwrap().1),
                    commit: None,
                    workflow_trigger: None,
                    state: "pending",
                    required_approvals: 0,
                    requested_by: "key:x",
                    verification: None,
                    message: None,
                },
                &NewAuditEntry {
                    actor: "key:x".into(),
                    action: "promotion.requested".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        // As a worker that died mid-deploy left it.
        w.svc
            .store
            .promotion_queue()
            .finish(
                &p.id,
                "pending",
                "deploying",
                None,
                None,
                &NewAuditEntry::default(),
            )
            .unwrap();
        p.id
    };
    // demo: the target runs the new image (the deploy had finished).
    w.engine.set_live("demo", IMG);
    let kept = insert(IMG, "demo");
    // prod: it runs something else (the deploy was rolled back or never began).
    let lost = insert(UNSIGNED, "prod");
    assert_eq!(w.releases.recover().await.unwrap(), 2);
    let kept = w.get(&kept).await;
    assert_eq!(kept["state"], "deployed", "{kept}");
    assert!(kept["message"].as_str().unwrap().contains("died"));
    let lost = w.get(&lost).await;
    assert_eq!(lost["state"], "failed", "{lost}");
    assert!(
        lost["message"]
            .as_str()
            .unwrap()
            .contains("request the promotion again")
    );
    assert!(w.engine.calls().contains(&"reconcile prod".to_owned()));
    let kinds: Vec<String> = w.audit_actions().into_iter().map(|a| a.0).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "promotion.reconciled")
            .count(),
        2
    );
}

#[tokio::test]
async fn the_latest_green_commit_on_main_is_built_and_deployed_to_dev_once() {
    let cache = test_support::TempDir::new("rel-cache");
    let repo = test_support::TempDir::new("rel-repo");
    let (svc, _jobs) = Service::fake_workflows("", cache.path());
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "one"]);
    let sha = git(repo.path(), &["rev-parse", "HEAD"]);

    let engine = Arc::new(FakeEngine::standard());
    let releases = svc
        .inner
        .enable_releases(
            Arc::clone(&engine) as _,
            "alpha",
            Some("acme/app".into()),
            50,
        )
        .unwrap();
    let admin = svc.key("alpha", Role::Admin).to_owned();
    let (s, r, _) = svc
        .call(
            "POST",
            "/v1/repos",
            Some(&admin),
            Some(json!({ "name": "acme/app", "url": format!("file://{}", repo.path().display()) })),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let repo_id = r["id"].as_str().unwrap().to_owned();

    // A green run of main, as the dispatcher records one.
    let record = |git_ref: &str, ok: bool| {
        let repo = svc.store.repo_by_id(&repo_id).unwrap().unwrap();
        let t = svc
            .store
            .trigger(
                &runner::service::store::workflows::NewTrigger {
                    repo: &repo,
                    commit: &sha,
                    git_ref,
                    event: "api",
                    actor: "key:x",
                    changed_paths: None,
                    delivery: None,
                },
                &NewAuditEntry::default(),
            )
            .unwrap();
        let runner::service::store::workflows::Triggered::Queued(t) = t else {
            panic!("queued")
        };
        let q = svc.store.workflow_queue();
        q.plan_trigger(
            &t,
            &[runner::service::store::workflows::NewWorkflowRun {
                workflow: "ci.yml".into(),
                name: "ci".into(),
                plan: "{}".into(),
                jobs: vec![],
                failed: None,
            }],
        )
        .unwrap();
        let run = q.claim_run().unwrap().unwrap();
        q.finish_run(&run.record.id, if ok { "success" } else { "failure" }, None)
            .unwrap();
    };
    record("refs/heads/feature", true);
    record("refs/heads/main", false);
    releases.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !engine.calls().iter().any(|c| c.starts_with("build")),
        "red runs and other branches build nothing: {:?}",
        engine.calls()
    );
    record("refs/heads/main", true);
    releases.notify();
    let dev = svc.key("alpha", Role::Developer).to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let promotion = loop {
        let (_, list, _) = svc.call("GET", "/v1/promotions", Some(&dev), None).await;
        if let Some(p) = list["promotions"].as_array().and_then(|a| a.first())
            && p["state"] == "deployed"
        {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(promotion["environment"], "dev");
    assert_eq!(promotion["commit"], sha.as_str());
    assert_eq!(engine.live("dev").as_deref(), promotion["image"].as_str());
    // Once: the same green trigger is not built again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    releases.notify();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let builds = engine
        .calls()
        .iter()
        .filter(|c| c.starts_with("build"))
        .count();
    assert_eq!(builds, 1, "{:?}", engine.calls());
    let entries = svc.store.audit().all().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .filter(|e| e.action.starts_with("promotion."))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "promotion.build_requested",
            "promotion.built",
            "promotion.deployed"
        ]
    );
}
