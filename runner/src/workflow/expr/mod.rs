//! Expressions `${{ … }}`: a subset of GitHub's expression language.
//!
//! - [`lexer`] splits an expression into tokens;
//! - [`parser`] builds an [`Expr`], checking every name against the
//!   [`Scope`] of the place it is written (a step's `if` cannot read
//!   `secrets`, a job's `if` cannot read `matrix`, ...);
//! - [`eval`] evaluates it with GitHub's loose equality and truthiness;
//! - [`template`] finds expressions inside text (`run`, `env`, `name`, …) and
//!   renders them, with secrets masked or real as the caller asks.

pub mod eval;
pub mod lexer;
pub mod parser;
pub mod template;
pub mod value;

use std::collections::BTreeSet;

pub use eval::{EvalContext, EvalError, GithubContext, JobResult, Secrets, Status};
pub use parser::parse;
pub use template::{Condition, Template};
pub use value::Value;

/// A problem in an expression, at an offset (in characters) from the start
/// of the scalar it is written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl ExprError {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        ExprError {
            offset,
            message: message.into(),
        }
    }
}

/// An expression, its names resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Ref(Ref),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Status(StatusFn),
}

/// A name from a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Github(GithubField),
    Env(String),
    /// `matrix.<key>` and, for object values, the fields below it.
    Matrix(Vec<String>),
    Secret(String),
    /// `needs.<job id>.result`.
    NeedResult(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubField {
    Sha,
    Ref,
    RefName,
    Repository,
    EventName,
}

impl GithubField {
    pub const ALL: [(&'static str, GithubField); 5] = [
        ("sha", GithubField::Sha),
        ("ref", GithubField::Ref),
        ("ref_name", GithubField::RefName),
        ("repository", GithubField::Repository),
        ("event_name", GithubField::EventName),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFn {
    Success,
    Failure,
    Always,
    Cancelled,
}

impl Expr {
    /// Whether a status function appears anywhere: an `if` without one is
    /// read as `success() && (…)`, as GitHub does.
    pub fn has_status_fn(&self) -> bool {
        match self {
            Expr::Status(_) => true,
            Expr::Not(e) => e.has_status_fn(),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Eq(a, b) | Expr::Ne(a, b) => {
                a.has_status_fn() || b.has_status_fn()
            }
            Expr::Lit(_) | Expr::Ref(_) => false,
        }
    }

    /// Every name of `secrets.*` the expression reads.
    pub fn secrets(&self, out: &mut BTreeSet<String>) {
        self.visit_refs(&mut |r| {
            if let Ref::Secret(name) = r {
                out.insert(name.clone());
            }
        });
    }

    pub fn visit_refs(&self, f: &mut impl FnMut(&Ref)) {
        match self {
            Expr::Ref(r) => f(r),
            Expr::Not(e) => e.visit_refs(f),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Eq(a, b) | Expr::Ne(a, b) => {
                a.visit_refs(f);
                b.visit_refs(f);
            }
            Expr::Lit(_) | Expr::Status(_) => {}
        }
    }
}

/// Whether `matrix` can be read where an expression is written.
#[derive(Debug, Clone, Copy)]
pub enum MatrixScope<'a> {
    /// The job has a matrix with these keys (over all its cells).
    Keys(&'a BTreeSet<String>),
    /// The job has no `strategy.matrix`.
    NoMatrix,
    /// Not readable at this place (workflow `env`, a job's `if`).
    NotHere,
    /// Any key (reading back a stored job, checked when it was parsed).
    Any,
}

/// What an expression may read at the place it is written; mirrors GitHub's
/// context availability table for the contexts this runner has.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The place, for messages: "a step's `if`".
    pub place: &'a str,
    pub env: bool,
    pub secrets: bool,
    /// `success()`, `failure()`, `always()`, `cancelled()`.
    pub status: bool,
    pub matrix: MatrixScope<'a>,
    /// The job ids of `needs`; `None` where the needs context does not exist.
    pub needs: Option<&'a [String]>,
}

impl Scope<'_> {
    /// Only `github`: what workflow-level places without secrets can read.
    pub const GITHUB_ONLY: Scope<'static> = Scope {
        place: "this place",
        env: false,
        secrets: false,
        status: false,
        matrix: MatrixScope::NotHere,
        needs: None,
    };
}
