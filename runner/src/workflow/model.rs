//! A parsed workflow: the typed form of a `.github/workflows/*.yml` file,
//! every name checked, every expression parsed, the matrix expanded.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Pos;
use super::expr::{Condition, Template};
use super::matrix::Strategy;
use super::trigger::PushTrigger;

/// A value and where it was written, for errors found after parsing (an
/// unknown `runs-on` label, an image the policy refuses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The file, as errors name it (`.github/workflows/ci.yml`).
    pub file: String,
    pub name: Option<String>,
    pub on: PushTrigger,
    pub env: Vec<EnvVar>,
    /// In file order.
    pub jobs: Vec<Job>,
}

impl Workflow {
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }
}

/// One `env` entry. The value may hold expressions (secrets among them):
/// it is rendered only when the step runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: Template,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub pos: Pos,
    pub name: Option<Template>,
    pub runs_on: Located<Template>,
    pub container_image: Option<Located<Template>>,
    /// Job ids, checked to exist and to form no cycle.
    pub needs: Vec<String>,
    pub condition: Condition,
    pub env: Vec<EnvVar>,
    /// `None`: the policy's default.
    pub timeout: Option<Located<Duration>>,
    pub strategy: Option<Strategy>,
    pub continue_on_error: Flag,
    pub steps: Vec<Step>,
}

/// `continue-on-error`: a boolean, or an expression such as
/// `${{ matrix.experimental }}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Fixed(bool),
    Expr(Template),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the job's `steps`, from 0.
    pub index: usize,
    pub pos: Pos,
    pub id: Option<String>,
    pub name: Option<Template>,
    pub action: Action,
    pub env: Vec<EnvVar>,
    pub working_directory: Option<Template>,
    #[serde(rename = "if")]
    pub condition: Condition,
    pub continue_on_error: Flag,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `run:` a script with a shell.
    Run { script: Template, shell: Shell },
    /// `uses: actions/checkout@<ref>`: nothing to do, the workspace already
    /// holds the commit.
    Checkout { reference: String },
}

/// The shells `shell:` may name, and what runs the script file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shell {
    /// No `shell:`: `bash -e {0}`, GitHub's default on Linux.
    Default,
    /// `bash --noprofile --norc -eo pipefail {0}`
    Bash,
    /// `sh -e {0}`
    Sh,
}

impl Shell {
    /// The command that runs the script at `script_path` (GitHub's `{0}`).
    pub fn command(self, script_path: &str) -> Vec<String> {
        let args: &[&str] = match self {
            Shell::Default => &["bash", "-e"],
            Shell::Bash => &["bash", "--noprofile", "--norc", "-eo", "pipefail"],
            Shell::Sh => &["sh", "-e"],
        };
        args.iter()
            .map(|a| (*a).to_owned())
            .chain([script_path.to_owned()])
            .collect()
    }
}
