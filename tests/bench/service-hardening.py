#!/usr/bin/env python3
"""Measures two abuse cases of `runner serve` (issue 9, findings 4 and 7);
standard library only. Run it on a baseline build and on the current one, on
the same machine in one session, and compare:

    RUNNER_BIN=/tmp/baseline/runner tests/bench/service-hardening.py storage
    tests/bench/service-hardening.py storage

storage     bytes added to the database per run, and bytes of the response,
            for one hostile request: a ~5 MB submission whose program writes
            1 MiB of NUL bytes to stdout and 1 MiB to stderr (the caps allow
            it). The database is checkpointed (WAL folded in) before each
            size is taken.
auth-flood  the server's peak RSS (VmHWM) while 150 concurrent requests
            present a known key id with wrong secrets: once from one address
            (the lockout's case), once from 150 addresses (X-Forwarded-For
            behind one trusted proxy: the bound on concurrent verifications
            is all that holds).

Without RUNNER_BIN it builds the release binary first.
"""
import argparse
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RUNNER, Server, build  # noqa: E402

MIB = 1 << 20


def db_bytes(path):
    """(file size, bytes in pages in use) of the database, its write-ahead
    log folded in. Pages freed (a dropped request) are reused by later
    writes: the second number is what stays."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = c.execute("PRAGMA page_size").fetchone()[0]
    used = c.execute("PRAGMA page_count").fetchone()[0] - c.execute("PRAGMA freelist_count").fetchone()[0]
    c.close()
    return os.path.getsize(path), used * page


def hostile_request():
    program = ("import sys\n"
               "sys.stdout.buffer.write(b'\\0' * 1048576)\n"
               "sys.stdout.flush()\n"
               "sys.stderr.buffer.write(b'\\0' * 1048576)\n"
               "sys.stderr.flush()\n")
    # Fill every input bound the policy allows: 4 files of 1 MiB, 1 MiB stdin.
    program += "#" + "x" * (MIB - len(program) - 2) + "\n"
    files = [{"name": "main.py", "content": program}]
    files += [{"name": f"pad{i}.txt", "content": "p" * MIB} for i in range(3)]
    return {"language": "python", "files": files, "stdin": "s" * (MIB - 1),
            "limits": {"stdout_max_bytes": MIB, "stderr_max_bytes": MIB}}


def storage(runs):
    server = Server()
    code, _, _ = server.request("POST", "/v1/runs?wait=true",
                                {"language": "python", "files": [{"name": "a.py", "content": "print(1)"}]})
    assert code == 200, code
    work, key = server.work, server.key
    server.stop(keep=True)
    before = db_bytes(os.path.join(work, "runner.db"))

    server = Server(work=work, key=key)
    body = hostile_request()
    request_bytes = len(json.dumps(body).encode())
    sizes, statuses = [], []
    for _ in range(runs):
        code, raw, _ = server.request("POST", "/v1/runs?wait=true", body, raw=True)
        assert code == 200, (code, raw[:300])
        sizes.append(len(raw))
        statuses.append(json.loads(raw)["result"]["status"])
    server.stop(keep=True)
    after = db_bytes(os.path.join(work, "runner.db"))
    subprocess.run(["rm", "-rf", work])
    grown, kept = (after[0] - before[0]) / runs, (after[1] - before[1]) / runs
    print(f"binary:                 {RUNNER}")
    print(f"request:                {request_bytes} bytes; {runs} runs, verdicts {statuses}")
    print(f"database file growth:   {grown:.0f} bytes per run ({grown / 1e6:.2f} MB)")
    print(f"database bytes kept:    {kept:.0f} bytes per run ({kept / 1e6:.2f} MB, pages in use)")
    print(f"response per run:       {sum(sizes) / len(sizes):.0f} bytes ({sum(sizes) / len(sizes) / 1e6:.2f} MB)")


def flood(server, key, count, forwarded):
    barrier = threading.Barrier(count)
    codes = {}
    lock = threading.Lock()

    def one(i):
        headers = {"X-Forwarded-For": f"198.51.100.{i % 250}"} if forwarded else {}
        barrier.wait()
        try:
            code, _, _ = server.request("GET", "/v1/runs", key=key, headers=headers, timeout=600)
        except Exception as e:  # a connection refused or reset counts too
            code = type(e).__name__
        with lock:
            codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def auth_flood(count):
    # All connections come from loopback: lift the per-address connection
    # cap (when this build has one) as a proxy in front would need.
    with open(RUNNER, "rb") as f:
        capped = b"max_connections_per_address" in f.read()
    for forwarded in (False, True):
        config = "trust_forwarded_for = true\n" if forwarded else ""
        if capped:
            config += "[http]\nmax_connections_per_address = 1000\n"
        server = Server(config)
        key_id = server.key.split("_")[1]
        wrong = "rk_%s_%s" % (key_id, "".join(random.choice(string.ascii_letters) for _ in range(43)))
        idle = server.peak_rss_kib()
        codes = flood(server, wrong, count, forwarded)
        peak = server.peak_rss_kib()
        server.stop()
        where = f"{count} addresses (X-Forwarded-For)" if forwarded else "one address"
        print(f"{count} wrong secrets from {where}: peak RSS {peak / 1024:.0f} MiB "
              f"(before the flood {idle / 1024:.0f} MiB); answers {codes}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["storage", "auth-flood"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=150)
    args = ap.parse_args()
    if not os.environ.get("RUNNER_BIN"):
        build(["python"])
    if args.what == "storage":
        storage(args.runs)
    else:
        auth_flood(args.requests)


if __name__ == "__main__":
    main()
