//! Printing a result for people (default) or machines (`--json`).

use std::io::Write as _;

use runner::verdict::{RunResult, StageResult};

pub fn print_json(result: &RunResult) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, result)?;
    writeln!(out)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn stage(name: &str, s: &StageResult) {
    let end = match (s.exit_code, &s.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("killed by {sig}"),
        (None, None) => "no exit status".to_owned(),
    };
    println!(
        "{name}: {end} · {} ms wall · {} ms CPU · {} peak memory",
        s.wall_ms,
        s.cpu_ms,
        mib(s.memory_peak_bytes)
    );
    if let Some(m) = &s.message {
        println!("{name}: {m}");
    }
    for (label, text, truncated) in [
        ("stdout", &s.stdout, s.stdout_truncated),
        ("stderr", &s.stderr, s.stderr_truncated),
    ] {
        if text.is_empty() {
            continue;
        }
        println!(
            "--- {name} {label}{} ---",
            if truncated { " (truncated)" } else { "" }
        );
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
}

pub fn print_human(r: &RunResult) {
    println!("{} {}: {}", r.language, r.version, r.status);
    if let Some(m) = &r.message {
        println!("{m}");
    }
    if let Some(c) = &r.compile {
        stage("compile", c);
    }
    if let Some(s) = &r.run {
        stage("run", s);
    }
}
