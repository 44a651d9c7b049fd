//! `runner audit`: check and export the audit log.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use runner::service::store::audit::{verify, verify_anchor};

use super::serve::DbArgs;
use super::{Failure, infra, usage};

/// Exit code when the log fails verification.
pub const EXIT_TAMPERED: u8 = 1;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name each modified, deleted, inserted or
    /// reordered entry. Exits 1 when the log was tampered with.
    Verify {
        /// A head printed earlier by `runner audit head` (SEQ:HASH): also
        /// detects entries removed from the end.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write every entry as JSON lines.
    Export {
        /// Output file (default: stdout).
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the current head (SEQ:HASH), to keep somewhere else.
    Head {
        #[command(flatten)]
        db: DbArgs,
    },
}

pub fn run(cmd: AuditCommand) -> Result<ExitCode, Failure> {
    match cmd {
        AuditCommand::Verify { anchor, db } => {
            let anchor = anchor
                .map(|a| {
                    let (seq, hash) = a.split_once(':').ok_or_else(|| {
                        usage(anyhow!(
                            "--anchor is SEQ:HASH, as `runner audit head` prints it"
                        ))
                    })?;
                    let seq: i64 = seq.parse().map_err(|_| {
                        usage(anyhow!("--anchor: {seq:?} is not a sequence number"))
                    })?;
                    Ok::<_, Failure>((seq, hash.to_owned()))
                })
                .transpose()?;
            let entries = db.open()?.audit().all().map_err(infra)?;
            let mut problems = verify(&entries);
            if let Some((seq, hash)) = anchor {
                problems.extend(verify_anchor(&entries, seq, &hash));
            }
            if problems.is_empty() {
                println!("audit log intact: {} entries", entries.len());
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                println!("TAMPERED: {p}");
            }
            eprintln!(
                "runner: the audit log fails verification ({} problem(s))",
                problems.len()
            );
            Ok(ExitCode::from(EXIT_TAMPERED))
        }
        AuditCommand::Export { output, db } => {
            let entries = db.open()?.audit().all().map_err(infra)?;
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .map_err(|e| usage(anyhow!("cannot create {}: {e}", p.display())))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            for e in &entries {
                serde_json::to_writer(&mut out, e).map_err(infra)?;
                writeln!(out).map_err(infra)?;
            }
            out.flush().map_err(infra)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Head { db } => {
            let entries = db.open()?.audit().all().map_err(infra)?;
            match entries.last() {
                Some(e) => println!("{}:{}", e.seq, e.hash),
                None => println!("0:{}", runner::service::store::audit::GENESIS),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
