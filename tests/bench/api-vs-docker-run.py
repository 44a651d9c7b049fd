#!/usr/bin/env python3
"""Hello world through the HTTP API (warm pool on) against `docker run --rm`
of the same image, program and limits, interleaved in one invocation.

For Python, C (compile and run) and Java, at concurrency 1 and 2 x CPUs:
p50/p95/p99 end-to-end latency and throughput of each, and their ratios.
Also the server's peak RSS (containers excluded) and the number of sandbox
containers before and after (they must be equal).

    tests/bench/api-vs-docker-run.py [--rounds 4] [--per-round 6] [--languages python,c,java]

The baseline runs the whole job in one container: for compiled languages
`sh -c 'cat > SRC && compile && run'` with the source on stdin, under the
compile stage's memory limit (the API uses two containers: compile, then run).
"""
import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, RUNNER, Server, build, image_of, managed_containers, percentile  # noqa: E402

PROGRAMS = {
    "python": ("main.py", 'print("Hello, world!")\n', 'python3 /work/main.py', 128),
    "c": ("main.c", '#include <stdio.h>\nint main(void){puts("Hello, world!");return 0;}\n',
          'gcc -std=gnu17 -O2 -pipe -o /work/a.out /work/main.c -lm && /work/a.out', 512),
    "java": ("Main.java", 'public class Main { public static void main(String[] a) { System.out.println("Hello, world!"); } }\n',
             'javac -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -J-XX:-UsePerfData -d /work /work/Main.java && '
             'java -XX:+UseSerialGC -XX:-UsePerfData -Xshare:auto -cp /work Main', 512),
}


def docker_cmd(language):
    name, _, command, memory = PROGRAMS[language]
    return ["docker", "run", "-i", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--security-opt", f"seccomp={os.path.join(ROOT, 'policies/seccomp/sandbox.json')}",
            "--user", "10001:10001", "--memory", f"{memory}m", "--memory-swap", f"{memory}m", "--cpus", "1",
            "--pids-limit", "128", "--tmpfs", "/work:rw,exec,nosuid,nodev,size=64m,uid=10001,gid=10001,mode=0700",
            "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m", "--shm-size", "8m", "--log-driver", "none",
            "-w", "/work", "--entrypoint", "sh", image_of(language), "-c", f"cat > /work/{name} && {command}"]


def timed_batch(fn, count, concurrency):
    """Runs fn() `count` times on `concurrency` threads; returns (latencies, wall)."""
    latencies, lock, left = [], threading.Lock(), [count]

    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            t = time.monotonic()
            fn()
            with lock:
                latencies.append(time.monotonic() - t)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved API/docker rounds per case")
    ap.add_argument("--per-round", type=int, default=6, help="jobs per round and side (times concurrency)")
    ap.add_argument("--languages", default="python,c,java")
    ap.add_argument("--pool", default="python = 8, \"c\" = 4, java = 4", help="pool sizes, TOML inline table body")
    args = ap.parse_args()
    languages = args.languages.split(",")
    cpus = os.cpu_count() or 2
    build(languages)
    # Orphans of earlier crashed runs would skew the before/after count.
    subprocess.run([RUNNER, "gc"], check=True, stdout=subprocess.DEVNULL)
    before = managed_containers()
    server = Server(f"global_concurrency = {cpus * 2}\ntenant_concurrency = {cpus * 2}\n"
                    f"[pool]\ndefault_size = 0\nsizes = {{ {args.pool} }}\n")
    server.wait_pool_full()

    rows = []
    for language in languages:
        name, content, _, _ = PROGRAMS[language]
        body = {"language": language, "files": [{"name": name, "content": content}]}
        cmd = docker_cmd(language)

        def via_api():
            code, r, _ = server.request("POST", "/v1/runs?wait=true", body)
            if code != 200 or r["result"]["status"] != "ok" or "Hello, world!" not in r["result"]["run"]["stdout"]:
                raise SystemExit(f"API run failed: {code} {r}")

        def via_docker():
            out = subprocess.run(cmd, input=content, capture_output=True, text=True)
            if out.returncode != 0 or "Hello, world!" not in out.stdout:
                raise SystemExit(f"docker run failed: {out.returncode} {out.stderr[:500]}")

        via_api()
        via_docker()
        for concurrency in (1, cpus * 2):
            api_lat, api_wall, dk_lat, dk_wall = [], 0.0, [], 0.0
            n = args.per_round * concurrency
            for _ in range(args.rounds):
                server.wait_pool_full(timeout=60)
                lat, wall = timed_batch(via_api, n, concurrency)
                api_lat += lat
                api_wall += wall
                lat, wall = timed_batch(via_docker, n, concurrency)
                dk_lat += lat
                dk_wall += wall
            rows.append((language, concurrency, api_lat, len(api_lat) / api_wall, dk_lat, len(dk_lat) / dk_wall))

    rss = server.max_rss_kib
    server.stop()
    time.sleep(0.5)
    after = managed_containers()

    ms = lambda v: f"{v * 1000:.0f}"
    print(f"{'language':<8} {'conc':>4} | {'API p50/p95/p99 ms':>20} {'API /s':>7} | {'docker p50/p95/p99 ms':>22} {'docker /s':>9} | {'p50 ratio':>9} {'tput ratio':>10}")
    for language, c, al, at, dl, dt in rows:
        api = "/".join(ms(percentile(al, p)) for p in (50, 95, 99))
        dk = "/".join(ms(percentile(dl, p)) for p in (50, 95, 99))
        print(f"{language:<8} {c:>4} | {api:>20} {at:>7.2f} | {dk:>22} {dt:>9.2f} | {percentile(al, 50) / percentile(dl, 50):>9.2f} {at / dt:>10.2f}")
    serial = {lang: dt for lang, c, _, _, _, dt in rows if c == 1}
    for lang, c, _, at, _, _ in rows:
        if c > 1:
            print(f"{lang}: throughput at concurrency {c} = {at / serial[lang]:.2f} x serial docker run")
    print(f"server peak RSS: {rss / 1024:.1f} MiB (containers excluded)")
    print(f"sandbox containers before / after: {before} / {after}")
    sys.exit(0 if before == after else 1)


if __name__ == "__main__":
    main()
