/*
 * sandbox-init: PID 1 of every sandbox container.
 *
 * Why C and not Rust: this program runs inside every sandbox image and must be
 * built by the image's own Dockerfile, independent of the host's toolchain and
 * libc. Debian ships gcc; a static binary of a few hundred lines is the
 * smallest, most portable answer (Docker's own init, tini, makes the same
 * choice). The runner speaks to it over the container's attached stdio.
 *
 * Why a supervisor at all: the host needs facts only something inside the
 * container can give precisely and unforgeably - exit code *and* signal
 * (Docker folds both into 128+n), per-stage CPU time and memory peak from the
 * container's cgroup, the cgroup's OOM-kill counter, and output capped as it is
 * produced. The submission runs as the same uid, but it cannot tamper with us:
 *   - we are PID 1 of the PID namespace, so the kernel drops every signal from
 *     inside the namespace for which we install no handler (we install none);
 *   - we mark ourselves non-dumpable, so /proc/1/{fd,mem} and ptrace are closed;
 *   - the result travels on our stdout, which the submission never inherits
 *     (every descriptor we open is close-on-exec).
 *
 * Protocol, host -> init (stdin), one job after another (a session: the
 * steps of a workflow job share /work; a learner's stage sends one job):
 *   "SBX 3\n" then fields "<name> <length>\n<length bytes>" until "run 0\n".
 *   Fields: arg (repeatable, argv), env (repeatable, NAME=value), cwd,
 *   wall_ms, cpu_ms, stdout_max, stderr_max, fsize_max, nofile, collect_max,
 *   files (a tar archive of plain files, written into /work by this program),
 *   tar (any tar archive, e.g. a compile stage's /work, extracted by tar(1)),
 *   file ("/tmp/<name>" NUL content: a file such as a step's script, written
 *   by this program as a regular file of mode 0700),
 *   stdin (bytes given to the program as its standard input), run.
 *   After a job's result, the next job may follow; end of input ends init.
 * Protocol, init -> host (stdout): frames "<type:1><length:4, big endian><bytes>":
 *   'o' program stdout, 'e' program stderr, 'a' /work as a tar archive
 *   (only when collect_max > 0 and the program succeeded), 'r' the result
 *   (key=value lines, always last), 'x' a fatal supervisor error (then exit).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_LINE "SBX 3"
#define MAX_FIELD (256 * 1024)       /* any single non-streamed field */
#define MAX_ARGS 1024                /* argv and env entries, each */
#define POLL_MS 10                   /* CPU accounting resolution */
#define COLLECT_WALL_MS 10000        /* bound on archiving /work */
#define CHUNK 65536
/* Longest file name of a submission: NAME_MAX of tmpfs. The runner's
 * validator accepts exactly as long (runner/src/submission.rs,
 * MAX_NAME_BYTES; a test there keeps the two equal). */
#define NAME_MAX_BYTES 255

extern char **environ;

/* ---------- output frames ---------- */

/* Writes to a descriptor of ours: 0, or -1 with errno set. */
static int write_fd(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes to the host (our stdout). Only here does a failed write mean the
 * host went away: nobody is left to report to. */
static void write_all(int fd, const void *buf, size_t len) {
    if (write_fd(fd, buf, len) < 0) {
        kill(-1, SIGKILL);
        _exit(70);
    }
}

static void frame(char type, const void *buf, size_t len) {
    unsigned char hdr[5];
    hdr[0] = (unsigned char)type;
    hdr[1] = (unsigned char)(len >> 24);
    hdr[2] = (unsigned char)(len >> 16);
    hdr[3] = (unsigned char)(len >> 8);
    hdr[4] = (unsigned char)len;
    write_all(1, hdr, sizeof hdr);
    if (len) write_all(1, buf, len);
}

static void killall_and_reap(void);
static int oom_since_start(uint64_t *kills);
__attribute__((noreturn)) static void report_memory_before_run(uint64_t kills);

/* A failure of ours ends the job with an 'x' frame: the sandbox failed, not
 * the program. Unless the kernel's OOM killer struck meanwhile (the files for
 * /work did not fit in the container's memory): that is the submission's
 * memory verdict, and it is reported as such. */
__attribute__((noreturn, format(printf, 1, 2))) static void fatal(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    killall_and_reap();
    uint64_t kills;
    if (oom_since_start(&kills)) report_memory_before_run(kills);
    frame('x', msg, (size_t)n);
    _exit(71);
}

/* ---------- buffered stdin ---------- */

static unsigned char inbuf[CHUNK];
static size_t in_pos, in_len;

static int in_fill(void) {
    if (in_pos < in_len) return 1;
    for (;;) {
        ssize_t n = read(0, inbuf, sizeof inbuf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        in_pos = 0;
        in_len = (size_t)n;
        return 1;
    }
}

/* Reads one header line (without '\n') of at most cap-1 bytes. */
static void read_line(char *line, size_t cap) {
    size_t n = 0;
    for (;;) {
        if (!in_fill()) {
            /* The host detached before sending a job (pool shutdown, runner
             * crash): nothing ran, nothing to report. */
            if (n == 0) _exit(0);
            fatal("protocol: input ended inside a header line");
        }
        unsigned char c = inbuf[in_pos++];
        if (c == '\n') break;
        if (n + 1 >= cap) fatal("protocol: header line too long");
        line[n++] = (char)c;
    }
    line[n] = 0;
}

/* Copies exactly len bytes of input to fd (or discards them when fd < 0).
 * Returns 0, or the errno of the first write that failed; the rest of the
 * field is still consumed, so the protocol stays in step. */
static int read_to_fd(uint64_t len, int fd) {
    int err = 0;
    while (len > 0) {
        if (!in_fill()) fatal("protocol: input ended inside a field");
        size_t avail = in_len - in_pos;
        size_t take = avail < len ? avail : (size_t)len;
        if (fd >= 0 && !err && write_fd(fd, inbuf + in_pos, take) < 0) err = errno ? errno : EIO;
        in_pos += take;
        len -= take;
    }
    return err;
}

static char *read_bytes(uint64_t len) {
    if (len > MAX_FIELD) fatal("protocol: field of %llu bytes is over the limit", (unsigned long long)len);
    char *buf = malloc((size_t)len + 1);
    if (!buf) fatal("out of memory");
    size_t got = 0;
    while (got < len) {
        if (!in_fill()) fatal("protocol: input ended inside a field");
        size_t avail = in_len - in_pos;
        size_t take = avail < len - got ? avail : (size_t)(len - got);
        memcpy(buf + got, inbuf + in_pos, take);
        in_pos += take;
        got += take;
    }
    buf[len] = 0;
    return buf;
}

static uint64_t parse_u64(const char *s, const char *what) {
    if (!*s) fatal("protocol: empty number for %s", what);
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') fatal("protocol: bad number for %s", what);
        if (v > (UINT64_MAX - 9) / 10) fatal("protocol: number too large for %s", what);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

/* ---------- time and cgroup accounting ---------- */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return 0;
}

/* Finds "key N" in a "key value" per line file. */
static int keyed_value(const char *path, const char *key, uint64_t *out) {
    char buf[4096];
    if (read_small_file(path, buf, sizeof buf) < 0) return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            *out = strtoull(line + klen + 1, NULL, 10);
            return 0;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    return -1;
}

static int single_value(const char *path, uint64_t *out) {
    char buf[64];
    if (read_small_file(path, buf, sizeof buf) < 0) return -1;
    if (buf[0] < '0' || buf[0] > '9') return -1;
    *out = strtoull(buf, NULL, 10);
    return 0;
}

/* The container's cgroup as seen from inside: Docker mounts it at
 * /sys/fs/cgroup (v2, private cgroup namespace) or per controller (v1). */
static int cg_v2;

static void cg_detect(void) {
    cg_v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
}

/* Total CPU time of every process the container ever ran, in ns. */
static int cg_cpu_ns(uint64_t *ns) {
    if (cg_v2) {
        uint64_t us;
        if (keyed_value("/sys/fs/cgroup/cpu.stat", "usage_usec", &us) < 0) return -1;
        *ns = us * 1000;
        return 0;
    }
    return single_value("/sys/fs/cgroup/cpuacct/cpuacct.usage", ns);
}

static int cg_mem_peak(uint64_t *bytes) {
    if (cg_v2) return single_value("/sys/fs/cgroup/memory.peak", bytes);
    return single_value("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", bytes);
}

static int cg_oom_kills(uint64_t *n) {
    if (cg_v2) return keyed_value("/sys/fs/cgroup/memory.events", "oom_kill", n);
    return keyed_value("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill", n);
}

/* The OOM-kill counter when we started (a fresh container: usually 0). */
static uint64_t oom_base;
static int have_oom_base;

static int oom_since_start(uint64_t *kills) {
    uint64_t n;
    if (!have_oom_base || cg_oom_kills(&n) < 0 || n <= oom_base) return 0;
    *kills = n - oom_base;
    return 1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    if (ftw->level > 0) remove(path);
    return 0;
}

/* The program never ran: the kernel killed a process (tar extracting a
 * compile stage's /work) because the files did not fit in the container's
 * memory. /work is emptied first, so the report itself has memory to run in. */
__attribute__((noreturn)) static void report_memory_before_run(uint64_t kills) {
    nftw("/work", remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    uint64_t mem = 0;
    if (cg_mem_peak(&mem) < 0) mem = 0;
    char res[512];
    int n = snprintf(res, sizeof res,
                     "exit_code=-1\nsignal=%d\nlimit=none\nwall_ms=0\ncpu_ms=0\nmemory_peak_bytes=%llu\n"
                     "memory_source=cgroup\noom_kills=%llu\nstdout_truncated=0\nstderr_truncated=0\n"
                     "collected=0\ncollect_error=\n",
                     SIGKILL, (unsigned long long)mem, (unsigned long long)kills);
    if (n > 0 && (size_t)n < sizeof res) frame('r', res, (size_t)n);
    _exit(0);
}

/* ---------- process control ---------- */

/* SIGCHLD wakes the main loop through this pipe: the result goes out as soon
 * as the program exits, not on the next poll tick. (A handler, not a
 * signalfd: as PID 1 of a namespace, a signal with the default disposition
 * is discarded before it could be read.) */
static int chld_pipe[2] = {-1, -1};

static void on_sigchld(int sig) {
    (void)sig;
    int saved = errno;
    if (write(chld_pipe[1], "c", 1) < 0) {}
    errno = saved;
}

/* As PID 1, kill(-1) reaches every other process of the sandbox. A fork bomb
 * may create processes while we kill; repeat until nothing is left to reap
 * (all orphans are re-parented to us, so ECHILD means the sandbox is empty). */
static void killall_and_reap(void) {
    for (;;) {
        kill(-1, SIGKILL);
        pid_t p = waitpid(-1, NULL, 0);
        if (p < 0 && errno == ECHILD) return;
    }
}

static void set_limit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
    if (setrlimit(resource, &rl) < 0) {
        /* We can only lower limits; a limit already below ours stays. */
        struct rlimit cur;
        if (getrlimit(resource, &cur) == 0 && cur.rlim_max < hard) return;
        _exit(126);
    }
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---------- the job ---------- */

struct job {
    char *argv[MAX_ARGS + 1];
    int argc;
    char *envp[MAX_ARGS + 1];
    int envc;
    char *cwd;
    uint64_t wall_ms, cpu_ms, stdout_max, stderr_max, fsize_max, nofile, collect_max;
    int stdin_fd;
};

static void extract_tar(uint64_t len) {
    int data[2], errp[2];
    if (pipe2(data, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) fatal("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fatal("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(data[0], 0);
        dup2(errp[1], 2);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execl("/bin/tar", "tar", "-x", "-f", "-", "-C", "/work", "--no-same-owner", (char *)NULL);
        _exit(127);
    }
    close(data[0]);
    close(errp[1]);
    /* tar reads as we write; its stderr stays small (pipe buffer) and is read
     * after it exits. If tar dies (killed for memory), the rest is
     * discarded and the failure reported below. */
    int werr = read_to_fd(len, data[1]);
    close(data[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char msg[512] = {0};
    ssize_t n = read(errp[0], msg, sizeof msg - 1);
    if (n < 0) n = 0;
    msg[n] = 0;
    close(errp[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fatal("extracting files into /work failed (tar status %d): %s", status, msg);
    if (werr) fatal("extracting files into /work failed: %s", strerror(werr));
}

/* Reads exactly len bytes of input into buf. */
static void read_exact(unsigned char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        if (!in_fill()) fatal("protocol: input ended inside a field");
        size_t avail = in_len - in_pos;
        size_t take = avail < len - got ? avail : len - got;
        memcpy(buf + got, inbuf + in_pos, take);
        in_pos += take;
        got += take;
    }
}

static uint64_t octal(const unsigned char *f, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && f[i]; i++) {
        if (f[i] == ' ') continue;
        if (f[i] < '0' || f[i] > '7') fatal("files: bad number in a tar header");
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    return v;
}

/* The submission's files: a tar archive (ustar, with GNU long names) of
 * plain files only, as the runner builds it. Written here, without exec'ing
 * tar: on overlay filesystems starting a binary costs more than the whole
 * extraction. Names are plain (no '/', not '.' or '..'), and files are
 * created fresh (O_EXCL, O_NOFOLLOW) in /work. Anything else is refused. */
static void extract_files(uint64_t len) {
    int dir = open("/work", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) fatal("open /work: %s", strerror(errno));
    /* The name, the NUL the archive carries after it, and ours. */
    char longname[NAME_MAX_BYTES + 2];
    int have_long = 0;
    unsigned char h[512];
    while (len >= 512) {
        read_exact(h, 512);
        len -= 512;
        int zero = 1;
        for (int i = 0; i < 512; i++) if (h[i]) { zero = 0; break; }
        if (zero) continue;
        uint64_t size = octal(h + 124, 12);
        uint64_t padded = (size + 511) / 512 * 512;
        if (padded > len) fatal("files: entry larger than the archive");
        char type = (char)h[156];
        if (type == 'L') {
            if (size > NAME_MAX_BYTES + 1) fatal("files: name longer than %d bytes", NAME_MAX_BYTES);
            read_exact((unsigned char *)longname, (size_t)size);
            longname[size] = 0;
            read_to_fd(padded - size, -1);
            len -= padded;
            have_long = 1;
            continue;
        }
        if (type != '0' && type != 0) fatal("files: entry type '%c' is not a plain file", type);
        char name[NAME_MAX_BYTES + 1];
        if (have_long) {
            size_t n = strlen(longname);
            if (n > NAME_MAX_BYTES) fatal("files: name longer than %d bytes", NAME_MAX_BYTES);
            memcpy(name, longname, n + 1);
            have_long = 0;
        } else {
            memcpy(name, h, 100);
            name[100] = 0;
        }
        if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            fatal("files: refusing entry name '%.60s'", name);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) fatal("files: cannot create %s: %s", name, strerror(errno));
        int werr = read_to_fd(size, fd);
        close(fd);
        if (werr) fatal("files: writing %s: %s", name, strerror(werr));
        read_to_fd(padded - size, -1);
        len -= padded;
    }
    read_to_fd(len, -1);
    close(dir);
}

/* A "file" field: "/tmp/<name>" NUL content. Only directly under /tmp, never
 * through a symlink or into a FIFO an earlier step planted there: the file
 * is opened without following links and without blocking, and must be a
 * regular file. */
static void write_step_file(uint64_t len) {
    char *buf = read_bytes(len);
    char *nul = memchr(buf, 0, (size_t)len);
    if (!nul) fatal("protocol: file field without a name");
    const char *name = buf + strlen("/tmp/");
    if (strncmp(buf, "/tmp/", 5) != 0 || !*name || strchr(name, '/') || strcmp(name, "..") == 0 ||
        strcmp(name, ".") == 0 || strlen(name) > NAME_MAX_BYTES)
        fatal("protocol: file '%.60s' is not a name directly under /tmp", buf);
    int fd = open(buf, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0700);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || ftruncate(fd, 0) < 0)
        fatal("cannot write %s: %s", buf, fd < 0 ? strerror(errno) : "not a regular file");
    size_t content = (size_t)len - (size_t)(nul + 1 - buf);
    if (write_fd(fd, nul + 1, content) < 0) fatal("writing %s: %s", buf, strerror(errno));
    fchmod(fd, 0700);
    close(fd);
    free(buf);
}

static void read_job(struct job *j) {
    char line[128];
    read_line(line, sizeof line);
    if (strcmp(line, PROTOCOL_LINE) != 0) fatal("protocol: expected '%s', got '%.40s'", PROTOCOL_LINE, line);
    for (;;) {
        read_line(line, sizeof line);
        char *sp = strchr(line, ' ');
        if (!sp) fatal("protocol: bad field header '%.40s'", line);
        *sp = 0;
        const char *name = line;
        uint64_t len = parse_u64(sp + 1, name);
        if (strcmp(name, "run") == 0) return;
        if (strcmp(name, "tar") == 0) {
            extract_tar(len);
            continue;
        }
        if (strcmp(name, "files") == 0) {
            extract_files(len);
            continue;
        }
        if (strcmp(name, "file") == 0) {
            write_step_file(len);
            continue;
        }
        if (strcmp(name, "stdin") == 0) {
            int fd = memfd_create("stdin", MFD_CLOEXEC);
            if (fd < 0) fatal("memfd_create: %s", strerror(errno));
            int werr = read_to_fd(len, fd);
            if (werr) fatal("stdin: %s", strerror(werr));
            lseek(fd, 0, SEEK_SET);
            j->stdin_fd = fd;
            continue;
        }
        char *val = read_bytes(len);
        if (strlen(val) != len) fatal("protocol: NUL byte in field %s", name);
        if (strcmp(name, "arg") == 0) {
            if (j->argc >= MAX_ARGS) fatal("protocol: too many arguments");
            j->argv[j->argc++] = val;
        } else if (strcmp(name, "env") == 0) {
            if (j->envc >= MAX_ARGS) fatal("protocol: too many environment entries");
            j->envp[j->envc++] = val;
        } else if (strcmp(name, "cwd") == 0) {
            j->cwd = val;
        } else {
            uint64_t v = parse_u64(val, name);
            free(val);
            if (strcmp(name, "wall_ms") == 0) j->wall_ms = v;
            else if (strcmp(name, "cpu_ms") == 0) j->cpu_ms = v;
            else if (strcmp(name, "stdout_max") == 0) j->stdout_max = v;
            else if (strcmp(name, "stderr_max") == 0) j->stderr_max = v;
            else if (strcmp(name, "fsize_max") == 0) j->fsize_max = v;
            else if (strcmp(name, "nofile") == 0) j->nofile = v;
            else if (strcmp(name, "collect_max") == 0) j->collect_max = v;
            else fatal("protocol: unknown field '%.40s'", name);
        }
    }
}

struct stream {
    int fd;
    char type;
    uint64_t max, sent;
    int truncated;
};

/* Forwards what is readable; returns 1 when the stream went over its cap. */
static int pump(struct stream *s) {
    static char buf[CHUNK];
    for (;;) {
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            n = 0;
        }
        if (n == 0) {
            close(s->fd);
            s->fd = -1;
            return 0;
        }
        uint64_t room = s->max - s->sent;
        uint64_t take = (uint64_t)n < room ? (uint64_t)n : room;
        if (take) frame(s->type, buf, (size_t)take);
        s->sent += take;
        if ((uint64_t)n > take) {
            s->truncated = 1;
            return 1;
        }
    }
}

/* Streams /work as a tar archive in 'a' frames; returns 0, or -1 when the
 * archive was over collect_max or tar failed. */
static int collect_work(uint64_t collect_max, char *why, size_t why_cap) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) fatal("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fatal("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(out[1], 1);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 2);
        }
        /* --sparse: a sparse file planted by the submission is archived by its
         * data, not its apparent size. */
        execl("/bin/tar", "tar", "-c", "-f", "-", "--sparse", "-C", "/work", ".", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    set_nonblock(out[0]);
    struct stream s = {.fd = out[0], .type = 'a', .max = collect_max};
    uint64_t deadline = now_ms() + COLLECT_WALL_MS;
    int over = 0;
    while (s.fd >= 0) {
        struct pollfd p = {.fd = s.fd, .events = POLLIN};
        int64_t left = (int64_t)(deadline - now_ms());
        if (left <= 0) {
            snprintf(why, why_cap, "archiving /work took longer than %d ms", COLLECT_WALL_MS);
            over = 1;
            break;
        }
        poll(&p, 1, (int)left);
        if (pump(&s)) {
            snprintf(why, why_cap, "files in /work exceed %llu bytes", (unsigned long long)collect_max);
            over = 1;
            break;
        }
    }
    if (s.fd >= 0) close(s.fd);
    int status = 0;
    if (over) {
        killall_and_reap();
        return -1;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, why_cap, "archiving /work failed (tar status %d)", status);
        return -1;
    }
    return 0;
}

static void free_job(struct job *j);
static void run_job(struct job *j);

int main(void) {
    /* Closes /proc/1/fd, /proc/1/mem and ptrace to the submission (same uid). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    cg_detect();
    if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) fatal("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);

    static struct job j;
    for (;;) {
        free_job(&j);
        j = (struct job){.cwd = NULL, .wall_ms = 3000, .cpu_ms = 3000, .stdout_max = 65536,
                         .stderr_max = 65536, .fsize_max = 64 << 20, .nofile = 256, .stdin_fd = -1};
        /* OOM kills are counted from here, per job (before its files land). */
        have_oom_base = cg_oom_kills(&oom_base) == 0;
        read_job(&j);
        run_job(&j);
    }
}

/* Frees what a job's fields allocated (argv, env, cwd). */
static void free_job(struct job *j) {
    for (int i = 0; i < j->argc; i++) free(j->argv[i]);
    for (int i = 0; i < j->envc; i++) free(j->envp[i]);
    free(j->cwd);
    j->argc = j->envc = 0;
    j->cwd = NULL;
}

/* Runs one job to its result frame. */
static void run_job(struct job *jp) {
    struct job j = *jp;
    if (!j.cwd) j.cwd = "/work";
    if (j.argc == 0) fatal("protocol: no command");
    j.argv[j.argc] = NULL;
    j.envp[j.envc] = NULL;

    int out[2], err[2], st[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0)
        fatal("pipe: %s", strerror(errno));

    uint64_t cpu0 = 0;
    int have_cpu = cg_cpu_ns(&cpu0) == 0;
    struct rusage ru0;
    getrusage(RUSAGE_CHILDREN, &ru0);
    uint64_t t0 = now_ms();

    pid_t child = fork();
    if (child < 0) fatal("fork: %s", strerror(errno));
    if (child == 0) {
        setsid();
        /* Make the submission, not us, the OOM killer's first choice. It
         * can lower its score again, but not below ours: an unprivileged
         * process may go down to its floor (oom_score_adj_min, 0 unless a
         * privileged writer set another; the engine sets none), and we stay
         * at 0. At equal scores the killer takes the larger process, the
         * submission all but always. Should it take us anyway, the container
         * ends without a report and the runner reads the engine's OOM state:
         * the verdict is still the memory limit. Non-dumpable (inherited
         * from us), our /proc entries belong to root and the write would
         * fail: the program is dumpable after exec anyway. */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1000", 4) < 0) {}
            close(fd);
        }
        /* The kernel's per-process backstop; the precise, whole-sandbox
         * CPU limit is our cgroup polling below. */
        uint64_t cpu_s = (j.cpu_ms + 999) / 1000 + 1;
        set_limit(RLIMIT_CPU, cpu_s, cpu_s + 1);
        set_limit(RLIMIT_CORE, 0, 0);
        set_limit(RLIMIT_FSIZE, j.fsize_max, j.fsize_max);
        set_limit(RLIMIT_NOFILE, j.nofile, j.nofile);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        int in = j.stdin_fd >= 0 ? j.stdin_fd : open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (chdir(j.cwd) < 0) {
            int e = errno;
            if (write(st[1], &e, sizeof e) < 0) {}
            _exit(127);
        }
        environ = j.envp;
        execvp(j.argv[0], j.argv);
        int e = errno;
        if (write(st[1], &e, sizeof e) < 0) {}
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    close(st[1]);
    if (j.stdin_fd >= 0) close(j.stdin_fd);
    int exec_errno = 0;
    ssize_t got;
    while ((got = read(st[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {}
    close(st[0]);
    if (got == (ssize_t)sizeof exec_errno)
        fatal("cannot start %s: %s", j.argv[0], strerror(exec_errno));

    set_nonblock(out[0]);
    set_nonblock(err[0]);
    char drain[64];
    struct stream so = {.fd = out[0], .type = 'o', .max = j.stdout_max};
    struct stream se = {.fd = err[0], .type = 'e', .max = j.stderr_max};
    const char *limit = "none";
    int status = 0, main_done = 0, killed = 0;
    uint64_t t_end = 0;

    while (!main_done || so.fd >= 0 || se.fd >= 0) {
        struct pollfd p[3];
        int np = 0;
        p[np++] = (struct pollfd){.fd = chld_pipe[0], .events = POLLIN};
        if (so.fd >= 0) p[np++] = (struct pollfd){.fd = so.fd, .events = POLLIN};
        if (se.fd >= 0) p[np++] = (struct pollfd){.fd = se.fd, .events = POLLIN};
        poll(p, (nfds_t)np, POLL_MS);
        while (read(chld_pipe[0], drain, sizeof drain) > 0) {}

        int over = 0;
        if (so.fd >= 0 && pump(&so)) over = 1;
        if (se.fd >= 0 && pump(&se)) over = 1;
        if (over && !killed) {
            limit = "output";
            killed = 1;
            kill(-1, SIGKILL);
        }
        for (;;) {
            int s;
            pid_t p2 = waitpid(-1, &s, WNOHANG);
            if (p2 <= 0) break;
            if (p2 == child) {
                status = s;
                main_done = 1;
                t_end = now_ms();
                /* The job ends with its main process: nothing may outlive it. */
                killed = 1;
                kill(-1, SIGKILL);
            }
        }
        if (main_done) {
            if (killed) kill(-1, SIGKILL);
            continue;
        }
        uint64_t t = now_ms();
        if (t - t0 >= j.wall_ms && !killed) {
            limit = "wall";
            killed = 1;
            kill(-1, SIGKILL);
        }
        uint64_t cpu;
        if (have_cpu && !killed && cg_cpu_ns(&cpu) == 0 && cpu - cpu0 >= j.cpu_ms * 1000000ULL) {
            limit = "cpu";
            killed = 1;
            kill(-1, SIGKILL);
        }
        if (killed) kill(-1, SIGKILL);
    }
    killall_and_reap();

    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    uint64_t cpu_ms;
    uint64_t cpu1;
    if (have_cpu && cg_cpu_ns(&cpu1) == 0) {
        cpu_ms = (cpu1 - cpu0) / 1000000;
    } else {
        uint64_t us = (uint64_t)(ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000 +
                      (uint64_t)(ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
        cpu_ms = us / 1000;
    }
    /* The kernel's own RLIMIT_CPU backstop fired. */
    if (strcmp(limit, "none") == 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) limit = "cpu";
    uint64_t mem = 0;
    const char *mem_source = "cgroup";
    if (cg_mem_peak(&mem) < 0) {
        mem = (uint64_t)ru.ru_maxrss * 1024;
        mem_source = "rusage";
    }
    uint64_t oom1 = 0;
    int oom_known = have_oom_base && cg_oom_kills(&oom1) == 0;

    char collect_err[256] = {0};
    int collected = 0;
    int succeeded = strcmp(limit, "none") == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (j.collect_max > 0 && succeeded && !(oom_known && oom1 > oom_base))
        collected = collect_work(j.collect_max, collect_err, sizeof collect_err) == 0;

    char res[1024];
    int n = snprintf(res, sizeof res,
                     "exit_code=%d\nsignal=%d\nlimit=%s\nwall_ms=%llu\ncpu_ms=%llu\n"
                     "memory_peak_bytes=%llu\nmemory_source=%s\noom_kills=%lld\n"
                     "stdout_truncated=%d\nstderr_truncated=%d\ncollected=%d\ncollect_error=%s\n",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                     limit, (unsigned long long)(t_end - t0), (unsigned long long)cpu_ms, (unsigned long long)mem,
                     mem_source, oom_known ? (long long)(oom1 - oom_base) : -1LL, so.truncated, se.truncated, collected,
                     collect_err);
    if (n < 0 || (size_t)n >= sizeof res) fatal("result too long");
    frame('r', res, (size_t)n);
}
