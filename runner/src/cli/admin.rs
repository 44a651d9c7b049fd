//! `runner admin`: tenants and API keys, straight on the database (for the
//! operator; tenant admins use `/v1/keys`). Every change is audited.

use std::process::ExitCode;

use anyhow::anyhow;
use runner::service::auth::{Role, mint_key};
use runner::service::store::{NewAuditEntry, NewKey, Store, StoreError};

use super::serve::DbArgs;
use super::{Failure, infra, usage};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Tenants: create, list.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API keys: create, revoke, list.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Repositories whose pushes run workflows: create, list, delete.
    #[command(subcommand)]
    Repo(RepoCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum RepoCommand {
    /// Register a repository; prints its id, then its webhook secret once.
    Create {
        #[arg(long)]
        tenant: String,
        /// `owner/name`, as pushes name it.
        #[arg(long)]
        name: String,
        /// Clone URL (`https://…`, `ssh://…`) or `file://` path.
        #[arg(long)]
        url: String,
        /// A branch pattern whose pushes run workflows; repeatable
        /// (default: every branch).
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// A secret name its jobs may use; repeatable.
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// An egress grant of the server (`[workflows] egress_grants`).
        #[arg(long)]
        network: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's repositories.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a repository (its secrets and runs' records too).
    Delete {
        #[arg(long)]
        tenant: String,
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints it once on stdout (only its hash is stored).
    Create {
        #[arg(long)]
        tenant: String,
        /// learner, developer, release-manager or admin.
        #[arg(long)]
        role: String,
        /// A note for people (who or what uses the key).
        #[arg(long, default_value = "")]
        label: String,
        /// Release environments a release-manager key may approve for
        /// (comma-separated, e.g. `prod`); default: every environment.
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        environments: Option<Vec<String>>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by id; requests with it fail at once.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a tenant's keys (ids and roles; never secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn audit(
    store: &Store,
    tenant: Option<&str>,
    action: &str,
    target: String,
    detail: Option<String>,
) -> Result<(), Failure> {
    store
        .audit()
        .append(&NewAuditEntry {
            actor: actor(),
            tenant: tenant.map(str::to_owned),
            action: action.into(),
            target: Some(target),
            detail,
        })
        .map(|_| ())
        .map_err(infra)
}

fn tenant(store: &Store, name: &str) -> Result<runner::service::store::Tenant, Failure> {
    store.tenant_by_name(name).map_err(infra)?.ok_or_else(|| {
        usage(anyhow!(
            "no tenant named {name:?}; create it with `runner admin tenant create {name}`"
        ))
    })
}

pub fn run(cmd: AdminCommand) -> Result<ExitCode, Failure> {
    match cmd {
        AdminCommand::Tenant(TenantCommand::Create { name, db }) => create_tenant(&name, &db)?,
        AdminCommand::Tenant(TenantCommand::List { db }) => {
            for t in db.open()?.tenants().map_err(infra)? {
                println!("{}\t{}", t.id, t.name);
            }
        }
        AdminCommand::Key(KeyCommand::Create {
            tenant,
            role,
            label,
            environments,
            db,
        }) => create_key(&tenant, &role, &label, environments.as_deref(), &db)?,
        AdminCommand::Key(KeyCommand::Revoke { id, db }) => revoke_key(&id, &db)?,
        AdminCommand::Key(KeyCommand::List { tenant: name, db }) => {
            let store = db.open()?;
            let t = tenant(&store, &name)?;
            for k in store.keys(&t.id).map_err(infra)? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}\t{}\t{state}\t{}", k.id, k.role, k.label);
            }
        }
        AdminCommand::Repo(cmd) => repo(cmd)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn repo(cmd: RepoCommand) -> Result<(), Failure> {
    match cmd {
        RepoCommand::Create {
            tenant: name,
            name: repo_name,
            url,
            branches,
            secrets,
            network,
            db,
        } => {
            let config = db.file()?.validate().map_err(usage)?;
            if let Some(n) = network
                .as_ref()
                .filter(|n| !config.workflows.egress_grants.contains(n))
            {
                return Err(usage(anyhow!(
                    "--network {n}: not an egress grant of this server; list it in [workflows] egress_grants first"
                )));
            }
            if let Some(s) = secrets
                .iter()
                .find(|s| !runner::service::secrets::valid_secret_name(s))
            {
                return Err(usage(anyhow!(
                    "--secret {s}: letters, digits and '_', not starting with a digit or GITHUB_"
                )));
            }
            runner::service::api::repos::check_name(&repo_name)
                .map_err(|e| usage(anyhow!("--name: {e}")))?;
            runner::workflow::source::url::classify(&url)
                .map_err(|e| usage(anyhow!("--url: {e}")))?;
            // A pattern the server could not read would fail every push.
            runner::service::api::repos::branch_filter(&branches)
                .map_err(|e| usage(anyhow!("--branch: {e}")))?;
            let key = runner::service::secrets::load_key(&config.workflows.secrets_key_file)
                .map_err(usage)?;
            let store = db.open()?;
            let t = tenant(&store, &name)?;
            let mut raw = [0u8; 32];
            getrandom::fill(&mut raw).map_err(|e| infra(anyhow!("random source: {e}")))?;
            let secret =
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
            let entry = NewAuditEntry {
                actor: actor(),
                tenant: Some(t.name.clone()),
                action: "repo.create".into(),
                target: Some(repo_name.clone()),
                detail: None,
            };
            let repo = store
                .repos(&t.id)
                .create(
                    &runner::service::store::repos::NewRepo {
                        name: &repo_name,
                        url: &url,
                        branches: &branches,
                        secrets_allowed: &secrets,
                        egress: network.as_deref(),
                        created_by: &entry.actor,
                    },
                    secret.as_bytes(),
                    &key,
                    &entry,
                )
                .map_err(|e| match e {
                    StoreError::RepoExists(_) => usage(e),
                    other => infra(other),
                })?;
            println!("{}", repo.id);
            eprintln!(
                "registered {repo_name}; deliver GitHub pushes to /v1/hooks/github?repo={} (content type application/json) with this secret, shown once:",
                repo.id
            );
            println!("{secret}");
        }
        RepoCommand::List { tenant: name, db } => {
            let store = db.open()?;
            let t = tenant(&store, &name)?;
            for r in store.repos(&t.id).list().map_err(infra)? {
                println!(
                    "{}\t{}\t{}",
                    r.id,
                    r.name,
                    r.egress.as_deref().unwrap_or("no network")
                );
            }
        }
        RepoCommand::Delete {
            tenant: name,
            id,
            db,
        } => {
            let store = db.open()?;
            let t = tenant(&store, &name)?;
            let entry = NewAuditEntry {
                actor: actor(),
                tenant: Some(t.name.clone()),
                action: "repo.delete".into(),
                target: Some(id.clone()),
                detail: None,
            };
            if !store.repos(&t.id).delete(&id, &entry).map_err(infra)? {
                return Err(usage(anyhow!("tenant {name} has no repository {id}")));
            }
            eprintln!("removed repository {id}");
        }
    }
    Ok(())
}

fn create_tenant(name: &str, db: &DbArgs) -> Result<(), Failure> {
    let store = db.open()?;
    let t = store.create_tenant(name).map_err(|e| match e {
        StoreError::InvalidTenantName(_) | StoreError::TenantExists(_) => usage(e),
        other => infra(other),
    })?;
    audit(
        &store,
        Some(&t.name),
        "tenant.create",
        format!("tenant:{}", t.id),
        None,
    )?;
    println!("{}", t.id);
    eprintln!("created tenant {name}");
    Ok(())
}

fn create_key(
    name: &str,
    role: &str,
    label: &str,
    environments: Option<&[String]>,
    db: &DbArgs,
) -> Result<(), Failure> {
    let role = Role::parse(role).map_err(usage)?;
    if let Some(e) = environments {
        runner::service::auth::check_scope(role, e).map_err(usage)?;
    }
    let store = db.open()?;
    let t = tenant(&store, name)?;
    let minted = mint_key();
    store
        .insert_key(
            &t.id,
            &NewKey {
                id: &minted.id,
                role: role.as_str(),
                secret_hash: &minted.secret_hash,
                label,
                created_by: &actor(),
                environments,
            },
        )
        .map_err(infra)?;
    audit(
        &store,
        Some(&t.name),
        "key.create",
        format!("key:{}", minted.id),
        Some(match environments {
            Some(e) => format!("role {} for {}", role.as_str(), e.join(", ")),
            None => format!("role {}", role.as_str()),
        }),
    )?;
    eprintln!(
        "created key {} ({} of tenant {name}); it is shown once, below: store it now",
        minted.id,
        role.as_str()
    );
    println!("{}", minted.text);
    Ok(())
}

/// Refuses (a usage error) to revoke a tenant's last admin key.
fn revoke_key(id: &str, db: &DbArgs) -> Result<(), Failure> {
    let store = db.open()?;
    let rec = store.revoke_key(None, id).map_err(|e| match e {
        StoreError::LastAdmin { .. } => usage(e),
        other => infra(other),
    })?;
    let rec = rec.ok_or_else(|| {
        usage(anyhow!(
            "no key with id {id:?}; `runner admin key list --tenant T` lists them"
        ))
    })?;
    audit(
        &store,
        Some(&rec.tenant_name),
        "key.revoke",
        format!("key:{id}"),
        None,
    )?;
    eprintln!("revoked key {id} of tenant {}", rec.tenant_name);
    Ok(())
}
