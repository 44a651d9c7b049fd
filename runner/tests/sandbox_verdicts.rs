//! One program per verdict, on the real engine.

mod common;

use std::time::{Duration, Instant};

use common::{Env, out, show};
use runner::limits::LimitsRequest;
use runner::verdict::{LimitHit, Status};
use test_support::require_docker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_with_stdin_and_args() {
    require_docker!();
    let env = Env::new().await;
    let r = env
        .run_with(
            "python",
            &[(
                "main.py",
                "import sys\nprint(input().upper(), sys.argv[1:])",
            )],
            "hello\n",
            &["a b", "-x"],
            LimitsRequest::default(),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "HELLO ['a b', '-x']");
    let run = r.run.unwrap();
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.signal, None);
    assert!(run.memory_peak_bytes > 1 << 20, "{}", run.memory_peak_bytes);
    assert!(run.wall_ms < 3000);
    assert!(r.compile.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_error_reports_the_compiler_output() {
    require_docker!();
    let env = Env::new().await;
    let r = env
        .run("c", &[("main.c", "int main(void) { return x; }\n")])
        .await;
    assert_eq!(r.status, Status::CompileError, "{}", show(&r));
    let c = r.compile.as_ref().unwrap();
    assert_ne!(c.exit_code, Some(0));
    assert!(c.stderr.contains("undeclared"), "{}", c.stderr);
    assert!(r.run.is_none(), "no run stage after a failed compile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_error_keeps_the_exit_code() {
    require_docker!();
    let env = Env::new().await;
    let r = env
        .run(
            "python",
            &[("main.py", "import sys\nprint('before')\nsys.exit(3)")],
        )
        .await;
    assert_eq!(r.status, Status::RuntimeError, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.signal, None);
    assert_eq!(out(&r), "before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_is_reported_by_name_not_folded_into_an_exit_code() {
    require_docker!();
    let env = Env::new().await;
    let r = env
        .run(
            "c",
            &[(
                "main.c",
                "int main(void) { volatile int *p = 0; return *p; }\n",
            )],
        )
        .await;
    assert_eq!(r.status, Status::RuntimeError, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.signal.as_deref(), Some("SIGSEGV"));
    assert_eq!(run.exit_code, None);
    assert_eq!(run.limit, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_137_by_choice_is_not_a_memory_verdict() {
    require_docker!();
    let env = Env::new().await;
    let r = env.run("bash", &[("main.sh", "exit 137")]).await;
    assert_eq!(r.status, Status::RuntimeError, "{}", show(&r));
    assert_eq!(r.run.unwrap().exit_code, Some(137));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_time_limit() {
    require_docker!();
    let env = Env::new().await;
    let limits = LimitsRequest {
        run_wall_time_ms: Some(1000),
        ..Default::default()
    };
    let r = env
        .run_with(
            "python",
            &[("main.py", "import time\nprint('start')\ntime.sleep(30)")],
            "",
            &[],
            limits,
        )
        .await;
    assert_eq!(r.status, Status::TimeLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.limit, Some(LimitHit::WallTime));
    assert!(run.wall_ms >= 1000 && run.wall_ms < 5000, "{}", run.wall_ms);
    assert!(run.cpu_ms < 500, "sleeping costs no CPU: {}", run.cpu_ms);
    assert_eq!(out(&r), "start", "output before the limit is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_limit_counts_every_process() {
    require_docker!();
    let env = Env::new().await;
    // Two busy processes under a 1-CPU quota: CPU time is the sum of both,
    // and the wall-clock limit is far away.
    let limits = LimitsRequest {
        run_wall_time_ms: Some(15000),
        run_cpu_time_ms: Some(1000),
        ..Default::default()
    };
    let prog = "import os\nos.fork()\nwhile True: pass\n";
    let r = env
        .run_with("python", &[("main.py", prog)], "", &[], limits)
        .await;
    assert_eq!(r.status, Status::TimeLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.limit, Some(LimitHit::CpuTime));
    assert!(run.cpu_ms >= 1000, "{}", run.cpu_ms);
    assert!(run.wall_ms < 10000, "{}", run.wall_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_comes_from_the_oom_state() {
    require_docker!();
    let env = Env::new().await;
    let limits = LimitsRequest {
        run_memory_mb: Some(64),
        ..Default::default()
    };
    let prog = "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))\n";
    let r = env
        .run_with("python", &[("main.py", prog)], "", &[], limits)
        .await;
    assert_eq!(r.status, Status::MemoryLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.limit, Some(LimitHit::Memory));
    assert_eq!(run.signal.as_deref(), Some("SIGKILL"));
    assert!(
        run.memory_peak_bytes <= 64 << 20,
        "{}",
        run.memory_peak_bytes
    );
    assert!(
        run.memory_peak_bytes > 48 << 20,
        "{}",
        run.memory_peak_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_limit_stops_endless_output() {
    require_docker!();
    let env = Env::new().await;
    let limits = LimitsRequest {
        stdout_max_bytes: Some(10_000),
        ..Default::default()
    };
    let r = env
        .run_with(
            "python",
            &[("main.py", "while True:\n    print('y' * 100)\n")],
            "",
            &[],
            limits,
        )
        .await;
    assert_eq!(r.status, Status::OutputLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert!(run.stdout_truncated);
    assert!(!run.stderr_truncated);
    assert_eq!(run.stdout.len(), 10_000);
    assert!(run.wall_ms < 2000, "stopped at once: {}", run.wall_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_has_its_own_cap() {
    require_docker!();
    let env = Env::new().await;
    let limits = LimitsRequest {
        stderr_max_bytes: Some(100),
        ..Default::default()
    };
    let prog = "import sys\nprint('fine')\nsys.stderr.write('e' * 1000)\n";
    let r = env
        .run_with("python", &[("main.py", prog)], "", &[], limits)
        .await;
    assert_eq!(r.status, Status::OutputLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert!(run.stderr_truncated);
    assert_eq!(run.stderr.len(), 100);
    assert_eq!(out(&r), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_stage_has_its_own_limits() {
    require_docker!();
    let env = Env::new().await;
    // The compiler reads /dev/random forever: the compile stage's own limit
    // ends it, and nothing runs.
    let limits = LimitsRequest {
        compile_wall_time_ms: Some(2000),
        compile_cpu_time_ms: Some(2000),
        ..Default::default()
    };
    let r = env
        .run_with(
            "c",
            &[(
                "main.c",
                "#include \"/dev/random\"\nint main(void){return 0;}\n",
            )],
            "",
            &[],
            limits,
        )
        .await;
    assert_eq!(r.status, Status::CompileError, "{}", show(&r));
    let c = r.compile.as_ref().unwrap();
    assert!(
        c.limit.is_some(),
        "a limit stopped the compiler: {}",
        show(&r)
    );
    assert!(c.wall_ms <= 4000, "{}", c.wall_ms);
    assert!(r.run.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_programs_get_their_files_and_stdin() {
    require_docker!();
    let env = Env::new().await;
    let main = "#include <stdio.h>\n#include \"util.h\"\nint main(void){ int n; if (scanf(\"%d\", &n) != 1) return 9; printf(\"%d\\n\", twice(n)); FILE *f = fopen(\"data.txt\", \"r\"); char b[16] = {0}; fgets(b, sizeof b, f); printf(\"%s\", b); return 0; }\n";
    let util_h = "int twice(int);\n";
    let util_c = "int twice(int x) { return 2 * x; }\n";
    let r = env
        .run_with(
            "c",
            &[
                ("main.c", main),
                ("util.h", util_h),
                ("util.c", util_c),
                ("data.txt", "from a file\n"),
            ],
            "21\n",
            &[],
            LimitsRequest::default(),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "42\nfrom a file");
    assert!(r.compile.as_ref().unwrap().succeeded());
}

/// The validator and the sandbox agree on the longest file name: the
/// longest name accepted runs, one byte more is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_accepted_file_name_runs_and_one_byte_more_is_refused() {
    require_docker!();
    let env = Env::new().await;
    let max = runner::submission::MAX_NAME_BYTES;
    let longest = format!("{}.py", "n".repeat(max - 3));
    assert_eq!(longest.len(), max);
    let r = env.run("python", &[(&longest, "print('OK')")]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "OK");
    // A compiled language carries the name through both stages.
    let c = format!("{}.c", "c".repeat(max - 2));
    let r = env
        .run(
            "c",
            &[(&c, "#include <stdio.h>\nint main(void){puts(\"OK\");}\n")],
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));

    let too_long = format!("{}.py", "n".repeat(max - 2));
    let err = env
        .sandbox
        .prepare(runner::sandbox::RunRequest {
            language: "python".into(),
            files: vec![common::file(&too_long, "print(1)")],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("the limit is {max}")),
        "{err}"
    );
}

/// Docker refuses memory limits under 6 MiB: such a request is the
/// client's to fix, refused with the minimum, never an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_under_the_engines_minimum_are_refused_and_the_minimum_runs() {
    require_docker!();
    let env = Env::new().await;
    for mb in 1..6 {
        for limits in [
            LimitsRequest {
                run_memory_mb: Some(mb),
                ..Default::default()
            },
            LimitsRequest {
                compile_memory_mb: Some(mb),
                ..Default::default()
            },
        ] {
            let err = env
                .sandbox
                .prepare(runner::sandbox::RunRequest {
                    language: "c".into(),
                    files: vec![common::file("main.c", "int main(void){return 0;}")],
                    limits,
                    ..Default::default()
                })
                .unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, runner::sandbox::RequestError::Limit(_)),
                "{text}"
            );
            assert!(text.contains("the minimum of 6"), "{text}");
        }
    }
    // The minimum itself gets a verdict: C's hello world fits, Python's
    // interpreter does not.
    let six = LimitsRequest {
        run_memory_mb: Some(6),
        ..Default::default()
    };
    let r = env
        .run_with(
            "c",
            &[(
                "main.c",
                "#include <stdio.h>\nint main(void){puts(\"OK\");}\n",
            )],
            "",
            &[],
            six.clone(),
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let r = env
        .run_with(
            "python",
            &[("main.py", "x = bytearray(16 << 20)\nprint('OK')")],
            "",
            &[],
            six,
        )
        .await;
    assert_eq!(r.status, Status::MemoryLimit, "{}", show(&r));
}

/// A compiled program larger than the run stage's memory cannot even be
/// placed in /work (a tmpfs, held in RAM): that is the memory verdict, at
/// once, not an internal error nor a time limit after the host's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_larger_than_the_run_stages_memory_is_a_prompt_memory_limit() {
    require_docker!();
    let env = Env::new().await;
    // 12 MiB of data the assembler fills in (not zeros: the archive
    // carrying /work to the run stage keeps holes as holes).
    let prog = "__asm__(\".data\\n.fill 12582912, 1, 0x55\\n\");\nint main(void){ return 0; }\n";
    let limits = LimitsRequest {
        run_memory_mb: Some(8),
        ..Default::default()
    };
    let started = Instant::now();
    let r = env
        .run_with("c", &[("main.c", prog)], "", &[], limits)
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, Status::MemoryLimit, "{}", show(&r));
    let run = r.run.as_ref().unwrap();
    assert_eq!(run.limit, Some(LimitHit::Memory));
    assert!(
        run.message.as_deref().unwrap_or("").contains("8 MiB"),
        "{}",
        show(&r)
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(env.leftovers().await, Vec::<String>::new());
}
