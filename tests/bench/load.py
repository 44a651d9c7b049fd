#!/usr/bin/env python3
"""Load test of `runner serve` over HTTP (Python standard library only).

N concurrent clients submit hello-world runs (POST /v1/runs?wait=true) for a
fixed duration. Reports throughput and p50/p99 submit-to-verdict latency, then
checks that every accepted run reached a final state exactly once (none lost,
none duplicated) and that no sandbox container is left afterwards.

    tests/bench/load.py [--clients 4] [--seconds 30] [--language python]

It builds the release binary, makes a fresh database, tenant and key, and
starts its own server on a free port; it stops it at the end.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "target", "release", "runner")
PROGRAMS = {
    "python": ("main.py", 'print("Hello, world!")'),
    "c": ("main.c", '#include <stdio.h>\nint main(void){puts("Hello, world!");return 0;}\n'),
    "java": ("Main.java", 'public class Main { public static void main(String[] a) { System.out.println("Hello, world!"); } }'),
}


def managed_containers():
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=io.runner.managed=true"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def request(addr, method, path, key, body=None, timeout=300):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--language", default="python", choices=sorted(PROGRAMS))
    ap.add_argument("--config", default="", help="extra TOML lines for the server configuration")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "runner"], cwd=ROOT, check=True)
    subprocess.run([RUNNER, "images", "build", "-l", args.language], check=True, stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="runner-load-")
    db = os.path.join(work, "runner.db")
    subprocess.run([RUNNER, "admin", "tenant", "create", "load", "--database", db], check=True, capture_output=True)
    key = subprocess.run([RUNNER, "admin", "key", "create", "--tenant", "load", "--role", "developer", "--database", db],
                         check=True, capture_output=True, text=True).stdout.strip()
    cfg = os.path.join(work, "runner.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:0"\ndatabase = "{db}"\nwait_timeout_ms = 300000\n'
                f'[rate_limit]\nper_key = 1000000\nper_ip = 1000000\n{args.config}\n')
    before = managed_containers()
    server = subprocess.Popen([RUNNER, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True)
    addr = None
    for line in server.stdout:
        entry = json.loads(line)
        if entry.get("fields", {}).get("message") == "listening":
            addr = entry["fields"]["addr"]
            break
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    rss = {"max_kib": 0}

    def sample_rss():
        while server.poll() is None:
            try:
                with open(f"/proc/{server.pid}/status") as f:
                    for l in f:
                        if l.startswith("VmRSS:"):
                            rss["max_kib"] = max(rss["max_kib"], int(l.split()[1]))
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=sample_rss, daemon=True).start()

    name, content = PROGRAMS[args.language]
    body = {"language": args.language, "files": [{"name": name, "content": content}]}
    lock = threading.Lock()
    accepted, latencies, refused, errors, statuses = [], [], 0, [], {}
    stop_at = time.monotonic() + args.seconds

    def client():
        nonlocal refused
        while time.monotonic() < stop_at:
            t = time.monotonic()
            code, resp, headers = request(addr, "POST", "/v1/runs?wait=true", key, body)
            elapsed = time.monotonic() - t
            with lock:
                if code in (200, 202):
                    accepted.append(resp["id"])
                    if code == 200:
                        latencies.append(elapsed)
                        st = resp["result"]["status"]
                        statuses[st] = statuses.get(st, 0) + 1
                elif code == 429:
                    refused += 1
                else:
                    errors.append((code, resp))
            if code == 429:
                time.sleep(float(headers.get("Retry-After", "1")))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started

    # Every accepted run must reach a final state, once.
    deadline = time.monotonic() + 300
    pending = set(accepted)
    while pending and time.monotonic() < deadline:
        for rid in list(pending):
            code, r, _ = request(addr, "GET", f"/v1/runs/{rid}", key)
            if code == 200 and r["state"] in ("finished", "cancelled"):
                pending.discard(rid)
        time.sleep(0.2)
    listed, cursor = [], ""
    while True:
        code, page, _ = request(addr, "GET", f"/v1/runs?limit=100&cursor={cursor}", key)
        listed += page["runs"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = [r["id"] for r in listed]
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    time.sleep(0.5)
    after = managed_containers()
    shutil.rmtree(work, ignore_errors=True)

    ok = True
    print(f"language {args.language}, {args.clients} clients, {args.seconds:.0f} s")
    print(f"accepted runs:        {len(accepted)}  (refused with 429: {refused}, other errors: {len(errors)})")
    print(f"throughput:           {len(latencies) / wall:.2f} verdicts/s")
    print(f"latency p50 / p99:    {percentile(latencies, 50) * 1000:.0f} ms / {percentile(latencies, 99) * 1000:.0f} ms (submit to verdict)")
    print(f"verdicts:             {statuses}")
    print(f"server peak RSS:      {rss['max_kib'] / 1024:.1f} MiB")
    lost = set(accepted) - set(ids)
    dup = len(ids) - len(set(ids))
    not_final = [r["id"] for r in listed if r["state"] not in ("finished", "cancelled")]
    print(f"lost / duplicated / not final: {len(lost)} / {dup} / {len(not_final) + len(pending)}")
    print(f"sandbox containers before / after: {before} / {after}")
    if lost or dup or not_final or pending or errors or after != before or len(ids) != len(accepted):
        ok = False
        print("FAILED", errors[:3], file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
