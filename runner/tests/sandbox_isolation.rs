//! The isolation contract, item by item, and the attacks peers test against,
//! each on the real engine. Every attack must fail harmlessly: the job ends
//! with a verdict, the host is untouched and no container is left.

mod common;

use std::time::{Duration, Instant};

use common::{Env, out, show};
use runner::limits::LimitsRequest;
use runner::verdict::Status;

fn lines(r: &runner::verdict::RunResult) -> Vec<String> {
    out(r).lines().map(str::to_owned).collect()
}

async fn runs_as_non_root_without_capabilities_or_privilege_escalation(env: &Env) {
    let prog = r#"
import os
print(os.getuid(), os.getgid(), os.geteuid(), os.getgroups())
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"]:
    print(k, status[k].strip())
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let l = lines(&r);
    // A uid of the policy's range, leased for this sandbox alone; its gid
    // is the same number, and no other group is held.
    let ids: Vec<&str> = l[0].split(' ').collect();
    let uid: u32 = ids[0].parse().unwrap();
    assert!(env.sandbox.policy().container.uids.contains(uid), "{l:?}");
    assert_eq!(ids[1..], [ids[0], ids[0], &format!("[{uid}]")], "{l:?}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            l.contains(&format!("{cap} 0000000000000000")),
            "{cap}: {l:?}"
        );
    }
    assert!(l.contains(&"NoNewPrivs 1".to_owned()), "{l:?}");
    assert!(
        l.contains(&"Seccomp 2".to_owned()),
        "seccomp filter mode: {l:?}"
    );
}

/// Each system call our profile denies (policies/seccomp/sandbox.json), by
/// its x86_64 number: called for real, it must fail with EPERM (or ENOSYS
/// for clone3, so libc falls back to the filtered clone).
async fn seccomp_profile_denies_each_dangerous_system_call(env: &Env) {
    if cfg!(not(target_arch = "x86_64")) {
        eprintln!("the system call numbers below are x86_64's; this case checks nothing elsewhere");
        return;
    }
    let prog = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = [
    ("unshare(CLONE_NEWUSER)", 272, (0x10000000,)),
    ("clone(CLONE_NEWUSER)", 56, (0x10000000 | 17, 0, 0, 0, 0)),
    ("clone(CLONE_NEWNET)", 56, (0x40000000 | 17, 0, 0, 0, 0)),
    ("setns", 308, (0, 0)),
    ("mount", 165, (0, 0, 0, 0, 0)),
    ("umount2", 166, (0, 0)),
    ("pivot_root", 155, (0, 0)),
    ("chroot", 161, (0,)),
    ("ptrace", 101, (16, 1, 0, 0)),
    ("process_vm_readv", 310, (1, 0, 0, 0, 0, 0)),
    ("kcmp", 312, (1, 1, 0, 0, 0)),
    ("bpf", 321, (0, 0, 0)),
    ("perf_event_open", 298, (0, 0, -1, -1, 0)),
    ("userfaultfd", 323, (0,)),
    ("io_uring_setup", 425, (1, 0)),
    ("keyctl", 250, (0, 0, 0, 0, 0)),
    ("add_key", 248, (0, 0, 0, 0, 0)),
    ("request_key", 249, (0, 0, 0, 0)),
    ("kexec_load", 246, (0, 0, 0, 0)),
    ("init_module", 175, (0, 0, 0)),
    ("finit_module", 313, (0, 0, 0)),
    ("reboot", 169, (0, 0, 0, 0)),
    ("swapon", 167, (0, 0)),
    ("syslog", 103, (3, 0, 0)),
    ("iopl", 172, (3,)),
    ("ioperm", 173, (0, 1, 1)),
    ("modify_ldt", 154, (0, 0, 0)),
    ("open_by_handle_at", 304, (0, 0, 0)),
    ("fanotify_init", 300, (0, 0)),
    ("fanotify_mark", 301, (0, 0, 0, 0, 0)),
    # Host-wide AIO contexts (fs.aio-max-nr): a real request, which the
    # kernel would grant.
    ("io_setup", 206, (1, ctypes.byref(ctypes.c_ulong(0)))),
    ("io_destroy", 207, (0,)),
    ("io_getevents", 208, (0, 0, 0, 0, 0)),
    ("io_submit", 209, (0, 0, 0)),
    ("io_cancel", 210, (0, 0, 0)),
    ("io_pgetevents", 333, (0, 0, 0, 0, 0, 0)),
    # System V IPC; the get calls are real requests (IPC_PRIVATE, IPC_CREAT | 0600).
    ("msgget", 68, (0, 0o1600)),
    ("msgsnd", 69, (0, 0, 0, 0)),
    ("msgrcv", 70, (0, 0, 0, 0, 0)),
    ("msgctl", 71, (0, 0, 0)),
    ("semget", 64, (0, 1, 0o1600)),
    ("semop", 65, (0, 0, 0)),
    ("semctl", 66, (0, 0, 0, 0)),
    ("semtimedop", 220, (0, 0, 0, 0)),
    ("shmget", 29, (0, 4096, 0o1600)),
    ("shmat", 30, (0, 0, 0)),
    ("shmctl", 31, (0, 0, 0)),
    ("shmdt", 67, (0,)),
    ("personality(READ_IMPLIES_EXEC)", 135, (0x0400000,)),
    ("acct", 163, (0,)),
    ("settimeofday", 164, (0, 0)),
    ("clock_settime", 227, (0, 0)),
    ("set_mempolicy", 238, (0, 0, 0)),
    ("move_pages", 279, (0, 0, 0, 0, 0, 0)),
    ("clone3", 435, (0, 0)),
]
for name, nr, args in calls:
    ctypes.set_errno(0)
    r = libc.syscall(nr, *args)
    print(name, r, errno.errorcode.get(ctypes.get_errno(), "OK"))
import os
print("getpid", libc.syscall(39) == os.getpid(), "allowed")
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let l = lines(&r);
    for line in &l[..l.len() - 1] {
        let expected = if line.starts_with("clone3") {
            "-1 ENOSYS"
        } else {
            "-1 EPERM"
        };
        assert!(line.ends_with(expected), "not denied: {line}");
    }
    assert_eq!(l.last().unwrap(), "getpid True allowed", "positive control");
}

async fn network_is_loopback_only_and_names_do_not_resolve(env: &Env) {
    let prog = r#"
import socket
print(sorted(name for _, name in socket.if_nameindex()))
try:
    socket.getaddrinfo("example.com", 80)
    print("resolved")
except OSError as e:
    print("no resolution")
for addr in [("1.1.1.1", 53), ("8.8.8.8", 443)]:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(addr)
        print("connected")
    except OSError as e:
        print("unreachable")
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(
        lines(&r),
        ["['lo']", "no resolution", "unreachable", "unreachable"]
    );
}

async fn root_filesystem_is_read_only_and_only_tmpfs_is_writable(env: &Env) {
    let prog = r#"
for p in /etc/passwd-x /usr/bin/x /usr/local/bin/x /x /var/tmp/x /home/x /etc/hostname; do
  if ( echo x > "$p" ) 2>/dev/null; then echo "WROTE $p"; else echo "denied $p"; fi
done
echo ok > /work/f && cat /work/f
echo ok > /tmp/f && cat /tmp/f
echo ok > /dev/shm/f && cat /dev/shm/f
"#;
    let r = env.run("bash", &[("main.sh", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let text = out(&r);
    assert!(!text.contains("WROTE"), "{text}");
    assert_eq!(text.matches("denied").count(), 7, "{text}");
    assert!(text.ends_with("ok\nok\nok"), "{text}");
}

async fn nothing_from_the_host_is_mounted(env: &Env) {
    let r = env
        .run(
            "python",
            &[("main.py", "print(open('/proc/self/mountinfo').read())")],
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    // Fields: id parent major:minor root mountpoint options ... - fstype source
    let virtual_fs = [
        "proc", "tmpfs", "devpts", "sysfs", "cgroup", "cgroup2", "mqueue",
    ];
    for line in out(&r).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let mountpoint = fields[4];
        let options = fields[5];
        let sep = fields.iter().position(|f| *f == "-").unwrap();
        let fstype = fields[sep + 1];
        if mountpoint == "/" {
            assert!(options.starts_with("ro"), "root must be read-only: {line}");
            continue;
        }
        if virtual_fs.contains(&fstype) {
            continue;
        }
        // Docker writes the container's hostname file itself; with no
        // network it mounts nothing else. It must be read-only.
        assert_eq!(mountpoint, "/etc/hostname", "unexpected host mount: {line}");
        assert!(options.starts_with("ro"), "{line}");
    }
}

async fn cgroup_limits_match_the_policy(env: &Env) {
    let prog = r#"
import os
def read(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().strip()
    return "missing"
v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
print("pids", read("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"))
print("mem", read("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
if v2:
    print("swap", read("/sys/fs/cgroup/memory.swap.max"))
    q, p = read("/sys/fs/cgroup/cpu.max").split()
    print("cpu", int(q) / int(p))
else:
    print("swap", int(read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")) - int(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")))
    print("cpu", int(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")) / int(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")))
import resource
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[1])
print("core", resource.getrlimit(resource.RLIMIT_CORE)[1])
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let p = env.sandbox.policy();
    assert_eq!(
        lines(&r),
        [
            format!("pids {}", p.run.pids),
            format!("mem {}", p.run.memory_mb.default << 20),
            "swap 0".to_owned(),
            format!("cpu {:.1}", p.container.nano_cpus as f64 / 1e9),
            format!("nofile {}", p.container.nofile),
            "core 0".to_owned(),
        ]
    );
}

async fn filling_the_tmpfs_stops_at_its_size(env: &Env) {
    let prog = r#"
dd if=/dev/zero of=/work/fill bs=1M count=200 2>&1 | grep -o 'No space left on device'
ls -l /work/fill | awk '{print $5}'
truncate -s 1T /work/sparse; echo "truncate exit $?"
"#;
    let r = env.run("bash", &[("main.sh", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let text = out(&r);
    assert!(text.contains("No space left on device"), "{text}");
    let size: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(
        size <= env.sandbox.policy().container.work_tmpfs_bytes,
        "{size}"
    );
    // A 1 TiB sparse file is refused by the file-size limit (SIGXFSZ).
    assert!(text.contains("truncate exit 153"), "{text}");
}

async fn fork_bomb_is_contained_and_cleaned_up(env: &Env) {
    let limits = LimitsRequest {
        run_wall_time_ms: Some(3000),
        ..Default::default()
    };
    let started = Instant::now();
    let r = env
        .run_with(
            "bash",
            &[("main.sh", ":(){ :|:& };:\nwait\n")],
            "",
            &[],
            limits,
        )
        .await;
    assert!(
        matches!(
            r.status,
            Status::TimeLimit | Status::RuntimeError | Status::Ok
        ),
        "{}",
        show(&r)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        env.leftovers().await,
        Vec::<String>::new(),
        "container left behind"
    );
}

async fn memory_bomb_ends_with_the_memory_verdict(env: &Env) {
    let prog = "#include <stdlib.h>\n#include <string.h>\nint main(void){ for(;;){ char *p = malloc(1<<20); if (!p) return 1; memset(p, 1, 1<<20);} }\n";
    let r = env.run("c", &[("main.c", prog)]).await;
    assert_eq!(r.status, Status::MemoryLimit, "{}", show(&r));
    assert_eq!(env.leftovers().await, Vec::<String>::new());
}

async fn files_left_behind_are_invisible_to_the_next_run(env: &Env) {
    let plant = "for d in /work /tmp /dev/shm; do echo secret > $d/planted; done; ls /work /tmp /dev/shm | grep -c planted";
    let r = env.run("bash", &[("main.sh", plant)]).await;
    assert_eq!(out(&r), "3", "{}", show(&r));
    let look = "for d in /work /tmp /dev/shm /var/tmp; do ls -A $d; done | grep -c planted || true";
    let r = env.run("bash", &[("main.sh", look)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "0");
}

async fn background_processes_do_not_outlive_the_job(env: &Env) {
    let prog = r#"
( sleep 2; echo "late output" ) &
setsid sh -c 'sleep 60' &
nohup sleep 60 >/dev/null 2>&1 &
disown -a
echo done
"#;
    let started = Instant::now();
    let r = env.run("bash", &[("main.sh", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "done", "{}", show(&r));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the job waited for its children"
    );
    assert_eq!(
        env.leftovers().await,
        Vec::<String>::new(),
        "a container outlived the job"
    );
}

async fn the_submission_cannot_tamper_with_sandbox_init(env: &Env) {
    // PID 1 reports the result. It ignores signals from inside its namespace
    // and is not dumpable, so its descriptors and memory are closed.
    let prog = r#"
import os, signal
for sig in [signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP]:
    try:
        os.kill(1, sig)
        print("sent", sig.name)
    except OSError as e:
        print("refused", sig.name)
for p in ["/proc/1/fd/1", "/proc/1/mem", "/proc/1/environ"]:
    try:
        open(p, "rb" if p.endswith("mem") else "wb").close()
        print("OPENED", p)
    except OSError:
        print("closed", p)
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) == [1, os.getpid()])
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "the report still came: {}", show(&r));
    let text = out(&r);
    assert!(!text.contains("OPENED"), "{text}");
    assert!(
        text.ends_with("True"),
        "only init and the program are visible: {text}"
    );
}

async fn concurrent_jobs_cannot_see_each_other(env: &Env) {
    env.ensure_image("bash").await;
    let holder =
        "echo mine > /work/secret-a; echo mine > /tmp/secret-a; sleep 4; cat /work/secret-a";
    let looker = r#"
sleep 1
find / -xdev -name 'secret-*' 2>/dev/null | wc -l
ls /proc | grep -c '^[0-9]'
"#;
    let limits = || LimitsRequest {
        run_wall_time_ms: Some(10_000),
        ..Default::default()
    };
    let (holder, looker) = ([("main.sh", holder)], [("main.sh", looker)]);
    let (a, b) = tokio::join!(
        env.run_with("bash", &holder, "", &[], limits()),
        env.run_with("bash", &looker, "", &[], limits()),
    );
    assert_eq!(a.status, Status::Ok, "{}", show(&a));
    assert_eq!(out(&a), "mine");
    assert_eq!(b.status, Status::Ok, "{}", show(&b));
    let l = lines(&b);
    assert_eq!(l[0].trim(), "0", "saw the other job's files");
    let procs: u32 = l[1].trim().parse().unwrap();
    assert!(procs <= 5, "saw other processes: {procs}");
}

/// The submission is the OOM killer's first choice (1000; sandbox-init,
/// which reports, stays at 0). It may lower its score, but never below
/// sandbox-init's, and a submission that did still gets the memory verdict.
async fn a_submission_lowering_its_oom_score_still_gets_the_memory_verdict(env: &Env) {
    let prog = r#"
def score(pid):
    return open(f"/proc/{pid}/oom_score_adj").read().strip()
print("self", score("self"), "init", score(1))
for value in ["-1", "0"]:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(value)
        print("set", value)
    except OSError:
        print("refused", value)
print("now", score("self"), flush=True)
chunks = []
while True:
    chunks.append(bytearray(8 << 20))
"#;
    // Under the default limits, so the warm case runs warm.
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::MemoryLimit, "{}", show(&r));
    assert_eq!(
        lines(&r),
        ["self 1000 init 0", "refused -1", "set 0", "now 0"],
        "{}",
        show(&r)
    );
}

/// Host information under /proc is masked like the engine's own list
/// (which ours replaces, so it repeats it), plus the kernel's build
/// configuration and the host's load; kernel tunables stay read-only.
async fn host_information_in_proc_is_masked(env: &Env) {
    let prog = r#"
import os
masked = ["/proc/config.gz", "/proc/loadavg", "/proc/kcore", "/proc/keys",
          "/proc/timer_list", "/proc/sched_debug", "/proc/acpi", "/proc/scsi",
          "/proc/interrupts", "/sys/firmware"]
for p in masked:
    if not os.path.exists(p):
        print(p, "absent")
    elif os.path.isdir(p):
        print(p, "empty" if not os.listdir(p) else "LISTED")
    else:
        try:
            print(p, "empty" if open(p, "rb").read(64) == b"" else "READ")
        except OSError:
            print(p, "unreadable")
for p in ["/proc/sys/kernel/hostname", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"]:
    if os.path.exists(p):
        print(p, "ro" if os.statvfs(p).f_flag & os.ST_RDONLY else "WRITABLE")
"#;
    let r = env.run("python", &[("main.py", prog)]).await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let text = out(&r);
    assert!(!text.contains("READ") && !text.contains("LISTED"), "{text}");
    assert!(!text.contains("WRITABLE"), "{text}");
    for p in ["/proc/config.gz", "/proc/loadavg"] {
        if std::path::Path::new(p).exists() {
            assert!(text.contains(&format!("{p} empty")), "{p}: {text}");
        }
    }
}

/// Every case runs twice: in containers created for the job (cold) and in
/// containers of the warm pool, which must isolate just as well.
macro_rules! cold_and_warm {
    ($($case:ident => [$($lang:literal),+]),+ $(,)?) => {
        mod cold {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    test_support::require_docker!();
                    let env = super::Env::new().await;
                    super::$case(&env).await;
                }
            )+
        }
        mod warm {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    test_support::require_docker!();
                    let env = super::Env::warm(&[$($lang),+], 2).await;
                    super::$case(&env).await;
                    assert!(env.pool_hits() > 0, "the case ran on the cold path");
                    env.sandbox.shutdown().await;
                }
            )+
        }
    };
}

cold_and_warm! {
    runs_as_non_root_without_capabilities_or_privilege_escalation => ["python"],
    seccomp_profile_denies_each_dangerous_system_call => ["python"],
    network_is_loopback_only_and_names_do_not_resolve => ["python"],
    root_filesystem_is_read_only_and_only_tmpfs_is_writable => ["bash"],
    nothing_from_the_host_is_mounted => ["python"],
    cgroup_limits_match_the_policy => ["python"],
    filling_the_tmpfs_stops_at_its_size => ["bash"],
    fork_bomb_is_contained_and_cleaned_up => ["bash"],
    memory_bomb_ends_with_the_memory_verdict => ["c"],
    files_left_behind_are_invisible_to_the_next_run => ["bash"],
    background_processes_do_not_outlive_the_job => ["bash"],
    the_submission_cannot_tamper_with_sandbox_init => ["python"],
    concurrent_jobs_cannot_see_each_other => ["bash"],
    a_submission_lowering_its_oom_score_still_gets_the_memory_verdict => ["python"],
    host_information_in_proc_is_masked => ["python"],
}

/// Takes every per-user kernel resource it can (inotify instances, POSIX
/// message-queue bytes, queued real-time signals), prints how much it got,
/// and with `hold` keeps them.
const PER_USER_HOLDER: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int inotify = 0;
    while (inotify_init1(IN_CLOEXEC) >= 0) inotify++;
    long mq_bytes = 0;
    struct mq_attr attr = {.mq_maxmsg = 10, .mq_msgsize = 8192};
    for (int i = 0;; i++) {
        char name[32];
        snprintf(name, sizeof name, "/q%d", i);
        if (mq_open(name, O_CREAT | O_RDWR | O_CLOEXEC, 0600, &attr) == (mqd_t)-1) break;
        mq_bytes += attr.mq_maxmsg * attr.mq_msgsize;
    }
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &rt, NULL);
    long signals = 0;
    union sigval v = {0};
    while (sigqueue(getpid(), SIGRTMIN, v) == 0) signals++;
    printf("inotify=%d mq_bytes=%ld rt_signals=%ld\n", inotify, mq_bytes, signals);
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "hold") == 0) sleep(60);
    return 0;
}
"#;

fn holdings(text: &str) -> [u64; 3] {
    let mut v = [0; 3];
    for (i, key) in ["inotify=", "mq_bytes=", "rt_signals="].iter().enumerate() {
        let at = text
            .find(key)
            .unwrap_or_else(|| panic!("{key} in {text:?}"));
        let rest = &text[at + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        v[i] = rest[..end].parse().unwrap();
    }
    v
}

/// Per-user kernel limits (inotify instances, RLIMIT_MSGQUEUE,
/// RLIMIT_SIGPENDING) count per uid on the host. A sandbox holding all of
/// its share must leave a concurrent sandbox its own full share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_of_per_user_kernel_limits_does_not_starve_a_concurrent_sandbox() {
    test_support::require_docker!();
    let env = Env::new().await;
    env.ensure_image("c").await;
    let limits = LimitsRequest {
        run_wall_time_ms: Some(20_000),
        ..Default::default()
    };
    let holder = env
        .sandbox
        .prepare(runner::sandbox::RunRequest {
            language: "c".into(),
            files: vec![common::file("main.c", PER_USER_HOLDER)],
            args: vec!["hold".into()],
            limits: limits.clone(),
            ..Default::default()
        })
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let holding = {
        let sandbox = &env.sandbox;
        async move { sandbox.execute_observed(&holder, Some(&tx)).await }
    };
    let held = async {
        let mut seen = String::new();
        while let Some(ev) = rx.recv().await {
            if let runner::sandbox::SandboxEvent::Output { text, .. } = ev {
                seen.push_str(&text);
                if seen.contains('\n') {
                    return seen;
                }
            }
        }
        panic!("the holder ended without reporting: {seen}");
    };
    // The holder runs until the probe is done, then is cancelled.
    let probe = async {
        let held = held.await;
        let r = env
            .run_with("c", &[("main.c", PER_USER_HOLDER)], "", &[], limits.clone())
            .await;
        (held, r)
    };
    let (held, probe) = tokio::select! {
        r = holding => panic!("the holder finished first: {r:?}"),
        r = probe => r,
    };
    assert_eq!(probe.status, Status::Ok, "{}", show(&probe));
    let held = holdings(&held);
    let got = holdings(&out(&probe));
    eprintln!(
        "holder held inotify={} mq_bytes={} rt_signals={}; concurrent sandbox got inotify={} mq_bytes={} rt_signals={}",
        held[0], held[1], held[2], got[0], got[1], got[2]
    );
    assert!(
        held.iter().all(|n| *n > 0),
        "the holder got nothing: {held:?}"
    );
    assert_eq!(
        got, held,
        "the concurrent sandbox did not get its own share"
    );
    env.sandbox.flush_removals().await;
    assert_eq!(env.leftovers().await, Vec::<String>::new());
}

/// A job cancelled at any moment of its start (its future dropped: a client
/// gone, a run cancelled, Ctrl-C) leaves no container behind, even one the
/// engine was still creating when the job was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_right_after_start_leaves_no_container() {
    test_support::require_docker!();
    let env = Env::new().await;
    env.ensure_image("bash").await;
    let mut cancelled = 0;
    for i in 0..30u64 {
        let prepared = env
            .sandbox
            .prepare(runner::sandbox::RunRequest {
                language: "bash".into(),
                files: vec![common::file("main.sh", "sleep 30")],
                ..Default::default()
            })
            .unwrap();
        // From 0 to 290 ms: before, during and after the engine's create.
        let delay = Duration::from_millis((i % 15) * 20 + (i / 15) * 10);
        let run = tokio::time::timeout(delay, env.sandbox.execute(&prepared)).await;
        assert!(run.is_err(), "the 30 s job finished within {delay:?}");
        cancelled += 1;
    }
    assert_eq!(cancelled, 30);
    env.sandbox.shutdown().await;
    // A creation the engine was still working on must not surface later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.leftovers().await, Vec::<String>::new());
}

/// Warm containers wait with a uid each, distinct from each other's and
/// from every running sandbox's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_containers_each_hold_their_own_uid() {
    test_support::require_docker!();
    let env = Env::warm(&["bash", "c"], 2).await;
    let running = env.run("bash", &[("main.sh", "id -u")]);
    let warm = async {
        env.docker
            .engine()
            .list(
                runner::backend::docker::labels::INSTANCE,
                env.docker.instance(),
            )
            .await
            .unwrap()
    };
    let (r, listed) = tokio::join!(running, warm);
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    let mut uids: Vec<String> = listed
        .iter()
        .map(|c| c.labels[runner::backend::docker::labels::UID].clone())
        .collect();
    // bash run + c run + c compile, two each; the running job's own may be
    // among them.
    assert!(uids.len() >= 6, "{uids:?}");
    let n = uids.len();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), n, "two containers share a uid");
    env.sandbox.shutdown().await;
}
