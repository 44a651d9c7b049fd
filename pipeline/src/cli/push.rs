//! `pipeline push`.

use std::process::ExitCode;

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The image to push, REPO:TAG (as `pipeline build` printed it).
    #[arg(long, value_name = "REPO:TAG")]
    pub image: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PushArgs) -> Result<ExitCode, Failure> {
    let docker = super::connect().await?;
    let progress = |line: &str| eprintln!("{line}");
    let pushed = pipeline::push::push(&docker, &args.image, &progress).await?;
    if args.json {
        let out = serde_json::json!({
            "image": pushed.image,
            "digest": pushed.digest,
            "reference": pushed.reference,
        });
        println!("{out}");
    } else {
        println!("{}", pushed.reference);
    }
    Ok(ExitCode::SUCCESS)
}
