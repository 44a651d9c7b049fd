//! The workflow parser: what it accepts, and every error it reports, each
//! naming file:line:column and what to change.

use runner::workflow::error::ErrorClass;
use runner::workflow::model::{Action, Flag, Shell};
use runner::workflow::parse::parse_workflow;

fn errors(yaml: &str) -> Vec<String> {
    match parse_workflow("ci.yml", yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// The one error of `yaml`; fails when there are none or several.
fn error(yaml: &str) -> String {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap_or_default()
}

fn class(yaml: &str) -> ErrorClass {
    parse_workflow("ci.yml", yaml).unwrap_err().first().class
}

const GOOD: &str = r#"
name: CI
on:
  push:
    branches: [main, 'releases/**']
    paths: ['src/**', '!src/**/*.md']
env:
  GREETING: hello
  TOKEN: ${{ secrets.DEPLOY_TOKEN }}
jobs:
  build:
    name: Build on ${{ matrix.os }}
    runs-on: ${{ matrix.os }}
    timeout-minutes: 20
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        os: [debian, debian-slim]
        python: ['3.11', '3.12']
        include:
          - os: debian
            experimental: true
    continue-on-error: ${{ matrix.experimental == true }}
    env:
      PY: ${{ matrix.python }}
    steps:
      - uses: actions/checkout@v4
      - name: Test
        id: test
        shell: bash
        working-directory: src
        run: |
          echo "$GREETING on ${{ github.ref_name }}"
          python${{ matrix.python }} -m pytest
        env:
          LEVEL: ${{ env.GREETING }}
        timeout-minutes: 5
        continue-on-error: true
  deploy:
    runs-on: debian
    needs: build
    if: github.ref == 'refs/heads/main' && needs.build.result == 'success'
    container:
      image: runner-job/debian
    steps:
      - run: ./deploy.sh
        shell: sh
      - if: ${{ failure() }}
        run: echo failed
"#;

#[test]
fn a_complete_workflow_parses() {
    let w = parse_workflow(".github/workflows/ci.yml", GOOD).unwrap();
    assert_eq!(w.name.as_deref(), Some("CI"));
    assert_eq!(w.env.len(), 2);
    assert_eq!(w.jobs.len(), 2);
    let build = &w.jobs[0];
    let s = build.strategy.as_ref().unwrap();
    assert_eq!(s.cells.len(), 4);
    assert!(!s.fail_fast);
    assert_eq!(s.max_parallel, Some(2));
    assert_eq!(s.cells[0].label(), "debian, 3.11, true");
    assert!(matches!(build.continue_on_error, Flag::Expr(_)));
    assert_eq!(build.timeout.as_ref().unwrap().value.as_secs(), 20 * 60);
    assert!(
        matches!(build.steps[0].action, Action::Checkout { ref reference } if reference == "v4")
    );
    assert!(matches!(
        build.steps[1].action,
        Action::Run {
            shell: Shell::Bash,
            ..
        }
    ));
    assert_eq!(build.steps[1].timeout.unwrap().as_secs(), 300);
    let deploy = &w.jobs[1];
    assert_eq!(deploy.needs, ["build"]);
    assert_eq!(
        deploy.container_image.as_ref().unwrap().value.source(),
        "runner-job/debian"
    );
    assert!(matches!(
        deploy.steps[0].action,
        Action::Run {
            shell: Shell::Sh,
            ..
        }
    ));
    assert_eq!(deploy.timeout, None, "the policy's default applies");
}

#[test]
fn short_forms_parse() {
    let w = parse_workflow(
        "ci.yml",
        "on: push\njobs:\n  a:\n    runs-on: [debian]\n    container: runner-job/debian\n    steps:\n      - run: true\n",
    )
    .unwrap();
    assert_eq!(w.jobs[0].runs_on.value.source(), "debian");
    let w = parse_workflow(
        "ci.yml",
        "on: [push]\njobs:\n  a:\n    runs-on: debian\n    steps:\n      - run: true\n",
    )
    .unwrap();
    assert!(w.on.branches.is_none());
}

// ---- errors: each names the file, line and column, and what to change ----

#[test]
fn unknown_job_key_suggests_the_right_one() {
    let e = error(
        "on: push\njobs:\n  build:\n    runs_on: debian\n    runs-on: debian\n    steps:\n      - run: make\n",
    );
    assert_eq!(
        e,
        "ci.yml:4:5: unknown key `runs_on` in job `build`; did you mean `runs-on`?"
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_keys() {
    let e = error("on: push\nfoo: 1\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n");
    assert!(e.starts_with("ci.yml:2:1: unknown key `foo` in the workflow: remove it (the keys here are name, on, env, jobs)"), "{e}");
}

#[test]
fn unknown_step_key() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n        shel: bash\n",
    );
    assert_eq!(
        e,
        "ci.yml:7:9: unknown key `shel` in step 1 of job `a`; did you mean `shell`?"
    );
}

#[test]
fn github_keys_this_runner_does_not_support_say_why() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    services:\n      db: {image: postgres}\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:5:5: `services` in job `a` is not supported: service containers"),
        "{e}"
    );
    assert_eq!(
        class(
            "on: push\npermissions: read-all\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n"
        ),
        ErrorClass::Unsupported
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    container:\n      image: i\n      options: --privileged\n    steps: [{run: a}]\n",
    );
    assert!(e.starts_with("ci.yml:7:7: `options` in `container` is not supported: container options are server policy"), "{e}");
}

#[test]
fn uses_other_than_checkout_is_refused() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/setup-node@v4\n",
    );
    assert!(e.starts_with("ci.yml:6:15: `uses: actions/setup-node@v4` is not supported: only `actions/checkout` is accepted"), "{e}");
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout\n",
    );
    assert_eq!(
        e,
        "ci.yml:6:15: `uses: actions/checkout` names no version: write `actions/checkout@v4`"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          fetch-depth: 0\n",
    );
    assert!(e.starts_with("ci.yml:7:9: `with` in step 1 of job `a` is not supported: `actions/checkout` is a no-op here"), "{e}");
}

#[test]
fn with_is_checked_against_the_step_action() {
    // One error for a refused action, not a second one for its `with`.
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/cache@v4\n        with: {path: target}\n",
    );
    assert!(
        e.starts_with("ci.yml:6:15: `uses: actions/cache@v4` is not supported"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: make\n        with: {x: 1}\n",
    );
    assert_eq!(
        e,
        "ci.yml:7:9: `with` in step 1 of job `a` only goes with `uses`: remove it"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n        working-directory: src\n",
    );
    assert_eq!(
        e,
        "ci.yml:7:9: `working-directory` only applies to `run` steps: remove it from this `uses` step"
    );
}

#[test]
fn step_needs_exactly_one_of_run_and_uses() {
    let e = error("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - name: nothing\n");
    assert_eq!(
        e,
        "ci.yml:6:9: step 1 of job `a` has neither `run` nor `uses`: add `run: COMMAND`"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n        uses: actions/checkout@v4\n",
    );
    assert_eq!(
        e,
        "ci.yml:7:9: step 1 of job `a` has both `run` and `uses`: split it into two steps"
    );
}

#[test]
fn shells_other_than_bash_and_sh_are_refused() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: print(1)\n        shell: python\n",
    );
    assert!(
        e.starts_with("ci.yml:7:16: `shell: python` is not supported: use `bash` or `sh`"),
        "{e}"
    );
}

#[test]
fn missing_keys_are_named() {
    assert_eq!(
        error("jobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n"),
        "ci.yml:1:1: the workflow has no `on`: add `on: push`"
    );
    assert_eq!(
        error("on: push\n"),
        "ci.yml:1:1: the workflow has no `jobs`: add at least one job"
    );
    assert!(
        error("on: push\njobs:\n  build:\n    steps: [{run: a}]\n")
            .starts_with("ci.yml:3:3: job `build` has no `runs-on`: add `runs-on: LABEL`")
    );
    assert_eq!(
        error("on: push\njobs:\n  build:\n    runs-on: x\n"),
        "ci.yml:3:3: job `build` has no `steps`: add a list of steps"
    );
    assert_eq!(
        error("on: push\njobs:\n  build:\n    runs-on: x\n    steps: []\n"),
        "ci.yml:5:5: job `build` has no steps: add at least one"
    );
    assert_eq!(
        error(""),
        "ci.yml:1:1: the file is empty: a workflow needs `on` and `jobs`"
    );
    assert_eq!(
        error("on: push\njobs: {}\n"),
        "ci.yml:2:1: `jobs` is empty: add at least one job"
    );
    for on in ["on: {}", "on: []", "on:"] {
        let e = error(&format!(
            "{on}\njobs:\n  a:\n    runs-on: x\n    steps: [{{run: a}}]\n"
        ));
        assert!(
            e.ends_with("`on` names no event: write `on: push`"),
            "{on}: {e}"
        );
    }
}

#[test]
fn wrong_types_name_what_was_found() {
    let e = error("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      run: a\n");
    assert_eq!(
        e,
        "ci.yml:6:7: `steps` of job `a` must be a list, found a mapping"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      fail-fast: maybe\n      matrix: {a: [1]}\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:6:18: `fail-fast` must be true or false, found text"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: soon\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:5:22: `timeout-minutes` must be a number, found text"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    timeout-minutes: 0\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:5:22: `timeout-minutes` is 0; it must be above 0"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    env:\n      A: [1]\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:6:10: `A` in `env` of job `a` must be text, found a list"
    );
    let e = error("on: push\njobs: [a]\n");
    assert_eq!(
        e,
        "ci.yml:2:7: `jobs` must be a mapping (`key: value` lines), found a list"
    );
}

#[test]
fn invalid_names_are_refused() {
    let e = error("on: push\njobs:\n  1st:\n    runs-on: x\n    steps: [{run: a}]\n");
    assert!(e.starts_with("ci.yml:3:3: `1st` is not a job id"), "{e}");
    let e =
        error("on: push\nenv:\n  MY-VAR: 1\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n");
    assert!(
        e.starts_with("ci.yml:3:3: `MY-VAR` is not a variable name"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - {id: s, run: a}\n      - {id: s, run: b}\n",
    );
    assert_eq!(
        e,
        "ci.yml:7:14: step id `s` is used twice in this job: make it unique"
    );
}

#[test]
fn needs_must_name_jobs_and_form_no_cycle() {
    let e = error(
        "on: push\njobs:\n  build:\n    runs-on: x\n    steps: [{run: a}]\n  test:\n    runs-on: x\n    needs: [biuld]\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:8:13: job `test` needs `biuld`, which is not a job of this workflow; did you mean `build`?"
    );
    let e = error("on: push\njobs:\n  a:\n    runs-on: x\n    needs: zzz\n    steps: [{run: a}]\n");
    assert_eq!(
        e,
        "ci.yml:5:12: job `a` needs `zzz`, which is not a job of this workflow (its jobs: a)"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    needs: c\n    steps: [{run: a}]\n  b:\n    runs-on: x\n    needs: a\n    steps: [{run: a}]\n  c:\n    runs-on: x\n    needs: [b]\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:5:12: `needs` forms a cycle: a → c → b → a; remove one of these needs"
    );
    let e = error("on: push\njobs:\n  a:\n    runs-on: x\n    needs: [a]\n    steps: [{run: a}]\n");
    assert_eq!(
        e,
        "ci.yml:5:13: `needs` forms a cycle: a → a; remove one of these needs"
    );
    assert_eq!(
        class(
            "on: push\njobs:\n  a:\n    runs-on: x\n    needs: [b, b]\n    steps: [{run: a}]\n  b:\n    runs-on: x\n    steps: [{run: a}]\n"
        ),
        ErrorClass::InvalidValue
    );
}

#[test]
fn events_other_than_push_are_refused() {
    let e = error("on: pull_request\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n");
    assert_eq!(
        e,
        "ci.yml:1:5: the event `pull_request` is not supported: this runner runs workflows on `push` only; remove it"
    );
    let e = error("on: [push, pusj]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n");
    assert_eq!(
        e,
        "ci.yml:1:12: unknown event `pusj`; did you mean `push`?: this runner runs workflows on `push`"
    );
}

#[test]
fn push_filters_are_checked() {
    let wf = |push: &str| {
        format!("on:\n  push:\n{push}jobs:\n  a:\n    runs-on: x\n    steps: [{{run: a}}]\n")
    };
    let e = error(&wf("    branches: [main]\n    branches-ignore: [dev]\n"));
    assert!(
        e.starts_with("ci.yml:4:5: `branches` and `branches-ignore` cannot both filter on.push"),
        "{e}"
    );
    let e = error(&wf("    branches: ['!main']\n"));
    assert!(
        e.starts_with("ci.yml:3:5: every pattern of on.push.branches starts with `!`"),
        "{e}"
    );
    let e = error(&wf("    branches: ['v[1-']\n"));
    assert!(
        e.starts_with("ci.yml:3:18: `v[1-` is not a valid pattern: this `[` has no closing `]`"),
        "{e}"
    );
    let e = error(&wf("    paths-ignore: [docs]\n"));
    assert!(e.starts_with("ci.yml:3:5: `paths-ignore` in `on.push` is not supported: use `paths` with `!` patterns"), "{e}");
    let e = error(&wf("    branches-ignore: ['!x']\n"));
    assert!(
        e.starts_with("ci.yml:3:23: `!` patterns are not allowed in on.push.branches-ignore"),
        "{e}"
    );
    let e = error(&wf("    branch: [main]\n"));
    assert_eq!(
        e,
        "ci.yml:3:5: unknown key `branch` in `on.push`; did you mean `branches`?"
    );
}

#[test]
fn expressions_errors_point_into_the_text() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.actor }}\n",
    );
    assert!(
        e.starts_with("ci.yml:6:30: `github.actor` is not supported"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |\n          echo one\n          echo ${{ matrix.os }}\n",
    );
    assert_eq!(
        e,
        "ci.yml:8:20: `matrix` is read but this job has no `strategy.matrix`"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.sha\n",
    );
    assert_eq!(
        e,
        "ci.yml:6:19: this `${{` has no closing `}}`: end the expression with `}}`"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - if: secrets.TOKEN != ''\n        run: a\n",
    );
    assert!(
        e.starts_with("ci.yml:6:13: `secrets` cannot be read in a step's `if`"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    if: matrix.os == 'x'\n    strategy: {matrix: {os: [x]}}\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:5:9: `matrix` cannot be read in a job's `if`"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n  b:\n    runs-on: x\n    needs: a\n    if: needs.a.outputs.x == 1\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:9:17: `needs.<job>.outputs` is not supported"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n        if: ${{ github.ref }} == 'x'\n",
    );
    assert!(
        e.starts_with("ci.yml:7:13: this `if` mixes `${{ }}` with other text"),
        "{e}"
    );
    let e = error("on: push\njobs:\n  a:\n    runs-on: '${{ env.X }}'\n    steps: [{run: a}]\n");
    assert!(
        e.starts_with("ci.yml:4:19: `env` cannot be read in `runs-on`"),
        "{e}"
    );
}

#[test]
fn matrix_errors() {
    let wf = |m: &str| {
        format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      matrix:\n{m}    steps: [{{run: a}}]\n"
        )
    };
    let e = error(&wf("        os: linux\n"));
    assert_eq!(
        e,
        "ci.yml:7:13: matrix key `os` must list its values (`os: [a, b]`), found text"
    );
    let e = error(&wf("        os: []\n"));
    assert_eq!(
        e,
        "ci.yml:7:13: matrix key `os` lists no value: add values or remove it"
    );
    let e = error(&wf(
        "        os: [a]\n        exclude:\n          - arch: x\n",
    ));
    assert_eq!(
        e,
        "ci.yml:9:13: `exclude` names `arch`, which is not a key of the matrix (its keys: os)"
    );
    let e = error(&wf(
        "        a: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\n        b: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\n",
    ));
    assert!(
        e.starts_with("ci.yml:6:7: the matrix expands to 289 jobs; at most 256 are allowed"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      matrix: ${{ fromJSON(needs.a.outputs.m) }}\n    steps: [{run: a}]\n",
    );
    assert!(
        e.starts_with("ci.yml:6:15: a matrix computed by an expression is not supported"),
        "{e}"
    );
    let e = error(&wf(
        "        os: [a]\n        include:\n          - os: a\n            v: ${{ github.sha }}\n",
    ));
    assert!(
        e.starts_with("ci.yml:10:16: expressions in matrix values are not supported"),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      matrix: {os: [a]}\n    steps:\n      - run: echo ${{ matrix.oss }}\n",
    );
    assert!(
        e.starts_with(
            "ci.yml:8:30: the matrix has no key `oss` (its keys: os); did you mean `os`?"
        ),
        "{e}"
    );
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      max-parallel: 0\n      matrix: {os: [a]}\n    steps: [{run: a}]\n",
    );
    assert_eq!(
        e,
        "ci.yml:6:21: `max-parallel` must be a whole number of at least 1"
    );
}

#[test]
fn yaml_level_errors() {
    let e = error("on: push\njobs:\n  a:\n    runs-on: x\n    runs-on: y\n    steps: [{run: a}]\n");
    assert_eq!(
        e,
        "ci.yml:5:5: key `runs-on` appears twice in this mapping (first on line 4): keep one"
    );
    let e = error("on: push\njobs: [\n");
    assert!(
        e.starts_with("ci.yml:") && e.contains("this is not valid YAML"),
        "{e}"
    );
    assert_eq!(class("on: push\n---\njobs: {}\n"), ErrorClass::Syntax);
    let mut laughs = String::from("x0: &a0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..9 {
        laughs.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let e = parse_workflow("ci.yml", &laughs).unwrap_err();
    assert_eq!(e.first().class, ErrorClass::Limit);
    assert!(e.to_string().contains("aliases count in full"), "{e}");
    let big = format!(
        "on: push\njobs:\n{}",
        (0..101)
            .map(|i| format!("  j{i}:\n    runs-on: x\n    steps: [{{run: a}}]\n"))
            .collect::<String>()
    );
    let e = error(&big);
    assert!(
        e.starts_with("ci.yml:2:1: the workflow has 101 jobs; at most 100 are allowed"),
        "{e}"
    );
    let steps: String = (0..101).map(|_| "      - run: a\n").collect();
    let e = error(&format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{steps}"
    ));
    assert!(
        e.starts_with("ci.yml:5:5: job `a` has 101 steps; at most 100 are allowed"),
        "{e}"
    );
}

#[test]
fn an_unquoted_leading_bang_is_a_yaml_tag() {
    let e = error(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - if: !cancelled()\n        run: a\n",
    );
    assert!(e.starts_with("ci.yml:6:13: `!cancelled()` is read as a YAML tag, which workflows do not use: remove it, or quote the value if the `!` belongs to it ('!cancelled()')"), "{e}");
    parse_workflow("ci.yml", "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - if: '!cancelled()'\n        run: a\n").unwrap();
}

#[test]
fn all_errors_of_a_file_are_reported_in_order() {
    let e = errors(
        "on: push\njobs:\n  a:\n    runs_on: x\n    steps:\n      - run: a\n        shel: sh\n  b:\n    runs-on: x\n    neds: a\n    steps: [{run: a}]\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].starts_with("ci.yml:3:3: job `a` has no `runs-on`"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("ci.yml:4:5: unknown key `runs_on`"),
        "{e:#?}"
    );
    assert!(e[2].starts_with("ci.yml:7:9: unknown key `shel`"), "{e:#?}");
    assert!(
        e[3].starts_with("ci.yml:10:5: unknown key `neds` in job `b`; did you mean `needs`?"),
        "{e:#?}"
    );
}

/// The remaining messages, one workflow each: (workflow, the one error).
#[test]
fn every_other_error_message_is_located() {
    let job = |body: &str| {
        format!("on: push\njobs:\n  a:\n    runs-on: x\n{body}    steps: [{{run: a}}]\n")
    };
    let env: String = (0..101).map(|i| format!("      V{i}: x\n")).collect();
    let cases: Vec<(String, &str)> = vec![
        (job("    name:\n"), "ci.yml:5:9: a job's `name` needs a value"),
        (job("    name: [a]\n"), "ci.yml:5:11: a job's `name` must be text, found a list"),
        (job(&format!("    env:\n{env}")), "ci.yml:6:7: `env` of job `a` sets 101 variables; at most 100 are allowed"),
        ("on: [push, [x]]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n".into(), "ci.yml:1:12: events in `on` are names, found a list"),
        ("on:\n  push:\n    tags-ignore: [x]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n".into(), "ci.yml:3:5: `tags-ignore` in `on.push` is not supported: use `tags` with `!` patterns, such as ['**', '!nightly*']"),
        ("on:\n  push:\n    paths: []\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n".into(), "ci.yml:3:12: on.push.paths lists no pattern: add one, or remove `paths`"),
        (format!("on:\n  push:\n    tags: [{}]\njobs:\n  a:\n    runs-on: x\n    steps: [{{run: a}}]\n", vec!["x"; 257].join(", ")), "ci.yml:3:11: on.push.tags has 257 patterns; at most 256 are allowed"),
        (job("    strategy:\n      fail-fast: true\n"), "ci.yml:6:7: the `strategy` of job `a` has no `matrix`: add one, or remove `strategy`"),
        (job("    strategy:\n      matrix: {}\n"), "ci.yml:6:15: the matrix of job `a` has no keys: add `key: [values]` or `include`"),
        (job("    strategy:\n      matrix:\n        a: [x]\n        exclude: [{a: x}]\n"), "ci.yml:6:7: the matrix expands to no job: every combination is excluded"),
        (job("    strategy:\n      matrix:\n        include: [{a: x}, {a: x}]\n"), "ci.yml:6:7: the matrix holds the combination (x) twice: remove one"),
        (job("    strategy:\n      matrix:\n        include: [x]\n"), "ci.yml:7:19: each `include` entry must be a mapping of matrix keys to values, found text"),
        (job("    strategy:\n      matrix:\n        exclude: x\n"), "ci.yml:7:18: `exclude` must be a list of mappings, found text"),
        (
            job(&format!("    strategy:\n      matrix:\n        a: [{}]\n        b: [{}]\n        c: [{}]\n", "1,".repeat(16) + "1", "1,".repeat(16) + "1", "1,".repeat(16) + "1")),
            "ci.yml:6:7: the matrix has 4913 combinations before `exclude`; at most 4096 are allowed: split the job",
        ),
        (
            format!(
                "on: push\njobs:\n{}",
                (0..2).map(|i| format!("  j{i}:\n    runs-on: x\n    strategy: {{matrix: {{n: [{}]}}}}\n    steps: [{{run: a}}]\n", (0..200).map(|n| n.to_string()).collect::<Vec<_>>().join(","))).collect::<String>()
            ),
            "ci.yml:2:1: the workflow expands to 400 jobs (matrix cells counted); at most 256 are allowed",
        ),
        ("on: push\njobs:\n  a:\n    runs-on: [x, y]\n    steps: [{run: a}]\n".into(), "ci.yml:4:14: `runs-on` lists 2 labels: give one label, which the server maps to a job image"),
        ("on: push\njobs:\n  a:\n    runs-on: {group: big}\n    steps: [{run: a}]\n".into(), "ci.yml:4:14: runner groups are not supported: give one label, such as `runs-on: debian`"),
        (job("    container: {}\n"), "ci.yml:5:16: `container` has no `image`: add `image: NAME`"),
        (job("    if: [a]\n"), "ci.yml:5:9: `if` must be a condition, found a list"),
        (job("    continue-on-error: maybe\n"), "ci.yml:5:24: `continue-on-error` must be true, false or a `${{ }}` expression, found text"),
        (job("    timeout-minutes: 20000\n"), "ci.yml:5:22: `timeout-minutes` is 20000; it must be above 0 and at most 10080"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - {id: 2x, run: a}\n".into(), "ci.yml:6:14: `2x` is not a step id: use letters, digits, `-` and `_`, starting with a letter or `_`"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n        shell: bash\n".into(), "ci.yml:7:9: `shell` only applies to `run` steps: remove it from this `uses` step"),
        (
            "on: push\njobs:\n  b:\n    runs-on: x\n    steps: [{run: a}]\n  a:\n    runs-on: x\n    needs: [b, b]\n    steps: [{run: a}]\n".into(),
            "ci.yml:8:16: `needs` names `b` twice: remove one",
        ),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ github.sha < 1 }}\n".into(), "ci.yml:6:34: the operator `<` is not supported: use `==`, `!=`, `&&`, `||` or `!`"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ startsWith(github.ref, 'v') }}\n".into(), "ci.yml:6:23: the function `startsWith()` is not supported: the functions here are success(), failure(), always() and cancelled()"),
        ("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ success() }}\n".into(), "ci.yml:6:23: `success()` only works in `if` conditions, not in a step's `run`"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(yaml, want)| {
            let got = errors(yaml);
            (got != [want.to_string()]).then(|| format!("want {want}\n got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
