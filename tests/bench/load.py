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
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RUNNER, Server, build, managed_containers, percentile  # noqa: E402

PROGRAMS = {
    "python": ("main.py", 'print("Hello, world!")'),
    "c": ("main.c", '#include <stdio.h>\nint main(void){puts("Hello, world!");return 0;}\n'),
    "java": ("Main.java", 'public class Main { public static void main(String[] a) { System.out.println("Hello, world!"); } }'),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--language", default="python", choices=sorted(PROGRAMS))
    ap.add_argument("--config", default="", help="extra TOML lines for the server configuration")
    args = ap.parse_args()

    build([args.language])
    # Orphans of earlier crashed runs would skew the before/after count.
    subprocess.run([RUNNER, "gc"], check=True, stdout=subprocess.DEVNULL)
    before = managed_containers()
    server = Server(args.config)

    name, content = PROGRAMS[args.language]
    body = {"language": args.language, "files": [{"name": name, "content": content}]}
    lock = threading.Lock()
    accepted, latencies, refused, errors, statuses = [], [], 0, [], {}
    stop_at = time.monotonic() + args.seconds

    def client():
        nonlocal refused
        while time.monotonic() < stop_at:
            t = time.monotonic()
            code, resp, headers = server.request("POST", "/v1/runs?wait=true", body)
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
            code, r, _ = server.request("GET", f"/v1/runs/{rid}")
            if code == 200 and r["state"] in ("finished", "cancelled"):
                pending.discard(rid)
        time.sleep(0.2)
    listed, cursor = [], ""
    while True:
        code, page, _ = server.request("GET", f"/v1/runs?limit=100&cursor={cursor}")
        listed += page["runs"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = [r["id"] for r in listed]
    rss_kib = server.max_rss_kib
    server.stop()
    time.sleep(0.5)
    after = managed_containers()

    ok = True
    print(f"language {args.language}, {args.clients} clients, {args.seconds:.0f} s")
    print(f"accepted runs:        {len(accepted)}  (refused with 429: {refused}, other errors: {len(errors)})")
    print(f"throughput:           {len(latencies) / wall:.2f} verdicts/s")
    print(f"latency p50 / p99:    {percentile(latencies, 50) * 1000:.0f} ms / {percentile(latencies, 99) * 1000:.0f} ms (submit to verdict)")
    print(f"verdicts:             {statuses}")
    print(f"server peak RSS:      {rss_kib / 1024:.1f} MiB")
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
