#!/usr/bin/env python3
"""Hello-world runs through 1, 2 and 3 `runner serve` instances sharing one
PostgreSQL database, against 1 instance on SQLite (the baseline), in one
invocation on one machine: throughput and p50/p99 end-to-end latency
(`POST /v1/runs?wait=true`), and the ratios to the baseline.

    tests/bench/scale-out.py [--runs 60] [--clients 6] [--concurrency 2]

Every instance has the same `global_concurrency` (`--concurrency`) and no
warm pool; clients spread their requests over the instances in turn. The
PostgreSQL server is the benchmark's own (initdb in a temporary directory,
loopback port; as root its commands run as the `postgres` user). Instances
on one machine share its cores: scale-out here measures the queue's
overhead and contention, not the capacity more machines would add.
"""
import argparse
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RUNNER, build, managed_containers, percentile  # noqa: E402

HELLO = {"language": "python", "files": [{"name": "main.py", "content": 'print("Hello, world!")\n'}]}
SECRETS_KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = bins[-1] if bins else shutil.which("initdb")
        if not initdb:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = os.path.dirname(initdb)
        self.dir = tempfile.mkdtemp(prefix="runner-bench-pg-")
        self.prefix = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        self.port = free_port()
        data = os.path.join(self.dir, "data")
        self.run("initdb", "--auth=trust", "--username=runner", "--no-sync", "-E", "UTF8", "-D", data)
        self.run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "-o",
                 f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200", "start")
        self.data = data

    def run(self, tool, *args):
        subprocess.run(self.prefix + [os.path.join(self.bin, tool), *args], check=True, capture_output=True)

    def fresh_db(self, name):
        self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "runner", "-d", "postgres",
                 "-c", f"CREATE DATABASE {name}")
        return f"postgres://runner@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def key_for(database):
    subprocess.run([RUNNER, "admin", "tenant", "create", "bench", "--database", database], check=True,
                   capture_output=True)
    return subprocess.run([RUNNER, "admin", "key", "create", "--tenant", "bench", "--role", "developer",
                           "--database", database], check=True, capture_output=True, text=True).stdout.strip()


class Instance:
    def __init__(self, database, concurrency, work):
        cfg = os.path.join(work, f"runner-{len(os.listdir(work))}.toml")
        with open(cfg, "w") as f:
            f.write(f'listen = "127.0.0.1:0"\ndatabase = "{database}"\nwait_timeout_ms = 300000\n'
                    f'queue_capacity = 100000\nglobal_concurrency = {concurrency}\ntenant_concurrency = 1000\n'
                    f'[rate_limit]\nper_key = 1000000\nper_ip = 1000000\n[pool]\ndefault_size = 0\n'
                    f'[workflows]\ncache_dir = "{work}/git-cache"\nsecrets_key_file = "{work}/key"\n')
        env = dict(os.environ, RUNNER_SECRETS_KEY=SECRETS_KEY)
        self.proc = subprocess.Popen([RUNNER, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True,
                                     cwd=work, env=env)
        self.addr = None
        for line in self.proc.stdout:
            entry = json.loads(line)
            if entry.get("fields", {}).get("message") == "listening":
                self.addr = entry["fields"]["addr"]
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)


def submit(addr, key):
    req = urllib.request.Request(f"http://{addr}/v1/runs?wait=true", data=json.dumps(HELLO).encode(),
                                 method="POST")
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = {"http": e.code}
    return time.monotonic() - t, body.get("result", {}).get("status")


def scenario(label, database, instances, args, work):
    key = key_for(database)
    servers = [Instance(database, args.concurrency, work) for _ in range(instances)]
    latencies, statuses, lock, left = [], {}, threading.Lock(), [args.runs]

    def client(n):
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
                i = left[0]
            dt, status = submit(servers[(i + n) % len(servers)].addr, key)
            with lock:
                latencies.append(dt)
                statuses[status] = statuses.get(status, 0) + 1

    submit(servers[0].addr, key)  # first run: image and caches warm
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    for s in servers:
        s.stop()
    return {"label": label, "throughput": len(latencies) / wall, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "statuses": statuses}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=2, help="global_concurrency of each instance")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        build(["python"])
    before = managed_containers()
    work = tempfile.mkdtemp(prefix="runner-bench-scale-")
    pg = Postgres()
    results = []
    try:
        results.append(scenario("sqlite x1", os.path.join(work, "runner.db"), 1, args, work))
        for n in (1, 2, 3):
            results.append(scenario(f"postgres x{n}", pg.fresh_db(f"bench{n}"), n, args, work))
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = results[0]
    print(f"{args.runs} hello-world runs (python), {args.clients} clients, global_concurrency "
          f"{args.concurrency} per instance, cores {os.cpu_count()}")
    print(f"{'store':<14}{'runs/s':>9}{'p50 s':>9}{'p99 s':>9}{'x tput':>9}{'x p50':>8}{'x p99':>8}  statuses")
    for r in results:
        print(f"{r['label']:<14}{r['throughput']:>9.2f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
              f"{r['throughput'] / base['throughput']:>9.2f}{r['p50'] / base['p50']:>8.2f}"
              f"{r['p99'] / base['p99']:>8.2f}  {r['statuses']}")
    after = managed_containers()
    print(f"sandbox containers before {before}, after {after}")
    if after != before or any(set(r["statuses"]) != {"ok"} for r in results):
        raise SystemExit("containers were left behind, or runs did not all succeed")


if __name__ == "__main__":
    main()
