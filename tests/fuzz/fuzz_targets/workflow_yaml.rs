//! Workflow files (`.github/workflows/*.yml`): the YAML reader with its
//! limits, the workflow model with expressions, then planning against the
//! shipped workflow policy ([`plan::plan_files`], what a push runs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::workflow::parse::MAX_RUN_JOBS;
use runner::workflow::plan::{self, Outcome};
use runner::workflow::policy::WorkflowPolicy;
use runner::workflow::source::{WorkflowContent, WorkflowFile};
use runner::workflow::trigger::Push;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let policy = WorkflowPolicy::embedded().expect("the shipped policy is valid");
    let push = Push {
        git_ref: if mode & 1 == 0 {
            "refs/heads/main".into()
        } else {
            "refs/tags/v1.0".into()
        },
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        repository: "o/r".into(),
        changed_paths: (mode & 2 == 0).then(|| vec!["src/main.rs".into(), "docs/a.md".into()]),
    };
    let files = [WorkflowFile {
        path: ".github/workflows/ci.yml".into(),
        content: WorkflowContent::Text(text.to_owned()),
    }];
    for fp in plan::plan_files(&files, &push, &policy) {
        match fp.result {
            Ok(Outcome::Planned(p)) => {
                assert!(
                    p.jobs.len() <= MAX_RUN_JOBS,
                    "{} jobs planned",
                    p.jobs.len()
                );
                let _ = p.secrets();
            }
            Ok(_) => {}
            Err(e) => {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
