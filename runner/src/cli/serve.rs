//! `runner serve`: the HTTP service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use runner::sandbox::Sandbox;
use runner::service::config::ConfigFile;

use super::{Context, Failure, Global, infra, usage};

/// Where the database is: shared by `serve`, `admin` and `audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Service configuration file (TOML; see README for its keys).
    #[arg(long, env = "RUNNER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SQLite database file or postgres:// URL (overrides the configuration file).
    #[arg(long, env = "RUNNER_DATABASE", value_name = "PATH|URL")]
    pub database: Option<PathBuf>,
}

impl DbArgs {
    pub fn file(&self) -> Result<ConfigFile, Failure> {
        let mut file = match &self.config {
            Some(p) => ConfigFile::read(p).map_err(usage)?,
            None => ConfigFile::default(),
        };
        if let Some(d) = &self.database {
            file.database = Some(d.clone());
        }
        Ok(file)
    }

    pub fn open(&self) -> Result<runner::service::store::Store, Failure> {
        let config = self.file()?.validate().map_err(usage)?;
        runner::service::store::Store::open(&config.database).map_err(infra)
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on, IP:PORT (overrides the configuration file).
    #[arg(long, env = "RUNNER_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
}

pub async fn run(global: &Global, args: ServeArgs) -> Result<ExitCode, Failure> {
    let mut file = args.db.file()?;
    if let Some(l) = args.listen {
        file.listen = Some(l);
    }
    let config = file.validate().map_err(usage)?;
    let ctx = Context::load(global)?;
    let backend = super::backend(&config.backend, &ctx.policy).await?;
    let sandbox = Arc::new(Sandbox::new(backend, ctx.policy, ctx.catalog));
    runner::service::serve(config, sandbox, super::interrupted())
        .await
        .map_err(infra)?;
    Ok(ExitCode::SUCCESS)
}
