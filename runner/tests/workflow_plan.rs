//! Planning: triggers, matrix fan-out, dependency order, policy checks, and
//! run-time rendering of jobs and steps (with secrets masked or real).

use std::collections::BTreeMap;

use runner::workflow::error::ErrorClass;
use runner::workflow::expr::{JobResult, Secrets};
use runner::workflow::model::Shell;
use runner::workflow::parse::parse_workflow;
use runner::workflow::plan::{Outcome, Plan, plan, plan_files};
use runner::workflow::policy::WorkflowPolicy;
use runner::workflow::render::{RenderedAction, StepState};
use runner::workflow::source::{WorkflowContent, WorkflowFile};
use runner::workflow::trigger::{Push, Skip};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn push(git_ref: &str, changed: Option<&[&str]>) -> Push {
    Push {
        git_ref: git_ref.into(),
        sha: SHA.into(),
        repository: "acme/app".into(),
        changed_paths: changed.map(|c| c.iter().map(|s| s.to_string()).collect()),
    }
}

fn policy() -> WorkflowPolicy {
    WorkflowPolicy::embedded().unwrap()
}

fn outcome(yaml: &str, p: &Push) -> Outcome {
    let w = parse_workflow("ci.yml", yaml).unwrap_or_else(|e| panic!("{e}"));
    plan(&w, p, &policy()).unwrap_or_else(|e| panic!("{e}"))
}

fn planned(yaml: &str) -> Plan {
    match outcome(yaml, &push("refs/heads/main", None)) {
        Outcome::Planned(p) => p,
        Outcome::Skipped(s) => panic!("skipped: {s}"),
    }
}

fn plan_error(yaml: &str) -> (String, ErrorClass) {
    let w = parse_workflow("ci.yml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let e = plan(&w, &push("refs/heads/main", None), &policy()).unwrap_err();
    (e.first().to_string(), e.first().class)
}

const DAG: &str = r#"
on:
  push:
    branches: [main]
    paths: ['src/**']
env:
  STAGE: ci
  TOKEN: ${{ secrets.API_TOKEN }}
jobs:
  deploy:
    runs-on: debian
    needs: [test, lint]
    steps:
      - run: ./deploy.sh
  test:
    runs-on: debian
    needs: build
    strategy:
      matrix:
        python: ['3.11', '3.12']
        os: [debian]
    steps:
      - run: pytest
  build:
    runs-on: debian
    steps:
      - run: make
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: lint
  report:
    runs-on: debian
    needs: deploy
    if: failure()
    steps:
      - run: report
"#;

#[test]
fn push_filters_decide_whether_the_workflow_runs() {
    let skipped = |p: &Push| match outcome(DAG, p) {
        Outcome::Skipped(s) => Some(s),
        Outcome::Planned(_) => None,
    };
    assert_eq!(
        skipped(&push("refs/heads/main", Some(&["src/lib.rs"]))),
        None
    );
    assert_eq!(
        skipped(&push("refs/heads/main", Some(&["README.md"]))),
        Some(Skip::NoPathSelected)
    );
    assert!(matches!(
        skipped(&push("refs/heads/dev", None)),
        Some(Skip::NotSelected { .. })
    ));
    assert!(matches!(
        skipped(&push("refs/tags/v1", None)),
        Some(Skip::OtherRefKind { .. })
    ));
}

#[test]
fn matrix_cells_become_jobs_in_dependency_order() {
    let p = planned(DAG);
    let ids: Vec<&str> = p.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "build",
            "test (3.11, debian)",
            "test (3.12, debian)",
            "lint",
            "deploy",
            "report"
        ]
    );
    let t = p.job("test (3.12, debian)").unwrap();
    assert_eq!(t.job_id, "test");
    assert_eq!(t.name, "test (3.12, debian)");
    assert_eq!(t.needs, ["build"]);
    assert_eq!(p.cells_of("test").count(), 2);
    assert_eq!(p.job("lint").unwrap().image, "runner-job/debian");
    assert_eq!(p.github.ref_name, "main");
    assert_eq!(p.github.event_name, "push");
    let report = p.job("report").unwrap();
    assert_eq!(
        p.ancestors(report).into_iter().collect::<Vec<_>>(),
        ["build", "deploy", "lint", "test"]
    );
    // The policy's defaults: GitHub's 360 minutes.
    assert_eq!(report.limits.wall_time.as_secs(), 360 * 60);
}

#[test]
fn a_failed_need_skips_dependants_unless_their_if_says_otherwise() {
    let p = planned(DAG);
    let deploy = p.job("deploy").unwrap();
    let ok: BTreeMap<String, JobResult> = [
        ("test".to_string(), JobResult::Success),
        ("lint".to_string(), JobResult::Success),
    ]
    .into();
    assert!(
        deploy
            .should_run(&p, &ok, &[JobResult::Success; 3], false)
            .unwrap()
    );
    let failed: BTreeMap<String, JobResult> = [
        ("test".to_string(), JobResult::Failure),
        ("lint".to_string(), JobResult::Success),
    ]
    .into();
    assert!(
        !deploy
            .should_run(&p, &failed, &[JobResult::Failure], false)
            .unwrap()
    );
    assert!(
        !deploy.should_run(&p, &ok, &[], true).unwrap(),
        "a cancelled run starts no success() job"
    );
    // `report` runs on failure(): deploy was skipped because test failed.
    let report = p.job("report").unwrap();
    let skipped: BTreeMap<String, JobResult> = [("deploy".to_string(), JobResult::Skipped)].into();
    assert!(
        report
            .should_run(
                &p,
                &skipped,
                &[JobResult::Skipped, JobResult::Failure],
                false
            )
            .unwrap()
    );
    assert!(
        !report
            .should_run(
                &p,
                &[("deploy".to_string(), JobResult::Success)].into(),
                &[JobResult::Success],
                false
            )
            .unwrap()
    );
}

#[test]
fn job_names_runs_on_and_continue_on_error_follow_the_cell() {
    let p = planned(
        r#"
on: push
jobs:
  build:
    name: Build ${{ matrix.target }}
    runs-on: ${{ matrix.label }}
    continue-on-error: ${{ matrix.experimental }}
    timeout-minutes: 30
    strategy:
      fail-fast: false
      max-parallel: 1
      matrix:
        target: [x86, arm]
        label: [debian]
        include:
          - target: arm
            experimental: true
    steps:
      - run: make
  plain:
    name: Plain
    runs-on: debian
    strategy:
      matrix:
        n: [1, 2.5]
    steps:
      - run: echo ${{ matrix.n }}
"#,
    );
    let x86 = p.job("build (x86, debian)").unwrap();
    assert_eq!(x86.name, "Build x86");
    assert!(!x86.continue_on_error);
    assert!(!x86.fail_fast);
    assert_eq!(x86.max_parallel, Some(1));
    assert_eq!(x86.limits.wall_time.as_secs(), 30 * 60);
    let arm = p.job("build (arm, debian, true)").unwrap();
    assert!(arm.continue_on_error);
    assert_eq!(
        p.job("plain (2.5)").unwrap().name,
        "Plain (2.5)",
        "names without matrix values get them appended"
    );
    assert!(
        p.job("plain (1)").unwrap().fail_fast,
        "fail-fast defaults to true"
    );
}

#[test]
fn policy_refuses_unknown_labels_images_and_long_timeouts() {
    let (e, c) =
        plan_error("on: push\njobs:\n  a:\n    runs-on: windows-latest\n    steps: [{run: a}]\n");
    assert_eq!(c, ErrorClass::Policy);
    assert!(e.starts_with("ci.yml:4:14: unknown `runs-on` label `windows-latest`: this server knows debian, debian-12, ubuntu-latest; change `runs-on`"), "{e}");
    let (e, _) = plan_error(
        "on: push\njobs:\n  a:\n    runs-on: ${{ matrix.os }}\n    strategy: {matrix: {os: [debian, debain]}}\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:4:14: unknown `runs-on` label `debain`; did you mean `debian`?"),
        "{e}"
    );
    let (e, c) = plan_error(
        "on: push\njobs:\n  a:\n    runs-on: debian\n    container: {image: 'debian:bookworm'}\n    steps: [{run: a}]\n",
    );
    assert_eq!(c, ErrorClass::Policy);
    assert_eq!(
        e,
        "ci.yml:5:24: image `debian:bookworm` is not allowed by this server's workflow policy (allowed: runner-job/*): name an allowed image or remove `container`"
    );
    let (e, _) = plan_error(
        "on: push\njobs:\n  a:\n    runs-on: debian\n    timeout-minutes: 500\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:5:22: `timeout-minutes` is 500; this server allows at most 360 minutes: lower it"
    );
    let p = planned(
        "on: push\njobs:\n  a:\n    runs-on: debian\n    container: runner-job/custom:1\n    steps: [{run: a}]\n",
    );
    assert_eq!(p.jobs[0].image, "runner-job/custom:1");
}

const STEPS: &str = r#"
on: push
env:
  TOKEN: ${{ secrets.API_TOKEN }}
  WHO: world
jobs:
  a:
    runs-on: debian
    strategy:
      matrix:
        v: ['3.10']
    env:
      GREETING: hello ${{ github.ref_name }}
    steps:
      - uses: actions/checkout@v4
      - name: Greet ${{ matrix.v }}
        shell: bash
        working-directory: src/${{ matrix.v }}
        env:
          PASS: ${{ secrets.PASSWORD }}
          LOUD: ${{ env.GREETING }}!
        run: |
          echo "$GREETING" ${{ secrets.PASSWORD }}
      - if: failure()
        run: echo cleanup
      - if: env.WHO == 'WORLD'
        continue-on-error: ${{ matrix.v == '3.10' }}
        run: echo compared without case
"#;

#[test]
fn steps_render_with_secrets_masked_or_real() {
    let p = planned(STEPS);
    let job = &p.jobs[0];
    let needs = BTreeMap::new();
    let state = StepState {
        needs: &needs,
        job_failed: false,
        cancelled: false,
    };
    let secrets: BTreeMap<String, String> = [
        ("API_TOKEN".to_string(), "tok-1".to_string()),
        ("PASSWORD".to_string(), "pw-2".to_string()),
    ]
    .into();

    let real = job
        .render_step(&p, 1, state, Secrets::Real(&secrets))
        .unwrap()
        .unwrap();
    assert_eq!(real.name, "Greet 3.10");
    assert_eq!(real.working_directory.as_deref(), Some("src/3.10"));
    assert_eq!(
        real.action,
        RenderedAction::Run {
            script: "echo \"$GREETING\" pw-2\n".into(),
            shell: Shell::Bash
        }
    );
    assert_eq!(real.env["TOKEN"], "tok-1");
    assert_eq!(real.env["PASS"], "pw-2");
    assert_eq!(real.env["GREETING"], "hello main");
    assert_eq!(real.env["LOUD"], "hello main!");

    let masked = job
        .render_step(&p, 1, state, Secrets::Masked)
        .unwrap()
        .unwrap();
    assert_eq!(
        masked.action,
        RenderedAction::Run {
            script: "echo \"$GREETING\" ***\n".into(),
            shell: Shell::Bash
        }
    );
    assert_eq!(masked.env["TOKEN"], "***");
    let stored = serde_json::to_string(&p).unwrap();
    assert!(
        !stored.contains("tok-1") && !stored.contains("pw-2"),
        "the plan holds no secret"
    );

    // Only the secrets a step reads (its own and the inherited env's).
    assert_eq!(
        job.step_secrets(&p, 0).into_iter().collect::<Vec<_>>(),
        ["API_TOKEN"]
    );
    assert_eq!(
        job.step_secrets(&p, 1).into_iter().collect::<Vec<_>>(),
        ["API_TOKEN", "PASSWORD"]
    );
    assert_eq!(
        p.secrets().into_iter().collect::<Vec<_>>(),
        ["API_TOKEN", "PASSWORD"]
    );
}

#[test]
fn step_conditions_follow_the_job_status() {
    let p = planned(STEPS);
    let job = &p.jobs[0];
    let needs = BTreeMap::new();
    let ok = StepState {
        needs: &needs,
        job_failed: false,
        cancelled: false,
    };
    let failed = StepState {
        needs: &needs,
        job_failed: true,
        cancelled: false,
    };
    assert!(
        job.render_step(&p, 2, ok, Secrets::Masked)
            .unwrap()
            .is_none(),
        "failure() steps skip while all is well"
    );
    assert!(
        job.render_step(&p, 2, failed, Secrets::Masked)
            .unwrap()
            .is_some()
    );
    assert!(
        job.render_step(&p, 1, failed, Secrets::Masked)
            .unwrap()
            .is_none(),
        "steps without if skip after a failure"
    );
    let checkout = job
        .render_step(&p, 0, ok, Secrets::Masked)
        .unwrap()
        .unwrap();
    assert_eq!(checkout.action, RenderedAction::Checkout);
    let last = job
        .render_step(&p, 3, ok, Secrets::Masked)
        .unwrap()
        .unwrap();
    assert!(last.continue_on_error);
    assert_eq!(last.name, "Run echo compared without case");
    assert!(job.render_step(&p, 9, ok, Secrets::Masked).is_err());
}

#[test]
fn plans_round_trip_through_json() {
    let p = planned(DAG);
    let json = serde_json::to_string(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let p = planned(STEPS);
    let back: Plan = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

#[test]
fn shells_run_the_script_file_as_github_does() {
    assert_eq!(Shell::Default.command("/s.sh"), ["bash", "-e", "/s.sh"]);
    assert_eq!(
        Shell::Bash.command("/s.sh"),
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/s.sh"]
    );
    assert_eq!(Shell::Sh.command("/s.sh"), ["sh", "-e", "/s.sh"]);
}

#[test]
fn each_file_of_a_commit_is_planned_on_its_own() {
    let file = |path: &str, content: WorkflowContent| WorkflowFile {
        path: path.into(),
        content,
    };
    let files = [
        file(".github/workflows/a.yml", WorkflowContent::Text("on: push\njobs:\n  a:\n    runs-on: debian\n    steps: [{run: a}]\n".into())),
        file(".github/workflows/b.yml", WorkflowContent::Text("on: push\njobs:\n  b:\n    runs_on: debian\n".into())),
        file(".github/workflows/c.yml", WorkflowContent::Text("on:\n  push:\n    tags: ['v*']\njobs:\n  c:\n    runs-on: debian\n    steps: [{run: c}]\n".into())),
        file(".github/workflows/d.yml", WorkflowContent::Refused("it is a symbolic link, which is not followed: make it a regular file".into())),
    ];
    let plans = plan_files(&files, &push("refs/heads/main", None), &policy());
    assert!(matches!(&plans[0].result, Ok(Outcome::Planned(p)) if p.jobs.len() == 1));
    let e = plans[1].result.as_ref().unwrap_err().to_string();
    assert!(
        e.starts_with(".github/workflows/b.yml:3:3: job `b` has no `runs-on`"),
        "{e}"
    );
    assert!(matches!(&plans[2].result, Ok(Outcome::Skipped(_))));
    let e = plans[3].result.as_ref().unwrap_err().to_string();
    assert_eq!(
        e,
        ".github/workflows/d.yml:1:1: the file is not read: it is a symbolic link, which is not followed: make it a regular file"
    );
}
