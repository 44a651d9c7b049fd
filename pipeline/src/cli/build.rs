//! `pipeline build`.

use std::path::PathBuf;
use std::process::ExitCode;

use pipeline::build::{self, BuildRequest};

use super::Failure;

/// What to build: shared by `build` and `run`.
#[derive(Debug, clap::Args)]
pub struct BuildFlags {
    /// The build context: a directory inside a git work tree.
    #[arg(long, value_name = "DIR")]
    pub context: PathBuf,
    /// The Dockerfile (default: DIR/Dockerfile).
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Repository to tag, without tag: the tag is the commit SHA.
    #[arg(long, value_name = "REPO")]
    pub image: String,
    /// A build argument, KEY=VALUE (or KEY, taken from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = build::parse_build_arg)]
    pub build_args: Vec<(String, String)>,
    /// Build a work tree with uncommitted changes; the tag ends in -dirty.
    #[arg(long)]
    pub allow_dirty: bool,
}

impl BuildFlags {
    pub fn request(&self) -> Result<BuildRequest, Failure> {
        Ok(BuildRequest {
            context: self.context.clone(),
            dockerfile: self.file.clone(),
            repository: self.image.clone(),
            build_args: self.build_args.clone(),
            allow_dirty: self.allow_dirty,
            source_date_epoch: super::source_date_epoch()?,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub what: BuildFlags,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BuildArgs) -> Result<ExitCode, Failure> {
    let req = args.what.request()?;
    // Problems the user can fix are reported before the engine is needed.
    build::plan(&req)?;
    let docker = super::connect().await?;
    let progress = |line: &str| eprintln!("{line}");
    let built = build::build(&docker, &req, &progress).await?;
    if args.json {
        let tag = built.tag.rsplit_once(':').map_or("", |(_, t)| t);
        let out = serde_json::json!({
            "image": built.tag,
            "tag": tag,
            "id": built.id,
            "revision": built.revision,
            "dirty": built.dirty,
        });
        println!("{out}");
    } else {
        println!("{}", built.tag);
        println!("{}", built.id);
    }
    Ok(ExitCode::SUCCESS)
}
